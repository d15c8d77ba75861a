//! The API against a real master on a temporary SQLite store, through the router (and once over a socket).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use crate::config::MasterConfig;
use crate::events::Event;
use crate::master::Master;
use crate::results::CANCELLED;
use crate::store::LogType;

/// A started master (two builders, one worker that never connects, the `github` and `base` change hooks) and its
/// router; shared with the change hook tests.
pub(super) struct Fixture {
    pub(super) master: Master,
    app: Router,
    _dir: tempfile::TempDir,
}

/// The change hooks' secret and token in the fixture's config.
pub(super) const HOOK_SECRET: &str = "It's a Secret to Everybody";
pub(super) const HOOK_TOKEN: &str = "s3cret-token";
/// The fixture's admin user, who makes the control calls (with HTTP Basic, from loopback).
pub(super) const USER: &str = "alice";
pub(super) const PASSWORD: &str = "alice's password";

/// `Authorization` for HTTP Basic as `name`.
pub(super) fn basic(name: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}")))
}

/// A request from 127.0.0.1, as the web server marks each one.
pub(super) fn from_loopback(mut request: Request<Body>) -> Request<Body> {
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
    request.extensions_mut().insert(super::auth::Peer(peer));
    request
}

pub(super) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[store]
url = "sqlite:{}"

[worker_listener]
address = "127.0.0.1:0"

[web]
address = "127.0.0.1:0"

[[worker]]
name = "w1"
password = "pw"

[[builder]]
name = "linux"
workers = ["w1"]
description = "the linux build"
tags = ["os", "linux"]
collapse_requests = false
priority = 7
  [[builder.step]]
  command = "true"

[[builder]]
name = "mac"
workers = ["w1"]
collapse_requests = false
  [[builder.step]]
  command = "true"

[[force_scheduler]]
name = "force-all"
builders = ["linux", "mac"]
label = "Build everything"
priority = 3

[[force_scheduler]]
name = "release"
builders = ["linux"]
reason = "a release"
  [[force_scheduler.parameter]]
  name = "version"
  type = "string"
  regex = '\d+\.\d+'
  required = true
  [[force_scheduler.parameter]]
  name = "jobs"
  type = "int"
  default = 2
  [[force_scheduler.parameter]]
  name = "clean"
  type = "bool"
  [[force_scheduler.parameter]]
  name = "mode"
  type = "choice"
  choices = ["debug", "release"]
  default = "release"

[change_hooks.github]
secret = "{HOOK_SECRET}"

[change_hooks.base]
token = "{HOOK_TOKEN}"

[change_hooks.poller]
token = "{HOOK_TOKEN}"
[[user]]
name = "{USER}"
password_hash = "{hash}"
roles = ["admin"]
"#,
        dir.path().join("state.sqlite").display(),
        hash = crate::auth::password::cheap_hash(PASSWORD),
    );
    let config = MasterConfig::from_str(&text, "master.toml").expect("config");
    let (master, _) = Master::start_with(dir.path(), config).await.expect("master");
    Fixture { app: router(master.clone()), master, _dir: dir }
}

impl Fixture {
    pub(super) async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
        (status, body, headers)
    }

    pub(super) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, body, _) = self.send(Request::get(uri).body(Body::empty()).expect("request")).await;
        (status, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{uri}: not JSON: {body:?}")))
    }

    /// GETs `uri` expecting 200 and returns the body's `plural` list.
    pub(super) async fn list(&self, uri: &str, plural: &str) -> Vec<Value> {
        let (status, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body[plural].as_array().unwrap_or_else(|| panic!("{uri}: no {plural}: {body}")).clone()
    }

    async fn rpc(&self, uri: &str, method: &str, params: Value) -> (StatusCode, Value) {
        let call = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 7 });
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, basic(USER, PASSWORD))
            .body(Body::from(call.to_string()))
            .expect("request");
        let (status, body, _) = self.send(from_loopback(request)).await;
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    /// Forces `builder` (or every builder) through `force-all`; returns the buildset id and the request ids by
    /// builder id.
    async fn force(&self, builder: Option<&str>) -> (i64, Value) {
        let mut params = json!({ "reason": "testing", "owner": "mallory", "branch": "main" });
        if let Some(b) = builder {
            params["builderid"] = json!(b);
        }
        let (status, body) = self.rpc("/api/v2/forceschedulers/force-all", "force", params).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], 7);
        (body["result"][0].as_i64().expect("bsid"), body["result"][1].clone())
    }

    /// A build of `linux` on `w1`, started in the store for a forced request: (request, build id, number).
    pub(super) async fn linux_build(&self) -> (i64, i64, i64) {
        let store = self.master.store();
        let linux = self.builder_id("linux");
        let (_, requests) = self.force(Some("linux")).await;
        let brid = requests[linux.to_string()].as_i64().expect("request");
        let worker = store.find_or_add_worker("w1").await.expect("worker");
        let (buildid, number) = store.add_build(linux, brid, worker, self.master.masterid()).await.expect("build");
        (brid, buildid, number)
    }

    fn builder_id(&self, name: &str) -> i64 {
        self.master.builder_id(name).expect("builder")
    }
}

