//! The web UI: server-rendered HTML pages (askama templates compiled into the binary, in
//! `crates/master/templates/`) and small ES modules embedded in the binary. Pages work without JavaScript.

mod log;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::master::Master;

/// The UI's routes (merged into the web router at its root).
pub(super) fn routes() -> Router<Master> {
    Router::new()
        .route("/builders/{name}/builds/{number}/steps/{step}/logs/{slug}", get(log::page))
        .route("/assets/log/{file}", get(log::asset))
        .layer(axum::middleware::map_response(page_headers))
}

/// Every page and asset: no framing, no sniffing, no referrer to other sites, and only this origin's scripts and
/// styles (the pages have no inline ones).
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
