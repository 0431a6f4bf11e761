//! Port bindings (`interfaces[].tenant`, `interfaces[].vlans`): everything from a bound
//! port is its tenant's, spoofed or not. BPF_PROG_TEST_RUN runs on the loopback
//! device, so the port bound here is `lo` (and VLANs on it). The to-tenant direction
//! never looks at the port.

use std::net::Ipv4Addr;

use warden_tests::packets::{ethertype, Arp, Frame, SRC_MAC};

use crate::{fixture_policy::*, frames::*, harness::*};

/// The standard policy with `ports` bound (ifindex, outer VLAN id or 0, tenant).
fn bound(ports: &[(u32, u16, u32)]) -> FixturePolicy {
    let mut policy = standard_policy();
    policy.ports = ports.to_vec();
    policy
}

fn lo() -> u32 {
    nix_ifindex("lo")
}

/// `lo` bound to A (no MACs bound): a source that is not A's, nobody's or another
/// tenant's, IPv4 or IPv6, is A's spoof_ip, never SPOOFED; a claim for it A's
/// spoof_arp; another tenant's MAC A's spoof_mac; unowned sources (DHCP, DAD, ND
/// link-local) and what nothing can look into are A's.
#[test]
#[rustfmt::skip]
fn frames_from_a_bound_port_with_foreign_sources_are_the_port_tenants_spoofs() {
    let zero = Ipv4Addr::UNSPECIFIED;
    let fixtures = [
        fx("IPv4 from A's address", ip4(A, U, udp()), TA, NO_TENANT),
        fx("IPv4 from an address nobody owns", ip4(U, B, udp()), spoof_ip(TENANT_A), TB),
        fx("IPv4 from B's address", ip4(B, U, udp()), spoof_ip(TENANT_A), NO_TENANT),
        fx("IPv4 from M's address, unbound MAC", ip4(M, U, syn()), spoof_ip(TENANT_A), NO_TENANT),
        fx("IPv4 from a management address", ip4(MGMT, B, syn()), spoof_ip(TENANT_A), TB),
        fx("IPv4 from M's MAC with A's address", ip4(A, U, syn()).src_mac(MAC_M), spoof_mac(TENANT_A), NO_TENANT),
        fx("IPv4 DHCP discover from 0.0.0.0", ip4(zero, Ipv4Addr::BROADCAST, udp()), TA, NO_TENANT),
        fx("IPv6 from A6", ip6(A6, U6, udp()), TA, NO_TENANT),
        fx("IPv6 from an address nobody owns", ip6(U6, B6, udp()), spoof_ip(TENANT_A), TB),
        fx("IPv6 from B6", ip6(B6, U6, syn()), spoof_ip(TENANT_A), NO_TENANT),
        fx("IPv6 from a link-local address to all nodes", ip6(LL6, ALL_NODES6, udp()), TA, NO_TENANT),
        fx("ARP reply claiming B's address", Frame::new(Arp::reply(SRC_MAC, B, MAC_B, B)), spoof_arp(TENANT_A), TB),
        fx("ARP request claiming an address nobody owns", Frame::new(Arp::request(SRC_MAC, U, A)), spoof_arp(TENANT_A), TA),
        fx("ARP request from A's own address", Frame::new(Arp::request(SRC_MAC, A, B)), TA, TB),
        fx("ARP probe from 0.0.0.0", Frame::new(Arp::request(SRC_MAC, zero, A)), TA, TA),
        fx("ND advertisement for an address nobody owns", nd(LL6, ALL_NODES6, na(U6, SRC_MAC)), spoof_arp(TENANT_A), NO_TENANT),
        fx("ND advertisement for B6", nd(LL6, ALL_NODES6, na(B6, SRC_MAC)), spoof_arp(TENANT_A), NO_TENANT),
        fx("ND advertisement for A6", nd(LL6, ALL_NODES6, na(A6, SRC_MAC)), TA, NO_TENANT),
        fx("ethertype 0x88b5 (unparsed)", Frame::raw(0x88b5, &[0; 46]), unparsed(TENANT_A), NO_TENANT),
        fx("802.1Q IPv4 from an address nobody owns", ip4(U, B, udp()).vlan(30), spoof_ip(TENANT_A), TB),
    ];
    run_table_with(&bound(&[(lo(), 0, TENANT_A)]), &fixtures);
}

