//! The throughput part's arithmetic: checksums, frames, rates, medians and ratios.

use super::{
    comparisons::{flood_frame, ipv4_checksum, v4_udp},
    figures::{median, pair_ratio, summed_rate},
    programs::tenant_v4,
    Run, FLOOD_FIRST, FLOOD_SOURCES, METERED,
};

#[test]
fn ipv4_checksum_of_a_known_header() {
    // The example header of RFC 1071 practice: checksum 0xb861.
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(ipv4_checksum(&h), 0xb861);
    let f = v4_udp(tenant_v4(METERED));
    assert_eq!(ipv4_checksum(&f[14..34]), 0, "a valid header sums to zero");
}

#[test]
fn median_of_odd_and_even() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
}

#[test]
fn flood_frame_carries_count_and_first_source() {
    let f = flood_frame(FLOOD_SOURCES);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    assert_eq!(&f[62..66], &FLOOD_SOURCES.to_be_bytes());
    assert_eq!(&f[66..70], &FLOOD_FIRST.octets()[12..16]);
    assert_eq!(&f[22..38], &FLOOD_FIRST.octets());
}

#[test]
fn summed_rate_adds_each_threads_own_rate() {
    // One thread: its queue over its time.
    assert!((summed_rate(&[1_000_000, 0], &[0.2]) - 5.0).abs() < 1e-9);
    // Two threads, the second slower: 5 + 4 Mpps (the wall time of the slower
    // would say 2,000,000 / 0.25 s = 8).
    assert!((summed_rate(&[1_000_000, 1_000_000], &[0.2, 0.25]) - 9.0).abs() < 1e-9);
    // Thread 1 feeds queue 1, not queue 0.
    assert!((summed_rate(&[500_000, 1_000_000], &[0.1, 0.5]) - 7.0).abs() < 1e-9);
}

#[test]
fn pair_ratio_is_median_of_pairs() {
    let r = |arrived| Run {
        mpps: arrived as f64 / 1e6,
        arrived,
        per_queue: vec![arrived],
        cpu_share: 1.0,
        lost: 0,
        seconds: 1.0,
        thread_seconds: vec![1.0],
        thread_sent: vec![arrived],
        late: 0,
    };
    let case = [r(8), r(9), r(100)];
    let base = [r(10), r(10), r(10)];
    assert!((pair_ratio(&case, &base) - 0.9).abs() < 1e-9);
}
