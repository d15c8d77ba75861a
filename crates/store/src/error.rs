//! The store's error type: every variant says which operation failed and on what.

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names an engine this build of Kiln cannot use yet.
    #[error("{0}")]
    Unsupported(String),
    /// The URL is not a database URL Kiln knows.
    #[error("invalid store URL {url:?}: expected sqlite:PATH, sqlite::memory: or postgres://…")]
    InvalidUrl { url: String },
    /// The database could not be opened.
    #[error("cannot open store {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations failed.
    #[error("cannot migrate store {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed; `op` says which operation and on which ids.
    #[error("store: {op}: {source}")]
    Db {
        op: String,
        #[source]
        source: sqlx::Error,
    },
    /// A list names a field its resource does not have (a bug of the caller: the fields are in the code).
    #[error("store: {op}: {source}")]
    Query {
        op: String,
        #[source]
        source: super::QueryError,
    },
    /// A row the operation needs does not exist (or is not in the state the operation needs).
    #[error("store: {what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    /// A result code that the operation does not accept (e.g. RETRY for a build request).
    #[error("store: {op}: result {results} is not allowed")]
    InvalidResult { op: &'static str, results: i32 },
    /// Text appended to a log is not whole lines.
    #[error("store: append to log {logid}: {reason}")]
    InvalidLogText { logid: i64, reason: &'static str },
    /// The log is finished and takes no more lines.
    #[error("store: log {logid} is complete")]
    LogComplete { logid: i64 },
    /// The log's end is not where its writer left it: another writer appended to it.
    #[error("store: log {logid} was changed by another writer")]
    LogConflict { logid: i64 },
    /// A stored log chunk could not be compressed or decompressed, or is not UTF-8.
    #[error("store: log {logid} chunk at line {first_line}: {reason}")]
    LogChunk { logid: i64, first_line: i64, reason: String },
    /// A blocking task (compression) panicked or was cancelled.
    #[error("store: {op}: {source}")]
    Task {
        op: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Attaches the operation's description to a database error.
pub(crate) trait Context<T> {
    /// Turns a `sqlx::Error` into [`StoreError::Db`] with `op()` as the description.
    fn context(self, op: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, op: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Db { op: op(), source })
    }
}

/// Whether a database error is a violation of a unique constraint (someone else got there first).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}
