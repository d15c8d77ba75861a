//! The pages rendered from a real master on a temporary store, filled through the store's API, and read back
//! with an HTML parser: links, result classes and words, escaping, paging, fragments, the queue's reasons and
//! the force form.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use scraper::{Html, Selector};
use tower::ServiceExt;

use crate::config::MasterConfig;
use crate::master::Master;
use crate::model::{NewBuildset, NewChange, SourceStamp};
use crate::results::{FAILURE, SUCCESS};
use crate::store::LogType;
use crate::web::router;

const EVIL: &str = "<script>alert('x')</script>";
/// The argon2 hash (at argon2's smallest cost, so that logins are quick) of [`PASSWORD`], the fixture's users'.
const ADMIN_HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$a2lsbi10ZXN0LXNhbHQ$QXq7j3egqTpIiaCCSe5AdBnGT+vRQNgIoDSocFatnfg";
const PASSWORD: &str = "kiln-test-password";

struct Fixture {
    master: Master,
    app: Router,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
title = "Kiln test"
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
description = "{EVIL}"
tags = ["os", "linux"]
collapse_requests = false
  [[builder.step]]
  name = "compile"
  command = "make"
  [[builder.step]]
  name = "test"
  command = "make check"

[[builder]]
name = "mac"
workers = ["w1"]
tags = ["os"]
collapse_requests = false
  [[builder.step]]
  command = "true"

[[builder]]
name = "app"
workers = ["w1"]
collapse_requests = false
  [[builder.step]]
  name = "checkout"
  type = "git"
  repourl = "https://example.invalid/app.git"
  [[builder.step]]
  command = "make"

[[scheduler]]
name = "nightly"
type = "nightly"
builders = ["linux"]
hour = 3
minute = 0

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

[[user]]
name = "admin"
password_hash = "{ADMIN_HASH}"
roles = ["admin"]

[[user]]
name = "watcher"
password_hash = "{ADMIN_HASH}"
roles = ["viewer"]
"#,
        dir.path().join("state.sqlite").display()
    );
    let config = MasterConfig::from_str(&text, "master.toml").expect("config");
    let (master, _) = Master::start_with(dir.path(), config).await.expect("master");
    Fixture { app: router(master.clone()), master, _dir: dir }
}

/// A parsed page.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    html: Html,
}

impl Page {
    fn all(&self, css: &str) -> Vec<scraper::ElementRef<'_>> {
        let selector = Selector::parse(css).unwrap_or_else(|e| panic!("selector {css}: {e:?}"));
        self.html.select(&selector).collect()
    }

    fn one(&self, css: &str) -> scraper::ElementRef<'_> {
        let found = self.all(css);
        assert!(!found.is_empty(), "nothing matches {css} in:\n{}", self.text);
        found[0]
    }

    /// The routing-key patterns whose events refresh the page.
    fn events(&self) -> Vec<String> {
        let events = self.one("body").value().attr("data-events").unwrap_or("");
        events.split(' ').filter(|p| !p.is_empty()).map(str::to_string).collect()
    }

    fn texts(&self, css: &str) -> Vec<String> {
        self.all(css).iter().map(|e| e.text().collect::<String>()).collect()
    }
}

impl Fixture {
    async fn page(&self, uri: &str) -> Page {
        self.page_as(uri, None).await
    }

    /// `uri` as user `user` sees it (HTTP Basic with the fixture's password), or anonymously.
    async fn page_as(&self, uri: &str, user: Option<&str>) -> Page {
        let mut request = Request::get(uri);
        if let Some(user) = user {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
            request = request.header(header::AUTHORIZATION, format!("Basic {basic}"));
        }
        // From this machine, where HTTP Basic is accepted.
        let request = request
            .extension(crate::web::auth::Peer(std::net::SocketAddr::from(([127, 0, 0, 1], 40000))))
            .body(Body::empty())
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
        let text = String::from_utf8(body).expect("UTF-8");
        let html = Html::parse_document(&text);
        Page { status, headers, text, html }
    }

