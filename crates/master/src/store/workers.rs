//! Workers: one row per worker name ever configured, with the info it last reported.

use super::error::Context;
use super::{find_or_add_by_name, Store, StoreError};

impl Store {
    /// Adds a worker named `name`; fails (unique violation) if it exists.
    pub async fn add_worker(&self, name: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("INSERT INTO workers (name) VALUES (?) RETURNING id")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .context(|| format!("add worker {name:?}"))
    }

    /// The id of the worker named `name`, adding it if needed.
    pub async fn find_or_add_worker(&self, name: &str) -> Result<i64, StoreError> {
        find_or_add_by_name(
            self,
            "worker",
            "INSERT INTO workers (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
            "SELECT id FROM workers WHERE name = ?",
            name,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::temp_store;

    #[tokio::test]
    async fn workers_are_found_by_name_and_added_once() {
        let (store, _dir) = temp_store().await;
        let a = store.add_worker("a").await.expect("add");
        assert!(store.add_worker("a").await.is_err(), "names are unique");
        assert_eq!(store.find_or_add_worker("a").await.expect("find"), a);
        let b = store.find_or_add_worker("b").await.expect("add b");
        assert_ne!(a, b);
    }
}
