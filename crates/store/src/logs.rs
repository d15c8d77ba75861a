//! Logs of steps, stored as chunks of whole lines: at most about 64 KiB of text per chunk, zstd-compressed. While
//! a log is open its last chunk (the tail) is kept raw so small appends stay cheap and durable; it is compressed
//! when it is full or the log finishes. Reading a range of lines touches only the chunks that cover it.

use std::cell::RefCell;
use std::ops::Range;

use sqlx::Row;

use super::error::Context;
use super::{Store, StoreError};
use crate::engine::DbRow;
use crate::events::Event;

/// Most bytes of text per chunk (a single longer line makes a chunk of its own).
const CHUNK_BYTES: usize = 64 * 1024;
/// zstd level: fast, and logs compress well anyway.
const ZSTD_LEVEL: i32 = 3;
/// Beyond this many bytes, (de)compression runs on tokio's blocking threads.
const BLOCKING_BYTES: usize = 16 * 1024;
/// Largest decompressed chunk accepted (guards against a corrupt size header).
const MAX_CHUNK_BYTES: usize = 256 * 1024 * 1024;
/// `log_chunks.compressed`: raw text.
const RAW: i16 = 0;
/// `log_chunks.compressed`: one zstd frame.
const ZSTD: i16 = 1;
/// Buildbot's limit on slug length.
const SLUG_MAX: usize = 50;

/// What a log holds (Buildbot's `type` letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogType {
    /// Output of a command, each line prefixed with its channel (`o`, `e`, `h`).
    Stdio,
    /// Plain text.
    Text,
    /// HTML.
    Html,
    /// Data.
    Data,
}

impl LogType {
    fn code(self) -> &'static str {
        match self {
            LogType::Stdio => "s",
            LogType::Text => "t",
            LogType::Html => "h",
            LogType::Data => "d",
        }
    }
}

thread_local! {
    /// One compression context per thread, reused across chunks.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// One decompression context per thread, reused across chunks.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(text: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(c) => c,
            None => cell.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        compressor.compress(text)
    })
}

fn decompress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let size = zstd::bulk::Decompressor::upper_bound(data)
        .filter(|&n| n <= MAX_CHUNK_BYTES)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no usable content size"))?;
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(d) => d,
            None => cell.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(data, size)
    })
}

/// Runs `f` (compression or decompression) over `items`, on a blocking thread if there is much to do.
async fn run_codec(
    op: impl FnOnce() -> String,
    items: Vec<Vec<u8>>,
    f: fn(&[u8]) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<std::io::Result<Vec<u8>>>, StoreError> {
    let total: usize = items.iter().map(Vec::len).sum();
    let work = move || items.iter().map(|i| f(i)).collect::<Vec<_>>();
    if total > BLOCKING_BYTES {
        tokio::task::spawn_blocking(work).await.map_err(|source| StoreError::Task { op: op(), source })
    } else {
        Ok(work())
    }
}

/// Buildbot's `forceIdentifier`: a name made into an identifier (letters, digits, `_`, `-`; not starting with a
/// digit), at most 50 characters.
fn slug(name: &str) -> String {
    let mut s: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic() || c == '_' || c == '-' || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .take(SLUG_MAX)
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// Buildbot's `incrementIdentifier`: `slug_2`, `slug_3`… kept within 50 characters.
fn next_slug(slug: &str, n: u32) -> String {
    let suffix = format!("_{n}");
    let keep = SLUG_MAX.saturating_sub(suffix.len()).min(slug.len());
    format!("{}{suffix}", &slug[..keep])
}

/// A run of new lines destined for one chunk: `text` is a byte range of the appended text.
struct Group {
    text: Range<usize>,
    first_line: i64,
    last_line: i64,
    /// Whether the lines go at the end of the existing raw tail chunk.
    extends_tail: bool,
    /// Whether the chunk is full and gets compressed now (otherwise it becomes the raw tail).
    closed: bool,
}

/// Splits `text` (whole lines) into chunk groups, starting at line `num_lines` after a raw tail of `tail_bytes`
/// bytes (if there is a tail). With `finish`, the last group (the old tail alone if `text` is empty) is closed too.
fn plan(text: &str, num_lines: i64, tail: Option<(i64, usize)>, finish: bool) -> Vec<Group> {
    let mut groups = Vec::new();
    let (mut first_line, mut len, mut extends_tail) = match tail {
        Some((first, bytes)) => (first, bytes, true),
        None => (num_lines, 0, false),
    };
    let (mut start, mut pos, mut line) = (0, 0, num_lines);
    for l in text.split_inclusive('\n') {
        if len > 0 && len + l.len() > CHUNK_BYTES {
            groups.push(Group { text: start..pos, first_line, last_line: line - 1, extends_tail, closed: true });
            (start, len, first_line, extends_tail) = (pos, 0, line, false);
        }
        len += l.len();
        pos += l.len();
        line += 1;
    }
    if pos > start || (finish && extends_tail && len > 0) {
        groups.push(Group { text: start..pos, first_line, last_line: line - 1, extends_tail, closed: finish });
    }
    groups
}

fn chunk_error(logid: i64, first_line: i64) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::LogChunk { logid, first_line, reason: e.to_string() }
}

/// One chunk of a log as stored: the lines it holds and the bytes of their text, newlines included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSpan {
    pub first_line: i64,
    pub last_line: i64,
    pub bytes: u64,
}

