//! GitHub hooks (Buildbot's `www/hooks/github.py`): events `ping`, `push` and `pull_request`, signed with
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (or, without that header, the older
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1>` of GitHub Enterprise Server before 3.x).

use serde_json::Value;

use super::pull::{self, PullRequest};
use super::{
    ignored, json_payload, oldest_first, pushed_ref, verify_hmac_sha1, verify_hmac_sha256, HookConfig, HookError,
    HookRequest, Node, PullRef, PushContext,
};
use crate::changes::NewChange;

const EVENT_HEADER: &str = "X-GitHub-Event";
const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
const SHA1_SIGNATURE_HEADER: &str = "X-Hub-Signature";

pub(super) fn changes(config: &HookConfig, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    if let Some(secret) = &config.secret {
        match (request.header(SIGNATURE_HEADER), request.header(SHA1_SIGNATURE_HEADER)) {
            (Some(signature), _) => {
                let hex =
                    signature.strip_prefix("sha256=").ok_or(HookError::BadSignature { header: SIGNATURE_HEADER })?;
                verify_hmac_sha256(secret, request.body, hex, SIGNATURE_HEADER)?;
            }
            (None, Some(signature)) => {
                let bad = HookError::BadSignature { header: SHA1_SIGNATURE_HEADER };
                let hex = signature.strip_prefix("sha1=").ok_or(bad)?;
                verify_hmac_sha1(secret, request.body, hex, SHA1_SIGNATURE_HEADER)?;
            }
            (None, None) => return Err(HookError::MissingSignature { header: SIGNATURE_HEADER }),
        }
    }
    let event = request.header(EVENT_HEADER).ok_or(HookError::MissingHeader { header: EVENT_HEADER })?;
    match event {
        "ping" => Ok(Vec::new()),
        "push" => push(config, &json_payload(request)?),
        "pull_request" => pull_request(config, &json_payload(request)?),
        other => Err(ignored("github", format!("event {other:?}"))),
    }
}

/// A pull request opened, reopened or pushed to (`synchronize`), and when configured one marked ready for
/// review or given one of `labels` → one change for its head; any other action → none.
fn pull_request(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let action = root.str_field("action")?;
    let pr = root.field("pull_request")?;
    let number = root.pull_request_number(&pr)?;
    if !config.pull_requests {
        return Err(ignored("github", format!("pull request #{number}: pull_requests is off")));
    }
    let wanted = match action {
        "opened" | "reopened" | "synchronize" => true,
        "ready_for_review" => config.ready_for_review,
        "labeled" => {
            let label = root.opt("label")?.map(|l| l.opt_str("name")).transpose()?.flatten();
            label.is_some_and(|name| config.labels.iter().any(|l| l == name))
        }
        _ => false,
    };
    if !wanted {
        return Err(ignored("github", format!("pull request #{number} {action}")));
    }
    let head = pr.field("head")?;
    let base = pr.field("base")?;
    let head_repository = head.opt("repo")?.map(|r| r.str_field("full_name")).transpose()?;
    let repository = root.field("repository")?;
    let when_timestamp = match pr.opt("updated_at")? {
        Some(t) => t.timestamp()?,
        None => 0,
    };
    let title = pr.str_field("title")?;
    let request = PullRequest {
        event: "pull_request",
        action,
        number,
        title,
        url: pr.str_field("html_url")?,
        author: pr.field("user")?.str_field("login")?,
        head_revision: head.str_field("sha")?,
        head_branch: head.str_field("ref")?,
        head_repository,
        base_branch: base.str_field("ref")?,
        base_repository: base.field("repo")?.str_field("full_name")?,
        repository: repository.str_field("html_url")?,
        build_ref: format!("refs/pull/{number}/{}", config.pull_request_ref.name()),
        comments: pull::comments(title, pr.opt_str("body")?),
        when_timestamp,
    };
    let mut change = request.change(config).map_err(|reason| ignored("github", format!("pull request {reason}")))?;
    if let Some(clone_url) = repository.opt_str("clone_url")? {
        change.properties.insert("clone_url".to_string(), clone_url.into());
    }
    if config.pull_request_ref == PullRef::Merge {
        // GitHub's trial merge: its revision is not known here, so the build takes the ref's tip.
        change.revision = None;
    }
    Ok(vec![change])
}

/// One change per commit; a new ref without new commits (a tag, a branch at an existing commit) → its head
/// commit; a deleted ref → none.
fn push(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let Some(pushed) = pushed_ref(root.str_field("ref")?, config.with_tags) else {
        return Ok(Vec::new());
    };
    if root.opt_bool("deleted")?.unwrap_or(false) {
        return Ok(Vec::new());
    }
    let head_message = root.opt("head_commit")?.map(|c| c.opt_str("message")).transpose()?.flatten();
    if head_message.is_some_and(|m| config.skips(m)) {
        return Err(ignored("github", "push: the head commit's message has a skip marker"));
    }
    let repository = root.field("repository")?;
    let mut context =
        PushContext::new(config, pushed, repository.str_field("html_url")?, repository.str_field("full_name")?);
    context.property("event", "push");
    if let Some(clone_url) = repository.opt_str("clone_url")? {
        context.property("clone_url", clone_url);
    }
    if let Some(pusher) = root.opt("pusher")?.map(|p| p.opt_str("name")).transpose()?.flatten() {
        context.property("pusher", pusher);
    }
    let mut commits = oldest_first(root.opt_items("commits")?, "id", root.opt_str("after")?);
    if commits.is_empty() {
        commits.extend(root.opt("head_commit")?);
    }
    commits
        .iter()
        .map(|commit| {
            let mut change = context.commit_change(commit)?;
            let distinct = commit.opt_bool("distinct")?.unwrap_or(true);
            change.properties.insert("github_distinct".to_string(), distinct.into());
            Ok(change)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{edited, header_list, sign};
    use super::super::{changes_from, Forge};
    use super::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("testdata/github_push.json");
    const TAG: &[u8] = include_bytes!("testdata/github_tag.json");
    const DELETE: &[u8] = include_bytes!("testdata/github_delete.json");
    const PING: &[u8] = include_bytes!("testdata/github_ping.json");

    fn run(config: &HookConfig, event: &str, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        let headers = header_list(&[("X-GitHub-Event", event), ("Content-Type", "application/json")]);
        changes_from(Forge::GitHub, config, &HookRequest { headers: &headers, body })
    }

    fn signed(secret: &str, event: &str, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        let signature = format!("sha256={}", sign(secret, body));
        let headers = header_list(&[("x-github-event", event), ("x-hub-signature-256", &signature)]);
        let config = HookConfig { secret: Some("It's a Secret to Everybody".into()), ..HookConfig::default() };
        changes_from(Forge::GitHub, &config, &HookRequest { headers: &headers, body })
    }

    #[test]
    fn push_makes_one_change_per_commit_oldest_first() {
        let changes = run(&HookConfig::default(), "push", PUSH).unwrap();
        assert_eq!(changes.len(), 3);
        let first = &changes[0];
        assert_eq!(first.revision.as_deref(), Some("c441029cf673f84c8b7db52d0a5944ee5c52ff89"));
        assert_eq!(first.author, "Mona Lisa Octocat <mona@github.com>");
        assert_eq!(first.committer.as_deref(), Some("GitHub <noreply@github.com>"));
        assert_eq!(first.comments, "Add the README\n\nAnd a first test.");
        assert_eq!(first.files, ["README.md", "tests/first.rs"]);
        assert_eq!(first.when_timestamp, 1_715_703_302);
        assert_eq!(first.branch.as_deref(), Some("main"));
        assert_eq!(first.repository, "https://github.com/octo-org/hello-world");
        assert_eq!(first.project, "octo-org/hello-world");
        assert_eq!(first.codebase, "");
        assert_eq!(first.category.as_deref(), Some("push"));
        assert_eq!(first.properties["event"], json!("push"));
        assert_eq!(first.properties["github_distinct"], json!(true));
        assert_eq!(first.properties["pusher"], json!("octocat"));
        assert_eq!(first.properties["clone_url"], json!("https://github.com/octo-org/hello-world.git"));
        assert_eq!(
            first.properties["revlink"],
            json!("https://github.com/octo-org/hello-world/commit/c441029cf673f84c8b7db52d0a5944ee5c52ff89")
        );

        let second = &changes[1];
        assert_eq!(second.author, "Zoë Ångström <zoe@example.org>");
        assert_eq!(second.comments, "Traduire le README en français ☕");
        assert_eq!(second.files, ["docs/LISEZMOI.md", "README.md", "docs/old.txt"]);
        assert_eq!(second.when_timestamp, 1_715_703_631);
        assert_eq!(second.properties["github_distinct"], json!(false));

        let third = &changes[2];
        assert_eq!(third.author, "李雷 <li.lei@example.cn>");
        assert_eq!(third.comments, "修复测试");
        assert_eq!(third.when_timestamp, 1_715_706_000);
        assert_eq!(third.revision.as_deref(), Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"));
    }

    #[test]
    fn configured_project_and_codebase_win() {
        let config =
            HookConfig { project: Some("hello".into()), codebase: Some("app".into()), ..HookConfig::default() };
        let changes = run(&config, "push", PUSH).unwrap();
        assert!(changes.iter().all(|c| c.project == "hello" && c.codebase == "app"));
    }

    #[test]
    fn tag_only_with_tags_from_head_commit() {
        assert_eq!(run(&HookConfig::default(), "push", TAG), Ok(Vec::new()));
        let config = HookConfig { with_tags: true, ..HookConfig::default() };
        let changes = run(&config, "push", TAG).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].branch.as_deref(), Some("v1.2.0"));
        assert_eq!(changes[0].category.as_deref(), Some("tag"));
        assert_eq!(changes[0].revision.as_deref(), Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"));
    }

    #[test]
    fn new_branch_at_an_existing_commit_uses_head_commit() {
        let body = edited(TAG, |v| v["ref"] = json!("refs/heads/release/1.2"));
        let changes = run(&HookConfig::default(), "push", &body).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].branch.as_deref(), Some("release/1.2"));
        assert_eq!(changes[0].category.as_deref(), Some("push"));
    }

    #[test]
    fn deletion_ping_and_other_refs_make_no_changes() {
        let config = HookConfig { with_tags: true, ..HookConfig::default() };
        assert_eq!(run(&config, "push", DELETE), Ok(Vec::new()));
        assert_eq!(run(&config, "ping", PING), Ok(Vec::new()));
        let notes = edited(PUSH, |v| v["ref"] = json!("refs/notes/commits"));
        assert_eq!(run(&config, "push", &notes), Ok(Vec::new()));
    }

    #[test]
    fn signatures() {
        let secret = "It's a Secret to Everybody";
        assert_eq!(signed(secret, "push", PUSH).map(|c| c.len()), Ok(3));
        assert_eq!(signed(secret, "ping", PING), Ok(Vec::new()));
        let wrong = signed("another secret", "push", PUSH).unwrap_err();
        assert_eq!(wrong, HookError::BadSignature { header: "X-Hub-Signature-256" });
        assert_eq!(wrong.status(), 403);
        // A ping is verified too.
        assert_eq!(signed("another secret", "ping", PING).unwrap_err().status(), 403);

        let config = HookConfig { secret: Some(secret.into()), ..HookConfig::default() };
        let missing = run(&config, "push", PUSH).unwrap_err();
        assert_eq!(missing, HookError::MissingSignature { header: "X-Hub-Signature-256" });
        assert_eq!(missing.status(), 403);

        // The hex alone, without `sha256=`, is not GitHub's format.
        let bare = sign(secret, PUSH);
        let headers = header_list(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &bare)]);
        let err = changes_from(Forge::GitHub, &config, &HookRequest { headers: &headers, body: PUSH }).unwrap_err();
        assert_eq!(err.status(), 403);

        // Without a secret, a signature is not checked.
        let headers = header_list(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=00")]);
        let request = HookRequest { headers: &headers, body: PUSH };
        assert_eq!(changes_from(Forge::GitHub, &HookConfig::default(), &request).map(|c| c.len()), Ok(3));
    }

    #[test]
    fn bad_requests() {
        let config = HookConfig::default();
        let headers = header_list(&[]);
        let err = changes_from(Forge::GitHub, &config, &HookRequest { headers: &headers, body: PUSH }).unwrap_err();
        assert_eq!(err, HookError::MissingHeader { header: "X-GitHub-Event" });
        assert_eq!(err.status(), 400);

        let err = run(&config, "issues", PUSH).unwrap_err();
        assert_eq!(err.to_string(), "github: event \"issues\": no changes");
        assert_eq!(err.status(), 200);
        assert_eq!(run(&config, "pull_request", PUSH).unwrap_err().to_string(), "missing field action");

        let err = run(&config, "push", b"{\"ref\": ").unwrap_err();
        assert!(matches!(err, HookError::MalformedBody { .. }), "{err}");
        assert_eq!(err.status(), 400);

        let no_id = edited(PUSH, |v| {
            v["commits"][2].as_object_mut().unwrap().remove("id");
        });
        let err = run(&config, "push", &no_id).unwrap_err();
        assert_eq!(err.to_string(), "missing field commits[2].id");

        let bad_time = edited(PUSH, |v| v["commits"][1]["timestamp"] = json!("last Tuesday"));
        let err = run(&config, "push", &bad_time).unwrap_err();
        assert_eq!(err.to_string(), "field commits[1].timestamp is not an ISO 8601 timestamp: \"last Tuesday\"");
        assert_eq!(err.status(), 400);

        let no_repo = edited(PUSH, |v| {
            v.as_object_mut().unwrap().remove("repository");
        });
        assert_eq!(run(&config, "push", &no_repo).unwrap_err().to_string(), "missing field repository");

        let not_a_list = edited(PUSH, |v| v["commits"][0]["added"] = json!("README.md"));
        let err = run(&config, "push", &not_a_list).unwrap_err();
        assert_eq!(err.to_string(), "field commits[0].added is not an array");
    }

    #[test]
    fn form_encoded_push() {
        let mut body = b"payload=".to_vec();
        for &b in PUSH {
            if b.is_ascii_alphanumeric() {
                body.push(b);
            } else {
                body.extend(format!("%{b:02X}").bytes());
            }
        }
        let secret = "s";
        let signature = format!("sha256={}", sign(secret, &body));
        let headers = header_list(&[
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", &signature),
        ]);
        let config = HookConfig { secret: Some(secret.into()), ..HookConfig::default() };
        let changes = changes_from(Forge::GitHub, &config, &HookRequest { headers: &headers, body: &body }).unwrap();
        assert_eq!(changes, run(&HookConfig::default(), "push", PUSH).unwrap());
    }
}
