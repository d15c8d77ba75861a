//! `/schedulers`: every scheduler with its kind, its builders, when it fires next (what `kiln schedule-preview`
//! computes, for nightly ones) and whether it is enabled, with a button to enable or disable it for users allowed
//! to (`enable_scheduler`); the builder page shows the ones that feed it.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};

use super::view::{duration, now_utc, segment, Frame, Time};
use super::{page_view, respond, UiError, Wanted};
use crate::config::{Action, Timing};
use crate::master::Master;

/// Firings shown per nightly scheduler.
const NEXT_FIRINGS: usize = 3;
/// How far ahead firings are looked for.
const LOOKAHEAD_DAYS: i64 = 31;

/// A builder link.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub text: String,
    pub href: String,
}

/// A scheduler as the pages show it.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerInfo {
    pub name: String,
    pub kind: &'static str,
    /// What makes it fire, in words (`every 1h00m`, `after upstream succeeds`, a change filter).
    pub when: String,
    pub builders: Vec<Link>,
    /// Its next firings (nightly ones).
    pub next: Vec<Time>,
    pub enabled: bool,
}

fn links(builders: &[String]) -> Vec<Link> {
    builders.iter().map(|b| Link { text: b.clone(), href: format!("/builders/{}", segment(b)) }).collect()
}

/// Every scheduler of the config, or those feeding `builder`, with their next firings from `now`; those named in
/// `disabled` are shown disabled.
pub(crate) fn schedulers(
    master: &Master,
    builder: Option<&str>,
    now: DateTime<Utc>,
    disabled: &[String],
) -> Vec<SchedulerInfo> {
    let config = master.config();
    let feeds = |builders: &[String]| builder.is_none_or(|b| builders.iter().any(|x| x == b));
    let mut all = Vec::new();
    for s in config.timed_schedulers.iter().filter(|s| feeds(&s.builders)) {
        let (kind, when, next) = match &s.timing {
            Timing::Nightly(calendar) => {
                let to = now.checked_add_signed(TimeDelta::days(LOOKAHEAD_DAYS)).unwrap_or(DateTime::<Utc>::MAX_UTC);
                let next = calendar.firings(now, to, NEXT_FIRINGS).iter().map(|t| Time::at(t.timestamp())).collect();
                ("nightly", String::from("by its calendar"), next)
            }
            Timing::Periodic(every) => {
                let seconds = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
                ("periodic", format!("every {}", duration(seconds)), Vec::new())
            }
        };
        let when = if s.only_if_changed { format!("{when}, only if something changed") } else { when };
        all.push(SchedulerInfo { name: s.name.clone(), kind, when, builders: links(&s.builders), next, enabled: true });
    }
    for s in config.change_schedulers.iter().filter(|s| feeds(&s.builders)) {
        let when = match s.tree_stable_timer {
            Some(t) => format!("on changes, once the tree is stable for {}", duration(t.as_secs() as i64)),
            None => "on each change".to_string(),
        };
        all.push(SchedulerInfo {
            name: s.name.clone(),
            kind: "on change",
            when,
            builders: links(&s.builders),
            next: Vec::new(),
            enabled: true,
        });
    }
    for s in config.dependent_schedulers.iter().filter(|s| feeds(&s.builders)) {
        all.push(SchedulerInfo {
            name: s.name.clone(),
            kind: "dependent",
            when: format!("after a successful buildset of '{}'", s.upstream),
            builders: links(&s.builders),
            next: Vec::new(),
            enabled: true,
        });
    }
    for s in config.triggerable_schedulers.iter().filter(|s| feeds(&s.builders)) {
        all.push(SchedulerInfo {
            name: s.name.clone(),
            kind: "triggerable",
            when: "when a trigger step calls it".into(),
            builders: links(&s.builders),
            next: Vec::new(),
            enabled: true,
        });
    }
    for s in config.force_schedulers.iter().filter(|s| feeds(&s.builders)) {
        all.push(SchedulerInfo {
            name: s.name.clone(),
            kind: "force",
            when: "when someone forces a build".into(),
            builders: links(&s.builders),
            next: Vec::new(),
            enabled: true,
        });
    }
    for s in &mut all {
        s.enabled = !disabled.contains(&s.name);
    }
    all
}

#[derive(Template)]
#[template(path = "schedulers.html", blocks = ["live"])]
pub(crate) struct SchedulersPage {
    pub frame: Frame,
    pub schedulers: Vec<SchedulerInfo>,
    /// Whether the viewer may enable and disable schedulers (the buttons).
    pub can_switch: bool,
}
page_view!(SchedulersPage);

pub(super) async fn page(State(master): State<Master>, wanted: Wanted) -> Result<Response, UiError> {
    let page = SchedulersPage {
        frame: Frame::new(&master, "Schedulers", "schedulers").live(&["schedulers/*/*/*/*"]),
        schedulers: schedulers(&master, None, now_utc(), &master.store().disabled_schedulers().await?),
        can_switch: wanted.may(&master, Action::EnableScheduler, None, None),
    };
    respond(page, &wanted)
}
