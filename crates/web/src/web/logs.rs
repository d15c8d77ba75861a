//! Log contents: a range of lines as a Buildbot `logchunk`, and the whole log as a text download, streamed.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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

/// How a raw log is offered to the browser: saved as a file, or shown as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    Attachment,
    Inline,
}

/// `GET /logs/{id}/raw`: the log's text as a download, without the channel letters of stdio logs, read from the
/// store [`RAW_BATCH_LINES`] at a time while it is sent. Answers a `Range: bytes=` request with 206 (one range;
/// 416 when it starts past the end), and gzips a whole download when the client accepts it.
pub(super) async fn raw(
    State(m): State<Master>,
    Path(l): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_raw(&m, &l, &headers, Disposition::Attachment).await
}

/// `GET /logs/{id}/raw_inline`: the same text, shown in the browser (`text/plain`, `inline`).
pub(super) async fn raw_inline(
    State(m): State<Master>,
    Path(l): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_raw(&m, &l, &headers, Disposition::Inline).await
}

async fn serve_raw(m: &Master, l: &str, headers: &HeaderMap, disposition: Disposition) -> Result<Response, ApiError> {
    let logid = log_id(l)?;
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
    let strip = origin.log.log_type == "s";
    let spans = m.store().log_chunk_spans(logid).await?;
    // Each chunk's size as served: stdio lines lose their channel letter.
    let sizes: Vec<u64> = spans
        .iter()
        .map(|s| {
            if strip {
                s.bytes.saturating_sub(u64::try_from(s.last_line - s.first_line + 1).unwrap_or(0))
            } else {
                s.bytes
            }
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let end_line = spans.last().map_or(0, |s| s.last_line + 1);
    let mut reader = RawReader { store: m.store().clone(), logid, next: 0, end: end_line, strip, skip: 0, left: None };

    let disposition = match disposition {
        Disposition::Attachment => format!("attachment; filename=\"{filename}.txt\""),
        Disposition::Inline => format!("inline; filename=\"{filename}.txt\""),
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::VARY, "accept-encoding")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let body = match wanted_range(range, total) {
        Wanted::Unsatisfiable => {
            let mut answer = ApiError {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                message: format!("the range '{}' starts past the log's {total} bytes", range.unwrap_or("")),
            }
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
                answer.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(answer);
        }
        Wanted::Range { start, end } => {
            // The chunk holding byte `start`, and where it starts.
            let (mut at, mut first_line) = (0u64, 0i64);
            for (span, size) in spans.iter().zip(&sizes) {
                if at + size > start {
                    first_line = span.first_line;
                    break;
                }
                at += size;
            }
            reader.next = first_line;
            reader.skip = start - at;
            reader.left = Some(end - start + 1);
            response = response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{total}"))
                .header(header::CONTENT_LENGTH, end - start + 1);
            Body::from_stream(raw_stream(reader))
        }
        Wanted::Whole if accepts_gzip(headers) => {
            response = response.header(header::CONTENT_ENCODING, "gzip");
            Body::from_stream(gzip_stream(raw_stream(reader)))
        }
        Wanted::Whole => {
            response = response.header(header::CONTENT_LENGTH, total);
            Body::from_stream(raw_stream(reader))
        }
    };
    response.body(body).map_err(|e| ApiError::internal(format!("cannot answer with log {logid}: {e}")))
}

/// What a client asked of a text of `total` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    /// All of it: no `Range`, or one this server ignores (not bytes, several ranges, invalid), as HTTP allows.
    Whole,
    /// Bytes `start..=end`.
    Range { start: u64, end: u64 },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// The `Range` header `value` (RFC 9110 §14.1.2) against a text of `total` bytes: one `bytes=` range, `a-b`, `a-`
/// or `-suffix`.
fn wanted_range(value: Option<&str>, total: u64) -> Wanted {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else { return Wanted::Whole };
    let spec = spec.trim();
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first_text, last_text)) = spec.split_once('-') else { return Wanted::Whole };
    let number = |t: &str| -> Option<u64> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (first, last) = (number(first_text), number(last_text));
    let open_end = last_text.trim().is_empty();
    match (first_text.trim().is_empty(), first, last) {
        // `-n`: the last n bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || total == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Range { start: total.saturating_sub(suffix), end: total - 1 }
            }
        }
        (false, Some(start), Some(end)) if end >= start => {
            if start >= total {
                Wanted::Unsatisfiable
            } else {
                Wanted::Range { start, end: end.min(total - 1) }
            }
        }
        (false, Some(start), None) if open_end => {
            if start >= total {
                Wanted::Unsatisfiable
            } else {
                Wanted::Range { start, end: total - 1 }
            }
        }
        _ => Wanted::Whole,
    }
}

