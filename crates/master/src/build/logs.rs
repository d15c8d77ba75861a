//! A step's logs as they stream in: `stdio` with each line's channel (`h` header, `o` stdout, `e` stderr) as
//! Buildbot stores it, and one log per watched log file.
//!
//! Output is batched: lines wait in memory until [`FLUSH_BYTES`] of them are waiting, or [`FLUSH_AFTER`] has
//! passed since the oldest of them arrived, or the master adds a line of its own, or the step ends; then every
//! log's waiting lines are stored, each log in one transaction. So the live log lags by at most
//! [`FLUSH_AFTER`], the memory held is bounded, and a master killed mid-step loses at most the waiting lines
//! (its build ends RETRY at restart): each log's stored lines stay numbered without a gap.

use std::time::Duration;

use std::borrow::Cow;

use kiln_protocol::{LineInfo, UpdateEntry};
use tokio::time::Instant;

use crate::secrets::{redact_url_credentials, Redactor};
use crate::store::{LogType, LogWriter, Store, StoreError};

/// Waiting output is stored once it is this many bytes…
const FLUSH_BYTES: usize = 512 * 1024;
/// …or once its oldest line has waited this long.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// One log of the step: where it ends in the store and the lines waiting to go there.
struct OpenLog {
    name: String,
    writer: LogWriter,
    waiting: String,
}

/// The logs of one running step.
pub(crate) struct StepLogs<'a> {
    store: &'a Store,
    stepid: i64,
    /// In order of creation; `stdio` first.
    logs: Vec<OpenLog>,
    /// Bytes waiting, over all logs.
    waiting: usize,
    /// When the waiting lines must be stored (set when the first of them arrives).
    due: Option<Instant>,
    /// Censors the build's secrets from every line before it waits (so before it is stored or followed).
    redactor: Redactor,
}

impl<'a> StepLogs<'a> {
    pub(crate) async fn open(store: &'a Store, stepid: i64) -> Result<StepLogs<'a>, StoreError> {
        let mut logs =
            StepLogs { store, stepid, logs: Vec::new(), waiting: 0, due: None, redactor: Redactor::default() };
        logs.log_index("stdio").await?;
        Ok(logs)
    }

    /// Censors `redactor`'s secrets from the lines taken from now on.
    pub(crate) fn redacting(mut self, redactor: Redactor) -> StepLogs<'a> {
        self.redactor = redactor;
        self
    }

    async fn log_index(&mut self, name: &str) -> Result<usize, StoreError> {
        if let Some(index) = self.logs.iter().position(|log| log.name == name) {
            return Ok(index);
        }
        let writer = self.store.add_log_writer(self.stepid, name, LogType::Stdio).await?;
        self.logs.push(OpenLog { name: name.to_string(), writer, waiting: String::new() });
        Ok(self.logs.len() - 1)
    }

    /// A line the master itself adds to `stdio`'s header channel; it is stored at once, with what waits.
    pub(crate) async fn header(&mut self, text: &str) -> Result<(), StoreError> {
        self.note(text);
        self.flush().await
    }

    /// A line the master adds to `stdio`'s header channel after what waits, stored with it: at the next flush
    /// (at most [`FLUSH_AFTER`] later) or with the step's end, in the same write (a command's exit code).
    pub(crate) fn note(&mut self, text: &str) {
        self.add(0, 'h', &LineInfo::from_text(text, 0.0));
    }

