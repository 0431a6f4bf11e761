//! A typed reader over a YAML node tree that records every error with its position and
//! keeps going, so one `warden policy check` run reports all problems of a file.
//!
//! Scalars are loaded as their source text (no YAML type guessing), so `id: 0042` stays
//! `0042` and each field decides for itself what text it accepts.

use saphyr_parser::{ScalarStyle, ScanError};

use std::collections::BinaryHeap;

use super::diagnostic::{Diagnostic, Diagnostics, MAX_ERRORS};
use super::tree::{self, Data};

/// A YAML node with its position in the source.
pub(super) type Node<'i> = tree::Node<'i>;

/// A 1-based position in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// Where `node` starts.
    pub fn of(node: &Node<'_>) -> Self {
        Pos {
            line: node.line as usize,
            col: node.col as usize + 1,
        }
    }
}

/// One entry of a mapping whose key is a scalar.
pub(super) struct Entry<'n, 'i> {
    /// The key's text.
    pub key: &'n str,
    /// The key node, where errors about the key itself (unknown, misplaced) point.
    pub key_node: &'n Node<'i>,
    /// The value node.
    pub value: &'n Node<'i>,
}

/// Parses `text` into its YAML documents, or the syntax error with its position.
pub(super) fn load_yaml(text: &str) -> Result<Vec<Node<'_>>, (Pos, String)> {
    // Scalars stay as written; the reader types them per field.
    tree::load(text).map_err(|e: ScanError| {
        let pos = Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        };
        (pos, format!("YAML syntax error: {}", e.info()))
    })
}

/// Collects diagnostics while typed values are read out of nodes: every error is
/// counted, and the [`MAX_ERRORS`] earliest in the file are kept, so a file with a
/// million errors costs no more to report than one with a hundred.
pub(super) struct Reader {
    file: String,
    /// The errors kept: a max-heap on (position, order found), so when a file has more
    /// than [`MAX_ERRORS`] the one furthest into the file makes room.
    kept: BinaryHeap<Kept>,
    /// Errors recorded, kept or not.
    found: usize,
}

/// A kept error, ordered by where it is and then by when it was found (so equal
/// positions keep the order they were found in, as a stable sort would).
struct Kept {
    at: (usize, usize, usize),
    diagnostic: Diagnostic,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl Reader {
    pub fn new(file: &str) -> Self {
        Reader {
            file: file.to_owned(),
            kept: BinaryHeap::new(),
            found: 0,
        }
    }

    /// Records an error at `pos`.
    pub fn error_at(&mut self, pos: Pos, message: impl Into<String>) {
        self.found += 1;
        let at = (pos.line, pos.col, self.found);
        if self.kept.len() >= MAX_ERRORS {
            match self.kept.peek() {
                Some(last) if at < last.at => {
                    self.kept.pop();
                }
                _ => return,
            }
        }
        let diagnostic = Diagnostic::new(&self.file, pos.line, pos.col, &message.into());
        self.kept.push(Kept { at, diagnostic });
    }

    /// Records an error at the start of `node`.
    pub fn error(&mut self, node: &Node<'_>, message: impl Into<String>) {
        self.error_at(Pos::of(node), message);
    }

    /// Whether an error was recorded.
    pub fn has_errors(&self) -> bool {
        self.found > 0
    }

    /// The errors kept, in file order, and how many were found in all.
    pub fn finish(self) -> Diagnostics {
        let shown = self
            .kept
            .into_sorted_vec()
            .into_iter()
            .map(|k| k.diagnostic)
            .collect();
        Diagnostics::first_of(shown, self.found)
    }

    /// The entries of a mapping. `null` (an empty value) reads as an empty mapping; anything
    /// else that is not a mapping is an error and reads as empty.
    pub fn mapping<'n, 'i>(&mut self, node: &'n Node<'i>, what: &str) -> Vec<Entry<'n, 'i>> {
        match &node.data {
            Data::Mapping(pairs) => pairs
                .iter()
                .filter_map(|(key_node, value)| match text(key_node) {
                    Some(key) => Some(Entry {
                        key,
                        key_node,
                        value,
                    }),
                    None => {
                        self.error(key_node, "expected a plain key");
                        None
                    }
                })
                .collect(),
            _ if is_null(node) => Vec::new(),
            _ => {
                self.expected(node, what);
                Vec::new()
            }
        }
    }

    /// The items of a list. `null` reads as an empty list.
    pub fn sequence<'n, 'i>(&mut self, node: &'n Node<'i>, what: &str) -> &'n [Node<'i>] {
        match &node.data {
            Data::Sequence(items) => items,
            _ if is_null(node) => &[],
            _ => {
                self.expected(node, what);
                &[]
            }
        }
    }

