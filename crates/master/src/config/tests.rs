use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::results;

/// The smallest valid config: one worker, one builder with one step.
const MINIMAL: &str = r#"
[[worker]]
name = "linux-1"
password = "pw"

[[builder]]
name = "test"
workers = ["linux-1"]

  [[builder.step]]
  command = "make -j4"
"#;

fn load(text: &str) -> MasterConfig {
    match MasterConfig::from_str(text, "master.toml") {
        Ok(config) => config,
        Err(error) => panic!("config should load:\n{error}"),
    }
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    match MasterConfig::from_str(text, "master.toml") {
        Ok(_) => panic!("config should not load"),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(error) => panic!("unexpected error: {error}"),
    }
}

/// Asserts that `text` has exactly one problem, at `line` with `key`, whose message contains `needle`; returns
/// the whole message.
fn one_problem(text: &str, line: usize, key: &str, needle: &str) -> String {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected one problem, got: {found:#?}");
    let problem = &found[0];
    let message = problem.to_string();
    assert_eq!(problem.line, line, "{message}");
    assert_eq!(problem.key.as_deref(), Some(key), "{message}");
    assert!(message.starts_with(&format!("master.toml:{line}: ")), "{message}");
    assert!(message.contains(&format!("key '{key}'")), "{message}");
    assert!(message.contains(needle), "{message:?} should contain {needle:?}");
    message
}

fn shell(step: &StepDef) -> &ShellStep {
    match step {
        StepDef::Shell(step) => step,
        other => panic!("a shell step expected, got {other:?}"),
    }
}

#[test]
fn the_sample_loads() {
    let config = load(SAMPLE);
    assert_eq!(config.workers.len(), 1);
    assert_eq!(config.builders.len(), 1);
    let builder = &config.builders[0];
    assert_eq!(builder.steps.len(), 2);
    assert_eq!(builder.steps.iter().map(StepDef::name).collect::<Vec<_>>(), ["compile", "test"]);
    let names: Vec<_> = config.force_schedulers.iter().map(|scheduler| scheduler.name.as_str()).collect();
    assert_eq!(names, ["force-all", "force-test"]);
    let test = shell(&builder.steps[1]);
    assert_eq!(test.command, ShellCommand::Argv(vec!["sh".into(), "out/hello.sh".into()]));
    assert_eq!(test.decode_rc, BTreeMap::from([(0, results::SUCCESS), (1, results::WARNINGS)]));
}

#[test]
fn every_default() {
    let config = load(MINIMAL);
    assert_eq!(config.title, "Kiln");
    assert_eq!(config.url, "http://127.0.0.1:8010/");
    assert_eq!(config.store.url, StoreUrl::Sqlite { path: PathBuf::from("state.sqlite") });
    assert_eq!(config.worker_listener.address, "0.0.0.0:9989".parse().unwrap());
    assert_eq!(config.worker_listener.tls, None);
    assert_eq!(config.worker_listener.ping_interval, Duration::from_secs(10));
    assert_eq!(config.worker_listener.ping_timeout, Duration::from_secs(30));
    assert_eq!(config.worker_listener.handshake_timeout, Duration::from_secs(5));
    assert_eq!(config.worker_listener.max_connections, 4096);
    assert_eq!(config.worker_listener.max_connections_per_address, 2048);
    assert_eq!(config.web.address, "127.0.0.1:8010".parse().unwrap());
    assert_eq!(config.web.header_timeout, Duration::from_secs(10));
    assert_eq!(config.web.max_connections, 512);
    assert_eq!(config.web.max_connections_per_address, 128);

    let worker = &config.workers[0];
    assert_eq!(worker.max_builds, None);
    assert!(worker.notify_on_missing.is_empty());

    let builder = &config.builders[0];
    assert_eq!(builder.description, None);
    assert!(builder.tags.is_empty());
    assert!(builder.env.is_empty());
    assert_eq!(builder.workdir, "build");
    assert_eq!(builder.builddir, "test");
    assert!(builder.force_scheduler);
    assert_eq!(
        config.force_schedulers,
        [ForceSchedulerDef {
            name: "force-test".into(),
            builders: vec!["test".into()],
            label: "force-test".into(),
            reason: "force build".into(),
            parameters: vec![],
            priority: None
        }]
    );

    let step = shell(&builder.steps[0]);
    assert_eq!(
        step.options,
        StepOptions {
            name: "make".into(),
            halt_on_failure: false,
            flunk_on_failure: true,
            warn_on_failure: false,
            always_run: false,
            locks: Vec::new(),
        }
    );
    assert_eq!(step.command, ShellCommand::Shell("make -j4".into()));
    assert!(step.env.is_empty());
    assert_eq!(step.workdir, "build");
    assert_eq!(step.timeout, Some(Duration::from_secs(1200)));
    assert_eq!(step.max_time, None);
    assert_eq!(step.decode_rc, BTreeMap::from([(0, results::SUCCESS)]));
    assert_eq!(step.sigterm_time, None);
    assert_eq!(step.interrupt_signal, "KILL");
}

#[test]
fn the_url_follows_the_web_address_and_ends_with_a_slash() {
    let config = load(&format!("[web]\naddress = \"0.0.0.0:9000\"\n{MINIMAL}"));
    assert_eq!(config.url, "http://localhost:9000/");
    let config = load(&format!("url = \"https://ci.example.org\"\n{MINIMAL}"));
    assert_eq!(config.url, "https://ci.example.org/");
}

#[test]
fn steps_inherit_from_their_builder_and_get_unique_names() {
    let config = load(
        r#"
[[worker]]
name = "w"
password = "pw"

[[builder]]
name = "b"
workers = ["w"]
env = { LANG = "C", CC = "gcc" }
workdir = "src"

  [[builder.step]]
  command = "/usr/bin/make all"
  env = { CC = "clang" }
  [[builder.step]]
  command = ["make", "check"]
  workdir = "src/tests"
  timeout = 0
  max_time = 0
  [[builder.step]]
  name = "make_2"
  command = "true"
"#,
    );
    let steps = &config.builders[0].steps;
    assert_eq!(steps.iter().map(StepDef::name).collect::<Vec<_>>(), ["make", "make_3", "make_2"]);
    let first = shell(&steps[0]);
    assert_eq!(first.env, BTreeMap::from([("LANG".into(), "C".into()), ("CC".into(), "clang".into())]));
    assert_eq!(first.workdir, "src");
    let second = shell(&steps[1]);
    assert_eq!(second.workdir, "src/tests");
    assert_eq!(second.timeout, None, "timeout = 0 disables the timeout");
    assert_eq!(second.max_time, None);
}

/// Two workers, a master lock `db` (2 units) and a worker lock `disk` (1, 3 on `big`), then `rest`.
fn with_locks(rest: &str) -> String {
    format!(
        r#"[[worker]]
name = "small"
password = "pw"
[[worker]]
name = "big"
password = "pw"
[[lock]]
name = "db"
type = "master"
max_count = 2
[[lock]]
name = "disk"
type = "worker"
max_count_for_worker = {{ big = 3 }}
{rest}"#
    )
}

#[test]
fn priorities_collapsing_and_locks_of_builders_and_steps() {
    let config = load(&with_locks(
        r#"[[builder]]
name = "b"
workers = ["small", "big"]
priority = 7
collapse_requests = false
locks = ["db", { name = "disk", access = "exclusive" }]
  [[builder.step]]
  command = "make"
  locks = [{ name = "db", access = "counting", count = 2 }]
[[builder]]
name = "plain"
workers = ["small"]
  [[builder.step]]
  command = "make"
[[force_scheduler]]
name = "urgent"
builders = ["b"]
priority = 100
[[scheduler]]
name = "hourly"
type = "periodic"
interval = 3600
builders = ["b"]
priority = -1
"#,
    ));
    let b = &config.builders[0];
    assert_eq!((b.priority, b.collapse_requests), (7, false));
    assert_eq!(
        b.locks,
        [
            LockUse { name: "db".into(), access: LockAccess::Counting, count: 1 },
            LockUse { name: "disk".into(), access: LockAccess::Exclusive, count: 1 },
        ]
    );
    assert_eq!(b.steps[0].options().locks, [LockUse { name: "db".into(), access: LockAccess::Counting, count: 2 }]);
    let plain = &config.builders[1];
    assert_eq!((plain.priority, plain.collapse_requests, plain.locks.len()), (0, true, 0));
    assert_eq!(config.force_schedulers[0].priority, Some(100));
    assert_eq!(config.force_schedulers[1].priority, None, "the implicit force-b");
    assert_eq!(config.timed_schedulers[0].priority, Some(-1));
    let disk = &config.locks["disk"];
    assert_eq!((disk.kind, disk.max_count_on("big"), disk.max_count_on("small")), (LockKind::Worker, 3, 1));
    let db = &config.locks["db"];
    assert_eq!((db.kind, db.max_count_on("big")), (LockKind::Master, 2));
}

#[test]
fn bad_locks_are_reported() {
    let builder =
        |locks: &str| with_locks(&format!("[[builder]]\nname = \"b\"\nworkers = [\"big\"]\nlocks = {locks}\n"));
    one_problem(&builder(r#"["nope"]"#), 18, "locks", "unknown lock 'nope'");
    one_problem(&builder(r#"[{ name = "db", access = "shared" }]"#), 18, "locks", "unknown access 'shared'");
    one_problem(&builder(r#"[{ name = "db", count = 3 }]"#), 18, "locks", "more than its max_count (2)");
    one_problem(&builder(r#"[{ name = "disk", count = 4 }]"#), 18, "locks", "more than its max_count (3)");
    one_problem(&builder(r#"[{ name = "db", access = "exclusive", count = 2 }]"#), 18, "locks", "count of 1");
    let step = with_locks(
        "[[builder]]\nname = \"b\"\nworkers = [\"big\"]\n  [[builder.step]]\n  command = \"x\"\n  locks = [\"nope\"]\n",
    );
    one_problem(&step, 20, "locks", "unknown lock 'nope'");
    let text = "[[worker]]\nname = \"w\"\npassword = \"p\"\n[[lock]]\nname = \"l\"\ntype = \"global\"\n";
    one_problem(text, 6, "type", "unknown lock type 'global'");
    let text = "[[worker]]\nname = \"w\"\npassword = \"p\"\n[[lock]]\nname = \"l\"\ntype = \"master\"\nmax_count_for_worker = { w = 2 }\n";
    one_problem(text, 7, "max_count_for_worker", "only a worker lock");
    let text = "[[worker]]\nname = \"w\"\npassword = \"p\"\n[[lock]]\nname = \"l\"\ntype = \"worker\"\nmax_count = 0\n";
    one_problem(text, 7, "max_count", "at least 1");
}

#[test]
fn a_postgres_url_is_refused_as_not_supported_yet() {
    for url in ["postgres://kiln:hunter2@db.example.org/kiln", "postgresql://db.example.org/kiln"] {
        let message =
            one_problem(&format!("[store]\nurl = \"{url}\"\n{MINIMAL}"), 2, "url", "PostgreSQL is not supported yet");
        assert!(!message.contains("hunter2"), "{message}");
    }
    one_problem(&format!("[store]\nurl = \"mysql://db/kiln\"\n{MINIMAL}"), 2, "url", "is not a store URL");
}

#[test]
fn relative_paths_are_relative_to_the_master_directory() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nurl = \"sqlite:db/state.sqlite\"\n[worker_listener]\ntls_cert = \"cert.pem\"\ntls_key = \"/etc/kiln/key.pem\"\n\
         tls_client_ca = \"ca/workers.pem\"\n{MINIMAL}"
    );
    std::fs::write(dir.path().join("master.toml"), text).unwrap();
    let config = MasterConfig::load(dir.path()).unwrap();
    assert_eq!(config.store.url, StoreUrl::Sqlite { path: dir.path().join("db/state.sqlite") });
    let tls = config.worker_listener.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("cert.pem"));
    assert_eq!(tls.key, Path::new("/etc/kiln/key.pem"));
    assert_eq!(config.worker_listener.client_certs.map(|c| c.ca), Some(dir.path().join("ca/workers.pem")));
}

#[test]
fn a_missing_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let error = MasterConfig::load(dir.path()).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("master.toml"), "{error}");
}

#[test]
fn load_errors_name_the_file_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.toml"), "titel = \"x\"\n").unwrap();
    let error = MasterConfig::load(dir.path()).unwrap_err().to_string();
    let expected = format!("{}:1: key 'titel': unknown field", dir.path().join("master.toml").display());
    assert!(error.starts_with(&expected), "{error}");
}

#[test]
fn an_unknown_key_in_a_step_is_reported() {
    let text = format!("{MINIMAL}  comand = \"make\"\n");
    let message = one_problem(&text, 12, "comand", "unknown field `comand`");
    assert!(message.contains("builder 'test', step #1"), "{message}");
}

#[test]
fn a_wrong_type_is_reported() {
    let text = format!("[worker_listener]\nping_interval = \"10\"\n{MINIMAL}");
    one_problem(&text, 2, "ping_interval", "invalid type");
    let text = format!("{MINIMAL}  timeout = true\n");
    one_problem(&text, 12, "timeout", "invalid type");
    let text = format!("{MINIMAL}  command = 3\n");
    // A duplicate key is a syntax error, found before types.
    assert!(!problems(&text).is_empty());
    let text = MINIMAL.replace("command = \"make -j4\"", "command = 3");
    one_problem(&text, 11, "command", "a string or a list of strings");
}

#[test]
fn a_missing_required_key_is_reported() {
    let text = MINIMAL.replace("password = \"pw\"", "");
    one_problem(&text, 2, "password", "missing field");
    let text = MINIMAL.replace("command = \"make -j4\"", "name = \"x\"");
    one_problem(&text, 10, "command", "missing field");
}

#[test]
fn an_unknown_worker_in_a_builder_is_reported() {
    let text = MINIMAL.replace("workers = [\"linux-1\"]", "workers = [\"linux-1\", \"linux-2\"]");
    let message = one_problem(&text, 8, "workers", "unknown worker 'linux-2'");
    assert_eq!(message, "master.toml:8: builder 'test', key 'workers': unknown worker 'linux-2'");
}

#[test]
fn empty_workers_are_reported() {
    let text = MINIMAL.replace("workers = [\"linux-1\"]", "workers = []");
    one_problem(&text, 8, "workers", "needs at least one worker");
}

#[test]
fn a_duplicate_builder_is_reported() {
    let text = format!("{MINIMAL}\n[[builder]]\nname = \"test\"\nworkers = [\"linux-1\"]\n");
    one_problem(&text, 14, "name", "another builder has this name");
}

#[test]
fn a_duplicate_worker_and_a_bad_worker_name_are_reported() {
    let text = format!("{MINIMAL}\n[[worker]]\nname = \"linux-1\"\npassword = \"x\"\n");
    one_problem(&text, 14, "name", "another worker has this name");
    let text = MINIMAL.replace("name = \"linux-1\"", "name = \"linux:1\"").replace("[\"linux-1\"]", "[\"linux:1\"]");
    one_problem(&text, 3, "name", "cannot contain ':'");
}

#[test]
fn a_duplicate_scheduler_name_is_reported() {
    let text = format!("{MINIMAL}\n[[force_scheduler]]\nname = \"force-test\"\nbuilders = [\"test\"]\n");
    one_problem(&text, 14, "name", "builder 'test' already has a force scheduler");
    let text = format!(
        "{MINIMAL}\n[[force_scheduler]]\nname = \"all\"\nbuilders = [\"test\"]\n[[force_scheduler]]\nname = \"all\"\nbuilders = [\"test\"]\n"
    );
    one_problem(&text, 17, "name", "another scheduler has this name");
    let text = format!("{MINIMAL}\n[[force_scheduler]]\nname = \"all\"\nbuilders = [\"tset\"]\n");
    one_problem(&text, 15, "builders", "unknown builder 'tset'");
}

#[test]
fn builders_without_force_scheduler_free_the_name() {
    let text = MINIMAL.replace("workers = [\"linux-1\"]", "workers = [\"linux-1\"]\nforce_scheduler = false");
    let config =
        load(&format!("{text}\n[[force_scheduler]]\nname = \"force-test\"\nbuilders = [\"test\"]\nlabel = \"Go\"\n"));
    assert_eq!(
        config.force_schedulers,
        [ForceSchedulerDef {
            name: "force-test".into(),
            builders: vec!["test".into()],
            label: "Go".into(),
            reason: "force build".into(),
            parameters: vec![],
            priority: None
        }]
    );
}

#[test]
fn a_bad_decode_rc_is_reported() {
    let text = format!("{MINIMAL}  decode_rc = {{ \"0\" = \"success\", \"1\" = \"warning\" }}\n");
    one_problem(&text, 12, "decode_rc", "'warning' is not a result");
    let text = format!("{MINIMAL}  decode_rc = {{ \"zero\" = \"success\" }}\n");
    one_problem(&text, 12, "decode_rc", "'zero' is not an exit code");
}

#[test]
fn an_unknown_step_type_is_reported() {
    let text = format!("{MINIMAL}  type = \"svn\"\n");
    one_problem(&text, 12, "type", "unknown step type 'svn'");
}

#[test]
fn an_empty_command_and_duplicate_step_names_are_reported() {
    let text = MINIMAL.replace("\"make -j4\"", "\"  \"");
    one_problem(&text, 11, "command", "the command is empty");
    let text = format!("{MINIMAL}  name = \"a\"\n  [[builder.step]]\n  name = \"a\"\n  command = \"true\"\n");
    one_problem(&text, 14, "name", "another step of this builder has this name");
}

#[test]
fn bad_addresses_and_listener_settings_are_reported() {
    let text = format!("[web]\naddress = \"localhost\"\n{MINIMAL}");
    one_problem(&text, 2, "address", "'localhost' is not an address");
    let text = format!("[worker_listener]\ntls_cert = \"c.pem\"\n{MINIMAL}");
    one_problem(&text, 2, "tls_key", "tls_key is missing");
    let text = format!("[worker_listener]\nping_interval = 30\nping_timeout = 30\n{MINIMAL}");
    one_problem(&text, 3, "ping_timeout", "must be longer than ping_interval");
    let text = format!("[worker_listener]\nhandshake_timeout = 0\n{MINIMAL}");
    one_problem(&text, 2, "handshake_timeout", "at least 1 second");
    let text = format!("[web]\nheader_timeout = 0\n{MINIMAL}");
    one_problem(&text, 2, "header_timeout", "at least 1 second");
    let text = format!("[web]\nmax_connections = 0\n{MINIMAL}");
    one_problem(&text, 2, "max_connections", "at least 1");
    let text = format!("[worker_listener]\nmax_connections = 10\nmax_connections_per_address = 11\n{MINIMAL}");
    one_problem(&text, 3, "max_connections_per_address", "more than max_connections (10)");
    let config = load(&format!("[web]\nmax_connections = 10\n{MINIMAL}"));
    assert_eq!((config.web.max_connections, config.web.max_connections_per_address), (10, 10));
    let text = format!("[store]\nurl = \"mysql://db\"\n{MINIMAL}");
    one_problem(&text, 2, "url", "not a store URL");
    let text = format!("url = \"ci.example.org\"\n{MINIMAL}");
    one_problem(&text, 1, "url", "not an http:// or https:// URL");
}

#[test]
fn a_syntax_error_names_file_and_line() {
    let found = problems("title = \"Kiln\"\n[web\n");
    assert_eq!(found[0].line, 2, "{found:#?}");
    assert!(found[0].to_string().starts_with("master.toml:2: "), "{}", found[0]);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = r#"
titel = "x"

[[worker]]
name = "w"
password = "pw"
max_builds = 0

[[builder]]
name = "b"
workers = ["x"]

  [[builder.step]]
  command = "make"
  type = "svn"
"#;
    let lines: Vec<_> = problems(text).iter().map(|problem| problem.line).collect();
    assert_eq!(lines, [2, 7, 11, 15]);
}

/// Every key of the schema, by the section of `docs/configuration.md` that documents it.
const KEYS: &[(&str, &[&str])] = &[
    ("Top level", &["title", "url"]),
    ("`[store]`", &["url"]),
    (
        "`[worker_listener]`",
        &[
            "address",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "tls_client_name",
            "ping_interval",
            "ping_timeout",
            "handshake_timeout",
            "max_connections",
            "max_connections_per_address",
        ],
    ),
    ("`[[worker]]`", &["name", "password", "password_hash", "max_builds", "notify_on_missing"]),
    ("`[[secret_provider]]`", &["type", "path", "prefix", "argv", "shell", "timeout"]),
    ("`[secrets]`", &["min_length"]),
    (
        "`[web]`",
        &["address", "tls_cert", "tls_key", "header_timeout", "max_connections", "max_connections_per_address"],
    ),
    (
        "`[auth]`",
        &[
            "private",
            "session_hours",
            "htpasswd",
            "htpasswd_roles",
            "proxy_header",
            "proxy_groups_header",
            "trusted_proxies",
        ],
    ),
    ("`[[user]]`", &["name", "password_hash", "roles"]),
    ("`[[rule]]`", &["actions", "builders", "tags", "roles", "owner"]),
    (
        "`[[builder]]`",
        &[
            "name",
            "workers",
            "description",
            "tags",
            "env",
            "workdir",
            "builddir",
            "force_scheduler",
            "factory",
            "matrix",
            "properties",
            "priority",
            "collapse_requests",
            "locks",
            "log_retention",
            "log_environ",
            "fork_secrets",
        ],
    ),
    ("`[retention]`", &["logs", "interval"]),
    ("`[[factory]]`", &["name", "description"]),
    (
        "`[[builder.step]]`",
        &[
            "name",
            "type",
            "command",
            "env",
            "workdir",
            "timeout",
            "max_time",
            "halt_on_failure",
            "flunk_on_failure",
            "warn_on_failure",
            "always_run",
            "locks",
            "decode_rc",
            "sigterm_time",
            "interrupt_signal",
            "log_environ",
        ],
    ),
    (
        "Git step",
        &[
            "repourl",
            "branch",
            "codebase",
            "mode",
            "method",
            "shallow",
            "submodules",
            "retry_fetch",
            "clobber_on_failure",
            "log_environ",
        ],
    ),
    (
        "Transfer steps",
        &[
            "workersrc",
            "masterdest",
            "mastersrc",
            "workerdest",
            "workdir",
            "maxsize",
            "blocksize",
            "keepstamp",
            "compress",
            "mode",
        ],
    ),
    (
        "Trigger steps",
        &[
            "schedulers",
            "wait_for_finish",
            "set_properties",
            "copy_properties",
            "always_use_latest",
            "update_sourcestamp",
        ],
    ),
    ("`[[force_scheduler]]`", &["name", "builders", "label", "reason", "priority"]),
    ("`[[lock]]`", &["name", "type", "max_count", "max_count_for_worker"]),
    (
        "`[[reporter]]`",
        &[
            "name",
            "type",
            "generator",
            "mode",
            "repeat_every",
            "previous",
            "builders",
            "tags",
            "branches",
            "schedulers",
            "template",
            "subject",
            "template_type",
            "log_lines",
            "max_age",
            "timeout",
            "missing_timeout",
            "from",
            "smtp_url",
            "smtp_user",
            "smtp_password",
            "allow_plaintext_auth",
            "ca_file",
            "send_to_interested_users",
            "extra_recipients",
            "lookup",
            "webhook_url",
            "homeserver",
            "room",
            "token",
            "url",
            "secret",
            "base_url",
            "context",
        ],
    ),
    ("`[[force_scheduler.parameter]]`", &["name", "type", "label", "default", "required", "choices", "regex"]),
    (
        "`[[scheduler]]`",
        &[
            "name",
            "type",
            "builders",
            "minute",
            "hour",
            "day_of_month",
            "month",
            "day_of_week",
            "cron",
            "time_zone",
            "interval",
            "branch",
            "branches",
            "branch_pattern",
            "repository",
            "project",
            "category",
            "codebase",
            "files",
            "only_important",
            "cancel_superseded",
            "tree_stable_timer",
            "only_if_changed",
            "upstream",
            "priority",
            "tags",
            "reason",
            "properties",
            "codebases",
        ],
    ),
    (
        "`[[change_source]]`",
        &[
            "name",
            "type",
            "repository",
            "branches",
            "branch_pattern",
            "with_tags",
            "package",
            "index_url",
            "poll_interval",
            "project",
            "codebase",
        ],
    ),
    (
        "`[change_hooks]`",
        &[
            "secret",
            "with_tags",
            "project",
            "codebase",
            "pull_requests",
            "build_forks",
            "ready_for_review",
            "labels",
            "pull_request_ref",
            "note_trigger",
            "skip_markers",
            "token",
            "allowed",
        ],
    ),
];

#[test]
fn timed_schedulers() {
    let text = format!(
        "{MINIMAL}\n[[scheduler]]\nname = \"nightly\"\ntype = \"nightly\"\nbuilders = [\"test\"]\nhour = 3\n\
         day_of_week = \"mon,wed,fri\"\ntime_zone = \"Europe/Madrid\"\n\n[[scheduler]]\nname = \"cron\"\n\
         type = \"nightly\"\nbuilders = [\"test\"]\ncron = \"0 3 * * sun\"\n\n[[scheduler]]\nname = \"often\"\n\
         type = \"periodic\"\nbuilders = [\"test\"]\ninterval = 60\n"
    );
    let config = load(&text);
    let timed = &config.timed_schedulers;
    assert_eq!(timed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["nightly", "cron", "often"]);
    assert!(matches!(timed[0].timing, Timing::Nightly(_)));
    assert_eq!(timed[2].timing, Timing::Periodic(Duration::from_secs(60)));

    let bad = format!(
        "{MINIMAL}\n[[scheduler]]\nname = \"force-test\"\ntype = \"nightly\"\nbuilders = [\"test\"]\n\
         day_of_week = \"sunday,xyz\"\n\n[[scheduler]]\nname = \"p\"\ntype = \"hourly\"\nbuilders = [\"nope\"]\n"
    );
    let problems = problems(&bad);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_deref().unwrap_or("")).collect();
    assert!(keys.contains(&"name"), "duplicate of the implicit force-test: {problems:?}");
    assert!(keys.contains(&"day_of_week"), "{problems:?}");
    assert!(keys.contains(&"builders"), "{problems:?}");
    assert!(keys.contains(&"type"), "{problems:?}");
    let calendar = problems.iter().find(|p| p.key.as_deref() == Some("day_of_week")).expect("calendar problem");
    assert!(calendar.message.contains("xyz"), "{calendar:?}");
    assert!(calendar.line > 0);
}

#[test]
fn only_if_changed_takes_the_change_filter_keys() {
    let text = format!(
        "{MINIMAL}\n[[scheduler]]\nname = \"n\"\ntype = \"nightly\"\nbuilders = [\"test\"]\nhour = 3\n\
         only_if_changed = true\nbranch = \"main\"\nfiles = [\"src/**\"]\n"
    );
    let config = load(&text);
    let timed = &config.timed_schedulers[0];
    assert!(timed.only_if_changed);
    assert_eq!(timed.filter.branches, Some(vec!["main".to_string()]));
    assert_eq!(timed.files, ["src/**"]);

    let bad = format!(
        "{MINIMAL}\n[[scheduler]]\nname = \"a\"\ntype = \"nightly\"\nbuilders = [\"test\"]\nproject = \"p\"\n\
         \n[[scheduler]]\nname = \"b\"\ntype = \"on_change\"\nbuilders = [\"test\"]\nonly_if_changed = true\n\
         \n[[scheduler]]\nname = \"c\"\ntype = \"periodic\"\nbuilders = [\"test\"]\ninterval = 5\n\
         only_if_changed = true\ntree_stable_timer = 5\n"
    );
    let problems = problems(&bad);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_deref().unwrap_or("")).collect();
    assert_eq!(keys, ["type", "only_if_changed", "type"], "{problems:?}");
}

#[test]
fn force_parameters_are_checked() {
    let text = format!(
        "{MINIMAL}\n[[force_scheduler]]\nname = \"f\"\nbuilders = [\"test\"]\nreason = \"why\"\n\
         [[force_scheduler.parameter]]\nname = \"jobs\"\ntype = \"int\"\ndefault = 4\n\
         [[force_scheduler.parameter]]\nname = \"mode\"\ntype = \"choice\"\nchoices = [\"a\", \"b\"]\n"
    );
    let config = load(&text);
    let def = &config.force_schedulers[0];
    assert_eq!(def.reason, "why");
    assert_eq!(def.parameters[0].kind, ParameterType::Int);
    assert_eq!(def.parameters[0].default, serde_json::json!(4));
    assert_eq!(def.parameters[1].default, serde_json::json!("a"));

    let bad = format!(
        "{MINIMAL}\n[[force_scheduler]]\nname = \"f\"\nbuilders = [\"test\"]\n\
         [[force_scheduler.parameter]]\nname = \"branch\"\ntype = \"string\"\n\
         [[force_scheduler.parameter]]\nname = \"n\"\ntype = \"int\"\ndefault = \"x\"\n\
         [[force_scheduler.parameter]]\nname = \"c\"\ntype = \"choice\"\n\
         [[force_scheduler.parameter]]\nname = \"r\"\ntype = \"string\"\nregex = \"(\"\n\
         [[force_scheduler.parameter]]\nname = \"t\"\ntype = \"date\"\n"
    );
    let problems = problems(&bad);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_deref().unwrap_or("")).collect();
    assert_eq!(keys, ["name", "default", "choices", "regex", "type"], "{problems:?}");
    assert!(problems[1].message.contains("int"), "{:?}", problems[1]);
}

#[test]
fn trigger_steps_and_triggerable_and_dependent_schedulers() {
    let text = format!(
        "{MINIMAL}  [[builder.step]]\n  type = \"trigger\"\n  schedulers = [\"t\"]\n  wait_for_finish = true\n\
         \x20 set_properties = {{ a = 1, b = \"x\" }}\n  copy_properties = [\"owner\"]\n\
         \n[[scheduler]]\nname = \"t\"\ntype = \"triggerable\"\nbuilders = [\"test\"]\n\
         \n[[scheduler]]\nname = \"d\"\ntype = \"dependent\"\nupstream = \"t\"\nbuilders = [\"test\"]\n"
    );
    let config = load(&text);
    let StepDef::Trigger(trigger) = config.builders[0].steps.last().expect("a step") else { panic!("trigger") };
    assert_eq!(trigger.schedulers, ["t"]);
    assert!(trigger.wait_for_finish);
    assert_eq!(trigger.set_properties["a"], serde_json::json!(1));
    assert_eq!(trigger.options.name, "trigger t");
    assert_eq!(config.triggerable_schedulers[0].name, "t");
    assert_eq!(config.dependent_schedulers[0].upstream, "t");

    let bad = format!(
        "{MINIMAL}  [[builder.step]]\n  type = \"trigger\"\n  schedulers = [\"force-test\"]\n\
         \n[[scheduler]]\nname = \"d\"\ntype = \"dependent\"\nupstream = \"nope\"\nbuilders = [\"test\"]\n\
         \n[[scheduler]]\nname = \"e\"\ntype = \"dependent\"\nbuilders = [\"test\"]\n\
         \n[[scheduler]]\nname = \"t\"\ntype = \"triggerable\"\nbuilders = [\"test\"]\nhour = 3\n"
    );
    let problems = problems(&bad);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_deref().unwrap_or("")).collect();
    assert_eq!(keys, ["schedulers", "upstream", "upstream", "type"], "{problems:?}");
    assert!(problems[0].message.contains("'force-test' is not a triggerable scheduler"), "{:?}", problems[0]);
}

