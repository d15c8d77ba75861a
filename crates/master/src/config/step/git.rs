//! The git step (`type = "git"`): checks out the build's source stamp on the worker, with Buildbot's `Git`
//! step modes (`incremental`; `full` with `clobber`, `fresh`, `clean` or `copy`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::StepOptions;
use crate::config::error::Problems;
use crate::config::parse::{check_template, env_templates, read, Defaults};

/// Seconds without output after which a git command is killed, when the step sets no `timeout`.
const DEFAULT_TIMEOUT_SECONDS: u64 = 1200;

/// How the step gets the sources into its workdir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitMode {
    /// Update the existing checkout (fetch and check out), or clone when there is none.
    Incremental,
    /// Start from a clean tree, in one of several ways.
    Full(GitMethod),
}

/// How `mode = "full"` cleans the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitMethod {
    /// Remove the directory and clone again.
    Clobber,
    /// `git clean -f -f -d -x` (untracked and ignored files go), then update.
    Fresh,
    /// `git clean -f -f -d` (untracked files go, ignored ones stay), then update.
    Clean,
    /// Update a checkout kept in `source`, then copy it over a fresh workdir.
    Copy,
}

/// A step that checks out a git repository on the worker and sets `got_revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitStep {
    pub options: StepOptions,
    /// The repository (a template).
    pub repourl: String,
    /// The branch when the build's source stamp names none (a template); `HEAD` for the remote's default.
    pub branch: String,
    /// The codebase whose source stamp is checked out.
    pub codebase: String,
    pub mode: GitMode,
    /// `--depth` of a shallow clone.
    pub shallow: Option<u32>,
    /// Check out submodules (recursively).
    pub submodules: bool,
    /// Where the checkout goes, relative to the builder's directory on the worker.
    pub workdir: String,
    /// The environment of the git commands: the builder's, with the step's own variables over it.
    pub env: BTreeMap<String, String>,
    /// How long a git command may print nothing before it is killed; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Fetch a second time when the first fetch fails.
    pub retry_fetch: bool,
    /// Remove the directory and clone again when updating fails.
    pub clobber_on_failure: bool,
    /// Show the worker's environment in the log before each git command (Buildbot's `logEnviron`; off here).
    pub log_environ: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitStep {
    repourl: Spanned<String>,
    branch: Option<Spanned<String>>,
    #[serde(default)]
    codebase: String,
    mode: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    shallow: Option<Spanned<toml::Value>>,
    #[serde(default)]
    submodules: bool,
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    timeout: Option<u64>,
    #[serde(default)]
    retry_fetch: bool,
    #[serde(default)]
    clobber_on_failure: bool,
    log_environ: Option<bool>,
}

/// Reads the git part of a step table (the keys not in [`super::COMMON_KEYS`]).
pub(super) fn read_git(
    table: Spanned<DeValue<'_>>,
    options: StepOptions,
    context: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Option<GitStep> {
    let raw: RawGitStep = read(table, problems, Some(context), "step")?;
    let mut valid = true;
    if raw.repourl.get_ref().trim().is_empty() {
        problems.add(raw.repourl.span(), Some(context), "repourl", "cannot be empty");
        valid = false;
    }
    valid &= check_template(&raw.repourl, Some(context), "repourl", problems);
    for (key, value) in [("branch", &raw.branch), ("workdir", &raw.workdir)] {
        if let Some(value) = value {
            valid &= check_template(value, Some(context), key, problems);
        }
    }
    let (own_env, env_valid) = env_templates(raw.env, context, problems);
    valid &= env_valid;
    let mode = mode(raw.mode.as_ref(), raw.method.as_ref(), context, problems);
    let shallow = shallow(raw.shallow.as_ref(), context, problems);
    if let (Some(Some(_)), Some(mode), Some(span)) = (shallow, mode, raw.shallow.as_ref().map(Spanned::span)) {
        if mode != GitMode::Full(GitMethod::Clobber) {
            let message = "a shallow clone needs mode = \"full\" and method = \"clobber\" (as in Buildbot)";
            problems.add(span, Some(context), "shallow", message);
            valid = false;
        }
    }
    let mut env = defaults.env.clone();
    env.extend(own_env);
    let (mode, shallow) = (mode?, shallow?);
    valid.then(|| GitStep {
        options,
        repourl: raw.repourl.into_inner(),
        branch: raw.branch.map_or_else(|| "HEAD".to_owned(), Spanned::into_inner),
        codebase: raw.codebase,
        mode,
        shallow,
        submodules: raw.submodules,
        workdir: raw.workdir.map_or_else(|| defaults.workdir.to_owned(), Spanned::into_inner),
        env,
        timeout: Some(raw.timeout.unwrap_or(DEFAULT_TIMEOUT_SECONDS)).filter(|s| *s > 0).map(Duration::from_secs),
        retry_fetch: raw.retry_fetch,
        clobber_on_failure: raw.clobber_on_failure,
        log_environ: raw.log_environ.unwrap_or(defaults.log_environ),
    })
}

/// `mode` and `method`: `incremental` takes no method; `full` defaults to `fresh`.
fn mode(
    mode: Option<&Spanned<String>>,
    method: Option<&Spanned<String>>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<GitMode> {
    match mode.map(|m| m.get_ref().as_str()) {
        None | Some("incremental") => {
            if let Some(method) = method {
                let message = format!("mode \"incremental\" takes no method (got '{}')", method.get_ref());
                problems.add(method.span(), Some(context), "method", message);
                return None;
            }
            Some(GitMode::Incremental)
        }
        Some("full") => {
            let method = match method.map(|m| m.get_ref().as_str()) {
                None | Some("fresh") => GitMethod::Fresh,
                Some("clobber") => GitMethod::Clobber,
                Some("clean") => GitMethod::Clean,
                Some("copy") => GitMethod::Copy,
                Some(other) => {
                    let message =
                        format!("unknown method '{other}' for mode \"full\" (one of: clobber, fresh, clean, copy)");
                    problems.add(method.map_or(0..0, Spanned::span), Some(context), "method", message);
                    return None;
                }
            };
            Some(GitMode::Full(method))
        }
        Some(other) => {
            let message = format!("unknown mode '{other}' (one of: incremental, full)");
            problems.add(mode.map_or(0..0, Spanned::span), Some(context), "mode", message);
            None
        }
    }
}

/// `shallow`: `true` is depth 1, `false` none, an integer a depth of at least 1. `None` when invalid.
fn shallow(value: Option<&Spanned<toml::Value>>, context: &str, problems: &mut Problems<'_>) -> Option<Option<u32>> {
    let Some(value) = value else { return Some(None) };
    match value.get_ref() {
        toml::Value::Boolean(b) => Some(b.then_some(1)),
        toml::Value::Integer(depth) => match u32::try_from(*depth) {
            Ok(depth) if depth >= 1 => Some(Some(depth)),
            _ => {
                problems.add(value.span(), Some(context), "shallow", "a depth must be at least 1");
                None
            }
        },
        other => {
            let message = format!("expected a boolean or a depth (an integer), got a {}", other.type_str());
            problems.add(value.span(), Some(context), "shallow", message);
            None
        }
    }
}
