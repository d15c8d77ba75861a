//! Running the timed schedulers: wait for the next firing of the calendar (or the period), fire, repeat.
//!
//! Time comes from a [`Clock`]: the system's wall clock in a master, or a clock driven by tokio's paused time
//! in tests, so a week of calendar runs in milliseconds.

use std::future::Future;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{TimedSchedulerDef, Timing};

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

/// Runs one timed scheduler until `stop`, calling `fire` at each of its times. A nightly scheduler fires at
/// each time of its calendar from now on (times missed while the master was down are not made up, as in
/// Buildbot); a periodic one fires at once, then every interval.
pub async fn run<F, Fut>(def: TimedSchedulerDef, clock: Clock, stop: CancellationToken, mut fire: F)
where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = ()>,
{
    match def.timing {
        Timing::Nightly(calendar) => {
            let mut after = clock.now();
            loop {
                let Some(next) = calendar.next_after(after) else {
                    tracing::info!(scheduler = %def.name, "the calendar has no more times");
                    return;
                };
                let next = next.with_timezone(&Utc);
                tokio::select! {
                    () = clock.sleep_until(next) => {}
                    () = stop.cancelled() => return,
                }
                fire(next).await;
                after = next;
            }
        }
        Timing::Periodic(interval) => loop {
            fire(clock.now()).await;
            tokio::select! {
                () = tokio::time::sleep(interval.max(Duration::from_secs(1))) => {}
                () = stop.cancelled() => return,
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::TimeZone;

    use super::*;
    use crate::schedulers::calendar::{Calendar, CalendarFields};

    fn nightly(name: &str, day_of_week: &str) -> TimedSchedulerDef {
        let fields = CalendarFields { hour: "3".into(), day_of_week: day_of_week.into(), ..CalendarFields::default() };
        let calendar = Calendar::from_fields(&fields, "Europe/Madrid").expect("valid calendar");
        TimedSchedulerDef {
            name: name.into(),
            builders: vec![name.into()],
            timing: Timing::Nightly(calendar),
            priority: None,
        }
    }

    /// Runs the schedulers on a paused clock from `start` for `days` (less a minute), returning (time in Madrid,
    /// scheduler).
    async fn firings(schedulers: Vec<TimedSchedulerDef>, start: DateTime<Utc>, days: u64) -> Vec<(String, String)> {
        let clock = Clock::tokio_from(start);
        let stop = CancellationToken::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for def in schedulers {
            let fired = fired.clone();
            let name = def.name.clone();
            tasks.push(tokio::spawn(run(def, clock, stop.clone(), move |at| {
                let fired = fired.clone();
                let name = name.clone();
                async move {
                    let local = at.with_timezone(&chrono_tz::Europe::Madrid).to_rfc3339();
                    fired.lock().expect("lock").push((local, name));
                }
            })));
        }
        // A minute short of the end, so that no firing ties with the stop.
        tokio::time::sleep(Duration::from_secs(days * 86_400 - 60)).await;
        stop.cancel();
        for task in tasks {
            task.await.expect("scheduler task");
        }
        let mut fired = fired.lock().expect("lock").clone();
        fired.sort();
        fired
    }

    #[tokio::test(start_paused = true)]
    async fn the_seeds_week_fires_on_its_days_only() {
        // Monday 2026-11-23 00:00 in Madrid (UTC+1).
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).single().expect("valid date");
        let schedulers = vec![nightly("support", "sun"), nightly("production", "sat"), nightly("devel", "mon,wed,fri")];
        let fired = firings(schedulers, start, 7).await;
        let expected = [
            ("2026-11-23T03:00:00+01:00", "devel"),
            ("2026-11-25T03:00:00+01:00", "devel"),
            ("2026-11-27T03:00:00+01:00", "devel"),
            ("2026-11-28T03:00:00+01:00", "production"),
            ("2026-11-29T03:00:00+01:00", "support"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect();
        assert_eq!(fired, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn across_the_spring_change_the_offset_moves_and_nothing_is_lost() {
        // Friday 2026-03-27 00:00 UTC; clocks go forward in Madrid on Sunday 2026-03-29.
        let start = Utc.with_ymd_and_hms(2026, 3, 27, 0, 0, 0).single().expect("valid date");
        let fired = firings(vec![nightly("support", "sun"), nightly("production", "sat")], start, 3).await;
        let expected = [("2026-03-28T03:00:00+01:00", "production"), ("2026-03-29T03:00:00+02:00", "support")];
        let expected: Vec<(String, String)> = expected.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect();
        assert_eq!(fired, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_fires_at_once_then_every_interval() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid date");
        let def = TimedSchedulerDef {
            name: "hourly".into(),
            builders: vec!["b".into()],
            timing: Timing::Periodic(Duration::from_secs(3600)),
            priority: None,
        };
        let fired = firings(vec![def], start, 1).await;
        assert_eq!(fired.len(), 24, "{fired:?}");
        assert_eq!(fired[0].0, "2026-01-01T01:00:00+01:00");
    }
}
