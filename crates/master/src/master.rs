//! The running master: the config, the store, the worker port, the queue's dispatcher and the running
//! builds, with the actions people take (force, stop, rebuild, cancel).
//!
//! Every action writes to the store first; the dispatcher then reads the store. A master killed at any point
//! and started again finishes the builds it left running as RETRY and runs their requests again.

mod build_handle;
mod dispatch;
mod janitor;
mod reconfig;
mod services;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::changes::NewChange;
use crate::config::{BuilderDef, ChangeSourceDef, MasterConfig, SubmitDef};
use crate::events::Event;
use crate::queue::collapse::{collapsed_by, QueuedRequest, Stamp};
use crate::queue::locks::Locks;
use crate::results::CANCELLED;
use crate::schedulers::force;
use crate::store::{Change, NewBuildset, Property, SourceStamp, StateWrite, Store, StoreError};
use crate::workers::{Liveness, WorkerAccount, Workers};
pub use dispatch::WaitingRequest;
use dispatch::{complete_requests, dispatch_loop};
pub use reconfig::{ReconfigError, Reconfigured};
use services::Services;

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
    #[error("no scheduler named '{0}'")]
    NoScheduler(String),
    #[error("the scheduler '{0}' is disabled (enable it on the schedulers page)")]
    SchedulerDisabled(String),
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

/// Builder name → (store id, definition).
type Builders = HashMap<String, (i64, Arc<BuilderDef>)>;

