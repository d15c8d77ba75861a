//! kiln-bench: runs each workload on Kiln and on Buildbot 4.3.0, on this machine, in this run, and prints both
//! figures and the ratio. Run it through `bench/run` (see bench/README.md), which builds `kiln` in release mode
//! and makes the Buildbot venv.

mod api;
mod idle;
mod latency;
mod live;
mod logpage;
mod logs;
mod measure;
mod notify;
mod pages;
mod polls;
mod repo;
mod report;
mod retention;
mod sse;
mod systems;
mod throughput;
mod workers;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};

use report::Row;
use systems::Kind;

#[derive(Parser)]
#[command(about = "Benchmarks Kiln against Buildbot 4.3.0 (run it through bench/run)")]
struct Args {
    /// Small sizes of every workload (about a minute in all).
    #[arg(long)]
    quick: bool,
    /// Run only this workload.
    #[arg(long, value_enum)]
    only: Option<Workload>,
    /// The `kiln` binary (a release build).
    #[arg(long)]
    kiln: PathBuf,
    /// The venv holding buildbot and buildbot-worker 4.3.0 (`scripts/buildbot-venv` prints it).
    #[arg(long)]
    venv: PathBuf,
    /// Keep the scratch directories (masters, workers, stores) under bench/scratch/.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// 1. Build throughput: many forced builds of a trivial builder submitted at once.
    Throughput,
    /// 2. Log throughput: builds printing big logs.
    Logs,
    /// 3. Idle memory and start-up.
    Idle,
    /// 4. Change latency: commit or webhook to build started.
    Latency,
    /// 5. API latencies with many builds in the store.
    Api,
    /// 6. Many workers on one master: memory and CPU.
    Workers,
    /// 7. The web UI's pages with many builds in the store (Kiln only).
    Pages,
    /// 8. The log page in headless Chromium: a 100 MB (and 1 GB) log, a log growing 20,000 lines/s.
    LogPage,
    /// 9. Builds while the janitor empties the logs of many old builds (Kiln only).
    Retention,
    /// 10. Notifications: build end → mail accepted and → HTTP status received; memory with 3 reporters.
    Notify,
    /// 11. Live log lag: a printed line to an SSE or /ws client.
    Live,
}

/// What every workload needs.
#[derive(Debug, Clone)]
pub struct Env {
    pub kiln: PathBuf,
    /// The worker binary, beside `kiln`: what runs on worker machines.
    pub kiln_worker: PathBuf,
    pub venv: PathBuf,
    /// Where systems get their scratch directories.
    pub scratch: PathBuf,
    pub keep: bool,
    pub quick: bool,
}

/// Unwraps one system's measurement; an error is printed and becomes no figure.
pub fn figures<T>(workload: &str, kind: Kind, result: Result<T>) -> Option<T> {
    result.inspect_err(|e| eprintln!("{workload} on {kind:?} FAILED: {e:#}")).ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let env = Env {
        kiln: std::path::absolute(&args.kiln)?,
        kiln_worker: std::path::absolute(&args.kiln)?.with_file_name("kiln-worker"),
        venv: std::path::absolute(&args.venv)?,
        scratch: bench_dir.join("scratch"),
        keep: args.keep,
        quick: args.quick,
    };
    std::fs::create_dir_all(&env.scratch)?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("kiln-bench: {} mode; {cores} CPUs ({cpu}); load average at start: {}", mode(&env), measure::loadavg());

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for workload in [
        Workload::Throughput,
        Workload::Logs,
        Workload::Idle,
        Workload::Latency,
        Workload::Api,
        Workload::Workers,
        Workload::Pages,
        Workload::LogPage,
        Workload::Retention,
        Workload::Notify,
        Workload::Live,
    ] {
        if args.only.is_some_and(|only| only != workload) {
            continue;
        }
        println!("== {workload:?} (load {})", measure::loadavg());
        let new = match workload {
            Workload::Throughput => throughput::run(&env).await,
            Workload::Logs => logs::run(&env).await,
            Workload::Idle => idle::run(&env).await,
            Workload::Latency => latency::run(&env).await,
            Workload::Api => api::run(&env).await,
            Workload::Workers => workers::run(&env).await,
            Workload::Pages => pages::run(&env).await,
            Workload::LogPage => logpage::run(&env).await,
            Workload::Retention => retention::run(&env).await,
            Workload::Notify => notify::run(&env).await,
            Workload::Live => live::run(&env).await,
        };
        rows.extend(new);
    }

    println!(
        "\nResults ({} mode, {:.0} s, load average at end: {}):\n",
        mode(&env),
        started.elapsed().as_secs_f64(),
        measure::loadavg()
    );
    print!("{}", report::table(&rows));
    let json: Vec<_> = rows.iter().map(Row::to_json).collect();
    let out = bench_dir.join("results/latest.json");
    std::fs::create_dir_all(out.parent().expect("a parent"))?;
    std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("write {}", out.display()))?;
    println!("\nwritten to {}", out.display());
    Ok(())
}

fn mode(env: &Env) -> &'static str {
    if env.quick {
        "quick"
    } else {
        "full"
    }
}
