//! The `/ws` command parser against Buildbot 4.3.0's replies, word for word.

use serde_json::json;

use super::*;
use crate::events::EventBus;

fn run(consumer: &mut Consumer, frame: serde_json::Value) -> serde_json::Value {
    serde_json::from_str(&consumer.command(&frame.to_string())).expect("a JSON reply")
}

#[test]
fn commands_are_acknowledged_as_buildbot_does() {
    let mut c = Consumer::with_bus(EventBus::new());
    let ok = |id: i64| json!({ "msg": "OK", "code": 200, "_id": id });
    assert_eq!(run(&mut c, json!({ "cmd": "startConsuming", "path": "builds/*/*", "_id": 1 })), ok(1));
    assert_eq!(c.paths, ["builds/*/*"]);
    assert!(c.events.is_some(), "subscribed while a path is consumed");
    // Starting a path twice does not consume it twice.
    assert_eq!(run(&mut c, json!({ "cmd": "startConsuming", "path": "builds/*/*", "_id": 2 })), ok(2));
    assert_eq!(c.paths, ["builds/*/*"]);
    assert_eq!(run(&mut c, json!({ "cmd": "ping", "_id": 3 })), json!({ "msg": "pong", "code": 200, "_id": 3 }));
    assert_eq!(run(&mut c, json!({ "cmd": "stopConsuming", "path": "builds/*/*", "_id": 4 })), ok(4));
    assert!(c.paths.is_empty() && c.events.is_none(), "unsubscribed with the last path");
    // The `_id` comes back as it was sent, whatever its type.
    assert_eq!(run(&mut c, json!({ "cmd": "ping", "_id": "a" }))["_id"], "a");
}

#[test]
fn replies_keep_buildbots_key_order() {
    let mut c = Consumer::default();
    assert_eq!(c.command(r#"{"cmd":"ping","_id":7}"#), r#"{"msg":"pong","code":200,"_id":7}"#);
    assert_eq!(
        c.command(r#"{"cmd":"bogus","_id":6}"#),
        r#"{"error":"no such command type 'bogus'","code":404,"_id":6}"#
    );
}

#[test]
fn errors_are_worded_and_coded_as_buildbots() {
    let mut c = Consumer::with_bus(EventBus::new());
    let err = |error: &str, code: i64, id: serde_json::Value| json!({ "error": error, "code": code, "_id": id });
    assert_eq!(
        run(&mut c, json!({ "cmd": "stopConsuming", "path": "nope", "_id": 5 })),
        err("path was not consumed 'nope'", 400, json!(5))
    );
    assert_eq!(run(&mut c, json!({ "cmd": "bogus", "_id": 6 })), err("no such command type 'bogus'", 404, json!(6)));
    assert_eq!(run(&mut c, json!({ "cmd": "ping" })), err("no '_id' or 'type' in websocket frame", 400, json!(null)));
    assert_eq!(run(&mut c, json!({ "_id": 8 })), err("no 'cmd' in websocket frame", 400, json!(null)));
    assert_eq!(
        run(&mut c, json!({ "cmd": "startConsuming", "path": 5, "_id": 9 })),
        err("invalid path format '5'", 400, json!(9))
    );
    assert_eq!(
        run(&mut c, json!({ "cmd": "startConsuming", "_id": 10 })),
        err(
            "Invalid method argument 'WsProtocol.cmd_startConsuming() missing 1 required positional argument: 'path''",
            400,
            json!(10)
        )
    );
    assert_eq!(
        run(&mut c, json!({ "cmd": "ping", "_id": 11, "path": "x" })),
        err(
            "Invalid method argument 'WsProtocol.cmd_ping() got an unexpected keyword argument 'path''",
            400,
            json!(11)
        )
    );
    assert_eq!(
        run(&mut c, json!({ "cmd": "stopConsuming", "type": "x" })),
        err(
            "Invalid method argument 'WsProtocol.cmd_stopConsuming() missing 2 required positional arguments: \
             'path' and '_id''",
            400,
            json!(null)
        )
    );
    assert_eq!(run(&mut c, json!([1]))["code"], 400, "not an object");
    assert!(c.paths.is_empty());
}

#[test]
fn values_in_messages_are_shown_as_python_shows_them() {
    assert_eq!(py_str(&json!(null)), "None");
    assert_eq!(py_str(&json!([1, "a", true])), "[1, 'a', True]");
    assert_eq!(py_str(&json!({ "a": 1.5 })), "{'a': 1.5}");
}

#[test]
fn events_go_under_buildbots_keys_completed_from_their_resource() {
    let updated = Event::BuildUpdated { buildid: 42, builderid: 3, state_string: "building".into() };
    let build = json!({ "buildid": 42, "number": 7, "builderid": 3, "workerid": 2 });
    assert_eq!(
        buildbot_keys(&updated, &build),
        ["builders/3/builds/7/update", "builds/42/update", "workers/2/builds/42/update"]
    );
    let appended = Event::LogAppended { logid: 17, stepid: 5, first_line: 0, count: 2 };
    let log = json!({ "logid": 17, "slug": "stdio", "stepid": 5 });
    assert_eq!(buildbot_keys(&appended, &log), ["logs/17/append", "steps/5/logs/stdio/append"]);
    let claimed = Event::BuildRequestClaimed { brid: 9, bsid: 4, builderid: 3, masterid: 1 };
    assert_eq!(
        buildbot_keys(&claimed, &json!({})),
        [
            "buildsets/4/builders/3/buildrequests/9/claimed",
            "buildrequests/9/claimed",
            "builders/3/buildrequests/9/claimed"
        ]
    );
    let step = Event::StepFinished { stepid: 5, buildid: 42, results: 0, state_string: "done".into() };
    assert_eq!(buildbot_keys(&step, &json!({})), step.keys());
    // Without a resource (gone from the store), only the keys the event itself gives.
    assert_eq!(buildbot_keys(&appended, &json!({ "logid": 17 })), ["logs/17/append"]);
}
