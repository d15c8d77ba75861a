//! Control actions: `POST` JSON-RPC 2.0 on a resource (`{"jsonrpc":"2.0","method":..,"params":{..},"id":N}`),
//! answered `{"jsonrpc":"2.0","result":..,"id":N}` or `{"jsonrpc":"2.0","error":{"code":..,"message":..},"id":N}`.
//!
//! builds: `stop`, `rebuild`; buildrequests: `cancel`; forceschedulers: `force`; workers: `pause`, `unpause`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::master::{ActionError, Master, Submitted};

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
            | ActionError::UnknownWorker(_) => RpcError::not_found(message),
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

/// Runs `call`'s method with `action` and answers with its result or error.
async fn answer<F, Fut>(body: &[u8], action: F) -> Reply
where
    F: FnOnce(String, Map<String, Value>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, RpcError>>,
{
    let call = match parse(body) {
        Ok(call) => call,
        Err(reply) => return reply,
    };
    match action(call.method, call.params).await {
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

/// `POST /builds/{id}`: `stop` (params `reason`, ignored for now) or `rebuild`.
pub(super) async fn build(State(m): State<Master>, Path(b): Path<String>, body: Bytes) -> Reply {
    answer(&body, |method, _params| async move {
        let buildid = path_id(&b, "build")?;
        match method.as_str() {
            "stop" => {
                if m.store().build(buildid).await?.is_none() {
                    return Err(ActionError::UnknownBuild(buildid).into());
                }
                m.stop_build(buildid)?;
                Ok(Value::Null)
            }
            "rebuild" => Ok(submitted(m.rebuild(buildid).await?)),
            other => Err(no_method("builds", other, "stop, rebuild")),
        }
    })
    .await
}

/// `POST /buildrequests/{id}`: `cancel`.
pub(super) async fn buildrequest(State(m): State<Master>, Path(r): Path<String>, body: Bytes) -> Reply {
    answer(&body, |method, _params| async move {
        let brid = path_id(&r, "build request")?;
        match method.as_str() {
            "cancel" => {
                m.cancel_request(brid).await?;
                Ok(Value::Null)
            }
            other => Err(no_method("buildrequests", other, "cancel")),
        }
    })
    .await
}

/// `POST /forceschedulers/{name}`: `force` with `builderid` (one of the scheduler's builders, by id or name;
/// all of them without) and the values of the scheduler's form (see `schedulers::force`); a value the form
/// refuses is an "invalid params" error (400) naming the parameter.
pub(super) async fn forcescheduler(State(m): State<Master>, Path(name): Path<String>, body: Bytes) -> Reply {
    answer(&body, |method, mut params| async move {
        if method != "force" {
            return Err(no_method("forceschedulers", &method, "force"));
        }
        let builder = match params.remove("builderid") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(builder_name(&m, &text)?),
            Some(Value::Number(n)) => Some(builder_name(&m, &n.to_string())?),
            Some(_) => return Err(RpcError::params("parameter 'builderid': must be a builder id or name")),
        };
        let s = m.force(&name, builder.as_deref(), &params).await?;
        Ok(submitted(s))
    })
    .await
}

/// `POST /workers/{id or name}`: `pause` (params `reason`) and `unpause`, as Buildbot's worker control actions.
pub(super) async fn worker(State(m): State<Master>, Path(w): Path<String>, body: Bytes) -> Reply {
    answer(&body, |method, params| async move {
        let name = worker_name(&m, &w).await?;
        match method.as_str() {
            "pause" => {
                let reason = params.get("reason").and_then(Value::as_str);
                m.pause_worker(&name, reason).await?;
                Ok(Value::Null)
            }
            "unpause" => {
                m.unpause_worker(&name).await?;
                Ok(Value::Null)
            }
            other => Err(no_method("workers", other, "pause, unpause")),
        }
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
