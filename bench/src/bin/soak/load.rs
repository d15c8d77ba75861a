//! The load: four generators that run until a deadline whatever state the master is in, each with its own
//! seeded random pauses and bursts, and a ledger of what each was answered. A commit is accepted once it is in
//! the repository; a change sent (`kiln sendchange`, a hook POST) once the master answered it with its id; a
//! forced build once the master answered with its build request id.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::master::{Binaries, Repo, ADMIN, HOOK_TOKEN, MAIN_BUILDER};
use crate::rng::Rng;

/// How a change was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Sendchange,
    Hook,
}

/// One change sent to the master.
#[derive(Debug, Clone)]
pub struct Sent {
    pub via: Via,
    pub revision: String,
    pub branch: &'static str,
    /// The change id the master answered, if it answered.
    pub answered: Option<i64>,
    /// Why it was not answered (the client's error, shortened).
    pub why: Option<String>,
}

/// An error's gist for a tally: its first line, digits dropped (ports, ids), at most 80 characters.
fn gist(text: &str) -> String {
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
    line.chars().filter(|c| !c.is_ascii_digit()).take(80).collect()
}

/// Everything the load did.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Commits made (hash, branch).
    pub commits: Vec<(String, &'static str)>,
    pub sent: Vec<Sent>,
    /// Build request ids of answered forces.
    pub forced: Vec<i64>,
    /// Forces not answered (the master was down or died).
    pub unanswered_forces: usize,
    /// Bursts per generator: commits, sendchange, hooks, forces.
    pub bursts: [usize; 4],
}

pub type Shared = Arc<Mutex<Ledger>>;

fn with<T>(ledger: &Shared, f: impl FnOnce(&mut Ledger) -> T) -> T {
    let mut guard = ledger.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

/// What the generators need.
#[derive(Clone)]
pub struct Load {
    pub ledger: Shared,
    pub url: String,
    pub builder_id: i64,
    pub bins: Binaries,
    pub http: reqwest::Client,
    pub until: Instant,
}

fn branch(rng: &mut Rng) -> &'static str {
    if rng.chance(0.7) {
        "main"
    } else {
        "topic"
    }
}

/// Sleeps a random pause of mean `mean` seconds (uniform in [0, 2 × mean)), at most until the deadline; false
/// once the deadline has passed.
async fn pause(rng: &mut Rng, mean: f64, until: Instant) -> bool {
    let wake = Instant::now() + Duration::from_secs_f64(rng.between(0.0, 2.0 * mean));
    tokio::time::sleep_until(wake.min(until).into()).await;
    Instant::now() < until
}

/// How many to send at once: mostly 1, sometimes a burst.
fn burst(rng: &mut Rng, ledger: &Shared, which: usize, chance: f64, low: u64, high: u64) -> u64 {
    if rng.chance(chance) {
        with(ledger, |l| l.bursts[which] += 1);
        rng.int(low, high)
    } else {
        1
    }
}

/// Commits to the polled repository: one every second on average, bursts of 10–30.
pub async fn commits(load: Load, repo: Repo, mut rng: Rng) -> Result<()> {
    let mut n = 0;
    while pause(&mut rng, 1.0, load.until).await {
        for _ in 0..burst(&mut rng, &load.ledger, 0, 0.04, 10, 30) {
            n += 1;
            let branch = branch(&mut rng);
            let hash = repo.commit(branch, &format!("commit {n}")).await?;
            with(&load.ledger, |l| l.commits.push((hash, branch)));
        }
    }
    Ok(())
}

/// `kiln sendchange`: one every 2 s on average, bursts of 5–15 at once.
pub async fn sendchanges(load: Load, mut rng: Rng) -> Result<()> {
    let mut n = 0;
    while pause(&mut rng, 2.0, load.until).await {
        let mut batch = Vec::new();
        for _ in 0..burst(&mut rng, &load.ledger, 1, 0.04, 5, 15) {
            n += 1;
            batch.push(sendchange(&load, format!("send-{n}"), branch(&mut rng)));
        }
        let sent = join_all(batch).await;
        with(&load.ledger, |l| l.sent.extend(sent));
    }
    Ok(())
}

