//! Buildbot's query parameters of collections (`data/resultspec.py`): `limit`, `offset`, `order` (`-field` for
//! descending; repeatable), `field` (which fields to return; repeatable) and filters `field=value` or
//! `field__op=value` with `op` one of `eq ne lt le gt ge`. Several values of one `eq` filter mean "any of them".
//! `property` (repeatable; `*` for all) adds the named build properties to each build.
//!
//! Every repeatable part is bounded (see [`Bounds`]): a query with more terms is refused with a 400 that says
//! which bound it passed, before any SQL is built, so no client can make the store build a statement it refuses.

use std::cmp::Ordering;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde_json::Value;

use super::ApiError;
use crate::store::{FieldKind, FilterValue, ListQuery, Op, Resource};

/// The query string as name/value pairs, in order; a malformed one is a 400 in JSON.
pub(super) struct Params(pub Vec<(String, String)>);

impl Params {
    fn from_uri(uri: &axum::http::Uri) -> Result<Params, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Params, ApiError> {
        Params::from_uri(&parts.uri)
    }
}

/// Reads a query string as a collection request does — the parameters, the bounds, the store query of every
/// resource, the in-memory filtering of config collections — and says what a client would be answered: `Err`
/// with a 400's message, never a panic. For the fuzz target (`fuzz/fuzz_targets/query.rs`) and its property
/// test.
pub fn check_query(query: &str) -> Result<(), String> {
    use crate::store::{Build, BuildRequest, Buildset, Change, Log, Step, Worker};
    let uri: axum::http::Uri = format!("/?{query}").parse().map_err(|e| format!("not a URI: {e}"))?;
    let spec = Params::from_uri(&uri).and_then(|params| Spec::parse(&params)).map_err(|e| e.message)?;
    let results = [
        spec.query::<Build>().map(drop),
        spec.query::<BuildRequest>().map(drop),
        spec.query::<Buildset>().map(drop),
        spec.query::<Step>().map(drop),
        spec.query::<Log>().map(drop),
        spec.query::<Worker>().map(drop),
        spec.query::<Change>().map(drop),
    ];
    let items = vec![
        serde_json::json!({"builderid": 1, "name": "a", "tags": ["x"], "paused": false}),
        serde_json::json!({"builderid": 2, "name": null, "paused": true}),
    ];
    let applied = spec.apply(items, &["builderid", "name", "tags", "paused"]).map(|(page, _)| {
        for item in page {
            drop(spec.select(item));
        }
    });
    results.into_iter().chain([applied]).find_map(Result::err).map_or(Ok(()), |e| Err(e.message))
}

/// The most terms a query may have of each kind; more is a 400.
pub(super) struct Bounds;

impl Bounds {
    /// Query parameters in all (a request's query string has at most this many `name=value` pairs).
    pub(super) const PARAMETERS: usize = 256;
    /// `order` terms.
    pub(super) const ORDER: usize = 16;
    /// `field` terms.
    pub(super) const FIELDS: usize = 64;
    /// Distinct filters (`field__op`).
    pub(super) const FILTERS: usize = 32;
    /// Values of one filter (`builderid=1&builderid=2…`).
    pub(super) const FILTER_VALUES: usize = 128;
    /// `property` terms.
    pub(super) const PROPERTIES: usize = 64;
}

fn too_many(what: &str, bound: usize) -> ApiError {
    ApiError::bad_request(format!("too many {what} in the query (at most {bound})"))
}

/// A filter as written: the parameter (for messages), the field, the operator and the values.
#[derive(Debug)]
struct RawFilter {
    param: String,
    field: String,
    op: Op,
    values: Vec<String>,
}

/// The parsed parameters of a collection request.
#[derive(Debug, Default)]
pub(super) struct Spec {
    /// The fields to return; all without.
    fields: Vec<String>,
    limit: Option<i64>,
    offset: i64,
    /// Field and whether descending.
    order: Vec<(String, bool)>,
    filters: Vec<RawFilter>,
    /// The build properties to add to each build (`*` for all).
    properties: Vec<String>,
}

fn count(param: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid '{param}': '{value}' is not a non-negative integer")))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_value(param: &str, kind: FieldKind, text: &str) -> Result<FilterValue, ApiError> {
    match kind {
        FieldKind::Int => text
            .parse()
            .map(FilterValue::Int)
            .map_err(|_| ApiError::bad_request(format!("invalid '{param}': '{text}' is not an integer"))),
        FieldKind::Bool => parse_bool(text)
            .map(FilterValue::Bool)
            .ok_or_else(|| ApiError::bad_request(format!("invalid '{param}': '{text}' is not a boolean"))),
        FieldKind::Text => Ok(FilterValue::Text(text.to_string())),
    }
}

