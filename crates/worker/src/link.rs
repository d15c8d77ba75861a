//! The worker's side of one connection to the master: sends requests and matches their responses.
//!
//! Every request gets the next sequence number of this connection; a response is matched to its request by
//! that number. A `MasterLink` is cheap to clone and is handed to each running command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_protocol::{encode_request, Response, Value, WorkerRequest};
use tokio::sync::{mpsc, oneshot};

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
}

impl MasterLink {
    /// A link whose encoded frames go to `frames` (the connection's writer).
    pub(crate) fn new(frames: mpsc::Sender<Vec<u8>>) -> MasterLink {
        MasterLink { frames, pending: Arc::default(), next_seq: Arc::new(AtomicI64::new(0)) }
    }

    /// Sends a request and waits for the master's answer.
    pub async fn request(&self, request: WorkerRequest) -> Result<Value, LinkError> {
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(seq, tx);
        if self.frames.send(encode_request(seq, &request)).await.is_err() {
            self.lock().remove(&seq);
            return Err(LinkError::Closed);
        }
        let response = rx.await.map_err(|_| LinkError::Closed)?;
        response.into_result().map_err(LinkError::Remote)
    }

    /// Sends a request without waiting for its answer (Buildbot's workers do so for `update`); an error
    /// answer is logged when it arrives.
    pub async fn send(&self, request: WorkerRequest) -> Result<(), LinkError> {
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

    /// Fails every request still waiting: the connection is gone.
    pub(crate) fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<Response>>> {
        // A panic while holding this lock cannot leave the map inconsistent, so a poisoned lock is usable.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
