//! The dataplane: the only module that touches aya. Loads the embedded eBPF object,
//! attaches its programs to interfaces by mode, writes the tenant tries and reads the
//! counters.

mod index;

use std::collections::HashMap;

use aya::{
    maps::{lpm_trie::Key, LpmTrie, MapData, PerCpuArray, PerCpuValues},
    programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use ipnet::IpNet;
use warden_common::{
    direction, global, map, program, tenant_counter_index, Counters, TenantRef, MAX_PREFIXES,
    MAX_TENANTS,
};

pub use self::index::{IndexError, TenantIndex};
use crate::policy::Mode;

/// The compiled eBPF object (built by `build.rs` through aya-build).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden"));

/// Errors at the boundary between Warden and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching {hook} to interface {iface}: {source}")]
    Attach {
        iface: String,
        hook: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error(transparent)]
    Index(#[from] IndexError),
}

type Result<T, E = DataplaneError> = std::result::Result<T, E>;

/// One program attached to one interface.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub interface: String,
    pub mode: String,
    pub hook: String,
    pub program: String,
}

/// Which programs go where, per mode: (XDP ingress program, tcx egress program).
fn programs_for(mode: Mode) -> (&'static str, &'static str) {
    match mode {
        Mode::Host => (program::XDP_TO_TENANT, program::TC_FROM_TENANT),
        Mode::Gateway => (program::XDP_FROM_TENANT, program::TC_TO_TENANT),
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Host => "host",
        Mode::Gateway => "gateway",
    }
}

/// Loaded programs and maps. Dropping it detaches every program it attached.
pub struct Dataplane {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    /// Prefixes currently in the tries, with the tenant index each maps to.
    prefixes: HashMap<IpNet, u32>,
}

