//! Child processes run in a process group of their own, so that a timeout or an interrupt reaches every
//! process a command started, not only the first one.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The process group of a command (its id is the first child's pid).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessGroup(Pid);

impl ProcessGroup {
    /// The group led by the child with this pid (spawned with `process_group(0)`).
    pub(crate) fn led_by(pid: u32) -> Option<ProcessGroup> {
        i32::try_from(pid).ok().map(|pid| ProcessGroup(Pid::from_raw(pid)))
    }

    /// Sends a signal to every process of the group; a group already gone is not an error.
    pub(crate) fn signal(self, signal: Signal) {
        match killpg(self.0, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pgid = %self.0, ?signal, error = %e, "could not signal process group"),
        }
    }

    /// Whether any process (a zombie included) is left in the group.
    pub(crate) fn is_alive(self) -> bool {
        killpg(self.0, None).is_ok()
    }

    /// Kills the group: `first`, then SIGKILL after `grace` for whatever is left.
    pub(crate) async fn kill(self, first: Signal, grace: Duration) {
        self.signal(first);
        if first == Signal::SIGKILL {
            return;
        }
        let deadline = tokio::time::Instant::now() + grace;
        // Bounded poll: a process group has no event to wait on.
        while self.is_alive() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.signal(Signal::SIGKILL);
    }
}

/// Makes the leader of `command`'s group die with the worker (Linux: `PR_SET_PDEATHSIG` SIGKILL, set in the
/// child before it runs the program). Its own children do not: a restarted worker kills those (see
/// [`crate::leftovers`]).
pub(crate) fn die_with_worker(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let worker = nix::unistd::getpid();
        // SAFETY: between fork and exec the closure only makes two system calls (prctl, getppid) and builds an
        // io::Error from an errno, which allocates nothing: all async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                // The worker died before the signal was set: the child would outlive it.
                if nix::unistd::getppid() != worker {
                    return Err(std::io::Error::from(Errno::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A signal from its Buildbot name (`KILL`, `TERM`, `INT`, `SIGHUP`…) or number.
pub(crate) fn parse_signal(name: &str) -> Option<Signal> {
    let name = name.trim();
    if let Ok(number) = name.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<Signal>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("KILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGINT"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("NOPE"), None);
    }
}
