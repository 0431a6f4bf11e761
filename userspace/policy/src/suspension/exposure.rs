//! Whether a new policy would expose a suspended tenant. Only an admin may apply such a
//! policy (the API answers an operator 403 naming the rule and the tenant); an admin's is
//! applied with an audit entry naming what it exposes. Whatever the policy, the recorded
//! addresses stay suspended ([`super::holds`]): these rules are about who may decide.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{prefixes::PrefixIndex, Suspended};
use crate::Policy;

/// A rule a policy change can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A management prefix not within the current ones: suspended tenants reach it.
    ManagementWidened,
    /// A suspended tenant's id is absent from the new policy.
    SuspendedTenantRemoved,
    /// A suspended tenant's id is absent and its addresses reappear under a new id.
    SuspendedTenantRenamed,
    /// A suspended tenant would no longer own some of its addresses.
    SuspendedAddressesChanged,
    /// Another tenant would own (overlap) a suspended tenant's addresses.
    SuspendedAddressesMoved,
}

impl Rule {
    /// The rule's name in errors and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ManagementWidened => "management_widened",
            Rule::SuspendedTenantRemoved => "suspended_tenant_removed",
            Rule::SuspendedTenantRenamed => "suspended_tenant_renamed",
            Rule::SuspendedAddressesChanged => "suspended_addresses_changed",
            Rule::SuspendedAddressesMoved => "suspended_addresses_moved",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One way a policy would expose suspended tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// The rule it breaks.
    pub rule: Rule,
    /// The suspended tenant it exposes (`None` for management prefixes: all of them).
    pub tenant: Option<String>,
    /// What exactly, for people.
    pub detail: String,
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.rule, self.detail)
    }
}

fn join(nets: impl IntoIterator<Item = IpNet>) -> String {
    let v: Vec<String> = nets.into_iter().map(|n| n.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// By tenant: the (own prefix, suspended address) pairs it would take.
type Takers<'a> = BTreeMap<&'a str, Vec<(IpNet, IpNet)>>;

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.trunc().contains(&b.trunc()) || b.trunc().contains(&a.trunc())
}

/// How `new` would expose the tenants in `suspended`, compared with `old` (the policy in
/// force). Empty when nothing is suspended or nothing is exposed.
pub fn classify(
    old: &Policy,
    new: &Policy,
    suspended: &BTreeMap<String, Suspended>,
) -> Vec<Exposure> {
    let mut out = Vec::new();
    if suspended.is_empty() {
        return out;
    }
    let ids = suspended.keys().cloned().collect::<Vec<_>>().join(", ");
    let old_management = PrefixIndex::new(old.daemon.management.iter().map(|n| (*n, ())));
    for n in &new.daemon.management {
        if !old_management.covers(n) {
            out.push(Exposure {
                rule: Rule::ManagementWidened,
                tenant: None,
                detail: format!(
                    "management prefix {n} is not within the current ones ({}): the suspended \
                     tenants ({ids}) could reach it",
                    join(old.daemon.management.iter().copied())
                ),
            });
        }
    }

    // What each suspended tenant must keep: its addresses in the policy in force and
    // those recorded when it was suspended.
    let mut protected: Vec<(IpNet, &str)> = Vec::new();
    for s in suspended.values() {
        let mut mine: BTreeSet<IpNet> = s.addresses.iter().map(IpNet::trunc).collect();
        if let Some(t) = old.tenant(&s.tenant) {
            mine.extend(t.addresses.iter().map(IpNet::trunc));
        }
        protected.extend(mine.into_iter().map(|a| (a, s.tenant.as_str())));
    }
    let protected = PrefixIndex::new(protected);

    // Other tenants that would own a suspended tenant's address and did not before.
    let mut takers: BTreeMap<&str, Takers<'_>> = BTreeMap::new();
    for t in &new.tenants {
        for owned in &t.addresses {
            for (address, of) in protected.overlapping(owned) {
                if *of == t.id {
                    continue;
                }
                let before = old
                    .tenant(&t.id)
                    .is_some_and(|o| o.addresses.iter().any(|a| overlap(a, &address)));
                if !before {
                    takers
                        .entry(*of)
                        .or_default()
                        .entry(t.id.as_str())
                        .or_default()
                        .push((owned.trunc(), address));
                }
            }
        }
    }

    for s in suspended.values() {
        let taken = takers.get(s.tenant.as_str());
        match (old.tenant(&s.tenant), new.tenant(&s.tenant)) {
            (Some(_), None) => {
                let renamed_to: Vec<&str> = taken
                    .into_iter()
                    .flat_map(|m| m.keys().copied())
                    .filter(|id| old.tenant(id).is_none())
                    .collect();
                out.push(if renamed_to.is_empty() {
                    Exposure {
                        rule: Rule::SuspendedTenantRemoved,
                        tenant: Some(s.tenant.clone()),
                        detail: format!(
                            "suspended tenant {} is absent from the new policy",
                            s.tenant
                        ),
                    }
                } else {
                    Exposure {
                        rule: Rule::SuspendedTenantRenamed,
                        tenant: Some(s.tenant.clone()),
                        detail: format!(
                            "suspended tenant {} is absent from the new policy and its addresses \
                             reappear under the new id {}",
                            s.tenant,
                            renamed_to.join(", ")
                        ),
                    }
                });
            }
            (Some(before), Some(after)) => {
                let keeps = PrefixIndex::new(after.addresses.iter().map(|a| (*a, ())));
                let lost: Vec<IpNet> = before
                    .addresses
                    .iter()
                    .filter(|a| !keeps.covers(a))
                    .map(IpNet::trunc)
                    .collect();
                if !lost.is_empty() {
                    out.push(Exposure {
                        rule: Rule::SuspendedAddressesChanged,
                        tenant: Some(s.tenant.clone()),
                        detail: format!(
                            "suspended tenant {} would no longer own {}",
                            s.tenant,
                            join(lost)
                        ),
                    });
                }
            }
            // Not in the policy in force (retained) or newly added: nothing of it leaves.
            (None, _) => {}
        }
        for (taker, pairs) in taken.into_iter().flatten() {
            let what: Vec<String> = pairs
                .iter()
                .map(|(owned, address)| {
                    if owned == address {
                        owned.to_string()
                    } else {
                        format!("{owned} (overlapping {address})")
                    }
                })
                .collect();
            out.push(Exposure {
                rule: Rule::SuspendedAddressesMoved,
                tenant: Some(s.tenant.clone()),
                detail: format!(
                    "tenant {taker} would own {} of suspended tenant {}",
                    what.join(", "),
                    s.tenant
                ),
            });
        }
    }
    out
}
