//! End-to-end test of log retention: the janitor empties the logs of builds past their builder's retention, and
//! keeps those of a builder that keeps them for ever.
//!
//!     cargo test -p kiln --test retention

mod support;

use support::buildbot::{results, WorkerKind};
use support::kiln::{KilnMaster, BUILD_TIMEOUT};

#[tokio::test]
async fn logs_past_their_retention_are_emptied_and_a_builder_may_keep_them() {
    let step = "[[builder.step]]\nname = \"out\"\ncommand = \"seq 1 20000\"\n";
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("short", step)
        .builder("kept", &format!("log_retention = \"forever\"\n{step}"))
        .extra_toml("[retention]\nlogs = \"1s\"\ninterval = \"1s\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let mut logs = Vec::new();
    for builder in ["short", "kept"] {
        let brid = master.force(builder).await;
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "{builder}: {request:#}");
        let builds = master.builds_of_request(brid).await;
        let step = master.step(master.id(&builds[0], "buildid"), "out").await;
        logs.push(master.id(&step, "stepid"));
    }
    let (short, kept) = (logs[0], logs[1]);

    master
        .wait_for("the janitor to empty the short builder's log", BUILD_TIMEOUT, async || {
            master.log(short, "stdio").await.lines.is_empty().then_some(())
        })
        .await;
    let log = master.get_one(&format!("steps/{short}/logs/stdio")).await;
    assert!(log["num_lines"].as_i64() >= Some(20_000), "the log keeps its line count: {log:#}");
    let kept = master.log(kept, "stdio").await;
    assert!(kept.lines.iter().any(|l| l.text == "20000"), "the kept builder's log was emptied");
    master.wait_output_line("log retention: emptied the logs").await;
    // Builds go on as before.
    let request = master.wait_request_complete(master.force("short").await).await;
    assert_eq!(master.results(&request), results::SUCCESS, "{request:#}");
}
