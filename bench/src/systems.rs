//! The two systems under test, Kiln and Buildbot 4.3.0, each as a master and one worker on 127.0.0.1,
//! started from the same [`Builder`] descriptions, and driven through their (shared) REST API shapes.
//!
//! Both masters use SQLite, one worker named `w`, and a force scheduler `force-<builder>` per builder. The
//! Kiln worker is declared with `max_builds = 1`: Buildbot runs at most one build of a builder on a worker at
//! a time (they share its directory), and every workload here has one builder. Request collapsing is turned
//! off on both (`collapseRequests = False`, `collapse_requests = false`): every forced build must run.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::Env;

const WORKER: &str = "w";
const PASSWORD: &str = "bench-pass";
/// The user Kiln's control calls log in as (HTTP Basic from 127.0.0.1), and the argon2 hash of its password with
/// argon2's smallest cost (a login is not what is measured).
const USER: (&str, &str) = ("bench", "kiln-test-password");
const USER_HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$a2lsbi10ZXN0LXNhbHQ$QXq7j3egqTpIiaCCSe5AdBnGT+vRQNgIoDSocFatnfg";
/// How long a master gets to serve its API and worker port, and a worker to attach.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopped process gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kiln,
    Buildbot,
}

/// A builder as both systems get it: shell steps (`/bin/sh -c COMMAND`) with these names.
pub struct Builder {
    pub name: String,
    pub steps: Vec<(String, String)>,
}

/// What a workload adds to the plain setup (one worker `w` for every builder): more workers, and config text
/// of each system's own (change sources, schedulers, webhooks), appended to the generated config.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Workers declared besides `w` (same password, `max_builds = 1` on Kiln).
    pub workers: Vec<String>,
    /// The workers the builders use instead of `w`.
    pub builder_workers: Option<Vec<String>>,
    /// Appended to Kiln's `master.toml`.
    pub kiln_toml: String,
    /// Appended to Buildbot's `master.cfg`.
    pub buildbot_cfg: String,
    /// The worker's system when it is not the master's (a stock `buildbot-worker` on a Kiln master).
    pub worker_kind: Option<Kind>,
}

impl Extras {
    fn all_workers(&self) -> Vec<String> {
        std::iter::once(WORKER.to_owned()).chain(self.workers.iter().cloned()).collect()
    }

    fn builder_workers(&self) -> Vec<String> {
        self.builder_workers.clone().unwrap_or_else(|| vec![WORKER.to_owned()])
    }
}

impl Builder {
    pub fn new(name: &str, steps: &[(&str, &str)]) -> Builder {
        let steps = steps.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect();
        Builder { name: name.to_owned(), steps }
    }
}

/// A string literal valid in both TOML and Python (a JSON string is both).
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The password of every worker.
pub const WORKER_PASSWORD: &str = PASSWORD;

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process (master or worker) with its output in a file; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    label: String,
    child: Child,
    /// Files worth showing when something goes wrong: its output, its log.
    logs: Vec<PathBuf>,
}

