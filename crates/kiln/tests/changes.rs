//! Changes end to end: commits in a real git repository are found by the master's git poller, an on-change
//! scheduler turns them into builds on a Kiln worker, and a master restart between commits neither loses nor
//! repeats one. Also: a sendchange through the base hook reaches the same scheduler.
//!
//!     cargo test -p kiln --test changes

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::buildbot::WorkerKind;
use support::kiln::{toml_str, KilnMaster};

const WAIT: Duration = Duration::from_secs(60);

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

fn commit(repo: &Path, file: &str, message: &str) -> String {
    std::fs::write(repo.join(file), message).expect("write file");
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

async fn changes(master: &KilnMaster) -> Vec<Value> {
    master.get("changes?order=changeid").await["changes"].as_array().cloned().unwrap_or_default()
}

/// Waits until the builder has `n` complete builds; returns them, oldest first.
async fn complete_builds(master: &KilnMaster, builder: &str, n: usize) -> Vec<Value> {
    master
        .wait_for(&format!("{n} complete builds of {builder}"), WAIT, async || {
            let builds = master.get(&format!("builders/{builder}/builds?complete=true&order=number")).await;
            let builds = builds["builds"].as_array().cloned().unwrap_or_default();
            (builds.len() >= n).then_some(builds)
        })
        .await
}

#[tokio::test]
async fn commits_become_builds_and_a_restart_loses_none() {
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let repo = repo_dir.path();
    git(repo, &["init", "-q"]);
    commit(repo, "a.txt", "first");
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        // Without collapsing, the two commits made while the master is down are two builds, not one.
        .builder("b", "collapse_requests = false\n[[builder.step]]\ncommand = \"echo building\"")
        .extra_toml(&format!(
            "[[change_source]]\ntype = \"git\"\nrepository = {}\nbranches = [\"main\"]\npoll_interval = 1\n\n\
             [[scheduler]]\nname = \"on-main\"\ntype = \"on_change\"\nbuilders = [\"b\"]\nbranch = \"main\"\n",
            toml_str(repo.display().to_string())
        ))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    // The first poll records the heads: the existing commit makes no change. Once the poller's mirror holds
    // `main`, the first poll has fetched, so any later commit is new to it (checked below: one change only).
    master
        .wait_for("the poller's first fetch", WAIT, async || {
            let mirrors = std::fs::read_dir(master.master_dir().join("gitpoller")).ok()?;
            mirrors.flatten().any(|mirror| mirror.path().join("refs/heads/main").exists()).then_some(())
        })
        .await;

    let second = commit(repo, "b.txt", "second");
    let builds = complete_builds(&master, "b", 1).await;
    assert_eq!(master.results(&builds[0]), 0, "{:#}", builds[0]);
    let found = changes(&master).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["revision"], Value::from(second.clone()));
    assert_eq!(found[0]["author"], Value::from("Ada <ada@example.invalid>"));
    assert_eq!(found[0]["files"], serde_json::json!(["b.txt"]));

    // Stop the master, commit twice while it is down, start it again.
    master.kill_master(nix::sys::signal::Signal::SIGTERM).await;
    let third = commit(repo, "c.txt", "third");
    let fourth = commit(repo, "d.txt", "fourth");
    master.restart().await;
    master.wait_worker_connected("w").await;
    let builds = complete_builds(&master, "b", 3).await;
    let found = changes(&master).await;
    let revisions: Vec<&str> = found.iter().filter_map(|c| c["revision"].as_str()).collect();
    assert_eq!(revisions, [second.as_str(), third.as_str(), fourth.as_str()], "no commit lost or repeated");
    assert_eq!(builds.len(), 3, "one build per change (no tree-stable timer): {builds:#?}");
    assert!(builds.iter().all(|b| master.results(b) == 0), "{builds:#?}");
    // Each build knows the change it builds (what a report to the change's author needs).
    for (build, revision) in builds.iter().zip([&second, &third, &fourth]) {
        let built = master.get(&format!("builds/{}/changes", master.id(build, "buildid"))).await;
        let built: Vec<&str> =
            built["changes"].as_array().into_iter().flatten().filter_map(|c| c["revision"].as_str()).collect();
        assert_eq!(built, [revision.as_str()], "{build:#}");
    }
}

/// A PyPI-style JSON index on 127.0.0.1 serving one package; `publish` adds a version.
struct Index {
    address: std::net::SocketAddr,
    versions: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests answered so far.
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Index {
    async fn start(package: &'static str, first: &str) -> Index {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("address");
        let versions = std::sync::Arc::new(std::sync::Mutex::new(vec![first.to_string()]));
        let served = versions.clone();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let served = served.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let n = socket.read(&mut request).await.unwrap_or(0);
                    let path =
                        String::from_utf8_lossy(&request[..n]).split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, body) = if path == format!("/pypi/{package}/json") {
                        let versions = served.lock().expect("lock").clone();
                        let releases: serde_json::Map<String, Value> = versions
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                let file = serde_json::json!([{
                                    "filename": format!("{package}-{v}.tar.gz"),
                                    "upload_time_iso_8601": format!("2026-11-2{i}T10:00:00.000000Z"),
                                }]);
                                (v.clone(), file)
                            })
                            .collect();
                        let last = versions.last().cloned().unwrap_or_default();
                        let doc = serde_json::json!({
                            "info": {"name": package, "version": last, "author": "Plugin Team"},
                            "releases": releases,
                        });
                        ("200 OK", doc.to_string())
                    } else {
                        ("404 Not Found", "{}".to_string())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Index { address, versions, served: count }
    }

    fn publish(&self, version: &str) {
        self.versions.lock().expect("lock").push(version.to_string());
    }
}

#[tokio::test]
async fn a_new_release_on_the_index_starts_a_production_mode_build() {
    let index = Index::start("demo-plugin", "1.0").await;
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("plugin-production", "[[builder.step]]\ncommand = \"echo installing the released plugin\"")
        .extra_toml(&format!(
            "[[change_source]]\ntype = \"package\"\npackage = \"demo-plugin\"\nindex_url = \"http://{}/pypi\"\n\
             poll_interval = 1\n\n[[scheduler]]\nname = \"on-release\"\ntype = \"on_change\"\n\
             builders = [\"plugin-production\"]\ncategory = \"release\"\n",
            index.address
        ))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    // The first poll records 1.0 without a change; a second request means the first poll is complete.
    master
        .wait_for("two polls of the index", WAIT, async || {
            (index.served.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
        })
        .await;
    assert!(changes(&master).await.is_empty(), "a version known at the first poll is no change");

    index.publish("1.1");
    let builds = complete_builds(&master, "plugin-production", 1).await;
    assert_eq!(master.results(&builds[0]), 0, "{:#}", builds[0]);
    let found = changes(&master).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["revision"], Value::from("1.1"));
    assert_eq!(found[0]["category"], Value::from("release"));
    assert_eq!(found[0]["author"], Value::from("Plugin Team"));
}
