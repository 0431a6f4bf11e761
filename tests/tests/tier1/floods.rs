//! Flood facts: the count-min sketch per flood epoch, FLOOD events once per epoch and
//! class, batched counting for large thresholds; and the per-tenant event budget.

use std::net::Ipv4Addr;

use warden_common::{
    bucket, direction,
    facts::{
        class, event, fact_counter, flood_quantum, fold_addr, sketch_index, sketch_key, Event,
        FLOOD_EPOCH_SHIFT, REPORTED_SLOTS, SKETCH_COUNT_BITS, SKETCH_ROWS,
    },
    map, Rate,
};
use warden_tests::packets::{proto, tcp, Frame, L4};

use warden::dataplane::FactCounters;

use crate::{facts_harness::*, fixture_policy::*, frames::*, harness::*};

/// Runs `n` repetitions of `frame` through `prog` within one flood epoch (retrying a
/// run that straddled an epoch boundary, at most 3 times with a fresh `make`), and
/// returns the records, the window, and the epoch.
fn flood_run(
    dp: &mut TestDataplane,
    prog: Prog,
    make: impl Fn(usize) -> Frame,
    outcome: RunOutcome,
    n: u32,
) -> (Vec<Record>, (u64, u64), u64, usize) {
    for attempt in 0..3 {
        let (got, window) = dp.run_facts(prog, "flood", &make(attempt), outcome, n);
        if window.0 >> FLOOD_EPOCH_SHIFT == window.1 >> FLOOD_EPOCH_SHIFT {
            return (got, window, window.0 >> FLOOD_EPOCH_SHIFT, attempt);
        }
    }
    panic!("three flood runs in a row straddled a flood epoch boundary");
}

/// flood_out_syn = 50: 60 SYNs at one victim in one flood epoch send exactly one FLOOD
/// event (class SYN, value 51: the estimate when it went strictly above 50; the
/// crossing packet's ports), besides the first SYN's ATTEMPT; 60 more in the same
/// epoch send nothing. Both sketch rows hold the epoch and the count; REPORTED holds
/// the epoch and the key. A class without a threshold (UDP packets here) is not
/// counted at all.
#[test]
fn syns_at_one_victim_over_flood_out_syn_send_exactly_one_flood_event_per_epoch() {
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_A).flood = (50, 0, 0, 0);
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    // Each program floods its own victims (a fresh one for a retried run).
    let victims = [[U, U2, U3], [1, 2, 3].map(|h| Ipv4Addr::new(198, 19, 8, h))];
    for (prog, victims) in Prog::FROM.into_iter().zip(victims) {
        let make = |k: usize| ip4(A, victims[k], syn_to(80));
        let (got, window, epoch, k) = flood_run(&mut dp, prog, make, TA, 60);
        let victim = e4(victims[k]);
        let attempt = ev(
            event::ATTEMPT,
            direction::OUT,
            proto::TCP,
            0,
            (e4(A), 40000),
            (victim, 80),
        );
        let mut flood = ev(
            event::FLOOD,
            direction::OUT,
            proto::TCP,
            class::SYN,
            (e4(A), 40000),
            (victim, 80),
        );
        flood.value = 51;
        flood.threshold = 50;
        assert_events(
            &format!("[{prog}] 60 SYNs"),
            &got,
            &[attempt, flood],
            window,
        );

        let key = sketch_key(TENANT_A, class::SYN, fold_addr(&victim));
        let (again, window2) = dp.run_facts(prog, "60 more", &make(k), TA, 60);
        if window2.1 >> FLOOD_EPOCH_SHIFT != epoch {
            // The epoch ended in between: a new epoch crosses again, which is right
            // but not what this fixture checks. Nothing more to compare.
            eprintln!("[{prog}] the flood epoch ended between the runs; skipping the repeat check");
            continue;
        }
        assert_events(&format!("[{prog}] 60 more SYNs"), &again, &[], window2);
        for row in 0..SKETCH_ROWS {
            let counter = dp.word(map::SKETCH, sketch_index(key, row));
            assert_eq!(
                counter,
                ((epoch & 0xffff) << SKETCH_COUNT_BITS) | 120,
                "[{prog}] sketch row {row}"
            );
        }
        let slot = (key >> 20) as u32 & (REPORTED_SLOTS - 1);
        assert_eq!(
            dp.word(map::REPORTED, slot),
            (epoch << 32) | (key & 0xffff_ffff),
            "[{prog}] REPORTED"
        );
        // UDP at the same victim: PACKETS has no threshold, so no counter moves.
        let udp_key = sketch_key(TENANT_A, class::PACKETS, fold_addr(&victim));
        let udp = ip4(A, victims[k], L4::udp(40000, 9));
        dp.run_facts(prog, "UDP", &udp, TA, 10);
        for row in 0..SKETCH_ROWS {
            let counter = dp.word(map::SKETCH, sketch_index(udp_key, row));
            assert_eq!(
                counter & ((1 << SKETCH_COUNT_BITS) - 1),
                0,
                "[{prog}] UDP row {row}"
            );
        }
    }
}

