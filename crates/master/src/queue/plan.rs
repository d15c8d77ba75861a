//! The dispatcher's decision, pure: which pending requests start now, on which workers.
//!
//! Builders are served by their most urgent request ([`builder_order`]); a builder's requests go in [`urgency`]
//! order, each to the least busy of its builder's connected, unpaused workers that has room (`max_builds`) and on
//! which the builder's locks are free. All requests of a builder need the same workers and locks, so once one
//! cannot be placed the builder's others wait too. Each assignment takes its room and its locks before the next
//! is planned, so no plan overfills a worker or a lock, and at the end no unassigned request has a worker it could
//! run on: a request never waits while a worker that could run it is idle and no lock forbids it.

use std::collections::{BTreeMap, HashMap};

use super::locks::LockTable;
use super::{builder_order, urgency};
use crate::config::LockUse;
use crate::model::BuildRequest;

/// A builder with pending requests.
#[derive(Debug, Clone)]
pub struct PendingBuilder {
    pub name: String,
    /// Its unclaimed, incomplete requests, in any order.
    pub requests: Vec<BuildRequest>,
    /// The workers its builds may run on.
    pub workers: Vec<String>,
    /// The locks its builds hold from start to end.
    pub locks: Vec<LockUse>,
}

/// A connected worker, as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerState {
    /// Builds running on it.
    pub running: usize,
    pub max_builds: Option<usize>,
    pub paused: bool,
}

impl WorkerState {
    fn takes_builds(&self) -> bool {
        !self.paused && self.max_builds.is_none_or(|max| self.running < max)
    }
}

/// A request to start on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub builder: String,
    pub brid: i64,
    pub worker: String,
}

/// Why a pending request does not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// A worker can take it: the dispatcher starts it at its next pass.
    Starting,
    /// None of the builder's workers is connected.
    NoWorker { workers: Vec<String> },
    /// Every connected worker of the builder is paused.
    Paused { workers: Vec<String> },
    /// Every connected, unpaused worker of the builder runs as many builds as it may (`max_builds`).
    Busy { workers: Vec<String> },
    /// Workers have room, but the builder's lock `lock` is not free on any of them.
    Lock { lock: String },
}

/// The plan, and for each request it does not start, why (a builder's requests wait for the same reason,
/// behind its first one that cannot start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    /// (request id, why it waits), in the order the requests would be served.
    pub waiting: Vec<(i64, Waiting)>,
}

/// Plans which requests start on which workers. `workers` holds the connected workers only; `locks` is the
/// current state of the master's locks (the plan works on its own copy).
pub fn plan(
    builders: &[PendingBuilder],
    workers: &BTreeMap<String, WorkerState>,
    locks: &LockTable,
) -> Vec<Assignment> {
    plan_with_reasons(builders, workers, locks).assignments
}

/// [`plan`], with the reason each request it does not start waits.
pub fn plan_with_reasons(
    builders: &[PendingBuilder],
    workers: &BTreeMap<String, WorkerState>,
    locks: &LockTable,
) -> Plan {
    let mut workers = workers.clone();
    let mut locks = locks.clone();
    let pending: HashMap<String, Vec<BuildRequest>> =
        builders.iter().map(|b| (b.name.clone(), b.requests.clone())).collect();
    let by_name: HashMap<&str, &PendingBuilder> = builders.iter().map(|b| (b.name.as_str(), b)).collect();
    let mut plan = Plan::default();
    for name in builder_order(&pending) {
        let Some(builder) = by_name.get(name) else { continue };
        let mut requests = builder.requests.clone();
        requests.sort_by_key(urgency);
        let mut blocked = None;
        for request in requests {
            if let Some(why) = &blocked {
                plan.waiting.push((request.id, Clone::clone(why)));
                continue;
            }
            let Some(worker) = pick(builder, &workers, &locks) else {
                let why = why_waiting(builder, &workers, &locks);
                plan.waiting.push((request.id, why.clone()));
                blocked = Some(why);
                continue;
            };
            if let Some(state) = workers.get_mut(&worker) {
                state.running += 1;
            }
            let owner = locks.new_owner();
            locks.acquire(owner, &builder.locks, &worker);
            plan.assignments.push(Assignment { builder: builder.name.clone(), brid: request.id, worker });
        }
    }
    plan
}

