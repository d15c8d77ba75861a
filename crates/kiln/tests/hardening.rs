//! Fault tests of a master that no client can wear down, and of a worker that leaves no half-build running:
//! floods of idle and half-sent connections against both ports of a master limited to 1024 file descriptors
//! (systemd's default soft limit), a worker SIGKILLed mid-command, and a worker whose master is SIGKILLed again and
//! again (it comes back each time, and survives a kill while it sends). Every wait is bounded; nothing is timed.
//!
//!     cargo test -p kiln --test hardening

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::buildbot::{results, WorkerKind};
use support::kiln::{toml_str, KilnMaster};
use support::{processes_matching, unique_marker, wait_no_processes, KillOnDrop};

/// The master's file-descriptor limit in these tests.
const FD_LIMIT: u64 = 1024;
/// Connections each flood opens: more than the master has descriptors (the figure).
const FLOOD: usize = 1074;
/// A generous bound for the API to answer, for the flood's sockets to be closed, for processes to go.
const GENEROUS: Duration = Duration::from_secs(60);

/// Lets this test process open both floods whatever its own soft limit.
fn raise_own_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(soft >= 4 * FLOOD as u64, "this test needs {} descriptors, the hard limit is {soft}", 4 * FLOOD);
}

/// Opens `FLOOD` connections to `port`, each sending what `send(i)` says (nothing for an idle one).
async fn flood(port: u16, send: impl Fn(usize) -> &'static [u8]) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let bytes = send(i);
        if !bytes.is_empty() {
            // The master may already have closed a replaced connection: that is what is tested later.
            let _ = socket.write_all(bytes).await;
        }
        sockets.push(socket);
    }
    sockets
}

/// Waits (bounded) until the master closed every socket: each read reaches the end (or an error).
async fn wait_all_closed(master: &KilnMaster, sockets: Vec<TcpStream>, what: &str) {
    let deadline = tokio::time::Instant::now() + GENEROUS;
    let mut open = 0;
    for mut socket in sockets {
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout_at(deadline, async {
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        open += usize::from(closed.is_err());
    }
    if open > 0 {
        master.fail(&format!("{open} of {FLOOD} {what} connections still open after {GENEROUS:?}"));
    }
}

/// Waits (bounded) until the API answers `GET /builders`.
async fn api_answers(master: &KilnMaster, when: &str) {
    master.wait_for(&format!("the API to answer {when}"), GENEROUS, async || master.try_get("builders").await).await;
}

/// The lines of the master's output (all its runs) that contain `needle`.
fn master_log_lines(master: &KilnMaster, needle: &str) -> usize {
    let mut count = 0;
    for run in 1.. {
        let Ok(text) = std::fs::read_to_string(master.test_dir().join(format!("master-{run}.out"))) else { break };
        count += text.lines().filter(|line| line.contains(needle)).count();
    }
    count
}

#[tokio::test]
async fn floods_of_idle_and_half_sent_connections_on_both_ports_do_not_starve_the_api() {
    raise_own_fd_limit();
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("hello", "[[builder.step]]\nname = \"hi\"\ncommand = \"echo hi\"\n")
        .worker_listener_keys("handshake_timeout = 2")
        .web_keys("header_timeout = 2")
        .fd_limit(FD_LIMIT)
        .start()
        .await;
    assert_eq!(master_log_lines(&master, "connection caps lowered to fit the file-descriptor limit"), 1);

    // The worker port: idle TCP connections, no handshake. A real worker still gets in and builds.
    let idle_workers = flood(master.worker_port(), |_| b"").await;
    api_answers(&master, "with the worker port flooded").await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("hello").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "{request:#}");
    wait_all_closed(&master, idle_workers, "idle worker-port").await;

    // The web port: three kinds of slowloris (silent, a head never finished, a keep-alive connection left
    // idle after its answer).
    let web_port: u16 = master.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("web port");
    let slow = flood(web_port, |i| match i % 3 {
        0 => b"",
        1 => b"GET /api/v2/builders HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1",
        _ => b"GET /api/v2 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    })
    .await;
    api_answers(&master, "with the web port flooded").await;
    let brid = master.force("hello").await;
    master.wait_request_complete(brid).await;
    wait_all_closed(&master, slow, "slow web").await;
    api_answers(&master, "after the floods").await;

    // The caps kept the master under its descriptor limit: accept never failed, and nothing spun.
    let failures = master_log_lines(&master, "connection failed");
    assert!(failures < 20, "{failures} log lines of failed accepts");
    assert_eq!(master.master_process().and_then(|m| m.exit_status()), None, "the master still runs");
}

#[tokio::test]
async fn a_sigkilled_worker_leaves_no_process_of_its_command_once_it_starts_again() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = flags.path().join("ran-once");
    // The first run leaves the shell (the group's leader) waiting on one sleep with another in the background;
    // the rerun after the kill succeeds at once.
    let command = format!(
        "if [ -e '{flag}' ]; then echo second-run; else touch '{flag}'; sleep {marker}1 & sleep {marker}2; fi",
        flag = flag.display()
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("long", &format!("[[builder.step]]\nname = \"work\"\ncommand = {}\ntimeout = 0\n", toml_str(&command)))
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let brid = master.force("long").await;
    let sleeps = format!("sleep {marker}");
    master
        .wait_for("both sleeps to run", GENEROUS, async || (processes_matching(&sleeps).len() >= 2).then_some(()))
        .await;
    let records = master.worker_dir("w").join(".kiln-commands");
    assert_eq!(std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0), 1, "the running command is recorded");

    master.kill_worker("w", Signal::SIGKILL).await;
    // The group's leader (the shell) dies with the worker.
    let leader = format!("{marker}1 & sleep");
    if let Err(left) = wait_no_processes(&leader, GENEROUS).await {
        master.fail(&format!("the command's shell outlived its SIGKILLed worker: {left:#?}"));
    }

    // The restarted worker kills the rest of the group before it takes any work, and the build runs again.
    master.start_worker(WorkerKind::Kiln, "w").await;
    if let Err(left) = wait_no_processes(&sleeps, GENEROUS).await {
        master.fail(&format!("the killed worker's sleeps outlived its restart: {left:#?}"));
    }
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "{request:#}");
    let builds = master.builds_of_request(brid).await;
    assert_eq!(builds.first().map(|b| master.results(b)), Some(results::RETRY), "{builds:#?}");
    assert_eq!(std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0), 0, "no record is left");
}

