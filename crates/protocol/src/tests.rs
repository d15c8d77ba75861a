//! Codec tests: frames as Buildbot's Python peers encode them (made with `msgpack.packb(msg,
//! use_bin_type=True)`, msgpack 1.x), and property tests that every message survives a round trip.

use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex fixture")).collect()
}

fn master_request(frame: &[u8]) -> (i64, MasterRequest) {
    match decode::<MasterRequest>(frame).expect("decodes") {
        Incoming::Request { seq_number, request } => (seq_number, request.expect("a known request")),
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn decodes_buildbot_print() {
    let frame = hex("83a26f70a57072696e74a76d657373616765a86174746163686564aa7365715f6e756d62657200");
    assert_eq!(master_request(&frame), (0, MasterRequest::Print { message: "attached".into() }));
}

#[test]
fn decodes_buildbot_worker_settings() {
    let frame = hex(concat!(
        "83a26f70b37365745f776f726b65725f73657474696e6773a46172677384aa6e65776c696e655f7265d93d285c725c6e7c5c",
        "72283f3d2e297c5c3033335c5b757c5c3033335c5b5b302d395d2b3b5b302d395d2b5b48665d7c5c3033335c5b324a7c5c78",
        "30382b29af6d61785f6c696e655f6c656e677468cd1000ae6275666665725f74696d656f757405ab6275666665725f73697a",
        "65ce00010000aa7365715f6e756d62657202"
    ));
    let (seq, request) = master_request(&frame);
    assert_eq!(seq, 2);
    assert_eq!(request, MasterRequest::SetWorkerSettings(WorkerSettings::buildbot_defaults()));
}

#[test]
fn decodes_buildbot_shell_command() {
    let frame = hex(concat!(
        "86a26f70ad73746172745f636f6d6d616e64ac6275696c6465725f6e616d65a162aa636f6d6d616e645f6964a23137ac636f",
        "6d6d616e645f6e616d65a57368656c6ca4617267738da7776f726b646972aa2f772f622f6275696c64a7636f6d6d616e6493",
        "a46563686f93aa6f626675736361746564a6733363726574a358585803a3656e7683a3464f4fa3626172a4474f4e45c0a450",
        "41544892a22f61a22f62ab77616e745f7374646f7574c3ab77616e745f737464657272c2a86c6f6766696c657382a5657874",
        "7261a965787472612e6c6f67a16682a866696c656e616d65a5662e6c6f67a6666f6c6c6f77c3a774696d656f7574cd04b0a7",
        "6d617854696d65c0a96d61785f6c696e6573c0ab7369677465726d54696d65c0a6757365505459c0aa6c6f67456e7669726f",
        "6ec3ad696e697469616c5f737464696ec0aa7365715f6e756d62657203"
    ));
    let (seq, request) = master_request(&frame);
    assert_eq!(seq, 3);
    let MasterRequest::StartCommand { command_id, command_name, args, builder_name } = request else {
        panic!("expected start_command, got {request:?}")
    };
    assert_eq!(command_id, CommandId::Text("17".into()));
    assert_eq!(builder_name.as_deref(), Some("b"));
    let Command::Shell(shell) = Command::parse(&command_name, &args).expect("valid shell args") else {
        panic!("expected a shell command")
    };
    assert_eq!(shell.workdir, "/w/b/build");
    assert_eq!(
        shell.command,
        CommandLine::Argv(vec![
            ArgvWord::plain("echo"),
            ArgvWord { value: "s3cret".into(), display: "XXX".into() },
            ArgvWord::plain("3"),
        ])
    );
    assert_eq!(
        shell.env,
        vec![
            ("FOO".into(), EnvValue::Value("bar".into())),
            ("GONE".into(), EnvValue::Unset),
            ("PATH".into(), EnvValue::PathList(vec!["/a".into(), "/b".into()])),
        ]
    );
    assert!(shell.want_stdout);
    assert!(!shell.want_stderr);
    assert_eq!(
        shell.logfiles,
        vec![
            LogFile { name: "extra".into(), filename: "extra.log".into(), follow: false },
            LogFile { name: "f".into(), filename: "f.log".into(), follow: true },
        ]
    );
    assert_eq!(shell.timeout, Some(1200.0));
    assert_eq!(shell.max_time, None);
    assert!(!shell.use_pty);
    assert!(shell.log_environ);
}

#[test]
fn decodes_buildbot_update_with_lines_and_logs() {
    let frame = hex(concat!(
        "84a26f70a6757064617465aa636f6d6d616e645f6964a23137a4617267739592a566696c657392a4696e666fab6c696e7578",
        "2d6275696c6492a272630092a7656c6170736564cb3f50624dd2f1a9fc92a67374646f757493a5610a62630a92010492cb3f",
        "f8000000000000cb3ff999999999999a92a36c6f6792a5657874726193a2780a910191cb4000000000000000aa7365715f6e",
        "756d62657200"
    ));
    let Incoming::Request { seq_number: 0, request: Ok(WorkerRequest::Update { command_id, entries }) } =
        decode::<WorkerRequest>(&frame).expect("decodes")
    else {
        panic!("expected an update")
    };
    assert_eq!(command_id.to_string(), "17");
    assert_eq!(
        entries,
        vec![
            UpdateEntry::Files(vec!["info".into(), "linux-build".into()]),
            UpdateEntry::Rc(0),
            UpdateEntry::Elapsed(0.001),
            UpdateEntry::Stdout(LineInfo {
                text: "a\nbc\n".into(),
                newline_indexes: vec![1, 4],
                line_times: vec![1.5, 1.6]
            }),
            UpdateEntry::Log {
                name: "extra".into(),
                lines: LineInfo { text: "x\n".into(), newline_indexes: vec![1], line_times: vec![2.0] }
            },
        ]
    );
}

#[test]
fn decodes_buildbot_upload_block_and_failure() {
    let write = hex(concat!(
        "84a26f70b87570646174655f75706c6f61645f66696c655f7772697465aa636f6d6d616e645f6964a23138a461726773c408",
        "000162696e617279aa7365715f6e756d62657204"
    ));
    let Incoming::Request { request: Ok(WorkerRequest::UploadFileWrite { data, .. }), .. } =
        decode::<WorkerRequest>(&write).expect("decodes")
    else {
        panic!("expected an upload block")
    };
    assert_eq!(data, b"\x00\x01binary");

    let complete = hex(concat!(
        "84a26f70a8636f6d706c657465aa636f6d6d616e645f6964a23138a461726773b85b4661696c75726520696e7374616e6365",
        "3a20626f6f6d5daa7365715f6e756d62657205"
    ));
    let Incoming::Request { request: Ok(WorkerRequest::Complete { failure, .. }), .. } =
        decode::<WorkerRequest>(&complete).expect("decodes")
    else {
        panic!("expected complete")
    };
    assert_eq!(failure.as_deref(), Some("[Failure instance: boom]"));
}

#[test]
fn decodes_buildbot_exception_response() {
    let frame = hex(concat!(
        "84a26f70a8726573706f6e7365aa7365715f6e756d62657207a6726573756c74bc436f6d6d616e64206e6f706520646f6573",
        "206e6f742065786973742eac69735f657863657074696f6ec3"
    ));
    let Incoming::Response(response) = decode::<MasterRequest>(&frame).expect("decodes") else {
        panic!("expected a response")
    };
    assert_eq!(response.seq_number, 7);
    assert_eq!(response.into_result(), Err("Command nope does not exist.".to_string()));
}

#[test]
fn unknown_op_is_answerable_with_buildbots_message() {
    let frame = encode_request(9, &MasterRequest::Keepalive);
    let mut value = decode_value(&frame).expect("decodes");
    if let Value::Map(entries) = &mut value {
        entries[0].1 = Value::from("frobnicate");
    }
    let mut frame = Vec::new();
    rmpv::encode::write_value(&mut frame, &value).expect("encode");
    match decode::<MasterRequest>(&frame).expect("decodes") {
        Incoming::Request { seq_number: 9, request: Err(e) } => {
            assert_eq!(e.to_string(), "Command frobnicate does not exist.")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_frames_are_errors_not_panics() {
    assert!(decode::<MasterRequest>(&[]).unwrap_err().to_string().contains("msgpack"));
    assert_eq!(decode::<MasterRequest>(&[0x01]).unwrap_err(), DecodeError::NotAMap("an integer".into()));
    let no_seq = hex("81a26f70a57072696e74");
    assert_eq!(decode::<MasterRequest>(&no_seq).unwrap_err(), DecodeError::MissingSeqNumber);
    let mut trailing = encode_request(1, &MasterRequest::Keepalive);
    trailing.push(0);
    assert_eq!(decode::<MasterRequest>(&trailing).unwrap_err(), DecodeError::TrailingBytes(1));
    // A str32 claiming 4 GiB in a 6-byte frame.
    assert!(decode::<MasterRequest>(&[0xdb, 0xff, 0xff, 0xff, 0xff, 0x00]).is_err());
    // Deep nesting is refused.
    let deep: Vec<u8> = std::iter::repeat_n(0x91, 10_000).chain([0xc0]).collect();
    assert!(decode::<MasterRequest>(&deep).is_err());
}

#[test]
fn missing_argument_names_the_key() {
    let request = MasterRequest::StartCommand {
        command_id: "1".into(),
        command_name: "stat".into(),
        args: Value::Map(vec![]),
        builder_name: None,
    };
    let (_, MasterRequest::StartCommand { command_name, args, .. }) = master_request(&encode_request(0, &request))
    else {
        panic!("expected start_command")
    };
    assert_eq!(Command::parse(&command_name, &args).unwrap_err().to_string(), "command 'stat': missing key 'path'");
    assert_eq!(Command::parse("frob", &args).unwrap_err().to_string(), "unknown command 'frob'");
}

#[test]
fn line_info_offsets_count_characters() {
    let mut lines = LineInfo::default();
    lines.push_line("héllo", 1.0);
    lines.push_line("", 2.0);
    assert_eq!(lines.text, "héllo\n\n");
    assert_eq!(lines.newline_indexes, vec![5, 6]);
    let mut more = LineInfo::from_text("ab\ncd", 3.0);
    assert_eq!(more.newline_indexes, vec![2, 5]);
    more.append(&lines);
    assert_eq!(more.newline_indexes, vec![2, 5, 11, 12]);
    assert_eq!(more.lines().collect::<Vec<_>>(), vec!["ab", "cd", "héllo", ""]);
}

// ---- property tests ----

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _./\u{e9}\u{1f600}-]{0,24}"
}

fn command_id() -> impl Strategy<Value = CommandId> {
    prop_oneof![text().prop_map(CommandId::Text), any::<i64>().prop_map(CommandId::Number)]
}

fn line_info() -> impl Strategy<Value = LineInfo> {
    proptest::collection::vec((text().prop_map(|t| t.replace('\n', "")), 0.0f64..2e9), 0..6).prop_map(|lines| {
        let mut info = LineInfo::default();
        for (line, time) in lines {
            info.push_line(&line, time);
        }
        info
    })
}

fn finite() -> impl Strategy<Value = f64> {
    -1e12f64..1e12
}

fn update_entry() -> impl Strategy<Value = UpdateEntry> {
    prop_oneof![
        line_info().prop_map(UpdateEntry::Stdout),
        line_info().prop_map(UpdateEntry::Stderr),
        line_info().prop_map(UpdateEntry::Header),
        (text(), line_info()).prop_map(|(name, lines)| UpdateEntry::Log { name, lines }),
        any::<i64>().prop_map(UpdateEntry::Rc),
        finite().prop_map(UpdateEntry::Elapsed),
        text().prop_map(UpdateEntry::FailureReason),
        proptest::collection::vec(text(), 0..4).prop_map(UpdateEntry::Files),
        (any::<u32>(), any::<u64>(), any::<i64>()).prop_map(|(mode, size, time)| UpdateEntry::Stat(FileStat {
            mode: u64::from(mode),
            ino: size / 3,
            dev: 7,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            size,
            atime: time,
            mtime: time / 2,
            ctime: time / 3,
        })),
        (
            text().prop_filter("not a known key", |k| {
                !["stdout", "stderr", "header", "log", "rc", "elapsed", "failure_reason", "files", "stat"]
                    .contains(&k.as_str())
            }),
            any::<i64>()
        )
            .prop_map(|(key, n)| UpdateEntry::Other { key, value: Value::from(n) }),
    ]
}

fn worker_request() -> impl Strategy<Value = WorkerRequest> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (command_id(), proptest::collection::vec(update_entry(), 0..5))
            .prop_map(|(command_id, entries)| WorkerRequest::Update { command_id, entries }),
        (command_id(), proptest::option::of(text()))
            .prop_map(|(command_id, failure)| WorkerRequest::Complete { command_id, failure }),
        (command_id(), bytes.clone())
            .prop_map(|(command_id, data)| WorkerRequest::UploadFileWrite { command_id, data }),
        (command_id(), finite(), finite()).prop_map(|(command_id, access_time, modified_time)| {
            WorkerRequest::UploadFileUtime { command_id, access_time, modified_time }
        }),
        command_id().prop_map(|command_id| WorkerRequest::UploadFileClose { command_id }),
        (command_id(), bytes).prop_map(|(command_id, data)| WorkerRequest::UploadDirectoryWrite { command_id, data }),
        command_id().prop_map(|command_id| WorkerRequest::UploadDirectoryUnpack { command_id }),
        (command_id(), any::<u64>()).prop_map(|(command_id, length)| WorkerRequest::ReadFile { command_id, length }),
        command_id().prop_map(|command_id| WorkerRequest::ReadFileClose { command_id }),
    ]
}

fn shell_args() -> impl Strategy<Value = ShellArgs> {
    (
        text(),
        prop_oneof![
            text().prop_map(CommandLine::Shell),
            proptest::collection::vec((text(), text()), 0..4).prop_map(|words| CommandLine::Argv(
                words.into_iter().map(|(value, display)| ArgvWord { value, display }).collect()
            )),
        ],
        proptest::collection::vec(
            (
                "[A-Z_]{1,8}",
                prop_oneof![
                    Just(EnvValue::Unset),
                    text().prop_map(EnvValue::Value),
                    proptest::collection::vec(text(), 0..3).prop_map(EnvValue::PathList),
                ],
            ),
            0..4,
        ),
        any::<(bool, bool, bool, bool)>(),
        proptest::option::of(0.0f64..1e6),
        proptest::option::of(0.0f64..1e6),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        proptest::option::of("[A-Z]{3,4}"),
    )
        .prop_map(|(workdir, command, env, flags, timeout, max_time, max_lines, stdin, signal)| {
            let mut env: Vec<(String, EnvValue)> = env;
            env.sort_by(|a, b| a.0.cmp(&b.0));
            env.dedup_by(|a, b| a.0 == b.0);
            ShellArgs {
                workdir,
                command,
                env,
                want_stdout: flags.0,
                want_stderr: flags.1,
                logfiles: vec![LogFile { name: "l".into(), filename: "l.log".into(), follow: flags.2 }],
                timeout,
                max_time,
                max_lines: max_lines.map(u64::from),
                sigterm_time: timeout.map(|t| t / 2.0),
                use_pty: flags.3,
                log_environ: !flags.3,
                initial_stdin: stdin,
                interrupt_signal: signal,
            }
        })
}

fn command() -> impl Strategy<Value = Command> {
    let paths = proptest::collection::vec(text(), 1..4);
    prop_oneof![
        shell_args().prop_map(Command::Shell),
        (text(), proptest::option::of(any::<u64>()), 1u64..1 << 20, any::<bool>()).prop_map(
            |(path, maxsize, blocksize, keepstamp)| Command::UploadFile(UploadFileArgs {
                path,
                maxsize,
                blocksize,
                keepstamp
            })
        ),
        (
            text(),
            proptest::option::of(any::<u64>()),
            1u64..1 << 20,
            prop_oneof![Just(None), Just(Some(Compression::Gzip)), Just(Some(Compression::Bzip2))]
        )
            .prop_map(|(path, maxsize, blocksize, compress)| Command::UploadDirectory(UploadDirectoryArgs {
                path,
                maxsize,
                blocksize,
                compress
            })),
        (text(), proptest::option::of(any::<u64>()), 1u64..1 << 20, proptest::option::of(0u32..0o7777)).prop_map(
            |(path, maxsize, blocksize, mode)| Command::DownloadFile(DownloadFileArgs {
                path,
                maxsize,
                blocksize,
                mode
            })
        ),
        proptest::collection::vec(text(), 1..4).prop_map(|paths| Command::Mkdir { paths }),
        (paths, proptest::option::of(0.0f64..1e4)).prop_map(|(paths, timeout)| Command::Rmdir {
            paths,
            timeout,
            max_time: None
        }),
        (text(), text()).prop_map(|(from_path, to_path)| Command::Cpdir {
            from_path,
            to_path,
            timeout: Some(120.0),
            max_time: None
        }),
        text().prop_map(|path| Command::Stat { path }),
        text().prop_map(|path| Command::Glob { path }),
        text().prop_map(|path| Command::Listdir { path }),
        text().prop_map(|path| Command::Rmfile { path }),
    ]
}

proptest! {
    #[test]
    fn worker_requests_round_trip(seq in any::<i64>(), request in worker_request()) {
        let frame = encode_request(seq, &request);
        prop_assert_eq!(decode::<WorkerRequest>(&frame), Ok(Incoming::Request { seq_number: seq, request: Ok(request) }));
    }

    #[test]
    fn commands_round_trip(seq in any::<i64>(), id in command_id(), command in command()) {
        let request = MasterRequest::StartCommand {
            command_id: id,
            command_name: command.name().to_string(),
            args: command.to_args(),
            builder_name: Some("b".into()),
        };
        let (decoded_seq, decoded) = master_request(&encode_request(seq, &request));
        prop_assert_eq!(decoded_seq, seq);
        prop_assert_eq!(&decoded, &request);
        let MasterRequest::StartCommand { command_name, args, .. } = decoded else { unreachable!() };
        prop_assert_eq!(Command::parse(&command_name, &args), Ok(command));
    }

    #[test]
    fn master_requests_round_trip(seq in any::<i64>(), message in text(), id in command_id(), size in any::<u32>()) {
        for request in [
            MasterRequest::Print { message: message.clone() },
            MasterRequest::Keepalive,
            MasterRequest::GetWorkerInfo,
            MasterRequest::Shutdown,
            MasterRequest::SetWorkerSettings(WorkerSettings { buffer_size: u64::from(size), ..WorkerSettings::default() }),
            MasterRequest::InterruptCommand { command_id: id.clone(), why: message.clone(), builder_name: None },
        ] {
            prop_assert_eq!(master_request(&encode_request(seq, &request)), (seq, request));
        }
    }

    #[test]
    fn responses_round_trip(seq in any::<i64>(), text in text(), exception in any::<bool>()) {
        let response = if exception { Response::exception(seq, text) } else { Response::ok(seq, Value::from(text)) };
        prop_assert_eq!(decode::<MasterRequest>(&encode_response(&response)), Ok(Incoming::Response(response)));
    }

    #[test]
    fn worker_info_round_trips(admin in text(), numcpus in 1u64..512, leftover in any::<bool>()) {
        let mut info = WorkerInfo {
            system: "posix".into(),
            basedir: "/w".into(),
            numcpus,
            version: "0.1.0".into(),
            delete_leftover_dirs: leftover,
            ..WorkerInfo::default()
        };
        info.info_files.insert("admin".into(), admin);
        info.os.insert("os_id".into(), "debian".into());
        info.environ.insert("HOME".into(), "/root".into());
        info.worker_commands.insert("shell".into(), COMMAND_VERSION.into());
        prop_assert_eq!(WorkerInfo::from_value(&info.to_value()), Ok(info));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<MasterRequest>(&bytes);
        let _ = decode::<WorkerRequest>(&bytes);
    }
}
