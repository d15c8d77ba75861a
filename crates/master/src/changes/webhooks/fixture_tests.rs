//! The hooks on payloads the forges (and others) published: `crates/master/tests/fixtures/webhooks/`, whose
//! `SOURCES.md` says where each one comes from. Each defect found on a real delivery has its test here.

use serde_json::json;

use super::test_support::{edited, header_list};
use super::{changes_from, Forge, HookConfig, HookError, HookRequest, PullRef};
use crate::changes::NewChange;

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks/", $path)).as_slice()
    };
}

fn deliver(
    forge: Forge,
    config: &HookConfig,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<NewChange>, HookError> {
    let headers = header_list(headers);
    changes_from(forge, config, &HookRequest { headers: &headers, body })
}

fn github(config: &HookConfig, event: &str, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
    deliver(Forge::GitHub, config, &[("X-GitHub-Event", event)], body)
}

fn gitlab(config: &HookConfig, event: &str, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
    deliver(Forge::GitLab, config, &[("X-Gitlab-Event", event)], body)
}

fn gitea(config: &HookConfig, header: &str, event: &str, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
    deliver(Forge::Gitea, config, &[(header, event)], body)
}

fn bitbucket(config: &HookConfig, event: &str, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
    deliver(Forge::Bitbucket, config, &[("X-Event-Key", event)], body)
}

/// The one change of a result.
fn one(result: Result<Vec<NewChange>, HookError>) -> NewChange {
    let mut changes = result.unwrap_or_else(|e| panic!("no changes: {e}"));
    assert_eq!(changes.len(), 1, "{changes:?}");
    changes.remove(0)
}

fn assert_ignored(result: Result<Vec<NewChange>, HookError>, says: &str) {
    match result {
        Err(e @ HookError::Ignored { .. }) => {
            assert_eq!(e.status(), 200);
            assert!(e.to_string().contains(says), "{e}");
        }
        other => panic!("not ignored: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pull and merge requests.

#[test]
fn a_github_pull_request_opened_reopened_or_synchronized_is_a_change_of_its_head() {
    let config = HookConfig::default();
    let change = one(github(&config, "pull_request", fixture!("github/pull_request_opened.json")));
    assert_eq!(change.revision.as_deref(), Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"));
    assert_eq!(change.branch.as_deref(), Some("refs/pull/2/head"));
    assert_eq!(change.category.as_deref(), Some("pull"));
    assert_eq!(change.repository, "https://github.com/Codertocat/Hello-World");
    assert_eq!(change.project, "Codertocat/Hello-World");
    assert_eq!(change.author, "Codertocat");
    assert_eq!(
        change.comments,
        "Update the README with new information.\n\nThis is a pretty simple change that we need to pull into master."
    );
    assert_eq!(change.when_timestamp, 1_557_933_633);
    let p = &change.properties;
    assert_eq!(p["event"], json!("pull_request"));
    assert_eq!(p["action"], json!("opened"));
    assert_eq!(p["pr_number"], json!(2));
    assert_eq!(p["pr_title"], json!("Update the README with new information."));
    assert_eq!(p["pr_url"], json!("https://github.com/Codertocat/Hello-World/pull/2"));
    assert_eq!(p["pr_author"], json!("Codertocat"));
    assert_eq!(p["head_branch"], json!("changes"));
    assert_eq!(p["head_revision"], json!("ec26c3e57ca3a959ca5aad62de7213c562f8c821"));
    assert_eq!(p["head_repository"], json!("Codertocat/Hello-World"));
    assert_eq!(p["base_branch"], json!("master"));
    assert_eq!(p["fork"], json!(false));
    assert_eq!(p["basename"], json!("master"));
    assert_eq!(p["pullrequesturl"], json!("https://github.com/Codertocat/Hello-World/pull/2"));
    assert_eq!(p["clone_url"], json!("https://github.com/Codertocat/Hello-World.git"));

    for (file, action) in [
        (fixture!("github/pull_request_reopened.json"), "reopened"),
        (fixture!("github/pull_request_synchronize.json"), "synchronize"),
    ] {
        let change = one(github(&config, "pull_request", file));
        assert_eq!(change.branch.as_deref(), Some("refs/pull/2/head"));
        assert_eq!(change.properties["action"], json!(action));
    }
}

#[test]
fn a_github_merge_ref_is_built_at_its_tip() {
    let config = HookConfig { pull_request_ref: PullRef::Merge, ..HookConfig::default() };
    let change = one(github(&config, "pull_request", fixture!("github/pull_request_synchronize.json")));
    assert_eq!(change.branch.as_deref(), Some("refs/pull/2/merge"));
    assert_eq!(change.revision, None);
    assert_eq!(change.properties["head_revision"], json!("ec26c3e57ca3a959ca5aad62de7213c562f8c821"));
}

#[test]
fn other_github_pull_request_actions_make_no_changes_unless_opted_in() {
    let config = HookConfig::default();
    assert_ignored(github(&config, "pull_request", fixture!("github/pull_request_closed.json")), "#2 closed");
    assert_ignored(github(&config, "pull_request", fixture!("github/pull_request_converted_to_draft.json")), "#2");
    assert_ignored(github(&config, "pull_request", fixture!("github/pull_request_ready_for_review.json")), "#2");
    assert_ignored(github(&config, "pull_request", fixture!("github/pull_request_labeled.json")), "#2 labeled");

    let config = HookConfig { ready_for_review: true, labels: vec!["bug".into()], ..HookConfig::default() };
    let change = one(github(&config, "pull_request", fixture!("github/pull_request_ready_for_review.json")));
    assert_eq!(change.properties["action"], json!("ready_for_review"));
    let change = one(github(&config, "pull_request", fixture!("github/pull_request_labeled.json")));
    assert_eq!(change.properties["action"], json!("labeled"));
    let config = HookConfig { labels: vec!["ci".into()], ..HookConfig::default() };
    assert_ignored(github(&config, "pull_request", fixture!("github/pull_request_labeled.json")), "labeled");

    let off = HookConfig { pull_requests: false, ..HookConfig::default() };
    assert_ignored(github(&off, "pull_request", fixture!("github/pull_request_opened.json")), "pull_requests is off");
}

#[test]
fn a_github_pull_request_from_a_fork_is_built_only_with_build_forks() {
    let fork = edited(fixture!("github/pull_request_opened.json"), |v| {
        v["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/Hello-World");
    });
    assert_ignored(github(&HookConfig::default(), "pull_request", &fork), "mallory/Hello-World");
    // A fork deleted since is a fork too.
    let gone = edited(fixture!("github/pull_request_opened.json"), |v| v["pull_request"]["head"]["repo"] = json!(null));
    assert_ignored(github(&HookConfig::default(), "pull_request", &gone), "deleted");

    let config = HookConfig { build_forks: true, ..HookConfig::default() };
    let change = one(github(&config, "pull_request", &fork));
    assert_eq!(change.properties["fork"], json!(true));
    assert_eq!(change.properties["head_repository"], json!("mallory/Hello-World"));
    // Fetched from the base repository, which has the request's ref.
    assert_eq!(change.repository, "https://github.com/Codertocat/Hello-World");
    assert_eq!(change.branch.as_deref(), Some("refs/pull/2/head"));
}

#[test]
fn a_gitlab_merge_request_opened_reopened_or_given_commits_is_a_change_of_its_head() {
    let config = HookConfig::default();
    let change = one(gitlab(&config, "Merge Request Hook", fixture!("gitlab/merge_request_open.json")));
    assert_eq!(change.revision.as_deref(), Some("92268bc781b24f0a61b907da062950e9e5252a69"));
    assert_eq!(change.branch.as_deref(), Some("refs/merge-requests/6/head"));
    assert_eq!(change.category.as_deref(), Some("pull"));
    assert_eq!(change.repository, "https://gitlab.example.com/mmusterman/awesome_project.git");
    assert_eq!(change.project, "mmusterman/awesome_project");
    assert_eq!(change.author, "mmusterman");
    assert_eq!(change.comments, "Remove the dummy line again\n\nThis to both gitlab gateways!");
    assert_eq!(change.when_timestamp, 1_526_395_537);
    let p = &change.properties;
    assert_eq!(p["event"], json!("merge_request"));
    assert_eq!(p["pr_number"], json!(6));
    assert_eq!(p["pr_url"], json!("https://gitlab.example.com/mmusterman/awesome_project/merge_requests/6"));
    assert_eq!((&p["head_branch"], &p["base_branch"]), (&json!("ms-viewport"), &json!("master")));
    assert_eq!(p["fork"], json!(false));

    let change = one(gitlab(&config, "Merge Request Hook", fixture!("gitlab/merge_request_update_commit.json")));
    assert_eq!(change.revision.as_deref(), Some("cee8b01dcbaeed89563c2822f7c59a93c813eb6b"));
    assert_eq!(change.when_timestamp, 1_526_395_887);
    let change = one(gitlab(&config, "Merge Request Hook", fixture!("gitlab/merge_request_reopen.json")));
    assert_eq!(change.properties["action"], json!("reopen"));
    let change = one(gitlab(&config, "Merge Request Hook", fixture!("gitlab/gitlab17_merge_request.json")));
    assert_eq!(change.branch.as_deref(), Some("refs/merge-requests/1/head"));
    assert_eq!(change.revision.as_deref(), Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));
}

#[test]
fn gitlab_merge_request_events_that_build_nothing_are_answered_200() {
    // The defect: these got 400, and GitLab turns off a hook after a few failed deliveries (pushes with it).
    let config = HookConfig::default();
    let mr = |file| gitlab(&config, "Merge Request Hook", file);
    assert_ignored(mr(fixture!("gitlab/merge_request_update_description.json")), "!6 update");
    assert_ignored(mr(fixture!("gitlab/merge_request_close.json")), "!6 close");
    assert_ignored(gitlab(&config, "Note Hook", fixture!("gitlab/note_merge_request.json")), "MergeRequest");
    assert_ignored(gitlab(&config, "Note Hook", fixture!("gitlab/gitlab17_note.json")), "Commit");
    assert_ignored(gitlab(&config, "Release Hook", fixture!("gitlab/gitlab17_release.json")), "Release Hook");
    assert_ignored(gitlab(&config, "System Hook", fixture!("gitlab/push_without_checkout_sha.json")), "System Hook");
    // From a fork: not without build_forks.
    assert_ignored(mr(fixture!("gitlab/merge_request_open_forked.json")), "build/awesome_project");
    // Malformed stays a bad request.
    assert_eq!(gitlab(&config, "Merge Request Hook", b"{").unwrap_err().status(), 400);
    // A wrong token is checked first.
    let secret = HookConfig { secret: Some("t".into()), ..HookConfig::default() };
    let headers = [("X-Gitlab-Event", "Note Hook"), ("X-Gitlab-Token", "u")];
    let err = deliver(Forge::GitLab, &secret, &headers, fixture!("gitlab/gitlab17_note.json")).unwrap_err();
    assert_eq!(err.status(), 403);
}

#[test]
fn a_gitlab_merge_request_from_a_fork_with_build_forks_builds_the_targets_ref() {
    let config = HookConfig { build_forks: true, ..HookConfig::default() };
    let change = one(gitlab(&config, "Merge Request Hook", fixture!("gitlab/merge_request_open_forked.json")));
    assert_eq!(change.branch.as_deref(), Some("refs/merge-requests/7/head"));
    assert_eq!(change.repository, "https://gitlab.example.com/mmusterman/awesome_project.git");
    assert_eq!(change.properties["fork"], json!(true));
    assert_eq!(change.properties["head_repository"], json!("build/awesome_project"));
}

#[test]
fn a_gitlab_note_with_the_trigger_builds_the_merge_request_again() {
    let config = HookConfig { note_trigger: Some("#BB".into()), ..HookConfig::default() };
    let change = one(gitlab(&config, "Note Hook", fixture!("gitlab/note_merge_request.json")));
    assert_eq!(change.branch.as_deref(), Some("refs/merge-requests/7/head"));
    assert_eq!(change.revision.as_deref(), Some("d1ce5517d3745dbd68e1eeb45f42380d76d0c490"));
    assert_eq!(change.properties["event"], json!("note"));
    let config = HookConfig { note_trigger: Some("/rebuild".into()), ..HookConfig::default() };
    assert_ignored(gitlab(&config, "Note Hook", fixture!("gitlab/note_merge_request.json")), "note trigger");
}

#[test]
fn a_gitea_pull_request_is_a_change_and_other_gitea_events_are_answered_200() {
    let config = HookConfig::default();
    let change = one(gitea(&config, "X-Gitea-Event", "pull_request", fixture!("gitea/pull_request_opened.json")));
    assert_eq!(change.revision.as_deref(), Some("9d7157cc4a137b3e1dfe92750ccfb1bbad239f99"));
    assert_eq!(change.branch.as_deref(), Some("refs/pull/1/head"));
    assert_eq!(change.repository, "https://git.example.com/max/webhook_test");
    assert_eq!(change.properties["pr_author"], json!("max"));
    assert_eq!(change.properties["head_branch"], json!("feature-branch"));
    assert_eq!(change.when_timestamp, 1_536_063_289);

    let fork = fixture!("gitea/pull_request_fork.json");
    assert_ignored(gitea(&config, "X-Gitea-Event", "pull_request", fork), "test_org/webhook_test_fork");
    let forks = HookConfig { build_forks: true, ..HookConfig::default() };
    let change = one(gitea(&forks, "X-Forgejo-Event", "pull_request", fork));
    assert_eq!(change.branch.as_deref(), Some("refs/pull/4/head"));

    // The defect: these got 400.
    assert_ignored(gitea(&config, "X-Gogs-Event", "create", fixture!("gitea/gogs_create.json")), "\"create\"");
    assert_ignored(gitea(&config, "X-Gogs-Event", "delete", fixture!("gitea/gogs_delete.json")), "\"delete\"");
    assert_ignored(gitea(&config, "X-Gogs-Event", "release", fixture!("gitea/gogs_release.json")), "\"release\"");
}

#[test]
fn a_bitbucket_pull_request_is_a_change_of_its_source_branch() {
    let config = HookConfig::default();
    for event in ["pullrequest:created", "pullrequest:updated"] {
        let change = one(bitbucket(&config, event, fixture!("bitbucket/pullrequest_created.json")));
        assert_eq!(change.revision.as_deref(), Some("ed0e0bfd9a94"));
        assert_eq!(change.branch.as_deref(), Some("gmacario/dev03"));
        assert_eq!(change.repository, "https://bitbucket.org/arolgroup/j0664-ns2-firmware");
        assert_eq!(change.category.as_deref(), Some("pull"));
        assert_eq!(change.author, "Gianpaolo Macario");
        assert_eq!(change.properties["pr_number"], json!(6));
        assert_eq!(change.properties["pr_title"], json!("[Feat] Integrate branch gmacario/dev03"));
        assert_eq!(change.properties["base_branch"], json!("main"));
        assert_eq!(change.when_timestamp, 1_683_816_866);
    }
    assert_ignored(
        bitbucket(&config, "pullrequest:approved", fixture!("bitbucket/pullrequest_approved.json")),
        "approved",
    );
    assert_ignored(
        bitbucket(&config, "pullrequest:fulfilled", fixture!("bitbucket/pullrequest_fulfilled.json")),
        "fulfilled",
    );

    let fork = edited(fixture!("bitbucket/pullrequest_created.json"), |v| {
        v["pullrequest"]["source"]["repository"]["full_name"] = json!("mallory/firmware");
    });
    assert_ignored(bitbucket(&config, "pullrequest:created", &fork), "mallory/firmware");
    let forks = HookConfig { build_forks: true, ..HookConfig::default() };
    let change = one(bitbucket(&forks, "pullrequest:created", &fork));
    assert_eq!(change.repository, "https://bitbucket.org/mallory/firmware");
}

// ---------------------------------------------------------------------------------------------------------------
// Pushes: the defects found on real deliveries, and skip markers.

#[test]
fn a_new_bitbucket_branch_is_one_change_for_its_tip() {
    // Bitbucket lists 5 ancestors of the new branch's tip (truncated); they were built where they came from.
    let changes = bitbucket(&HookConfig::default(), "repo:push", fixture!("bitbucket/push_new_branch.json")).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].revision.as_deref(), Some("6ca0691239785a619fa1dce7bf1073f50499cd60"));
    assert_eq!(changes[0].branch.as_deref(), Some("gt/develop"));
    assert_eq!(changes[0].author, "Gianpaolo Macario <gianpaolo.macario@arol.com>");
    // An update of an existing branch still takes its listed commits.
    let changes = bitbucket(&HookConfig::default(), "repo:push", fixture!("bitbucket/push.json")).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].revision.as_deref(), Some("deb5a3c03cd718680d5639bdceac9409f47f974c"));
}

