//! Changes across SIGKILLs of the master: every change stored gets exactly one buildset from the scheduler that
//! wants it, however soon after storing it the master dies. A git poller finds commits made while the master was
//! down and the master is killed right after its first "change added" (then its tenth); `kiln sendchange` posts
//! changes while the master is killed and started again. After a last start, every change has one buildset, and a change answered
//! to a client is stored.
//!
//!     cargo test -p kiln --test changes_crash

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::buildbot::WorkerKind;
use support::kiln::{run_kiln, toml_str, KilnMaster};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "changes-crash-token";
/// The master's line for each change it stores.
const CHANGE_ADDED: &str = "change added";

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(repo)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(repo: &Path, file: &str, message: &str) {
    std::fs::write(repo.join(file), message).expect("write file");
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", message]);
}

/// A master with a builder `b` (no collapsing: one request per buildset), an on-change scheduler for branch
/// `main`, the base change hook, and `extra`.
async fn master(extra: &str) -> KilnMaster {
    KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "collapse_requests = false\n[[builder.step]]\ncommand = \"true\"")
        .extra_toml(&format!(
            "[[scheduler]]\nname = \"on-main\"\ntype = \"on_change\"\nbuilders = [\"b\"]\nbranch = \"main\"\n\n\
             [change_hooks.base]\ntoken = \"{TOKEN}\"\n{extra}"
        ))
        .start()
        .await
}

/// How many times `run`'s output (the master's `run`-th process, counting from 1) says "change added".
fn changes_added(master: &KilnMaster, run: usize) -> usize {
    let output = std::fs::read_to_string(master.test_dir().join(format!("master-{run}.out"))).unwrap_or_default();
    output.lines().filter(|line| line.contains(CHANGE_ADDED)).count()
}

