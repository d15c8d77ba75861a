//! `/requests`: the requests waiting in the queue, in the order they are served, with why each waits and a
//! cancel button.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::home::{queue, Queued};
use super::view::Frame;
use super::{page_view, respond, UiError, Wanted};
use crate::master::Master;

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
    respond(&page, &wanted)
}
