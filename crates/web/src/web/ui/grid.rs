//! `/grid`: builders (rows) × the last buildsets (columns): what each buildset built on each builder, so a red
//! row is a broken builder and a red column a broken submission; filtered and paged as the waterfall is.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::view::{segment, BuildBox, Frame, Time};
use super::waterfall::select;
use super::{page_view, respond, UiError, Wanted};
use crate::master::Master;
use crate::model::Buildset;
use crate::store::ListQuery;

/// Buildsets (columns) and builders (rows) shown.
const BUILDSETS: i64 = 12;
const ROWS: usize = 40;

/// A column's heading: the buildset and why it was made.
#[derive(Debug, Clone)]
pub(crate) struct BuildsetHead {
    pub id: i64,
    pub reason: String,
    pub submitted: Time,
}

/// A row: a builder and, per buildset, its builds of it.
#[derive(Debug, Clone)]
pub(crate) struct GridRow {
    pub builder: String,
    pub href: String,
    pub cells: Vec<Vec<BuildBox>>,
}

#[derive(Template)]
#[template(path = "grid.html", blocks = ["live"])]
pub(crate) struct GridPage {
    pub frame: Frame,
    pub buildsets: Vec<BuildsetHead>,
    pub rows: Vec<GridRow>,
    pub query: String,
    pub page: usize,
    pub pages: usize,
}
page_view!(GridPage);

pub(super) async fn page(
    State(master): State<Master>,
    Query(pairs): Query<Vec<(String, String)>>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let config = master.config();
    let (shown, page, pages, query) = select(&config, &pairs, ROWS);
    let mut list = ListQuery::<Buildset>::new();
    list.order_by("bsid", true).map_err(|e| UiError::BadRequest(e.to_string()))?.page(Some(BUILDSETS), 0);
    let buildsets = master.store().list(&list).await?.items;
    let bsids: Vec<i64> = buildsets.iter().map(|b| b.id).collect();
    let builds = master.store().buildset_builds(&bsids).await?;
    let rows = shown
        .iter()
        .map(|def| {
            let id = master.builder_id(&def.name);
            let cells = bsids
                .iter()
                .map(|bsid| {
                    builds
                        .iter()
                        .filter(|(s, b)| s == bsid && Some(b.builderid) == id)
                        .map(|(_, b)| BuildBox::new(&def.name, b))
                        .collect()
                })
                .collect();
            GridRow { builder: def.name.clone(), href: format!("/builders/{}", segment(&def.name)), cells }
        })
        .collect();
    let page = GridPage {
        frame: Frame::new(&master, "Grid", "grid").live(&["builds/*/new", "builds/*/finished", "buildsets/*/*"]),
        buildsets: buildsets
            .iter()
            .map(|b| BuildsetHead { id: b.id, reason: b.reason.clone(), submitted: Time::at(b.submitted_at) })
            .collect(),
        rows,
        query,
        page,
        pages,
    };
    respond(page, &wanted)
}
