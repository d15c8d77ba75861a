//! Helpers of the schedulers' tests: a paused clock that moves only when told, a barrier on a scheduler's
//! change channel, and test changes.

use tokio::sync::mpsc;

use crate::changes::NewChange;
use crate::store::Change;

/// Keeps the paused clock from advancing by itself while the runtime waits for SQLite (whose work happens
/// on threads tokio does not see): time then moves only by `tokio::time::advance`. Stops when dropped.
pub struct HeldClock(tokio::task::JoinHandle<()>);

impl Drop for HeldClock {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn hold_clock() -> HeldClock {
    HeldClock(tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    }))
}

/// A change of repository `repo` (the one the tests' filters let through), not stored.
pub fn change(id: i64, branch: &str, files: &[&str]) -> Change {
    Change {
        id,
        sourcestampid: id,
        parent_changeids: Vec::new(),
        reported: NewChange {
            author: "a <a@example.org>".into(),
            comments: format!("change {id}"),
            files: files.iter().map(|f| f.to_string()).collect(),
            revision: Some(format!("rev{id}")),
            branch: Some(branch.into()),
            repository: "repo".into(),
            ..NewChange::default()
        },
    }
}

/// A change of `repo`, to store.
pub fn new_change(revision: &str, branch: &str, files: &[&str]) -> NewChange {
    NewChange {
        author: "a <a@example.org>".into(),
        files: files.iter().map(|f| f.to_string()).collect(),
        revision: Some(revision.into()),
        branch: Some(branch.into()),
        repository: "repo".into(),
        ..NewChange::default()
    }
}

/// Returns once the scheduler has done all it had to (loading, a change, a due timer, with their writes):
/// on a channel of one slot, the second of two ignored changes (of another repository than `repo`) goes in
/// only when the scheduler came back for the first, after everything sent or due before.
pub async fn barrier(tx: &mpsc::Sender<Change>) {
    for _ in 0..2 {
        let mut ignored = change(0, "main", &[]);
        ignored.reported.repository = "elsewhere".into();
        tx.send(ignored).await.expect("scheduler running");
    }
}
