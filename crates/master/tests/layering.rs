//! The layering of the workspace, checked: which crate may depend on which, which module of each crate may use
//! which, and that only the store speaks SQL. The allowed graph is written once, here ([`CRATES`], [`MODULES`]
//! and its siblings, [`FORBIDDEN`]); ARCHITECTURE.md points at it.
//!
//! The check reads the source as text: each `Cargo.toml`'s `[dependencies]` and `[build-dependencies]` (tests
//! may use anything), and in each file of a checked crate's `src` every `crate::<module>` path, every `super::`
//! path that climbs out to the crate's root, and every path into a crate below (`kiln_store::…`,
//! `kiln_master::<module>…`), outside comments. A crate's root imports the crates below it under their module
//! names (`use kiln_store as store;`), so `crate::store::Store` reads the same in every crate and counts as a use
//! of `store`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each workspace crate and the workspace crates it may depend on.
const CRATES: &[(&str, &[&str])] = &[
    // The worker protocol's messages: no I/O, nothing of builds.
    ("kiln-protocol", &[]),
    // The worker runs everywhere and knows no master, store or web.
    ("kiln-worker", &["kiln-protocol"]),
    // The vocabulary every part shares: the domain's types, result codes, the events bus.
    ("kiln-model", &[]),
    // The persistent state: the only SQL.
    ("kiln-store", &["kiln-model"]),
    // The engine; it never knows how it is shown.
    ("kiln-master", &["kiln-protocol", "kiln-model", "kiln-store"]),
    // HTTP: the APIs, change hooks, the UI, logins, metrics.
    ("kiln-web", &["kiln-model", "kiln-store", "kiln-master"]),
    // The command line wires everything together.
    ("kiln", &["kiln-protocol", "kiln-worker", "kiln-model", "kiln-store", "kiln-master", "kiln-web"]),
    // The benchmarks drive real workers against real masters.
    ("kiln-bench", &["kiln-protocol", "kiln-worker"]),
];

/// The only crate that may depend on `sqlx` or name it.
const SQL: &str = "kiln-store";

/// Crates outside [`SQL`] that may read a store with their own SQL, and why. None of them is part of Kiln.
const SQL_READERS: &[(&str, &str)] = &[(
    "kiln-bench",
    "the soak checks a stopped master's store with its own read-only queries, independent of the code it checks",
)];

fn may_use_sqlx(name: &str) -> bool {
    name == SQL || SQL_READERS.iter().any(|(reader, _)| *reader == name)
}

/// The store's engine module: the only part of [`SQL`] that names an engine's own types (`SqliteRow`,
/// `sqlx::sqlite`, …); the rest names the engine-neutral aliases it exports. [`STORE_URL`] names the engines
/// too (`StoreUrl::Sqlite`), as the choice between them.
const ENGINE: &str = "crates/store/src/engine";
const STORE_URL: &str = "crates/store/src/url.rs";

/// The crates whose modules are checked: the crate, its directory, and its top-level modules with the modules
/// each may use (its own, and those of the crates below it). A crate given as one module (`kiln-store`) is
/// checked as a whole.
const LAYERED: &[(&str, &str, Modules)] = &[
    ("kiln-model", "crates/model", MODEL_MODULES),
    ("kiln-store", "crates/store", &[("store", &["model", "results", "events"])]),
    ("kiln-master", "crates/master", MODULES),
    ("kiln-web", "crates/web", WEB_MODULES),
];

/// A crate's top-level modules, each with the modules it may use.
type Modules = &'static [(&'static str, &'static [&'static str])];

/// Top-level module → the modules its files use, with a file that uses each.
type Uses = BTreeMap<String, BTreeMap<String, PathBuf>>;

/// The modules of `kiln-model`.
const MODEL_MODULES: &[(&str, &[&str])] = &[
    // The domain's plain types.
    ("model", &[]),
    // Buildbot's result codes as integers, over `model::Results`.
    ("results", &["model"]),
    // What changed, and the bus it travels on.
    ("events", &["model"]),
];

