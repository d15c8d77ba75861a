//! The auth layer through the router, on real masters: with no user nobody may act (and is told how to add
//! one); htpasswd users log in with their roles; HTTP Basic is refused from a non-loopback address over http.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use super::tests::basic;
use crate::config::MasterConfig;
use crate::master::Master;

async fn master(extra: &str, dir: &tempfile::TempDir) -> Master {
    let text = format!(
        "[store]\nurl = \"sqlite:{}\"\n[worker_listener]\naddress = \"127.0.0.1:0\"\n[web]\naddress = \"127.0.0.1:0\"\n\
         [[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"b\"\nworkers = [\"w\"]\n\
         [[builder.step]]\ncommand = \"true\"\n{extra}",
        dir.path().join("state.sqlite").display()
    );
    let mut config = MasterConfig::from_str(&text, "master.toml").expect("config");
    if let Some(path) = &mut config.auth.htpasswd {
        *path = dir.path().join(&*path);
    }
    Master::start_with(dir.path(), config).await.expect("master").0
}

/// A force of `b` from `peer` with `authorization`; the status and the answer.
async fn force(master: &Master, peer: [u8; 4], authorization: Option<&str>) -> (StatusCode, Value) {
    let call = json!({ "jsonrpc": "2.0", "method": "force", "params": {}, "id": 1 });
    let mut request = Request::post("/api/v2/forceschedulers/force-b").header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let mut request = request.body(Body::from(call.to_string())).expect("request");
    request.extensions_mut().insert(super::auth::Peer(std::net::SocketAddr::from((peer, 5000))));
    let response = router(master.clone()).oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn with_no_user_nobody_may_act_and_the_answer_says_how_to_add_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = master("", &dir).await;
    let (status, body) = force(&m, [127, 0, 0, 1], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("[[user]]") && message.contains("kiln hash-password"), "{message}");
    let (status, _) = force(&m, [127, 0, 0, 1], Some(&basic("admin", "admin"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(m.store().buildset(1).await.expect("buildset").is_none(), "nothing was forced");
}

#[tokio::test]
async fn htpasswd_users_log_in_with_their_roles_and_basic_needs_loopback_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line =
        format!("# users\nhal:{}\n", bcrypt::hash("hal's password", 4).expect("bcrypt").replacen("$2b$", "$2y$", 1));
    std::fs::write(dir.path().join("users.htpasswd"), line).expect("write htpasswd");
    let m = master("[auth]\nhtpasswd = \"users.htpasswd\"\nhtpasswd_roles = [\"developer\"]\n", &dir).await;
    let (status, body) = force(&m, [127, 0, 0, 1], Some(&basic("hal", "hal's password"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = force(&m, [127, 0, 0, 1], Some(&basic("hal", "wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = force(&m, [10, 0, 0, 7], Some(&basic("hal", "hal's password"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "Basic over http from another machine: {body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("https")), "{body}");
}
