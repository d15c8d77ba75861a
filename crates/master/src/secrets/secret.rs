//! A value that must not be shown: passwords, tokens, provider answers.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A secret value. `Debug` and `Display` print `<redacted>`, `==` compares in constant time ([`equal`]), and the
/// memory is zeroed when it is dropped. The value itself is read with [`Secret::expose`], only where it is sent
/// (a worker's command, a provider's answer checked against a password).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Read from the config as a string.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        equal(self.expose(), other.expose())
    }
}

impl Eq for Secret {}

/// Whether `given` equals `expected`, in time that depends on neither value nor on where they differ, nor on
/// their lengths: both are hashed (SHA-256) and the digests compared in constant time. Every password and token
/// check of the master goes through here.
pub fn equal(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

/// Whether `given` is the password an argon2 `hash` (a PHC string: `$argon2id$v=19$…`) was made from. Slow on
/// purpose (argon2's cost): call it off the runtime's threads (`spawn_blocking`).
pub fn verify_hash(hash: &str, given: &str) -> bool {
    use argon2::PasswordVerifier;
    match argon2::PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default().verify_password(given.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("hunter2-token");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(Secret(<redacted>))");
        assert_eq!(secret.expose(), "hunter2-token");
    }

    #[test]
    fn checks_argon2_hashes() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").expect("salt");
        let hash = argon2::Argon2::default().hash_password(b"worker-pw", &salt).expect("hash").to_string();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_hash(&hash, "worker-pw"));
        assert!(!verify_hash(&hash, "worker-pX"));
        assert!(!verify_hash("not a hash", "worker-pw"));
    }

    #[test]
    fn compares_by_value() {
        assert!(equal("abc", "abc"));
        assert!(!equal("abc", "abd"));
        assert!(!equal("abc", "abcd"));
        assert!(!equal("", "a"));
        assert_eq!(Secret::new("x1"), Secret::new("x1"));
        assert_ne!(Secret::new("x1"), Secret::new("x2"));
    }
}
