//! Pull requests end to end: GitHub's own `pull_request` example deliveries (fixtures), their repository and
//! head rewritten to a local bare repository that has `refs/pull/2/head`, posted to `kiln start`'s GitHub hook →
//! a build on a real Kiln worker that checks out the request's head; a second push to the request
//! (`synchronize`) cancels the first build (`cancel_superseded`). Also: the `poller` hook makes a git poller
//! poll now, and a body announced over the limit with `Expect: 100-continue` is refused before it is sent.
//!
//! The statuses: a pull request's build (GitHub) and a merge request's (GitLab) post their start and result for
//! the request's head commit to a local server standing in for the forge's API (`support::recorder`), which
//! checks each request against the forge's documented shape. Forks: a build of a pull request from another
//! repository gets no secrets unless its builder opts in. Bitbucket's redeliveries store nothing again.
//!
//!     cargo test -p kiln --test pull_requests

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{toml_str, KilnMaster};
use support::recorder::{Recorder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);
const OPENED: &[u8] = include_bytes!("../../master/tests/fixtures/webhooks/github/pull_request_opened.json");
const SYNCHRONIZE: &[u8] = include_bytes!("../../master/tests/fixtures/webhooks/github/pull_request_synchronize.json");
const GITLAB_MR: &[u8] = include_bytes!("../../master/tests/fixtures/webhooks/gitlab/merge_request_open.json");
const BITBUCKET_PUSH: &[u8] = include_bytes!("../../master/tests/fixtures/webhooks/bitbucket/push.json");

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
    post_hook(master, "github", &[("X-GitHub-Event", event)], body).await
}

/// Posts `body` to `/change_hook/{dialect}` with `headers`; the answer must be a success.
async fn post_hook(master: &KilnMaster, dialect: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{}/change_hook/{dialect}", master.url()))
        .header("Content-Type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST change_hook/{dialect}: {e}"));
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

/// A step that waits until the test creates `{go}-<build number>`: the test sees the build's first status
/// arrive before the build may end (the outbox replaces a start not yet sent by the result).
fn gate(go: &Path) -> String {
    format!(
        "[[builder.step]]\nname = \"gate\"\ncommand = {}\n\n",
        toml_str(format!("while ! test -e {}-%(prop:buildnumber)s; do sleep 0.1; done", go.display()))
    )
}

fn open_gate(go: &Path, number: i64) {
    std::fs::write(format!("{}-{number}", go.display()), "").expect("open the gate");
}

/// Whether `status` is about a request still queued (its link is the request's, not a build's).
fn of_a_request(status: &Request) -> bool {
    status.json()["target_url"].as_str().is_some_and(|u| u.contains("/#/buildrequests/"))
}

