//! The `trigger` step: a buildset per named triggerable scheduler, child of this build, with this build's source
//! stamps (its buildset's) and the chosen properties; then, if asked, waiting for them (Buildbot's `Trigger`).
//!
//! Without waiting the step ends SUCCESS once everything is submitted. With waiting it ends with the worst result
//! of the triggered buildsets (each the worst of its builds), and stopping the build while it waits cancels the
//! triggered requests (a running one has its build stopped), as Buildbot does. When the master stops while the
//! step waits, the requests not started yet are cancelled and the step ends RETRY: the build runs again, and
//! triggers again, after the restart (a clean stop would otherwise wait forever for builds that cannot start).

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::logs::StepLogs;
use super::remote::RemoteOutcome;
use super::BuildJob;
use crate::config::TriggerStep;
use crate::master::Submitted;
use crate::results::{name as result_name, worst_status, CANCELLED, EXCEPTION, RETRY, SUCCESS};
use crate::store::{NewBuildset, Property, StoreError};

/// The source of the properties a trigger step gives (Buildbot's).
const SOURCE: &str = "Trigger";

pub(super) async fn run(
    job: &BuildJob,
    step: &TriggerStep,
    logs: &mut StepLogs<'_>,
    stop: &CancellationToken,
) -> Result<RemoteOutcome, StoreError> {
    let store = &job.store;
    let outcome = |result| Ok(RemoteOutcome { result, ..RemoteOutcome::default() });
    let build = store.build(job.buildid).await?.ok_or(StoreError::NotFound { what: "build", id: job.buildid })?;
    let brid = build.buildrequestid;
    let request = store.build_request(brid).await?.ok_or(StoreError::NotFound { what: "build request", id: brid })?;
    let sourcestamps =
        if step.always_use_latest { Vec::new() } else { store.buildset_sourcestamps(request.buildsetid).await? };
    let own = store.buildset_properties(request.buildsetid).await?;
    let mut properties = Vec::new();
    for name in &step.copy_properties {
        match own.iter().find(|p| &p.name == name) {
            Some(p) => properties.push(Property { name: name.clone(), value: p.value.clone(), source: SOURCE.into() }),
            None => logs.header(&format!("no property '{name}' to copy\n")).await?,
        }
    }
    for (name, value) in &step.set_properties {
        properties.retain(|p: &Property| &p.name != name);
        properties.push(Property { name: name.clone(), value: value.clone(), source: SOURCE.into() });
    }

    // Subscribed before submitting, so that no completion goes by unseen.
    let mut completed = job.master.subscribe_buildsets();
    let mut result = SUCCESS;
    let mut triggered: Vec<Submitted> = Vec::new();
    for scheduler in &step.schedulers {
        let buildset = NewBuildset {
            reason: format!("The Triggerable scheduler named '{scheduler}' triggered this build"),
            parent_buildid: Some(job.buildid),
            waited_for: step.wait_for_finish,
            properties: properties.clone(),
            sourcestamps: sourcestamps.clone(),
            ..NewBuildset::default()
        };
        match job.master.trigger(scheduler, buildset).await {
            Ok(submitted) => {
                log_submitted(job, scheduler, &submitted, logs).await?;
                triggered.push(submitted);
            }
            Err(e) => {
                logs.header(&format!("could not trigger '{scheduler}': {e}\n")).await?;
                result = EXCEPTION;
            }
        }
    }
    if !step.wait_for_finish {
        return outcome(result);
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
                }
                _ => still.push(bsid),
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return outcome(result);
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
                return outcome(RETRY);
            }
            () = stop.cancelled() => {
                logs.header("stopping: cancelling the triggered build requests\n").await?;
                for (_, brid) in triggered.iter().flat_map(|s| &s.requests) {
                    if let Err(e) = job.master.cancel_request(*brid).await {
                        logs.header(&format!("could not cancel build request {brid}: {e}\n")).await?;
                    }
                }
                return outcome(CANCELLED);
            }
            received = completed.recv() => {
                // A completion (of any buildset) or missed ones: look at the store again.
                if let Err(RecvError::Closed) = received {
                    return outcome(EXCEPTION);
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
    let config = job.master.config();
    let mut text = format!("triggered '{scheduler}': buildset {}\n", submitted.buildsetid);
    for (builderid, brid) in &submitted.requests {
        let builder = config.builders.iter().find(|b| job.master.builder_id(&b.name) == Some(*builderid));
        let builder = builder.map_or("?", |b| b.name.as_str());
        text.push_str(&format!(
            "  build request {brid} on builder '{builder}': {}#/buildrequests/{brid}\n",
            config.url
        ));
    }
    logs.header(&text).await
}