/// Whether `Accept-Encoding` takes gzip (with a non-zero quality).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let zero = parts
                .any(|p| p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
        },
    )
}

/// A reader of a raw log's text: lines `next..end`, dropping the first `skip` bytes and stopping after `left`.
struct RawReader {
    store: Store,
    logid: i64,
    next: i64,
    end: i64,
    /// Drop each line's channel letter.
    strip: bool,
    skip: u64,
    left: Option<u64>,
}

/// The text of `reader`'s lines, a batch at a time.
fn raw_stream(reader: RawReader) -> impl futures_util::Stream<Item = Result<Bytes, StoreError>> + Send {
    futures_util::stream::try_unfold(reader, move |mut r| async move {
        loop {
            if r.next >= r.end || r.left == Some(0) {
                return Ok(None);
            }
            let lines = r.store.log_lines(r.logid, r.next, RAW_BATCH_LINES.min(r.end - r.next)).await?;
            if lines.is_empty() {
                return Ok(None);
            }
            r.next = r.next.saturating_add(i64::try_from(lines.len()).unwrap_or(i64::MAX));
            let mut text = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for line in &lines {
                let bytes = line.as_bytes();
                text.extend_from_slice(if r.strip { bytes.get(1..).unwrap_or_default() } else { bytes });
                text.push(b'\n');
            }
            let mut text = Bytes::from(text);
            let len = text.len() as u64;
            if r.skip >= len {
                r.skip -= len;
                continue;
            }
            text = text.slice(usize::try_from(r.skip).unwrap_or(usize::MAX)..);
            r.skip = 0;
            if let Some(left) = r.left.as_mut() {
                let keep = (*left).min(text.len() as u64);
                text.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
                *left -= keep;
            }
            return Ok(Some((text, r)));
        }
    })
}

type Gzip = flate2::write::GzEncoder<Vec<u8>>;

/// `stream` gzipped, each piece compressed on a blocking thread.
fn gzip_stream(
    stream: impl futures_util::Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    use flate2::write::GzEncoder;
    use futures_util::StreamExt;
    use std::io::Write;

    let encoder = Some(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    futures_util::stream::unfold((Box::pin(stream), encoder), |(mut stream, encoder)| async move {
        let mut encoder = encoder?;
        let piece = stream.next().await;
        let done = piece.is_none();
        let work = move || -> std::io::Result<(Vec<u8>, Option<Gzip>)> {
            match piece {
                Some(Ok(bytes)) => {
                    encoder.write_all(&bytes)?;
                    let out = std::mem::take(encoder.get_mut());
                    Ok((out, Some(encoder)))
                }
                Some(Err(e)) => Err(std::io::Error::other(e.to_string())),
                None => Ok((encoder.finish()?, None)),
            }
        };
        let result = tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other).and_then(|r| r);
        match result {
            Ok((out, next)) => Some((Ok(Bytes::from(out)), (stream, if done { None } else { next }))),
            Err(e) => Some((Err(e), (stream, None))),
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
    use super::{accepts_gzip, wanted_range, Wanted};
    use axum::http::{header, HeaderMap, HeaderValue};

    #[test]
    fn ranges_follow_http() {
        let range = |start, end| Wanted::Range { start, end };
        assert_eq!(wanted_range(None, 100), Wanted::Whole);
        assert_eq!(wanted_range(Some("bytes=0-99"), 1000), range(0, 99));
        assert_eq!(wanted_range(Some("bytes=10-"), 100), range(10, 99));
        assert_eq!(wanted_range(Some("bytes=90-500"), 100), range(90, 99));
        assert_eq!(wanted_range(Some("bytes=-30"), 100), range(70, 99));
        assert_eq!(wanted_range(Some("bytes=-300"), 100), range(0, 99));
        assert_eq!(wanted_range(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted_range(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted_range(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        for ignored in ["bytes=5-2", "bytes=0-1,4-5", "lines=1-2", "bytes=a-b", "bytes=-", "bytes=1-2-3"] {
            assert_eq!(wanted_range(Some(ignored), 100), Wanted::Whole, "{ignored}");
        }
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, zstd"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn download_names_are_safe() {
        assert_eq!(
            super::download_name(&["my builder", "build", "3", "log", "a\"b/c"]),
            "my_builder_build_3_log_a_b_c"
        );
    }
}
