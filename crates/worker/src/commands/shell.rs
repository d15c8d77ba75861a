//! The `shell` command: runs a program in its own process group, streams its output, and ends it on a
//! timeout, a line limit or an interrupt — the whole group, first gently when `sigtermTime` asks for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kiln_protocol::{CommandLine, EnvValue, LogFile, ShellArgs, UpdateEntry};
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{CommandContext, Outcome};
use crate::process::{parse_signal, ProcessGroup};
use crate::updates::{Stream, UpdateSender};

/// How often watched log files are read.
const LOGFILE_POLL: Duration = Duration::from_millis(250);
/// Without `sigtermTime`, how long a process has after a signal other than SIGKILL before SIGKILL follows.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// After a killed command's first process ended, how long to wait for the end of its output (a process that
/// left the group may hold the pipes open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 64 * 1024;

pub(crate) async fn run(args: ShellArgs, ctx: &CommandContext) -> Outcome {
    let updates = &ctx.updates;
    let env = environment(
        &args.env,
        std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())),
    );
    let (program, argv) = match &args.command {
        CommandLine::Shell(script) => ("/bin/sh".to_string(), vec!["/bin/sh".to_string(), "-c".into(), script.clone()]),
        CommandLine::Argv(words) => match words.first() {
            Some(first) => (first.value.clone(), words.iter().map(|w| w.value.clone()).collect()),
            None => return Err("empty command".to_string()),
        },
    };
    let shown_argv: Vec<String> = match &args.command {
        CommandLine::Shell(_) => argv.clone(),
        CommandLine::Argv(words) => words.iter().map(|w| w.display.clone()).collect(),
    };
    send_start_headers(&args, &shown_argv, &env, updates).await;

    if let Err(e) = tokio::fs::create_dir_all(&args.workdir).await {
        updates.stderr(format!("cannot create workdir '{}': {e}\n", args.workdir)).await;
        updates.entry(UpdateEntry::Rc(-1)).await;
        return Ok(());
    }

    // Before the command starts, so that a file it writes at once is not taken for an old one.
    let mut watchers: Vec<LogWatcher> =
        args.logfiles.iter().map(|file| LogWatcher::new(file, Path::new(&args.workdir))).collect();
    let marker = crate::leftovers::new_marker();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&argv[1..])
        .current_dir(&args.workdir)
        .env_clear()
        .envs(&env)
        .env(crate::leftovers::MARKER_ENV, &marker)
        .stdin(if args.initial_stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    crate::process::die_with_worker(&mut command);
    // The command's time (`elapsedTime`) includes starting its process, as buildbot-worker counts it.
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let rc = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => -1,
            };
            updates.stderr(format!("cannot start '{program}' in '{}': {e}\n", args.workdir)).await;
            updates.entry(UpdateEntry::Rc(rc)).await;
            return Ok(());
        }
    };
    let group = child.id().and_then(ProcessGroup::led_by);
    // Kept until the command's end: the record lets a restarted worker kill what a killed one left running.
    let _record = child.id().and_then(|pgid| {
        crate::reaper::remember_group(pgid);
        ctx.records
            .record(pgid, &marker)
            .map_err(|e| tracing::warn!(error = %e, "cannot record a command's process group"))
            .ok()
    });

    if let (Some(input), Some(mut stdin)) = (args.initial_stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            // A command that exits without reading its input is not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let mut stdout = child.stdout.take().map(Pipe::new);
    let mut stderr = child.stderr.take().map(Pipe::new);

    let idle_timeout = args.timeout.and_then(|t| Duration::try_from_secs_f64(t).ok());
    let max_time = args.max_time.and_then(|t| Duration::try_from_secs_f64(t).ok());
    let mut idle_deadline = idle_timeout.map(|t| started + t);
    let max_deadline = max_time.map(|t| started + t);
    let mut next_poll = started + LOGFILE_POLL;
    let mut lines_seen: u64 = 0;
    let mut status: Option<ExitStatus> = None;
    let mut killed = false;
    let mut failure_reason: Option<&str> = None;
    let mut drain_deadline: Option<Instant> = None;

    loop {
        let output_open = stdout.as_ref().is_some_and(|p| !p.done) || stderr.as_ref().is_some_and(|p| !p.done);
        if status.is_some() && !output_open {
            break;
        }
        let far = Instant::now() + Duration::from_secs(86_400);
        enum Event {
            Out(Stream, std::io::Result<usize>),
            Exited(std::io::Result<ExitStatus>),
            Idle,
            MaxTime,
            Interrupted,
            Poll,
            Drained,
        }
        let event = tokio::select! {
            r = read_pipe(&mut stdout) => Event::Out(Stream::Stdout, r),
            r = read_pipe(&mut stderr) => Event::Out(Stream::Stderr, r),
            r = child.wait(), if status.is_none() => Event::Exited(r),
            () = tokio::time::sleep_until(idle_deadline.unwrap_or(far)), if idle_deadline.is_some() && !killed => Event::Idle,
            () = tokio::time::sleep_until(max_deadline.unwrap_or(far)), if max_deadline.is_some() && !killed => Event::MaxTime,
            () = ctx.interrupt.cancelled(), if !killed => Event::Interrupted,
            () = tokio::time::sleep_until(next_poll), if !watchers.is_empty() => Event::Poll,
            () = tokio::time::sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() => Event::Drained,
        };
        let kill_reason: Option<String> = match event {
            Event::Out(stream, Ok(n)) => {
                let pipe = match stream {
                    Stream::Stdout => stdout.as_mut(),
                    _ => stderr.as_mut(),
                };
                let Some(pipe) = pipe else { continue };
                if n == 0 {
                    pipe.done = true;
                    continue;
                }
                idle_deadline = idle_timeout.map(|t| Instant::now() + t);
                let data = pipe.buf[..n].to_vec();
                lines_seen += data.iter().filter(|&&b| b == b'\n').count() as u64;
                let wanted = match stream {
                    Stream::Stdout => args.want_stdout,
                    _ => args.want_stderr,
                };
                if wanted {
                    updates.output(stream, data).await;
                }
                match args.max_lines {
                    Some(max) if lines_seen > max && !killed => {
                        failure_reason = Some("max_lines_failure");
                        Some(format!("command exceeded max lines limit of {max}"))
                    }
                    _ => None,
                }
            }
            Event::Out(stream, Err(e)) => {
                tracing::warn!(?stream, error = %e, "reading command output failed");
                if let Some(pipe) = match stream {
                    Stream::Stdout => stdout.as_mut(),
                    _ => stderr.as_mut(),
                } {
                    pipe.done = true;
                }
                None
            }
            Event::Exited(result) => {
                match result {
                    Ok(exit) => status = Some(exit),
                    Err(e) => {
                        updates.stderr(format!("lost track of the process: {e}\n")).await;
                        status = Some(std::os::unix::process::ExitStatusExt::from_raw(-1 << 8));
                    }
                }
                if killed {
                    let drained = Instant::now() + OUTPUT_DRAIN;
                    drain_deadline = Some(drain_deadline.map_or(drained, |d| d.min(drained)));
                }
                None
            }
            Event::Idle => {
                failure_reason = Some("timeout_without_output");
                Some(format!(
                    "command timed out: {} seconds without output running {}",
                    seconds(args.timeout),
                    python_list(&shown_argv)
                ))
            }
            Event::MaxTime => {
                failure_reason = Some("timeout");
                Some(format!(
                    "command timed out: {} seconds elapsed running {}",
                    seconds(args.max_time),
                    python_list(&shown_argv)
                ))
            }
            Event::Interrupted => Some("command interrupted".to_string()),
            Event::Poll => {
                next_poll = Instant::now() + LOGFILE_POLL;
                for watcher in &mut watchers {
                    watcher.poll(updates).await;
                }
                None
            }
            Event::Drained => {
                if status.is_none() {
                    // The first process left its group and survived the group's kill: kill it by pid.
                    let _ = child.start_kill();
                    status = child.wait().await.ok();
                }
                break;
            }
        };
        if let Some(reason) = kill_reason {
            killed = true;
            updates.header(format!("\n{reason}, attempting to kill\n")).await;
            let (first, grace) = kill_plan(&args);
            if let Some(group) = group {
                tokio::spawn(group.kill(first, grace));
            }
            let wait = if status.is_some() { OUTPUT_DRAIN } else { grace + OUTPUT_DRAIN };
            drain_deadline = Some(Instant::now() + wait);
        }
    }
    for watcher in &mut watchers {
        watcher.poll(updates).await;
    }

    let status = status.unwrap_or_else(|| std::os::unix::process::ExitStatusExt::from_raw(-1 << 8));
    let rc = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => {
            updates.header(format!("process killed by signal {signal}\n")).await;
            -1
        }
        (None, None) => -1,
    };
    updates.entry(UpdateEntry::Rc(rc)).await;
    if let Some(reason) = failure_reason {
        updates.entry(UpdateEntry::FailureReason(reason.to_string())).await;
    }
    updates.header(format!("elapsedTime={:.6}\n", started.elapsed().as_secs_f64())).await;
    Ok(())
}

