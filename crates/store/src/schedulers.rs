//! Whether each scheduler is enabled (Buildbot's `schedulers.enabled`, set by the `enable` control): a disabled
//! scheduler submits nothing. A scheduler never switched has no row and is enabled.

use super::error::Context;
use super::{Store, StoreError};

impl Store {
    /// Whether the scheduler `name` is enabled (it is unless someone disabled it).
    pub async fn scheduler_enabled(&self, name: &str) -> Result<bool, StoreError> {
        let op = || format!("get whether scheduler {name:?} is enabled");
        let enabled: Option<bool> = sqlx::query_scalar("SELECT enabled FROM schedulers WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .context(op)?;
        Ok(enabled.unwrap_or(true))
    }

    /// Enables or disables the scheduler `name`.
    pub async fn set_scheduler_enabled(&self, name: &str, enabled: bool) -> Result<(), StoreError> {
        let op = || format!("set scheduler {name:?} enabled = {enabled}");
        let mut tx = self.write(op).await?;
        sqlx::query(
            "INSERT INTO schedulers (name, enabled) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled",
        )
        .bind(name)
        .bind(enabled)
        .execute(&mut *tx)
        .await
        .context(op)?;
        tx.commit().await.context(op)
    }

    /// The names of the disabled schedulers.
    pub async fn disabled_schedulers(&self) -> Result<Vec<String>, StoreError> {
        let op = || "list the disabled schedulers".to_string();
        sqlx::query_scalar("SELECT name FROM schedulers WHERE enabled = 0 ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .context(op)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::temp_store;

    #[tokio::test]
    async fn a_scheduler_is_enabled_until_disabled_and_again_when_enabled() {
        let (store, _dir) = temp_store().await;
        assert!(store.scheduler_enabled("nightly").await.expect("read"));
        store.set_scheduler_enabled("nightly", false).await.expect("disable");
        assert!(!store.scheduler_enabled("nightly").await.expect("read"));
        assert!(store.scheduler_enabled("other").await.expect("read"));
        assert_eq!(store.disabled_schedulers().await.expect("list"), vec!["nightly".to_string()]);
        store.set_scheduler_enabled("nightly", true).await.expect("enable");
        assert!(store.scheduler_enabled("nightly").await.expect("read"));
        assert!(store.disabled_schedulers().await.expect("list").is_empty());
    }
}