/// flood_in_pkts = 20 and flood_in_bytes = 24 frames' worth: 30 UDP datagrams at one
/// tenant address in one epoch send one FLOOD IN_PACKETS (value 21) and one FLOOD
/// IN_BYTES (value 25 frames' worth), naming the attacked address as local.
#[test]
fn udp_at_a_tenant_address_over_flood_in_thresholds_sends_one_flood_in_event_per_class() {
    let len = ip4(U, A, L4::udp(40000, 9)).build().len() as u64;
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_A).flood = (0, 0, 20, 24 * len);
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let targets = [[A, A2, H_FREE], [A_ALT[0], A_ALT[1], A_ALT[2]]];
    for (prog, targets) in Prog::TO.into_iter().zip(targets) {
        let make = |k: usize| ip4(U, targets[k], L4::udp(40000, 9));
        let (got, window, _, k) = flood_run(&mut dp, prog, make, TA, 30);
        let at = |klass, value, threshold| {
            let mut e = ev(
                event::FLOOD,
                direction::IN,
                proto::UDP,
                klass,
                (e4(targets[k]), 9),
                (e4(U), 40000),
            );
            e.value = value;
            e.threshold = threshold;
            e
        };
        let want = [
            at(class::IN_PACKETS, 21, 20),
            at(class::IN_BYTES, 25 * len, 24 * len),
        ];
        assert_events(&format!("[{prog}] 30 datagrams"), &got, &want, window);
    }
}

/// A flood threshold of 100,000, whose batch is 97 (`flood_quantum`): each CPU counts
/// a key's packets in its own slot and adds them to the shared sketch 97 at a time
/// (for a known contact's SYN or an inbound SYN, in the main program itself while
/// they only add to the slot). For UDP datagrams and SYNs at a tenant address
/// (flood_in_pkts) and SYNs from the tenant at one victim (flood_out_syn): 100,000
/// packets send no FLOOD (the sketch never holds more than arrived, and not more than
/// the threshold; the first outbound SYN sends its ATTEMPT), the sketch holds a whole
/// number of batches, at most one batch per possible CPU short of what arrived; a
/// batch per possible CPU more sends exactly one FLOOD, whose value is above the
/// threshold by at most that much.
#[test]
fn a_large_flood_threshold_is_counted_in_batches_and_crosses_once() {
    const THRESHOLD: u32 = 100_000;
    let q = flood_quantum(THRESHOLD.into());
    assert_eq!(q, 97);
    let cpus = aya::util::nr_cpus().expect("possible CPUs") as u64;
    let cases = [
        ("UDP in", (0, 0, THRESHOLD, 0), Prog::TO, class::IN_PACKETS),
        ("SYN in", (0, 0, THRESHOLD, 0), Prog::TO, class::IN_PACKETS),
        ("SYN out", (THRESHOLD, 0, 0, 0), Prog::FROM, class::SYN),
    ];
    for (kind, flood, progs, klass) in cases {
        let mut policy = standard_policy();
        policy.tenant_mut(TENANT_A).flood = flood;
        let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
        let (to, from) = (
            [[A, A2, H_FREE], [A_ALT[0], A_ALT[1], A_ALT[2]]],
            [[U, U2, U3], [1, 2, 3].map(|h| Ipv4Addr::new(198, 19, 8, h))],
        );
        let places = if klass == class::SYN { from } else { to };
        for (prog, places) in progs.into_iter().zip(places) {
            let mut checked = false;
            for place in places {
                // 100,000 runs take a good part of a flood epoch (about 1.07 s) on a
                // slow or busy machine: start them just after an epoch begins.
                at_the_start_of_a_flood_epoch();
                let (frame, local, remote, proto) = match kind {
                    "UDP in" => (
                        ip4(U, place, L4::udp(40000, 9)),
                        (place, 9),
                        (U, 40000),
                        proto::UDP,
                    ),
                    "SYN in" => (ip4(U, place, syn_to(9)), (place, 9), (U, 40000), proto::TCP),
                    _ => (
                        ip4(A, place, syn_to(80)),
                        (A, 40000),
                        (place, 80),
                        proto::TCP,
                    ),
                };
                let what = format!("[{prog}] {kind}");
                let (got, window) = dp.run_facts(prog, &what, &frame, TA, THRESHOLD);
                // The programs' clock is coarse (it may read up to a few ms behind):
                // the runs must lie in one flood epoch with 20 ms to spare before them.
                let epoch = window.0.saturating_sub(20_000_000) >> FLOOD_EPOCH_SHIFT;
                let more = (cpus * q) as u32;
                let (got2, window2) = dp.run_facts(prog, &what, &frame, TA, more);
                if window2.1 >> FLOOD_EPOCH_SHIFT != epoch {
                    eprintln!("{what}: a flood epoch ended during the runs; next address");
                    continue;
                }
                let (local, remote) = ((e4(local.0), local.1), (e4(remote.0), remote.1));
                let dir = if klass == class::SYN {
                    direction::OUT
                } else {
                    direction::IN
                };
                let first: Vec<Event> = if klass == class::SYN {
                    vec![ev(event::ATTEMPT, dir, proto, 0, local, remote)]
                } else {
                    vec![]
                };
                // Event times are the coarse clock, cached per CPU and jiffy: a run
                // right after another may stamp a time up to a tick before it began.
                let early = |(t0, t1): (u64, u64)| (t0.saturating_sub(20_000_000), t1);
                let what_first = format!("{what}: {THRESHOLD} packets");
                assert_events(&what_first, &got, &first, early(window));
                let mut want = ev(event::FLOOD, dir, proto, klass, local, remote);
                want.threshold = THRESHOLD.into();
                let value = match got2.as_slice() {
                    [Record::Event(e)] => e.value,
                    other => panic!("{what}: one FLOOD expected, got {other:?}"),
                };
                assert!(
                    value > THRESHOLD.into() && value <= u64::from(THRESHOLD) + cpus * q,
                    "{what}: FLOOD value {value}: above {THRESHOLD} by at most {}",
                    cpus * q
                );
                want.value = value;
                assert_events(
                    &format!("{what}: {more} more"),
                    &got2,
                    &[want],
                    early(window2),
                );
                let victim = if klass == class::SYN {
                    remote.0
                } else {
                    local.0
                };
                let key = sketch_key(TENANT_A, klass, fold_addr(&victim));
                let sent = u64::from(THRESHOLD) + u64::from(more);
                for row in 0..SKETCH_ROWS {
                    let count = dp.word(map::SKETCH, sketch_index(key, row))
                        & ((1 << SKETCH_COUNT_BITS) - 1);
                    assert_eq!(
                        count % q,
                        0,
                        "{what} row {row}: {count} is whole batches of {q}"
                    );
                    assert!(
                        count <= sent && count + cpus * (q - 1) >= sent,
                        "{what} row {row}: {count} counted of {sent} sent (at most {} held)",
                        cpus * (q - 1)
                    );
                }
                checked = true;
                break;
            }
            assert!(
                checked,
                "[{prog}] {kind}: every attempt straddled a flood epoch boundary"
            );
        }
    }
}

