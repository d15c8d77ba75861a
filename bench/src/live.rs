//! Workload 9, live log lag: the time from a worker printing a line to a client of the master receiving it.
//!
//! A shell step prints N lines (quick: 40; full: 200) at a steady 20 lines/s, each carrying the wall-clock time
//! the shell took just before printing it (`date +%s%N`). The clients run on the same machine and note their
//! own wall clock when a line reaches them; the lag of a line is the difference. The step waits until every
//! client is connected (it polls for a file the bench creates then), so no line is printed before anyone
//! listens. Three pairs run one after the other:
//!
//! - Kiln's master with Kiln's worker, followed three ways: `GET /api/v2/logs/{id}/follow` (the lines
//!   themselves), `GET /api/v2/events?path=logs/{id}/*` (the `log_appended` event naming the new lines) and `/ws`
//!   the way Buildbot's web UI follows a log (below);
//! - Kiln's master with the stock `buildbot-worker`, followed with `follow`;
//! - Buildbot 4.3.0's master with `buildbot-worker`, followed through `/ws` the way its web UI does: it
//!   consumes `logs/{id}/*`, and at each `append` message (the log resource with its new `num_lines`) reads the
//!   new lines with `GET /api/v2/logs/{id}/contents?offset=…&limit=…`; a line arrives when that answer does.
//!
//! What a worker waits before sending output is its `buffer_timeout`: Kiln's worker caps it at its own
//! (`worker.toml`, 0.1 s by default); `buildbot-worker` takes the master's (Buildbot's master sends 5 s, and so
//! Kiln's master sends its own default, see docs/benchmarks.md).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Better, Row, Target};
use crate::sse::{self, wall};
use crate::systems::{Builder, Extras, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "9 live log lag";
const BUILDER: &str = "live";
/// Seconds between two printed lines.
const PACE: f64 = 0.05;
/// How long the clients may take to connect, and a build to print its lines beyond their own time.
const WAIT: Duration = Duration::from_secs(120);

/// How one client follows the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Kiln's `GET /api/v2/logs/{id}/follow` (SSE).
    Follow,
    /// Kiln's `GET /api/v2/events?path=logs/{id}/*` (SSE): the event naming the stored lines.
    Events,
    /// `/ws`, `startConsuming` `logs/{id}/*`, then the new lines read from the REST API (Buildbot's web UI).
    Ws,
}

/// The lags of one client, in milliseconds, sorted.
#[derive(Debug, Clone, Default)]
struct Lags(Vec<f64>);

impl Lags {
    fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.0.len();
        (n > 0).then(|| self.0[((n as f64 * q).ceil() as usize).clamp(1, n) - 1])
    }
}

pub async fn run(env: &Env) -> Vec<Row> {
    let lines = if env.quick { 40 } else { 200 };
    let kiln = figures(
        WORKLOAD,
        Kind::Kiln,
        pair(env, Kind::Kiln, Kind::Kiln, lines, &[Client::Follow, Client::Events, Client::Ws]).await,
    );
    let mixed = figures(WORKLOAD, Kind::Kiln, pair(env, Kind::Kiln, Kind::Buildbot, lines, &[Client::Follow]).await);
    let buildbot =
        figures(WORKLOAD, Kind::Buildbot, pair(env, Kind::Buildbot, Kind::Buildbot, lines, &[Client::Ws]).await);
    let of = |pair: &Option<HashMap<&'static str, Lags>>, client: Client, q: f64| {
        pair.as_ref().and_then(|p| p.get(name(client))).and_then(|l| l.quantile(q))
    };
    let buildbot_ws = |q| of(&buildbot, Client::Ws, q);
    let mut rows = Vec::new();
    let mut row = |metric: String, kiln: Option<f64>, buildbot: Option<f64>, target: Target| {
        rows.push(Row { workload: WORKLOAD, metric, unit: "ms", better: Better::Lower, kiln, buildbot, target })
    };
    for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
        let target = if q > 0.5 { Target::AtMost(500.0) } else { Target::None };
        row(
            format!("{lines} lines at 20/s, printed → client, {label}: Kiln worker → follow SSE (Buildbot: buildbot-worker → /ws)"),
            of(&kiln, Client::Follow, q),
            buildbot_ws(q),
            target,
        );
        row(
            format!("{lines} lines, {label}: Kiln worker → /api/v2/events log_appended (Buildbot: → /ws)"),
            of(&kiln, Client::Events, q),
            buildbot_ws(q),
            Target::None,
        );
        row(
            format!("{lines} lines, {label}: Kiln worker → /ws as Buildbot's UI follows a log (Buildbot: the same)"),
            of(&kiln, Client::Ws, q),
            buildbot_ws(q),
            Target::None,
        );
        row(
            format!("{lines} lines, {label}: buildbot-worker → Kiln follow SSE (Buildbot: → /ws)"),
            of(&mixed, Client::Follow, q),
            buildbot_ws(q),
            Target::None,
        );
    }
    rows
}

