//! End-to-end tests of the build request queue: `kiln start` with real Kiln workers, checked through the REST API.
//! Collapsing, paused workers, locks and priorities.
//!
//! Builds are held with a gate: their step waits until the test creates a file, so "while the worker is busy" is
//! a state the test controls, not a timing.
//!
//!     cargo test -p kiln --test queue

mod support;

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use support::buildbot::{results, WorkerKind};
use support::kiln::{toml_str, KilnMaster, BUILD_TIMEOUT};

/// A gate: builds whose step waits on it run until the test opens it.
struct Gate {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Gate {
    fn new() -> Gate {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("open");
        Gate { _dir: dir, path }
    }

    /// A step that waits for the gate, then runs `then`.
    fn step(&self, then: &str) -> String {
        step_waiting_for(&self.path, then)
    }

    fn open(&self) {
        std::fs::write(&self.path, "").expect("open the gate");
    }
}

fn step_waiting_for(path: &Path, then: &str) -> String {
    let command = format!("while [ ! -e '{}' ]; do sleep 0.05; done; {then}", path.display());
    format!("[[builder.step]]\nname = \"work\"\ncommand = {}\ntimeout = 0\n", toml_str(command))
}

/// Forces `builder` through `force-<builder>` with extra force-form parameters; returns the request id.
async fn force_with(master: &KilnMaster, builder: &str, params: Value) -> i64 {
    let builderid = master.builder_id(builder).await;
    let mut all = json!({ "builderid": builderid, "reason": "queue test" });
    for (key, value) in params.as_object().cloned().unwrap_or_default() {
        all[key] = value;
    }
    let result = master.rpc(&format!("forceschedulers/force-{builder}"), "force", all).await;
    result[1][builderid.to_string()].as_i64().unwrap_or_else(|| master.fail(&format!("force answered {result}")))
}

/// The worker id of worker `name`.
async fn worker_id(master: &KilnMaster, name: &str) -> i64 {
    master.id(&master.get_one(&format!("workers/{name}")).await, "workerid")
}

#[tokio::test]
async fn a_queued_request_is_collapsed_into_a_newer_one_unless_the_builder_says_no() {
    let gate = Gate::new();
    let master = KilnMaster::builder()
        .worker_with_max_builds("w", "pw", 1)
        .builder("collapsing", &gate.step("echo done"))
        .builder("keeping", &format!("collapse_requests = false\n{}", gate.step("echo done")))
        .start()
        .await;
    let mut master = master;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;

    // The worker is busy with the first build; two more requests queue behind it.
    let first = master.force("collapsing").await;
    master.wait_builds_of_request(first, 1).await;
    let older = master.force("collapsing").await;
    let newer = master.force("collapsing").await;
    let skipped = master.request(older).await;
    assert_eq!(
        (&skipped["complete"], &skipped["results"], &skipped["superseded_by"]),
        (&json!(true), &json!(results::SKIPPED), &json!(newer)),
        "the older queued request: {skipped:#}"
    );
    assert!(master.builds_of_request(older).await.is_empty(), "a collapsed request never builds");

    // Without collapsing, every request builds.
    let kept: Vec<i64> = [master.force("keeping").await, master.force("keeping").await].into();
    gate.open();
    for brid in [first, newer].into_iter().chain(kept) {
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request {brid}: {request:#}");
        assert_eq!(request["superseded_by"], Value::Null, "request {brid}: {request:#}");
        assert_eq!(master.builds_of_request(brid).await.len(), 1, "request {brid} built once");
    }
    let skipped = master.request(older).await;
    assert_eq!(skipped["results"], json!(results::SKIPPED), "still skipped: {skipped:#}");
}

#[tokio::test]
async fn a_paused_worker_gets_no_build_until_it_is_unpaused() {
    let gate = Gate::new();
    let mut master = KilnMaster::builder()
        .worker("paused", "pw")
        .worker_with_max_builds("busy", "pw", 1)
        .builder("b", &format!("collapse_requests = false\n{}", gate.step("echo done")))
        .start()
        .await;
    master.rpc("workers/paused", "pause", json!({ "reason": "maintenance" })).await;
    // Paused is stored: a restarted master keeps the worker paused.
    master.kill_master(Signal::SIGTERM).await;
    master.restart().await;
    let worker = master.get_one("workers/paused").await;
    assert_eq!((&worker["paused"], &worker["pause_reason"]), (&json!(true), &json!("maintenance")));
    let first = master.force("b").await;
    let second = master.force("b").await;
    master.start_worker(WorkerKind::Kiln, "paused").await;
    master.wait_worker_connected("paused").await;
    // The pass that starts the first build on `busy` also plans the second: with `paused` idle but paused, and
    // `busy` full, the second must stay queued.
    master.start_worker(WorkerKind::Kiln, "busy").await;
    master.wait_worker_connected("busy").await;
    let builds = master.wait_builds_of_request(first, 1).await;
    assert_eq!(builds[0]["workerid"], json!(worker_id(&master, "busy").await), "first build: {:#}", builds[0]);
    let waiting = master.request(second).await;
    assert_eq!((&waiting["claimed"], &waiting["complete"]), (&json!(false), &json!(false)), "{waiting:#}");
    assert!(master.builds_of_request(second).await.is_empty());

    master.rpc(&format!("workers/{}", worker_id(&master, "paused").await), "unpause", json!({})).await;
    let builds = master.wait_builds_of_request(second, 1).await;
    assert_eq!(builds[0]["workerid"], json!(worker_id(&master, "paused").await), "second build: {:#}", builds[0]);
    assert_eq!(master.get_one("workers/paused").await["paused"], json!(false));
    gate.open();
    for brid in [first, second] {
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request {brid}: {request:#}");
    }
}

#[tokio::test]
async fn an_exclusive_master_lock_runs_two_builders_on_two_workers_one_at_a_time() {
    let gate = Gate::new();
    // Each build waits for the gate, then works for a second: builds that overlapped would share that second.
    let step = gate.step("sleep 1");
    let builders = ["one", "two"]
        .iter()
        .zip(["w1", "w2"])
        .map(|(name, worker)| {
            format!(
                "[[builder]]\nname = \"{name}\"\nworkers = [\"{worker}\"]\ncollapse_requests = false\n\
                 locks = [{{ name = \"db\", access = \"exclusive\" }}]\n{step}\n"
            )
        })
        .collect::<String>();
    let mut master = KilnMaster::builder()
        .worker("w1", "pw")
        .worker("w2", "pw")
        .extra_toml(&format!("[[lock]]\nname = \"db\"\ntype = \"master\"\n\n{builders}"))
        .start()
        .await;
    for worker in ["w1", "w2"] {
        master.start_worker(WorkerKind::Kiln, worker).await;
        master.wait_worker_connected(worker).await;
    }
    let mut requests = Vec::new();
    for _ in 0..2 {
        requests.push(master.force("one").await);
        requests.push(master.force("two").await);
    }
    gate.open();
    let mut intervals = Vec::new();
    for &brid in &requests {
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request {brid}: {request:#}");
        for build in master.builds_of_request(brid).await {
            let (start, end) = (build["started_at"].as_i64(), build["complete_at"].as_i64());
            let (Some(start), Some(end)) = (start, end) else { master.fail(&format!("times of {build:#}")) };
            intervals.push((start, end, build["buildid"].clone()));
        }
    }
    intervals.sort_by_key(|(start, end, _)| (*start, *end));
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "builds overlap while holding an exclusive lock: {intervals:?}");
    }
}

#[tokio::test]
async fn higher_priority_requests_run_first() {
    let gate = Gate::new();
    let mut master = KilnMaster::builder()
        .worker_with_max_builds("w", "pw", 1)
        .builder("hold", &gate.step("echo held"))
        .builder("low", "collapse_requests = false\n[[builder.step]]\ncommand = \"true\"\n")
        .builder("high", "priority = 5\n[[builder.step]]\ncommand = \"true\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let hold = master.force("hold").await;
    master.wait_builds_of_request(hold, 1).await;

    // Queued in this order behind the held build: low (0), high (its builder's 5), low forced with priority 10.
    let low = master.force("low").await;
    let high = master.force("high").await;
    let urgent = force_with(&master, "low", json!({ "priority": 10 })).await;
    assert_eq!(master.request(urgent).await["priority"], json!(10));
    assert_eq!(master.request(high).await["priority"], json!(5));
    assert_eq!(master.request(low).await["priority"], json!(0));
    gate.open();
    let mut started = Vec::new();
    for brid in [low, high, urgent] {
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request {brid}: {request:#}");
        let builds = master.builds_of_request(brid).await;
        started.push((master.id(&builds[0], "buildid"), brid));
    }
    started.sort();
    let order: Vec<i64> = started.into_iter().map(|(_, brid)| brid).collect();
    assert_eq!(order, vec![urgent, high, low], "builds start by priority, then age");
}

#[tokio::test]
async fn a_step_waits_for_its_worker_lock_and_says_so() {
    let gate = Gate::new();
    // The locked command fails if another is inside it: a broken lock fails a build, not only a timing.
    let busy = gate.path.with_file_name("busy");
    let inside = format!(
        "if [ -e '{busy}' ]; then echo overlap; exit 1; fi; touch '{busy}'; sleep 0.5; rm '{busy}'",
        busy = busy.display()
    );
    let work = format!(
        "[[builder.step]]\nname = \"prep\"\ncommand = \"true\"\n{}locks = [{{ name = \"cpu\", access = \"exclusive\" }}]\n",
        gate.step(&inside)
    );
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("a", &work)
        .builder("b", &work)
        .extra_toml("[[lock]]\nname = \"cpu\"\ntype = \"worker\"\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let requests = [master.force("a").await, master.force("b").await];
    let mut builds = Vec::new();
    for brid in requests {
        builds.push(master.id(&master.wait_builds_of_request(brid, 1).await[0], "buildid"));
    }
    // Both builds run on the one worker; one's `work` step holds the lock, the other's waits and says so.
    let waiting = master
        .wait_for("a step waiting for its lock", BUILD_TIMEOUT, async || {
            for &buildid in &builds {
                let steps = master.try_get(&format!("builds/{buildid}/steps")).await?;
                let waiting = steps["steps"].as_array()?.iter().find(|s| s["state_string"] == "waiting for locks");
                if let Some(step) = waiting {
                    return Some(step.clone());
                }
            }
            None
        })
        .await;
    let log = master.log(master.id(&waiting, "stepid"), "stdio").await;
    assert!(log.has_line('h', "waiting for locks: cpu (exclusive)"), "{}", log.dump());
    gate.open();
    for brid in requests {
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request {brid}: {request:#}");
    }
    let waited = master.log(master.id(&waiting, "stepid"), "stdio").await;
    assert!(waited.has_line('h', "locks acquired"), "{}", waited.dump());
}

/// Waits until `GET /queue` says request `brid` waits for `reason`; returns its `waiting`.
async fn waits_for(master: &KilnMaster, brid: i64, reason: &str) -> Value {
    master
        .wait_for(&format!("request {brid} waiting for {reason}"), BUILD_TIMEOUT, async || {
            let queue = master.try_get("queue").await?;
            let item = queue["queue"].as_array()?.iter().find(|q| q["buildrequestid"] == json!(brid))?.clone();
            (item["waiting"]["reason"] == reason).then(|| item["waiting"].clone())
        })
        .await
}

#[tokio::test]
async fn the_queue_says_why_each_request_waits() {
    let gate = Gate::new();
    let step = gate.step("echo done");
    let mut master = KilnMaster::builder()
        .worker_with_max_builds("w", "pw", 2)
        .extra_toml(&format!(
            "[[lock]]\nname = \"db\"\ntype = \"master\"\n\n\
             [[builder]]\nname = \"locked\"\nworkers = [\"w\"]\ncollapse_requests = false\n\
             locks = [{{ name = \"db\", access = \"exclusive\" }}]\n{step}\n\
             [[builder]]\nname = \"plain\"\nworkers = [\"w\"]\ncollapse_requests = false\n{step}\n"
        ))
        .start()
        .await;
    let first = master.force("locked").await;
    let waiting = waits_for(&master, first, "no_worker").await;
    assert_eq!(waiting["message"], "no worker connected (its workers: w)", "{waiting}");

    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let holder = master.id(&master.wait_builds_of_request(first, 1).await[0], "buildid");
    let second = master.force("locked").await;
    let waiting = waits_for(&master, second, "lock").await;
    assert_eq!(waiting["message"], format!("waiting for lock 'db', held by build {holder} of locked"), "{waiting}");
    assert_eq!(waiting["lock"], "db");

    master.rpc("workers/w", "pause", json!({ "reason": "maintenance" })).await;
    let third = master.force("plain").await;
    let waiting = waits_for(&master, third, "paused").await;
    assert_eq!(waiting["message"], "its connected workers are paused: w (maintenance)", "{waiting}");
    master.rpc("workers/w", "unpause", json!({})).await;
    master.wait_builds_of_request(third, 1).await;
    let fourth = master.force("plain").await;
    let waiting = waits_for(&master, fourth, "busy").await;
    assert_eq!(waiting["message"], "all its workers are busy: w (2 of 2 builds)", "{waiting}");
    let queue = master.get("queue").await;
    let order: Vec<_> = queue["queue"].as_array().into_iter().flatten().map(|q| q["buildrequestid"].clone()).collect();
    assert_eq!(order, [json!(second), json!(fourth)], "{queue:#}");
    assert_eq!(queue["queue"][0]["buildername"], "locked");

    gate.open();
    for brid in [first, second, third, fourth] {
        let request = master.wait_request_complete(brid).await;
        assert_eq!(master.results(&request), results::SUCCESS, "request {brid}: {request:#}");
    }
    assert_eq!(master.get("queue").await["queue"], json!([]));
}
