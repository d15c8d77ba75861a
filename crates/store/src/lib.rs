//! The master's persistent state, and the only crate that speaks SQL. Every stage of the flow (changes, buildsets and requests, claims, builds, steps,
//! logs) writes here before the next stage acts, so a master that is killed and started again resumes from the
//! store (DESIGN.md). SQLite now, in WAL mode; the SQL is kept portable so PostgreSQL can follow.
//!
//! Operations that must be atomic run in one transaction; on SQLite writers take the write lock up front
//! (`BEGIN IMMEDIATE`) so two writers wait for each other (busy timeout) instead of failing half-way.

mod auth;
mod builders;
mod buildrequests;
mod builds;
mod buildsets;
mod change_log;
mod changes;
mod deliveries;
mod engine;
mod error;
mod logs;
mod masters;
mod notifications;
mod properties;
#[cfg(test)]
mod published;
mod queries;
mod recent;
mod resources;
mod retention;
mod schedulers;
mod state;
mod steps;
mod url;
mod workers;

// The shared vocabulary, under the module names the store's files use (`crate::model::Build`).
use kiln_model::{events, model, results};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::model::{
    Build, BuildRequest, Buildset, Change, CompletedBuildset, Log, NewBuildset, Property, SourceStamp, StateWrite,
    Step, Worker, CHANGE_PROPERTY_SOURCE,
};
pub use auth::{ApiToken, AuditEntry, AuditFilter, NewAuditEntry, SessionRow};
pub use builds::RestartCleanup;
pub use deliveries::Delivered;
pub use error::StoreError;
pub use logs::{ChunkSpan, LogType, LogWriter};
pub use notifications::{now_ms, BuildsetDecide, CompletionDecide, Decide, NotificationQuery, Outcome};
pub use queries::{Field, FieldKind, FilterValue, ListQuery, LogOrigin, Op, Page, QueryError, Resource};
pub use retention::Expired;
pub use url::StoreUrl;

use crate::events::{Event, EventBus};
use engine::{DbPool, DbTransaction};
use error::Context;

/// After a log has been written this much, the store checkpoints the WAL when the log finishes (see
/// [`Store::checkpoint_after_logs`]).
const CHECKPOINT_AFTER_LOG_BYTES: u64 = 1024 * 1024;

/// The master's database: a pool of connections with typed operations on it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: DbPool,
    /// Where every write publishes what it changed, after its transaction commits.
    events: EventBus,
    /// Log bytes written since the last checkpoint the store asked for.
    log_bytes: Arc<AtomicU64>,
    /// Bytes of log text stored since the store was opened (for the metrics).
    log_bytes_stored: Arc<AtomicU64>,
}

impl Store {
    /// Opens (creating it if missing) the database at `url` and brings its schema up to date: [`Store::connect`]
    /// on the URL read by [`StoreUrl::parse`].
    ///
    /// `url` is `sqlite:PATH` or `sqlite::memory:`; `postgres://…` is a store URL, but no engine opens it yet:
    /// it gives [`StoreError::Unsupported`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::connect(&StoreUrl::parse(url)?).await
    }

    /// Opens (creating it if missing) the database `url` names and brings its schema up to date.
    pub async fn connect(url: &StoreUrl) -> Result<Store, StoreError> {
        let pool = match url {
            StoreUrl::Sqlite { path } => engine::sqlite::open(path, url).await?,
            StoreUrl::Postgres { .. } => {
                return Err(StoreError::Unsupported(
                    "PostgreSQL is not supported yet: for now the master's store must be a sqlite: URL".into(),
                ))
            }
        };
        Ok(Store { pool, events: EventBus::new(), log_bytes: Arc::default(), log_bytes_stored: Arc::default() })
    }

    /// The bus this store's writes publish on.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Tells the bus's subscribers about a write; called only after the write's transaction committed.
    fn publish(&self, event: Event) {
        self.events.publish(event);
    }

    /// Counts `bytes` of log writes, and when a log finishes (`finished`) after more than
    /// [`CHECKPOINT_AFTER_LOG_BYTES`] of them, checkpoints the WAL and truncates it, on a task of its own (it
    /// waits for readers and writers at most the busy timeout, without holding up the log's writer). A big log
    /// rewrites many pages (its raw tail grows in place until it is compressed), and without this the WAL file
    /// would keep their size on disk.
    /// Bytes of log text stored since the store was opened.
    pub fn log_bytes_stored(&self) -> u64 {
        self.log_bytes_stored.load(Ordering::Relaxed)
    }

    fn checkpoint_after_logs(&self, bytes: u64, finished: bool) {
        let total = self.log_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !finished || total < CHECKPOINT_AFTER_LOG_BYTES {
            return;
        }
        self.log_bytes.store(0, Ordering::Relaxed);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = engine::sqlite::checkpoint(&pool).await {
                tracing::warn!(error = %e, "checkpointing the store's WAL failed (SQLite retries at the next one)");
            }
        });
    }

    /// Closes every connection, waiting for operations in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that will write (on SQLite it takes the write lock now, so concurrent writers queue
    /// instead of failing half-way).
    async fn write(&self, op: impl FnOnce() -> String) -> Result<DbTransaction, StoreError> {
        engine::sqlite::begin_write(&self.pool).await.context(op)
    }
}

