//! The shell step (`type = "shell"`): runs a command on the worker.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::StepOptions;
use crate::config::error::Problems;
use crate::config::parse::{check_template, env_templates, read, Defaults};
use crate::results;

/// Seconds without output after which a command is killed, when the step sets no `timeout`.
const DEFAULT_TIMEOUT_SECONDS: u64 = 1200;

/// The signals a step may be interrupted with, by their names without `SIG`.
const SIGNALS: [&str; 7] = ["HUP", "INT", "QUIT", "KILL", "TERM", "USR1", "USR2"];

/// The result codes a `decode_rc` value may name.
const RESULTS: [i32; 7] = [
    results::SUCCESS,
    results::WARNINGS,
    results::FAILURE,
    results::SKIPPED,
    results::EXCEPTION,
    results::RETRY,
    results::CANCELLED,
];

/// A step that runs a command on the worker and turns its exit code into a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellStep {
    /// What every step has.
    pub options: StepOptions,
    /// The command.
    pub command: ShellCommand,
    /// The command's environment: the builder's, with the step's own variables over it.
    pub env: BTreeMap<String, String>,
    /// Where the command runs, relative to the builder's directory on the worker.
    pub workdir: String,
    /// How long the command may print nothing before it is killed; `None` for no limit (`timeout = 0`).
    pub timeout: Option<Duration>,
    /// How long the command may run in all; `None` for no limit (absent or `max_time = 0`).
    pub max_time: Option<Duration>,
    /// The result of each exit code; a code not listed is [`results::FAILURE`].
    pub decode_rc: BTreeMap<i32, i32>,
    /// The time between SIGTERM and SIGKILL when the step is stopped; without it, [`ShellStep::interrupt_signal`]
    /// is sent.
    pub sigterm_time: Option<Duration>,
    /// The signal that stops the command when there is no `sigterm_time`, by name without `SIG` (`KILL`).
    pub interrupt_signal: String,
    /// Show the worker's environment in the log before the command (Buildbot's `logEnviron`, which is on by
    /// default there; off here).
    pub log_environ: bool,
}

/// A command as the config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand {
    /// A string, run by `/bin/sh -c`.
    Shell(String),
    /// A list: the program and its arguments, run without a shell.
    Argv(Vec<String>),
}

impl ShellCommand {
    /// The program's file name (`make` for `"/usr/bin/make -j4"`), or `shell` when there is none.
    pub(super) fn program_name(&self) -> String {
        let program = match self {
            ShellCommand::Shell(line) => line.split_whitespace().next(),
            ShellCommand::Argv(argv) => argv.first().map(String::as_str),
        };
        program
            .and_then(|program| program.rsplit('/').next())
            .filter(|name| !name.is_empty())
            .unwrap_or("shell")
            .to_owned()
    }

    fn is_empty(&self) -> bool {
        match self {
            ShellCommand::Shell(line) => line.trim().is_empty(),
            ShellCommand::Argv(argv) => argv.first().is_none_or(String::is_empty),
        }
    }
}

impl<'de> Deserialize<'de> for ShellCommand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CommandVisitor;

        impl<'de> Visitor<'de> for CommandVisitor {
            type Value = ShellCommand;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, line: &str) -> Result<ShellCommand, E> {
                Ok(ShellCommand::Shell(line.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<ShellCommand, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = items.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(ShellCommand::Argv(argv))
            }
        }

        deserializer.deserialize_any(CommandVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShellStep {
    command: Spanned<ShellCommand>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    workdir: Option<Spanned<String>>,
    timeout: Option<u64>,
    max_time: Option<u64>,
    decode_rc: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    sigterm_time: Option<u64>,
    interrupt_signal: Option<Spanned<String>>,
    log_environ: Option<bool>,
}

/// Reads the shell part of a step table (the keys not in [`super::COMMON_KEYS`]).
pub(super) fn read_shell(
    table: Spanned<DeValue<'_>>,
    options: StepOptions,
    context: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Option<ShellStep> {
    let raw: RawShellStep = read(table, problems, Some(context), "step")?;
    let mut valid = true;
    if raw.command.get_ref().is_empty() {
        problems.add(raw.command.span(), Some(context), "command", "the command is empty");
        valid = false;
    }
    let words = match raw.command.get_ref() {
        ShellCommand::Shell(line) => std::slice::from_ref(line),
        ShellCommand::Argv(argv) => argv.as_slice(),
    };
    for word in words {
        valid &= check_template(&Spanned::new(raw.command.span(), word.clone()), Some(context), "command", problems);
    }
    if let Some(workdir) = &raw.workdir {
        valid &= check_template(workdir, Some(context), "workdir", problems);
    }
    let (own_env, env_valid) = env_templates(raw.env, context, problems);
    valid &= env_valid;
    let decode_rc = match raw.decode_rc {
        None => BTreeMap::from([(0, results::SUCCESS)]),
        Some(table) => {
            let mut decode_rc = BTreeMap::new();
            for (rc, result) in table {
                let Ok(code) = rc.get_ref().trim().parse::<i32>() else {
                    let message = format!("'{}' is not an exit code (an integer)", rc.get_ref());
                    problems.add(rc.span(), Some(context), "decode_rc", message);
                    valid = false;
                    continue;
                };
                match RESULTS.into_iter().find(|&code| results::name(code) == Some(result.get_ref().as_str())) {
                    Some(result) => {
                        decode_rc.insert(code, result);
                    }
                    None => {
                        let names = RESULTS.map(|code| results::name(code).unwrap_or_default()).join(", ");
                        let message = format!("'{}' is not a result (one of: {names})", result.get_ref());
                        problems.add(result.span(), Some(context), "decode_rc", message);
                        valid = false;
                    }
                }
            }
            decode_rc
        }
    };
    let interrupt_signal = match raw.interrupt_signal {
        None => "KILL".to_owned(),
        Some(signal) if SIGNALS.contains(&signal.get_ref().as_str()) => signal.into_inner(),
        Some(signal) => {
            let message = format!("unknown signal '{}' (one of: {})", signal.get_ref(), SIGNALS.join(", "));
            problems.add(signal.span(), Some(context), "interrupt_signal", message);
            return None;
        }
    };
    let mut env = defaults.env.clone();
    env.extend(own_env);
    valid.then(|| ShellStep {
        options,
        command: raw.command.into_inner(),
        env,
        workdir: raw.workdir.map_or_else(|| defaults.workdir.to_owned(), Spanned::into_inner),
        timeout: seconds_or_unlimited(raw.timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS)),
        max_time: raw.max_time.and_then(seconds_or_unlimited),
        decode_rc,
        sigterm_time: raw.sigterm_time.map(Duration::from_secs),
        interrupt_signal,
        log_environ: raw.log_environ.unwrap_or(defaults.log_environ),
    })
}

/// A limit in seconds, where 0 means no limit.
fn seconds_or_unlimited(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}
