//! End-to-end: the `git` step on real workers with real repositories in temporary directories — clones, updates,
//! the `full` methods, shallow clones, submodules, a forced older revision, `got_revision` — read back from the
//! worker's disk and through the REST API.
//!
//!     cargo test -p kiln --test git_step

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{toml_str, KilnMaster};

/// Runs git in `dir` (as a test author with a fixed identity); returns its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.invalid", "-c", "init.defaultBranch=main"])
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `file` in `repo` and commits it; returns the new revision.
fn commit(repo: &Path, file: &str, contents: &str) -> String {
    std::fs::write(repo.join(file), contents).expect("write a file");
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", &format!("{file}: {contents}")]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A new repository `name` under `parent` on branch `main`, with `.gitignore` ignoring `*.log` and `a.txt`.
fn new_repo(parent: &Path, name: &str) -> (PathBuf, String) {
    let repo = parent.join(name);
    std::fs::create_dir_all(&repo).expect("create the repository");
    git(&repo, &["init", "-q"]);
    commit(&repo, ".gitignore", "*.log\n");
    let head = commit(&repo, "a.txt", "one");
    (repo, head)
}

/// A `[[builder.step]]` of type git with the given extra keys, then a step listing the checkout.
fn git_builder(repourl: &str, keys: &str) -> String {
    // Local file:// submodules need this since git 2.38.1; the worker's git reads it from the environment.
    let env =
        r#"env = { GIT_CONFIG_COUNT = "1", GIT_CONFIG_KEY_0 = "protocol.file.allow", GIT_CONFIG_VALUE_0 = "always" }"#;
    format!(
        "[[builder.step]]\nname = \"checkout\"\ntype = \"git\"\nrepourl = {}\n{env}\n{keys}\n\n\
         [[builder.step]]\nname = \"show\"\ncommand = \"cat a.txt\"\n",
        toml_str(repourl)
    )
}

/// A forced build of `builder` with force parameters `params`: it must succeed; returns its build id.
async fn build(master: &KilnMaster, builder: &str, params: Value) -> i64 {
    let brid = master.force_with(builder, params.clone()).await;
    let request = master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    let buildid = master.id(&builds[0], "buildid");
    if master.results(&request) != results::SUCCESS {
        let step = master.step(buildid, "checkout").await;
        let log = master.log_raw(master.id(&step, "stepid"), "stdio").await;
        master.fail(&format!("build of {builder} with {params} failed; the git step's log:\n{log}"));
    }
    buildid
}

/// The `got_revision` property of a build.
async fn got_revision(master: &KilnMaster, buildid: i64) -> String {
    let props = master.get_one(&format!("builds/{buildid}/properties")).await;
    assert_eq!(props["got_revision"][1], "Git", "{props}");
    props["got_revision"][0].as_str().unwrap_or_else(|| master.fail(&format!("no got_revision: {props}"))).to_owned()
}

/// A master with one Kiln worker `w1` and the given builders, connected.
async fn master_with(kind: WorkerKind, builders: &[(&str, String)]) -> KilnMaster {
    let mut config = KilnMaster::builder().worker("w1", "pw-1");
    for (name, body) in builders {
        config = config.builder(name, body);
    }
    let mut master = config.start().await;
    master.start_worker(kind, "w1").await;
    master.wait_worker_connected("w1").await;
    master
}

#[tokio::test]
async fn incremental_clones_then_updates_and_checks_out_a_forced_older_revision() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let (origin, first) = new_repo(repos.path(), "origin");
    let builder = git_builder(&origin.display().to_string(), "branch = \"main\"");
    let master = master_with(WorkerKind::Kiln, &[("inc", builder)]).await;
    let checkout = master.worker_dir("w1").join("inc").join("build");

    // First build: a clone of the branch's head.
    let buildid = build(&master, "inc", json!({})).await;
    assert_eq!(got_revision(&master, buildid).await, first);
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), first);
    assert_eq!(git(&checkout, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    let step = master.step(buildid, "checkout").await;
    let log = master.log_raw(master.id(&step, "stepid"), "stdio").await;
    assert!(log.contains("clone") && log.contains("rev-parse"), "the git commands are in the log:\n{log}");
    let show = master.step(buildid, "show").await;
    let log = master.log(master.id(&show, "stepid"), "stdio").await;
    assert!(log.lines.iter().any(|l| l.channel == 'o' && l.text == "one"), "{log:?}");

    // A new commit: an incremental build of that revision updates the checkout in place.
    let second = commit(&origin, "a.txt", "two");
    std::fs::write(checkout.join("untracked.txt"), "stays").expect("write an untracked file");
    let buildid = build(&master, "inc", json!({ "revision": second })).await;
    assert_eq!(got_revision(&master, buildid).await, second);
    assert_eq!(std::fs::read_to_string(checkout.join("a.txt")).expect("a.txt"), "two");
    assert!(checkout.join("untracked.txt").exists(), "incremental keeps untracked files");

    // A forced older revision is checked out exactly.
    let buildid = build(&master, "inc", json!({ "revision": first })).await;
    assert_eq!(got_revision(&master, buildid).await, first);
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), first);
    assert_eq!(std::fs::read_to_string(checkout.join("a.txt")).expect("a.txt"), "one");

    // Without a revision, the branch's head again.
    let buildid = build(&master, "inc", json!({})).await;
    assert_eq!(got_revision(&master, buildid).await, second);
}

