//! Where the store is: `[store] url` in `master.toml`, typed.

use std::fmt;
use std::path::PathBuf;

use crate::StoreError;

/// A database the store can be opened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file: `sqlite:PATH` or `sqlite://PATH` (a relative path is the master directory's business);
    /// `sqlite::memory:` is a database in memory, for tests.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`), kept exactly as written. No engine opens it yet:
    /// the config refuses it, and so does [`crate::Store::connect`].
    Postgres { url: String },
}

impl StoreUrl {
    /// Reads a store URL; anything but `sqlite:PATH`, `sqlite://PATH` and `postgres(ql)://…` is
    /// [`StoreError::InvalidUrl`].
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres { url: text.to_string() });
        }
        text.strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .filter(|path| !path.is_empty())
            .map(|path| StoreUrl::Sqlite { path: PathBuf::from(path) })
            .ok_or_else(|| StoreError::InvalidUrl { url: text.into() })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Postgres { url } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_into_their_engine() {
        let sqlite = |p: &str| StoreUrl::Sqlite { path: PathBuf::from(p) };
        assert_eq!(StoreUrl::parse("sqlite:state.sqlite").expect("relative"), sqlite("state.sqlite"));
        assert_eq!(StoreUrl::parse("sqlite:///var/lib/kiln/s.db").expect("absolute"), sqlite("/var/lib/kiln/s.db"));
        assert_eq!(StoreUrl::parse("sqlite://db/s.db").expect("two slashes"), sqlite("db/s.db"));
        assert_eq!(StoreUrl::parse("sqlite::memory:").expect("memory"), sqlite(":memory:"));
        let pg = "postgresql://kiln@db.example.org/kiln";
        assert_eq!(StoreUrl::parse(pg).expect("postgres"), StoreUrl::Postgres { url: pg.into() });
        for bad in ["", "sqlite:", "sqlite://", "mysql://x", "state.sqlite"] {
            assert!(matches!(StoreUrl::parse(bad), Err(StoreError::InvalidUrl { .. })), "{bad:?}");
        }
        assert_eq!(sqlite("a/b.sqlite").to_string(), "sqlite:a/b.sqlite");
        assert_eq!(StoreUrl::parse(pg).expect("postgres").to_string(), pg);
    }
}
