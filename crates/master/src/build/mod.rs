//! A build: the steps of a builder run in order on one worker, each step's result merged into the build's
//! with Buildbot's rules, every line of output stored as it arrives.

mod git;
mod handle;
mod logs;
pub mod properties;
mod remote;
pub mod result;
mod secrets;
mod step_locks;
mod summary;
mod trigger;

use std::sync::Arc;
use std::time::Duration;

use kiln_protocol::{
    ArgvWord, Command, CommandLine, Compression, DownloadFileArgs, EnvValue, ShellArgs, UploadDirectoryArgs,
    UploadFileArgs,
};
use tokio_util::sync::CancellationToken;

use crate::config::{BuilderDef, ShellCommand, ShellStep, StepDef};
use crate::interpolate::render;
use crate::queue::locks::Locks;
use crate::results::{worst_status, CANCELLED, FAILURE, RETRY, SUCCESS};
use crate::store::{Store, StoreError};
use crate::workers::{CommandIo, WorkerConnection};
pub use handle::{HandleError, MasterHandle};
use logs::StepLogs;
use properties::{BuildProperties, BuildStart};
use result::{merge, StepFlags};
use summary::Description;

/// How long a worker has to answer the ping that starts every build (else the build is RETRY).
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// One build to run.
pub struct BuildJob {
    pub store: Store,
    pub conn: Arc<WorkerConnection>,
    pub builder: Arc<BuilderDef>,
    pub buildid: i64,
    /// The build's number within its builder.
    pub number: i64,
    /// The build request it builds.
    pub brid: i64,
    /// Cancelled to stop the build: the running command is interrupted, the build ends CANCELLED.
    pub stop: CancellationToken,
    /// The master, for the steps that act through it (`trigger`).
    pub master: Arc<dyn MasterHandle>,
    /// The master's locks, for the steps' `locks`.
    pub locks: Locks,
    /// Where the build fetches the secrets its steps name.
    pub secrets: crate::secrets::Providers,
}

/// How a build ended, for the caller to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The build's result.
    pub result: i32,
    /// The summaries of the steps whose results changed the build's (see [`summary::counts_for_build`]).
    summaries: Vec<String>,
    /// What the build says instead, when it ended before its steps ran (Buildbot's `worker not pinged`).
    instead: Option<&'static str>,
}

impl Ended {
    /// A build that ended with `result` before or without its steps (e.g. when recording it failed).
    pub fn with(result: i32) -> Ended {
        Ended { result, summaries: Vec::new(), instead: None }
    }

    /// The build's final state string if it ends with `result` (the caller may have made it RETRY).
    pub fn state_string(&self, result: i32) -> String {
        match self.instead {
            Some(words) if result == self.result => words.to_string(),
            _ => summary::build_finished(result, &self.summaries),
        }
    }
}