impl Proc {
    pub fn spawn(label: &str, command: &mut Command, output: &Path, logs: Vec<PathBuf>) -> Result<Proc> {
        let out = std::fs::File::create(output)?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        // SAFETY: set_pdeathsig is one prctl(2) call, async-signal-safe. It makes the child get SIGTERM if the
        // bench dies without unwinding (SIGKILL, abort), so no master or worker outlives it. The bench runs on
        // one thread (current-thread runtime), the thread whose death the kernel watches.
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
        }
        let child = command.spawn().with_context(|| format!("cannot start {label}: {command:?}"))?;
        let mut logs = logs;
        logs.insert(0, output.to_owned());
        Ok(Proc { label: label.to_owned(), child, logs })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; waits for the exit.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("  {} did not stop within {STOP_TIMEOUT:?}: SIGKILL", self.label);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn tails(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            let _ = write!(out, "--- {} ({}):\n{tail}\n", self.label, path.display());
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A master and its worker, of either kind, in a scratch directory (removed on drop unless `--keep`).
pub struct System {
    pub kind: Kind,
    /// The worker's system (the master's unless [`Extras::worker_kind`] says otherwise).
    pub worker_kind: Kind,
    env: Env,
    master_dir: PathBuf,
    worker_dir: PathBuf,
    api: String,
    worker_port: u16,
    http: reqwest::Client,
    // Before `dir`, so that they are stopped before it is removed; the worker before the master.
    worker: Option<Proc>,
    master: Option<Proc>,
    dir: tempfile::TempDir,
}

impl System {
    /// Writes the master's config and creates the worker, without starting anything.
    pub fn create(env: &Env, kind: Kind, builders: &[Builder]) -> Result<System> {
        System::create_with(env, kind, builders, &Extras::default())
    }

    /// [`System::create`] with a workload's [`Extras`].
    pub fn create_with(env: &Env, kind: Kind, builders: &[Builder], extras: &Extras) -> Result<System> {
        let dir = tempfile::Builder::new().prefix(&format!("{kind:?}-").to_lowercase()).tempdir_in(&env.scratch)?;
        if env.keep {
            eprintln!("  keeping {}", dir.path().display());
        }
        let dir_path = dir.path().to_owned();
        let (web_port, worker_port) = (free_port()?, free_port()?);
        let worker_kind = extras.worker_kind.unwrap_or(kind);
        let mut system = System {
            kind,
            worker_kind,
            env: env.clone(),
            master_dir: dir_path.join("master"),
            worker_dir: dir_path.join("worker"),
            api: format!("http://127.0.0.1:{web_port}/api/v2/"),
            worker_port,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            worker: None,
            master: None,
            dir,
        };
        if env.keep {
            system.dir.disable_cleanup(true);
        }
        let master_addr = format!("127.0.0.1:{worker_port}");
        match kind {
            Kind::Kiln => {
                std::fs::create_dir_all(&system.master_dir)?;
                std::fs::write(
                    system.master_dir.join("master.toml"),
                    kiln_toml(builders, extras, web_port, worker_port),
                )?;
            }
            Kind::Buildbot => {
                run_setup(Command::new(env.venv.join("bin/buildbot")).arg("create-master").arg(&system.master_dir))?;
                std::fs::write(
                    system.master_dir.join("master.cfg"),
                    buildbot_cfg(builders, extras, web_port, worker_port),
                )?;
            }
        }
        match worker_kind {
            Kind::Kiln => {
                run_setup(Command::new(&env.kiln_worker).arg("create").arg(&system.worker_dir).args([
                    "--master",
                    &master_addr,
                    "--name",
                    WORKER,
                    "--password",
                    PASSWORD,
                ]))?;
            }
            Kind::Buildbot => {
                run_setup(
                    Command::new(env.venv.join("bin/buildbot-worker"))
                        .args(["create-worker", "--protocol=msgpack_experimental_v7"])
                        .arg(&system.worker_dir)
                        .args([&master_addr, WORKER, PASSWORD]),
                )?;
            }
        }
        Ok(system)
    }

    /// [`System::create`], then starts the master and the worker and waits until the worker is attached.
    pub async fn start(env: &Env, kind: Kind, builders: &[Builder]) -> Result<System> {
        System::start_with(env, kind, builders, &Extras::default()).await
    }

    /// [`System::start`] with a workload's [`Extras`].
    pub async fn start_with(env: &Env, kind: Kind, builders: &[Builder], extras: &Extras) -> Result<System> {
        let mut system = System::create_with(env, kind, builders, extras)?;
        system.spawn_master()?;
        system.wait_master_ready(START_TIMEOUT).await?;
        system.spawn_worker()?;
        system.wait_worker_attached(START_TIMEOUT).await?;
        Ok(system)
    }

    pub fn spawn_master(&mut self) -> Result<()> {
        let output = self.dir.path().join("master.out");
        let process = match self.kind {
            Kind::Kiln => Proc::spawn(
                "kiln master",
                Command::new(&self.env.kiln).arg("start").arg(&self.master_dir),
                &output,
                vec![],
            )?,
            Kind::Buildbot => Proc::spawn(
                "buildbot master",
                Command::new(self.env.venv.join("bin/buildbot"))
                    .args(["start", "--nodaemon"])
                    .arg(&self.master_dir)
                    .current_dir(&self.master_dir),
                &output,
                vec![self.master_dir.join("twistd.log")],
            )?,
        };
        self.master = Some(process);
        Ok(())
    }

    pub fn spawn_worker(&mut self) -> Result<()> {
        let output = self.dir.path().join("worker.out");
        let process = match self.worker_kind {
            Kind::Kiln => Proc::spawn(
                "kiln-worker",
                Command::new(&self.env.kiln_worker).arg("start").arg(&self.worker_dir),
                &output,
                vec![],
            )?,
            Kind::Buildbot => Proc::spawn(
                "buildbot-worker",
                Command::new(self.env.venv.join("bin/buildbot-worker"))
                    .args(["start", "--nodaemon"])
                    .arg(&self.worker_dir),
                &output,
                vec![self.worker_dir.join("twistd.log")],
            )?,
        };
        self.worker = Some(process);
        Ok(())
    }

    /// Stops the worker, then the master.
    pub fn stop(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.stop();
        }
        if let Some(mut master) = self.master.take() {
            master.stop();
        }
    }

    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().map(Proc::pid)
    }

