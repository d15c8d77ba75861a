//! `kiln sendchange --master URL …`: posts one change to a master's `/change_hook/base` (Buildbot's base
//! dialect, as JSON with a bearer token) and prints the ids of the changes it stored.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};

/// Where the token comes from when `--token` is not given.
pub const TOKEN_ENV: &str = "KILN_TOKEN";

#[derive(clap::Args)]
pub struct SendchangeArgs {
    /// The master's web URL, e.g. http://127.0.0.1:8010/
    #[arg(long)]
    pub master: String,
    /// The `[change_hooks.base]` token (default: $KILN_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Who wrote the change (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
    #[arg(long)]
    pub comments: String,
    #[arg(long)]
    pub branch: Option<String>,
    #[arg(long)]
    pub revision: Option<String>,
    #[arg(long)]
    pub repository: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub codebase: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    /// A change property, NAME=VALUE (repeatable).
    #[arg(long = "property", value_parser = crate::parse_property)]
    pub properties: Vec<(String, String)>,
    /// The files the change touched.
    pub files: Vec<String>,
}

/// Sends the change; prints one stored change id per line.
pub fn run(args: SendchangeArgs) -> anyhow::Result<()> {
    let token = match args.token.clone() {
        Some(token) => token,
        None => std::env::var(TOKEN_ENV).map_err(|_| anyhow!("give --token or set {TOKEN_ENV}"))?,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let ids = runtime.block_on(send(&args, &token))?;
    for id in ids {
        println!("{id}");
    }
    Ok(())
}

/// The base dialect's JSON body.
fn body(args: &SendchangeArgs) -> Value {
    let author = args.author.clone().unwrap_or_else(default_author);
    let properties: Map<String, Value> =
        args.properties.iter().map(|(name, value)| (name.clone(), json!(value))).collect();
    let mut body = json!({
        "author": author,
        "comments": args.comments,
        "files": args.files,
        "properties": properties,
    });
    for (key, value) in [
        ("branch", &args.branch),
        ("revision", &args.revision),
        ("repository", &args.repository),
        ("project", &args.project),
        ("codebase", &args.codebase),
        ("category", &args.category),
    ] {
        if let Some(value) = value {
            body[key] = json!(value);
        }
    }
    body
}

/// The user running the command, as Buildbot's `sendchange` defaults it.
fn default_author() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into())
}

async fn send(args: &SendchangeArgs, token: &str) -> anyhow::Result<Vec<i64>> {
    let master = args.master.trim_end_matches('/');
    let url = format!("{master}/change_hook/base");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let response =
        http.post(&url).bearer_auth(token).json(&body(args)).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("POST {url}: reading the answer"))?;
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let message = answer.as_ref().and_then(|a| a["error"].as_str()).unwrap_or(text.trim());
        bail!("the master refused the change: {status}: {message}");
    }
    answer
        .as_ref()
        .and_then(|a| a["changes"].as_array())
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .ok_or_else(|| anyhow!("POST {url}: unexpected answer: {text}"))
}
