//! Reading `master.toml`: the toml crate checks keys and types table by table (so one bad table does not hide the
//! problems of the others), then each section is checked for meaning and given its defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::{ConfigError, Problems};
use super::locks::{check_lock_uses, read_locks, RawLockUse};
use super::step::read_steps;
use super::{
    BuilderDef, ForceSchedulerDef, LockDef, MasterConfig, StoreConfig, StoreUrl, TlsFiles, WebConfig, WorkerDef,
    WorkerListenerConfig,
};

const DEFAULT_TITLE: &str = "Kiln";
const DEFAULT_STORE_URL: &str = "sqlite:state.sqlite";
const DEFAULT_WORKER_ADDRESS: &str = "0.0.0.0:9989";
const DEFAULT_WEB_ADDRESS: &str = "127.0.0.1:8010";
const DEFAULT_PING_INTERVAL_SECONDS: u64 = 10;
const DEFAULT_PING_TIMEOUT_SECONDS: u64 = 30;
const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u64 = 5;
const DEFAULT_WORKER_CONNECTIONS: usize = 4096;
const DEFAULT_WORKER_CONNECTIONS_PER_ADDRESS: usize = 2048;
const DEFAULT_HEADER_TIMEOUT_SECONDS: u64 = 10;
const DEFAULT_WEB_CONNECTIONS: usize = 512;
const DEFAULT_WEB_CONNECTIONS_PER_ADDRESS: usize = 128;
const DEFAULT_WORKDIR: &str = "build";
/// The reason a force scheduler's form starts with (Buildbot's).
const DEFAULT_FORCE_REASON: &str = "force build";

/// The `[[…]]` lists of a file, read apart from its other keys.
const TABLE_LISTS: [&str; 9] = [
    "worker",
    "factory",
    "builder",
    "force_scheduler",
    "scheduler",
    "change_source",
    "lock",
    "secret_provider",
    "reporter",
];

/// The top-level keys taken out before the rest of the file is read: the `[[…]]` lists and `[auth]`'s keys.
const ALSO_VALID: [&str; 10] = [
    TABLE_LISTS[0],
    TABLE_LISTS[1],
    TABLE_LISTS[2],
    TABLE_LISTS[3],
    TABLE_LISTS[4],
    TABLE_LISTS[5],
    TABLE_LISTS[6],
    super::auth::KEYS[0],
    super::auth::KEYS[1],
    super::auth::KEYS[2],
];

/// What a builder's steps inherit from it.
pub(super) struct Defaults<'a> {
    /// The builder's environment.
    pub(super) env: &'a BTreeMap<String, String>,
    /// The builder's default workdir.
    pub(super) workdir: &'a str,
    /// The `[[lock]]` tables, by name.
    pub(super) locks: &'a BTreeMap<String, LockDef>,
    /// The builder's `log_environ`, the default of its command steps'.
    pub(super) log_environ: bool,
}

/// Deserializes one value, recording the toml crate's error (with `context`, and `fallback_key` when the error
/// itself names no key) instead of returning it.
pub(super) fn read<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    problems: &mut Problems<'_>,
    context: Option<&str>,
    fallback_key: &str,
) -> Option<T> {
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|error| problems.add_toml(&error, context, Some(fallback_key)))
        .ok()
}

/// Checks that `text` is a valid Interpolate template (see [`crate::interpolate`]).
pub(super) fn check_template(
    text: &Spanned<String>,
    context: Option<&str>,
    key: &str,
    problems: &mut Problems<'_>,
) -> bool {
    match crate::interpolate::Template::parse(text.get_ref()) {
        Ok(template) => {
            let mut valid = true;
            for name in template.secret_names() {
                if let Err(e) = crate::secrets::check_name(&name) {
                    problems.add(text.span(), context, key, e.to_string());
                    valid = false;
                }
            }
            valid
        }
        Err(e) => {
            problems.add(text.span(), context, key, e.to_string());
            false
        }
    }
}

