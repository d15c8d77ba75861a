//! Reporters: who is told about builds, and how.
//!
//! A notice is *decided* when the store writes what it reports: the store reads the build's facts inside the
//! transaction that stores its start or its result and calls [`Reporters::decide_finished`] or
//! [`Reporters::decide_started`] (pure: filters, [`mode`], [`previous`], [`blamelist`], [`message`]), then keeps
//! the rows they return in its outbox before it commits. So a crash keeps both the result and its notices, or
//! neither. An [`outbox`] sender per reporter then delivers them through its target ([`targets`]), with timeouts,
//! retries, ordering and dedupe keys.

pub mod blamelist;
pub mod message;
pub mod missing;
pub mod mode;
pub mod outbox;
pub mod previous;
pub mod senders;
pub mod targets;

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::{ChatService, Forge, Generator, MasterConfig, ReporterDef, ReporterFilter, Target};
use crate::model::{BuildFacts, BuildsetFacts, NewNotification};
use crate::results::{CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS};
use crate::store::{Store, StoreError};
use message::{LogTail, Site};
use mode::Outcome;

/// The configured reporters and what they share.
#[derive(Debug)]
pub struct Reporters {
    defs: Vec<Arc<ReporterDef>>,
    site: Site,
    /// Told when notices were added, so senders look at once.
    wake: Arc<Notify>,
    /// Each worker's `notify_on_missing`.
    notify_on_missing: std::collections::BTreeMap<String, Vec<String>>,
}

/// The body of an HTTP request a notice makes (the target adds its credentials when it sends).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpPayload {
    pub method: String,
    pub url: String,
    pub body: Value,
    /// GitLab: the project path whose id the URL's `{project_id}` stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// A mail a notice sends to one recipient (`rcpt`), with the headers every copy shares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MailPayload {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The envelope recipient of this copy.
    pub rcpt: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub message_id: String,
    pub in_reply_to: Option<String>,
}

impl Reporters {
    /// The reporters of `config`.
    pub fn new(config: &MasterConfig) -> Reporters {
        Reporters::waking(config, Arc::new(Notify::new()))
    }

    /// The reporters of `config`, waking senders through `wake` (a reconfig keeps the running senders' one).
    pub fn waking(config: &MasterConfig, wake: Arc<Notify>) -> Reporters {
        Reporters {
            defs: config.reporters.iter().cloned().map(Arc::new).collect(),
            site: Site { title: config.title.clone(), url: config.url.clone() },
            wake,
            notify_on_missing: config.workers.iter().map(|w| (w.name.clone(), w.notify_on_missing.clone())).collect(),
        }
    }

    /// What wakes the senders.
    pub fn waker(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Each worker's `notify_on_missing`.
    pub fn notify_on_missing(&self) -> &std::collections::BTreeMap<String, Vec<String>> {
        &self.notify_on_missing
    }

    /// Where the master is and what it is called.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Whether any reporter is configured.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The reporter named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ReporterDef>> {
        self.defs.iter().find(|d| d.name == name)
    }

    /// The reporters.
    pub fn defs(&self) -> &[Arc<ReporterDef>] {
        &self.defs
    }

    /// Tells the senders that notices were added.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Runs a sender per reporter until `stop` is cancelled (a master keeps a [`senders::Senders`] instead, so
    /// that a reconfig can change them).
    pub fn start(&self, store: &Store, stop: tokio_util::sync::CancellationToken) {
        senders::Senders::new(stop).apply(self, store);
    }

