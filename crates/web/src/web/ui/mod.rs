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

use crate::master::Master;
use crate::store::StoreError;
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
        .route("/schedulers", get(schedulers::page))
        .route("/about", get(about::page))
        .route("/waterfall", get(waterfall::page))
        .route("/grid", get(grid::page))
        .route("/console", get(console::page))
        .route("/badges/{file}", get(badge::badge))
        .route("/assets/{file}", get(assets::serve))
        .route("/builders/{name}/builds/{number}/steps/{step}/logs/{slug}", get(log::page))
        .route("/assets/log/{file}", get(log::asset))
        .layer(axum::middleware::map_response(page_headers))
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

/// Which part of a page the request wants: `?fragment=NAME` (the page's `live` block), else the whole page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wanted {
    fragment: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Wanted {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let fragment = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("fragment=").map(|v| v.to_string())));
        Ok(Wanted { fragment })
    }
}

/// A page of the UI: the whole page, or its live block alone.
pub(crate) trait View: askama::Template {
    /// The page's `live` block alone.
    fn live(&self) -> askama::Result<String>;
}

/// Implements [`View`] for page types whose template declares `blocks = ["live"]`.
macro_rules! page_view {
    ($($page:ty),+) => {$(
        impl $crate::web::ui::View for $page {
            fn live(&self) -> askama::Result<String> {
                askama::Template::render(&self.as_live())
            }
        }
    )+};
}
pub(crate) use page_view;

/// Renders `view` as `wanted` asks: the whole page, or its live block (`?fragment=live`).
pub(crate) fn respond(view: &impl View, wanted: &Wanted) -> Result<Response, UiError> {
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
