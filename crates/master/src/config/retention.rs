//! How long the master keeps build logs (`[retention]`, and `log_retention` on a `[[builder]]`): durations such
//! as `"90d"`, `"12h"`, `"2w"`, or `"forever"`.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;

/// The logs of a build are kept this long after it ends unless the config says otherwise.
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// How often the janitor looks for logs past their time unless the config says otherwise.
pub const DEFAULT_JANITOR_INTERVAL: Duration = Duration::from_secs(3600);

/// `[retention]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How long a build's logs are kept after it ends; `None`: forever.
    pub logs: Option<Duration>,
    /// How often the janitor runs.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { logs: Some(DEFAULT_LOG_RETENTION), interval: DEFAULT_JANITOR_INTERVAL }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    logs: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

pub(super) fn check_retention(raw: RawRetention, problems: &mut Problems<'_>) -> Option<RetentionConfig> {
    let context = Some("[retention]");
    let logs = match raw.logs {
        None => Some(Some(DEFAULT_LOG_RETENTION)),
        Some(text) => read_retention(&text, context, "logs", problems),
    };
    let interval = match raw.interval {
        None => Some(DEFAULT_JANITOR_INTERVAL),
        Some(text) => match parse_duration(text.get_ref()) {
            Ok(d) if d >= Duration::from_secs(1) => Some(d),
            Ok(_) => {
                problems.add(text.span(), context, "interval", "the janitor's interval must be at least 1s");
                None
            }
            Err(why) => {
                problems.add(text.span(), context, "interval", why);
                None
            }
        },
    };
    Some(RetentionConfig { logs: logs?, interval: interval? })
}

/// A retention: a duration, or `"forever"` (`None`).
pub(super) fn read_retention(
    text: &Spanned<String>,
    context: Option<&str>,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<Option<Duration>> {
    if text.get_ref() == "forever" {
        return Some(None);
    }
    match parse_duration(text.get_ref()) {
        Ok(d) if !d.is_zero() => Some(Some(d)),
        Ok(_) => {
            problems.add(
                text.span(),
                context,
                key,
                "a retention of 0 would delete logs at once; write \"forever\" to keep them",
            );
            None
        }
        Err(why) => {
            problems.add(text.span(), context, key, format!("{why}, or \"forever\""));
            None
        }
    }
}

/// `"90d"`, `"36h"`, `"2w"`, `"30m"`, `"45s"` (one number and one unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || format!("'{text}' is not a duration: expected a number and a unit s, m, h, d or w, e.g. \"90d\"");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(expected()),
    };
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_number_and_one_unit() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        for bad in ["", "d", "90", "90 d", "1.5d", "-1d", "90y", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
