//! A small Server-Sent Events client: Kiln's `/api/v2/events` and `/api/v2/logs/{id}/follow`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use tokio::sync::oneshot;

/// Wall-clock seconds since the epoch.
pub fn wall() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Reads the SSE stream at `url`, tells `ready` once the response has begun, then calls `each(event, data,
/// received_at)` for every event (`received_at` is [`wall`] when its bytes arrived) until it returns true.
pub async fn read(
    http: reqwest::Client,
    url: String,
    ready: oneshot::Sender<()>,
    mut each: impl FnMut(&str, &Value, f64) -> Result<bool>,
) -> Result<()> {
    let mut response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    ensure!(response.status().is_success(), "GET {url}: HTTP {}", response.status());
    let _ = ready.send(());
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.with_context(|| format!("reading {url}"))? {
        let at = wall();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let message: Vec<u8> = buffer.drain(..end + 2).collect();
            let message = String::from_utf8_lossy(&message);
            let (mut event, mut data) = (String::from("message"), String::new());
            for line in message.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(text) = line.strip_prefix("data:") {
                    data.push_str(text.trim_start());
                }
            }
            if data.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&data).with_context(|| format!("{url}: event data {data}"))?;
            if each(&event, &data, at)? {
                return Ok(());
            }
        }
    }
    bail!("{url}: the stream ended before the end its reader waits for")
}
