//! The message envelope: requests carry `op` and `seq_number`, responses echo the request's `seq_number`.
//!
//! Each side numbers its own requests from 0 on each connection; a message is a response iff its `op` is
//! `"response"`, and its `seq_number` belongs to the number space of the side that sent the request.

use rmpv::Value;

use crate::fields::{kind, map, FieldError, Fields};

/// A request type of one direction: [`crate::MasterRequest`] or [`crate::WorkerRequest`].
pub trait Request: Sized {
    /// The `op` string on the wire.
    fn op(&self) -> &'static str;
    /// The op-specific keys (everything but `op` and `seq_number`).
    fn fields(&self) -> Vec<(&'static str, Value)>;
    /// Reads a request of this direction from its `op` and map.
    fn from_fields(op: &str, fields: Fields<'_>) -> Result<Self, RequestError>;
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub seq_number: i64,
    /// The result; for an exception, the error message as a string.
    pub result: Value,
    pub is_exception: bool,
}

impl Response {
    pub fn ok(seq_number: i64, result: Value) -> Self {
        Response { seq_number, result, is_exception: false }
    }

    pub fn exception(seq_number: i64, message: impl Into<String>) -> Self {
        Response { seq_number, result: Value::from(message.into()), is_exception: true }
    }

    /// The result, or the remote error message.
    pub fn into_result(self) -> Result<Value, String> {
        if self.is_exception {
            Err(crate::fields::scalar_text(&self.result).unwrap_or_else(|| format!("{}", self.result)))
        } else {
            Ok(self.result)
        }
    }
}

/// A decoded frame: a request of the peer (possibly one we cannot read, which still needs an answer), or a
/// response to one of ours.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<R> {
    Request { seq_number: i64, request: Result<R, RequestError> },
    Response(Response),
}

/// A frame that is not a message at all: it cannot be answered, only logged (Buildbot drops it too).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not valid msgpack: {0}")]
    Msgpack(String),
    #[error("frame has {0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("message is not a map but {0}")]
    NotAMap(String),
    #[error("message has no 'op'")]
    MissingOp,
    #[error("message has no integer 'seq_number'")]
    MissingSeqNumber,
}

/// A request that has an `op` and a `seq_number` but that this side cannot carry out as sent: it is
/// answered with an exception whose text is this error's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Buildbot's own wording, which masters and workers log.
    #[error("Command {op} does not exist.")]
    UnknownOp { op: String },
    #[error("bad '{op}' request: {source}")]
    BadField { op: String, source: FieldError },
}

impl RequestError {
    pub(crate) fn bad(op: &str) -> impl Fn(FieldError) -> RequestError + Copy + '_ {
        move |source| RequestError::BadField { op: op.to_string(), source }
    }
}

/// Encodes a request with its sequence number.
pub fn encode_request<R: Request>(seq_number: i64, request: &R) -> Vec<u8> {
    let mut entries =
        vec![(Value::from("op"), Value::from(request.op())), (Value::from("seq_number"), Value::from(seq_number))];
    entries.extend(request.fields().into_iter().map(|(k, v)| (Value::from(k), v)));
    to_bytes(&Value::Map(entries))
}

/// Encodes a response; `is_exception` is written only when true, as Buildbot does.
pub fn encode_response(response: &Response) -> Vec<u8> {
    let mut value = map([
        ("op", Value::from("response")),
        ("seq_number", Value::from(response.seq_number)),
        ("result", response.result.clone()),
    ]);
    if response.is_exception {
        if let Value::Map(entries) = &mut value {
            entries.push((Value::from("is_exception"), Value::Boolean(true)));
        }
    }
    to_bytes(&value)
}

fn to_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    rmpv::encode::write_value(&mut out, value).expect("writing msgpack into a Vec");
    out
}

/// Decodes one frame received from the peer.
pub fn decode<R: Request>(frame: &[u8]) -> Result<Incoming<R>, DecodeError> {
    let value = crate::decode_value(frame)?;
    let fields = Fields::of(&value).map_err(|_| DecodeError::NotAMap(kind(&value)))?;
    let op = fields.get("op").and_then(Value::as_str).ok_or(DecodeError::MissingOp)?;
    let seq_number = fields.get("seq_number").and_then(Value::as_i64).ok_or(DecodeError::MissingSeqNumber)?;
    if op == "response" {
        let result = fields.get("result").cloned().unwrap_or(Value::Nil);
        // Buildbot treats the presence of the key as the exception marker.
        let is_exception = fields.contains("is_exception");
        return Ok(Incoming::Response(Response { seq_number, result, is_exception }));
    }
    Ok(Incoming::Request { seq_number, request: R::from_fields(op, fields) })
}
