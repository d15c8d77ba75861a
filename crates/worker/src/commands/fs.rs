//! The filesystem commands (Buildbot's `commands/fs.py`): `mkdir`, `rmdir`, `cpdir`, `stat`, `glob`,
//! `listdir` and `rmfile`.
//!
//! Each reports as Buildbot's worker does: its result (`files`, `stat`) and `rc` 0, or a header line
//! `<command>: <strerror>: <path>` and the error's errno as `rc`. The work on whole trees runs on tokio's
//! blocking threads, in plain functions that the tests exercise on real directories.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_protocol::{FileStat, UpdateEntry};
use walkdir::WalkDir;

use super::{CommandContext, Outcome};

/// A filesystem error and the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", path.display(), strerror(source))]
pub(super) struct PathError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl PathError {
    /// For `map_err`: ties an error to `path`.
    pub(super) fn at(path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
        move |source| PathError { path: path.to_path_buf(), source }
    }

    /// An error met while walking the tree under `root`.
    pub(super) fn from_walk(error: walkdir::Error, root: &Path) -> PathError {
        let path = error.path().unwrap_or(root).to_path_buf();
        let text = error.to_string();
        let source = error.into_io_error().unwrap_or_else(|| io::Error::other(text));
        PathError { path, source }
    }
}

/// The `rc` of a failure: the error's errno, as Buildbot sends `e.errno`; 1 for an error without one.
fn errno(error: &io::Error) -> i64 {
    error.raw_os_error().map_or(1, i64::from)
}

/// The text of an error as Python's `e.strerror` shows it: the C library's message, without the
/// ` (os error N)` that Rust appends.
pub(super) fn strerror(error: &io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(code) => text.strip_suffix(&format!(" (os error {code})")).map_or(text.clone(), str::to_string),
        None => text,
    }
}

/// Runs filesystem work on tokio's blocking threads; `Err` only if the work panicked.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| format!("filesystem work failed: {e}"))
}

/// Reports a failure: a header naming the command, the error and the path; returns the `rc` to send.
async fn report(ctx: &CommandContext, command: &str, path: &Path, error: &io::Error) -> i64 {
    ctx.updates.header(format!("{command}: {}: {}\n", strerror(error), path.display())).await;
    errno(error)
}

async fn rc(ctx: &CommandContext, rc: i64) -> Outcome {
    ctx.updates.entry(UpdateEntry::Rc(rc)).await;
    Ok(())
}

/// Creates each directory and its parents; existing directories are fine. Stops at the first failure.
pub(crate) async fn mkdir(paths: Vec<String>, ctx: &CommandContext) -> Outcome {
    for path in &paths {
        if let Err(e) = tokio::fs::create_dir_all(path).await {
            let code = report(ctx, "mkdir", Path::new(path), &e).await;
            return rc(ctx, code).await;
        }
    }
    rc(ctx, 0).await
}

/// Removes each tree. A failure is reported and makes `rc` non-zero, but the other paths are still removed.
pub(crate) async fn rmdir(paths: Vec<String>, ctx: &CommandContext) -> Outcome {
    let failures =
        blocking(move || paths.iter().filter_map(|path| remove_tree(Path::new(path)).err()).collect::<Vec<_>>())
            .await?;
    let mut code = 0;
    for failure in &failures {
        code = report(ctx, "rmdir", &failure.path, &failure.source).await;
    }
    rc(ctx, code).await
}

/// Copies the tree `from_path` to `to_path`, merging into `to_path` if it exists.
pub(crate) async fn cpdir(from_path: String, to_path: String, ctx: &CommandContext) -> Outcome {
    match blocking(move || copy_tree(Path::new(&from_path), Path::new(&to_path))).await? {
        Ok(()) => rc(ctx, 0).await,
        Err(failure) => {
            let code = report(ctx, "cpdir", &failure.path, &failure.source).await;
            rc(ctx, code).await
        }
    }
}

/// Sends `os.stat()` of the path (following symlinks).
pub(crate) async fn stat(path: String, ctx: &CommandContext) -> Outcome {
    match tokio::fs::metadata(&path).await {
        Ok(meta) => {
            ctx.updates.entry(UpdateEntry::Stat(file_stat(&meta))).await;
            rc(ctx, 0).await
        }
        Err(e) => {
            let code = report(ctx, "stat", Path::new(&path), &e).await;
            rc(ctx, code).await
        }
    }
}

