//! Per-interface settings of the programs (map IFACES, keyed by ifindex): what an
//! interface passes from tenants that the programs cannot look into. Written once at
//! start, before anything is attached (interfaces change at restart only).

use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use warden_common::{map, IfaceConfig, MAX_PASS_ETHERTYPES};

use super::{map_err, Dataplane, DataplaneError, Result};
use warden_policy::Interface;

/// The interface's index in this network namespace.
fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| DataplaneError::Interface {
        name: name.to_string(),
        detail: "the name contains a NUL byte".into(),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(DataplaneError::Interface {
            name: name.to_string(),
            detail: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(index)
}

/// The index of each interface of `interfaces` bound to a tenant (a port binding), by
/// name: what [`crate::bind_ports`] keys the bindings by.
pub fn bound_ifindexes(interfaces: &[Interface]) -> Result<HashMap<String, u32>> {
    interfaces
        .iter()
        .filter(|i| i.is_bound())
        .map(|i| Ok((i.name.clone(), ifindex(&i.name)?)))
        .collect()
}

/// The kernel's view of one interface's settings.
fn config(iface: &Interface) -> IfaceConfig {
    let mut c = IfaceConfig::default();
    for (slot, ether_type) in c
        .pass_ethertypes
        .iter_mut()
        .zip(iface.pass_ethertypes.iter().take(MAX_PASS_ETHERTYPES))
    {
        *slot = *ether_type;
    }
    c
}

impl Dataplane {
    /// Writes every interface's settings under its ifindex. Entries of other interfaces
    /// stay until [`Dataplane::forget_other_interfaces`] (at the end of a start), so a
    /// start that fails leaves the interfaces it adopted as they were configured.
    pub fn configure_interfaces(&mut self, interfaces: &[Interface]) -> Result<()> {
        let mut wanted = Vec::with_capacity(interfaces.len());
        for iface in interfaces {
            wanted.push((ifindex(&iface.name)?, config(iface)));
        }
        let mut m = self.ifaces_map()?;
        for (index, c) in wanted {
            m.insert(index, c, 0).map_err(map_err(map::IFACES))?;
        }
        Ok(())
    }

    /// Removes the entries of interfaces other than `interfaces` (no longer attached, or
    /// whose index changed). Best effort: a stale entry configures nothing the programs
    /// run on, so a failure is only logged.
    pub fn forget_other_interfaces(&mut self, interfaces: &[Interface]) {
        let keep: HashSet<u32> = interfaces
            .iter()
            .filter_map(|i| ifindex(&i.name).ok())
            .collect();
        let mut m = match self.ifaces_map() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not prune interface settings");
                return;
            }
        };
        let stale: Vec<u32> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !keep.contains(k))
            .collect();
        for k in stale {
            if let Err(e) = m.remove(&k) {
                tracing::warn!(ifindex = k, error = %e, "could not remove stale interface settings");
            }
        }
    }

    fn ifaces_map(&mut self) -> Result<BpfHashMap<&mut MapData, u32, IfaceConfig>> {
        BpfHashMap::try_from(self.raw_mut(map::IFACES)?).map_err(map_err(map::IFACES))
    }
}
