//! End-to-end: the client commands (`kiln builders`, `builds`, `show`, `log`, `stop-build`, `rebuild`, `cancel`,
//! `pause`, `unpause`, `queue`, `workers`) run as the real binary against `kiln start` with a real Kiln worker.
//!
//!     cargo test -p kiln --test client

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{run_kiln, show, toml_str, KilnMaster};

const RUN: Duration = Duration::from_secs(120);

/// Runs `kiln ARGS --master URL`; returns (exit code, stdout).
async fn kiln(master: &KilnMaster, args: &[&str]) -> (i32, String) {
    let url = master.url().to_string();
    let token = master.admin_token().await;
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--master", &url, "--token", &token]);
    let output = run_kiln(&all, RUN).await;
    let code = output.status.code().unwrap_or(-1);
    if code == 2 {
        master.fail(&format!("kiln {all:?} failed: {}", show(&output)));
    }
    (code, String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn kiln_json(master: &KilnMaster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (_, out) = kiln(master, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| master.fail(&format!("kiln {all:?} printed no JSON ({e}):\n{out}")))
}

#[tokio::test]
async fn people_examine_and_act_on_builds_from_the_command_line() {
    let gate = tempfile::tempdir().expect("create a temporary directory");
    let open = gate.path().join("open");
    let wait = format!("while [ ! -e '{}' ]; do sleep 0.05; done", open.display());
    let mut master = KilnMaster::builder()
        .worker_with_max_builds("w", "pw", 1)
        // 120,000 lines: more than one page of the contents API.
        .builder("lines", "[[builder.step]]\nname = \"count\"\ncommand = \"seq 1 120000\"\n")
        .builder("broken", "[[builder.step]]\ncommand = \"echo before the failure; exit 3\"\n")
        .builder(
            "gated",
            &format!("collapse_requests = false\n[[builder.step]]\nname = \"hold\"\ncommand = {}\n", toml_str(&wait)),
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    let brid = master.force("lines").await;
    master.wait_request_complete(brid).await;
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");

    let (code, out) = kiln(&master, &["builders"]).await;
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("lines ")).unwrap_or_else(|| master.fail(&out));
    assert!(line.contains("#1") && line.contains("success"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("gated ") && l.contains("no build yet")), "{out}");

    let (_, out) = kiln(&master, &["builds", "lines"]).await;
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with(&buildid.to_string()) && l.contains("success")), "{out}");
    let (_, out) = kiln(&master, &["show", "lines/1"]).await;
    assert!(out.starts_with(&format!("build {buildid}: lines #1  success")), "{out}");
    assert!(out.lines().any(|l| l.contains("count") && l.contains("success")), "{out}");
    let shown = kiln_json(&master, &["show", &buildid.to_string()]).await;
    assert_eq!(shown["steps"][0]["name"], "count", "{shown}");

    // Every line of the log, once, in order, across the API's pages.
    let (code, out) = kiln(&master, &["log", &buildid.to_string(), "count", "--log", "stdio"]).await;
    assert_eq!(code, 0);
    let numbers: Vec<&str> = out.lines().filter(|l| l.chars().all(|c| c.is_ascii_digit()) && !l.is_empty()).collect();
    assert_eq!(numbers.len(), 120_000, "{}", &out[..out.len().min(500)]);
    assert!(numbers.iter().zip(1..).all(|(l, n)| l.parse::<i64>() == Ok(n)), "lines out of order");

    // A running build: stopped from the command line, and rebuilt.
    let gated = master.force("gated").await;
    let running = master.id(&master.wait_builds_of_request(gated, 1).await[0], "buildid");
    let queued = master.force("gated").await;
    let (_, out) = kiln(&master, &["queue"]).await;
    assert!(out.lines().any(|l| l.starts_with(&queued.to_string()) && l.contains("gated")), "{out}");
    let (_, out) = kiln(&master, &["cancel", &queued.to_string()]).await;
    assert!(out.contains("cancel done"), "{out}");
    assert_eq!(master.results(&master.wait_request_complete(queued).await), results::CANCELLED);
    kiln(&master, &["stop-build", &running.to_string(), "--reason", "not needed"]).await;
    assert_eq!(master.results(&master.wait_request_complete(gated).await), results::CANCELLED);
    std::fs::write(&open, "").expect("open the gate");
    let (code, out) = kiln(&master, &["rebuild", &running.to_string(), "--wait"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rebuilt: build request") && out.contains("success"), "{out}");

    // Workers: paused with a reason, and back.
    kiln(&master, &["pause", "w", "--reason", "disk full"]).await;
    let (_, out) = kiln(&master, &["workers"]).await;
    assert!(
        out.lines().any(|l| l.starts_with("w ") && l.contains("connected") && l.contains("paused (disk full)")),
        "{out}"
    );
    let workers = kiln_json(&master, &["workers"]).await;
    assert_eq!(workers[0]["pause_reason"], "disk full", "{workers}");
    kiln(&master, &["unpause", "w"]).await;
    assert_eq!(master.get_one("workers/w").await["paused"], json!(false));

    // A failed build's log followed to its end exits 1.
    let failing = master.force("broken").await;
    master.wait_request_complete(failing).await;
    let (code, out) = kiln(&master, &["log", "broken/1", "--follow"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("before the failure\n"), "{out}");
    assert!(out.ends_with(": failure\n"), "{out}");
}

#[tokio::test]
async fn a_bad_master_url_or_build_is_an_error_with_exit_code_2() {
    let output = run_kiln(&["builders", "--master", "127.0.0.1:1"], RUN).await;
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected the master's web URL"), "{}", show(&output));
    let output = run_kiln(&["show", "nope", "--master", "http://127.0.0.1:1/"], RUN).await;
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("'nope' is not a build id or BUILDER/NUMBER"));
}

#[tokio::test]
async fn force_wait_says_why_the_build_waits_then_follows_it() {
    use tokio::io::AsyncBufReadExt;
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"echo built\"\n")
        .start()
        .await;
    let url = master.url().to_string();
    let token = master.admin_token().await;
    let mut force = tokio::process::Command::new(support::kiln::kiln_bin())
        .args(["force", "b", "--wait", "--master", &url, "--token", &token])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run kiln force");
    let mut lines = tokio::io::BufReader::new(force.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let waiting = tokio::time::timeout(RUN, async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if line.starts_with("waiting: ") {
                return line;
            }
        }
        String::new()
    })
    .await
    .unwrap_or_else(|_| master.fail(&format!("kiln force --wait never said why it waits: {seen:?}")));
    assert_eq!(waiting, "waiting: no worker connected (its workers: w)", "{seen:?}");
    master.start_worker(WorkerKind::Kiln, "w").await;
    let rest = tokio::time::timeout(RUN, async {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    })
    .await
    .unwrap_or_else(|_| master.fail("kiln force --wait did not end"));
    let status = tokio::time::timeout(RUN, force.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l == "built"), "{rest:?}");
    assert!(rest.last().is_some_and(|l| l.ends_with(": success")), "{rest:?}");
}
