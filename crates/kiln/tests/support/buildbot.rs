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
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use super::api::{deref_to_api, Api};
use super::process::{free_ports, run_to_completion, ChildProcess};

/// How long the master gets to come up (create-master and start).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a build gets from being forced to its request completing.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(60);

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
            // A worker started again (after a kill) keeps its directory.
            let created = basedir.join("worker.toml").exists();
            if !created {
                run_to_completion(
                    Command::new(bin)
                        .args(["worker", "create"])
                        .arg(basedir)
                        .args(["--master", master_addr])
                        .args(["--name", name])
                        .args(["--password", password]),
                    "kiln worker create",
                );
            }
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
        let api = Api::new("Buildbot interop", dir, self.workers.clone(), Duration::from_secs(30));
        let mut master = BuildbotMaster { basedir, api };
        // The ports are free when picked, but something else may bind one before the master does:
        // then Buildbot logs "Address already in use" and exits, and we retry with other ports.
        let mut attempt = 1;
        loop {
            let (www_port, worker_port) = free_ports();
            let twistd_log = master.basedir.join("twistd.log");
            std::fs::write(master.basedir.join("master.cfg"), self.master_cfg(www_port, worker_port))
                .expect("write master.cfg");
            master.api.set_ports(www_port, worker_port);
            master.api.master = Some(ChildProcess::spawn(
                "buildbot master",
                Command::new(venv.join("bin/buildbot"))
                    .args(["start", "--nodaemon"])
                    .arg(&master.basedir)
                    .current_dir(&master.basedir),
                master.test_dir().join("master.out"),
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
            if let Some(mut process) = master.api.master.take() {
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
/// [`Api::start_worker`]. The REST client, the waits, the workers and the diagnostics are its [`Api`]'s (it
/// dereferences to it); here is what is Buildbot's: `buildbot create-master`/`start`, and forcing builds through
/// a `ForceScheduler` named after the builder.
pub struct BuildbotMaster {
    basedir: PathBuf,
    api: Api,
}

deref_to_api!(BuildbotMaster);

impl BuildbotMaster {
    pub fn builder() -> MasterBuilder {
        MasterBuilder::default()
    }

    /// The master's base directory (its cwd; relative paths in steps' master-side arguments resolve
    /// here). Tests may put files for the master here.
    pub fn basedir(&self) -> &Path {
        &self.basedir
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
}
