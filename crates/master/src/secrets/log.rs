//! The master's own log, censored: every secret a build or a reporter fetched (while that build runs), every
//! worker password taken from a provider, and the credentials in URLs (`https://user:***@host`) are hidden from
//! each line before it is written.
//!
//! `kiln` writes its log through [`LogLine`] (a `tracing` writer): each event is formatted whole into one
//! `LogLine`, which redacts and writes it when dropped, so a value is never cut across two writes.

use std::io::Write;
use std::sync::{Mutex, Weak};

use super::redact::{redact_url_credentials, Patterns};
use super::Redactor;

/// The redactors in use; dead ones (their build ended) are dropped as new ones come.
static LIVE: Mutex<Vec<Weak<Patterns>>> = Mutex::new(Vec::new());

/// Censors `redactor`'s values from the master's log for as long as it (or a clone) lives.
pub fn censor(redactor: &Redactor) {
    let Some(weak) = redactor.downgrade() else { return };
    let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(weak);
}

/// Redactors kept for the master's whole life (worker passwords taken from providers).
static KEPT: Mutex<Vec<Redactor>> = Mutex::new(Vec::new());

/// Censors `redactor`'s values from the master's log from now on, for the process's life.
pub fn censor_always(redactor: Redactor) {
    censor(&redactor);
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(redactor);
}

/// `text` as the master's log may show it.
pub fn redact(text: &str) -> String {
    let live: Vec<Redactor> = {
        let live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.iter().filter_map(Redactor::upgrade).collect()
    };
    let mut text = redact_url_credentials(text).into_owned();
    for redactor in live {
        if let std::borrow::Cow::Owned(censored) = redactor.redact(&text) {
            text = censored;
        }
    }
    text
}

/// One line of the master's log, written to stderr, censored, when dropped.
#[derive(Default)]
pub struct LogLine {
    text: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = redact(&String::from_utf8_lossy(&self.text));
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    #[test]
    fn a_live_redactor_censors_the_log_until_dropped() {
        let value = Secret::new("log-secret-4321");
        let redactor = Redactor::new([("logged", &value)]);
        censor(&redactor);
        assert_eq!(redact("worker said log-secret-4321"), "worker said <secret:logged>");
        assert_eq!(redact("polling https://u:pw@example.com/r"), "polling https://u:***@example.com/r");
        drop(redactor);
        assert_eq!(redact("log-secret-4321"), "log-secret-4321");
    }
}
