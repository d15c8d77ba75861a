//! `[[scheduler]]`: schedulers that start builds at times — `nightly` (Buildbot's calendar fields or a cron
//! expression, in a time zone) and `periodic` (every N seconds) — and `on_change`, which builds the changes
//! that pass its filter.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{check_builder_list, check_name, context_of, declared_name, read};
use crate::calendar::{Calendar, CalendarFields};

/// A scheduler that fires by the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedSchedulerDef {
    pub name: String,
    pub builders: Vec<String>,
    pub timing: Timing,
    /// Build at a firing only if an important change that passes `filter` came since the previous firing
    /// (Buildbot's `onlyIfChanged`; the very first firing always builds).
    pub only_if_changed: bool,
    /// The changes an `only_if_changed` scheduler counts.
    pub filter: ChangeFilterDef,
    /// Glob patterns of the files that make a change important; empty: every change is.
    pub files: Vec<String>,
    /// The priority of the requests it makes; `None`: each builder's own.
    pub priority: Option<i32>,
}

/// When a timed scheduler fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    /// At the times of a calendar.
    Nightly(Calendar),
    /// Every `interval`, the first time right after the master starts (Buildbot's `Periodic`).
    Periodic(Duration),
}

/// `type = "on_change"`: builds changes that pass its filter (Buildbot's Single/AnyBranchScheduler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSchedulerDef {
    pub name: String,
    pub builders: Vec<String>,
    pub filter: ChangeFilterDef,
    /// Glob patterns of the files that make a change important; empty: every change is.
    pub files: Vec<String>,
    /// Drop unimportant changes altogether (else they join the next build of an important one).
    pub only_important: bool,
    /// Wait this long after the last change of a branch before building all of them at once; `None`: a build
    /// per important change, at once.
    pub tree_stable_timer: Option<Duration>,
    /// The priority of the requests it makes; `None`: each builder's own.
    pub priority: Option<i32>,
}

/// Which changes a scheduler sees; an absent key lets every change through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeFilterDef {
    pub repository: Option<String>,
    /// Branch names.
    pub branches: Option<Vec<String>>,
    /// A glob pattern of branch names (`release/*`).
    pub branch_pattern: Option<String>,
    pub project: Option<String>,
    pub category: Option<String>,
    pub codebase: Option<String>,
}

/// `type = "triggerable"`: builds only when a `trigger` step asks (Buildbot's `Triggerable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerableSchedulerDef {
    pub name: String,
    pub builders: Vec<String>,
}

/// `type = "dependent"`: builds the source stamps of each buildset of `upstream` that ends SUCCESS or WARNINGS
/// (Buildbot's `Dependent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependentSchedulerDef {
    pub name: String,
    pub builders: Vec<String>,
    /// The scheduler whose buildsets it follows.
    pub upstream: String,
}

/// Every `[[scheduler]]`, by kind.
#[derive(Debug, Default)]
pub(super) struct Schedulers {
    pub(super) timed: Vec<TimedSchedulerDef>,
    pub(super) on_change: Vec<ChangeSchedulerDef>,
    pub(super) triggerable: Vec<TriggerableSchedulerDef>,
    pub(super) dependent: Vec<DependentSchedulerDef>,
}

/// A calendar field as written: a number (`hour = 3`) or a spec (`day_of_week = "mon,wed,fri"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum FieldValue {
    Number(i64),
    Text(String),
}

