//! The worker port: workers connect here (WebSocket, `Authorization: Basic` with their name and password,
//! TLS when configured), and the registry of who may connect and who is connected.
//!
//! The port is bounded (see [`crate::connections`]): `accept` errors back off, a connection has
//! `handshake_timeout` to authenticate, and connections are capped in all and per address; a connection beyond
//! a cap replaces the oldest one still in its handshake (an attached worker is never replaced).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::attempts::{Attempts, Verified};
use super::connection::{Liveness, WorkerConnection};
use crate::connections::{Acceptor, Admitted, Gate, Limits, RepeatedLog, SharedLog};
use crate::events::{Event, EventBus};
use crate::secrets::Secret;

/// How long the old connection of a worker that connects twice has to answer before the new one replaces it
/// (Buildbot's `PING_TIMEOUT`).
const DUPLICATE_PING: Duration = Duration::from_secs(10);
/// The WebSocket read buffer of a connection. tungstenite's default (128 KiB) is zero-filled on the first read,
/// so it is resident for every connected worker: 128 KiB each, 125 MiB for a thousand idle workers. Frames
/// larger than this still arrive whole (the buffer grows for them); small reads only cost more syscalls when a
/// worker streams a big log, and those are bounded by the frames' own size.
const READ_BUFFER: usize = 16 * 1024;

/// A worker the config allows to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerAccount {
    pub name: String,
    /// What the worker's password is checked against.
    pub password: Credential,
    /// Builds at once; `None` for no limit.
    pub max_builds: Option<usize>,
    /// Directories (relative to the worker's base) of the builders this worker serves.
    pub builder_dirs: Vec<String>,
}

/// What a worker's password is checked against. `Debug` shows neither.
#[derive(Clone, PartialEq)]
pub enum Credential {
    /// The password itself (from `password`, its `%(secret:…)s` forms rendered), compared in constant time.
    Password(Secret),
    /// An argon2 hash (`password_hash`).
    Hash(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(<redacted>)"),
            Credential::Hash(_) => f.write_str("Hash(<argon2>)"),
        }
    }
}

impl From<&str> for Credential {
    fn from(password: &str) -> Credential {
        Credential::Password(Secret::new(password))
    }
}

/// A worker came or went.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    Connected(String),
    Disconnected(String),
}

/// Who may connect and who is connected. Cheap to clone.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<RwLock<Inner>>,
    events: broadcast::Sender<WorkerEvent>,
    liveness: Liveness,
    /// Where attaches and detaches are published (for the workers whose store ids `Inner::ids` knows).
    bus: Option<EventBus>,
    /// The warnings each refused or failed connection writes, at most once a second (a flood writes few).
    refusals: SharedLog,
    /// Failed logins by address: an address that fails too often waits before its next attempt is checked.
    attempts: Attempts,
    /// Passwords checked against a hash already (their digests), so a reconnecting worker costs no argon2 run.
    verified: Verified,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<String, WorkerAccount>,
    connected: HashMap<String, Arc<WorkerConnection>>,
    /// The address each connected worker connected from.
    addresses: HashMap<String, SocketAddr>,
    /// The workers' store ids by name, for the events published.
    ids: HashMap<String, i64>,
    /// When each worker attached (Unix seconds), and when each last detached, since this master started.
    attached_at: HashMap<String, i64>,
    detached_at: HashMap<String, i64>,
}

impl Workers {
    pub fn new(accounts: Vec<WorkerAccount>, liveness: Liveness) -> Workers {
        let workers = Workers {
            inner: Arc::default(),
            events: broadcast::channel(256).0,
            liveness,
            bus: None,
            refusals: SharedLog::per_second(),
            attempts: Attempts::default(),
            verified: Verified::default(),
        };
        workers.set_accounts(accounts);
        workers
    }

    /// Publishes on `bus` each worker of `ids` (name → store id) that attaches or detaches.
    pub fn publishing_on(mut self, bus: EventBus, ids: HashMap<String, i64>) -> Workers {
        self.bus = Some(bus);
        self.write().ids = ids;
        self
    }

