//! `[[scheduler]]`: schedulers that start builds at times — `nightly` (Buildbot's calendar fields or a cron
//! expression, in a time zone) and `periodic` (every N seconds) — and `on_change`, which builds the changes
//! that pass its filter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{check_builder_list, check_name, context_of, declared_name, read};
use crate::calendar::{Calendar, CalendarError, CalendarFields};

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
    /// A newer buildset of this scheduler for the same branch (a pull request's ref, or a branch) cancels the
    /// queued requests and stops the running builds of the older ones (Buildbot's `OldBuildCanceller`).
    pub cancel_superseded: bool,
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

/// What a scheduler puts in the buildsets it submits, whatever its kind (Buildbot's `reason`, `properties` and
/// `codebases`; a timed scheduler's `branch` is one codebase).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubmitDef {
    /// Replaces the scheduler's own reason ("The scheduler named … triggered this build …").
    pub reason: Option<String>,
    /// Buildset properties (source `Scheduler`); a trigger step's or a force form's of the same name win.
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Source stamps for the codebases no change or trigger of the buildset names.
    pub codebases: Vec<CodebaseDef>,
}

/// A codebase a scheduler builds: its repository and branch, and a revision (none: the branch's head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodebaseDef {
    pub codebase: String,
    pub repository: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
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
    /// What each scheduler (by name) puts in its buildsets.
    pub(super) submits: BTreeMap<String, SubmitDef>,
}

/// A calendar field as written: a number (`hour = 3`), a spec (`day_of_week = "mon,wed,fri"`) or a list of either
/// (`day_of_week = [0, 2, 4]`, Buildbot's form), kept as the spec text (a list joined with commas).
struct FieldValue(String);

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor { in_list: false })
    }
}

struct FieldVisitor {
    in_list: bool,
}

