//! The running senders: one [`Outbox`] per reporter and the missing-worker watch, each with its own stop token,
//! so that a reconfig stops the senders of removed and changed reporters and starts those of new and changed
//! ones, leaving the others running.
//!
//! What a reconfig does to the notices already in the outbox: a changed reporter's notices keep the payload they
//! were rendered with (a notice is rendered when it is decided) and are sent by the new definition's sender,
//! with its new address, credentials and limits. A removed reporter's unsent notices are given up, marked
//! `dead` with the reason, and logged: removing a reporter is how one silences a wrong or noisy target, and
//! keeping an old definition alive to drain them would send to a target the config no longer names. The same
//! rule holds at a start for notices of reporters the config does not name.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::{missing, targets, Reporters};
use crate::config::{Generator, ReporterDef};
use crate::store::Store;

/// Why a removed reporter's notices are given up, as the outbox records it.
pub const REMOVED: &str = "the reporter was removed from the config; not sent";

struct Running {
    def: Arc<ReporterDef>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// The missing-worker watch and what it was started with.
struct Watch {
    defs: Vec<Arc<ReporterDef>>,
    notify: BTreeMap<String, Vec<String>>,
    stop: CancellationToken,
}

/// The senders of a master's reporters.
pub struct Senders {
    /// The master's stop: every sender's token is a child of it.
    stop: CancellationToken,
    running: Mutex<BTreeMap<String, Running>>,
    watch: Mutex<Option<Watch>>,
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders").finish_non_exhaustive()
    }
}

/// What [`Senders::apply`] changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// The removed reporters' senders, stopping: each ends after the notice it is sending, if any.
    pub stopping: Vec<JoinHandle<()>>,
}

impl Applied {
    /// Waits until the removed reporters' senders have ended.
    pub async fn stopped(&mut self) {
        for task in self.stopping.drain(..) {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a removed reporter's sender ended badly");
            }
        }
    }
}

impl Senders {
    pub fn new(stop: CancellationToken) -> Senders {
        Senders { stop, running: Mutex::default(), watch: Mutex::default() }
    }

    /// Makes the running senders those of `reporters`: stops the senders of removed and changed reporters,
    /// starts those of new and changed ones, restarts the missing-worker watch if what it watches changed.
    /// A removed sender ends after the notice it is sending; [`Applied::stopped`] waits for that.
    pub fn apply(&self, reporters: &Reporters, store: &Store) -> Applied {
        let mut applied = Applied::default();
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            let names: Vec<String> = running.keys().cloned().collect();
            for name in names {
                match reporters.get(&name) {
                    Some(def) if running.get(&name).is_some_and(|r| r.def == *def) => {}
                    Some(_) => {
                        if let Some(old) = running.remove(&name) {
                            old.stop.cancel();
                        }
                        applied.changed.push(name);
                    }
                    None => {
                        if let Some(old) = running.remove(&name) {
                            old.stop.cancel();
                            applied.stopping.extend(old.task);
                        }
                        applied.removed.push(name);
                    }
                }
            }
            for def in reporters.defs() {
                if running.contains_key(&def.name) {
                    continue;
                }
                if !applied.changed.contains(&def.name) {
                    applied.added.push(def.name.clone());
                }
                let stop = self.stop.child_token();
                let task = match targets::Sender::new(def, store.clone()) {
                    Ok(sender) => {
                        let outbox = Outbox::new(def.clone(), store.clone(), sender, reporters.waker().clone());
                        Some(tokio::spawn(outbox.run(stop.clone())))
                    }
                    Err(e) => {
                        tracing::error!(reporter = %def.name, error = %e, "the reporter cannot send; its notices wait");
                        None
                    }
                };
                running.insert(def.name.clone(), Running { def: def.clone(), stop, task });
            }
        }
        self.watch_missing(reporters, store);
        applied
    }

    fn watch_missing(&self, reporters: &Reporters, store: &Store) {
        let defs: Vec<Arc<ReporterDef>> =
            reporters.defs().iter().filter(|d| d.generator == Generator::WorkerMissing).cloned().collect();
        let notify = reporters.notify_on_missing().clone();
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if watch.as_ref().is_some_and(|w| w.defs == defs && w.notify == notify) {
            return;
        }
        if let Some(old) = watch.take() {
            old.stop.cancel();
        }
        if defs.is_empty() {
            return;
        }
        let stop = self.stop.child_token();
        let (site, wake) = (reporters.site().clone(), reporters.waker().clone());
        tokio::spawn(missing::run(defs.clone(), notify.clone(), site, store.clone(), wake, stop.clone()));
        *watch = Some(Watch { defs, notify, stop });
    }
}
