//! `GET` handlers of the resources: each parses its path and parameters, asks the store (or the config) once,
//! and renders `{"<plural>": [...], "meta": {"total": N}}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::params::{Params, Spec};
use super::render::{self, ApiResource};
use super::ApiError;
use crate::config::BuilderDef;
use crate::master::Master;
use crate::store::{Build, BuildRequest, Buildset, Change, FilterValue, ListQuery, Log, Op, Step, Worker};

type ApiResult = Result<Json<Value>, ApiError>;

/// A count of in-memory items as the API's `total`.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn page(plural: &str, items: Vec<Value>, total: i64) -> Json<Value> {
    Json(json!({ plural: items, "meta": { "total": total } }))
}

/// A path filter: `field = value`, on a field the code names (so an unknown one is a bug, not a bad request).
fn fixed<R: ApiResource>(query: &mut ListQuery<R>, field: &str, value: FilterValue) -> Result<(), ApiError> {
    query
        .filter(field, Op::Eq, vec![value])
        .map(|_| ())
        .map_err(|e| ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("{}: {e}", R::PLURAL) })
}

/// The collection of `R` that the path's `filters` and the query's parameters select.
async fn list<R: ApiResource>(master: &Master, params: &Params, filters: Vec<(&str, FilterValue)>) -> ApiResult {
    let spec = Spec::parse(params)?;
    let mut query = spec.query::<R>()?;
    for (field, value) in filters {
        fixed(&mut query, field, value)?;
    }
    let found = master.store().list(&query).await?;
    let items = found.items.iter().map(|r| spec.select(r.to_json(master))).collect();
    Ok(page(R::PLURAL, items, found.total))
}

/// The first `R` that the path's `filters` select (as a one-element list), or 404 naming `what`.
pub(super) async fn find<R: ApiResource>(
    master: &Master,
    filters: Vec<(&str, FilterValue)>,
) -> Result<Option<R>, ApiError> {
    let mut query = ListQuery::<R>::new();
    for (field, value) in filters {
        fixed(&mut query, field, value)?;
    }
    query.page(Some(1), 0);
    Ok(master.store().list(&query).await?.items.into_iter().next())
}

async fn one<R: ApiResource>(master: &Master, params: &Params, filters: Vec<(&str, FilterValue)>) -> ApiResult {
    let spec = Spec::parse(params)?;
    let described = filters.iter().map(|(f, v)| format!("{f}={}", show(v))).collect::<Vec<_>>().join(", ");
    let found = find::<R>(master, filters)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {} with {described}", R::WHAT)))?;
    Ok(page(R::PLURAL, vec![spec.select(found.to_json(master))], 1))
}

fn show(v: &FilterValue) -> String {
    match v {
        FilterValue::Int(i) => i.to_string(),
        FilterValue::Bool(b) => b.to_string(),
        FilterValue::Text(t) => format!("'{t}'"),
    }
}

/// An id in a path; anything else names no resource.
fn id(text: &str, what: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("no {what} '{text}'")))
}

/// Adds `properties` (`{name: [value, source]}`) to each build of `reply` when the query asks for some with
/// `property=NAME` (repeatable; `*` for all), as Buildbot does.
async fn with_properties(master: &Master, params: &Params, reply: ApiResult) -> ApiResult {
    let Json(mut reply) = with_actors(master, params, reply).await?;
    let spec = Spec::parse(params)?;
    let wanted = spec.properties();
    if wanted.is_empty() {
        return Ok(Json(reply));
    }
    let all = wanted.iter().any(|name| name == "*");
    if let Some(builds) = reply.get_mut("builds").and_then(Value::as_array_mut) {
        for build in builds {
            let Some(buildid) = build.get("buildid").and_then(Value::as_i64) else { continue };
            let mut props = master.store().build_properties(buildid).await?;
            props.retain(|p| all || wanted.contains(&p.name));
            if let Some(object) = build.as_object_mut() {
                object.insert("properties".into(), render::properties(&props));
            }
        }
    }
    Ok(Json(reply))
}

/// Adds who acted on each build of `reply` (from the audit): `stopped_by`, the user who stopped it (null if
/// nobody did). Buildbot's data API has no such field; its build carries only `state_string`.
async fn with_actors(master: &Master, params: &Params, reply: ApiResult) -> ApiResult {
    let Json(mut reply) = reply?;
    if !Spec::parse(params)?.wants("stopped_by") {
        return Ok(Json(reply));
    }
    let Some(builds) = reply.get_mut("builds").and_then(Value::as_array_mut) else { return Ok(Json(reply)) };
    let ids: Vec<i64> = builds.iter().filter_map(|b| b.get("buildid").and_then(Value::as_i64)).collect();
    let stopped = master.store().build_actors(crate::config::Action::Stop.name(), &ids).await?;
    for build in builds.iter_mut() {
        let Some(buildid) = build.get("buildid").and_then(Value::as_i64) else { continue };
        if let Some(object) = build.as_object_mut() {
            object.insert("stopped_by".into(), stopped.get(&buildid).map_or(Value::Null, |u| json!(u)));
        }
    }
    Ok(Json(reply))
}

