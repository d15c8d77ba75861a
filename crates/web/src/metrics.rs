//! The master's Prometheus metrics (`GET /metrics`): what the engine did, counted from the events bus, and
//! what it holds now, read when scraped. docs/operations.md lists every metric.
//!
//! Counting never sits on the write path: a task follows the bus and updates the metrics; if it falls behind it
//! forgets the builds, steps and requests it was timing (their durations are not observed) and goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Subscription};
use crate::results;

/// Labels of a finished build: its builder and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub builder: String,
    pub result: String,
}

/// A builder.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuilderLabels {
    pub builder: String,
}

/// An HTTP request: its method, its route (the path pattern, not the path) and its status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// A reporter's notices in one state of the outbox.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    pub reporter: String,
    pub state: String,
}

/// A reporter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReporterLabels {
    pub reporter: String,
}

/// The outbox states a notice can be in, each shown for every reporter (0 when it has none).
pub const NOTICE_STATES: [&str; 5] = ["pending", "sending", "sent", "dead", "superseded"];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    // 0.1 s … about 3.6 hours.
    Histogram::new(exponential_buckets(0.1, 2.0, 18))
}

fn latencies() -> Histogram {
    // 0.5 ms … about 4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Every metric, in one registry.
pub struct Metrics {
    registry: Registry,
    builds: Family<BuildLabels, Counter>,
    build_seconds: Histograms<BuilderLabels>,
    step_seconds: Histograms<BuilderLabels>,
    queue_wait_seconds: Histograms<BuilderLabels>,
    log_lines: Counter,
    log_bytes: Counter,
    /// Requests waiting in the queue, set when scraped.
    pub queue_depth: Gauge,
    /// Workers connected, set when scraped.
    pub workers_connected: Gauge,
    /// Workers paused, set when scraped.
    pub workers_paused: Gauge,
    http_seconds: Histograms<HttpLabels>,
    notifications: Family<NoticeLabels, Gauge>,
    notifications_retrying: Family<ReporterLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kiln");
        let builds = Family::<BuildLabels, Counter>::default();
        registry.register("builds", "Builds finished, by builder and result", builds.clone());
        let build_seconds: Histograms<BuilderLabels> = Family::new_with_constructor(durations);
        registry.register("build_duration_seconds", "How long builds took, by builder", build_seconds.clone());
        let step_seconds: Histograms<BuilderLabels> = Family::new_with_constructor(durations);
        registry.register("step_duration_seconds", "How long steps took, by builder", step_seconds.clone());
        let queue_wait_seconds: Histograms<BuilderLabels> = Family::new_with_constructor(durations);
        registry.register(
            "queue_wait_seconds",
            "How long build requests waited in the queue before a build started, by builder",
            queue_wait_seconds.clone(),
        );
        let log_lines = Counter::default();
        registry.register("log_lines_stored", "Log lines stored", log_lines.clone());
        let log_bytes = Counter::default();
        registry.register("log_bytes_stored", "Bytes of log text stored (before compression)", log_bytes.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Build requests waiting in the queue", queue_depth.clone());
        let workers_connected = Gauge::default();
        registry.register("workers_connected", "Workers connected to this master", workers_connected.clone());
        let workers_paused = Gauge::default();
        registry.register("workers_paused", "Workers paused", workers_paused.clone());
        let http_seconds: Histograms<HttpLabels> = Family::new_with_constructor(latencies);
        registry.register(
            "http_request_duration_seconds",
            "How long the web server took to answer, by method, route and status",
            http_seconds.clone(),
        );
        let notifications = Family::<NoticeLabels, Gauge>::default();
        registry.register(
            "notifications",
            "Reporters' notices in the outbox, by reporter and state (pending, sending, sent, dead, superseded)",
            notifications.clone(),
        );
        let notifications_retrying = Family::<ReporterLabels, Gauge>::default();
        registry.register(
            "notifications_retrying",
            "Reporters' pending notices that failed at least one attempt and wait for a retry, by reporter",
            notifications_retrying.clone(),
        );
        Metrics {
            notifications,
            notifications_retrying,
            registry,
            builds,
            build_seconds,
            step_seconds,
            queue_wait_seconds,
            log_lines,
            log_bytes,
            queue_depth,
            workers_connected,
            workers_paused,
            http_seconds,
        }
    }

    /// Counts what the bus says until `stop`; `builder_names` names the builders by store id.
    pub fn follow(
        self: &Arc<Self>,
        mut events: Subscription,
        builder_names: HashMap<i64, String>,
        stop: CancellationToken,
    ) {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut timing = Timing::default();
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = events.recv() => next,
                };
                match next {
                    Ok(Some(published)) => metrics.count(&published.event, &builder_names, &mut timing),
                    Ok(None) => return,
                    Err(lagged) => {
                        tracing::warn!(missed = lagged.missed, "metrics fell behind the events; durations lost");
                        timing = Timing::default();
                    }
                }
            }
        });
    }

    fn count(&self, event: &Event, names: &HashMap<i64, String>, timing: &mut Timing) {
        let builder = |builderid: &i64| BuilderLabels {
            builder: names.get(builderid).cloned().unwrap_or_else(|| builderid.to_string()),
        };
        match event {
            Event::BuildRequestAdded { brid, .. } => {
                timing.requests.insert(*brid, Instant::now());
            }
            Event::BuildRequestClaimed { brid, builderid, .. } => {
                if let Some(queued) = timing.requests.remove(brid) {
                    let waited = queued.elapsed().as_secs_f64();
                    self.queue_wait_seconds.get_or_create(&builder(builderid)).observe(waited);
                }
            }
            Event::BuildRequestCompleted { brid, .. } | Event::BuildRequestCancelled { brid, .. } => {
                timing.requests.remove(brid);
            }
            Event::BuildStarted { buildid, builderid, .. } => {
                timing.builds.insert(*buildid, (Instant::now(), *builderid));
            }
            Event::BuildFinished { buildid, builderid, results: code, .. } => {
                let result = results::name(*code).unwrap_or("unknown").to_string();
                let labels = builder(builderid);
                self.builds.get_or_create(&BuildLabels { builder: labels.builder.clone(), result }).inc();
                if let Some((started, _)) = timing.builds.remove(buildid) {
                    self.build_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
                }
            }
            Event::StepStarted { stepid, buildid, .. } => {
                timing.steps.insert(*stepid, (Instant::now(), *buildid));
            }
            Event::StepFinished { stepid, .. } => {
                if let Some((started, buildid)) = timing.steps.remove(stepid) {
                    if let Some((_, builderid)) = timing.builds.get(&buildid) {
                        let took = started.elapsed().as_secs_f64();
                        self.step_seconds.get_or_create(&builder(builderid)).observe(took);
                    }
                }
            }
            Event::LogAppended { count, .. } => {
                self.log_lines.inc_by(u64::try_from(*count).unwrap_or(0));
            }
            _ => {}
        }
    }

    /// Counts one answered HTTP request.
    pub fn observe_http(&self, labels: HttpLabels, seconds: f64) {
        self.http_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Sets the notice gauges from the outbox's counts: every state of every configured reporter (0 if none),
    /// and the reporters no longer configured that still have notices.
    pub fn set_notifications(&self, configured: &[String], counts: &[crate::model::NotificationCounts]) {
        self.notifications.clear();
        self.notifications_retrying.clear();
        for reporter in configured {
            for state in NOTICE_STATES {
                let labels = NoticeLabels { reporter: reporter.clone(), state: state.to_owned() };
                self.notifications.get_or_create(&labels).set(0);
            }
            self.notifications_retrying.get_or_create(&ReporterLabels { reporter: reporter.clone() }).set(0);
        }
        for count in counts {
            let labels = NoticeLabels { reporter: count.reporter.clone(), state: count.state.clone() };
            self.notifications.get_or_create(&labels).set(count.count);
            let retrying = ReporterLabels { reporter: count.reporter.clone() };
            self.notifications_retrying.get_or_create(&retrying).inc_by(count.retrying);
        }
    }

    /// Brings the stored-log-bytes counter up to `total` (the store's own count since the master started).
    pub fn set_log_bytes(&self, total: u64) {
        let counted = self.log_bytes.get();
        if total > counted {
            self.log_bytes.inc_by(total - counted);
        }
    }

    /// The metrics in Prometheus's classic text format (0.0.4), which every scraper and `promtool` read.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry)?;
        Ok(classic_text(&open_metrics))
    }
}

