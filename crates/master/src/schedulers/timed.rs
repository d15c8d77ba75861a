//! Running the timed schedulers: wait for the next firing of the calendar (or the period), fire, repeat.
//!
//! Time comes from a [`Clock`]: the system's wall clock in a master, or a clock driven by tokio's paused time
//! in tests, so a week of calendar runs in milliseconds.

use std::future::Future;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::on_change::Classifier;
use super::state_name;
use crate::config::{TimedSchedulerDef, Timing};
use crate::store::{Change, Store};

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
struct TimedState<'a> {
    store: &'a Store,
    name: String,
    /// When it last fired; `None` before its first firing.
    last_build: Option<DateTime<Utc>>,
    /// The changes that passed the filter since the last firing, oldest first, with their importance.
    classified: Vec<(Change, bool)>,
}

impl<'a> TimedState<'a> {
    async fn load(store: &'a Store, scheduler: &str) -> TimedState<'a> {
        let name = state_name(scheduler);
        let last_build = read_state::<i64>(store, &name, LAST_BUILD_KEY)
            .await
            .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0));
        let mut classified = Vec::new();
        for (id, important) in read_state::<Vec<(i64, bool)>>(store, &name, CLASSIFIED_KEY).await.unwrap_or_default() {
            match store.change(id).await {
                Ok(Some(change)) => classified.push((change, important)),
                Ok(None) => tracing::warn!(scheduler = %name, change = id, "a classified change is gone"),
                Err(e) => tracing::error!(scheduler = %name, change = id, error = %e, "could not read a change"),
            }
        }
        TimedState { store, name, last_build, classified }
    }

    async fn save_classified(&self) {
        let ids: Vec<(i64, bool)> = self.classified.iter().map(|(c, important)| (c.id, *important)).collect();
        self.write(CLASSIFIED_KEY, serde_json::json!(ids)).await;
    }

    async fn write(&self, key: &str, value: serde_json::Value) {
        if let Err(e) = self.store.set_state(&self.name, key, &value).await {
            tracing::error!(scheduler = %self.name, key, error = %e, "could not store the scheduler's state");
        }
    }
}

/// A value of the object state; a missing, unreadable or undecodable one is `None` (and logged).
async fn read_state<T: serde::de::DeserializeOwned>(store: &Store, name: &str, key: &str) -> Option<T> {
    match store.get_state(name, key).await {
        Ok(value) => value.and_then(|value| {
            serde_json::from_value(value)
                .map_err(|e| tracing::error!(scheduler = %name, key, error = %e, "unreadable scheduler state"))
                .ok()
        }),
        Err(e) => {
            tracing::error!(scheduler = %name, key, error = %e, "could not read the scheduler's state");
            None
        }
    }
}

