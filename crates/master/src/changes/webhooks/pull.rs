//! Pull and merge requests as changes: what every forge's request has in common, and the change made of it.
//!
//! The change is the request's head revision on the ref of the *base* repository that holds it
//! (`refs/pull/N/head` or `/merge` on GitHub and Gitea, `refs/merge-requests/N/head` on GitLab), so a build
//! fetches it from the repository it builds, whether the request comes from a branch or a fork. Its category is
//! [`CATEGORY`]; its properties say which request it is ([`PROPERTIES`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::HookConfig;
use crate::changes::NewChange;

/// The category of every pull or merge request's change, for a scheduler's `category` filter.
pub const CATEGORY: &str = "pull";

/// The properties a pull request's change carries (besides `event` and `revlink`).
pub const PROPERTIES: [&str; 10] = [
    "pr_number",
    "pr_title",
    "pr_url",
    "pr_author",
    "head_branch",
    "head_revision",
    "head_repository",
    "base_branch",
    "basename",
    "pullrequesturl",
];

/// A pull or merge request as a forge describes it.
#[derive(Debug, Clone)]
pub(super) struct PullRequest<'a> {
    /// The forge's event name (`pull_request`, `merge_request`, `pullrequest:created`).
    pub event: &'a str,
    /// What happened to it (`opened`, `synchronize`, `update`, …).
    pub action: &'a str,
    pub number: i64,
    pub title: &'a str,
    pub url: &'a str,
    /// Who opened it (a login or a display name).
    pub author: &'a str,
    pub head_revision: &'a str,
    pub head_branch: &'a str,
    /// The head's repository (its full name, else its URL); `None` when it is gone (a deleted fork).
    pub head_repository: Option<&'a str>,
    pub base_branch: &'a str,
    /// The base repository's full name (`owner/name`).
    pub base_repository: &'a str,
    /// The URL a build fetches `build_ref` from (the base repository's).
    pub repository: &'a str,
    /// The ref that holds the head (or the trial merge) in `repository`.
    pub build_ref: String,
    /// The change's description (the request's title and body).
    pub comments: String,
    /// When it was last updated, in seconds since the epoch; 0: unknown (the master stamps it).
    pub when_timestamp: i64,
}

impl PullRequest<'_> {
    /// Whether the head is in another repository than the base.
    pub fn is_from_fork(&self) -> bool {
        self.head_repository != Some(self.base_repository)
    }

    /// The request's change, or why it makes none: a fork when forks are not built, or a title with a skip
    /// marker. (The forges' pull request events but GitLab's carry no commit message; a title is what the
    /// author sets for the whole request, as Drone and Woodpecker read it. GitLab's last commit is checked by
    /// its hook besides.)
    pub fn change(&self, config: &HookConfig) -> Result<NewChange, String> {
        if config.skips(self.title) {
            return Err(format!("#{}: its title has a skip marker", self.number));
        }
        if self.is_from_fork() && !config.build_forks {
            return Err(format!(
                "#{} comes from another repository ({}) and build_forks is off",
                self.number,
                self.head_repository.unwrap_or("deleted")
            ));
        }
        let mut properties = BTreeMap::<String, Value>::new();
        let mut set = |name: &str, value: Value| {
            properties.insert(name.to_string(), value);
        };
        set("event", self.event.into());
        set("action", self.action.into());
        set("pr_number", self.number.into());
        set("pr_title", self.title.into());
        set("pr_url", self.url.into());
        set("pr_author", self.author.into());
        set("head_branch", self.head_branch.into());
        set("head_revision", self.head_revision.into());
        set("head_repository", self.head_repository.unwrap_or_default().into());
        set("base_branch", self.base_branch.into());
        set("fork", self.is_from_fork().into());
        // Buildbot's names of the same.
        set("basename", self.base_branch.into());
        set("pullrequesturl", self.url.into());
        set("revlink", self.url.into());
        Ok(NewChange {
            author: self.author.to_string(),
            comments: self.comments.clone(),
            revision: Some(self.head_revision.to_string()),
            branch: Some(self.build_ref.clone()),
            repository: self.repository.to_string(),
            project: config.project.clone().unwrap_or_else(|| self.base_repository.to_string()),
            codebase: config.codebase.clone().unwrap_or_default(),
            category: Some(CATEGORY.to_string()),
            when_timestamp: self.when_timestamp,
            properties,
            ..NewChange::default()
        })
    }
}

/// The description of a request's change: its title, then its body when it has one.
pub(super) fn comments(title: &str, body: Option<&str>) -> String {
    match body.map(str::trim).filter(|b| !b.is_empty()) {
        Some(body) => format!("{title}\n\n{body}"),
        None => title.to_string(),
    }
}
