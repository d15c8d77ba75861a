//! Bitbucket Cloud hooks (Buildbot's `www/hooks/bitbucketcloud.py`): events `repo:push`,
//! `pullrequest:created` and `pullrequest:updated` in `X-Event-Key` (any other event makes no changes), signed
//! (when the webhook has a secret) with `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//!
//! A push lists its ref updates in `push.changes[]`; each has the ref's `new` state (`null` when it was deleted),
//! its `old` one (`null` for a new branch) and up to a few of its new `commits` (newest first; for a new branch
//! the tip's ancestors, most of them built before). No file lists: Bitbucket does not send them.
//!
//! Bitbucket Cloud keeps no ref of a pull request in the base repository: its change names the source branch
//! of the source repository (the fork's, for a pull request from a fork).

use serde_json::Value;

use super::pull::{self, PullRequest};
use super::{
    ignored, json_payload, oldest_first, pushed_ref, verify_hmac_sha256, HookConfig, HookError, HookRequest, Node,
    PushContext, PushedRef,
};
use crate::changes::NewChange;

const EVENT_HEADER: &str = "X-Event-Key";
const SIGNATURE_HEADER: &str = "X-Hub-Signature";

pub(super) fn changes(config: &HookConfig, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    if let Some(secret) = &config.secret {
        let signature =
            request.header(SIGNATURE_HEADER).ok_or(HookError::MissingSignature { header: SIGNATURE_HEADER })?;
        let hex = signature.strip_prefix("sha256=").ok_or(HookError::BadSignature { header: SIGNATURE_HEADER })?;
        verify_hmac_sha256(secret, request.body, hex, SIGNATURE_HEADER)?;
    }
    match request.header(EVENT_HEADER).ok_or(HookError::MissingHeader { header: EVENT_HEADER })? {
        "diagnostics:ping" => Ok(Vec::new()),
        "repo:push" => push(config, &json_payload(request)?),
        event @ ("pullrequest:created" | "pullrequest:updated") => pull_request(config, event, &json_payload(request)?),
        other => Err(ignored("bitbucket", format!("event {other:?}"))),
    }
}

/// A pull request created or updated → one change for the head of its source branch.
fn pull_request(config: &HookConfig, event: &str, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let pr = root.field("pullrequest")?;
    let number = pr.field("id")?;
    let number = number.value.as_i64().ok_or_else(|| number.wrong_type("an integer"))?;
    if !config.pull_requests {
        return Err(ignored("bitbucket", format!("pull request #{number}: pull_requests is off")));
    }
    let source = pr.field("source")?;
    let destination = pr.field("destination")?;
    let head_repository = source.opt("repository")?.map(|r| r.str_field("full_name")).transpose()?;
    let base_repository = destination.field("repository")?.str_field("full_name")?;
    let base_url = root.field("repository")?.field("links")?.field("html")?.str_field("href")?;
    // The source branch lives in the source repository: the fork's web address, built like the base's.
    let fork_url = head_repository.filter(|h| *h != base_repository).map(|h| {
        let prefix = base_url.strip_suffix(base_repository).unwrap_or("https://bitbucket.org/");
        format!("{prefix}{h}")
    });
    let head_branch = source.field("branch")?.str_field("name")?;
    let author = pr.field("author")?;
    let author = match author.opt_str("display_name")? {
        Some(name) => name,
        None => author.str_field("nickname")?,
    };
    let title = pr.str_field("title")?;
    let when_timestamp = match pr.opt("updated_on")? {
        Some(t) => t.timestamp()?,
        None => 0,
    };
    let request = PullRequest {
        event,
        action: event.trim_start_matches("pullrequest:"),
        number,
        title,
        url: pr.field("links")?.field("html")?.str_field("href")?,
        author,
        head_revision: source.field("commit")?.str_field("hash")?,
        head_branch,
        head_repository,
        base_branch: destination.field("branch")?.str_field("name")?,
        base_repository,
        repository: fork_url.as_deref().unwrap_or(base_url),
        build_ref: head_branch.to_string(),
        comments: pull::comments(title, pr.opt_str("description")?),
        when_timestamp,
    };
    let change = request.change(config).map_err(|reason| ignored("bitbucket", format!("pull request {reason}")))?;
    Ok(vec![change])
}

