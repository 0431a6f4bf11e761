//! The YAML node tree the policy reader walks, built straight from the parser's events.
//!
//! It holds what `saphyr`'s `YamlLoader` (with `early_parse(false)`) would, with the same
//! rules: scalars as their source text, style and tag; collections with a non-core tag
//! wrapped in [`Data::Tagged`]; aliases resolved by cloning the anchored node, within the
//! same node budget; a duplicated key in a mapping is an error at that key; after the
//! first error the rest of the stream is ignored. It differs in layout only: mappings are
//! vectors of (key, value) in file order instead of hash maps, and a node keeps only
//! where it starts. That makes a 100,000-tenant policy several times cheaper to build and
//! to drop.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash, Hasher};

use saphyr_parser::{
    Event, Marker, Parser, ScalarStyle, ScanError, Span, SpannedEventReceiver, Tag,
};

/// A YAML node with where it starts in the source (for an alias: where the alias is).
/// Kept small (48 bytes): a 100,000-tenant policy has 1.5 million of them.
#[derive(Clone, Debug)]
pub(super) struct Node<'i> {
    /// 1-based line (as the parser counts; saturated at `u32::MAX`).
    pub line: u32,
    /// 0-based column in characters (saturated at `u32::MAX`).
    pub col: u32,
    pub data: Data<'i>,
}

/// A tag, boxed: rare, and as large as a whole node otherwise.
pub(super) type BoxedTag<'i> = Box<Cow<'i, Tag>>;

/// What a node holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Data<'i> {
    /// A scalar as written (no type guessing), with its style and tag.
    Scalar(Cow<'i, str>, ScalarStyle, Option<BoxedTag<'i>>),
    Sequence(Vec<Node<'i>>),
    /// (key, value) pairs in file order; keys are unique.
    Mapping(Vec<(Node<'i>, Node<'i>)>),
    /// A collection with a tag outside the core schema.
    Tagged(BoxedTag<'i>, Box<Node<'i>>),
    /// An empty document, or an alias that could not be resolved.
    BadValue,
}

/// Nodes are equal when their contents are, wherever they are (duplicate keys).
impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Eq for Node<'_> {}

impl Hash for Node<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.data.hash(state);
    }
}

impl<'i> Node<'i> {
    fn new(start: Marker, data: Data<'i>) -> Self {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Node {
            line: narrow(start.line()),
            col: narrow(start.col()),
            data,
        }
    }

    /// The node moved to `start` (an alias's copy of its anchored node).
    fn moved_to(self, start: Marker) -> Self {
        Node::new(start, self.data)
    }

    fn is_bad(&self) -> bool {
        matches!(self.data, Data::BadValue)
    }
}

/// Nodes alias expansion may produce in one document set, as `saphyr`'s loader allows:
/// beyond it, an alias is an error (a "billion laughs" document).
const ALIAS_BUDGET: usize = 100_000;

/// Bytes of scalar text alias expansion may copy in one document set: without it, one
/// long scalar aliased within the node budget would be copied (and echoed in errors)
/// 100,000 times. As much as a policy may hold, far more than aliases of settings need.
const ALIAS_BYTES: usize = super::MAX_POLICY_BYTES;

/// Mappings up to this many keys look for a duplicate by comparing with each key;
/// larger ones keep a hash index of their keys, so a huge mapping stays linear.
const LINEAR_KEYS: usize = 16;

/// Parses `text` into its documents, or the first error (a syntax error of the parser
/// first, else the first error found while building) with where it is.
pub(super) fn load(text: &str) -> Result<Vec<Node<'_>>, ScanError> {
    let mut builder = Builder::new(text);
    Parser::new_from_str(text).load(&mut builder, true)?;
    match builder.error {
        Some(e) => Err(e),
        None => Ok(builder.docs),
    }
}