    async fn ok(&self, uri: &str) -> Page {
        self.ok_as(uri, None).await
    }

    async fn ok_as(&self, uri: &str, user: Option<&str>) -> Page {
        let page = self.page_as(uri, user).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}:\n{}", page.text);
        page
    }

    /// A finished build of `builder` with result `results`, for a buildset of `change` (if any); its one step
    /// `compile` ends with the same result and has a log `stdio`. Returns the build's number.
    async fn finished_build(&self, builder: &str, results: i32, change: Option<i64>) -> i64 {
        let store = self.master.store();
        let builderid = self.master.builder_id(builder).expect("builder");
        let new = NewBuildset {
            reason: format!("because {EVIL}"),
            builderids: vec![builderid],
            changeids: change.into_iter().collect(),
            sourcestamps: vec![SourceStamp {
                branch: Some("main".into()),
                revision: Some("abc123".into()),
                repository: "https://example.invalid/repo.git".into(),
                ..SourceStamp::default()
            }],
            ..NewBuildset::default()
        };
        let (_, brids) = store.add_buildset(&new).await.expect("buildset");
        assert!(store.claim_requests(&brids, self.master.masterid()).await.expect("claim"));
        let worker = store.find_or_add_worker("w1").await.expect("worker");
        let (buildid, number) =
            store.add_build(builderid, brids[0], worker, self.master.masterid()).await.expect("build");
        let (stepid, _) = store.start_step(buildid, "compile", "compiling").await.expect("step");
        let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
        store.append_log(logid, "o cc -c main.c\n").await.expect("append");
        store.finish_log(logid).await.expect("finish log");
        store.finish_step(stepid, results, false).await.expect("finish step");
        let state = if results == SUCCESS { "build successful".to_string() } else { format!("failed {EVIL}") };
        store.set_build_state(buildid, &state).await.expect("state");
        store.finish_build(buildid, results).await.expect("finish");
        store.complete_requests(&brids, results).await.expect("complete");
        number
    }

    async fn change(&self) -> i64 {
        let change = NewChange {
            author: format!("Mallory {EVIL}"),
            comments: format!("fix the parser\n\n{EVIL}"),
            files: vec!["src/parse.rs".into()],
            revision: Some("abc123".into()),
            branch: Some("main".into()),
            repository: "https://example.invalid/repo.git".into(),
            when_timestamp: 1_700_000_000,
            properties: [("revlink".to_string(), serde_json::json!("https://example.invalid/repo/commit/abc123"))]
                .into_iter()
                .collect(),
            ..NewChange::default()
        };
        self.master.store().add_change(&change).await.expect("change")
    }
}

#[tokio::test]
async fn a_failing_build_is_shown_failed_on_every_overview() {
    let f = fixture().await;
    let change = f.change().await;
    f.finished_build("linux", SUCCESS, None).await;
    let number = f.finished_build("linux", FAILURE, Some(change)).await;
    let href = format!("/builders/linux/builds/{number}");
    for uri in ["/", "/builders", "/waterfall", "/grid", "/console"] {
        let page = f.ok(uri).await;
        let cell = page.one(&format!("a.box[href=\"{href}\"]"));
        assert!(cell.value().classes().any(|c| c == "failure"), "{uri}: {}", cell.html());
        let label = cell.value().attr("aria-label").expect("label");
        assert!(label.starts_with(&format!("linux #{number}: failed")), "{uri}: the label says it: {label}");
        assert!(cell.text().any(|t| t.contains('✗')), "{uri}: a symbol, not only a colour");
    }
    // The success before it is a success.
    let page = f.ok("/builders").await;
    assert!(page.one("a.box[href=\"/builders/linux/builds/1\"]").value().classes().any(|c| c == "success"));
    // Home lists it among the recent failures; the builders page shows the last result in words.
    let home = f.ok("/").await;
    assert!(home.all(&format!("table.builds a[href=\"{href}\"]")).len() == 1);
    assert!(page.texts("li.builder .last .sr").iter().any(|t| t == "last: failure"));
}

