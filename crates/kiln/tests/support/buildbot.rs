//! A real Buildbot 4.3.0 master, and a worker attached to it, as child processes for interop tests.
//!
//! ```ignore
//! let mut master = BuildbotMaster::builder()
//!     .worker("w", "secret")
//!     .builder("shell", r#"[steps.ShellCommand(command="echo hi", name="hi")]"#)
//!     .start()
//!     .await;
//! master.start_worker(WorkerKind::Kiln, "w").await;
//! master.wait_worker_connected("w").await;
//! let build = master.run_build("shell").await; // force, then wait until the request completes
//! let step = master.step(id(&build, "buildid"), "hi").await;
//! let log = master.log(id(&step, "stepid"), "stdio").await;
//! ```
//!
//! The master speaks `msgpack_experimental_v7` to workers and serves its REST API (`/api/v2`, no auth) on
//! 127.0.0.1; both ports are picked free. Everything lives in a temporary directory. Every wait is a
//! bounded poll; when one times out, or a test panics while the master is alive, the tails of the
//! master's `twistd.log` and of each worker's output are printed. Children are stopped (SIGTERM, then
//! SIGKILL) and waited for on drop; they also get SIGTERM if the test process dies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::{chain, free_ports, run_to_completion, ChildProcess};

/// How long the master gets to come up (create-master and start).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker gets to connect once started.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a build gets from being forced to its request completing.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// One try of a REST GET (they answer in milliseconds), and how many tries before failing.
const GET_TIMEOUT: Duration = Duration::from_secs(5);
const GET_TRIES: usize = 4;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The path of the venv holding buildbot, buildbot-worker and buildbot-www 4.3.0, made (or found in
/// its cache) by `scripts/buildbot-venv` once per test process. Panics with the script's output if it
/// fails.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/buildbot-venv");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = stdout.lines().rev().find(|l| !l.trim().is_empty());
        match (out.status.success(), path) {
            (true, Some(path)) => PathBuf::from(path.trim()),
            _ => panic!("{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", script.display(), out.status),
        }
    })
}

/// A Python string literal for `s`, to splice paths and texts into the master's config (a JSON
/// string is a valid Python `str` literal).
pub fn py(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).expect("a string serialises to JSON")
}

/// An integer field (`buildid`, `stepid`, ...) of a REST resource, with a readable panic if missing.
pub fn id(resource: &Value, field: &str) -> i64 {
    resource[field].as_i64().unwrap_or_else(|| panic!("no integer {field:?} in {resource:#}"))
}

/// The `results` code of a build or step (see [`results`]), with a readable panic if missing.
pub fn result_of(resource: &Value) -> i64 {
    resource["results"].as_i64().unwrap_or_else(|| panic!("no results (not finished?) in {resource:#}"))
}

/// Buildbot's result codes (`master/buildbot/process/results.py`).
pub mod results {
    pub const SUCCESS: i64 = 0;
    pub const WARNINGS: i64 = 1;
    pub const FAILURE: i64 = 2;
    pub const SKIPPED: i64 = 3;
    pub const EXCEPTION: i64 = 4;
    pub const RETRY: i64 = 5;
    pub const CANCELLED: i64 = 6;
}

/// Which worker implementation to attach to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The stock `buildbot-worker` 4.3.0 from the venv, with `--protocol=msgpack_experimental_v7`.
    Buildbot,
    /// This workspace's `kiln worker`.
    Kiln,
}

/// Creates worker `name` of `kind` in `basedir`, pointed at the worker port `master_addr` (`HOST:PORT`) with
/// `password`, and starts it in the foreground with its output in `output`. Does not wait for it to connect.
pub fn spawn_worker(
    kind: WorkerKind,
    basedir: &Path,
    master_addr: &str,
    name: &str,
    password: &str,
    output: PathBuf,
) -> ChildProcess {
    let label = format!("{kind:?} worker {name:?}");
    match kind {
        WorkerKind::Buildbot => {
            let bin = venv().join("bin/buildbot-worker");
            run_to_completion(
                Command::new(&bin).args(["create-worker", "--protocol=msgpack_experimental_v7"]).arg(basedir).args([
                    master_addr,
                    name,
                    password,
                ]),
                "buildbot-worker create-worker",
            );
            ChildProcess::spawn(
                &label,
                Command::new(&bin).args(["start", "--nodaemon"]).arg(basedir),
                output,
                vec![basedir.join("twistd.log")],
            )
        }
        WorkerKind::Kiln => {
            let bin = env!("CARGO_BIN_EXE_kiln");
            run_to_completion(
                Command::new(bin)
                    .args(["worker", "create"])
                    .arg(basedir)
                    .args(["--master", master_addr])
                    .args(["--name", name])
                    .args(["--password", password]),
                "kiln worker create",
            );
            let mut start = Command::new(bin);
            // Plain text logs: they go to a file that diagnostics print.
            start.args(["worker", "start"]).arg(basedir).env("NO_COLOR", "1");
            if std::env::var_os("RUST_LOG").is_none() {
                start.env("RUST_LOG", "info,kiln=debug,kiln_worker=debug");
            }
            ChildProcess::spawn(&label, &mut start, output, Vec::new())
        }
    }
}

