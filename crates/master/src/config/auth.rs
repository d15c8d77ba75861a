//! `[auth]`, `[[user]]` and `[[rule]]`: who may log in, and who may do what.
//!
//! Reading is anonymous unless `[auth] private = true`; every control action needs an authenticated user whose
//! roles a rule grants it. `admin` may do everything; without `[[rule]]` tables `developer` may force, stop,
//! rebuild and cancel on every builder and pause or unpause workers, and `viewer` (like any other role) may do
//! nothing. With `[[rule]]` tables, the rules replace those defaults for every role but `admin`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::Problems;
use super::parse::{context_of, declared_name, read};

/// A session lasts a week unless `[auth] session_hours` says otherwise.
const DEFAULT_SESSION_HOURS: u64 = 7 * 24;

/// The role that may do everything.
pub const ADMIN_ROLE: &str = "admin";
/// The built-in roles.
pub const BUILT_IN_ROLES: [&str; 3] = [ADMIN_ROLE, "developer", "viewer"];

/// Who may log in and who may do what (`[auth]`, `[[user]]`, `[[rule]]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    /// Local users, in the file's order.
    pub users: Vec<UserDef>,
    /// Whether reading (pages, API GETs, events, logs) needs a login too.
    pub private: bool,
    /// An htpasswd file of more users (bcrypt `$2y$` or argon2 lines); relative to the master's directory.
    pub htpasswd: Option<PathBuf>,
    /// The roles every user of the htpasswd file has.
    pub htpasswd_roles: Vec<String>,
    /// Authentication by a trusted reverse proxy's header.
    pub proxy: Option<ProxyDef>,
    /// How long a login session lasts.
    pub session_lifetime: Duration,
    /// The rules, in order; empty: the built-in ones.
    pub rules: Vec<RuleDef>,
}

impl AuthConfig {
    /// Whether anyone at all can log in (no user, no htpasswd, no proxy: control is refused to everybody).
    pub fn has_users(&self) -> bool {
        !self.users.is_empty() || self.htpasswd.is_some() || self.proxy.is_some()
    }

    /// The configured user named `name`.
    pub fn user(&self, name: &str) -> Option<&UserDef> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// A local user (`[[user]]`).
#[derive(Clone, PartialEq, Eq)]
pub struct UserDef {
    pub name: String,
    /// An argon2 PHC string (`kiln hash-password` prints one).
    pub password_hash: String,
    pub roles: Vec<String>,
}

impl fmt::Debug for UserDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserDef")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("roles", &self.roles)
            .finish()
    }
}

/// A reverse proxy that authenticates users and says who they are in a header (oauth2-proxy, Apache, nginx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDef {
    /// The header naming the user (`X-Forwarded-User`).
    pub header: String,
    /// A header listing the user's groups, comma-separated, taken as roles (`X-Forwarded-Groups`).
    pub groups_header: Option<String>,
    /// The addresses the headers are honoured from; from any other they are ignored.
    pub trusted: Vec<IpAddr>,
}

/// A control action, as rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Force,
    Stop,
    Rebuild,
    Cancel,
    Pause,
    Unpause,
    Reconfig,
    EnableScheduler,
}

impl Action {
    /// Every action, in the order of the docs.
    pub const ALL: [Action; 8] = [
        Action::Force,
        Action::Stop,
        Action::Rebuild,
        Action::Cancel,
        Action::Pause,
        Action::Unpause,
        Action::Reconfig,
        Action::EnableScheduler,
    ];

    /// The name rules and the audit use.
    pub fn name(self) -> &'static str {
        match self {
            Action::Force => "force",
            Action::Stop => "stop",
            Action::Rebuild => "rebuild",
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
            Action::Reconfig => "reconfig",
            Action::EnableScheduler => "enable_scheduler",
        }
    }

    /// The action named `name`.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the action is on a builder's build or request (rules by builder apply to it).
    pub fn on_builder(self) -> bool {
        matches!(self, Action::Force | Action::Stop | Action::Rebuild | Action::Cancel)
    }

    /// Whether the action is on a build or request someone owns (the owner rule applies to it).
    pub fn has_owner(self) -> bool {
        matches!(self, Action::Stop | Action::Rebuild | Action::Cancel)
    }
}

