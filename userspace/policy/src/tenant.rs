//! Tenants as every layer names them: a tenant is its id, the policy's `id` (a string,
//! in flags, suspensions, the API and logs); the kernel's dense index of a tenant into its
//! per-tenant tables is the tenant's *slot* ([`TenantSlot`]), given out by the daemon's
//! tenant index and kept across restarts. `tenant` never means a slot.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tenant's slot in the kernel's per-tenant tables.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TenantSlot(pub u32);

impl TenantSlot {
    /// The slot as an index into a table by slot.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for TenantSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for TenantSlot {
    fn from(slot: u32) -> Self {
        TenantSlot(slot)
    }
}
