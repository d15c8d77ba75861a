//! Workload 5, API under history: request latencies of the REST API with many builds in the store. Each
//! master is started once with a builder `history` (so the store has the builder, the master and the worker),
//! stopped, and its store filled by `bench/history.py` (finished builds, each with a buildset, a request, one
//! step and one 20-line stdio log, by SQL inserts in one transaction); then it is started alone (no worker) and
//! asked, one request at a time, for `GET /api/v2/builds?limit=50` (the newest first, as a UI's list), a random
//! build's steps (`/builds/{id}/steps`) and the last 10 lines of that build's log
//! (`/logs/{id}/contents?offset=10&limit=10`). Then the store is filled up to the next size and the master
//! started again. Sizes: 1,000 and 1,000,000 builds (quick: 1,000 and 10,000); Buildbot gets a time budget per
//! size (generation, start, requests) and its figures are `null` where it runs out.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::report::{Better, Row, Target};
use crate::systems::{run_setup_within, Builder, Kind, System, START_TIMEOUT};
use crate::{figures, Env};

const WORKLOAD: &str = "5 API under history";
pub(crate) const BUILDER: &str = "history";
/// Lines of every generated log (as bench/history.py writes them).
const LOG_LINES: usize = 20;
pub(crate) const LOG_TEXT_LINES: usize = LOG_LINES;
/// The p99 target, at every size.
const P99_MS: f64 = 10.0;

/// The requests timed, by name.
const ENDPOINTS: [&str; 3] = ["builds?limit=50", "one build's steps", "one log's last 10 lines"];

/// p50 and p99 of each endpoint, in ms, in [`ENDPOINTS`] order.
type Latencies = Vec<(f64, f64)>;

pub async fn run(env: &Env) -> Vec<Row> {
    let sizes: [usize; 2] = if env.quick { [1_000, 10_000] } else { [1_000, 1_000_000] };
    let requests = if env.quick { 100 } else { 200 };
    // Buildbot's budget per size: generating a million builds and starting on them takes it minutes.
    let budget = Duration::from_secs(if env.quick { 120 } else { 900 });
    let mut per_kind: Vec<Vec<Option<Latencies>>> = Vec::new();
    for kind in [Kind::Kiln, Kind::Buildbot] {
        let result = measure(env, kind, &sizes, requests, budget).await;
        per_kind.push(figures(WORKLOAD, kind, result).unwrap_or_else(|| vec![None; sizes.len()]));
    }
    let mut rows = Vec::new();
    for (s, size) in sizes.iter().enumerate() {
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for (p99, name) in [(false, "p50"), (true, "p99")] {
                let figure = |k: usize| {
                    per_kind[k][s].as_ref().map(|latencies| if p99 { latencies[e].1 } else { latencies[e].0 })
                };
                rows.push(Row {
                    workload: WORKLOAD,
                    metric: format!("{endpoint}, {size} builds: {name} of {requests}"),
                    unit: "ms",
                    better: Better::Lower,
                    kiln: figure(0),
                    buildbot: figure(1),
                    target: if p99 { Target::AtMost(P99_MS) } else { Target::None },
                });
            }
        }
    }
    rows
}

/// The latencies at each size (`None` for a size Buildbot ran out of time at, and the ones after it).
async fn measure(
    env: &Env,
    kind: Kind,
    sizes: &[usize],
    requests: usize,
    budget: Duration,
) -> Result<Vec<Option<Latencies>>> {
    let builder = Builder::new(BUILDER, &[("echo", "echo hello")]);
    let mut system = System::start(env, kind, &[builder]).await?;
    system.builder_id(BUILDER).await?;
    system.stop();
    let chunk = system.dir().join("chunk.zst");
    std::fs::write(&chunk, zstd::bulk::compress(log_text().as_bytes(), 3)?)?;

    let mut results = Vec::new();
    let mut stored = 0;
    for &size in sizes {
        let step = async {
            let generated = Instant::now();
            generate_history(env, kind, &system.store_path(), size - stored, &chunk, budget)?;
            let generated = generated.elapsed();
            let started = Instant::now();
            system.spawn_master()?;
            system.wait_master_ready(START_TIMEOUT).await?;
            let started = started.elapsed();
            let latencies = requests_at(&system, size, requests).await;
            system.stop();
            let latencies = latencies?;
            let show: Vec<String> = latencies.iter().map(|(p50, p99)| format!("p50 {p50:.1} p99 {p99:.1}")).collect();
            println!(
                "  {kind:?} at {size} builds: generated in {:.1} s, master ready in {:.1} s; ms: {}",
                generated.as_secs_f64(),
                started.as_secs_f64(),
                show.join(" | ")
            );
            Ok::<_, anyhow::Error>(latencies)
        };
        let outcome = if kind == Kind::Buildbot { tokio::time::timeout(budget, step).await } else { Ok(step.await) };
        match outcome {
            Ok(latencies) => results.push(Some(latencies?)),
            Err(_) => {
                println!("  {kind:?} at {size} builds: over its budget of {budget:?}: no figures from here on");
                system.stop();
                break;
            }
        }
        stored = size;
    }
    results.resize(sizes.len(), None);
    Ok(results)
}

