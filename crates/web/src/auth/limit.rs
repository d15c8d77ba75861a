//! Login attempts, limited per client address and per user name: each has a bucket of [`BURST`] failures that
//! refills at one per [`REFILL`]; while either bucket is empty every attempt is refused unchecked, so guessing
//! passwords goes no faster than the refill whatever the client does. Successful logins cost nothing. Memory is
//! bounded: at most [`MAX_TRACKED`] keys each, full buckets forgotten first.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failed attempts allowed in a row before the limit applies.
pub const BURST: f64 = 5.0;
/// The time one more failed attempt is allowed after.
pub const REFILL: Duration = Duration::from_secs(1);
/// Addresses (and user names) tracked at most.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn level(&self, now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        (self.tokens + refilled).min(BURST)
    }
}

#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    fn new() -> Self {
        Buckets { map: HashMap::new() }
    }

    /// How long until `key` may try again (zero: now).
    fn wait(&self, key: &K, now: Instant) -> Duration {
        let level = self.map.get(key).map_or(BURST, |b| b.level(now));
        if level >= 1.0 {
            Duration::ZERO
        } else {
            REFILL.mul_f64(1.0 - level)
        }
    }

    fn fail(&mut self, key: &K, now: Instant) {
        if self.map.len() >= MAX_TRACKED && !self.map.contains_key(key) {
            self.map.retain(|_, b| b.level(now) < BURST);
            if self.map.len() >= MAX_TRACKED {
                self.map.clear();
            }
        }
        let level = self.map.get(key).map_or(BURST, |b| b.level(now));
        self.map.insert(key.clone(), Bucket { tokens: (level - 1.0).max(0.0), at: now });
    }
}

/// The login limits of one web server.
#[derive(Debug)]
pub struct LoginLimits {
    inner: Mutex<(Buckets<IpAddr>, Buckets<String>)>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits { inner: Mutex::new((Buckets::new(), Buckets::new())) }
    }
}

impl LoginLimits {
    /// `Err(wait)` if an attempt from `address` as `name` must be refused now, and for how long.
    pub fn check(&self, address: Option<IpAddr>, name: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let by_address = address.map_or(Duration::ZERO, |a| guard.0.wait(&a, now));
        let wait = by_address.max(guard.1.wait(&name.to_string(), now));
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, address: Option<IpAddr>, name: &str) {
        let now = Instant::now();
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(address) = address {
            guard.0.fail(&address, now);
        }
        guard.1.fail(&name.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test(start_paused = true)]
    async fn failures_beyond_the_burst_wait_for_the_refill() {
        let limits = LoginLimits::default();
        for _ in 0..5 {
            assert_eq!(limits.check(HOME, "ann"), Ok(()));
            limits.failed(HOME, "ann");
        }
        let wait = limits.check(HOME, "ann").expect_err("limited");
        assert!(wait <= REFILL);
        assert!(limits.check(None, "ann").is_err(), "the user's bucket is empty too");
        let other: Option<IpAddr> = "10.0.0.1".parse().ok();
        assert_eq!(limits.check(other, "bob"), Ok(()), "another address and user are not limited");
        tokio::time::advance(REFILL).await;
        assert_eq!(limits.check(HOME, "ann"), Ok(()));
        limits.failed(HOME, "ann");
        assert!(limits.check(HOME, "ann").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let limits = LoginLimits::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            limits.failed(Some(IpAddr::V4(i.into())), "x");
        }
        let guard = limits.inner.lock().expect("lock");
        assert!(guard.0.map.len() <= MAX_TRACKED);
    }
}
