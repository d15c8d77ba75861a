//! Batching a command's update entries into `update` messages by weight, as Buildbot's worker does
//! (`util/buffer_manager.py`). The timer is the caller's: when it fires, it sends [`UpdateBuffer::take`].

use kiln_protocol::{LineInfo, UpdateEntry};

/// The weight of an entry that is not lines.
const OTHER_WEIGHT: usize = 20;
/// The weight of each newline index and each line time of lines.
const NUMBER_WEIGHT: usize = 8;

/// Entries waiting to be sent, of a total weight of at most `buffer_size`.
pub(crate) struct UpdateBuffer {
    size: usize,
    entries: Vec<UpdateEntry>,
    weight: usize,
}

impl UpdateBuffer {
    pub(crate) fn new(buffer_size: usize) -> UpdateBuffer {
        UpdateBuffer { size: buffer_size, entries: Vec::new(), weight: 0 }
    }

    /// Adds an entry; returns the messages (each a list of entries) that must be sent now, in order. Usually
    /// empty.
    ///
    /// An entry that does not fit sends the buffer first. One heavier than the whole buffer is then sent alone,
    /// lines cut at line boundaries into messages that fit (a line heavier than the buffer goes alone).
    pub(crate) fn push(&mut self, mut entry: UpdateEntry) -> Vec<Vec<UpdateEntry>> {
        let weight = weight(&entry);
        if weight <= self.size.saturating_sub(self.weight) {
            self.add(entry, weight);
            return Vec::new();
        }
        let mut messages: Vec<Vec<UpdateEntry>> = self.take().into_iter().collect();
        if weight <= self.size {
            self.add(entry, weight);
            return messages;
        }
        let Some(lines) = lines_mut(&mut entry) else {
            messages.push(vec![entry]);
            return messages;
        };
        // `entry` keeps its stream (and log name) with no lines, to be cloned for each piece.
        let lines = std::mem::take(lines);
        for piece in pieces(&lines, self.size) {
            let mut message = entry.clone();
            if let Some(lines) = lines_mut(&mut message) {
                *lines = piece;
            }
            messages.push(vec![message]);
        }
        messages
    }

