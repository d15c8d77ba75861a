//! Changes: new commits (from a git poller, a forge's webhook, `kiln sendchange`) and new package releases.
//! Every source turns what it saw into [`NewChange`]s; the store keeps them and schedulers decide what to build.

pub mod git_poller;
pub mod release_poller;
pub mod webhooks;

use std::collections::BTreeMap;

/// A change as a source reports it, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewChange {
    /// Who wrote it (`Name <email>` when known).
    pub author: String,
    pub committer: Option<String>,
    /// The commit message (or release notes).
    pub comments: String,
    /// Paths the change touched, relative to the repository root.
    pub files: Vec<String>,
    /// The commit id (or the released version).
    pub revision: Option<String>,
    /// The branch (without `refs/heads/`); `None` for a change that is on no branch (e.g. a release).
    pub branch: Option<String>,
    /// The repository URL as the source knows it.
    pub repository: String,
    pub project: String,
    pub codebase: String,
    /// A free label for change filters (`push`, `tag`, `release`…).
    pub category: Option<String>,
    /// When it happened, in seconds since the epoch.
    pub when_timestamp: i64,
    /// Extra facts (e.g. the event type, the pusher), name → value.
    pub properties: BTreeMap<String, serde_json::Value>,
}
