//! The master's end of file transfers: where an upload's blocks are written, and where a download's blocks
//! are read from.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What a command moves between the master and the worker.
pub enum CommandIo {
    None,
    /// `upload_file`: the file lands at `dest` (written to a temporary file beside it, renamed at the end).
    UploadFile {
        dest: PathBuf,
    },
    /// `upload_directory`: the tar stream is unpacked into `dest`.
    UploadDirectory {
        dest: PathBuf,
    },
    /// `download_file`: blocks are read from `source`.
    Download {
        source: Box<dyn AsyncRead + Send + Unpin>,
    },
}

/// An error on the master's side of a transfer, sent back to the worker as the request's exception.
pub(crate) type TransferResult<T> = Result<T, String>;

/// Receives an upload.
pub(crate) struct Upload {
    dest: PathBuf,
    directory: bool,
    temp: Option<(tempfile::TempPath, tokio::fs::File)>,
}

impl Upload {
    pub(crate) fn new(dest: PathBuf, directory: bool) -> Upload {
        Upload { dest, directory, temp: None }
    }

    async fn file(&mut self) -> TransferResult<&mut tokio::fs::File> {
        if self.temp.is_none() {
            let dir = if self.directory { std::env::temp_dir() } else { parent_of(&self.dest) };
            tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let temp = tempfile::Builder::new()
                .prefix(".kiln-upload-")
                .tempfile_in(&dir)
                .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
            let (file, path) = temp.into_parts();
            self.temp = Some((path, tokio::fs::File::from_std(file)));
        }
        match self.temp.as_mut() {
            Some((_, file)) => Ok(file),
            None => Err("upload file missing".into()),
        }
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> TransferResult<()> {
        let file = self.file().await?;
        file.write_all(data).await.map_err(|e| format!("writing the upload: {e}"))
    }

    /// Ends a file upload: the file appears at its destination.
    pub(crate) async fn close(&mut self) -> TransferResult<()> {
        self.file().await?; // an empty upload still creates the file
        let Some((path, mut file)) = self.temp.take() else { return Ok(()) };
        file.flush().await.map_err(|e| format!("writing the upload: {e}"))?;
        drop(file);
        path.persist(&self.dest).map_err(|e| format!("cannot move the upload to {}: {e}", self.dest.display()))?;
        Ok(())
    }

    /// Sets the uploaded file's access and modification times (`keepstamp`).
    pub(crate) async fn utime(&self, access: f64, modified: f64) -> TransferResult<()> {
        let dest = self.dest.clone();
        let time = |t: f64| std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
        let times = std::fs::FileTimes::new().set_accessed(time(access)).set_modified(time(modified));
        tokio::task::spawn_blocking(move || std::fs::File::options().write(true).open(&dest)?.set_times(times))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot set the times of {}: {e}", self.dest.display()))
    }

    /// Ends a directory upload: unpacks the tar stream (plain, gzip or bzip2) into the destination.
    pub(crate) async fn unpack(&mut self) -> TransferResult<()> {
        self.file().await?;
        let Some((path, mut file)) = self.temp.take() else { return Ok(()) };
        file.flush().await.map_err(|e| format!("writing the upload: {e}"))?;
        drop(file);
        let dest = self.dest.clone();
        tokio::task::spawn_blocking(move || unpack_tar(&path, &dest)).await.map_err(|e| e.to_string())?
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Unpacks a tar file, detecting its compression; entries that would land outside `dest` are refused by the
/// tar crate.
fn unpack_tar(tar_path: &Path, dest: &Path) -> TransferResult<()> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(tar_path).map_err(|e| format!("reading the uploaded archive: {e}"))?;
    let mut magic = [0u8; 3];
    let n = file.read(&mut magic).map_err(|e| format!("reading the uploaded archive: {e}"))?;
    file.rewind().map_err(|e| format!("reading the uploaded archive: {e}"))?;
    let reader: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [b'B', b'Z', b'h'] => Box::new(bzip2::read::BzDecoder::new(file)),
        _ => Box::new(file),
    };
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.unpack(dest).map_err(|e| format!("unpacking the upload into {}: {e}", dest.display()))
}

/// Serves a download.
pub(crate) struct Download {
    source: Box<dyn AsyncRead + Send + Unpin>,
}

impl Download {
    pub(crate) fn new(source: Box<dyn AsyncRead + Send + Unpin>) -> Download {
        Download { source }
    }

    /// The next block of at most `length` bytes; empty at the end.
    pub(crate) async fn read(&mut self, length: u64) -> TransferResult<Vec<u8>> {
        let length = usize::try_from(length).unwrap_or(usize::MAX).min(1 << 20);
        let mut block = vec![0; length];
        let mut filled = 0;
        while filled < length {
            match self.source.read(&mut block[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(format!("reading the file to download: {e}")),
            }
        }
        block.truncate(filled);
        Ok(block)
    }
}