/// Why no worker can take a build of `builder` now (when [`pick`] finds none).
fn why_waiting(builder: &PendingBuilder, workers: &BTreeMap<String, WorkerState>, locks: &LockTable) -> Waiting {
    let connected: Vec<(&String, &WorkerState)> =
        builder.workers.iter().filter_map(|name| workers.get(name).map(|state| (name, state))).collect();
    if connected.is_empty() {
        return Waiting::NoWorker { workers: builder.workers.clone() };
    }
    let unpaused: Vec<_> = connected.iter().filter(|(_, state)| !state.paused).collect();
    if unpaused.is_empty() {
        return Waiting::Paused { workers: connected.iter().map(|(name, _)| (*name).clone()).collect() };
    }
    let with_room: Vec<_> = unpaused.iter().filter(|(_, state)| state.takes_builds()).collect();
    if with_room.is_empty() {
        return Waiting::Busy { workers: unpaused.iter().map(|(name, _)| (*name).clone()).collect() };
    }
    let lock = builder
        .locks
        .iter()
        .find(|one| with_room.iter().all(|(name, _)| !locks.can_acquire(None, std::slice::from_ref(*one), name)));
    match lock {
        Some(lock) => Waiting::Lock { lock: lock.name.clone() },
        // The locks are free one by one but not all together on any worker: name the first.
        None => Waiting::Lock { lock: builder.locks.first().map(|l| l.name.clone()).unwrap_or_default() },
    }
}

