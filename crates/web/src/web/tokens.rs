//! `/api/v2/me`: who is asking; `/api/v2/tokens`: the logged-in user's API tokens (create: shown once; list; revoke), and `/api/v2/audit`:
//! the control actions recorded, with who, when and from where.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::{control, Gate, Viewer};
use super::ApiError;
use crate::auth::{token, TokenError, Via};
use crate::master::Master;
use crate::store::AuditFilter;

/// The most audit entries one answer lists.
const MAX_AUDIT: u32 = 1000;

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError { status, message: message.into() }.into_response()
}

/// `POST /api/v2/tokens` `{"name": …, "role": …, "expires": "30d"}` (`expires` optional: `never`): a new token of
/// the user, for one of their roles. Its text is in this answer only. A token cannot make tokens.
pub(super) async fn create(
    State(m): State<Master>,
    Extension(gate): Extension<Arc<Gate>>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, via) = match control(&m.config(), &viewer, &headers, true) {
        Ok(found) => found,
        Err(r) => return refused(r.status, r.message),
    };
    if via == Via::Token {
        return refused(StatusCode::FORBIDDEN, "a token cannot create tokens: log in with a password");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refused(StatusCode::BAD_REQUEST, "expected a JSON object {\"name\": …, \"role\": …}");
    };
    let Some(name) = request.get("name").and_then(Value::as_str) else {
        return refused(StatusCode::BAD_REQUEST, "'name' (a string) is required");
    };
    let role = match request.get("role").and_then(Value::as_str) {
        Some(role) => role.to_string(),
        None if user.roles.len() == 1 => user.roles[0].clone(),
        None => return refused(StatusCode::BAD_REQUEST, "'role' is required (one of your roles)"),
    };
    let lifetime = match request.get("expires") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match token::parse_lifetime(text) {
            Ok(lifetime) => lifetime,
            Err(why) => return refused(StatusCode::BAD_REQUEST, format!("'expires': {why}")),
        },
        Some(_) => return refused(StatusCode::BAD_REQUEST, "'expires' is a string: 30d, 12h, 45m or never"),
    };
    match gate.auth.create_token(&user, name, &role, lifetime).await {
        Ok((text, stored)) => {
            tracing::info!(user = %user.name, token = %stored.name, role = %stored.role, "API token created");
            let mut body = json!(stored);
            body["token"] = json!(text);
            (StatusCode::CREATED, Json(json!({ "tokens": [body] }))).into_response()
        }
        Err(TokenError::Invalid(why)) => refused(StatusCode::BAD_REQUEST, why),
        Err(TokenError::Store(e)) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/v2/me`: who the request's viewer is: `{"user": name or null, "roles": […], "via": …, "csrf": …}`,
/// `csrf` being the session's CSRF token when logged in by cookie (for pages' scripts; another origin cannot
/// read this answer).
pub(super) async fn me(Extension(viewer): Extension<Viewer>) -> Json<Value> {
    Json(json!({
        "user": viewer.name(),
        "roles": viewer.user.as_ref().map(|u| u.roles.clone()).unwrap_or_default(),
        "via": viewer.via.map(Via::name),
        "csrf": viewer.csrf_token(),
    }))
}

/// `GET /api/v2/tokens`: the user's tokens (never their text).
pub(super) async fn list(State(m): State<Master>, Extension(viewer): Extension<Viewer>) -> Response {
    let Some(user) = &viewer.user else {
        return refused(StatusCode::UNAUTHORIZED, "log in to see your tokens");
    };
    match m.store().api_tokens_of(&user.name).await {
        Ok(tokens) => {
            let total = tokens.len();
            Json(json!({ "tokens": tokens, "meta": { "total": total } })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `DELETE /api/v2/tokens/{id}`: revokes one of the user's tokens.
pub(super) async fn revoke(
    State(m): State<Master>,
    Path(id): Path<String>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
) -> Response {
    let (user, _) = match control(&m.config(), &viewer, &headers, false) {
        Ok(found) => found,
        Err(r) => return refused(r.status, r.message),
    };
    let Ok(id) = id.parse::<i64>() else { return refused(StatusCode::NOT_FOUND, format!("no token '{id}'")) };
    match m.store().revoke_api_token(&user.name, id).await {
        Ok(true) => {
            tracing::info!(user = %user.name, token = id, "API token revoked");
            Json(json!({ "revoked": id })).into_response()
        }
        Ok(false) => refused(StatusCode::NOT_FOUND, format!("you have no live token {id}")),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/v2/audit?builder=&buildid=&buildrequestid=&worker=&username=&limit=`: the recorded control
/// actions, newest first (at most 1000).
pub(super) async fn audit(
    State(m): State<Master>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let number = |key: &str| -> Result<Option<i64>, String> {
        match query.get(key) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| format!("'{key}' must be a number")),
        }
    };
    let (buildid, buildrequestid, limit) = match (number("buildid"), number("buildrequestid"), number("limit")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return refused(StatusCode::BAD_REQUEST, e),
    };
    if let Some(unknown) = query
        .keys()
        .find(|k| !["builder", "buildid", "buildrequestid", "worker", "username", "limit"].contains(&k.as_str()))
    {
        return refused(StatusCode::BAD_REQUEST, format!("unknown filter '{unknown}'"));
    }
    let filter = AuditFilter {
        builder: query.get("builder").cloned(),
        buildid,
        buildrequestid,
        worker: query.get("worker").cloned(),
        username: query.get("username").cloned(),
        limit: limit.map_or(MAX_AUDIT, |l| u32::try_from(l.clamp(0, i64::from(MAX_AUDIT))).unwrap_or(MAX_AUDIT)),
    };
    match m.store().audit(&filter).await {
        Ok(entries) => {
            let total = entries.len();
            Json(json!({ "audit": entries, "meta": { "total": total } })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
