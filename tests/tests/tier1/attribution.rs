//! Attribution: which tenant a frame counts to (the longest listed prefix, ARP by
//! sender or target, bound MACs for frames without an address), and what happens to
//! frames the programs cannot look into (unparsed, an interface's `pass_ethertypes`).

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap as BpfHashMap, MapData};
use warden_common::{map, IfaceConfig};
use warden_tests::packets::{
    ethertype, proto, solicited_node, tcp, Arp, Ext, Frame, Mac, L4, SRC_MAC,
};

use crate::{fixture_policy::*, frames::*, harness::*};

#[test]
#[rustfmt::skip]
fn ip_frames_count_to_the_source_tenant_from_tenant_and_the_destination_tenant_to_tenant() {
    run_table(&[
        fx("IPv4 TCP SYN A -> unknown", ip4(A, U, syn()), TA, NO_TENANT),
        fx("IPv4 UDP unknown -> A", ip4(U, A, udp()), SPOOFED, TA),
        fx("IPv4 ICMP echo A -> B", ip4(A, B, L4::echo_request(1, 1)), TA, TB),
        fx("IPv4 ICMP echo reply B -> A", ip4(B, A, L4::echo_reply(1, 1)), TB, TA),
        fx("IPv4 GRE (L4 not parsed) A -> B", Frame::new(v4(A, B).proto(proto::GRE).l4(L4::raw(&[0; 8]))), TA, TB),
        fx("IPv4 TCP A -> B padded to 60 bytes", ip4(A, B, L4::tcp(1, 2, tcp::ACK)).pad_to(60), TA, TB),
        fx("IPv4 UDP A -> B, 1400 bytes", ip4(A, B, udp().with_payload(&[0x5a; 1358])), TA, TB),
        fx("IPv6 TCP SYN A6 -> unknown", ip6(A6, U6, syn()), TA, NO_TENANT),
        fx("IPv6 UDP unknown -> B6", ip6(U6, B6, udp()), SPOOFED, TB),
        fx("IPv6 ICMPv6 echo A6 -> B6", ip6(A6, B6, L4::echo_request(7, 1)), TA, TB),
        fx("802.1Q IPv4 TCP A -> B", ip4(A, B, syn()).vlan(100), TA, TB),
        fx("802.1Q IPv6 UDP B6 -> A6", ip6(B6, A6, udp()).vlan(4094), TB, TA),
        fx("802.1AD IPv4 UDP B -> A", ip4(B, A, udp()).vlan_ad(200), TB, TA),
        fx("802.1AD IPv6 TCP A6 -> B6", ip6(A6, B6, syn()).vlan_ad(200), TA, TB),
    ]);
}

#[test]
#[rustfmt::skip]
fn arp_counts_to_the_sender_tenant_from_tenant_and_the_target_tenant_to_tenant() {
    run_table(&[
        fx("ARP request who-has B tell A", Frame::new(Arp::request(MAC_A, A, B)), TA, TB),
        fx("ARP reply B is-at MAC_B, to A", Frame::new(Arp::reply(MAC_B, B, MAC_A, A)), TB, TA),
        fx("ARP request from unknown for H", Frame::new(Arp::request(SRC_MAC, U, H)), SPOOFED, TH),
        fx("ARP reply H to unknown", Frame::new(Arp::reply(MAC_A, H, SRC_MAC, U)), TH, NO_TENANT),
        fx("gratuitous ARP for A", Frame::new(Arp::request(MAC_A, A, A)), TA, TA),
        fx("ARP request padded to 60 bytes", Frame::new(Arp::request(MAC_A, A, B)).pad_to(60), TA, TB),
        fx("802.1Q ARP request who-has A tell B", Frame::new(Arp::request(MAC_B, B, A)).vlan(10), TB, TA),
        fx("802.1AD ARP reply A to B", Frame::new(Arp::reply(MAC_A, A, MAC_B, B)).vlan_ad(10), TA, TB),
        // Not Ethernet/IPv4 ARP: it names no address Warden checks, yet a receiver on
        // Ethernet may take its claim (Linux accepts IEEE 802 ARP): never passed from a
        // tenant; to one it is no tenant's.
        fx("ARP with hardware type 6 (IEEE 802)", Frame::new(Arp::request(MAC_A, A, B).htype(6)), UNPARSED, NO_TENANT),
        fx("ARP with hardware type 6 claiming B, QinQ", Frame::new(Arp::reply(MAC_A, B, MAC_B, B).htype(6)).vlan_ad(10).vlan(20), UNPARSED, NO_TENANT),
        fx("QinQ ARP request who-has B tell A", Frame::new(Arp::request(MAC_A, A, B)).vlan_ad(10).vlan(20), TA, TB),
    ]);
}

