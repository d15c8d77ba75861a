//! `[[secret_provider]]` (where `%(secret:NAME)s` forms are looked up), `[secrets]` (`min_length`), and a worker's
//! `password` or `password_hash`.

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{context_of, read};
use crate::secrets::{ProviderDef, Secret, SecretsConfig, DEFAULT_COMMAND_TIMEOUT, DEFAULT_MIN_LENGTH};

/// `[secrets]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecrets {
    min_length: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    prefix: Option<String>,
    argv: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    shell: bool,
    timeout: Option<Spanned<u64>>,
}

/// How a worker proves who it is (`[[worker]]`'s `password` or `password_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerPassword {
    /// `password`: the text, in which `%(secret:NAME)s` forms are rendered when the master starts.
    Text(Secret),
    /// `password_hash`: an argon2 hash (`$argon2id$…`, as `kiln hash-password` prints).
    Hash(String),
}

impl WorkerPassword {
    /// The secrets the password names.
    pub fn secret_names(&self) -> Vec<String> {
        match self {
            WorkerPassword::Text(text) => crate::interpolate::secret_names(text.expose()),
            WorkerPassword::Hash(_) => Vec::new(),
        }
    }
}

/// Reads the `[[secret_provider]]` tables and `[secrets]`.
pub(super) fn read_secrets(
    tables: Vec<Spanned<DeValue<'_>>>,
    raw: RawSecrets,
    problems: &mut Problems<'_>,
) -> SecretsConfig {
    let mut config = SecretsConfig::default();
    if let Some(min) = raw.min_length {
        if *min.get_ref() == 0 {
            problems.add(min.span(), Some("[secrets]"), "min_length", "must be at least 1");
        }
        config.min_length = min.into_inner().max(1);
    } else {
        config.min_length = DEFAULT_MIN_LENGTH;
    }
    for (index, table) in tables.into_iter().enumerate() {
        let context = context_of("secret_provider", None, index);
        let Some(raw) = read::<RawProvider>(table, problems, Some(&context), "secret_provider") else { continue };
        let kind = raw.kind.get_ref().as_str();
        let context = format!("secret_provider #{} ({kind})", index + 1);
        let unused = |present: bool, key: &str, problems: &mut Problems<'_>| {
            if present {
                problems.add(raw.kind.span(), Some(&context), key, format!("a '{kind}' provider takes no '{key}'"));
            }
        };
        let provider = match kind {
            "dir" => {
                unused(raw.prefix.is_some(), "prefix", problems);
                unused(raw.argv.is_some(), "argv", problems);
                unused(raw.shell, "shell", problems);
                unused(raw.timeout.is_some(), "timeout", problems);
                match raw.path {
                    Some(path) if !path.get_ref().is_empty() => {
                        Some(ProviderDef::Dir { path: path.into_inner().into() })
                    }
                    Some(path) => {
                        problems.add(path.span(), Some(&context), "path", "cannot be empty");
                        None
                    }
                    None => {
                        problems.add(raw.kind.span(), Some(&context), "path", "a 'dir' provider needs a path");
                        None
                    }
                }
            }
            "env" => {
                unused(raw.path.is_some(), "path", problems);
                unused(raw.argv.is_some(), "argv", problems);
                unused(raw.shell, "shell", problems);
                unused(raw.timeout.is_some(), "timeout", problems);
                Some(ProviderDef::Env { prefix: raw.prefix.unwrap_or_default() })
            }
            "command" => {
                unused(raw.path.is_some(), "path", problems);
                unused(raw.prefix.is_some(), "prefix", problems);
                let timeout = match raw.timeout {
                    Some(t) if *t.get_ref() == 0 => {
                        problems.add(t.span(), Some(&context), "timeout", "must be at least 1 second");
                        None
                    }
                    Some(t) => Some(std::time::Duration::from_secs(t.into_inner())),
                    None => Some(DEFAULT_COMMAND_TIMEOUT),
                };
                let argv = match raw.argv {
                    Some(argv) if argv.get_ref().is_empty() || argv.get_ref()[0].is_empty() => {
                        problems.add(argv.span(), Some(&context), "argv", "needs a program");
                        None
                    }
                    Some(argv) if raw.shell && argv.get_ref().len() != 1 => {
                        let message = "with shell = true, argv is one shell script (the name is its $1)";
                        problems.add(argv.span(), Some(&context), "argv", message);
                        None
                    }
                    Some(argv) => Some(argv.into_inner()),
                    None => {
                        problems.add(raw.kind.span(), Some(&context), "argv", "a 'command' provider needs an argv");
                        None
                    }
                };
                match (argv, timeout) {
                    (Some(argv), Some(timeout)) => Some(ProviderDef::Command { argv, shell: raw.shell, timeout }),
                    _ => None,
                }
            }
            other => {
                let message = format!("unknown secret provider type '{other}' (one of: dir, env, command)");
                problems.add(raw.kind.span(), Some(&context), "type", message);
                None
            }
        };
        config.providers.extend(provider);
    }
    config
}

/// Checks a worker's `password` or `password_hash` (exactly one of them).
pub(super) fn worker_password(
    password: Option<Spanned<String>>,
    password_hash: Option<Spanned<String>>,
    table: std::ops::Range<usize>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<WorkerPassword> {
    match (password, password_hash) {
        (Some(password), None) => {
            if !super::parse::check_template(&password, Some(context), "password", problems) {
                return None;
            }
            Some(WorkerPassword::Text(Secret::new(password.into_inner())))
        }
        (None, Some(hash)) => match argon2::PasswordHash::new(hash.get_ref()) {
            Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => {
                Some(WorkerPassword::Hash(hash.into_inner()))
            }
            Ok(parsed) => {
                let message = format!("'{}' hashes are not accepted: use an argon2 hash", parsed.algorithm);
                problems.add(hash.span(), Some(context), "password_hash", message);
                None
            }
            Err(e) => {
                let message = format!("not an argon2 hash ($argon2id$v=19$…, as `kiln hash-password` prints): {e}");
                problems.add(hash.span(), Some(context), "password_hash", message);
                None
            }
        },
        (Some(password), Some(_)) => {
            problems.add(password.span(), Some(context), "password", "give password or password_hash, not both");
            None
        }
        (None, None) => {
            problems.add(table, Some(context), "password", "missing field `password` (or `password_hash`)");
            None
        }
    }
}
