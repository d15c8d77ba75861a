//! Resources as Buildbot's data API shows them: field names, epoch-second times (null when absent), booleans.

use serde_json::{json, Map, Value};

use crate::config::{BuilderDef, ForceSchedulerDef};
use crate::master::Master;
use crate::store::{Build, BuildRequest, Buildset, Change, Log, Property, Resource, SourceStamp, Step, Worker};

/// A store resource the API lists: its collection's name, its singular for messages and its JSON.
pub(super) trait ApiResource: Resource {
    const PLURAL: &'static str;
    const WHAT: &'static str;

    fn to_json(&self, master: &Master) -> Value;
}

impl ApiResource for Build {
    const PLURAL: &'static str = "builds";
    const WHAT: &'static str = "build";

    fn to_json(&self, _: &Master) -> Value {
        json!({
            "buildid": self.id,
            "number": self.number,
            "builderid": self.builderid,
            "buildrequestid": self.buildrequestid,
            "workerid": self.workerid,
            "masterid": self.masterid,
            "started_at": self.started_at,
            "complete_at": self.complete_at,
            "complete": self.complete_at.is_some(),
            "state_string": self.state_string,
            "results": self.results,
        })
    }
}

impl ApiResource for BuildRequest {
    const PLURAL: &'static str = "buildrequests";
    const WHAT: &'static str = "build request";

    fn to_json(&self, _: &Master) -> Value {
        json!({
            "buildrequestid": self.id,
            "buildsetid": self.buildsetid,
            "builderid": self.builderid,
            "priority": self.priority,
            "submitted_at": self.submitted_at,
            "complete": self.complete,
            "results": self.results,
            "complete_at": self.complete_at,
            "waited_for": self.waited_for,
            "claimed": self.claimed_by_masterid.is_some(),
            "claimed_by_masterid": self.claimed_by_masterid,
            "superseded_by": self.superseded_by,
        })
    }
}

impl ApiResource for Buildset {
    const PLURAL: &'static str = "buildsets";
    const WHAT: &'static str = "buildset";

    fn to_json(&self, _: &Master) -> Value {
        json!({
            "bsid": self.id,
            "reason": self.reason,
            "external_idstring": self.external_idstring,
            "submitted_at": self.submitted_at,
            "complete": self.complete,
            "complete_at": self.complete_at,
            "results": self.results,
            "parent_buildid": self.parent_buildid,
            "scheduler": self.scheduler,
        })
    }
}

impl ApiResource for Change {
    const PLURAL: &'static str = "changes";
    const WHAT: &'static str = "change";

    fn to_json(&self, _: &Master) -> Value {
        let properties: Map<String, Value> = self
            .properties
            .iter()
            .map(|(name, value)| (name.clone(), json!([value, crate::store::CHANGE_PROPERTY_SOURCE])))
            .collect();
        json!({
            "changeid": self.id,
            "author": self.author,
            "committer": self.committer,
            "comments": self.comments,
            "files": self.files,
            "revision": self.revision,
            "branch": self.branch,
            "repository": self.repository,
            "project": self.project,
            "codebase": self.codebase,
            "category": self.category,
            "when_timestamp": self.when_timestamp,
            "properties": properties,
            "sourcestamp": {
                "ssid": self.sourcestampid,
                "branch": self.branch,
                "revision": self.revision,
                "repository": self.repository,
                "project": self.project,
                "codebase": self.codebase,
            },
        })
    }
}

impl ApiResource for Step {
    const PLURAL: &'static str = "steps";
    const WHAT: &'static str = "step";

    fn to_json(&self, _: &Master) -> Value {
        json!({
            "stepid": self.id,
            "number": self.number,
            "name": self.name,
            "buildid": self.buildid,
            "started_at": self.started_at,
            "complete_at": self.complete_at,
            "complete": self.complete_at.is_some(),
            "state_string": self.state_string,
            "results": self.results,
            "hidden": self.hidden,
            "urls": [],
        })
    }
}

impl ApiResource for Log {
    const PLURAL: &'static str = "logs";
    const WHAT: &'static str = "log";

    fn to_json(&self, _: &Master) -> Value {
        json!({
            "logid": self.id,
            "name": self.name,
            "slug": self.slug,
            "stepid": self.stepid,
            "complete": self.complete,
            "num_lines": self.num_lines,
            "type": self.log_type,
        })
    }
}

impl ApiResource for Worker {
    const PLURAL: &'static str = "workers";
    const WHAT: &'static str = "worker";

    /// The info of a connected worker is what it sent at connection (without its environment); otherwise what
    /// the store kept.
    fn to_json(&self, master: &Master) -> Value {
        let connection = master.workers().connected(&self.name).filter(|c| !c.is_closed());
        let workerinfo = match &connection {
            Some(conn) => Value::Object(conn.info_json()),
            None => serde_json::from_str(&self.info).unwrap_or_else(|_| json!({})),
        };
        let connected_to: Vec<Value> = connection.iter().map(|_| json!({ "masterid": master.masterid() })).collect();
        let configured_on: Vec<Value> = master
            .config()
            .builders
            .iter()
            .filter(|b| b.workers.contains(&self.name))
            .filter_map(|b| master.builder_id(&b.name))
            .map(|builderid| json!({ "builderid": builderid, "masterid": master.masterid() }))
            .collect();
        json!({
            "workerid": self.id,
            "name": self.name,
            "workerinfo": workerinfo,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "graceful": false,
            "connected_to": connected_to,
            "configured_on": configured_on,
        })
    }
}

/// A builder from the config, with its store id.
pub(super) fn builder(master: &Master, builderid: i64, def: &BuilderDef) -> Value {
    json!({
        "builderid": builderid,
        "name": def.name,
        "description": def.description,
        "tags": def.tags,
        "masterids": [master.masterid()],
    })
}

/// The fields of builders that can be filtered and ordered by.
pub(super) const BUILDER_FIELDS: &[&str] = &["builderid", "name", "description"];

/// A force scheduler from the config.
pub(super) fn forcescheduler(def: &ForceSchedulerDef) -> Value {
    json!({
        "name": def.name,
        "builder_names": def.builders,
        "label": def.label,
        "button_name": def.label,
        "enabled": true,
        "all_fields": crate::schedulers::force::spec(def),
    })
}

/// The fields of force schedulers that can be filtered and ordered by.
pub(super) const FORCESCHEDULER_FIELDS: &[&str] = &["name", "label"];

/// A buildset's source stamps as Buildbot shows them (without their ids, which the store does not return).
pub(super) fn sourcestamps(sourcestamps: &[SourceStamp]) -> Value {
    sourcestamps
        .iter()
        .map(|ss| {
            json!({
                "branch": ss.branch,
                "revision": ss.revision,
                "repository": ss.repository,
                "project": ss.project,
                "codebase": ss.codebase,
            })
        })
        .collect()
}

/// Properties as Buildbot shows them: one object, name → `[value, source]`.
pub(super) fn properties(props: &[Property]) -> Value {
    Value::Object(props.iter().map(|p| (p.name.clone(), json!([p.value, p.source]))).collect())
}
