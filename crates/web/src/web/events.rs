//! `GET /api/v2/events`: the master's event bus as Server-Sent Events.
//!
//! Each event is one message: `id:` its sequence number on the bus, `event:` its name (`build_started`, …) and
//! `data:` its JSON (`{"event": name, "keys": [routing keys], ...its fields}`). `?path=PATTERN` (repeatable)
//! keeps only the events with a routing key matching one of the patterns (Buildbot's: `*` is one segment). A
//! client that reconnects with `Last-Event-ID` (or `?last_event_id=`) gets the events it missed, from the bus's
//! retained window; when they are no longer all retained, or when the client read too slowly and lost events,
//! it gets `event: reset` (re-read the store) and the stream goes on live.
//!
//! Memory is bounded by the bus: a stream reads its subscription only as fast as the client takes the
//! messages, so a slow client falls behind on its own bounded buffer, never on a queue of ours.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::params::Params;
use super::ApiError;
use crate::events::{key_matches, Event, EventBus, Published, Subscription};
use crate::master::Master;

/// A comment goes to an idle stream this often, so proxies and clients see that it is alive.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(15);

/// The event stream's response headers besides axum's `Content-Type` and `Cache-Control`.
pub(super) fn live_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
    ]
}

/// The routing-key patterns a client asked for; none means every event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PathFilter {
    patterns: Vec<String>,
}

impl PathFilter {
    /// The filter of `patterns`, each `segment/segment/...` with `*` for any one segment; empty segments are
    /// refused (a pattern with one would never match).
    pub(crate) fn new(patterns: Vec<String>) -> Result<PathFilter, String> {
        for pattern in &patterns {
            if pattern.split('/').any(str::is_empty) {
                return Err(format!(
                    "invalid path '{pattern}': a routing-key pattern is segments separated by '/', none empty \
                     ('*' matches any one segment, e.g. builds/42/*)"
                ));
            }
        }
        Ok(PathFilter { patterns })
    }

    /// Whether an event published under `keys` passes.
    pub(crate) fn passes(&self, keys: &[String]) -> bool {
        self.patterns.is_empty() || keys.iter().any(|k| self.patterns.iter().any(|p| key_matches(p, k)))
    }
}

/// An event's name (its `event:` field) and its JSON: its fields, `event` and its routing `keys`.
fn message(event: &Event, keys: Vec<String>) -> (String, Value) {
    let mut data = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    let name = data.get("event").and_then(Value::as_str).unwrap_or("event").to_string();
    if let Some(object) = data.as_object_mut() {
        object.insert("keys".into(), json!(keys));
    }
    (name, data)
}

/// A `Last-Event-ID` (header) or `last_event_id` (parameter): the sequence number of the last event seen.
fn resume_point(headers: &HeaderMap, param: Option<&str>) -> Result<Option<u64>, ApiError> {
    let header = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("?"));
    match header.or(param).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid last event id '{text}': the id of an event of this stream"))
        }),
    }
}

/// `GET /api/v2/events?path=...&last_event_id=...`.
pub(super) async fn events(State(m): State<Master>, headers: HeaderMap, params: Params) -> Result<Response, ApiError> {
    let (mut patterns, mut last_event_id) = (Vec::new(), None);
    for (name, value) in &params.0 {
        match name.as_str() {
            "path" => patterns.push(value.clone()),
            "last_event_id" => last_event_id = Some(value.as_str()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{name}' (the event stream takes path and last_event_id)"
                )))
            }
        }
    }
    let filter = PathFilter::new(patterns).map_err(ApiError::bad_request)?;
    let resume = resume_point(&headers, last_event_id)?;
    let stream = live_stream(m.store().events().clone(), filter, resume, m.stopping().clone());
    Ok((live_headers(), Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE))).into_response())
}

/// One message of an event stream, before it is written as SSE.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outgoing {
    pub(crate) id: u64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

impl Outgoing {
    fn sse(self) -> SseEvent {
        SseEvent::default().id(self.id.to_string()).event(self.event).data(self.data.to_string())
    }
}

struct Live {
    bus: EventBus,
    filter: PathFilter,
    sub: Subscription,
    /// A `reset` to send before the next event.
    reset: Option<Outgoing>,
    stop: CancellationToken,
}

