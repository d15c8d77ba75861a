//! The worker's directory: `worker.toml` (how to reach the master) and `info/` (what the worker tells about
//! itself), as `kiln worker create` writes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_protocol::WorkerSettings;
use serde::Deserialize;

/// The settings file inside a worker's directory.
pub const CONFIG_FILE: &str = "worker.toml";

/// An error reading or writing a worker's directory; says which file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What `worker.toml` holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// `host:port` of the master's worker listener.
    pub master: String,
    pub name: String,
    pub password: String,
    /// Connect with `wss://`.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the certificate authority that signed the master's certificate (else the system's web
    /// roots). Relative to the worker directory.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this worker's client certificate, for a master that requires one (`tls_client_ca`).
    /// Relative to the worker directory; needs `tls_key` and `tls = true`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The WebSocket path on the master.
    #[serde(default = "default_path")]
    pub path: String,
    /// The longest wait between two connection attempts, in seconds.
    #[serde(default = "default_max_retry_delay")]
    pub max_retry_delay: f64,
    /// Seconds between WebSocket pings to the master; a master silent for three of them is taken as gone.
    #[serde(default = "default_keepalive")]
    pub keepalive: f64,
    /// The longest a command's output waits in the worker before it is sent, in seconds: the worker uses the
    /// smaller of this and the master's `buffer_timeout` (Buildbot's masters send 5 s).
    #[serde(default = "default_buffer_timeout")]
    pub buffer_timeout: f64,
    /// Let the master remove directories of builders it no longer has.
    #[serde(default)]
    pub delete_leftover_dirs: bool,
    /// The worker's directory (not in the file: where the file is).
    #[serde(skip)]
    pub basedir: PathBuf,
}

fn default_path() -> String {
    "/".to_string()
}

fn default_max_retry_delay() -> f64 {
    60.0
}

fn default_keepalive() -> f64 {
    30.0
}

/// Output reaches the master (and a client following the log) within a tenth of a second; a command printing
/// fast fills the 64 KiB buffer long before, so throughput does not change.
pub const DEFAULT_BUFFER_TIMEOUT: f64 = 0.1;

fn default_buffer_timeout() -> f64 {
    DEFAULT_BUFFER_TIMEOUT
}

impl WorkerConfig {
    /// Reads `DIR/worker.toml`.
    pub fn load(dir: &Path) -> Result<WorkerConfig, ConfigError> {
        let basedir = std::path::absolute(dir).map_err(|source| ConfigError::Io { path: dir.into(), source })?;
        let path = basedir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io { path: path.clone(), source })?;
        let mut config: WorkerConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
        config.basedir = basedir;
        config.validate().map_err(|message| ConfigError::Invalid { path, message })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(':') {
            return Err(format!("key 'name': '{}' must be non-empty and without ':'", self.name));
        }
        if let Err(why) = check_host_port(&self.master) {
            let hint = match parse_master(&self.master) {
                Ok(address) if address.host_port != self.master => format!(
                    "; write master = \"{}\"{}{} (`kiln worker create --master URL` converts a URL)",
                    address.host_port,
                    if address.tls == Some(true) { " and tls = true" } else { "" },
                    address.path.map(|p| format!(" and path = \"{p}\"")).unwrap_or_default()
                ),
                _ => String::new(),
            };
            return Err(format!("key 'master': {why}{hint}"));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("key 'tls_key': tls_cert is set but tls_key is missing".into()),
            (None, Some(_)) => return Err("key 'tls_cert': tls_key is set but tls_cert is missing".into()),
            (Some(_), Some(_)) if !self.tls => {
                return Err("key 'tls_cert': a client certificate needs tls = true".into());
            }
            _ => {}
        }
        if self.max_retry_delay.is_nan() || self.max_retry_delay <= 0.0 {
            return Err("key 'max_retry_delay': must be a positive number of seconds".into());
        }
        if self.keepalive.is_nan() || self.keepalive <= 0.0 {
            return Err("key 'keepalive': must be a positive number of seconds".into());
        }
        if self.buffer_timeout.is_nan() || self.buffer_timeout < 0.0 {
            return Err("key 'buffer_timeout': must be a number of seconds, 0 or more".into());
        }
        Ok(())
    }

    /// The master's WebSocket URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = if self.path.starts_with('/') { self.path.clone() } else { format!("/{}", self.path) };
        format!("{scheme}://{}{path}", self.master)
    }

    pub fn max_retry_delay(&self) -> Duration {
        Duration::try_from_secs_f64(self.max_retry_delay).unwrap_or(Duration::from_secs(60))
    }

    pub fn keepalive(&self) -> Duration {
        Duration::try_from_secs_f64(self.keepalive).unwrap_or(Duration::from_secs(30))
    }

    /// The master's `settings` with this worker's cap on the buffer timeout.
    pub fn capped(&self, settings: WorkerSettings) -> WorkerSettings {
        WorkerSettings { buffer_timeout: settings.buffer_timeout.min(self.buffer_timeout), ..settings }
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca_file.as_ref().map(|f| self.basedir.join(f))
    }

    /// The client certificate's and key's files, if the worker has one.
    pub fn client_certificate(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.basedir.join(self.tls_cert.as_ref()?), self.basedir.join(self.tls_key.as_ref()?)))
    }
}