/// A collection being built.
struct Open<'i> {
    node: Node<'i>,
    anchor: usize,
    tag: Option<Cow<'i, Tag>>,
    /// Mappings: the key waiting for its value (`BadValue` while a key is expected),
    /// and where that key starts.
    key: Option<(Node<'i>, Marker)>,
    /// Mappings of more than [`LINEAR_KEYS`] keys: key hash -> position of the first
    /// key with that hash.
    index: Option<HashMap<u64, usize>>,
}

struct Builder<'i> {
    /// The source, when it is ASCII (the parser's positions count characters, which
    /// are then bytes): scalars written as they read are borrowed from it.
    ascii: Option<&'i str>,
    docs: Vec<Node<'i>>,
    stack: Vec<Open<'i>>,
    /// The document's root once complete (a root scalar goes here directly).
    root: Option<Node<'i>>,
    anchors: HashMap<usize, Node<'i>>,
    alias_budget: usize,
    /// Bytes of scalar text aliases may still copy.
    alias_bytes: usize,
    hasher: std::hash::RandomState,
    error: Option<ScanError>,
}

impl<'i> Builder<'i> {
    fn new(text: &'i str) -> Self {
        Builder {
            ascii: text.is_ascii().then_some(text),
            docs: Vec::new(),
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            alias_budget: ALIAS_BUDGET,
            alias_bytes: ALIAS_BYTES,
            hasher: std::hash::RandomState::new(),
            error: None,
        }
    }
}

impl<'i> SpannedEventReceiver<'i> for Builder<'i> {
    fn on_event(&mut self, ev: Event<'i>, span: Span) {
        // After an error the tree is not to be trusted: keep the first error only.
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.event(ev, span) {
            self.error = Some(e);
        }
    }
}

