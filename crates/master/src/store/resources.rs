//! The resources the web API lists, each declared once: for every field its API name, its column or SQL, the
//! kind of its values (for filters), and its JSON. The `SELECT` list, the filter and order whitelist and the
//! rendering ([`Resource::fields_json`]) are read from these tables; the web adds only what the store does
//! not hold (a worker's live connection).

use serde_json::{json, Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::queries::{column, computed, shown, shown_column, Field, FieldKind::*, Resource};
use crate::model::{Build, BuildRequest, Buildset, Change, Log, Step, Worker, CHANGE_PROPERTY_SOURCE};

impl Resource for Build {
    const PLURAL: &'static str = "builds";
    const WHAT: &'static str = "build";
    const FIELDS: &'static [Field<Build>] = &[
        column("buildid", "id", Int, |b| json!(b.id)),
        column("number", "number", Int, |b| json!(b.number)),
        column("builderid", "builderid", Int, |b| json!(b.builderid)),
        column("buildrequestid", "buildrequestid", Int, |b| json!(b.buildrequestid)),
        column("workerid", "workerid", Int, |b| json!(b.workerid)),
        column("masterid", "masterid", Int, |b| json!(b.masterid)),
        column("started_at", "started_at", Int, |b| json!(b.started_at)),
        column("complete_at", "complete_at", Int, |b| json!(b.complete_at)),
        computed("complete", "(complete_at IS NOT NULL)", Bool, |b| json!(b.complete_at.is_some())),
        column("state_string", "state_string", Text, |b| json!(b.state_string)),
        column("results", "results", Int, |b| json!(b.results)),
    ];
    const TABLES: &'static str = "builds";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::builds::build(r)
    }
}

impl Resource for BuildRequest {
    const PLURAL: &'static str = "buildrequests";
    const WHAT: &'static str = "build request";
    const FIELDS: &'static [Field<BuildRequest>] = &[
        column("buildrequestid", "br.id", Int, |r| json!(r.id)),
        column("buildsetid", "br.buildsetid", Int, |r| json!(r.buildsetid)),
        column("builderid", "br.builderid", Int, |r| json!(r.builderid)),
        column("priority", "br.priority", Int, |r| json!(r.priority)),
        column("submitted_at", "br.submitted_at", Int, |r| json!(r.submitted_at)),
        column("complete", "br.complete", Bool, |r| json!(r.complete)),
        column("results", "br.results", Int, |r| json!(r.results)),
        column("complete_at", "br.complete_at", Int, |r| json!(r.complete_at)),
        column("waited_for", "br.waited_for", Bool, |r| json!(r.waited_for)),
        computed("claimed", "(c.brid IS NOT NULL)", Bool, |r| json!(r.claimed_by_masterid.is_some())),
        column("claimed_by_masterid", "c.masterid", Int, |r| json!(r.claimed_by_masterid)),
        column("superseded_by", "br.superseded_by", Int, |r| json!(r.superseded_by)),
    ];
    const TABLES: &'static str = "buildrequests br LEFT JOIN buildrequest_claims c ON c.brid = br.id";
    const ID: &'static str = "br.id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::buildrequests::build_request(r)
    }
}

impl Resource for Buildset {
    const PLURAL: &'static str = "buildsets";
    const WHAT: &'static str = "buildset";
    const FIELDS: &'static [Field<Buildset>] = &[
        column("bsid", "id", Int, |b| json!(b.id)),
        column("reason", "reason", Text, |b| json!(b.reason)),
        column("external_idstring", "external_idstring", Text, |b| json!(b.external_idstring)),
        column("submitted_at", "submitted_at", Int, |b| json!(b.submitted_at)),
        column("complete", "complete", Bool, |b| json!(b.complete)),
        column("complete_at", "complete_at", Int, |b| json!(b.complete_at)),
        column("results", "results", Int, |b| json!(b.results)),
        column("parent_buildid", "parent_buildid", Int, |b| json!(b.parent_buildid)),
        column("scheduler", "scheduler", Text, |b| json!(b.scheduler)),
    ];
    const TABLES: &'static str = "buildsets";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::buildsets::buildset(r)
    }
}

