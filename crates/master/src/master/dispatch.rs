//! The dispatcher: whenever something may have changed (a request arrived, a worker connected or was unpaused, a
//! build ended, a lock was released) it gathers the queue's state, lets `queue::plan` decide which requests start
//! on which workers, then takes their locks, claims them in the store and starts their builds; and it finishes
//! builds in the store (a RETRY is unclaimed, anything else completes the request and maybe its buildset).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{lock, Inner, Master, Running, IDLE_RESCAN};
use crate::build::{self, BuildJob};
use crate::config::BuilderDef;
use crate::queue::locks::LockGuard;
use crate::queue::plan::{plan, PendingBuilder, WorkerState};
use crate::results::{name as result_name, EXCEPTION, RETRY};
use crate::store::StoreError;

/// Starts builds whenever something may have changed: a request arrived, a worker connected, a build ended.
pub(super) async fn dispatch_loop(inner: Arc<Inner>) {
    let mut events = inner.workers.subscribe();
    let mut released = inner.locks.subscribe();
    loop {
        if inner.shutting_down.is_cancelled() {
            return;
        }
        if let Err(e) = dispatch_once(&inner).await {
            tracing::error!(error = %e, "dispatching build requests failed");
        }
        tokio::select! {
            () = inner.wake.notified() => {}
            _ = events.recv() => {}
            _ = released.changed() => {}
            () = tokio::time::sleep(IDLE_RESCAN) => {}
            () = inner.shutting_down.cancelled() => return,
        }
    }
}

/// One pass over the queue: gathers the pending requests, the workers and the locks, lets the queue plan which
/// requests start where, then claims and starts them.
async fn dispatch_once(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let mut pending = Vec::new();
    for (name, (id, def)) in &inner.builders {
        let requests = inner.store.unclaimed_requests(*id).await?;
        if !requests.is_empty() {
            let (workers, locks) = (def.workers.clone(), def.locks.clone());
            pending.push(PendingBuilder { name: name.clone(), requests, workers, locks });
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let paused = inner.store.paused_workers().await?;
    let workers = {
        let running = lock(&inner.running);
        inner
            .config
            .workers
            .iter()
            .filter(|w| inner.workers.connected(&w.name).is_some_and(|c| !c.is_closed()))
            .map(|w| {
                let state = WorkerState {
                    running: running.values().filter(|r| r.worker == w.name).count(),
                    max_builds: inner.workers.account(&w.name).and_then(|a| a.max_builds),
                    paused: paused.contains(&w.name),
                };
                (w.name.clone(), state)
            })
            .collect()
    };
    for assignment in plan(&pending, &workers, &inner.locks.snapshot()) {
        if inner.shutting_down.is_cancelled() {
            return Ok(());
        }
        let Some((builderid, def)) = inner.builders.get(&assignment.builder) else { continue };
        // The locks first: a step may have taken one since the plan was made.
        let Some(locks) = inner.locks.try_acquire(&def.locks, &assignment.worker) else { continue };
        if !inner.store.claim_requests(&[assignment.brid], inner.masterid).await? {
            continue;
        }
        start_build(inner, *builderid, def.clone(), assignment.brid, &assignment.worker, locks).await?;
    }
    Ok(())
}

async fn start_build(
    inner: &Arc<Inner>,
    builderid: i64,
    builder: Arc<BuilderDef>,
    brid: i64,
    worker: &str,
    builder_locks: LockGuard,
) -> Result<(), StoreError> {
    let Some(conn) = inner.workers.connected(worker) else {
        inner.store.unclaim_requests(&[brid], inner.masterid).await?;
        return Ok(());
    };
    let workerid = inner.store.find_or_add_worker(worker).await?;
    let (buildid, number) = inner.store.add_build(builderid, brid, workerid, inner.masterid).await?;
    let stop = CancellationToken::new();
    lock(&inner.running).insert(
        buildid,
        Running { builder: builder.name.clone(), worker: worker.to_string(), brid, stop: stop.clone() },
    );
    tracing::info!(builder = %builder.name, number, buildid, worker, "build started");
    let inner = inner.clone();
    inner.builds.clone().spawn(async move {
        let master: Arc<dyn build::MasterHandle> = Arc::new(Master { inner: inner.clone() });
        let locks = inner.locks.clone();
        let job = BuildJob { store: inner.store.clone(), conn, builder, buildid, number, brid, stop, master, locks };
        let mut result = match build::run(&job).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(buildid, error = %e, "the build could not be recorded");
                EXCEPTION
            }
        };
        if inner.shutting_down.is_cancelled() && job.stop.is_cancelled() {
            // Stopped by the master's own shutdown, not by a person: it runs again at the next start.
            result = RETRY;
        }
        if let Err(e) = finish_build(&inner, buildid, brid, result).await {
            tracing::error!(buildid, error = %e, "finishing the build in the store failed");
        }
        tracing::info!(builder = %job.builder.name, number, buildid, result = result_name(result).unwrap_or("?"), "build finished");
        lock(&inner.running).remove(&buildid);
        drop(builder_locks);
        inner.wake.notify_one();
    });
    Ok(())
}

async fn finish_build(inner: &Inner, buildid: i64, brid: i64, result: i32) -> Result<(), StoreError> {
    inner.store.finish_build(buildid, result).await?;
    if result == RETRY {
        inner.store.unclaim_requests(&[brid], inner.masterid).await
    } else {
        complete_requests(inner, brid, result).await
    }
}

/// Completes request `brid` and tells the subscribers about the buildset it completes, if it does.
pub(super) async fn complete_requests(inner: &Inner, brid: i64, result: i32) -> Result<(), StoreError> {
    for completed in inner.store.complete_requests_reporting(&[brid], result).await?.unwrap_or_default() {
        tracing::info!(
            buildset = completed.bsid,
            result = result_name(completed.results).unwrap_or("?"),
            "buildset complete"
        );
        // No subscriber is not an error.
        let _ = inner.buildsets.send(completed);
    }
    Ok(())
}
