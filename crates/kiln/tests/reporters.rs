//! Reporters against real servers: mail to a real SMTP server (aiosmtpd, `support/smtp_sink.py`) and HTTP
//! targets to a local recorder that checks each request's documented shape. The notices go through the real
//! store's outbox and the real senders; faults (a server down, 451, 550, 500, 429, a hang) are the servers'.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kiln_master::config::MasterConfig;
use kiln_master::model::{Build, BuildFacts, Change, NewChange, Notification, NotificationState, SourceStamp};
use kiln_master::reporters::mode::Outcome;
use kiln_master::reporters::Reporters;
use kiln_master::results::{FAILURE, SUCCESS};
use kiln_master::store::{NotificationQuery, Store};
use serde_json::Value;
use support::recorder::{Answer, Recorder};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A master's config with `reporters` appended (one builder, `devel`).
fn config(reporters: &str) -> MasterConfig {
    let text = format!(
        "title = \"Scipion\"\nurl = \"http://ci.example.org/\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n\
         [[builder]]\nname = \"devel\"\nworkers = [\"w\"]\n  [[builder.step]]\n  command = \"make\"\n{reporters}"
    );
    MasterConfig::from_str(&text, "master.toml").unwrap_or_else(|e| panic!("config:\n{e}"))
}

/// A failed build of `devel` on `main` at revision `abc123…`, by Alice and Bob.
fn failed_build() -> BuildFacts {
    let change = |author: &str, comments: &str| Change {
        parent_changeids: Vec::new(),
        id: 1,
        sourcestampid: 1,
        reported: NewChange { author: author.into(), comments: comments.into(), ..NewChange::default() },
    };
    BuildFacts {
        build: Build {
            id: 42,
            number: 7,
            builderid: 1,
            results: Some(FAILURE),
            state_string: "failed 'make' (failure)".into(),
            ..Build::default()
        },
        builder: "devel".into(),
        worker: Some("w".into()),
        reason: "change".into(),
        sourcestamps: vec![SourceStamp {
            branch: Some("main".into()),
            revision: Some("abc1234567890".into()),
            repository: "https://github.com/scipion/scipion.git".into(),
            ..SourceStamp::default()
        }],
        changes: vec![
            change("Alice <alice@example.org>", "break <script>it</script>"),
            change("Bob <bob@example.org>", "and more"),
        ],
        ..BuildFacts::default()
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    reporters: Arc<Reporters>,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    /// A real store, the reporters of `config`, and the notices `facts` makes for reporter `name`, kept; the
    /// senders run.
    async fn start(config: &MasterConfig, name: &str, facts: &BuildFacts) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&format!("sqlite:{}", dir.path().join("state.sqlite").display())).await.expect("store");
        let reporters = Arc::new(Reporters::new(config));
        let def = reporters.get(name).expect("reporter").clone();
        let outcome = Outcome { results: facts.build.results.unwrap_or(SUCCESS), previous: None, streak: 1 };
        let rows = reporters.notices(&def, "build.finished", facts, outcome, None);
        assert!(!rows.is_empty(), "the reporter makes a notice");
        store.add_notifications(&rows).await.expect("keep the notices");
        let stop = CancellationToken::new();
        reporters.start(&store, stop.clone());
        Harness { _dir: dir, store, reporters, stop }
    }

    async fn notices(&self) -> Vec<Notification> {
        let mut all = self.store.notifications(&NotificationQuery::default()).await.expect("list");
        all.reverse();
        all
    }

    /// Waits until every notice satisfies `done`.
    async fn wait_notices(&self, what: &str, done: impl Fn(&Notification) -> bool) -> Vec<Notification> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notices = self.notices().await;
            if notices.iter().all(&done) {
                return notices;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: {notices:#?}");
            }
            // The store has no event for a settled notice: look again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A running `smtp_sink.py`; killed when dropped.
struct SmtpSink {
    child: tokio::process::Child,
    port: u16,
    record: PathBuf,
}

impl SmtpSink {
    async fn start(dir: &Path, port: u16, args: &[&str]) -> SmtpSink {
        let python = support::buildbot::venv().join("bin/python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let port_file = dir.join(format!("smtp-{port}.port"));
        let record = dir.join("mail.jsonl");
        let _ = std::fs::remove_file(&port_file);
        let child = tokio::process::Command::new(python)
            .arg(script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--record")
            .arg(&record)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP sink");
        let deadline = tokio::time::Instant::now() + WAIT;
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            assert!(tokio::time::Instant::now() < deadline, "the SMTP sink did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        SmtpSink { child, port, record }
    }

    /// The messages it accepted.
    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

fn mail_reporter(port: u16, extra: &str) -> MasterConfig {
    config(&format!(
        "[[reporter]]\nname = \"mail\"\ntype = \"mail\"\nfrom = \"Kiln <kiln@ci.example.org>\"\n\
         smtp_url = \"smtp://127.0.0.1:{port}\"\n{extra}"
    ))
}

#[tokio::test]
async fn a_failure_mail_reaches_the_blamelist_with_headers_and_escaped_html() {
    let dir = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(dir.path(), 0, &[]).await;
    let harness = Harness::start(
        &mail_reporter(sink.port, "extra_recipients = [\"team@example.org\"]\n"),
        "mail",
        &failed_build(),
    )
    .await;
    let notices = harness.wait_notices("all sent", |n| n.state == NotificationState::Sent).await;
    assert_eq!(notices.len(), 3, "one copy per recipient: Alice, Bob, and the team in CC");
    let messages = sink.messages();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let mut rcpts: Vec<&str> = messages.iter().map(|m| m["rcpt_tos"][0].as_str().expect("rcpt")).collect();
    rcpts.sort_unstable();
    assert_eq!(rcpts, ["alice@example.org", "bob@example.org", "team@example.org"]);
    let data = messages[0]["data"].as_str().expect("data");
    for header in [
        "Subject: =?utf-8?",
        "To: Alice <alice@example.org>, Bob <bob@example.org>",
        "Cc: team@example.org",
        "Auto-Submitted: auto-generated",
        "Message-ID: <kiln.",
        "Content-Type: multipart/alternative",
    ] {
        assert!(data.contains(header), "{header:?} in\n{data}");
    }
    let ids: Vec<&str> =
        messages.iter().filter_map(|m| m["data"].as_str()?.lines().find(|l| l.starts_with("Message-ID:"))).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "every copy is the same message: {ids:?}");
    // The HTML part is quoted-printable: undo its soft line breaks.
    let unfolded = data.replace("=\r\n", "").replace("=\n", "");
    assert!(unfolded.contains("break &lt;script&gt;it&lt;&#x2f;script&gt;"), "the HTML part escapes: {data}");
    assert!(!unfolded.contains("break <script>it</script></li>"), "{data}");
    sink.stop().await;
}

#[tokio::test]
async fn smtp_down_then_up_delivers_once() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let harness = Harness::start(&mail_reporter(port, "timeout = 3\n"), "mail", &failed_build()).await;
    harness.wait_notices("a failed attempt", |n| n.attempts >= 1 && n.last_error.is_some()).await;
    let sink = SmtpSink::start(dir.path(), port, &[]).await;
    let notices = harness.wait_notices("sent once the server is up", |n| n.state == NotificationState::Sent).await;
    assert_eq!(notices.len(), 2);
    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "each recipient once: {messages:#?}");
    sink.stop().await;
}

#[tokio::test]
async fn smtp_451_is_retried_and_550_for_one_recipient_is_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(dir.path(), 0, &["--tempfail-data", "2", "--reject-rcpt", "bob@example.org"]).await;
    let harness = Harness::start(&mail_reporter(sink.port, ""), "mail", &failed_build()).await;
    let notices =
        harness.wait_notices("settled", |n| matches!(n.state, NotificationState::Sent | NotificationState::Dead)).await;
    let alice = notices.iter().find(|n| n.target.contains("alice")).expect("alice's copy");
    let bob = notices.iter().find(|n| n.target.contains("bob")).expect("bob's copy");
    assert_eq!(bob.state, NotificationState::Dead, "{bob:#?}");
    assert!(bob.last_error.as_deref().unwrap_or("").contains("550"), "{bob:#?}");
    assert_eq!(alice.state, NotificationState::Sent, "{alice:#?}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "alice got it once: {messages:#?}");
    assert_eq!(messages[0]["rcpt_tos"][0], "alice@example.org");
    // The two 451s went to whichever copies reached DATA first: three or more attempts in all.
    let attempts: i64 = notices.iter().map(|n| n.attempts).sum();
    assert!(attempts >= 3, "{notices:#?}");
    sink.stop().await;
}

#[tokio::test]
async fn a_hanging_smtp_server_times_out() {
    let dir = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(dir.path(), 0, &["--hang-data"]).await;
    let harness = Harness::start(&mail_reporter(sink.port, "timeout = 1\n"), "mail", &failed_build()).await;
    let notices = harness.wait_notices("timed out", |n| n.attempts >= 1 && n.state != NotificationState::Sent).await;
    let error = notices[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("timed out") || error.contains("no answer within"), "{error}");
    assert!(sink.messages().is_empty());
    sink.stop().await;
}

fn github(url: &str) -> MasterConfig {
    config(&format!(
        "[[reporter]]\nname = \"gh\"\ntype = \"github\"\nbase_url = \"{url}\"\ntoken = \"T0KEN\"\ntimeout = 2\n"
    ))
}

#[tokio::test]
async fn http_500_three_times_then_201_posts_one_status() {
    let recorder = Recorder::start(vec![Answer::status(500), Answer::status(502), Answer::status(503)]).await;
    let harness = Harness::start(&github(&recorder.url), "gh", &failed_build()).await;
    let notices = harness.wait_notices("sent", |n| n.state == NotificationState::Sent).await;
    assert_eq!((notices.len(), notices[0].attempts), (1, 4), "{notices:#?}");
    let requests = recorder.wait_requests(4, WAIT).await;
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/repos/scipion/scipion/statuses/abc1234567890")
        );
        assert_eq!(request.headers.get("authorization").map(String::as_str), Some("token T0KEN"));
        let body = request.json();
        assert_eq!(body["state"], "failure");
        assert_eq!(body["context"], "kiln/devel");
        assert_eq!(body["target_url"], "http://ci.example.org/#/builders/1/builds/7");
        assert!(body["description"].as_str().expect("description").chars().count() <= 140);
    }
    assert_eq!(requests[0].body, requests[3].body, "a retry sends the same bytes");
}

#[tokio::test]
async fn http_429_retry_after_is_honoured() {
    let recorder = Recorder::start(vec![Answer::status(429).header("retry-after", "2")]).await;
    let harness = Harness::start(&github(&recorder.url), "gh", &failed_build()).await;
    harness.wait_notices("sent", |n| n.state == NotificationState::Sent).await;
    let requests = recorder.wait_requests(2, WAIT).await;
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(1900), "waited {waited:?} after Retry-After: 2");
}

