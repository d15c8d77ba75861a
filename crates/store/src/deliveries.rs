//! Change hook deliveries: the changes of one request to a change hook are stored together, and with them the
//! forge's delivery id (when it sends one), so that a redelivery — the forge sending again a request it thinks
//! failed, with the same id — stores nothing twice and gets the same answer.

use serde_json::json;

use super::changes::insert_change_in;
use super::error::Context;
use super::state::{write_state, StateWrite};
use super::{now, Store, StoreError};
use crate::events::Event;
use crate::model::NewChange;

/// How long a delivery id is remembered (forges redeliver within hours; GitHub's manual redelivery goes back
/// three days).
pub const DELIVERY_MEMORY_SECS: i64 = 7 * 86_400;

/// What [`Store::add_delivered_changes`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The ids of the request's changes, in its order.
    pub ids: Vec<i64>,
    /// Whether the delivery was stored before (nothing was added now).
    pub repeated: bool,
}

/// The object-state name of the deliveries of hook `source` (keys `delivery:<id>`).
fn deliveries_name(source: &str) -> String {
    format!("hook:{source}")
}

impl Store {
    /// Adds the changes of one hook request in one transaction, all or none, and remembers `delivery` (the
    /// forge's delivery id) with their ids; a delivery remembered already adds nothing and answers the ids of
    /// its changes. Deliveries older than [`DELIVERY_MEMORY_SECS`] are forgotten.
    pub async fn add_delivered_changes(
        &self,
        source: &str,
        delivery: Option<&str>,
        changes: &[NewChange],
    ) -> Result<Delivered, StoreError> {
        let op = || format!("add {} change(s) of hook {source} (delivery {delivery:?})", changes.len());
        let name = deliveries_name(source);
        let key = delivery.map(|delivery| format!("delivery:{delivery}"));
        let mut tx = self.write(op).await?;
        if let Some(key) = &key {
            let seen: Option<String> = sqlx::query_scalar("SELECT value FROM object_state WHERE name = ? AND key = ?")
                .bind(&name)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .context(op)?;
            let ids = seen.and_then(|text| {
                let value: serde_json::Value = serde_json::from_str(&text).ok()?;
                serde_json::from_value::<Vec<i64>>(value.get("changes")?.clone()).ok()
            });
            if let Some(ids) = ids {
                return Ok(Delivered { ids, repeated: true });
            }
        }
        let mut ids = Vec::with_capacity(changes.len());
        for change in changes {
            // Without `once` a change is always added.
            let id = insert_change_in(&mut tx, change, false).await.context(op)?;
            ids.push(id.ok_or_else(|| StoreError::NotFound { what: "inserted change", id: 0 })?);
        }
        if let Some(key) = &key {
            let received_at = now();
            sqlx::query(
                "DELETE FROM object_state WHERE name = ? AND key LIKE 'delivery:%' \
                 AND json_extract(value, '$.at') < ?",
            )
            .bind(&name)
            .bind(received_at - DELIVERY_MEMORY_SECS)
            .execute(&mut *tx)
            .await
            .context(op)?;
            let value = json!({ "changes": ids, "at": received_at });
            write_state(&mut tx, &StateWrite::new(&name, key, value)).await?;
        }
        tx.commit().await.context(op)?;
        for &changeid in &ids {
            self.publish(Event::ChangeAdded { changeid });
        }
        Ok(Delivered { ids, repeated: false })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::temp_store;

    fn change(revision: &str) -> NewChange {
        NewChange { author: "a".into(), revision: Some(revision.into()), ..NewChange::default() }
    }

    async fn count(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM changes").fetch_one(&store.pool).await.expect("count")
    }

    #[tokio::test]
    async fn a_delivery_is_stored_once_and_answered_the_same_again() {
        let (store, _dir) = temp_store().await;
        let changes = [change("a"), change("b")];
        let first = store.add_delivered_changes("github", Some("d-1"), &changes).await.expect("add");
        assert!(!first.repeated);
        assert_eq!(first.ids.len(), 2);
        let again = store.add_delivered_changes("github", Some("d-1"), &changes).await.expect("add again");
        assert_eq!(again, Delivered { ids: first.ids.clone(), repeated: true });
        assert_eq!(count(&store).await, 2);
        // Another delivery id, another forge, or none: stored.
        assert!(!store.add_delivered_changes("github", Some("d-2"), &changes).await.expect("add").repeated);
        assert!(!store.add_delivered_changes("gitea", Some("d-1"), &changes).await.expect("add").repeated);
        assert!(!store.add_delivered_changes("base", None, &changes).await.expect("add").repeated);
        assert!(!store.add_delivered_changes("base", None, &changes).await.expect("add").repeated);
        assert_eq!(count(&store).await, 10);
    }

    #[tokio::test]
    async fn old_deliveries_are_forgotten() {
        let (store, _dir) = temp_store().await;
        let old = json!({ "changes": [1], "at": now() - DELIVERY_MEMORY_SECS - 10 });
        store.set_state("hook:github", "delivery:old", &old).await.expect("set");
        store.set_state("hook:github", "other", &json!(1)).await.expect("set");
        store.add_delivered_changes("github", Some("new"), &[change("a")]).await.expect("add");
        assert_eq!(store.get_state("hook:github", "delivery:old").await.expect("get"), None);
        assert_eq!(store.get_state("hook:github", "other").await.expect("get"), Some(json!(1)));
        assert!(store.get_state("hook:github", "delivery:new").await.expect("get").is_some());
    }

    #[tokio::test]
    async fn a_request_whose_change_fails_stores_none_of_them() {
        let (store, _dir) = temp_store().await;
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON changes WHEN NEW.revision = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&store.pool)
            .await
            .expect("trigger");
        let changes = [change("a"), change("bad")];
        assert!(store.add_delivered_changes("github", Some("d"), &changes).await.is_err());
        assert_eq!(count(&store).await, 0);
        assert_eq!(store.get_state("hook:github", "delivery:d").await.expect("get"), None);
    }
}
