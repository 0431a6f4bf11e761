//! Suspension: a suspended tenant is cut off both ways, except management and ARP
//! and neighbour discovery as the protocols have them.

use std::net::Ipv6Addr;

use warden_tests::packets::{proto, solicited_node, tcp, Arp, Ext, Frame, L4, SRC_MAC};

use crate::{fixture_policy::*, frames::*, harness::*};

/// A suspended tenant's traffic is dropped in both directions (counted to it, reason
/// suspended), except with the management prefixes and except ARP and IPv6 neighbour
/// discovery, without which it could not reach its gateway (and so management); other
/// tenants talking to it are not affected in their own direction.
#[test]
#[rustfmt::skip]
fn suspended_tenants_are_cut_off_in_both_directions_except_management_arp_and_neighbour_discovery() {
    // Nobody's address, as a gateway's global address is.
    let gateway6 = Ipv6Addr::new(0x2001, 0xdb8, 0xfffd, 0, 0, 0, 0, 1);
    run_table(&[
        fx("IPv4 S -> outside", ip4(S, U, syn()), suspended(TENANT_S), NO_TENANT),
        fx("IPv4 outside -> S", ip4(U, S, syn()), SPOOFED, suspended(TENANT_S)),
        fx("IPv4 S -> A", ip4(S, A, udp()), suspended(TENANT_S), TA),
        fx("IPv4 A -> S", ip4(A, S, udp()), TA, suspended(TENANT_S)),
        fx("IPv6 S6 -> outside", ip6(S6, U6, syn()), suspended(TENANT_S), NO_TENANT),
        fx("IPv6 outside -> S6", ip6(U6, S6, syn()), SPOOFED, suspended(TENANT_S)),
        fx("IPv6 B6 -> S6", ip6(B6, S6, syn()), TB, suspended(TENANT_S)),
        fx("802.1Q IPv4 S -> outside", ip4(S, U, syn()).vlan(12), suspended(TENANT_S), NO_TENANT),
        fx("IPv4 S -> outside SMTP: suspension comes first", ip4(S, U, syn_to(25)), suspended(TENANT_S), NO_TENANT),
        fx("IPv4 S -> 198.18.253.255, just below the management /24", ip4(S, MGMT_BELOW, syn()), suspended(TENANT_S), NO_TENANT),
        fx("IPv6 S6 -> 2001:db8:ff::1, just past the management /48", ip6(S6, MGMT6_NEXT, syn()), suspended(TENANT_S), NO_TENANT),
        // ARP and neighbour discovery pass (counted to S): S must reach its gateway.
        fx("ARP who-has outside tell S", Frame::new(Arp::request(MAC_A, S, U)), TS, NO_TENANT),
        fx("ARP who-has S tell outside", Frame::new(Arp::request(MAC_A, U, S)), SPOOFED, TS),
        fx("ARP reply S is-at, to outside", Frame::new(Arp::reply(MAC_A, S, MAC_B, U)), TS, NO_TENANT),
        fx("gratuitous ARP for S", Frame::new(Arp::request(MAC_A, S, S)), TS, TS),
        fx("802.1Q ARP who-has outside tell S", Frame::new(Arp::request(MAC_A, S, U)).vlan(12), TS, NO_TENANT),
        fx("ND solicitation from S6 for the gateway (multicast)", nd(S6, solicited_node(gateway6), ns(gateway6, MAC_A)), TS, NO_TENANT),
        fx("ND solicitation from the gateway to S6 (unicast probe)", nd(gateway6, S6, ns(S6, MAC_B)), SPOOFED, TS),
        fx("ND solicitation from the gateway's link-local for S6", nd(LL6, solicited_node(S6), ns(S6, MAC_B)), NO_TENANT, NO_TENANT),
        // ND from a suspended tenant goes to the link only (a link-local or link-scope
        // multicast address, or management): on a bridge, a unicast ND to a global
        // address reaches whoever holds it, whatever it carries.
        fx("ND advertisement from S6 for S6, to the gateway's global address", nd(S6, gateway6, na(S6, MAC_A)), suspended(TENANT_S), NO_TENANT),
        fx("ND advertisement from S6 for S6, to the gateway's link-local address", nd(S6, LL6, na(S6, MAC_A)), TS, NO_TENANT),
        fx("ND advertisement from S6 for S6, to management", nd(S6, MGMT6, na(S6, MAC_A)), TS, NO_TENANT),
        fx("ND advertisement for S6 from a link-local source", nd(LL6, ALL_NODES6, na(S6, MAC_A)), TS, NO_TENANT),
        fx("ND advertisement from the gateway's link-local, to S6", nd(LL6, S6, na(LL6, MAC_B)), NO_TENANT, TS),
        // ICMPv6 that is not neighbour discovery is cut off like anything else.
        fx("IPv6 S6 -> gateway echo request", ip6(S6, gateway6, L4::echo_request(1, 1)), suspended(TENANT_S), NO_TENANT),
        fx("IPv6 outside -> S6 echo request", ip6(U6, S6, L4::echo_request(1, 1)), SPOOFED, suspended(TENANT_S)),
        // The management prefixes stay reachable.
        fx("IPv4 S -> management", ip4(S, MGMT, syn()), TS, NO_TENANT),
        fx("IPv4 management -> S", ip4(MGMT, S, syn()), SPOOFED, TS),
        fx("IPv6 S6 -> management", ip6(S6, MGMT6, syn()), TS, NO_TENANT),
        fx("IPv6 management -> S6", ip6(MGMT6, S6, L4::tcp(22, 40000, tcp::SYN | tcp::ACK)), SPOOFED, TS),
        fx("IPv4 S -> management SMTP: management is exempt from suspension, not from SMTP", ip4(S, MGMT, syn_to(25)), smtp(TENANT_S), NO_TENANT),
        fx("ARP who-has management tell S", Frame::new(Arp::request(MAC_A, S, MGMT)), TS, NO_TENANT),
        fx("ARP reply management is-at, to S", Frame::new(Arp::reply(MAC_B, MGMT, MAC_A, S)), SPOOFED, TS),
    ]);
}

