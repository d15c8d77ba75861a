//! Tests of what the store's writes publish: each write exactly its events, after its transaction commits, and
//! nothing when it fails or rolls back.

use std::time::Duration;

use super::testing::{temp_store, url};
use super::{LogType, NewBuildset, Store, StoreError};
use crate::events::{Event, Subscription};
use crate::model::NewChange;
use crate::results::{CANCELLED, FAILURE, RETRY, SKIPPED, SUCCESS};

/// The events waiting for `sub`, without waiting.
fn drain(sub: &mut Subscription) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(published) = sub.try_recv().expect("not lagged") {
        events.push(published.event.clone());
    }
    events
}

fn change(revision: &str) -> NewChange {
    NewChange {
        author: "alice".into(),
        revision: Some(revision.into()),
        branch: Some("main".into()),
        repository: "https://example.invalid/repo.git".into(),
        ..NewChange::default()
    }
}

#[tokio::test]
async fn each_write_publishes_exactly_its_events() {
    let (store, _dir) = temp_store().await;
    let builder = store.find_or_add_builder("b").await.expect("builder");
    let other = store.find_or_add_builder("other").await.expect("builder");
    let worker = store.find_or_add_worker("w").await.expect("worker");
    let master = store.register_master("m").await.expect("master");
    let mut sub = store.events().subscribe();
    assert_eq!(drain(&mut sub), vec![], "finding or adding names is not an event");

    let changeid = store.add_change(&change("abc")).await.expect("change");
    assert_eq!(drain(&mut sub), vec![Event::ChangeAdded { changeid }]);

    let new = NewBuildset { reason: "test".into(), builderids: vec![builder, other], ..NewBuildset::default() };
    let (bsid, brids) = store.add_buildset(&new).await.expect("buildset");
    let (brid, other_brid) = (brids[0], brids[1]);
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::BuildRequestAdded { brid, bsid, builderid: builder },
            Event::BuildRequestAdded { brid: other_brid, bsid, builderid: other },
            Event::BuildsetAdded { bsid },
        ]
    );

    assert!(store.claim_requests(&[brid], master).await.expect("claim"));
    assert_eq!(drain(&mut sub), vec![Event::BuildRequestClaimed { brid, bsid, builderid: builder, masterid: master }]);

    let (buildid, number) = store.add_build(builder, brid, worker, master).await.expect("build");
    assert_eq!(
        drain(&mut sub),
        vec![Event::BuildStarted { buildid, builderid: builder, number, brid, workerid: worker, masterid: master }]
    );
    assert_eq!(store.build(buildid).await.expect("get").expect("exists").state_string, "starting");

    store.set_build_state(buildid, "building").await.expect("state");
    store.set_build_state(buildid, "building").await.expect("same state");
    assert_eq!(
        drain(&mut sub),
        vec![Event::BuildUpdated { buildid, builderid: builder, state_string: "building".into() }],
        "the same state again is not a change"
    );

    let (stepid, step_number) = store.start_step(buildid, "compile", "running").await.expect("step");
    assert_eq!(drain(&mut sub), vec![Event::StepStarted { stepid, buildid, number: step_number }]);
    store.set_step_state(stepid, "waiting for locks").await.expect("state");
    assert_eq!(drain(&mut sub), vec![Event::StepUpdated { stepid, buildid, state_string: "waiting for locks".into() }]);

    let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
    assert_eq!(drain(&mut sub), vec![Event::LogAdded { logid, stepid }]);
    let mut writer = store.log_writer(logid).await.expect("writer");
    assert_eq!(drain(&mut sub), vec![], "opening a writer writes nothing");
    store.append_lines(&mut writer, "oa\nob\n").await.expect("append");
    store.append_lines(&mut writer, "").await.expect("append nothing");
    store.append_log(logid, "oc\n").await.expect("append");
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::LogAppended { logid, stepid, first_line: 0, count: 2 },
            Event::LogAppended { logid, stepid, first_line: 2, count: 1 },
        ]
    );
    store.finish_lines(store.log_writer(logid).await.expect("writer"), "od\n").await.expect("finish");
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::LogAppended { logid, stepid, first_line: 3, count: 1 },
            Event::LogFinished { logid, stepid, num_lines: 4 },
        ]
    );
    store.finish_log(logid).await.expect("finishing twice does nothing");
    assert_eq!(drain(&mut sub), vec![]);

    store.finish_step_as(stepid, FAILURE, false, Some("'make' (failure)")).await.expect("finish step");
    assert_eq!(
        drain(&mut sub),
        vec![Event::StepFinished { stepid, buildid, results: FAILURE, state_string: "'make' (failure)".into() }]
    );
    let (quiet, _) = store.add_step(buildid, "quiet").await.expect("step");
    store.set_step_state(quiet, "kept").await.expect("state");
    drain(&mut sub);
    store.finish_step(quiet, SUCCESS, true).await.expect("finish step");
    assert_eq!(
        drain(&mut sub),
        vec![Event::StepFinished { stepid: quiet, buildid, results: SUCCESS, state_string: "kept".into() }],
        "without a final string the step keeps its own"
    );

    store.finish_build_as(buildid, FAILURE, Some("failed 'make' (failure)")).await.expect("finish build");
    assert_eq!(
        drain(&mut sub),
        vec![Event::BuildFinished {
            buildid,
            builderid: builder,
            results: FAILURE,
            state_string: "failed 'make' (failure)".into()
        }]
    );

    assert!(store.complete_requests(&[brid], FAILURE).await.expect("complete"));
    assert_eq!(
        drain(&mut sub),
        vec![Event::BuildRequestCompleted { brid, bsid, builderid: builder, results: FAILURE }]
    );
    assert!(store.complete_requests(&[other_brid], SUCCESS).await.expect("complete"));
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::BuildRequestCompleted { brid: other_brid, bsid, builderid: other, results: SUCCESS },
            Event::BuildsetCompleted { bsid, results: FAILURE },
        ]
    );

    assert!(store.set_worker_paused("w", true, Some("disk full")).await.expect("pause"));
    assert!(store.set_worker_paused("w", false, None).await.expect("unpause"));
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::WorkerPaused { workerid: worker, name: "w".into(), reason: Some("disk full".into()) },
            Event::WorkerUnpaused { workerid: worker, name: "w".into() },
        ]
    );
}

