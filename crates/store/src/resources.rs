//! The resources the web API lists, each declared once: for every field its API name, its column or SQL, the
//! kind of its values (for filters), and its JSON. The `SELECT` list, the filter and order whitelist and the
//! rendering ([`Resource::fields_json`]) are read from these tables; the web adds only what the store does
//! not hold (a worker's live connection).

use serde_json::{json, Map, Value};
use sqlx::Row;

use super::queries::{column, computed, shown, shown_column, Field, FieldKind::*, Resource};
use crate::engine::DbRow;
use crate::model::{Build, BuildRequest, Buildset, Change, Log, Step, Worker, CHANGE_PROPERTY_SOURCE};

/// A resource's fields: each written out as a call (`column(…)`, `computed(…)`, `shown(…)`, `shown_column(…)`)
/// followed by `;`, or, for columns whose API name, column and struct field are one word, a list of them by kind:
/// `Int: number, builderid;` (`Int in "br": priority;` for columns of the table aliased `br`).
macro_rules! fields {
    (@ [$($done:expr),*]) => { &[$($done),*] };
    (@ [$($done:expr),*] $kind:ident: $($f:ident),+; $($rest:tt)*) => {
        fields!(@ [$($done,)* $(column(stringify!($f), stringify!($f), $kind, |r| json!(r.$f))),+] $($rest)*)
    };
    (@ [$($done:expr),*] $kind:ident in $table:literal: $($f:ident),+; $($rest:tt)*) => {
        fields!(
            @ [$($done,)* $(column(stringify!($f), concat!($table, ".", stringify!($f)), $kind, |r| json!(r.$f))),+]
            $($rest)*
        )
    };
    (@ [$($done:expr),*] $field:expr; $($rest:tt)*) => {
        fields!(@ [$($done,)* $field] $($rest)*)
    };
    ($($body:tt)*) => { fields!(@ [] $($body)*) };
}

impl Resource for Build {
    const PLURAL: &'static str = "builds";
    const WHAT: &'static str = "build";
    const FIELDS: &'static [Field<Build>] = fields! {
        column("buildid", "id", Int, |b| json!(b.id));
        computed("complete", "(complete_at IS NOT NULL)", Bool, |b| json!(b.complete_at.is_some()));
        Int: number, builderid, buildrequestid, workerid, masterid, started_at, complete_at, results;
        Text: state_string;
    };
    const TABLES: &'static str = "builds";
    const ID: &'static str = "id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
        super::builds::build(r)
    }
}

impl Resource for BuildRequest {
    const PLURAL: &'static str = "buildrequests";
    const WHAT: &'static str = "build request";
    const FIELDS: &'static [Field<BuildRequest>] = fields! {
        column("buildrequestid", "br.id", Int, |r| json!(r.id));
        computed("claimed", "(c.brid IS NOT NULL)", Bool, |r| json!(r.claimed_by_masterid.is_some()));
        column("claimed_by_masterid", "c.masterid", Int, |r| json!(r.claimed_by_masterid));
        Int in "br": buildsetid, builderid, priority, submitted_at, results, complete_at, superseded_by;
        Bool in "br": complete, waited_for;
    };
    const TABLES: &'static str = "buildrequests br LEFT JOIN buildrequest_claims c ON c.brid = br.id";
    const ID: &'static str = "br.id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
        super::buildrequests::build_request(r)
    }
}

impl Resource for Buildset {
    const PLURAL: &'static str = "buildsets";
    const WHAT: &'static str = "buildset";
    const FIELDS: &'static [Field<Buildset>] = fields! {
        column("bsid", "id", Int, |b| json!(b.id));
        Int: submitted_at, complete_at, results, parent_buildid;
        Text: reason, external_idstring, scheduler;
        Bool: complete;
    };
    const TABLES: &'static str = "buildsets";
    const ID: &'static str = "id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
        super::buildsets::buildset(r)
    }
}

impl Resource for Step {
    const PLURAL: &'static str = "steps";
    const WHAT: &'static str = "step";
    const FIELDS: &'static [Field<Step>] = fields! {
        column("stepid", "id", Int, |s| json!(s.id));
        computed("complete", "(complete_at IS NOT NULL)", Bool, |s| json!(s.complete_at.is_some()));
        shown("urls", |_| json!([]));
        Int: number, buildid, started_at, complete_at, results;
        Text: name, state_string;
        Bool: hidden;
    };
    const TABLES: &'static str = "steps";
    const ID: &'static str = "id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
        super::steps::step(r)
    }
}

impl Resource for Log {
    const PLURAL: &'static str = "logs";
    const WHAT: &'static str = "log";
    const FIELDS: &'static [Field<Log>] = fields! {
        column("logid", "id", Int, |l| json!(l.id));
        column("type", "type", Text, |l| json!(l.log_type));
        Int: stepid, num_lines;
        Text: name, slug;
        Bool: complete;
    };
    const TABLES: &'static str = "logs";
    const ID: &'static str = "id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
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
    const FIELDS: &'static [Field<Worker>] = fields! {
        column("workerid", "id", Int, |w| json!(w.id));
        shown_column("pause_reason", "pause_reason", |w| json!(w.pause_reason));
        shown("graceful", |_| json!(false));
        Text: name;
        Bool: paused;
    };
    const TABLES: &'static str = "workers";
    const MORE_COLUMNS: &'static [&'static str] = &["info"];
    const ID: &'static str = "id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
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
    const FIELDS: &'static [Field<Change>] = fields! {
        column("changeid", "id", Int, |c| json!(c.id));
        shown("files", |c| json!(c.files));
        shown("properties", change_properties);
        shown("sourcestamp", change_sourcestamp);
        shown("revlink", |c| c.properties.get("revlink").filter(|v| v.is_string()).cloned().unwrap_or(Value::Null));
        shown("parent_changeids", |c| json!(c.parent_changeids));
        Int: when_timestamp;
        Text: author, committer, comments, branch, revision, repository, project, codebase, category;
    };
    const TABLES: &'static str = "changes";
    const MORE_COLUMNS: &'static [&'static str] = &["files", "properties", "sourcestampid", PARENT_CHANGE];
    const ID: &'static str = "id";

    fn from_row(r: &DbRow) -> Result<Self, sqlx::Error> {
        super::changes::change(r)
    }
}

/// Buildbot's parent of a change: the one stored last before it with the same branch, repository, project and
/// codebase (on the index `changes_lineage`, so a page of changes costs a lookup per change).
const PARENT_CHANGE: &str = "(SELECT p.id FROM changes p WHERE p.repository = changes.repository \
     AND p.branch IS changes.branch AND p.project = changes.project AND p.codebase = changes.codebase \
     AND p.id < changes.id ORDER BY p.id DESC LIMIT 1) AS parent_changeid";

/// A change's source stamp as Buildbot shows it with the change.
fn change_sourcestamp(c: &Change) -> Value {
    json!({
        "ssid": c.sourcestampid,
        "branch": c.branch,
        "revision": c.revision,
        "repository": c.repository,
        "project": c.project,
        "codebase": c.codebase,
    })
}

/// A change's properties as Buildbot shows them: name → `[value, "Change"]`.
fn change_properties(change: &Change) -> Value {
    let properties: Map<String, Value> =
        change.properties.iter().map(|(name, value)| (name.clone(), json!([value, CHANGE_PROPERTY_SOURCE]))).collect();
    Value::Object(properties)
}