impl<'de> serde::de::Visitor<'de> for FieldVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.in_list {
            false => {
                f.write_str("a whole number, a text such as \"mon,wed,fri\" or \"*/15\", or a list such as [0, 2, 4]")
            }
            true => f.write_str("a whole number or a text in the list"),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<FieldValue, E> {
        Ok(FieldValue(value.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<FieldValue, E> {
        Ok(FieldValue(value.to_string()))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<FieldValue, E> {
        Ok(FieldValue(value.to_string()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        if self.in_list {
            return Err(serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &self));
        }
        let mut parts = Vec::new();
        while let Some(ListElement(part)) = seq.next_element()? {
            parts.push(part);
        }
        if parts.is_empty() {
            return Err(serde::de::Error::invalid_length(0, &"at least one value in the list"));
        }
        Ok(FieldValue(parts.join(",")))
    }
}

/// One element of a calendar field's list.
struct ListElement(String);

impl<'de> Deserialize<'de> for ListElement {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor { in_list: true }).map(|FieldValue(text)| ListElement(text))
    }
}

/// A codebase a scheduler builds when no change names it (Buildbot's `codebases`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodebase {
    #[serde(default)]
    repository: String,
    branch: Option<String>,
    revision: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    builders: Option<Spanned<Vec<Spanned<String>>>>,
    /// Selects every builder that has all these tags (besides those `builders` names).
    tags: Option<Spanned<Vec<String>>>,
    minute: Option<Spanned<FieldValue>>,
    hour: Option<Spanned<FieldValue>>,
    day_of_month: Option<Spanned<FieldValue>>,
    month: Option<Spanned<FieldValue>>,
    day_of_week: Option<Spanned<FieldValue>>,
    cron: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
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
    #[serde(default)]
    cancel_superseded: bool,
    tree_stable_timer: Option<u64>,
    #[serde(default)]
    only_if_changed: bool,
    upstream: Option<Spanned<String>>,
    priority: Option<i32>,
    reason: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, Spanned<toml::Value>>,
    codebases: Option<BTreeMap<String, RawCodebase>>,
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

/// Reads the `[[scheduler]]` tables; `names` holds the names already taken by other schedulers, `builder_tags`
/// each builder's tags.
pub(super) fn read_schedulers(
    tables: Vec<Spanned<DeValue<'_>>>,
    builder_names: &BTreeSet<String>,
    builder_tags: &BTreeMap<String, Vec<String>>,
    names: &mut BTreeSet<String>,
    problems: &mut Problems<'_>,
) -> Schedulers {
    let mut schedulers = Vec::new();
    let mut on_change = Vec::new();
    let mut triggerable = Vec::new();
    let mut submits = BTreeMap::new();
    // Dependent schedulers, with where their upstream is written: checked once every name is known.
    let mut dependent = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("scheduler", declared.as_deref(), index);
        let span = table.span();
        let Some(mut raw) = read::<RawScheduler>(table, problems, Some(&context), "scheduler") else { continue };
        let name_valid = check_name(&raw.name, names, &context, "scheduler", problems);
        let (mut builders, tags_valid) = select_builders(&mut raw, &span, builder_tags, &context, problems);
        // Tags that select nothing are reported already; "needs at least one builder" would only repeat it.
        let builders_valid = match tags_valid {
            false if builders.get_ref().is_empty() => false,
            _ => check_builder_list(&mut builders, builder_names, &context, problems) && tags_valid,
        };
        let builders: Vec<String> = builders.into_inner().into_iter().map(Spanned::into_inner).collect();
        let calendar_keys = [&raw.minute, &raw.hour, &raw.day_of_month, &raw.month, &raw.day_of_week];
        let has_fields = calendar_keys.iter().any(|key| key.is_some());
        let kind = raw.kind.get_ref().clone();
        let timed = kind == "nightly" || kind == "periodic";
        // On a timed scheduler `branch` is the branch it builds (and, with only_if_changed, the one it watches
        // unless `branches` or `branch_pattern` say otherwise), as Buildbot's Nightly and Periodic.
        let build_branch = if timed { raw.branch.take() } else { None };
        if let (Some(branch), true, None, None) =
            (&build_branch, raw.only_if_changed, &raw.branches, &raw.branch_pattern)
        {
            raw.branches = Some(vec![branch.clone()]);
        }
        let Some(submit) = read_submit(&mut raw, build_branch, &context, problems) else { continue };
        let name = raw.name.get_ref().clone();
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
                let message = format!(
                    "a {kind} scheduler takes only name, type, builders, tags, reason, properties, codebases \
                     (and upstream if dependent)"
                );
                problems.add(span.clone(), Some(&context), "type", message);
                continue;
            }
            let upstream = raw.upstream.clone();
            match (kind.as_str(), upstream) {
                ("triggerable", None) if name_valid && builders_valid => {
                    submits.insert(name.clone(), submit);
                    triggerable.push(TriggerableSchedulerDef { name, builders })
                }
                ("triggerable", Some(upstream)) => {
                    problems.add(upstream.span(), Some(&context), "upstream", "only a dependent scheduler has one");
                }
                ("dependent", None) => {
                    problems.add(span.clone(), Some(&context), "upstream", "a dependent scheduler needs an upstream");
                }
                ("dependent", Some(upstream)) if name_valid && builders_valid => {
                    submits.insert(name.clone(), submit);
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
        let on_change_only = raw.only_important || raw.tree_stable_timer.is_some() || raw.cancel_superseded;
        if kind != "on_change" && on_change_only {
            let message = "only_important, tree_stable_timer and cancel_superseded are for on_change schedulers";
            problems.add(span.clone(), Some(&context), "type", message);
            continue;
        }
        if kind != "on_change" && raw.has_filter_keys() && !raw.only_if_changed {
            let message = "change filter keys are for on_change schedulers and timed ones with only_if_changed = true";
            problems.add(span.clone(), Some(&context), "type", message);
            continue;
        }
        if kind == "on_change" && raw.only_if_changed {
            let message = "only_if_changed is for nightly and periodic schedulers";
            problems.add(span.clone(), Some(&context), "only_if_changed", message);
            continue;
        }
        let Some((filter, files)) = raw.take_filter(&context, problems) else { continue };
        let timing = match kind.as_str() {
            "on_change" => {
                if has_fields || raw.cron.is_some() || raw.time_zone.is_some() || raw.interval.is_some() {
                    let message = "an on_change scheduler takes no calendar or interval keys";
                    problems.add(span.clone(), Some(&context), "type", message);
                    continue;
                }
                if name_valid && builders_valid {
                    submits.insert(name.clone(), submit);
                    on_change.push(ChangeSchedulerDef {
                        name,
                        builders,
                        filter,
                        files,
                        only_important: raw.only_important,
                        tree_stable_timer: raw.tree_stable_timer.filter(|s| *s > 0).map(Duration::from_secs),
                        priority: raw.priority,
                        cancel_superseded: raw.cancel_superseded,
                    });
                }
                continue;
            }
            "nightly" => {
                if raw.interval.is_some() {
                    problems.add(span.clone(), Some(&context), "interval", "a nightly scheduler has no interval");
                    None
                } else {
                    read_calendar(&raw, &span, &context, problems).map(Timing::Nightly)
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
            submits.insert(name.clone(), submit);
            schedulers.push(TimedSchedulerDef {
                name,
                builders,
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
    Schedulers { timed: schedulers, on_change, triggerable, dependent: dependents, submits }
}

/// The builders a scheduler names (`builders`: names and glob patterns, checked later) and those it selects by
/// `tags` (every builder that has all of them), and whether the tags selected any.
fn select_builders(
    raw: &mut RawScheduler,
    span: &std::ops::Range<usize>,
    builder_tags: &BTreeMap<String, Vec<String>>,
    context: &str,
    problems: &mut Problems<'_>,
) -> (Spanned<Vec<Spanned<String>>>, bool) {
    let mut builders = raw.builders.take().unwrap_or_else(|| Spanned::new(span.clone(), Vec::new()));
    let Some(tags) = raw.tags.take() else { return (builders, true) };
    if tags.get_ref().is_empty() {
        problems.add(tags.span(), Some(context), "tags", "give at least one tag, or leave tags out");
        return (builders, false);
    }
    let tagged: Vec<&String> = builder_tags
        .iter()
        .filter(|(_, have)| tags.get_ref().iter().all(|tag| have.contains(tag)))
        .map(|(name, _)| name)
        .collect();
    if tagged.is_empty() {
        let message = format!("no builder has all the tags {}", tags.get_ref().join(", "));
        problems.add(tags.span(), Some(context), "tags", message);
        return (builders, false);
    }
    for name in tagged {
        if !builders.get_ref().iter().any(|listed| listed.get_ref() == name) {
            builders.get_mut().push(Spanned::new(tags.span(), name.clone()));
        }
    }
    (builders, true)
}

/// What every scheduler kind adds to its buildsets: `reason`, `properties`, and the source stamps of `codebases`
/// (or of the one `branch` a timed scheduler builds). `None` when one of them is invalid (reported).
fn read_submit(
    raw: &mut RawScheduler,
    build_branch: Option<String>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<SubmitDef> {
    let properties = super::parse::builder_properties(std::mem::take(&mut raw.properties), context, problems);
    let codebases = match (build_branch, raw.codebases.take()) {
        (Some(_), Some(_)) => {
            let message = "give the branch to build in `branch` or in `codebases`, not both";
            problems.add(raw.name.span(), Some(context), "codebases", message);
            return None;
        }
        (Some(branch), None) => vec![CodebaseDef {
            codebase: String::new(),
            repository: String::new(),
            branch: Some(branch),
            revision: None,
        }],
        (None, codebases) => codebases
            .unwrap_or_default()
            .into_iter()
            .map(|(codebase, c)| CodebaseDef {
                codebase,
                repository: c.repository,
                branch: c.branch,
                revision: c.revision,
            })
            .collect(),
    };
    Some(SubmitDef { reason: raw.reason.take(), properties: properties?, codebases })
}

/// A nightly scheduler's calendar, from `cron` or the calendar fields, in `time_zone`: every bad field is
/// reported at its own line and key, and a calendar that never fires (the 30th of February) is refused.
fn read_calendar(
    raw: &RawScheduler,
    span: &std::ops::Range<usize>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<Calendar> {
    let mut valid = true;
    let time_zone = match &raw.time_zone {
        Some(zone) => {
            if let Err(e) = Calendar::check_time_zone(zone.get_ref()) {
                problems.add(zone.span(), Some(context), "time_zone", e.to_string());
                valid = false;
            }
            zone.get_ref().as_str()
        }
        None => "UTC",
    };
    let fields = [
        ("minute", &raw.minute),
        ("hour", &raw.hour),
        ("day_of_month", &raw.day_of_month),
        ("month", &raw.month),
        ("day_of_week", &raw.day_of_week),
    ];
    let has_fields = fields.iter().any(|(_, value)| value.is_some());
    let (calendar, key, key_span) = match &raw.cron {
        Some(cron) if has_fields => {
            let message = "give either cron or the calendar fields, not both";
            problems.add(cron.span(), Some(context), "cron", message);
            return None;
        }
        Some(cron) => match Calendar::from_cron(cron.get_ref(), time_zone) {
            Ok(calendar) => (calendar, "cron", cron.span()),
            Err(CalendarError::TimeZone { .. }) => return None,
            Err(e) => {
                problems.add(cron.span(), Some(context), "cron", e.to_string());
                return None;
            }
        },
        None => {
            for (key, value) in &fields {
                let Some(value) = value else { continue };
                if let Some(Err(e)) = Calendar::check_field(key, &value.get_ref().0) {
                    let message = match e {
                        CalendarError::Field { text, reason, .. } => format!("'{text}': {reason}"),
                        other => other.to_string(),
                    };
                    problems.add(value.span(), Some(context), key, message);
                    valid = false;
                }
            }
            if !valid {
                return None;
            }
            let defaults = CalendarFields::default();
            let field = |value: &Option<Spanned<FieldValue>>, default: &String| {
                value.as_ref().map_or_else(|| default.clone(), |v| v.get_ref().0.clone())
            };
            let texts = CalendarFields {
                minute: field(&raw.minute, &defaults.minute),
                hour: field(&raw.hour, &defaults.hour),
                day_of_month: field(&raw.day_of_month, &defaults.day_of_month),
                month: field(&raw.month, &defaults.month),
                day_of_week: field(&raw.day_of_week, &defaults.day_of_week),
            };
            let calendar = match Calendar::from_fields(&texts, time_zone) {
                Ok(calendar) => calendar,
                Err(e) => {
                    problems.add(span.clone(), Some(context), "calendar", e.to_string());
                    return None;
                }
            };
            // A calendar that never fires is a day of month no month it names has.
            let (key, at) = match (&raw.day_of_month, &raw.month) {
                (Some(day), _) => ("day_of_month", day.span()),
                (None, Some(month)) => ("month", month.span()),
                (None, None) => ("calendar", span.clone()),
            };
            (calendar, key, at)
        }
    };
    if !valid {
        return None;
    }
    if !calendar.ever_fires() {
        let message = "this calendar never fires: no month it names has that day (e.g. the 30th of February)";
        problems.add(key_span, Some(context), key, message);
        return None;
    }
    Some(calendar)
}
