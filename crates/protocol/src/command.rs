//! The commands a worker runs (`start_command`'s `command_name` and `args`), as the msgpack protocol sends
//! them: every path is already absolute on the worker (the master joins them to the worker's base dir).

use rmpv::Value;

use crate::fields::{as_text, kind, map, opt, scalar_text, FieldError, Fields};

/// Version each command reports in `worker_commands` (Buildbot's `command_version`).
pub const COMMAND_VERSION: &str = "3.3";

/// Every `command_name` a worker accepts, including Buildbot's camel-case aliases.
pub const COMMAND_NAMES: &[&str] = &[
    "shell",
    "upload_file",
    "uploadFile",
    "upload_directory",
    "uploadDirectory",
    "download_file",
    "downloadFile",
    "mkdir",
    "rmdir",
    "cpdir",
    "stat",
    "glob",
    "listdir",
    "rmfile",
];

/// A command with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(ShellArgs),
    UploadFile(UploadFileArgs),
    UploadDirectory(UploadDirectoryArgs),
    DownloadFile(DownloadFileArgs),
    /// Create directories (and their parents); existing ones are fine.
    Mkdir {
        paths: Vec<String>,
    },
    /// Remove directory trees.
    Rmdir {
        paths: Vec<String>,
        timeout: Option<f64>,
        max_time: Option<f64>,
    },
    /// Copy a directory tree.
    Cpdir {
        from_path: String,
        to_path: String,
        timeout: Option<f64>,
        max_time: Option<f64>,
    },
    Stat {
        path: String,
    },
    /// Paths matching a pattern (`**` recurses).
    Glob {
        path: String,
    },
    Listdir {
        path: String,
    },
    Rmfile {
        path: String,
    },
}

/// Why a `start_command` cannot start: the worker answers it with this text as an exception.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command '{0}'")]
    Unknown(String),
    #[error("command '{name}': {source}")]
    BadArgs { name: String, source: FieldError },
}

impl Command {
    /// The `command_name` sent on the wire (the snake-case name).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Shell(_) => "shell",
            Command::UploadFile(_) => "upload_file",
            Command::UploadDirectory(_) => "upload_directory",
            Command::DownloadFile(_) => "download_file",
            Command::Mkdir { .. } => "mkdir",
            Command::Rmdir { .. } => "rmdir",
            Command::Cpdir { .. } => "cpdir",
            Command::Stat { .. } => "stat",
            Command::Glob { .. } => "glob",
            Command::Listdir { .. } => "listdir",
            Command::Rmfile { .. } => "rmfile",
        }
    }

    /// Reads a command from its name and arguments; keys a command does not use are ignored.
    pub fn parse(name: &str, args: &Value) -> Result<Command, CommandError> {
        let bad = |source| CommandError::BadArgs { name: name.to_string(), source };
        let fields = Fields::of(args).map_err(bad)?;
        let parsed = match name {
            "shell" => ShellArgs::from_fields(fields).map(Command::Shell),
            "upload_file" | "uploadFile" => UploadFileArgs::from_fields(fields).map(Command::UploadFile),
            "upload_directory" | "uploadDirectory" => {
                UploadDirectoryArgs::from_fields(fields).map(Command::UploadDirectory)
            }
            "download_file" | "downloadFile" => DownloadFileArgs::from_fields(fields).map(Command::DownloadFile),
            "mkdir" => fields.str_list("paths").map(|paths| Command::Mkdir { paths }),
            "rmdir" => (|| {
                Ok(Command::Rmdir {
                    paths: fields.str_list("paths")?,
                    timeout: fields.opt_f64("timeout")?,
                    max_time: fields.opt_f64("maxTime")?,
                })
            })(),
            "cpdir" => (|| {
                Ok(Command::Cpdir {
                    from_path: fields.str("from_path")?,
                    to_path: fields.str("to_path")?,
                    timeout: fields.opt_f64("timeout")?,
                    max_time: fields.opt_f64("maxTime")?,
                })
            })(),
            "stat" => fields.str("path").map(|path| Command::Stat { path }),
            "glob" => fields.str("path").map(|path| Command::Glob { path }),
            "listdir" => fields.str("path").map(|path| Command::Listdir { path }),
            "rmfile" => fields.str("path").map(|path| Command::Rmfile { path }),
            other => return Err(CommandError::Unknown(other.to_string())),
        };
        parsed.map_err(bad)
    }

    /// The `args` map sent on the wire.
    pub fn to_args(&self) -> Value {
        match self {
            Command::Shell(args) => args.to_value(),
            Command::UploadFile(args) => map([
                ("path", Value::from(args.path.as_str())),
                ("maxsize", opt(args.maxsize)),
                ("blocksize", Value::from(args.blocksize)),
                ("keepstamp", Value::Boolean(args.keepstamp)),
            ]),
            Command::UploadDirectory(args) => map([
                ("path", Value::from(args.path.as_str())),
                ("maxsize", opt(args.maxsize)),
                ("blocksize", Value::from(args.blocksize)),
                ("compress", opt(args.compress.map(Compression::as_str))),
            ]),
            Command::DownloadFile(args) => map([
                ("path", Value::from(args.path.as_str())),
                ("maxsize", opt(args.maxsize)),
                ("blocksize", Value::from(args.blocksize)),
                ("mode", opt(args.mode)),
            ]),
            Command::Mkdir { paths } => map([("paths", strings(paths))]),
            Command::Rmdir { paths, timeout, max_time } => {
                map([("paths", strings(paths)), ("timeout", opt(*timeout)), ("maxTime", opt(*max_time))])
            }
            Command::Cpdir { from_path, to_path, timeout, max_time } => map([
                ("from_path", Value::from(from_path.as_str())),
                ("to_path", Value::from(to_path.as_str())),
                ("timeout", opt(*timeout)),
                ("maxTime", opt(*max_time)),
            ]),
            Command::Stat { path } | Command::Glob { path } | Command::Listdir { path } | Command::Rmfile { path } => {
                map([("path", Value::from(path.as_str()))])
            }
        }
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

/// What to run: a string for the shell, or an argv run directly.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<ArgvWord>),
}