/// One line of a log as stored by Buildbot: `/logs/{id}/contents` prefixes every line with its
/// channel, `o` (stdout), `e` (stderr) or `h` (header, including the master's own
/// "program finished with exit code N").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub channel: char,
    pub text: String,
}

/// The lines of one log, with helpers for assertions.
#[derive(Debug, Clone)]
pub struct Log {
    pub lines: Vec<LogLine>,
}

impl Log {
    /// Whether some line on `channel` is exactly `text`.
    pub fn has_line(&self, channel: char, text: &str) -> bool {
        self.lines.iter().any(|l| l.channel == channel && l.text == text)
    }

    /// The texts of the lines on `channel`, in order.
    pub fn channel(&self, channel: char) -> Vec<&str> {
        self.lines.iter().filter(|l| l.channel == channel).map(|l| l.text.as_str()).collect()
    }

    /// All lines as `/logs/{id}/contents` has them: channel letter then text.
    pub fn dump(&self) -> String {
        self.lines.iter().fold(String::new(), |mut s, l| {
            let _ = writeln!(s, "{}{}", l.channel, l.text);
            s
        })
    }
}

/// Configuration of a master to start; see [`BuildbotMaster::builder`].
#[derive(Debug, Default)]
pub struct MasterBuilder {
    workers: Vec<(String, String)>,
    builders: Vec<(String, String)>,
}

