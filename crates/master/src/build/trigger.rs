//! The `trigger` step: a buildset per named triggerable scheduler, child of this build, with this build's source
//! stamps (with the revisions it checked out, `got_revision`) and the chosen properties; then, if asked, waiting
//! for them (Buildbot's `Trigger`).
//!
//! The triggered requests inherit the priority of the build's request. Without waiting the step ends SUCCESS once
//! everything is submitted. With waiting it ends with the worst result of the triggered buildsets (each the worst of
//! its builds), and stopping the build while it waits cancels the triggered requests (a running one has its build
//! stopped), as Buildbot does. When the master stops while the step waits, the requests not started yet are
//! cancelled and the step ends RETRY: the build runs again, and triggers again, after the restart (a clean stop
//! would otherwise wait forever for builds that cannot start).

use tokio_util::sync::CancellationToken;

use serde_json::Value;

use super::logs::StepLogs;
use super::properties::BuildProperties;
use super::remote::RemoteOutcome;
use super::summary;
use super::BuildJob;
use crate::config::TriggerStep;
use crate::events::Event;
use crate::interpolate::{self, Lookup};
use crate::model::{NewBuildset, Property, SourceStamp, Submitted};
use crate::results::{name as result_name, worst_status, CANCELLED, EXCEPTION, RETRY, SUCCESS};
use crate::store::StoreError;

/// The source of the properties a trigger step gives (Buildbot's).
const SOURCE: &str = "Trigger";
/// What a stopped trigger step says (Buildbot's).
const INTERRUPTED: &str = "interrupted";

