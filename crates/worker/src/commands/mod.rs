//! The commands a master can start on a worker, one module per kind, and how one runs to its end.
//!
//! A command reports through its [`UpdateSender`] (output lines, `rc`, `files`…), talks to the master through
//! its [`MasterLink`] when it moves file data, and stops early when its interrupt is cancelled (the master
//! interrupted it, the connection was lost, or the worker is shutting down).

mod fs;
mod shell;
mod transfer;

use std::time::Instant;

use kiln_protocol::{Command, CommandId, UpdateEntry, WorkerRequest};
use tokio_util::sync::CancellationToken;

use crate::link::MasterLink;
use crate::updates::UpdateSender;

/// What a running command has to hand.
pub(crate) struct CommandContext {
    pub command_id: CommandId,
    pub link: MasterLink,
    pub updates: UpdateSender,
    /// Cancelled when the command must stop.
    pub interrupt: CancellationToken,
    /// Where a shell command records its process group while it runs.
    pub records: crate::leftovers::Records,
}

/// How a command ended. `Ok` is a normal end, whatever its `rc`; `Err` carries the text of an error that kept
/// it from running (sent as the failure of `complete`).
pub(crate) type Outcome = Result<(), String>;

/// Checks what the worker cannot do before the command is accepted; the text goes back as the exception of
/// `start_command`.
pub(crate) fn refuse(command: &Command) -> Option<String> {
    match command {
        Command::Shell(args) if args.use_pty => {
            Some("usePTY is not supported by the Kiln worker: run the command without a PTY".to_string())
        }
        _ => None,
    }
}

async fn run(command: Command, ctx: &CommandContext) -> Outcome {
    match command {
        Command::Shell(args) => shell::run(args, ctx).await,
        Command::UploadFile(args) => transfer::upload_file(args, ctx).await,
        Command::UploadDirectory(args) => transfer::upload_directory(args, ctx).await,
        Command::DownloadFile(args) => transfer::download_file(args, ctx).await,
        Command::Mkdir { paths } => fs::mkdir(paths, ctx).await,
        Command::Rmdir { paths, .. } => fs::rmdir(paths, ctx).await,
        Command::Cpdir { from_path, to_path, .. } => fs::cpdir(from_path, to_path, ctx).await,
        Command::Stat { path } => fs::stat(path, ctx).await,
        Command::Glob { path } => fs::glob(path, ctx).await,
        Command::Listdir { path } => fs::listdir(path, ctx).await,
        Command::Rmfile { path } => fs::rmfile(path, ctx).await,
    }
}

/// Runs a command to its end as Buildbot's workers do: the command, then `elapsed`, the last of its output,
/// and `complete`.
pub(crate) async fn execute(command: Command, ctx: CommandContext) {
    let started = Instant::now();
    let name = command.name();
    let outcome = run(command, &ctx).await;
    if let Err(failure) = &outcome {
        tracing::warn!(command = name, id = %ctx.command_id, %failure, "command failed");
    }
    ctx.updates.entry(UpdateEntry::Elapsed(started.elapsed().as_secs_f64())).await;
    ctx.updates.flush().await;
    let complete = WorkerRequest::Complete { command_id: ctx.command_id.clone(), failure: outcome.err() };
    if let Err(e) = ctx.link.request(complete).await {
        tracing::debug!(id = %ctx.command_id, error = %e, "completion not acknowledged");
    }
}
