//! The web server: Buildbot's REST data API under `/api/v2` (GET for resources, JSON-RPC 2.0 POST for actions).
//!
//! Handlers parse the request, call one store or master function and render the result; the only state is the
//! [`Master`] handle, passed explicitly. Collections take Buildbot's query parameters (`limit`, `offset`,
//! `order`, `field`, `<field>[__<op>]=<value>`), and store-backed ones run them in SQL (see
//! [`crate::store::ListQuery`]).

mod ansi;
pub mod auth;
#[cfg(test)]
mod auth_tests;
mod change_hook;
#[cfg(test)]
mod change_hook_tests;
mod events;
mod follow;
mod handlers;
#[cfg(test)]
mod live_tests;
mod login;
mod logs;
mod metrics;
mod notifications;
mod params;
mod queue;
mod render;
#[cfg(test)]
mod render_tests;
mod rpc;
mod search;
mod server;
#[cfg(test)]
mod tests;
mod tokens;
mod ui;
mod ws;

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::master::Master;
use crate::store::StoreError;
pub use params::check_query;

/// The longest URI answered; a longer one is a 414 in JSON. (From 64 KiB on, the `http` crate cannot hold a
/// URI: hyper answers those 414 itself, with an empty body.)
const MAX_URI: usize = 60 * 1024;

/// Serves the web API on `listener` until `stop` is cancelled, within the config's `[web]` timeouts and the
/// master's connection caps (see [`server`]).
pub async fn serve(listener: TcpListener, master: Master, stop: CancellationToken) -> std::io::Result<()> {
    let limits = master.connection_limits().web;
    let header_timeout = master.config().web.header_timeout;
    let tls = master.web_tls();
    server::run(listener, router(master), limits, header_timeout, tls, stop).await
}

/// The web API's routes, on the state `master`.
pub fn router(master: Master) -> Router {
    use handlers as h;
    let config = master.clone();
    let config: crate::auth::ConfigSource = std::sync::Arc::new(move || config.config());
    let gate = std::sync::Arc::new(auth::Gate::new(crate::auth::Auth::new(config, master.store().clone())));
    let counted = metrics::start(&master);
    let timed = axum::middleware::from_fn_with_state(counted.clone(), metrics::track);
    let api = Router::new()
        .route("/", get(root))
        .route("/builders", get(h::builders))
        .route("/builders/{builder}", get(h::builder))
        .route("/builders/{builder}/builds", get(h::builder_builds))
        .route("/builders/{builder}/builds/{number}", get(h::builder_build))
        .route("/builders/{builder}/builds/{number}/steps", get(h::builder_build_steps))
        .route("/builders/{builder}/builds/{number}/properties", get(h::builder_build_properties))
        .route("/builders/{builder}/builds/{number}/changes", get(h::builder_build_changes))
        .route("/builders/{builder}/buildrequests", get(h::builder_buildrequests))
        .route("/builders/{builder}/forceschedulers", get(h::builder_forceschedulers))
        .route("/builds", get(h::builds))
        .route("/builds/{id}", get(h::build).post(rpc::build))
        .route("/builds/{id}/steps", get(h::build_steps))
        .route("/builds/{id}/properties", get(h::build_properties))
        .route("/builds/{id}/changes", get(h::build_changes))
        .route("/builds/{id}/steps/{step}", get(h::build_step))
        .route("/builds/{id}/steps/{step}/logs", get(h::build_step_logs))
        .route("/steps/{id}", get(h::step))
        .route("/steps/{id}/logs", get(h::step_logs))
        .route("/steps/{id}/logs/{slug}", get(h::step_log))
        .route("/logs/{id}", get(h::log))
        .route("/logs/{id}/contents", get(logs::contents))
        .route("/logs/{id}/raw", get(logs::raw))
        .route("/logs/{id}/raw_inline", get(logs::raw_inline))
        .route("/logs/{id}/search", get(search::search))
        .route("/logs/{id}/follow", get(follow::follow))
        .route("/events", get(events::events))
        .route("/workers", get(h::workers))
        .route("/workers/{worker}", get(h::worker).post(rpc::worker))
        .route("/buildrequests", get(h::buildrequests))
        .route("/buildrequests/{id}", get(h::buildrequest).post(rpc::buildrequest))
        .route("/buildrequests/{id}/builds", get(h::buildrequest_builds))
        .route("/buildsets", get(h::buildsets))
        .route("/buildsets/{id}", get(h::buildset))
        .route("/buildsets/{id}/properties", get(h::buildset_properties))
        .route("/changes", get(h::changes))
        .route("/changes/{id}", get(h::change))
        .route("/queue", get(queue::queue))
        .route("/notifications", get(notifications::notifications))
        .route("/forceschedulers", get(h::forceschedulers))
        .route("/forceschedulers/{name}", get(h::forcescheduler).post(rpc::forcescheduler))
        .route("/schedulers/{name}", axum::routing::post(rpc::scheduler))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/audit", get(tokens::audit))
        .route("/me", get(tokens::me))
        .fallback(api_not_found);
    let scrape = Router::new().route("/metrics", get(metrics::scrape)).with_state((master.clone(), counted));
    Router::new()
        .route("/login", get(login::page).post(login::login))
        .route("/logout", axum::routing::post(login::logout))
        .merge(ui::routes())
        .route("/change_hook/{dialect}", change_hook::route())
        .route("/ws", get(ws::ws))
        // `nest` serves the API's root at `/api/v2` only; `/api/v2/` is what the demo and `kiln start` print.
        .route("/api/v2/", get(root))
        .nest("/api/v2", api)
        .route_layer(timed)
        .fallback(not_found)
        .with_state(master)
        .merge(scrape)
        .layer(axum::Extension(gate.clone()))
        .layer(axum::middleware::from_fn_with_state(gate, auth::identify))
        .layer(axum::middleware::map_response(errors_in_json))
        .layer(axum::middleware::from_fn(bounded_uri))
}

