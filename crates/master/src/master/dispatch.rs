//! The dispatcher: whenever something may have changed (a request arrived, a worker connected or was unpaused, a
//! build ended, a lock was released) it gathers the queue's state, lets `queue::plan` decide which requests start
//! on which workers, then takes their locks, claims them in the store and starts their builds; and it finishes
//! builds in the store (a RETRY is unclaimed, anything else completes the request and maybe its buildset).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{lock, Inner, Master, Running, IDLE_RESCAN};
use crate::build::{self, BuildJob};
use crate::config::BuilderDef;
use crate::queue::locks::LockGuard;
use crate::queue::plan::{plan, plan_with_reasons, PendingBuilder, Waiting, WorkerState};
use crate::results::{name as result_name, EXCEPTION, RETRY};
use crate::store::{BuildRequest, StoreError};

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
    let Some(queue) = gather(inner).await? else { return Ok(()) };
    let builders = inner.builders();
    for assignment in plan(&queue.pending, &queue.workers, &inner.locks.snapshot()) {
        if inner.shutting_down.is_cancelled() {
            return Ok(());
        }
        let Some((builderid, def)) = builders.get(&assignment.builder) else { continue };
        // The locks first: a step may have taken one since the plan was made.
        let Some(locks) = inner.locks.try_acquire(&def.locks, &assignment.worker) else { continue };
        if !inner.store.claim_requests(&[assignment.brid], inner.masterid).await? {
            continue;
        }
        start_build(inner, *builderid, def.clone(), assignment.brid, &assignment.worker, locks).await?;
    }
    Ok(())
}

/// What the queue's plan needs: the builders with pending requests, and the connected workers' state.
struct Gathered {
    pending: Vec<PendingBuilder>,
    workers: BTreeMap<String, WorkerState>,
    /// The paused workers and why.
    paused: BTreeMap<String, Option<String>>,
}

/// Reads the queue's state; `None` when no request is pending.
async fn gather(inner: &Inner) -> Result<Option<Gathered>, StoreError> {
    let mut pending = Vec::new();
    for (name, (id, def)) in inner.builders().iter() {
        let requests = inner.store.unclaimed_requests(*id).await?;
        if !requests.is_empty() {
            let (workers, locks) = (def.workers.clone(), def.locks.clone());
            pending.push(PendingBuilder { name: name.clone(), requests, workers, locks });
        }
    }
    if pending.is_empty() {
        return Ok(None);
    }
    let paused = inner.store.paused_workers().await?;
    let workers = {
        let running = lock(&inner.running);
        inner
            .config()
            .workers
            .iter()
            .filter(|w| inner.workers.connected(&w.name).is_some_and(|c| !c.is_closed()))
            .map(|w| {
                let state = WorkerState {
                    running: running.values().filter(|r| r.worker == w.name).count(),
                    max_builds: inner.workers.account(&w.name).and_then(|a| a.max_builds),
                    paused: paused.contains_key(&w.name),
                };
                (w.name.clone(), state)
            })
            .collect()
    };
    Ok(Some(Gathered { pending, workers, paused }))
}

/// A request waiting in the queue, and why it waits.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingRequest {
    pub request: BuildRequest,
    pub builder: String,
    pub waiting: Waiting,
    /// Why it waits, for people: the workers, their pause reasons, the builds holding the lock.
    pub why: String,
}

impl Master {
    /// The requests waiting in this master's queue, in the order they would be served, each with why it waits.
    pub async fn queue(&self) -> Result<Vec<WaitingRequest>, StoreError> {
        let inner = &self.inner;
        let Some(queue) = gather(inner).await? else { return Ok(Vec::new()) };
        let plan = plan_with_reasons(&queue.pending, &queue.workers, &inner.locks.snapshot());
        let requests: HashMap<i64, (&PendingBuilder, &BuildRequest)> =
            queue.pending.iter().flat_map(|b| b.requests.iter().map(move |r| (r.id, (b, r)))).collect();
        let starting = plan.assignments.iter().map(|a| (a.brid, Waiting::Starting));
        let mut queued = Vec::new();
        for (brid, waiting) in starting.chain(plan.waiting) {
            let Some((builder, request)) = requests.get(&brid) else { continue };
            let why = self.describe(&waiting, &queue);
            queued.push(WaitingRequest { request: (*request).clone(), builder: builder.name.clone(), waiting, why });
        }
        Ok(queued)
    }

