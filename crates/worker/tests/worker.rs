//! The worker end to end: a real worker connected over a real WebSocket on 127.0.0.1 to a small test master,
//! running real processes.

mod support;

use kiln_protocol::{
    encode_request, Command, CommandLine, DownloadFileArgs, MasterRequest, ShellArgs, UpdateEntry, UploadFileArgs,
    Value, WorkerInfo, WorkerSettings,
};
use support::{marker, path, wait_no_processes, TestMaster};

fn shell(workdir: &str, script: &str) -> ShellArgs {
    ShellArgs::new(workdir, CommandLine::Shell(script.to_string()))
}

#[tokio::test]
async fn handshake_info_and_unknown_requests() {
    let master = TestMaster::start().await;
    let worker = master.spawn_worker();
    let mut conn = master.accept().await;
    let info = WorkerInfo::from_value(&conn.attach(WorkerSettings::default()).await).expect("worker info");
    assert_eq!(info.basedir, worker.basedir().to_string_lossy());
    assert_eq!(info.system, "posix");
    assert_eq!(info.admin(), Some("Test <test@example.org>"));
    assert_eq!(info.worker_commands.get("shell").map(String::as_str), Some("3.3"));
    assert!(info.worker_commands.contains_key("uploadFile"));
    assert_eq!(conn.request(MasterRequest::Keepalive).await, Ok(Value::Nil));

    // An op the worker does not know is answered with Buildbot's exception text.
    let mut frame = encode_request(100, &MasterRequest::Keepalive);
    let needle = b"keepalive";
    let at = frame.windows(needle.len()).position(|w| w == needle).expect("op in frame");
    frame.splice(at..at + needle.len(), b"frobnicat".iter().copied());
    conn.send_raw(frame).await;
    assert_eq!(conn.response(100).await, Err("Command frobnicat does not exist.".to_string()));

    // A command it cannot read is refused with the reason.
    let bad = MasterRequest::StartCommand {
        command_id: "x".into(),
        command_name: "stat".into(),
        args: Value::Map(vec![]),
        builder_name: None,
    };
    assert_eq!(conn.request(bad).await, Err("command 'stat': missing key 'path'".to_string()));
    let pty = Command::Shell(ShellArgs { use_pty: true, ..shell("/tmp", "true") });
    let seq = conn
        .send(MasterRequest::StartCommand {
            command_id: "p".into(),
            command_name: "shell".into(),
            args: pty.to_args(),
            builder_name: None,
        })
        .await;
    assert!(conn.response(seq).await.expect_err("usePTY refused").contains("usePTY"));
    worker.stop().await.expect("worker ends cleanly");
}

#[tokio::test]
async fn garbage_frames_close_the_connection_and_the_worker_comes_back() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    conn.send_raw(vec![0xc1, 0xff, 0x00]).await;
    conn.closed().await;
    // The worker is still alive: it reconnects and works.
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let run = conn.run("1", Command::Shell(shell(&path(dir.path(), "w"), "echo back"))).await;
    assert_eq!(run.stdout(), "back\n");
}

#[tokio::test]
async fn wrong_password_is_refused_and_retried() {
    let mut master = TestMaster::start().await;
    master.password = "right".into();
    let _worker = master.spawn_worker_with(|w| w.password = "wrong".into());
    master.accept_expecting_refusal().await;
    // It keeps trying, with backoff.
    master.accept_expecting_refusal().await;
}

