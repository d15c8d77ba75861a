//! Builders: one row per builder name ever configured; requests and builds refer to it by id.

use super::{find_or_add_by_name, Store, StoreError};

impl Store {
    /// The id of the builder named `name`, adding it if needed.
    pub async fn find_or_add_builder(&self, name: &str) -> Result<i64, StoreError> {
        find_or_add_by_name(
            self,
            "builder",
            "INSERT INTO builders (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
            "SELECT id FROM builders WHERE name = ?",
            name,
        )
        .await
    }
}
