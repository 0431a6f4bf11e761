//! Malformed frames: counted once as MALFORMED, dropped from a tenant and passed to
//! one; and random garbage frames, each with exactly one outcome.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use warden_tests::packets::{len, proto, solicited_node, tcp, Arp, Ext, Frame, Ipv6, L4};

use crate::{fixture_policy::*, frames::*, harness::*};

/// Frames cut at (or inside) every header the parser reads: counted once as MALFORMED
/// in the program's direction, dropped from-tenant (a truncated header could hide
/// ports or addresses from policy) and passed to-tenant (our parser must not cut a
/// tenant off).
#[test]
#[rustfmt::skip]
fn truncated_frames_at_every_header_boundary_count_as_malformed_dropped_from_tenant_passed_to_tenant() {
    use len::{ARP, ETH, IPV4, IPV6, TCP, UDP, VLAN};
    let m = malformed;
    let tcp4 = || ip4(A, B, syn());
    let tcp6 = || ip6(A6, B6, syn());
    let ext3 = || three_ext(A6, B6, syn());
    let frag6 = || Frame::new(v6(A6, B6).fragment(0, true).l4(syn()));
    let arp = || Frame::new(Arp::request(MAC_A, A, B));
    let mut t = vec![
        m("802.1Q: ethertype 0x8100, no tag (14 bytes)", tcp4().vlan(1).truncate(ETH)),
        m("802.1Q tag cut after 2 of 4 bytes", tcp4().vlan(1).truncate(ETH + 2)),
        m("802.1Q tag cut after 3 of 4 bytes", tcp4().vlan(1).truncate(ETH + 3)),
        m("802.1AD tag cut after 2 of 4 bytes", tcp4().vlan_ad(1).truncate(ETH + 2)),
        m("IPv4: ethertype only, no header (14 bytes)", tcp4().truncate(ETH)),
        m("IPv4 header cut at 1 byte", tcp4().truncate(ETH + 1)),
        m("IPv4 header cut at 19 bytes", tcp4().truncate(ETH + IPV4 - 1)),
        m("802.1Q IPv4 header cut at 19 bytes", tcp4().vlan(1).truncate(ETH + VLAN + IPV4 - 1)),
        m("IPv4 TCP: no TCP header", tcp4().truncate(ETH + IPV4)),
        m("IPv4 TCP header cut at 13 bytes (before flags)", tcp4().truncate(ETH + IPV4 + 13)),
        m("IPv4 TCP header cut at 19 bytes", tcp4().truncate(ETH + IPV4 + TCP - 1)),
        m("IPv4 ihl 6: TCP header cut after the options", Frame::new(v4(A, B).options(1).l4(syn())).truncate(ETH + IPV4 + 4 + 10)),
        m("IPv4 UDP header cut at 7 bytes", ip4(A, B, udp()).truncate(ETH + IPV4 + UDP - 1)),
        m("IPv4 ICMP header cut at 3 bytes", ip4(A, B, L4::echo_request(1, 1)).truncate(ETH + IPV4 + 3)),
        m("IPv6: ethertype only, no header (14 bytes)", tcp6().truncate(ETH)),
        m("IPv6 header cut at 24 bytes (inside the source address)", tcp6().truncate(ETH + 24)),
        m("IPv6 header cut at 39 bytes", tcp6().truncate(ETH + IPV6 - 1)),
        m("802.1AD IPv6 header cut at 39 bytes", tcp6().vlan_ad(1).truncate(ETH + VLAN + IPV6 - 1)),
        m("IPv6 TCP: no TCP header", tcp6().truncate(ETH + IPV6)),
        m("IPv6 TCP header cut at 19 bytes", tcp6().truncate(ETH + IPV6 + TCP - 1)),
        m("IPv6 hop-by-hop announced, nothing after the IPv6 header", ext3().truncate(ETH + IPV6)),
        m("IPv6 hop-by-hop cut at 1 byte", ext3().truncate(ETH + IPV6 + 1)),
        m("IPv6 routing header announced, cut at its start", ext3().truncate(ETH + IPV6 + 8)),
        m("IPv6 dest-opts announced, cut at its start", ext3().truncate(ETH + IPV6 + 8 + 24)),
        m("IPv6 3 ext headers then TCP, TCP cut at 10 bytes", ext3().truncate(ETH + IPV6 + 40 + 10)),
        m("IPv6 fragment header cut at 3 bytes", frag6().truncate(ETH + IPV6 + 3)),
        m("IPv6 first fragment, TCP cut at 12 bytes", frag6().truncate(ETH + IPV6 + 8 + 12)),
        m("IPv6 AH cut at 1 byte", Frame::new(v6(A6, B6).ext(Ext::Ah { spi: 1 }).l4(syn())).truncate(ETH + IPV6 + 1)),
        m("ND solicitation: ICMPv6 header cut at 3 bytes", ip6(A6, solicited_node(B6), ns(B6, MAC_A)).truncate(ETH + IPV6 + 3)),
        m("ND advertisement cut inside the target address", nd(A6, B6, na(A6, MAC_A)).truncate(ETH + IPV6 + 20)),
        m("ARP: ethertype only, no body (14 bytes)", arp().truncate(ETH)),
        m("ARP cut at 14 of 28 bytes (inside the sender address)", arp().truncate(ETH + 14)),
        m("ARP cut at 27 of 28 bytes", arp().truncate(ETH + ARP - 1)),
        m("802.1Q ARP cut at 27 of 28 bytes", arp().vlan(1).truncate(ETH + VLAN + ARP - 1)),
    ];
    // Every cut of a VLAN-tagged IPv6 / 3 extension headers / TCP frame inside its headers.
    let full = ext3().vlan(9);
    let headers = ETH + VLAN + IPV6 + 8 + 24 + 8 + TCP;
    for n in ETH..headers {
        t.push(m(&format!("802.1Q IPv6 3 ext TCP cut at {n} of {headers} header bytes"), full.clone().truncate(n)));
    }
    run_table(&t);
}

