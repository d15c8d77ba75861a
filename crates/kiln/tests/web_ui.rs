//! End-to-end: `kiln start` with a real Kiln worker runs a build that fails, and the web UI's pages, read over
//! HTTP, show it failed everywhere and lead from the build to its failing step's log.
//!
//!     cargo test -p kiln --test web_ui

mod support;

use scraper::{Html, Selector};
use support::buildbot::{results, WorkerKind};
use support::kiln::KilnMaster;

/// A page fetched from the master: its status, headers and parsed body.
struct Page {
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Page {
    fn html(&self) -> Html {
        Html::parse_document(&self.text)
    }

    /// The `attr` of every element matching `css`.
    fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let selector = Selector::parse(css).expect("selector");
        self.html().select(&selector).filter_map(|e| e.value().attr(attr).map(str::to_string)).collect()
    }

    /// The classes of the first element matching `css`.
    fn classes(&self, css: &str) -> Vec<String> {
        let selector = Selector::parse(css).expect("selector");
        let html = self.html();
        let element = html.select(&selector).next().unwrap_or_else(|| panic!("nothing matches {css}:\n{}", self.text));
        element.value().classes().map(str::to_string).collect()
    }

    fn texts(&self, css: &str) -> Vec<String> {
        let selector = Selector::parse(css).expect("selector");
        self.html().select(&selector).map(|e| e.text().collect::<String>()).collect()
    }
}

async fn get(base: &str, path: &str) -> Page {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    Page { status, headers, text }
}

#[tokio::test]
async fn a_failing_build_is_red_everywhere_and_its_page_leads_to_the_failing_log() {
    let builder = r#"
tags = ["demo"]

[[builder.step]]
name = "prepare"
command = ["sh", "-c", "echo ready"]

[[builder.step]]
name = "compile"
command = ["sh", "-c", "echo 'main.c:3: error: <oops>' >&2; exit 2"]
"#;
    let mut master = KilnMaster::builder().worker("w1", "pw-1").builder("broken", builder).start().await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;
    let brid = master.force("broken").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::FAILURE);
    let base = master.url().trim_end_matches('/').to_string();

    let href = "/builders/broken/builds/1";
    for path in ["/", "/builders", "/builders/broken", "/waterfall", "/grid"] {
        let page = get(&base, path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok());
        assert_eq!(csp, Some("default-src 'self'; frame-ancestors 'none'"), "{path}");
        let css = format!("a.box[href=\"{href}\"], table.builds a[href=\"{href}\"]");
        assert!(!page.attrs(&css, "href").is_empty(), "{path} links the build:\n{}", page.text);
        if path != "/builders/broken" {
            assert!(page.classes(&format!("a.box[href=\"{href}\"]")).contains(&"failure".to_string()), "{path}");
        }
    }

    // The build page: failed, with the failing step's log linked; the log's raw text has the error.
    let page = get(&base, href).await;
    assert_eq!(page.status, 200);
    assert!(page.texts("h1 .result").iter().any(|t| t.contains("failure")), "{}", page.text);
    assert_eq!(page.texts("li.step.success .step-name"), vec!["prepare"]);
    assert_eq!(page.texts("li.step.failure .step-name"), vec!["compile"]);
    let links = page.attrs("li.step.failure ul.logs a", "href");
    assert!(links.iter().any(|l| l == "/builders/broken/builds/1/steps/1/logs/stdio"), "{links:?}");
    let raw = links.iter().find(|l| l.starts_with("/api/v2/logs/")).expect("raw link");
    let log = get(&base, raw).await;
    assert!(log.text.contains("main.c:3: error: <oops>"), "{}", log.text);
    assert!(!page.text.contains("<oops>"), "the state string is escaped");

    // The worker page shows it connected, with what it told about itself.
    let worker = get(&base, "/workers/w1").await;
    assert!(worker.texts("h1 .result").iter().any(|t| t.contains("connected")), "{}", worker.text);
    // Since when: the instant it attached, as a time the page shows in the reader's zone.
    let since = worker.attrs("p.since time", "datetime");
    assert_eq!(since.len(), 1, "{}", worker.text);
    assert!(worker.texts("p.since").iter().any(|t| t.starts_with("Connected ")), "{}", worker.text);
    assert!(worker.texts("dl.summary dt").iter().any(|t| t == "version"), "{}", worker.text);
    assert!(worker.attrs("table.builds a", "href").iter().any(|h| h == href));

    // The badge says it; the assets load with the page's URLs.
    let badge = get(&base, "/badges/broken.svg").await;
    assert!(badge.text.contains(">failure<"), "{}", badge.text);
    for asset in
        page.attrs("link[rel=stylesheet], script[src]", "href").into_iter().chain(page.attrs("script[src]", "src"))
    {
        assert_eq!(get(&base, &asset).await.status, 200, "{asset}");
    }
}
