//! The path of a command's status to the master: raw output is split into lines, lines and other entries are
//! batched by the connection's settings (size and time), and batches go out as `update` requests.
//!
//! Each running command has one pump task; the command talks to it through an [`UpdateSender`]. The channel
//! between them is bounded, so a command that outputs faster than the master reads is slowed down rather than
//! buffered without limit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_protocol::{CommandId, LineInfo, UpdateEntry, WorkerRequest, WorkerSettings};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::buffer::UpdateBuffer;
use crate::lines::{LineSplitter, NewlineRule};
use crate::link::MasterLink;

/// How many messages a command may queue ahead of its pump.
const QUEUE: usize = 32;

/// An output stream of a command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    Header,
    /// A watched log file, by its log name.
    Log(String),
}

enum Input {
    Output { stream: Stream, data: Vec<u8> },
    Entry(UpdateEntry),
    Flush(oneshot::Sender<()>),
}

/// Seconds since the epoch, as Buildbot stamps lines.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A command's handle on its update pump. Sending never fails: once the connection is gone, updates are
/// dropped, and the command learns of it through its interrupt.
#[derive(Clone)]
pub struct UpdateSender {
    tx: mpsc::Sender<Input>,
}

impl UpdateSender {
    /// Starts the pump of one command.
    pub(crate) fn start(
        command_id: CommandId,
        settings: &WorkerSettings,
        rule: NewlineRule,
        link: MasterLink,
    ) -> UpdateSender {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pump = Pump {
            command_id,
            link,
            rule,
            splitters: Vec::new(),
            buffer: UpdateBuffer::new(usize::try_from(settings.buffer_size).unwrap_or(usize::MAX)),
            timeout: Duration::try_from_secs_f64(settings.buffer_timeout).unwrap_or(Duration::from_secs(5)),
            deadline: None,
            connected: true,
        };
        tokio::spawn(pump.run(rx));
        UpdateSender { tx }
    }

    /// Raw output of a stream; split into lines at the pump.
    pub async fn output(&self, stream: Stream, data: Vec<u8>) {
        if !data.is_empty() {
            let _ = self.tx.send(Input::Output { stream, data }).await;
        }
    }

    pub async fn header(&self, text: impl Into<String>) {
        self.output(Stream::Header, text.into().into_bytes()).await
    }

    pub async fn stderr(&self, text: impl Into<String>) {
        self.output(Stream::Stderr, text.into().into_bytes()).await
    }

    /// A non-line entry (`rc`, `elapsed`, `files`, `stat`, `failure_reason`…).
    pub async fn entry(&self, entry: UpdateEntry) {
        let _ = self.tx.send(Input::Entry(entry)).await;
    }

    /// Ends partial lines and sends everything buffered; returns once it is on its way to the master.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Input::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Pump {
    command_id: CommandId,
    link: MasterLink,
    rule: NewlineRule,
    /// One line splitter per stream, in order of first use (few streams: a Vec beats a map).
    splitters: Vec<(Stream, LineSplitter)>,
    buffer: UpdateBuffer,
    timeout: Duration,
    /// When the buffer must be sent even if not full.
    deadline: Option<Instant>,
    connected: bool,
}

impl Pump {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        loop {
            let input = match self.deadline {
                Some(deadline) => tokio::select! {
                    input = rx.recv() => input,
                    () = tokio::time::sleep_until(deadline) => {
                        self.send_buffer().await;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            match input {
                Some(Input::Output { stream, data }) => {
                    let time = now();
                    if let Some(lines) = self.splitter(&stream).push(&data, time) {
                        self.push(entry_for(stream, lines)).await;
                    }
                }
                Some(Input::Entry(entry)) => self.push(entry).await,
                Some(Input::Flush(done)) => {
                    self.flush().await;
                    let _ = done.send(());
                }
                None => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    fn splitter(&mut self, stream: &Stream) -> &mut LineSplitter {
        let index = match self.splitters.iter().position(|(s, _)| s == stream) {
            Some(index) => index,
            None => {
                self.splitters.push((stream.clone(), LineSplitter::new(self.rule.clone())));
                self.splitters.len() - 1
            }
        };
        &mut self.splitters[index].1
    }

    async fn push(&mut self, entry: UpdateEntry) {
        for message in self.buffer.push(entry) {
            self.send(message).await;
        }
        if self.buffer.is_empty() {
            self.deadline = None;
        } else if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.timeout);
        }
    }

    async fn flush(&mut self) {
        let time = now();
        let partial: Vec<UpdateEntry> = self
            .splitters
            .iter_mut()
            .filter_map(|(stream, splitter)| splitter.finish(time).map(|lines| entry_for(stream.clone(), lines)))
            .collect();
        for entry in partial {
            self.push(entry).await;
        }
        self.send_buffer().await;
    }

    async fn send_buffer(&mut self) {
        self.deadline = None;
        if let Some(message) = self.buffer.take() {
            self.send(message).await;
        }
    }

    async fn send(&mut self, entries: Vec<UpdateEntry>) {
        if !self.connected {
            return;
        }
        let request = WorkerRequest::Update { command_id: self.command_id.clone(), entries };
        if self.link.send(request).await.is_err() {
            // The connection is gone; the command is being interrupted. Drop what remains.
            self.connected = false;
        }
    }
}

fn entry_for(stream: Stream, lines: LineInfo) -> UpdateEntry {
    match stream {
        Stream::Stdout => UpdateEntry::Stdout(lines),
        Stream::Stderr => UpdateEntry::Stderr(lines),
        Stream::Header => UpdateEntry::Header(lines),
        Stream::Log(name) => UpdateEntry::Log { name, lines },
    }
}
