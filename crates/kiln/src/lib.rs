//! The pieces of the `kiln` command line that its two binaries share: `kiln` (master, worker and client
//! commands) and `kiln-worker` (the worker alone, a small binary for worker machines).

pub mod worker_cmd;

/// Logs to stderr; `RUST_LOG` sets the level (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
