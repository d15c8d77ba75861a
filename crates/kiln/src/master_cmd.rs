//! `kiln create-master`, `start`, `stop`, `checkconfig`: a master's directory and its process.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use kiln_master::config::{MasterConfig, FILE_NAME, SAMPLE};
use kiln_web::launch;
use tokio_util::sync::CancellationToken;

use crate::master_lock::{self, MasterLock, LOCK_FILE, PID_FILE};

/// Writes a master directory with a commented sample `master.toml`.
pub fn create_master(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(FILE_NAME);
    if file.exists() {
        bail!("{}: already exists; not overwritten", file.display());
    }
    // Readable by its owner only: it holds the workers' passwords and the hooks' tokens.
    write_private(&file, SAMPLE).with_context(|| format!("writing {}", file.display()))?;
    println!("master created: {}", file.display());
    println!("edit it, check it with `kiln checkconfig {0}`, run it with `kiln start {0}`", dir.display());
    Ok(())
}

/// Writes a new file `path` with mode 0600 (never an existing one).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Checks `master.toml` and says what it holds; every problem is printed with file, line and key.
pub fn checkconfig(dir: &Path) -> anyhow::Result<()> {
    let config = MasterConfig::load(dir)?;
    println!(
        "{}: OK ({} workers, {} builders, {} force schedulers)",
        dir.join(FILE_NAME).display(),
        config.workers.len(),
        config.builders.len(),
        config.force_schedulers.len()
    );
    Ok(())
}

/// `kiln schedule-preview DIR`: when each nightly scheduler of the config fires from `from` (a date, midnight
/// UTC; default now) for `days` days, one line per firing.
pub fn schedule_preview(dir: &Path, from: Option<&str>, days: u32) -> anyhow::Result<()> {
    use chrono::{DateTime, NaiveDate, Utc};
    use kiln_master::config::Timing;
    let config = MasterConfig::load(dir)?;
    let from = match from {
        None => DateTime::<Utc>::from(std::time::SystemTime::now()),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("--from '{text}': expected YYYY-MM-DD"))?
            .and_hms_opt(0, 0, 0)
            .context("midnight exists")?
            .and_utc(),
    };
    let schedules: Vec<_> = config
        .timed_schedulers
        .iter()
        .filter_map(|s| match &s.timing {
            Timing::Nightly(calendar) => Some((s.name.clone(), s.builders.clone(), calendar.clone())),
            Timing::Periodic(_) => None,
        })
        .collect();
    for line in kiln_master::calendar::preview(&schedules, from, days) {
        println!("{line}");
    }
    Ok(())
}

/// `kiln start DIR`: runs the master in the foreground. SIGTERM/SIGINT stop it (running builds end RETRY and
/// run again at the next start); SIGUSR1 stops it cleanly (no new builds; running ones finish), and a SIGTERM or
/// SIGINT during a clean stop makes it a normal one. SIGHUP reloads `master.toml` (see [`crate::reconfig_cmd`]).
///
/// The directory's lock is taken before anything else is touched: a second `kiln start` on a running master's
/// directory is refused before it opens the store.
pub fn start(dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // Installed first: from here on a signal is queued for `run_master`, not the default action (death).
    let mut signals = {
        let _context = runtime.enter();
        Signals::install()?
    };
    let lock = MasterLock::acquire(dir)?;
    let outcome = runtime.block_on(run_master(dir, &mut signals));
    // Everything the master runs ends before the lock is released.
    drop(signals);
    drop(runtime);
    drop(lock);
    outcome
}

