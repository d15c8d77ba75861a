//! One master per directory: `kiln start` holds an exclusive lock on `DIR/kiln.lock` for the master's whole life
//! and writes its process id to `DIR/kiln.pid` (what `kiln stop` signals).
//!
//! The lock, not the pid file, decides: the kernel drops it when the process ends, however it ends, so a pid
//! file left by a killed master (whose pid may since belong to another program) is taken over, and of two
//! `kiln start`s racing on one directory exactly one gets it. The one exception is a pid file naming a live Kiln
//! process, which may be a master of a version before the lock: that is refused too. `kiln.lock` itself is never
//! removed: a master removing it at exit while another start has it open would let two masters hold "the" lock
//! on two files.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The file that holds a running master's process id.
pub const PID_FILE: &str = "kiln.pid";
/// The file a running master holds locked.
pub const LOCK_FILE: &str = "kiln.lock";

/// The lock on a master directory and its `kiln.pid`, both released when dropped.
pub struct MasterLock {
    pid_file: PathBuf,
    // Held for its effect: the lock lasts as long as this open file.
    _lock: Flock<File>,
}

impl MasterLock {
    /// Takes the lock of `dir` and writes `kiln.pid`; refuses, naming the running master's pid and how to stop
    /// it, when another process holds the lock.
    pub fn acquire(dir: &Path) -> anyhow::Result<MasterLock> {
        if !dir.is_dir() {
            bail!("{}: not a directory (`kiln create-master DIR` makes one)", dir.display());
        }
        let lock_path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                let running = match running_pid(dir) {
                    Some(pid) => format!("a master (pid {pid}) already runs"),
                    None => "a master is starting or running".to_owned(),
                };
                bail!(
                    "{running} in {dir}: {lock} is locked; stop it first with `kiln stop {dir}`",
                    dir = dir.display(),
                    lock = lock_path.display()
                );
            }
            Err((_, e)) => bail!("locking {}: {e}", lock_path.display()),
        };
        let pid_file = dir.join(PID_FILE);
        if let Some(old) = running_pid(dir).filter(|&pid| pid != std::process::id() as i32) {
            if is_kiln(old) {
                // A master that holds no lock: one of a version before the lock, or whose kiln.lock was removed.
                bail!(
                    "a master (pid {old}, in {pid_file}) may run in {dir} without holding {lock}; stop it first with \
                     `kiln stop {dir}`, or remove {pid_file} if process {old} is not that master",
                    dir = dir.display(),
                    pid_file = pid_file.display(),
                    lock = lock_path.display()
                );
            }
            tracing::warn!(pid = old, file = %pid_file.display(), "taking over a pid file left by a master that is gone");
        }
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", pid_file.display()))?;
        Ok(MasterLock { pid_file, _lock: lock })
    }
}

impl Drop for MasterLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Whether a process holds the lock of `dir` (a master runs there). Tried without waiting; the try holds the
/// lock (shared) for an instant.
pub fn is_held(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, Errno::EWOULDBLOCK)))
}

/// Whether `pid` is a live process whose program is named like Kiln's (`kiln`, `kiln-…`). A zombie has no
/// command line, and a pid reused by another program does not match.
pub fn is_kiln(pid: i32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    Path::new(std::ffi::OsStr::from_bytes(program)).file_name().is_some_and(|name| name.as_bytes().starts_with(b"kiln"))
}

/// The pid `DIR/kiln.pid` names, when it names one.
pub fn running_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(PID_FILE)).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_pid_then_taken_after_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = MasterLock::acquire(dir.path()).expect("first lock");
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(dir.path().join(PID_FILE)).expect("pid file").trim(), pid);
        let err = MasterLock::acquire(dir.path()).err().expect("a second lock is refused").to_string();
        assert!(err.contains(&format!("pid {pid}")) && err.contains("kiln stop"), "{err}");
        assert!(is_held(dir.path()));
        drop(first);
        assert!(!is_held(dir.path()));
        assert!(!dir.path().join(PID_FILE).exists(), "kiln.pid is removed with the lock");
        assert!(dir.path().join(LOCK_FILE).exists(), "kiln.lock stays");
        MasterLock::acquire(dir.path()).expect("the lock once released");
    }
}
