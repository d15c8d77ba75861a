//! The running master: the config, the store, the worker port, the queue's dispatcher and the running
//! builds, with the actions people take (force, stop, rebuild, cancel).
//!
//! Every action writes to the store first; the dispatcher then reads the store. A master killed at any point
//! and started again finishes the builds it left running as RETRY and runs their requests again.

mod build_handle;
mod dispatch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::changes::git_poller::GitPoller;
use crate::changes::release_poller::ReleasePoller;
use crate::changes::NewChange;
use crate::config::ChangeSourceDef;
use crate::config::{BuilderDef, DependentSchedulerDef, MasterConfig, StoreUrl, SubmitDef, TimedSchedulerDef};
use crate::events::Event;
use crate::queue::collapse::{collapsed_by, QueuedRequest, Stamp};
use crate::queue::locks::Locks;
use crate::results::CANCELLED;
use crate::schedulers::timed::{self, Clock};
use crate::schedulers::{dependent, force, on_change};
use crate::store::{Change, NewBuildset, Property, SourceStamp, StateWrite, Store, StoreError};
use crate::workers::{Liveness, WorkerAccount, Workers};
pub use dispatch::WaitingRequest;
use dispatch::{complete_requests, dispatch_loop};

pub use crate::model::Submitted;

/// How often the dispatcher looks at the queue even when nothing woke it (a safety net, not the mechanism).
const IDLE_RESCAN: Duration = Duration::from_secs(30);
/// On shutdown, how long running builds get to end (as RETRY) before the master exits anyway.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);
/// Changes kept for a subscriber that reads slower than they arrive (it then misses the oldest, never blocks;
/// schedulers read what they missed from the store).
const CHANGES_CAPACITY: usize = 1024;

/// An action refused, with the reason shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no builder named '{0}'")]
    UnknownBuilder(String),
    #[error("no force scheduler named '{0}'")]
    UnknownScheduler(String),
    #[error("no build {0}")]
    UnknownBuild(i64),
    #[error("no build request {0}")]
    UnknownRequest(i64),
    #[error("no worker named '{0}'")]
    UnknownWorker(String),
    #[error("build {0} is not running on this master")]
    NotRunning(i64),
    #[error(transparent)]
    InvalidParameter(#[from] force::ParameterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Running {
    builder: String,
    worker: String,
    brid: i64,
    stop: CancellationToken,
}

struct Inner {
    config: MasterConfig,
    store: Store,
    masterid: i64,
    workers: Workers,
    /// Builder name → (store id, definition).
    builders: HashMap<String, (i64, Arc<BuilderDef>)>,
    running: Mutex<HashMap<i64, Running>>,
    builds: TaskTracker,
    wake: Notify,
    /// The master's locks (`[[lock]]`), held by builds and steps.
    locks: Locks,
    /// Set when the master stops: builds stopped from then on end RETRY, and no new build starts.
    shutting_down: CancellationToken,
    /// Every stored change, in order, for the schedulers.
    changes: broadcast::Sender<Change>,
    /// The master's name in the store.
    name: String,
    /// The listeners' connection caps, as fitted under the file-descriptor limit at start.
    connection_limits: crate::connections::Fitted,
    /// The master's directory (its `master.toml`).
    dir: std::path::PathBuf,
}

/// A running master. Cheap to clone.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
}

/// Raises the file-descriptor limit and fits the listeners' caps under it.
fn fit_connection_limits(config: &MasterConfig) -> crate::connections::Fitted {
    use crate::connections::{fit, raise_fd_limit, Limits};
    let workers = Limits {
        max: config.worker_listener.max_connections,
        per_address: config.worker_listener.max_connections_per_address,
    };
    let web = Limits { max: config.web.max_connections, per_address: config.web.max_connections_per_address };
    let Some(fd_limit) = raise_fd_limit() else {
        return crate::connections::Fitted { workers, web, lowered: false };
    };
    let fitted = fit(fd_limit, workers, web);
    if fitted.lowered {
        tracing::warn!(
            fd_limit,
            worker_connections = fitted.workers.max,
            web_connections = fitted.web.max,
            "connection caps lowered to fit the file-descriptor limit"
        );
    }
    fitted
}