/// The first signal of a kill and the time before SIGKILL follows.
fn kill_plan(args: &ShellArgs) -> (Signal, Duration) {
    if let Some(grace) = args.sigterm_time.and_then(|t| Duration::try_from_secs_f64(t).ok()) {
        return (Signal::SIGTERM, grace);
    }
    let first = args.interrupt_signal.as_deref().and_then(parse_signal).unwrap_or(Signal::SIGKILL);
    (first, DEFAULT_GRACE)
}

/// An output pipe of the command.
struct Pipe {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    buf: Vec<u8>,
    done: bool,
}

impl Pipe {
    fn new(reader: impl AsyncRead + Unpin + Send + 'static) -> Self {
        Pipe { reader: Box::new(reader), buf: vec![0; READ_CHUNK], done: false }
    }
}

/// Reads the next chunk of a pipe; pends forever once the pipe is done (so `select!` ignores it).
async fn read_pipe(pipe: &mut Option<Pipe>) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) if !pipe.done => pipe.reader.read(&mut pipe.buf).await,
        _ => std::future::pending().await,
    }
}

/// The command's environment: the worker's own, changed as Buildbot's workers change it — `None` removes a
/// variable, a list is joined with `:`, `${NAME}` is replaced by the worker's value of NAME, and PYTHONPATH
/// keeps the worker's own after the given one.
pub(crate) fn environment(
    changes: &[(String, EnvValue)],
    worker_env: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let worker_env: BTreeMap<String, String> = worker_env.collect();
    let substitute = |value: &str| -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) if after[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    out.push_str(&rest[..start]);
                    out.push_str(worker_env.get(&after[..end]).map(String::as_str).unwrap_or(""));
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push_str(&rest[..start + 2]);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    };
    let mut env = worker_env.clone();
    for (name, value) in changes {
        let value = match value {
            EnvValue::Unset => {
                env.remove(name);
                continue;
            }
            EnvValue::Value(v) => v.clone(),
            EnvValue::PathList(items) => items.join(":"),
        };
        let value = if name == "PYTHONPATH" { format!("{value}:${{PYTHONPATH}}") } else { value };
        env.insert(name.clone(), substitute(&value));
    }
    env
}