impl Resource for Step {
    const PLURAL: &'static str = "steps";
    const WHAT: &'static str = "step";
    const FIELDS: &'static [Field<Step>] = &[
        column("stepid", "id", Int, |s| json!(s.id)),
        column("number", "number", Int, |s| json!(s.number)),
        column("name", "name", Text, |s| json!(s.name)),
        column("buildid", "buildid", Int, |s| json!(s.buildid)),
        column("started_at", "started_at", Int, |s| json!(s.started_at)),
        column("complete_at", "complete_at", Int, |s| json!(s.complete_at)),
        computed("complete", "(complete_at IS NOT NULL)", Bool, |s| json!(s.complete_at.is_some())),
        column("state_string", "state_string", Text, |s| json!(s.state_string)),
        column("results", "results", Int, |s| json!(s.results)),
        column("hidden", "hidden", Bool, |s| json!(s.hidden)),
        shown("urls", |_| json!([])),
    ];
    const TABLES: &'static str = "steps";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::steps::step(r)
    }
}

impl Resource for Log {
    const PLURAL: &'static str = "logs";
    const WHAT: &'static str = "log";
    const FIELDS: &'static [Field<Log>] = &[
        column("logid", "id", Int, |l| json!(l.id)),
        column("name", "name", Text, |l| json!(l.name)),
        column("slug", "slug", Text, |l| json!(l.slug)),
        column("stepid", "stepid", Int, |l| json!(l.stepid)),
        column("complete", "complete", Bool, |l| json!(l.complete)),
        column("num_lines", "num_lines", Int, |l| json!(l.num_lines)),
        column("type", "type", Text, |l| json!(l.log_type)),
    ];
    const TABLES: &'static str = "logs";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Log {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            slug: r.try_get("slug")?,
            stepid: r.try_get("stepid")?,
            complete: r.try_get::<i16, _>("complete")? != 0,
            num_lines: r.try_get("num_lines")?,
            log_type: r.try_get("type")?,
        })
    }
}

/// A worker's fields that the store holds; the web adds what its connection tells (`workerinfo`, `connected_to`,
/// `configured_on`).
impl Resource for Worker {
    const PLURAL: &'static str = "workers";
    const WHAT: &'static str = "worker";
    const FIELDS: &'static [Field<Worker>] = &[
        column("workerid", "id", Int, |w| json!(w.id)),
        column("name", "name", Text, |w| json!(w.name)),
        column("paused", "paused", Bool, |w| json!(w.paused)),
        shown_column("pause_reason", "pause_reason", |w| json!(w.pause_reason)),
        shown("graceful", |_| json!(false)),
    ];
    const TABLES: &'static str = "workers";
    const MORE_COLUMNS: &'static [&'static str] = &["info"];
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Worker {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            info: r.try_get("info")?,
            paused: r.try_get::<i16, _>("paused")? != 0,
            pause_reason: r.try_get("pause_reason")?,
        })
    }
}

impl Resource for Change {
    const PLURAL: &'static str = "changes";
    const WHAT: &'static str = "change";
    const FIELDS: &'static [Field<Change>] = &[
        column("changeid", "id", Int, |c| json!(c.id)),
        column("author", "author", Text, |c| json!(c.author)),
        column("committer", "committer", Text, |c| json!(c.committer)),
        column("comments", "comments", Text, |c| json!(c.comments)),
        column("branch", "branch", Text, |c| json!(c.branch)),
        column("revision", "revision", Text, |c| json!(c.revision)),
        column("repository", "repository", Text, |c| json!(c.repository)),
        column("project", "project", Text, |c| json!(c.project)),
        column("codebase", "codebase", Text, |c| json!(c.codebase)),
        column("category", "category", Text, |c| json!(c.category)),
        column("when_timestamp", "when_timestamp", Int, |c| json!(c.when_timestamp)),
        shown("files", |c| json!(c.files)),
        shown("properties", change_properties),
        shown("sourcestamp", |c| {
            json!({
                "ssid": c.sourcestampid,
                "branch": c.branch,
                "revision": c.revision,
                "repository": c.repository,
                "project": c.project,
                "codebase": c.codebase,
            })
        }),
    ];
    const TABLES: &'static str = "changes";
    const MORE_COLUMNS: &'static [&'static str] = &["files", "properties", "sourcestampid"];
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::changes::change(r)
    }
}

/// A change's properties as Buildbot shows them: name → `[value, "Change"]`.
fn change_properties(change: &Change) -> Value {
    let properties: Map<String, Value> =
        change.properties.iter().map(|(name, value)| (name.clone(), json!([value, CHANGE_PROPERTY_SOURCE]))).collect();
    Value::Object(properties)
}
