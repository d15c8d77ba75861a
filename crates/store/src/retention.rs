//! Log retention: the janitor's store operations. A build's log contents (its `log_chunks`) are deleted once the
//! build ended longer ago than its builder's retention; the builds, steps and log rows stay (with `num_lines`), as
//! with Buildbot's janitor. Deletion goes a few hundred chunks per transaction, so the write lock is never held
//! for long and builds writing logs meanwhile wait at most one small transaction. Each builder's progress (the
//! number of the last build done) is kept in the object state, so a pass reads only builds it has not done.

use super::error::Context;
use super::{Store, StoreError};

/// The object-state name under which the janitor keeps its progress per builder.
const STATE_NAME: &str = "janitor:logs";

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Builds whose logs were emptied.
    pub builds: u64,
    /// Log chunks deleted.
    pub chunks: u64,
    /// Bytes of chunk content deleted (compressed, as stored).
    pub bytes: u64,
}

impl Expired {
    pub fn add(&mut self, other: Expired) {
        self.builds += other.builds;
        self.chunks += other.chunks;
        self.bytes += other.bytes;
    }
}

/// Builds read per query while looking for expired ones.
const BUILDS_PER_READ: i64 = 100;

impl Store {
    /// Deletes the log contents of the builds of builder `builderid` that completed before `cutoff` (seconds since
    /// the epoch), oldest first, at most `batch` chunks per transaction. It stops at the first build, in number
    /// order, that is still running or ended after `cutoff` (its successors wait for the next pass).
    pub async fn expire_logs(&self, builderid: i64, cutoff: i64, batch: u32) -> Result<Expired, StoreError> {
        let key = builderid.to_string();
        let mut done: i64 = self.get_state(STATE_NAME, &key).await?.and_then(|v| v.as_i64()).unwrap_or(0);
        let mut expired = Expired::default();
        loop {
            let op = || format!("find builds of builder {builderid} to expire");
            let builds: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, number, complete_at FROM builds WHERE builderid = ? AND number > ? \
                 ORDER BY number LIMIT ?",
            )
            .bind(builderid)
            .bind(done)
            .bind(BUILDS_PER_READ)
            .fetch_all(&self.pool)
            .await
            .context(op)?;
            if builds.is_empty() {
                return Ok(expired);
            }
            for (buildid, number, complete_at) in builds {
                if complete_at.is_none_or(|at| at >= cutoff) {
                    return Ok(expired);
                }
                expired.add(self.expire_build_logs(buildid, batch).await?);
                done = number;
                self.set_state(STATE_NAME, &key, &serde_json::Value::from(done)).await?;
            }
        }
    }

    /// Deletes every chunk of build `buildid`'s logs, `batch` at a time.
    async fn expire_build_logs(&self, buildid: i64, batch: u32) -> Result<Expired, StoreError> {
        let op = || format!("expire the logs of build {buildid}");
        let mut expired = Expired { builds: 1, ..Expired::default() };
        loop {
            let mut tx = self.write(op).await?;
            let (count, bytes): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), SUM(LENGTH(content)) FROM (SELECT content FROM log_chunks WHERE logid IN \
                 (SELECT logs.id FROM logs JOIN steps ON logs.stepid = steps.id WHERE steps.buildid = ?) LIMIT ?)",
            )
            .bind(buildid)
            .bind(batch)
            .fetch_one(&mut *tx)
            .await
            .context(op)?;
            if count == 0 {
                return Ok(expired);
            }
            sqlx::query(
                "DELETE FROM log_chunks WHERE rowid IN (SELECT rowid FROM log_chunks WHERE logid IN \
                 (SELECT logs.id FROM logs JOIN steps ON logs.stepid = steps.id WHERE steps.buildid = ?) LIMIT ?)",
            )
            .bind(buildid)
            .bind(batch)
            .execute(&mut *tx)
            .await
            .context(op)?;
            tx.commit().await.context(op)?;
            expired.chunks += u64::try_from(count).unwrap_or(0);
            expired.bytes += u64::try_from(bytes.unwrap_or(0)).unwrap_or(0);
        }
    }

    /// Gives back to the file system up to `pages` free pages of the database (a store created with incremental
    /// auto-vacuum; older stores reuse their free pages instead). Returns how many free pages are left.
    pub async fn vacuum_some(&self, pages: u32) -> Result<i64, StoreError> {
        let op = || "incremental vacuum".to_string();
        let mut connection = self.pool.acquire().await.context(op)?;
        crate::engine::sqlite::vacuum_some(&mut connection, pages).await.context(op)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{running_build, temp_store};
    use super::*;
    use crate::LogType;

    /// A running build of builder `b` with one step and a stdio log of `lines` lines; returns (buildid, logid).
    async fn build_with_log(store: &Store, lines: usize) -> (i64, i64) {
        let buildid = running_build(store).await;
        let (stepid, _) = store.add_step(buildid, "compile").await.expect("step");
        let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
        for chunk in 0..lines / 100 {
            let text: String = (0..100).map(|i| format!("oline {} of chunk {chunk}: some output\n", i)).collect();
            store.append_log(logid, &text).await.expect("append");
        }
        store.finish_log(logid).await.expect("finish log");
        (buildid, logid)
    }

    fn now() -> i64 {
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs())
            .expect("seconds")
    }

    async fn page_count(store: &Store) -> i64 {
        sqlx::query_scalar("PRAGMA page_count").fetch_one(&store.pool).await.expect("page count")
    }

    #[tokio::test]
    async fn logs_of_builds_ended_before_the_cutoff_are_emptied_oldest_first_and_the_pass_resumes() {
        let (store, _dir) = temp_store().await;
        let (first, first_log) = build_with_log(&store, 2_000).await;
        let (second, second_log) = build_with_log(&store, 300).await;
        let (running, running_log) = build_with_log(&store, 300).await;
        store.finish_build(first, 0).await.expect("finish");
        store.finish_build(second, 2).await.expect("finish");
        let builderid = store.find_or_add_builder("b").await.expect("builder");

        // Nothing ended before the epoch.
        assert_eq!(store.expire_logs(builderid, 0, 1).await.expect("expire"), Expired::default());
        // The two ended builds go, a chunk per transaction; the running one stops the pass.
        let expired = store.expire_logs(builderid, now() + 10, 1).await.expect("expire");
        assert_eq!(expired.builds, 2, "{expired:?}");
        assert!(expired.chunks >= 2 && expired.bytes > 0, "{expired:?}");
        for log in [first_log, second_log] {
            assert!(store.log_lines(log, 0, 10).await.expect("read").is_empty(), "log {log} kept its lines");
            assert!(store.log_num_lines(log).await.expect("count") > 0, "the log row keeps its line count");
        }
        assert_eq!(store.log_lines(running_log, 0, 10).await.expect("read").len(), 10);

        // Once it ends, the next pass takes it, and only it.
        store.finish_build(running, 0).await.expect("finish");
        let expired = store.expire_logs(builderid, now() + 10, 1000).await.expect("expire");
        assert_eq!(expired.builds, 1, "{expired:?}");
        assert!(store.log_lines(running_log, 0, 10).await.expect("read").is_empty());
        assert_eq!(store.expire_logs(builderid, now() + 10, 1000).await.expect("expire"), Expired::default());
    }

    #[tokio::test]
    async fn a_new_store_gives_the_pages_of_expired_logs_back() {
        let (store, _dir) = temp_store().await;
        let (buildid, _) = build_with_log(&store, 50_000).await;
        store.finish_build(buildid, 0).await.expect("finish");
        let builderid = store.find_or_add_builder("b").await.expect("builder");
        let before = page_count(&store).await;
        store.expire_logs(builderid, now() + 10, 64).await.expect("expire");
        let mut rounds = 0;
        while store.vacuum_some(16).await.expect("vacuum") > 0 {
            rounds += 1;
            assert!(rounds < 10_000, "the free list does not shrink");
        }
        let after = page_count(&store).await;
        assert!(after < before, "pages before {before}, after {after}");
    }
}