/// Adds `paused_by` to each worker of `reply`: the user who paused it (from the audit), while it is paused.
async fn with_pausers(master: &Master, params: &Params, reply: ApiResult) -> ApiResult {
    let Json(mut reply) = reply?;
    if !Spec::parse(params)?.wants("paused_by") {
        return Ok(Json(reply));
    }
    let Some(workers) = reply.get_mut("workers").and_then(Value::as_array_mut) else { return Ok(Json(reply)) };
    let names: Vec<String> = workers
        .iter()
        .filter(|w| w.get("paused").and_then(Value::as_bool) == Some(true))
        .filter_map(|w| w.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let paused = master.store().worker_actors(crate::config::Action::Pause.name(), &names).await?;
    for worker in workers.iter_mut() {
        let by = worker.get("name").and_then(Value::as_str).and_then(|n| paused.get(n)).cloned();
        let by = by.filter(|_| worker.get("paused").and_then(Value::as_bool) == Some(true));
        if let Some(object) = worker.as_object_mut() {
            object.insert("paused_by".into(), by.map_or(Value::Null, Value::String));
        }
    }
    Ok(Json(reply))
}

/// A number, or else a name, as a filter on `number_field` or `name_field`.
fn id_or_name<'a>(text: &str, number_field: &'a str, name_field: &'a str) -> (&'a str, FilterValue) {
    match text.parse() {
        Ok(n) => (number_field, FilterValue::Int(n)),
        Err(_) => (name_field, FilterValue::Text(text.to_string())),
    }
}

/// The builder named or numbered `text`, with its store id.
fn find_builder(master: &Master, text: &str) -> Result<(i64, BuilderDef), ApiError> {
    let number: Option<i64> = text.parse().ok();
    master
        .config()
        .builders
        .iter()
        .filter_map(|def| master.builder_id(&def.name).map(|id| (id, def)))
        .find(|(id, def)| number.map_or(def.name == text, |n| n == *id))
        .map(|(id, def)| (id, def.clone()))
        .ok_or_else(|| ApiError::not_found(format!("no builder '{text}'")))
}

/// The build of builder `builder` numbered `number`.
async fn builder_build_id(master: &Master, builder: &str, number: &str) -> Result<i64, ApiError> {
    let (builderid, _) = find_builder(master, builder)?;
    let number = id(number, "build number")?;
    let build =
        find::<Build>(master, vec![("builderid", FilterValue::Int(builderid)), ("number", FilterValue::Int(number))])
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no build {number} of builder '{builder}'")))?;
    Ok(build.id)
}

/// The step `step` (number or name) of build `buildid`.
async fn build_step_id(master: &Master, buildid: &str, step: &str) -> Result<i64, ApiError> {
    let buildid = id(buildid, "build")?;
    let by = id_or_name(step, "number", "name");
    let step_row = find::<Step>(master, vec![("buildid", FilterValue::Int(buildid)), by])
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no step '{step}' in build {buildid}")))?;
    Ok(step_row.id)
}

pub(super) async fn builders(State(m): State<Master>, params: Params) -> ApiResult {
    let spec = Spec::parse(&params)?;
    let all = m
        .config()
        .builders
        .iter()
        .filter_map(|def| m.builder_id(&def.name).map(|id| render::builder(&m, id, def)))
        .collect();
    let (items, total) = spec.apply(all, render::BUILDER_FIELDS)?;
    Ok(page("builders", items.into_iter().map(|i| spec.select(i)).collect(), count(total)))
}

pub(super) async fn builder(State(m): State<Master>, Path(b): Path<String>, params: Params) -> ApiResult {
    let spec = Spec::parse(&params)?;
    let (id, def) = find_builder(&m, &b)?;
    Ok(page("builders", vec![spec.select(render::builder(&m, id, &def))], 1))
}

pub(super) async fn builder_builds(State(m): State<Master>, Path(b): Path<String>, params: Params) -> ApiResult {
    let (builderid, _) = find_builder(&m, &b)?;
    let reply = list::<Build>(&m, &params, vec![("builderid", FilterValue::Int(builderid))]).await;
    with_properties(&m, &params, reply).await
}

