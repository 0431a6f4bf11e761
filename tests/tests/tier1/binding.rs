//! Binding: from-tenant senders must use their own addresses (and MACs); ARP and ND
//! claims must name addresses the sender owns and the MAC it is bound to.

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_tests::packets::{ethertype, proto, solicited_node, Arp, Frame, L4, SRC_MAC};

use crate::{fixture_policy::*, frames::*, harness::*};

/// Tenant M binds MAC_M and MAC_M2: a frame from those MACs is M's and must carry M's
/// addresses (or an unowned one); M's addresses from any other MAC are spoof_mac.
/// Tenants without MACs are identified by source address; a source that is nobody's
/// is a spoofed sender (GLOBAL SPOOFED) unless it is unowned by definition (0.0.0.0,
/// ::, fe80::/10). The to-tenant direction never looks at the sender.
#[test]
#[rustfmt::skip]
fn from_tenant_frames_with_foreign_sources_are_dropped_by_the_reason_that_fits() {
    let m = |f: Frame| f.src_mac(MAC_M);
    run_table(&[
        // Bound MAC, own address: M's.
        fx("IPv4 from M's MAC with M's address", m(ip4(M, U, syn())), TM, NO_TENANT),
        fx("IPv4 from M's second MAC with M's address", m(ip4(M, B, syn())).src_mac(MAC_M2), TM, TB),
        fx("IPv6 from M's MAC with M6", m(ip6(M6, U6, syn())), TM, NO_TENANT),
        fx("802.1Q IPv4 from M's MAC with M's address", m(ip4(M, A, udp())).vlan(30), TM, TA),
        // Bound MAC, someone else's or nobody's address: spoof_ip of M.
        fx("IPv4 from M's MAC with B's address", m(ip4(B, U, syn())), spoof_ip(TENANT_M), NO_TENANT),
        fx("IPv4 from M's MAC with H's /32 inside A's /24", m(ip4(H, U, syn())), spoof_ip(TENANT_M), NO_TENANT),
        fx("IPv4 from M's MAC with an address nobody owns", m(ip4(U, A, syn())), spoof_ip(TENANT_M), TA),
        fx("IPv6 from M's MAC with B6", m(ip6(B6, U6, udp())), spoof_ip(TENANT_M), NO_TENANT),
        fx("IPv6 from M's MAC with an address nobody owns", m(ip6(U6, A6, udp())), spoof_ip(TENANT_M), TA),
        fx("IPv6 from M's MAC with fec0::1 (just past fe80::/10)", m(ip6(SITE6, A6, udp())), spoof_ip(TENANT_M), TA),
        // M's address from an unbound MAC: spoof_mac of M.
        fx("IPv4 from an unbound MAC with M's address", ip4(M, U, syn()), spoof_mac(TENANT_M), NO_TENANT),
        fx("IPv6 from an unbound MAC with M6", ip6(M6, U6, syn()), spoof_mac(TENANT_M), NO_TENANT),
        fx("IPv4 from A's MAC (A binds none) with M's address", ip4(M, A, syn()).src_mac(MAC_A), spoof_mac(TENANT_M), TA),
        // No MAC binding: the address decides, and a source nobody owns is spoofed.
        fx("IPv4 from an unbound MAC with B's address (B binds no MAC)", ip4(B, U, syn()), TB, NO_TENANT),
        fx("IPv4 from an unbound MAC with an address nobody owns", ip4(U, A, syn()), SPOOFED, TA),
        fx("IPv6 from an unbound MAC with an address nobody owns", ip6(U6, B6, syn()), SPOOFED, TB),
        fx("IPv6 from an unbound MAC with fec0::1 (just past fe80::/10)", ip6(SITE6, B6, syn()), SPOOFED, TB),
        fx("IPv4 from an unbound MAC with a management address", ip4(MGMT, A, syn()), SPOOFED, TA),
    ]);
}