/// A rule (`[[rule]]`): the first rule that matches an action on a builder decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDef {
    /// The actions it is about.
    pub actions: Vec<Action>,
    /// Builder names or globs it is about (with `tags`: either matches); both empty: every builder.
    pub builders: Vec<String>,
    /// Builder tags it is about.
    pub tags: Vec<String>,
    /// The roles it grants the actions to.
    pub roles: Vec<String>,
    /// Grants the actions only on the user's own builds and requests (those whose `owner` is the user).
    pub owner: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    private: Option<bool>,
    htpasswd: Option<Spanned<String>>,
    #[serde(default)]
    htpasswd_roles: Vec<String>,
    proxy_header: Option<Spanned<String>>,
    proxy_groups_header: Option<Spanned<String>>,
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    session_hours: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password_hash: Spanned<String>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    actions: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    builders: Vec<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    owner: bool,
}

/// The keys this module takes out of the document before the rest is read.
pub(super) const KEYS: [&str; 3] = ["auth", "user", "rule"];

/// Takes `[auth]`, `[[user]]` and `[[rule]]` out of `document` and reads them; `None` if any is invalid.
pub(super) fn take_auth(document: &mut DeTable<'_>, problems: &mut Problems<'_>) -> Option<AuthConfig> {
    let auth = document.remove("auth");
    let users = take_list(document, "user", problems);
    let rules = take_list(document, "rule", problems);
    let raw: Option<RawAuth> = match auth {
        Some(value) => read(value, problems, Some("[auth]"), "auth"),
        None => Some(RawAuth::default()),
    };
    let users = read_users(users, problems);
    let rules = read_rules(rules, problems);
    check_auth(raw?, users, rules, problems)
}

fn take_list<'i>(document: &mut DeTable<'i>, key: &str, problems: &mut Problems<'_>) -> Vec<Spanned<DeValue<'i>>> {
    let Some((name, value)) = document.remove_entry(key) else { return Vec::new() };
    match value.into_inner() {
        DeValue::Array(tables) => tables.into_iter().collect(),
        _ => {
            problems.add(name.span(), None, key, format!("expected a list of tables, written [[{key}]]"));
            Vec::new()
        }
    }
}

fn check_auth(
    raw: RawAuth,
    users: Option<Vec<UserDef>>,
    rules: Option<Vec<RuleDef>>,
    problems: &mut Problems<'_>,
) -> Option<AuthConfig> {
    const CONTEXT: &str = "[auth]";
    let mut valid = true;
    let hours = raw.session_hours.as_ref().map_or(DEFAULT_SESSION_HOURS, |h| *h.get_ref());
    if let Some(h) = raw.session_hours.as_ref().filter(|_| hours == 0) {
        problems.add(h.span(), Some(CONTEXT), "session_hours", "must be at least 1 hour");
        valid = false;
    }
    let htpasswd = match raw.htpasswd {
        Some(path) if path.get_ref().is_empty() => {
            problems.add(path.span(), Some(CONTEXT), "htpasswd", "the path cannot be empty");
            valid = false;
            None
        }
        Some(path) => Some(PathBuf::from(path.into_inner())),
        None => None,
    };
    let mut trusted = Vec::new();
    let trusted_span = raw.trusted_proxies.as_ref().map(Spanned::span);
    for address in raw.trusted_proxies.map(Spanned::into_inner).unwrap_or_default() {
        match address.get_ref().parse::<IpAddr>() {
            Ok(ip) => trusted.push(ip),
            Err(_) => {
                let message = format!("'{}' is not an IP address", address.get_ref());
                problems.add(address.span(), Some(CONTEXT), "trusted_proxies", message);
                valid = false;
            }
        }
    }
    let proxy = match (raw.proxy_header, raw.proxy_groups_header) {
        (Some(header), groups) => {
            if !is_header_name(header.get_ref()) {
                let message = format!("'{}' is not an HTTP header name", header.get_ref());
                problems.add(header.span(), Some(CONTEXT), "proxy_header", message);
                valid = false;
            }
            if let Some(g) = groups.as_ref().filter(|g| !is_header_name(g.get_ref())) {
                let message = format!("'{}' is not an HTTP header name", g.get_ref());
                problems.add(g.span(), Some(CONTEXT), "proxy_groups_header", message);
                valid = false;
            }
            if trusted.is_empty() && valid {
                let message = "proxy_header is honoured only from trusted_proxies: list the proxy's addresses \
                               (e.g. trusted_proxies = [\"127.0.0.1\"])";
                problems.add(header.span(), Some(CONTEXT), "trusted_proxies", message);
                valid = false;
            }
            Some(ProxyDef {
                header: header.into_inner().to_ascii_lowercase(),
                groups_header: groups.map(|g| g.into_inner().to_ascii_lowercase()),
                trusted,
            })
        }
        (None, Some(groups)) => {
            problems.add(groups.span(), Some(CONTEXT), "proxy_groups_header", "needs proxy_header");
            valid = false;
            None
        }
        (None, None) => {
            if let Some(span) = trusted_span {
                problems.add(span, Some(CONTEXT), "trusted_proxies", "needs proxy_header");
                valid = false;
            }
            None
        }
    };
    let (users, rules) = (users?, rules?);
    valid.then_some(AuthConfig {
        users,
        private: raw.private.unwrap_or(false),
        htpasswd,
        htpasswd_roles: raw.htpasswd_roles,
        proxy,
        session_lifetime: Duration::from_secs(hours * 3600),
        rules,
    })
}