#[test]
fn transfer_steps() {
    let text = format!(
        "{MINIMAL}  [[builder.step]]\n  type = \"upload\"\n  workersrc = \"a.bin\"\n  masterdest = \"out/a.bin\"\n  keepstamp = true\n\
         \n  [[builder.step]]\n  type = \"upload_directory\"\n  workersrc = \"tree\"\n  masterdest = \"out/tree\"\n  compress = \"bz2\"\n\
         \n  [[builder.step]]\n  type = \"download\"\n  mastersrc = \"in.txt\"\n  workerdest = \"in.txt\"\n  mode = 0o640\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), &text).unwrap();
    let config = MasterConfig::load(dir.path()).unwrap();
    let steps = &config.builders[0].steps;
    let StepDef::Upload(upload) = &steps[steps.len() - 3] else { panic!("upload expected: {steps:?}") };
    assert_eq!(upload.masterdest, dir.path().join("out/a.bin"));
    assert!(upload.keepstamp && !upload.directory);
    assert_eq!(upload.blocksize, 16384);
    let StepDef::Upload(tree) = &steps[steps.len() - 2] else { panic!("upload_directory expected") };
    assert!(tree.directory);
    assert_eq!(tree.compress.as_deref(), Some("bz2"));
    let StepDef::Download(download) = &steps[steps.len() - 1] else { panic!("download expected") };
    assert_eq!(download.mastersrc, dir.path().join("in.txt"));
    assert_eq!(download.mode, Some(0o640));
    assert_eq!(steps[steps.len() - 1].name(), "download in.txt");

    let bad = format!(
        "{MINIMAL}  [[builder.step]]\n  type = \"upload\"\n  workersrc = \"a\"\n  masterdest = \"b\"\n  compress = \"gz\"\n"
    );
    let problems = problems(&bad);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key.as_deref(), Some("compress"));
}