/// Runs one timed scheduler until `stop`, calling `fire` with the time and the changes to build (oldest
/// first; empty: build without a source stamp) at each of its firings that builds.
///
/// The time of the last firing is kept in `store` (see [`TimedState`]): a nightly scheduler fires at each time
/// of its calendar after it, a periodic one an interval after it (the first time at once). A time missed while
/// the master was down fires once, at start (as in Buildbot); a restart never fires again a time already fired.
/// With `only_if_changed`, the changes of `changes` that pass the filter are kept (in the store too) until the
/// next firing, which builds only if one of them is important — or if it is the scheduler's first firing ever,
/// or the first since `only_if_changed` was turned on.
pub async fn run<F, Fut>(
    def: TimedSchedulerDef,
    clock: Clock,
    store: Store,
    mut changes: Option<mpsc::Receiver<Change>>,
    stop: CancellationToken,
    mut fire: F,
) where
    F: FnMut(DateTime<Utc>, Vec<Change>) -> Fut,
    Fut: Future<Output = ()>,
{
    let classifier = Classifier::new(&def.filter, &def.files);
    let mut state = TimedState::load(&store, &def.name).await;
    if !def.only_if_changed && !state.classified.is_empty() {
        state.classified.clear();
        state.save_classified().await;
    }
    let mut first_build = state.last_build.is_none();
    loop {
        let now = clock.now();
        let next = match &def.timing {
            Timing::Nightly(calendar) => {
                let Some(next) = calendar.next_after(state.last_build.unwrap_or(now).max(now - MAX_CATCH_UP)) else {
                    tracing::info!(scheduler = %def.name, "the calendar has no more times");
                    return;
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
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = clock.sleep_until(at) => break,
                received = recv(&mut changes) => {
                    let Some(change) = received else {
                        changes = None;
                        continue;
                    };
                    if let Some(important) = classifier.classify(&change).filter(|_| def.only_if_changed) {
                        state.classified.push((change, important));
                        state.save_classified().await;
                    }
                }
            }
        }
        // The firing is stored before it builds: a crash in between loses this build rather than repeating it.
        state.last_build = Some(at);
        state.write(LAST_BUILD_KEY, serde_json::json!(at.timestamp())).await;
        let last_only_if_changed =
            read_state::<bool>(&store, &state.name, LAST_ONLY_IF_CHANGED_KEY).await.unwrap_or(true);
        let important = state.classified.iter().any(|(_, important)| *important);
        if def.only_if_changed && last_only_if_changed && !important && !first_build {
            tracing::info!(scheduler = %def.name, "no important change since the last firing: no build");
            continue;
        }
        first_build = false;
        if last_only_if_changed != def.only_if_changed {
            state.write(LAST_ONLY_IF_CHANGED_KEY, serde_json::json!(def.only_if_changed)).await;
        }
        let group: Vec<Change> = state.classified.iter().map(|(change, _)| change.clone()).collect();
        // At least once: the changes are forgotten only after their build was submitted.
        fire(at, group).await;
        if !state.classified.is_empty() {
            state.classified.clear();
            state.save_classified().await;
        }
    }
}

/// How far back a nightly scheduler looks for a time it missed while the master was down.
const MAX_CATCH_UP: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// The next change, or never when there is no channel.
async fn recv(changes: &mut Option<mpsc::Receiver<Change>>) -> Option<Change> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::calendar::{Calendar, CalendarFields};
    use crate::config::ChangeFilterDef;
    use crate::schedulers::testing::{barrier, hold_clock, stored};
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

    /// Runs the schedulers on `store` with a clock reading `start`, moving an hour at a time for `hours`, giving
    /// them the changes of `feed` (hours after start, in order); returns the firings, sorted.
    async fn drive(
        schedulers: Vec<TimedSchedulerDef>,
        store: &Store,
        start: DateTime<Utc>,
        hours: u64,
        feed: Vec<(u64, Change)>,
    ) -> Vec<Fired> {
        let clock = Clock::tokio_from(start);
        let stop = CancellationToken::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        for def in schedulers {
            let (tx, rx) = mpsc::channel(1);
            senders.push(tx);
            let fired = fired.clone();
            let name = def.name.clone();
            tasks.push(tokio::spawn(run(def, clock, store.clone(), Some(rx), stop.clone(), move |at, changes| {
                let fired = fired.clone();
                let name = name.clone();
                async move {
                    let local = at.with_timezone(&chrono_tz::Europe::Madrid).to_rfc3339();
                    let ids = changes.iter().map(|c| c.id).collect::<Vec<_>>();
                    fired.lock().expect("lock").push((local, name, ids));
                }
            })));
        }
        let mut feed = feed.into_iter().peekable();
        for hour in 0..hours {
            if hour > 0 {
                tokio::time::advance(Duration::from_secs(3600)).await;
            }
            for tx in &senders {
                barrier(tx).await;
            }
            while let Some((_, change)) = feed.next_if(|(at, _)| *at == hour) {
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
        let def = TimedSchedulerDef {
            only_if_changed: true,
            filter: ChangeFilterDef {
                repository: Some("repo".into()),
                branches: Some(vec!["main".into()]),
                ..ChangeFilterDef::default()
            },
            files: vec!["*.c".into()],
            ..nightly("devel", "mon,wed,fri")
        };
        let a = stored(&store, "a", "main", &["a.c"]).await;
        let doc = stored(&store, "doc", "main", &["doc.md"]).await;
        let b = stored(&store, "b", "main", &["b.c"]).await;
        let other = stored(&store, "other", "dev", &["x.c"]).await;
        let c = stored(&store, "c", "main", &["c.c"]).await;
        let (ida, iddoc, idb, idc) = (a.id, doc.id, b.id, c.id);
        let day = |d: u64, h: u64| d * 24 + h;

        // Week one, to Saturday noon: Monday builds (the first firing ever), Wednesday builds `a`, Friday has only
        // an unimportant change and skips; `b` comes on Saturday morning, before the restart.
        let feed = vec![(day(0, 10), a), (day(3, 12), doc), (day(5, 10), b)];
        let fired = drive(vec![def.clone()], &store, monday(), day(5, 12), feed).await;
        let want =
            expected(&[("2026-11-23T03:00:00+01:00", "devel", &[]), ("2026-11-25T03:00:00+01:00", "devel", &[ida])]);
        assert_eq!(fired, want);

        // After the restart: nothing fires again at once; Monday builds what came before it (the unimportant
        // change rides along); a change of another branch counts for nothing; Wednesday skips; Friday builds `c`.
        let saturday = monday() + chrono::TimeDelta::hours(day(5, 12) as i64);
        let feed = vec![(day(0, 1), other), (day(5, 8), c)];
        let fired = drive(vec![def], &store, saturday, day(8, 12), feed).await;
        let want = expected(&[
            ("2026-11-30T03:00:00+01:00", "devel", &[iddoc, idb]),
            ("2026-12-04T03:00:00+01:00", "devel", &[idc]),
        ]);
        assert_eq!(fired, want);
    }
}