#[tokio::test]
async fn the_build_page_shows_the_result_steps_logs_changes_and_sources() {
    let f = fixture().await;
    let change = f.change().await;
    let number = f.finished_build("linux", FAILURE, Some(change)).await;
    let page = f.ok(&format!("/builders/linux/builds/{number}")).await;
    assert_eq!(page.texts("h1 .result"), vec!["✗ failure".to_string()]);
    assert!(page.one("title").text().collect::<String>().starts_with("✗ linux #1"));
    assert!(page.one("link[rel=icon]").value().attr("href").expect("href").contains("favicon-failure"));
    let step = page.one("li.step.failure");
    assert!(step.text().collect::<String>().contains("compile"));
    let logs = page.all("li.step.failure ul.logs a");
    let log_href = logs[0].value().attr("href").expect("href");
    assert!(log_href.starts_with("/builders/linux/builds/1/steps/") && log_href.ends_with("/logs/stdio"), "{log_href}");
    assert!(logs[1].value().attr("href").expect("raw").starts_with("/api/v2/logs/"));
    // The change, linked to its commit; the source stamp.
    assert_eq!(page.one("a.rev").value().attr("href"), Some("https://example.invalid/repo/commit/abc123"));
    assert!(page.texts("td.rev").contains(&"abc123".to_string()));
    assert!(page.one(&format!("a[href=\"/changes/{change}\"]")).text().collect::<String>().contains("Change"));
    // The rebuild button posts the JSON-RPC action, for a user allowed to; nobody else sees it.
    assert!(page.all("button.action").is_empty(), "anonymous: no action");
    assert!(page
        .one(".account a.login")
        .value()
        .attr("href")
        .is_some_and(|h| h.starts_with("/login?next=%2Fbuilders")));
    let watcher = f.ok_as(&format!("/builders/linux/builds/{number}"), Some("watcher")).await;
    assert!(watcher.all("button.action").is_empty(), "a viewer: no action");
    assert_eq!(watcher.texts(".account .user strong"), vec!["watcher"]);
    let page = f.ok_as(&format!("/builders/linux/builds/{number}"), Some("admin")).await;
    assert_eq!(page.texts(".account .user strong"), vec!["admin"]);
    let button = page.one("button.action");
    assert_eq!(button.value().attr("data-method"), Some("rebuild"));
    assert_eq!(button.value().attr("data-url"), Some("/api/v2/builds/1"));
    assert!(page.texts("dd").iter().any(|t| t.contains("because <script>")), "the reason, as text");
    assert_eq!(f.page("/builders/linux/builds/99").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.page("/builders/nope/builds/1").await.status, StatusCode::NOT_FOUND);
}

/// A forced build without a source stamp whose git step checked out a revision shows what it built (the
/// demo's first build said "No source stamp.").
#[tokio::test]
async fn a_build_without_a_source_stamp_shows_the_revision_it_checked_out() {
    let f = fixture().await;
    let store = f.master.store();
    let builderid = f.master.builder_id("app").expect("builder");
    let new = NewBuildset { reason: "forced".into(), builderids: vec![builderid], ..NewBuildset::default() };
    let (_, brids) = store.add_buildset(&new).await.expect("buildset");
    assert!(store.claim_requests(&brids, f.master.masterid()).await.expect("claim"));
    let worker = store.find_or_add_worker("w1").await.expect("worker");
    let (buildid, number) = store.add_build(builderid, brids[0], worker, f.master.masterid()).await.expect("build");
    let uri = format!("/builders/app/builds/{number}");
    assert!(f.ok(&uri).await.texts("#h-sources + p").iter().any(|t| t == "No source stamp yet."));
    let got = crate::model::Property {
        name: "got_revision".into(),
        value: serde_json::json!("0123456789abcdef0123456789abcdef01234567"),
        source: "Git".into(),
    };
    store.set_build_properties(buildid, &[got]).await.expect("property");
    let page = f.ok(&uri).await;
    assert!(page.all("#h-sources + p").is_empty(), "{}", page.text);
    assert_eq!(page.texts("table.sources td.got"), vec!["0123456789abcdef0123456789abcdef01234567".to_string()]);
    assert!(page.texts("table.sources td").contains(&"https://example.invalid/app.git".to_string()));
    // The same in the live fragment the page re-fetches.
    let live = f.ok(&format!("{uri}?fragment=live")).await;
    assert_eq!(live.texts("td.got").len(), 1, "{}", live.text);
}

