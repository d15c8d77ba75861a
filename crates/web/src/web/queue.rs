//! `GET /api/v2/queue` (Kiln's own): the requests waiting in this master's queue, in the order they would be
//! served, each as Buildbot's buildrequest with `buildername` and `waiting` (why it waits: `reason`, a code, and
//! `message`, for people).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::render::ApiResource;
use super::ApiError;
use crate::master::{Master, WaitingRequest};
use crate::queue::plan::Waiting;

pub(super) async fn queue(State(master): State<Master>) -> Result<Json<Value>, ApiError> {
    let queued = master.queue().await?;
    let total = queued.len();
    let items: Vec<Value> = queued.iter().map(|q| render(&master, q)).collect();
    Ok(Json(json!({ "queue": items, "meta": { "total": total } })))
}

fn render(master: &Master, queued: &WaitingRequest) -> Value {
    let mut item = queued.request.to_json(master);
    item["buildername"] = json!(queued.builder);
    let (reason, workers, lock) = match &queued.waiting {
        Waiting::Starting => ("starting", None, None),
        Waiting::NoWorker { workers } => ("no_worker", Some(workers), None),
        Waiting::Paused { workers } => ("paused", Some(workers), None),
        Waiting::Busy { workers } => ("busy", Some(workers), None),
        Waiting::Lock { lock } => ("lock", None, Some(lock)),
    };
    let mut waiting = json!({ "reason": reason, "message": queued.why });
    if let Some(workers) = workers {
        waiting["workers"] = json!(workers);
    }
    if let Some(lock) = lock {
        waiting["lock"] = json!(lock);
    }
    item["waiting"] = waiting;
    item
}
