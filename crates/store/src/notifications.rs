//! The reporters' outbox. A build's start and result are stored together with the notices they cause: the store
//! reads the build's facts ([`BuildFacts`]: the build, its changes, steps and the builder's history) inside the
//! write transaction, hands them to the caller's decision (a plain function: the store knows nothing of modes or
//! messages), and inserts the rows it returns before it commits. Senders then claim due rows with a lease, and
//! settle each one (sent, retry at a time, dead).

use std::collections::BTreeMap;

use sqlx::Row;

use super::error::Context;
use super::queries::select;
use super::{now, Store, StoreError};
use crate::engine::{DbConnection, DbRow};
use crate::events::Event;
use crate::model::{
    Build, BuildFacts, BuildsetFacts, Change, CompletedBuildset, NewNotification, Notification, NotificationCounts,
    NotificationState, PastBuild, Step, HISTORY,
};

/// What a reporter decides from a build's facts: the notices to keep.
pub type Decide<'a> = &'a (dyn Fn(&BuildFacts) -> Vec<NewNotification> + Send + Sync);

/// What a reporter decides from a completed buildset's facts: the notices to keep.
pub type BuildsetDecide<'a> = &'a (dyn Fn(&BuildsetFacts) -> Vec<NewNotification> + Send + Sync);

/// What the reporters decide when build requests complete, in the transaction that completes them: about a
/// request that ended without a build (cancelled in the queue: its facts carry no build, `results` set), and
/// about each buildset that the completion completes.
#[derive(Clone, Copy, Default)]
pub struct CompletionDecide<'a> {
    pub request: Option<Decide<'a>>,
    pub buildset: Option<BuildsetDecide<'a>>,
}

/// How one attempt to send a notice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; what the server answered.
    Sent { answer: String },
    /// Try again at `at` (milliseconds since the epoch).
    Retry { at: i64, error: String },
    /// Given up.
    Dead { error: String },
}

