//! Builds: numbered 1, 2, 3… per builder, each for one claimed build request; and the restart rule — builds a
//! master left running end RETRY and its claims on incomplete requests are released, so they run again.

use sqlx::Row;

use super::error::Context;
use super::queries::select;
use super::{now, Store, StoreError};
use crate::engine::DbRow;
use crate::events::Event;
use crate::model::Build;
use crate::results::RETRY;

/// The state string of a build that was just created (Buildbot's, once the build starts).
pub const STARTING: &str = "starting";

/// What [`Store::unclaim_and_retry_builds_of`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestartCleanup {
    /// Builds that were running and now are finished RETRY.
    pub builds_retried: u64,
    /// Incomplete requests whose claim was released.
    pub requests_unclaimed: u64,
}

pub(super) fn build(r: &DbRow) -> Result<Build, sqlx::Error> {
    Ok(Build {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        builderid: r.try_get("builderid")?,
        buildrequestid: r.try_get("buildrequestid")?,
        workerid: r.try_get("workerid")?,
        masterid: r.try_get("masterid")?,
        started_at: r.try_get("started_at")?,
        complete_at: r.try_get("complete_at")?,
        state_string: r.try_get("state_string")?,
        results: r.try_get("results")?,
    })
}

impl Store {
    /// Starts a build of request `brid` on builder `builderid`, worker `workerid`, by master `masterid`, with
    /// the builder's next build number and the state string [`STARTING`]; returns the build id and number.
    pub async fn add_build(
        &self,
        builderid: i64,
        brid: i64,
        workerid: i64,
        masterid: i64,
    ) -> Result<(i64, i64), StoreError> {
        self.add_build_notifying(builderid, brid, workerid, masterid, None).await
    }

    /// Sets what the running build `buildid` is doing (its state string, Buildbot's `setBuildStateString`).
    /// Setting the same string again changes nothing and tells no one.
    pub async fn set_build_state(&self, buildid: i64, state_string: &str) -> Result<(), StoreError> {
        let builderid: Option<i64> = sqlx::query_scalar(
            "UPDATE builds SET state_string = ? WHERE id = ? AND state_string != ? RETURNING builderid",
        )
        .bind(state_string)
        .bind(buildid)
        .bind(state_string)
        .fetch_optional(&self.pool)
        .await
        .context(|| format!("set the state of build {buildid}"))?;
        if let Some(builderid) = builderid {
            self.publish(Event::BuildUpdated { buildid, builderid, state_string: state_string.to_string() });
        }
        Ok(())
    }

    /// Finishes the running build `buildid` with `results`, keeping its state string.
    pub async fn finish_build(&self, buildid: i64, results: i32) -> Result<(), StoreError> {
        self.finish_build_as(buildid, results, None).await
    }

    /// Finishes the running build `buildid` with `results` and, if given, its final state string
    /// (`build successful`, `failed 'make' (failure)`…), in one write.
    pub async fn finish_build_as(
        &self,
        buildid: i64,
        results: i32,
        state_string: Option<&str>,
    ) -> Result<(), StoreError> {
        self.finish_build_notifying(buildid, results, state_string, None).await.map(|_| ())
    }

    /// The build `buildid`, if it exists.
    pub async fn build(&self, buildid: i64) -> Result<Option<Build>, StoreError> {
        sqlx::query(select::<Build>("WHERE id = ?"))
            .bind(buildid)
            .fetch_optional(&self.pool)
            .await
            .and_then(|r| r.as_ref().map(build).transpose())
            .context(|| format!("get build {buildid}"))
    }

    /// The builds master `masterid` started that have not finished.
    pub async fn incomplete_builds(&self, masterid: i64) -> Result<Vec<Build>, StoreError> {
        let op = || format!("get incomplete builds of master {masterid}");
        let rows = sqlx::query(select::<Build>("WHERE masterid = ? AND complete_at IS NULL ORDER BY id"))
            .bind(masterid)
            .fetch_all(&self.pool)
            .await
            .context(op)?;
        rows.iter().map(build).collect::<Result<_, _>>().context(op)
    }

