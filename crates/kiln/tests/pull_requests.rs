//! Pull requests end to end: GitHub's own `pull_request` example deliveries (fixtures), their repository and
//! head rewritten to a local bare repository that has `refs/pull/2/head`, posted to `kiln start`'s GitHub hook →
//! a build on a real Kiln worker that checks out the request's head; a second push to the request
//! (`synchronize`) cancels the first build (`cancel_superseded`). Also: the `poller` hook makes a git poller
//! poll now, and a body announced over the limit with `Expect: 100-continue` is refused before it is sent.
//!
//!     cargo test -p kiln --test pull_requests

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{toml_str, KilnMaster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);
const OPENED: &[u8] = include_bytes!("../../master/tests/fixtures/webhooks/github/pull_request_opened.json");
const SYNCHRONIZE: &[u8] = include_bytes!("../../master/tests/fixtures/webhooks/github/pull_request_synchronize.json");

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(repo: &Path, file: &str, contents: &str) -> String {
    std::fs::write(repo.join(file), contents).expect("write a file");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", &format!("{file}: {contents}")]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A bare `origin.git` with `main`, and a work tree `work` to make the pull request's commits in.
fn repositories(parent: &Path) -> (PathBuf, PathBuf) {
    let (origin, work) = (parent.join("origin.git"), parent.join("work"));
    std::fs::create_dir_all(&work).expect("mkdir work");
    git(parent, &["init", "-q", "--bare", "origin.git"]);
    git(&work, &["init", "-q"]);
    commit(&work, "a.txt", "main");
    git(&work, &["push", "-q", origin.to_str().expect("utf-8 path"), "main"]);
    git(&work, &["checkout", "-q", "-b", "changes"]);
    (origin, work)
}

/// What GitHub does when a pull request's branch moves: its head ref in the base repository follows.
fn update_pull_ref(work: &Path, origin: &Path) {
    git(work, &["push", "-q", "-f", origin.to_str().expect("utf-8 path"), "HEAD:refs/pull/2/head"]);
}

/// A fixture delivery pointed at the local repository and head.
fn delivery(fixture: &[u8], origin: &Path, head: &str) -> Vec<u8> {
    let mut payload: Value = serde_json::from_slice(fixture).expect("fixture JSON");
    let url = origin.display().to_string();
    payload["repository"]["html_url"] = json!(url);
    payload["repository"]["clone_url"] = json!(url);
    payload["pull_request"]["head"]["sha"] = json!(head);
    serde_json::to_vec(&payload).expect("JSON")
}

async fn post_github(master: &KilnMaster, event: &str, body: Vec<u8>) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/change_hook/github", master.url()))
        .header("X-GitHub-Event", event)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST change_hook/github");
    let status = response.status();
    let answer: Value = response.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{status}: {answer}");
    answer
}

async fn builds(master: &KilnMaster) -> Vec<Value> {
    master.get("builders/pr/builds?order=number").await["builds"].as_array().cloned().unwrap_or_default()
}

async fn got_revision(master: &KilnMaster, buildid: i64) -> String {
    let props = master.get_one(&format!("builds/{buildid}/properties")).await;
    props["got_revision"][0].as_str().unwrap_or_else(|| master.fail(&format!("no got_revision: {props}"))).to_owned()
}

