//! The steps of a builder (`[[builder.step]]`): the options every step has, and one module per step type.
//!
//! Adding a step type is one module here, one [`StepDef`] variant and one arm in [`read_step`].

mod git;
mod shell;
mod transfer;
mod trigger;

use std::collections::BTreeSet;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::Problems;
use super::locks::{check_lock_uses, RawLockUse};
use super::parse::{read, Defaults};
use super::LockUse;

pub use git::{GitMethod, GitMode, GitStep};
pub use shell::{ShellCommand, ShellStep};
pub use transfer::{DownloadStep, UploadStep};
pub(super) use trigger::check_trigger_targets;
pub use trigger::TriggerStep;

/// One step of a builder, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum StepDef {
    /// `type = "shell"`: runs a command on the worker.
    Shell(ShellStep),
    /// `type = "upload"` / `"upload_directory"`: sends a file or a directory tree from the worker to the master.
    Upload(UploadStep),
    /// `type = "download"`: sends a file from the master to the worker.
    Download(DownloadStep),
    /// `type = "trigger"`: starts builds through triggerable schedulers.
    Trigger(TriggerStep),
    /// `type = "git"`: checks out the build's source stamp on the worker.
    Git(GitStep),
}

impl StepDef {
    /// The options every step has.
    pub fn options(&self) -> &StepOptions {
        match self {
            StepDef::Shell(step) => &step.options,
            StepDef::Upload(step) => &step.options,
            StepDef::Download(step) => &step.options,
            StepDef::Trigger(step) => &step.options,
            StepDef::Git(step) => &step.options,
        }
    }

    /// The step's name, unique within its builder.
    pub fn name(&self) -> &str {
        &self.options().name
    }

    fn options_mut(&mut self) -> &mut StepOptions {
        match self {
            StepDef::Shell(step) => &mut step.options,
            StepDef::Upload(step) => &mut step.options,
            StepDef::Download(step) => &mut step.options,
            StepDef::Trigger(step) => &mut step.options,
            StepDef::Git(step) => &mut step.options,
        }
    }

    /// The name a step gets when the config gives none (before it is made unique).
    fn default_name(&self) -> String {
        match self {
            StepDef::Shell(step) => step.command.program_name(),
            StepDef::Upload(step) => format!("upload {}", step.workersrc),
            StepDef::Download(step) => format!("download {}", step.workerdest),
            StepDef::Trigger(step) => format!("trigger {}", step.schedulers.join(", ")),
            StepDef::Git(_) => "git".to_owned(),
        }
    }
}

/// What every step has, whatever its type: its name and how its result counts in the build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOptions {
    /// The step's name, unique within its builder.
    pub name: String,
    /// A failure of this step ends the build (only `always_run` steps still run).
    pub halt_on_failure: bool,
    /// A failure of this step makes the build fail.
    pub flunk_on_failure: bool,
    /// A failure of this step makes the build end with warnings.
    pub warn_on_failure: bool,
    /// The step runs even after an earlier step ended the build.
    pub always_run: bool,
    /// The locks the step holds while it runs.
    pub locks: Vec<LockUse>,
}

/// The keys every step type accepts, read before the table goes to its type.
const COMMON_KEYS: [&str; 7] =
    ["name", "type", "halt_on_failure", "flunk_on_failure", "warn_on_failure", "always_run", "locks"];

/// The step types, for error messages.
const STEP_TYPES: &str = "shell, upload, upload_directory, download, git, trigger";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepOptions {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    step_type: Option<Spanned<String>>,
    #[serde(default)]
    halt_on_failure: bool,
    #[serde(default = "yes")]
    flunk_on_failure: bool,
    #[serde(default)]
    warn_on_failure: bool,
    #[serde(default)]
    always_run: bool,
    locks: Option<Vec<Spanned<RawLockUse>>>,
}

fn yes() -> bool {
    true
}

/// A step's options and its type's own part, before the step gets its name.
struct ReadStep {
    name: Option<Spanned<String>>,
    step: StepDef,
}