#[tokio::test]
async fn a_hanging_http_server_times_out() {
    let recorder = Recorder::start(vec![Answer::hang()]).await;
    let harness = Harness::start(&github(&recorder.url), "gh", &failed_build()).await;
    let notices = harness.wait_notices("sent after the timeout", |n| n.state == NotificationState::Sent).await;
    assert_eq!(notices[0].attempts, 2);
    let requests = recorder.wait_requests(2, WAIT).await;
    assert_eq!(requests.len(), 2);
}

#[tokio::test]
async fn chat_matrix_and_signed_push_have_their_shapes() {
    let recorder = Recorder::start(Vec::new()).await;
    let url = &recorder.url;
    let config = config(&format!(
        "[[reporter]]\nname = \"slack\"\ntype = \"slack\"\nwebhook_url = \"{url}/services/T/B/X\"\n\
         [[reporter]]\nname = \"discord\"\ntype = \"discord\"\nwebhook_url = \"{url}/api/webhooks/1/t\"\n\
         [[reporter]]\nname = \"matrix\"\ntype = \"matrix\"\nhomeserver = \"{url}\"\nroom = \"!r:m.org\"\ntoken = \"MX\"\n\
         [[reporter]]\nname = \"push\"\ntype = \"http\"\nurl = \"{url}/hook\"\nsecret = \"s3cret\"\n"
    ));
    let facts = failed_build();
    let mut harnesses = Vec::new();
    for name in ["slack", "discord", "matrix", "push"] {
        harnesses.push(Harness::start(&config, name, &facts).await);
    }
    let requests = recorder.wait_requests(4, WAIT).await;
    let find = |prefix: &str| requests.iter().find(|r| r.path.starts_with(prefix)).expect(prefix).clone();
    let slack = find("/services/").json();
    assert!(slack["text"].as_str().expect("text").contains("devel"));
    assert_eq!(slack["blocks"][0]["type"], "section");
    let discord = find("/api/webhooks/");
    assert!(discord.path.ends_with("?wait=true"), "{}", discord.path);
    let embed = &discord.json()["embeds"][0];
    assert!(embed["color"].is_u64() && embed["title"].is_string(), "{embed}");
    let matrix = find("/_matrix/");
    assert_eq!(matrix.method, "PUT");
    assert!(matrix.path.starts_with("/_matrix/client/v3/rooms/%21r%3Am.org/send/m.room.message/"), "{}", matrix.path);
    assert_eq!(matrix.headers.get("authorization").map(String::as_str), Some("Bearer MX"));
    let body = matrix.json();
    assert_eq!((body["msgtype"].as_str(), body["format"].as_str()), (Some("m.notice"), Some("org.matrix.custom.html")));
    assert!(!body["formatted_body"].as_str().expect("html").contains("<script>"));
    let push = find("/hook");
    let delivery = push.headers.get("x-kiln-delivery").expect("delivery id");
    assert_eq!(push.json()["delivery_id"].as_str(), Some(delivery.as_str()));
    assert_eq!(push.json()["version"], 1);
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("key");
    mac.update(&push.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(push.headers.get("x-kiln-signature"), Some(&expected));
    drop(harnesses);
}

use support::buildbot::WorkerKind;
use support::kiln::{toml_str, KilnMaster};

/// A master whose `devel` builder fails while `flag` exists and is built by each change of the base hook, with
/// `reporters` appended.
async fn master_with(flag: &Path, reporters: &str) -> KilnMaster {
    let step = format!(
        "[[builder.step]]\nname = \"make\"\ncommand = [\"sh\", \"-c\", {}]\n",
        toml_str(format!("echo building; if [ -e '{}' ]; then echo 'error: it broke'; exit 1; fi", flag.display()))
    );
    let changes = "[change_hooks.base]\ntoken = \"t0ken\"\n\n[[scheduler]]\nname = \"on-push\"\ntype = \"on_change\"\n\
                   builders = [\"devel\"]\n";
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("devel", &step)
        .extra_toml(changes)
        .extra_toml(reporters)
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    master
}

/// Pushes a commit by Alice (a change through the base hook), which builds `devel`; waits for that build's end.
async fn build_as_alice(master: &KilnMaster) -> i64 {
    let before = master.get("builders/devel/builds").await["meta"]["total"].as_i64().unwrap_or(0);
    let change = serde_json::json!({
        "author": "Alice <alice@example.org>", "comments": format!("commit {}", before + 1),
        "revision": format!("r{}", before + 1), "branch": "main", "repository": "https://example.invalid/r.git",
    });
    master.send_change("t0ken", change).await;
    let number = before + 1;
    let build = master
        .wait_for(&format!("build {number} of devel to end"), WAIT, async || {
            let build = master.try_get(&format!("builders/devel/builds/{number}")).await?;
            let build = build["builds"].get(0)?.clone();
            build["complete"].as_bool()?.then_some(build)
        })
        .await;
    master.id(&build, "buildid")
}

/// Waits until the notices listed by the API for build `buildid` are all sent (and there are `n`).
async fn wait_sent(master: &KilnMaster, buildid: i64, n: usize) -> Vec<Value> {
    master
        .wait_for(&format!("{n} notices of build {buildid} sent"), WAIT, async || {
            let listed = master.try_get(&format!("notifications?subject_id={buildid}")).await?;
            let notices = listed["notifications"].as_array()?.clone();
            (notices.len() == n && notices.iter().all(|n| n["state"] == "sent")).then_some(notices)
        })
        .await
}

#[tokio::test]
async fn failure_then_still_failing_then_fixed_end_to_end() {
    let dir = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(dir.path(), 0, &[]).await;
    let slack = Recorder::start(Vec::new()).await;
    let flag = dir.path().join("broken");
    let reporters = format!(
        "\n[[reporter]]\nname = \"authors\"\ntype = \"mail\"\nfrom = \"kiln@ci.example.org\"\n\
         smtp_url = \"smtp://127.0.0.1:{}\"\nmode = [\"problem\", \"fixed\"]\n\
         [[reporter]]\nname = \"team\"\ntype = \"slack\"\nwebhook_url = \"{}/services/T/B/X\"\n\
         mode = [\"failing\", \"fixed\"]\n",
        sink.port, slack.url
    );
    let master = master_with(&flag, &reporters).await;

    let passing = build_as_alice(&master).await;
    std::fs::write(&flag, "").expect("break the build");
    let broken = build_as_alice(&master).await;
    let mails = wait_sent(&master, broken, 2).await; // Alice's mail and the Slack post
    assert!(
        mails.iter().any(|n| n["reporter"] == "authors" && n["target"] == "Alice <alice@example.org>"),
        "{mails:#?}"
    );
    let still = build_as_alice(&master).await;
    wait_sent(&master, still, 1).await; // Slack only: `problem` does not mail a second failure
    std::fs::remove_file(&flag).expect("fix the build");
    let fixed = build_as_alice(&master).await;
    wait_sent(&master, fixed, 2).await;
    let none = master.get(&format!("notifications?subject_id={passing}")).await;
    assert_eq!(none["notifications"].as_array().map(Vec::len), Some(0), "a first success reports nothing: {none}");

    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "the failure and the fix: {messages:#?}");
    let failure = messages[0]["data"].as_str().expect("data");
    let fix = messages[1]["data"].as_str().expect("data");
    assert!(failure.contains("new failure has been detected on builder devel"), "{failure}");
    assert!(failure.contains("error: it broke"), "the failing step's last lines: {failure}");
    assert!(fix.contains("restored build") && fix.contains("In-Reply-To: <kiln."), "{fix}");
    let first_id = failure.lines().find_map(|l| l.strip_prefix("Message-ID: ")).expect("Message-ID");
    assert!(fix.contains(&format!("In-Reply-To: {first_id}")), "the fix replies to the failure: {fix}");
    let posts = slack.wait_requests(3, WAIT).await;
    assert_eq!(posts.len(), 3, "Slack hears each failure and the fix");
    sink.stop().await;
}

