//! Compiles a validated policy (plus suspensions and the tenant index) into exactly
//! what one kernel generation holds. Pure: no kernel access, unit-tested.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ipnet::IpNet;
use warden_common::{tenant_flags, Rate, TenantConfig, MAX_PREFIX_LENS};

use super::TenantIndex;
use warden_policy::{Policy, Smtp};

/// Default depth of an egress plan's bucket (a shaped plan's HTB class's `burst` and
/// `cburst`; a policed one's on gateway-mode interfaces and until a tenant's class is
/// made) when the plan sets no `burst`: this much time at the plan's rate, but never
/// less than [`MIN_BURST_BYTES`]. A queue keeps TCP at its plan whatever the bucket, so
/// the bucket only bounds how far ahead of its plan a tenant runs: 20 ms keeps any one
/// second within the plan + 2%. Throttles (policers imposed by a detection) take it too.
pub const DEFAULT_BURST_SECONDS: f64 = 0.020;
/// Default depth of an ingress plan's bucket (policed, in XDP or tcx: there is no queue
/// on the way in) when the plan sets no `burst`: this much time at the plan's rate, but
/// never less than [`MIN_BURST_BYTES`].
///
/// A policer has no queue, so TCP can slow down to the plan only through its losses.
/// Where TCP's smallest window (two segments) is above the plan (a 20 Mbit/s plan at
/// 1 ms: 24 Mbit/s), it slows down through timeouts (200 ms at least) and idles; a
/// bucket that holds an RTO's worth of the plan keeps what the plan earned meanwhile
/// and spends it after, so the average reaches the plan. Measured, one TCP stream into
/// a tenant under a 20 Mbit/s plan at 1 ms, bucket of: 20 ms of the plan 12.6-13.4%,
/// 100 ms 56.6-56.9%, 150 ms 82.1-82.9%, 200 ms 95.4-99.4%, 250 ms 100.7-104.6%; at
/// 10 ms every bucket from 20 ms gets 97-105%. The price is the overshoot: any one
/// second may carry the plan + the burst (here the plan + 20%; measured, the busiest
/// receiver second at +8 to +20%), where 20 ms kept it within the plan + 2%. A plan
/// that must never overshoot sets `burst` (and gives up TCP at short round trips). A
/// policed egress plan (gateway mode) keeps [`DEFAULT_BURST_SECONDS`]: its second stays
/// within the plan + 2%, and TCP from the tenant gets the same low share at 1 ms.
pub const DEFAULT_INGRESS_BURST_SECONDS: f64 = 0.200;
/// Smallest default burst: a GSO packet (64 KiB), which a policer passes whole when the
/// bucket is not ahead (the check comes before the charge), and TCP's window at low
/// plans. Below ~25 Mbit/s it is more than 20 ms of the plan, so a second of a small
/// shaped plan may carry more than plan + 2% (at 20 Mbit/s, plan + 2.6%).
pub const MIN_BURST_BYTES: u64 = 64 * 1024;

/// One generation's content.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Compiled {
    /// (prefix length, network bytes) -> tenant index.
    pub v4: HashMap<(u8, [u8; 4]), u32>,
    pub v6: HashMap<(u8, [u8; 16]), u32>,
    pub macs: HashMap<[u8; 6], u32>,
    /// Bound ports: (ifindex, outer VLAN id or 0 for the whole interface) -> tenant
    /// index ([`bind_ports`]); they share the MAC table.
    pub ports: HashMap<(u32, u16), u32>,
    /// Tenant index -> settings.
    pub configs: HashMap<u32, TenantConfig>,
    /// Tenant index -> egress plan (bits/s) and burst (bytes), of the tenants with one:
    /// what their shaping classes are made of (`Dataplane::shape`).
    pub egress_plans: HashMap<u32, crate::shape::ClassSpec>,
    /// Prefix lengths in use, longest first.
    pub v4_lens: Vec<u8>,
    pub v6_lens: Vec<u8>,
    pub management: Vec<IpNet>,
}

