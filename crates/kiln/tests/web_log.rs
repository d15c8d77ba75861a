//! End-to-end: the log page in a real headless Chromium, on a real `kiln start` master with a real worker. A
//! 100 MB log opens at its first screen, goes to its last line with End, to `#L500000`, and is searched on the
//! server; a running step's log grows on screen without a reload and the view follows it until the reader
//! scrolls up; no console error, no failed request, axe-core finds nothing.

mod support;

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::Value;
use support::browser::{assert_accessible, Browser};
use support::buildbot::WorkerKind;
use support::kiln::{toml_str, KilnMaster};

/// How long the 100 MB step gets to run and be stored.
const BIG_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines of the big log's body.
const BIG_LINES: u64 = 1_000_000;

/// The rows of the log viewer on screen now, as `[{n, text, cls}]` (n: the line's number, from 1).
const ON_SCREEN: &str = "(() => { const m = document.getElementById('log').getBoundingClientRect();
  return [...document.querySelectorAll('#log .rows .l')].filter(r => {
    const b = r.getBoundingClientRect(); return b.bottom > m.top + 2 && b.top < m.bottom - 2 && !r.classList.contains('wait');
  }).map(r => ({ n: Number(r.querySelector('.n').textContent), text: r.querySelector('.t').textContent, cls: r.className }));
})()";

/// A JavaScript string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

/// The text of line `offset` (0-based) of log `logid` as the viewer shows it (channel letter dropped).
async fn line_text(master: &KilnMaster, logid: i64, offset: i64) -> String {
    let chunk = master.get(&format!("logs/{logid}/contents?offset={offset}&limit=1")).await;
    let content = chunk["logchunks"][0]["content"].as_str().unwrap_or_default();
    let line = content.strip_suffix('\n').unwrap_or(content);
    line.get(1..).unwrap_or_default().replace("\u{1b}[32m", "").replace("\u{1b}[0m", "")
}

