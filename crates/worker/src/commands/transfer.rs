//! File transfers (Buildbot's `commands/transfer.py`): `upload_file` and `upload_directory` send blocks to the
//! master, `download_file` asks the master for blocks. Each block waits for the master's answer before the
//! next one is read: that is the flow control.
//!
//! A transfer ends with `rc` 0, or `rc` 1 and the reason on stderr (file not readable, `maxsize` reached, the
//! master refused a block, the connection closed, the command was interrupted).

use std::fs;
use std::io::{self, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_protocol::{
    read_file_data, CommandId, Compression, DownloadFileArgs, UpdateEntry, UploadDirectoryArgs, UploadFileArgs, Value,
    WorkerRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use walkdir::WalkDir;

use super::fs::{blocking, strerror, PathError};
use super::{CommandContext, Outcome};

/// Why a transfer stopped early: the text shown on stderr.
type Stop = String;

/// Sends a file's blocks to the master, then closes the master's copy and, if asked, sets its times.
pub(crate) async fn upload_file(args: UploadFileArgs, ctx: &CommandContext) -> Outcome {
    let path = &args.path;
    let opened = open_for_upload(path, args.keepstamp).await;
    ctx.updates.header(format!("sending {path}\n")).await;
    let sent = match opened {
        Ok((mut file, times)) => {
            let write = |data| WorkerRequest::UploadFileWrite { command_id: id(ctx), data };
            let blocks = send_blocks(&mut file, args.blocksize, args.maxsize, path, ctx, write);
            blocks.await.map(|()| times)
        }
        Err(e) => Err(format!("Cannot open file '{path}' for upload: {}", strerror(&e))),
    };
    // As in Buildbot, the master's file is closed whatever happened before.
    let closed = ctx.link.request(WorkerRequest::UploadFileClose { command_id: id(ctx) }).await;
    let result = match (sent, closed) {
        (Err(stop), _) => Err(stop),
        (Ok(_), Err(e)) => Err(failed(path, e)),
        (Ok(None), Ok(_)) => Ok(()),
        (Ok(Some((access_time, modified_time))), Ok(_)) => {
            let utime = WorkerRequest::UploadFileUtime { command_id: id(ctx), access_time, modified_time };
            request(ctx, utime, path).await.map(drop)
        }
    };
    finish(ctx, result).await
}

/// Sends a tar stream of a directory to the master, which unpacks it.
pub(crate) async fn upload_directory(args: UploadDirectoryArgs, ctx: &CommandContext) -> Outcome {
    let path = &args.path;
    let dir = PathBuf::from(path);
    let compression = args.compress;
    let archived = tokio::select! {
        biased;
        () = ctx.interrupt.cancelled() => return finish(ctx, Err(interrupted(path))).await,
        archived = blocking(move || archive(&dir, compression)) => archived?,
    };
    let mut file = match archived {
        Ok(file) => tokio::fs::File::from_std(file),
        Err(e) => {
            let stop = format!("Cannot read directory '{path}' for upload: {e}");
            return finish(ctx, Err(stop)).await;
        }
    };
    ctx.updates.header(format!("sending {path}\n")).await;
    let write = |data| WorkerRequest::UploadDirectoryWrite { command_id: id(ctx), data };
    let mut sent = send_blocks(&mut file, args.blocksize, args.maxsize, path, ctx, write).await;
    // Unlike Buildbot, an incomplete archive is not unpacked: the master discards it when `rc` is 1.
    if sent.is_ok() {
        let unpack = WorkerRequest::UploadDirectoryUnpack { command_id: id(ctx) };
        sent = request(ctx, unpack, path).await.map(drop);
    }
    finish(ctx, sent).await
}

/// Writes a file with the blocks the master sends, then closes the master's reader.
pub(crate) async fn download_file(args: DownloadFileArgs, ctx: &CommandContext) -> Outcome {
    let path = &args.path;
    let received = match create_for_download(path, args.mode).await {
        Ok(file) => receive_blocks(file, &args, ctx).await,
        Err(e) => Err(format!("Cannot open file '{path}' for download: {}", strerror(&e))),
    };
    // As in Buildbot, the reader is closed whatever happened, and an error closing it is only logged.
    let close = WorkerRequest::ReadFileClose { command_id: id(ctx) };
    if let Err(e) = ctx.link.request(close).await {
        tracing::debug!(id = %ctx.command_id, error = %e, "closing the master's reader failed");
    }
    finish(ctx, received).await
}

fn id(ctx: &CommandContext) -> CommandId {
    ctx.command_id.clone()
}

/// Sends the reason a transfer stopped, if it did, and its `rc`.
async fn finish(ctx: &CommandContext, result: Result<(), Stop>) -> Outcome {
    let rc = match result {
        Ok(()) => 0,
        Err(reason) => {
            ctx.updates.stderr(format!("{reason}\n")).await;
            1
        }
    };
    ctx.updates.entry(UpdateEntry::Rc(rc)).await;
    Ok(())
}

/// Sends a request and waits for the master's answer, unless the command is interrupted first.
async fn request(ctx: &CommandContext, request: WorkerRequest, path: &str) -> Result<Value, Stop> {
    tokio::select! {
        biased;
        () = ctx.interrupt.cancelled() => Err(interrupted(path)),
        answer = ctx.link.request(request) => answer.map_err(|e| failed(path, e)),
    }
}

fn interrupted(path: &str) -> Stop {
    format!("Interrupted: transfer of '{path}' stopped")
}

fn failed(path: &str, error: impl std::fmt::Display) -> Stop {
    format!("Transfer of '{path}' failed: {error}")
}

fn truncated(path: &str) -> Stop {
    format!("Maximum filesize reached, truncating file '{path}'")
}

/// Reads `file` in blocks of at most `blocksize` bytes and sends each with the request `write` makes of it,
/// waiting for the master's answer before reading the next. At most `maxsize` bytes are sent; if the file
/// has more, the transfer stops as truncated.
async fn send_blocks(
    file: &mut tokio::fs::File,
    blocksize: u64,
    maxsize: Option<u64>,
    path: &str,
    ctx: &CommandContext,
    write: impl Fn(Vec<u8>) -> WorkerRequest,
) -> Result<(), Stop> {
    let read_error = |e: io::Error| format!("Cannot read '{path}' for upload: {}", strerror(&e));
    let mut remaining = maxsize;
    loop {
        let length = remaining.map_or(blocksize, |left| left.min(blocksize));
        if length == 0 {
            // `maxsize` bytes are sent: truncated only if there is more.
            let more = file.read(&mut [0u8; 1]).await.map_err(read_error)?;
            return if more == 0 { Ok(()) } else { Err(truncated(path)) };
        }
        let mut data = Vec::new();
        (&mut *file).take(length).read_to_end(&mut data).await.map_err(read_error)?;
        if data.is_empty() {
            return Ok(());
        }
        if let Some(left) = remaining.as_mut() {
            *left -= data.len() as u64;
        }
        request(ctx, write(data), path).await?;
    }
}

/// Asks the master for blocks of at most `blocksize` bytes and writes them, until the master sends none.
/// At most `maxsize` bytes are written; if the master has more, the download stops as truncated.
async fn receive_blocks(mut file: tokio::fs::File, args: &DownloadFileArgs, ctx: &CommandContext) -> Result<(), Stop> {
    let path = &args.path;
    let mut remaining = args.maxsize;
    loop {
        let length = remaining.map_or(args.blocksize, |left| left.min(args.blocksize));
        // Once `maxsize` bytes are written, ask for one more: only if it comes is the file truncated.
        let read = WorkerRequest::ReadFile { command_id: id(ctx), length: length.max(1) };
        let Some(mut data) = read_file_data(&request(ctx, read, path).await?) else {
            break;
        };
        if length == 0 {
            return Err(truncated(path));
        }
        // A master sending more than asked does not get past `maxsize`.
        data.truncate(usize::try_from(length).unwrap_or(usize::MAX));
        file.write_all(&data).await.map_err(|e| format!("Cannot write '{path}': {}", strerror(&e)))?;
        if let Some(left) = remaining.as_mut() {
            *left -= data.len() as u64;
        }
    }
    // tokio finishes a write in the background: flush to see its error and have the file complete.
    file.flush().await.map_err(|e| format!("Cannot write '{path}': {}", strerror(&e)))
}

/// Opens a file to upload, with its access and modification times (as seconds since the epoch) when they are
/// to be kept, read before the file is (reading it changes its access time).
async fn open_for_upload(path: &str, keepstamp: bool) -> io::Result<(tokio::fs::File, Option<(f64, f64)>)> {
    let meta = tokio::fs::metadata(path).await?;
    if meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::IsADirectory, "Is a directory"));
    }
    let times = if keepstamp { Some((epoch_seconds(meta.accessed()?), epoch_seconds(meta.modified()?))) } else { None };
    Ok((tokio::fs::File::open(path).await?, times))
}