#[test]
fn a_bitbucket_commit_without_a_date_takes_the_time_it_is_received() {
    let body = edited(fixture!("bitbucket/push.json"), |v| {
        v["push"]["changes"][0]["commits"][0].as_object_mut().unwrap().remove("date");
    });
    let changes = bitbucket(&HookConfig::default(), "repo:push", &body).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].when_timestamp, 0, "0: the master stamps it with the time it received it");
}

#[test]
fn a_gitlab_push_without_checkout_sha_takes_its_commits() {
    let changes =
        gitlab(&HookConfig::default(), "Push Hook", fixture!("gitlab/push_without_checkout_sha.json")).unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].revision.as_deref(), Some("b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"));
    assert_eq!(changes[1].revision.as_deref(), Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));
    assert_eq!(changes[1].branch.as_deref(), Some("master"));
    assert_eq!(changes[1].repository, "git@localhost:diaspora.git");
    assert_eq!(changes[1].project, "Diaspora");
    // `after` all zeros: a deletion.
    let deleted = edited(fixture!("gitlab/push_without_checkout_sha.json"), |v| {
        v["after"] = json!("0000000000000000000000000000000000000000");
    });
    assert_eq!(gitlab(&HookConfig::default(), "Push Hook", &deleted), Ok(Vec::new()));
}

