//! The parsers of what a client sends to say who it is: the `Authorization` header (Bearer, Basic) and the
//! `Cookie` header. They take any bytes and never panic (`fuzz/fuzz_targets/auth_headers.rs`).

use base64::Engine;

/// Credentials from an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer <token>`.
    Bearer(String),
    /// `Basic base64(name:password)`; the password may be an API token.
    Basic { name: String, password: String },
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the Authorization header is not text")]
    NotText,
    #[error("unknown Authorization scheme (Bearer and Basic are accepted)")]
    Scheme,
    #[error("the Authorization header's Basic credentials are not base64 of name:password")]
    Basic,
    #[error("the Authorization header's Bearer token is empty or not a token")]
    Bearer,
}

/// The longest `Authorization` header read.
const MAX_LENGTH: usize = 8 * 1024;

/// Reads an `Authorization` header's value.
pub fn parse_authorization(value: &[u8]) -> Result<Credentials, AuthorizationError> {
    if value.len() > MAX_LENGTH {
        return Err(AuthorizationError::NotText);
    }
    let text = std::str::from_utf8(value).map_err(|_| AuthorizationError::NotText)?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or(AuthorizationError::Scheme)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let valid = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic());
        return valid.then(|| Credentials::Bearer(rest.to_string())).ok_or(AuthorizationError::Bearer);
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| AuthorizationError::Basic)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthorizationError::Basic)?;
        let (name, password) = decoded.split_once(':').ok_or(AuthorizationError::Basic)?;
        return Ok(Credentials::Basic { name: name.to_string(), password: password.to_string() });
    }
    Err(AuthorizationError::Scheme)
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), the first if it is there twice; quotes around
/// a value are removed.
pub fn cookie<'a>(header: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(header).ok()?;
    text.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(key, _)| key.trim() == name).map(
        |(_, value)| {
            let value = value.trim();
            value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_are_read() {
        assert_eq!(parse_authorization(b"Bearer kiln_abc"), Ok(Credentials::Bearer("kiln_abc".into())));
        assert_eq!(parse_authorization(b"bearer  t "), Ok(Credentials::Bearer("t".into())));
        // "ann:pa:ss"
        let basic = parse_authorization(b"Basic YW5uOnBhOnNz");
        assert_eq!(basic, Ok(Credentials::Basic { name: "ann".into(), password: "pa:ss".into() }));
        assert_eq!(parse_authorization(b"Basic !!!"), Err(AuthorizationError::Basic));
        assert_eq!(parse_authorization(b"Basic YW5u"), Err(AuthorizationError::Basic), "no colon");
        assert_eq!(parse_authorization(b"Digest x"), Err(AuthorizationError::Scheme));
        assert_eq!(parse_authorization(b"Bearer"), Err(AuthorizationError::Scheme));
        assert_eq!(parse_authorization(b"Bearer \x01"), Err(AuthorizationError::Bearer));
        assert_eq!(parse_authorization(&[0xff, b' ', b'x']), Err(AuthorizationError::NotText));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = b"a=1; kiln_session=abc ; b=\"q\"; kiln_session=second";
        assert_eq!(cookie(header, "kiln_session"), Some("abc"));
        assert_eq!(cookie(header, "b"), Some("q"));
        assert_eq!(cookie(header, "kiln"), None);
        assert_eq!(cookie(b"novalue; =x", ""), Some("x"));
        assert_eq!(cookie(&[0xff], "a"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_take_any_bytes(bytes: Vec<u8>) {
            let _ = parse_authorization(&bytes);
            let _ = cookie(&bytes, "kiln_session");
        }
    }
}
