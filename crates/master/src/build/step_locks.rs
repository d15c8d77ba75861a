//! A step's locks: taken before its command runs, held until it ends. While it waits for them the step says so,
//! in its state and in its log.

use tokio_util::sync::CancellationToken;

use super::logs::StepLogs;
use super::BuildJob;
use crate::config::{LockAccess, LockUse};
use crate::queue::locks::LockGuard;
use crate::store::StoreError;

/// Takes the step's `uses` on the build's worker, waiting in line if they are taken (the step then says so, and
/// says `running` again once it has them). `None` if the build is stopped while it waits.
pub(super) async fn acquire(
    job: &BuildJob,
    stepid: i64,
    uses: &[LockUse],
    running: &str,
    logs: &mut StepLogs<'_>,
    stop: &CancellationToken,
) -> Result<Option<LockGuard>, StoreError> {
    let worker = job.conn.name.as_str();
    if let Some(guard) = job.locks.try_acquire(uses, worker) {
        return Ok(Some(guard));
    }
    let names: Vec<String> = uses
        .iter()
        .map(|u| match u.access {
            LockAccess::Exclusive => format!("{} (exclusive)", u.name),
            LockAccess::Counting => format!("{} ({})", u.name, u.count),
        })
        .collect();
    job.store.set_step_state(stepid, "waiting for locks").await?;
    logs.header(&format!("waiting for locks: {}\n", names.join(", "))).await?;
    let guard = tokio::select! {
        guard = job.locks.acquire(uses, worker) => guard,
        () = stop.cancelled() => {
            logs.header("stopped while waiting for locks\n").await?;
            return Ok(None);
        }
    };
    logs.header("locks acquired\n").await?;
    job.store.set_step_state(stepid, running).await?;
    Ok(Some(guard))
}
