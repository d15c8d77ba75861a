//! The dependent scheduler (Buildbot's `Dependent`): when a buildset of its upstream scheduler completes SUCCESS or
//! WARNINGS, it submits a buildset of the same source stamps for its own builders.
//!
//! It follows the completions the master announces, and remembers in the store's object state (name
//! `scheduler:<name>`, key `handled`) the completion time of the last upstream buildset it handled and the ids
//! handled at that second. At start it first takes up the upstream buildsets completed since then (those a crash
//! left unhandled), so none is missed; a crash between submitting and remembering submits that one again (at
//! least once). Its very first start takes up nothing from before it existed.

use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::state_name;
use super::timed::Clock;
use crate::config::DependentSchedulerDef;
use crate::events::{Event, Subscription};
use crate::results::{SUCCESS, WARNINGS};
use crate::store::{Buildset, FilterValue, ListQuery, NewBuildset, Op, Store, StoreError};

/// The object-state key of what the scheduler handled.
pub const HANDLED_KEY: &str = "handled";

/// The upstream completions handled: through second `complete_at`, and at that second the buildsets `bsids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Handled {
    complete_at: i64,
    bsids: Vec<i64>,
}

impl Handled {
    fn covers(&self, buildset: &Buildset) -> bool {
        let at = buildset.complete_at.unwrap_or_default();
        at < self.complete_at || (at == self.complete_at && self.bsids.contains(&buildset.id))
    }

    fn add(&mut self, buildset: &Buildset) {
        let at = buildset.complete_at.unwrap_or_default();
        if at > self.complete_at {
            *self = Handled { complete_at: at, bsids: Vec::new() };
        }
        self.bsids.push(buildset.id);
    }
}

/// Runs one dependent scheduler until `stop`: `submit` gets each downstream buildset (reason and source stamps).
pub async fn run<F, Fut>(
    def: DependentSchedulerDef,
    store: Store,
    mut events: Subscription,
    stop: CancellationToken,
    mut submit: F,
) where
    F: FnMut(NewBuildset) -> Fut,
    Fut: Future<Output = ()>,
{
    let state = state_name(&def.name);
    let stored = match store.get_state(&state, HANDLED_KEY).await {
        Ok(value) => value.and_then(|value| {
            serde_json::from_value::<Handled>(value)
                .map_err(|e| tracing::error!(scheduler = %def.name, error = %e, "unreadable state; starting afresh"))
                .ok()
        }),
        Err(e) => {
            tracing::error!(scheduler = %def.name, error = %e, "could not read the state; starting afresh");
            None
        }
    };
    let first_start = stored.is_none();
    let mut handled = stored.unwrap_or(Handled { complete_at: Clock::System.now().timestamp(), bsids: Vec::new() });
    match completed_since(&store, &def.upstream, handled.complete_at).await {
        // The first start takes up nothing from before it: what completed this very second counts as handled.
        Ok(missed) if first_start => {
            for buildset in &missed {
                handled.add(buildset);
            }
            save(&def, &store, &state, &handled).await;
        }
        Ok(missed) => {
            for buildset in missed {
                handle(&def, &store, &state, &mut handled, &buildset, &mut submit).await;
            }
        }
        Err(e) => tracing::error!(scheduler = %def.name, error = %e, "could not look for missed upstream buildsets"),
    }
    loop {
        let done = tokio::select! {
            () = stop.cancelled() => return,
            done = events.recv_where(|event| matches!(event, Event::BuildsetCompleted { .. })) => done,
        };
        let bsid = match done {
            Ok(Some(published)) => match published.event {
                Event::BuildsetCompleted { bsid, .. } => bsid,
                _ => continue,
            },
            Err(lagged) => {
                // Some completions went by unseen: the store has them.
                tracing::warn!(scheduler = %def.name, missed = lagged.missed, "fell behind the events; re-reading");
                match completed_since(&store, &def.upstream, handled.complete_at).await {
                    Ok(missed) => {
                        for buildset in missed {
                            handle(&def, &store, &state, &mut handled, &buildset, &mut submit).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(scheduler = %def.name, error = %e, "could not re-read upstream buildsets")
                    }
                }
                continue;
            }
            Ok(None) => return,
        };
        match store.buildset(bsid).await {
            Ok(Some(buildset)) => handle(&def, &store, &state, &mut handled, &buildset, &mut submit).await,
            Ok(None) => {}
            Err(e) => tracing::error!(scheduler = %def.name, buildset = bsid, error = %e, "could not read it"),
        }
    }
}

/// The upstream's buildsets completed at or after `since`, in order of completion.
async fn completed_since(store: &Store, upstream: &str, since: i64) -> Result<Vec<Buildset>, StoreError> {
    let mut query = ListQuery::<Buildset>::new();
    let invalid = |source| StoreError::Query { op: format!("list buildsets of {upstream}"), source };
    query.filter("scheduler", Op::Eq, vec![FilterValue::Text(upstream.to_string())]).map_err(invalid)?;
    query.filter("complete", Op::Eq, vec![FilterValue::Bool(true)]).map_err(invalid)?;
    query.filter("complete_at", Op::Ge, vec![FilterValue::Int(since)]).map_err(invalid)?;
    query.order_by("complete_at", false).map_err(invalid)?.order_by("bsid", false).map_err(invalid)?;
    Ok(store.list(&query).await?.items)
}

/// Submits the downstream buildset of `buildset` if it is a successful one of the upstream not handled yet, and
/// remembers it.
async fn handle<F, Fut>(
    def: &DependentSchedulerDef,
    store: &Store,
    state: &str,
    handled: &mut Handled,
    buildset: &Buildset,
    submit: &mut F,
) where
    F: FnMut(NewBuildset) -> Fut,
    Fut: Future<Output = ()>,
{
    if buildset.scheduler.as_deref() != Some(def.upstream.as_str()) || !buildset.complete || handled.covers(buildset) {
        return;
    }
    match downstream(def, store, buildset).await {
        Ok(Some(next)) => submit(next).await,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(scheduler = %def.name, buildset = buildset.id, error = %e, "could not read it");
            return;
        }
    }
    handled.add(buildset);
    save(def, store, state, handled).await;
}