/// Which notices [`Store::notifications`] lists, the newest first.
#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    pub reporter: Option<String>,
    pub state: Option<NotificationState>,
    pub event: Option<String>,
    pub subject_id: Option<i64>,
    /// At most this many (capped at 1000; 0: 100).
    pub limit: i64,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Finishes the running build `buildid` like [`Store::finish_build_as`] and, in the same transaction, keeps
    /// the notices `decide` returns for it. Returns how many were new.
    pub async fn finish_build_notifying(
        &self,
        buildid: i64,
        results: i32,
        state_string: Option<&str>,
        decide: Option<Decide<'_>>,
    ) -> Result<usize, StoreError> {
        let op = || format!("finish build {buildid}");
        let mut tx = self.write(op).await?;
        let finished: Option<(i64, String)> = sqlx::query_as(
            "UPDATE builds SET complete_at = ?, results = ?, state_string = COALESCE(?, state_string) \
             WHERE id = ? AND complete_at IS NULL RETURNING builderid, state_string",
        )
        .bind(now())
        .bind(results)
        .bind(state_string)
        .bind(buildid)
        .fetch_optional(&mut *tx)
        .await
        .context(op)?;
        let Some((builderid, state_string)) = finished else {
            return Err(StoreError::NotFound { what: "running build", id: buildid });
        };
        let mut added = 0;
        if let Some(decide) = decide {
            if let Some(facts) = read_facts(&mut tx, buildid, true).await.context(op)? {
                added = insert_notifications(&mut tx, &decide(&facts)).await.context(op)?;
            }
        }
        tx.commit().await.context(op)?;
        self.publish(Event::BuildFinished { buildid, builderid, results, state_string });
        Ok(added)
    }

    /// Starts a build like [`Store::add_build`] and, in the same transaction, keeps the notices `decide` returns.
    pub async fn add_build_notifying(
        &self,
        builderid: i64,
        brid: i64,
        workerid: i64,
        masterid: i64,
        decide: Option<Decide<'_>>,
    ) -> Result<(i64, i64), StoreError> {
        let op = || format!("add build of request {brid} on builder {builderid}");
        let mut tx = self.write(op).await?;
        // The write lock is held, so MAX + 1 cannot race (UNIQUE (builderid, number) backs this up).
        let row: (i64, i64) = sqlx::query_as(
            "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, started_at, state_string) \
             SELECT COALESCE(MAX(number), 0) + 1, ?, ?, ?, ?, ?, ? FROM builds WHERE builderid = ? \
             RETURNING id, number",
        )
        .bind(builderid)
        .bind(brid)
        .bind(workerid)
        .bind(masterid)
        .bind(now())
        .bind(super::builds::STARTING)
        .bind(builderid)
        .fetch_one(&mut *tx)
        .await
        .context(op)?;
        let (buildid, number) = row;
        if let Some(decide) = decide {
            if let Some(facts) = read_facts(&mut tx, buildid, false).await.context(op)? {
                insert_notifications(&mut tx, &decide(&facts)).await.context(op)?;
            }
        }
        tx.commit().await.context(op)?;
        self.publish(Event::BuildStarted { buildid, builderid, number, brid, workerid, masterid });
        Ok(row)
    }

    /// The facts of build `buildid` with its builder's history, as a reporter's decision reads them (for
    /// sending a notice about an old build now).
    pub async fn build_facts(&self, buildid: i64) -> Result<Option<BuildFacts>, StoreError> {
        let op = || format!("read the facts of build {buildid}");
        let mut conn = self.pool.acquire().await.context(op)?;
        read_facts(&mut conn, buildid, true).await.context(op)
    }

    /// The logs of step `stepid`, in the order they were added: id, name and number of lines.
    pub async fn step_logs(&self, stepid: i64) -> Result<Vec<(i64, String, i64)>, StoreError> {
        sqlx::query_as("SELECT id, name, num_lines FROM logs WHERE stepid = ? ORDER BY id")
            .bind(stepid)
            .fetch_all(&self.pool)
            .await
            .context(|| format!("get the logs of step {stepid}"))
    }

    /// Keeps `rows` in the outbox (those whose dedupe key is kept already are skipped); returns how many were new.
    pub async fn add_notifications(&self, rows: &[NewNotification]) -> Result<usize, StoreError> {
        let op = || format!("add {} notifications", rows.len());
        let mut tx = self.write(op).await?;
        let added = insert_notifications(&mut tx, rows).await.context(op)?;
        tx.commit().await.context(op)?;
        Ok(added)
    }

    /// Claims up to `limit` notices of `reporter` that are due at `at` (ms): pending, or sending with an expired
    /// lease (a sender that died), and not behind an unsent older notice of the same supersede key. Each is
    /// leased for `lease_ms`.
    pub async fn claim_notifications(
        &self,
        reporter: &str,
        at: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let op = || format!("claim the notifications of reporter {reporter}");
        let mut tx = self.write(op).await?;
        let rows = sqlx::query(
            "UPDATE notifications SET state = 'sending', lease_until = ? WHERE id IN (\
               SELECT n.id FROM notifications n WHERE n.reporter = ? AND n.state IN ('pending', 'sending') \
               AND n.next_attempt_at <= ? AND (n.lease_until IS NULL OR n.lease_until < ?) \
               AND NOT EXISTS (SELECT 1 FROM notifications o WHERE n.supersede_key IS NOT NULL \
                 AND o.supersede_key = n.supersede_key AND o.id < n.id AND o.state IN ('pending', 'sending')) \
               ORDER BY n.next_attempt_at, n.id LIMIT ?) \
             RETURNING *",
        )
        .bind(at + lease_ms)
        .bind(reporter)
        .bind(at)
        .bind(at)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        tx.commit().await.context(op)?;
        let mut claimed = rows.iter().map(notification).collect::<Result<Vec<_>, _>>().context(op)?;
        claimed.sort_by_key(|n| n.id);
        Ok(claimed)
    }

    /// Records how an attempt at notice `id` ended (only if it is still being sent: a notice superseded or
    /// settled meanwhile is left as it is).
    pub async fn settle_notification(&self, id: i64, outcome: &Outcome) -> Result<(), StoreError> {
        let op = || format!("settle notification {id}");
        let query = match outcome {
            Outcome::Sent { answer } => sqlx::query(
                "UPDATE notifications SET state = 'sent', attempts = attempts + 1, sent_at = ?, answer = ?, \
                 lease_until = NULL WHERE id = ? AND state = 'sending'",
            )
            .bind(now())
            .bind(answer),
            Outcome::Retry { at, error } => sqlx::query(
                "UPDATE notifications SET state = 'pending', attempts = attempts + 1, next_attempt_at = ?, \
                 last_error = ?, lease_until = NULL WHERE id = ? AND state = 'sending'",
            )
            .bind(at)
            .bind(error),
            Outcome::Dead { error } => sqlx::query(
                "UPDATE notifications SET state = 'dead', attempts = attempts + 1, last_error = ?, \
                 lease_until = NULL WHERE id = ? AND state = 'sending'",
            )
            .bind(error),
        };
        query.bind(id).execute(&self.pool).await.context(op)?;
        Ok(())
    }

    /// When `reporter`'s next notice is due (ms), if it has one waiting: its time, or its lease's end.
    pub async fn next_notification_due(&self, reporter: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM notifications \
             WHERE reporter = ? AND state IN ('pending', 'sending')",
        )
        .bind(reporter)
        .fetch_one(&self.pool)
        .await
        .context(|| format!("find the next notification of reporter {reporter}"))
    }

    /// How many notices each reporter has in each state (for the metrics).
    pub async fn notification_counts(&self) -> Result<Vec<NotificationCounts>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT reporter, state, COUNT(*), COALESCE(SUM(state = 'pending' AND attempts > 0), 0) \
             FROM notifications GROUP BY reporter, state ORDER BY reporter, state",
        )
        .fetch_all(&self.pool)
        .await
        .context(|| "count the notifications".to_owned())?;
        Ok(rows
            .into_iter()
            .map(|(reporter, state, count, retrying)| NotificationCounts { reporter, state, count, retrying })
            .collect())
    }

    /// Gives up (`dead`, with `reason`) the unsent notices of reporters not in `configured`: their reporter was
    /// removed from the config. Returns each such reporter with how many it had.
    pub async fn abandon_notifications(
        &self,
        configured: &[String],
        reason: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let op = || "give up the notices of removed reporters".to_owned();
        let names = serde_json::to_string(configured).unwrap_or_else(|_| "[]".to_owned());
        let mut tx = self.write(op).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT reporter, COUNT(*) FROM notifications WHERE state IN ('pending', 'sending') \
             AND reporter NOT IN (SELECT value FROM json_each(?)) GROUP BY reporter ORDER BY reporter",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await
        .context(op)?;
        if !rows.is_empty() {
            sqlx::query(
                "UPDATE notifications SET state = 'dead', last_error = ?, lease_until = NULL \
                 WHERE state IN ('pending', 'sending') AND reporter NOT IN (SELECT value FROM json_each(?))",
            )
            .bind(reason)
            .bind(&names)
            .execute(&mut *tx)
            .await
            .context(op)?;
        }
        tx.commit().await.context(op)?;
        Ok(rows)
    }

    /// Notices, the newest first.
    pub async fn notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>, StoreError> {
        let op = || "list notifications".to_owned();
        let limit = match query.limit {
            0 => 100,
            n => n.clamp(1, 1000),
        };
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE (?1 IS NULL OR reporter = ?1) AND (?2 IS NULL OR state = ?2) \
             AND (?3 IS NULL OR event = ?3) AND (?4 IS NULL OR subject_id = ?4) ORDER BY id DESC LIMIT ?5",
        )
        .bind(&query.reporter)
        .bind(query.state.map(NotificationState::name))
        .bind(&query.event)
        .bind(query.subject_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context(op)?;
        rows.iter().map(notification).collect::<Result<_, _>>().context(op)
    }
}

