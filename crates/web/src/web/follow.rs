//! `GET /api/v2/logs/{id}/follow?from=N`: a log's lines as Server-Sent Events, the stored ones from line `N`
//! and then the new ones as they are stored, until the log is finished.
//!
//! Each `lines` message carries a run of consecutive lines (`{"logid", "first_line", "lines": [...]}`, each line
//! as stored: stdio logs keep their channel letter) and has as `id:` the number of the line after its last, so a
//! client that reconnects with `Last-Event-ID` goes on exactly where it stopped; a `finished` message
//! (`{"logid", "num_lines"}`) ends the stream. The lines are always read from the store, by range and at most
//! [`PAGE_LINES`] at a time, only as fast as the client takes them: the bus's `LogAppended` events only say
//! that there is more to read, so an event lost (a lagged subscription) loses no line.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::{live_headers, KEEPALIVE};
use super::handlers::find;
use super::logs::{line_param, log_id};
use super::params::Params;
use super::ApiError;
use crate::events::{Event, Subscription};
use crate::master::Master;
use crate::store::{FilterValue, Log, StoreError};

/// Most lines one message carries (and one store read fetches).
pub(super) const PAGE_LINES: i64 = 500;
/// How often a follower that heard nothing looks at the store anyway (a safety net, not the mechanism).
const RECHECK: Duration = KEEPALIVE;

/// `GET /api/v2/logs/{id}/follow?from=N`; `Last-Event-ID` (the id of the last message received) wins over
/// `from`.
pub(super) async fn follow(
    State(m): State<Master>,
    Path(l): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let logid = log_id(&l)?;
    let mut from = 0;
    for (name, value) in &params.0 {
        match name.as_str() {
            "from" => from = line_param(name, value)?,
            _ => return Err(ApiError::bad_request(format!("unknown parameter '{name}' (follow takes from)"))),
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        from = line_param("Last-Event-ID", last.to_str().unwrap_or("?").trim())?;
    }
    // Subscribed before the log is read, so that no line stored after the read goes unnoticed.
    let events = m.store().events().subscribe();
    let log = stored_log(&m, logid).await?.ok_or_else(|| ApiError::not_found(format!("no log {logid}")))?;
    let follower = Follower {
        master: m.clone(),
        logid,
        next: from,
        end: log.num_lines,
        complete: log.complete,
        events,
        stop: m.stopping().clone(),
        done: false,
    };
    let stream = lines_stream(follower);
    Ok((live_headers(), Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE))).into_response())
}

async fn stored_log(m: &Master, logid: i64) -> Result<Option<Log>, ApiError> {
    find::<Log>(m, vec![("logid", FilterValue::Int(logid))]).await
}

/// One client's place in a log.
struct Follower {
    master: Master,
    logid: i64,
    /// The next line to send.
    next: i64,
    /// How many lines the log has, as far as this follower knows.
    end: i64,
    complete: bool,
    events: Subscription,
    stop: CancellationToken,
    done: bool,
}

fn lines_stream(follower: Follower) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send {
    futures_util::stream::unfold(follower, |mut follower| async move {
        let message = follower.next_message().await?;
        Some((Ok(message), follower))
    })
}

impl Follower {
    async fn next_message(&mut self) -> Option<SseEvent> {
        while !self.done {
            if self.next < self.end {
                match self.read_page().await {
                    Ok(Some(message)) => return Some(message),
                    // The store has fewer lines than an event said: believe the store.
                    Ok(None) => self.end = self.next,
                    Err(e) => return Some(self.failed(e.to_string())),
                }
                continue;
            }
            if self.complete {
                self.done = true;
                let data = json!({ "logid": self.logid, "num_lines": self.end });
                return Some(SseEvent::default().id(self.next.to_string()).event("finished").data(data.to_string()));
            }
            let heard = tokio::select! {
                () = self.stop.cancelled() => return None,
                heard = tokio::time::timeout(RECHECK, self.events.recv()) => heard,
            };
            match heard {
                Ok(Ok(Some(published))) => self.note(&published.event),
                Ok(Ok(None)) => return None,
                // Lagged (events were lost) or nothing heard for a while: ask the store.
                Ok(Err(_)) | Err(_) => {
                    if let Err(e) = self.refresh().await {
                        return Some(self.failed(e));
                    }
                }
            }
        }
        None
    }

    /// What an event says about this log.
    fn note(&mut self, event: &Event) {
        match *event {
            Event::LogAppended { logid, first_line, count, .. } if logid == self.logid => {
                self.end = self.end.max(first_line.saturating_add(count));
            }
            Event::LogFinished { logid, num_lines, .. } if logid == self.logid => {
                self.end = self.end.max(num_lines);
                self.complete = true;
            }
            _ => {}
        }
    }

    async fn refresh(&mut self) -> Result<(), String> {
        match stored_log(&self.master, self.logid).await.map_err(|e| e.message)? {
            Some(log) => {
                self.end = self.end.max(log.num_lines);
                self.complete = log.complete;
            }
            // The log is gone (its build was deleted): nothing more will come.
            None => self.complete = true,
        }
        Ok(())
    }

    /// The next page of lines as a message; `None` if the store has none there.
    async fn read_page(&mut self) -> Result<Option<SseEvent>, StoreError> {
        let count = PAGE_LINES.min(self.end - self.next);
        let lines = self.master.store().log_lines(self.logid, self.next, count).await?;
        if lines.is_empty() {
            return Ok(None);
        }
        let first_line = self.next;
        self.next = first_line.saturating_add(i64::try_from(lines.len()).unwrap_or(i64::MAX));
        let data = json!({ "logid": self.logid, "first_line": first_line, "lines": lines });
        Ok(Some(SseEvent::default().id(self.next.to_string()).event("lines").data(data.to_string())))
    }

    /// An `error` message, which ends the stream.
    fn failed(&mut self, error: String) -> SseEvent {
        tracing::error!(logid = self.logid, %error, "following a log");
        self.done = true;
        SseEvent::default().event("error").data(json!({ "error": error }).to_string())
    }
}
