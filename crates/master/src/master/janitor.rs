//! The janitor: every `[retention] interval` it empties the logs of builds that ended longer ago than their
//! builder's retention (`log_retention`, else `[retention] logs`, 90 days by default), then gives the freed pages
//! back to the file system, a few at a time. It reads the config in force at each pass, so a reconfig applies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Master;
use crate::store::{Expired, StoreError};

/// Chunks deleted per transaction: small enough that a build writing its log meanwhile waits very little.
const CHUNKS_PER_TRANSACTION: u32 = 256;
/// Pages given back per step of the vacuum (1 MiB at SQLite's default 4 KiB pages).
const PAGES_PER_VACUUM: u32 = 256;

/// Runs the janitor until the master stops; the first pass right away.
pub(super) async fn run(master: Master) {
    loop {
        match pass(&master).await {
            Ok(expired) if expired.builds > 0 => tracing::info!(
                builds = expired.builds,
                chunks = expired.chunks,
                bytes = expired.bytes,
                "log retention: emptied the logs of builds past their time"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "log retention: a pass failed; the next one goes on"),
        }
        let interval = master.config().retention.interval;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = master.stopping().cancelled() => return,
        }
    }
}

/// One pass over every configured builder.
async fn pass(master: &Master) -> Result<Expired, StoreError> {
    let config = master.config();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let mut expired = Expired::default();
    for (_, (builderid, def)) in master.inner.builders().iter() {
        let Some(kept) = def.logs_kept(&config.retention) else { continue };
        let cutoff = i64::try_from(now.saturating_sub(kept).as_secs()).unwrap_or(i64::MAX);
        if master.stopping().is_cancelled() {
            return Ok(expired);
        }
        expired.add(master.store().expire_logs(*builderid, cutoff, CHUNKS_PER_TRANSACTION).await?);
    }
    if expired.chunks > 0 {
        // Until nothing is free, or nothing more is given back (a store created without incremental vacuum).
        let mut free = i64::MAX;
        while !master.stopping().is_cancelled() {
            let left = master.store().vacuum_some(PAGES_PER_VACUUM).await?;
            if left == 0 || left >= free {
                break;
            }
            free = left;
        }
    }
    Ok(expired)
}