fn notification(r: &DbRow) -> Result<Notification, sqlx::Error> {
    let state: String = r.try_get("state")?;
    Ok(Notification {
        id: r.try_get("id")?,
        reporter: r.try_get("reporter")?,
        event: r.try_get("event")?,
        subject_id: r.try_get("subject_id")?,
        target: r.try_get("target")?,
        dedupe_key: r.try_get("dedupe_key")?,
        supersede_key: r.try_get("supersede_key")?,
        payload: r.try_get("payload")?,
        state: NotificationState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown notification state {state:?}").into()))?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
        answer: r.try_get("answer")?,
    })
}

/// Inserts `rows`; a row with a supersede key replaces the pending older rows of that key.
pub(super) async fn insert_notifications(
    conn: &mut DbConnection,
    rows: &[NewNotification],
) -> Result<usize, sqlx::Error> {
    let created = now();
    let due = now_ms();
    let mut added = 0;
    for row in rows {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO notifications (reporter, event, subject_id, target, dedupe_key, supersede_key, payload, \
             next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&row.reporter)
        .bind(&row.event)
        .bind(row.subject_id)
        .bind(&row.target)
        .bind(&row.dedupe_key)
        .bind(&row.supersede_key)
        .bind(&row.payload)
        .bind(due)
        .bind(created)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(id) = id else { continue };
        added += 1;
        if let Some(key) = &row.supersede_key {
            sqlx::query(
                "UPDATE notifications SET state = 'superseded', last_error = 'replaced by notification ' || ? \
                 WHERE supersede_key = ? AND id < ? AND state = 'pending'",
            )
            .bind(id)
            .bind(key)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(added)
}

/// Reads what a reporter decides on about build `buildid`; with `history`, the builder's earlier builds too.
async fn read_facts(conn: &mut DbConnection, buildid: i64, history: bool) -> Result<Option<BuildFacts>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT b.*, bl.name AS builder_name, bl.tags AS builder_tags, w.name AS worker_name, \
         br.buildsetid AS bsid, bs.reason AS reason FROM builds b JOIN builders bl ON bl.id = b.builderid \
         LEFT JOIN workers w ON w.id = b.workerid JOIN buildrequests br ON br.id = b.buildrequestid \
         JOIN buildsets bs ON bs.id = br.buildsetid WHERE b.id = ?",
    )
    .bind(buildid)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let build: Build = super::builds::build(&row)?;
    let tags: String = row.try_get("builder_tags")?;
    let bsid: i64 = row.try_get("bsid")?;
    let mut facts = BuildFacts {
        builder: row.try_get("builder_name")?,
        builder_tags: serde_json::from_str(&tags).unwrap_or_default(),
        worker: row.try_get("worker_name")?,
        buildsetid: bsid,
        reason: row.try_get("reason")?,
        ..BuildFacts::default()
    };
    read_buildset_facts(conn, &mut facts, bsid, Some(buildid)).await?;
    let steps =
        sqlx::query(select::<Step>("WHERE buildid = ? ORDER BY number")).bind(buildid).fetch_all(&mut *conn).await?;
    facts.steps = steps.iter().map(super::steps::step).collect::<Result<_, _>>()?;
    if history {
        facts.history = read_history(conn, build.builderid, build.number).await?;
    }
    facts.build = build;
    Ok(Some(facts))
}

