//! End-to-end interop against a real Buildbot 4.3.0 master (msgpack_experimental_v7).
//!
//! Every scenario runs twice: with the stock `buildbot-worker` 4.3.0 (module `buildbot::`, which checks
//! the harness and the expectations against the reference implementation) and with `kiln worker`
//! (module `kiln::`, what these tests are for). Results and logs are read back through Buildbot's REST
//! API. The Python venv comes from `scripts/buildbot-venv` (cached; the first run installs from PyPI).
//!
//!     cargo test -p kiln --test buildbot_master buildbot::   # stock worker
//!     cargo test -p kiln --test buildbot_master kiln::       # Kiln worker

mod support;

use std::time::Duration;

use sha2::{Digest, Sha256};
use support::buildbot::{id, py, result_of, results, BuildbotMaster, WorkerKind, BUILD_TIMEOUT};
use support::{processes_matching, unique_marker, wait_no_processes, KillOnDrop};

/// How long processes a build killed may take to disappear after the build ends.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a master with `builders` and one worker "w" of `kind`, connected.
async fn master_with(kind: WorkerKind, builders: &[(&str, String)]) -> BuildbotMaster {
    let mut builder = BuildbotMaster::builder().worker("w", "pass-w0rd");
    for (name, steps) in builders {
        builder = builder.builder(name, steps);
    }
    let mut master = builder.start().await;
    master.start_worker(kind, "w").await;
    master.wait_worker_connected("w").await;
    master
}

/// Waits until a process whose command line contains `needle` runs (true) or build request `brid`
/// completes without one having been seen (false).
async fn process_ran(master: &BuildbotMaster, brid: i64, needle: &str) -> bool {
    master
        .wait_for(&format!("`{needle}` to run"), BUILD_TIMEOUT, async || {
            if !processes_matching(needle).is_empty() {
                return Some(true);
            }
            let request = master.get_one(&format!("buildrequests/{brid}")).await;
            request["complete"].as_bool()?.then_some(false)
        })
        .await
}

/// Scenario 1: stdout/stderr channels, a non-zero exit code, env variables and a workdir.
async fn shell_output_and_exit_code(kind: WorkerKind) {
    let master = master_with(
        kind,
        &[
            (
                "fail",
                r#"[steps.ShellCommand(name="out-err-exit",
                    command="printf 'out1\\nout2\\n'; echo err1 >&2; exit 3")]"#
                    .to_owned(),
            ),
            (
                "env",
                r#"[steps.ShellCommand(name="env", command='echo "FOO=$FOO"; pwd',
                    env={'FOO': 'bar'}, workdir='build/sub')]"#
                    .to_owned(),
            ),
        ],
    )
    .await;

    let build = master.run_build("fail").await;
    assert_eq!(result_of(&build), results::FAILURE, "build: {build:#}");
    let step = master.step(id(&build, "buildid"), "out-err-exit").await;
    assert_eq!(result_of(&step), results::FAILURE, "step: {step:#}");
    let log = master.log(id(&step, "stepid"), "stdio").await;
    // Buildbot keeps the channel of every line: `/logs/{id}/contents` prefixes o/e/h.
    assert_eq!(log.channel('o'), ["out1", "out2"], "stdio log:\n{}", log.dump());
    assert_eq!(log.channel('e'), ["err1"], "stdio log:\n{}", log.dump());
    // The master writes this header line itself when it receives the `rc` update.
    assert!(log.has_line('h', "program finished with exit code 3"), "stdio log:\n{}", log.dump());
    // `/raw` drops the channels (and adds a Builder/Build number/Worker name preamble).
    let raw = master.log_raw(id(&step, "stepid"), "stdio").await;
    assert!(raw.starts_with("Builder: fail\n"), "raw log:\n{raw}");
    // (stdout and stderr are separate pipes: their relative order is not asserted.)
    assert!(raw.contains("\nout1\nout2\n"), "raw log:\n{raw}");
    assert!(raw.contains("\nerr1\n"), "raw log:\n{raw}");
    assert!(raw.contains("\nprogram finished with exit code 3\n"), "raw log:\n{raw}");

    let build = master.run_build("env").await;
    assert_eq!(result_of(&build), results::SUCCESS, "build: {build:#}");
    let step = master.step(id(&build, "buildid"), "env").await;
    let log = master.log(id(&step, "stepid"), "stdio").await;
    let out = log.channel('o');
    assert_eq!(out.first(), Some(&"FOO=bar"), "stdio log:\n{}", log.dump());
    // The master sends workdir relative to the builder's directory and the worker runs it there
    // (creating it): <worker basedir>/env/build/sub.
    assert!(out.get(1).is_some_and(|pwd| pwd.ends_with("/w/env/build/sub")), "stdio log:\n{}", log.dump());
    assert!(log.channel('e').is_empty(), "stdio log:\n{}", log.dump());
    assert!(log.has_line('h', "program finished with exit code 0"));
}

