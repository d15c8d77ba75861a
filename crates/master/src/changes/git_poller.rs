//! The git poller (`type = "git"`, Buildbot's `GitPoller`): keeps a bare mirror of a repository, fetches it every
//! poll interval with the `git` command line, and turns the commits that appeared on the watched branches into
//! changes.
//!
//! Semantics:
//! - The first poll of a poller (no stored state under its name) only records the current heads: no changes.
//! - A branch that moved: one change per commit of `new --not old`, oldest first (a fast-forward gives the new
//!   commits; a force-push gives the commits of the new head that the old head did not have). If the old head
//!   is no longer in the mirror, only the new tip. A branch moved back to an ancestor gives nothing.
//! - A new branch: its commits not reachable from any head known before this poll, or only its tip if that
//!   gives nothing (a branch created on an existing commit).
//! - A deleted branch (or one the filter no longer selects) is forgotten, without a change.
//! - With `with_tags`, a new or moved tag gives one change for the commit it points to (category `tag`, branch
//!   the tag's name); tags are kept in the state as `refs/tags/<name>` next to branch names.
//! - Merge commits list no files (`git log --name-only` shows none for them).
//!
//! A poll runs as few `git` processes as it can, as the time from a push to its build is mostly theirs: one
//! `git fetch` (no tags unless asked, no `FETCH_HEAD`, no forced-update check, no automatic maintenance), one
//! `git for-each-ref`, and one `git log` per ref that moved. The mirror's maintenance (`git maintenance run
//! --auto`, which `git fetch` would otherwise run after every fetch) runs at the start of the poll after one
//! that changed the mirror, outside the time from a push to its build.
//!
//! Delivery is two-phase and at-least-once: [`GitPoller::poll`] computes the changes and keeps the new heads
//! pending; the caller stores the changes and only then calls [`GitPoller::commit_state`], which saves the heads
//! (`object_state`, key `last_rev`). A crash (or a store error) between the two leaves the old heads stored, so
//! the next poll delivers the same changes again rather than losing them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::NewChange;
use crate::config::{Branches, GitPollerDef};
use crate::store::{Store, StoreError};

/// The state key under which the heads seen last are stored: a JSON map branch → commit id.
pub const LAST_REV_KEY: &str = "last_rev";

/// How long one `git` command may run (a fetch of a large repository included).
const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The heads of the watched refs: branch name (or `refs/tags/<tag>`) → commit id.
pub type Heads = BTreeMap<String, String>;

/// Why a poll failed. Nothing is stored when a poll fails.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("cannot run git {args}: {source}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git {args} failed ({status}): {stderr}")]
    Git { args: String, status: String, stderr: String },
    #[error("git {args} timed out after {} s", timeout.as_secs())]
    Timeout { args: String, timeout: Duration },
    #[error("unexpected output from git {args}: {reason}")]
    Output { args: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid branch pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("stored state {key:?} of {name:?} is not valid: {reason}")]
    State { name: String, key: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("fetch {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {reason}")]
    Index { url: String, reason: String },
}

/// A git poller: one per `[[change_source]]` of `type = "git"`.
pub struct GitPoller {
    def: GitPollerDef,
    /// The bare mirror this poller owns.
    workdir: PathBuf,
    store: Store,
    /// The heads the last successful poll saw, saved by [`GitPoller::commit_state`].
    pending: Option<Heads>,
    /// All the mirror's refs as the last poll's `for-each-ref` listed them: when a fetch changes them, the
    /// mirror's maintenance is due.
    mirror_refs: Option<String>,
    /// The last fetch changed the mirror: run its maintenance before the next fetch.
    maintenance_due: bool,
}

impl GitPoller {
    /// A poller whose mirror is `<master_dir>/gitpoller/<sanitized name>` (created at the first poll).
    pub fn new(def: GitPollerDef, master_dir: &Path, store: Store) -> GitPoller {
        let workdir = master_dir.join("gitpoller").join(mirror_dir_name(&def.name));
        GitPoller { def, workdir, store, pending: None, mirror_refs: None, maintenance_due: false }
    }

