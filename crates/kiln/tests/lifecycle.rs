//! End-to-end tests of a master's life as an operator sees it: one master per directory, the signals `kiln start`
//! acts on, `kiln stop`, the API's address, workers pointed at the wrong port, what `kiln force --wait` prints
//! and what the master's log looks like.
//!
//!     cargo test -p kiln --test lifecycle

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::buildbot::{results, WorkerKind};
use support::kiln::{run_kiln, show, toml_str, KilnMaster, BUILD_TIMEOUT};
use support::{processes_matching, unique_marker, KillOnDrop};

/// A builder whose one step runs `sleep <marker>` (until the build is stopped).
fn sleeping_builder(marker: u64) -> String {
    format!("[[builder.step]]\nname = \"sleep\"\ncommand = \"sleep {marker}\"\ntimeout = 0\n")
}

/// Forces `builder` and waits until its build runs `sleep <marker>`; returns the request and build ids.
async fn start_sleeping_build(master: &KilnMaster, builder: &str, marker: u64) -> (i64, i64) {
    let brid = master.force(builder).await;
    let needle = format!("sleep {marker}");
    master
        .wait_for(&format!("`{needle}` to run"), BUILD_TIMEOUT, async || {
            (!processes_matching(&needle).is_empty()).then_some(())
        })
        .await;
    let builds = master.wait_builds_of_request(brid, 1).await;
    (brid, master.id(&builds[0], "buildid"))
}

fn dir_arg(master: &KilnMaster) -> String {
    master.master_dir().to_str().expect("a UTF-8 path").to_owned()
}

/// The pid `kiln.pid` names.
fn pid_file(master: &KilnMaster) -> Option<i32> {
    std::fs::read_to_string(master.master_dir().join("kiln.pid")).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------------------------
// One master per directory.

/// A second `kiln start` on the directory of a running master is refused before it touches the store: the first
/// master's running build goes on (it is not ended RETRY), and the refusal names the running pid and `kiln stop`.
#[tokio::test]
async fn a_second_start_is_refused_and_leaves_the_running_master_alone() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let mut master = KilnMaster::builder().worker("w", "pw").builder("slow", &sleeping_builder(marker)).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let (brid, buildid) = start_sleeping_build(&master, "slow", marker).await;
    let pid = master.master_process().expect("the master runs").pid().as_raw();
    assert_eq!(pid_file(&master), Some(pid), "kiln.pid names the running master");

    let out = run_kiln(&["start", &dir_arg(&master)], Duration::from_secs(30)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains(&format!("pid {pid}")) || !stderr.contains("kiln stop") {
        master
            .fail(&format!("a second kiln start: expected a refusal naming pid {pid} and `kiln stop` {}", show(&out)));
    }
    assert!(!stderr.contains("in use"), "refused before binding a port {}", show(&out));

    // The first master and its build are untouched: the build still runs, then stops CANCELLED when asked.
    let build = master.build(buildid).await;
    assert_eq!(build["complete"], false, "the running build was ended by the second start: {build:#}");
    assert_eq!(pid_file(&master), Some(pid), "kiln.pid still names the running master");
    master.stop_build(buildid).await;
    master.wait_request_complete(brid).await;
    let build = master.wait_build_complete(buildid).await;
    assert_eq!(master.results(&build), results::CANCELLED, "build: {build:#}");
}

/// A `kiln.pid` left by a killed master (its process gone) does not stop the next start, which writes its own.
#[tokio::test]
async fn a_stale_pid_file_is_taken_over() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("quick", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo hi\"\n")
        .start()
        .await;
    let old = master.master_process().expect("the master runs").pid().as_raw();
    master.kill_master(Signal::SIGKILL).await;
    assert_eq!(pid_file(&master), Some(old), "a killed master leaves its kiln.pid");

    master.restart().await;
    let new = master.master_process().expect("the master runs").pid().as_raw();
    assert_eq!(pid_file(&master), Some(new), "the new master wrote its pid");
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("quick").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
}