async fn send_start_headers(args: &ShellArgs, argv: &[String], env: &BTreeMap<String, String>, updates: &UpdateSender) {
    let mut header = format!("{}\n in dir {}", args.command.display(), args.workdir);
    if args.timeout.is_some() {
        header.push_str(&format!(" (timeout {} secs)", seconds(args.timeout)));
    }
    if args.max_time.is_some() {
        header.push_str(&format!(" (maxTime {} secs)", seconds(args.max_time)));
    }
    header.push('\n');
    if !args.logfiles.is_empty() {
        let files: Vec<String> = args.logfiles.iter().map(|f| format!("'{}': '{}'", f.name, f.filename)).collect();
        header.push_str(&format!(" watching logfiles {{{}}}\n", files.join(", ")));
    }
    header.push_str(&format!(" argv: {}\n", python_list(argv)));
    if args.log_environ {
        header.push_str(" environment:\n");
        for (name, value) in env {
            header.push_str(&format!("  {name}={value}\n"));
        }
    }
    if let Some(input) = &args.initial_stdin {
        header.push_str(&format!(" writing {} bytes to stdin\n", input.len()));
    }
    header.push_str(" using PTY: False\n");
    updates.header(header).await;
}

/// A number of seconds as Python prints it in Buildbot's messages (`2`, `2.5`).
fn seconds(value: Option<f64>) -> String {
    value.map(|v| format!("{v}")).unwrap_or_else(|| "None".to_string())
}

