//! The tenant index: tenant id -> dense slot in the kernel's per-tenant arrays. Kept across
//! restarts so pinned maps keep meaning the same tenant at the same slot.

use std::collections::HashSet;

use rusqlite::params;

use super::{Result, Store, StoreError, TxError};

impl Store {
    /// Replaces the whole index with `entries`, atomically. A tenant or a slot named twice is
    /// an error and changes nothing.
    ///
    /// Not audited: the index follows from the policy, whose apply is audited.
    pub fn save_tenant_index(&self, entries: &[(String, u32)]) -> Result<()> {
        let mut tenants = HashSet::new();
        let mut slots = HashSet::new();
        for (tenant, slot) in entries {
            if !tenants.insert(tenant.as_str()) {
                return Err(StoreError::InvalidTenantIndex(format!(
                    "tenant `{tenant}` is listed twice"
                )));
            }
            if !slots.insert(*slot) {
                return Err(StoreError::InvalidTenantIndex(format!(
                    "slot {slot} is given to more than one tenant"
                )));
            }
        }
        self.write("save tenant index", |tx| {
            tx.execute("DELETE FROM tenant_index", [])?;
            let mut insert =
                tx.prepare("INSERT INTO tenant_index (tenant, slot) VALUES (?1, ?2)")?;
            for (tenant, slot) in entries {
                insert.execute(params![tenant, slot])?;
            }
            Ok::<_, TxError>(())
        })
    }

    /// Changes the saved index, atomically: the tenants of `removed` go, those of
    /// `added` come with their slots. A tenant or slot already taken is an error and
    /// changes nothing (the rest of the index must be as saved before).
    pub fn update_tenant_index(&self, added: &[(String, u32)], removed: &[String]) -> Result<()> {
        if added.is_empty() && removed.is_empty() {
            return Ok(());
        }
        self.write("update tenant index", |tx| {
            let mut delete = tx.prepare("DELETE FROM tenant_index WHERE tenant = ?1")?;
            for tenant in removed {
                delete.execute(params![tenant])?;
            }
            let mut insert =
                tx.prepare("INSERT INTO tenant_index (tenant, slot) VALUES (?1, ?2)")?;
            for (tenant, slot) in added {
                insert.execute(params![tenant, slot])?;
            }
            Ok::<_, TxError>(())
        })
    }

    /// The saved index, by slot.
    pub fn tenant_index(&self) -> Result<Vec<(String, u32)>> {
        self.read("read tenant index", |conn| {
            conn.prepare("SELECT tenant, slot FROM tenant_index ORDER BY slot")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
    }
}
