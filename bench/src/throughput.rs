//! Workload 1, build throughput: N forced builds of a trivial builder (update a checkout of a small local git
//! repository, then `echo`) submitted at once; builds per second from the first submission to the last request
//! completing. N = 100 (10 in quick mode).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use futures_util::future::join_all;

use crate::repo::make_repo;
use crate::report::{Better, Row, Target};
use crate::systems::{Builder, Kind, System};
use crate::{figures, Env};

const WORKLOAD: &str = "1 build throughput";

pub async fn run(env: &Env) -> Vec<Row> {
    let builds = if env.quick { 10 } else { 100 };
    let mut rate = [None, None];
    for (i, kind) in [Kind::Kiln, Kind::Buildbot].into_iter().enumerate() {
        rate[i] = figures(WORKLOAD, kind, measure(env, kind, builds).await);
    }
    vec![Row {
        workload: WORKLOAD,
        metric: format!("{builds} builds submitted at once"),
        unit: "builds/s",
        better: Better::Higher,
        kiln: rate[0],
        buildbot: rate[1],
        target: Target::Ratio(50.0),
    }]
}

async fn measure(env: &Env, kind: Kind, builds: usize) -> Result<f64> {
    // The repository lives next to the systems, at a path known before the builder is written.
    let repo = tempfile::Builder::new().prefix("repo-").tempdir_in(&env.scratch)?;
    make_repo(repo.path())?;
    let checkout =
        format!("if [ -d src/.git ]; then git -C src pull -q; else git clone -q {} src; fi", repo.path().display());
    let builder = Builder::new("trivial", &[("checkout", &checkout), ("echo", "echo hello")]);
    let mut system = System::start(env, kind, &[builder]).await?;
    let builder_id = system.builder_id("trivial").await?;

    let started = Instant::now();
    let submissions = (0..builds).map(|_| system.force("trivial", builder_id));
    let brids: Vec<i64> = join_all(submissions).await.into_iter().collect::<Result<_>>()?;
    ensure!(brids.len() == builds);
    let submitted = started.elapsed();
    system
        .poll("all requests to complete", Duration::from_secs(if env.quick { 120 } else { 600 }), async |s: &System| {
            let pending = s.get("buildrequests?complete=false&field=buildrequestid&field=complete").await?;
            Ok(pending["buildrequests"].as_array().is_some_and(|p| p.is_empty()).then_some(()))
        })
        .await?;
    let elapsed = started.elapsed();
    let done = system.get("buildrequests?complete=true&field=buildrequestid&field=complete&field=results").await?;
    let done = done["buildrequests"].as_array().cloned().unwrap_or_default();
    let succeeded = done.iter().filter(|r| r["results"].as_i64() == Some(0)).count();
    ensure!(done.len() == builds, "{} requests complete, expected {builds}", done.len());
    ensure!(succeeded == builds, "only {succeeded} of {builds} builds succeeded\n{}", system.diagnostics());
    println!(
        "  {kind:?}: {builds} builds in {:.2} s (submitted in {:.3} s)",
        elapsed.as_secs_f64(),
        submitted.as_secs_f64()
    );
    Ok(builds as f64 / elapsed.as_secs_f64())
}
