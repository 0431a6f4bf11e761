//! Dense tenant indexes: tenant id -> slot in the per-CPU counter arrays.
//!
//! Indexes are stable across policy changes (a tenant keeps its slot, so its counters
//! keep counting) and freed slots are reused lowest-first, so the arrays stay dense.

use std::collections::{BTreeSet, HashMap};

use warden_common::MAX_TENANTS;

/// The index space is full.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many tenants: this node holds at most {max}")]
pub struct IndexError {
    pub max: u32,
}

/// Assignment of dense indexes to tenant ids.
#[derive(Debug, Default, Clone)]
pub struct TenantIndex {
    by_id: HashMap<String, u32>,
    free: BTreeSet<u32>,
    next: u32,
}

/// What changed when the index was made to match a new set of tenants.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexChanges {
    /// Newly assigned (id, index); their counters must start at zero.
    pub added: Vec<(String, u32)>,
    /// Released (id, index).
    pub removed: Vec<(String, u32)>,
}

impl TenantIndex {
    /// The index of a tenant, if it has one.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Number of tenants holding an index.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no tenant holds an index.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Keeps indexes of tenants still present, frees the others, assigns new ones.
    /// Fails without changing anything when the new set does not fit.
    pub fn sync<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<IndexChanges, IndexError> {
        let wanted: BTreeSet<&str> = ids.into_iter().collect();
        // Freed slots are reused before `next` grows, so every index stays below
        // the number of tenants held: the set fits exactly when it is small enough.
        if wanted.len() > MAX_TENANTS as usize {
            return Err(IndexError { max: MAX_TENANTS });
        }
        let mut changes = IndexChanges::default();
        let gone: Vec<String> = self
            .by_id
            .keys()
            .filter(|id| !wanted.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(i) = self.by_id.remove(&id) {
                self.free.insert(i);
                changes.removed.push((id, i));
            }
        }
        for id in wanted {
            if !self.by_id.contains_key(id) {
                let i = match self.free.pop_first() {
                    Some(i) => i,
                    None => {
                        self.next += 1;
                        self.next - 1
                    }
                };
                self.by_id.insert(id.to_string(), i);
                changes.added.push((id.to_string(), i));
            }
        }
        changes.removed.sort();
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_stable_across_changes() {
        let mut ix = TenantIndex::default();
        let c = ix.sync(["a", "b", "c"]).unwrap();
        assert_eq!(
            c.added,
            vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 2)]
        );
        let c = ix.sync(["a", "c", "d"]).unwrap();
        assert_eq!(c.removed, vec![("b".into(), 1)]);
        assert_eq!(c.added, vec![("d".into(), 1)], "freed slot is reused");
        assert_eq!(ix.get("a"), Some(0));
        assert_eq!(ix.get("c"), Some(2));
        assert_eq!(ix.len(), 3);
    }

    #[test]
    fn too_many_tenants_is_refused_without_change() {
        let mut ix = TenantIndex::default();
        ix.sync(["keep"]).unwrap();
        let many: Vec<String> = (0..=MAX_TENANTS).map(|i| format!("t{i}")).collect();
        let err = ix.sync(many.iter().map(String::as_str)).unwrap_err();
        assert_eq!(err.max, MAX_TENANTS);
        assert_eq!(ix.get("keep"), Some(0));
        assert_eq!(ix.len(), 1);
    }
}
