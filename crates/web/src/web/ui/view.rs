//! What every page is made of: the frame around it (`layout.html`), and the small values templates show —
//! a result as a class, a symbol and a word (never by colour alone), times, durations, links.

use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};

use super::assets::asset_url;
use crate::master::Master;
use crate::model::{Build, Results};

/// The frame of a page (`layout.html`): its title, favicon, assets, the events that refresh its live block,
/// and the navigation. A page's template `{% extends "layout.html" %}` and its struct has a `frame` field.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The master's title (`title` in `master.toml`).
    pub site: String,
    /// The page's own title.
    pub title: String,
    /// The favicon: the page's result, or Kiln's.
    pub favicon: String,
    pub css: String,
    pub live_js: String,
    pub actions_js: String,
    /// The CSRF token actions must send as `X-Kiln-CSRF`, when the session has one.
    pub csrf: Option<String>,
    /// The routing-key patterns whose events refresh the live block, space-separated; empty: not live.
    pub events: String,
    /// Which entry of the navigation is this page's.
    pub nav: &'static str,
    /// Whether anyone can log in to this master (users, an htpasswd file or a proxy).
    pub logins: bool,
    /// Who is logged in, shown in the header; `None` on an error page (the header shows no account).
    pub account: Option<Account>,
}

/// The header's account box: the user's name and a logout button, or a login link back to this page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Account {
    pub user: Option<String>,
    /// Where the login link goes: `/login?next=…`.
    pub login: String,
}

impl Frame {
    /// The frame of a page titled `title` under navigation entry `nav`.
    pub fn new(master: &Master, title: impl Into<String>, nav: &'static str) -> Frame {
        let mut frame = Frame::bare(title);
        let config = master.config();
        frame.site = config.title.clone();
        frame.logins = config.auth.has_users();
        frame.nav = nav;
        frame
    }

    /// Tells the frame who views the page (its header's account box, the CSRF token of the session's actions).
    pub fn account(&mut self, wanted: &super::Wanted) {
        let viewer = wanted.viewer.as_ref();
        self.csrf = viewer.and_then(|v| v.csrf_token()).map(str::to_string);
        let next: String = form_urlencoded::Serializer::new(String::new()).append_pair("next", wanted.path()).finish();
        self.account =
            Some(Account { user: viewer.and_then(|v| v.name()).map(str::to_string), login: format!("/login?{next}") });
    }

    /// A frame without the master's title (an error page).
    pub fn bare(title: impl Into<String>) -> Frame {
        Frame {
            site: "Kiln".into(),
            title: title.into(),
            favicon: asset_url("favicon.svg"),
            css: asset_url("style.css"),
            live_js: asset_url("live.js"),
            actions_js: asset_url("actions.js"),
            csrf: None,
            events: String::new(),
            nav: "",
            logins: false,
            account: None,
        }
    }

    /// Refreshed on events matching `patterns`.
    pub fn live(mut self, patterns: &[&str]) -> Frame {
        self.events = patterns.join(" ");
        self
    }

    /// Shows `outcome` in the favicon and the title.
    pub fn showing(mut self, outcome: &Outcome) -> Frame {
        self.favicon = asset_url(&format!("favicon-{}.svg", outcome.class));
        self.title = format!("{} {}", outcome.symbol, self.title);
        self
    }
}

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub frame: Frame,
    pub status: u16,
    pub message: String,
}

/// A result (or a state without one) as the page shows it: a CSS class, a symbol and a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub class: &'static str,
    pub symbol: &'static str,
    pub word: &'static str,
}

impl Outcome {
    pub const RUNNING: Outcome = Outcome { class: "running", symbol: "◔", word: "running" };
    pub const NONE: Outcome = Outcome { class: "none", symbol: "·", word: "no builds" };

    /// The outcome of a finished thing with result code `results`, else running.
    pub fn of(results: Option<i32>) -> Outcome {
        let Some(code) = results else { return Outcome::RUNNING };
        match Results::from_code(code) {
            Some(Results::Success) => Outcome { class: "success", symbol: "✓", word: "success" },
            Some(Results::Warnings) => Outcome { class: "warnings", symbol: "!", word: "warnings" },
            Some(Results::Failure) => Outcome { class: "failure", symbol: "✗", word: "failure" },
            Some(Results::Skipped) => Outcome { class: "skipped", symbol: "–", word: "skipped" },
            Some(Results::Exception) => Outcome { class: "exception", symbol: "‼", word: "exception" },
            Some(Results::Retry) => Outcome { class: "retry", symbol: "↻", word: "retry" },
            Some(Results::Cancelled) => Outcome { class: "cancelled", symbol: "⊘", word: "cancelled" },
            None => Outcome { class: "exception", symbol: "?", word: "unknown" },
        }
    }

    /// The classes every favicon exists for.
    pub const CLASSES: [&'static str; 10] =
        ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled", "running", "pending", "none"];
}

/// An instant: `<time datetime="ISO">text</time>`, UTC on the server; `live.js` shows it in the reader's zone
/// with a relative text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Time {
    pub iso: String,
    pub text: String,
}

