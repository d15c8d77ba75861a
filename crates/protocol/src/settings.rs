//! `set_worker_settings`: how the worker splits output into lines and batches it into updates.

use rmpv::Value;

use crate::fields::{map, FieldError, Fields};

/// The four settings Buildbot's master sends before the first command; all are required on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Bytes of buffered output that trigger an `update`.
    pub buffer_size: u64,
    /// Seconds after which buffered output is sent anyway.
    pub buffer_timeout: f64,
    /// A (Python-syntax) regular expression whose matches end a line, like `\n` does.
    pub newline_re: String,
    /// Longer lines are split.
    pub max_line_length: u64,
}

impl WorkerSettings {
    /// The values Buildbot's master sends (`protocols/msgpack.py`).
    pub fn buildbot_defaults() -> WorkerSettings {
        WorkerSettings {
            buffer_size: 64 * 1024,
            buffer_timeout: 5.0,
            newline_re: r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)".to_string(),
            max_line_length: 4096,
        }
    }

    pub fn to_value(&self) -> Value {
        map([
            ("buffer_size", Value::from(self.buffer_size)),
            ("buffer_timeout", Value::F64(self.buffer_timeout)),
            ("newline_re", Value::from(self.newline_re.as_str())),
            ("max_line_length", Value::from(self.max_line_length)),
        ])
    }

    pub fn from_fields(fields: Fields<'_>) -> Result<WorkerSettings, FieldError> {
        Ok(WorkerSettings {
            buffer_size: fields.u64("buffer_size")?,
            buffer_timeout: fields.f64("buffer_timeout")?,
            newline_re: fields.str("newline_re")?,
            max_line_length: fields.u64("max_line_length")?,
        })
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings::buildbot_defaults()
    }
}
