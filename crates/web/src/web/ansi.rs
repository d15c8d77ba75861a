//! Terminal escape sequences in log lines: what a reader sees of a line once they are taken out (for searching
//! and for the page shown without JavaScript; the log viewer renders the colours itself).

use std::borrow::Cow;

/// `line` without its escape sequences (CSI such as colours `ESC [ … m`, OSC `ESC ] … BEL`, two-byte `ESC x`),
/// and, as a terminal shows it, only the text after its last carriage return.
pub(crate) fn plain(line: &str) -> Cow<'_, str> {
    let line = match line.trim_end_matches('\r').rsplit_once('\r') {
        Some((_, after)) => after,
        None => line,
    };
    if !line.contains('\u{1b}') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn escapes_are_taken_out() {
        assert_eq!(plain("no colour"), "no colour");
        assert_eq!(plain("\u{1b}[1;31merror\u{1b}[0m: x"), "error: x");
        assert_eq!(plain("\u{1b}[38;5;208mo\u{1b}[38;2;1;2;3mk\u{1b}[K"), "ok");
        assert_eq!(plain("\u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{1b}\\ done"), "link done");
        assert_eq!(plain(" 10%\r 50%\r100% done"), "100% done");
        assert_eq!(plain("windows line\r"), "windows line\r");
        assert_eq!(plain("cut \u{1b}["), "cut ");
    }
}
