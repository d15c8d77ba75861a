//! Control actions: `POST` JSON-RPC 2.0 on a resource (`{"jsonrpc":"2.0","method":..,"params":{..},"id":N}`),
//! answered `{"jsonrpc":"2.0","result":..,"id":N}` or `{"jsonrpc":"2.0","error":{"code":..,"message":..},"id":N}`.
//!
//! builds: `stop`, `rebuild`; buildrequests: `cancel`; forceschedulers: `force`; workers: `pause`, `unpause`.
//!
//! Every call is checked before it acts ([`super::auth::control`]: an `application/json` body from the master's
//! own origin, a user, the CSRF token of a session), then the rules decide whether the user may take the action
//! on its target (401 without a user, 403 when refused: nothing changes), and what was done is recorded in the
//! audit with who, when and from where.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::auth::{control, Viewer};
use crate::auth::{decide, Target, User, Via};
use crate::config::Action;
use crate::master::{ActionError, Master, Submitted};
use crate::store::NewAuditEntry;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC answer with its HTTP status.
pub(super) struct Reply {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// An error of a call whose `id` is known (null before the request is parsed).
struct RpcError {
    status: StatusCode,
    code: i64,
    message: String,
}

impl RpcError {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> RpcError {
        RpcError { status, code, message: message.into() }
    }

    fn params(message: impl Into<String>) -> RpcError {
        RpcError::new(StatusCode::BAD_REQUEST, INVALID_PARAMS, message)
    }

    fn not_found(message: impl Into<String>) -> RpcError {
        RpcError::new(StatusCode::NOT_FOUND, INVALID_REQUEST, message)
    }

    fn reply(self, id: Value) -> Reply {
        Reply {
            status: self.status,
            body: json!({ "jsonrpc": "2.0", "error": { "code": self.code, "message": self.message }, "id": id }),
        }
    }
}

impl From<ActionError> for RpcError {
    fn from(e: ActionError) -> RpcError {
        let message = e.to_string();
        match e {
            ActionError::UnknownBuilder(_)
            | ActionError::UnknownScheduler(_)
            | ActionError::UnknownBuild(_)
            | ActionError::UnknownRequest(_)
            | ActionError::UnknownWorker(_)
            | ActionError::NoScheduler(_) => RpcError::not_found(message),
            ActionError::SchedulerDisabled(_) => RpcError::new(StatusCode::CONFLICT, INVALID_REQUEST, message),
            ActionError::NotRunning(_) => RpcError::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message),
            ActionError::InvalidParameter(_) => RpcError::params(message),
            ActionError::Store(_) => {
                tracing::error!(error = %message, "web API: action failed");
                RpcError::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR, message)
            }
        }
    }
}

impl From<crate::store::StoreError> for RpcError {
    fn from(e: crate::store::StoreError) -> RpcError {
        ActionError::Store(e).into()
    }
}

/// A parsed call.
struct Call {
    id: Value,
    method: String,
    params: Map<String, Value>,
}

fn parse(body: &[u8]) -> Result<Call, Reply> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        RpcError::new(StatusCode::BAD_REQUEST, PARSE_ERROR, format!("invalid JSON: {e}")).reply(Value::Null)
    })?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let invalid = |message: &str| RpcError::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message).reply(id.clone());
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("'jsonrpc' must be \"2.0\""));
    }
    let method = value.get("method").and_then(Value::as_str).ok_or_else(|| invalid("'method' must be a string"))?;
    let params = match value.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(invalid("'params' must be an object")),
    };
    Ok(Call { id, method: method.to_string(), params })
}

/// Who is acting: the user, how they were authenticated, from where.
struct Actor {
    user: User,
    via: Via,
    address: String,
}

