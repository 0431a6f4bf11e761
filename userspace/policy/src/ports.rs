//! Port bindings: `interfaces[].tenant` and, in gateway mode, `interfaces[].vlans`.
//! Each names a tenant of `tenants`; a VLAN id is bound at most once per interface.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::document::{tenant_id, InterfaceDraft, TenantDraft};
use super::reader::{Node, Pos, Reader};
use super::{Mode, VlanBinding};

const VLAN_KEYS: &[&str] = &["id", "tenant"];

/// Where a VLAN binding's id and tenant were written.
pub(super) struct VlanPos {
    pub id: Pos,
    pub tenant: Pos,
}

/// Reads `vlans`: a list of `{id, tenant}` mappings.
pub(super) fn read_vlans(r: &mut Reader, node: &Node<'_>) -> Vec<(VlanBinding, VlanPos)> {
    let mut bindings = Vec::new();
    for item in r.sequence(node, "a list of VLAN bindings") {
        let entries = r.mapping(item, "a VLAN binding mapping with keys id, tenant");
        let (mut id, mut tenant) = (None, None);
        for entry in &entries {
            match entry.key {
                "id" => {
                    id = r
                        .value(entry.value, "a VLAN id", vlan_id)
                        .map(|v| (v, Pos::of(entry.value)));
                }
                "tenant" => {
                    tenant = r
                        .value(entry.value, "a tenant id", tenant_id)
                        .map(|t| (t, Pos::of(entry.value)));
                }
                _ => r.unknown_key(entry, "VLAN binding", VLAN_KEYS),
            }
        }
        r.require(item, &entries, "VLAN binding", VLAN_KEYS);
        if let (Some((id, id_pos)), Some((tenant, tenant_pos))) = (id, tenant) {
            let pos = VlanPos {
                id: id_pos,
                tenant: tenant_pos,
            };
            bindings.push((VlanBinding { id, tenant }, pos));
        }
    }
    bindings
}

/// A VLAN id a tenant's frames can carry: 1 to 4094 (0 is priority tagging, 4095
/// reserved).
fn vlan_id(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(id) if (1..=4094).contains(&id) => Ok(id),
        _ => Err(format!("invalid VLAN id `{text}`; expected 1 to 4094")),
    }
}

/// Every bound tenant exists; `vlans` only in gateway mode, each id once per interface.
/// `fleet_file`: a fleet node's own file (`daemon.fleet`, no `tenants`), whose bound
/// tenants come from the fleet: they are checked once its sections are assembled.
pub(super) fn validate(
    r: &mut Reader,
    interfaces: &[InterfaceDraft],
    tenants: &[TenantDraft],
    fleet_file: bool,
) {
    let known: HashSet<&str> = tenants
        .iter()
        .filter_map(|t| t.id.as_ref().map(|(id, _)| id.as_str()))
        .collect();
    let exists = |r: &mut Reader, name: &str, tenant: &str, pos: Pos| {
        if !fleet_file && !known.contains(tenant) {
            r.error_at(
                pos,
                format!(
                    "interface {name} is bound to tenant `{tenant}`, which is not in `tenants`"
                ),
            );
        }
    };
    for draft in interfaces {
        let i = &draft.interface;
        if let (Some(tenant), Some(pos)) = (&i.tenant, draft.tenant_pos) {
            exists(r, &i.name, tenant, pos);
        }
        if let (Some(pos), Mode::Host) = (draft.vlans_pos, i.mode) {
            r.error_at(
                pos,
                format!(
                    "interface {} is in host mode: `vlans` binds VLANs on a gateway's \
                     tenant-facing port; bind a host's interface with `tenant`",
                    i.name
                ),
            );
        }
        let mut first: HashMap<u16, Pos> = HashMap::new();
        for (binding, pos) in i.vlans.iter().zip(&draft.vlan_pos) {
            exists(r, &i.name, &binding.tenant, pos.tenant);
            if let Some(earlier) = first.insert(binding.id, pos.id) {
                r.error_at(
                    pos.id,
                    format!(
                        "VLAN {} of interface {} is already bound (line {})",
                        binding.id, i.name, earlier.line
                    ),
                );
            }
        }
    }
}

/// A host-mode interface is the tenant's own server's: bound to a tenant, it must not
/// carry an address of another tenant (`addresses`, those configured on it here).
pub(super) fn on_host(
    r: &mut Reader,
    draft: &InterfaceDraft,
    tenants: &[TenantDraft],
    addresses: &[IpAddr],
) {
    let i = &draft.interface;
    let (Some(bound), Some(pos), Mode::Host) = (&i.tenant, draft.tenant_pos, i.mode) else {
        return;
    };
    for addr in addresses {
        let owner = tenants.iter().find(|t| {
            t.addresses.iter().any(|(net, _)| net.contains(addr))
                && t.id.as_ref().is_some_and(|(id, _)| id != bound)
        });
        if let Some(owner) = owner {
            r.error_at(
                pos,
                format!(
                    "interface {} is bound to tenant `{bound}` but carries {addr}, an address \
                     of {}: in host mode, bind the tenant whose server this is",
                    i.name,
                    owner.label()
                ),
            );
            return;
        }
    }
}
