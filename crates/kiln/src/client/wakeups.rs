//! Following a build over the master's event stream (`GET /api/v2/events?path=…`): a follower reads what it
//! prints from the REST API, and re-reads it when the master publishes an event that concerns it, instead of
//! asking every few hundred milliseconds. The stream only says *when* to read; the lines always come from the
//! REST API, so an event lost (a dropped connection) loses no line: after a reconnect the follower reads again,
//! and a long silence makes it read anyway.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Api;

/// How long a follower waits without any event before it reads anyway (a safety net, not the mechanism).
const SILENCE: Duration = Duration::from_secs(5);
/// The pause before reconnecting a stream that failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// Wakes a follower at each event of the master that matches its routing-key patterns.
pub struct Wakeups {
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Wakeups {
    /// Opens the event stream for `paths` (Buildbot routing-key patterns, `*` one segment) and returns once it is
    /// connected, so that anything that happens after this returns wakes the follower. A master whose stream
    /// cannot be opened is followed by reading every few seconds.
    pub async fn start(api: &Api, paths: Vec<String>) -> Wakeups {
        let notify = Arc::new(Notify::new());
        let first = api.events(&paths).await;
        if let Err(e) = &first {
            eprintln!("kiln: the master's event stream is unavailable ({e:#}); reading every {SILENCE:?} instead");
        }
        let task = tokio::spawn(listen(api.clone(), paths, first.ok(), notify.clone()));
        Wakeups { notify, task }
    }

    /// Returns at the next event (one that came since the last call counts), or after a long silence.
    pub async fn next(&self) {
        let _ = tokio::time::timeout(SILENCE, self.notify.notified()).await;
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the stream, waking the follower at each event; reconnects when it ends or fails, and wakes the follower
/// then too (events may have gone by meanwhile).
async fn listen(api: Api, paths: Vec<String>, mut response: Option<reqwest::Response>, notify: Arc<Notify>) {
    loop {
        if let Some(mut stream) = response.take() {
            let mut tail = Vec::new();
            while let Ok(Some(chunk)) = stream.chunk().await {
                // An event has a `data:` line; a keep-alive comment does not. The marker may straddle two chunks.
                tail.extend_from_slice(&chunk);
                if tail.windows(5).any(|w| w == b"data:") {
                    notify.notify_one();
                    tail.clear();
                } else {
                    tail.drain(..tail.len().saturating_sub(4));
                }
            }
        }
        notify.notify_one();
        tokio::time::sleep(RECONNECT).await;
        response = api.events(&paths).await.ok();
    }
}
