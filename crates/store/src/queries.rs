//! Read-only queries for the web API: lists of builds, build requests, buildsets, steps, logs and workers, with
//! Buildbot's filters, order and pagination done in SQL.
//!
//! Each resource declares its fields once ([`Resource::FIELDS`], in `resources.rs`): the API name, the column or
//! SQL expression, the kind of value and the JSON; the `SELECT` list, the filter whitelist and the rendering are
//! all read from there. Field names are looked up in that whitelist; only its SQL text is ever put in a
//! statement, and what the user typed reaches the database as bound values only.

use std::marker::PhantomData;

use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, Row};

use super::error::Context;
use super::{Store, StoreError};
use crate::engine::{DbArguments, DbRow};
use crate::model::Log;

/// What values a field holds, so the caller can parse a filter's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Int,
    Bool,
    Text,
}

/// A field of a resource as the API shows it: its name, the column it is read from (if it is one), the SQL that
/// filters and orders compare (if they may name it), and its JSON value.
pub struct Field<R: 'static> {
    name: &'static str,
    /// A column the resource's row reader needs: in the `SELECT` list.
    column: Option<&'static str>,
    /// What filters and orders compare, and the kind of its values; `None`: they may not name it.
    filter: Option<(&'static str, FieldKind)>,
    json: fn(&R) -> Value,
}

impl<R> Field<R> {
    /// Its name in the API: the key of its JSON, and what filters and orders call it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its value as the API shows it.
    pub fn json(&self, resource: &R) -> Value {
        (self.json)(resource)
    }
}

impl<R> std::fmt::Debug for Field<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field("column", &self.column)
            .field("filter", &self.filter)
            .finish()
    }
}

/// A column shown as field `name`, which filters and orders may name.
pub(super) const fn column<R>(
    name: &'static str,
    column: &'static str,
    kind: FieldKind,
    json: fn(&R) -> Value,
) -> Field<R> {
    Field { name, column: Some(column), filter: Some((column, kind)), json }
}

/// A column shown as field `name`, which filters and orders may not name.
pub(super) const fn shown_column<R>(name: &'static str, column: &'static str, json: fn(&R) -> Value) -> Field<R> {
    Field { name, column: Some(column), filter: None, json }
}

/// A field computed from the row's columns: `sql` for filters and orders, `json` from the resource.
pub(super) const fn computed<R>(
    name: &'static str,
    sql: &'static str,
    kind: FieldKind,
    json: fn(&R) -> Value,
) -> Field<R> {
    Field { name, column: None, filter: Some((sql, kind)), json }
}

/// A field shown only (not stored as one column, not filterable).
pub(super) const fn shown<R>(name: &'static str, json: fn(&R) -> Value) -> Field<R> {
    Field { name, column: None, filter: None, json }
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
    /// Its collection's name in the API (`builds`).
    const PLURAL: &'static str;
    /// What one of them is called in messages (`build request`).
    const WHAT: &'static str;
    /// Its fields, in the API's terms: each one's column or SQL, whether filters may name it, and its JSON.
    const FIELDS: &'static [Field<Self>];
    /// The tables its rows come from (`builds`, or a join).
    const TABLES: &'static str;
    /// Columns its row reader needs besides its fields' own.
    const MORE_COLUMNS: &'static [&'static str] = &[];
    /// The last key of every order: the resource's id, so pages are stable.
    const ID: &'static str;

    /// Reads a row of [`Resource::select`].
    fn from_row(row: &DbRow) -> Result<Self, sqlx::Error>;

    /// `SELECT <the fields' columns and MORE_COLUMNS> FROM <TABLES>`.
    fn select() -> String {
        let fields = Self::FIELDS.iter().filter_map(|f| f.column);
        let columns: Vec<&str> = fields.chain(Self::MORE_COLUMNS.iter().copied()).collect();
        format!("SELECT {} FROM {}", columns.join(", "), Self::TABLES)
    }

    /// The names of the fields filters and orders may name.
    fn filterable() -> impl Iterator<Item = &'static str> {
        Self::FIELDS.iter().filter(|f| f.filter.is_some()).map(|f| f.name)
    }

    /// The kind of the filterable field named `name`, if it is one.
    fn field_kind(name: &str) -> Option<FieldKind> {
        lookup::<Self>(name).ok().map(|(_, kind)| kind)
    }

    /// Its fields as the API shows them, name → value.
    fn fields_json(&self) -> Map<String, Value> {
        Self::FIELDS.iter().map(|f| (f.name.to_string(), f.json(self))).collect()
    }
}

