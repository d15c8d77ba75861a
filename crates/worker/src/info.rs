//! What the worker answers to `get_worker_info`.

use std::collections::BTreeMap;

use kiln_protocol::{WorkerInfo, COMMAND_NAMES, COMMAND_VERSION};

use crate::config::WorkerConfig;

/// Gathers the worker's info: the files of `info/`, the OS from `/etc/os-release`, the environment, the
/// commands it knows.
pub(crate) fn collect(config: &WorkerConfig) -> WorkerInfo {
    let mut info_files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(config.basedir.join("info")) {
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            if let Ok(contents) = std::fs::read_to_string(entry.path()) {
                info_files.insert(name, contents.trim_end().to_string());
            }
        }
    }
    WorkerInfo {
        info_files,
        os: std::fs::read_to_string("/etc/os-release").map(|text| os_release(&text)).unwrap_or_default(),
        environ: std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect(),
        system: "posix".to_string(),
        basedir: config.basedir.to_string_lossy().into_owned(),
        numcpus: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
        version: env!("CARGO_PKG_VERSION").to_string(),
        worker_commands: COMMAND_NAMES.iter().map(|name| (name.to_string(), COMMAND_VERSION.to_string())).collect(),
        delete_leftover_dirs: config.delete_leftover_dirs,
    }
}

/// `KEY=value` lines of os-release as Buildbot names them: `os_` + the key in lower case.
fn os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| !key.trim().is_empty() && !key.trim_start().starts_with('#'))
        .map(|(key, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            (format!("os_{}", key.trim().to_lowercase()), value.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_release() {
        let os = os_release("# comment\nID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME='Debian 12'\n\nbogus\n");
        assert_eq!(os["os_id"], "debian");
        assert_eq!(os["os_version_id"], "12");
        assert_eq!(os["os_pretty_name"], "Debian 12");
        assert_eq!(os.len(), 3);
    }
}