async fn sendchange(load: &Load, revision: String, branch: &'static str) -> Sent {
    let mut command = Command::new(&load.bins.kiln);
    command
        .args(["sendchange", "--master", &load.url, "--token", HOOK_TOKEN, "--author", "Soak <soak@example.invalid>"])
        .args(["--comments", "sent during the soak", "--branch", branch, "--revision", &revision, "f.txt"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let (answered, why) = match tokio::time::timeout(Duration::from_secs(30), command.output()).await {
        Ok(Ok(output)) if output.status.success() => match String::from_utf8_lossy(&output.stdout).trim().parse() {
            Ok(id) => (Some(id), None),
            Err(_) => (None, Some(format!("not an id: {}", gist(&String::from_utf8_lossy(&output.stdout))))),
        },
        Ok(Ok(output)) => (None, Some(gist(&String::from_utf8_lossy(&output.stderr)))),
        Ok(Err(e)) => (None, Some(format!("cannot run kiln: {e}"))),
        Err(_) => (None, Some("no answer within 30 s".into())),
    };
    Sent { via: Via::Sendchange, revision, branch, answered, why }
}

/// POSTs to `/change_hook/base`: one every second on average, bursts of 10–40 at once.
pub async fn hooks(load: Load, mut rng: Rng) -> Result<()> {
    let mut n = 0;
    while pause(&mut rng, 1.0, load.until).await {
        let mut batch = Vec::new();
        for _ in 0..burst(&mut rng, &load.ledger, 2, 0.03, 10, 40) {
            n += 1;
            batch.push(hook(&load, format!("hook-{n}"), branch(&mut rng)));
        }
        let sent = join_all(batch).await;
        with(&load.ledger, |l| l.sent.extend(sent));
    }
    Ok(())
}

async fn hook(load: &Load, revision: String, branch: &'static str) -> Sent {
    let body = json!({
        "author": "Soak <soak@example.invalid>", "comments": "posted during the soak", "revision": revision,
        "branch": branch, "repository": "https://example.invalid/soak.git", "files": ["g.txt"],
    });
    let request = load.http.post(format!("{}/change_hook/base", load.url)).bearer_auth(HOOK_TOKEN).json(&body);
    let (answered, why) = match request.send().await {
        Ok(response) if response.status().is_success() => match response.json::<Value>().await {
            Ok(value) => match value["changes"][0].as_i64() {
                Some(id) => (Some(id), None),
                None => (None, Some(format!("200 without a change id: {value}"))),
            },
            Err(e) => (None, Some(format!("200, then {}", gist(&format!("{e:#}"))))),
        },
        Ok(response) => (None, Some(format!("HTTP {}", response.status()))),
        Err(e) if e.is_connect() => (None, Some("connection refused".into())),
        Err(e) if e.is_timeout() => (None, Some("timed out".into())),
        Err(e) => (None, Some(gist(&format!("{e:#}")))),
    };
    Sent { via: Via::Hook, revision, branch, answered, why }
}

/// Forced builds of the main builder: one every 3 s on average, bursts of 5–15 at once.
pub async fn forces(load: Load, mut rng: Rng) -> Result<()> {
    while pause(&mut rng, 3.0, load.until).await {
        let batch: Vec<_> = (0..burst(&mut rng, &load.ledger, 3, 0.05, 5, 15)).map(|_| force(&load)).collect();
        for answered in join_all(batch).await {
            with(&load.ledger, |l| match answered {
                Some(brid) => l.forced.push(brid),
                None => l.unanswered_forces += 1,
            });
        }
    }
    Ok(())
}

async fn force(load: &Load) -> Option<i64> {
    let id = load.builder_id;
    let body = json!({"jsonrpc": "2.0", "method": "force", "params": {"builderid": id, "reason": "soak"}, "id": 1});
    let url = format!("{}/api/v2/forceschedulers/force-{MAIN_BUILDER}", load.url);
    let response = load.http.post(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).json(&body).send().await.ok()?;
    let reply: Value = response.json().await.ok()?;
    reply["result"][1][id.to_string()].as_i64()
}
