//! Splitting a command's raw output into lines, as Buildbot's worker does (`util/lineboundaries.py`).
//!
//! Output bytes are decoded as UTF-8 (invalid sequences become U+FFFD), every match of the connection's
//! `newline_re` becomes a `\n`, and lines longer than `max_line_length` characters are cut into pieces. Complete
//! lines go out as soon as they are known; the rest waits as a partial line until more output or the end.
//!
//! Unlike Buildbot, the result does not depend on how the output was chunked when the pattern is Buildbot's
//! default: a `\r` or the start of an escape sequence at the end of a chunk waits for the next chunk, and a run of
//! backspaces split across chunks is still one line break. Other patterns are handled as Buildbot does: the
//! partial line is matched again with each chunk, and the cut of a long partial line may fall inside what would
//! have become a match.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use kiln_protocol::{LineInfo, WorkerSettings};

/// Buildbot's default `newline_re` without its `\r(?=.)` lookahead, so that the `regex` crate can run it: a `\r`
/// at the end of the text is held back instead (see [`held_tail`]), which makes the two equivalent.
const DEFAULT_WITHOUT_LOOKAHEAD: &str = r"\r\n|\r|\x1b\[u|\x1b\[[0-9]+;[0-9]+[Hf]|\x1b\[2J|\x08+";

/// The longest start of an escape sequence held back at the end of a chunk; longer ones are taken as text.
const MAX_HELD_ESCAPE: usize = 32;

const ESCAPE: u8 = 0x1b;
const BACKSPACE: u8 = 0x08;

/// The line rules of a connection, compiled once from set_worker_settings and shared by every splitter (cheap
/// Clone, Arc inside).
#[derive(Clone)]
pub(crate) struct NewlineRule(Arc<Rule>);

struct Rule {
    matcher: Matcher,
    /// Longer lines are cut into pieces of this many characters (at least 1).
    max_line_length: usize,
}

/// How `newline_re` is matched.
enum Matcher {
    /// Buildbot's default pattern, as [`DEFAULT_WITHOUT_LOOKAHEAD`].
    Default(regex::Regex),
    /// Any other pattern the `regex` crate accepts.
    Plain(regex::Regex),
    /// Patterns that need `fancy_regex` (lookaround, backreferences).
    Fancy(fancy_regex::Regex),
}

impl NewlineRule {
    /// Err(text) when newline_re does not compile (the text goes back to the master as the exception of
    /// set_worker_settings, so make it say what and why).
    pub(crate) fn new(settings: &WorkerSettings) -> Result<NewlineRule, String> {
        let pattern = settings.newline_re.as_str();
        let invalid = |error: &dyn std::fmt::Display| {
            format!("newline_re {pattern:?} is not a valid regular expression: {error}")
        };
        let matcher = if pattern == WorkerSettings::buildbot_defaults().newline_re {
            Matcher::Default(regex::Regex::new(DEFAULT_WITHOUT_LOOKAHEAD).map_err(|e| invalid(&e))?)
        } else {
            let pattern = translate_octal_escapes(pattern);
            match regex::Regex::new(&pattern) {
                Ok(re) => Matcher::Plain(re),
                Err(_) => Matcher::Fancy(fancy_regex::Regex::new(&pattern).map_err(|e| invalid(&e))?),
            }
        };
        let max_line_length = usize::try_from(settings.max_line_length).unwrap_or(usize::MAX).max(1);
        Ok(NewlineRule(Arc::new(Rule { matcher, max_line_length })))
    }
}

