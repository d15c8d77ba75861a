//! Where a scheduler that takes changes reads them: every stored change after the last one it classified, in
//! id order, each once. First from the store (bounded pages), then from the master's live announcements; back to
//! the store whenever a live change skips ids (announced out of order, or missed by a lagging broadcast). So a
//! scheduler that starts after a crash, or falls behind, catches up from the store and loses nothing.
//!
//! It relies on the store's ids following the order of commit (`store/change_log.rs`): once change N is
//! readable, so is every change below it.

use std::collections::VecDeque;

use tokio::sync::{broadcast, mpsc};

use crate::store::{Change, Store, StoreError};

/// Where the changes are announced as they are stored.
pub enum Live {
    /// The master's broadcast of every stored change: a feed that falls behind it misses some, and reads them
    /// from the store instead (so no scheduler holds up another).
    Broadcast(broadcast::Receiver<Change>),
    /// A channel (the schedulers' tests drive them through one).
    Channel(mpsc::Receiver<Change>),
}

/// What [`Live::recv`] got.
enum Received {
    Change(Box<Change>),
    /// Some changes went by unseen.
    Missed,
    Closed,
}

impl Live {
    /// Cancel-safe (as both receivers are).
    async fn recv(&mut self) -> Received {
        match self {
            Live::Broadcast(rx) => match rx.recv().await {
                Ok(change) => Received::Change(Box::new(change)),
                Err(broadcast::error::RecvError::Lagged(_)) => Received::Missed,
                Err(broadcast::error::RecvError::Closed) => Received::Closed,
            },
            Live::Channel(rx) => rx.recv().await.map_or(Received::Closed, |change| Received::Change(Box::new(change))),
        }
    }
}

impl From<broadcast::Receiver<Change>> for Live {
    fn from(rx: broadcast::Receiver<Change>) -> Live {
        Live::Broadcast(rx)
    }
}

impl From<mpsc::Receiver<Change>> for Live {
    fn from(rx: mpsc::Receiver<Change>) -> Live {
        Live::Channel(rx)
    }
}

/// How many changes a catch-up reads from the store at a time.
pub const PAGE: u32 = 200;

/// How long a feed waits for a live change before it looks in the store anyway (a safety net, not the
/// mechanism: a change stored whose announcement failed is taken within this time).
pub const RESCAN: std::time::Duration = std::time::Duration::from_secs(30);

/// The changes after a given id, from the store then live (see the module's documentation).
pub struct ChangeFeed {
    store: Store,
    live: Live,
    page: u32,
    /// The id of the last change taken.
    last: i64,
    /// Changes read from the store, not taken yet.
    backlog: VecDeque<Change>,
    /// Whether the store may hold changes after `last` that the live channel will not bring.
    catching_up: bool,
}

impl ChangeFeed {
    /// A feed of the changes of `store` announced on `live`; call [`ChangeFeed::resume_after`] before reading.
    pub fn new(store: Store, live: impl Into<Live>) -> ChangeFeed {
        ChangeFeed { store, live: live.into(), page: PAGE, last: 0, backlog: VecDeque::new(), catching_up: true }
    }

    /// The same feed reading `page` changes at a time from the store.
    pub fn with_page(mut self, page: u32) -> ChangeFeed {
        self.page = page.max(1);
        self
    }

    /// Reads on from the change after `last` (the last one a scheduler's stored state says it classified),
    /// from the store first.
    pub fn resume_after(&mut self, last: i64) {
        self.last = last;
        self.backlog.clear();
        self.catching_up = true;
    }

    /// The id of the last change taken (or of the one given to [`ChangeFeed::resume_after`]).
    pub fn last(&self) -> i64 {
        self.last
    }

    /// The next change; `None` once the live channel is closed and the store has nothing more. Cancel-safe:
    /// dropped before it returns, it has taken nothing (a live change it took is read again from the store).
    pub async fn next(&mut self) -> Result<Option<Change>, StoreError> {
        loop {
            if let Some(change) = self.backlog.pop_front() {
                self.last = change.id;
                return Ok(Some(change));
            }
            if self.catching_up {
                let page = self.store.changes_after(self.last, self.page).await?;
                self.catching_up = page.len() >= self.page as usize;
                self.backlog.extend(page);
                continue;
            }
            let received = tokio::select! {
                received = self.live.recv() => received,
                () = tokio::time::sleep(RESCAN) => Received::Missed,
            };
            let change = match received {
                Received::Change(change) => *change,
                Received::Missed => {
                    // Some changes went by unseen, or none came for a while: look in the store.
                    self.catching_up = true;
                    continue;
                }
                Received::Closed => return Ok(None),
            };
            if change.id <= self.last {
                continue; // read from the store already
            }
            if change.id != self.last + 1 {
                // Some changes went by unseen: they, and this one, are in the store.
                self.catching_up = true;
                continue;
            }
            self.last = change.id;
            return Ok(Some(change));
        }
    }

