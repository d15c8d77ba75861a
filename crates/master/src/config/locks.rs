//! `[[lock]]`: master and worker locks (Buildbot's `MasterLock` and `WorkerLock`), and the `locks` key of builders
//! and steps that takes them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{check_name, context_of, declared_name, read};

/// A lock (`[[lock]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDef {
    pub name: String,
    pub kind: LockKind,
    /// How many counting units it holds (per worker for a worker lock).
    pub max_count: u32,
    /// A worker lock's `max_count` on the named workers.
    pub max_count_for_worker: BTreeMap<String, u32>,
}

impl LockDef {
    /// The capacity of the lock's instance on `worker` (a master lock has one instance, whatever the worker).
    pub fn max_count_on(&self, worker: &str) -> u32 {
        match self.kind {
            LockKind::Master => self.max_count,
            LockKind::Worker => self.max_count_for_worker.get(worker).copied().unwrap_or(self.max_count),
        }
    }
}

/// Where a lock's instances live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKind {
    /// One instance in the master.
    Master,
    /// One instance per worker.
    Worker,
}

/// How a builder or a step takes a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockUse {
    pub name: String,
    pub access: LockAccess,
    /// Units taken (always 1 for exclusive access).
    pub count: u32,
}

/// Counting access shares a lock up to its `max_count`; exclusive access holds it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockAccess {
    Counting,
    Exclusive,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    max_count: Option<Spanned<u32>>,
    #[serde(default)]
    max_count_for_worker: Option<Spanned<BTreeMap<String, u32>>>,
}

/// A lock as a builder or step names it: `"db"` or `{ name = "db", access = "exclusive", count = 1 }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawLockUse {
    Name(String),
    Table(RawLockTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLockTable {
    name: String,
    access: Option<String>,
    count: Option<u32>,
}

/// Reads the `[[lock]]` tables, by name.
pub(super) fn read_locks(
    tables: Vec<Spanned<DeValue<'_>>>,
    worker_names: &BTreeSet<String>,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, LockDef> {
    let mut names = BTreeSet::new();
    let mut locks = BTreeMap::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("lock", declared.as_deref(), index);
        let Some(raw) = read::<RawLock>(table, problems, Some(&context), "lock") else { continue };
        let mut valid = check_name(&raw.name, &mut names, &context, "lock", problems);
        let kind = match raw.kind.get_ref().as_str() {
            "master" => LockKind::Master,
            "worker" => LockKind::Worker,
            other => {
                let message = format!("unknown lock type '{other}' (known: master, worker)");
                problems.add(raw.kind.span(), Some(&context), "type", message);
                continue;
            }
        };
        let max_count = raw.max_count.as_ref().map_or(1, |m| *m.get_ref());
        if let Some(m) = raw.max_count.as_ref().filter(|m| *m.get_ref() == 0) {
            problems.add(m.span(), Some(&context), "max_count", "must be at least 1");
            valid = false;
        }
        let mut per_worker = BTreeMap::new();
        if let Some(map) = raw.max_count_for_worker {
            let span = map.span();
            if kind == LockKind::Master {
                let message = "only a worker lock has per-worker counts";
                problems.add(span.clone(), Some(&context), "max_count_for_worker", message);
                valid = false;
            }
            for (worker, count) in map.into_inner() {
                if !worker_names.contains(&worker) {
                    let message = format!("unknown worker '{worker}'");
                    problems.add(span.clone(), Some(&context), "max_count_for_worker", message);
                    valid = false;
                } else if count == 0 {
                    let message = format!("the count for worker '{worker}' must be at least 1");
                    problems.add(span.clone(), Some(&context), "max_count_for_worker", message);
                    valid = false;
                }
                per_worker.insert(worker, count);
            }
        }
        if valid {
            let name = raw.name.into_inner();
            locks.insert(name.clone(), LockDef { name, kind, max_count, max_count_for_worker: per_worker });
        }
    }
    locks
}

/// Checks the `locks` of a builder or step against the `[[lock]]` tables.
pub(super) fn check_lock_uses(
    raw: Option<Vec<Spanned<RawLockUse>>>,
    locks: &BTreeMap<String, LockDef>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Vec<LockUse> {
    let mut uses = Vec::new();
    let mut seen = BTreeSet::new();
    for raw in raw.into_iter().flatten() {
        let span = raw.span();
        let (name, access, count) = match raw.into_inner() {
            RawLockUse::Name(name) => (name, None, None),
            RawLockUse::Table(RawLockTable { name, access, count }) => (name, access, count),
        };
        let mut problem = |message: String| problems.add(span.clone(), Some(context), "locks", message);
        let Some(def) = locks.get(&name) else {
            problem(format!("unknown lock '{name}'"));
            continue;
        };
        if !seen.insert(name.clone()) {
            problem(format!("lock '{name}' is listed twice"));
            continue;
        }
        let access = match access.as_deref() {
            None | Some("counting") => LockAccess::Counting,
            Some("exclusive") => LockAccess::Exclusive,
            Some(other) => {
                problem(format!("lock '{name}': unknown access '{other}' (known: counting, exclusive)"));
                continue;
            }
        };
        let count = count.unwrap_or(1);
        let largest = def.max_count_for_worker.values().copied().chain([def.max_count]).max().unwrap_or(1);
        if count == 0 {
            problem(format!("lock '{name}': count must be at least 1"));
        } else if access == LockAccess::Exclusive && count != 1 {
            problem(format!("lock '{name}': exclusive access takes a count of 1, not {count}"));
        } else if count > largest {
            problem(format!("lock '{name}': count {count} is more than its max_count ({largest})"));
        } else {
            uses.push(LockUse { name, access, count });
        }
    }
    uses
}
