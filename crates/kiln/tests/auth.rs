//! Who may do what, against a real `kiln start`: anonymous and unprivileged control calls are refused and change
//! nothing; roles, rules by tag and the owner rule; logins with cookies and CSRF tokens; API tokens (also from
//! `kiln token`); cross-origin posts, foreign `Host` headers, private masters, a trusted proxy's header; the
//! login rate limit; the audit.

mod support;

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use serde_json::{json, Value};

use support::buildbot::WorkerKind;
use support::kiln::{kiln_bin, run_kiln, show, user_toml, KilnMaster, TEST_ADMIN, TEST_PASSWORD};

const WAIT: Duration = Duration::from_secs(30);

/// `kiln hash-password` of `password` (on its standard input).
fn hash_password(password: &str) -> String {
    let mut child = std::process::Command::new(kiln_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run kiln hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write the password");
    let out = child.wait_with_output().expect("kiln hash-password");
    assert!(out.status.success(), "kiln hash-password failed");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// How a request says who sends it.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
    /// A session cookie, and the CSRF header if any.
    Cookie(&'a str, Option<&'a str>),
}

fn with(request: reqwest::RequestBuilder, who: As<'_>) -> reqwest::RequestBuilder {
    match who {
        As::Nobody => request,
        As::Basic(user, password) => request.basic_auth(user, Some(password)),
        As::Bearer(token) => request.bearer_auth(token),
        As::Cookie(session, csrf) => {
            let request = request.header("Cookie", format!("kiln_session={session}"));
            match csrf {
                Some(csrf) => request.header("X-Kiln-CSRF", csrf),
                None => request,
            }
        }
    }
}

/// A form as `application/x-www-form-urlencoded`.
fn form(request: reqwest::RequestBuilder, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    request.header("Content-Type", "application/x-www-form-urlencoded").body(body)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// A JSON-RPC call as `who`; the status and the answer.
async fn call(master: &KilnMaster, path: &str, method: &str, params: Value, who: As<'_>) -> (StatusCode, Value) {
    let body = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
    let request = client().post(format!("{}/api/v2/{path}", master.url())).json(&body);
    let response = with(request, who).send().await.expect("POST");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A GET as `who`; the status and the answer (JSON, else null).
async fn get(master: &KilnMaster, path: &str, who: As<'_>) -> (StatusCode, Value) {
    let response = with(client().get(format!("{}{path}", master.url())), who).send().await.expect("GET");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn buildsets(master: &KilnMaster) -> usize {
    master.get("buildsets").await["buildsets"].as_array().map_or(0, Vec::len)
}

/// A builder whose build runs until stopped.
fn sleeper(marker: u64) -> String {
    format!("[[builder.step]]\nname = \"sleep\"\ncommand = \"sleep {marker}\"\n")
}

/// The running build of request `brid`.
async fn running_build(master: &KilnMaster, brid: i64) -> i64 {
    let builds = master.wait_builds_of_request(brid, 1).await;
    master.id(&builds[0], "buildid")
}

#[tokio::test]
async fn anonymous_and_viewer_control_calls_are_refused_and_change_nothing() {
    let marker = support::unique_marker();
    let _kill = support::KillOnDrop(marker.to_string());
    let viewer_hash = hash_password("viewer's password");
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("slow", &sleeper(marker))
        .extra_toml(&user_toml("vera", &viewer_hash, &["viewer"]))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("slow").await;
    let buildid = running_build(&master, brid).await;
    let before = buildsets(&master).await;

    let actions = [
        ("forceschedulers/force-slow", "force", json!({})),
        (&*format!("builds/{buildid}"), "stop", json!({})),
        (&*format!("builds/{buildid}"), "rebuild", json!({})),
        (&*format!("buildrequests/{brid}"), "cancel", json!({})),
        ("workers/w", "pause", json!({ "reason": "mine now" })),
        ("workers/w", "unpause", json!({})),
    ];
    for (who, expected) in
        [(As::Nobody, StatusCode::UNAUTHORIZED), (As::Basic("vera", "viewer's password"), StatusCode::FORBIDDEN)]
    {
        for (path, method, params) in &actions {
            let (status, body) = call(&master, path, method, params.clone(), who).await;
            assert_eq!(status, expected, "{method} on {path}: {body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }
    let (_, body) = call(&master, "workers/w", "pause", json!({}), As::Basic("vera", "viewer's password")).await;
    assert_eq!(body["error"]["message"], "user 'vera' (roles: viewer) may not pause", "{body}");

    assert_eq!(buildsets(&master).await, before, "no buildset was added");
    assert_eq!(master.build(buildid).await["complete"], false, "the build still runs");
    let worker = master.get_one("workers/w").await;
    assert!(worker["paused"] == false || worker["paused"].is_null(), "the worker is not paused: {worker}");
    assert_eq!(master.request(brid).await["complete"], false);
    let (_, audit) = get(&master, "/api/v2/audit", As::Nobody).await;
    let recorded: Vec<&str> =
        audit["audit"].as_array().into_iter().flatten().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(recorded, ["force"], "only the admin's force was recorded: {audit}");
    master.stop_build(buildid).await;
}

#[tokio::test]
async fn developers_force_on_tagged_builders_only_and_stop_only_their_own_builds() {
    let marker = support::unique_marker();
    let _kill = support::KillOnDrop(marker.to_string());
    let hash = hash_password("dev password");
    let rules = r#"
[[rule]]
actions = ["force"]
tags = ["plugins"]
roles = ["developer"]

[[rule]]
actions = ["stop", "cancel"]
owner = true
roles = ["developer"]
"#;
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("plug", &format!("tags = [\"plugins\"]\n{}", sleeper(marker)))
        .builder("core", &sleeper(marker))
        .extra_toml(rules)
        .extra_toml(&user_toml("dora", &hash, &["developer"]))
        .extra_toml(&user_toml("rex", &hash, &["developer"]))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let (dora, rex) = (As::Basic("dora", "dev password"), As::Basic("rex", "dev password"));

    let (status, body) = call(&master, "forceschedulers/force-core", "force", json!({}), dora).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "core is not tagged plugins: {body}");
    assert_eq!(buildsets(&master).await, 0);
    let (status, body) = call(&master, "forceschedulers/force-plug", "force", json!({ "owner": "rex" }), dora).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plug = master.builder_id("plug").await;
    let brid = body["result"][1][plug.to_string()].as_i64().expect("a request");
    let buildid = running_build(&master, brid).await;
    let bsid = body["result"][0].as_i64().expect("a buildset");
    let properties = master.get_one(&format!("buildsets/{bsid}/properties")).await;
    assert_eq!(properties["owner"][0], "dora", "the owner is who forced, whatever the form said: {properties}");

    let (status, body) = call(&master, &format!("builds/{buildid}"), "stop", json!({}), rex).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "rex does not own it: {body}");
    let (status, body) = call(&master, &format!("buildrequests/{brid}"), "cancel", json!({}), rex).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(master.build(buildid).await["complete"], false);
    let (status, body) = call(&master, &format!("builds/{buildid}"), "rebuild", json!({}), dora).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no rule lets developers rebuild: {body}");
    let (status, body) = call(&master, &format!("builds/{buildid}"), "stop", json!({ "reason": "done" }), dora).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    master.wait_build_complete(buildid).await;

    assert_eq!(master.build(buildid).await["stopped_by"], "dora", "the build names who stopped it");
    let (_, audit) = get(&master, &format!("/api/v2/audit?buildid={buildid}"), As::Nobody).await;
    let entry = &audit["audit"][0];
    assert_eq!(
        (&entry["action"], &entry["username"], &entry["how"]),
        (&json!("stop"), &json!("dora"), &json!("basic"))
    );
    assert_eq!(
        (&entry["address"], &entry["detail"], &entry["builder"]),
        (&json!("127.0.0.1"), &json!("done"), &json!("plug"))
    );
    let (_, forced) = get(&master, "/api/v2/audit?builder=plug&username=dora", As::Nobody).await;
    assert_eq!(forced["audit"].as_array().map(Vec::len), Some(2), "dora's force and stop: {forced}");
}

/// Logs in through the form: returns the session cookie's value.
async fn log_in(master: &KilnMaster, user: &str, password: &str) -> String {
    let http = client();
    let page = http.get(format!("{}/login?next=/builders", master.url())).send().await.expect("GET /login");
    assert_eq!(page.status(), StatusCode::OK);
    let form_cookie = cookie_of(page.headers(), "kiln_login").expect("the form's cookie");
    let html = page.text().await.expect("the page");
    assert!(!html.contains("<script"), "no script on the login page");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("csrf");
    let fields = [("name", user), ("password", password), ("csrf", csrf), ("next", "/builders")];
    // Without the form's cookie (a post from another site), the form is refused.
    let forged = form(http.post(format!("{}/login", master.url())), &fields).send().await.expect("POST /login");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let answer = form(http.post(format!("{}/login", master.url())), &fields)
        .header("Cookie", format!("kiln_login={form_cookie}"))
        .send()
        .await
        .expect("POST /login");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "logged in");
    assert_eq!(answer.headers()["location"], "/builders");
    let set_cookie: Vec<&str> = answer.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    let session = set_cookie.iter().find(|c| c.starts_with("kiln_session=")).expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    cookie_of(answer.headers(), "kiln_session").expect("the session")
}

fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';').next()?.strip_prefix(&format!("{name}=")).filter(|v| !v.is_empty()).map(str::to_string)
    })
}