    /// Takes the live changes and drops them, never returning while they can come (for a scheduler waiting
    /// to start again, so that its announcements do not pile up; it reads them from the store after
    /// [`ChangeFeed::resume_after`]).
    pub async fn drop_live(&mut self) {
        while !matches!(self.live.recv().await, Received::Closed) {}
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::NewChange;
    use crate::store::testing::temp_store;

    async fn add(store: &Store, n: usize) -> Change {
        let new = NewChange { revision: Some(format!("r{n}")), ..NewChange::default() };
        let id = store.add_change(&new).await.expect("add");
        store.change(id).await.expect("get").expect("stored")
    }

    async fn take(feed: &mut ChangeFeed, n: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(feed.next().await.expect("read").expect("a change").id);
        }
        ids
    }

    #[tokio::test]
    async fn the_store_first_by_pages_then_live_changes_each_once() {
        let (store, _dir) = temp_store().await;
        let mut stored = Vec::new();
        for n in 0..7 {
            stored.push(add(&store, n).await);
        }
        let (tx, rx) = mpsc::channel(16);
        let mut feed = ChangeFeed::new(store.clone(), rx).with_page(3);
        feed.resume_after(stored[1].id);
        // Announced while the feed catches up: taken from the store, not twice.
        tx.send(stored[5].clone()).await.expect("send");
        tx.send(stored[6].clone()).await.expect("send");
        let ids: Vec<i64> = stored[2..].iter().map(|c| c.id).collect();
        assert_eq!(take(&mut feed, 5).await, ids);
        let later = add(&store, 7).await;
        tx.send(later.clone()).await.expect("send");
        assert_eq!(take(&mut feed, 1).await, [later.id]);
        assert_eq!(feed.last(), later.id);
        drop(tx);
        assert_eq!(feed.next().await.expect("read"), None);
    }

    #[tokio::test]
    async fn a_gap_in_the_live_changes_is_filled_from_the_store() {
        let (store, _dir) = temp_store().await;
        let (tx, rx) = mpsc::channel(16);
        let mut feed = ChangeFeed::new(store.clone(), rx).with_page(2);
        feed.resume_after(0);
        let first = add(&store, 0).await;
        tx.send(first.clone()).await.expect("send");
        assert_eq!(take(&mut feed, 1).await, [first.id]);
        // Five stored, only the last announced (the others lost by a lagging broadcast, say).
        let mut missed = Vec::new();
        for n in 1..6 {
            missed.push(add(&store, n).await);
        }
        tx.send(missed[4].clone()).await.expect("send");
        tx.send(missed[2].clone()).await.expect("send"); // late: read already
        let ids: Vec<i64> = missed.iter().map(|c| c.id).collect();
        assert_eq!(take(&mut feed, 5).await, ids);
        let next = add(&store, 6).await;
        tx.send(next.clone()).await.expect("send");
        assert_eq!(take(&mut feed, 1).await, [next.id]);
    }

    #[tokio::test]
    async fn a_lagging_broadcast_is_made_up_from_the_store() {
        let (store, _dir) = temp_store().await;
        let (tx, rx) = broadcast::channel(2);
        let mut feed = ChangeFeed::new(store.clone(), rx).with_page(2);
        feed.resume_after(0);
        let mut stored = Vec::new();
        for n in 0..5 {
            let change = add(&store, n).await;
            tx.send(change.clone()).expect("send");
            stored.push(change.id);
        }
        assert_eq!(take(&mut feed, 5).await, stored);
        let later = add(&store, 5).await;
        tx.send(later.clone()).expect("send");
        assert_eq!(take(&mut feed, 1).await, [later.id]);
        drop(tx);
        assert_eq!(feed.next().await.expect("read"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_never_announced_is_found_in_the_store_after_a_while() {
        let _clock = crate::schedulers::testing::hold_clock();
        let (store, _dir) = temp_store().await;
        let (tx, rx) = mpsc::channel(1);
        let mut feed = ChangeFeed::new(store.clone(), rx);
        feed.resume_after(0);
        let first = add(&store, 0).await;
        assert_eq!(take(&mut feed, 1).await, [first.id]);
        // Stored, its announcement lost: the feed waits on the live channel, then looks in the store.
        let second = add(&store, 1).await;
        let waiting = tokio::spawn(async move { feed.next().await.expect("read").map(|c| c.id) });
        // The paused clock moves only when told: a rescan time at a time, each followed by up to a second of real
        // time for the store's reads (moving the clock on while one waits for a connection would time it out).
        for _ in 0..10 {
            tokio::time::advance(RESCAN).await;
            let settle = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while !waiting.is_finished() && std::time::Instant::now() < settle {
                tokio::task::yield_now().await;
            }
            if waiting.is_finished() {
                break;
            }
        }
        assert!(waiting.is_finished(), "the feed looks in the store after a rescan time");
        assert_eq!(waiting.await.expect("task"), Some(second.id));
        drop(tx);
    }

    #[tokio::test]
    async fn resuming_reads_again_from_the_store() {
        let (store, _dir) = temp_store().await;
        let (_tx, rx) = mpsc::channel(1);
        let mut feed = ChangeFeed::new(store.clone(), rx);
        let (a, b) = (add(&store, 0).await, add(&store, 1).await);
        feed.resume_after(0);
        assert_eq!(take(&mut feed, 2).await, [a.id, b.id]);
        feed.resume_after(a.id);
        assert_eq!(take(&mut feed, 1).await, [b.id]);
    }
}
