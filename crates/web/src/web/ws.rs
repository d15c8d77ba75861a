//! `/ws`: Buildbot 4.3.0's WebSocket protocol (`www/ws.py`), so Buildbot-style clients can follow a master.
//!
//! The client sends JSON commands `{"cmd": C, "_id": N, ...}`: `startConsuming` and `stopConsuming` with a
//! `path` (a routing-key pattern, `*` for one segment), and `ping`. Each gets one reply, shaped and worded as
//! Buildbot's: `{"msg":"OK","code":200,"_id":N}`, `{"msg":"pong","code":200,"_id":N}`, or
//! `{"error":"...","code":400|404,"_id":N}`. While a path is consumed, every event published under a matching
//! routing key comes as `{"k": key, "m": resource}`, the resource read from the store and rendered as the REST
//! API renders it (`GET /api/v2/builds/2` for `builds/2/new`).
//!
//! A connection reads the bus only as fast as the client takes its messages; a client that falls more than the
//! bus's buffer behind is closed (code 1008, "fell behind"), and reconnects and re-reads the store, as
//! Buildbot's UI does after any disconnection. Nothing queues up in the master.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::handlers::find;
use super::render::{self, ApiResource};
use super::ApiError;
use crate::events::{key_matches, Event, Published, Subscription};
use crate::master::Master;
use crate::store::{Build, BuildRequest, Buildset, Change, FilterValue, Log, Step, Worker};

/// Commands are a few dozen bytes; a larger frame is refused.
const MAX_FRAME: usize = 64 * 1024;
/// The socket's read buffer (the default is 128 KiB per connection).
const READ_BUFFER: usize = 8 * 1024;

/// `GET /ws`: upgrades to a WebSocket speaking Buildbot's protocol.
pub(super) async fn ws(State(master): State<Master>, mut request: Request) -> Response {
    let accept = match handshake_key(request.headers()) {
        Ok(key) => derive_accept_key(key.as_bytes()),
        Err(message) => return ApiError { status: StatusCode::UPGRADE_REQUIRED, message }.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        let message = "this connection cannot be upgraded".to_string();
        return ApiError { status: StatusCode::BAD_REQUEST, message }.into_response();
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).max_message_size(Some(MAX_FRAME));
                let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                serve(master, socket).await;
            }
            Err(e) => tracing::debug!(error = %e, "/ws: the upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// The client's `Sec-WebSocket-Key` if the request is a WebSocket handshake (RFC 6455 §4.2.1).
fn handshake_key(headers: &HeaderMap) -> Result<String, String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err("/ws is a WebSocket: connect with 'Connection: Upgrade' and 'Upgrade: websocket'".into());
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err("/ws speaks WebSocket version 13 only".into());
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| "a WebSocket handshake needs a Sec-WebSocket-Key".into())
}