    /// The poller's definition.
    pub fn def(&self) -> &GitPollerDef {
        &self.def
    }

    /// The bare mirror's directory.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Polls once: fetches the repository and returns the new changes, oldest first per branch. The new heads
    /// are kept pending until [`GitPoller::commit_state`]; a failed poll changes nothing.
    pub async fn poll(&mut self) -> Result<Vec<NewChange>, PollError> {
        self.pending = None;
        let pattern = match &self.def.branches {
            Branches::Pattern(p) => Some(
                glob::Pattern::new(p).map_err(|e| PollError::Pattern { pattern: p.clone(), reason: e.to_string() })?,
            ),
            _ => None,
        };
        let last = self.stored_heads().await?;
        self.ensure_mirror().await?;
        if self.maintenance_due {
            self.maintain().await;
        }
        self.fetch().await?;
        let heads = self.list_heads(pattern.as_ref()).await?;
        let changes = match &last {
            None => Vec::new(),
            Some(last) => self.changes_between(last, &heads).await?,
        };
        self.pending = Some(heads);
        Ok(changes)
    }

    /// Saves the heads of the last successful poll, once its changes are stored. Does nothing if there are none
    /// pending (no poll, or a failed one).
    pub async fn commit_state(&mut self) -> Result<(), PollError> {
        if let Some(heads) = self.pending.take() {
            let value = serde_json::to_value(&heads).map_err(|e| self.state_error(e.to_string()))?;
            self.store.set_state(&self.def.name, LAST_REV_KEY, &value).await?;
        }
        Ok(())
    }

    fn state_error(&self, reason: String) -> PollError {
        PollError::State { name: self.def.name.clone(), key: LAST_REV_KEY.into(), reason }
    }