/// `R`'s [`Resource::select`] followed by `tail` (`WHERE …`, `ORDER BY …`), for the store's own reads.
pub(super) fn select<R: Resource>(tail: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!("{} {tail}", R::select()))
}

/// The SQL and the kind of the filterable field `name` of `R`.
fn lookup<R: Resource>(name: &str) -> Result<(&'static str, FieldKind), QueryError> {
    R::FIELDS
        .iter()
        .filter(|f| f.name == name)
        .find_map(|f| f.filter)
        .ok_or_else(|| QueryError::UnknownField(name.to_string()))
}

/// A filter: `field op value`; several values of `eq` mean "any of them", of `ne` "none of them".
#[derive(Debug)]
struct Filter {
    /// The field's SQL.
    sql: &'static str,
    op: Op,
    values: Vec<FilterValue>,
}

/// Which rows of resource `R` to list, in which order, and which page of them.
#[derive(Debug)]
pub struct ListQuery<R> {
    filters: Vec<Filter>,
    /// The fields' SQL, and whether descending.
    order: Vec<(&'static str, bool)>,
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
        self.filters.push(Filter { sql: lookup::<R>(field)?.0, op, values });
        Ok(self)
    }

    /// Orders by `field` (after the orders already given), descending if `descending`.
    pub fn order_by(&mut self, field: &str, descending: bool) -> Result<&mut Self, QueryError> {
        self.order.push((lookup::<R>(field)?.0, descending));
        Ok(self)
    }

    /// Skips `offset` rows and returns at most `limit` (all without).
    pub fn page(&mut self, limit: Option<i64>, offset: i64) -> &mut Self {
        self.limit = limit.map(|l| l.max(0));
        self.offset = offset.max(0);
        self
    }

    /// ` WHERE …` (or nothing), with its values in order: numbered parameters (`$1`, `$2`, …), which SQLite and
    /// PostgreSQL both read.
    fn where_clause(&self) -> (String, Vec<&FilterValue>) {
        let mut clauses = Vec::new();
        let mut binds = Vec::new();
        for f in &self.filters {
            let sql = f.sql;
            match (f.op, f.values.len()) {
                (Op::Eq | Op::Ne, n) if n > 1 => {
                    let marks: Vec<String> = (1..=n).map(|i| format!("${}", binds.len() + i)).collect();
                    let marks = marks.join(", ");
                    let not = if f.op == Op::Ne { "NOT " } else { "" };
                    clauses.push(format!("{sql} {not}IN ({marks})"));
                    binds.extend(&f.values);
                }
                _ => {
                    for v in &f.values {
                        binds.push(v);
                        clauses.push(format!("{sql} {} ${}", f.op.sql(), binds.len()));
                    }
                }
            }
        }
        let text = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        (text, binds)
    }

    fn order_clause(&self) -> String {
        let mut keys: Vec<String> =
            self.order.iter().map(|(sql, desc)| format!("{sql} {}", if *desc { "DESC" } else { "ASC" })).collect();
        keys.push(R::ID.to_string());
        format!(" ORDER BY {}", keys.join(", "))
    }
}

fn bind_all(mut args: DbArguments, values: &[&FilterValue]) -> Result<DbArguments, sqlx::Error> {
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

impl Store {
    /// The page of resource `R` that `query` selects, and how many rows match its filters in all (exactly up to
    /// [`COUNT_AHEAD`] rows past the page; see [`Page::total`]).
    pub async fn list<R: Resource>(&self, query: &ListQuery<R>) -> Result<Page<R>, StoreError> {
        use sqlx::Arguments;
        let op = || format!("list {}", std::any::type_name::<R>().rsplit("::").next().unwrap_or("rows"));
        let (where_sql, values) = query.where_clause();
        let n = values.len();
        // `LIMIT -1` (no limit) is SQLite's; PostgreSQL reads `LIMIT NULL` so.
        let list_sql = format!("{}{where_sql}{} LIMIT ${} OFFSET ${}", R::select(), query.order_clause(), n + 1, n + 2);
        let mut args = bind_all(DbArguments::default(), &values).context(op)?;
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
            let count_sql = format!("SELECT COUNT(*) FROM (SELECT 1 FROM {}{where_sql} LIMIT ${})", R::TABLES, n + 1);
            let mut args = bind_all(DbArguments::default(), &values).context(op)?;
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
    use crate::testing::temp_store;
    use crate::{BuildRequest, Buildset, LogType, NewBuildset, Step};

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
