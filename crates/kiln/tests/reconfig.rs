//! End-to-end tests of reloading a running master's `master.toml`: `kiln reconfig DIR` and SIGHUP. A new config
//! is applied whole or not at all; running builds keep their steps; schedulers keep their state.
//!
//!     cargo test -p kiln --test reconfig

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{run_kiln, show, KilnMaster, BUILD_TIMEOUT};

const RECONFIG_TIMEOUT: Duration = Duration::from_secs(90);

fn config_path(master: &KilnMaster) -> std::path::PathBuf {
    master.master_dir().join("master.toml")
}

/// Rewrites the running master's `master.toml` with `edit` applied to its text.
fn edit_config(master: &KilnMaster, edit: impl FnOnce(String) -> String) {
    let path = config_path(master);
    let text = std::fs::read_to_string(&path).expect("read master.toml");
    std::fs::write(&path, edit(text)).expect("write master.toml");
}

/// Runs `kiln reconfig DIR`; returns its output.
async fn reconfig(master: &KilnMaster) -> std::process::Output {
    let dir = master.master_dir().to_str().expect("a UTF-8 path").to_owned();
    run_kiln(&["reconfig", &dir, "--timeout", "60"], RECONFIG_TIMEOUT).await
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn build_of(master: &KilnMaster, brid: i64) -> Value {
    let request = master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    assert!(!builds.is_empty(), "request without builds: {request:#}");
    builds[builds.len() - 1].clone()
}

async fn log_text(master: &KilnMaster, build: &Value, step: &str) -> String {
    let step = master.step(master.id(build, "buildid"), step).await;
    master.log_raw(master.id(&step, "stepid"), "stdio").await
}

/// Builders and workers added and removed in the file are, after `kiln reconfig`, which lists them; the new
/// builder builds on the worker that was connected all along.
#[tokio::test]
async fn a_builder_and_a_worker_added_by_reconfig_work_and_are_listed() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .worker("w2", "pw2")
        .builder("a", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo a\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    edit_config(&master, |text| {
        // Worker w2 becomes w3 (in its account and in builder a's list), and a builder is added on w.
        text.replace("\"w2\"", "\"w3\"")
            + "\n[[builder]]\nname = \"b\"\nworkers = [\"w\"]\n[[builder.step]]\nname = \"new\"\ncommand = \"echo from-b\"\n"
    });

    let output = reconfig(&master).await;
    if !output.status.success() {
        master.fail(&format!("kiln reconfig failed {}", show(&output)));
    }
    let printed = stdout(&output);
    for line in ["builder 'b' added", "worker 'w3' added", "worker 'w2' removed"] {
        assert!(printed.contains(line), "kiln reconfig did not say {line:?}: {}", show(&output));
    }
    master.wait_output_line("reconfig: builder 'b' added").await;

    let build = build_of(&master, master.force("b").await).await;
    assert_eq!(master.results(&build), results::SUCCESS, "build of the new builder: {build:#}");
    assert!(log_text(&master, &build, "new").await.contains("from-b"));
    let old = build_of(&master, master.force("a").await).await;
    assert_eq!(master.results(&old), results::SUCCESS, "the old builder still builds: {old:#}");
}

/// A config with a mistake, and one that changes what needs a restart, are refused: `kiln reconfig` fails and
/// says why (the file and line of the mistake), the master's log says the running config stays, and it does.
#[tokio::test]
async fn a_refused_config_leaves_the_running_one() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("a", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo a\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let good = std::fs::read_to_string(config_path(&master)).expect("read master.toml");

    // A mistake: `kiln reconfig` checks the file itself and does not disturb the master.
    edit_config(&master, |text| text + "\n[[builder]]\nname = \"b\"\nworkers = [\"nobody\"]\n");
    let output = reconfig(&master).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "a config naming an unknown worker was accepted {}", show(&output));
    assert!(stderr.contains("master.toml:") && stderr.contains("nobody"), "{}", show(&output));

    // The same mistake sent by SIGHUP: the master refuses it and says so in its log.
    master.master_process().expect("the master runs").signal(Signal::SIGHUP);
    master.wait_output_line("reconfig refused; the running configuration stays").await;

    // A change only a restart can make.
    std::fs::write(config_path(&master), good.replace("ping_timeout = 3", "ping_timeout = 4")).expect("write");
    let output = reconfig(&master).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "a new worker_listener timeout was applied {}", show(&output));
    assert!(stderr.contains("only a restart") && stderr.contains("[worker_listener]"), "{}", show(&output));

    assert!(master.master_process().is_some_and(|m| m.exit_status().is_none()), "the master exited");
    let build = build_of(&master, master.force("a").await).await;
    assert_eq!(master.results(&build), results::SUCCESS, "the running config still builds: {build:#}");
    assert!(master.try_get("builders/b").await.is_none(), "the refused builder exists");
}

