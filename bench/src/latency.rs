//! Workload 4, change latency: how long from a change to its build starting, with each system's git poller
//! (1 s interval) watching a local repository, and by webhook (a GitHub-style push POSTed to
//! `/change_hook/github`). An on-change scheduler without tree-stable timer (Kiln: `type = "on_change"`;
//! Buildbot: `AnyBranchScheduler(treeStableTimer=None)`) starts a build of a one-`echo` builder per change.
//!
//! The instant of each poll is seen with inotify on the repository (`polls.rs`), so the poll latency is also
//! given from the start of the poll that saw the commit: what the system adds to the wait for its poll.
//!
//! Both stores keep seconds only, so "build started" is the instant the bench first sees the new build in
//! `GET /api/v2/builds`, polled every 2 ms (or every probe's own duration, if longer: at most half the master's
//! time) from the commit or the POST on. Commits are made at spread-out points of the poll interval (after the
//! previous build completed, a wait of `i × 0.618 mod 1` intervals), so the poll latency includes the wait for
//! the next poll: 0.5 s on average, up to 1 s; the webhook latency is the processing alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::polls::Polls;
use crate::repo::{git, make_repo};
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Extras, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "4 change latency";
const BUILDER: &str = "latency";
/// The git pollers' interval, in seconds.
const POLL_INTERVAL: u64 = 1;
/// How long a change gets to start its build before the workload fails.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Latencies in ms: by poll (from the commit, and from the poll that saw it), by webhook.
struct Figures {
    poll: Vec<f64>,
    after_poll: Vec<f64>,
    hook: Vec<f64>,
}

pub async fn run(env: &Env) -> Vec<Row> {
    let changes = if env.quick { 3 } else { 10 };
    let mut per_kind = Vec::new();
    for kind in [Kind::Kiln, Kind::Buildbot] {
        per_kind.push(figures(WORKLOAD, kind, measure(env, kind, changes).await));
    }
    let stat = |k: usize, f: fn(&Figures) -> &Vec<f64>, max: bool| {
        per_kind[k].as_ref().map(|figures| {
            let values = f(figures);
            if max {
                values.iter().copied().fold(0.0, f64::max)
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            }
        })
    };
    let row = |metric: String, target, f: fn(&Figures) -> &Vec<f64>, max: bool| Row {
        workload: WORKLOAD,
        metric,
        unit: "ms",
        better: Better::Lower,
        kiln: stat(0, f, max),
        buildbot: stat(1, f, max),
        target,
    };
    let poll_limit = POLL_INTERVAL as f64 * 1000.0 + 20.0;
    vec![
        row(
            format!("{changes} commits → build started, {POLL_INTERVAL} s git poll: mean"),
            Target::None,
            |f| &f.poll,
            false,
        ),
        row(
            format!("{changes} commits → build started, {POLL_INTERVAL} s git poll: max"),
            Target::AtMost(poll_limit),
            |f| &f.poll,
            true,
        ),
        row(format!("{changes} commits: poll start → build started: mean"), Target::None, |f| &f.after_poll, false),
        row(
            format!("{changes} commits: poll start → build started: max"),
            Target::AtMost(20.0),
            |f| &f.after_poll,
            true,
        ),
        row(format!("{changes} webhook pushes → build started: mean"), Target::None, |f| &f.hook, false),
        row(format!("{changes} webhook pushes → build started: max"), Target::AtMost(20.0), |f| &f.hook, true),
    ]
}

