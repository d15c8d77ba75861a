//! Password hashes: argon2 (PHC strings, what `kiln hash-password` prints and `[[user]]` takes) and, in htpasswd
//! files, bcrypt (`$2y$`, `$2b$`, `$2a$`: Apache's `htpasswd -B`). Checking is slow on purpose; callers run it on
//! a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// The argon2id hash of `password` with a random salt and argon2's default cost, as a PHC string.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// A hash with argon2's smallest cost, fast to check: for tests only.
#[cfg(test)]
pub(crate) fn cheap_hash(password: &str) -> String {
    let params = argon2::Params::new(8, 1, 1, None).expect("argon2's minimum parameters");
    let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"kiln-test-salt").expect("salt");
    argon2.hash_password(password.as_bytes(), &salt).expect("hash").to_string()
}

/// Whether `password` matches `hash` (argon2 or bcrypt); an unreadable hash matches nothing.
pub fn verify(hash: &str, password: &str) -> bool {
    if hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash that matches no password, checked for unknown users so that they take as long as known ones.
pub fn verify_nobody(password: &str) {
    static NOBODY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(hash) = NOBODY.get_or_init(|| hash("the password of nobody").ok()) {
        let _ = verify(hash, password);
    }
}

/// The hash of `name` in an htpasswd file's text (`name:hash` lines; `#` comments and blank lines skipped).
pub fn htpasswd_lookup<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .find(|(user, _)| *user == name)
        .map(|(_, hash)| hash.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_hashes_verify() {
        assert!(verify(&cheap_hash("x"), "x"));
        assert!(!verify(&cheap_hash("x"), "y"));
    }

    #[test]
    fn argon2_hashes_verify() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsf"));
        assert_ne!(hash("correct horse").expect("hash"), h, "salted");
    }

    #[test]
    fn bcrypt_lines_verify_and_garbage_matches_nothing() {
        let b = bcrypt::hash("pw", 4).expect("bcrypt").replacen("$2b$", "$2y$", 1);
        assert!(verify(&b, "pw"));
        assert!(!verify(&b, "pW"));
        assert!(!verify("plain", "plain"), "a plain text password is not a hash");
        assert!(!verify("", ""));
    }

    #[test]
    fn htpasswd_lines_are_found_by_name() {
        let text = "# users\nann:$2y$04$abc\n\nbob:$argon2id$x\n";
        assert_eq!(htpasswd_lookup(text, "bob"), Some("$argon2id$x"));
        assert_eq!(htpasswd_lookup(text, "an"), None);
        assert_eq!(htpasswd_lookup(text, "# users"), None);
    }
}
