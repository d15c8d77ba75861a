//! What the two end-to-end harnesses share: a client of the REST API both masters serve (Buildbot's `/api/v2`
//! shapes), together with the child processes and the temporary directory whose output its failures show.
//!
//! [`KilnMaster`](super::kiln::KilnMaster) and [`BuildbotMaster`](super::buildbot::BuildbotMaster) each hold an
//! [`Api`] and dereference to it, so tests call `master.get(..)`, `master.wait_for(..)`, `master.step(..)` or
//! `master.fail(..)` on either; the harnesses keep only how their master is configured, started and stopped.
//!
//! Every wait is a bounded poll that fails early if the master or a worker exits; a failure shows the tails of
//! the master's and the workers' output. On drop, workers then the master are stopped (SIGTERM, then SIGKILL)
//! and waited for, and a failed test's directory is kept if `KILN_KEEP_TEST_DIRS` is set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::buildbot::{spawn_worker, Log, LogLine, WorkerKind};
use super::process::{chain, ChildProcess};

/// How long a worker gets to connect once started (or to reconnect after a master restart).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One try of a REST GET (they answer in milliseconds), and how many tries before failing.
const GET_TIMEOUT: Duration = Duration::from_secs(5);
const GET_TRIES: usize = 4;
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A master's REST API, the master and worker processes behind it, and the test's temporary directory.
pub struct Api {
    /// What the diagnostics printed on a failed test's drop are called ("Kiln master", "Buildbot interop").
    name: &'static str,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`, set by [`Api::set_ports`].
    www: String,
    worker_port: u16,
    /// The workers the master accepts: name, password.
    passwords: Vec<(String, String)>,
    /// The user control calls log in as (HTTP Basic), if the master needs one.
    credentials: Option<(String, String)>,
    /// The master process, once started.
    pub(super) master: Option<ChildProcess>,
    /// The workers started with [`Api::start_worker`], by name.
    pub(super) workers: Vec<(String, ChildProcess)>,
    /// Processes that were killed or stopped on purpose, kept for diagnostics.
    pub(super) dead: Vec<ChildProcess>,
    diagnostics_shown: AtomicBool,
    // Last, so that it is removed after the children are stopped.
    dir: tempfile::TempDir,
}

impl Api {
    /// A client for a master not started yet, whose files live in `dir`; JSON-RPC calls get `rpc_timeout`.
    pub fn new(
        name: &'static str,
        dir: tempfile::TempDir,
        passwords: Vec<(String, String)>,
        rpc_timeout: Duration,
    ) -> Self {
        Api {
            name,
            http: reqwest::Client::builder().timeout(rpc_timeout).build().expect("build an HTTP client"),
            www: String::new(),
            worker_port: 0,
            passwords,
            credentials: None,
            master: None,
            workers: Vec::new(),
            dead: Vec::new(),
            diagnostics_shown: AtomicBool::new(false),
            dir,
        }
    }

    /// Makes [`Api::rpc`] log in as `user` with `password` (HTTP Basic).
    pub fn set_credentials(&mut self, user: &str, password: &str) {
        self.credentials = Some((user.to_string(), password.to_string()));
    }

    /// Adds the login of [`Api::set_credentials`] to `request`.
    pub fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// The HTTP client (its timeout is the JSON-RPC calls').
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Points the client at the master's web port and workers at its worker port (both on 127.0.0.1).
    pub fn set_ports(&mut self, web_port: u16, worker_port: u16) {
        self.www = format!("http://127.0.0.1:{web_port}");
        self.worker_port = worker_port;
    }