#[tokio::test]
async fn full_methods_clobber_fresh_and_clean() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let (origin, head) = new_repo(repos.path(), "origin");
    let url = origin.display().to_string();
    let builders = [
        ("clobber", git_builder(&url, "mode = \"full\"\nmethod = \"clobber\"")),
        ("fresh", git_builder(&url, "mode = \"full\"")),
        ("clean", git_builder(&url, "mode = \"full\"\nmethod = \"clean\"")),
        ("copy", git_builder(&url, "mode = \"full\"\nmethod = \"copy\"")),
    ];
    let master = master_with(WorkerKind::Kiln, &builders).await;
    let checkout = |builder: &str| master.worker_dir("w1").join(builder).join("build");

    for (builder, _) in &builders {
        let buildid = build(&master, builder, json!({})).await;
        assert_eq!(got_revision(&master, buildid).await, head, "{builder}");
        std::fs::write(checkout(builder).join("junk.txt"), "untracked").expect("write");
        std::fs::write(checkout(builder).join("keep.log"), "ignored").expect("write");
        std::fs::write(checkout(builder).join(".git").join("marker"), "inside .git").expect("write");
        build(&master, builder, json!({})).await;
        let exists = |file: &str| checkout(builder).join(file).exists();
        let found = (exists("junk.txt"), exists("keep.log"), exists(".git/marker"), exists("a.txt"));
        let expected = match *builder {
            // A new clone: nothing of the old directory is left.
            "clobber" | "copy" => (false, false, false, true),
            // git clean -x: untracked and ignored files go, the repository stays.
            "fresh" => (false, false, true, true),
            // git clean without -x: ignored files stay.
            _ => (false, true, true, true),
        };
        assert_eq!(found, expected, "{builder}: (junk.txt, keep.log, .git/marker, a.txt)");
    }
    assert!(master.worker_dir("w1").join("copy").join("source").join(".git").exists(), "copy keeps its source");
}

#[tokio::test]
async fn a_shallow_clone_has_depth_one_and_submodules_are_checked_out() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let (sub, sub_head) = new_repo(repos.path(), "sub");
    let (origin, _) = new_repo(repos.path(), "origin");
    commit(&origin, "b.txt", "more history");
    git(&origin, &["submodule", "add", "-q", &sub.display().to_string(), "libsub"]);
    git(&origin, &["commit", "-q", "-m", "add the submodule"]);
    let url = format!("file://{}", origin.display());
    let builders = [
        ("shallow", git_builder(&url, "mode = \"full\"\nmethod = \"clobber\"\nshallow = true")),
        ("subs", git_builder(&url, "submodules = true")),
    ];
    let master = master_with(WorkerKind::Kiln, &builders).await;

    build(&master, "shallow", json!({})).await;
    let shallow = master.worker_dir("w1").join("shallow").join("build");
    assert_eq!(git(&shallow, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git(&shallow, &["rev-parse", "--is-shallow-repository"]), "true");
    assert!(!shallow.join("libsub").join("a.txt").exists(), "no submodules without submodules = true");

    build(&master, "subs", json!({})).await;
    let subs = master.worker_dir("w1").join("subs").join("build");
    assert_eq!(git(&subs, &["rev-list", "--count", "HEAD"]), "4");
    assert_eq!(git(&subs.join("libsub"), &["rev-parse", "HEAD"]), sub_head);
    assert_eq!(std::fs::read_to_string(subs.join("libsub").join("a.txt")).expect("libsub/a.txt"), "one");
}

#[tokio::test]
async fn a_missing_repository_fails_the_step_and_sets_no_revision() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let missing = repos.path().join("nothing-here");
    let master = master_with(WorkerKind::Kiln, &[("broken", git_builder(&missing.display().to_string(), ""))]).await;
    let brid = master.force("broken").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::FAILURE);
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
    let step = master.step(buildid, "checkout").await;
    assert_eq!(master.results(&step), results::FAILURE);
    let props = master.get_one(&format!("builds/{buildid}/properties")).await;
    assert!(props.get("got_revision").is_none(), "{props}");
}

