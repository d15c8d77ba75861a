//! The master's long-running services: the timed, on-change and dependent schedulers and the change sources.
//! Each runs as its own task with its own stop token, keyed by its kind and name, so that a reconfig can stop
//! the ones removed or changed and start the new ones while the others go on untouched.
//!
//! A scheduler keeps what it has classified in the store (its state is written in the same transaction as the
//! buildset it submits), so one stopped and started again, by a reconfig or a restart, goes on where it was.

use std::collections::BTreeMap;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ActionError, Master};
use crate::changes::git_poller::GitPoller;
use crate::changes::release_poller::ReleasePoller;
use crate::config::{ChangeSchedulerDef, ChangeSourceDef, DependentSchedulerDef, MasterConfig, TimedSchedulerDef};
use crate::schedulers::timed::{self, Clock};
use crate::schedulers::{dependent, on_change};

/// How long a stopped service gets to end its current write before a reconfig goes on without it.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A service's identity: its kind and its configured name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ServiceKey {
    Scheduler(String),
    ChangeSource(String),
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Scheduler(name) => write!(f, "scheduler '{name}'"),
            ServiceKey::ChangeSource(name) => write!(f, "change source '{name}'"),
        }
    }
}

/// What a service runs: its definition, compared whole to tell a changed service.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ServiceDef {
    Timed(TimedSchedulerDef),
    OnChange(ChangeSchedulerDef),
    Dependent(DependentSchedulerDef),
    ChangeSource(ChangeSourceDef),
}

/// A running service.
pub(super) struct Service {
    pub def: ServiceDef,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Service {
    /// Stops the service and waits (a bounded time) for its task to end, so a successor never runs beside it.
    pub async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(STOP_WAIT, self.task).await.is_err() {
            tracing::warn!("a stopped scheduler or change source did not end in time; going on without it");
        }
    }
}

/// The running services by key.
pub(super) type Services = BTreeMap<ServiceKey, Service>;

/// The services a config asks for, by key.
pub(super) fn wanted(config: &MasterConfig) -> BTreeMap<ServiceKey, ServiceDef> {
    let timed = config.timed_schedulers.iter().map(|d| (d.name.clone(), ServiceDef::Timed(d.clone())));
    let on_change = config.change_schedulers.iter().map(|d| (d.name.clone(), ServiceDef::OnChange(d.clone())));
    let dependent = config.dependent_schedulers.iter().map(|d| (d.name.clone(), ServiceDef::Dependent(d.clone())));
    let schedulers = timed.chain(on_change).chain(dependent).map(|(name, def)| (ServiceKey::Scheduler(name), def));
    let sources = config
        .change_sources
        .iter()
        .map(|d| (ServiceKey::ChangeSource(d.name().to_string()), ServiceDef::ChangeSource(d.clone())));
    schedulers.chain(sources).collect()
}

impl Master {
    /// Starts every service of the config in force (new schedulers take the changes after `start_after`).
    pub(super) fn start_services(&self, start_after: i64) {
        let wanted = wanted(&self.config());
        let mut services = super::lock(&self.inner.services);
        for (key, def) in wanted {
            services.insert(key, self.start_service(def, start_after));
        }
    }

    /// Starts one service; it runs until the master stops or the service is stopped.
    pub(super) fn start_service(&self, def: ServiceDef, start_after: i64) -> Service {
        let stop = self.inner.shutting_down.child_token();
        let task = match &def {
            ServiceDef::Timed(timed) => self.run_timed_scheduler(timed.clone(), start_after, stop.clone()),
            ServiceDef::OnChange(on_change) => self.run_change_scheduler(on_change.clone(), start_after, stop.clone()),
            ServiceDef::Dependent(dependent) => self.run_dependent_scheduler(dependent.clone(), stop.clone()),
            ServiceDef::ChangeSource(source) => self.run_change_source(source.clone(), stop.clone()),
        };
        Service { def, stop, task }
    }

