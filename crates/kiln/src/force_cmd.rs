//! `kiln force BUILDER --master URL`: asks a master's API for a build, and with `--wait` follows it to its
//! end, printing its logs as they grow.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, Context};
use serde_json::json;

use crate::client::{print_lines, result, Api, Wakeups};

pub struct ForceArgs {
    pub master: String,
    pub builder: String,
    pub scheduler: Option<String>,
    pub reason: String,
    pub properties: Vec<(String, String)>,
    pub wait: bool,
    pub token: Option<String>,
}

/// Forces the build; returns whether it succeeded (always true without `--wait`).
pub fn run(args: ForceArgs) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(force(args))
}

async fn force(args: ForceArgs) -> anyhow::Result<bool> {
    let api = Api::new(&args.master, args.token.as_deref())?;
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

/// Follows request `brid`: prints each build's logs as they grow (a RETRY build is followed by the next one)
/// until the request completes; returns whether it ended SUCCESS or WARNINGS. A round of reads runs at each event
/// of the master's stream about requests, builds, steps and logs (see [`Wakeups`]).
///
/// The request is read before its builds' logs in each round: once it is complete, its builds and their logs are
/// complete too, so the round that sees it complete prints the last lines of every log before returning.
pub async fn follow(api: &Api, brid: i64) -> anyhow::Result<bool> {
    let paths = ["buildrequests/{brid}/*", "builds/*/*", "steps/*/*", "logs/*/*"];
    let wakeups = Wakeups::start(api, paths.iter().map(|p| p.replace("{brid}", &brid.to_string())).collect()).await;
    let mut printed: HashMap<i64, i64> = HashMap::new();
    let mut announced = HashSet::new();
    let mut ended = HashSet::new();
    let mut said_why = String::new();
    loop {
        let request = api.get_one(&format!("buildrequests/{brid}")).await?;
        let builds = api.get_list(&format!("buildrequests/{brid}/builds"), "builds").await?;
        if builds.is_empty() && request["complete"].as_bool() != Some(true) {
            say_why_it_waits(api, brid, &mut said_why).await?;
        }
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
                    print_lines(api, logid, log["type"].as_str() == Some("s"), seen, false).await?;
                }
            }
            if let Some(results) = build["results"].as_i64() {
                if build["complete"].as_bool() == Some(true) && ended.insert(buildid) {
                    println!("--- build {} ended: {}", build["number"], result(&json!(results)));
                }
            }
        }
        if request["complete"].as_bool() == Some(true) {
            let results = request["results"].as_i64().unwrap_or(-1);
            println!("build request {brid}: {}", result(&json!(results)));
            return Ok(results == 0 || results == 1);
        }
        wakeups.next().await;
    }
}

/// Prints why request `brid` waits in the queue (`GET /queue`), when that changes.
async fn say_why_it_waits(api: &Api, brid: i64, said: &mut String) -> anyhow::Result<()> {
    let queue = api.get_list("queue", "queue").await?;
    let why = queue.iter().find(|q| q["buildrequestid"] == json!(brid)).and_then(|q| q["waiting"]["message"].as_str());
    if let Some(why) = why.filter(|why| *why != said.as_str()) {
        println!("waiting: {why}");
        why.clone_into(said);
    }
    Ok(())
}
