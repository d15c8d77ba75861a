//! `/waterfall`: builders side by side, each with its last builds top down (newest on top), with when each
//! started and how long it took; filtered by tag and name as `/builders` is, and paged over the builders
//! (`?page=N`) so that a page stays small however many builders there are.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::builders::{summaries, BuilderSummary, Filter};
use super::view::{BuildBox, Frame, Time};
use super::{page_view, respond, UiError, Wanted};
use crate::config::BuilderDef;
use crate::master::Master;
use crate::model::Build;

/// Builders per page, and builds per builder.
const COLUMNS: usize = 20;
const ROWS: i64 = 8;

/// A column: a builder and its builds with their start times.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub builder: BuilderSummary,
    /// Its builds, newest first, with their start.
    pub cells: Vec<(BuildBox, Time)>,
}

#[derive(Template)]
#[template(path = "waterfall.html", blocks = ["live"])]
pub(crate) struct WaterfallPage {
    pub frame: Frame,
    pub columns: Vec<Column>,
    pub query: String,
    pub page: usize,
    pub pages: usize,
}
page_view!(WaterfallPage);

/// The builders `pairs` select (`tag`, `name`), the page of them asked (`page`, from 1), and the page count.
pub(crate) fn select<'m>(
    config: &'m crate::config::MasterConfig,
    pairs: &[(String, String)],
    per_page: usize,
) -> (Vec<&'m BuilderDef>, usize, usize, String) {
    let filter = Filter::from_query(pairs);
    let kept: Vec<&BuilderDef> = config.builders.iter().filter(|b| filter.keeps(b)).collect();
    let pages = kept.len().div_ceil(per_page).max(1);
    let page =
        pairs.iter().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse::<usize>().ok()).unwrap_or(1).clamp(1, pages);
    let shown = kept.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut query: Vec<String> = filter.tags.iter().map(|t| format!("tag={}", super::view::segment(t))).collect();
    if !filter.name.is_empty() {
        query.push(format!("name={}", super::view::segment(&filter.name)));
    }
    (shown, page, pages, query.join("&"))
}

pub(super) async fn page(
    State(master): State<Master>,
    Query(pairs): Query<Vec<(String, String)>>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let config = master.config();
    let (shown, page, pages, query) = select(&config, &pairs, COLUMNS);
    let ids: Vec<i64> = shown.iter().filter_map(|b| master.builder_id(&b.name)).collect();
    let builds: Vec<Build> = master.store().recent_builds(&ids, ROWS).await?;
    let columns = summaries(&master, &shown, ROWS)
        .await?
        .into_iter()
        .map(|builder| {
            let id = master.builder_id(&builder.name);
            let cells = builds
                .iter()
                .filter(|b| Some(b.builderid) == id)
                .map(|b| (BuildBox::new(&builder.name, b), Time::at(b.started_at)))
                .collect();
            Column { builder, cells }
        })
        .collect();
    let page = WaterfallPage {
        frame: Frame::new(&master, "Waterfall", "waterfall").live(&["builds/*/new", "builds/*/finished"]),
        columns,
        query,
        page,
        pages,
    };
    respond(&page, &wanted)
}
