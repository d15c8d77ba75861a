//! End-to-end: secrets from the three providers reach the worker's commands and nothing else. With `kiln start`
//! and a real worker (Kiln's, and the stock `buildbot-worker`), a build echoes secrets, prints one split across
//! two writes with a pause between, prints a multi-line one, carries one in a builder property and one in a step
//! name; none of their values appears in a log, the API, the master's own output, or the store's file and WAL.
//! Also: a step naming an unknown or too short secret fails saying why; a force call with an undeclared
//! parameter is refused (no shell injection through properties); URL credentials are hidden; failed worker
//! logins from one address are slowed down.
//!
//!     cargo test -p kiln --test secrets

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::KilnMaster;

const TOKEN: &str = "tok-3f9a8c7e2b1d";
const KEY_LINES: [&str; 3] = ["KEYA-11111111", "KEYB-22222222", "KEYC-33333333"];
const ENV_TOKEN: &str = "env-5e6f7a8b9c0d";
const CMD_TOKEN: &str = "cmd-cmdtoken-77aa88bb";
const URL_TOKEN: &str = "tok3n-9999";

/// Every value that must not be seen.
fn values() -> Vec<&'static str> {
    let mut all = vec![TOKEN, ENV_TOKEN, CMD_TOKEN, URL_TOKEN];
    all.extend(KEY_LINES);
    all
}

const PROVIDERS: &str = r#"
[[secret_provider]]
type = "dir"
path = "secrets"

[[secret_provider]]
type = "env"
prefix = "KILN_E2E_SECRET_"

[[secret_provider]]
type = "command"
argv = ['test "$1" = cmdtoken && printf "cmd-%s-77aa88bb" "$1"']
shell = true
"#;

const BUILDER: &str = r#"
properties = { deploy_token = "%(secret:token)s" }

[[builder.step]]
name = "echo"
command = "echo token=%(secret:token)s env=$TOKEN cmd=%(secret:cmdtoken)s prop=%(prop:deploy_token)s repo=%(prop:repository)s"
env = { TOKEN = "%(secret:envtoken)s" }
log_environ = true

[[builder.step]]
name = "split"
command = '''v='%(secret:token)s'; printf 'half=%%s' "$(printf %%s "$v" | cut -c1-8)"; sleep 1; printf '%%s\n' "$(printf %%s "$v" | cut -c9-)"'''

[[builder.step]]
name = "multi"
command = '''printf '%%s\n' '%(secret:key)s' && echo done'''

[[builder.step]]
name = "named env-5e6f7a8b9c0d"
command = "echo named"
"#;

const BROKEN: &str = r#"
[[builder.step]]
name = "missing"
command = "echo %(secret:nope)s"

[[builder.step]]
name = "short"
command = "echo %(secret:pin)s"
always_run = true
"#;

fn write_secret(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

async fn master(kind: WorkerKind) -> KilnMaster {
    std::env::set_var("KILN_E2E_SECRET_envtoken", ENV_TOKEN);
    let mut master = KilnMaster::builder()
        .worker("w1", "pw-secret-tests")
        .builder("secrets", BUILDER)
        .builder("broken", BROKEN)
        .extra_toml(PROVIDERS)
        .start()
        .await;
    // Fetched when a build needs them: written after the master started.
    let dir = master.master_dir().join("secrets");
    std::fs::create_dir_all(&dir).expect("secrets dir");
    write_secret(&dir, "token", &format!("{TOKEN}\n"));
    write_secret(&dir, "key", &format!("{}\n", KEY_LINES.join("\n")));
    write_secret(&dir, "pin", "123\n");
    master.start_worker(kind, "w1").await;
    master.wait_worker_connected("w1").await;
    master
}

/// Every line of every log of a build, and the build's steps as the API shows them.
async fn logs_of(master: &KilnMaster, buildid: i64) -> (Vec<Value>, String) {
    let steps = master.steps(buildid).await;
    let mut text = String::new();
    for step in &steps {
        let stepid = master.id(step, "stepid");
        for slug in master.log_names(stepid).await {
            for line in master.log(stepid, &slug).await.lines {
                text.push_str(&format!("{}{}\n", line.channel, line.text));
            }
        }
    }
    (steps, text)
}

fn assert_clean(what: &str, text: &str) {
    for value in values() {
        assert!(!text.contains(value), "{what} shows the secret value {value:?}:\n{text}");
    }
}

fn store_bytes(master: &KilnMaster) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in ["state.sqlite", "state.sqlite-wal"] {
        if let Ok(mut f) = std::fs::File::open(master.master_dir().join(file)) {
            f.read_to_end(&mut bytes).expect("read the store");
        }
    }
    bytes
}

