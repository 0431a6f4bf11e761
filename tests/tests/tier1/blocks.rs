//! The daemon's runtime state in the kernel: blocks (victim, port, blackhole,
//! listening port), throttles and capture, each until it expires.

use warden::dataplane::FactCounters;
use warden_common::{
    direction,
    facts::{event, fact_counter, outcome, runtime_flags, BlockKey, TenantRuntime, SAMPLE_BYTES},
    reason, Rate,
};
use warden_tests::packets::{proto, tcp, Frame, L4};

use crate::{
    bandwidth::{police_run, PLAN, PLAN_FRAME},
    facts_harness::*,
    fixture_policy::*,
    frames::*,
    harness::*,
};

/// One hour from now, on the programs' clock.
fn in_an_hour() -> u64 {
    monotonic_ns() + 3_600_000_000_000
}

/// Blocks, for a tenant whose runtime flags say it has some: a victim block drops
/// from-tenant packets to that address only (reason blocked), a port block from-tenant
/// TCP and UDP to that port only, a blackhole everything to that tenant address
/// (reason blackhole), a listening-port block to-tenant TCP and UDP to that port only;
/// an expired block and blocks of a tenant without the flag pass. Each block drop is
/// counted in FACT_COUNTERS BLOCKED, and the facts are recorded before the block.
#[test]
fn blocks_drop_only_their_victim_port_or_blackholed_address_until_they_expire() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let until = in_an_hour();
    let key = |dir: u32, family: u8, port: u16, addr: [u8; 16]| BlockKey {
        tenant: TENANT_A,
        dir: dir as u8,
        family,
        port,
        addr,
    };
    let (out, inn) = (direction::OUT, direction::IN);
    dp.set_block(key(out, 4, 0, e4(U)), until);
    dp.set_block(key(out, 6, 0, e6(U6)), until);
    dp.set_block(key(out, 0, 6667, [0; 16]), until);
    dp.set_block(key(inn, 4, 0, e4(A)), until);
    dp.set_block(key(inn, 0, 8080, [0; 16]), until);
    dp.set_block(key(out, 4, 0, e4(U2)), monotonic_ns() - 1);
    // Tenant B has a block but not the flag: never looked up.
    dp.set_block(
        BlockKey {
            tenant: TENANT_B,
            ..key(out, 4, 0, e4(U))
        },
        until,
    );
    let rows = |blocked: RunOutcome, blackholed: RunOutcome| {
        vec![
            fx("SYN A -> victim U", ip4(A, U, syn()), blocked, NO_TENANT),
            fx("UDP A -> victim U", ip4(A, U, udp()), blocked, NO_TENANT),
            fx(
                "SYN A6 -> victim U6",
                ip6(A6, U6, syn()),
                blocked,
                NO_TENANT,
            ),
            fx(
                "SYN A -> U2 (expired block)",
                ip4(A, U2, syn()),
                TA,
                NO_TENANT,
            ),
            fx("SYN A -> U3:443", ip4(A, U3, syn()), TA, NO_TENANT),
            fx(
                "SYN A -> U3:6667 (port block)",
                ip4(A, U3, syn_to(6667)),
                blocked,
                NO_TENANT,
            ),
            fx(
                "UDP A -> U3:6667 (port block)",
                ip4(A, U3, L4::udp(1, 6667)),
                blocked,
                NO_TENANT,
            ),
            fx(
                "echo A -> U3 (no port)",
                ip4(A, U3, L4::echo_request(1, 1)),
                TA,
                NO_TENANT,
            ),
            fx(
                "UDP U -> A (blackhole)",
                ip4(U, A, udp()),
                SPOOFED,
                blackholed,
            ),
            fx(
                "SYN U -> A (blackhole)",
                ip4(U, A, syn()),
                SPOOFED,
                blackholed,
            ),
            fx(
                "SYN U -> A2:8080 (listen port)",
                ip4(U, A2, syn_to(8080)),
                SPOOFED,
                blocked_to(blocked),
            ),
            fx(
                "UDP U -> A2:8080 (listen port)",
                ip4(U, A2, L4::udp(1, 8080)),
                SPOOFED,
                blocked_to(blocked),
            ),
            fx("SYN U -> A2:80", ip4(U, A2, syn_to(80)), SPOOFED, TA),
            fx(
                "SYN B -> victim U (B has no flag)",
                ip4(B, U, syn()),
                TB,
                NO_TENANT,
            ),
        ]
    };
    // Without the flag nothing is looked up.
    let failures = run_rows(&dp, &rows(TA, TA));
    assert_no_failures(&failures, 14 * 4);
    dp.drain();

    dp.set_runtime(
        TENANT_A,
        TenantRuntime {
            flags: runtime_flags::BLOCKS,
            ..TenantRuntime::default()
        },
    );
    let facts = dp.fact_counters();
    let table = rows(
        dropped(TENANT_A, reason::BLOCKED),
        dropped(TENANT_A, reason::BLACKHOLE),
    );
    let failures = run_rows(&dp, &table);
    assert_no_failures(&failures, table.len() * 4);
    // 5 from-tenant rows blocked and 4 to-tenant rows, each through 2 programs.
    let moved = fact_delta(&facts, &dp.fact_counters());
    assert_eq!(moved[fact_counter::BLOCKED as usize], 18, "BLOCKED count");
    dp.drain();
    // Facts are recorded whatever the verdict: a blocked first contact is still an
    // attempt, logged as dropped by Warden (its outcome known: it never left), and
    // nothing waits in the pending table for an answer.
    let blocked = dropped(TENANT_A, reason::BLOCKED);
    let (got, window) = dp.run_facts(Prog::XdpFrom, "new SYN", &ip4(A, U, syn_to(7)), blocked, 1);
    let want = ev(
        event::ATTEMPT,
        direction::OUT,
        proto::TCP,
        outcome::DROPPED,
        (e4(A), 40000),
        (e4(U), 7),
    );
    assert_events("a blocked first contact", &got, &[want], window);
    let (got, window) = dp.run_facts(Prog::TcFrom, "new SYN", &ip4(A, U, syn_to(8)), blocked, 1);
    let want = ev(
        event::ATTEMPT,
        direction::OUT,
        proto::TCP,
        outcome::DROPPED,
        (e4(A), 40000),
        (e4(U), 8),
    );
    assert_events("a blocked first contact at tc", &got, &[want], window);
    // Its answer (were one to come) finds no pending attempt: no OUTCOME. (A is
    // blackholed: the facts are recorded all the same.)
    let answer = ip4(U, A, L4::tcp(7, 40000, tcp::SYN | tcp::ACK));
    let blackholed = dropped(TENANT_A, reason::BLACKHOLE);
    let (got, window) = dp.run_facts(Prog::XdpTo, "SYN-ACK", &answer, blackholed, 1);
    assert_events("an answer to a dropped attempt", &got, &[], window);
}

