//! Reads for the web UI's overview pages, each one statement however many builders or changes it covers: the
//! last builds of every builder, the builds each change or buildset led to, the builds a build triggered.

use sqlx::{AssertSqlSafe, Row};

use super::builds::build;
use super::error::Context;
use super::{Store, StoreError};
use crate::model::Build;

/// A build's columns, of the table aliased `b`.
const BUILD_COLUMNS: &str =
    "b.id, b.number, b.builderid, b.buildrequestid, b.workerid, b.masterid, b.started_at, b.complete_at, \
     b.state_string, b.results";

/// At most this many builders in one compound statement (SQLite's limit is 500 terms).
const BUILDERS_PER_STATEMENT: usize = 200;

/// `?, ?, ?` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Store {
    /// The last `per_builder` builds (by number, newest first) of each builder of `builderids`, in the order of
    /// `builderids`; each builder's part reads its newest builds from the `(builderid, number)` index.
    pub async fn recent_builds(&self, builderids: &[i64], per_builder: i64) -> Result<Vec<Build>, StoreError> {
        let op = || format!("read the last {per_builder} builds of {} builders", builderids.len());
        let mut found = Vec::new();
        for chunk in builderids.chunks(BUILDERS_PER_STATEMENT) {
            let parts: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "SELECT * FROM (SELECT {i} AS position, {BUILD_COLUMNS} FROM builds b \
                         WHERE b.builderid = ? ORDER BY b.number DESC LIMIT ?)"
                    )
                })
                .collect();
            let sql = format!("{} ORDER BY position, number DESC", parts.join(" UNION ALL "));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for builderid in chunk {
                query = query.bind(*builderid).bind(per_builder);
            }
            let rows = query.fetch_all(&self.pool).await.context(op)?;
            for row in &rows {
                found.push(build(row).context(op)?);
            }
        }
        Ok(found)
    }

    /// The builds of the requests of the buildsets made for each change of `changeids` (a scheduler's group,
    /// and the triggered, dependent and rebuilt buildsets that keep its changes), as `(changeid, build)`, newest
    /// build first.
    pub async fn change_builds(&self, changeids: &[i64]) -> Result<Vec<(i64, Build)>, StoreError> {
        if changeids.is_empty() {
            return Ok(Vec::new());
        }
        let op = || format!("read the builds of {} changes", changeids.len());
        let sql = format!(
            "SELECT bc.changeid, {BUILD_COLUMNS} FROM buildset_changes bc \
             JOIN buildrequests br ON br.buildsetid = bc.buildsetid JOIN builds b ON b.buildrequestid = br.id \
             WHERE bc.changeid IN ({}) ORDER BY b.id DESC",
            marks(changeids.len())
        );
        self.tagged_builds(sql, changeids, "changeid", op).await
    }

    /// The builds of the requests of each buildset of `bsids`, as `(buildsetid, build)`, newest build first.
    pub async fn buildset_builds(&self, bsids: &[i64]) -> Result<Vec<(i64, Build)>, StoreError> {
        if bsids.is_empty() {
            return Ok(Vec::new());
        }
        let op = || format!("read the builds of {} buildsets", bsids.len());
        let sql = format!(
            "SELECT br.buildsetid, {BUILD_COLUMNS} FROM buildrequests br JOIN builds b ON b.buildrequestid = br.id \
             WHERE br.buildsetid IN ({}) ORDER BY b.id DESC",
            marks(bsids.len())
        );
        self.tagged_builds(sql, bsids, "buildsetid", op).await
    }

    /// The builds of the buildsets that build `buildid` triggered (their parent), oldest first.
    pub async fn triggered_builds(&self, buildid: i64) -> Result<Vec<Build>, StoreError> {
        let op = || format!("read the builds triggered by build {buildid}");
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM buildsets bs JOIN buildrequests br ON br.buildsetid = bs.id \
             JOIN builds b ON b.buildrequestid = br.id WHERE bs.parent_buildid = ? ORDER BY b.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(buildid).fetch_all(&self.pool).await.context(op)?;
        rows.iter().map(build).collect::<Result<_, _>>().context(op)
    }

    async fn tagged_builds(
        &self,
        sql: String,
        ids: &[i64],
        tag: &str,
        op: impl Fn() -> String,
    ) -> Result<Vec<(i64, Build)>, StoreError> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await.context(&op)?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>(tag)?, build(row)?)))
            .collect::<Result<_, sqlx::Error>>()
            .context(&op)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::NewBuildset;
    use crate::testing::temp_store;

    #[tokio::test]
    async fn recent_builds_are_the_newest_of_each_builder_in_the_order_asked() {
        let (store, _dir) = temp_store().await;
        let a = store.find_or_add_builder("a").await.expect("builder");
        let b = store.find_or_add_builder("b").await.expect("builder");
        let c = store.find_or_add_builder("c").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        for builder in [a, a, a, b] {
            let new = NewBuildset { reason: "t".into(), builderids: vec![builder], ..NewBuildset::default() };
            let brid = store.add_buildset(&new).await.expect("buildset").1[0];
            store.add_build(builder, brid, worker, master).await.expect("build");
        }
        let found = store.recent_builds(&[b, a, c], 2).await.expect("recent");
        let seen: Vec<(i64, i64)> = found.iter().map(|x| (x.builderid, x.number)).collect();
        assert_eq!(seen, vec![(b, 1), (a, 3), (a, 2)]);
        assert!(store.recent_builds(&[], 2).await.expect("none").is_empty());
    }

    #[tokio::test]
    async fn change_buildset_and_triggered_builds() {
        let (store, _dir) = temp_store().await;
        let a = store.find_or_add_builder("a").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        let change = store
            .add_change(&crate::model::NewChange { author: "x".into(), ..Default::default() })
            .await
            .expect("change");
        let new =
            NewBuildset { reason: "t".into(), builderids: vec![a], changeids: vec![change], ..Default::default() };
        let (bsid, brids) = store.add_buildset(&new).await.expect("buildset");
        let (parent, _) = store.add_build(a, brids[0], worker, master).await.expect("build");
        let child = NewBuildset {
            reason: "triggered".into(),
            builderids: vec![a],
            parent_buildid: Some(parent),
            ..Default::default()
        };
        let (child_bsid, child_brids) = store.add_buildset(&child).await.expect("child");
        let (child_build, _) = store.add_build(a, child_brids[0], worker, master).await.expect("build");

        let by_change = store.change_builds(&[change, change + 1]).await.expect("change builds");
        assert_eq!(by_change.iter().map(|(c, b)| (*c, b.id)).collect::<Vec<_>>(), vec![(change, parent)]);
        let by_buildset = store.buildset_builds(&[bsid, child_bsid]).await.expect("buildset builds");
        assert_eq!(
            by_buildset.iter().map(|(s, b)| (*s, b.id)).collect::<Vec<_>>(),
            vec![(child_bsid, child_build), (bsid, parent)]
        );
        let triggered = store.triggered_builds(parent).await.expect("triggered");
        assert_eq!(triggered.iter().map(|b| b.id).collect::<Vec<_>>(), vec![child_build]);
    }

    #[tokio::test]
    async fn the_indexes_these_reads_need_are_migrated() {
        let (store, _dir) = temp_store().await;
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index'")
            .fetch_all(&store.pool)
            .await
            .expect("indexes");
        for index in ["buildset_changes_changeid", "buildsets_parent_buildid"] {
            assert!(names.iter().any(|n| n == index), "{index} missing from {names:?}");
        }
    }
}
