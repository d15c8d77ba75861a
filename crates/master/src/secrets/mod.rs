//! Secrets: the [`Secret`] type every password and token is held in, the providers secrets come from
//! (`[[secret_provider]]`), and the redaction that keeps their values out of logs, state strings, properties,
//! the API and the master's own log.
//!
//! A build fetches the secrets its steps name (`%(secret:NAME)s`) when it starts, keeps them in memory for its
//! duration only ([`Fetched`]) and never stores them: what it stores goes through its [`Redactor`] first.

pub mod log;
mod provider;
mod redact;
mod secret;

pub use provider::{
    check_name, Fetched, ProviderDef, Providers, SecretError, SecretsConfig, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_MIN_LENGTH,
};
pub use redact::{redact_url_credentials, Redactor};
pub use secret::{equal, verify_hash, Secret};