pub(super) async fn builder_build(
    State(m): State<Master>,
    Path((b, n)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let buildid = builder_build_id(&m, &b, &n).await?;
    let reply = one::<Build>(&m, &params, vec![("buildid", FilterValue::Int(buildid))]).await;
    with_properties(&m, &params, reply).await
}

pub(super) async fn builder_build_properties(
    State(m): State<Master>,
    Path((b, n)): Path<(String, String)>,
) -> ApiResult {
    let buildid = builder_build_id(&m, &b, &n).await?;
    let props = m.store().build_properties(buildid).await?;
    Ok(page("properties", vec![render::properties(&props)], 1))
}

pub(super) async fn builder_build_steps(
    State(m): State<Master>,
    Path((b, n)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let buildid = builder_build_id(&m, &b, &n).await?;
    list::<Step>(&m, &params, vec![("buildid", FilterValue::Int(buildid))]).await
}

pub(super) async fn builder_buildrequests(State(m): State<Master>, Path(b): Path<String>, params: Params) -> ApiResult {
    let (builderid, _) = find_builder(&m, &b)?;
    list::<BuildRequest>(&m, &params, vec![("builderid", FilterValue::Int(builderid))]).await
}

pub(super) async fn builder_forceschedulers(
    State(m): State<Master>,
    Path(b): Path<String>,
    params: Params,
) -> ApiResult {
    let spec = Spec::parse(&params)?;
    let (_, def) = find_builder(&m, &b)?;
    let all = m
        .config()
        .force_schedulers
        .iter()
        .filter(|s| s.builders.contains(&def.name))
        .map(render::forcescheduler)
        .collect();
    let (items, total) = spec.apply(all, render::FORCESCHEDULER_FIELDS)?;
    Ok(page("forceschedulers", items.into_iter().map(|i| spec.select(i)).collect(), count(total)))
}

pub(super) async fn builds(State(m): State<Master>, params: Params) -> ApiResult {
    let reply = list::<Build>(&m, &params, Vec::new()).await;
    with_properties(&m, &params, reply).await
}

pub(super) async fn build(State(m): State<Master>, Path(b): Path<String>, params: Params) -> ApiResult {
    let reply = one::<Build>(&m, &params, vec![("buildid", FilterValue::Int(id(&b, "build")?))]).await;
    with_properties(&m, &params, reply).await
}

pub(super) async fn build_properties(State(m): State<Master>, Path(b): Path<String>) -> ApiResult {
    let buildid = id(&b, "build")?;
    if m.store().build(buildid).await?.is_none() {
        return Err(ApiError::not_found(format!("no build {buildid}")));
    }
    let props = m.store().build_properties(buildid).await?;
    Ok(page("properties", vec![render::properties(&props)], 1))
}

/// The changes a build builds (its buildset's: an on-change scheduler's group, passed on to triggered, dependent and
/// rebuilt buildsets), oldest first, as Buildbot's `/builds/{id}/changes`.
pub(super) async fn build_changes(State(m): State<Master>, Path(b): Path<String>) -> ApiResult {
    let buildid = id(&b, "build")?;
    if m.store().build(buildid).await?.is_none() {
        return Err(ApiError::not_found(format!("no build {buildid}")));
    }
    changes_page(&m, m.store().build_changes(buildid).await?)
}

pub(super) async fn builder_build_changes(State(m): State<Master>, Path((b, n)): Path<(String, String)>) -> ApiResult {
    let buildid = builder_build_id(&m, &b, &n).await?;
    changes_page(&m, m.store().build_changes(buildid).await?)
}

fn changes_page(m: &Master, changes: Vec<Change>) -> ApiResult {
    let total = changes.len() as i64;
    Ok(page("changes", changes.iter().map(|c| c.to_json(m)).collect(), total))
}

pub(super) async fn build_steps(State(m): State<Master>, Path(b): Path<String>, params: Params) -> ApiResult {
    list::<Step>(&m, &params, vec![("buildid", FilterValue::Int(id(&b, "build")?))]).await
}

pub(super) async fn build_step(
    State(m): State<Master>,
    Path((b, s)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let buildid = FilterValue::Int(id(&b, "build")?);
    one::<Step>(&m, &params, vec![("buildid", buildid), id_or_name(&s, "number", "name")]).await
}

pub(super) async fn build_step_logs(
    State(m): State<Master>,
    Path((b, s)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let stepid = build_step_id(&m, &b, &s).await?;
    list::<Log>(&m, &params, vec![("stepid", FilterValue::Int(stepid))]).await
}

pub(super) async fn step(State(m): State<Master>, Path(s): Path<String>, params: Params) -> ApiResult {
    one::<Step>(&m, &params, vec![("stepid", FilterValue::Int(id(&s, "step")?))]).await
}

pub(super) async fn step_logs(State(m): State<Master>, Path(s): Path<String>, params: Params) -> ApiResult {
    list::<Log>(&m, &params, vec![("stepid", FilterValue::Int(id(&s, "step")?))]).await
}

pub(super) async fn step_log(
    State(m): State<Master>,
    Path((s, slug)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let stepid = FilterValue::Int(id(&s, "step")?);
    one::<Log>(&m, &params, vec![("stepid", stepid), ("slug", FilterValue::Text(slug))]).await
}

pub(super) async fn log(State(m): State<Master>, Path(l): Path<String>, params: Params) -> ApiResult {
    one::<Log>(&m, &params, vec![("logid", FilterValue::Int(id(&l, "log")?))]).await
}

pub(super) async fn workers(State(m): State<Master>, params: Params) -> ApiResult {
    with_pausers(&m, &params, list::<Worker>(&m, &params, Vec::new()).await).await
}

pub(super) async fn worker(State(m): State<Master>, Path(w): Path<String>, params: Params) -> ApiResult {
    let reply = one::<Worker>(&m, &params, vec![id_or_name(&w, "workerid", "name")]).await;
    with_pausers(&m, &params, reply).await
}

pub(super) async fn buildrequests(State(m): State<Master>, params: Params) -> ApiResult {
    list::<BuildRequest>(&m, &params, Vec::new()).await
}

pub(super) async fn buildrequest(State(m): State<Master>, Path(r): Path<String>, params: Params) -> ApiResult {
    one::<BuildRequest>(&m, &params, vec![("buildrequestid", FilterValue::Int(id(&r, "build request")?))]).await
}

pub(super) async fn buildrequest_builds(State(m): State<Master>, Path(r): Path<String>, params: Params) -> ApiResult {
    let brid = FilterValue::Int(id(&r, "build request")?);
    let reply = list::<Build>(&m, &params, vec![("buildrequestid", brid)]).await;
    with_properties(&m, &params, reply).await
}

pub(super) async fn buildsets(State(m): State<Master>, params: Params) -> ApiResult {
    with_sourcestamps(&m, list::<Buildset>(&m, &params, Vec::new()).await?).await
}

pub(super) async fn buildset(State(m): State<Master>, Path(b): Path<String>, params: Params) -> ApiResult {
    with_sourcestamps(&m, one::<Buildset>(&m, &params, vec![("bsid", FilterValue::Int(id(&b, "buildset")?))]).await?)
        .await
}

/// Adds Buildbot's `sourcestamps` to each listed buildset that shows its `bsid`.
async fn with_sourcestamps(m: &Master, mut body: Json<Value>) -> ApiResult {
    let Some(items) = body.0.get_mut("buildsets").and_then(Value::as_array_mut) else { return Ok(body) };
    for item in items {
        let Some(bsid) = item.get("bsid").and_then(Value::as_i64) else { continue };
        item["sourcestamps"] = render::sourcestamps(&m.store().buildset_sourcestamps(bsid).await?);
    }
    Ok(body)
}

pub(super) async fn buildset_properties(State(m): State<Master>, Path(b): Path<String>) -> ApiResult {
    let bsid = id(&b, "buildset")?;
    if m.store().buildset(bsid).await?.is_none() {
        return Err(ApiError::not_found(format!("no buildset {bsid}")));
    }
    let props = m.store().buildset_properties(bsid).await?;
    Ok(page("properties", vec![render::properties(&props)], 1))
}

pub(super) async fn changes(State(m): State<Master>, params: Params) -> ApiResult {
    list::<Change>(&m, &params, Vec::new()).await
}

pub(super) async fn change(State(m): State<Master>, Path(c): Path<String>, params: Params) -> ApiResult {
    one::<Change>(&m, &params, vec![("changeid", FilterValue::Int(id(&c, "change")?))]).await
}

pub(super) async fn forceschedulers(State(m): State<Master>, params: Params) -> ApiResult {
    let spec = Spec::parse(&params)?;
    let all = m.config().force_schedulers.iter().map(render::forcescheduler).collect();
    let (items, total) = spec.apply(all, render::FORCESCHEDULER_FIELDS)?;
    Ok(page("forceschedulers", items.into_iter().map(|i| spec.select(i)).collect(), count(total)))
}

pub(super) async fn forcescheduler(State(m): State<Master>, Path(name): Path<String>, params: Params) -> ApiResult {
    let spec = Spec::parse(&params)?;
    let config = m.config();
    let def = config
        .force_schedulers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no force scheduler '{name}'")))?;
    Ok(page("forceschedulers", vec![spec.select(render::forcescheduler(def))], 1))
}
