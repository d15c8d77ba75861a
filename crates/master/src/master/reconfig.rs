//! A reconfig: the master takes a new `master.toml` without stopping. The new config has been read and checked
//! whole before it gets here; it is then applied all at once or not at all.
//!
//! What can change: builders (a running build keeps the steps it started with; the next build of a changed
//! builder runs the new ones; a removed builder's running builds finish and its queued requests wait), workers
//! (a removed one is disconnected; a changed password applies at its next login), schedulers and change sources
//! (the removed and changed ones stop, the new and changed ones start; one left as it was runs on untouched,
//! timers and all; a restarted one goes on from the state it keeps in the store), force and triggerable
//! schedulers, locks (holders keep what they hold; new takers get the new counts), change hooks, the title and
//! the URL, reporters (the senders of changed ones restart; see `reporters::senders` for the notices waiting),
//! users, `[auth]` and rules (a removed user's sessions and tokens are revoked, a changed password ends the
//! user's sessions; the next request is judged by the new rules), and the web port's certificate (read again by
//! every reconfig: new connections get the new one). What needs a restart (the store, the listeners' addresses,
//! TLS and limits) is refused, with the running config left in place.

use std::collections::HashMap;
use std::sync::Arc;

use super::services::wanted;
use super::{lock, worker_accounts, Builders, Master};
use crate::config::MasterConfig;
use crate::store::StoreError;

/// What a reconfig changed, one line per item ("builder 'docs' added"), for the log and `kiln reconfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    pub changes: Vec<String>,
}

/// Why a config was not applied; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigError {
    #[error("the new config changes what only a restart can change: {}", .0.join("; "))]
    NeedsRestart(Vec<String>),
    #[error("the new config could not be applied: {0}")]
    Store(#[from] StoreError),
    #[error("the new config could not be applied: {0}")]
    Secret(String),
    #[error("the new config could not be applied: {0}")]
    Tls(String),
}