/// Why a policy cannot be put in the kernel.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompileError {
    #[error("tenant {0} has no index")]
    NoIndex(String),
    #[error("interface {0} is bound to a tenant but has no index on this machine")]
    NoInterface(String),
    #[error("interface {interface} is bound to tenant {tenant}, which is not in the policy")]
    PortTenant { interface: String, tenant: String },
    #[error(
        "{family} addresses use {count} distinct prefix lengths ({lens}); at most {max} are supported"
    )]
    TooManyLengths {
        family: &'static str,
        count: usize,
        lens: String,
        max: usize,
    },
}

/// The bucket depth for an egress plan (or a throttle): `burst`, else
/// [`DEFAULT_BURST_SECONDS`] of it.
pub fn burst_bytes(bps: u64, burst: Option<u64>) -> u64 {
    burst.unwrap_or_else(|| default_burst(bps, DEFAULT_BURST_SECONDS))
}

/// The bucket depth for an ingress plan: `burst`, else
/// [`DEFAULT_INGRESS_BURST_SECONDS`] of it.
pub fn ingress_burst_bytes(bps: u64, burst: Option<u64>) -> u64 {
    burst.unwrap_or_else(|| default_burst(bps, DEFAULT_INGRESS_BURST_SECONDS))
}

fn default_burst(bps: u64, seconds: f64) -> u64 {
    ((bps as f64 / 8.0 * seconds) as u64).max(MIN_BURST_BYTES)
}

/// Builds one generation from the policy, the index and the suspended tenant ids.
pub fn compile(
    policy: &Policy,
    index: &TenantIndex,
    suspended: &HashSet<String>,
) -> Result<Compiled, CompileError> {
    compile_with(policy, index, suspended, &BTreeMap::new())
}

/// [`compile`], with `held`: addresses kept under a tenant id besides those of its policy
/// entry (the addresses recorded with a suspension that no policy tenant owns any more,
/// see `warden_policy::suspension::holds`). An id of `held` absent from the policy gets an entry
/// of its own, with the defaults' settings, so its addresses stay attributed to it (and,
/// being in `suspended`, dropped).
pub fn compile_with(
    policy: &Policy,
    index: &TenantIndex,
    suspended: &HashSet<String>,
    held: &BTreeMap<String, Vec<IpNet>>,
) -> Result<Compiled, CompileError> {
    // Sized up front: a 100,000-tenant policy would otherwise rehash each map many times.
    let (mut v4s, mut v6s, mut macs) = (0, 0, 0);
    for t in &policy.tenants {
        let v4 = t.addresses.iter().filter(|n| n.addr().is_ipv4()).count();
        v4s += v4;
        v6s += t.addresses.len() - v4;
        macs += t.macs.len();
    }
    let mut c = Compiled {
        v4: HashMap::with_capacity(v4s),
        v6: HashMap::with_capacity(v6s),
        macs: HashMap::with_capacity(macs),
        configs: HashMap::with_capacity(policy.tenants.len()),
        management: policy.daemon.management.clone(),
        ..Default::default()
    };
    let (mut lens4, mut lens6) = (BTreeSet::new(), BTreeSet::new());
    let (no_addresses, no_macs) = (Vec::new(), Vec::new());
    let entries = policy
        .tenants
        .iter()
        .map(|t| (t.id.as_str(), &t.addresses, &t.macs, &t.settings))
        .chain(
            held.keys()
                .filter(|id| policy.tenant(id).is_none())
                .map(|id| (id.as_str(), &no_addresses, &no_macs, &policy.defaults)),
        );
    for (id, addresses, tenant_macs, s) in entries {
        // The kernel's tables are keyed by the slot's number.
        let i = index
            .get(id)
            .ok_or_else(|| CompileError::NoIndex(id.to_string()))?
            .0;
        let kept = held.get(id).map_or(&[][..], Vec::as_slice);
        for net in addresses.iter().chain(kept) {
            match net.trunc() {
                IpNet::V4(n) => {
                    lens4.insert(n.prefix_len());
                    c.v4.insert((n.prefix_len(), n.network().octets()), i);
                }
                IpNet::V6(n) => {
                    lens6.insert(n.prefix_len());
                    c.v6.insert((n.prefix_len(), n.network().octets()), i);
                }
            }
        }
        for mac in tenant_macs {
            c.macs.insert(*mac, i);
        }
        let mut flags = 0;
        if suspended.contains(id) {
            flags |= tenant_flags::SUSPENDED;
        }
        if !tenant_macs.is_empty() {
            flags |= tenant_flags::MACS_BOUND;
        }
        let smtp = match &s.smtp {
            Smtp::Block => Rate::UNLIMITED,
            Smtp::Allow => {
                flags |= tenant_flags::SMTP_ALLOW;
                Rate::UNLIMITED
            }
            Smtp::Rate { per_second, .. } => {
                flags |= tenant_flags::SMTP_RATE;
                Rate::from_events_per_second(*per_second, per_second.ceil().max(1.0) as u64)
            }
        };
        // The policers' rates, egress and ingress (a shaped egress plan's class is
        // sized below, with the egress burst).
        let plan = |bps: Option<u64>, burst: fn(u64, Option<u64>) -> u64| match bps {
            Some(bps) => Rate::from_bits_per_second(bps, burst(bps, s.bandwidth.burst)),
            None => Rate::UNLIMITED,
        };
        if let Some(bps) = s.bandwidth.egress {
            let burst = burst_bytes(bps, s.bandwidth.burst);
            c.egress_plans
                .insert(i, crate::shape::ClassSpec { bps, burst });
        }
        c.configs.insert(
            i,
            TenantConfig {
                flags,
                shape_class: 0,
                rate: [
                    plan(s.bandwidth.egress, burst_bytes),
                    plan(s.bandwidth.ingress, ingress_burst_bytes),
                ],
                smtp,
                flood_out_syn: per_flood_epoch(s.detectors.flood_out.syn_pps),
                flood_out_pkts: per_flood_epoch(s.detectors.flood_out.pps),
                flood_in_pkts: per_flood_epoch(s.detectors.flood_in.pps),
                _pad2: 0,
                flood_in_bytes: bytes_per_flood_epoch(s.detectors.flood_in.bps),
            },
        );
    }
    c.v4_lens = longest_first(lens4, "IPv4")?;
    c.v6_lens = longest_first(lens6, "IPv6")?;
    Ok(c)
}