#[tokio::test]
async fn what_users_wrote_renders_as_text() {
    let f = fixture().await;
    let change = f.change().await;
    f.finished_build("linux", FAILURE, Some(change)).await;
    let uris = ["/", "/builders", "/builders/linux", "/builders/linux/builds/1", "/changes", "/changes/1", "/console"];
    for uri in uris {
        let page = f.ok(uri).await;
        assert!(!page.text.contains(EVIL), "{uri} has the markup unescaped");
        assert!(page.all("script").iter().all(|s| s.value().attr("src").is_some()), "{uri}: only our scripts");
    }
    let change_page = f.ok("/changes/1").await;
    assert!(change_page.texts("pre.comments")[0].contains(EVIL), "shown as the text it is");
}

#[tokio::test]
async fn pages_send_the_security_headers_and_answer_their_live_fragment() {
    let f = fixture().await;
    let page = f.ok("/").await;
    let h = |name: header::HeaderName| page.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(h(header::CONTENT_SECURITY_POLICY).as_deref(), Some("default-src 'self'; frame-ancestors 'none'"));
    assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS).as_deref(), Some("nosniff"));
    assert_eq!(h(header::REFERRER_POLICY).as_deref(), Some("same-origin"));
    assert!(h(header::CONTENT_TYPE).is_some_and(|t| t.starts_with("text/html")));
    assert!(page.all("[style]").is_empty() && page.all("style").is_empty(), "no inline styles");
    assert!(page.one("body").value().attr("data-events").is_some_and(|e| e.contains("builds/*/*")));

    let fragment = f.ok("/?fragment=live").await;
    assert!(fragment.text.trim_start().starts_with("<div data-fragment=\"live\""), "{}", fragment.text);
    assert!(!fragment.text.contains("<html") && !fragment.text.contains("<nav aria-label=\"Main\""));
    assert_eq!(f.page("/?fragment=nope").await.status, StatusCode::NOT_FOUND);

    // Assets: hashed, immutable, linked from the page.
    let css = page.one("link[rel=stylesheet]").value().attr("href").expect("href").to_string();
    let asset = f.page(&css).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(asset
        .headers
        .get(header::CACHE_CONTROL)
        .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("immutable"))));
    assert_eq!(f.page("/assets/style.css").await.status, StatusCode::NOT_FOUND);
    // The API is unchanged.
    let api = f.page("/api/v2/builders").await;
    assert!(api.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json")));
}

#[tokio::test]
async fn the_builder_page_pages_its_builds_by_number() {
    let f = fixture().await;
    for _ in 0..120 {
        f.finished_build("linux", SUCCESS, None).await;
    }
    let numbers = |page: &Page| -> Vec<i64> {
        page.texts("table.builds td:nth-child(1) a")
            .iter()
            .map(|t| t.trim_start_matches('#').parse().expect("number"))
            .collect()
    };
    let first = f.ok("/builders/linux").await;
    assert_eq!(numbers(&first), (71..=120).rev().collect::<Vec<_>>());
    assert_eq!(first.one("a[rel=next]").value().attr("href"), Some("/builders/linux?before=71"));
    let second = f.ok("/builders/linux?before=71").await;
    assert_eq!(numbers(&second), (21..=70).rev().collect::<Vec<_>>());
    let last = f.ok("/builders/linux?before=21").await;
    assert_eq!(numbers(&last), (1..=20).rev().collect::<Vec<_>>());
    assert!(last.all("a[rel=next]").is_empty(), "no older page");
    assert_eq!(f.page("/builders/linux?before=x").await.status, StatusCode::BAD_REQUEST);
    for page in [&first, &second, &last] {
        assert!(page.text.len() < 50 * 1024, "{} bytes", page.text.len());
    }
}