#[tokio::test]
async fn requests_unclaimed_collapsed_and_cancelled_publish_their_events() {
    let (store, _dir) = temp_store().await;
    let b = store.find_or_add_builder("b").await.expect("builder");
    let m = store.register_master("m").await.expect("master");
    let one = NewBuildset { reason: "t".into(), builderids: vec![b], ..NewBuildset::default() };
    let (old_bsid, old) = store.add_buildset(&one).await.expect("buildset");
    let (new_bsid, new) = store.add_buildset(&one).await.expect("buildset");
    let mut sub = store.events().subscribe();

    assert!(store.claim_requests(&[new[0]], m).await.expect("claim"));
    store.unclaim_requests(&[new[0], old[0]], m).await.expect("unclaim");
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::BuildRequestClaimed { brid: new[0], bsid: new_bsid, builderid: b, masterid: m },
            Event::BuildRequestUnclaimed { brid: new[0], bsid: new_bsid, builderid: b },
        ],
        "only the claim that was released"
    );

    assert_eq!(store.collapse_requests(&old, new[0], m).await.expect("collapse"), old);
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::BuildRequestCompleted { brid: old[0], bsid: old_bsid, builderid: b, results: SKIPPED },
            Event::BuildsetCompleted { bsid: old_bsid, results: SUCCESS },
        ],
        "a collapse completes the old request SKIPPED (and its buildset: SKIPPED is better than SUCCESS)"
    );
    assert_eq!(store.collapse_requests(&old, new[0], m).await.expect("collapse"), Vec::<i64>::new());
    assert_eq!(drain(&mut sub), vec![], "collapsing nothing publishes nothing");

    assert!(store.complete_requests(&new, CANCELLED).await.expect("cancel"));
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::BuildRequestCompleted { brid: new[0], bsid: new_bsid, builderid: b, results: CANCELLED },
            Event::BuildsetCompleted { bsid: new_bsid, results: CANCELLED },
        ]
    );
}

