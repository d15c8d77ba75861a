//! Build requests: the queue. A master claims a request (a unique row per request, so two masters never both
//! get one) before building it, unclaims it if the build ends RETRY, and completes it with the build's result.
//! Completing the last request of a buildset completes the buildset with the worst of their results.

use sqlx::Row;

use super::error::{is_unique_violation, Context};
use super::queries::select;
use super::{now, Store, StoreError};
use crate::engine::{DbRow, DbTransaction};
use crate::events::Event;
use crate::model::{BuildRequest, CompletedBuildset};
use crate::results::{self, worst_status};

pub(super) fn build_request(r: &DbRow) -> Result<BuildRequest, sqlx::Error> {
    Ok(BuildRequest {
        id: r.try_get("id")?,
        buildsetid: r.try_get("buildsetid")?,
        builderid: r.try_get("builderid")?,
        priority: r.try_get("priority")?,
        submitted_at: r.try_get("submitted_at")?,
        complete: r.try_get::<i16, _>("complete")? != 0,
        results: r.try_get("results")?,
        complete_at: r.try_get("complete_at")?,
        waited_for: r.try_get::<i16, _>("waited_for")? != 0,
        superseded_by: r.try_get("superseded_by")?,
        claimed_by_masterid: r.try_get("masterid")?,
    })
}

