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
pub mod targets;

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::{ChatService, Forge, Generator, MasterConfig, ReporterDef, ReporterFilter, Target};
use crate::model::{BuildFacts, NewNotification};
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
        Reporters {
            defs: config.reporters.iter().cloned().map(Arc::new).collect(),
            site: Site { title: config.title.clone(), url: config.url.clone() },
            wake: Arc::new(Notify::new()),
            notify_on_missing: config.workers.iter().map(|w| (w.name.clone(), w.notify_on_missing.clone())).collect(),
        }
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

    /// Runs a sender per reporter until `stop` is cancelled.
    pub fn start(&self, store: &Store, stop: tokio_util::sync::CancellationToken) {
        for def in &self.defs {
            let sender = match targets::Sender::new(def, store.clone()) {
                Ok(sender) => sender,
                Err(e) => {
                    tracing::error!(reporter = %def.name, error = %e, "the reporter cannot send; its notices wait");
                    continue;
                }
            };
            let outbox = outbox::Outbox::new(def.clone(), store.clone(), sender, self.wake.clone());
            tokio::spawn(outbox.run(stop.clone()));
        }
        let missing: Vec<Arc<ReporterDef>> =
            self.defs.iter().filter(|d| d.generator == Generator::WorkerMissing).cloned().collect();
        if !missing.is_empty() {
            let (notify, site, wake) = (self.notify_on_missing.clone(), self.site.clone(), self.wake.clone());
            tokio::spawn(missing::run(missing, notify, site, store.clone(), wake, stop));
        }
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
        let context = message::build_context(&self.site, facts, &def.modes, outcome, &blamelist, tail);
        let want_html = matches!(def.target, Target::Mail(_) | Target::Matrix { .. });
        let rendered = match message::render_build(def.template.as_ref(), &context, want_html) {
            Ok(rendered) => rendered,
            Err(e) => {
                tracing::error!(reporter = %def.name, error = %e, "the reporter's template failed: default texts used");
                match message::render_build(None, &context, want_html) {
                    Ok(rendered) => rendered,
                    Err(_) => return Vec::new(),
                }
            }
        };
        let buildid = facts.build.id;
        let key = |target: &str| format!("{}|{event}|{buildid}|{target}", def.name);
        let row = |target: String, supersede_key: Option<String>, payload: Vec<u8>| NewNotification {
            reporter: def.name.clone(),
            event: event.to_owned(),
            subject_id: buildid,
            dedupe_key: key(&target),
            target,
            supersede_key,
            payload,
        };
        let http = |method: &str, url: String, body: Value| {
            serde_json::to_vec(&HttpPayload { method: method.into(), url, body, project: None }).unwrap_or_default()
        };
        let results = facts.build.results;
        let url = message::build_url(&self.site, facts);
        match &def.target {
            Target::Mail(mail) => {
                let mut to = Vec::new();
                if mail.send_to_interested_users {
                    for person in &blamelist {
                        match blamelist::address(person, mail.lookup.as_deref()) {
                            Some(address) if !to.contains(&address) => to.push(address),
                            Some(_) => {}
                            None => tracing::warn!(reporter = %def.name, person, "no valid mail address: dropped"),
                        }
                    }
                }
                let (to, cc) = if to.is_empty() {
                    (mail.extra_recipients.clone(), Vec::new())
                } else {
                    let cc = mail.extra_recipients.iter().filter(|a| !to.contains(a)).cloned().collect();
                    (to, cc)
                };
                let domain = mail.from.rsplit('@').next().unwrap_or("kiln").trim_end_matches('>').to_owned();
                let message_id = message_id(&def.name, event, buildid, &domain);
                let in_reply_to = (results == Some(SUCCESS) || outcome.streak >= 2)
                    .then(|| previous::first_failure(def.previous, facts))
                    .flatten()
                    .map(|first| message_id_of(&def.name, first.id, &domain));
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
                            in_reply_to: in_reply_to.clone(),
                        };
                        row(rcpt.clone(), None, serde_json::to_vec(&payload).unwrap_or_default())
                    })
                    .collect()
            }
            Target::Chat { service, webhook_url } => {
                let body = match service {
                    ChatService::Slack => targets::chat::slack(&rendered, &context, &url, results),
                    ChatService::Mattermost => targets::chat::mattermost(&rendered, &url, results),
                    ChatService::Discord => targets::chat::discord(&rendered, &context, &url, results),
                };
                let webhook = match service {
                    ChatService::Discord if !webhook_url.contains("wait=") => {
                        let separator = if webhook_url.contains('?') { '&' } else { '?' };
                        format!("{webhook_url}{separator}wait=true")
                    }
                    _ => webhook_url.clone(),
                };
                vec![row("webhook".into(), None, http("POST", webhook, body))]
            }
            Target::Matrix { homeserver, room } => {
                let txn = short_hash(&key(room));
                let room_path = url::form_urlencoded::byte_serialize(room.as_bytes()).collect::<String>();
                let url = format!("{homeserver}/_matrix/client/v3/rooms/{room_path}/send/m.room.message/{txn}");
                let body = targets::chat::matrix(&rendered);
                vec![row(room.clone(), None, http("PUT", url, body))]
            }
            Target::Http { url: endpoint } => {
                let body = json!({
                    "version": 1,
                    "event": event,
                    "delivery_id": key("http"),
                    "build": {
                        "buildid": buildid, "number": facts.build.number, "builder": facts.builder,
                        "builderid": facts.build.builderid, "results": results,
                        "result": results.and_then(crate::results::name),
                        "state_string": facts.build.state_string, "url": url, "branch": facts.branch(),
                        "started_at": facts.build.started_at, "complete_at": facts.build.complete_at,
                        "worker": facts.worker, "reason": facts.reason,
                        "sourcestamps": context["sourcestamps"], "changes": context["changes"],
                        "blamelist": blamelist, "status_detected": context["status_detected"],
                        "previous_results": context["previous_results"],
                    },
                });
                vec![row("http".into(), None, http("POST", endpoint.clone(), body))]
            }
            Target::Forge(forge) => {
                let status_context = message::render(&forge.context, false, &context)
                    .unwrap_or_else(|_| format!("kiln/{}", facts.builder));
                let mut rows = Vec::new();
                for ss in &facts.sourcestamps {
                    let (sha, branch) = targets::forge::status_commit(ss, &facts.changes);
                    let Some(sha) = sha.as_deref() else { continue };
                    let Some(repo) = targets::forge::repo_path(&ss.project, &ss.repository) else { continue };
                    let description = match event {
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
        }
    }
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
