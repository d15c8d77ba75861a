//! `/about`: Kiln's version, the master's name and directory, its config file, its store, and where the API is.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::view::Frame;
use super::{page_view, respond, UiError, Wanted};
use crate::config::StoreUrl;
use crate::master::Master;

#[derive(Template)]
#[template(path = "about.html", blocks = ["live"])]
pub(crate) struct AboutPage {
    pub frame: Frame,
    pub version: &'static str,
    pub master: String,
    pub config_file: String,
    pub store: String,
    pub url: String,
    pub builders: usize,
    pub workers: usize,
    pub schedulers: usize,
}
page_view!(AboutPage);

pub(super) async fn page(State(master): State<Master>, wanted: Wanted) -> Result<Response, UiError> {
    let config = master.config();
    let page = AboutPage {
        frame: Frame::new(&master, "About", "about"),
        version: env!("CARGO_PKG_VERSION"),
        master: master.name().to_string(),
        config_file: master.dir().join("master.toml").display().to_string(),
        store: match &config.store.url {
            StoreUrl::Sqlite { .. } => config.store.url.to_string(),
            // Its URL may carry a password.
            StoreUrl::Postgres { .. } => "a PostgreSQL database".into(),
        },
        url: config.url.clone(),
        builders: config.builders.len(),
        workers: config.workers.len(),
        schedulers: config.timed_schedulers.len()
            + config.change_schedulers.len()
            + config.triggerable_schedulers.len()
            + config.dependent_schedulers.len()
            + config.force_schedulers.len(),
    };
    respond(page, &wanted)
}
