//! Censoring secret values out of text: log lines, state strings, step names, properties, the master's own log.
//!
//! Each line of a secret's value is a pattern of its own (a multi-line secret printed by a command arrives as
//! several log lines), and every match becomes `<secret:NAME>`. Matching is one pass over the text, the longest
//! value first at each position, so a short value never matches inside the replacement of a longer one.
//!
//! A log is redacted line by line. That covers a value split across two updates of the worker: a worker (Kiln's
//! and Buildbot's alike) sends only complete lines while a command runs, keeping a partial line until its end
//! arrives, so a value written half, flushed, and written again after a pause reaches the master in one line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Secret;

/// The secrets a build uses, as patterns to censor. Cheap to clone; empty by default (censors nothing).
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Option<Arc<Patterns>>,
}

pub(super) enum Patterns {
    /// The values, matched in one pass.
    Values {
        regex: regex::Regex,
        /// The secret's name, by the text of each pattern.
        names: HashMap<String, String>,
    },
    /// The patterns could not be compiled (never seen: they are escaped literals): every text is withheld rather
    /// than shown.
    WithholdAll,
}

impl Redactor {
    /// A redactor for `secrets` (name, value). Empty lines of a value are no pattern.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a Secret)>) -> Redactor {
        let mut names = HashMap::new();
        for (name, value) in secrets {
            for line in value_lines(value.expose()) {
                names.entry(line.to_string()).or_insert_with(|| name.to_string());
            }
        }
        Redactor::from_names(names)
    }

    fn from_names(names: HashMap<String, String>) -> Redactor {
        if names.is_empty() {
            return Redactor::default();
        }
        let mut patterns: Vec<&String> = names.keys().collect();
        // Longest first: the regex takes the first alternative that matches at the leftmost position.
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        let alternation = patterns.iter().map(|p| regex::escape(p)).collect::<Vec<_>>().join("|");
        let patterns = match regex::RegexBuilder::new(&alternation).size_limit(256 << 20).build() {
            Ok(regex) => Patterns::Values { regex, names },
            Err(e) => {
                tracing::error!(error = %e, "the secrets' patterns do not compile: text is withheld");
                Patterns::WithholdAll
            }
        };
        Redactor { inner: Some(Arc::new(patterns)) }
    }

    /// Whether there is nothing to censor.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// `text` with every secret value replaced by `<secret:NAME>`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.inner.as_deref() {
            None => Cow::Borrowed(text),
            Some(Patterns::WithholdAll) => Cow::Borrowed("<withheld>"),
            Some(Patterns::Values { regex, names }) => regex.replace_all(text, |caps: &regex::Captures<'_>| {
                let name = names.get(&caps[0]).map_or("", String::as_str);
                format!("<secret:{name}>")
            }),
        }
    }

    /// A JSON value with every string in it redacted.
    pub fn redact_json(&self, value: &Value) -> Value {
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact_json(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.redact_json(v))).collect()),
            other => other.clone(),
        }
    }

    /// A redactor censoring what either censors.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        match (self.inner.as_deref(), other.inner.as_deref()) {
            (None, _) => other.clone(),
            (_, None) => self.clone(),
            (Some(Patterns::Values { names: a, .. }), Some(Patterns::Values { names: b, .. })) => {
                let mut names = b.clone();
                names.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
                Redactor::from_names(names)
            }
            (Some(Patterns::WithholdAll), _) => self.clone(),
            (_, Some(Patterns::WithholdAll)) => other.clone(),
        }
    }

    pub(super) fn downgrade(&self) -> Option<std::sync::Weak<Patterns>> {
        self.inner.as_ref().map(Arc::downgrade)
    }

    pub(super) fn upgrade(weak: &std::sync::Weak<Patterns>) -> Option<Redactor> {
        weak.upgrade().map(|inner| Redactor { inner: Some(inner) })
    }
}

/// The lines of a value that are patterns: each line without its `\r`, empty ones left out.
pub(crate) fn value_lines(value: &str) -> impl Iterator<Item = &str> {
    value.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line)).filter(|line| !line.is_empty())
}

