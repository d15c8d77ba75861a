//! GitLab hooks (Buildbot's `www/hooks/gitlab.py`): events `Push Hook`, `Tag Push Hook`, `Merge Request Hook`
//! and (opt-in, [`HookConfig::note_trigger`]) `Note Hook` on a merge request, authenticated by the secret token
//! in `X-Gitlab-Token` (no signature). Every other event (System Hook, Pipeline Hook, …) makes no changes.

use serde_json::Value;

use super::pull::{self, PullRequest};
use super::{
    ignored, is_null_sha, json_payload, oldest_first, pushed_ref, tokens_equal, HookConfig, HookError, HookRequest,
    Node, PushContext,
};
use crate::changes::NewChange;

const EVENT_HEADER: &str = "X-Gitlab-Event";
const TOKEN_HEADER: &str = "X-Gitlab-Token";

pub(super) fn changes(config: &HookConfig, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    if let Some(secret) = &config.secret {
        let token = request.header(TOKEN_HEADER).ok_or(HookError::MissingToken { header: TOKEN_HEADER })?;
        if !tokens_equal(token, secret) {
            return Err(HookError::BadToken { header: TOKEN_HEADER });
        }
    }
    let event = match request.header(EVENT_HEADER).ok_or(HookError::MissingHeader { header: EVENT_HEADER })? {
        "Push Hook" => "push",
        "Tag Push Hook" => "tag_push",
        "Merge Request Hook" => return merge_request(config, &json_payload(request)?),
        "Note Hook" => return note(config, &json_payload(request)?),
        other => return Err(ignored("gitlab", format!("event {other:?}"))),
    };
    push(config, event, &json_payload(request)?)
}

/// One change per commit; a new ref without new commits (a tag, a branch at an existing commit) → one change for
/// `checkout_sha` (an older GitLab's push without it: `after`), with the pusher as author and no time; a deleted
/// ref (`after` all zeros) → none; a head commit whose message has a skip marker → none.
fn push(config: &HookConfig, event: &str, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let Some(pushed) = pushed_ref(root.str_field("ref")?, config.with_tags) else {
        return Ok(Vec::new());
    };
    let after = root.opt_str("after")?;
    if after.is_some_and(is_null_sha) {
        return Ok(Vec::new());
    }
    let Some(checkout_sha) = root.opt_str("checkout_sha")?.or(after) else {
        return Ok(Vec::new());
    };
    let checkout_sha = Some(checkout_sha);
    let project = root.opt("project")?;
    let repository = match project.as_ref().map(|p| p.opt_str("git_http_url")).transpose()?.flatten() {
        Some(url) => url,
        None => {
            // Older GitLab: the repository's `url` (its SSH address) when it has no `git_http_url`.
            let repository = root.field("repository")?;
            match repository.opt_str("git_http_url")? {
                Some(url) => url,
                None => repository.str_field("url")?,
            }
        }
    };
    let full_name = match project.as_ref().map(|p| p.opt_str("path_with_namespace")).transpose()?.flatten() {
        Some(path) => path,
        None if config.project.is_some() => "",
        None => root.field("repository")?.str_field("name")?,
    };
    let mut context = PushContext::new(config, pushed, repository, full_name);
    context.property("event", event);
    let pusher = match root.opt_str("user_username")? {
        Some(username) => Some(username),
        None => root.opt_str("user_name")?,
    };
    if let Some(pusher) = pusher {
        context.property("pusher", pusher);
    }

    let commits = oldest_first(root.field("commits")?.items()?, "id", checkout_sha);
    let head = commits.iter().find(|c| c.value.get("id").and_then(Value::as_str) == checkout_sha).or(commits.last());
    if let Some(message) = head.map(|c| c.opt_str("message")).transpose()?.flatten() {
        if config.skips(message) {
            return Err(ignored("gitlab", "push: the head commit's message has a skip marker"));
        }
    }
    if !commits.is_empty() {
        return commits.iter().map(|commit| context.commit_change(commit)).collect();
    }
    let mut change = context.change();
    change.revision = checkout_sha.map(str::to_string);
    change.comments = root.opt_str("message")?.unwrap_or_default().to_string();
    if let Some(name) = root.opt_str("user_name")? {
        change.author = match root.opt_str("user_email")?.filter(|e| !e.is_empty()) {
            Some(email) => format!("{name} <{email}>"),
            None => name.to_string(),
        };
    }
    Ok(vec![change])
}

/// A merge request opened, reopened, or updated with new commits (`oldrev`) → one change for its head on
/// `refs/merge-requests/N/head` of the target project; any other action (a new description, a close, a merge,
/// an approval) → none.
fn merge_request(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let attributes = root.field("object_attributes")?;
    let iid = integer(&attributes.field("iid")?)?;
    let action = attributes.opt_str("action")?.unwrap_or_default();
    let wanted = match action {
        "open" | "reopen" => true,
        "update" => attributes.opt("oldrev")?.is_some(),
        _ => false,
    };
    if !config.pull_requests || !wanted {
        let action = if action.is_empty() { "without action" } else { action };
        return Err(ignored("gitlab", format!("merge request !{iid} {action}")));
    }
    merge_request_change(config, &root, &attributes, "merge_request", action)
}