    /// The last lines of the first failing step's log of build `buildid`, for the messages (read before the
    /// result is stored; the steps have ended by then).
    pub async fn log_tail(&self, store: &Store, buildid: i64) -> Result<Option<LogTail>, StoreError> {
        let lines = self.defs.iter().map(|d| d.log_lines).max().unwrap_or(0);
        if lines == 0 {
            return Ok(None);
        }
        let steps = store.steps(buildid).await?;
        let failed = steps.iter().find(|s| matches!(s.results, Some(FAILURE | EXCEPTION)));
        let Some(step) = failed else { return Ok(None) };
        let Some((logid, name, num_lines)) = store.step_logs(step.id).await?.into_iter().next() else {
            return Ok(None);
        };
        let count = i64::try_from(lines).unwrap_or(i64::MAX);
        let mut tail = store.log_lines(logid, (num_lines - count).max(0), count).await?;
        for line in &mut tail {
            // Stored stdio lines carry their stream as a first letter (o, e, h).
            if name == "stdio" && !line.is_empty() {
                line.remove(0);
            }
        }
        Ok(Some(LogTail { step: step.name.clone(), log: name, lines: tail }))
    }

    /// The notices the end of a build makes (called by the store inside the transaction that stores it).
    pub fn decide_finished(&self, facts: &BuildFacts, tail: Option<&LogTail>) -> Vec<NewNotification> {
        let mut notices = Vec::new();
        for def in &self.defs {
            if !passes(&def.filter, facts) {
                continue;
            }
            let outcome = outcome(def, facts);
            let report = match def.generator {
                Generator::Build => mode::any_fires(&def.modes, outcome, def.repeat_every),
                Generator::StartEnd | Generator::Status => true,
                Generator::Buildset | Generator::Request | Generator::WorkerMissing => false,
            };
            if report {
                notices.extend(self.notices(def, "build.finished", facts, outcome, tail));
            }
        }
        notices
    }

    /// The notices the start of a build makes.
    pub fn decide_started(&self, facts: &BuildFacts) -> Vec<NewNotification> {
        let mut notices = Vec::new();
        for def in &self.defs {
            if passes(&def.filter, facts) && matches!(def.generator, Generator::StartEnd | Generator::Status) {
                let outcome = Outcome { results: -1, previous: None, streak: 0 };
                notices.extend(self.notices(def, "build.started", facts, outcome, None));
            }
        }
        notices
    }

    /// The notices a new build request makes: pending commit statuses and `request` generators (called by the
    /// store inside the transaction that adds the request).
    pub fn decide_requested(&self, facts: &BuildFacts) -> Vec<NewNotification> {
        self.decide_request(facts, "request.new")
    }

    /// The notices a request that ended without a build makes (cancelled in the queue): the final commit
    /// status, so it is not left pending.
    pub fn decide_request_ended(&self, facts: &BuildFacts) -> Vec<NewNotification> {
        self.decide_request(facts, "request.cancelled")
    }

    fn decide_request(&self, facts: &BuildFacts, event: &str) -> Vec<NewNotification> {
        let mut notices = Vec::new();
        for def in &self.defs {
            if passes(&def.filter, facts) && matches!(def.generator, Generator::Request | Generator::Status) {
                let results = facts.build.results.unwrap_or(-1);
                let outcome = Outcome { results, previous: None, streak: 0 };
                notices.extend(self.notices(def, event, facts, outcome, None));
            }
        }
        notices
    }

    /// The notices a completed buildset makes: one message per `buildset` reporter, about the builds of the set
    /// that pass its filters and modes (none if no build does).
    pub fn decide_buildset(&self, facts: &BuildsetFacts) -> Vec<NewNotification> {
        let mut notices = Vec::new();
        for def in self.defs.iter().filter(|d| d.generator == Generator::Buildset) {
            let builds: Vec<(&BuildFacts, Outcome)> = facts
                .builds
                .iter()
                .filter(|b| passes(&def.filter, b))
                .map(|b| (b, outcome(def, b)))
                .filter(|(_, o)| mode::any_fires(&def.modes, *o, def.repeat_every))
                .collect();
            if builds.is_empty() {
                continue;
            }
            notices.extend(self.buildset_notices(def, facts, &builds));
        }
        notices
    }

