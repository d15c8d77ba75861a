//! Read-only queries for the web API: lists of builds, build requests, buildsets, steps, logs and workers, with
//! Buildbot's filters, order and pagination done in SQL.
//!
//! Field names are looked up in a static whitelist per resource ([`Resource::FIELDS`]); only the whitelist's SQL
//! text is ever put in a statement, and what the user typed reaches the database as bound values only.

use std::marker::PhantomData;

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use super::error::Context;
use super::{Store, StoreError};
use crate::model::{Build, BuildRequest, Buildset, Change, Log, Step, Worker};

/// What values a field holds, so the caller can parse a filter's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Int,
    Bool,
    Text,
}

/// A field a resource can be filtered and ordered by: its API name and the SQL expression it stands for.
#[derive(Debug)]
pub struct Field {
    name: &'static str,
    sql: &'static str,
    kind: FieldKind,
}

const fn field(name: &'static str, sql: &'static str, kind: FieldKind) -> Field {
    Field { name, sql, kind }
}

/// A comparison of a filter (Buildbot's `field__op=value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// The operator named `op` (`eq`, `ne`, `lt`, `le`, `gt`, `ge`).
    pub fn parse(op: &str) -> Option<Op> {
        Some(match op {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A value to compare a field with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterValue {
    Int(i64),
    Bool(bool),
    Text(String),
}

/// A field name that is not in the resource's whitelist, or a filter without a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown field '{0}'")]
    UnknownField(String),
    #[error("no value to compare '{0}' with")]
    NoValue(String),
}

/// Something the web API lists: its fields, where its rows come from and how a row is read.
pub trait Resource: Sized + Send + Unpin + 'static {
    /// The fields it can be filtered and ordered by.
    const FIELDS: &'static [Field];
    /// `SELECT <columns> FROM <tables>`.
    const SELECT: &'static str;
    /// `FROM <tables>` alone, for counting.
    const FROM: &'static str;
    /// The last key of every order: the resource's id, so pages are stable.
    const ID: &'static str;

    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error>;

    /// The names of the fields filters and orders may name.
    fn filterable() -> impl Iterator<Item = &'static str> {
        Self::FIELDS.iter().map(|f| f.name)
    }

    /// The kind of the field named `name`, if it is one.
    fn field_kind(name: &str) -> Option<FieldKind> {
        Self::FIELDS.iter().find(|f| f.name == name).map(|f| f.kind)
    }
}

fn lookup<R: Resource>(name: &str) -> Result<&'static Field, QueryError> {
    R::FIELDS.iter().find(|f| f.name == name).ok_or_else(|| QueryError::UnknownField(name.to_string()))
}

/// A filter: `field op value`; several values of `eq` mean "any of them", of `ne` "none of them".
#[derive(Debug)]
struct Filter {
    field: &'static Field,
    op: Op,
    values: Vec<FilterValue>,
}

/// Which rows of resource `R` to list, in which order, and which page of them.
#[derive(Debug)]
pub struct ListQuery<R> {
    filters: Vec<Filter>,
    order: Vec<(&'static Field, bool)>,
    limit: Option<i64>,
    offset: i64,
    resource: PhantomData<fn() -> R>,
}

impl<R> Default for ListQuery<R> {
    fn default() -> Self {
        ListQuery { filters: Vec::new(), order: Vec::new(), limit: None, offset: 0, resource: PhantomData }
    }
}

impl<R: Resource> ListQuery<R> {
    /// All rows, by id.
    pub fn new() -> Self {
        ListQuery::default()
    }

    /// Keeps the rows whose `field` compares with `values` by `op`.
    pub fn filter(&mut self, field: &str, op: Op, values: Vec<FilterValue>) -> Result<&mut Self, QueryError> {
        if values.is_empty() {
            return Err(QueryError::NoValue(field.to_string()));
        }
        self.filters.push(Filter { field: lookup::<R>(field)?, op, values });
        Ok(self)
    }

    /// Orders by `field` (after the orders already given), descending if `descending`.
    pub fn order_by(&mut self, field: &str, descending: bool) -> Result<&mut Self, QueryError> {
        self.order.push((lookup::<R>(field)?, descending));
        Ok(self)
    }