    /// Takes the output lines of one `update`; stores what waits if it is enough.
    pub(crate) async fn append(&mut self, entries: &[UpdateEntry]) -> Result<(), StoreError> {
        for entry in entries {
            match entry {
                UpdateEntry::Header(lines) => self.add(0, 'h', lines),
                UpdateEntry::Stdout(lines) => self.add(0, 'o', lines),
                UpdateEntry::Stderr(lines) => self.add(0, 'e', lines),
                UpdateEntry::Log { name, lines } => {
                    let index = self.log_index(name).await?;
                    self.add(index, 'o', lines);
                }
                _ => {}
            }
        }
        if self.waiting >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    fn add(&mut self, index: usize, channel: char, lines: &LineInfo) {
        let waiting = &mut self.logs[index].waiting;
        let before = waiting.len();
        prefixed(waiting, channel, lines, &self.redactor);
        if waiting.len() > before && self.due.is_none() {
            self.due = Some(Instant::now() + FLUSH_AFTER);
        }
        self.waiting += waiting.len() - before;
    }

    /// When the waiting lines must be stored ([`StepLogs::flush`]); None when nothing waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Stores every log's waiting lines.
    pub(crate) async fn flush(&mut self) -> Result<(), StoreError> {
        for log in &mut self.logs {
            if !log.waiting.is_empty() {
                self.store.append_lines(&mut log.writer, &log.waiting).await?;
                log.waiting.clear();
            }
        }
        self.waiting = 0;
        self.due = None;
        Ok(())
    }

    /// Stores what waits and marks every log complete.
    pub(crate) async fn finish(self) -> Result<(), StoreError> {
        for log in self.logs {
            self.store.finish_lines(log.writer, &log.waiting).await?;
        }
        Ok(())
    }
}

/// Appends each line with its channel letter, censored: the build's secrets (each line of a multi-line one is a
/// pattern of its own) and the credentials of URLs (`https://user:***@host`).
fn prefixed(out: &mut String, channel: char, lines: &LineInfo, redactor: &Redactor) {
    out.reserve(lines.text.len() + lines.line_count());
    for line in lines.lines() {
        out.push(channel);
        out.push_str(&censor(line, redactor));
        out.push('\n');
    }
}

/// One line as a log may show it.
pub(crate) fn censor<'t>(line: &'t str, redactor: &Redactor) -> Cow<'t, str> {
    let line = redactor.redact(line);
    if !line.contains("://") {
        return line;
    }
    match redact_url_credentials(&line) {
        Cow::Borrowed(_) => line,
        Cow::Owned(censored) => Cow::Owned(censored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{running_build, temp_store};

    #[test]
    fn lines_get_their_channel() {
        let mut out = String::new();
        prefixed(&mut out, 'o', &LineInfo::from_text("a\n\nb\n", 0.0), &Redactor::default());
        prefixed(&mut out, 'e', &LineInfo::from_text("c\n", 0.0), &Redactor::default());
        assert_eq!(out, "oa\no\nob\nec\n");
    }

    fn redactor(secrets: &[(&str, &str)]) -> Redactor {
        let values: Vec<(&str, crate::secrets::Secret)> =
            secrets.iter().map(|(n, v)| (*n, crate::secrets::Secret::new(*v))).collect();
        Redactor::new(values.iter().map(|(n, v)| (*n, v)))
    }

    #[tokio::test]
    async fn secrets_and_url_credentials_never_reach_the_store() {
        let (store, _dir) = temp_store().await;
        let r = redactor(&[("token", "tok-9876-abcd"), ("key", "KEYLINE-1\nKEYLINE-2")]);
        let mut logs = StepLogs::open(&store, step(&store).await).await.expect("open").redacting(r);
        let update = |text: &str| vec![UpdateEntry::Stdout(LineInfo::from_text(text, 0.0))];
        logs.append(&update("echo tok-9876-abcd\n")).await.expect("append");
        logs.append(&[UpdateEntry::Header(LineInfo::from_text("env KEY=KEYLINE-1\n", 0.0))]).await.expect("append");
        logs.append(&update("KEYLINE-2 and https://u:pw123@example.com/r.git\n")).await.expect("append");
        logs.header("fetching https://ghp_secret@example.com/o/r\n").await.expect("header");
        let lines = stdio_lines(&store, &logs).await;
        assert_eq!(
            lines,
            vec![
                "oecho <secret:token>",
                "henv KEY=<secret:key>",
                "o<secret:key> and https://u:***@example.com/r.git",
                "hfetching https://***@example.com/o/r",
            ]
        );
    }

    proptest::proptest! {
        /// However the worker's updates group the lines, a secret in any of them is never stored.
        #[test]
        fn no_grouping_of_updates_lets_a_secret_through(
            value in "[A-Za-z0-9]{6,12}",
            noise in proptest::collection::vec("[a-z ]{0,12}", 1..8),
            cuts in proptest::collection::vec(0usize..8, 0..4),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let (store, _dir) = temp_store().await;
                let r = redactor(&[("s", &value)]);
                let mut logs = StepLogs::open(&store, step(&store).await).await.expect("open").redacting(r);
                let lines: Vec<String> = noise.iter().map(|n| format!("{n}{value}{n}")).collect();
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(lines.len())).collect();
                cuts.sort_unstable();
                cuts.push(lines.len());
                let mut from = 0;
                for to in cuts {
                    let text: String = lines[from..to].iter().map(|l| format!("{l}\n")).collect();
                    if !text.is_empty() {
                        logs.append(&[UpdateEntry::Stdout(LineInfo::from_text(&text, 0.0))]).await.expect("append");
                    }
                    from = to;
                }
                logs.flush().await.expect("flush");
                let stored = stdio_lines(&store, &logs).await;
                assert_eq!(stored.len(), lines.len());
                for line in stored {
                    assert!(!line.contains(value.as_str()), "{line:?}");
                    assert!(line.contains("<secret:s>"), "{line:?}");
                }
            });
        }
    }

    /// An update of `n` stdout lines `line {from}`, `line {from + 1}`…
    fn stdout(from: usize, n: usize) -> Vec<UpdateEntry> {
        let text: String = (from..from + n).map(|i| format!("line {i}\n")).collect();
        vec![UpdateEntry::Stdout(LineInfo::from_text(&text, 0.0))]
    }

    /// A step of a running build, to hang logs on.
    async fn step(store: &Store) -> i64 {
        store.add_step(running_build(store).await, "s").await.expect("step").0
    }

    async fn stdio_lines(store: &Store, logs: &StepLogs<'_>) -> Vec<String> {
        let id = logs.logs[0].writer.logid();
        let n = store.log_num_lines(id).await.expect("count");
        store.log_lines(id, 0, n).await.expect("lines")
    }

    fn expected(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("oline {i}")).collect()
    }

    #[tokio::test]
    async fn output_is_stored_once_enough_waits_or_the_oldest_line_is_due() {
        let (store, _dir) = temp_store().await;
        let mut logs = StepLogs::open(&store, step(&store).await).await.expect("open");
        assert_eq!(logs.due(), None, "nothing waits");

        // The clock is paused only while no database work runs (the pool's timeouts run on it too).
        tokio::time::pause();
        let started = Instant::now();
        logs.append(&stdout(0, 10)).await.expect("append");
        assert_eq!(logs.due(), Some(started + FLUSH_AFTER));
        tokio::time::advance(FLUSH_AFTER / 2).await;
        logs.append(&stdout(10, 10)).await.expect("append");
        assert_eq!(logs.due(), Some(started + FLUSH_AFTER), "the oldest line sets the deadline");
        tokio::time::resume();
        assert!(stdio_lines(&store, &logs).await.is_empty(), "small updates wait");

        // Due: what the step's command loop does when the deadline passes.
        logs.flush().await.expect("flush");
        assert_eq!(logs.due(), None);
        assert_eq!(stdio_lines(&store, &logs).await, expected(20));

        // Enough waiting: stored at once, whatever the clock.
        let mut n = 20;
        loop {
            logs.append(&stdout(n, 1000)).await.expect("append");
            n += 1000;
            if logs.due().is_none() {
                break;
            }
        }
        let bytes = |lines: usize| expected(lines).iter().map(|l| l.len() + 1).sum::<usize>();
        assert!(bytes(n - 1000) < FLUSH_BYTES && bytes(n) >= FLUSH_BYTES, "stored on size, not before");
        assert_eq!(stdio_lines(&store, &logs).await, expected(n));

        // A header line goes out at once, after the output before it.
        logs.append(&stdout(n, 1)).await.expect("append");
        logs.header("done\n").await.expect("header");
        let mut want = expected(n + 1);
        want.push("hdone".into());
        assert_eq!(stdio_lines(&store, &logs).await, want);
    }

    #[tokio::test]
    async fn a_master_gone_mid_step_loses_only_the_waiting_lines() {
        let (store, _dir) = temp_store().await;
        let mut logs = StepLogs::open(&store, step(&store).await).await.expect("open");
        let logid = logs.logs[0].writer.logid();
        // Enough for a flush on size (several chunks), then a little that waits.
        let mut n = 0;
        while logs.due().is_some() || n == 0 {
            logs.append(&stdout(n, 500)).await.expect("append");
            n += 500;
        }
        let stored = n;
        logs.append(&stdout(n, 7)).await.expect("append");
        drop(logs);

        assert_eq!(store.log_num_lines(logid).await.expect("count"), i64::try_from(stored).expect("n"));
        let all = store.log_lines(logid, 0, i64::MAX).await.expect("lines");
        assert_eq!(all, expected(stored));
        // The stored log continues where it stopped, without a gap, and a stale writer cannot write.
        let mut stale = store.log_writer(logid).await.expect("writer");
        let next = i64::try_from(stored).expect("n");
        assert_eq!(store.append_log(logid, "oafter\n").await.expect("append"), next..next + 1);
        assert!(matches!(store.append_lines(&mut stale, "oclash\n").await, Err(StoreError::LogConflict { .. })));
        assert_eq!(stale.num_lines(), next, "a failed append leaves its writer as it was");
        store.finish_log(logid).await.expect("finish");
        let all = store.log_lines(logid, next - 1, 5).await.expect("lines");
        assert_eq!(all, vec![format!("oline {}", stored - 1), "oafter".to_string()]);
    }

    #[tokio::test]
    async fn finishing_stores_what_waits_in_every_log() {
        let (store, _dir) = temp_store().await;
        let mut logs = StepLogs::open(&store, step(&store).await).await.expect("open");
        let stdio = logs.logs[0].writer.logid();
        let mut entries = stdout(0, 3);
        entries.push(UpdateEntry::Log { name: "build.log".into(), lines: LineInfo::from_text("x\ny\n", 0.0) });
        logs.append(&entries).await.expect("append");
        let other = logs.logs[1].writer.logid();
        logs.finish().await.expect("finish");
        assert_eq!(store.log_lines(stdio, 0, 10).await.expect("lines"), expected(3));
        assert_eq!(store.log_lines(other, 0, 10).await.expect("lines"), vec!["ox", "oy"]);
        assert!(matches!(store.append_log(stdio, "omore\n").await, Err(StoreError::LogComplete { .. })));
        assert!(matches!(store.append_log(other, "omore\n").await, Err(StoreError::LogComplete { .. })));
    }
}