    fn buildset_notices(
        &self,
        def: &ReporterDef,
        facts: &BuildsetFacts,
        builds: &[(&BuildFacts, Outcome)],
    ) -> Vec<NewNotification> {
        let mut blamelist: Vec<String> = Vec::new();
        let mut contexts = Vec::new();
        for (build, outcome) in builds {
            let people = blamelist::blamelist(def.previous, build);
            for person in &people {
                if !blamelist.contains(person) {
                    blamelist.push(person.clone());
                }
            }
            let shown = blamelist::shown(&people, def.blamelist_limit);
            contexts.push(message::build_context(&self.site, build, &def.modes, *outcome, shown, None));
        }
        let context =
            message::buildset_context(&self.site, facts, &def.modes, contexts, &blamelist, def.blamelist_limit);
        let want_html = matches!(def.target, Target::Mail(_) | Target::Matrix { .. });
        let rendered = match message::render_buildset(def.template.as_ref(), &context, want_html) {
            Ok(rendered) => rendered,
            Err(e) => {
                tracing::error!(reporter = %def.name, error = %e, "the reporter's template failed: default texts used");
                match message::render_buildset(None, &context, want_html) {
                    Ok(rendered) => rendered,
                    Err(_) => return Vec::new(),
                }
            }
        };
        let url = message::buildset_url(&self.site, facts.bsid);
        let push = json!({
            "bsid": facts.bsid, "results": facts.results, "result": crate::results::name(facts.results),
            "reason": facts.reason, "url": url, "blamelist": blamelist,
            "builds": context["builds"].as_array().map(|builds| builds.iter().map(|b| json!({
                "buildid": b["build"]["buildid"], "number": b["build"]["number"], "builder": b["buildername"],
                "results": b["results"], "state_string": b["build"]["state_string"], "url": b["build_url"],
            })).collect::<Vec<_>>()),
        });
        let composed = Composed {
            event: "buildset.finished",
            subject_id: facts.bsid,
            rendered: &rendered,
            context: &context,
            blamelist: &blamelist,
            url: &url,
            results: Some(facts.results),
            in_reply_to: None,
            push: ("buildset", push),
        };
        self.fan_out(def, &composed)
    }

