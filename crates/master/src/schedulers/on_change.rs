//! The on-change scheduler (Buildbot's SingleBranchScheduler / AnyBranchScheduler): changes that pass its
//! filter are classified important or not by the files they touch; with a tree-stable timer, a branch's changes
//! are gathered until no change has come for that long, then built together; without one, each important change
//! is built at once.
//!
//! The changes waiting for a branch's timer are kept in the store's object state (name `scheduler:<name>`, key
//! `waiting`), so that a restarted master still builds them: it re-arms each group's timer for the full stable
//! time from its start, as Buildbot does. With them is the id of the last change classified
//! (`last_classified`): at start the scheduler reads the changes after it from the store, so a change stored
//! just before a crash still reaches it, once.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::change_feed::{ChangeFeed, Live};
use super::{state_name, wait_to_retry, Served, LAST_CLASSIFIED_KEY, SAVE_IGNORED_EVERY};
use crate::config::{ChangeFilterDef, ChangeSchedulerDef};
use crate::store::{Change, StateWrite, Store, StoreError};

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

/// The object-state value of the waiting groups.
fn waiting_value(waiting: &Waiting) -> serde_json::Value {
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
    serde_json::to_value(&groups).unwrap_or_else(|e| {
        // A list of plain records always encodes; this only keeps the scheduler going if it did not.
        tracing::error!(error = %e, "could not encode the waiting changes");
        serde_json::Value::Array(Vec::new())
    })
}

/// What the scheduler keeps after taking the changes up to `last`: its waiting groups and that id, to store
/// together (alone, or with the buildset it submits).
fn state_writes(state: &str, waiting: &Waiting, last: i64) -> Vec<StateWrite> {
    vec![
        StateWrite::new(state, WAITING_KEY, waiting_value(waiting)),
        StateWrite::new(state, LAST_CLASSIFIED_KEY, serde_json::json!(last)),
    ]
}

/// What a previous run stored: the last change it classified (`None` for a new scheduler) and the groups it
/// left waiting, each due `stable` from now (changes gone from the store are skipped).
async fn load(store: &Store, state: &str, stable: std::time::Duration) -> Result<(Option<i64>, Waiting), StoreError> {
    let last = match store.get_state(state, LAST_CLASSIFIED_KEY).await? {
        None => None,
        Some(value) => match value.as_i64() {
            Some(last) => Some(last),
            None => {
                tracing::error!(scheduler = %state, %value, "the stored last classified change is unreadable");
                None
            }
        },
    };
    let mut waiting = Waiting::new();
    let Some(value) = store.get_state(state, WAITING_KEY).await? else { return Ok((last, waiting)) };
    let groups: Vec<StoredGroup> = match serde_json::from_value(value) {
        Ok(groups) => groups,
        Err(e) => {
            tracing::error!(scheduler = %state, error = %e, "the stored waiting changes are unreadable");
            return Ok((last, waiting));
        }
    };
    let due = Instant::now() + stable;
    for stored in groups {
        let mut group = Vec::new();
        for id in stored.changes {
            match store.change(id).await? {
                Some(change) => group.push(change),
                None => tracing::warn!(scheduler = %state, change = id, "a waiting change is gone"),
            }
        }
        if !group.is_empty() {
            let key = (stored.codebase, stored.project, stored.repository, stored.branch);
            waiting.entry(key).or_insert_with(|| (Vec::new(), due)).0.extend(group);
        }
    }
    Ok((last, waiting))
}

