//! Commit statuses on the forges: GitHub, GitLab, Gitea/Forgejo, Bitbucket — their URLs, states and bodies.

use serde_json::{json, Value};

use crate::config::{Forge, ForgeDef};
use crate::model::{Change, SourceStamp};
use crate::results::{CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS};

/// `owner/repo` from a source stamp: its project when it has that form, else its repository URL
/// (`https://host/o/r(.git)`, `git@host:o/r.git`, `ssh://git@host/o/r`).
pub fn repo_path(project: &str, repository: &str) -> Option<String> {
    if project.split('/').count() >= 2 && !project.contains(':') && !project.starts_with('/') {
        return Some(project.trim_end_matches(".git").to_owned());
    }
    let rest = if let Some((_, rest)) = repository.split_once("://") {
        rest.split_once('/')?.1
    } else if let Some((_, rest)) = repository.split_once(':') {
        rest
    } else {
        return None;
    };
    let path = rest.trim_matches('/').trim_end_matches(".git");
    (path.split('/').count() >= 2).then(|| path.to_owned())
}

/// The commit and branch a status of source stamp `ss` is about: its revision and branch, except for a pull or
/// merge request's change (category `pull`), whose status belongs on the request's head commit (`head_revision`:
/// GitHub's trial merge `refs/pull/N/merge` has no revision of its own) and whose branch is the request's source
/// branch (`head_branch`, GitLab's `ref`; the source stamp's is the forge's `refs/…` of the request).
pub fn status_commit(ss: &SourceStamp, changes: &[Change]) -> (Option<String>, Option<String>) {
    let pull = changes.iter().rev().find(|c| {
        // The change hooks' category of pull requests (`changes::webhooks::pull::CATEGORY`).
        c.category.as_deref() == Some("pull") && c.codebase == ss.codebase && c.branch == ss.branch
    });
    let head = |name: &str| pull.and_then(|c| c.properties.get(name)?.as_str()).filter(|v| !v.is_empty());
    let sha = head("head_revision").or(ss.revision.as_deref().filter(|r| !r.is_empty()));
    let branch = head("head_branch").or(ss.branch.as_deref());
    (sha.map(str::to_owned), branch.map(str::to_owned))
}

/// The state word a forge takes for an event and result.
pub fn state(forge: Forge, event: &str, results: Option<i32>) -> &'static str {
    let started = event == "build.started";
    let pending = event == "request.new";
    match forge {
        Forge::Github | Forge::Gitea => match (pending || started, results) {
            (true, _) => "pending",
            (false, Some(SUCCESS | SKIPPED)) => "success",
            (false, Some(WARNINGS)) if forge == Forge::Gitea => "warning",
            (false, Some(WARNINGS)) => "success",
            (false, Some(FAILURE)) => "failure",
            (false, Some(RETRY)) => "pending",
            (false, _) => "error",
        },
        Forge::Gitlab => match (pending, started, results) {
            (true, _, _) => "pending",
            (_, true, _) => "running",
            (_, _, Some(SUCCESS | WARNINGS | SKIPPED)) => "success",
            (_, _, Some(FAILURE | EXCEPTION)) => "failed",
            (_, _, Some(CANCELLED)) => "canceled",
            (_, _, Some(RETRY)) => "pending",
            _ => "failed",
        },
        Forge::Bitbucket => match (pending || started, results) {
            (true, _) => "INPROGRESS",
            (false, Some(SUCCESS)) => "SUCCESSFUL",
            (false, Some(RETRY)) => "INPROGRESS",
            (false, Some(CANCELLED)) => "STOPPED",
            _ => "FAILED",
        },
    }
}

