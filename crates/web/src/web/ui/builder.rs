//! `/builders/{name}`: a builder's builds paged over any history (`?before=N`: the builds numbered below N,
//! keyset paging on the `(builderid, number)` index, so page 20,000 costs what page 1 does), its running builds,
//! its pending requests with why each waits, the schedulers that feed it, and the force forms of its force
//! schedulers, generated from their typed parameters.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::home::{queue, running, Queued, Running};
use super::schedulers::{schedulers, SchedulerInfo};
use super::view::{now_utc, segment, BuildRow, Frame, Names, Outcome};
use super::{page_view, respond, UiError, Wanted};
use crate::config::BuilderDef;
use crate::config::ParameterType;
use crate::master::Master;
use crate::model::Build;
use crate::store::{FilterValue, ListQuery, Op};

/// Builds per page.
pub(super) const PAGE: i64 = 50;

/// A field of a force form.
#[derive(Debug, Clone)]
pub(crate) struct FormField {
    /// The JSON-RPC parameter it sets.
    pub name: String,
    pub id: String,
    pub label: String,
    /// `text`, `textarea`, `number`, `checkbox` or `select`.
    pub input: &'static str,
    pub value: String,
    pub checked: bool,
    pub required: bool,
    pub pattern: String,
    pub choices: Vec<String>,
}

/// A force scheduler's form.
#[derive(Debug, Clone)]
pub(crate) struct ForceForm {
    pub scheduler: String,
    pub label: String,
    pub fields: Vec<FormField>,
}

fn text_field(form: &str, name: &str, label: &str, value: &str) -> FormField {
    FormField {
        name: name.into(),
        id: format!("f-{form}-{name}"),
        label: label.into(),
        input: "text",
        value: value.into(),
        checked: false,
        required: false,
        pattern: String::new(),
        choices: Vec::new(),
    }
}

/// The force forms for `builder`: reason, owner, branch and revision, then each typed parameter.
pub(crate) fn force_forms(master: &Master, builder: &str) -> Vec<ForceForm> {
    master
        .config()
        .force_schedulers
        .iter()
        .filter(|s| s.builders.iter().any(|b| b == builder))
        .map(|s| {
            let form = segment(&s.name);
            let mut fields = vec![
                text_field(&form, "reason", "Reason", &s.reason),
                text_field(&form, "owner", "Your name", ""),
                text_field(&form, "branch", "Branch", ""),
                text_field(&form, "revision", "Revision", ""),
            ];
            for p in &s.parameters {
                let mut field = text_field(&form, &p.name, &p.label, "");
                field.required = p.required;
                field.pattern = p.regex.clone().unwrap_or_default();
                let default = &p.default;
                match p.kind {
                    ParameterType::String => field.value = default.as_str().unwrap_or("").into(),
                    ParameterType::Text => {
                        field.input = "textarea";
                        field.value = default.as_str().unwrap_or("").into();
                    }
                    ParameterType::Int => {
                        field.input = "number";
                        field.value = default.as_i64().map(|i| i.to_string()).unwrap_or_default();
                    }
                    ParameterType::Bool => {
                        field.input = "checkbox";
                        field.checked = default.as_bool().unwrap_or(false);
                    }
                    ParameterType::Choice => {
                        field.input = "select";
                        field.value = default.as_str().unwrap_or("").into();
                        field.choices = p.choices.clone();
                    }
                }
                fields.push(field);
            }
            ForceForm { scheduler: s.name.clone(), label: s.label.clone(), fields }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "builder.html", blocks = ["live"])]
pub(crate) struct BuilderPage {
    pub frame: Frame,
    pub name: String,
    pub href: String,
    pub description: String,
    pub tags: Vec<String>,
    pub workers: Vec<String>,
    pub builds: Vec<BuildRow>,
    /// `?before=N` of the next (older) page, if there is one.
    pub older: Option<String>,
    /// Whether this is not the newest page.
    pub paged: bool,
    pub running: Vec<Running>,
    pub pending: Vec<Queued>,
    pub schedulers: Vec<SchedulerInfo>,
    /// Whether the schedulers' table shows enable/disable buttons (only the schedulers page does).
    pub can_switch: bool,
    pub forms: Vec<ForceForm>,
}
page_view!(BuilderPage);

#[derive(Debug, Deserialize)]
pub(super) struct Paging {
    before: Option<String>,
}

/// The builder named `name`, with its store id.
pub(super) fn find(master: &Master, name: &str) -> Result<(BuilderDef, i64), UiError> {
    master
        .config()
        .builders
        .iter()
        .find(|b| b.name == name)
        .and_then(|b| master.builder_id(&b.name).map(|id| (b.clone(), id)))
        .ok_or_else(|| UiError::NotFound(format!("no builder '{name}'")))
}

pub(super) async fn page(
    State(master): State<Master>,
    Path(name): Path<String>,
    Query(paging): Query<Paging>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let (def, id) = find(&master, &name)?;
    let before = match paging.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(text) => Some(
            text.parse::<i64>().map_err(|_| UiError::BadRequest(format!("before={text}: expected a build number")))?,
        ),
    };
    let mut query = ListQuery::<Build>::new();
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    query.filter("builderid", Op::Eq, vec![FilterValue::Int(id)]).map_err(bad)?;
    if let Some(before) = before {
        query.filter("number", Op::Lt, vec![FilterValue::Int(before)]).map_err(bad)?;
    }
    query.order_by("number", true).map_err(bad)?.page(Some(PAGE), 0);
    let builds = master.store().list(&query).await?.items;
    let names = Names::of(&master).with_workers(&master).await?;
    let older = match builds.last() {
        Some(last) if builds.len() as i64 == PAGE && last.number > 1 => Some(format!("?before={}", last.number)),
        _ => None,
    };
    let last = builds.iter().find(|b| b.complete_at.is_some()).map_or(Outcome::NONE, |b| Outcome::of(b.results));
    let patterns = [format!("builders/{id}/builds/*/*"), "buildrequests/*/*".into(), "workers/*/*".into()];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let page = BuilderPage {
        frame: Frame::new(&master, def.name.clone(), "builders").live(&patterns).showing(&last),
        name: def.name.clone(),
        href: format!("/builders/{}", segment(&def.name)),
        description: def.description.clone().unwrap_or_default(),
        tags: def.tags.clone(),
        workers: def.workers.clone(),
        builds: builds.iter().map(|b| names.row(b)).collect(),
        older,
        paged: before.is_some(),
        running: running(&master, &names, Some(id)).await?,
        pending: queue(&master, Some(&def.name)).await?,
        schedulers: schedulers(&master, Some(&def.name), now_utc(), &master.store().disabled_schedulers().await?),
        can_switch: false,
        forms: force_forms(&master, &def.name),
    };
    respond(page, &wanted)
}