/// A port bound to M, which binds MACs: its MACs still apply (a frame from another
/// MAC is M's spoof_mac, a claim must name the frame's MAC), and its own address from
/// its own MAC is M's.
#[test]
#[rustfmt::skip]
fn a_port_bound_to_a_tenant_with_macs_still_checks_its_macs() {
    let m = |f: Frame| f.src_mac(MAC_M);
    let fixtures = [
        fx("IPv4 from M's MAC with M's address", m(ip4(M, U, udp())), TM, NO_TENANT),
        fx("IPv4 from M's MAC with an address nobody owns", m(ip4(U, A, udp())), spoof_ip(TENANT_M), TA),
        fx("IPv4 from an unbound MAC with M's address", ip4(M, U, udp()), spoof_mac(TENANT_M), NO_TENANT),
        fx("IPv4 from an unbound MAC with an address nobody owns", ip4(U, A, udp()), spoof_mac(TENANT_M), TA),
        fx("ARP from M's MAC naming another MAC in the claim", m(Frame::new(Arp::request(MAC_A, M, A))), spoof_arp(TENANT_M), TA),
        fx("ARP from M's MAC for B's address", m(Frame::new(Arp::request(MAC_M, B, A))), spoof_arp(TENANT_M), TA),
    ];
    run_table_with(&bound(&[(lo(), 0, TENANT_M)]), &fixtures);
}

/// Gateway mode: VLAN 100 on `lo` is B's, the rest of the port A's. The outer tag
/// decides (QinQ), an unlisted VLAN falls back to the interface's tenant; with no
/// interface tenant, frames of other VLANs and untagged ones are attributed as
/// without a binding.
#[test]
#[rustfmt::skip]
fn a_bound_vlan_is_its_tenants_and_other_frames_the_interfaces() {
    let fixtures = [
        fx("VLAN 100, IPv4 from B's address", ip4(B, U, udp()).vlan(100), TB, NO_TENANT),
        fx("VLAN 100, IPv4 from A's address", ip4(A, U, udp()).vlan(100), spoof_ip(TENANT_B), NO_TENANT),
        fx("VLAN 100, IPv6 from an address nobody owns", ip6(U6, A6, udp()).vlan(100), spoof_ip(TENANT_B), TA),
        fx("VLAN 100, ARP claiming A's address", Frame::new(Arp::request(SRC_MAC, A, B)).vlan(100), spoof_arp(TENANT_B), TB),
        fx("QinQ outer 100 inner 7, IPv4 from B's address", ip4(B, U, udp()).vlan_ad(100).vlan(7), TB, NO_TENANT),
        fx("QinQ outer 7 inner 100, IPv4 from B's address", ip4(B, U, udp()).vlan_ad(7).vlan(100), spoof_ip(TENANT_A), NO_TENANT),
        fx("VLAN 200 (unlisted), IPv4 from B's address", ip4(B, U, udp()).vlan(200), spoof_ip(TENANT_A), NO_TENANT),
        fx("untagged IPv4 from A's address", ip4(A, U, udp()), TA, NO_TENANT),
        fx("untagged IPv4 from an address nobody owns", ip4(U, A, udp()), spoof_ip(TENANT_A), TA),
    ];
    run_table_with(&bound(&[(lo(), 100, TENANT_B), (lo(), 0, TENANT_A)]), &fixtures);

    let only_vlan = [
        fx("VLAN 100, IPv4 from an address nobody owns", ip4(U, A, udp()).vlan(100), spoof_ip(TENANT_B), TA),
        fx("VLAN 200, IPv4 from an address nobody owns", ip4(U, A, udp()).vlan(200), SPOOFED, TA),
        fx("untagged IPv4 from an address nobody owns", ip4(U, A, udp()), SPOOFED, TA),
        fx("untagged IPv4 from A's address", ip4(A, U, udp()), TA, NO_TENANT),
    ];
    run_table_with(&bound(&[(lo(), 100, TENANT_B)]), &only_vlan);
}

/// A policy that binds some other interface (so the generation looks ports up) leaves
/// frames on an unbound one attributed exactly as without bindings.
#[test]
#[rustfmt::skip]
fn frames_from_an_unbound_port_are_attributed_as_without_bindings() {
    let other = lo() + 1_000;
    let fixtures = [
        fx("IPv4 from an unbound MAC with an address nobody owns", ip4(U, A, udp()), SPOOFED, TA),
        fx("IPv6 from an unbound MAC with an address nobody owns", ip6(U6, B6, syn()), SPOOFED, TB),
        fx("IPv4 from an unbound MAC with M's address", ip4(M, U, syn()), spoof_mac(TENANT_M), NO_TENANT),
        fx("IPv4 from B's address", ip4(B, U, syn()), TB, NO_TENANT),
        fx("ND advertisement for an address nobody owns", nd(LL6, ALL_NODES6, na(U6, SRC_MAC)), SPOOFED, NO_TENANT),
        fx("ethertype 0x88b5 (unparsed)", Frame::raw(0x88b5, &[0; 46]), UNPARSED, NO_TENANT),
        fx("802.1Q tag then LLDP", Frame::raw(ethertype::LLDP, &LLDP).vlan(100), UNPARSED, NO_TENANT),
    ];
    run_table_with(&bound(&[(other, 0, TENANT_A), (other, 100, TENANT_B)]), &fixtures);
}