/// Where a started master listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub workers: std::net::SocketAddr,
}

impl Master {
    /// Starts a master from its directory's `master.toml`: opens the store (finishing builds a previous process
    /// left running as RETRY), listens for workers, and starts dispatching.
    pub async fn start(dir: &Path) -> anyhow::Result<(Master, Addresses)> {
        let config = MasterConfig::load(dir)?;
        Master::start_with(dir, config).await
    }

    pub async fn start_with(dir: &Path, config: MasterConfig) -> anyhow::Result<(Master, Addresses)> {
        use anyhow::Context;
        let url = match &config.store.url {
            StoreUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreUrl::Postgres(url) => url.clone(),
        };
        let store = Store::open(&url).await.with_context(|| format!("opening the store {url}"))?;
        let master_name = master_name(dir);
        let masterid = store.register_master(&master_name).await?;
        let cleanup = store.unclaim_and_retry_builds_of(masterid).await?;
        if cleanup.builds_retried > 0 || cleanup.requests_unclaimed > 0 {
            tracing::warn!(
                builds = cleanup.builds_retried,
                requests = cleanup.requests_unclaimed,
                "builds left running by the previous master process end RETRY; their requests run again"
            );
        }
        let mut builders = HashMap::new();
        for def in &config.builders {
            let id = store.find_or_add_builder(&def.name).await?;
            builders.insert(def.name.clone(), (id, Arc::new(def.clone())));
        }
        let mut workerids = HashMap::new();
        for worker in &config.workers {
            workerids.insert(worker.name.clone(), store.find_or_add_worker(&worker.name).await?);
        }
        let accounts = config
            .workers
            .iter()
            .map(|w| WorkerAccount {
                name: w.name.clone(),
                password: w.password.clone(),
                max_builds: w.max_builds.map(|m| m as usize),
                builder_dirs: config
                    .builders
                    .iter()
                    .filter(|b| b.workers.contains(&w.name))
                    .map(|b| b.builddir.clone())
                    .collect(),
            })
            .collect();
        let liveness =
            Liveness { interval: config.worker_listener.ping_interval, timeout: config.worker_listener.ping_timeout };
        let workers = Workers::new(accounts, liveness).publishing_on(store.events().clone(), workerids);
        let connection_limits = fit_connection_limits(&config);
        let listener = TcpListener::bind(config.worker_listener.address)
            .await
            .with_context(|| format!("listening for workers on {}", config.worker_listener.address))?;
        let worker_address = listener.local_addr()?;
        let tls = match &config.worker_listener.tls {
            Some(files) => Some(crate::tls::acceptor(&files.cert, &files.key)?),
            None => None,
        };
        let locks = config.locks.clone();
        let inner = Arc::new(Inner {
            config,
            store,
            masterid,
            workers: workers.clone(),
            builders,
            running: Mutex::default(),
            builds: TaskTracker::new(),
            wake: Notify::new(),
            locks: Locks::new(locks),
            shutting_down: CancellationToken::new(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
            name: master_name.clone(),
            connection_limits,
            dir: dir.to_path_buf(),
        });
        let port = crate::workers::WorkerPort {
            tls,
            limits: connection_limits.workers,
            handshake_timeout: inner.config.worker_listener.handshake_timeout,
        };
        tokio::spawn(crate::workers::serve(listener, port, workers, inner.shutting_down.clone()));
        tokio::spawn(dispatch_loop(inner.clone()));
        let master = Master { inner: inner.clone() };
        // A scheduler seen for the first time takes the changes stored from now on. Each subscribes before the
        // sources start, and reads from the store what it has not classified yet: no change goes by unseen.
        let start_after = inner.store.last_change_id().await?;
        for def in &inner.config.timed_schedulers {
            master.start_timed_scheduler(def.clone(), start_after);
        }
        master.start_change_schedulers(start_after);
        for def in &inner.config.dependent_schedulers {
            master.start_dependent_scheduler(def.clone());
        }
        for def in &inner.config.change_sources {
            master.start_change_source(def.clone(), dir);
        }
        inner.store.events().publish(Event::MasterStarted { masterid, name: master_name.clone() });
        tracing::info!(workers = %worker_address, name = %master_name, "master started");
        Ok((master, Addresses { workers: worker_address }))
    }

    /// Runs the on-change schedulers until the master stops (new ones take the changes after `start_after`).
    fn start_change_schedulers(&self, start_after: i64) {
        for def in &self.inner.config.change_schedulers {
            let master = self.clone();
            let (name, builders, priority) = (def.name.clone(), def.builders.clone(), def.priority);
            let stop = self.inner.shutting_down.clone();
            let (store, changes) = (self.inner.store.clone(), self.subscribe_changes());
            tokio::spawn(on_change::run(def.clone(), store, start_after, changes, stop, move |group, state| {
                let (master, name, builders) = (master.clone(), name.clone(), builders.clone());
                async move {
                    match master.submit_changes(&name, &builders, priority, &group, state).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(scheduler = %name, error = %e, "the scheduler could not submit");
                            false
                        }
                    }
                }
            }));
        }
    }

    /// Runs a change source until the master stops; what it finds is stored (and so reaches the schedulers).
    fn start_change_source(&self, def: ChangeSourceDef, dir: &Path) {
        let master = self.clone();
        let stop = self.inner.shutting_down.clone();
        let deliver = move |changes: Vec<crate::changes::NewChange>| {
            let master = master.clone();
            async move {
                for change in changes {
                    if let Err(e) = master.add_polled_change(change).await {
                        tracing::error!(error = %e, "storing a change failed; it will be found again");
                        return false;
                    }
                }
                true
            }
        };
        match def {
            ChangeSourceDef::Git(git) => {
                let interval = git.poll_interval;
                let poller = GitPoller::new(git, dir, self.inner.store.clone());
                tokio::spawn(crate::changes::run_poller(poller, interval, stop, deliver));
            }
            ChangeSourceDef::Package(package) => {
                let interval = package.poll_interval;
                let poller = ReleasePoller::new(package, self.inner.store.clone());
                tokio::spawn(crate::changes::run_poller(poller, interval, stop, deliver));
            }
        }
    }

    /// Submits a buildset for a scheduler's group of changes: the source stamp of the last one. `state` is
    /// stored in the buildset's transaction (what the scheduler keeps of what it submitted).
    async fn submit_changes(
        &self,
        scheduler: &str,
        builders: &[String],
        priority: Option<i32>,
        group: &[Change],
        state: Vec<StateWrite>,
    ) -> Result<(), ActionError> {
        let Some(last) = group.last() else { return Ok(()) };
        let reason = format!("The scheduler named '{scheduler}' triggered this build for {} change(s)", group.len());
        let buildset = NewBuildset {
            reason,
            priority,
            sourcestamps: vec![last.sourcestamp()],
            changeids: group.iter().map(|change| change.id).collect(),
            state,
            ..NewBuildset::default()
        };
        let submitted = self.submit_for(scheduler, builders, buildset).await?;
        tracing::info!(scheduler, buildset = submitted.buildsetid, changes = group.len(), "changes scheduled");
        Ok(())
    }

    /// Runs a timed scheduler until the master stops: each firing that builds submits a buildset for its
    /// builders (with the source stamp of the last change it classified, if it takes changes:
    /// `only_if_changed`; a new one takes the changes after `start_after`).
    fn start_timed_scheduler(&self, def: TimedSchedulerDef, start_after: i64) {
        let master = self.clone();
        let (name, builders, priority) = (def.name.clone(), def.builders.clone(), def.priority);
        let stop = self.inner.shutting_down.clone();
        let changes = def.only_if_changed.then(|| self.subscribe_changes().into());
        let store = self.inner.store.clone();
        tokio::spawn(timed::run(def, Clock::System, store, start_after, changes, stop, move |at, changes, state| {
            let (master, name, builders) = (master.clone(), name.clone(), builders.clone());
            async move {
                let submitted = if changes.is_empty() {
                    let reason = format!("The scheduler named '{name}' triggered this build at {}", at.to_rfc3339());
                    let buildset = NewBuildset { reason, priority, state, ..NewBuildset::default() };
                    master.submit_for(&name, &builders, buildset).await.map(|_| ())
                } else {
                    master.submit_changes(&name, &builders, priority, &changes, state).await
                };
                match submitted {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(scheduler = %name, error = %e, "the scheduler could not submit");
                        false
                    }
                }
            }
        }));
    }

    /// The listeners' connection caps in force (the config's, fitted under the file-descriptor limit).
    pub fn connection_limits(&self) -> crate::connections::Fitted {
        self.inner.connection_limits
    }

    /// The master's directory, where its `master.toml` is.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The master's name in the store.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn config(&self) -> &MasterConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn workers(&self) -> &Workers {
        &self.inner.workers
    }

    pub fn masterid(&self) -> i64 {
        self.inner.masterid
    }

    /// The store id of a builder.
    pub fn builder_id(&self, name: &str) -> Option<i64> {
        self.inner.builders.get(name).map(|(id, _)| *id)
    }

    /// Forces builds through the force scheduler `scheduler` (all its builders, or only `builder` of them), with
    /// the values of its form (see [`force::collect`]: `reason`, `owner`, `priority`, the source stamp fields and
    /// the typed parameters). Without a `priority` the requests get the scheduler's, else each builder's.
    pub async fn force(
        &self,
        scheduler: &str,
        builder: Option<&str>,
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Submitted, ActionError> {
        let def = self
            .inner
            .config
            .force_schedulers
            .iter()
            .find(|s| s.name == scheduler)
            .ok_or_else(|| ActionError::UnknownScheduler(scheduler.to_string()))?;
        let names: Vec<&String> = match builder {
            Some(one) => def.builders.iter().filter(|b| *b == one).take(1).collect(),
            None => def.builders.iter().collect(),
        };
        if names.is_empty() {
            return Err(ActionError::UnknownBuilder(builder.unwrap_or_default().to_string()));
        }
        let request = force::collect(def, values)?;
        let buildset = NewBuildset {
            reason: request.reason,
            properties: request.properties,
            priority: request.priority.or(def.priority),
            sourcestamps: request.sourcestamp.into_iter().collect(),
            ..NewBuildset::default()
        };
        self.submit_for(scheduler, &names, buildset).await
    }

    /// Submits `buildset` (reason, properties, source stamps…) from scheduler `scheduler` for the builders `names`.
    async fn submit_for<S: AsRef<str>>(
        &self,
        scheduler: &str,
        names: &[S],
        mut buildset: NewBuildset,
    ) -> Result<Submitted, ActionError> {
        for name in names {
            let name = name.as_ref();
            buildset
                .builderids
                .push(self.builder_id(name).ok_or_else(|| ActionError::UnknownBuilder(name.to_string()))?);
        }
        if let Some(submit) = self.inner.config.scheduler_submits.get(scheduler) {
            with_scheduler_defaults(&mut buildset, submit);
        }
        // The scheduler's own property wins over one of the same name (from a trigger step or a force form).
        buildset.properties.retain(|p| p.name != "scheduler");
        buildset.properties.push(Property {
            name: "scheduler".into(),
            value: serde_json::Value::String(scheduler.to_string()),
            source: "Scheduler".into(),
        });
        buildset.scheduler = Some(scheduler.to_string());
        let submitted = self.submit(buildset).await?;
        let bsid = submitted.buildsetid;
        self.inner.store.events().publish(Event::SchedulerFired { scheduler: scheduler.to_string(), bsid });
        Ok(submitted)
    }

    async fn submit(&self, mut new: NewBuildset) -> Result<Submitted, ActionError> {
        new.builder_priorities = self.inner.builders.values().map(|(id, def)| (*id, def.priority)).collect();
        let builderids = new.builderids.clone();
        let (buildsetid, brids) = self.inner.store.add_buildset(&new).await?;
        let requests: Vec<(i64, i64)> = builderids.into_iter().zip(brids).collect();
        for &(builderid, brid) in &requests {
            if let Err(e) = self.collapse_into(builderid, buildsetid, brid).await {
                // The new request stands; only the older ones it could have saved will run.
                tracing::error!(brid, error = %e, "collapsing older requests failed");
            }
        }
        self.inner.wake.notify_one();
        Ok(Submitted { buildsetid, requests })
    }

    /// Collapses the older queued requests of builder `builderid` that the new request `brid` covers.
    async fn collapse_into(&self, builderid: i64, buildsetid: i64, brid: i64) -> Result<(), StoreError> {
        let collapses = self.inner.builders.values().any(|(id, def)| *id == builderid && def.collapse_requests);
        if !collapses {
            return Ok(());
        }
        let store = &self.inner.store;
        let describe = |brid: i64, bsid: i64| async move {
            let stamps = store.buildset_stamps_with_changes(bsid).await?;
            let stamps = stamps.into_iter().map(|(sourcestamp, has_changes)| Stamp { sourcestamp, has_changes });
            let properties = store.buildset_properties(bsid).await?;
            Ok::<_, StoreError>(QueuedRequest::new(brid, bsid, stamps.collect(), &properties))
        };
        let new = describe(brid, buildsetid).await?;
        let mut queued = Vec::new();
        for request in store.unclaimed_requests(builderid).await? {
            if request.id != brid {
                queued.push(describe(request.id, request.buildsetid).await?);
            }
        }
        let skip = collapsed_by(&new, &queued);
        if !skip.is_empty() {
            let collapsed = store.collapse_requests(&skip, brid, self.inner.masterid).await?;
            tracing::info!(brid, ?collapsed, "older requests collapsed into a new one");
        }
        Ok(())
    }

    /// Stores a change, then tells the subscribers about it.
    pub async fn add_change(&self, change: NewChange) -> Result<Change, ActionError> {
        let id = self.inner.store.add_change(&change).await?;
        self.announce_change(id).await
    }

    /// Stores a change a poller found, unless the same commit (same source stamp) is stored already; then tells
    /// the subscribers. A poll repeated after a crash thus neither duplicates nor rebuilds a commit.
    pub async fn add_polled_change(&self, change: NewChange) -> Result<Option<Change>, ActionError> {
        match self.inner.store.add_change_once(&change).await? {
            Some(id) => self.announce_change(id).await.map(Some),
            None => {
                tracing::info!(revision = ?change.revision, branch = ?change.branch, "change already stored");
                Ok(None)
            }
        }
    }

    /// Stores the changes of one change hook request (`source`: the hook's dialect) together, unless the same
    /// `delivery` (the forge's delivery id) was stored before; then tells the subscribers. Returns the changes'
    /// ids (a redelivery's: those stored the first time).
    pub async fn add_hook_changes(
        &self,
        source: &str,
        delivery: Option<&str>,
        changes: &[NewChange],
    ) -> Result<Vec<i64>, ActionError> {
        let delivered = self.inner.store.add_delivered_changes(source, delivery, changes).await?;
        if delivered.repeated {
            tracing::info!(source, delivery, changes = ?delivered.ids, "a delivery stored before: nothing added");
            return Ok(delivered.ids);
        }
        for &id in &delivered.ids {
            // Stored is what counts: a scheduler that is not told reads the change from the store.
            if let Err(e) = self.announce_change(id).await {
                tracing::warn!(changeid = id, error = %e, "a stored change could not be announced");
            }
        }
        Ok(delivered.ids)
    }

    async fn announce_change(&self, id: i64) -> Result<Change, ActionError> {
        let change = self.inner.store.change(id).await?.ok_or(StoreError::NotFound { what: "change", id })?;
        tracing::info!(changeid = id, revision = ?change.revision, branch = ?change.branch, "change added");
        // No subscriber is not an error; a lagging one misses old changes but does not hold this up (schedulers
        // read what they missed from the store).
        let _ = self.inner.changes.send(change.clone());
        Ok(change)
    }

    /// Submits a buildset through the triggerable scheduler `scheduler` (for its builders), as a trigger step does.
    pub async fn trigger(&self, scheduler: &str, buildset: NewBuildset) -> Result<Submitted, ActionError> {
        let def = self
            .inner
            .config
            .triggerable_schedulers
            .iter()
            .find(|s| s.name == scheduler)
            .ok_or_else(|| ActionError::UnknownScheduler(scheduler.to_string()))?;
        self.submit_for(scheduler, &def.builders, buildset).await
    }

    /// Runs a dependent scheduler until the master stops (see [`dependent::run`]).
    fn start_dependent_scheduler(&self, def: DependentSchedulerDef) {
        let master = self.clone();
        let completed = self.inner.store.events().subscribe();
        let stop = self.inner.shutting_down.clone();
        let (name, builders) = (def.name.clone(), def.builders.clone());
        tokio::spawn(dependent::run(def, self.inner.store.clone(), completed, stop, move |buildset| {
            let (master, name, builders) = (master.clone(), name.clone(), builders.clone());
            async move {
                if let Err(e) = master.submit_for(&name, &builders, buildset).await {
                    tracing::error!(scheduler = %name, error = %e, "the scheduler could not submit");
                }
            }
        }));
    }

    /// Cancelled when the master begins to stop (cleanly or not).
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.shutting_down
    }

    /// The changes stored from now on, in order.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Stops a running build: its command is interrupted and it ends CANCELLED.
    pub fn stop_build(&self, buildid: i64) -> Result<(), ActionError> {
        let running = lock(&self.inner.running);
        let build = running.get(&buildid).ok_or(ActionError::NotRunning(buildid))?;
        tracing::info!(buildid, builder = %build.builder, "stopping build");
        build.stop.cancel();
        Ok(())
    }

    /// Runs a build's request again, as a new buildset with the same properties and source stamps.
    pub async fn rebuild(&self, buildid: i64) -> Result<Submitted, ActionError> {
        let store = &self.inner.store;
        let build = store.build(buildid).await?.ok_or(ActionError::UnknownBuild(buildid))?;
        let request = store
            .build_request(build.buildrequestid)
            .await?
            .ok_or(ActionError::UnknownRequest(build.buildrequestid))?;
        let buildset = store.buildset(request.buildsetid).await?;
        let properties = store.buildset_properties(request.buildsetid).await?;
        let sourcestamps = store.buildset_sourcestamps(request.buildsetid).await?;
        let changeids = store.buildset_change_ids(request.buildsetid).await?;
        self.submit(NewBuildset {
            reason: format!("rebuild of build {buildid}"),
            external_idstring: None,
            scheduler: buildset.and_then(|b| b.scheduler),
            parent_buildid: None,
            properties,
            builderids: vec![build.builderid],
            priority: Some(request.priority),
            waited_for: false,
            sourcestamps,
            changeids,
            ..NewBuildset::default()
        })
        .await
    }

    /// Cancels a build request: a queued one ends CANCELLED; one that is running has its build stopped.
    pub async fn cancel_request(&self, brid: i64) -> Result<(), ActionError> {
        let store = &self.inner.store;
        let request = store.build_request(brid).await?.ok_or(ActionError::UnknownRequest(brid))?;
        if request.complete {
            return Ok(());
        }
        if store.claim_requests(&[brid], self.inner.masterid).await? {
            complete_requests(&self.inner, brid, CANCELLED).await?;
            let (bsid, builderid) = (request.buildsetid, request.builderid);
            store.events().publish(Event::BuildRequestCancelled { brid, bsid, builderid });
            return Ok(());
        }
        let buildid = lock(&self.inner.running).iter().find(|(_, r)| r.brid == brid).map(|(id, _)| *id);
        match buildid {
            Some(buildid) => self.stop_build(buildid),
            None => Ok(()),
        }
    }

    /// Pauses the worker `name`: no new build starts on it (running ones go on) until it is unpaused. Stored, so it
    /// stays paused across restarts of the master and of the worker.
    pub async fn pause_worker(&self, name: &str, reason: Option<&str>) -> Result<(), ActionError> {
        self.set_paused(name, true, reason).await
    }

    /// Lets builds start on the worker `name` again.
    pub async fn unpause_worker(&self, name: &str) -> Result<(), ActionError> {
        self.set_paused(name, false, None).await
    }

    async fn set_paused(&self, name: &str, paused: bool, reason: Option<&str>) -> Result<(), ActionError> {
        if !self.inner.config.workers.iter().any(|w| w.name == name) {
            return Err(ActionError::UnknownWorker(name.to_string()));
        }
        if !self.inner.store.set_worker_paused(name, paused, reason).await? {
            return Err(ActionError::UnknownWorker(name.to_string()));
        }
        tracing::info!(worker = name, paused, reason, "worker paused state changed");
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Ids of the builds running on this master.
    pub fn running_builds(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = lock(&self.inner.running).keys().copied().collect();
        ids.sort();
        ids
    }

    /// Stops the master. Without `clean`, running builds are stopped and end RETRY (their requests run again
    /// at the next start); with `clean`, no new build starts and the running ones are waited for.
    pub async fn shutdown(&self, clean: bool) {
        self.inner.shutting_down.cancel();
        if !clean {
            for running in lock(&self.inner.running).values() {
                running.stop.cancel();
            }
        }
        self.inner.builds.close();
        let wait = if clean { Duration::MAX } else { SHUTDOWN_WAIT };
        if tokio::time::timeout(wait, self.inner.builds.wait()).await.is_err() {
            tracing::warn!("builds still running at shutdown; they end RETRY at the next start");
        }
        for name in self.inner.workers.connected_names() {
            if let Some(conn) = self.inner.workers.connected(&name) {
                conn.close();
            }
        }
        let (masterid, name) = (self.inner.masterid, self.inner.name.clone());
        self.inner.store.events().publish(Event::MasterStopped { masterid, name });
        self.inner.store.close().await;
    }
}

/// Gives a buildset what its scheduler's config adds: the configured reason, the properties the buildset does not
/// set already, and a source stamp for each configured codebase it has none of.
fn with_scheduler_defaults(buildset: &mut NewBuildset, submit: &SubmitDef) {
    if let Some(reason) = &submit.reason {
        buildset.reason.clone_from(reason);
    }
    for (name, value) in &submit.properties {
        if !buildset.properties.iter().any(|p| &p.name == name) {
            buildset.properties.push(Property { name: name.clone(), value: value.clone(), source: "Scheduler".into() });
        }
    }
    for codebase in &submit.codebases {
        if !buildset.sourcestamps.iter().any(|s| s.codebase == codebase.codebase) {
            buildset.sourcestamps.push(SourceStamp {
                branch: codebase.branch.clone(),
                revision: codebase.revision.clone(),
                repository: codebase.repository.clone(),
                project: String::new(),
                codebase: codebase.codebase.clone(),
            });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A master's name in the store: host and directory, so two masters on one database are told apart.
fn master_name(dir: &Path) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", dir.display())
}
