//! One worker's connection, on the master's side: requests and their responses, the commands running on the
//! worker with their updates, the master's end of file transfers, and liveness.
//!
//! One task owns the socket's reading half and the table of running commands; commands are registered with
//! it (through a channel it always reads first) before their `start_command` is sent, so that no update can
//! arrive for a command it does not know yet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use kiln_protocol::{
    decode, encode_request, encode_response, Command, CommandId, Incoming, MasterRequest, PathFlavour, Response,
    UpdateEntry, Value, WorkerInfo, WorkerRequest, WorkerSettings,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::transfer::{CommandIo, Download, Upload};

/// Frames queued for the socket.
const OUTGOING: usize = 256;
/// Events queued for a command's consumer; a slow consumer slows the worker down, not the master's memory.
const COMMAND_EVENTS: usize = 64;

/// Why a request to a worker got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectionError {
    #[error("the connection to worker '{0}' is lost")]
    Lost(String),
    #[error("worker '{worker}' answered with an error: {message}")]
    Remote { worker: String, message: String },
    #[error("worker '{worker}' did not answer within {timeout:?}")]
    Timeout { worker: String, timeout: Duration },
}

/// What a running command reports.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandEvent {
    Update(Vec<UpdateEntry>),
    /// The command ended; `failure` is the worker's error text when it could not run.
    Complete {
        failure: Option<String>,
    },
    /// The connection was lost before the command completed.
    Lost,
}

struct Registration {
    id: CommandId,
    slot: CommandSlot,
}

struct CommandSlot {
    events: mpsc::Sender<CommandEvent>,
    upload: Option<Upload>,
    download: Option<Download>,
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Response>>>>;

/// A connected worker. Cheap to share (`Arc`); dropped connections answer every request with `Lost`.
pub struct WorkerConnection {
    pub name: String,
    pub info: WorkerInfo,
    flavour: PathFlavour,
    frames: mpsc::Sender<Vec<u8>>,
    registrations: mpsc::Sender<Registration>,
    pending: Pending,
    next_seq: AtomicI64,
    next_command: AtomicU64,
    closed: CancellationToken,
}

/// Liveness settings: a keepalive every `interval`; no answer within `timeout` drops the connection.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub timeout: Duration,
}

