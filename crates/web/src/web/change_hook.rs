//! `POST /change_hook/{dialect}`: changes pushed to the master, as Buildbot's `www/change_hook` takes them.
//!
//! Dialects `github`, `gitlab`, `gitea` (and `forgejo`, with the `gitea` settings) and `bitbucket` are forge
//! webhooks, verified and decoded by [`crate::changes::webhooks`]; `base` is Buildbot's base dialect as JSON
//! (what `kiln sendchange` posts), with `Authorization: Bearer <token>`. A dialect without a `[change_hooks.*]`
//! table answers 404. Every change goes through [`Master::add_change`]; the answer is `{"changes": [ids]}`, and
//! an error `{"error": message}` with its status. A request refused stores nothing. An authenticated event that
//! makes no changes is answered 200 with `{"changes": [], "ignored": why}` and logged. A body whose
//! `Content-Length` is over the limit is refused (413) before it is read. `poller` is Buildbot's dialect that
//! makes named git pollers poll now, with a bearer token like `base`.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use axum::routing::{post, MethodRouter};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use regex::Regex;

use crate::changes::webhooks::{
    changes_from, default_skip_markers, form_values, Forge, HookConfig, HookError, HookRequest, PullRef,
};
use crate::changes::NewChange;
use crate::config::{HookDef, PollerHookDef, PullRequestRef, SkipMarkers};
use crate::master::Master;

/// The largest body a hook takes (GitHub caps its payloads at 25 MB; pushes of thousands of commits are rarer).
pub(super) const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The header the base dialect's token comes in.
const AUTHORIZATION: &str = "Authorization";

/// The route's handler, with its body limit.
pub(super) fn route() -> MethodRouter<Master> {
    post(hook).layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// The query of `/change_hook/poller?poller=NAME` (Buildbot's dialect; the name may be given more than once).
struct HookQuery {
    poller: Vec<String>,
}

async fn hook(
    State(master): State<Master>,
    Path(dialect): Path<String>,
    request: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    let hooks = &master.config().change_hooks;
    let not_configured = || ApiError::not_found(format!("the change hook '{dialect}' is not configured"));
    let (parts, body) = request.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    if dialect == "poller" {
        let def = hooks.poller.as_ref().ok_or_else(not_configured)?;
        let query = parts.uri.query().unwrap_or_default();
        let answer = poll_now(&master, def, query, &HookRequest { headers: &headers, body: b"" });
        if let Err(e) = &answer {
            tracing::warn!(dialect, error = %e.message, "change hook request refused");
        }
        return answer.map(Json);
    }
    // Refused before a byte of the body is read: no `100 Continue` for a body that would be refused anyway.
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        tracing::warn!(dialect, length = declared, "change hook request refused: its body is over the limit");
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the body is over the limit of {BODY_LIMIT} bytes"),
        });
    }
    let body = || async {
        axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the body could not be read whole (over {BODY_LIMIT} bytes?): {e}"),
        })
    };
    let delivery = Forge::from_segment(&dialect)
        .and_then(|forge| forge.delivery_id(&HookRequest { headers: &headers, body: b"" }));
    let decoded = if dialect == "base" {
        let token = hooks.base.as_ref().ok_or_else(not_configured)?.token.expose();
        let body = body().await?;
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
        let body = body().await?;
        changes_from(forge, &config, &HookRequest { headers: &headers, body: &body })
    };
    let changes = match decoded {
        Ok(changes) => changes,
        Err(e @ HookError::Ignored { .. }) => {
            // Authenticated, well formed, and nothing to build: a forge that got an error would retry, and in
            // the end turn the hook off.
            tracing::info!(dialect, delivery, "change hook: {e}");
            return Ok(Json(json!({ "changes": [], "ignored": e.to_string() })));
        }
        Err(e) => {
            tracing::warn!(dialect, error = %e, "change hook request refused");
            return Err(refused(&e));
        }
    };
    if changes.is_empty() {
        tracing::info!(dialect, delivery, "change hook: a request without changes");
    }
    // Answered only once stored: all of the request's changes, or none.
    let source = Forge::from_segment(&dialect).map_or("base", Forge::name);
    let ids = master.add_hook_changes(source, delivery.as_deref(), &changes).await.map_err(|e| {
        tracing::error!(dialect, error = %e, "storing the changes of a hook request failed");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() }
    })?;
    Ok(Json(json!({ "changes": ids })))
}

/// `/change_hook/poller?poller=NAME`: with the hook's bearer token, wakes the named git pollers (none named:
/// every one the hook allows); an unknown or disallowed name is a 400 and wakes none.
fn poll_now(master: &Master, def: &PollerHookDef, query: &str, request: &HookRequest) -> Result<Value, ApiError> {
    check_bearer(&def.token, request).map_err(|e| refused(&e))?;
    let query = HookQuery { poller: form_values(query, "poller") };
    let known = master.git_poller_names();
    let allowed = |name: &String| def.allowed.as_ref().is_none_or(|a| a.contains(name));
    let names: Vec<String> =
        if query.poller.is_empty() { known.iter().filter(|n| allowed(n)).cloned().collect() } else { query.poller };
    for name in &names {
        if !known.contains(name) {
            return Err(ApiError::bad_request(format!(
                "no git poller is named {name:?} (known: {})",
                known.join(", ")
            )));
        }
        if !allowed(name) {
            return Err(ApiError::bad_request(format!("the poller hook may not wake {name:?} (allowed)")));
        }
    }
    for name in &names {
        master.poll_now(name);
    }
    tracing::info!(pollers = ?names, "change hook: pollers asked to poll now");
    Ok(json!({ "polled": names }))
}

fn hook_config(def: &HookDef) -> HookConfig {
    HookConfig {
        secret: def.secret.as_ref().map(|s| s.expose().to_string()),
        with_tags: def.with_tags,
        project: def.project.clone(),
        codebase: def.codebase.clone(),
        pull_requests: def.pull_requests,
        build_forks: def.build_forks,
        ready_for_review: def.ready_for_review,
        labels: def.labels.clone(),
        pull_request_ref: match def.pull_request_ref {
            PullRequestRef::Head => PullRef::Head,
            PullRequestRef::Merge => PullRef::Merge,
        },
        note_trigger: def.note_trigger.clone().filter(|t| !t.is_empty()),
        // Checked when the config was read.
        skip_markers: match &def.skip_markers {
            Some(SkipMarkers(patterns)) => patterns.iter().filter_map(|p| Regex::new(p).ok()).collect(),
            None => default_skip_markers(),
        },
    }
}

fn refused(e: &HookError) -> ApiError {
    ApiError { status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), message: e.to_string() }
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

/// Checks `Authorization: Bearer <token>`, in constant time.
fn check_bearer(token: &str, request: &HookRequest) -> Result<(), HookError> {
    let given = request.header(AUTHORIZATION).ok_or(HookError::MissingToken { header: AUTHORIZATION })?;
    let bad = HookError::BadToken { header: AUTHORIZATION };
    let given = given.strip_prefix("Bearer ").ok_or(bad.clone())?.trim();
    if token.is_empty() || !crate::secrets::equal(given, token) {
        return Err(bad);
    }
    Ok(())
}

/// Checks the bearer token (in constant time) and reads the one change of a base-dialect body.
fn base_changes(token: &str, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    check_bearer(token, request)?;
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
