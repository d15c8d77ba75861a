//! The live endpoints (`/api/v2/events`, `/api/v2/logs/{id}/follow`, `/ws`) over real sockets, on the web
//! tests' master; the tests publish on its bus themselves where the store's own writes do not.

use std::time::Duration;

use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::follow::PAGE_LINES;
use super::tests::{fixture, Fixture};
use crate::events::Event;
use crate::store::LogType;

/// The longest a test waits for a message that must come.
const WAIT: Duration = Duration::from_secs(10);

/// The fixture's master served on a socket until dropped.
struct Server {
    base: String,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(f: &Fixture) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    tokio::spawn(super::serve(listener, f.master.clone(), stop.clone()));
    Server { base: format!("http://{address}"), stop }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// A client of an event stream, reading it as a browser's `EventSource` does.
struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    async fn open(url: &str, last_event_id: Option<&str>) -> SseClient {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("connect");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
        assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
        SseClient { response, buffer: String::new() }
    }

    /// The next event (comments skipped).
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_string(), Vec::new());
                for line in block.lines().filter(|l| !l.starts_with(':')) {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = Some(value.to_string()),
                        "event" => event = value.to_string(),
                        "data" => data.push(value.to_string()),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data.join("\n")).expect("JSON data");
                return Sse { id, event, data };
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk()).await.expect("an event in time");
            let chunk = chunk.expect("read").expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Reads to the end of the stream, which must come.
    async fn end(mut self) {
        loop {
            let chunk = tokio::time::timeout(WAIT, self.response.chunk()).await.expect("the end in time");
            match chunk.expect("read") {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => break,
            }
        }
        assert!(self.buffer.trim().is_empty() || self.buffer.starts_with(':'), "unread: {}", self.buffer);
    }
}

fn build_started(buildid: i64) -> Event {
    Event::BuildStarted { buildid, builderid: 3, number: 1, brid: 1, workerid: 1, masterid: 1 }
}

#[tokio::test]
async fn events_that_match_come_in_order_and_a_client_resumes_after_its_last_id() {
    let f = fixture().await;
    let server = serve(&f).await;
    let bus = f.master.store().events().clone();
    let url = format!("{}/api/v2/events?path=builds/4242/*&path=logs/*/finished", server.base);
    let mut client = SseClient::open(&url, None).await;
    let before = bus.last_seq();
    bus.publish(build_started(4242));
    bus.publish(Event::ChangeAdded { changeid: 1 });
    bus.publish(build_started(4343));
    bus.publish(Event::LogFinished { logid: 17, stepid: 5, num_lines: 3 });
    bus.publish(Event::BuildFinished { buildid: 4242, builderid: 3, results: 0, state_string: "done".into() });

    let first = client.next().await;
    let id = |n: u64| Some((before + n).to_string());
    assert_eq!(
        first,
        Sse {
            id: id(1),
            event: "build_started".into(),
            data: json!({
                "event": "build_started", "keys": ["builds/4242/new", "builders/3/builds/4242/new"],
                "buildid": 4242, "builderid": 3, "number": 1, "brid": 1, "workerid": 1, "masterid": 1,
            }),
        }
    );
    let second = client.next().await;
    assert_eq!((&second.id, second.event.as_str(), &second.data["logid"]), (&id(4), "log_finished", &json!(17)));
    let third = client.next().await;
    assert_eq!((&third.id, third.event.as_str(), &third.data["results"]), (&id(5), "build_finished", &json!(0)));
    drop(client);

    // Reconnecting with the first id gets the two others, from the header or from the parameter.
    let mut resumed = SseClient::open(&url, first.id.as_deref()).await;
    assert_eq!(resumed.next().await, second);
    assert_eq!(resumed.next().await, third);
    let with_param = format!("{url}&last_event_id={}", before + 1);
    let mut resumed = SseClient::open(&with_param, None).await;
    assert_eq!(resumed.next().await, second);
    drop(resumed);

    // A number the bus does not hold: reset, with the number to resume from, then live.
    let mut lost = SseClient::open(&url, Some("999999999")).await;
    let reset = lost.next().await;
    assert_eq!((reset.event.as_str(), &reset.id), ("reset", &Some(bus.last_seq().to_string())));
    assert_eq!(reset.data["last_event_id"], bus.last_seq());
    bus.publish(build_started(4242));
    assert_eq!(lost.next().await.id, Some(bus.last_seq().to_string()));

    // The stream ends when the master stops.
    f.master.stopping().cancel();
    lost.end().await;
}