/// To-tenant rows of the blocks table: the outcome of a listen-port block.
fn blocked_to(blocked: RunOutcome) -> RunOutcome {
    match blocked {
        RunOutcome::Drop { tenant, .. } => dropped(tenant, reason::BLOCKED),
        other => other,
    }
}

/// A throttle replaces the policy's plan with `TenantRuntime::throttle` in the same
/// bucket while `throttle_until_ns` is ahead: tenant P has no plan, but throttled to
/// [`PLAN`] it passes `burst / cost + 1` frames and drops the rest for bandwidth, both
/// ways. An expired throttle, or one without the THROTTLE flag, polices nothing.
#[test]
fn a_throttle_polices_an_unlimited_tenant_until_it_expires() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let cost = gcra_cost(&PLAN, PLAN_FRAME as u64);
    let conforming = PLAN.burst_ns / cost + 1;
    let throttle = |flags, until| TenantRuntime {
        flags,
        throttle: [PLAN, PLAN],
        throttle_until_ns: until,
        ..TenantRuntime::default()
    };
    for prog in Prog::ALL {
        dp.set_bucket(TENANT_P, prog.dir(), 0)
            .expect("zeroing the bucket");
        dp.set_runtime(TENANT_P, throttle(runtime_flags::THROTTLE, in_an_hour()));
        police_run(&dp, prog, 50, conforming);
        dp.set_bucket(TENANT_P, prog.dir(), 0)
            .expect("zeroing the bucket");
        dp.set_runtime(
            TENANT_P,
            throttle(runtime_flags::THROTTLE, monotonic_ns() - 1),
        );
        police_run(&dp, prog, 30, 30);
        dp.set_runtime(TENANT_P, throttle(0, in_an_hour()));
        police_run(&dp, prog, 30, 30);
    }
}