async fn secrets_stay_secret(kind: WorkerKind) {
    let master = master(kind).await;
    let repository = format!("https://ci:{URL_TOKEN}@example.com/r.git");
    let brid = master.force_with("secrets", json!({ "repository": repository })).await;
    let request = master.wait_request_complete(brid).await;
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
    let (steps, logs) = logs_of(&master, buildid).await;
    assert_eq!(master.results(&request), results::SUCCESS, "{logs}");
    assert_clean("the logs", &logs);

    // The command got the values: the log shows where they were, by name.
    let line = |needle: &str| logs.lines().find(|l| l.contains(needle)).unwrap_or_default().to_string();
    assert_eq!(
        line("otoken="),
        "otoken=<secret:token> env=<secret:envtoken> cmd=<secret:cmdtoken> prop=<secret:token> \
         repo=https://ci:***@example.com/r.git"
    );
    assert!(logs.contains("TOKEN=<secret:envtoken>"), "log_environ shows the variable, not its value:\n{logs}");
    assert_eq!(line("ohalf="), "ohalf=<secret:token>", "a value written in two parts, a second apart");
    let multi: Vec<&str> = logs.lines().filter(|l| l.starts_with("o<secret:key>")).collect();
    assert_eq!(multi.len(), 3, "each line of the multi-line secret:\n{logs}");
    assert_eq!(steps[3]["name"], "named <secret:envtoken>");

    // The API: the build, its steps, properties, buildset and source stamps.
    let mut api = String::new();
    for path in [
        format!("builds/{buildid}"),
        format!("builds/{buildid}/steps"),
        format!("builds/{buildid}/properties"),
        "buildsets".to_string(),
        "changes".to_string(),
    ] {
        api.push_str(&master.get(&path).await.to_string());
    }
    assert_clean("the API", &api);
    let props = master.get_one(&format!("builds/{buildid}/properties")).await;
    assert_eq!(props["deploy_token"], json!(["<secret:token>", "Builder"]));
    assert_eq!(props["repository"][0], "https://ci:***@example.com/r.git");

    // A step that names a secret nobody has, or one too short, fails saying which (never a value).
    let brid = master.force("broken").await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::FAILURE);
    let buildid = master.id(&master.builds_of_request(brid).await[0], "buildid");
    let (steps, logs) = logs_of(&master, buildid).await;
    assert!(steps.iter().all(|s| s["results"] == results::FAILURE), "{steps:?}");
    assert!(logs.contains("step 'missing' cannot run: secret 'nope' is unknown: no provider has it"), "{logs}");
    assert!(logs.contains("step 'short' cannot run: secret 'pin' is refused"), "{logs}");
    assert!(!logs.contains("123"), "{logs}");

    assert_clean("the master's output", &master.last_output());
    let store = store_bytes(&master);
    assert!(!store.is_empty());
    for value in values() {
        let found = store.windows(value.len()).any(|w| w == value.as_bytes());
        assert!(!found, "the store holds the secret value {value:?}");
    }
}

#[tokio::test]
async fn secrets_stay_secret_with_a_kiln_worker() {
    secrets_stay_secret(WorkerKind::Kiln).await;
}