/// Frames that end inside a header the parser steps over without reading L4 behind it
/// (IPv4 options before an unparsed protocol or a later fragment; IPv6 extension
/// headers before "no next header" or as a later fragment) are still frames "too
/// short for the headers they announce" (warden-common `global::MALFORMED`), so they
/// count as MALFORMED (dropped from-tenant, passed to-tenant) like the same cuts
/// before TCP do.
#[test]
#[rustfmt::skip]
fn frames_cut_inside_announced_headers_count_as_malformed_even_when_no_l4_is_parsed() {
    use len::{ETH, IPV4, IPV6};
    let m = malformed;
    let hbh24 = || Frame::new(v6(A6, B6).ext(Ext::HopByHop { extra: 2 }));
    run_table(&[
        m("IPv4 ihl 15 (60-byte header), GRE, cut after 20 header bytes", Frame::new(v4(A, B).options(10).proto(proto::GRE).l4(L4::raw(&[0; 8]))).truncate(ETH + IPV4)),
        m("IPv4 ihl 15 non-first fragment, cut after 20 header bytes", Frame::new(v4(A, B).options(10).fragment(100, false).l4(L4::raw(&[0; 8]))).truncate(ETH + IPV4)),
        m("IPv4 ihl 6, GRE, cut after 22 header bytes", Frame::new(v4(A, B).options(1).proto(proto::GRE)).truncate(ETH + IPV4 + 2)),
        m("IPv6 24-byte hop-by-hop then no next header, cut at 8", hbh24().truncate(ETH + IPV6 + 8)),
        m("IPv6 hop-by-hop then no next header, cut at 2 of 8", Frame::new(v6(A6, B6).ext(Ext::HOP_BY_HOP)).truncate(ETH + IPV6 + 2)),
        m("IPv6 AH (24 bytes) then no next header, cut at 12", Frame::new(v6(A6, B6).ext(Ext::Ah { spi: 1 })).truncate(ETH + IPV6 + 12)),
        m("IPv6 non-first fragment header cut at 4 of 8", Frame::new(v6(A6, B6).fragment(185, true).l4(L4::raw(&[0; 8]))).truncate(ETH + IPV6 + 4)),
    ]);
}