/// Reads into `facts` what a buildset says: its properties (then build `buildid`'s over them), source stamps
/// and changes.
async fn read_buildset_facts(
    conn: &mut DbConnection,
    facts: &mut BuildFacts,
    bsid: i64,
    buildid: Option<i64>,
) -> Result<(), sqlx::Error> {
    let mut properties = BTreeMap::new();
    for table in ["buildset_properties WHERE buildsetid = ?", "build_properties WHERE buildid = ?"] {
        let id = if table.starts_with("buildset") { Some(bsid) } else { buildid };
        let Some(id) = id else { continue };
        let sql = format!("SELECT name, value, source FROM {table}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(&mut *conn).await?;
        for r in &rows {
            let p = super::properties::property(r)?;
            properties.insert(p.name, p.value);
        }
    }
    facts.properties = properties;
    let stamps = sqlx::query(
        "SELECT ss.branch, ss.revision, ss.repository, ss.project, ss.codebase FROM buildset_sourcestamps bs \
         JOIN sourcestamps ss ON ss.id = bs.sourcestampid WHERE bs.buildsetid = ? ORDER BY ss.codebase, ss.id",
    )
    .bind(bsid)
    .fetch_all(&mut *conn)
    .await?;
    facts.sourcestamps = stamps.iter().map(super::buildsets::sourcestamp).collect::<Result<_, _>>()?;
    let changes = sqlx::query(select::<Change>(
        "WHERE id IN (SELECT changeid FROM buildset_changes WHERE buildsetid = ?) ORDER BY id",
    ))
    .bind(bsid)
    .fetch_all(&mut *conn)
    .await?;
    facts.changes = changes.iter().map(super::changes::change).collect::<Result<_, _>>()?;
    Ok(())
}

/// What a reporter decides on about build request `brid` before any build of it: its builder, its buildset's
/// properties, source stamps and changes, and a build without id or number (`state_string` "pending", or
/// the request's result once it is complete).
async fn read_request_facts(conn: &mut DbConnection, brid: i64) -> Result<Option<BuildFacts>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT br.builderid, br.buildsetid, br.submitted_at, br.complete_at, br.results, bl.name AS builder_name, \
         bl.tags AS builder_tags, bs.reason FROM buildrequests br JOIN builders bl ON bl.id = br.builderid \
         JOIN buildsets bs ON bs.id = br.buildsetid WHERE br.id = ?",
    )
    .bind(brid)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let tags: String = row.try_get("builder_tags")?;
    let bsid: i64 = row.try_get("buildsetid")?;
    let complete_at: Option<i64> = row.try_get("complete_at")?;
    let results: Option<i32> = if complete_at.is_some() { row.try_get("results")? } else { None };
    let build = Build {
        builderid: row.try_get("builderid")?,
        buildrequestid: brid,
        started_at: row.try_get("submitted_at")?,
        complete_at,
        state_string: results.and_then(crate::results::name).unwrap_or("pending").to_owned(),
        results,
        ..Build::default()
    };
    let mut facts = BuildFacts {
        build,
        builder: row.try_get("builder_name")?,
        builder_tags: serde_json::from_str(&tags).unwrap_or_default(),
        buildsetid: bsid,
        reason: row.try_get("reason")?,
        ..BuildFacts::default()
    };
    read_buildset_facts(conn, &mut facts, bsid, None).await?;
    Ok(Some(facts))
}

