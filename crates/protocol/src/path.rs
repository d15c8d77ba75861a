//! Path flavours: the master builds absolute worker paths itself, POSIX or Windows by the worker's `system`.

/// How the worker's operating system writes paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFlavour {
    Posix,
    Windows,
}

impl PathFlavour {
    /// From `get_worker_info`'s `system` (Python's `os.name`).
    pub fn from_system(system: &str) -> PathFlavour {
        if system == "nt" || system == "win32" {
            PathFlavour::Windows
        } else {
            PathFlavour::Posix
        }
    }

    fn is_separator(self, c: char) -> bool {
        match self {
            PathFlavour::Posix => c == '/',
            PathFlavour::Windows => c == '/' || c == '\\',
        }
    }

    fn separator(self) -> char {
        match self {
            PathFlavour::Posix => '/',
            PathFlavour::Windows => '\\',
        }
    }

    /// Whether `path` starts at a root (`/x`; `C:\x`, `\x` or `\\server\share` on Windows).
    pub fn is_absolute(self, path: &str) -> bool {
        match self {
            PathFlavour::Posix => path.starts_with('/'),
            PathFlavour::Windows => {
                let mut chars = path.chars();
                match (chars.next(), chars.next(), chars.next()) {
                    (Some(c), _, _) if self.is_separator(c) => true,
                    (Some(d), Some(':'), Some(s)) => d.is_ascii_alphabetic() && self.is_separator(s),
                    _ => false,
                }
            }
        }
    }

    /// Joins like Python's `os.path.join`: an absolute part discards what came before; empty parts add nothing
    /// but a trailing separator.
    pub fn join<S: AsRef<str>>(self, base: &str, parts: &[S]) -> String {
        let mut out = base.to_string();
        for part in parts {
            let part = part.as_ref();
            if self.is_absolute(part) {
                out = part.to_string();
                continue;
            }
            if !out.is_empty() && !out.ends_with(|c| self.is_separator(c)) {
                out.push(self.separator());
            }
            out.push_str(part);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::PathFlavour::{Posix, Windows};

    #[test]
    fn joins_like_python() {
        assert_eq!(Posix.join("/w", &["builder", "build"]), "/w/builder/build");
        assert_eq!(Posix.join("/w/", &["b"]), "/w/b");
        assert_eq!(Posix.join("/w", &["/abs", "x"]), "/abs/x");
        assert_eq!(Posix.join("/w", &[""]), "/w/");
        assert_eq!(Windows.join("C:\\w", &["b", "build"]), "C:\\w\\b\\build");
        assert_eq!(Windows.join("C:\\w", &["D:\\x"]), "D:\\x");
        assert_eq!(Windows.join("C:\\w\\", &["b"]), "C:\\w\\b");
    }

    #[test]
    fn absolute_paths() {
        assert!(Posix.is_absolute("/x"));
        assert!(!Posix.is_absolute("x/y"));
        assert!(Windows.is_absolute("C:\\x"));
        assert!(Windows.is_absolute("\\\\server\\share"));
        assert!(!Windows.is_absolute("C:x"));
        assert!(!Windows.is_absolute("x\\y"));
    }
}
