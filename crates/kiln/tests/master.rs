//! End-to-end tests of the Kiln master: `kiln start` as a child process, workers of both kinds (Kiln's and the
//! stock `buildbot-worker` 4.3.0 from the venv of `scripts/buildbot-venv`), results read back through the REST API;
//! faults (a worker or the master killed mid-build, `kiln stop`, a bad config) and the client commands.
//!
//!     cargo test -p kiln --test master

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};
use support::buildbot::{results, WorkerKind};
use support::kiln::{run_kiln, show, toml_str, KilnMaster, BUILD_TIMEOUT};
use support::{processes_matching, unique_marker, wait_no_processes, KillOnDrop};

/// How long processes a build killed may take to disappear after the build ends.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until a process whose command line contains `needle` runs.
async fn wait_process(master: &KilnMaster, needle: &str) {
    master
        .wait_for(&format!("`{needle}` to run"), BUILD_TIMEOUT, async || {
            (!processes_matching(needle).is_empty()).then_some(())
        })
        .await;
}

/// Fails (with the master's diagnostics) if a process matching `needle` is left after `REAP_TIMEOUT`.
async fn assert_no_processes(master: &KilnMaster, needle: &str) {
    if let Err(left) = wait_no_processes(needle, REAP_TIMEOUT).await {
        master.fail(&format!("processes of `{needle}` are left {REAP_TIMEOUT:?} after the build: {left:#?}"));
    }
}

/// A step that runs long (`sleep <marker>`) the first time and succeeds at once the next time: the first run
/// leaves `flag` (an absolute path shared by all workers).
fn long_then_quick_step(flag: &std::path::Path, marker: u64) -> String {
    let command = format!(
        "if [ -e '{flag}' ]; then echo second-run; else touch '{flag}'; sleep {marker}; fi",
        flag = flag.display()
    );
    format!("[[builder.step]]\nname = \"work\"\ncommand = {}\ntimeout = 0\n", toml_str(command))
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Shell steps and results, Kiln master + Kiln worker.

#[tokio::test]
async fn shell_steps_results_and_logs() {
    let marks = tempfile::tempdir().expect("create a temporary directory");
    let halted_mark = marks.path().join("halted-ran");
    let builder = format!(
        r#"
[[builder.step]]
name = "out-err"
command = "echo hello; echo oops >&2"

[[builder.step]]
name = "fail"
command = "exit 3"
flunk_on_failure = true
halt_on_failure = true

[[builder.step]]
name = "halted"
command = {halted}

[[builder.step]]
name = "cleanup"
command = "echo cleanup-ran"
always_run = true
"#,
        halted = toml_str(format!("touch '{}'; echo halted-step-ran", halted_mark.display()))
    );
    let mut master = KilnMaster::builder().worker("w1", "pw-1").builder("steps", &builder).start().await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;

    let brid = master.force("steps").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::FAILURE, "request: {request:#}");
    let builds = master.builds_of_request(brid).await;
    assert_eq!(builds.len(), 1, "builds: {builds:#?}");
    let buildid = master.id(&builds[0], "buildid");
    assert_eq!(master.results(&builds[0]), results::FAILURE, "build: {:#}", builds[0]);
    // Buildbot's state strings: the build's result, then the summary of the step that failed it.
    assert_eq!(builds[0]["state_string"], "failed 'exit 3' (failure)", "build: {:#}", builds[0]);

    let step = master.step(buildid, "out-err").await;
    assert_eq!(master.results(&step), results::SUCCESS, "step: {step:#}");
    assert_eq!(step["state_string"], "'echo hello; ...'", "a command's first words: {step:#}");
    let log = master.log(master.id(&step, "stepid"), "stdio").await;
    assert!(log.has_line('o', "hello"), "stdio log:\n{}", log.dump());
    assert!(log.has_line('e', "oops"), "stdio log:\n{}", log.dump());

    let step = master.step(buildid, "fail").await;
    assert_eq!(master.results(&step), results::FAILURE, "step: {step:#}");
    assert_eq!(step["state_string"], "'exit 3' (failure)", "step: {step:#}");
    let log = master.log(master.id(&step, "stepid"), "stdio").await;
    assert!(log.has_line('h', "program finished with exit code 3"), "stdio log:\n{}", log.dump());

    // The step after the halting failure does not run: either it is not in the build or it is SKIPPED with no
    // output.
    let steps = master.steps(buildid).await;
    if let Some(halted) = steps.iter().find(|s| s["name"] == "halted") {
        assert_eq!(halted["results"].as_i64(), Some(results::SKIPPED), "halted step: {halted:#}");
        let slugs = master.get(&format!("steps/{}/logs", master.id(halted, "stepid"))).await;
        if slugs["logs"].as_array().is_some_and(|l| !l.is_empty()) {
            let log = master.log(master.id(halted, "stepid"), "stdio").await;
            assert!(!log.has_line('o', "halted-step-ran"), "the halted step ran:\n{}", log.dump());
        }
    }

    assert!(!halted_mark.exists(), "the step after the halting failure ran; steps: {steps:#?}");

    let step = master.step(buildid, "cleanup").await;
    assert_eq!(master.results(&step), results::SUCCESS, "always_run step: {step:#}");
    assert_eq!(step["state_string"], "'echo cleanup-ran'", "step: {step:#}");
    let log = master.log(master.id(&step, "stepid"), "stdio").await;
    assert!(log.has_line('o', "cleanup-ran"), "stdio log:\n{}", log.dump());
}