/// Starts the master of `dir` and runs it until a stop signal.
async fn run_master(dir: &Path, signals: &mut Signals) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut starting = || tracing::warn!("SIGHUP while the master starts: ignored");
    let running = tokio::select! {
        running = launch(dir, stop.clone()) => running?,
        _ = signals.wait_for_stop(&mut starting) => {
            tracing::info!("stop signal while starting: the master does not start");
            return Ok(());
        }
    };
    tracing::info!(web = %running.web_address, workers = %running.worker_address, "master running");
    println!(
        "Kiln master running: API {}, workers connect to {}",
        api_url(running.web_address),
        running.worker_address
    );
    crate::service::notify("READY=1");
    let mut reloads = 0;
    let clean = signals
        .wait_for_stop(&mut || {
            reloads += 1;
            tokio::spawn(crate::reconfig_cmd::reload(dir.to_path_buf(), running.master.clone(), reloads));
        })
        .await;
    crate::service::notify("STOPPING=1");
    if clean {
        tracing::info!("clean stop: no new build starts; the master exits when the running builds have ended");
        tokio::select! {
            () = running.master.shutdown(true) => {}
            () = signals.wait_for_escalation() => {
                tracing::warn!("second stop signal: stopping now; running builds end RETRY");
                running.master.shutdown(false).await;
            }
        }
    } else {
        tracing::info!("stopping the master; running builds end RETRY");
        running.master.shutdown(false).await;
    }
    stop.cancel();
    Ok(())
}

pub fn api_url(address: std::net::SocketAddr) -> String {
    format!("http://{address}/api/v2/")
}

/// The signals a running master acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind| signal(kind).context("installing signal handlers");
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            usr1: install(SignalKind::user_defined1())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT (`false`) or SIGUSR1 (`true`: a clean stop); calls `on_hup` at each SIGHUP.
    async fn wait_for_stop(&mut self, on_hup: &mut dyn FnMut()) -> bool {
        loop {
            tokio::select! {
                _ = self.term.recv() => return false,
                _ = self.int.recv() => return false,
                _ = self.usr1.recv() => return true,
                _ = self.hup.recv() => on_hup(),
            }
        }
    }

    /// During a clean stop: waits for SIGTERM or SIGINT; logs SIGHUP and a repeated SIGUSR1 meanwhile.
    async fn wait_for_escalation(&mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.usr1.recv() => tracing::info!("SIGUSR1 received: the clean stop goes on (SIGTERM stops now)"),
                _ = self.hup.recv() => tracing::warn!("SIGHUP during a clean stop: no reload"),
            }
        }
    }
}

/// The process id of the master running in `dir`, from its pid file; a stale pid file is removed.
pub fn running_pid(dir: &Path) -> anyhow::Result<nix::unistd::Pid> {
    let path = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no master seems to run in {}", path.display(), dir.display()))?;
    let pid: i32 = text.trim().parse().with_context(|| format!("{}: not a process id", path.display()))?;
    // A pid file nobody holds the lock for is stale (its pid may be another program's now), unless it names a
    // Kiln process: a master of a version without the lock.
    if !master_lock::is_held(dir) && !master_lock::is_kiln(pid) {
        let _ = std::fs::remove_file(&path);
        bail!(
            "no master runs in {} ({LOCK_FILE} is not locked); removed the stale {} (it named process {pid})",
            dir.display(),
            path.display()
        );
    }
    Ok(nix::unistd::Pid::from_raw(pid))
}

/// `kiln stop DIR [--clean]`: signals the master and waits for it to exit.
pub fn stop(dir: &Path, clean: bool, timeout: Duration) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    let pid = running_pid(dir)?;
    let path = dir.join(PID_FILE);
    let signal = if clean { Signal::SIGUSR1 } else { Signal::SIGTERM };
    if let Err(e) = kill(pid, signal) {
        let _ = std::fs::remove_file(&path);
        bail!("master process {pid} is not running ({e}); removed the stale {}", path.display());
    }
    let deadline = std::time::Instant::now() + timeout;
    // Bounded poll: another process's exit has no event we can wait on.
    while kill(pid, None).is_ok() && !exited(pid.as_raw()) {
        if std::time::Instant::now() > deadline {
            let hint = if clean {
                format!("; it stops when its running builds end, or at once with `kiln stop {}`", dir.display())
            } else {
                String::new()
            };
            bail!("master process {pid} still runs after {timeout:?}{hint}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("master stopped");
    Ok(())
}

/// Whether a process that still has a pid has in fact exited (a zombie its parent has not reaped yet).
fn exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
