//! What changed, told to everyone who listens: the typed [`Event`]s that every store write publishes after its
//! transaction commits, and the [`EventBus`] they travel on.
//!
//! Publishers (the store's writes, the worker port, the schedulers) call [`EventBus::publish`] and know nothing
//! of who listens; subscribers (the live API, reporters, the master's own waiters) call
//! [`EventBus::subscribe`] and know nothing of who publishes. An event says *what* changed and carries the ids a
//! subscriber needs to route it (Buildbot's routing keys, [`Event::keys`]) and the small facts it needs to
//! decide (a result, a state string, a line range); never a log's text or a whole resource: a subscriber that
//! wants the resource reads it from the store.
//!
//! The bus never blocks a publisher and never grows: each subscriber has a bounded buffer, and one that falls
//! behind is told how many events it lost ([`Lagged`]) and may re-read the store. Every event gets a sequence
//! number, increasing without gaps within one bus; the last [`RETAINED`] events are kept, so a client that
//! reconnects with its last sequence number ([`EventBus::subscribe_after`]) resumes without a gap, or is told
//! that the gap is too old ([`TooOld`]).
//!
//! The local bus is one process's. With several masters on one database a shared transport (PostgreSQL
//! LISTEN/NOTIFY) delivers the other masters' events into the same bus; publishers do not change.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a subscriber may be behind before it is told it lagged.
pub const SUBSCRIBER_CAPACITY: usize = 4096;
/// How many of the latest events the bus keeps for subscribers that resume after a sequence number.
pub const RETAINED: usize = 4096;

/// A result code (Buildbot's: SUCCESS=0 … CANCELLED=6, see [`crate::results`]).
pub type ResultCode = i32;

/// Something that changed in the master, published after it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A change was stored.
    ChangeAdded { changeid: i64 },
    /// A buildset and its requests were stored.
    BuildsetAdded { bsid: i64 },
    /// The last request of a buildset completed; `results` is the worst of them.
    BuildsetCompleted { bsid: i64, results: ResultCode },
    /// A build request was stored (queued).
    BuildRequestAdded { brid: i64, bsid: i64, builderid: i64 },
    /// A master claimed a request (its build is about to start).
    BuildRequestClaimed { brid: i64, bsid: i64, builderid: i64, masterid: i64 },
    /// A claim was released: the request is queued again.
    BuildRequestUnclaimed { brid: i64, bsid: i64, builderid: i64 },
    /// A request completed with `results` (its build's, or SKIPPED when collapsed).
    BuildRequestCompleted { brid: i64, bsid: i64, builderid: i64, results: ResultCode },
    /// A queued request was cancelled before any build ran it.
    BuildRequestCancelled { brid: i64, bsid: i64, builderid: i64 },
    /// A build started.
    BuildStarted { buildid: i64, builderid: i64, number: i64, brid: i64, workerid: i64, masterid: i64 },
    /// A running build's state string changed.
    BuildUpdated { buildid: i64, builderid: i64, state_string: String },
    /// A build finished.
    BuildFinished { buildid: i64, builderid: i64, results: ResultCode, state_string: String },
    /// A step was added to a build and started.
    StepStarted { stepid: i64, buildid: i64, number: i64 },
    /// A running step's state string changed.
    StepUpdated { stepid: i64, buildid: i64, state_string: String },
    /// A step finished.
    StepFinished { stepid: i64, buildid: i64, results: ResultCode, state_string: String },
    /// A log was added to a step.
    LogAdded { logid: i64, stepid: i64 },
    /// Lines `first_line .. first_line + count` of a log were stored (0-based, as the contents API numbers them).
    LogAppended { logid: i64, stepid: i64, first_line: i64, count: i64 },
    /// A log is complete: no line will be added.
    LogFinished { logid: i64, stepid: i64, num_lines: i64 },
    /// A worker connected.
    WorkerAttached { workerid: i64, name: String },
    /// A worker's connection ended.
    WorkerDetached { workerid: i64, name: String },
    /// A worker was paused: no new build starts on it.
    WorkerPaused { workerid: i64, name: String, reason: Option<String> },
    /// A paused worker takes builds again.
    WorkerUnpaused { workerid: i64, name: String },
    /// A master started.
    MasterStarted { masterid: i64, name: String },
    /// A master stopped.
    MasterStopped { masterid: i64, name: String },
    /// A scheduler submitted a buildset.
    SchedulerFired { scheduler: String, bsid: i64 },
}