/// Serves one connection until the client leaves, falls behind, or the master stops.
async fn serve<S>(master: Master, socket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut frames) = socket.split();
    let mut consumer = Consumer::with_bus(master.store().events().clone());
    let stop = master.stopping().clone();
    let close = |code: CloseCode, reason: String| Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    loop {
        let outgoing: Vec<Message> = tokio::select! {
            () = stop.cancelled() => vec![close(CloseCode::Away, "the master is stopping".into())],
            frame = frames.next() => match frame {
                Some(Ok(Message::Text(text))) => vec![Message::text(consumer.command(text.as_str()))],
                Some(Ok(Message::Binary(data))) => {
                    vec![Message::text(consumer.command(&String::from_utf8_lossy(&data)))]
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Vec::new(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            received = next_event(&mut consumer.events) => match received {
                Ok(Some(published)) => {
                    consumer.deliver(&master, &published).await.into_iter().map(Message::text).collect()
                }
                Ok(None) => break,
                Err(lagged) => vec![close(CloseCode::Policy, format!("fell behind: {lagged}; reconnect"))],
            },
        };
        for message in outgoing {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                let _ = sink.close().await;
                return;
            }
        }
    }
    let _ = sink.close().await;
}

/// The next event of `events`, or never when nothing is consumed.
async fn next_event(
    events: &mut Option<Subscription>,
) -> Result<Option<std::sync::Arc<Published>>, crate::events::Lagged> {
    match events {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

/// One connection's consumed paths, in the order they were started, and its subscription while there are any.
#[derive(Debug, Default)]
struct Consumer {
    paths: Vec<String>,
    events: Option<Subscription>,
    /// The bus to subscribe to; `None` only in tests of the command parser.
    bus: Option<crate::events::EventBus>,
}

impl Consumer {
    fn with_bus(bus: crate::events::EventBus) -> Consumer {
        Consumer { bus: Some(bus), ..Consumer::default() }
    }

    /// Carries out one frame's command and gives the reply, as Buildbot's `WsProtocol.onMessage`.
    fn command(&mut self, frame: &str) -> String {
        let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(frame) else {
            // Buildbot fails on such a frame without a reply; a reply says what is wrong.
            return error("invalid frame: not a JSON object", 400, &Value::Null);
        };
        let id = frame.get("_id").cloned().unwrap_or(Value::Null);
        let kind = frame.remove("type");
        if id.is_null() && kind.as_ref().is_none_or(Value::is_null) {
            return error("no '_id' or 'type' in websocket frame", 400, &Value::Null);
        }
        let Some(cmd) = frame.remove("cmd").filter(|c| !c.is_null()) else {
            return error("no 'cmd' in websocket frame", 400, &Value::Null);
        };
        let cmd = py_str(&cmd);
        let params: &[&str] = match cmd.as_str() {
            "startConsuming" | "stopConsuming" => &["path", "_id"],
            "ping" => &["_id"],
            _ => return error(&format!("no such command type '{cmd}'"), 404, &id),
        };
        if let Err(e) = arguments(&format!("WsProtocol.cmd_{cmd}()"), params, &frame) {
            return error(&format!("Invalid method argument '{e}'"), 400, &id);
        }
        let path = frame.get("path").cloned().unwrap_or(Value::Null);
        match (cmd.as_str(), path) {
            ("ping", _) => reply("pong", &id),
            (_, Value::String(path)) if cmd == "startConsuming" => {
                if !self.paths.contains(&path) {
                    self.paths.push(path);
                    if self.events.is_none() {
                        self.events = self.bus.as_ref().map(|bus| bus.subscribe());
                    }
                }
                reply("OK", &id)
            }
            (_, Value::String(path)) => match self.paths.iter().position(|p| *p == path) {
                Some(index) => {
                    self.paths.remove(index);
                    if self.paths.is_empty() {
                        self.events = None;
                    }
                    reply("OK", &id)
                }
                None => error(&format!("path was not consumed '{path}'"), 400, &id),
            },
            (_, path) => error(&format!("invalid path format '{}'", py_str(&path)), 400, &id),
        }
    }

    /// The messages of one event: one per consumed path and matching routing key, as Buildbot's queue delivers
    /// an event to each consumer whose pattern matches each key it is published under. The resource is read
    /// only when a consumed path may match.
    async fn deliver(&self, master: &Master, published: &Published) -> Vec<String> {
        let event = &published.event;
        let roots = roots(event);
        let may_match = self.paths.iter().any(|p| {
            let first = p.split('/').next().unwrap_or("");
            first == "*" || roots.contains(&first)
        });
        if !may_match {
            return Vec::new();
        }
        let resource = resource(master, event).await;
        let keys = buildbot_keys(event, &resource);
        let text = resource.to_string();
        // Buildbot's queue sends an event key by key, each to every consumer whose pattern matches it.
        keys.iter()
            .flat_map(|k| self.paths.iter().filter(move |p| key_matches(p, k)).map(move |_| k))
            .map(|key| format!(r#"{{"k":{},"m":{text}}}"#, Value::from(key.as_str())))
            .collect()
    }
}

/// The first segments of the keys Buildbot publishes `event` under.
fn roots(event: &Event) -> Vec<&'static str> {
    use Event::*;
    match event {
        BuildStarted { .. } | BuildUpdated { .. } | BuildFinished { .. } => vec!["builders", "builds", "workers"],
        LogAdded { .. } | LogAppended { .. } | LogFinished { .. } => vec!["logs", "steps"],
        BuildRequestAdded { .. }
        | BuildRequestClaimed { .. }
        | BuildRequestUnclaimed { .. }
        | BuildRequestCompleted { .. }
        | BuildRequestCancelled { .. } => vec!["buildsets", "buildrequests", "builders"],
        StepStarted { .. } | StepUpdated { .. } | StepFinished { .. } => vec!["builds", "steps"],
        ChangeAdded { .. } => vec!["changes"],
        BuildsetAdded { .. } | BuildsetCompleted { .. } => vec!["buildsets"],
        WorkerAttached { .. } | WorkerDetached { .. } | WorkerPaused { .. } | WorkerUnpaused { .. } => {
            vec!["workers"]
        }
        MasterStarted { .. } | MasterStopped { .. } => vec!["masters"],
        SchedulerFired { .. } => vec!["schedulers"],
    }
}

/// The routing keys Buildbot 4.3.0 publishes `event` under (its data types' `eventPathPatterns`), completed
/// from the event's `resource`: a build is also under its builder by *number* and under its worker, a log under
/// its step by *slug*, a request also under its builder. The others are the bus's own keys.
fn buildbot_keys(event: &Event, resource: &Value) -> Vec<String> {
    use Event::*;
    let keys = event.keys();
    let verb = keys.first().and_then(|k| k.rsplit('/').next()).unwrap_or("").to_string();
    let field = |name: &str| resource.get(name).map(|v| v.to_string().trim_matches('"').to_string());
    match event {
        BuildStarted { buildid, builderid, .. }
        | BuildUpdated { buildid, builderid, .. }
        | BuildFinished { buildid, builderid, .. } => {
            let mut keys = Vec::new();
            if let Some(number) = field("number") {
                keys.push(format!("builders/{builderid}/builds/{number}/{verb}"));
            }
            keys.push(format!("builds/{buildid}/{verb}"));
            if let Some(workerid) = field("workerid").filter(|w| w != "null") {
                keys.push(format!("workers/{workerid}/builds/{buildid}/{verb}"));
            }
            keys
        }
        LogAdded { logid, stepid } | LogAppended { logid, stepid, .. } | LogFinished { logid, stepid, .. } => {
            let mut keys = vec![format!("logs/{logid}/{verb}")];
            if let Some(slug) = field("slug") {
                keys.push(format!("steps/{stepid}/logs/{slug}/{verb}"));
            }
            keys
        }
        BuildRequestAdded { brid, bsid, builderid }
        | BuildRequestClaimed { brid, bsid, builderid, .. }
        | BuildRequestUnclaimed { brid, bsid, builderid }
        | BuildRequestCompleted { brid, bsid, builderid, .. }
        | BuildRequestCancelled { brid, bsid, builderid } => vec![
            format!("buildsets/{bsid}/builders/{builderid}/buildrequests/{brid}/{verb}"),
            format!("buildrequests/{brid}/{verb}"),
            format!("builders/{builderid}/buildrequests/{brid}/{verb}"),
        ],
        _ => keys,
    }
}

/// Checks a command's arguments the way Python checks a call's keywords, with its words.
fn arguments(function: &str, params: &[&str], frame: &Map<String, Value>) -> Result<(), String> {
    if let Some(extra) = frame.keys().find(|k| !params.contains(&k.as_str())) {
        return Err(format!("{function} got an unexpected keyword argument '{extra}'"));
    }
    let missing: Vec<String> = params.iter().filter(|p| !frame.contains_key(**p)).map(|p| format!("'{p}'")).collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("{function} missing 1 required positional argument: {one}")),
        [first, second] => Err(format!("{function} missing 2 required positional arguments: {first} and {second}")),
        _ => Err(format!("{function} missing {} required positional arguments", missing.len())),
    }
}

/// `{"msg": msg, "code": 200, "_id": id}`, keys in Buildbot's order.
fn reply(msg: &str, id: &Value) -> String {
    format!(r#"{{"msg":{},"code":200,"_id":{id}}}"#, Value::from(msg))
}

/// `{"error": error, "code": code, "_id": id}`, keys in Buildbot's order.
fn error(error: &str, code: u16, id: &Value) -> String {
    format!(r#"{{"error":{},"code":{code},"_id":{id}}}"#, Value::from(error))
}

/// A JSON value as Python's `str()` shows what `json.loads` made of it (for messages that quote a value).
fn py_str(value: &Value) -> String {
    fn repr(value: &Value) -> String {
        match value {
            Value::String(s) => format!("'{s}'"),
            other => py_str(other),
        }
    }
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!("{{{}}}", map.iter().map(|(k, v)| format!("'{k}': {}", repr(v))).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The resource an event is about, as the REST API renders it; the event's own fields when the resource is
/// gone or cannot be read.
async fn resource(master: &Master, event: &Event) -> Value {
    use Event::*;
    let found = match event {
        ChangeAdded { changeid } => rendered::<Change>(master, "changeid", *changeid).await,
        BuildsetAdded { bsid } | BuildsetCompleted { bsid, .. } => {
            match (rendered::<Buildset>(master, "bsid", *bsid).await, master.store().buildset_sourcestamps(*bsid).await)
            {
                (Some(mut buildset), Ok(stamps)) => {
                    buildset["sourcestamps"] = render::sourcestamps(&stamps);
                    Some(buildset)
                }
                (buildset, _) => buildset,
            }
        }
        BuildRequestAdded { brid, .. }
        | BuildRequestClaimed { brid, .. }
        | BuildRequestUnclaimed { brid, .. }
        | BuildRequestCompleted { brid, .. }
        | BuildRequestCancelled { brid, .. } => rendered::<BuildRequest>(master, "buildrequestid", *brid).await,
        BuildStarted { buildid, .. } | BuildUpdated { buildid, .. } | BuildFinished { buildid, .. } => {
            // Buildbot's build messages carry an empty `properties` (the REST API adds them on request).
            rendered::<Build>(master, "buildid", *buildid).await.map(|mut build| {
                build["properties"] = json!({});
                build
            })
        }
        StepStarted { stepid, .. } | StepUpdated { stepid, .. } | StepFinished { stepid, .. } => {
            rendered::<Step>(master, "stepid", *stepid).await
        }
        LogAdded { logid, .. } | LogAppended { logid, .. } | LogFinished { logid, .. } => {
            rendered::<Log>(master, "logid", *logid).await
        }
        WorkerAttached { workerid, .. }
        | WorkerDetached { workerid, .. }
        | WorkerPaused { workerid, .. }
        | WorkerUnpaused { workerid, .. } => rendered::<Worker>(master, "workerid", *workerid).await,
        MasterStarted { masterid, name } | MasterStopped { masterid, name } => Some(json!({
            "masterid": masterid,
            "name": name,
            "active": matches!(event, MasterStarted { .. }),
            "last_active": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })),
        SchedulerFired { .. } => None,
    };
    found.unwrap_or_else(|| {
        let mut fields = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
        if let Some(object) = fields.as_object_mut() {
            object.remove("event");
        }
        fields
    })
}

/// The `R` whose `field` is `id`, rendered; `None` if there is none or the store fails (logged).
async fn rendered<R: ApiResource>(master: &Master, field: &str, id: i64) -> Option<Value> {
    match find::<R>(master, vec![(field, FilterValue::Int(id))]).await {
        Ok(found) => found.map(|r| r.to_json(master)),
        Err(e) => {
            tracing::warn!(what = R::WHAT, id, error = ?e, "/ws: could not read the resource of an event");
            None
        }
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
