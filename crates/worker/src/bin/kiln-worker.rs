//! `kiln-worker`: the worker alone (`kiln-worker create …`, `kiln-worker start DIR`), the same commands as
//! `kiln worker …` in a binary without the master, for worker machines.

use clap::Parser;
use kiln_worker::cli::{self, WorkerCommand};

/// The Kiln worker: connects to a Kiln or Buildbot master and runs the commands it sends.
#[derive(Parser)]
#[command(name = "kiln-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: WorkerCommand,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    cli::init_logging();
    match cli::run(args.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-worker: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