impl MasterBuilder {
    /// Declares a worker the master accepts (`worker.Worker(name, password)`); every builder may use
    /// every declared worker.
    pub fn worker(mut self, name: &str, password: &str) -> Self {
        self.workers.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Adds a builder `name` whose factory runs `steps`, a Python list expression of build steps
    /// (`buildbot.plugins` `steps` and `util` are in scope), and a `ForceScheduler` named `name` for it.
    pub fn builder(mut self, name: &str, steps: &str) -> Self {
        self.builders.push((name.to_owned(), steps.to_owned()));
        self
    }

    /// Creates the master in a temporary directory, starts it and waits until its REST API answers.
    pub async fn start(self) -> BuildbotMaster {
        let venv = venv();
        let dir = tempfile::Builder::new()
            .prefix("kiln-buildbot-")
            .tempdir()
            .expect("create a temporary directory for the Buildbot master");
        let basedir = dir.path().join("master");
        run_to_completion(
            Command::new(venv.join("bin/buildbot")).arg("create-master").arg(&basedir),
            "buildbot create-master",
        );
        let mut master = BuildbotMaster {
            basedir,
            www: String::new(),
            worker_port: 0,
            passwords: self.workers.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("build an HTTP client"),
            master: None,
            workers: Vec::new(),
            diagnostics_shown: AtomicBool::new(false),
            dir,
        };
        // The ports are free when picked, but something else may bind one before the master does:
        // then Buildbot logs "Address already in use" and exits, and we retry with other ports.
        let mut attempt = 1;
        loop {
            let (www_port, worker_port) = free_ports();
            let twistd_log = master.basedir.join("twistd.log");
            std::fs::write(master.basedir.join("master.cfg"), self.master_cfg(www_port, worker_port))
                .expect("write master.cfg");
            master.www = format!("http://127.0.0.1:{www_port}");
            master.worker_port = worker_port;
            master.master = Some(ChildProcess::spawn(
                "buildbot master",
                Command::new(venv.join("bin/buildbot"))
                    .args(["start", "--nodaemon"])
                    .arg(&master.basedir)
                    .current_dir(&master.basedir),
                master.dir.path().join("master.out"),
                vec![twistd_log.clone()],
            ));
            // The REST API comes up before the worker port; "BuildMaster is running" comes after both.
            let started = master
                .poll("the master to start", START_TIMEOUT, async || {
                    let up = master.try_get("builders").await.is_some();
                    let log = std::fs::read_to_string(&twistd_log).ok()?;
                    (up && log.contains("BuildMaster is running")).then_some(())
                })
                .await;
            let Err(why) = started else {
                return master;
            };
            let log = std::fs::read_to_string(&twistd_log).unwrap_or_default();
            if attempt == 3 || !log.contains("Address already in use") {
                master.fail(&why);
            }
            eprintln!("Buildbot master: a port was taken, retrying with other ports");
            if let Some(mut process) = master.master.take() {
                process.stop();
            }
            let _ = std::fs::rename(&twistd_log, twistd_log.with_extension(format!("log.{attempt}")));
            attempt += 1;
        }
    }

    fn master_cfg(&self, www_port: u16, worker_port: u16) -> String {
        let names: Vec<String> = self.workers.iter().map(|(n, _)| py(n)).collect();
        let names = names.join(", ");
        let mut cfg = format!(
            "# Generated by kiln's interop tests (crates/kiln/tests/support/buildbot.rs).
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c['title'] = 'kiln interop'
c['buildbotURL'] = 'http://127.0.0.1:{www_port}/'
# Only the REST API's listener can be bound to an interface: Buildbot takes a plain int port for
# msgpack and listens on 0.0.0.0 there.
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
c['workers'] = []
c['builders'] = []
c['schedulers'] = []
"
        );
        for (name, password) in &self.workers {
            let _ = writeln!(cfg, "c['workers'].append(worker.Worker({}, {}))", py(name), py(password));
        }
        for (name, steps) in &self.builders {
            let _ = write!(
                cfg,
                "
c['builders'].append(util.BuilderConfig(name={name}, workernames=[{names}],
    factory=util.BuildFactory({steps})))
c['schedulers'].append(schedulers.ForceScheduler(name={name}, builderNames=[{name}]))
",
                name = py(name),
            );
        }
        cfg
    }
}

/// A running Buildbot master, its temporary directory and the workers started with
/// [`BuildbotMaster::start_worker`].
pub struct BuildbotMaster {
    basedir: PathBuf,
    www: String,
    worker_port: u16,
    passwords: Vec<(String, String)>,
    http: reqwest::Client,
    master: Option<ChildProcess>,
    workers: Vec<ChildProcess>,
    diagnostics_shown: AtomicBool,
    // Last, so that it is removed after the children are stopped.
    dir: tempfile::TempDir,
}

impl BuildbotMaster {
    pub fn builder() -> MasterBuilder {
        MasterBuilder::default()
    }

    /// The master's base directory (its cwd; relative paths in steps' master-side arguments resolve
    /// here). Tests may put files for the master here.
    pub fn basedir(&self) -> &Path {
        &self.basedir
    }

    /// The port workers connect to (msgpack_experimental_v7 over WebSocket).
    pub fn worker_port(&self) -> u16 {
        self.worker_port
    }

    /// Creates and starts worker `name` (declared with [`MasterBuilder::worker`]) of the given kind,
    /// pointed at this master. Does not wait for it to connect.
    pub async fn start_worker(&mut self, kind: WorkerKind, name: &str) {
        let password = self
            .passwords
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("worker {name:?} was not declared with .worker()"));
        let workers_dir = self.dir.path().join("workers");
        std::fs::create_dir_all(&workers_dir).expect("create the workers' directory");
        let basedir = workers_dir.join(name);
        let master_addr = format!("127.0.0.1:{}", self.worker_port);
        let output = self.dir.path().join(format!("worker-{name}.out"));
        let process = spawn_worker(kind, &basedir, &master_addr, name, &password, output);
        self.workers.push(process);
    }

    /// Waits until worker `name` is connected to this master.
    pub async fn wait_worker_connected(&self, name: &str) {
        self.wait_for(&format!("worker {name:?} to connect"), CONNECT_TIMEOUT, async || {
            let workers = self.get(&format!("workers/{name}")).await;
            let connected = workers["workers"][0]["connected_to"].as_array().is_some_and(|masters| !masters.is_empty());
            connected.then_some(())
        })
        .await;
    }

    /// Forces a build on `builder` through its ForceScheduler (JSON-RPC `force`); returns the build
    /// request id.
    pub async fn force(&self, builder: &str) -> i64 {
        let builder_id = id(&self.get_one(&format!("builders/{builder}")).await, "builderid");
        // The result is [buildset id, {builder id: build request id}].
        let result = self.rpc(&format!("forceschedulers/{builder}"), "force", json!({ "builderid": builder_id })).await;
        result[1][builder_id.to_string()]
            .as_i64()
            .unwrap_or_else(|| self.fail(&format!("unexpected force result {result}")))
    }