/// Each top-level module of the master crate and the modules it may use. A new module needs a line here.
const MODULES: &[(&str, &[&str])] = &[
    // When timed schedulers fire: pure.
    ("calendar", &[]),
    // Buildbot's `Interpolate`: parsing and rendering, pure.
    ("interpolate", &[]),
    ("tls", &[]),
    // Bounds on the listeners: accept backoff, the descriptor limit, connection caps.
    ("connections", &[]),
    // Secrets: the `Secret` type, providers, redaction.
    ("secrets", &["interpolate"]),
    // `master.toml`, read and checked (`[store] url` read into the store's own `StoreUrl`).
    ("config", &["model", "results", "calendar", "interpolate", "secrets", "store"]),
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
];

/// The modules of `kiln-web`.
const WEB_MODULES: &[(&str, &[&str])] = &[
    // Users, logins, sessions, API tokens and who may do what.
    ("auth", &["model", "config", "store"]),
    // The Prometheus metrics, counted from the events bus.
    ("metrics", &["model", "results", "events"]),
    // HTTP: the REST API, change hooks, live events, the UI.
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
    // A master with its web server, as `kiln start`, `kiln demo` and the tests start it.
    ("launch", &["master", "web"]),
];

/// Arrows that must never be drawn, whatever [`MODULES`] and its siblings say, and why (`*`: any module).
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
    ("store", "config", "the store knows the domain's types, not how the master is configured"),
    ("events", "store", "the bus is below its publishers"),
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

/// Paths into the workspace's crates, and the module each names (`None`: the next segment is the module).
const CRATE_PATHS: &[(&str, Option<&str>)] = &[
    ("kiln_model::", None),
    ("kiln_store::", Some("store")),
    ("kiln_store;", Some("store")),
    ("kiln_store as", Some("store")),
    ("kiln_master::", None),
    ("kiln_web::", None),
];

/// The top-level modules `text` (a file at module path `path`) names: `crate::x…`, `super::…::x` climbing
/// to the crate's root, and paths into the crates below (`kiln_store::…` is `store`, `kiln_master::x…` is `x`).
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
        for (prefix, fixed) in CRATE_PATHS {
            let mut rest = line;
            while let Some(i) = rest.find(prefix) {
                let before = rest[..i].chars().next_back();
                let after = &rest[i + prefix.len()..];
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    match (fixed, after.strip_prefix('{')) {
                        (Some(module), _) => {
                            used.insert(module.to_string());
                        }
                        (None, Some(inner)) => used.extend(group(inner).into_iter().map(str::to_string)),
                        (None, None) => {
                            used.insert(ident(after).to_string());
                        }
                    }
                }
                rest = after;
            }
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

/// The top-level module of a crate's file: its first path segment, or the crate's only module.
fn top_module(modules: &[(&str, &[&str])], path: &[String]) -> Option<String> {
    match modules {
        [(only, _)] if !modules.iter().any(|(m, _)| path.first().is_some_and(|p| p == m)) => Some(only.to_string()),
        _ => path.first().filter(|p| *p != "lib").cloned(),
    }
}

/// For each checked crate: top-level module → the modules of any checked crate its files use (with a file that
/// uses each).
fn graph() -> Vec<(&'static str, Uses)> {
    let known: BTreeSet<&str> = all_modules().keys().copied().collect();
    let mut graphs = Vec::new();
    for (name, dir, modules) in LAYERED {
        let src = workspace().join(dir).join("src");
        // A crate checked as one module: the names of its own files are not uses of other crates' modules.
        let whole = modules.len() == 1 && !src.join(modules[0].0).exists();
        let files = rust_files(&src);
        let local: BTreeSet<String> = match whole {
            true => files.iter().filter_map(|f| f.file_stem()).map(|s| s.to_string_lossy().into_owned()).collect(),
            false => BTreeSet::new(),
        };
        let mut graph = Uses::new();
        for file in files {
            let (_, path) = module_of(&src, &file);
            let Some(module) = top_module(modules, &path) else { continue };
            let uses = graph.entry(module.clone()).or_default();
            for used in used_modules(&read(&file), &path) {
                if used != module && known.contains(used.as_str()) && !local.contains(&used) {
                    uses.entry(used).or_insert_with(|| file.clone());
                }
            }
        }
        graphs.push((*name, graph));
    }
    graphs
}

/// Every module of every checked crate and the modules it may use.
fn all_modules() -> BTreeMap<&'static str, &'static [&'static str]> {
    LAYERED.iter().flat_map(|(_, _, modules)| modules.iter().copied()).collect()
}