#[tokio::test]
async fn a_master_killed_before_delivery_delivers_exactly_once_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let flag = dir.path().join("broken");
    std::fs::write(&flag, "").expect("fail every build");
    let reporters = format!(
        "\n[[reporter]]\nname = \"authors\"\ntype = \"mail\"\nfrom = \"kiln@ci.example.org\"\n\
         smtp_url = \"smtp://127.0.0.1:{port}\"\nmode = [\"failing\"]\ntimeout = 2\n"
    );
    let mut master = master_with(&flag, &reporters).await;
    let buildid = build_as_alice(&master).await;
    // The SMTP server is down: the notice waits in the outbox.
    master
        .wait_for("a failed attempt", WAIT, async || {
            let listed = master.try_get(&format!("notifications?subject_id={buildid}")).await?;
            let notice = listed["notifications"].get(0)?.clone();
            (notice["attempts"].as_i64()? >= 1 && notice["state"] == "pending").then_some(notice)
        })
        .await;
    master.kill_master(nix::sys::signal::Signal::SIGKILL).await;
    let sink = SmtpSink::start(dir.path(), port, &[]).await;
    master.restart().await;
    wait_sent(&master, buildid, 1).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "delivered exactly once: {messages:#?}");
    assert_eq!(messages[0]["rcpt_tos"][0], "alice@example.org");
    sink.stop().await;
}

