//! The worker as its commands' reaper (Linux): it becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`), so a
//! process a command left behind when its parent exited (`sh -c 'daemon &'`) is re-parented to the worker
//! rather than to init, stays in the worker's view, and is killed with its group when the command ends.
//!
//! Re-parented processes must be reaped by the worker. tokio reaps the processes it spawned itself, by pid; a
//! `waitpid(-1)` here would steal their exit statuses. So only zombie children that are *members* of a
//! command's group but not its leader (the leader is the child tokio spawned) are reaped, on every SIGCHLD.

use std::collections::VecDeque;
use std::sync::Mutex;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// The command groups remembered for reaping (the most recent ones: their stragglers die soon after them).
const REMEMBERED_GROUPS: usize = 4096;

static GROUPS: Mutex<VecDeque<i32>> = Mutex::new(VecDeque::new());

/// Remembers the group of a command just started, for reaping its members.
pub(crate) fn remember_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else { return };
    let mut groups = GROUPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if groups.len() >= REMEMBERED_GROUPS {
        groups.pop_front();
    }
    groups.push_back(pgid);
}

/// Makes this process a child subreaper and reaps commands' re-parented processes until the runtime ends.
/// Returns whether the process is a subreaper.
pub(crate) fn start() -> bool {
    #[cfg(target_os = "linux")]
    {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %e, "cannot become a child subreaper: a command's orphans go to init");
            return false;
        }
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(mut children) => {
                tokio::spawn(async move {
                    while children.recv().await.is_some() {
                        reap_orphans();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch for SIGCHLD: orphans of commands stay zombies"),
        }
        reap_orphans();
        true
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Reaps the zombie children that are members (not leaders) of a remembered command group.
fn reap_orphans() {
    let groups: Vec<i32> = GROUPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().copied().collect();
    if groups.is_empty() {
        return;
    }
    for pid in children() {
        let Some((state, pgid)) = state_and_group(pid) else { continue };
        if state == 'Z' && pgid != pid && groups.contains(&pgid) {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// This process's children, from `/proc/self/task/*/children`.
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    pids
}

/// A process's state letter and process group, from `/proc/PID/stat`.
fn state_and_group(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((state, pgid))
}
