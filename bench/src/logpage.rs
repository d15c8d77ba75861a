//! Workload 7, the log page in headless Chromium (Kiln only): a build printing 100 MB (1,000,000 lines of
//! about 100 bytes; in full mode also 1 GB, 10,000,000 lines, deleted after), then
//! - line-range reads of it through the API (`contents?offset=O&limit=100` at the start, the middle and the end,
//!   and `limit=1000`): p50 and p99 (≤ 10 ms);
//! - its page opened in Chromium (after a first visit that warms the browser up): time from navigation start until its first lines are on screen (the viewer
//!   marks it, `kiln-log-rows`) and first contentful paint; then End: time until its last line is on screen; the
//!   JS heap after;
//! - a build printing 20,000 lines/s for 8 s, its page open from the start, following: the longest task in the
//!   page (a `longtask` observer: tasks over 50 ms) and how many there were, and whether the last line came on
//!   screen.
//!
//! Chromium and chromedriver are found as the tests find them (`$CHROMEDRIVER`, `$CHROME`, else on `PATH`;
//! `scripts/test` installs them); without them the workload fails and the others still run.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../crates/kiln/tests/support/browser.rs"]
mod browser;

use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "7 log page";

/// A log of `lines` lines of about 100 bytes, printed by awk.
fn big(name: &str, lines: u64) -> Builder {
    let x = "x".repeat(86);
    let command = format!("awk 'BEGIN {{ for (i = 0; i < {lines}; i++) printf \"line %09d {x}\\n\", i }}'");
    Builder::new(name, &[("print", &command)])
}

/// 20,000 lines a second for 8 s, 2,000 every 100 ms.
fn growing() -> Builder {
    let script = "import sys, time\nt = time.time()\nfor k in range(80):\n    sys.stdout.write(''.join('tick %07d %s\\n' % (k * 2000 + i, 'y' * 80) for i in range(2000)))\n    sys.stdout.flush()\n    time.sleep(max(0, t + (k + 1) * 0.1 - time.time()))\nprint('ticked', flush=True)\n";
    Builder::new("growing", &[("print", &format!("python3 -c \"{}\"", script.replace('"', "\\\"")))])
}

/// The rows on screen: `[{n, text}]`.
const ON_SCREEN: &str = "(() => { const m = document.getElementById('log').getBoundingClientRect();
  return [...document.querySelectorAll('#log .rows .l')].filter(r => {
    const b = r.getBoundingClientRect(); return b.bottom > m.top + 2 && b.top < m.bottom - 2 && !r.classList.contains('wait');
  }).map(r => ({ n: Number(r.querySelector('.n').textContent), text: r.querySelector('.t').textContent }));
})()";

#[derive(Default, Clone, Copy)]
struct Figures {
    build_s: f64,
    range_p50_ms: f64,
    range_p99_ms: f64,
    first_ms: f64,
    fcp_ms: f64,
    last_ms: f64,
    heap_mib: f64,
}

