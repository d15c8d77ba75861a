//! `/builders`: every builder with its recent builds as boxes (a symbol and the number in the box, the result in
//! words in its label), its tags and workers; `?tag=T` (repeatable: all of them) and `?name=TEXT` (part of the
//! name) filter, so 3 branches × 30 plugins × 2 modes still read as one list.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::view::{segment, BuildBox, Frame, Outcome};
use super::{page_view, respond, UiError, Wanted};
use crate::config::BuilderDef;
use crate::master::Master;

/// Builds shown per builder on `/builders`.
const BOXES: i64 = 12;
/// At most this many builders on a page (the page stays under 50 KB); the filter narrows them.
pub(super) const MAX_BUILDERS: usize = 150;

/// A builder with its last builds.
#[derive(Debug, Clone)]
pub(crate) struct BuilderSummary {
    pub name: String,
    pub href: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Newest first.
    pub boxes: Vec<BuildBox>,
    /// The last finished build's outcome (or none yet).
    pub last: Outcome,
}

/// The summaries of `builders` with their last `per_builder` builds, read in one statement.
pub(crate) async fn summaries(
    master: &Master,
    builders: &[&BuilderDef],
    per_builder: i64,
) -> Result<Vec<BuilderSummary>, UiError> {
    let ids: Vec<i64> = builders.iter().filter_map(|b| master.builder_id(&b.name)).collect();
    let recent = master.store().recent_builds(&ids, per_builder).await?;
    Ok(builders
        .iter()
        .map(|def| {
            let id = master.builder_id(&def.name);
            let builds: Vec<_> = recent.iter().filter(|b| Some(b.builderid) == id).collect();
            let last =
                builds.iter().find(|b| b.complete_at.is_some()).map_or(Outcome::NONE, |b| Outcome::of(b.results));
            BuilderSummary {
                name: def.name.clone(),
                href: format!("/builders/{}", segment(&def.name)),
                description: def.description.clone().unwrap_or_default(),
                tags: def.tags.clone(),
                boxes: builds.iter().map(|b| BuildBox::new(&def.name, b)).collect(),
                last,
            }
        })
        .collect())
}

/// A tag to filter by, and whether it is on.
#[derive(Debug, Clone)]
pub(crate) struct TagLink {
    pub tag: String,
    pub href: String,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "builders.html", blocks = ["live"])]
pub(crate) struct BuildersPage {
    pub frame: Frame,
    pub name: String,
    /// Whether a filter is on.
    pub filtered: bool,
    pub tags: Vec<TagLink>,
    pub builders: Vec<BuilderSummary>,
    /// How many builders match the filter (more than shown when capped).
    pub matching: usize,
    pub total: usize,
}
page_view!(BuildersPage);

/// What the filter asks.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub tags: Vec<String>,
    pub name: String,
}

impl Filter {
    pub fn from_query(pairs: &[(String, String)]) -> Filter {
        let mut filter = Filter::default();
        for (key, value) in pairs {
            match key.as_str() {
                "tag" if !value.is_empty() => filter.tags.push(value.clone()),
                "name" => filter.name = value.trim().to_string(),
                _ => {}
            }
        }
        filter
    }

    pub fn keeps(&self, def: &BuilderDef) -> bool {
        let name = self.name.to_lowercase();
        self.tags.iter().all(|t| def.tags.contains(t)) && (name.is_empty() || def.name.to_lowercase().contains(&name))
    }

    /// The query string of this filter with `tag` toggled.
    fn toggled(&self, tag: &str) -> String {
        let mut tags: Vec<&str> = self.tags.iter().map(String::as_str).filter(|t| *t != tag).collect();
        if !self.tags.iter().any(|t| t == tag) {
            tags.push(tag);
        }
        let mut parts: Vec<String> = tags.iter().map(|t| format!("tag={}", segment(t))).collect();
        if !self.name.is_empty() {
            parts.push(format!("name={}", segment(&self.name)));
        }
        if parts.is_empty() {
            "/builders".into()
        } else {
            format!("/builders?{}", parts.join("&"))
        }
    }
}

pub(super) async fn page(
    State(master): State<Master>,
    Query(pairs): Query<Vec<(String, String)>>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let filter = Filter::from_query(&pairs);
    let config = master.config();
    let mut all_tags: Vec<&String> = config.builders.iter().flat_map(|b| &b.tags).collect();
    all_tags.sort();
    all_tags.dedup();
    let tags = all_tags
        .into_iter()
        .map(|t| TagLink { tag: t.clone(), href: filter.toggled(t), on: filter.tags.contains(t) })
        .collect();
    let kept: Vec<&BuilderDef> = config.builders.iter().filter(|b| filter.keeps(b)).collect();
    let matching = kept.len();
    let shown: Vec<&BuilderDef> = kept.into_iter().take(MAX_BUILDERS).collect();
    let builders = summaries(&master, &shown, BOXES).await?;
    let page = BuildersPage {
        frame: Frame::new(&master, "Builders", "builders").live(&["builds/*/new", "builds/*/finished"]),
        name: filter.name.clone(),
        filtered: !filter.name.is_empty() || !filter.tags.is_empty(),
        tags,
        builders,
        matching,
        total: config.builders.len(),
    };
    respond(page, &wanted)
}