/// For each updated ref: one change per listed commit, oldest first, else one for its new tip; for a new branch
/// (`old` null) one for its tip only; none for a deleted ref, nor for a tip whose message has a skip marker.
fn push(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let repository = root.field("repository")?;
    let html_url = repository.field("links")?.field("html")?.str_field("href")?;
    let full_name = repository.str_field("full_name")?;
    let pusher = match root.opt("actor")? {
        Some(actor) => actor.opt_str("display_name")?,
        None => None,
    };

    let mut changes = Vec::new();
    for ref_change in root.field("push")?.field("changes")?.items()? {
        let Some(new) = ref_change.opt("new")? else {
            continue;
        };
        let name = new.str_field("name")?;
        let full_ref = match new.str_field("type")? {
            "branch" => format!("refs/heads/{name}"),
            "tag" => format!("refs/tags/{name}"),
            _ => continue,
        };
        let Some(pushed): Option<PushedRef> = pushed_ref(&full_ref, config.with_tags) else {
            continue;
        };
        let mut context = PushContext::new(config, pushed, html_url, full_name);
        context.property("event", "repo:push");
        if let Some(pusher) = pusher {
            context.property("pusher", pusher);
        }
        let target = new.field("target")?;
        if target.opt_str("message")?.is_some_and(|m| config.skips(m)) {
            continue;
        }
        let created = ref_change.opt("old")?.is_none();
        let commits = oldest_first(ref_change.opt_items("commits")?, "hash", target.opt_str("hash")?);
        if commits.is_empty() || created {
            changes.push(commit_change(&context, &target)?);
        } else {
            for commit in &commits {
                changes.push(commit_change(&context, commit)?);
            }
        }
    }
    Ok(changes)
}