#[tokio::test]
async fn a_forced_request_waits_and_a_cancel_completes_it() {
    let f = fixture().await;
    let linux = f.builder_id("linux");
    let (bsid, requests) = f.force(Some("linux")).await;
    let brid = requests[linux.to_string()].as_i64().expect("request for linux");
    assert_eq!(requests.as_object().expect("map").len(), 1);

    let (status, body) = f.get(&format!("/api/v2/buildrequests/{brid}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["meta"], json!({ "total": 1 }));
    let br = &body["buildrequests"][0];
    assert_eq!(br["buildrequestid"], brid);
    assert_eq!(br["buildsetid"], bsid);
    assert_eq!(br["builderid"], linux);
    assert_eq!((&br["complete"], &br["claimed"], &br["results"]), (&json!(false), &json!(false), &Value::Null));
    assert_eq!((&br["complete_at"], &br["claimed_by_masterid"]), (&Value::Null, &Value::Null));
    assert!(br["submitted_at"].as_i64().is_some_and(|t| t > 1_600_000_000));
    for key in ["priority", "waited_for", "superseded_by"] {
        assert!(br.get(key).is_some(), "{key} missing from {br}");
    }

    let bs = &f.list(&format!("/api/v2/buildsets/{bsid}"), "buildsets").await[0];
    assert_eq!(
        (&bs["reason"], &bs["scheduler"], &bs["complete"]),
        (&json!("testing"), &json!("force-all"), &json!(false))
    );
    let props = &f.list(&format!("/api/v2/buildsets/{bsid}/properties"), "properties").await[0];
    assert_eq!(props["owner"], json!(["alice", "Force Build Form"]));
    assert_eq!(props.get("branch"), None, "the branch is the source stamp's: {props}");
    assert_eq!(props["scheduler"], json!(["force-all", "Scheduler"]));
    assert_eq!(bs["sourcestamps"][0]["branch"], "main", "{bs}");

    let (status, body) = f.rpc(&format!("/api/v2/buildrequests/{brid}"), "cancel", json!({})).await;
    assert_eq!((status, &body["result"], &body["id"]), (StatusCode::OK, &Value::Null, &json!(7)), "{body}");
    let br = &f.list(&format!("/api/v2/buildrequests/{brid}"), "buildrequests").await[0];
    assert_eq!((&br["complete"], &br["results"]), (&json!(true), &json!(CANCELLED)));
    assert!(br["complete_at"].is_i64());
    let bs = &f.list(&format!("/api/v2/buildsets/{bsid}"), "buildsets").await[0];
    assert_eq!((&bs["complete"], &bs["results"]), (&json!(true), &json!(CANCELLED)));

    let (status, body) = f.rpc("/api/v2/buildrequests/9999", "cancel", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("9999")), "{body}");
}

#[tokio::test]
async fn workers_pause_and_unpause_by_name_or_id() {
    let f = fixture().await;
    let (status, body) = f.rpc("/api/v2/workers/w1", "pause", json!({ "reason": "disk full" })).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &Value::Null), "{body}");
    let w = &f.list("/api/v2/workers/w1", "workers").await[0];
    assert_eq!((&w["paused"], &w["pause_reason"]), (&json!(true), &json!("disk full")));
    assert_eq!(f.list("/api/v2/workers?paused=true", "workers").await.len(), 1);
    let id = w["workerid"].as_i64().expect("id");
    let (status, body) = f.rpc(&format!("/api/v2/workers/{id}"), "unpause", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let w = &f.list("/api/v2/workers/w1", "workers").await[0];
    assert_eq!((&w["paused"], &w["pause_reason"]), (&json!(false), &Value::Null));
    let (status, body) = f.rpc("/api/v2/workers/nobody", "pause", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = f.rpc("/api/v2/workers/w1", "explode", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_force_form_priority_goes_to_the_requests() {
    let f = fixture().await;
    let params = json!({ "builderid": "linux", "priority": 42 });
    let (status, body) = f.rpc("/api/v2/forceschedulers/force-all", "force", params).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let brid = body["result"][1][f.builder_id("linux").to_string()].as_i64().expect("brid");
    let br = &f.list(&format!("/api/v2/buildrequests/{brid}"), "buildrequests").await[0];
    assert_eq!(br["priority"], 42);
    // Without one from the form: the scheduler's, else (the implicit force-<builder>) the builder's.
    let (linux, mac) = (f.builder_id("linux"), f.builder_id("mac"));
    let (_, requests) = f.force(None).await;
    for builderid in [linux, mac] {
        let brid = requests[builderid.to_string()].as_i64().expect("brid");
        let br = &f.list(&format!("/api/v2/buildrequests/{brid}"), "buildrequests").await[0];
        assert_eq!(br["priority"], 3, "force-all's priority");
    }
    for (scheduler, builderid, expected) in [("force-linux", linux, 7), ("force-mac", mac, 0)] {
        let (status, body) = f.rpc(&format!("/api/v2/forceschedulers/{scheduler}"), "force", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let brid = body["result"][1][builderid.to_string()].as_i64().expect("brid");
        let br = &f.list(&format!("/api/v2/buildrequests/{brid}"), "buildrequests").await[0];
        assert_eq!(br["priority"], expected, "{scheduler}: the builder's priority");
    }
    let params = json!({ "builderid": "linux", "priority": "high" });
    let (status, body) = f.rpc("/api/v2/forceschedulers/force-all", "force", params).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn build_requests_filter_order_and_page_in_the_store() {
    let f = fixture().await;
    let (linux, mac) = (f.builder_id("linux"), f.builder_id("mac"));
    let mut linux_requests = Vec::new();
    for _ in 0..3 {
        let (_, requests) = f.force(None).await;
        linux_requests.push(requests[linux.to_string()].as_i64().expect("linux"));
        assert!(requests[mac.to_string()].is_i64());
    }
    let all = f.list("/api/v2/buildrequests", "buildrequests").await;
    assert_eq!(all.len(), 6);

    let (_, body) =
        f.get(&format!("/api/v2/buildrequests?builderid={linux}&order=-buildrequestid&limit=1&offset=1")).await;
    assert_eq!(body["meta"]["total"], 3, "total counts the filtered rows before paging");
    let ids: Vec<i64> =
        body["buildrequests"].as_array().expect("list").iter().filter_map(|r| r["buildrequestid"].as_i64()).collect();
    assert_eq!(ids, vec![linux_requests[1]]);

    f.rpc(&format!("/api/v2/buildrequests/{}", linux_requests[0]), "cancel", json!({})).await;
    let pending = f.list("/api/v2/builders/linux/buildrequests?complete=false", "buildrequests").await;
    let ids: Vec<i64> = pending.iter().filter_map(|r| r["buildrequestid"].as_i64()).collect();
    assert_eq!(ids, linux_requests[1..]);
    let done = f.list("/api/v2/buildrequests?complete=true&field=buildrequestid&field=results", "buildrequests").await;
    assert_eq!(done, vec![json!({ "buildrequestid": linux_requests[0], "results": CANCELLED })]);

    let later = f
        .list(
            &format!("/api/v2/buildrequests?buildrequestid__gt={}&builderid__ne={mac}", linux_requests[1]),
            "buildrequests",
        )
        .await;
    assert_eq!(later.iter().filter_map(|r| r["buildrequestid"].as_i64()).collect::<Vec<_>>(), vec![linux_requests[2]]);
    let either =
        f.list(&format!("/api/v2/buildrequests?buildsetid=1&buildsetid=3&builderid={mac}"), "buildrequests").await;
    assert_eq!(either.len(), 2);
}

#[tokio::test]
async fn errors_are_json_with_the_right_status() {
    let f = fixture().await;
    let (status, body) = f.get("/api/v2/builds/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("999")), "{body}");
    assert_eq!(f.get("/api/v2/builds/abc").await.0, StatusCode::NOT_FOUND);
    assert_eq!(f.get("/api/v2/nothing/here").await.0, StatusCode::NOT_FOUND);
    assert_eq!(f.get("/api/v2/builders/nope/builds").await.0, StatusCode::NOT_FOUND);
    for (uri, param) in [
        ("/api/v2/builds?limit=abc", "'limit'"),
        ("/api/v2/buildrequests?offset=-3", "'offset'"),
        ("/api/v2/builds?colour=red", "'colour'"),
        ("/api/v2/builds?number__like=3", "'number__like'"),
        ("/api/v2/builds?complete=maybe", "'complete'"),
        ("/api/v2/builds/1/steps?order=-nope", "'order'"),
        ("/api/v2/builders?limit=x", "'limit'"),
        ("/api/v2/logs/1/contents?limit=x", "'limit'"),
    ] {
        let (status, body) = f.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(param)), "{uri}: {body}");
    }

    let (status, body) = f.rpc("/api/v2/builds/999", "stop", json!({})).await;
    assert_eq!((status, body["id"].clone()), (StatusCode::NOT_FOUND, json!(7)), "{body}");
    let (status, body) = f.rpc("/api/v2/builds/1", "explode", json!({})).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!(-32601)), "{body}");
    let (status, body) = f.rpc("/api/v2/forceschedulers/nope", "force", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = f.rpc("/api/v2/forceschedulers/force-all", "force", json!({ "builderid": "windows" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let request = Request::post("/api/v2/builds/1")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, basic(USER, PASSWORD))
        .body(Body::from("{not json"))
        .expect("request");
    let (status, body, _) = f.send(from_loopback(request)).await;
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!((status, &body["error"]["code"], &body["id"]), (StatusCode::BAD_REQUEST, &json!(-32700), &Value::Null));
    // Without its content type, a call is refused before it is read (as Buildbot does).
    let request = Request::post("/api/v2/builds/1").body(Body::from("{not json")).expect("request");
    let (status, body, _) = f.send(request).await;
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "Invalid content-type (use application/json)", "{body}");
}

#[tokio::test]
async fn a_force_with_typed_parameters_stores_typed_properties_and_a_wrong_one_is_refused() {
    let f = fixture().await;
    let params = json!({ "version": "2.0", "jobs": "8", "clean": true, "priority": 3, "revision": "abc" });
    let (status, body) = f.rpc("/api/v2/forceschedulers/release", "force", params).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bsid = body["result"][0].as_i64().expect("bsid");
    let props = &f.list(&format!("/api/v2/buildsets/{bsid}/properties"), "properties").await[0];
    assert_eq!(props["version"], json!(["2.0", "Force Build Form"]));
    assert_eq!(props["jobs"], json!([8, "Force Build Form"]));
    assert_eq!(props["clean"], json!([true, "Force Build Form"]));
    assert_eq!(props["mode"], json!(["release", "Force Build Form"]));
    let bs = &f.list(&format!("/api/v2/buildsets/{bsid}"), "buildsets").await[0];
    assert_eq!(bs["reason"], "a release");
    let brid = body["result"][1][f.builder_id("linux").to_string()].as_i64().expect("request");
    let request = &f.list(&format!("/api/v2/buildrequests/{brid}"), "buildrequests").await[0];
    assert_eq!(request["priority"], 3);
    let sourcestamps = f.master.store().buildset_sourcestamps(bsid).await.expect("source stamps");
    assert_eq!(sourcestamps.iter().map(|ss| ss.revision.as_deref()).collect::<Vec<_>>(), [Some("abc")]);

    for (params, name) in [
        (json!({ "jobs": 1 }), "version"),
        (json!({ "version": "2.0", "jobs": "many" }), "jobs"),
        (json!({ "version": "2.0", "clean": "maybe" }), "clean"),
        (json!({ "version": "2.0", "mode": "fast" }), "mode"),
        (json!({ "version": "two" }), "version"),
    ] {
        let (status, body) = f.rpc("/api/v2/forceschedulers/release", "force", params.clone()).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!(-32602)), "{params}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.starts_with(&format!("parameter '{name}'")), "{params}: {message}");
    }

    let spec = &f.list("/api/v2/forceschedulers/release", "forceschedulers").await[0];
    let fields = spec["all_fields"].as_array().expect("all_fields");
    let names: Vec<&str> = fields[2..].iter().filter_map(|f| f["fullName"].as_str()).collect();
    assert_eq!(names, ["version", "jobs", "clean", "mode"]);
    assert_eq!(fields[3]["type"], "int");
    assert_eq!(fields[3]["default"], 2);
    assert_eq!(fields[5]["choices"], json!(["debug", "release"]));
    assert_eq!(fields[2]["required"], true);
}

#[tokio::test]
async fn builders_force_schedulers_and_workers_come_from_the_config() {
    let f = fixture().await;
    let linux = f.builder_id("linux");
    let builders = f.list("/api/v2/builders", "builders").await;
    assert_eq!(builders.len(), 2);
    let expected = json!({
        "builderid": linux,
        "name": "linux",
        "description": "the linux build",
        "tags": ["os", "linux"],
        "masterids": [f.master.masterid()],
    });
    assert_eq!(builders[0], expected);
    assert_eq!(f.list("/api/v2/builders/linux", "builders").await, vec![expected.clone()]);
    assert_eq!(f.list(&format!("/api/v2/builders/{linux}"), "builders").await, vec![expected]);
    assert_eq!(f.list("/api/v2/builders?name=mac", "builders").await[0]["name"], "mac");
    assert_eq!(f.list("/api/v2/builders?order=-name&limit=1", "builders").await[0]["name"], "mac");

    let schedulers = f.list("/api/v2/forceschedulers", "forceschedulers").await;
    let names: Vec<&str> = schedulers.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, vec!["force-all", "release", "force-linux", "force-mac"]);
    let all = &f.list("/api/v2/forceschedulers/force-all", "forceschedulers").await[0];
    assert_eq!(all["builder_names"], json!(["linux", "mac"]));
    assert_eq!((&all["label"], &all["button_name"]), (&json!("Build everything"), &json!("Build everything")));
    let builtin: Vec<&str> = all["all_fields"]
        .as_array()
        .expect("all_fields")
        .iter()
        .flat_map(|group| group["fields"].as_array().into_iter().flatten())
        .filter_map(|field| field["fullName"].as_str())
        .collect();
    assert_eq!(builtin, ["username", "reason", "priority", "branch", "revision", "repository", "project"]);
    let for_mac = f.list("/api/v2/builders/mac/forceschedulers", "forceschedulers").await;
    assert_eq!(for_mac.iter().filter_map(|s| s["name"].as_str()).collect::<Vec<_>>(), vec!["force-all", "force-mac"]);

    let workers = f.list("/api/v2/workers", "workers").await;
    assert_eq!(workers.len(), 1);
    let w = &workers[0];
    assert_eq!(
        (&w["name"], &w["connected_to"], &w["paused"], &w["graceful"]),
        (&json!("w1"), &json!([]), &json!(false), &json!(false))
    );
    assert_eq!(f.list("/api/v2/workers/w1", "workers").await, workers);
    assert_eq!(f.list(&format!("/api/v2/workers/{}", w["workerid"]), "workers").await, workers);

    let (status, root) = f.get("/api/v2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(root["endpoints"].as_array().is_some_and(|e| e.len() > 10), "{root}");
    let (status, text, _) = f.send(Request::get("/").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&text).contains("/api/v2"));
}

/// A finished stdio log of `linux`'s build: a header line, then `oline {i}` for i in 0..n; its raw text.
async fn stdio_log(f: &Fixture, n: usize) -> (i64, String) {
    let store = f.master.store();
    let (_, buildid, _) = f.linux_build().await;
    let (stepid, _) = store.add_step(buildid, "compile").await.expect("step");
    let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
    let mut stored = String::from("hmake all\n");
    let mut raw = String::from("make all\n");
    for i in 0..n {
        let colour = if i % 1000 == 999 { "\u{1b}[31mcoloured\u{1b}[0m " } else { "" };
        stored.push_str(&format!("{}{colour}line {i}\n", if i % 7 == 3 { 'e' } else { 'o' }));
        raw.push_str(&format!("{colour}line {i}\n"));
    }
    store.append_log(logid, &stored).await.expect("append");
    store.finish_log(logid).await.expect("finish");
    (logid, raw)
}

fn with_header(uri: &str, name: header::HeaderName, value: &str) -> Request<Body> {
    Request::get(uri).header(name, value).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn raw_logs_answer_ranges_gzip_and_inline() {
    let f = fixture().await;
    let (logid, raw) = stdio_log(&f, 40_000).await;
    let uri = format!("/api/v2/logs/{logid}/raw");
    let total = raw.len();

    let (status, body, headers) = f.send(Request::get(&uri).body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(headers[header::CONTENT_LENGTH], total.to_string().as_str());
    assert_eq!(String::from_utf8(body).expect("utf-8"), raw);

    // Ranges anywhere, across chunk boundaries, at the end, and as a suffix.
    for (range, from, to) in [
        ("bytes=0-99".to_string(), 0, 100),
        (format!("bytes={}-{}", total / 3, total / 3 + 200_000), total / 3, total / 3 + 200_001),
        (format!("bytes={}-", total - 10), total - 10, total),
        ("bytes=-25".to_string(), total - 25, total),
        (format!("bytes=5-{}", total * 2), 5, total),
    ] {
        let (status, body, headers) = f.send(with_header(&uri, header::RANGE, &range)).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(headers[header::CONTENT_RANGE], format!("bytes {from}-{}/{total}", to - 1).as_str(), "{range}");
        assert_eq!(headers[header::CONTENT_LENGTH], (to - from).to_string().as_str());
        assert_eq!(String::from_utf8(body).expect("utf-8"), raw[from..to], "{range}");
    }
    let (status, body, headers) = f.send(with_header(&uri, header::RANGE, &format!("bytes={total}-"))).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers[header::CONTENT_RANGE], format!("bytes */{total}").as_str());
    assert!(String::from_utf8_lossy(&body).contains("past the log"), "{body:?}");

    // Gzip for a whole download, not for a range.
    let (status, body, headers) = f.send(with_header(&uri, header::ACCEPT_ENCODING, "gzip, br")).await;
    assert_eq!((status, headers[header::CONTENT_ENCODING].to_str().ok()), (StatusCode::OK, Some("gzip")));
    assert!(body.len() * 3 < total, "{} gzipped bytes for {total}", body.len());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).expect("gunzip");
    assert_eq!(text, raw);
    let mut request = with_header(&uri, header::ACCEPT_ENCODING, "gzip");
    request.headers_mut().insert(header::RANGE, header::HeaderValue::from_static("bytes=0-9"));
    let (status, body, headers) = f.send(request).await;
    assert_eq!((status, headers.get(header::CONTENT_ENCODING)), (StatusCode::PARTIAL_CONTENT, None));
    assert_eq!(body, raw.as_bytes()[..10]);

    let request = Request::get(format!("/api/v2/logs/{logid}/raw_inline")).body(Body::empty()).expect("request");
    let (status, body, headers) = f.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_DISPOSITION].to_str().expect("ascii").starts_with("inline"));
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/plain"));
    assert_eq!(body, raw.as_bytes());
    assert_eq!(f.get("/api/v2/logs/999/raw_inline").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_log_page_shows_the_first_and_last_lines_without_javascript() {
    let f = fixture().await;
    let (logid, _) = stdio_log(&f, 5_000).await;
    let request = Request::get("/builders/linux/builds/1/steps/compile/logs/stdio").body(Body::empty()).expect("get");
    let (status, body, headers) = f.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/html"));
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii").starts_with("default-src 'self'"));
    let html = String::from_utf8(body).expect("utf-8");
    assert!(
        html.contains(r##"<div class="l h" id="L1"><a class="n" href="#L1">1</a><span class="t">make all</span>"##),
        "{html}"
    );
    assert!(
        html.contains(r##"id="L5001"><a class="n" href="#L5001">5001</a><span class="t">coloured line 4999</span>"##)
    );
    assert!(html.contains(r##"<div class="l e" id="L5"><a class="n" href="#L5">5</a><span class="t">line 3</span>"##));
    assert!(html.contains("4901 lines not shown"), "{html}");
    assert!(!html.contains("id=\"L51\"") && !html.contains("\u{1b}"), "only the first and last 50 lines, plain");
    assert!(html.contains(&format!("href=\"/api/v2/logs/{logid}/raw\"")));
    assert!(html.contains(&format!("data-logid=\"{logid}\"")) && !html.contains("<script>"));
    // The step by number too; and its assets are served under the names the page gives.
    let by_number = Request::get("/builders/linux/builds/1/steps/0/logs/stdio").body(Body::empty()).expect("get");
    assert_eq!(f.send(by_number).await.0, StatusCode::OK);
    for asset in html.split('"').filter(|p| p.starts_with("/assets/log/")) {
        let (status, body, headers) = f.send(Request::get(asset).body(Body::empty()).expect("get")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(headers[header::CACHE_CONTROL].to_str().expect("ascii").contains("immutable"));
        assert!(body.len() > 100, "{asset}");
    }
    assert_eq!(
        f.send(Request::get("/assets/log/log.js").body(Body::empty()).expect("get")).await.0,
        StatusCode::NOT_FOUND
    );
    for missing in [
        "/builders/nope/builds/1/steps/0/logs/stdio",
        "/builders/linux/builds/9/steps/0/logs/stdio",
        "/builders/linux/builds/1/steps/7/logs/stdio",
        "/builders/linux/builds/1/steps/0/logs/nope",
    ] {
        assert_eq!(
            f.send(Request::get(missing).body(Body::empty()).expect("get")).await.0,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

#[tokio::test]
async fn a_log_is_searched_on_the_server_forward_back_and_in_pages() {
    let f = fixture().await;
    let (logid, _) = stdio_log(&f, 40_000).await;
    let search = |q: &str| {
        let f = &f;
        let uri = format!("/api/v2/logs/{logid}/search?{q}");
        async move {
            let (status, body) = f.get(&uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            let matches: Vec<i64> =
                body["matches"].as_array().expect("matches").iter().filter_map(Value::as_i64).collect();
            (matches, body["meta"]["next_from"].as_i64())
        }
    };
    // Line 0 is the header; `line i` is line i + 1. The channel letter and colours are not matched.
    assert_eq!(search("q=line%2039999").await, (vec![40_000], None));
    assert_eq!(search("q=make%20all").await, (vec![0], None));
    assert_eq!(search("q=oline").await, (vec![], None));
    assert_eq!(search("q=COLOURED%20line%20999").await.0, vec![1000, 10_000]);
    assert_eq!(search("q=COLOURED%20line%20999&case=1").await.0, Vec::<i64>::new());
    // Regular expressions, pages and going back.
    assert_eq!(search("q=line%20%5B0-9%5D*999%24&regex=1&limit=3").await, (vec![1000, 2000, 3000], Some(3001)));
    assert_eq!(
        search("q=line%20%5B0-9%5D*999%24&regex=1&limit=3&from=3001").await,
        (vec![4000, 5000, 6000], Some(6001))
    );
    assert_eq!(
        search("q=line%20%5B0-9%5D*999%24&regex=1&limit=2&back=1&from=5000").await,
        (vec![4000, 3000], Some(3000))
    );
    assert_eq!(search("q=line%20%5B0-9%5D*999%24&regex=1&back=1").await.0.first(), Some(&40_000));
    assert_eq!(search("q=line%201%24&regex=1&back=1&from=100").await, (vec![2], None));
    let (status, body) = f.get(&format!("/api/v2/logs/{logid}/search?q=(&regex=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(f.get("/api/v2/logs/999/search?q=x").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn builds_steps_and_logs_read_back_with_ranges_and_raw_downloads() {
    let f = fixture().await;
    let store = f.master.store();
    let linux = f.builder_id("linux");
    let worker = store.find_or_add_worker("w1").await.expect("worker");
    let (brid, buildid, number) = f.linux_build().await;
    let (stepid, _) = store.add_step(buildid, "compile").await.expect("step");
    let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
    store.append_log(logid, "hmake all\nohello\neoops\n").await.expect("append");
    let many: String = (0..12_000).map(|i| format!("oline {i}\n")).collect();
    store.append_log(logid, &many).await.expect("append");
    store.finish_log(logid).await.expect("finish");

    let build = &f.list(&format!("/api/v2/builds/{buildid}"), "builds").await[0];
    assert_eq!(
        (&build["number"], &build["builderid"], &build["buildrequestid"]),
        (&json!(number), &json!(linux), &json!(brid))
    );
    assert_eq!(
        (&build["complete"], &build["results"], &build["workerid"]),
        (&json!(false), &Value::Null, &json!(worker))
    );
    assert_eq!(f.list(&format!("/api/v2/builders/linux/builds/{number}"), "builds").await[0]["buildid"], buildid);
    assert_eq!(f.list(&format!("/api/v2/buildrequests/{brid}/builds"), "builds").await.len(), 1);
    assert_eq!(
        f.list(&format!("/api/v2/builds?builderid={linux}&complete=false&workerid={worker}"), "builds").await.len(),
        1
    );
    assert!(f.list(&format!("/api/v2/builds?number__gt={number}"), "builds").await.is_empty());

    let steps = f.list(&format!("/api/v2/builders/{linux}/builds/{number}/steps"), "steps").await;
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (&steps[0]["stepid"], &steps[0]["name"], &steps[0]["urls"]),
        (&json!(stepid), &json!("compile"), &json!([]))
    );
    assert_eq!(f.list(&format!("/api/v2/steps/{stepid}"), "steps").await, steps);
    assert_eq!(f.list(&format!("/api/v2/builds/{buildid}/steps/compile"), "steps").await, steps);
    assert_eq!(f.list(&format!("/api/v2/builds/{buildid}/steps/0"), "steps").await, steps);

    let logs = f.list(&format!("/api/v2/builds/{buildid}/steps/compile/logs"), "logs").await;
    let expected = json!({
        "logid": logid, "name": "stdio", "slug": "stdio", "stepid": stepid, "complete": true,
        "num_lines": 12_003, "type": "s",
    });
    assert_eq!(logs, vec![expected]);
    assert_eq!(f.list(&format!("/api/v2/steps/{stepid}/logs/stdio"), "logs").await, logs);
    assert_eq!(f.list(&format!("/api/v2/logs/{logid}"), "logs").await, logs);

    let chunk = &f.list(&format!("/api/v2/logs/{logid}/contents?offset=1&limit=2"), "logchunks").await[0];
    assert_eq!(chunk, &json!({ "logid": logid, "firstline": 1, "content": "ohello\neoops\n" }));
    let (_, whole) = f.get(&format!("/api/v2/logs/{logid}/contents")).await;
    let content = whole["logchunks"][0]["content"].as_str().expect("content");
    assert!(content.starts_with("hmake all\nohello\n") && content.ends_with("oline 11999\n"));
    assert_eq!(content.lines().count(), 12_003);
    assert_eq!(whole["meta"], json!({ "total": 1 }));

    let request = Request::get(format!("/api/v2/logs/{logid}/raw")).body(Body::empty()).expect("request");
    let (status, body, headers) = f.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/plain"));
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().expect("ascii");
    assert_eq!(disposition, format!("attachment; filename=\"linux_build_{number}_step_compile_log_stdio.txt\""));
    let text = String::from_utf8(body).expect("utf-8");
    let expected: String =
        format!("make all\nhello\noops\n{}", (0..12_000).map(|i| format!("line {i}\n")).collect::<String>());
    assert_eq!(text, expected);
    assert_eq!(f.get("/api/v2/logs/999/raw").await.0, StatusCode::NOT_FOUND);
    assert_eq!(f.get("/api/v2/logs/999/contents").await.0, StatusCode::NOT_FOUND);

    // Actions on a build that is in the store but not running here.
    let (status, body) = f.rpc(&format!("/api/v2/builds/{buildid}"), "stop", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = f.rpc(&format!("/api/v2/builds/{buildid}"), "rebuild", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_brid = body["result"][1][linux.to_string()].as_i64().expect("new request");
    assert_ne!(new_brid, brid);
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_stops_when_cancelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(super::serve(listener, f.master.clone(), stop.clone()));
    let mut socket = tokio::net::TcpStream::connect(address).await.expect("connect");
    socket
        .write_all(b"GET /api/v2/builders HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    socket.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"builders\""), "{response}");
    stop.cancel();
    server.await.expect("join").expect("serve");
}

#[tokio::test]
async fn build_properties_are_served_alone_and_with_builds() {
    let f = fixture().await;
    let store = f.master.store();
    let (brid, buildid, number) = f.linux_build().await;
    let props = [
        crate::store::Property { name: "buildername".into(), value: json!("linux"), source: "Builder".into() },
        crate::store::Property { name: "buildnumber".into(), value: json!(number), source: "Build".into() },
    ];
    store.set_build_properties(buildid, &props).await.expect("set");

    let (status, body) = f.get(&format!("/api/v2/builds/{buildid}/properties")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = json!({ "buildername": ["linux", "Builder"], "buildnumber": [number, "Build"] });
    assert_eq!(body, json!({ "properties": [expected], "meta": { "total": 1 } }));
    let by_number = f.list(&format!("/api/v2/builders/linux/builds/{number}/properties"), "properties").await;
    assert_eq!(by_number, vec![expected.clone()]);

    let builds = f.list("/api/v2/builds?property=*", "builds").await;
    assert_eq!(builds[0]["properties"], expected);
    let build = &f.list(&format!("/api/v2/builds/{buildid}?property=buildnumber"), "builds").await[0];
    assert_eq!(build["properties"], json!({ "buildnumber": [number, "Build"] }));
    let build = &f.list(&format!("/api/v2/buildrequests/{brid}/builds"), "builds").await[0];
    assert!(build.get("properties").is_none(), "properties only when asked: {build}");

    let (status, body) = f.get("/api/v2/builds/9999/properties").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn every_error_is_json_and_too_many_terms_is_a_400() {
    let f = fixture().await;
    let send = |method: Method, uri: String, body: Vec<u8>| {
        let request = Request::builder().method(method).uri(uri).body(Body::from(body)).expect("request");
        f.send(request)
    };
    let json_error = |what: &str, status: StatusCode, body: &[u8], headers: &axum::http::HeaderMap| {
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_string());
        assert_eq!(content_type.as_deref(), Some("application/json"), "{what}: {status}");
        let body: Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("{what}: not JSON: {body:?}"));
        body["error"].as_str().unwrap_or_else(|| panic!("{what}: no error: {body}")).to_string()
    };

    let order = "order=-buildid&".repeat(2_000);
    let (status, body, headers) = send(Method::GET, format!("/api/v2/builds?{order}"), vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = json_error("2,000 order terms", status, &body, &headers);
    assert!(message.contains("too many") && !message.contains("ORDER BY"), "{message}");
    let order = "order=-buildid&".repeat(super::params::Bounds::ORDER + 1);
    let (status, body, headers) = send(Method::GET, format!("/api/v2/builds?{order}"), vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json_error("17 order terms", status, &body, &headers).contains("'order' terms"));

    // At the bounds the store answers: the most terms a query may have make a statement SQLite takes.
    let half = super::params::Bounds::PARAMETERS / 2;
    let most = format!("{}{}", "buildid__lt=5&".repeat(half), "number__gt=-1&".repeat(half));
    let (status, body, _) = send(Method::GET, format!("/api/v2/builds?{most}"), vec![]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let mut most: Vec<String> = (0..super::params::Bounds::ORDER).map(|_| "order=-number".to_string()).collect();
    most.extend((0..super::params::Bounds::FILTER_VALUES).map(|i| format!("buildid={i}")));
    most.extend((0..super::params::Bounds::FILTERS - 1).map(|i| format!("number__ne={i}")));
    let (status, body, _) = send(Method::GET, format!("/api/v2/builds?{}", most.join("&")), vec![]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    let (status, body, headers) = send(Method::DELETE, "/api/v2/builders".into(), vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    json_error("DELETE", status, &body, &headers);
    assert!(headers.get(header::ALLOW).is_some(), "405 keeps its Allow header");

    let (status, body, headers) = send(Method::POST, "/api/v2/builds/1".into(), vec![b' '; 3 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    json_error("a 3 MiB call", status, &body, &headers);

    let long = format!("/api/v2/builds?buildid__gt={}", "9".repeat(62 * 1024));
    let (status, body, headers) = send(Method::GET, long, vec![]).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    json_error("a 62 KiB URI", status, &body, &headers);

    let (status, body, headers) = send(Method::GET, "/nowhere".into(), vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    json_error("404", status, &body, &headers);
}

/// Checks a metrics exposition with Prometheus's own `promtool check metrics` (Debian's `prometheus` package;
/// `scripts/test` installs it).
fn promtool_check(text: &str) {
    use std::io::Write;
    let promtool = std::env::var("KILN_PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool} ({e}): install Debian's prometheus package (scripts/test does)")
        });
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n--- metrics\n{text}");
}

#[tokio::test]
async fn metrics_show_the_queue_the_workers_and_the_requests_and_pass_promtool() {
    let f = fixture().await;
    let (status, _) = f.get("/api/v2/builders").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = f.rpc("/api/v2/forceschedulers/force-linux", "force", json!({ "builderid": "linux" })).await;
    assert_eq!(status, StatusCode::OK);
    // A build and its step as the bus tells them (no worker connects to this fixture).
    let builderid = f.master.builder_id("linux").expect("builder");
    let bus = f.master.store().events();
    bus.publish(Event::BuildStarted { buildid: 99, builderid, number: 1, brid: 1, workerid: 1, masterid: 1 });
    bus.publish(Event::StepStarted { stepid: 98, buildid: 99, number: 0 });
    bus.publish(Event::StepFinished { stepid: 98, buildid: 99, results: 0, state_string: String::new() });
    bus.publish(Event::BuildFinished { buildid: 99, builderid, results: 0, state_string: String::new() });
    let scrape = || async {
        let (status, body, headers) = f.send(Request::get("/metrics").body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE].to_str().is_ok_and(|t| t.starts_with("text/plain; version=0.0.4")));
        String::from_utf8(body).expect("text")
    };
    let counted = "kiln_builds_total{builder=\"linux\",result=\"success\"} 1\n";
    let text = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let text = scrape().await;
            if text.contains(counted) {
                return text;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the metrics count the build");
    assert!(text.contains("kiln_step_duration_seconds_count{builder=\"linux\"} 1\n"), "{text}");
    // The forced request waits: its worker never connects.
    assert!(text.contains("\nkiln_queue_depth 1\n"), "{text}");
    assert!(text.contains("\nkiln_workers_connected 0\n"), "{text}");
    assert!(
        text.contains(
            "kiln_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v2/builders\",status=\"200\"} 1\n"
        ),
        "{text}"
    );
    promtool_check(&text);
}