impl Actor {
    /// Refuses `action` on `target` unless the rules allow it (403, nothing done).
    fn may(&self, m: &Master, action: Action, target: &Target<'_>) -> Result<(), RpcError> {
        decide(&m.config().auth.rules, &self.user, action, target)
            .map_err(|why| RpcError::new(StatusCode::FORBIDDEN, INVALID_REQUEST, why))
    }

    /// Records what was done; a failure to record is logged (the action is done already).
    async fn record(&self, m: &Master, mut entry: NewAuditEntry) {
        entry.username = self.user.name.clone();
        entry.how = self.via.name().to_string();
        entry.address = self.address.clone();
        tracing::info!(user = %entry.username, action = %entry.action, address = %entry.address, "control action");
        if let Err(e) = m.store().add_audit(&entry).await {
            tracing::error!(error = %e, "cannot record a control action in the audit");
        }
    }
}

/// Checks the request ([`control`]), then runs the call's method with `action` and answers with its result or
/// error.
async fn answer<F, Fut>(m: &Master, viewer: &Viewer, headers: &HeaderMap, body: &[u8], action: F) -> Reply
where
    F: FnOnce(Actor, String, Map<String, Value>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, RpcError>>,
{
    let call = match parse(body) {
        Ok(call) => call,
        Err(reply) => {
            if let Err(refused) = control(&m.config(), viewer, headers, true) {
                return RpcError::new(refused.status, INVALID_REQUEST, refused.message).reply(Value::Null);
            }
            return reply;
        }
    };
    let (user, via) = match control(&m.config(), viewer, headers, true) {
        Ok(found) => found,
        Err(refused) => return RpcError::new(refused.status, INVALID_REQUEST, refused.message).reply(call.id),
    };
    let address = viewer.address.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    let actor = Actor { user, via, address };
    match action(actor, call.method, call.params).await {
        Ok(result) => {
            Reply { status: StatusCode::OK, body: json!({ "jsonrpc": "2.0", "result": result, "id": call.id }) }
        }
        Err(e) => e.reply(call.id),
    }
}

fn no_method(resource: &str, method: &str, known: &str) -> RpcError {
    RpcError::new(
        StatusCode::BAD_REQUEST,
        METHOD_NOT_FOUND,
        format!("no method '{method}' on {resource} (known: {known})"),
    )
}

fn path_id(text: &str, what: &str) -> Result<i64, RpcError> {
    text.parse().map_err(|_| RpcError::not_found(format!("no {what} '{text}'")))
}

/// Buildbot's answer to a buildset submission: `[bsid, {"<builderid>": brid, ...}]`.
fn submitted(s: Submitted) -> Value {
    let requests: Map<String, Value> = s.requests.into_iter().map(|(b, r)| (b.to_string(), json!(r))).collect();
    json!([s.buildsetid, requests])
}

/// The name and tags of the builder with id `builderid`.
fn builder_of(m: &Master, builderid: i64) -> (Option<String>, Vec<String>) {
    m.config()
        .builders
        .iter()
        .find(|b| m.builder_id(&b.name) == Some(builderid))
        .map_or((None, Vec::new()), |b| (Some(b.name.clone()), b.tags.clone()))
}

fn tags_of(m: &Master, builder: &str) -> Vec<String> {
    m.config().builders.iter().find(|b| b.name == builder).map(|b| b.tags.clone()).unwrap_or_default()
}

/// The `owner` property of a build's or buildset's properties.
fn owner_in(properties: &[crate::store::Property]) -> Option<String> {
    properties.iter().find(|p| p.name == "owner").and_then(|p| p.value.as_str()).map(str::to_string)
}

/// `POST /builds/{id}`: `stop` (params `reason`, recorded in the audit) or `rebuild`.
pub(super) async fn build(
    State(m): State<Master>,
    Path(b): Path<String>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    answer(&m.clone(), &viewer, &headers, &body, |actor, method, params| async move {
        let buildid = path_id(&b, "build")?;
        let action = match method.as_str() {
            "stop" => Action::Stop,
            "rebuild" => Action::Rebuild,
            other => return Err(no_method("builds", other, "stop, rebuild")),
        };
        let build = m.store().build(buildid).await?.ok_or(ActionError::UnknownBuild(buildid))?;
        let (builder, tags) = builder_of(&m, build.builderid);
        // The owner is the buildset's (who forced it), stored before the build started.
        let request = m.store().build_request(build.buildrequestid).await?;
        let owner = match request {
            Some(request) => owner_in(&m.store().buildset_properties(request.buildsetid).await?),
            None => None,
        };
        let owner = match owner {
            Some(owner) => Some(owner),
            None => owner_in(&m.store().build_properties(buildid).await?),
        };
        actor.may(&m, action, &Target { builder: builder.as_deref(), tags: &tags, owner: owner.as_deref() })?;
        let mut entry = NewAuditEntry {
            action: action.name().to_string(),
            builder,
            buildid: Some(buildid),
            buildrequestid: Some(build.buildrequestid),
            detail: params.get("reason").and_then(Value::as_str).map(str::to_string),
            ..NewAuditEntry::default()
        };
        let result = match action {
            Action::Stop => {
                m.stop_build(buildid)?;
                Value::Null
            }
            _ => {
                let s = m.rebuild(buildid, Some(&actor.user.name)).await?;
                entry.buildsetid = Some(s.buildsetid);
                submitted(s)
            }
        };
        actor.record(&m, entry).await;
        Ok(result)
    })
    .await
}

/// `POST /buildrequests/{id}`: `cancel`.
pub(super) async fn buildrequest(
    State(m): State<Master>,
    Path(r): Path<String>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    answer(&m.clone(), &viewer, &headers, &body, |actor, method, params| async move {
        let brid = path_id(&r, "build request")?;
        if method != "cancel" {
            return Err(no_method("buildrequests", &method, "cancel"));
        }
        let request = m.store().build_request(brid).await?.ok_or(ActionError::UnknownRequest(brid))?;
        let (builder, tags) = builder_of(&m, request.builderid);
        let owner = owner_in(&m.store().buildset_properties(request.buildsetid).await?);
        let target = Target { builder: builder.as_deref(), tags: &tags, owner: owner.as_deref() };
        actor.may(&m, Action::Cancel, &target)?;
        m.cancel_request(brid).await?;
        let entry = NewAuditEntry {
            action: Action::Cancel.name().to_string(),
            builder,
            buildrequestid: Some(brid),
            buildsetid: Some(request.buildsetid),
            detail: params.get("reason").and_then(Value::as_str).map(str::to_string),
            ..NewAuditEntry::default()
        };
        actor.record(&m, entry).await;
        Ok(Value::Null)
    })
    .await
}

/// `POST /forceschedulers/{name}`: `force` with `builderid` (one of the scheduler's builders, by id or name;
/// all of them without) and the values of the scheduler's form (see `schedulers::force`); a value the form
/// refuses is an "invalid params" error (400) naming the parameter. The user may force only if the rules allow
/// it on every builder the call starts; the builds' owner is the user.
pub(super) async fn forcescheduler(
    State(m): State<Master>,
    Path(name): Path<String>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    answer(&m.clone(), &viewer, &headers, &body, |actor, method, mut params| async move {
        if method != "force" {
            return Err(no_method("forceschedulers", &method, "force"));
        }
        let builder = match params.remove("builderid") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(builder_name(&m, &text)?),
            Some(Value::Number(n)) => Some(builder_name(&m, &n.to_string())?),
            Some(_) => return Err(RpcError::params("parameter 'builderid': must be a builder id or name")),
        };
        let config = m.config();
        let scheduler = config.force_schedulers.iter().find(|s| s.name == name);
        let scheduler = scheduler.ok_or_else(|| ActionError::UnknownScheduler(name.clone()))?;
        let targets: Vec<String> = match &builder {
            Some(b) => vec![b.clone()],
            None => scheduler.builders.clone(),
        };
        for target in &targets {
            let tags = tags_of(&m, target);
            actor.may(&m, Action::Force, &Target { builder: Some(target), tags: &tags, owner: None })?;
        }
        params.remove("username");
        params.insert("owner".to_string(), Value::String(actor.user.name.clone()));
        let s = m.force(&name, builder.as_deref(), &params).await?;
        for target in targets {
            let entry = NewAuditEntry {
                action: Action::Force.name().to_string(),
                builder: Some(target),
                buildsetid: Some(s.buildsetid),
                detail: Some(format!("force scheduler {name}")),
                ..NewAuditEntry::default()
            };
            actor.record(&m, entry).await;
        }
        Ok(submitted(s))
    })
    .await
}

