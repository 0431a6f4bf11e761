//! The tenants, addresses and policy every fixture runs under, and how that policy is
//! written into a generation of the maps (as the daemon writes one).

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::{ensure, Context as _, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        MapData,
    },
    Ebpf,
};
use warden::dataplane::{write_generation, Compiled};
use warden_common::{map, tenant_flags, Rate, TenantConfig, MAX_PREFIX_LENS};
use warden_tests::packets::Mac;

// ---------------------------------------------------------------------------------
// Tenants and addresses used by the fixtures.
//
// Indices are deliberately not 0, 1, 2 so that an index computed wrongly (swapped
// with the direction, off by one) lands in a slot the snapshot sees and the
// fixture fails.

/// Tenant A owns 198.18.1.0/24 and 2001:db8:1::/48. Default settings: SMTP blocked.
pub(crate) const TENANT_A: u32 = 3;
/// Tenant M binds MACs ([`MAC_M`], [`MAC_M2`]) and owns 198.18.4.0/24 and 2001:db8:4::/64.
pub(crate) const TENANT_M: u32 = 5;
/// Tenant H owns hosts inside others' prefixes: 198.18.1.77/32 and 2001:db8:1::77/128
/// (inside A's /24 and /48) and 2001:db8:2::77/128 (inside B's /64).
pub(crate) const TENANT_H: u32 = 7;
/// Tenant S is suspended; owns 198.18.5.0/24 and 2001:db8:5::/64.
pub(crate) const TENANT_S: u32 = 9;
/// Tenant MAIL may send SMTP (`SMTP_ALLOW`); owns 198.18.6.0/24 and 2001:db8:6::/64.
pub(crate) const TENANT_MAIL: u32 = 10;
/// Tenant RATE sends SMTP under a connection rate ([`SMTP_ONE_PER_SECOND`]); owns
/// 198.18.7.0/24 and 2001:db8:7::/64.
pub(crate) const TENANT_RATE: u32 = 11;
/// Tenant B owns 198.18.2.0/24 and 2001:db8:2::/64.
pub(crate) const TENANT_B: u32 = 12;
/// Tenant P owns 198.18.8.0/24; unlimited unless a bandwidth test gives it a plan.
pub(crate) const TENANT_P: u32 = 14;
/// Tenant indices 0..SNAPSHOT_TENANTS are compared before and after every run.
pub(crate) const SNAPSHOT_TENANTS: u32 = 16;

pub(crate) const A_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 0);
pub(crate) const B_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 0);
pub(crate) const M_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 0);
pub(crate) const S_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 0);
pub(crate) const MAIL_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 0);
pub(crate) const RATE_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 0);
pub(crate) const P_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 0);
/// Management prefix: 198.18.254.0/24.
pub(crate) const MGMT_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 254, 0);

pub(crate) const A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub(crate) const H: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 77);
pub(crate) const B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 20);
pub(crate) const M: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 40);
pub(crate) const S: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 50);
pub(crate) const MAIL: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 60);
pub(crate) const RATE: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 70);
pub(crate) const P: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 80);
pub(crate) const MGMT: Ipv4Addr = Ipv4Addr::new(198, 18, 254, 1);
/// Last address before the management /24.
pub(crate) const MGMT_BELOW: Ipv4Addr = Ipv4Addr::new(198, 18, 253, 255);
/// Last address of B's /24.
pub(crate) const B_LAST: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 255);
/// First address after B's /24: nobody's.
pub(crate) const U_NEXT: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 0);
pub(crate) const U: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 7);

pub(crate) const A6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0);
pub(crate) const B6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0);
pub(crate) const M6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 0);
pub(crate) const S6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0);
pub(crate) const MAIL6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0);
pub(crate) const RATE6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 0);
/// Management prefix: 2001:db8:fe::/48.
pub(crate) const MGMT6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 0);

pub(crate) const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
pub(crate) const H6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x77);
/// H's /128 inside B's /64.
pub(crate) const HB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x77);
pub(crate) const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20);
pub(crate) const M6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 4, 0, 0, 0, 0, 0x40);
pub(crate) const S6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x50);
pub(crate) const MAIL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 0x60);
pub(crate) const MGMT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 1);
/// Just after the management /48.
pub(crate) const MGMT6_NEXT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
/// In B's /48 but outside B's /64: nobody's.
pub(crate) const U6_NEXT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 1, 0, 0, 0, 0x20);
pub(crate) const U6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// Link-local addresses (fe80::/10) are nobody's by definition.
pub(crate) const LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub(crate) const LL6_M: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x4d);
/// The last /16 of fe80::/10.
pub(crate) const LL6_LAST: Ipv6Addr = Ipv6Addr::new(0xfebf, 0xffff, 0, 0, 0, 0, 0, 1);
/// Just past fe80::/10 (deprecated site-local): an ordinary address nobody owns.
pub(crate) const SITE6: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 1);
pub(crate) const ALL_NODES6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub(crate) const MLDV2_ROUTERS6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

