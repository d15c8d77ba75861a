//! Workload 3, idle memory and start-up. The start-up time runs from spawning the master to its REST API
//! showing the worker attached: the master is started, polled (every few ms) until it serves its API and
//! accepts TCP connections on its worker port, then the worker is started and polled until attached. Masters
//! and workers are created beforehand (configs written, Buildbot's database made by `create-master`); the
//! first start is a warm-up (Kiln creates its store then), the figure is the median of the next ones (1 in
//! quick mode, 3 in full). Then, idle for a few seconds, the RSS of the master and the worker.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::measure;
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Kind, System, START_TIMEOUT};
use crate::{figures, Env};

const WORKLOAD: &str = "3 idle and start-up";

struct Figures {
    start_ms: f64,
    master_mib: f64,
    worker_mib: f64,
}

pub async fn run(env: &Env) -> Vec<Row> {
    let mut per_kind = Vec::new();
    for kind in [Kind::Kiln, Kind::Buildbot] {
        per_kind.push(figures(WORKLOAD, kind, measure(env, kind).await));
    }
    let get = |k: usize, f: fn(&Figures) -> f64| per_kind[k].as_ref().map(f);
    let row = |metric: &str, unit, target, f: fn(&Figures) -> f64| Row {
        workload: WORKLOAD,
        metric: metric.to_owned(),
        unit,
        better: Better::Lower,
        kiln: get(0, f),
        buildbot: get(1, f),
        target,
    };
    vec![
        row("start to API with worker attached", "ms", Target::AtMost(100.0), |f| f.start_ms),
        row("master idle RSS", "MiB", Target::AtMost(15.0), |f| f.master_mib),
        row("worker idle RSS", "MiB", Target::AtMost(5.0), |f| f.worker_mib),
    ]
}

async fn measure(env: &Env, kind: Kind) -> Result<Figures> {
    let builder = Builder::new("idle", &[("echo", "echo hello")]);
    let mut system = System::create(env, kind, &[builder])?;
    let runs = if env.quick { 2 } else { 4 };
    let mut times = Vec::new();
    for run in 0..runs {
        if run > 0 {
            system.stop();
        }
        let started = Instant::now();
        system.spawn_master()?;
        system.wait_master_ready(START_TIMEOUT).await?;
        let master_ready = started.elapsed();
        system.spawn_worker()?;
        system.wait_worker_attached(START_TIMEOUT).await?;
        let attached = started.elapsed();
        println!(
            "  {kind:?} start {}: master serving in {:.0} ms, worker attached at {:.0} ms{}",
            run + 1,
            master_ready.as_secs_f64() * 1e3,
            attached.as_secs_f64() * 1e3,
            if run == 0 { " (warm-up)" } else { "" }
        );
        if run > 0 {
            times.push(attached.as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let start_ms = times[times.len() / 2];

    tokio::time::sleep(Duration::from_secs(if env.quick { 2 } else { 5 })).await;
    let master_mib = measure::rss_mib(system.master_pid().context("no master")?).context("no master RSS")?;
    let worker_mib = measure::rss_mib(system.worker_pid().context("no worker")?).context("no worker RSS")?;
    println!("  {kind:?} idle: master {master_mib:.1} MiB, worker {worker_mib:.1} MiB");
    Ok(Figures { start_ms, master_mib, worker_mib })
}