    /// The rows of one reporter's notice about `facts` (one per mail recipient or commit; one otherwise).
    pub fn notices(
        &self,
        def: &ReporterDef,
        event: &str,
        facts: &BuildFacts,
        outcome: Outcome,
        tail: Option<&LogTail>,
    ) -> Vec<NewNotification> {
        let blamelist = blamelist::blamelist(def.previous, facts);
        let shown = blamelist::shown(&blamelist, def.blamelist_limit);
        let request = event.starts_with("request.");
        let mut context = message::build_context(&self.site, facts, &def.modes, outcome, shown, tail);
        message::count_blamelist(&mut context, &blamelist, def.blamelist_limit);
        let want_html = matches!(def.target, Target::Mail(_) | Target::Matrix { .. });
        let render = |template| {
            if request {
                message::render_request(template, &context, want_html)
            } else {
                message::render_build(template, &context, want_html)
            }
        };
        let rendered = match render(def.template.as_ref()) {
            Ok(rendered) => rendered,
            Err(e) => {
                tracing::error!(reporter = %def.name, error = %e, "the reporter's template failed: default texts used");
                match render(None) {
                    Ok(rendered) => rendered,
                    Err(_) => return Vec::new(),
                }
            }
        };
        let subject_id = if request { facts.build.buildrequestid } else { facts.build.id };
        let key = |target: &str| format!("{}|{event}|{subject_id}|{target}", def.name);
        let results = facts.build.results;
        let url = if request {
            message::request_url(&self.site, facts.build.buildrequestid)
        } else {
            message::build_url(&self.site, facts)
        };
        let Target::Forge(forge) = &def.target else {
            let in_reply_to = match &def.target {
                Target::Mail(mail)
                    if event == "build.finished" && (results == Some(SUCCESS) || outcome.streak >= 2) =>
                {
                    previous::first_failure(def.previous, facts)
                        .map(|first| message_id_of(&def.name, first.id, &mail_domain(&mail.from)))
                }
                _ => None,
            };
            let buildid = facts.build.id;
            let push = json!({
                "buildid": buildid, "number": facts.build.number, "builder": facts.builder,
                "builderid": facts.build.builderid, "buildrequestid": facts.build.buildrequestid,
                "results": results, "result": results.and_then(crate::results::name),
                "state_string": facts.build.state_string, "url": url, "branch": facts.branch(),
                "started_at": facts.build.started_at, "complete_at": facts.build.complete_at,
                "worker": facts.worker, "reason": facts.reason,
                "sourcestamps": context["sourcestamps"], "changes": context["changes"],
                "blamelist": blamelist, "status_detected": context["status_detected"],
                "previous_results": context["previous_results"],
            });
            let composed = Composed {
                event,
                subject_id,
                rendered: &rendered,
                context: &context,
                blamelist: &blamelist,
                url: &url,
                results,
                in_reply_to,
                push: (if request { "request" } else { "build" }, push),
            };
            return self.fan_out(def, &composed);
        };
        let row = |target: String, supersede_key: Option<String>, payload: Vec<u8>| NewNotification {
            reporter: def.name.clone(),
            event: event.to_owned(),
            subject_id,
            dedupe_key: key(&target),
            target,
            supersede_key,
            payload,
        };
        let status_context =
            message::render(&forge.context, false, &context).unwrap_or_else(|_| format!("kiln/{}", facts.builder));
        let mut rows = Vec::new();
        for ss in &facts.sourcestamps {
            let (sha, branch) = targets::forge::status_commit(ss, &facts.changes);
            let Some(sha) = sha.as_deref() else { continue };
            let Some(repo) = targets::forge::repo_path(&ss.project, &ss.repository) else { continue };
            let description = match event {
                "request.new" => "Build pending.".to_owned(),
                "request.cancelled" => "Build request cancelled.".to_owned(),
                "build.started" => "Build started.".to_owned(),
                _ => message::truncate(&facts.build.state_string, 140),
            };
            let (method, request_url, body, project) = targets::forge::status(
                forge,
                &repo,
                sha,
                branch.as_deref(),
                event,
                results,
                &status_context,
                &description,
                &url,
            );
            let target = format!("{repo}@{sha}#{status_context}");
            let supersede = format!("status:{}:{target}", def.name);
            let payload = HttpPayload { method: method.into(), url: request_url, body, project };
            rows.push(row(target, Some(supersede), serde_json::to_vec(&payload).unwrap_or_default()));
        }
        rows
    }