pub(crate) const MAC_A: Mac = [0x02, 0xaa, 0, 0, 0, 0x0a];
pub(crate) const MAC_B: Mac = [0x02, 0xbb, 0, 0, 0, 0x0b];
/// Bound to tenant M.
pub(crate) const MAC_M: Mac = [0x02, 0x4d, 0, 0, 0, 0x01];
/// Also bound to tenant M.
pub(crate) const MAC_M2: Mac = [0x02, 0x4d, 0, 0, 0, 0x02];

/// One new SMTP connection per second, burst 1. `burst_ns` is 0 because the GCRA
/// admits `burst_ns / cost + 1` back-to-back events (the first at TAT = now).
pub(crate) const SMTP_ONE_PER_SECOND: Rate = Rate {
    cost_q10: 1_000_000_000 * 1024,
    burst_ns: 0,
};

// ---------------------------------------------------------------------------------
// The fixture policy and how it is written into a generation.

/// One tenant of a fixture policy, as `compile` would produce it.
#[derive(Clone, Debug)]
pub(crate) struct FixtureTenant {
    pub(crate) index: u32,
    pub(crate) v4: Vec<(Ipv4Addr, u8)>,
    pub(crate) v6: Vec<(Ipv6Addr, u8)>,
    pub(crate) macs: Vec<Mac>,
    /// `tenant_flags` bits; `MACS_BOUND` is added when `macs` is not empty.
    pub(crate) flags: u32,
    pub(crate) rate: [Rate; 2],
    pub(crate) smtp: Rate,
    /// Flood thresholds per flood epoch: (out SYN, out packets, in packets, in bytes);
    /// 0 = not counted.
    pub(crate) flood: (u32, u32, u32, u64),
    /// `TenantConfig::shape_class`: the HTB class its egress goes to; 0 = policed.
    pub(crate) shape_class: u32,
}

impl FixtureTenant {
    pub(crate) fn new(index: u32) -> Self {
        Self {
            index,
            v4: Vec::new(),
            v6: Vec::new(),
            macs: Vec::new(),
            flags: 0,
            rate: [Rate::UNLIMITED; 2],
            smtp: Rate::UNLIMITED,
            flood: (0, 0, 0, 0),
            shape_class: 0,
        }
    }

    pub(crate) fn v4(mut self, addr: Ipv4Addr, plen: u8) -> Self {
        self.v4.push((addr, plen));
        self
    }

    pub(crate) fn v6(mut self, addr: Ipv6Addr, plen: u8) -> Self {
        self.v6.push((addr, plen));
        self
    }

    pub(crate) fn mac(mut self, mac: Mac) -> Self {
        self.macs.push(mac);
        self
    }

    pub(crate) fn flags(mut self, flags: u32) -> Self {
        self.flags |= flags;
        self
    }

    pub(crate) fn smtp(mut self, rate: Rate) -> Self {
        self.smtp = rate;
        self
    }