/// Runs the build's steps and returns how it ended (the caller stores it). The build's state string follows
/// Buildbot's: `pinging worker`, `building`, then the summaries of the steps that changed its result.
pub async fn run(job: &BuildJob) -> Result<Ended, StoreError> {
    job.store.set_build_state(job.buildid, summary::PINGING).await?;
    if let Err(e) = job.conn.ping(PING_TIMEOUT).await {
        tracing::warn!(buildid = job.buildid, error = %e, "worker not answering the build's ping");
        return Ok(Ended { result: RETRY, summaries: Vec::new(), instead: Some("worker not pinged") });
    }
    let mut props = starting_properties(job).await?;
    let names = secrets::of_builder(&job.builder);
    let fetched = match secrets::withheld(&job.store, &job.builder, job.brid).await? {
        Some(why) => {
            tracing::info!(buildid = job.buildid, why = %why, "the build's secrets are withheld");
            crate::secrets::Fetched::withheld(names.iter().map(String::as_str), &why)
        }
        None => job.secrets.fetch(names.iter().map(String::as_str)).await,
    };
    props.set_secrets(fetched, &job.builder);
    job.store.set_build_properties(job.buildid, &props.to_vec()).await?;
    job.store.set_build_state(job.buildid, summary::BUILDING).await?;
    let mut result = SUCCESS;
    let mut summaries = Vec::new();
    let mut terminated = false;
    for step in &job.builder.steps {
        if job.stop.is_cancelled() && !terminated {
            result = worst_status(result, CANCELLED);
            terminated = true;
        }
        let options = step.options();
        if terminated && !options.always_run {
            continue;
        }
        let description = Description::of(step, &props);
        let redactor = props.redactor().clone();
        let running = redactor.redact(description.running()).into_owned();
        let (stepid, _) = job.store.start_step(job.buildid, &redactor.redact(step.name()), &running).await?;
        let mut logs = StepLogs::open(&job.store, stepid).await?.redacting(redactor.clone());
        let stop = if terminated { CancellationToken::new() } else { job.stop.clone() };
        let locks = step_locks::acquire(job, stepid, &options.locks, &running, &mut logs, &stop).await?;
        let step_result = match locks {
            Some(_locks) => match secrets::missing(step, &props) {
                Some(problems) => {
                    for problem in problems {
                        logs.header(&format!("step '{}' cannot run: {problem}\n", step.name())).await?;
                    }
                    remote::RemoteOutcome { result: FAILURE, ..Default::default() }
                }
                None => run_step(job, stepid, step, &mut props, &mut logs, &stop).await?,
            },
            None => remote::RemoteOutcome { result: CANCELLED, ..Default::default() },
        };
        logs.finish().await?;
        let done = step_result.summary.unwrap_or_else(|| description.done(step_result.result));
        let done = redactor.redact(&done).into_owned();
        job.store.finish_step_as(stepid, step_result.result, false, Some(&done)).await?;
        let flags = StepFlags {
            halt_on_failure: options.halt_on_failure,
            flunk_on_failure: options.flunk_on_failure,
            warn_on_failure: options.warn_on_failure,
            ..StepFlags::default()
        };
        let failure_counts = flags.flunk_on_failure || flags.halt_on_failure || flags.warn_on_failure;
        let warnings_count = flags.warn_on_warnings || flags.flunk_on_warnings;
        if summary::counts_for_build(step_result.result, failure_counts, warnings_count) {
            summaries.push(done);
            job.store.set_build_state(job.buildid, &summaries.join(" ")).await?;
        }
        let (merged, terminate) = merge(result, step_result.result, flags);
        result = merged;
        terminated |= terminate;
    }
    Ok(Ended { result, summaries, instead: None })
}

/// The properties the build starts with, from its buildset, builder and worker.
async fn starting_properties(job: &BuildJob) -> Result<BuildProperties, StoreError> {
    let bsid = job.store.build_request(job.brid).await?.map(|r| r.buildsetid);
    let (buildset_properties, sourcestamps) = match bsid {
        Some(bsid) => (job.store.buildset_properties(bsid).await?, job.store.buildset_sourcestamps(bsid).await?),
        None => (Vec::new(), Vec::new()),
    };
    Ok(BuildProperties::starting(BuildStart {
        builder: &job.builder,
        number: job.number,
        worker: &job.conn.name,
        builddir: job.conn.path(&[job.builder.builddir.as_str()]),
        worker_info: job.conn.info_json().into_iter().collect(),
        buildset_properties,
        sourcestamps,
    }))
}