/// The id of the row named `name` (`what` is for errors): `insert` adds it unless it exists, `select` finds it.
async fn find_or_add_by_name(
    store: &Store,
    what: &'static str,
    insert: &'static str,
    select: &'static str,
    name: &str,
) -> Result<i64, StoreError> {
    let op = || format!("find or add {what} {name:?}");
    // Nearly always the row is there (a worker's id is found at every build): a read, without the write lock.
    if let Some(id) = sqlx::query_scalar(select).bind(name).fetch_optional(&store.pool).await.context(op)? {
        return Ok(id);
    }
    let mut tx = store.write(op).await?;
    sqlx::query(insert).bind(name).execute(&mut *tx).await.context(op)?;
    let id = sqlx::query_scalar(select).bind(name).fetch_one(&mut *tx).await.context(op)?;
    tx.commit().await.context(op)?;
    Ok(id)
}

/// Now, in epoch seconds (Buildbot's timestamps).
fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    //! Helpers for the store's tests and, through the `test-support` feature, other crates': real SQLite files
    //! in temporary directories.

    use super::Store;

    /// A store on a fresh file in a new temporary directory (kept alive by the returned guard).
    pub async fn temp_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&url(&dir)).await.expect("open store");
        (store, dir)
    }

    /// The URL of the database file in `dir`.
    pub fn url(dir: &tempfile::TempDir) -> String {
        format!("sqlite:{}", dir.path().join("state.sqlite").display())
    }

    /// A running build (of builder `b` on worker `w` by master `m`, for a new buildset); returns its id.
    pub async fn running_build(store: &Store) -> i64 {
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        let new = super::NewBuildset { reason: "test".into(), builderids: vec![builder], ..Default::default() };
        let brid = store.add_buildset(&new).await.expect("buildset").1[0];
        store.add_build(builder, brid, worker, master).await.expect("build").0
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{temp_store, url};
    use super::*;

    async fn table_names(store: &Store) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
             AND name NOT LIKE 'sqlite%' ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .expect("tables")
    }

    #[tokio::test]
    async fn migrations_apply_on_a_fresh_file_and_on_reopen() {
        let (store, dir) = temp_store().await;
        let tables = table_names(&store).await;
        for t in [
            "builders",
            "build_properties",
            "buildrequest_claims",
            "buildrequests",
            "builds",
            "buildset_changes",
            "buildset_properties",
            "buildset_sourcestamps",
            "buildsets",
            "changes",
            "log_chunks",
            "logs",
            "masters",
            "sourcestamps",
            "steps",
            "workers",
        ] {
            assert!(tables.contains(&t.to_string()), "missing table {t}: {tables:?}");
        }
        let worker = store.find_or_add_worker("w1").await.expect("worker");
        store.close().await;

        let store = Store::open(&url(&dir)).await.expect("reopen");
        assert_eq!(table_names(&store).await, tables);
        assert_eq!(store.find_or_add_worker("w1").await.expect("worker"), worker);
        let journal: String =
            sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.pool).await.expect("journal mode");
        assert_eq!(journal, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&store.pool).await.expect("foreign keys");
        assert_eq!(fk, 1);
    }

    #[tokio::test]
    async fn in_memory_store_works() {
        let store = Store::open("sqlite::memory:").await.expect("open");
        let a = store.find_or_add_builder("b").await.expect("builder");
        assert_eq!(store.find_or_add_builder("b").await.expect("builder"), a);
    }

    #[tokio::test]
    async fn postgres_is_refused_clearly_and_other_urls_are_invalid() {
        let err = Store::open("postgres://kiln@localhost/kiln").await.expect_err("postgres not yet");
        assert!(matches!(err, StoreError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("PostgreSQL is not supported yet"));
        let err = Store::open("mysql://x").await.expect_err("invalid");
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    }
}