#[tokio::test]
async fn test_reporter_sends_one_notice_and_prints_the_answer() {
    let recorder = Recorder::start(vec![Answer::status(200).body("ok")]).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "[[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"devel\"\nworkers = [\"w\"]\n\
         [[builder.step]]\ncommand = \"make\"\n[[reporter]]\nname = \"team\"\ntype = \"slack\"\n\
         webhook_url = \"{}/services/T/B/X\"\n",
        recorder.url
    );
    std::fs::write(dir.path().join("master.toml"), text).expect("master.toml");
    let dir_arg = dir.path().to_str().expect("a UTF-8 path");
    let output = support::kiln::run_kiln(&["test-reporter", dir_arg, "team"], WAIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", support::kiln::show(&output));
    assert!(stdout.contains("webhook: sent: 200"), "{stdout}");
    let posts = recorder.wait_requests(1, WAIT).await;
    assert!(posts[0].json()["text"].as_str().expect("text").contains("devel"), "{:?}", posts[0]);
    let output = support::kiln::run_kiln(&["test-reporter", dir_arg, "nobody"], WAIT).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no reporter 'nobody'"),
        "{}",
        support::kiln::show(&output)
    );
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files in `dir`: (cert, key, ca).
fn certificates(dir: &Path) -> (String, String, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    let (cert, key_path, ca_path) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&cert, leaf.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    std::fs::write(&ca_path, ca.pem()).expect("ca");
    (cert.display().to_string(), key_path.display().to_string(), ca_path)
}