#[test]
#[rustfmt::skip]
fn arp_and_neighbour_discovery_claims_for_addresses_the_sender_does_not_own_are_spoof_arp() {
    let zero = Ipv4Addr::UNSPECIFIED;
    let arp_m = |arp: Arp| Frame::new(arp).src_mac(MAC_M);
    let nd_m = |src, dst, l4| nd(src, dst, l4).src_mac(MAC_M);
    run_table(&[
        // ARP: the sender protocol address is the claim.
        fx("ARP reply from M's MAC claiming B's address", arp_m(Arp::reply(MAC_M, B, MAC_A, A)), spoof_arp(TENANT_M), TA),
        fx("ARP request from M's MAC: who-has A tell B", arp_m(Arp::request(MAC_M, B, A)), spoof_arp(TENANT_M), TA),
        fx("gratuitous ARP from M's MAC for an address nobody owns", arp_m(Arp::request(MAC_M, U, U)), spoof_arp(TENANT_M), NO_TENANT),
        fx("802.1Q ARP reply from M's MAC claiming H", arp_m(Arp::reply(MAC_M, H, MAC_A, A)).vlan(8), spoof_arp(TENANT_M), TA),
        fx("ARP request from M's MAC with M's own address", arp_m(Arp::request(MAC_M, M, A)), TM, TA),
        fx("gratuitous ARP from M's second MAC for M", Frame::new(Arp::request(MAC_M2, M, M)).src_mac(MAC_M2), TM, TM),
        fx("ARP probe from M's MAC (sender 0.0.0.0) for M", arp_m(Arp::request(MAC_M, zero, M)), TM, TM),
        fx("ARP reply claiming M's address from an unbound MAC", Frame::new(Arp::reply(SRC_MAC, M, MAC_A, A)), spoof_mac(TENANT_M), TA),
        fx("ARP probe from an unbound MAC (sender 0.0.0.0) for A", Frame::new(Arp::request(SRC_MAC, zero, A)), NO_TENANT, TA),
        // ND: a neighbour advertisement claims its target; a solicitation its source.
        fx("ND advertisement from M's MAC for B6", nd_m(LL6_M, ALL_NODES6, na(B6, MAC_M)), spoof_arp(TENANT_M), NO_TENANT),
        fx("ND advertisement from M's MAC for an address nobody owns", nd_m(LL6_M, ALL_NODES6, na(U6, MAC_M)), spoof_arp(TENANT_M), NO_TENANT),
        fx("ND advertisement from M6 with M's MAC for A6, to A6", nd_m(M6, A6, na(A6, MAC_M)), spoof_arp(TENANT_M), TA),
        fx("ND advertisement from M's MAC for M6", nd_m(LL6_M, ALL_NODES6, na(M6, MAC_M)), TM, NO_TENANT),
        fx("ND advertisement from M's MAC for its link-local address", nd_m(LL6_M, ALL_NODES6, na(LL6_M, MAC_M)), TM, NO_TENANT),
        fx("ND advertisement for M6 from an unbound MAC", nd(LL6, ALL_NODES6, na(M6, SRC_MAC)), spoof_mac(TENANT_M), NO_TENANT),
        fx("ND advertisement for an address nobody owns from an unbound MAC", nd(LL6, ALL_NODES6, na(U6, SRC_MAC)), SPOOFED, NO_TENANT),
        fx("ND advertisement for B6 from an unbound MAC (B binds no MAC)", nd(LL6, ALL_NODES6, na(B6, SRC_MAC)), TB, NO_TENANT),
        fx("ND solicitation from M6 with M's MAC", nd_m(M6, solicited_node(A6), ns(A6, MAC_M)), TM, NO_TENANT),
        fx("ND solicitation from B6 with M's MAC", nd_m(B6, solicited_node(A6), ns(A6, MAC_M)), spoof_arp(TENANT_M), NO_TENANT),
        fx("ND DAD solicitation from :: with M's MAC", nd_m(Ipv6Addr::UNSPECIFIED, solicited_node(M6), ns(M6, MAC_M)), TM, NO_TENANT),
    ]);
}