/// `kiln start DIR` as a child process with its output piped (no harness: for tests of starts that are refused).
fn spawn_start(dir: &std::path::Path) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(support::kiln::kiln_bin());
    command.arg("start").arg(dir).env("NO_COLOR", "1").kill_on_drop(true);
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped()).spawn().expect("spawn kiln start")
}

/// A directory with a `master.toml` on free ports; returns it and the web port.
fn master_dir() -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (worker_port, web_port) = support::process::free_ports();
    let toml = KilnMaster::builder().worker("w", "pw").master_toml(worker_port, web_port);
    std::fs::write(dir.path().join("master.toml"), toml).expect("write master.toml");
    (dir, web_port)
}

/// Waits until the master `running` answers on `web_port`, then stops it with SIGTERM: it must exit 0.
async fn answers_then_stops(mut running: tokio::process::Child, web_port: u16) {
    let url = format!("http://127.0.0.1:{web_port}/api/v2/builders");
    let deadline = std::time::Instant::now() + BUILD_TIMEOUT;
    while reqwest::get(&url).await.map(|r| r.status().is_success()).ok() != Some(true) {
        if let Some(status) = running.try_wait().expect("try_wait") {
            let output = running.wait_with_output().await.expect("output");
            panic!("kiln start exited ({status}) {}", show(&output));
        }
        assert!(std::time::Instant::now() < deadline, "the running master does not answer on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = running.id().expect("the running start's pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM the master");
    let status = tokio::time::timeout(BUILD_TIMEOUT, running.wait()).await.expect("exit after SIGTERM");
    assert!(status.expect("wait").success(), "the running master's exit");
}

/// Of two `kiln start`s racing on one fresh directory, one runs and the other is refused.
#[tokio::test]
async fn of_two_starts_at_once_one_runs() {
    let (dir, web_port) = master_dir();
    let (mut first, mut second) = (spawn_start(dir.path()), spawn_start(dir.path()));
    // The refused one exits; the other runs until it is stopped.
    let (refused, running) = tokio::select! {
        _ = first.wait() => (first, second),
        _ = second.wait() => (second, first),
        () = tokio::time::sleep(BUILD_TIMEOUT) => panic!("neither kiln start exited within {BUILD_TIMEOUT:?}"),
    };
    let refused = refused.wait_with_output().await.expect("the refused start's output");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("kiln stop"), "the start that exited {}", show(&refused));
    answers_then_stops(running, web_port).await;
}

/// Without the lock held, a `kiln.pid` naming a live Kiln process (a master of a version before the lock) is
/// respected; one naming a live process of another program (a reused pid) is taken over.
#[tokio::test]
async fn a_pid_file_naming_a_live_kiln_is_respected_without_the_lock() {
    let other = KilnMaster::builder().worker("w", "pw").start().await;
    let kiln_pid = other.master_process().expect("the master runs").pid().as_raw();
    let (dir, web_port) = master_dir();
    std::fs::write(dir.path().join("kiln.pid"), format!("{kiln_pid}\n")).expect("write kiln.pid");
    let out = spawn_start(dir.path()).wait_with_output().await.expect("kiln start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("pid {kiln_pid}")), "{}", show(&out));
    assert!(!dir.path().join("state.sqlite").exists(), "the refused start opened the store");

    std::fs::write(dir.path().join("kiln.pid"), format!("{}\n", std::process::id())).expect("write kiln.pid");
    answers_then_stops(spawn_start(dir.path()), web_port).await;
}

/// `kiln stop` on a directory whose master is gone, its `kiln.pid` naming a live process of another program (the
/// pid reused), signals nothing: it says no master runs and removes the stale file.
#[tokio::test]
async fn kiln_stop_signals_no_stranger_named_by_a_stale_pid_file() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let mut stranger =
        tokio::process::Command::new("sleep").arg(marker.to_string()).kill_on_drop(true).spawn().expect("spawn sleep");
    let pid = stranger.id().expect("sleep's pid");
    let (dir, _) = master_dir();
    std::fs::write(dir.path().join("kiln.pid"), format!("{pid}\n")).expect("write kiln.pid");
    let out = run_kiln(&["stop", dir.path().to_str().expect("a UTF-8 path")], Duration::from_secs(30)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no master runs"), "{}", show(&out));
    assert!(stranger.try_wait().expect("try_wait").is_none(), "kiln stop signalled process {pid}, not a master");
    assert!(!dir.path().join("kiln.pid").exists(), "the stale kiln.pid is left");
}

// ---------------------------------------------------------------------------------------------------------------
// Signals.

/// SIGHUP does not kill the master (Buildbot users send it to reconfigure): it reloads the config (here
/// unchanged), and the master keeps answering and building. (tests/reconfig.rs tests what a reload changes.)
#[tokio::test]
async fn sighup_reloads_and_the_master_keeps_running() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("quick", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo hi\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let pid = master.master_process().expect("the master runs").pid().as_raw();

    master.master_process().expect("the master runs").signal(Signal::SIGHUP);
    master.wait_output_line("reconfig: nothing changed").await;
    assert!(master.master_process().is_some_and(|m| m.exit_status().is_none()), "the master exited on SIGHUP");
    assert_eq!(pid_file(&master), Some(pid), "kiln.pid still names the master");
    let brid = master.force("quick").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
}

/// After `kiln stop --clean` gives up waiting for a long build, a plain `kiln stop` (SIGTERM) stops the master at
/// once: the build ends RETRY and runs again at the next start.
#[tokio::test]
async fn sigterm_during_a_clean_stop_stops_at_once() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let mut master = KilnMaster::builder().worker("w", "pw").builder("slow", &sleeping_builder(marker)).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let (_, buildid) = start_sleeping_build(&master, "slow", marker).await;
    let dir = dir_arg(&master);

    let clean = run_kiln(&["stop", &dir, "--clean", "--timeout", "2"], Duration::from_secs(30)).await;
    if clean.status.success() || !String::from_utf8_lossy(&clean.stderr).contains("still runs") {
        master.fail(&format!("kiln stop --clean returned while the build runs {}", show(&clean)));
    }
    master.wait_output_line("clean stop: no new build starts").await;
    assert!(master.master_process().is_some_and(|m| m.exit_status().is_none()), "the clean stop did not wait");

    // `kiln stop` waits until the master's pid is gone: this process, the master's parent, reaps it meanwhile.
    let args = ["stop", &dir, "--timeout", "30"];
    let (stop, status) = tokio::join!(run_kiln(&args, Duration::from_secs(40)), master.wait_master_exit());
    if !stop.status.success() || !status.success() {
        master.fail(&format!("kiln stop after kiln stop --clean: master exited {status} {}", show(&stop)));
    }
    assert!(master.last_output().contains("second stop signal: stopping now"), "{}", master.last_output());
    master.restart().await;
    let build = master.build(buildid).await;
    assert_eq!(master.results(&build), results::RETRY, "the build the master stopped: {build:#}");
}

// ---------------------------------------------------------------------------------------------------------------
// The API's address.

/// `GET /api/v2/` (the address `kiln start` prints) answers as `GET /api/v2`.
#[tokio::test]
async fn the_api_root_answers_with_and_without_a_slash() {
    let master = KilnMaster::builder().worker("w", "pw").start().await;
    let printed = master
        .wait_output_line("Kiln master running: API ")
        .await
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches(',').to_owned())
        .unwrap_or_else(|| master.fail("no API address in the start line"));
    assert!(printed.ends_with("/api/v2/"), "{printed}");
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();
    for url in [printed.clone(), printed.trim_end_matches('/').to_owned()] {
        let response = http.get(&url).send().await.unwrap_or_else(|e| master.fail(&format!("GET {url}: {e}")));
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
        let body: serde_json::Value = response.json().await.unwrap_or_else(|e| master.fail(&format!("{url}: {e}")));
        assert!(body["endpoints"].as_array().is_some_and(|e| !e.is_empty()), "GET {url}: {body}");
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1], "/api/v2/ and /api/v2 differ");
}

