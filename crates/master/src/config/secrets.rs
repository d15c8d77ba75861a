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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MasterConfig, StepDef};

    const BUILDER: &str = "\n[[builder]]\nname = \"b\"\nworkers = [\"w1\"]\n  [[builder.step]]\n  command = \"true\"\n";

    fn load(text: &str) -> Result<MasterConfig, String> {
        MasterConfig::from_str(text, "master.toml").map_err(|e| e.to_string())
    }

    fn worker(keys: &str) -> String {
        format!("[[worker]]\nname = \"w1\"\n{keys}\n{BUILDER}")
    }

    #[test]
    fn providers_are_read_in_order_with_their_defaults() {
        let text = format!(
            "[secrets]\nmin_length = 6\n\n[[secret_provider]]\ntype = \"dir\"\npath = \"secrets\"\n\n\
             [[secret_provider]]\ntype = \"env\"\nprefix = \"KILN_SECRET_\"\n\n\
             [[secret_provider]]\ntype = \"command\"\nargv = [\"pass\", \"show\"]\ntimeout = 3\n\n{}",
            worker("password = \"pw\"")
        );
        let config = load(&text).expect("valid");
        assert_eq!(config.secrets.min_length, 6);
        assert_eq!(
            config.secrets.providers,
            vec![
                ProviderDef::Dir { path: "secrets".into() },
                ProviderDef::Env { prefix: "KILN_SECRET_".into() },
                ProviderDef::Command {
                    argv: vec!["pass".into(), "show".into()],
                    shell: false,
                    timeout: std::time::Duration::from_secs(3)
                },
            ]
        );
        let defaults = config_of_worker("password = \"pw\"");
        assert_eq!(defaults.secrets, SecretsConfig::default());
    }

    fn config_of_worker(keys: &str) -> MasterConfig {
        load(&worker(keys)).expect("valid")
    }

    #[test]
    fn bad_providers_name_their_key() {
        let cases = [
            ("[[secret_provider]]\ntype = \"vault\"\n", "master.toml:2: secret_provider #1 (vault), key 'type'"),
            ("[[secret_provider]]\ntype = \"dir\"\n", "key 'path': a 'dir' provider needs a path"),
            ("[[secret_provider]]\ntype = \"env\"\npath = \"x\"\n", "key 'path': a 'env' provider takes no 'path'"),
            ("[[secret_provider]]\ntype = \"command\"\nargv = []\n", "key 'argv': needs a program"),
            ("[[secret_provider]]\ntype = \"command\"\nargv = [\"a\", \"b\"]\nshell = true\n", "one shell script"),
            ("[[secret_provider]]\ntype = \"command\"\nargv = [\"a\"]\ntimeout = 0\n", "key 'timeout'"),
            ("[[secret_provider]]\ntype = \"env\"\nprfix = \"x\"\n", "prfix"),
            ("[secrets]\nmin_length = 0\n", "key 'min_length': must be at least 1"),
        ];
        for (tables, needle) in cases {
            let error = load(&format!("{tables}\n{}", worker("password = \"pw\""))).expect_err(tables);
            assert!(error.contains(needle), "{tables}: {error}");
        }
    }

    #[test]
    fn a_worker_has_a_password_or_a_hash() {
        let hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$PxEGb4qUQ0WbMXyQkTJ9AQ";
        let config = config_of_worker(&format!("password_hash = \"{hash}\""));
        assert_eq!(config.workers[0].password, WorkerPassword::Hash(hash.into()));
        let config = config_of_worker("password = \"%(secret:w1-password)s\"");
        assert_eq!(config.workers[0].password.secret_names(), vec!["w1-password".to_string()]);
        assert!(!format!("{:?}", config.workers[0]).contains("w1-password"), "Debug shows no password");
        let both = load(&worker(&format!("password = \"x\"\npassword_hash = \"{hash}\""))).expect_err("both");
        assert!(both.contains("give password or password_hash, not both"), "{both}");
        let bad = load(&worker("password_hash = \"plain\"")).expect_err("not a hash");
        assert!(bad.contains("key 'password_hash': not an argon2 hash"), "{bad}");
        let none = load(&worker("")).expect_err("none");
        assert!(none.contains("master.toml:1: worker 'w1', key 'password': missing field"), "{none}");
        let template = load(&worker("password = \"%(secret:../x)s\"")).expect_err("bad name");
        assert!(template.contains("not a secret name"), "{template}");
    }

    #[test]
    fn a_secret_in_a_step_is_checked_and_log_environ_comes_from_the_builder() {
        let text = "[[worker]]\nname = \"w1\"\npassword = \"pw\"\n\n[[builder]]\nname = \"b\"\nworkers = [\"w1\"]\n\
                    log_environ = true\n  [[builder.step]]\n  name = \"a\"\n  command = \"echo %(secret:token)s\"\n\
                    \n  [[builder.step]]\n  name = \"b\"\n  command = \"true\"\n  log_environ = false\n";
        let config = load(text).expect("valid");
        let environ: Vec<bool> = config.builders[0]
            .steps
            .iter()
            .map(|s| match s {
                StepDef::Shell(shell) => shell.log_environ,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(environ, vec![true, false]);
        let error = self::load(&text.replace("%(secret:token)s", "%(secret:a b)s")).expect_err("bad name");
        assert!(error.contains("'a b' is not a secret name"), "{error}");
    }
}
