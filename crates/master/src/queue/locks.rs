//! Locks (Buildbot's `locks.py`): master locks have one instance, worker locks one per worker. Counting access
//! shares an instance up to its `max_count` units; exclusive access holds it alone. Waiters are served in order: a
//! waiter may take an instance only if everyone waiting ahead of it on that instance is counting and there is room
//! for them all (so a counting waiter never passes an exclusive one). An owner takes all its locks at once or none.
//!
//! [`LockTable`] is the pure state, which the dispatcher's plan works on a copy of; [`Locks`] shares it in one
//! master (locks are per master, as in Buildbot) and lets builds wait for step locks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::{LockAccess, LockDef, LockKind, LockUse};

/// One instance of a lock: a master lock's only one, or a worker lock's on one worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance {
    pub lock: String,
    pub worker: Option<String>,
}

/// Who holds or waits for locks: a build (its builder locks) or a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(u64);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    owner: Owner,
    access: LockAccess,
    count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct InstanceState {
    holders: Vec<Claim>,
    waiting: Vec<Claim>,
}

/// What an owner wants of one instance.
struct Want {
    instance: Instance,
    max: u32,
    access: LockAccess,
    count: u32,
}

/// The state of every lock instance: holders, and waiters in order.
#[derive(Clone, Debug, Default)]
pub struct LockTable {
    defs: Arc<BTreeMap<String, LockDef>>,
    instances: BTreeMap<Instance, InstanceState>,
    next_owner: u64,
}

impl LockTable {
    pub fn new(defs: BTreeMap<String, LockDef>) -> LockTable {
        LockTable { defs: Arc::new(defs), instances: BTreeMap::new(), next_owner: 0 }
    }

    /// A new owner, holding and waiting for nothing.
    pub fn new_owner(&mut self) -> Owner {
        self.next_owner += 1;
        Owner(self.next_owner)
    }

    fn wants(&self, uses: &[LockUse], worker: &str) -> Vec<Want> {
        uses.iter()
            .filter_map(|u| {
                let def = self.defs.get(&u.name)?;
                let instance = Instance {
                    lock: u.name.clone(),
                    worker: (def.kind == LockKind::Worker).then(|| worker.to_string()),
                };
                Some(Want { instance, max: def.max_count_on(worker), access: u.access, count: u.count })
            })
            .collect()
    }

    /// Whether `owner` (waiting or not; `None`: a newcomer behind every waiter) could take `uses` on `worker` now.
    pub fn can_acquire(&self, owner: Option<Owner>, uses: &[LockUse], worker: &str) -> bool {
        let free = InstanceState::default();
        self.wants(uses, worker).iter().all(|want| {
            let state = self.instances.get(&want.instance).unwrap_or(&free);
            let position = owner.and_then(|o| state.waiting.iter().position(|w| w.owner == o));
            let ahead = &state.waiting[..position.unwrap_or(state.waiting.len())];
            let exclusive_held = state.holders.iter().any(|h| h.access == LockAccess::Exclusive);
            match want.access {
                LockAccess::Exclusive => state.holders.is_empty() && ahead.is_empty(),
                LockAccess::Counting => {
                    let held: u32 = state.holders.iter().map(|h| h.count).sum();
                    let reserved: u32 = ahead.iter().map(|w| w.count).sum();
                    !exclusive_held
                        && ahead.iter().all(|w| w.access == LockAccess::Counting)
                        && held + reserved + want.count <= want.max
                }
            }
        })
    }

    /// Takes `uses` on `worker` for `owner` if it can, all at once (leaving its places in the queues); else
    /// changes nothing and returns `false`.
    pub fn acquire(&mut self, owner: Owner, uses: &[LockUse], worker: &str) -> bool {
        if !self.can_acquire(Some(owner), uses, worker) {
            return false;
        }
        for want in self.wants(uses, worker) {
            let state = self.instances.entry(want.instance).or_default();
            state.waiting.retain(|w| w.owner != owner);
            state.holders.push(Claim { owner, access: want.access, count: want.count });
        }
        true
    }

