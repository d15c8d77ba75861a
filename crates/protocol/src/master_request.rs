//! Requests the master sends to a worker.

use rmpv::Value;

use crate::envelope::{Request, RequestError};
use crate::fields::Fields;
use crate::settings::WorkerSettings;
use crate::CommandId;

/// A master → worker request.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterRequest {
    /// Log a message; also the master's liveness ping (`"ping"`) and first message (`"attached"`).
    Print {
        message: String,
    },
    Keepalive,
    GetWorkerInfo,
    /// Line splitting and output buffering for the commands that follow.
    SetWorkerSettings(WorkerSettings),
    /// Start a command; its progress comes back as `update` and `complete` requests with the same id.
    /// `args` is kept as sent; [`crate::Command::parse`] reads it.
    StartCommand {
        command_id: CommandId,
        command_name: String,
        args: Value,
        builder_name: Option<String>,
    },
    InterruptCommand {
        command_id: CommandId,
        why: String,
        builder_name: Option<String>,
    },
    Shutdown,
}

impl Request for MasterRequest {
    fn op(&self) -> &'static str {
        match self {
            MasterRequest::Print { .. } => "print",
            MasterRequest::Keepalive => "keepalive",
            MasterRequest::GetWorkerInfo => "get_worker_info",
            MasterRequest::SetWorkerSettings(_) => "set_worker_settings",
            MasterRequest::StartCommand { .. } => "start_command",
            MasterRequest::InterruptCommand { .. } => "interrupt_command",
            MasterRequest::Shutdown => "shutdown",
        }
    }

    fn fields(&self) -> Vec<(&'static str, Value)> {
        match self {
            MasterRequest::Print { message } => vec![("message", Value::from(message.as_str()))],
            MasterRequest::Keepalive | MasterRequest::GetWorkerInfo | MasterRequest::Shutdown => vec![],
            MasterRequest::SetWorkerSettings(settings) => vec![("args", settings.to_value())],
            MasterRequest::StartCommand { command_id, command_name, args, builder_name } => {
                let mut fields = vec![
                    ("command_id", command_id.to_value()),
                    ("command_name", Value::from(command_name.as_str())),
                    ("args", args.clone()),
                ];
                if let Some(name) = builder_name {
                    fields.push(("builder_name", Value::from(name.as_str())));
                }
                fields
            }
            MasterRequest::InterruptCommand { command_id, why, builder_name } => {
                let mut fields = vec![("command_id", command_id.to_value()), ("why", Value::from(why.as_str()))];
                if let Some(name) = builder_name {
                    fields.push(("builder_name", Value::from(name.as_str())));
                }
                fields
            }
        }
    }

    fn from_fields(op: &str, fields: Fields<'_>) -> Result<Self, RequestError> {
        let bad = RequestError::bad(op);
        Ok(match op {
            "print" => MasterRequest::Print { message: fields.str_or_number("message").map_err(bad)? },
            "keepalive" => MasterRequest::Keepalive,
            "get_worker_info" => MasterRequest::GetWorkerInfo,
            "set_worker_settings" => {
                let args = fields.get("args").cloned().unwrap_or(Value::Nil);
                let args = Fields::of(&args).map_err(bad)?;
                MasterRequest::SetWorkerSettings(WorkerSettings::from_fields(args).map_err(bad)?)
            }
            "start_command" => MasterRequest::StartCommand {
                command_id: CommandId::read(&fields).map_err(bad)?,
                command_name: fields.str("command_name").map_err(bad)?,
                args: fields.get("args").cloned().unwrap_or(Value::Map(vec![])),
                builder_name: fields.opt_str("builder_name").map_err(bad)?,
            },
            "interrupt_command" => MasterRequest::InterruptCommand {
                command_id: CommandId::read(&fields).map_err(bad)?,
                why: fields.opt_str("why").map_err(bad)?.unwrap_or_default(),
                builder_name: fields.opt_str("builder_name").map_err(bad)?,
            },
            "shutdown" => MasterRequest::Shutdown,
            other => return Err(RequestError::UnknownOp { op: other.to_string() }),
        })
    }
}
