//! The on-change scheduler (Buildbot's SingleBranchScheduler / AnyBranchScheduler): changes that pass its
//! filter are classified important or not by the files they touch; with a tree-stable timer, a branch's changes
//! are gathered until no change has come for that long, then built together; without one, each important change
//! is built at once.
//!
//! The changes waiting for a branch's timer are kept in the store's object state (name `scheduler:<name>`, key
//! `waiting`), so that a restarted master still builds them: it re-arms each group's timer for the full stable
//! time from its start, as Buildbot does.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state_name;
use crate::config::{ChangeFilterDef, ChangeSchedulerDef};
use crate::store::{Change, Store};

/// The object-state key of the changes waiting for a tree-stable timer.
pub const WAITING_KEY: &str = "waiting";

/// A change filter with its patterns compiled.
#[derive(Debug, Clone)]
pub struct ChangeFilter {
    def: ChangeFilterDef,
    branch_pattern: Option<glob::Pattern>,
}

impl ChangeFilter {
    pub fn new(def: &ChangeFilterDef) -> ChangeFilter {
        let branch_pattern = def.branch_pattern.as_deref().and_then(|p| glob::Pattern::new(p).ok());
        ChangeFilter { def: def.clone(), branch_pattern }
    }

    pub fn matches(&self, change: &Change) -> bool {
        let same = |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        let branch = change.branch.as_deref().unwrap_or("");
        same(&self.def.repository, &change.repository)
            && same(&self.def.project, &change.project)
            && same(&self.def.codebase, &change.codebase)
            && same(&self.def.category, change.category.as_deref().unwrap_or(""))
            && self.def.branches.as_ref().is_none_or(|names| names.iter().any(|n| n == branch))
            && self.branch_pattern.as_ref().is_none_or(|p| p.matches(branch))
    }
}

/// What a scheduler makes of a change: whether it passes the filter, and whether it is important (touches one of
/// the important files; every change is when there are none — Buildbot's `fileIsImportant`).
#[derive(Debug, Clone)]
pub struct Classifier {
    filter: ChangeFilter,
    files: Vec<glob::Pattern>,
}

impl Classifier {
    pub fn new(filter: &ChangeFilterDef, files: &[String]) -> Classifier {
        let files = files.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
        Classifier { filter: ChangeFilter::new(filter), files }
    }

    /// `None` if the change does not pass the filter, else whether it is important.
    pub fn classify(&self, change: &Change) -> Option<bool> {
        if !self.filter.matches(change) {
            return None;
        }
        let files = &self.files;
        Some(files.is_empty() || change.files.iter().any(|f| files.iter().any(|p| p.matches(f))))
    }
}

/// Which changes are built together: those of one branch of one repository.
type BranchKey = (String, String, String, Option<String>);

fn branch_key(change: &Change) -> BranchKey {
    (change.codebase.clone(), change.project.clone(), change.repository.clone(), change.branch.clone())
}

/// The changes waiting for a timer: per branch, the group (oldest first) and when it is due.
type Waiting = BTreeMap<BranchKey, (Vec<Change>, Instant)>;

/// One waiting group as stored: its branch and its changes' ids, oldest first.
#[derive(Debug, Serialize, Deserialize)]
struct StoredGroup {
    codebase: String,
    project: String,
    repository: String,
    branch: Option<String>,
    changes: Vec<i64>,
}

/// Stores the waiting groups of the scheduler (`state` is its object-state name); a failure is logged, and the
/// scheduler goes on with what it has in memory.
async fn save_waiting(store: &Store, state: &str, waiting: &Waiting) {
    let groups: Vec<StoredGroup> = waiting
        .iter()
        .map(|((codebase, project, repository, branch), (group, _))| StoredGroup {
            codebase: codebase.clone(),
            project: project.clone(),
            repository: repository.clone(),
            branch: branch.clone(),
            changes: group.iter().map(|c| c.id).collect(),
        })
        .collect();
    let value = match serde_json::to_value(&groups) {
        Ok(value) => value,
        Err(e) => {
            tracing::error!(scheduler = %state, error = %e, "could not encode the waiting changes");
            return;
        }
    };
    if let Err(e) = store.set_state(state, WAITING_KEY, &value).await {
        tracing::error!(scheduler = %state, error = %e, "could not store the waiting changes");
    }
}

/// The groups a previous run left waiting, each due `stable` from now; changes gone from the store are skipped.
async fn load_waiting(store: &Store, state: &str, stable: std::time::Duration) -> Waiting {
    let mut waiting = Waiting::new();
    let value = match store.get_state(state, WAITING_KEY).await {
        Ok(Some(value)) => value,
        Ok(None) => return waiting,
        Err(e) => {
            tracing::error!(scheduler = %state, error = %e, "could not read the waiting changes");
            return waiting;
        }
    };
    let groups: Vec<StoredGroup> = match serde_json::from_value(value) {
        Ok(groups) => groups,
        Err(e) => {
            tracing::error!(scheduler = %state, error = %e, "the stored waiting changes are unreadable");
            return waiting;
        }
    };
    let due = Instant::now() + stable;
    for stored in groups {
        let mut group = Vec::new();
        for id in stored.changes {
            match store.change(id).await {
                Ok(Some(change)) => group.push(change),
                Ok(None) => tracing::warn!(scheduler = %state, change = id, "a waiting change is gone"),
                Err(e) => {
                    tracing::error!(scheduler = %state, change = id, error = %e, "could not read a waiting change")
                }
            }
        }
        if !group.is_empty() {
            let key = (stored.codebase, stored.project, stored.repository, stored.branch);
            waiting.entry(key).or_insert_with(|| (Vec::new(), due)).0.extend(group);
        }
    }
    waiting
}

