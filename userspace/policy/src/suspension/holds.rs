//! Which tenants a policy must enforce as suspended, whatever it says: the suspended ones,
//! every tenant owning an address recorded with a suspension, and suspended tenants absent
//! from the policy, whose recorded addresses stay in the kernel under their own id.

use std::collections::{BTreeMap, HashSet};

use ipnet::IpNet;

use super::{prefixes::PrefixIndex, Suspended};
use crate::Policy;

/// Why a tenant is enforced as suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Its own suspension.
    Own,
    /// It owns `owned`, which overlaps `address`, recorded with the suspension of `of`.
    Address {
        /// The suspended tenant whose address it is.
        of: String,
        /// The recorded address.
        address: IpNet,
        /// The tenant's own prefix overlapping it.
        owned: IpNet,
    },
    /// Suspended but absent from the policy: its recorded addresses stay suspended.
    Retained,
}

/// What the kernel enforces as suspended for one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    /// Every tenant enforced as suspended (policy tenants and retained ids), and why.
    pub tenants: BTreeMap<String, Hold>,
    /// Addresses recorded with a suspension that no policy tenant owns, by the suspended
    /// tenant: they stay in the kernel under that tenant's id (its policy entry's
    /// addresses plus these, or an entry of their own when it left the policy).
    pub extra: BTreeMap<String, Vec<IpNet>>,
}

impl Holds {
    /// The ids enforced as suspended.
    pub fn suspended_ids(&self) -> HashSet<String> {
        self.tenants.keys().cloned().collect()
    }

    /// The suspended ids absent from the policy (they keep a kernel entry of their own).
    pub fn retained(&self) -> impl Iterator<Item = &str> {
        self.tenants
            .iter()
            .filter(|(_, h)| **h == Hold::Retained)
            .map(|(id, _)| id.as_str())
    }

    /// Why `id` is enforced as suspended, for people; `None` when it is not.
    pub fn why(&self, id: &str) -> Option<String> {
        let extra = self.extra.get(id).filter(|e| !e.is_empty()).map(|e| {
            format!(
                "; its recorded addresses {} (in no tenant's policy entry) stay suspended with it",
                join(e)
            )
        });
        let text = match self.tenants.get(id)? {
            Hold::Own => format!("suspended{}", extra.unwrap_or_default()),
            Hold::Address { of, address, owned } if owned == address => format!(
                "owns {owned}, recorded with the suspension of tenant {of}: suspended until \
                 {of} is unsuspended"
            ),
            Hold::Address { of, address, owned } => format!(
                "owns {owned}, which overlaps {address}, recorded with the suspension of \
                 tenant {of}: suspended until {of} is unsuspended"
            ),
            Hold::Retained => format!(
                "suspended and not in the policy: its recorded addresses {} stay suspended \
                 until it is unsuspended",
                self.extra
                    .get(id)
                    .filter(|e| !e.is_empty())
                    .map_or_else(|| "(all owned by other tenants, held)".into(), |e| join(e))
            ),
        };
        Some(text)
    }
}

fn join(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The holds of `policy` under the active suspensions `suspended`. Linear in the
/// policy's addresses (each looked up in an index of the recorded ones); nothing to do
/// when no tenant is suspended.
pub fn holds(policy: &Policy, suspended: &BTreeMap<String, Suspended>) -> Holds {
    let mut out = Holds::default();
    if suspended.is_empty() {
        return out;
    }
    let recorded = PrefixIndex::new(
        suspended
            .values()
            .flat_map(|s| s.addresses.iter().map(|a| (*a, s.tenant.as_str()))),
    );
    // Recorded prefixes some policy tenant owns (equal or wider): held through that tenant.
    let mut covered: HashSet<IpNet> = HashSet::new();
    for t in &policy.tenants {
        if suspended.contains_key(&t.id) {
            out.tenants.insert(t.id.clone(), Hold::Own);
        }
        if recorded.is_empty() {
            continue;
        }
        for owned in &t.addresses {
            for (address, of) in recorded.overlapping(owned) {
                if owned.trunc().contains(&address) {
                    covered.insert(address);
                }
                if *of != t.id {
                    out.tenants
                        .entry(t.id.clone())
                        .or_insert_with(|| Hold::Address {
                            of: (*of).to_string(),
                            address,
                            owned: owned.trunc(),
                        });
                }
            }
        }
    }
    for s in suspended.values() {
        if policy.tenant(&s.tenant).is_none() {
            out.tenants.insert(s.tenant.clone(), Hold::Retained);
        }
        let extra: Vec<IpNet> = s
            .addresses
            .iter()
            .map(IpNet::trunc)
            .filter(|a| !covered.contains(a))
            .collect();
        if !extra.is_empty() {
            out.extra.insert(s.tenant.clone(), extra);
        }
    }
    out
}