impl CommandLine {
    /// The command as shown to people (obfuscated words show their public form).
    pub fn display(&self) -> String {
        match self {
            CommandLine::Shell(command) => command.clone(),
            CommandLine::Argv(words) => words.iter().map(|w| w.display.as_str()).collect::<Vec<_>>().join(" "),
        }
    }
}

/// One word of an argv. `display` differs from `value` for Buildbot's `('obfuscated', real, fake)` words,
/// which hide a secret in the logs.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgvWord {
    pub value: String,
    pub display: String,
}

impl ArgvWord {
    pub fn plain(value: impl Into<String>) -> ArgvWord {
        let value = value.into();
        ArgvWord { display: value.clone(), value }
    }
}

/// The value of one variable of a shell command's `env`.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    /// `None` on the wire: remove the variable from the worker's environment.
    Unset,
    /// May contain `${NAME}`, replaced by the worker's own value of NAME.
    Value(String),
    /// A list on the wire: joined with the platform's path separator.
    PathList(Vec<String>),
}

/// A file the shell command watches; its new lines are sent as a log named `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFile {
    pub name: String,
    pub filename: String,
    /// Start at the end of an existing file instead of its beginning.
    pub follow: bool,
}

/// Arguments of the `shell` command (Buildbot's `RemoteShellCommand`).
#[derive(Debug, Clone, PartialEq)]
pub struct ShellArgs {
    pub workdir: String,
    pub command: CommandLine,
    pub env: Vec<(String, EnvValue)>,
    pub want_stdout: bool,
    pub want_stderr: bool,
    pub logfiles: Vec<LogFile>,
    /// Seconds without output before the command is killed.
    pub timeout: Option<f64>,
    /// Seconds the command may run in all.
    pub max_time: Option<f64>,
    /// Lines of output after which the command is killed.
    pub max_lines: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when the command is killed; without it, the kill is immediate.
    pub sigterm_time: Option<f64>,
    pub use_pty: bool,
    /// Show the environment in the header.
    pub log_environ: bool,
    pub initial_stdin: Option<String>,
    /// The signal an interrupt sends when `sigterm_time` is not set (a name such as `KILL`, `TERM`, `INT`).
    pub interrupt_signal: Option<String>,
}

impl ShellArgs {
    /// A shell command with Buildbot's defaults for everything else.
    pub fn new(workdir: impl Into<String>, command: CommandLine) -> ShellArgs {
        ShellArgs {
            workdir: workdir.into(),
            command,
            env: Vec::new(),
            want_stdout: true,
            want_stderr: true,
            logfiles: Vec::new(),
            timeout: Some(1200.0),
            max_time: None,
            max_lines: None,
            sigterm_time: None,
            use_pty: false,
            log_environ: true,
            initial_stdin: None,
            interrupt_signal: None,
        }
    }