#[tokio::test]
async fn shell_streams_output_env_and_exit_code() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let workdir = path(dir.path(), "builder/build");
    let mut args =
        shell(&workdir, "printf 'out1\\nout2\\n'; echo err1 >&2; echo \"$FOO $BAR\"; pwd; printf tail; exit 3");
    args.env = vec![
        ("FOO".into(), kiln_protocol::EnvValue::Value("foo".into())),
        ("BAR".into(), kiln_protocol::EnvValue::PathList(vec!["a".into(), "b".into()])),
    ];
    let run = conn.run("7", Command::Shell(args)).await;
    assert_eq!(run.failure, None);
    assert_eq!(run.rc(), Some(3));
    assert_eq!(run.stdout(), format!("out1\nout2\nfoo a:b\n{workdir}\ntail\n"));
    assert_eq!(run.stderr(), "err1\n");
    let header = run.header();
    assert!(header.contains(&format!(" in dir {workdir} (timeout 1200 secs)")), "{header}");
    assert!(header.contains(" argv: ['/bin/sh', '-c', "), "{header}");
    assert!(header.contains("  FOO=foo\n"), "{header}");
    assert!(header.contains("elapsedTime="), "{header}");
    assert!(run.entries.iter().any(|e| matches!(e, UpdateEntry::Elapsed(_))));

    // Output the step does not want is read (the command never blocks on a full pipe) but not sent.
    let mut args = shell(&workdir, "echo kept; echo dropped >&2");
    args.want_stderr = false;
    let run = conn.run("6", Command::Shell(args)).await;
    assert_eq!((run.stdout().as_str(), run.stderr().as_str()), ("kept\n", ""));

    // argv form, and a program that does not exist.
    let argv = |words: &[&str]| CommandLine::Argv(words.iter().map(|w| kiln_protocol::ArgvWord::plain(*w)).collect());
    let run = conn.run("8", Command::Shell(ShellArgs::new(&workdir, argv(&["echo", "a b", "c"])))).await;
    assert_eq!(run.stdout(), "a b c\n");
    assert_eq!(run.rc(), Some(0));
    let run = conn.run("9", Command::Shell(ShellArgs::new(&workdir, argv(&["/no/such/program"])))).await;
    assert_eq!(run.rc(), Some(127));
    assert!(run.stderr().contains("/no/such/program"), "{}", run.stderr());
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let m = marker();
    let mut args = shell(&path(dir.path(), "w"), &format!("sleep {m} & sleep {m} & echo started; sleep {m}"));
    args.timeout = Some(1.0);
    let run = conn.run("t", Command::Shell(args)).await;
    assert_eq!(run.rc(), Some(-1));
    assert_eq!(run.failure_reason(), Some("timeout_without_output"));
    assert!(run.header().contains("command timed out: 1 seconds without output"), "{}", run.header());
    assert!(run.header().contains("process killed by signal 9"), "{}", run.header());
    assert_eq!(wait_no_processes(&m).await, Vec::<String>::new());

    let m = marker();
    let mut args = shell(&path(dir.path(), "w"), &format!("while true; do echo tick; sleep 0.1; done & sleep {m}"));
    args.max_time = Some(1.0);
    let run = conn.run("mt", Command::Shell(args)).await;
    assert_eq!(run.failure_reason(), Some("timeout"));
    assert!(run.stdout().starts_with("tick\n"));
    assert_eq!(wait_no_processes(&m).await, Vec::<String>::new());
    // Everything the worker spawned was reaped.
    assert_eq!(support::wait_no_zombie_children().await, Vec::<String>::new());
}

#[tokio::test]
async fn interrupt_with_sigterm_then_sigkill() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings { buffer_timeout: 0.05, ..WorkerSettings::default() }).await;
    let dir = tempfile::tempdir().expect("dir");
    let m = marker();
    // The shell reports SIGTERM; a grandchild ignores it and must be SIGKILLed after sigtermTime.
    let script = format!(
        "trap 'echo got-term; exit 7' TERM; sh -c 'trap \"\" TERM; sleep {m}' & echo ready; while true; do sleep 0.05; done"
    );
    let mut args = shell(&path(dir.path(), "w"), &script);
    args.sigterm_time = Some(1.0);
    conn.start("i", &Command::Shell(args)).await;
    let (completed, _) = conn.collect("i", |run| run.stdout().contains("ready")).await;
    assert!(!completed);
    conn.request(MasterRequest::InterruptCommand { command_id: "i".into(), why: "stop".into(), builder_name: None })
        .await
        .expect("interrupt answered");
    let run = conn.finish("i").await;
    assert!(run.header().contains("command interrupted, attempting to kill"), "{}", run.header());
    assert!(run.stdout().contains("got-term"), "{}", run.stdout());
    assert_eq!(run.rc(), Some(7));
    assert_eq!(wait_no_processes(&m).await, Vec::<String>::new());
}

#[tokio::test]
async fn losing_the_master_kills_running_commands() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings { buffer_timeout: 0.05, ..WorkerSettings::default() }).await;
    let dir = tempfile::tempdir().expect("dir");
    let m = marker();
    conn.start("l", &Command::Shell(shell(&path(dir.path(), "w"), &format!("sleep {m} & echo up; sleep {m}")))).await;
    conn.collect("l", |run| run.stdout().contains("up")).await;
    assert!(!support::processes_with(&m).is_empty(), "the command runs");
    conn.drop_connection();
    assert_eq!(wait_no_processes(&m).await, Vec::<String>::new());
    // And it reconnects.
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
}