#[tokio::test]
async fn a_pull_request_is_built_at_its_head_and_a_new_push_to_it_cancels_the_older_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (origin, work) = repositories(dir.path());
    // The first head holds `slow`: its build waits in its `wait` step until it is cancelled.
    std::fs::write(work.join("slow"), "").expect("write slow");
    let first = commit(&work, "a.txt", "first head");
    update_pull_ref(&work, &origin);

    let steps = format!(
        "collapse_requests = false\n\
         [[builder.step]]\nname = \"checkout\"\ntype = \"git\"\nrepourl = {}\n\n\
         [[builder.step]]\nname = \"wait\"\ncommand = \"if test -e slow; then sleep 300; fi\"\n\n\
         [[builder.step]]\nname = \"show\"\ncommand = \"cat a.txt\"\n",
        toml_str(origin.display().to_string())
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("pr", &steps)
        .extra_toml(
            "[change_hooks.github]\n\n\
             [[scheduler]]\nname = \"pull-requests\"\ntype = \"on_change\"\nbuilders = [\"pr\"]\n\
             category = \"pull\"\ncancel_superseded = true\n",
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    let answer = post_github(&master, "pull_request", delivery(OPENED, &origin, &first)).await;
    assert_eq!(answer["changes"].as_array().map(Vec::len), Some(1), "{answer}");
    let change = &master.get("changes").await["changes"][0];
    assert_eq!(change["branch"], json!("refs/pull/2/head"), "{change:#}");
    assert_eq!(change["category"], json!("pull"));
    assert_eq!(change["revision"], json!(first));
    assert_eq!(change["properties"]["pr_number"], json!([2, "Change"]));

    // The first build checks out the head and waits.
    let first_build = master
        .wait_for("the first build waiting in its wait step", WAIT, async || {
            let build = builds(&master).await.into_iter().next()?;
            let buildid = master.id(&build, "buildid");
            let wait = master.steps(buildid).await.into_iter().find(|s| s["name"] == "wait")?;
            wait["started_at"].as_i64().map(|_| buildid)
        })
        .await;
    assert_eq!(got_revision(&master, first_build).await, first);
    let checkout = master.worker_dir("w").join("pr").join("build");
    assert_eq!(std::fs::read_to_string(checkout.join("a.txt")).expect("a.txt"), "first head");

    // A new push to the pull request: GitHub moves the ref and sends `synchronize`.
    std::fs::remove_file(work.join("slow")).expect("remove slow");
    let second = commit(&work, "a.txt", "second head");
    update_pull_ref(&work, &origin);
    post_github(&master, "pull_request", delivery(SYNCHRONIZE, &origin, &second)).await;

    let done = master
        .wait_for("both builds complete", WAIT, async || {
            let builds = builds(&master).await;
            (builds.len() == 2 && builds.iter().all(|b| b["complete"] == json!(true))).then_some(builds)
        })
        .await;
    assert_eq!(master.results(&done[0]), results::CANCELLED, "the superseded build: {:#}", done[0]);
    assert_eq!(master.results(&done[1]), results::SUCCESS, "{:#}", done[1]);
    let second_build = master.id(&done[1], "buildid");
    assert_eq!(got_revision(&master, second_build).await, second);
    let show = master.step(second_build, "show").await;
    let log = master.log(master.id(&show, "stepid"), "stdio").await;
    assert!(log.has_line('o', "second head"), "{}", log.dump());

    // A closed pull request is answered 200 and builds nothing.
    let closed: Value = serde_json::from_slice(OPENED)
        .map(|mut v: Value| {
            v["action"] = json!("closed");
            v
        })
        .expect("JSON");
    let answer = post_github(&master, "pull_request", serde_json::to_vec(&closed).expect("JSON")).await;
    assert_eq!(answer["changes"], json!([]), "{answer}");
    assert!(answer["ignored"].as_str().is_some_and(|why| why.contains("closed")), "{answer}");
}

#[tokio::test]
async fn the_poller_hook_makes_a_git_poller_poll_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (origin, work) = repositories(dir.path());
    git(&work, &["checkout", "-q", "main"]);
    // An hour between polls: only the hook can find the next commit within the test.
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"")
        .extra_toml(&format!(
            "[[change_source]]\nname = \"origin\"\ntype = \"git\"\nrepository = {}\nbranches = [\"main\"]\n\
             poll_interval = 3600\n\n[change_hooks.poller]\ntoken = \"t0ken\"\n",
            toml_str(origin.display().to_string())
        ))
        .start()
        .await;
    master
        .wait_for("the poller's first fetch", WAIT, async || {
            let mirrors = std::fs::read_dir(master.master_dir().join("gitpoller")).ok()?;
            mirrors.flatten().any(|mirror| mirror.path().join("refs/heads/main").exists()).then_some(())
        })
        .await;
    let pushed = commit(&work, "b.txt", "pushed");
    git(&work, &["push", "-q", origin.to_str().expect("utf-8 path"), "main"]);

    let client = reqwest::Client::new();
    let unknown = client
        .post(format!("{}/change_hook/poller?poller=nope", master.url()))
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("POST");
    assert_eq!(unknown.status(), reqwest::StatusCode::BAD_REQUEST);
    let response = client
        .post(format!("{}/change_hook/poller?poller=origin", master.url()))
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("POST change_hook/poller");
    assert!(response.status().is_success(), "{:?}", response.text().await);
    let change = master
        .wait_for("the pushed commit as a change", WAIT, async || {
            let changes = master.get("changes").await["changes"].as_array().cloned().unwrap_or_default();
            changes.into_iter().find(|c| c["revision"] == json!(pushed))
        })
        .await;
    assert_eq!(change["branch"], json!("main"));
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_without_100_continue() {
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"")
        .extra_toml("[change_hooks.github]\n")
        .start()
        .await;
    let address = master.url().trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /change_hook/github HTTP/1.1\r\nHost: {address}\r\nX-GitHub-Event: push\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        20 * 1024 * 1024
    );
    socket.write_all(head.as_bytes()).await.expect("send the head");
    // The answer comes without a byte of the body sent: the first thing read is the 413, not `100 Continue`.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(WAIT, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer without the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
}
