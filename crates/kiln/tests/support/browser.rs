//! A real headless Chromium for end-to-end tests of the web UI, driven over WebDriver (`fantoccini`).
//!
//! ```ignore
//! let Some(browser) = Browser::start().await else { return }; // KILN_SKIP_BROWSER=1
//! browser.goto(&format!("{}/builders", master.url())).await;
//! browser.wait_until("the table", "document.querySelector('table') !== null").await;
//! assert_accessible(&browser).await;
//! browser.assert_no_problems().await;
//! browser.close().await;
//! ```
//!
//! One `chromedriver` serves every test of a test binary: started on first use (from `$CHROMEDRIVER`, else
//! `chromedriver` on `PATH`) on a free port of 127.0.0.1, and ended with the binary (it is the child of a
//! thread that lives as long as the process, with `PR_SET_PDEATHSIG`). Each [`Browser`] is one session, a
//! Chromium with its own temporary profile (`$CHROME`, else `chromium` on `PATH`). Everything the page logs as
//! an error, and every request that failed (the browser logs those too), is a problem: [`Browser::problems`]
//! reads them and [`Browser::assert_no_problems`] fails on any. [`assert_accessible`] runs axe-core (installed
//! by `scripts/test`, found at `$KILN_AXE_JS` or in `~/.cache/kiln/axe`) and fails on WCAG 2 A/AA violations.
//! Without a driver the tests fail, saying to run `scripts/test`, unless `KILN_SKIP_BROWSER=1`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// How long a page gets for what a test waits on.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a script run in the page may take (a wait's timeout is below it).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long chromedriver gets to answer once started.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);