async fn save(def: &DependentSchedulerDef, store: &Store, state: &str, handled: &Handled) {
    let value = serde_json::to_value(handled).unwrap_or_default();
    if let Err(e) = store.set_state(state, HANDLED_KEY, &value).await {
        tracing::error!(scheduler = %def.name, error = %e, "could not store what it handled");
    }
}

/// The buildset to submit after `upstream` completed, if it succeeded.
async fn downstream(
    def: &DependentSchedulerDef,
    store: &Store,
    upstream: &Buildset,
) -> Result<Option<NewBuildset>, StoreError> {
    if upstream.results != Some(SUCCESS) && upstream.results != Some(WARNINGS) {
        return Ok(None);
    }
    Ok(Some(NewBuildset {
        reason: format!(
            "The Dependent scheduler named '{}' triggered this build after buildset {} of '{}'",
            def.name, upstream.id, def.upstream
        ),
        sourcestamps: store.buildset_sourcestamps(upstream.id).await?,
        changeids: store.buildset_change_ids(upstream.id).await?,
        ..NewBuildset::default()
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::results::FAILURE;
    use crate::store::testing::temp_store;
    use crate::store::SourceStamp;

    /// Adds a buildset of `scheduler` for revision `revision`; returns its id and its request's.
    async fn upstream(store: &Store, scheduler: &str, revision: &str) -> (i64, i64) {
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let ss = SourceStamp { revision: Some(revision.into()), ..SourceStamp::default() };
        let new = NewBuildset {
            reason: "r".into(),
            scheduler: Some(scheduler.into()),
            builderids: vec![builder],
            sourcestamps: vec![ss],
            ..NewBuildset::default()
        };
        let (bsid, brids) = store.add_buildset(&new).await.expect("buildset");
        (bsid, brids[0])
    }

    fn def() -> DependentSchedulerDef {
        DependentSchedulerDef { name: "down".into(), builders: vec!["b".into()], upstream: "up".into() }
    }

    /// Runs the scheduler on `store`, completing the `live` requests (which the store announces on its bus); the
    /// last must be a success of the upstream for revision `live-last`: once it is submitted, everything before
    /// was handled. Returns the revisions submitted.
    async fn drive(store: &Store, live: Vec<(i64, i64, i32)>) -> Vec<String> {
        let rx = store.events().subscribe();
        let stop = CancellationToken::new();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let submitted = Arc::new(Mutex::new(Vec::new()));
        let sink = submitted.clone();
        let task = tokio::spawn(run(def(), store.clone(), rx, stop.clone(), move |buildset| {
            let (sink, seen_tx) = (sink.clone(), seen_tx.clone());
            async move {
                let revision = buildset.sourcestamps[0].revision.clone().unwrap_or_default();
                sink.lock().expect("lock").push(revision.clone());
                let _ = seen_tx.send(revision);
            }
        }));
        let wait_for_last = !live.is_empty();
        for (_, brid, results) in live {
            store.complete_requests(&[brid], results).await.expect("complete");
        }
        while wait_for_last && seen_rx.recv().await.expect("scheduler running") != "live-last" {}
        // Without live completions the scheduler still does its start (it checks `stop` only after).
        stop.cancel();
        task.await.expect("scheduler task");
        let submitted = submitted.lock().expect("lock").clone();
        submitted
    }

    #[tokio::test]
    async fn successes_of_the_upstream_only_and_what_completed_while_down_is_taken_up_once() {
        let (store, _dir) = temp_store().await;
        // Before the scheduler ever ran: not taken up.
        let (_, old) = upstream(&store, "up", "old").await;
        store.complete_requests(&[old], SUCCESS).await.expect("complete");
        assert_eq!(drive(&store, vec![]).await, Vec::<String>::new());

        let (ok, ok_r) = upstream(&store, "up", "ok").await;
        let (failed, failed_r) = upstream(&store, "up", "failed").await;
        let (other, other_r) = upstream(&store, "other", "other").await;
        let (last, last_r) = upstream(&store, "up", "live-last").await;
        let live =
            vec![(ok, ok_r, WARNINGS), (failed, failed_r, FAILURE), (other, other_r, SUCCESS), (last, last_r, SUCCESS)];
        assert_eq!(drive(&store, live).await, ["ok", "live-last"]);

        // Completed while the scheduler was down: taken up at the next start, once.
        let (_, down) = upstream(&store, "up", "while-down").await;
        store.complete_requests(&[down], SUCCESS).await.expect("complete");
        let (last, last_r) = upstream(&store, "up", "live-last").await;
        assert_eq!(drive(&store, vec![(last, last_r, SUCCESS)]).await, ["while-down", "live-last"]);
        assert_eq!(drive(&store, vec![]).await, Vec::<String>::new());
    }
}
