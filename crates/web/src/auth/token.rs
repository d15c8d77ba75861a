//! API tokens for scripts and the command line: `kiln_` and 256 random bits, shown once when created, stored as
//! their SHA-256 with their user, a name, one role (one the user holds) and an expiry; revocable.

use std::time::Duration;

/// How every token starts (so that HTTP Basic can tell a token from a password).
pub const PREFIX: &str = "kiln_";

/// The longest name of a token.
pub const MAX_NAME: usize = 100;

/// A new token's text.
pub fn new_token() -> String {
    format!("{PREFIX}{}", super::session::new_secret())
}

/// A lifetime as `kiln token create --expires` and the API take it: `30d`, `12h`, `45m`, `30s`, or `never`.
pub fn parse_lifetime(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "never" {
        return Ok(None);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("'{text}': expected a number and d, h, m or s (30d)"))?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("'{text}': expected a number and d, h, m or s (30d), or never")),
    };
    match number.checked_mul(seconds) {
        Some(0) => Err(format!("'{text}': a token must live at least a second")),
        Some(s) if s <= 10 * 365 * 86_400 => Ok(Some(Duration::from_secs(s))),
        _ => Err(format!("'{text}': at most ten years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_tokens() {
        let t = new_token();
        assert!(t.starts_with(PREFIX) && t.len() == PREFIX.len() + 43, "{t}");
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d"), Ok(Some(Duration::from_secs(30 * 86_400))));
        assert_eq!(parse_lifetime("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse_lifetime("never"), Ok(None));
        for bad in ["", "d", "0m", "0s", "3w", "-1d", "99999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