fn name(client: Client) -> &'static str {
    match client {
        Client::Follow => "follow",
        Client::Events => "events",
        Client::Ws => "ws",
    }
}

/// Runs one master with one worker, the step printing `lines` lines, followed by `clients`; each client's lags.
async fn pair(
    env: &Env,
    master: Kind,
    worker: Kind,
    lines: usize,
    clients: &[Client],
) -> Result<HashMap<&'static str, Lags>> {
    let gate = tempfile::Builder::new().prefix("live-").tempdir_in(&env.scratch)?;
    let go = gate.path().join("go");
    let script = format!(
        "while [ ! -e '{go}' ]; do sleep 0.01; done; i=0; while [ $i -lt {lines} ]; do i=$((i+1)); \
         echo \"lag $i $(date +%s%N)\"; sleep {PACE}; done",
        go = go.display()
    );
    let builder = Builder::new(BUILDER, &[("print", &script)]);
    let extras = Extras { worker_kind: Some(worker), ..Extras::default() };
    let mut system = System::start_with(env, master, &[builder], &extras).await?;
    let builder_id = system.builder_id(BUILDER).await?;
    let brid = system.force(BUILDER, builder_id).await?;
    let logid = system
        .poll("the step's stdio log", WAIT, async |s: &System| {
            let Ok(build) = s.build_of(brid).await else { return Ok(None) };
            let Ok(step) = s.get_one(&format!("builds/{}/steps/print", build["buildid"])).await else {
                return Ok(None);
            };
            let logs = s.get(&format!("steps/{}/logs", step["stepid"])).await?;
            let stdio = logs["logs"].as_array().and_then(|l| l.iter().find(|l| l["slug"] == "stdio")).cloned();
            Ok(stdio.and_then(|l| l["logid"].as_i64()))
        })
        .await?;

    // Every client connects, then says so; the step starts printing once all have.
    let http = reqwest::Client::builder().build()?;
    let mut tasks: Vec<(Client, JoinHandle<Result<Received>>)> = Vec::new();
    let mut readies = Vec::new();
    for &client in clients {
        let (ready, connected) = oneshot::channel();
        readies.push(connected);
        let (http, web) = (http.clone(), system.web_url().to_owned());
        let task = match client {
            Client::Follow => tokio::spawn(follow(http, format!("{web}api/v2/logs/{logid}/follow?from=0"), ready)),
            Client::Events => tokio::spawn(events(http, format!("{web}api/v2/events?path=logs/{logid}/*"), ready)),
            Client::Ws => tokio::spawn(ws(http, web, logid, ready)),
        };
        tasks.push((client, task));
    }
    for connected in readies {
        let _ = tokio::time::timeout(WAIT, connected).await.context("a client did not connect in time")?;
    }
    std::fs::write(&go, "")?;

    let deadline = Duration::from_secs_f64(lines as f64 * PACE) + WAIT;
    let mut received = Vec::new();
    for (client, task) in tasks {
        let got = tokio::time::timeout(deadline, task)
            .await
            .with_context(|| format!("{} did not see the log finish in time", name(client)))?
            .context("the client's task failed")?
            .with_context(|| format!("the {} client", name(client)))?;
        received.push((client, got));
    }
    // The printed time of every `lag` line, by line number: from the clients that carry the text.
    let mut printed: HashMap<i64, f64> = HashMap::new();
    for (_, got) in &received {
        for (&number, (text, _)) in &got.lines {
            if let Some(at) = text.as_deref().and_then(printed_at) {
                printed.insert(number, at);
            }
        }
    }
    ensure!(printed.len() == lines, "the clients saw {} of the {lines} printed lines", printed.len());
    let mut out = HashMap::new();
    for (client, got) in received {
        let mut lags: Vec<f64> = Vec::new();
        for (number, at) in &printed {
            let (_, seen) =
                got.lines.get(number).with_context(|| format!("{} never got line {number}", name(client)))?;
            lags.push((seen - at) * 1e3);
        }
        lags.sort_by(f64::total_cmp);
        let lags = Lags(lags);
        println!(
            "  {master:?} master, {worker:?} worker, {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} lines",
            name(client),
            lags.quantile(0.5).unwrap_or(f64::NAN),
            lags.quantile(0.99).unwrap_or(f64::NAN),
            lags.0.last().copied().unwrap_or(f64::NAN),
            lags.0.len()
        );
        out.insert(name(client), lags);
    }
    system.stop();
    Ok(out)
}

