//! `kiln demo`: a master on SQLite, a local worker, a sample git repository and a first build, in a
//! temporary directory, to see Kiln work in one command.

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use anyhow::{bail, Context};
use kiln_web::launch;
use tokio_util::sync::CancellationToken;

use crate::master_cmd::api_url;

/// The sample project: a script and its test, in a git repository.
const PROJECT_FILES: [(&str, &str); 3] = [
    ("README.md", "# kiln-demo\n\nA tiny project that Kiln's demo builds and tests.\n"),
    ("greet.sh", "#!/bin/sh\necho \"Hello, ${1:-world}!\"\n"),
    (
        "test.sh",
        "#!/bin/sh\nset -e\necho \"testing revision ${REVISION:-?}\"\nout=$(./greet.sh Kiln)\necho \"greet.sh says: $out\"\n[ \"$out\" = \"Hello, Kiln!\" ]\necho 'all tests passed'\n",
    ),
];

pub struct DemoArgs {
    pub once: bool,
    pub web: String,
}

/// Runs the demo; returns whether the first build succeeded.
pub fn run(args: DemoArgs) -> anyhow::Result<bool> {
    which_git()?;
    let root = tempfile::Builder::new().prefix("kiln-demo-").tempdir().context("creating a temporary directory")?;
    let repo = root.path().join("project");
    make_repository(&repo)?;
    let master_dir = root.path().join("master");
    std::fs::create_dir_all(&master_dir)?;
    let password = format!("demo-{}", std::process::id());
    // An admin whose password is made up now and printed below: the demo's UI can act, nobody else's can.
    let admin_password: String = kiln_web::auth::session::new_secret().chars().take(20).collect();
    let admin_hash = kiln_web::auth::password::hash(&admin_password)?;
    let mut toml = master_toml(&repo, &password, &args.web);
    toml.push_str(&format!("\n[[user]]\nname = \"admin\"\npassword_hash = \"{admin_hash}\"\nroles = [\"admin\"]\n"));
    std::fs::write(master_dir.join("master.toml"), toml)?;

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let running = launch(&master_dir, stop.clone()).await?;
        let worker_dir = root.path().join("worker");
        kiln_worker::create(
            &worker_dir,
            &kiln_worker::NewWorker {
                master: running.worker_address.to_string(),
                name: "demo-worker".into(),
                password: password.clone(),
                tls: false,
                ca_file: None,
                admin: "Kiln demo".into(),
                host: "this machine".into(),
            },
        )?;
        let worker_config = kiln_worker::WorkerConfig::load(&worker_dir)?;
        let worker_stop = CancellationToken::new();
        let worker = tokio::spawn(kiln_worker::run(worker_config, worker_stop.clone()));

        let web_url = format!("http://{}/", running.web_address);
        println!("Kiln demo: the web UI is at {web_url}");
        println!("  directory:  {}", root.path().display());
        println!("  master:     {}", master_dir.display());
        println!("  repository: {}", repo.display());
        println!("  API:        {}", api_url(running.web_address));
        println!("  log in:     http://{}/login as admin, password {admin_password}", running.web_address);
        let mut values = serde_json::Map::new();
        values.insert("reason".into(), "kiln demo: first build".into());
        values.insert("owner".into(), "demo".into());
        let submitted = running.master.force("force-demo", None, &values).await?;
        let brid = submitted.requests.first().map(|(_, brid)| *brid).context("no build request was made")?;
        let passed = crate::force_cmd::follow(&crate::client::Api::new(&web_url, None)?, brid).await?;
        println!(
            "first build: {} — see {} (API: {}buildrequests/{brid}/builds)",
            if passed { "passed" } else { "failed" },
            first_build_page(&running.master, &web_url, brid).await,
            api_url(running.web_address)
        );
        if !args.once {
            println!("serving until Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
        worker_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
        running.master.shutdown(false).await;
        stop.cancel();
        Ok(passed)
    })
}

/// The UI page of request `brid`'s build, or its builder's page if the build cannot be read.
async fn first_build_page(master: &kiln_master::master::Master, web_url: &str, brid: i64) -> String {
    use kiln_master::store::{Build, FilterValue, ListQuery, Op};
    let mut query = ListQuery::<Build>::new();
    let number = match query.filter("buildrequestid", Op::Eq, vec![FilterValue::Int(brid)]) {
        Ok(query) => master.store().list(query).await.ok().and_then(|page| page.items.first().map(|b| b.number)),
        Err(_) => None,
    };
    match number {
        Some(n) => format!("{web_url}builders/demo/builds/{n}"),
        None => format!("{web_url}builders/demo"),
    }
}

fn which_git() -> anyhow::Result<()> {
    match Process::new("git").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("the demo needs git: install it (e.g. apt-get install git)"),
    }
}

fn make_repository(repo: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    for (name, text) in PROJECT_FILES {
        std::fs::write(repo.join(name), text)?;
    }
    use std::os::unix::fs::PermissionsExt;
    for script in ["greet.sh", "test.sh"] {
        std::fs::set_permissions(repo.join(script), std::fs::Permissions::from_mode(0o755))?;
    }
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let out = Process::new("git")
            .args(["-c", "user.name=Kiln Demo", "-c", "user.email=demo@kiln.invalid", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(repo)
            .output()
            .with_context(|| format!("running git {}", args.join(" ")))?;
        if !out.status.success() {
            bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    git(&["init", "-q"])?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "A tiny project to build"])?;
    Ok(())
}

fn master_toml(repo: &Path, password: &str, web: &str) -> String {
    format!(
        r#"# The demo's master: one worker, one builder that checks out the sample repository (a git step) and runs its
# tests, told the revision it checked out (the got_revision property, through Interpolate).
title = "Kiln demo"

[store]
url = "sqlite:state.sqlite"

[worker_listener]
address = "127.0.0.1:0"

[web]
address = "{web}"

[[worker]]
name = "demo-worker"
password = "{password}"

[[builder]]
name = "demo"
workers = ["demo-worker"]
description = "clones the sample repository and runs its tests"

  [[builder.step]]
  name = "checkout"
  type = "git"
  repourl = {repo}
  mode = "full"
  method = "clobber"
  halt_on_failure = true

  [[builder.step]]
  name = "test"
  command = "./test.sh"
  env = {{ REVISION = "%(prop:got_revision)s" }}
"#,
        // A JSON string is a valid TOML basic string.
        repo = serde_json::Value::from(repo.display().to_string())
    )
}
