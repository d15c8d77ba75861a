//! `[worker_listener] tls_client_ca` and `tls_client_name`: the client certificates (mutual TLS) a worker must
//! present on a TLS worker port.

use toml::Spanned;

use super::error::Problems;
use super::ClientCerts;

const CONTEXT: &str = "[worker_listener]";

/// Reads the client-certificate keys; `has_tls`: whether the port serves TLS (`tls_cert`). `None` on an error.
pub(super) fn check(
    ca: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    has_tls: bool,
    problems: &mut Problems<'_>,
) -> Option<Option<ClientCerts>> {
    let name_must_match = match &name {
        None => true,
        Some(value) => match value.get_ref().as_str() {
            "worker" => true,
            "any" => false,
            other => {
                let message =
                    format!("'{other}' is not one of \"worker\" (the certificate is for the worker's name) or \"any\"");
                problems.add(value.span(), Some(CONTEXT), "tls_client_name", message);
                return None;
            }
        },
    };
    let Some(ca) = ca else {
        if let Some(name) = name {
            problems.add(name.span(), Some(CONTEXT), "tls_client_ca", "tls_client_name needs tls_client_ca");
            return None;
        }
        return Some(None);
    };
    if !has_tls {
        let message = "client certificates need TLS on the worker port: set tls_cert and tls_key too";
        problems.add(ca.span(), Some(CONTEXT), "tls_client_ca", message);
        return None;
    }
    if ca.get_ref().trim().is_empty() {
        problems.add(ca.span(), Some(CONTEXT), "tls_client_ca", "must name a PEM file of CA certificates");
        return None;
    }
    Some(Some(ClientCerts { ca: ca.into_inner().into(), name_must_match }))
}

#[cfg(test)]
mod tests {
    use crate::config::MasterConfig;

    fn worker_listener(keys: &str) -> Result<MasterConfig, String> {
        MasterConfig::from_str(&format!("[worker_listener]\n{keys}"), "master.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_client_ca_needs_tls_and_names_are_checked_by_default() {
        let tls = "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        let config = worker_listener(&format!("{tls}tls_client_ca = \"ca.pem\"\n")).expect("valid");
        let client = config.worker_listener.client_certs.expect("client certificates");
        assert!(client.name_must_match);
        let any = worker_listener(&format!("{tls}tls_client_ca = \"ca.pem\"\ntls_client_name = \"any\"\n"));
        assert!(!any.expect("valid").worker_listener.client_certs.expect("client").name_must_match);
        assert!(worker_listener(tls).expect("valid").worker_listener.client_certs.is_none());

        let err = worker_listener("tls_client_ca = \"ca.pem\"\n").expect_err("no TLS");
        assert!(err.contains("master.toml:2") && err.contains("tls_client_ca") && err.contains("tls_cert"), "{err}");
        let err = worker_listener(&format!("{tls}tls_client_ca = \"ca.pem\"\ntls_client_name = \"cn\"\n"))
            .expect_err("unknown value");
        assert!(err.contains("master.toml:5") && err.contains("tls_client_name"), "{err}");
        let err = worker_listener(&format!("{tls}tls_client_name = \"any\"\n")).expect_err("no CA");
        assert!(err.contains("tls_client_ca"), "{err}");
    }
}
