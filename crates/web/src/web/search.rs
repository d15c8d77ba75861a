//! `GET /api/v2/logs/{id}/search?q=…`: the numbers of a log's lines that match, found on the server over the
//! whole log, a few chunks at a time.
//!
//! Parameters: `q` (the text, or with `regex=1` a regular expression), `case=1` to match case (it is ignored by
//! default), `from=LINE` (0-based: the first line looked at; with `back=1` the search goes towards the start
//! from the line before it), `limit=N` (most matches answered, default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]). A line is matched as a reader sees it: without its channel letter and escape sequences.
//! Answer: `{"logid", "matches": [line, …], "meta": {"next_from": LINE}}`, the matches in search order; `next_from`
//! is where to go on when the search stopped before the end (or start) of the log: at `limit` matches, or after
//! [`SCAN_BYTES`] of text. So one request costs a bounded time and memory whatever the log's size.

use axum::extract::{Path, State};
use axum::Json;
use regex::{Regex, RegexBuilder};
use serde_json::{json, Value};

use super::ansi::plain;
use super::logs::{line_param, log_id};
use super::params::Params;
use super::ApiError;
use crate::master::Master;

/// Matches answered when the request does not say.
const DEFAULT_LIMIT: usize = 100;
/// Most matches one answer holds.
const MAX_LIMIT: usize = 1000;
/// Most text (decompressed) one request looks at before it answers with `next_from`.
const SCAN_BYTES: usize = 64 * 1024 * 1024;
/// Chunks read from the store at a time (about 1 MiB of text).
const BATCH_CHUNKS: i64 = 16;
/// Longest query accepted.
const MAX_QUERY: usize = 1000;
/// Most memory a compiled expression may take.
const REGEX_SIZE: usize = 1 << 20;

/// What to look for and where.
#[derive(Debug)]
struct Search {
    pattern: Regex,
    from: Option<i64>,
    back: bool,
    limit: usize,
}

fn flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(ApiError::bad_request(format!("invalid '{name}': '{value}' (0 or 1)"))),
    }
}

fn parse(params: &Params) -> Result<Search, ApiError> {
    let (mut q, mut regex, mut case, mut from, mut back, mut limit) = (None, false, false, None, false, DEFAULT_LIMIT);
    for (name, value) in &params.0 {
        match name.as_str() {
            "q" => q = Some(value.clone()),
            "regex" => regex = flag(name, value)?,
            "case" => case = flag(name, value)?,
            "back" => back = flag(name, value)?,
            "from" => from = Some(line_param(name, value)?),
            "limit" => {
                limit = usize::try_from(line_param(name, value)?)
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| ApiError::bad_request(format!("invalid 'limit': '{value}' (1 to {MAX_LIMIT})")))?
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{name}' (search takes q, regex, case, from, back and limit)"
                )))
            }
        }
    }
    let q = q.filter(|q| !q.is_empty()).ok_or_else(|| ApiError::bad_request("search needs a non-empty 'q'"))?;
    if q.len() > MAX_QUERY {
        return Err(ApiError::bad_request(format!("'q' is {} bytes long; at most {MAX_QUERY} are accepted", q.len())));
    }
    let source = if regex { q.clone() } else { regex::escape(&q) };
    let pattern = RegexBuilder::new(&source)
        .case_insensitive(!case)
        .size_limit(REGEX_SIZE)
        .build()
        .map_err(|e| ApiError::bad_request(format!("invalid regular expression '{q}': {e}")))?;
    Ok(Search { pattern, from, back, limit })
}

/// The matching lines of `chunks` (each its first line's number and its text) in search order, among the lines
/// from `from` on (forward) or before `from` (back).
fn scan(chunks: &[(i64, String)], search: &Search, from: i64, strip: bool) -> Vec<i64> {
    let mut found = Vec::new();
    let matches = |line: &str| {
        let line = if strip { line.get(1..).unwrap_or_default() } else { line };
        search.pattern.is_match(&plain(line))
    };
    for (first, text) in chunks {
        let lines = (*first..).zip(text.split_terminator('\n'));
        if search.back {
            let lines: Vec<_> = lines.take_while(|(n, _)| *n < from).collect();
            found.extend(lines.into_iter().rev().filter(|(_, l)| matches(l)).map(|(n, _)| n));
        } else {
            found.extend(lines.filter(|(n, l)| *n >= from && matches(l)).map(|(n, _)| n));
        }
    }
    found
}