#[test]
fn the_documentation_mentions_every_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for (section, keys) in KEYS {
        let heading = format!("\n## {section}\n");
        let start = doc.find(&heading).unwrap_or_else(|| panic!("docs/configuration.md lacks the section {section}"));
        let body = &doc[start + heading.len()..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        for key in *keys {
            assert!(body.contains(&format!("| `{key}` |")), "docs/configuration.md, section {section}, lacks {key}");
        }
    }
}

/// The body of section `section` of docs/configuration.md, up to the next `## ` heading.
fn doc_section(doc: &str, section: &str) -> String {
    let heading = format!("\n## {section}\n");
    let start = doc.find(&heading).unwrap_or_else(|| panic!("docs/configuration.md lacks the section {section}"));
    let body = &doc[start + heading.len()..];
    body[..body.find("\n## ").unwrap_or(body.len())].to_string()
}

#[test]
fn the_listener_keys_have_an_example_that_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for (section, keys) in KEYS.iter().filter(|(s, _)| *s == "`[worker_listener]`" || *s == "`[web]`") {
        let body = doc_section(&doc, section);
        let example = body.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap_or("");
        for key in *keys {
            assert!(
                example.lines().any(|line| line.starts_with(&format!("{key} ="))),
                "docs/configuration.md, section {section}: the example lacks {key}"
            );
        }
        // The example is a valid table of a config (TLS files aside: they are read only at start).
        let config = load(&format!("{example}\n{MINIMAL}"));
        assert!(config.worker_listener.max_connections_per_address <= config.worker_listener.max_connections);
    }
}

