//! Reading typed fields out of msgpack maps, with errors that name the key.
//!
//! Buildbot is written in Python: numbers arrive as ints or floats, absent options arrive as `nil` or not at
//! all, booleans sometimes as `0`/`1`. These readers accept what Buildbot sends and say which key was wrong
//! otherwise.

use rmpv::Value;

/// A field of a message was missing or had the wrong type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldError {
    #[error("missing key '{key}'")]
    Missing { key: String },
    #[error("key '{key}': expected {expected}, found {found}")]
    WrongType { key: String, expected: &'static str, found: String },
    #[error("expected a map, found {found}")]
    NotAMap { found: String },
}

/// A short description of a value's type, for error messages.
pub(crate) fn kind(value: &Value) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::Boolean(_) => "a boolean".into(),
        Value::Integer(_) => "an integer".into(),
        Value::F32(_) | Value::F64(_) => "a float".into(),
        Value::String(_) => "a string".into(),
        Value::Binary(_) => "binary data".into(),
        Value::Array(_) => "an array".into(),
        Value::Map(_) => "a map".into(),
        Value::Ext(tag, _) => format!("an extension (type {tag})"),
    }
}

/// The entries of a msgpack map, looked up by string key.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    entries: &'a [(Value, Value)],
}

impl<'a> Fields<'a> {
    pub fn of(value: &'a Value) -> Result<Self, FieldError> {
        match value {
            Value::Map(entries) => Ok(Fields { entries }),
            other => Err(FieldError::NotAMap { found: kind(other) }),
        }
    }

    /// The value of `key`, `None` if absent or nil.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v).filter(|v| !v.is_nil())
    }

    /// Whether `key` is present at all (even with a nil value).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == Some(key))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.entries.iter().filter_map(|(k, v)| k.as_str().map(|k| (k, v)))
    }

    fn wrong(key: &str, expected: &'static str, found: &Value) -> FieldError {
        FieldError::WrongType { key: key.to_string(), expected, found: kind(found) }
    }

    fn required(&self, key: &str) -> Result<&'a Value, FieldError> {
        self.get(key).ok_or_else(|| FieldError::Missing { key: key.to_string() })
    }

    pub fn str(&self, key: &str) -> Result<String, FieldError> {
        let value = self.required(key)?;
        as_text(value).ok_or_else(|| Self::wrong(key, "a string", value))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => as_text(value).map(Some).ok_or_else(|| Self::wrong(key, "a string", value)),
        }
    }

    /// A string, or a number rendered as a string (command ids, signal names).
    pub fn str_or_number(&self, key: &str) -> Result<String, FieldError> {
        let value = self.required(key)?;
        scalar_text(value).ok_or_else(|| Self::wrong(key, "a string or a number", value))
    }

    pub fn f64(&self, key: &str) -> Result<f64, FieldError> {
        let value = self.required(key)?;
        as_f64(value).ok_or_else(|| Self::wrong(key, "a number", value))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => as_f64(value).map(Some).ok_or_else(|| Self::wrong(key, "a number", value)),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64, FieldError> {
        let value = self.required(key)?;
        as_u64(value).ok_or_else(|| Self::wrong(key, "a non-negative integer", value))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => as_u64(value).map(Some).ok_or_else(|| Self::wrong(key, "a non-negative integer", value)),
        }
    }

    pub fn i64(&self, key: &str) -> Result<i64, FieldError> {
        let value = self.required(key)?;
        value.as_i64().ok_or_else(|| Self::wrong(key, "an integer", value))
    }

    /// A boolean (Python also sends 0/1); absent or nil gives `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(value) => match value.as_i64() {
                Some(n) => Ok(n != 0),
                None => Err(Self::wrong(key, "a boolean", value)),
            },
        }
    }

    /// One string or a list of strings (Buildbot's `dir` arguments take both).
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, FieldError> {
        let value = self.required(key)?;
        match value {
            Value::Array(items) => items
                .iter()
                .map(|item| as_text(item).ok_or_else(|| Self::wrong(key, "a list of strings", item)))
                .collect(),
            other => as_text(other).map(|s| vec![s]).ok_or_else(|| Self::wrong(key, "a list of strings", other)),
        }
    }

    pub fn bytes(&self, key: &str) -> Result<Vec<u8>, FieldError> {
        let value = self.required(key)?;
        as_bytes(value).ok_or_else(|| Self::wrong(key, "binary data", value))
    }
}

/// Text of a msgpack string (invalid UTF-8 replaced) or of binary data (Python 2 era peers).
pub(crate) fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(match s.as_str() {
            Some(s) => s.to_string(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Integer(n) => Some(n.to_string()),
        Value::F64(f) => Some(f.to_string()),
        Value::F32(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(if *b { "True" } else { "False" }.to_string()),
        other => as_text(other),
    }
}

pub(crate) fn as_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Binary(b) => Some(b.clone()),
        Value::String(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

pub(crate) fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::F64(f) => Some(*f),
        Value::F32(f) => Some(f64::from(*f)),
        Value::Integer(n) => n.as_f64(),
        _ => None,
    }
}

pub(crate) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(n) => n.as_u64(),
        // Python may send 16384.0 where an int was meant.
        Value::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64 => Some(*f as u64),
        _ => None,
    }
}

/// Builds a msgpack map from string keys.
pub(crate) fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

pub(crate) fn opt<T: Into<Value>>(value: Option<T>) -> Value {
    value.map(Into::into).unwrap_or(Value::Nil)
}
