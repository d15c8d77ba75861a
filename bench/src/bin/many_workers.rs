//! kiln-bench-workers: many Kiln workers in one process, for workload 6 (many workers) of kiln-bench. Each
//! worker is the real one (`kiln_worker::run`), with its own directory `DIR/PREFIX<i>` and name `PREFIX<i>`;
//! they share one tokio runtime. Runs until SIGTERM or SIGINT.
//!
//!     kiln-bench-workers --master 127.0.0.1:9989 --count 1000 --prefix w --password pw DIR

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Parser;
use kiln_worker::{CancellationToken, NewWorker, WorkerConfig};

#[derive(Parser)]
#[command(about = "Runs many Kiln workers in one process (for kiln-bench)")]
struct Args {
    /// HOST:PORT of the master's worker listener.
    #[arg(long)]
    master: String,
    /// How many workers.
    #[arg(long)]
    count: usize,
    /// Worker names: PREFIX0, PREFIX1, …
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    password: String,
    /// Where the workers' directories go (created if missing).
    dir: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut configs = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let name = format!("{}{i}", args.prefix);
        let dir = args.dir.join(&name);
        if !dir.join(kiln_worker::CONFIG_FILE).exists() {
            let new = NewWorker {
                master: args.master.clone(),
                name,
                password: args.password.clone(),
                tls: false,
                ca_file: None,
                admin: "kiln-bench".into(),
                host: "kiln-bench".into(),
            };
            kiln_worker::create(&dir, &new)?;
        }
        configs.push(WorkerConfig::load(&dir)?);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let workers: Vec<_> = configs.into_iter().map(|c| tokio::spawn(kiln_worker::run(c, stop.clone()))).collect();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop.cancel();
        for worker in workers {
            if let Ok(Err(e)) = worker.await {
                eprintln!("kiln-bench-workers: a worker failed: {e:#}");
            }
        }
        Ok(())
    })
}