impl<'i> Builder<'i> {
    /// A scalar's text: the source itself where the scalar reads exactly as written
    /// there (most plain scalars), else in an allocation of its own size. The scanner
    /// hands each scalar over in a buffer of at least 128 bytes, which for a
    /// 100,000-tenant policy would keep some 150 MB alive until the policy is read.
    fn scalar_text(&self, text: Cow<'i, str>, span: Span) -> Cow<'i, str> {
        let Cow::Owned(owned) = &text else {
            return text;
        };
        if let Some(written) = self
            .ascii
            .and_then(|src| src.get(span.start.index()..span.end.index()))
        {
            if written == owned {
                return Cow::Borrowed(written);
            }
        }
        if owned.capacity() > owned.len() {
            return Cow::Owned(owned.as_str().to_owned());
        }
        text
    }

    fn event(&mut self, ev: Event<'i>, span: Span) -> Result<(), ScanError> {
        let mark = span.start;
        match ev {
            Event::DocumentStart(_) | Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentEnd => {
                let doc = self
                    .root
                    .take()
                    .unwrap_or_else(|| Node::new(mark, Data::BadValue));
                self.docs.push(doc);
            }
            Event::SequenceStart(anchor, tag) => self.stack.push(Open {
                node: Node::new(mark, Data::Sequence(Vec::new())),
                anchor,
                tag,
                key: None,
                index: None,
            }),
            Event::MappingStart(anchor, tag) => self.stack.push(Open {
                node: Node::new(mark, Data::Mapping(Vec::new())),
                anchor,
                tag,
                key: Some((Node::new(mark, Data::BadValue), mark)),
                index: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else {
                    return Ok(());
                };
                let mut node = open.node;
                // The tree lives until the policy is read: no spare capacity.
                match &mut node.data {
                    Data::Sequence(items) => items.shrink_to_fit(),
                    Data::Mapping(pairs) => pairs.shrink_to_fit(),
                    _ => {}
                }
                if let Some(tag) = open.tag {
                    if !tag.is_yaml_core_schema() {
                        let (line, col) = (node.line, node.col);
                        let data = Data::Tagged(Box::new(tag), Box::new(node));
                        node = Node { line, col, data };
                    }
                }
                self.insert(node, open.anchor, mark)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let text = self.scalar_text(text, span);
                let tag = tag.map(Box::new);
                self.insert(
                    Node::new(mark, Data::Scalar(text, style, tag)),
                    anchor,
                    mark,
                )?;
            }
            Event::Alias(id) => {
                let node = self.resolve_alias(id, mark).moved_to(mark);
                self.insert(node, 0, mark)?;
            }
        }
        Ok(())
    }

    /// Adds a complete node to the collection being built (or makes it the root).
    /// `mark` is where the event that completed it starts: a duplicated key is reported
    /// there (for a collection used as a key, its end), as `saphyr`'s loader does.
    fn insert(&mut self, node: Node<'i>, anchor: usize, mark: Marker) -> Result<(), ScanError> {
        // Valid anchor ids start from 1.
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match (&mut parent.node.data, &mut parent.key) {
            (Data::Sequence(items), _) => items.push(node),
            (Data::Mapping(pairs), Some((key, key_mark))) => {
                if key.is_bad() {
                    // This node is a key.
                    *key = node;
                    *key_mark = mark;
                    return Ok(());
                }
                let key_mark = *key_mark;
                let key = std::mem::replace(key, Node::new(key_mark, Data::BadValue));
                if is_duplicate(pairs, &mut parent.index, &self.hasher, &key) {
                    return Err(ScanError::new_str(key_mark, "duplicated key in mapping"));
                }
                pairs.push((key, node));
            }
            _ => {}
        }
        Ok(())
    }

    /// A copy of the node anchored as `id`, within the alias budgets; `BadValue` when
    /// the anchor is unknown or a budget is exhausted (then also an error).
    fn resolve_alias(&mut self, id: usize, mark: Marker) -> Node<'i> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Node::new(mark, Data::BadValue);
        };
        let mut remaining = Budget {
            nodes: self.alias_budget,
            bytes: self.alias_bytes,
        };
        if within_budget(anchored, &mut remaining) {
            self.alias_budget = remaining.nodes;
            self.alias_bytes = remaining.bytes;
            return anchored.clone();
        }
        let why = if remaining.nodes == 0 {
            "alias expansion exceeded the maximum node budget (possible billion-laughs attack)"
        } else {
            "alias expansion exceeded the maximum of copied text (possible billion-laughs attack)"
        };
        self.error = Some(ScanError::new_str(mark, why));
        Node::new(mark, Data::BadValue)
    }
}

/// Whether `key` is already a key of `pairs`, keeping `index` (the hash index of a
/// large mapping) up to date with `key` added at the end.
///
/// The index maps a key's hash to the first key with that hash (16 bytes a key, where a
/// list of positions per hash cost some 60): two different keys with one 64-bit hash are
/// so rare that the one that meets another is checked against every key instead.
fn is_duplicate(
    pairs: &[(Node<'_>, Node<'_>)],
    index: &mut Option<HashMap<u64, usize>>,
    hasher: &std::hash::RandomState,
    key: &Node<'_>,
) -> bool {
    if pairs.len() < LINEAR_KEYS {
        return pairs.iter().any(|(k, _)| k == key);
    }
    let index = index.get_or_insert_with(|| {
        let mut m: HashMap<u64, usize> = HashMap::with_capacity(pairs.len() * 2);
        for (i, (k, _)) in pairs.iter().enumerate() {
            m.entry(hasher.hash_one(k)).or_insert(i);
        }
        m
    });
    match index.entry(hasher.hash_one(key)) {
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(pairs.len());
            false
        }
        std::collections::hash_map::Entry::Occupied(first) => {
            pairs[*first.get()].0 == *key || pairs.iter().any(|(k, _)| k == key)
        }
    }
}

/// What alias expansion may still copy.
struct Budget {
    nodes: usize,
    bytes: usize,
}