#[tokio::test]
async fn implicit_tls_is_verified_against_the_ca_file() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, ca) = certificates(dir.path());
    let sink = SmtpSink::start(dir.path(), 0, &["--implicit-tls", &cert, &key]).await;
    let port = sink.port;
    let trusted =
        format!("smtp_url = \"smtps://127.0.0.1:{port}\"\nca_file = {}\n", toml_str(ca.display().to_string()));
    let config = config(&format!(
        "[[reporter]]\nname = \"mail\"\ntype = \"mail\"\nfrom = \"kiln@ci.example.org\"\n{trusted}\n\
         [[reporter]]\nname = \"untrusted\"\ntype = \"mail\"\nfrom = \"kiln@ci.example.org\"\n\
         smtp_url = \"smtps://127.0.0.1:{port}\"\n"
    ));
    let harness = Harness::start(&config, "mail", &failed_build()).await;
    harness.wait_notices("sent over TLS", |n| n.state == NotificationState::Sent).await;
    let messages = sink.messages();
    assert!(messages.len() == 2 && messages.iter().all(|m| m["tls"] == true), "{messages:#?}");
    // Without the CA, the server's certificate is not trusted: nothing is sent.
    let untrusted = Harness::start(&config, "untrusted", &failed_build()).await;
    let notices = untrusted.wait_notices("refused", |n| n.attempts >= 1).await;
    assert!(notices.iter().all(|n| n.state != NotificationState::Sent), "{notices:#?}");
    let error = notices[0].last_error.clone().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate") || error.contains("tls") || error.contains("unknownissuer"), "{error}");
    assert_eq!(sink.messages().len(), 2);
    sink.stop().await;
}

#[tokio::test]
async fn starttls_required_with_auth_and_refused_without_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, ca) = certificates(dir.path());
    let sink = SmtpSink::start(dir.path(), 0, &["--starttls", &cert, &key, "--auth", "kiln:s3cret"]).await;
    let plain = SmtpSink::start(&dir.path().join("plain").tap_create(), 0, &[]).await;
    let ca = toml_str(ca.display().to_string());
    let config = config(&format!(
        "[[reporter]]\nname = \"mail\"\ntype = \"mail\"\nfrom = \"kiln@ci.example.org\"\n\
         smtp_url = \"smtp://kiln:s3cret@127.0.0.1:{}?tls=required\"\nca_file = {ca}\n\
         [[reporter]]\nname = \"no-starttls\"\ntype = \"mail\"\nfrom = \"kiln@ci.example.org\"\n\
         smtp_url = \"smtp://127.0.0.1:{}?tls=required\"\nca_file = {ca}\n",
        sink.port, plain.port
    ));
    let harness = Harness::start(&config, "mail", &failed_build()).await;
    harness.wait_notices("sent", |n| n.state == NotificationState::Sent).await;
    let messages = sink.messages();
    assert!(messages.iter().all(|m| m["tls"] == true && m["auth_user"] == "kiln"), "{messages:#?}");
    // A server that does not offer STARTTLS gets nothing when TLS is required.
    let refused = Harness::start(&config, "no-starttls", &failed_build()).await;
    let notices = refused.wait_notices("refused", |n| n.attempts >= 1).await;
    assert!(notices.iter().all(|n| n.state != NotificationState::Sent), "{notices:#?}");
    assert!(plain.messages().is_empty());
    sink.stop().await;
    plain.stop().await;
}

trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for PathBuf {
    /// Creates the directory and returns it.
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).expect("create a directory");
        self
    }
}