/// Passing a suspended tenant's ARP and neighbour discovery does not pass its claims:
/// from S's bound MAC, a claim of another tenant's (or nobody's) address is still
/// spoof_arp, and S's address from another MAC is still spoof_mac.
#[test]
#[rustfmt::skip]
fn a_suspended_tenants_arp_and_neighbour_discovery_are_still_checked_for_spoofing() {
    let s_mac = |f: Frame| f.src_mac(MAC_S);
    run_table_with(&s_binds_a_mac(), &[
        fx("ARP who-has outside tell S from S's MAC", s_mac(Frame::new(Arp::request(MAC_S, S, U))), TS, NO_TENANT),
        fx("ND solicitation from S6 with S's MAC", s_mac(nd(S6, solicited_node(A6), ns(A6, MAC_S))), TS, NO_TENANT),
        fx("ND advertisement for S6 from S's MAC", s_mac(nd(LL6, ALL_NODES6, na(S6, MAC_S))), TS, NO_TENANT),
        fx("ARP reply from S's MAC claiming B's address", s_mac(Frame::new(Arp::reply(MAC_S, B, MAC_A, A))), spoof_arp(TENANT_S), TA),
        fx("gratuitous ARP from S's MAC for an address nobody owns", s_mac(Frame::new(Arp::request(MAC_S, U, U))), spoof_arp(TENANT_S), NO_TENANT),
        fx("ND advertisement from S's MAC for B6", s_mac(nd(LL6, ALL_NODES6, na(B6, MAC_S))), spoof_arp(TENANT_S), NO_TENANT),
        fx("ND solicitation from B6 with S's MAC", s_mac(nd(B6, solicited_node(A6), ns(A6, MAC_S))), spoof_arp(TENANT_S), NO_TENANT),
        fx("ARP claiming S's address from an unbound MAC", Frame::new(Arp::reply(SRC_MAC, S, MAC_A, A)), spoof_mac(TENANT_S), TA),
        fx("ND advertisement for S6 from an unbound MAC", nd(LL6, ALL_NODES6, na(S6, SRC_MAC)), spoof_mac(TENANT_S), NO_TENANT),
    ]);
}

/// Neighbour discovery never leaves the link: RFC 4861 (7.1.1, 7.1.2) has receivers
/// discard ND whose hop limit is not 255, so only on-link ND needs the suspension's
/// exemption. Any ICMPv6 of type 135 or 136 gets it today, whatever its hop limit or
/// destination, so a suspended tenant can still send routed traffic of any size
/// shaped as ND to anyone (and receive it).
#[test]
#[rustfmt::skip]
fn a_suspended_tenants_routed_icmpv6_shaped_as_neighbour_discovery_is_still_cut_off() {
    // NS header for U6, then 1,000 bytes that are no ND option.
    let mut ns_to_u6 = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns_to_u6.extend_from_slice(&U6.octets());
    ns_to_u6.extend_from_slice(&[0x5a; 1000]);
    let mut ns_to_s6 = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns_to_s6.extend_from_slice(&S6.octets());
    let icmp6 = |src, dst, hops, body: &[u8]| Frame::new(v6(src, dst).hop_limit(hops).proto(proto::ICMPV6).l4(L4::raw(body)));
    run_table(&[
        fx("NS-shaped ICMPv6, 1,000 bytes, S6 -> outside, hop limit 64", icmp6(S6, U6, 64, &ns_to_u6), suspended(TENANT_S), NO_TENANT),
        fx("NS-shaped ICMPv6 routed from outside to S6, hop limit 57", icmp6(U6, S6, 57, &ns_to_s6), SPOOFED, suspended(TENANT_S)),
        // On-link ND keeps passing.
        fx("ND solicitation from S6 for A6, hop limit 255", nd(S6, solicited_node(A6), ns(A6, MAC_A)), TS, NO_TENANT),
    ]);
}