impl Event {
    /// Buildbot's routing keys for this event (`builds/42/new`, `builders/3/builds/42/new`, …): the resource
    /// paths it is published under, each ending in the event's verb. Subscribers filter on these.
    pub fn keys(&self) -> Vec<String> {
        use Event::*;
        match self {
            ChangeAdded { changeid } => vec![format!("changes/{changeid}/new")],
            BuildsetAdded { bsid } => vec![format!("buildsets/{bsid}/new")],
            BuildsetCompleted { bsid, .. } => vec![format!("buildsets/{bsid}/complete")],
            BuildRequestAdded { brid, bsid, builderid } => request_keys(*brid, *bsid, *builderid, "new"),
            BuildRequestClaimed { brid, bsid, builderid, .. } => request_keys(*brid, *bsid, *builderid, "claimed"),
            BuildRequestUnclaimed { brid, bsid, builderid } => request_keys(*brid, *bsid, *builderid, "unclaimed"),
            BuildRequestCompleted { brid, bsid, builderid, .. } => request_keys(*brid, *bsid, *builderid, "complete"),
            BuildRequestCancelled { brid, bsid, builderid } => request_keys(*brid, *bsid, *builderid, "cancel"),
            BuildStarted { buildid, builderid, .. } => build_keys(*buildid, *builderid, "new"),
            BuildUpdated { buildid, builderid, .. } => build_keys(*buildid, *builderid, "update"),
            BuildFinished { buildid, builderid, .. } => build_keys(*buildid, *builderid, "finished"),
            StepStarted { stepid, buildid, .. } => step_keys(*stepid, *buildid, "started"),
            StepUpdated { stepid, buildid, .. } => step_keys(*stepid, *buildid, "updated"),
            StepFinished { stepid, buildid, .. } => step_keys(*stepid, *buildid, "finished"),
            LogAdded { logid, stepid } => log_keys(*logid, *stepid, "new"),
            LogAppended { logid, stepid, .. } => log_keys(*logid, *stepid, "append"),
            LogFinished { logid, stepid, .. } => log_keys(*logid, *stepid, "finished"),
            WorkerAttached { workerid, .. } => vec![format!("workers/{workerid}/connected")],
            WorkerDetached { workerid, .. } => vec![format!("workers/{workerid}/disconnected")],
            WorkerPaused { workerid, .. } => vec![format!("workers/{workerid}/state_updated")],
            WorkerUnpaused { workerid, .. } => vec![format!("workers/{workerid}/state_updated")],
            MasterStarted { masterid, .. } => vec![format!("masters/{masterid}/started")],
            MasterStopped { masterid, .. } => vec![format!("masters/{masterid}/stopped")],
            SchedulerFired { scheduler, bsid } => vec![format!("schedulers/{scheduler}/buildsets/{bsid}/new")],
        }
    }
}

fn request_keys(brid: i64, bsid: i64, builderid: i64, verb: &str) -> Vec<String> {
    vec![
        format!("buildrequests/{brid}/{verb}"),
        format!("buildsets/{bsid}/builders/{builderid}/buildrequests/{brid}/{verb}"),
    ]
}

fn build_keys(buildid: i64, builderid: i64, verb: &str) -> Vec<String> {
    vec![format!("builds/{buildid}/{verb}"), format!("builders/{builderid}/builds/{buildid}/{verb}")]
}

fn step_keys(stepid: i64, buildid: i64, verb: &str) -> Vec<String> {
    vec![format!("steps/{stepid}/{verb}"), format!("builds/{buildid}/steps/{stepid}/{verb}")]
}

fn log_keys(logid: i64, stepid: i64, verb: &str) -> Vec<String> {
    vec![format!("logs/{logid}/{verb}"), format!("steps/{stepid}/logs/{logid}/{verb}")]
}

/// Whether the routing key `key` matches `pattern`, Buildbot's way: both split on `/`, the same number of
/// segments, each pattern segment equal to the key's or `*`.
pub fn key_matches(pattern: &str, key: &str) -> bool {
    let (mut p, mut k) = (pattern.split('/'), key.split('/'));
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(ps), Some(ks)) if ps == "*" || ps == ks => {}
            _ => return false,
        }
    }
}

/// An event with its place in the bus's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// 1, 2, 3… within one bus, without gaps.
    pub seq: u64,
    pub event: Event,
}

/// The bus: publish from anywhere, subscribe from anywhere. Cheap to clone; clones share the bus.
#[derive(Clone, Debug)]
pub struct EventBus {
    inner: Arc<Local>,
}

