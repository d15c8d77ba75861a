//! The database engine under the store. Everything that depends on which engine it is lives below this module:
//! connecting (SQLite's pragmas, its WAL and pool), the migrations (`crates/store/migrations/sqlite/`), how a
//! writing transaction begins, checkpoints and vacuuming, and the engine's row, connection, argument and
//! transaction types. The rest of the store names those types by the aliases re-exported here (`DbRow`,
//! `DbPool`, …) and writes SQL that SQLite and PostgreSQL both accept (`ON CONFLICT … DO NOTHING/UPDATE`,
//! `RETURNING`, `excluded.`); what stays SQLite's own outside this module says so in a comment.
//!
//! One engine now, SQLite ([`sqlite`]). A second (PostgreSQL) adds its module beside it and turns these aliases
//! into a choice at open time ([`crate::StoreUrl`] already names both).

pub(crate) mod sqlite;

pub(crate) use sqlite::{Db, DbArguments, DbConnection, DbPool, DbRow, DbTransaction};