/// The worker port of the master when `--master` names none (Buildbot's `create-worker` default).
pub const DEFAULT_MASTER_PORT: u16 = 9989;

/// Where a worker connects, read from what a user gives `kiln worker create --master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddress {
    /// `HOST:PORT` of the master's worker port.
    pub host_port: String,
    /// Whether the URL's scheme asks for TLS (`wss`, `https`) or not (`ws`, `http`); `None` without a scheme.
    pub tls: Option<bool>,
    /// The URL's path, when it has one other than `/`.
    pub path: Option<String>,
}

/// Reads `--master`: `HOST:PORT`, `HOST` (port 9989), or a `ws://`, `wss://`, `http://` or `https://` URL of
/// the master's worker port (`worker_listener.address` in its `master.toml`). An IPv6 host is in brackets.
pub fn parse_master(text: &str) -> Result<MasterAddress, String> {
    let form = "give HOST:PORT of the master's worker port (its worker_listener.address, 9989 by default), \
                or a ws:// or wss:// URL of it";
    let text = text.trim();
    let (tls, rest) = match text.split_once("://") {
        None => (None, text),
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => (Some(false), rest),
            "wss" | "https" => (Some(true), rest),
            _ => return Err(format!("'{text}': unknown scheme '{scheme}://'; {form}")),
        },
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash..])),
        None => (rest, None),
    };
    if authority.is_empty() {
        return Err(format!("'{text}' names no host; {form}"));
    }
    let host_port = match check_host_port(authority) {
        Ok(_) => authority.to_owned(),
        Err(_) if !authority.trim_start_matches('[').contains(':') || authority.ends_with(']') => {
            format!("{authority}:{DEFAULT_MASTER_PORT}")
        }
        Err(why) => return Err(format!("'{text}': {why}; {form}")),
    };
    check_host_port(&host_port).map_err(|why| format!("'{text}': {why}; {form}"))?;
    let path = path.filter(|p| *p != "/").map(str::to_owned);
    Ok(MasterAddress { host_port, tls, path })
}