    /// The heads stored by the last committed poll; `None` before the first one.
    async fn stored_heads(&self) -> Result<Option<Heads>, PollError> {
        match self.store.get_state(&self.def.name, LAST_REV_KEY).await? {
            None => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| self.state_error(e.to_string())),
        }
    }

    /// Creates the bare mirror unless it exists.
    async fn ensure_mirror(&self) -> Result<(), PollError> {
        if tokio::fs::try_exists(self.workdir.join("HEAD")).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::fs::create_dir_all(&self.workdir)
            .await
            .map_err(|source| PollError::Io { what: format!("create {}", self.workdir.display()), source })?;
        let mut command = Command::new("git");
        command.args(["init", "--bare", "--quiet"]).arg(&self.workdir);
        let (status, _, stderr) = output(&mut command, "init --bare").await?;
        if status.success() {
            Ok(())
        } else {
            Err(PollError::Git { args: "init --bare".into(), status: status.to_string(), stderr: stderr.trim().into() })
        }
    }

    /// Fetches the watched refs into the mirror. `FETCH_HEAD`, the forced-update check and the automatic
    /// maintenance would each cost time nobody uses (the poller compares heads itself; see [`GitPoller::maintain`]).
    async fn fetch(&self) -> Result<(), PollError> {
        let mut args = vec![
            "fetch",
            "--prune",
            "--no-tags",
            "--quiet",
            "--no-write-fetch-head",
            "--no-show-forced-updates",
            "--no-auto-maintenance",
            "--",
            &self.def.repository,
        ];
        args.push("+refs/heads/*:refs/heads/*");
        if self.def.with_tags {
            args.push("+refs/tags/*:refs/tags/*");
        }
        self.git(&args).await.map(drop)
    }

    /// Runs the mirror's automatic maintenance (packing loose objects, `git gc --auto`), as `git fetch` would
    /// after each fetch. A failure is only logged: the mirror works without it, and the next change retries.
    async fn maintain(&mut self) {
        self.maintenance_due = false;
        let args = ["-c", "maintenance.autoDetach=true", "maintenance", "run", "--auto", "--quiet"];
        if let Err(e) = self.git(&args).await {
            tracing::warn!(source = %self.def.name, "mirror maintenance failed: {e}");
        }
    }

    /// The current heads of the watched branches (and tags), from the mirror.
    async fn list_heads(&mut self, pattern: Option<&glob::Pattern>) -> Result<Heads, PollError> {
        let mut args = vec!["for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", "refs/heads"];
        if self.def.with_tags {
            args.push("refs/tags");
        }
        let out = self.git(&args).await?;
        if self.mirror_refs.as_ref().is_some_and(|before| *before != out) {
            self.maintenance_due = true;
        }
        let mut heads = Heads::new();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let mut fields = line.split('\0');
            let (Some(refname), Some(object), peeled) = (fields.next(), fields.next(), fields.next()) else {
                return Err(PollError::Output { args: "for-each-ref".into(), reason: format!("line {line:?}") });
            };
            if let Some(branch) = refname.strip_prefix("refs/heads/") {
                let watched = match &self.def.branches {
                    Branches::All => true,
                    Branches::Named(names) => names.iter().any(|n| n == branch),
                    Branches::Pattern(_) => pattern.is_some_and(|p| p.matches(branch)),
                };
                if watched {
                    heads.insert(branch.to_string(), object.to_string());
                }
            } else if refname.starts_with("refs/tags/") {
                // An annotated tag points to a tag object: its commit is the peeled one.
                let commit = peeled.filter(|p| !p.is_empty()).unwrap_or(object);
                heads.insert(refname.to_string(), commit.to_string());
            }
        }
        self.mirror_refs = Some(out);
        Ok(heads)
    }

    /// The changes that lead from the heads `last` to `heads` (see the module's documentation).
    async fn changes_between(&self, last: &Heads, heads: &Heads) -> Result<Vec<NewChange>, PollError> {
        let known: BTreeSet<&str> = last.values().map(String::as_str).collect();
        let mut changes = Vec::new();
        // Branches first, then tags.
        let ordered = heads
            .iter()
            .filter(|(r, _)| !r.starts_with("refs/tags/"))
            .chain(heads.iter().filter(|(r, _)| r.starts_with("refs/tags/")));
        for (name, new) in ordered {
            let old = last.get(name);
            if old == Some(new) {
                continue;
            }
            if let Some(tag) = name.strip_prefix("refs/tags/") {
                let mut tip = self.log(new, &[], true, false).await?;
                for change in &mut tip {
                    change.branch = Some(tag.to_string());
                    change.category = Some("tag".into());
                }
                changes.extend(tip);
                continue;
            }
            let commits = match old {
                Some(old) => self.log_since(new, old).await?,
                None => {
                    let excluded: Vec<&str> = known.iter().copied().collect();
                    let commits = self.log(new, &excluded, false, true).await?;
                    if commits.is_empty() {
                        self.log(new, &[], true, false).await?
                    } else {
                        commits
                    }
                }
            };
            changes.extend(commits.into_iter().map(|mut c| {
                c.branch = Some(name.clone());
                c
            }));
        }
        Ok(changes)
    }

    /// The commits of `new` that `old` did not have; only `new` if `old` is no longer in the mirror. (One `git log`
    /// in the usual case: whether `old` exists is asked only when that log fails.)
    async fn log_since(&self, new: &str, old: &str) -> Result<Vec<NewChange>, PollError> {
        match self.log(new, &[old], false, false).await {
            Ok(commits) => Ok(commits),
            Err(e @ PollError::Git { .. }) => match self.has_commit(old).await? {
                true => Err(e),
                false => self.log(new, &[], true, false).await,
            },
            Err(e) => Err(e),
        }
    }

    async fn has_commit(&self, sha: &str) -> Result<bool, PollError> {
        let object = format!("{sha}^{{commit}}");
        let mut command = self.command(&["cat-file", "-e", &object]);
        let (status, _, _) = output(&mut command, "cat-file -e").await?;
        Ok(status.success())
    }

    /// The commits of `new` not reachable from `exclude`, oldest first (only `new` itself when `tip_only`), as
    /// changes without a branch. An excluded commit that is not in the mirror fails the log, or is left out with
    /// `ignore_missing`.
    async fn log(
        &self,
        new: &str,
        exclude: &[&str],
        tip_only: bool,
        ignore_missing: bool,
    ) -> Result<Vec<NewChange>, PollError> {
        let mut args: Vec<String> = ["log", "--no-color", "--name-only", "-z"].into_iter().map(String::from).collect();
        if ignore_missing {
            args.push("--ignore-missing".into());
        }
        args.push(format!("--format={LOG_FORMAT}"));
        if tip_only {
            args.push("-1".into());
        } else {
            args.push("--reverse".into());
        }
        args.push(new.to_string());
        args.extend(exclude.iter().map(|sha| format!("^{sha}")));
        args.push("--".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.git(&args).await?;
        parse_log(&out)
            .map_err(|reason| PollError::Output { args: "log".into(), reason })?
            .into_iter()
            .map(|commit| Ok(self.change(commit)))
            .collect()
    }

    fn change(&self, commit: Commit) -> NewChange {
        NewChange {
            author: commit.author,
            committer: Some(commit.committer),
            comments: commit.message,
            files: commit.files,
            revision: Some(commit.sha),
            branch: None,
            repository: self.def.repository.clone(),
            project: self.def.project.clone(),
            codebase: self.def.codebase.clone(),
            category: None,
            when_timestamp: commit.timestamp,
            properties: BTreeMap::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command.arg("--git-dir").arg(&self.workdir);
        command.args(["-c", "log.showSignature=false", "-c", "color.ui=false"]);
        command.args(args);
        command
    }

    /// Runs git on the mirror; its standard output.
    async fn git(&self, args: &[&str]) -> Result<String, PollError> {
        let shown = shown_args(args, &self.def.repository);
        let mut command = self.command(args);
        let (status, stdout, stderr) = output(&mut command, &shown).await?;
        if !status.success() {
            return Err(PollError::Git { args: shown, status: status.to_string(), stderr: redact(stderr.trim()) });
        }
        String::from_utf8(stdout).map_err(|e| PollError::Output { args: shown, reason: e.to_string() })
    }
}

impl super::Poller for GitPoller {
    fn name(&self) -> &str {
        &self.def.name
    }

    fn poll(&mut self) -> impl Future<Output = Result<Vec<NewChange>, PollError>> + Send {
        GitPoller::poll(self)
    }

    fn commit_state(&mut self) -> impl Future<Output = Result<(), PollError>> + Send {
        GitPoller::commit_state(self)
    }

    fn discard(&mut self) {
        self.pending = None;
    }
}

/// Runs `command` with no prompt and the timeout; (status, stdout, stderr). The process is killed on timeout.
async fn output(command: &mut Command, shown: &str) -> Result<(std::process::ExitStatus, Vec<u8>, String), PollError> {
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| PollError::Spawn { args: shown.into(), source })?;
    match tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Err(PollError::Timeout { args: shown.into(), timeout: GIT_TIMEOUT }),
        Ok(Err(source)) => Err(PollError::Spawn { args: shown.into(), source }),
        Ok(Ok(out)) => Ok((out.status, out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())),
    }
}

