//! Where secrets come from (`[[secret_provider]]`): a directory with one file per secret (Buildbot's
//! `SecretInAFile`), environment variables, or a command that prints the secret (`pass show NAME`,
//! `vault kv get -field=value NAME`). Providers are asked in the config's order; the first that has the name wins.
//!
//! A secret is fetched when a build needs it and kept for that build only ([`Fetched`]); nothing here writes it
//! anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::redact::value_lines;
use super::{log, Redactor, Secret};

/// The default of `min_length`: shorter values are refused as secrets (they would censor unrelated text).
pub const DEFAULT_MIN_LENGTH: usize = 4;
/// The default of a `command` provider's `timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[secret_provider]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderDef {
    /// `type = "dir"`: the file `path/NAME`, its trailing newline stripped; the file must be readable by its
    /// owner only.
    Dir { path: PathBuf },
    /// `type = "env"`: the environment variable `PREFIX` + NAME of the master's process.
    Env { prefix: String },
    /// `type = "command"`: runs `argv` (each `{name}` replaced by the secret's name, else the name appended as
    /// the last argument) and takes its standard output, its trailing newline stripped; an exit code other than
    /// 0 means the command does not have the secret. With `shell`, `argv` is one shell script run by `/bin/sh -c`
    /// with the name as `$1`.
    Command { argv: Vec<String>, shell: bool, timeout: Duration },
}

impl ProviderDef {
    fn describe(&self) -> String {
        match self {
            ProviderDef::Dir { path } => format!("dir {}", path.display()),
            ProviderDef::Env { prefix } => format!("env {prefix}*"),
            ProviderDef::Command { argv, .. } => format!("command `{}`", argv.join(" ")),
        }
    }
}

/// The secrets configuration: the providers in order and the shortest value accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsConfig {
    pub providers: Vec<ProviderDef>,
    /// Values (each line of a multi-line one) shorter than this many characters are refused.
    pub min_length: usize,
}

impl Default for SecretsConfig {
    fn default() -> SecretsConfig {
        SecretsConfig { providers: Vec::new(), min_length: DEFAULT_MIN_LENGTH }
    }
}

/// Why a secret could not be had. The messages name the secret and where it was looked for, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "'{name}' is not a secret name (letters, digits, '_', '-', '.', '/' between names; not starting with '.')"
    )]
    BadName { name: String },
    #[error("{error}")]
    Template { error: String },
    #[error("secret '{name}' is unknown: no provider has it (asked: {asked})")]
    Unknown { name: String, asked: String },
    #[error(
        "secret '{name}': the file {path} is readable by group or others (mode {mode:o}); make it readable by \
         its owner only (chmod 600 {path})"
    )]
    Exposed { name: String, path: String, mode: u32 },
    #[error("secret '{name}': cannot read {path}: {error}")]
    Read { name: String, path: String, error: String },
    #[error("secret '{name}': the provider {provider} {what}")]
    Command { name: String, provider: String, what: String },
    #[error(
        "secret '{name}' is refused: a line of its value is {len} characters long, shorter than the minimum of \
         {min} (secrets.min_length), and would censor unrelated text"
    )]
    TooShort { name: String, len: usize, min: usize },
    /// Not asked for at all: the build is one that gets no secrets (a pull request from a fork).
    #[error("secret '{name}' is withheld: {why}")]
    Withheld { name: String, why: String },
}

/// The configured providers. Cheap to clone.
#[derive(Clone, Default)]
pub struct Providers {
    config: Arc<SecretsConfig>,
}

impl Providers {
    pub fn new(config: SecretsConfig) -> Providers {
        Providers { config: Arc::new(config) }
    }

    pub fn config(&self) -> &SecretsConfig {
        &self.config
    }