/// Unowned sources (DHCP's 0.0.0.0, IPv6 `::` and fe80::/10) belong to nobody and
/// are not spoofing: from a bound MAC they count to that MAC's tenant; from an unbound
/// MAC they pass as NO_TENANT to multicast and broadcast (DHCP, DAD, MLD, router
/// solicitation) and as claims, but unicast from them is dropped as spoofed, since
/// nothing tells it from a suspended tenant's.
#[test]
#[rustfmt::skip]
fn unowned_sources_pass_as_no_tenant_to_multicast_or_count_to_the_bound_macs_tenant() {
    let dhcp = || ip4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, L4::udp(68, 67).with_payload(&[0; 240]));
    run_table(&[
        fx("DHCP discover 0.0.0.0 -> 255.255.255.255 from an unbound MAC", dhcp(), NO_TENANT, NO_TENANT),
        fx("DHCP discover from M's MAC", dhcp().src_mac(MAC_M), TM, NO_TENANT),
        fx("IPv6 fe80::1 -> ff02::1 from an unbound MAC", ip6(LL6, ALL_NODES6, L4::echo_request(1, 1)), NO_TENANT, NO_TENANT),
        fx("IPv6 fe80::1 -> A6 from an unbound MAC", ip6(LL6, A6, udp()), SPOOFED, TA),
        fx("IPv6 febf:ffff::1 (last of fe80::/10) -> A6 from an unbound MAC", ip6(LL6_LAST, A6, udp()), SPOOFED, TA),
        fx("IPv4 0.0.0.0 -> A from an unbound MAC", ip4(Ipv4Addr::UNSPECIFIED, A, udp()), SPOOFED, TA),
        fx("IPv4 0.0.0.0 -> 224.0.0.22 from an unbound MAC", ip4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(224, 0, 0, 22), udp()), NO_TENANT, NO_TENANT),
        fx("IPv6 fe80::1 -> A6 from M's MAC", ip6(LL6, A6, udp()).src_mac(MAC_M), TM, TA),
        fx("IPv6 fe80::4d -> ff02::1 from M's MAC", ip6(LL6_M, ALL_NODES6, udp()).src_mac(MAC_M), TM, NO_TENANT),
        fx("IPv6 :: -> ff02::16 (MLD report) from an unbound MAC", Frame::new(v6(Ipv6Addr::UNSPECIFIED, MLDV2_ROUTERS6).proto(proto::ICMPV6).l4(L4::raw(&[143, 0, 0, 0, 0, 0, 0, 0]))), NO_TENANT, NO_TENANT),
        fx("IPv6 :: -> ff02::16 from M's MAC", ip6(Ipv6Addr::UNSPECIFIED, MLDV2_ROUTERS6, udp()).src_mac(MAC_M), TM, NO_TENANT),
    ]);
}

/// The to-tenant hooks attribute by destination and never check the sender: frames
/// whose from-tenant reading is spoofed still count to (and pass for) their
/// destination tenant.
#[test]
#[rustfmt::skip]
fn to_tenant_hooks_never_check_the_senders_binding() {
    run_table(&[
        fx("IPv4 nobody -> M from M's MAC", ip4(U, M, syn()).src_mac(MAC_M), spoof_ip(TENANT_M), TM),
        fx("IPv4 B -> M from M's MAC", ip4(B, M, udp()).src_mac(MAC_M), spoof_ip(TENANT_M), TM),
        fx("IPv4 M -> B from an unbound MAC", ip4(M, B, udp()), spoof_mac(TENANT_M), TB),
        fx("IPv6 M6 -> A6 from an unbound MAC", ip6(M6, A6, udp()), spoof_mac(TENANT_M), TA),
        fx("IPv6 nobody -> M6 from M's MAC", ip6(U6, M6, udp()).src_mac(MAC_M), spoof_ip(TENANT_M), TM),
        fx("ARP reply claiming B from M's MAC, to M", Frame::new(Arp::reply(MAC_M, B, MAC_M2, M)).src_mac(MAC_M), spoof_arp(TENANT_M), TM),
        fx("ND advertisement for M6 from an unbound MAC, to M6", nd(B6, M6, na(M6, SRC_MAC)), spoof_mac(TENANT_M), TM),
    ]);
}