/// Sends the paths matching a pattern, sorted.
pub(crate) async fn glob(path: String, ctx: &CommandContext) -> Outcome {
    let files = blocking(move || glob_paths(&path)).await?;
    ctx.updates.entry(UpdateEntry::Files(files)).await;
    rc(ctx, 0).await
}

/// Sends the names in a directory, sorted.
pub(crate) async fn listdir(path: String, ctx: &CommandContext) -> Outcome {
    let dir = PathBuf::from(&path);
    match blocking(move || list_dir(&dir)).await? {
        Ok(names) => {
            ctx.updates.entry(UpdateEntry::Files(names)).await;
            rc(ctx, 0).await
        }
        Err(e) => {
            let code = report(ctx, "listdir", Path::new(&path), &e).await;
            rc(ctx, code).await
        }
    }
}

/// Removes one file (not a directory).
pub(crate) async fn rmfile(path: String, ctx: &CommandContext) -> Outcome {
    match tokio::fs::remove_file(&path).await {
        Ok(()) => rc(ctx, 0).await,
        Err(e) => {
            let code = report(ctx, "rmfile", Path::new(&path), &e).await;
            rc(ctx, code).await
        }
    }
}

fn file_stat(meta: &fs::Metadata) -> FileStat {
    FileStat {
        mode: u64::from(meta.mode()),
        ino: meta.ino(),
        dev: meta.dev(),
        nlink: meta.nlink(),
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
        size: meta.size(),
        atime: meta.atime(),
        mtime: meta.mtime(),
        ctime: meta.ctime(),
    }
}

fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Removes a file, symlink or directory tree like `rm -rf`: a missing path is fine. If the removal fails,
/// the directories of the tree are given `u+rwx` and it is tried once more, as Buildbot does after a failed
/// `rm -rf` (a left-over directory with mode 000 cannot be emptied otherwise).
fn remove_tree(path: &Path) -> Result<(), PathError> {
    let removed = match remove_once(path) {
        Err(e) if !is_missing(&e) => {
            grant_owner_access(path);
            remove_once(path)
        }
        removed => removed,
    };
    match removed {
        Err(e) if !is_missing(&e) => Err(PathError { path: path.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

fn remove_once(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Whether an error means there was nothing to remove (`rm -f` ignores these too).
fn is_missing(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Gives the owner read, write and search access to every directory of the tree (not following symlinks),
/// each before looking into it. Like `chmod -Rf`, failures are ignored: the removal that follows reports
/// what still stands in its way.
fn grant_owner_access(path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            grant_owner_access(&entry.path());
        }
    }
}

/// Copies `from` (a tree, a file or a symlink) to `to` like `cp -R -P -p`: symlinks stay symlinks, permission
/// bits and the times of files are kept. Parents of `to` are created; if `to` is an existing directory, the
/// tree is merged into it (files and symlinks already there are replaced). Fifos, sockets and devices are
/// left out.
fn copy_tree(from: &Path, to: &Path) -> Result<(), PathError> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(PathError::at(parent))?;
    }
    refuse_copy_into_itself(from, to)?;
    // Directories get their permissions once filled (they may be read-only), deepest first.
    let mut directories = Vec::new();
    for entry in WalkDir::new(from).follow_root_links(false) {
        let entry = entry.map_err(|e| PathError::from_walk(e, from))?;
        let source = entry.path();
        let relative = source.strip_prefix(from).map_err(|_| PathError {
            path: source.to_path_buf(),
            source: io::Error::other("not inside the copied tree"),
        })?;
        let target = if relative.as_os_str().is_empty() { to.to_path_buf() } else { to.join(relative) };
        let meta = entry.metadata().map_err(|e| PathError::from_walk(e, source))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if let Err(e) = fs::create_dir(&target) {
                if !(e.kind() == io::ErrorKind::AlreadyExists && target.is_dir()) {
                    return Err(PathError { path: target, source: e });
                }
            }
            directories.push((target, meta.permissions()));
        } else if kind.is_symlink() {
            let link = fs::read_link(source).map_err(PathError::at(source))?;
            remove_non_directory(&target)?;
            symlink(link, &target).map_err(PathError::at(&target))?;
        } else if kind.is_file() {
            remove_non_directory(&target)?;
            copy_file(source, &target, &meta)?;
        } else {
            tracing::warn!(path = %source.display(), "cpdir: not a file, directory or symlink; not copied");
        }
    }
    for (directory, permissions) in directories.into_iter().rev() {
        fs::set_permissions(&directory, permissions).map_err(PathError::at(&directory))?;
    }
    Ok(())
}

/// A copy of a directory into itself would never end; `cp` refuses it too.
fn refuse_copy_into_itself(from: &Path, to: &Path) -> Result<(), PathError> {
    let source = fs::canonicalize(from).map_err(PathError::at(from))?;
    let target = match (to.parent(), to.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            fs::canonicalize(parent).map_err(PathError::at(parent))?.join(name)
        }
        _ => fs::canonicalize(to).map_err(PathError::at(to))?,
    };
    if source.is_dir() && target.starts_with(&source) {
        let source = io::Error::new(io::ErrorKind::InvalidInput, "cannot copy a directory into itself");
        return Err(PathError { path: to.to_path_buf(), source });
    }
    Ok(())
}

