//! Helpers shared by kiln's integration tests.
//!
//! `buildbot` runs a real Buildbot master (and a worker) as child processes, `kiln` a Kiln master (`kiln start`)
//! and its workers; `api` has the REST client, waits and diagnostics both masters share, `process` the child
//! processes both use. The functions here find and
//! reap processes by a marker in their command line, to check that a worker leaves nothing running.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod buildbot;
pub mod kiln;
pub mod process;
pub mod recorder;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A number that appears in no other process's command line: tests put it into the commands they run
/// (`sleep <marker>`) so they can later look for leftovers with [`processes_matching`].
/// Unique within this test process (a counter) and against concurrent test processes (the pid);
/// always 11 digits, so that no marker is a prefix of another.
pub fn unique_marker() -> u64 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed) % 1000);
    // 9, the pid on 7 digits (Linux pids are below 2^22), the counter on 3: `sleep <marker>` never
    // ends during a test.
    90_000_000_000 + u64::from(std::process::id()) * 1000 + n
}

/// A process found by [`processes_matching`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// The command line, arguments separated by spaces.
    pub cmdline: String,
}

/// Live processes (other than this one) whose command line contains `needle`, read from `/proc`.
/// Zombies have an empty command line and so never match: a killed, unreaped process counts as gone.
pub fn processes_matching(needle: &str) -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcessInfo> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            // The process may exit between read_dir and here; that is not an error.
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).trim_end_matches('\0').replace('\0', " ");
            cmdline.contains(needle).then_some(ProcessInfo { pid, cmdline })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// Polls until no process matches `needle`, for at most `timeout`; on timeout returns the ones left.
pub async fn wait_no_processes(needle: &str, timeout: Duration) -> Result<(), Vec<ProcessInfo>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_matching(needle);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Guard that SIGKILLs every process matching its needle when dropped, so that a failing test does not
/// leave its long `sleep`s behind. Assertions about leftovers must be made before it drops.
pub struct KillOnDrop(pub String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in processes_matching(&self.0) {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
}
