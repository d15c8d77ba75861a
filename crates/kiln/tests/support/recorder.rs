//! A local HTTP server standing in for Slack, Mattermost, Discord, Matrix, the forges and webhook receivers: it
//! records every request (method, path, headers, body) and answers from a script (status, headers, body, or a
//! hang), then `201 {"id": 1}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Read the request and never answer.
    pub hang: bool,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer { status, headers: Vec::new(), body: "{}".into(), hang: false }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &str) -> Answer {
        self.body = body.into();
        self
    }

    pub fn hang() -> Answer {
        Answer { hang: true, ..Answer::status(200) }
    }
}

/// A request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{} {}: not JSON ({e})", self.method, self.path))
    }
}

struct State {
    script: Vec<Answer>,
    requests: Vec<Request>,
}

/// The running recorder; it stops when dropped.
pub struct Recorder {
    pub url: String,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Listens on 127.0.0.1 and answers `script` in order, then 201.
    pub async fn start(script: Vec<Answer>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the recorder");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(State { script, requests: Vec::new() }));
        let arrived = Arc::new(Notify::new());
        let (s, a) = (state.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                tokio::spawn(serve(socket, s.clone(), a.clone()));
            }
        });
        Recorder { url, state, arrived, task }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("recorder state").requests.clone()
    }

    /// Waits until `n` requests have arrived (at most `timeout`), and returns them all.
    pub async fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{} of {n} requests arrived within {timeout:?}: {requests:#?}", requests.len());
            }
        }
    }
}

async fn serve(mut socket: tokio::net::TcpStream, state: Arc<Mutex<State>>, arrived: Arc<Notify>) {
    let mut buffer = Vec::new();
    loop {
        // One request: the head, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let path = first.next().unwrap_or("").to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        let answer = {
            let mut state = state.lock().expect("recorder state");
            state.requests.push(Request { method, path, headers, body, at: Instant::now() });
            if state.script.is_empty() {
                Answer::status(201).body("{\"id\": 1}")
            } else {
                state.script.remove(0)
            }
        };
        arrived.notify_waiters();
        if answer.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
            answer.status,
            answer.body.len()
        );
        for (name, value) in &answer.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&answer.body);
        if socket.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
