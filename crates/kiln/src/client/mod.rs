//! The client commands: what people do with a running master from a terminal (list builders and builds, show
//! a build, print or follow its log, stop, rebuild, cancel, pause, the queue and why it waits), over its REST API.
//! Output for people by default, `--json` for scripts; see docs/cli.md for the exit codes.

mod api;
mod commands;
mod table;
mod tokens;
mod wakeups;

pub use api::Api;
pub use commands::{print_lines, run, ClientCommand};
pub use table::result;
pub use tokens::{hash_password, TokenCommand};
pub use wakeups::Wakeups;

/// Where the master is and how to talk to it: every client command takes these.
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// The master's web URL.
    #[arg(long, env = "KILN_MASTER", default_value = "http://127.0.0.1:8010/")]
    pub master: String,
    /// A token for the master's API (sent as a bearer token).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON (the API's objects) instead of text for people.
    #[arg(long)]
    pub json: bool,
}

impl Connection {
    pub fn api(&self) -> anyhow::Result<Api> {
        Api::new(&self.master, self.token.as_deref())
    }
}