/// Waits until the master's `run`-th process has logged `n` "change added", then SIGKILLs it; returns how many
/// it had logged by the time it died.
async fn kill_after_changes(master: &mut KilnMaster, run: usize, n: usize) -> usize {
    // Read often: the kill is to land while the master is still storing and scheduling.
    let deadline = std::time::Instant::now() + WAIT;
    while changes_added(master, run) < n {
        if std::time::Instant::now() > deadline || master.master_process().is_none_or(|m| m.exit_status().is_some()) {
            master.fail(&format!("run {run} of the master logged no {n} {CHANGE_ADDED:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    master.kill_master(Signal::SIGKILL).await;
    changes_added(master, run)
}

async fn list(master: &KilnMaster, path: &str, field: &str) -> Vec<Value> {
    master.get(path).await[field].as_array().cloned().unwrap_or_default()
}

/// Each stored change's revision, by change id.
async fn stored_changes(master: &KilnMaster) -> BTreeMap<i64, String> {
    let changes = list(master, "changes?order=changeid&limit=1000", "changes").await;
    changes.iter().map(|c| (master.id(c, "changeid"), c["revision"].as_str().unwrap_or_default().to_string())).collect()
}

/// Waits until the scheduler has made a buildset for each of `count` stored changes (or gives up), then checks
/// that each stored change has exactly one buildset (their revisions are all different); returns the changes.
async fn wait_one_buildset_per_change(master: &KilnMaster, count: usize) -> BTreeMap<i64, String> {
    let waited = master
        .poll(&format!("{count} changes with one buildset each"), WAIT, async || {
            let changes = stored_changes(master).await;
            let buildsets = list(master, "buildsets?limit=1000", "buildsets").await;
            (changes.len() >= count && buildsets.len() >= changes.len()).then_some(())
        })
        .await;
    let changes = stored_changes(master).await;
    let mut built: BTreeMap<String, usize> = BTreeMap::new();
    for buildset in list(master, "buildsets?limit=1000", "buildsets").await {
        assert_eq!(buildset["scheduler"], Value::from("on-main"), "{buildset:#}");
        let revision = buildset["sourcestamps"][0]["revision"].as_str().unwrap_or_default().to_string();
        *built.entry(revision).or_default() += 1;
    }
    let unbuilt: Vec<i64> = changes.iter().filter(|(_, r)| !built.contains_key(*r)).map(|(id, _)| *id).collect();
    let twice: Vec<&String> = built.iter().filter(|(_, n)| **n > 1).map(|(r, _)| r).collect();
    let wanted: BTreeMap<String, usize> = changes.values().map(|revision| (revision.clone(), 1)).collect();
    assert_eq!(
        built,
        wanted,
        "every change exactly one buildset: of {} changes, {} have none ({unbuilt:?}), {} revisions more than one \
         ({waited:?}; changes: {changes:?})",
        changes.len(),
        unbuilt.len(),
        twice.len()
    );
    assert!(changes.len() >= count, "{count} changes stored: {changes:?}");
    changes
}

#[tokio::test]
async fn commits_polled_by_a_master_killed_while_storing_them_get_one_buildset_each() {
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let repo = repo_dir.path();
    git(repo, &["init", "-q"]);
    commit(repo, "a.txt", "first");
    let source = format!(
        "[[change_source]]\ntype = \"git\"\nrepository = {}\nbranches = [\"main\"]\npoll_interval = 1\n",
        toml_str(repo.display().to_string())
    );
    let mut master = master(&source).await;
    // The first poll records the heads: once the poller's mirror holds `main`, every later commit is new to it,
    // and once a later commit is stored the first poll's heads are saved.
    master
        .wait_for("the poller's first fetch", WAIT, async || {
            let mirrors = std::fs::read_dir(master.master_dir().join("gitpoller")).ok()?;
            mirrors.flatten().any(|mirror| mirror.path().join("refs/heads/main").exists()).then_some(())
        })
        .await;
    commit(repo, "b.txt", "second");
    master
        .wait_for("the second commit's change", WAIT, async || (stored_changes(&master).await.len() == 1).then_some(()))
        .await;
    master.kill_master(Signal::SIGKILL).await;

    const COMMITS: usize = 41;
    for n in 1..COMMITS {
        commit(repo, &format!("f{n}.txt"), &format!("commit {n}"));
    }
    // Killed right after its first change, then after its tenth.
    let mut added = Vec::new();
    for (run, n) in [(2, 1), (3, 10)] {
        master.restart().await;
        added.push(kill_after_changes(&mut master, run, n).await);
    }
    master.restart().await;
    eprintln!("changes added before each kill: {added:?}");

    let changes = wait_one_buildset_per_change(&master, COMMITS).await;
    assert_eq!(changes.len(), COMMITS, "each commit stored once: {changes:?}");

    // Each build builds its change, and no other.
    master.start_worker(WorkerKind::Kiln, "w").await;
    let builds = master
        .wait_for(&format!("{COMMITS} complete builds"), WAIT, async || {
            let builds = master.try_get("builders/b/builds?complete=true&limit=1000").await?;
            let builds = builds["builds"].as_array()?.clone();
            (builds.len() >= COMMITS).then_some(builds)
        })
        .await;
    let mut built = Vec::new();
    for build in &builds {
        let ids = list(&master, &format!("builds/{}/changes", master.id(build, "buildid")), "changes").await;
        assert_eq!(ids.len(), 1, "{build:#}: {ids:#?}");
        built.push(master.id(&ids[0], "changeid"));
    }
    built.sort();
    assert_eq!(built, changes.keys().copied().collect::<Vec<_>>(), "every change built once");
}

#[tokio::test]
async fn changes_sent_while_the_master_is_killed_and_restarted_get_one_buildset_each() {
    let mut master = master("").await;
    const CHANGES: usize = 40;
    let url = master.url().to_string();
    // Each answered change's revision, by change id; each attempt has its own revision, so that an attempt
    // stored but not answered (the master died in between) is a change of its own.
    let answered: Arc<Mutex<BTreeMap<i64, String>>> = Arc::default();
    let sender = tokio::spawn({
        let answered = answered.clone();
        async move {
            let mut attempt = 0;
            while answered.lock().expect("lock").len() < CHANGES {
                attempt += 1;
                let revision = format!("rev-{attempt}");
                let args = [
                    "sendchange",
                    "--master",
                    &url,
                    "--token",
                    TOKEN,
                    "--author",
                    "Ada <ada@example.invalid>",
                    "--comments",
                    "sent while killing",
                    "--branch",
                    "main",
                    "--revision",
                    &revision,
                    "f.txt",
                ];
                let output = run_kiln(&args, WAIT).await;
                match String::from_utf8_lossy(&output.stdout).trim().parse::<i64>() {
                    Ok(id) if output.status.success() => {
                        answered.lock().expect("lock").insert(id, revision);
                    }
                    // The master is down or dying: try again, as a client would.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    });
    // Killed after its first change, its third, its fifth.
    let mut added = vec![kill_after_changes(&mut master, 1, 1).await];
    for (run, n) in [(2, 3), (3, 5)] {
        master.restart().await;
        added.push(kill_after_changes(&mut master, run, n).await);
    }
    master.restart().await;
    eprintln!("changes added before each kill: {added:?}");
    tokio::time::timeout(WAIT, sender).await.expect("the changes were sent in time").expect("sender task");

    let changes = wait_one_buildset_per_change(&master, CHANGES).await;
    let answered = answered.lock().expect("lock").clone();
    for (id, revision) in &answered {
        assert_eq!(changes.get(id), Some(revision), "an answered change is stored (stored: {changes:?})");
    }
}