/// A change from a Bitbucket commit object: `hash`, `message`, `author.raw` (`Name <email>`), `date`,
/// `links.html.href`.
fn commit_change(context: &PushContext, commit: &Node) -> Result<NewChange, HookError> {
    let mut change = context.change();
    change.revision = Some(commit.str_field("hash")?.to_string());
    change.comments = commit.opt_str("message")?.unwrap_or_default().to_string();
    // Without a date, the time the master receives it (0 here).
    change.when_timestamp = commit.opt("date")?.map(|d| d.timestamp()).transpose()?.unwrap_or(0);
    let author = commit.field("author")?;
    change.author = match author.opt_str("raw")? {
        Some(raw) => raw.to_string(),
        None => match author.opt("user")? {
            Some(user) => user.str_field("display_name")?.to_string(),
            None => return Err(HookError::MissingField { path: format!("{}.author.raw", commit.path) }),
        },
    };
    let html = match commit.opt("links")? {
        Some(links) => links.opt("html")?,
        None => None,
    };
    if let Some(href) = html {
        change.properties.insert("revlink".to_string(), href.str_field("href")?.into());
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{edited, header_list, sign};
    use super::super::{changes_from, Forge};
    use super::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("testdata/bitbucket_push.json");

    fn run(config: &HookConfig, headers: &[(&str, &str)], body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        let headers = header_list(headers);
        changes_from(Forge::Bitbucket, config, &HookRequest { headers: &headers, body })
    }

    fn push(config: &HookConfig, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        run(config, &[("X-Event-Key", "repo:push")], body)
    }

    #[test]
    fn branch_commits_oldest_first_tag_only_with_tags_deletion_none() {
        let changes = push(&HookConfig::default(), PUSH).unwrap();
        assert_eq!(changes.len(), 2);
        let first = &changes[0];
        assert_eq!(first.revision.as_deref(), Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"));
        assert_eq!(first.author, "Emma Ødegård <emma@example.com>");
        assert_eq!(first.comments, "Ajoute la page d’accueil\n");
        assert_eq!(first.when_timestamp, 1_717_228_800);
        assert_eq!(first.branch.as_deref(), Some("main"));
        assert_eq!(first.repository, "https://bitbucket.org/emma-team/webhooks");
        assert_eq!(first.project, "emma-team/webhooks");
        assert_eq!(first.category.as_deref(), Some("push"));
        assert!(first.files.is_empty());
        assert_eq!(first.properties["event"], json!("repo:push"));
        assert_eq!(first.properties["pusher"], json!("Emma Ødegård"));
        assert_eq!(
            first.properties["revlink"],
            json!("https://bitbucket.org/emma-team/webhooks/commits/a1b2c3d4e5f60718293a4b5c6d7e8f9012345678")
        );
        let second = &changes[1];
        assert_eq!(second.revision.as_deref(), Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d"));
        assert_eq!(second.author, "Bot <bot@example.com>");
        assert_eq!(second.comments, "Fix the build 🔧\n");
        assert_eq!(second.when_timestamp, 1_717_230_615);

        let config = HookConfig { with_tags: true, codebase: Some("web".into()), ..HookConfig::default() };
        let changes = push(&config, PUSH).unwrap();
        assert_eq!(changes.len(), 3);
        let tag = &changes[2];
        assert_eq!(tag.branch.as_deref(), Some("v3.1"));
        assert_eq!(tag.category.as_deref(), Some("tag"));
        assert_eq!(tag.revision.as_deref(), Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d"));
        assert_eq!(tag.codebase, "web");
    }

    #[test]
    fn without_commits_the_tip() {
        let body = edited(PUSH, |v| {
            v["push"]["changes"][0].as_object_mut().unwrap().remove("commits");
        });
        let changes = push(&HookConfig::default(), &body).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].revision.as_deref(), Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d"));
        assert_eq!(changes[0].branch.as_deref(), Some("main"));
    }

    #[test]
    fn signatures() {
        let config = HookConfig { secret: Some("bb secret".into()), ..HookConfig::default() };
        let good = format!("sha256={}", sign("bb secret", PUSH));
        let ok = run(&config, &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &good)], PUSH);
        assert_eq!(ok.map(|c| c.len()), Ok(2));

        let bad = format!("sha256={}", sign("wrong", PUSH));
        let err = run(&config, &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &bad)], PUSH).unwrap_err();
        assert_eq!(err, HookError::BadSignature { header: "X-Hub-Signature" });
        assert_eq!(err.status(), 403);

        let err = push(&config, PUSH).unwrap_err();
        assert_eq!(err, HookError::MissingSignature { header: "X-Hub-Signature" });
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn ping_and_bad_requests() {
        let config = HookConfig::default();
        assert_eq!(run(&config, &[("X-Event-Key", "diagnostics:ping")], b""), Ok(Vec::new()));
        let err = run(&config, &[], PUSH).unwrap_err();
        assert_eq!(err, HookError::MissingHeader { header: "X-Event-Key" });
        let err = run(&config, &[("X-Event-Key", "issue:created")], PUSH).unwrap_err();
        assert_eq!(err.to_string(), "bitbucket: event \"issue:created\": no changes");
        assert_eq!(err.status(), 200);
        assert!(matches!(push(&config, b"{}}").unwrap_err(), HookError::MalformedBody { .. }));

        let body = edited(PUSH, |v| {
            v["push"]["changes"][0]["commits"][1].as_object_mut().unwrap().remove("hash");
        });
        assert_eq!(push(&config, &body).unwrap_err().to_string(), "missing field push.changes[0].commits[1].hash");
        let body = edited(PUSH, |v| {
            v["push"]["changes"][0]["commits"][0]["author"] = json!({});
        });
        let err = push(&config, &body).unwrap_err();
        assert_eq!(err.to_string(), "missing field push.changes[0].commits[0].author.raw");
        let body = edited(PUSH, |v| v["push"]["changes"][0]["commits"][0]["date"] = json!("2024-06-01"));
        assert_eq!(push(&config, &body).unwrap_err().status(), 400);
        // A malformed pull request is a bad request too.
        let err = run(&config, &[("X-Event-Key", "pullrequest:created")], PUSH).unwrap_err();
        assert_eq!(err.to_string(), "missing field pullrequest");
    }
}
