//! Child processes for the end-to-end tests (masters and workers, Buildbot's or Kiln's), with their output in
//! files whose tails go into panic messages; and small helpers to set them up.

use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How many lines of each log a failure shows.
pub const LOG_TAIL_LINES: usize = 80;

/// A long-running child (master or worker) with its output in a file.
pub struct ChildProcess {
    pub label: String,
    child: Mutex<Child>,
    /// Where its stdout and stderr go.
    output: PathBuf,
    /// Log files it writes itself (twistd.log).
    logs: Vec<PathBuf>,
}

impl ChildProcess {
    pub fn spawn(label: &str, command: &mut Command, output: PathBuf, logs: Vec<PathBuf>) -> Self {
        let out = File::create(&output).unwrap_or_else(|e| panic!("create {}: {e}", output.display()));
        let err = out.try_clone().expect("clone an output file handle");
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe. It makes the child get SIGTERM when
        // the thread that spawned it (the test's thread, which outlives the child) ends, e.g. when
        // the test process is killed before Drop runs.
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({command:?}): {e}"));
        ChildProcess { label: label.to_owned(), child: Mutex::new(child), output, logs }
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten()
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        Pid::from_raw(child.id() as i32)
    }

    /// Sends `signal` to the process (nothing if it has already exited and been reaped).
    pub fn signal(&self, signal: Signal) {
        if self.exit_status().is_none() {
            let _ = kill(self.pid(), signal);
        }
    }

    /// Polls until the process exits, for at most `timeout`; its exit status, or `None` if it still runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL; always reaps the process.
    pub fn stop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not exit 10 s after SIGTERM; killing it", self.label);
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for path in std::iter::once(&self.output).chain(&self.logs) {
            let _ = writeln!(
                out,
                "===== {} — {} (last {LOG_TAIL_LINES} lines) =====\n{}",
                self.label,
                path.display(),
                tail(path, LOG_TAIL_LINES)
            );
        }
        out
    }
}

/// The last `n` lines of a file, each cut to 400 characters (the master logs every msgpack message,
/// file chunks included).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return "(missing)".to_owned();
    };
    if bytes.is_empty() {
        return "(empty)".to_owned();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| match line.char_indices().nth(400) {
            Some((cut, _)) => format!("{} [...]\n", &line[..cut]),
            None => format!("{line}\n"),
        })
        .collect()
}

/// An error and its sources, "outer: inner: ...".
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

/// Two distinct free TCP ports on 127.0.0.1 (both bound at once so they differ, then released).
pub fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// Runs a short setup command, panicking with its output if it fails.
pub fn run_to_completion(command: &mut Command, what: &str) {
    let out = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {what} ({command:?}): {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {command:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
