//! Login sessions, API tokens and the audit of control actions. Session ids and tokens are kept as their SHA-256
//! only (the callers hash them), so a copy of the store lets nobody log in.

use std::collections::HashMap;

use serde::Serialize;

use super::error::Context;
use super::{now, Store, StoreError};
use crate::engine::Db;

/// A stored login session (see `auth::session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub username: String,
    pub roles: Vec<String>,
    pub csrf: String,
    pub how: String,
    pub expires_at: i64,
}

/// A stored API token (never its text: its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A control action to record: who did what, on what, from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewAuditEntry {
    pub username: String,
    /// How the user was authenticated: `session`, `token`, `basic`, `proxy`.
    pub how: String,
    /// The client's address.
    pub address: String,
    pub action: String,
    pub builder: Option<String>,
    pub buildid: Option<i64>,
    pub buildrequestid: Option<i64>,
    pub buildsetid: Option<i64>,
    pub worker: Option<String>,
    /// What else the action said (a reason).
    pub detail: Option<String>,
}

/// A recorded control action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// When, in seconds since the epoch.
    pub at: i64,
    /// What was recorded (its fields appear beside `id` and `at` in the JSON).
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// Which audit entries to list (all conditions must hold), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub builder: Option<String>,
    pub buildid: Option<i64>,
    pub buildrequestid: Option<i64>,
    pub worker: Option<String>,
    pub username: Option<String>,
    pub limit: u32,
}

type TokenRow = (i64, String, String, String, i64, Option<i64>, Option<i64>);

fn token(row: TokenRow) -> ApiToken {
    let (id, username, name, role, created_at, expires_at, revoked_at) = row;
    ApiToken { id, username, name, role, created_at, expires_at, revoked_at }
}

macro_rules! token_columns {
    () => {
        "id, username, name, role, created_at, expires_at, revoked_at"
    };
}

/// Ids looked up in one query at most by [`Store::build_actors`] and [`Store::worker_actors`].
const ACTOR_CHUNK: usize = 500;

impl Store {
    /// Stores a session under the hash of its id; expired sessions are deleted on the way.
    pub async fn add_session(
        &self,
        id_hash: &str,
        username: &str,
        roles: &[String],
        csrf: &str,
        how: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let op = || format!("add a session of user {username:?}");
        let roles = serde_json::to_string(roles).unwrap_or_else(|_| "[]".into());
        let mut tx = self.write(op).await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?").bind(now()).execute(&mut *tx).await.context(op)?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, username, roles, csrf, how, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_hash)
        .bind(username)
        .bind(roles)
        .bind(csrf)
        .bind(how)
        .bind(now())
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .context(op)?;
        tx.commit().await.context(op)
    }