/// The worker a build of `builder` would start on now: the least busy that takes builds and on which the
/// builder's locks are free, then the first by name.
pub fn pick(builder: &PendingBuilder, workers: &BTreeMap<String, WorkerState>, locks: &LockTable) -> Option<String> {
    builder
        .workers
        .iter()
        .filter_map(|name| workers.get(name).map(|state| (name, state)))
        .filter(|(name, state)| state.takes_builds() && locks.can_acquire(None, &builder.locks, name))
        .min_by(|(a, sa), (b, sb)| sa.running.cmp(&sb.running).then(a.cmp(b)))
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LockAccess, LockDef, LockKind};
    use crate::queue::locks::Instance;
    use crate::queue::tests::request;
    use proptest::prelude::*;

    fn worker(running: usize, max_builds: Option<usize>, paused: bool) -> WorkerState {
        WorkerState { running, max_builds, paused }
    }

    fn builder(name: &str, requests: Vec<BuildRequest>, workers: &[&str], locks: Vec<LockUse>) -> PendingBuilder {
        PendingBuilder { name: name.into(), requests, workers: workers.iter().map(|w| w.to_string()).collect(), locks }
    }

    fn exclusive(name: &str) -> LockUse {
        LockUse { name: name.into(), access: LockAccess::Exclusive, count: 1 }
    }

    fn master_lock(name: &str, max_count: u32) -> (String, LockDef) {
        let def =
            LockDef { name: name.into(), kind: LockKind::Master, max_count, max_count_for_worker: BTreeMap::new() };
        (name.into(), def)
    }

    #[test]
    fn each_waiting_request_says_why() {
        let reasons = |workers: &[(&str, WorkerState)], locks: &LockTable, uses: Vec<LockUse>| {
            let workers: BTreeMap<String, WorkerState> =
                workers.iter().map(|(name, state)| (name.to_string(), state.clone())).collect();
            let builders = [builder("b", vec![request(1, 0, 10), request(2, 0, 20)], &["x", "y"], uses)];
            plan_with_reasons(&builders, &workers, locks)
        };
        let none = LockTable::default();
        let plan = reasons(&[], &none, vec![]);
        let no_worker = Waiting::NoWorker { workers: vec!["x".into(), "y".into()] };
        assert_eq!(plan.waiting, vec![(1, no_worker.clone()), (2, no_worker)]);
        let plan = reasons(&[("x", worker(0, None, true))], &none, vec![]);
        assert_eq!(plan.waiting[0], (1, Waiting::Paused { workers: vec!["x".into()] }));
        // One slot: the first request starts, the second waits because the worker is then busy.
        let plan = reasons(&[("x", worker(0, Some(1), false)), ("y", worker(0, None, true))], &none, vec![]);
        assert_eq!(plan.assignments.iter().map(|a| a.brid).collect::<Vec<_>>(), vec![1]);
        assert_eq!(plan.waiting, vec![(2, Waiting::Busy { workers: vec!["x".into()] })]);
        // A held exclusive lock.
        let mut locks = LockTable::new([master_lock("db", 1)].into());
        let holder = locks.new_owner();
        assert!(locks.acquire(holder, &[exclusive("db")], "x"));
        let plan = reasons(&[("x", worker(0, None, false))], &locks, vec![exclusive("db")]);
        assert_eq!(plan.waiting[0], (1, Waiting::Lock { lock: "db".into() }));
        assert!(plan.assignments.is_empty());
    }

    #[test]
    fn urgent_builders_first_least_busy_workers_paused_and_full_ones_skipped() {
        let workers: BTreeMap<String, WorkerState> = [
            ("a".to_string(), worker(1, Some(2), false)),
            ("b".to_string(), worker(0, None, true)),
            ("c".to_string(), worker(0, Some(1), false)),
        ]
        .into();
        let builders = [
            builder("low", vec![request(1, 0, 10)], &["a", "b", "c"], vec![]),
            builder("high", vec![request(3, 0, 30), request(2, 5, 20)], &["a", "b", "c"], vec![]),
        ];
        let plan = plan(&builders, &workers, &LockTable::default());
        let got: Vec<(i64, &str)> = plan.iter().map(|a| (a.brid, a.worker.as_str())).collect();
        // high's priority-5 request first, on the idle c; then its other on a (b is paused); a is then full.
        assert_eq!(got, vec![(2, "c"), (3, "a")]);
    }

    #[test]
    fn an_exclusive_lock_lets_one_build_of_two_builders_start() {
        let locks = LockTable::new([master_lock("db", 1)].into());
        let workers: BTreeMap<String, WorkerState> =
            [("x".to_string(), worker(0, None, false)), ("y".to_string(), worker(0, None, false))].into();
        let builders = [
            builder("one", vec![request(1, 0, 10)], &["x"], vec![exclusive("db")]),
            builder("two", vec![request(2, 0, 20)], &["y"], vec![exclusive("db")]),
            builder("free", vec![request(3, 0, 30)], &["x"], vec![]),
        ];
        let plan = plan(&builders, &workers, &locks);
        let got: Vec<(i64, &str)> = plan.iter().map(|a| (a.brid, a.worker.as_str())).collect();
        assert_eq!(got, vec![(1, "x"), (3, "x")], "two waits for db; free is not held up by it");
    }

    const WORKERS: [&str; 4] = ["w0", "w1", "w2", "w3"];
    const LOCKS: [&str; 2] = ["m", "wl"];

    #[derive(Debug, Clone)]
    struct Case {
        builders: Vec<PendingBuilder>,
        workers: BTreeMap<String, WorkerState>,
        defs: BTreeMap<String, LockDef>,
        /// Locks already held by running builds or steps: (uses, worker).
        held: Vec<(Vec<LockUse>, String)>,
    }

    fn arb_use(max: u32) -> impl Strategy<Value = Option<LockUse>> {
        (0..LOCKS.len(), any::<bool>(), 1..=max, any::<bool>()).prop_map(|(lock, exclusive, count, used)| {
            used.then(|| LockUse {
                name: LOCKS[lock].into(),
                access: if exclusive { LockAccess::Exclusive } else { LockAccess::Counting },
                count: if exclusive { 1 } else { count },
            })
        })
    }

    fn arb_uses() -> impl Strategy<Value = Vec<LockUse>> {
        prop::collection::vec(arb_use(2), 0..3).prop_map(|uses| {
            let mut uses: Vec<LockUse> = uses.into_iter().flatten().collect();
            uses.sort_by(|a, b| a.name.cmp(&b.name));
            uses.dedup_by(|a, b| a.name == b.name);
            uses
        })
    }

    fn arb_case() -> impl Strategy<Value = Case> {
        let arb_worker = (0..3usize, prop::option::of(1..4usize), prop::bool::weighted(0.2), prop::bool::weighted(0.8));
        let arb_builder = (
            prop::collection::vec((-2..3i32, 0..50i64), 0..6),
            prop::collection::btree_set(0..WORKERS.len(), 1..=WORKERS.len()),
            arb_uses(),
        );
        (
            prop::collection::vec(arb_worker, WORKERS.len()),
            prop::collection::vec(arb_builder, 1..5),
            (2..4u32, 1..3u32, prop::option::of(2..4u32)),
            prop::collection::vec((arb_uses(), 0..WORKERS.len()), 0..4),
        )
            .prop_map(|(workers, builders, (master_max, worker_max, w0_max), held)| {
                let workers = workers
                    .into_iter()
                    .enumerate()
                    .filter(|(_, (.., connected))| *connected)
                    .map(|(i, (running, max_builds, paused, _))| {
                        (WORKERS[i].to_string(), worker(running, max_builds, paused))
                    })
                    .collect();
                let mut next_id = 0;
                let builders = builders
                    .into_iter()
                    .enumerate()
                    .map(|(i, (requests, on, locks))| {
                        let requests = requests
                            .into_iter()
                            .map(|(priority, at)| {
                                next_id += 1;
                                request(next_id, priority, at)
                            })
                            .collect();
                        let on: Vec<&str> = on.into_iter().map(|w| WORKERS[w]).collect();
                        builder(&format!("b{i}"), requests, &on, locks)
                    })
                    .collect();
                let per_worker = w0_max.map(|n| ("w0".to_string(), n)).into_iter().collect();
                let defs = [
                    master_lock("m", master_max),
                    (
                        "wl".to_string(),
                        LockDef {
                            name: "wl".into(),
                            kind: LockKind::Worker,
                            max_count: worker_max,
                            max_count_for_worker: per_worker,
                        },
                    ),
                ]
                .into();
                let held = held.into_iter().map(|(uses, w)| (uses, WORKERS[w].to_string())).collect();
                Case { builders, workers, defs, held }
            })
    }

    /// The lock table of a case: what running builds and steps hold.
    fn table(case: &Case) -> LockTable {
        let mut t = LockTable::new(case.defs.clone());
        for (uses, worker) in &case.held {
            let owner = t.new_owner();
            t.acquire(owner, uses, worker);
        }
        t
    }

    proptest! {
        #[test]
        fn plans_starve_nothing_keep_order_and_never_overfill(case in arb_case()) {
            let before = table(&case);
            let assignments = plan(&case.builders, &case.workers, &before);

            // Apply the plan.
            let mut workers = case.workers.clone();
            let mut locks = before.clone();
            for a in &assignments {
                let b = case.builders.iter().find(|b| b.name == a.builder).expect("planned builder exists");
                prop_assert!(b.workers.contains(&a.worker), "a worker of its builder");
                let w = workers.get_mut(&a.worker).expect("a connected worker");
                prop_assert!(!w.paused, "never a paused worker");
                prop_assert!(locks.can_acquire(None, &b.locks, &a.worker), "its locks were free");
                w.running += 1;
                prop_assert!(w.max_builds.is_none_or(|max| w.running <= max), "max_builds respected");
                let owner = locks.new_owner();
                prop_assert!(locks.acquire(owner, &b.locks, &a.worker));
            }

            // (c) lock capacities: newly taken units never exceed max_count; exclusive holders are alone.
            for def in case.defs.values() {
                let instances: Vec<Instance> = match def.kind {
                    LockKind::Master => vec![Instance { lock: def.name.clone(), worker: None }],
                    LockKind::Worker => WORKERS.iter().map(|w| Instance { lock: def.name.clone(), worker: Some(w.to_string()) }).collect(),
                };
                for instance in instances {
                    let max = def.max_count_on(instance.worker.as_deref().unwrap_or(""));
                    let (units, exclusive) = locks.held(&instance);
                    let (units_before, _) = before.held(&instance);
                    if units > units_before {
                        prop_assert!(units <= max, "{instance:?}: {units} units > {max}");
                    }
                    if exclusive {
                        prop_assert_eq!(locks.holders(&instance), 1, "{:?}: exclusive holder not alone", instance);
                    }
                }
            }

            for b in &case.builders {
                let mut ordered = b.requests.clone();
                ordered.sort_by_key(urgency);
                let started: Vec<i64> = assignments.iter().filter(|a| a.builder == b.name).map(|a| a.brid).collect();
                // (b) priority, then age: the started requests are the most urgent ones.
                let expected: Vec<i64> = ordered.iter().take(started.len()).map(|r| r.id).collect();
                prop_assert_eq!(&started, &expected);
                // (a) no starvation: a request left waiting has no worker that could run it now.
                if started.len() < ordered.len() {
                    let idle = b.workers.iter().find(|w| {
                        workers.get(*w).is_some_and(|s| s.takes_builds()) && locks.can_acquire(None, &b.locks, w)
                    });
                    prop_assert!(idle.is_none(), "{} waits while {:?} could run it", b.name, idle);
                }
            }
        }
    }
}
