//! Workers: one row per worker name ever configured, with the info it last reported and whether it is paused.

use std::collections::BTreeMap;

use super::error::Context;
use super::{find_or_add_by_name, Store, StoreError};
use crate::events::Event;

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

    /// Pauses (with `reason`) or unpauses the worker named `name`; returns `false` if there is no such worker.
    pub async fn set_worker_paused(&self, name: &str, paused: bool, reason: Option<&str>) -> Result<bool, StoreError> {
        let op = || format!("set worker {name:?} paused = {paused}");
        let mut tx = self.write(op).await?;
        let reason = reason.filter(|_| paused);
        let workerid: Option<i64> =
            sqlx::query_scalar("UPDATE workers SET paused = ?, pause_reason = ? WHERE name = ? RETURNING id")
                .bind(i16::from(paused))
                .bind(reason)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .context(op)?;
        tx.commit().await.context(op)?;
        let Some(workerid) = workerid else { return Ok(false) };
        let name = name.to_string();
        self.publish(match paused {
            true => Event::WorkerPaused { workerid, name, reason: reason.map(str::to_string) },
            false => Event::WorkerUnpaused { workerid, name },
        });
        Ok(true)
    }

    /// The paused workers, each with the reason it was paused for (if one was given).
    pub async fn paused_workers(&self) -> Result<BTreeMap<String, Option<String>>, StoreError> {
        let paused: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, pause_reason FROM workers WHERE paused = 1")
                .fetch_all(&self.pool)
                .await
                .context(|| "get paused workers".to_string())?;
        Ok(paused.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::temp_store;

    #[tokio::test]
    async fn workers_are_found_by_name_and_added_once() {
        let (store, _dir) = temp_store().await;
        let a = store.add_worker("a").await.expect("add");
        assert!(store.add_worker("a").await.is_err(), "names are unique");
        assert_eq!(store.find_or_add_worker("a").await.expect("find"), a);
        let b = store.find_or_add_worker("b").await.expect("add b");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn pausing_is_stored_with_its_reason() {
        let (store, _dir) = temp_store().await;
        store.add_worker("a").await.expect("add");
        store.add_worker("b").await.expect("add");
        assert!(store.paused_workers().await.expect("paused").is_empty());
        assert!(store.set_worker_paused("a", true, Some("disk full")).await.expect("pause"));
        assert!(!store.set_worker_paused("nobody", true, None).await.expect("pause"), "no such worker");
        let paused = store.paused_workers().await.expect("paused");
        assert_eq!(paused, [("a".to_string(), Some("disk full".to_string()))].into());
        assert!(store.set_worker_paused("a", false, Some("ignored")).await.expect("unpause"));
        assert!(store.paused_workers().await.expect("paused").is_empty());
    }
}
