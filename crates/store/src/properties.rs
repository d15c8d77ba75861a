//! Build properties: each build's `(name, value, source)` triples, set when the build starts and by its steps
//! (`got_revision`); a property set again replaces the old value and source.

use sqlx::Row;

use super::error::Context;
use super::{Property, Store, StoreError};
use crate::engine::DbRow;

/// A property row (`name`, `value` as JSON text, `source`).
pub(super) fn property(r: &DbRow) -> Result<Property, sqlx::Error> {
    let value: String = r.try_get("value")?;
    Ok(Property {
        name: r.try_get("name")?,
        value: serde_json::from_str(&value).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        source: r.try_get("source")?,
    })
}

/// Rows in one `INSERT` of properties (4 parameters each, well under SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 200;

impl Store {
    /// Sets `properties` on build `buildid`, atomically, each replacing any value of the same name.
    pub async fn set_build_properties(&self, buildid: i64, properties: &[Property]) -> Result<(), StoreError> {
        let op = || format!("set properties of build {buildid}");
        // The last value of each name, in one statement per [`ROWS_PER_INSERT`] names rather than one per name.
        let mut last: Vec<&Property> = Vec::with_capacity(properties.len());
        for p in properties.iter().rev() {
            if !last.iter().any(|kept| kept.name == p.name) {
                last.push(p);
            }
        }
        last.reverse();
        let mut tx = self.write(op).await?;
        for rows in last.chunks(ROWS_PER_INSERT) {
            let values = vec!["(?, ?, ?, ?)"; rows.len()].join(", ");
            let sql = format!(
                "INSERT INTO build_properties (buildid, name, value, source) VALUES {values} \
                 ON CONFLICT (buildid, name) DO UPDATE SET value = excluded.value, source = excluded.source"
            );
            // Only placeholders are spliced in: the values are bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in rows {
                query = query.bind(buildid).bind(&p.name).bind(p.value.to_string()).bind(&p.source);
            }
            query.execute(&mut *tx).await.context(op)?;
        }
        tx.commit().await.context(op)
    }

    /// The properties of build `buildid`, by name.
    pub async fn build_properties(&self, buildid: i64) -> Result<Vec<Property>, StoreError> {
        let op = || format!("get properties of build {buildid}");
        let rows = sqlx::query("SELECT name, value, source FROM build_properties WHERE buildid = ? ORDER BY name")
            .bind(buildid)
            .fetch_all(&self.pool)
            .await
            .context(op)?;
        rows.iter().map(property).collect::<Result<_, _>>().context(op)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{running_build, temp_store};

    fn prop(name: &str, value: serde_json::Value, source: &str) -> Property {
        Property { name: name.into(), value, source: source.into() }
    }

    #[tokio::test]
    async fn properties_are_set_replaced_and_read_by_name() {
        let (store, _dir) = temp_store().await;
        let buildid = running_build(&store).await;
        assert!(store.build_properties(buildid).await.expect("none").is_empty());

        let first = [prop("workername", json!("w"), "Worker"), prop("buildnumber", json!(1), "Build")];
        store.set_build_properties(buildid, &first).await.expect("set");
        store.set_build_properties(buildid, &[prop("workername", json!(null), "Test")]).await.expect("replace");
        store.set_build_properties(buildid, &[prop("flag", json!(true), "Builder")]).await.expect("add");
        assert_eq!(
            store.build_properties(buildid).await.expect("get"),
            vec![
                prop("buildnumber", json!(1), "Build"),
                prop("flag", json!(true), "Builder"),
                prop("workername", json!(null), "Test"),
            ]
        );
    }
}