#[test]
fn the_sample_uses_every_key() {
    for key in KEYS.iter().flat_map(|(_, keys)| keys.iter()) {
        assert!(SAMPLE.contains(&format!("{key} =")), "the sample lacks {key}");
    }
}

#[test]
fn builder_properties_are_json_values() {
    let config = load(&MINIMAL.replace(
        "workers = [\"linux-1\"]\n",
        "workers = [\"linux-1\"]\nproperties = { flavour = \"debug\", jobs = 4, ratio = 0.5, fast = true }\n",
    ));
    let expected = BTreeMap::from([
        ("fast".to_owned(), serde_json::json!(true)),
        ("flavour".to_owned(), serde_json::json!("debug")),
        ("jobs".to_owned(), serde_json::json!(4)),
        ("ratio".to_owned(), serde_json::json!(0.5)),
    ]);
    assert_eq!(config.builders[0].properties, expected);
    assert!(load(MINIMAL).builders[0].properties.is_empty());
}

#[test]
fn a_list_as_a_builder_property_is_reported() {
    let text = MINIMAL.replace("workers = [\"linux-1\"]\n", "workers = [\"linux-1\"]\nproperties = { xs = [1, 2] }\n");
    one_problem(&text, 9, "properties", "property 'xs' has the type array");
}