/// Runs one on-change scheduler until `stop` or until `changes` closes: `submit` gets each group of changes
/// to build (oldest first; the last one names what to build). The changes waiting for a timer are kept in
/// `store` (see the module's documentation); those a previous run left are taken up first.
pub async fn run<F, Fut>(
    def: ChangeSchedulerDef,
    store: Store,
    mut changes: mpsc::Receiver<Change>,
    stop: CancellationToken,
    mut submit: F,
) where
    F: FnMut(Vec<Change>) -> Fut,
    Fut: Future<Output = ()>,
{
    let classifier = Classifier::new(&def.filter, &def.files);
    let state = state_name(&def.name);
    // Without a timer any more (the config changed), what was waiting is built at once.
    let mut waiting = load_waiting(&store, &state, def.tree_stable_timer.unwrap_or_default()).await;
    loop {
        let next_deadline = waiting.values().map(|(_, deadline)| *deadline).min();
        let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        tokio::select! {
            // Biased: a due timer is served before the next change (and the order is deterministic).
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next_deadline.unwrap_or(far)), if next_deadline.is_some() => {
                let now = Instant::now();
                let due: Vec<BranchKey> =
                    waiting.iter().filter(|(_, (_, deadline))| *deadline <= now).map(|(key, _)| key.clone()).collect();
                for key in due {
                    if let Some((group, _)) = waiting.remove(&key) {
                        // At least once: the group leaves the stored state only after it is submitted, so a crash
                        // between the two builds it again on restart rather than never.
                        submit(group).await;
                        save_waiting(&store, &state, &waiting).await;
                    }
                }
            }
            received = changes.recv() => {
                let Some(scheduled) = received else { return };
                let Some(is_important) = classifier.classify(&scheduled) else { continue };
                if !is_important && def.only_important {
                    continue;
                }
                match def.tree_stable_timer {
                    None if is_important => submit(vec![scheduled]).await,
                    None => {}
                    Some(stable) => {
                        let key = branch_key(&scheduled);
                        // An unimportant change joins (and restarts) a running timer but starts none.
                        if is_important || waiting.contains_key(&key) {
                            let entry = waiting.entry(key).or_insert_with(|| (Vec::new(), Instant::now()));
                            entry.0.push(scheduled);
                            entry.1 = Instant::now() + stable;
                            save_waiting(&store, &state, &waiting).await;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::schedulers::testing::{barrier, change, hold_clock, stored};
    use crate::store::testing::temp_store;

    /// Every test change is of `repo`: the scheduler ignores others (see [`barrier`]).
    fn scheduler(timer: Option<u64>, files: &[&str], branches: Option<&[&str]>) -> ChangeSchedulerDef {
        ChangeSchedulerDef {
            name: "s".into(),
            builders: vec!["b".into()],
            filter: ChangeFilterDef {
                repository: Some("repo".into()),
                branches: branches.map(|b| b.iter().map(|s| s.to_string()).collect()),
                ..ChangeFilterDef::default()
            },
            files: files.iter().map(|f| f.to_string()).collect(),
            only_important: false,
            tree_stable_timer: timer.map(Duration::from_secs),
            priority: None,
        }
    }

    /// Feeds `(seconds after start, change)` to a scheduler on `store`, the clock moving a second at a time;
    /// stops it at `end`; returns (seconds, ids) per submit.
    async fn drive_on(
        def: ChangeSchedulerDef,
        store: &Store,
        feed: Vec<(u64, Change)>,
        end: u64,
    ) -> Vec<(u64, Vec<i64>)> {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let submitted = Arc::new(Mutex::new(Vec::new()));
        let sink = submitted.clone();
        let task = tokio::spawn(run(def, store.clone(), rx, stop.clone(), move |group| {
            let sink = sink.clone();
            async move {
                let at = start.elapsed().as_secs();
                sink.lock().expect("lock").push((at, group.iter().map(|c| c.id).collect::<Vec<_>>()));
            }
        }));
        barrier(&tx).await;
        let mut feed = feed.into_iter().peekable();
        for second in 0..=end {
            if second > 0 {
                tokio::time::advance(Duration::from_secs(1)).await;
                barrier(&tx).await;
            }
            while let Some((_, change)) = feed.next_if(|(at, _)| *at == second) {
                tx.send(change).await.expect("scheduler running");
                barrier(&tx).await;
            }
        }
        assert!(feed.next().is_none(), "the feed must be in order and end by {end}");
        stop.cancel();
        task.await.expect("scheduler task");
        let submitted = submitted.lock().expect("lock").clone();
        submitted
    }

    /// [`drive_on`] a fresh store.
    async fn drive(def: ChangeSchedulerDef, feed: Vec<(u64, Change)>, end: u64) -> Vec<(u64, Vec<i64>)> {
        let (store, _dir) = temp_store().await;
        drive_on(def, &store, feed, end).await
    }

    async fn stored_waiting(store: &Store) -> Option<serde_json::Value> {
        store.get_state("scheduler:s", WAITING_KEY).await.expect("get state")
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timer_each_important_change_builds_at_once() {
        let _clock = hold_clock();
        let feed = vec![
            (1, change(1, "main", &["a.c"])),
            (2, change(2, "main", &["doc.md"])),
            (3, change(3, "dev", &["b.c"])),
        ];
        let submitted = drive(scheduler(None, &["*.c"], Some(&["main"])), feed, 10).await;
        assert_eq!(submitted, vec![(1, vec![1])]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_tree_stable_timer_restarts_on_each_change_per_branch() {
        let _clock = hold_clock();
        let feed = vec![
            (0, change(1, "main", &["a.c"])),
            (30, change(2, "main", &["b.c"])),
            (40, change(3, "dev", &["c.c"])),
            (80, change(4, "main", &["doc.md"])), // unimportant: joins and restarts main's running timer
            (200, change(5, "main", &["doc.md"])), // unimportant, no timer running: starts nothing
        ];
        let submitted = drive(scheduler(Some(60), &["*.c"], None), feed, 400).await;
        assert_eq!(submitted, vec![(100, vec![3]), (140, vec![1, 2, 4])]);
    }

    #[tokio::test(start_paused = true)]
    async fn filters_by_repository_branch_pattern_and_category() {
        let _clock = hold_clock();
        let mut def = scheduler(None, &[], None);
        def.filter.branch_pattern = Some("release/*".into());
        def.filter.category = Some("push".into());
        let mut tagged = change(3, "release/2.0", &[]);
        tagged.reported.category = Some("tag".into());
        let mut pushed = change(2, "release/1.0", &[]);
        pushed.reported.category = Some("push".into());
        let feed = vec![(1, change(1, "main", &[])), (2, pushed), (3, tagged)];
        assert_eq!(drive(def, feed, 10).await, vec![(2, vec![2])]);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_waiting_at_a_stop_are_built_once_by_the_next_run_after_the_stable_time() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let (a, b) = (stored(&store, "a", "main", &["a.c"]).await, stored(&store, "b", "main", &["b.c"]).await);
        let c = stored(&store, "c", "dev", &["c.c"]).await;
        let (ida, idb, idc) = (a.id, b.id, c.id);
        let def = scheduler(Some(60), &["*.c"], None);

        let feed = vec![(0, a), (10, b), (20, c)];
        assert_eq!(drive_on(def.clone(), &store, feed, 30).await, vec![]);
        assert_eq!(
            stored_waiting(&store).await,
            Some(json!([
                {"codebase": "", "project": "", "repository": "repo", "branch": "dev", "changes": [idc]},
                {"codebase": "", "project": "", "repository": "repo", "branch": "main", "changes": [ida, idb]},
            ]))
        );

        // The timers start again, for the full stable time, when the scheduler does.
        let submitted = drive_on(def.clone(), &store, vec![], 200).await;
        assert_eq!(submitted, vec![(60, vec![idc]), (60, vec![ida, idb])]);
        assert_eq!(stored_waiting(&store).await, Some(json!([])));
        assert_eq!(drive_on(def, &store, vec![], 200).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_submitted_group_is_not_built_again_by_the_next_run() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let a = stored(&store, "a", "main", &["a.c"]).await;
        let id = a.id;
        let def = scheduler(Some(60), &["*.c"], None);

        assert_eq!(drive_on(def.clone(), &store, vec![(0, a)], 100).await, vec![(60, vec![id])]);
        assert_eq!(stored_waiting(&store).await, Some(json!([])));
        assert_eq!(drive_on(def.clone(), &store, vec![], 200).await, vec![]);

        // A new change after the restart starts its own group.
        let b = stored(&store, "b", "main", &["b.c"]).await;
        let idb = b.id;
        assert_eq!(drive_on(def, &store, vec![(5, b)], 100).await, vec![(65, vec![idb])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_change_gone_from_the_store_is_skipped() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let a = stored(&store, "a", "main", &["a.c"]).await;
        let groups = json!([
            {"codebase": "", "project": "", "repository": "repo", "branch": "main", "changes": [a.id + 100, a.id]},
        ]);
        store.set_state("scheduler:s", WAITING_KEY, &groups).await.expect("set state");
        let submitted = drive_on(scheduler(Some(60), &[], None), &store, vec![], 100).await;
        assert_eq!(submitted, vec![(60, vec![a.id])]);
    }
}