    /// Skips `offset` rows and returns at most `limit` (all without).
    pub fn page(&mut self, limit: Option<i64>, offset: i64) -> &mut Self {
        self.limit = limit.map(|l| l.max(0));
        self.offset = offset.max(0);
        self
    }

    /// ` WHERE …` (or nothing), with its values in order.
    fn where_clause(&self) -> (String, Vec<&FilterValue>) {
        let mut clauses = Vec::new();
        let mut binds = Vec::new();
        for f in &self.filters {
            let sql = f.field.sql;
            match (f.op, f.values.len()) {
                (Op::Eq | Op::Ne, n) if n > 1 => {
                    let marks = vec!["?"; n].join(", ");
                    let not = if f.op == Op::Ne { "NOT " } else { "" };
                    clauses.push(format!("{sql} {not}IN ({marks})"));
                    binds.extend(&f.values);
                }
                _ => {
                    for v in &f.values {
                        clauses.push(format!("{sql} {} ?", f.op.sql()));
                        binds.push(v);
                    }
                }
            }
        }
        let text = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        (text, binds)
    }

    fn order_clause(&self) -> String {
        let mut keys: Vec<String> =
            self.order.iter().map(|(f, desc)| format!("{} {}", f.sql, if *desc { "DESC" } else { "ASC" })).collect();
        keys.push(R::ID.to_string());
        format!(" ORDER BY {}", keys.join(", "))
    }
}

fn bind_all(mut args: SqliteArguments, values: &[&FilterValue]) -> Result<SqliteArguments, sqlx::Error> {
    use sqlx::Arguments;
    for v in values {
        match v {
            FilterValue::Int(i) => args.add(*i),
            FilterValue::Bool(b) => args.add(i16::from(*b)),
            FilterValue::Text(t) => args.add(t.clone()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// How many rows past the end of a page [`Store::list`] counts at most for [`Page::total`].
pub const COUNT_AHEAD: i64 = 10_000;

/// One page of a list, with the number of rows of the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The number of rows matching the filters: exact when there are at most `offset + limit +`
    /// [`COUNT_AHEAD`] of them, else that bound (a list longer than anyone pages through is not counted to
    /// its end: a million builds would cost every request milliseconds).
    pub total: i64,
}

/// Where a log belongs, to name it for a download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOrigin {
    pub builder: String,
    pub build_number: i64,
    pub step: String,
    pub log: Log,
}

use FieldKind::{Bool, Int, Text};

impl Resource for Build {
    const FIELDS: &'static [Field] = &[
        field("buildid", "id", Int),
        field("number", "number", Int),
        field("builderid", "builderid", Int),
        field("buildrequestid", "buildrequestid", Int),
        field("workerid", "workerid", Int),
        field("masterid", "masterid", Int),
        field("started_at", "started_at", Int),
        field("complete_at", "complete_at", Int),
        field("complete", "(complete_at IS NOT NULL)", Bool),
        field("state_string", "state_string", Text),
        field("results", "results", Int),
    ];
    const SELECT: &'static str = "SELECT id, number, builderid, buildrequestid, workerid, masterid, started_at, \
                                  complete_at, state_string, results FROM builds";
    const FROM: &'static str = "FROM builds";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::builds::build(r)
    }
}

impl Resource for BuildRequest {
    const FIELDS: &'static [Field] = &[
        field("buildrequestid", "br.id", Int),
        field("buildsetid", "br.buildsetid", Int),
        field("builderid", "br.builderid", Int),
        field("priority", "br.priority", Int),
        field("submitted_at", "br.submitted_at", Int),
        field("complete", "br.complete", Bool),
        field("results", "br.results", Int),
        field("complete_at", "br.complete_at", Int),
        field("waited_for", "br.waited_for", Bool),
        field("claimed", "(c.brid IS NOT NULL)", Bool),
        field("claimed_by_masterid", "c.masterid", Int),
        field("superseded_by", "br.superseded_by", Int),
    ];
    const SELECT: &'static str = "SELECT br.id, br.buildsetid, br.builderid, br.priority, br.submitted_at, \
                                  br.complete, br.results, br.complete_at, br.waited_for, br.superseded_by, \
                                  c.masterid FROM buildrequests br LEFT JOIN buildrequest_claims c ON c.brid = br.id";
    const FROM: &'static str = "FROM buildrequests br LEFT JOIN buildrequest_claims c ON c.brid = br.id";
    const ID: &'static str = "br.id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::buildrequests::build_request(r)
    }
}

