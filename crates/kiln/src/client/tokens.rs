//! `kiln token create|list|revoke`: a user's API tokens, over the master's `/api/v2/tokens`, logged in with
//! `--user` and a password on standard input (or with an existing `--token`, which may list and revoke); and
//! `kiln hash-password`.

use std::io::BufRead;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use serde_json::json;

use super::table::{cell, time};
use super::{Api, Connection};

/// How to log in to manage tokens.
#[derive(clap::Args, Clone, Debug)]
pub struct Login {
    /// Log in as this user, with the password read from standard input (one line).
    #[arg(long)]
    pub user: Option<String>,
}

/// A user's API tokens.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown this once).
    Create {
        /// What the token is for (e.g. the script or machine using it).
        #[arg(long)]
        name: String,
        /// The role it acts with: one of the user's.
        #[arg(long)]
        role: Option<String>,
        /// How long it lives: 30d, 12h, 45m, or never.
        #[arg(long, default_value = "90d")]
        expires: String,
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the user's tokens (never their text).
    List {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke one of the user's tokens, by id.
    Revoke {
        id: i64,
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        conn: Connection,
    },
}

/// The first line of standard input, without its line end.
async fn password_from_stdin() -> anyhow::Result<String> {
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading standard input")?
    .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

async fn api(login: &Login, conn: &Connection) -> anyhow::Result<Api> {
    let api = conn.api()?;
    match &login.user {
        Some(user) => Ok(api.with_login(user, &password_from_stdin().await?)),
        None if conn.token.is_some() => Ok(api),
        None => bail!("give --user NAME (the password on standard input) or --token"),
    }
}

/// Runs a token command.
pub async fn run(command: TokenCommand) -> anyhow::Result<bool> {
    match command {
        TokenCommand::Create { name, role, expires, login, conn } => {
            let api = api(&login, &conn).await?;
            let body = json!({ "name": name, "role": role, "expires": expires });
            let answer = api.send(reqwest::Method::POST, "tokens", Some(&body)).await?;
            let created = &answer["tokens"][0];
            if conn.json {
                println!("{}", serde_json::to_string_pretty(created)?);
                return Ok(true);
            }
            let text = created["token"].as_str().ok_or_else(|| anyhow!("the master sent no token: {answer}"))?;
            println!("{text}");
            eprintln!(
                "token {} '{}' (role {}) created; it is shown only now: keep it (e.g. in KILN_TOKEN)",
                created["id"],
                created["name"].as_str().unwrap_or(""),
                created["role"].as_str().unwrap_or("")
            );
            Ok(true)
        }
        TokenCommand::List { login, conn } => {
            let api = api(&login, &conn).await?;
            let answer = api.send(reqwest::Method::GET, "tokens", None).await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&answer["tokens"])?);
                return Ok(true);
            }
            println!("{:<5} {:<24} {:<12} {:<20} {:<20} STATE", "ID", "NAME", "ROLE", "CREATED", "EXPIRES");
            for t in answer["tokens"].as_array().into_iter().flatten() {
                let state = if t["revoked_at"].is_null() { "live" } else { "revoked" };
                let expires = if t["expires_at"].is_null() { "never".to_string() } else { time(&t["expires_at"]) };
                println!(
                    "{:<5} {:<24} {:<12} {:<20} {:<20} {state}",
                    t["id"],
                    cell(&t["name"]),
                    cell(&t["role"]),
                    time(&t["created_at"]),
                    expires
                );
            }
            Ok(true)
        }
        TokenCommand::Revoke { id, login, conn } => {
            let api = api(&login, &conn).await?;
            api.send(reqwest::Method::DELETE, &format!("tokens/{id}"), None).await?;
            println!("token {id} revoked");
            Ok(true)
        }
    }
}

/// `kiln hash-password`: the argon2 hash of the password on standard input.
pub fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no password on standard input (e.g. `kiln hash-password < file`, or type it and press Enter)");
    }
    println!("{}", kiln_web::auth::password::hash(password)?);
    Ok(())
}