impl Time {
    /// The instant `epoch` (Unix seconds).
    pub fn at(epoch: i64) -> Time {
        match DateTime::<Utc>::from_timestamp(epoch, 0) {
            Some(t) => Time {
                iso: t.to_rfc3339_opts(SecondsFormat::Secs, true),
                text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            },
            None => Time { iso: String::new(), text: epoch.to_string() },
        }
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, as a UTC instant.
pub(crate) fn now_utc() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(now(), 0).unwrap_or_default()
}

/// A duration in seconds as people read it: `45s`, `4m12s`, `2h05m`, `3d4h`.
pub(crate) fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A path segment, percent-encoded (builder and worker names, log slugs).
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A build as a box: a link to its page with its outcome (class, symbol, word) and a tooltip.
#[derive(Debug, Clone)]
pub(crate) struct BuildBox {
    pub href: String,
    pub number: i64,
    pub outcome: Outcome,
    /// `builder #12: failed 'make' (failure), 3 min`: what a tooltip and a screen reader tell.
    pub label: String,
}

/// The page of build `number` of `builder`.
pub(crate) fn build_href(builder: &str, number: i64) -> String {
    format!("/builders/{}/builds/{number}", segment(builder))
}

impl BuildBox {
    pub fn new(builder: &str, build: &Build) -> BuildBox {
        let outcome = Outcome::of(build.results);
        let took = build.complete_at.map(|end| format!(", took {}", duration(end - build.started_at)));
        let state = if build.state_string.is_empty() { outcome.word } else { build.state_string.as_str() };
        BuildBox {
            href: build_href(builder, build.number),
            number: build.number,
            outcome,
            label: format!("{builder} #{}: {state}{}", build.number, took.unwrap_or_default()),
        }
    }
}

/// A row of a builds table.
#[derive(Debug, Clone)]
pub(crate) struct BuildRow {
    pub builder: String,
    pub builder_href: String,
    pub cell: BuildBox,
    pub state: String,
    pub started: Time,
    /// `took 4m12s`, or `running for 12s`.
    pub took: String,
    /// The start, for `live.js` to count a running build's time.
    pub started_epoch: i64,
    pub running: bool,
    pub worker: String,
}

impl BuildRow {
    pub fn new(builder: &str, build: &Build, worker: Option<&str>) -> BuildRow {
        let took = match build.complete_at {
            Some(end) => format!("took {}", duration(end - build.started_at)),
            None => format!("running for {}", duration(now() - build.started_at)),
        };
        BuildRow {
            builder: builder.to_string(),
            builder_href: format!("/builders/{}", segment(builder)),
            cell: BuildBox::new(builder, build),
            state: build.state_string.clone(),
            started: Time::at(build.started_at),
            took,
            started_epoch: build.started_at,
            running: build.complete_at.is_none(),
            worker: worker.unwrap_or("").to_string(),
        }
    }
}

/// Names of builders and workers by store id, for the rows that carry only ids.
#[derive(Debug, Default)]
pub(crate) struct Names {
    builders: std::collections::HashMap<i64, String>,
    workers: std::collections::HashMap<i64, String>,
}

impl Names {
    /// The configured builders' names; workers are added with [`Names::with_workers`].
    pub fn of(master: &Master) -> Names {
        let builders = master
            .config()
            .builders
            .iter()
            .filter_map(|b| master.builder_id(&b.name).map(|id| (id, b.name.clone())))
            .collect();
        Names { builders, workers: Default::default() }
    }

    /// Adds the store's workers' names.
    pub async fn with_workers(mut self, master: &Master) -> Result<Names, crate::store::StoreError> {
        let mut query = crate::store::ListQuery::<crate::model::Worker>::new();
        query.page(Some(10_000), 0);
        let workers = master.store().list(&query).await?;
        self.workers = workers.items.into_iter().map(|w| (w.id, w.name)).collect();
        Ok(self)
    }

    pub fn builder(&self, id: i64) -> String {
        self.builders.get(&id).cloned().unwrap_or_else(|| format!("builder {id}"))
    }

    pub fn worker(&self, id: Option<i64>) -> Option<&str> {
        id.and_then(|id| self.workers.get(&id)).map(String::as_str)
    }

    pub fn row(&self, build: &Build) -> BuildRow {
        BuildRow::new(&self.builder(build.builderid), build, self.worker(build.workerid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(252), "4m12s");
        assert_eq!(duration(7500), "2h05m");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(duration(-3), "0s");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("linux-x86_64"), "linux-x86_64");
        assert_eq!(segment("a b/c<"), "a%20b%2Fc%3C");
    }

    #[test]
    fn every_result_has_a_symbol_and_a_word() {
        for code in 0..7 {
            let o = Outcome::of(Some(code));
            assert!(!o.symbol.is_empty() && !o.word.is_empty() && Outcome::CLASSES.contains(&o.class));
        }
        assert_eq!(Outcome::of(None), Outcome::RUNNING);
    }
}
