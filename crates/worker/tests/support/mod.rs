//! A small master for the worker's end-to-end tests: a real WebSocket server on 127.0.0.1 that speaks the
//! protocol with the real `kiln_protocol` codec, and a real worker (`kiln_worker::run`) connected to it.
//! It answers the worker's transfer requests as a Kiln master will (`update_read_file` returns the data).

#![allow(dead_code)] // each test binary uses a part of it

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiln_protocol::{
    decode, encode_request, encode_response, Command, CommandId, Incoming, MasterRequest, Response, UpdateEntry, Value,
    WorkerRequest, WorkerSettings,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response as HttpResponse};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const WAIT: Duration = Duration::from_secs(30);

/// A listening test master.
pub struct TestMaster {
    listener: TcpListener,
    pub password: String,
    /// The workers' `keepalive` (seconds): a master silent for three of them is taken as gone.
    pub keepalive: f64,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A running worker, in this process, stopped on drop.
pub struct TestWorker {
    pub dir: tempfile::TempDir,
    pub stop: kiln_worker::CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestWorker {
    pub fn basedir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the worker and waits for it to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let handle = self.handle.take().expect("worker running");
        tokio::time::timeout(WAIT, handle).await.expect("worker stops in time").expect("worker task")
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestMaster {
    pub async fn start() -> TestMaster {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        TestMaster { listener, password: "s3cret".into(), keepalive: 30.0, tls: None }
    }

    /// A master serving `wss://` with a certificate for 127.0.0.1 signed by a fresh CA; returns the CA's PEM.
    pub async fn start_tls() -> (TestMaster, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = params.signed_by(&key, &issuer).expect("leaf cert");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server TLS config");
        let mut master = TestMaster::start().await;
        master.tls = Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)));
        (master, ca.pem())
    }

    pub fn address(&self) -> String {
        self.listener.local_addr().expect("local addr").to_string()
    }

    /// Creates a worker directory for this master and runs the worker.
    pub fn spawn_worker(&self) -> TestWorker {
        self.spawn_worker_with(|_| {})
    }

    pub fn spawn_worker_with(&self, edit: impl FnOnce(&mut kiln_worker::NewWorker)) -> TestWorker {
        let dir = tempfile::tempdir().expect("worker dir");
        let mut new = kiln_worker::NewWorker {
            master: self.address(),
            name: "w1".into(),
            password: self.password.clone(),
            tls: self.tls.is_some(),
            ca_file: None,
            admin: "Test <test@example.org>".into(),
            host: "test host".into(),
        };
        edit(&mut new);
        kiln_worker::create(dir.path(), &new).expect("create worker");
        let mut config = kiln_worker::WorkerConfig::load(dir.path()).expect("load worker config");
        config.max_retry_delay = 0.5;
        config.keepalive = self.keepalive;
        let stop = kiln_worker::CancellationToken::new();
        let handle = tokio::spawn(kiln_worker::run(config, stop.clone()));
        TestWorker { dir, stop, handle: Some(handle) }
    }

    /// Waits for the next worker connection, checking its Basic auth like Buildbot's master.
    pub async fn accept(&self) -> Connection {
        let (tcp, _) =
            tokio::time::timeout(WAIT, self.listener.accept()).await.expect("worker connects").expect("accept");
        let check = self.basic_auth();
        let socket: Box<dyn Io> = match &self.tls {
            Some(acceptor) => Box::new(acceptor.accept(tcp).await.expect("TLS handshake")),
            None => Box::new(tcp),
        };
        let ws = tokio_tungstenite::accept_hdr_async(socket, check).await.expect("websocket handshake");
        Connection { ws, next_seq: 0, files: BTreeMap::new(), uploads: BTreeMap::new() }
    }

    /// Accepts a connection and refuses it at the handshake (wrong password on the worker side shows up here).
    pub async fn accept_expecting_refusal(&self) {
        let (tcp, _) =
            tokio::time::timeout(WAIT, self.listener.accept()).await.expect("worker connects").expect("accept");
        let result = tokio_tungstenite::accept_hdr_async(tcp, self.basic_auth()).await;
        assert!(result.is_err(), "the handshake with a wrong password must be refused");
    }

