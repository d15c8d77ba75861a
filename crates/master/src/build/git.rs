//! The git step on the worker: the same sequence of `git` commands and file commands as Buildbot's `Git` source
//! step (`master/buildbot/steps/source/git.py`), so a stock buildbot-worker runs it too. It checks out the build's
//! source stamp (its revision if it has one, else the head of its branch), all output going to the step's
//! `stdio`, and sets `got_revision` from `git rev-parse HEAD`.
//!
//! A build without any source stamp takes the build's `branch` and `revision` properties (set by a force form or
//! a builder's `properties`) instead; a build whose source stamps are all of other codebases (say, a package
//! release) checks out the head of the step's `branch`.

use kiln_protocol::{ArgvWord, Command, CommandLine, EnvValue, ShellArgs};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::logs::StepLogs;
use super::properties::BuildProperties;
use super::remote::{self, RemoteOutcome, Target};
use super::BuildJob;
use crate::config::{GitMethod, GitMode, GitStep};
use crate::interpolate::{python_str, render, Lookup};
use crate::results::{CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS};
use crate::store::StoreError;
use crate::workers::CommandIo;

/// Where `mode = "full"`, `method = "copy"` keeps its checkout, relative to the builder's directory.
const COPY_SOURCE_DIR: &str = "source";
/// The length of a full SHA-1 revision, which `git rev-parse HEAD` must print.
const GIT_HASH_LENGTH: usize = 40;
/// The source of the `got_revision` property.
const PROPERTY_SOURCE: &str = "Git";

/// Why the sequence stopped early: the step's result, or the store failing.
enum Ended {
    Result(i32),
    Store(StoreError),
}

impl From<StoreError> for Ended {
    fn from(e: StoreError) -> Ended {
        Ended::Store(e)
    }
}

type Flow<T> = Result<T, Ended>;

/// Runs the git step and returns its outcome.
pub(super) async fn run(
    job: &BuildJob,
    step: &GitStep,
    props: &mut BuildProperties,
    logs: &mut StepLogs<'_>,
    stop: &CancellationToken,
) -> Result<RemoteOutcome, StoreError> {
    let (branch, revision) = wanted(step, props);
    let mut git = Checkout {
        job,
        step,
        logs,
        stop,
        repourl: render(&step.repourl, &props.with_secrets()),
        branch,
        revision,
        workdir: render(&step.workdir, &props.with_secrets()),
        env: step.env.iter().map(|(k, v)| (k.clone(), EnvValue::Value(render(v, &props.with_secrets())))).collect(),
    };
    let result = match git.checkout().await {
        Ok(revision) => {
            let value = got_revision(props, &step.codebase, revision);
            props.set_stored(&job.store, job.buildid, "got_revision", value, PROPERTY_SOURCE).await?;
            SUCCESS
        }
        Err(Ended::Result(result)) => result,
        Err(Ended::Store(e)) => return Err(e),
    };
    Ok(RemoteOutcome { result, ..RemoteOutcome::default() })
}

/// The new value of `got_revision`: the revision, or with a codebase (as Buildbot's `updateSourceProperty`) an
/// object of revisions by codebase, to which this step's is added.
fn got_revision(props: &BuildProperties, codebase: &str, revision: String) -> Value {
    if codebase.is_empty() {
        return Value::from(revision);
    }
    let mut by_codebase = match props.property("got_revision") {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    by_codebase.insert(codebase.to_owned(), Value::from(revision));
    Value::Object(by_codebase)
}

/// The branch and revision to check out: the source stamp's of the step's codebase, else (without any source
/// stamp) the build's `branch` and `revision` properties; the branch falls back to the step's `branch`, the
/// revision to the branch's head.
fn wanted(step: &GitStep, props: &BuildProperties) -> (String, Option<String>) {
    let text = |v: Option<Value>| v.map(|v| python_str(&v)).filter(|s| !s.is_empty());
    let (branch, revision) = match props.sourcestamp(&step.codebase) {
        Some(ss) => (ss.branch.clone().filter(|b| !b.is_empty()), ss.revision.clone().filter(|r| !r.is_empty())),
        None if props.sourcestamps().is_empty() => {
            (text(props.property("branch").cloned()), text(props.property("revision").cloned()))
        }
        None => (None, None),
    };
    let branch = branch.unwrap_or_else(|| render(&step.branch, &props.with_secrets()));
    (if branch.is_empty() { "HEAD".to_owned() } else { branch }, revision)
}

/// One run of the step: what it checks out, and where.
struct Checkout<'j, 'l, 's> {
    job: &'j BuildJob,
    step: &'j GitStep,
    logs: &'l mut StepLogs<'s>,
    stop: &'j CancellationToken,
    repourl: String,
    /// `HEAD` for the remote's default branch.
    branch: String,
    revision: Option<String>,
    /// Relative to the builder's directory.
    workdir: String,
    env: Vec<(String, EnvValue)>,
}