fn epoch_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Creates (or truncates) the file to download into, and its parent directories; gives it `mode` if set.
async fn create_for_download(path: &str, mode: Option<u32>) -> io::Result<tokio::fs::File> {
    if let Some(parent) = Path::new(path).parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let file = tokio::fs::File::create(path).await?;
    if let Some(mode) = mode {
        file.set_permissions(fs::Permissions::from_mode(mode)).await?;
    }
    Ok(file)
}

/// Writes the tar archive of `dir` to an anonymous temporary file (gone once closed), ready to be read.
fn archive(dir: &Path, compression: Option<Compression>) -> Result<fs::File, PathError> {
    let temp_dir = std::env::temp_dir();
    let mut file = tempfile::tempfile().map_err(PathError::at(&temp_dir))?;
    write_tar(dir, compression, &mut file)?;
    file.rewind().map_err(PathError::at(&temp_dir))?;
    Ok(file)
}

/// Writes a tar archive of the tree under `dir` as Python's `tarfile` writes `archive.add(dir, '')`, so that
/// the master unpacks it into its destination: entries named relative to `dir` (`file`, `sub`, `sub/file`),
/// in name order, each directory before its contents, symlinks kept as symlinks. Unlike Python, `dir` itself
/// has no entry (Python names it `/`) and is followed if it is a symlink; fifos, sockets and devices are left
/// out, as the master's `data` extraction filter would refuse the whole archive for them.
fn write_tar(dir: &Path, compression: Option<Compression>, out: &mut impl Write) -> Result<(), PathError> {
    let finished = |result: io::Result<_>| result.map(drop).map_err(PathError::at(dir));
    match compression {
        None => append_tree(dir, out),
        Some(Compression::Gzip) => {
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            append_tree(dir, &mut gz)?;
            finished(gz.finish())
        }
        Some(Compression::Bzip2) => {
            let mut bz = bzip2::write::BzEncoder::new(out, bzip2::Compression::default());
            append_tree(dir, &mut bz)?;
            finished(bz.finish())
        }
    }
}

