//! Workload 9, notifications: how long from a build's end to its mail being accepted by a real SMTP server
//! (aiosmtpd, from the Buildbot venv) and to its HTTP status push being received by a local recorder, and the
//! master's memory over many builds with three reporters on. Kiln: `[[reporter]]`s `mail`, `http` and `slack`;
//! Buildbot 4.3.0: `MailNotifier`, `HttpStatusPush` and a second `HttpStatusPush` (standing in for the chat
//! webhook), every one reporting every build (`mode = "all"`).
//!
//! N forced builds (1,000; 20 in quick mode) are submitted at once and run one after the other on the one
//! worker. The build's last step appends the wall-clock time to a file as its command ends (`date +%s.%N`): the
//! i-th line is build number i's end, to within the step's own exit. The SMTP sink and the HTTP recorder note
//! the wall-clock time each message arrives; each message names its build number (the mail subject
//! `n<number>`, the push body's `number`). Latency = arrival − end, per build; p50 and p99 over the first 100
//! builds (all of them in quick mode) and over all. The master's RSS is read as the builds go: after the first
//! tenth of them, at the end, and the highest seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _, Result};
use futures_util::future::join_all;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::measure::rss_mib;
use crate::report::{Better, Row, Target};
use crate::systems::{free_port, Builder, Extras, Kind, Proc, System, START_TIMEOUT};
use crate::{figures, Env};

const WORKLOAD: &str = "9 notifications";
const BUILDER: &str = "notify";
/// Builds whose latency the p50/p99 rows of "the first 100" are taken over.
const LATENCY_BUILDS: usize = 100;

/// The SMTP sink: every message accepted is one JSON line `{"t": arrival, "subject": …}`.
const SMTP_SINK: &str = r#"
import asyncio, email, json, sys, time
from aiosmtpd.controller import Controller
port_file, record, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Sink:
    async def handle_DATA(self, server, session, envelope):
        t = time.time()
        subject = email.message_from_bytes(envelope.original_content or envelope.content).get("Subject", "")
        with open(record, "a") as out:
            out.write(json.dumps({"t": t, "subject": str(subject)}) + "\n")
        return "250 OK"
controller = Controller(Sink(), hostname="127.0.0.1", port=port)
controller.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
import os
os.rename(port_file + ".tmp", port_file)
asyncio.get_event_loop().run_forever()
"#;

/// What one system did.
struct Figures {
    /// Latency per build number, ms.
    mail: BTreeMap<i64, f64>,
    http: BTreeMap<i64, f64>,
    rss_early: Option<f64>,
    rss_end: Option<f64>,
    rss_max: Option<f64>,
    builds: usize,
}

pub async fn run(env: &Env) -> Vec<Row> {
    let builds = if env.quick { 20 } else { 1000 };
    let mut per_kind = Vec::new();
    for kind in [Kind::Kiln, Kind::Buildbot] {
        per_kind.push(figures(WORKLOAD, kind, measure(env, kind, builds).await));
    }
    let first = LATENCY_BUILDS.min(builds);
    let pick = |k: usize, f: &dyn Fn(&Figures) -> Option<f64>| per_kind[k].as_ref().and_then(f);
    let row = |metric: String, unit: &'static str, target, f: &dyn Fn(&Figures) -> Option<f64>| Row {
        workload: WORKLOAD,
        metric,
        unit,
        better: Better::Lower,
        kiln: pick(0, f),
        buildbot: pick(1, f),
        target,
    };
    let lat = |which: fn(&Figures) -> &BTreeMap<i64, f64>, n: usize, q: f64| {
        move |f: &Figures| percentile(&which(f).values().take(n).copied().collect::<Vec<_>>(), q)
    };
    fn mail(f: &Figures) -> &BTreeMap<i64, f64> {
        &f.mail
    }
    fn http(f: &Figures) -> &BTreeMap<i64, f64> {
        &f.http
    }
    vec![
        row(
            format!("build end → mail accepted (SMTP), first {first} builds: p50"),
            "ms",
            Target::None,
            &lat(mail, first, 0.5),
        ),
        row(
            format!("build end → mail accepted (SMTP), first {first} builds: p99"),
            "ms",
            Target::None,
            &lat(mail, first, 0.99),
        ),
        row(
            format!("build end → HTTP status received, first {first} builds: p50"),
            "ms",
            Target::None,
            &lat(http, first, 0.5),
        ),
        row(
            format!("build end → HTTP status received, first {first} builds: p99"),
            "ms",
            Target::None,
            &lat(http, first, 0.99),
        ),
        row(
            format!("build end → mail accepted, all {builds} builds: p99"),
            "ms",
            Target::None,
            &lat(mail, usize::MAX, 0.99),
        ),
        row(
            format!("build end → HTTP status received, all {builds} builds: p99"),
            "ms",
            Target::None,
            &lat(http, usize::MAX, 0.99),
        ),
        row(format!("master RSS after {} builds, 3 reporters", builds / 10), "MiB", Target::None, &|f| f.rss_early),
        row(format!("master RSS after {builds} builds, 3 reporters"), "MiB", Target::None, &|f| f.rss_end),
        row(format!("master RSS growth from build {} to {builds}", builds / 10), "MiB", Target::AtMost(20.0), &|f| {
            Some(f.rss_end? - f.rss_early?)
        }),
        row(format!("master RSS highest over {builds} builds"), "MiB", Target::None, &|f| f.rss_max),
    ]
}