#[tokio::test]
async fn secrets_stay_secret_with_buildbot_worker() {
    secrets_stay_secret(WorkerKind::Buildbot).await;
}

#[tokio::test]
async fn a_force_with_an_undeclared_parameter_is_refused_and_starts_nothing() {
    let builder = r#"
[[builder.step]]
name = "version"
command = "echo version=%(prop:version)s"
"#;
    let master = KilnMaster::builder().worker("w1", "pw").builder("b", builder).start().await;
    let call = json!({
        "jsonrpc": "2.0", "method": "force", "id": 1,
        "params": { "version": "1; echo INJECTED-$((6*7))" },
    });
    let url = format!("{}/api/v2/forceschedulers/force-b", master.url());
    // As the test admin: the refusal is for the parameter, not for want of a login.
    let response = master.authorized(reqwest::Client::new().post(&url)).json(&call).send().await.expect("POST");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("parameter 'version'") && message.contains("not a parameter"), "{body}");
    assert_eq!(master.get("buildsets").await["buildsets"], json!([]), "nothing was submitted");
}

/// One worker-port login with a wrong password: the HTTP status the master answers.
fn try_login(port: u16) -> u16 {
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let credentials = "dzE6Z3Vlc3M="; // base64 of "w1:guess"
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Basic {credentials}\r\n\r\n"
    );
    if tcp.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match tcp.read_exact(&mut head) {
        Ok(()) => String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn guessing_a_worker_password_is_slowed_down_and_the_worker_still_gets_in() {
    let mut master = KilnMaster::builder().worker("w1", "the-right-one").builder("b", BROKEN).start().await;
    let port = master.worker_port();
    let (checked, refused, elapsed) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (mut checked, mut refused) = (0u32, 0u32);
        // As fast as one client can, for two seconds: the master checks about one guess a second.
        while started.elapsed().as_secs_f64() < 2.0 {
            match try_login(port) {
                401 => checked += 1,
                429 => refused += 1,
                other => panic!("unexpected answer {other}"),
            }
        }
        (checked, refused, started.elapsed().as_secs_f64())
    })
    .await
    .expect("the flood");
    let rate = f64::from(checked + refused) / elapsed;
    eprintln!("{checked} guesses checked, {refused} refused unchecked in {elapsed:.1} s ({rate:.0} attempts/s)");
    let allowed = kiln_master::workers::FAILURE_BURST
        + (elapsed / kiln_master::workers::FAILURE_REFILL.as_secs_f64()).ceil() as u32;
    assert!(checked <= allowed, "{checked} guesses were checked in {elapsed:.1} s; at most {allowed} may be");
    assert!(refused > checked, "most of {} attempts were refused unchecked", checked + refused);
    // The real worker, on the same address, retries with its backoff and gets in once the address has waited.
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;
    let line = master.wait_output_line("worker attached").await;
    assert!(line.contains("address=127.0.0.1:"), "the log says where the worker is: {line}");
}

#[tokio::test]
async fn a_change_from_a_repository_url_with_credentials_shows_none() {
    let master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"true\"")
        .extra_toml("[change_hooks.base]\ntoken = \"hook-token-1234\"")
        .start()
        .await;
    let url = master.url().to_string();
    let repository = format!("https://ci:{URL_TOKEN}@example.com/r.git");
    let args = [
        "sendchange",
        "--master",
        &url,
        "--token",
        "hook-token-1234",
        "--author",
        "a",
        "--comments",
        "c",
        "--repository",
        &repository,
    ];
    let output = support::kiln::run_kiln(&args, std::time::Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", support::kiln::show(&output));
    let changes = master.get("changes").await;
    assert_eq!(changes["changes"][0]["repository"], "https://ci:***@example.com/r.git", "{changes}");
    assert_clean("the changes", &changes.to_string());
    assert_clean("the master's output", &master.last_output());
    let store = store_bytes(&master);
    assert!(!store.windows(URL_TOKEN.len()).any(|w| w == URL_TOKEN.as_bytes()), "the store holds the token");
}