/// A running command's output shows in its log before the command ends: the master stores output that waits at
/// most 20 ms after it arrives (`build/logs.rs`), the worker sends it within its `buffer_timeout`.
#[tokio::test]
async fn output_shows_in_the_log_while_the_command_runs() {
    let marks = tempfile::tempdir().expect("create a temporary directory");
    let flag = marks.path().join("go-on");
    let command = format!("echo early; while [ ! -e '{}' ]; do sleep 0.05; done; echo late", flag.display());
    let builder = format!("[[builder.step]]\nname = \"live\"\ncommand = {}\ntimeout = 0\n", toml_str(command));
    let mut master = KilnMaster::builder().worker("w1", "pw-1").builder("live", &builder).start().await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;

    let brid = master.force("live").await;
    let (buildid, stepid) = master
        .wait_for("the step `live` to have its log", BUILD_TIMEOUT, async || {
            let buildid = master.builds_of_request(brid).await.first()?["buildid"].as_i64()?;
            let steps = master.steps(buildid).await;
            let stepid = steps.iter().find(|s| s["name"] == "live")?["stepid"].as_i64()?;
            master.log_names(stepid).await.iter().any(|n| n == "stdio").then_some((buildid, stepid))
        })
        .await;
    master
        .wait_for("`early` in the running step's log", BUILD_TIMEOUT, async || {
            master.log(stepid, "stdio").await.has_line('o', "early").then_some(())
        })
        .await;
    let step = master.step(buildid, "live").await;
    assert_eq!(step["complete"], false, "the command waits for {}: {step:#}", flag.display());
    assert!(!master.log(stepid, "stdio").await.has_line('o', "late"));

    std::fs::write(&flag, "").expect("create the flag");
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
    let log = master.log(stepid, "stdio").await;
    assert!(log.has_line('o', "early") && log.has_line('o', "late"), "stdio log:\n{}", log.dump());
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Commands and transfers, with both kinds of worker.

/// Shell output, a timeout that kills a process tree, a stopped build, uploads and a download.
async fn commands_and_transfers(kind: WorkerKind) {
    let timeout_marker = unique_marker();
    let stop_marker = unique_marker();
    let _reaper_timeout = KillOnDrop(format!("sleep {timeout_marker}"));
    let _reaper_stop = KillOnDrop(format!("sleep {stop_marker}"));
    let sleepers = format!("sh -c 'sleep {timeout_marker}1 & sleep {timeout_marker}2 & sleep {timeout_marker}3'");
    let mut master = KilnMaster::builder()
        .worker("w", "pass-w0rd")
        .builder(
            "shell",
            "[[builder.step]]\nname = \"out-err\"\ncommand = \"printf 'out1\\\\nout2\\\\n'; echo err1 >&2\"\n",
        )
        .builder(
            "timeout",
            &format!("[[builder.step]]\nname = \"sleepers\"\ncommand = {}\ntimeout = 2\n", toml_str(&sleepers)),
        )
        .builder("stop", &format!("[[builder.step]]\nname = \"sleep\"\ncommand = \"sleep {stop_marker}\"\n"))
        .builder(
            "upload",
            r#"
[[builder.step]]
name = "make"
command = "head -c 1048576 /dev/urandom > big.bin && sha256sum big.bin"

[[builder.step]]
name = "upload"
type = "upload"
workersrc = "big.bin"
masterdest = "artifacts/big.bin"
"#,
        )
        .builder(
            "upload_dir",
            r#"
[[builder.step]]
name = "make"
command = "mkdir -p tree/sub && echo alpha > tree/a.txt && echo beta > tree/sub/b.txt"

[[builder.step]]
name = "upload"
type = "upload_directory"
workersrc = "tree"
masterdest = "public/tree"
compress = "gz"
"#,
        )
        .builder(
            "download",
            r#"
[[builder.step]]
name = "download"
type = "download"
mastersrc = "files/input.txt"
workerdest = "input.txt"

[[builder.step]]
name = "print"
command = "cat input.txt"
"#,
        )
        .start()
        .await;
    master.start_worker(kind, "w").await;
    master.wait_worker_connected("w").await;

    // Shell output on both channels.
    let brid = master.force("shell").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
    let build = &master.builds_of_request(brid).await[0];
    let step = master.step(master.id(build, "buildid"), "out-err").await;
    let log = master.log(master.id(&step, "stepid"), "stdio").await;
    assert_eq!(log.channel('o'), ["out1", "out2"], "stdio log:\n{}", log.dump());
    assert_eq!(log.channel('e'), ["err1"], "stdio log:\n{}", log.dump());
    assert!(log.has_line('h', "program finished with exit code 0"), "stdio log:\n{}", log.dump());

    // A no-output timeout kills the command and its grandchildren.
    let brid = master.force("timeout").await;
    wait_process(&master, &format!("sleep {timeout_marker}")).await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::FAILURE, "request: {request:#}");
    let build = &master.builds_of_request(brid).await[0];
    let step = master.step(master.id(build, "buildid"), "sleepers").await;
    assert_eq!(master.results(&step), results::FAILURE, "step: {step:#}");
    assert_no_processes(&master, &format!("sleep {timeout_marker}")).await;

    // A build stopped while its command runs ends CANCELLED, and the command is gone.
    let brid = master.force("stop").await;
    wait_process(&master, &format!("sleep {stop_marker}")).await;
    let builds = master.wait_builds_of_request(brid, 1).await;
    let buildid = master.id(&builds[0], "buildid");
    master.stop_build(buildid).await;
    master.wait_request_complete(brid).await;
    let build = master.wait_build_complete(buildid).await;
    assert_eq!(master.results(&build), results::CANCELLED, "build: {build:#}");
    assert_no_processes(&master, &format!("sleep {stop_marker}")).await;

    // Upload of a 1 MB file made by the previous step: the master's copy has the worker's checksum.
    let brid = master.force("upload").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
    let step = master.step(buildid, "make").await;
    let log = master.log(master.id(&step, "stepid"), "stdio").await;
    let worker_sum = log
        .channel('o')
        .iter()
        .find_map(|l| l.strip_suffix("  big.bin").map(str::to_owned))
        .unwrap_or_else(|| master.fail(&format!("no sha256sum line in:\n{}", log.dump())));
    let uploaded_path = master.master_dir().join("artifacts/big.bin");
    let uploaded = std::fs::read(&uploaded_path)
        .unwrap_or_else(|e| master.fail(&format!("read {}: {e}", uploaded_path.display())));
    assert_eq!(uploaded.len(), 1 << 20, "size of {}", uploaded_path.display());
    let master_sum: String = Sha256::digest(&uploaded).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(master_sum, worker_sum, "sha256 of the uploaded file on the master vs on the worker");

    // Upload of a directory, gzip-compressed on the wire, unpacked on the master.
    let brid = master.force("upload_dir").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
    let tree = master.master_dir().join("public/tree");
    for (file, content) in [("a.txt", "alpha\n"), ("sub/b.txt", "beta\n")] {
        let path = tree.join(file);
        let got =
            std::fs::read_to_string(&path).unwrap_or_else(|e| master.fail(&format!("read {}: {e}", path.display())));
        assert_eq!(got, content, "content of {}", path.display());
    }

    // Download of a master-side file: the worker gets its real content.
    let content = format!("downloaded content {}", unique_marker());
    let files = master.master_dir().join("files");
    std::fs::create_dir_all(&files).expect("create files/ in the master's directory");
    std::fs::write(files.join("input.txt"), format!("{content}\n")).expect("write files/input.txt");
    let brid = master.force("download").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}");
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
    let step = master.step(buildid, "print").await;
    let log = master.log(master.id(&step, "stepid"), "stdio").await;
    assert_eq!(log.channel('o'), [content.as_str()], "stdio log:\n{}", log.dump());
}