    pub fn worker_pid(&self) -> Option<u32> {
        self.worker.as_ref().map(Proc::pid)
    }

    /// The scratch directory of this system.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `host:port` of the master's worker port.
    pub fn worker_address(&self) -> String {
        format!("127.0.0.1:{}", self.worker_port)
    }

    /// The web server's root URL (`http://127.0.0.1:PORT/`).
    pub fn web_url(&self) -> &str {
        self.api.trim_end_matches("api/v2/")
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The master's SQLite database file.
    pub fn store_path(&self) -> PathBuf {
        self.master_dir.join("state.sqlite")
    }

    /// Waits until the master answers on its REST API and accepts connections on its worker port.
    pub async fn wait_master_ready(&mut self, timeout: Duration) -> Result<()> {
        let port = self.worker_port;
        self.poll("the master to serve its API and worker port", timeout, async |s: &System| {
            let api = s.try_get("builders").await.is_ok();
            Ok((api && TcpStream::connect(("127.0.0.1", port)).is_ok()).then_some(()))
        })
        .await
    }

    pub async fn wait_worker_attached(&mut self, timeout: Duration) -> Result<()> {
        self.poll("the worker to attach", timeout, async |s: &System| {
            let Ok(workers) = s.try_get(&format!("workers/{WORKER}")).await else { return Ok(None) };
            Ok(workers["workers"][0]["connected_to"].as_array().is_some_and(|m| !m.is_empty()).then_some(()))
        })
        .await
    }

    /// Polls `probe` until it yields a value, for at most `timeout`. Between probes it sleeps 4 times as long
    /// as the probe took (at least 2 ms, at most 200 ms), so that polling costs a master at most a fifth of
    /// its time. Fails early if the master or the worker exits.
    pub async fn poll<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut(&System) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let started = Instant::now();
            if let Some(value) = probe(self).await? {
                return Ok(value);
            }
            let exited = self.master.iter_mut().chain(self.worker.iter_mut()).find_map(|p| {
                let status = p.exited()?;
                Some(format!("{} exited ({status})", p.label))
            });
            if let Some(exited) = exited {
                bail!("{exited} while waiting for {what}\n{}", self.diagnostics());
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}\n{}", self.diagnostics());
            }
            let pause = (started.elapsed() * 4).clamp(Duration::from_millis(2), Duration::from_millis(200));
            tokio::time::sleep(pause).await;
        }
    }

    /// The tails of the master's and the worker's output and logs.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("(scratch directory: {}; --keep keeps it)\n", self.dir.path().display());
        for process in self.master.iter().chain(&self.worker) {
            out.push_str(&process.tails());
        }
        out
    }

    /// One GET of `/api/v2/{path}` (5 s at most), as JSON.
    pub async fn try_get(&self, path: &str) -> Result<Value> {
        let response = self.http.get(format!("{}{path}", self.api)).timeout(Duration::from_secs(5)).send().await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "GET {path}: HTTP {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// GET `/api/v2/{path}`, tried up to 4 times: Buildbot 4.3.0 now and then leaves a response half-sent
    /// (it writes JSON from a thread), and a new connection gets it.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let mut tries = 0;
        loop {
            match self.try_get(path).await {
                Ok(value) => return Ok(value),
                Err(e) if tries < 3 && e.downcast_ref::<reqwest::Error>().is_some() => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The only element of the list a single resource comes in (`{"builders": [{...}], "meta": ...}`).
    pub async fn get_one(&self, path: &str) -> Result<Value> {
        let value = self.get(path).await?;
        let list = value.as_object().and_then(|o| o.iter().find(|(k, _)| *k != "meta")).and_then(|(_, v)| v.as_array());
        match list.map(Vec::as_slice) {
            Some([one]) => Ok(one.clone()),
            _ => bail!("GET {path}: expected one resource, got {value}"),
        }
    }

    pub async fn builder_id(&self, builder: &str) -> Result<i64> {
        let builder = self.get_one(&format!("builders/{builder}")).await?;
        builder["builderid"].as_i64().context("no builderid")
    }

    /// Forces a build of `builder` (builder id `builder_id`) through `force-<builder>`; returns the request id.
    pub async fn force(&self, builder: &str, builder_id: i64) -> Result<i64> {
        let body = json!({"jsonrpc": "2.0", "method": "force", "params": {"builderid": builder_id}, "id": 1});
        let url = format!("{}forceschedulers/force-{builder}", self.api);
        let mut request = self.http.post(&url).json(&body);
        if self.kind == Kind::Kiln {
            request = request.basic_auth(USER.0, Some(USER.1));
        }
        let response = request.send().await.with_context(|| format!("POST {url}"))?;
        let text = response.text().await?;
        let reply: Value = serde_json::from_str(&text).with_context(|| format!("POST {url}: {text}"))?;
        reply["result"][1][builder_id.to_string()].as_i64().with_context(|| format!("POST {url}: {text}"))
    }

    /// The last build of request `brid`.
    pub async fn build_of(&self, brid: i64) -> Result<Value> {
        let builds = self.get(&format!("buildrequests/{brid}/builds")).await?;
        builds["builds"].as_array().and_then(|b| b.last()).cloned().with_context(|| format!("no build for {brid}"))
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a setup command to completion (bounded: these take seconds), failing with its output.
pub fn run_setup(command: &mut Command) -> Result<()> {
    run_setup_within(command, Duration::from_secs(120))
}

/// [`run_setup`], killing the command after `timeout`. (It blocks the thread: setup runs between
/// measurements.)
pub fn run_setup_within(command: &mut Command, timeout: Duration) -> Result<()> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            bail!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn kiln_toml(builders: &[Builder], extras: &Extras, web_port: u16, worker_port: u16) -> String {
    let mut toml = format!(
        "# Generated by kiln-bench (bench/src/systems.rs).
title = \"kiln bench\"

[store]
url = \"sqlite:state.sqlite\"

[worker_listener]
address = \"127.0.0.1:{worker_port}\"

[web]
address = \"127.0.0.1:{web_port}\"
",
    );
    for worker in extras.all_workers() {
        let _ = write!(toml, "\n[[worker]]\nname = {}\npassword = {}\nmax_builds = 1\n", lit(&worker), lit(PASSWORD));
    }
    let workers: Vec<String> = extras.builder_workers().iter().map(|w| lit(w)).collect();
    for builder in builders {
        let _ = write!(
            toml,
            "\n[[builder]]\nname = {}\nworkers = [{}]\ncollapse_requests = false\n",
            lit(&builder.name),
            workers.join(", ")
        );
        for (name, command) in &builder.steps {
            let _ = write!(toml, "\n  [[builder.step]]\n  name = {}\n  command = {}\n", lit(name), lit(command));
        }
    }
    toml.push_str(&extras.kiln_toml);
    let _ =
        write!(toml, "\n[[user]]\nname = {}\npassword_hash = {}\nroles = [\"admin\"]\n", lit(USER.0), lit(USER_HASH));
    toml
}

fn buildbot_cfg(builders: &[Builder], extras: &Extras, web_port: u16, worker_port: u16) -> String {
    let mut cfg = format!(
        "# Generated by kiln-bench (bench/src/systems.rs).
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c['title'] = 'kiln bench'
c['buildbotURL'] = 'http://127.0.0.1:{web_port}/'
c['www'] = {{'port': 'tcp:{web_port}:interface=127.0.0.1'}}
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
c['collapseRequests'] = False
c['workers'] = [worker.Worker(name, {password}) for name in {workers}]
c['builders'] = []
c['schedulers'] = []
",
        workers = serde_json::to_string(&extras.all_workers()).expect("strings serialise"),
        password = lit(PASSWORD),
    );
    let workers = serde_json::to_string(&extras.builder_workers()).expect("strings serialise");
    for builder in builders {
        let steps: Vec<String> = builder
            .steps
            .iter()
            .map(|(name, command)| format!("steps.ShellCommand(name={}, command={})", lit(name), lit(command)))
            .collect();
        let _ = write!(
            cfg,
            "
c['builders'].append(util.BuilderConfig(name={name}, workernames={workers},
    factory=util.BuildFactory([{steps}])))
c['schedulers'].append(schedulers.ForceScheduler(name={force}, builderNames=[{name}]))
",
            name = lit(&builder.name),
            steps = steps.join(", "),
            force = lit(&format!("force-{}", builder.name)),
        );
    }
    cfg.push_str(&extras.buildbot_cfg);
    cfg
}