/// The page of log `slug` of step `step` of build `number` of `builder`.
fn page_url(master: &KilnMaster, builder: &str, number: i64, step: &str) -> String {
    format!("{}/builders/{builder}/builds/{number}/steps/{step}/logs/stdio", master.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_log_opens_at_once_goes_to_its_end_to_a_line_and_is_searched() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("big.py");
    // About 100 bytes a line; every 1000th line green, every 100,000th on stderr.
    std::fs::write(
        &script,
        format!(
            "import sys\nout, err = sys.stdout, sys.stderr\nfor i in range({BIG_LINES}):\n    \
             text = 'line %07d ' % i + 'x' * 88\n    \
             if i % 100000 == 99999:\n        out.flush(); err.write(text + '\\n'); err.flush()\n    \
             elif i % 1000 == 999:\n        out.write('\\x1b[32m' + text + '\\x1b[0m\\n')\n    \
             else:\n        out.write(text + '\\n')\nout.flush()\n"
        ),
    )
    .expect("write the script");
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder(
            "big",
            &format!(
                "[[builder.step]]\nname = \"print\"\ncommand = [\"python3\", {}]\n",
                toml_str(script.to_string_lossy())
            ),
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("big").await;
    master
        .wait_for("the 100 MB build to complete", BIG_BUILD_TIMEOUT, async || {
            let r = master.try_get(&format!("buildrequests/{brid}")).await?;
            r["buildrequests"][0]["complete"].as_bool()?.then_some(())
        })
        .await;
    let build = master.builds_of_request(brid).await.remove(0);
    let (buildid, number) = (master.id(&build, "buildid"), master.id(&build, "number"));
    let step = master.step(buildid, "print").await;
    let log = master.get_one(&format!("steps/{}/logs/stdio", master.id(&step, "stepid"))).await;
    let (logid, num_lines) = (master.id(&log, "logid"), master.id(&log, "num_lines"));
    assert!(num_lines > BIG_LINES as i64, "{log}");
    let raw_bytes = master.get(&format!("logs/{logid}")).await;
    assert!(raw_bytes["logs"][0]["complete"] == Value::Bool(true));

    // The first screen: the first lines, in order, from line 1.
    let url = page_url(&master, "big", number, "print");
    browser.goto(&url).await;
    let first = line_text(&master, logid, 0).await;
    browser
        .wait_until(
            "the first screen",
            &format!("(v => v.length > 10 && v[0].n === 1 && v[0].text === {})({ON_SCREEN})", js(&first)),
        )
        .await;
    let rows = browser.eval("document.querySelectorAll('#log .l').length").await;
    assert!(rows.as_u64().is_some_and(|n| n < 300), "only the rows on screen are in the page: {rows}");
    browser.assert_no_problems().await;

    // End: the last line at the bottom.
    let last = line_text(&master, logid, num_lines - 1).await;
    browser
        .client()
        .find(Locator::Id("log"))
        .await
        .expect("the log")
        .send_keys(&char::from(Key::End).to_string())
        .await
        .expect("End");
    browser
        .wait_until(
            "the last screen after End",
            &format!(
                "(v => v.length > 10 && v[v.length - 1].n === {num_lines} && v[v.length - 1].text === {})({ON_SCREEN})",
                js(&last)
            ),
        )
        .await;

    // A permalink to a line in the middle shows it, selected.
    let middle = line_text(&master, logid, 499_999).await;
    browser.goto(&format!("{url}#L500000")).await;
    browser
        .wait_until(
            "line 500000 of #L500000",
            &format!("{ON_SCREEN}.some(r => r.n === 500000 && r.text === {} && r.cls.includes('sel'))", js(&middle)),
        )
        .await;

    // The server's search finds a line near the end, and the view goes there.
    let wanted = format!("line {:07}", BIG_LINES - 10);
    let q = browser.client().find(Locator::Id("log-q")).await.expect("the search box");
    q.send_keys(&wanted).await.expect("type");
    browser.client().find(Locator::Id("log-next")).await.expect("Next").click().await.expect("click");
    let found = browser
        .wait_until(
            "the match near the end",
            &format!(
                "(() => {{ const r = {ON_SCREEN}.find(r => r.cls.includes('hit')); \
                 return r && r.text.startsWith({}) && document.getElementById('log-found').textContent === 'Line ' + r.n && r.n; }})()",
                js(&wanted)
            ),
        )
        .await;
    assert!(found.as_i64().is_some_and(|n| n > num_lines - 20), "{found}");
    // Previous goes back to the match before: there is none.
    browser.client().find(Locator::Id("log-prev")).await.expect("Previous").click().await.expect("click");
    browser
        .wait_until(
            "no match before",
            "document.getElementById('log-found').textContent.startsWith('No more matches before')",
        )
        .await;

    assert_accessible(&browser).await;
    browser.assert_no_problems().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_log_grows_on_screen_and_the_view_follows_until_the_reader_scrolls_up() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = dir.path().join("stop");
    let script = dir.path().join("ticker.py");
    std::fs::write(
        &script,
        "import os, sys, time\ni = 0\nwhile not os.path.exists(sys.argv[1]):\n    i += 1\n    \
         print('tick %d' % i, flush=True)\n    time.sleep(0.01)\nprint('ticked %d times' % i, flush=True)\n",
    )
    .expect("write the script");
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder(
            "ticker",
            &format!(
                "[[builder.step]]\nname = \"tick\"\ncommand = [\"python3\", {}, {}]\n",
                toml_str(script.to_string_lossy()),
                toml_str(stop.to_string_lossy())
            ),
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("ticker").await;
    let build = master.wait_builds_of_request(brid, 1).await.remove(0);
    let (buildid, number) = (master.id(&build, "buildid"), master.id(&build, "number"));
    master
        .wait_for("the step's log to have lines", Duration::from_secs(60), async || {
            let steps = master.try_get(&format!("builds/{buildid}/steps/tick/logs")).await?;
            (steps["logs"][0]["num_lines"].as_i64()? > 5).then_some(())
        })
        .await;

    browser.goto(&page_url(&master, "ticker", number, "tick")).await;
    browser.run("window.kilnLoaded = performance.timeOrigin;", Vec::new()).await;
    let count = "Number(document.getElementById('log-count').textContent)";
    let at_end = format!(
        "(v => v.length > 0 && v[v.length - 1].n === {count} && v[v.length - 1].text.startsWith('tick'))({ON_SCREEN})"
    );
    // It grows on screen, and the view stays at the end.
    let start = browser.wait_until("ticks on screen", &format!("{at_end} && {count}")).await;
    let start = start.as_i64().expect("a count");
    browser.wait_until("the log to grow on screen, followed", &format!("{at_end} && {count} > {start} + 50")).await;

    // The reader scrolls up: the view stays there while the log grows.
    browser.run("const m = document.getElementById('log'); m.scrollTop = 0; m.dispatchEvent(new WheelEvent('wheel', { deltaY: -100 }));", Vec::new()).await;
    let here = browser.eval(count).await.as_i64().expect("a count");
    browser
        .wait_until(
            "the log to grow while the reader is at the top",
            &format!(
                "{count} > {here} + 50 && document.getElementById('log').scrollTop === 0 && {ON_SCREEN}[0].n === 1"
            ),
        )
        .await;
    assert_eq!(browser.eval("document.getElementById('log-follow').getAttribute('aria-pressed')").await, "false");

    // End: following again.
    browser
        .client()
        .find(Locator::Id("log"))
        .await
        .expect("the log")
        .send_keys(&char::from(Key::End).to_string())
        .await
        .expect("End");
    let back = browser.wait_until("the end after End", &format!("{at_end} && {count}")).await.as_i64().expect("count");
    browser.wait_until("following after End", &format!("{at_end} && {count} > {back} + 20")).await;

    // The step ends: its last line comes on screen, and the page was never reloaded.
    std::fs::write(&stop, "").expect("the stop file");
    browser
        .wait_until(
            "the last line and the log complete",
            &format!("document.getElementById('log-state').textContent === 'complete' && {ON_SCREEN}.some(r => r.text.startsWith('ticked'))"),
        )
        .await;
    assert_eq!(browser.eval("window.kilnLoaded === performance.timeOrigin").await, true);
    master.wait_request_complete(brid).await;
    assert_accessible(&browser).await;
    browser.assert_no_problems().await;
    browser.close().await;
}