impl Resource for Buildset {
    const FIELDS: &'static [Field] = &[
        field("bsid", "id", Int),
        field("reason", "reason", Text),
        field("external_idstring", "external_idstring", Text),
        field("submitted_at", "submitted_at", Int),
        field("complete", "complete", Bool),
        field("complete_at", "complete_at", Int),
        field("results", "results", Int),
        field("parent_buildid", "parent_buildid", Int),
        field("scheduler", "scheduler", Text),
    ];
    const SELECT: &'static str = "SELECT id, reason, external_idstring, scheduler, parent_buildid, submitted_at, \
                                  complete, complete_at, results FROM buildsets";
    const FROM: &'static str = "FROM buildsets";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::buildsets::buildset(r)
    }
}

impl Resource for Step {
    const FIELDS: &'static [Field] = &[
        field("stepid", "id", Int),
        field("number", "number", Int),
        field("name", "name", Text),
        field("buildid", "buildid", Int),
        field("started_at", "started_at", Int),
        field("complete_at", "complete_at", Int),
        field("complete", "(complete_at IS NOT NULL)", Bool),
        field("state_string", "state_string", Text),
        field("results", "results", Int),
        field("hidden", "hidden", Bool),
    ];
    const SELECT: &'static str = "SELECT id, number, name, buildid, started_at, complete_at, state_string, results, \
                                  hidden FROM steps";
    const FROM: &'static str = "FROM steps";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::steps::step(r)
    }
}

impl Resource for Log {
    const FIELDS: &'static [Field] = &[
        field("logid", "id", Int),
        field("name", "name", Text),
        field("slug", "slug", Text),
        field("stepid", "stepid", Int),
        field("complete", "complete", Bool),
        field("num_lines", "num_lines", Int),
        field("type", "type", Text),
    ];
    const SELECT: &'static str = "SELECT id, name, slug, stepid, complete, num_lines, type FROM logs";
    const FROM: &'static str = "FROM logs";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Log {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            slug: r.try_get("slug")?,
            stepid: r.try_get("stepid")?,
            complete: r.try_get::<i16, _>("complete")? != 0,
            num_lines: r.try_get("num_lines")?,
            log_type: r.try_get("type")?,
        })
    }
}

impl Resource for Worker {
    const FIELDS: &'static [Field] =
        &[field("workerid", "id", Int), field("name", "name", Text), field("paused", "paused", Bool)];
    const SELECT: &'static str = "SELECT id, name, info, paused, pause_reason FROM workers";
    const FROM: &'static str = "FROM workers";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Worker {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            info: r.try_get("info")?,
            paused: r.try_get::<i16, _>("paused")? != 0,
            pause_reason: r.try_get("pause_reason")?,
        })
    }
}

impl Resource for Change {
    const FIELDS: &'static [Field] = &[
        field("changeid", "id", Int),
        field("author", "author", Text),
        field("committer", "committer", Text),
        field("comments", "comments", Text),
        field("branch", "branch", Text),
        field("revision", "revision", Text),
        field("repository", "repository", Text),
        field("project", "project", Text),
        field("codebase", "codebase", Text),
        field("category", "category", Text),
        field("when_timestamp", "when_timestamp", Int),
    ];
    const SELECT: &'static str = super::changes::SELECT;
    const FROM: &'static str = "FROM changes";
    const ID: &'static str = "id";

    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        super::changes::change(r)
    }
}