#[tokio::test]
async fn a_master_that_goes_silent_does_not_hang_the_worker() {
    // Regression: when the worker gave up on a silent connection, its commands' `complete` still waited for an
    // answer that never came, and the worker did not reconnect for minutes.
    let mut master = TestMaster::start().await;
    master.keepalive = 0.5;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings { buffer_timeout: 0.05, ..WorkerSettings::default() }).await;
    let dir = tempfile::tempdir().expect("dir");
    let m = marker();
    conn.start("c", &Command::Shell(shell(&path(dir.path(), "w"), &format!("echo up; sleep {m}")))).await;
    conn.collect("c", |run| run.stdout().contains("up")).await;
    // Stop reading: no more answers, no pongs; the socket stays open.
    let mut again = master.accept().await;
    again.attach(WorkerSettings::default()).await;
    assert_eq!(wait_no_processes(&m).await, Vec::<String>::new());
    drop(conn);
}

#[tokio::test]
async fn stopping_the_worker_kills_running_commands() {
    let master = TestMaster::start().await;
    let worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings { buffer_timeout: 0.05, ..WorkerSettings::default() }).await;
    let m = marker();
    let workdir = path(&worker.basedir(), "b");
    conn.start("s", &Command::Shell(shell(&workdir, &format!("sleep {m} & echo up; sleep {m}")))).await;
    conn.collect("s", |run| run.stdout().contains("up")).await;
    worker.stop().await.expect("worker stops cleanly");
    assert_eq!(wait_no_processes(&m).await, Vec::<String>::new());
}

#[tokio::test]
async fn shutdown_request_ends_the_worker() {
    let master = TestMaster::start().await;
    let worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    assert_eq!(conn.request(MasterRequest::Shutdown).await, Ok(Value::Nil));
    worker.stop().await.expect("worker ended by itself");
}

#[tokio::test]
async fn output_is_batched_by_size_and_time() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings { buffer_size: 1000, buffer_timeout: 0.1, ..WorkerSettings::default() }).await;
    let dir = tempfile::tempdir().expect("dir");
    let workdir = path(dir.path(), "w");
    // 200 lines of ~50 bytes: more than one 1000-byte update, and all of it arrives.
    let run = conn
        .run(
            "b",
            Command::Shell(shell(&workdir, "i=0; while [ $i -lt 200 ]; do printf '%048d\\n' $i; i=$((i+1)); done")),
        )
        .await;
    assert_eq!(run.stdout().lines().count(), 200);
    assert!(run.updates > 10, "expected many small updates, got {}", run.updates);
    // A line printed before a long pause arrives during the pause (buffer_timeout), not at the end.
    let mut args = shell(&workdir, "echo early; sleep 5; echo late");
    args.timeout = Some(30.0);
    conn.start("t", &Command::Shell(args)).await;
    let (completed, run) = conn.collect("t", |run| run.stdout().contains("early")).await;
    assert!(!completed, "'early' arrived only with the command's end: {run:?}");
    conn.request(MasterRequest::InterruptCommand { command_id: "t".into(), why: "done".into(), builder_name: None })
        .await
        .expect("interrupt");
    conn.finish("t").await;
}

#[tokio::test]
async fn logfiles_stdin_and_max_lines() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let workdir = path(dir.path(), "w");
    std::fs::create_dir_all(&workdir).expect("workdir");
    std::fs::write(dir.path().join("w/old.log"), "stale\n").expect("old log");
    let mut args = shell(&workdir, "echo one > extra.log; sleep 0.4; echo two >> extra.log; cat");
    args.logfiles = vec![
        kiln_protocol::LogFile { name: "extra".into(), filename: "extra.log".into(), follow: false },
        kiln_protocol::LogFile { name: "old".into(), filename: "old.log".into(), follow: false },
    ];
    args.initial_stdin = Some("from stdin\n".into());
    let run = conn.run("l", Command::Shell(args)).await;
    assert_eq!(run.log("extra"), "one\ntwo\n");
    assert_eq!(run.log("old"), "", "an unchanged file from before the command is not sent");
    assert_eq!(run.stdout(), "from stdin\n");

    // A command that writes its log file at once and ends (regression: the file was taken for an old one when
    // the watcher looked at it only after the command had started).
    for i in 0..20 {
        let mut args = shell(&workdir, &format!("echo fast-{i} > quick-{i}.log"));
        args.logfiles =
            vec![kiln_protocol::LogFile { name: "quick".into(), filename: format!("quick-{i}.log"), follow: false }];
        let run = conn.run(&format!("q{i}"), Command::Shell(args)).await;
        assert_eq!(run.log("quick"), format!("fast-{i}\n"));
    }

    let mut args = shell(&workdir, "while true; do echo line; done");
    args.max_lines = Some(100);
    let run = conn.run("m", Command::Shell(args)).await;
    assert_eq!(run.failure_reason(), Some("max_lines_failure"));
    assert_eq!(run.rc(), Some(-1));
}