#[test]
fn malformed_interpolations_are_reported_where_they_are() {
    let text = r#"
[[worker]]
name = "linux-1"
password = "pw"

[[builder]]
name = "test"
workers = ["linux-1"]
env = { GOOD = "%(prop:x:-y)s", BAD = "%(prop:x" }

  [[builder.step]]
  command = ["echo", "%(kw:x)s"]
  workdir = "%(src::bogus)s"
  env = { A = "%(prop:a:?|only)s" }

  [[builder.step]]
  type = "upload"
  workersrc = "%(prop:x)d"
  masterdest = "out/%(prop:buildnumber)s"
"#;
    let found = problems(text);
    let seen: Vec<(usize, Option<&str>)> = found.iter().map(|p| (p.line, p.key.as_deref())).collect();
    assert_eq!(
        seen,
        [(9, Some("env")), (12, Some("command")), (13, Some("workdir")), (14, Some("env")), (18, Some("workersrc"))],
        "{found:#?}"
    );
    assert!(found[1].to_string().contains("unknown selector 'kw'"), "{}", found[1]);
    assert!(found[2].to_string().contains("unknown source stamp attribute 'bogus'"), "{}", found[2]);

    let good = MINIMAL.replace("make -j4", "echo %(prop:buildername)s 100%% date +%Y");
    assert_eq!(
        shell(&load(&good).builders[0].steps[0]).command,
        ShellCommand::Shell("echo %(prop:buildername)s 100%% date +%Y".into())
    );
}