    /// The secret `name` from the first provider that has it.
    pub async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        check_name(name)?;
        for provider in &self.config.providers {
            if let Some(value) = lookup(provider, name).await? {
                self.check_length(name, &value)?;
                return Ok(value);
            }
        }
        let asked = match self.config.providers.len() {
            0 => "no [[secret_provider]] is configured".to_string(),
            _ => self.config.providers.iter().map(ProviderDef::describe).collect::<Vec<_>>().join(", "),
        };
        Err(SecretError::Unknown { name: name.to_string(), asked })
    }

    fn check_length(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        let min = self.config.min_length;
        let shortest = value_lines(value.expose()).map(|l| l.chars().count()).min().unwrap_or(0);
        if shortest < min {
            return Err(SecretError::TooShort { name: name.to_string(), len: shortest, min });
        }
        Ok(())
    }

    /// Fetches every secret of `names` (each once), for one build or one reporter. The master's own log
    /// censors them from now on, as long as the result lives.
    pub async fn fetch<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Fetched {
        let mut fetched = Fetched::default();
        for name in names {
            if fetched.values.contains_key(name) || fetched.errors.contains_key(name) {
                continue;
            }
            match self.get(name).await {
                Ok(value) => {
                    fetched.values.insert(name.to_string(), value);
                }
                Err(e) => {
                    fetched.errors.insert(name.to_string(), e);
                }
            }
        }
        fetched.redactor = Redactor::new(fetched.values.iter().map(|(n, v)| (n.as_str(), v)));
        log::censor(&fetched.redactor);
        fetched
    }

    /// Renders the `%(secret:NAME)s` forms of a setting (a reporter's SMTP password, a chat or forge token):
    /// the text, and a redactor for what the caller then shows or logs.
    pub async fn render(&self, template: &str) -> Result<(Secret, Fetched), SecretError> {
        let parsed =
            crate::interpolate::Template::parse(template).map_err(|e| SecretError::BadName { name: e.to_string() })?;
        let names = parsed.secret_names();
        let fetched = self.fetch(names.iter().map(String::as_str)).await;
        if let Some(error) = fetched.errors.values().next() {
            return Err(error.clone());
        }
        let text = parsed.render(&fetched);
        Ok((Secret::new(text), fetched))
    }
}

/// The secrets fetched for one build: values by name, the errors of those that could not be had, and the
/// redactor that censors the values. `Debug` shows the names only.
#[derive(Default)]
pub struct Fetched {
    values: BTreeMap<String, Secret>,
    errors: BTreeMap<String, SecretError>,
    redactor: Redactor,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .field("errors", &self.errors)
            .finish()
    }
}

impl Fetched {
    /// No secret of `names`, each refused for `why` (a build that gets none; no provider is asked).
    pub fn withheld<'n>(names: impl IntoIterator<Item = &'n str>, why: &str) -> Fetched {
        let errors = names
            .into_iter()
            .map(|name| (name.to_string(), SecretError::Withheld { name: name.to_string(), why: why.to_string() }))
            .collect();
        Fetched { errors, ..Fetched::default() }
    }

    pub fn value(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }

    /// Why `name` could not be had, if it was asked for and could not.
    pub fn error(&self, name: &str) -> Option<&SecretError> {
        self.errors.get(name)
    }

    /// The redactor of every fetched value.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The values by name (for the environment of a command: which variables are secrets).
    pub fn values(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.values.iter().map(|(n, v)| (n.as_str(), v))
    }
}

impl crate::interpolate::Lookup for Fetched {
    fn property(&self, _name: &str) -> Option<&serde_json::Value> {
        None
    }
    fn source(&self, _codebase: &str, _attr: &str) -> Option<serde_json::Value> {
        None
    }
    fn worker(&self, _key: &str) -> Option<serde_json::Value> {
        None
    }
    fn secret(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(Secret::expose)
    }
}

/// Secret names are file names under a `dir` provider's path, environment variable suffixes and command
/// arguments: letters, digits, `_`, `-`, `.`, and `/` between non-empty names (`pass`'s folders), never `..`.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.split('/').all(|part| !part.is_empty() && part != ".." && part != ".")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if valid {
        Ok(())
    } else {
        Err(SecretError::BadName { name: name.to_string() })
    }
}

