//! Every resource rendered as the API shows it, byte for byte, and the fields each can be filtered and ordered by:
//! what clients see must not change when the resources' declarations do.

use std::collections::BTreeMap;

use serde_json::json;

use super::render::ApiResource;
use super::tests::fixture;
use crate::model::NewChange;
use crate::store::{Build, BuildRequest, Buildset, Change, Log, Resource, Step, Worker};

/// The fields of `R` that filters and orders may name, sorted.
fn filterable<R: Resource>() -> Vec<&'static str> {
    let mut names: Vec<&str> = R::filterable().collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn every_resource_renders_as_before() {
    let f = fixture().await;
    let m = &f.master;
    let build = Build {
        id: 11,
        number: 3,
        builderid: 2,
        buildrequestid: 21,
        workerid: Some(4),
        masterid: 1,
        started_at: 1_700_000_000,
        complete_at: Some(1_700_000_060),
        state_string: "build successful".into(),
        results: Some(0),
    };
    let running =
        Build { workerid: None, complete_at: None, state_string: String::new(), results: None, ..build.clone() };
    let request = BuildRequest {
        id: 21,
        buildsetid: 31,
        builderid: 2,
        priority: 7,
        submitted_at: 1_699_999_990,
        complete: true,
        results: Some(2),
        complete_at: Some(1_700_000_061),
        waited_for: true,
        superseded_by: Some(22),
        claimed_by_masterid: Some(1),
    };
    let queued = BuildRequest {
        complete: false,
        results: None,
        complete_at: None,
        waited_for: false,
        superseded_by: None,
        claimed_by_masterid: None,
        ..request.clone()
    };
    let buildset = Buildset {
        id: 31,
        reason: "forced".into(),
        external_idstring: Some("ext".into()),
        scheduler: Some("force-all".into()),
        parent_buildid: Some(10),
        submitted_at: 1_699_999_990,
        complete: true,
        complete_at: Some(1_700_000_061),
        results: Some(6),
    };
    let open = Buildset {
        external_idstring: None,
        scheduler: None,
        parent_buildid: None,
        complete: false,
        complete_at: None,
        results: None,
        ..buildset.clone()
    };
    let change = Change {
        id: 41,
        sourcestampid: 51,
        parent_changeids: vec![40],
        reported: NewChange {
            author: "Ada <ada@example.org>".into(),
            committer: Some("Bob <bob@example.org>".into()),
            comments: "fix \"quotes\"\nand lines".into(),
            files: vec!["src/a.rs".into(), "README.md".into()],
            revision: Some("abc123".into()),
            branch: Some("main".into()),
            repository: "https://example.org/r.git".into(),
            project: "p".into(),
            codebase: "cb".into(),
            category: Some("push".into()),
            when_timestamp: 1_699_999_000,
            properties: BTreeMap::from([
                ("event".to_string(), json!("push")),
                ("n".to_string(), json!(2)),
                ("revlink".to_string(), json!("https://example.org/r/commit/abc123")),
            ]),
        },
    };
    let bare = Change {
        parent_changeids: Vec::new(),
        reported: NewChange {
            committer: None,
            revision: None,
            branch: None,
            category: None,
            properties: BTreeMap::from([("event".to_string(), json!("push")), ("n".to_string(), json!(2))]),
            ..change.reported.clone()
        },
        ..change.clone()
    };
    let step = Step {
        id: 61,
        number: 0,
        name: "compile".into(),
        buildid: 11,
        started_at: 1_700_000_001,
        complete_at: Some(1_700_000_050),
        state_string: "'make' failed".into(),
        results: Some(2),
        hidden: true,
    };
    let running_step = Step { complete_at: None, results: None, hidden: false, ..step.clone() };
    let log = Log {
        id: 71,
        name: "stdio".into(),
        slug: "stdio".into(),
        stepid: 61,
        complete: true,
        num_lines: 12,
        log_type: "s".into(),
    };
    let worker = Worker {
        id: 81,
        name: "w1".into(),
        info: r#"{"os":"linux","admin":"me"}"#.into(),
        paused: true,
        pause_reason: Some("disk full".into()),
    };
    let unknown =
        Worker { name: "w9".into(), info: "not json".into(), paused: false, pause_reason: None, ..worker.clone() };
    let linux = m.builder_id("linux").expect("linux");
    let mac = m.builder_id("mac").expect("mac");
    let masterid = m.masterid();

    let rendered = [
        build.to_json(m),
        running.to_json(m),
        request.to_json(m),
        queued.to_json(m),
        buildset.to_json(m),
        open.to_json(m),
        change.to_json(m),
        bare.to_json(m),
        step.to_json(m),
        running_step.to_json(m),
        log.to_json(m),
        worker.to_json(m),
        unknown.to_json(m),
    ]
    .map(|v| v.to_string());
    let expected = [
        r#"{"builderid":2,"buildid":11,"buildrequestid":21,"complete":true,"complete_at":1700000060,"masterid":1,"number":3,"results":0,"started_at":1700000000,"state_string":"build successful","workerid":4}"#.to_string(),
        r#"{"builderid":2,"buildid":11,"buildrequestid":21,"complete":false,"complete_at":null,"masterid":1,"number":3,"results":null,"started_at":1700000000,"state_string":"","workerid":null}"#.to_string(),
        r#"{"builderid":2,"buildrequestid":21,"buildsetid":31,"claimed":true,"claimed_by_masterid":1,"complete":true,"complete_at":1700000061,"priority":7,"results":2,"submitted_at":1699999990,"superseded_by":22,"waited_for":true}"#.to_string(),
        r#"{"builderid":2,"buildrequestid":21,"buildsetid":31,"claimed":false,"claimed_by_masterid":null,"complete":false,"complete_at":null,"priority":7,"results":null,"submitted_at":1699999990,"superseded_by":null,"waited_for":false}"#.to_string(),
        r#"{"bsid":31,"complete":true,"complete_at":1700000061,"external_idstring":"ext","parent_buildid":10,"reason":"forced","results":6,"scheduler":"force-all","submitted_at":1699999990}"#.to_string(),
        r#"{"bsid":31,"complete":false,"complete_at":null,"external_idstring":null,"parent_buildid":null,"reason":"forced","results":null,"scheduler":null,"submitted_at":1699999990}"#.to_string(),
        r#"{"author":"Ada <ada@example.org>","branch":"main","category":"push","changeid":41,"codebase":"cb","comments":"fix \"quotes\"\nand lines","committer":"Bob <bob@example.org>","files":["src/a.rs","README.md"],"parent_changeids":[40],"project":"p","properties":{"event":["push","Change"],"n":[2,"Change"],"revlink":["https://example.org/r/commit/abc123","Change"]},"repository":"https://example.org/r.git","revision":"abc123","revlink":"https://example.org/r/commit/abc123","sourcestamp":{"branch":"main","codebase":"cb","project":"p","repository":"https://example.org/r.git","revision":"abc123","ssid":51},"when_timestamp":1699999000}"#.to_string(),
        r#"{"author":"Ada <ada@example.org>","branch":null,"category":null,"changeid":41,"codebase":"cb","comments":"fix \"quotes\"\nand lines","committer":null,"files":["src/a.rs","README.md"],"parent_changeids":[],"project":"p","properties":{"event":["push","Change"],"n":[2,"Change"]},"repository":"https://example.org/r.git","revision":null,"revlink":null,"sourcestamp":{"branch":null,"codebase":"cb","project":"p","repository":"https://example.org/r.git","revision":null,"ssid":51},"when_timestamp":1699999000}"#.to_string(),
        r#"{"buildid":11,"complete":true,"complete_at":1700000050,"hidden":true,"name":"compile","number":0,"results":2,"started_at":1700000001,"state_string":"'make' failed","stepid":61,"urls":[]}"#.to_string(),
        r#"{"buildid":11,"complete":false,"complete_at":null,"hidden":false,"name":"compile","number":0,"results":null,"started_at":1700000001,"state_string":"'make' failed","stepid":61,"urls":[]}"#.to_string(),
        r#"{"complete":true,"logid":71,"name":"stdio","num_lines":12,"slug":"stdio","stepid":61,"type":"s"}"#.to_string(),
        format!(
            r#"{{"configured_on":[{{"builderid":{linux},"masterid":{masterid}}},{{"builderid":{mac},"masterid":{masterid}}}],"connected_to":[],"graceful":false,"name":"w1","pause_reason":"disk full","paused":true,"workerid":81,"workerinfo":{{"admin":"me","os":"linux"}}}}"#
        ),
        r#"{"configured_on":[],"connected_to":[],"graceful":false,"name":"w9","pause_reason":null,"paused":false,"workerid":81,"workerinfo":{}}"#.to_string(),
    ];
    for (got, want) in rendered.iter().zip(&expected) {
        assert_eq!(got, want);
    }
}