/// GEN_CONFIG lists IPv4 /32 and /24 and IPv6 /128, /64 and /48, longest first: a host
/// entry inside another tenant's prefix wins, and an address no listed length matches
/// is no tenant's (to-tenant) or a spoofed sender (from-tenant).
#[test]
#[rustfmt::skip]
fn the_longest_listed_prefix_length_wins_and_an_address_matching_no_length_is_no_tenants() {
    run_table(&[
        fx("IPv4 /32 H inside A's /24: H -> unknown", ip4(H, U, syn()), TH, NO_TENANT),
        fx("IPv4 /32 H inside A's /24: A -> H", ip4(A, H, syn()), TA, TH),
        fx("IPv4 /32 H inside A's /24: neighbours of H are A's", ip4(Ipv4Addr::new(198, 18, 1, 76), Ipv4Addr::new(198, 18, 1, 78), syn()), TA, TA),
        fx("IPv6 /128 H6 inside A's /48: H6 -> A6", ip6(H6, A6, syn()), TH, TA),
        fx("IPv6 /128 HB6 inside B's /64: HB6 -> unknown", ip6(HB6, U6, syn()), TH, NO_TENANT),
        fx("IPv6 /128 HB6 inside B's /64: B6 -> HB6", ip6(B6, HB6, udp()), TB, TH),
        fx("ARP /32 H inside A's /24: who-has H tell A", Frame::new(Arp::request(MAC_A, A, H)), TA, TH),
        fx("IPv4 last address of B's /24", ip4(B_LAST, B_LAST, syn()), TB, TB),
        fx("IPv4 first address after B's /24 is nobody's", ip4(U_NEXT, U_NEXT, syn()), SPOOFED, NO_TENANT),
        fx("IPv6 next /64 after B's is nobody's", ip6(U6_NEXT, U6_NEXT, syn()), SPOOFED, NO_TENANT),
        fx("IPv4 matching no length: unknown -> unknown", ip4(U, U, udp()), SPOOFED, NO_TENANT),
        fx("IPv6 matching no length: unknown -> unknown", ip6(U6, U6, udp()), SPOOFED, NO_TENANT),
    ]);
}

