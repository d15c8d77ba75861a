//! Running the timed schedulers: wait for the next firing of the calendar (or the period), fire, repeat.
//!
//! Time comes from a [`Clock`]: the system's wall clock in a master, or a clock driven by tokio's paused time
//! in tests, so a week of calendar runs in milliseconds.

use std::future::Future;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::change_feed::{ChangeFeed, Live};
use super::on_change::Classifier;
use super::{state_name, wait_to_retry, Served, LAST_CLASSIFIED_KEY, SAVE_IGNORED_EVERY};
use crate::config::{TimedSchedulerDef, Timing};
use crate::store::{Change, StateWrite, Store, StoreError};

/// Where timed schedulers read the time.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// `start` at the moment the clock was made, then moving with tokio's clock (which tests pause and
    /// advance).
    Tokio { start: DateTime<Utc>, at: tokio::time::Instant },
}

impl Clock {
    /// A clock that reads `start` now and moves with tokio's time.
    pub fn tokio_from(start: DateTime<Utc>) -> Clock {
        Clock::Tokio { start, at: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => DateTime::<Utc>::from(SystemTime::now()),
            Clock::Tokio { start, at } => {
                let elapsed = chrono::TimeDelta::from_std(at.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
                start.checked_add_signed(elapsed).unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }

    /// Sleeps until the clock reads at least `when`.
    async fn sleep_until(&self, when: DateTime<Utc>) {
        loop {
            let left = when.signed_duration_since(self.now());
            match left.to_std() {
                Ok(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return,
            }
        }
    }
}

/// The object-state key of the time of the last firing (Unix seconds; Buildbot's `last_build`).
pub const LAST_BUILD_KEY: &str = "last_build";
/// The object-state key of `only_if_changed` at the last firing (Buildbot's `last_only_if_changed`).
pub const LAST_ONLY_IF_CHANGED_KEY: &str = "last_only_if_changed";
/// The object-state key of the changes seen since the last firing: `[[change id, important], …]`.
pub const CLASSIFIED_KEY: &str = "classified";

/// What a timed scheduler keeps in the store's object state (name `scheduler:<name>`).
struct TimedState {
    name: String,
    /// When it last fired; `None` before its first firing.
    last_build: Option<DateTime<Utc>>,
    /// The changes that passed the filter since the last firing, oldest first, with their importance.
    classified: Vec<(Change, bool)>,
    /// The last change it classified (`None`: none yet, it takes the changes after `start_after`).
    last_classified: Option<i64>,
}

impl TimedState {
    async fn load(store: &Store, scheduler: &str) -> Result<TimedState, StoreError> {
        let name = state_name(scheduler);
        let last_build = read_state::<i64>(store, &name, LAST_BUILD_KEY)
            .await?
            .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0));
        let mut classified = Vec::new();
        for (id, important) in read_state::<Vec<(i64, bool)>>(store, &name, CLASSIFIED_KEY).await?.unwrap_or_default() {
            match store.change(id).await? {
                Some(change) => classified.push((change, important)),
                None => tracing::warn!(scheduler = %name, change = id, "a classified change is gone"),
            }
        }
        let last_classified = read_state::<i64>(store, &name, LAST_CLASSIFIED_KEY).await?;
        Ok(TimedState { name, last_build, classified, last_classified })
    }

    fn write(&self, key: &str, value: serde_json::Value) -> StateWrite {
        StateWrite::new(&self.name, key, value)
    }

    /// Its classified changes and the last change it took, to store together.
    fn classified_writes(&self, last: i64) -> Vec<StateWrite> {
        let ids: Vec<(i64, bool)> = self.classified.iter().map(|(c, important)| (c.id, *important)).collect();
        vec![
            self.write(CLASSIFIED_KEY, serde_json::json!(ids)),
            self.write(LAST_CLASSIFIED_KEY, serde_json::json!(last)),
        ]
    }
}

/// A value of the object state; an undecodable one is `None` (and logged).
async fn read_state<T: serde::de::DeserializeOwned>(
    store: &Store,
    name: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(store.get_state(name, key).await?.and_then(|value| {
        serde_json::from_value(value)
            .map_err(|e| tracing::error!(scheduler = %name, key, error = %e, "unreadable scheduler state"))
            .ok()
    }))
}

/// Runs one timed scheduler until `stop`, calling `fire` at each of its firings that builds with the time, the
/// changes to build (oldest first; empty: build without a source stamp) and the state writes to store in the
/// same transaction as the buildset; `fire` answers whether it stored them.
///
/// The time of the last firing is kept in `store` (see [`TimedState`]): a nightly scheduler fires at each time
/// of its calendar after it, a periodic one an interval after it (the first time at once). A time missed while
/// the master was down fires once, at start (as in Buildbot); a firing is stored with its buildset, so a restart
/// neither fires again a time already built nor skips one whose build was not stored.
/// With `only_if_changed`, it takes every change stored after the last one it classified (from `store`, then
/// live from `changes`; a new scheduler after change `start_after`); those that pass the filter are kept (in
/// the store too, with the id of the last change taken) until the next firing, which builds only if one of them
/// is important — or if it is the scheduler's first firing ever, or the first since `only_if_changed` was turned
/// on. When a write fails it starts again from what is stored, after [`RETRY_AFTER`](super::RETRY_AFTER).
pub async fn run<F, Fut>(
    def: TimedSchedulerDef,
    clock: Clock,
    store: Store,
    start_after: i64,
    changes: Option<Live>,
    stop: CancellationToken,
    mut fire: F,
) where
    F: FnMut(DateTime<Utc>, Vec<Change>, Vec<StateWrite>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut feed = changes.map(|live| ChangeFeed::new(store.clone(), live));
    loop {
        match serve(&def, clock, &store, start_after, feed.as_mut(), &stop, &mut fire).await {
            Served::Stopped => return,
            Served::Failed => {
                if !wait_to_retry(&def.name, &stop, drop_live(feed.as_mut())).await {
                    return;
                }
            }
        }
    }
}

async fn drop_live(feed: Option<&mut ChangeFeed>) {
    match feed {
        Some(feed) => feed.drop_live().await,
        None => std::future::pending().await,
    }
}

/// Runs the scheduler from its stored state until it stops or a store operation fails.
async fn serve<F, Fut>(
    def: &TimedSchedulerDef,
    clock: Clock,
    store: &Store,
    start_after: i64,
    feed: Option<&mut ChangeFeed>,
    stop: &CancellationToken,
    fire: &mut F,
) -> Served
where
    F: FnMut(DateTime<Utc>, Vec<Change>, Vec<StateWrite>) -> Fut,
    Fut: Future<Output = bool>,
{
    // Without `only_if_changed`, changes announced to it are dropped.
    let (mut feed, mut ignored) = if def.only_if_changed { (feed, None) } else { (None, feed) };
    let failed = |what: &str, e: &StoreError| {
        tracing::error!(scheduler = %def.name, error = %e, "{what}");
        Served::Failed
    };
    let classifier = Classifier::new(&def.filter, &def.files);
    let mut state = match TimedState::load(store, &def.name).await {
        Ok(state) => state,
        Err(e) => return failed("could not read the scheduler's state", &e),
    };
    match feed.as_deref_mut() {
        Some(feed) => {
            let last = match state.last_classified {
                Some(last) => last,
                None => {
                    // A new scheduler (or newly `only_if_changed`): older changes are not its own.
                    if let Err(e) = store.set_states(&state.classified_writes(start_after)).await {
                        return failed("could not store the scheduler's state", &e);
                    }
                    start_after
                }
            };
            feed.resume_after(last);
        }
        None if !state.classified.is_empty() || state.last_classified.is_some() => {
            // It takes no changes: it forgets those it had, and takes none from before if it does again.
            state.classified.clear();
            if let Err(e) = store.set_states(&[state.write(CLASSIFIED_KEY, serde_json::json!([]))]).await {
                return failed("could not store the scheduler's state", &e);
            }
            if let Err(e) = store.delete_state(&state.name, LAST_CLASSIFIED_KEY).await {
                return failed("could not store the scheduler's state", &e);
            }
        }
        None => {}
    }
    let mut first_build = state.last_build.is_none();
    // Changes taken since the state was last stored, none of which changed it.
    let mut unsaved = 0;
    let mut live_closed = false;
    loop {
        let now = clock.now();
        let next = match &def.timing {
            Timing::Nightly(calendar) => {
                let Some(next) = calendar.next_after(state.last_build.unwrap_or(now).max(now - MAX_CATCH_UP)) else {
                    tracing::info!(scheduler = %def.name, "the calendar has no more times");
                    return Served::Stopped;
                };
                next.with_timezone(&Utc)
            }
            Timing::Periodic(interval) => match state.last_build {
                None => now,
                Some(last) => last + chrono::TimeDelta::from_std(*interval).unwrap_or(chrono::TimeDelta::MAX),
            },
        };
        let at = next.max(now);
        // Changes are taken while waiting; the time to wait for is fixed, so that none is skipped however near a
        // change comes to it.
        loop {
            if unsaved >= SAVE_IGNORED_EVERY {
                if let Some(feed) = feed.as_deref() {
                    if let Err(e) = store.set_states(&state.classified_writes(feed.last())).await {
                        return failed("could not store the scheduler's state", &e);
                    }
                }
                unsaved = 0;
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    if let Some(feed) = feed.as_deref().filter(|_| unsaved > 0) {
                        // Only saves reading those changes again at the next start.
                        let _ = store.set_states(&state.classified_writes(feed.last())).await;
                    }
                    return Served::Stopped;
                }
                () = clock.sleep_until(at) => break,
                () = drop_live(ignored.as_deref_mut()) => {}
                received = next_change(feed.as_deref_mut(), live_closed) => {
                    let change = match received {
                        Ok(Some(change)) => change,
                        Ok(None) => {
                            live_closed = true;
                            continue;
                        }
                        Err(e) => return failed("could not read the changes", &e),
                    };
                    let Some(important) = classifier.classify(&change) else {
                        unsaved += 1;
                        continue;
                    };
                    state.classified.push((change, important));
                    if let Some(feed) = feed.as_deref() {
                        if let Err(e) = store.set_states(&state.classified_writes(feed.last())).await {
                            return failed("could not store the classified changes", &e);
                        }
                    }
                    unsaved = 0;
                }
            }
        }
        state.last_build = Some(at);
        let mut writes = vec![state.write(LAST_BUILD_KEY, serde_json::json!(at.timestamp()))];
        let last_only_if_changed = match read_state::<bool>(store, &state.name, LAST_ONLY_IF_CHANGED_KEY).await {
            Ok(stored) => stored.unwrap_or(true),
            Err(e) => return failed("could not read the scheduler's state", &e),
        };
        let important = state.classified.iter().any(|(_, important)| *important);
        if def.only_if_changed && last_only_if_changed && !important && !first_build {
            tracing::info!(scheduler = %def.name, "no important change since the last firing: no build");
            if let Err(e) = store.set_states(&writes).await {
                return failed("could not store the firing", &e);
            }
            continue;
        }
        if last_only_if_changed != def.only_if_changed {
            writes.push(state.write(LAST_ONLY_IF_CHANGED_KEY, serde_json::json!(def.only_if_changed)));
        }
        let group: Vec<Change> = state.classified.drain(..).map(|(change, _)| change).collect();
        if let Some(feed) = feed.as_deref() {
            writes.extend(state.classified_writes(feed.last()));
        }
        // Exactly once: the firing and the forgetting of its changes are stored with its buildset.
        if !fire(at, group, writes).await {
            return Served::Failed;
        }
        first_build = false;
        unsaved = 0;
    }
}

/// How far back a nightly scheduler looks for a time it missed while the master was down.
const MAX_CATCH_UP: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// The next change, or never when the scheduler takes none (or no more).
async fn next_change(feed: Option<&mut ChangeFeed>, closed: bool) -> Result<Option<Change>, StoreError> {
    match feed {
        Some(feed) if !closed => feed.next().await,
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use std::time::Duration;

    use chrono::TimeZone;

    use tokio::sync::mpsc;

    use super::*;
    use crate::calendar::{Calendar, CalendarFields};
    use crate::changes::NewChange;
    use crate::config::ChangeFilterDef;
    use crate::schedulers::testing::{barrier, hold_clock, new_change};
    use crate::store::testing::temp_store;

    fn nightly(name: &str, day_of_week: &str) -> TimedSchedulerDef {
        let fields = CalendarFields { hour: "3".into(), day_of_week: day_of_week.into(), ..CalendarFields::default() };
        let calendar = Calendar::from_fields(&fields, "Europe/Madrid").expect("valid calendar");
        TimedSchedulerDef {
            name: name.into(),
            builders: vec![name.into()],
            timing: Timing::Nightly(calendar),
            only_if_changed: false,
            filter: ChangeFilterDef::default(),
            files: Vec::new(),
            priority: None,
        }
    }

    /// A firing as the tests see it: time in Madrid, scheduler, ids of the changes built.
    type Fired = (String, String, Vec<i64>);

    /// Runs the schedulers on `store` with a clock reading `start`, moving an hour at a time for `hours`,
    /// storing the changes of `feed` at their hours (after start, in order) and announcing them; returns the
    /// firings, sorted. Each firing stores its state writes, as the master does with the buildset.
    async fn drive(
        schedulers: Vec<TimedSchedulerDef>,
        store: &Store,
        start: DateTime<Utc>,
        hours: u64,
        feed: Vec<(u64, NewChange)>,
    ) -> Vec<Fired> {
        drive_after(schedulers, store, 0, start, hours, feed).await
    }

    /// [`drive`] with new schedulers starting after change `start_after`.
    async fn drive_after(
        schedulers: Vec<TimedSchedulerDef>,
        store: &Store,
        start_after: i64,
        start: DateTime<Utc>,
        hours: u64,
        feed: Vec<(u64, NewChange)>,
    ) -> Vec<Fired> {
        let clock = Clock::tokio_from(start);
        let stop = CancellationToken::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        for def in schedulers {
            let (tx, rx) = mpsc::channel(1);
            senders.push(tx);
            let live = Some(Live::from(rx));
            let fired = fired.clone();
            let name = def.name.clone();
            let writer = store.clone();
            tasks.push(tokio::spawn(run(
                def,
                clock,
                store.clone(),
                start_after,
                live,
                stop.clone(),
                move |at, changes, writes| {
                    let (fired, name, writer) = (fired.clone(), name.clone(), writer.clone());
                    async move {
                        if writer.set_states(&writes).await.is_err() {
                            return false;
                        }
                        let local = at.with_timezone(&chrono_tz::Europe::Madrid).to_rfc3339();
                        let ids = changes.iter().map(|c| c.id).collect::<Vec<_>>();
                        fired.lock().expect("lock").push((local, name, ids));
                        true
                    }
                },
            )));
        }
        let mut feed = feed.into_iter().peekable();
        for hour in 0..hours {
            if hour > 0 {
                tokio::time::advance(Duration::from_secs(3600)).await;
            }
            for tx in &senders {
                barrier(tx).await;
            }
            while let Some((_, new)) = feed.next_if(|(at, _)| *at == hour) {
                let id = store.add_change(&new).await.expect("add change");
                let change = store.change(id).await.expect("get").expect("stored");
                for tx in &senders {
                    tx.send(change.clone()).await.expect("scheduler running");
                    barrier(tx).await;
                }
            }
        }
        assert!(feed.next().is_none(), "the feed must be in order and end within {hours} hours");
        stop.cancel();
        for task in tasks {
            task.await.expect("scheduler task");
        }
        let mut fired = fired.lock().expect("lock").clone();
        fired.sort();
        fired
    }

    fn expected(firings: &[(&str, &str, &[i64])]) -> Vec<Fired> {
        firings.iter().map(|(t, n, ids)| (t.to_string(), n.to_string(), ids.to_vec())).collect()
    }

    /// A nightly scheduler building on changes of `repo`'s `main` that touch a C file.
    fn only_if_changed(name: &str) -> TimedSchedulerDef {
        TimedSchedulerDef {
            only_if_changed: true,
            filter: ChangeFilterDef {
                repository: Some("repo".into()),
                branches: Some(vec!["main".into()]),
                ..ChangeFilterDef::default()
            },
            files: vec!["*.c".into()],
            ..nightly(name, "mon,wed,fri")
        }
    }

    /// Monday 2026-11-23 00:00 in Madrid (UTC+1).
    fn monday() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).single().expect("valid date")
    }