/// A build running while its builder's steps change finishes with the steps it started with; the next build of
/// the builder runs the new ones. SIGHUP reloads as `kiln reconfig` does.
#[tokio::test]
async fn a_running_build_keeps_its_steps_and_the_next_one_takes_the_new_ones() {
    let gate = tempfile::tempdir().expect("tempdir");
    let go = gate.path().join("go");
    let wait_then_echo = format!(
        "[[builder.step]]\nname = \"gated\"\ncommand = \"while [ ! -e {} ]; do sleep 0.05; done; echo old-steps\"\n",
        go.display()
    );
    let mut master = KilnMaster::builder().worker("w", "pw").builder("a", &wait_then_echo).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let first = master.force("a").await;
    let builds = master.wait_builds_of_request(first, 1).await;
    let buildid = master.id(&builds[0], "buildid");
    master
        .wait_for("the gated step to start", BUILD_TIMEOUT, async || {
            let step = master.try_get(&format!("builds/{buildid}/steps/gated")).await?;
            step["steps"][0]["started_at"].as_f64().map(|_| ())
        })
        .await;

    let old_command = wait_then_echo.lines().nth(2).expect("the command line").to_owned();
    edit_config(&master, |text| text.replace(&old_command, "command = \"echo new-steps\""));
    master.master_process().expect("the master runs").signal(Signal::SIGHUP);
    master.wait_output_line("reconfig: builder 'a' changed").await;
    std::fs::write(&go, "").expect("open the gate");

    let build = master.wait_build_complete(buildid).await;
    assert_eq!(master.results(&build), results::SUCCESS, "the running build: {build:#}");
    assert!(log_text(&master, &build, "gated").await.contains("old-steps"), "the running build changed steps");
    let next = build_of(&master, master.force("a").await).await;
    assert_eq!(master.results(&next), results::SUCCESS, "the next build: {next:#}");
    assert!(log_text(&master, &next, "gated").await.contains("new-steps"), "the next build kept the old steps");
}

/// Sends a change through the base hook.
async fn send_change(master: &KilnMaster, revision: &str) {
    let change = json!({
        "author": "Ada <ada@example.invalid>", "comments": revision, "revision": revision, "branch": "main",
        "repository": "https://example.invalid/r.git", "files": ["src/a.rs"],
    });
    master.send_change("t0ken", change).await;
}

/// The revisions of the complete buildsets of scheduler `scheduler`, once there are `n`.
async fn built(master: &KilnMaster, scheduler: &str, n: usize) -> Vec<Value> {
    let sets = master
        .wait_for(&format!("{n} complete buildsets of {scheduler}"), BUILD_TIMEOUT, async || {
            let found = master.try_get(&format!("buildsets?scheduler={scheduler}&complete=true&order=bsid")).await?;
            let found = found["buildsets"].as_array()?.clone();
            (found.len() >= n).then_some(found)
        })
        .await;
    sets.iter().map(|s| s["sourcestamps"][0]["revision"].clone()).collect()
}

/// Schedulers keep their state through a reconfig: a change waiting on an unchanged scheduler's tree-stable
/// timer, and one waiting on a scheduler the reconfig changes (restarted, it reads what it had not built from the
/// store), are each built once; a removed scheduler builds nothing more.
#[tokio::test]
async fn schedulers_keep_their_waiting_changes_through_a_reconfig() {
    let schedulers = "[change_hooks.base]\ntoken = \"t0ken\"\n\n\
        [[scheduler]]\nname = \"kept\"\ntype = \"on_change\"\nbuilders = [\"a\"]\ntree_stable_timer = 3\n\n\
        [[scheduler]]\nname = \"changed\"\ntype = \"on_change\"\nbuilders = [\"b\"]\ntree_stable_timer = 3\n\n\
        [[scheduler]]\nname = \"removed\"\ntype = \"on_change\"\nbuilders = [\"c\"]\n";
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("a", "[[builder.step]]\ncommand = \"echo a\"\n")
        .builder("b", "[[builder.step]]\ncommand = \"echo b\"\n")
        .builder("c", "[[builder.step]]\ncommand = \"echo c\"\n")
        .extra_toml(schedulers)
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    send_change(&master, "r1").await;
    assert_eq!(built(&master, "removed", 1).await, [json!("r1")]);

    edit_config(&master, |text| {
        let text =
            text.replace("builders = [\"b\"]\ntree_stable_timer = 3", "builders = [\"b\"]\ntree_stable_timer = 2");
        let removed = "[[scheduler]]\nname = \"removed\"\ntype = \"on_change\"\nbuilders = [\"c\"]\n";
        text.replace(removed, "")
    });
    let output = reconfig(&master).await;
    if !output.status.success() {
        master.fail(&format!("kiln reconfig failed {}", show(&output)));
    }
    let printed = stdout(&output);
    assert!(printed.contains("scheduler 'changed' restarted (changed)"), "{}", show(&output));
    assert!(printed.contains("scheduler 'removed' removed"), "{}", show(&output));
    assert!(!printed.contains("scheduler 'kept'"), "an unchanged scheduler was touched: {}", show(&output));

    assert_eq!(built(&master, "kept", 1).await, [json!("r1")]);
    assert_eq!(built(&master, "changed", 1).await, [json!("r1")]);
    send_change(&master, "r2").await;
    assert_eq!(built(&master, "kept", 2).await, [json!("r1"), json!("r2")]);
    assert_eq!(built(&master, "changed", 2).await, [json!("r1"), json!("r2")]);
    let removed = master.get("buildsets?scheduler=removed").await;
    assert_eq!(removed["meta"]["total"], 1, "the removed scheduler built again: {removed:#}");
}