/// Header fields no valid frame has: counted once as MALFORMED, dropped from-tenant,
/// passed to-tenant.
#[test]
#[rustfmt::skip]
fn impossible_header_fields_count_as_malformed_dropped_from_tenant_passed_to_tenant() {
    let m = malformed;
    let ihl = |ihl: u8| Frame::new(v4(A, B).ihl(ihl).l4(syn()));
    let offset = |off: u8| L4::Tcp { sport: 1, dport: 2, flags: tcp::SYN, data_offset: off, payload: Vec::new() };
    run_table(&[
        m("IPv4 ihl 0", ihl(0)),
        m("IPv4 ihl 4 (< 5)", ihl(4)),
        m("802.1Q IPv4 ihl 4 (< 5)", ihl(4).vlan(1)),
        m("IPv4 ethertype, version 6", Frame::new(v4(A, B).version(6).l4(syn()))),
        m("IPv4 ethertype, version 0", Frame::new(v4(A, B).version(0).l4(syn()))),
        m("IPv6 ethertype, version 4", Frame::new(v6(A6, B6).version(4).l4(syn()))),
        m("IPv4 TCP data offset 4 (< 5)", ip4(A, B, offset(4))),
        m("IPv6 TCP data offset 0", ip6(A6, B6, offset(0))),
    ]);
}

/// IPv6 with `n` destination-options headers, then `l4`.
fn dest_opts_chain(src: Ipv6Addr, dst: Ipv6Addr, n: usize, l4: L4) -> Frame {
    let mut ip = v6(src, dst);
    for _ in 0..n {
        ip = ip.ext(Ext::DEST_OPTS);
    }
    Frame::new(ip.l4(l4))
}

/// The parser steps over at most six extension headers (parse.rs
/// `MAX_IPV6_EXT_HDRS`) and must then have reached L4: five headers and an L4 header
/// is the longest chain that counts by address; with six or more the L4 header is out
/// of reach, and the frame is malformed (its ports are hidden from policy).
#[test]
#[rustfmt::skip]
fn ipv6_extension_chains_beyond_the_parsers_reach_count_as_malformed() {
    run_table(&[
        fx("IPv6 five dest-opts then UDP", dest_opts_chain(B6, A6, 5, udp()), TB, TA),
        fx("IPv6 five dest-opts then TCP", dest_opts_chain(A6, B6, 5, syn()), TA, TB),
        malformed("IPv6 six dest-opts then UDP", dest_opts_chain(B6, A6, 6, udp())),
        malformed("IPv6 seven dest-opts then UDP", dest_opts_chain(B6, A6, 7, udp())),
        malformed("802.1Q IPv6 seven dest-opts then TCP", dest_opts_chain(A6, B6, 7, syn()).vlan(7)),
        malformed("IPv6 six dest-opts then no next header", Frame::new((0..6).fold(v6(A6, B6), |ip, _| ip.ext(Ext::DEST_OPTS)))),
        malformed("IPv6 hop-by-hop, dest-opts, routing, atomic fragment, 2 dest-opts then TCP", Frame::new(v6(A6, B6).ext(Ext::HOP_BY_HOP).ext(Ext::DEST_OPTS).ext(Ext::Routing { segment: B6 }).fragment(0, false).ext(Ext::DEST_OPTS).ext(Ext::DEST_OPTS).l4(syn()))),
    ]);
}