/// `text` with the credentials of every URL in it hidden: `https://user:token@host/repo` becomes
/// `https://user:***@host/repo`, and a bare token before `@` in an `http(s)://` URL becomes `***`
/// (`https://ghp_x@host` → `https://***@host`; `ssh://git@host` is kept, a user name is no secret there).
pub fn redact_url_credentials(text: &str) -> Cow<'_, str> {
    static URL: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let regex = URL.get_or_init(|| regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s@:]*)(:[^/\s@]*)?@").ok());
    let Some(regex) = regex else { return Cow::Borrowed(text) };
    regex.replace_all(text, |caps: &regex::Captures<'_>| {
        let scheme = &caps[1];
        let user = &caps[2];
        match caps.get(3) {
            Some(_) => format!("{scheme}{user}:***@"),
            None if scheme.to_ascii_lowercase().starts_with("http") && !user.is_empty() => format!("{scheme}***@"),
            None => caps[0].to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn redactor(secrets: &[(&str, &str)]) -> Redactor {
        let values: Vec<(&str, Secret)> = secrets.iter().map(|(n, v)| (*n, Secret::new(*v))).collect();
        Redactor::new(values.iter().map(|(n, v)| (*n, v)))
    }

    #[test]
    fn replaces_each_value_by_its_name() {
        let r = redactor(&[("token", "s3cr3t-value"), ("pw", "hunter22")]);
        assert_eq!(r.redact("echo s3cr3t-value and hunter22!"), "echo <secret:token> and <secret:pw>!");
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_longest_value_wins_and_replacements_are_not_matched_again() {
        let r = redactor(&[("short", "secr"), ("long", "secret-long")]);
        assert_eq!(r.redact("a secret-long b secr c"), "a <secret:long> b <secret:short> c");
        // "secr" would match inside "<secret:long>" if replacements were scanned again.
        assert_eq!(r.redact("secret-longsecr"), "<secret:long><secret:short>");
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_censored() {
        let r = redactor(&[("key", "-----BEGIN KEY-----\r\nAAAA1111\nBBBB2222\n")]);
        assert_eq!(r.redact("x AAAA1111 y"), "x <secret:key> y");
        assert_eq!(r.redact("BBBB2222"), "<secret:key>");
        assert_eq!(r.redact("-----BEGIN KEY-----"), "<secret:key>");
    }

    #[test]
    fn json_strings_are_redacted_deeply() {
        let r = redactor(&[("t", "tok-1234")]);
        let v = serde_json::json!({"a": ["x tok-1234", 3, {"b": "tok-1234"}], "c": true});
        assert_eq!(r.redact_json(&v), serde_json::json!({"a": ["x <secret:t>", 3, {"b": "<secret:t>"}], "c": true}));
    }

    #[test]
    fn merged_redactors_censor_both() {
        let merged = redactor(&[("a", "value-aaa")]).merged(&redactor(&[("b", "value-bbb")]));
        assert_eq!(merged.redact("value-aaa value-bbb"), "<secret:a> <secret:b>");
    }

    #[test]
    fn url_credentials_are_hidden() {
        let cases = [
            ("https://user:tok3n@example.com/repo.git", "https://user:***@example.com/repo.git"),
            ("fetching https://ghp_abc@github.com/o/r now", "fetching https://***@github.com/o/r now"),
            ("ssh://git@example.com/repo", "ssh://git@example.com/repo"),
            ("git@example.com:o/r.git", "git@example.com:o/r.git"),
            ("https://example.com/a@b", "https://example.com/a@b"),
            ("HTTP://u:p@h/ and http://v:q@i/", "HTTP://u:***@h/ and http://v:***@i/"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_url_credentials(text), want, "{text}");
        }
    }

    proptest! {
        /// Whatever surrounds them and however the text is cut into lines, no line of a secret survives, and
        /// text without a secret is kept as it is.
        #[test]
        fn no_secret_survives(
            before in "[a-z <>:]{0,20}",
            after in "[a-z <>:]{0,20}",
            value in "[A-Za-z0-9]{4,16}",
            second in "[A-Za-z0-9]{4,16}",
            cut in 0usize..40,
        ) {
            let r = redactor(&[("one", &value), ("two", &format!("{value}\n{second}"))]);
            let text = format!("{before}{value}{after}\n{second}{before}");
            // The log is redacted by lines, as they arrive; a cut between updates falls between lines.
            let lines: Vec<&str> = text.split('\n').collect();
            let at = cut.min(lines.len());
            let (first, rest) = lines.split_at(at);
            for chunk in [first, rest] {
                for line in chunk {
                    let out = r.redact(line);
                    prop_assert!(!out.contains(value.as_str()), "{out:?} holds {value:?}");
                    prop_assert!(!out.contains(second.as_str()), "{out:?} holds {second:?}");
                }
            }
            let plain = r.redact(&before);
            if !before.contains(value.as_str()) && !before.contains(second.as_str()) {
                prop_assert_eq!(plain.as_ref(), before.as_str());
            }
        }
    }
}