/// Addresses nobody owns pass as NO_TENANT to-tenant and are a spoofed sender
/// from-tenant; frames without an IP or ARP address from a MAC no tenant binds pass as
/// NO_TENANT both ways.
#[test]
#[rustfmt::skip]
fn unknown_addresses_and_non_ip_ethertypes_count_as_no_tenant_or_spoofed_or_unparsed_from_tenant() {
    let (lldp, lldp_mac) = (LLDP, LLDP_MAC);
    run_table(&[
        fx("IPv4 unknown -> unknown", ip4(U, U_NEXT, syn()), SPOOFED, NO_TENANT),
        fx("IPv6 unknown -> unknown", ip6(U6, U6_NEXT, syn()), SPOOFED, NO_TENANT),
        fx("ARP unknown asks for unknown", Frame::new(Arp::request(SRC_MAC, U, U_NEXT)), SPOOFED, NO_TENANT),
        // No IP or ARP address: nothing to check, so nothing passes from a tenant (the
        // test run's interface, lo, passes no ethertype); to a tenant it is no tenant's.
        fx("LLDP (0x88cc)", Frame::raw(ethertype::LLDP, &lldp).macs(SRC_MAC, lldp_mac), UNPARSED, NO_TENANT),
        fx("802.1Q tag then LLDP", Frame::raw(ethertype::LLDP, &lldp).vlan(5), UNPARSED, NO_TENANT),
        fx("802.3 length field + LLC (STP)", Frame::raw(0x0026, &[0x42, 0x42, 0x03, 0, 0, 0, 0]), UNPARSED, NO_TENANT),
        fx("Ethernet header alone, local ethertype 0x88b5 (14 bytes)", Frame::raw(0x88b5, &[]), UNPARSED, NO_TENANT),
        // Two tags are followed to the frame inside, which is enforced like any other.
        fx("QinQ (802.1AD + 802.1Q) IPv4 A -> B", ip4(A, B, syn()).vlan_ad(10).vlan(20), TA, TB),
        fx("double 802.1Q IPv6 A6 -> B6", ip6(A6, B6, syn()).vlan(10).vlan(20), TA, TB),
        fx("QinQ IPv4 unknown -> unknown", ip4(U, U_NEXT, syn()).vlan_ad(10).vlan(20), SPOOFED, NO_TENANT),
        // A third tag hides the frame: never passed from a tenant.
        fx("three tags, IPv4 A -> B", ip4(A, B, syn()).vlan_ad(10).vlan(20).vlan(30), UNPARSED, NO_TENANT),
        fx("IPv6 DAD NS from :: for A6", nd(Ipv6Addr::UNSPECIFIED, solicited_node(A6), ns(A6, MAC_A)), NO_TENANT, NO_TENANT),
    ]);
}

/// From-tenant frames the programs cannot look into (other ethertypes, a third tag,
/// ARP for another hardware type) are dropped as unparsed, attributed by their bound
/// source MAC when some tenant binds MACs; QinQ is followed to the frame inside.
/// To-tenant they have no tenant. From a MAC nobody binds they are nobody's.
#[test]
#[rustfmt::skip]
fn frames_without_an_address_from_a_bound_mac_are_its_tenants_unparsed_drops() {
    let lldp = |mac: Mac| Frame::raw(ethertype::LLDP, &LLDP).macs(mac, LLDP_MAC);
    let stp = |mac: Mac| Frame::raw(0x0026, &[0x42, 0x42, 0x03, 0, 0, 0, 0]).src_mac(mac);
    let qinq = |mac: Mac, src, dst| ip4(src, dst, syn()).vlan_ad(10).vlan(20).src_mac(mac);
    run_table_with(&s_binds_a_mac(), &[
        // Nothing to check inside: dropped from a tenant, counted to the bound MAC's
        // tenant (the test run's interface, lo, passes no ethertype).
        fx("LLDP from M's bound MAC", lldp(MAC_M), unparsed(TENANT_M), NO_TENANT),
        fx("LLDP from M's second bound MAC", lldp(MAC_M2), unparsed(TENANT_M), NO_TENANT),
        fx("802.1Q tag then LLDP from M's MAC", lldp(MAC_M).vlan(5), unparsed(TENANT_M), NO_TENANT),
        fx("802.3 length field + LLC (STP) from M's MAC", stp(MAC_M), unparsed(TENANT_M), NO_TENANT),
        fx("Ethernet header alone, ethertype 0x88b5, from M's MAC", Frame::raw(0x88b5, &[]).src_mac(MAC_M), unparsed(TENANT_M), NO_TENANT),
        fx("ARP with hardware type 6 from M's MAC", Frame::new(Arp::request(MAC_M, B, A).htype(6)).src_mac(MAC_M), unparsed(TENANT_M), NO_TENANT),
        // QinQ is followed to the frame inside: the bound MAC must use its own address.
        fx("QinQ IPv4 M -> B from M's MAC", qinq(MAC_M, M, B), TM, TB),
        fx("QinQ IPv4 B -> A from M's MAC", qinq(MAC_M, B, A), spoof_ip(TENANT_M), TA),
        // Suspended S binds MAC_S: its unparsed frames are dropped like anyone's, and
        // a QinQ frame to management is what it keeps.
        fx("LLDP from suspended S's bound MAC", lldp(MAC_S), unparsed(TENANT_S), NO_TENANT),
        fx("QinQ IPv4 S -> management from S's MAC", qinq(MAC_S, S, MGMT), TS, NO_TENANT),
        fx("QinQ IPv4 S -> outside from S's MAC", qinq(MAC_S, S, U), suspended(TENANT_S), NO_TENANT),
        fx("802.3 length field + LLC (STP) from S's MAC", stp(MAC_S), unparsed(TENANT_S), NO_TENANT),
        fx("ARP with hardware type 6 from S's MAC", Frame::new(Arp::request(MAC_S, S, U).htype(6)).src_mac(MAC_S), unparsed(TENANT_S), NO_TENANT),
        // Nobody binds these MACs: nobody's unparsed drop.
        fx("LLDP from an unbound MAC", lldp(SRC_MAC), UNPARSED, NO_TENANT),
        fx("LLDP from A's MAC (A binds none)", lldp(MAC_A), UNPARSED, NO_TENANT),
        fx("QinQ IPv4 A -> B from an unbound MAC", qinq(SRC_MAC, A, B), TA, TB),
        // With an address, S's bound MAC is checked and S's suspension applies as usual.
        fx("IPv4 S -> outside from S's MAC", ip4(S, U, syn()).src_mac(MAC_S), suspended(TENANT_S), NO_TENANT),
        fx("IPv4 S's address from an unbound MAC", ip4(S, U, syn()), spoof_mac(TENANT_S), NO_TENANT),
    ]);
}

