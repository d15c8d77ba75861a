//! The master's configuration: one TOML file, `master.toml`, in the master's directory.
//!
//! The whole file is checked before anything starts: unknown keys, wrong types and semantic mistakes (a builder
//! naming an unknown worker, two builders with one name, a step without a command…) are all reported, each with
//! the file, the line and the key (`master.toml:14: builder 'test', key 'workers': unknown worker 'linux-2'`).
//! The result is fully resolved: every default is filled in, step names are derived, environments are merged,
//! the implicit `force-<builder>` schedulers are listed and (with [`MasterConfig::load`]) relative paths are
//! made absolute. `docs/configuration.md` is the user's reference for every key.
//!
//! ```
//! let config = kiln_master::config::MasterConfig::from_str(kiln_master::config::SAMPLE, "master.toml").unwrap();
//! assert_eq!(config.builders[0].name, "test");
//! ```

mod error;
mod factory;
mod parse;
mod step;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigProblem};
mod auth;
mod changes;
mod client_certs;
mod force;
mod locks;
mod reporters;
mod retention;
mod schedulers;
pub use changes::{
    BaseHookDef, Branches, ChangeHooksConfig, ChangeSourceDef, GitPollerDef, HookDef, PollerHookDef, PullRequestRef,
    ReleasePollerDef, SkipMarkers,
};
mod secrets;
pub use auth::{Action, AuthChanges, AuthConfig, ProxyDef, RuleDef, UserDef, ADMIN_ROLE, BUILT_IN_ROLES};
pub use force::{ForceParameter, ParameterType, RESERVED_NAMES};
pub use locks::{LockAccess, LockDef, LockKind, LockUse};
pub use reporters::{
    parse_smtp_url, valid_address, ChatService, Credentials, Forge, ForgeDef, Generator, MailDef, Mode, PreviousRule,
    ReporterDef, ReporterFilter, SmtpSecurity, SmtpServer, Target, TemplateDef, DEFAULT_CONTEXT,
};
pub use retention::{parse_duration, RetentionConfig};
pub use schedulers::{
    ChangeFilterDef, ChangeSchedulerDef, CodebaseDef, DependentSchedulerDef, SubmitDef, TimedSchedulerDef, Timing,
    TriggerableSchedulerDef,
};
pub use secrets::WorkerPassword;
pub use step::{
    DownloadStep, GitMethod, GitMode, GitStep, ShellCommand, ShellStep, StepDef, StepOptions, TriggerStep, UploadStep,
};

/// The name of the config file in a master's directory.
pub const FILE_NAME: &str = "master.toml";

/// A commented `master.toml` using every key, with one worker and one builder; `kiln create-master` writes it.
pub const SAMPLE: &str = include_str!("sample.toml");

/// A master's whole configuration, checked and with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    /// The title shown in the web UI.
    pub title: String,
    /// The public URL of the web UI, for links in reports; always ends with `/`.
    pub url: String,
    /// Where the master keeps its state.
    pub store: StoreConfig,
    /// Where workers connect.
    pub worker_listener: WorkerListenerConfig,
    /// Where the web UI is served.
    pub web: WebConfig,
    /// The workers allowed to connect, in the file's order.
    pub workers: Vec<WorkerDef>,
    /// The builders, in the file's order.
    pub builders: Vec<BuilderDef>,
    /// Every force scheduler: the declared ones, then the implicit `force-<builder>` ones.
    pub force_schedulers: Vec<ForceSchedulerDef>,
    /// Schedulers that fire by the clock (`[[scheduler]]`).
    pub timed_schedulers: Vec<TimedSchedulerDef>,
    /// Schedulers that build changes (`[[scheduler]]` with `type = "on_change"`).
    pub change_schedulers: Vec<ChangeSchedulerDef>,
    /// Schedulers that `trigger` steps submit to (`type = "triggerable"`).
    pub triggerable_schedulers: Vec<TriggerableSchedulerDef>,
    /// Schedulers that follow another's successful buildsets (`type = "dependent"`).
    pub dependent_schedulers: Vec<DependentSchedulerDef>,
    /// What each `[[scheduler]]` (by name) puts in its buildsets: reason, properties, codebases.
    pub scheduler_submits: BTreeMap<String, SubmitDef>,
    /// Pollers the master runs (`[[change_source]]`).
    pub change_sources: Vec<ChangeSourceDef>,
    /// Webhook endpoints the web listener serves (`[change_hooks.*]`).
    pub change_hooks: ChangeHooksConfig,
    /// The locks builders and steps take (`[[lock]]`), by name.
    pub locks: BTreeMap<String, LockDef>,
    /// How long logs are kept (`[retention]`).
    pub retention: RetentionConfig,
    /// Where `%(secret:NAME)s` forms are looked up (`[[secret_provider]]`), and `[secrets]`.
    pub secrets: crate::secrets::SecretsConfig,
    /// Who is told about builds, and how (`[[reporter]]`), in the file's order.
    pub reporters: Vec<ReporterDef>,
    /// Users, logins and who may do what (`[auth]`, `[[user]]`, `[[rule]]`).
    pub auth: AuthConfig,
}