/// Runs one on-change scheduler until `stop` or until `changes` closes: `submit` gets each group of changes
/// to build (oldest first; the last one names what to build) with the state writes to store in the same
/// transaction as its buildset, and answers whether it stored them.
///
/// It takes every change stored after the last one it classified ([`ChangeFeed`]: from `store`, then live
/// from `changes`); a new scheduler starts after change `start_after` (the last one stored when it was first
/// configured). What it keeps of the changes it classified (the groups waiting for a timer) and the id of the
/// last one are stored together, so a crash at any point neither loses a change nor builds one twice. When a
/// write fails it starts again from what is stored, after [`RETRY_AFTER`](super::RETRY_AFTER).
pub async fn run<F, Fut>(
    def: ChangeSchedulerDef,
    store: Store,
    start_after: i64,
    changes: impl Into<Live>,
    stop: CancellationToken,
    mut submit: F,
) where
    F: FnMut(Vec<Change>, Vec<StateWrite>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut feed = ChangeFeed::new(store.clone(), changes);
    loop {
        match serve(&def, &store, start_after, &mut feed, &stop, &mut submit).await {
            Served::Stopped => return,
            Served::Failed => {
                if !wait_to_retry(&def.name, &stop, feed.drop_live()).await {
                    return;
                }
            }
        }
    }
}