/// Makes room for a file or symlink: removes what is at `path` unless it is a directory.
fn remove_non_directory(path: &Path) -> Result<(), PathError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(path).map_err(PathError::at(path)),
        _ => Ok(()),
    }
}

/// Copies a file with its permission bits, access and modification times.
fn copy_file(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), PathError> {
    fs::copy(from, to).map_err(PathError::at(from))?;
    let times = fs::FileTimes::new()
        .set_accessed(meta.accessed().map_err(PathError::at(from))?)
        .set_modified(meta.modified().map_err(PathError::at(from))?);
    // Setting times takes ownership, not write access: a read-only copy opened for reading will do.
    fs::File::open(to).and_then(|file| file.set_times(times)).map_err(PathError::at(to))
}

/// The paths matching `pattern` as Python's `glob.glob(pattern, recursive=True)` finds them, sorted.
///
/// `*`, `?` and `[…]` match within one name; a `**` component matches any number of directories (and,
/// last, any file below). Names starting with `.` are matched only by a pattern component that starts
/// with `.`, and `**` does not enter them. Unreadable directories are skipped.
fn glob_paths(pattern: &str) -> Vec<String> {
    let mut found = glob_walk(pattern, false);
    if pattern == "**" {
        // Python drops the empty path that `**` alone matches first.
        found.retain(|path| !path.is_empty());
    }
    found.sort();
    found
}

/// Python's `glob._iglob`: the matches of `pattern`, only directories when `dirs_only`.
fn glob_walk(pattern: &str, dirs_only: bool) -> Vec<String> {
    let (dirname, basename) = split_path(pattern);
    if !has_magic(pattern) {
        let exists =
            if basename.is_empty() { Path::new(dirname).is_dir() } else { fs::symlink_metadata(pattern).is_ok() };
        return if exists { vec![pattern.to_string()] } else { Vec::new() };
    }
    let dirs = if !dirname.is_empty() && dirname != pattern && has_magic(dirname) {
        glob_walk(dirname, true)
    } else {
        vec![dirname.to_string()]
    };
    let mut found = Vec::new();
    for dir in dirs {
        let names = if basename == "**" {
            std::iter::once(String::new()).chain(names_below(&dir, dirs_only)).collect()
        } else if has_magic(basename) {
            let include_hidden = basename.starts_with('.');
            names_in(&dir, dirs_only)
                .into_iter()
                .filter(|name| (include_hidden || !name.starts_with('.')) && fnmatch(name, basename))
                .collect()
        } else if basename.is_empty() && Path::new(&dir).is_dir() {
            vec![String::new()]
        } else if !basename.is_empty() && fs::symlink_metadata(join_path(&dir, basename)).is_ok() {
            vec![basename.to_string()]
        } else {
            Vec::new()
        };
        found.extend(names.iter().map(|name| join_path(&dir, name)));
    }
    found
}

/// Python's `os.path.split` on POSIX: (everything before the last `/`, without trailing slashes unless it is
/// only slashes; what follows it).
fn split_path(path: &str) -> (&str, &str) {
    let cut = path.rfind('/').map_or(0, |i| i + 1);
    let (head, tail) = path.split_at(cut);
    let trimmed = head.trim_end_matches('/');
    (if trimmed.is_empty() { head } else { trimmed }, tail)
}

