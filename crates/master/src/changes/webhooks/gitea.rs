//! Gitea, Forgejo and Gogs hooks (the `buildbot-gitea` plugin): events `push` and `pull_request` in
//! `X-Gitea-Event`, `X-Forgejo-Event` or `X-Gogs-Event` (any other event makes no changes), signed with the hex HMAC-SHA256 of the body (no prefix) in
//! `X-Forgejo-Signature`, `X-Gitea-Signature` or `X-Gogs-Signature`. The payload is shaped like GitHub's, but
//! lists commits newest first.

use serde_json::Value;

use super::pull::{self, PullRequest};
use super::{
    ignored, is_null_sha, json_payload, oldest_first, pushed_ref, verify_hmac_sha256, HookConfig, HookError,
    HookRequest, Node, PushContext,
};
use crate::changes::NewChange;

const EVENT_HEADERS: [&str; 3] = ["X-Forgejo-Event", "X-Gitea-Event", "X-Gogs-Event"];
const SIGNATURE_HEADERS: [&str; 3] = ["X-Forgejo-Signature", "X-Gitea-Signature", "X-Gogs-Signature"];

pub(super) fn changes(config: &HookConfig, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    if let Some(secret) = &config.secret {
        let (header, signature) = SIGNATURE_HEADERS
            .iter()
            .find_map(|&h| request.header(h).map(|v| (h, v)))
            .ok_or(HookError::MissingSignature { header: "X-Gitea-Signature" })?;
        verify_hmac_sha256(secret, request.body, signature, header)?;
    }
    let event = EVENT_HEADERS
        .iter()
        .find_map(|&h| request.header(h))
        .ok_or(HookError::MissingHeader { header: "X-Gitea-Event" })?;
    match event {
        "push" => push(config, &json_payload(request)?),
        "pull_request" => pull_request(config, &json_payload(request)?),
        other => Err(ignored("gitea", format!("event {other:?}"))),
    }
}

/// A pull request opened, reopened or pushed to (`synchronized`) → one change for its head on
/// `refs/pull/N/head`; any other action → none.
fn pull_request(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let action = root.str_field("action")?;
    let pr = root.field("pull_request")?;
    let number = root.pull_request_number(&pr)?;
    if !config.pull_requests || !matches!(action, "opened" | "reopened" | "synchronized" | "synchronize") {
        return Err(ignored("gitea", format!("pull request #{number} {action}")));
    }
    let head = pr.field("head")?;
    let base = pr.field("base")?;
    let repository = root.field("repository")?;
    let title = pr.str_field("title")?;
    let when_timestamp = match pr.opt("updated_at")? {
        Some(t) => t.timestamp()?,
        None => 0,
    };
    let request = PullRequest {
        event: "pull_request",
        action,
        number,
        title,
        url: pr.str_field("html_url")?,
        author: pr.field("user")?.str_field("login")?,
        head_revision: head.str_field("sha")?,
        head_branch: head.str_field("ref")?,
        head_repository: head.opt("repo")?.map(|r| r.str_field("full_name")).transpose()?,
        base_branch: base.str_field("ref")?,
        base_repository: base.field("repo")?.str_field("full_name")?,
        repository: repository.str_field("html_url")?,
        build_ref: format!("refs/pull/{number}/head"),
        comments: pull::comments(title, pr.opt_str("body")?),
        when_timestamp,
    };
    let mut change = request.change(config).map_err(|reason| ignored("gitea", format!("pull request {reason}")))?;
    for url in ["clone_url", "ssh_url"] {
        if let Some(value) = repository.opt_str(url)? {
            change.properties.insert(url.to_string(), value.into());
        }
    }
    Ok(vec![change])
}

