//! The layering of the workspace, checked: which crate may depend on which, which module of the master crate may
//! use which, and that only the store speaks SQL. The allowed graph is written once, here ([`CRATES`],
//! [`MODULES`], [`FORBIDDEN`]); ARCHITECTURE.md points at it.
//!
//! The check reads the source as text: each `Cargo.toml`'s `[dependencies]` and `[build-dependencies]` (tests
//! may use anything), and in each file of `crates/master/src` every `crate::<module>` path and every `super::`
//! path that climbs out to the crate's root, outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each workspace crate and the workspace crates it may depend on.
const CRATES: &[(&str, &[&str])] = &[
    // The worker protocol's messages: no I/O, nothing of builds.
    ("kiln-protocol", &[]),
    // The worker runs everywhere and knows no master, store or web.
    ("kiln-worker", &["kiln-protocol"]),
    // The engine.
    ("kiln-master", &["kiln-protocol"]),
    // The command line wires everything together.
    ("kiln", &["kiln-protocol", "kiln-worker", "kiln-master"]),
    // The benchmarks drive real workers against real masters.
    ("kiln-bench", &["kiln-protocol", "kiln-worker"]),
];

/// The only crate that may depend on `sqlx`, and the only module of it that may name `sqlx`.
const SQL: (&str, &str) = ("kiln-master", "store");

/// Each top-level module of the master crate and the modules it may use. A new module needs a line here.
const MODULES: &[(&str, &[&str])] = &[
    // The domain's plain types.
    ("model", &[]),
    // Buildbot's result codes as integers, over `model::Results`.
    ("results", &["model"]),
    // What changed, and the bus it travels on.
    ("events", &["model"]),
    // When timed schedulers fire: pure.
    ("calendar", &[]),
    // Buildbot's `Interpolate`: parsing and rendering, pure.
    ("interpolate", &[]),
    ("tls", &[]),
    // Bounds on the listeners: accept backoff, the descriptor limit, connection caps.
    ("connections", &[]),
    // Secrets: the `Secret` type, providers, redaction.
    ("secrets", &["interpolate"]),
    // `master.toml`, read and checked.
    ("config", &["model", "results", "calendar", "interpolate", "secrets"]),
    // The persistent state; the only SQL.
    ("store", &["model", "results", "events"]),
    // Change sources: pollers and webhooks.
    ("changes", &["model", "results", "events", "config", "store", "secrets"]),
    // What turns changes and time into buildsets.
    ("schedulers", &["model", "results", "events", "calendar", "config", "store", "changes"]),
    // Which request runs where: decisions without I/O.
    ("queue", &["model", "results", "config"]),
    // The worker port and each worker's connection.
    ("workers", &["model", "results", "events", "config", "store", "tls", "connections", "secrets"]),
    // A build's steps on a worker; the master only through `build::MasterHandle`.
    ("build", &["model", "results", "events", "config", "interpolate", "store", "queue", "workers", "secrets"]),
    // Who is told about builds: the decision (pure, called inside the store's transaction) and the senders.
    ("reporters", &["model", "results", "events", "config", "store"]),
    // Users, logins, sessions, API tokens and who may do what.
    ("auth", &["model", "config", "store"]),
    // The Prometheus metrics, counted from the events bus.
    ("metrics", &["model", "results", "events"]),
    // The running master: services, actions, dispatch.
    (
        "master",
        &[
            "model",
            "results",
            "events",
            "calendar",
            "interpolate",
            "tls",
            "connections",
            "config",
            "store",
            "changes",
            "schedulers",
            "queue",
            "workers",
            "build",
            "secrets",
            "reporters",
        ],
    ),
    // HTTP: the REST API, change hooks, live events.
    (
        "web",
        &[
            "model",
            "results",
            "events",
            "connections",
            "config",
            "store",
            "changes",
            "schedulers",
            "queue",
            "workers",
            "build",
            "master",
            "metrics",
            "secrets",
            "reporters",
            "auth",
            "tls",
        ],
    ),
];