    /// A scalar's text, converted by `parse`; a non-scalar or a rejected text is recorded as
    /// an error at `node` and reads as `None`.
    pub fn value<T>(
        &mut self,
        node: &Node<'_>,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some(text) = text(node).filter(|_| !is_null(node)) else {
            self.expected(node, what);
            return None;
        };
        parse(text)
            .map_err(|message| self.error(node, message))
            .ok()
    }

    /// A list of scalars (`what`), each one an `item` converted by `parse`, with the position
    /// of each one that was accepted.
    pub fn list<T>(
        &mut self,
        node: &Node<'_>,
        what: &str,
        item: &str,
        mut parse: impl FnMut(&str) -> Result<T, String>,
    ) -> Vec<(T, Pos)> {
        let items = self.sequence(node, what);
        items
            .iter()
            .filter_map(|node| {
                self.value(node, item, &mut parse)
                    .map(|value| (value, Pos::of(node)))
            })
            .collect()
    }

    /// Records an unknown key, naming the keys that are allowed at this place.
    pub fn unknown_key(&mut self, entry: &Entry<'_, '_>, context: &str, expected: &[&str]) {
        self.error(
            entry.key_node,
            format!(
                "unknown key `{}` in {context}; expected one of: {}",
                entry.key,
                expected.join(", ")
            ),
        );
    }

    /// Records, at the mapping `node`, each of `required` that is not among `entries`.
    pub fn require(
        &mut self,
        node: &Node<'_>,
        entries: &[Entry<'_, '_>],
        context: &str,
        required: &[&str],
    ) {
        for key in required {
            if !entries.iter().any(|entry| entry.key == *key) {
                self.error(node, format!("{context} is missing required key `{key}`"));
            }
        }
    }

    fn expected(&mut self, node: &Node<'_>, what: &str) {
        let found = describe(node);
        self.error(node, format!("expected {what}, found {found}"));
    }
}

/// The source text of a scalar node.
fn text<'n>(node: &'n Node<'_>) -> Option<&'n str> {
    match &node.data {
        Data::Scalar(text, _, _) => Some(text),
        _ => None,
    }
}

/// Overwrites `field` with a value that was read successfully; a rejected value (already
/// reported) leaves the field as it was.
pub(super) fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// True for an empty value, `~` or `null` written without quotes.
fn is_null(node: &Node<'_>) -> bool {
    match &node.data {
        Data::Scalar(text, ScalarStyle::Plain, _) => {
            matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
        }
        Data::BadValue => true,
        _ => false,
    }
}

/// What a node is, for "expected X, found Y".
fn describe(node: &Node<'_>) -> String {
    match &node.data {
        _ if is_null(node) => "nothing".to_owned(),
        Data::Scalar(text, _, _) => format!("`{text}`"),
        Data::Sequence(_) => "a list".to_owned(),
        Data::Mapping(_) => "a mapping".to_owned(),
        Data::Tagged(tag, _) => format!("a value tagged {tag}"),
        Data::BadValue => "an unsupported value".to_owned(),
    }
}