    #[tokio::test(start_paused = true)]
    async fn the_seeds_week_fires_on_its_days_only() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let schedulers = vec![nightly("support", "sun"), nightly("production", "sat"), nightly("devel", "mon,wed,fri")];
        let fired = drive(schedulers, &store, monday(), 7 * 24, vec![]).await;
        let want = expected(&[
            ("2026-11-23T03:00:00+01:00", "devel", &[]),
            ("2026-11-25T03:00:00+01:00", "devel", &[]),
            ("2026-11-27T03:00:00+01:00", "devel", &[]),
            ("2026-11-28T03:00:00+01:00", "production", &[]),
            ("2026-11-29T03:00:00+01:00", "support", &[]),
        ]);
        assert_eq!(fired, want);
    }

    #[tokio::test(start_paused = true)]
    async fn across_the_spring_change_the_offset_moves_and_nothing_is_lost() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        // Friday 2026-03-27 00:00 UTC; clocks go forward in Madrid on Sunday 2026-03-29.
        let start = Utc.with_ymd_and_hms(2026, 3, 27, 0, 0, 0).single().expect("valid date");
        let fired =
            drive(vec![nightly("support", "sun"), nightly("production", "sat")], &store, start, 72, vec![]).await;
        let want = expected(&[
            ("2026-03-28T03:00:00+01:00", "production", &[]),
            ("2026-03-29T03:00:00+02:00", "support", &[]),
        ]);
        assert_eq!(fired, want);
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_fires_at_once_then_every_interval_and_a_restart_keeps_the_rhythm() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 30, 0).single().expect("valid date");
        let def =
            TimedSchedulerDef { timing: Timing::Periodic(Duration::from_secs(3 * 3600)), ..nightly("every-3h", "*") };
        let fired = drive(vec![def.clone()], &store, start, 6, vec![]).await;
        let times: Vec<&str> = fired.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(times, ["2026-01-01T01:30:00+01:00", "2026-01-01T04:30:00+01:00"]);
        // Back an hour after the last firing: the next one is still three hours after it, not at once.
        let fired = drive(vec![def], &store, start + chrono::TimeDelta::hours(4), 5, vec![]).await;
        let times: Vec<&str> = fired.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(times, ["2026-01-01T07:30:00+01:00"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_missed_while_down_fires_once_at_start() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = nightly("devel", "mon,wed,fri");
        assert_eq!(drive(vec![def.clone()], &store, monday(), 4, vec![]).await.len(), 1);
        // Down from Monday 04:00 to Thursday 00:00: Wednesday's build happens at once, then Friday's.
        let thursday = monday() + chrono::TimeDelta::days(3);
        let fired = drive(vec![def], &store, thursday, 48, vec![]).await;
        let want =
            expected(&[("2026-11-26T00:00:00+01:00", "devel", &[]), ("2026-11-27T03:00:00+01:00", "devel", &[])]);
        assert_eq!(fired, want);
    }

    #[tokio::test(start_paused = true)]
    async fn only_if_changed_builds_on_the_firings_after_an_important_change_across_a_restart() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = only_if_changed("devel");
        let day = |d: u64, h: u64| d * 24 + h;

        // Week one, to Saturday noon: Monday builds (the first firing ever), Wednesday builds `a`, Friday has only
        // an unimportant change and skips; `b` comes on Saturday morning, before the restart.
        let feed = vec![
            (day(0, 10), new_change("a", "main", &["a.c"])),
            (day(3, 12), new_change("doc", "main", &["doc.md"])),
            (day(5, 10), new_change("b", "main", &["b.c"])),
        ];
        let fired = drive(vec![def.clone()], &store, monday(), day(5, 12), feed).await;
        let want =
            expected(&[("2026-11-23T03:00:00+01:00", "devel", &[]), ("2026-11-25T03:00:00+01:00", "devel", &[1])]);
        assert_eq!(fired, want);

        // After the restart: nothing fires again at once; Monday builds what came before it (the unimportant
        // change rides along); a change of another branch counts for nothing; Wednesday skips; Friday builds `c`.
        let saturday = monday() + chrono::TimeDelta::hours(day(5, 12) as i64);
        let feed =
            vec![(day(0, 1), new_change("other", "dev", &["x.c"])), (day(5, 8), new_change("c", "main", &["c.c"]))];
        let fired = drive(vec![def], &store, saturday, day(8, 12), feed).await;
        let want =
            expected(&[("2026-11-30T03:00:00+01:00", "devel", &[2, 3]), ("2026-12-04T03:00:00+01:00", "devel", &[5])]);
        assert_eq!(fired, want);
    }

    #[tokio::test(start_paused = true)]
    async fn only_if_changed_takes_the_changes_stored_while_the_master_was_down() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = only_if_changed("devel");
        // Monday's first firing ever builds; the scheduler stops on Monday at 04:00.
        let fired = drive(vec![def.clone()], &store, monday(), 5, vec![]).await;
        assert_eq!(fired, expected(&[("2026-11-23T03:00:00+01:00", "devel", &[])]));
        // Stored by a master killed before its schedulers saw them.
        for (revision, branch, file) in [("a", "main", "a.c"), ("x", "dev", "x.c"), ("doc", "main", "doc.md")] {
            store.add_change(&new_change(revision, branch, &[file])).await.expect("add");
        }
        let tuesday = monday() + chrono::TimeDelta::days(1);
        let fired = drive(vec![def.clone()], &store, tuesday, 48, vec![]).await;
        assert_eq!(fired, expected(&[("2026-11-25T03:00:00+01:00", "devel", &[1, 3])]));
        let state = |key: &'static str| {
            let store = store.clone();
            async move { store.get_state("scheduler:devel", key).await.expect("state") }
        };
        assert_eq!(state(LAST_CLASSIFIED_KEY).await, Some(serde_json::json!(3)));
        assert_eq!(state(CLASSIFIED_KEY).await, Some(serde_json::json!([])));
        // Nothing is built twice: Friday has nothing new.
        let thursday = tuesday + chrono::TimeDelta::days(2);
        assert_eq!(drive(vec![def], &store, thursday, 48, vec![]).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newly_only_if_changed_scheduler_takes_no_change_from_before() {
        let _clock = hold_clock();
        let (store, _dir) = temp_store().await;
        let def = only_if_changed("devel");
        // A run without `only_if_changed`, with a change stored meanwhile; then one with it.
        let plain = TimedSchedulerDef { only_if_changed: false, ..def.clone() };
        let feed = vec![(1, new_change("a", "main", &["a.c"]))];
        let fired = drive(vec![plain], &store, monday(), 5, feed).await;
        assert_eq!(fired, expected(&[("2026-11-23T03:00:00+01:00", "devel", &[])]));
        let tuesday = monday() + chrono::TimeDelta::days(1);
        let last = store.last_change_id().await.expect("last");
        // Wednesday builds (the first firing since `only_if_changed`), without `a`.
        let fired = drive_after(vec![def], &store, last, tuesday, 48, vec![]).await;
        assert_eq!(fired, expected(&[("2026-11-25T03:00:00+01:00", "devel", &[])]));
    }
}
