//! The web port's own accept loop, so that no client can hold it: `accept` errors back off, connections are
//! capped in all and per address (a new one beyond a cap replaces the least recently active one), and hyper
//! closes a connection that has not sent a whole request head within `header_timeout` of its opening or of
//! its last answer (a slowloris, a half-sent request, an idle keep-alive connection).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connections::{Acceptor, Admitted, Gate, Limits, RepeatedLog};

/// On shutdown, how long open connections get to finish the answer they are sending.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop`, then lets open connections end their current answer (bounded).
pub(super) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    header_timeout: Duration,
    tls: Option<crate::tls::Reloadable>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut acceptor = Acceptor::new(listener, "web");
    let gate = Gate::new(limits);
    let connections = TaskTracker::new();
    let mut refusals = RepeatedLog::per_second();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = acceptor.accept() => accepted,
        };
        let Some(admitted) = gate.admit(peer.ip()) else {
            if let Some(repeats) = refusals.occurred() {
                tracing::warn!(%peer, repeats, "web port full: connection closed");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (app, stop) = (app.clone(), stop.clone());
        // A reconfig may have reloaded the certificate: each connection takes the one in force.
        match tls.as_ref().map(crate::tls::Reloadable::current) {
            None => connections.spawn(serve_connection(tcp, peer, admitted, app, header_timeout, stop)),
            Some(tls) => connections.spawn(async move {
                // The TLS handshake counts against the same deadline as a request head.
                let accepted = tokio::select! {
                    accepted = tokio::time::timeout(header_timeout, tls.accept(tcp)) => accepted,
                    () = admitted.replaced() => return,
                    () = stop.cancelled() => return,
                };
                match accepted {
                    Ok(Ok(stream)) => serve_connection(stream, peer, admitted, app, header_timeout, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "web TLS handshake timed out"),
                }
            }),
        };
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), connections.wait()).await.is_err() {
        tracing::warn!(open = connections.len(), "web connections still open at shutdown");
    }
    Ok(())
}

async fn serve_connection<S>(
    tcp: S,
    peer: std::net::SocketAddr,
    admitted: Admitted,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Every request knows its client's address (for logins, the audit, HTTP Basic from loopback only).
    let app = tower::ServiceBuilder::new()
        .map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(super::auth::Peer(peer));
            request
        })
        .service(app);
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    // With upgrades: `/ws` takes the connection over (it still counts against the caps while it is open).
    let connection = http.serve_connection(TokioIo::new(admitted.track(tcp)), service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "web connection ended");
            }
        }
        () = admitted.replaced() => tracing::debug!("web connection replaced by a newer one"),
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}