/// The method, URL, body and (GitLab) project of a status post.
#[allow(clippy::too_many_arguments)]
pub fn status(
    forge: &ForgeDef,
    repo: &str,
    sha: &str,
    branch: Option<&str>,
    event: &str,
    results: Option<i32>,
    context: &str,
    description: &str,
    target_url: &str,
) -> (&'static str, String, Value, Option<String>) {
    let base = &forge.base_url;
    let state = state(forge.forge, event, results);
    match forge.forge {
        Forge::Github => (
            "POST",
            format!("{base}/repos/{repo}/statuses/{sha}"),
            json!({"state": state, "target_url": target_url, "description": description, "context": context}),
            None,
        ),
        Forge::Gitea => (
            "POST",
            format!("{base}/api/v1/repos/{repo}/statuses/{sha}"),
            json!({"state": state, "target_url": target_url, "description": description, "context": context}),
            None,
        ),
        Forge::Gitlab => {
            let mut body =
                json!({"state": state, "name": context, "description": description, "target_url": target_url});
            if let Some(branch) = branch {
                body["ref"] = json!(branch);
            }
            ("POST", format!("{base}/api/v4/projects/{{project_id}}/statuses/{sha}"), body, Some(repo.to_owned()))
        }
        Forge::Bitbucket => {
            let key = super::super::short_hash(context);
            (
                "POST",
                format!("{base}/2.0/repositories/{repo}/commit/{sha}/statuses/build"),
                json!({"state": state, "key": key, "name": context, "description": description, "url": target_url}),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_name_their_project() {
        assert_eq!(repo_path("o/r", "").as_deref(), Some("o/r"));
        assert_eq!(repo_path("", "https://github.com/o/r.git").as_deref(), Some("o/r"));
        assert_eq!(repo_path("", "git@github.com:o/r.git").as_deref(), Some("o/r"));
        assert_eq!(repo_path("", "ssh://git@gitlab.example.org/group/sub/r").as_deref(), Some("group/sub/r"));
        assert_eq!(repo_path("scipion", "/srv/git/repo"), None);
    }

    #[test]
    fn a_pull_requests_status_is_on_its_head_commit_and_branch() {
        let ss = SourceStamp {
            branch: Some("refs/pull/2/merge".into()),
            revision: None,
            repository: "https://github.com/o/r".into(),
            project: "o/r".into(),
            codebase: String::new(),
        };
        let mut change = crate::model::NewChange {
            branch: ss.branch.clone(),
            repository: ss.repository.clone(),
            category: Some("pull".into()),
            ..Default::default()
        };
        change.properties.insert("head_revision".into(), json!("0123abc"));
        change.properties.insert("head_branch".into(), json!("feature"));
        let stored = |reported: crate::model::NewChange| Change {
            id: 1,
            sourcestampid: 1,
            parent_changeids: Vec::new(),
            reported,
        };
        let pull = [stored(change.clone())];
        assert_eq!(status_commit(&ss, &pull), (Some("0123abc".into()), Some("feature".into())));
        // A push's change, or none: the source stamp's own.
        let pushed = SourceStamp { revision: Some("fff".into()), branch: Some("main".into()), ..ss.clone() };
        let push = [stored(crate::model::NewChange { category: Some("push".into()), ..change })];
        assert_eq!(status_commit(&pushed, &push), (Some("fff".into()), Some("main".into())));
        assert_eq!(status_commit(&pushed, &[]), (Some("fff".into()), Some("main".into())));
        assert_eq!(status_commit(&ss, &[]), (None, Some("refs/pull/2/merge".into())));
    }

    #[test]
    fn states_follow_each_forge() {
        assert_eq!(state(Forge::Github, "build.started", None), "pending");
        assert_eq!(state(Forge::Github, "build.finished", Some(WARNINGS)), "success");
        assert_eq!(state(Forge::Github, "build.finished", Some(CANCELLED)), "error");
        assert_eq!(state(Forge::Gitea, "build.finished", Some(WARNINGS)), "warning");
        assert_eq!(state(Forge::Gitlab, "build.started", None), "running");
        assert_eq!(state(Forge::Gitlab, "build.finished", Some(CANCELLED)), "canceled");
        assert_eq!(state(Forge::Gitlab, "build.finished", Some(EXCEPTION)), "failed");
        assert_eq!(state(Forge::Bitbucket, "build.finished", Some(WARNINGS)), "FAILED");
    }
}
