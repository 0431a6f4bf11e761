//! Errors in a policy file, each pointing at the line and column of the offending node.
//!
//! Error output is bounded and cannot be forged by the file it describes: at most
//! [`MAX_ERRORS`] are kept (the earliest in the file; the rest are only counted), and every
//! message and file name is made printable on one line ([`printable`]), so a key holding a
//! newline and `x.yaml:1:1: ...` shows as one error, not two.

use std::fmt;

/// Errors reported for one file; past this many only their number is (the first ones in
/// file order are the ones shown).
pub const MAX_ERRORS: usize = 100;

/// Characters of a message kept: a message echoing a huge key or value keeps its start
/// and its end (where the expected keys are named), with the middle left out.
const MAX_MESSAGE_CHARS: usize = 1_000;

/// One problem in a policy file.
///
/// Displays as `FILE:LINE:COL: message`, the form `warden policy check` prints and editors
/// jump to. `line` and `col` are 1-based; both are 0 when the file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct Diagnostic {
    /// The file name as given to [`parse`](super::parse) or [`load`](super::load), made
    /// printable.
    pub file: String,
    /// 1-based line of the offending node.
    pub line: usize,
    /// 1-based column (in characters) of the offending node.
    pub col: usize,
    /// What is wrong, and where possible what would be right; printable on one line (see
    /// [`printable`]).
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic whose file name and message are made [`printable`] (they echo what the
    /// file or its sender wrote), the message also shortened to at most 1,000 characters.
    pub fn new(file: &str, line: usize, col: usize, message: &str) -> Self {
        Diagnostic {
            file: printable(file),
            line,
            col,
            message: shortened(&printable(message)),
        }
    }
}

/// Every problem found in a policy file: the first [`MAX_ERRORS`] in file order, and how
/// many there were in all. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    /// The problems shown, in file order.
    shown: Vec<Diagnostic>,
    /// Problems found, shown or not.
    found: usize,
}

impl fmt::Display for Diagnostics {
    /// One `FILE:LINE:COL: message` line per problem shown, then, when some were left
    /// out, a line saying how many.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// All of `problems`, none left out.
    pub fn new(problems: Vec<Diagnostic>) -> Self {
        Diagnostics {
            found: problems.len(),
            shown: problems,
        }
    }

    /// The first problems (`shown`, in file order) of `found` in all.
    pub(super) fn first_of(shown: Vec<Diagnostic>, found: usize) -> Self {
        Diagnostics {
            found: found.max(shown.len()),
            shown,
        }
    }

    /// Number of problems found (shown or not).
    pub fn len(&self) -> usize {
        self.found
    }

    /// True when there is no problem (never the case for an error returned by `parse`).
    pub fn is_empty(&self) -> bool {
        self.found == 0
    }

    /// Problems found but not shown (past [`MAX_ERRORS`]).
    pub fn omitted(&self) -> usize {
        self.found - self.shown.len()
    }

    /// The problems shown, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.shown.iter()
    }

    /// The output lines: each problem shown as `FILE:LINE:COL: message`, then, if some
    /// were left out, `FILE: N more errors not shown (...)`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.shown.iter().map(ToString::to_string).collect();
        if self.omitted() > 0 {
            let file = self.shown.first().map_or("", |d| d.file.as_str());
            lines.push(format!(
                "{file}: {} more errors not shown (only the first {} are reported)",
                self.omitted(),
                self.shown.len()
            ));
        }
        lines
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.shown.iter()
    }
}

/// `text` with everything that could break or disguise an output line escaped as Rust
/// writes it: `\n`, `\r`, `\t`, `\\`, and `\u{1b}` for other control characters (C0, DEL,
/// C1), format characters (bidirectional overrides, zero-width characters, the byte order
/// mark, ...) and the line and paragraph separators. The backslash is escaped too, so an
/// escape in the output always stands for one character of the input.
pub fn printable(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            // Soft hyphen, Arabic letter mark, Mongolian vowel separator.
            '\u{ad}' | '\u{61c}' | '\u{180e}'
            // Zero-width space, joiners, directional marks.
            | '\u{200b}'..='\u{200f}'
            // Line and paragraph separators, directional embeddings and overrides.
            | '\u{2028}'..='\u{202e}'
            // Word joiner, invisible operators, directional isolates, deprecated formats.
            | '\u{2060}'..='\u{206f}'
            // Byte order mark / zero-width no-break space, interlinear annotations.
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            // Other format characters of the Arabic, Syriac and Kaithi scripts, tags.
            | '\u{600}'..='\u{605}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}'
            | '\u{8e2}' | '\u{110bd}' | '\u{110cd}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}'
        )
}

/// `text` cut to at most [`MAX_MESSAGE_CHARS`] characters: its start and end, with a note
/// of how much was left out in between.
fn shortened(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let keep = MAX_MESSAGE_CHARS / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(chars - keep).collect();
    format!(
        "{head}[... {} characters left out ...]{tail}",
        chars - 2 * keep
    )
}