#[tokio::test]
async fn the_builder_page_says_why_each_request_waits_and_what_feeds_it() {
    let f = fixture().await;
    let values = serde_json::json!({ "version": "1.2" });
    let submitted = f.master.force("release", Some("linux"), values.as_object().expect("map")).await.expect("force");
    let page = f.ok("/builders/linux").await;
    let pending = page.texts("ul.queue li");
    assert_eq!(pending.len(), 1, "{pending:?}");
    let brid = submitted.requests[0].1;
    assert!(pending[0].contains(&format!("request {brid}")), "{pending:?}");
    assert!(pending[0].contains("no worker connected (its workers: w1)"), "{pending:?}");
    assert_eq!(page.one("ul.queue button").value().attr("data-url"), Some(&*format!("/api/v2/buildrequests/{brid}")));
    // The same reason on the requests page and home.
    assert!(f.ok("/requests").await.texts("td.why").iter().any(|t| t.starts_with("no worker connected")));
    assert!(f.ok("/").await.texts("ul.queue .why").iter().any(|t| t.starts_with("no worker connected")));
    // The schedulers that feed it, with the nightly one's next firings.
    let rows = page.texts("table.schedulers tbody tr td:nth-child(1)");
    assert_eq!(rows, vec!["nightly", "release", "force-linux"]);
    let firings = page.all("table.schedulers tbody tr:nth-child(1) td:nth-child(4) time");
    assert_eq!(firings.len(), 3);
    assert!(firings[0].value().attr("datetime").expect("datetime").ends_with("T03:00:00Z"));
}

#[tokio::test]
async fn the_force_form_is_made_from_the_typed_parameters() {
    let f = fixture().await;
    let page = f.ok("/builders/linux").await;
    let form = page.one("form.force");
    assert_eq!(form.value().attr("data-url"), Some("/api/v2/forceschedulers/release"));
    assert_eq!(form.value().attr("data-builder"), Some("linux"));
    let version = page.one("form.force input[name=version]");
    assert_eq!(version.value().attr("type"), Some("text"));
    assert!(version.value().attr("required").is_some());
    assert_eq!(version.value().attr("data-pattern"), Some(r"\d+\.\d+"));
    let jobs = page.one("form.force input[name=jobs]");
    assert_eq!((jobs.value().attr("type"), jobs.value().attr("value")), (Some("number"), Some("2")));
    let clean = page.one("form.force input[name=clean]");
    assert_eq!((clean.value().attr("type"), clean.value().attr("checked")), (Some("checkbox"), None));
    assert_eq!(page.texts("form.force select[name=mode] option"), vec!["debug", "release"]);
    assert_eq!(page.texts("form.force select[name=mode] option[selected]"), vec!["release"]);
    assert_eq!(page.one("form.force input[name=reason]").value().attr("value"), Some("a release"));
    // Every field has a label and a place for its error.
    for input in page.all("form.force input, form.force select, form.force textarea") {
        let id = input.value().attr("id").expect("id");
        assert_eq!(page.all(&format!("label[for=\"{id}\"]")).len(), 1, "{id} has a label");
        assert_eq!(page.all(&format!("#{id}-error")).len(), 1, "{id} has an error box");
    }
    // mac has only its implicit one, with the common fields alone.
    let mac = f.ok("/builders/mac").await;
    let forms = mac.all("form.force");
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0].value().attr("data-url"), Some("/api/v2/forceschedulers/force-mac"));
    let names: Vec<&str> = mac.all("form.force [name]").iter().filter_map(|e| e.value().attr("name")).collect();
    assert_eq!(names, vec!["reason", "owner", "branch", "revision"]);
}