/// Where a log ends, as its one writer knows it: its line count and its raw tail chunk. Appending through it
/// reads nothing back from the database; a writer that is not the log's only one finds out
/// ([`StoreError::LogConflict`]) and changes nothing.
#[derive(Debug)]
pub struct LogWriter {
    logid: i64,
    /// The step the log belongs to (for the events its writes publish).
    stepid: i64,
    num_lines: i64,
    /// The raw tail chunk as stored: its first line and its text.
    tail: Option<(i64, Vec<u8>)>,
}

impl LogWriter {
    /// The log's id.
    pub fn logid(&self) -> i64 {
        self.logid
    }

    /// The number of lines stored.
    pub fn num_lines(&self) -> i64 {
        self.num_lines
    }
}

impl Store {
    /// Adds a log named `name` to step `stepid`; its slug is derived from the name and made unique in the step.
    pub async fn add_log(&self, stepid: i64, name: &str, log_type: LogType) -> Result<i64, StoreError> {
        let op = || format!("add log {name:?} to step {stepid}");
        let mut tx = self.write(op).await?;
        let taken: Vec<String> = sqlx::query_scalar("SELECT slug FROM logs WHERE stepid = ?")
            .bind(stepid)
            .fetch_all(&mut *tx)
            .await
            .context(op)?;
        let base = slug(name);
        let mut candidate = base.clone();
        let mut n = 1;
        while taken.contains(&candidate) {
            n += 1;
            candidate = next_slug(&base, n);
        }
        let logid = sqlx::query_scalar("INSERT INTO logs (name, slug, stepid, type) VALUES (?, ?, ?, ?) RETURNING id")
            .bind(name)
            .bind(&candidate)
            .bind(stepid)
            .bind(log_type.code())
            .fetch_one(&mut *tx)
            .await
            .context(op)?;
        tx.commit().await.context(op)?;
        self.publish(Event::LogAdded { logid, stepid });
        Ok(logid)
    }

    /// [`Store::add_log`], and the new log's writer (an empty log: nothing to read back).
    pub async fn add_log_writer(&self, stepid: i64, name: &str, log_type: LogType) -> Result<LogWriter, StoreError> {
        let logid = self.add_log(stepid, name, log_type).await?;
        Ok(LogWriter { logid, stepid, num_lines: 0, tail: None })
    }

    /// The writer of open log `logid`, from where the log ends in the store.
    pub async fn log_writer(&self, logid: i64) -> Result<LogWriter, StoreError> {
        let op = || format!("open log {logid} for writing");
        let mut conn = self.pool.acquire().await.context(op)?;
        let (num_lines, complete, stepid): (i64, i16, i64) =
            sqlx::query_as("SELECT num_lines, complete, stepid FROM logs WHERE id = ?")
                .bind(logid)
                .fetch_optional(&mut *conn)
                .await
                .context(op)?
                .ok_or(StoreError::NotFound { what: "log", id: logid })?;
        if complete != 0 {
            return Err(StoreError::LogComplete { logid });
        }
        let tail = sqlx::query_as("SELECT first_line, content FROM log_chunks WHERE logid = ? AND compressed = ?")
            .bind(logid)
            .bind(RAW)
            .fetch_optional(&mut *conn)
            .await
            .context(op)?;
        Ok(LogWriter { logid, stepid, num_lines, tail })
    }