#[test]
#[rustfmt::skip]
fn ipv6_extension_chains_fragments_and_neighbour_discovery_count_by_address() {
    run_table(&[
        fx("IPv6 hop-by-hop + routing + dest-opts then TCP", three_ext(A6, B6, syn()), TA, TB),
        fx("802.1Q IPv6 three extension headers then TCP", three_ext(A6, B6, syn()).vlan(7), TA, TB),
        fx("IPv6 24-byte hop-by-hop + AH then UDP", Frame::new(v6(A6, B6).ext(Ext::HopByHop { extra: 2 }).ext(Ext::Ah { spi: 0x100 }).l4(udp())), TA, TB),
        fx("IPv6 first fragment (offset 0, M) then TCP", Frame::new(v6(A6, B6).fragment(0, true).l4(syn())), TA, TB),
        // 8 bytes after the fragment header: too short for TCP, so this also proves the
        // parser does not look for L4 in a later fragment.
        fx("IPv6 non-first fragment, next header TCP, 8 data bytes", Frame::new(v6(A6, B6).fragment(185, true).proto(proto::TCP).l4(L4::raw(&[0xde; 8]))), TA, TB),
        fx("IPv6 last fragment after hop-by-hop, UDP, 3 data bytes", Frame::new(v6(B6, A6).ext(Ext::HOP_BY_HOP).fragment(1, false).proto(proto::UDP).l4(L4::raw(&[1, 2, 3]))), TB, TA),
        fx("IPv6 no next header (59)", Frame::new(v6(A6, B6)), TA, TB),
        fx("ND neighbour solicitation from A6 for B6 (multicast)", nd(A6, solicited_node(B6), ns(B6, MAC_A)), TA, NO_TENANT),
        fx("ND neighbour solicitation from B6 to A6 (unicast probe)", nd(B6, A6, ns(A6, MAC_B)), TB, TA),
        fx("ND neighbour advertisement from B6 to A6", nd(B6, A6, L4::NeighborAdvertisement { target: B6, flags: 0x60, target_mac: MAC_B }), TB, TA),
        fx("802.1Q ND neighbour solicitation from H6", nd(H6, solicited_node(A6), ns(A6, MAC_A)).vlan(3), TH, NO_TENANT),
    ]);
}