#[derive(Debug)]
struct Local {
    sender: broadcast::Sender<Arc<Published>>,
    /// The latest events (at most [`RETAINED`]) and the last sequence number given, under one lock so that a
    /// subscriber's backlog and its live stream meet without a gap or a repeat.
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    last_seq: u64,
    events: VecDeque<Arc<Published>>,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new()
    }
}

impl EventBus {
    /// A local bus: the events of this process.
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(SUBSCRIBER_CAPACITY);
        EventBus { inner: Arc::new(Local { sender, recent: Mutex::default() }) }
    }

    /// Tells every subscriber about `event`. Never blocks and never fails: with no subscriber the event is only
    /// retained, and a subscriber that is full loses its oldest events (and is told so).
    pub fn publish(&self, event: Event) {
        let mut recent = lock(&self.inner.recent);
        recent.last_seq += 1;
        let published = Arc::new(Published { seq: recent.last_seq, event });
        if recent.events.len() == RETAINED {
            recent.events.pop_front();
        }
        recent.events.push_back(published.clone());
        // Sent under the lock, so the order subscribers see is the order of the sequence numbers.
        let _ = self.inner.sender.send(published);
    }

    /// The events published from now on.
    pub fn subscribe(&self) -> Subscription {
        let _recent = lock(&self.inner.recent);
        Subscription { backlog: VecDeque::new(), receiver: self.inner.sender.subscribe() }
    }

    /// The events published after the one numbered `seq` (which the caller saw last), retained ones first, then
    /// the live ones. [`TooOld`] when some of those events are no longer retained (the caller re-reads the store
    /// and subscribes afresh).
    pub fn subscribe_after(&self, seq: u64) -> Result<Subscription, TooOld> {
        let recent = lock(&self.inner.recent);
        let oldest_kept = recent.events.front().map_or(recent.last_seq + 1, |e| e.seq);
        if seq > recent.last_seq || seq + 1 < oldest_kept {
            return Err(TooOld { asked: seq, oldest: oldest_kept });
        }
        let backlog = recent.events.iter().filter(|e| e.seq > seq).cloned().collect();
        Ok(Subscription { backlog, receiver: self.inner.sender.subscribe() })
    }

    /// The sequence number of the latest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner.recent).last_seq
    }
}

/// One subscriber's stream of events, in order.
#[derive(Debug)]
pub struct Subscription {
    backlog: VecDeque<Arc<Published>>,
    receiver: broadcast::Receiver<Arc<Published>>,
}

/// A subscriber fell more than [`SUBSCRIBER_CAPACITY`] events behind and lost `missed` of them; what it sees
/// next is the oldest event still buffered for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fell behind and lost {missed} events")]
pub struct Lagged {
    pub missed: u64,
}

/// Events after `asked` are no longer all retained: the oldest kept is `oldest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("events after {asked} are no longer retained (the oldest kept is {oldest})")]
pub struct TooOld {
    pub asked: u64,
    pub oldest: u64,
}

impl Subscription {
    /// The next event; `Err(Lagged)` once after events were lost, `Ok(None)` when the bus is gone.
    pub async fn recv(&mut self) -> Result<Option<Arc<Published>>, Lagged> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(Some(event));
        }
        match self.receiver.recv().await {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Err(Lagged { missed }),
            Err(broadcast::error::RecvError::Closed) => Ok(None),
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Arc<Published>>, Lagged> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(Some(event));
        }
        match self.receiver.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Err(Lagged { missed }),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => Ok(None),
        }
    }
}

