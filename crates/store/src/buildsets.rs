//! Buildsets: what a scheduler asks for — a reason, properties and source stamps — and one build request per
//! builder, all written in one transaction.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::error::Context;
use super::queries::select;
use super::{now, Store, StoreError};
use crate::engine::{DbConnection, DbRow};
use crate::events::Event;
use crate::model::{Buildset, NewBuildset, Property, SourceStamp};

/// The key that makes equal source stamps share one row.
trait StampKey {
    fn hash(&self) -> String;
}

impl StampKey for SourceStamp {
    fn hash(&self) -> String {
        let mut h = Sha256::new();
        for field in [
            self.branch.as_deref(),
            self.revision.as_deref(),
            Some(self.repository.as_str()),
            Some(self.project.as_str()),
            Some(self.codebase.as_str()),
        ] {
            // A tag distinguishes `None` from `Some("")`; the length keeps fields from running into each other.
            match field {
                None => h.update([0u8]),
                Some(s) => {
                    h.update([1u8]);
                    h.update((s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Store {
    /// Adds a buildset, its properties and source stamps, and one request per builder, atomically.
    /// Returns the buildset id and the request ids in the order of `builderids`.
    pub async fn add_buildset(&self, new: &NewBuildset) -> Result<(i64, Vec<i64>), StoreError> {
        self.add_buildset_notifying(new, None).await
    }

    /// Adds a buildset like [`Store::add_buildset`] and, in the same transaction, keeps the notices `decide`
    /// returns for each of its new requests (pending commit statuses).
    pub async fn add_buildset_notifying(
        &self,
        new: &NewBuildset,
        decide: Option<super::Decide<'_>>,
    ) -> Result<(i64, Vec<i64>), StoreError> {
        let op = || format!("add buildset {:?} for builders {:?}", new.reason, new.builderids);
        let submitted_at = now();
        let mut tx = self.write(op).await?;
        let bsid: i64 = sqlx::query_scalar(
            "INSERT INTO buildsets (reason, external_idstring, submitted_at, parent_buildid, scheduler) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.reason)
        .bind(&new.external_idstring)
        .bind(submitted_at)
        .bind(new.parent_buildid)
        .bind(&new.scheduler)
        .fetch_one(&mut *tx)
        .await
        .context(op)?;
        for ss in &new.sourcestamps {
            let ssid = find_or_add_sourcestamp(&mut tx, ss, submitted_at).await.context(op)?;
            sqlx::query(
                "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(bsid)
            .bind(ssid)
            .execute(&mut *tx)
            .await
            .context(op)?;
        }
        for changeid in &new.changeids {
            sqlx::query("INSERT INTO buildset_changes (buildsetid, changeid) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(bsid)
                .bind(changeid)
                .execute(&mut *tx)
                .await
                .context(|| format!("{}: change {changeid}", op()))?;
        }
        for p in &new.properties {
            sqlx::query("INSERT INTO buildset_properties (buildsetid, name, value, source) VALUES (?, ?, ?, ?)")
                .bind(bsid)
                .bind(&p.name)
                .bind(p.value.to_string())
                .bind(&p.source)
                .execute(&mut *tx)
                .await
                .context(|| format!("{}: property {:?}", op(), p.name))?;
        }
        let mut brids = Vec::with_capacity(new.builderids.len());
        for &builderid in &new.builderids {
            let brid: i64 = sqlx::query_scalar(
                "INSERT INTO buildrequests (buildsetid, builderid, priority, submitted_at, waited_for) \
                 VALUES (?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(bsid)
            .bind(builderid)
            .bind(new.request_priority(builderid))
            .bind(submitted_at)
            .bind(i16::from(new.waited_for))
            .fetch_one(&mut *tx)
            .await
            .context(op)?;
            brids.push(brid);
        }
        for write in &new.state {
            super::state::write_state(&mut tx, write).await?;
        }
        if let Some(decide) = decide {
            super::notifications::notify_requests(&mut tx, &brids, decide).await.context(op)?;
        }
        tx.commit().await.context(op)?;
        // As Buildbot: each request's `new`, then the buildset's.
        for (&brid, &builderid) in brids.iter().zip(&new.builderids) {
            self.publish(Event::BuildRequestAdded { brid, bsid, builderid });
        }
        self.publish(Event::BuildsetAdded { bsid });
        Ok((bsid, brids))
    }

    /// The buildset `bsid`, if it exists.
    pub async fn buildset(&self, bsid: i64) -> Result<Option<Buildset>, StoreError> {
        let op = || format!("get buildset {bsid}");
        let row =
            sqlx::query(select::<Buildset>("WHERE id = ?")).bind(bsid).fetch_optional(&self.pool).await.context(op)?;
        row.as_ref().map(buildset).transpose().context(op)
    }

    /// The properties of buildset `bsid`, by name.
    pub async fn buildset_properties(&self, bsid: i64) -> Result<Vec<Property>, StoreError> {
        let op = || format!("get properties of buildset {bsid}");
        let rows =
            sqlx::query("SELECT name, value, source FROM buildset_properties WHERE buildsetid = ? ORDER BY name")
                .bind(bsid)
                .fetch_all(&self.pool)
                .await
                .context(op)?;
        rows.iter().map(super::properties::property).collect::<Result<_, _>>().context(op)
    }

    /// The source stamps of buildset `bsid`, by codebase, each with whether changes belong to it.
    pub async fn buildset_stamps_with_changes(&self, bsid: i64) -> Result<Vec<(SourceStamp, bool)>, StoreError> {
        let op = || format!("get source stamps and changes of buildset {bsid}");
        let rows = sqlx::query(
            "SELECT ss.branch, ss.revision, ss.repository, ss.project, ss.codebase, \
             EXISTS (SELECT 1 FROM changes c WHERE c.sourcestampid = ss.id) AS has_changes \
             FROM buildset_sourcestamps bs JOIN sourcestamps ss ON ss.id = bs.sourcestampid \
             WHERE bs.buildsetid = ? ORDER BY ss.codebase, ss.id",
        )
        .bind(bsid)
        .fetch_all(&self.pool)
        .await
        .context(op)?;
        rows.iter()
            .map(|r| Ok((sourcestamp(r)?, r.try_get::<i64, _>("has_changes")? != 0)))
            .collect::<Result<_, sqlx::Error>>()
            .context(op)
    }

    /// The source stamps of buildset `bsid`, by codebase.
    pub async fn buildset_sourcestamps(&self, bsid: i64) -> Result<Vec<SourceStamp>, StoreError> {
        let stamps = self.buildset_stamps_with_changes(bsid).await?;
        Ok(stamps.into_iter().map(|(stamp, _)| stamp).collect())
    }
}

/// The id of the source stamp equal to `ss` (by its hash), added with `created_at` unless it exists.
pub(super) async fn find_or_add_sourcestamp(
    conn: &mut DbConnection,
    ss: &SourceStamp,
    created_at: i64,
) -> Result<i64, sqlx::Error> {
    let hash = ss.hash();
    sqlx::query(
        "INSERT INTO sourcestamps (branch, revision, repository, project, codebase, ss_hash, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ss_hash) DO NOTHING",
    )
    .bind(&ss.branch)
    .bind(&ss.revision)
    .bind(&ss.repository)
    .bind(&ss.project)
    .bind(&ss.codebase)
    .bind(&hash)
    .bind(created_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar("SELECT id FROM sourcestamps WHERE ss_hash = ?").bind(&hash).fetch_one(&mut *conn).await
}

pub(super) fn sourcestamp(r: &DbRow) -> Result<SourceStamp, sqlx::Error> {
    Ok(SourceStamp {
        branch: r.try_get("branch")?,
        revision: r.try_get("revision")?,
        repository: r.try_get("repository")?,
        project: r.try_get("project")?,
        codebase: r.try_get("codebase")?,
    })
}

pub(super) fn buildset(r: &DbRow) -> Result<Buildset, sqlx::Error> {
    Ok(Buildset {
        id: r.try_get("id")?,
        reason: r.try_get("reason")?,
        external_idstring: r.try_get("external_idstring")?,
        scheduler: r.try_get("scheduler")?,
        parent_buildid: r.try_get("parent_buildid")?,
        submitted_at: r.try_get("submitted_at")?,
        complete: r.try_get::<i16, _>("complete")? != 0,
        complete_at: r.try_get("complete_at")?,
        results: r.try_get("results")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_store;

    #[tokio::test]
    async fn a_buildset_for_three_builders_creates_three_requests() {
        let (store, _dir) = temp_store().await;
        let mut builderids = Vec::new();
        for name in ["linux", "macos", "windows"] {
            builderids.push(store.find_or_add_builder(name).await.expect("builder"));
        }
        let ss = SourceStamp {
            branch: Some("main".into()),
            revision: Some("abc123".into()),
            repository: "https://example.invalid/repo.git".into(),
            codebase: String::new(),
            project: "kiln".into(),
        };
        let new = NewBuildset {
            reason: "forced".into(),
            scheduler: Some("force".into()),
            properties: vec![Property {
                name: "owner".into(),
                value: serde_json::json!("alice"),
                source: "Force Build Form".into(),
            }],
            builderids: builderids.clone(),
            priority: Some(5),
            sourcestamps: vec![ss.clone()],
            ..NewBuildset::default()
        };
        let (bsid, brids) = store.add_buildset(&new).await.expect("buildset");
        assert_eq!(brids.len(), 3);
        for (&brid, &builderid) in brids.iter().zip(&builderids) {
            let br = store.build_request(brid).await.expect("get").expect("exists");
            assert_eq!((br.buildsetid, br.builderid, br.priority), (bsid, builderid, 5));
            assert!(!br.complete);
            assert_eq!(store.unclaimed_requests(builderid).await.expect("unclaimed"), vec![br]);
        }
        let bs = store.buildset(bsid).await.expect("get").expect("exists");
        assert_eq!((bs.reason.as_str(), bs.complete, bs.results), ("forced", false, None));
        assert_eq!(store.buildset_properties(bsid).await.expect("props"), new.properties);
        assert_eq!(store.buildset_sourcestamps(bsid).await.expect("ss"), vec![ss.clone()]);

        // The same source stamp in another buildset shares its row.
        store.add_buildset(&new).await.expect("second buildset");
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sourcestamps").fetch_one(&store.pool).await.expect("count");
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn requests_take_the_buildset_priority_else_their_builder_priority() {
        let (store, _dir) = temp_store().await;
        let (a, b) =
            (store.find_or_add_builder("a").await.expect("a"), store.find_or_add_builder("b").await.expect("b"));
        let builder_priorities = [(a, 3)].into_iter().collect();
        let mut new =
            NewBuildset { reason: "t".into(), builderids: vec![a, b], builder_priorities, ..NewBuildset::default() };
        let (_, brids) = store.add_buildset(&new).await.expect("buildset");
        let priority = |brid| {
            let store = store.clone();
            async move { store.build_request(brid).await.expect("get").expect("exists").priority }
        };
        assert_eq!((priority(brids[0]).await, priority(brids[1]).await), (3, 0));
        new.priority = Some(-2);
        let (_, brids) = store.add_buildset(&new).await.expect("buildset");
        assert_eq!((priority(brids[0]).await, priority(brids[1]).await), (-2, -2));
    }

    #[tokio::test]
    async fn a_failing_buildset_writes_nothing_and_its_state_goes_with_it() {
        let (store, _dir) = temp_store().await;
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let new = NewBuildset {
            reason: "bad".into(),
            builderids: vec![builder, 9999], // no such builder: foreign key violation
            state: vec![super::super::StateWrite::new("scheduler:s", "k", serde_json::json!(1))],
            ..NewBuildset::default()
        };
        assert!(store.add_buildset(&new).await.is_err());
        assert!(store.unclaimed_requests(builder).await.expect("unclaimed").is_empty());
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM buildsets").fetch_one(&store.pool).await.expect("count");
        assert_eq!(count, 0);
        assert_eq!(store.get_state("scheduler:s", "k").await.expect("state"), None);

        store.add_buildset(&NewBuildset { builderids: vec![builder], ..new }).await.expect("buildset");
        assert_eq!(store.get_state("scheduler:s", "k").await.expect("state"), Some(serde_json::json!(1)));
    }
}