/// Rewrites Python's octal escapes (`\0`, `\0o`, `\0oo` and `\ooo`), which neither Rust engine reads, as
/// `\x{..}`. Other escapes are kept as they are (`\1` stays a backreference, as in Python outside a class).
fn translate_octal_escapes(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let digits = bytes[i + 1..].iter().take(3).take_while(|b| (b'0'..=b'7').contains(b)).count();
        let len = if bytes.get(i + 1) == Some(&b'0') || digits == 3 { digits } else { 0 };
        let value = u32::from_str_radix(&pattern[i + 1..i + 1 + len], 8).ok().filter(|&v| v <= 0o377);
        if let Some(value) = value {
            out.push_str(&pattern[copied..i]);
            out.push_str(&format!("\\x{{{value:02x}}}"));
            copied = i + 1 + len;
        }
        // Skip the escaped character too, so that `\\0` stays an escaped backslash and a `0`.
        i += 1 + len.max(1);
    }
    out.push_str(&pattern[copied..]);
    out
}

/// Splits the raw output of one stream into lines.
pub(crate) struct LineSplitter {
    rule: NewlineRule,
    /// The first bytes of a UTF-8 character whose last bytes have not arrived yet.
    pending: Vec<u8>,
    /// The partial line: text after the last line break.
    partial: String,
    /// Where the part of `partial` that has not been through `newline_re` yet starts (default pattern only;
    /// other patterns run on the whole partial line each time, as in Buildbot).
    raw_from: usize,
    /// When the first character of the partial line arrived.
    partial_time: f64,
    /// The last chunk ended with backspaces, already turned into a line break: more backspaces at the start of
    /// the next chunk belong to the same break (default pattern only).
    in_backspaces: bool,
}

impl LineSplitter {
    pub(crate) fn new(rule: NewlineRule) -> LineSplitter {
        LineSplitter {
            rule,
            pending: Vec::new(),
            partial: String::new(),
            raw_from: 0,
            partial_time: 0.0,
            in_backspaces: false,
        }
    }

    /// Feeds raw output bytes that arrived at `now` (seconds since epoch). Returns the complete lines so far, if
    /// any.
    pub(crate) fn push(&mut self, data: &[u8], now: f64) -> Option<LineInfo> {
        if self.partial.is_empty() {
            self.partial_time = now;
        }
        decode(&mut self.pending, data, &mut self.partial);
        self.split(now)
    }

    /// End of stream: the pending partial line (if any), terminated with '\n'.
    pub(crate) fn finish(&mut self, now: f64) -> Option<LineInfo> {
        if !self.pending.is_empty() {
            if self.partial.is_empty() {
                self.partial_time = now;
            }
            self.pending.clear();
            self.partial.push(char::REPLACEMENT_CHARACTER);
        }
        self.in_backspaces = false;
        if self.partial.is_empty() {
            return None;
        }
        self.partial.push('\n');
        self.split(now)
    }

    /// Applies `newline_re` to the new text, then takes the complete lines and the full pieces of a long partial
    /// line out of `partial`.
    fn split(&mut self, now: f64) -> Option<LineInfo> {
        let rule = Arc::clone(&self.rule.0);
        let len = self.partial.len();
        let final_end = match &rule.matcher {
            Matcher::Default(re) => self.substitute_default(re),
            Matcher::Plain(re) => {
                splice(&mut self.partial, 0..len, |text| re.replace_all(text, "\n"));
                self.partial.len()
            }
            Matcher::Fancy(re) => {
                splice(&mut self.partial, 0..len, |text| {
                    re.try_replacen(text, 0, "\n").unwrap_or_else(|error| {
                        tracing::warn!("newline_re failed on output, kept as is: {error}");
                        Cow::Borrowed(text)
                    })
                });
                self.partial.len()
            }
        };

        let max = rule.max_line_length;
        let complete = self.partial[..final_end].rfind('\n').map_or(0, |i| i + 1);
        let mut lines = LineInfo::default();
        lines.text.reserve(complete);
        let mut time = self.partial_time;
        for line in self.partial[..complete].split_terminator('\n') {
            let rest = emit_pieces(&mut lines, line, max, &mut time, now);
            emit(&mut lines, rest, &mut time, now);
        }
        let rest = emit_pieces(&mut lines, &self.partial[complete..final_end], max, &mut time, now);
        let consumed = final_end - rest.len();
        self.raw_from = final_end - consumed;
        if consumed == 0 {
            return None;
        }
        self.partial.drain(..consumed);
        self.partial_time = now;
        Some(lines)
    }

