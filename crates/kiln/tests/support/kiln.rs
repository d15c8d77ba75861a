//! A Kiln master (`kiln start DIR`) and its workers (Kiln's or the stock `buildbot-worker`) as child processes,
//! for end-to-end tests through the master's REST API.
//!
//! ```ignore
//! let mut master = KilnMaster::builder()
//!     .worker("w", "secret")
//!     .builder("shell", r#"
//!         [[builder.step]]
//!         name = "hi"
//!         command = "echo hi"
//!     "#)
//!     .start()
//!     .await;
//! master.start_worker(WorkerKind::Kiln, "w").await;
//! master.wait_worker_connected("w").await;
//! let brid = master.force("shell").await;
//! master.wait_request_complete(brid).await;
//! ```
//!
//! The master's directory holds a generated `master.toml` (SQLite store, worker port and web API on free ports
//! of 127.0.0.1, pings every second so that a lost worker is noticed within 3 s). Every wait is a bounded poll;
//! a failure shows the tails of the master's and the workers' output. Children are stopped (SIGTERM, then
//! SIGKILL) and waited for on drop. The REST client, the waits and the diagnostics are [`Api`]'s, shared with the
//! Buildbot harness.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use super::api::{deref_to_api, Api};
use super::process::{free_ports, ChildProcess};

/// How long the master gets to answer on its API once started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a build request gets to complete.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a killed or stopped process gets to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// The admin every test master has, whose login [`Api::rpc`] uses (HTTP Basic from 127.0.0.1).
pub const TEST_ADMIN: &str = "kiln-test-admin";
/// Its password.
pub const TEST_PASSWORD: &str = "kiln-test-password";
/// The argon2 hash of [`TEST_PASSWORD`], with argon2's smallest cost so that logins are quick.
pub const TEST_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$a2lsbi10ZXN0LXNhbHQ$QXq7j3egqTpIiaCCSe5AdBnGT+vRQNgIoDSocFatnfg";

/// A `[[user]]` table (at the end of a file).
pub fn user_toml(name: &str, hash: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(toml_str).collect();
    format!(
        "\n[[user]]\nname = {}\npassword_hash = {}\nroles = [{}]\n",
        toml_str(name),
        toml_str(hash),
        roles.join(", ")
    )
}

/// A string as a TOML basic string (a JSON string literal is one).
pub fn toml_str(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).expect("a string serialises to JSON")
}

/// The `kiln` binary under test.
pub fn kiln_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kiln")
}

/// Runs `kiln ARGS` to completion (stdin closed, `NO_COLOR`), with at most `timeout`: SIGKILLed after it.
pub async fn run_kiln(args: &[&str], timeout: Duration) -> Output {
    let mut command = tokio::process::Command::new(kiln_bin());
    command.args(args).env("NO_COLOR", "1").stdin(Stdio::null()).kill_on_drop(true);
    let child = command.output();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run kiln {args:?}: {e}"),
        Err(_) => panic!("kiln {args:?} did not finish within {timeout:?}"),
    }
}