/// `git log`'s format: a record separator, then NUL-separated sha, author, committer, commit time and message;
/// `--name-only -z` follows each record with its NUL-separated files.
const LOG_FORMAT: &str = "%x1e%H%x00%an <%ae>%x00%cn <%ce>%x00%ct%x00%B%x00";

#[derive(Debug, PartialEq)]
struct Commit {
    sha: String,
    author: String,
    committer: String,
    timestamp: i64,
    message: String,
    files: Vec<String>,
}

/// Parses the output of `git log -z --name-only --format=LOG_FORMAT`.
fn parse_log(out: &str) -> Result<Vec<Commit>, String> {
    let mut commits = Vec::new();
    for record in out.split('\x1e').filter(|r| !r.is_empty()) {
        let mut fields = record.splitn(6, '\0');
        let mut next = |what: &str| fields.next().ok_or_else(|| format!("a record without {what}: {record:?}"));
        let sha = next("sha")?.to_string();
        let author = next("author")?.to_string();
        let committer = next("committer")?.to_string();
        let time = next("time")?;
        let timestamp = time.parse().map_err(|_| format!("commit time {time:?}"))?;
        let message = next("message")?.trim_end().to_string();
        let rest = fields.next().unwrap_or("");
        let rest = rest.strip_prefix('\0').unwrap_or(rest);
        let rest = rest.strip_prefix('\n').unwrap_or(rest);
        let files = rest.split('\0').filter(|f| !f.is_empty()).map(String::from).collect();
        commits.push(Commit { sha, author, committer, timestamp, message, files });
    }
    Ok(commits)
}

