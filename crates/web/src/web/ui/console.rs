//! `/console`: changes (rows, newest first) × builders (columns): which builds each change got and how they
//! ended — the view for "which commit broke it"; filtered and paged over the builders as the waterfall is.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::build::ChangeView;
use super::view::{segment, BuildBox, Frame};
use super::waterfall::select;
use super::{page_view, respond, UiError, Wanted};
use crate::master::Master;
use crate::model::Change;
use crate::store::ListQuery;

/// Changes (rows) and builders (columns) shown.
const CHANGES: i64 = 20;
const COLUMNS: usize = 30;

/// A builder column's heading.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub name: String,
    pub href: String,
}

/// A change and its builds per builder.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleRow {
    pub change: ChangeView,
    /// The first line of its comments.
    pub title: String,
    pub cells: Vec<Vec<BuildBox>>,
}

#[derive(Template)]
#[template(path = "console.html", blocks = ["live"])]
pub(crate) struct ConsolePage {
    pub frame: Frame,
    pub builders: Vec<Head>,
    pub rows: Vec<ConsoleRow>,
    pub query: String,
    pub page: usize,
    pub pages: usize,
}
page_view!(ConsolePage);

pub(super) async fn page(
    State(master): State<Master>,
    Query(pairs): Query<Vec<(String, String)>>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let config = master.config();
    let (shown, page, pages, query) = select(&config, &pairs, COLUMNS);
    let mut list = ListQuery::<Change>::new();
    list.order_by("changeid", true).map_err(|e| UiError::BadRequest(e.to_string()))?.page(Some(CHANGES), 0);
    let changes = master.store().list(&list).await?.items;
    let ids: Vec<i64> = changes.iter().map(|c| c.id).collect();
    let builds = master.store().change_builds(&ids).await?;
    let builder_ids: Vec<Option<i64>> = shown.iter().map(|d| master.builder_id(&d.name)).collect();
    let rows = changes
        .iter()
        .map(|change| {
            let cells = shown
                .iter()
                .zip(&builder_ids)
                .map(|(def, id)| {
                    builds
                        .iter()
                        .filter(|(c, b)| *c == change.id && Some(b.builderid) == *id)
                        .map(|(_, b)| BuildBox::new(&def.name, b))
                        .collect()
                })
                .collect();
            ConsoleRow {
                change: ChangeView::of(change),
                title: change.comments.lines().next().unwrap_or("").chars().take(80).collect(),
                cells,
            }
        })
        .collect();
    let page = ConsolePage {
        frame: Frame::new(&master, "Console", "console").live(&["builds/*/new", "builds/*/finished", "changes/*/*"]),
        builders: shown
            .iter()
            .map(|d| Head { name: d.name.clone(), href: format!("/builders/{}", segment(&d.name)) })
            .collect(),
        rows,
        query,
        page,
        pages,
    };
    respond(page, &wanted)
}
