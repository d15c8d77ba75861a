//! Workload 9, builds during a log retention pass (Kiln only: Buildbot's janitor is opt-in and a build step of
//! its own). A master with a builder `history` gets OLD finished builds (`bench/history.py`, one 20-line log
//! each), then runs BUILDS forced builds one after the other with retention off (`[retention] logs =
//! "forever"`): each build's latency, force → request complete. It is restarted with `logs = "1s"`: the
//! janitor's first pass, at start, empties the logs of all those builds (oldest first, 256 chunks per
//! transaction), and the same builds run again at once, while it works. The pass ends when the log of the newest
//! old build (the last it empties) reads empty. Only the builds that completed before the pass ended count as
//! "during the pass".

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};

use crate::api::{generate_history, percentiles, BUILDER, LOG_TEXT_LINES};
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Extras, Kind, System, START_TIMEOUT};
use crate::{figures, Env};

const WORKLOAD: &str = "9 builds during a retention pass";
/// How long one build may take before the workload fails.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// What was measured: build latencies (ms) without and during the pass, and the pass's length (s).
struct Measured {
    without: Vec<f64>,
    during: Vec<f64>,
    pass_seconds: f64,
}

pub async fn run(env: &Env) -> Vec<Row> {
    let old: usize = if env.quick { 10_000 } else { 100_000 };
    let builds: usize = if env.quick { 20 } else { 100 };
    let measured = figures(WORKLOAD, Kind::Kiln, measure(env, old, builds).await);
    let mut rows = Vec::new();
    let mut row = |metric: String, unit: &'static str, target: Target, value: Option<f64>| {
        rows.push(Row { workload: WORKLOAD, metric, unit, better: Better::Lower, kiln: value, buildbot: None, target });
    };
    let stats = |pick: fn(&Measured) -> &Vec<f64>| {
        measured.as_ref().and_then(|m| {
            let mut values = pick(m).clone();
            (!values.is_empty()).then(|| percentiles(&mut values))
        })
    };
    let (without, during) = (stats(|m| &m.without), stats(|m| &m.during));
    row(format!("build latency, no pass: p50 of {builds}"), "ms", Target::None, without.map(|s| s.0));
    row(format!("build latency, no pass: p99 of {builds}"), "ms", Target::None, without.map(|s| s.1));
    // Builds keep their pace while the janitor works: at most twice the latency without it.
    let limit = |p: f64| Target::AtMost((p * 2.0).max(1.0));
    row(
        format!("build latency during a pass over {old} builds: p50"),
        "ms",
        without.map_or(Target::None, |s| limit(s.0)),
        during.map(|s| s.0),
    );
    row(
        format!("build latency during a pass over {old} builds: p99"),
        "ms",
        without.map_or(Target::None, |s| limit(s.1)),
        during.map(|s| s.1),
    );
    let counted = measured.as_ref().map(|m| m.during.len() as f64);
    row(format!("builds completed during the pass (of {builds})"), "builds", Target::None, counted);
    row(
        format!("the pass: logs of {} builds emptied", old + builds),
        "s",
        Target::None,
        measured.as_ref().map(|m| m.pass_seconds),
    );
    rows
}

