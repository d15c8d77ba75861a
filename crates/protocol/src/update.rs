//! The entries of an `update` request: output lines with their positions and times, exit code, elapsed time…

use rmpv::Value;

use crate::fields::{as_f64, as_text, kind, FieldError};

/// Complete lines of output: `text` ends with `\n`; `newline_indexes` holds the character offset of every
/// `\n` in `text` and `line_times` the time (seconds since the epoch) each line's first characters arrived,
/// one entry per line in both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineInfo {
    pub text: String,
    pub newline_indexes: Vec<u64>,
    pub line_times: Vec<f64>,
}

impl LineInfo {
    /// Lines from text, all stamped with `time`. A last line without `\n` gets one.
    pub fn from_text(text: &str, time: f64) -> LineInfo {
        let mut info = LineInfo::default();
        for line in text.split_inclusive('\n') {
            info.push_line(line.strip_suffix('\n').unwrap_or(line), time);
        }
        info
    }

    /// Appends one line (without its `\n`).
    pub fn push_line(&mut self, line: &str, time: f64) {
        let offset = self.newline_indexes.last().map_or(0, |last| last + 1);
        self.text.push_str(line);
        self.text.push('\n');
        self.newline_indexes.push(offset + line.chars().count() as u64);
        self.line_times.push(time);
    }

    /// Appends all lines of `other`.
    pub fn append(&mut self, other: &LineInfo) {
        let offset = self.newline_indexes.last().map_or(0, |last| last + 1);
        self.text.push_str(&other.text);
        self.newline_indexes.extend(other.newline_indexes.iter().map(|i| i + offset));
        self.line_times.extend_from_slice(&other.line_times);
    }

    pub fn line_count(&self) -> usize {
        self.newline_indexes.len()
    }

    /// The lines, without their `\n`.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split_terminator('\n')
    }

    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::from(self.text.as_str()),
            Value::Array(self.newline_indexes.iter().map(|&i| Value::from(i)).collect()),
            Value::Array(self.line_times.iter().map(|&t| Value::F64(t)).collect()),
        ])
    }

    /// Reads a LineInfo triple; a bare string (older peers) is accepted and split into lines.
    pub fn from_value(key: &str, value: &Value) -> Result<LineInfo, FieldError> {
        let wrong = || FieldError::WrongType {
            key: key.to_string(),
            expected: "a [text, newline_indexes, line_times] triple",
            found: kind(value),
        };
        match value {
            Value::Array(parts) if parts.len() == 3 => {
                let text = as_text(&parts[0]).ok_or_else(wrong)?;
                let newline_indexes = match &parts[1] {
                    Value::Array(items) => items.iter().map(Value::as_u64).collect::<Option<Vec<_>>>(),
                    _ => None,
                }
                .ok_or_else(wrong)?;
                let line_times = match &parts[2] {
                    Value::Array(items) => items.iter().map(as_f64).collect::<Option<Vec<_>>>(),
                    _ => None,
                }
                .ok_or_else(wrong)?;
                Ok(LineInfo { text, newline_indexes, line_times })
            }
            other => as_text(other).map(|text| LineInfo::from_text(&text, 0.0)).ok_or_else(wrong),
        }
    }
}

/// The result of `os.stat()` as Buildbot sends it: `[mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStat {
    pub mode: u64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

impl FileStat {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }

    fn to_value(self) -> Value {
        Value::Array(vec![
            self.mode.into(),
            self.ino.into(),
            self.dev.into(),
            self.nlink.into(),
            self.uid.into(),
            self.gid.into(),
            self.size.into(),
            self.atime.into(),
            self.mtime.into(),
            self.ctime.into(),
        ])
    }

    fn from_value(value: &Value) -> Option<FileStat> {
        let items = value.as_array().filter(|items| items.len() >= 10)?;
        let unsigned = |i: usize| match &items[i] {
            Value::Integer(n) => n.as_u64().or_else(|| n.as_i64().map(|n| n as u64)),
            other => as_f64(other).map(|f| f as u64),
        };
        let time = |i: usize| match &items[i] {
            Value::Integer(n) => n.as_i64(),
            other => as_f64(other).map(|f| f as i64),
        };
        Some(FileStat {
            mode: unsigned(0)?,
            ino: unsigned(1)?,
            dev: unsigned(2)?,
            nlink: unsigned(3)?,
            uid: unsigned(4)?,
            gid: unsigned(5)?,
            size: unsigned(6)?,
            atime: time(7)?,
            mtime: time(8)?,
            ctime: time(9)?,
        })
    }
}