#[tokio::test]
async fn a_stopped_worker_is_lost_after_its_pings_and_kills_its_command_when_it_resumes() {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = flags.path().join("ran-once");
    let command = format!(
        "if [ -e '{flag}' ]; then echo second-run; else touch '{flag}'; sleep {marker}; fi",
        flag = flag.display()
    );
    // The harness's pings: every second, lost after 3 s without an answer.
    let mut master = KilnMaster::builder()
        .worker("w1", "pw")
        .worker("w2", "pw")
        .builder("long", &format!("[[builder.step]]\nname = \"work\"\ncommand = {}\ntimeout = 0\n", toml_str(&command)))
        .start()
        .await;
    for name in ["w1", "w2"] {
        master.start_worker(WorkerKind::Kiln, name).await;
        master.wait_worker_connected(name).await;
    }
    let brid = master.force("long").await;
    let sleep = format!("sleep {marker}");
    master
        .wait_for("the sleep to run", GENEROUS, async || (!processes_matching(&sleep).is_empty()).then_some(()))
        .await;
    let builds = master.wait_builds_of_request(brid, 1).await;
    let worker = master.get_one(&format!("workers/{}", master.id(&builds[0], "workerid"))).await;
    let name = worker["name"].as_str().unwrap_or_else(|| master.fail(&format!("no name: {worker:#}"))).to_owned();

    // A paused worker answers no ping: its build ends RETRY and runs again on the other worker, while the
    // paused machine's command runs on.
    master.signal_worker(&name, Signal::SIGSTOP);
    let request = master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "{request:#}");
    assert_eq!(master.results(&builds[0]), results::RETRY, "{builds:#?}");
    assert_ne!(builds[1]["workerid"], builds[0]["workerid"], "{builds:#?}");
    assert!(!processes_matching(&sleep).is_empty(), "the paused worker's command runs on until it resumes");

    // Resumed, the worker finds its connection gone and kills the command.
    master.signal_worker(&name, Signal::SIGCONT);
    if let Err(left) = wait_no_processes(&sleep, GENEROUS).await {
        master.fail(&format!("the resumed worker's command still runs: {left:#?}"));
    }
    master.wait_worker_connected(&name).await;
}