    /// Applies the default pattern to the partial line from `raw_from`, except for a tail that may still become
    /// part of a match. Returns where that tail starts.
    fn substitute_default(&mut self, re: &regex::Regex) -> usize {
        let start = self.raw_from;
        if self.in_backspaces {
            let run = self.partial.as_bytes()[start..].iter().take_while(|&&b| b == BACKSPACE).count();
            self.partial.drain(start..start + run);
            if self.partial.len() == start {
                return start;
            }
            self.in_backspaces = false;
        }
        let region = &self.partial.as_bytes()[start..];
        let Some(first) = first_special(region) else {
            return self.partial.len();
        };
        let hold = held_tail(region);
        let end = self.partial.len() - hold;
        self.in_backspaces = hold == 0 && region.last() == Some(&BACKSPACE);
        splice(&mut self.partial, start + first..end, |text| re.replace_all(text, "\n"));
        self.partial.len() - hold
    }
}

/// Where the first byte that can start a match of the default pattern is (`\r`, ESC or backspace).
fn first_special(bytes: &[u8]) -> Option<usize> {
    let special = |b: &u8| matches!(*b, b'\r' | ESCAPE | BACKSPACE);
    let mut offset = 0;
    for chunk in bytes.chunks(32) {
        // Without an early exit, this test is vectorized: several times faster than `position` alone.
        if chunk.iter().fold(false, |any, b| any | special(b)) {
            return chunk.iter().position(special).map(|i| offset + i);
        }
        offset += chunk.len();
    }
    None
}

/// How many bytes at the end of `text` may still become part of a match of the default pattern, depending on
/// what comes next: a `\r` (a line break of its own, or with a following `\n`), or the start of an escape
/// sequence. A run of backspaces is not held: it is a line break whatever follows.
fn held_tail(text: &[u8]) -> usize {
    if text.last() == Some(&b'\r') {
        return 1;
    }
    let from = text.len().saturating_sub(MAX_HELD_ESCAPE);
    match text[from..].iter().rposition(|&b| b == ESCAPE) {
        Some(i) if is_escape_start(&text[from + i + 1..]) => text.len() - from - i,
        _ => 0,
    }
}

