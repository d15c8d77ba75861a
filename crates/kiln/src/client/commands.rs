//! One function per client command. Each asks the API, then prints for people (or the API's JSON with `--json`).
//! They return whether what was asked about went well (`false` → exit code 1), or an error (exit code 2).

use anyhow::{anyhow, Context};
use clap::Subcommand;
use serde_json::{json, Value};

use super::table::{self, cell, duration, result, time};
use super::{Api, Connection};

/// Most lines of a log asked for at once (the API answers at most 100,000): what a client holds in memory.
const PAGE_LINES: i64 = 10_000;

/// The client commands (each takes `--master`, `--token`, `--json`).
#[derive(Subcommand)]
pub enum ClientCommand {
    /// List the builders, with the result of each one's last build.
    Builders {
        #[command(flatten)]
        conn: Connection,
    },
    /// List the latest builds, of one builder or of all.
    Builds {
        /// Only the builds of this builder (name or id).
        builder: Option<String>,
        /// How many builds, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a build (an id, or BUILDER/NUMBER): its steps with results and durations.
    Show {
        build: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a build's logs (all its steps', or one step's); --follow streams a running build's to its end.
    Log {
        build: String,
        /// Only this step (its name or number).
        step: Option<String>,
        /// Only the log of this name (default: every log of the steps).
        #[arg(long)]
        log: Option<String>,
        /// Keep printing new lines until the build ends; exit 0 on success or warnings, 1 otherwise.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop a running build (it ends CANCELLED).
    StopBuild {
        build: String,
        /// Why (shown in the build's log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Build a build's request again (same source stamps and properties); prints the new request.
    Rebuild {
        build: String,
        /// Follow the new build to its end, printing its logs; exit 0 on success or warnings, 1 otherwise.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Cancel a build request: a queued one ends CANCELLED; a running one has its build stopped.
    Cancel {
        request: i64,
        #[command(flatten)]
        conn: Connection,
    },
    /// Pause a worker: no new build starts on it (running ones go on) until it is unpaused.
    Pause {
        worker: String,
        /// Why (shown in the queue and the worker list).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Let builds start on a paused worker again.
    Unpause {
        worker: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show the requests waiting in the queue, in the order they will be served, and why each waits.
    Queue {
        #[command(flatten)]
        conn: Connection,
    },
    /// List the workers: connected or not, paused (and why), builds running.
    Workers {
        #[command(flatten)]
        conn: Connection,
    },
    /// Create, list and revoke your API tokens.
    #[command(subcommand)]
    Token(super::TokenCommand),
}

/// Runs a client command; returns whether what it was asked about went well.
pub fn run(command: ClientCommand) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(dispatch(command))
}

async fn dispatch(command: ClientCommand) -> anyhow::Result<bool> {
    use ClientCommand::*;
    match command {
        Builders { conn } => builders(&conn).await,
        Builds { builder, limit, conn } => builds(&conn, builder.as_deref(), limit).await,
        Show { build, conn } => show(&conn, &build).await,
        Log { build, step, log, follow, conn } => logs(&conn, &build, step.as_deref(), log.as_deref(), follow).await,
        StopBuild { build, reason, conn } => stop_build(&conn, &build, reason).await,
        Rebuild { build, wait, conn } => rebuild(&conn, &build, wait).await,
        Cancel { request, conn } => action(&conn, &format!("buildrequests/{request}"), "cancel", json!({})).await,
        Pause { worker, reason, conn } => {
            action(&conn, &format!("workers/{worker}"), "pause", json!({ "reason": reason })).await
        }
        Unpause { worker, conn } => action(&conn, &format!("workers/{worker}"), "unpause", json!({})).await,
        Queue { conn } => queue(&conn).await,
        Workers { conn } => workers(&conn).await,
        Token(command) => super::tokens::run(command).await,
    }
}

fn now() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

fn print_json(value: &Value) -> anyhow::Result<bool> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(true)
}

async fn builders(conn: &Connection) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let mut builders = api.get_list("builders", "builders").await?;
    for builder in &mut builders {
        let id = builder["builderid"].clone();
        let last = api.get_list(&format!("builds?builderid={id}&order=-number&limit=1"), "builds").await?;
        builder["last_build"] = last.into_iter().next().unwrap_or(Value::Null);
    }
    if conn.json {
        return print_json(&json!(builders));
    }
    let rows: Vec<Vec<String>> = builders
        .iter()
        .map(|b| {
            let last = &b["last_build"];
            let (number, outcome) = match last.is_null() {
                true => ("-".to_string(), "no build yet".to_string()),
                false => (format!("#{}", last["number"]), result(&last["results"])),
            };
            vec![cell(&b["name"]), number, outcome, time(&last["started_at"]), cell(&b["description"])]
        })
        .collect();
    table::print(&["BUILDER", "LAST", "RESULT", "STARTED", "DESCRIPTION"], &rows);
    Ok(true)
}

async fn builds(conn: &Connection, builder: Option<&str>, limit: u32) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let path = match builder {
        Some(builder) => format!("builders/{builder}/builds?order=-number&limit={limit}"),
        None => format!("builds?order=-buildid&limit={limit}"),
    };
    let builds = api.get_list(&path, "builds").await?;
    if conn.json {
        return print_json(&json!(builds));
    }
    let names = builder_names(&api).await?;
    let now = now();
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            vec![
                cell(&b["buildid"]),
                names.get(&b["builderid"].as_i64().unwrap_or(-1)).cloned().unwrap_or_else(|| cell(&b["builderid"])),
                format!("#{}", b["number"]),
                result(&b["results"]),
                time(&b["started_at"]),
                duration(&b["started_at"], &b["complete_at"], now),
                cell(&b["state_string"]),
            ]
        })
        .collect();
    table::print(&["ID", "BUILDER", "NUMBER", "RESULT", "STARTED", "DURATION", "STATE"], &rows);
    Ok(true)
}

/// Builder id → name.
async fn builder_names(api: &Api) -> anyhow::Result<std::collections::HashMap<i64, String>> {
    let builders = api.get_list("builders", "builders").await?;
    Ok(builders.iter().filter_map(|b| Some((b["builderid"].as_i64()?, b["name"].as_str()?.to_string()))).collect())
}

async fn show(conn: &Connection, build: &str) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let build = api.build(build).await?;
    let buildid = build_id(&build)?;
    let steps = api.get_list(&format!("builds/{buildid}/steps"), "steps").await?;
    if conn.json {
        let mut build = build;
        build["steps"] = json!(steps);
        return print_json(&build);
    }
    let builder = api.get_one(&format!("builders/{}", build["builderid"])).await?;
    let now = now();
    println!(
        "build {buildid}: {} #{}  {}  {}",
        cell(&builder["name"]),
        build["number"],
        result(&build["results"]),
        cell(&build["state_string"])
    );
    println!(
        "started {}, took {}",
        time(&build["started_at"]),
        duration(&build["started_at"], &build["complete_at"], now)
    );
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                cell(&s["number"]),
                cell(&s["name"]),
                result(&s["results"]),
                duration(&s["started_at"], &s["complete_at"], now),
                cell(&s["state_string"]),
            ]
        })
        .collect();
    table::print(&["STEP", "NAME", "RESULT", "DURATION", "STATE"], &rows);
    Ok(true)
}