    /// The session stored under `id_hash`, unless it expired or was revoked.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT username, roles, csrf, how, expires_at FROM sessions \
             WHERE id_hash = ? AND revoked = 0 AND expires_at > ?",
        )
        .bind(id_hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .context(|| "find a session".to_string())?;
        Ok(row.map(|(username, roles, csrf, how, expires_at)| SessionRow {
            username,
            roles: serde_json::from_str(&roles).unwrap_or_default(),
            csrf,
            how,
            expires_at,
        }))
    }

    /// Revokes the session stored under `id_hash` (a logout).
    pub async fn revoke_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET revoked = 1 WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .context(|| "revoke a session".to_string())
            .map(|_| ())
    }

    /// Revokes every session of `username`; returns how many.
    pub async fn revoke_sessions_of(&self, username: &str) -> Result<u64, StoreError> {
        sqlx::query("UPDATE sessions SET revoked = 1 WHERE username = ? AND revoked = 0")
            .bind(username)
            .execute(&self.pool)
            .await
            .context(|| format!("revoke the sessions of {username:?}"))
            .map(|done| done.rows_affected())
    }

    /// Stores a new API token by its hash.
    pub async fn add_api_token(
        &self,
        token_hash: &str,
        username: &str,
        name: &str,
        role: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiToken, StoreError> {
        let op = || format!("add API token {name:?} of user {username:?}");
        let row: TokenRow = sqlx::query_as(concat!(
            "INSERT INTO api_tokens (token_hash, username, name, role, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING ",
            token_columns!()
        ))
        .bind(token_hash)
        .bind(username)
        .bind(name)
        .bind(role)
        .bind(now())
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await
        .context(op)?;
        Ok(token(row))
    }

    /// The token whose hash is `token_hash` (revoked and expired ones too: the caller decides).
    pub async fn api_token(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<TokenRow> =
            sqlx::query_as(concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE token_hash = ?"))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .context(|| "find an API token".to_string())?;
        Ok(row.map(token))
    }

    /// The tokens of `username`, oldest first.
    pub async fn api_tokens_of(&self, username: &str) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<TokenRow> =
            sqlx::query_as(concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE username = ? ORDER BY id"))
                .bind(username)
                .fetch_all(&self.pool)
                .await
                .context(|| format!("list the API tokens of {username:?}"))?;
        Ok(rows.into_iter().map(token).collect())
    }

    /// Revokes token `id` of `username`; `false` if the user has no such token not revoked yet.
    pub async fn revoke_api_token(&self, username: &str, id: i64) -> Result<bool, StoreError> {
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND username = ? AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .bind(username)
            .execute(&self.pool)
            .await
            .context(|| format!("revoke API token {id} of {username:?}"))
            .map(|done| done.rows_affected() == 1)
    }

    /// Revokes every API token of `username` not revoked yet; returns how many.
    pub async fn revoke_api_tokens_of(&self, username: &str) -> Result<u64, StoreError> {
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL")
            .bind(now())
            .bind(username)
            .execute(&self.pool)
            .await
            .context(|| format!("revoke the API tokens of {username:?}"))
            .map(|done| done.rows_affected())
    }

    /// Records a control action.
    pub async fn add_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO audit (at, username, how, address, action, builder, buildid, buildrequestid, buildsetid, \
             worker, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now())
        .bind(&entry.username)
        .bind(&entry.how)
        .bind(&entry.address)
        .bind(&entry.action)
        .bind(&entry.builder)
        .bind(entry.buildid)
        .bind(entry.buildrequestid)
        .bind(entry.buildsetid)
        .bind(&entry.worker)
        .bind(&entry.detail)
        .fetch_one(&self.pool)
        .await
        .context(|| format!("record {} by {:?}", entry.action, entry.username))
    }

    /// Who last took `action` (`stop`…) on each of `buildids`: build id → user name.
    pub async fn build_actors(&self, action: &str, buildids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        self.actors(action, "buildid", buildids, "build(s)").await
    }

    /// Who last took `action` (`pause`…) on each of `workers`: worker name → user name.
    pub async fn worker_actors(&self, action: &str, workers: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        let names: Vec<String> = workers.iter().map(|w| w.to_string()).collect();
        self.actors(action, "worker", &names, "worker(s)").await
    }

    /// Who last took `action` on each of `keys` of the audit's `column`: key → user name.
    async fn actors<K>(
        &self,
        action: &str,
        column: &'static str,
        keys: &[K],
        what: &str,
    ) -> Result<HashMap<K, String>, StoreError>
    where
        K: Clone + Eq + std::hash::Hash + Send + Sync + Unpin + 'static,
        K: sqlx::Type<Db> + for<'q> sqlx::Encode<'q, Db> + for<'r> sqlx::Decode<'r, Db>,
    {
        let mut found = HashMap::new();
        for chunk in keys.chunks(ACTOR_CHUNK) {
            // Only the column's name and placeholders are formatted in; every value is bound.
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {column}, username FROM audit WHERE action = ? AND {column} IN ({}) ORDER BY id",
                vec!["?"; chunk.len()].join(", ")
            ));
            let mut query = sqlx::query_as::<_, (K, String)>(sql).bind(action);
            for key in chunk {
                query = query.bind(key.clone());
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .context(|| format!("find who took {action} on {} {what}", chunk.len()))?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// The recorded control actions `filter` selects, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, username, how, address, action, builder, buildid, buildrequestid, buildsetid, worker, \
             detail FROM audit WHERE (?1 IS NULL OR builder = ?1) AND (?2 IS NULL OR buildid = ?2) \
             AND (?3 IS NULL OR buildrequestid = ?3) AND (?4 IS NULL OR worker = ?4) \
             AND (?5 IS NULL OR username = ?5) ORDER BY id DESC LIMIT ?6",
        )
        .bind(&filter.builder)
        .bind(filter.buildid)
        .bind(filter.buildrequestid)
        .bind(&filter.worker)
        .bind(&filter.username)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await
        .context(|| format!("list the audit {filter:?}"))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    at,
                    username,
                    how,
                    address,
                    action,
                    builder,
                    buildid,
                    buildrequestid,
                    buildsetid,
                    worker,
                    detail,
                )| {
                    let entry = NewAuditEntry {
                        username,
                        how,
                        address,
                        action,
                        builder,
                        buildid,
                        buildrequestid,
                        buildsetid,
                        worker,
                        detail,
                    };
                    AuditEntry { id, at, entry }
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_store;

    #[tokio::test]
    async fn sessions_expire_and_are_revoked() {
        let (store, _dir) = temp_store().await;
        let roles = vec!["admin".to_string()];
        store.add_session("h1", "ann", &roles, "c1", "password", now() + 60).await.expect("add");
        store.add_session("h2", "ann", &roles, "c2", "password", now() - 1).await.expect("add expired");
        let found = store.session("h1").await.expect("find").expect("live");
        assert_eq!((found.username.as_str(), found.roles, found.csrf.as_str()), ("ann", roles, "c1"));
        assert_eq!(store.session("h2").await.expect("find"), None, "expired");
        store.revoke_session("h1").await.expect("revoke");
        assert_eq!(store.session("h1").await.expect("find"), None, "revoked");
    }

    #[tokio::test]
    async fn tokens_are_listed_and_revoked_by_their_user_only() {
        let (store, _dir) = temp_store().await;
        let t = store.add_api_token("hash", "ann", "ci", "developer", None).await.expect("add");
        assert_eq!(store.api_token("hash").await.expect("find").map(|t| t.id), Some(t.id));
        assert!(!store.revoke_api_token("bob", t.id).await.expect("revoke"), "not bob's");
        assert!(store.revoke_api_token("ann", t.id).await.expect("revoke"));
        assert!(store.api_token("hash").await.expect("find").and_then(|t| t.revoked_at).is_some());
        assert_eq!(store.api_tokens_of("ann").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn audit_is_filtered() {
        let (store, _dir) = temp_store().await;
        let entry = |action: &str, builder: Option<&str>| NewAuditEntry {
            username: "ann".into(),
            how: "token".into(),
            address: "127.0.0.1".into(),
            action: action.into(),
            builder: builder.map(str::to_string),
            ..NewAuditEntry::default()
        };
        store.add_audit(&entry("force", Some("a"))).await.expect("add");
        store.add_audit(&entry("pause", None)).await.expect("add");
        let all = store.audit(&AuditFilter { limit: 10, ..AuditFilter::default() }).await.expect("list");
        assert_eq!(all.iter().map(|e| e.entry.action.as_str()).collect::<Vec<_>>(), ["pause", "force"]);
        let of_a = AuditFilter { builder: Some("a".into()), limit: 10, ..AuditFilter::default() };
        assert_eq!(store.audit(&of_a).await.expect("list").len(), 1);
    }
    #[tokio::test]
    async fn the_last_actor_on_each_build_and_worker_is_found() {
        let (store, _dir) = temp_store().await;
        let entry = |user: &str, action: &str, buildid: Option<i64>, worker: Option<&str>| NewAuditEntry {
            username: user.into(),
            how: "session".into(),
            address: "127.0.0.1".into(),
            action: action.into(),
            buildid,
            worker: worker.map(str::to_string),
            ..NewAuditEntry::default()
        };
        for e in [
            entry("ann", "stop", Some(1), None),
            entry("bob", "stop", Some(1), None),
            entry("cy", "rebuild", Some(2), None),
            entry("dee", "pause", None, Some("w1")),
        ] {
            store.add_audit(&e).await.expect("add");
        }
        let ids: Vec<i64> = (1..=1200).collect();
        let stopped = store.build_actors("stop", &ids).await.expect("builds");
        assert_eq!(stopped, HashMap::from([(1, "bob".to_string())]), "the last stop, rebuilds not counted");
        assert!(store.build_actors("stop", &[]).await.expect("none").is_empty());
        let paused = store.worker_actors("pause", &["w1", "w2"]).await.expect("workers");
        assert_eq!(paused, HashMap::from([("w1".to_string(), "dee".to_string())]));
    }
}