    /// Waits until build request `brid` has a build; returns that build.
    pub async fn wait_build_started(&self, brid: i64) -> Value {
        self.wait_for(&format!("a build for build request {brid}"), BUILD_TIMEOUT, async || {
            let builds = self.get(&format!("buildrequests/{brid}/builds")).await;
            builds["builds"].as_array()?.first().cloned()
        })
        .await
    }

    /// Waits until build request `brid` is complete; returns its last build (after a RETRY there are
    /// several).
    pub async fn wait_build_finished(&self, brid: i64) -> Value {
        self.wait_for(&format!("build request {brid} to complete"), BUILD_TIMEOUT, async || {
            let request = self.get_one(&format!("buildrequests/{brid}")).await;
            request["complete"].as_bool()?.then_some(())
        })
        .await;
        let builds = self.get(&format!("buildrequests/{brid}/builds?order=buildid")).await;
        builds["builds"]
            .as_array()
            .and_then(|b| b.last())
            .cloned()
            .unwrap_or_else(|| self.fail(&format!("build request {brid} completed without a build")))
    }

    /// Forces a build on `builder` and waits for it to finish; returns the build.
    pub async fn run_build(&self, builder: &str) -> Value {
        let brid = self.force(builder).await;
        self.wait_build_finished(brid).await
    }

    /// Stops a running build (JSON-RPC `stop` on `/builds/{id}`).
    pub async fn stop_build(&self, build_id: i64) {
        self.rpc(&format!("builds/{build_id}"), "stop", json!({ "reason": "stopped by kiln interop test" })).await;
    }

    /// The steps of a build, in order.
    pub async fn steps(&self, build_id: i64) -> Vec<Value> {
        let steps = self.get(&format!("builds/{build_id}/steps")).await;
        steps["steps"].as_array().cloned().unwrap_or_default()
    }

    /// The step named `name` of a build.
    pub async fn step(&self, build_id: i64, name: &str) -> Value {
        let steps = self.steps(build_id).await;
        steps.iter().find(|s| s["name"] == name).cloned().unwrap_or_else(|| {
            let names: Vec<&Value> = steps.iter().map(|s| &s["name"]).collect();
            self.fail(&format!("build {build_id} has no step {name:?}; its steps: {names:?}"))
        })
    }

    /// The log `slug` (e.g. "stdio") of a step, line by line with channels (`/logs/{id}/contents`).
    pub async fn log(&self, step_id: i64, slug: &str) -> Log {
        let log_id = self.log_id(step_id, slug).await;
        let contents = self.get(&format!("logs/{log_id}/contents")).await;
        let text = contents["logchunks"][0]["content"].as_str().unwrap_or("");
        let lines = text
            .lines()
            .map(|line| {
                let mut chars = line.chars();
                let channel = chars.next().unwrap_or('?');
                LogLine { channel, text: chars.as_str().to_owned() }
            })
            .collect();
        Log { lines }
    }

    /// The log `slug` of a step as plain text (`/logs/{id}/raw`: no channels, and for stream logs a
    /// "Builder: / Build number: / Worker name:" preamble).
    pub async fn log_raw(&self, step_id: i64, slug: &str) -> String {
        let log_id = self.log_id(step_id, slug).await;
        self.get_text(&format!("logs/{log_id}/raw")).await
    }

