//! One connection's life: answer the master's requests, run its commands, and when the connection ends —
//! whatever the reason — stop every command it started, so that no process outlives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiln_protocol::{
    decode, encode_response, Command, CommandId, Incoming, MasterRequest, Response, Value, WorkerSettings,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::{self, CommandContext};
use crate::config::WorkerConfig;
use crate::connection::Socket;
use crate::lines::NewlineRule;
use crate::link::MasterLink;
use crate::updates::UpdateSender;

/// Frames queued for the socket.
const OUTGOING: usize = 64;
/// The longest wait for running commands to end once they were told to stop.
const STOP_WAIT: Duration = Duration::from_secs(120);

/// How a session ended.
#[derive(Debug, PartialEq)]
pub(crate) enum SessionEnd {
    /// The connection was lost or closed; try again.
    Lost(String),
    /// The master sent `shutdown`.
    ShutdownByMaster,
    /// The worker is stopping (a signal).
    Stopped,
}

type Running = Arc<Mutex<HashMap<CommandId, CancellationToken>>>;

struct Session<'a> {
    config: &'a WorkerConfig,
    link: MasterLink,
    frames: mpsc::Sender<Vec<u8>>,
    settings: WorkerSettings,
    rule: NewlineRule,
    running: Running,
    commands: TaskTracker,
    /// Parent of every command's interrupt.
    stop_commands: CancellationToken,
    /// Whether the master sent a request: it attached this worker (a refused connection hears nothing).
    attached: bool,
}

/// Serves one connection until it ends; says how, and whether the master attached the worker (sent it a
/// request) on it.
pub(crate) async fn serve(socket: Socket, config: &WorkerConfig, stop: &CancellationToken) -> (SessionEnd, bool) {
    let (mut sink, mut stream) = socket.split();
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(OUTGOING);
    let (pings, mut ping_rx) = mpsc::channel::<Message>(4);
    let writer = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                frame = outgoing.recv() => match frame {
                    Some(frame) => Message::Binary(frame.into()),
                    None => break,
                },
                Some(control) = ping_rx.recv() => control,
            };
            let closing = matches!(message, Message::Close(_));
            if let Err(e) = sink.send(message).await {
                return Err(e.to_string());
            }
            if closing {
                break;
            }
        }
        let _ = sink.close().await;
        Ok(())
    });
    let defaults = config.capped(WorkerSettings::buildbot_defaults());
    let rule = match NewlineRule::new(&defaults) {
        Ok(rule) => rule,
        Err(e) => return (SessionEnd::Lost(format!("built-in line settings are invalid: {e}")), false),
    };
    let mut session = Session {
        config,
        link: MasterLink::new(frames.clone()),
        frames,
        settings: defaults,
        rule,
        running: Arc::default(),
        commands: TaskTracker::new(),
        stop_commands: CancellationToken::new(),
        attached: false,
    };

    let keepalive = config.keepalive();
    let mut last_heard = Instant::now();
    let mut ping_timer = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    let mut writer = writer;
    // Whether the loop saw the writer end: a finished JoinHandle must not be polled again (it panics).
    let mut writer_ended = false;
    let end = loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = pings.send(Message::Close(None)).await;
                break SessionEnd::Stopped;
            }
            result = &mut writer => {
                writer_ended = true;
                break SessionEnd::Lost(match result {
                    Ok(Ok(())) => "connection closed".to_string(),
                    Ok(Err(e)) => format!("sending to the master failed: {e}"),
                    Err(e) => format!("connection writer failed: {e}"),
                });
            }
            _ = ping_timer.tick() => {
                if last_heard.elapsed() > keepalive * 3 {
                    break SessionEnd::Lost(format!("no word from the master for {:?}", last_heard.elapsed()));
                }
                let _ = pings.try_send(Message::Ping(Vec::new().into()));
            }
            message = stream.next() => {
                last_heard = Instant::now();
                match message {
                    None => break SessionEnd::Lost("connection closed by the master".into()),
                    Some(Err(e)) => break SessionEnd::Lost(format!("connection error: {e}")),
                    Some(Ok(Message::Close(frame))) => {
                        break SessionEnd::Lost(format!("the master closed the connection ({frame:?})"))
                    }
                    Some(Ok(Message::Binary(frame))) => match session.handle(&frame).await {
                        Ok(true) => break SessionEnd::ShutdownByMaster,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "unreadable frame from the master; closing the connection");
                            let _ = pings.send(Message::Close(None)).await;
                            break SessionEnd::Lost(format!("protocol error: {e}"));
                        }
                    },
                    Some(Ok(Message::Text(_))) => tracing::warn!("ignoring a text frame from the master"),
                    Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                }
            }
        }
    };
    session.finish().await;
    // Let a close frame out, then drop the connection.
    drop(pings);
    if !writer_ended {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
        writer.abort();
    }
    (end, session.attached)
}