/// RFC 9110's token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn read_users(tables: Vec<Spanned<DeValue<'_>>>, problems: &mut Problems<'_>) -> Option<Vec<UserDef>> {
    let mut users = Vec::new();
    let mut names = BTreeSet::new();
    let mut valid = true;
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("user", declared.as_deref(), index);
        let Some(raw) = read::<RawUser>(table, problems, Some(&context), "user") else {
            valid = false;
            continue;
        };
        let name = raw.name.get_ref();
        if let Some(why) = name_problem(name) {
            problems.add(raw.name.span(), Some(&context), "name", why);
            valid = false;
        } else if !names.insert(name.clone()) {
            problems.add(raw.name.span(), Some(&context), "name", "another user has this name");
            valid = false;
        }
        if let Err(why) = check_password_hash(raw.password_hash.get_ref()) {
            problems.add(raw.password_hash.span(), Some(&context), "password_hash", why);
            valid = false;
        }
        let mut roles = Vec::new();
        for role in raw.roles {
            if role.get_ref().trim().is_empty() || role.get_ref().contains(',') {
                problems.add(role.span(), Some(&context), "roles", "a role is a non-empty name without commas");
                valid = false;
            }
            roles.push(role.into_inner());
        }
        users.push(UserDef { name: name.clone(), password_hash: raw.password_hash.into_inner(), roles });
    }
    valid.then_some(users)
}

/// Why `name` cannot be a user's name, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a user name cannot be empty")
    } else if name.contains(':') {
        Some("a user name cannot contain ':' (HTTP Basic separates it from the password with one)")
    } else if name.chars().any(char::is_control) {
        Some("a user name cannot contain control characters")
    } else {
        None
    }
}

/// Checks that `hash` is an argon2 PHC string.
fn check_password_hash(hash: &str) -> Result<(), String> {
    if !hash.starts_with("$argon2") {
        return Err("expected an argon2 hash ($argon2id$…): run `kiln hash-password` and paste what it prints".into());
    }
    argon2::PasswordHash::new(hash).map(|_| ()).map_err(|e| format!("not a valid argon2 hash: {e}"))
}

