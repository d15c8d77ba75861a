//! Changes: what the change sources saw, each with the source stamp it stands for (shared with equal changes and
//! with the buildsets built from it).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;

use super::buildsets::find_or_add_sourcestamp;
use super::error::Context;
use super::queries::select;
use super::{now, Store, StoreError};
use crate::engine::{DbConnection, DbRow};
use crate::events::Event;
use crate::model::{Change, NewChange, SourceStamp, CHANGE_PROPERTY_SOURCE as PROPERTY_SOURCE};

impl Store {
    /// Adds a change and (unless an equal one exists) its source stamp, atomically; returns the change's id.
    /// A `when_timestamp` of 0 means now. An equal change stored before is stored again (a webhook or
    /// `sendchange` may mean to build it again).
    pub async fn add_change(&self, new: &NewChange) -> Result<i64, StoreError> {
        // Without `once` nothing is skipped, so there is always an id; the error only guards the invariant.
        let id = self.insert_change(new, false).await?;
        id.ok_or_else(|| StoreError::NotFound { what: "inserted change", id: 0 })
    }

    /// Adds a change as [`Store::add_change`] does, unless it has a revision and a change of the same source
    /// stamp (repository, branch, revision, project, codebase) is stored already: then returns `None`. Pollers
    /// use it, so a poll repeated after a crash (changes stored, state not yet saved) stores nothing twice.
    pub async fn add_change_once(&self, new: &NewChange) -> Result<Option<i64>, StoreError> {
        self.insert_change(new, new.revision.is_some()).await
    }

    async fn insert_change(&self, new: &NewChange, once: bool) -> Result<Option<i64>, StoreError> {
        let op = || format!("add change {:?} of {:?}", new.revision, new.repository);
        let mut tx = self.write(op).await?;
        let id = insert_change_in(&mut tx, new, once).await.context(op)?;
        tx.commit().await.context(op)?;
        if let Some(id) = id {
            self.publish(Event::ChangeAdded { changeid: id });
        }
        Ok(id)
    }

    /// The change `id`, if it exists.
    pub async fn change(&self, id: i64) -> Result<Option<Change>, StoreError> {
        let op = || format!("get change {id}");
        let row =
            sqlx::query(select::<Change>("WHERE id = ?")).bind(id).fetch_optional(&self.pool).await.context(op)?;
        row.as_ref().map(change).transpose().context(op)
    }
    /// The changes buildset `bsid` was made for, oldest first.
    pub async fn buildset_changes(&self, bsid: i64) -> Result<Vec<Change>, StoreError> {
        let op = || format!("get the changes of buildset {bsid}");
        let rows = sqlx::query(select::<Change>(
            "WHERE id IN (SELECT changeid FROM buildset_changes WHERE buildsetid = ?) ORDER BY id",
        ))
        .bind(bsid)
        .fetch_all(&self.pool)
        .await
        .context(op)?;
        rows.iter().map(change).collect::<Result<_, _>>().context(op)
    }

