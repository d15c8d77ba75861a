//! Builds, their steps and logs, and the workers they run on, as stored.

/// A stored build.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Build {
    pub id: i64,
    pub number: i64,
    pub builderid: i64,
    pub buildrequestid: i64,
    pub workerid: Option<i64>,
    pub masterid: i64,
    pub started_at: i64,
    pub complete_at: Option<i64>,
    pub state_string: String,
    pub results: Option<i32>,
}

/// A stored step.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Step {
    pub id: i64,
    pub number: i64,
    pub name: String,
    pub buildid: i64,
    pub started_at: i64,
    pub complete_at: Option<i64>,
    pub state_string: String,
    pub results: Option<i32>,
    pub hidden: bool,
}

/// A stored log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub stepid: i64,
    pub complete: bool,
    pub num_lines: i64,
    /// Buildbot's type letter: `s`tdio, `t`ext, `h`tml, `d`ata.
    pub log_type: String,
}

/// A stored worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub id: i64,
    pub name: String,
    /// The info it last reported, a JSON object.
    pub info: String,
    pub paused: bool,
    /// Why it is paused.
    pub pause_reason: Option<String>,
}