// ---------------------------------------------------------------------------------------------------------------
// What `kiln force --wait` prints.

/// Runs `kiln force BUILDER --wait` on `master`; fails unless it exits 0. Returns its standard output.
async fn force_wait(master: &KilnMaster, builder: &str) -> String {
    let token = master.admin_token().await;
    let out = run_kiln(&["force", builder, "--master", master.url(), "--wait", "--token", &token], BUILD_TIMEOUT).await;
    if out.status.code() != Some(0) {
        master.fail(&format!("kiln force {builder} --wait {}", show(&out)));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every line of a log longer than a page of the API (100,000 lines) is printed once, in order.
#[tokio::test]
async fn force_wait_prints_every_line_of_a_long_log() {
    const LINES: u64 = 250_000;
    let step = format!("[[builder.step]]\nname = \"count\"\ncommand = \"seq 1 {LINES}\"\n");
    let mut master = KilnMaster::builder().worker("w", "pw").builder("count", &step).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    let stdout = force_wait(&master, "count").await;
    let numbers: Vec<u64> = stdout.lines().filter_map(|l| l.parse().ok()).collect();
    let expected: Vec<u64> = (1..=LINES).collect();
    if numbers != expected {
        let first_wrong = numbers.iter().zip(&expected).position(|(a, b)| a != b);
        master.fail(&format!(
            "kiln force --wait printed {} numbers of {LINES}; first difference at index {first_wrong:?}; last: {:?}",
            numbers.len(),
            numbers.last()
        ));
    }
    assert_eq!(stdout.lines().filter(|l| l.starts_with("--- step 'count'")).count(), 1, "one header per log");
}

/// The worker's environment is not shown unless a step asks for it with `log_environ = true`.
#[tokio::test]
async fn the_environment_is_shown_only_when_asked() {
    let marker = unique_marker();
    let step = |name: &str, extra: &str| {
        format!(
            "[[builder.step]]\nname = \"{name}\"\ncommand = \"true\"\nenv = {{ KILN_MARK = \"{marker}\" }}\n{extra}\n"
        )
    };
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("quiet", &step("quiet", ""))
        .builder("environ", &step("environ", "log_environ = true"))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    let mark = format!("  KILN_MARK={marker}");
    let quiet = force_wait(&master, "quiet").await;
    assert!(!quiet.lines().any(|l| l == " environment:" || l == mark), "the environment was shown:\n{quiet}");
    assert!(quiet.lines().any(|l| l == "program finished with exit code 0"), "{quiet}");
    let shown = force_wait(&master, "environ").await;
    assert!(shown.lines().any(|l| l == " environment:"), "no environment with log_environ = true:\n{shown}");
    assert!(shown.lines().any(|l| l == mark), "the step's variable is not in the environment shown:\n{shown}");
}

/// Runs git in `dir` with a fixed identity.
fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The git step's log has one "program finished" line per git command (none for the file commands between them,
/// which read as a second line for the previous command), and no environment.
#[tokio::test]
async fn the_git_steps_log_says_each_program_finished_once() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("create the repository");
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "one\n").expect("write a file");
    git(&repo, &["add", "a.txt"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let repourl = repo.to_str().expect("a UTF-8 path");
    // incremental: git --version, listdir, clone; then a second build: listdir, fetch, checkout.
    let step = format!("[[builder.step]]\nname = \"checkout\"\ntype = \"git\"\nrepourl = {}\n", toml_str(repourl));
    let mut master = KilnMaster::builder().worker("w", "pw").builder("git", &step).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    for _ in 0..2 {
        let brid = master.force("git").await;
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
        let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
        let log = master.log(master.id(&master.step(buildid, "checkout").await, "stepid"), "stdio").await;
        let headers = log.channel('h');
        let commands = headers.iter().filter(|l| l.starts_with(" argv: ['git'")).count();
        let finished = headers.iter().filter(|l| l.starts_with("program finished with exit code")).count();
        assert!(commands >= 3, "git --version, clone or fetch, rev-parse:\n{}", log.dump());
        assert_eq!(finished, commands, "one 'program finished' line per git command:\n{}", log.dump());
        assert!(!headers.contains(&" environment:"), "the environment was shown:\n{}", log.dump());
        let version = headers.iter().position(|l| *l == "git --version").expect("git --version ran");
        let twice = headers[version..].windows(2).take(8).any(|w| w[0] == w[1] && w[0].starts_with("program finished"));
        assert!(!twice, "a 'program finished' line twice in a row:\n{}", log.dump());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Workers and the master's address.

/// Waits until worker `name`'s output has a line containing `text`.
async fn wait_worker_output(master: &KilnMaster, name: &str, text: &str) -> String {
    let path = master.worker_output(name);
    master
        .wait_for(&format!("{text:?} in worker {name}'s output"), BUILD_TIMEOUT, async || {
            let output = std::fs::read_to_string(&path).ok()?;
            output.lines().find(|l| l.contains(text)).map(str::to_owned)
        })
        .await
}

/// SIGHUP does not kill a Kiln worker either (it used to die of it, a closed terminal too): it is logged, the
/// worker stays connected and its running build goes on to succeed.
#[tokio::test]
async fn sighup_does_not_stop_a_worker_or_its_build() {
    let gate = tempfile::tempdir().expect("tempdir");
    let go = gate.path().join("go");
    let step = format!(
        "[[builder.step]]\nname = \"gated\"\ncommand = \"while [ ! -e {} ]; do sleep 0.05; done; echo done\"\n",
        go.display()
    );
    let mut master = KilnMaster::builder().worker("w", "pw").builder("gated", &step).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("gated").await;
    master.wait_builds_of_request(brid, 1).await;

    master.signal_worker("w", Signal::SIGHUP);
    wait_worker_output(&master, "w", "SIGHUP received: ignored").await;
    std::fs::write(&go, "").expect("open the gate");
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "the build through a SIGHUP: {request:#}");
    let again = master.wait_request_complete(master.force("gated").await).await;
    assert_eq!(master.results(&again), results::SUCCESS, "a build after the SIGHUP: {again:#}");
}

/// `kiln worker create --master` takes a URL of the worker port (the worker then connects), and a worker pointed
/// at the web port says that it is the web port.
#[tokio::test]
async fn worker_create_takes_a_url_and_a_worker_at_the_web_port_says_so() {
    let mut master = KilnMaster::builder()
        .worker("w1", "pw-1")
        .worker("w2", "pw-2")
        .builder("quick", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo hi\"\n")
        .start()
        .await;
    let url = format!("http://127.0.0.1:{}/", master.worker_port());
    master.start_worker_at(WorkerKind::Kiln, "w1", &url).await;
    master.wait_worker_connected("w1").await;
    let toml = std::fs::read_to_string(master.worker_dir("w1").join("worker.toml")).expect("read worker.toml");
    let expected = format!("master = \"127.0.0.1:{}\"", master.worker_port());
    assert!(toml.lines().any(|l| l == expected), "worker.toml:\n{toml}");

    let web = format!("{}/", master.url());
    master.start_worker_at(WorkerKind::Kiln, "w2", &web).await;
    let line = wait_worker_output(&master, "w2", "the master's web port").await;
    assert!(line.contains("worker_listener.address"), "{line}");
    assert!(!line.contains("ws://http"), "{line}");

    let dir = tempfile::tempdir().expect("create a temporary directory");
    let worker_dir = dir.path().join("w");
    let worker_dir = worker_dir.to_str().expect("a UTF-8 path");
    let args = ["worker", "create", worker_dir, "--master", "ftp://h:1", "--name", "w", "--password", "p"];
    let out = run_kiln(&args, Duration::from_secs(30)).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"), "{}", show(&out));
    assert!(!dir.path().join("w/worker.toml").exists(), "a refused worker.toml was written");
}

// ---------------------------------------------------------------------------------------------------------------
// The master's log.

/// A master whose log goes to a file writes no colour codes, even without `NO_COLOR`.
#[tokio::test]
async fn a_log_redirected_to_a_file_has_no_colour_codes() {
    let master = KilnMaster::builder().worker("w", "pw").colour_allowed().start().await;
    master.wait_output_line("master running").await;
    let output = master.last_output();
    assert!(!output.contains('\u{1b}'), "colour codes in a redirected log:\n{output:?}");
}

/// What `kiln start` writes on a terminal (a pseudo-terminal from `script`) until it logs "master running";
/// `no_color` sets `NO_COLOR=1`. The master is stopped (SIGTERM) before returning.
async fn start_on_a_terminal(no_color: bool) -> String {
    use tokio::io::AsyncBufReadExt;
    let (dir, _) = master_dir();
    let command = format!("{} start {}", support::kiln::kiln_bin(), dir.path().display());
    let mut script = tokio::process::Command::new("script");
    script.args(["-q", "-e", "-c", &command, "/dev/null"]).env_remove("NO_COLOR").kill_on_drop(true);
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let mut child = script
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run `script` (util-linux) for a pseudo-terminal");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("script's stdout")).lines();
    let mut seen = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("master running") {
                return true;
            }
        }
        false
    };
    let running = tokio::time::timeout(BUILD_TIMEOUT, read).await.unwrap_or(false);
    // The master, not `script`, gets the SIGTERM: it is found by its directory on its command line.
    let needle = dir.path().display().to_string();
    for process in processes_matching(&needle).iter().filter(|p| !p.cmdline.starts_with("script")) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid), Signal::SIGTERM);
    }
    let _ = tokio::time::timeout(BUILD_TIMEOUT, child.wait()).await;
    assert!(running, "no 'master running' on the terminal:\n{seen}");
    seen
}

