//! End-to-end: clients follow a running build live, from a real `kiln start` master with a real worker, over
//! `/api/v2/events` (SSE), `/ws` (Buildbot's protocol) and `/api/v2/logs/{id}/follow`.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{toml_str, KilnMaster};
use tokio_tungstenite::tungstenite::Message;

/// The longest a test waits for one message that must come (a build's step takes well under this).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// A client of an event stream, reading it as `EventSource` does.
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
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(response.status(), 200, "{url}");
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
                if !data.is_empty() {
                    let data = serde_json::from_str(&data.join("\n")).expect("JSON data");
                    return Sse { id, event, data };
                }
                continue;
            }
            let chunk = tokio::time::timeout(MESSAGE_TIMEOUT, self.response.chunk()).await.expect("an event in time");
            let chunk = chunk.expect("read").expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(MESSAGE_TIMEOUT, socket.next()).await.expect("a frame in time");
        match frame.expect("open").expect("read") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// The patterns both clients follow: builds, their steps, the steps' logs.
const PATTERNS: [&str; 3] = ["builds/*/*", "builds/*/steps/*/*", "steps/*/logs/*/*"];

/// `(first_line, lines)` of a follow `lines` message, checking that its id is the line after its last.
fn lines_of(message: &Sse) -> (i64, Vec<String>) {
    assert_eq!(message.event, "lines", "{message:?}");
    let first = message.data["first_line"].as_i64().expect("first_line");
    let lines: Vec<String> = serde_json::from_value(message.data["lines"].clone()).expect("lines");
    assert_eq!(message.id, Some((first + lines.len() as i64).to_string()), "{message:?}");
    (first, lines)
}