/// A suspended tenant keeps ARP and ND only as the protocols have them: ND with hop
/// limit 255, code 0, right after the fixed header, well-formed options within 56
/// bytes, nothing after the packet, to a link-local or link-scope multicast address;
/// ARP requests and replies with nothing after them but padding. Anything shaped like
/// them that carries data, goes anywhere else or is of another kind is cut off like
/// everything else (the tunnel the exemption was). To the tenant, routers' RA and
/// redirects also pass.
#[test]
#[rustfmt::skip]
fn a_suspended_tenant_keeps_arp_and_neighbour_discovery_only_as_the_protocols_have_them() {
    let sn = solicited_node(A6);
    let slla = lladdr_opt(1, SRC_MAC);
    let nonce = [14, 1, 1, 2, 3, 4, 5, 6];
    let mut junk = slla.to_vec();
    junk.extend_from_slice(&[0x5a; 1000]);
    // 1,000 bytes in well-formed options (type 200, 8 units each): still too big.
    let mut big_options = Vec::new();
    for _ in 0..16 {
        big_options.extend_from_slice(&[200, 8]);
        big_options.extend_from_slice(&[0x5a; 62]);
    }
    let rs = [133, 0, 0, 0, 0, 0, 0, 0];
    let ra = [134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut arp_trailer = Frame::new(Arp::reply(SRC_MAC, S, MAC_B, U)).build();
    arp_trailer.extend_from_slice(&[0x5a; 100]);
    let mut nd_trailer = icmp6_nd(S6, sn, &ns_body(A6, &slla)).build();
    nd_trailer.extend_from_slice(&[0x5a; 100]);
    let mut arp_op3 = Frame::new(Arp::request(SRC_MAC, S, U)).build();
    arp_op3[21] = 3;
    run_table(&[
        fx("NS from S6 to a solicited-node address, SLLA option", icmp6_nd(S6, sn, &ns_body(A6, &slla)), TS, NO_TENANT),
        fx("NS from S6 with SLLA and nonce options", icmp6_nd(S6, sn, &ns_body(A6, &[slla, nonce].concat())), TS, NO_TENANT),
        fx("RS from S6 to all-routers", icmp6_nd(S6, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2), &rs), TS, NO_TENANT),
        fx("NS from S6 carrying 1,000 bytes after its option", icmp6_nd(S6, sn, &ns_body(A6, &junk)), suspended(TENANT_S), NO_TENANT),
        fx("NS from S6 with 1,024 bytes of well-formed options", icmp6_nd(S6, sn, &ns_body(A6, &big_options)), suspended(TENANT_S), NO_TENANT),
        fx("NS from S6 to an outside global address", icmp6_nd(S6, U6, &ns_body(U6, &slla)), suspended(TENANT_S), NO_TENANT),
        fx("NS from S6 with code 1", icmp6_nd(S6, sn, &{ let mut b = ns_body(A6, &slla); b[1] = 1; b }), suspended(TENANT_S), NO_TENANT),
        fx("NS from S6 with an option of length 0", icmp6_nd(S6, sn, &ns_body(A6, &[1, 0, 0, 0, 0, 0, 0, 0])), suspended(TENANT_S), NO_TENANT),
        fx("NS from S6 behind a destination options header", Frame::new(v6(S6, sn).hop_limit(255).ext(Ext::DEST_OPTS).proto(proto::ICMPV6).l4(L4::raw(&ns_body(A6, &slla)))), suspended(TENANT_S), NO_TENANT),
        fx_bytes("NS from S6 with 100 bytes after the IPv6 packet", nd_trailer, suspended(TENANT_S), NO_TENANT),
        fx("RA from S6 (a tenant is no router)", icmp6_nd(S6, ALL_NODES6, &ra), suspended(TENANT_S), NO_TENANT),
        fx("RA from the gateway's link-local to S6", icmp6_nd(LL6, S6, &ra), SPOOFED, TS),
        fx("echo request from S6 to a link-local address", Frame::new(v6(S6, LL6).l4(L4::echo_request(1, 1))), suspended(TENANT_S), NO_TENANT),
        fx_bytes("ARP reply from S with 100 bytes after it", arp_trailer, suspended(TENANT_S), NO_TENANT),
        fx_bytes("ARP from S with operation 3", arp_op3, suspended(TENANT_S), NO_TENANT),
        fx("QinQ ARP who-has outside tell S", Frame::new(Arp::request(SRC_MAC, S, U)).vlan_ad(10).vlan(20), TS, NO_TENANT),
        fx("QinQ IPv4 S -> outside", ip4(S, U, udp()).vlan_ad(10).vlan(20), suspended(TENANT_S), NO_TENANT),
        fx("QinQ NS from S6 carrying 1,000 bytes", icmp6_nd(S6, sn, &ns_body(A6, &junk)).vlan_ad(10).vlan(20), suspended(TENANT_S), NO_TENANT),
    ]);
}
