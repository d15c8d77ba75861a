//! `/badges/{builder}.svg`: a status badge for READMEs (as Buildbot's badges plugin, without native
//! dependencies): the builder's last finished build's result, in words and colour. `?label=TEXT` changes the left
//! part (default `build`).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::builder::find;
use super::view::Outcome;
use super::UiError;
use crate::master::Master;
use crate::model::Build;
use crate::store::{FilterValue, ListQuery, Op};

#[derive(Debug, Deserialize)]
pub(super) struct BadgeQuery {
    label: Option<String>,
}

/// Escapes text for XML.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The badge's colour for a result class.
fn colour(class: &str) -> &'static str {
    match class {
        "success" => "#2e7d32",
        "warnings" => "#b26a00",
        "failure" => "#c62828",
        "exception" => "#8e24aa",
        "running" => "#1565c0",
        _ => "#616161",
    }
}

/// A two-part badge: `label` on grey, `value` on `fill`; widths from a 7 px average character.
pub(crate) fn svg(label: &str, value: &str, fill: &str) -> String {
    let width = |text: &str| 10 + 7 * text.chars().count();
    let (left, right) = (width(label), width(value));
    let total = left + right;
    let (label, value) = (xml(label), xml(value));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" \
         aria-label=\"{label}: {value}\"><title>{label}: {value}</title>\
         <rect width=\"{left}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{left}\" width=\"{right}\" height=\"20\" fill=\"{fill}\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
         <text x=\"{}\" y=\"14\">{label}</text><text x=\"{}\" y=\"14\">{value}</text></g></svg>",
        left / 2,
        left + right / 2
    )
}

pub(super) async fn badge(
    State(master): State<Master>,
    Path(file): Path<String>,
    Query(query): Query<BadgeQuery>,
) -> Result<Response, UiError> {
    let name = file
        .strip_suffix(".svg")
        .ok_or_else(|| UiError::NotFound(format!("no badge '{file}': badges are /badges/BUILDER.svg")))?;
    let (_, builderid) = find(&master, name)?;
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut list = ListQuery::<Build>::new();
    list.filter("builderid", Op::Eq, vec![FilterValue::Int(builderid)])
        .map_err(bad)?
        .filter("complete", Op::Eq, vec![FilterValue::Bool(true)])
        .map_err(bad)?
        .order_by("number", true)
        .map_err(bad)?
        .page(Some(1), 0);
    let last = master.store().list(&list).await?.items.into_iter().next();
    let outcome = last.map_or(Outcome::NONE, |b| Outcome::of(b.results));
    let label = query.label.filter(|l| !l.is_empty()).unwrap_or_else(|| "build".into());
    let label: String = label.chars().take(40).collect();
    let body = svg(&label, outcome.word, colour(outcome.class));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response())
}
