//! `/change_hook/{dialect}` and `/api/v2/changes` against a real master on a temporary SQLite store.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use super::tests::{fixture, Fixture, HOOK_SECRET, HOOK_TOKEN};
use crate::changes::webhooks::test_support::sign;
use crate::changes::NewChange;

const GITHUB_PUSH: &[u8] = include_bytes!("../../../master/src/changes/webhooks/testdata/github_push.json");
const SECRET: &str = HOOK_SECRET;
const TOKEN: &str = HOOK_TOKEN;

impl Fixture {
    async fn send_json(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, body, _) = self.send(request).await;
        (status, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {body:?}")))
    }

    async fn post(&self, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> (StatusCode, Value) {
        let mut request = Request::post(uri).header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send_json(request.body(body.into()).expect("request")).await
    }

    async fn github_push(&self, signature: &str) -> (StatusCode, Value) {
        let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", signature)];
        self.post("/change_hook/github", &headers, GITHUB_PUSH).await
    }

    async fn changes(&self) -> Vec<Value> {
        let (status, body) =
            self.send_json(Request::get("/api/v2/changes").body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["meta"]["total"].as_u64(), body["changes"].as_array().map(|a| a.len() as u64));
        body["changes"].as_array().cloned().expect("changes")
    }

    async fn base(&self, authorization: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
        self.post("/change_hook/base", &headers, body.to_string()).await
    }
}

#[tokio::test]
async fn a_signed_github_push_stores_its_commits_in_order() {
    let f = fixture().await;
    let mut subscribed = f.master.subscribe_changes();
    let (status, body) = f.github_push(&format!("sha256={}", sign(SECRET, GITHUB_PUSH))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<i64> = body["changes"].as_array().expect("ids").iter().filter_map(Value::as_i64).collect();
    assert_eq!(ids.len(), 3, "{body}");

    let revisions = ["c441029cf673f84c8b7db52d0a5944ee5c52ff89"];
    for &id in &ids {
        let change = subscribed.try_recv().expect("a change was broadcast");
        assert_eq!(change.id, id);
    }
    assert!(subscribed.try_recv().is_err());

    let listed = f.changes().await;
    assert_eq!(listed.iter().map(|c| c["changeid"].as_i64().expect("id")).collect::<Vec<_>>(), ids);
    let first = &listed[0];
    assert_eq!(first["revision"], json!(revisions[0]));
    assert_eq!(first["author"], json!("Mona Lisa Octocat <mona@github.com>"));
    assert_eq!(first["files"], json!(["README.md", "tests/first.rs"]));
    assert_eq!(first["branch"], json!("main"));
    assert_eq!(first["category"], json!("push"));
    assert_eq!(first["properties"]["event"], json!(["push", "Change"]));
    let ss = &first["sourcestamp"];
    assert!(ss["ssid"].as_i64().is_some_and(|id| id > 0), "{ss}");
    assert_eq!((&ss["revision"], &ss["project"]), (&json!(revisions[0]), &json!("octo-org/hello-world")));

    let (status, one) =
        f.send_json(Request::get(format!("/api/v2/changes/{}", ids[1])).body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["changes"][0], listed[1]);
    let (status, _) = f.send_json(Request::get("/api/v2/changes/999").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, filtered) = f
        .send_json(Request::get(format!("/api/v2/changes?revision={}", revisions[0])).body(Body::empty()).expect("req"))
        .await;
    assert_eq!((status, filtered["meta"]["total"].as_i64()), (StatusCode::OK, Some(1)));
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_stores_nothing() {
    let f = fixture().await;
    let (status, body) = f.github_push(&format!("sha256={}", sign("not the secret", GITHUB_PUSH))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("signature")), "{body}");
    assert!(f.changes().await.is_empty());
}

#[tokio::test]
async fn a_dialect_not_configured_is_not_found() {
    let f = fixture().await;
    for dialect in ["gitlab", "gitea", "forgejo", "bitbucket", "svn"] {
        let (status, body) = f.post(&format!("/change_hook/{dialect}"), &[], "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{dialect}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(dialect)), "{body}");
    }
    assert!(f.changes().await.is_empty());
}

#[tokio::test]
async fn the_base_hook_wants_its_token() {
    let f = fixture().await;
    let change = json!({
        "author": "alice", "comments": "try this", "revision": "r1", "branch": "dev",
        "repository": "https://example.invalid/r.git", "project": "p", "files": ["a.c"],
        "when_timestamp": 1_700_000_000, "properties": {"ticket": 42}
    });
    let (status, body) = f.base(None, &change).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = f.base(Some("Bearer wrong"), &change).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = f.base(Some(TOKEN), &change).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "without Bearer: {body}");
    assert!(f.changes().await.is_empty());

    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = f.base(Some(&bearer), &change).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = f.changes().await;
    assert_eq!(body["changes"], json!([listed[0]["changeid"]]));
    assert_eq!((&listed[0]["author"], &listed[0]["branch"]), (&json!("alice"), &json!("dev")));
    assert_eq!(listed[0]["when_timestamp"], json!(1_700_000_000));
    assert_eq!(listed[0]["properties"], json!({"ticket": [42, "Change"]}));
    assert_eq!(listed[0]["files"], json!(["a.c"]));
}

#[tokio::test]
async fn a_malformed_base_change_is_a_bad_request_and_stores_nothing() {
    let f = fixture().await;
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = f.post("/change_hook/base", &[("Authorization", &bearer)], "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for field in ["author", "comments"] {
        let mut change = json!({"author": "a", "comments": "c"});
        change.as_object_mut().expect("object").remove(field);
        let (status, body) = f.base(Some(&bearer), &change).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], json!(format!("missing field {field}")));
    }
    let (status, body) = f.base(Some(&bearer), &json!({"author": "a", "comments": "c", "files": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(f.changes().await.is_empty());
}

#[tokio::test]
async fn add_change_reuses_the_source_stamp_of_an_identical_change() {
    let f = fixture().await;
    let new = NewChange {
        author: "a".into(),
        comments: "c".into(),
        revision: Some("r".into()),
        branch: Some("main".into()),
        repository: "repo".into(),
        ..NewChange::default()
    };
    let first = f.master.add_change(new.clone()).await.expect("add");
    let second = f.master.add_change(new.clone()).await.expect("add");
    assert_ne!(first.id, second.id);
    assert_eq!(first.sourcestampid, second.sourcestampid);
    assert!(first.when_timestamp > 0);
    let third = f.master.add_change(NewChange { revision: Some("r2".into()), ..new }).await.expect("add");
    assert_ne!(third.sourcestampid, first.sourcestampid);
}

#[tokio::test]
async fn a_github_redelivery_stores_nothing_again_and_gets_the_same_ids() {
    let f = fixture().await;
    let signature = format!("sha256={}", sign(SECRET, GITHUB_PUSH));
    let deliver = |delivery: &'static str| {
        let headers =
            [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", signature.as_str()), ("X-GitHub-Delivery", delivery)];
        let f = &f;
        async move { f.post("/change_hook/github", &headers, GITHUB_PUSH).await }
    };
    let (status, first) = deliver("72d3162e-cc78-11e3-81ab-4c9367dc0958").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["changes"].as_array().map(Vec::len), Some(3), "{first}");
    let mut subscribed = f.master.subscribe_changes();
    let (status, again) = deliver("72d3162e-cc78-11e3-81ab-4c9367dc0958").await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    assert!(subscribed.try_recv().is_err(), "nothing new is announced");
    assert_eq!(f.changes().await.len(), 3);
    // Another delivery of the same push (a new event) is stored.
    let (status, other) = deliver("a-new-delivery").await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_ne!(other, first);
    assert_eq!(f.changes().await.len(), 6);
}

const GITHUB_PR_CLOSED: &[u8] =
    include_bytes!("../../../master/tests/fixtures/webhooks/github/pull_request_closed.json");
const GITHUB_PR_OPENED: &[u8] =
    include_bytes!("../../../master/tests/fixtures/webhooks/github/pull_request_opened.json");

#[tokio::test]
async fn an_authenticated_event_that_makes_no_changes_is_answered_200_and_stores_nothing() {
    let f = fixture().await;
    let signature = format!("sha256={}", sign(SECRET, GITHUB_PR_CLOSED));
    let headers = [("X-GitHub-Event", "pull_request"), ("X-Hub-Signature-256", signature.as_str())];
    let (status, body) = f.post("/change_hook/github", &headers, GITHUB_PR_CLOSED).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changes"], json!([]));
    assert_eq!(body["ignored"], json!("github: pull request #2 closed: no changes"));
    assert!(f.changes().await.is_empty());

    // Unsigned, the same is refused.
    let (status, _) = f.post("/change_hook/github", &[("X-GitHub-Event", "pull_request")], GITHUB_PR_CLOSED).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Malformed, signed: still a bad request.
    let signature = format!("sha256={}", sign(SECRET, b"{"));
    let headers = [("X-GitHub-Event", "pull_request"), ("X-Hub-Signature-256", signature.as_str())];
    assert_eq!(f.post("/change_hook/github", &headers, "{").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_pull_request_is_stored_as_a_change_with_its_properties() {
    let f = fixture().await;
    let signature = format!("sha256={}", sign(SECRET, GITHUB_PR_OPENED));
    let headers = [("X-GitHub-Event", "pull_request"), ("X-Hub-Signature-256", signature.as_str())];
    let (status, body) = f.post("/change_hook/github", &headers, GITHUB_PR_OPENED).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = f.changes().await;
    assert_eq!(listed.len(), 1);
    let change = &listed[0];
    assert_eq!(change["branch"], json!("refs/pull/2/head"));
    assert_eq!(change["category"], json!("pull"));
    assert_eq!(change["revision"], json!("ec26c3e57ca3a959ca5aad62de7213c562f8c821"));
    assert_eq!(change["properties"]["pr_number"], json!([2, "Change"]));
    assert_eq!(change["properties"]["head_branch"], json!(["changes", "Change"]));
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let f = fixture().await;
    // The body sent is small: what is refused is what Content-Length announces, before reading.
    let request = Request::post("/change_hook/github")
        .header("X-GitHub-Event", "push")
        .header("Content-Length", (20 * 1024 * 1024).to_string())
        .header("Expect", "100-continue")
        .body(Body::from(GITHUB_PUSH))
        .expect("request");
    let (status, body) = f.send_json(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("over the limit")), "{body}");
}

#[tokio::test]
async fn the_poller_hook_wants_its_token_and_a_known_poller() {
    let f = fixture().await;
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = f.post("/change_hook/poller?poller=nope", &[("Authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("\"nope\"")), "{body}");
    let (status, _) = f.post("/change_hook/poller?poller=nope", &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f.post("/change_hook/poller", &[("Authorization", "Bearer wrong")], "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No name: every git poller (this master has none).
    let (status, body) = f.post("/change_hook/poller", &[("Authorization", &bearer)], "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"polled": []})));
}

#[tokio::test]
async fn changes_show_their_revlink_and_their_parent_on_the_same_branch() {
    let f = fixture().await;
    let (status, body) = f.github_push(&format!("sha256={}", sign(SECRET, GITHUB_PUSH))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signature = format!("sha256={}", sign(SECRET, GITHUB_PR_OPENED));
    let headers = [("X-GitHub-Event", "pull_request"), ("X-Hub-Signature-256", signature.as_str())];
    assert_eq!(f.post("/change_hook/github", &headers, GITHUB_PR_OPENED).await.0, StatusCode::OK);
    let listed = f.changes().await;
    let ids: Vec<i64> = listed.iter().filter_map(|c| c["changeid"].as_i64()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(
        listed[0]["revlink"],
        json!("https://github.com/octo-org/hello-world/commit/c441029cf673f84c8b7db52d0a5944ee5c52ff89")
    );
    assert_eq!(listed[0]["parent_changeids"], json!([]));
    assert_eq!(listed[1]["parent_changeids"], json!([ids[0]]));
    assert_eq!(listed[2]["parent_changeids"], json!([ids[1]]));
    // Another repository and branch: no parent.
    assert_eq!(listed[3]["parent_changeids"], json!([]));
    assert_eq!(listed[3]["revlink"], json!("https://github.com/Codertocat/Hello-World/pull/2"));
}