    /// Appends `lines` (whole lines, each ending in `\n`) to log `logid`; returns the numbers of the new lines.
    pub async fn append_log(&self, logid: i64, lines: &str) -> Result<Range<i64>, StoreError> {
        let mut writer = self.log_writer(logid).await?;
        self.append_lines(&mut writer, lines).await
    }

    /// Appends `lines` (whole lines, each ending in `\n`) through `writer`, in one transaction; returns the
    /// numbers of the new lines. On an error nothing is stored and `writer` is unchanged.
    pub async fn append_lines(&self, writer: &mut LogWriter, lines: &str) -> Result<Range<i64>, StoreError> {
        self.write_lines(writer, lines, false).await
    }

    /// Appends the last `lines` through `writer` and marks the log complete, compressing its tail, in one
    /// transaction.
    pub async fn finish_lines(&self, mut writer: LogWriter, lines: &str) -> Result<Range<i64>, StoreError> {
        self.write_lines(&mut writer, lines, true).await
    }

    /// Marks log `logid` complete, compressing its raw tail. Finishing a finished log does nothing.
    pub async fn finish_log(&self, logid: i64) -> Result<(), StoreError> {
        match self.log_writer(logid).await {
            Ok(writer) => self.finish_lines(writer, "").await.map(|_| ()),
            Err(StoreError::LogComplete { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn write_lines(&self, writer: &mut LogWriter, lines: &str, finish: bool) -> Result<Range<i64>, StoreError> {
        let logid = writer.logid;
        if !lines.is_empty() && !lines.ends_with('\n') {
            return Err(StoreError::InvalidLogText { logid, reason: "text must end with a newline" });
        }
        let start = writer.num_lines;
        if lines.is_empty() && !finish {
            return Ok(start..start);
        }
        let op = || format!("append to log {logid}");
        let groups = plan(lines, start, writer.tail.as_ref().map(|(first, text)| (*first, text.len())), finish);
        let new_text = |g: &Group| &lines.as_bytes()[g.text.clone()];

        // Compress the closed groups (with the tail's text in front of the group that extends it), before
        // taking the write lock.
        let to_compress = groups
            .iter()
            .filter(|g| g.closed)
            .map(|g| {
                let mut text = match (&writer.tail, g.extends_tail) {
                    (Some((_, tail)), true) => Vec::with_capacity(tail.len() + g.text.len()),
                    _ => Vec::with_capacity(g.text.len()),
                };
                if let (Some((_, tail)), true) = (&writer.tail, g.extends_tail) {
                    text.extend_from_slice(tail);
                }
                text.extend_from_slice(new_text(g));
                text
            })
            .collect();
        let mut compressed = run_codec(op, to_compress, compress).await?.into_iter();

        let mut tx = self.write(op).await?;
        for g in &groups {
            let query = match (g.closed, g.extends_tail) {
                (true, _) => {
                    let data =
                        compressed.next().transpose().map_err(chunk_error(logid, g.first_line))?.unwrap_or_default();
                    sqlx::query(
                        "INSERT INTO log_chunks (logid, first_line, last_line, compressed, content) \
                         VALUES (?, ?, ?, ?, ?) ON CONFLICT (logid, first_line) DO UPDATE SET \
                         last_line = excluded.last_line, compressed = excluded.compressed, \
                         content = excluded.content",
                    )
                    .bind(logid)
                    .bind(g.first_line)
                    .bind(g.last_line)
                    .bind(ZSTD)
                    .bind(data)
                }
                (false, true) => sqlx::query(
                    "UPDATE log_chunks SET content = content || ?, last_line = ? \
                     WHERE logid = ? AND first_line = ?",
                )
                .bind(new_text(g))
                .bind(g.last_line)
                .bind(logid)
                .bind(g.first_line),
                (false, false) => sqlx::query(
                    "INSERT INTO log_chunks (logid, first_line, last_line, compressed, content) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(logid)
                .bind(g.first_line)
                .bind(g.last_line)
                .bind(RAW)
                .bind(new_text(g)),
            };
            query.execute(&mut *tx).await.context(op)?;
        }
        let end = groups.last().map_or(start, |g| g.last_line + 1);
        // The log must end where this writer left it: otherwise another writer moved it, and this changes nothing.
        let updated =
            sqlx::query("UPDATE logs SET num_lines = ?, complete = ? WHERE id = ? AND num_lines = ? AND complete = 0")
                .bind(end)
                .bind(i16::from(finish))
                .bind(logid)
                .bind(start)
                .execute(&mut *tx)
                .await
                .context(op)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::LogConflict { logid });
        }
        tx.commit().await.context(op)?;
        let stepid = writer.stepid;
        if end > start {
            self.publish(Event::LogAppended { logid, stepid, first_line: start, count: end - start });
        }
        if finish {
            self.publish(Event::LogFinished { logid, stepid, num_lines: end });
        }
        let tail_rewritten =
            groups.iter().any(|g| g.extends_tail).then(|| writer.tail.as_ref().map_or(0, |t| t.1.len()));
        self.checkpoint_after_logs((lines.len() + tail_rewritten.unwrap_or(0)) as u64, finish);
        self.log_bytes_stored.fetch_add(lines.len() as u64, std::sync::atomic::Ordering::Relaxed);

        writer.num_lines = end;
        writer.tail = match groups.last().filter(|g| !g.closed) {
            Some(g) if g.extends_tail => writer.tail.take().map(|(first, mut tail)| {
                tail.extend_from_slice(new_text(g));
                (first, tail)
            }),
            Some(g) => Some((g.first_line, new_text(g).to_vec())),
            None => None,
        };
        Ok(start..end)
    }

    /// The number of lines of log `logid`.
    pub async fn log_num_lines(&self, logid: i64) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT num_lines FROM logs WHERE id = ?")
            .bind(logid)
            .fetch_optional(&self.pool)
            .await
            .context(|| format!("count lines of log {logid}"))?
            .ok_or(StoreError::NotFound { what: "log", id: logid })
    }

    /// Where each chunk of log `logid` starts and ends, and how many bytes of text (newlines included) it holds,
    /// in order. Reads each compressed chunk's frame header, never its text: this is what answers a byte range
    /// of a raw log without reading the lines before it.
    pub async fn log_chunk_spans(&self, logid: i64) -> Result<Vec<ChunkSpan>, StoreError> {
        let op = || format!("read the chunk sizes of log {logid}");
        let rows = sqlx::query(
            "SELECT first_line, last_line, compressed, \
             CASE WHEN compressed = 0 THEN length(content) END AS raw_bytes, \
             CASE WHEN compressed = 1 THEN substr(content, 1, 18) END AS head \
             FROM log_chunks WHERE logid = ? ORDER BY first_line",
        )
        .bind(logid)
        .fetch_all(&self.pool)
        .await
        .context(op)?;
        let mut spans = Vec::with_capacity(rows.len());
        for row in &rows {
            let first_line: i64 = row.try_get("first_line").context(op)?;
            let last_line: i64 = row.try_get("last_line").context(op)?;
            let kind: i16 = row.try_get("compressed").context(op)?;
            let bytes = if kind == ZSTD {
                let head: Vec<u8> = row.try_get("head").context(op)?;
                zstd::zstd_safe::get_frame_content_size(&head).ok().flatten().ok_or_else(|| StoreError::LogChunk {
                    logid,
                    first_line,
                    reason: "its zstd frame does not say its size".into(),
                })?
            } else {
                let raw: i64 = row.try_get("raw_bytes").context(op)?;
                u64::try_from(raw).unwrap_or(0)
            };
            spans.push(ChunkSpan { first_line, last_line, bytes });
        }
        Ok(spans)
    }

    /// The text of up to `count` chunks of log `logid` (whole lines, each ending in `\n`), with the number of
    /// each one's first line: forward, from the chunk that holds line `from`; or `backward`, the chunks holding
    /// lines before `from`, the nearest first. A caller walks a log a few chunks at a time, in bounded memory.
    pub async fn log_chunk_texts(
        &self,
        logid: i64,
        from: i64,
        count: i64,
        backward: bool,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let op = || format!("read {count} chunks of log {logid} from line {from}");
        let query = if backward {
            "SELECT first_line, compressed, content FROM log_chunks WHERE logid = ? AND first_line < ? \
             ORDER BY first_line DESC LIMIT ?"
        } else {
            "SELECT first_line, compressed, content FROM log_chunks WHERE logid = ?1 AND first_line >= \
             (SELECT COALESCE(MAX(first_line), 0) FROM log_chunks WHERE logid = ?1 AND first_line <= ?2) \
             ORDER BY first_line LIMIT ?3"
        };
        let rows = sqlx::query(query).bind(logid).bind(from).bind(count).fetch_all(&self.pool).await.context(op)?;
        let chunks = self.decode_chunks(logid, &rows, op).await?;
        chunks
            .into_iter()
            .map(|(first_line, text)| {
                String::from_utf8(text).map(|t| (first_line, t)).map_err(|e| StoreError::LogChunk {
                    logid,
                    first_line,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The chunks of `rows` (`first_line`, `compressed`, `content`) as text bytes, decompressed off the runtime
    /// when there is much.
    async fn decode_chunks(
        &self,
        logid: i64,
        rows: &[DbRow],
        op: impl Fn() -> String + Copy,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let mut chunks = Vec::with_capacity(rows.len());
        let (mut packed, mut packed_at) = (Vec::new(), Vec::new());
        for row in rows {
            let first_line: i64 = row.try_get("first_line").context(op)?;
            let kind: i16 = row.try_get("compressed").context(op)?;
            let content: Vec<u8> = row.try_get("content").context(op)?;
            if kind == ZSTD {
                packed_at.push(chunks.len());
                packed.push(content);
                chunks.push((first_line, Vec::new()));
            } else {
                chunks.push((first_line, content));
            }
        }
        for (i, text) in packed_at.into_iter().zip(run_codec(op, packed, decompress).await?) {
            let first_line = chunks[i].0;
            chunks[i].1 = text.map_err(chunk_error(logid, first_line))?;
        }
        Ok(chunks)
    }

    /// Up to `count` lines of log `logid` from line `first` (0-based), without their newlines. Reads only the
    /// chunks that hold those lines.
    pub async fn log_lines(&self, logid: i64, first: i64, count: i64) -> Result<Vec<String>, StoreError> {
        let op = || format!("read lines {first}+{count} of log {logid}");
        let first = first.max(0);
        if count <= 0 {
            return Ok(Vec::new());
        }
        let last = first.saturating_add(count - 1);
        let mut conn = self.pool.acquire().await.context(op)?;
        // The chunk holding `first` starts at the greatest first_line not after it.
        let start: Option<i64> =
            sqlx::query_scalar("SELECT MAX(first_line) FROM log_chunks WHERE logid = ? AND first_line <= ?")
                .bind(logid)
                .bind(first)
                .fetch_one(&mut *conn)
                .await
                .context(op)?;
        let rows = sqlx::query(
            "SELECT first_line, compressed, content FROM log_chunks              WHERE logid = ? AND first_line >= ? AND first_line <= ? ORDER BY first_line",
        )
        .bind(logid)
        .bind(start.unwrap_or(first))
        .bind(last)
        .fetch_all(&mut *conn)
        .await
        .context(op)?;
        drop(conn);
        let chunks = self.decode_chunks(logid, &rows, op).await?;

        let mut out = Vec::new();
        for (first_line, text) in chunks {
            let text = String::from_utf8(text).map_err(|e| StoreError::LogChunk {
                logid,
                first_line,
                reason: e.to_string(),
            })?;
            for (n, l) in (first_line..).zip(text.split_inclusive('\n')) {
                if n > last {
                    break;
                }
                if n >= first {
                    out.push(l.strip_suffix('\n').unwrap_or(l).to_string());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::temp_store;

    /// A step to hang logs on.
    async fn step(store: &Store) -> i64 {
        let buildid = crate::testing::running_build(store).await;
        store.add_step(buildid, "s").await.expect("step").0
    }

    async fn stored_bytes(store: &Store, logid: i64) -> (i64, i64) {
        sqlx::query_as("SELECT COALESCE(SUM(length(content)), 0), COUNT(*) FROM log_chunks WHERE logid = ?")
            .bind(logid)
            .fetch_one(&store.pool)
            .await
            .expect("size")
    }

    #[test]
    fn slugs_follow_buildbot() {
        assert_eq!(slug("stdio"), "stdio");
        assert_eq!(slug("test results.xml"), "test_results_xml");
        assert_eq!(slug("1st"), "_st");
        assert_eq!(slug(""), "_");
        assert_eq!(slug(&"x".repeat(80)).len(), SLUG_MAX);
        assert_eq!(next_slug("stdio", 2), "stdio_2");
        assert_eq!(next_slug(&"x".repeat(50), 12).len(), SLUG_MAX);
    }

    #[tokio::test]
    async fn a_big_log_leaves_the_wal_small_once_it_finishes() {
        let (store, dir) = temp_store().await;
        let logid = store.add_log(step(&store).await, "stdio", LogType::Stdio).await.expect("log");
        let wal = dir.path().join("state.sqlite-wal");
        let mut writer = store.log_writer(logid).await.expect("writer");
        // 4 MiB of very compressible lines in 16 KiB appends (a slow command's output): the raw tail is
        // rewritten at each one.
        let batch = "o0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567\n"
            .repeat(16 * 1024 / 90);
        // The most the WAL held meanwhile (SQLite's own checkpoints reset it now and then).
        let mut grown = 0;
        for _ in 0..256 {
            store.append_lines(&mut writer, &batch).await.expect("append");
            grown = grown.max(std::fs::metadata(&wal).expect("wal").len());
        }
        assert!(grown > 1024 * 1024, "the WAL holds the rewritten pages meanwhile: {grown}");
        store.finish_lines(writer, "").await.expect("finish");
        // The checkpoint runs in the background: wait for it, boundedly.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut size = grown;
        while size > crate::engine::sqlite::WAL_SIZE_LIMIT && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        }
        assert!(size <= crate::engine::sqlite::WAL_SIZE_LIMIT, "the WAL was cut down after the log: {size} bytes");
        assert_eq!(store.log_num_lines(logid).await.expect("lines"), 256 * (16 * 1024 / 90) as i64);
    }

    #[tokio::test]
    async fn slugs_are_unique_in_a_step_and_text_must_be_whole_lines() {
        let (store, _dir) = temp_store().await;
        let stepid = step(&store).await;
        let a = store.add_log(stepid, "std io", LogType::Stdio).await.expect("log");
        let b = store.add_log(stepid, "std.io", LogType::Text).await.expect("log");
        let slugs: Vec<String> = sqlx::query_scalar("SELECT slug FROM logs WHERE id IN (?, ?) ORDER BY id")
            .bind(a)
            .bind(b)
            .fetch_all(&store.pool)
            .await
            .expect("slugs");
        assert_eq!(slugs, vec!["std_io", "std_io_2"]);
        assert!(matches!(store.append_log(a, "no newline").await, Err(StoreError::InvalidLogText { .. })));
        assert_eq!(store.append_log(a, "").await.expect("empty"), 0..0);
        assert_eq!(store.append_log(a, "one\ntwo\n").await.expect("append"), 0..2);
        assert_eq!(store.append_log(a, "three\n").await.expect("append"), 2..3);
        assert_eq!(store.log_num_lines(a).await.expect("count"), 3);
        assert!(matches!(store.log_num_lines(9999).await, Err(StoreError::NotFound { what: "log", .. })));
    }

    #[tokio::test]
    async fn a_megabyte_of_small_appends_reads_back_in_ranges_and_compresses() {
        let (store, _dir) = temp_store().await;
        let stepid = step(&store).await;
        let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
        let mut lines = Vec::new();
        let mut total = 0;
        let mut batch = String::new();
        while total < 1024 * 1024 {
            let line = format!("ocompiling src/module_{}.rs ... ok ({} warnings)", lines.len() % 97, lines.len() % 5);
            total += line.len() + 1;
            batch.push_str(&line);
            batch.push('\n');
            lines.push(line);
            if lines.len() % 10 == 0 {
                store.append_log(logid, &batch).await.expect("append");
                batch.clear();
            }
        }
        store.append_log(logid, &batch).await.expect("append");
        let n = i64::try_from(lines.len()).expect("len");
        assert_eq!(store.log_num_lines(logid).await.expect("count"), n);
        for (first, count) in [(0, 5), (n - 3, 10), (1234, 4000), (0, n), (n + 5, 3)] {
            let got = store.log_lines(logid, first, count).await.expect("lines");
            let from = usize::try_from(first).expect("first").min(lines.len());
            let to = usize::try_from(first + count).expect("end").min(lines.len());
            assert_eq!(got, lines[from..to], "lines {first}+{count}");
        }
        store.finish_log(logid).await.expect("finish");
        let (bytes, chunks) = stored_bytes(&store, logid).await;
        assert!(chunks >= 16, "{chunks} chunks for 1 MiB");
        assert!(bytes * 10 < i64::try_from(total).expect("total"), "{bytes} stored for {total}");
        let raw: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_chunks WHERE logid = ? AND compressed = 0")
            .bind(logid)
            .fetch_one(&store.pool)
            .await
            .expect("raw");
        assert_eq!(raw, 0, "a finished log is all compressed");
        assert_eq!(store.log_lines(logid, 100, 2).await.expect("lines"), lines[100..102]);
    }

    #[tokio::test]
    async fn chunk_spans_and_texts_cover_the_log_in_order() {
        let (store, _dir) = temp_store().await;
        let stepid = step(&store).await;
        let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
        let lines: Vec<String> = (0..30_000).map(|i| format!("oline number {i} of the log")).collect();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let (head, tail) = text.split_at(text[..text.len() / 2].rfind('\n').expect("newline") + 1);
        store.append_log(logid, head).await.expect("append");
        store.append_log(logid, tail).await.expect("append");
        let spans = store.log_chunk_spans(logid).await.expect("spans");
        assert!(spans.len() > 3, "{spans:?}");
        assert_eq!(spans.iter().map(|s| s.bytes).sum::<u64>(), text.len() as u64);
        assert_eq!(spans.last().expect("last").last_line, 29_999);
        for pair in spans.windows(2) {
            assert_eq!(pair[0].last_line + 1, pair[1].first_line, "{pair:?}");
        }
        // The same after the tail is compressed.
        store.finish_log(logid).await.expect("finish");
        assert_eq!(
            store.log_chunk_spans(logid).await.expect("spans").iter().map(|s| s.bytes).sum::<u64>(),
            text.len() as u64
        );

        let middle = spans[2].first_line + 5;
        let forward = store.log_chunk_texts(logid, middle, 2, false).await.expect("forward");
        assert_eq!(forward.iter().map(|c| c.0).collect::<Vec<_>>(), vec![spans[2].first_line, spans[3].first_line]);
        let first = usize::try_from(spans[2].first_line).expect("line");
        assert!(forward[0].1.starts_with(&format!("{}\n", lines[first])));
        let backward = store.log_chunk_texts(logid, middle, 5, true).await.expect("backward");
        assert_eq!(
            backward.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![spans[2].first_line, spans[1].first_line, spans[0].first_line]
        );
        let all: String =
            store.log_chunk_texts(logid, 0, 1000, false).await.expect("all").into_iter().map(|c| c.1).collect();
        assert_eq!(all, text);
        assert!(store.log_chunk_texts(logid, 0, 3, true).await.expect("none").is_empty());
    }

    #[tokio::test]
    async fn a_line_longer_than_a_chunk_is_kept_whole() {
        let (store, _dir) = temp_store().await;
        let stepid = step(&store).await;
        let logid = store.add_log(stepid, "big", LogType::Text).await.expect("log");
        let long = "y".repeat(200 * 1024);
        let text = format!("a\n{long}\nb\n");
        assert_eq!(store.append_log(logid, &text).await.expect("append"), 0..3);
        assert_eq!(store.log_lines(logid, 0, 3).await.expect("lines"), vec!["a".to_string(), long, "b".to_string()]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn appended_lines_read_back_in_any_range(
            lines in prop::collection::vec("[ -~]{0,1500}", 0..400),
            appends in prop::collection::vec(1usize..60, 1..40),
            ranges in prop::collection::vec((0i64..450, 0i64..450), 1..8),
            finish in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let (store, _dir) = temp_store().await;
                let stepid = step(&store).await;
                let logid = store.add_log(stepid, "stdio", LogType::Stdio).await.expect("log");
                let mut at = 0;
                let mut sizes = appends.iter().cycle();
                while at < lines.len() {
                    let n = (*sizes.next().expect("cycle")).min(lines.len() - at);
                    let text: String = lines[at..at + n].iter().map(|l| format!("{l}\n")).collect();
                    let range = store.append_log(logid, &text).await.expect("append");
                    let expected = i64::try_from(at).expect("at")..i64::try_from(at + n).expect("end");
                    assert_eq!(range, expected);
                    at += n;
                }
                if finish {
                    store.finish_log(logid).await.expect("finish");
                }
                for &(first, count) in &ranges {
                    let got = store.log_lines(logid, first, count).await.expect("lines");
                    let from = usize::try_from(first).expect("first").min(lines.len());
                    let to = usize::try_from(first + count).expect("end").min(lines.len());
                    assert_eq!(got, lines[from..to].to_vec(), "lines {}+{}", first, count);
                }
            });
        }
    }
}
