//! `type = "trigger"`: submits a buildset to each of the named triggerable schedulers, with this build's source
//! stamps and chosen properties, and waits for them or not (Buildbot's `Trigger` step).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::StepOptions;
use crate::config::error::Problems;
use crate::config::parse::read;

/// `type = "trigger"`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerStep {
    pub options: StepOptions,
    /// The triggerable schedulers to submit to (checked against the `[[scheduler]]` tables once all are read).
    pub schedulers: Vec<String>,
    /// Where `schedulers` is written, for the check's error.
    pub schedulers_span: Range<usize>,
    /// Wait for the triggered builds; the step then ends with the worst of their results.
    pub wait_for_finish: bool,
    /// Properties the triggered builds get (source "Trigger").
    pub set_properties: BTreeMap<String, serde_json::Value>,
    /// Properties of this build the triggered builds get too (source "Trigger").
    pub copy_properties: Vec<String>,
    /// Trigger without source stamps (the triggered builds build the latest sources).
    pub always_use_latest: bool,
    /// Give the triggered builds the revision this build checked out (`got_revision`) rather than the one it was
    /// asked for (Buildbot's `updateSourceStamp`).
    pub update_sourcestamp: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    schedulers: Spanned<Vec<String>>,
    #[serde(default)]
    wait_for_finish: bool,
    #[serde(default)]
    set_properties: BTreeMap<String, toml::Value>,
    #[serde(default)]
    copy_properties: Vec<String>,
    #[serde(default)]
    always_use_latest: bool,
    update_sourcestamp: Option<bool>,
}

pub(super) fn read_trigger(
    table: Spanned<DeValue<'_>>,
    options: StepOptions,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<TriggerStep> {
    let raw: RawTrigger = read(table, problems, Some(context), "step")?;
    if raw.schedulers.get_ref().is_empty() {
        problems.add(raw.schedulers.span(), Some(context), "schedulers", "needs at least one triggerable scheduler");
        return None;
    }
    let mut valid = true;
    for (name, value) in &raw.set_properties {
        if let Err(e) = value.as_str().map_or(Ok(()), crate::interpolate::check) {
            problems.add(raw.schedulers.span(), Some(context), "set_properties", format!("property '{name}': {e}"));
            valid = false;
        }
    }
    if let (true, Some(true)) = (raw.always_use_latest, raw.update_sourcestamp) {
        let message = "always_use_latest sends no source stamp to update; leave update_sourcestamp out";
        problems.add(raw.schedulers.span(), Some(context), "update_sourcestamp", message);
        valid = false;
    }
    valid.then_some(())?;
    let set_properties = raw
        .set_properties
        .into_iter()
        .map(|(name, value)| (name, serde_json::to_value(value).unwrap_or(serde_json::Value::Null)))
        .collect();
    Some(TriggerStep {
        options,
        schedulers_span: raw.schedulers.span(),
        schedulers: raw.schedulers.into_inner(),
        wait_for_finish: raw.wait_for_finish,
        set_properties,
        copy_properties: raw.copy_properties,
        always_use_latest: raw.always_use_latest,
        update_sourcestamp: raw.update_sourcestamp.unwrap_or(true),
    })
}

/// Checks that every trigger step names only triggerable schedulers (`triggerable`); `builder` and `step` name the
/// step in the error.
pub(in crate::config) fn check_trigger_targets(
    step: &TriggerStep,
    context: &str,
    triggerable: &std::collections::BTreeSet<String>,
    problems: &mut Problems<'_>,
) {
    for name in &step.schedulers {
        if !triggerable.contains(name) {
            let message =
                format!("'{name}' is not a triggerable scheduler ([[scheduler]] with type = \"triggerable\")");
            problems.add(step.schedulers_span.clone(), Some(context), "schedulers", message);
        }
    }
}