    fn from_fields(fields: Fields<'_>) -> Result<ShellArgs, FieldError> {
        let command = match fields.get("command") {
            None => return Err(FieldError::Missing { key: "command".into() }),
            Some(Value::Array(words)) => CommandLine::Argv(words.iter().map(argv_word).collect::<Result<Vec<_>, _>>()?),
            Some(other) => CommandLine::Shell(as_text(other).ok_or_else(|| FieldError::WrongType {
                key: "command".into(),
                expected: "a string or a list",
                found: kind(other),
            })?),
        };
        let env = match fields.get("env") {
            None => Vec::new(),
            Some(value) => {
                let env = Fields::of(value).map_err(|_| FieldError::WrongType {
                    key: "env".into(),
                    expected: "a map",
                    found: kind(value),
                })?;
                env.iter()
                    .map(|(name, value)| Ok((name.to_string(), env_value(name, value)?)))
                    .collect::<Result<_, _>>()?
            }
        };
        let logfiles = match fields.get("logfiles") {
            None => Vec::new(),
            Some(value) => {
                let files = Fields::of(value).map_err(|_| FieldError::WrongType {
                    key: "logfiles".into(),
                    expected: "a map",
                    found: kind(value),
                })?;
                files.iter().map(|(name, spec)| log_file(name, spec)).collect::<Result<_, _>>()?
            }
        };
        Ok(ShellArgs {
            workdir: fields.str("workdir")?,
            command,
            env,
            want_stdout: fields.bool_or("want_stdout", true)?,
            want_stderr: fields.bool_or("want_stderr", true)?,
            logfiles,
            timeout: fields.opt_f64("timeout")?,
            max_time: fields.opt_f64("maxTime")?,
            max_lines: fields.opt_u64("max_lines")?,
            sigterm_time: fields.opt_f64("sigtermTime")?,
            use_pty: fields.bool_or("usePTY", false)?,
            log_environ: fields.bool_or("logEnviron", true)?,
            initial_stdin: fields.opt_str("initial_stdin")?,
            interrupt_signal: match fields.get("interruptSignal") {
                None => None,
                Some(value) => Some(scalar_text(value).ok_or_else(|| FieldError::WrongType {
                    key: "interruptSignal".into(),
                    expected: "a signal name or number",
                    found: kind(value),
                })?),
            },
        })
    }

    fn to_value(&self) -> Value {
        let command = match &self.command {
            CommandLine::Shell(command) => Value::from(command.as_str()),
            CommandLine::Argv(words) => Value::Array(
                words
                    .iter()
                    .map(|w| {
                        if w.value == w.display {
                            Value::from(w.value.as_str())
                        } else {
                            strings(&["obfuscated".to_string(), w.value.clone(), w.display.clone()])
                        }
                    })
                    .collect(),
            ),
        };
        let env = Value::Map(
            self.env
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        EnvValue::Unset => Value::Nil,
                        EnvValue::Value(v) => Value::from(v.as_str()),
                        EnvValue::PathList(items) => strings(items),
                    };
                    (Value::from(name.as_str()), value)
                })
                .collect(),
        );
        let logfiles = Value::Map(
            self.logfiles
                .iter()
                .map(|f| {
                    let spec =
                        map([("filename", Value::from(f.filename.as_str())), ("follow", Value::Boolean(f.follow))]);
                    (Value::from(f.name.as_str()), spec)
                })
                .collect(),
        );
        map([
            ("workdir", Value::from(self.workdir.as_str())),
            ("command", command),
            ("env", env),
            ("want_stdout", Value::Boolean(self.want_stdout)),
            ("want_stderr", Value::Boolean(self.want_stderr)),
            ("logfiles", logfiles),
            ("timeout", opt(self.timeout)),
            ("maxTime", opt(self.max_time)),
            ("max_lines", opt(self.max_lines)),
            ("sigtermTime", opt(self.sigterm_time)),
            ("usePTY", Value::Boolean(self.use_pty)),
            ("logEnviron", Value::Boolean(self.log_environ)),
            ("initial_stdin", opt(self.initial_stdin.as_deref())),
            ("interruptSignal", opt(self.interrupt_signal.as_deref())),
        ])
    }
}

