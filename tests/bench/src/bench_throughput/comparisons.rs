//! The frames sent and the comparisons measured, each with its sides and its bar.

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_common::program;
use warden_tests::packets::{Frame, Ipv4, Ipv6, L4};

use super::{
    programs::{tenant_v4, tenant_v6},
    Comparison, Expect, Rx, Side, BAR_FLOOD, BAR_TWO_CORES, BAR_VS_NFT, BAR_VS_XDP_DROP,
    BAR_VS_XDP_PASS, EXHAUSTED, FLOOD_FIRST, FLOOD_SOURCES, METERED, RX_MAC_BYTES, SRC_MAC,
};

/// An IPv4 UDP frame to `dst`, with a valid header checksum (the receiving stack
/// checks it before the prerouting hook).
pub(super) fn v4_udp(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Frame::new(Ipv4::new(Ipv4Addr::new(198, 18, 200, 1), dst).l4(L4::udp(40000, 5001)))
        .macs(SRC_MAC, RX_MAC_BYTES)
        .pad_to(64)
        .build();
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = ipv4_checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
pub(super) fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The flood template: IPv6 UDP to the exhausted tenant, payload (N, first source).
pub(super) fn flood_frame(sources: u32) -> Vec<u8> {
    let first = u32::from_be_bytes(FLOOD_FIRST.octets()[12..16].try_into().expect("4 bytes"));
    let mut payload = Vec::new();
    payload.extend_from_slice(&sources.to_be_bytes());
    payload.extend_from_slice(&first.to_be_bytes());
    let dst = Ipv6Addr::from(u128::from(tenant_v6(EXHAUSTED)) + 0x10);
    let frame =
        Frame::new(Ipv6::new(FLOOD_FIRST, dst).l4(L4::udp(40000, 5001).with_payload(&payload)))
            .macs(SRC_MAC, RX_MAC_BYTES)
            .build();
    // The generator reads the payload at a fixed offset: Ethernet, IPv6, UDP.
    debug_assert_eq!(&frame[62..66], &sources.to_be_bytes());
    frame
}

pub(super) fn comparisons() -> Vec<Comparison> {
    let drop_frame = v4_udp(tenant_v4(EXHAUSTED));
    let pass_frame = v4_udp(tenant_v4(METERED));
    let side = |label: &str, rx, generator, frame: &Vec<u8>, threads, expect| Side {
        label: label.to_string(),
        rx,
        generator,
        frame: frame.clone(),
        threads,
        expect,
    };
    let gen = program::XDP_BENCH_GEN;
    let drop_path = side(
        "warden drop path (plan exhausted), 1 core",
        Rx::Warden,
        gen,
        &drop_frame,
        1,
        Expect::Dropped,
    );
    let xdp_drop = side(
        "bare XDP_DROP, 1 core",
        Rx::Drop,
        gen,
        &drop_frame,
        1,
        Expect::Other,
    );
    let nft = side(
        "nftables raw prerouting drop, 1 core",
        Rx::Nft,
        gen,
        &drop_frame,
        1,
        Expect::Other,
    );
    vec![
        Comparison {
            name: "drop path vs bare XDP_DROP",
            case: drop_path.clone(),
            baseline: xdp_drop.clone(),
            bar: Some(BAR_VS_XDP_DROP),
            bar_text: ">= 0.8 x XDP_DROP",
        },
        Comparison {
            name: "drop path vs nftables raw drop",
            case: drop_path.clone(),
            baseline: nft.clone(),
            bar: Some(BAR_VS_NFT),
            bar_text: ">= 3 x nftables",
        },
        // The most any drop program can show against nftables here: the generator's
        // share of each frame is in both sides.
        Comparison {
            name: "reference: bare XDP_DROP vs nftables raw drop",
            case: xdp_drop.clone(),
            baseline: nft,
            bar: None,
            bar_text: "(what this machine allows)",
        },
        Comparison {
            name: "meter and pass vs bare XDP_PASS",
            case: side(
                "warden meter and pass (plan conforming), 1 core",
                Rx::Warden,
                gen,
                &pass_frame,
                1,
                Expect::Passed,
            ),
            baseline: side(
                "bare XDP_PASS, 1 core",
                Rx::Pass,
                gen,
                &pass_frame,
                1,
                Expect::Other,
            ),
            bar: Some(BAR_VS_XDP_PASS),
            bar_text: ">= 0.9 x XDP_PASS",
        },
        Comparison {
            name: "1,000,000-source random flood vs fixed source",
            case: side(
                "warden, IPv6 flood from 1,000,000 random sources (drop), 1 core",
                Rx::Warden,
                program::XDP_BENCH_GEN_SOURCES,
                &flood_frame(FLOOD_SOURCES),
                1,
                Expect::Dropped,
            ),
            baseline: side(
                "warden, IPv6 flood from one source (drop), 1 core",
                Rx::Warden,
                program::XDP_BENCH_GEN_SOURCES,
                &flood_frame(1),
                1,
                Expect::Dropped,
            ),
            bar: Some(BAR_FLOOD),
            bar_text: ">= 0.5 x fixed source",
        },
        Comparison {
            name: "drop path, 2 cores vs 1 core",
            case: Side {
                label: "warden drop path (plan exhausted), 2 cores".into(),
                threads: 2,
                ..drop_path.clone()
            },
            baseline: drop_path,
            bar: Some(BAR_TWO_CORES),
            bar_text: ">= 1.8 x 1 core",
        },
        Comparison {
            name: "reference: bare XDP_DROP, 2 cores vs 1 core",
            case: Side {
                label: "bare XDP_DROP, 2 cores".into(),
                threads: 2,
                ..xdp_drop.clone()
            },
            baseline: xdp_drop,
            bar: None,
            bar_text: "(what this machine allows)",
        },
    ]
}