impl Store {
    /// The page of resource `R` that `query` selects, and how many rows match its filters in all (exactly up to
    /// [`COUNT_AHEAD`] rows past the page; see [`Page::total`]).
    pub async fn list<R: Resource>(&self, query: &ListQuery<R>) -> Result<Page<R>, StoreError> {
        use sqlx::Arguments;
        let op = || format!("list {}", std::any::type_name::<R>().rsplit("::").next().unwrap_or("rows"));
        let (where_sql, values) = query.where_clause();
        let list_sql = format!("{}{where_sql}{} LIMIT ? OFFSET ?", R::SELECT, query.order_clause());
        let mut args = bind_all(SqliteArguments::default(), &values).context(op)?;
        args.add(query.limit.unwrap_or(-1)).map_err(sqlx::Error::Encode).context(op)?;
        args.add(query.offset).map_err(sqlx::Error::Encode).context(op)?;
        let rows = sqlx::query_with(AssertSqlSafe(list_sql), args).fetch_all(&self.pool).await.context(op)?;
        let items: Vec<R> = rows.iter().map(R::from_row).collect::<Result<_, _>>().context(op)?;

        let found = items.len() as i64;
        let page_full = query.limit.is_some_and(|limit| found >= limit);
        let total = if !page_full && (found > 0 || query.offset == 0) {
            // The page holds the last rows: the total is known without counting.
            query.offset + found
        } else {
            // Counting every row of a big table costs milliseconds a request (a million builds: ~4 ms, more
            // with a filter); count no further than COUNT_AHEAD rows past the page.
            let bound = query.offset.saturating_add(query.limit.unwrap_or(0)).saturating_add(COUNT_AHEAD);
            let count_sql = format!("SELECT COUNT(*) FROM (SELECT 1 {}{where_sql} LIMIT ?)", R::FROM);
            let mut args = bind_all(SqliteArguments::default(), &values).context(op)?;
            args.add(bound).map_err(sqlx::Error::Encode).context(op)?;
            sqlx::query_scalar_with(AssertSqlSafe(count_sql), args).fetch_one(&self.pool).await.context(op)?
        };
        Ok(Page { items, total })
    }

    /// The log `logid` with its step's name, its build's number and its builder's name.
    pub async fn log_origin(&self, logid: i64) -> Result<Option<LogOrigin>, StoreError> {
        let op = || format!("get the origin of log {logid}");
        let row = sqlx::query(
            "SELECT l.id, l.name, l.slug, l.stepid, l.complete, l.num_lines, l.type, s.name AS step_name, \
             b.number AS build_number, bl.name AS builder_name \
             FROM logs l JOIN steps s ON s.id = l.stepid JOIN builds b ON b.id = s.buildid \
             JOIN builders bl ON bl.id = b.builderid WHERE l.id = ?",
        )
        .bind(logid)
        .fetch_optional(&self.pool)
        .await
        .context(op)?;
        row.map(|r| -> Result<LogOrigin, sqlx::Error> {
            Ok(LogOrigin {
                builder: r.try_get("builder_name")?,
                build_number: r.try_get("build_number")?,
                step: r.try_get("step_name")?,
                log: Log::from_row(&r)?,
            })
        })
        .transpose()
        .context(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CANCELLED, SUCCESS};
    use crate::store::testing::temp_store;
    use crate::store::{LogType, NewBuildset};

    #[tokio::test]
    async fn filters_order_and_pages_run_in_sql() {
        let (store, _dir) = temp_store().await;
        let a = store.find_or_add_builder("a").await.expect("builder");
        let b = store.find_or_add_builder("b").await.expect("builder");
        let master = store.register_master("m").await.expect("master");
        let new = NewBuildset { reason: "t".into(), builderids: vec![a, b, a, b, a], ..NewBuildset::default() };
        let (_, brids) = store.add_buildset(&new).await.expect("buildset");
        assert!(store.claim_requests(&[brids[0]], master).await.expect("claim"));
        assert!(store.complete_requests(&[brids[4]], CANCELLED).await.expect("complete"));

        let mut q = ListQuery::<BuildRequest>::new();
        q.filter("builderid", Op::Eq, vec![FilterValue::Int(a)]).expect("field");
        q.order_by("buildrequestid", true).expect("field").page(Some(2), 0);
        let page = store.list(&q).await.expect("list");
        assert_eq!(page.total, 3);
        assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), vec![brids[4], brids[2]]);