#[test]
fn a_sha1_github_signature_is_accepted_without_a_sha256_one() {
    let body = fixture!("github/push_with-new-branch.json");
    let secret = "older GitHub Enterprise";
    let mac = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    let config = HookConfig { secret: Some(secret.into()), ..HookConfig::default() };
    let sha1 = format!("sha1={mac}");
    let ok = deliver(Forge::GitHub, &config, &[("X-GitHub-Event", "push"), ("X-Hub-Signature", &sha1)], body);
    assert_eq!(ok.map(|c| c.len()), Ok(1));
    let wrong = format!("sha1={}", "0".repeat(40));
    let err = deliver(Forge::GitHub, &config, &[("X-GitHub-Event", "push"), ("X-Hub-Signature", &wrong)], body);
    assert_eq!(err.unwrap_err(), HookError::BadSignature { header: "X-Hub-Signature" });
    // With both, the sha256 one decides.
    let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature", &sha1), ("X-Hub-Signature-256", "sha256=00")];
    assert_eq!(deliver(Forge::GitHub, &config, &headers, body).unwrap_err().status(), 403);
}

#[test]
fn a_push_whose_head_commit_has_a_skip_marker_makes_no_changes() {
    let config = HookConfig::default();
    let new_branch = fixture!("github/push_with-new-branch.json");
    assert_eq!(github(&config, "push", new_branch).map(|c| c.len()), Ok(1));
    for message in ["Initial commit [ci skip]", "[skip ci] Initial commit", "Initial commit\n\n[ skip  ci ]"] {
        let body = edited(new_branch, |v| {
            v["head_commit"]["message"] = json!(message);
            v["commits"][0]["message"] = json!(message);
        });
        assert_ignored(github(&config, "push", &body), "skip marker");
        // Configured markers replace Buildbot's; none skips nothing.
        let none = HookConfig { skip_markers: Vec::new(), ..HookConfig::default() };
        assert_eq!(github(&none, "push", &body).map(|c| c.len()), Ok(1), "{message}");
    }
    let custom =
        HookConfig { skip_markers: vec![regex::Regex::new("(?i)no ?build").unwrap()], ..HookConfig::default() };
    let body = edited(new_branch, |v| v["head_commit"]["message"] = json!("docs only, NO BUILD"));
    assert_ignored(github(&custom, "push", &body), "skip marker");

    // Only the head commit counts (Buildbot's rule): an older commit's marker does not skip the push.
    let gitlab_push = edited(fixture!("gitlab/push_without_checkout_sha.json"), |v| {
        v["commits"][0]["message"] = json!("wip [ci skip]");
    });
    assert_eq!(gitlab(&config, "Push Hook", &gitlab_push).map(|c| c.len()), Ok(2));
    let gitlab_push = edited(fixture!("gitlab/push_without_checkout_sha.json"), |v| {
        v["commits"][1]["message"] = json!("fixed readme [skip ci]");
    });
    assert_ignored(gitlab(&config, "Push Hook", &gitlab_push), "skip marker");

    let gitea_push = edited(fixture!("gitea/push.json"), |v| v["head_commit"]["message"] = json!("x [ci skip]"));
    assert_ignored(gitea(&config, "X-Gitea-Event", "push", &gitea_push), "skip marker");
    let bb_push = edited(fixture!("bitbucket/push.json"), |v| {
        v["push"]["changes"][0]["new"]["target"]["message"] = json!("x [ci skip]");
    });
    assert_eq!(bitbucket(&config, "repo:push", &bb_push), Ok(Vec::new()));

    // A merge request whose last commit has one.
    let mr = edited(fixture!("gitlab/merge_request_open.json"), |v| {
        v["object_attributes"]["last_commit"]["message"] = json!("Remove the dummy line again [ci skip]");
    });
    assert_ignored(gitlab(&config, "Merge Request Hook", &mr), "skip marker");
}