#[tokio::test]
async fn commands_and_transfers_with_kiln_worker() {
    commands_and_transfers(WorkerKind::Kiln).await;
}

#[tokio::test]
async fn commands_and_transfers_with_buildbot_worker() {
    commands_and_transfers(WorkerKind::Buildbot).await;
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Faults.

#[tokio::test]
async fn worker_killed_mid_build_retries_on_the_other_worker() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let flag_dir = tempfile::tempdir().expect("create a temporary directory");
    let mut master = KilnMaster::builder()
        .worker("w1", "pw-1")
        .worker("w2", "pw-2")
        .builder("flaky", &long_then_quick_step(&flag_dir.path().join("flag"), marker))
        .start()
        .await;
    for name in ["w1", "w2"] {
        master.start_worker(WorkerKind::Kiln, name).await;
        master.wait_worker_connected(name).await;
    }

    let brid = master.force("flaky").await;
    wait_process(&master, &format!("sleep {marker}")).await;
    let builds = master.wait_builds_of_request(brid, 1).await;
    let workerid = master.id(&builds[0], "workerid");
    let worker = master.get_one(&format!("workers/{workerid}")).await;
    let name = worker["name"].as_str().unwrap_or_else(|| master.fail(&format!("worker without name: {worker:#}")));
    let name = name.to_owned();
    master.kill_worker(&name, Signal::SIGKILL).await;

    let request = master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}\nbuilds: {builds:#?}");
    assert_eq!(builds.len(), 2, "builds: {builds:#?}");
    assert_eq!(master.results(&builds[0]), results::RETRY, "first build: {:#}", builds[0]);
    assert_eq!(master.results(&builds[1]), results::SUCCESS, "second build: {:#}", builds[1]);
    assert_ne!(builds[1]["workerid"], builds[0]["workerid"], "the retry ran on the killed worker: {builds:#?}");
}