    /// An on-change scheduler (a new one takes the changes after `start_after`).
    fn run_change_scheduler(
        &self,
        def: ChangeSchedulerDef,
        start_after: i64,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let master = self.clone();
        let (name, builders, priority) = (def.name.clone(), def.builders.clone(), def.priority);
        let (store, changes) = (self.inner.store.clone(), self.subscribe_changes());
        tokio::spawn(on_change::run(def, store, start_after, changes, stop, move |group, state| {
            let (master, name, builders) = (master.clone(), name.clone(), builders.clone());
            async move {
                match master.submit_changes(&name, &builders, priority, &group, state).await {
                    Ok(()) => true,
                    Err(ActionError::SchedulerDisabled(_)) => {
                        tracing::info!(scheduler = %name, changes = group.len(), "disabled: the changes build nothing");
                        true
                    }
                    Err(e) => {
                        tracing::error!(scheduler = %name, error = %e, "the scheduler could not submit");
                        false
                    }
                }
            }
        }))
    }

    /// A change source; what it finds is stored (and so reaches the schedulers).
    fn run_change_source(&self, def: ChangeSourceDef, stop: CancellationToken) -> JoinHandle<()> {
        let master = self.clone();
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
                let now = self.new_poll_now(&git.name);
                let poller = GitPoller::new(git, &self.inner.dir, self.inner.store.clone());
                tokio::spawn(crate::changes::run_poller(poller, interval, now, stop, deliver))
            }
            ChangeSourceDef::Package(package) => {
                let interval = package.poll_interval;
                // Only git pollers answer the poller hook.
                let now = std::sync::Arc::default();
                let poller = ReleasePoller::new(package, self.inner.store.clone());
                tokio::spawn(crate::changes::run_poller(poller, interval, now, stop, deliver))
            }
        }
    }

    /// A timed scheduler: each firing that builds submits a buildset for its builders (with the source stamp of
    /// the last change it classified, if it takes changes: `only_if_changed`; a new one takes the changes after
    /// `start_after`).
    fn run_timed_scheduler(&self, def: TimedSchedulerDef, start_after: i64, stop: CancellationToken) -> JoinHandle<()> {
        let master = self.clone();
        let (name, builders, priority) = (def.name.clone(), def.builders.clone(), def.priority);
        let changes = def.only_if_changed.then(|| self.subscribe_changes().into());
        let store = self.inner.store.clone();
        tokio::spawn(timed::run(def, Clock::System, store, start_after, changes, stop, move |at, changes, state| {
            let (master, name, builders) = (master.clone(), name.clone(), builders.clone());
            async move {
                let submitted = if changes.is_empty() {
                    let reason = format!("The scheduler named '{name}' triggered this build at {}", at.to_rfc3339());
                    let buildset = crate::store::NewBuildset { reason, priority, state, ..Default::default() };
                    master.submit_for(&name, &builders, buildset).await.map(|_| ())
                } else {
                    master.submit_changes(&name, &builders, priority, &changes, state).await
                };
                match submitted {
                    Ok(()) => true,
                    Err(ActionError::SchedulerDisabled(_)) => {
                        tracing::info!(scheduler = %name, "disabled: this firing builds nothing");
                        true
                    }
                    Err(e) => {
                        tracing::error!(scheduler = %name, error = %e, "the scheduler could not submit");
                        false
                    }
                }
            }
        }))
    }

    /// A dependent scheduler (see [`dependent::run`]).
    fn run_dependent_scheduler(&self, def: DependentSchedulerDef, stop: CancellationToken) -> JoinHandle<()> {
        let master = self.clone();
        let completed = self.inner.store.events().subscribe();
        let (name, builders) = (def.name.clone(), def.builders.clone());
        tokio::spawn(dependent::run(def, self.inner.store.clone(), completed, stop, move |buildset| {
            let (master, name, builders) = (master.clone(), name.clone(), builders.clone());
            async move {
                match master.submit_for(&name, &builders, buildset).await {
                    Ok(_) => {}
                    Err(ActionError::SchedulerDisabled(_)) => {
                        tracing::info!(scheduler = %name, "disabled: the upstream buildset builds nothing");
                    }
                    Err(e) => tracing::error!(scheduler = %name, error = %e, "the scheduler could not submit"),
                }
            }
        }))
    }
}