/// A build whose one step prints two lines, waits for a file, then prints a third, followed by an SSE client,
/// a `/ws` client and a log follower that disconnects mid-log and comes back with its last id.
#[tokio::test]
async fn clients_follow_a_running_build_in_order_over_sse_ws_and_the_log_follow() {
    let marks = tempfile::tempdir().expect("create a temporary directory");
    let flag = marks.path().join("go-on");
    let command = format!("echo one; echo two; while [ ! -e '{}' ]; do sleep 0.05; done; echo three", flag.display());
    let builder = format!("[[builder.step]]\nname = \"live\"\ncommand = {}\ntimeout = 0\n", toml_str(command));
    let mut master = KilnMaster::builder().worker("w1", "pw-1").builder("live", &builder).start().await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;

    let query: Vec<String> = PATTERNS.iter().map(|p| format!("path={p}")).collect();
    let mut sse = SseClient::open(&format!("{}/api/v2/events?{}", master.url(), query.join("&")), None).await;
    let ws_url = format!("{}/ws", master.url().replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.expect("connect to /ws");
    for (id, path) in PATTERNS.iter().enumerate() {
        ws.send(Message::text(json!({ "cmd": "startConsuming", "path": path, "_id": id }).to_string()))
            .await
            .expect("send");
        assert_eq!(ws_next(&mut ws).await, json!({ "msg": "OK", "code": 200, "_id": id }));
    }

    let brid = master.force("live").await;

    // SSE: the build starts, its step starts, its log is added and grows while the command waits.
    let mut names = Vec::new();
    let mut appended: Vec<(i64, i64)> = Vec::new();
    let (buildid, stepid, logid) = {
        let (mut buildid, mut stepid) = (None, None);
        loop {
            let event = sse.next().await;
            names.push(event.event.clone());
            match event.event.as_str() {
                "build_started" => buildid = event.data["buildid"].as_i64(),
                "step_started" => stepid = event.data["stepid"].as_i64(),
                "log_added" => {
                    let logid = event.data["logid"].as_i64().expect("logid");
                    if master.get_one(&format!("logs/{logid}")).await["slug"] == "stdio" {
                        break (buildid.expect("started"), stepid.expect("step started"), logid);
                    }
                }
                _ => {}
            }
        }
    };
    assert_eq!(master.builds_of_request(brid).await[0]["buildid"], buildid);

    // The follower reads the running log up to `two`, leaves, and comes back with its last id.
    let follow_url = format!("{}/api/v2/logs/{logid}/follow?from=0", master.url());
    let mut follower = SseClient::open(&follow_url, None).await;
    let mut lines: Vec<String> = Vec::new();
    let mut last_id = None;
    while !lines.iter().any(|l| l == "otwo") {
        let message = follower.next().await;
        let (first, got) = lines_of(&message);
        assert_eq!(first, lines.len() as i64, "no gap, no repeat");
        lines.extend(got);
        last_id = message.id;
    }
    assert_eq!(master.step(buildid, "live").await["complete"], false, "the command waits for the flag");
    drop(follower);
    std::fs::write(&flag, "").expect("create the flag");
    let mut follower = SseClient::open(&follow_url, last_id.as_deref()).await;
    let finished = loop {
        let message = follower.next().await;
        if message.event == "finished" {
            break message;
        }
        let (first, got) = lines_of(&message);
        assert_eq!(first, lines.len() as i64, "the reconnected follower goes on where it left: {message:?}");
        lines.extend(got);
    };
    let stdio = master.log(stepid, "stdio").await;
    assert_eq!(finished.data, json!({ "logid": logid, "num_lines": lines.len() }), "{}", stdio.dump());
    let output: Vec<&str> = lines.iter().filter(|l| l.starts_with('o')).map(|l| &l[1..]).collect();
    assert_eq!(output, ["one", "two", "three"], "every line once, in order: {lines:?}");

    // SSE: the rest, up to the build's end; the log's ranges follow each other from line 0.
    loop {
        let event = sse.next().await;
        names.push(event.event.clone());
        if event.event == "log_appended" && event.data["logid"] == logid {
            appended
                .push((event.data["first_line"].as_i64().expect("first"), event.data["count"].as_i64().expect("n")));
        }
        if event.event == "build_finished" {
            assert_eq!((&event.data["buildid"], &event.data["results"]), (&json!(buildid), &json!(results::SUCCESS)));
            break;
        }
    }
    let position = |name: &str| names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no {name}: {names:?}"));
    let last_append = names.iter().rposition(|n| n == "log_appended").expect("appends");
    assert!(position("build_started") < position("step_started"), "{names:?}");
    assert!(position("step_started") < position("log_added"), "{names:?}");
    assert!(position("log_added") < position("log_appended"), "{names:?}");
    assert!(last_append < position("step_finished"), "{names:?}");
    assert!(position("step_finished") < position("build_finished"), "{names:?}");
    let mut next_line = 0;
    for (first, count) in &appended {
        assert_eq!(*first, next_line, "appended ranges {appended:?}");
        next_line += count;
    }
    assert_eq!(next_line, lines.len() as i64, "appended ranges {appended:?}");

    // /ws: the same story as Buildbot's routing keys, each with the resource as the REST API shows it.
    let mut keys = Vec::new();
    let finished_build = loop {
        let message = ws_next(&mut ws).await;
        let key = message["k"].as_str().unwrap_or_else(|| panic!("an event: {message}")).to_string();
        keys.push(key.clone());
        if key == format!("builds/{buildid}/finished") {
            break message["m"].clone();
        }
    };
    let at = |key: String| keys.iter().position(|k| *k == key).unwrap_or_else(|| panic!("no {key}: {keys:?}"));
    let log_append = at(format!("steps/{stepid}/logs/stdio/append"));
    assert!(at(format!("builds/{buildid}/new")) < at(format!("builds/{buildid}/steps/{stepid}/started")));
    assert!(at(format!("builds/{buildid}/steps/{stepid}/started")) < at(format!("steps/{stepid}/logs/stdio/new")));
    assert!(at(format!("steps/{stepid}/logs/stdio/new")) < log_append);
    assert!(log_append < at(format!("builds/{buildid}/steps/{stepid}/finished")), "{keys:?}");
    let mut rest = master.get_one(&format!("builds/{buildid}")).await;
    rest["properties"] = json!({});
    // Who stopped it is Kiln's own field, from the audit: the REST API adds it, Buildbot's messages have none.
    rest.as_object_mut().expect("a build").remove("stopped_by");
    assert_eq!(finished_build, rest, "the build as the REST API shows it, with Buildbot's empty properties");
    assert_eq!((&finished_build["complete"], &finished_build["results"]), (&json!(true), &json!(results::SUCCESS)));
}

/// Every pattern a Buildbot UI uses for one build's page.
const BUILD_PAGE_PATTERNS: [&str; 6] =
    ["builds/*/*", "builders/*/builds/*/*", "builds/*/steps/*/*", "steps/*/*", "logs/*/*", "steps/*/logs/*/*"];

/// The `/ws` messages at `www` about one build, forced by `force` (which returns the build request id), up to
/// that build's `finished`: (key with its ids made `N`, the message's resource).
async fn ws_story<F: std::future::Future<Output = i64>>(www: &str, force: F) -> Vec<(String, Value)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", www.replace("http://", "ws://")).as_str())
        .await
        .expect("connect to /ws");
    for (id, path) in BUILD_PAGE_PATTERNS.iter().enumerate() {
        ws.send(Message::text(json!({ "cmd": "startConsuming", "path": path, "_id": id }).to_string()))
            .await
            .expect("send");
        assert_eq!(ws_next(&mut ws).await, json!({ "msg": "OK", "code": 200, "_id": id }));
    }
    let _brid = force.await;
    let mut story = Vec::new();
    loop {
        let message = ws_next(&mut ws).await;
        let key = message["k"].as_str().unwrap_or_else(|| panic!("an event: {message}"));
        let shape: Vec<&str> =
            key.split('/').map(|s| if s.bytes().all(|b| b.is_ascii_digit()) { "N" } else { s }).collect();
        let shape = shape.join("/");
        let done = shape == "builds/N/finished";
        story.push((shape, message["m"].clone()));
        if done {
            return story;
        }
    }
}