#[test]
fn the_fields_filters_and_orders_may_name_are_as_before() {
    let sorted = |mut names: Vec<&'static str>| {
        names.sort_unstable();
        names
    };
    assert_eq!(
        filterable::<Build>(),
        sorted(vec![
            "buildid",
            "number",
            "builderid",
            "buildrequestid",
            "workerid",
            "masterid",
            "started_at",
            "complete_at",
            "complete",
            "state_string",
            "results"
        ])
    );
    assert_eq!(
        filterable::<BuildRequest>(),
        sorted(vec![
            "buildrequestid",
            "buildsetid",
            "builderid",
            "priority",
            "submitted_at",
            "complete",
            "results",
            "complete_at",
            "waited_for",
            "claimed",
            "claimed_by_masterid",
            "superseded_by"
        ])
    );
    assert_eq!(
        filterable::<Buildset>(),
        sorted(vec![
            "bsid",
            "reason",
            "external_idstring",
            "submitted_at",
            "complete",
            "complete_at",
            "results",
            "parent_buildid",
            "scheduler"
        ])
    );
    assert_eq!(
        filterable::<Step>(),
        sorted(vec![
            "stepid",
            "number",
            "name",
            "buildid",
            "started_at",
            "complete_at",
            "complete",
            "state_string",
            "results",
            "hidden"
        ])
    );
    assert_eq!(filterable::<Log>(), sorted(vec!["logid", "name", "slug", "stepid", "complete", "num_lines", "type"]));
    assert_eq!(filterable::<Worker>(), sorted(vec!["workerid", "name", "paused"]));
    assert_eq!(
        filterable::<Change>(),
        sorted(vec![
            "changeid",
            "author",
            "committer",
            "comments",
            "branch",
            "revision",
            "repository",
            "project",
            "codebase",
            "category",
            "when_timestamp"
        ])
    );
}