#[tokio::test]
async fn a_bad_filter_or_resume_point_is_a_bad_request() {
    let f = fixture().await;
    for uri in ["/api/v2/events?path=builds//new", "/api/v2/events?last_event_id=x", "/api/v2/events?topic=builds"] {
        let (status, body) = f.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{uri}: {body}");
    }
    let (status, body) = f.get("/api/v2").await;
    assert_eq!(status, StatusCode::OK);
    let paths: Vec<&str> =
        body["endpoints"].as_array().expect("list").iter().filter_map(|e| e["path"].as_str()).collect();
    assert!(paths.contains(&"events") && paths.contains(&"logs/{logid}/follow"), "{paths:?}");
}

/// `(first_line, lines)` of a `lines` message, checking that its id is the line after its last.
fn lines_of(message: &Sse) -> (i64, Vec<String>) {
    assert_eq!(message.event, "lines", "{message:?}");
    let first = message.data["first_line"].as_i64().expect("first_line");
    let lines: Vec<String> = serde_json::from_value(message.data["lines"].clone()).expect("lines");
    assert_eq!(message.id, Some((first + lines.len() as i64).to_string()), "{message:?}");
    (first, lines)
}

#[tokio::test]
async fn following_a_log_gives_every_line_once_across_a_reconnection_then_its_end() {
    let f = fixture().await;
    let server = serve(&f).await;
    let store = f.master.store();
    let bus = store.events();
    let (_, buildid, _) = f.linux_build().await;
    let (stepid, _) = store.add_step(buildid, "compile").await.expect("step");
    let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
    let append = |text: String| async move {
        let range = store.append_log(logid, &text).await.expect("append");
        bus.publish(Event::LogAppended { logid, stepid, first_line: range.start, count: range.end - range.start });
    };
    append((0..3).map(|i| format!("oline {i}\n")).collect()).await;

    let url = format!("{}/api/v2/logs/{logid}/follow?from=1", server.base);
    let mut client = SseClient::open(&url, None).await;
    assert_eq!(lines_of(&client.next().await), (1, vec!["oline 1".to_string(), "oline 2".to_string()]));
    append("oline 3\neline 4\n".into()).await;
    let (first, lines) = lines_of(&client.next().await);
    assert_eq!((first, lines.as_slice()), (3, ["oline 3".to_string(), "eline 4".to_string()].as_slice()));
    drop(client);

    // While no one follows, the log grows past a page and ends.
    let many = PAGE_LINES + 10;
    append((5..5 + many).map(|i| format!("oline {i}\n")).collect()).await;
    store.finish_log(logid).await.expect("finish");
    bus.publish(Event::LogFinished { logid, stepid, num_lines: 5 + many });

    let mut resumed = SseClient::open(&url, Some("5")).await;
    let mut seen = Vec::new();
    let finished = loop {
        let message = resumed.next().await;
        if message.event == "finished" {
            break message;
        }
        let (first, lines) = lines_of(&message);
        assert!(lines.len() as i64 <= PAGE_LINES);
        assert_eq!(first, 5 + seen.len() as i64, "no gap, no repeat");
        seen.extend(lines);
    };
    assert_eq!(seen, (5..5 + many).map(|i| format!("oline {i}")).collect::<Vec<_>>());
    assert_eq!(finished.data, json!({ "logid": logid, "num_lines": 5 + many }));
    assert_eq!(finished.id, Some((5 + many).to_string()));
    resumed.end().await;

    // A finished log is read to its end and closed; an unknown one is not found.
    let mut whole = SseClient::open(&format!("{}/api/v2/logs/{logid}/follow", server.base), None).await;
    assert_eq!(lines_of(&whole.next().await).0, 0);
    let (status, _) = f.get("/api/v2/logs/999/follow").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.get(&format!("/api/v2/logs/{logid}/follow?from=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.expect("send");
}

async fn ws_next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next()).await.expect("a frame in time");
        match frame.expect("open").expect("read") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn ws_speaks_buildbots_protocol_with_resources_rendered_as_the_rest_api() {
    let f = fixture().await;
    let server = serve(&f).await;
    let (_, buildid, number) = f.linux_build().await;
    let builderid = f.master.builder_id("linux").expect("builder");
    let url = format!("{}/ws", server.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");

    ws_send(&mut socket, json!({ "cmd": "startConsuming", "path": format!("builds/{buildid}/*"), "_id": 1 })).await;
    assert_eq!(ws_next(&mut socket).await, json!({ "msg": "OK", "code": 200, "_id": 1 }));
    ws_send(&mut socket, json!({ "cmd": "startConsuming", "path": "builders/*/builds/*/*", "_id": 2 })).await;
    assert_eq!(ws_next(&mut socket).await, json!({ "msg": "OK", "code": 200, "_id": 2 }));

    let bus = f.master.store().events();
    bus.publish(Event::BuildUpdated { buildid, builderid, state_string: "building".into() });
    let mut rest = f.list(&format!("/api/v2/builds/{buildid}"), "builds").await.remove(0);
    rest["properties"] = json!({}); // as Buildbot's build messages
    if let Some(build) = rest.as_object_mut() {
        build.remove("stopped_by"); // read from the audit by the REST API only
    }
    // Key by key in Buildbot's order: under the builder (by number) first.
    assert_eq!(
        ws_next(&mut socket).await,
        json!({ "k": format!("builders/{builderid}/builds/{number}/update"), "m": rest }),
        "under the builder by number, as Buildbot"
    );
    assert_eq!(ws_next(&mut socket).await, json!({ "k": format!("builds/{buildid}/update"), "m": rest }));

    // Once stopped, a path sends nothing: the next frame is the pong.
    ws_send(&mut socket, json!({ "cmd": "stopConsuming", "path": format!("builds/{buildid}/*"), "_id": 3 })).await;
    assert_eq!(ws_next(&mut socket).await, json!({ "msg": "OK", "code": 200, "_id": 3 }));
    ws_send(&mut socket, json!({ "cmd": "stopConsuming", "path": "builders/*/builds/*/*", "_id": 4 })).await;
    assert_eq!(ws_next(&mut socket).await, json!({ "msg": "OK", "code": 200, "_id": 4 }));
    bus.publish(Event::BuildUpdated { buildid, builderid, state_string: "still building".into() });
    ws_send(&mut socket, json!({ "cmd": "ping", "_id": 5 })).await;
    assert_eq!(ws_next(&mut socket).await, json!({ "msg": "pong", "code": 200, "_id": 5 }));
    ws_send(&mut socket, json!({ "cmd": "stopConsuming", "path": "nope", "_id": 6 })).await;
    assert_eq!(ws_next(&mut socket).await, json!({ "error": "path was not consumed 'nope'", "code": 400, "_id": 6 }));

    // The master stopping closes the socket.
    f.master.stopping().cancel();
    let closed = loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame: {other:?}"),
        }
    };
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(1001));
}

#[tokio::test]
async fn ws_without_an_upgrade_says_so() {
    let f = fixture().await;
    let (status, body) = f.get("/ws").await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("WebSocket")), "{body}");
}