/// `POST /workers/{id or name}`: `pause` (params `reason`) and `unpause`, as Buildbot's worker control actions.
pub(super) async fn worker(
    State(m): State<Master>,
    Path(w): Path<String>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    answer(&m.clone(), &viewer, &headers, &body, |actor, method, params| async move {
        let name = worker_name(&m, &w).await?;
        let action = match method.as_str() {
            "pause" => Action::Pause,
            "unpause" => Action::Unpause,
            other => return Err(no_method("workers", other, "pause, unpause")),
        };
        actor.may(&m, action, &Target::default())?;
        let reason = params.get("reason").and_then(Value::as_str);
        match action {
            Action::Pause => m.pause_worker(&name, reason).await?,
            _ => m.unpause_worker(&name).await?,
        }
        let entry = NewAuditEntry {
            action: action.name().to_string(),
            worker: Some(name),
            detail: reason.map(str::to_string),
            ..NewAuditEntry::default()
        };
        actor.record(&m, entry).await;
        Ok(Value::Null)
    })
    .await
}

/// The name of the configured worker with id or name `text`.
async fn worker_name(m: &Master, text: &str) -> Result<String, RpcError> {
    let id: Option<i64> = text.parse().ok();
    for worker in &m.config().workers {
        let matches = match id {
            Some(id) => m.store().find_or_add_worker(&worker.name).await? == id,
            None => worker.name == text,
        };
        if matches {
            return Ok(worker.name.clone());
        }
    }
    Err(RpcError::not_found(format!("no worker '{text}'")))
}