pub async fn run(env: &Env) -> Vec<Row> {
    let sizes: &[(&str, u64)] =
        if env.quick { &[("big100", 1_000_000)] } else { &[("big100", 1_000_000), ("big1000", 10_000_000)] };
    let mut rows = Vec::new();
    for &(name, lines) in sizes {
        let label = format!("{} MB log", lines / 10_000);
        let got = figures(WORKLOAD, Kind::Kiln, measure_big(env, name, lines).await);
        let mut row = |metric: &str, unit: &'static str, target: Target, f: fn(&Figures) -> f64| {
            rows.push(Row {
                workload: WORKLOAD,
                metric: format!("{label}: {metric}"),
                unit,
                better: Better::Lower,
                kiln: got.map(|g| f(&g)),
                buildbot: None,
                target,
            })
        };
        row("build (print and store)", "s", Target::None, |f| f.build_s);
        row("contents?offset&limit p50", "ms", Target::None, |f| f.range_p50_ms);
        row("contents?offset&limit p99", "ms", Target::AtMost(10.0), |f| f.range_p99_ms);
        row("first contentful paint", "ms", Target::AtMost(150.0), |f| f.fcp_ms);
        row("first screen of lines", "ms", Target::AtMost(300.0), |f| f.first_ms);
        row("End → last screen", "ms", Target::AtMost(300.0), |f| f.last_ms);
        row("JS heap after", "MiB", Target::None, |f| f.heap_mib);
    }
    let live = figures(WORKLOAD, Kind::Kiln, measure_growing(env).await);
    for (metric, unit, target, value) in [
        ("20k lines/s followed: longest task", "ms", Target::AtMost(100.0), live.map(|l| l.0)),
        ("20k lines/s followed: tasks over 50 ms", "tasks", Target::None, live.map(|l| l.1)),
    ] {
        rows.push(Row {
            workload: WORKLOAD,
            metric: metric.into(),
            unit,
            better: Better::Lower,
            kiln: value,
            buildbot: None,
            target,
        });
    }
    rows
}

