//! Object state: small JSON facts kept by long-lived objects (a poller's last seen heads, a scheduler's last
//! build) under their unique name, so they resume where they stopped after a restart (Buildbot's `object_state`).

use super::error::Context;
use super::{Store, StoreError};
use crate::engine::DbConnection;

impl Store {
    /// The value stored for `key` of the object `name`, if any.
    pub async fn get_state(&self, name: &str, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let op = || format!("get state {name:?} {key:?}");
        let text: Option<String> = sqlx::query_scalar("SELECT value FROM object_state WHERE name = ? AND key = ?")
            .bind(name)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context(op)?;
        match text {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError::Db { op: op(), source: sqlx::Error::Decode(Box::new(e)) }),
        }
    }

    /// Stores `value` for `key` of the object `name`, replacing what was there.
    pub async fn set_state(&self, name: &str, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        let op = || format!("set state {name:?} {key:?}");
        let mut tx = self.write(op).await?;
        sqlx::query(
            "INSERT INTO object_state (name, key, value) VALUES (?, ?, ?) \
             ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(key)
        .bind(value.to_string())
        .execute(&mut *tx)
        .await
        .context(op)?;
        tx.commit().await.context(op)?;
        Ok(())
    }
}

pub use crate::model::StateWrite;

impl Store {
    /// Stores each of `writes` (replacing what was there), all or none.
    pub async fn set_states(&self, writes: &[StateWrite]) -> Result<(), StoreError> {
        let op = || format!("set {} state value(s)", writes.len());
        let mut tx = self.write(op).await?;
        for write in writes {
            write_state(&mut tx, write).await?;
        }
        tx.commit().await.context(op)?;
        Ok(())
    }
}

impl Store {
    /// Forgets `key` of the object `name`, if it was stored.
    pub async fn delete_state(&self, name: &str, key: &str) -> Result<(), StoreError> {
        let op = || format!("delete state {name:?} {key:?}");
        let mut tx = self.write(op).await?;
        sqlx::query("DELETE FROM object_state WHERE name = ? AND key = ?")
            .bind(name)
            .bind(key)
            .execute(&mut *tx)
            .await
            .context(op)?;
        tx.commit().await.context(op)?;
        Ok(())
    }
}

/// Upserts one object-state value within the caller's transaction.
pub(super) async fn write_state(conn: &mut DbConnection, write: &StateWrite) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO object_state (name, key, value) VALUES (?, ?, ?) \
         ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
    )
    .bind(&write.name)
    .bind(&write.key)
    .bind(write.value.to_string())
    .execute(&mut *conn)
    .await
    .context(|| format!("set state {:?} {:?}", write.name, write.key))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{temp_store, url};
    use super::*;

    #[tokio::test]
    async fn state_is_absent_then_upserted_and_survives_reopen() {
        let (store, dir) = temp_store().await;
        assert_eq!(store.get_state("git:a", "last_rev").await.expect("get"), None);

        store.set_state("git:a", "last_rev", &json!({"main": "abc"})).await.expect("set");
        store.set_state("git:a", "other", &json!([1, 2])).await.expect("set other key");
        store.set_state("git:b", "last_rev", &json!("b")).await.expect("set other name");
        assert_eq!(store.get_state("git:a", "last_rev").await.expect("get"), Some(json!({"main": "abc"})));

        store.set_state("git:a", "last_rev", &json!({"main": "def", "dev": "123"})).await.expect("replace");
        assert_eq!(
            store.get_state("git:a", "last_rev").await.expect("get"),
            Some(json!({"main": "def", "dev": "123"}))
        );
        store.close().await;

        let store = Store::open(&url(&dir)).await.expect("reopen");
        assert_eq!(
            store.get_state("git:a", "last_rev").await.expect("get"),
            Some(json!({"dev": "123", "main": "def"}))
        );
        assert_eq!(store.get_state("git:a", "other").await.expect("get"), Some(json!([1, 2])));
        assert_eq!(store.get_state("git:b", "last_rev").await.expect("get"), Some(json!("b")));
        assert_eq!(store.get_state("git:b", "missing").await.expect("get"), None);
    }

    #[tokio::test]
    async fn several_values_are_set_together() {
        let (store, _dir) = temp_store().await;
        store.set_state("s", "a", &json!(0)).await.expect("set");
        let writes = [StateWrite::new("s", "a", json!(1)), StateWrite::new("t", "b", json!([2]))];
        store.set_states(&writes).await.expect("set both");
        assert_eq!(store.get_state("s", "a").await.expect("get"), Some(json!(1)));
        assert_eq!(store.get_state("t", "b").await.expect("get"), Some(json!([2])));
        store.delete_state("s", "a").await.expect("delete");
        assert_eq!(store.get_state("s", "a").await.expect("get"), None);
        store.delete_state("s", "a").await.expect("delete what is not there");
    }
}
