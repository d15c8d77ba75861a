//! Login sessions: a random id in an `HttpOnly; SameSite=Lax` cookie (`Secure` when the master's URL is
//! https), stored in the store as its SHA-256 only, with the user, their roles, a CSRF token and an expiry.
//! Logging out revokes the stored session, so a stolen cookie dies with it.

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "kiln_session";

/// A random secret of 256 bits, URL-safe base64: session ids, CSRF tokens and API tokens.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a secret, in hex: what the store keeps of session ids and tokens.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A `Set-Cookie` value for a cookie of `name` that lives `max_age` on `path`.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={}{secure}", max_age.as_secs())
}

/// A `Set-Cookie` value that removes cookie `name` on `path`.
pub fn clear_cookie(name: &str, path: &str, secure: bool) -> String {
    set_cookie(name, "", path, Duration::ZERO, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash(&a).len(), 64);
        assert!(!hash(&a).contains(&a));
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same("a", "ab"));
    }

    #[test]
    fn cookies_are_http_only_and_lax() {
        let c = set_cookie(COOKIE, "v", "/", Duration::from_secs(60), true);
        assert_eq!(c, "kiln_session=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure");
        assert!(!clear_cookie(COOKIE, "/", false).contains("Secure"));
    }
}