/// The fields of a finished build or request that must not change when the master restarts.
fn settled(resource: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for key in ["buildid", "buildrequestid", "number", "workerid", "complete", "complete_at", "results", "started_at"] {
        if let Some(value) = resource.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    serde_json::Value::Object(out)
}

#[tokio::test]
async fn master_killed_mid_build_retries_after_restart() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let flag_dir = tempfile::tempdir().expect("create a temporary directory");
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("quick", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo hi\"\n")
        .builder("slow", &long_then_quick_step(&flag_dir.path().join("flag"), marker))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    let done = master.force("quick").await;
    let done_request = master.wait_request_complete(done).await;
    let done_builds = master.builds_of_request(done).await;
    assert_eq!(master.results(&done_request), results::SUCCESS, "request: {done_request:#}");

    let brid = master.force("slow").await;
    wait_process(&master, &format!("sleep {marker}")).await;
    master.wait_builds_of_request(brid, 1).await;
    master.kill_master(Signal::SIGKILL).await;
    master.restart().await;
    master.wait_worker_connected("w").await;

    let request = master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}\nbuilds: {builds:#?}");
    assert_eq!(builds.len(), 2, "builds: {builds:#?}");
    assert_eq!(master.results(&builds[0]), results::RETRY, "interrupted build: {:#}", builds[0]);
    assert_eq!(master.results(&builds[1]), results::SUCCESS, "second build: {:#}", builds[1]);

    let after_request = master.request(done).await;
    let after_builds = master.builds_of_request(done).await;
    assert_eq!(settled(&after_request), settled(&done_request), "a completed request changed over the restart");
    let before: Vec<_> = done_builds.iter().map(settled).collect();
    let after: Vec<_> = after_builds.iter().map(settled).collect();
    assert_eq!(after, before, "a completed build changed over the restart");
    assert_no_processes(&master, &format!("sleep {marker}")).await;
}