pub(super) async fn run(
    job: &BuildJob,
    stepid: i64,
    step: &TriggerStep,
    props: &BuildProperties,
    logs: &mut StepLogs<'_>,
    stop: &CancellationToken,
) -> Result<RemoteOutcome, StoreError> {
    let store = &job.store;
    // What the step says (Buildbot's `Trigger` summaries): what it triggered and how those ended, or
    // `interrupted` when it was stopped.
    let mut names: Vec<String> = Vec::new();
    let mut finished: Vec<i32> = Vec::new();
    let outcome = |result, summary: Option<String>| Ok(RemoteOutcome { result, summary, ..RemoteOutcome::default() });
    let said = |names: &[String], results: &[i32]| (!names.is_empty()).then(|| summary::triggered(names, results));
    let sourcestamps = if step.always_use_latest {
        Vec::new()
    } else if step.update_sourcestamp {
        checked_out(props)
    } else {
        props.sourcestamps().to_vec()
    };
    let mut properties = Vec::new();
    for name in &step.copy_properties {
        match props.property(name) {
            Some(value) => {
                properties.push(Property { name: name.clone(), value: value.clone(), source: SOURCE.into() })
            }
            None => logs.header(&format!("no property '{name}' to copy\n")).await?,
        }
    }
    for (name, value) in &step.set_properties {
        let value = match value {
            Value::String(template) => Value::String(interpolate::render(template, props)),
            other => other.clone(),
        };
        properties.retain(|p: &Property| &p.name != name);
        properties.push(Property { name: name.clone(), value, source: SOURCE.into() });
    }

    // As in Buildbot, the triggered requests inherit the priority of this build's request; they build its changes.
    let request = store.build_request(job.brid).await?;
    let priority = request.as_ref().map(|request| request.priority);
    let changeids = match &request {
        Some(request) => store.buildset_change_ids(request.buildsetid).await?,
        None => Vec::new(),
    };

    // Subscribed before submitting, so that no completion goes by unseen.
    let mut completed = store.events().subscribe();
    let mut result = SUCCESS;
    let mut triggered: Vec<Submitted> = Vec::new();
    for scheduler in &step.schedulers {
        let buildset = NewBuildset {
            reason: format!("The Triggerable scheduler named '{scheduler}' triggered this build"),
            parent_buildid: Some(job.buildid),
            waited_for: step.wait_for_finish,
            properties: properties.clone(),
            sourcestamps: sourcestamps.clone(),
            changeids: changeids.clone(),
            priority,
            ..NewBuildset::default()
        };
        match job.master.trigger(scheduler, buildset).await {
            Ok(submitted) => {
                log_submitted(job, scheduler, &submitted, logs).await?;
                triggered.push(submitted);
                names.push(scheduler.clone());
            }
            Err(e) => {
                logs.header(&format!("could not trigger '{scheduler}': {e}\n")).await?;
                result = EXCEPTION;
            }
        }
    }
    if let Some(words) = said(&names, &finished) {
        store.set_step_state(stepid, &words).await?;
    }
    if !step.wait_for_finish {
        return outcome(result, said(&names, &finished));
    }

    let mut waiting: Vec<i64> = triggered.iter().map(|s| s.buildsetid).collect();
    loop {
        let mut still = Vec::new();
        for bsid in waiting {
            match store.buildset(bsid).await? {
                Some(buildset) if buildset.complete => {
                    let ended = buildset.results.unwrap_or(EXCEPTION);
                    logs.header(&format!("buildset {bsid} ended {}\n", result_name(ended).unwrap_or("?"))).await?;
                    result = worst_status(result, ended);
                    finished.push(ended);
                }
                _ => still.push(bsid),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return outcome(result, said(&names, &finished));
        }
        tokio::select! {
            biased;
            // No new build starts any more: rather than wait for triggered builds that may never run (a clean stop
            // waits for this build), the build ends RETRY and runs again — and triggers again — after the restart.
            () = job.master.stopping().cancelled() => {
                logs.header("the master is stopping: this build runs again after its restart\n").await?;
                for (_, brid) in triggered.iter().flat_map(|s| &s.requests) {
                    let queued = store.build_request(*brid).await?.is_some_and(|r| r.claimed_by_masterid.is_none());
                    if queued {
                        if let Err(e) = job.master.cancel_request(*brid).await {
                            logs.header(&format!("could not cancel build request {brid}: {e}\n")).await?;
                        }
                    }
                }
                return outcome(RETRY, Some(INTERRUPTED.to_string()));
            }
            () = stop.cancelled() => {
                logs.header("stopping: cancelling the triggered build requests\n").await?;
                for (_, brid) in triggered.iter().flat_map(|s| &s.requests) {
                    if let Err(e) = job.master.cancel_request(*brid).await {
                        logs.header(&format!("could not cancel build request {brid}: {e}\n")).await?;
                    }
                }
                return outcome(CANCELLED, Some(INTERRUPTED.to_string()));
            }
            received = completed.recv_where(|event| matches!(event, Event::BuildsetCompleted { .. })) => {
                // A completion (of any buildset) or missed events: look at the store again.
                if let Ok(None) = received {
                    return outcome(EXCEPTION, said(&names, &finished));
                }
            }
        }
    }
}

/// Lists a triggered buildset's requests in the step's log, with their web addresses.
async fn log_submitted(
    job: &BuildJob,
    scheduler: &str,
    submitted: &Submitted,
    logs: &mut StepLogs<'_>,
) -> Result<(), StoreError> {
    let mut text = format!("triggered '{scheduler}': buildset {}\n", submitted.buildsetid);
    for (builderid, brid) in &submitted.requests {
        let builder = job.master.builder_name(*builderid).unwrap_or_else(|| "?".into());
        text.push_str(&format!(
            "  build request {brid} on builder '{builder}': {}#/buildrequests/{brid}\n",
            job.master.url()
        ));
    }
    logs.header(&text).await
}

/// The build's source stamps with the revisions its `git` steps checked out (`got_revision`: a string for one
/// codebase, an object by codebase for several), as Buildbot's `updateSourceStamp` gives them.
fn checked_out(props: &BuildProperties) -> Vec<SourceStamp> {
    let got = props.property("got_revision");
    props
        .sourcestamps()
        .iter()
        .map(|ss| {
            let revision = match got {
                Some(Value::String(revision)) => Some(revision.as_str()),
                Some(Value::Object(by_codebase)) => by_codebase.get(&ss.codebase).and_then(Value::as_str),
                _ => None,
            };
            SourceStamp { revision: revision.map(str::to_owned).or_else(|| ss.revision.clone()), ..ss.clone() }
        })
        .collect()
}
