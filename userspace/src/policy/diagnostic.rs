//! Errors in a policy file, each pointing at the line and column of the offending node.

use std::fmt;

/// One problem in a policy file.
///
/// Displays as `FILE:LINE:COL: message`, the form `warden policy check` prints and editors
/// jump to. `line` and `col` are 1-based; both are 0 when the file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct Diagnostic {
    /// The file name as given to [`parse`](super::parse) or [`load`](super::load).
    pub file: String,
    /// 1-based line of the offending node.
    pub line: usize,
    /// 1-based column (in characters) of the offending node.
    pub col: usize,
    /// What is wrong, and where possible what would be right.
    pub message: String,
}

/// Every problem found in a policy file, in file order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem (never the case for an error returned by `parse`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
