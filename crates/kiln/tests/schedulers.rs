//! Schedulers end to end — trigger steps and triggerable schedulers, dependent schedulers, typed force parameters,
//! a periodic scheduler with only_if_changed — with `kiln start` and a real Kiln worker, checked through the REST
//! API.
//!
//!     cargo test -p kiln --test schedulers

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::buildbot::WorkerKind;
use support::kiln::{toml_str, KilnMaster};

const WAIT: Duration = Duration::from_secs(60);
const SUCCESS: i64 = 0;
const FAILURE: i64 = 2;
const RETRY: i64 = 5;
const CANCELLED: i64 = 6;

/// Forces `builder` through `force-<builder>` with `params` (and its builder id); returns (buildset, request).
async fn force(master: &KilnMaster, scheduler: &str, builder: &str, mut params: Value) -> (i64, i64) {
    let builderid = master.builder_id(builder).await;
    params["builderid"] = json!(builderid);
    let result = master.rpc(&format!("forceschedulers/{scheduler}"), "force", params).await;
    let brid = result[1][builderid.to_string()].as_i64();
    match (result[0].as_i64(), brid) {
        (Some(bsid), Some(brid)) => (bsid, brid),
        _ => master.fail(&format!("unexpected answer to force: {result}")),
    }
}

async fn buildset(master: &KilnMaster, bsid: i64) -> Value {
    master.get_one(&format!("buildsets/{bsid}")).await
}

/// The buildsets that build `buildid` triggered, once there are `n`.
async fn children(master: &KilnMaster, buildid: i64, n: usize) -> Vec<Value> {
    master
        .wait_for(&format!("{n} buildsets triggered by build {buildid}"), WAIT, async || {
            let found = master.try_get(&format!("buildsets?parent_buildid={buildid}&order=bsid")).await?;
            let found = found["buildsets"].as_array()?.clone();
            (found.len() >= n).then_some(found)
        })
        .await
}

/// The requests of buildset `bsid`.
async fn requests_of(master: &KilnMaster, bsid: i64) -> Vec<Value> {
    let found = master.get(&format!("buildrequests?buildsetid={bsid}")).await;
    found["buildrequests"].as_array().cloned().unwrap_or_default()
}

/// The single build of request `brid`, once complete.
async fn finished_build(master: &KilnMaster, brid: i64) -> Value {
    master.wait_request_complete(brid).await;
    let builds = master.builds_of_request(brid).await;
    assert_eq!(builds.len(), 1, "{builds:#?}");
    master.wait_build_complete(master.id(&builds[0], "buildid")).await
}