    /// Takes everything buffered as one message (None if empty).
    pub(crate) fn take(&mut self) -> Option<Vec<UpdateEntry>> {
        if self.entries.is_empty() {
            return None;
        }
        self.weight = 0;
        Some(std::mem::take(&mut self.entries))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Buffers an entry that fits, appending its lines to the last entry if that is of the same stream.
    fn add(&mut self, entry: UpdateEntry, weight: usize) {
        self.weight += weight;
        if let Some(last) = self.entries.last_mut() {
            if let Some((into, lines)) = same_stream(last, &entry) {
                into.append(lines);
                return;
            }
        }
        self.entries.push(entry);
    }
}

/// Buildbot's measure of an entry's size: the text of lines plus 8 per newline index and line time; 20 for
/// anything else.
fn weight(entry: &UpdateEntry) -> usize {
    match entry {
        UpdateEntry::Stdout(lines)
        | UpdateEntry::Stderr(lines)
        | UpdateEntry::Header(lines)
        | UpdateEntry::Log { lines, .. } => {
            lines.text.len() + NUMBER_WEIGHT * (lines.newline_indexes.len() + lines.line_times.len())
        }
        _ => OTHER_WEIGHT,
    }
}

/// The lines of an entry of lines.
fn lines_mut(entry: &mut UpdateEntry) -> Option<&mut LineInfo> {
    match entry {
        UpdateEntry::Stdout(lines)
        | UpdateEntry::Stderr(lines)
        | UpdateEntry::Header(lines)
        | UpdateEntry::Log { lines, .. } => Some(lines),
        _ => None,
    }
}

/// The lines of `last` and of `entry` when both are lines of the same stream (of the same log for logs).
fn same_stream<'a, 'b>(last: &'a mut UpdateEntry, entry: &'b UpdateEntry) -> Option<(&'a mut LineInfo, &'b LineInfo)> {
    match (last, entry) {
        (UpdateEntry::Stdout(into), UpdateEntry::Stdout(lines))
        | (UpdateEntry::Stderr(into), UpdateEntry::Stderr(lines))
        | (UpdateEntry::Header(into), UpdateEntry::Header(lines)) => Some((into, lines)),
        (UpdateEntry::Log { name, lines: into }, UpdateEntry::Log { name: other, lines }) if name == other => {
            Some((into, lines))
        }
        _ => None,
    }
}

/// Cuts `lines` at line boundaries into pieces of weight at most `size`, each with its own newline indexes; a
/// line heavier than `size` is a piece of its own.
fn pieces(lines: &LineInfo, size: usize) -> Vec<LineInfo> {
    let mut pieces = Vec::new();
    let mut piece = LineInfo::default();
    let mut weight = 0;
    for (line, &time) in lines.lines().zip(&lines.line_times) {
        let line_weight = line.len() + 1 + 2 * NUMBER_WEIGHT;
        if weight + line_weight > size && piece.line_count() > 0 {
            pieces.push(std::mem::take(&mut piece));
            weight = 0;
        }
        piece.push_line(line, time);
        weight += line_weight;
    }
    if piece.line_count() > 0 {
        pieces.push(piece);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(lines: &[(&str, f64)]) -> LineInfo {
        let mut info = LineInfo::default();
        for &(line, time) in lines {
            info.push_line(line, time);
        }
        info
    }

    fn stdout(text: &str) -> UpdateEntry {
        UpdateEntry::Stdout(LineInfo::from_text(text, 1.0))
    }

    fn log(name: &str, text: &str) -> UpdateEntry {
        UpdateEntry::Log { name: name.to_string(), lines: LineInfo::from_text(text, 1.0) }
    }

    #[test]
    fn weights_follow_buildbot() {
        assert_eq!(weight(&stdout("abc\n")), 4 + 16);
        assert_eq!(weight(&stdout("é\nb\n")), 5 + 32, "bytes of text");
        assert_eq!(weight(&log("name does not count", "a\n")), 2 + 16);
        assert_eq!(weight(&UpdateEntry::Rc(0)), 20);
        assert_eq!(weight(&UpdateEntry::Files(vec!["a very long file name".repeat(10)])), 20);
    }

    #[test]
    fn small_entries_wait_and_same_streams_merge() {
        let mut buffer = UpdateBuffer::new(1000);
        assert!(buffer.is_empty());
        assert_eq!(buffer.take(), None);
        assert!(buffer.push(UpdateEntry::Stdout(lines(&[("ab", 1.0)]))).is_empty());
        assert!(buffer.push(UpdateEntry::Stdout(lines(&[("€", 2.0), ("", 3.0)]))).is_empty());
        assert!(!buffer.is_empty());
        let merged = lines(&[("ab", 1.0), ("€", 2.0), ("", 3.0)]);
        assert_eq!(merged.newline_indexes, [2, 4, 5]);
        assert_eq!(buffer.take(), Some(vec![UpdateEntry::Stdout(merged)]));
        assert!(buffer.is_empty());
        assert_eq!(buffer.take(), None);
    }

    #[test]
    fn only_consecutive_entries_of_one_stream_merge() {
        let mut buffer = UpdateBuffer::new(1000);
        let entries = [
            stdout("a\n"),
            UpdateEntry::Stderr(LineInfo::from_text("b\n", 1.0)),
            stdout("c\n"),
            log("x", "d\n"),
            log("x", "e\n"),
            log("y", "f\n"),
            UpdateEntry::Header(LineInfo::from_text("g\n", 1.0)),
            UpdateEntry::Header(LineInfo::from_text("h\n", 1.0)),
            UpdateEntry::Rc(0),
            UpdateEntry::Rc(1),
        ];
        for entry in entries {
            assert!(buffer.push(entry).is_empty());
        }
        assert_eq!(
            buffer.take().unwrap(),
            [
                stdout("a\n"),
                UpdateEntry::Stderr(LineInfo::from_text("b\n", 1.0)),
                stdout("c\n"),
                log("x", "d\ne\n"),
                log("y", "f\n"),
                UpdateEntry::Header(LineInfo::from_text("g\nh\n", 1.0)),
                UpdateEntry::Rc(0),
                UpdateEntry::Rc(1),
            ]
        );
    }

    #[test]
    fn overflow_sends_the_buffer_then_buffers_the_entry() {
        let mut buffer = UpdateBuffer::new(40);
        assert!(buffer.push(stdout("0123\n")).is_empty());
        assert_eq!(buffer.push(stdout("0123\n")), [vec![stdout("0123\n")]], "21 + 21 > 40");
        assert_eq!(buffer.take(), Some(vec![stdout("0123\n")]));
        assert!(buffer.push(stdout("012\n")).is_empty());
        assert!(buffer.push(UpdateEntry::Rc(0)).is_empty(), "20 + 20 fits exactly");
        assert_eq!(buffer.push(UpdateEntry::Rc(1)), [vec![stdout("012\n"), UpdateEntry::Rc(0)]]);
    }

    #[test]
    fn a_heavy_entry_of_another_kind_goes_alone() {
        let mut buffer = UpdateBuffer::new(18);
        assert!(buffer.push(stdout("\n")).is_empty(), "weight 17");
        assert_eq!(buffer.push(UpdateEntry::Rc(3)), [vec![stdout("\n")], vec![UpdateEntry::Rc(3)]]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn heavy_lines_are_cut_at_line_boundaries() {
        let mut buffer = UpdateBuffer::new(50);
        assert!(buffer.push(UpdateEntry::Rc(0)).is_empty());
        let entry = UpdateEntry::Log {
            name: "build.log".into(),
            lines: lines(&[("aaaa", 1.0), ("bbbb", 2.0), ("cccccccccccccccccccccccccccccccccccccc", 3.0), ("é", 4.0)]),
        };
        let piece = |lines: LineInfo| vec![UpdateEntry::Log { name: "build.log".into(), lines }];
        assert_eq!(
            buffer.push(entry),
            [
                vec![UpdateEntry::Rc(0)],
                piece(lines(&[("aaaa", 1.0), ("bbbb", 2.0)])),
                piece(lines(&[("cccccccccccccccccccccccccccccccccccccc", 3.0)])),
                piece(lines(&[("é", 4.0)])),
            ]
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_zero_buffer_sends_everything_alone() {
        let mut buffer = UpdateBuffer::new(0);
        assert_eq!(buffer.push(UpdateEntry::Rc(0)), [vec![UpdateEntry::Rc(0)]]);
        assert_eq!(buffer.push(stdout("a\nb\n")), [vec![stdout("a\n")], vec![stdout("b\n")]]);
        assert!(buffer.push(stdout("")).is_empty(), "empty lines weigh nothing");
    }

    /// One line or one other entry, with its stream, in the order it is to reach the master.
    #[derive(Debug, PartialEq)]
    enum Atom {
        Line { stream: String, line: String, time: f64 },
        Other(UpdateEntry),
    }

    fn stream(entry: &UpdateEntry) -> Option<String> {
        match entry {
            UpdateEntry::Log { name, .. } => Some(format!("log {name}")),
            UpdateEntry::Stdout(_) | UpdateEntry::Stderr(_) | UpdateEntry::Header(_) => Some(entry.key().to_string()),
            _ => None,
        }
    }

    fn atoms<'a>(entries: impl IntoIterator<Item = &'a UpdateEntry>) -> Vec<Atom> {
        let mut atoms = Vec::new();
        for entry in entries {
            let mut entry = entry.clone();
            match (stream(&entry), lines_mut(&mut entry)) {
                (Some(stream), Some(lines)) => {
                    assert_consistent(lines);
                    atoms.extend(lines.lines().zip(&lines.line_times).map(|(line, &time)| Atom::Line {
                        stream: stream.clone(),
                        line: line.to_string(),
                        time,
                    }))
                }
                _ => atoms.push(Atom::Other(entry)),
            }
        }
        atoms
    }

    fn assert_consistent(lines: &LineInfo) {
        let newlines: Vec<u64> =
            lines.text.chars().enumerate().filter(|&(_, c)| c == '\n').map(|(i, _)| i as u64).collect();
        assert_eq!(lines.newline_indexes, newlines, "{lines:?}");
        assert_eq!(lines.line_times.len(), newlines.len(), "{lines:?}");
        assert!(lines.text.is_empty() || lines.text.ends_with('\n'), "{lines:?}");
    }

    fn entry() -> impl Strategy<Value = UpdateEntry> {
        let line = ("[aé😀]{0,12}", 0..100u8).prop_map(|(line, time)| (line, f64::from(time)));
        let lines = prop::collection::vec(line, 0..6).prop_map(|lines| {
            let mut info = LineInfo::default();
            for (line, time) in lines {
                info.push_line(&line, time);
            }
            info
        });
        prop_oneof![
            lines.clone().prop_map(UpdateEntry::Stdout),
            lines.clone().prop_map(UpdateEntry::Stderr),
            lines.clone().prop_map(UpdateEntry::Header),
            (prop::sample::select(vec!["x", "y"]), lines)
                .prop_map(|(name, lines)| { UpdateEntry::Log { name: name.to_string(), lines } }),
            any::<i8>().prop_map(|rc| UpdateEntry::Rc(rc.into())),
        ]
    }

    proptest! {
        #[test]
        fn messages_carry_every_line_in_order_within_the_size(
            entries in prop::collection::vec(entry(), 0..30),
            size in 0..200usize,
        ) {
            let mut buffer = UpdateBuffer::new(size);
            let mut messages = Vec::new();
            for entry in entries.clone() {
                messages.extend(buffer.push(entry));
                prop_assert!(buffer.weight <= size);
                prop_assert_eq!(buffer.weight, buffer.entries.iter().map(weight).sum::<usize>());
            }
            messages.extend(buffer.take());
            prop_assert!(buffer.is_empty());

            prop_assert_eq!(atoms(messages.iter().flatten()), atoms(&entries));
            for message in &messages {
                prop_assert!(!message.is_empty());
                let total: usize = message.iter().map(weight).sum();
                let alone = match message.as_slice() {
                    [entry] => stream(entry).is_none() || lines_mut(&mut entry.clone()).unwrap().line_count() == 1,
                    _ => false,
                };
                prop_assert!(total <= size || alone, "{message:?} weighs {total} > {size}");
                for pair in message.windows(2) {
                    let mut first = pair[0].clone();
                    prop_assert!(same_stream(&mut first, &pair[1]).is_none(), "not merged: {pair:?}");
                }
            }
        }
    }
}