struct Inner {
    /// The configuration in force: replaced whole by a reconfig, so a reader sees one config or the other.
    config: RwLock<Arc<MasterConfig>>,
    /// The master's directory (change sources keep their state under it; a reconfig reads `master.toml` there).
    dir: PathBuf,
    store: Store,
    masterid: i64,
    workers: Workers,
    /// The configured builders, replaced with the config.
    builders: RwLock<Arc<Builders>>,
    /// The schedulers and change sources running, each stoppable on its own (by a reconfig).
    services: Mutex<Services>,
    /// Held while a reconfig runs: reconfigs apply one after the other.
    reconfiguring: tokio::sync::Mutex<()>,
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
    /// Change source name → what makes it poll now (the `poller` change hook); a source started by a reconfig
    /// gets its entry when it starts.
    poll_now: Mutex<HashMap<String, Arc<Notify>>>,
    /// Where builds (and reporters) fetch their secrets; replaced with the config.
    secrets: RwLock<crate::secrets::Providers>,
    /// The reporters: their decisions run in the store's build writes, their senders beside the master;
    /// replaced with the config.
    reporters: RwLock<Arc<crate::reporters::Reporters>>,
    /// The reporters' running senders.
    senders: crate::reporters::senders::Senders,
    /// The web port's TLS acceptor, reloaded by a reconfig.
    web_tls: Option<crate::tls::Reloadable>,
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

/// A change as it is stored: the credentials of its repository URL hidden (`https://user:***@host/repo`), so that
/// neither `/changes`, nor the buildsets and build properties made from it, show them. Steps fetch with their
/// own configured URL, which keeps its credentials.
fn without_credentials(mut change: NewChange) -> NewChange {
    if let std::borrow::Cow::Owned(hidden) = crate::secrets::redact_url_credentials(&change.repository) {
        change.repository = hidden;
    }
    change
}

/// What worker `name`'s password is checked against: a hash as configured, a password with its `%(secret:…)s`
/// forms fetched now (kept for the master's life, and censored from its log).
async fn worker_credential(
    secrets: &crate::secrets::Providers,
    name: &str,
    password: &crate::config::WorkerPassword,
) -> anyhow::Result<crate::workers::Credential> {
    use crate::config::WorkerPassword;
    use crate::workers::Credential;
    Ok(match password {
        WorkerPassword::Hash(hash) => Credential::Hash(hash.clone()),
        WorkerPassword::Text(text) if password.secret_names().is_empty() => Credential::Password(text.clone()),
        WorkerPassword::Text(text) => {
            let (rendered, fetched) = secrets
                .render(text.expose())
                .await
                .map_err(|e| anyhow::anyhow!("worker '{name}', key 'password': {e}"))?;
            // The worker's password stays censored from the master's log while the master runs.
            crate::secrets::log::censor_always(fetched.redactor().clone());
            Credential::Password(rendered)
        }
    })
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
        let url = &config.store.url;
        let store = Store::connect(url).await.with_context(|| format!("opening the store {url}"))?;
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
        let secrets = crate::secrets::Providers::new(config.secrets.clone());
        let accounts = worker_accounts(&config, &secrets).await?;
        let liveness =
            Liveness { interval: config.worker_listener.ping_interval, timeout: config.worker_listener.ping_timeout };
        let workers = Workers::new(accounts, liveness).publishing_on(store.events().clone(), workerids);
        let connection_limits = fit_connection_limits(&config);
        let listener = TcpListener::bind(config.worker_listener.address)
            .await
            .with_context(|| format!("listening for workers on {}", config.worker_listener.address))?;
        let worker_address = listener.local_addr()?;
        let client_certs = config.worker_listener.client_certs.as_ref();
        let tls = match &config.worker_listener.tls {
            Some(files) => {
                let ca = client_certs.map(|c| c.ca.as_path());
                Some(
                    crate::tls::load(&files.cert, &files.key, ca)
                        .context("the worker port's TLS certificate")?
                        .acceptor,
                )
            }
            None => None,
        };
        let certificate_names = client_certs.is_some_and(|c| c.name_must_match);
        let web_tls = match &config.web.tls {
            Some(files) => Some(crate::tls::Reloadable::new(
                crate::tls::load(&files.cert, &files.key, None).context("the web port's TLS certificate")?,
            )),
            None => None,
        };
        let locks = config.locks.clone();
        let handshake_timeout = config.worker_listener.handshake_timeout;
        let reporters = Arc::new(crate::reporters::Reporters::new(&config));
        let shutting_down = CancellationToken::new();
        let inner = Arc::new(Inner {
            config: RwLock::new(Arc::new(config)),
            dir: dir.to_path_buf(),
            store,
            masterid,
            workers: workers.clone(),
            builders: RwLock::new(Arc::new(builders)),
            services: Mutex::default(),
            reconfiguring: tokio::sync::Mutex::new(()),
            running: Mutex::default(),
            builds: TaskTracker::new(),
            wake: Notify::new(),
            locks: Locks::new(locks),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
            name: master_name.clone(),
            connection_limits,
            poll_now: Mutex::default(),
            secrets: RwLock::new(secrets),
            reporters: RwLock::new(reporters),
            web_tls,
            senders: crate::reporters::senders::Senders::new(shutting_down.clone()),
            shutting_down,
        });
        let port =
            crate::workers::WorkerPort { tls, certificate_names, limits: connection_limits.workers, handshake_timeout };
        tokio::spawn(crate::workers::serve(listener, port, workers, inner.shutting_down.clone()));
        tokio::spawn(dispatch_loop(inner.clone()));
        inner.senders.apply(&inner.reporters(), &inner.store);
        inner.abandon_removed_notices().await;
        let master = Master { inner: inner.clone() };
        // A scheduler seen for the first time takes the changes stored from now on. Each subscribes before the
        // sources start, and reads from the store what it has not classified yet: no change goes by unseen.
        let start_after = inner.store.last_change_id().await?;
        master.start_services(start_after);
        tokio::spawn(janitor::run(master.clone()));
        inner.store.events().publish(Event::MasterStarted { masterid, name: master_name.clone() });
        tracing::info!(workers = %worker_address, name = %master_name, "master started");
        Ok((master, Addresses { workers: worker_address }))
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
        let cancels = self.config().change_schedulers.iter().any(|s| s.name == scheduler && s.cancel_superseded);
        if cancels {
            self.cancel_superseded(scheduler, submitted.buildsetid).await;
        }
        Ok(())
    }

