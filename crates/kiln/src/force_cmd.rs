//! `kiln force BUILDER --master URL`: asks a master's API for a build, and with `--wait` follows it to its
//! end, printing its logs as they grow.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// How often `--wait` asks the master for news.
const POLL: Duration = Duration::from_millis(300);
/// Most lines of a log `--wait` asks for at once (the master sends at most 100,000): what it holds in memory.
const PAGE_LINES: i64 = 10_000;
const RESULT_NAMES: [&str; 7] = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];

pub struct ForceArgs {
    pub master: String,
    pub builder: String,
    pub scheduler: Option<String>,
    pub reason: String,
    pub properties: Vec<(String, String)>,
    pub wait: bool,
}

/// Forces the build; returns whether it succeeded (always true without `--wait`).
pub fn run(args: ForceArgs) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(force(args))
}

async fn force(args: ForceArgs) -> anyhow::Result<bool> {
    let api = Api::new(&args.master)?;
    let scheduler = args.scheduler.clone().unwrap_or_else(|| format!("force-{}", args.builder));
    let builder = api.get_one(&format!("builders/{}", args.builder)).await?;
    let builderid = builder["builderid"].as_i64().ok_or_else(|| anyhow!("the master sent a builder without id"))?;
    let mut params = json!({ "builderid": builderid, "reason": args.reason });
    for (name, value) in &args.properties {
        params[name] = json!(value);
    }
    let result = api.rpc(&format!("forceschedulers/{scheduler}"), "force", params).await?;
    let brid =
        result[1][builderid.to_string()].as_i64().ok_or_else(|| anyhow!("unexpected answer to force: {result}"))?;
    println!("build request {brid} queued on builder '{}'", args.builder);
    if !args.wait {
        return Ok(true);
    }
    follow(&api, brid).await
}

/// Follows build request `brid` on the master at `master` (its web URL), printing its logs; returns whether
/// it ended SUCCESS or WARNINGS.
pub async fn follow_request(master: &str, brid: i64) -> anyhow::Result<bool> {
    follow(&Api::new(master)?, brid).await
}

/// Follows request `brid`: prints each build's logs as they grow (a RETRY build is followed by the next one)
/// until the request completes; returns whether it ended SUCCESS or WARNINGS.
///
/// The request is read before its builds' logs in each round: once it is complete, its builds and their logs are
/// complete too, so the round that sees it complete prints the last lines of every log before returning.
async fn follow(api: &Api, brid: i64) -> anyhow::Result<bool> {
    let mut printed: HashMap<i64, i64> = HashMap::new();
    let mut announced = HashSet::new();
    let mut ended = HashSet::new();
    loop {
        let request = api.get_one(&format!("buildrequests/{brid}")).await?;
        let builds = api.get_list(&format!("buildrequests/{brid}/builds"), "builds").await?;
        for build in &builds {
            let buildid = build["buildid"].as_i64().unwrap_or_default();
            if announced.insert(("build", buildid)) {
                println!("--- build {} (id {buildid})", build["number"]);
            }
            for step in api.get_list(&format!("builds/{buildid}/steps"), "steps").await? {
                let stepid = step["stepid"].as_i64().unwrap_or_default();
                for log in api.get_list(&format!("steps/{stepid}/logs"), "logs").await? {
                    let logid = log["logid"].as_i64().unwrap_or_default();
                    if announced.insert(("log", logid)) {
                        println!(
                            "--- step '{}', log '{}'",
                            step["name"].as_str().unwrap_or("?"),
                            log["name"].as_str().unwrap_or("?")
                        );
                    }
                    let seen = printed.entry(logid).or_insert(0);
                    print_new_lines(api, logid, log["type"].as_str() == Some("s"), seen).await?;
                }
            }
            if let Some(results) = build["results"].as_i64() {
                if build["complete"].as_bool() == Some(true) && ended.insert(buildid) {
                    println!("--- build {} ended: {}", build["number"], result_name(results));
                }
            }
        }
        if request["complete"].as_bool() == Some(true) {
            let results = request["results"].as_i64().unwrap_or(-1);
            println!("build request {brid}: {}", result_name(results));
            return Ok(results == 0 || results == 1);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints the lines of log `logid` from line `*seen` on, a page of at most [`PAGE_LINES`] at a time until the
/// master has no more; `*seen` counts the lines printed. A stdio log's lines lose their channel letter.
async fn print_new_lines(api: &Api, logid: i64, stdio: bool, seen: &mut i64) -> anyhow::Result<()> {
    use std::io::Write;
    loop {
        let contents = api.get(&format!("logs/{logid}/contents?offset={seen}&limit={PAGE_LINES}")).await?;
        let chunk = &contents["logchunks"][0];
        if chunk["firstline"].as_i64() != Some(*seen) {
            bail!("log {logid}: asked for lines from {seen}, the master sent {chunk}");
        }
        let text = chunk["content"].as_str().unwrap_or("");
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut got = 0;
        // Each line ends with '\n'; a line's own '\r' is kept.
        for line in text.split_terminator('\n') {
            let line = if stdio { line.get(1..).unwrap_or("") } else { line };
            writeln!(out, "{line}").context("writing to stdout")?;
            got += 1;
        }
        out.flush().context("writing to stdout")?;
        *seen += got;
        if got < PAGE_LINES {
            return Ok(());
        }
    }
}

fn result_name(results: i64) -> &'static str {
    usize::try_from(results).ok().and_then(|i| RESULT_NAMES.get(i).copied()).unwrap_or("unknown")
}

/// A master's `/api/v2`.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(master: &str) -> anyhow::Result<Api> {
        let master = master.trim_end_matches('/');
        let base = if master.ends_with("/api/v2") { master.to_string() } else { format!("{master}/api/v2") };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Api { base, http })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.base);
        let response = self.http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("GET {url}: not JSON"))?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {}", body["error"].as_str().unwrap_or(&body.to_string()));
        }
        Ok(body)
    }

    async fn get_list(&self, path: &str, plural: &str) -> anyhow::Result<Vec<Value>> {
        let body = self.get(path).await?;
        body[plural].as_array().cloned().ok_or_else(|| anyhow!("GET {path}: no '{plural}' in the answer"))
    }

    async fn get_one(&self, path: &str) -> anyhow::Result<Value> {
        let plural = path.split('/').rev().nth(1).unwrap_or(path);
        self.get_list(path, plural).await?.into_iter().next().ok_or_else(|| anyhow!("{path}: not found"))
    }

    async fn rpc(&self, path: &str, method: &str, params: Value) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.base);
        let body = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
        let response = self.http.post(&url).json(&body).send().await.with_context(|| format!("POST {url}"))?;
        let answer: Value = response.json().await.with_context(|| format!("POST {url}: not JSON"))?;
        if let Some(error) = answer.get("error") {
            bail!("{method} refused: {}", error["message"].as_str().unwrap_or(&error.to_string()));
        }
        Ok(answer["result"].clone())
    }
}
