//! Workload 7, UI pages under history: the server time of the web UI's pages with many builds in the store.
//! A Kiln master is started once with a builder `history`, stopped, its store filled by `bench/history.py` (as
//! workload 5 does), started again alone, and asked, one request at a time, for each page: the home page, the
//! builders, the builder's newest builds and a page of them half-way down its history (`?before=N`), a random
//! build's page, the waterfall, grid and console, the changes and the queue. Kiln only: Buildbot's React UI
//! renders in the browser, so it has no server time to compare (its REST calls are workload 5's).

use std::time::Instant;

use anyhow::{ensure, Context as _, Result};

use crate::api::{generate_history, percentiles, Random, BUILDER, LOG_TEXT_LINES};
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Kind, System, START_TIMEOUT};
use crate::{figures, Env};

const WORKLOAD: &str = "7 UI pages under history";
/// The p99 target of every page, and its size limit.
const P99_MS: f64 = 20.0;
const MAX_KB: f64 = 50.0;

/// The pages timed, by name; `{mid}` is a build number half-way down the history, `{random}` a random one.
const PAGES: [(&str, &str); 10] = [
    ("home", "/"),
    ("builders", "/builders"),
    ("builder, newest builds", "/builders/history"),
    ("builder, builds half-way down", "/builders/history?before={mid}"),
    ("a random build", "/builders/history/builds/{random}"),
    ("waterfall", "/waterfall"),
    ("grid", "/grid"),
    ("console", "/console"),
    ("changes", "/changes"),
    ("requests", "/requests"),
];

pub async fn run(env: &Env) -> Vec<Row> {
    let size: usize = if env.quick { 10_000 } else { 1_000_000 };
    let requests = if env.quick { 30 } else { 200 };
    let measured = figures(WORKLOAD, Kind::Kiln, measure(env, size, requests).await);
    let mut rows = Vec::new();
    for (i, (name, _)) in PAGES.iter().enumerate() {
        let figure = |which: usize| measured.as_ref().map(|m: &Vec<(f64, f64, f64)>| [m[i].0, m[i].1, m[i].2][which]);
        for (which, metric, target) in [(0, "p50", Target::None), (1, "p99", Target::AtMost(P99_MS))] {
            rows.push(Row {
                workload: WORKLOAD,
                metric: format!("{name}, {size} builds: {metric} of {requests}"),
                unit: "ms",
                better: Better::Lower,
                kiln: figure(which),
                buildbot: None,
                target,
            });
        }
        rows.push(Row {
            workload: WORKLOAD,
            metric: format!("{name}: HTML size"),
            unit: "KB",
            better: Better::Lower,
            kiln: figure(2),
            buildbot: None,
            target: Target::AtMost(MAX_KB),
        });
    }
    rows
}

/// p50 and p99 (ms) and the largest size (KB) of each page of [`PAGES`].
async fn measure(env: &Env, size: usize, requests: usize) -> Result<Vec<(f64, f64, f64)>> {
    let builder = Builder::new(BUILDER, &[("echo", "echo hello")]);
    let mut system = System::start(env, Kind::Kiln, &[builder]).await?;
    system.builder_id(BUILDER).await?;
    system.stop();
    let chunk = system.dir().join("chunk.zst");
    let text: String = (0..LOG_TEXT_LINES)
        .map(|k| format!("oline {k} of a build log from bench/history.py, long enough to look like output\n"))
        .collect();
    std::fs::write(&chunk, zstd::bulk::compress(text.as_bytes(), 3)?)?;
    let generated = Instant::now();
    generate_history(env, Kind::Kiln, &system.store_path(), size, &chunk, std::time::Duration::from_secs(900))?;
    println!("  Kiln: {size} builds generated in {:.1} s", generated.elapsed().as_secs_f64());
    system.spawn_master()?;
    system.wait_master_ready(START_TIMEOUT).await?;
    let result = pages(&system, size, requests).await;
    system.stop();
    result
}

async fn pages(system: &System, size: usize, requests: usize) -> Result<Vec<(f64, f64, f64)>> {
    let base = system.web_url().trim_end_matches('/').to_string();
    let mut random = Random(0x2545_f491_4f6c_dd1d ^ size as u64);
    let mut out = Vec::new();
    for (name, path) in PAGES {
        let mut times = Vec::with_capacity(requests);
        let mut largest = 0usize;
        for _ in 0..requests {
            let number = 1 + random.next() % size as u64;
            let path = path.replace("{mid}", &(size / 2).to_string()).replace("{random}", &number.to_string());
            let started = Instant::now();
            let response =
                system.http().get(format!("{base}{path}")).send().await.with_context(|| format!("GET {path}"))?;
            let status = response.status();
            let body = response.bytes().await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            ensure!(status.is_success(), "GET {path}: HTTP {status}");
            largest = largest.max(body.len());
        }
        let (p50, p99) = percentiles(&mut times);
        println!("  {name}: p50 {p50:.1} ms, p99 {p99:.1} ms, {:.1} KB", largest as f64 / 1024.0);
        out.push((p50, p99, largest as f64 / 1024.0));
    }
    Ok(out)
}