    /// The test's temporary directory (the master's and workers' directories are under it).
    pub fn test_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The web URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.www
    }

    /// The port workers connect to.
    pub fn worker_port(&self) -> u16 {
        self.worker_port
    }

    /// The master process, if it was started.
    pub fn master_process(&self) -> Option<&ChildProcess> {
        self.master.as_ref()
    }

    /// Creates and starts worker `name` (declared with the builder's `.worker()`) of the given kind, pointed at
    /// this master. Does not wait for it to connect.
    pub async fn start_worker(&mut self, kind: WorkerKind, name: &str) {
        let master_addr = format!("127.0.0.1:{}", self.worker_port);
        self.start_worker_at(kind, name, &master_addr).await;
    }

    /// [`Self::start_worker`], with `master_addr` as the worker's `--master` (the form a user may type). Its
    /// output is in [`Self::worker_output`].
    pub async fn start_worker_at(&mut self, kind: WorkerKind, name: &str, master_addr: &str) {
        let password = self
            .passwords
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("worker {name:?} was not declared with .worker()"));
        let workers_dir = self.dir.path().join("workers");
        std::fs::create_dir_all(&workers_dir).expect("create the workers' directory");
        let basedir = workers_dir.join(name);
        let process = spawn_worker(kind, &basedir, master_addr, name, &password, self.worker_output(name));
        self.workers.push((name.to_owned(), process));
    }

    /// The file that worker `name`'s output goes to.
    pub fn worker_output(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("worker-{name}.out"))
    }

    /// The base directory of worker `name`.
    pub fn worker_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("workers").join(name)
    }

    /// Waits until worker `name` is connected to this master (`connected_to` not empty).
    pub async fn wait_worker_connected(&self, name: &str) {
        self.wait_for(&format!("worker {name:?} to connect"), CONNECT_TIMEOUT, async || {
            let worker = self.try_get(&format!("workers/{name}")).await?;
            let connected = worker["workers"][0]["connected_to"].as_array().is_some_and(|m| !m.is_empty());
            connected.then_some(())
        })
        .await;
    }

    /// Stops a running build (JSON-RPC `stop` on `/builds/{id}`).
    pub async fn stop_build(&self, buildid: i64) {
        self.rpc(&format!("builds/{buildid}"), "stop", json!({ "reason": "stopped by kiln end-to-end test" })).await;
    }

    /// The steps of a build, in order.
    pub async fn steps(&self, buildid: i64) -> Vec<Value> {
        let steps = self.get(&format!("builds/{buildid}/steps")).await;
        steps["steps"].as_array().cloned().unwrap_or_default()
    }

    /// The step named `name` of a build.
    pub async fn step(&self, buildid: i64, name: &str) -> Value {
        let steps = self.steps(buildid).await;
        steps.iter().find(|s| s["name"] == name).cloned().unwrap_or_else(|| {
            let names: Vec<&Value> = steps.iter().map(|s| &s["name"]).collect();
            self.fail(&format!("build {buildid} has no step {name:?}; its steps: {names:?}"))
        })
    }

    /// The log `slug` (e.g. "stdio") of a step, line by line with channels (`/logs/{id}/contents`).
    pub async fn log(&self, stepid: i64, slug: &str) -> Log {
        let logid = self.log_id(stepid, slug).await;
        let contents = self.get(&format!("logs/{logid}/contents")).await;
        let mut text = String::new();
        for chunk in contents["logchunks"].as_array().into_iter().flatten() {
            text.push_str(chunk["content"].as_str().unwrap_or(""));
        }
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
    pub async fn log_raw(&self, stepid: i64, slug: &str) -> String {
        let logid = self.log_id(stepid, slug).await;
        self.get_text(&format!("logs/{logid}/raw")).await
    }

    /// The names (slugs) of a step's logs.
    pub async fn log_names(&self, stepid: i64) -> Vec<String> {
        let logs = self.get(&format!("steps/{stepid}/logs")).await;
        logs["logs"]
            .as_array()
            .map(|logs| logs.iter().filter_map(|l| l["slug"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    async fn log_id(&self, stepid: i64, slug: &str) -> i64 {
        self.id(&self.get_one(&format!("steps/{stepid}/logs/{slug}")).await, "logid")
    }

    /// An integer field of a resource, failing with diagnostics if missing.
    pub fn id(&self, resource: &Value, field: &str) -> i64 {
        resource[field].as_i64().unwrap_or_else(|| self.fail(&format!("no integer {field:?} in {resource:#}")))
    }

    /// The `results` of a finished build, step or request, failing with diagnostics if missing.
    pub fn results(&self, resource: &Value) -> i64 {
        resource["results"]
            .as_i64()
            .unwrap_or_else(|| self.fail(&format!("no results (not finished?) in {resource:#}")))
    }

    /// GET `/api/v2/{path}` as JSON; fails (with diagnostics) on any error.
    pub async fn get(&self, path: &str) -> Value {
        let url = self.api_url(path);
        let text = self.get_text(path).await;
        serde_json::from_str(&text).unwrap_or_else(|e| self.fail(&format!("GET {url}: invalid JSON ({e}): {text}")))
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
    pub async fn get_text(&self, path: &str) -> String {
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
        let response = self.authorized(self.http.get(url)).timeout(GET_TIMEOUT).send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    /// GET that yields `None` on any failure, for polling.
    pub async fn try_get(&self, path: &str) -> Option<Value> {
        let (status, text) = self.try_get_text(&self.api_url(path)).await.ok()?;
        status.is_success().then(|| serde_json::from_str(&text).ok())?
    }

    /// A JSON-RPC 2.0 control call on a REST path; returns its `result`.
    pub async fn rpc(&self, path: &str, method: &str, params: Value) -> Value {
        let url = self.api_url(path);
        let request = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
        let response = match self.authorized(self.http.post(&url).json(&request)).send().await {
            Ok(response) => response,
            Err(e) => self.fail(&format!("POST {url} {request}: {}", chain(&e))),
        };
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
    pub async fn poll<T>(
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
            .chain(self.workers.iter().map(|(_, p)| p))
            .find_map(|p| p.exit_status().map(|status| format!("{} exited ({status})", p.label)))
    }

    /// Panics with `message` followed by the diagnostics (log tails of the master and the workers).
    pub fn fail(&self, message: &str) -> ! {
        self.diagnostics_shown.store(true, Ordering::SeqCst);
        panic!("{message}\n{}", self.diagnostics());
    }

    /// The tails of the master's and every worker's output (current and past processes).
    pub fn diagnostics(&self) -> String {
        let mut out = format!("(test directory: {})\n", self.dir.path().display());
        for process in self.dead.iter().chain(&self.master).chain(self.workers.iter().map(|(_, p)| p)) {
            out.push_str(&process.log_tails());
        }
        out
    }
}

/// `Deref<Target = Api>` and `DerefMut` for a harness struct whose field `api` holds its [`Api`], so that the
/// shared methods are called on the harness itself.
macro_rules! deref_to_api {
    ($harness:ty) => {
        impl std::ops::Deref for $harness {
            type Target = $crate::support::api::Api;

            fn deref(&self) -> &Self::Target {
                &self.api
            }
        }

        impl std::ops::DerefMut for $harness {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.api
            }
        }
    };
}
pub(crate) use deref_to_api;

impl Drop for Api {
    fn drop(&mut self) {
        // Workers first, so that they do not spin reconnecting to a dead master.
        for (_, worker) in &mut self.workers {
            worker.stop();
        }
        if let Some(master) = &mut self.master {
            master.stop();
        }
        if std::thread::panicking() {
            if !self.diagnostics_shown.load(Ordering::SeqCst) {
                eprintln!("test failed; {} diagnostics:\n{}", self.name, self.diagnostics());
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
