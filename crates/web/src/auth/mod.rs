//! Users, logins, sessions, API tokens and who may do what.
//!
//! [`Auth`] answers "who is this?" from what a request carries (a password, a token, a session id, a trusted
//! proxy's header), and [`rules::decide`] answers "may they?". The web's layer calls them for every request; the
//! store keeps sessions and tokens as hashes only. Reading is anonymous unless `[auth] private = true`; every
//! control action needs a user.

pub mod headers;
pub mod limit;
pub mod password;
pub mod rules;
pub mod session;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use rules::{decide, Target, User};

use crate::config::{AuthConfig, MasterConfig};
use crate::store::{ApiToken, Store, StoreError};

/// How a request's user was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The session cookie of a login.
    Session,
    /// An API token (`Authorization: Bearer`, or as the password of HTTP Basic).
    Token,
    /// HTTP Basic with a user's password.
    Basic,
    /// A trusted reverse proxy's header.
    Proxy,
}

impl Via {
    /// The word the audit records.
    pub fn name(self) -> &'static str {
        match self {
            Via::Session => "session",
            Via::Token => "token",
            Via::Basic => "basic",
            Via::Proxy => "proxy",
        }
    }
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Invalid,
    #[error("too many failed logins: try again in {} s", .0.as_secs().max(1))]
    Limited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a token was not created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new login session: the cookie's value (shown to the browser only) and its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
    pub lifetime: Duration,
}

/// A stored session found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSession {
    pub user: User,
    pub csrf: String,
    /// The hash the store keeps it under (to revoke it).
    pub id_hash: String,
}

/// Where [`Auth`] reads the config in force: a reconfig swaps it, and the next request sees the new users,
/// `[auth]` settings and rules.
pub type ConfigSource = Arc<dyn Fn() -> Arc<MasterConfig> + Send + Sync>;

/// The `[auth]` part of the config in force when it was taken (it stays whole while held).
#[derive(Debug, Clone)]
pub struct Current(Arc<MasterConfig>);

impl std::ops::Deref for Current {
    type Target = AuthConfig;

    fn deref(&self) -> &AuthConfig {
        &self.0.auth
    }
}

impl Current {
    /// The whole config this is part of.
    pub fn master(&self) -> &MasterConfig {
        &self.0
    }
}

