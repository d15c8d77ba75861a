//! TLS for the master's listeners, from PEM files.

use std::path::Path;
use std::sync::Arc;

/// A TLS acceptor from a certificate chain and a private key in PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    let certs = rustls_pemfile::certs(&mut std::fs::read(cert).with_context(|| cert.display().to_string())?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    let key =
        rustls_pemfile::private_key(&mut std::fs::read(key).with_context(|| key.display().to_string())?.as_slice())
            .with_context(|| format!("{}: not a PEM private key", key.display()))?
            .with_context(|| format!("{}: no private key in it", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
