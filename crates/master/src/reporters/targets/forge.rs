//! Commit statuses on the forges: GitHub, GitLab, Gitea/Forgejo, Bitbucket — their URLs, states and bodies.

use serde_json::{json, Value};

use crate::config::{Forge, ForgeDef};
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
