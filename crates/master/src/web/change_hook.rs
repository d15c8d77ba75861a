//! `POST /change_hook/{dialect}`: changes pushed to the master, as Buildbot's `www/change_hook` takes them.
//!
//! Dialects `github`, `gitlab`, `gitea` (and `forgejo`, with the `gitea` settings) and `bitbucket` are forge
//! webhooks, verified and decoded by [`crate::changes::webhooks`]; `base` is Buildbot's base dialect as JSON
//! (what `kiln sendchange` posts), with `Authorization: Bearer <token>`. A dialect without a `[change_hooks.*]`
//! table answers 404. Every change goes through [`Master::add_change`]; the answer is `{"changes": [ids]}`, and
//! an error `{"error": message}` with its status. A request refused stores nothing.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, MethodRouter};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::changes::webhooks::{changes_from, Forge, HookConfig, HookError, HookRequest};
use crate::changes::NewChange;
use crate::config::HookDef;
use crate::master::Master;

/// The largest body a hook takes (GitHub caps its payloads at 25 MB; pushes of thousands of commits are rarer).
pub(super) const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The header the base dialect's token comes in.
const AUTHORIZATION: &str = "Authorization";

/// The route's handler, with its body limit.
pub(super) fn route() -> MethodRouter<Master> {
    post(hook).layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn hook(
    State(master): State<Master>,
    Path(dialect): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let hooks = &master.config().change_hooks;
    let not_configured = || ApiError::not_found(format!("the change hook '{dialect}' is not configured"));
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let delivery = Forge::from_segment(&dialect)
        .and_then(Forge::delivery_header)
        .and_then(|name| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty());
    let changes = if dialect == "base" {
        let token = hooks.base.as_ref().ok_or_else(not_configured)?.token.expose();
        let body = body.map_err(rejected)?;
        base_changes(token, &HookRequest { headers: &headers, body: &body })
    } else {
        let forge = Forge::from_segment(&dialect).ok_or_else(not_configured)?;
        let def = match forge {
            Forge::GitHub => &hooks.github,
            Forge::GitLab => &hooks.gitlab,
            Forge::Gitea => &hooks.gitea,
            Forge::Bitbucket => &hooks.bitbucket,
        };
        let config = hook_config(def.as_ref().ok_or_else(not_configured)?);
        let body = body.map_err(rejected)?;
        changes_from(forge, &config, &HookRequest { headers: &headers, body: &body })
    }
    .map_err(|e| {
        tracing::warn!(dialect, error = %e, "change hook request refused");
        refused(&e)
    })?;
    // Answered only once stored: all of the request's changes, or none.
    let source = Forge::from_segment(&dialect).map_or("base", Forge::name);
    let ids = master.add_hook_changes(source, delivery.as_deref(), &changes).await.map_err(|e| {
        tracing::error!(dialect, error = %e, "storing the changes of a hook request failed");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() }
    })?;
    Ok(Json(json!({ "changes": ids })))
}

fn hook_config(def: &HookDef) -> HookConfig {
    HookConfig {
        secret: def.secret.as_ref().map(|s| s.expose().to_string()),
        with_tags: def.with_tags,
        project: def.project.clone(),
        codebase: def.codebase.clone(),
    }
}

fn refused(e: &HookError) -> ApiError {
    ApiError { status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), message: e.to_string() }
}

/// A body that could not be read (too large: 413).
fn rejected(e: BytesRejection) -> ApiError {
    ApiError { status: e.status(), message: e.body_text() }
}

/// A change in Buildbot's base dialect.
#[derive(Deserialize)]
struct BaseChange {
    author: Option<String>,
    committer: Option<String>,
    comments: Option<String>,
    revision: Option<String>,
    branch: Option<String>,
    repository: Option<String>,
    project: Option<String>,
    codebase: Option<String>,
    category: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    when_timestamp: Option<i64>,
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

/// Checks the bearer token (in constant time) and reads the one change of a base-dialect body.
fn base_changes(token: &str, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    let given = request.header(AUTHORIZATION).ok_or(HookError::MissingToken { header: AUTHORIZATION })?;
    let bad = HookError::BadToken { header: AUTHORIZATION };
    let given = given.strip_prefix("Bearer ").ok_or(bad.clone())?.trim();
    if token.is_empty() || !crate::secrets::equal(given, token) {
        return Err(bad);
    }
    let change: BaseChange = serde_json::from_slice(request.body)
        .map_err(|e| HookError::MalformedBody { detail: format!("invalid JSON: {e}") })?;
    let missing = |path: &str| HookError::MissingField { path: path.to_string() };
    Ok(vec![NewChange {
        author: change.author.filter(|a| !a.is_empty()).ok_or_else(|| missing("author"))?,
        committer: change.committer,
        comments: change.comments.ok_or_else(|| missing("comments"))?,
        files: change.files,
        revision: change.revision,
        branch: change.branch,
        repository: change.repository.unwrap_or_default(),
        project: change.project.unwrap_or_default(),
        codebase: change.codebase.unwrap_or_default(),
        category: change.category,
        when_timestamp: change.when_timestamp.unwrap_or(0),
        properties: change.properties,
    }])
}