fn append_tree(dir: &Path, out: &mut impl Write) -> Result<(), PathError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    // GNU sparse entries are for disk images, not build outputs; plain entries are read by every tar.
    builder.sparse(false);
    for entry in WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| PathError::from_walk(e, dir))?;
        let path = entry.path();
        let kind = entry.file_type();
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            tracing::warn!(path = %path.display(), "upload: not a file, directory or symlink; left out");
            continue;
        }
        let name = path.strip_prefix(dir).map_err(|_| PathError {
            path: path.to_path_buf(),
            source: io::Error::other("not inside the uploaded directory"),
        })?;
        builder.append_path_with_name(path, name).map_err(PathError::at(path))?;
    }
    builder.finish().map_err(PathError::at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("a parent")).expect("create parent");
        fs::write(path, text).expect("write file");
    }

    fn long_name() -> String {
        "n".repeat(150)
    }

    /// A tree with nested and empty directories, an executable, relative symlinks, a name longer than a tar
    /// header holds and a fifo.
    fn sample_tree(root: &Path) {
        write(&root.join("top.txt"), "top");
        write(&root.join("sub/deep/file.txt"), "deep");
        write(&root.join("sub/run.sh"), "#!/bin/sh\n");
        fs::set_permissions(root.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::create_dir_all(root.join("empty")).expect("mkdir");
        symlink("deep/file.txt", root.join("sub/link")).expect("symlink");
        symlink("../top.txt", root.join("sub/up")).expect("symlink");
        write(&root.join("sub").join(long_name()), "long");
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    }

    fn tar_of(dir: &Path, compression: Option<Compression>) -> Vec<u8> {
        let mut out = Vec::new();
        write_tar(dir, compression, &mut out).expect("tar written");
        out
    }

    fn decompress(data: Vec<u8>, compression: Option<Compression>) -> Vec<u8> {
        let mut plain = Vec::new();
        match compression {
            None => return data,
            Some(Compression::Gzip) => flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut plain),
            Some(Compression::Bzip2) => bzip2::read::BzDecoder::new(&data[..]).read_to_end(&mut plain),
        }
        .expect("decompressed");
        plain
    }

    const COMPRESSIONS: [Option<Compression>; 3] = [None, Some(Compression::Gzip), Some(Compression::Bzip2)];

    #[test]
    fn write_tar_names_entries_relative_to_the_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        sample_tree(tmp.path());
        for compression in COMPRESSIONS {
            let data = decompress(tar_of(tmp.path(), compression), compression);
            let mut archive = tar::Archive::new(&data[..]);
            let mut names = Vec::new();
            for entry in archive.entries().expect("entries") {
                let mut entry = entry.expect("entry");
                let name = entry.path().expect("path").to_string_lossy().into_owned();
                match name.as_str() {
                    "sub/link" => {
                        assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
                        assert_eq!(entry.link_name().expect("link").as_deref(), Some(Path::new("deep/file.txt")));
                    }
                    "sub/run.sh" => assert_eq!(entry.header().mode().expect("mode") & 0o777, 0o755),
                    "sub/deep/file.txt" => {
                        let mut text = String::new();
                        entry.read_to_string(&mut text).expect("contents");
                        assert_eq!(text, "deep");
                    }
                    _ => {}
                }
                names.push(name);
            }
            let long = format!("sub/{}", long_name());
            let expected = [
                "empty",
                "sub",
                "sub/deep",
                "sub/deep/file.txt",
                "sub/link",
                long.as_str(),
                "sub/run.sh",
                "sub/up",
                "top.txt",
            ];
            assert_eq!(names, expected, "{compression:?}");
        }
    }

    #[test]
    fn python_extracts_the_tar_with_the_data_filter() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("source");
        sample_tree(&source);
        for compression in COMPRESSIONS {
            let tar_path = tmp.path().join("upload.tar");
            fs::write(&tar_path, tar_of(&source, compression)).expect("tar saved");
            let dest = tmp.path().join(format!("dest-{}", compression.map_or("plain", Compression::as_str)));
            // As Buildbot's master extracts: with the `data` filter when Python has it (3.11.4 and later).
            let script = "import sys, tarfile\n\
                          safe = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}\n\
                          with tarfile.open(sys.argv[1]) as archive:\n    \
                          archive.extractall(path=sys.argv[2], **safe)";
            let output = std::process::Command::new("python3")
                .args(["-c", script])
                .arg(&tar_path)
                .arg(&dest)
                .output()
                .expect("python3 runs");
            assert!(output.status.success(), "python3: {}", String::from_utf8_lossy(&output.stderr));
            assert_eq!(fs::read_to_string(dest.join("sub/link")).expect("through the symlink"), "deep");
            assert_eq!(fs::read_link(dest.join("sub/up")).expect("a symlink"), Path::new("../top.txt"));
            assert_eq!(fs::read_to_string(dest.join("sub").join(long_name())).expect("long name"), "long");
            assert!(dest.join("empty").is_dir());
            let mode = fs::metadata(dest.join("sub/run.sh")).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o100, 0o100, "still executable");
        }
    }

    #[test]
    fn write_tar_follows_a_symlinked_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(&tmp.path().join("real/f"), "f");
        symlink("real", tmp.path().join("link")).expect("symlink");
        let data = tar_of(&tmp.path().join("link"), None);
        let mut archive = tar::Archive::new(&data[..]);
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn archive_reports_the_path_it_cannot_read() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("missing");
        let error = archive(&missing, None).expect_err("no directory");
        assert_eq!(error.path, missing);
        assert_eq!(error.source.kind(), io::ErrorKind::NotFound);

        let closed = tmp.path().join("dir/closed");
        write(&closed.join("f"), "f");
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o000)).expect("chmod");
        if fs::read_dir(&closed).is_ok() {
            return; // running as root, which reads it anyway
        }
        let error = archive(&tmp.path().join("dir"), Some(Compression::Gzip)).expect_err("unreadable");
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(error.path, closed);
        assert_eq!(error.source.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn archive_is_rewound_for_reading() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(&tmp.path().join("f"), "f");
        let mut file = archive(tmp.path(), None).expect("archive");
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("read back");
        assert_eq!(data, tar_of(tmp.path(), None));
    }

    #[test]
    fn epoch_seconds_handles_times_before_the_epoch() {
        let second = std::time::Duration::from_millis(1500);
        assert_eq!(epoch_seconds(UNIX_EPOCH + second), 1.5);
        assert_eq!(epoch_seconds(UNIX_EPOCH - second), -1.5);
    }
}