/// Runs the scheduler from its stored state until it stops or a store operation fails.
async fn serve<F, Fut>(
    def: &ChangeSchedulerDef,
    store: &Store,
    start_after: i64,
    feed: &mut ChangeFeed,
    stop: &CancellationToken,
    submit: &mut F,
) -> Served
where
    F: FnMut(Vec<Change>, Vec<StateWrite>) -> Fut,
    Fut: Future<Output = bool>,
{
    let classifier = Classifier::new(&def.filter, &def.files);
    let state = state_name(&def.name);
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(scheduler = %def.name, error = %e, "{what}");
        Served::Failed
    };
    // Without a timer any more (the config changed), what was waiting is built at once.
    let (last, mut waiting) = match load(store, &state, def.tree_stable_timer.unwrap_or_default()).await {
        Ok(loaded) => loaded,
        Err(e) => return failed("could not read the scheduler's state", &e),
    };
    let last = match last {
        Some(last) => last,
        None => {
            // A new scheduler: the changes stored before it was configured are not its own.
            let writes = state_writes(&state, &waiting, start_after);
            if let Err(e) = store.set_states(&writes).await {
                return failed("could not store the scheduler's state", &e);
            }
            start_after
        }
    };
    feed.resume_after(last);
    // Changes taken since the state was last stored, none of which changed it.
    let mut unsaved = 0;
    loop {
        let next_deadline = waiting.values().map(|(_, deadline)| *deadline).min();
        let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        if unsaved >= SAVE_IGNORED_EVERY {
            if let Err(e) = store.set_states(&state_writes(&state, &waiting, feed.last())).await {
                return failed("could not store the scheduler's state", &e);
            }
            unsaved = 0;
        }
        tokio::select! {
            // Biased: a due timer is served before the next change (and the order is deterministic).
            biased;
            () = stop.cancelled() => {
                if unsaved > 0 {
                    // Only saves reading those changes again at the next start.
                    let _ = store.set_states(&state_writes(&state, &waiting, feed.last())).await;
                }
                return Served::Stopped;
            }
            () = tokio::time::sleep_until(next_deadline.unwrap_or(far)), if next_deadline.is_some() => {
                let now = Instant::now();
                let due: Vec<BranchKey> =
                    waiting.iter().filter(|(_, (_, deadline))| *deadline <= now).map(|(key, _)| key.clone()).collect();
                for key in due {
                    if let Some((group, _)) = waiting.remove(&key) {
                        // Exactly once: the group leaves the stored state in its buildset's transaction.
                        if !submit(group, state_writes(&state, &waiting, feed.last())).await {
                            return Served::Failed;
                        }
                        unsaved = 0;
                    }
                }
            }
            next = feed.next() => {
                let scheduled = match next {
                    Ok(Some(change)) => change,
                    Ok(None) => return Served::Stopped,
                    Err(e) => return failed("could not read the changes", &e),
                };
                let important = classifier.classify(&scheduled).filter(|important| *important || !def.only_important);
                let Some(is_important) = important else {
                    unsaved += 1;
                    continue;
                };
                match def.tree_stable_timer {
                    None if is_important => {
                        if !submit(vec![scheduled], state_writes(&state, &waiting, feed.last())).await {
                            return Served::Failed;
                        }
                        unsaved = 0;
                    }
                    None => unsaved += 1,
                    Some(stable) => {
                        let key = branch_key(&scheduled);
                        // An unimportant change joins (and restarts) a running timer but starts none.
                        if is_important || waiting.contains_key(&key) {
                            let entry = waiting.entry(key).or_insert_with(|| (Vec::new(), Instant::now()));
                            entry.0.push(scheduled);
                            entry.1 = Instant::now() + stable;
                            if let Err(e) = store.set_states(&state_writes(&state, &waiting, feed.last())).await {
                                return failed("could not store the waiting changes", &e);
                            }
                            unsaved = 0;
                        } else {
                            unsaved += 1;
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

    use tokio::sync::mpsc;

    use super::*;
    use crate::changes::NewChange;
    use crate::schedulers::testing::{barrier, hold_clock, new_change};
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
            cancel_superseded: false,
        }
    }

    /// A change the driver stores at its second, and announces to the scheduler unless `silent` (as a lagging
    /// broadcast would lose it).
    struct Fed {
        at: u64,
        change: NewChange,
        silent: bool,
    }

    fn at(at: u64, change: NewChange) -> Fed {
        Fed { at, change, silent: false }
    }

    fn unannounced(at: u64, change: NewChange) -> Fed {
        Fed { at, change, silent: true }
    }

    /// What a run submitted: (seconds, ids) per group stored.
    type Submits = Vec<(u64, Vec<i64>)>;

    /// Runs a scheduler on `store` (new ones start after `start_after`), the clock moving a second at a time,
    /// storing and announcing the changes of `feed` at their seconds; stops it at `end`. Its submits store their
    /// state writes, as the master does with the buildset, except the first `failing` ones, which store nothing.
    async fn drive_failing(
        def: ChangeSchedulerDef,
        store: &Store,
        start_after: i64,
        feed: Vec<Fed>,
        end: u64,
        failing: usize,
    ) -> Submits {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let submitted = Arc::new(Mutex::new((Vec::new(), failing)));
        let (sink, writer) = (submitted.clone(), store.clone());
        let task = tokio::spawn(run(def, store.clone(), start_after, rx, stop.clone(), move |group, writes| {
            let (sink, writer) = (sink.clone(), writer.clone());
            async move {
                let fail = {
                    let mut sink = sink.lock().expect("lock");
                    let fail = sink.1 > 0;
                    sink.1 = sink.1.saturating_sub(1);
                    fail
                };
                if fail || writer.set_states(&writes).await.is_err() {
                    return false;
                }
                let at = start.elapsed().as_secs();
                sink.lock().expect("lock").0.push((at, group.iter().map(|c| c.id).collect::<Vec<_>>()));
                true
            }
        }));
        barrier(&tx).await;
        let mut feed = feed.into_iter().peekable();
        for second in 0..=end {
            if second > 0 {
                tokio::time::advance(Duration::from_secs(1)).await;
                // Twice: a scheduler waiting to start again drops what it is sent, a barrier's half at most
                // before its wait ends.
                barrier(&tx).await;
                barrier(&tx).await;
            }
            while let Some(fed) = feed.next_if(|fed| fed.at == second) {
                let id = store.add_change(&fed.change).await.expect("add change");
                if !fed.silent {
                    tx.send(store.change(id).await.expect("get").expect("stored")).await.expect("scheduler running");
                }
                barrier(&tx).await;
            }
        }
        assert!(feed.next().is_none(), "the feed must be in order and end by {end}");
        stop.cancel();
        task.await.expect("scheduler task");
        let submitted = submitted.lock().expect("lock").0.clone();
        submitted
    }

    /// [`drive_failing`] with every submit storing.
    async fn drive_on(def: ChangeSchedulerDef, store: &Store, feed: Vec<Fed>, end: u64) -> Submits {
        drive_failing(def, store, 0, feed, end, 0).await
    }

    /// [`drive_on`] a fresh store (the changes' ids are their places in the feed).
    async fn drive(def: ChangeSchedulerDef, feed: Vec<Fed>, end: u64) -> Submits {
        let (store, _dir) = temp_store().await;
        drive_on(def, &store, feed, end).await
    }

    async fn stored_waiting(store: &Store) -> Option<serde_json::Value> {
        store.get_state("scheduler:s", WAITING_KEY).await.expect("get state")
    }

    async fn last_classified(store: &Store) -> Option<serde_json::Value> {
        store.get_state("scheduler:s", LAST_CLASSIFIED_KEY).await.expect("get state")
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timer_each_important_change_builds_at_once() {
        let _clock = hold_clock();
        let feed = vec![
            at(1, new_change("1", "main", &["a.c"])),
            at(2, new_change("2", "main", &["doc.md"])),
            at(3, new_change("3", "dev", &["b.c"])),
        ];
        let submitted = drive(scheduler(None, &["*.c"], Some(&["main"])), feed, 10).await;
        assert_eq!(submitted, vec![(1, vec![1])]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_tree_stable_timer_restarts_on_each_change_per_branch() {
        let _clock = hold_clock();
        let feed = vec![
            at(0, new_change("1", "main", &["a.c"])),
            at(30, new_change("2", "main", &["b.c"])),
            at(40, new_change("3", "dev", &["c.c"])),
            at(80, new_change("4", "main", &["doc.md"])), // unimportant: joins and restarts main's running timer
            at(200, new_change("5", "main", &["doc.md"])), // unimportant, no timer running: starts nothing
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
        let tagged = NewChange { category: Some("tag".into()), ..new_change("3", "release/2.0", &[]) };
        let pushed = NewChange { category: Some("push".into()), ..new_change("2", "release/1.0", &[]) };
        let feed = vec![at(1, new_change("1", "main", &[])), at(2, pushed), at(3, tagged)];
        assert_eq!(drive(def, feed, 10).await, vec![(2, vec![2])]);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_waiting_at_a_stop_are_built_once_by_the_next_run_after_the_stable_time() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = scheduler(Some(60), &["*.c"], None);

        let feed = vec![
            at(0, new_change("a", "main", &["a.c"])),
            at(10, new_change("b", "main", &["b.c"])),
            at(20, new_change("c", "dev", &["c.c"])),
        ];
        assert_eq!(drive_on(def.clone(), &store, feed, 30).await, vec![]);
        assert_eq!(
            stored_waiting(&store).await,
            Some(json!([
                {"codebase": "", "project": "", "repository": "repo", "branch": "dev", "changes": [3]},
                {"codebase": "", "project": "", "repository": "repo", "branch": "main", "changes": [1, 2]},
            ]))
        );
        assert_eq!(last_classified(&store).await, Some(json!(3)));

        // The timers start again, for the full stable time, when the scheduler does.
        let submitted = drive_on(def.clone(), &store, vec![], 200).await;
        assert_eq!(submitted, vec![(60, vec![3]), (60, vec![1, 2])]);
        assert_eq!(stored_waiting(&store).await, Some(json!([])));
        assert_eq!(drive_on(def, &store, vec![], 200).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_submitted_group_is_not_built_again_by_the_next_run() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = scheduler(Some(60), &["*.c"], None);

        let feed = vec![at(0, new_change("a", "main", &["a.c"]))];
        assert_eq!(drive_on(def.clone(), &store, feed, 100).await, vec![(60, vec![1])]);
        assert_eq!(stored_waiting(&store).await, Some(json!([])));
        assert_eq!(drive_on(def.clone(), &store, vec![], 200).await, vec![]);

        // A new change after the restart starts its own group.
        let feed = vec![at(5, new_change("b", "main", &["b.c"]))];
        assert_eq!(drive_on(def, &store, feed, 100).await, vec![(65, vec![2])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_change_gone_from_the_store_is_skipped() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let a = store.add_change(&new_change("a", "main", &["a.c"])).await.expect("add");
        let groups = json!([
            {"codebase": "", "project": "", "repository": "repo", "branch": "main", "changes": [a + 100, a]},
        ]);
        store.set_state("scheduler:s", WAITING_KEY, &groups).await.expect("set state");
        let submitted = drive_failing(scheduler(Some(60), &[], None), &store, a, vec![], 100, 0).await;
        assert_eq!(submitted, vec![(60, vec![a])]);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_stored_while_it_was_down_are_built_at_start_once() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = scheduler(None, &[], Some(&["main"]));
        let feed = vec![at(1, new_change("a", "main", &[]))];
        assert_eq!(drive_on(def.clone(), &store, feed, 5).await, vec![(1, vec![1])]);

        // Stored by a master that was killed before any scheduler saw them (a poll, a hook).
        for (revision, branch) in [("b", "main"), ("c", "dev"), ("d", "main"), ("e", "dev")] {
            store.add_change(&new_change(revision, branch, &[])).await.expect("add");
        }
        let feed = vec![at(3, new_change("f", "main", &[]))];
        assert_eq!(drive_on(def.clone(), &store, feed, 5).await, vec![(0, vec![2]), (0, vec![4]), (3, vec![6])]);
        assert_eq!(last_classified(&store).await, Some(json!(6)));
        assert_eq!(drive_on(def, &store, vec![], 5).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_grouped_before_a_crash_is_built_with_its_group_only() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = scheduler(Some(60), &[], None);
        // The run ends (as a crash would) with `a` and `b` waiting; `c` is stored after that, never announced.
        let feed = vec![at(0, new_change("a", "main", &[])), at(10, new_change("b", "main", &[]))];
        assert_eq!(drive_on(def.clone(), &store, feed, 20).await, vec![]);
        store.add_change(&new_change("c", "main", &[])).await.expect("add");
        let submitted = drive_on(def.clone(), &store, vec![], 100).await;
        assert_eq!(submitted, vec![(60, vec![1, 2, 3])], "read back, `c` joins the waiting group");
        assert_eq!(drive_on(def, &store, vec![], 100).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_scheduler_starts_after_the_changes_stored_before_it() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = scheduler(None, &[], None);
        let old = store.add_change(&new_change("old", "main", &[])).await.expect("add");
        assert_eq!(drive_failing(def.clone(), &store, old, vec![], 3, 0).await, vec![]);
        assert_eq!(last_classified(&store).await, Some(json!(old)));
        // Its stored state wins over a later `start_after`.
        let feed = vec![at(1, new_change("new", "main", &[]))];
        assert_eq!(drive_failing(def, &store, old + 5, feed, 3, 0).await, vec![(1, vec![old + 1])]);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_missed_live_are_read_from_the_store_in_order() {
        let _clock = hold_clock();
        let feed = vec![
            at(1, new_change("1", "main", &[])),
            unannounced(2, new_change("2", "main", &[])),
            unannounced(2, new_change("3", "main", &[])),
            at(4, new_change("4", "main", &[])),
        ];
        let submitted = drive(scheduler(None, &[], None), feed, 6).await;
        assert_eq!(submitted, vec![(1, vec![1]), (4, vec![2]), (4, vec![3]), (4, vec![4])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_submit_is_retried_from_the_stored_state_and_builds_once() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let feed = vec![at(1, new_change("1", "main", &[])), at(2, new_change("2", "main", &[]))];
        let submitted = drive_failing(scheduler(None, &[], None), &store, 0, feed, 20, 1).await;
        let retried = 1 + crate::schedulers::RETRY_AFTER.as_secs();
        assert_eq!(submitted, vec![(retried, vec![1]), (retried, vec![2])]);
        assert_eq!(last_classified(&store).await, Some(json!(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_backlog_is_read_by_pages_each_change_once() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let count = i64::from(crate::schedulers::change_feed::PAGE) + 50;
        for n in 1..=count {
            let branch = if n % 2 == 0 { "main" } else { "dev" };
            store.add_change(&new_change(&n.to_string(), branch, &[])).await.expect("add");
        }
        let submitted = drive_on(scheduler(None, &[], Some(&["main"])), &store, vec![], 1).await;
        let built: Vec<i64> = submitted.iter().flat_map(|(_, ids)| ids.clone()).collect();
        assert_eq!(built, (1..=count).filter(|n| n % 2 == 0).collect::<Vec<_>>());
        assert_eq!(last_classified(&store).await, Some(json!(count)));
    }
}
