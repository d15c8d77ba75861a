//! `/requests`: the requests waiting in the queue, in the order they are served, with why each waits and a
//! cancel button; `/requests/{id}`: where request `id` is now (its latest build, else its builder's page at the
//! request), the link a force form gives.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::home::{queue, Queued};
use super::view::{build_href, segment, Frame, Names};
use super::{page_view, respond, UiError, Wanted};
use crate::master::Master;
use crate::model::Build;
use crate::store::{FilterValue, ListQuery, Op};

/// Requests shown at most (the page stays under 50 KB).
const MAX_ROWS: usize = 200;

#[derive(Template)]
#[template(path = "requests.html", blocks = ["live"])]
pub(crate) struct RequestsPage {
    pub frame: Frame,
    pub requests: Vec<Queued>,
    pub total: usize,
}
page_view!(RequestsPage);

pub(super) async fn page(State(master): State<Master>, wanted: Wanted) -> Result<Response, UiError> {
    let mut requests = queue(&master, None).await?;
    let total = requests.len();
    requests.truncate(MAX_ROWS);
    let page = RequestsPage {
        frame: Frame::new(&master, "Pending requests", "requests").live(&["buildrequests/*/*", "workers/*/*"]),
        requests,
        total,
    };
    respond(page, &wanted)
}

/// `GET /requests/{id}`: to the request's latest build, else to its builder's page where it waits.
pub(super) async fn one(State(master): State<Master>, Path(id): Path<String>) -> Result<Response, UiError> {
    let brid: i64 = id.parse().map_err(|_| UiError::NotFound(format!("no build request '{id}'")))?;
    let request = master
        .store()
        .build_request(brid)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no build request {brid}")))?;
    let builder = Names::of(&master).builder(request.builderid);
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut query = ListQuery::<Build>::new();
    query
        .filter("buildrequestid", Op::Eq, vec![FilterValue::Int(brid)])
        .map_err(bad)?
        .order_by("number", true)
        .map_err(bad)?
        .page(Some(1), 0);
    let to = match master.store().list(&query).await?.items.first() {
        Some(build) => build_href(&builder, build.number),
        None => format!("/builders/{}#request-{brid}", segment(&builder)),
    };
    Ok(Redirect::to(&to).into_response())
}
