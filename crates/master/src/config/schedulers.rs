//! `[[scheduler]]`: schedulers that start builds at times — `nightly` (Buildbot's calendar fields or a cron
//! expression, in a time zone) and `periodic` (every N seconds) — and `on_change`, which builds the changes
//! that pass its filter.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{check_name, check_references, context_of, declared_name, read};
use crate::schedulers::calendar::{Calendar, CalendarFields};

/// A scheduler that fires by the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedSchedulerDef {
    pub name: String,
    pub builders: Vec<String>,
    pub timing: Timing,
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
    priority: Option<i32>,
}

impl RawScheduler {
    /// Whether any key of the on-change kind is set.
    fn has_change_keys(&self) -> bool {
        self.repository.is_some()
            || self.branch.is_some()
            || self.branches.is_some()
            || self.branch_pattern.is_some()
            || self.project.is_some()
            || self.category.is_some()
            || self.codebase.is_some()
            || self.files.is_some()
            || self.only_important
            || self.tree_stable_timer.is_some()
    }
}

/// Reads the `[[scheduler]]` tables; `names` holds the names already taken by other schedulers.
pub(super) fn read_schedulers(
    tables: Vec<Spanned<DeValue<'_>>>,
    builder_names: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    problems: &mut Problems<'_>,
) -> (Vec<TimedSchedulerDef>, Vec<ChangeSchedulerDef>) {
    let mut schedulers = Vec::new();
    let mut on_change = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("scheduler", declared.as_deref(), index);
        let span = table.span();
        let Some(raw) = read::<RawScheduler>(table, problems, Some(&context), "scheduler") else { continue };
        let name_valid = check_name(&raw.name, names, &context, "scheduler", problems);
        let builders_valid = check_references(&raw.builders, builder_names, &context, "builders", "builder", problems);
        let calendar_keys = [&raw.minute, &raw.hour, &raw.day_of_month, &raw.month, &raw.day_of_week];
        let has_fields = calendar_keys.iter().any(|key| key.is_some());
        if raw.kind.get_ref() != "on_change" && raw.has_change_keys() {
            let message = "change filter keys are for on_change schedulers";
            problems.add(span.clone(), Some(&context), "type", message);
            continue;
        }
        let timing = match raw.kind.get_ref().as_str() {
            "on_change" => {
                if has_fields || raw.cron.is_some() || raw.time_zone.is_some() || raw.interval.is_some() {
                    let message = "an on_change scheduler takes no calendar or interval keys";
                    problems.add(span.clone(), Some(&context), "type", message);
                    continue;
                }
                let mut valid = name_valid && builders_valid;
                if raw.branch.is_some() && (raw.branches.is_some() || raw.branch_pattern.is_some()) {
                    problems.add(
                        span.clone(),
                        Some(&context),
                        "branch",
                        "give one of branch, branches, branch_pattern",
                    );
                    valid = false;
                }
                for pattern in raw.branch_pattern.iter().chain(raw.files.iter().flatten()) {
                    if let Err(e) = glob::Pattern::new(pattern.get_ref()) {
                        let message = format!("'{}' is not a glob pattern: {e}", pattern.get_ref());
                        problems.add(pattern.span(), Some(&context), "files", message);
                        valid = false;
                    }
                }
                if valid {
                    on_change.push(ChangeSchedulerDef {
                        name: raw.name.into_inner(),
                        builders: raw.builders.into_inner().into_iter().map(Spanned::into_inner).collect(),
                        filter: ChangeFilterDef {
                            repository: raw.repository,
                            branches: raw.branches.or(raw.branch.map(|b| vec![b])),
                            branch_pattern: raw.branch_pattern.map(Spanned::into_inner),
                            project: raw.project,
                            category: raw.category,
                            codebase: raw.codebase,
                        },
                        files: raw.files.into_iter().flatten().map(Spanned::into_inner).collect(),
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
                let message = format!("unknown scheduler type '{other}' (known: on_change, nightly, periodic)");
                problems.add(raw.kind.span(), Some(&context), "type", message);
                None
            }
        };
        if let (true, true, Some(timing)) = (name_valid, builders_valid, timing) {
            schedulers.push(TimedSchedulerDef {
                name: raw.name.into_inner(),
                builders: raw.builders.into_inner().into_iter().map(Spanned::into_inner).collect(),
                timing,
                priority: raw.priority,
            });
        }
    }
    (schedulers, on_change)
}