/// Keeps the notices `decide` returns for each new request of `brids` (inside the transaction that adds them).
pub(super) async fn notify_requests(
    conn: &mut DbConnection,
    brids: &[i64],
    decide: Decide<'_>,
) -> Result<usize, sqlx::Error> {
    let mut added = 0;
    for &brid in brids {
        if let Some(facts) = read_request_facts(conn, brid).await? {
            added += insert_notifications(conn, &decide(&facts)).await?;
        }
    }
    Ok(added)
}

/// Keeps the notices `decide` returns when the requests `brids` complete and complete the buildsets
/// `completed` (inside the transaction that completes them).
pub(super) async fn notify_completion(
    conn: &mut DbConnection,
    brids: &[i64],
    completed: &[CompletedBuildset],
    decide: CompletionDecide<'_>,
) -> Result<usize, sqlx::Error> {
    let mut added = 0;
    if let Some(decide) = decide.request {
        for &brid in brids {
            let built: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM builds WHERE buildrequestid = ?)")
                .bind(brid)
                .fetch_one(&mut *conn)
                .await?;
            if !built {
                if let Some(facts) = read_request_facts(conn, brid).await? {
                    added += insert_notifications(conn, &decide(&facts)).await?;
                }
            }
        }
    }
    if let Some(decide) = decide.buildset {
        for done in completed {
            let reason: String = sqlx::query_scalar("SELECT reason FROM buildsets WHERE id = ?")
                .bind(done.bsid)
                .fetch_one(&mut *conn)
                .await?;
            // The last build of each request (a RETRY is followed by the build that ran it again).
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT MAX(b.id) FROM builds b JOIN buildrequests br ON br.id = b.buildrequestid \
                 WHERE br.buildsetid = ? AND b.complete_at IS NOT NULL GROUP BY br.id ORDER BY br.id",
            )
            .bind(done.bsid)
            .fetch_all(&mut *conn)
            .await?;
            let mut facts = BuildsetFacts { bsid: done.bsid, results: done.results, reason, builds: Vec::new() };
            for id in ids {
                facts.builds.extend(read_facts(conn, id, true).await?);
            }
            added += insert_notifications(conn, &decide(&facts)).await?;
        }
    }
    Ok(added)
}