/// With no MAC bound anywhere (GEN_CONFIG without ANY_MACS) the MAC is not looked
/// up: the source address alone names the sender.
#[test]
#[rustfmt::skip]
fn without_bound_macs_the_source_address_alone_names_the_sender() {
    let policy = standard_policy().without(TENANT_M);
    run_table_with(&policy, &[
        fx("IPv4 A -> unknown", ip4(A, U, syn()), TA, NO_TENANT),
        fx("IPv4 B -> A from the MAC M used to bind", ip4(B, A, syn()).src_mac(MAC_M), TB, TA),
        fx("ARP reply B is-at, from the MAC M used to bind", Frame::new(Arp::reply(MAC_M, B, MAC_A, A)).src_mac(MAC_M), TB, TA),
        fx("IPv4 unknown -> A", ip4(U, A, syn()), SPOOFED, TA),
        fx("IPv6 unknown -> B6", ip6(U6, B6, syn()), SPOOFED, TB),
        fx("IPv4 M's former address is nobody's", ip4(M, A, syn()), SPOOFED, TA),
        fx("DHCP discover", ip4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, L4::udp(68, 67)), NO_TENANT, NO_TENANT),
        // No MAC is looked up, so a frame without an address is nobody's.
        fx("LLDP from the MAC M used to bind", Frame::raw(ethertype::LLDP, &LLDP).macs(MAC_M, LLDP_MAC), UNPARSED, NO_TENANT),
        fx("QinQ IPv4 A -> B from the MAC M used to bind", ip4(A, B, syn()).vlan_ad(10).vlan(20).src_mac(MAC_M), TA, TB),
    ]);
}

/// A claim from a bound MAC must name that MAC where it names one (receivers record the
/// claim's link-layer address, not the frame's): ARP's sender hardware address, ND's
/// link-layer address options; options that cannot be followed count as naming
/// another. Unbound MACs cannot be checked this way.
#[test]
#[rustfmt::skip]
fn a_claim_naming_another_mac_than_its_bound_sender_is_spoof_arp() {
    let nd_m = |dst, body: &[u8]| icmp6_nd(LL6_M, dst, body).src_mac(MAC_M);
    run_table(&[
        fx("ARP reply M is-at MAC_A, from M's MAC", Frame::new(Arp::reply(MAC_A, M, MAC_B, B)).src_mac(MAC_M), spoof_arp(TENANT_M), TB),
        fx("ARP reply M is-at MAC_M, from M's MAC", Frame::new(Arp::reply(MAC_M, M, MAC_B, B)).src_mac(MAC_M), TM, TB),
        fx("NA for M6 with a TLLA of MAC_B, from M's MAC", nd_m(ALL_NODES6, &{ let mut b = ns_body(M6, &lladdr_opt(2, MAC_B)); b[0] = 136; b }), spoof_arp(TENANT_M), NO_TENANT),
        fx("NA for M6 with a TLLA of M's MAC", nd_m(ALL_NODES6, &{ let mut b = ns_body(M6, &lladdr_opt(2, MAC_M)); b[0] = 136; b }), TM, NO_TENANT),
        fx("NS with the SLLA second, naming MAC_B", nd_m(solicited_node(A6), &ns_body(A6, &[[14, 1, 0, 0, 0, 0, 0, 0], lladdr_opt(1, MAC_B)].concat())), spoof_arp(TENANT_M), NO_TENANT),
        fx("NS with an option of length 0 from M's MAC", nd_m(solicited_node(A6), &ns_body(A6, &[1, 0, 0, 0, 0, 0, 0, 0])), spoof_arp(TENANT_M), NO_TENANT),
        fx("ARP reply A is-at MAC_B from an unbound MAC (A binds none)", Frame::new(Arp::reply(MAC_B, A, MAC_M, M)), TA, TM),
    ]);
}