#[tokio::test]
async fn gitlab_asks_the_project_id_once_and_takes_cannot_transition_as_done() {
    let recorder = Recorder::start(vec![
        Answer::status(200).body("{\"id\": 77, \"path_with_namespace\": \"scipion/scipion\"}"),
        Answer::status(400).body("{\"message\": \"Cannot transition status via :run from :running\"}"),
    ])
    .await;
    let config = config(&format!(
        "[[reporter]]\nname = \"gl\"\ntype = \"gitlab\"\nbase_url = \"{}\"\ntoken = \"GLT\"\ncontext = \"ci/{{{{ buildername }}}}\"\n",
        recorder.url
    ));
    let harness = Harness::start(&config, "gl", &failed_build()).await;
    let notices = harness.wait_notices("done", |n| n.state == NotificationState::Sent).await;
    assert!(notices[0].answer.as_deref().unwrap_or("").contains("already in that state"), "{notices:#?}");
    let requests = recorder.wait_requests(2, WAIT).await;
    assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("GET", "/api/v4/projects/scipion%2Fscipion"));
    assert_eq!(requests[1].path, "/api/v4/projects/77/statuses/abc1234567890");
    assert_eq!(requests[1].headers.get("private-token").map(String::as_str), Some("GLT"));
    let body = requests[1].json();
    assert_eq!(
        (body["state"].as_str(), body["name"].as_str(), body["ref"].as_str()),
        (Some("failed"), Some("ci/devel"), Some("main"))
    );
    // The id is kept in the store: a second status asks nothing more.
    let mut next = failed_build();
    next.build.id = 43;
    let def = harness.reporters.get("gl").expect("def").clone();
    let outcome = Outcome { results: SUCCESS, previous: None, streak: 0 };
    next.build.results = Some(SUCCESS);
    harness
        .store
        .add_notifications(&harness.reporters.notices(&def, "build.finished", &next, outcome, None))
        .await
        .expect("add");
    harness.reporters.wake();
    let requests = recorder.wait_requests(3, WAIT).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].path, "/api/v4/projects/77/statuses/abc1234567890");
    assert_eq!(requests[2].json()["state"], "success");
}

/// Each forge's status posts as they arrived: (forge, state, body).
fn statuses(recorder: &Recorder) -> Vec<(&'static str, String, Value)> {
    recorder
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .filter_map(|r| {
            let forge = if r.path.starts_with("/repos/") {
                "github"
            } else if r.path.starts_with("/api/v1/") {
                "gitea"
            } else if r.path.starts_with("/api/v4/") {
                "gitlab"
            } else if r.path.starts_with("/2.0/") {
                "bitbucket"
            } else {
                return None;
            };
            let body = r.json();
            Some((forge, body["state"].as_str().unwrap_or("").to_owned(), body))
        })
        .collect()
}

/// A request queued with no worker connected is "pending" on every forge (GitHub, GitLab and Gitea `pending`,
/// Bitbucket `INPROGRESS`), linked to the request; once a worker builds it, the final state follows, in order.
#[tokio::test]
async fn forge_statuses_are_pending_at_request_time_then_final() {
    let recorder = Recorder::start(Vec::new()).await;
    let forges: String = ["github", "gitlab", "gitea", "bitbucket"]
        .iter()
        .map(|forge| {
            format!(
                "\n[[reporter]]\nname = \"{forge}\"\ntype = \"{forge}\"\nbase_url = \"{}\"\ntoken = \"T\"\n",
                recorder.url
            )
        })
        .collect();
    let changes = "[change_hooks.base]\ntoken = \"t0ken\"\n\n[[scheduler]]\nname = \"on-push\"\ntype = \"on_change\"\n\
                   builders = [\"devel\"]\n";
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("devel", "[[builder.step]]\nname = \"make\"\ncommand = \"echo built\"\n")
        .extra_toml(changes)
        .extra_toml(&forges)
        .start()
        .await;
    let change = serde_json::json!({
        "author": "Alice <alice@example.org>", "comments": "a commit", "revision": "abc123",
        "branch": "main", "repository": "https://forge.example.org/scipion/scipion.git",
    });
    master.send_change("t0ken", change).await;
    let pending = master
        .wait_for("a pending status on each forge", WAIT, async || {
            let posted = statuses(&recorder);
            (posted.len() >= 4).then_some(posted)
        })
        .await;
    let expected = [("github", "pending"), ("gitlab", "pending"), ("gitea", "pending"), ("bitbucket", "INPROGRESS")];
    for (forge, state) in expected {
        let Some((_, posted, body)) = pending.iter().find(|(f, _, _)| *f == forge) else {
            panic!("no status on {forge}: {pending:#?}")
        };
        assert_eq!(posted, state, "{forge}: {body}");
        let link = body.get("target_url").or_else(|| body.get("url")).and_then(Value::as_str).unwrap_or("");
        assert!(link.contains("#/buildrequests/"), "{forge} links the request: {body}");
        let description = body["description"].as_str().unwrap_or("");
        assert_eq!(description, "Build pending.", "{forge}: {body}");
    }
    let gitlab = pending.iter().find(|(f, _, _)| *f == "gitlab").map(|(_, _, b)| b.clone()).expect("gitlab");
    assert_eq!((gitlab["name"].as_str(), gitlab["ref"].as_str()), (Some("kiln/devel"), Some("main")));

    master.start_worker(WorkerKind::Kiln, "w").await;
    let finals = [("github", "success"), ("gitlab", "success"), ("gitea", "success"), ("bitbucket", "SUCCESSFUL")];
    let posted = master
        .wait_for("the final status on each forge", WAIT, async || {
            let posted = statuses(&recorder);
            finals
                .iter()
                .all(|(forge, state)| posted.iter().rfind(|(f, _, _)| f == forge).is_some_and(|(_, s, _)| s == state))
                .then_some(posted)
        })
        .await;
    // Per forge: pending first, the final state last, nothing after it, and no state posted twice in a row
    // out of order (running may have been replaced by the final state before it was sent).
    for (forge, state) in finals {
        let sequence: Vec<&str> = posted.iter().filter(|(f, _, _)| *f == forge).map(|(_, s, _)| s.as_str()).collect();
        assert!(sequence.len() >= 2 && sequence.len() <= 3, "{forge}: {sequence:?}");
        assert_eq!(sequence.last(), Some(&state), "{forge}: {sequence:?}");
        assert!(sequence[..sequence.len() - 1].iter().all(|s| *s != state), "{forge}: {sequence:?}");
        if forge == "gitlab" && sequence.len() == 3 {
            assert_eq!(sequence[1], "running", "{sequence:?}");
        }
    }
}

