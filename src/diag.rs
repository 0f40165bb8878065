//! Diagnostics that name the file and line, so a user can go straight to the mistake.

use std::fmt;

/// One problem in a repository's config or data files.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Diagnostic {
    /// Repository-relative path of the file at fault.
    pub file: String,
    /// 1-based line, when it is known.
    pub line: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A list of diagnostics, reported together (validate shows all of them, not the first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// Drops repeats, keeping the first: a file two suites share is reported once.
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0.retain(|d| seen.insert(d.clone()));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The 1-based line of the first occurrence of `needle` in `text`, used to point at
/// the place in a YAML file where a value (a path, a glob) was written.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Like [`line_of`], but only after the first line that is `section:` (a suite's key in
/// `.promptgate.yml`), so a metric is found in its own suite; falls back to [`line_of`].
pub fn line_in_section(text: &str, section: &str, needle: &str) -> Option<usize> {
    let head = format!("{section}:");
    let start = text.lines().position(|l| l.trim() == head);
    start
        .and_then(|s| {
            text.lines()
                .skip(s)
                .position(|l| l.contains(needle))
                .map(|i| s + i + 1)
        })
        .or_else(|| line_of(text, needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_and_line() {
        let d = Diagnostic::new(".promptgate.yml", Some(3), "unknown key `sutes`");
        assert_eq!(d.to_string(), ".promptgate.yml:3: unknown key `sutes`");
        let d = Diagnostic::new("a.jsonl", None, "missing");
        assert_eq!(d.to_string(), "a.jsonl: missing");
    }

    #[test]
    fn line_in_section_skips_other_suites() {
        let text = "suites:\n  a:\n    similarity: 1\n  b:\n    similarity: 2\n";
        assert_eq!(line_in_section(text, "b", "similarity:"), Some(5));
        assert_eq!(line_in_section(text, "zz", "similarity:"), Some(3));
    }

    #[test]
    fn line_of_finds_first_match() {
        assert_eq!(line_of("a\nb: x.j2\nc", "x.j2"), Some(2));
        assert_eq!(line_of("a", "zz"), None);
    }
}
