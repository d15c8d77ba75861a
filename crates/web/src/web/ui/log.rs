//! The log page, `/builders/{name}/builds/{number}/steps/{step}/logs/{slug}`: the log's first and last lines as
//! HTML (readable without JavaScript, with links to the raw text), and `log.js`, the windowed viewer, which
//! replaces them with a view of any line of a log of any size: it fetches only the lines on screen
//! (`/api/v2/logs/{id}/contents?offset=&limit=`), follows a running log through the events stream, and searches
//! it on the server (`/api/v2/logs/{id}/search`). Its assets are served here, under content-hashed names.

use std::sync::OnceLock;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{Frame, Wanted};
use crate::master::Master;
use crate::model::{Build, Log, Step};
use crate::store::FilterValue;
use crate::web::ansi::plain;
use crate::web::handlers::find;
use crate::web::ApiError;

/// Lines shown from the start and from the end of a log in the page's HTML.
const SHOWN: i64 = 50;

/// One line of the page's HTML: its number (from 1), its channel's class and its text without escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub number: i64,
    pub class: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "log.html")]
pub(crate) struct LogPage {
    /// The shared frame (`layout.html`): the header, the navigation, who is logged in.
    pub frame: Frame,
    pub builder: String,
    pub builder_url: String,
    pub number: i64,
    pub build_url: String,
    pub step: String,
    pub log: String,
    pub logid: i64,
    pub log_type: String,
    pub num_lines: i64,
    pub complete: bool,
    pub head: Vec<Line>,
    /// Lines between `head` and `tail` not in the HTML.
    pub gap: i64,
    pub tail: Vec<Line>,
    pub css: String,
    pub js: String,
}

/// `text` as one segment of a URL path.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Stored lines numbered from `first` (0-based) as the page shows them.
fn shown(lines: Vec<String>, first: i64, stdio: bool) -> Vec<Line> {
    (first..)
        .zip(lines)
        .map(|(n, line)| {
            let (class, text) = match (stdio, line.as_bytes().first()) {
                (true, Some(b'e')) => ("e", &line[1..]),
                (true, Some(b'h')) => ("h", &line[1..]),
                (true, Some(b'o')) => ("o", &line[1..]),
                _ => ("o", line.as_str()),
            };
            Line { number: n + 1, class, text: plain(text).into_owned() }
        })
        .collect()
}

/// `GET /builders/{name}/builds/{number}/steps/{step}/logs/{slug}`; the step is its number or its name.
pub(super) async fn page(
    State(m): State<Master>,
    Path((builder, number, step, slug)): Path<(String, String, String, String)>,
    wanted: Wanted,
) -> Result<Response, ApiError> {
    let builderid = m.builder_id(&builder).ok_or_else(|| ApiError::not_found(format!("no builder '{builder}'")))?;
    let build_number: i64 =
        number.parse().map_err(|_| ApiError::not_found(format!("no build '{number}' of builder '{builder}'")))?;
    let build =
        find::<Build>(&m, vec![("builderid", FilterValue::Int(builderid)), ("number", FilterValue::Int(build_number))])
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no build {build_number} of builder '{builder}'")))?;
    let by_step = match step.parse::<i64>() {
        Ok(n) => ("number", FilterValue::Int(n)),
        Err(_) => ("name", FilterValue::Text(step.clone())),
    };
    let step_row = find::<Step>(&m, vec![("buildid", FilterValue::Int(build.id)), by_step])
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no step '{step}' in build {build_number} of '{builder}'")))?;
    let log =
        find::<Log>(&m, vec![("stepid", FilterValue::Int(step_row.id)), ("slug", FilterValue::Text(slug.clone()))])
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no log '{slug}' in step '{}'", step_row.name)))?;

    let stdio = log.log_type == "s";
    let n = log.num_lines;
    let head = m.store().log_lines(log.id, 0, SHOWN.min(n)).await?;
    let tail_from = (n - SHOWN).max(SHOWN.min(n));
    let tail = m.store().log_lines(log.id, tail_from, n - tail_from).await?;
    let builder_url = format!("/builders/{}", segment(&builder));
    let mut frame = Frame::new(&m, format!("{} · {} · {builder} #{build_number}", log.name, step_row.name), "builders");
    frame.account(&wanted);
    let page = LogPage {
        frame,
        build_url: format!("{builder_url}/builds/{build_number}"),
        builder_url,
        builder,
        number: build_number,
        step: step_row.name,
        log: log.name,
        logid: log.id,
        log_type: log.log_type,
        num_lines: n,
        complete: log.complete,
        head: shown(head, 0, stdio),
        gap: tail_from - SHOWN.min(n),
        tail: shown(tail, tail_from, stdio),
        css: asset_url("log.css"),
        js: asset_url("log.js"),
    };
    let html = page.render().map_err(|e| ApiError::internal(format!("the log page could not be rendered: {e}")))?;
    let mut response = Html(html).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The page's icon (the browser asks for one; without it, it asks for `/favicon.ico`).
const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
    <rect x=\"1\" y=\"2\" width=\"14\" height=\"12\" rx=\"2\" fill=\"#e65100\"/>\
    <path d=\"M4 6h8M4 9h6M4 12h7\" stroke=\"#fff\" stroke-width=\"1.5\"/></svg>";

/// An embedded asset of the log page: its name, type, text and content-hashed file name.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    hashed: String,
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        [
            ("log.js", "text/javascript; charset=utf-8", include_str!("../../../assets/log.js")),
            ("log.css", "text/css; charset=utf-8", include_str!("../../../assets/log.css")),
            ("favicon.svg", "image/svg+xml", FAVICON),
        ]
        .into_iter()
        .map(|(name, content_type, body)| {
            let hash = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            Asset { name, content_type, body, hashed: format!("{stem}.{hash}.{ext}") }
        })
        .collect()
    })
}

/// Where asset `name` is served now: `/assets/log/log.1a2b3c4d5e6f.js`.
fn asset_url(name: &str) -> String {
    let file = assets().iter().find(|a| a.name == name).map_or(name, |a| a.hashed.as_str());
    format!("/assets/log/{file}")
}

/// `GET /assets/log/{file}`: an asset by its hashed name, cacheable for ever.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match assets().iter().find(|a| a.hashed == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
            ],
            asset.body,
        )
            .into_response(),
        None => ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no asset '{file}' (its name carries the hash of this version's content)"),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_shown_by_channel_without_escapes() {
        let lines = vec!["hcmd".to_string(), "e\u{1b}[31mbad\u{1b}[0m".to_string(), "o<b>".to_string(), String::new()];
        let shown = shown(lines, 9, true);
        let got: Vec<_> = shown.iter().map(|l| (l.number, l.class, l.text.as_str())).collect();
        assert_eq!(got, vec![(10, "h", "cmd"), (11, "e", "bad"), (12, "o", "<b>"), (13, "o", "")]);
        assert_eq!(super::shown(vec!["ehello".into()], 0, false)[0].text, "ehello");
        assert_eq!(segment("my builder/ü"), "my%20builder%2F%C3%BC");
    }
}