async fn lookup(provider: &ProviderDef, name: &str) -> Result<Option<Secret>, SecretError> {
    match provider {
        ProviderDef::Dir { path } => from_file(&path.join(name), name).await,
        ProviderDef::Env { prefix } => Ok(std::env::var(format!("{prefix}{name}")).ok().map(Secret::new)),
        ProviderDef::Command { argv, shell, timeout } => from_command(provider, argv, *shell, *timeout, name).await,
    }
}

async fn from_file(path: &Path, name: &str) -> Result<Option<Secret>, SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let read =
        |e: std::io::Error| SecretError::Read { name: name.to_string(), path: shown.clone(), error: e.to_string() };
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Exposed { name: name.to_string(), path: shown, mode });
    }
    let text = tokio::fs::read_to_string(path).await.map_err(read)?;
    Ok(Some(Secret::new(strip_newline(text))))
}

async fn from_command(
    provider: &ProviderDef,
    argv: &[String],
    shell: bool,
    timeout: Duration,
    name: &str,
) -> Result<Option<Secret>, SecretError> {
    let failed = |what: String| SecretError::Command { name: name.to_string(), provider: provider.describe(), what };
    let mut command = if shell {
        let mut command = tokio::process::Command::new("/bin/sh");
        command.arg("-c").arg(argv.join(" ")).arg("kiln-secret").arg(name);
        command
    } else {
        let Some((program, args)) = argv.split_first() else { return Err(failed("has an empty argv".into())) };
        let mut command = tokio::process::Command::new(program);
        let mut named = false;
        for arg in args {
            named |= arg.contains("{name}");
            command.arg(arg.replace("{name}", name));
        }
        if !named {
            command.arg(name);
        }
        command
    };
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = command.spawn().map_err(|e| failed(format!("could not be started: {e}")))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(failed(format!("failed: {e}"))),
        Err(_) => return Err(failed(format!("did not answer within {} s (timeout)", timeout.as_secs_f64()))),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        tracing::debug!(secret = name, status = %output.status, stderr = %stderr.lines().next().unwrap_or(""),
            "a secret provider's command does not have the secret");
        return Ok(None);
    }
    let text = String::from_utf8(output.stdout).map_err(|_| failed("printed something that is not UTF-8".into()))?;
    Ok(Some(Secret::new(strip_newline(text))))
}

