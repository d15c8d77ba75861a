//! Workers that go missing, and come back: once per disconnect episode, with the real time it began, never at
//! the master's start for workers that were down already (only a disconnection seen by this master starts an
//! episode), and a "back online" notice when a reported worker returns. Only workers with `notify_on_missing`
//! are reported (as Buildbot); mail goes to those addresses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::message::{Rendered, Site};
use super::{short_hash, HttpPayload, MailPayload};
use crate::config::{ChatService, ReporterDef, Target};
use crate::events::Event;
use crate::model::NewNotification;
use crate::store::Store;

/// One disconnect episode of a worker.
struct Episode {
    name: String,
    /// When it began, seconds since the epoch.
    since: i64,
    /// The reporters that have reported it missing, with when each one's timeout ends.
    due: Vec<(Arc<ReporterDef>, Instant, bool)>,
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn time_text(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Follows the workers' attachments on the store's bus until `stop`.
pub async fn run(
    defs: Vec<Arc<ReporterDef>>,
    notify: BTreeMap<String, Vec<String>>,
    site: Site,
    store: Store,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut events = store.events().subscribe();
    let mut episodes: HashMap<i64, Episode> = HashMap::new();
    loop {
        let next =
            episodes.values().flat_map(|e| e.due.iter()).filter(|(_, _, done)| !done).map(|(_, at, _)| *at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep => {
                let now = Instant::now();
                let mut rows = Vec::new();
                for (&workerid, episode) in &mut episodes {
                    for (def, at, done) in &mut episode.due {
                        if !*done && *at <= now {
                            *done = true;
                            let addresses = notify.get(&episode.name).cloned().unwrap_or_default();
                            rows.extend(notices(def, &site, "worker.missing", workerid, &episode.name, episode.since, &addresses));
                        }
                    }
                }
                keep(&store, &rows, &wake).await;
            }
            received = events.recv() => {
                let event = match received {
                    Ok(Some(published)) => published.event.clone(),
                    Ok(None) => return,
                    Err(lagged) => {
                        tracing::warn!(missed = lagged.missed, "the missing-worker reporter fell behind the events");
                        continue;
                    }
                };
                match event {
                    Event::WorkerDetached { workerid, name } => {
                        if notify.get(&name).is_none_or(Vec::is_empty) {
                            continue;
                        }
                        let due = defs.iter().map(|d| (d.clone(), Instant::now() + d.missing_timeout, false)).collect();
                        episodes.insert(workerid, Episode { name, since: now_seconds(), due });
                    }
                    Event::WorkerAttached { workerid, name } => {
                        let Some(episode) = episodes.remove(&workerid) else { continue };
                        let addresses = notify.get(&name).cloned().unwrap_or_default();
                        let rows: Vec<NewNotification> = episode
                            .due
                            .iter()
                            .filter(|(_, _, reported)| *reported)
                            .flat_map(|(def, _, _)| notices(def, &site, "worker.back", workerid, &name, episode.since, &addresses))
                            .collect();
                        keep(&store, &rows, &wake).await;
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn keep(store: &Store, rows: &[NewNotification], wake: &Notify) {
    if rows.is_empty() {
        return;
    }
    match store.add_notifications(rows).await {
        Ok(_) => wake.notify_waiters(),
        Err(e) => tracing::error!(error = %e, "keeping missing-worker notices failed"),
    }
}

/// The rows of one reporter's notice that worker `name` is missing (`worker.missing`) or back (`worker.back`).
pub fn notices(
    def: &ReporterDef,
    site: &Site,
    event: &str,
    workerid: i64,
    name: &str,
    since: i64,
    addresses: &[String],
) -> Vec<NewNotification> {
    let back = event == "worker.back";
    let subject = if back {
        format!("✔ {}: worker {name} is back online", site.title)
    } else {
        format!("☝ {}: worker {name} is missing", site.title)
    };
    let text = if back {
        format!(
            "Worker {name} is back online at {} (it disconnected at {}).\n",
            time_text(now_seconds()),
            time_text(since)
        )
    } else {
        format!(
            "Worker {name} disconnected at {} and has not come back for {} minutes.\n\n{} at {}\n",
            time_text(since),
            def.missing_timeout.as_secs() / 60,
            site.title,
            site.url
        )
    };
    let rendered = Rendered { subject: subject.clone(), text: text.clone(), html: None };
    let url = format!("{}#/workers/{workerid}", site.url);
    let key = |target: &str| format!("{}|{event}|{workerid}|{since}|{target}", def.name);
    let row = |target: String, payload: Vec<u8>| NewNotification {
        reporter: def.name.clone(),
        event: event.to_owned(),
        subject_id: workerid,
        dedupe_key: key(&target),
        target,
        supersede_key: None,
        payload,
    };
    let http = |method: &str, url: String, body: serde_json::Value| {
        serde_json::to_vec(&HttpPayload { method: method.into(), url, body, project: None }).unwrap_or_default()
    };
    let context = json!({});
    match &def.target {
        Target::Mail(mail) => {
            let domain = mail.from.rsplit('@').next().unwrap_or("kiln").trim_end_matches('>').to_owned();
            let message_id = format!("<kiln.{}@{domain}>", short_hash(&key("mail")));
            let first = format!(
                "<kiln.{}@{domain}>",
                short_hash(&format!("{}|worker.missing|{workerid}|{since}|mail", def.name))
            );
            addresses
                .iter()
                .map(|rcpt| {
                    let payload = MailPayload {
                        from: mail.from.clone(),
                        to: addresses.to_vec(),
                        cc: Vec::new(),
                        rcpt: rcpt.clone(),
                        subject: subject.clone(),
                        text: text.clone(),
                        html: None,
                        message_id: message_id.clone(),
                        in_reply_to: back.then(|| first.clone()),
                    };
                    row(rcpt.clone(), serde_json::to_vec(&payload).unwrap_or_default())
                })
                .collect()
        }
        Target::Chat { service, webhook_url } => {
            let results = Some(if back { crate::results::SUCCESS } else { crate::results::EXCEPTION });
            let body = match service {
                ChatService::Slack => super::targets::chat::slack(&rendered, &context, &url, results),
                ChatService::Mattermost => super::targets::chat::mattermost(&rendered, &url, results),
                ChatService::Discord => super::targets::chat::discord(&rendered, &context, &url, results),
            };
            vec![row("webhook".into(), http("POST", webhook_url.clone(), body))]
        }
        Target::Matrix { homeserver, room } => {
            let txn = short_hash(&key(room));
            let room_path: String = url::form_urlencoded::byte_serialize(room.as_bytes()).collect();
            let url = format!("{homeserver}/_matrix/client/v3/rooms/{room_path}/send/m.room.message/{txn}");
            vec![row(room.clone(), http("PUT", url, super::targets::chat::matrix(&rendered)))]
        }
        Target::Http { url: endpoint } => {
            let body = json!({
                "version": 1, "event": event, "delivery_id": key("http"),
                "worker": {"workerid": workerid, "name": name, "disconnected_at": since, "url": url},
            });
            vec![row("http".into(), http("POST", endpoint.clone(), body))]
        }
        Target::Forge(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MasterConfig;
    use std::time::Duration;

    /// Waits (at most 20 s) until the store holds `n` notices; returns them, the newest first.
    async fn wait_for(store: &Store, n: usize) -> Vec<crate::model::Notification> {
        for _ in 0..1000 {
            let all = store.notifications(&Default::default()).await.expect("list");
            if all.len() >= n {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // the store has no event for new notices
        }
        panic!("{n} notices expected: {:#?}", store.notifications(&Default::default()).await);
    }

    #[tokio::test]
    async fn one_notice_per_episode_and_one_when_back() {
        let text = "[[worker]]\nname = \"w\"\npassword = \"p\"\nnotify_on_missing = [\"ops@example.org\"]\n\
                    [[worker]]\nname = \"quiet\"\npassword = \"p\"\n\
                    [[builder]]\nname = \"b\"\nworkers = [\"w\"]\n  [[builder.step]]\n  command = \"make\"\n\
                    [[reporter]]\nname = \"ops\"\ntype = \"mail\"\nfrom = \"kiln@example.org\"\n\
                    generator = \"worker_missing\"\nmissing_timeout = 1\n";
        let config = MasterConfig::from_str(text, "master.toml").expect("config");
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&format!("sqlite:{}", dir.path().join("s.sqlite").display())).await.expect("store");
        let defs = config.reporters.iter().cloned().map(Arc::new).collect();
        let notify = config.workers.iter().map(|w| (w.name.clone(), w.notify_on_missing.clone())).collect();
        let site = Site { title: "Kiln".into(), url: "http://ci/".into() };
        let stop = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let bus = store.events().clone();
        let task = tokio::spawn(run(defs, notify, site, store.clone(), wake, stop.clone()));
        tokio::task::yield_now().await;
        // A disconnection shorter than the timeout is no episode to tell (were it told, its notice would come
        // before the next episode's, and there would be two below).
        bus.publish(Event::WorkerDetached { workerid: 1, name: "w".into() });
        bus.publish(Event::WorkerAttached { workerid: 1, name: "w".into() });
        // A long one is told once, and its end too; a worker without notify_on_missing never is.
        bus.publish(Event::WorkerDetached { workerid: 2, name: "quiet".into() });
        bus.publish(Event::WorkerDetached { workerid: 1, name: "w".into() });
        let missing = wait_for(&store, 1).await;
        let told: Vec<(&str, &str)> = missing.iter().map(|n| (n.event.as_str(), n.target.as_str())).collect();
        assert_eq!(told, [("worker.missing", "ops@example.org")]);
        bus.publish(Event::WorkerAttached { workerid: 1, name: "w".into() });
        let all = wait_for(&store, 2).await;
        assert_eq!(all.len(), 2, "{all:#?}");
        assert_eq!(all[0].event, "worker.back");
        let back: MailPayload = serde_json::from_slice(&all[0].payload).expect("payload");
        let first: MailPayload = serde_json::from_slice(&all[1].payload).expect("payload");
        assert_eq!(back.in_reply_to.as_deref(), Some(first.message_id.as_str()));
        assert!(first.text.contains("disconnected at 20"), "the real time: {}", first.text);
        stop.cancel();
        let _ = task.await;
    }
}
