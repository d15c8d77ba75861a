//! Accepting connections without spinning: an `accept` that fails (no file descriptor left, no memory) is
//! retried after a delay that doubles up to [`MAX_DELAY`], and its log line is written at most once a second
//! with the number of failures it stands for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The first delay after a failed `accept`.
const FIRST_DELAY: Duration = Duration::from_millis(5);
/// The longest delay between two `accept`s that fail.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// A line logged at most once per window; the occurrences in between are counted and reported with the next.
#[derive(Debug)]
pub struct RepeatedLog {
    window: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RepeatedLog {
    pub fn per_second() -> RepeatedLog {
        RepeatedLog { window: Duration::from_secs(1), last: None, suppressed: 0 }
    }

    /// Records one occurrence; `Some(n)` when it is to be logged now, `n` being the occurrences since the last
    /// line that were not logged.
    pub fn occurred(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now < last + self.window => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A [`RepeatedLog`] shared by the tasks of a listener's connections (a line each bad connection would write).
#[derive(Debug, Clone)]
pub struct SharedLog(Arc<std::sync::Mutex<RepeatedLog>>);

impl SharedLog {
    pub fn per_second() -> SharedLog {
        SharedLog(Arc::new(std::sync::Mutex::new(RepeatedLog::per_second())))
    }

    /// As [`RepeatedLog::occurred`].
    pub fn occurred(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).occurred()
    }
}

/// A listener whose `accept` backs off on errors.
pub struct Acceptor {
    listener: TcpListener,
    /// Which listener, for the log ("worker", "web").
    what: &'static str,
    delay: Duration,
    log: RepeatedLog,
    failures: Arc<AtomicU64>,
}

/// How many `accept`s of an [`Acceptor`] failed so far; readable while it accepts.
#[derive(Debug, Clone)]
pub struct Failures(Arc<AtomicU64>);

impl Failures {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Acceptor {
    /// `what` names the listener in the log ("worker", "web").
    pub fn new(listener: TcpListener, what: &'static str) -> Acceptor {
        Acceptor { listener, what, delay: Duration::ZERO, log: RepeatedLog::per_second(), failures: Arc::default() }
    }

    pub fn failures(&self) -> Failures {
        Failures(self.failures.clone())
    }

    /// The next connection. Errors are logged (rate-limited) and waited out; it never returns one. Cancelling
    /// it loses no connection.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.delay = Duration::ZERO;
                    return accepted;
                }
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    // A connection that died in the backlog is that connection's problem, not the listener's.
                    let transient =
                        matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset);
                    self.delay =
                        if transient { Duration::ZERO } else { (self.delay * 2).clamp(FIRST_DELAY, MAX_DELAY) };
                    if let Some(repeats) = self.log.occurred() {
                        let what = self.what;
                        tracing::warn!(error = %e, repeats, retry_in = ?self.delay, "accepting a {what} connection failed");
                    }
                    if !self.delay.is_zero() {
                        tokio::time::sleep(self.delay).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_repeated_line_is_logged_once_a_second_with_its_count() {
        let mut log = RepeatedLog::per_second();
        assert_eq!(log.occurred(), Some(0));
        let logged: Vec<_> = (0..999).filter_map(|_| log.occurred()).collect();
        assert!(logged.is_empty(), "{logged:?}");
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(log.occurred(), Some(999));
        assert_eq!(log.occurred(), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(log.occurred(), Some(1));
    }
}