/// OpenMetrics text as Prometheus's classic text format: a counter family is named with its `_total` suffix in
/// its `HELP` and `TYPE` lines (as its samples are), and the `# EOF` and `# UNIT` lines go.
fn classic_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        open_metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

/// What is being timed: requests queued, builds and steps running (each with when it began).
#[derive(Default)]
struct Timing {
    requests: HashMap<i64, Instant>,
    /// Build id → (start, builder id).
    builds: HashMap<i64, (Instant, i64)>,
    /// Step id → (start, build id).
    steps: HashMap<i64, (Instant, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;

    #[tokio::test]
    async fn builds_steps_requests_and_logs_are_counted_from_the_bus() {
        let bus = EventBus::new();
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        metrics.follow(bus.subscribe(), HashMap::from([(3, "test".to_string())]), stop.clone());
        let mut seen = bus.subscribe();
        let events = [
            Event::BuildRequestAdded { brid: 1, bsid: 1, builderid: 3 },
            Event::BuildRequestClaimed { brid: 1, bsid: 1, builderid: 3, masterid: 1 },
            Event::BuildStarted { buildid: 7, builderid: 3, number: 1, brid: 1, workerid: 1, masterid: 1 },
            Event::StepStarted { stepid: 9, buildid: 7, number: 0 },
            Event::LogAppended { logid: 4, stepid: 9, first_line: 0, count: 250 },
            Event::StepFinished { stepid: 9, buildid: 7, results: 2, state_string: String::new() },
            Event::BuildFinished { buildid: 7, builderid: 3, results: 2, state_string: String::new() },
        ];
        for event in events {
            bus.publish(event);
        }
        // The metrics task has seen them all once a second subscriber has (both read the same bus in order) and
        // the encoding shows the last one.
        for _ in 0..7 {
            seen.recv().await.expect("not lagged").expect("bus alive");
        }
        let text = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let text = metrics.encode().expect("encode");
                if text.contains("kiln_builds_total{builder=\"test\",result=\"failure\"} 1") {
                    return text;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the build is counted");
        assert!(text.contains("kiln_log_lines_stored_total 250"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_count{builder=\"test\"} 1"), "{text}");
        assert!(text.contains("kiln_step_duration_seconds_count{builder=\"test\"} 1"), "{text}");
        assert!(text.contains("kiln_queue_wait_seconds_count{builder=\"test\"} 1"), "{text}");
        stop.cancel();
    }

    #[test]
    fn notices_are_counted_by_reporter_and_state() {
        let metrics = Metrics::new();
        let count = |reporter: &str, state: &str, count, retrying| crate::model::NotificationCounts {
            reporter: reporter.into(),
            state: state.into(),
            count,
            retrying,
        };
        let counts = [count("mail", "sent", 3, 0), count("mail", "pending", 2, 1), count("gone", "dead", 4, 0)];
        metrics.set_notifications(&["mail".to_owned(), "chat".to_owned()], &counts);
        let text = metrics.encode().expect("encode");
        for line in [
            "kiln_notifications{reporter=\"mail\",state=\"sent\"} 3",
            "kiln_notifications{reporter=\"mail\",state=\"pending\"} 2",
            "kiln_notifications{reporter=\"mail\",state=\"dead\"} 0",
            "kiln_notifications{reporter=\"chat\",state=\"sent\"} 0",
            "kiln_notifications{reporter=\"gone\",state=\"dead\"} 4",
            "kiln_notifications_retrying{reporter=\"mail\"} 1",
            "kiln_notifications_retrying{reporter=\"chat\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        // A later scrape replaces the counts.
        metrics.set_notifications(&["chat".to_owned()], &[]);
        let text = metrics.encode().expect("encode");
        assert!(!text.contains("reporter=\"mail\""), "{text}");
    }
}