    /// Cancels the queued requests and stops the running builds of `scheduler`'s buildsets that buildset `newer`
    /// supersedes (the same branch, submitted before). A failure is logged: the newer buildset stands.
    async fn cancel_superseded(&self, scheduler: &str, newer: i64) {
        let requests = match self.inner.store.superseded_requests(scheduler, newer).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::warn!(scheduler, buildset = newer, error = %e, "superseded requests not found");
                return;
            }
        };
        for brid in requests {
            tracing::info!(scheduler, buildrequest = brid, by = newer, "cancelling a superseded request");
            if let Err(e) = self.cancel_request(brid).await {
                tracing::warn!(scheduler, buildrequest = brid, error = %e, "a superseded request was not cancelled");
            }
        }
    }

    /// The web port's TLS acceptor (a reconfig reloads its certificate), if it serves https.
    pub fn web_tls(&self) -> Option<crate::tls::Reloadable> {
        self.inner.web_tls.clone()
    }

    /// The listeners' connection caps in force (the config's, fitted under the file-descriptor limit).
    pub fn connection_limits(&self) -> crate::connections::Fitted {
        self.inner.connection_limits
    }

    /// The configuration in force (a reconfig replaces it; the one returned stays whole).
    pub fn config(&self) -> Arc<MasterConfig> {
        self.inner.config()
    }

    /// The master's directory, where its `master.toml` is.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The master's name in the store.
    pub fn name(&self) -> &str {
        &self.inner.name
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

    /// Where secrets are fetched from (`[[secret_provider]]`): reporters render their passwords and tokens with
    /// [`crate::secrets::Providers::render`] and censor what they send with the redactor it returns.
    pub fn secrets(&self) -> crate::secrets::Providers {
        self.inner.secrets()
    }

    /// The store id of a builder.
    pub fn builder_id(&self, name: &str) -> Option<i64> {
        self.inner.builders().get(name).map(|(id, _)| *id)
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
        let config = self.config();
        let def = config
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

    /// Enables or disables the scheduler `name` (of any kind): a disabled one submits nothing until enabled.
    pub async fn set_scheduler_enabled(&self, name: &str, enabled: bool) -> Result<(), ActionError> {
        let config = self.config();
        let known = config.timed_schedulers.iter().any(|s| s.name == name)
            || config.change_schedulers.iter().any(|s| s.name == name)
            || config.dependent_schedulers.iter().any(|s| s.name == name)
            || config.triggerable_schedulers.iter().any(|s| s.name == name)
            || config.force_schedulers.iter().any(|s| s.name == name);
        if !known {
            return Err(ActionError::NoScheduler(name.to_string()));
        }
        self.inner.store.set_scheduler_enabled(name, enabled).await?;
        tracing::info!(scheduler = name, enabled, "scheduler switched");
        Ok(())
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
        if let Some(submit) = self.config().scheduler_submits.get(scheduler) {
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
        // A disabled scheduler submits nothing; what it keeps of what it handled is stored all the same, so that
        // it does not come back to those changes or firings once enabled (Buildbot's disabled schedulers drop
        // them too).
        if !self.inner.store.scheduler_enabled(scheduler).await? {
            self.inner.store.set_states(&buildset.state).await?;
            return Err(ActionError::SchedulerDisabled(scheduler.to_string()));
        }
        let submitted = self.submit(buildset).await?;
        let bsid = submitted.buildsetid;
        self.inner.store.events().publish(Event::SchedulerFired { scheduler: scheduler.to_string(), bsid });
        Ok(submitted)
    }

    async fn submit(&self, mut new: NewBuildset) -> Result<Submitted, ActionError> {
        for ss in &mut new.sourcestamps {
            if let std::borrow::Cow::Owned(hidden) = crate::secrets::redact_url_credentials(&ss.repository) {
                ss.repository = hidden;
            }
        }
        new.builder_priorities = self.inner.builders().values().map(|(id, def)| (*id, def.priority)).collect();
        let builderids = new.builderids.clone();
        let reporters = self.inner.reporters();
        let decide = |facts: &crate::model::BuildFacts| reporters.decide_requested(facts);
        let decide: Option<crate::store::Decide<'_>> = (!reporters.is_empty()).then_some(&decide);
        let (buildsetid, brids) = self.inner.store.add_buildset_notifying(&new, decide).await?;
        reporters.wake();
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
        let collapses = self.inner.builders().values().any(|(id, def)| *id == builderid && def.collapse_requests);
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
        let change = without_credentials(change);
        let id = self.inner.store.add_change(&change).await?;
        self.announce_change(id).await
    }

    /// Stores a change a poller found, unless the same commit (same source stamp) is stored already; then tells
    /// the subscribers. A poll repeated after a crash thus neither duplicates nor rebuilds a commit.
    pub async fn add_polled_change(&self, change: NewChange) -> Result<Option<Change>, ActionError> {
        let change = without_credentials(change);
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
        let changes: Vec<NewChange> = changes.iter().cloned().map(without_credentials).collect();
        let delivered = self.inner.store.add_delivered_changes(source, delivery, &changes).await?;
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

    /// Makes the git poller `name` poll now (the `poller` change hook); false when there is none by that name.
    pub fn poll_now(&self, name: &str) -> bool {
        let is_git =
            self.config().change_sources.iter().any(|s| s.name() == name && matches!(s, ChangeSourceDef::Git(_)));
        match lock(&self.inner.poll_now).get(name).filter(|_| is_git) {
            Some(now) => {
                // Kept when the poller is busy polling: it polls again right after.
                now.notify_one();
                true
            }
            None => false,
        }
    }

    /// The names of the git pollers of the configuration in force (those the `poller` change hook can wake).
    pub fn git_poller_names(&self) -> Vec<String> {
        let config = self.config();
        let git = config.change_sources.iter().filter(|s| matches!(s, ChangeSourceDef::Git(_)));
        let mut names: Vec<String> = git.map(|s| s.name().to_string()).collect();
        names.sort();
        names
    }

    /// What makes the git poller `name` poll now: a new one for each start of the poller.
    fn new_poll_now(&self, name: &str) -> Arc<Notify> {
        let now = Arc::new(Notify::new());
        lock(&self.inner.poll_now).insert(name.to_string(), now.clone());
        now
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
        let config = self.config();
        let def = config
            .triggerable_schedulers
            .iter()
            .find(|s| s.name == scheduler)
            .ok_or_else(|| ActionError::UnknownScheduler(scheduler.to_string()))?;
        self.submit_for(scheduler, &def.builders, buildset).await
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

    /// Runs a build's request again, as a new buildset with the same properties and source stamps; its reason
    /// names the user who asked (`by`), if any.
    pub async fn rebuild(&self, buildid: i64, by: Option<&str>) -> Result<Submitted, ActionError> {
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
            reason: match by {
                Some(user) => format!("rebuild of build {buildid} by {user}"),
                None => format!("rebuild of build {buildid}"),
            },
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
        if !self.config().workers.iter().any(|w| w.name == name) {
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
    /// The configured reporters (for sending a notice now, and the API).
    pub fn reporters(&self) -> Arc<crate::reporters::Reporters> {
        self.inner.reporters()
    }

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

/// The workers a config lets connect, each with the directories of the builders it serves.
async fn worker_accounts(
    config: &MasterConfig,
    secrets: &crate::secrets::Providers,
) -> anyhow::Result<Vec<WorkerAccount>> {
    let mut accounts = Vec::new();
    for w in &config.workers {
        accounts.push(WorkerAccount {
            name: w.name.clone(),
            password: worker_credential(secrets, &w.name, &w.password).await?,
            max_builds: w.max_builds.map(|m| m as usize),
            builder_dirs: config
                .builders
                .iter()
                .filter(|b| b.workers.contains(&w.name))
                .map(|b| b.builddir.clone())
                .collect(),
        });
    }
    Ok(accounts)
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

impl Inner {
    fn config(&self) -> Arc<MasterConfig> {
        self.config.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn builders(&self) -> Arc<Builders> {
        self.builders.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn secrets(&self) -> crate::secrets::Providers {
        self.secrets.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn reporters(&self) -> Arc<crate::reporters::Reporters> {
        self.reporters.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Gives up the unsent notices of reporters the config does not name (see `reporters::senders`); returns
    /// a line per such reporter.
    async fn abandon_removed_notices(&self) -> Vec<String> {
        let names: Vec<String> = self.reporters().defs().iter().map(|d| d.name.clone()).collect();
        match self.store.abandon_notifications(&names, crate::reporters::senders::REMOVED).await {
            Ok(abandoned) => abandoned
                .into_iter()
                .map(|(reporter, count)| {
                    tracing::warn!(reporter, count, "unsent notices of a reporter no longer configured: given up");
                    format!("reporter '{reporter}': {count} unsent notice(s) given up")
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "giving up the notices of removed reporters failed");
                Vec::new()
            }
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