/// capture = 3: the next 3 frames of the tenant (whatever their verdict: an SMTP drop
/// among them) go to the ring as SampleEvents carrying the first min(len, 128) bytes,
/// the rest zero; then none. The count is down to 0 and SAMPLES counted 3.
#[test]
fn capture_sends_exactly_the_requested_number_of_frames_as_samples() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    for prog in Prog::ALL {
        let (frames, outcomes): (Vec<Frame>, Vec<RunOutcome>) = if prog.dir() == direction::OUT {
            (
                vec![
                    ip4(A, U, syn_to(25)),
                    ip4(A, U, L4::udp(1, 9).with_payload(&[0xa5; 300])),
                    ip6(A6, U6, syn()),
                    ip4(A, U, syn()),
                    ip4(A, U2, syn()),
                ],
                vec![smtp(TENANT_A), TA, TA, TA, TA],
            )
        } else {
            (
                vec![
                    ip4(U, A, syn_to(25)),
                    ip4(U, A, L4::udp(1, 9).with_payload(&[0xa5; 300])),
                    ip6(U6, A6, syn()),
                    ip4(U, A, syn()),
                    ip4(U2, A, syn()),
                ],
                vec![TA; 5],
            )
        };
        dp.set_runtime(
            TENANT_A,
            TenantRuntime {
                capture: 3,
                ..TenantRuntime::default()
            },
        );
        let facts = dp.fact_counters();
        let mut samples = Vec::new();
        for (i, (frame, outcome)) in frames.iter().zip(&outcomes).enumerate() {
            let (got, (t0, _)) = dp.run_facts(prog, &format!("frame {i}"), frame, *outcome, 1);
            // A sample's time is the precise clock's: at or after the coarse start, at or
            // before a precise reading taken after the run.
            let window = (t0, precise_monotonic_ns());
            for r in got {
                if let Record::Sample(s) = r {
                    samples.push((i, s, window));
                }
            }
        }
        assert_eq!(samples.len(), 3, "[{prog}] samples: {samples:?}");
        for (i, s, (t0, t1)) in samples {
            let bytes = frames[i].build();
            let cap = bytes.len().min(SAMPLE_BYTES);
            assert!(i < 3, "[{prog}] frame {i} captured after the count ran out");
            assert_eq!(
                (s.kind, s.tenant, s.dir, s.orig_len, s.cap_len),
                (
                    event::SAMPLE,
                    TENANT_A,
                    prog.dir(),
                    bytes.len() as u32,
                    cap as u32
                ),
                "[{prog}] frame {i}"
            );
            assert!((t0..=t1).contains(&s.at), "[{prog}] frame {i}: at");
            assert_eq!(&s.data[..cap], &bytes[..cap], "[{prog}] frame {i}: bytes");
            assert!(
                s.data[cap..].iter().all(|b| *b == 0),
                "[{prog}] frame {i}: tail"
            );
        }
        assert_eq!(dp.runtime(TENANT_A).capture, 0, "[{prog}] capture count");
        let moved = fact_delta(&facts, &dp.fact_counters());
        assert_eq!(moved[fact_counter::SAMPLES as usize], 3, "[{prog}] SAMPLES");
    }
}