    fn publish(&self, name: &str, attached: bool) {
        let now = unix_now();
        {
            let mut inner = self.write();
            match attached {
                true => inner.attached_at.insert(name.to_string(), now),
                false => inner.detached_at.insert(name.to_string(), now),
            };
        }
        let Some(bus) = &self.bus else { return };
        let Some(workerid) = self.read().ids.get(name).copied() else { return };
        let name = name.to_string();
        bus.publish(match attached {
            true => Event::WorkerAttached { workerid, name },
            false => Event::WorkerDetached { workerid, name },
        });
    }

    /// When worker `name` last attached, in Unix seconds (since this master started).
    pub fn attached_at(&self, name: &str) -> Option<i64> {
        self.read().attached_at.get(name).copied()
    }

    /// When worker `name` last detached, in Unix seconds (since this master started).
    pub fn detached_at(&self, name: &str) -> Option<i64> {
        self.read().detached_at.get(name).copied()
    }

    /// Replaces the accounts; connected workers stay connected (see [`Workers::reconfigure`]).
    pub fn set_accounts(&self, accounts: Vec<WorkerAccount>) {
        self.write().accounts = accounts.into_iter().map(|a| (a.name.clone(), a)).collect();
    }

    /// A reconfig: replaces the accounts and the store ids, and closes the connections of workers no longer
    /// configured (as Buildbot does); the others stay connected.
    pub fn reconfigure(&self, accounts: Vec<WorkerAccount>, ids: HashMap<String, i64>) {
        let removed: Vec<Arc<WorkerConnection>> = {
            let mut inner = self.write();
            inner.accounts = accounts.into_iter().map(|a| (a.name.clone(), a)).collect();
            inner.ids.extend(ids);
            let Inner { accounts, connected, .. } = &*inner;
            connected.iter().filter(|(name, _)| !accounts.contains_key(*name)).map(|(_, c)| c.clone()).collect()
        };
        for connection in removed {
            connection.close();
        }
    }

    pub fn account(&self, name: &str) -> Option<WorkerAccount> {
        self.read().accounts.get(name).cloned()
    }

    pub fn connected(&self, name: &str) -> Option<Arc<WorkerConnection>> {
        self.read().connected.get(name).cloned()
    }