/// One `[key, value]` pair of an `update`.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateEntry {
    Stdout(LineInfo),
    Stderr(LineInfo),
    /// Lines about the command itself (its argv, directory, environment, how it ended).
    Header(LineInfo),
    /// Lines of a log file the command watches (`logfiles`), under the log's name.
    Log {
        name: String,
        lines: LineInfo,
    },
    /// Exit code; -1 when killed by a signal.
    Rc(i64),
    /// Seconds the command ran.
    Elapsed(f64),
    /// Why the worker ended the command: `timeout`, `timeout_without_output` or `max_lines_failure`.
    FailureReason(String),
    /// The result of `listdir` and `glob`.
    Files(Vec<String>),
    /// The result of `stat`.
    Stat(FileStat),
    /// A key this crate does not know, kept as sent.
    Other {
        key: String,
        value: Value,
    },
}

impl UpdateEntry {
    pub fn key(&self) -> &str {
        match self {
            UpdateEntry::Stdout(_) => "stdout",
            UpdateEntry::Stderr(_) => "stderr",
            UpdateEntry::Header(_) => "header",
            UpdateEntry::Log { .. } => "log",
            UpdateEntry::Rc(_) => "rc",
            UpdateEntry::Elapsed(_) => "elapsed",
            UpdateEntry::FailureReason(_) => "failure_reason",
            UpdateEntry::Files(_) => "files",
            UpdateEntry::Stat(_) => "stat",
            UpdateEntry::Other { key, .. } => key,
        }
    }

    pub fn to_value(&self) -> Value {
        let value = match self {
            UpdateEntry::Stdout(lines) | UpdateEntry::Stderr(lines) | UpdateEntry::Header(lines) => lines.to_value(),
            UpdateEntry::Log { name, lines } => Value::Array(vec![Value::from(name.as_str()), lines.to_value()]),
            UpdateEntry::Rc(rc) => Value::from(*rc),
            UpdateEntry::Elapsed(seconds) => Value::F64(*seconds),
            UpdateEntry::FailureReason(reason) => Value::from(reason.as_str()),
            UpdateEntry::Files(files) => Value::Array(files.iter().map(|f| Value::from(f.as_str())).collect()),
            UpdateEntry::Stat(stat) => stat.to_value(),
            UpdateEntry::Other { value, .. } => value.clone(),
        };
        Value::Array(vec![Value::from(self.key()), value])
    }

    pub fn from_value(pair: &Value) -> Result<UpdateEntry, FieldError> {
        let (key, value) = match pair.as_array().map(Vec::as_slice) {
            Some([key, value]) => match key.as_str() {
                Some(key) => (key, value),
                None => return Err(wrong("update", "a [key, value] pair with a string key", pair)),
            },
            _ => return Err(wrong("update", "a [key, value] pair", pair)),
        };
        Ok(match key {
            "stdout" => UpdateEntry::Stdout(LineInfo::from_value(key, value)?),
            "stderr" => UpdateEntry::Stderr(LineInfo::from_value(key, value)?),
            "header" => UpdateEntry::Header(LineInfo::from_value(key, value)?),
            "log" => match value.as_array().map(Vec::as_slice) {
                Some([name, lines]) => UpdateEntry::Log {
                    name: as_text(name).ok_or_else(|| wrong(key, "a [name, lines] pair", value))?,
                    lines: LineInfo::from_value(key, lines)?,
                },
                _ => return Err(wrong(key, "a [name, lines] pair", value)),
            },
            "rc" => UpdateEntry::Rc(value.as_i64().ok_or_else(|| wrong(key, "an integer", value))?),
            "elapsed" => UpdateEntry::Elapsed(as_f64(value).ok_or_else(|| wrong(key, "a number", value))?),
            "failure_reason" => {
                UpdateEntry::FailureReason(as_text(value).ok_or_else(|| wrong(key, "a string", value))?)
            }
            "files" => UpdateEntry::Files(
                value
                    .as_array()
                    .and_then(|items| items.iter().map(as_text).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| wrong(key, "a list of strings", value))?,
            ),
            "stat" => UpdateEntry::Stat(FileStat::from_value(value).ok_or_else(|| wrong(key, "a stat tuple", value))?),
            other => UpdateEntry::Other { key: other.to_string(), value: value.clone() },
        })
    }
}

fn wrong(key: &str, expected: &'static str, found: &Value) -> FieldError {
    FieldError::WrongType { key: key.to_string(), expected, found: kind(found) }
}