fn read_rules(tables: Vec<Spanned<DeValue<'_>>>, problems: &mut Problems<'_>) -> Option<Vec<RuleDef>> {
    let mut rules = Vec::new();
    let mut valid = true;
    for (index, table) in tables.into_iter().enumerate() {
        let context = context_of("rule", None, index);
        let Some(raw) = read::<RawRule>(table, problems, Some(&context), "rule") else {
            valid = false;
            continue;
        };
        let mut actions = Vec::new();
        if raw.actions.get_ref().is_empty() {
            problems.add(raw.actions.span(), Some(&context), "actions", "list at least one action (or \"*\")");
            valid = false;
        }
        for action in raw.actions.get_ref() {
            match action.get_ref().as_str() {
                "*" => actions.extend(Action::ALL),
                name => match Action::from_name(name) {
                    Some(a) => actions.push(a),
                    None => {
                        let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                        let message = format!("unknown action '{name}' (known: {}, *)", known.join(", "));
                        problems.add(action.span(), Some(&context), "actions", message);
                        valid = false;
                    }
                },
            }
        }
        actions.sort();
        actions.dedup();
        let mut builders = Vec::new();
        for builder in raw.builders {
            if let Err(e) = glob::Pattern::new(builder.get_ref()) {
                let message = format!("'{}' is not a valid glob: {e}", builder.get_ref());
                problems.add(builder.span(), Some(&context), "builders", message);
                valid = false;
            }
            builders.push(builder.into_inner());
        }
        if raw.roles.is_empty() && !raw.owner {
            let message = "the rule grants nothing: give `roles`, `owner = true` or both";
            problems.add(raw.actions.span(), Some(&context), "roles", message);
            valid = false;
        }
        rules.push(RuleDef {
            actions,
            builders,
            tags: raw.tags,
            roles: raw.roles.into_iter().map(Spanned::into_inner).collect(),
            owner: raw.owner,
        });
    }
    valid.then_some(rules)
}

/// What a reconfig changes in who may log in and what they may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthChanges {
    /// One line per change, for the reconfig's answer ("user 'bob' removed: sessions and tokens revoked").
    pub lines: Vec<String>,
    /// The users whose login sessions end: the removed ones, and those whose password changed.
    pub log_out: Vec<String>,
    /// The users whose API tokens are revoked: the removed ones.
    pub revoke_tokens: Vec<String>,
}