    /// The handshake check of Buildbot's master: `Authorization: Basic base64(w1:password)` or 401.
    // The callback's signature is tungstenite's, large error type included.
    #[allow(clippy::result_large_err)]
    fn basic_auth(&self) -> impl FnOnce(&Request, HttpResponse) -> Result<HttpResponse, ErrorResponse> {
        let expected = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("w1:{}", self.password))
        );
        move |request: &Request, response: HttpResponse| {
            let given = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
            if given == expected {
                Ok(response)
            } else {
                let mut refusal = ErrorResponse::new(Some("unauthorized".into()));
                *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                Err(refusal)
            }
        }
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a command sent until its `complete`.
#[derive(Debug, Default)]
pub struct CommandRun {
    pub entries: Vec<UpdateEntry>,
    /// How many `update` messages carried them.
    pub updates: usize,
    pub failure: Option<String>,
}

impl CommandRun {
    pub fn rc(&self) -> Option<i64> {
        self.entries.iter().find_map(|e| if let UpdateEntry::Rc(rc) = e { Some(*rc) } else { None })
    }

    fn text(&self, pick: impl Fn(&UpdateEntry) -> Option<&kiln_protocol::LineInfo>) -> String {
        self.entries.iter().filter_map(pick).map(|l| l.text.as_str()).collect()
    }

    pub fn stdout(&self) -> String {
        self.text(|e| if let UpdateEntry::Stdout(l) = e { Some(l) } else { None })
    }

    pub fn stderr(&self) -> String {
        self.text(|e| if let UpdateEntry::Stderr(l) = e { Some(l) } else { None })
    }

    pub fn header(&self) -> String {
        self.text(|e| if let UpdateEntry::Header(l) = e { Some(l) } else { None })
    }

    pub fn log(&self, name: &str) -> String {
        self.text(|e| match e {
            UpdateEntry::Log { name: n, lines } if n == name => Some(lines),
            _ => None,
        })
    }

    pub fn failure_reason(&self) -> Option<&str> {
        self.entries.iter().find_map(|e| if let UpdateEntry::FailureReason(r) = e { Some(r.as_str()) } else { None })
    }

    pub fn files(&self) -> Option<&[String]> {
        self.entries.iter().find_map(|e| if let UpdateEntry::Files(f) = e { Some(f.as_slice()) } else { None })
    }
}

/// One accepted worker connection, driven by the test.
pub struct Connection {
    ws: WebSocketStream<Box<dyn Io>>,
    next_seq: i64,
    /// Files served to `download_file`, by command id.
    pub files: BTreeMap<CommandId, Vec<u8>>,
    /// Data received from uploads, by command id.
    pub uploads: BTreeMap<CommandId, Vec<u8>>,
}

/// Something the worker sent.
enum Event {
    Response(Response),
    Request(WorkerRequest),
}

impl Connection {
    /// Buildbot's handshake: attached, worker info, settings.
    pub async fn attach(&mut self, settings: WorkerSettings) -> Value {
        self.request(MasterRequest::Print { message: "attached".into() }).await.expect("print answered");
        let info = self.request(MasterRequest::GetWorkerInfo).await.expect("worker info");
        self.request(MasterRequest::SetWorkerSettings(settings)).await.expect("settings accepted");
        info
    }

    pub async fn send_raw(&mut self, frame: Vec<u8>) {
        self.ws.send(Message::Binary(frame.into())).await.expect("send frame");
    }

