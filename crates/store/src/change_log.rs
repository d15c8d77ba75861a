//! The changes as a log a scheduler reads from where it stopped: in id order, after an id, by bounded pages.
//!
//! Ids follow the order of commit (SQLite takes one writer at a time, `BEGIN IMMEDIATE`, and gives a new row
//! the highest id plus one), so once a change is readable every change with a lower id is too: a reader that has
//! taken every change up to id N and then reads those after N misses none.

use super::changes::change;
use super::error::Context;
use super::queries::select;
use super::{Change, Store, StoreError};

impl Store {
    /// The changes with an id above `after`, oldest first, at most `limit` of them.
    pub async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        let op = || format!("get the changes after {after}");
        let rows = sqlx::query(select::<Change>("WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .context(op)?;
        rows.iter().map(change).collect::<Result<_, _>>().context(op)
    }

    /// The id of the last change stored (0 when there is none).
    pub async fn last_change_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM changes")
            .fetch_one(&self.pool)
            .await
            .context(|| "get the last change id".to_string())?;
        Ok(id.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::NewChange;
    use crate::testing::temp_store;

    #[tokio::test]
    async fn changes_come_after_an_id_in_order_by_pages() {
        let (store, _dir) = temp_store().await;
        assert_eq!(store.last_change_id().await.expect("last"), 0);
        let mut ids = Vec::new();
        for n in 0..5 {
            let new = NewChange { revision: Some(format!("r{n}")), ..NewChange::default() };
            ids.push(store.add_change(&new).await.expect("add"));
        }
        assert_eq!(store.last_change_id().await.expect("last"), ids[4]);
        let page = |after, limit| {
            let store = store.clone();
            async move {
                let changes = store.changes_after(after, limit).await.expect("read");
                changes.iter().map(|c| c.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(page(0, 2).await, ids[..2]);
        assert_eq!(page(ids[1], 2).await, ids[2..4]);
        assert_eq!(page(ids[3], 2).await, ids[4..]);
        assert!(page(ids[4], 2).await.is_empty());
        let read = store.changes_after(ids[2], 1).await.expect("read");
        assert_eq!(read[0].revision.as_deref(), Some("r3"));
    }
}