/// Scenario 2: a no-output timeout kills the command and everything it spawned.
async fn timeout_kills_process_tree(kind: WorkerKind) {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let command = format!("sh -c 'sleep {marker}1 & sleep {marker}2 & sleep {marker}3'");
    let master = master_with(
        kind,
        &[("timeout", format!(r#"[steps.ShellCommand(name="sleepers", command={}, timeout=2)]"#, py(&command)))],
    )
    .await;

    let brid = master.force("timeout").await;
    let ran = process_ran(&master, brid, &format!("sleep {marker}")).await;
    let build = master.wait_build_finished(brid).await;
    assert!(ran, "the sleeps never ran; build: {build:#}");
    assert_eq!(result_of(&build), results::FAILURE, "build: {build:#}");
    let step = master.step(id(&build, "buildid"), "sleepers").await;
    assert_eq!(result_of(&step), results::FAILURE, "step: {step:#}");
    // The master appends "(timed out)" only when the worker reports failure_reason "timeout" or
    // "timeout_without_output".
    let summary = step["state_string"].as_str().unwrap_or_default();
    assert!(summary.ends_with("(timed out)"), "step: {step:#}");
    let log = master.log(id(&step, "stepid"), "stdio").await;
    assert!(log.lines.iter().any(|l| l.text.to_lowercase().contains("timed out")), "stdio log:\n{}", log.dump());
    // buildbot-worker 4.3.0 runs each command in its own process group and kills the whole group
    // (SIGKILL after no-output timeout), so the shell and all three sleeps are gone: the same strict
    // assertion holds for both workers.
    if let Err(left) = wait_no_processes(&format!("sleep {marker}"), REAP_TIMEOUT).await {
        master.fail(&format!("processes left {REAP_TIMEOUT:?} after the timed-out build ended: {left:#?}"));
    }
}

/// Scenario 3: stopping a build interrupts its running command, which is killed.
async fn stopped_build_is_cancelled(kind: WorkerKind) {
    let marker = unique_marker();
    let _reaper = KillOnDrop(format!("sleep {marker}"));
    let master =
        master_with(kind, &[("stop", format!(r#"[steps.ShellCommand(name="sleep", command="sleep {marker}")]"#))])
            .await;

    let brid = master.force("stop").await;
    let build = master.wait_build_started(brid).await;
    // Stopping before the command reached the worker would cancel the build without ever running
    // the step, so wait for the process itself.
    if !process_ran(&master, brid, &format!("sleep {marker}")).await {
        let build = master.wait_build_finished(brid).await;
        master.fail(&format!("the build ended before `sleep {marker}` ran: {build:#}"));
    }
    master.stop_build(id(&build, "buildid")).await;
    let build = master.wait_build_finished(brid).await;
    assert_eq!(result_of(&build), results::CANCELLED, "build: {build:#}");
    let step = master.step(id(&build, "buildid"), "sleep").await;
    assert_eq!(result_of(&step), results::CANCELLED, "step: {step:#}");
    if let Err(left) = wait_no_processes(&format!("sleep {marker}"), REAP_TIMEOUT).await {
        master.fail(&format!("processes left {REAP_TIMEOUT:?} after the stopped build ended: {left:#?}"));
    }
}

/// The 5 MiB file the upload scenario makes on the worker: `seq -f '%09g' 1 524288`, i.e. lines
/// "000000001\n" .. "000524288\n" (no short period, so a lost, doubled or swapped block shows).
fn big_file_content() -> Vec<u8> {
    (1..=524_288u32).flat_map(|i| format!("{i:09}\n").into_bytes()).collect()
}

/// Scenario 4: FileUpload of 5 MiB, DirectoryUpload (plain, gz, bz2), MultipleFileUpload with glob.
async fn uploads(kind: WorkerKind) {
    let dest = tempfile::tempdir().expect("create a destination directory on the master side");
    let d = |name: &str| py(dest.path().join(name).to_str().expect("UTF-8 temp path"));
    let steps = format!(
        r#"[
        steps.ShellCommand(name="make-files", command="seq -f '%09g' 1 524288 > big.bin && "
            "mkdir -p tree/a/b tree/empty && echo top > tree/top.txt && echo one > tree/a/one.txt && "
            "printf 'two\\nlines\\n' > tree/a/b/two.txt"),
        steps.FileUpload(name="file", workersrc="big.bin", masterdest={big}),
        steps.DirectoryUpload(name="dir", workersrc="tree", masterdest={tree}),
        steps.DirectoryUpload(name="dir-gz", workersrc="tree", masterdest={tree_gz}, compress="gz"),
        steps.DirectoryUpload(name="dir-bz2", workersrc="tree", masterdest={tree_bz2}, compress="bz2"),
        steps.MultipleFileUpload(name="multi", workersrcs=["tree/*.txt", "tree/a/*.txt"],
            masterdest={multi}, glob=True),
    ]"#,
        big = d("big.bin"),
        tree = d("tree"),
        tree_gz = d("tree-gz"),
        tree_bz2 = d("tree-bz2"),
        multi = d("multi"),
    );
    let master = master_with(kind, &[("upload", steps)]).await;

    let build = master.run_build("upload").await;
    let build_id = id(&build, "buildid");
    for step in master.steps(build_id).await {
        assert_eq!(result_of(&step), results::SUCCESS, "step: {step:#}");
    }
    assert_eq!(result_of(&build), results::SUCCESS, "build: {build:#}");

    let expected = Sha256::digest(big_file_content());
    let uploaded = std::fs::read(dest.path().join("big.bin")).expect("read uploaded big.bin");
    assert_eq!(uploaded.len(), 5 * 1024 * 1024, "size of the uploaded big.bin");
    assert!(Sha256::digest(&uploaded) == expected, "uploaded big.bin has the wrong content");

    for tree in ["tree", "tree-gz", "tree-bz2"] {
        let root = dest.path().join(tree);
        let read = |rel: &str| {
            std::fs::read_to_string(root.join(rel))
                .unwrap_or_else(|e| panic!("read {tree}/{rel} on the master side: {e}"))
        };
        assert_eq!(read("top.txt"), "top\n");
        assert_eq!(read("a/one.txt"), "one\n");
        assert_eq!(read("a/b/two.txt"), "two\nlines\n");
        assert!(root.join("empty").is_dir(), "{tree}/empty is not a directory");
    }

    let multi = dest.path().join("multi");
    let mut names: Vec<String> = std::fs::read_dir(&multi)
        .expect("read the MultipleFileUpload destination")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["one.txt", "top.txt"], "MultipleFileUpload flattens matches");
    assert_eq!(std::fs::read_to_string(multi.join("one.txt")).expect("read multi/one.txt"), "one\n");
}

/// Scenario 5: FileDownload and StringDownload, then a command that shows what arrived.
async fn downloads(kind: WorkerKind) {
    let source = tempfile::NamedTempFile::new().expect("create the master-side source file");
    std::fs::write(source.path(), "from the master\n").expect("write the master-side source file");
    let steps = format!(
        r#"[
        steps.FileDownload(name="file", mastersrc={src}, workerdest="dl/file.txt"),
        steps.StringDownload("from a string\n", name="string", workerdest="dl/string.txt"),
        steps.ShellCommand(name="show", command="for f in dl/file.txt dl/string.txt; do "
            "echo \"$f size=$(wc -c < $f)\"; done; cat dl/file.txt dl/string.txt"),
    ]"#,
        src = py(source.path().to_str().expect("UTF-8 temp path")),
    );
    let master = master_with(kind, &[("download", steps)]).await;

    let build = master.run_build("download").await;
    let build_id = id(&build, "buildid");
    for step in master.steps(build_id).await {
        assert_eq!(result_of(&step), results::SUCCESS, "step: {step:#}");
    }
    assert_eq!(result_of(&build), results::SUCCESS, "build: {build:#}");
    let show = master.step(build_id, "show").await;
    let log = master.log(id(&show, "stepid"), "stdio").await;
    // Buildbot 4.3.0's master answers the worker's `update_read_file` requests with `result: None`
    // over msgpack (manager/msgpack.py `call_update_read_file` awaits the data but never returns it),
    // which the worker takes for end of file. So over msgpack_experimental_v7 both downloads create
    // the file, EMPTY, and report success. A worker must treat a nil result as EOF to interoperate.
    assert_eq!(log.channel('o'), ["dl/file.txt size=0", "dl/string.txt size=0"], "stdio log:\n{}", log.dump());
}

/// Scenario 6: MakeDirectory, CopyDirectory, FileExists (`stat`), RemoveDirectory, and a logfile.
async fn filesystem_steps(kind: WorkerKind) {
    // Paths of these steps are relative to the builder's directory, not to its "build" workdir.
    let steps = r#"[
        steps.MakeDirectory(name="mkdir", dir="build/made/deep"),
        steps.ShellCommand(name="fill", command="echo content > made/deep/f.txt"),
        steps.CopyDirectory(name="cpdir", src="build/made", dest="build/copy"),
        steps.FileExists(name="exists", file="build/copy/deep/f.txt"),
        steps.RemoveDirectory(name="rmdir", dir="build/made"),
        steps.ShellCommand(name="check", command="test ! -e made && cat copy/deep/f.txt"),
        steps.ShellCommand(name="logfile", logfiles={"extra": "extra.log"},
            command="for i in 1 2 3; do echo extra-$i >> extra.log; done; echo done"),
    ]"#;
    let missing = r#"[steps.FileExists(name="missing", file="build/no-such-file")]"#;
    let master = master_with(kind, &[("fs", steps.to_owned()), ("missing", missing.to_owned())]).await;

    let build = master.run_build("fs").await;
    let build_id = id(&build, "buildid");
    for step in master.steps(build_id).await {
        assert_eq!(result_of(&step), results::SUCCESS, "step: {step:#}");
    }
    assert_eq!(result_of(&build), results::SUCCESS, "build: {build:#}");
    let exists = master.step(build_id, "exists").await;
    assert_eq!(exists["state_string"], "File found.", "step: {exists:#}");
    let check = master.step(build_id, "check").await;
    let log = master.log(id(&check, "stepid"), "stdio").await;
    assert_eq!(log.channel('o'), ["content"], "stdio log:\n{}", log.dump());

    let logfile = master.step(build_id, "logfile").await;
    let step_id = id(&logfile, "stepid");
    let mut names = master.log_names(step_id).await;
    names.sort();
    assert_eq!(names, ["extra", "stdio"]);
    let extra = master.log(step_id, "extra").await;
    // Lines of a watched logfile are stored on the stdout channel.
    assert_eq!(extra.channel('o'), ["extra-1", "extra-2", "extra-3"], "extra log:\n{}", extra.dump());
    let stdio = master.log(step_id, "stdio").await;
    assert_eq!(stdio.channel('o'), ["done"], "stdio log:\n{}", stdio.dump());

    let build = master.run_build("missing").await;
    assert_eq!(result_of(&build), results::FAILURE, "build: {build:#}");
    let step = master.step(id(&build, "buildid"), "missing").await;
    assert_eq!(step["state_string"], "File not found. (failure)", "step: {step:#}");
}

/// Declares each scenario as a test in module `kiln` and in module `buildbot`.
macro_rules! for_both_workers {
    ($($scenario:ident),* $(,)?) => {
        mod kiln {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::WorkerKind::Kiln).await;
                }
            )*
        }
        mod buildbot {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::WorkerKind::Buildbot).await;
                }
            )*
        }
    };
}

for_both_workers!(
    shell_output_and_exit_code,
    timeout_kills_process_tree,
    stopped_build_is_cancelled,
    uploads,
    downloads,
    filesystem_steps,
);

#[test]
fn big_file_matches_seq() {
    // Guards the upload scenario's expectation: the worker makes the file with coreutils `seq`.
    let out = std::process::Command::new("seq").args(["-f", "%09g", "1", "524288"]).output().expect("run seq");
    assert!(out.stdout == big_file_content(), "seq output differs from big_file_content()");
}