    /// Queues `owner` for `uses` on `worker` (at the end of each instance's queue, unless already in it).
    pub fn wait(&mut self, owner: Owner, uses: &[LockUse], worker: &str) {
        for want in self.wants(uses, worker) {
            let state = self.instances.entry(want.instance).or_default();
            if !state.waiting.iter().any(|w| w.owner == owner) {
                state.waiting.push(Claim { owner, access: want.access, count: want.count });
            }
        }
    }

    /// Releases what `owner` holds and leaves the queues it is in.
    pub fn release(&mut self, owner: Owner) {
        for state in self.instances.values_mut() {
            state.holders.retain(|h| h.owner != owner);
            state.waiting.retain(|w| w.owner != owner);
        }
        self.instances.retain(|_, state| !state.holders.is_empty() || !state.waiting.is_empty());
    }

    /// Units of `instance` held, and whether an exclusive holder is among them.
    pub fn held(&self, instance: &Instance) -> (u32, bool) {
        self.instances.get(instance).map_or((0, false), |state| {
            let units = state.holders.iter().map(|h| h.count).sum();
            (units, state.holders.iter().any(|h| h.access == LockAccess::Exclusive))
        })
    }

    /// How many hold `instance`.
    pub fn holders(&self, instance: &Instance) -> usize {
        self.instances.get(instance).map_or(0, |state| state.holders.len())
    }

    /// The lock definitions.
    pub fn defs(&self) -> &BTreeMap<String, LockDef> {
        &self.defs
    }
}

/// A master's locks, shared by its dispatcher and its builds.
#[derive(Clone)]
pub struct Locks {
    table: Arc<Mutex<LockTable>>,
    /// Bumped on every release, so waiters (and the dispatcher) look again.
    released: Arc<watch::Sender<u64>>,
}

impl Locks {
    pub fn new(defs: BTreeMap<String, LockDef>) -> Locks {
        Locks { table: Arc::new(Mutex::new(LockTable::new(defs))), released: Arc::new(watch::channel(0).0) }
    }

    /// Replaces the definitions (a reconfig): holders keep what they hold; takers from now on get the new counts.
    pub fn set_defs(&self, defs: BTreeMap<String, LockDef>) {
        self.table().defs = Arc::new(defs);
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn table(&self) -> std::sync::MutexGuard<'_, LockTable> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the current state, for planning.
    pub fn snapshot(&self) -> LockTable {
        self.table().clone()
    }

    /// Changes whenever a lock is released.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.released.subscribe()
    }

    /// Takes `uses` on `worker` now if they are free (no one waiting ahead), else `None`.
    pub fn try_acquire(&self, uses: &[LockUse], worker: &str) -> Option<LockGuard> {
        let mut table = self.table();
        let owner = table.new_owner();
        table.acquire(owner, uses, worker).then(|| LockGuard { locks: self.clone(), owner })
    }

    /// Takes `uses` on `worker`, waiting in line for them. Dropping the future leaves the line.
    pub async fn acquire(&self, uses: &[LockUse], worker: &str) -> LockGuard {
        let mut released = self.subscribe();
        released.borrow_and_update();
        let guard = {
            let mut table = self.table();
            let owner = table.new_owner();
            let guard = LockGuard { locks: self.clone(), owner };
            if table.acquire(owner, uses, worker) {
                return guard;
            }
            table.wait(owner, uses, worker);
            guard
        };
        loop {
            if released.changed().await.is_err() {
                // The sender lives as long as `self`; this is not reached, but waiting on is harmless.
                std::future::pending::<()>().await;
            }
            if self.table().acquire(guard.owner, uses, worker) {
                return guard;
            }
        }
    }
}

/// Held locks (or a place in their queues); dropping it releases them.
pub struct LockGuard {
    locks: Locks,
    owner: Owner,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.locks.table().release(self.owner);
        self.locks.released.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> BTreeMap<String, LockDef> {
        let lock = |name: &str, kind, max_count, per_worker: &[(&str, u32)]| {
            let max_count_for_worker = per_worker.iter().map(|(w, n)| (w.to_string(), *n)).collect();
            (name.to_string(), LockDef { name: name.into(), kind, max_count, max_count_for_worker })
        };
        [lock("db", LockKind::Master, 3, &[]), lock("disk", LockKind::Worker, 1, &[("big", 2)])].into_iter().collect()
    }

    fn counting(name: &str, count: u32) -> Vec<LockUse> {
        vec![LockUse { name: name.into(), access: LockAccess::Counting, count }]
    }