/// The text of every generated log: what bench/history.py writes (stdio lines, each starting with its
/// channel `o`).
fn log_text() -> String {
    (0..LOG_LINES)
        .map(|k| format!("oline {k} of a build log from bench/history.py, long enough to look like output\n"))
        .collect()
}

/// Adds `builds` builds to the stopped master's store with bench/history.py, within `timeout`.
pub(crate) fn generate_history(
    env: &Env,
    kind: Kind,
    db: &Path,
    builds: usize,
    chunk: &Path,
    timeout: Duration,
) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("history.py");
    let system = if kind == Kind::Kiln { "kiln" } else { "buildbot" };
    let mut command = Command::new(env.venv.join("bin/python"));
    command
        .arg(&script)
        .args([system, &db.display().to_string(), &builds.to_string(), "--builder", BUILDER])
        .arg("--zstd-chunk")
        .arg(chunk);
    run_setup_within(&mut command, timeout)
}

/// p50 and p99 of `requests` requests of each endpoint, with `size` builds in the store.
async fn requests_at(system: &System, size: usize, requests: usize) -> Result<Latencies> {
    let newest = system.get("builds?order=-buildid&limit=1&field=buildid").await?;
    let newest = newest["builds"][0]["buildid"].as_i64().context("no builds")?;
    let oldest = newest - size as i64 + 1;
    let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ size as u64);

    let mut lists = Vec::new();
    for _ in 0..requests {
        let (ms, value) = timed(system, "builds?limit=50&order=-buildid").await?;
        ensure!(value["builds"].as_array().is_some_and(|b| b.len() == 50), "builds?limit=50: {value}");
        lists.push(ms);
    }
    let mut steps = Vec::new();
    let mut tails = Vec::new();
    for _ in 0..requests {
        let build = oldest + (random.next() % size as u64) as i64;
        let (ms, value) = timed(system, &format!("builds/{build}/steps")).await?;
        steps.push(ms);
        let stepid = value["steps"][0]["stepid"].as_i64().with_context(|| format!("build {build}: {value}"))?;
        let logs = system.get(&format!("steps/{stepid}/logs")).await?;
        let logid = logs["logs"][0]["logid"].as_i64().with_context(|| format!("step {stepid}: {logs}"))?;
        let offset = LOG_LINES - 10;
        let (ms, value) = timed(system, &format!("logs/{logid}/contents?offset={offset}&limit=10")).await?;
        let lines: usize = value["logchunks"]
            .as_array()
            .map(|chunks| chunks.iter().filter_map(|c| c["content"].as_str()).map(|c| c.lines().count()).sum())
            .unwrap_or(0);
        ensure!(lines == 10, "log {logid}: {lines} lines instead of 10: {value}");
        tails.push(ms);
    }
    Ok([lists, steps, tails].into_iter().map(|mut v| percentiles(&mut v)).collect())
}

/// One GET, timed (ms), which must succeed.
async fn timed(system: &System, path: &str) -> Result<(f64, Value)> {
    let started = Instant::now();
    let value = system.try_get(path).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if value.is_null() {
        bail!("GET {path}: null");
    }
    Ok((ms, value))
}

/// p50 and p99 (nearest rank).
pub(crate) fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (rank(0.50), rank(0.99))
}

/// xorshift64: random enough to pick builds, and the same picks in every run.
pub(crate) struct Random(pub(crate) u64);

impl Random {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentiles(&mut values), (100.0, 198.0));
        assert_eq!(percentiles(&mut [5.0]), (5.0, 5.0));
    }
}
