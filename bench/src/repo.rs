//! Small local git repositories for the workloads that build from or watch one.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Result};

/// Runs `git ARGS` in `dir` as a fixed author, on branch `main` for new repositories.
pub fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "git {args:?} failed in {}", dir.display());
    Ok(())
}

/// A git repository with one small commit on `main`, at `dir`.
pub fn make_repo(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("README"), "a small repository for kiln-bench\n")?;
    git(dir, &["init", "-q"])?;
    git(dir, &["add", "README"])?;
    git(dir, &["commit", "-q", "-m", "first"])
}