#[test]
#[rustfmt::skip]
fn ipv4_fragments_and_options_count_by_address() {
    run_table(&[
        fx("IPv4 first fragment (offset 0, MF) TCP", Frame::new(v4(A, B).fragment(0, true).l4(syn())), TA, TB),
        // 8 data bytes: too short for TCP, so the parser must not look for L4.
        fx("IPv4 non-first fragment, protocol TCP, 8 data bytes", Frame::new(v4(A, B).fragment(185, true).proto(proto::TCP).l4(L4::raw(&[0xde; 8]))), TA, TB),
        fx("IPv4 last fragment, protocol UDP, 1 data byte", Frame::new(v4(B, A).fragment(1, false).proto(proto::UDP).l4(L4::raw(&[1]))), TB, TA),
        fx("IPv4 DF TCP", Frame::new(v4(A, B).dont_fragment().l4(syn())), TA, TB),
        fx("IPv4 with 4 bytes of options (ihl 6) TCP", Frame::new(v4(A, B).options(1).l4(syn())), TA, TB),
        fx("IPv4 with 40 bytes of options (ihl 15) UDP", Frame::new(v4(B, A).options(10).l4(udp())), TB, TA),
    ]);
}

/// An interface's `pass_ethertypes` let those ethertypes through from tenants
/// (attributed by bound MAC, else no tenant's), never IPv4, IPv6, ARP or VLAN tags
/// themselves: a third tag and ARP for another hardware type stay unparsed even if a
/// map entry were to list 0x8100 or 0x0806. Other ethertypes stay dropped.
#[test]
#[rustfmt::skip]
fn an_interface_passing_an_ethertype_lets_only_that_through_unparsed() {
    let policy = standard_policy();
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    // BPF_PROG_TEST_RUN runs on the loopback device.
    let lo = nix_ifindex("lo");
    let mut config = IfaceConfig::default();
    config.pass_ethertypes[0] = ethertype::LLDP;
    config.pass_ethertypes[1] = ethertype::VLAN_8021Q;
    config.pass_ethertypes[2] = ethertype::ARP;
    let mut ifaces: BpfHashMap<&mut MapData, u32, IfaceConfig> =
        BpfHashMap::try_from(dp.ebpf.map_mut(map::IFACES).expect("IFACES")).expect("a hash map");
    ifaces.insert(lo, config, 0).expect("writing IFACES");
    let lldp = |mac: Mac| Frame::raw(ethertype::LLDP, &LLDP).macs(mac, LLDP_MAC);
    let fixtures = [
        fx("LLDP from an unbound MAC", lldp(SRC_MAC), NO_TENANT, NO_TENANT),
        fx("802.1Q then LLDP from an unbound MAC", lldp(SRC_MAC).vlan(5), NO_TENANT, NO_TENANT),
        fx("LLDP from M's bound MAC", lldp(MAC_M), TM, NO_TENANT),
        fx("ethertype 0x88b5 from an unbound MAC", Frame::raw(0x88b5, &[0; 46]), UNPARSED, NO_TENANT),
        fx("three tags, IPv4 A -> B", ip4(A, B, syn()).vlan_ad(10).vlan(20).vlan(30), UNPARSED, NO_TENANT),
        fx("ARP with hardware type 6", Frame::new(Arp::request(MAC_A, A, B).htype(6)), UNPARSED, NO_TENANT),
    ];
    let failures = run_rows(&dp, &fixtures);
    assert_no_failures(&failures, fixtures.len() * Prog::ALL.len());
}