impl WorkerConnection {
    /// Takes over an authenticated WebSocket: starts the reading and writing tasks, then runs Buildbot's attach
    /// sequence (`print attached`, `get_worker_info`, `set_worker_settings`, builder directories).
    pub async fn attach<S>(
        name: String,
        socket: tokio_tungstenite::WebSocketStream<S>,
        builder_dirs: &[String],
        liveness: Liveness,
    ) -> Result<Arc<WorkerConnection>, ConnectionError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, stream) = socket.split();
        let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(OUTGOING);
        let (registrations, registered) = mpsc::channel(16);
        let closed = CancellationToken::new();
        let pending: Pending = Arc::default();

        let writer_closed = closed.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = outgoing.recv() => match frame {
                        Some(frame) => {
                            if sink.send(Message::Binary(frame.into())).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    () = writer_closed.cancelled() => break,
                }
            }
            writer_closed.cancel();
            let _ = sink.close().await;
        });
        tokio::spawn(read_loop(name.clone(), stream, registered, pending.clone(), frames.clone(), closed.clone()));

        let mut conn = WorkerConnection {
            name,
            info: WorkerInfo::default(),
            flavour: PathFlavour::Posix,
            frames,
            registrations,
            pending,
            next_seq: AtomicI64::new(0),
            next_command: AtomicU64::new(1),
            closed,
        };
        let setup = Duration::from_secs(30).max(liveness.timeout);
        let attached = async {
            conn.request_within(MasterRequest::Print { message: "attached".into() }, setup).await?;
            let info = conn.request_within(MasterRequest::GetWorkerInfo, setup).await?;
            conn.info = WorkerInfo::from_value(&info).map_err(|e| ConnectionError::Remote {
                worker: conn.name.clone(),
                message: format!("unreadable worker info: {e}"),
            })?;
            conn.flavour = PathFlavour::from_system(&conn.info.system);
            conn.request_within(MasterRequest::SetWorkerSettings(worker_settings()), setup).await?;
            Ok::<_, ConnectionError>(())
        }
        .await;
        if let Err(e) = attached {
            conn.close();
            return Err(e);
        }
        let conn = Arc::new(conn);
        conn.make_builder_dirs(builder_dirs).await?;
        tokio::spawn(keep_alive(Arc::downgrade(&conn), liveness));
        Ok(conn)
    }

    /// Creates the builders' directories on the worker (Buildbot's emulated `setBuilderList`).
    async fn make_builder_dirs(&self, builder_dirs: &[String]) -> Result<(), ConnectionError> {
        let mut paths: Vec<String> = builder_dirs.iter().map(|dir| self.path(&[dir])).collect();
        paths.push(self.path(&["info"]));
        let mut command = self.start_command(Command::Mkdir { paths }, CommandIo::None, None).await?;
        loop {
            match command.next().await {
                CommandEvent::Update(_) => {}
                CommandEvent::Complete { failure: None } => return Ok(()),
                CommandEvent::Complete { failure: Some(message) } => {
                    return Err(ConnectionError::Remote { worker: self.name.clone(), message })
                }
                CommandEvent::Lost => return Err(ConnectionError::Lost(self.name.clone())),
            }
        }
    }

    /// What the worker told about itself, as Buildbot's `workerinfo` shows it (without its environment).
    pub fn info_json(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{json, Value};
        let info = &self.info;
        let mut map = serde_json::Map::new();
        for (k, v) in info.info_files.iter().chain(&info.os) {
            map.insert(k.clone(), Value::String(v.trim_end().to_string()));
        }
        map.insert("version".into(), json!(info.version));
        map.insert("system".into(), json!(info.system));
        map.insert("basedir".into(), json!(info.basedir));
        map.insert("numcpus".into(), json!(info.numcpus));
        map.insert("worker_commands".into(), json!(info.worker_commands));
        map
    }

    /// An absolute path on the worker: its base directory joined with `parts`, with the worker's path rules.
    pub fn path<S: AsRef<str>>(&self, parts: &[S]) -> String {
        self.flavour.join(&self.info.basedir, parts)
    }

    /// Sends a request and waits for the answer.
    pub async fn request(&self, request: MasterRequest) -> Result<Value, ConnectionError> {
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(seq, tx);
        if self.frames.send(encode_request(seq, &request)).await.is_err() {
            lock(&self.pending).remove(&seq);
            return Err(self.lost());
        }
        let response = tokio::select! {
            response = rx => response.map_err(|_| self.lost())?,
            () = self.closed.cancelled() => return Err(self.lost()),
        };
        response.into_result().map_err(|message| ConnectionError::Remote { worker: self.name.clone(), message })
    }

    /// [`request`](Self::request) with a time limit.
    pub async fn request_within(&self, request: MasterRequest, timeout: Duration) -> Result<Value, ConnectionError> {
        tokio::time::timeout(timeout, self.request(request))
            .await
            .map_err(|_| ConnectionError::Timeout { worker: self.name.clone(), timeout })?
    }

    /// Checks that the worker answers (Buildbot pings with `print` before each build).
    pub async fn ping(&self, timeout: Duration) -> Result<(), ConnectionError> {
        self.request_within(MasterRequest::Print { message: "ping".into() }, timeout).await.map(|_| ())
    }

    /// Starts a command on the worker. Its events arrive through the returned handle.
    pub async fn start_command(
        &self,
        command: Command,
        io: CommandIo,
        builder_name: Option<&str>,
    ) -> Result<RemoteCommand, ConnectionError> {
        let id = CommandId::Text(self.next_command.fetch_add(1, Ordering::Relaxed).to_string());
        let (events_tx, events) = mpsc::channel(COMMAND_EVENTS);
        let (upload, download) = match io {
            CommandIo::None => (None, None),
            CommandIo::UploadFile { dest } => (Some(Upload::new(dest, false)), None),
            CommandIo::UploadDirectory { dest } => (Some(Upload::new(dest, true)), None),
            CommandIo::Download { source } => (None, Some(Download::new(source))),
        };
        let slot = CommandSlot { events: events_tx, upload, download };
        self.registrations.send(Registration { id: id.clone(), slot }).await.map_err(|_| self.lost())?;
        let request = MasterRequest::StartCommand {
            command_id: id.clone(),
            command_name: command.name().to_string(),
            args: command.to_args(),
            builder_name: builder_name.map(str::to_string),
        };
        self.request(request).await?;
        Ok(RemoteCommand { id, events })
    }

    /// Asks the worker to interrupt a command; it still completes (with its own `rc`).
    pub async fn interrupt(&self, command: &CommandId, why: &str) -> Result<(), ConnectionError> {
        let request =
            MasterRequest::InterruptCommand { command_id: command.clone(), why: why.to_string(), builder_name: None };
        self.request(request).await.map(|_| ())
    }

    /// Drops the connection.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves when the connection is gone.
    pub async fn lost_signal(&self) {
        self.closed.cancelled().await
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    fn lost(&self) -> ConnectionError {
        ConnectionError::Lost(self.name.clone())
    }
}

/// A command running on a worker.
pub struct RemoteCommand {
    pub id: CommandId,
    events: mpsc::Receiver<CommandEvent>,
}