    fn describe(&self, waiting: &Waiting, queue: &Gathered) -> String {
        match waiting {
            Waiting::Starting => "a worker is free: starting".to_string(),
            Waiting::NoWorker { workers } => format!("no worker connected (its workers: {})", workers.join(", ")),
            Waiting::Paused { workers } => {
                let paused: Vec<String> = workers
                    .iter()
                    .map(|name| match queue.paused.get(name).cloned().flatten() {
                        Some(reason) => format!("{name} ({reason})"),
                        None => name.clone(),
                    })
                    .collect();
                format!("its connected workers are paused: {}", paused.join(", "))
            }
            Waiting::Busy { workers } => {
                let busy: Vec<String> = workers
                    .iter()
                    .map(|name| {
                        let state = queue.workers.get(name);
                        let running = state.map_or(0, |s| s.running);
                        match state.and_then(|s| s.max_builds) {
                            Some(max) => format!("{name} ({running} of {max} builds)"),
                            None => format!("{name} ({running} builds)"),
                        }
                    })
                    .collect();
                format!("all its workers are busy: {}", busy.join(", "))
            }
            Waiting::Lock { lock: name } => {
                let running = lock(&self.inner.running);
                let mut holders: Vec<String> = running
                    .iter()
                    .filter(|(_, r)| {
                        self.inner
                            .builders()
                            .get(&r.builder)
                            .is_some_and(|(_, def)| def.locks.iter().any(|l| &l.name == name))
                    })
                    .map(|(buildid, r)| format!("build {buildid} of {}", r.builder))
                    .collect();
                holders.sort();
                match holders.is_empty() {
                    true => format!("waiting for lock '{name}' (held by a step)"),
                    false => format!("waiting for lock '{name}', held by {}", holders.join(", ")),
                }
            }
        }
    }
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
    let reporters = inner.reporters();
    let decide = |facts: &crate::model::BuildFacts| reporters.decide_started(facts);
    let decide: Option<crate::store::Decide<'_>> = (!reporters.is_empty()).then_some(&decide);
    let (buildid, number) = inner.store.add_build_notifying(builderid, brid, workerid, inner.masterid, decide).await?;
    reporters.wake();
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
        let secrets = inner.secrets();
        let job =
            BuildJob { store: inner.store.clone(), conn, builder, buildid, number, brid, stop, master, locks, secrets };
        let ended = match build::run(&job).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(buildid, error = %e, "the build could not be recorded");
                build::Ended::with(EXCEPTION)
            }
        };
        let mut result = ended.result;
        if inner.shutting_down.is_cancelled() && job.stop.is_cancelled() {
            // Stopped by the master's own shutdown, not by a person: it runs again at the next start.
            result = RETRY;
        }
        let state_string = ended.state_string(result);
        if let Err(e) = finish_build(&inner, buildid, brid, result, &state_string).await {
            tracing::error!(buildid, error = %e, "finishing the build in the store failed");
        }
        tracing::info!(builder = %job.builder.name, number, buildid, result = result_name(result).unwrap_or("?"), "build finished");
        lock(&inner.running).remove(&buildid);
        drop(builder_locks);
        inner.wake.notify_one();
    });
    Ok(())
}

async fn finish_build(
    inner: &Inner,
    buildid: i64,
    brid: i64,
    result: i32,
    state_string: &str,
) -> Result<(), StoreError> {
    let reporters = inner.reporters();
    if reporters.is_empty() {
        inner.store.finish_build_as(buildid, result, Some(state_string)).await?;
    } else {
        // The failing step's last lines are read first (the steps have ended); the decision itself runs in the
        // transaction that stores the result.
        let tail = reporters.log_tail(&inner.store, buildid).await.unwrap_or_else(|e| {
            tracing::warn!(buildid, error = %e, "reading the failing step's log for the reporters failed");
            None
        });
        let decide = |facts: &crate::model::BuildFacts| reporters.decide_finished(facts, tail.as_ref());
        inner.store.finish_build_notifying(buildid, result, Some(state_string), Some(&decide)).await?;
        reporters.wake();
    }
    if result == RETRY {
        inner.store.unclaim_requests(&[brid], inner.masterid).await
    } else {
        complete_requests(inner, brid, result).await
    }
}

/// Completes request `brid` (the store tells the subscribers, and about the buildset it completes, if it does).
pub(super) async fn complete_requests(inner: &Inner, brid: i64, result: i32) -> Result<(), StoreError> {
    let reporters = inner.reporters();
    let request = |facts: &crate::model::BuildFacts| reporters.decide_request_ended(facts);
    let buildset = |facts: &crate::model::BuildsetFacts| reporters.decide_buildset(facts);
    let decide = if reporters.is_empty() {
        crate::store::CompletionDecide::default()
    } else {
        crate::store::CompletionDecide { request: Some(&request), buildset: Some(&buildset) }
    };
    let completed = inner.store.complete_requests_notifying(&[brid], result, decide).await?;
    reporters.wake();
    for completed in completed.unwrap_or_default() {
        tracing::info!(
            buildset = completed.bsid,
            result = result_name(completed.results).unwrap_or("?"),
            "buildset complete"
        );
    }
    Ok(())
}