#[tokio::test]
async fn trigger_steps_wait_or_not_pass_properties_and_source_stamps_and_a_stop_cancels_the_children() {
    let trigger = |name: &str, schedulers: &str, extra: &str| {
        format!("[[builder.step]]\nname = \"{name}\"\ntype = \"trigger\"\nschedulers = [{schedulers}]\n{extra}")
    };
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("parent-wait", &trigger("trigger", "\"failing\"", "wait_for_finish = true"))
        .builder(
            "parent-nowait",
            &trigger(
                "trigger",
                "\"passing\"",
                "set_properties = { deploy = true, channel = \"beta\", scheduler = \"mine\" }\ncopy_properties = [\"owner\"]",
            ),
        )
        .builder("parent-slow", &trigger("trigger", "\"slow\"", "wait_for_finish = true"))
        .builder("child-fail", "[[builder.step]]\ncommand = \"exit 1\"")
        .builder("child-ok", "[[builder.step]]\ncommand = \"echo child\"")
        .builder("child-slow", "[[builder.step]]\ncommand = \"sleep 60\"")
        .extra_toml(
            "[[scheduler]]\nname = \"failing\"\ntype = \"triggerable\"\nbuilders = [\"child-fail\"]\n\n\
             [[scheduler]]\nname = \"passing\"\ntype = \"triggerable\"\nbuilders = [\"child-ok\"]\n\n\
             [[scheduler]]\nname = \"slow\"\ntype = \"triggerable\"\nbuilders = [\"child-slow\"]\n",
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let stamp = json!({ "branch": "main", "revision": "abc123", "repository": "https://example.invalid/r.git" });

    // Waiting for a failing child: the step and the build fail.
    let (bsid, brid) = force(&master, "force-parent-wait", "parent-wait", stamp.clone()).await;
    let parent = finished_build(&master, brid).await;
    assert_eq!(master.results(&parent), FAILURE, "{parent:#}");
    let parentid = master.id(&parent, "buildid");
    let step = master.step(parentid, "trigger").await;
    assert_eq!(master.results(&step), FAILURE, "{step:#}");
    // Buildbot's `Trigger` summary: what it triggered and how those ended; it failed the build, so it says so.
    assert_eq!(step["state_string"], "triggered failing, 1 failure", "{step:#}");
    assert_eq!(parent["state_string"], "failed triggered failing, 1 failure", "{parent:#}");
    let child = &children(&master, parentid, 1).await[0];
    assert_eq!((child["scheduler"].as_str(), child["results"].as_i64()), (Some("failing"), Some(FAILURE)));
    assert_eq!(child["sourcestamps"], buildset(&master, bsid).await["sourcestamps"], "the parent's source stamps");
    let log = master.log_raw(master.id(&step, "stepid"), "stdio").await;
    assert!(log.contains(&format!("triggered 'failing': buildset {}", child["bsid"])), "{log}");

    // Not waiting: the step succeeds at once; the child runs with the parent's source stamps and properties.
    let params = json!({ "owner": "ann <ann@example.invalid>", "branch": "main", "revision": "abc123", "priority": 7 });
    let (bsid, brid) = force(&master, "force-parent-nowait", "parent-nowait", params).await;
    let parent = finished_build(&master, brid).await;
    assert_eq!(master.results(&parent), SUCCESS, "{parent:#}");
    let parentid = master.id(&parent, "buildid");
    let child = &children(&master, parentid, 1).await[0];
    let childset = master.id(child, "bsid");
    assert_eq!(child["parent_buildid"], parentid);
    assert_eq!(child["sourcestamps"], buildset(&master, bsid).await["sourcestamps"]);
    assert_eq!(child["sourcestamps"][0]["revision"], "abc123");
    let props = master.get_one(&format!("buildsets/{childset}/properties")).await;
    assert_eq!(props["deploy"], json!([true, "Trigger"]));
    assert_eq!(props["channel"], json!(["beta", "Trigger"]));
    // The owner is who forced (the harness's admin), whatever the form said.
    assert_eq!(props["owner"], json!([support::kiln::TEST_ADMIN, "Trigger"]));
    assert_eq!(props["scheduler"], json!(["passing", "Scheduler"]));
    let requests = requests_of(&master, childset).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["priority"], 7, "the child inherits the parent's priority: {requests:#?}");
    let child_build = finished_build(&master, master.id(&requests[0], "buildrequestid")).await;
    assert_eq!(master.results(&child_build), SUCCESS, "{child_build:#}");

    // Stopping a parent that waits cancels its child, running or not.
    let (_, brid) = force(&master, "force-parent-slow", "parent-slow", json!({})).await;
    let parent = &master.wait_builds_of_request(brid, 1).await[0];
    let parentid = master.id(parent, "buildid");
    let childset = master.id(&children(&master, parentid, 1).await[0], "bsid");
    let child_request = master.id(&requests_of(&master, childset).await[0], "buildrequestid");
    master.wait_builds_of_request(child_request, 1).await;
    master.stop_build(parentid).await;
    let parent = master.wait_build_complete(parentid).await;
    assert_eq!(master.results(&parent), CANCELLED, "{parent:#}");
    assert_eq!(master.step(parentid, "trigger").await["state_string"], "interrupted");
    let child_request = master.wait_request_complete(child_request).await;
    assert_eq!(master.results(&child_request), CANCELLED, "{child_request:#}");
}