/// A build of `builder` forced and waited for; returns (stdio log id, its lines, seconds taken).
async fn build(system: &mut System, builder: &str, timeout: Duration) -> Result<(i64, i64, f64)> {
    let id = system.builder_id(builder).await?;
    let started = Instant::now();
    let brid = system.force(builder, id).await?;
    system
        .poll(&format!("the build of {builder}"), timeout, async |s: &System| {
            Ok(s.get_one(&format!("buildrequests/{brid}")).await?["complete"].as_bool().unwrap_or(false).then_some(()))
        })
        .await?;
    let took = started.elapsed().as_secs_f64();
    let build = system.build_of(brid).await?;
    let step = system.get_one(&format!("builds/{}/steps/print", build["buildid"])).await?;
    let log = system.get_one(&format!("steps/{}/logs/stdio", step["stepid"])).await?;
    Ok((log["logid"].as_i64().context("logid")?, log["num_lines"].as_i64().context("num_lines")?, took))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure_big(env: &Env, name: &str, lines: u64) -> Result<Figures> {
    let mut system = System::start(env, Kind::Kiln, &[big(name, lines)]).await?;
    let timeout = Duration::from_secs(if lines > 1_000_000 { 1800 } else { 600 });
    let (logid, num_lines, build_s) = build(&mut system, name, timeout).await?;
    ensure!(num_lines >= lines as i64, "the log has {num_lines} lines");

    // Line-range reads, one at a time.
    let mut times = Vec::new();
    for round in 0..20 {
        for (offset, limit) in [(0, 100), (num_lines / 2, 100), (num_lines - 100, 100), (num_lines / 3 + round, 1000)] {
            let started = Instant::now();
            let chunk = system.get(&format!("logs/{logid}/contents?offset={offset}&limit={limit}")).await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            ensure!(chunk["logchunks"][0]["content"].as_str().is_some_and(|c| c.lines().count() == limit as usize));
        }
    }
    times.sort_by(f64::total_cmp);
    let (range_p50_ms, range_p99_ms) = (percentile(&times, 0.5), percentile(&times, 0.99));

    let Some(page) = browser::Browser::start().await else { bail!("KILN_SKIP_BROWSER=1") };
    let url = format!("{}builders/{name}/builds/1/steps/print/logs/stdio", system.web_url());
    // A first visit warms the browser up (a new profile, the first page of the session); the second is measured.
    page.goto(&url).await;
    page.wait_until("the first screen (warm-up)", "performance.getEntriesByName('kiln-log-rows').length").await;
    page.goto("about:blank").await;
    page.goto(&url).await;
    page.wait_until(
        "the first screen",
        &format!("{ON_SCREEN}.length > 10 && performance.getEntriesByName('kiln-log-rows').length"),
    )
    .await;
    let first_ms =
        page.eval("performance.getEntriesByName('kiln-log-rows')[0].startTime").await.as_f64().context("mark")?;
    let fcp_ms = page
        .eval("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0")
        .await
        .as_f64()
        .unwrap_or(0.0);
    page.run("window.kilnEnd = performance.now();", Vec::new()).await;
    page.client().find(Locator::Id("log")).await?.send_keys(&char::from(Key::End).to_string()).await?;
    let last_ms = page
        .wait_until(
            "the last screen",
            &format!("(v => v.length > 10 && v[v.length - 1].n === {num_lines} && performance.now() - window.kilnEnd)({ON_SCREEN})"),
        )
        .await
        .as_f64()
        .context("a time")?;
    let heap_mib =
        page.eval("performance.memory ? performance.memory.usedJSHeapSize / 1048576 : 0").await.as_f64().unwrap_or(0.0);
    let problems = page.problems().await;
    ensure!(problems.is_empty(), "the page had problems: {problems:?}");
    page.close().await;
    println!(
        "  Kiln: {name}: {num_lines} lines stored in {build_s:.1} s; contents p50 {range_p50_ms:.2} ms p99 {range_p99_ms:.2} ms; \
         FCP {fcp_ms:.0} ms, first lines {first_ms:.0} ms, End → last line {last_ms:.0} ms; JS heap {heap_mib:.1} MiB"
    );
    Ok(Figures { build_s, range_p50_ms, range_p99_ms, first_ms, fcp_ms, last_ms, heap_mib })
}

/// (longest task in ms, tasks over 50 ms) while the page follows a log growing 20,000 lines/s.
async fn measure_growing(env: &Env) -> Result<(f64, f64)> {
    let mut system = System::start(env, Kind::Kiln, &[growing()]).await?;
    let id = system.builder_id("growing").await?;
    let Some(page) = browser::Browser::start().await else { bail!("KILN_SKIP_BROWSER=1") };
    let brid = system.force("growing", id).await?;
    let stepid = system
        .poll("the step to start", Duration::from_secs(60), async |s: &System| {
            let builds = s.get(&format!("buildrequests/{brid}/builds")).await?;
            let Some(build) = builds["builds"].as_array().and_then(|b| b.first()).cloned() else { return Ok(None) };
            let steps = s.get(&format!("builds/{}/steps", build["buildid"])).await?;
            Ok(steps["steps"]
                .as_array()
                .and_then(|v| v.iter().find(|st| st["name"] == "print"))
                .and_then(|st| st["stepid"].as_i64()))
        })
        .await?;
    system
        .poll("the log", Duration::from_secs(60), async |s: &System| {
            Ok(s.get(&format!("steps/{stepid}/logs")).await?["logs"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
                .then_some(()))
        })
        .await?;
    page.goto(&format!("{}builders/growing/builds/1/steps/print/logs/stdio", system.web_url())).await;
    page.run(
        "window.kilnTasks = []; new PerformanceObserver(l => { for (const e of l.getEntries()) window.kilnTasks.push(e.duration); })\
         .observe({ type: 'longtask', buffered: true });",
        Vec::new(),
    )
    .await;
    // Cheap checks while the log grows (looking at the rows each frame would be work of its own in the page).
    page.wait_until_within(
        "the log complete",
        "document.getElementById('log-state').textContent === 'complete'",
        Duration::from_secs(120),
    )
    .await;
    page.wait_until("the last line followed", &format!("{ON_SCREEN}.some(r => r.text === 'ticked')")).await;
    let tasks: Vec<f64> = match page.eval("window.kilnTasks").await {
        Value::Array(v) => v.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    };
    let longest = tasks.iter().copied().fold(0.0, f64::max);
    let problems = page.problems().await;
    ensure!(problems.is_empty(), "the page had problems: {problems:?}");
    page.close().await;
    println!(
        "  Kiln: 160,000 lines at 20k lines/s followed: longest task {longest:.0} ms, {} tasks over 50 ms",
        tasks.len()
    );
    Ok((longest, tasks.len() as f64))
}
