//! SQLite, the store's engine for now: a file in WAL mode (or a database in memory, for tests), its pool, its
//! pragmas and migrations, and what only SQLite says (`BEGIN IMMEDIATE`, `PRAGMA wal_checkpoint`,
//! `PRAGMA incremental_vacuum`).

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlSafeStr;

use crate::{StoreError, StoreUrl};

/// The engine.
pub(crate) type Db = sqlx::Sqlite;
/// A pool of connections to the database.
pub(crate) type DbPool = SqlitePool;
/// A row a query returned.
pub(crate) type DbRow = sqlx::sqlite::SqliteRow;
/// One connection (what a transaction or a pooled connection dereferences to).
pub(crate) type DbConnection = sqlx::SqliteConnection;
/// The bound values of a query built at run time.
pub(crate) type DbArguments = sqlx::sqlite::SqliteArguments;
/// A transaction that owns its connection.
pub(crate) type DbTransaction = sqlx::Transaction<'static, Db>;

/// How long a writer waits for another one to release SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes the WAL file keeps after a checkpoint (SQLite's `journal_size_limit`).
pub(crate) const WAL_SIZE_LIMIT: u64 = 64 * 1024;

/// Connections in the pool of a file database (SQLite serialises writers anyway; readers run in parallel).
const MAX_CONNECTIONS: u32 = 8;

/// The schema migrations, embedded in the binary. (Listed here rather than with `sqlx::migrate!`, which needs
/// sqlx's proc-macros and would build SQLite a second time for the host.)
pub(crate) fn migrator() -> Migrator {
    // Versions from 6 on were numbered by the issue that brought them, so that migrations made side by side do
    // not collide; they apply in this order.
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("initial"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("object state"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_object_state.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("worker pause reason"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_worker_pause_reason.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("buildset changes"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_buildset_changes.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("changes lineage"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0005_changes_lineage.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("ui indexes"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0010_ui_indexes.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            12,
            Cow::Borrowed("auth"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0012_auth.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            Cow::Borrowed("schedulers"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0013_schedulers.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            14,
            Cow::Borrowed("notifications"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0014_notifications.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Opens (creating it if missing) the database file `path` (`url` is for errors), or one in memory for
/// `:memory:`, and brings its schema up to date.
pub(crate) async fn open(path: &Path, url: &StoreUrl) -> Result<DbPool, StoreError> {
    let open_error = |source| StoreError::Open { url: url.to_string(), source };
    let in_memory = path == Path::new(":memory:");
    let options = match in_memory {
        true => SqliteConnectOptions::from_str("sqlite::memory:").map_err(open_error)?,
        false => SqliteConnectOptions::new().filename(path),
    };
    let options = options
        .create_if_missing(true)
        // A new store gives pages freed by log retention back to the file system, a few at a time
        // (`Store::vacuum_some`); a store created before keeps reusing them (SQLite only sets this at creation).
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        .journal_mode(if in_memory { SqliteJournalMode::Memory } else { SqliteJournalMode::Wal })
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // After a checkpoint the next writer starts the WAL over, and then cuts the file down to this size:
        // otherwise it keeps its high-water mark (about 4 MB at the default autocheckpoint) for ever.
        .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
    // An in-memory database lives as long as its connection: keep exactly one, forever.
    let pool_options = if in_memory {
        SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
    };
    let pool = pool_options.connect_with(options).await.map_err(open_error)?;
    migrator().run(&pool).await.map_err(|source| StoreError::Migrate { url: url.to_string(), source })?;
    Ok(pool)
}

/// Begins a transaction that will write: takes SQLite's write lock now rather than at the first write, so
/// concurrent writers queue on the busy timeout instead of failing with "database is locked".
pub(crate) async fn begin_write(pool: &DbPool) -> Result<DbTransaction, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Checkpoints the WAL into the database file and truncates it.
pub(crate) async fn checkpoint(pool: &DbPool) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.map(drop)
}

/// Gives back to the file system up to `pages` free pages (a database created with incremental auto-vacuum);
/// returns how many free pages are left.
pub(crate) async fn vacuum_some(connection: &mut DbConnection, pages: u32) -> Result<i64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA incremental_vacuum({pages})"))).execute(&mut *connection).await?;
    sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&mut *connection).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's SQL numbers its parameters (`$1`), as PostgreSQL needs; SQLite binds `$N` to the N-th value
    /// whatever the order the numbers first appear in, and a number may repeat.
    #[tokio::test]
    async fn numbered_parameters_bind_by_number() {
        let url = StoreUrl::parse("sqlite::memory:").expect("url");
        let StoreUrl::Sqlite { path } = &url else { panic!("an SQLite URL") };
        let pool = open(path, &url).await.expect("open");
        let row: (i64, String, i64, i64) = sqlx::query_as("SELECT $3 + $1, $2, $1, $3")
            .bind(2_i64)
            .bind("two")
            .bind(40_i64)
            .fetch_one(&pool)
            .await
            .expect("numbered parameters");
        assert_eq!(row, (42, "two".to_string(), 2, 40));
        let ids: Vec<i64> = sqlx::query_scalar(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
             SELECT i FROM n WHERE i IN ($1, $3) OR i = $1 ORDER BY i",
        )
        .bind(2_i64)
        .bind(9_i64)
        .bind(7_i64)
        .fetch_all(&pool)
        .await
        .expect("IN with numbered parameters");
        assert_eq!(ids, [2, 7]);
    }

    /// `INSERT … RETURNING`, which both engines have, gives the new row's id.
    #[tokio::test]
    async fn insert_returning_gives_the_new_id() {
        let url = StoreUrl::parse("sqlite::memory:").expect("url");
        let StoreUrl::Sqlite { path } = &url else { panic!("an SQLite URL") };
        let pool = open(path, &url).await.expect("open");
        let first: i64 = sqlx::query_scalar("INSERT INTO builders (name) VALUES ($1) RETURNING id")
            .bind("a")
            .fetch_one(&pool)
            .await
            .expect("a");
        let second: i64 = sqlx::query_scalar("INSERT INTO builders (name) VALUES ($1) RETURNING id")
            .bind("b")
            .fetch_one(&pool)
            .await
            .expect("b");
        assert!(second > first, "{first} then {second}");
    }
}
