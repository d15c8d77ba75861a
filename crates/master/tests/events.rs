//! The events of real builds, on a real master with a real worker (the Kiln worker library, in this process)
//! over real sockets on 127.0.0.1: their order, their line ranges and state strings, and a subscriber that
//! never reads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln_master::events::{Event, Published, Subscription, SUBSCRIBER_CAPACITY};
use kiln_master::master::Master;
use kiln_master::results::{FAILURE, SUCCESS};

const WAIT: Duration = Duration::from_secs(60);

/// A master directory with worker `w1` and builder `b` of `steps` (TOML `[[builder.step]]` tables).
fn master_dir(dir: &Path, steps: &str) {
    let config = format!(
        "[store]\nurl = \"sqlite:state.sqlite\"\n\n[worker_listener]\naddress = \"127.0.0.1:0\"\n\n\
         [web]\naddress = \"127.0.0.1:0\"\n\n[[worker]]\nname = \"w1\"\npassword = \"pw\"\n\n\
         [[builder]]\nname = \"b\"\nworkers = [\"w1\"]\n\n{steps}"
    );
    std::fs::write(dir.join("master.toml"), config).expect("write master.toml");
}

/// Starts a Kiln worker for `w1` in this process; returns its stop token.
fn start_worker(
    master: std::net::SocketAddr,
    dir: &Path,
) -> (kiln_worker::CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let new = kiln_worker::NewWorker {
        master: master.to_string(),
        name: "w1".into(),
        password: "pw".into(),
        tls: false,
        ca_file: None,
        admin: "test".into(),
        host: "test".into(),
    };
    kiln_worker::create(dir, &new).expect("create worker");
    let mut config = kiln_worker::WorkerConfig::load(dir).expect("load worker");
    config.max_retry_delay = 0.5;
    let stop = kiln_worker::CancellationToken::new();
    (stop.clone(), tokio::spawn(kiln_worker::run(config, stop)))
}

/// The events of `sub` up to and including the first for which `last` is true.
async fn events_until(sub: &mut Subscription, mut last: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let published: Arc<Published> = tokio::time::timeout(WAIT, sub.recv())
            .await
            .expect("the event in time")
            .expect("not lagged")
            .expect("bus alive");
        events.push(published.event.clone());
        if last(&published.event) {
            return events;
        }
    }
}

