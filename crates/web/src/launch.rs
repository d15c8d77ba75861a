//! A master with its web server: what `kiln start`, `kiln demo` and the tests start, so they all run the same
//! services.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::master::Master;

/// A master with its web API (which runs until the `stop` given to [`launch`]).
pub struct RunningMaster {
    pub master: Master,
    pub web_address: SocketAddr,
    pub worker_address: SocketAddr,
}

/// Starts the master of `dir` and its web API.
pub async fn launch(dir: &Path, stop: CancellationToken) -> anyhow::Result<RunningMaster> {
    let (master, addresses) = Master::start(dir).await?;
    let web = master.config().web.address;
    let listener =
        tokio::net::TcpListener::bind(web).await.with_context(|| format!("listening for the web API on {web}"))?;
    let web_address = listener.local_addr()?;
    let server = master.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::web::serve(listener, server, stop).await {
            tracing::error!(error = %e, "the web server stopped");
        }
    });
    Ok(RunningMaster { master, web_address, worker_address: addresses.workers })
}
