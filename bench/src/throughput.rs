//! Workload 1, build throughput: N forced builds of a trivial builder (update a checkout of a small local git
//! repository, then `echo`) submitted at once; builds per second from the first submission to the last request
//! completing. N = 100 (10 in quick mode). And the master's own overhead per build: that time per build minus the
//! time the build's commands ran on the worker, as the worker reports it (the `elapsedTime=` header line each
//! command ends its stdio log with, from Kiln's worker and from buildbot-worker alike).
//!
//! On Kiln the overhead is also broken down by phase, from the master's own event stream (`/api/v2/events`,
//! each event stamped when it reaches the bench): see [`Breakdown`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::repo::make_repo;
use crate::report::{fmt, Better, Row, Target};
use crate::sse;
use crate::systems::{Builder, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "1 build throughput";

pub async fn run(env: &Env) -> Vec<Row> {
    let builds = if env.quick { 10 } else { 100 };
    let mut rate = [None, None];
    let mut overhead = [None, None];
    let mut phases = None;
    for (i, kind) in [Kind::Kiln, Kind::Buildbot].into_iter().enumerate() {
        let measured = figures(WORKLOAD, kind, measure(env, kind, builds).await);
        rate[i] = measured.as_ref().map(|m| m.rate);
        overhead[i] = measured.as_ref().and_then(|m| m.overhead_ms);
        if kind == Kind::Kiln {
            phases = measured.and_then(|m| m.breakdown);
        }
    }
    let mut rows = vec![
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
    ];
    for (phase, ms) in phases.map(|b| b.phases).unwrap_or_default() {
        rows.push(Row {
            workload: WORKLOAD,
            metric: format!("Kiln's overhead per build: {phase}"),
            unit: "ms",
            better: Better::Lower,
            kiln: Some(ms),
            buildbot: None,
            target: Target::None,
        });
    }
    rows
}

/// What one system did.
#[derive(Debug, Clone)]
struct Measured {
    rate: f64,
    /// `None` when the commands' times could not be read from the logs.
    overhead_ms: Option<f64>,
    /// Kiln's overhead by phase.
    breakdown: Option<Breakdown>,
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
    // Kiln's events, stamped as they arrive, from before the first submission to the last request's completion.
    let events = match kind {
        Kind::Kiln => {
            let (ready, connected) = oneshot::channel();
            let url =
                format!("{}api/v2/events?path=buildrequests/*/*&path=builds/*/*&path=steps/*/*", system.web_url());
            // A client of its own: the shared one times whole requests out after 30 s.
            let task = tokio::spawn(record_events(reqwest::Client::new(), url, builds, ready));
            tokio::time::timeout(Duration::from_secs(30), connected).await.context("the events stream")?.ok();
            Some(task)
        }
        Kind::Buildbot => None,
    };

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
    let commands = command_seconds(&system).await;
    let overhead_ms = match &commands {
        Ok(commands) => {
            let total: f64 = commands.values().sum();
            let per_build = (elapsed.as_secs_f64() - total) / builds as f64 * 1e3;
            println!("  {kind:?}: commands ran {total:.2} s on the worker; master overhead {per_build:.2} ms/build");
            Some(per_build)
        }
        Err(e) => {
            eprintln!("  {kind:?}: no command times: {e:#}");
            None
        }
    };
    let breakdown = match (events, &commands) {
        (Some(events), Ok(commands)) => {
            let events = tokio::time::timeout(Duration::from_secs(30), events)
                .await
                .context("the events stream did not see every request complete")?
                .context("the events reader failed")??;
            let breakdown = Breakdown::of(&events, commands)?;
            println!("  {kind:?}: {breakdown}");
            Some(breakdown)
        }
        _ => None,
    };
    Ok(Measured { rate: builds as f64 / elapsed.as_secs_f64(), overhead_ms, breakdown })
}

/// One event as the bench received it.
struct Seen {
    event: String,
    data: Value,
    /// Wall-clock seconds when it arrived.
    at: f64,
}

/// Reads `/api/v2/events` until `builds` requests have completed.
async fn record_events(
    http: reqwest::Client,
    url: String,
    builds: usize,
    ready: oneshot::Sender<()>,
) -> Result<Vec<Seen>> {
    let mut seen = Vec::new();
    let mut completed = 0;
    sse::read(http, url, ready, |event, data, at| {
        anyhow::ensure!(event != "reset", "the events stream was reset: {data}");
        completed += usize::from(event == "build_request_completed");
        seen.push(Seen { event: event.to_owned(), data: data.clone(), at });
        Ok(completed == builds)
    })
    .await?;
    Ok(seen)
}

/// Kiln's overhead per build by phase, in ms, averaged over the builds after the first (each starts when the
/// one before it completes, on the one worker): the phases add up to the time from one request's completion to
/// the next one's, minus the next build's commands.
#[derive(Debug, Clone, Default)]
struct Breakdown {
    phases: Vec<(&'static str, f64)>,
    steps: usize,
}

impl Breakdown {
    /// From the events of every build, and each step's command time on the worker.
    fn of(events: &[Seen], commands: &HashMap<i64, f64>) -> Result<Breakdown> {
        let id = |seen: &Seen, key: &str| seen.data[key].as_i64().unwrap_or(-1);
        let first = |event: &str, key: &str, value: i64| {
            events.iter().find(|s| s.event == event && id(s, key) == value).map(|s| s.at)
        };
        let mut builds: Vec<(f64, i64, i64)> = events
            .iter()
            .filter(|s| s.event == "build_started")
            .map(|s| (s.at, id(s, "buildid"), id(s, "brid")))
            .collect();
        builds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let names = [
            "previous request complete → claimed",
            "claimed → build started",
            "build started → first step started",
            "in the steps, beyond their commands (all steps)",
            "between steps",
            "last step finished → build finished",
            "build finished → request complete",
        ];
        let mut sums = [0.0f64; 7];
        let mut counted = 0usize;
        let mut steps_per_build = 0;
        for pair in builds.windows(2) {
            let [(_, _, previous_brid), (started, buildid, brid)] = pair else { continue };
            let (Some(previous), Some(claimed), Some(finished), Some(complete)) = (
                first("build_request_completed", "brid", *previous_brid),
                first("build_request_claimed", "brid", *brid),
                first("build_finished", "buildid", *buildid),
                first("build_request_completed", "brid", *brid),
            ) else {
                continue;
            };
            let mut steps: Vec<(f64, i64)> = events
                .iter()
                .filter(|s| s.event == "step_started" && id(s, "buildid") == *buildid)
                .map(|s| (s.at, id(s, "stepid")))
                .collect();
            steps.sort_by(|a, b| a.0.total_cmp(&b.0));
            let Some(&(first_step, _)) = steps.first() else { continue };
            let mut inside = 0.0;
            let mut between = 0.0;
            let mut last_finished = first_step;
            for (i, &(step_started, stepid)) in steps.iter().enumerate() {
                let step_finished = first("step_finished", "stepid", stepid).context("a step that never finished")?;
                inside += step_finished - step_started - commands.get(&stepid).copied().unwrap_or(0.0);
                if i > 0 {
                    between += step_started - last_finished;
                }
                last_finished = step_finished;
            }
            let phases = [
                claimed - previous,
                started - claimed,
                first_step - started,
                inside,
                between,
                finished - last_finished,
                complete - finished,
            ];
            for (sum, phase) in sums.iter_mut().zip(phases) {
                *sum += phase;
            }
            steps_per_build = steps.len();
            counted += 1;
        }
        ensure!(counted > 0, "no build's events were all seen");
        let phases = names.into_iter().zip(sums.map(|s| s / counted as f64 * 1e3)).collect();
        Ok(Breakdown { phases, steps: steps_per_build })
    }
}

impl std::fmt::Display for Breakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: f64 = self.phases.iter().map(|(_, ms)| ms).sum();
        let parts: Vec<String> = self.phases.iter().map(|(name, ms)| format!("{name} {}", fmt(*ms))).collect();
        write!(f, "overhead by events: {} ms = {} ({} steps a build)", fmt(total), parts.join(" + "), self.steps)
    }
}

/// The time each step's command ran on the worker, in seconds, by step id: the `elapsedTime=` header line of its
/// stdio log.
async fn command_seconds(system: &System) -> Result<HashMap<i64, f64>> {
    let builds = system.get("builds?field=buildid").await?;
    let mut total = HashMap::new();
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
            total.insert(stepid, elapsed);
        }
    }
    Ok(total)
}