    /// The rows of a composed notice for a target that is not a forge: one per mail recipient, else one.
    fn fan_out(&self, def: &ReporterDef, notice: &Composed<'_>) -> Vec<NewNotification> {
        let Composed { event, subject_id, rendered, context, blamelist, url, results, .. } = *notice;
        let key = |target: &str| format!("{}|{event}|{subject_id}|{target}", def.name);
        let row = |target: String, payload: Vec<u8>| NewNotification {
            reporter: def.name.clone(),
            event: event.to_owned(),
            subject_id,
            dedupe_key: key(&target),
            target,
            supersede_key: None,
            payload,
        };
        let http = |method: &str, url: String, body: Value| {
            serde_json::to_vec(&HttpPayload { method: method.into(), url, body, project: None }).unwrap_or_default()
        };
        match &def.target {
            Target::Mail(mail) => {
                let mut to = Vec::new();
                if mail.send_to_interested_users {
                    for person in blamelist {
                        if to.len() >= def.blamelist_limit {
                            break;
                        }
                        match blamelist::address(person, mail.lookup.as_deref()) {
                            Some(address) if !to.contains(&address) => to.push(address),
                            Some(_) => {}
                            None => tracing::warn!(reporter = %def.name, person, "no valid mail address: dropped"),
                        }
                    }
                    if blamelist.len() > def.blamelist_limit {
                        let left = blamelist.len() - def.blamelist_limit;
                        tracing::info!(reporter = %def.name, left, "blamelist_limit reached: the others are named in the message only");
                    }
                }
                let (to, cc) = if to.is_empty() {
                    (mail.extra_recipients.clone(), Vec::new())
                } else {
                    let cc = mail.extra_recipients.iter().filter(|a| !to.contains(a)).cloned().collect();
                    (to, cc)
                };
                let message_id = message_id(&def.name, event, subject_id, &mail_domain(&mail.from));
                to.iter()
                    .chain(cc.iter())
                    .map(|rcpt| {
                        let payload = MailPayload {
                            from: mail.from.clone(),
                            to: to.clone(),
                            cc: cc.clone(),
                            rcpt: rcpt.clone(),
                            subject: rendered.subject.clone(),
                            text: rendered.text.clone(),
                            html: rendered.html.clone(),
                            message_id: message_id.clone(),
                            in_reply_to: notice.in_reply_to.clone(),
                        };
                        row(rcpt.clone(), serde_json::to_vec(&payload).unwrap_or_default())
                    })
                    .collect()
            }
            Target::Chat { service, webhook_url } => {
                let body = match service {
                    ChatService::Slack => targets::chat::slack(rendered, context, url, results),
                    ChatService::Mattermost => targets::chat::mattermost(rendered, url, results),
                    ChatService::Discord => targets::chat::discord(rendered, context, url, results),
                };
                let webhook = match service {
                    ChatService::Discord if !webhook_url.contains("wait=") => {
                        let separator = if webhook_url.contains('?') { '&' } else { '?' };
                        format!("{webhook_url}{separator}wait=true")
                    }
                    _ => webhook_url.clone(),
                };
                vec![row("webhook".into(), http("POST", webhook, body))]
            }
            Target::Matrix { homeserver, room } => {
                let txn = short_hash(&key(room));
                let room_path = url::form_urlencoded::byte_serialize(room.as_bytes()).collect::<String>();
                let url = format!("{homeserver}/_matrix/client/v3/rooms/{room_path}/send/m.room.message/{txn}");
                let body = targets::chat::matrix(rendered);
                vec![row(room.clone(), http("PUT", url, body))]
            }
            Target::Http { url: endpoint } => {
                let (name, subject) = &notice.push;
                let mut body = json!({"version": 1, "event": event, "delivery_id": key("http")});
                body[*name] = subject.clone();
                vec![row("http".into(), http("POST", endpoint.clone(), body))]
            }
            // Forges post statuses about builds and requests only (`notices`).
            Target::Forge(_) => Vec::new(),
        }
    }
}

/// A notice rendered and ready to be fanned out to a target's rows.
struct Composed<'a> {
    event: &'a str,
    subject_id: i64,
    rendered: &'a message::Rendered,
    context: &'a Value,
    /// Everyone to blame (the mail goes to at most `blamelist_limit` of them).
    blamelist: &'a [String],
    url: &'a str,
    results: Option<i32>,
    in_reply_to: Option<String>,
    /// The `http` push's subject: its key (`build`, `request`, `buildset`) and value.
    push: (&'static str, Value),
}

/// The domain of a `From:` address, for Message-IDs.
fn mail_domain(from: &str) -> String {
    from.rsplit('@').next().unwrap_or("kiln").trim_end_matches('>').to_owned()
}

/// A build's modes outcome under a reporter's previous-build rule.
pub fn outcome(def: &ReporterDef, facts: &BuildFacts) -> Outcome {
    Outcome {
        results: facts.build.results.unwrap_or(RETRY),
        previous: previous::previous_results(def.previous, facts),
        streak: previous::streak(def.previous, facts),
    }
}