/// `GET /logs/{id}/search`.
pub(super) async fn search(
    State(m): State<Master>,
    Path(l): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let logid = log_id(&l)?;
    let search = std::sync::Arc::new(parse(&params)?);
    let origin = m.store().log_origin(logid).await?.ok_or_else(|| ApiError::not_found(format!("no log {logid}")))?;
    let strip = origin.log.log_type == "s";
    let end = origin.log.num_lines;
    let mut at = match (search.from, search.back) {
        (Some(from), _) => from,
        (None, false) => 0,
        (None, true) => end,
    };
    let (mut matches, mut scanned, mut next_from) = (Vec::new(), 0usize, None);
    loop {
        let chunks = m.store().log_chunk_texts(logid, at, BATCH_CHUNKS, search.back).await?;
        let Some((last_first, last_text)) = chunks.last() else { break };
        scanned += chunks.iter().map(|c| c.1.len()).sum::<usize>();
        // Where the next batch starts: after the last chunk's lines, or (back) before its first line.
        let after = if search.back {
            *last_first
        } else {
            last_first.saturating_add(i64::try_from(last_text.matches('\n').count()).unwrap_or(i64::MAX))
        };
        let (task, from) = (search.clone(), at);
        let found = tokio::task::spawn_blocking(move || scan(&chunks, &task, from, strip))
            .await
            .map_err(|e| ApiError::internal(format!("searching log {logid}: {e}")))?;
        matches.extend(found.into_iter().take(search.limit - matches.len()));
        if matches.len() == search.limit {
            // Full: go on after (or before) the last match.
            next_from = matches.last().map(|&n| if search.back { n } else { n + 1 });
            break;
        }
        at = after;
        if (search.back && at <= 0) || (!search.back && at >= end) {
            break;
        }
        if scanned >= SCAN_BYTES {
            next_from = Some(at);
            break;
        }
    }
    let mut meta = json!({});
    if let Some(next) = next_from {
        meta["next_from"] = json!(next);
    }
    Ok(Json(json!({ "logid": logid, "matches": matches, "meta": meta })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(query: &[(&str, &str)]) -> Result<Search, ApiError> {
        parse(&Params(query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    #[test]
    fn lines_match_as_a_reader_sees_them() {
        let chunks = vec![
            (0, "ohello\noERROR: \u{1b}[31mdisk\u{1b}[0m full\neerror: again\n".to_string()),
            (3, "oerror:\nonothing\n".to_string()),
        ];
        let s = search(&[("q", "error: disk")]).expect("search");
        assert_eq!(scan(&chunks, &s, 0, true), vec![1]);
        let s = search(&[("q", "error"), ("case", "1")]).expect("search");
        assert_eq!(scan(&chunks, &s, 0, true), vec![2, 3]);
        assert_eq!(scan(&chunks, &s, 3, true), vec![3]);
        // Back, the store gives the nearest chunk first.
        let s = search(&[("q", "^e"), ("regex", "1"), ("back", "1")]).expect("search");
        let backward: Vec<_> = chunks.iter().rev().cloned().collect();
        assert_eq!(scan(&backward, &s, 4, true), vec![3, 2, 1]);
        // Unstripped, the channel letter is part of the line.
        assert_eq!(scan(&backward, &s, 5, false), vec![2]);
    }

    #[test]
    fn bad_searches_are_refused_with_the_reason() {
        let message = |q: &[(&str, &str)]| search(q).expect_err("refused").message;
        assert!(message(&[]).contains("'q'"));
        assert!(message(&[("q", "("), ("regex", "1")]).contains("invalid regular expression '('"));
        assert!(message(&[("q", "x"), ("limit", "0")]).contains("'limit'"));
        assert!(message(&[("q", "x"), ("limit", "5000")]).contains("'limit'"));
        assert!(message(&[("q", "x"), ("regex", "yes")]).contains("'regex'"));
        assert!(message(&[("q", "x"), ("after", "1")]).contains("unknown parameter 'after'"));
        let long = "x".repeat(MAX_QUERY + 1);
        assert!(message(&[("q", &long)]).contains("at most"));
        // A literal query is not an expression.
        assert!(search(&[("q", "(")]).is_ok());
    }
}