/// Runs one step's command on the worker.
async fn run_step(
    job: &BuildJob,
    stepid: i64,
    step: &StepDef,
    props: &mut BuildProperties,
    logs: &mut StepLogs<'_>,
    stop: &CancellationToken,
) -> Result<remote::RemoteOutcome, StoreError> {
    let conn = &job.conn;
    let builder = &job.builder;
    let lookup = props.with_secrets();
    let on_worker = |workdir: &str, file: &str| {
        conn.path(&[builder.builddir.as_str(), &render(workdir, &lookup), &render(file, &lookup)])
    };
    let zero_is_success = |rc: i64| if rc == 0 { SUCCESS } else { FAILURE };
    let (command, io) = match step {
        StepDef::Shell(shell) => {
            let command = Command::Shell(shell_args(conn, builder, shell, props));
            let decode =
                |rc: i64| i32::try_from(rc).ok().and_then(|rc| shell.decode_rc.get(&rc).copied()).unwrap_or(FAILURE);
            return remote::run(conn, command, CommandIo::None, &builder.name, logs, stop, decode).await;
        }
        StepDef::Git(git) => return git::run(job, git, props, logs, stop).await,
        StepDef::Upload(upload) => {
            let path = on_worker(&upload.workdir, &upload.workersrc);
            let dest = std::path::PathBuf::from(render(&upload.masterdest.to_string_lossy(), &lookup));
            logs.header(&format!("uploading {path} to {}\n", dest.display())).await?;
            if upload.directory {
                let compress = match upload.compress.as_deref() {
                    Some("gz") => Some(Compression::Gzip),
                    Some("bz2") => Some(Compression::Bzip2),
                    _ => None,
                };
                let args = UploadDirectoryArgs { path, maxsize: upload.maxsize, blocksize: upload.blocksize, compress };
                (Command::UploadDirectory(args), CommandIo::UploadDirectory { dest })
            } else {
                let args = UploadFileArgs {
                    path,
                    maxsize: upload.maxsize,
                    blocksize: upload.blocksize,
                    keepstamp: upload.keepstamp,
                };
                (Command::UploadFile(args), CommandIo::UploadFile { dest })
            }
        }
        StepDef::Download(download) => {
            let path = on_worker(&download.workdir, &download.workerdest);
            let src = std::path::PathBuf::from(render(&download.mastersrc.to_string_lossy(), &lookup));
            logs.header(&format!("downloading {} to {path}\n", src.display())).await?;
            let source = match tokio::fs::File::open(&src).await {
                Ok(file) => file,
                Err(e) => {
                    logs.header(&format!("cannot read {}: {e}\n", src.display())).await?;
                    return Ok(remote::RemoteOutcome { result: FAILURE, ..Default::default() });
                }
            };
            let args = DownloadFileArgs {
                path,
                maxsize: download.maxsize,
                blocksize: download.blocksize,
                mode: download.mode,
            };
            (Command::DownloadFile(args), CommandIo::Download { source: Box::new(source) })
        }
        StepDef::Trigger(step) => return trigger::run(job, stepid, step, props, logs, stop).await,
    };
    remote::run(conn, command, io, &builder.name, logs, stop, zero_is_success).await
}

/// The `shell` command of a step: templates rendered, paths made absolute on the worker, Buildbot's options.
fn shell_args(conn: &WorkerConnection, builder: &BuilderDef, step: &ShellStep, props: &BuildProperties) -> ShellArgs {
    let props = &props.with_secrets();
    let command = match &step.command {
        ShellCommand::Shell(script) => CommandLine::Shell(render(script, props)),
        ShellCommand::Argv(words) => {
            CommandLine::Argv(words.iter().map(|w| ArgvWord::plain(render(w, props))).collect())
        }
    };
    let workdir = render(&step.workdir, props);
    let mut args = ShellArgs::new(conn.path(&[builder.builddir.as_str(), workdir.as_str()]), command);
    args.env = step.env.iter().map(|(k, v)| (k.clone(), EnvValue::Value(render(v, props)))).collect();
    args.timeout = step.timeout.map(|t| t.as_secs_f64());
    args.max_time = step.max_time.map(|t| t.as_secs_f64());
    args.sigterm_time = step.sigterm_time.map(|t| t.as_secs_f64());
    args.interrupt_signal = Some(step.interrupt_signal.clone());
    args.log_environ = step.log_environ;
    args
}