/// The `n`th status about a build the forge's stand-in got (from 1), once it has arrived: project lookups aside,
/// and the `pending` posted when the request was queued (the build's own status may supersede it before it is
/// sent; `tests/reporters.rs` checks it).
async fn nth_status(recorder: &Recorder, n: usize) -> Request {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = recorder.requests();
        let statuses: Vec<&Request> = all.iter().filter(|r| r.method == "POST" && !of_a_request(r)).collect();
        if let Some(status) = statuses.get(n - 1) {
            return (*status).clone();
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{} of {n} statuses arrived: {statuses:#?}", statuses.len());
        // Until one more request has come (at once if it came meanwhile).
        recorder.wait_requests(all.len() + 1, left).await;
    }
}

/// The build numbered `number` of `builder`, once it exists.
async fn build_numbered(master: &KilnMaster, builder: &str, number: i64) -> Value {
    master
        .wait_for(&format!("build {builder}/{number}"), WAIT, async || {
            let builds = master.get(&format!("builders/{builder}/builds?order=number")).await;
            builds["builds"].as_array()?.iter().find(|b| b["number"] == json!(number)).cloned()
        })
        .await
}

/// What GitHub documents for `POST /repos/{owner}/{repo}/statuses/{sha}`: the path, the token, JSON with `state`
/// (error, failure, pending, success), `target_url`, `description` (at most 140 characters) and `context`.
fn assert_github_status(status: &Request, sha: &str, state: &str, target_url: &str) {
    assert_eq!(
        (status.method.as_str(), status.path.as_str()),
        ("POST", &*format!("/repos/Codertocat/Hello-World/statuses/{sha}"))
    );
    assert_eq!(status.headers.get("authorization").map(String::as_str), Some("token gh-T0KEN"), "{status:#?}");
    assert_eq!(status.headers.get("accept").map(String::as_str), Some("application/vnd.github+json"));
    assert!(status.headers.get("content-type").is_some_and(|t| t.starts_with("application/json")));
    let body = status.json();
    let fields: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(fields, ["context", "description", "state", "target_url"], "{body:#}");
    assert_eq!(body["state"], json!(state), "{body:#}");
    assert_eq!(body["context"], json!("kiln/pr"));
    assert_eq!(body["target_url"], json!(target_url));
    let description = body["description"].as_str().expect("a description");
    assert!(!description.is_empty() && description.chars().count() <= 140, "{description:?}");
}

#[tokio::test]
async fn a_pull_requests_build_posts_pending_then_its_result_for_the_head_commit_to_github() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (origin, work) = repositories(dir.path());
    let first = commit(&work, "a.txt", "first head");
    update_pull_ref(&work, &origin);
    let github = Recorder::start(Vec::new()).await;
    let go = dir.path().join("go");

    let steps = format!(
        "[[builder.step]]\nname = \"checkout\"\ntype = \"git\"\nrepourl = {}\n\n{}\
         [[builder.step]]\nname = \"check\"\ncommand = \"test ! -e broken\"\n",
        toml_str(origin.display().to_string()),
        gate(&go)
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("pr", &steps)
        .extra_toml(&format!(
            "[change_hooks.github]\n\n\
             [[scheduler]]\nname = \"pull-requests\"\ntype = \"on_change\"\nbuilders = [\"pr\"]\ncategory = \"pull\"\n\n\
             [[reporter]]\nname = \"github\"\ntype = \"github\"\nbase_url = {}\ntoken = \"gh-T0KEN\"\n",
            toml_str(&github.url)
        ))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let builderid = master.builder_id("pr").await;
    let target_url = |number: i64| format!("{}/#/builders/{builderid}/builds/{number}", master.url());

    post_github(&master, "pull_request", delivery(OPENED, &origin, &first)).await;
    // The build has started and waits at its gate: GitHub is told it is pending, for the head commit.
    let pending = nth_status(&github, 1).await;
    assert_github_status(&pending, &first, "pending", &target_url(1));
    assert_eq!(pending.json()["description"], json!("Build started."));
    let build = build_numbered(&master, "pr", 1).await;
    assert_eq!(build["complete"], json!(false), "the status came while it ran: {build:#}");
    open_gate(&go, 1);
    let success = nth_status(&github, 2).await;
    assert_github_status(&success, &first, "success", &target_url(1));
    assert_eq!(success.json()["description"], json!("build successful"));
    let build = master.wait_build_complete(master.id(&build, "buildid")).await;
    assert_eq!(master.results(&build), results::SUCCESS);
    assert_eq!(got_revision(&master, master.id(&build, "buildid")).await, first);

    // A push to the pull request that breaks it: pending, then failure, for the new head.
    std::fs::write(work.join("broken"), "").expect("write broken");
    let second = commit(&work, "a.txt", "second head");
    update_pull_ref(&work, &origin);
    post_github(&master, "pull_request", delivery(SYNCHRONIZE, &origin, &second)).await;
    assert_github_status(&nth_status(&github, 3).await, &second, "pending", &target_url(2));
    open_gate(&go, 2);
    let failure = nth_status(&github, 4).await;
    assert_github_status(&failure, &second, "failure", &target_url(2));
    let description = failure.json()["description"].as_str().map(str::to_owned).unwrap_or_default();
    assert!(description.starts_with("failed"), "{description:?}");
    // One status per start and end of each build, and at most one per request while it was queued.
    let statuses = github.requests();
    let queued = statuses.iter().filter(|r| of_a_request(r));
    assert!(queued.clone().all(|r| r.json()["state"] == json!("pending")), "{statuses:#?}");
    let queued = queued.count();
    assert!(queued <= 2, "{statuses:#?}");
    assert_eq!(statuses.len() - queued, 4, "one status per start and end: {statuses:#?}");
}

#[tokio::test]
async fn a_merge_requests_build_posts_running_then_its_result_for_the_head_commit_to_gitlab() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (origin, work) = repositories(dir.path());
    let head = commit(&work, "a.txt", "merge request head");
    // GitLab keeps the head of merge request !6 at this ref of the target project.
    git(&work, &["push", "-q", "-f", origin.to_str().expect("utf-8 path"), "HEAD:refs/merge-requests/6/head"]);
    let gitlab = Recorder::start(Vec::new()).await;
    let go = dir.path().join("go");

    let steps = format!(
        "[[builder.step]]\nname = \"checkout\"\ntype = \"git\"\nrepourl = {}\n\n{}\
         [[builder.step]]\nname = \"show\"\ncommand = \"cat a.txt\"\n",
        toml_str(origin.display().to_string()),
        gate(&go)
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("mr", &steps)
        .extra_toml(&format!(
            "[change_hooks.gitlab]\nsecret = \"gl-hook-token\"\n\n\
             [[scheduler]]\nname = \"merge-requests\"\ntype = \"on_change\"\nbuilders = [\"mr\"]\ncategory = \"pull\"\n\n\
             [[reporter]]\nname = \"gitlab\"\ntype = \"gitlab\"\nbase_url = {}\ntoken = \"gl-T0KEN\"\n",
            toml_str(&gitlab.url)
        ))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let builderid = master.builder_id("mr").await;

    let mut payload: Value = serde_json::from_slice(GITLAB_MR).expect("fixture JSON");
    payload["project"]["git_http_url"] = json!(origin.display().to_string());
    payload["object_attributes"]["last_commit"]["id"] = json!(head);
    let headers = [("X-Gitlab-Event", "Merge Request Hook"), ("X-Gitlab-Token", "gl-hook-token")];
    let answer = post_hook(&master, "gitlab", &headers, serde_json::to_vec(&payload).expect("JSON")).await;
    assert_eq!(answer["changes"].as_array().map(Vec::len), Some(1), "{answer}");

    // GitLab's `POST /projects/:id/statuses/:sha`: the project's id is asked for by its path first.
    let running = nth_status(&gitlab, 1).await;
    let lookup = &gitlab.requests()[0];
    assert_eq!(
        (lookup.method.as_str(), lookup.path.as_str()),
        ("GET", "/api/v4/projects/mmusterman%2Fawesome_project")
    );
    let check = |status: &Request, state: &str| {
        assert_eq!(
            (status.method.as_str(), status.path.as_str()),
            ("POST", &*format!("/api/v4/projects/1/statuses/{head}"))
        );
        assert_eq!(status.headers.get("private-token").map(String::as_str), Some("gl-T0KEN"), "{status:#?}");
        let body = status.json();
        assert_eq!(body["state"], json!(state), "{body:#}");
        assert_eq!(body["name"], json!("kiln/mr"));
        // The merge request's source branch, as GitLab's own pipelines for it name it.
        assert_eq!(body["ref"], json!("ms-viewport"));
        assert_eq!(body["target_url"], json!(format!("{}/#/builders/{builderid}/builds/1", master.url())));
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()), "{body:#}");
    };
    check(&running, "running");
    open_gate(&go, 1);
    check(&nth_status(&gitlab, 2).await, "success");
    let build = build_numbered(&master, "mr", 1).await;
    let show = master.step(master.id(&build, "buildid"), "show").await;
    let log = master.log(master.id(&show, "stepid"), "stdio").await;
    assert!(log.has_line('o', "merge request head"), "{}", log.dump());
}