impl Spec {
    pub(super) fn parse(params: &Params) -> Result<Spec, ApiError> {
        if params.0.len() > Bounds::PARAMETERS {
            return Err(too_many("parameters", Bounds::PARAMETERS));
        }
        let mut spec = Spec::default();
        for (name, value) in &params.0 {
            match name.as_str() {
                "limit" => spec.limit = Some(count(name, value)?),
                "offset" => spec.offset = count(name, value)?,
                "field" => spec.fields.push(value.clone()),
                "property" => spec.properties.push(value.clone()),
                "order" => match value.strip_prefix('-') {
                    Some(field) => spec.order.push((field.to_string(), true)),
                    None => spec.order.push((value.clone(), false)),
                },
                _ => {
                    let (field, op) = match name.split_once("__") {
                        Some((field, op)) => {
                            let op = Op::parse(op).ok_or_else(|| {
                                ApiError::bad_request(format!("invalid parameter '{name}': unknown operator '{op}'"))
                            })?;
                            (field, op)
                        }
                        None => (name.as_str(), Op::Eq),
                    };
                    let filters = spec.filters.len();
                    match spec.filters.iter_mut().find(|f| f.field == field && f.op == op) {
                        Some(f) if f.values.len() >= Bounds::FILTER_VALUES => {
                            return Err(too_many(&format!("values of '{name}'"), Bounds::FILTER_VALUES));
                        }
                        Some(f) => f.values.push(value.clone()),
                        None if filters >= Bounds::FILTERS => {
                            return Err(too_many("filters", Bounds::FILTERS));
                        }
                        None => spec.filters.push(RawFilter {
                            param: name.clone(),
                            field: field.to_string(),
                            op,
                            values: vec![value.clone()],
                        }),
                    }
                }
            }
        }
        for (what, count, bound) in [
            ("'order' terms", spec.order.len(), Bounds::ORDER),
            ("'field' terms", spec.fields.len(), Bounds::FIELDS),
            ("'property' terms", spec.properties.len(), Bounds::PROPERTIES),
        ] {
            if count > bound {
                return Err(too_many(what, bound));
            }
        }
        Ok(spec)
    }

    /// The build properties asked for with `property` (`*` for all).
    pub(super) fn properties(&self) -> &[String] {
        &self.properties
    }

    /// The store query for resource `R`: every field name must be one of `R`'s.
    pub(super) fn query<R: Resource>(&self) -> Result<ListQuery<R>, ApiError> {
        let mut query = ListQuery::<R>::new();
        for f in &self.filters {
            let kind = R::field_kind(&f.field)
                .ok_or_else(|| ApiError::bad_request(format!("invalid parameter '{}': unknown field", f.param)))?;
            let values = f.values.iter().map(|v| parse_value(&f.param, kind, v)).collect::<Result<_, _>>()?;
            query.filter(&f.field, f.op, values).map_err(|e| ApiError::bad_request(format!("'{}': {e}", f.param)))?;
        }
        for (field, descending) in &self.order {
            query
                .order_by(field, *descending)
                .map_err(|_| ApiError::bad_request(format!("invalid 'order': unknown field '{field}'")))?;
        }
        query.page(self.limit, self.offset);
        Ok(query)
    }

