//! `/waterfall`: builders side by side on one time axis, as Buildbot's waterfall: each builder a column, each of
//! its last builds a block placed by its start and end (newest on top), concurrent builds side by side; the idle
//! stretches between builds are cut short (a marked gap saying how long), so that the builds themselves get the
//! height. Drawn as SVG with attributes (the page has no inline style); filtered by tag and name as `/builders`
//! is, and paged over the builders (`?page=N`) so that a page stays small however many builders there are.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

use super::builders::{summaries, BuilderSummary, Filter};
use super::view::{duration, now, BuildBox, Frame};
use super::{page_view, respond, UiError, Wanted};
use crate::config::BuilderDef;
use crate::master::Master;
use crate::model::Build;

/// Builders per page, and builds per builder.
const COLUMNS: usize = 20;
const ROWS: i64 = 8;
/// The drawing: the time axis's width on the left, each column's width, the header's height, the plot's height.
const AXIS: i64 = 84;
const COLUMN: i64 = 112;
const HEAD: i64 = 28;
const PLOT: i64 = 560;
/// The shortest block drawn (a build of a second is still a box one can click), and a cut idle stretch's height.
const MIN_HEIGHT: i64 = 18;
const GAP: i64 = 16;
/// At most this many builds side by side in a column.
const LANES: usize = 3;

/// A build placed on the drawing.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub cell: BuildBox,
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
}

/// An idle stretch cut short, at height `y`.
#[derive(Debug, Clone)]
pub(crate) struct Gap {
    pub y: i64,
    pub text: String,
}

/// A time on the axis: the end of a stretch when something ran, `HH:MM` UTC (the block's tooltip says more).
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    pub y: i64,
    pub text: String,
}

/// A column: a builder, and where its header is.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub builder: BuilderSummary,
    pub x: i64,
    /// The name as the header shows it (shortened to fit).
    pub label: String,
}

#[derive(Template)]
#[template(path = "waterfall.html", blocks = ["live"])]
pub(crate) struct WaterfallPage {
    pub frame: Frame,
    pub columns: Vec<Column>,
    pub blocks: Vec<Block>,
    pub gaps: Vec<Gap>,
    pub ticks: Vec<Tick>,
    pub width: i64,
    pub height: i64,
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

/// The time axis: the stretches when something ran (merged intervals, newest first), each drawn at `k` pixels
/// a second, the idle stretches between them cut to `gap` pixels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    /// (start, end, y of the end): newest first.
    spans: Vec<(i64, i64, f64)>,
    k: f64,
    gap: f64,
}

impl Axis {
    /// The axis for `intervals` (start, end) over `height` pixels.
    pub fn new(intervals: &[(i64, i64)], height: i64) -> Axis {
        let mut sorted: Vec<(i64, i64)> = intervals.iter().map(|&(s, e)| (s, e.max(s))).collect();
        sorted.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (s, e) in sorted {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged.reverse();
        let gaps = merged.len().saturating_sub(1) as f64;
        let height = height as f64;
        let gap = if gaps > 0.0 { (GAP as f64).min(height * 0.3 / gaps) } else { 0.0 };
        let active: i64 = merged.iter().map(|(s, e)| e - s).sum();
        let k = if active > 0 { (height - gap * gaps).max(0.0) / active as f64 } else { 0.0 };
        let mut y = 0.0;
        let mut spans = Vec::with_capacity(merged.len());
        for (i, (s, e)) in merged.into_iter().enumerate() {
            if i > 0 {
                y += gap;
            }
            spans.push((s, e, y));
            y += (e - s) as f64 * k;
        }
        Axis { spans, k, gap }
    }

    /// The height of instant `t` (0 at the newest end).
    pub fn y(&self, t: i64) -> f64 {
        for &(s, e, top) in &self.spans {
            if t >= s {
                return top + (e - t.min(e)) as f64 * self.k;
            }
        }
        self.spans.last().map_or(0.0, |&(s, e, top)| top + (e - s) as f64 * self.k)
    }

    /// The idle stretches cut short: their height (the middle of the cut) and how long each was.
    pub fn gaps(&self) -> Vec<(f64, i64)> {
        self.spans
            .windows(2)
            .map(|w| {
                let (newer, older) = (w[0], w[1]);
                (newer.2 + (newer.1 - newer.0) as f64 * self.k + self.gap / 2.0, newer.0 - older.1)
            })
            .collect()
    }

    /// The start and end of each stretch with its height, for the axis's labels.
    pub fn ends(&self) -> Vec<(i64, f64)> {
        self.spans.iter().map(|&(_, e, top)| (e, top)).collect()
    }
}

/// Lanes for `builds` (start, end) of one column: each goes in the first lane free at its start.
pub(crate) fn lanes(builds: &[(i64, i64)]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..builds.len()).collect();
    order.sort_by_key(|&i| builds[i].0);
    let mut free_at: Vec<i64> = Vec::new();
    let mut lane = vec![0; builds.len()];
    for i in order {
        let (s, e) = builds[i];
        let found = free_at.iter().position(|&f| f <= s);
        let l = match found {
            Some(l) => l,
            None if free_at.len() < LANES => {
                free_at.push(i64::MIN);
                free_at.len() - 1
            }
            None => free_at.iter().enumerate().min_by_key(|(_, f)| **f).map_or(0, |(l, _)| l),
        };
        free_at[l] = e.max(s + 1);
        lane[i] = l;
    }
    let count = free_at.len().max(1);
    (lane, count)
}