#[tokio::test]
async fn a_build_of_a_pull_request_from_a_fork_gets_no_secrets_unless_its_builder_opts_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each builder's one step needs the secret's value on the worker.
    let step =
        "[[builder.step]]\nname = \"deploy\"\ncommand = \"test '%(secret:deploy-token)s' = token-for-deploy-token\"\n";
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("pr", step)
        .builder("pr-trusted", &format!("fork_secrets = true\n{step}"))
        .extra_toml(
            "[change_hooks.github]\nbuild_forks = true\n\n\
             [[secret_provider]]\ntype = \"command\"\nargv = ['printf token-for-%s \"$1\"']\nshell = true\n\n\
             [[scheduler]]\nname = \"pull-requests\"\ntype = \"on_change\"\nbuilders = [\"pr\", \"pr-trusted\"]\n\
             category = \"pull\"\n",
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let origin = dir.path().join("origin.git");

    // GitHub's example, its head moved to a fork.
    let mut fork: Value =
        serde_json::from_slice(&delivery(OPENED, &origin, "0123456789abcdef0123456789abcdef01234567")).expect("JSON");
    fork["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/Hello-World");
    let answer = post_github(&master, "pull_request", serde_json::to_vec(&fork).expect("JSON")).await;
    assert_eq!(answer["changes"].as_array().map(Vec::len), Some(1), "{answer}");
    let change = &master.get("changes").await["changes"][0];
    assert_eq!(change["properties"]["fork"], json!([true, "Change"]), "{change:#}");

    let withheld = master.wait_build_complete(master.id(&build_numbered(&master, "pr", 1).await, "buildid")).await;
    assert_eq!(master.results(&withheld), results::FAILURE, "{withheld:#}");
    let deploy = master.step(master.id(&withheld, "buildid"), "deploy").await;
    let log = master.log(master.id(&deploy, "stepid"), "stdio").await;
    let said = "step 'deploy' cannot run: secret 'deploy-token' is withheld: the build is of pull request #2 from \
                another repository (mallory/Hello-World), and builder 'pr' gets secrets for those only with \
                fork_secrets = true";
    assert!(log.has_line('h', said), "{}", log.dump());
    assert!(log.lines.iter().all(|l| !l.text.contains("program finished")), "no command ran: {}", log.dump());
    let trusted =
        master.wait_build_complete(master.id(&build_numbered(&master, "pr-trusted", 1).await, "buildid")).await;
    assert_eq!(master.results(&trusted), results::SUCCESS, "fork_secrets = true: {trusted:#}");

    // The repository's own pull request: its build has its secrets.
    post_github(&master, "pull_request", delivery(OPENED, &origin, "89abcdef0123456789abcdef0123456789abcdef")).await;
    let own = master.wait_build_complete(master.id(&build_numbered(&master, "pr", 2).await, "buildid")).await;
    assert_eq!(master.results(&own), results::SUCCESS, "{own:#}");
}

