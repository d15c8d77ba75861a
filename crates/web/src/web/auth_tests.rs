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

/// A config with one builder `b`; `web` is the `[web]` table and anything before the lists.
fn master_text(web: &str, dir: &tempfile::TempDir) -> String {
    format!(
        "[store]\nurl = \"sqlite:{}\"\n[worker_listener]\naddress = \"127.0.0.1:0\"\n{web}\n\
         [[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"b\"\nworkers = [\"w\"]\n\
         [[builder.step]]\ncommand = \"true\"\n",
        dir.path().join("state.sqlite").display()
    )
}

async fn master(extra: &str, dir: &tempfile::TempDir) -> Master {
    let text = master_text(&format!("{extra}\n[web]\naddress = \"127.0.0.1:0\""), dir);
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

#[tokio::test]
async fn the_web_port_serves_https_with_secure_cookies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("cert");
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key");
    let tls = format!(
        "[web]\naddress = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let text = master_text(&tls, &dir);
    let config = MasterConfig::from_str(&text, "master.toml").expect("config");
    assert!(config.url.starts_with("https://"), "{}", config.url);
    let m = Master::start_with(dir.path(), config).await.expect("master").0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(super::serve(listener, m.clone(), stop.clone()));

    let ca = reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA certificate");
    let https = reqwest::Client::builder().add_root_certificate(ca).build().expect("client");
    let page = https.get(format!("https://localhost:{port}/login")).send().await.expect("GET over https");
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = page.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let plain = reqwest::get(format!("http://localhost:{port}/api/v2/builders")).await;
    assert!(plain.map_or(true, |r| !r.status().is_success()), "plain http is not served on the https port");
    stop.cancel();
    server.await.expect("join").expect("serve");
}

/// A CA's PEM and a certificate for `localhost` it signed, written to `dir/cert.pem` and `dir/key.pem`.
fn certify_localhost(dir: &std::path::Path) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
    ca.pem()
}

#[tokio::test]
async fn a_reconfig_reloads_the_web_certificate_for_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first_ca = certify_localhost(dir.path());
    let tls = format!(
        "[web]\naddress = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let text = master_text(&tls, &dir);
    let m = Master::start_with(dir.path(), MasterConfig::from_str(&text, "master.toml").expect("config"))
        .await
        .expect("master")
        .0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(super::serve(listener, m.clone(), stop.clone()));
    let trusting = |ca: &str| {
        let ca = reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA certificate");
        // A new client each time: a new connection, a new handshake.
        reqwest::Client::builder().add_root_certificate(ca).build().expect("client")
    };
    let url = format!("https://localhost:{port}/api/v2/builders");
    let answer = trusting(&first_ca).get(&url).send().await.expect("GET with the first certificate");
    assert_eq!(answer.status(), StatusCode::OK);
    let kept = trusting(&first_ca);
    assert_eq!(kept.get(&url).send().await.expect("an open connection").status(), StatusCode::OK);

    // A renewed certificate, from another CA, under the same file names.
    let second_ca = certify_localhost(dir.path());
    let same = m.reconfig(MasterConfig::from_str(&text, "master.toml").expect("config")).await.expect("reconfig");
    assert_eq!(same.changes, ["[web] TLS certificate reloaded"], "{same:?}");
    let answer = trusting(&second_ca).get(&url).send().await.expect("GET with the new certificate");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(trusting(&first_ca).get(&url).send().await.is_err(), "new connections no longer get the old one");
    // A connection opened before the reload keeps its certificate.
    assert_eq!(kept.get(&url).send().await.expect("the open connection").status(), StatusCode::OK);

    // A certificate that cannot be read refuses the reconfig and the running one stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").expect("break the certificate");
    let refused = m.reconfig(MasterConfig::from_str(&text, "master.toml").expect("config")).await;
    assert!(refused.as_ref().is_err_and(|e| e.to_string().contains("cert.pem")), "{refused:?}");
    let answer = trusting(&second_ca).get(&url).send().await.expect("GET after the refused reload");
    assert_eq!(answer.status(), StatusCode::OK);
    stop.cancel();
    server.await.expect("join").expect("serve");
}
