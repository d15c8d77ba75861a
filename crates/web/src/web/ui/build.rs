//! `/builders/{name}/builds/{number}`: one build — result, state, reason, owner, when and how long; its source
//! stamps and changes (with links to the commit when the change has a revlink); its properties with their
//! source; its steps with durations, results and links to their logs; its parent and the builds it triggered;
//! rebuild and stop buttons (JSON-RPC actions, posted by `actions.js`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use super::builder::find;
use super::view::{build_href, duration, now, segment, BuildBox, Frame, Names, Outcome, Time};
use super::{page_view, respond, UiError, Wanted};
use crate::config::{Action, BuilderDef, StepDef};
use crate::master::Master;
use crate::model::{Build, Change, Log, SourceStamp};
use crate::store::{FilterValue, ListQuery, Op};

/// A link to a log of a step.
#[derive(Debug, Clone)]
pub(crate) struct LogLink {
    pub name: String,
    pub href: String,
    pub raw: String,
    pub lines: i64,
}

/// A step as the build page shows it.
#[derive(Debug, Clone)]
pub(crate) struct StepView {
    pub number: i64,
    pub name: String,
    pub outcome: Outcome,
    pub state: String,
    pub took: String,
    pub logs: Vec<LogLink>,
    pub hidden: bool,
}

/// A change of the build.
#[derive(Debug, Clone)]
pub(crate) struct ChangeView {
    pub id: i64,
    pub author: String,
    pub comments: String,
    pub revision: String,
    /// A link to the commit (only `http:` and `https:` links).
    pub revlink: String,
    pub branch: String,
    pub files: Vec<String>,
    pub when: Time,
}

impl ChangeView {
    pub fn of(change: &Change) -> ChangeView {
        let revlink = change
            .properties
            .get("revlink")
            .and_then(|v| match v {
                Value::String(s) => Some(s.as_str()),
                Value::Array(a) => a.first().and_then(Value::as_str),
                _ => None,
            })
            .filter(|link| link.starts_with("https://") || link.starts_with("http://"))
            .unwrap_or("")
            .to_string();
        ChangeView {
            id: change.id,
            author: change.author.clone(),
            comments: change.comments.clone(),
            revision: change.revision.clone().unwrap_or_default(),
            revlink,
            branch: change.branch.clone().unwrap_or_default(),
            files: change.files.clone(),
            when: Time::at(change.when_timestamp),
        }
    }
}

/// A source stamp: what was asked for, and the revision the build checked out (`got_revision`).
#[derive(Debug, Clone)]
pub(crate) struct StampView {
    pub codebase: String,
    pub repository: String,
    pub branch: String,
    /// The revision asked for; empty: the branch's latest.
    pub revision: String,
    /// The revision the build's `git` step checked out; empty when none did.
    pub got: String,
}