/// Binds the ports the policy names (`interfaces[].tenant`, `interfaces[].vlans`) in
/// `c`, each interface by its index on this machine (`ifindexes`, by name).
pub fn bind_ports(
    c: &mut Compiled,
    policy: &Policy,
    index: &TenantIndex,
    ifindexes: &HashMap<String, u32>,
) -> Result<(), CompileError> {
    let slot = |interface: &str, id: &str| {
        policy
            .tenant(id)
            .and_then(|_| index.get(id))
            .map(|s| s.0)
            .ok_or_else(|| CompileError::PortTenant {
                interface: interface.to_string(),
                tenant: id.to_string(),
            })
    };
    for iface in policy.interfaces.iter().filter(|i| i.is_bound()) {
        let ifindex = *ifindexes
            .get(&iface.name)
            .ok_or_else(|| CompileError::NoInterface(iface.name.clone()))?;
        if let Some(tenant) = &iface.tenant {
            c.ports.insert((ifindex, 0), slot(&iface.name, tenant)?);
        }
        for vlan in &iface.vlans {
            c.ports
                .insert((ifindex, vlan.id), slot(&iface.name, &vlan.tenant)?);
        }
    }
    Ok(())
}

/// A per-second threshold as a count per flood epoch (2^30 ns), at least 1 (0 would
/// turn the check off), at most u32::MAX.
pub fn per_flood_epoch(per_second: u64) -> u32 {
    let epoch_ns = 1u128 << warden_common::facts::FLOOD_EPOCH_SHIFT;
    let n = (u128::from(per_second) * epoch_ns).div_ceil(1_000_000_000);
    n.clamp(1, u128::from(u32::MAX)) as u32
}

/// A bits-per-second threshold as bytes per flood epoch, at least 1 (a u64: 100 Gbit/s
/// is 13.4 GB per epoch, past what a u32 holds).
pub fn bytes_per_flood_epoch(bps: u64) -> u64 {
    let epoch_ns = 1u128 << warden_common::facts::FLOOD_EPOCH_SHIFT;
    let n = (u128::from(bps / 8) * epoch_ns).div_ceil(1_000_000_000);
    n.clamp(1, u128::from(u64::MAX)) as u64
}