/// A comment on a merge request that contains [`HookConfig::note_trigger`] → its head again; any other comment
/// → none.
fn note(config: &HookConfig, payload: &Value) -> Result<Vec<NewChange>, HookError> {
    let root = Node::root(payload);
    let attributes = root.field("object_attributes")?;
    let on = attributes.opt_str("noteable_type")?.unwrap_or_default();
    let text = attributes.opt_str("note")?.unwrap_or_default();
    let triggered = config.note_trigger.as_deref().is_some_and(|t| text.contains(t));
    if on != "MergeRequest" || !triggered || !config.pull_requests {
        return Err(ignored("gitlab", format!("a comment on a {on} without the note trigger")));
    }
    let request = root.field("merge_request")?;
    merge_request_change(config, &root, &request, "note", "comment")
}

fn merge_request_change(
    config: &HookConfig,
    root: &Node,
    request: &Node,
    event: &str,
    action: &str,
) -> Result<Vec<NewChange>, HookError> {
    let iid = integer(&request.field("iid")?)?;
    let last_commit = request.field("last_commit")?;
    if let Some(message) = last_commit.opt_str("message")? {
        if config.skips(message) {
            return Err(ignored(
                "gitlab",
                format!("merge request !{iid}: its last commit's message has a skip marker"),
            ));
        }
    }
    let project = root.field("project")?;
    let source = request.opt("source")?;
    let source_name = source.as_ref().map(|s| s.opt_str("path_with_namespace")).transpose()?.flatten();
    let base_repository = project.str_field("path_with_namespace")?;
    let same_project = request.opt("source_project_id")?.map(|n| n.value.clone())
        == request.opt("target_project_id")?.map(|n| n.value.clone());
    let head_repository = if same_project { Some(base_repository) } else { source_name.or(Some("")) };
    let user = root.opt("user")?;
    let author = match user.as_ref().map(|u| u.opt_str("username")).transpose()?.flatten() {
        Some(username) => username,
        None => user.as_ref().map(|u| u.opt_str("name")).transpose()?.flatten().unwrap_or_default(),
    };
    let title = request.str_field("title")?;
    let when_timestamp = match request.opt("updated_at")? {
        Some(t) => t.timestamp()?,
        None => 0,
    };
    let pull = PullRequest {
        event,
        action,
        number: iid,
        title,
        url: request.str_field("url")?,
        author,
        head_revision: last_commit.str_field("id")?,
        head_branch: request.str_field("source_branch")?,
        head_repository,
        base_branch: request.str_field("target_branch")?,
        base_repository,
        repository: project.str_field("git_http_url")?,
        build_ref: format!("refs/merge-requests/{iid}/head"),
        comments: pull::comments(title, request.opt_str("description")?),
        when_timestamp,
    };
    let change = pull
        .change(config)
        .map_err(|reason| ignored("gitlab", format!("merge request {}", reason.replacen('#', "!", 1))))?;
    Ok(vec![change])
}

