//! Where notices go: one module per kind of target. [`Sender`] is the one place where a reporter's type maps to
//! what sends its notices.

pub mod chat;
pub mod forge;
pub mod http;
pub mod mail;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ReporterDef, Target};
use crate::model::Notification;
use crate::store::Store;

/// Why an attempt failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt (a connection or TLS failure, a timeout, 408/429/5xx, SMTP 4xx); `after` is what
    /// the server asked for (`Retry-After`).
    #[error("{message}")]
    Retry { after: Option<Duration>, message: String },
    /// Refused for good (4xx, SMTP 5xx, a payload that cannot be read).
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn retry(message: impl Into<String>) -> SendError {
        SendError::Retry { after: None, message: message.into() }
    }
}

/// Why a reporter cannot send at all (read at start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading the CA file {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("the mail transport: {0}")]
    Mail(String),
    #[error("the HTTP client: {0}")]
    Http(String),
}

/// What sends one reporter's notices.
pub enum Sender {
    Mail(mail::MailSender),
    Http(http::HttpSender),
}

impl Sender {
    /// The sender for `def`'s target.
    pub fn new(def: &Arc<ReporterDef>, store: Store) -> Result<Sender, SetupError> {
        Ok(match &def.target {
            Target::Mail(mail) => Sender::Mail(mail::MailSender::new(mail, &def.credentials, def.timeout)?),
            Target::Chat { .. } | Target::Matrix { .. } | Target::Http { .. } | Target::Forge(_) => {
                Sender::Http(http::HttpSender::new(def.clone(), store)?)
            }
        })
    }

    /// Sends one notice; on success, what the server answered.
    pub async fn send(&self, notice: &Notification) -> Result<String, SendError> {
        match self {
            Sender::Mail(sender) => sender.send(notice).await,
            Sender::Http(sender) => sender.send(notice).await,
        }
    }
}