fn longest_first(lens: BTreeSet<u8>, family: &'static str) -> Result<Vec<u8>, CompileError> {
    let v: Vec<u8> = lens.into_iter().rev().collect();
    if v.len() > MAX_PREFIX_LENS {
        return Err(CompileError::TooManyLengths {
            family,
            count: v.len(),
            lens: v
                .iter()
                .map(|l| format!("/{l}"))
                .collect::<Vec<_>>()
                .join(" "),
            max: MAX_PREFIX_LENS,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_policy as policy;

    #[test]
    fn flood_thresholds_become_counts_per_flood_epoch() {
        // 2^30 ns = 1.073741824 s.
        assert_eq!(per_flood_epoch(2_000), 2_148);
        assert_eq!(per_flood_epoch(0), 1, "never 0: 0 turns the check off");
        assert_eq!(per_flood_epoch(u64::MAX), u32::MAX);
        // 1 Gbit/s = 125 MB/s; 100 Gbit/s no longer fits a u32.
        assert_eq!(bytes_per_flood_epoch(1_000_000_000), 134_217_728);
        assert_eq!(bytes_per_flood_epoch(100_000_000_000), 13_421_772_800);
    }

    const POLICY: &str = "
daemon:
  management: [198.18.3.254/32]
defaults:
  bandwidth: { egress: 20Mbit, ingress: 200Mbit }
tenants:
  - id: a
    addresses: [198.18.1.1/32, 198.18.8.0/24, 2001:db8:1::/64]
    macs: [02:00:00:00:00:01]
    smtp: allow
  - id: b
    addresses: [198.18.2.1/32]
    smtp: 10/min
    bandwidth: { egress: unlimited, burst: 1MiB }
";

    fn compiled(suspended: &[&str]) -> Compiled {
        let p = policy::parse(POLICY, "t.yaml").unwrap();
        let mut ix = TenantIndex::default();
        ix.sync(p.tenants.iter().map(|t| t.id.as_str())).unwrap();
        compile(&p, &ix, &suspended.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn bound_ports_are_keyed_by_ifindex_and_vlan_and_name_their_tenants_slot() {
        let text = "interfaces:\n  - {name: eth0, mode: gateway, tenant: a, vlans: [{id: 7, tenant: b}]}\n  - {name: eth1, mode: host}\ntenants:\n  - {id: a, addresses: [198.18.1.0/24]}\n  - {id: b, addresses: [198.18.2.0/24]}\n";
        let p = policy::parse(text, "t.yaml").unwrap();
        let mut ix = TenantIndex::default();
        ix.sync(p.tenants.iter().map(|t| t.id.as_str())).unwrap();
        let mut c = compile(&p, &ix, &HashSet::new()).unwrap();
        assert!(c.ports.is_empty(), "compile alone binds nothing");
        let ifindexes = HashMap::from([("eth0".to_string(), 42)]);
        bind_ports(&mut c, &p, &ix, &ifindexes).unwrap();
        let (a, b) = (ix.get("a").unwrap().0, ix.get("b").unwrap().0);
        assert_eq!(c.ports, HashMap::from([((42, 0), a), ((42, 7), b)]));
        assert_eq!(
            bind_ports(&mut c, &p, &ix, &HashMap::new()),
            Err(CompileError::NoInterface("eth0".into()))
        );
        // A policy put together without validation (a fleet's) that lost the tenant.
        let mut lost = p.clone();
        lost.tenants.retain(|t| t.id != "b");
        assert_eq!(
            bind_ports(&mut c, &lost, &ix, &ifindexes),
            Err(CompileError::PortTenant {
                interface: "eth0".into(),
                tenant: "b".into()
            })
        );
    }

    #[test]
    fn addresses_are_keyed_by_length_and_lengths_sorted_longest_first() {
        let c = compiled(&[]);
        assert_eq!(c.v4_lens, vec![32, 24]);
        assert_eq!(c.v6_lens, vec![64]);
        assert_eq!(c.v4[&(24, [198, 18, 8, 0])], 0);
        assert_eq!(c.v4[&(32, [198, 18, 2, 1])], 1);
        assert_eq!(c.macs[&[2, 0, 0, 0, 0, 1]], 0);
    }

    #[test]
    fn flags_and_rates_follow_the_policy_and_suspensions() {
        let c = compiled(&["b"]);
        let a = c.configs[&0];
        assert_eq!(a.flags, tenant_flags::MACS_BOUND | tenant_flags::SMTP_ALLOW);
        // Default bursts: egress 20 ms of the plan, at least 64 KiB (here the floor);
        // ingress 200 ms of it.
        assert_eq!(a.rate[0], Rate::from_bits_per_second(20_000_000, 64 * 1024));
        assert_eq!(
            a.rate[1],
            Rate::from_bits_per_second(200_000_000, 5_000_000)
        );
        // The shaped egress plan's class: the egress burst.
        assert_eq!(
            c.egress_plans[&0],
            crate::shape::ClassSpec {
                bps: 20_000_000,
                burst: 64 * 1024
            }
        );

        let b = c.configs[&1];
        assert_eq!(b.flags, tenant_flags::SUSPENDED | tenant_flags::SMTP_RATE);
        assert_eq!(b.rate[0], Rate::UNLIMITED);
        assert_eq!(
            b.smtp.burst_ns, 0,
            "a burst of one connection: no tolerance"
        );
        assert_eq!(
            b.smtp.cost_q10,
            6_000_000_000 * 1024,
            "one connection per 6 s"
        );
    }

    #[test]
    fn held_addresses_stay_under_their_tenant_and_a_held_id_absent_from_the_policy_gets_an_entry() {
        let p = policy::parse(POLICY, "t.yaml").unwrap();
        let mut ix = TenantIndex::default();
        ix.sync(["a", "b", "gone"]).unwrap();
        let held: BTreeMap<String, Vec<IpNet>> = [
            ("b".to_string(), vec!["198.18.9.9/32".parse().unwrap()]),
            ("gone".to_string(), vec!["198.18.7.0/24".parse().unwrap()]),
        ]
        .into();
        let suspended: HashSet<String> = ["b".to_string(), "gone".to_string()].into();
        let c = compile_with(&p, &ix, &suspended, &held).unwrap();
        let (b, gone) = (ix.get("b").unwrap().0, ix.get("gone").unwrap().0);
        assert_eq!(c.v4[&(32, [198, 18, 2, 1])], b, "its own address");
        assert_eq!(c.v4[&(32, [198, 18, 9, 9])], b, "its held address");
        assert_eq!(c.v4[&(24, [198, 18, 7, 0])], gone);
        assert_eq!(c.configs[&gone].flags, tenant_flags::SUSPENDED);
        assert_eq!(
            c.configs[&b].flags & tenant_flags::SUSPENDED,
            tenant_flags::SUSPENDED
        );
        assert_eq!(
            c.configs[&ix.get("a").unwrap().0].flags & tenant_flags::SUSPENDED,
            0
        );
        let err = compile_with(&p, &TenantIndex::default(), &suspended, &held).unwrap_err();
        assert!(matches!(err, CompileError::NoIndex(_)), "{err}");
    }

    #[test]
    fn more_than_eight_prefix_lengths_are_refused() {
        // Ten disjoint networks with ten different prefix lengths (/20 .. /29).
        let text = (0..10).fold(String::from("tenants:\n"), |acc, i| {
            acc + &format!(
                "  - id: t{i}\n    addresses: [198.18.{}.0/{}]\n",
                i * 16,
                20 + i
            )
        });
        let p = policy::parse(&text, "t.yaml").unwrap();
        let mut ix = TenantIndex::default();
        ix.sync(p.tenants.iter().map(|t| t.id.as_str())).unwrap();
        let err = compile(&p, &ix, &HashSet::new()).unwrap_err();
        assert!(
            matches!(err, CompileError::TooManyLengths { count: 10, .. }),
            "{err}"
        );
    }
}