/// On a terminal the log is in colour, unless `NO_COLOR` is set.
#[tokio::test]
async fn colour_on_a_terminal_unless_no_color() {
    let coloured = start_on_a_terminal(false).await;
    assert!(coloured.contains("\u{1b}["), "no colour on a terminal:\n{coloured}");
    let plain = start_on_a_terminal(true).await;
    assert!(!plain.contains('\u{1b}'), "colour on a terminal with NO_COLOR set:\n{plain:?}");
}

/// `--log-format json`: every log line is a JSON object with its level, target and message.
#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    let master = KilnMaster::builder().worker("w", "pw").global_args(&["--log-format", "json"]).start().await;
    master.wait_output_line("\"master running\"").await;
    let output = master.last_output();
    let mut messages = Vec::new();
    // The one line on stdout is the start line for people.
    for line in output.lines().filter(|l| !l.starts_with("Kiln master running: ")) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string() && value["target"].is_string(), "{line}");
        messages.push(value["fields"]["message"].as_str().unwrap_or_else(|| panic!("no message: {line}")).to_owned());
    }
    assert!(messages.iter().any(|m| m == "master running"), "{messages:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// `kiln create-master`.

/// The sample `master.toml`, as written, builds on a fresh machine: with its worker connected, forcing its
/// builder succeeds.
#[tokio::test]
async fn the_sample_master_builds_and_passes() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let sample_dir = dir.path().join("sample");
    let out = run_kiln(&["create-master", sample_dir.to_str().expect("a UTF-8 path")], Duration::from_secs(30)).await;
    assert!(out.status.success(), "kiln create-master {}", show(&out));
    let sample = std::fs::read_to_string(sample_dir.join("master.toml")).expect("read the sample");
    assert!(!sample.contains("the only step type"), "a stale comment in the sample");
    let template = sample
        .replace("address = \"0.0.0.0:9989\"", "address = \"{worker_address}\"")
        .replace("address = \"127.0.0.1:8010\"", "address = \"{web_address}\"");
    assert_eq!(template.matches("_address}").count(), 2, "the sample's addresses moved:\n{sample}");

    let mut master = KilnMaster::builder().worker("linux-1", "change-me").master_toml_template(&template).start().await;
    master.start_worker(WorkerKind::Kiln, "linux-1").await;
    master.wait_worker_connected("linux-1").await;
    let brid = master.force("test").await;
    let request = master.wait_request_complete(brid).await;
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
    if master.results(&request) != results::SUCCESS {
        let mut logs = String::new();
        for step in master.steps(buildid).await {
            logs.push_str(&master.log_raw(master.id(&step, "stepid"), "stdio").await);
        }
        master.fail(&format!("the sample's build failed: {request:#}\n{logs}"));
    }
    let log = master.log(master.id(&master.step(buildid, "test").await, "stepid"), "stdio").await;
    assert!(log.has_line('o', "Hello from a Kiln build"), "the sample's test step:\n{}", log.dump());
}
