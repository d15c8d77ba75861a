//! Requests a worker sends to the master: command progress and file transfer traffic.

use rmpv::Value;

use crate::envelope::{Request, RequestError};
use crate::fields::{as_bytes, Fields};
use crate::update::UpdateEntry;
use crate::CommandId;

/// A worker → master request. Every one names the command it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerRequest {
    /// Streamed status of a running command.
    Update {
        command_id: CommandId,
        entries: Vec<UpdateEntry>,
    },
    /// The command ended; `failure` is the text of an error that stopped it, `None` on a normal end.
    Complete {
        command_id: CommandId,
        failure: Option<String>,
    },
    /// A block of an uploaded file; the worker waits for the response before sending the next.
    UploadFileWrite {
        command_id: CommandId,
        data: Vec<u8>,
    },
    UploadFileUtime {
        command_id: CommandId,
        access_time: f64,
        modified_time: f64,
    },
    UploadFileClose {
        command_id: CommandId,
    },
    /// A block of the tar stream of an uploaded directory.
    UploadDirectoryWrite {
        command_id: CommandId,
        data: Vec<u8>,
    },
    /// The tar stream is complete: the master unpacks it.
    UploadDirectoryUnpack {
        command_id: CommandId,
    },
    /// Asks for at most `length` bytes of a downloaded file; the response's result is the data, empty at EOF.
    ReadFile {
        command_id: CommandId,
        length: u64,
    },
    ReadFileClose {
        command_id: CommandId,
    },
}

impl WorkerRequest {
    pub fn command_id(&self) -> &CommandId {
        match self {
            WorkerRequest::Update { command_id, .. }
            | WorkerRequest::Complete { command_id, .. }
            | WorkerRequest::UploadFileWrite { command_id, .. }
            | WorkerRequest::UploadFileUtime { command_id, .. }
            | WorkerRequest::UploadFileClose { command_id }
            | WorkerRequest::UploadDirectoryWrite { command_id, .. }
            | WorkerRequest::UploadDirectoryUnpack { command_id }
            | WorkerRequest::ReadFile { command_id, .. }
            | WorkerRequest::ReadFileClose { command_id } => command_id,
        }
    }
}

impl Request for WorkerRequest {
    fn op(&self) -> &'static str {
        match self {
            WorkerRequest::Update { .. } => "update",
            WorkerRequest::Complete { .. } => "complete",
            WorkerRequest::UploadFileWrite { .. } => "update_upload_file_write",
            WorkerRequest::UploadFileUtime { .. } => "update_upload_file_utime",
            WorkerRequest::UploadFileClose { .. } => "update_upload_file_close",
            WorkerRequest::UploadDirectoryWrite { .. } => "update_upload_directory_write",
            WorkerRequest::UploadDirectoryUnpack { .. } => "update_upload_directory_unpack",
            WorkerRequest::ReadFile { .. } => "update_read_file",
            WorkerRequest::ReadFileClose { .. } => "update_read_file_close",
        }
    }

    fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut fields = vec![("command_id", self.command_id().to_value())];
        match self {
            WorkerRequest::Update { entries, .. } => {
                fields.push(("args", Value::Array(entries.iter().map(UpdateEntry::to_value).collect())))
            }
            WorkerRequest::Complete { failure, .. } => {
                fields.push(("args", failure.as_deref().map(Value::from).unwrap_or(Value::Nil)))
            }
            WorkerRequest::UploadFileWrite { data, .. } | WorkerRequest::UploadDirectoryWrite { data, .. } => {
                fields.push(("args", Value::Binary(data.clone())))
            }
            WorkerRequest::UploadFileUtime { access_time, modified_time, .. } => {
                fields.push(("access_time", Value::F64(*access_time)));
                fields.push(("modified_time", Value::F64(*modified_time)));
            }
            WorkerRequest::ReadFile { length, .. } => fields.push(("length", Value::from(*length))),
            WorkerRequest::UploadFileClose { .. }
            | WorkerRequest::UploadDirectoryUnpack { .. }
            | WorkerRequest::ReadFileClose { .. } => {}
        }
        fields
    }

    fn from_fields(op: &str, fields: Fields<'_>) -> Result<Self, RequestError> {
        let bad = RequestError::bad(op);
        let known = [
            "update",
            "complete",
            "update_upload_file_write",
            "update_upload_file_utime",
            "update_upload_file_close",
            "update_upload_directory_write",
            "update_upload_directory_unpack",
            "update_read_file",
            "update_read_file_close",
        ];
        if !known.contains(&op) {
            return Err(RequestError::UnknownOp { op: op.to_string() });
        }
        let command_id = CommandId::read(&fields).map_err(bad)?;
        Ok(match op {
            "update" => {
                let entries = match fields.get("args") {
                    None => Vec::new(),
                    Some(Value::Array(items)) => {
                        items.iter().map(UpdateEntry::from_value).collect::<Result<_, _>>().map_err(bad)?
                    }
                    Some(other) => {
                        return Err(bad(crate::fields::FieldError::WrongType {
                            key: "args".into(),
                            expected: "a list of [key, value] pairs",
                            found: crate::fields::kind(other),
                        }))
                    }
                };
                WorkerRequest::Update { command_id, entries }
            }
            "complete" => WorkerRequest::Complete {
                command_id,
                failure: fields.get("args").map(|v| crate::fields::scalar_text(v).unwrap_or_else(|| v.to_string())),
            },
            "update_upload_file_write" => {
                WorkerRequest::UploadFileWrite { command_id, data: fields.bytes("args").map_err(bad)? }
            }
            "update_upload_directory_write" => {
                WorkerRequest::UploadDirectoryWrite { command_id, data: fields.bytes("args").map_err(bad)? }
            }
            "update_upload_file_utime" => WorkerRequest::UploadFileUtime {
                command_id,
                access_time: fields.f64("access_time").map_err(bad)?,
                modified_time: fields.f64("modified_time").map_err(bad)?,
            },
            "update_upload_file_close" => WorkerRequest::UploadFileClose { command_id },
            "update_upload_directory_unpack" => WorkerRequest::UploadDirectoryUnpack { command_id },
            "update_read_file" => WorkerRequest::ReadFile { command_id, length: fields.u64("length").map_err(bad)? },
            _ => WorkerRequest::ReadFileClose { command_id },
        })
    }
}

/// Reads the data of an `update_read_file` response: bytes, or `None`/empty at the end of the file.
pub fn read_file_data(result: &Value) -> Option<Vec<u8>> {
    as_bytes(result).filter(|data| !data.is_empty())
}
