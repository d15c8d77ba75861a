//! `/workers` and `/workers/{name}`: each worker connected or not, what it told about itself (version, OS),
//! its builders, its current and recent builds, paused (with why) or not, and pause/unpause buttons.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::home::{worker_states, WorkerState};
use super::view::{BuildRow, Frame, Names};
use super::{page_view, respond, UiError, Wanted};
use crate::config::Action;
use crate::master::Master;
use crate::model::{Build, Worker};
use crate::store::{FilterValue, ListQuery, Op};

/// Recent builds shown on a worker's page.
const RECENT: i64 = 25;

#[derive(Template)]
#[template(path = "workers.html", blocks = ["live"])]
pub(crate) struct WorkersPage {
    pub frame: Frame,
    pub workers: Vec<WorkerState>,
}
page_view!(WorkersPage);

#[derive(Template)]
#[template(path = "worker.html", blocks = ["live"])]
pub(crate) struct WorkerPage {
    pub frame: Frame,
    pub worker: WorkerState,
    /// What it told at connection (`version`, `system`, `os-release` files…), name → value.
    pub info: Vec<(String, String)>,
    pub builders: Vec<String>,
    pub builds: Vec<BuildRow>,
    /// Who paused it (from the audit), while it is paused.
    pub paused_by: String,
    /// Whether the viewer may pause (or unpause) it.
    pub can_pause: bool,
}
page_view!(WorkerPage);

pub(super) async fn list(State(master): State<Master>, wanted: Wanted) -> Result<Response, UiError> {
    let page = WorkersPage {
        frame: Frame::new(&master, "Workers", "workers").live(&["workers/*/*"]),
        workers: worker_states(&master).await?,
    };
    respond(page, &wanted)
}

pub(super) async fn page(
    State(master): State<Master>,
    Path(name): Path<String>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let worker = worker_states(&master)
        .await?
        .into_iter()
        .find(|w| w.name == name)
        .ok_or_else(|| UiError::NotFound(format!("no worker '{name}'")))?;
    let info: Vec<(String, String)> = match master.workers().connected(&name).filter(|c| !c.is_closed()) {
        Some(connection) => connection
            .info_json()
            .into_iter()
            .filter(|(key, _)| key != "worker_commands")
            .map(|(key, value)| (key, value.as_str().map_or_else(|| value.to_string(), str::to_string)))
            .collect(),
        None => Vec::new(),
    };
    let builders =
        master.config().builders.iter().filter(|b| b.workers.contains(&name)).map(|b| b.name.clone()).collect();
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut by_name = ListQuery::<Worker>::new();
    by_name.filter("name", Op::Eq, vec![FilterValue::Text(name.clone())]).map_err(bad)?.page(Some(1), 0);
    // A configured worker that never connected has no row yet (and no builds).
    let workerid = master.store().list(&by_name).await?.items.first().map_or(0, |w| w.id);
    let mut query = ListQuery::<Build>::new();
    query
        .filter("workerid", Op::Eq, vec![FilterValue::Int(workerid)])
        .map_err(bad)?
        .order_by("buildid", true)
        .map_err(bad)?
        .page(Some(RECENT), 0);
    let names = Names::of(&master).with_workers(&master).await?;
    let builds = master.store().list(&query).await?.items.iter().map(|b| names.row(b)).collect();
    let patterns = [format!("workers/{workerid}/*"), "builds/*/new".into(), "builds/*/finished".into()];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let paused_by = match worker.paused {
        true => master.store().worker_actors(Action::Pause.name(), &[&name]).await?.remove(&name),
        false => None,
    };
    let worker_paused = worker.paused;
    let page = WorkerPage {
        frame: Frame::new(&master, name.clone(), "workers").live(&patterns),
        paused_by: paused_by.unwrap_or_default(),
        worker,
        info,
        builders,
        builds,
        can_pause: wanted.may(&master, if worker_paused { Action::Unpause } else { Action::Pause }, None, None),
    };
    respond(page, &wanted)
}