/// The files of the workspace's crates that name `sqlx` outside [`SQL`].
fn sql_outside_the_store() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in members() {
        let (name, _) = manifest(&path);
        let src = path.parent().expect("a manifest's directory").join("src");
        if may_use_sqlx(&name) || !src.exists() {
            continue;
        }
        for file in rust_files(&src) {
            if read(&file).lines().map(code).any(|l| l.contains("sqlx::") || l.contains("use sqlx")) {
                files.push(file);
            }
        }
    }
    files
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
        if deps.contains("sqlx") && !may_use_sqlx(&name) {
            problems.push(format!("{name} depends on sqlx: only {SQL} may"));
        }
    }
    assert!(problems.is_empty(), "layering of crates:\n{}", problems.join("\n"));
}

#[test]
fn modules_use_only_the_modules_below_them() {
    let mut problems = Vec::new();
    for (name, graph) in graph() {
        let allowed: BTreeMap<&str, &[&str]> = LAYERED
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, m)| m.iter().copied().collect())
            .unwrap_or_default();
        for (module, uses) in &graph {
            let Some(may) = allowed.get(module.as_str()) else {
                problems.push(format!("module {module} of {name} has no line in its modules' table"));
                continue;
            };
            for (used, file) in uses {
                if let Some(why) = forbidden(module, used) {
                    problems.push(format!("{module} uses {used} ({}): never, {why}", shown(file)));
                } else if !may.contains(&used.as_str()) {
                    problems.push(format!("{module} uses {used} ({}), which its line does not allow", shown(file)));
                }
            }
        }
    }
    assert!(problems.is_empty(), "layering of the modules:\n{}", problems.join("\n"));
}

#[test]
fn only_the_store_names_sqlx() {
    let files: Vec<String> = sql_outside_the_store().iter().map(|f| shown(f)).collect();
    assert!(files.is_empty(), "only {SQL} may use sqlx, but these do:\n{}", files.join("\n"));
}

#[test]
fn only_the_stores_engine_module_names_sqlite() {
    let engine = workspace().join(ENGINE);
    let files: Vec<String> = rust_files(&workspace().join("crates/store/src"))
        .into_iter()
        .filter(|f| !f.starts_with(&engine) && *f != workspace().join(STORE_URL))
        .filter(|f| {
            let names = |l: &str| l.replace("StoreUrl::Sqlite", "").contains("Sqlite") || l.contains("sqlx::sqlite");
            read(f).lines().map(code).any(names)
        })
        .map(|f| shown(&f))
        .collect();
    assert!(files.is_empty(), "only {ENGINE}/ may name SQLite's types, but these do:\n{}", files.join("\n"));
}

#[test]
fn the_allowed_graph_draws_no_forbidden_arrow_and_no_cycle() {
    let allowed = all_modules();
    let crate_of = |module: &str| LAYERED.iter().position(|(_, _, m)| m.iter().any(|(n, _)| *n == module));
    for (_, _, modules) in LAYERED {
        for (module, may) in *modules {
            for used in *may {
                assert!(forbidden(module, used).is_none(), "{module} may use {used}, which FORBIDDEN forbids");
                assert!(allowed.contains_key(used), "{module} may use {used}, which has no line");
                // A module uses its own crate's modules or those of a crate below (listed before it).
                assert!(crate_of(used) <= crate_of(module), "{module} may use {used}, of a crate above");
            }
        }
    }
    // Depth-first search for a cycle in the modules' graph.
    fn visit<'a>(
        m: &'a str,
        allowed: &BTreeMap<&'a str, &'a [&'a str]>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!stack.contains(&m), "the modules' graph has a cycle: {} → {m}", stack.join(" → "));
        stack.push(m);
        for next in allowed.get(m).copied().unwrap_or_default() {
            visit(next, allowed, stack, done);
        }
        stack.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for module in allowed.keys() {
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
    // Paths into the crates below.
    let text =
        "use kiln_store::Store;\nuse kiln_model::{events::Event, model};\nlet m = kiln_master::master::Master::x();\n\
                use kiln_store as store;\nlet n = my_kiln_web::web::x();";
    let expected: BTreeSet<String> = ["store", "events", "model", "master"].into_iter().map(String::from).collect();
    assert_eq!(used_modules(text, &path("web/ui/home")), expected);
}