    /// The ids of the changes buildset `bsid` was made for, oldest first.
    pub async fn buildset_change_ids(&self, bsid: i64) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar("SELECT changeid FROM buildset_changes WHERE buildsetid = ? ORDER BY changeid")
            .bind(bsid)
            .fetch_all(&self.pool)
            .await
            .context(|| format!("get the change ids of buildset {bsid}"))
    }

    /// The changes build `buildid` builds: its buildset's.
    pub async fn build_changes(&self, buildid: i64) -> Result<Vec<Change>, StoreError> {
        let op = || format!("get the changes of build {buildid}");
        let bsid: Option<i64> = sqlx::query_scalar(
            "SELECT br.buildsetid FROM builds b JOIN buildrequests br ON br.id = b.buildrequestid WHERE b.id = ?",
        )
        .bind(buildid)
        .fetch_optional(&self.pool)
        .await
        .context(op)?;
        match bsid {
            Some(bsid) => self.buildset_changes(bsid).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Adds a change (see [`Store::add_change`]; with `once`, [`Store::add_change_once`]) within the caller's
/// transaction.
pub(super) async fn insert_change_in(
    tx: &mut DbConnection,
    new: &NewChange,
    once: bool,
) -> Result<Option<i64>, sqlx::Error> {
    let stored_at = now();
    let when = if new.when_timestamp == 0 { stored_at } else { new.when_timestamp };
    let ss = SourceStamp {
        branch: new.branch.clone(),
        revision: new.revision.clone(),
        repository: new.repository.clone(),
        project: new.project.clone(),
        codebase: new.codebase.clone(),
    };
    let files = Value::from(new.files.clone()).to_string();
    let properties: serde_json::Map<String, Value> = new
        .properties
        .iter()
        .map(|(name, value)| (name.clone(), Value::Array(vec![value.clone(), PROPERTY_SOURCE.into()])))
        .collect();
    let properties = Value::Object(properties).to_string();
    let ssid = find_or_add_sourcestamp(&mut *tx, &ss, stored_at).await?;
    if once {
        let stored: Option<i64> = sqlx::query_scalar("SELECT id FROM changes WHERE sourcestampid = ? LIMIT 1")
            .bind(ssid)
            .fetch_optional(&mut *tx)
            .await?;
        if stored.is_some() {
            return Ok(None);
        }
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO changes (author, committer, comments, branch, revision, repository, project, codebase, \
         category, when_timestamp, files, properties, sourcestampid) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&new.author)
    .bind(&new.committer)
    .bind(&new.comments)
    .bind(&new.branch)
    .bind(&new.revision)
    .bind(&new.repository)
    .bind(&new.project)
    .bind(&new.codebase)
    .bind(&new.category)
    .bind(when)
    .bind(files)
    .bind(properties)
    .bind(ssid)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(id))
}

fn decode(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

pub(super) fn change(r: &DbRow) -> Result<Change, sqlx::Error> {
    let files: String = r.try_get("files")?;
    let properties: String = r.try_get("properties")?;
    let properties: BTreeMap<String, Value> = serde_json::from_str(&properties).map_err(decode)?;
    Ok(Change {
        id: r.try_get("id")?,
        sourcestampid: r.try_get::<Option<i64>, _>("sourcestampid")?.unwrap_or_default(),
        parent_changeids: r.try_get::<Option<i64>, _>("parent_changeid")?.into_iter().collect(),
        reported: NewChange {
            author: r.try_get("author")?,
            committer: r.try_get("committer")?,
            comments: r.try_get("comments")?,
            files: serde_json::from_str(&files).map_err(decode)?,
            revision: r.try_get("revision")?,
            branch: r.try_get("branch")?,
            repository: r.try_get("repository")?,
            project: r.try_get("project")?,
            codebase: r.try_get("codebase")?,
            category: r.try_get("category")?,
            when_timestamp: r.try_get("when_timestamp")?,
            // Stored as `[value, source]`; the value alone otherwise.
            properties: properties
                .into_iter()
                .map(|(name, pair)| match pair {
                    Value::Array(mut pair) if pair.len() == 2 => (name, pair.swap_remove(0)),
                    other => (name, other),
                })
                .collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_store;

    fn sample() -> NewChange {
        NewChange {
            author: "Alice <alice@example.invalid>".into(),
            committer: Some("Bob <bob@example.invalid>".into()),
            comments: "fix the frobnicator".into(),
            files: vec!["src/a.rs".into(), "README.md".into()],
            revision: Some("abc123".into()),
            branch: Some("main".into()),
            repository: "https://example.invalid/repo.git".into(),
            project: "kiln".into(),
            codebase: String::new(),
            category: Some("push".into()),
            when_timestamp: 1_700_000_000,
            properties: BTreeMap::from([("event".to_string(), serde_json::json!("push"))]),
        }
    }

    #[tokio::test]
    async fn a_change_round_trips_and_equal_changes_share_a_source_stamp() {
        let (store, _dir) = temp_store().await;
        let new = sample();
        let a = store.add_change(&new).await.expect("add");
        let got = store.change(a).await.expect("get").expect("exists");
        assert_eq!(got.author, new.author);
        assert_eq!((got.files.clone(), got.properties.clone()), (new.files.clone(), new.properties.clone()));
        assert_eq!((got.when_timestamp, got.category.as_deref()), (1_700_000_000, Some("push")));
        let raw: String = sqlx::query_scalar("SELECT properties FROM changes WHERE id = ?")
            .bind(a)
            .fetch_one(&store.pool)
            .await
            .expect("raw");
        assert_eq!(raw, r#"{"event":["push","Change"]}"#);

        let b = store.add_change(&new).await.expect("add again");
        assert_ne!(a, b);
        assert_eq!(store.change(b).await.expect("get").expect("exists").sourcestampid, got.sourcestampid);
        let other = store.add_change(&NewChange { revision: Some("def456".into()), ..new }).await.expect("add");
        assert_ne!(store.change(other).await.expect("get").expect("exists").sourcestampid, got.sourcestampid);
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sourcestamps").fetch_one(&store.pool).await.expect("count");
        assert_eq!(count, 2);
        assert!(store.change(other + 1).await.expect("get").is_none());
    }

    #[tokio::test]
    async fn a_change_is_added_once_per_source_stamp_when_asked() {
        let (store, _dir) = temp_store().await;
        let new = sample();
        let first = store.add_change_once(&new).await.expect("add").expect("new");
        assert_eq!(store.add_change_once(&new).await.expect("add again"), None);
        let other_branch = NewChange { branch: Some("release".into()), ..new.clone() };
        assert!(store.add_change_once(&other_branch).await.expect("add").is_some_and(|id| id != first));
        let no_revision = NewChange { revision: None, ..new };
        assert!(store.add_change_once(&no_revision).await.expect("add").is_some());
        assert!(store.add_change_once(&no_revision).await.expect("add twice").is_some());
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes").fetch_one(&store.pool).await.expect("n");
        assert_eq!(count, 4);
    }

    #[tokio::test]
    async fn a_build_builds_the_changes_of_its_buildset() {
        let (store, _dir) = temp_store().await;
        let first = store.add_change(&sample()).await.expect("add");
        let second = store.add_change(&NewChange { revision: Some("def456".into()), ..sample() }).await.expect("add");
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        let new = crate::NewBuildset {
            reason: "two changes".into(),
            builderids: vec![builder],
            changeids: vec![second, first],
            ..Default::default()
        };
        let (bsid, brids) = store.add_buildset(&new).await.expect("buildset");
        assert_eq!(store.buildset_change_ids(bsid).await.expect("ids"), [first, second]);
        let (buildid, _) = store.add_build(builder, brids[0], worker, master).await.expect("build");
        let built: Vec<i64> = store.build_changes(buildid).await.expect("changes").iter().map(|c| c.id).collect();
        assert_eq!(built, [first, second]);
        assert!(store.build_changes(buildid + 1).await.expect("no build").is_empty());
    }

    #[tokio::test]
    async fn a_change_without_time_is_stamped_now() {
        let (store, _dir) = temp_store().await;
        let before = now();
        let id = store.add_change(&NewChange { when_timestamp: 0, ..sample() }).await.expect("add");
        let when = store.change(id).await.expect("get").expect("exists").when_timestamp;
        assert!(when >= before && when <= now(), "{when}");
    }
}