/// A ring really full: capture asked for more frames than the 4 MiB ring holds, in one
/// run without the daemon reading. What fits is sent (SAMPLES, each record in the
/// ring); the rest is LOST_RING, which `FactCounters::lost` (so
/// `warden_events_lost_total`) counts, and nothing is over budget (samples are not
/// budgeted).
#[test]
fn a_full_ring_counts_lost_ring_as_lost_and_nothing_over_budget() {
    const FRAMES: u32 = 30_000;
    let record = (std::mem::size_of::<warden_common::facts::SampleEvent>() + 8) as u32;
    assert!(
        FRAMES > warden_common::facts::EVENTS_RING_BYTES / record,
        "the run must overflow the ring"
    );
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    dp.set_runtime(
        TENANT_A,
        TenantRuntime {
            capture: FRAMES as i32,
            ..TenantRuntime::default()
        },
    );
    let facts = dp.fact_counters();
    let frame = ip4(U, A, L4::udp(1, 9).with_payload(&[0xa5; 300]));
    let (got, _) = dp.run_facts(Prog::XdpTo, "capture", &frame, TA, FRAMES);
    let moved = fact_delta(&facts, &dp.fact_counters());
    let (samples, lost_ring) = (
        moved[fact_counter::SAMPLES as usize],
        moved[fact_counter::LOST_RING as usize],
    );
    assert_eq!(samples + lost_ring, u64::from(FRAMES), "{moved:?}");
    assert!(lost_ring > 0, "the ring never filled: {moved:?}");
    let in_ring = got
        .iter()
        .filter(|r| matches!(r, Record::Sample(_)))
        .count();
    assert_eq!(in_ring as u64, samples, "samples in the ring");
    let exported = FactCounters::from_sums(&moved);
    assert_eq!(
        (exported.lost(), exported.over_budget),
        (lost_ring, 0),
        "lost, and nothing over budget"
    );
}

/// Containment (`runtime_flags::CONTAIN`): the contained tenant's first new contact in
/// an interval passes, the next new ones are dropped as `blocked` (a SYN, a datagram, an
/// echo request), each logged as an attempt dropped by Warden; a dropped SYN's
/// retransmission is dropped again (it stays out of the contact filter); a contact
/// already made and a segment of an established flow pass; an expired containment, or
/// one without the flag, drops nothing. Both from-tenant programs.
#[test]
fn containment_passes_a_first_contact_per_interval_and_drops_the_rest_until_it_expires() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let blocked = dropped(TENANT_A, reason::BLOCKED);
    // One first contact per 100 s: no second one passes while the test runs.
    let contain = |flags, until| TenantRuntime {
        flags,
        contain: Rate::from_events_per_second(0.01, 1),
        contain_until_ns: until,
        ..TenantRuntime::default()
    };
    for (i, prog) in Prog::FROM.into_iter().enumerate() {
        let base = 1000 + 100 * i as u16;
        dp.set_runtime(TENANT_A, contain(runtime_flags::CONTAIN, in_an_hour()));
        let attempt = |port, detail| {
            ev(
                event::ATTEMPT,
                direction::OUT,
                proto::TCP,
                detail,
                (e4(A), 40000),
                (e4(U), port),
            )
        };
        let (got, w) = dp.run_facts(prog, "first SYN", &ip4(A, U, syn_to(base)), TA, 1);
        assert_events("the first new contact", &got, &[attempt(base, 0)], w);
        let second = ip4(A, U, syn_to(base + 1));
        let (got, w) = dp.run_facts(prog, "second SYN", &second, blocked, 1);
        let want = [attempt(base + 1, outcome::DROPPED)];
        assert_events("a contained first contact", &got, &want, w);
        let (got, w) = dp.run_facts(prog, "its retransmission", &second, blocked, 1);
        assert_events("a contained retransmission", &got, &want, w);
        dp.run_facts(
            prog,
            "the made contact again",
            &ip4(A, U, syn_to(base)),
            TA,
            1,
        );
        let ack = ip4(A, U, L4::tcp(40000, base + 1, tcp::ACK));
        dp.run_facts(prog, "an established segment", &ack, TA, 1);
        let dns = ip4(A, U2, L4::udp(5353, base + 2));
        dp.run_facts(prog, "a new datagram", &dns, blocked, 1);
        let echo = ip4(A, U3, L4::echo_request(1, 1));
        dp.run_facts(prog, "a new echo request", &echo, blocked, 1);
        dp.drain();
        // The containment's bucket is the programs': the entry carries its clock.
        assert_ne!(
            dp.runtime(TENANT_A).contain_tat,
            0,
            "{prog}: bucket untouched"
        );
        dp.set_runtime(
            TENANT_A,
            contain(runtime_flags::CONTAIN, monotonic_ns() - 1),
        );
        dp.run_facts(prog, "after expiry", &second, TA, 1);
        dp.set_runtime(TENANT_A, contain(0, in_an_hour()));
        dp.run_facts(
            prog,
            "without the flag",
            &ip4(A, U, syn_to(base + 3)),
            TA,
            1,
        );
        dp.drain();
    }
}
