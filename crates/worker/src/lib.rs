//! The Kiln worker: connects to a master (Kiln's, or Buildbot's with `msgpack_experimental_v7`), runs the
//! commands it is sent — shell commands, file operations, transfers — and streams their output back.
//!
//! The worker decides nothing: it knows no builds, no store and no web; it executes. It reconnects by itself
//! with a capped, jittered backoff, and a lost connection stops every command it was running, so that no
//! process of a build outlives the build. A worker that is killed cannot stop them: on Linux each command's
//! first process dies with it, and when it starts again it kills what its commands left (`leftovers`); it is
//! also its commands' subreaper (`reaper`).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let config = kiln_worker::WorkerConfig::load(std::path::Path::new("/srv/worker"))?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! kiln_worker::run(config, stop).await
//! # }
//! ```

mod buffer;
pub mod cli;
mod commands;
mod config;
mod connection;
mod info;
mod leftovers;
mod lines;
mod link;
mod process;
mod reaper;
mod session;
mod updates;

pub use config::{create, ConfigError, NewWorker, WorkerConfig, CONFIG_FILE};
pub use connection::ConnectError;
pub use tokio_util::sync::CancellationToken;

use std::time::Duration;

use connection::Backoff;
use session::SessionEnd;

/// A session that lasted this long counts as a success: the next failure starts the backoff over. So does a
/// session on which the master attached the worker, however short: a master that is restarted (or killed and
/// started again) is reached again within the first step of the backoff, not after a wait grown by its restarts.
const STABLE: Duration = Duration::from_secs(10);

/// Runs the worker until `stop` is cancelled or the master sends `shutdown`.
pub async fn run(config: WorkerConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let tls = connection::tls_connector(&config)?;
    let mut backoff = Backoff::new(config.max_retry_delay());
    // Before the first connection: what a killed worker left running must not run beside new builds.
    leftovers::Records::new(&config.basedir).kill_leftovers();
    reaper::start();
    tracing::info!(master = %config.url(), name = %config.name, basedir = %config.basedir.display(), "worker starting");
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            attempt = connection::connect(&config, tls.clone()) => attempt,
        };
        match attempt {
            Ok(socket) => {
                tracing::info!(master = %config.url(), "connected to the master");
                let started = tokio::time::Instant::now();
                let (end, attached) = session::serve(socket, &config, &stop).await;
                match end {
                    SessionEnd::Stopped => return Ok(()),
                    SessionEnd::ShutdownByMaster => return Ok(()),
                    SessionEnd::Lost(why) => tracing::warn!(%why, "lost the connection to the master"),
                }
                if attached || started.elapsed() >= STABLE {
                    backoff.reset();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to the master"),
        }
        let delay = backoff.next_delay();
        tracing::info!(?delay, "reconnecting");
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}
