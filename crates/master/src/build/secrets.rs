//! The secrets a build needs: every `%(secret:NAME)s` its steps send to the worker (commands, environments,
//! workdirs, transfer paths, a git step's repository URL and branch) and its builder's properties name. The build
//! fetches them all when it starts, so that its redactor knows every value before any line is stored; a step
//! that needs one that could not be had fails, saying which and why, and runs nothing.
//!
//! A build of a pull request from another repository (a fork: its change's `fork` property, set by the change
//! hook) asks no provider: its code is anyone's, and whatever it can read it can send away. Every secret it
//! names is withheld, so the steps that name one fail, unless its builder says `fork_secrets = true`.
//! (GitHub Actions does the same for `pull_request` workflows from forks.)

use serde_json::Value;

use crate::config::{BuilderDef, ShellCommand, StepDef};
use crate::interpolate::secret_names;
use crate::secrets::SecretError;
use crate::store::{Store, StoreError};

use super::properties::BuildProperties;

/// The templates of a step whose text goes to the worker.
fn templates(step: &StepDef) -> Vec<String> {
    match step {
        StepDef::Shell(shell) => {
            let mut texts = match &shell.command {
                ShellCommand::Shell(script) => vec![script.clone()],
                ShellCommand::Argv(words) => words.clone(),
            };
            texts.extend(shell.env.values().cloned());
            texts.push(shell.workdir.clone());
            texts
        }
        StepDef::Git(git) => {
            let mut texts = vec![git.repourl.clone(), git.branch.clone(), git.workdir.clone()];
            texts.extend(git.env.values().cloned());
            texts
        }
        StepDef::Upload(upload) => {
            vec![upload.workdir.clone(), upload.workersrc.clone(), upload.masterdest.to_string_lossy().into_owned()]
        }
        StepDef::Download(download) => vec![
            download.workdir.clone(),
            download.workerdest.clone(),
            download.mastersrc.to_string_lossy().into_owned(),
        ],
        // What a trigger step passes on is stored with the triggered buildsets: it never renders a secret.
        StepDef::Trigger(_) => Vec::new(),
    }
}

/// The secrets step `step` uses, each once.
pub(super) fn of_step(step: &StepDef) -> Vec<String> {
    let mut names = Vec::new();
    for text in templates(step) {
        for name in secret_names(&text) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Every secret a build of `builder` may use: its steps' and its string properties'.
pub(super) fn of_builder(builder: &BuilderDef) -> Vec<String> {
    let mut names = Vec::new();
    let properties = builder.properties.values().filter_map(|v| v.as_str()).flat_map(secret_names);
    for name in builder.steps.iter().flat_map(of_step).chain(properties) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Why `step` cannot run: the secrets it uses that the build could not fetch. `None` when it has them all.
pub(super) fn missing<'p>(step: &StepDef, props: &'p BuildProperties) -> Option<Vec<&'p SecretError>> {
    let problems: Vec<&SecretError> = of_step(step).iter().filter_map(|name| props.secrets().error(name)).collect();
    (!problems.is_empty()).then_some(problems)
}

/// Why a build of request `brid` on `builder` gets no secrets: one of its changes is a pull request from a fork
/// and the builder does not opt in (`fork_secrets`). `None`: it gets them. A triggered build has the changes of
/// the build that triggered it, so it is withheld them too.
pub(super) async fn withheld(store: &Store, builder: &BuilderDef, brid: i64) -> Result<Option<String>, StoreError> {
    if builder.fork_secrets {
        return Ok(None);
    }
    let Some(request) = store.build_request(brid).await? else { return Ok(None) };
    for id in store.buildset_change_ids(request.buildsetid).await? {
        let Some(change) = store.change(id).await? else { continue };
        if change.properties.get("fork") != Some(&Value::Bool(true)) {
            continue;
        }
        let number = change.properties.get("pr_number").map(Value::to_string).unwrap_or_else(|| "?".into());
        let head = change.properties.get("head_repository").and_then(Value::as_str).filter(|h| !h.is_empty());
        return Ok(Some(format!(
            "the build is of pull request #{number} from another repository ({}), and builder '{}' gets \
             secrets for those only with fork_secrets = true",
            head.unwrap_or("a deleted fork"),
            builder.name
        )));
    }
    Ok(None)
}