/// Checks every value of an environment as a template, and returns the plain values.
pub(super) fn env_templates(
    env: BTreeMap<String, Spanned<String>>,
    context: &str,
    problems: &mut Problems<'_>,
) -> (BTreeMap<String, String>, bool) {
    let mut valid = true;
    let mut plain = BTreeMap::new();
    for (name, value) in env {
        valid &= check_template(&value, Some(context), "env", problems);
        plain.insert(name, value.into_inner());
    }
    (plain, valid)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaster {
    title: Option<String>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    worker_listener: RawWorkerListener,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    change_hooks: super::changes::ChangeHooksConfig,
    #[serde(default)]
    retention: super::retention::RawRetention,
    #[serde(default)]
    secrets: super::secrets::RawSecrets,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWorkerListener {
    address: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_client_ca: Option<Spanned<String>>,
    tls_client_name: Option<Spanned<String>>,
    ping_interval: Option<Spanned<u64>>,
    ping_timeout: Option<Spanned<u64>>,
    handshake_timeout: Option<Spanned<u64>>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_address: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    address: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    header_timeout: Option<Spanned<u64>>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_address: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    name: Spanned<String>,
    password: Option<Spanned<String>>,
    password_hash: Option<Spanned<String>>,
    max_builds: Option<Spanned<u32>>,
    #[serde(default)]
    notify_on_missing: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilder {
    name: Spanned<String>,
    workers: Spanned<Vec<Spanned<String>>>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    workdir: Option<Spanned<String>>,
    builddir: Option<String>,
    force_scheduler: Option<bool>,
    #[serde(default)]
    properties: BTreeMap<String, Spanned<toml::Value>>,
    priority: Option<i32>,
    collapse_requests: Option<bool>,
    locks: Option<Vec<Spanned<RawLockUse>>>,
    log_retention: Option<Spanned<String>>,
    log_environ: Option<bool>,
    fork_secrets: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForceScheduler {
    name: Spanned<String>,
    builders: Spanned<Vec<Spanned<String>>>,
    label: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    parameter: Vec<super::force::RawParameter>,
    priority: Option<i32>,
}

/// The top-level keys and sections, checked.
struct MasterSettings {
    title: String,
    url: String,
    store: StoreConfig,
    worker_listener: WorkerListenerConfig,
    web: WebConfig,
    change_hooks: super::changes::ChangeHooksConfig,
    retention: super::RetentionConfig,
    secrets: super::secrets::RawSecrets,
}

/// Reads and checks a whole file.
pub(super) fn parse(text: &str, file: &str) -> Result<MasterConfig, ConfigError> {
    let mut problems = Problems::new(text, file);
    let (document, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for error in &errors {
            problems.add_toml(error, None, None);
        }
        return Err(problems.into_error());
    }
    let span = document.span();
    let mut document = document.into_inner();
    let [workers, factories, builders, force_schedulers, timed_schedulers, change_sources, locks, secret_providers, reporters] =
        TABLE_LISTS.map(|key| take_tables(&mut document, key, &mut problems));
    let auth = super::auth::take_auth(&mut document, &mut problems);

    let document = Spanned::new(span, DeValue::Table(document));
    let settings = problems
        .also_valid(&ALSO_VALID, |problems| read::<RawMaster>(document, problems, None, "master"))
        .and_then(|raw| check_settings(raw, &mut problems));
    let mut settings = settings;
    let raw_secrets = settings.as_mut().map(|s| std::mem::take(&mut s.secrets)).unwrap_or_default();
    let secrets = super::secrets::read_secrets(secret_providers, raw_secrets, &mut problems);
    let (workers, worker_names) = read_workers(workers, &mut problems);
    let factories = super::factory::read_factories(factories, &mut problems);
    let builders = super::factory::expand_builders(builders, &factories, &mut problems);
    let locks = read_locks(locks, &worker_names, &mut problems);
    let (builders, builder_names) = read_builders(builders, &worker_names, &locks, &mut problems);
    let force_schedulers = read_force_schedulers(force_schedulers, &builders, &builder_names, &mut problems);
    let mut scheduler_names: BTreeSet<String> = force_schedulers.iter().map(|s| s.name.clone()).collect();
    let builder_tags: BTreeMap<String, Vec<String>> =
        builders.iter().map(|b| (b.name.clone(), b.tags.clone())).collect();
    let schedulers = super::schedulers::read_schedulers(
        timed_schedulers,
        &builder_names,
        &builder_tags,
        &mut scheduler_names,
        &mut problems,
    );
    check_trigger_steps(&builders, &schedulers.triggerable, &mut problems);
    let change_sources = super::changes::read_change_sources(change_sources, &mut problems);
    let known = super::reporters::KnownNames {
        builders: &builder_names,
        builder_tags: &builder_tags,
        schedulers: &scheduler_names,
    };
    let reporters = super::reporters::read_reporters(reporters, &known, &mut problems);

    match (settings, auth) {
        (Some(settings), Some(auth)) if problems.is_empty() => Ok(MasterConfig {
            title: settings.title,
            url: settings.url,
            store: settings.store,
            worker_listener: settings.worker_listener,
            web: settings.web,
            workers,
            builders,
            force_schedulers,
            timed_schedulers: schedulers.timed,
            change_schedulers: schedulers.on_change,
            triggerable_schedulers: schedulers.triggerable,
            dependent_schedulers: schedulers.dependent,
            scheduler_submits: schedulers.submits,
            change_sources,
            change_hooks: settings.change_hooks,
            locks,
            retention: settings.retention,
            secrets,
            reporters,
            auth,
        }),
        _ => Err(problems.into_error()),
    }
}

/// Checks that the trigger steps name triggerable schedulers.
fn check_trigger_steps(
    builders: &[BuilderDef],
    triggerable: &[super::TriggerableSchedulerDef],
    problems: &mut Problems<'_>,
) {
    let names: BTreeSet<String> = triggerable.iter().map(|s| s.name.clone()).collect();
    for builder in builders {
        for step in &builder.steps {
            if let super::StepDef::Trigger(trigger) = step {
                let context = format!("builder '{}', step '{}'", builder.name, step.name());
                super::step::check_trigger_targets(trigger, &context, &names, problems);
            }
        }
    }
}

/// Removes `[[key]]` from the document and returns its tables.
fn take_tables<'i>(document: &mut DeTable<'i>, key: &str, problems: &mut Problems<'_>) -> Vec<Spanned<DeValue<'i>>> {
    let Some((name, value)) = document.remove_entry(key) else {
        return Vec::new();
    };
    match value.into_inner() {
        DeValue::Array(tables) => tables.into_iter().collect(),
        _ => {
            problems.add(name.span(), None, key, format!("expected a list of tables, written [[{key}]]"));
            Vec::new()
        }
    }
}

/// The `name` a table declares, if it is a string, whether or not the rest of the table is valid.
pub(super) fn declared_name(table: &DeValue<'_>) -> Option<String> {
    table.get("name").and_then(|name| name.get_ref().as_str()).map(str::to_owned)
}

/// How errors in the `index`th `[[kind]]` table say which one it is.
pub(super) fn context_of(kind: &str, name: Option<&str>, index: usize) -> String {
    match name {
        Some(name) => format!("{kind} '{name}'"),
        None => format!("{kind} #{}", index + 1),
    }
}

fn check_settings(raw: RawMaster, problems: &mut Problems<'_>) -> Option<MasterSettings> {
    let store = check_store(raw.store, problems);
    let worker_listener = check_worker_listener(raw.worker_listener, problems);
    let web = check_web(raw.web, problems);
    let retention = super::retention::check_retention(raw.retention, problems);
    let url = match (raw.url, &web) {
        (Some(url), _) if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://")) => {
            problems.add(url.span(), None, "url", format!("'{}' is not an http:// or https:// URL", url.get_ref()));
            None
        }
        (Some(url), _) => Some(url.into_inner()),
        (None, Some(web)) => Some(web_url(web.address, web.tls.is_some())),
        (None, None) => None,
    }
    .map(|url| if url.ends_with('/') { url } else { format!("{url}/") });
    Some(MasterSettings {
        title: raw.title.unwrap_or_else(|| DEFAULT_TITLE.to_owned()),
        url: url?,
        store: store?,
        worker_listener: worker_listener?,
        web: web?,
        change_hooks: raw.change_hooks,
        retention: retention?,
        secrets: raw.secrets,
    })
}

/// The URL of a web UI served on `address`: a wildcard address is reached as `localhost`.
fn web_url(address: SocketAddr, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    if address.ip().is_unspecified() {
        format!("{scheme}://localhost:{}/", address.port())
    } else {
        format!("{scheme}://{address}/")
    }
}

fn check_store(raw: RawStore, problems: &mut Problems<'_>) -> Option<StoreConfig> {
    let Some(url) = raw.url else {
        return Some(StoreConfig {
            url: StoreUrl::Sqlite { path: PathBuf::from(&DEFAULT_STORE_URL["sqlite:".len()..]) },
        });
    };
    let text = url.get_ref();
    let message = match StoreUrl::parse(text) {
        Ok(StoreUrl::Postgres { .. }) => {
            // Not the URL itself: it may carry a password.
            "PostgreSQL is not supported yet: the store must be an SQLite file for now (sqlite:PATH)".to_string()
        }
        Ok(store_url) => return Some(StoreConfig { url: store_url }),
        Err(_) => format!("'{text}' is not a store URL (sqlite:PATH or postgres://…)"),
    };
    problems.add(url.span(), Some("[store]"), "url", message);
    None
}

fn check_worker_listener(raw: RawWorkerListener, problems: &mut Problems<'_>) -> Option<WorkerListenerConfig> {
    const CONTEXT: &str = "[worker_listener]";
    let address = address(raw.address, DEFAULT_WORKER_ADDRESS, CONTEXT, problems);
    let has_tls = raw.tls_cert.is_some();
    let tls = tls_files(raw.tls_cert, raw.tls_key, CONTEXT, problems);
    let client_certs = super::client_certs::check(raw.tls_client_ca, raw.tls_client_name, has_tls, problems);
    let interval = raw.ping_interval.as_ref().map_or(DEFAULT_PING_INTERVAL_SECONDS, |seconds| *seconds.get_ref());
    let timeout = raw.ping_timeout.as_ref().map_or(DEFAULT_PING_TIMEOUT_SECONDS, |seconds| *seconds.get_ref());
    let mut pings_valid = true;
    if let Some(seconds) = raw.ping_interval.as_ref().filter(|_| interval == 0) {
        problems.add(seconds.span(), Some(CONTEXT), "ping_interval", "must be at least 1 second");
        pings_valid = false;
    }
    if timeout <= interval {
        let span = raw.ping_timeout.as_ref().or(raw.ping_interval.as_ref()).map_or(0..0, Spanned::span);
        let message = format!("ping_timeout ({timeout} s) must be longer than ping_interval ({interval} s)");
        problems.add(span, Some(CONTEXT), "ping_timeout", message);
        pings_valid = false;
    }
    let handshake_timeout =
        at_least_one(raw.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT_SECONDS, CONTEXT, "handshake_timeout", problems);
    let (max_connections, max_connections_per_address) = connection_caps(
        (raw.max_connections, DEFAULT_WORKER_CONNECTIONS),
        (raw.max_connections_per_address, DEFAULT_WORKER_CONNECTIONS_PER_ADDRESS),
        CONTEXT,
        problems,
    )?;
    pings_valid.then_some(())?;
    Some(WorkerListenerConfig {
        address: address?,
        tls: tls?,
        client_certs: client_certs?,
        ping_interval: Duration::from_secs(interval),
        ping_timeout: Duration::from_secs(timeout),
        handshake_timeout: Duration::from_secs(handshake_timeout?),
        max_connections,
        max_connections_per_address,
    })
}

/// A certificate and key given together, or neither.
fn tls_files(
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<Option<TlsFiles>> {
    match (cert, key) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => {
            Some(Some(TlsFiles { cert: cert.into_inner().into(), key: key.into_inner().into() }))
        }
        (Some(cert), None) => {
            problems.add(cert.span(), Some(context), "tls_key", "tls_cert is set but tls_key is missing");
            None
        }
        (None, Some(key)) => {
            problems.add(key.span(), Some(context), "tls_cert", "tls_key is set but tls_cert is missing");
            None
        }
    }
}

fn check_web(raw: RawWeb, problems: &mut Problems<'_>) -> Option<WebConfig> {
    const CONTEXT: &str = "[web]";
    let address = address(raw.address, DEFAULT_WEB_ADDRESS, CONTEXT, problems);
    let tls = tls_files(raw.tls_cert, raw.tls_key, CONTEXT, problems);
    let header_timeout =
        at_least_one(raw.header_timeout, DEFAULT_HEADER_TIMEOUT_SECONDS, CONTEXT, "header_timeout", problems);
    let (max_connections, max_connections_per_address) = connection_caps(
        (raw.max_connections, DEFAULT_WEB_CONNECTIONS),
        (raw.max_connections_per_address, DEFAULT_WEB_CONNECTIONS_PER_ADDRESS),
        CONTEXT,
        problems,
    )?;
    Some(WebConfig {
        address: address?,
        tls: tls?,
        header_timeout: Duration::from_secs(header_timeout?),
        max_connections,
        max_connections_per_address,
    })
}

/// A number of seconds that must be at least 1, or `default` when absent.
fn at_least_one(
    raw: Option<Spanned<u64>>,
    default: u64,
    context: &str,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<u64> {
    match raw {
        None => Some(default),
        Some(seconds) if *seconds.get_ref() == 0 => {
            problems.add(seconds.span(), Some(context), key, "must be at least 1 second");
            None
        }
        Some(seconds) => Some(seconds.into_inner()),
    }
}

/// `max_connections` and `max_connections_per_address` (each ≥ 1; the second at most the first), with their
/// defaults; a per-address default above an explicit total is lowered to it.
fn connection_caps(
    (total, total_default): (Option<Spanned<usize>>, usize),
    (per_address, per_address_default): (Option<Spanned<usize>>, usize),
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<(usize, usize)> {
    let mut valid = true;
    for (raw, key) in [(&total, "max_connections"), (&per_address, "max_connections_per_address")] {
        if let Some(n) = raw.as_ref().filter(|n| *n.get_ref() == 0) {
            problems.add(n.span(), Some(context), key, "must be at least 1");
            valid = false;
        }
    }
    let max = total.as_ref().map_or(total_default, |n| *n.get_ref());
    let per = match &per_address {
        Some(n) if *n.get_ref() > max => {
            let message = format!("{} is more than max_connections ({max})", n.get_ref());
            problems.add(n.span(), Some(context), "max_connections_per_address", message);
            valid = false;
            max
        }
        Some(n) => *n.get_ref(),
        None => per_address_default.min(max),
    };
    valid.then_some((max, per))
}

/// An `IP:port` address, or `default` when absent.
fn address(
    raw: Option<Spanned<String>>,
    default: &str,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<SocketAddr> {
    let Some(raw) = raw else {
        return default.parse().ok();
    };
    match raw.get_ref().parse() {
        Ok(address) => Some(address),
        Err(_) => {
            let message = format!("'{}' is not an address (IP:port, e.g. 127.0.0.1:8010)", raw.get_ref());
            problems.add(raw.span(), Some(context), "address", message);
            None
        }
    }
}

/// Reads the `[[worker]]` tables; also returns every declared name, including those of invalid tables, so that
/// builders naming them are not reported too.
fn read_workers(tables: Vec<Spanned<DeValue<'_>>>, problems: &mut Problems<'_>) -> (Vec<WorkerDef>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut workers = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("worker", declared.as_deref(), index);
        let table_span = table.span();
        let Some(raw) = read::<RawWorker>(table, problems, Some(&context), "worker") else {
            names.extend(declared);
            continue;
        };
        let mut valid = check_name(&raw.name, &mut names, &context, "worker", problems);
        if raw.name.get_ref().contains(':') {
            problems.add(raw.name.span(), Some(&context), "name", "a worker name cannot contain ':'");
            valid = false;
        }
        if let Some(max_builds) = raw.max_builds.as_ref().filter(|max_builds| *max_builds.get_ref() == 0) {
            let message = "must be at least 1; leave it out for no limit";
            problems.add(max_builds.span(), Some(&context), "max_builds", message);
            valid = false;
        }
        let password = super::secrets::worker_password(raw.password, raw.password_hash, table_span, &context, problems);
        if let (true, Some(password)) = (valid, password) {
            workers.push(WorkerDef {
                name: raw.name.into_inner(),
                password,
                max_builds: raw.max_builds.map(Spanned::into_inner),
                notify_on_missing: raw.notify_on_missing,
            });
        }
    }
    (workers, names)
}

/// Checks that a name is not empty and not taken, and takes it.
pub(super) fn check_name(
    name: &Spanned<String>,
    names: &mut BTreeSet<String>,
    context: &str,
    kind: &str,
    problems: &mut Problems<'_>,
) -> bool {
    if name.get_ref().is_empty() {
        problems.add(name.span(), Some(context), "name", format!("a {kind} name cannot be empty"));
        false
    } else if !names.insert(name.get_ref().clone()) {
        problems.add(name.span(), Some(context), "name", format!("another {kind} has this name"));
        false
    } else {
        true
    }
}

/// Checks a non-empty list of names, each in `known` and none twice.
pub(super) fn check_references(
    list: &Spanned<Vec<Spanned<String>>>,
    known: &BTreeSet<String>,
    context: &str,
    key: &str,
    kind: &str,
    problems: &mut Problems<'_>,
) -> bool {
    let mut valid = true;
    if list.get_ref().is_empty() {
        problems.add(list.span(), Some(context), key, format!("needs at least one {kind}"));
        valid = false;
    }
    let mut seen = BTreeSet::new();
    for name in list.get_ref() {
        if !known.contains(name.get_ref()) {
            problems.add(name.span(), Some(context), key, format!("unknown {kind} '{}'", name.get_ref()));
            valid = false;
        } else if !seen.insert(name.get_ref()) {
            problems.add(name.span(), Some(context), key, format!("{kind} '{}' is listed twice", name.get_ref()));
            valid = false;
        }
    }
    valid
}

/// Checks a scheduler's `builders`, where a name with `*`, `?` or `[` is a glob pattern standing for every builder
/// it matches (in name order; a builder listed already is not added again): matrix builders need not be listed
/// one by one (`builders = ["*-devel"]`). A pattern that matches no builder is an error.
pub(super) fn check_builder_list(
    list: &mut Spanned<Vec<Spanned<String>>>,
    builders: &BTreeSet<String>,
    context: &str,
    problems: &mut Problems<'_>,
) -> bool {
    let mut valid = true;
    let mut names: Vec<Spanned<String>> = Vec::new();
    for entry in std::mem::take(list.get_mut()) {
        if !entry.get_ref().contains(['*', '?', '[']) {
            names.push(entry);
            continue;
        }
        let pattern = match glob::Pattern::new(entry.get_ref()) {
            Ok(pattern) => pattern,
            Err(e) => {
                let message = format!("'{}' is not a glob pattern: {e}", entry.get_ref());
                problems.add(entry.span(), Some(context), "builders", message);
                valid = false;
                continue;
            }
        };
        let matching: Vec<&String> = builders.iter().filter(|name| pattern.matches(name)).collect();
        if matching.is_empty() {
            let message = format!("the pattern '{}' matches no builder", entry.get_ref());
            problems.add(entry.span(), Some(context), "builders", message);
            valid = false;
        }
        for name in matching {
            if !names.iter().any(|listed| listed.get_ref() == name) {
                names.push(Spanned::new(entry.span(), name.clone()));
            }
        }
    }
    *list.get_mut() = names;
    if !valid && list.get_ref().is_empty() {
        return false; // "needs at least one builder" would only repeat what the patterns' errors say
    }
    check_references(list, builders, context, "builders", "builder", problems) && valid
}

/// Reads the `[[builder]]` tables and their steps; also returns every declared name, including those of invalid
/// tables.
fn read_builders(
    tables: Vec<Spanned<DeValue<'_>>>,
    worker_names: &BTreeSet<String>,
    locks: &BTreeMap<String, LockDef>,
    problems: &mut Problems<'_>,
) -> (Vec<BuilderDef>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut builders = Vec::new();
    for (index, mut table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("builder", declared.as_deref(), index);
        let steps = match table.get_mut() {
            DeValue::Table(keys) => keys.remove("step").map(Spanned::into_inner),
            _ => None,
        };
        let steps = match steps {
            None => Vec::new(),
            Some(DeValue::Array(steps)) => steps.into_iter().collect(),
            Some(_) => {
                problems.add(
                    table.span(),
                    Some(&context),
                    "step",
                    "expected a list of tables, written [[builder.step]]",
                );
                Vec::new()
            }
        };
        let Some(raw) = read::<RawBuilder>(table, problems, Some(&context), "builder") else {
            let no_env = BTreeMap::new();
            let defaults = Defaults { env: &no_env, workdir: DEFAULT_WORKDIR, locks, log_environ: false };
            read_steps(steps, &context, &defaults, problems);
            names.extend(declared);
            continue;
        };
        let (env, env_valid) = env_templates(raw.env, &context, problems);
        let workdir_valid = raw.workdir.as_ref().is_none_or(|w| check_template(w, Some(&context), "workdir", problems));
        let workdir = raw.workdir.map_or_else(|| DEFAULT_WORKDIR.to_owned(), Spanned::into_inner);
        let log_environ = raw.log_environ.unwrap_or(false);
        let steps =
            read_steps(steps, &context, &Defaults { env: &env, workdir: &workdir, locks, log_environ }, problems);
        let lock_uses = check_lock_uses(raw.locks, locks, &context, problems);
        let name_valid = check_name(&raw.name, &mut names, &context, "builder", problems);
        let workers_valid = check_references(&raw.workers, worker_names, &context, "workers", "worker", problems);
        let properties = builder_properties(raw.properties, &context, problems);
        let log_retention = raw
            .log_retention
            .as_ref()
            .map(|text| super::retention::read_retention(text, Some(&context), "log_retention", problems));
        if name_valid && workers_valid && env_valid && workdir_valid && log_retention.is_none_or(|r| r.is_some()) {
            let name = raw.name.into_inner();
            builders.push(BuilderDef {
                workers: raw.workers.into_inner().into_iter().map(Spanned::into_inner).collect(),
                description: raw.description,
                tags: raw.tags,
                env,
                workdir,
                builddir: raw.builddir.unwrap_or_else(|| name.clone()),
                force_scheduler: raw.force_scheduler.unwrap_or(true),
                properties: properties.unwrap_or_default(),
                steps,
                priority: raw.priority.unwrap_or(0),
                collapse_requests: raw.collapse_requests.unwrap_or(true),
                locks: lock_uses,
                log_retention: log_retention.flatten(),
                fork_secrets: raw.fork_secrets.unwrap_or(false),
                name,
            });
        }
    }
    (builders, names)
}

/// A builder's static properties: each a string, an integer, a float or a boolean, kept as a JSON value.
pub(super) fn builder_properties(
    raw: BTreeMap<String, Spanned<toml::Value>>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<BTreeMap<String, serde_json::Value>> {
    let mut properties = BTreeMap::new();
    let mut valid = true;
    for (name, value) in raw {
        let span = value.span();
        let json = match value.into_inner() {
            toml::Value::String(s) => serde_json::Value::from(s),
            toml::Value::Integer(i) => serde_json::Value::from(i),
            toml::Value::Float(f) => serde_json::Value::from(f),
            toml::Value::Boolean(b) => serde_json::Value::from(b),
            other => {
                let message = format!(
                    "property '{name}' has the type {}; a property is a string, a number or a boolean",
                    other.type_str()
                );
                problems.add(span, Some(context), "properties", message);
                valid = false;
                continue;
            }
        };
        properties.insert(name, json);
    }
    valid.then_some(properties)
}

/// Reads the `[[force_scheduler]]` tables and adds the implicit `force-<builder>` schedulers after them.
fn read_force_schedulers(
    tables: Vec<Spanned<DeValue<'_>>>,
    builders: &[BuilderDef],
    builder_names: &BTreeSet<String>,
    problems: &mut Problems<'_>,
) -> Vec<ForceSchedulerDef> {
    let implicit: Vec<(String, &str)> = builders
        .iter()
        .filter(|builder| builder.force_scheduler)
        .map(|builder| (format!("force-{}", builder.name), builder.name.as_str()))
        .collect();
    let mut names = BTreeSet::new();
    let mut schedulers = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("force_scheduler", declared.as_deref(), index);
        let Some(mut raw) = read::<RawForceScheduler>(table, problems, Some(&context), "force_scheduler") else {
            continue;
        };
        let mut name_valid = check_name(&raw.name, &mut names, &context, "scheduler", problems);
        if let Some((_, builder)) = implicit.iter().find(|(name, _)| name == raw.name.get_ref()) {
            let message = format!(
                "builder '{builder}' already has a force scheduler with this name (set force_scheduler = false on it)"
            );
            problems.add(raw.name.span(), Some(&context), "name", message);
            name_valid = false;
        }
        let builders_valid = check_builder_list(&mut raw.builders, builder_names, &context, problems);
        let parameters = super::force::check_parameters(raw.parameter, &context, problems);
        if let (true, true, Some(parameters)) = (name_valid, builders_valid, parameters) {
            let name = raw.name.into_inner();
            schedulers.push(ForceSchedulerDef {
                builders: raw.builders.into_inner().into_iter().map(Spanned::into_inner).collect(),
                label: raw.label.unwrap_or_else(|| name.clone()),
                reason: raw.reason.unwrap_or_else(|| DEFAULT_FORCE_REASON.to_owned()),
                parameters,
                priority: raw.priority,
                name,
            });
        }
    }
    schedulers.extend(implicit.into_iter().map(|(name, builder)| ForceSchedulerDef {
        builders: vec![builder.to_owned()],
        label: name.clone(),
        reason: DEFAULT_FORCE_REASON.to_owned(),
        parameters: Vec::new(),
        priority: None,
        name,
    }));
    schedulers
}
