//! Failed logins on the worker port, by address: each address may fail [`FAILURE_BURST`] times in a row, then one
//! more time every [`FAILURE_REFILL`]; an attempt beyond that is refused (429) without its password being
//! checked. So guessing a worker's password from one address runs at about one guess a second, whatever the
//! attacker's speed; a worker that knows its password and retries with its backoff gets in once its address has
//! waited.
//!
//! Memory is bounded: at most [`MAX_ADDRESSES`] addresses are remembered; when full, those whose allowance has
//! come back whole are forgotten first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// Failures an address may have in a row before it must wait.
pub const FAILURE_BURST: u32 = 5;
/// The time after which an address may fail once more.
pub const FAILURE_REFILL: Duration = Duration::from_secs(1);
/// Addresses remembered at most.
const MAX_ADDRESSES: usize = 10_000;

/// The failed logins of each address. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Attempts {
    inner: Arc<Mutex<HashMap<IpAddr, Allowance>>>,
}

/// What an address may still fail: `left` failures as of `at`.
#[derive(Clone, Copy)]
struct Allowance {
    left: f64,
    at: Instant,
}

impl Allowance {
    fn now(self, now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() / FAILURE_REFILL.as_secs_f64();
        (self.left + refilled).min(f64::from(FAILURE_BURST))
    }
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Allowance>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an attempt from `address` may be checked now.
    pub(crate) fn may_try(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        self.lock().get(&address).is_none_or(|allowance| allowance.now(now) >= 1.0)
    }

    /// Records a failed attempt from `address`.
    pub(crate) fn failed(&self, address: IpAddr) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&address) {
            map.retain(|_, allowance| allowance.now(now) < f64::from(FAILURE_BURST));
            if map.len() >= MAX_ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, a)| a.at).map(|(ip, _)| *ip) {
                    map.remove(&oldest);
                }
            }
        }
        let allowance = map.entry(address).or_insert(Allowance { left: f64::from(FAILURE_BURST), at: now });
        *allowance = Allowance { left: (allowance.now(now) - 1.0).max(0.0), at: now };
    }
}

/// The digests of passwords already checked against a worker's hash, by worker name and hash: a worker that
/// reconnects is checked in constant time instead of by argon2 again.
#[derive(Clone, Default)]
pub(crate) struct Verified {
    /// Worker name → (the hash, the digest of the password that matched it).
    inner: Arc<Mutex<HashMap<String, (String, Digest32)>>>,
}

type Digest32 = [u8; 32];

impl Verified {
    fn digest(password: &str) -> [u8; 32] {
        Sha256::digest(password.as_bytes()).into()
    }

    pub(crate) fn contains(&self, name: &str, hash: &str, password: &str) -> bool {
        use subtle::ConstantTimeEq;
        let map = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(name).is_some_and(|(known_hash, digest)| {
            known_hash == hash && bool::from(digest.ct_eq(&Verified::digest(password)))
        })
    }

    pub(crate) fn insert(&self, name: &str, hash: &str, password: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(name.to_string(), (hash.to_string(), Verified::digest(password)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_address_that_fails_too_often_waits() {
        let attempts = Attempts::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        for _ in 0..FAILURE_BURST {
            assert!(attempts.may_try(a));
            attempts.failed(a);
        }
        assert!(!attempts.may_try(a), "the burst is spent");
        assert!(attempts.may_try(b), "another address is not affected");
        tokio::time::advance(FAILURE_REFILL).await;
        assert!(attempts.may_try(a), "one more after the refill time");
        attempts.failed(a);
        assert!(!attempts.may_try(a));
        tokio::time::advance(FAILURE_REFILL * FAILURE_BURST * 2).await;
        for _ in 0..FAILURE_BURST {
            assert!(attempts.may_try(a));
            attempts.failed(a);
        }
        assert!(!attempts.may_try(a), "the allowance comes back whole, never more");
    }

    #[test]
    fn remembered_passwords_match_only_their_hash() {
        let verified = Verified::default();
        verified.insert("w1", "$argon2id$x", "pw");
        assert!(verified.contains("w1", "$argon2id$x", "pw"));
        assert!(!verified.contains("w1", "$argon2id$x", "px"));
        assert!(!verified.contains("w1", "$argon2id$y", "pw"), "a new hash (reconfig) is checked again");
        assert!(!verified.contains("w2", "$argon2id$x", "pw"));
    }
}