impl Master {
    /// Applies `new` (already checked) in place of the running config; see the module's doc for what changes.
    pub async fn reconfig(&self, new: MasterConfig) -> Result<Reconfigured, ReconfigError> {
        let _one_at_a_time = self.inner.reconfiguring.lock().await;
        let old = self.config();
        let refused = needs_restart(&old, &new);
        if !refused.is_empty() {
            return Err(ReconfigError::NeedsRestart(refused));
        }
        let mut changes = describe(&old, &new);
        // Every store write first: if one fails, nothing has changed yet.
        let current = self.inner.builders();
        let mut builders: Builders = HashMap::new();
        for def in &new.builders {
            let id = match current.get(&def.name) {
                Some((id, _)) => *id,
                None => self.inner.store.find_or_add_builder(&def.name).await?,
            };
            builders.insert(def.name.clone(), (id, Arc::new(def.clone())));
        }
        let mut workerids = HashMap::new();
        for worker in new.workers.iter().filter(|w| !old.workers.iter().any(|o| o.name == w.name)) {
            workerids.insert(worker.name.clone(), self.inner.store.find_or_add_worker(&worker.name).await?);
        }
        let start_after = self.inner.store.last_change_id().await?;
        // Worker passwords taken from secret providers are fetched before anything changes, too.
        let secrets = crate::secrets::Providers::new(new.secrets.clone());
        let accounts = worker_accounts(&new, &secrets).await.map_err(|e| ReconfigError::Secret(format!("{e:#}")))?;
        // The web certificate is read again (a renewed one has the same file names).
        let web_tls = match &new.web.tls {
            Some(files) => Some(
                crate::tls::load(&files.cert, &files.key, None)
                    .map_err(|e| ReconfigError::Tls(format!("the web port's certificate: {e:#}")))?,
            ),
            None => None,
        };
        // Users removed or with a new password are logged out before the new config is in force.
        let auth = old.auth.changes_to(&new.auth);
        for user in &auth.log_out {
            self.inner.store.revoke_sessions_of(user).await?;
        }
        for user in &auth.revoke_tokens {
            self.inner.store.revoke_api_tokens_of(user).await?;
        }
        changes.extend(auth.lines);
        // Then the swap, which cannot fail.
        let new = Arc::new(new);
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        *self.inner.builders.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(builders);
        *self.inner.secrets.write().unwrap_or_else(|p| p.into_inner()) = secrets;
        self.inner.workers.reconfigure(accounts, workerids);
        self.inner.locks.set_defs(new.locks.clone());
        if let (Some(served), Some(loaded)) = (&self.inner.web_tls, web_tls) {
            if served.replace(loaded) {
                changes.push("[web] TLS certificate reloaded".to_string());
            }
        }
        changes.extend(self.reconfigure_reporters(&new).await);
        // Services last: the removed and changed ones end before their successors start.
        let wanted = wanted(&new);
        let stopping: Vec<_> = {
            let mut services = lock(&self.inner.services);
            let keys: Vec<_> = services
                .iter()
                .filter(|(key, service)| wanted.get(*key) != Some(&service.def))
                .map(|(key, _)| key.clone())
                .collect();
            keys.into_iter().filter_map(|key| services.remove(&key).map(|s| (key, s))).collect()
        };
        for (key, service) in stopping {
            let verb = if wanted.contains_key(&key) { "restarted (changed)" } else { "removed" };
            changes.push(format!("{key} {verb}"));
            service.stop().await;
        }
        {
            let before = super::services::wanted(&old);
            let mut services = lock(&self.inner.services);
            for (key, def) in wanted {
                if let std::collections::btree_map::Entry::Vacant(slot) = services.entry(key) {
                    if !before.contains_key(slot.key()) {
                        changes.push(format!("{} added", slot.key()));
                    }
                    slot.insert(self.start_service(def, start_after));
                }
            }
        }
        self.inner.wake.notify_one();
        changes.sort();
        changes.dedup();
        tracing::info!(changes = changes.len(), "reconfig applied");
        for change in &changes {
            tracing::info!("reconfig: {change}");
        }
        Ok(Reconfigured { changes })
    }
}

impl Master {
    /// Swaps in the reporters of `new` and their senders (see `reporters::senders` for the notices already in
    /// the outbox); returns what happened to the notices of removed reporters.
    async fn reconfigure_reporters(&self, new: &MasterConfig) -> Vec<String> {
        let old = self.inner.reporters();
        let reporters = Arc::new(crate::reporters::Reporters::waking(new, old.waker().clone()));
        *self.inner.reporters.write().unwrap_or_else(|p| p.into_inner()) = reporters.clone();
        let mut applied = self.inner.senders.apply(&reporters, &self.inner.store);
        applied.stopped().await;
        self.inner.abandon_removed_notices().await
    }
}

/// What differs between `old` and `new` that a running master cannot take.
fn needs_restart(old: &MasterConfig, new: &MasterConfig) -> Vec<String> {
    let mut refused = Vec::new();
    if old.store != new.store {
        refused.push(format!("[store] url ({} → {})", old.store.url, new.store.url));
    }
    let (a, b) = (&old.worker_listener, &new.worker_listener);
    if a.address != b.address {
        refused.push(format!("[worker_listener] address ({} → {})", a.address, b.address));
    }
    if a.tls != b.tls {
        refused.push("[worker_listener] tls".to_string());
    }
    if a.client_certs != b.client_certs {
        refused.push("[worker_listener] tls_client_ca or tls_client_name".to_string());
    }
    if (a.ping_interval, a.ping_timeout, a.handshake_timeout) != (b.ping_interval, b.ping_timeout, b.handshake_timeout)
    {
        refused.push("[worker_listener] timeouts".to_string());
    }
    if (a.max_connections, a.max_connections_per_address) != (b.max_connections, b.max_connections_per_address) {
        refused.push("[worker_listener] connection limits".to_string());
    }
    // The web certificate's files may change (and are read again by every reconfig); https on or off may not.
    let same_files = crate::config::WebConfig { tls: new.web.tls.clone(), ..old.web.clone() };
    if same_files != new.web {
        refused.push(format!("[web] (address {} → {}, timeouts or limits)", old.web.address, new.web.address));
    }
    if old.web.tls.is_some() != new.web.tls.is_some() {
        refused.push("[web] tls_cert (serving https or not)".to_string());
    }
    refused
}