/// A URI longer than [`MAX_URI`] is answered 414 before any routing.
async fn bounded_uri(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let length = request.uri().to_string().len();
    if length > MAX_URI {
        let message = format!("the URI is {length} bytes long; at most {MAX_URI} are accepted");
        return ApiError { status: StatusCode::URI_TOO_LONG, message }.into_response();
    }
    next.run(request).await
}

/// Every error is `{"error": message}`: the answers axum makes itself (405 for a method a path does not take,
/// 413 for a body over its limit, 400 or 415 for a body it cannot read) come as plain text and are rewritten.
async fn errors_in_json(response: Response) -> Response {
    let status = response.status();
    let own = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || own {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let (_, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.trim().is_empty() { reason.to_string() } else { format!("{reason}: {}", text.trim()) };
    let mut answer = ApiError { status, message }.into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(axum::http::header::ALLOW, allow);
    }
    answer
}

/// The paths of the API, for `GET /api/v2`.
const ENDPOINTS: &[&str] = &[
    "builders",
    "builders/{builderid_or_name}",
    "builders/{builderid_or_name}/builds",
    "builders/{builderid_or_name}/builds/{number}",
    "builders/{builderid_or_name}/builds/{number}/steps",
    "builders/{builderid_or_name}/builds/{number}/properties",
    "builders/{builderid_or_name}/builds/{number}/changes",
    "builders/{builderid_or_name}/buildrequests",
    "builders/{builderid_or_name}/forceschedulers",
    "builds",
    "builds/{buildid}",
    "builds/{buildid}/steps",
    "builds/{buildid}/properties",
    "builds/{buildid}/changes",
    "builds/{buildid}/steps/{number_or_name}",
    "builds/{buildid}/steps/{number_or_name}/logs",
    "steps/{stepid}",
    "steps/{stepid}/logs",
    "steps/{stepid}/logs/{slug}",
    "logs/{logid}",
    "logs/{logid}/contents",
    "logs/{logid}/raw",
    "logs/{logid}/raw_inline",
    "logs/{logid}/search",
    "logs/{logid}/follow",
    "events",
    "workers",
    "workers/{workerid_or_name}",
    "buildrequests",
    "buildrequests/{buildrequestid}",
    "buildrequests/{buildrequestid}/builds",
    "buildsets",
    "buildsets/{bsid}",
    "buildsets/{bsid}/properties",
    "changes",
    "changes/{changeid}",
    "forceschedulers",
    "forceschedulers/{schedulername}",
    "queue",
    "tokens",
    "tokens/{id}",
    "audit",
    "me",
];

async fn root() -> Json<serde_json::Value> {
    let endpoints: Vec<_> = ENDPOINTS.iter().map(|p| json!({ "path": p })).collect();
    Json(json!({ "api_version": 2, "endpoints": endpoints }))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource at {}", uri.path()))
}

/// Inside the nested API router the path has lost its `/api/v2` prefix.
async fn api_not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no resource at /api/v2{}", uri.path()))
}

/// An error answered as `{"error": message}` with an HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let StoreError::NotFound { what, id } = e {
            return ApiError::not_found(format!("no {what} {id}"));
        }
        // The store's text (SQL, file names) stays in the master's log.
        tracing::error!(error = %e, "web API: store error");
        let message = "internal error in the master's store (its log has the details)".to_string();
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