impl Store {
    /// The incomplete requests of the buildsets scheduler `scheduler` submitted before buildset `newer` for the
    /// same branch: a source stamp with the same codebase, repository and branch as one of `newer`'s
    /// (what `cancel_superseded` cancels).
    pub async fn superseded_requests(&self, scheduler: &str, newer: i64) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT DISTINCT br.id FROM buildrequests br \
             JOIN buildsets bs ON bs.id = br.buildsetid \
             JOIN buildset_sourcestamps bss ON bss.buildsetid = bs.id \
             JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
             JOIN sourcestamps nss ON nss.codebase = ss.codebase AND nss.repository = ss.repository \
                  AND nss.branch IS ss.branch \
             JOIN buildset_sourcestamps nbss ON nbss.sourcestampid = nss.id AND nbss.buildsetid = ? \
             WHERE br.complete = 0 AND bs.complete = 0 AND bs.scheduler = ? AND bs.id < ? ORDER BY br.id",
        )
        .bind(newer)
        .bind(scheduler)
        .bind(newer)
        .fetch_all(&self.pool)
        .await
        .context(|| format!("find the requests of {scheduler} that buildset {newer} supersedes"))
    }

    /// The build request `brid`, if it exists.
    pub async fn build_request(&self, brid: i64) -> Result<Option<BuildRequest>, StoreError> {
        let op = || format!("get build request {brid}");
        sqlx::query(select::<BuildRequest>("WHERE br.id = ?"))
            .bind(brid)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.as_ref().map(build_request).transpose())
            .context(op)
    }

    /// The incomplete, unclaimed requests of `builderid`, highest priority first, then oldest first.
    pub async fn unclaimed_requests(&self, builderid: i64) -> Result<Vec<BuildRequest>, StoreError> {
        let op = || format!("get unclaimed requests of builder {builderid}");
        let rows = sqlx::query(select::<BuildRequest>(
            "WHERE br.builderid = ? AND br.complete = 0 AND c.brid IS NULL ORDER BY br.priority DESC, br.id",
        ))
        .bind(builderid)
        .fetch_all(&self.pool)
        .await
        .context(op)?;
        rows.iter().map(build_request).collect::<Result<_, _>>().context(op)
    }

    /// Claims all of `brids` for master `masterid`, or none: returns `false` (and claims nothing) if another
    /// master already holds one of them.
    pub async fn claim_requests(&self, brids: &[i64], masterid: i64) -> Result<bool, StoreError> {
        let op = || format!("claim build requests {brids:?} for master {masterid}");
        let claimed_at = now();
        let mut tx = self.write(op).await?;
        let mut claimed = Vec::with_capacity(brids.len());
        for &brid in brids {
            let inserted = sqlx::query("INSERT INTO buildrequest_claims (brid, masterid, claimed_at) VALUES (?, ?, ?)")
                .bind(brid)
                .bind(masterid)
                .bind(claimed_at)
                .execute(&mut *tx)
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    tx.rollback().await.context(op)?;
                    return Ok(false);
                }
                Err(e) => return Err(e).context(op),
            }
            let (bsid, builderid): (i64, i64) =
                sqlx::query_as("SELECT buildsetid, builderid FROM buildrequests WHERE id = ?")
                    .bind(brid)
                    .fetch_one(&mut *tx)
                    .await
                    .context(op)?;
            claimed.push(Event::BuildRequestClaimed { brid, bsid, builderid, masterid });
        }
        tx.commit().await.context(op)?;
        claimed.into_iter().for_each(|event| self.publish(event));
        Ok(true)
    }

    /// Collapses `old` into `new` (see `queue::collapse`): each of `old` that no master has claimed is claimed by
    /// `masterid` and completed SKIPPED with `superseded_by = new`, in one transaction; one already claimed (being
    /// built) or complete is left alone. Returns the ids collapsed.
    pub async fn collapse_requests(&self, old: &[i64], new: i64, masterid: i64) -> Result<Vec<i64>, StoreError> {
        let op = || format!("collapse build requests {old:?} into {new}");
        let complete_at = now();
        let mut tx = self.write(op).await?;
        let mut collapsed = Vec::new();
        let mut events = Vec::new();
        for &brid in old {
            let claimed = sqlx::query(
                "INSERT INTO buildrequest_claims (brid, masterid, claimed_at) \
                 SELECT id, ?, ? FROM buildrequests WHERE id = ? AND complete = 0 ON CONFLICT DO NOTHING",
            )
            .bind(masterid)
            .bind(complete_at)
            .bind(brid)
            .execute(&mut *tx)
            .await
            .context(op)?;
            if claimed.rows_affected() == 0 {
                continue;
            }
            let (bsid, builderid): (i64, i64) = sqlx::query_as(
                "UPDATE buildrequests SET complete = 1, results = ?, complete_at = ?, superseded_by = ? \
                 WHERE id = ? RETURNING buildsetid, builderid",
            )
            .bind(results::SKIPPED)
            .bind(complete_at)
            .bind(new)
            .bind(brid)
            .fetch_one(&mut *tx)
            .await
            .context(op)?;
            events.push(Event::BuildRequestCompleted { brid, bsid, builderid, results: results::SKIPPED });
            if let Some(results) = maybe_complete_buildset(&mut tx, bsid, complete_at).await.context(op)? {
                events.push(Event::BuildsetCompleted { bsid, results });
            }
            collapsed.push(brid);
        }
        tx.commit().await.context(op)?;
        events.into_iter().for_each(|event| self.publish(event));
        Ok(collapsed)
    }

    /// Releases the claims of master `masterid` on those of `brids` that are not complete, so they can be
    /// built again. Claims held by other masters are left alone.
    pub async fn unclaim_requests(&self, brids: &[i64], masterid: i64) -> Result<(), StoreError> {
        let op = || format!("unclaim build requests {brids:?} of master {masterid}");
        let mut tx = self.write(op).await?;
        let mut unclaimed = Vec::new();
        for &brid in brids {
            let request: Option<(i64, i64)> = sqlx::query_as(
                "SELECT buildsetid, builderid FROM buildrequests WHERE id = ? AND complete = 0 \
                 AND id IN (SELECT brid FROM buildrequest_claims WHERE masterid = ?)",
            )
            .bind(brid)
            .bind(masterid)
            .fetch_optional(&mut *tx)
            .await
            .context(op)?;
            let Some((bsid, builderid)) = request else { continue };
            sqlx::query("DELETE FROM buildrequest_claims WHERE brid = ? AND masterid = ?")
                .bind(brid)
                .bind(masterid)
                .execute(&mut *tx)
                .await
                .context(op)?;
            unclaimed.push(Event::BuildRequestUnclaimed { brid, bsid, builderid });
        }
        tx.commit().await.context(op)?;
        unclaimed.into_iter().for_each(|event| self.publish(event));
        Ok(())
    }

    /// Completes all of `brids` with `results`, or none: returns `false` (and changes nothing) if one of them
    /// is already complete or does not exist. RETRY is refused: a request that must run again is unclaimed,
    /// not completed. Buildsets whose requests are then all complete are completed too.
    pub async fn complete_requests(&self, brids: &[i64], results: i32) -> Result<bool, StoreError> {
        Ok(self.complete_requests_reporting(brids, results).await?.is_some())
    }

    /// [`Store::complete_requests`], returning the buildsets it completed (`None` when it changed nothing).
    pub async fn complete_requests_reporting(
        &self,
        brids: &[i64],
        results: i32,
    ) -> Result<Option<Vec<CompletedBuildset>>, StoreError> {
        self.complete_requests_notifying(brids, results, super::CompletionDecide::default()).await
    }

    /// Completes requests like [`Store::complete_requests_reporting`] and, in the same transaction, keeps the
    /// notices `decide` returns about requests that end without a build and buildsets that complete.
    pub async fn complete_requests_notifying(
        &self,
        brids: &[i64],
        results: i32,
        decide: super::CompletionDecide<'_>,
    ) -> Result<Option<Vec<CompletedBuildset>>, StoreError> {
        const OP: &str = "complete build requests";
        if results == results::RETRY || results::name(results).is_none() {
            return Err(StoreError::InvalidResult { op: OP, results });
        }
        let op = || format!("{OP} {brids:?} with result {results}");
        let complete_at = now();
        let mut tx = self.write(op).await?;
        let mut buildsets = Vec::new();
        let mut events = Vec::with_capacity(brids.len() + 1);
        for &brid in brids {
            let request: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE buildrequests SET complete = 1, results = ?, complete_at = ? \
                 WHERE id = ? AND complete = 0 RETURNING buildsetid, builderid",
            )
            .bind(results)
            .bind(complete_at)
            .bind(brid)
            .fetch_optional(&mut *tx)
            .await
            .context(op)?;
            match request {
                Some((bsid, builderid)) => {
                    buildsets.push(bsid);
                    events.push(Event::BuildRequestCompleted { brid, bsid, builderid, results });
                }
                None => {
                    tx.rollback().await.context(op)?;
                    return Ok(None);
                }
            }
        }
        buildsets.sort_unstable();
        buildsets.dedup();
        let mut completed = Vec::new();
        for bsid in buildsets {
            let results = maybe_complete_buildset(&mut tx, bsid, complete_at)
                .await
                .context(|| format!("{}: buildset {bsid}", op()))?;
            completed.extend(results.map(|results| CompletedBuildset { bsid, results }));
        }
        super::notifications::notify_completion(&mut tx, brids, &completed, decide).await.context(op)?;
        tx.commit().await.context(op)?;
        events.into_iter().for_each(|event| self.publish(event));
        for done in &completed {
            self.publish(Event::BuildsetCompleted { bsid: done.bsid, results: done.results });
        }
        Ok(Some(completed))
    }
}

