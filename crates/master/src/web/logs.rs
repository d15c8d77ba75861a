//! Log contents: a range of lines as a Buildbot `logchunk`, and the whole log as a text download, streamed.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::params::Params;
use super::ApiError;
use crate::master::Master;
use crate::store::{Store, StoreError};

/// Most lines one `contents` response holds; a client pages with `offset` past it (`meta.next_offset` says where).
pub(super) const CONTENTS_MAX_LINES: i64 = 100_000;
/// Lines read from the store at a time while streaming a raw log.
const RAW_BATCH_LINES: i64 = 5_000;

pub(super) fn log_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("no log '{text}'")))
}

pub(super) fn line_param(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid '{name}': '{value}' is not a non-negative integer")))
}

/// `GET /logs/{id}/contents?offset=&limit=`: lines `offset..offset+limit` (the whole log without), at most
/// [`CONTENTS_MAX_LINES`]; each line ends with `\n` and keeps its channel letter in stdio logs, as stored.
pub(super) async fn contents(
    State(m): State<Master>,
    Path(l): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let logid = log_id(&l)?;
    let (mut offset, mut limit) = (0, None);
    for (name, value) in &params.0 {
        match name.as_str() {
            "offset" => offset = line_param(name, value)?,
            "limit" => limit = Some(line_param(name, value)?),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{name}' (contents take offset and limit)"
                )))
            }
        }
    }
    let num_lines = m.store().log_num_lines(logid).await?;
    let wanted = limit.unwrap_or_else(|| num_lines.saturating_sub(offset).max(0));
    let count = wanted.min(CONTENTS_MAX_LINES);
    let lines = m.store().log_lines(logid, offset, count).await?;
    let got = i64::try_from(lines.len()).unwrap_or(i64::MAX);
    let mut content = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in &lines {
        content.push_str(line);
        content.push('\n');
    }
    let mut meta = json!({ "total": 1 });
    if wanted > count && offset + got < num_lines {
        meta["truncated"] = json!(true);
        meta["next_offset"] = json!(offset + got);
    }
    Ok(Json(json!({
        "logchunks": [{ "logid": logid, "firstline": offset, "content": content }],
        "meta": meta,
    })))
}

/// `GET /logs/{id}/raw`: the log's text as a download, without the channel letters of stdio logs, read from the
/// store [`RAW_BATCH_LINES`] at a time while it is sent.
pub(super) async fn raw(State(m): State<Master>, Path(l): Path<String>) -> Result<Response, ApiError> {
    let logid = log_id(&l)?;
    let origin = m.store().log_origin(logid).await?.ok_or_else(|| ApiError::not_found(format!("no log {logid}")))?;
    let filename = download_name(&[
        &origin.builder,
        "build",
        &origin.build_number.to_string(),
        "step",
        &origin.step,
        "log",
        &origin.log.slug,
    ]);
    let stream = raw_stream(m.store().clone(), logid, origin.log.num_lines, origin.log.log_type == "s");
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}.txt\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The lines `0..end` of `logid` as text, a batch at a time; `strip` drops each line's channel letter.
fn raw_stream(
    store: Store,
    logid: i64,
    end: i64,
    strip: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, StoreError>> + Send {
    futures_util::stream::try_unfold(0i64, move |next| {
        let store = store.clone();
        async move {
            if next >= end {
                return Ok(None);
            }
            let lines = store.log_lines(logid, next, RAW_BATCH_LINES.min(end - next)).await?;
            if lines.is_empty() {
                return Ok(None);
            }
            let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for line in &lines {
                let line = if strip { line.get(1..).unwrap_or("") } else { line.as_str() };
                text.push_str(line);
                text.push('\n');
            }
            let read = i64::try_from(lines.len()).unwrap_or(i64::MAX);
            Ok(Some((Bytes::from(text), next.saturating_add(read))))
        }
    })
}

/// A file name made of `parts` joined by `_`, keeping only characters safe in a header and on any file system.
fn download_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars().map(|c| if c.is_ascii_alphanumeric() || "-.".contains(c) { c } else { '_' }).collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn download_names_are_safe() {
        assert_eq!(
            super::download_name(&["my builder", "build", "3", "log", "a\"b/c"]),
            "my_builder_build_3_log_a_b_c"
        );
    }
}