impl Dataplane {
    /// Loads the object and its programs (running the verifier) without attaching.
    pub fn load() -> Result<Self> {
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        for name in [program::XDP_FROM_TENANT, program::XDP_TO_TENANT] {
            let prog: &mut Xdp = program_mut(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        for name in [program::TC_FROM_TENANT, program::TC_TO_TENANT] {
            let prog: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
            prefixes: HashMap::new(),
        })
    }

    /// Attaches the XDP (ingress) and tcx (egress) programs of `mode` to `iface`.
    pub fn attach(&mut self, iface: &str, mode: Mode) -> Result<()> {
        let (xdp_name, tc_name) = programs_for(mode);
        let xdp: &mut Xdp = program_mut(&mut self.ebpf, xdp_name)?;
        xdp.attach(iface, XdpMode::default())
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_string(),
                hook: "xdp",
                source,
            })?;
        self.attachments.push(Attachment {
            interface: iface.to_string(),
            mode: mode_name(mode).to_string(),
            hook: "xdp".to_string(),
            program: xdp_name.to_string(),
        });
        let tc: &mut SchedClassifier = program_mut(&mut self.ebpf, tc_name)?;
        tc.attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|source| DataplaneError::Attach {
            iface: iface.to_string(),
            hook: "tcx-egress",
            source,
        })?;
        self.attachments.push(Attachment {
            interface: iface.to_string(),
            mode: mode_name(mode).to_string(),
            hook: "tcx-egress".to_string(),
            program: tc_name.to_string(),
        });
        Ok(())
    }

    /// What is attached where.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Makes the tenant tries hold exactly `prefixes` (prefix -> dense tenant index).
    ///
    /// `fresh` are indexes newly given to tenants: their counters are zeroed after
    /// the prefixes that pointed at them for a previous tenant are gone and before any
    /// prefix points at them for the new one, so no packet lands in the wrong tenant.
    /// Other prefixes are inserted or updated before stale ones are removed, so an
    /// address that stays with its tenant is never briefly unattributed.
    pub fn apply_tenants(&mut self, prefixes: &HashMap<IpNet, u32>, fresh: &[u32]) -> Result<()> {
        let stale: Vec<(IpNet, u32)> = self
            .prefixes
            .iter()
            .filter(|(n, _)| !prefixes.contains_key(n))
            .map(|(n, i)| (*n, *i))
            .collect();
        let reused_stale = stale.iter().filter(|(_, i)| fresh.contains(i));
        for (net, _) in reused_stale {
            self.remove_prefix(net)?;
            self.prefixes.remove(net);
        }
        for &index in fresh {
            self.reset_tenant_counters(index)?;
        }
        for (net, &index) in prefixes {
            if self.prefixes.get(net) != Some(&index) {
                self.insert_prefix(net, index)?;
                self.prefixes.insert(*net, index);
            }
        }
        for (net, _) in stale.iter().filter(|(_, i)| !fresh.contains(i)) {
            self.remove_prefix(net)?;
            self.prefixes.remove(net);
        }
        Ok(())
    }

    fn insert_prefix(&mut self, net: &IpNet, index: u32) -> Result<()> {
        let value = TenantRef { index };
        match net {
            IpNet::V4(n) => {
                let mut trie = self.trie_v4()?;
                trie.insert(
                    &Key::new(n.prefix_len().into(), n.network().octets()),
                    value,
                    0,
                )
                .map_err(|source| DataplaneError::Map {
                    name: map::TENANTS_V4,
                    source,
                })
            }
            IpNet::V6(n) => {
                let mut trie = self.trie_v6()?;
                trie.insert(
                    &Key::new(n.prefix_len().into(), n.network().octets()),
                    value,
                    0,
                )
                .map_err(|source| DataplaneError::Map {
                    name: map::TENANTS_V6,
                    source,
                })
            }
        }
    }

    fn remove_prefix(&mut self, net: &IpNet) -> Result<()> {
        match net {
            IpNet::V4(n) => {
                let mut trie = self.trie_v4()?;
                trie.remove(&Key::new(n.prefix_len().into(), n.network().octets()))
                    .map_err(|source| DataplaneError::Map {
                        name: map::TENANTS_V4,
                        source,
                    })
            }
            IpNet::V6(n) => {
                let mut trie = self.trie_v6()?;
                trie.remove(&Key::new(n.prefix_len().into(), n.network().octets()))
                    .map_err(|source| DataplaneError::Map {
                        name: map::TENANTS_V6,
                        source,
                    })
            }
        }
    }

    fn trie_v4(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 4], TenantRef>> {
        let m = self
            .ebpf
            .map_mut(map::TENANTS_V4)
            .ok_or(DataplaneError::MissingMap(map::TENANTS_V4))?;
        LpmTrie::try_from(m).map_err(|source| DataplaneError::Map {
            name: map::TENANTS_V4,
            source,
        })
    }

    fn trie_v6(&mut self) -> Result<LpmTrie<&mut MapData, [u8; 16], TenantRef>> {
        let m = self
            .ebpf
            .map_mut(map::TENANTS_V6)
            .ok_or(DataplaneError::MissingMap(map::TENANTS_V6))?;
        LpmTrie::try_from(m).map_err(|source| DataplaneError::Map {
            name: map::TENANTS_V6,
            source,
        })
    }

    fn counters_map(&self, name: &'static str) -> Result<PerCpuArray<&MapData, Counters>> {
        let m = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        PerCpuArray::try_from(m).map_err(|source| DataplaneError::Map { name, source })
    }

    /// Zeroes a tenant's counters, so a reused dense index starts from nothing.
    pub fn reset_tenant_counters(&mut self, index: u32) -> Result<()> {
        let name = map::TENANT_COUNTERS;
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let mut arr: PerCpuArray<&mut MapData, Counters> =
            PerCpuArray::try_from(m).map_err(|source| DataplaneError::Map { name, source })?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Map {
            name,
            source: aya::maps::MapError::IoError(e),
        })?;
        for dir in 0..direction::COUNT {
            let zeros = PerCpuValues::try_from(vec![Counters::default(); cpus]).map_err(|e| {
                DataplaneError::Map {
                    name,
                    source: aya::maps::MapError::IoError(e),
                }
            })?;
            arr.set(tenant_counter_index(index, dir), zeros, 0)
                .map_err(|source| DataplaneError::Map { name, source })?;
        }
        Ok(())
    }

    /// Sums a tenant's counters over CPUs: `[out, in]`.
    pub fn tenant_counters(&self, index: u32) -> Result<[Counters; 2]> {
        let arr = self.counters_map(map::TENANT_COUNTERS)?;
        let mut out = [Counters::default(); 2];
        for dir in 0..direction::COUNT {
            out[dir as usize] = sum(&arr, tenant_counter_index(index, dir), map::TENANT_COUNTERS)?;
        }
        Ok(out)
    }

    /// Sums the counters of traffic that belongs to no tenant: `[slot][direction]`.
    pub fn global_counters(&self) -> Result<[[Counters; 2]; global::SLOTS as usize]> {
        let arr = self.counters_map(map::GLOBAL_COUNTERS)?;
        let mut out = [[Counters::default(); 2]; global::SLOTS as usize];
        for slot in 0..global::SLOTS {
            for dir in 0..direction::COUNT {
                out[slot as usize][dir as usize] =
                    sum(&arr, global::index(slot, dir), map::GLOBAL_COUNTERS)?;
            }
        }
        Ok(out)
    }

    /// Prefixes in the tries (both families), for map-fill metrics.
    pub fn prefix_count(&self) -> usize {
        self.prefixes.len()
    }
}

/// Capacities of the bounded maps, for `warden_map_capacity`.
pub const CAPACITIES: [(&str, u32); 3] = [
    (map::TENANTS_V4, MAX_PREFIXES),
    (map::TENANTS_V6, MAX_PREFIXES),
    (map::TENANT_COUNTERS, MAX_TENANTS * direction::COUNT),
];

fn sum(arr: &PerCpuArray<&MapData, Counters>, index: u32, name: &'static str) -> Result<Counters> {
    let values = arr
        .get(&index, 0)
        .map_err(|source| DataplaneError::Map { name, source })?;
    Ok(values.iter().fold(Counters::default(), |acc, c| Counters {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    }))
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}