#[tokio::test]
async fn builders_filter_by_tag_and_name() {
    let f = fixture().await;
    let names = |page: &Page| page.texts("li.builder a.name");
    assert_eq!(names(&f.ok("/builders").await), vec!["linux", "mac", "app"]);
    assert_eq!(names(&f.ok("/builders?tag=linux").await), vec!["linux"]);
    assert_eq!(names(&f.ok("/builders?tag=os&name=MA").await), vec!["mac"]);
    assert!(names(&f.ok("/builders?tag=os&tag=nope").await).is_empty());
    let page = f.ok("/builders?tag=os").await;
    let on = page.one("a.tag.on");
    assert_eq!(
        (on.text().collect::<String>(), on.value().attr("aria-current")),
        ("os (filtering)".into(), Some("true"))
    );
    assert_eq!(on.value().attr("href"), Some("/builders"), "clicking it again removes it");
}

#[tokio::test]
async fn every_page_answers_and_stays_small() {
    let f = fixture().await;
    let change = f.change().await;
    f.finished_build("linux", FAILURE, Some(change)).await;
    let uris = [
        "/",
        "/builders",
        "/builders/linux",
        "/builders/linux/builds/1",
        "/workers",
        "/workers/w1",
        "/changes",
        "/changes/1",
        "/requests",
        "/schedulers",
        "/about",
        "/waterfall",
        "/grid",
        "/console",
    ];
    for uri in uris {
        let page = f.ok(uri).await;
        assert!(page.text.len() < 50 * 1024, "{uri}: {} bytes", page.text.len());
        assert_eq!(page.all("html[lang]").len(), 1, "{uri}");
        assert!(page.all("main#main h1").len() == 1, "{uri} has one heading");
        for button in page.all("button") {
            assert!(!button.text().collect::<String>().trim().is_empty(), "{uri}: every button is named");
        }
        let fragment = f.ok(&format!("{uri}{}fragment=live", if uri.contains('?') { "&" } else { "?" })).await;
        assert!(fragment.text.contains("data-fragment=\"live\""), "{uri}");
    }
    let worker = f.ok("/workers/w1").await;
    assert!(worker.texts("h1 .result").iter().any(|t| t.contains("not connected")));
    assert!(worker.all("button.action").is_empty(), "anonymous: no pause button");
    let worker = f.ok_as("/workers/w1", Some("admin")).await;
    assert_eq!(worker.one("button.action").value().attr("data-method"), Some("pause"));
    assert_eq!(f.page("/workers/nope").await.status, StatusCode::NOT_FOUND);
    let about = f.ok("/about").await;
    assert!(about.texts("dd").iter().any(|t| t.ends_with("master.toml")));
}