#[tokio::test]
async fn transfers_move_real_bytes() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let src = dir.path().join("up.bin");
    std::fs::write(&src, &data).expect("write");
    let upload = Command::UploadFile(UploadFileArgs {
        path: src.to_string_lossy().into_owned(),
        maxsize: None,
        blocksize: 16384,
        keepstamp: true,
    });
    let run = conn.run("u", upload).await;
    assert_eq!(run.rc(), Some(0));
    assert_eq!(conn.uploads.get(&"u".into()).map(Vec::len), Some(data.len()));
    assert!(conn.uploads[&"u".into()] == data);

    let upload = Command::UploadFile(UploadFileArgs {
        path: src.to_string_lossy().into_owned(),
        maxsize: Some(1000),
        blocksize: 300,
        keepstamp: false,
    });
    let run = conn.run("u2", upload).await;
    assert_eq!(run.rc(), Some(1));
    assert!(run.stderr().contains("Maximum filesize reached"), "{}", run.stderr());
    assert_eq!(conn.uploads.get(&"u2".into()).map(Vec::len), Some(1000));

    conn.files.insert("d".into(), data.clone());
    let dest = dir.path().join("sub/dir/down.bin");
    let download = Command::DownloadFile(DownloadFileArgs {
        path: dest.to_string_lossy().into_owned(),
        maxsize: None,
        blocksize: 10_000,
        mode: Some(0o640),
    });
    let run = conn.run("d", download).await;
    assert_eq!(run.rc(), Some(0), "{run:?}");
    assert!(std::fs::read(&dest).expect("downloaded") == data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o777, 0o640);
}

#[tokio::test]
async fn filesystem_commands() {
    let master = TestMaster::start().await;
    let _worker = master.spawn_worker();
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let p = |rel: &str| path(dir.path(), rel);
    let run = conn.run("1", Command::Mkdir { paths: vec![p("a/b/c"), p("x")] }).await;
    assert_eq!(run.rc(), Some(0));
    std::fs::write(dir.path().join("a/b/c/f.txt"), "hi").expect("write");
    let run =
        conn.run("2", Command::Cpdir { from_path: p("a"), to_path: p("copy/a"), timeout: None, max_time: None }).await;
    assert_eq!(run.rc(), Some(0));
    assert_eq!(std::fs::read_to_string(dir.path().join("copy/a/b/c/f.txt")).expect("copied"), "hi");
    let run = conn.run("3", Command::Listdir { path: p("") }).await;
    let mut files = run.files().expect("files").to_vec();
    files.sort();
    assert_eq!(files, vec!["a", "copy", "x"]);
    let run = conn.run("4", Command::Glob { path: p("**/*.txt") }).await;
    assert_eq!(run.files().expect("files"), &[p("a/b/c/f.txt"), p("copy/a/b/c/f.txt")]);
    let run = conn.run("5", Command::Stat { path: p("a/b/c/f.txt") }).await;
    let stat = run.entries.iter().find_map(|e| if let UpdateEntry::Stat(s) = e { Some(*s) } else { None });
    assert!(stat.is_some_and(|s| s.is_file() && s.size == 2), "{run:?}");
    let run = conn.run("6", Command::Stat { path: p("missing") }).await;
    assert_eq!(run.rc(), Some(2), "ENOENT");
    let run = conn.run("7", Command::Rmfile { path: p("a/b/c/f.txt") }).await;
    assert_eq!(run.rc(), Some(0));
    let run = conn
        .run("8", Command::Rmdir { paths: vec![p("a"), p("copy"), p("never")], timeout: None, max_time: None })
        .await;
    assert_eq!(run.rc(), Some(0));
    assert!(!dir.path().join("a").exists() && !dir.path().join("copy").exists());
}

#[tokio::test]
async fn connects_over_tls_with_a_private_ca() {
    let (master, ca_pem) = TestMaster::start_tls().await;
    let ca_dir = tempfile::tempdir().expect("dir");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let _worker = master.spawn_worker_with(|w| w.ca_file = Some(ca_file.clone()));
    let mut conn = master.accept().await;
    conn.attach(WorkerSettings::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let run = conn.run("1", Command::Shell(shell(&path(dir.path(), "w"), "echo secure"))).await;
    assert_eq!(run.stdout(), "secure\n");
}
