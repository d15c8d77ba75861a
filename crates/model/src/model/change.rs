//! Changes: what a change source reports ([`NewChange`]) and what the store keeps of it ([`Change`]).

use std::collections::BTreeMap;

use super::SourceStamp;

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

/// The `source` of a change's properties (Buildbot's `(value, source)` pairs).
pub const CHANGE_PROPERTY_SOURCE: &str = "Change";

/// A stored change: what its source reported ([`NewChange`], with `when_timestamp` filled in), its id and its
/// source stamp. Its fields read as the `NewChange`'s (`change.branch`).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub id: i64,
    pub sourcestampid: i64,
    /// Buildbot's `parent_changeids`: the change stored before it on the same branch, repository, project and
    /// codebase, if any.
    pub parent_changeids: Vec<i64>,
    /// What the source reported; `when_timestamp` is when it was stored if the source did not say. Its
    /// properties are stored with the source [`CHANGE_PROPERTY_SOURCE`].
    pub reported: NewChange,
}

impl std::ops::Deref for Change {
    type Target = NewChange;

    fn deref(&self) -> &NewChange {
        &self.reported
    }
}

impl Change {
    /// The source stamp the change stands for.
    pub fn sourcestamp(&self) -> SourceStamp {
        SourceStamp {
            branch: self.branch.clone(),
            revision: self.revision.clone(),
            repository: self.repository.clone(),
            project: self.project.clone(),
            codebase: self.codebase.clone(),
        }
    }
}