    /// The settings as the daemon writes them (`compile`: bound MACs set `MACS_BOUND`).
    pub(crate) fn config(&self) -> TenantConfig {
        let bound = if self.macs.is_empty() {
            0
        } else {
            tenant_flags::MACS_BOUND
        };
        TenantConfig {
            flags: self.flags | bound,
            shape_class: self.shape_class,
            rate: self.rate,
            smtp: self.smtp,
            flood_out_syn: self.flood.0,
            flood_out_pkts: self.flood.1,
            flood_in_pkts: self.flood.2,
            _pad2: 0,
            flood_in_bytes: self.flood.3,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FixturePolicy {
    pub(crate) tenants: Vec<FixtureTenant>,
    pub(crate) management_v4: Vec<(Ipv4Addr, u8)>,
    pub(crate) management_v6: Vec<(Ipv6Addr, u8)>,
    /// Bound ports: (ifindex, outer VLAN id or 0 for the interface, tenant index).
    pub(crate) ports: Vec<(u32, u16, u32)>,
}

impl FixturePolicy {
    pub(crate) fn tenant_mut(&mut self, index: u32) -> &mut FixtureTenant {
        self.tenants
            .iter_mut()
            .find(|t| t.index == index)
            .expect("the tenant is in the policy")
    }

    pub(crate) fn without(mut self, index: u32) -> Self {
        self.tenants.retain(|t| t.index != index);
        self
    }
}

/// The policy every table runs under. IPv4 lengths /32 and /24, IPv6 /128, /64 and /48.
pub(crate) fn standard_policy() -> FixturePolicy {
    FixturePolicy {
        tenants: vec![
            FixtureTenant::new(TENANT_A).v4(A_NET, 24).v6(A6_NET, 48),
            FixtureTenant::new(TENANT_H)
                .v4(H, 32)
                .v6(H6, 128)
                .v6(HB6, 128),
            FixtureTenant::new(TENANT_B).v4(B_NET, 24).v6(B6_NET, 64),
            FixtureTenant::new(TENANT_M)
                .v4(M_NET, 24)
                .v6(M6_NET, 64)
                .mac(MAC_M)
                .mac(MAC_M2),
            FixtureTenant::new(TENANT_S)
                .v4(S_NET, 24)
                .v6(S6_NET, 64)
                .flags(tenant_flags::SUSPENDED),
            FixtureTenant::new(TENANT_MAIL)
                .v4(MAIL_NET, 24)
                .v6(MAIL6_NET, 64)
                .flags(tenant_flags::SMTP_ALLOW),
            FixtureTenant::new(TENANT_RATE)
                .v4(RATE_NET, 24)
                .v6(RATE6_NET, 64)
                .flags(tenant_flags::SMTP_RATE)
                .smtp(SMTP_ONE_PER_SECOND),
            FixtureTenant::new(TENANT_P).v4(P_NET, 24),
        ],
        management_v4: vec![(MGMT_NET, 24)],
        management_v6: vec![(MGMT6_NET, 48)],
        ports: Vec::new(),
    }
}

pub(crate) fn mask4(addr: Ipv4Addr, plen: u8) -> [u8; 4] {
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    (u32::from(addr) & mask).to_be_bytes()
}

pub(crate) fn mask6(addr: Ipv6Addr, plen: u8) -> [u8; 16] {
    let mask = u128::MAX.checked_shl(128 - u32::from(plen)).unwrap_or(0);
    (u128::from(addr) & mask).to_be_bytes()
}

/// Writes `policy` as generation `gen`, entry for entry as `Dataplane::apply` does:
/// addresses keyed by (generation, prefix length, address with host bits zero), MACs
/// by (generation, MAC), settings at `gen * MAX_TENANTS + tenant`, GEN_CONFIG\[gen\]
/// with the prefix lengths in use longest first (and `ANY_MACS` when some tenant binds
/// MACs, `ANY_PORTS` when a port is bound), and the management prefixes, which are not generational. ACTIVE is not
/// touched: the flip is [`TestDataplane::set_active`]. Only adds: tests write a
/// generation once.
pub(crate) fn write_fixture_generation(
    ebpf: &mut Ebpf,
    gen: u32,
    policy: &FixturePolicy,
) -> Result<()> {
    let mut c = Compiled::default();
    let (mut lens4, mut lens6) = (BTreeSet::new(), BTreeSet::new());
    for t in &policy.tenants {
        for &(addr, plen) in &t.v4 {
            lens4.insert(plen);
            c.v4.insert((plen, mask4(addr, plen)), t.index);
        }
        for &(addr, plen) in &t.v6 {
            lens6.insert(plen);
            c.v6.insert((plen, mask6(addr, plen)), t.index);
        }
        for &mac in &t.macs {
            c.macs.insert(mac, t.index);
        }
        c.configs.insert(t.index, t.config());
    }
    for &(ifindex, vlan, tenant) in &policy.ports {
        c.ports.insert((ifindex, vlan), tenant);
    }
    ensure!(
        lens4.len() <= MAX_PREFIX_LENS && lens6.len() <= MAX_PREFIX_LENS,
        "too many prefix lengths"
    );
    c.v4_lens = lens4.into_iter().rev().collect();
    c.v6_lens = lens6.into_iter().rev().collect();
    // The daemon's own placement and GEN_CONFIG, written as `Dataplane::apply` would.
    write_generation(ebpf, gen, &c)?;
    {
        let m = ebpf
            .map_mut(map::MANAGEMENT_V4)
            .context("no MANAGEMENT_V4")?;
        let mut t: LpmTrie<&mut MapData, [u8; 4], u8> = LpmTrie::try_from(m)?;
        for &(addr, plen) in &policy.management_v4 {
            t.insert(&Key::new(plen.into(), mask4(addr, plen)), 1u8, 0)?;
        }
    }
    let m = ebpf
        .map_mut(map::MANAGEMENT_V6)
        .context("no MANAGEMENT_V6")?;
    let mut t: LpmTrie<&mut MapData, [u8; 16], u8> = LpmTrie::try_from(m)?;
    for &(addr, plen) in &policy.management_v6 {
        t.insert(&Key::new(plen.into(), mask6(addr, plen)), 1u8, 0)?;
    }
    Ok(())
}

/// Bound to tenant S in [`s_binds_a_mac`].
pub(crate) const MAC_S: Mac = [0x02, 0x53, 0, 0, 0, 0x01];

/// The standard policy with suspended S binding [`MAC_S`].
pub(crate) fn s_binds_a_mac() -> FixturePolicy {
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_S).macs.push(MAC_S);
    policy
}
