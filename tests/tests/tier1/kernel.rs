//! What the kernel itself accepts (test-run refusals), verdict values, byte counts,
//! repeated runs; the object's maps and the verifier's budget.

use std::collections::{BTreeMap, BTreeSet};

use warden_common::{direction, map, program};
use warden_tests::packets::{len, Frame, L4};

use crate::{fixture_policy::*, frames::*, harness::*};

/// `BPF_PROG_TEST_RUN` refuses data shorter than an Ethernet header (EINVAL) for
/// both XDP and skb programs, so the parser's own "no Ethernet header" branch cannot
/// be reached from a test run (0-byte frames included); nothing is counted.
#[test]
fn kernel_refuses_test_runs_shorter_than_14_bytes_and_nothing_is_counted() {
    let dp = TestDataplane::load().expect("loading the dataplane");
    let frame = Frame::new(v4(A, B).l4(syn())).build();
    let mut failures = Vec::new();
    for prog in Prog::ALL {
        for n in 0..len::ETH {
            let what = format!("first {n} bytes of an IPv4 TCP frame");
            failures.extend(check(&dp, prog, &what, &frame[..n], RunExpect::Refused));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The kernel refuses skb test runs (tc) of frames with an IPv4 or IPv6 ethertype that
/// end inside the fixed IP header, whatever the header's contents; so the tc
/// programs' MALFORMED path for such frames is only reachable here behind a VLAN tag
/// (the kernel only looks at the outer ethertype). XDP takes them all and counts them
/// MALFORMED (dropped from-tenant, passed to-tenant); from the full fixed header on,
/// tc runs them too.
#[test]
#[rustfmt::skip]
fn kernel_refuses_tc_test_runs_of_ip_frames_cut_inside_the_ip_header() {
    let dp = TestDataplane::load().expect("loading the dataplane");
    let mut failures = Vec::new();
    let v4 = ip4(A, B, syn()).build();
    let v6 = ip6(A6, B6, syn()).build();
    let v4_tagged = ip4(A, B, syn()).vlan(1).build();
    let v6_tagged = ip6(A6, B6, syn()).vlan(1).build();
    let header4 = len::ETH + len::IPV4;
    let header6 = len::ETH + len::IPV6;
    for prog in Prog::ALL {
        let malformed = RunExpect::Ran(malformed_outcome(prog));
        let cut = if prog.is_xdp() { malformed } else { RunExpect::Refused };
        for n in len::ETH..header4 {
            failures.extend(check(&dp, prog, &format!("IPv4 cut at {n}"), &v4[..n], cut));
            failures.extend(check(&dp, prog, &format!("802.1Q IPv4 cut at {}", n + 4), &v4_tagged[..n + 4], malformed));
        }
        for n in len::ETH..header6 {
            failures.extend(check(&dp, prog, &format!("IPv6 cut at {n}"), &v6[..n], cut));
            failures.extend(check(&dp, prog, &format!("802.1Q IPv6 cut at {}", n + 4), &v6_tagged[..n + 4], malformed));
        }
        // The fixed header is there, TCP is not: every program runs and counts MALFORMED.
        failures.extend(check(&dp, prog, "IPv4 cut after the IP header", &v4[..header4], malformed));
        failures.extend(check(&dp, prog, "IPv6 cut after the IP header", &v6[..header6], malformed));
    }
    assert!(failures.is_empty(), "{} failures:\n  {}", failures.len(), failures.join("\n  "));
}

/// The verdict values the kernel reports: XDP_PASS 2 and XDP_DROP 1; the tc programs
/// return TC_ACT_UNSPEC (-1, TCX_NEXT; a SchedClassifier test run reports u32::MAX)
/// to pass and TC_ACT_SHOT (2) to drop.
#[test]
fn verdicts_are_reported_as_xdp_pass_2_drop_1_and_tc_unspec_u32_max_shot_2() {
    let dp = TestDataplane::load().expect("loading the dataplane");
    let pass = ip4(A, B, syn()).build();
    let drop_from = ip4(A, U, syn_to(25)).build();
    let drop_to = ip4(U, S, syn()).build();
    for prog in Prog::ALL {
        let got = dp.run(prog, &pass).expect("test run");
        let want = if prog.is_xdp() { 2 } else { u32::MAX };
        assert_eq!(got, want, "[{prog}] pass");
        let drop = if prog.dir() == direction::OUT {
            &drop_from
        } else {
            &drop_to
        };
        let got = dp.run(prog, drop).expect("test run");
        let want = if prog.is_xdp() { 1 } else { 2 };
        assert_eq!(got, want, "[{prog}] drop");
    }
}

/// Byte counters are the frame length as the hook sees it, for XDP (data_end - data)
/// and tc (skb->len) alike, below, at and beyond the parser's 128-byte depth and for
/// full-size frames; dropped frames count their bytes to the tenant too.
#[test]
fn byte_counters_equal_the_frame_length_for_xdp_and_tc_at_every_size() {
    let mut t = Vec::new();
    for size in [54, 60, 64, 127, 128, 129, 200, 512, 1514, 3000] {
        t.push(fx(
            &format!("IPv4 TCP A -> B padded to {size}"),
            Frame::new(v4(A, B).l4(syn())).pad_to(size),
            TA,
            TB,
        ));
        t.push(fx(
            &format!("IPv4 TCP SYN :25 A -> S padded to {size}"),
            Frame::new(v4(A, S).l4(syn_to(25))).pad_to(size),
            smtp(TENANT_A),
            suspended(TENANT_S),
        ));
        if size >= 62 {
            t.push(fx(
                &format!("IPv6 UDP B6 -> A6 padded to {size}"),
                Frame::new(v6(B6, A6).l4(L4::udp(1, 2))).pad_to(size),
                TB,
                TA,
            ));
        }
    }
    run_table(&t);
}

/// With `repeat`, every repetition is metered: N packets and N * len bytes. The
/// benchmark relies on this (its counters grow by `repeat` per run).
#[test]
fn repeated_test_runs_count_every_repetition() {
    let dp = TestDataplane::load().expect("loading the dataplane");
    let frame = Frame::new(v4(A, B).l4(syn())).build();
    for prog in Prog::ALL {
        let before = dp.snapshot().expect("reading counters");
        let got = dp.run_repeat(prog, &frame, 1000).expect("test run");
        assert_eq!(got, prog.retval(Verdict::Pass), "[{prog}]");
        let after = dp.snapshot().expect("reading counters");
        let tenant = if prog.dir() == direction::OUT { TA } else { TB };
        let want = tenant.changes(prog.dir(), frame.len(), 1000);
        assert_eq!(changes(&before, &after), want, "[{prog}]");
    }
}

/// The object holds exactly the maps of the table in `warden_common::map` (the ones the
/// daemon pins and the programs' own), each as its row has it: kind, key and value size,
/// capacity and flags, as the kernel created them (the attempt log sized by the loader
/// for this machine's CPUs, as the daemon sizes it).
#[test]
fn the_objects_maps_are_the_abi_table() {
    use aya::maps::Map;
    use warden_common::facts::log_entries;
    let ebpf = TestDataplane::load_object().expect("loading the eBPF object");
    let cpus = aya::util::nr_cpus().expect("possible CPUs") as u32;
    let mut got = BTreeMap::new();
    for (name, m) in ebpf.maps() {
        let data = match m {
            Map::Array(d)
            | Map::PerCpuArray(d)
            | Map::HashMap(d)
            | Map::LruHashMap(d)
            | Map::LpmTrie(d) => d,
            Map::RingBuf(d) => d,
            _ => panic!("map {name}: a kind the table does not have"),
        };
        let info = data.info().expect("map info");
        got.insert(
            name.to_string(),
            (
                info.map_type().expect("map type") as u32,
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags(),
            ),
        );
    }
    let want: BTreeMap<_, _> = map::PINNED
        .iter()
        .chain(&map::INTERNAL)
        .map(|d| {
            let entries = if d.name == map::ATTEMPT_LOG {
                log_entries(cpus)
            } else {
                d.max_entries
            };
            (
                d.name.to_string(),
                (d.kind as u32, d.key_size, d.value_size, entries, d.flags),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "the object's maps (kind, key, value, entries, flags) differ from the table"
    );
}

/// The object the daemon loads holds the enforcing programs and nothing else: the
/// benchmark's programs are in an object of their own.
#[test]
fn the_daemons_object_holds_only_the_enforcing_programs() {
    let ebpf = TestDataplane::load_object().expect("loading the eBPF object");
    let got: BTreeSet<&str> = ebpf.programs().map(|(name, _)| name).collect();
    let want: BTreeSet<&str> = program::ENFORCING.into_iter().collect();
    assert_eq!(got, want);
}

/// The verifier's limit on instructions processed per program.
const VERIFIER_LIMIT: u32 = 1_000_000;

/// Every program loads with at least half the verifier's budget to spare: the
/// per-packet path is inlined into each hook, and every branch added to it multiplies
/// the states the verifier walks. A program that creeps towards the limit fails here,
/// with its figure, before it fails to load in the field.
#[test]
fn every_program_verifies_within_half_the_verifiers_instruction_limit() {
    let dp = TestDataplane::load().expect("loading the dataplane");
    let mut over = Vec::new();
    for prog in Prog::ALL {
        let p = dp.ebpf.program(prog.name()).expect("loaded");
        let info = match p {
            aya::programs::Program::Xdp(x) => x.info(),
            aya::programs::Program::SchedClassifier(c) => c.info(),
            _ => panic!("{prog}: unexpected program type"),
        }
        .expect("program info");
        let n = info
            .verified_instruction_count()
            .expect("kernel reports verified_insns");
        eprintln!("{prog}: {n} instructions processed by the verifier");
        if n > VERIFIER_LIMIT / 2 {
            over.push(format!("{prog}: {n}"));
        }
    }
    assert!(over.is_empty(), "over half the verifier's limit: {over:?}");
}
