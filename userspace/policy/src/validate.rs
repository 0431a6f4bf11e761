//! Rules that span entries: unique interface names and tenant ids, disjoint tenant
//! addresses, and each MAC bound to one tenant. Each error points at the later of the two
//! conflicting entries and names the earlier one.

use std::collections::HashMap;

use ipnet::IpNet;

use super::document::{InterfaceDraft, TenantDraft};
use super::reader::{Pos, Reader};
use super::units::format_mac;

pub(super) fn interfaces(r: &mut Reader, interfaces: &[InterfaceDraft]) {
    let mut first: HashMap<&str, Pos> = HashMap::new();
    for draft in interfaces {
        let name = draft.interface.name.as_str();
        match first.get(name) {
            Some(earlier) => r.error_at(
                draft.name_pos,
                format!(
                    "duplicate interface {name} (first listed at line {})",
                    earlier.line
                ),
            ),
            None => {
                first.insert(name, draft.name_pos);
            }
        }
    }
}

/// Asks `usable` about each interface (once per name); a refusal is an error at the
/// interface's name. A host-mode interface bound to a tenant must not carry another
/// tenant's address (`ports::on_host`).
pub(super) fn on_host(
    r: &mut Reader,
    interfaces: &[InterfaceDraft],
    tenants: &[TenantDraft],
    usable: super::InterfaceCheck<'_>,
) {
    let mut asked = std::collections::HashSet::new();
    for draft in interfaces {
        if asked.insert(draft.interface.name.as_str()) {
            match usable(&draft.interface.name) {
                Ok(addresses) => super::ports::on_host(r, draft, tenants, &addresses),
                Err(why) => r.error_at(draft.name_pos, why),
            }
        }
    }
}

pub(super) fn tenants(r: &mut Reader, tenants: &[TenantDraft]) {
    unique_ids(r, tenants);
    unique_macs(r, tenants);
    disjoint_addresses(r, tenants);
}

fn unique_ids(r: &mut Reader, tenants: &[TenantDraft]) {
    let mut first: HashMap<&str, Pos> = HashMap::with_capacity(tenants.len());
    for (id, pos) in tenants.iter().filter_map(|t| t.id.as_ref()) {
        match first.get(id.as_str()) {
            Some(earlier) => r.error_at(
                *pos,
                format!(
                    "duplicate tenant id {id} (first defined at line {})",
                    earlier.line
                ),
            ),
            None => {
                first.insert(id, *pos);
            }
        }
    }
}

fn unique_macs(r: &mut Reader, tenants: &[TenantDraft]) {
    let mut owner: HashMap<[u8; 6], (&TenantDraft, Pos)> = HashMap::new();
    for tenant in tenants {
        for (mac, pos) in &tenant.macs {
            match owner.get(mac) {
                Some((earlier, earlier_pos)) => r.error_at(
                    *pos,
                    format!(
                        "MAC {} is already bound to {} (line {})",
                        format_mac(mac),
                        earlier.label(),
                        earlier_pos.line
                    ),
                ),
                None => {
                    owner.insert(*mac, (tenant, *pos));
                }
            }
        }
    }
}

/// Two CIDRs overlap exactly when one contains the other. Sorted by network address with
/// wider prefixes first, every network that contains an entry is on the stack of open
/// networks when the entry comes up, so one pass finds each overlap in O(n log n).
fn disjoint_addresses(r: &mut Reader, tenants: &[TenantDraft]) {
    let count = tenants.iter().map(|t| t.addresses.len()).sum();
    let mut all: Vec<(IpNet, Pos, usize, &TenantDraft)> = Vec::with_capacity(count);
    for (i, t) in tenants.iter().enumerate() {
        all.extend(t.addresses.iter().map(|(net, pos)| (*net, *pos, i, t)));
    }
    // (network, position, tenant) is a total order (the same order a stable sort by
    // network and position gives), so the unstable sort is deterministic.
    all.sort_unstable_by_key(|(net, pos, i, _)| (*net, *pos, *i));
    let mut open: Vec<&(IpNet, Pos, usize, &TenantDraft)> = Vec::new();
    for entry in &all {
        while open.last().is_some_and(|outer| !outer.0.contains(&entry.0)) {
            open.pop();
        }
        if let Some(outer) = open.last() {
            let (earlier, later) = if outer.1 < entry.1 {
                (*outer, entry)
            } else {
                (entry, *outer)
            };
            r.error_at(
                later.1,
                format!(
                    "{} overlaps {} of {} (line {})",
                    later.0,
                    earlier.0,
                    earlier.3.label(),
                    earlier.1.line
                ),
            );
        }
        open.push(entry);
    }
}