    /// The names (slugs) of a step's logs.
    pub async fn log_names(&self, step_id: i64) -> Vec<String> {
        let logs = self.get(&format!("steps/{step_id}/logs")).await;
        logs["logs"]
            .as_array()
            .map(|logs| logs.iter().filter_map(|l| l["slug"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    async fn log_id(&self, step_id: i64, slug: &str) -> i64 {
        id(&self.get_one(&format!("steps/{step_id}/logs/{slug}")).await, "logid")
    }

    /// GET `/api/v2/{path}` as JSON; panics (with diagnostics) on any error.
    pub async fn get(&self, path: &str) -> Value {
        let text = self.get_text(path).await;
        serde_json::from_str(&text).unwrap_or_else(|e| self.fail(&format!("GET {path}: invalid JSON ({e}): {text}")))
    }

    /// GET a single resource: the only element of the list the REST API wraps it in.
    pub async fn get_one(&self, path: &str) -> Value {
        let value = self.get(path).await;
        let list = value.as_object().and_then(|o| o.iter().find(|(k, _)| *k != "meta")).and_then(|(_, v)| v.as_array());
        match list.map(Vec::as_slice) {
            Some([one]) => one.clone(),
            _ => self.fail(&format!("GET {path}: expected one resource, got {value}")),
        }
    }

    /// GET `/api/v2/{path}` as text. Each try gets [`GET_TIMEOUT`], and a try that fails in
    /// transport is repeated on a new connection: Buildbot 4.3.0 writes JSON responses from a
    /// worker thread (`rest.py` `_write_json_data` under `deferToThread`), which is not thread-safe in
    /// Twisted and now and then leaves a response half-sent until something else wakes the reactor.
    async fn get_text(&self, path: &str) -> String {
        let url = self.api_url(path);
        let mut errors = Vec::new();
        while errors.len() < GET_TRIES {
            match self.try_get_text(&url).await {
                Ok((status, text)) if status.is_success() => return text,
                Ok((status, text)) => self.fail(&format!("GET {url}: HTTP {status}: {text}")),
                Err(e) => {
                    eprintln!("GET {url}: {}; trying again", chain(&e));
                    errors.push(chain(&e));
                }
            }
        }
        self.fail(&format!("GET {url} failed {GET_TRIES} times: {errors:#?}"))
    }

    async fn try_get_text(&self, url: &str) -> reqwest::Result<(reqwest::StatusCode, String)> {
        let response = self.http.get(url).timeout(GET_TIMEOUT).send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    /// GET that yields `None` on any failure, for polling while the master starts.
    async fn try_get(&self, path: &str) -> Option<Value> {
        let (status, text) = self.try_get_text(&self.api_url(path)).await.ok()?;
        status.is_success().then(|| serde_json::from_str(&text).ok())?
    }

    /// A JSON-RPC 2.0 control call on a REST path; returns its `result`.
    pub async fn rpc(&self, path: &str, method: &str, params: Value) -> Value {
        let url = self.api_url(path);
        let request = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
        let response = self
            .http
            .post(&url)
            .json(&request)
            .send()
            .await
            .unwrap_or_else(|e| self.fail(&format!("POST {url} {request}: {}", chain(&e))));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() || body.get("error").is_some() || body.get("result").is_none() {
            self.fail(&format!("POST {url} {request}: HTTP {status}: {text}"));
        }
        body["result"].clone()
    }

    fn api_url(&self, path: &str) -> String {
        format!("{}/api/v2/{}", self.www, path.trim_start_matches('/'))
    }

    /// Polls `probe` every 100 ms until it yields a value, for at most `timeout`. Fails early, with
    /// diagnostics, if the master or a worker exits.
    pub async fn wait_for<T>(&self, what: &str, timeout: Duration, probe: impl AsyncFnMut() -> Option<T>) -> T {
        match self.poll(what, timeout, probe).await {
            Ok(value) => value,
            Err(why) => self.fail(&why),
        }
    }

    /// [`Self::wait_for`], returning why it gave up instead of failing.
    async fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut() -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe().await {
                return Ok(value);
            }
            if let Some(dead) = self.exited_child() {
                return Err(format!("{dead} while waiting for {what}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn exited_child(&self) -> Option<String> {
        self.master
            .iter()
            .chain(&self.workers)
            .find_map(|p| p.exit_status().map(|status| format!("{} exited ({status})", p.label)))
    }

    /// Panics with `message` followed by the diagnostics (log tails of the master and the workers).
    pub fn fail(&self, message: &str) -> ! {
        self.diagnostics_shown.store(true, Ordering::SeqCst);
        panic!("{message}\n{}", self.diagnostics());
    }

    /// The tails of the master's twistd.log and of every worker's output.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("(test directory: {})\n", self.dir.path().display());
        for process in self.master.iter().chain(&self.workers) {
            out.push_str(&process.log_tails());
        }
        out
    }
}

impl Drop for BuildbotMaster {
    fn drop(&mut self) {
        // Workers first, so that they do not spin reconnecting to a dead master.
        for worker in &mut self.workers {
            worker.stop();
        }
        if let Some(master) = &mut self.master {
            master.stop();
        }
        if std::thread::panicking() {
            if !self.diagnostics_shown.load(Ordering::SeqCst) {
                eprintln!("test failed; Buildbot interop diagnostics:\n{}", self.diagnostics());
            }
            if std::env::var_os("KILN_KEEP_TEST_DIRS").is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("kept {}", self.dir.path().display());
            } else {
                eprintln!("(set KILN_KEEP_TEST_DIRS=1 to keep {})", self.dir.path().display());
            }
        }
    }
}
