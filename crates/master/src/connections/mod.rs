//! What bounds the connections of the master's listeners (the worker port and the web port), so that no client
//! can wear the master down: `accept` errors back off instead of spinning (`accept`), the file-descriptor limit
//! is raised and the listeners' caps fit under it (`fd_limit`), and each listener admits connections through a
//! [`Gate`] with a cap in all and per IP address.
//!
//! A connection beyond a cap is not simply refused: it replaces the least recently active connection that its
//! listener says may be replaced (on the web port any; on the worker port one still in its handshake), so that
//! a flood of idle connections cannot lock out a client that has something to say. Only when none may be
//! replaced is the new connection closed at once.

mod accept;
mod fd_limit;
mod gate;

pub use accept::{Acceptor, Failures};
pub use accept::{RepeatedLog, SharedLog};
pub use fd_limit::{fit, raise_fd_limit, Fitted, RESERVED_FDS};
pub use gate::{Admitted, Gate, Tracked};

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most.
    pub max: usize,
    /// Open connections at most from one IP address.
    pub per_address: usize,
}
