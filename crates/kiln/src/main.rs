//! The `kiln` command line. It parses arguments and calls into the library crates; no logic of its own.

mod client;
mod demo;
mod force_cmd;
mod master_cmd;
mod master_lock;
mod reconfig_cmd;
mod sendchange_cmd;
mod service;
mod test_reporter_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Kiln: a continuous-integration master and its workers, compatible with Buildbot's worker protocol.
#[derive(Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// How the log on stderr is written: text (coloured only on a terminal, never with NO_COLOR) or json.
    #[arg(long, global = true, value_enum, default_value_t = kiln_worker::cli::LogFormat::Text)]
    log_format: kiln_worker::cli::LogFormat,
}

#[derive(Subcommand)]
enum Commands {
    /// Run a demo: a master, a local worker, a sample repository and a first build.
    Demo {
        /// Exit after the first build, with its result as the exit code.
        #[arg(long)]
        once: bool,
        /// Where the demo's web API listens.
        #[arg(long, default_value = "127.0.0.1:8010")]
        web: String,
    },
    /// Create a master directory with a commented sample master.toml.
    CreateMaster { dir: PathBuf },
    /// Run a master in the foreground (SIGTERM/SIGINT stop it; SIGUSR1 stops it after its running builds, and a
    /// SIGTERM/SIGINT then stops it at once; SIGHUP reloads master.toml, as `kiln reconfig` does). One master per directory.
    Start { dir: PathBuf },
    /// Stop the master running in DIR.
    Stop {
        dir: PathBuf,
        /// Let running builds finish first (no new build starts); a plain `kiln stop` meanwhile stops at once.
        #[arg(long)]
        clean: bool,
        /// Seconds to wait for the master to exit.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Check DIR/master.toml and report every problem with file, line and key.
    Checkconfig { dir: PathBuf },
    /// Reload DIR/master.toml into the running master (as SIGHUP does) and print what changed; a config with a
    /// problem, or one that changes what needs a restart, is refused and the running one stays.
    Reconfig {
        dir: PathBuf,
        /// Seconds to wait for the master's answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Print when each nightly scheduler of DIR/master.toml fires: `<date-time with offset> <scheduler> <builders>`.
    SchedulePreview {
        dir: PathBuf,
        /// First day (YYYY-MM-DD, from midnight UTC); default: now.
        #[arg(long)]
        from: Option<String>,
        /// How many days to show.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Force a build of BUILDER on a running master.
    Force {
        builder: String,
        /// The master's web URL, e.g. http://127.0.0.1:8010/
        #[arg(long)]
        master: String,
        /// The force scheduler to use (default: force-BUILDER).
        #[arg(long)]
        scheduler: Option<String>,
        #[arg(long, default_value = "forced from the command line")]
        reason: String,
        /// A build property, NAME=VALUE (repeatable); a parameter of the scheduler's form gets its type there.
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// The branch to build (the source stamp's).
        #[arg(long)]
        branch: Option<String>,
        /// The revision to build (the source stamp's).
        #[arg(long)]
        revision: Option<String>,
        /// Follow the build, printing its logs; exit 0 on SUCCESS or WARNINGS, 1 otherwise.
        #[arg(long)]
        wait: bool,
        /// An API token of a user who may force (`kiln token create`).
        #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Read a password on standard input and print its argon2 hash, for a `[[user]]`'s `password_hash`.
    HashPassword,
    /// Print a systemd unit for the master or a worker of DIR (docs/operations.md: installing it).
    SystemdUnit {
        /// `master` or `worker`.
        kind: String,
        dir: PathBuf,
        /// The account the service runs as.
        #[arg(long, default_value = "kiln")]
        user: String,
    },
    /// Send one notice of reporter NAME of DIR/master.toml now (about build ID, or a made-up failed build) and
    /// print what the server answered; exit 1 if it was not sent.
    TestReporter {
        dir: PathBuf,
        name: String,
        /// The build (its id in the master's store) to report on.
        #[arg(long)]
        build: Option<i64>,
    },
    /// Send a change to a running master's `change_hook/base` (needs `[change_hooks.base]`); prints its id.
    Sendchange(sendchange_cmd::SendchangeArgs),
    /// Create and run workers.
    #[command(subcommand)]
    Worker(kiln_worker::cli::WorkerCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
}

pub(crate) fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not NAME=VALUE")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The master's log censors the secrets in use and the credentials of URLs.
    kiln_worker::cli::init_logging_with(cli.log_format, kiln_master::secrets::log::LogLine::default);
    let outcome = match cli.command {
        Commands::Demo { once, web } => demo::run(demo::DemoArgs { once, web }),
        Commands::CreateMaster { dir } => master_cmd::create_master(&dir).map(|()| true),
        Commands::Start { dir } => master_cmd::start(&dir).map(|()| true),
        Commands::Stop { dir, clean, timeout } => {
            master_cmd::stop(&dir, clean, Duration::from_secs(timeout)).map(|()| true)
        }
        Commands::Checkconfig { dir } => master_cmd::checkconfig(&dir).map(|()| true),
        Commands::Reconfig { dir, timeout } => {
            reconfig_cmd::reconfig(&dir, Duration::from_secs(timeout)).map(|()| true)
        }
        Commands::SchedulePreview { dir, from, days } => {
            master_cmd::schedule_preview(&dir, from.as_deref(), days).map(|()| true)
        }
        Commands::Force { builder, master, scheduler, reason, mut properties, branch, revision, wait, token } => {
            properties.extend(branch.map(|b| ("branch".to_string(), b)));
            properties.extend(revision.map(|r| ("revision".to_string(), r)));
            force_cmd::run(force_cmd::ForceArgs { master, builder, scheduler, reason, properties, wait, token })
        }
        Commands::HashPassword => client::hash_password().map(|()| true),
        Commands::SystemdUnit { kind, dir, user } => service::unit(&kind, &dir, &user).map(|unit| {
            print!("{unit}");
            true
        }),
        Commands::Sendchange(args) => sendchange_cmd::run(args).map(|()| true),
        Commands::TestReporter { dir, name, build } => test_reporter_cmd::run(&dir, &name, build),
        Commands::Worker(command) => kiln_worker::cli::run(command).map(|()| true),
        Commands::Client(command) => client::run(command),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kiln: {e:#}");
            ExitCode::from(2)
        }
    }
}