#[tokio::test]
async fn a_cookie_session_needs_its_csrf_token_and_ends_at_logout() {
    let master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"\n").start().await;
    let session = log_in(&master, TEST_ADMIN, TEST_PASSWORD).await;
    let (status, me) = get(&master, "/api/v2/me", As::Cookie(&session, None)).await;
    assert_eq!((status, &me["user"], &me["via"]), (StatusCode::OK, &json!(TEST_ADMIN), &json!("session")), "{me}");
    let csrf = me["csrf"].as_str().expect("the session's CSRF token").to_string();

    let (status, body) = call(&master, "forceschedulers/force-b", "force", json!({}), As::Cookie(&session, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) =
        call(&master, "forceschedulers/force-b", "force", json!({}), As::Cookie(&session, Some("x"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(buildsets(&master).await, 0, "nothing started");
    let (status, body) =
        call(&master, "forceschedulers/force-b", "force", json!({}), As::Cookie(&session, Some(&csrf))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let logout = form(client().post(format!("{}/logout", master.url())), &[("csrf", csrf.as_str())])
        .header("Cookie", format!("kiln_session={session}"))
        .send()
        .await
        .expect("POST /logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let (_, me) = get(&master, "/api/v2/me", As::Cookie(&session, None)).await;
    assert_eq!(me["user"], Value::Null, "the session is revoked: {me}");
    let (status, _) =
        call(&master, "forceschedulers/force-b", "force", json!({}), As::Cookie(&session, Some(&csrf))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cross_origin_and_plain_text_posts_and_foreign_hosts_are_refused() {
    let master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"\n").start().await;
    let url = format!("{}/api/v2/forceschedulers/force-b", master.url());
    let body = r#"{"jsonrpc":"2.0","method":"force","params":{"reason":"drive-by"},"id":1}"#;
    let admin = As::Basic(TEST_ADMIN, TEST_PASSWORD);
    for (content_type, origin) in [
        ("text/plain", Some("http://evil.example")),
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
        ("application/json", Some("http://evil.example")),
        ("application/json", Some("null")),
    ] {
        for who in [As::Nobody, admin] {
            let mut request = client().post(&url).header("Content-Type", content_type).body(body);
            if let Some(origin) = origin {
                request = request.header("Origin", origin);
            }
            let response = with(request, who).send().await.expect("POST");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{content_type} from {origin:?}");
        }
    }
    let request = client().post(&url).header("Content-Type", "application/json").header("Sec-Fetch-Site", "cross-site");
    assert_eq!(with(request.body(body), admin).send().await.expect("POST").status(), StatusCode::BAD_REQUEST);
    assert_eq!(buildsets(&master).await, 0, "nothing started");
    let own = client().post(&url).header("Content-Type", "application/json").header("Origin", master.url());
    assert_eq!(with(own.body(body), admin).send().await.expect("POST").status(), StatusCode::OK, "its own origin");

    // DNS rebinding: a name that resolves to the master but is not its own.
    let evil = client().get(format!("{}/api/v2/builders", master.url())).header("Host", "evil.example");
    let response = evil.send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let port = master.url().rsplit(':').next().expect("a port").to_string();
    let local = client().get(format!("{}/api/v2/builders", master.url())).header("Host", format!("localhost:{port}"));
    assert_eq!(local.send().await.expect("GET").status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_act_until_revoked_or_expired_and_kiln_token_manages_them() {
    let master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"\n").start().await;
    let admin = As::Basic(TEST_ADMIN, TEST_PASSWORD);
    let create = |body: Value, who: As<'static>| {
        let request = client().post(format!("{}/api/v2/tokens", master.url())).json(&body);
        async move {
            let response = with(request, who).send().await.expect("POST tokens");
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = create(json!({ "name": "ci", "role": "admin" }), admin).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["tokens"][0]["token"].as_str().expect("the token").to_string();
    let id = body["tokens"][0]["id"].as_i64().expect("its id");
    let (status, body) = create(json!({ "name": "x", "role": "developer" }), admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not one of the admin's roles: {body}");
    let (status, _) = create(json!({ "name": "x", "role": "admin" }), As::Nobody).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(&master, "forceschedulers/force-b", "force", json!({}), As::Bearer(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        call(&master, "forceschedulers/force-b", "force", json!({}), As::Basic(TEST_ADMIN, &token)).await;
    assert_eq!(status, StatusCode::OK, "a token as HTTP Basic's password: {body}");
    let (_, listed) = get(&master, "/api/v2/tokens", As::Bearer(&token)).await;
    assert!(!listed.to_string().contains(&token), "a token is shown once only");
    assert_eq!(listed["tokens"][0]["name"], "ci");
    for file in ["state.sqlite", "state.sqlite-wal"] {
        let stored = std::fs::read(master.master_dir().join(file)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&stored).contains(&token), "{file} keeps the token's hash only");
    }

    let revoke = with(client().delete(format!("{}/api/v2/tokens/{id}", master.url())), admin).send().await;
    assert_eq!(revoke.expect("DELETE").status(), StatusCode::OK);
    let (status, _) = call(&master, "forceschedulers/force-b", "force", json!({}), As::Bearer(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");

    let (_, body) = create(json!({ "name": "brief", "role": "admin", "expires": "1s" }), admin).await;
    let brief = body["tokens"][0]["token"].as_str().expect("the token").to_string();
    master
        .wait_for("the 1 s token to expire", WAIT, async || {
            let (status, _) = get(&master, "/api/v2/me", As::Bearer(&brief)).await;
            (status == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
    let (status, _) = call(&master, "forceschedulers/force-b", "force", json!({}), As::Bearer(&brief)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");

    // The command line: a login by name and password on standard input, then the token it printed.
    let mut child = tokio::process::Command::new(kiln_bin())
        .args(["token", "create", "--name", "laptop", "--role", "admin", "--expires", "30d"])
        .args(["--user", TEST_ADMIN, "--master", master.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln token create");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(format!("{TEST_PASSWORD}\n").as_bytes()).await.expect("the password");
    }
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("in time").expect("kiln token create");
    assert!(out.status.success(), "kiln token create {}", show(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(printed.starts_with("kiln_"), "{printed}");
    let out = run_kiln(&["token", "list", "--master", master.url(), "--token", &printed], WAIT).await;
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listing.contains("laptop") && listing.contains("revoked"), "{}", show(&out));
    let out = run_kiln(&["force", "b", "--master", master.url(), "--token", &printed], WAIT).await;
    assert!(out.status.success(), "kiln force --token {}", show(&out));
    let laptop = serde_json::from_str::<Value>(&String::from_utf8_lossy(
        &run_kiln(&["token", "list", "--json", "--master", master.url(), "--token", &printed], WAIT).await.stdout,
    ))
    .expect("JSON");
    let laptop_id =
        laptop.as_array().and_then(|t| t.iter().find(|t| t["name"] == "laptop")).expect("listed")["id"].to_string();
    let out = run_kiln(&["token", "revoke", &laptop_id, "--master", master.url(), "--token", &printed], WAIT).await;
    assert!(out.status.success(), "{}", show(&out));
    let out = run_kiln(&["force", "b", "--master", master.url(), "--token", &printed], WAIT).await;
    assert_eq!(out.status.code(), Some(2), "a revoked token cannot force {}", show(&out));
}

#[tokio::test]
async fn guessing_passwords_is_slowed_per_address_and_per_user() {
    let master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"\n").start().await;
    let started = Instant::now();
    let (mut checked, mut limited) = (0u32, 0u32);
    while started.elapsed() < Duration::from_secs(2) {
        let (status, _) = get(&master, "/api/v2/me", As::Basic(TEST_ADMIN, "a guess")).await;
        match status {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{checked} guesses checked, {limited} refused unchecked in {seconds:.1} s");
    // 5 in a row, then one a second.
    assert!(f64::from(checked) <= 5.0 + seconds.ceil() + 1.0, "{checked} guesses checked in {seconds:.1} s");
    assert!(limited > 0, "the guesses were not limited");
    // From another address the same user gets no new burst: the user's own limit holds.
    let other =
        reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().expect("client");
    let guess = async |password: &str| {
        let request = other.get(format!("{}/api/v2/me", master.url())).basic_auth(TEST_ADMIN, Some(password));
        let response = request.send().await.expect("GET");
        (response.status(), response.headers().contains_key("retry-after"))
    };
    let started = Instant::now();
    let mut checked = 0u32;
    while started.elapsed() < Duration::from_millis(1500) {
        match guess("another guess").await {
            (StatusCode::UNAUTHORIZED, _) => checked += 1,
            (StatusCode::TOO_MANY_REQUESTS, retry_after) => assert!(retry_after, "a 429 says when to retry"),
            (other, _) => panic!("unexpected {other}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(f64::from(checked) <= seconds.ceil() + 1.0, "{checked} guesses from 127.0.0.2 checked in {seconds:.1} s");
    master
        .wait_for("the limit to lift", WAIT, async || {
            let (status, me) = get(&master, "/api/v2/me", As::Basic(TEST_ADMIN, TEST_PASSWORD)).await;
            (status == StatusCode::OK).then_some(me)
        })
        .await;
}

#[tokio::test]
async fn a_private_master_hides_reads_and_trusts_only_its_proxy() {
    let auth = r#"
[auth]
private = true
proxy_header = "X-Forwarded-User"
proxy_groups_header = "X-Forwarded-Groups"
trusted_proxies = ["127.0.0.2"]
"#;
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"\n")
        .extra_toml(auth)
        .start()
        .await;
    for path in ["/api/v2/builders", "/api/v2/events", "/ws", "/api/v2/logs/1/raw", "/metrics", "/api/v2/audit"] {
        let (status, _) = get(&master, path, As::Nobody).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let page = client().get(format!("{}/builders", master.url())).header("Accept", "text/html").send().await;
    let page = page.expect("GET");
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/login?next=%2Fbuilders");
    assert_eq!(get(&master, "/login", As::Nobody).await.0, StatusCode::OK);
    let (status, _) = get(&master, "/api/v2/builders", As::Basic(TEST_ADMIN, TEST_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK);

    // The proxy's header counts from the proxy's address only.
    let mut headers = HeaderMap::new();
    headers.insert("X-Forwarded-User", HeaderValue::from_static("pat"));
    headers.insert("X-Forwarded-Groups", HeaderValue::from_static("developer, ops"));
    let forged = client().get(format!("{}/api/v2/me", master.url())).headers(headers.clone()).send().await;
    assert_eq!(forged.expect("GET").status(), StatusCode::UNAUTHORIZED, "not from the proxy");
    let proxy =
        reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().expect("client");
    let me: Value = proxy
        .get(format!("{}/api/v2/me", master.url()))
        .headers(headers.clone())
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!((&me["user"], &me["roles"], &me["via"]), (&json!("pat"), &json!(["developer", "ops"]), &json!("proxy")));
    let body = json!({ "jsonrpc": "2.0", "method": "force", "params": {}, "id": 1 });
    let forced = proxy
        .post(format!("{}/api/v2/forceschedulers/force-b", master.url()))
        .headers(headers)
        .header("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
        .json(&body);
    assert_eq!(forced.send().await.expect("POST").status(), StatusCode::OK, "a developer may force");
    let (_, audit) = get(&master, "/api/v2/audit?username=pat", As::Basic(TEST_ADMIN, TEST_PASSWORD)).await;
    let entry = &audit["audit"][0];
    assert_eq!(
        (&entry["how"], &entry["address"]),
        (&json!("proxy"), &json!("203.0.113.9")),
        "the client the proxy saw"
    );
}

#[tokio::test]
async fn create_master_writes_a_private_file_with_a_user_to_fill_in() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let master_dir = dir.path().join("m");
    let out = run_kiln(&["create-master", master_dir.to_str().expect("UTF-8")], WAIT).await;
    assert!(out.status.success(), "{}", show(&out));
    let file = master_dir.join("master.toml");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).expect("master.toml").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).expect("master.toml");
    assert!(text.contains("# [[user]]") && text.contains("kiln hash-password"), "{text}");
}

/// Runs `kiln reconfig DIR`; its standard output (it must succeed).
async fn reconfig(master: &KilnMaster) -> String {
    let dir = master.master_dir().to_str().expect("a UTF-8 path").to_owned();
    let out = run_kiln(&["reconfig", &dir, "--timeout", "60"], Duration::from_secs(90)).await;
    assert!(out.status.success(), "kiln reconfig {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Users removed, with a new password or new roles, and new rules apply at the next request after `kiln
/// reconfig`, which lists them; the build and worker resources name who stopped, rebuilt and paused.
#[tokio::test]
async fn users_and_rules_take_a_reconfig() {
    let (old_hash, new_hash) = (hash_password("old password"), hash_password("new password"));
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"\n")
        .extra_toml(&user_toml("bob", &old_hash, &["developer"]))
        .extra_toml(&user_toml("cy", &old_hash, &["developer"]))
        .extra_toml(&user_toml("vic", &old_hash, &["viewer"]))
        .start()
        .await;
    let force = |who: As<'static>| call(&master, "forceschedulers/force-b", "force", json!({}), who);
    let bob_session = log_in(&master, "bob", "old password").await;
    let cy_session = log_in(&master, "cy", "old password").await;
    let request =
        client().post(format!("{}/api/v2/tokens", master.url())).json(&json!({ "name": "ci", "role": "developer" }));
    let created: Value =
        with(request, As::Basic("bob", "old password")).send().await.expect("POST").json().await.expect("JSON");
    let bob_token = created["tokens"][0]["token"].as_str().expect("bob's token").to_string();
    let cy_token = {
        let request = client()
            .post(format!("{}/api/v2/tokens", master.url()))
            .json(&json!({ "name": "ci", "role": "developer" }));
        let created: Value =
            with(request, As::Basic("cy", "old password")).send().await.expect("POST").json().await.expect("JSON");
        created["tokens"][0]["token"].as_str().expect("cy's token").to_string()
    };
    let (status, body) = force(As::Basic("vic", "old password")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer may not force yet: {body}");
    for (session, user) in [(&bob_session, "bob"), (&cy_session, "cy")] {
        let (_, me) = get(&master, "/api/v2/me", As::Cookie(session, None)).await;
        assert_eq!(me["user"], user, "{me}");
    }

    // bob leaves, cy changes her password, vic becomes a developer, and a rule lets viewers force.
    let path = master.master_dir().join("master.toml");
    let text = std::fs::read_to_string(&path).expect("master.toml");
    let text = text
        .replace(&user_toml("bob", &old_hash, &["developer"]), "")
        .replace(&user_toml("cy", &old_hash, &["developer"]), &user_toml("cy", &new_hash, &["developer"]))
        .replace(&user_toml("vic", &old_hash, &["viewer"]), &user_toml("vic", &old_hash, &["viewer", "developer"]));
    let rules = "\n[[rule]]\nactions = [\"force\"]\nroles = [\"viewer\"]\n";
    std::fs::write(&path, format!("{text}{rules}")).expect("write master.toml");
    let answer = reconfig(&master).await;
    for line in [
        "user 'bob' removed: its sessions and tokens are revoked",
        "user 'cy' password changed: its sessions end",
        "user 'vic' roles changed (viewer → viewer, developer)",
        "rules changed (the built-in ones → 1 rules)",
    ] {
        assert!(answer.contains(line), "'{line}' missing from:\n{answer}");
    }

    let (_, me) = get(&master, "/api/v2/me", As::Cookie(&bob_session, None)).await;
    assert_eq!(me["user"], Value::Null, "bob's session ended: {me}");
    let (status, _) = get(&master, "/api/v2/me", As::Bearer(&bob_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "bob's token is revoked");
    let (status, _) = force(As::Basic("bob", "old password")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "bob is no user any more");
    let (_, me) = get(&master, "/api/v2/me", As::Cookie(&cy_session, None)).await;
    assert_eq!(me["user"], Value::Null, "cy logs in again after a new password: {me}");
    let (status, _) = force(As::Basic("cy", "old password")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "cy's old password");
    let (status, body) = call(&master, "forceschedulers/force-b", "force", json!({}), As::Bearer(&cy_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "cy's token stays, and the new rules apply to it: {body}");
    let (status, body) = force(As::Basic("vic", "old password")).await;
    assert_eq!(status, StatusCode::OK, "the new rule lets viewers force: {body}");
    let (status, body) = force(As::Basic("cy", "new password")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "developers have no rule now: {body}");

    // Who acted, on the build and the worker.
    let admin = As::Basic(TEST_ADMIN, TEST_PASSWORD);
    let (status, body) = call(&master, "workers/w", "pause", json!({ "reason": "disk" }), admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let worker = master.get_one("workers/w").await;
    assert_eq!((&worker["paused"], &worker["paused_by"]), (&json!(true), &json!(TEST_ADMIN)), "{worker}");
    let (status, _) = call(&master, "workers/w", "unpause", json!({}), admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(master.get_one("workers/w").await["paused_by"], Value::Null, "not paused any more");
    let brid = master.force("b").await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    let build = master_build(&master, brid).await;
    assert_eq!(build["stopped_by"], Value::Null, "nobody stopped it");
    let buildid = master.id(&build, "buildid");
    let (status, body) = call(&master, &format!("builds/{buildid}"), "rebuild", json!({}), admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bsid = body["result"][0].as_i64().expect("a buildset");
    let buildset = master.get_one(&format!("buildsets/{bsid}")).await;
    assert_eq!(buildset["reason"], format!("rebuild of build {buildid} by {TEST_ADMIN}"), "{buildset}");
}

/// The finished build of request `brid`.
async fn master_build(master: &KilnMaster, brid: i64) -> Value {
    master.wait_request_complete(brid).await;
    master.builds_of_request(brid).await.pop().expect("a build")
}
