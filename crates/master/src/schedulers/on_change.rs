//! The on-change scheduler (Buildbot's SingleBranchScheduler / AnyBranchScheduler): changes that pass its
//! filter are classified important or not by the files they touch; with a tree-stable timer, a branch's changes
//! are gathered until no change has come for that long, then built together; without one, each important change
//! is built at once.

use std::collections::HashMap;
use std::future::Future;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ChangeFilterDef, ChangeSchedulerDef};
use crate::store::Change;

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

/// Which changes are built together: those of one branch of one repository.
type BranchKey = (String, String, String, Option<String>);

fn branch_key(change: &Change) -> BranchKey {
    (change.codebase.clone(), change.project.clone(), change.repository.clone(), change.branch.clone())
}

/// Runs one on-change scheduler until `stop` or until `changes` closes: `submit` gets each group of changes
/// to build (oldest first; the last one names what to build).
pub async fn run<F, Fut>(
    def: ChangeSchedulerDef,
    mut changes: mpsc::Receiver<Change>,
    stop: CancellationToken,
    mut submit: F,
) where
    F: FnMut(Vec<Change>) -> Fut,
    Fut: Future<Output = ()>,
{
    let filter = ChangeFilter::new(&def.filter);
    let files: Vec<glob::Pattern> = def.files.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
    let important =
        |change: &Change| files.is_empty() || change.files.iter().any(|f| files.iter().any(|p| p.matches(f)));
    let mut waiting: HashMap<BranchKey, (Vec<Change>, Instant)> = HashMap::new();
    loop {
        let next_deadline = waiting.values().map(|(_, deadline)| *deadline).min();
        let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next_deadline.unwrap_or(far)), if next_deadline.is_some() => {
                let now = Instant::now();
                let due: Vec<BranchKey> =
                    waiting.iter().filter(|(_, (_, deadline))| *deadline <= now).map(|(key, _)| key.clone()).collect();
                for key in due {
                    if let Some((group, _)) = waiting.remove(&key) {
                        submit(group).await;
                    }
                }
            }
            received = changes.recv() => {
                let Some(scheduled) = received else { return };
                if !filter.matches(&scheduled) {
                    continue;
                }
                let is_important = important(&scheduled);
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

    use super::*;

    fn change(id: i64, branch: &str, files: &[&str]) -> Change {
        Change {
            id,
            author: "a <a@example.org>".into(),
            committer: None,
            comments: format!("change {id}"),
            files: files.iter().map(|f| f.to_string()).collect(),
            revision: Some(format!("rev{id}")),
            branch: Some(branch.into()),
            repository: "repo".into(),
            project: String::new(),
            codebase: String::new(),
            category: None,
            when_timestamp: 0,
            properties: Default::default(),
            sourcestampid: id,
        }
    }

    fn scheduler(timer: Option<u64>, files: &[&str], branches: Option<&[&str]>) -> ChangeSchedulerDef {
        ChangeSchedulerDef {
            name: "s".into(),
            builders: vec!["b".into()],
            filter: ChangeFilterDef {
                branches: branches.map(|b| b.iter().map(|s| s.to_string()).collect()),
                ..ChangeFilterDef::default()
            },
            files: files.iter().map(|f| f.to_string()).collect(),
            only_important: false,
            tree_stable_timer: timer.map(Duration::from_secs),
        }
    }

    /// Feeds `(seconds after start, change)` to a scheduler on a paused clock; returns (seconds, ids) per submit.
    async fn drive(def: ChangeSchedulerDef, feed: Vec<(u64, Change)>, end: u64) -> Vec<(u64, Vec<i64>)> {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let submitted = Arc::new(Mutex::new(Vec::new()));
        let sink = submitted.clone();
        let task = tokio::spawn(run(def, rx, stop.clone(), move |group| {
            let sink = sink.clone();
            async move {
                let at = start.elapsed().as_secs();
                sink.lock().expect("lock").push((at, group.iter().map(|c| c.id).collect::<Vec<_>>()));
            }
        }));
        for (at, change) in feed {
            tokio::time::sleep_until(start + Duration::from_secs(at)).await;
            tx.send(change).await.expect("scheduler running");
        }
        tokio::time::sleep_until(start + Duration::from_secs(end)).await;
        stop.cancel();
        task.await.expect("scheduler task");
        let submitted = submitted.lock().expect("lock").clone();
        submitted
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timer_each_important_change_builds_at_once() {
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
        let mut def = scheduler(None, &[], None);
        def.filter.branch_pattern = Some("release/*".into());
        def.filter.category = Some("push".into());
        let mut tagged = change(3, "release/2.0", &[]);
        tagged.category = Some("tag".into());
        let mut pushed = change(2, "release/1.0", &[]);
        pushed.category = Some("push".into());
        let feed = vec![(1, change(1, "main", &[])), (2, pushed), (3, tagged)];
        assert_eq!(drive(def, feed, 10).await, vec![(2, vec![2])]);
    }
}