impl Session<'_> {
    /// Handles one frame; `Ok(true)` when the master asked the worker to shut down.
    async fn handle(&mut self, frame: &[u8]) -> Result<bool, kiln_protocol::DecodeError> {
        let (seq_number, request) = match decode::<MasterRequest>(frame)? {
            Incoming::Response(response) => {
                self.link.resolve(response);
                return Ok(false);
            }
            Incoming::Request { seq_number, request } => (seq_number, request),
        };
        self.attached = true;
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(error = %e, "cannot carry out a request of the master");
                self.respond(Response::exception(seq_number, e.to_string())).await;
                return Ok(false);
            }
        };
        let mut shutdown = false;
        let mut start = None;
        let result: Result<Value, String> = match request {
            MasterRequest::Print { message } => {
                tracing::info!("message from master: {message}");
                Ok(Value::Nil)
            }
            MasterRequest::Keepalive => Ok(Value::Nil),
            MasterRequest::GetWorkerInfo => Ok(crate::info::collect(self.config).to_value()),
            MasterRequest::SetWorkerSettings(settings) => NewlineRule::new(&settings).map(|rule| {
                self.rule = rule;
                self.settings = self.config.capped(settings);
                Value::Nil
            }),
            MasterRequest::StartCommand { command_id, command_name, args, .. } => {
                self.prepare(command_id, &command_name, &args).map(|ready| {
                    start = Some(ready);
                    Value::Nil
                })
            }
            MasterRequest::InterruptCommand { command_id, why, .. } => {
                let token = self.lock_running().get(&command_id).cloned();
                match token {
                    Some(token) => {
                        tracing::info!(id = %command_id, %why, "interrupting command");
                        token.cancel();
                    }
                    None => tracing::debug!(id = %command_id, "interrupt for a command that is not running"),
                }
                Ok(Value::Nil)
            }
            MasterRequest::Shutdown => {
                tracing::info!("the master asked this worker to shut down");
                shutdown = true;
                Ok(Value::Nil)
            }
        };
        let response = match result {
            Ok(value) => Response::ok(seq_number, value),
            Err(message) => {
                tracing::warn!(%message, "request refused");
                Response::exception(seq_number, message)
            }
        };
        self.respond(response).await;
        // Started after its response is on its way, so that the master hears "started" before any update.
        if let Some((command, ctx)) = start {
            self.launch(command, ctx);
        }
        Ok(shutdown)
    }

    async fn respond(&self, response: Response) {
        let _ = self.frames.send(encode_response(&response)).await;
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<CommandId, CancellationToken>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads and registers a command, or says why it cannot start.
    fn prepare(&self, id: CommandId, name: &str, args: &Value) -> Result<(Command, CommandContext), String> {
        let command = Command::parse(name, args).map_err(|e| e.to_string())?;
        if let Some(refusal) = commands::refuse(&command) {
            return Err(refusal);
        }
        let interrupt = self.stop_commands.child_token();
        {
            let mut running = self.lock_running();
            if running.contains_key(&id) {
                return Err(format!("a command with id {id} is already running"));
            }
            running.insert(id.clone(), interrupt.clone());
        }
        tracing::info!(id = %id, command = name, "starting command");
        let updates = UpdateSender::start(id.clone(), &self.settings, self.rule.clone(), self.link.clone());
        let records = crate::leftovers::Records::new(&self.config.basedir);
        Ok((command, CommandContext { command_id: id, link: self.link.clone(), updates, interrupt, records }))
    }

    fn launch(&self, command: Command, ctx: CommandContext) {
        let running = self.running.clone();
        self.commands.spawn(async move {
            let id = ctx.command_id.clone();
            commands::execute(command, ctx).await;
            running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
        });
    }

    /// The connection is ending: stop every command and wait for them (bounded). The link is closed first, so
    /// that no command waits for an answer that will not come (its last updates and `complete` are dropped: the
    /// master has ended or will end the build anyway).
    async fn finish(&mut self) {
        let count = self.lock_running().len();
        if count > 0 {
            tracing::warn!(count, "stopping the commands of this connection");
        }
        self.link.close();
        self.stop_commands.cancel();
        self.commands.close();
        if tokio::time::timeout(STOP_WAIT, self.commands.wait()).await.is_err() {
            tracing::error!("commands did not stop within {STOP_WAIT:?}");
        }
    }
}
