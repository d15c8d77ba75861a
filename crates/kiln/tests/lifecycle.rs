//! End-to-end tests of a master's life as an operator sees it: one master per directory, the signals `kiln start`
//! acts on, `kiln stop`, the API's address, workers pointed at the wrong port, what `kiln force --wait` prints
//! and what the master's log looks like.
//!
//!     cargo test -p kiln --test lifecycle

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::buildbot::{results, WorkerKind};
use support::kiln::{run_kiln, show, KilnMaster, BUILD_TIMEOUT};
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

// ---------------------------------------------------------------------------------------------------------------
// Signals.

/// SIGHUP does not kill the master (Buildbot users send it to reconfigure): it is logged, and the master keeps
/// answering and building.
#[tokio::test]
async fn sighup_is_logged_and_the_master_keeps_running() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("quick", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo hi\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let pid = master.master_process().expect("the master runs").pid().as_raw();

    master.master_process().expect("the master runs").signal(Signal::SIGHUP);
    master.wait_output_line("SIGHUP received: reload is not implemented yet").await;
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