#[tokio::test]
async fn kiln_stop_ends_running_build_retry_and_start_runs_it_again() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let flag_dir = tempfile::tempdir().expect("create a temporary directory");
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("slow", &long_then_quick_step(&flag_dir.path().join("flag"), marker))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    let brid = master.force("slow").await;
    wait_process(&master, &format!("sleep {marker}")).await;
    let builds = master.wait_builds_of_request(brid, 1).await;
    let first = master.id(&builds[0], "buildid");

    let dir = master.master_dir().to_str().expect("a UTF-8 path").to_owned();
    // `kiln stop` waits until the master's pid is gone: this process, the master's parent, must reap it meanwhile
    // (a zombie still answers `kill(pid, 0)`).
    let args = ["stop", &dir, "--timeout", "30"];
    let (stop, status) = tokio::join!(run_kiln(&args, Duration::from_secs(40)), master.wait_master_exit());
    if !stop.status.success() {
        master.fail(&format!("kiln stop failed {}", show(&stop)));
    }
    if !status.success() {
        master.fail(&format!("the master exited with {status} after kiln stop"));
    }

    master.restart().await;
    let build = master.build(first).await;
    assert_eq!(master.results(&build), results::RETRY, "build stopped with the master: {build:#}");
    master.wait_worker_connected("w").await;
    let request = master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "request: {request:#}\nbuilds: {builds:#?}");
    assert_eq!(builds.len(), 2, "builds: {builds:#?}");
    assert_eq!(master.results(&builds[1]), results::SUCCESS, "second build: {:#}", builds[1]);
}

#[tokio::test]
async fn config_typo_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let good = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"\n")
        .master_toml(0, 0);
    let bad = good.replacen("\nworkers = [", "\nwrokers = [", 1);
    assert_ne!(bad, good, "the typo was not made in:\n{good}");
    let line = bad.lines().position(|l| l.starts_with("wrokers")).expect("the typo's line") + 1;
    std::fs::write(dir.path().join("master.toml"), &bad).expect("write master.toml");
    let path = dir.path().to_str().expect("a UTF-8 path").to_owned();
    let expected = format!("master.toml:{line}:");

    for args in [["checkconfig", &path], ["start", &path]] {
        let out = run_kiln(&args, Duration::from_secs(30)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kiln {args:?} accepted the typo {}", show(&out));
        let named = stderr.lines().any(|l| l.contains(&expected) && l.contains("wrokers"));
        assert!(named, "kiln {args:?}: no line naming `{expected}` and 'wrokers' {}", show(&out));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 4. The client commands.

#[tokio::test]
async fn force_wait_exit_codes_and_output() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("pass", "[[builder.step]]\nname = \"say\"\ncommand = \"echo pass-output\"\n")
        .builder("fail", "[[builder.step]]\nname = \"say\"\ncommand = \"echo fail-output; exit 1\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    for (builder, code, text) in [("pass", 0, "pass-output"), ("fail", 1, "fail-output")] {
        let token = master.admin_token().await;
        let args = ["force", builder, "--master", master.url(), "--wait", "--token", &token];
        let out = run_kiln(&args, BUILD_TIMEOUT).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(code) || !stdout.lines().any(|l| l == text) {
            master
                .fail(&format!("kiln force {builder} --wait: expected exit {code} and a line {text:?} {}", show(&out)));
        }
    }
}

#[tokio::test]
async fn create_master_writes_a_config_that_checkconfig_accepts() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let master_dir = dir.path().join("m");
    let master_dir = master_dir.to_str().expect("a UTF-8 path");
    let out = run_kiln(&["create-master", master_dir], Duration::from_secs(30)).await;
    assert!(out.status.success(), "kiln create-master {}", show(&out));
    // It holds passwords and tokens: readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("m/master.toml")).expect("master.toml").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "master.toml has mode {:o}", mode & 0o777);
    let out = run_kiln(&["checkconfig", master_dir], Duration::from_secs(30)).await;
    assert!(out.status.success(), "kiln checkconfig of the sample {}", show(&out));
}

#[tokio::test]
async fn demo_once_succeeds() {
    let (web, _) = support::process::free_ports();
    let web = format!("127.0.0.1:{web}");
    let out = run_kiln(&["demo", "--once", "--web", &web], Duration::from_secs(120)).await;
    assert!(out.status.success(), "kiln demo --once {}", show(&out));
    // The git step checked the sample out and the test step was told the revision (got_revision, interpolated).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert_eq!(first, format!("Kiln demo: the web UI is at http://{web}/"), "the UI's address comes first");
    assert!(stdout.contains(&format!("see http://{web}/builders/demo/builds/1 ")), "{}", show(&out));
    let revision = stdout.lines().find_map(|l| l.strip_prefix("testing revision ")).unwrap_or_default();
    assert!(revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()), "{}", show(&out));
}