/// Whether ESC followed by `rest` is the start of `ESC[u`, `ESC[2J` or `ESC[<digits>;<digits>H` (or `f`).
fn is_escape_start(rest: &[u8]) -> bool {
    let Some(rest) = rest.strip_prefix(b"[") else {
        return rest.is_empty();
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match &rest[digits..] {
        [] => true,
        [b';', tail @ ..] => digits > 0 && tail.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Replaces `text[range]` by what `replace` makes of it, if that differs.
fn splice(text: &mut String, range: Range<usize>, replace: impl FnOnce(&str) -> Cow<'_, str>) {
    if let Cow::Owned(replaced) = replace(&text[range.clone()]) {
        text.replace_range(range, &replaced);
    }
}

/// Appends `data` to `out` decoded as UTF-8, invalid sequences replaced by U+FFFD. An incomplete character at
/// the end waits in `pending`, to be completed by the next call.
fn decode(pending: &mut Vec<u8>, mut data: &[u8], out: &mut String) {
    out.reserve(data.len());
    while !pending.is_empty() {
        let Some((&byte, rest)) = data.split_first() else {
            return;
        };
        data = rest;
        pending.push(byte);
        match std::str::from_utf8(pending) {
            Ok(text) => {
                out.push_str(text);
                pending.clear();
            }
            Err(error) if error.error_len().is_none() => {}
            Err(_) => {
                let bytes = std::mem::take(pending);
                decode_complete(&bytes, out, pending);
            }
        }
    }
    decode_complete(data, out, pending);
}

/// Appends `bytes` to `out` decoded as UTF-8, except an incomplete character at the end, which goes to `pending`.
fn decode_complete(bytes: &[u8], out: &mut String, pending: &mut Vec<u8>) {
    // The fast path: `from_utf8` is much faster than `utf8_chunks` on valid text.
    if let Ok(text) = std::str::from_utf8(bytes) {
        out.push_str(text);
        return;
    }
    let mut chunks = bytes.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        out.push_str(chunk.valid());
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
        if incomplete && chunks.peek().is_none() {
            pending.extend_from_slice(invalid);
        } else {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// Emits pieces of `max` characters from the start of `text` while more than `max` characters remain, and
/// returns the rest.
fn emit_pieces<'a>(lines: &mut LineInfo, text: &'a str, max: usize, time: &mut f64, now: f64) -> &'a str {
    let mut rest = text;
    while rest.len() > max {
        let Some((cut, _)) = rest.char_indices().nth(max) else {
            break;
        };
        emit(lines, &rest[..cut], time, now);
        rest = &rest[cut..];
    }
    rest
}

/// Adds one line stamped with `time`; the lines after it started arriving `now`.
fn emit(lines: &mut LineInfo, line: &str, time: &mut f64, now: f64) {
    lines.push_line(line, *time);
    *time = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(newline_re: &str, max_line_length: u64) -> WorkerSettings {
        WorkerSettings { newline_re: newline_re.to_string(), max_line_length, ..WorkerSettings::buildbot_defaults() }
    }

    fn default_splitter() -> LineSplitter {
        splitter_for(&WorkerSettings::buildbot_defaults().newline_re, 4096)
    }

    fn splitter_for(newline_re: &str, max_line_length: u64) -> LineSplitter {
        LineSplitter::new(NewlineRule::new(&settings(newline_re, max_line_length)).unwrap())
    }

    /// The text of the lines out of a push or finish ("" when None), after checking the LineInfo is consistent.
    fn text(lines: Option<LineInfo>) -> String {
        lines.map(|lines| checked(&lines).text.clone()).unwrap_or_default()
    }

    /// Asserts the invariants of a LineInfo: text ends with '\n', one index per '\n' pointing at it, one time
    /// per line.
    fn checked(lines: &LineInfo) -> &LineInfo {
        assert!(lines.text.ends_with('\n'), "{lines:?}");
        let newlines: Vec<u64> =
            lines.text.chars().enumerate().filter(|&(_, c)| c == '\n').map(|(i, _)| i as u64).collect();
        assert_eq!(lines.newline_indexes, newlines, "{lines:?}");
        assert_eq!(lines.line_times.len(), newlines.len(), "{lines:?}");
        lines
    }

    /// Feeds `chunks` then finishes; returns all the text that came out.
    fn run(splitter: &mut LineSplitter, chunks: &[&[u8]]) -> String {
        let mut out = String::new();
        for chunk in chunks {
            out += &text(splitter.push(chunk, 1.0));
        }
        out + &text(splitter.finish(2.0))
    }

    fn default_run(chunks: &[&[u8]]) -> String {
        run(&mut default_splitter(), chunks)
    }

    #[test]
    fn complete_lines_come_out_and_the_partial_line_waits() {
        let mut splitter = default_splitter();
        let lines = splitter.push(b"one\ntwo\nthr", 1.0).unwrap();
        assert_eq!(checked(&lines).text, "one\ntwo\n");
        assert_eq!(lines.newline_indexes, [3, 7]);
        assert_eq!(lines.line_times, [1.0, 1.0]);
        assert_eq!(splitter.push(b"ee", 2.0), None);
        let lines = splitter.push(b"\nfour\n", 3.0).unwrap();
        assert_eq!(checked(&lines).text, "three\nfour\n");
        assert_eq!(lines.line_times, [1.0, 3.0], "a line is stamped with its first characters' time");
        assert_eq!(splitter.finish(4.0), None);
    }

    #[test]
    fn finish_terminates_the_partial_line_with_its_time() {
        let mut splitter = default_splitter();
        assert_eq!(splitter.push(b"no newline", 5.0), None);
        let lines = splitter.finish(9.0).unwrap();
        assert_eq!(lines, LineInfo { text: "no newline\n".into(), newline_indexes: vec![10], line_times: vec![5.0] });
        assert_eq!(splitter.finish(10.0), None);
        assert_eq!(default_splitter().finish(1.0), None);
    }

    #[test]
    fn empty_lines_and_empty_pushes() {
        assert_eq!(default_run(&[b"\n\na\n", b"", b"\n"]), "\n\na\n\n");
        assert_eq!(default_splitter().push(b"", 1.0), None);
    }

    #[test]
    fn crlf_is_one_line_break() {
        assert_eq!(default_run(&[b"a\r\nb\r\n"]), "a\nb\n");
    }

    #[test]
    fn lone_cr_is_a_line_break() {
        assert_eq!(default_run(&[b"a\rb"]), "a\nb\n");
        assert_eq!(default_run(&[b"10%\r20%\r\r\n"]), "10%\n20%\n\n");
    }

    #[test]
    fn cr_at_the_end_of_a_push_waits_for_the_next_character() {
        let mut splitter = default_splitter();
        assert_eq!(splitter.push(b"a\r", 1.0), None);
        assert_eq!(text(splitter.push(b"b", 2.0)), "a\n");
        assert_eq!(splitter.push(b"c\r", 3.0), None);
        assert_eq!(text(splitter.push(b"\n", 4.0)), "bc\n", "\\r then \\n is one line break");
        assert_eq!(splitter.push(b"d\r", 5.0), None);
        assert_eq!(text(splitter.finish(6.0)), "d\n", "a final \\r ends the line once");
    }

    #[test]
    fn cursor_escapes_are_line_breaks() {
        assert_eq!(default_run(&[b"a\x1b[2Jb\x1b[uc\x1b[12;1Hd\x1b[3;45fe"]), "a\nb\nc\nd\ne\n");
        assert_eq!(default_run(&[b"a\x1b[1mb\x1b[;1Hc\x1b"]), "a\x1b[1mb\x1b[;1Hc\x1b\n", "other escapes are text");
    }

    #[test]
    fn escapes_split_across_pushes() {
        assert_eq!(default_run(&[b"a\x1b", b"[", b"12", b";", b"3", b"Hb"]), "a\nb\n");
        assert_eq!(default_run(&[b"a\x1b[2", b"Jb"]), "a\nb\n");
        assert_eq!(default_run(&[b"a\x1b[1", b"x"]), "a\x1b[1x\n");
    }

    #[test]
    fn backspace_runs_are_one_line_break_even_split_across_pushes() {
        assert_eq!(default_run(&[b"a\x08\x08\x08b"]), "a\nb\n");
        let mut splitter = default_splitter();
        assert_eq!(text(splitter.push(b"1%\x08\x08", 1.0)), "1%\n", "not held back");
        assert_eq!(splitter.push(b"\x08", 2.0), None);
        assert_eq!(splitter.push(b"", 2.5), None);
        assert_eq!(text(splitter.push(b"\x082%\x08", 3.0)), "2%\n");
        assert_eq!(text(splitter.push(b"x\x08", 4.0)), "x\n", "a new run after other text");
        assert_eq!(splitter.finish(5.0), None);
    }

    #[test]
    fn utf8_characters_split_across_pushes_decode() {
        let euro = "€".as_bytes();
        let emoji = "😀".as_bytes();
        assert_eq!(default_run(&[&euro[..1], &euro[1..2], &euro[2..], b"\n"]), "€\n");
        assert_eq!(default_run(&[&emoji[..3], &emoji[3..], b"x\n"]), "😀x\n");
        let mut splitter = default_splitter();
        assert_eq!(splitter.push(&[b'a', euro[0]], 1.0), None);
        assert_eq!(text(splitter.push(&[euro[1], euro[2], b'\n'], 2.0)), "a€\n");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(default_run(&[b"a\xffb\n"]), "a\u{fffd}b\n");
        assert_eq!(default_run(&[b"a\xe2\x82", b"b\n"]), "a\u{fffd}b\n", "a cut character before a new one");
        assert_eq!(default_run(&[b"a\xe2", b"\xe2\x82\xac\n"]), "a\u{fffd}€\n");
        assert_eq!(default_run(&[b"a\xf0\x9f"]), "a\u{fffd}\n", "finish replaces an incomplete tail");
        let mut splitter = default_splitter();
        assert_eq!(splitter.push(b"\xe2\x82", 1.0), None);
        assert_eq!(text(splitter.finish(2.0)), "\u{fffd}\n");
    }

    #[test]
    fn long_lines_are_cut_into_pieces() {
        let mut splitter = splitter_for(&WorkerSettings::buildbot_defaults().newline_re, 4);
        assert_eq!(text(splitter.push(b"abcd\nabcdefghij\n\n", 1.0)), "abcd\nabcd\nefgh\nij\n\n");
        assert_eq!(text(splitter.push("éééééé\n".as_bytes(), 1.0)), "éééé\néé\n", "characters, not bytes");
    }

    #[test]
    fn a_growing_partial_line_is_cut_right_away() {
        let mut splitter = splitter_for(&WorkerSettings::buildbot_defaults().newline_re, 4);
        assert_eq!(splitter.push(b"abcd", 1.0), None, "exactly max_line_length: may still end here");
        let lines = splitter.push(b"ef", 2.0).unwrap();
        assert_eq!((checked(&lines).text.as_str(), lines.line_times.as_slice()), ("abcd\n", [1.0].as_slice()));
        let lines = splitter.push(b"ghijklmnopq", 3.0).unwrap();
        assert_eq!(checked(&lines).text, "efgh\nijkl\nmnop\n");
        assert_eq!(lines.line_times, [2.0, 3.0, 3.0]);
        assert_eq!(splitter.partial, "q");
        assert_eq!(text(splitter.push(b"\n", 4.0)), "q\n");
    }

    #[test]
    fn a_partial_line_cut_keeps_a_held_escape_whole() {
        let mut splitter = splitter_for(&WorkerSettings::buildbot_defaults().newline_re, 2);
        assert_eq!(text(splitter.push(b"abc\x1b[1", 1.0)), "ab\n");
        assert_eq!(text(splitter.push(b";2Hd\n", 2.0)), "c\nd\n");
    }

    #[test]
    fn zero_max_line_length_means_one_character_lines() {
        let mut splitter = splitter_for(&WorkerSettings::buildbot_defaults().newline_re, 0);
        assert_eq!(text(splitter.push(b"abc\n", 1.0)), "a\nb\nc\n");
    }

    #[test]
    fn other_patterns_use_regex_or_fancy_regex() {
        let plain = NewlineRule::new(&settings(";|,", 100)).unwrap();
        assert!(matches!(plain.0.matcher, Matcher::Plain(_)));
        assert_eq!(run(&mut LineSplitter::new(plain), &[b"a;b,", b"c"]), "a\nb\nc\n");
        let fancy = NewlineRule::new(&settings(r"x(?=y)", 100)).unwrap();
        assert!(matches!(fancy.0.matcher, Matcher::Fancy(_)));
        // As in Buildbot, the partial line is matched again with the next push.
        assert_eq!(run(&mut LineSplitter::new(fancy), &[b"axyx", b"y"]), "a\ny\ny\n");
        let default = NewlineRule::new(&WorkerSettings::buildbot_defaults()).unwrap();
        assert!(matches!(default.0.matcher, Matcher::Default(_)));
    }

    #[test]
    fn python_octal_escapes_are_translated() {
        assert_eq!(translate_octal_escapes(r"\033\[2J"), r"\x{1b}\[2J");
        assert_eq!(translate_octal_escapes(r"a\0b\07\101"), r"a\x{00}b\x{07}\x{41}");
        assert_eq!(translate_octal_escapes(r"\\033\1\12\400\x08"), r"\\033\1\12\400\x08");
        assert_eq!(translate_octal_escapes("é\\033é"), r"é\x{1b}é");
        let octal = NewlineRule::new(&settings(r"\033\[2J|\r(?=.)", 100)).unwrap();
        assert_eq!(run(&mut LineSplitter::new(octal), &[b"a\x1b[2Jb\rc"]), "a\nb\nc\n");
    }

    #[test]
    fn invalid_patterns_are_reported() {
        let error = NewlineRule::new(&settings("(a", 100)).err().unwrap();
        assert!(error.contains("newline_re \"(a\" is not a valid regular expression"), "{error}");
        assert!(error.contains("parenthesis"), "{error}");
    }

    /// Buildbot's behaviour on the whole output at once: the text lines, each cut into pieces of `max` characters.
    fn reference(bytes: &[u8], pattern: &str, max: usize) -> Vec<String> {
        let re = fancy_regex::Regex::new(&translate_octal_escapes(pattern)).unwrap();
        let text = String::from_utf8_lossy(bytes);
        let mut replaced = re.replace_all(&text, "\n").into_owned();
        if !replaced.is_empty() && !replaced.ends_with('\n') {
            replaced = re.replace_all(&format!("{text}\n"), "\n").into_owned();
        }
        replaced.split_terminator('\n').flat_map(|line| pieces(line, max)).collect()
    }

    /// A line cut into pieces of `max` characters (an empty line stays one line).
    fn pieces(line: &str, max: usize) -> Vec<String> {
        let chars: Vec<char> = line.chars().collect();
        if chars.is_empty() {
            return vec![String::new()];
        }
        chars.chunks(max).map(|piece| piece.iter().collect()).collect()
    }

    /// Feeds `bytes` cut at `cuts` (push i at time i), then finishes; returns each line with its time.
    fn split_chunked(splitter: &mut LineSplitter, bytes: &[u8], cuts: &[usize]) -> Vec<(String, f64)> {
        let mut bounds: Vec<usize> = cuts.iter().map(|&cut| cut.min(bytes.len())).collect();
        bounds.extend([0, bytes.len()]);
        bounds.sort_unstable();
        let mut out = LineInfo::default();
        for (i, pair) in bounds.windows(2).enumerate() {
            if let Some(lines) = splitter.push(&bytes[pair[0]..pair[1]], i as f64) {
                out.append(checked(&lines));
            }
        }
        if let Some(lines) = splitter.finish(bounds.len() as f64) {
            out.append(checked(&lines));
        }
        checked_or_empty(&out);
        out.lines().map(str::to_string).zip(out.line_times.iter().copied()).collect()
    }

    fn checked_or_empty(lines: &LineInfo) {
        if !lines.text.is_empty() {
            checked(lines);
        }
    }

    /// Output as pieces that exercise every rule: escapes and their parts, `\r`, backspaces, multi-byte and
    /// invalid UTF-8 (whole or cut).
    fn output() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop::sample::select(vec![
            &b"a"[..],
            b"b",
            b"\n",
            b"\r",
            b"\r\n",
            b"\x1b",
            b"\x1b[2J",
            b"\x1b[u",
            b"\x1b[12;3H",
            b"[",
            b"2",
            b";",
            b"H",
            b"J",
            b"\x08",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xff",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
        ]);
        prop::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_lines(
            bytes in output(),
            cuts in prop::collection::vec(0..200usize, 0..12),
            max in 1..8usize,
        ) {
            let pattern = WorkerSettings::buildbot_defaults().newline_re;
            let mut splitter = splitter_for(&pattern, max as u64);
            let lines: Vec<String> = split_chunked(&mut splitter, &bytes, &cuts).into_iter().map(|(l, _)| l).collect();
            prop_assert_eq!(lines, reference(&bytes, &pattern, max));
        }

        #[test]
        fn other_patterns_follow_the_reference_when_pushed_at_once(bytes in output()) {
            // The default pattern, spelled differently so that it goes through fancy_regex.
            let pattern = r"(\r\n|\r(?=.)|\x1b\[u|\x1b\[[0-9]+;[0-9]+[Hf]|\x1b\[2J|\x08+)";
            let max = 1000;
            let mut splitter = splitter_for(pattern, max as u64);
            prop_assert!(matches!(splitter.rule.0.matcher, Matcher::Fancy(_)));
            let lines: Vec<String> = split_chunked(&mut splitter, &bytes, &[]).into_iter().map(|(l, _)| l).collect();
            prop_assert_eq!(lines, reference(&bytes, pattern, max));
        }

        #[test]
        fn plain_patterns_do_not_depend_on_chunking(
            bytes in output(),
            cuts in prop::collection::vec(0..200usize, 0..12),
        ) {
            // Without cuts of long partial lines: they could fall inside a match, as in Buildbot.
            let (pattern, max) = ("[;J]|\r\n", 1000);
            let mut splitter = splitter_for(pattern, max as u64);
            let lines: Vec<String> = split_chunked(&mut splitter, &bytes, &cuts).into_iter().map(|(l, _)| l).collect();
            prop_assert_eq!(lines, reference(&bytes, pattern, max));
        }

        #[test]
        fn lines_are_stamped_with_the_arrival_of_their_first_character(
            text in "[ab\n]{0,60}",
            cuts in prop::collection::vec(0..60usize, 0..12),
            max in 1..8usize,
        ) {
            let mut splitter = splitter_for(&WorkerSettings::buildbot_defaults().newline_re, max as u64);
            let found = split_chunked(&mut splitter, text.as_bytes(), &cuts);
            // Push i holds the bytes from the i-th to the (i+1)-th bound.
            let mut bounds: Vec<usize> = cuts.iter().map(|&cut| cut.min(text.len())).collect();
            bounds.extend([0, text.len()]);
            bounds.sort_unstable();
            let arrival = |at: usize| bounds.windows(2).position(|pair| at < pair[1]).unwrap_or(bounds.len()) as f64;
            let mut expected = Vec::new();
            let mut start = 0;
            for line in text.split_inclusive('\n') {
                let content = line.strip_suffix('\n').unwrap_or(line);
                let mut piece_start = start;
                for piece in pieces(content, max) {
                    expected.push((piece.clone(), arrival(piece_start)));
                    piece_start += piece.len();
                }
                start += line.len();
            }
            prop_assert_eq!(found, expected);
        }
    }

    /// Throughput of `push` on 100-byte ASCII lines with the default pattern:
    /// `cargo test --release -p kiln-worker lines::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let line = format!("{}\n", "x".repeat(99));
        let chunk = line.repeat(64 * 1024 / line.len());
        let mut splitter = default_splitter();
        let rounds = 4000;
        let start = std::time::Instant::now();
        let mut count = 0;
        for _ in 0..rounds {
            count += splitter.push(chunk.as_bytes(), 1.0).map_or(0, |lines| lines.line_count());
        }
        let seconds = start.elapsed().as_secs_f64();
        let megabytes = (chunk.len() * rounds) as f64 / 1e6;
        println!("{count} lines, {megabytes:.0} MB in {seconds:.3} s: {:.0} MB/s", megabytes / seconds);
    }
}