/// The name of the builder with id or name `text`.
fn builder_name(m: &Master, text: &str) -> Result<String, RpcError> {
    let id: Option<i64> = text.parse().ok();
    m.config()
        .builders
        .iter()
        .find(|b| match id {
            Some(id) => m.builder_id(&b.name) == Some(id),
            None => b.name == text,
        })
        .map(|b| b.name.clone())
        .ok_or_else(|| RpcError::not_found(format!("no builder '{text}'")))
}

/// `POST /schedulers/{name}`: `enable` (params `enabled`: true or false), Buildbot's scheduler control; a
/// disabled scheduler submits nothing until enabled again.
pub(super) async fn scheduler(
    State(m): State<Master>,
    Path(name): Path<String>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    answer(&m.clone(), &viewer, &headers, &body, |actor, method, params| async move {
        if method != "enable" {
            return Err(no_method("schedulers", &method, "enable"));
        }
        let enabled = params
            .get("enabled")
            .and_then(Value::as_bool)
            .ok_or_else(|| RpcError::params("parameter 'enabled': true or false is required"))?;
        actor.may(&m, Action::EnableScheduler, &Target::default())?;
        m.set_scheduler_enabled(&name, enabled).await?;
        let entry = NewAuditEntry {
            action: Action::EnableScheduler.name().to_string(),
            detail: Some(format!("{} scheduler '{name}'", if enabled { "enabled" } else { "disabled" })),
            ..NewAuditEntry::default()
        };
        actor.record(&m, entry).await;
        Ok(Value::Null)
    })
    .await
}
