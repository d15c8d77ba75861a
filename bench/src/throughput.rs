//! Workload 1, build throughput: N forced builds of a trivial builder (update a checkout of a small local git
//! repository, then `echo`) submitted at once; builds per second from the first submission to the last request
//! completing. N = 100 (10 in quick mode). And the master's own overhead per build: that time per build minus the
//! time the build's commands ran on the worker, as the worker reports it (the `elapsedTime=` header line each
//! command ends its stdio log with, from Kiln's worker and from buildbot-worker alike).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures_util::future::join_all;

use crate::repo::make_repo;
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "1 build throughput";

pub async fn run(env: &Env) -> Vec<Row> {
    let builds = if env.quick { 10 } else { 100 };
    let mut rate = [None, None];
    let mut overhead = [None, None];
    for (i, kind) in [Kind::Kiln, Kind::Buildbot].into_iter().enumerate() {
        let measured = figures(WORKLOAD, kind, measure(env, kind, builds).await);
        rate[i] = measured.map(|m| m.rate);
        overhead[i] = measured.and_then(|m| m.overhead_ms);
    }
    vec![
        Row {
            workload: WORKLOAD,
            metric: format!("{builds} builds submitted at once"),
            unit: "builds/s",
            better: Better::Higher,
            kiln: rate[0],
            buildbot: rate[1],
            target: Target::Ratio(50.0),
        },
        Row {
            workload: WORKLOAD,
            metric: "master overhead per build (time per build − its commands' time on the worker)".into(),
            unit: "ms",
            better: Better::Lower,
            kiln: overhead[0],
            buildbot: overhead[1],
            target: Target::AtMost(2.0),
        },
    ]
}

/// What one system did.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rate: f64,
    /// `None` when the commands' times could not be read from the logs.
    overhead_ms: Option<f64>,
}

async fn measure(env: &Env, kind: Kind, builds: usize) -> Result<Measured> {
    // The repository lives next to the systems, at a path known before the builder is written.
    let repo = tempfile::Builder::new().prefix("repo-").tempdir_in(&env.scratch)?;
    make_repo(repo.path())?;
    let checkout =
        format!("if [ -d src/.git ]; then git -C src pull -q; else git clone -q {} src; fi", repo.path().display());
    let builder = Builder::new("trivial", &[("checkout", &checkout), ("echo", "echo hello")]);
    let mut system = System::start(env, kind, &[builder]).await?;
    let builder_id = system.builder_id("trivial").await?;

    let started = Instant::now();
    let submissions = (0..builds).map(|_| system.force("trivial", builder_id));
    let brids: Vec<i64> = join_all(submissions).await.into_iter().collect::<Result<_>>()?;
    ensure!(brids.len() == builds);
    let submitted = started.elapsed();
    system
        .poll("all requests to complete", Duration::from_secs(if env.quick { 120 } else { 600 }), async |s: &System| {
            let pending = s.get("buildrequests?complete=false&field=buildrequestid&field=complete").await?;
            Ok(pending["buildrequests"].as_array().is_some_and(|p| p.is_empty()).then_some(()))
        })
        .await?;
    let elapsed = started.elapsed();
    let done = system.get("buildrequests?complete=true&field=buildrequestid&field=complete&field=results").await?;
    let done = done["buildrequests"].as_array().cloned().unwrap_or_default();
    let succeeded = done.iter().filter(|r| r["results"].as_i64() == Some(0)).count();
    ensure!(done.len() == builds, "{} requests complete, expected {builds}", done.len());
    ensure!(succeeded == builds, "only {succeeded} of {builds} builds succeeded\n{}", system.diagnostics());
    println!(
        "  {kind:?}: {builds} builds in {:.2} s (submitted in {:.3} s)",
        elapsed.as_secs_f64(),
        submitted.as_secs_f64()
    );
    // The builds run one at a time on the one worker: what the time per build has beyond its commands is the
    // master's (dispatch, store writes, the protocol's round trips), plus the worker's own bookkeeping.
    let overhead_ms = match command_seconds(&system).await {
        Ok(commands) => {
            let per_build = (elapsed.as_secs_f64() - commands) / builds as f64 * 1e3;
            println!("  {kind:?}: commands ran {commands:.2} s on the worker; master overhead {per_build:.2} ms/build");
            Some(per_build)
        }
        Err(e) => {
            eprintln!("  {kind:?}: no command times: {e:#}");
            None
        }
    };
    Ok(Measured { rate: builds as f64 / elapsed.as_secs_f64(), overhead_ms })
}

/// The time all the builds' commands ran on the worker, in seconds: the sum of the `elapsedTime=` header lines
/// of every step's stdio log.
async fn command_seconds(system: &System) -> Result<f64> {
    let builds = system.get("builds?field=buildid").await?;
    let mut total = 0.0;
    for build in builds["builds"].as_array().context("no builds")? {
        let buildid = build["buildid"].as_i64().context("a build id")?;
        let steps = system.get(&format!("builds/{buildid}/steps?field=stepid")).await?;
        for step in steps["steps"].as_array().context("no steps")? {
            let stepid = step["stepid"].as_i64().context("a step id")?;
            let logs = system.get(&format!("steps/{stepid}/logs")).await?;
            let Some(stdio) = logs["logs"].as_array().and_then(|l| l.iter().find(|l| l["name"] == "stdio")) else {
                continue;
            };
            let logid = stdio["logid"].as_i64().context("a log id")?;
            let lines = stdio["num_lines"].as_i64().unwrap_or(1000);
            let contents = system.get(&format!("logs/{logid}/contents?offset=0&limit={lines}")).await?;
            let text: String = contents["logchunks"]
                .as_array()
                .map(|chunks| chunks.iter().filter_map(|c| c["content"].as_str()).collect())
                .unwrap_or_default();
            let elapsed = text
                .lines()
                .filter_map(|line| line.strip_prefix("helapsedTime="))
                .filter_map(|seconds| seconds.trim().parse::<f64>().ok())
                .next_back()
                .with_context(|| format!("step {stepid}: no elapsedTime in its log"))?;
            total += elapsed;
        }
    }
    Ok(total)
}