/// The events about build `buildid`, its steps and their logs, in order.
fn of_build(events: &[Event], buildid: i64) -> Vec<Event> {
    let mut steps = Vec::new();
    let mut out = Vec::new();
    for event in events {
        let ours = match event {
            Event::BuildStarted { buildid: b, .. }
            | Event::BuildUpdated { buildid: b, .. }
            | Event::BuildFinished { buildid: b, .. } => *b == buildid,
            Event::StepStarted { stepid, buildid: b, .. } => {
                if *b == buildid {
                    steps.push(*stepid);
                }
                *b == buildid
            }
            Event::StepUpdated { buildid: b, .. } | Event::StepFinished { buildid: b, .. } => *b == buildid,
            Event::LogAdded { stepid, .. } | Event::LogAppended { stepid, .. } | Event::LogFinished { stepid, .. } => {
                steps.contains(stepid)
            }
            _ => false,
        };
        if ours {
            out.push(event.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_build_publishes_its_events_in_order_with_line_ranges_and_state_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    master_dir(
        dir.path(),
        "  [[builder.step]]\n  command = \"for i in 1 2 3 4 5; do echo line $i; done\"\n\n\
         [[builder.step]]\n  command = \"make -j4\"\n  workdir = \"nowhere-with-a-makefile\"\n",
    );
    let (master, addresses) = Master::start(dir.path()).await.expect("master starts");
    let store = master.store().clone();
    // From the first event on: the master's own start.
    let mut sub = store.events().subscribe_after(0).expect("everything retained");
    let started = events_until(&mut sub, |e| matches!(e, Event::MasterStarted { .. })).await;
    assert!(matches!(started.as_slice(), [Event::MasterStarted { masterid, .. }] if *masterid == master.masterid()));

    let (stop, worker) = start_worker(addresses.workers, &dir.path().join("worker"));
    let attached = events_until(&mut sub, |e| matches!(e, Event::WorkerAttached { .. })).await;
    assert!(matches!(attached.last(), Some(Event::WorkerAttached { name, .. }) if name == "w1"), "{attached:?}");

    let submitted = master.force("force-b", None, &serde_json::Map::new()).await.expect("force");
    let bsid = submitted.buildsetid;
    let events = events_until(&mut sub, |e| matches!(e, Event::BuildsetCompleted { bsid: b, .. } if *b == bsid)).await;

    // The buildset and its request, then the scheduler; the claim, the build, and at the end the completions.
    let brid = submitted.requests[0].1;
    let builderid = master.builder_id("b").expect("builder");
    let position = |wanted: &Event| events.iter().position(|e| e == wanted).unwrap_or_else(|| panic!("{wanted:?}"));
    let added = position(&Event::BuildRequestAdded { brid, bsid, builderid });
    let buildset_added = position(&Event::BuildsetAdded { bsid });
    let fired = position(&Event::SchedulerFired { scheduler: "force-b".into(), bsid });
    let claimed = position(&Event::BuildRequestClaimed { brid, bsid, builderid, masterid: master.masterid() });
    // The scheduler's event follows its buildset's; the dispatcher may claim the request before or after it.
    assert!(added < buildset_added && buildset_added < fired && buildset_added < claimed, "{events:?}");
    let Some(Event::BuildStarted { buildid, number: 1, brid: b, .. }) =
        events.iter().find(|e| matches!(e, Event::BuildStarted { .. })).cloned()
    else {
        panic!("no build started: {events:?}");
    };
    assert_eq!(b, brid);
    let completed = position(&Event::BuildRequestCompleted { brid, bsid, builderid, results: FAILURE });
    assert_eq!(events.last(), Some(&Event::BuildsetCompleted { bsid, results: FAILURE }));
    assert!(claimed < completed);

    // The build's own events, in Buildbot's order, with its state strings.
    let build = of_build(&events, buildid);
    let mut rest = build.iter();
    assert!(matches!(rest.next(), Some(Event::BuildStarted { .. })));
    let updated = |s: &str| Event::BuildUpdated { buildid, builderid, state_string: s.into() };
    assert_eq!(rest.next(), Some(&updated("pinging worker")));
    assert_eq!(rest.next(), Some(&updated("building")));
    let mut steps = Vec::new();
    for (number, want_result, want_state) in [(0, SUCCESS, "'for i ...'"), (1, FAILURE, "'make -j4' (failure)")] {
        let Some(Event::StepStarted { stepid, number: n, .. }) = rest.next().cloned() else {
            panic!("step {number} not started next: {build:?}");
        };
        assert_eq!(n, number);
        let Some(Event::LogAdded { logid, stepid: s }) = rest.next().cloned() else {
            panic!("no log added next: {build:?}");
        };
        assert_eq!(s, stepid);
        // Line ranges follow each other from 0, then the log finishes with all of them.
        let mut next_line = 0;
        let num_lines = loop {
            match rest.next() {
                Some(Event::LogAppended { logid: l, first_line, count, .. }) if *l == logid => {
                    assert_eq!(*first_line, next_line, "{build:?}");
                    assert!(*count > 0);
                    next_line += count;
                }
                Some(Event::LogFinished { logid: l, num_lines, .. }) if *l == logid => break *num_lines,
                other => panic!("{other:?} in the middle of log {logid}: {build:?}"),
            }
        };
        assert_eq!(num_lines, next_line);
        assert!(num_lines > 0, "the step's log has lines");
        assert_eq!(store.log_num_lines(logid).await.expect("count"), num_lines);
        let lines = store.log_lines(logid, 0, num_lines).await.expect("lines");
        if number == 0 {
            for i in 1..=5 {
                assert!(lines.contains(&format!("oline {i}")), "{lines:?}");
            }
        }
        assert_eq!(
            rest.next(),
            Some(&Event::StepFinished { stepid, buildid, results: want_result, state_string: want_state.into() })
        );
        steps.push(stepid);
    }
    assert_eq!(rest.next(), Some(&updated("'make -j4' (failure)")), "a failing step goes into the build's summary");
    assert_eq!(
        rest.next(),
        Some(&Event::BuildFinished {
            buildid,
            builderid,
            results: FAILURE,
            state_string: "failed 'make -j4' (failure)".into()
        })
    );
    assert_eq!(rest.next(), None);
    assert!(position(&build[build.len() - 1]) < completed, "the build finishes before its request completes");

    // What the events said is what the store (and the API) shows.
    let stored = store.build(buildid).await.expect("get").expect("exists");
    assert_eq!((stored.results, stored.state_string.as_str()), (Some(FAILURE), "failed 'make -j4' (failure)"));
    let stored_steps = store.steps(buildid).await.expect("steps");
    let states: Vec<&str> = stored_steps.iter().map(|s| s.state_string.as_str()).collect();
    assert_eq!(states, ["'for i ...'", "'make -j4' (failure)"]);
    assert_eq!(stored_steps.iter().map(|s| s.id).collect::<Vec<_>>(), steps);

    stop.cancel();
    let detached = events_until(&mut sub, |e| matches!(e, Event::WorkerDetached { .. })).await;
    assert!(matches!(detached.last(), Some(Event::WorkerDetached { name, .. }) if name == "w1"));
    worker.await.expect("worker task").expect("worker ends cleanly");
    master.shutdown(false).await;
    let stopped = events_until(&mut sub, |e| matches!(e, Event::MasterStopped { .. })).await;
    assert!(matches!(stopped.last(), Some(Event::MasterStopped { masterid, .. }) if *masterid == master.masterid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_nothing_up_and_is_told_it_lagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    master_dir(dir.path(), "  [[builder.step]]\n  command = \"seq 1 20000\"\n");
    let (master, addresses) = Master::start(dir.path()).await.expect("master starts");
    let store = master.store().clone();
    let mut idle = store.events().subscribe();
    let mut follower = store.events().subscribe();

    // More events than the idle subscriber can hold, from real writes (the worker's pauses), then a real build.
    let flood = SUBSCRIBER_CAPACITY + 100;
    for i in 0..flood {
        if i % 2 == 0 {
            master.pause_worker("w1", Some("flood")).await.expect("pause");
        } else {
            master.unpause_worker("w1").await.expect("unpause");
        }
    }
    let (stop, worker) = start_worker(addresses.workers, &dir.path().join("worker"));
    let submitted = master.force("force-b", None, &serde_json::Map::new()).await.expect("force");
    let bsid = submitted.buildsetid;
    let mut seen = 0;
    let done = loop {
        let next = tokio::time::timeout(WAIT, follower.recv()).await.expect("the build ends in time");
        match next {
            Ok(Some(published)) => {
                seen += 1;
                if let Event::BuildsetCompleted { bsid: b, results } = published.event {
                    if b == bsid {
                        break results;
                    }
                }
            }
            // The follower reads as fast as it can, but the flood may outrun it too: it is told, and goes on.
            Err(lagged) => seen += lagged.missed as usize,
            Ok(None) => panic!("bus gone"),
        }
    };
    assert_eq!(done, SUCCESS, "the build ran while a subscriber read nothing");
    assert!(seen > flood, "the follower saw the flood and the build ({seen} events)");

    let lagged = idle.try_recv().expect_err("the idle subscriber is told it lagged");
    assert!(lagged.missed >= (flood - SUBSCRIBER_CAPACITY) as u64, "{lagged:?}");
    // Then it goes on with what is still buffered for it: no more than its capacity.
    let mut buffered = 0;
    while let Ok(Some(_)) = idle.try_recv() {
        buffered += 1;
    }
    assert!(buffered <= SUBSCRIBER_CAPACITY, "{buffered}");
    assert!(matches!(idle.try_recv(), Ok(None)), "after its buffer, nothing: it lost what it missed, and was told");

    stop.cancel();
    worker.await.expect("worker task").expect("worker ends cleanly");
    master.shutdown(false).await;
}