/// The text without one trailing `\n` (or `\r\n`).
fn strip_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn providers(providers: Vec<ProviderDef>) -> Providers {
        Providers::new(SecretsConfig { providers, min_length: DEFAULT_MIN_LENGTH })
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[tokio::test]
    async fn a_dir_provider_reads_private_files_only() {
        let dir = tempfile::tempdir().expect("dir");
        write(&dir.path().join("token"), "tok-en-1\n", 0o600);
        write(&dir.path().join("open"), "open-value\n", 0o644);
        write(&dir.path().join("key"), "line-one\nline-two\n", 0o400);
        let p = providers(vec![ProviderDef::Dir { path: dir.path().to_path_buf() }]);
        assert_eq!(p.get("token").await.expect("token").expose(), "tok-en-1");
        assert_eq!(p.get("key").await.expect("key").expose(), "line-one\nline-two");
        let exposed = p.get("open").await.expect_err("group/world readable");
        assert!(matches!(exposed, SecretError::Exposed { mode: 0o644, .. }), "{exposed}");
        assert!(exposed.to_string().contains("chmod 600"), "{exposed}");
        assert!(matches!(p.get("missing").await, Err(SecretError::Unknown { .. })));
        assert!(matches!(p.get("../token").await, Err(SecretError::BadName { .. })));
        assert!(matches!(p.get("a/../../x").await, Err(SecretError::BadName { .. })));
    }

    #[tokio::test]
    async fn providers_are_asked_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        write(&dir.path().join("both"), "from-the-dir", 0o600);
        // The environment is read, never written (set_var races with other tests' threads): PATH is set.
        let path = std::env::var("PATH").expect("PATH");
        write(&dir.path().join("PATH"), "from-the-dir", 0o600);
        let p = providers(vec![
            ProviderDef::Dir { path: dir.path().to_path_buf() },
            ProviderDef::Env { prefix: String::new() },
        ]);
        assert_eq!(p.get("both").await.expect("both").expose(), "from-the-dir");
        assert_eq!(p.get("PATH").await.expect("dir first").expose(), "from-the-dir");
        let env_only = providers(vec![ProviderDef::Env { prefix: String::new() }]);
        assert_eq!(env_only.get("PATH").await.expect("env").expose(), path);
        let p = providers(vec![
            ProviderDef::Dir { path: dir.path().to_path_buf() },
            ProviderDef::Env { prefix: "KILN_TEST_PROVIDER_".into() },
        ]);
        let unknown = p.get("nowhere").await.expect_err("unknown").to_string();
        assert!(unknown.contains("'nowhere'") && unknown.contains("env KILN_TEST_PROVIDER_*"), "{unknown}");
    }

    #[tokio::test]
    async fn a_command_provider_runs_without_a_shell_and_with_a_timeout() {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let echo = ProviderDef::Command {
            argv: argv(&["echo", "value-of-{name}"]),
            shell: false,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        };
        assert_eq!(providers(vec![echo]).get("x1").await.expect("echo").expose(), "value-of-x1");
        // The name is an argument, never shell text.
        let printf = ProviderDef::Command {
            argv: argv(&["printf", "%s-secret"]),
            shell: false,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        };
        assert_eq!(providers(vec![printf]).get("a_b").await.expect("printf").expose(), "a_b-secret");
        let failing = ProviderDef::Command { argv: argv(&["false"]), shell: false, timeout: DEFAULT_COMMAND_TIMEOUT };
        assert!(matches!(providers(vec![failing]).get("x1").await, Err(SecretError::Unknown { .. })));
        let script = ProviderDef::Command {
            argv: argv(&["test \"$1\" = good && echo \"shell-$1\""]),
            shell: true,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        };
        let p = providers(vec![script]);
        assert_eq!(p.get("good").await.expect("script").expose(), "shell-good");
        assert!(matches!(p.get("bad1").await, Err(SecretError::Unknown { .. })));
        let slow = ProviderDef::Command { argv: argv(&["sleep 30"]), shell: true, timeout: Duration::from_millis(200) };
        let error = providers(vec![slow]).get("x1").await.expect_err("timeout").to_string();
        assert!(error.contains("timeout"), "{error}");
    }

    #[tokio::test]
    async fn short_values_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        write(&dir.path().join("pin"), "123\n", 0o600);
        write(&dir.path().join("multi"), "long-enough\nab\n", 0o600);
        let p = providers(vec![ProviderDef::Dir { path: dir.path().to_path_buf() }]);
        let error = p.get("pin").await.expect_err("short");
        assert_eq!(error, SecretError::TooShort { name: "pin".into(), len: 3, min: 4 });
        assert!(matches!(p.get("multi").await, Err(SecretError::TooShort { len: 2, .. })));
        let fetched = p.fetch(["pin", "pin"]).await;
        assert!(fetched.value("pin").is_none() && fetched.error("pin").is_some());
    }

    #[tokio::test]
    async fn a_setting_renders_with_its_secrets() {
        let dir = tempfile::tempdir().expect("dir");
        write(&dir.path().join("smtp"), "smtp-password\n", 0o600);
        let p = providers(vec![ProviderDef::Dir { path: dir.path().to_path_buf() }]);
        let (text, fetched) = p.render("user:%(secret:smtp)s").await.expect("render");
        assert_eq!(text.expose(), "user:smtp-password");
        assert_eq!(fetched.redactor().redact(text.expose()), "user:<secret:smtp>");
        assert!(matches!(p.render("%(secret:absent)s").await, Err(SecretError::Unknown { .. })));
    }
}
