//! The worker's commands, for the `kiln-worker` binary and for `kiln worker …`: create a worker directory, run
//! a worker; and the logging both binaries set up.

use std::path::PathBuf;

use crate::{CancellationToken, NewWorker, WorkerConfig};
use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum WorkerCommand {
    /// Write a worker directory: worker.toml and info/.
    Create {
        /// The worker's directory (created if missing); its builders' directories go under it.
        dir: PathBuf,
        /// The master's worker port (its worker_listener.address): HOST:PORT, HOST (port 9989), or a ws://,
        /// wss://, http:// or https:// URL of it (wss and https mean --tls).
        #[arg(long)]
        master: String,
        /// The worker's name, as the master's config knows it.
        #[arg(long)]
        name: String,
        /// The worker's password, as the master's config knows it.
        #[arg(long)]
        password: String,
        /// Connect with TLS (wss://).
        #[arg(long)]
        tls: bool,
        /// PEM file of the CA that signed the master's certificate (with --tls).
        #[arg(long, requires = "tls")]
        ca_file: Option<PathBuf>,
        /// Who runs this worker (info/admin).
        #[arg(long, default_value = "Your Name Here <admin@youraddress.invalid>")]
        admin: String,
        /// A description of this host (info/host).
        #[arg(long = "host-info", default_value = "Please put a description of this build host here")]
        host: String,
    },
    /// Run a worker in the foreground until SIGTERM or SIGINT.
    Start {
        /// The worker's directory.
        dir: PathBuf,
    },
}

pub fn run(command: WorkerCommand) -> anyhow::Result<()> {
    match command {
        WorkerCommand::Create { dir, master, name, password, tls, ca_file, admin, host } => {
            let file = crate::create(&dir, &NewWorker { master, name, password, tls, ca_file, admin, host })?;
            println!("worker created: {}", file.display());
            println!("it connects to {}", WorkerConfig::load(&dir)?.url());
            println!("start it with: kiln worker start {}", dir.display());
            Ok(())
        }
        WorkerCommand::Start { dir } => {
            let config = WorkerConfig::load(&dir)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let stop = CancellationToken::new();
                tokio::spawn(stop_on_signal(stop.clone()));
                crate::run(config, stop).await
            })
        }
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people, in colour only on a terminal and without `NO_COLOR` set.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log collectors.
    Json,
}

/// Logs to stderr in `format`; `RUST_LOG` sets the level (default `info`).
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var_os("NO_COLOR");
            logs.with_ansi(colour(std::io::stderr().is_terminal(), no_color.as_deref())).init();
        }
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// Whether text logs are coloured: only on a terminal, and not when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Cancels `stop` at the first SIGTERM or SIGINT; a second one exits at once. SIGHUP (a closed terminal, or an
/// operator used to reloading a master) is logged and ignored: the worker keeps running its builds.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let hup_message = "SIGHUP received: ignored (a worker has nothing to reload; restart it to read a changed config)";
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::warn!("{hup_message}"),
        }
    }
    tracing::info!("stopping: ending running commands");
    stop.cancel();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::warn!("{hup_message}"),
        }
    }
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(colour(true, None));
        assert!(colour(true, empty));
        assert!(!colour(true, set));
        assert!(!colour(false, None));
    }
}