/// The users and the login state of one master.
pub struct Auth {
    config: ConfigSource,
    store: Store,
    limits: limit::LoginLimits,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("config", &*self.config()).field("limits", &self.limits).finish_non_exhaustive()
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Auth {
    /// Users, sessions and tokens under the config `config` returns each time it is asked (the master's
    /// config in force, so that a reconfig applies to the next request).
    pub fn new(config: ConfigSource, store: Store) -> Auth {
        Auth { config, store, limits: limit::LoginLimits::default() }
    }

    /// The `[auth]` settings, users and rules in force.
    pub fn config(&self) -> Current {
        Current((self.config)())
    }

    /// Checks a user's password (a `[[user]]`'s, else an htpasswd line's), limited per address and per name.
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<User, LoginError> {
        self.limits.check(address, name).map_err(LoginError::Limited)?;
        let found = self.password_hash(name).await;
        let (hash, roles) = match found {
            Some((hash, roles)) => (Some(hash), roles),
            None => (None, Vec::new()),
        };
        let password = password.to_string();
        let matched = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => password::verify(&hash, &password),
            None => {
                password::verify_nobody(&password);
                false
            }
        })
        .await
        .unwrap_or(false);
        if matched {
            Ok(User { name: name.to_string(), roles })
        } else {
            self.limits.failed(address, name);
            Err(LoginError::Invalid)
        }
    }

    /// The password hash and roles of user `name`: a `[[user]]`, else a line of the htpasswd file (whose users
    /// have the roles of `[auth] htpasswd_roles`).
    async fn password_hash(&self, name: &str) -> Option<(String, Vec<String>)> {
        let config = self.config();
        if let Some(user) = config.user(name) {
            return Some((user.password_hash.clone(), user.roles.clone()));
        }
        let path = config.htpasswd.as_ref()?;
        let text = match tokio::fs::read_to_string(path).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the htpasswd file");
                return None;
            }
        };
        password::htpasswd_lookup(&text, name).map(|hash| (hash.to_string(), config.htpasswd_roles.clone()))
    }

    /// The user of API token `text`, if it is a live one whose user still exists and still holds its role: a
    /// `[[user]]` of the config in force, else a user of the htpasswd file (with `htpasswd_roles`), else, with
    /// a trusted proxy configured, anyone (the proxy's users are known only to the proxy).
    pub async fn check_token(&self, text: &str) -> Result<Option<(User, ApiToken)>, StoreError> {
        if !text.starts_with(token::PREFIX) {
            return Ok(None);
        }
        let Some(found) = self.store.api_token(&session::hash(text)).await? else { return Ok(None) };
        let expired = found.expires_at.is_some_and(|at| at <= now());
        if found.revoked_at.is_some() || expired {
            return Ok(None);
        }
        let config = self.config();
        let holds_role = match config.user(&found.username) {
            Some(user) => user.roles.contains(&found.role),
            None => match self.password_hash(&found.username).await {
                Some((_, roles)) => roles.contains(&found.role),
                None => config.proxy.is_some(),
            },
        };
        if !holds_role {
            return Ok(None);
        }
        let user = User { name: found.username.clone(), roles: vec![found.role.clone()] };
        Ok(Some((user, found)))
    }

    /// Creates a token for `user` with `role` (one of theirs) living `lifetime` (`None`: until revoked);
    /// returns its text, shown once, and what is stored.
    pub async fn create_token(
        &self,
        user: &User,
        name: &str,
        role: &str,
        lifetime: Option<Duration>,
    ) -> Result<(String, ApiToken), TokenError> {
        if name.trim().is_empty() || name.len() > token::MAX_NAME || name.chars().any(char::is_control) {
            return Err(TokenError::Invalid(format!(
                "a token's name is 1 to {} printable characters",
                token::MAX_NAME
            )));
        }
        if !user.has_role(role) {
            let roles = user.roles.join(", ");
            return Err(TokenError::Invalid(format!("role '{role}' is not one of yours ({roles})")));
        }
        let text = token::new_token();
        let expires = lifetime.map(|l| now().saturating_add(i64::try_from(l.as_secs()).unwrap_or(i64::MAX)));
        let stored = self.store.add_api_token(&session::hash(&text), &user.name, name, role, expires).await?;
        Ok((text, stored))
    }

    /// Starts a session for `user`.
    pub async fn create_session(&self, user: &User, how: &str) -> Result<NewSession, StoreError> {
        let (id, csrf) = (session::new_secret(), session::new_secret());
        let lifetime = self.config().session_lifetime;
        let expires = now().saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
        self.store.add_session(&session::hash(&id), &user.name, &user.roles, &csrf, how, expires).await?;
        Ok(NewSession { id, csrf, lifetime })
    }

    /// The live session whose cookie value is `id`.
    pub async fn session(&self, id: &str) -> Result<Option<FoundSession>, StoreError> {
        let id_hash = session::hash(id);
        let Some(row) = self.store.session(&id_hash).await? else { return Ok(None) };
        // A configured user's roles are those of the config in force, and a user removed from it is logged out
        // (a reconfig also revokes the sessions of a removed user, and of one whose password changed).
        let config = self.config();
        let roles = match config.user(&row.username) {
            Some(user) => user.roles.clone(),
            None => match self.password_hash(&row.username).await {
                Some((_, roles)) => roles,
                None => return Ok(None),
            },
        };
        Ok(Some(FoundSession { user: User { name: row.username, roles }, csrf: row.csrf, id_hash }))
    }

    /// Ends the session stored under `id_hash`.
    pub async fn logout(&self, id_hash: &str) -> Result<(), StoreError> {
        self.store.revoke_session(id_hash).await
    }

    /// The user a trusted proxy names in `user_header` (with `groups_header`'s comma-separated groups as roles,
    /// plus the roles of a `[[user]]` of that name), if `peer` is one of the trusted proxies.
    pub fn proxy_user(
        &self,
        peer: Option<IpAddr>,
        user_header: Option<&str>,
        groups_header: Option<&str>,
    ) -> Option<User> {
        let config = self.config();
        let proxy = config.proxy.as_ref()?;
        let peer = peer?;
        if !proxy.trusted.contains(&peer) {
            return None;
        }
        let name = user_header?.trim();
        if name.is_empty() {
            return None;
        }
        let mut roles: Vec<String> = groups_header
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(user) = config.user(name) {
            roles.extend(user.roles.iter().cloned());
        }
        roles.sort();
        roles.dedup();
        Some(User { name: name.to_string(), roles })
    }

    /// The store the sessions and tokens are in.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
