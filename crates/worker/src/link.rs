//! The worker's side of one connection to the master: sends requests and matches their responses.
//!
//! Every request gets the next sequence number of this connection; a response is matched to its request by
//! that number. A `MasterLink` is cheap to clone and is handed to each running command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_protocol::{encode_request, Response, Value, WorkerRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Why a request to the master did not get a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("the connection to the master is closed")]
    Closed,
    #[error("the master answered with an error: {0}")]
    Remote(String),
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Response>>>>;

/// Sends requests to the master over one connection.
#[derive(Clone)]
pub struct MasterLink {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_seq: Arc<AtomicI64>,
    /// Cancelled when the connection is gone: every request, waiting or new, fails at once.
    closed: CancellationToken,
}

impl MasterLink {
    /// A link whose encoded frames go to `frames` (the connection's writer).
    pub(crate) fn new(frames: mpsc::Sender<Vec<u8>>) -> MasterLink {
        MasterLink {
            frames,
            pending: Arc::default(),
            next_seq: Arc::new(AtomicI64::new(0)),
            closed: CancellationToken::new(),
        }
    }

    /// Sends a request and waits for the master's answer.
    pub async fn request(&self, request: WorkerRequest) -> Result<Value, LinkError> {
        if self.closed.is_cancelled() {
            return Err(LinkError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(seq, tx);
        let answered = async {
            self.frames.send(encode_request(seq, &request)).await.map_err(|_| LinkError::Closed)?;
            rx.await.map_err(|_| LinkError::Closed)
        };
        let response = tokio::select! {
            response = answered => response,
            () = self.closed.cancelled() => Err(LinkError::Closed),
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                self.lock().remove(&seq);
                return Err(e);
            }
        };
        response.into_result().map_err(LinkError::Remote)
    }

    /// Sends a request without waiting for its answer (Buildbot's workers do so for `update`); an error
    /// answer is logged when it arrives.
    pub async fn send(&self, request: WorkerRequest) -> Result<(), LinkError> {
        if self.closed.is_cancelled() {
            return Err(LinkError::Closed);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.frames.send(encode_request(seq, &request)).await.map_err(|_| LinkError::Closed)
    }

    /// Hands a response from the master to the request waiting for it.
    pub(crate) fn resolve(&self, response: Response) {
        match self.lock().remove(&response.seq_number) {
            Some(waiter) => {
                let _ = waiter.send(response);
            }
            None if response.is_exception => {
                tracing::warn!(seq = response.seq_number, error = %response.result, "the master refused a request")
            }
            None => {}
        }
    }

    /// The connection is gone: fails every request still waiting and every later one.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<Response>>> {
        // A panic while holding this lock cannot leave the map inconsistent, so a poisoned lock is usable.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