#[tokio::test]
async fn a_dependent_scheduler_follows_successes_only_and_force_parameters_are_typed() {
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = flags.path().join("fail");
    let upstream_step = format!("[[builder.step]]\ncommand = {}", toml_str(format!("test ! -e {}", flag.display())));
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("up", &format!("force_scheduler = false\n{upstream_step}"))
        .builder("down", "force_scheduler = false\n[[builder.step]]\ncommand = \"echo down\"")
        .extra_toml(
            "[[force_scheduler]]\nname = \"up\"\nbuilders = [\"up\"]\n\
             [[force_scheduler.parameter]]\nname = \"jobs\"\ntype = \"int\"\nrequired = true\n\
             [[force_scheduler.parameter]]\nname = \"clean\"\ntype = \"bool\"\n\
             [[force_scheduler.parameter]]\nname = \"flavour\"\ntype = \"choice\"\nchoices = [\"debug\", \"release\"]\n\n\
             [[scheduler]]\nname = \"after-up\"\ntype = \"dependent\"\nupstream = \"up\"\nbuilders = [\"down\"]\n",
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let downstream = async |n: usize| -> Vec<Value> {
        master
            .wait_for(&format!("{n} complete buildsets of after-up"), WAIT, async || {
                let found = master.try_get("buildsets?scheduler=after-up&complete=true&order=bsid").await?;
                let found = found["buildsets"].as_array()?.clone();
                (found.len() >= n).then_some(found)
            })
            .await
    };

    // Typed parameters over REST: stored with their types; a wrong one is refused, naming it.
    let params = json!({ "jobs": "4", "clean": true, "branch": "main", "revision": "r1" });
    let (first, brid) = force(&master, "up", "up", params).await;
    let props = master.get_one(&format!("buildsets/{first}/properties")).await;
    assert_eq!(props["jobs"], json!([4, "Force Build Form"]));
    assert_eq!(props["clean"], json!([true, "Force Build Form"]));
    assert_eq!(props["flavour"], json!(["debug", "Force Build Form"]));
    let call = json!({ "jsonrpc": "2.0", "method": "force", "params": { "jobs": "many" }, "id": 1 });
    let response = master
        .authorized(reqwest::Client::new().post(format!("{}/api/v2/forceschedulers/up", master.url())).json(&call))
        .send()
        .await
        .expect("POST force");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("parameter 'jobs'")), "{body}");

    // Upstream success → a downstream buildset of the same source stamps.
    assert_eq!(master.results(&master.wait_request_complete(brid).await), SUCCESS);
    let down = downstream(1).await;
    assert_eq!(down[0]["sourcestamps"], buildset(&master, first).await["sourcestamps"]);
    assert_eq!(down[0]["sourcestamps"][0]["revision"], "r1");
    assert_eq!(down[0]["results"], SUCCESS);

    // Upstream failure → none; the next success → one more (so the failure was seen before it, and skipped).
    std::fs::write(&flag, "").expect("write the flag");
    let (failed, brid) = force(&master, "up", "up", json!({ "jobs": 1, "revision": "r2" })).await;
    assert_eq!(master.results(&master.wait_request_complete(brid).await), FAILURE);
    std::fs::remove_file(&flag).expect("remove the flag");
    let (third, brid) = force(&master, "up", "up", json!({ "jobs": 1, "revision": "r3" })).await;
    assert_eq!(master.results(&master.wait_request_complete(brid).await), SUCCESS);
    let down = downstream(2).await;
    assert_eq!(down.len(), 2, "{down:#?}");
    assert_eq!(down[1]["sourcestamps"][0]["revision"], "r3");
    let reasons: Vec<&str> = down.iter().filter_map(|b| b["reason"].as_str()).collect();
    assert!(reasons[1].contains(&format!("after buildset {third} ")), "{reasons:?}");
    assert!(reasons.iter().all(|r| !r.contains(&format!("after buildset {failed} "))), "{reasons:?}");
}

/// Sends a change through the base hook.
async fn send_change(master: &KilnMaster, revision: &str, branch: &str, file: &str) {
    let change = json!({
        "author": "Ada <ada@example.invalid>", "comments": revision, "revision": revision, "branch": branch,
        "repository": "https://example.invalid/r.git", "files": [file],
    });
    master.send_change("t0ken", change).await;
}

