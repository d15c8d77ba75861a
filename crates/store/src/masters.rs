//! Masters: each running master has a row, whose id marks its claims and builds.

use super::error::Context;
use super::{now, Store, StoreError};

impl Store {
    /// The id of the master named `name`, creating its row if needed, and marks it active now.
    pub async fn register_master(&self, name: &str) -> Result<i64, StoreError> {
        let op = || format!("register master {name:?}");
        let mut tx = self.write(op).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO masters (name, active, last_active) VALUES (?, 1, ?) \
             ON CONFLICT (name) DO UPDATE SET active = 1, last_active = excluded.last_active \
             RETURNING id",
        )
        .bind(name)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .context(op)?;
        tx.commit().await.context(op)?;
        Ok(id)
    }
}