/// The revision `got_revision` gives for `codebase`: a text for one codebase, an object by codebase for several.
fn got_revision(got: Option<&Value>, codebase: &str) -> Option<String> {
    match got? {
        Value::String(revision) => Some(revision.clone()),
        Value::Object(by_codebase) => by_codebase.get(codebase).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The build's sources: its source stamps with what it checked out; a build asked for no source stamp (a forced
/// build without a revision) that checked out revisions shows a row per codebase it checked out, with the
/// repository of the builder's `git` step of that codebase.
fn stamp_views(def: &BuilderDef, stamps: Vec<SourceStamp>, got: Option<&Value>) -> Vec<StampView> {
    if !stamps.is_empty() {
        return stamps
            .into_iter()
            .map(|s| StampView {
                got: got_revision(got, &s.codebase).unwrap_or_default(),
                codebase: s.codebase,
                repository: s.repository,
                branch: s.branch.unwrap_or_default(),
                revision: s.revision.unwrap_or_default(),
            })
            .collect();
    }
    let git_step = |codebase: &str| {
        def.steps.iter().find_map(|step| match step {
            StepDef::Git(git) if git.codebase == codebase => Some(git),
            _ => None,
        })
    };
    let codebases: Vec<(String, String)> = match got {
        Some(Value::String(revision)) => vec![(String::new(), revision.clone())],
        Some(Value::Object(by_codebase)) => by_codebase
            .iter()
            .filter_map(|(codebase, revision)| Some((codebase.clone(), revision.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    codebases
        .into_iter()
        .map(|(codebase, got)| {
            let step = git_step(&codebase);
            StampView {
                repository: step.map(|g| g.repourl.clone()).unwrap_or_default(),
                branch: step.map(|g| g.branch.clone()).unwrap_or_default(),
                revision: String::new(),
                codebase,
                got,
            }
        })
        .collect()
}

/// A property.
#[derive(Debug, Clone)]
pub(crate) struct PropertyView {
    pub name: String,
    pub value: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "build.html", blocks = ["live"])]
pub(crate) struct BuildPage {
    pub frame: Frame,
    pub builder: String,
    pub builder_href: String,
    pub buildid: i64,
    pub number: i64,
    pub outcome: Outcome,
    pub state: String,
    pub reason: String,
    pub owner: String,
    /// Who stopped it (from the audit), if anyone did.
    pub stopped_by: String,
    pub started: Time,
    pub finished: Option<Time>,
    pub took: String,
    pub started_epoch: i64,
    pub running: bool,
    pub worker: String,
    pub stamps: Vec<StampView>,
    pub changes: Vec<ChangeView>,
    pub properties: Vec<PropertyView>,
    pub steps: Vec<StepView>,
    pub parent: Option<BuildBox>,
    pub parent_builder: String,
    pub triggered: Vec<(String, BuildBox)>,
    /// Whether the viewer may stop this build (shown while it runs) and rebuild it (once it ended).
    pub can_stop: bool,
    pub can_rebuild: bool,
}
page_view!(BuildPage);

/// The build `number` of builder `builderid`.
pub(super) async fn find_build(master: &Master, builderid: i64, number: i64) -> Result<Option<Build>, UiError> {
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut query = ListQuery::<Build>::new();
    query
        .filter("builderid", Op::Eq, vec![FilterValue::Int(builderid)])
        .map_err(bad)?
        .filter("number", Op::Eq, vec![FilterValue::Int(number)])
        .map_err(bad)?
        .page(Some(1), 0);
    Ok(master.store().list(&query).await?.items.into_iter().next())
}

/// The logs of `steps`, in one query.
async fn logs_of(master: &Master, stepids: Vec<i64>) -> Result<Vec<Log>, UiError> {
    if stepids.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |e: crate::store::QueryError| UiError::BadRequest(e.to_string());
    let mut query = ListQuery::<Log>::new();
    query.filter("stepid", Op::Eq, stepids.into_iter().map(FilterValue::Int).collect()).map_err(bad)?;
    query.page(Some(1000), 0);
    Ok(master.store().list(&query).await?.items)
}

pub(super) async fn page(
    State(master): State<Master>,
    Path((name, number)): Path<(String, String)>,
    wanted: Wanted,
) -> Result<Response, UiError> {
    let (def, builderid) = find(&master, &name)?;
    let number: i64 = number.parse().map_err(|_| UiError::NotFound(format!("no build '{number}' of {name}")))?;
    let build = find_build(&master, builderid, number)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no build {number} of builder '{name}'")))?;
    let store = master.store();
    let names = Names::of(&master).with_workers(&master).await?;
    let request = store.build_request(build.buildrequestid).await?;
    let buildset = match &request {
        Some(r) => store.buildset(r.buildsetid).await?,
        None => None,
    };
    let stamps = match &buildset {
        Some(bs) => store.buildset_sourcestamps(bs.id).await?,
        None => Vec::new(),
    };
    let properties = store.build_properties(build.id).await?;
    let owner = properties
        .iter()
        .find(|p| p.name == "owner")
        .and_then(|p| p.value.as_str().map(str::to_string))
        .unwrap_or_default();
    let stamps = stamp_views(&def, stamps, properties.iter().find(|p| p.name == "got_revision").map(|p| &p.value));
    let steps = store.steps(build.id).await?;
    let logs = logs_of(&master, steps.iter().map(|s| s.id).collect()).await?;
    let build_path = build_href(&def.name, build.number);
    let steps = steps
        .iter()
        .map(|s| {
            let took = match s.complete_at {
                Some(end) => duration(end - s.started_at),
                None if s.started_at > 0 => format!("running for {}", duration(now() - s.started_at)),
                None => String::new(),
            };
            StepView {
                number: s.number,
                name: s.name.clone(),
                outcome: if s.complete_at.is_some() { Outcome::of(s.results) } else { Outcome::RUNNING },
                state: s.state_string.clone(),
                took,
                hidden: s.hidden,
                logs: logs
                    .iter()
                    .filter(|l| l.stepid == s.id)
                    .map(|l| LogLink {
                        name: l.name.clone(),
                        href: format!("{build_path}/steps/{}/logs/{}", s.number, segment(&l.slug)),
                        raw: format!("/api/v2/logs/{}/raw", l.id),
                        lines: l.num_lines,
                    })
                    .collect(),
            }
        })
        .collect();
    let (parent, parent_builder) = match buildset.as_ref().and_then(|bs| bs.parent_buildid) {
        Some(id) => match store.build(id).await? {
            Some(p) => {
                let builder = names.builder(p.builderid);
                (Some(BuildBox::new(&builder, &p)), builder)
            }
            None => (None, String::new()),
        },
        None => (None, String::new()),
    };
    let triggered = store
        .triggered_builds(build.id)
        .await?
        .iter()
        .map(|b| {
            let builder = names.builder(b.builderid);
            let cell = BuildBox::new(&builder, b);
            (builder, cell)
        })
        .collect();
    let owner_ref = (!owner.is_empty()).then_some(owner.as_str());
    let can_stop = wanted.may(&master, Action::Stop, Some(&def.name), owner_ref);
    let can_rebuild = wanted.may(&master, Action::Rebuild, Some(&def.name), owner_ref);
    let outcome = Outcome::of(build.results);
    let end = build.complete_at.unwrap_or_else(now);
    let patterns = [format!("builds/{}/*", build.id), format!("builds/{}/steps/*/*", build.id)];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let page = BuildPage {
        frame: Frame::new(&master, format!("{} #{}", def.name, build.number), "builders")
            .live(&patterns)
            .showing(&outcome),
        builder: def.name.clone(),
        builder_href: format!("/builders/{}", segment(&def.name)),
        buildid: build.id,
        number: build.number,
        outcome,
        state: build.state_string.clone(),
        reason: buildset.as_ref().map(|b| b.reason.clone()).unwrap_or_default(),
        owner,
        stopped_by: store
            .build_actors(crate::config::Action::Stop.name(), &[build.id])
            .await?
            .remove(&build.id)
            .unwrap_or_default(),
        started: Time::at(build.started_at),
        finished: build.complete_at.map(Time::at),
        took: duration(end - build.started_at),
        started_epoch: build.started_at,
        running: build.complete_at.is_none(),
        worker: names.worker(build.workerid).unwrap_or("").to_string(),
        stamps,
        changes: store.build_changes(build.id).await?.iter().map(ChangeView::of).collect(),
        properties: properties
            .into_iter()
            .map(|p| PropertyView {
                name: p.name,
                value: match p.value {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                source: p.source,
            })
            .collect(),
        steps,
        parent,
        parent_builder,
        triggered,
        can_stop,
        can_rebuild,
    };
    respond(page, &wanted)
}
