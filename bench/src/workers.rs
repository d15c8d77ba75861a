//! Workload 6, many workers: one master with N workers attached, its memory and CPU when idle and while M of
//! them build. Kiln: N = 1,000 (quick: 100) Kiln workers, all in one `kiln-bench-workers` process. Buildbot:
//! N = 50 (quick: 10) stock `buildbot-worker` processes (each a Python process of ~50 MB: a thousand would not
//! fit a small machine), so its per-worker figure comes from fewer workers, as the metric says.
//!
//! Both masters declare the N workers and one builder `sleep` that may use any of them (one build per worker at
//! a time), with one step `sleep 1`. Steps: the master alone, idle (RSS with no worker); the workers started
//! and polled until the API shows them all connected; idle again (RSS, CPU); then M = min(100, N) builds forced
//! at once and the master's peak RSS and CPU until all are complete. Per connected worker:
//! (idle RSS with N attached − idle RSS with none) / N. CPU is the master's user + system time over the
//! wall-clock time of the idle window, and per build (CPU time from the first force to the last request complete,
//! divided by M) while they build, from `/proc/PID/stat`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use futures_util::future::join_all;

use crate::measure;
use crate::report::{Better, Row, Target};
use crate::systems::{run_setup, Builder, Extras, Kind, Proc, System, START_TIMEOUT, WORKER_PASSWORD};
use crate::{figures, Env};

const WORKLOAD: &str = "6 many workers";
const BUILDER: &str = "sleep";
const PREFIX: &str = "m";
/// The Kiln master's target: memory per connected worker.
const KIB_PER_WORKER: f64 = 100.0;

struct Figures {
    workers: usize,
    builds: usize,
    alone_mib: f64,
    idle_mib: f64,
    idle_cpu: f64,
    busy_mib: f64,
    /// Master CPU time per build while they run, ms.
    busy_cpu_ms: f64,
}

impl Figures {
    fn kib_per_worker(&self) -> f64 {
        (self.idle_mib - self.alone_mib) * 1024.0 / self.workers as f64
    }
}

pub async fn run(env: &Env) -> Vec<Row> {
    let kiln_workers = if env.quick { 100 } else { 1000 };
    let buildbot_workers = if env.quick { 10 } else { 50 };
    let kiln = figures(WORKLOAD, Kind::Kiln, measure(env, Kind::Kiln, kiln_workers).await);
    let buildbot = figures(WORKLOAD, Kind::Buildbot, measure(env, Kind::Buildbot, buildbot_workers).await);
    let described = |f: &Option<Figures>, n: usize| f.as_ref().map(|f| f.workers).unwrap_or(n);
    let (kn, bn) = (described(&kiln, kiln_workers), described(&buildbot, buildbot_workers));
    let kb = kiln.as_ref().map(|f| f.builds).unwrap_or(kiln_workers.min(100));
    let bb = buildbot.as_ref().map(|f| f.builds).unwrap_or(buildbot_workers.min(100));
    let row = |metric: String, unit, target, f: fn(&Figures) -> f64| Row {
        workload: WORKLOAD,
        metric,
        unit,
        better: Better::Lower,
        kiln: kiln.as_ref().map(f),
        buildbot: buildbot.as_ref().map(f),
        target,
    };
    let who = format!("Kiln {kn} / Buildbot {bn} workers");
    vec![
        row(format!("master RSS per connected worker ({who})"), "KiB", Target::AtMost(KIB_PER_WORKER), |f| {
            f.kib_per_worker()
        }),
        row(format!("master idle RSS, {who} attached"), "MiB", Target::None, |f| f.idle_mib),
        row(format!("master idle CPU, {who} attached"), "%", Target::None, |f| f.idle_cpu),
        row(format!("master peak RSS while {kb} / {bb} of them build"), "MiB", Target::None, |f| f.busy_mib),
        row(format!("master CPU time per build while {kb} / {bb} of them build"), "ms", Target::None, |f| {
            f.busy_cpu_ms
        }),
    ]
}

