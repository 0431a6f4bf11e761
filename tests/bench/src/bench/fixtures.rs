//! The policy fixtures: the address plan (tenants, wide tenants, remotes), the policy
//! files the micro cases' daemon runs on, and the one write of traffic state into the
//! daemon's maps these need (a plan's bucket, as traffic leaves it).

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, MapData},
    Ebpf,
};
use warden_common::{bucket, map, Bucket};
use warden_tests::packets::Mac;

use super::{
    cases::Policy, ANSWER_BASE, BLACKHOLED_TENANT, EXHAUSTED_TENANT, LOADER_FIRST, LOADER_STRIDE,
    MANAGEMENT_V4, MANAGEMENT_V6, POLICED_TENANT, SHAPED_TENANT, TENANTS, TRACKED_BASE, WIDE,
};

/// Every detector only observes, and never escalates: no detection the cases' traffic
/// sets off (inbound floods at one address, spoofed sources, drops over a plan, first
/// contacts to thousands of remotes) may change a case's path. Thresholds stay the
/// defaults, so every tenant's flood counting is a production node's.
const OBSERVE_ALL: &str = "defaults:\n  detectors:\n";
const KINDS: [&str; 9] = [
    "scan",
    "flood_out",
    "flood_in",
    "spam",
    "proxy",
    "spoof_ip",
    "spoof_arp",
    "spoof_mac",
    "bandwidth",
];
/// The policed plan: 400 Gbit/s with a 62.5 GB burst (5 s of the plan): a 64-byte frame
/// costs about 1 ns of bucket time, so every packet of a run conforms whatever
/// `bpf_ktime_get_ns` does during it (where that clock is coarse it has been seen to
/// step by whole 4 ms ticks and to stand still through a million-repetition run).
const HUGE_PLAN: &str =
    "    bandwidth:\n      egress: 400Gbit\n      ingress: 400Gbit\n      burst: 62500MB\n";
/// 8 kbit/s, 1,000-byte burst: the exhausted plan (its bucket set an hour ahead) and the
/// shaped one.
const SMALL_PLAN: &str =
    "    bandwidth:\n      egress: 8kbit\n      ingress: 8kbit\n      burst: 1000B\n";
/// The blackholed tenant's detector: the default answer to an inbound flood, a
/// blackhole, made to outlast the bench.
const BLACKHOLES: &str = "    detectors:\n      flood_in:\n        action: block\n        ceiling: block\n        blackhole_for: 6h\n";

/// Tenant `i`'s id: zero-padded, so the daemon's slots (given in id order to a fresh
/// daemon) are the tenants' numbers; checked through the API.
pub(super) fn tenant_id(i: u32) -> String {
    format!("t{i:06}")
}

/// The `daemon.management` key: the management prefixes, so the suspended case pays
/// for a real trie miss.
pub(super) fn management_yaml() -> String {
    let mut out = String::from("  management:\n");
    for net in MANAGEMENT_V4 {
        let _ = writeln!(out, "    - {net}/24");
    }
    let _ = writeln!(out, "    - {MANAGEMENT_V6}/48");
    out
}

/// The policy file of `policy`: `header` (the `daemon` and `interfaces` sections), every
/// detector observing, and [`TENANTS`] tenants, each an IPv4 and an IPv6 prefix and (but
/// in the no-MACs policy) a bound MAC; the policed, exhausted and shaped tenants have
/// their plans, the blackholed one blackholes inbound floods.
pub(super) fn policy_yaml(header: &str, policy: Policy) -> String {
    let mut out = String::with_capacity(120 * TENANTS as usize);
    out.push_str(header);
    out.push_str(OBSERVE_ALL);
    for kind in KINDS {
        let _ = write!(
            out,
            "    {kind}:\n      action: observe\n      ceiling: observe\n"
        );
    }
    out.push_str("tenants:\n");
    for i in 0..TENANTS {
        let ((a4, l4), (a6, l6)) = policy.prefixes(i);
        let _ = write!(
            out,
            "  - id: {}\n    addresses: [{a4}/{l4}, {a6}/{l6}]\n",
            tenant_id(i)
        );
        if policy.binds_macs() {
            let m = tenant_mac(i);
            let _ = writeln!(
                out,
                "    macs: [\"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"]",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
        }
        match i {
            POLICED_TENANT => out.push_str(HUGE_PLAN),
            EXHAUSTED_TENANT | SHAPED_TENANT => out.push_str(SMALL_PLAN),
            BLACKHOLED_TENANT => out.push_str(BLACKHOLES),
            _ => {}
        }
    }
    out
}

/// IPv4 /32 of tenant `i`: 198.18.0.0 + i (198.18.0.0 - 198.19.134.159).
pub(super) fn host_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// IPv4 /24 of a wide tenant `i` (generation 1): 198.19.(192 + i - first wide).0/24.
pub(super) fn wide_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 192 + (i - (TENANTS - WIDE)) as u8, 0)
}

/// The IPv6 address tenant `i` sends from (in its /64).
pub(super) fn host_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net_v6(i)) + 0x10)
}

/// Tracked remote `k` (`k >= TRACKED_REMOTES`: a fresh one, never contacted).
pub(super) fn tracked_remote(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(TRACKED_BASE) + u128::from(k))
}

/// Detection-event remote `k`.
pub(super) fn answer_remote(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(ANSWER_BASE) + u128::from(k))
}

/// The tenant that contacted tracked remotes `j * PER_LOADER..(j + 1) * PER_LOADER`.
pub(super) fn loader_tenant(j: u32) -> u32 {
    LOADER_FIRST + j * LOADER_STRIDE
}

#[cfg(test)]
pub(super) fn is_loader(i: u32) -> bool {
    i >= LOADER_FIRST
        && (i - LOADER_FIRST).is_multiple_of(LOADER_STRIDE)
        && i < loader_tenant(super::LOADERS)
}

/// IPv6 /64 of tenant `i`: 2001:db8:0:i::/64.
pub(super) fn net_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0)
}

/// IPv6 /48 of a wide tenant `i` (generation 1): 2001:db8:1xx::/48.
pub(super) fn wide_v6(i: u32) -> Ipv6Addr {
    let j = (i - (TENANTS - WIDE)) as u16;
    Ipv6Addr::new(0x2001, 0xdb8, 0x100 + j, 0, 0, 0, 0, 0)
}

/// The MAC bound to tenant `i`.
pub(super) fn tenant_mac(i: u32) -> Mac {
    let [_, a, b, c] = i.to_be_bytes();
    [0x02, 0x57, 0, a, b, c]
}

pub(super) fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("no {name} map in the object"))
}

/// Sets `tenant`'s bucket `which` to theoretical arrival time `tat`, as its traffic
/// leaves it (an hour ahead of the clock: a plan exhausted).
pub(super) fn set_bucket(ebpf: &mut Ebpf, tenant: u32, which: u32, tat: u64) -> Result<()> {
    let mut m: Array<&mut MapData, Bucket> = Array::try_from(map_mut(ebpf, map::BUCKETS)?)?;
    m.set(bucket::index(tenant, which), Bucket { tat }, 0)
        .context("writing BUCKETS")
}