/// Python's `os.path.join(dir, name)` on POSIX (Python's glob joins with an empty `dir` as `name`).
fn join_path(dir: &str, name: &str) -> String {
    if dir.is_empty() || name.starts_with('/') {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The names in a directory (the current one if `dir` is empty), only those of directories (symlinks
/// followed) when `dirs_only`; nothing if it cannot be read.
fn names_in(dir: &str, dirs_only: bool) -> Vec<String> {
    let Ok(entries) = fs::read_dir(if dir.is_empty() { "." } else { dir }) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| !dirs_only || entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Python's `glob._rlistdir`: every path below `dir`, relative to it (in no order), not entering hidden names.
fn names_below(dir: &str, dirs_only: bool) -> Vec<String> {
    let mut found = Vec::new();
    for name in names_in(dir, dirs_only).into_iter().filter(|name| !name.starts_with('.')) {
        let below = names_below(&join_path(dir, &name), dirs_only);
        found.extend(below.iter().map(|path| join_path(&name, path)));
        found.push(name);
    }
    found
}

/// Python's `fnmatch.fnmatchcase`: whether a whole name matches a pattern of `*`, `?`, `[…]` and `[!…]`
/// (a `[` without its `]` is an ordinary character).
fn fnmatch(name: &str, pattern: &str) -> bool {
    let tokens = tokenize(pattern);
    let name: Vec<char> = name.chars().collect();
    // Greedy matching with one backtrack point: the last `*` seen and where its match would end.
    let (mut n, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if token.matches(name[n]) => {
                n += 1;
                t += 1;
            }
            _ => match star {
                Some((star_t, star_n)) => {
                    star = Some((star_t, star_n + 1));
                    t = star_t + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| matches!(token, Token::Star))
}

enum Token {
    Star,
    Any,
    Char(char),
    /// `[…]`: character ranges (a single character is a range of one), negated by `[!…]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Char(expected) => *expected == c,
            Token::Class { negated, ranges } => ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated,
        }
    }
}

fn tokenize(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '[' => {
                if let Some((class, end)) = class_at(&chars, i + 1) {
                    tokens.push(class);
                    i = end;
                } else {
                    tokens.push(Token::Char('['));
                }
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// The class whose text starts at `start` (after its `[`), and the index of its closing `]`; `None` if
/// it is not closed.
fn class_at(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let negated = chars.get(start) == Some(&'!');
    let first = start + usize::from(negated);
    // A `]` right after `[` or `[!` belongs to the class.
    let search_from = if chars.get(first) == Some(&']') { first + 1 } else { first };
    let end = search_from + chars.get(search_from..)?.iter().position(|&c| c == ']')?;
    let body = &chars[first..end];
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            ranges.push((body[i], body[i + 2]));
            i += 3;
        } else {
            ranges.push((body[i], body[i]));
            i += 1;
        }
    }
    Some((Token::Class { negated, ranges }, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("a parent")).expect("create parent");
        fs::write(path, text).expect("write file");
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A tree with nested directories, an executable, a relative symlink and a read-only directory.
    fn sample_tree(root: &Path) {
        write(&root.join("top.txt"), "top");
        write(&root.join("a/b/deep.txt"), "deep");
        write(&root.join("a/run.sh"), "#!/bin/sh\n");
        chmod(&root.join("a/run.sh"), 0o751);
        symlink("b/deep.txt", root.join("a/link")).expect("symlink");
        write(&root.join("locked/inside.txt"), "locked");
        chmod(&root.join("locked"), 0o555);
    }

    #[test]
    fn strerror_is_the_c_message_alone() {
        assert_eq!(strerror(&io::Error::from_raw_os_error(2)), "No such file or directory");
        assert_eq!(errno(&io::Error::from_raw_os_error(2)), 2);
        assert_eq!(strerror(&io::Error::other("odd")), "odd");
        assert_eq!(errno(&io::Error::other("odd")), 1);
    }

    #[test]
    fn copy_tree_copies_files_symlinks_and_modes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let from = tmp.path().join("from");
        sample_tree(&from);
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(from.join("top.txt"))
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        let to = tmp.path().join("new/parent/to");

        copy_tree(&from, &to).expect("copy");

        assert_eq!(fs::read_to_string(to.join("top.txt")).expect("read"), "top");
        assert_eq!(fs::read_to_string(to.join("a/b/deep.txt")).expect("read"), "deep");
        assert_eq!(fs::read_link(to.join("a/link")).expect("a symlink"), Path::new("b/deep.txt"));
        assert_eq!(mode(&to.join("a/run.sh")), 0o751);
        assert_eq!(mode(&to.join("locked")), 0o555);
        assert_eq!(fs::read_to_string(to.join("locked/inside.txt")).expect("read"), "locked");
        assert_eq!(fs::metadata(to.join("top.txt")).and_then(|m| m.modified()).expect("mtime"), old);
        chmod(&from.join("locked"), 0o755);
        chmod(&to.join("locked"), 0o755);
    }

    #[test]
    fn copy_tree_merges_into_an_existing_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
        write(&from.join("a/new.txt"), "new");
        write(&from.join("same.txt"), "from");
        write(&to.join("a/kept.txt"), "kept");
        write(&to.join("same.txt"), "old");

        copy_tree(&from, &to).expect("copy");

        assert_eq!(fs::read_to_string(to.join("a/new.txt")).expect("read"), "new");
        assert_eq!(fs::read_to_string(to.join("a/kept.txt")).expect("read"), "kept");
        assert_eq!(fs::read_to_string(to.join("same.txt")).expect("read"), "from");
    }

    #[test]
    fn copy_tree_reports_a_missing_source_and_a_copy_into_itself() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("missing");
        let error = copy_tree(&missing, &tmp.path().join("to")).expect_err("no source");
        assert_eq!(error.path, missing);
        assert_eq!(error.source.kind(), io::ErrorKind::NotFound);

        let from = tmp.path().join("from");
        write(&from.join("f"), "f");
        let error = copy_tree(&from, &from.join("sub/copy")).expect_err("into itself");
        assert_eq!(error.source.kind(), io::ErrorKind::InvalidInput);
        assert!(!from.join("sub/copy/f").exists());
    }

    #[test]
    fn copy_tree_copies_a_symlinked_root_as_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(&tmp.path().join("real/f"), "f");
        symlink("real", tmp.path().join("link")).expect("symlink");
        copy_tree(&tmp.path().join("link"), &tmp.path().join("copy")).expect("copy");
        assert_eq!(fs::read_link(tmp.path().join("copy")).expect("a symlink"), Path::new("real"));
    }

    #[test]
    fn remove_tree_removes_trees_that_deny_access() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("tree");
        sample_tree(&root);
        write(&root.join("closed/secret/file"), "x");
        chmod(&root.join("closed/secret"), 0o000);
        chmod(&root.join("closed"), 0o500);

        remove_tree(&root).expect("removed");

        assert!(fs::symlink_metadata(&root).is_err());
    }

    #[test]
    fn remove_tree_accepts_missing_paths_files_and_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        remove_tree(&tmp.path().join("missing/deeper")).expect("missing is fine");
        write(&tmp.path().join("file"), "x");
        remove_tree(&tmp.path().join("file/below")).expect("below a file is missing too");
        remove_tree(&tmp.path().join("file")).expect("a file");
        write(&tmp.path().join("target/kept"), "x");
        symlink("target", tmp.path().join("link")).expect("symlink");
        remove_tree(&tmp.path().join("link")).expect("a symlink");
        assert!(fs::symlink_metadata(tmp.path().join("link")).is_err());
        assert!(tmp.path().join("target/kept").exists(), "the link's target stays");
    }

    #[test]
    fn list_dir_gives_sorted_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(&tmp.path().join("b"), "");
        write(&tmp.path().join(".hidden"), "");
        write(&tmp.path().join("a/c"), "");
        assert_eq!(list_dir(tmp.path()).expect("list"), [".hidden", "a", "b"]);
        assert_eq!(list_dir(&tmp.path().join("b")).expect_err("a file").raw_os_error(), Some(20));
    }

    #[test]
    fn file_stat_follows_the_stat_tuple() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(&tmp.path().join("f"), "12345");
        let stat = file_stat(&fs::metadata(tmp.path().join("f")).expect("metadata"));
        assert!(stat.is_file());
        assert_eq!(stat.size, 5);
        assert!(file_stat(&fs::metadata(tmp.path()).expect("metadata")).is_dir());
    }

    #[test]
    fn fnmatch_follows_python() {
        assert!(fnmatch("abc.txt", "*.txt"));
        assert!(fnmatch(".hidden", "*"), "hidden names are filtered by glob, not fnmatch");
        assert!(fnmatch("a", "a**"));
        assert!(fnmatch("abc", "a?c"));
        assert!(!fnmatch("ac", "a?c"));
        assert!(fnmatch("b1", "[a-c][0-9]"));
        assert!(!fnmatch("d1", "[a-c][0-9]"));
        assert!(fnmatch("x", "[!a-c]"));
        assert!(!fnmatch("b", "[!a-c]"));
        assert!(fnmatch("]", "[]]"));
        assert!(fnmatch("x", "[!]]"));
        assert!(fnmatch("^", "[^a]"));
        assert!(fnmatch("[b", "[b"), "an unclosed [ is literal");
        assert!(fnmatch("aXbYc", "a*b*c"));
        assert!(!fnmatch("aXbYd", "a*b*c"));
        assert!(fnmatch("", "*"));
        assert!(!fnmatch("", "?"));
    }

    #[test]
    fn split_and_join_follow_os_path() {
        assert_eq!(split_path("/tmp/gt/**"), ("/tmp/gt", "**"));
        assert_eq!(split_path("/x"), ("/", "x"));
        assert_eq!(split_path("a//b/"), ("a//b", ""));
        assert_eq!(split_path("//x"), ("//", "x"));
        assert_eq!(split_path("x"), ("", "x"));
        assert_eq!(join_path("/a", ""), "/a/");
        assert_eq!(join_path("/", "b"), "/b");
        assert_eq!(join_path("", "b"), "b");
    }

    /// A tree with hidden files and directories, nested directories and a symlink to a directory.
    fn glob_tree(root: &Path) {
        for file in ["f.txt", ".k.txt", "a/g.txt", "a/b/c/h.txt", "a/b/.l.txt", ".hid/x/i.txt", "a/.h2/j.txt", "[x]"] {
            write(&root.join(file), "");
        }
        symlink("a", root.join("link")).expect("symlink");
    }

    #[test]
    fn glob_paths_recurses_with_double_star_and_skips_hidden_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        glob_tree(tmp.path());
        let root = tmp.path().to_string_lossy().into_owned();
        let glob = |pattern: &str| -> Vec<String> {
            glob_paths(&format!("{root}/{pattern}"))
                .into_iter()
                .map(|path| path[root.len() + 1..].to_string())
                .collect()
        };
        assert_eq!(glob("**/*.txt"), ["a/b/c/h.txt", "a/g.txt", "f.txt", "link/b/c/h.txt", "link/g.txt"]);
        assert_eq!(glob("*"), ["[x]", "a", "f.txt", "link"]);
        assert_eq!(glob(".*"), [".hid", ".k.txt"]);
        assert_eq!(glob("a/**/"), ["a/", "a/b/", "a/b/c/"]);
        assert_eq!(glob("**/.l.txt"), ["a/b/.l.txt", "link/b/.l.txt"]);
        assert_eq!(glob("a/**/h.txt"), ["a/b/c/h.txt"]);
        assert_eq!(glob("f.txt"), ["f.txt"]);
        assert!(glob("nothing*").is_empty());
        assert_eq!(glob("[[]x]"), ["[x]"]);
    }

    #[test]
    fn glob_paths_agrees_with_python() {
        let tmp = tempfile::tempdir().expect("tempdir");
        glob_tree(tmp.path());
        let root = tmp.path().to_string_lossy().into_owned();
        let patterns = [
            "**",
            "**/",
            "**/*",
            "*/**",
            "**/*.txt",
            "*",
            "*/",
            ".*",
            "a/**",
            "a/**/",
            "**/c",
            "a/**/h.txt",
            "**/.l.txt",
            "a/[b",
            "a/*/",
            "a**",
            "*/*/*",
            "[a-f]*",
            "[!a]*",
            "?.txt",
            "a/**/**",
            "link/**/h*",
            "nothing/**",
            "f.txt",
            "f.txt/",
            "a/",
            "[[]x]",
        ];
        for pattern in patterns {
            let full = format!("{root}/{pattern}");
            let output = std::process::Command::new("python3")
                .args(["-c", "import glob,sys\nfor p in sorted(glob.glob(sys.argv[1], recursive=True)): print(p)"])
                .arg(&full)
                .output()
                .expect("python3 runs");
            assert!(output.status.success(), "python3 failed: {}", String::from_utf8_lossy(&output.stderr));
            let expected: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
            assert_eq!(glob_paths(&full), expected, "pattern {pattern}");
        }
    }
}