    fn exclusive(name: &str) -> Vec<LockUse> {
        vec![LockUse { name: name.into(), access: LockAccess::Exclusive, count: 1 }]
    }

    #[test]
    fn counting_up_to_max_count_and_exclusive_alone() {
        let mut t = LockTable::new(defs());
        let (a, b, c) = (t.new_owner(), t.new_owner(), t.new_owner());
        assert!(t.acquire(a, &counting("db", 2), "w"));
        assert!(!t.can_acquire(None, &counting("db", 2), "w"), "2 + 2 > 3");
        assert!(!t.can_acquire(None, &exclusive("db"), "w"));
        assert!(t.acquire(b, &counting("db", 1), "other"), "a master lock is one instance, whatever the worker");
        let db = Instance { lock: "db".into(), worker: None };
        assert_eq!(t.held(&db), (3, false));
        t.release(a);
        t.release(b);
        assert!(t.acquire(c, &exclusive("db"), "w"));
        assert!(!t.can_acquire(None, &counting("db", 1), "w"));
        t.release(c);
        assert_eq!(t.held(&db), (0, false));
    }

    #[test]
    fn worker_locks_are_per_worker_with_their_own_max() {
        let mut t = LockTable::new(defs());
        let (a, b, c) = (t.new_owner(), t.new_owner(), t.new_owner());
        assert!(t.acquire(a, &counting("disk", 1), "small"));
        assert!(!t.can_acquire(None, &counting("disk", 1), "small"));
        assert!(t.acquire(b, &counting("disk", 1), "big"));
        assert!(t.acquire(c, &counting("disk", 1), "big"), "max_count_for_worker: 2 on big");
        assert!(!t.can_acquire(None, &counting("disk", 1), "big"));
    }

    #[test]
    fn a_counting_waiter_does_not_pass_an_exclusive_one() {
        let mut t = LockTable::new(defs());
        let (holder, excl, late) = (t.new_owner(), t.new_owner(), t.new_owner());
        assert!(t.acquire(holder, &counting("db", 1), "w"));
        assert!(!t.acquire(excl, &exclusive("db"), "w"));
        t.wait(excl, &exclusive("db"), "w");
        assert!(!t.acquire(late, &counting("db", 1), "w"), "room for it, but an exclusive waiter is ahead");
        t.wait(late, &counting("db", 1), "w");
        t.release(holder);
        assert!(!t.acquire(late, &counting("db", 1), "w"));
        assert!(t.acquire(excl, &exclusive("db"), "w"));
        t.release(excl);
        assert!(t.acquire(late, &counting("db", 1), "w"));
    }

    #[test]
    fn all_locks_or_none() {
        let mut t = LockTable::new(defs());
        let (a, b) = (t.new_owner(), t.new_owner());
        assert!(t.acquire(a, &exclusive("disk"), "small"));
        let both = [counting("db", 1), counting("disk", 1)].concat();
        assert!(!t.acquire(b, &both, "small"));
        assert_eq!(t.held(&Instance { lock: "db".into(), worker: None }), (0, false), "db was not taken alone");
        assert!(t.acquire(b, &both, "big"));
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_when_it_is_released_and_leaves_the_line_when_dropped() {
        let locks = Locks::new(defs());
        let held = locks.try_acquire(&exclusive("db"), "w").expect("free");
        assert!(locks.try_acquire(&counting("db", 1), "w").is_none());
        let one = counting("db", 1);
        let waiter = locks.acquire(&one, "w");
        tokio::pin!(waiter);
        assert!(futures_poll(&mut waiter).await.is_none(), "waits while the exclusive holder holds");
        drop(held);
        let guard = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("gets the lock");
        drop(guard);
        // A dropped waiter does not block the line.
        let held = locks.try_acquire(&counting("db", 1), "w").expect("free");
        {
            let excl = exclusive("db");
            let gone = locks.acquire(&excl, "w");
            tokio::pin!(gone);
            assert!(futures_poll(&mut gone).await.is_none());
        }
        assert!(locks.try_acquire(&counting("db", 1), "w").is_some(), "no exclusive waiter left ahead");
        drop(held);
    }

    /// Polls a future once.
    async fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            () = std::future::ready(()) => None,
        }
    }
}
