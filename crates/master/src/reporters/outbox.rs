//! The sender of one reporter: claims its due notices from the store with a lease, sends each with the target's
//! timeout, and settles it — sent; retried later with capped exponential backoff and jitter, or when the server
//! said (`Retry-After`); or dead, refused for good or older than the reporter's `max_age`, with the last error.
//! A master that dies mid-send leaves a lease that expires, and the notice is claimed again after the restart.
//! With `max_per_minute`, at most that many attempts start in any 60 s: the excess waits its turn (delayed,
//! in order; nothing is dropped or merged).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::targets::{SendError, Sender};
use crate::config::ReporterDef;
use crate::model::Notification;
use crate::store::{now_ms, Outcome, Store};

/// Notices claimed at once: one, so that its lease (twice the reporter's timeout, plus [`LEASE_MARGIN`]) outlives
/// its send but not by much — a notice a killed master was sending is claimable soon after the restart.
const BATCH: i64 = 1;
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The first retry's wait, doubled each attempt up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How long a sender with nothing due waits at most before it looks again (a notice added by another master).
const IDLE: Duration = Duration::from_secs(30);
/// After a store error.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The window of a reporter's `max_per_minute`.
const RATE_WINDOW: Duration = Duration::from_secs(60);

pub struct Outbox {
    def: Arc<ReporterDef>,
    store: Store,
    sender: Sender,
    wake: Arc<Notify>,
    /// When the last attempts started, the oldest first (at most `max_per_minute` kept).
    recent: Mutex<VecDeque<tokio::time::Instant>>,
}

/// How long to wait before the next attempt so that at most `limit` start in any [`RATE_WINDOW`], given when
/// the last ones started (the oldest first).
pub fn rate_wait(recent: &VecDeque<tokio::time::Instant>, limit: u32, now: tokio::time::Instant) -> Duration {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if recent.len() < limit {
        return Duration::ZERO;
    }
    recent
        .get(recent.len() - limit)
        .map_or(Duration::ZERO, |&oldest| (oldest + RATE_WINDOW).saturating_duration_since(now))
}

/// The wait before attempt `attempts + 1`: `base·2^attempts`, capped, times a jitter in [0.5, 1].
pub fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    let full = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(exponent)).min(BACKOFF_CAP);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

impl Outbox {
    pub fn new(def: Arc<ReporterDef>, store: Store, sender: Sender, wake: Arc<Notify>) -> Outbox {
        Outbox { def, store, sender, wake, recent: Mutex::default() }
    }

    /// Sends until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let lease = i64::try_from((self.def.timeout * 2 + LEASE_MARGIN).as_millis()).unwrap_or(i64::MAX);
        loop {
            // Listen before looking, so a notice added meanwhile wakes this sender.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // At `max_per_minute`, wait before claiming (a claimed notice's lease keeps running).
            if let Some(limit) = self.def.max_per_minute {
                let wait = {
                    let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
                    rate_wait(&recent, limit, tokio::time::Instant::now())
                };
                if !wait.is_zero() {
                    tracing::debug!(reporter = %self.def.name, wait_ms = wait.as_millis(), "max_per_minute reached: notices wait");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            }
            let claimed = match self.store.claim_notifications(&self.def.name, now_ms(), lease, BATCH).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(reporter = %self.def.name, error = %e, "claiming notices failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(STORE_RETRY) => continue,
                    }
                }
            };
            if !claimed.is_empty() {
                for notice in claimed {
                    if stop.is_cancelled() {
                        return; // its lease expires; it is claimed again at the next start
                    }
                    if let Some(limit) = self.def.max_per_minute {
                        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
                        recent.push_back(tokio::time::Instant::now());
                        while recent.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
                            recent.pop_front();
                        }
                    }
                    self.deliver(&notice).await;
                }
                continue;
            }
            let wait = match self.store.next_notification_due(&self.def.name).await {
                Ok(Some(due)) => Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(IDLE),
                Ok(None) => IDLE,
                Err(_) => STORE_RETRY,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut woken => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends one notice and records how it went.
    pub async fn deliver(&self, notice: &Notification) {
        let outcome = self.attempt(notice).await;
        match &outcome {
            Outcome::Sent { answer } => {
                tracing::info!(reporter = %self.def.name, notice = notice.id, target = %notice.target, answer, "notice sent");
            }
            Outcome::Retry { error, .. } => {
                tracing::warn!(reporter = %self.def.name, notice = notice.id, target = %notice.target, error, "notice not sent; retried later");
            }
            Outcome::Dead { error } => {
                tracing::error!(reporter = %self.def.name, notice = notice.id, target = %notice.target, error, "notice given up");
            }
        }
        if let Err(e) = self.store.settle_notification(notice.id, &outcome).await {
            tracing::error!(reporter = %self.def.name, notice = notice.id, error = %e, "recording a notice's outcome failed");
        }
    }

    /// One attempt, and what to record of it.
    pub async fn attempt(&self, notice: &Notification) -> Outcome {
        let deadline = notice.created_at.saturating_mul(1000)
            + i64::try_from(self.def.max_age.as_millis()).unwrap_or(i64::MAX / 2);
        let result = match tokio::time::timeout(self.def.timeout, self.sender.send(notice)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::retry(format!("no answer within {} s", self.def.timeout.as_secs()))),
        };
        match result {
            Ok(answer) => Outcome::Sent { answer },
            Err(SendError::Permanent(error)) => Outcome::Dead { error },
            Err(SendError::Retry { after, message }) => {
                let wait = after.unwrap_or_else(|| backoff(notice.attempts));
                let at = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2));
                if at > deadline {
                    let age = self.def.max_age.as_secs();
                    Outcome::Dead { error: format!("still not sent after max_age ({age} s): {message}") }
                } else {
                    Outcome::Retry { at, error: message }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_per_minute_delays_the_excess() {
        let start = tokio::time::Instant::now();
        let mut recent = VecDeque::new();
        assert_eq!(rate_wait(&recent, 2, start), Duration::ZERO);
        recent.push_back(start);
        assert_eq!(rate_wait(&recent, 2, start), Duration::ZERO);
        recent.push_back(start + Duration::from_secs(10));
        // A third within the minute waits until the first is a minute old.
        assert_eq!(rate_wait(&recent, 2, start + Duration::from_secs(20)), Duration::from_secs(40));
        assert_eq!(rate_wait(&recent, 2, start + Duration::from_secs(61)), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        for attempts in 0..30 {
            let full = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(attempts.min(20))).min(BACKOFF_CAP);
            let wait = backoff(i64::from(attempts));
            assert!(wait <= full && wait >= full / 2, "{attempts}: {wait:?} of {full:?}");
        }
        assert!(backoff(100) <= BACKOFF_CAP);
    }
}
