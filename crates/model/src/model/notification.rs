//! Notices for reporters: what the store reads about a build when it stores the build's start or result (so a
//! reporter decides on the same snapshot), what a reporter asks it to keep ([`NewNotification`]), and what the
//! outbox holds ([`Notification`]).

use std::collections::BTreeMap;

use super::{Build, Change, SourceStamp, Step};

/// Earlier builds of a builder the store reads with a build's facts (the newest first), at most.
pub const HISTORY: i64 = 200;

/// What the store reads about build `build`, within the transaction that stores its start or its result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildFacts {
    /// The build as it is after the write (`results` set at its end).
    pub build: Build,
    pub builder: String,
    pub builder_tags: Vec<String>,
    pub worker: Option<String>,
    pub buildsetid: i64,
    /// The buildset's reason.
    pub reason: String,
    /// The build's properties (or the buildset's at its start), name → value.
    pub properties: BTreeMap<String, serde_json::Value>,
    pub sourcestamps: Vec<SourceStamp>,
    /// The changes the build was made for (its buildset's), oldest first.
    pub changes: Vec<Change>,
    pub steps: Vec<Step>,
    /// The builder's earlier builds, by number, the newest first (at most [`HISTORY`]); empty at a start.
    pub history: Vec<PastBuild>,
}

impl BuildFacts {
    /// The branch built: the first source stamp's that has one, else the `branch` property.
    pub fn branch(&self) -> Option<String> {
        self.sourcestamps
            .iter()
            .find_map(|ss| ss.branch.clone())
            .or_else(|| self.properties.get("branch").and_then(|b| b.as_str()).map(str::to_owned))
    }
}

/// What the store reads about a completed buildset, within the transaction that completes it: its result and
/// the facts (with history) of the last build of each of its requests, in request order. Requests that ended
/// without a build (cancelled in the queue) have none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildsetFacts {
    pub bsid: i64,
    pub results: i32,
    pub reason: String,
    pub builds: Vec<BuildFacts>,
}

/// An earlier build of the same builder, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PastBuild {
    pub id: i64,
    pub number: i64,
    /// `None` while it runs.
    pub results: Option<i32>,
    pub branch: Option<String>,
    /// The authors and committers of its changes, and its `owner`.
    pub people: Vec<String>,
}

/// A notice a reporter decided on, to keep in the outbox in the same transaction as what it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The reporter's configured name.
    pub reporter: String,
    /// `build.finished`, `build.started`, `request.new`, `worker.missing`, `worker.back`…
    pub event: String,
    /// The build, request or worker id.
    pub subject_id: i64,
    /// An address, `repo@sha#context`, a room or URL.
    pub target: String,
    /// Unique: a second notice with the same key is not kept (`reporter|event|subject|target`).
    pub dedupe_key: String,
    /// Notices with the same key go in order, and a newer one replaces the unsent older ones (commit statuses).
    pub supersede_key: Option<String>,
    /// What is sent, rendered when the notice is decided (a retry sends the same bytes).
    pub payload: Vec<u8>,
}

/// How many notices of a reporter are in each state, and how many of its pending ones have failed an attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    pub reporter: String,
    pub state: String,
    pub count: i64,
    /// Pending after at least one failed attempt (waiting for a retry).
    pub retrying: i64,
}

/// Where a notice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationState {
    Pending,
    Sending,
    Sent,
    /// Given up: too old, or refused for good; `last_error` says why.
    Dead,
    /// A newer notice with the same supersede key replaced it before it was sent.
    Superseded,
}

impl NotificationState {
    pub fn name(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sending => "sending",
            NotificationState::Sent => "sent",
            NotificationState::Dead => "dead",
            NotificationState::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationState> {
        Some(match text {
            "pending" => NotificationState::Pending,
            "sending" => NotificationState::Sending,
            "sent" => NotificationState::Sent,
            "dead" => NotificationState::Dead,
            "superseded" => NotificationState::Superseded,
            _ => return None,
        })
    }
}

/// A notice in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub reporter: String,
    pub event: String,
    pub subject_id: i64,
    pub target: String,
    pub dedupe_key: String,
    pub supersede_key: Option<String>,
    pub payload: Vec<u8>,
    pub state: NotificationState,
    /// Attempts made so far (the one under way not counted).
    pub attempts: i64,
    /// When it may be tried next, in milliseconds since the epoch.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// What the server answered when it was sent.
    pub answer: Option<String>,
}
