//! End-to-end: the web UI's pages in a real headless Chromium, on a real `kiln start` master with a real Kiln
//! worker. A build page follows its build live (steps appear, the result turns green or red, no reload); the
//! force form shows a missing and a wrong value next to their fields and queues nothing, then queues a build and
//! links to it; Stop and Rebuild are shown only to users the rules allow, and work; logging in and out; and
//! axe-core finds nothing on any page, with no console error and no failed request; a page on another origin
//! cannot force a build with a logged-in user's cookie.
//!
//!     cargo test -p kiln --test web_pages

mod support;

use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;
use support::browser::{assert_accessible, Browser};
use support::buildbot::WorkerKind;
use support::kiln::{toml_str, user_toml, KilnMaster, TEST_ADMIN, TEST_PASSWORD, TEST_PASSWORD_HASH};

/// A step that waits until `file` exists (the test creates it when it wants the step to end).
fn wait_step(name: &str, file: &Path) -> String {
    format!(
        "[[builder.step]]\nname = \"{name}\"\ncommand = [\"sh\", \"-c\", {}]\n",
        toml_str(format!("echo waiting; while [ ! -e '{}' ]; do sleep 0.05; done; echo done", file.display()))
    )
}

/// A JavaScript string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

/// Logs `name` in through the login form, and waits for the page it goes back to.
async fn log_in(browser: &Browser, master: &KilnMaster, name: &str, password: &str, next: &str) {
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish();
    browser.goto(&format!("{}/login?{query}", master.url().trim_end_matches('/'))).await;
    fill(browser, "name", name).await;
    fill(browser, "password", password).await;
    submit(browser, "form button[type=submit]", ".account .user strong").await;
    browser
        .wait_until(
            &format!("{name} logged in"),
            &format!("document.querySelector('.account .user strong')?.textContent === {}", js(name)),
        )
        .await;
}

/// Clicks the submit button matching `css` of a form that loads a new page, and waits (the driver's wait for an
/// element, which outlives the navigation) until the new page shows an element matching `then`.
async fn submit(browser: &Browser, css: &str, then: &str) {
    click(browser, css).await;
    browser
        .client()
        .wait()
        .at_most(support::browser::PAGE_TIMEOUT)
        .for_element(Locator::Css(then))
        .await
        .unwrap_or_else(|e| panic!("after submitting {css}: no {then}: {e}"));
}

/// Replaces the value of the input with id `id` by `text`.
async fn fill(browser: &Browser, id: &str, text: &str) {
    let input = browser.client().find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    input.clear().await.unwrap_or_else(|e| panic!("clear #{id}: {e}"));
    input.send_keys(text).await.unwrap_or_else(|e| panic!("type into #{id}: {e}"));
}