fn build_id(build: &Value) -> anyhow::Result<i64> {
    build["buildid"].as_i64().ok_or_else(|| anyhow!("the master sent a build without id: {build}"))
}

/// Prints the logs of `build` (of step `step`, log `log` only, if given); with `follow`, until the build ends.
async fn logs(
    conn: &Connection,
    build: &str,
    step: Option<&str>,
    log: Option<&str>,
    follow: bool,
) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let buildid = build_id(&api.build(build).await?)?;
    let mut printed: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    let paths = vec![format!("builds/{buildid}/*"), format!("builds/{buildid}/steps/*/*"), "logs/*/*".to_string()];
    let wakeups = match follow {
        true => Some(super::Wakeups::start(&api, paths).await),
        false => None,
    };
    loop {
        // Read the build before its logs: if it was complete then, every line is stored by now.
        let build = api.get_one(&format!("builds/{buildid}")).await?;
        for s in api.get_list(&format!("builds/{buildid}/steps"), "steps").await? {
            let wanted =
                step.is_none_or(|want| s["name"] == want || want.parse::<i64>().is_ok_and(|n| s["number"] == n));
            if !wanted {
                continue;
            }
            let stepid = s["stepid"].as_i64().unwrap_or_default();
            for l in api.get_list(&format!("steps/{stepid}/logs"), "logs").await? {
                if log.is_some_and(|want| l["name"] != want && l["slug"] != want) {
                    continue;
                }
                let logid = l["logid"].as_i64().unwrap_or_default();
                let seen = match printed.get_mut(&logid) {
                    Some(seen) => seen,
                    None => {
                        if !conn.json {
                            println!("--- step '{}', log '{}'", cell(&s["name"]), cell(&l["name"]));
                        }
                        printed.entry(logid).or_insert(0)
                    }
                };
                print_lines(&api, logid, l["type"] == "s", seen, conn.json).await?;
            }
        }
        let complete = build["complete"].as_bool() == Some(true);
        if !follow || complete {
            let results = build["results"].as_i64();
            if follow && !conn.json {
                println!("--- build {buildid}: {}", result(&build["results"]));
            }
            return Ok(!follow || matches!(results, Some(0 | 1)));
        }
        if let Some(wakeups) = &wakeups {
            wakeups.next().await;
        }
    }
}

