//! File transfer steps: `upload` (a file from the worker to the master), `upload_directory` (a directory
//! tree, as a tar stream), and `download` (a file from the master to the worker).

use std::path::PathBuf;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::StepOptions;
use crate::config::error::Problems;
use crate::config::parse::{check_template, read, Defaults};

/// Buildbot's default transfer block size.
const DEFAULT_BLOCKSIZE: u64 = 16 * 1024;

/// `type = "upload"` or `type = "upload_directory"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStep {
    pub options: StepOptions,
    /// What to send, relative to the step's workdir on the worker.
    pub workersrc: String,
    /// Where it lands on the master; relative paths are relative to the master's directory.
    pub masterdest: PathBuf,
    /// The step's directory, relative to the builder's directory on the worker.
    pub workdir: String,
    /// Refuse (and truncate) a file larger than this many bytes.
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    /// Keep the file's access and modification times (files only).
    pub keepstamp: bool,
    /// Send a directory tree instead of one file.
    pub directory: bool,
    /// For directories: `gz`, `bz2` or none.
    pub compress: Option<String>,
}

/// `type = "download"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadStep {
    pub options: StepOptions,
    /// The file on the master; relative paths are relative to the master's directory.
    pub mastersrc: PathBuf,
    /// Where it lands, relative to the step's workdir on the worker.
    pub workerdest: String,
    pub workdir: String,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    /// Permission bits of the new file (e.g. `0o755`).
    pub mode: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    workersrc: Spanned<String>,
    masterdest: Spanned<String>,
    workdir: Option<Spanned<String>>,
    maxsize: Option<u64>,
    blocksize: Option<u64>,
    #[serde(default)]
    keepstamp: bool,
    compress: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownload {
    mastersrc: Spanned<String>,
    workerdest: Spanned<String>,
    workdir: Option<Spanned<String>>,
    maxsize: Option<u64>,
    blocksize: Option<u64>,
    mode: Option<u32>,
}

pub(super) fn read_upload(
    table: Spanned<DeValue<'_>>,
    options: StepOptions,
    directory: bool,
    context: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Option<UploadStep> {
    let raw: RawUpload = read(table, problems, Some(context), "step")?;
    let mut valid = non_empty(&raw.workersrc, "workersrc", context, problems);
    valid &= non_empty(&raw.masterdest, "masterdest", context, problems);
    valid &= workdir_valid(&raw.workdir, context, problems);
    if let Some(compress) = &raw.compress {
        if !directory {
            problems.add(compress.span(), Some(context), "compress", "only an upload_directory step is compressed");
            valid = false;
        } else if !["gz", "bz2"].contains(&compress.get_ref().as_str()) {
            let message = format!("unknown compression '{}' (one of: gz, bz2)", compress.get_ref());
            problems.add(compress.span(), Some(context), "compress", message);
            valid = false;
        }
    }
    valid.then(|| UploadStep {
        options,
        workersrc: raw.workersrc.into_inner(),
        masterdest: PathBuf::from(raw.masterdest.into_inner()),
        workdir: raw.workdir.map_or_else(|| defaults.workdir.to_owned(), Spanned::into_inner),
        maxsize: raw.maxsize,
        blocksize: raw.blocksize.unwrap_or(DEFAULT_BLOCKSIZE).max(1),
        keepstamp: raw.keepstamp,
        directory,
        compress: raw.compress.map(Spanned::into_inner),
    })
}

pub(super) fn read_download(
    table: Spanned<DeValue<'_>>,
    options: StepOptions,
    context: &str,
    defaults: &Defaults<'_>,
    problems: &mut Problems<'_>,
) -> Option<DownloadStep> {
    let raw: RawDownload = read(table, problems, Some(context), "step")?;
    let valid = non_empty(&raw.mastersrc, "mastersrc", context, problems)
        & non_empty(&raw.workerdest, "workerdest", context, problems)
        & workdir_valid(&raw.workdir, context, problems);
    valid.then(|| DownloadStep {
        options,
        mastersrc: PathBuf::from(raw.mastersrc.into_inner()),
        workerdest: raw.workerdest.into_inner(),
        workdir: raw.workdir.map_or_else(|| defaults.workdir.to_owned(), Spanned::into_inner),
        maxsize: raw.maxsize,
        blocksize: raw.blocksize.unwrap_or(DEFAULT_BLOCKSIZE).max(1),
        mode: raw.mode.map(|m| m & 0o7777),
    })
}

/// Checks that a path is not empty and is a valid template.
fn non_empty(value: &Spanned<String>, key: &str, context: &str, problems: &mut Problems<'_>) -> bool {
    if value.get_ref().is_empty() {
        problems.add(value.span(), Some(context), key, "cannot be empty");
        return false;
    }
    check_template(value, Some(context), key, problems)
}

/// Checks a step's own `workdir` as a template.
fn workdir_valid(workdir: &Option<Spanned<String>>, context: &str, problems: &mut Problems<'_>) -> bool {
    workdir.as_ref().is_none_or(|w| check_template(w, Some(context), "workdir", problems))
}