async fn measure(env: &Env, kind: Kind, workers: usize) -> Result<Figures> {
    let names: Vec<String> = (0..workers).map(|i| format!("{PREFIX}{i}")).collect();
    let extras = Extras { workers: names.clone(), builder_workers: Some(names.clone()), ..Extras::default() };
    let builder = Builder::new(BUILDER, &[("sleep", "sleep 1")]);
    let mut system = System::create_with(env, kind, &[builder], &extras)?;
    system.spawn_master()?;
    system.wait_master_ready(START_TIMEOUT).await?;
    let master = system.master_pid().context("no master")?;
    let idle = Duration::from_secs(if env.quick { 2 } else { 5 });
    tokio::time::sleep(idle).await;
    let alone_mib = measure::rss_mib(master).context("no master RSS")?;

    let started = Instant::now();
    let _workers = spawn_workers(env, kind, &system, workers)?;
    system
        .poll(&format!("{workers} workers to attach"), START_TIMEOUT * 2, async |s: &System| {
            let list = s.get("workers").await?;
            let connected = list["workers"]
                .as_array()
                .map(|w| w.iter().filter(|w| w["connected_to"].as_array().is_some_and(|c| !c.is_empty())).count())
                .unwrap_or(0);
            Ok((connected >= workers).then_some(()))
        })
        .await?;
    println!("  {kind:?}: {workers} workers attached in {:.1} s", started.elapsed().as_secs_f64());

    tokio::time::sleep(idle).await;
    let cpu_before = measure::cpu_seconds(master).context("no master CPU time")?;
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let idle_cpu =
        (measure::cpu_seconds(master).context("no master CPU time")? - cpu_before) / started.elapsed().as_secs_f64();
    let idle_mib = measure::rss_mib(master).context("no master RSS")?;

    let builds = workers.min(100);
    let builder_id = system.builder_id(BUILDER).await?;
    measure::reset_peak(master);
    let cpu_before = measure::cpu_seconds(master).context("no master CPU time")?;
    let started = Instant::now();
    let brids: Vec<i64> =
        join_all((0..builds).map(|_| system.force(BUILDER, builder_id))).await.into_iter().collect::<Result<_>>()?;
    ensure!(brids.len() == builds);
    system
        .poll("the builds to complete", Duration::from_secs(300), async |s: &System| {
            let pending = s.get("buildrequests?complete=false&field=buildrequestid&field=complete").await?;
            Ok(pending["buildrequests"].as_array().is_some_and(|p| p.is_empty()).then_some(()))
        })
        .await?;
    let wall = started.elapsed();
    let busy_cpu = measure::cpu_seconds(master).context("no master CPU time")? - cpu_before;
    let busy_mib = measure::peak_mib(master).context("no master peak RSS")?;
    let done = system.get("buildrequests?complete=true&field=buildrequestid&field=complete&field=results").await?;
    let done = done["buildrequests"].as_array().cloned().unwrap_or_default();
    let succeeded = done.iter().filter(|r| r["results"].as_i64() == Some(0)).count();
    ensure!(succeeded == builds, "{succeeded} of {builds} builds succeeded\n{}", system.diagnostics());
    let figures = Figures {
        workers,
        builds,
        alone_mib,
        idle_mib,
        idle_cpu: idle_cpu * 100.0,
        busy_mib,
        busy_cpu_ms: busy_cpu * 1e3 / builds as f64,
    };
    println!(
        "  {kind:?}: master alone {alone_mib:.1} MiB, with {workers} workers {idle_mib:.1} MiB ({:.0} KiB each), idle \
         CPU {:.1}%; {builds} builds of `sleep 1` in {:.2} s: peak {busy_mib:.1} MiB, CPU {:.2} s ({:.0}%)",
        figures.kib_per_worker(),
        figures.idle_cpu,
        wall.as_secs_f64(),
        busy_cpu,
        busy_cpu * 100.0 / wall.as_secs_f64()
    );
    Ok(figures)
}

/// Starts the workers: Kiln's all in one `kiln-bench-workers` process, Buildbot's one process each.
fn spawn_workers(env: &Env, kind: Kind, system: &System, workers: usize) -> Result<Vec<Proc>> {
    let dir = system.dir().join("many");
    std::fs::create_dir_all(&dir)?;
    let master = system.worker_address();
    match kind {
        Kind::Kiln => {
            let binary = env.kiln.with_file_name("kiln-bench-workers");
            let mut command = Command::new(&binary);
            command
                .args(["--master", &master, "--count", &workers.to_string(), "--prefix", PREFIX])
                .args(["--password", WORKER_PASSWORD])
                .arg(&dir);
            Ok(vec![Proc::spawn("kiln-bench-workers", &mut command, &dir.join("workers.out"), vec![])?])
        }
        Kind::Buildbot => {
            // One `create-worker` (a second of Python), then copies of it with the name changed.
            let first = dir.join(format!("{PREFIX}0"));
            run_setup(
                Command::new(env.venv.join("bin/buildbot-worker"))
                    .args(["create-worker", "--protocol=msgpack_experimental_v7"])
                    .arg(&first)
                    .args([&master, &format!("{PREFIX}0"), WORKER_PASSWORD]),
            )?;
            let tac = std::fs::read_to_string(first.join("buildbot.tac"))?;
            let mut procs = Vec::new();
            for i in 0..workers {
                let name = format!("{PREFIX}{i}");
                let basedir = dir.join(&name);
                if i > 0 {
                    std::fs::create_dir_all(basedir.join("info"))?;
                    let text = tac
                        .replace(&format!("workername = '{PREFIX}0'"), &format!("workername = '{name}'"))
                        .replace(&first.display().to_string(), &basedir.display().to_string());
                    std::fs::write(basedir.join("buildbot.tac"), text)?;
                }
                procs.push(buildbot_worker(env, &basedir, &name)?);
            }
            Ok(procs)
        }
    }
}

fn buildbot_worker(env: &Env, basedir: &Path, name: &str) -> Result<Proc> {
    let mut command = Command::new(env.venv.join("bin/buildbot-worker"));
    command.args(["start", "--nodaemon"]).arg(basedir);
    Proc::spawn(&format!("buildbot-worker {name}"), &mut command, &basedir.join("worker.out"), vec![])
}