        let mut q = ListQuery::<BuildRequest>::new();
        q.filter("claimed", Op::Eq, vec![FilterValue::Bool(true)]).expect("field");
        assert_eq!(store.list(&q).await.expect("list").items.iter().map(|r| r.id).collect::<Vec<_>>(), [brids[0]]);

        let mut q = ListQuery::<BuildRequest>::new();
        q.filter("buildrequestid", Op::Ne, vec![FilterValue::Int(brids[0]), FilterValue::Int(brids[1])])
            .expect("field")
            .filter("complete", Op::Eq, vec![FilterValue::Bool(false)])
            .expect("field")
            .page(None, 1);
        let page = store.list(&q).await.expect("list");
        assert_eq!((page.total, page.items.iter().map(|r| r.id).collect::<Vec<_>>()), (2, vec![brids[3]]));

        let mut q = ListQuery::<BuildRequest>::new();
        assert_eq!(
            q.filter("1; DROP TABLE builds", Op::Eq, vec![FilterValue::Int(1)]).err(),
            Some(QueryError::UnknownField("1; DROP TABLE builds".into()))
        );
        assert!(q.order_by("nope", false).is_err());
    }

    #[tokio::test]
    async fn totals_are_exact_up_to_count_ahead_rows_past_the_page() {
        let (store, _dir) = temp_store().await;
        let rows = COUNT_AHEAD + 100;
        sqlx::query(
            "INSERT INTO buildsets (reason, submitted_at) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) SELECT 'r', i FROM n",
        )
        .bind(rows)
        .execute(&store.pool)
        .await
        .expect("insert");
        let page = |limit: Option<i64>, offset: i64| {
            let store = store.clone();
            async move {
                let mut q = ListQuery::<Buildset>::new();
                q.page(limit, offset);
                let page = store.list(&q).await.expect("list");
                (page.items.len() as i64, page.total)
            }
        };
        // A full page: counted, up to COUNT_AHEAD rows past it.
        assert_eq!(page(Some(10), 0).await, (10, 10 + COUNT_AHEAD));
        assert_eq!(page(Some(10), 95).await, (10, rows), "within the bound the total is exact");
        // The last page, all rows, and past the end: exact.
        assert_eq!(page(Some(10), rows - 5).await, (5, rows));
        assert_eq!(page(None, 0).await, (rows, rows));
        assert_eq!(page(Some(10), 2 * rows).await, (0, rows));

        let mut q = ListQuery::<Buildset>::new();
        q.filter("submitted_at", Op::Gt, vec![FilterValue::Int(rows - 3)]).expect("field").page(Some(2), 0);
        let filtered = store.list(&q).await.expect("list");
        assert_eq!((filtered.items.len(), filtered.total), (2, 3));
    }

    #[tokio::test]
    async fn log_origin_names_the_builder_build_and_step() {
        let (store, _dir) = temp_store().await;
        let builder = store.find_or_add_builder("linux").await.expect("builder");
        let worker = store.find_or_add_worker("w").await.expect("worker");
        let master = store.register_master("m").await.expect("master");
        let new = NewBuildset { reason: "t".into(), builderids: vec![builder], ..NewBuildset::default() };
        let brid = store.add_buildset(&new).await.expect("buildset").1[0];
        let (buildid, _) = store.add_build(builder, brid, worker, master).await.expect("build");
        let (stepid, _) = store.add_step(buildid, "compile").await.expect("step");
        let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
        store.finish_step(stepid, SUCCESS, false).await.expect("finish");
        let origin = store.log_origin(logid).await.expect("origin").expect("exists");
        assert_eq!((origin.builder.as_str(), origin.build_number, origin.step.as_str()), ("linux", 1, "compile"));
        assert_eq!((origin.log.slug.as_str(), origin.log.log_type.as_str()), ("stdio", "s"));
        assert!(store.log_origin(logid + 1).await.expect("origin").is_none());

        let mut q = ListQuery::<Step>::new();
        q.filter("complete", Op::Eq, vec![FilterValue::Bool(true)]).expect("field");
        assert_eq!(store.list(&q).await.expect("list").total, 1);
    }
}