fn extras(kind: Kind, repo: &Path) -> Extras {
    let repo = serde_json::to_string(&repo.display().to_string()).expect("a string serialises");
    let mut extras = Extras::default();
    match kind {
        Kind::Kiln => {
            extras.kiln_toml = format!(
                "
[[change_source]]
type = \"git\"
repository = {repo}
branches = [\"main\"]
poll_interval = {POLL_INTERVAL}

[[scheduler]]
name = \"on-change\"
type = \"on_change\"
builders = [\"{BUILDER}\"]

[change_hooks.github]
"
            )
        }
        Kind::Buildbot => {
            extras.buildbot_cfg = format!(
                "
from buildbot.plugins import changes
c['change_source'] = [changes.GitPoller(repourl={repo}, branches=['main'], pollInterval={POLL_INTERVAL},
    pollAtLaunch=True, workdir='gitpoller-work')]
c['schedulers'].append(schedulers.AnyBranchScheduler(name='on-change', builderNames=['{BUILDER}'],
    treeStableTimer=None))
c['www']['change_hook_dialects'] = {{'github': {{}}}}
"
            )
        }
    }
    extras
}

async fn measure(env: &Env, kind: Kind, changes: usize) -> Result<Figures> {
    let repo = tempfile::Builder::new().prefix("watched-").tempdir_in(&env.scratch)?;
    make_repo(repo.path())?;
    let builder = Builder::new(BUILDER, &[("echo", "echo started")]);
    let mut system = System::start_with(env, kind, &[builder], &extras(kind, repo.path())).await?;

    // Warm-up: commit until a commit starts a build (the poller's first poll records the heads, and makes no
    // change); then the poller, the scheduler and the worker are all running.
    let mut last = newest_build(&system).await?;
    let mut warmed = false;
    for attempt in 0..10 {
        git(repo.path(), &["commit", "-q", "--allow-empty", "-m", &format!("warm-up {attempt}")])?;
        if let Ok(build) = wait_new_build(&mut system, last, Duration::from_secs(3 * POLL_INTERVAL)).await {
            wait_complete(&mut system, build).await?;
            last = Some(build);
            warmed = true;
            break;
        }
    }
    if !warmed {
        bail!("no commit started a build\n{}", system.diagnostics());
    }

    let polls = Polls::watch(repo.path())?;
    let mut poll = Vec::new();
    let mut after_poll = Vec::new();
    for i in 0..changes {
        let wait = (i as f64 * 0.618).fract() * POLL_INTERVAL as f64;
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        git(repo.path(), &["commit", "-q", "--allow-empty", "-m", &format!("change {i}")])?;
        let committed = Instant::now();
        let build = wait_new_build(&mut system, last, BUILD_TIMEOUT).await?;
        let seen = Instant::now();
        poll.push((seen - committed).as_secs_f64() * 1e3);
        let polled = polls.first_after(committed).context("the build started, but no poll was seen")?;
        after_poll.push(seen.saturating_duration_since(polled).as_secs_f64() * 1e3);
        wait_complete(&mut system, build).await?;
        last = Some(build);
    }

    let hook = format!("{}change_hook/github", system.web_url());
    let mut hooks = Vec::new();
    for i in 0..changes {
        let payload = push_payload(i);
        let posted = Instant::now();
        let response = system
            .http()
            .post(&hook)
            .header("X-GitHub-Event", "push")
            .header("Content-Type", "application/json")
            .body(payload.to_string())
            .send()
            .await
            .with_context(|| format!("POST {hook}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("POST {hook}: HTTP {status}: {}", response.text().await.unwrap_or_default());
        }
        let build = wait_new_build(&mut system, last, BUILD_TIMEOUT).await?;
        hooks.push(posted.elapsed().as_secs_f64() * 1e3);
        wait_complete(&mut system, build).await?;
        last = Some(build);
    }
    let show = |v: &[f64]| v.iter().map(|ms| format!("{ms:.0}")).collect::<Vec<_>>().join(" ");
    println!(
        "  {kind:?}: by poll {} ms, of which after the poll started {} ms; by webhook {} ms",
        show(&poll),
        show(&after_poll),
        show(&hooks)
    );
    Ok(Figures { poll, after_poll, hook: hooks })
}

/// The id of the newest build, if any.
async fn newest_build(system: &System) -> Result<Option<i64>> {
    let builds = system.get("builds?order=-buildid&limit=1&field=buildid").await?;
    Ok(builds["builds"].as_array().and_then(|b| b.first()).and_then(|b| b["buildid"].as_i64()))
}

/// Polls the builds every 2 ms (or the probe's own time, if longer) until one newer than `last` appears.
async fn wait_new_build(system: &mut System, last: Option<i64>, timeout: Duration) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let probe = Instant::now();
        if let Some(id) = newest_build(system).await?.filter(|id| Some(*id) != last) {
            return Ok(id);
        }
        if Instant::now() >= deadline {
            bail!("no build started within {timeout:?}\n{}", system.diagnostics());
        }
        tokio::time::sleep(probe.elapsed().max(Duration::from_millis(2))).await;
    }
}

async fn wait_complete(system: &mut System, build: i64) -> Result<()> {
    system
        .poll(&format!("build {build} to complete"), BUILD_TIMEOUT, async |s: &System| {
            let build = s.get_one(&format!("builds/{build}")).await?;
            Ok(build["complete"].as_bool().unwrap_or(false).then_some(()))
        })
        .await
}

/// A GitHub push of one new commit (a made-up revision: the builder checks nothing out) to `main`.
fn push_payload(i: usize) -> Value {
    let revision = format!("{:040x}", 0xbe_0000 + i);
    let commit = json!({
        "id": revision,
        "distinct": true,
        "message": format!("hook change {i}"),
        "timestamp": "2026-11-24T10:00:00+00:00",
        "url": format!("https://github.com/kiln/bench/commit/{revision}"),
        "author": {"name": "bench", "email": "bench@localhost", "username": "bench"},
        "committer": {"name": "bench", "email": "bench@localhost", "username": "bench"},
        "added": [], "removed": [], "modified": ["README"],
    });
    json!({
        "ref": "refs/heads/main",
        "before": format!("{:040x}", 0xbd_0000 + i),
        "after": revision,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": "https://github.com/kiln/bench/compare/a...b",
        "commits": [commit.clone()],
        "head_commit": commit,
        "repository": {
            "id": 1, "name": "bench", "full_name": "kiln/bench", "private": false,
            "owner": {"name": "kiln", "login": "kiln"},
            "html_url": "https://github.com/kiln/bench",
            "url": "https://github.com/kiln/bench",
            "clone_url": "https://github.com/kiln/bench.git",
            "default_branch": "main", "master_branch": "main",
        },
        "pusher": {"name": "bench", "email": "bench@localhost"},
        "sender": {"login": "bench"},
    })
}