/// The messages of the events on `bus` that pass `filter`, after `resume` if given (else from now on), until
/// `stop`. Subscribed when called, so every event published after the call is in the stream.
fn live_stream(
    bus: EventBus,
    filter: PathFilter,
    resume: Option<u64>,
    stop: CancellationToken,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send {
    let live = Live::start(bus, filter, resume, stop);
    futures_util::stream::unfold(live, |mut live| async move {
        let message = live.next().await?;
        Some((Ok(message.sse()), live))
    })
}

impl Live {
    fn start(bus: EventBus, filter: PathFilter, resume: Option<u64>, stop: CancellationToken) -> Live {
        let sub = bus.subscribe();
        let mut live = Live { bus, filter, sub, reset: None, stop };
        if let Some(seq) = resume {
            match live.bus.subscribe_after(seq) {
                Ok(sub) => live.sub = sub,
                Err(too_old) => live.reset = Some(live.reset(&too_old.to_string())),
            }
        }
        live
    }

    /// The next message; `None` when the bus is gone or the master stops.
    async fn next(&mut self) -> Option<Outgoing> {
        if let Some(reset) = self.reset.take() {
            return Some(reset);
        }
        loop {
            let received = tokio::select! {
                received = self.sub.recv() => received,
                () = self.stop.cancelled() => return None,
            };
            match received {
                Ok(Some(published)) => {
                    if let Some(message) = self.render(&published) {
                        return Some(message);
                    }
                }
                Ok(None) => return None,
                Err(lagged) => return Some(self.reset(&lagged.to_string())),
            }
        }
    }

    fn render(&self, published: &Published) -> Option<Outgoing> {
        let keys = published.event.keys();
        if !self.filter.passes(&keys) {
            return None;
        }
        let (event, data) = message(&published.event, keys);
        Some(Outgoing { id: published.seq, event, data })
    }

    /// `event: reset` with the number of the latest event, after which the stream goes on.
    fn reset(&mut self, reason: &str) -> Outgoing {
        // Subscribing after the latest number cannot fail unless thousands of events are published between the
        // two calls; then try again.
        let (seq, sub) = loop {
            let seq = self.bus.last_seq();
            if let Ok(sub) = self.bus.subscribe_after(seq) {
                break (seq, sub);
            }
        };
        self.sub = sub;
        Outgoing { id: seq, event: "reset".into(), data: json!({ "reason": reason, "last_event_id": seq }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_buildbot_routing_keys_one_segment_per_star() {
        let started = Event::BuildStarted { buildid: 42, builderid: 3, number: 7, brid: 9, workerid: 1, masterid: 1 };
        let keys = started.keys();
        let passes = |patterns: &[&str]| {
            PathFilter::new(patterns.iter().map(|p| p.to_string()).collect()).expect("valid").passes(&keys)
        };
        assert!(passes(&[]));
        assert!(passes(&["builds/42/*"]));
        assert!(passes(&["builders/3/builds/*/*"]));
        assert!(passes(&["logs/17/*", "builds/*/new"]));
        assert!(!passes(&["builds/43/*"]));
        assert!(!passes(&["builds/42"]), "the verb is a segment too");
        assert!(!passes(&["builds/*/*/*"]));
        assert!(!passes(&["steps/*/*"]));
        assert!(PathFilter::new(vec!["builds//new".into()]).is_err());
        assert!(PathFilter::new(vec![String::new()]).is_err());
    }

    #[test]
    fn a_message_is_named_after_its_event_and_carries_its_keys_and_fields() {
        let appended = Event::LogAppended { logid: 17, stepid: 5, first_line: 10, count: 3 };
        let (name, data) = message(&appended, appended.keys());
        assert_eq!(name, "log_appended");
        assert_eq!(
            data,
            json!({
                "event": "log_appended",
                "keys": ["logs/17/append", "steps/5/logs/17/append"],
                "logid": 17, "stepid": 5, "first_line": 10, "count": 3,
            })
        );
    }

    #[test]
    fn the_resume_point_comes_from_the_header_first_then_the_parameter() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_point(&headers, None).expect("none"), None);
        assert_eq!(resume_point(&headers, Some("7")).expect("param"), Some(7));
        headers.insert("last-event-id", HeaderValue::from_static("12"));
        assert_eq!(resume_point(&headers, Some("7")).expect("header"), Some(12));
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert!(resume_point(&headers, None).is_err());
    }

    fn change(changeid: i64) -> Event {
        Event::ChangeAdded { changeid }
    }

    async fn next(live: &mut Live) -> Outgoing {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), live.next()).await;
        next.expect("a message in time").expect("the stream goes on")
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_a_reset_then_the_live_events() {
        let bus = EventBus::new();
        let mut live = Live::start(bus.clone(), PathFilter::default(), None, CancellationToken::new());
        for id in 0..(crate::events::SUBSCRIBER_CAPACITY as i64 * 2) {
            bus.publish(change(id));
        }
        let reset = next(&mut live).await;
        let last = bus.last_seq();
        assert_eq!((reset.id, reset.event.as_str()), (last, "reset"));
        assert_eq!(reset.data["last_event_id"], last);
        assert!(reset.data["reason"].as_str().is_some_and(|r| r.contains("lost")), "{}", reset.data);
        bus.publish(change(-1));
        let after = next(&mut live).await;
        assert_eq!((after.id, after.event.as_str(), &after.data["changeid"]), (last + 1, "change_added", &json!(-1)));
    }

    #[tokio::test]
    async fn resuming_replays_what_passes_the_filter_and_a_gap_too_old_is_a_reset() {
        let bus = EventBus::new();
        let filter = PathFilter::new(vec!["changes/*/new".into()]).expect("valid");
        bus.publish(change(1));
        bus.publish(Event::BuildsetAdded { bsid: 1 });
        bus.publish(change(2));
        let mut resumed = Live::start(bus.clone(), filter.clone(), Some(1), CancellationToken::new());
        let replayed = next(&mut resumed).await;
        assert_eq!((replayed.id, &replayed.data["changeid"]), (3, &json!(2)), "the buildset is filtered out");
        bus.publish(change(5));
        assert_eq!(next(&mut resumed).await.id, 4, "then live");

        let mut too_old = Live::start(bus.clone(), filter, Some(99), CancellationToken::new());
        let reset = next(&mut too_old).await;
        assert_eq!((reset.id, reset.event.as_str()), (4, "reset"), "the latest number, to resume from");
        bus.publish(change(6));
        assert_eq!(next(&mut too_old).await.id, 5);
    }

    #[tokio::test]
    async fn a_stream_ends_when_the_master_stops() {
        let stop = CancellationToken::new();
        let mut live = Live::start(EventBus::new(), PathFilter::default(), None, stop.clone());
        stop.cancel();
        assert_eq!(live.next().await, None);
    }
}