/// An IP packet must lie within its frame and its headers within the packet: an IPv4
/// total length or IPv6 payload length that reaches past the frame, or is too short
/// for the headers after it, is malformed (dropped from a tenant, passed to one).
/// Bytes after the packet (Ethernet padding) are fine.
#[test]
#[rustfmt::skip]
fn ip_lengths_past_the_frame_or_short_of_the_headers_are_malformed() {
    let with = |f: Frame, at: usize, bytes: &[u8]| {
        let mut b = f.build();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let v4 = || ip4(A, B, syn());
    let v6 = || ip6(A6, B6, syn());
    let qinq6 = || ip6(A6, B6, syn()).vlan_ad(10).vlan(20);
    run_table(&[
        fx_bytes("IPv4 total length 1,000 in a 54-byte frame", with(v4(), 16, &1000u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("IPv4 total length 19 (< its header)", with(v4(), 16, &19u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("IPv4 total length 30: the TCP header is past the packet", with(v4(), 16, &30u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("IPv6 payload length 1,000 in a 74-byte frame", with(v6(), 18, &1000u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("IPv6 payload length 0 with a TCP header", with(v6(), 18, &0u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("IPv6 payload length 10: the TCP header is past the packet", with(v6(), 18, &10u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("QinQ IPv6 with payload length 1,000", with(qinq6(), 26, &1000u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx_bytes("QinQ IPv6 SMTP with payload length 1,000", with(ip6(A6, U6, syn_to(25)).vlan_ad(10).vlan(20), 26, &1000u16.to_be_bytes()), MALFORMED_DROP, MALFORMED_PASS),
        fx("IPv4 SYN padded to 60 bytes (packet shorter than frame)", v4().pad_to(60), TA, TB),
        fx("IPv6 SYN with 100 bytes after the packet", Frame::new(Ipv6::new(A6, B6).l4(syn())).pad_to(174), TA, TB),
    ]);
}

/// A random frame of 14..=200 bytes, biased so that most reach the deeper parser
/// paths: known ethertypes, right versions, tenant addresses (a suspended and a
/// MAC-bound one among them), bound MACs, extension headers, SMTP ports.
fn garbage(rng: &mut XorShift) -> Vec<u8> {
    let n = 14 + rng.below(187) as usize;
    let mut f: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    if rng.below(4) == 0 {
        put(&mut f, 6, &rng.pick(&[MAC_M, MAC_M2, MAC_A]));
    }
    let random_type = rng.next() as u16;
    let types = [0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8, random_type];
    let mut off = 12;
    let mut et = rng.pick(&types);
    put(&mut f, off, &et.to_be_bytes());
    if (et == 0x8100 || et == 0x88a8) && rng.below(4) != 0 {
        off += 4;
        et = rng.pick(&types);
        put(&mut f, off, &et.to_be_bytes());
    }
    let l3 = off + 2;
    let addrs4 = [A, B, H, U, M, S, Ipv4Addr::UNSPECIFIED];
    let addrs6 = [A6, B6, H6, U6, M6, S6, LL6];
    let next_headers = [0u8, 43, 44, 51, 60, 6, 17, 58, 59];
    match et {
        0x0800 if rng.below(8) != 0 => {
            let ihl = rng.byte(&[5, 5, 5, 6, 15, 4, 0]) & 0x0f;
            put(&mut f, l3, &[0x40 | ihl]);
            let frags = [rng.byte(&[0, 0, 0x20, 0x40]), rng.byte(&[0, 0, 1])];
            put(&mut f, l3 + 6, &frags);
            let proto = rng.byte(&[6, 17, 1, 47]);
            put(&mut f, l3 + 9, &[proto]);
            put(&mut f, l3 + 12, &rng.pick(&addrs4).octets());
            put(&mut f, l3 + 16, &rng.pick(&addrs4).octets());
            if proto == 6 && ihl == 5 && rng.below(2) == 0 {
                let port: u16 = rng.pick(&[25, 465, 587, 443]);
                put(&mut f, l3 + 20 + 2, &port.to_be_bytes());
            }
        }
        0x86dd if rng.below(8) != 0 => {
            put(&mut f, l3, &[0x60]);
            let next = rng.byte(&next_headers);
            put(&mut f, l3 + 6, &[next]);
            put(&mut f, l3 + 8, &rng.pick(&addrs6).octets());
            put(&mut f, l3 + 24, &rng.pick(&addrs6).octets());
            // A chain of 8-byte extension headers, some with other lengths.
            let mut ext = l3 + 40;
            for _ in 0..rng.below(8) {
                let h = [rng.byte(&next_headers), rng.byte(&[0, 0, 1, 2])];
                put(&mut f, ext, &h);
                ext += 8;
            }
        }
        0x0806 if rng.below(8) != 0 => {
            put(&mut f, l3, &[0, 1, 0x08, 0, 6, 4]);
            put(&mut f, l3 + 14, &rng.pick(&addrs4).octets());
            put(&mut f, l3 + 24, &rng.pick(&addrs4).octets());
        }
        _ => {}
    }
    f
}

/// Writes `bytes` at `off`, as far as the frame reaches.
fn put(f: &mut [u8], off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(slot) = f.get_mut(off + i) {
            *slot = *b;
        }
    }
}

/// 2,000 random frames of 14..=200 bytes through each program: every run the kernel
/// accepts has exactly one outcome's shape, in the program's direction, with its
/// verdict (pass: one counter +1/+len; drop: the tenant +1/+len and one reason +1;
/// spoofed: SPOOFED +1/+len; MALFORMED: +1/+len, dropped from-tenant and passed
/// to-tenant; NO_TENANT always passes). The only failed
/// runs are the kernel's own refusals (see [`skb_test_run_refuses`]), which count
/// nothing.
#[test]
fn random_garbage_frames_have_exactly_one_outcome_unless_the_kernel_refuses_the_run() {
    let dp = TestDataplane::load().expect("loading the dataplane");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let frames: Vec<Vec<u8>> = (0..2000).map(|_| garbage(&mut rng)).collect();
    let mut hits: BTreeMap<(Prog, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for prog in Prog::ALL {
        for (i, frame) in frames.iter().enumerate() {
            let what = format!("garbage #{i} {frame:02x?}");
            let before = dp.snapshot().expect("reading counters");
            let result = dp.run(prog, frame);
            let after = dp.snapshot().expect("reading counters");
            let ch = changes(&before, &after);
            let outcome = RunOutcome::of(&ch, prog.dir());
            let ok = match (&result, skb_test_run_refuses(frame) && !prog.is_xdp()) {
                (Ok(r), false) => outcome.is_some_and(|o| {
                    *r == prog.retval(o.verdict())
                        && o.changes(prog.dir(), frame.len(), 1) == ch
                        && ch.iter().all(|(c, ..)| c.dir() == prog.dir())
                }),
                (Err(e), true) => errno(e) == Some(libc::EINVAL) && ch.is_empty(),
                _ => false,
            };
            let shown = match &result {
                Ok(r) => format!("returned {r:#x}"),
                Err(e) => run_error(e),
            };
            if !ok {
                failures.push(format!("{what} [{prog}]: {shown}, counted {}", show(&ch)));
            } else {
                let slot = outcome.map_or("refused by the kernel".to_string(), |o| o.to_string());
                *hits.entry((prog, slot)).or_default() += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    // The generator must actually reach tenants, drops, no-tenant and malformed paths.
    for prog in Prog::ALL {
        let slots: Vec<_> = hits
            .iter()
            .filter(|((p, _), _)| *p == prog)
            .map(|((_, s), n)| format!("{s}: {n}"))
            .collect();
        eprintln!("[{prog}] {}", slots.join(", "));
        assert!(slots.len() >= 6, "[{prog}] garbage reached only {slots:?}");
        // A policy drop: malformed drops alone do not count.
        let drops = hits
            .iter()
            .filter(|((p, s), _)| {
                *p == prog && s.starts_with("drop") && *s != MALFORMED_DROP.to_string()
            })
            .count();
        assert!(
            drops >= 1,
            "[{prog}] garbage reached no drop path: {slots:?}"
        );
    }
}