/// Clicks the first element matching `css`.
async fn click(browser: &Browser, css: &str) {
    let element = browser.client().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    element.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Logs out with the header's button, and waits for the login form.
async fn log_out(browser: &Browser) {
    submit(browser, ".account form.logout button", "input#password").await;
}

/// The page of build `number` of `builder`.
fn build_url(master: &KilnMaster, builder: &str, number: i64) -> String {
    format!("{}/builders/{builder}/builds/{number}", master.url().trim_end_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_page_follows_its_build_live_until_it_fails() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let steps = format!(
        "{}\n[[builder.step]]\nname = \"check\"\ncommand = [\"sh\", \"-c\", \"echo broken; exit 1\"]\n",
        wait_step("prepare", &go)
    );
    let mut master = KilnMaster::builder().worker("w", "pw").builder("live", &steps).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("live").await;
    let build = master.wait_builds_of_request(brid, 1).await.remove(0);
    let number = master.id(&build, "number");
    browser.goto(&build_url(&master, "live", number)).await;
    browser.run("window.kilnLoaded = performance.timeOrigin;", Vec::new()).await;
    // The first step runs; the build is running.
    browser
        .wait_until(
            "the first step running",
            "document.querySelector('li.step.running .step-name')?.textContent === 'prepare' && \
             document.querySelector('h1 .result')?.classList.contains('running')",
        )
        .await;
    assert_eq!(browser.eval("document.querySelectorAll('li.step').length").await, 1, "one step so far");
    browser.wait_until("the page to be live", "document.querySelector('.live-state').textContent === 'live'").await;

    // The step ends: it turns green, the next step appears and fails, the build turns red; never reloaded.
    std::fs::write(&go, "").expect("the go file");
    browser
        .wait_until(
            "the build to fail on the page",
            "document.querySelector('h1 .result')?.classList.contains('failure') && \
             document.querySelector('li.step.success .step-name')?.textContent === 'prepare' && \
             document.querySelector('li.step.failure .step-name')?.textContent === 'check'",
        )
        .await;
    assert_eq!(browser.eval("window.kilnLoaded === performance.timeOrigin").await, true, "the page was not reloaded");
    assert!(browser
        .eval("document.querySelector('h1 .result').textContent")
        .await
        .as_str()
        .is_some_and(|t| t.contains("failure")));
    // The failing step's log is linked and holds its output.
    click(&browser, "li.step.failure ul.logs a").await;
    browser
        .wait_until(
            "the failing step's log",
            "[...document.querySelectorAll('#log .t')].some(t => t.textContent === 'broken')",
        )
        .await;
    master.wait_request_complete(brid).await;
    browser.assert_no_problems().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_force_form_shows_errors_next_to_their_fields_then_queues_a_build_and_links_to_it() {
    let Some(browser) = Browser::start().await else { return };
    let force = r#"
[[force_scheduler]]
name = "release"
builders = ["typed"]
reason = "a release"
  [[force_scheduler.parameter]]
  name = "version"
  label = "Version"
  type = "string"
  regex = '^\d+\.\d+$'
  required = true
  [[force_scheduler.parameter]]
  name = "jobs"
  label = "Jobs"
  type = "int"
  default = 2
"#;
    let steps = "force_scheduler = false\n[[builder.step]]\nname = \"say\"\ncommand = [\"sh\", \"-c\", \"echo version %(prop:version)s\"]\n";
    let mut master = KilnMaster::builder().worker("w", "pw").builder("typed", steps).extra_toml(force).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    log_in(&browser, &master, TEST_ADMIN, TEST_PASSWORD, "/builders/typed").await;
    let requests = async || master.get("buildrequests").await["buildrequests"].as_array().map_or(0, Vec::len);

    // Nothing typed: the required field says so, next to it.
    let version_error = "document.querySelector('form.force input[name=version]').getAttribute('aria-describedby')";
    click(&browser, "form.force button[type=submit]").await;
    let said = browser
        .wait_until(
            "the missing version's error next to its field",
            &format!("(id => id && document.getElementById(id).textContent)({version_error})"),
        )
        .await;
    assert!(said.as_str().is_some_and(|t| t.contains("Version") && t.contains("specified")), "{said}");
    assert_eq!(
        browser.eval("document.querySelector('form.force input[name=version]').getAttribute('aria-invalid')").await,
        "true"
    );
    assert_eq!(requests().await, 0, "nothing queued");
    // The browser logged the refusal's 400: the form's own answer, not a problem.
    assert!(browser.problems().await.iter().all(|p| p.contains("forceschedulers/release") && p.contains("400")));

    // A wrong value: its error, next to the field; still nothing queued.
    let version_id = browser.eval("document.querySelector('form.force input[name=version]').id").await;
    let version_id = version_id.as_str().expect("an id").to_string();
    fill(&browser, &version_id, "one.two").await;
    browser
        .run(&format!("document.getElementById({}).textContent = '';", js(&format!("{version_id}-error"))), Vec::new())
        .await;
    click(&browser, "form.force button[type=submit]").await;
    let said = browser
        .wait_until(
            "the wrong version's error next to its field",
            &format!("document.getElementById({}).textContent", js(&format!("{version_id}-error"))),
        )
        .await;
    assert!(said.as_str().is_some_and(|t| t.contains("one.two") || t.contains("match")), "{said}");
    assert!(browser.eval("document.querySelector('form.force .force-done') === null").await == Value::Bool(true));
    assert_eq!(requests().await, 0, "nothing queued");
    assert!(browser.problems().await.iter().all(|p| p.contains("forceschedulers/release") && p.contains("400")));

    // A good value: a build is queued, and the page links to it.
    fill(&browser, &version_id, "1.2").await;
    click(&browser, "form.force button[type=submit]").await;
    let href = browser
        .wait_until(
            "the link to the request",
            "document.querySelector('form.force .force-done a')?.getAttribute('href')",
        )
        .await;
    let href = href.as_str().expect("a link").to_string();
    let brid: i64 = href.strip_prefix("/requests/").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{href}"));
    assert_eq!(
        browser.eval(&format!("document.getElementById({}).textContent", js(&format!("{version_id}-error")))).await,
        ""
    );
    let build = master.wait_builds_of_request(brid, 1).await.remove(0);
    let number = master.id(&build, "number");
    click(&browser, "form.force .force-done a").await;
    browser
        .wait_until(
            "the build's page",
            &format!(
                "location.pathname === '/builders/typed/builds/{number}' && document.querySelector('h1') !== null"
            ),
        )
        .await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), 0, "{request}");
    let properties = master.get(&format!("builds/{}/properties", master.id(&build, "buildid"))).await;
    assert_eq!(properties["properties"][0]["version"][0], "1.2", "{properties}");
    assert_eq!(requests().await, 1, "one build queued");
    browser.assert_no_problems().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_rebuild_are_shown_only_to_users_allowed_to_and_work_when_clicked() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let never = dir.path().join("never");
    // Developers may stop and rebuild only on "other"; the admin may do everything.
    let rules = format!(
        "{}\n[[rule]]\nactions = [\"stop\", \"rebuild\"]\nbuilders = [\"other\"]\nroles = [\"developer\"]\n",
        user_toml("dev", TEST_PASSWORD_HASH, &["developer"])
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("slow", &wait_step("wait", &never))
        .builder("other", "[[builder.step]]\ncommand = \"true\"\n")
        .extra_toml(&rules)
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("slow").await;
    let build = master.wait_builds_of_request(brid, 1).await.remove(0);
    let (buildid, number) = (master.id(&build, "buildid"), master.id(&build, "number"));
    let url = build_url(&master, "slow", number);
    let buttons = "[...document.querySelectorAll('button.action')].map(b => b.textContent).join(',')";
    let page_ready = "document.querySelector('li.step .step-name')?.textContent === 'wait'";

    // Anonymous: no button; the header offers to log in.
    browser.goto(&url).await;
    browser.wait_until("the build page", page_ready).await;
    assert_eq!(browser.eval(buttons).await, "", "anonymous sees no action");
    assert!(browser
        .eval("document.querySelector('.account a.login')?.getAttribute('href')")
        .await
        .as_str()
        .is_some_and(|h| h.starts_with("/login?next=")));

    // A developer the rules do not allow on this builder: none either.
    log_in(&browser, &master, "dev", TEST_PASSWORD, &format!("/builders/slow/builds/{number}")).await;
    browser.wait_until("the build page", page_ready).await;
    assert_eq!(browser.eval(buttons).await, "", "a developer sees no action on 'slow'");
    log_out(&browser).await;

    // The admin: Stop, which stops it; the page shows it cancelled, then offers Rebuild, which rebuilds.
    log_in(&browser, &master, TEST_ADMIN, TEST_PASSWORD, &format!("/builders/slow/builds/{number}")).await;
    browser.wait_until("the build page", page_ready).await;
    assert_eq!(browser.eval(buttons).await, "Stop");
    click(&browser, "button.action[data-method=stop]").await;
    browser
        .wait_until(
            "the stopped build on the page, with Rebuild",
            &format!(
                "document.querySelector('h1 .result')?.classList.contains('cancelled') && {buttons} === 'Rebuild'"
            ),
        )
        .await;
    let stopped = master.wait_build_complete(buildid).await;
    assert_eq!(stopped["results"], 6, "cancelled: {stopped}");
    let audit = master.get(&format!("audit?buildid={buildid}")).await;
    assert!(audit.to_string().contains(TEST_ADMIN), "the audit names who stopped it: {audit}");
    click(&browser, "button.action[data-method=rebuild]").await;
    browser
        .wait_until(
            "the rebuild's answer",
            "document.querySelector('.action-error')?.textContent.startsWith('rebuild requested')",
        )
        .await;
    master
        .wait_for("the rebuild's request", Duration::from_secs(30), async || {
            let all = master.try_get("buildrequests").await?;
            (all["buildrequests"].as_array()?.len() == 2).then_some(())
        })
        .await;
    browser.assert_no_problems().await;
    std::fs::write(&never, "").expect("end the rebuild");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_in_shows_a_wrong_password_then_the_users_name_and_logging_out_ends_it() {
    let Some(browser) = Browser::start().await else { return };
    let master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"\n").start().await;
    let base = master.url().trim_end_matches('/').to_string();
    browser.goto(&format!("{base}/builders")).await;
    browser.wait_until("the login link", "document.querySelector('.account a.login') !== null").await;
    submit(&browser, ".account a.login", "input#password").await;
    assert_accessible(&browser).await;

    // A wrong password: the form says so, and nobody is logged in.
    fill(&browser, "name", TEST_ADMIN).await;
    fill(&browser, "password", "not the password").await;
    submit(&browser, "form button[type=submit]", ".error[role=alert]").await;
    browser
        .wait_until(
            "the wrong password's message",
            "document.querySelector('[role=alert]')?.textContent === 'wrong user name or password'",
        )
        .await;
    let me = browser.eval("fetch('/api/v2/me').then(r => r.json())").await;
    assert_eq!(me["user"], Value::Null, "{me}");
    // The browser logged the 401 of the refused form: that is the page's own answer, not a problem.
    browser.problems().await;

    // The right one: back to the builders page, with the user's name in the header.
    fill(&browser, "name", TEST_ADMIN).await;
    fill(&browser, "password", TEST_PASSWORD).await;
    submit(&browser, "form button[type=submit]", ".account .user strong").await;
    browser
        .wait_until(
            "the builders page with the user's name",
            &format!("location.pathname === '/builders' && document.querySelector('.account .user strong')?.textContent === {}", js(TEST_ADMIN)),
        )
        .await;
    assert_accessible(&browser).await;

    // Logging out: the login form, and the header offers to log in again.
    log_out(&browser).await;
    browser.goto(&format!("{base}/builders")).await;
    browser
        .wait_until(
            "the login link again",
            "document.querySelector('.account a.login') !== null && document.querySelector('.account .user') === null",
        )
        .await;
    browser.assert_no_problems().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_core_finds_nothing_on_any_page() {
    let Some(browser) = Browser::start().await else { return };
    let steps = "tags = [\"demo\"]\n[[builder.step]]\nname = \"compile\"\ncommand = [\"sh\", \"-c\", \"echo compiling; printf '\\\\033[32mgreen\\\\033[0m\\\\n'; echo oops >&2\"]\n";
    let schedulers = "[change_hooks.base]\ntoken = \"t0ken\"\n\n[[scheduler]]\nname = \"nightly\"\ntype = \"nightly\"\nbuilders = [\"app\"]\nhour = 3\nminute = 0\n";
    let mut master = KilnMaster::builder().worker("w", "pw").builder("app", steps).extra_toml(schedulers).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    master
        .send_change(
            "t0ken",
            serde_json::json!({ "author": "Alice <alice@example.org>", "comments": "fix the build", "branch": "main",
                "revision": "0123456789abcdef", "repository": "https://example.org/app.git", "files": ["src/main.c"] }),
        )
        .await;
    let brid = master.force("app").await;
    master.wait_request_complete(brid).await;
    let base = master.url().trim_end_matches('/').to_string();
    let change = master.get("changes").await["changes"][0]["changeid"].as_i64().expect("a change");
    let pages = [
        "/".to_string(),
        "/builders".into(),
        "/builders/app".into(),
        "/builders/app/builds/1".into(),
        "/builders/app/builds/1/steps/compile/logs/stdio".into(),
        "/workers".into(),
        "/workers/w".into(),
        "/changes".into(),
        format!("/changes/{change}"),
        "/requests".into(),
        "/schedulers".into(),
        "/about".into(),
        "/waterfall".into(),
        "/grid".into(),
        "/console".into(),
        "/login".into(),
    ];
    for path in &pages {
        browser.goto(&format!("{base}{path}")).await;
        browser
            .wait_until(
                &format!("{path} loaded"),
                "document.readyState === 'complete' && document.querySelector('h1') !== null",
            )
            .await;
        if path.contains("/logs/") {
            browser.wait_until("the log's lines", "document.querySelectorAll('#log .rows .l').length > 0").await;
        }
        assert_accessible(&browser).await;
        let problems = browser.problems().await;
        assert!(problems.is_empty(), "{path}: {problems:#?}");
    }
    // Logged in, the pages with actions show them: those too.
    log_in(&browser, &master, TEST_ADMIN, TEST_PASSWORD, "/builders/app/builds/1").await;
    for path in ["/builders/app/builds/1", "/builders/app", "/workers/w"] {
        browser.goto(&format!("{base}{path}")).await;
        browser
            .wait_until(&format!("{path} loaded as the admin"), "document.querySelector('.account .user') !== null")
            .await;
        assert_accessible(&browser).await;
    }
    browser.assert_no_problems().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_disabled_from_the_schedulers_page_builds_nothing_until_enabled() {
    let Some(browser) = Browser::start().await else { return };
    let schedulers = "[change_hooks.base]\ntoken = \"t0ken\"\n\n\
        [[scheduler]]\nname = \"on-push\"\ntype = \"on_change\"\nbuilders = [\"app\"]\n";
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("app", "force_scheduler = false\n[[builder.step]]\ncommand = \"echo built\"\n")
        .extra_toml(schedulers)
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let change = |revision: &str| {
        serde_json::json!({ "author": "Alice <alice@example.org>", "comments": format!("commit {revision}"),
            "branch": "main", "revision": revision, "repository": "https://example.org/app.git", "files": ["a.c"] })
    };
    let enabled = "document.querySelector('table.schedulers td.enabled')?.firstChild?.textContent.trim()";

    // Anonymous: no switch.
    browser.goto(&format!("{}/schedulers", master.url().trim_end_matches('/'))).await;
    browser.wait_until("the schedulers", &format!("{enabled} === 'yes'")).await;
    assert_eq!(browser.eval("document.querySelectorAll('table.schedulers button').length").await, 0);

    // The admin disables it: the page says so.
    log_in(&browser, &master, TEST_ADMIN, TEST_PASSWORD, "/schedulers").await;
    assert_eq!(
        browser.eval("document.querySelector('table.schedulers button').getAttribute('aria-label')").await,
        "Disable on-push"
    );
    click(&browser, "table.schedulers button.action").await;
    browser
        .wait_until(
            "the scheduler shown disabled",
            &format!(
                "{enabled} === 'no' && document.querySelector('table.schedulers button')?.textContent === 'Enable'"
            ),
        )
        .await;

    // A change while it is disabled builds nothing; enabled again, the next change builds, and only it.
    master.send_change("t0ken", change("r1")).await;
    click(&browser, "table.schedulers button.action").await;
    browser
        .wait_until(
            "the scheduler shown enabled",
            &format!(
                "{enabled} === 'yes' && document.querySelector('table.schedulers button')?.textContent === 'Disable'"
            ),
        )
        .await;
    master.send_change("t0ken", change("r2")).await;
    let built = master
        .wait_for("the enabled scheduler's buildset", Duration::from_secs(30), async || {
            let sets = master.try_get("buildsets").await?;
            let sets = sets["buildsets"].as_array()?.clone();
            (!sets.is_empty()).then_some(sets)
        })
        .await;
    // Changes reach a scheduler in order: r2's buildset means r1 was handled, and it made none.
    assert_eq!(built.len(), 1, "{built:?}");
    assert_eq!(built[0]["sourcestamps"][0]["revision"], "r2", "{built:?}");
    let audit = master.get("audit").await;
    assert!(audit.to_string().contains("disabled scheduler 'on-push'"), "{audit}");
    let request = master.get("buildrequests").await["buildrequests"][0]["buildrequestid"].as_i64().expect("a request");
    master.wait_request_complete(request).await;
    browser.assert_no_problems().await;
    browser.close().await;
}

/// A page on another origin (another port of 127.0.0.1: the same site, so the browser sends the admin's session
/// cookie) that posts a force as `text/plain` with a `no-cors` fetch, as a drive-by page would, and then says so in
/// its title.
async fn serve_a_foreign_page(master: &KilnMaster) -> String {
    let force = format!("{}/api/v2/forceschedulers/force-b", master.url().trim_end_matches('/'));
    let body = r#"{"jsonrpc":"2.0","method":"force","params":{"reason":"drive-by"},"id":1}"#;
    let page = format!(
        "<!doctype html><title>waiting</title><script>fetch({}, {{method: 'POST', mode: 'no-cors', \
         credentials: 'include', headers: {{'Content-Type': 'text/plain'}}, body: {}}})\
         .then(() => {{ document.title = 'sent'; }}, e => {{ document.title = 'failed ' + e; }});</script>",
        js(&force),
        js(body)
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the foreign page's port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{address}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_force_a_build_with_a_logged_in_users_cookie() {
    let Some(browser) = Browser::start().await else { return };
    let master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"\n").start().await;
    log_in(&browser, &master, TEST_ADMIN, TEST_PASSWORD, "/builders").await;
    let foreign = serve_a_foreign_page(&master).await;
    browser.goto(&foreign).await;
    // The master has answered the POST (an opaque answer to the page) once the title says so.
    let title =
        browser.wait_until("the foreign page's POST answered", "document.title !== 'waiting' && document.title").await;
    assert_eq!(title, Value::String("sent".into()), "the POST reached the master");
    let buildsets = master.get("buildsets").await["buildsets"].as_array().map_or(usize::MAX, Vec::len);
    assert_eq!(buildsets, 0, "a drive-by page started nothing");
    // The admin is still logged in on the master's own pages: the session was there to be misused.
    browser.goto(&format!("{}/builders", master.url().trim_end_matches('/'))).await;
    browser
        .wait_until(
            "the admin still logged in",
            &format!("document.querySelector('.account .user strong')?.textContent === {}", js(TEST_ADMIN)),
        )
        .await;
    browser.close().await;
}
