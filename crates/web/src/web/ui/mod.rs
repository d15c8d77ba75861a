//! The web UI: server-rendered HTML pages (askama templates compiled into the binary, in
//! `crates/web/templates/`), one stylesheet and two small ES modules embedded with `include_str!` and served
//! under content-hashed URLs (`assets`).
//!
//! Every page reads through the store's and the master's functions, like the API's handlers, and works without
//! JavaScript. Each page's changing part is its `live` block: `?fragment=live` answers that block alone, and
//! `live.js` re-fetches it when the events stream (`/api/v2/events?path=…`, the patterns in the page's
//! `data-events`) says something it shows changed, replacing it in place.
//!
//! Pages: `/` (home), `/builders`, `/builders/{name}`, `/builders/{name}/builds/{number}`, `/workers`,
//! `/workers/{name}`, `/changes`, `/changes/{id}`, `/requests`, `/schedulers`, `/about`, `/waterfall`, `/grid`,
//! `/console`, the badges `/badges/{builder}.svg`, and the log page (`…/steps/{step}/logs/{slug}`, `log`: a
//! windowed viewer, `log.js`, over line ranges of the API).

mod about;
pub(crate) mod assets;
mod badge;
mod build;
mod builder;
mod builders;
mod changes;
mod console;
mod grid;
mod home;
mod log;
mod requests;
mod schedulers;
#[cfg(test)]
mod tests;
mod view;
mod waterfall;
mod workers;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::rules::{decide, Target};
use crate::config::Action;
use crate::master::Master;
use crate::store::StoreError;
use crate::web::auth::Viewer;
pub(crate) use view::Frame;

/// The UI's routes (merged into the web router at its root).
pub(super) fn routes() -> Router<Master> {
    Router::new()
        .route("/", get(home::page))
        .route("/builders", get(builders::page))
        .route("/builders/{name}", get(builder::page))
        .route("/builders/{name}/builds/{number}", get(build::page))
        .route("/workers", get(workers::list))
        .route("/workers/{name}", get(workers::page))
        .route("/changes", get(changes::list))
        .route("/changes/{id}", get(changes::page))
        .route("/requests", get(requests::page))
        .route("/requests/{id}", get(requests::one))
        .route("/schedulers", get(schedulers::page))
        .route("/about", get(about::page))
        .route("/waterfall", get(waterfall::page))
        .route("/grid", get(grid::page))
        .route("/console", get(console::page))
        .route("/badges/{file}", get(badge::badge))
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(favicon))
        .route("/builders/{name}/builds/{number}/steps/{step}/logs/{slug}", get(log::page))
        .route("/assets/log/{file}", get(log::asset))
        .layer(axum::middleware::map_response(page_headers))
}

/// `/favicon.ico`, which browsers ask for where a page names no icon (the login page, a raw log): Kiln's icon.
async fn favicon() -> Response {
    axum::response::Redirect::to(&assets::asset_url("favicon.svg")).into_response()
}

/// Every page, asset and badge: no framing, no sniffing, no referrer to other sites, and only this origin's
/// scripts and styles (the pages have no inline ones).
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// Which part of a page the request wants (`?fragment=NAME`: the page's `live` block, else the whole page), and
/// who asks (the header's login link or user name, the buttons a page shows).
#[derive(Debug, Clone, Default)]
pub(crate) struct Wanted {
    fragment: Option<String>,
    /// The viewer the auth layer found (none when the router runs without it).
    pub viewer: Option<Viewer>,
    /// The page's path and query, where a login goes back to.
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Wanted {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let fragment = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("fragment=").map(|v| v.to_string())));
        let viewer = parts.extensions.get::<Viewer>().cloned();
        let path = parts.uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        Ok(Wanted { fragment, viewer, path })
    }
}

impl Wanted {
    /// The page's path and query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The user the page is shown to, if one is logged in.
    pub fn user(&self) -> Option<&crate::auth::User> {
        self.viewer.as_ref().and_then(|v| v.user.as_ref())
    }

    /// Whether the viewer may take `action` on a build or request of `builder` owned by `owner` (on a worker:
    /// no builder), as the JSON-RPC action would decide.
    pub fn may(&self, master: &Master, action: Action, builder: Option<&str>, owner: Option<&str>) -> bool {
        let Some(user) = self.user() else { return false };
        let config = master.config();
        let tags = builder
            .and_then(|name| config.builders.iter().find(|b| b.name == name))
            .map(|b| b.tags.clone())
            .unwrap_or_default();
        let target = Target { builder, tags: &tags, owner };
        decide(&config.auth.rules, user, action, &target).is_ok()
    }
}

/// A page of the UI: the whole page, or its live block alone.
pub(crate) trait View: askama::Template {
    /// The page's `live` block alone.
    fn live(&self) -> askama::Result<String>;
    /// The page's frame, which [`respond`] tells who the viewer is.
    fn frame_mut(&mut self) -> &mut Frame;
}

/// Implements [`View`] for page types whose template declares `blocks = ["live"]`.
macro_rules! page_view {
    ($($page:ty),+) => {$(
        impl $crate::web::ui::View for $page {
            fn live(&self) -> askama::Result<String> {
                askama::Template::render(&self.as_live())
            }

            fn frame_mut(&mut self) -> &mut $crate::web::ui::Frame {
                &mut self.frame
            }
        }
    )+};
}
pub(crate) use page_view;

/// Renders `view` as `wanted` asks: the whole page, or its live block (`?fragment=live`), its header saying
/// who is logged in.
pub(crate) fn respond(mut view: impl View, wanted: &Wanted) -> Result<Response, UiError> {
    view.frame_mut().account(wanted);
    let html = match wanted.fragment.as_deref() {
        None => view.render()?,
        Some("live") => view.live()?,
        Some(other) => return Err(UiError::NotFound(format!("this page has no fragment '{other}' (it has 'live')"))),
    };
    let mut response = Html(html).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Why a page cannot be shown: answered as a small HTML page with the status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the master's store failed (its log has the details)")]
    Store(#[source] StoreError),
    #[error("the page could not be rendered (the master's log has the details)")]
    Render(#[from] askama::Error),
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> UiError {
        if let StoreError::NotFound { what, id } = e {
            return UiError::NotFound(format!("no {what} {id}"));
        }
        UiError::Store(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Store(e) => {
                tracing::error!(error = %e, "web UI: store error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            UiError::Render(e) => {
                tracing::error!(error = %e, "web UI: template error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let page =
            view::ErrorPage { frame: Frame::bare(status.as_str()), status: status.as_u16(), message: self.to_string() };
        match askama::Template::render(&page) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.to_string()).into_response(),
        }
    }
}