impl RemoteCommand {
    /// The next event; after `Complete` or `Lost` there are no more.
    pub async fn next(&mut self) -> CommandEvent {
        self.events.recv().await.unwrap_or(CommandEvent::Lost)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The output batching this master asks of a worker: Buildbot's, but output waits at most
/// [`BUFFER_TIMEOUT`] in the worker instead of Buildbot's 5 s.
fn worker_settings() -> WorkerSettings {
    WorkerSettings { buffer_timeout: BUFFER_TIMEOUT, ..WorkerSettings::buildbot_defaults() }
}

/// Seconds a worker may hold a command's output before sending it (`buffer_timeout`): what a live log lags at
/// most on the worker's side. Buildbot's master sends 5, and buildbot-worker obeys it; the Kiln worker caps
/// it at its own (0.1 by default) anyway. Output that comes fast fills the 64 KiB `buffer_size` first, so this
/// only sets how often a slow trickle is sent: at most ten `update` messages a second per command.
pub const BUFFER_TIMEOUT: f64 = 0.1;

/// Sends a keepalive every `interval`; a worker silent past `timeout` is dropped (its builds end RETRY).
async fn keep_alive(conn: std::sync::Weak<WorkerConnection>, liveness: Liveness) {
    let mut tick = tokio::time::interval(liveness.interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(conn) = conn.upgrade() else { return };
        if conn.is_closed() {
            return;
        }
        if let Err(e) = conn.request_within(MasterRequest::Keepalive, liveness.timeout).await {
            tracing::warn!(worker = %conn.name, error = %e, "worker not answering; dropping its connection");
            conn.close();
            return;
        }
    }
}

/// Reads the worker's frames until the connection ends.
async fn read_loop<R>(
    name: String,
    mut stream: R,
    mut registered: mpsc::Receiver<Registration>,
    pending: Pending,
    frames: mpsc::Sender<Vec<u8>>,
    closed: CancellationToken,
) where
    R: Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut commands: HashMap<CommandId, CommandSlot> = HashMap::new();
    loop {
        let message = tokio::select! {
            biased;
            Some(registration) = registered.recv() => {
                commands.insert(registration.id, registration.slot);
                continue;
            }
            () = closed.cancelled() => break,
            message = stream.next() => message,
        };
        let frame = match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Binary(frame))) => frame,
            Some(Ok(Message::Text(_))) => {
                tracing::warn!(worker = %name, "ignoring a text frame");
                continue;
            }
            Some(Ok(_)) => continue,
        };
        let (seq_number, request) = match decode::<WorkerRequest>(&frame) {
            Ok(Incoming::Response(response)) => {
                if let Some(waiter) = lock(&pending).remove(&response.seq_number) {
                    let _ = waiter.send(response);
                }
                continue;
            }
            Ok(Incoming::Request { seq_number, request }) => (seq_number, request),
            Err(e) => {
                tracing::error!(worker = %name, error = %e, "unreadable frame; dropping the connection");
                break;
            }
        };
        let response = match request {
            Ok(request) => match serve(&mut commands, request).await {
                Ok(value) => Response::ok(seq_number, value),
                Err(message) => Response::exception(seq_number, message),
            },
            Err(e) => Response::exception(seq_number, e.to_string()),
        };
        if frames.send(encode_response(&response)).await.is_err() {
            break;
        }
    }
    closed.cancel();
    lock(&pending).clear();
    for (_, slot) in commands.drain() {
        let _ = slot.events.try_send(CommandEvent::Lost);
    }
}

/// Carries out one request of the worker.
async fn serve(commands: &mut HashMap<CommandId, CommandSlot>, request: WorkerRequest) -> Result<Value, String> {
    let id = request.command_id().clone();
    let Some(slot) = commands.get_mut(&id) else {
        return Err(format!("no command {id} is running"));
    };
    match request {
        WorkerRequest::Update { entries, .. } => {
            // A consumer that went away does not stop the command's traffic.
            let _ = slot.events.send(CommandEvent::Update(entries)).await;
            Ok(Value::Nil)
        }
        WorkerRequest::Complete { failure, .. } => {
            if let Some(slot) = commands.remove(&id) {
                let _ = slot.events.send(CommandEvent::Complete { failure }).await;
            }
            Ok(Value::Nil)
        }
        WorkerRequest::UploadFileWrite { data, .. } | WorkerRequest::UploadDirectoryWrite { data, .. } => {
            upload(slot)?.write(&data).await.map(|()| Value::Nil)
        }
        WorkerRequest::UploadFileUtime { access_time, modified_time, .. } => {
            upload(slot)?.utime(access_time, modified_time).await.map(|()| Value::Nil)
        }
        WorkerRequest::UploadFileClose { .. } => upload(slot)?.close().await.map(|()| Value::Nil),
        WorkerRequest::UploadDirectoryUnpack { .. } => upload(slot)?.unpack().await.map(|()| Value::Nil),
        WorkerRequest::ReadFile { length, .. } => match slot.download.as_mut() {
            Some(download) => download.read(length).await.map(Value::Binary),
            None => Err(format!("command {id} has no file to download")),
        },
        WorkerRequest::ReadFileClose { .. } => {
            slot.download = None;
            Ok(Value::Nil)
        }
    }
}

fn upload(slot: &mut CommandSlot) -> Result<&mut Upload, String> {
    slot.upload.as_mut().ok_or_else(|| "this command has no upload".to_string())
}
