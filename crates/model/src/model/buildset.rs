//! Buildsets and build requests: what a scheduler asks for, and the queue of one request per builder.

/// The sources a build is made of, for one codebase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStamp {
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub repository: String,
    pub project: String,
    pub codebase: String,
}

/// A property with the name of what set it (Buildbot's `(value, source)` pairs).
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    pub name: String,
    pub value: serde_json::Value,
    pub source: String,
}

/// A buildset to add: one build request per builder in `builderids`.
#[derive(Clone, Debug, Default)]
pub struct NewBuildset {
    pub reason: String,
    pub external_idstring: Option<String>,
    /// The scheduler that asked for it.
    pub scheduler: Option<String>,
    /// The build that triggered it (trigger steps).
    pub parent_buildid: Option<i64>,
    pub properties: Vec<Property>,
    pub builderids: Vec<i64>,
    /// The priority the scheduler or the force form gave its requests; `None`: each builder's, from
    /// `builder_priorities`.
    pub priority: Option<i32>,
    /// Builder id → the builder's own priority, for requests of a buildset without `priority` (absent: 0).
    pub builder_priorities: std::collections::HashMap<i64, i32>,
    /// Whether a parent build waits for these requests.
    pub waited_for: bool,
    pub sourcestamps: Vec<SourceStamp>,
    /// The changes it is built for (ids of stored changes), oldest first.
    pub changeids: Vec<i64>,
    /// Object state written in the buildset's transaction: what the scheduler that submits it keeps of what it
    /// has submitted, so that the two are stored together or not at all.
    pub state: Vec<StateWrite>,
}

/// One value of the object state to store, with other writes in one transaction (`Store::set_states`, or a
/// buildset's [`NewBuildset::state`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StateWrite {
    /// The object's unique name (`scheduler:<name>`).
    pub name: String,
    pub key: String,
    pub value: serde_json::Value,
}

impl StateWrite {
    pub fn new(name: &str, key: &str, value: serde_json::Value) -> StateWrite {
        StateWrite { name: name.to_string(), key: key.to_string(), value }
    }
}

impl NewBuildset {
    /// The priority of its request for `builderid`.
    pub fn request_priority(&self, builderid: i64) -> i32 {
        self.priority.or_else(|| self.builder_priorities.get(&builderid).copied()).unwrap_or(0)
    }
}

/// A stored buildset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buildset {
    pub id: i64,
    pub reason: String,
    pub external_idstring: Option<String>,
    pub scheduler: Option<String>,
    pub parent_buildid: Option<i64>,
    pub submitted_at: i64,
    pub complete: bool,
    pub complete_at: Option<i64>,
    /// The worst result of its requests, once all are complete.
    pub results: Option<i32>,
}

/// A stored build request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRequest {
    pub id: i64,
    pub buildsetid: i64,
    pub builderid: i64,
    pub priority: i32,
    pub submitted_at: i64,
    pub complete: bool,
    pub results: Option<i32>,
    pub complete_at: Option<i64>,
    pub waited_for: bool,
    /// The newer request this one was collapsed into.
    pub superseded_by: Option<i64>,
    /// The master that claimed it, if any.
    pub claimed_by_masterid: Option<i64>,
}

/// A buildset whose last request just completed, with the worst result of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedBuildset {
    pub bsid: i64,
    pub results: i32,
}

/// What an action submitted: the buildset and its requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub buildsetid: i64,
    /// Builder id → build request id.
    pub requests: Vec<(i64, i64)>,
}