    /// Filters, orders and pages `items` (rendered resources) in memory, for the collections that come from the
    /// config; `fields` are the names that may be filtered and ordered by. Returns the page and the total.
    pub(super) fn apply(&self, mut items: Vec<Value>, fields: &[&str]) -> Result<(Vec<Value>, usize), ApiError> {
        for f in &self.filters {
            if !fields.contains(&f.field.as_str()) {
                return Err(ApiError::bad_request(format!("invalid parameter '{}': unknown field", f.param)));
            }
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                let value = item.get(&f.field).unwrap_or(&Value::Null);
                let wanted = f.values.iter().map(|v| typed_like(&f.param, value, v)).collect::<Result<Vec<_>, _>>()?;
                let ord = |w: &Value| compare(value, w);
                let keep = match f.op {
                    Op::Eq => wanted.iter().any(|w| ord(w) == Some(Ordering::Equal)),
                    Op::Ne => wanted.iter().all(|w| ord(w) != Some(Ordering::Equal)),
                    Op::Lt => wanted.iter().all(|w| ord(w) == Some(Ordering::Less)),
                    Op::Le => wanted.iter().all(|w| matches!(ord(w), Some(Ordering::Less | Ordering::Equal))),
                    Op::Gt => wanted.iter().all(|w| ord(w) == Some(Ordering::Greater)),
                    Op::Ge => wanted.iter().all(|w| matches!(ord(w), Some(Ordering::Greater | Ordering::Equal))),
                };
                if keep {
                    kept.push(item);
                }
            }
            items = kept;
        }
        for (field, _) in &self.order {
            if !fields.contains(&field.as_str()) {
                return Err(ApiError::bad_request(format!("invalid 'order': unknown field '{field}'")));
            }
        }
        items.sort_by(|a, b| {
            self.order
                .iter()
                .map(|(field, desc)| {
                    let o = compare(a.get(field).unwrap_or(&Value::Null), b.get(field).unwrap_or(&Value::Null))
                        .unwrap_or(Ordering::Equal);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        let total = items.len();
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let limit = self.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Ok((items.into_iter().skip(offset).take(limit).collect(), total))
    }

    /// Whether `field=` asks for `name` (every field without it).
    pub(super) fn wants(&self, name: &str) -> bool {
        self.fields.is_empty() || self.fields.iter().any(|f| f == name)
    }

    /// `item` with only the fields asked for with `field=` (all of them without).
    pub(super) fn select(&self, item: Value) -> Value {
        match item {
            Value::Object(map) if !self.fields.is_empty() => {
                Value::Object(map.into_iter().filter(|(k, _)| self.fields.contains(k)).collect())
            }
            other => other,
        }
    }
}

/// The filter text `text` as a value of the same type as `like`.
fn typed_like(param: &str, like: &Value, text: &str) -> Result<Value, ApiError> {
    Ok(match like {
        Value::Number(_) => Value::from(
            text.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid '{param}': '{text}' is not an integer")))?,
        ),
        Value::Bool(_) => Value::Bool(
            parse_bool(text)
                .ok_or_else(|| ApiError::bad_request(format!("invalid '{param}': '{text}' is not a boolean")))?,
        ),
        _ => Value::String(text.to_string()),
    })
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(pairs: &[(&str, &str)]) -> Result<Spec, ApiError> {
        Spec::parse(&Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, needle) in [
            (vec![("limit", "x")], "'limit'"),
            (vec![("offset", "-1")], "'offset'"),
            (vec![("builderid__like", "1")], "'builderid__like'"),
        ] {
            let err = spec(&pairs).expect_err("bad");
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(err.message.contains(needle), "{}", err.message);
        }
        let err = spec(&[("number", "abc")]).expect("parses").query::<crate::store::Build>().expect_err("not int");
        assert!(err.message.contains("'number'") && err.message.contains("integer"), "{}", err.message);
        let err = spec(&[("nope", "1")]).expect("parses").query::<crate::store::Build>().expect_err("unknown");
        assert!(err.message.contains("'nope'"), "{}", err.message);
    }

    #[test]
    fn every_repeatable_term_is_bounded() {
        let repeated = |name: &str, value: &str, n: usize| -> Vec<(String, String)> {
            (0..n).map(|_| (name.to_string(), value.to_string())).collect()
        };
        let cases = [
            (repeated("order", "-buildid", Bounds::ORDER + 1), "'order' terms"),
            (repeated("field", "buildid", Bounds::FIELDS + 1), "'field' terms"),
            (repeated("property", "x", Bounds::PROPERTIES + 1), "'property' terms"),
            (repeated("builderid", "1", Bounds::FILTER_VALUES + 1), "values of 'builderid'"),
            ((0..=Bounds::FILTERS).map(|i| (format!("f{i}"), "1".to_string())).collect(), "filters"),
            (repeated("order", "-buildid", 2_000), "parameters"),
        ];
        for (pairs, needle) in cases {
            let err = Spec::parse(&Params(pairs)).expect_err("too many");
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(err.message.contains(needle) && err.message.contains("at most"), "{}", err.message);
        }
        let at_bound = repeated("order", "-buildid", Bounds::ORDER);
        Spec::parse(&Params(at_bound))
            .expect("the bound itself is accepted")
            .query::<crate::store::Build>()
            .expect("query");
    }

    proptest::proptest! {
        #[test]
        fn any_query_string_is_answered_without_a_panic(
            query in "([a-z_]{0,12}(__(eq|ne|lt|le|gt|ge|x))?=[-a-z0-9*%+]{0,8}&?){0,40}"
        ) {
            let _ = check_query(&query);
        }

        #[test]
        fn any_bytes_are_answered_without_a_panic(query in "\\PC{0,200}") {
            let _ = check_query(&query);
        }
    }

    #[test]
    fn in_memory_filters_order_and_pages() {
        let items = vec![
            json!({"builderid": 1, "name": "b"}),
            json!({"builderid": 2, "name": "a"}),
            json!({"builderid": 3, "name": "c"}),
        ];
        let s = spec(&[("builderid__gt", "1"), ("order", "name"), ("limit", "1")]).expect("spec");
        let (page, total) = s.apply(items.clone(), &["builderid", "name"]).expect("apply");
        assert_eq!((page, total), (vec![json!({"builderid": 2, "name": "a"})], 2));
        let s = spec(&[("name", "a"), ("name", "c"), ("order", "-builderid"), ("field", "name")]).expect("spec");
        let (page, _) = s.apply(items.clone(), &["builderid", "name"]).expect("apply");
        let page: Vec<Value> = page.into_iter().map(|i| s.select(i)).collect();
        assert_eq!(page, vec![json!({"name": "c"}), json!({"name": "a"})]);
        assert!(spec(&[("tags", "x")]).expect("spec").apply(items, &["name"]).is_err());
    }
}
