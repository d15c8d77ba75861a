//! End-to-end: a forced build's properties (force form, builder, build, worker) reach its steps through
//! Interpolate templates and the REST API.
//!
//!     cargo test -p kiln --test properties

mod support;

use serde_json::json;
use support::buildbot::{results, WorkerKind};
use support::kiln::KilnMaster;

#[tokio::test]
async fn a_forced_property_and_the_builder_name_are_interpolated_into_a_step() {
    let builder = r#"
properties = { flavour = "debug" }
force_scheduler = false

[[builder.step]]
name = "say"
command = "echo %(prop:buildername)s %(prop:foo)s %(prop:flavour)s [%(prop:missing:-none)s] 100%% %(src::branch:-nobranch)s"
env = { WHO = "%(prop:workername)s" }

[[builder.step]]
name = "env"
command = ["sh", "-c", "echo worker=$WHO number=%(prop:buildnumber)s"]
env = { WHO = "%(prop:workername)s" }
"#;
    // Only declared parameters become properties: `foo` is one of this force scheduler's.
    let force = "[[force_scheduler]]\nname = \"force-interp\"\nbuilders = [\"interp\"]\n\n\
                 [[force_scheduler.parameter]]\nname = \"foo\"\ntype = \"string\"\n";
    let mut master =
        KilnMaster::builder().worker("w1", "pw-1").builder("interp", builder).extra_toml(force).start().await;
    master.start_worker(WorkerKind::Kiln, "w1").await;
    master.wait_worker_connected("w1").await;

    let brid = master.force_with("interp", json!({ "foo": "bar baz" })).await;
    let request = master.wait_request_complete(brid).await;
    assert_eq!(master.results(&request), results::SUCCESS);
    let build = &master.builds_of_request(brid).await[0];
    let buildid = master.id(build, "buildid");

    let say = master.step(buildid, "say").await;
    let log = master.log(master.id(&say, "stepid"), "stdio").await;
    assert!(
        log.lines.iter().any(|l| l.channel == 'o' && l.text == "interp bar baz debug [none] 100% nobranch"),
        "{log:?}"
    );
    let env = master.step(buildid, "env").await;
    let log = master.log(master.id(&env, "stepid"), "stdio").await;
    assert!(log.lines.iter().any(|l| l.channel == 'o' && l.text == "worker=w1 number=1"), "{log:?}");

    let props = master.get_one(&format!("builds/{buildid}/properties")).await;
    assert_eq!(props["foo"], json!(["bar baz", "Force Build Form"]));
    assert_eq!(props["buildername"], json!(["interp", "Builder"]));
    assert_eq!(props["flavour"], json!(["debug", "Builder"]));
    assert_eq!(props["buildnumber"], json!([1, "Build"]));
    assert_eq!(props["workername"], json!(["w1", "Worker"]));
    assert_eq!(props["scheduler"], json!(["force-interp", "Scheduler"]));
    assert!(props["builddir"][0].as_str().is_some_and(|d| d.ends_with("/interp")), "{props}");
}