/// A cancelled request's pending status is not left pending: the forge gets its final state.
#[tokio::test]
async fn a_request_cancelled_in_the_queue_ends_its_pending_status() {
    let recorder = Recorder::start(Vec::new()).await;
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("devel", "[[builder.step]]\nname = \"make\"\ncommand = \"echo built\"\n")
        .extra_toml(&format!(
            "\n[change_hooks.base]\ntoken = \"t0ken\"\n\n[[scheduler]]\nname = \"on-push\"\ntype = \"on_change\"\n\
             builders = [\"devel\"]\n\n[[reporter]]\nname = \"gh\"\ntype = \"github\"\nbase_url = \"{}\"\ntoken = \"T\"\n",
            recorder.url
        ))
        .start()
        .await;
    let change = serde_json::json!({
        "author": "Alice <alice@example.org>", "comments": "a commit", "revision": "abc123",
        "branch": "main", "repository": "https://forge.example.org/scipion/scipion.git",
    });
    master.send_change("t0ken", change).await;
    let requests = recorder.wait_requests(1, WAIT).await;
    assert_eq!(requests[0].json()["state"], "pending");
    let listed = master.get("buildrequests").await;
    let brid = master.id(&listed["buildrequests"][0], "buildrequestid");
    master.rpc(&format!("buildrequests/{brid}"), "cancel", serde_json::json!({})).await;
    let requests = recorder.wait_requests(2, WAIT).await;
    let body = requests[1].json();
    assert_eq!(
        (body["state"].as_str(), body["description"].as_str()),
        (Some("error"), Some("Build request cancelled."))
    );
    assert_eq!(body["context"], "kiln/devel");
}

/// `generator = "buildset"`: one mail for all the builders of a buildset, naming each build's result, and one
/// push with every build; not one per builder.
#[tokio::test]
async fn a_buildset_reporter_sends_one_mail_for_all_its_builders() {
    let dir = tempfile::tempdir().expect("dir");
    let sink = SmtpSink::start(dir.path(), 0, &[]).await;
    let push = Recorder::start(Vec::new()).await;
    let flag = dir.path().join("broken");
    std::fs::write(&flag, "").expect("break devel");
    let failing = format!(
        "[[builder.step]]\nname = \"make\"\ncommand = [\"sh\", \"-c\", {}]\n",
        toml_str(format!("if [ -e '{}' ]; then echo broke; exit 1; fi", flag.display()))
    );
    let reporters = format!(
        "\n[change_hooks.base]\ntoken = \"t0ken\"\n\n[[scheduler]]\nname = \"on-push\"\ntype = \"on_change\"\n\
         builders = [\"devel\", \"docs\"]\n\n[[reporter]]\nname = \"sets\"\ntype = \"mail\"\ngenerator = \"buildset\"\n\
         from = \"kiln@ci.example.org\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\nmode = [\"failing\", \"passing\"]\n\
         [[reporter]]\nname = \"hook\"\ntype = \"http\"\ngenerator = \"buildset\"\nurl = \"{}/hook\"\nmode = \"all\"\n",
        sink.port, push.url
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("devel", &failing)
        .builder("docs", "[[builder.step]]\nname = \"docs\"\ncommand = \"echo docs\"\n")
        .extra_toml(&reporters)
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    let change = serde_json::json!({
        "author": "Alice <alice@example.org>", "comments": "a commit", "revision": "abc123",
        "branch": "main", "repository": "https://example.invalid/r.git",
    });
    master.send_change("t0ken", change).await;
    let requests = push.wait_requests(1, WAIT).await;
    let body = requests[0].json();
    assert_eq!(body["event"], "buildset.finished", "{body}");
    assert_eq!(body["buildset"]["result"], "failure", "{body}");
    let builds = body["buildset"]["builds"].as_array().cloned().unwrap_or_default();
    let mut seen: Vec<(String, Value)> =
        builds.iter().map(|b| (b["builder"].as_str().unwrap_or("").to_owned(), b["results"].clone())).collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen, vec![("devel".to_owned(), Value::from(FAILURE)), ("docs".to_owned(), Value::from(SUCCESS))]);
    let bsid = body["buildset"]["bsid"].as_i64().expect("bsid");
    master
        .wait_for("the buildset mail sent", WAIT, async || {
            let listed = master.try_get(&format!("notifications?subject_id={bsid}&reporter=sets")).await?;
            let notices = listed["notifications"].as_array()?.clone();
            (notices.len() == 1 && notices[0]["state"] == "sent").then_some(())
        })
        .await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "one mail for the two builders: {messages:#?}");
    let data = messages[0]["data"].as_str().expect("data");
    assert!(data.contains("To: Alice <alice@example.org>"), "{data}");
    assert!(data.contains("devel #1: failure") && data.contains("docs #1: success"), "{data}");
    assert!(data.contains("Subject: =?utf-8?") || data.contains("devel, docs"), "{data}");
    sink.stop().await;
}