    pub fn connected_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().connected.keys().cloned().collect();
        names.sort();
        names
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.events.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `password` is worker `name`'s, checked in constant time (a password) or with argon2 (a hash; off
    /// the runtime's threads when it can be). An unknown name costs the same comparison as a known one.
    fn password_matches(&self, name: &str, password: &str) -> bool {
        let credential = self.read().accounts.get(name).map(|account| account.password.clone());
        match credential {
            Some(Credential::Password(expected)) => crate::secrets::equal(password, expected.expose()),
            Some(Credential::Hash(hash)) => {
                if self.verified.contains(name, &hash, password) {
                    return true;
                }
                let matches = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                        tokio::task::block_in_place(|| crate::secrets::verify_hash(&hash, password))
                    }
                    _ => crate::secrets::verify_hash(&hash, password),
                };
                if matches {
                    self.verified.insert(name, &hash, password);
                }
                matches
            }
            None => {
                let _ = crate::secrets::equal(password, "");
                false
            }
        }
    }

    /// The address worker `name` is connected from.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.read().addresses.get(name).copied()
    }

    /// Attaches an authenticated connection, settling a duplicate as Buildbot does: if the worker's current
    /// connection still answers, the new one is refused; otherwise the old one is dropped.
    async fn adopt<S>(
        &self,
        name: String,
        socket: tokio_tungstenite::WebSocketStream<S>,
        admitted: Admitted,
        peer: SocketAddr,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(old) = self.connected(&name) {
            let holder = self.address(&name).map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
            let message = format!("master got a duplicate connection from {peer}");
            let answer = old.request_within(kiln_protocol::MasterRequest::Print { message }, DUPLICATE_PING).await;
            if answer.is_ok() {
                tracing::warn!(
                    worker = %name,
                    address = %peer,
                    held_by = %holder,
                    "refusing a second connection for this worker name: the connection holding it still answers \
                     (if that is not your worker, change its password)"
                );
                drop(socket);
                return;
            }
            tracing::warn!(
                worker = %name,
                address = %peer,
                held_by = %holder,
                "the connection holding this worker name did not answer within {} s: the new one replaces it",
                DUPLICATE_PING.as_secs()
            );
            old.close();
        }
        let dirs = self.account(&name).map(|a| a.builder_dirs).unwrap_or_default();
        let conn = match WorkerConnection::attach(name.clone(), socket, &dirs, self.liveness).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "worker failed to attach");
                return;
            }
        };
        let previous = {
            let mut inner = self.write();
            inner.addresses.insert(name.clone(), peer);
            inner.connected.insert(name.clone(), conn.clone())
        };
        if let Some(previous) = previous {
            previous.close();
        }
        tracing::info!(
            worker = %name,
            address = %peer,
            basedir = %conn.info.basedir,
            version = %conn.info.version,
            "worker attached"
        );
        self.publish(&name, true);
        let _ = self.events.send(WorkerEvent::Connected(name.clone()));
        let workers = self.clone();
        tokio::spawn(async move {
            conn.lost_signal().await;
            drop(admitted);
            let removed = {
                let mut inner = workers.write();
                match inner.connected.get(&name) {
                    Some(current) if Arc::ptr_eq(current, &conn) => {
                        inner.addresses.remove(&name);
                        inner.connected.remove(&name).is_some()
                    }
                    _ => false,
                }
            };
            if removed {
                tracing::warn!(worker = %name, address = %peer, "worker disconnected");
                workers.publish(&name, false);
                let _ = workers.events.send(WorkerEvent::Disconnected(name));
            }
        });
    }
}

/// How the worker port serves: TLS or not, its caps, its handshake timeout.
#[derive(Clone)]
pub struct WorkerPort {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// With client certificates required (`tls` checks them): whether a worker's certificate must be for its
    /// name.
    pub certificate_names: bool,
    pub limits: Limits,
    pub handshake_timeout: Duration,
}

/// Accepts workers on `listener` until `stop`.
pub async fn serve(listener: TcpListener, port: WorkerPort, workers: Workers, stop: CancellationToken) {
    let mut acceptor = Acceptor::new(listener, "worker");
    let gate = Gate::new(port.limits);
    let mut refusals = RepeatedLog::per_second();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = acceptor.accept() => accepted,
        };
        let Some(admitted) = gate.admit(peer.ip()) else {
            if let Some(repeats) = refusals.occurred() {
                tracing::warn!(%peer, open = gate.open(), repeats, "worker port full of attached workers: connection closed");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let workers = workers.clone();
        let tls = port.tls.clone();
        let check_names = port.certificate_names;
        let deadline = tokio::time::Instant::now() + port.handshake_timeout;
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return welcome(tcp, &workers, admitted, deadline, peer, None).await;
            };
            let accepted = tokio::select! {
                accepted = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => accepted,
                () = admitted.replaced() => return,
            };
            match accepted {
                Ok(Ok(stream)) => {
                    // The handshake checked the certificate's signature; its names are checked against the
                    // worker's name the Basic credentials give.
                    let names = check_names.then(|| {
                        let certificates = stream.get_ref().1.peer_certificates().unwrap_or_default();
                        certificates.first().map(|c| crate::tls::certificate_names(c)).unwrap_or_default()
                    });
                    welcome(stream, &workers, admitted, deadline, peer, names).await
                }
                Ok(Err(e)) => {
                    if let Some(repeats) = workers.refusals.occurred() {
                        tracing::warn!(%peer, error = %e, repeats, "TLS handshake with a worker failed");
                    }
                }
                Err(_) => tracing::debug!(%peer, "worker TLS handshake timed out"),
            }
        });
    }
}

