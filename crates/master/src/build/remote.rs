//! One command of a step, run on the worker: its output goes to the step's logs as it arrives, a stop
//! interrupts it, and how it ended becomes the step's result.

use kiln_protocol::{Command, UpdateEntry};
use tokio_util::sync::CancellationToken;

use super::logs::StepLogs;
use crate::results::{CANCELLED, EXCEPTION, RETRY};
use crate::store::StoreError;
use crate::workers::{CommandEvent, CommandIo, ConnectionError, WorkerConnection};

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RemoteOutcome {
    pub rc: Option<i64>,
    pub result: i32,
    /// The command's standard output, when it was asked for ([`Target::collect_stdout`]).
    pub stdout: String,
    /// The `files` a `listdir` or `glob` sent.
    pub files: Option<Vec<String>>,
    /// What the step says it did, when it says more than its description (a trigger step's `triggered …`).
    pub summary: Option<String>,
}

/// Where a remote command runs and what stops it.
pub(crate) struct Target<'a> {
    pub conn: &'a WorkerConnection,
    pub builder: &'a str,
    pub stop: &'a CancellationToken,
    /// Keep the command's standard output in [`RemoteOutcome::stdout`] (it goes to the logs too).
    pub collect_stdout: bool,
    /// Write "program finished with exit code N" when the command ends; off for a file command (`listdir`,
    /// `rmdir`…) inside a step whose log shows programs, where it reads as the previous program's line again.
    pub log_rc: bool,
}

/// Runs `command` to its end. `decode_rc` maps an exit code to a result.
pub(crate) async fn run(
    conn: &WorkerConnection,
    command: Command,
    io: CommandIo,
    builder: &str,
    logs: &mut StepLogs<'_>,
    stop: &CancellationToken,
    decode_rc: impl Fn(i64) -> i32,
) -> Result<RemoteOutcome, StoreError> {
    let target = Target { conn, builder, stop, collect_stdout: false, log_rc: true };
    run_on(&target, command, io, logs, decode_rc).await
}

/// [`run`], with what the target asks to collect.
pub(crate) async fn run_on(
    target: &Target<'_>,
    command: Command,
    io: CommandIo,
    logs: &mut StepLogs<'_>,
    decode_rc: impl Fn(i64) -> i32,
) -> Result<RemoteOutcome, StoreError> {
    let Target { conn, builder, stop, collect_stdout, log_rc } = *target;
    let mut remote = match conn.start_command(command, io, Some(builder)).await {
        Ok(remote) => remote,
        Err(ConnectionError::Remote { message, .. }) => {
            logs.header(&format!("the worker refused the command: {message}\n")).await?;
            return Ok(RemoteOutcome { result: EXCEPTION, ..RemoteOutcome::default() });
        }
        Err(e) => {
            logs.header(&format!("{e}\n")).await?;
            return Ok(RemoteOutcome { result: RETRY, ..RemoteOutcome::default() });
        }
    };
    let mut stdout = String::new();
    let mut files = None;
    let mut rc = None;
    let mut interrupted = false;
    loop {
        let due = logs.due();
        let event = tokio::select! {
            event = remote.next() => event,
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                logs.flush().await?;
                continue;
            }
            () = stop.cancelled(), if !interrupted => {
                interrupted = true;
                logs.header("stopping: interrupting the command\n").await?;
                if let Err(e) = conn.interrupt(&remote.id, "the build was stopped").await {
                    tracing::warn!(worker = %conn.name, error = %e, "interrupt not delivered");
                }
                continue;
            }
        };
        match event {
            CommandEvent::Update(entries) => {
                if let Some(code) = entries.iter().rev().find_map(|e| match e {
                    UpdateEntry::Rc(code) => Some(*code),
                    _ => None,
                }) {
                    rc = Some(code);
                }
                for entry in &entries {
                    match entry {
                        UpdateEntry::Stdout(lines) if collect_stdout => stdout.push_str(&lines.text),
                        UpdateEntry::Files(list) => files = Some(list.clone()),
                        _ => {}
                    }
                }
                logs.append(&entries).await?;
            }
            CommandEvent::Complete { failure } => {
                // Stored with the output still waiting, in the step's next write (usually the one that finishes
                // its logs): one write where there were three.
                if let Some(failure) = &failure {
                    logs.note(&format!("the command failed on the worker: {failure}\n"));
                }
                if let Some(code) = rc.filter(|_| log_rc) {
                    logs.note(&format!("program finished with exit code {code}\n"));
                }
                let result = match (interrupted, &failure, rc) {
                    (true, _, _) => CANCELLED,
                    (false, Some(_), _) | (false, None, None) => EXCEPTION,
                    (false, None, Some(code)) => decode_rc(code),
                };
                return Ok(RemoteOutcome { rc, result, stdout, files, summary: None });
            }
            CommandEvent::Lost => {
                logs.header(&format!("the connection to worker '{}' was lost\n", conn.name)).await?;
                return Ok(RemoteOutcome { rc, result: RETRY, stdout, files, summary: None });
            }
        }
    }
}