/// The `q` quantile of `values` (nearest rank), `None` if empty.
fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A local HTTP/1.1 server that answers `200 {}` to everything and notes (path, arrival time, body).
#[derive(Clone, Default)]
struct Recorder {
    arrived: Arc<Mutex<Vec<(String, f64, Value)>>>,
}

impl Recorder {
    async fn start() -> Result<(Recorder, u16)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let recorder = Recorder::default();
        let serving = recorder.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(socket));
            }
        });
        Ok((recorder, port))
    }

    async fn serve(self, mut socket: tokio::net::TcpStream) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let head_end = loop {
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            let length: usize = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let t = now_seconds();
            let body = serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
            buffer.drain(..head_end + length);
            self.arrived.lock().unwrap_or_else(PoisonError::into_inner).push((path, t, body));
            let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    /// How many requests came to `path`.
    fn count(&self, path: &str) -> usize {
        self.arrived.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|(p, _, _)| p == path).count()
    }

    /// Build number → arrival time of the first finished-build push to `path`.
    fn finished(&self, path: &str) -> BTreeMap<i64, f64> {
        let mut out = BTreeMap::new();
        for (p, t, body) in self.arrived.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            if p != path {
                continue;
            }
            // Kiln: {"event": "build.finished", "build": {"number"}}; Buildbot: the build dict, `complete`.
            let number = match body.get("build") {
                Some(build) if body["event"] == "build.finished" => build["number"].as_i64(),
                Some(_) => None,
                None if body["complete"] == Value::Bool(true) => body["number"].as_i64(),
                None => None,
            };
            if let Some(number) = number {
                out.entry(number).or_insert(*t);
            }
        }
        out
    }
}

/// The SMTP sink, from the venv's Python (aiosmtpd).
async fn start_smtp(env: &Env, dir: &Path) -> Result<(Proc, u16, PathBuf)> {
    let script = dir.join("smtp_sink.py");
    std::fs::write(&script, SMTP_SINK)?;
    let (port_file, record) = (dir.join("smtp.port"), dir.join("mail.jsonl"));
    let mut command = Command::new(env.venv.join("bin/python"));
    command.arg(&script).arg(&port_file).arg(&record).arg(free_port()?.to_string());
    let sink = Proc::spawn("smtp sink", &mut command, &dir.join("smtp.out"), vec![])?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            if let Ok(port) = text.trim().parse() {
                return Ok((sink, port, record));
            }
        }
        if Instant::now() > deadline {
            bail!("the SMTP sink did not start:\n{}", sink.tails());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Build number → arrival time of its mail (`n<number>` subjects).
fn mails(record: &Path) -> BTreeMap<i64, f64> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(mail) = serde_json::from_str::<Value>(line) else { continue };
        let number = mail["subject"].as_str().and_then(|s| s.trim().strip_prefix('n')).and_then(|n| n.parse().ok());
        if let (Some(number), Some(t)) = (number, mail["t"].as_f64()) {
            out.entry(number).or_insert(t);
        }
    }
    out
}

