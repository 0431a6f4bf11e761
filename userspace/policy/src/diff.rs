//! What changes between two policies, per section, tenant and key, as `warden policy
//! diff` prints it. Compared in the effective form ([`crate::write::Form::Effective`]):
//! what the dataplane and the detectors enforce, so a change to `defaults` shows at
//! every tenant it reaches, and a key moved between `defaults` and a tenant without
//! changing what is enforced is no change.

use std::collections::BTreeMap;
use std::fmt;

use crate::write::{self, Tree};
use crate::Policy;

/// One difference between the running policy (old) and another (new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tenant only the new policy has.
    TenantAdded(String),
    /// A tenant only the old policy has.
    TenantRemoved(String),
    /// A key whose value differs. `place` is `daemon`, `interfaces`, `defaults` or
    /// `tenant ID`; `key` its dotted path (`bandwidth.egress`); a side without the key
    /// is `None`.
    Changed {
        place: String,
        key: String,
        old: Option<String>,
        new: Option<String>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
        match self {
            Change::TenantAdded(id) => write!(f, "+ tenant {id}"),
            Change::TenantRemoved(id) => write!(f, "- tenant {id}"),
            Change::Changed {
                place,
                key,
                old,
                new,
            } => write!(f, "~ {place}: {key}: {} -> {}", side(old), side(new)),
        }
    }
}

/// Every difference from `old` to `new`: `daemon`, `interfaces`, `defaults`, then the
/// tenants in `old`'s order (removed or changed) and the added ones in `new`'s.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    let (old_tree, new_tree) = (
        write::to_tree(old, write::Form::Effective),
        write::to_tree(new, write::Form::Effective),
    );
    let (old_doc, new_doc) = (sections(&old_tree), sections(&new_tree));
    for section in ["daemon", "interfaces", "defaults"] {
        let empty = Tree::Map(Vec::new());
        let a = old_doc.get(section).copied().unwrap_or(&empty);
        let b = new_doc.get(section).copied().unwrap_or(&empty);
        let a = match section {
            "interfaces" => by_name(a, "name"),
            _ => flat(a),
        };
        let b = match section {
            "interfaces" => by_name(b, "name"),
            _ => flat(b),
        };
        out.extend(changes(section, &a, &b));
    }
    for t in &old.tenants {
        match new.tenant(&t.id) {
            None => out.push(Change::TenantRemoved(t.id.clone())),
            Some(n) => {
                let a = flat(&Tree::Map(write::tenant_tree(t, None)));
                let b = flat(&Tree::Map(write::tenant_tree(n, None)));
                out.extend(changes(&format!("tenant {}", t.id), &a, &b));
            }
        }
    }
    for t in &new.tenants {
        if old.tenant(&t.id).is_none() {
            out.push(Change::TenantAdded(t.id.clone()));
        }
    }
    out
}

fn sections(doc: &Tree) -> BTreeMap<&str, &Tree> {
    match doc {
        Tree::Map(entries) => entries.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        _ => BTreeMap::new(),
    }
}

/// The changed keys of `place`, in key order.
fn changes(place: &str, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<Change> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change::Changed {
            place: place.to_owned(),
            key: k.clone(),
            old: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

/// A mapping as dotted keys; a list is one value, `[a, b]`.
fn flat(tree: &Tree) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten(tree, "", &mut out);
    out
}

fn flatten(tree: &Tree, prefix: &str, out: &mut BTreeMap<String, String>) {
    match tree {
        Tree::Map(entries) => {
            for (k, v) in entries {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), inline(other));
        }
    }
}

/// A value on one line: a scalar as it is, a list as `[a, b]`, a mapping as `{k: v}`.
fn inline(tree: &Tree) -> String {
    match tree {
        Tree::Scalar(s) => s.clone(),
        Tree::List(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Tree::Map(entries) => {
            let items: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}: {}", inline(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// A list of mappings keyed by their `key` field (`interfaces` by name): each entry's
/// other fields as `NAME.field`.
fn by_name(tree: &Tree, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Tree::List(items) = tree else {
        return out;
    };
    for item in items {
        let Tree::Map(entries) = item else { continue };
        let name = entries
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(String::new, |(_, v)| inline(v));
        for (k, v) in entries.iter().filter(|(k, _)| k != key) {
            out.insert(format!("{name}.{k}"), inline(v));
        }
    }
    out
}