/// Where the master keeps its state (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The database.
    pub url: StoreUrl,
}

/// A database the store can use: the store's own typed URL.
pub use crate::store::StoreUrl;

/// Where and how workers connect (`[worker_listener]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerListenerConfig {
    /// The address the worker port listens on.
    pub address: SocketAddr,
    /// The certificate and key to serve `wss://` with; plain `ws://` without.
    pub tls: Option<TlsFiles>,
    /// Client certificates the workers must present (mutual TLS), with `tls`.
    pub client_certs: Option<ClientCerts>,
    /// The time between liveness pings of a connected worker.
    pub ping_interval: Duration,
    /// How long a worker may answer nothing before it is lost (its builds end RETRY).
    pub ping_timeout: Duration,
    /// How long a new connection has to finish its TLS and WebSocket handshakes.
    pub handshake_timeout: Duration,
    /// Open connections at most (workers and handshakes), lowered at start to fit the file-descriptor limit.
    pub max_connections: usize,
    /// Open connections at most from one IP address.
    pub max_connections_per_address: usize,
}

/// A TLS certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// The client certificates a TLS worker port requires (`tls_client_ca`, `tls_client_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCerts {
    /// The PEM file of the CA (or CAs) a worker's certificate must be signed by.
    pub ca: PathBuf,
    /// Whether the certificate must be for the worker's name (its common name or a subject alternative name).
    pub name_must_match: bool,
}

/// Where the web UI is served (`[web]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// The address the web server listens on.
    pub address: SocketAddr,
    /// The certificate and key to serve https with; plain http without.
    pub tls: Option<TlsFiles>,
    /// How long a connection has to send a whole request head, from its opening and again after each answer
    /// (so also how long an idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// Open connections at most, lowered at start to fit the file-descriptor limit.
    pub max_connections: usize,
    /// Open connections at most from one IP address.
    pub max_connections_per_address: usize,
}

/// A worker allowed to connect (`[[worker]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDef {
    /// The name the worker logs in with.
    pub name: String,
    /// The password the worker logs in with, or its hash. `Debug` shows neither.
    pub password: WorkerPassword,
    /// How many builds may run on it at once; `None` for no limit.
    pub max_builds: Option<u32>,
    /// Addresses to tell when the worker goes missing.
    pub notify_on_missing: Vec<String>,
}