#[test]
fn a_git_step_gets_buildbots_defaults() {
    let text = MINIMAL.replace(
        "command = \"make -j4\"",
        "type = \"git\"\n  repourl = \"https://x/%(prop:repo)s.git\"\n  env = { GIT_TRACE = \"0\" }",
    );
    let config = load(&text);
    let StepDef::Git(git) = &config.builders[0].steps[0] else { panic!("a git step expected") };
    assert_eq!(git.options.name, "git");
    assert_eq!(
        (git.repourl.as_str(), git.branch.as_str(), git.codebase.as_str()),
        ("https://x/%(prop:repo)s.git", "HEAD", "")
    );
    assert_eq!((git.mode, git.shallow, git.submodules), (GitMode::Incremental, None, false));
    assert_eq!((git.workdir.as_str(), git.timeout), ("build", Some(Duration::from_secs(1200))));
    assert_eq!((git.retry_fetch, git.clobber_on_failure), (false, false));
    assert_eq!(git.env, BTreeMap::from([("GIT_TRACE".to_owned(), "0".to_owned())]));

    let full = load(&text.replace("env = { GIT_TRACE = \"0\" }", "mode = \"full\"\n  submodules = true"));
    let StepDef::Git(git) = &full.builders[0].steps[0] else { panic!("a git step expected") };
    assert_eq!((git.mode, git.submodules), (GitMode::Full(GitMethod::Fresh), true));
    let shallow =
        load(&text.replace("env = { GIT_TRACE = \"0\" }", "mode = \"full\"\n  method = \"clobber\"\n  shallow = 3"));
    let StepDef::Git(git) = &shallow.builders[0].steps[0] else { panic!("a git step expected") };
    assert_eq!((git.mode, git.shallow), (GitMode::Full(GitMethod::Clobber), Some(3)));
}

