//! A listener's admission of connections: at most `max` open, at most `per_address` from one IP address; a
//! connection beyond a cap replaces the least recently active replaceable one, or is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Limits;

/// The admissions of one listener. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    limits: Limits,
    epoch: Instant,
    inner: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    slots: HashMap<u64, Slot>,
    per_address: HashMap<IpAddr, usize>,
}

struct Slot {
    address: IpAddr,
    shared: Arc<Shared>,
}

/// What a connection and its gate both see.
struct Shared {
    /// Milliseconds since the gate's epoch at the last byte read or written (or the admission).
    active_at: AtomicU64,
    replaceable: AtomicBool,
    /// Cancelled when a newer connection replaced this one: its task must close it.
    replaced: CancellationToken,
}

impl Open {
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        if let Some(count) = self.per_address.get_mut(&slot.address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&slot.address);
            }
        }
        Some(slot)
    }
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate { limits, epoch: Instant::now(), inner: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.lock().slots.len()
    }

    /// Admits a connection from `address`, replacing an older one if a cap is reached; `None` when it is
    /// refused (a cap is reached and no connection there may be replaced).
    pub fn admit(&self, address: IpAddr) -> Option<Admitted> {
        let now = self.now();
        let mut open = self.lock();
        let address_full = open.per_address.get(&address).copied().unwrap_or(0) >= self.limits.per_address;
        if address_full || open.slots.len() >= self.limits.max {
            let victim = open
                .slots
                .iter()
                .filter(|(_, slot)| slot.shared.replaceable.load(Ordering::Relaxed))
                .filter(|(_, slot)| !address_full || slot.address == address)
                .min_by_key(|(id, slot)| (slot.shared.active_at.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id)?;
            if let Some(slot) = open.remove(victim) {
                slot.shared.replaced.cancel();
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let shared = Arc::new(Shared {
            active_at: AtomicU64::new(now),
            replaceable: AtomicBool::new(true),
            replaced: CancellationToken::new(),
        });
        open.slots.insert(id, Slot { address, shared: shared.clone() });
        *open.per_address.entry(address).or_default() += 1;
        Some(Admitted { id, gate: self.clone(), shared })
    }
}

/// An admitted connection's place under its listener's caps, given back when dropped.
pub struct Admitted {
    id: u64,
    gate: Gate,
    shared: Arc<Shared>,
}

impl Admitted {
    /// Resolves when a newer connection replaced this one.
    pub async fn replaced(&self) {
        self.shared.replaced.cancelled().await;
    }

    /// From now on this connection is never replaced (an attached worker); `false` if it was replaced already.
    pub fn keep(&self) -> bool {
        let _open = self.gate.lock();
        self.shared.replaceable.store(false, Ordering::Relaxed);
        !self.shared.replaced.is_cancelled()
    }

    /// `io`, telling this admission of every byte it moves (so the least recently active is replaced first).
    pub fn track<S>(&self, io: S) -> Tracked<S> {
        Tracked { io, gate: self.gate.clone(), shared: self.shared.clone() }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.lock().remove(self.id);
    }
}

/// A stream that records when it last moved a byte.
pub struct Tracked<S> {
    io: S,
    gate: Gate,
    shared: Arc<Shared>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.shared.active_at.store(self.gate.now(), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_beyond_a_cap_replaces_the_least_recently_active() {
        let gate = Gate::new(Limits { max: 3, per_address: 2 });
        let a1 = gate.admit(ip(1)).expect("a1");
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let a2 = gate.admit(ip(1)).expect("a2");
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let b1 = gate.admit(ip(2)).expect("b1");
        assert_eq!(gate.open(), 3);

        // The address is full: its oldest goes, the other address's stays.
        let a3 = gate.admit(ip(1)).expect("a3 replaces a1");
        assert!(a1.shared.replaced.is_cancelled());
        assert!(!a2.shared.replaced.is_cancelled() && !b1.shared.replaced.is_cancelled());
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 3, "dropping a replaced connection frees nothing twice");

        // All full: the least recently active of any address goes; activity counts, not age.
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        a2.shared.active_at.store(gate.now(), Ordering::Relaxed);
        let c1 = gate.admit(ip(3)).expect("c1 replaces b1");
        assert!(b1.shared.replaced.is_cancelled() && !a2.shared.replaced.is_cancelled());

        // Kept connections are never replaced: with all kept, a new one is refused.
        for kept in [&a2, &a3, &c1] {
            assert!(kept.keep());
        }
        assert!(!b1.keep(), "a replaced connection cannot be kept");
        assert!(gate.admit(ip(4)).is_none());
        drop(c1);
        assert!(gate.admit(ip(4)).is_some());
    }
}