fn extras(kind: Kind, smtp: u16, http: u16) -> Extras {
    let mut extras = Extras::default();
    match kind {
        Kind::Kiln => {
            extras.kiln_toml = format!(
                "
[[reporter]]
name = \"mail\"
type = \"mail\"
from = \"bench@example.org\"
smtp_url = \"smtp://127.0.0.1:{smtp}\"
send_to_interested_users = false
extra_recipients = [\"dev@example.org\"]
mode = \"all\"
subject = \"n{{{{ build.number }}}}\"
template = \"done\"
log_lines = 0

[[reporter]]
name = \"push\"
type = \"http\"
url = \"http://127.0.0.1:{http}/hook\"
mode = \"all\"

[[reporter]]
name = \"chat\"
type = \"slack\"
webhook_url = \"http://127.0.0.1:{http}/chat\"
mode = \"all\"
"
            );
        }
        Kind::Buildbot => {
            extras.buildbot_cfg = format!(
                "
from buildbot.plugins import reporters
from buildbot.reporters.generators.build import BuildStatusGenerator
from buildbot.reporters.message import MessageFormatter
c['services'] = [
    reporters.MailNotifier(fromaddr='bench@example.org', relayhost='127.0.0.1', smtpPort={smtp},
        sendToInterestedUsers=False, extraRecipients=['dev@example.org'],
        generators=[BuildStatusGenerator(mode='all',
            message_formatter=MessageFormatter(template='done', subject='n{{{{ build[\"number\"] }}}}'))]),
    reporters.HttpStatusPush(name='push', serverUrl='http://127.0.0.1:{http}/hook'),
    reporters.HttpStatusPush(name='chat', serverUrl='http://127.0.0.1:{http}/chat'),
]
"
            );
        }
    }
    extras
}

async fn measure(env: &Env, kind: Kind, builds: usize) -> Result<Figures> {
    let dir = tempfile::Builder::new().prefix("notify-").tempdir_in(&env.scratch)?;
    let (_sink, smtp_port, record) = start_smtp(env, dir.path()).await?;
    let (recorder, http_port) = Recorder::start().await?;
    let ends = dir.path().join("ends.txt");
    let step = format!("echo built; date +%s.%N >> {}", ends.display());
    let builder = Builder::new(BUILDER, &[("build", &step)]);
    let system = System::start_with(env, kind, &[builder], &extras(kind, smtp_port, http_port)).await?;
    let builder_id = system.builder_id(BUILDER).await?;
    let pid = system.master_pid().context("the master's pid")?;

    let started = Instant::now();
    let submissions = (0..builds).map(|_| system.force(BUILDER, builder_id));
    let brids: Vec<i64> = join_all(submissions).await.into_iter().collect::<Result<_>>()?;
    ensure!(brids.len() == builds);
    let (mut rss_early, mut rss_max) = (None, None::<f64>);
    let deadline = Duration::from_secs(if env.quick { 300 } else { 3600 });
    loop {
        let done = std::fs::read_to_string(&ends).map(|t| t.lines().count()).unwrap_or(0);
        if let Some(rss) = rss_mib(pid) {
            rss_max = Some(rss_max.map_or(rss, |m| m.max(rss)));
            if rss_early.is_none() && done >= builds / 10 {
                rss_early = Some(rss);
            }
        }
        let delivered = mails(&record).len().min(recorder.finished("/hook").len());
        if done >= builds && delivered >= builds {
            break;
        }
        if started.elapsed() > deadline {
            bail!("after {deadline:?}: {done} builds ended, {delivered} notified\n{}", system.diagnostics());
        }
        // A sampling interval for the RSS, not a wait for an event.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rss_end = rss_mib(pid);
    let ended: Vec<f64> = std::fs::read_to_string(&ends)?.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let latencies = |arrived: BTreeMap<i64, f64>| -> BTreeMap<i64, f64> {
        arrived
            .into_iter()
            .filter_map(|(number, t)| {
                let end = ended.get(usize::try_from(number).ok()?.checked_sub(1)?)?;
                Some((number, (t - end) * 1e3))
            })
            .collect()
    };
    let figures = Figures {
        mail: latencies(mails(&record)),
        http: latencies(recorder.finished("/hook")),
        rss_early,
        rss_end,
        rss_max,
        builds,
    };
    let chat = recorder.count("/chat");
    println!(
        "  {kind:?}: {} builds in {:.1} s; {} mails, {} pushes, {chat} chat posts; RSS {:.1} → {:.1} MiB (max {:.1})",
        figures.builds,
        started.elapsed().as_secs_f64(),
        figures.mail.len(),
        figures.http.len(),
        rss_early.unwrap_or(0.0),
        rss_end.unwrap_or(0.0),
        rss_max.unwrap_or(0.0),
    );
    Ok(figures)
}