#[test]
fn git_step_mistakes_are_reported() {
    let step = |keys: &str| MINIMAL.replace("command = \"make -j4\"", &format!("type = \"git\"\n  {keys}"));
    one_problem(&step("mode = \"full\""), 10, "repourl", "missing field");
    let with_url = |keys: &str| step(&format!("repourl = \"https://x/r.git\"\n  {keys}"));
    one_problem(&with_url("mode = \"full\"\n  method = \"scrub\""), 14, "method", "unknown method 'scrub'");
    one_problem(&with_url("method = \"clobber\""), 13, "method", "mode \"incremental\" takes no method");
    one_problem(&with_url("mode = \"partial\""), 13, "mode", "unknown mode 'partial'");
    one_problem(
        &with_url("mode = \"full\"\n  shallow = true"),
        14,
        "shallow",
        "needs mode = \"full\" and method = \"clobber\"",
    );
    one_problem(&with_url("mode = \"full\"\n  method = \"clobber\"\n  shallow = 0"), 15, "shallow", "at least 1");
    one_problem(&with_url("shallow = \"yes\""), 13, "shallow", "a boolean or a depth");
    one_problem(&step("repourl = \"%(prop:r\""), 12, "repourl", "no closing parenthesis");
    one_problem(&with_url("tags = true"), 13, "tags", "unknown field");
}

/// A nightly scheduler `s` for builder `test` with the given lines; the `[[scheduler]]` header is on line 13, the
/// given lines start on line 17.
fn nightly(lines: &str) -> String {
    let text = format!("{MINIMAL}\n[[scheduler]]\nname = \"s\"\ntype = \"nightly\"\nbuilders = [\"test\"]\n{lines}");
    assert_eq!(text.lines().position(|l| l == "[[scheduler]]"), Some(12), "{text}");
    text
}

#[test]
fn each_bad_calendar_field_is_reported_at_its_own_line_and_key() {
    one_problem(&nightly("minute = 0\nhour = 25\n"), 18, "hour", "25 is out of range (use 0-23)");
    one_problem(&nightly("hour = -1\n"), 17, "hour", "-1 is out of range (use 0-23)");
    one_problem(&nightly("hour = 3.5\n"), 17, "hour", "expected a whole number, a text such as");
    one_problem(&nightly("minute = 60\n"), 17, "minute", "out of range (use 0-59)");
    one_problem(&nightly("day_of_month = 32\n"), 17, "day_of_month", "out of range");
    one_problem(&nightly("month = \"smarch\"\n"), 17, "month", "unknown month 'smarch'");
    one_problem(&nightly("hour = 3\ntime_zone = \"Mars/Olympus\"\n"), 18, "time_zone", "Mars/Olympus");
    one_problem(&nightly("cron = \"0 3 * * sun\"\ntime_zone = \"Nowhere\"\n"), 18, "time_zone", "Nowhere");
    one_problem(&nightly("cron = \"0 3 * *\"\n"), 17, "cron", "expected 5 fields");

    // All of them, not only the first.
    let found = problems(&nightly("minute = 99\nhour = 25\nday_of_week = \"funday\"\n"));
    let at: Vec<_> = found.iter().map(|p| (p.line, p.key.as_deref().unwrap_or(""))).collect();
    assert_eq!(at, [(17, "minute"), (18, "hour"), (19, "day_of_week")], "{found:#?}");
}

#[test]
fn calendar_fields_take_buildbot_lists() {
    let config = load(&nightly("hour = 3\nday_of_week = [0, 2, 4]\n"));
    let Timing::Nightly(calendar) = &config.timed_schedulers[0].timing else { panic!("nightly") };
    let same = load(&nightly("hour = 3\nday_of_week = \"mon,wed,fri\"\n"));
    assert_eq!(Timing::Nightly(calendar.clone()), same.timed_schedulers[0].timing);
    one_problem(&nightly("day_of_week = []\n"), 17, "day_of_week", "at least one value");
}

#[test]
fn a_calendar_that_never_fires_is_refused() {
    one_problem(&nightly("day_of_month = 30\nmonth = 2\n"), 17, "day_of_month", "never fires");
    one_problem(&nightly("cron = \"0 0 31 4 *\"\n"), 17, "cron", "never fires");
    load(&nightly("day_of_month = 29\nmonth = 2\n"));
}

#[test]
fn timed_schedulers_build_a_branch_with_properties_and_a_reason() {
    let config = load(&nightly(
        "hour = 3\nbranch = \"support\"\nreason = \"weekly support build\"\n[scheduler.properties]\nsuite = \"full\"\n",
    ));
    let submit = &config.scheduler_submits["s"];
    assert_eq!(submit.reason.as_deref(), Some("weekly support build"));
    assert_eq!(submit.properties["suite"], serde_json::json!("full"));
    assert_eq!(
        submit.codebases,
        [CodebaseDef {
            codebase: String::new(),
            repository: String::new(),
            branch: Some("support".into()),
            revision: None
        }]
    );
    // Without only_if_changed, the branch is not a change filter.
    assert!(!config.timed_schedulers[0].only_if_changed);

    let codebases = load(&nightly(
        "hour = 3\n[scheduler.codebases.plugins]\nrepository = \"https://example.invalid/plugins.git\"\n\
         branch = \"devel\"\n",
    ));
    let submit = &codebases.scheduler_submits["s"];
    assert_eq!(submit.codebases[0].codebase, "plugins");
    assert_eq!(submit.codebases[0].branch.as_deref(), Some("devel"));
    let both = nightly("hour = 3\nbranch = \"a\"\n[scheduler.codebases.x]\nbranch = \"b\"\n");
    one_problem(&both, 14, "codebases", "not both");
}