/// Completes buildset `bsid` with the worst result of its requests if they are all complete; returns that result
/// if this call completed it.
pub(super) async fn maybe_complete_buildset(
    tx: &mut DbTransaction,
    bsid: i64,
    complete_at: i64,
) -> Result<Option<i32>, sqlx::Error> {
    let rows: Vec<(i16, Option<i32>)> =
        sqlx::query_as("SELECT complete, results FROM buildrequests WHERE buildsetid = ?")
            .bind(bsid)
            .fetch_all(&mut **tx)
            .await?;
    if rows.iter().any(|&(complete, _)| complete == 0) {
        return Ok(None);
    }
    let worst = rows.iter().filter_map(|&(_, r)| r).fold(results::SUCCESS, worst_status);
    let done =
        sqlx::query("UPDATE buildsets SET complete = 1, complete_at = ?, results = ? WHERE id = ? AND complete = 0")
            .bind(complete_at)
            .bind(worst)
            .bind(bsid)
            .execute(&mut **tx)
            .await?;
    Ok((done.rows_affected() > 0).then_some(worst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{FAILURE, RETRY, SKIPPED, SUCCESS};
    use crate::testing::{temp_store, url};
    use crate::NewBuildset;

    /// A buildset with one request per builder; returns the request ids.
    async fn requests(store: &Store, builderids: Vec<i64>, priority: i32) -> Vec<i64> {
        let new = NewBuildset { reason: "test".into(), builderids, priority: Some(priority), ..NewBuildset::default() };
        store.add_buildset(&new).await.expect("buildset").1
    }

    #[tokio::test]
    async fn superseded_requests_are_the_schedulers_older_incomplete_ones_on_the_same_branch() {
        use crate::model::SourceStamp;
        let (store, _dir) = temp_store().await;
        let b = store.find_or_add_builder("b").await.expect("builder");
        let stamp = |branch: &str, revision: &str| SourceStamp {
            branch: Some(branch.into()),
            revision: Some(revision.into()),
            repository: "https://example.org/r".into(),
            project: "p".into(),
            codebase: String::new(),
        };
        let submit = |scheduler: &'static str, ss: SourceStamp| {
            let store = store.clone();
            async move {
                let new = NewBuildset {
                    reason: "test".into(),
                    scheduler: Some(scheduler.into()),
                    builderids: vec![b, b],
                    sourcestamps: vec![ss],
                    ..NewBuildset::default()
                };
                store.add_buildset(&new).await.expect("buildset")
            }
        };
        let (_, first) = submit("prs", stamp("refs/pull/2/head", "a1")).await;
        let (_, other_branch) = submit("prs", stamp("refs/pull/3/head", "b1")).await;
        let (_, other_scheduler) = submit("nightly", stamp("refs/pull/2/head", "a1")).await;
        let (_, done) = submit("prs", stamp("refs/pull/2/head", "a2")).await;
        assert!(store.complete_requests(&done, SUCCESS).await.expect("complete"));
        let (newer, _) = submit("prs", stamp("refs/pull/2/head", "a3")).await;
        let superseded = store.superseded_requests("prs", newer).await.expect("superseded");
        assert_eq!(superseded, first, "not {other_branch:?}, {other_scheduler:?} nor the complete {done:?}");
        // The newest supersedes nothing newer than itself.
        let (_, newest) = submit("prs", stamp("refs/pull/2/head", "a4")).await;
        let bsid = store.build_request(newest[0]).await.expect("get").expect("exists").buildsetid;
        assert_eq!(store.superseded_requests("prs", bsid).await.expect("superseded").len(), 4);
    }

    #[tokio::test]
    async fn unclaimed_requests_come_by_priority_then_age() {
        let (store, _dir) = temp_store().await;
        let b = store.find_or_add_builder("b").await.expect("builder");
        let other = store.find_or_add_builder("other").await.expect("builder");
        let low = requests(&store, vec![b], 0).await[0];
        let high = requests(&store, vec![b], 10).await[0];
        let low2 = requests(&store, vec![b], 0).await[0];
        let high2 = requests(&store, vec![b, other], 10).await[0];
        let ids: Vec<i64> = store.unclaimed_requests(b).await.expect("unclaimed").iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![high, high2, low, low2]);

        let master = store.register_master("m").await.expect("master");
        assert!(store.claim_requests(&[high], master).await.expect("claim"));
        let done = requests(&store, vec![b], 20).await[0];
        assert!(store.complete_requests(&[done], SUCCESS).await.expect("complete"));
        let ids: Vec<i64> = store.unclaimed_requests(b).await.expect("unclaimed").iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![high2, low, low2], "claimed and complete requests are not offered");
    }

    #[tokio::test]
    async fn the_last_request_completes_its_buildset_once_with_the_worst_result() {
        let (store, _dir) = temp_store().await;
        let b = store.find_or_add_builder("b").await.expect("builder");
        let r = requests(&store, vec![b, b], 0).await;
        let bsid = store.build_request(r[0]).await.expect("get").expect("exists").buildsetid;
        assert_eq!(store.complete_requests_reporting(&[r[0]], FAILURE).await.expect("complete"), Some(vec![]));
        let done = store.complete_requests_reporting(&[r[1]], SUCCESS).await.expect("complete");
        assert_eq!(done, Some(vec![CompletedBuildset { bsid, results: FAILURE }]));
        assert_eq!(store.complete_requests_reporting(&[r[1]], SUCCESS).await.expect("complete"), None);
        let buildset = store.buildset(bsid).await.expect("get").expect("exists");
        assert_eq!((buildset.complete, buildset.results), (true, Some(FAILURE)));
    }

    #[tokio::test]
    async fn claiming_is_all_or_nothing() {
        let (store, _dir) = temp_store().await;
        let b = store.find_or_add_builder("b").await.expect("builder");
        let m1 = store.register_master("m1").await.expect("master");
        let m2 = store.register_master("m2").await.expect("master");
        let r = requests(&store, vec![b, b, b], 0).await;
        assert!(store.claim_requests(&[r[1]], m1).await.expect("claim"));
        assert!(!store.claim_requests(&[r[0], r[1], r[2]], m2).await.expect("claim"));
        for (brid, owner) in [(r[0], None), (r[1], Some(m1)), (r[2], None)] {
            let br = store.build_request(brid).await.expect("get").expect("exists");
            assert_eq!(br.claimed_by_masterid, owner, "request {brid}");
        }
        // Another master cannot unclaim it; its owner can.
        store.unclaim_requests(&[r[1]], m2).await.expect("unclaim");
        assert!(!store.claim_requests(&[r[1]], m2).await.expect("claim"));
        store.unclaim_requests(&[r[1]], m1).await.expect("unclaim");
        assert!(store.claim_requests(&[r[0], r[1], r[2]], m2).await.expect("claim"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_never_both_win() {
        let (a, dir) = temp_store().await;
        let b_store = Store::open(&url(&dir)).await.expect("second store");
        let builder = a.find_or_add_builder("b").await.expect("builder");
        let ma = a.register_master("a").await.expect("master");
        let mb = b_store.register_master("b").await.expect("master");
        let mut wins = [0usize; 2];
        for _ in 0..300 {
            // Overlapping sets: a wants r0, r1; b wants r1, r2.
            let r = requests(&a, vec![builder, builder, builder], 0).await;
            let (sa, sb) = (a.clone(), b_store.clone());
            let (wa, wb) = (vec![r[0], r[1]], vec![r[1], r[2]]);
            let ta = tokio::spawn(async move { sa.claim_requests(&wa, ma).await });
            let tb = tokio::spawn(async move { sb.claim_requests(&wb, mb).await });
            let won_a = ta.await.expect("join").expect("claim a");
            let won_b = tb.await.expect("join").expect("claim b");
            assert!(!(won_a && won_b), "both masters claimed request {}", r[1]);
            assert!(won_a || won_b, "one claimer must win when there is no third party");
            let owners: Vec<Option<i64>> = {
                let mut v = Vec::new();
                for &brid in &r {
                    let br = a.build_request(brid).await.expect("get").expect("exists");
                    v.push(br.claimed_by_masterid);
                }
                v
            };
            if won_a {
                wins[0] += 1;
                assert_eq!(owners, vec![Some(ma), Some(ma), None]);
            } else {
                wins[1] += 1;
                assert_eq!(owners, vec![None, Some(mb), Some(mb)]);
            }
        }
        assert_eq!(wins[0] + wins[1], 300);
    }

    #[tokio::test]
    async fn collapsing_skips_only_unclaimed_incomplete_requests() {
        let (store, _dir) = temp_store().await;
        let b = store.find_or_add_builder("b").await.expect("builder");
        let m = store.register_master("m").await.expect("master");
        let other = store.register_master("other").await.expect("master");
        let queued = requests(&store, vec![b], 0).await[0];
        let building = requests(&store, vec![b], 0).await[0];
        let done = requests(&store, vec![b], 0).await[0];
        let new = requests(&store, vec![b], 0).await[0];
        assert!(store.claim_requests(&[building], other).await.expect("claim"));
        assert!(store.complete_requests(&[done], SUCCESS).await.expect("complete"));
        let collapsed = store.collapse_requests(&[queued, building, done], new, m).await.expect("collapse");
        assert_eq!(collapsed, vec![queued]);
        let br = store.build_request(queued).await.expect("get").expect("exists");
        assert_eq!((br.complete, br.results, br.superseded_by), (true, Some(SKIPPED), Some(new)));
        let bs = store.buildset(br.buildsetid).await.expect("get").expect("exists");
        assert_eq!((bs.complete, bs.results), (true, Some(SUCCESS)), "as in Buildbot, SKIPPED is better than SUCCESS");
        for brid in [building, done, new] {
            assert_eq!(store.build_request(brid).await.expect("get").expect("exists").superseded_by, None);
        }
        let building = store.build_request(building).await.expect("get").expect("exists");
        assert_eq!((building.complete, building.claimed_by_masterid), (false, Some(other)));
    }

    #[tokio::test]
    async fn completing_refuses_retry_and_completes_the_buildset() {
        let (store, _dir) = temp_store().await;
        let b = store.find_or_add_builder("b").await.expect("builder");
        let r = requests(&store, vec![b, b], 0).await;
        let err = store.complete_requests(&[r[0]], RETRY).await.expect_err("RETRY refused");
        assert!(matches!(err, StoreError::InvalidResult { results: RETRY, .. }), "{err}");
        assert!(store.complete_requests(&[r[0]], 99).await.is_err(), "unknown code refused");

        assert!(store.complete_requests(&[r[0]], FAILURE).await.expect("complete"));
        let bsid = store.build_request(r[0]).await.expect("get").expect("exists").buildsetid;
        assert!(!store.buildset(bsid).await.expect("get").expect("exists").complete);
        // All or nothing: r[0] is already complete, so r[1] is not completed either.
        assert!(!store.complete_requests(&[r[1], r[0]], SUCCESS).await.expect("complete"));
        assert!(!store.build_request(r[1]).await.expect("get").expect("exists").complete);

        assert!(store.complete_requests(&[r[1]], SUCCESS).await.expect("complete"));
        let br = store.build_request(r[1]).await.expect("get").expect("exists");
        assert_eq!((br.complete, br.results), (true, Some(SUCCESS)));
        assert!(br.complete_at.is_some());
        let bs = store.buildset(bsid).await.expect("get").expect("exists");
        assert_eq!((bs.complete, bs.results), (true, Some(FAILURE)), "worst of its requests");
    }
}