/// What a client received: each line number with its text (when the client gets the text) and when it came.
#[derive(Default)]
struct Received {
    lines: HashMap<i64, (Option<String>, f64)>,
}

/// The time a `lag I NANOS` line says it was printed, in seconds since the epoch (the channel prefix of a
/// stdio line, `o`, comes first).
fn printed_at(line: &str) -> Option<f64> {
    let rest = &line[line.find("lag ")? + 4..];
    let nanos: u64 = rest.split_whitespace().nth(1)?.parse().ok()?;
    Some(nanos as f64 / 1e9)
}

/// `follow`: every `lines` message carries the lines, numbered from `first_line`; `finished` ends it.
async fn follow(http: reqwest::Client, url: String, ready: oneshot::Sender<()>) -> Result<Received> {
    let mut got = Received::default();
    sse::read(http, url, ready, |event, data, at| match event {
        "lines" => {
            let first = data["first_line"].as_i64().context("no first_line")?;
            for (i, line) in data["lines"].as_array().context("no lines")?.iter().enumerate() {
                got.lines.insert(first + i as i64, (line.as_str().map(str::to_owned), at));
            }
            Ok(false)
        }
        "finished" => Ok(true),
        "error" => bail!("the follow stream failed: {data}"),
        _ => Ok(false),
    })
    .await?;
    Ok(got)
}

/// `events`: every `log_appended` names the lines stored (`first_line`, `count`); `log_finished` ends it.
async fn events(http: reqwest::Client, url: String, ready: oneshot::Sender<()>) -> Result<Received> {
    let mut got = Received::default();
    sse::read(http, url, ready, |event, data, at| match event {
        "log_appended" => {
            let first = data["first_line"].as_i64().context("no first_line")?;
            for number in first..first + data["count"].as_i64().context("no count")? {
                got.lines.entry(number).or_insert((None, at));
            }
            Ok(false)
        }
        "log_finished" => Ok(true),
        "reset" => bail!("the events stream was reset: {data}"),
        _ => Ok(false),
    })
    .await?;
    Ok(got)
}

/// `/ws` as Buildbot's web UI follows a log: consume `logs/{id}/*`; at every message whose log has more lines
/// than read so far, read them from the REST API (one request at a time); stop at `finished`.
async fn ws(http: reqwest::Client, web: String, logid: i64, ready: oneshot::Sender<()>) -> Result<Received> {
    let url = format!("{}ws", web.replacen("http://", "ws://", 1));
    let (mut socket, _) =
        tokio_tungstenite::connect_async(url.as_str()).await.with_context(|| format!("connect {url}"))?;
    let start = json!({"cmd": "startConsuming", "path": format!("logs/{logid}/*"), "_id": 1});
    socket.send(Message::text(start.to_string())).await?;
    let mut got = Received::default();
    let mut read = 0i64;
    let mut ready = Some(ready);
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message.with_context(|| format!("reading {url}"))? else { continue };
        let message: Value = serde_json::from_str(text.as_str()).with_context(|| format!("{url}: {text}"))?;
        if message["_id"] == 1 {
            ensure!(message["code"] == 200, "{url}: startConsuming refused: {message}");
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            continue;
        }
        let Some(key) = message["k"].as_str() else { continue };
        let num_lines = message["m"]["num_lines"].as_i64().unwrap_or(0);
        if num_lines > read {
            let path = format!("{web}api/v2/logs/{logid}/contents?offset={read}&limit={}", num_lines - read);
            let contents: Value = http.get(&path).send().await?.error_for_status()?.json().await?;
            let at = wall();
            for chunk in contents["logchunks"].as_array().context("no logchunks")? {
                let first = chunk["firstline"].as_i64().context("no firstline")?;
                let content = chunk["content"].as_str().unwrap_or_default();
                for (i, line) in content.lines().enumerate() {
                    got.lines.insert(first + i as i64, (Some(line.to_owned()), at));
                }
            }
            read = num_lines;
        }
        if key.ends_with("/finished") {
            return Ok(got);
        }
    }
    bail!("{url}: the socket closed before the log finished")
}