#[test]
fn schedulers_select_builders_by_tags() {
    let text = format!(
        "{MINIMAL}\n[[builder]]\nname = \"scipion-devel\"\nworkers = [\"linux-1\"]\ntags = [\"core\", \"devel\"]\n\
         [[builder.step]]\ncommand = \"true\"\n\n[[builder]]\nname = \"relion-devel\"\nworkers = [\"linux-1\"]\n\
         tags = [\"plugin\", \"devel\"]\n[[builder.step]]\ncommand = \"true\"\n\n[[builder]]\nname = \"relion-prod\"\n\
         workers = [\"linux-1\"]\ntags = [\"plugin\", \"production\"]\n[[builder.step]]\ncommand = \"true\"\n\n\
         [[scheduler]]\nname = \"plugins-devel\"\ntype = \"on_change\"\ntags = [\"plugin\", \"devel\"]\n\n\
         [[scheduler]]\nname = \"t\"\ntype = \"triggerable\"\nbuilders = [\"test\"]\ntags = [\"production\"]\n"
    );
    let config = load(&text);
    assert_eq!(config.change_schedulers[0].builders, ["relion-devel"]);
    assert_eq!(config.triggerable_schedulers[0].builders, ["test", "relion-prod"]);
    let none = text.replace("tags = [\"plugin\", \"devel\"]\n\n", "tags = [\"plugin\", \"nightly\"]\n\n");
    let found = problems(&none);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key.as_deref(), Some("tags"));
    assert!(found[0].message.contains("no builder has all the tags plugin, nightly"), "{}", found[0]);
}

#[test]
fn unknown_key_messages_list_every_valid_key() {
    let top = one_problem(&format!("whatever = 1\n{MINIMAL}"), 1, "whatever", "unknown field `whatever`");
    for key in ["`title`", "`web`", "`worker`", "`builder`", "`scheduler`", "`force_scheduler`", "`lock`"] {
        assert!(top.contains(key), "{top} should list {key}");
    }
    let step = one_problem(&format!("{MINIMAL}  bogus = 1\n"), 12, "bogus", "unknown field `bogus`");
    for key in ["`command`", "`name`", "`type`", "`halt_on_failure`", "`always_run`", "`locks`"] {
        assert!(step.contains(key), "{step} should list {key}");
    }
}

#[test]
fn retention_defaults_to_ninety_days_and_takes_durations_or_forever() {
    let config = load(MINIMAL);
    assert_eq!(config.retention.logs, Some(std::time::Duration::from_secs(90 * 86_400)));
    assert_eq!(config.builders[0].logs_kept(&config.retention), config.retention.logs);
    let config = load(&format!(
        "[retention]\nlogs = \"forever\"\ninterval = \"10m\"\n{}",
        MINIMAL.replace("workers = [\"linux-1\"]\n", "workers = [\"linux-1\"]\nlog_retention = \"2w\"\n")
    ));
    assert_eq!(config.retention.logs, None);
    assert_eq!(config.retention.interval, std::time::Duration::from_secs(600));
    assert_eq!(config.builders[0].logs_kept(&config.retention), Some(std::time::Duration::from_secs(14 * 86_400)));
}

#[test]
fn a_bad_retention_names_its_line_and_key() {
    let text = format!(
        "[retention]\nlogs = \"3 days\"\ninterval = \"0s\"\n{}",
        MINIMAL.replace("workers = [\"linux-1\"]\n", "workers = [\"linux-1\"]\nlog_retention = \"0d\"\n")
    );
    let found: Vec<_> = problems(&text).iter().map(|p| (p.line, p.key.clone().unwrap_or_default())).collect();
    assert!(found.contains(&(2, "logs".into())), "{found:?}");
    assert!(found.contains(&(3, "interval".into())), "{found:?}");
    assert!(found.iter().any(|(_, key)| key == "log_retention"), "{found:?}");
}

#[test]
fn change_hooks_take_the_pull_request_keys_and_check_skip_markers() {
    let text = format!(
        "{MINIMAL}\n[change_hooks.github]\nsecret = \"s\"\nbuild_forks = true\nlabels = [\"ci\"]\n\
         pull_request_ref = \"merge\"\nskip_markers = ['\\[no build\\]']\n\n[change_hooks.gitlab]\n\
         note_trigger = \"/rebuild\"\npull_requests = false\n\n[change_hooks.poller]\ntoken = \"t\"\n\
         allowed = [\"p\"]\n"
    );
    let config = load(&text);
    let github = config.change_hooks.github.as_ref().expect("github");
    assert!(github.build_forks && github.pull_requests && !github.ready_for_review);
    assert_eq!(github.labels, ["ci"]);
    assert_eq!(github.pull_request_ref, crate::config::PullRequestRef::Merge);
    assert_eq!(github.skip_markers, Some(crate::config::SkipMarkers(vec!["\\[no build\\]".into()])));
    let gitlab = config.change_hooks.gitlab.as_ref().expect("gitlab");
    assert_eq!(gitlab.note_trigger.as_deref(), Some("/rebuild"));
    assert!(!gitlab.pull_requests && !gitlab.build_forks);
    assert_eq!(gitlab.skip_markers, None);
    let poller = config.change_hooks.poller.as_ref().expect("poller");
    assert_eq!((poller.token.as_str(), poller.allowed.as_deref()), ("t", Some(&["p".to_string()][..])));

    let bad = format!("{MINIMAL}\n[change_hooks.github]\nskip_markers = ['[ci skip']\n");
    let found = problems(&bad);
    assert!(
        found.iter().any(|p| p.message.contains("skip marker \"[ci skip\" is not a regular expression")),
        "{found:?}"
    );
    assert!(found.iter().all(|p| p.line > 0 && p.key.as_deref() == Some("skip_markers")), "{found:?}");
    let bad = format!("{MINIMAL}\n[change_hooks.github]\npull_request_ref = \"tip\"\n");
    let found = problems(&bad);
    assert!(found.iter().any(|p| p.key.as_deref() == Some("pull_request_ref") && p.line > 0), "{found:?}");
}
