//! Buildbot's `msgpack_experimental_v7` worker protocol: typed messages and their encoding.
//!
//! The master and a worker exchange WebSocket binary frames, each one msgpack map. Either side sends
//! *requests* (`op` + `seq_number` + op-specific keys) and answers each request of the other side with exactly
//! one *response* (`op: "response"`, the request's `seq_number`, a `result`, and `is_exception` on failure).
//! The two sides number their requests independently.
//!
//! This crate knows the messages and nothing else: no sockets, no processes, no builds.
//!
//! ```
//! use kiln_protocol::{decode, encode_request, Incoming, MasterRequest};
//!
//! let frame = encode_request(0, &MasterRequest::Print { message: "attached".into() });
//! match decode::<MasterRequest>(&frame).unwrap() {
//!     Incoming::Request { seq_number: 0, request: Ok(MasterRequest::Print { message }) } => {
//!         assert_eq!(message, "attached")
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

mod command;
mod envelope;
mod fields;
mod master_request;
mod path;
mod settings;
mod update;
mod worker_info;
mod worker_request;

pub use command::{
    ArgvWord, Command, CommandError, CommandLine, Compression, DownloadFileArgs, EnvValue, LogFile, ShellArgs,
    UploadDirectoryArgs, UploadFileArgs, COMMAND_NAMES, COMMAND_VERSION, DEFAULT_BLOCKSIZE,
};
pub use envelope::{decode, encode_request, encode_response, DecodeError, Incoming, Request, RequestError, Response};
pub use fields::{FieldError, Fields};
pub use master_request::MasterRequest;
pub use path::PathFlavour;
pub use rmpv::Value;
pub use settings::WorkerSettings;
pub use update::{FileStat, LineInfo, UpdateEntry};
pub use worker_info::WorkerInfo;
pub use worker_request::{read_file_data, WorkerRequest};

/// The id the master gives a command; every `update` and `complete` of the command carries it back.
/// Buildbot sends strings; an integer id is kept as an integer so that it goes back as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandId {
    Text(String),
    Number(i64),
}

impl CommandId {
    pub fn to_value(&self) -> Value {
        match self {
            CommandId::Text(s) => Value::from(s.as_str()),
            CommandId::Number(n) => Value::from(*n),
        }
    }

    fn read(fields: &Fields<'_>) -> Result<CommandId, FieldError> {
        match fields.get("command_id") {
            Some(value) => match value.as_i64() {
                Some(n) => Ok(CommandId::Number(n)),
                None => fields.str("command_id").map(CommandId::Text),
            },
            None => Err(FieldError::Missing { key: "command_id".into() }),
        }
    }
}

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandId::Text(s) => f.write_str(s),
            CommandId::Number(n) => write!(f, "{n}"),
        }
    }
}

impl From<&str> for CommandId {
    fn from(s: &str) -> Self {
        CommandId::Text(s.to_string())
    }
}

/// Nesting deeper than this is refused: no message of the protocol comes close, and it bounds recursion.
const MAX_DEPTH: usize = 64;

/// Decodes exactly one msgpack value from a frame, refusing trailing bytes and excessive nesting. (rmpv caps
/// its preallocation, so a hostile length prefix cannot make it allocate more than the frame holds.)
pub(crate) fn decode_value(frame: &[u8]) -> Result<Value, DecodeError> {
    let mut cursor = frame;
    let value = rmpv::decode::read_value_with_max_depth(&mut cursor, MAX_DEPTH)
        .map_err(|e| DecodeError::Msgpack(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(DecodeError::TrailingBytes(cursor.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
