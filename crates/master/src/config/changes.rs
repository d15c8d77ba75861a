//! Where changes come from: `[[change_source]]` (pollers the master runs) and `[change_hooks.*]` (forges and
//! scripts that POST changes to the web listener).

use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{context_of, declared_name, read};

/// A change source the master runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSourceDef {
    /// `type = "git"`: polls a repository's branches with the `git` command line.
    Git(GitPollerDef),
    /// `type = "package"`: polls a PyPI-style JSON index for new releases of a package.
    Package(ReleasePollerDef),
}

impl ChangeSourceDef {
    pub fn name(&self) -> &str {
        match self {
            ChangeSourceDef::Git(git) => &git.name,
            ChangeSourceDef::Package(package) => &package.name,
        }
    }
}

/// Which branches a git poller watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Branches {
    /// Every branch.
    All,
    /// These branch names.
    Named(Vec<String>),
    /// Branches whose name matches a glob pattern (`release/*`).
    Pattern(String),
}

/// `type = "git"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPollerDef {
    /// Unique among change sources; keys the poller's stored state (default `git:<repository>`).
    pub name: String,
    /// Anything `git` can fetch from: a URL or a path.
    pub repository: String,
    pub branches: Branches,
    pub poll_interval: Duration,
    /// Tags become changes too (category `tag`).
    pub with_tags: bool,
    pub project: String,
    pub codebase: String,
}

/// `type = "package"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePollerDef {
    /// Unique among change sources (default `package:<package>`).
    pub name: String,
    pub package: String,
    /// The index's JSON API base: `<index_url>/<package>/json` describes the package.
    pub index_url: String,
    pub poll_interval: Duration,
    pub project: String,
    pub codebase: String,
}

/// The settings of one forge's webhook (`[change_hooks.github]` …).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookDef {
    /// The shared secret (HMAC key, or GitLab's token); without it requests are not verified.
    pub secret: Option<crate::secrets::Secret>,
    /// Tag pushes become changes too.
    #[serde(default)]
    pub with_tags: bool,
    pub project: Option<String>,
    pub codebase: Option<String>,
    /// Pull and merge requests make changes (category `pull`).
    #[serde(default = "yes")]
    pub pull_requests: bool,
    /// Pull requests from forks make changes too (off: the safe default).
    #[serde(default)]
    pub build_forks: bool,
    /// GitHub: a draft marked ready for review makes a change.
    #[serde(default)]
    pub ready_for_review: bool,
    /// GitHub: adding one of these labels to a pull request makes a change.
    #[serde(default)]
    pub labels: Vec<String>,
    /// GitHub: the ref a pull request's change names (`head`, the default, or `merge`).
    #[serde(default)]
    pub pull_request_ref: PullRequestRef,
    /// GitLab: a comment on a merge request containing this text builds its head again.
    pub note_trigger: Option<String>,
    /// Regular expressions; a push whose head commit's message matches one makes no changes. Absent: Buildbot's
    /// `[ci skip]` and `[skip ci]`; `[]`: nothing is skipped.
    pub skip_markers: Option<SkipMarkers>,
}

fn yes() -> bool {
    true
}

/// `pull_request_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullRequestRef {
    #[default]
    Head,
    Merge,
}

/// `skip_markers`: regular expressions, each checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipMarkers(pub Vec<String>);

impl<'de> Deserialize<'de> for SkipMarkers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let patterns = Vec::<String>::deserialize(deserializer)?;
        for pattern in &patterns {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(serde::de::Error::custom(format!(
                    "skip marker {pattern:?} is not a regular expression: {e}"
                )));
            }
        }
        Ok(SkipMarkers(patterns))
    }
}

/// `[change_hooks.base]`: changes POSTed as JSON by scripts and `kiln sendchange`, with a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseHookDef {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: crate::secrets::Secret,
}

/// `[change_hooks]`: which hook endpoints the web listener serves; an absent one answers 404.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeHooksConfig {
    pub github: Option<HookDef>,
    pub gitlab: Option<HookDef>,
    pub gitea: Option<HookDef>,
    pub bitbucket: Option<HookDef>,
    pub base: Option<BaseHookDef>,
    /// `[change_hooks.poller]`: `/change_hook/poller?poller=NAME` makes a git poller poll now.
    pub poller: Option<PollerHookDef>,
}