/// A directory name for the poller `name`: its safe characters and a hash (so distinct names never share one).
fn mirror_dir_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(60).collect();
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    format!("{}-{hash}", safe.trim_start_matches('.'))
}

/// The arguments as shown in errors, with any password in the repository URL hidden.
fn shown_args(args: &[&str], repository: &str) -> String {
    args.iter().map(|a| if *a == repository { redact(a) } else { (*a).to_string() }).collect::<Vec<_>>().join(" ")
}

/// Hides the user information of URLs (`https://user:token@host/…` → `https://***@host/…`).
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&tail[userinfo_end..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::process::Command as StdCommand;

    use super::*;
    use crate::store::testing::temp_store;

    /// A real repository in a temporary directory, with fixed authors and dates.
    struct Repo {
        dir: tempfile::TempDir,
        clock: i64,
    }

    impl Repo {
        fn new() -> Repo {
            let repo = Repo { dir: tempfile::tempdir().expect("tempdir"), clock: 1_700_000_000 };
            repo.git(&["init", "--quiet", "--initial-branch=main"]);
            repo
        }

        fn path(&self) -> String {
            self.dir.path().to_string_lossy().into_owned()
        }

        fn git(&self, args: &[&str]) -> String {
            let date = format!("@{} +0000", self.clock);
            let out = StdCommand::new("git")
                .arg("-C")
                .arg(self.dir.path())
                .args(["-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com"])
                .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
                .args(args)
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date)
                .env("GIT_COMMITTER_NAME", "Bob Builder")
                .env("GIT_COMMITTER_EMAIL", "bob@example.com")
                .output()
                .expect("run git");
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
        }

        /// Commits `file` (with `content`) with `message`; the new commit's id.
        fn commit(&mut self, file: &str, content: &str, message: &str) -> String {
            self.clock += 60;
            let path = self.dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write");
            self.git(&["add", "--all"]);
            self.git(&["commit", "--quiet", "-m", message]);
            self.git(&["rev-parse", "HEAD"])
        }
    }

    fn def(repo: &Repo, branches: Branches) -> GitPollerDef {
        GitPollerDef {
            name: format!("git:{}", repo.path()),
            repository: repo.path(),
            branches,
            poll_interval: Duration::from_secs(60),
            with_tags: false,
            project: "proj".into(),
            codebase: "cb".into(),
        }
    }

    /// Polls and commits the state, as `run_poller` does when the changes are stored.
    async fn poll(poller: &mut GitPoller) -> Vec<NewChange> {
        let changes = poller.poll().await.expect("poll");
        poller.commit_state().await.expect("commit state");
        changes
    }

    fn revisions(changes: &[NewChange]) -> Vec<(String, String)> {
        changes.iter().map(|c| (c.branch.clone().unwrap_or_default(), c.revision.clone().unwrap_or_default())).collect()
    }

    async fn stored(store: &Store, name: &str) -> Option<Heads> {
        store.get_state(name, LAST_REV_KEY).await.expect("state").map(|v| serde_json::from_value(v).expect("heads"))
    }

    #[tokio::test]
    async fn first_poll_records_heads_then_commits_become_changes_oldest_first() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        let first = repo.commit("README", "hello\n", "Initial");
        let def = def(&repo, Branches::All);
        let mut poller = GitPoller::new(def.clone(), dir.path(), store.clone());

        assert!(poll(&mut poller).await.is_empty());
        assert_eq!(stored(&store, &def.name).await, Some(Heads::from([("main".into(), first.clone())])));
        assert!(poller.workdir().join("HEAD").exists());
        assert!(poll(&mut poller).await.is_empty(), "nothing new");

        let a = repo.commit("src/a.rs", "a\n", "Add a\n\nWith a body.");
        let b = repo.commit("docs/b c.md", "b\n", "Add b");
        let c = repo.commit("src/a.rs", "a2\n", "Change a");
        let changes = poll(&mut poller).await;
        assert_eq!(
            revisions(&changes),
            vec![("main".into(), a.clone()), ("main".into(), b), ("main".into(), c.clone())]
        );
        let change = &changes[0];
        assert_eq!(change.author, "Ada Lovelace <ada@example.com>");
        assert_eq!(change.committer.as_deref(), Some("Bob Builder <bob@example.com>"));
        assert_eq!(change.comments, "Add a\n\nWith a body.");
        assert_eq!(change.files, vec!["src/a.rs".to_string()]);
        assert_eq!(change.when_timestamp, 1_700_000_120);
        assert_eq!(change.repository, repo.path());
        assert_eq!(
            (change.project.as_str(), change.codebase.as_str(), change.category.as_deref()),
            ("proj", "cb", None)
        );
        assert_eq!(changes[1].files, vec!["docs/b c.md".to_string()]);
        assert_eq!(changes[2].when_timestamp, 1_700_000_240);
        assert_eq!(stored(&store, &def.name).await, Some(Heads::from([("main".into(), c)])));
        assert!(poll(&mut poller).await.is_empty());
    }

    #[tokio::test]
    async fn new_deleted_and_force_pushed_branches() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        let base = repo.commit("f", "1\n", "Base");
        let mut poller = GitPoller::new(def(&repo, Branches::All), dir.path(), store.clone());
        assert!(poll(&mut poller).await.is_empty());

        // A new branch with one commit: only that commit.
        repo.git(&["checkout", "--quiet", "-b", "feature"]);
        let feature = repo.commit("g", "1\n", "Feature");
        assert_eq!(revisions(&poll(&mut poller).await), vec![("feature".into(), feature.clone())]);

        // A new branch on a known commit: its tip.
        repo.git(&["branch", "other", &base]);
        assert_eq!(revisions(&poll(&mut poller).await), vec![("other".into(), base.clone())]);

        // A deleted branch: no change, forgotten.
        repo.git(&["checkout", "--quiet", "main"]);
        repo.git(&["branch", "-D", "other"]);
        assert!(poll(&mut poller).await.is_empty());
        let heads = stored(&store, &poller.def().name).await.expect("heads");
        assert_eq!(heads.keys().collect::<Vec<_>>(), vec!["feature", "main"]);

        // A force-push: only the commits the old head did not have.
        repo.git(&["checkout", "--quiet", "feature"]);
        repo.git(&["reset", "--quiet", "--hard", &base]);
        let x = repo.commit("x", "x\n", "Rewritten 1");
        let y = repo.commit("y", "y\n", "Rewritten 2");
        assert_eq!(revisions(&poll(&mut poller).await), vec![("feature".into(), x), ("feature".into(), y)]);

        // Moved back to an ancestor: nothing.
        repo.git(&["reset", "--quiet", "--hard", "HEAD~1"]);
        assert!(poll(&mut poller).await.is_empty());
    }

    #[tokio::test]
    async fn a_force_push_whose_old_head_left_the_mirror_gives_the_new_tip_and_the_mirror_is_maintained() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        let base = repo.commit("f", "1\n", "Base");
        let mut poller = GitPoller::new(def(&repo, Branches::All), dir.path(), store.clone());
        assert!(poll(&mut poller).await.is_empty());
        assert!(!poller.maintenance_due, "the first poll has nothing to compare with");
        assert!(poll(&mut poller).await.is_empty());
        assert!(!poller.maintenance_due, "nothing fetched");

        let old = repo.commit("f", "2\n", "Two");
        assert_eq!(revisions(&poll(&mut poller).await), vec![("main".into(), old.clone())]);
        assert!(poller.maintenance_due, "the fetch changed the mirror");

        // Force-push away from `old`, then drop it from the mirror as a `git gc` would once it is unreachable.
        repo.git(&["reset", "--quiet", "--hard", &base]);
        let x = repo.commit("x", "x\n", "Rewritten 1");
        let y = repo.commit("y", "y\n", "Rewritten 2");
        let mirror = poller.workdir().to_path_buf();
        let git = |args: &[&str]| {
            let out = StdCommand::new("git").arg("--git-dir").arg(&mirror).args(args).output().expect("run git");
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["fetch", "--quiet", "--prune", "--", &repo.path(), "+refs/heads/*:refs/heads/*"]);
        git(&["reflog", "expire", "--expire=now", "--all"]);
        git(&["gc", "--quiet", "--prune=now"]);
        assert!(!poller.has_commit(&old).await.expect("cat-file"), "{old} still in the mirror");

        assert_eq!(revisions(&poll(&mut poller).await), vec![("main".into(), y)]);
        assert!(poller.has_commit(&x).await.expect("cat-file"));
        assert!(poller.maintenance_due, "the mirror's refs changed since the last poll listed them");
        assert!(poll(&mut poller).await.is_empty());
        assert!(!poller.maintenance_due, "maintained at the start of that poll, which fetched nothing new");
    }

    #[tokio::test]
    async fn a_restarted_poller_delivers_the_commits_since_the_stored_heads_once() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        repo.commit("f", "1\n", "Base");
        let def = def(&repo, Branches::All);
        let mut poller = GitPoller::new(def.clone(), dir.path(), store.clone());
        assert!(poll(&mut poller).await.is_empty());
        drop(poller);

        let a = repo.commit("f", "2\n", "Two");
        let b = repo.commit("f", "3\n", "Three");
        let mut poller = GitPoller::new(def.clone(), dir.path(), store.clone());
        // A crash after the changes were stored but before the heads were saved: the next poll delivers them
        // again, and the store, asked as the master asks it, keeps each commit once.
        let changes = poller.poll().await.expect("poll");
        assert_eq!(revisions(&changes), vec![("main".into(), a.clone()), ("main".into(), b.clone())]);
        for change in &changes {
            assert!(store.add_change_once(change).await.expect("store").is_some());
        }
        drop(poller);

        let mut poller = GitPoller::new(def, dir.path(), store.clone());
        let again = poll(&mut poller).await;
        assert_eq!(revisions(&again), vec![("main".into(), a), ("main".into(), b)]);
        for change in &again {
            assert_eq!(store.add_change_once(change).await.expect("store"), None, "{change:?} stored twice");
        }
        assert!(poll(&mut poller).await.is_empty());
    }

    #[tokio::test]
    async fn branch_filters_select_branches() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        repo.commit("f", "1\n", "Base");
        repo.git(&["branch", "release/1.0"]);
        repo.git(&["branch", "dev"]);
        let mut named = GitPoller::new(def(&repo, Branches::Named(vec!["dev".into()])), dir.path(), store.clone());
        let mut pattern = def(&repo, Branches::Pattern("release/*".into()));
        pattern.name = "pattern".into();
        let mut pattern = GitPoller::new(pattern, dir.path(), store.clone());
        assert!(poll(&mut named).await.is_empty());
        assert!(poll(&mut pattern).await.is_empty());
        assert_eq!(stored(&store, &named.def().name).await.expect("heads").keys().collect::<Vec<_>>(), vec!["dev"]);
        assert_eq!(stored(&store, "pattern").await.expect("heads").keys().collect::<Vec<_>>(), vec!["release/1.0"]);

        let main = repo.commit("f", "2\n", "On main");
        repo.git(&["checkout", "--quiet", "dev"]);
        let dev = repo.commit("f", "3\n", "On dev");
        repo.git(&["checkout", "--quiet", "release/1.0"]);
        let release = repo.commit("f", "4\n", "On release");
        repo.git(&["branch", "release/2.0", &main]);
        assert_eq!(revisions(&poll(&mut named).await), vec![("dev".into(), dev)]);
        assert_eq!(
            revisions(&poll(&mut pattern).await),
            vec![("release/1.0".into(), release), ("release/2.0".into(), main)]
        );
    }

    #[tokio::test]
    async fn tags_become_changes_when_asked() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        repo.commit("f", "1\n", "Base");
        let mut def = def(&repo, Branches::All);
        def.with_tags = true;
        let mut poller = GitPoller::new(def, dir.path(), store.clone());
        assert!(poll(&mut poller).await.is_empty());
        let head = repo.commit("f", "2\n", "Two");
        repo.git(&["tag", "-a", "-m", "Version 1", "v1"]);
        let changes = poll(&mut poller).await;
        assert_eq!(revisions(&changes), vec![("main".into(), head.clone()), ("v1".into(), head)]);
        assert_eq!(changes[1].category.as_deref(), Some("tag"));
    }

    #[tokio::test]
    async fn an_unreachable_repository_is_an_error_and_changes_no_state() {
        let (store, dir) = temp_store().await;
        let mut repo = Repo::new();
        repo.commit("f", "1\n", "Base");
        let def = def(&repo, Branches::All);
        let mut poller = GitPoller::new(def.clone(), dir.path(), store.clone());
        assert!(poll(&mut poller).await.is_empty());
        let before = stored(&store, &def.name).await;

        let mut gone = def.clone();
        gone.repository = dir.path().join("no-such-repo").to_string_lossy().into_owned();
        let mut poller = GitPoller::new(gone, dir.path(), store.clone());
        let err = poller.poll().await.expect_err("unreachable");
        assert!(matches!(err, PollError::Git { .. }), "{err}");
        poller.commit_state().await.expect("nothing to commit");
        assert_eq!(stored(&store, &def.name).await, before);

        let mut fresh = def.clone();
        fresh.name = "fresh".into();
        fresh.repository = "https://user:secret@127.0.0.1:1/nothing.git".into();
        let mut poller = GitPoller::new(fresh, dir.path(), store.clone());
        let err = poller.poll().await.expect_err("unreachable");
        assert!(!err.to_string().contains("secret"), "{err}");
        poller.commit_state().await.expect("nothing to commit");
        assert_eq!(store.get_state("fresh", LAST_REV_KEY).await.expect("state"), None);
    }

    #[test]
    fn urls_are_redacted_and_mirror_names_are_safe() {
        assert_eq!(
            redact("fatal: https://u:p@host/x.git and ssh://git@h/y"),
            "fatal: https://***@host/x.git and ssh://***@h/y"
        );
        assert_eq!(redact("https://host/x"), "https://host/x");
        let a = mirror_dir_name("git:https://host/a/b");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{a}");
        assert_ne!(a, mirror_dir_name("git:https://host/a_b"));
        assert!(!mirror_dir_name("..").starts_with('.'));
    }
}
