//! Mail over SMTP with lettre: plain (a local relay), STARTTLS required, or implicit TLS, certificates verified
//! (the Mozilla roots, plus an optional CA file), authentication only over TLS unless the config allows it, and a
//! timeout on every exchange. Each notice is one copy of a mail for one recipient: a 550 for one address fails
//! that copy only.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{SendError, SetupError};
use crate::config::{Credentials, MailDef, SmtpSecurity};
use crate::model::Notification;
use crate::reporters::MailPayload;

pub struct MailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders stay quiet.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

impl MailSender {
    pub fn new(mail: &MailDef, credentials: &Credentials, timeout: Duration) -> Result<MailSender, SetupError> {
        let host = mail.smtp.host.clone();
        let tls = || -> Result<TlsParameters, SetupError> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(path) = &mail.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|source| SetupError::CaFile { path: path.display().to_string(), source })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| SetupError::Mail(e.to_string()))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| SetupError::Mail(e.to_string()))
        };
        let tls = match mail.smtp.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls()?),
            SmtpSecurity::Implicit => Tls::Wrapper(tls()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(mail.smtp.port)
            .timeout(Some(timeout))
            .tls(tls);
        if let (Some(user), Some(password)) = (&credentials.user, &credentials.password) {
            builder = builder.credentials(SmtpCredentials::new(user.clone(), password.clone()));
        }
        Ok(MailSender { transport: builder.build() })
    }

    pub async fn send(&self, notice: &Notification) -> Result<String, SendError> {
        let payload: MailPayload = serde_json::from_slice(&notice.payload)
            .map_err(|e| SendError::Permanent(format!("the stored notice cannot be read: {e}")))?;
        let message = build(&payload)?;
        let from: Mailbox = parse_mailbox(&payload.from)?;
        let rcpt: Mailbox = parse_mailbox(&payload.rcpt)?;
        let envelope = lettre::address::Envelope::new(Some(from.email), vec![rcpt.email])
            .map_err(|e| SendError::Permanent(format!("envelope: {e}")))?;
        match self.transport.send_raw(&envelope, &message.formatted()).await {
            Ok(response) => {
                let lines: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), lines.join(" ")))
            }
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("{}: {e}", payload.rcpt))),
            Err(e) => Err(SendError::retry(format!("{}: {e}", payload.rcpt))),
        }
    }
}

fn parse_mailbox(text: &str) -> Result<Mailbox, SendError> {
    text.parse::<Mailbox>()
        .or_else(|_| text.parse::<Address>().map(|a| Mailbox::new(None, a)))
        .map_err(|e| SendError::Permanent(format!("'{text}' is not a mail address: {e}")))
}

/// The mail every copy shares: headers (stable Message-ID, In-Reply-To/References onto the first failure,
/// Auto-Submitted) and a text body with an HTML alternative.
fn build(payload: &MailPayload) -> Result<Message, SendError> {
    let mut builder = Message::builder()
        .from(parse_mailbox(&payload.from)?)
        .subject(payload.subject.clone())
        .message_id(Some(payload.message_id.clone()))
        .header(AutoSubmitted);
    for to in &payload.to {
        builder = builder.to(parse_mailbox(to)?);
    }
    for cc in &payload.cc {
        builder = builder.cc(parse_mailbox(cc)?);
    }
    if let Some(parent) = &payload.in_reply_to {
        builder = builder.in_reply_to(parent.clone()).references(parent.clone());
    }
    let message = match &payload.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(payload.text.clone(), html.clone())),
        None => builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(payload.text.clone())),
    };
    message.map_err(|e| SendError::Permanent(format!("the mail cannot be built: {e}")))
}