impl Checkout<'_, '_, '_> {
    /// The whole sequence; returns the revision checked out.
    async fn checkout(&mut self) -> Flow<String> {
        if self.vc(&["--version"], false).await? != 0 {
            self.logs.header("git is not installed on the worker\n").await?;
            return Err(Ended::Result(FAILURE));
        }
        match self.step.mode {
            GitMode::Incremental => self.mode_incremental().await?,
            GitMode::Full(method) => self.mode_full(method).await?,
        }
        let stdout = self.vc_stdout(&["rev-parse", "HEAD"]).await?;
        let revision = stdout.trim();
        if revision.len() != GIT_HASH_LENGTH {
            self.logs.header(&format!("'git rev-parse HEAD' printed {revision:?}, not a revision\n")).await?;
            return Err(Ended::Result(FAILURE));
        }
        Ok(revision.to_owned())
    }

    async fn mode_full(&mut self, method: GitMethod) -> Flow<()> {
        match method {
            GitMethod::Clobber => return self.clobber().await,
            GitMethod::Copy => return self.copy().await,
            GitMethod::Clean | GitMethod::Fresh => {}
        }
        match self.sourcedir().await? {
            Sourcedir::Clobber => self.clobber().await,
            Sourcedir::Clone => self.full_clone_or_fallback().await,
            Sourcedir::Update if method == GitMethod::Clean => self.clean().await,
            Sourcedir::Update => self.fresh().await,
        }
    }

    async fn mode_incremental(&mut self) -> Flow<()> {
        match self.sourcedir().await? {
            Sourcedir::Clobber => return self.clobber().await,
            Sourcedir::Clone => return self.full_clone_or_fallback().await,
            Sourcedir::Update => {}
        }
        self.fetch_or_fallback().await?;
        self.sync_submodules().await?;
        self.update_submodules().await
    }

    /// `git clean -f -f -d`, update, and the same in submodules.
    async fn clean(&mut self) -> Flow<()> {
        const CLEAN: [&str; 4] = ["clean", "-f", "-f", "-d"];
        if self.vc(&CLEAN, !self.step.clobber_on_failure).await? != 0 {
            return self.clobber().await;
        }
        self.fetch_or_fallback().await?;
        self.sync_submodules().await?;
        self.update_submodules().await?;
        self.clean_submodules(false).await?;
        if self.step.submodules {
            self.vc(&CLEAN, true).await?;
        }
        Ok(())
    }

    /// `git clean -f -f -d -x` (else a new clone), update, and the same in submodules.
    async fn fresh(&mut self) -> Flow<()> {
        const CLEAN: [&str; 5] = ["clean", "-f", "-f", "-d", "-x"];
        if self.vc(&CLEAN, false).await? == 0 {
            self.fetch_or_fallback().await?;
        } else {
            self.rmdir().await?;
            self.full_clone_or_fallback().await?;
        }
        self.sync_submodules().await?;
        self.update_submodules().await?;
        self.clean_submodules(true).await?;
        if self.step.submodules {
            self.vc(&CLEAN, true).await?;
        }
        Ok(())
    }

    /// Removes the directory and clones.
    async fn clobber(&mut self) -> Flow<()> {
        self.rmdir().await?;
        if self.full_clone().await? != 0 {
            return Err(Ended::Result(FAILURE));
        }
        Ok(())
    }

    /// Updates the checkout kept in `source` and copies it over a fresh workdir.
    async fn copy(&mut self) -> Flow<()> {
        let dest = self.on_worker(&self.workdir);
        let rmdir = Command::Rmdir { paths: vec![dest.clone()], timeout: self.timeout(), max_time: None };
        self.file_command(rmdir).await?;
        let workdir = std::mem::replace(&mut self.workdir, COPY_SOURCE_DIR.to_owned());
        let updated = self.mode_incremental().await;
        self.workdir = workdir;
        updated?;
        let from_path = self.on_worker(COPY_SOURCE_DIR);
        let cpdir = Command::Cpdir { from_path, to_path: dest, timeout: self.timeout(), max_time: None };
        if self.file_command(cpdir).await?.rc != Some(0) {
            return Err(Ended::Result(FAILURE));
        }
        Ok(())
    }

    /// Clones; a failure clobbers and clones again with `clobber_on_failure`, else fails the step.
    async fn full_clone_or_fallback(&mut self) -> Flow<()> {
        if self.full_clone().await? == 0 {
            return Ok(());
        }
        if !self.step.clobber_on_failure {
            return Err(Ended::Result(FAILURE));
        }
        self.clobber().await
    }

    /// Clones, checks out the revision and initialises the submodules; returns the last exit code.
    async fn full_clone(&mut self) -> Flow<i64> {
        let shallow = self.step.shallow;
        let rc = self.clone_repo().await?;
        if rc != 0 {
            return Ok(rc);
        }
        let mut rc = rc;
        if let Some(revision) = self.revision.clone() {
            rc = self.vc(&["checkout", "-f", &revision], shallow.is_some()).await?;
        }
        if self.step.submodules {
            let mut args = vec!["submodule".to_owned(), "update".into(), "--init".into(), "--recursive".into()];
            if let Some(depth) = shallow {
                args.extend(["--depth".into(), depth.to_string()]);
            }
            rc = self.vc(&args, shallow.is_some()).await?;
        }
        Ok(rc)
    }

    /// `git clone` into the workdir, on the branch when there is one.
    async fn clone_repo(&mut self) -> Flow<i64> {
        let mut args = vec!["clone".to_owned()];
        let mut switch_to_branch = false;
        if self.branch != "HEAD" {
            if self.branch.starts_with("refs/") {
                // `git clone --branch` takes no full ref name: the branch is fetched after the clone.
                switch_to_branch = true;
                args.push("--no-checkout".into());
            } else {
                args.extend(["--branch".into(), self.branch.clone()]);
            }
        }
        if let Some(depth) = self.step.shallow {
            args.extend(["--depth".into(), depth.to_string()]);
        }
        args.extend([self.repourl.clone(), ".".into()]);
        let mut rc = self.vc(&args, self.step.shallow.is_some()).await?;
        if switch_to_branch {
            rc = self.fetch(true).await?;
        }
        Ok(rc)
    }

    /// Fetches (unless the revision is already there) and checks out; returns the last exit code.
    async fn fetch(&mut self, abandon_on_failure: bool) -> Flow<i64> {
        let mut fetch_required = true;
        if let Some(revision) = self.revision.clone() {
            fetch_required = self.vc(&["cat-file", "-e", &revision], false).await? != 0;
        }
        if fetch_required {
            let mut args = vec!["fetch".to_owned(), "-f".into()];
            if let Some(depth) = self.step.shallow {
                args.extend(["--depth".into(), depth.to_string()]);
            }
            args.extend([self.repourl.clone(), self.branch.clone()]);
            let rc = self.vc(&args, abandon_on_failure).await?;
            if rc != 0 {
                return Ok(rc);
            }
        }
        let rev = self.revision.clone().unwrap_or_else(|| "FETCH_HEAD".to_owned());
        let rc = self.vc(&["checkout", "-f", &rev], abandon_on_failure).await?;
        if rc == 0 && self.branch != "HEAD" {
            let branch = self.branch.clone();
            self.vc(&["checkout", "-B", &branch], false).await?;
        }
        Ok(rc)
    }

    /// Fetches; on failure fetches again (`retry_fetch`), then clobbers (`clobber_on_failure`), else fails.
    async fn fetch_or_fallback(&mut self) -> Flow<()> {
        let (retry, clobber) = (self.step.retry_fetch, self.step.clobber_on_failure);
        if self.fetch(!retry && !clobber).await? == 0 {
            return Ok(());
        }
        if retry && self.fetch(!clobber).await? == 0 {
            return Ok(());
        }
        if clobber {
            return self.clobber().await;
        }
        Err(Ended::Result(FAILURE))
    }

    async fn sync_submodules(&mut self) -> Flow<()> {
        if self.step.submodules {
            self.vc(&["submodule", "sync"], true).await?;
        }
        Ok(())
    }

    async fn update_submodules(&mut self) -> Flow<()> {
        if self.step.submodules {
            self.vc(&["submodule", "update", "--init", "--recursive", "--force", "--checkout"], true).await?;
        }
        Ok(())
    }

    async fn clean_submodules(&mut self, ignored_too: bool) -> Flow<()> {
        if self.step.submodules {
            let clean = if ignored_too { "git clean -f -f -d -x" } else { "git clean -f -f -d" };
            self.vc(&["submodule", "foreach", "--recursive", clean], true).await?;
        }
        Ok(())
    }

    /// What is in the workdir: nothing (clone), a checkout (update) or something else (clobber).
    async fn sourcedir(&mut self) -> Flow<Sourcedir> {
        let path = self.on_worker(&self.workdir);
        let outcome = self.file_command(Command::Listdir { path }).await?;
        Ok(match outcome.files {
            None => Sourcedir::Clone,
            Some(files) if files.iter().any(|f| f == ".git") => Sourcedir::Update,
            Some(files) if files.is_empty() => Sourcedir::Clone,
            Some(_) => Sourcedir::Clobber,
        })
    }

    /// Removes the workdir.
    async fn rmdir(&mut self) -> Flow<()> {
        let path = self.on_worker(&self.workdir);
        let outcome =
            self.file_command(Command::Rmdir { paths: vec![path], timeout: self.timeout(), max_time: None }).await?;
        if outcome.rc != Some(0) {
            self.logs.header("cannot remove the directory\n").await?;
            return Err(Ended::Result(FAILURE));
        }
        Ok(())
    }

    /// Runs `git ARGS` in the workdir; returns its exit code. With `abandon_on_failure`, a non-zero code fails the
    /// step. A stop, a lost worker or a refused command ends the step at once.
    async fn vc<S: AsRef<str>>(&mut self, args: &[S], abandon_on_failure: bool) -> Flow<i64> {
        let outcome = self.git(args, false).await?;
        let rc = outcome.rc.unwrap_or(-1);
        if abandon_on_failure && rc != 0 {
            return Err(Ended::Result(FAILURE));
        }
        Ok(rc)
    }

    /// Runs `git ARGS` and returns its standard output; a non-zero exit code fails the step.
    async fn vc_stdout(&mut self, args: &[&str]) -> Flow<String> {
        let outcome = self.git(args, true).await?;
        if outcome.rc != Some(0) {
            return Err(Ended::Result(FAILURE));
        }
        Ok(outcome.stdout)
    }

    async fn git<S: AsRef<str>>(&mut self, args: &[S], collect_stdout: bool) -> Flow<RemoteOutcome> {
        let argv = std::iter::once("git").chain(args.iter().map(AsRef::as_ref)).map(ArgvWord::plain).collect();
        let mut shell = ShellArgs::new(self.on_worker(&self.workdir), CommandLine::Argv(argv));
        shell.env = self.env.clone();
        shell.timeout = self.timeout();
        shell.log_environ = self.step.log_environ;
        self.remote(Command::Shell(shell), collect_stdout, true).await
    }

    /// Runs a file command (`listdir`, `rmdir`, `cpdir`); its failure is the caller's to judge. Its exit code
    /// is not written to the log, which shows only the git commands' "program finished" lines (one each).
    async fn file_command(&mut self, command: Command) -> Flow<RemoteOutcome> {
        self.remote(command, false, false).await
    }

    async fn remote(&mut self, command: Command, collect_stdout: bool, log_rc: bool) -> Flow<RemoteOutcome> {
        let conn = &self.job.conn;
        let target = Target { conn, builder: &self.job.builder.name, stop: self.stop, collect_stdout, log_rc };
        let outcome = remote::run_on(&target, command, CommandIo::None, self.logs, |_| SUCCESS).await?;
        match outcome.result {
            CANCELLED | RETRY | EXCEPTION => Err(Ended::Result(outcome.result)),
            _ => Ok(outcome),
        }
    }

    /// An absolute path on the worker, under the builder's directory.
    fn on_worker(&self, dir: &str) -> String {
        self.job.conn.path(&[self.job.builder.builddir.as_str(), dir])
    }

    fn timeout(&self) -> Option<f64> {
        self.step.timeout.map(|t| t.as_secs_f64())
    }
}