#[tokio::test]
async fn a_periodic_scheduler_with_only_if_changed_builds_only_after_important_changes() {
    let mut master = KilnMaster::builder()
        .worker("w", "pw")
        .builder("b", "[[builder.step]]\ncommand = \"echo periodic\"")
        .extra_toml(
            "[change_hooks.base]\ntoken = \"t0ken\"\n\n\
             [[scheduler]]\nname = \"p\"\ntype = \"periodic\"\ninterval = 1\nbuilders = [\"b\"]\n\
             only_if_changed = true\nbranch = \"main\"\nfiles = [\"src/*\"]\n",
        )
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    // The buildsets of `p`, once `n` are complete, oldest first, as their revisions.
    let built = async |n: usize| -> Vec<Value> {
        let sets = master
            .wait_for(&format!("{n} complete buildsets of p"), WAIT, async || {
                let found = master.try_get("buildsets?scheduler=p&complete=true&order=bsid").await?;
                let found = found["buildsets"].as_array()?.clone();
                (found.len() >= n).then_some(found)
            })
            .await;
        sets.iter().map(|s| s["sourcestamps"][0]["revision"].clone()).collect()
    };

    // The first firing ever builds, without changes.
    assert_eq!(built(1).await, [Value::Null]);
    send_change(&master, "r1", "main", "src/a.rs").await;
    assert_eq!(built(2).await, [Value::Null, json!("r1")]);
    // Neither an unimportant change nor one of another branch builds; the next important one does, and only once.
    send_change(&master, "r2", "main", "docs/x.md").await;
    send_change(&master, "r3", "dev", "src/b.rs").await;
    send_change(&master, "r4", "main", "src/c.rs").await;
    assert_eq!(built(3).await, [Value::Null, json!("r1"), json!("r4")]);
    let all = master.get("buildsets?scheduler=p").await;
    assert_eq!(all["meta"]["total"], 3, "a build per firing after an important change, no other: {all:#}");
}

#[tokio::test]
async fn a_clean_stop_does_not_wait_for_triggered_builds_that_cannot_start() {
    // One build at a time: the child can never start while its parent waits for it.
    let mut master = KilnMaster::builder()
        .worker_with_max_builds("w", "pw", 1)
        .builder(
            "parent",
            "[[builder.step]]\nname = \"trigger\"\ntype = \"trigger\"\nschedulers = [\"kids\"]\nwait_for_finish = true",
        )
        .builder("child", "[[builder.step]]\ncommand = \"true\"")
        .extra_toml("[[scheduler]]\nname = \"kids\"\ntype = \"triggerable\"\nbuilders = [\"child\"]\n")
        .start()
        .await;
    master.start_worker(WorkerKind::Kiln, "w").await;
    master.wait_worker_connected("w").await;
    let (_, brid) = force(&master, "force-parent", "parent", json!({})).await;
    let parentid = master.id(&master.wait_builds_of_request(brid, 1).await[0], "buildid");
    let childset = master.id(&children(&master, parentid, 1).await[0], "bsid");
    let child_request = master.id(&requests_of(&master, childset).await[0], "buildrequestid");

    let dir = master.master_dir().to_str().expect("a UTF-8 path").to_owned();
    let args = ["stop", &dir, "--clean", "--timeout", "30"];
    let (stop, status) =
        tokio::join!(support::kiln::run_kiln(&args, Duration::from_secs(40)), master.wait_master_exit());
    assert!(stop.status.success() && status.success(), "{} / {status}", support::kiln::show(&stop));

    master.kill_worker("w", nix::sys::signal::Signal::SIGTERM).await;
    master.restart().await;
    let parent = master.build(parentid).await;
    assert_eq!(master.results(&parent), RETRY, "the parent runs again after the restart: {parent:#}");
    let child = master.request(child_request).await;
    assert_eq!(master.results(&child), CANCELLED, "the child that could not start is cancelled: {child:#}");
}
