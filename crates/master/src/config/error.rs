//! What a config error says: the file, the line and the key, and how problems are collected while checking.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a master's config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; every problem found is listed, one per line.
    #[error("{}", list_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

/// One thing wrong in a config file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file, as given to [`super::MasterConfig::from_str`] (e.g. `master.toml`).
    pub file: String,
    /// The line, counting from 1.
    pub line: usize,
    /// What the key belongs to, e.g. `builder 'test'` or `builder 'test', step 'compile'`.
    pub context: Option<String>,
    /// The key at fault, e.g. `workers`; absent for a TOML syntax error outside any key.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        match (&self.context, &self.key) {
            (Some(context), Some(key)) => write!(f, "{context}, key '{key}': ")?,
            (Some(context), None) => write!(f, "{context}: ")?,
            (None, Some(key)) => write!(f, "key '{key}': ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

fn list_problems(problems: &[ConfigProblem]) -> String {
    problems.iter().map(ConfigProblem::to_string).collect::<Vec<_>>().join("\n")
}

/// The problems found so far in one file, with what is needed to turn byte offsets into lines.
pub(super) struct Problems<'a> {
    text: &'a str,
    file: &'a str,
    found: Vec<ConfigProblem>,
    /// Keys the table being read also accepts, though its own type does not list them (they were taken out
    /// before): added to the toml crate's "expected one of" lists, so those name every valid key.
    also_valid: &'static [&'static str],
}

impl<'a> Problems<'a> {
    pub(super) fn new(text: &'a str, file: &'a str) -> Self {
        Problems { text, file, found: Vec::new(), also_valid: &[] }
    }

    /// Records a problem with the key at `span` (byte offsets into the file).
    pub(super) fn add(&mut self, span: Range<usize>, context: Option<&str>, key: &str, message: impl Into<String>) {
        self.push(span.start, context, Some(key.to_owned()), message.into());
    }

    /// Records an error of the toml crate (syntax, wrong type, unknown or missing key), finding its key from the
    /// message or from the text at its span; `fallback_key` names the table being read when neither tells.
    pub(super) fn add_toml(&mut self, error: &toml::de::Error, context: Option<&str>, fallback_key: Option<&str>) {
        let start = error.span().map_or(0, |span| span.start);
        let key = key_in_message(error.message())
            .or_else(|| key_at(self.text, start))
            .or_else(|| fallback_key.map(str::to_owned));
        let message = with_also_valid(error.message().trim_end(), self.also_valid);
        self.push(start, context, key, message);
    }

    /// Runs `read` with `keys` named as valid too in its "unknown field" problems (see `also_valid`).
    pub(super) fn also_valid<T>(&mut self, keys: &'static [&'static str], read: impl FnOnce(&mut Self) -> T) -> T {
        let outer = std::mem::replace(&mut self.also_valid, keys);
        let result = read(self);
        self.also_valid = outer;
        result
    }

    fn push(&mut self, offset: usize, context: Option<&str>, key: Option<String>, message: String) {
        self.found.push(ConfigProblem {
            file: self.file.to_owned(),
            line: line_of(self.text, offset),
            context: context.map(str::to_owned),
            key,
            message,
        });
    }

    /// Whether no problem has been found.
    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems found, in the order of the file.
    pub(super) fn into_error(mut self) -> ConfigError {
        self.found.sort_by_key(|problem| problem.line);
        ConfigError::Invalid(self.found)
    }
}

/// serde's ``unknown field `x`, expected one of `a`, `b` `` with the `also` keys added to the list.
fn with_also_valid(message: &str, also: &[&str]) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_owned() };
    if also.is_empty() {
        return message.to_owned();
    }
    let Some((unknown, listed)) = rest.split_once('`') else { return message.to_owned() };
    let mut valid: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    valid.extend(also.iter().filter(|key| !listed.contains(&format!("`{key}`"))));
    let valid: Vec<String> = valid.iter().map(|key| format!("`{key}`")).collect();
    format!("unknown field `{unknown}`, expected one of {}", valid.join(", "))
}

/// The line (from 1) holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&byte| byte == b'\n').count() + 1
}

/// The key named in a serde message such as ``unknown field `foo`, expected …`` or ``missing field `name` ``.
fn key_in_message(message: &str) -> Option<String> {
    ["unknown field `", "missing field `", "duplicate key `", "duplicate field `"].iter().find_map(|prefix| {
        let rest = &message[message.find(prefix)? + prefix.len()..];
        Some(rest[..rest.find('`')?].to_owned())
    })
}

/// The key whose value (or which itself) starts at byte `offset`: the word before the nearest `=` on the same
/// line, or the word at `offset` when an `=` follows it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..offset)?;
    let key_text = match before.rfind('=') {
        Some(equals) => before[..equals].trim_end(),
        None => {
            let rest = text.get(offset..)?;
            let equals = rest.find('=')?;
            let candidate = rest[..equals].trim_end();
            if candidate.is_empty() || candidate.contains(['\n', ',', '[', ']', '{', '}']) {
                return None;
            }
            candidate
        }
    };
    let key = key_text.rsplit(['{', ',', ' ', '\t']).next()?.trim_matches(['"', '\'']);
    (!key.is_empty()).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }

    #[test]
    fn keys_come_from_the_text_before_the_value() {
        let text = "x = 1\nenv = { A = 3 }\n  \"ping_timeout\" = \"x\"\n";
        assert_eq!(key_at(text, 4).as_deref(), Some("x"));
        assert_eq!(key_at(text, text.find('3').unwrap()).as_deref(), Some("A"));
        assert_eq!(key_at(text, text.find("\"x\"").unwrap()).as_deref(), Some("ping_timeout"));
        assert_eq!(key_at(text, text.find("env").unwrap()).as_deref(), Some("env"));
    }

    #[test]
    fn keys_come_from_serde_messages() {
        assert_eq!(key_in_message("unknown field `foo`, expected one of `a`").as_deref(), Some("foo"));
        assert_eq!(
            with_also_valid("unknown field `foo`, expected one of `a`, `b`", &["c", "a"]),
            "unknown field `foo`, expected one of `a`, `b`, `c`"
        );
        assert_eq!(
            with_also_valid("unknown field `foo`, expected `a`", &["b"]),
            "unknown field `foo`, expected one of `a`, `b`"
        );
        assert_eq!(
            with_also_valid("unknown field `foo`, there are no fields", &["b"]),
            "unknown field `foo`, expected one of `b`"
        );
        assert_eq!(with_also_valid("invalid type", &["b"]), "invalid type");
        assert_eq!(key_in_message("missing field `name`").as_deref(), Some("name"));
        assert_eq!(key_in_message("invalid type: string"), None);
    }
}