/// A builder: which workers may run its builds and the steps of each build (`[[builder]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BuilderDef {
    /// The builder's name.
    pub name: String,
    /// The workers its builds may run on (at least one).
    pub workers: Vec<String>,
    /// What the builder is for.
    pub description: Option<String>,
    /// Tags, for filtering in the web UI.
    pub tags: Vec<String>,
    /// The environment of every step (each step's [`ShellStep::env`] already includes it).
    pub env: BTreeMap<String, String>,
    /// The default workdir of its steps, relative to [`BuilderDef::builddir`] on the worker.
    pub workdir: String,
    /// The builder's directory under the worker's base directory.
    pub builddir: String,
    /// Whether a force scheduler `force-<name>` is made for it.
    pub force_scheduler: bool,
    /// Static properties every build of the builder gets (source `Builder`), by name.
    pub properties: BTreeMap<String, serde_json::Value>,
    /// The steps of each build, in order; their names are unique within the builder.
    pub steps: Vec<StepDef>,
    /// The priority of its requests when their scheduler gives none.
    pub priority: i32,
    /// Whether a new request makes the older queued ones it covers SKIPPED (Buildbot's `collapseRequests`).
    pub collapse_requests: bool,
    /// The locks each build holds from its start to its end.
    pub locks: Vec<LockUse>,
    /// How long its builds' logs are kept (`log_retention`): `None` takes `[retention] logs`; `Some(None)` is
    /// forever.
    pub log_retention: Option<Option<Duration>>,
    /// Whether its builds of pull requests from forks get secrets too (`fork_secrets`; off: they get none).
    pub fork_secrets: bool,
}

impl BuilderDef {
    /// How long this builder's logs are kept under `retention`; `None`: forever.
    pub fn logs_kept(&self, retention: &RetentionConfig) -> Option<Duration> {
        self.log_retention.unwrap_or(retention.logs)
    }
}

/// A force scheduler: lets a user start builds from the web UI (`[[force_scheduler]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceSchedulerDef {
    /// The scheduler's name, unique among all schedulers.
    pub name: String,
    /// The builders it starts builds on.
    pub builders: Vec<String>,
    /// The text of its button in the web UI.
    pub label: String,
    /// The reason the form starts with.
    pub reason: String,
    /// The typed fields of its form (besides the built-in reason, owner, priority and source stamp fields).
    pub parameters: Vec<ForceParameter>,
    /// The priority of the requests it makes; `None`: each builder's own.
    pub priority: Option<i32>,
}

impl MasterConfig {
    /// Reads and checks `dir/master.toml`, and makes its relative paths (SQLite file, TLS files) relative to `dir`.
    pub fn load(dir: &Path) -> Result<MasterConfig, ConfigError> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let mut config = MasterConfig::from_str(&text, &path.display().to_string())?;
        config.resolve_paths(dir);
        Ok(config)
    }

    /// Checks a config given as text; `file` names it in error messages. Paths are kept as written.
    #[allow(clippy::should_implement_trait)] // `FromStr` has no room for the file name.
    pub fn from_str(text: &str, file: &str) -> Result<MasterConfig, ConfigError> {
        parse::parse(text, file)
    }

    /// Makes relative paths relative to the master's directory.
    fn resolve_paths(&mut self, dir: &Path) {
        if let StoreUrl::Sqlite { path } = &mut self.store.url {
            *path = dir.join(&*path);
        }
        for provider in &mut self.secrets.providers {
            if let crate::secrets::ProviderDef::Dir { path } = provider {
                *path = dir.join(&*path);
            }
        }
        if let Some(tls) = &mut self.worker_listener.tls {
            tls.cert = dir.join(&tls.cert);
            tls.key = dir.join(&tls.key);
        }
        if let Some(client) = &mut self.worker_listener.client_certs {
            client.ca = dir.join(&client.ca);
        }
        if let Some(tls) = &mut self.web.tls {
            tls.cert = dir.join(&tls.cert);
            tls.key = dir.join(&tls.key);
        }
        if let Some(htpasswd) = &mut self.auth.htpasswd {
            *htpasswd = dir.join(&*htpasswd);
        }
        for step in self.builders.iter_mut().flat_map(|b| b.steps.iter_mut()) {
            match step {
                StepDef::Upload(upload) => upload.masterdest = dir.join(&upload.masterdest),
                StepDef::Download(download) => download.mastersrc = dir.join(&download.mastersrc),
                StepDef::Shell(_) | StepDef::Trigger(_) | StepDef::Git(_) => {}
            }
        }
        for reporter in &mut self.reporters {
            if let Target::Mail(MailDef { ca_file: Some(path), .. }) = &mut reporter.target {
                *path = dir.join(&*path);
            }
        }
    }
}

#[cfg(test)]
mod tests;