/// Checks that `text` is `HOST:PORT` (`[IPv6]:PORT`); says what is wrong.
fn check_host_port(text: &str) -> Result<(), String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("'{text}' is not HOST:PORT (no port)"));
    };
    let host_ok = !host.is_empty()
        && if let Some(inner) = host.strip_prefix('[') {
            inner.strip_suffix(']').is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.contains([':', '/', '[', ']', '@', ' '])
        };
    if !host_ok {
        return Err(format!("'{text}' is not HOST:PORT (host '{host}')"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{text}' is not HOST:PORT (port '{port}' is not a number from 1 to 65535)")),
    }
}

/// What `kiln worker create` is given.
#[derive(Debug, Clone)]
pub struct NewWorker {
    /// What the user typed: see [`parse_master`].
    pub master: String,
    pub name: String,
    pub password: String,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub admin: String,
    pub host: String,
}

/// Creates a worker directory: `worker.toml` (readable by its owner only: it holds the password) and
/// `info/admin`, `info/host`. An existing `worker.toml` is not overwritten.
pub fn create(dir: &Path, new: &NewWorker) -> Result<PathBuf, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    let file = dir.join(CONFIG_FILE);
    if file.exists() {
        return Err(ConfigError::Invalid { path: file, message: "already exists; not overwritten".into() });
    }
    let invalid = |message: String| ConfigError::Invalid { path: file.clone(), message };
    let address = parse_master(&new.master).map_err(|why| invalid(format!("--master {why}")))?;
    let tls = match address.tls {
        Some(false) if new.tls => {
            return Err(invalid(format!("--master '{}' is a URL without TLS, and --tls asks for TLS", new.master)))
        }
        Some(tls) => tls,
        None => new.tls,
    };
    if new.ca_file.is_some() && !tls {
        return Err(invalid(format!("--ca-file is for TLS, and --master '{}' is without TLS", new.master)));
    }
    std::fs::create_dir_all(dir.join("info")).map_err(io(dir))?;
    let mut text = format!(
        "# Kiln worker settings (written by `kiln worker create`; see docs/worker.md).\n\
         master = {}\nname = {}\npassword = {}\ntls = {}\n",
        toml_string(&address.host_port),
        toml_string(&new.name),
        toml_string(&new.password),
        tls
    );
    match &new.ca_file {
        Some(ca) => text.push_str(&format!("ca_file = {}\n", toml_string(&ca.to_string_lossy()))),
        None => text.push_str("# ca_file = \"master-ca.pem\"\n"),
    }
    match &address.path {
        Some(path) => text.push_str(&format!("path = {}\n", toml_string(path))),
        None => text.push_str("# path = \"/\"\n"),
    }
    text.push_str("# max_retry_delay = 60\n# keepalive = 30\n# buffer_timeout = 0.1\n# delete_leftover_dirs = false\n");
    write_private(&file, &text).map_err(io(&file))?;
    for (name, contents) in [("admin", &new.admin), ("host", &new.host)] {
        let path = dir.join("info").join(name);
        std::fs::write(&path, format!("{contents}\n")).map_err(io(&path))?;
    }
    // Check that what was written reads back.
    WorkerConfig::load(dir)?;
    Ok(file)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_worker() -> NewWorker {
        NewWorker {
            master: "127.0.0.1:9989".into(),
            name: "w1".into(),
            password: "p\"a\\ss".into(),
            tls: false,
            ca_file: None,
            admin: "Admin <a@example.org>".into(),
            host: "a test host".into(),
        }
    }

    #[test]
    fn create_then_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        create(dir.path(), &new_worker()).expect("create");
        let config = WorkerConfig::load(dir.path()).expect("load");
        assert_eq!(config.password, "p\"a\\ss");
        assert_eq!(config.url(), "ws://127.0.0.1:9989/");
        assert_eq!(config.max_retry_delay(), Duration::from_secs(60));
        assert_eq!(std::fs::read_to_string(dir.path().join("info/host")).expect("host"), "a test host\n");
        let err = create(dir.path(), &new_worker()).expect_err("second create");
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn master_takes_host_port_or_a_url_of_the_worker_port() {
        let ok = |text: &str, host_port: &str, tls: Option<bool>, path: Option<&str>| {
            let address = parse_master(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let expected = MasterAddress { host_port: host_port.into(), tls, path: path.map(Into::into) };
            assert_eq!(address, expected, "{text}");
        };
        ok("127.0.0.1:9989", "127.0.0.1:9989", None, None);
        ok("master.example.org", "master.example.org:9989", None, None);
        ok("[::1]:9000", "[::1]:9000", None, None);
        ok("[::1]", "[::1]:9989", None, None);
        ok("ws://h:1/", "h:1", Some(false), None);
        ok("http://127.0.0.1:9989/", "127.0.0.1:9989", Some(false), None);
        ok("HTTPS://h.example.org:443/workers", "h.example.org:443", Some(true), Some("/workers"));
        ok("wss://h", "h:9989", Some(true), None);
        for bad in ["", "http://", "ftp://h:1", "h:0", "h:99999", "h:port", "ws://user@h:1", "a b:1", "::1:9989"] {
            let err = parse_master(bad).expect_err(bad);
            assert!(err.contains("HOST:PORT") || err.contains("names no host"), "{bad}: {err}");
        }
    }

    #[test]
    fn create_converts_a_url_and_refuses_a_contradiction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = NewWorker { master: "wss://m.example.org:9990/ws".into(), ..new_worker() };
        create(dir.path(), &new).expect("create");
        let config = WorkerConfig::load(dir.path()).expect("load");
        assert_eq!(config.url(), "wss://m.example.org:9990/ws");
        assert!(config.tls);

        let dir = tempfile::tempdir().expect("tempdir");
        let new = NewWorker { master: "http://127.0.0.1:8010/".into(), tls: true, ..new_worker() };
        let err = create(dir.path(), &new).expect_err("http with --tls").to_string();
        assert!(err.contains("--tls"), "{err}");
        assert!(!dir.path().join(CONFIG_FILE).exists(), "nothing written");
    }

    #[test]
    fn a_url_in_worker_toml_is_refused_with_the_right_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "master = \"wss://m.example.org:9990/\"\nname = \"w\"\npassword = \"p\"\n";
        std::fs::write(dir.path().join(CONFIG_FILE), text).expect("write");
        let err = WorkerConfig::load(dir.path()).expect_err("a URL").to_string();
        assert!(
            err.contains("key 'master'") && err.contains("master = \"m.example.org:9990\" and tls = true"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), "master = \"h:1\"\nname = \"w\"\npassword = \"p\"\ntsl = true\n")
            .expect("write");
        let err = WorkerConfig::load(dir.path()).expect_err("unknown key").to_string();
        assert!(err.contains("worker.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("tsl"), "{err}");
    }

    #[test]
    fn the_buffer_timeout_caps_the_masters_and_defaults_to_a_tenth_of_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        create(dir.path(), &new_worker()).expect("create");
        let config = WorkerConfig::load(dir.path()).expect("load");
        assert_eq!(config.buffer_timeout, DEFAULT_BUFFER_TIMEOUT);
        let buildbots = WorkerSettings::buildbot_defaults();
        assert_eq!(buildbots.buffer_timeout, 5.0);
        let capped = config.capped(buildbots.clone());
        assert_eq!(capped, WorkerSettings { buffer_timeout: 0.1, ..buildbots.clone() });
        let patient = WorkerConfig { buffer_timeout: 60.0, ..config.clone() };
        assert_eq!(patient.capped(buildbots.clone()), buildbots, "a longer cap leaves the master's setting");

        let file = dir.path().join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).expect("read");
        std::fs::write(&file, format!("{text}buffer_timeout = -1\n")).expect("write");
        let err = WorkerConfig::load(dir.path()).expect_err("negative").to_string();
        assert!(err.contains("buffer_timeout"), "{err}");
    }
    #[test]
    fn a_client_certificate_needs_its_key_and_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = "master = \"h:1\"\nname = \"w\"\npassword = \"p\"\n";
        let load = |text: &str| {
            std::fs::write(dir.path().join(CONFIG_FILE), text).expect("write");
            WorkerConfig::load(dir.path()).map_err(|e| e.to_string())
        };
        let config = load(&format!("{base}tls = true\ntls_cert = \"w.pem\"\ntls_key = \"w.key\"\n")).expect("valid");
        let (cert, key) = config.client_certificate().expect("a client certificate");
        assert_eq!((cert, key), (config.basedir.join("w.pem"), config.basedir.join("w.key")));
        let err = load(&format!("{base}tls = true\ntls_cert = \"w.pem\"\n")).expect_err("no key");
        assert!(err.contains("tls_key"), "{err}");
        let err = load(&format!("{base}tls_cert = \"w.pem\"\ntls_key = \"w.key\"\n")).expect_err("no TLS");
        assert!(err.contains("tls = true"), "{err}");
        assert!(load(base).expect("valid").client_certificate().is_none());
    }
}