/// The builds of `builderid` numbered before `number`, the newest first, with their branches and people.
async fn read_history(conn: &mut DbConnection, builderid: i64, number: i64) -> Result<Vec<PastBuild>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT b.id, b.number, b.results, \
         (SELECT ss.branch FROM buildrequests br JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
          JOIN sourcestamps ss ON ss.id = bss.sourcestampid WHERE br.id = b.buildrequestid \
          AND ss.branch IS NOT NULL ORDER BY ss.codebase, ss.id LIMIT 1) AS branch, \
         (SELECT p.value FROM build_properties p WHERE p.buildid = b.id AND p.name = 'branch') AS branch_property, \
         (SELECT p.value FROM build_properties p WHERE p.buildid = b.id AND p.name = 'owner') AS owner \
         FROM builds b WHERE b.builderid = ? AND b.number < ? ORDER BY b.number DESC LIMIT ?",
    )
    .bind(builderid)
    .bind(number)
    .bind(HISTORY)
    .fetch_all(&mut *conn)
    .await?;
    let mut history = Vec::with_capacity(rows.len());
    for r in &rows {
        let branch: Option<String> = r.try_get("branch")?;
        let branch_property: Option<String> = r.try_get("branch_property")?;
        let branch = branch.or_else(|| {
            branch_property
                .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        let owner: Option<String> = r.try_get("owner")?;
        let people = owner
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .map(|v| match v {
                serde_json::Value::String(s) => vec![s],
                serde_json::Value::Array(list) => {
                    list.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                }
                _ => Vec::new(),
            })
            .unwrap_or_default();
        history.push(PastBuild {
            id: r.try_get("id")?,
            number: r.try_get("number")?,
            results: r.try_get("results")?,
            branch,
            people,
        });
    }
    let (Some(oldest), Some(_)) = (history.last().map(|b| b.number), history.first()) else {
        return Ok(history);
    };
    let people = sqlx::query(
        "SELECT b.id, c.author, c.committer FROM builds b JOIN buildrequests br ON br.id = b.buildrequestid \
         JOIN buildset_changes bc ON bc.buildsetid = br.buildsetid JOIN changes c ON c.id = bc.changeid \
         WHERE b.builderid = ? AND b.number < ? AND b.number >= ? ORDER BY c.id",
    )
    .bind(builderid)
    .bind(number)
    .bind(oldest)
    .fetch_all(&mut *conn)
    .await?;
    let index: BTreeMap<i64, usize> = history.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
    for r in &people {
        let id: i64 = r.try_get("id")?;
        let Some(&i) = index.get(&id) else { continue };
        let author: String = r.try_get("author")?;
        let committer: Option<String> = r.try_get("committer")?;
        for person in std::iter::once(author).chain(committer) {
            if !person.is_empty() && !history[i].people.contains(&person) {
                history[i].people.push(person);
            }
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewBuildset;
    use crate::results::{FAILURE, SUCCESS};
    use crate::testing::{temp_store, url};

    fn notice(reporter: &str, key: &str, supersede: Option<&str>) -> NewNotification {
        NewNotification {
            reporter: reporter.into(),
            event: "build.finished".into(),
            subject_id: 1,
            target: "t".into(),
            dedupe_key: key.into(),
            supersede_key: supersede.map(str::to_owned),
            payload: key.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn notices_are_kept_with_the_result_that_caused_them() {
        let (store, dir) = temp_store().await;
        let builder = store.find_or_add_builder("b").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        let mut builds = Vec::new();
        for _ in 0..3 {
            let new = NewBuildset { reason: "test".into(), builderids: vec![builder], ..NewBuildset::default() };
            let brid = store.add_buildset(&new).await.expect("buildset").1[0];
            let (buildid, _) = store.add_build(builder, brid, worker, master).await.expect("build");
            builds.push(buildid);
        }
        store.finish_build(builds[0], SUCCESS).await.expect("finish");
        let decide = |facts: &BuildFacts| {
            let history: Vec<(i64, Option<i32>)> = facts.history.iter().map(|b| (b.number, b.results)).collect();
            vec![notice("r", &format!("{}|{history:?}", facts.build.number), None)]
        };
        let added = store.finish_build_notifying(builds[2], FAILURE, None, Some(&decide)).await.expect("finish");
        assert_eq!(added, 1);
        let listed = store.notifications(&NotificationQuery::default()).await.expect("list");
        assert_eq!(listed.len(), 1);
        // The decision saw the result of build 1 and build 2 still running, newest first.
        assert_eq!(listed[0].dedupe_key, "3|[(2, None), (1, Some(0))]");
        // A second finish of the same build is refused and keeps nothing.
        assert!(store.finish_build_notifying(builds[2], FAILURE, None, Some(&decide)).await.is_err());
        store.close().await;
        let store = Store::open(&url(&dir)).await.expect("reopen");
        assert_eq!(store.notifications(&NotificationQuery::default()).await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn claims_lease_order_and_supersede() {
        let (store, _dir) = temp_store().await;
        let added = store
            .add_notifications(&[
                notice("r", "a", Some("k")),
                notice("r", "b", None),
                notice("r", "a", None), // the same dedupe key: not kept twice
                notice("other", "c", None),
            ])
            .await
            .expect("add");
        assert_eq!(added, 3);
        let at = now_ms() + 60_000; // every notice added below is due by then
        let claimed = store.claim_notifications("r", at, 1000, 10).await.expect("claim");
        assert_eq!(claimed.iter().map(|n| n.dedupe_key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // Leased: nothing more to claim until the lease ends.
        assert!(store.claim_notifications("r", at, 1000, 10).await.expect("claim").is_empty());
        // "a" is being sent; a newer status of its key waits behind it, and replaces nothing being sent.
        store.add_notifications(&[notice("r", "a2", Some("k")), notice("r", "a3", Some("k"))]).await.expect("add");
        assert!(store.claim_notifications("r", at, 1000, 10).await.expect("claim").is_empty());
        let superseded = store
            .notifications(&NotificationQuery { state: Some(NotificationState::Superseded), ..Default::default() })
            .await
            .expect("list");
        assert_eq!(superseded.iter().map(|n| n.dedupe_key.as_str()).collect::<Vec<_>>(), ["a2"]);
        store.settle_notification(claimed[0].id, &Outcome::Sent { answer: "250 ok".into() }).await.expect("sent");
        let next = store.claim_notifications("r", at, 1000, 10).await.expect("claim");
        assert_eq!(next.iter().map(|n| n.dedupe_key.as_str()).collect::<Vec<_>>(), ["a3"]);
        // An expired lease is claimable again (a sender that died).
        let again = store.claim_notifications("r", at + 1001, 1000, 10).await.expect("claim");
        assert_eq!(again.iter().map(|n| n.dedupe_key.as_str()).collect::<Vec<_>>(), ["b", "a3"]);
        let error = "451 try later".to_owned();
        store.settle_notification(again[0].id, &Outcome::Retry { at: at + 5000, error }).await.expect("retry");
        store.settle_notification(again[1].id, &Outcome::Dead { error: "550".into() }).await.expect("dead");
        assert_eq!(store.next_notification_due("r").await.expect("due"), Some(at + 5000));
        let b = store
            .notifications(&NotificationQuery {
                reporter: Some("r".into()),
                state: Some(NotificationState::Pending),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!((b[0].attempts, b[0].last_error.as_deref()), (1, Some("451 try later")));
    }
}
