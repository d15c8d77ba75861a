//! The dependent scheduler (Buildbot's `Dependent`): when a buildset of its upstream scheduler completes SUCCESS or
//! WARNINGS, it submits a buildset of the same source stamps for its own builders.
//!
//! It follows the completions the master announces while it runs. With one master, a buildset completes only
//! while the master runs (a build cut by a stop ends RETRY and runs again after the restart), so nothing is
//! missed across a clean restart; the one gap is a crash between storing a completion and submitting the
//! downstream buildset — that buildset is not submitted (force it, or rebuild the upstream).

use std::future::Future;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::DependentSchedulerDef;
use crate::results::{SUCCESS, WARNINGS};
use crate::store::{CompletedBuildset, NewBuildset, Store, StoreError};

/// Runs one dependent scheduler until `stop`: `submit` gets each downstream buildset (reason and source stamps).
pub async fn run<F, Fut>(
    def: DependentSchedulerDef,
    store: Store,
    mut completed: broadcast::Receiver<CompletedBuildset>,
    stop: CancellationToken,
    mut submit: F,
) where
    F: FnMut(NewBuildset) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let done = tokio::select! {
            () = stop.cancelled() => return,
            done = completed.recv() => done,
        };
        let done = match done {
            Ok(done) => done,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::error!(scheduler = %def.name, missed, "the dependent scheduler missed completed buildsets");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match downstream(&def, &store, done).await {
            Ok(Some(buildset)) => submit(buildset).await,
            Ok(None) => {}
            Err(e) => tracing::error!(scheduler = %def.name, buildset = done.bsid, error = %e, "could not read it"),
        }
    }
}

/// The buildset to submit after `done`, if it is one of the upstream's that succeeded.
async fn downstream(
    def: &DependentSchedulerDef,
    store: &Store,
    done: CompletedBuildset,
) -> Result<Option<NewBuildset>, StoreError> {
    if done.results != SUCCESS && done.results != WARNINGS {
        return Ok(None);
    }
    let Some(upstream) = store.buildset(done.bsid).await? else { return Ok(None) };
    if upstream.scheduler.as_deref() != Some(def.upstream.as_str()) {
        return Ok(None);
    }
    Ok(Some(NewBuildset {
        reason: format!(
            "The Dependent scheduler named '{}' triggered this build after buildset {} of '{}'",
            def.name, done.bsid, def.upstream
        ),
        sourcestamps: store.buildset_sourcestamps(done.bsid).await?,
        ..NewBuildset::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::FAILURE;
    use crate::store::testing::temp_store;
    use crate::store::SourceStamp;

    #[tokio::test]
    async fn only_a_successful_buildset_of_the_upstream_has_a_downstream() {
        let (store, _dir) = temp_store().await;
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let ss = SourceStamp { branch: Some("main".into()), revision: Some("abc".into()), ..SourceStamp::default() };
        let mut ids = Vec::new();
        for scheduler in ["up", "other"] {
            let new = NewBuildset {
                reason: "r".into(),
                scheduler: Some(scheduler.into()),
                builderids: vec![builder],
                sourcestamps: vec![ss.clone()],
                ..NewBuildset::default()
            };
            ids.push(store.add_buildset(&new).await.expect("buildset").0);
        }
        let def = DependentSchedulerDef { name: "down".into(), builders: vec!["b".into()], upstream: "up".into() };
        let after = |bsid, results| downstream(&def, &store, CompletedBuildset { bsid, results });
        let next = after(ids[0], WARNINGS).await.expect("read").expect("a downstream buildset");
        assert_eq!(next.sourcestamps, vec![ss]);
        assert!(next.reason.contains("'down'"), "{}", next.reason);
        assert!(after(ids[0], FAILURE).await.expect("read").is_none());
        assert!(after(ids[1], SUCCESS).await.expect("read").is_none());
    }
}