/// Arrows that must never be drawn, whatever [`MODULES`] says, and why (`*`: any module).
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("model", "*", "the domain's types depend on nothing, so every module can use them"),
    ("build", "master", "a build reaches the master through build::MasterHandle"),
    ("build", "web", "the engine does not know how it is shown"),
    ("calendar", "config", "the config reads calendars, not the other way round"),
    ("store", "web", "the engine does not know how it is shown"),
    ("store", "master", "the store is below the engine"),
    ("changes", "web", "the engine does not know how it is shown"),
    ("schedulers", "web", "the engine does not know how it is shown"),
    ("queue", "web", "the engine does not know how it is shown"),
    ("workers", "web", "the engine does not know how it is shown"),
    ("master", "web", "the engine does not know how it is shown; the web is started beside it"),
    ("config", "web", "the engine does not know how it is shown"),
];

fn workspace() -> PathBuf {
    let master = Path::new(env!("CARGO_MANIFEST_DIR"));
    master.ancestors().nth(2).expect("the workspace holds crates/master").to_path_buf()
}

/// `path` relative to the workspace, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(workspace()).unwrap_or(path).display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The package name and the normal and build dependencies of a `Cargo.toml`.
fn manifest(path: &Path) -> (String, BTreeSet<String>) {
    let doc: toml::Table = read(path).parse().unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let name = doc["package"]["name"].as_str().expect("package.name").to_string();
    let mut deps = BTreeSet::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(table) = doc.get(section).and_then(|t| t.as_table()) {
            deps.extend(table.keys().cloned());
        }
    }
    (name, deps)
}

/// The workspace's members' manifests.
fn members() -> Vec<PathBuf> {
    let root: toml::Table = read(&workspace().join("Cargo.toml")).parse().expect("workspace Cargo.toml");
    let members = root["workspace"]["members"].as_array().expect("workspace.members");
    members.iter().map(|m| workspace().join(m.as_str().expect("member path")).join("Cargo.toml")).collect()
}

/// The code of a line: what comes before a `//` comment (a `//` inside a string cuts it short, which can only
/// hide a path, and string contents are not paths anyway).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The identifiers at the top level of a `{a::b, c, d::{e}}` group at the start of `text` (after the `{`).
fn group(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut at_item = true;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item = true,
            c if at_item && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                names.push(ident(&text[i..]));
                at_item = false;
            }
            _ => {}
        }
    }
    names
}

/// The top-level module a file of `src` belongs to, and its module path (`store/queries.rs`: `store`, queries).
fn module_of(src: &Path, file: &Path) -> (String, Vec<String>) {
    let rel = file.strip_prefix(src).expect("file below src").with_extension("");
    let mut path: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if path.last().is_some_and(|p| p == "mod") {
        path.pop();
    }
    (path.first().cloned().unwrap_or_default(), path)
}

/// The top-level modules `text` (a file at module path `path`) names: `crate::x…`, and `super::…::x` climbing
/// to the crate's root.
fn used_modules(text: &str, path: &[String]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let line = code(line);
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            let after = &rest[i + "crate::".len()..];
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                match after.strip_prefix('{') {
                    Some(inner) => used.extend(group(inner).into_iter().map(str::to_string)),
                    None => {
                        used.insert(ident(after).to_string());
                    }
                }
            }
            rest = after;
        }
        let mut rest = line;
        while let Some(i) = rest.find("super::") {
            let before = rest[..i].chars().next_back();
            let mut after = &rest[i..];
            let mut ups = 0;
            while let Some(next) = after.strip_prefix("super::") {
                ups += 1;
                after = next;
            }
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') && ups >= path.len() {
                match after.strip_prefix('{') {
                    Some(inner) => used.extend(group(inner).into_iter().map(str::to_string)),
                    None => {
                        used.insert(ident(after).to_string());
                    }
                }
            }
            rest = &rest[i + "super::".len()..];
        }
    }
    used
}

/// Top-level module → the modules its files use, and the files that name `sqlx`.
fn master_graph() -> (BTreeMap<String, BTreeMap<String, PathBuf>>, Vec<PathBuf>) {
    let src = workspace().join("crates/master/src");
    let modules: BTreeSet<&str> = MODULES.iter().map(|(m, _)| *m).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let mut sql = Vec::new();
    for file in rust_files(&src) {
        let (module, path) = module_of(&src, &file);
        if module == "lib" {
            continue;
        }
        let text = read(&file);
        let uses = graph.entry(module.clone()).or_default();
        for used in used_modules(&text, &path) {
            if used != module && modules.contains(used.as_str()) {
                uses.entry(used).or_insert_with(|| file.clone());
            }
        }
        let names_sqlx = text.lines().map(code).any(|l| l.contains("sqlx::") || l.contains("use sqlx"));
        if names_sqlx && module != SQL.1 {
            sql.push(file);
        }
    }
    (graph, sql)
}