/// What [`Checkout::sourcedir`] found.
enum Sourcedir {
    Clone,
    Update,
    Clobber,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn got_revision_is_a_text_or_revisions_by_codebase() {
        let mut props = BuildProperties::default();
        assert_eq!(got_revision(&props, "", "abc".into()), json!("abc"));
        props.set("got_revision", got_revision(&props, "lib", "abc".into()), PROPERTY_SOURCE);
        assert_eq!(got_revision(&props, "app", "def".into()), json!({ "lib": "abc", "app": "def" }));
    }

    #[test]
    fn the_source_stamp_wins_then_the_properties_then_the_steps_branch() {
        let text = "[[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"b\"\nworkers = [\"w\"]\n\
                    [[builder.step]]\ntype = \"git\"\nrepourl = \"r\"\nbranch = \"%(prop:default_branch:-main)s\"\n";
        let config = crate::config::MasterConfig::from_str(text, "master.toml").expect("config");
        let crate::config::StepDef::Git(step) = &config.builders[0].steps[0] else { panic!("a git step") };
        let ss = |branch: Option<&str>, revision: Option<&str>| crate::store::SourceStamp {
            branch: branch.map(str::to_owned),
            revision: revision.map(str::to_owned),
            ..Default::default()
        };
        let with = |sourcestamps, properties: &[(&str, &str)]| {
            let mut props = BuildProperties::default();
            props.set_sourcestamps(sourcestamps);
            for (name, value) in properties {
                props.set(name, json!(value), "Force Build Form");
            }
            wanted(step, &props)
        };
        let forced = [("branch", "dev"), ("revision", "abc")];
        assert_eq!(with(vec![ss(Some("rel"), Some("123"))], &forced), ("rel".into(), Some("123".into())));
        assert_eq!(with(vec![ss(None, None)], &forced), ("main".into(), None));
        assert_eq!(with(vec![], &forced), ("dev".into(), Some("abc".into())));
        // A release of another codebase: its version is no revision of this repository.
        let release = crate::store::SourceStamp { codebase: "plugin".into(), ..ss(None, Some("3.24.0")) };
        assert_eq!(with(vec![release], &[("revision", "3.24.0")]), ("main".into(), None));
        assert_eq!(with(vec![], &[("default_branch", "trunk")]), ("trunk".into(), None));
        assert_eq!(with(vec![], &[("default_branch", "")]), ("HEAD".into(), None));
    }
}
