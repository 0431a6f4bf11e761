//! Dense tenant indexes: tenant id -> slot in the kernel's per-tenant arrays.
//!
//! Indexes are stable across policy changes (a tenant keeps its slot, so its counters
//! keep counting) and across restarts (the daemon saves them). A freed slot sits out
//! one policy generation before reuse: the generation still active when it was freed
//! may point addresses at it, so it is handed out only once that generation is gone,
//! and then its counters are zeroed before any address points at it again.

use std::collections::{BTreeSet, HashMap};

use warden_common::MAX_TENANTS;
use warden_policy::tenant::TenantSlot;

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
    quarantine: BTreeSet<u32>,
    next: u32,
}

/// What changed when the index was made to match a new set of tenants.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexChanges {
    /// Newly assigned (id, index); their kernel state must start from zero.
    pub added: Vec<(String, TenantSlot)>,
    /// Released (id, index).
    pub removed: Vec<(String, TenantSlot)>,
}

impl TenantIndex {
    /// Rebuilds an index saved earlier. Slots not in use are free.
    pub fn from_entries(entries: &[(String, u32)]) -> Result<Self, IndexError> {
        let mut ix = TenantIndex::default();
        for (id, i) in entries {
            if *i >= MAX_TENANTS {
                return Err(IndexError { max: MAX_TENANTS });
            }
            ix.by_id.insert(id.clone(), *i);
            ix.next = ix.next.max(i + 1);
        }
        let used: BTreeSet<u32> = ix.by_id.values().copied().collect();
        // Slots below `next` not in use may still be referenced by the generation
        // that was active at the last stop: treat them as just freed.
        ix.quarantine = (0..ix.next).filter(|i| !used.contains(i)).collect();
        Ok(ix)
    }

    /// Every (id, index), for saving.
    pub fn entries(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self.by_id.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by_key(|(_, i)| *i);
        v
    }

    /// The slot of a tenant, if it has one.
    pub fn get(&self, id: &str) -> Option<TenantSlot> {
        self.by_id.get(id).copied().map(TenantSlot)
    }

    /// Number of tenants holding an index.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no tenant holds an index.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Keeps indexes of tenants still present, frees the others (into quarantine),
    /// releases the previous quarantine, and assigns new ones. Fails without
    /// changing anything when the new set does not fit.
    pub fn sync<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<IndexChanges, IndexError> {
        let wanted: BTreeSet<&str> = ids.into_iter().collect();
        let keep = self
            .by_id
            .keys()
            .filter(|id| wanted.contains(id.as_str()))
            .count();
        let new = wanted.len() - keep;
        // Slots usable now: free ones, last generation's quarantine, and never-used ones.
        let usable = self.free.len() + self.quarantine.len() + (MAX_TENANTS - self.next) as usize;
        if new > usable {
            return Err(IndexError { max: MAX_TENANTS });
        }
        let mut changes = IndexChanges::default();
        self.free.append(&mut self.quarantine);
        let gone: Vec<String> = self
            .by_id
            .keys()
            .filter(|id| !wanted.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(i) = self.by_id.remove(&id) {
                self.quarantine.insert(i);
                changes.removed.push((id, TenantSlot(i)));
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
                changes.added.push((id.to_string(), TenantSlot(i)));
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
            vec![
                ("a".into(), TenantSlot(0)),
                ("b".into(), TenantSlot(1)),
                ("c".into(), TenantSlot(2))
            ]
        );
        let c = ix.sync(["a", "c", "d"]).unwrap();
        assert_eq!(c.removed, vec![("b".into(), TenantSlot(1))]);
        assert_eq!(
            c.added,
            vec![("d".into(), TenantSlot(3))],
            "b's slot sits out one generation"
        );
        let c = ix.sync(["a", "c", "d", "e"]).unwrap();
        assert_eq!(
            c.added,
            vec![("e".into(), TenantSlot(1))],
            "then it is reused"
        );
        assert_eq!(ix.get("a"), Some(TenantSlot(0)));
        assert_eq!(ix.get("c"), Some(TenantSlot(2)));
        assert_eq!(ix.len(), 4);
    }

    #[test]
    fn too_many_tenants_is_refused_without_change() {
        let mut ix = TenantIndex::default();
        ix.sync(["keep"]).unwrap();
        let many: Vec<String> = (0..MAX_TENANTS).map(|i| format!("t{i}")).collect();
        let err = ix
            .sync(many.iter().map(String::as_str).chain(["keep"]))
            .unwrap_err();
        assert_eq!(err.max, MAX_TENANTS);
        assert_eq!(ix.get("keep"), Some(TenantSlot(0)));
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn a_saved_index_restores_and_quarantines_holes() {
        let mut ix = TenantIndex::default();
        ix.sync(["a", "b", "c"]).unwrap();
        ix.sync(["a", "c"]).unwrap();
        let mut back = TenantIndex::from_entries(&ix.entries()).unwrap();
        assert_eq!(back.get("c"), Some(TenantSlot(2)));
        let c = back.sync(["a", "c", "x"]).unwrap();
        assert_eq!(
            c.added,
            vec![("x".into(), TenantSlot(1))],
            "released after one generation"
        );
    }
}