/// A builder's name shortened to fit its column's header.
fn label(name: &str) -> String {
    const MAX: usize = 15;
    if name.chars().count() <= MAX {
        return name.to_string();
    }
    let mut short: String = name.chars().take(MAX - 1).collect();
    short.push('…');
    short
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
    let now = now();
    let span = |b: &Build| (b.started_at, b.complete_at.unwrap_or(now).max(b.started_at));
    let axis = Axis::new(&builds.iter().map(span).collect::<Vec<_>>(), PLOT);
    let builders = summaries(&master, &shown, 1).await?;
    let mut columns = Vec::with_capacity(builders.len());
    let mut blocks = Vec::with_capacity(builds.len());
    for (i, builder) in builders.into_iter().enumerate() {
        let x = AXIS + i as i64 * COLUMN;
        let id = master.builder_id(&builder.name);
        let mine: Vec<&Build> = builds.iter().filter(|b| Some(b.builderid) == id).collect();
        let (lane, count) = lanes(&mine.iter().map(|b| span(b)).collect::<Vec<_>>());
        let width = (COLUMN - 8) / count as i64;
        for (b, l) in mine.iter().zip(lane) {
            let (s, e) = span(b);
            let top = HEAD + axis.y(e).round() as i64;
            let height = ((axis.y(s) - axis.y(e)).round() as i64).max(MIN_HEIGHT);
            blocks.push(Block {
                cell: BuildBox::new(&builder.name, b),
                x: x + 4 + l as i64 * width,
                y: top,
                width: width - 2,
                height,
            });
        }
        columns.push(Column { label: label(&builder.name), builder, x });
    }
    let gaps = axis
        .gaps()
        .into_iter()
        .map(|(y, idle)| Gap { y: HEAD + y.round() as i64, text: format!("{} idle", duration(idle)) })
        .collect();
    let ticks = axis
        .ends()
        .into_iter()
        .map(|(t, y)| Tick {
            y: HEAD + y.round() as i64 + 10,
            text: chrono::DateTime::from_timestamp(t, 0)
                .map_or_else(String::new, |t| t.format("%H:%M UTC").to_string()),
        })
        .collect();
    let bottom = blocks.iter().map(|b| b.y + b.height).max().unwrap_or(HEAD);
    let page = WaterfallPage {
        frame: Frame::new(&master, "Waterfall", "waterfall").live(&["builds/*/new", "builds/*/finished"]),
        width: AXIS + columns.len().max(1) as i64 * COLUMN,
        height: bottom.max(HEAD + MIN_HEIGHT) + 8,
        columns,
        blocks,
        gaps,
        ticks,
        query,
        page,
        pages,
    };
    respond(page, &wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_placed_by_time_with_idle_stretches_cut() {
        // Two builds of 100 s, an hour apart: each gets half the height less the gap, the hour is a gap.
        let axis = Axis::new(&[(0, 100), (3700, 3800)], 216);
        assert_eq!(axis.y(3800), 0.0, "the newest end at the top");
        assert_eq!(axis.y(3700), 100.0);
        assert_eq!(axis.y(100), 116.0, "then the cut gap of 16 px");
        assert_eq!(axis.y(0), 216.0);
        assert_eq!(axis.gaps(), vec![(108.0, 3600)]);
        // Overlapping builds share a stretch: no gap between them.
        let axis = Axis::new(&[(0, 100), (50, 150)], 150);
        assert!(axis.gaps().is_empty());
        assert_eq!(axis.y(150), 0.0);
        assert_eq!(axis.y(0), 150.0);
    }

    #[test]
    fn concurrent_builds_go_side_by_side() {
        let (lane, count) = lanes(&[(0, 10), (5, 15), (10, 20), (30, 40)]);
        assert_eq!(lane, vec![0, 1, 0, 0]);
        assert_eq!(count, 2);
    }
}