    /// The restart rule (Buildbot's `masterStopped` housekeeping), atomically: the running builds of master
    /// `masterid` and their running steps finish RETRY, their open logs are closed, a claimed request whose last
    /// build had already finished with a final result is completed with it, and the master's claims on the other
    /// incomplete requests are released so the requests are built again.
    pub async fn unclaim_and_retry_builds_of(&self, masterid: i64) -> Result<RestartCleanup, StoreError> {
        let op = || format!("retry the running builds of master {masterid}");
        let at = now();
        let mut tx = self.write(op).await?;
        let mut events = Vec::new();
        let logs: Vec<(i64, i64, i64)> = sqlx::query_as(
            "UPDATE logs SET complete = 1 WHERE complete = 0 AND stepid IN (SELECT s.id FROM steps s \
             JOIN builds b ON b.id = s.buildid WHERE b.masterid = ? AND b.complete_at IS NULL) \
             RETURNING id, stepid, num_lines",
        )
        .bind(masterid)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        events.extend(logs.into_iter().map(|(logid, stepid, num_lines)| Event::LogFinished {
            logid,
            stepid,
            num_lines,
        }));
        let steps: Vec<(i64, i64, String)> = sqlx::query_as(
            "UPDATE steps SET complete_at = ?, results = ? WHERE complete_at IS NULL AND buildid IN \
             (SELECT id FROM builds WHERE masterid = ? AND complete_at IS NULL) RETURNING id, buildid, state_string",
        )
        .bind(at)
        .bind(RETRY)
        .bind(masterid)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        events.extend(steps.into_iter().map(|(stepid, buildid, state_string)| Event::StepFinished {
            stepid,
            buildid,
            results: RETRY,
            state_string,
        }));
        let builds: Vec<(i64, i64, String)> = sqlx::query_as(
            "UPDATE builds SET complete_at = ?, results = ? WHERE masterid = ? AND complete_at IS NULL \
             RETURNING id, builderid, state_string",
        )
        .bind(at)
        .bind(RETRY)
        .bind(masterid)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        let builds_retried = builds.len() as u64;
        events.extend(builds.into_iter().map(|(buildid, builderid, state_string)| Event::BuildFinished {
            buildid,
            builderid,
            results: RETRY,
            state_string,
        }));
        // A request whose last build finished with a final result before the master died (it was killed between
        // storing the build's end and completing the request) is complete with that result: running it again
        // would build it twice.
        let finished: Vec<(i64, i64, i64, i32)> = sqlx::query_as(
            "UPDATE buildrequests SET complete = 1, complete_at = ?, results = (SELECT b.results FROM builds b \
             WHERE b.buildrequestid = buildrequests.id ORDER BY b.id DESC LIMIT 1) \
             WHERE complete = 0 AND id IN (SELECT brid FROM buildrequest_claims WHERE masterid = ?) \
             AND (SELECT b.complete_at IS NOT NULL AND b.results IS NOT NULL AND b.results != ? FROM builds b \
             WHERE b.buildrequestid = buildrequests.id ORDER BY b.id DESC LIMIT 1) \
             RETURNING id, buildsetid, builderid, results",
        )
        .bind(at)
        .bind(masterid)
        .bind(RETRY)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        let mut buildsets: Vec<i64> = finished.iter().map(|(_, bsid, _, _)| *bsid).collect();
        events.extend(finished.into_iter().map(|(brid, bsid, builderid, results)| Event::BuildRequestCompleted {
            brid,
            bsid,
            builderid,
            results,
        }));
        buildsets.sort_unstable();
        buildsets.dedup();
        for bsid in buildsets {
            if let Some(results) = super::buildrequests::maybe_complete_buildset(&mut tx, bsid, at).await.context(op)? {
                events.push(Event::BuildsetCompleted { bsid, results });
            }
        }
        let requests: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT id, buildsetid, builderid FROM buildrequests WHERE complete = 0 \
             AND id IN (SELECT brid FROM buildrequest_claims WHERE masterid = ?) ORDER BY id",
        )
        .bind(masterid)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        sqlx::query(
            "DELETE FROM buildrequest_claims WHERE masterid = ? \
             AND brid IN (SELECT id FROM buildrequests WHERE complete = 0)",
        )
        .bind(masterid)
        .execute(&mut *tx)
        .await
        .context(op)?;
        let requests_unclaimed = requests.len() as u64;
        events.extend(requests.into_iter().map(|(brid, bsid, builderid)| Event::BuildRequestUnclaimed {
            brid,
            bsid,
            builderid,
        }));
        tx.commit().await.context(op)?;
        events.into_iter().for_each(|event| self.publish(event));
        Ok(RestartCleanup { builds_retried, requests_unclaimed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::SUCCESS;
    use crate::testing::{temp_store, url};
    use crate::{LogType, NewBuildset};

    /// A builder, a worker, a master and one claimed request on it.
    async fn setup(store: &Store) -> (i64, i64, i64, i64) {
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        let new = NewBuildset { reason: "test".into(), builderids: vec![builder], ..NewBuildset::default() };
        let brid = store.add_buildset(&new).await.expect("buildset").1[0];
        assert!(store.claim_requests(&[brid], master).await.expect("claim"));
        (builder, worker, master, brid)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn build_numbers_are_consecutive_under_concurrency() {
        let (store, dir) = temp_store().await;
        let other = Store::open(&url(&dir)).await.expect("second store");
        let (builder, worker, master, brid) = setup(&store).await;
        let second_builder = store.find_or_add_builder("b2").await.expect("builder");
        let mut tasks = Vec::new();
        for i in 0..100 {
            let s = if i % 2 == 0 { store.clone() } else { other.clone() };
            let b = if i % 3 == 0 { second_builder } else { builder };
            tasks.push(tokio::spawn(async move {
                let (_, number) = s.add_build(b, brid, worker, master).await.expect("add build");
                (b, number)
            }));
        }
        let mut numbers = std::collections::BTreeMap::<i64, Vec<i64>>::new();
        for t in tasks {
            let (b, n) = t.await.expect("join");
            numbers.entry(b).or_default().push(n);
        }
        for (b, mut ns) in numbers {
            ns.sort_unstable();
            let expected: Vec<i64> = (1..=i64::try_from(ns.len()).expect("len")).collect();
            assert_eq!(ns, expected, "builder {b}");
        }
    }

    #[tokio::test]
    async fn builds_and_steps_finish() {
        let (store, _dir) = temp_store().await;
        let (builder, worker, master, brid) = setup(&store).await;
        let (buildid, number) = store.add_build(builder, brid, worker, master).await.expect("build");
        assert_eq!(number, 1);
        let (s0, n0) = store.add_step(buildid, "checkout").await.expect("step");
        let (_, n1) = store.add_step(buildid, "compile").await.expect("step");
        assert_eq!((n0, n1), (0, 1));
        store.finish_step(s0, SUCCESS, false).await.expect("finish step");
        assert!(store.finish_step(s0, SUCCESS, false).await.is_err(), "finished twice");
        store.finish_build(buildid, SUCCESS).await.expect("finish build");
        let b = store.build(buildid).await.expect("get").expect("exists");
        assert_eq!((b.results, b.complete_at.is_some()), (Some(SUCCESS), true));
        assert!(store.incomplete_builds(master).await.expect("incomplete").is_empty());
    }

    #[tokio::test]
    async fn restart_rule_retries_running_builds_and_unclaims_their_requests() {
        let (store, dir) = temp_store().await;
        let (builder, worker, master, brid) = setup(&store).await;
        let (buildid, _) = store.add_build(builder, brid, worker, master).await.expect("build");
        let (stepid, _) = store.add_step(buildid, "compile").await.expect("step");
        let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
        store.append_log(logid, "ocompiling\n").await.expect("append");
        store.close().await;

        // The master "restarts".
        let store = Store::open(&url(&dir)).await.expect("reopen");
        let running = store.incomplete_builds(master).await.expect("incomplete");
        assert_eq!(running.iter().map(|b| b.id).collect::<Vec<_>>(), vec![buildid]);
        assert!(store.unclaimed_requests(builder).await.expect("unclaimed").is_empty());

        let cleanup = store.unclaim_and_retry_builds_of(master).await.expect("cleanup");
        assert_eq!(cleanup, RestartCleanup { builds_retried: 1, requests_unclaimed: 1 });
        let b = store.build(buildid).await.expect("get").expect("exists");
        assert_eq!(b.results, Some(RETRY));
        let steps = store.steps(buildid).await.expect("steps");
        assert_eq!(steps[0].results, Some(RETRY));
        assert!(matches!(store.append_log(logid, "more\n").await, Err(StoreError::LogComplete { .. })));
        assert_eq!(store.log_lines(logid, 0, 10).await.expect("lines"), vec!["ocompiling"]);
        let unclaimed = store.unclaimed_requests(builder).await.expect("unclaimed");
        assert_eq!(unclaimed.iter().map(|r| r.id).collect::<Vec<_>>(), vec![brid]);
        assert!(store.incomplete_builds(master).await.expect("incomplete").is_empty());

        // The request runs again as a new build with the next number.
        assert!(store.claim_requests(&[brid], master).await.expect("claim"));
        let (_, number) = store.add_build(builder, brid, worker, master).await.expect("build");
        assert_eq!(number, 2);
    }

    #[tokio::test]
    async fn restart_rule_completes_a_request_whose_build_had_finished_instead_of_building_it_again() {
        // The soak's finding: the master was killed after storing a build's SUCCESS and before completing its
        // request; the restart unclaimed the request and it was built a second time.
        let (store, dir) = temp_store().await;
        let (builder, worker, master, brid) = setup(&store).await;
        let (retried, _) = store.add_build(builder, brid, worker, master).await.expect("build");
        store.finish_build(retried, RETRY).await.expect("finish RETRY");
        let (buildid, _) = store.add_build(builder, brid, worker, master).await.expect("build");
        store.finish_build(buildid, SUCCESS).await.expect("finish build");
        store.close().await;

        let store = Store::open(&url(&dir)).await.expect("reopen");
        let mut events = store.events().subscribe();
        let cleanup = store.unclaim_and_retry_builds_of(master).await.expect("cleanup");
        assert_eq!(cleanup, RestartCleanup { builds_retried: 0, requests_unclaimed: 0 });
        let request = store.build_request(brid).await.expect("get").expect("exists");
        assert!(request.complete, "{request:?}");
        assert_eq!(request.results, Some(SUCCESS));
        assert!(store.unclaimed_requests(builder).await.expect("unclaimed").is_empty());
        let mut seen = Vec::new();
        while let Ok(Some(event)) = events.try_recv() {
            seen.push(format!("{event:?}"));
        }
        assert!(seen.iter().any(|e| e.contains("BuildRequestCompleted")), "{seen:?}");
        assert!(seen.iter().any(|e| e.contains("BuildsetCompleted")), "{seen:?}");

        // A request whose last build ended RETRY is still unclaimed to run again.
        let new = NewBuildset { reason: "test".into(), builderids: vec![builder], ..NewBuildset::default() };
        let again = store.add_buildset(&new).await.expect("buildset").1[0];
        assert!(store.claim_requests(&[again], master).await.expect("claim"));
        let (retry, _) = store.add_build(builder, again, worker, master).await.expect("build");
        store.finish_build(retry, RETRY).await.expect("finish RETRY");
        let cleanup = store.unclaim_and_retry_builds_of(master).await.expect("cleanup");
        assert_eq!(cleanup, RestartCleanup { builds_retried: 0, requests_unclaimed: 1 });
        assert!(!store.build_request(again).await.expect("get").expect("exists").complete);
    }
}