/// One change per commit, oldest first; a new ref without new commits → its head commit; a deleted ref → none.
fn push(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let Some(pushed) = pushed_ref(root.str_field("ref")?, config.with_tags) else {
        return Ok(Vec::new());
    };
    let after = root.opt_str("after")?;
    if after.is_some_and(is_null_sha) {
        return Ok(Vec::new());
    }
    let repository = root.field("repository")?;
    let mut context =
        PushContext::new(config, pushed, repository.str_field("html_url")?, repository.str_field("full_name")?);
    context.property("event", "push");
    for url in ["clone_url", "ssh_url"] {
        if let Some(value) = repository.opt_str(url)? {
            context.property(url, value);
        }
    }
    if let Some(pusher) = root.opt("pusher")? {
        let name = match pusher.opt_str("username")? {
            Some(username) => Some(username),
            None => pusher.opt_str("login")?,
        };
        if let Some(name) = name {
            context.property("pusher", name);
        }
    }
    let mut commits = oldest_first(root.opt_items("commits")?, "id", after);
    if commits.is_empty() {
        commits.extend(root.opt("head_commit")?);
    }
    let head = match root.opt("head_commit")? {
        Some(head) => Some(head),
        None => commits.iter().find(|c| c.value.get("id").and_then(Value::as_str) == after).or(commits.last()).cloned(),
    };
    if head.map(|c| c.opt_str("message")).transpose()?.flatten().is_some_and(|m| config.skips(m)) {
        return Err(ignored("gitea", "push: the head commit's message has a skip marker"));
    }
    commits.iter().map(|commit| context.commit_change(commit)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{edited, header_list, sign};
    use super::super::{changes_from, Forge};
    use super::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("testdata/gitea_push.json");
    const DELETE: &[u8] = include_bytes!("testdata/gitea_delete.json");

    fn run(config: &HookConfig, headers: &[(&str, &str)], body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        let headers = header_list(headers);
        changes_from(Forge::Gitea, config, &HookRequest { headers: &headers, body })
    }

    fn push(config: &HookConfig, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        run(config, &[("X-Gitea-Event", "push")], body)
    }

    #[test]
    fn push_makes_one_change_per_commit_oldest_first() {
        let changes = push(&HookConfig::default(), PUSH).unwrap();
        assert_eq!(changes.len(), 2);
        let first = &changes[0];
        assert_eq!(first.revision.as_deref(), Some("7a3c1fd1c5de7b58f0b5c8e6b7f1b2a9c4d3e2f1"));
        assert_eq!(first.author, "Jürgen Weiß <juergen@example.de>");
        assert_eq!(first.committer.as_deref(), Some("Gitea <someone@gitea.io>"));
        assert_eq!(first.comments, "Füge Webhooks hinzu\n\nErster Entwurf.\n");
        assert_eq!(first.files, ["hooks/push.sh", "hooks/old.sh"]);
        assert_eq!(first.when_timestamp, 1_489_426_800);
        assert_eq!(first.branch.as_deref(), Some("develop"));
        assert_eq!(first.repository, "http://localhost:3000/gitea/webhooks");
        assert_eq!(first.project, "gitea/webhooks");
        assert_eq!(first.category.as_deref(), Some("push"));
        assert_eq!(first.properties["event"], json!("push"));
        assert_eq!(first.properties["pusher"], json!("gitea"));
        assert_eq!(first.properties["clone_url"], json!("http://localhost:3000/gitea/webhooks.git"));
        assert_eq!(first.properties["ssh_url"], json!("ssh://gitea@localhost:2222/gitea/webhooks.git"));
        let second = &changes[1];
        assert_eq!(second.revision.as_deref(), Some("bffeb74224043ba2feb48d137756c8a9331c449a"));
        assert_eq!(second.comments, "Webhooks Yay! ✨\n");
        assert_eq!(second.files, ["README.md", "hooks/old.sh"]);
        assert_eq!(second.when_timestamp, 1_489_427_531);
    }

    #[test]
    fn forgejo_and_gogs_headers() {
        let expected = push(&HookConfig::default(), PUSH).unwrap();
        assert_eq!(run(&HookConfig::default(), &[("X-Forgejo-Event", "push")], PUSH).unwrap(), expected);
        assert_eq!(run(&HookConfig::default(), &[("X-Gogs-Event", "push")], PUSH).unwrap(), expected);
    }

    #[test]
    fn tags_and_deletions() {
        assert_eq!(push(&HookConfig::default(), DELETE), Ok(Vec::new()));
        let tag = edited(PUSH, |v| {
            v["ref"] = json!("refs/tags/v2.0");
            v["commits"] = json!([]);
        });
        assert_eq!(push(&HookConfig::default(), &tag), Ok(Vec::new()));
        let config = HookConfig { with_tags: true, ..HookConfig::default() };
        let changes = push(&config, &tag).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].branch.as_deref(), Some("v2.0"));
        assert_eq!(changes[0].category.as_deref(), Some("tag"));
        assert_eq!(changes[0].revision.as_deref(), Some("bffeb74224043ba2feb48d137756c8a9331c449a"));
    }

    #[test]
    fn signatures() {
        let config = HookConfig { secret: Some("gitea-secret".into()), ..HookConfig::default() };
        let signature = sign("gitea-secret", PUSH);
        for header in ["X-Gitea-Signature", "X-Forgejo-Signature", "x-gogs-signature"] {
            let ok = run(&config, &[("X-Gitea-Event", "push"), (header, &signature)], PUSH);
            assert_eq!(ok.map(|c| c.len()), Ok(2), "{header}");
        }
        // GitHub's `sha256=` prefix is not Gitea's format.
        let prefixed = format!("sha256={signature}");
        let err = run(&config, &[("X-Gitea-Event", "push"), ("X-Gitea-Signature", &prefixed)], PUSH).unwrap_err();
        assert_eq!(err, HookError::BadSignature { header: "X-Gitea-Signature" });
        assert_eq!(err.status(), 403);

        let other = sign("other", PUSH);
        let err = run(&config, &[("X-Forgejo-Event", "push"), ("X-Forgejo-Signature", &other)], PUSH).unwrap_err();
        assert_eq!(err, HookError::BadSignature { header: "X-Forgejo-Signature" });

        let err = push(&config, PUSH).unwrap_err();
        assert_eq!(err, HookError::MissingSignature { header: "X-Gitea-Signature" });
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn bad_requests() {
        let config = HookConfig::default();
        let err = run(&config, &[], PUSH).unwrap_err();
        assert_eq!(err, HookError::MissingHeader { header: "X-Gitea-Event" });
        let err = run(&config, &[("X-Gitea-Event", "issues")], PUSH).unwrap_err();
        assert_eq!(err.to_string(), "gitea: event \"issues\": no changes");
        assert_eq!(err.status(), 200);
        assert_eq!(push(&config, b"").unwrap_err().status(), 400);
        let body = edited(PUSH, |v| v["commits"][0]["timestamp"] = json!(1489427531));
        assert_eq!(push(&config, &body).unwrap_err().to_string(), "field commits[0].timestamp is not a string");
    }
}
