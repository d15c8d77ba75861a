//! A step's logs as they stream in: `stdio` with each line's channel (`h` header, `o` stdout, `e` stderr) as
//! Buildbot stores it, and one log per watched log file.

use kiln_protocol::{LineInfo, UpdateEntry};

use crate::store::{LogType, Store, StoreError};

/// The logs of one running step.
pub(crate) struct StepLogs<'a> {
    store: &'a Store,
    stepid: i64,
    /// (name, log id), in order of creation; `stdio` first.
    logs: Vec<(String, i64)>,
}

impl<'a> StepLogs<'a> {
    pub(crate) async fn open(store: &'a Store, stepid: i64) -> Result<StepLogs<'a>, StoreError> {
        let stdio = store.add_log(stepid, "stdio", LogType::Stdio).await?;
        Ok(StepLogs { store, stepid, logs: vec![("stdio".into(), stdio)] })
    }

    async fn log_id(&mut self, name: &str) -> Result<i64, StoreError> {
        if let Some((_, id)) = self.logs.iter().find(|(n, _)| n == name) {
            return Ok(*id);
        }
        let id = self.store.add_log(self.stepid, name, LogType::Stdio).await?;
        self.logs.push((name.to_string(), id));
        Ok(id)
    }

    /// A line the master itself adds to `stdio`'s header channel.
    pub(crate) async fn header(&mut self, text: &str) -> Result<(), StoreError> {
        let mut lines = String::new();
        prefixed(&mut lines, 'h', &LineInfo::from_text(text, 0.0));
        let stdio = self.log_id("stdio").await?;
        self.store.append_log(stdio, &lines).await.map(|_| ())
    }

    /// Stores the output lines of one `update`: one append per log touched.
    pub(crate) async fn append(&mut self, entries: &[UpdateEntry]) -> Result<(), StoreError> {
        let mut stdio = String::new();
        let mut others: Vec<(&str, String)> = Vec::new();
        for entry in entries {
            match entry {
                UpdateEntry::Header(lines) => prefixed(&mut stdio, 'h', lines),
                UpdateEntry::Stdout(lines) => prefixed(&mut stdio, 'o', lines),
                UpdateEntry::Stderr(lines) => prefixed(&mut stdio, 'e', lines),
                UpdateEntry::Log { name, lines } => {
                    let index = match others.iter().position(|(n, _)| n == name) {
                        Some(index) => index,
                        None => {
                            others.push((name, String::new()));
                            others.len() - 1
                        }
                    };
                    prefixed(&mut others[index].1, 'o', lines);
                }
                _ => {}
            }
        }
        if !stdio.is_empty() {
            let id = self.log_id("stdio").await?;
            self.store.append_log(id, &stdio).await?;
        }
        for (name, text) in others {
            let id = self.log_id(name).await?;
            self.store.append_log(id, &text).await?;
        }
        Ok(())
    }

    /// Marks every log complete.
    pub(crate) async fn finish(&self) -> Result<(), StoreError> {
        for (_, id) in &self.logs {
            self.store.finish_log(*id).await?;
        }
        Ok(())
    }
}

/// Appends each line with its channel letter.
fn prefixed(out: &mut String, channel: char, lines: &LineInfo) {
    out.reserve(lines.text.len() + lines.line_count());
    for line in lines.lines() {
        out.push(channel);
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_get_their_channel() {
        let mut out = String::new();
        prefixed(&mut out, 'o', &LineInfo::from_text("a\n\nb\n", 0.0));
        prefixed(&mut out, 'e', &LineInfo::from_text("c\n", 0.0));
        assert_eq!(out, "oa\no\nob\nec\n");
    }
}