#[tokio::test]
async fn a_bitbucket_redelivery_stores_nothing_again() {
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"")
        .extra_toml("[change_hooks.bitbucket]\n")
        .start()
        .await;
    let changes = async || master.get("changes").await["changes"].as_array().map_or(0, Vec::len);
    // Bitbucket Cloud: `X-Request-UUID` names the request, `X-Attempt-Number` counts its attempts.
    let uuid = "6d6a1bd6-1fb0-4b7a-8c36-0e3c0b0f5b7e";
    let attempt = |n: &'static str| [("X-Event-Key", "repo:push"), ("X-Request-UUID", uuid), ("X-Attempt-Number", n)];
    let first = post_hook(&master, "bitbucket", &attempt("1"), BITBUCKET_PUSH.to_vec()).await;
    let stored = first["changes"].as_array().map_or(0, Vec::len);
    assert!(stored > 0, "{first}");
    assert_eq!(changes().await, stored);
    let again = post_hook(&master, "bitbucket", &attempt("2"), BITBUCKET_PUSH.to_vec()).await;
    assert_eq!(again, first, "a retry is answered as the first attempt was");
    assert_eq!(changes().await, stored, "and stores nothing");

    // Another request (another push with the same body, say) is stored; so is one without an id, each time.
    let other = [("X-Event-Key", "repo:push"), ("X-Request-UUID", "0f8e2a3c-52d4-4d1b-9a7e-3b2c1d0e9f8a")];
    let answer = post_hook(&master, "bitbucket", &other, BITBUCKET_PUSH.to_vec()).await;
    assert_ne!(answer, first);
    assert_eq!(changes().await, 2 * stored);
    let without = [("X-Event-Key", "repo:push")];
    post_hook(&master, "bitbucket", &without, BITBUCKET_PUSH.to_vec()).await;
    post_hook(&master, "bitbucket", &without, BITBUCKET_PUSH.to_vec()).await;
    assert_eq!(changes().await, 4 * stored);
}