impl FieldValue {
    fn text(&self) -> String {
        match self {
            FieldValue::Number(n) => n.to_string(),
            FieldValue::Text(text) => text.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    builders: Spanned<Vec<Spanned<String>>>,
    minute: Option<FieldValue>,
    hour: Option<FieldValue>,
    day_of_month: Option<FieldValue>,
    month: Option<FieldValue>,
    day_of_week: Option<FieldValue>,
    cron: Option<String>,
    time_zone: Option<String>,
    interval: Option<Spanned<u64>>,
    repository: Option<String>,
    branch: Option<String>,
    branches: Option<Vec<String>>,
    branch_pattern: Option<Spanned<String>>,
    project: Option<String>,
    category: Option<String>,
    codebase: Option<String>,
    files: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    only_important: bool,
    tree_stable_timer: Option<u64>,
    #[serde(default)]
    only_if_changed: bool,
    upstream: Option<Spanned<String>>,
    priority: Option<i32>,
}

impl RawScheduler {
    /// Whether any key of a change filter (or `files`) is set.
    fn has_filter_keys(&self) -> bool {
        self.repository.is_some()
            || self.branch.is_some()
            || self.branches.is_some()
            || self.branch_pattern.is_some()
            || self.project.is_some()
            || self.category.is_some()
            || self.codebase.is_some()
            || self.files.is_some()
    }

    /// Checks the change filter keys and `files`, and takes them out: (filter, files).
    fn take_filter(&mut self, context: &str, problems: &mut Problems<'_>) -> Option<(ChangeFilterDef, Vec<String>)> {
        let mut valid = true;
        if self.branch.is_some() && (self.branches.is_some() || self.branch_pattern.is_some()) {
            let span = self.name.span();
            problems.add(span, Some(context), "branch", "give one of branch, branches, branch_pattern");
            valid = false;
        }
        for pattern in self.branch_pattern.iter().chain(self.files.iter().flatten()) {
            if let Err(e) = glob::Pattern::new(pattern.get_ref()) {
                let message = format!("'{}' is not a glob pattern: {e}", pattern.get_ref());
                problems.add(pattern.span(), Some(context), "files", message);
                valid = false;
            }
        }
        let filter = ChangeFilterDef {
            repository: self.repository.take(),
            branches: self.branches.take().or(self.branch.take().map(|b| vec![b])),
            branch_pattern: self.branch_pattern.take().map(Spanned::into_inner),
            project: self.project.take(),
            category: self.category.take(),
            codebase: self.codebase.take(),
        };
        let files = self.files.take().into_iter().flatten().map(Spanned::into_inner).collect();
        valid.then_some((filter, files))
    }
}

/// Reads the `[[scheduler]]` tables; `names` holds the names already taken by other schedulers.
pub(super) fn read_schedulers(
    tables: Vec<Spanned<DeValue<'_>>>,
    builder_names: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    problems: &mut Problems<'_>,
) -> Schedulers {
    let mut schedulers = Vec::new();
    let mut on_change = Vec::new();
    let mut triggerable = Vec::new();
    // Dependent schedulers, with where their upstream is written: checked once every name is known.
    let mut dependent = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("scheduler", declared.as_deref(), index);
        let span = table.span();
        let Some(mut raw) = read::<RawScheduler>(table, problems, Some(&context), "scheduler") else { continue };
        let name_valid = check_name(&raw.name, names, &context, "scheduler", problems);
        let builders_valid = check_builder_list(&mut raw.builders, builder_names, &context, problems);
        let calendar_keys = [&raw.minute, &raw.hour, &raw.day_of_month, &raw.month, &raw.day_of_week];
        let has_fields = calendar_keys.iter().any(|key| key.is_some());
        let kind = raw.kind.get_ref().as_str();
        if kind == "triggerable" || kind == "dependent" {
            let other_keys = has_fields
                || raw.cron.is_some()
                || raw.time_zone.is_some()
                || raw.interval.is_some()
                || raw.has_filter_keys()
                || raw.only_important
                || raw.tree_stable_timer.is_some()
                || raw.only_if_changed;
            if other_keys {
                let message = format!("a {kind} scheduler takes only name, type, builders (and upstream if dependent)");
                problems.add(span.clone(), Some(&context), "type", message);
                continue;
            }
            let upstream = raw.upstream.clone();
            let builders = raw.builders.into_inner().into_iter().map(Spanned::into_inner).collect();
            let name = raw.name.into_inner();
            match (kind, upstream) {
                ("triggerable", None) if name_valid && builders_valid => {
                    triggerable.push(TriggerableSchedulerDef { name, builders })
                }
                ("triggerable", Some(upstream)) => {
                    problems.add(upstream.span(), Some(&context), "upstream", "only a dependent scheduler has one");
                }
                ("dependent", None) => {
                    problems.add(span.clone(), Some(&context), "upstream", "a dependent scheduler needs an upstream");
                }
                ("dependent", Some(upstream)) if name_valid && builders_valid => {
                    dependent.push((
                        DependentSchedulerDef { name, builders, upstream: upstream.get_ref().clone() },
                        upstream,
                    ));
                }
                _ => {}
            }
            continue;
        }
        if let Some(upstream) = &raw.upstream {
            problems.add(upstream.span(), Some(&context), "upstream", "only a dependent scheduler has one");
            continue;
        }
        let on_change_only = raw.only_important || raw.tree_stable_timer.is_some();
        if raw.kind.get_ref() != "on_change" && on_change_only {
            let message = "only_important and tree_stable_timer are for on_change schedulers";
            problems.add(span.clone(), Some(&context), "type", message);
            continue;
        }
        if raw.kind.get_ref() != "on_change" && raw.has_filter_keys() && !raw.only_if_changed {
            let message = "change filter keys are for on_change schedulers and timed ones with only_if_changed = true";
            problems.add(span.clone(), Some(&context), "type", message);
            continue;
        }
        if raw.kind.get_ref() == "on_change" && raw.only_if_changed {
            let message = "only_if_changed is for nightly and periodic schedulers";
            problems.add(span.clone(), Some(&context), "only_if_changed", message);
            continue;
        }
        let Some((filter, files)) = raw.take_filter(&context, problems) else { continue };
        let timing = match raw.kind.get_ref().as_str() {
            "on_change" => {
                if has_fields || raw.cron.is_some() || raw.time_zone.is_some() || raw.interval.is_some() {
                    let message = "an on_change scheduler takes no calendar or interval keys";
                    problems.add(span.clone(), Some(&context), "type", message);
                    continue;
                }
                let valid = name_valid && builders_valid;
                if valid {
                    on_change.push(ChangeSchedulerDef {
                        name: raw.name.into_inner(),
                        builders: raw.builders.into_inner().into_iter().map(Spanned::into_inner).collect(),
                        filter,
                        files,
                        only_important: raw.only_important,
                        tree_stable_timer: raw.tree_stable_timer.filter(|s| *s > 0).map(Duration::from_secs),
                        priority: raw.priority,
                    });
                }
                continue;
            }
            "nightly" => {
                if raw.interval.is_some() {
                    problems.add(span.clone(), Some(&context), "interval", "a nightly scheduler has no interval");
                    None
                } else {
                    let time_zone = raw.time_zone.as_deref().unwrap_or("UTC");
                    let calendar = match (&raw.cron, has_fields) {
                        (Some(_), true) => {
                            let message = "give either cron or the calendar fields, not both";
                            problems.add(span.clone(), Some(&context), "cron", message);
                            continue;
                        }
                        (Some(cron), false) => Calendar::from_cron(cron, time_zone).map_err(|e| ("cron", e)),
                        (None, _) => {
                            let defaults = CalendarFields::default();
                            let field = |value: &Option<FieldValue>, default: &String| {
                                value.as_ref().map_or_else(|| default.clone(), FieldValue::text)
                            };
                            let fields = CalendarFields {
                                minute: field(&raw.minute, &defaults.minute),
                                hour: field(&raw.hour, &defaults.hour),
                                day_of_month: field(&raw.day_of_month, &defaults.day_of_month),
                                month: field(&raw.month, &defaults.month),
                                day_of_week: field(&raw.day_of_week, &defaults.day_of_week),
                            };
                            Calendar::from_fields(&fields, time_zone).map_err(|e| ("calendar", e))
                        }
                    };
                    match calendar {
                        Ok(calendar) => Some(Timing::Nightly(calendar)),
                        Err((key, error)) => {
                            problems.add(span.clone(), Some(&context), key, error.to_string());
                            None
                        }
                    }
                }
            }
            "periodic" => match &raw.interval {
                _ if has_fields || raw.cron.is_some() || raw.time_zone.is_some() => {
                    let message = "a periodic scheduler takes only an interval, not calendar keys";
                    problems.add(span.clone(), Some(&context), "type", message);
                    None
                }
                Some(interval) if *interval.get_ref() > 0 => {
                    Some(Timing::Periodic(Duration::from_secs(*interval.get_ref())))
                }
                Some(interval) => {
                    problems.add(interval.span(), Some(&context), "interval", "must be at least 1 second");
                    None
                }
                None => {
                    problems.add(span.clone(), Some(&context), "interval", "a periodic scheduler needs an interval");
                    None
                }
            },
            other => {
                let message = format!(
                    "unknown scheduler type '{other}' (known: on_change, nightly, periodic, triggerable, dependent)"
                );
                problems.add(raw.kind.span(), Some(&context), "type", message);
                None
            }
        };
        if let (true, true, Some(timing)) = (name_valid, builders_valid, timing) {
            schedulers.push(TimedSchedulerDef {
                name: raw.name.into_inner(),
                builders: raw.builders.into_inner().into_iter().map(Spanned::into_inner).collect(),
                timing,
                only_if_changed: raw.only_if_changed,
                filter,
                files,
                priority: raw.priority,
            });
        }
    }
    let mut dependents = Vec::new();
    for (def, upstream) in dependent {
        let context = context_of("scheduler", Some(&def.name), 0);
        if def.upstream == def.name {
            problems.add(upstream.span(), Some(&context), "upstream", "a scheduler cannot follow itself");
        } else if !names.contains(&def.upstream) {
            problems.add(upstream.span(), Some(&context), "upstream", format!("unknown scheduler '{}'", def.upstream));
        } else {
            dependents.push(def);
        }
    }
    Schedulers { timed: schedulers, on_change, triggerable, dependent: dependents }
}
