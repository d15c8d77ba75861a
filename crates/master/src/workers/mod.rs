//! Workers, seen from the master: who may connect, who is connected, and each connection's traffic.
//!
//! `listener` accepts workers on the worker port (WebSocket, Basic auth, optional TLS) and settles duplicate
//! connections; `attempts` slows down guessing a password (failed logins by address); `connection` is one
//! worker's connection; `transfer` is the master's end of file transfers.

mod attempts;
mod connection;
mod listener;
mod transfer;

pub use attempts::{FAILURE_BURST, FAILURE_REFILL};
pub use connection::{CommandEvent, ConnectionError, Liveness, RemoteCommand, WorkerConnection};
pub use listener::{serve, Credential, WorkerAccount, WorkerEvent, WorkerPort, Workers};
pub use transfer::CommandIo;
