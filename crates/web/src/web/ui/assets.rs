//! The UI's assets, embedded in the binary: the stylesheet, the ES modules, and a favicon per result. Each is
//! served at `/assets/<stem>.<hash>.<ext>` (the hash of its content) with `Cache-Control: immutable`, so a
//! browser fetches it once per version; `asset_url` gives the current URL.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::view::Outcome;

/// An embedded file: its name, content type and bytes, and its hashed file name.
struct Asset {
    name: String,
    content_type: &'static str,
    body: Vec<u8>,
    hashed: String,
}

const SOURCES: [(&str, &str, &str); 3] = [
    ("style.css", "text/css; charset=utf-8", include_str!("../../../assets/style.css")),
    ("live.js", "text/javascript; charset=utf-8", include_str!("../../../assets/live.js")),
    ("actions.js", "text/javascript; charset=utf-8", include_str!("../../../assets/actions.js")),
];

/// The colour of each result's favicon.
fn colour(class: &str) -> &'static str {
    match class {
        "success" => "#2e7d32",
        "warnings" => "#b26a00",
        "failure" => "#c62828",
        "exception" => "#8e24aa",
        "retry" => "#6d4c41",
        "cancelled" => "#546e7a",
        "running" => "#1565c0",
        "pending" => "#78909c",
        "skipped" => "#9e9e9e",
        _ => "#e65100",
    }
}

/// A round favicon in `fill`.
fn favicon(fill: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
         <circle cx=\"8\" cy=\"8\" r=\"7\" fill=\"{fill}\"/></svg>"
    )
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut files: Vec<(String, &'static str, Vec<u8>)> =
            SOURCES.iter().map(|(name, kind, text)| (name.to_string(), *kind, text.as_bytes().to_vec())).collect();
        files.push(("favicon.svg".into(), "image/svg+xml", favicon("#e65100").into_bytes()));
        for class in Outcome::CLASSES {
            files.push((format!("favicon-{class}.svg"), "image/svg+xml", favicon(colour(class)).into_bytes()));
        }
        files
            .into_iter()
            .map(|(name, content_type, body)| {
                let hash = hex::encode(&Sha256::digest(&body)[..6]);
                let hashed = match name.rsplit_once('.') {
                    Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
                    None => format!("{name}.{hash}"),
                };
                Asset { name, content_type, body, hashed }
            })
            .collect()
    })
}

/// The URL the asset `name` is served at now (`/assets/style.1a2b3c4d5e6f.css`).
pub fn asset_url(name: &str) -> String {
    match assets().iter().find(|a| a.name == name) {
        Some(asset) => format!("/assets/{}", asset.hashed),
        None => format!("/assets/{name}"),
    }
}

/// `GET /assets/{file}`: an embedded asset by its hashed name, for ever cacheable.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = assets().iter().find(|a| a.hashed == file) else {
        return (StatusCode::NOT_FOUND, "no such asset (its name carries the hash of this version's content)\n")
            .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        asset.body.clone(),
    )
        .into_response()
}