impl AuthConfig {
    /// What taking `new` in place of this config changes. A removed `[[user]]` loses its sessions and its
    /// tokens; a changed password ends the user's sessions (its tokens stay: they are credentials of their
    /// own); changed roles apply to the next request of every session and token.
    pub fn changes_to(&self, new: &AuthConfig) -> AuthChanges {
        let mut changes = AuthChanges::default();
        for user in &new.users {
            let Some(before) = self.user(&user.name) else {
                changes.lines.push(format!("user '{}' added", user.name));
                continue;
            };
            if before.password_hash != user.password_hash {
                changes.lines.push(format!("user '{}' password changed: its sessions end", user.name));
                changes.log_out.push(user.name.clone());
            }
            if before.roles != user.roles {
                let (old, new) = (before.roles.join(", "), user.roles.join(", "));
                changes.lines.push(format!("user '{}' roles changed ({old} → {new})", user.name));
            }
        }
        for user in self.users.iter().filter(|u| new.user(&u.name).is_none()) {
            changes.lines.push(format!("user '{}' removed: its sessions and tokens are revoked", user.name));
            changes.log_out.push(user.name.clone());
            changes.revoke_tokens.push(user.name.clone());
        }
        let mut keys = Vec::new();
        if self.private != new.private {
            keys.push(format!("private = {}", new.private));
        }
        if (&self.htpasswd, &self.htpasswd_roles) != (&new.htpasswd, &new.htpasswd_roles) {
            keys.push("htpasswd".to_string());
        }
        if self.proxy != new.proxy {
            keys.push("proxy".to_string());
        }
        if self.session_lifetime != new.session_lifetime {
            keys.push("session_hours".to_string());
        }
        if !keys.is_empty() {
            changes.lines.push(format!("[auth] changed: {}", keys.join(", ")));
        }
        if self.rules != new.rules {
            let count = |n: usize| if n == 0 { "the built-in ones".to_string() } else { format!("{n}") };
            changes.lines.push(format!(
                "rules changed ({} → {} rules)",
                count(self.rules.len()),
                count(new.rules.len())
            ));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MasterConfig;

    /// An argon2 hash of "kiln-test-password", with cheap parameters.
    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$a2lsbi10ZXN0LXNhbHQ$QXq7j3egqTpIiaCCSe5AdBnGT+vRQNgIoDSocFatnfg";

    fn parse(extra: &str) -> Result<MasterConfig, String> {
        let text = format!(
            "[[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"b\"\nworkers = [\"w\"]\n\
             [[builder.step]]\ncommand = \"true\"\n{extra}"
        );
        MasterConfig::from_str(&text, "master.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn users_rules_and_auth_are_read() {
        let config = parse(&format!(
            "[auth]\nprivate = true\nproxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
             session_hours = 2\n[[user]]\nname = \"ann\"\npassword_hash = \"{HASH}\"\nroles = [\"admin\"]\n\
             [[rule]]\nactions = [\"force\"]\ntags = [\"plugins\"]\nroles = [\"developer\"]\n\
             [[rule]]\nactions = [\"*\"]\nowner = true\n"
        ))
        .expect("valid");
        let auth = &config.auth;
        assert!(auth.private);
        assert_eq!(auth.session_lifetime, Duration::from_secs(7200));
        assert_eq!(auth.users[0].name, "ann");
        assert_eq!(auth.proxy.as_ref().map(|p| p.header.as_str()), Some("x-forwarded-user"));
        assert_eq!(auth.rules.len(), 2);
        assert_eq!(auth.rules[1].actions.len(), Action::ALL.len());
        assert!(!format!("{:?}", auth.users[0]).contains("argon2"), "the hash is not in Debug");
    }

    #[test]
    fn defaults_have_nobody() {
        let config = parse("").expect("valid");
        assert!(!config.auth.has_users());
        assert!(!config.auth.private);
    }

    #[test]
    fn problems_name_line_and_key() {
        let cases = [
            ("[[user]]\nname = \"a\"\npassword_hash = \"plain\"\n", "master.toml:11: user 'a', key 'password_hash'"),
            ("[[user]]\nname = \"a:b\"\npassword_hash = \"plain\"\n", "key 'name'"),
            ("[[rule]]\nactions = [\"explode\"]\nroles = [\"x\"]\n", "master.toml:10: rule #1, key 'actions'"),
            ("[[rule]]\nactions = [\"force\"]\n", "grants nothing"),
            ("[[rule]]\nactions = [\"force\"]\nbuilders = [\"[\"]\nroles = [\"r\"]\n", "key 'builders'"),
            ("[auth]\nproxy_header = \"X-User\"\n", "[auth], key 'trusted_proxies'"),
            ("[auth]\nproxy_header = \"X-User\"\ntrusted_proxies = [\"nope\"]\n", "'nope' is not an IP address"),
            ("[auth]\nsession_hours = 0\n", "key 'session_hours'"),
            ("[auth]\nsurprise = 1\n", "surprise"),
        ];
        for (extra, expected) in cases {
            let error = parse(extra).expect_err(extra);
            assert!(error.contains(expected), "{extra}: {error}");
        }
    }
    #[test]
    fn a_reload_names_users_added_removed_and_changed_and_the_rules() {
        let user = |name: &str, hash: &str, roles: &[&str]| UserDef {
            name: name.into(),
            password_hash: hash.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        let old = AuthConfig {
            users: vec![user("ann", "h1", &["admin"]), user("bob", "h2", &["developer"]), user("cy", "h3", &[])],
            ..AuthConfig::default()
        };
        let new = AuthConfig {
            users: vec![user("ann", "h1", &["viewer"]), user("bob", "h9", &["developer"]), user("dee", "h4", &[])],
            private: true,
            rules: vec![RuleDef {
                actions: vec![Action::Force],
                builders: vec![],
                tags: vec![],
                roles: vec!["viewer".into()],
                owner: false,
            }],
            ..AuthConfig::default()
        };
        let changes = old.changes_to(&new);
        assert_eq!(
            changes.lines,
            [
                "user 'ann' roles changed (admin → viewer)",
                "user 'bob' password changed: its sessions end",
                "user 'dee' added",
                "user 'cy' removed: its sessions and tokens are revoked",
                "[auth] changed: private = true",
                "rules changed (the built-in ones → 1 rules)",
            ]
        );
        assert_eq!(changes.log_out, ["bob", "cy"]);
        assert_eq!(changes.revoke_tokens, ["cy"]);
        assert_eq!(new.changes_to(&new), AuthChanges::default());
    }
}