#[tokio::test]
async fn the_stock_buildbot_worker_runs_the_git_step() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let (origin, first) = new_repo(repos.path(), "origin");
    let second = commit(&origin, "a.txt", "two");
    let builders = [("bb", git_builder(&origin.display().to_string(), "mode = \"full\"\nmethod = \"fresh\""))];
    let master = master_with(WorkerKind::Buildbot, &builders).await;
    let buildid = build(&master, "bb", json!({})).await;
    assert_eq!(got_revision(&master, buildid).await, second);
    let buildid = build(&master, "bb", json!({ "revision": first })).await;
    assert_eq!(got_revision(&master, buildid).await, first);
    let checkout = master.worker_dir("w1").join("bb").join("build");
    assert_eq!(std::fs::read_to_string(checkout.join("a.txt")).expect("a.txt"), "one");
}

#[tokio::test]
async fn a_trigger_step_passes_on_the_revision_its_build_checked_out() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let (origin, head) = new_repo(repos.path(), "origin");
    let parent = git_builder(&origin.display().to_string(), "branch = \"main\"")
        + "\n[[builder.step]]\nname = \"trigger\"\ntype = \"trigger\"\nschedulers = [\"after\"]\n\
           wait_for_finish = true\nset_properties = { from = \"%(prop:buildername)s #%(prop:buildnumber)s\" }\n";
    let mut master = KilnMaster::builder()
        .worker("w1", "pw-1")
        .builder("parent", &parent)
        .builder("child", "[[builder.step]]\ncommand = \"echo child\"")
        .extra_toml("[[scheduler]]\nname = \"after\"\ntype = \"triggerable\"\nbuilders = [\"child\"]\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;

    // Forced on the branch alone: the build checks out its head, and the triggered build gets that revision.
    let repository = origin.display().to_string();
    let buildid = build(&master, "parent", json!({ "branch": "main", "repository": repository })).await;
    assert_eq!(got_revision(&master, buildid).await, head);
    let children = master.get(&format!("buildsets?parent_buildid={buildid}")).await;
    let child = &children["buildsets"][0];
    assert_eq!(child["sourcestamps"][0]["revision"], head.as_str(), "{children:#}");
    assert_eq!(child["sourcestamps"][0]["branch"], "main", "{children:#}");
    let props = master.get_one(&format!("buildsets/{}/properties", master.id(child, "bsid"))).await;
    assert_eq!(props["from"], json!(["parent #1", "Trigger"]), "{props:#}");
}

#[tokio::test]
async fn a_timed_scheduler_builds_its_branch_with_its_reason_and_properties() {
    let repos = tempfile::tempdir().expect("create a temporary directory");
    let (origin, _) = new_repo(repos.path(), "origin");
    git(&origin, &["checkout", "-q", "-b", "support"]);
    let support = commit(&origin, "a.txt", "support");
    git(&origin, &["checkout", "-q", "main"]);
    commit(&origin, "a.txt", "main moved on");
    // A periodic scheduler fires right after the start: one build of `support`, not of the step's `main`.
    let mut master = KilnMaster::builder()
        .worker("w1", "pw-1")
        .builder("weekly", &git_builder(&origin.display().to_string(), "branch = \"main\""))
        .extra_toml(
            "[[scheduler]]\nname = \"support-weekly\"\ntype = \"periodic\"\ninterval = 86400\nbuilders = [\"weekly\"]\n\
             branch = \"support\"\nreason = \"the weekly build of support\"\nproperties = { suite = \"full\" }\n",
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    let buildset = master
        .wait_for("the periodic scheduler's buildset", std::time::Duration::from_secs(60), async || {
            let found = master.try_get("buildsets?scheduler=support-weekly&complete=true").await?;
            found["buildsets"].as_array()?.first().cloned()
        })
        .await;
    assert_eq!(buildset["reason"], "the weekly build of support", "{buildset}");
    assert_eq!(buildset["results"], json!(results::SUCCESS), "{buildset}");
    assert_eq!(buildset["sourcestamps"][0]["branch"], "support", "{buildset}");
    let builds = master.get(&format!("builds?builderid={}", master.builder_id("weekly").await)).await;
    let buildid = master.id(&builds["builds"][0], "buildid");
    assert_eq!(got_revision(&master, buildid).await, support);
    let props = master.get_one(&format!("builds/{buildid}/properties")).await;
    assert_eq!(props["suite"], json!(["full", "Scheduler"]), "{props}");
    assert_eq!(props["branch"][0], "support", "{props}");
}