/// The worker's output with its colour codes dropped.
fn worker_lines(master: &KilnMaster, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(master.worker_output(name)).unwrap_or_default();
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ … m.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain.lines().map(str::to_owned).collect()
}

/// A `Duration`'s `Debug` text (`324.68ms`, `8.2s`, `900µs`) as seconds.
fn debug_seconds(text: &str) -> Option<f64> {
    let at = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(at);
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" | "us" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

#[tokio::test]
async fn a_worker_comes_back_within_its_first_backoff_step_after_each_of_many_master_restarts() {
    // The soak's finding: a master SIGKILLed every few seconds left its worker waiting up to 60 s (the
    // backoff started over only after a 10 s session), so most of the soak ran with no worker.
    let mut master =
        KilnMaster::builder().worker("w", "pw").builder("b", "[[builder.step]]\ncommand = \"true\"").start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    let connected = |master: &KilnMaster| {
        worker_lines(master, "w").iter().filter(|l| l.contains("connected to the master")).count()
    };
    const RESTARTS: usize = 4;
    for n in 1..=RESTARTS {
        master
            .wait_for(&format!("connection {n} of the worker"), GENEROUS, async || {
                (connected(&master) >= n).then_some(())
            })
            .await;
        master.kill_master(Signal::SIGKILL).await;
        master.restart().await;
    }
    master
        .wait_for("the worker's last connection", GENEROUS, async || (connected(&master) > RESTARTS).then_some(()))
        .await;
    // After each lost connection, the first wait is the backoff's first step (at most 0.5 s), whatever came
    // before: the master had attached the worker each time.
    let lines = worker_lines(&master, "w");
    let mut firsts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("lost the connection to the master") {
            let delay = lines[i + 1..].iter().find_map(|l| l.split("reconnecting delay=").nth(1));
            firsts.push(delay.and_then(|d| debug_seconds(d.trim())).unwrap_or(f64::NAN));
        }
    }
    assert_eq!(firsts.len(), RESTARTS, "one lost connection per kill:\n{}", lines.join("\n"));
    assert!(firsts.iter().all(|d| *d <= 0.5), "first reconnect delays {firsts:?} (s):\n{}", lines.join("\n"));
}

#[tokio::test]
async fn a_worker_streaming_output_survives_its_master_being_killed_again_and_again() {
    // The soak's finding: when the master died while the worker was sending, the worker's session saw its
    // writer fail first and then polled the writer's finished task again: the worker panicked and exited.
    let step = "[[builder.step]]\nname = \"chatty\"\ncommand = \"yes kiln-chatty-output-line | head -c 4000000000\"";
    let mut master = KilnMaster::builder().worker("w", "pw").builder("chatty", step).start().await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    let count =
        |master: &KilnMaster, needle: &str| worker_lines(master, "w").iter().filter(|l| l.contains(needle)).count();
    master
        .wait_for("the worker's first connection", GENEROUS, async || {
            (count(&master, "connected to the master") >= 1).then_some(())
        })
        .await;
    master.force("chatty").await;
    const KILLS: usize = 8;
    for n in 1..=KILLS {
        // Killed while the build's output streams to it (the request's build runs again after each start).
        master
            .wait_for(&format!("the chatty command of connection {n}"), GENEROUS, async || {
                (count(&master, "command=\"shell\"") >= n).then_some(())
            })
            .await;
        master.kill_master(Signal::SIGKILL).await;
        master.restart().await;
        master
            .wait_for(&format!("the worker's connection {}", n + 1), GENEROUS, async || {
                let lines = worker_lines(&master, "w");
                assert!(!lines.iter().any(|l| l.contains("panicked")), "the worker panicked:\n{}", lines.join("\n"));
                (count(&master, "connected to the master") > n).then_some(())
            })
            .await;
    }
}