fn argv_word(value: &Value) -> Result<ArgvWord, FieldError> {
    if let Some(parts) = value.as_array() {
        if let [tag, real, fake] = parts.as_slice() {
            if tag.as_str() == Some("obfuscated") {
                if let (Some(value), Some(display)) = (scalar_text(real), scalar_text(fake)) {
                    return Ok(ArgvWord { value, display });
                }
            }
        }
    }
    scalar_text(value).map(ArgvWord::plain).ok_or_else(|| FieldError::WrongType {
        key: "command".into(),
        expected: "a list of strings",
        found: kind(value),
    })
}

fn env_value(name: &str, value: &Value) -> Result<EnvValue, FieldError> {
    match value {
        Value::Nil => Ok(EnvValue::Unset),
        Value::Array(items) => {
            items.iter().map(scalar_text).collect::<Option<Vec<_>>>().map(EnvValue::PathList).ok_or_else(|| {
                FieldError::WrongType { key: format!("env.{name}"), expected: "strings", found: kind(value) }
            })
        }
        other => scalar_text(other).map(EnvValue::Value).ok_or_else(|| FieldError::WrongType {
            key: format!("env.{name}"),
            expected: "a string, a list or nil",
            found: kind(other),
        }),
    }
}

fn log_file(name: &str, spec: &Value) -> Result<LogFile, FieldError> {
    if let Some(filename) = as_text(spec) {
        return Ok(LogFile { name: name.to_string(), filename, follow: false });
    }
    let fields = Fields::of(spec).map_err(|_| FieldError::WrongType {
        key: format!("logfiles.{name}"),
        expected: "a file name or a map with 'filename'",
        found: kind(spec),
    })?;
    Ok(LogFile { name: name.to_string(), filename: fields.str("filename")?, follow: fields.bool_or("follow", false)? })
}

/// Arguments of `upload_file`: the worker sends the file's blocks to the master.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadFileArgs {
    pub path: String,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    /// Also send the file's access and modification times.
    pub keepstamp: bool,
}

impl UploadFileArgs {
    fn from_fields(fields: Fields<'_>) -> Result<Self, FieldError> {
        Ok(UploadFileArgs {
            path: fields.str("path")?,
            maxsize: fields.opt_u64("maxsize")?,
            blocksize: fields.opt_u64("blocksize")?.unwrap_or(DEFAULT_BLOCKSIZE).max(1),
            keepstamp: fields.bool_or("keepstamp", false)?,
        })
    }
}

/// Buildbot's default transfer block size.
pub const DEFAULT_BLOCKSIZE: u64 = 16 * 1024;

/// How an uploaded directory's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gz",
            Compression::Bzip2 => "bz2",
        }
    }
}

/// Arguments of `upload_directory`: the worker sends a tar stream of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadDirectoryArgs {
    pub path: String,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    pub compress: Option<Compression>,
}

impl UploadDirectoryArgs {
    fn from_fields(fields: Fields<'_>) -> Result<Self, FieldError> {
        let compress = match fields.opt_str("compress")?.as_deref() {
            None | Some("") => None,
            Some("gz") => Some(Compression::Gzip),
            Some("bz2") => Some(Compression::Bzip2),
            Some(other) => {
                return Err(FieldError::WrongType {
                    key: "compress".into(),
                    expected: "'gz', 'bz2' or nil",
                    found: format!("'{other}'"),
                })
            }
        };
        Ok(UploadDirectoryArgs {
            path: fields.str("path")?,
            maxsize: fields.opt_u64("maxsize")?,
            blocksize: fields.opt_u64("blocksize")?.unwrap_or(DEFAULT_BLOCKSIZE).max(1),
            compress,
        })
    }
}

/// Arguments of `download_file`: the worker pulls the file's blocks from the master.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadFileArgs {
    pub path: String,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    /// Permission bits for the new file.
    pub mode: Option<u32>,
}

impl DownloadFileArgs {
    fn from_fields(fields: Fields<'_>) -> Result<Self, FieldError> {
        Ok(DownloadFileArgs {
            path: fields.str("path")?,
            maxsize: fields.opt_u64("maxsize")?,
            blocksize: fields.opt_u64("blocksize")?.unwrap_or(DEFAULT_BLOCKSIZE).max(1),
            mode: fields.opt_u64("mode")?.map(|m| (m & 0o7777) as u32),
        })
    }
}