/// `stdout` and `stderr` of an [`Output`], for messages.
pub fn show(output: &Output) -> String {
    format!(
        "({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Configuration of a Kiln master to start; see [`KilnMaster::builder`].
#[derive(Debug, Default, Clone)]
pub struct KilnMasterBuilder {
    /// name, password, max_builds.
    workers: Vec<(String, String, Option<u32>)>,
    /// name, TOML text of its steps (and any other keys of the `[[builder]]` table).
    builders: Vec<(String, String)>,
    /// TOML tables appended to `master.toml`.
    extra: String,
    /// A whole `master.toml` instead of the generated one, see [`KilnMasterBuilder::master_toml_template`].
    template: Option<String>,
    /// Arguments of `kiln` before `start DIR` (`--log-format json`).
    global_args: Vec<String>,
    /// Start the master without `NO_COLOR` in its environment.
    colour_allowed: bool,
    /// Keys added to `[worker_listener]` and to `[web]`.
    worker_listener_keys: String,
    web_keys: String,
    /// The master process's RLIMIT_NOFILE (soft and hard), set before it runs.
    fd_limit: Option<u64>,
}

impl KilnMasterBuilder {
    /// Declares a worker the master accepts; every builder may use every declared worker.
    pub fn worker(mut self, name: &str, password: &str) -> Self {
        self.workers.push((name.to_owned(), password.to_owned(), None));
        self
    }

    /// Declares a worker with `max_builds`.
    pub fn worker_with_max_builds(mut self, name: &str, password: &str, max_builds: u32) -> Self {
        self.workers.push((name.to_owned(), password.to_owned(), Some(max_builds)));
        self
    }

    /// Adds a `[[builder]]` named `name` on all workers; `body` is TOML text appended to its table: its
    /// `[[builder.step]]` tables (and possibly keys of the builder before them).
    pub fn builder(mut self, name: &str, body: &str) -> Self {
        self.builders.push((name.to_owned(), body.to_owned()));
        self
    }

    /// Appends TOML tables (e.g. `[change_hooks.base]`) to `master.toml`.
    pub fn extra_toml(mut self, tables: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(tables);
        self.extra.push('\n');
        self
    }

    /// Uses `text` as `master.toml` (its workers declared with [`Self::worker`] too, for their passwords), with
    /// `{worker_address}` and `{web_address}` replaced by the free addresses picked on 127.0.0.1.
    pub fn master_toml_template(mut self, text: &str) -> Self {
        self.template = Some(text.to_owned());
        self
    }

    /// Runs `kiln ARGS start DIR` (global options such as `--log-format json`).
    pub fn global_args(mut self, args: &[&str]) -> Self {
        self.global_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Starts the master without `NO_COLOR` set (its output still goes to a file, not a terminal).
    pub fn colour_allowed(mut self) -> Self {
        self.colour_allowed = true;
        self
    }

    /// Adds keys (TOML lines) to the `[worker_listener]` table.
    pub fn worker_listener_keys(mut self, keys: &str) -> Self {
        self.worker_listener_keys.push_str(keys);
        self.worker_listener_keys.push('\n');
        self
    }

    /// Adds keys (TOML lines) to the `[web]` table.
    pub fn web_keys(mut self, keys: &str) -> Self {
        self.web_keys.push_str(keys);
        self.web_keys.push('\n');
        self
    }

    /// Runs the master with this file-descriptor limit, soft and hard (so it cannot raise it).
    pub fn fd_limit(mut self, limit: u64) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    /// The `master.toml` text for these ports.
    pub fn master_toml(&self, worker_port: u16, web_port: u16) -> String {
        let admin = user_toml(TEST_ADMIN, TEST_PASSWORD_HASH, &["admin"]);
        if let Some(template) = &self.template {
            let text = template
                .replace("{worker_address}", &format!("127.0.0.1:{worker_port}"))
                .replace("{web_address}", &format!("127.0.0.1:{web_port}"));
            return text + &admin;
        }
        let mut toml = format!(
            "# Generated by kiln's end-to-end tests (crates/kiln/tests/support/kiln.rs).
title = \"kiln tests\"

[store]
url = \"sqlite:state.sqlite\"

[worker_listener]
address = \"127.0.0.1:{worker_port}\"
ping_interval = 1
ping_timeout = 3
{worker_listener_keys}
[web]
address = \"127.0.0.1:{web_port}\"
{web_keys}",
            worker_listener_keys = self.worker_listener_keys,
            web_keys = self.web_keys,
        );
        for (name, password, max_builds) in &self.workers {
            let _ = write!(toml, "\n[[worker]]\nname = {}\npassword = {}\n", toml_str(name), toml_str(password));
            if let Some(max) = max_builds {
                let _ = writeln!(toml, "max_builds = {max}");
            }
        }
        let names: Vec<String> = self.workers.iter().map(|(n, _, _)| toml_str(n)).collect();
        for (name, body) in &self.builders {
            let _ =
                write!(toml, "\n[[builder]]\nname = {}\nworkers = [{}]\n{body}\n", toml_str(name), names.join(", "));
        }
        toml.push_str(&self.extra);
        toml.push_str(&admin);
        toml
    }

    /// Writes `master.toml` in a temporary directory, starts `kiln start` there and waits until the API answers.
    pub async fn start(self) -> KilnMaster {
        let dir = tempfile::Builder::new().prefix("kiln-master-").tempdir().expect("create a temporary directory");
        let master_dir = dir.path().join("master");
        std::fs::create_dir_all(&master_dir).expect("create the master's directory");
        let passwords = self.workers.iter().map(|(n, p, _)| (n.clone(), p.clone())).collect();
        let mut api = Api::new("Kiln master", dir, passwords, Duration::from_secs(10));
        api.set_credentials(TEST_ADMIN, TEST_PASSWORD);
        let mut master = KilnMaster {
            master_dir,
            runs: 0,
            global_args: self.global_args.clone(),
            colour_allowed: self.colour_allowed,
            fd_limit: self.fd_limit,
            api,
        };
        // The ports are free when picked, but something may bind one before the master does: retry then.
        for attempt in 1..=3 {
            let (worker_port, web_port) = free_ports();
            std::fs::write(master.master_dir.join("master.toml"), self.master_toml(worker_port, web_port))
                .expect("write master.toml");
            master.api.set_ports(web_port, worker_port);
            match master.launch().await {
                Ok(()) => return master,
                Err(why) if attempt < 3 && master.last_output().contains("in use") => {
                    eprintln!("Kiln master: a port was taken ({why}); retrying with other ports");
                }
                Err(why) => master.fail(&why),
            }
        }
        unreachable!("the loop returns or fails")
    }
}

/// A running Kiln master, its temporary directory and its workers. The REST client, the waits, the workers and
/// the diagnostics are its [`Api`]'s (it dereferences to it); here is what is Kiln's: `kiln start`, restarts,
/// killing the master or a worker, and the build request and build queries the Kiln tests use.
pub struct KilnMaster {
    master_dir: PathBuf,
    /// How many times the master process was started.
    runs: usize,
    /// Arguments of `kiln` before `start DIR`.
    global_args: Vec<String>,
    /// Start without `NO_COLOR`.
    colour_allowed: bool,
    /// The master process's file-descriptor limit, if the test sets one.
    fd_limit: Option<u64>,
    api: Api,
}

deref_to_api!(KilnMaster);

impl KilnMaster {
    pub fn builder() -> KilnMasterBuilder {
        KilnMasterBuilder::default()
    }

    /// The master's directory (master.toml, state.sqlite; relative master-side paths of steps resolve here).
    pub fn master_dir(&self) -> &Path {
        &self.master_dir
    }

    /// Starts `kiln start DIR` and waits until `GET /api/v2/builders` answers.
    async fn launch(&mut self) -> Result<(), String> {
        self.runs += 1;
        let output = self.test_dir().join(format!("master-{}.out", self.runs));
        let mut command = Command::new(kiln_bin());
        command.args(&self.global_args).arg("start").arg(&self.master_dir).current_dir(&self.master_dir);
        if !self.colour_allowed {
            command.env("NO_COLOR", "1");
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        if let Some(limit) = self.fd_limit {
            use nix::sys::resource::{setrlimit, Resource};
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is a system call, async-signal-safe; the error is built from an errno.
            unsafe {
                command
                    .pre_exec(move || setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(std::io::Error::from));
            }
        }
        let label = format!("kiln master (run {})", self.runs);
        if let Some(old) = self.api.master.replace(ChildProcess::spawn(&label, &mut command, output, Vec::new())) {
            self.api.dead.push(old);
        }
        self.poll("the master's API to answer", START_TIMEOUT, async || self.try_get("builders").await.map(|_| ()))
            .await
    }

    /// What the master process started last printed so far (its stdout and stderr).
    pub fn last_output(&self) -> String {
        let path = self.test_dir().join(format!("master-{}.out", self.runs));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits until the master's output (of its last start) has a line containing `text`; returns that line.
    pub async fn wait_output_line(&self, text: &str) -> String {
        self.wait_for(&format!("a line with {text:?} in the master's output"), BUILD_TIMEOUT, async || {
            self.last_output().lines().find(|l| l.contains(text)).map(str::to_owned)
        })
        .await
    }

    /// Starts the master again, in the same directory with the same ports, after it was killed or stopped.
    pub async fn restart(&mut self) {
        if self.master_process().is_some_and(|m| m.exit_status().is_none()) {
            self.fail("restart: the master still runs; kill or stop it first");
        }
        if let Err(why) = self.launch().await {
            self.fail(&format!("restarting the master: {why}"));
        }
    }

    /// Sends `signal` to the master and waits for it to exit; returns its exit status.
    pub async fn kill_master(&mut self, signal: Signal) -> ExitStatus {
        let Some(master) = self.master_process() else { self.fail("kill_master: no master process") };
        master.signal(signal);
        match master.wait_exit(EXIT_TIMEOUT).await {
            Some(status) => status,
            None => self.fail(&format!("the master did not exit within {EXIT_TIMEOUT:?} of {signal}")),
        }
    }

    /// Waits for the master process to exit (e.g. after `kiln stop`); returns its exit status.
    pub async fn wait_master_exit(&self) -> ExitStatus {
        let Some(master) = self.master_process() else { self.fail("wait_master_exit: no master process") };
        match master.wait_exit(EXIT_TIMEOUT).await {
            Some(status) => status,
            None => self.fail(&format!("the master did not exit within {EXIT_TIMEOUT:?}")),
        }
    }

    /// Sends `signal` to worker `name` (SIGSTOP, SIGCONT…) without waiting for anything.
    pub fn signal_worker(&self, name: &str, signal: Signal) {
        match self.api.workers.iter().find(|(n, _)| n == name) {
            Some((_, worker)) => worker.signal(signal),
            None => self.fail(&format!("signal_worker: no worker {name:?} was started")),
        }
    }

    /// Sends `signal` to worker `name` and waits for it to exit.
    pub async fn kill_worker(&mut self, name: &str, signal: Signal) -> ExitStatus {
        let Some(index) = self.api.workers.iter().position(|(n, _)| n == name) else {
            self.fail(&format!("kill_worker: no worker {name:?} was started"))
        };
        let (_, worker) = self.api.workers.remove(index);
        worker.signal(signal);
        let status = worker.wait_exit(EXIT_TIMEOUT).await;
        self.api.dead.push(worker);
        status
            .unwrap_or_else(|| self.fail(&format!("worker {name:?} did not exit within {EXIT_TIMEOUT:?} of {signal}")))
    }

    /// A new API token of the test admin (role `admin`), for the client commands' `--token`.
    pub async fn admin_token(&self) -> String {
        let url = format!("{}/api/v2/tokens", self.url());
        let request = self.http().post(&url).json(&json!({ "name": "tests", "role": "admin", "expires": "1d" }));
        let response = match self.authorized(request).send().await {
            Ok(response) => response,
            Err(e) => self.fail(&format!("POST {url}: {e}")),
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match body["tokens"][0]["token"].as_str() {
            Some(token) if status.is_success() => token.to_string(),
            _ => self.fail(&format!("POST {url}: HTTP {status}: {body}")),
        }
    }

    /// The builder id of `builder`.
    pub async fn builder_id(&self, builder: &str) -> i64 {
        self.id(&self.get_one(&format!("builders/{builder}")).await, "builderid")
    }

    /// Forces a build of `builder` through `force-<builder>` (JSON-RPC); returns the build request id.
    pub async fn force(&self, builder: &str) -> i64 {
        self.force_with(builder, json!({})).await
    }

    /// Forces a build of `builder` with more force parameters (`params`: properties, `owner`…); returns the
    /// build request id.
    pub async fn force_with(&self, builder: &str, params: Value) -> i64 {
        let builderid = self.builder_id(builder).await;
        let mut all = json!({ "builderid": builderid, "reason": "kiln end-to-end test" });
        for (key, value) in params.as_object().into_iter().flatten() {
            all[key] = value.clone();
        }
        let result = self.rpc(&format!("forceschedulers/force-{builder}"), "force", all).await;
        result[1][builderid.to_string()]
            .as_i64()
            .unwrap_or_else(|| self.fail(&format!("unexpected answer to force: {result}")))
    }

    /// Posts `change` (the base dialect's JSON) to `/change_hook/base` with the bearer token `token`; fails the
    /// test unless the hook accepts it.
    pub async fn send_change(&self, token: &str, change: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/change_hook/base", self.url()))
            .bearer_auth(token)
            .json(&change)
            .send()
            .await
            .expect("POST change_hook/base");
        if !response.status().is_success() {
            let text = response.text().await.unwrap_or_default();
            self.fail(&format!("change_hook/base refused a change: {text}"));
        }
    }

    /// Waits until build request `brid` is complete; returns it.
    pub async fn wait_request_complete(&self, brid: i64) -> Value {
        self.wait_for(&format!("build request {brid} to complete"), BUILD_TIMEOUT, async || {
            let request = self.try_get(&format!("buildrequests/{brid}")).await?;
            let request = request["buildrequests"].get(0)?.clone();
            request["complete"].as_bool()?.then_some(request)
        })
        .await
    }

    /// The build request `brid`.
    pub async fn request(&self, brid: i64) -> Value {
        self.get_one(&format!("buildrequests/{brid}")).await
    }

    /// The builds of request `brid`, by build id.
    pub async fn builds_of_request(&self, brid: i64) -> Vec<Value> {
        let builds = self.get(&format!("buildrequests/{brid}/builds")).await;
        let mut builds = builds["builds"].as_array().cloned().unwrap_or_default();
        builds.sort_by_key(|b| b["buildid"].as_i64());
        builds
    }

    /// Waits until request `brid` has at least `n` builds; returns them (by build id).
    pub async fn wait_builds_of_request(&self, brid: i64, n: usize) -> Vec<Value> {
        self.wait_for(&format!("build request {brid} to have {n} builds"), BUILD_TIMEOUT, async || {
            let builds = self.try_get(&format!("buildrequests/{brid}/builds")).await?;
            let mut builds = builds["builds"].as_array()?.clone();
            builds.sort_by_key(|b| b["buildid"].as_i64());
            (builds.len() >= n).then_some(builds)
        })
        .await
    }

    /// Waits until build `buildid` is complete; returns it.
    pub async fn wait_build_complete(&self, buildid: i64) -> Value {
        self.wait_for(&format!("build {buildid} to complete"), BUILD_TIMEOUT, async || {
            let build = self.try_get(&format!("builds/{buildid}")).await?;
            let build = build["builds"].get(0)?.clone();
            build["complete"].as_bool()?.then_some(build)
        })
        .await
    }

    /// The build `buildid`.
    pub async fn build(&self, buildid: i64) -> Value {
        self.get_one(&format!("builds/{buildid}")).await
    }
}
