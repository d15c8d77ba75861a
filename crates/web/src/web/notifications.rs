//! `GET /api/v2/notifications` (Kiln's own): the reporters' outbox, the newest first — each notice's reporter,
//! event, target, state (`pending`, `sending`, `sent`, `dead`, `superseded`), attempts, last error and what the
//! server answered. Filters: `reporter`, `state`, `event`, `subject_id`; `limit` (at most 1000, default 100).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::master::Master;
use crate::model::{Notification, NotificationState};
use crate::store::NotificationQuery;

pub(super) async fn notifications(
    State(master): State<Master>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut query = NotificationQuery::default();
    for (key, value) in &params {
        match key.as_str() {
            "reporter" => query.reporter = Some(value.clone()),
            "event" => query.event = Some(value.clone()),
            "state" => {
                query.state = Some(NotificationState::parse(value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown state '{value}' (known: pending, sending, sent, dead, superseded)"
                    ))
                })?);
            }
            "subject_id" => {
                let id = value
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("subject_id '{value}' is not a number")))?;
                query.subject_id = Some(id);
            }
            "limit" => {
                query.limit =
                    value.parse().map_err(|_| ApiError::bad_request(format!("limit '{value}' is not a number")))?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}' (known: reporter, state, event, subject_id, limit)"
                )))
            }
        }
    }
    let notices = master.store().notifications(&query).await?;
    let total = notices.len();
    let items: Vec<Value> = notices.iter().map(render).collect();
    Ok(Json(json!({ "notifications": items, "meta": { "total": total } })))
}

fn render(n: &Notification) -> Value {
    json!({
        "notificationid": n.id,
        "reporter": n.reporter,
        "event": n.event,
        "subject_id": n.subject_id,
        "target": n.target,
        "state": n.state.name(),
        "attempts": n.attempts,
        "next_attempt_at": n.next_attempt_at as f64 / 1000.0,
        "last_error": n.last_error,
        "answer": n.answer,
        "created_at": n.created_at,
        "sent_at": n.sent_at,
    })
}
