//! No half-build outlives its worker. Each running shell command's process group is recorded in the worker's
//! directory (`.kiln-commands/<pgid>`, holding the command's marker) while it runs, and every process of the
//! command carries the marker in its environment ([`MARKER_ENV`]). A worker that was killed (SIGKILL, OOM,
//! power) could not end its commands; when it starts again it kills every process that still carries the
//! marker of a recorded command, and forgets the record. On Linux the group leader also dies with the worker
//! (`PR_SET_PDEATHSIG`, see [`crate::process`]), so usually only its children are left for the restart.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The environment variable that marks every process of a command: its value is the command's own marker.
pub(crate) const MARKER_ENV: &str = "KILN_COMMAND_MARKER";
/// The folder of the worker's directory that holds the records.
const RECORDS: &str = ".kiln-commands";
/// How many times the leftovers are looked for and killed (a process may fork while its group is killed).
const KILL_ROUNDS: usize = 20;

/// Where a worker records its running commands' groups. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    dir: PathBuf,
}

/// A running command's record, removed when dropped (the command ended and its group was dealt with).
#[derive(Debug)]
pub(crate) struct Record {
    path: PathBuf,
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a command's record");
            }
        }
    }
}

/// A fresh marker for one command.
pub(crate) fn new_marker() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

impl Records {
    pub(crate) fn new(basedir: &Path) -> Records {
        Records { dir: basedir.join(RECORDS) }
    }

    /// Records that the group `pgid` of a running command has `marker`.
    pub(crate) fn record(&self, pgid: u32, marker: &str) -> std::io::Result<Record> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(pgid.to_string());
        std::fs::write(&path, marker)?;
        Ok(Record { path })
    }

    /// Kills every process that still carries the marker of a recorded command, and removes the records.
    /// Returns how many processes were killed.
    pub(crate) fn kill_leftovers(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut markers = Vec::new();
        let mut paths = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            match std::fs::read_to_string(&path) {
                Ok(marker) if !marker.trim().is_empty() => markers.push(format!("{MARKER_ENV}={}", marker.trim())),
                Ok(_) => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read a command's record"),
            }
            paths.push(path);
        }
        let mut killed = 0;
        for _ in 0..KILL_ROUNDS {
            let found = processes_with_any(&markers);
            if found.is_empty() {
                break;
            }
            for pid in found {
                if kill(pid, Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
        if killed > 0 {
            tracing::warn!(
                killed,
                commands = markers.len(),
                "killed the processes of commands a previous worker left running"
            );
        }
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
        killed
    }
}

/// The live processes (not zombies) whose environment holds one of `entries` (`NAME=value`).
fn processes_with_any(entries: &[String]) -> Vec<Pid> {
    if entries.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Another user's processes cannot be read, and are not ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let ours = environ.split(|&b| b == 0).any(|var| entries.iter().any(|e| var == e.as_bytes()));
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(false);
        if ours && !zombie {
            if let Ok(pid) = i32::try_from(pid) {
                found.push(Pid::from_raw(pid));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_commands_processes_are_killed_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = Records::new(dir.path());
        let marker = new_marker();
        let other = new_marker();
        let spawn = |marker: &str| {
            std::process::Command::new("/bin/sh")
                .args(["-c", "sleep 300 & sleep 300; true"])
                .env(MARKER_ENV, marker)
                .process_group(0)
                .spawn()
                .expect("spawn")
        };
        use std::os::unix::process::CommandExt;
        let mut ours = spawn(&marker);
        let mut theirs = spawn(&other);
        let record = records.record(ours.id(), &marker).expect("record");
        std::mem::forget(record); // as if the worker had been killed
        let wait_for = |marker: &str, n: usize| {
            let entry = format!("{MARKER_ENV}={marker}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            // Bounded poll: a process starting has no event to wait on.
            while processes_with_any(std::slice::from_ref(&entry)).len() < n {
                assert!(std::time::Instant::now() < deadline, "the command's processes did not start");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        wait_for(&marker, 3);
        wait_for(&other, 3);

        assert!(records.kill_leftovers() >= 3);
        assert!(ours.wait().expect("wait").code().is_none(), "killed by a signal");
        let left = processes_with_any(&[format!("{MARKER_ENV}={marker}")]);
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(
            processes_with_any(&[format!("{MARKER_ENV}={other}")]).len(),
            3,
            "an unrecorded command is not ours"
        );
        assert!(std::fs::read_dir(dir.path().join(RECORDS)).expect("dir").next().is_none(), "records removed");
        assert_eq!(records.kill_leftovers(), 0);

        let theirs_group = Pid::from_raw(i32::try_from(theirs.id()).expect("pid"));
        let _ = nix::sys::signal::killpg(theirs_group, Signal::SIGKILL);
        let _ = theirs.wait();
    }
}