fn forbidden(from: &str, to: &str) -> Option<&'static str> {
    FORBIDDEN.iter().find(|(f, t, _)| *f == from && (*t == to || *t == "*")).map(|(_, _, why)| *why)
}

#[test]
fn crates_depend_only_on_the_crates_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = CRATES.iter().copied().collect();
    let workspace_crates: BTreeSet<&str> = CRATES.iter().map(|(c, _)| *c).collect();
    let mut problems = Vec::new();
    for path in members() {
        let (name, deps) = manifest(&path);
        let Some(may) = allowed.get(name.as_str()) else {
            problems.push(format!("{name} ({}) has no line in CRATES", shown(&path)));
            continue;
        };
        for dep in &deps {
            if workspace_crates.contains(dep.as_str()) && !may.contains(&dep.as_str()) {
                problems.push(format!("{name} depends on {dep}, which CRATES does not allow"));
            }
        }
        if deps.contains("sqlx") && name != SQL.0 {
            problems.push(format!("{name} depends on sqlx: only {} may", SQL.0));
        }
    }
    assert!(problems.is_empty(), "layering of crates:\n{}", problems.join("\n"));
}

#[test]
fn modules_use_only_the_modules_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = MODULES.iter().copied().collect();
    let (graph, _) = master_graph();
    let mut problems = Vec::new();
    for (module, uses) in &graph {
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!("module {module} has no line in MODULES"));
            continue;
        };
        for (used, file) in uses {
            if let Some(why) = forbidden(module, used) {
                problems.push(format!("{module} uses {used} ({}): never, {why}", shown(file)));
            } else if !may.contains(&used.as_str()) {
                problems.push(format!("{module} uses {used} ({}), which MODULES does not allow", shown(file)));
            }
        }
    }
    assert!(problems.is_empty(), "layering of the master's modules:\n{}", problems.join("\n"));
}

#[test]
fn only_the_store_names_sqlx() {
    let (_, sql) = master_graph();
    let files: Vec<String> = sql.iter().map(|f| shown(f)).collect();
    assert!(files.is_empty(), "only {}/ may use sqlx, but these do:\n{}", SQL.1, files.join("\n"));
}

#[test]
fn the_allowed_graph_draws_no_forbidden_arrow_and_no_cycle() {
    let allowed: BTreeMap<&str, &[&str]> = MODULES.iter().copied().collect();
    for (module, may) in MODULES {
        for used in *may {
            assert!(forbidden(module, used).is_none(), "MODULES lets {module} use {used}, which FORBIDDEN forbids");
            assert!(allowed.contains_key(used), "MODULES lets {module} use {used}, which has no line");
        }
    }
    // Depth-first search for a cycle in MODULES.
    fn visit<'a>(
        m: &'a str,
        allowed: &BTreeMap<&'a str, &'a [&'a str]>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!stack.contains(&m), "MODULES has a cycle: {} → {m}", stack.join(" → "));
        stack.push(m);
        for next in allowed.get(m).copied().unwrap_or_default() {
            visit(next, allowed, stack, done);
        }
        stack.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for (module, _) in MODULES {
        visit(module, &allowed, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_reader_finds_paths_in_the_forms_the_code_writes_them() {
    let path = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
    let text = "use crate::store::{Store, StoreError};\n\
                use crate::{config::X, model::{Build, Step}, results};\n\
                // use crate::web::Nothing;\n\
                let a = crate::events::Event::x(); // crate::master in a comment\n\
                use super::super::queue::plan;\n\
                use super::Sibling;\n\
                let b = kiln_master_crate::other();";
    let used = used_modules(text, &path("build/git"));
    let expected: BTreeSet<String> =
        ["store", "config", "model", "results", "events", "queue"].into_iter().map(String::from).collect();
    assert_eq!(used, expected);
    // From a top-level file, one `super::` is the crate's root.
    assert_eq!(used_modules("use super::store::Store;", &path("master")), BTreeSet::from(["store".to_string()]));
    assert!(used_modules("use super::Store;", &path("store/queries")).is_empty());
}
