//! `GET /metrics`: the master's Prometheus metrics ([`crate::metrics`]), with what it holds now (queue depth,
//! workers connected and paused, log bytes stored) read at each scrape; and the timing of every routed request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::master::Master;
use crate::metrics::{HttpLabels, Metrics};

/// The content type of Prometheus's classic text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics of `master`, counting from its events bus from now until it stops.
pub(super) fn start(master: &Master) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    let names: HashMap<i64, String> = master
        .config()
        .builders
        .iter()
        .filter_map(|b| master.builder_id(&b.name).map(|id| (id, b.name.clone())))
        .collect();
    metrics.follow(master.store().events().subscribe(), names, master.stopping().clone());
    metrics
}

pub(super) async fn scrape(State((master, metrics)): State<(Master, Arc<Metrics>)>) -> Result<Response, ApiError> {
    let queued = master.queue().await?.len();
    let paused = master.store().paused_workers().await?.len();
    metrics.queue_depth.set(i64::try_from(queued).unwrap_or(i64::MAX));
    metrics.workers_paused.set(i64::try_from(paused).unwrap_or(i64::MAX));
    let connected = master.workers().connected_names().len();
    metrics.workers_connected.set(i64::try_from(connected).unwrap_or(i64::MAX));
    metrics.set_log_bytes(master.store().log_bytes_stored());
    let reporters: Vec<String> = master.reporters().defs().iter().map(|d| d.name.clone()).collect();
    metrics.set_notifications(&reporters, &master.store().notification_counts().await?);
    let text = metrics.encode().map_err(|e| ApiError::internal(format!("encoding the metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Times a routed request, by method, route pattern and status.
pub(super) async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or_else(String::new, |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics.observe_http(HttpLabels { method, route, status }, started.elapsed().as_secs_f64());
    response
}