/// The config items added, changed and removed (services are described as they are stopped and started).
fn describe(old: &MasterConfig, new: &MasterConfig) -> Vec<String> {
    let mut changes = Vec::new();
    diff(&mut changes, "builder", &old.builders, &new.builders, |b| &b.name);
    diff(&mut changes, "worker", &old.workers, &new.workers, |w| &w.name);
    diff(&mut changes, "force scheduler", &old.force_schedulers, &new.force_schedulers, |s| &s.name);
    diff(&mut changes, "scheduler", &old.triggerable_schedulers, &new.triggerable_schedulers, |s| &s.name);
    let (old_locks, new_locks): (Vec<_>, Vec<_>) = (old.locks.iter().collect(), new.locks.iter().collect());
    diff(&mut changes, "lock", &old_locks, &new_locks, |(name, _)| name);
    diff(&mut changes, "reporter", &old.reporters, &new.reporters, |r| &r.name);
    if old.change_hooks != new.change_hooks {
        changes.push("change hooks changed".to_string());
    }
    if old.scheduler_submits != new.scheduler_submits {
        changes.push("scheduler reasons, properties or codebases changed".to_string());
    }
    if old.title != new.title {
        changes.push(format!("title changed to '{}'", new.title));
    }
    if old.url != new.url {
        changes.push(format!("url changed to {}", new.url));
    }
    changes
}

/// Appends "KIND 'name' added/changed/removed" for the items of `old` and `new`, matched by `name`.
fn diff<T: PartialEq>(changes: &mut Vec<String>, kind: &str, old: &[T], new: &[T], name: impl Fn(&T) -> &String) {
    for item in new {
        match old.iter().find(|o| name(o) == name(item)) {
            None => changes.push(format!("{kind} '{}' added", name(item))),
            Some(before) if before != item => changes.push(format!("{kind} '{}' changed", name(item))),
            Some(_) => {}
        }
    }
    for item in old.iter().filter(|o| !new.iter().any(|n| name(n) == name(o))) {
        changes.push(format!("{kind} '{}' removed", name(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> MasterConfig {
        MasterConfig::from_str(text, "master.toml").expect("valid config")
    }

    const BASE: &str = r#"
[[worker]]
name = "w1"
password = "p"

[[builder]]
name = "a"
workers = ["w1"]
[[builder.step]]
command = "true"
"#;

    #[test]
    fn builders_and_workers_added_changed_removed_are_named() {
        let old = config(BASE);
        let new = config(
            r#"
[[worker]]
name = "w2"
password = "p"

[[builder]]
name = "a"
workers = ["w2"]
[[builder.step]]
command = "false"

[[builder]]
name = "b"
workers = ["w2"]
[[builder.step]]
command = "true"
"#,
        );
        let changes = describe(&old, &new);
        for expected in ["builder 'a' changed", "builder 'b' added", "worker 'w2' added", "worker 'w1' removed"] {
            assert!(changes.iter().any(|c| c == expected), "{expected} missing from {changes:?}");
        }
        assert!(needs_restart(&old, &new).is_empty());
    }

    #[test]
    fn the_same_config_changes_nothing() {
        assert!(describe(&config(BASE), &config(BASE)).is_empty());
    }

    #[test]
    fn a_new_web_address_needs_a_restart() {
        let old = config(BASE);
        let new = config(&format!("[web]\naddress = \"127.0.0.1:1\"\n{BASE}"));
        let refused = needs_restart(&old, &new);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].starts_with("[web]"), "{refused:?}");
    }
}
