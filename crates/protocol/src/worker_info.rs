//! The answer to `get_worker_info`: who the worker is and what it can do.

use std::collections::BTreeMap;

use rmpv::Value;

use crate::fields::{as_text, Fields};

/// What a worker tells the master about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerInfo {
    /// The files of the worker's `info/` directory, by name (`admin`, `host`, `access_uri`…).
    pub info_files: BTreeMap<String, String>,
    /// `os_*` keys read from `/etc/os-release` (`os_id`, `os_version_id`…).
    pub os: BTreeMap<String, String>,
    pub environ: BTreeMap<String, String>,
    /// Python's `os.name`: `posix` or `nt`; decides how the master joins paths.
    pub system: String,
    /// The worker's base directory, under which builders get their directories.
    pub basedir: String,
    pub numcpus: u64,
    pub version: String,
    /// Command name → version.
    pub worker_commands: BTreeMap<String, String>,
    /// Whether the master should remove directories of builders that no longer exist.
    pub delete_leftover_dirs: bool,
}

impl WorkerInfo {
    pub fn admin(&self) -> Option<&str> {
        self.info_files.get("admin").map(String::as_str)
    }

    pub fn host(&self) -> Option<&str> {
        self.info_files.get("host").map(String::as_str)
    }

    pub fn to_value(&self) -> Value {
        let text_map = |m: &BTreeMap<String, String>| {
            Value::Map(m.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect())
        };
        let mut entries: Vec<(Value, Value)> = Vec::new();
        for (name, contents) in self.info_files.iter().chain(self.os.iter()) {
            entries.push((Value::from(name.as_str()), Value::from(contents.as_str())));
        }
        entries.extend([
            (Value::from("environ"), text_map(&self.environ)),
            (Value::from("system"), Value::from(self.system.as_str())),
            (Value::from("basedir"), Value::from(self.basedir.as_str())),
            (Value::from("numcpus"), Value::from(self.numcpus)),
            (Value::from("version"), Value::from(self.version.as_str())),
            (Value::from("worker_commands"), text_map(&self.worker_commands)),
            (Value::from("delete_leftover_dirs"), Value::Boolean(self.delete_leftover_dirs)),
        ]);
        Value::Map(entries)
    }

    /// Reads the info a worker sent; unknown string keys are taken as info files, others ignored.
    pub fn from_value(value: &Value) -> Result<WorkerInfo, crate::fields::FieldError> {
        let fields = Fields::of(value)?;
        let text_map = |key: &str| -> BTreeMap<String, String> {
            fields
                .get(key)
                .and_then(|v| Fields::of(v).ok())
                .map(|m| {
                    m.iter().filter_map(|(k, v)| crate::fields::scalar_text(v).map(|v| (k.to_string(), v))).collect()
                })
                .unwrap_or_default()
        };
        let mut info = WorkerInfo {
            environ: text_map("environ"),
            worker_commands: text_map("worker_commands"),
            system: fields.opt_str("system")?.unwrap_or_else(|| "posix".to_string()),
            basedir: fields.opt_str("basedir")?.unwrap_or_default(),
            numcpus: fields.opt_u64("numcpus")?.unwrap_or(1),
            version: fields.opt_str("version")?.unwrap_or_default(),
            delete_leftover_dirs: fields.bool_or("delete_leftover_dirs", false)?,
            ..WorkerInfo::default()
        };
        const KNOWN: [&str; 7] =
            ["environ", "worker_commands", "system", "basedir", "numcpus", "version", "delete_leftover_dirs"];
        for (key, value) in fields.iter().filter(|(key, _)| !KNOWN.contains(key)) {
            if let Some(text) = as_text(value) {
                let target = if key.starts_with("os_") { &mut info.os } else { &mut info.info_files };
                target.insert(key.to_string(), text);
            }
        }
        Ok(info)
    }
}
