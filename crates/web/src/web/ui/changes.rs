//! `/changes` (newest first, paged with `?before=ID`) and `/changes/{id}`: author, branch, revision (linked when
//! the change has a revlink), comments, files, and the builds each change started.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::build::ChangeView;
use super::view::{BuildRow, Frame, Names};
use super::{page_view, respond, UiError, Wanted};
use crate::master::Master;
use crate::model::Change;
use crate::store::{FilterValue, ListQuery, Op};

/// Changes per page.
const PAGE: i64 = 30;

#[derive(Template)]
#[template(path = "changes.html", blocks = ["live"])]
pub(crate) struct ChangesPage {
    pub frame: Frame,
    pub changes: Vec<ChangeView>,
    pub older: Option<String>,
    pub paged: bool,
}
page_view!(ChangesPage);

#[derive(Template)]
#[template(path = "change.html", blocks = ["live"])]
pub(crate) struct ChangePage {
    pub frame: Frame,
    pub changes: Vec<ChangeView>,
    pub repository: String,
    pub project: String,
    pub codebase: String,
    pub builds: Vec<BuildRow>,
}
page_view!(ChangePage);

#[derive(Debug, Deserialize)]
pub(super) struct Paging {
    before: Option<String>,
}

pub(super) async fn list(
    State(master): State<Master>,
    Query(paging): Query<Paging>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let before = match paging.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(text) => {
            Some(text.parse::<i64>().map_err(|_| UiError::BadRequest(format!("before={text}: expected a change id")))?)
        }
    };
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut query = ListQuery::<Change>::new();
    if let Some(before) = before {
        query.filter("changeid", Op::Lt, vec![FilterValue::Int(before)]).map_err(bad)?;
    }
    query.order_by("changeid", true).map_err(bad)?.page(Some(PAGE), 0);
    let changes = master.store().list(&query).await?.items;
    let older = match changes.last() {
        Some(last) if changes.len() as i64 == PAGE => Some(format!("?before={}", last.id)),
        _ => None,
    };
    let page = ChangesPage {
        frame: Frame::new(&master, "Changes", "changes").live(&["changes/*/*"]),
        changes: changes.iter().map(ChangeView::of).collect(),
        older,
        paged: before.is_some(),
    };
    respond(page, &wanted)
}

pub(super) async fn page(
    State(master): State<Master>,
    Path(id): Path<String>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let id: i64 = id.parse().map_err(|_| UiError::NotFound(format!("no change '{id}'")))?;
    let change = master.store().change(id).await?.ok_or_else(|| UiError::NotFound(format!("no change {id}")))?;
    let names = Names::of(&master).with_workers(&master).await?;
    let builds = master.store().change_builds(&[id]).await?.iter().map(|(_, b)| names.row(b)).collect();
    let page = ChangePage {
        frame: Frame::new(&master, format!("Change {id}"), "changes").live(&["builds/*/new", "builds/*/finished"]),
        changes: vec![ChangeView::of(&change)],
        repository: change.repository.clone(),
        project: change.project.clone(),
        codebase: change.codebase.clone(),
        builds,
    };
    respond(page, &wanted)
}