#[tokio::test]
async fn failed_and_rolled_back_writes_publish_nothing() {
    let (store, _dir) = temp_store().await;
    let b = store.find_or_add_builder("b").await.expect("builder");
    let m1 = store.register_master("m1").await.expect("master");
    let m2 = store.register_master("m2").await.expect("master");
    let w = store.find_or_add_worker("w").await.expect("worker");
    let new = NewBuildset { reason: "t".into(), builderids: vec![b, b], ..NewBuildset::default() };
    let (_, r) = store.add_buildset(&new).await.expect("buildset");
    assert!(store.claim_requests(&[r[0]], m1).await.expect("claim"));
    let (buildid, _) = store.add_build(b, r[0], w, m1).await.expect("build");
    let (stepid, _) = store.add_step(buildid, "s").await.expect("step");
    let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
    store.append_log(logid, "oa\n").await.expect("append");
    let changeid = store.add_change_once(&change("once")).await.expect("change");
    assert!(changeid.is_some());
    let mut sub = store.events().subscribe();

    // A foreign key violation rolls the whole buildset back.
    let bad = NewBuildset { reason: "bad".into(), builderids: vec![b, 9999], ..NewBuildset::default() };
    assert!(store.add_buildset(&bad).await.is_err());
    // A claim that loses to another master's, all or nothing.
    assert!(!store.claim_requests(&[r[1], r[0]], m2).await.expect("claim"));
    // Another master's claim is not released.
    store.unclaim_requests(&[r[0]], m2).await.expect("unclaim");
    // Completing one complete request completes none.
    assert!(store.complete_requests(&[r[1]], SUCCESS).await.expect("complete"));
    drain(&mut sub);
    assert!(!store.complete_requests(&[r[0], r[1]], SUCCESS).await.expect("complete"));
    assert!(store.complete_requests(&[r[0]], RETRY).await.is_err(), "RETRY refused");
    // A repeated polled change is not stored again.
    assert_eq!(store.add_change_once(&change("once")).await.expect("change"), None);
    // A stale log writer, text without its newline, a finished log.
    let mut stale = store.log_writer(logid).await.expect("writer");
    store.append_log(logid, "ob\n").await.expect("append");
    drain(&mut sub);
    assert!(matches!(store.append_lines(&mut stale, "oc\n").await, Err(StoreError::LogConflict { .. })));
    assert!(store.append_log(logid, "no newline").await.is_err());
    // Steps and builds that are not running, states of things that do not exist, unknown workers.
    store.finish_step(stepid, SUCCESS, false).await.expect("finish");
    store.finish_log(logid).await.expect("finish log");
    drain(&mut sub);
    assert!(store.finish_step(stepid, SUCCESS, false).await.is_err());
    assert!(store.append_log(logid, "od\n").await.is_err());
    assert!(store.add_log(9999, "stdio", LogType::Stdio).await.is_err());
    assert!(store.add_step(9999, "s").await.is_err());
    store.set_step_state(9999, "x").await.expect("no such step: nothing to set");
    store.finish_build(buildid, SUCCESS).await.expect("finish");
    drain(&mut sub);
    assert!(store.finish_build(buildid, SUCCESS).await.is_err());
    store.set_build_state(9999, "x").await.expect("no such build: nothing to set");
    assert!(!store.set_worker_paused("nobody", true, None).await.expect("pause"));

    assert_eq!(drain(&mut sub), vec![], "failed or rolled-back writes published something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_published_is_committed_already() {
    let (store, dir) = temp_store().await;
    // Another pool on the same file sees only what is committed.
    let reader = Store::open(&url(&dir)).await.expect("second store");
    let mut sub = store.events().subscribe();
    let checker = tokio::spawn(async move {
        let mut checked = 0;
        loop {
            let published = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await;
            let event = published.expect("an event in time").expect("not lagged").expect("bus alive");
            match &event.event {
                Event::ChangeAdded { changeid } => {
                    assert!(reader.change(*changeid).await.expect("read").is_some(), "change {changeid}")
                }
                Event::BuildRequestAdded { brid, .. } => {
                    assert!(reader.build_request(*brid).await.expect("read").is_some(), "request {brid}")
                }
                Event::BuildsetAdded { bsid } => {
                    assert!(reader.buildset(*bsid).await.expect("read").is_some(), "buildset {bsid}");
                    checked += 1;
                    if checked == 20 {
                        return checked;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let b = store.find_or_add_builder("b").await.expect("builder");
    for i in 0..20 {
        store.add_change(&change(&format!("r{i}"))).await.expect("change");
        let new = NewBuildset { reason: "t".into(), builderids: vec![b], ..NewBuildset::default() };
        store.add_buildset(&new).await.expect("buildset");
    }
    assert_eq!(checker.await.expect("checker"), 20);
}

#[tokio::test]
async fn the_restart_rule_publishes_what_it_finishes_and_unclaims() {
    let (store, _dir) = temp_store().await;
    let b = store.find_or_add_builder("b").await.expect("builder");
    let w = store.find_or_add_worker("w").await.expect("worker");
    let m = store.register_master("m").await.expect("master");
    let new = NewBuildset { reason: "t".into(), builderids: vec![b, b], ..NewBuildset::default() };
    let (bsid, r) = store.add_buildset(&new).await.expect("buildset");
    assert!(store.claim_requests(&r, m).await.expect("claim"));
    let (buildid, _) = store.add_build(b, r[0], w, m).await.expect("build");
    let (stepid, _) = store.start_step(buildid, "compile", "running").await.expect("step");
    let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
    store.append_log(logid, "oa\nob\n").await.expect("append");
    let mut sub = store.events().subscribe();

    let cleanup = store.unclaim_and_retry_builds_of(m).await.expect("cleanup");
    assert_eq!((cleanup.builds_retried, cleanup.requests_unclaimed), (1, 2));
    assert_eq!(
        drain(&mut sub),
        vec![
            Event::LogFinished { logid, stepid, num_lines: 2 },
            Event::StepFinished { stepid, buildid, results: RETRY, state_string: "running".into() },
            Event::BuildFinished { buildid, builderid: b, results: RETRY, state_string: "starting".into() },
            Event::BuildRequestUnclaimed { brid: r[0], bsid, builderid: b },
            Event::BuildRequestUnclaimed { brid: r[1], bsid, builderid: b },
        ]
    );
    store.unclaim_and_retry_builds_of(m).await.expect("cleanup again");
    assert_eq!(drain(&mut sub), vec![], "nothing left to clean up");
}