/// A list of strings as Python's `repr` shows it.
fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> =
        items.iter().map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
    format!("[{}]", quoted.join(", "))
}

/// Follows one file named in `logfiles`: a file that already existed unchanged when the command started
/// is left alone (it is from an earlier build); a new or changed one is read from its start, or from its end
/// with `follow`.
struct LogWatcher {
    name: String,
    path: PathBuf,
    follow: bool,
    initial: Option<FileIdentity>,
    file: Option<tokio::fs::File>,
}

#[derive(PartialEq)]
struct FileIdentity {
    inode: u64,
    size: u64,
    modified: Option<std::time::SystemTime>,
}

fn identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileIdentity { inode: meta.ino(), size: meta.len(), modified: meta.modified().ok() })
}

impl LogWatcher {
    fn new(file: &LogFile, workdir: &Path) -> LogWatcher {
        let path = workdir.join(&file.filename);
        LogWatcher { name: file.name.clone(), initial: identity(&path), path, follow: file.follow, file: None }
    }

    async fn poll(&mut self, updates: &UpdateSender) {
        if self.file.is_none() {
            let now = identity(&self.path);
            if now.is_none() || now == self.initial {
                return;
            }
            let Ok(mut file) = tokio::fs::File::open(&self.path).await else {
                return;
            };
            if self.follow {
                let _ = tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::End(0)).await;
            }
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else { return };
        let mut buf = vec![0; READ_CHUNK];
        // Bounded per poll, so that one busy log cannot starve the command's other work.
        for _ in 0..16 {
            match file.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => updates.output(Stream::Log(self.name.clone()), buf[..n].to_vec()).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(changes: &[(&str, EnvValue)]) -> BTreeMap<String, String> {
        let worker = [("PATH", "/usr/bin"), ("HOME", "/home/w"), ("PYTHONPATH", "/site"), ("DROP", "x")];
        let changes: Vec<(String, EnvValue)> = changes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        environment(&changes, worker.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn environment_follows_buildbot_rules() {
        let env = env(&[
            ("DROP", EnvValue::Unset),
            ("FOO", EnvValue::Value("${HOME}/foo:${MISSING}end".into())),
            ("PATH", EnvValue::PathList(vec!["/opt/bin".into(), "${PATH}".into()])),
            ("PYTHONPATH", EnvValue::Value("/mine".into())),
            ("ODD", EnvValue::Value("${not closed".into())),
        ]);
        assert_eq!(env.get("DROP"), None);
        assert_eq!(env["FOO"], "/home/w/foo:end");
        assert_eq!(env["PATH"], "/opt/bin:/usr/bin");
        assert_eq!(env["PYTHONPATH"], "/mine:/site");
        assert_eq!(env["ODD"], "${not closed");
        assert_eq!(env["HOME"], "/home/w");
    }

    #[test]
    fn python_reprs() {
        assert_eq!(python_list(&["sh".into(), "-c".into(), "echo 'hi'".into()]), r"['sh', '-c', 'echo \'hi\'']");
        assert_eq!(seconds(Some(2.0)), "2");
        assert_eq!(seconds(Some(2.5)), "2.5");
    }
}