/// The field names of the resources under keys of `shape`.
fn fields(story: &[(String, Value)], shape: &str) -> std::collections::BTreeSet<String> {
    story
        .iter()
        .filter(|(k, _)| k == shape)
        .flat_map(|(_, m)| m.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default())
        .collect()
}

/// `/ws` against a real Buildbot 4.3.0 master for the same one-step build: Kiln sends its messages under
/// Buildbot's keys, with resources of the same field names.
#[tokio::test]
async fn ws_messages_match_buildbots_for_one_build() {
    use std::collections::BTreeSet;
    use support::buildbot::BuildbotMaster;

    let command = "echo one; echo two";
    let mut buildbot = BuildbotMaster::builder()
        .worker("w1", "pw-1")
        .builder("live", &format!("[steps.ShellCommand(command={}, name='live')]", support::buildbot::py(command)))
        .start()
        .await;
    buildbot.start_worker(WorkerKind::Kiln, "w1").await;
    buildbot.wait_worker_connected("w1").await;
    let theirs = ws_story(buildbot.url(), buildbot.force("live")).await;

    let builder = format!("[[builder.step]]\nname = \"live\"\ncommand = {}\n", toml_str(command));
    let mut kiln = KilnMaster::builder().worker("w1", "pw-1").builder("live", &builder).start().await;
    kiln.start_worker(WorkerKind::Kiln, "w1").await;
    kiln.wait_worker_connected("w1").await;
    let ours = ws_story(kiln.url(), kiln.force("live")).await;

    let shapes = |story: &[(String, Value)]| story.iter().map(|(k, _)| k.clone()).collect::<BTreeSet<_>>();
    let (their_keys, our_keys) = (shapes(&theirs), shapes(&ours));
    let only_ours: Vec<_> = our_keys.difference(&their_keys).collect();
    assert!(only_ours.is_empty(), "keys Buildbot never sends: {only_ours:?}\nBuildbot's: {their_keys:?}");
    // Kiln's steps start as they are added, with their state string: Buildbot's `new` (a step added, not
    // started yet) and `updated` (its first state string) have no event of their own.
    let missing: BTreeSet<_> = their_keys.difference(&our_keys).cloned().collect();
    let expected: BTreeSet<String> =
        ["builds/N/steps/N/new", "steps/N/new", "builds/N/steps/N/updated", "steps/N/updated"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(missing, expected, "keys Kiln does not send\nBuildbot's: {their_keys:?}\nKiln's: {our_keys:?}");

    // The resources' fields: Kiln's are Buildbot's, but for what Kiln does not have yet.
    let mut differences = Vec::new();
    for shape in ["builds/N/new", "builds/N/finished", "builds/N/steps/N/finished", "logs/N/append", "logs/N/finished"]
    {
        let (their_fields, our_fields) = (fields(&theirs, shape), fields(&ours, shape));
        let only_ours: Vec<&String> = our_fields.difference(&their_fields).collect();
        assert!(only_ours.is_empty(), "{shape}: fields Buildbot does not have: {only_ours:?}");
        for field in their_fields.difference(&our_fields) {
            differences.push(format!("{shape}: {field}"));
        }
    }
    // Kiln does not measure how long builds and steps wait for their locks (yet).
    let known = [
        "builds/N/new: locks_duration_s",
        "builds/N/finished: locks_duration_s",
        "builds/N/steps/N/finished: locks_acquired_at",
    ];
    assert_eq!(differences, known, "fields Kiln's resources lack");
}