#[tokio::test]
async fn a_badge_tells_the_last_result() {
    let f = fixture().await;
    let none = f.ok("/badges/linux.svg").await;
    assert!(none.text.contains("no builds"));
    f.finished_build("linux", FAILURE, None).await;
    let badge = f.ok("/badges/linux.svg").await;
    assert_eq!(badge.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("image/svg+xml"));
    assert!(badge.text.starts_with("<svg") && badge.text.contains(">failure<"), "{}", badge.text);
    let labelled = f.ok("/badges/linux.svg?label=%3Cb%3E").await;
    assert!(labelled.text.contains("&lt;b&gt;") && !labelled.text.contains("<b>"));
    assert_eq!(f.page("/badges/nope.svg").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn each_page_listens_to_the_events_a_build_publishes_and_its_fragment_shows_the_change() {
    let f = fixture().await;
    let uris = ["/", "/builders", "/builders/linux", "/waterfall", "/grid", "/console"];
    f.finished_build("linux", SUCCESS, None).await;
    let mut listening = Vec::new();
    for uri in uris {
        listening.push((uri, f.ok(uri).await.events()));
    }
    // What the store publishes while a second build of linux runs and fails.
    let mut subscription = f.master.store().events().subscribe();
    let change = f.change().await;
    f.finished_build("linux", FAILURE, Some(change)).await;
    let keys = published(&mut subscription);
    for (uri, patterns) in &listening {
        let heard = keys.iter().any(|k| patterns.iter().any(|p| crate::events::key_matches(p, k)));
        assert!(heard, "{uri} listens to {patterns:?}, none of which matches {keys:?}");
    }
    let fragment = f.ok("/builders/linux?fragment=live").await;
    let newest = fragment.one("table.builds tbody tr:first-child");
    assert!(newest.value().classes().any(|c| c == "failure"), "{}", newest.html());

    // A running build's page hears its own steps, and not another build's.
    let store = f.master.store();
    let linux = f.master.builder_id("linux").expect("builder");
    let new = NewBuildset { reason: "r".into(), builderids: vec![linux], ..NewBuildset::default() };
    let (_, brids) = store.add_buildset(&new).await.expect("buildset");
    assert!(store.claim_requests(&brids, f.master.masterid()).await.expect("claim"));
    let worker = store.find_or_add_worker("w1").await.expect("worker");
    let (buildid, number) = store.add_build(linux, brids[0], worker, f.master.masterid()).await.expect("build");
    let patterns = f.ok(&format!("/builders/linux/builds/{number}")).await.events();
    let mut subscription = store.events().subscribe();
    store.start_step(buildid, "compile", "compiling").await.expect("step");
    let keys = published(&mut subscription);
    assert!(keys.iter().any(|k| patterns.iter().any(|p| crate::events::key_matches(p, k))), "{patterns:?} {keys:?}");
    let other = format!("builds/{}/steps/9/started", buildid - 1);
    assert!(!patterns.iter().any(|p| crate::events::key_matches(p, &other)), "{patterns:?}");
    let live = f.ok_as(&format!("/builders/linux/builds/{number}?fragment=live"), Some("admin")).await;
    assert_eq!(live.texts("li.step .step-name"), vec!["compile"]);
    assert_eq!(live.one("button.action").value().attr("data-method"), Some("stop"));
}

/// The routing keys of the events `subscription` has received.
fn published(subscription: &mut crate::events::Subscription) -> Vec<String> {
    let mut keys = Vec::new();
    while let Ok(Some(event)) = subscription.try_recv() {
        keys.extend(event.event.keys());
    }
    keys
}

#[tokio::test]
async fn the_build_and_worker_pages_name_who_stopped_and_paused() {
    let f = fixture().await;
    let number = f.finished_build("linux", FAILURE, None).await;
    let uri = format!("/builders/linux/builds/{number}");
    assert!(!f.ok(&uri).await.text.contains("Stopped by"), "nobody stopped it");
    let store = f.master.store();
    let buildid = 1; // the fixture's first build
    let entry = |action: &str, buildid: Option<i64>, worker: Option<&str>| crate::store::NewAuditEntry {
        username: format!("ann {EVIL}"),
        how: "session".into(),
        address: "127.0.0.1".into(),
        action: action.into(),
        buildid,
        worker: worker.map(str::to_string),
        ..crate::store::NewAuditEntry::default()
    };
    store.add_audit(&entry("stop", Some(buildid), None)).await.expect("audit");
    let page = f.ok(&uri).await;
    let shown = page.texts("dd");
    assert!(shown.iter().any(|t| t == &format!("ann {EVIL}")), "the user, as text: {shown:?}");
    assert!(page.text.contains("<dt>Stopped by</dt>"));

    store.add_audit(&entry("pause", None, Some("w1"))).await.expect("audit");
    assert!(!f.ok("/workers/w1").await.text.contains(" by ann"), "not paused: nobody is named");
    store.set_worker_paused("w1", true, Some("disk")).await.expect("pause");
    let page = f.ok("/workers/w1").await;
    let paused: Vec<String> = page.all("p").iter().map(|p| p.text().collect()).collect();
    assert!(paused.iter().any(|p| p.contains(&format!("by ann {EVIL}"))), "{paused:?}");
}