impl Subscription {
    /// The next event for which `wanted` is true, skipping the others; `Err(Lagged)` once after events were
    /// lost (some wanted ones may be among them), `Ok(None)` when the bus is gone.
    pub async fn recv_where(
        &mut self,
        mut wanted: impl FnMut(&Event) -> bool,
    ) -> Result<Option<Arc<Published>>, Lagged> {
        loop {
            match self.recv().await? {
                Some(published) if !wanted(&published.event) => continue,
                other => return Ok(other),
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(changeid: i64) -> Event {
        Event::ChangeAdded { changeid }
    }

    async fn next(sub: &mut Subscription) -> Published {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await;
        (*event.expect("an event in time").expect("not lagged").expect("bus alive")).clone()
    }

    #[tokio::test]
    async fn subscribers_see_every_event_in_order_with_gapless_numbers() {
        let bus = EventBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for id in 1..=3 {
            bus.publish(change(id));
        }
        for sub in [&mut a, &mut b] {
            for id in 1..=3u64 {
                assert_eq!(next(sub).await, Published { seq: id, event: change(id as i64) });
            }
            assert_eq!(sub.try_recv(), Ok(None));
        }
        assert_eq!(bus.last_seq(), 3);
    }

    #[tokio::test]
    async fn a_subscriber_that_never_reads_is_told_it_lagged_and_holds_no_more_than_its_capacity() {
        let bus = EventBus::new();
        let mut idle = bus.subscribe();
        let total = SUBSCRIBER_CAPACITY as u64 * 3;
        for id in 0..total {
            bus.publish(change(id as i64));
        }
        let lagged = idle.try_recv().expect_err("lagged");
        assert_eq!(lagged.missed, total - SUBSCRIBER_CAPACITY as u64);
        // It goes on with the oldest event still buffered, and then every later one.
        let first = idle.try_recv().expect("not lagged twice").expect("an event");
        assert_eq!(first.seq, lagged.missed + 1);
        let mut seen = 1;
        while let Ok(Some(_)) = idle.try_recv() {
            seen += 1;
        }
        assert_eq!(seen, SUBSCRIBER_CAPACITY);
        assert_eq!(lock(&bus.inner.recent).events.len(), RETAINED);
    }

    #[tokio::test]
    async fn resuming_after_a_sequence_number_replays_the_retained_events_then_goes_live() {
        let bus = EventBus::new();
        for id in 1..=5 {
            bus.publish(change(id));
        }
        let mut resumed = bus.subscribe_after(3).expect("retained");
        bus.publish(change(6));
        for seq in 4..=6 {
            assert_eq!(next(&mut resumed).await.seq, seq);
        }
        let mut fresh = bus.subscribe_after(bus.last_seq()).expect("at the end");
        assert_eq!(fresh.try_recv(), Ok(None));
        assert!(bus.subscribe_after(99).is_err(), "a number never given");
    }

    #[tokio::test]
    async fn resuming_from_before_the_retained_window_is_refused() {
        let bus = EventBus::new();
        for id in 0..(RETAINED as i64 + 10) {
            bus.publish(change(id));
        }
        let err = bus.subscribe_after(5).expect_err("too old");
        assert_eq!(err.oldest, 11);
        assert!(bus.subscribe_after(10).is_ok(), "the event just before the oldest kept");
    }

    #[tokio::test]
    async fn a_subscriber_may_wait_for_one_kind_of_event_and_skip_the_others() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe();
        bus.publish(change(1));
        bus.publish(Event::BuildsetCompleted { bsid: 7, results: 0 });
        bus.publish(change(2));
        let wanted = sub.recv_where(|e| matches!(e, Event::BuildsetCompleted { .. })).await;
        let wanted = wanted.expect("not lagged").expect("bus alive");
        assert_eq!((wanted.seq, &wanted.event), (2, &Event::BuildsetCompleted { bsid: 7, results: 0 }));
        assert_eq!(next(&mut sub).await, Published { seq: 3, event: change(2) }, "the rest is still there");
    }

    #[test]
    fn keys_follow_buildbot_and_patterns_match_one_segment_per_star() {
        let started = Event::BuildStarted { buildid: 42, builderid: 3, number: 7, brid: 9, workerid: 1, masterid: 1 };
        assert_eq!(started.keys(), vec!["builds/42/new", "builders/3/builds/42/new"]);
        let appended = Event::LogAppended { logid: 17, stepid: 5, first_line: 0, count: 10 };
        assert_eq!(appended.keys(), vec!["logs/17/append", "steps/5/logs/17/append"]);
        assert!(key_matches("builds/*/*", "builds/42/new"));
        assert!(key_matches("builders/3/builds/*/*", "builders/3/builds/42/finished"));
        assert!(!key_matches("builds/*/*", "builds/42/steps/5/new"));
        assert!(!key_matches("builds/*", "builds/42/new"));
        assert!(!key_matches("builds/43/*", "builds/42/new"));
    }

    #[test]
    fn events_serialize_with_their_name() {
        let json = serde_json::to_value(Event::BuildFinished {
            buildid: 1,
            builderid: 2,
            results: 0,
            state_string: "build successful".into(),
        })
        .expect("json");
        assert_eq!(json["event"], "build_finished");
        assert_eq!(json["state_string"], "build successful");
    }
}