/// Prints the lines of log `logid` from line `*seen` on, a page of at most [`PAGE_LINES`] at a time until the
/// master has no more; `*seen` counts the lines printed. A stdio log's lines lose their channel letter; with
/// `json`, each line is a JSON object (`logid`, `line`, `channel`, `text`).
pub async fn print_lines(api: &Api, logid: i64, stdio: bool, seen: &mut i64, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    loop {
        let contents = api.get(&format!("logs/{logid}/contents?offset={seen}&limit={PAGE_LINES}")).await?;
        let chunk = &contents["logchunks"][0];
        if chunk["firstline"].as_i64() != Some(*seen) {
            anyhow::bail!("log {logid}: asked for lines from {seen}, the master sent {chunk}");
        }
        let text = chunk["content"].as_str().unwrap_or("");
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut got = 0;
        // Each line ends with '\n'; a line's own '\r' is kept.
        for line in text.split_terminator('\n') {
            let (channel, text) = match stdio {
                true => (line.get(..1).unwrap_or(""), line.get(1..).unwrap_or("")),
                false => ("", line),
            };
            match json {
                true => writeln!(
                    out,
                    "{}",
                    json!({ "logid": logid, "line": *seen + got, "channel": channel, "text": text })
                ),
                false => writeln!(out, "{text}"),
            }
            .context("writing to stdout")?;
            got += 1;
        }
        out.flush().context("writing to stdout")?;
        *seen += got;
        if got < PAGE_LINES {
            return Ok(());
        }
    }
}

async fn stop_build(conn: &Connection, build: &str, reason: Option<String>) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let buildid = build_id(&api.build(build).await?)?;
    api.rpc(&format!("builds/{buildid}"), "stop", json!({ "reason": reason })).await?;
    if !conn.json {
        println!("build {buildid}: stopping");
    }
    Ok(true)
}

async fn rebuild(conn: &Connection, build: &str, wait: bool) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let buildid = build_id(&api.build(build).await?)?;
    let submitted = api.rpc(&format!("builds/{buildid}"), "rebuild", json!({})).await?;
    let brid = submitted[1]
        .as_object()
        .and_then(|requests| requests.values().next())
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("unexpected answer to rebuild: {submitted}"))?;
    match conn.json {
        true => println!("{}", json!({ "buildsetid": submitted[0], "buildrequestid": brid })),
        false => println!("build {buildid} rebuilt: build request {brid} queued"),
    }
    if !wait {
        return Ok(true);
    }
    crate::force_cmd::follow(&api, brid).await
}

async fn action(conn: &Connection, path: &str, method: &str, params: Value) -> anyhow::Result<bool> {
    conn.api()?.rpc(path, method, params).await?;
    if !conn.json {
        println!("{path}: {method} done");
    }
    Ok(true)
}

async fn queue(conn: &Connection) -> anyhow::Result<bool> {
    let queue = conn.api()?.get_list("queue", "queue").await?;
    if conn.json {
        return print_json(&json!(queue));
    }
    if queue.is_empty() {
        println!("the queue is empty");
        return Ok(true);
    }
    let now = now();
    let rows: Vec<Vec<String>> = queue
        .iter()
        .map(|q| {
            vec![
                cell(&q["buildrequestid"]),
                cell(&q["buildername"]),
                cell(&q["priority"]),
                duration(&q["submitted_at"], &Value::Null, now),
                cell(&q["waiting"]["message"]),
            ]
        })
        .collect();
    table::print(&["REQUEST", "BUILDER", "PRIORITY", "WAITING", "WHY"], &rows);
    Ok(true)
}

async fn workers(conn: &Connection) -> anyhow::Result<bool> {
    let api = conn.api()?;
    let workers = api.get_list("workers", "workers").await?;
    let running = api.get_list("builds?complete=false", "builds").await?;
    if conn.json {
        return print_json(&json!(workers));
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let connected = w["connected_to"].as_array().is_some_and(|masters| !masters.is_empty());
            let paused = match (w["paused"].as_bool(), w["pause_reason"].as_str()) {
                (Some(true), Some(reason)) => format!("paused ({reason})"),
                (Some(true), None) => "paused".to_string(),
                _ => "-".to_string(),
            };
            let builds = running.iter().filter(|b| b["workerid"] == w["workerid"]).count();
            vec![
                cell(&w["name"]),
                (if connected { "connected" } else { "not connected" }).to_string(),
                paused,
                builds.to_string(),
            ]
        })
        .collect();
    table::print(&["WORKER", "STATE", "PAUSED", "BUILDS"], &rows);
    Ok(true)
}