/// Reads the `[[builder.step]]` tables of one builder and names the steps: an explicit name must be unique; a
/// missing one is derived from the step (a shell step's program) and made unique with `_2`, `_3`…
pub(super) fn read_steps(
    steps: Vec<Spanned<DeValue<'_>>>,
    builder: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Vec<StepDef> {
    let mut read_steps = Vec::new();
    for (index, value) in steps.into_iter().enumerate() {
        let context = match value.get_ref().get("name").and_then(|name| name.get_ref().as_str()) {
            Some(name) => format!("{builder}, step '{name}'"),
            None => format!("{builder}, step #{}", index + 1),
        };
        if let Some(step) = read_step(value, &context, defaults, problems) {
            read_steps.push(step);
        }
    }

    let mut taken = BTreeSet::new();
    for step in &read_steps {
        if let Some(name) = &step.name {
            let context = format!("{builder}, step '{}'", name.get_ref());
            if name.get_ref().is_empty() {
                problems.add(name.span(), Some(&context), "name", "a step name cannot be empty");
            } else if !taken.insert(name.get_ref().clone()) {
                problems.add(name.span(), Some(&context), "name", "another step of this builder has this name");
            }
        }
    }
    let mut named = Vec::with_capacity(read_steps.len());
    for ReadStep { name, mut step } in read_steps {
        let name = match name {
            Some(name) => name.into_inner(),
            None => {
                let base = step.default_name();
                let unique = (1..)
                    .map(|n| if n == 1 { base.clone() } else { format!("{base}_{n}") })
                    .find(|candidate| !taken.contains(candidate))
                    .unwrap_or(base);
                taken.insert(unique.clone());
                unique
            }
        };
        step.options_mut().name = name;
        named.push(step);
    }
    named
}

/// Reads one step table: its common options, then the rest by its type.
fn read_step(
    value: Spanned<DeValue<'_>>,
    context: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Option<ReadStep> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        problems.add(span, Some(context), "step", "expected a table ([[builder.step]])");
        return None;
    };
    let (common, own): (DeTable<'_>, DeTable<'_>) =
        table.into_iter().partition(|(key, _)| COMMON_KEYS.contains(&key.get_ref().as_ref()));
    let common: RawStepOptions =
        read(Spanned::new(span.clone(), DeValue::Table(common)), problems, Some(context), "step")?;
    let options = StepOptions {
        name: String::new(),
        halt_on_failure: common.halt_on_failure,
        flunk_on_failure: common.flunk_on_failure,
        warn_on_failure: common.warn_on_failure,
        always_run: common.always_run,
        locks: check_lock_uses(common.locks, defaults.locks, context, problems),
    };
    let own = Spanned::new(span, DeValue::Table(own));
    let step_type = common.step_type;
    problems
        .also_valid(&COMMON_KEYS, |problems| read_own(own, step_type.as_ref(), options, context, defaults, problems))
        .map(|step| ReadStep { name: common.name, step })
}

/// Reads the keys of a step's own type (all but [`COMMON_KEYS`]).
fn read_own(
    own: Spanned<DeValue<'_>>,
    step_type: Option<&Spanned<String>>,
    options: StepOptions,
    context: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Option<StepDef> {
    let step = match step_type.map(|step_type| step_type.get_ref().as_str()) {
        None | Some("shell") => StepDef::Shell(shell::read_shell(own, options, context, defaults, problems)?),
        Some("upload") => StepDef::Upload(transfer::read_upload(own, options, false, context, defaults, problems)?),
        Some("upload_directory") => {
            StepDef::Upload(transfer::read_upload(own, options, true, context, defaults, problems)?)
        }
        Some("download") => StepDef::Download(transfer::read_download(own, options, context, defaults, problems)?),
        Some("trigger") => StepDef::Trigger(trigger::read_trigger(own, options, context, problems)?),
        Some("git") => StepDef::Git(git::read_git(own, options, context, defaults, problems)?),
        Some(other) => {
            let span = step_type.map_or(0..0, Spanned::span);
            problems.add(span, Some(context), "type", format!("unknown step type '{other}' (known: {STEP_TYPES})"));
            return None;
        }
    };
    Some(step)
}