async fn measure(env: &Env, old: usize, builds: usize) -> Result<Measured> {
    let builder = Builder::new(BUILDER, &[("echo", "echo hello")]);
    let extras = Extras { kiln_toml: "\n[retention]\nlogs = \"forever\"\n".into(), ..Extras::default() };
    let mut system = System::start_with(env, Kind::Kiln, &[builder], &extras).await?;
    let builder_id = system.builder_id(BUILDER).await?;
    system.stop();
    let chunk = system.dir().join("chunk.zst");
    let text: String = (0..LOG_TEXT_LINES)
        .map(|k| format!("oline {k} of a build log from bench/history.py, long enough to look like output\n"))
        .collect();
    std::fs::write(&chunk, zstd::bulk::compress(text.as_bytes(), 3)?)?;
    let generated = Instant::now();
    generate_history(env, Kind::Kiln, &system.store_path(), old, &chunk, Duration::from_secs(900))?;
    println!("  Kiln: {old} old builds generated in {:.1} s", generated.elapsed().as_secs_f64());

    system.spawn_master()?;
    system.wait_master_ready(START_TIMEOUT).await?;
    system.spawn_worker()?;
    system.wait_worker_attached(START_TIMEOUT).await?;
    let mut without = Vec::with_capacity(builds);
    let mut last = 0;
    for _ in 0..builds {
        let (ms, brid) = one_build(&system, builder_id).await?;
        without.push(ms);
        last = brid;
    }
    let marker = stdio_log(&system, last).await?;
    system.stop();

    let config = system.dir().join("master/master.toml");
    let text = std::fs::read_to_string(&config).with_context(|| config.display().to_string())?;
    ensure!(text.contains("logs = \"forever\""), "{}: no retention to change", config.display());
    std::fs::write(&config, text.replace("logs = \"forever\"", "logs = \"1s\""))?;
    // Every build above has ended more than a second ago when the master starts and its janitor begins.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    system.spawn_master()?;
    let started = Instant::now();
    system.wait_master_ready(START_TIMEOUT).await?;
    system.spawn_worker()?;
    system.wait_worker_attached(START_TIMEOUT).await?;
    let pass = async {
        loop {
            let contents = system.get(&format!("logs/{marker}/contents?offset=0&limit=1")).await?;
            if contents["logchunks"].as_array().is_none_or(|chunks| chunks.is_empty()) {
                return Ok::<_, anyhow::Error>(started.elapsed());
            }
            ensure!(started.elapsed() < Duration::from_secs(900), "the retention pass did not end in 900 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let during = async {
        let mut done = Vec::with_capacity(builds);
        for _ in 0..builds {
            let (ms, _) = one_build(&system, builder_id).await?;
            done.push((ms, started.elapsed()));
        }
        Ok::<_, anyhow::Error>(done)
    };
    let (pass, during) = tokio::join!(pass, during);
    let (pass, during) = (pass?, during?);
    let overlapped: Vec<f64> = during.iter().filter(|(_, at)| *at <= pass).map(|(ms, _)| *ms).collect();
    println!(
        "  Kiln: the pass over {} builds took {:.2} s (from the master's start); {} of {builds} builds ended within it",
        old + builds,
        pass.as_secs_f64(),
        overlapped.len()
    );
    system.stop();
    Ok(Measured { without, during: overlapped, pass_seconds: pass.as_secs_f64() })
}

/// Forces one build and waits for its request to complete: its latency in ms, and the request's id.
async fn one_build(system: &System, builder_id: i64) -> Result<(f64, i64)> {
    let started = Instant::now();
    let brid = system.force(BUILDER, builder_id).await?;
    loop {
        let request = system.get_one(&format!("buildrequests/{brid}")).await?;
        if request["complete"].as_bool() == Some(true) {
            ensure!(request["results"].as_i64() == Some(0), "request {brid} failed: {request}");
            return Ok((started.elapsed().as_secs_f64() * 1e3, brid));
        }
        ensure!(started.elapsed() < BUILD_TIMEOUT, "request {brid} did not complete in {BUILD_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The id of the stdio log of the build of request `brid`.
async fn stdio_log(system: &System, brid: i64) -> Result<i64> {
    let build = system.build_of(brid).await?;
    let buildid = build["buildid"].as_i64().context("a build id")?;
    let steps = system.get(&format!("builds/{buildid}/steps?field=stepid")).await?;
    let stepid = steps["steps"][0]["stepid"].as_i64().context("a step")?;
    let logs = system.get(&format!("steps/{stepid}/logs")).await?;
    let log = logs["logs"].as_array().and_then(|l| l.iter().find(|l| l["name"] == "stdio")).context("a stdio log")?;
    log["logid"].as_i64().context("a log id")
}