/// `kiln reconfig` adds, changes and removes reporters and lists them; a removed reporter's unsent notice is
/// given up (dead, with the reason) and its target hears nothing more; the new reporter gets the next build;
/// `/metrics` counts each reporter's notices by state.
#[tokio::test]
async fn reporters_take_a_reconfig_and_are_counted_in_the_metrics() {
    let dir = tempfile::tempdir().expect("dir");
    let broken = Recorder::start(vec![Answer::status(500); 100]).await;
    let kept = Recorder::start(Vec::new()).await;
    let added = Recorder::start(Vec::new()).await;
    let reporters = format!(
        "\n[[reporter]]\nname = \"old\"\ntype = \"slack\"\nwebhook_url = \"{}/services/old\"\ntimeout = 2\n\
         [[reporter]]\nname = \"keep\"\ntype = \"http\"\nurl = \"{}/hook\"\n",
        broken.url, kept.url
    );
    let master = master_with(&dir.path().join("never"), &reporters).await;
    let first = build_as_alice(&master).await;
    kept.wait_requests(1, WAIT).await;
    broken.wait_requests(1, WAIT).await;

    let path = master.master_dir().join("master.toml");
    let text = std::fs::read_to_string(&path).expect("master.toml");
    let old = format!(
        "[[reporter]]\nname = \"old\"\ntype = \"slack\"\nwebhook_url = \"{}/services/old\"\ntimeout = 2\n",
        broken.url
    );
    let new =
        format!("[[reporter]]\nname = \"new\"\ntype = \"mattermost\"\nwebhook_url = \"{}/hooks/new\"\n", added.url);
    assert!(text.contains(&old), "{text}");
    let keep = format!("[[reporter]]\nname = \"keep\"\ntype = \"http\"\nurl = \"{}/hook\"\n", kept.url);
    assert!(text.contains(&keep), "{text}");
    let text = text.replace(&old, &new).replace(&keep, &format!("{keep}mode = \"all\"\n"));
    std::fs::write(&path, text).expect("write master.toml");
    let dir_arg = master.master_dir().to_str().expect("UTF-8").to_owned();
    let output = support::kiln::run_kiln(&["reconfig", &dir_arg, "--timeout", "60"], Duration::from_secs(90)).await;
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{}", support::kiln::show(&output));
    for line in [
        "reporter 'old' removed",
        "reporter 'new' added",
        "reporter 'keep' changed",
        "reporter 'old': 1 unsent notice(s) given up",
    ] {
        assert!(printed.contains(line), "kiln reconfig did not say {line:?}: {printed}");
    }
    let listed = master.get(&format!("notifications?subject_id={first}&reporter=old")).await;
    let notice = &listed["notifications"][0];
    assert_eq!(notice["state"], "dead", "{listed}");
    assert!(notice["last_error"].as_str().unwrap_or("").contains("removed from the config"), "{listed}");
    let heard = broken.requests().len();

    let second = build_as_alice(&master).await;
    wait_sent(&master, second, 2).await; // keep (changed) and new
    let posts = added.wait_requests(1, WAIT).await;
    assert!(posts[0].json()["text"].as_str().unwrap_or("").contains("devel"), "{:?}", posts[0].json());
    assert_eq!(kept.requests().len(), 2, "the changed reporter goes on");
    assert_eq!(broken.requests().len(), heard, "a removed reporter's target hears nothing more");

    let url = format!("{}/metrics", master.url());
    let response = master.authorized(master.http().get(&url)).send().await.expect("GET /metrics");
    let metrics = response.text().await.expect("metrics text");
    for line in [
        "kiln_notifications{reporter=\"old\",state=\"dead\"} 1",
        "kiln_notifications{reporter=\"keep\",state=\"sent\"} 2",
        "kiln_notifications{reporter=\"new\",state=\"sent\"} 1",
        "kiln_notifications{reporter=\"new\",state=\"pending\"} 0",
        "kiln_notifications_retrying{reporter=\"new\"} 0",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line:?}:\n{metrics}");
    }
}
