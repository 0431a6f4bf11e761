//! Suspensions above everything else (clause 3.1.3.14): pure logic, no aya, no SQLite.
//!
//! A suspension is lifted only by a person with the admin role, with a reason, audited.
//! Three things keep that true whatever happens to the state database or the policy:
//!
//! - **A sequence number.** Every suspend and unsuspend takes the next number of one
//!   counter (the *suspension sequence*). The store keeps it with the suspensions; the
//!   kernel side keeps it in the pinned *suspension record* (a map the programs do not
//!   use, pinned beside theirs: which tenants are suspended, with their addresses, reason,
//!   actor and time, at which sequence; see `dataplane::record`); the events log gets one
//!   durable line per change with the same number ([`events`]). At start
//!   ([`reconcile`]) a store that is missing, empty or at a lower sequence than the kernel's
//!   record or the events log is never read as "no suspensions": the daemon refuses to
//!   start, touching nothing pinned, names the file and the suspensions still enforced,
//!   and gives the command that rebuilds the store (`warden state restore`, [`rebuild`]).
//!   A store at a *higher* sequence wins: the daemon writes the store first when lifting,
//!   so a crash between the two writes leaves the store ahead with the audited lift.
//! - **Suspended addresses.** A suspension records the tenant's addresses when it is
//!   imposed. Whatever policy is applied, those addresses stay suspended until the
//!   suspension is lifted ([`holds`]): a tenant that owns one of them is enforced as
//!   suspended, and recorded addresses that no tenant owns stay in the kernel under the
//!   suspended tenant's id, even when that id left the policy.
//! - **Policy classification.** A policy that would expose a suspended tenant (wider
//!   management prefixes, a suspended id removed or renamed, its addresses changed or
//!   moved) is refused for an operator and applied for an admin with an audit entry naming
//!   what it exposes ([`exposure`]).
//!
//! Fleet mode (etcd) is a further durable place for the same [`SuspensionState`]: it would
//! be one more input to [`reconcile`] and [`rebuild`], compared by the same sequence.

pub mod events;
pub mod exposure;
pub mod holds;
pub mod prefixes;
pub mod reconcile;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use events::{rebuild, EventsLogState, Rebuilt};
pub use exposure::{classify, Exposure, Rule};
pub use holds::{holds, Hold, Holds};
pub use reconcile::{reconcile, Lost, Reconciled, StoreFound};

/// One tenant's active suspension, as every durable place keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspended {
    /// The suspended tenant.
    pub tenant: String,
    /// Its addresses when it was suspended: suspended until it is unsuspended.
    pub addresses: Vec<IpNet>,
    /// Why it was suspended.
    pub reason: String,
    /// Who suspended it.
    pub actor: String,
    /// When (unix seconds).
    pub since: i64,
    /// The suspension sequence number of the suspend.
    pub seq: u64,
}

/// One suspension of a tenant, active while `lifted_at` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Row id, unique for the life of the database.
    pub id: i64,
    /// The suspended tenant.
    pub tenant: String,
    /// Why it was suspended.
    pub reason: String,
    /// Who suspended it (token name, or `warden` for the enforcement ladder).
    pub actor: String,
    /// When it was suspended (unix seconds).
    pub since: i64,
    /// When the suspension was lifted (unix seconds), if it was.
    pub lifted_at: Option<i64>,
    /// Who lifted it.
    pub lifted_by: Option<String>,
    /// Why it was lifted.
    pub lift_reason: Option<String>,
    /// The tenant's addresses when it was suspended: suspended until it is lifted,
    /// whatever the policy says.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// The suspension sequence number of the suspend (`None` for a suspension recorded by
    /// a warden before the sequence existed).
    #[serde(default)]
    pub seq: Option<u64>,
    /// The suspension sequence number of the lift.
    #[serde(default)]
    pub lifted_seq: Option<u64>,
}

impl Suspension {
    /// True while the suspension has not been lifted.
    pub fn is_active(&self) -> bool {
        self.lifted_at.is_none()
    }

    /// The suspension as the other durable places keep it.
    pub fn suspended(&self) -> Suspended {
        Suspended {
            tenant: self.tenant.clone(),
            addresses: self.addresses.clone(),
            reason: self.reason.clone(),
            actor: self.actor.clone(),
            since: self.since,
            seq: self.seq.unwrap_or(0),
        }
    }
}

/// Every active suspension at one point of the suspension sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionState {
    /// The number of the last suspend or unsuspend (0: there never was one).
    pub seq: u64,
    /// Active suspensions by tenant.
    pub tenants: BTreeMap<String, Suspended>,
}

impl SuspensionState {
    /// The state holding `suspensions` at `seq`.
    pub fn new(seq: u64, suspensions: impl IntoIterator<Item = Suspended>) -> Self {
        SuspensionState {
            seq,
            tenants: suspensions
                .into_iter()
                .map(|s| (s.tenant.clone(), s))
                .collect(),
        }
    }

    /// The state as the pinned record's bytes (JSON).
    pub fn to_record(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a suspension state always serializes")
    }

    /// The state from the pinned record's bytes, which must say `seq` too.
    pub fn from_record(seq: u64, bytes: &[u8]) -> Result<Self, String> {
        let state: SuspensionState =
            serde_json::from_slice(bytes).map_err(|e| format!("not a suspension record: {e}"))?;
        if state.seq != seq {
            return Err(format!(
                "the record's header says sequence {seq}, its content {}",
                state.seq
            ));
        }
        Ok(state)
    }

    /// One line per suspension: tenant, addresses, since, by whom, why.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in self.tenants.values() {
            out.push_str(&describe_one(s));
            out.push('\n');
        }
        out
    }
}

/// `  tenant  addresses a, b  suspended <time> by <actor> (sequence n): <reason>`.
pub fn describe_one(s: &Suspended) -> String {
    let addresses = if s.addresses.is_empty() {
        "(no addresses recorded)".to_string()
    } else {
        s.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "  {}  addresses {}  suspended {} by {} (sequence {}): {}",
        s.tenant,
        addresses,
        crate::time::rfc3339(s.since),
        s.actor,
        s.seq,
        s.reason
    )
}