fn integer(node: &Node) -> Result<i64, HookError> {
    node.value.as_i64().ok_or_else(|| node.wrong_type("an integer"))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{edited, header_list};
    use super::super::{changes_from, Forge};
    use super::*;
    use serde_json::json;

    const PUSH: &[u8] = include_bytes!("testdata/gitlab_push.json");
    const TAG: &[u8] = include_bytes!("testdata/gitlab_tag.json");
    const DELETE: &[u8] = include_bytes!("testdata/gitlab_delete.json");

    fn run(config: &HookConfig, headers: &[(&str, &str)], body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        let headers = header_list(headers);
        changes_from(Forge::GitLab, config, &HookRequest { headers: &headers, body })
    }

    fn push(config: &HookConfig, body: &[u8]) -> Result<Vec<NewChange>, HookError> {
        run(config, &[("X-Gitlab-Event", "Push Hook")], body)
    }

    #[test]
    fn push_makes_one_change_per_commit() {
        let changes = push(&HookConfig::default(), PUSH).unwrap();
        assert_eq!(changes.len(), 2);
        let first = &changes[0];
        assert_eq!(first.revision.as_deref(), Some("b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"));
        assert_eq!(first.author, "Jordi Mallach <jordi@softcatala.org>");
        assert_eq!(first.committer, None);
        assert!(first.comments.starts_with("Update Catalan translation to e38cb41.\n\nSee "));
        assert_eq!(first.files, ["CHANGELOG", "app/controller/application.rb"]);
        assert_eq!(first.when_timestamp, 1_323_692_851);
        assert_eq!(first.branch.as_deref(), Some("master"));
        assert_eq!(first.repository, "http://example.com/mike/diaspora.git");
        assert_eq!(first.project, "mike/diaspora");
        assert_eq!(first.category.as_deref(), Some("push"));
        assert_eq!(first.properties["event"], json!("push"));
        assert_eq!(first.properties["pusher"], json!("jsmith"));
        assert_eq!(
            first.properties["revlink"],
            json!("http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327")
        );
        let second = &changes[1];
        assert_eq!(second.author, "Jérôme Müller <gitlabdev@dv6700.(none)>");
        assert_eq!(second.comments, "fixed readme — «ça marche» 🎉");
        assert_eq!(second.files, ["CHANGELOG", "app/controller/application.rb", "lib/obsolete.rb"]);
        assert_eq!(second.when_timestamp, 1_325_633_789);
    }

    #[test]
    fn newest_first_commits_are_put_oldest_first() {
        // GitLab 14.x and later list commits newest first.
        let body = edited(PUSH, |v| {
            v["commits"].as_array_mut().unwrap().reverse();
        });
        assert_eq!(push(&HookConfig::default(), &body), push(&HookConfig::default(), PUSH));
    }

    #[test]
    fn older_payloads_without_project() {
        let body = edited(PUSH, |v| {
            v.as_object_mut().unwrap().remove("project");
        });
        let changes = push(&HookConfig::default(), &body).unwrap();
        assert_eq!(changes[0].repository, "http://example.com/mike/diaspora.git");
        assert_eq!(changes[0].project, "Diaspora");
    }

    #[test]
    fn tag_push_only_with_tags() {
        let tag = |config: &HookConfig| run(config, &[("X-Gitlab-Event", "Tag Push Hook")], TAG);
        assert_eq!(tag(&HookConfig::default()), Ok(Vec::new()));
        let config = HookConfig { with_tags: true, project: Some("example".into()), ..HookConfig::default() };
        let changes = tag(&config).unwrap();
        assert_eq!(changes.len(), 1);
        let change = &changes[0];
        assert_eq!(change.branch.as_deref(), Some("v1.0.0"));
        assert_eq!(change.category.as_deref(), Some("tag"));
        assert_eq!(change.revision.as_deref(), Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"));
        assert_eq!(change.author, "John Smith <john@example.com>");
        assert_eq!(change.comments, "Tag message");
        assert_eq!(change.when_timestamp, 0);
        assert_eq!(change.project, "example");
        assert_eq!(change.repository, "http://example.com/jsmith/example.git");
        assert_eq!(change.properties["event"], json!("tag_push"));
    }

    #[test]
    fn branch_deletion_makes_no_changes() {
        assert_eq!(push(&HookConfig::default(), DELETE), Ok(Vec::new()));
        // `after` alone says so too.
        let body = edited(DELETE, |v| v["checkout_sha"] = json!("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));
        assert_eq!(push(&HookConfig::default(), &body), Ok(Vec::new()));
    }

    #[test]
    fn token() {
        let config = HookConfig { secret: Some("t0ken".into()), ..HookConfig::default() };
        let ok = run(&config, &[("X-Gitlab-Event", "Push Hook"), ("x-gitlab-token", "t0ken")], PUSH);
        assert_eq!(ok.map(|c| c.len()), Ok(2));

        let wrong = run(&config, &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "t0ken2")], PUSH).unwrap_err();
        assert_eq!(wrong, HookError::BadToken { header: "X-Gitlab-Token" });
        assert_eq!(wrong.status(), 403);

        let missing = push(&config, PUSH).unwrap_err();
        assert_eq!(missing, HookError::MissingToken { header: "X-Gitlab-Token" });
        assert_eq!(missing.status(), 401);
        assert_eq!(missing.to_string(), "missing token header X-Gitlab-Token (the hook has a secret)");

        // The token is checked before anything else is looked at.
        let err = run(&config, &[("X-Gitlab-Token", "nope")], b"not json").unwrap_err();
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn bad_requests() {
        let config = HookConfig::default();
        let err = run(&config, &[], PUSH).unwrap_err();
        assert_eq!(err, HookError::MissingHeader { header: "X-Gitlab-Event" });
        assert_eq!(err.status(), 400);

        let err = run(&config, &[("X-Gitlab-Event", "Merge Request Hook")], PUSH).unwrap_err();
        assert_eq!(err.to_string(), "missing field object_attributes");
        assert_eq!(err.status(), 400);

        let err = push(&config, b"[1, 2").unwrap_err();
        assert!(matches!(err, HookError::MalformedBody { .. }));
        assert_eq!(err.status(), 400);

        let err = push(&config, b"[]").unwrap_err();
        assert_eq!(err.to_string(), "field (root) is not an object");

        let body = edited(PUSH, |v| {
            v["commits"][1]["author"].as_object_mut().unwrap().remove("name");
        });
        assert_eq!(push(&config, &body).unwrap_err().to_string(), "missing field commits[1].author.name");

        let body = edited(PUSH, |v| {
            v.as_object_mut().unwrap().remove("commits");
        });
        assert_eq!(push(&config, &body).unwrap_err().to_string(), "missing field commits");
    }
}