#[test]
fn a_pull_request_whose_title_has_a_skip_marker_makes_no_changes() {
    let config = HookConfig::default();
    let none = HookConfig { skip_markers: Vec::new(), ..HookConfig::default() };
    let title = "Update the README [skip ci]";
    let github_pr = edited(fixture!("github/pull_request_opened.json"), |v| v["pull_request"]["title"] = json!(title));
    assert_ignored(github(&config, "pull_request", &github_pr), "#2: its title has a skip marker");
    assert_eq!(github(&none, "pull_request", &github_pr).map(|c| c.len()), Ok(1));
    // The body does not count: it may well explain the markers.
    let body_only = edited(fixture!("github/pull_request_opened.json"), |v| {
        v["pull_request"]["body"] = json!("Say [skip ci] in a commit to skip its build.");
    });
    assert_eq!(github(&config, "pull_request", &body_only).map(|c| c.len()), Ok(1));
    let synchronize =
        edited(fixture!("github/pull_request_synchronize.json"), |v| v["pull_request"]["title"] = json!(title));
    assert_ignored(github(&config, "pull_request", &synchronize), "skip marker");

    let gitea_pr = edited(fixture!("gitea/pull_request_opened.json"), |v| v["pull_request"]["title"] = json!(title));
    assert_ignored(gitea(&config, "X-Gitea-Event", "pull_request", &gitea_pr), "its title has a skip marker");
    let bitbucket_pr =
        edited(fixture!("bitbucket/pullrequest_created.json"), |v| v["pullrequest"]["title"] = json!("[ci skip] wip"));
    assert_ignored(bitbucket(&config, "pullrequest:created", &bitbucket_pr), "its title has a skip marker");
    assert_eq!(bitbucket(&none, "pullrequest:created", &bitbucket_pr).map(|c| c.len()), Ok(1));
    let gitlab_mr =
        edited(fixture!("gitlab/merge_request_open.json"), |v| v["object_attributes"]["title"] = json!(title));
    assert_ignored(gitlab(&config, "Merge Request Hook", &gitlab_mr), "!");
}
