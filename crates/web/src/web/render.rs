//! Resources as Buildbot's data API shows them: field names, epoch-second times (null when absent), booleans.

use serde_json::{json, Value};

use crate::config::{BuilderDef, ForceSchedulerDef};
use crate::master::Master;
use crate::store::{Build, BuildRequest, Buildset, Change, Log, Property, Resource, SourceStamp, Step, Worker};

/// A store resource the API lists, with its JSON: the fields the store declares ([`Resource::FIELDS`]), and for
/// some what the master adds.
pub(super) trait ApiResource: Resource {
    fn to_json(&self, _master: &Master) -> Value {
        Value::Object(self.fields_json())
    }
}

impl ApiResource for Build {}
impl ApiResource for BuildRequest {}
impl ApiResource for Buildset {}
impl ApiResource for Change {}
impl ApiResource for Step {}
impl ApiResource for Log {}

impl ApiResource for Worker {
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
        let mut json = self.fields_json();
        json.insert("workerinfo".into(), workerinfo);
        json.insert("connected_to".into(), Value::Array(connected_to));
        json.insert("configured_on".into(), Value::Array(configured_on));
        Value::Object(json)
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