/// Chromium's command-line flags: headless, as root in a container, and quiet (no network of its own).
const CHROME_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// The executable named by `$var`, else `name` on `PATH`.
fn executable(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Whether the browser tests are to be skipped (`KILN_SKIP_BROWSER=1`).
pub fn skipped() -> bool {
    std::env::var("KILN_SKIP_BROWSER").is_ok_and(|v| v == "1")
}

/// The address of this binary's chromedriver, started on first use.
fn driver() -> SocketAddr {
    static DRIVER: OnceLock<Result<SocketAddr, String>> = OnceLock::new();
    match DRIVER.get_or_init(start_driver) {
        Ok(address) => *address,
        Err(why) => panic!("{why}"),
    }
}

fn start_driver() -> Result<SocketAddr, String> {
    let path = executable("CHROMEDRIVER", "chromedriver").ok_or_else(|| {
        "no chromedriver: set $CHROMEDRIVER or put chromedriver on PATH (scripts/test installs Debian's chromium \
         and chromium-driver), or set KILN_SKIP_BROWSER=1 to skip the browser tests"
            .to_string()
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for chromedriver: {e}"))?
        .port();
    let log = std::env::temp_dir().join(format!("kiln-chromedriver-{}.log", std::process::id()));
    let (started, result) = std::sync::mpsc::channel();
    // The child of a thread that never ends: PR_SET_PDEATHSIG kills it when the thread's process ends.
    std::thread::spawn(move || {
        let mut command = Command::new(&path);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", path.display()));
        let failed = child.is_err();
        let _ = started.send(child.map(|_| ()));
        if !failed {
            loop {
                std::thread::park();
            }
        }
    });
    result.recv().map_err(|e| format!("chromedriver's thread ended: {e}"))??;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + DRIVER_TIMEOUT;
    loop {
        if let Ok(status) = http(address, "GET", "/status", None) {
            if status.contains("\"ready\":true") {
                return Ok(address);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("chromedriver did not answer on {address} within {DRIVER_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small blocking HTTP/1.1 exchange with the driver (for its status, the browser's log, and closing a session
/// from `Drop`); returns the body.
fn http(address: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    // The driver may keep the connection open: read the head, then as many bytes as it announces.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
            });
            let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
            match length {
                Some(n) if body.len() >= n => return Ok(body[..n].to_string()),
                None if chunked && body.ends_with("0\r\n\r\n") => return Ok(unchunk(body)),
                _ => {}
            }
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            let text = String::from_utf8_lossy(&answer);
            return Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default());
        }
        answer.extend_from_slice(&buffer[..read]);
    }
}

/// A chunked body's data.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// One Chromium session.
pub struct Browser {
    client: Option<Client>,
    session: String,
    driver: SocketAddr,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new headless Chromium; `None` when the browser tests are skipped.
    pub async fn start() -> Option<Browser> {
        if skipped() {
            eprintln!("browser tests skipped (KILN_SKIP_BROWSER=1)");
            return None;
        }
        let driver = tokio::task::spawn_blocking(driver).await.unwrap_or_else(|e| panic!("{e}"));
        let chrome = executable("CHROME", "chromium").unwrap_or_else(|| {
            panic!("no chromium: set $CHROME or put chromium on PATH (scripts/test installs Debian's chromium)")
        });
        let profile = tempfile::Builder::new().prefix("kiln-chromium-").tempdir().expect("a profile directory");
        let mut args: Vec<String> = CHROME_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chrome, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
            // The page's own waits (wait_until) end sooner than this.
            "timeouts": { "script": SCRIPT_TIMEOUT.as_millis() as u64, "pageLoad": 60_000 },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://{driver}"))
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver at {driver}: {e}"));
        let session = client.session_id().await.ok().flatten().expect("a session id");
        Some(Browser { client: Some(client), session, driver, _profile: profile })
    }

    /// The WebDriver client, for what this harness does not wrap.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Navigates to `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) {
        self.client().goto(url).await.unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
    }

    /// The value of the JavaScript expression `expression` in the page.
    pub async fn eval(&self, expression: &str) -> Value {
        let script = format!("return ({expression});");
        self.client().execute(&script, Vec::new()).await.unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Runs `script` (statements) in the page; `arguments[0]`… are `args`.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client().execute(script, args).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until the JavaScript expression `expression` is truthy in the page (checked each animation frame,
    /// at most [`PAGE_TIMEOUT`]); returns its value.
    pub async fn wait_until(&self, what: &str, expression: &str) -> Value {
        self.wait_until_within(what, expression, PAGE_TIMEOUT).await
    }

    /// [`Browser::wait_until`] with another timeout (below five minutes).
    pub async fn wait_until_within(&self, what: &str, expression: &str, timeout: Duration) -> Value {
        // The page checks on each frame and answers when it holds; the driver's script timeout bounds it.
        let script = format!(
            "const done = arguments[arguments.length - 1]; const end = Date.now() + {ms};\n\
             const check = () => {{ let v; try {{ v = ({expression}); }} catch (e) {{ v = undefined; }}\n\
               if (v) done({{ ok: v }}); else if (Date.now() > end) done({{ timeout: true }});\n\
               else requestAnimationFrame(check); }};\n\
             check();",
            ms = timeout.as_millis()
        );
        let answer = self
            .client()
            .execute_async(&script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        match answer.get("ok") {
            Some(value) => value.clone(),
            None => {
                let problems = self.problems().await;
                let url = self.client().current_url().await.map(|u| u.to_string()).unwrap_or_default();
                panic!("{what}: not within {timeout:?} ({expression}) on {url}; the browser's problems: {problems:?}")
            }
        }
    }

    /// What the browser logged as errors since the last call: console errors, uncaught exceptions, requests
    /// that failed (a status of 400 or more, or no answer), CSP refusals.
    pub async fn problems(&self) -> Vec<String> {
        let (driver, path) = (self.driver, format!("/session/{}/se/log", self.session));
        let answer =
            tokio::task::spawn_blocking(move || http(driver, "POST", &path, Some(&json!({ "type": "browser" }))))
                .await
                .expect("the log reader")
                .unwrap_or_else(|e| panic!("cannot read the browser's log: {e}"));
        let log: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("the browser's log: {e}: {answer}"));
        log["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Fails if the browser logged any error since the last look (see [`Browser::problems`]).
    pub async fn assert_no_problems(&self) {
        let problems = self.problems().await;
        assert!(problems.is_empty(), "the page had problems: {problems:#?}");
    }

    /// Ends the session (and its Chromium).
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    /// A test that failed did not close its session: end it (and its Chromium) here.
    fn drop(&mut self) {
        if self.client.take().is_some() {
            let _ = http(self.driver, "DELETE", &format!("/session/{}", self.session), None);
        }
    }
}

/// axe-core's script, installed by `scripts/test`.
fn axe_source() -> &'static str {
    static AXE: OnceLock<String> = OnceLock::new();
    AXE.get_or_init(|| {
        let path = std::env::var_os("KILN_AXE_JS").map(PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
            cache.join("kiln/axe/node_modules/axe-core/axe.min.js")
        });
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "no axe-core at {} ({e}): run scripts/test (it installs it), set $KILN_AXE_JS, or set \
                 KILN_SKIP_BROWSER=1",
                path.display()
            )
        })
    })
}

/// Runs axe-core on the page `browser` shows and fails on any WCAG 2.0/2.1 A or AA violation, listing them.
pub async fn assert_accessible(browser: &Browser) {
    browser.run(axe_source(), Vec::new()).await;
    let script = "const done = arguments[arguments.length - 1];\n\
        axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })\n\
          .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,\n\
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary) }))))\n\
          .catch(e => done([{ id: 'axe-error', help: String(e) }]));";
    let violations =
        browser.client().execute_async(script, Vec::new()).await.unwrap_or_else(|e| panic!("running axe-core: {e}"));
    let url = browser.client().current_url().await.map(|u| u.to_string()).unwrap_or_default();
    let list = violations.as_array().cloned().unwrap_or_default();
    assert!(
        list.is_empty(),
        "axe-core found WCAG A/AA violations on {url}:\n{}",
        serde_json::to_string_pretty(&list).unwrap_or_default()
    );
}
