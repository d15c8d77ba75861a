//! Reaching the master: the WebSocket handshake with Basic auth, TLS when asked, and the backoff between
//! attempts.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header::AUTHORIZATION, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::config::WorkerConfig;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one connection attempt (TCP, TLS and the WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest message accepted from the master.
const MAX_MESSAGE: usize = 64 << 20;

/// Why an attempt to connect failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the master refused worker '{name}': wrong name or password, or a client certificate not for this name (HTTP {status})")]
    Refused { name: String, status: u16 },
    #[error("connecting to {url}: {message}")]
    Failed { url: String, message: String },
    #[error("connecting to {url}: no answer within {CONNECT_TIMEOUT:?}")]
    TimedOut { url: String },
    #[error("TLS set-up: {0}")]
    Tls(String),
}

/// Builds the TLS client set-up once: the system's web roots, or the configured CA file.
pub(crate) fn tls_connector(config: &WorkerConfig) -> Result<Option<Connector>, ConnectError> {
    if !config.tls {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match config.ca_file() {
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| ConnectError::Tls(format!("{}: {e}", path.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ConnectError::Tls(format!("{}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| ConnectError::Tls(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(ConnectError::Tls(format!("{}: no PEM certificate in it", path.display())));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match config.client_certificate() {
        None => tls.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key) = client_certificate(&cert, &key)?;
            tls.with_client_auth_cert(chain, key).map_err(|e| ConnectError::Tls(format!("{}: {e}", cert.display())))?
        }
    };
    Ok(Some(Connector::Rustls(Arc::new(tls))))
}

/// The worker's client certificate chain and key from their PEM files.
fn client_certificate(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>), ConnectError>
{
    let read =
        |path: &std::path::Path| std::fs::read(path).map_err(|e| ConnectError::Tls(format!("{}: {e}", path.display())));
    let chain = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConnectError::Tls(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(ConnectError::Tls(format!("{}: no PEM certificate in it", cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| ConnectError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ConnectError::Tls(format!("{}: no private key in it", key.display())))?;
    Ok((chain, key))
}

/// Opens the WebSocket to the master, authenticated with the worker's name and password.
pub(crate) async fn connect(config: &WorkerConfig, tls: Option<Connector>) -> Result<Socket, ConnectError> {
    let url = config.url();
    let failed = |message: String| ConnectError::Failed { url: url.clone(), message };
    let mut request = url.as_str().into_client_request().map_err(|e| failed(e.to_string()))?;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", config.name, config.password));
    let header = HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|e| failed(e.to_string()))?;
    request.headers_mut().insert(AUTHORIZATION, header);
    let mut ws_config = WebSocketConfig::default();
    ws_config.max_message_size = Some(MAX_MESSAGE);
    let attempt = tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_config), true, tls);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Err(_) => Err(ConnectError::TimedOut { url }),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response)))
            if matches!(response.status().as_u16(), 401 | 403) =>
        {
            Err(ConnectError::Refused { name: config.name.clone(), status: response.status().as_u16() })
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(failed(format!(
            "an HTTP server answered {} instead of accepting a WebSocket: is {} the master's web port? A worker \
             connects to the master's worker port (worker_listener.address in its master.toml, 9989 by default)",
            response.status(),
            config.master
        ))),
        Ok(Err(e)) => Err(failed(e.to_string())),
    }
}

/// Capped exponential backoff with jitter between connection attempts.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);

    pub(crate) fn new(max: Duration) -> Backoff {
        Backoff { next: Self::FIRST.min(max), max }
    }

    /// The wait before the next attempt: between half and all of the current step, which then doubles up
    /// to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(rand::random_range(0.5..=1.0))
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        let steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0];
        for (delay, step) in delays.iter().zip(steps) {
            let step = Duration::from_secs_f64(step);
            assert!(*delay >= step / 2 && *delay <= step, "{delay:?} not within [{:?}, {step:?}]", step / 2);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(500));
    }
}