/// `[change_hooks.poller]` (Buildbot's `poller` dialect).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollerHookDef {
    /// Sent as `Authorization: Bearer <token>`, as to the base hook.
    pub token: String,
    /// The pollers it may wake (by name); absent: every git poller.
    pub allowed: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChangeSource {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    repository: Option<String>,
    branches: Option<Vec<String>>,
    branch_pattern: Option<String>,
    package: Option<String>,
    index_url: Option<String>,
    poll_interval: Option<Spanned<u64>>,
    #[serde(default)]
    with_tags: bool,
    #[serde(default)]
    project: String,
    #[serde(default)]
    codebase: String,
}

/// Default seconds between two polls.
const DEFAULT_POLL_INTERVAL: u64 = 60;

/// Reads the `[[change_source]]` tables.
pub(super) fn read_change_sources(
    tables: Vec<Spanned<DeValue<'_>>>,
    problems: &mut Problems<'_>,
) -> Vec<ChangeSourceDef> {
    let mut names = std::collections::BTreeSet::new();
    let mut sources = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("change_source", declared.as_deref(), index);
        let span = table.span();
        let Some(raw) = read::<RawChangeSource>(table, problems, Some(&context), "change_source") else { continue };
        let interval = match &raw.poll_interval {
            Some(seconds) if *seconds.get_ref() == 0 => {
                problems.add(seconds.span(), Some(&context), "poll_interval", "must be at least 1 second");
                continue;
            }
            Some(seconds) => Duration::from_secs(*seconds.get_ref()),
            None => Duration::from_secs(DEFAULT_POLL_INTERVAL),
        };
        let mut missing = |key: &str, value: &Option<String>| {
            let absent = value.as_deref().is_none_or(str::is_empty);
            if absent {
                problems.add(span.clone(), Some(&context), key, format!("a {} source needs {key}", raw.kind.get_ref()));
            }
            !absent
        };
        let source = match raw.kind.get_ref().as_str() {
            "git" => {
                if !missing("repository", &raw.repository) {
                    continue;
                }
                let repository = raw.repository.clone().unwrap_or_default();
                let branches = match (&raw.branches, &raw.branch_pattern) {
                    (Some(_), Some(_)) => {
                        let message = "give branches or branch_pattern, not both";
                        problems.add(span.clone(), Some(&context), "branch_pattern", message);
                        continue;
                    }
                    (Some(names), None) => Branches::Named(names.clone()),
                    (None, Some(pattern)) => Branches::Pattern(pattern.clone()),
                    (None, None) => Branches::All,
                };
                ChangeSourceDef::Git(GitPollerDef {
                    name: raw.name.as_ref().map_or_else(|| format!("git:{repository}"), |n| n.get_ref().clone()),
                    repository,
                    branches,
                    poll_interval: interval,
                    with_tags: raw.with_tags,
                    project: raw.project.clone(),
                    codebase: raw.codebase.clone(),
                })
            }
            "package" => {
                if !(missing("package", &raw.package) & missing("index_url", &raw.index_url)) {
                    continue;
                }
                let package = raw.package.clone().unwrap_or_default();
                ChangeSourceDef::Package(ReleasePollerDef {
                    name: raw.name.as_ref().map_or_else(|| format!("package:{package}"), |n| n.get_ref().clone()),
                    index_url: raw.index_url.clone().unwrap_or_default().trim_end_matches('/').to_string(),
                    package,
                    poll_interval: interval,
                    project: raw.project.clone(),
                    codebase: raw.codebase.clone(),
                })
            }
            other => {
                let message = format!("unknown change source type '{other}' (known: git, package)");
                problems.add(raw.kind.span(), Some(&context), "type", message);
                continue;
            }
        };
        if !names.insert(source.name().to_string()) {
            let span = raw.name.as_ref().map_or(span.clone(), Spanned::span);
            problems.add(span, Some(&context), "name", "another change source has this name");
            continue;
        }
        sources.push(source);
    }
    sources
}
