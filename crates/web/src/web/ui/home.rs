//! `/`: what a team looks at first — builders with their last results, running builds with their progress,
//! the queue with why each request waits, the workers online, and the recent failures.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::builders::{summaries, BuilderSummary, MAX_BUILDERS};
use super::view::{segment, BuildRow, Frame, Names, Time};
use super::{page_view, respond, UiError, Wanted};
use crate::master::Master;
use crate::model::Build;
use crate::results::{EXCEPTION, FAILURE};
use crate::store::{FilterValue, ListQuery, Op};

/// Builds shown per builder on the home page.
const BOXES: i64 = 5;
/// Requests and failures shown at most.
const MAX_ROWS: usize = 25;

/// A running build and how far it is.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub row: BuildRow,
    /// Steps started so far, and the builder's step count.
    pub step: usize,
    pub steps: usize,
    /// What step it is in.
    pub current: String,
}

/// A request in the queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub brid: i64,
    pub builder: String,
    pub builder_href: String,
    pub submitted: Time,
    pub why: String,
    pub priority: i32,
}

/// A worker, connected or not.
#[derive(Debug, Clone)]
pub(crate) struct WorkerState {
    pub name: String,
    pub href: String,
    pub connected: bool,
    pub paused: bool,
    pub reason: String,
    /// Connected: since when; else when it was last seen (since this master started), if it was.
    pub since: Option<Time>,
}

#[derive(Template)]
#[template(path = "home.html", blocks = ["live"])]
pub(crate) struct HomePage {
    pub frame: Frame,
    pub builders: Vec<BuilderSummary>,
    pub more_builders: usize,
    pub running: Vec<Running>,
    pub queue: Vec<Queued>,
    pub queued_total: usize,
    pub workers: Vec<WorkerState>,
    pub connected: usize,
    pub failures: Vec<BuildRow>,
}
page_view!(HomePage);

/// The builds running on this master, newest first, with their progress.
pub(crate) async fn running(master: &Master, names: &Names, builderid: Option<i64>) -> Result<Vec<Running>, UiError> {
    let ids: Vec<FilterValue> = master.running_builds().into_iter().map(FilterValue::Int).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = ListQuery::<Build>::new();
    query.filter("buildid", Op::Eq, ids).map_err(|e| UiError::BadRequest(e.to_string()))?;
    if let Some(id) = builderid {
        query
            .filter("builderid", Op::Eq, vec![FilterValue::Int(id)])
            .map_err(|e| UiError::BadRequest(e.to_string()))?;
    }
    query.order_by("buildid", true).map_err(|e| UiError::BadRequest(e.to_string()))?.page(Some(50), 0);
    let builds = master.store().list(&query).await?.items;
    let mut running = Vec::new();
    for build in builds {
        let steps = master.store().steps(build.id).await?;
        let name = names.builder(build.builderid);
        let planned = master.config().builders.iter().find(|b| b.name == name).map_or(0, |b| b.steps.len());
        let current = steps.iter().rev().find(|s| s.complete_at.is_none()).or(steps.last());
        running.push(Running {
            row: names.row(&build),
            step: steps.len(),
            steps: planned.max(steps.len()),
            current: current.map(|s| s.name.clone()).unwrap_or_default(),
        });
    }
    Ok(running)
}

/// The queue (all of it, or one builder's), in the order it is served, with why each request waits.
pub(crate) async fn queue(master: &Master, builder: Option<&str>) -> Result<Vec<Queued>, UiError> {
    let queued = master.queue().await?;
    Ok(queued
        .into_iter()
        .filter(|q| builder.is_none_or(|b| b == q.builder))
        .map(|q| Queued {
            brid: q.request.id,
            builder_href: format!("/builders/{}", segment(&q.builder)),
            builder: q.builder,
            submitted: Time::at(q.request.submitted_at),
            why: q.why,
            priority: q.request.priority,
        })
        .collect())
}

/// Every configured worker: connected or not, paused (with why) or not.
pub(crate) async fn worker_states(master: &Master) -> Result<Vec<WorkerState>, UiError> {
    let paused = master.store().paused_workers().await?;
    Ok(master
        .config()
        .workers
        .iter()
        .map(|w| {
            let reason = paused.get(&w.name);
            let connected = master.workers().connected(&w.name).is_some_and(|c| !c.is_closed());
            let since =
                if connected { master.workers().attached_at(&w.name) } else { master.workers().detached_at(&w.name) };
            WorkerState {
                name: w.name.clone(),
                href: format!("/workers/{}", segment(&w.name)),
                connected,
                since: since.map(Time::at),
                paused: reason.is_some(),
                reason: reason.cloned().flatten().unwrap_or_default(),
            }
        })
        .collect())
}

/// How far back (in builds) the home page looks for failures: a history of successes is not read to its start.
const FAILURES_WITHIN: i64 = 5_000;

/// The last builds that failed (failure or exception) among the last [`FAILURES_WITHIN`], newest first.
pub(crate) async fn failures(master: &Master, names: &Names, limit: usize) -> Result<Vec<BuildRow>, UiError> {
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut newest = ListQuery::<Build>::new();
    newest.order_by("buildid", true).map_err(bad)?.page(Some(1), 0);
    let Some(newest) = master.store().list(&newest).await?.items.first().map(|b| b.id) else {
        return Ok(Vec::new());
    };
    let mut query = ListQuery::<Build>::new();
    query
        .filter("buildid", Op::Gt, vec![FilterValue::Int(newest - FAILURES_WITHIN)])
        .map_err(bad)?
        .filter("results", Op::Eq, vec![FilterValue::Int(i64::from(FAILURE)), FilterValue::Int(i64::from(EXCEPTION))])
        .map_err(|e| UiError::BadRequest(e.to_string()))?
        .order_by("buildid", true)
        .map_err(|e| UiError::BadRequest(e.to_string()))?
        .page(Some(limit as i64), 0);
    Ok(master.store().list(&query).await?.items.iter().map(|b| names.row(b)).collect())
}

pub(super) async fn page(State(master): State<Master>, wanted: Wanted) -> Result<Response, UiError> {
    let names = Names::of(&master).with_workers(&master).await?;
    let config = master.config();
    let defs: Vec<_> = config.builders.iter().take(MAX_BUILDERS).collect();
    let builders = summaries(&master, &defs, BOXES).await?;
    let mut queue = queue(&master, None).await?;
    let queued_total = queue.len();
    queue.truncate(MAX_ROWS);
    let workers = worker_states(&master).await?;
    let page = HomePage {
        frame: Frame::new(&master, "Home", "home").live(&[
            "builds/*/*",
            "steps/*/started",
            "buildrequests/*/*",
            "workers/*/*",
        ]),
        more_builders: master.config().builders.len().saturating_sub(builders.len()),
        builders,
        running: running(&master, &names, None).await?,
        queue,
        queued_total,
        connected: workers.iter().filter(|w| w.connected).count(),
        workers,
        failures: failures(&master, &names, 10).await?,
    };
    respond(page, &wanted)
}