/// Sleeps until 30 ms after the next flood epoch begins (the programs' coarse clock
/// may read a few ms behind this one; the callers allow 20 ms).
fn at_the_start_of_a_flood_epoch() {
    let now = monotonic_ns();
    let next = ((now >> FLOOD_EPOCH_SHIFT) + 1) << FLOOD_EPOCH_SHIFT;
    std::thread::sleep(std::time::Duration::from_nanos(next - now + 30_000_000));
}

/// Addresses of tenant A's /24 that no other fixture uses.
const H_FREE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const A_ALT: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 1, 13),
    Ipv4Addr::new(198, 18, 1, 14),
    Ipv4Addr::new(198, 18, 1, 15),
];

/// With a budget of 3 events back to back (and one per 100 s after), 10 first
/// contacts send 3 ATTEMPTs and count 7 as OVER_BUDGET (and an 11th through tcx one
/// more); their attempts are still pending, and the answer to a refused one is logged
/// (answers are not budgeted). The refusals are over budget, not lost: the daemon's
/// `warden_events_lost_total` (from `FactCounters::lost`) does not move, its
/// `warden_events_over_budget_total` (`FactCounters::over_budget`) does.
#[test]
fn an_exhausted_event_budget_counts_over_budget_not_lost_and_sends_no_more_attempts() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    dp.set_event_budget(Rate::from_events_per_second(0.01, 3));
    dp.set_bucket(TENANT_A, bucket::EVENTS, 0)
        .expect("zeroing the event bucket");
    let facts = dp.fact_counters();
    let mut sent = 0;
    for port in 3000..3010u16 {
        let (got, _) = dp.run_facts(Prog::XdpFrom, "SYN", &ip4(A, U, syn_to(port)), TA, 1);
        sent += got.len();
        let key = attempt_key(TENANT_A, proto::TCP, port, e4(U));
        assert_eq!(
            dp.pending(key).tag,
            key,
            "port {port}: pending even when not sent"
        );
    }
    assert_eq!(sent, 3, "3 ATTEMPTs within the budget");
    let (got, _) = dp.run_facts(Prog::TcFrom, "SYN", &ip4(A, U, syn_to(3010)), TA, 1);
    assert!(got.is_empty(), "the budget is per tenant, not per program");
    let answer = ip4(U, A, L4::tcp(3009, 40000, tcp::SYN | tcp::ACK));
    let (got, _) = dp.run_facts(Prog::XdpTo, "SYN-ACK", &answer, TA, 1);
    assert_eq!(got.len(), 1, "the answer to a lost attempt is logged");
    let moved = fact_delta(&facts, &dp.fact_counters());
    assert_eq!(
        moved,
        facts_moved(&[(fact_counter::LOGGED, 4), (fact_counter::OVER_BUDGET, 8)]),
        "fact counters"
    );
    let exported = FactCounters::from_sums(&moved);
    assert_eq!(
        (exported.over_budget, exported.lost()),
        (8, 0),
        "over budget, and nothing lost"
    );
}