/// Whether the build passes a reporter's filters.
pub fn passes(filter: &ReporterFilter, facts: &BuildFacts) -> bool {
    let builder = filter.builders.as_ref().is_none_or(|names| names.contains(&facts.builder));
    let tags = filter.tags.as_ref().is_none_or(|tags| tags.iter().any(|t| facts.builder_tags.contains(t)));
    let branch = facts.branch();
    let branches = filter.branches.as_ref().is_none_or(|names| branch.as_ref().is_some_and(|b| names.contains(b)));
    let scheduler = facts.properties.get("scheduler").and_then(|s| s.as_str());
    let schedulers =
        filter.schedulers.as_ref().is_none_or(|names| scheduler.is_some_and(|s| names.iter().any(|n| n == s)));
    builder && tags && branches && schedulers
}

/// A stable short hash (hex) of `text`.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..12])
}

/// The Message-ID of a reporter's mail about a build event: the same for every copy and every retry.
pub fn message_id(reporter: &str, event: &str, buildid: i64, domain: &str) -> String {
    format!("<kiln.{}@{domain}>", short_hash(&format!("{reporter}|{event}|{buildid}")))
}

/// The Message-ID of a reporter's mail about build `buildid`'s end.
fn message_id_of(reporter: &str, buildid: i64, domain: &str) -> String {
    message_id(reporter, "build.finished", buildid, domain)
}

/// The result words a status or chat message uses.
pub fn result_word(results: Option<i32>) -> &'static str {
    match results {
        Some(SUCCESS) => "success",
        Some(WARNINGS) => "warnings",
        Some(FAILURE) => "failure",
        Some(SKIPPED) => "skipped",
        Some(EXCEPTION) => "exception",
        Some(RETRY) => "retry",
        Some(CANCELLED) => "cancelled",
        _ => "running",
    }
}