    pub async fn send(&mut self, request: MasterRequest) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send_raw(encode_request(seq, &request)).await;
        seq
    }

    /// Sends a request and waits for its response (answering the worker's own requests meanwhile).
    pub async fn request(&mut self, request: MasterRequest) -> Result<Value, String> {
        let seq = self.send(request).await;
        self.response(seq).await
    }

    /// Waits for the response to request `seq`.
    pub async fn response(&mut self, seq: i64) -> Result<Value, String> {
        loop {
            match self.next_event().await {
                Some(Event::Response(r)) if r.seq_number == seq => return r.into_result(),
                Some(_) => {}
                None => panic!("connection closed while waiting for the response to {seq}"),
            }
        }
    }

    /// Starts a command (the worker must accept it).
    pub async fn start(&mut self, id: &str, command: &Command) {
        let request = MasterRequest::StartCommand {
            command_id: id.into(),
            command_name: command.name().into(),
            args: command.to_args(),
            builder_name: Some("b".into()),
        };
        self.request(request).await.expect("command accepted");
    }

    /// Collects a command's updates until its `complete`.
    pub async fn finish(&mut self, id: &str) -> CommandRun {
        self.collect(id, |_| false).await.1
    }

    /// Collects a command's updates until `until` says stop (returns true) or the command completes.
    pub async fn collect(&mut self, id: &str, mut until: impl FnMut(&CommandRun) -> bool) -> (bool, CommandRun) {
        let id = CommandId::from(id);
        let mut run = CommandRun::default();
        loop {
            match self.next_event().await {
                Some(Event::Request(WorkerRequest::Update { command_id, entries })) if command_id == id => {
                    run.updates += 1;
                    run.entries.extend(entries);
                    if until(&run) {
                        return (false, run);
                    }
                }
                Some(Event::Request(WorkerRequest::Complete { command_id, failure })) if command_id == id => {
                    run.failure = failure;
                    return (true, run);
                }
                Some(_) => {}
                None => panic!("connection closed before command {id} completed; so far: {run:?}"),
            }
        }
    }

    pub async fn run(&mut self, id: &str, command: Command) -> CommandRun {
        self.start(id, &command).await;
        self.finish(id).await
    }

    /// Reads the next frame, answering the worker's requests as a master does. `None` when closed.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.expect("the worker sends within the wait");
            let frame = match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Binary(frame))) => frame,
                Some(Ok(_)) => continue,
            };
            match decode::<WorkerRequest>(&frame).expect("the worker sends valid frames") {
                Incoming::Response(response) => return Some(Event::Response(response)),
                Incoming::Request { seq_number, request } => {
                    let request = request.expect("the worker sends known requests");
                    let result = self.serve(&request);
                    self.ws
                        .send(Message::Binary(encode_response(&Response::ok(seq_number, result)).into()))
                        .await
                        .ok()?;
                    return Some(Event::Request(request));
                }
            }
        }
    }

    fn serve(&mut self, request: &WorkerRequest) -> Value {
        match request {
            WorkerRequest::ReadFile { command_id, length } => {
                let file = self.files.entry(command_id.clone()).or_default();
                let n = (*length as usize).min(file.len());
                Value::Binary(file.drain(..n).collect())
            }
            WorkerRequest::UploadFileWrite { command_id, data }
            | WorkerRequest::UploadDirectoryWrite { command_id, data } => {
                self.uploads.entry(command_id.clone()).or_default().extend_from_slice(data);
                Value::Nil
            }
            _ => Value::Nil,
        }
    }

    /// Waits until the worker closes the connection.
    pub async fn closed(&mut self) {
        while self.next_event().await.is_some() {}
    }

    /// Drops the connection abruptly (no close frame).
    pub fn drop_connection(self) {
        drop(self.ws);
    }
}

/// Processes (not zombies) whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(path.join("stat"))
            .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(false);
        if cmdline.contains(marker) && !zombie && !cmdline.contains("cargo") {
            found.push(format!("{}: {cmdline}", path.display()));
        }
    }
    found
}

/// Waits (bounded) until this (test) process has no zombie children; returns those left: children the worker
/// did not reap. (Other tests of this binary run at the same time, so a zombie may exist for a moment.)
pub async fn wait_no_zombie_children() -> Vec<String> {
    wait_empty(zombie_children).await
}

fn zombie_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        if field("PPid:") == me && field("State:").starts_with('Z') {
            found.push(format!("{}: {}", entry.path().display(), field("Name:")));
        }
    }
    found
}

/// Waits (bounded) until no process carries `marker`; returns what is left.
pub async fn wait_no_processes(marker: &str) -> Vec<String> {
    wait_empty(|| processes_with(marker)).await
}

/// Polls `probe` (bounded: 10 s) until it finds nothing; returns what it last found.
async fn wait_empty(probe: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = probe();
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A marker unique to this test process and call, to find a command's processes.
pub fn marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // sleep accepts a fractional number: 1000 + pid-based fraction keeps it unique and parseable.
    format!("{}.{}{}", 3000 + NEXT.fetch_add(1, Ordering::Relaxed), std::process::id(), 7)
}

pub fn path(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_string_lossy().into_owned()
}