/// Counts `node`'s nodes against `budget.nodes` as `saphyr`'s loader does (a mapping's
/// scalar key counts as one node, its value recursively), and the text of its scalars
/// against `budget.bytes`; false once either runs out. Unlike `saphyr`, what a
/// collection used as a key or a tagged collection holds counts too, so no copy escapes
/// the budgets.
fn within_budget(node: &Node<'_>, budget: &mut Budget) -> bool {
    if budget.nodes == 0 {
        return false;
    }
    budget.nodes -= 1;
    match &node.data {
        Data::Scalar(text, _, _) => take_bytes(budget, text.len()),
        Data::Sequence(items) => items.iter().all(|item| within_budget(item, budget)),
        Data::Mapping(pairs) => pairs
            .iter()
            .all(|(key, value)| within_budget(key, budget) && within_budget(value, budget)),
        Data::Tagged(_, inner) => within_budget(inner, budget),
        Data::BadValue => true,
    }
}

fn take_bytes(budget: &mut Budget, n: usize) -> bool {
    match budget.bytes.checked_sub(n) {
        Some(left) => {
            budget.bytes = left;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use saphyr::{MarkedYaml, YamlData, YamlLoader};

    use super::*;

    /// The tree, errors included, as text: kind, contents and start of every node.
    fn dump(node: &Node<'_>) -> String {
        let at = format!("@{}:{}", node.line, node.col);
        match &node.data {
            Data::Scalar(text, style, tag) => format!("S({text:?},{style:?},{tag:?}){at}"),
            Data::Sequence(items) => {
                let items: Vec<String> = items.iter().map(dump).collect();
                format!("[{}]{at}", items.join(","))
            }
            Data::Mapping(pairs) => {
                let pairs: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}:{}", dump(k), dump(v)))
                    .collect();
                format!("{{{}}}{at}", pairs.join(","))
            }
            Data::Tagged(tag, inner) => format!("T({tag:?},{}){at}", dump(inner)),
            Data::BadValue => format!("Bad{at}"),
        }
    }

    /// The same for `saphyr`'s own tree.
    fn dump_saphyr(node: &MarkedYaml<'_>) -> String {
        let at = format!("@{}:{}", node.span.start.line(), node.span.start.col());
        match &node.data {
            YamlData::Representation(text, style, tag) => {
                format!("S({text:?},{style:?},{tag:?}){at}")
            }
            YamlData::Sequence(items) => {
                let items: Vec<String> = items.iter().map(dump_saphyr).collect();
                format!("[{}]{at}", items.join(","))
            }
            YamlData::Mapping(map) => {
                let pairs: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{}:{}", dump_saphyr(k), dump_saphyr(v)))
                    .collect();
                format!("{{{}}}{at}", pairs.join(","))
            }
            YamlData::Tagged(tag, inner) => format!("T({tag:?},{}){at}", dump_saphyr(inner)),
            YamlData::BadValue => format!("Bad{at}"),
            other => panic!("saphyr produced {other:?}"),
        }
    }

    fn error(e: &ScanError) -> String {
        format!("{}:{}: {}", e.marker().line(), e.marker().col(), e.info())
    }

    fn ours(text: &str) -> Result<Vec<String>, String> {
        load(text)
            .map(|docs| docs.iter().map(dump).collect())
            .map_err(|e| error(&e))
    }

    /// What the policy reader used before: `saphyr`'s loader, scalars as written.
    fn saphyrs(text: &str) -> Result<Vec<String>, String> {
        let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
        loader.early_parse(false);
        Parser::new_from_str(text)
            .load(&mut loader, true)
            .map_err(|e| error(&e))?;
        if let Some(e) = loader.error() {
            return Err(error(e));
        }
        Ok(loader.into_documents().iter().map(dump_saphyr).collect())
    }

    fn same_as_saphyr(text: &str) -> Result<Vec<String>, String> {
        let got = ours(text);
        assert_eq!(got, saphyrs(text), "document:\n{text}");
        got
    }

    #[test]
    fn trees_are_saphyrs_trees() {
        let wide: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        let docs = [
            include_str!("../../../configs/warden.yaml").to_owned(),
            include_str!("../../../configs/demo.yaml").to_owned(),
            "tenants:\n  - id: a\n    addresses: [198.18.0.1/32, 2001:db8::/64]\n    bandwidth: { egress: 10Mbit }\n".into(),
            String::new(),
            "hello".into(),
            "---\n...\n---\nfoo: 1\n".into(),
            "a: 1\n---\nb: 2\n".into(),
            "a:\nb: ~\nc: null\n'd': \"e\"\nf: |\n  text\n".into(),
            "x: &a [1, 2]\ny: *a\nz: &m {k: v}\nw: *m\n".into(),
            "x: !custom {a: 1}\ny: !!map {b: 2}\nz: !t [1]\ns: !!str 5\nq: !x 7\n".into(),
            "a: 1\n'a': 2\n".into(),
            "? [a, b]\n: 1\n? [a, c]\n: 2\n".into(),
            "- &r {a: 1}\n- *r\n- [*r, *r]\n".into(),
            "&k a: 1\nb: *k\n".into(),
            wide.clone(),
        ];
        for doc in &docs {
            same_as_saphyr(doc).unwrap_or_else(|e| panic!("{e}\nin:\n{doc}"));
        }
    }

    #[test]
    fn errors_are_saphyrs_errors() {
        let wide: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        let laughs = {
            let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
            for i in 1..8 {
                let refs = vec![format!("*a{}", i - 1); 10].join(", ");
                s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            s
        };
        let docs = [
            "a: 1\nb: 2\na: 3\n".to_owned(),
            format!("{wide}k7: again\n"),
            format!("{wide}k39: again\n"),
            "? [a, b]\n: 1\n? [a, b]\n: 2\n".into(),
            "&k a: 1\n*k : 2\n".into(),
            "a: 1\na: 2\nb: [\n".into(),
            "a: [1, 2\nb: 3\n".into(),
            "x: *nope\n".into(),
            "t:\n  - {a: 1, a: 2}\n".into(),
            laughs,
        ];
        for doc in &docs {
            let got = same_as_saphyr(doc);
            assert!(got.is_err(), "accepted:\n{doc}\nas {got:?}");
        }
    }

    #[test]
    fn scalars_written_as_they_read_are_borrowed_from_the_source() {
        let text = "a: bcd\nb: 'q'\nc: x\n  y\nd: é\n";
        let docs = load(text).expect("loads");
        let Data::Mapping(pairs) = &docs[0].data else {
            panic!("not a mapping")
        };
        let texts: Vec<(&str, bool)> = pairs
            .iter()
            .map(|(_, v)| match &v.data {
                Data::Scalar(t, _, _) => (t.as_ref(), matches!(t, Cow::Borrowed(_))),
                other => panic!("{other:?}"),
            })
            .collect();
        // Not ASCII: nothing borrowed, every text as the scanner read it.
        assert_eq!(
            texts,
            [("bcd", false), ("q", false), ("x y", false), ("é", false)]
        );
        let ascii = "a: bcd\nb: 'q'\nc: x\n  y\n";
        let docs = load(ascii).expect("loads");
        let Data::Mapping(pairs) = &docs[0].data else {
            panic!("not a mapping")
        };
        let texts: Vec<(&str, bool)> = pairs
            .iter()
            .map(|(_, v)| match &v.data {
                Data::Scalar(t, _, _) => (t.as_ref(), matches!(t, Cow::Borrowed(_))),
                other => panic!("{other:?}"),
            })
            .collect();
        // Quoted and folded scalars differ from their source text: copied.
        assert_eq!(texts, [("bcd", true), ("q", false), ("x y", false)]);
    }

    #[test]
    fn a_node_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Node<'_>>(), 48);
    }

    #[test]
    fn a_duplicate_key_is_reported_at_the_second_key() {
        assert_eq!(
            ours("a: 1\nb: 2\na: 3\n"),
            Err("3:0: duplicated key in mapping".to_owned())
        );
    }
}