/// The forge a target posts to, if it is one.
pub fn forge_of(def: &ReporterDef) -> Option<Forge> {
    match &def.target {
        Target::Forge(forge) => Some(forge.forge),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Build, Change, NewChange, SourceStamp};

    fn config(reporters: &str) -> MasterConfig {
        // Top-level keys (before the first table) go first.
        let (top, reporters) = reporters.split_at(reporters.find("[[").unwrap_or(0));
        let text = format!(
            "{top}[[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"devel\"\nworkers = [\"w\"]\n  \
             [[builder.step]]\n  command = \"make\"\n[[builder]]\nname = \"docs\"\nworkers = [\"w\"]\n  \
             [[builder.step]]\n  command = \"make\"\n{reporters}"
        );
        match MasterConfig::from_str(&text, "master.toml") {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn build(id: i64, builder: &str, results: Option<i32>, authors: &[&str]) -> BuildFacts {
        let changes = authors
            .iter()
            .enumerate()
            .map(|(i, author)| Change {
                parent_changeids: Vec::new(),
                id: i64::try_from(i).unwrap_or(0) + 1,
                sourcestampid: 1,
                reported: NewChange { author: (*author).into(), comments: "c".into(), ..NewChange::default() },
            })
            .collect();
        BuildFacts {
            build: Build { id, number: 1, builderid: id, buildrequestid: 10 + id, results, ..Build::default() },
            builder: builder.into(),
            buildsetid: 5,
            sourcestamps: vec![SourceStamp {
                branch: Some("main".into()),
                revision: Some("abc".into()),
                repository: "https://github.com/o/r.git".into(),
                ..SourceStamp::default()
            }],
            changes,
            ..BuildFacts::default()
        }
    }

    fn mail(payload: &[u8]) -> MailPayload {
        serde_json::from_slice(payload).unwrap_or_else(|e| panic!("mail payload: {e}"))
    }

    #[test]
    fn a_buildset_makes_one_message_about_the_builds_its_modes_pass() {
        let reporters = Reporters::new(&config(
            "[[reporter]]\nname = \"set\"\ntype = \"mail\"\ngenerator = \"buildset\"\nfrom = \"k@e.org\"\n\
             mode = [\"failing\"]\nlookup = \"e.org\"\n",
        ));
        let set = BuildsetFacts {
            bsid: 5,
            results: FAILURE,
            reason: "push".into(),
            builds: vec![build(1, "devel", Some(FAILURE), &["alice"]), build(2, "docs", Some(SUCCESS), &["bob"])],
        };
        let rows = reporters.decide_buildset(&set);
        assert_eq!(rows.len(), 1, "one mail, to the failing build's author: {rows:#?}");
        assert_eq!((rows[0].event.as_str(), rows[0].subject_id), ("buildset.finished", 5));
        let mail = mail(&rows[0].payload);
        assert_eq!(mail.to, vec!["alice@e.org".to_owned()]);
        assert!(mail.text.contains("devel #1: failure") && !mail.text.contains("docs #1"), "{}", mail.text);
        // No build the modes pass: nothing.
        let passing = BuildsetFacts { builds: vec![build(2, "docs", Some(SUCCESS), &["bob"])], ..set };
        assert!(reporters.decide_buildset(&passing).is_empty());
        // Build reporters say nothing about buildsets.
        let per_build = Reporters::new(&config("[[reporter]]\nname = \"b\"\ntype = \"mail\"\nfrom = \"k@e.org\"\n"));
        assert!(per_build.decide_buildset(&passing).is_empty());
    }

    #[test]
    fn a_long_blamelist_is_mailed_up_to_its_limit_and_the_rest_counted() {
        let reporters = Reporters::new(&config(
            "[[reporter]]\nname = \"m\"\ntype = \"mail\"\nfrom = \"k@e.org\"\nlookup = \"e.org\"\nblamelist_limit = 2\n",
        ));
        let facts = build(1, "devel", Some(FAILURE), &["a", "b", "c", "d"]);
        let rows = reporters.decide_finished(&facts, None);
        assert_eq!(rows.len(), 2, "{rows:#?}");
        let mail = mail(&rows[0].payload);
        assert_eq!(mail.to, vec!["a@e.org".to_owned(), "b@e.org".to_owned()]);
        assert!(mail.text.contains("Blamelist: a, b and 2 more"), "{}", mail.text);
    }

    #[test]
    fn a_new_request_is_pending_on_the_forges_and_for_request_reporters() {
        let reporters = Reporters::new(&config(
            "url = \"http://ci/\"\n[[reporter]]\nname = \"gh\"\ntype = \"github\"\ntoken = \"t\"\n\
             [[reporter]]\nname = \"r\"\ntype = \"http\"\ngenerator = \"request\"\nurl = \"http://h/x\"\n\
             [[reporter]]\nname = \"b\"\ntype = \"http\"\nurl = \"http://h/y\"\n",
        ));
        let mut facts = build(0, "devel", None, &["alice"]);
        facts.build.buildrequestid = 9;
        let rows = reporters.decide_requested(&facts);
        let names: Vec<&str> = rows.iter().map(|r| r.reporter.as_str()).collect();
        assert_eq!(names, ["gh", "r"], "a build reporter says nothing at request time");
        let status: HttpPayload = serde_json::from_slice(&rows[0].payload).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.url, "https://api.github.com/repos/o/r/statuses/abc");
        assert_eq!(status.body["state"], "pending");
        assert_eq!(status.body["description"], "Build pending.");
        assert_eq!(status.body["target_url"], "http://ci/#/buildrequests/9");
        assert_eq!(rows[0].supersede_key.as_deref(), Some("status:gh:o/r@abc#kiln/devel"), "ordered with the build's");
        let push: HttpPayload = serde_json::from_slice(&rows[1].payload).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (push.body["event"].as_str(), push.body["request"]["buildrequestid"].as_i64()),
            (Some("request.new"), Some(9))
        );
        facts.build.results = Some(CANCELLED);
        let ended = reporters.decide_request_ended(&facts);
        let status: HttpPayload = serde_json::from_slice(&ended[0].payload).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.body["state"], "error");
    }
}
