//! TLS for the master's listeners, from PEM files: the server's certificate and key, optionally the CA whose
//! client certificates a listener requires (mutual TLS), and an acceptor a reconfig can replace.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::pki_types::CertificateDer;

/// A listener's TLS set-up as read from its files.
#[derive(Clone)]
pub struct Loaded {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The certificate chain served (to tell whether a reload changed it).
    pub chain: Vec<CertificateDer<'static>>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| path.display().to_string())
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut read(path)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no PEM certificate in it", path.display());
    Ok(certs)
}

/// Reads a server certificate chain and key, and with `client_ca` the CA certificates a client's certificate
/// must be signed by (a client without one is refused in the handshake).
pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Loaded> {
    let chain = certificates(cert)?;
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .with_context(|| format!("{}: not a PEM private key", key.display()))?
        .with_context(|| format!("{}: no private key in it", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(path)? {
                roots.add(ca).with_context(|| format!("{}: not a CA certificate", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{}: cannot check client certificates with it", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain.clone(), key).context("the TLS certificate and key do not match")?;
    Ok(Loaded { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), chain })
}

/// An acceptor that a reconfig replaces: every new connection takes the one in force, open ones keep theirs.
#[derive(Clone)]
pub struct Reloadable(Arc<RwLock<Loaded>>);

impl Reloadable {
    pub fn new(loaded: Loaded) -> Reloadable {
        Reloadable(Arc::new(RwLock::new(loaded)))
    }

    /// The acceptor for the next connection.
    pub fn current(&self) -> tokio_rustls::TlsAcceptor {
        self.0.read().unwrap_or_else(|p| p.into_inner()).acceptor.clone()
    }

    /// Serves `loaded` from the next connection on; whether its certificate chain differs from the one before.
    pub fn replace(&self, loaded: Loaded) -> bool {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        let changed = slot.chain != loaded.chain;
        *slot = loaded;
        changed
    }
}

/// The names a client certificate (DER) is for: its subject's common names, then its DNS and other text
/// subject alternative names. Empty for a certificate that cannot be read.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_string).collect();
    if let Ok(Some(alternatives)) = cert.subject_alternative_name() {
        for name in &alternatives.value.general_names {
            if let GeneralName::DNSName(text) | GeneralName::RFC822Name(text) = name {
                names.push((*text).to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_common_name_and_alternative_names() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["w1.example".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "w1");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(certificate_names(cert.der()), ["w1", "w1.example"]);
        assert!(certificate_names(b"not a certificate").is_empty());
    }
}