/// The WebSocket handshake of an admitted connection, by `deadline` and unless a newer connection replaces it;
/// then the attach, from which on the connection is never replaced.
/// `names`: the names of the worker's client certificate, when they must include the worker's.
async fn welcome<S>(
    stream: S,
    workers: &Workers,
    admitted: Admitted,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
    names: Option<Vec<String>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authenticated = tokio::select! {
        done = tokio::time::timeout_at(deadline, handshake(stream, workers, peer, names)) => match done {
            Ok(authenticated) => authenticated,
            Err(_) => {
                tracing::debug!(%peer, "worker handshake timed out");
                None
            }
        },
        () = admitted.replaced() => {
            tracing::debug!(%peer, "a connection in its handshake was replaced by a newer one");
            None
        }
    };
    let Some((name, socket)) = authenticated else { return };
    if !admitted.keep() {
        return;
    }
    workers.adopt(name, socket, admitted, peer).await;
}

/// The WebSocket handshake with Basic auth (401 for an unknown worker or a wrong password, 400 for a header
/// that cannot be read, 429 when `peer`'s address failed too often lately: its password is then not checked,
/// 403 when the client certificate's `names` do not include the worker's), then the attach.
// The handshake callback's error type is tungstenite's (an HTTP response), large by nature.
#[allow(clippy::result_large_err)]
async fn handshake<S>(
    stream: S,
    workers: &Workers,
    peer: SocketAddr,
    names: Option<Vec<String>>,
) -> Option<(String, tokio_tungstenite::WebSocketStream<S>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut authenticated: Option<String> = None;
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode, text: &str| {
            let mut refusal = ErrorResponse::new(Some(text.to_string()));
            *refusal.status_mut() = status;
            refusal
        };
        let Some(header) = request.headers().get("authorization") else {
            return Err(refuse(StatusCode::UNAUTHORIZED, "authorization required"));
        };
        let Some((name, password)) = basic_credentials(header.as_bytes()) else {
            return Err(refuse(StatusCode::BAD_REQUEST, "unreadable authorization header"));
        };
        if !workers.attempts.may_try(peer.ip()) {
            if let Some(repeats) = workers.refusals.occurred() {
                tracing::warn!(worker = %name, %peer, repeats, "worker refused: too many failed logins from this address");
            }
            return Err(refuse(StatusCode::TOO_MANY_REQUESTS, "too many failed logins from this address: wait"));
        }
        if let Some(names) = names.as_ref().filter(|names| !names.contains(&name)) {
            workers.attempts.failed(peer.ip());
            if let Some(repeats) = workers.refusals.occurred() {
                let names = names.join(", ");
                tracing::warn!(worker = %name, %peer, certificate = %names, repeats, "worker refused: its client certificate is for another name");
            }
            return Err(refuse(StatusCode::FORBIDDEN, "the client certificate is not for this worker's name"));
        }
        if !workers.password_matches(&name, &password) {
            workers.attempts.failed(peer.ip());
            if let Some(repeats) = workers.refusals.occurred() {
                tracing::warn!(worker = %name, %peer, repeats, "worker refused: unknown name or wrong password");
            }
            return Err(refuse(StatusCode::UNAUTHORIZED, "unknown worker or wrong password"));
        }
        authenticated = Some(name);
        Ok(response)
    };
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    match tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await {
        Ok(socket) => authenticated.map(|name| (name, socket)),
        Err(e) => {
            tracing::debug!(error = %e, "worker handshake failed");
            None
        }
    }
}

/// `(name, password)` from `Basic base64(name:password)`.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?;
    let encoded = text.strip_prefix("Basic ").or_else(|| text.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// Unix seconds now.
fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_credentials() {
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("w1:pa:ss"));
        assert_eq!(basic_credentials(header.as_bytes()), Some(("w1".into(), "pa:ss".into())));
        assert_eq!(basic_credentials(b"Bearer x"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
    }
}
