//! Reloading a running master's `master.toml`: SIGHUP to the master (what `kiln reconfig` sends, what systemd's
//! `ExecReload` sends, what Buildbot users are used to), and `kiln reconfig DIR`, which checks the file first,
//! signals the master, waits for its answer and prints what changed or why the master refused.
//!
//! The master answers in `DIR/kiln.reconfig.json` (written whole, by rename), one answer per SIGHUP:
//! `{"pid", "seq", "ok", "changes": [...], "error"}`. The running config stays in place whenever `ok` is false.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use kiln_master::config::MasterConfig;
use kiln_master::master::Master;
use serde_json::{json, Value};

/// The file in the master's directory that holds the answer to the last reload.
pub const ANSWER_FILE: &str = "kiln.reconfig.json";

/// The master's side: reads `dir`'s config and applies it; writes the answer (the `seq`-th of this process) and
/// logs it. Never fails: a config that cannot be read or applied leaves the running one, and says why.
pub async fn reload(dir: PathBuf, master: Master, seq: u64) {
    crate::service::notify("RELOADING=1");
    tracing::info!("SIGHUP received: reloading {}", dir.join(kiln_master::config::FILE_NAME).display());
    let read = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || MasterConfig::load(&dir)).await
    };
    let outcome = match read {
        Err(e) => Err(format!("reading the config failed: {e}")),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Ok(Ok(config)) => master.reconfig(config).await.map_err(|e| e.to_string()),
    };
    let answer = match &outcome {
        Ok(done) => {
            if done.changes.is_empty() {
                tracing::info!("reconfig: nothing changed");
            }
            json!({ "pid": std::process::id(), "seq": seq, "ok": true, "changes": done.changes })
        }
        Err(error) => {
            tracing::error!("reconfig refused; the running configuration stays: {error}");
            json!({ "pid": std::process::id(), "seq": seq, "ok": false, "changes": [], "error": error })
        }
    };
    if let Err(e) = write_answer(&dir, &answer) {
        tracing::warn!(error = %e, "writing {ANSWER_FILE} failed");
    }
    crate::service::notify("READY=1");
}

fn write_answer(dir: &Path, answer: &Value) -> std::io::Result<()> {
    let partial = dir.join(format!("{ANSWER_FILE}.partial"));
    std::fs::write(&partial, format!("{answer}\n"))?;
    std::fs::rename(partial, dir.join(ANSWER_FILE))
}

/// The answer in `dir`, and which one it is (pid, seq); `None` before the first.
fn read_answer(dir: &Path) -> Option<(Value, (u64, u64))> {
    let text = std::fs::read_to_string(dir.join(ANSWER_FILE)).ok()?;
    let answer: Value = serde_json::from_str(&text).ok()?;
    let which = (answer["pid"].as_u64()?, answer["seq"].as_u64()?);
    Some((answer, which))
}

/// `kiln reconfig DIR`: checks the config (a problem is reported with file, line and key, and the master is not
/// disturbed), sends SIGHUP to the master, and prints its answer. Fails when the master refused the config.
pub fn reconfig(dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    MasterConfig::load(dir)?;
    let pid = crate::master_cmd::running_pid(dir)?;
    let before = read_answer(dir).map(|(_, which)| which);
    kill(pid, Signal::SIGHUP).with_context(|| format!("signalling master process {pid}"))?;
    let deadline = std::time::Instant::now() + timeout;
    // Bounded poll: the answer is a file another process writes.
    let answer = loop {
        if let Some((answer, which)) = read_answer(dir) {
            if Some(which) != before {
                break answer;
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("master process {pid} did not answer within {timeout:?}; see its log");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if answer["ok"] != Value::Bool(true) {
        bail!(
            "the master refused the new config; it runs on with the old one: {}",
            answer["error"].as_str().unwrap_or("?")
        );
    }
    let changes: Vec<&str> = answer["changes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    match changes.len() {
        0 => println!("reconfigured: nothing changed"),
        n => {
            println!("reconfigured: {n} change(s)");
            for change in changes {
                println!("  {change}");
            }
        }
    }
    Ok(())
}
