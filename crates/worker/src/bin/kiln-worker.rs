//! `kiln-worker`: the worker alone (`kiln-worker create …`, `kiln-worker start DIR`), the same commands as
//! `kiln worker …` in a binary without the master, for worker machines.

use clap::Parser;
use kiln_worker::cli::{self, LogFormat, WorkerCommand};

/// The Kiln worker: connects to a Kiln or Buildbot master and runs the commands it sends.
#[derive(Parser)]
#[command(name = "kiln-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: WorkerCommand,
    /// How the log on stderr is written: text (coloured only on a terminal, never with NO_COLOR) or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    cli::init_logging(args.log_format);
    match cli::run(args.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-worker: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
