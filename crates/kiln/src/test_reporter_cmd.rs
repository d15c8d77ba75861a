//! `kiln test-reporter DIR NAME [--build ID]`: sends one notice of reporter NAME now — about build ID from the
//! master's store, or about a made-up failed build — straight to its target (not through the outbox), and
//! prints what the server answered.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use kiln_master::config::{MasterConfig, Target};
use kiln_master::model::{Build, BuildFacts, Notification, NotificationState, SourceStamp};
use kiln_master::reporters::targets::Sender;
use kiln_master::reporters::{outcome, Reporters};
use kiln_master::results::FAILURE;
use kiln_master::store::Store;

pub fn run(dir: &Path, name: &str, build: Option<i64>) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(test(dir, name, build))
}

async fn test(dir: &Path, name: &str, build: Option<i64>) -> anyhow::Result<bool> {
    let config = MasterConfig::load(dir)?;
    let reporters = Reporters::new(&config);
    let def = reporters.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.reporters.iter().map(|r| r.name.as_str()).collect();
        anyhow!("no reporter '{name}' in {} (known: {})", dir.join("master.toml").display(), known.join(", "))
    })?;
    let url = &config.store.url;
    let store = Store::connect(url).await.with_context(|| format!("opening the store {url}"))?;
    let (facts, tail) = match build {
        Some(buildid) => {
            let facts = store.build_facts(buildid).await?.ok_or_else(|| anyhow!("no build {buildid} in the store"))?;
            let tail = reporters.log_tail(&store, buildid).await?;
            (facts, tail)
        }
        None => (made_up(&config, def.target.clone()), None),
    };
    let rows = reporters.notices(def, "test", &facts, outcome(def, &facts), tail.as_ref());
    if rows.is_empty() {
        bail!(
            "nothing to send: the build has no commit a status could go to (a made-up build has none; use --build ID)"
        );
    }
    let sender = Sender::new(def, store.clone())?;
    let mut all_sent = true;
    for row in rows {
        let notice = Notification {
            id: 0,
            reporter: row.reporter,
            event: row.event,
            subject_id: row.subject_id,
            target: row.target,
            dedupe_key: format!("{}|{}", row.dedupe_key, std::process::id()),
            supersede_key: row.supersede_key,
            payload: row.payload,
            state: NotificationState::Sending,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            created_at: 0,
            sent_at: None,
            answer: None,
        };
        match tokio::time::timeout(def.timeout, sender.send(&notice)).await {
            Ok(Ok(answer)) => println!("{}: sent: {answer}", notice.target),
            Ok(Err(e)) => {
                all_sent = false;
                println!("{}: not sent: {e}", notice.target);
            }
            Err(_) => {
                all_sent = false;
                println!("{}: not sent: no answer within {} s", notice.target, def.timeout.as_secs());
            }
        }
    }
    Ok(all_sent)
}

/// A failed build of the first builder, owned by the mail's sender (so a test mail goes to its own address).
fn made_up(config: &MasterConfig, target: Target) -> BuildFacts {
    let mut facts = BuildFacts {
        build: Build {
            id: 0,
            number: 0,
            results: Some(FAILURE),
            state_string: "failed 'test' (failure) — a test notice from kiln test-reporter".into(),
            ..Build::default()
        },
        builder: config.builders.first().map(|b| b.name.clone()).unwrap_or_else(|| "test".into()),
        reason: "kiln test-reporter".into(),
        sourcestamps: vec![SourceStamp { branch: Some("main".into()), ..SourceStamp::default() }],
        ..BuildFacts::default()
    };
    if let Target::Mail(mail) = target {
        facts.properties.insert("owner".into(), serde_json::json!(mail.from));
    }
    facts
}
