//! Bandwidth plans: the GCRA bucket per tenant and direction, burst and drops.

use warden_common::{direction, Rate};
use warden_tests::packets::L4;

use crate::{fixture_policy::*, frames::*, harness::*};

/// 8 kbit/s = 1,000 bytes/s, burst 1,000 bytes: a byte costs exactly 1 ms of bucket
/// time, so a [`PLAN_FRAME`]-byte frame costs 100 ms and the burst is 1 s. A test run
/// lasts microseconds: the clock does not move measurably within it.
pub(crate) const PLAN: Rate = Rate::from_bits_per_second(8_000, 1_000);
pub(crate) const PLAN_FRAME: usize = 100;

/// Frames of the plan tenant P, in `prog`'s direction.
fn plan_frame(prog: Prog) -> Vec<u8> {
    let l4 = L4::udp(40000, 9);
    let f = if prog.dir() == direction::OUT {
        ip4(P, U, l4)
    } else {
        ip4(U, P, l4)
    };
    let f = f.pad_to(PLAN_FRAME).build();
    assert_eq!(f.len(), PLAN_FRAME);
    f
}

/// Runs `n` repetitions of P's frame through `prog` and checks the counters: `n`
/// packets counted to P, `n - conforming` dropped for bandwidth, nothing else; the
/// last repetition's verdict is drop when any was dropped. Returns the run's clock
/// window.
pub(crate) fn police_run(dp: &TestDataplane, prog: Prog, n: u64, conforming: u64) -> (u64, u64) {
    let frame = plan_frame(prog);
    let before = dp.snapshot().expect("reading counters");
    let t0 = monotonic_ns();
    let r = dp.run_repeat(prog, &frame, n as u32).expect("test run");
    let t1 = monotonic_ns();
    let after = dp.snapshot().expect("reading counters");
    let last = if conforming < n {
        Verdict::Drop
    } else {
        Verdict::Pass
    };
    assert_eq!(
        r,
        prog.retval(last),
        "[{prog}] verdict of the last repetition"
    );
    let mut want = TP.changes(prog.dir(), frame.len(), n);
    if conforming < n {
        want.extend(
            bandwidth(TENANT_P)
                .changes(prog.dir(), frame.len(), n - conforming)
                .into_iter()
                .skip(1),
        );
    }
    want.sort();
    assert_eq!(
        changes(&before, &after),
        want,
        "[{prog}] {n} frames of {PLAN_FRAME} bytes: {conforming} should conform"
    );
    (t0, t1)
}

/// From an idle bucket, N back-to-back frames: `burst_ns / cost + 1` conform (the
/// first at TAT = now, each charging its cost), the rest are dropped for bandwidth
/// and not charged; TAT ends exactly `conforming * cost` past the first frame's clock.
/// The other direction's bucket does not move.
#[test]
fn a_bandwidth_plan_passes_burst_over_cost_plus_one_back_to_back_frames_and_drops_the_rest() {
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_P).rate = [PLAN, PLAN];
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let cost = gcra_cost(&PLAN, PLAN_FRAME as u64);
    assert_eq!(cost, 100_000_000, "100 bytes at 1,000 bytes/s");
    let conforming = PLAN.burst_ns / cost + 1;
    assert_eq!(conforming, 11);
    const N: u64 = 50;
    for prog in Prog::ALL {
        let dir = prog.dir();
        dp.set_bucket(TENANT_P, dir, 0).expect("zeroing the bucket");
        let other = dp.bucket(TENANT_P, 1 - dir).expect("reading the bucket");
        let (t0, t1) = police_run(&dp, prog, N, conforming);
        let tat = dp.bucket(TENANT_P, dir).expect("reading the bucket");
        let first = tat.wrapping_sub(conforming * cost);
        assert!(
            (t0..=t1).contains(&first),
            "[{prog}] TAT {tat} minus {conforming} x {cost} ns is {first}, not within the run [{t0}, {t1}]"
        );
        assert_eq!(
            dp.bucket(TENANT_P, 1 - dir).expect("reading the bucket"),
            other,
            "[{prog}] the other direction's bucket moved"
        );
    }
}

/// A bucket already 450 ms ahead of the clock has 550 ms of its 1 s burst left:
/// 5 frames of 100 ms fit in it plus the one at its edge, so 6 conform, and TAT
/// ends exactly 6 costs past where it stood.
#[test]
fn a_bandwidth_bucket_ahead_of_the_clock_admits_only_what_is_left_of_the_burst() {
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_P).rate = [PLAN, PLAN];
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let cost = gcra_cost(&PLAN, PLAN_FRAME as u64);
    const AHEAD: u64 = 450_000_000;
    let conforming = (PLAN.burst_ns - AHEAD) / cost + 1;
    assert_eq!(conforming, 6);
    for prog in Prog::ALL {
        let start = monotonic_ns() + AHEAD;
        dp.set_bucket(TENANT_P, prog.dir(), start)
            .expect("setting the bucket");
        police_run(&dp, prog, 20, conforming);
        let tat = dp.bucket(TENANT_P, prog.dir()).expect("reading the bucket");
        assert_eq!(tat, start + conforming * cost, "[{prog}] TAT");
    }
}

/// A plan on one direction polices that direction only: with an egress plan and no
/// ingress plan, to-tenant frames all pass and leave every bucket alone.
#[test]
fn a_bandwidth_plan_polices_only_its_own_direction() {
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_P).rate = [PLAN, Rate::UNLIMITED];
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let cost = gcra_cost(&PLAN, PLAN_FRAME as u64);
    for prog in Prog::ALL {
        dp.set_bucket(TENANT_P, direction::OUT, 0)
            .expect("zeroing the bucket");
        let before = [0, 1, 2].map(|w| dp.bucket(TENANT_P, w).expect("reading the bucket"));
        let conforming = if prog.dir() == direction::OUT {
            PLAN.burst_ns / cost + 1
        } else {
            30
        };
        police_run(&dp, prog, 30, conforming);
        let after = [0, 1, 2].map(|w| dp.bucket(TENANT_P, w).expect("reading the bucket"));
        if prog.dir() == direction::IN {
            assert_eq!(
                before, after,
                "[{prog}] an unlimited direction touched a bucket"
            );
        } else {
            assert_eq!(
                before[1..],
                after[1..],
                "[{prog}] egress moved the ingress or SMTP bucket"
            );
        }
    }
}

/// A shaped tenant (host mode, `shape_class` set): its tcx from-tenant packets get its
/// HTB class as `skb->priority` and pass, though its bucket is a minute over the burst:
/// the queue is its plan. XDP from-tenant (gateway mode, which has no queue to send
/// them to) still polices them, and an unshaped tenant's packets and every to-tenant
/// packet keep the priority they came with.
#[test]
fn a_shaped_tenant_is_sent_to_its_class_on_tc_egress_and_still_policed_by_xdp() {
    let class = warden_common::shape::class_id(TENANT_P);
    let mut policy = standard_policy();
    let p = policy.tenant_mut(TENANT_P);
    p.rate = [PLAN, PLAN];
    p.shape_class = class;
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let over = monotonic_ns() + 60_000_000_000;
    for dir in [direction::OUT, direction::IN] {
        dp.set_bucket(TENANT_P, dir, over)
            .expect("setting the bucket");
    }
    let from = plan_frame(Prog::TcFrom);
    let before = dp.snapshot().expect("reading counters");
    let (r, priority) = dp
        .run_tc_priority(Prog::TcFrom, &from, 7)
        .expect("test run");
    assert_eq!(
        r,
        Prog::TcFrom.retval(Verdict::Pass),
        "shaped: passed to the queue"
    );
    assert_eq!(
        priority, class,
        "shaped: skb->priority is the tenant's class"
    );
    let after = dp.snapshot().expect("reading counters");
    assert_eq!(
        changes(&before, &after),
        TP.changes(direction::OUT, from.len(), 1),
        "counted once, no drop"
    );
    assert_eq!(
        dp.bucket(TENANT_P, direction::OUT)
            .expect("reading the bucket"),
        over,
        "the policer's bucket is not charged"
    );

    let r = dp.run(Prog::XdpFrom, &from).expect("test run");
    assert_eq!(
        r,
        Prog::XdpFrom.retval(Verdict::Drop),
        "XDP polices the plan"
    );

    let to = plan_frame(Prog::TcTo);
    let (r, priority) = dp.run_tc_priority(Prog::TcTo, &to, 7).expect("test run");
    assert_eq!(r, Prog::TcTo.retval(Verdict::Drop), "ingress stays policed");
    assert_eq!(priority, 7, "to-tenant: the priority is left alone");

    let unshaped = ip4(A, U, L4::udp(40000, 9)).build();
    let (r, priority) = dp
        .run_tc_priority(Prog::TcFrom, &unshaped, 7)
        .expect("test run");
    assert_eq!(r, Prog::TcFrom.retval(Verdict::Pass));
    assert_eq!(priority, 7, "unshaped tenant: the priority is left alone");
}

/// The per-CPU shaping counter `stat` (`warden_common::shape::stat`), summed.
fn shape_stat(dp: &TestDataplane, stat: u32) -> u64 {
    use aya::maps::{MapData, PerCpuArray};
    let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        dp.ebpf
            .map(warden_common::map::SHAPE_STATS)
            .expect("the shaping counters"),
    )
    .expect("a per-CPU array");
    m.get(&stat, 0).expect("reading a counter").iter().sum()
}

/// A shaped tenant's flows are spread over its leaf classes in rotation: eight new flows
/// take its eight leaves, one each, the next eight the same leaves in the same order,
/// and a flow seen before keeps its leaf; each new flow is counted once, every one
/// remembered. (A hash would put two of eight flows in one leaf most of the time.)
#[test]
fn a_shaped_tenants_new_flows_take_its_leaves_in_turn_and_each_flow_keeps_its_leaf() {
    use warden_common::shape::{self, stat};
    let class = shape::class_id(TENANT_P);
    let mut policy = standard_policy();
    let p = policy.tenant_mut(TENANT_P);
    p.rate = [PLAN, PLAN];
    p.shape_class = class;
    let dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let flow = |port: u16| ip4(P, U, L4::udp(port, 9)).build();
    let leaf_of = |port: u16| {
        let (r, priority) = dp
            .run_tc_priority(Prog::TcFrom, &flow(port), 7)
            .expect("test run");
        assert_eq!(r, Prog::TcFrom.retval(Verdict::Pass), "shaped: queued");
        priority
            .checked_sub(class)
            .filter(|l| *l < shape::LEAVES)
            .unwrap_or_else(|| {
                panic!("port {port}: priority {priority:#x} is no leaf of {class:#x}")
            })
    };
    let n = 2 * shape::LEAVES as u16;
    let first: Vec<u32> = (0..n).map(|i| leaf_of(41_000 + i)).collect();
    let want: Vec<u32> = (0..u32::from(n)).map(|i| i % shape::LEAVES).collect();
    assert_eq!(first, want, "new flows take the leaves in rotation");
    let again: Vec<u32> = (0..n).rev().map(|i| leaf_of(41_000 + i)).collect();
    let want_again: Vec<u32> = first.iter().rev().copied().collect();
    assert_eq!(again, want_again, "each flow keeps its leaf");
    assert_eq!(
        shape_stat(&dp, stat::ASSIGNED),
        u64::from(n),
        "each new flow counted once"
    );
    assert_eq!(shape_stat(&dp, stat::UNTRACKED), 0, "every flow remembered");
}

/// The kernel's jiffies now (`/proc/timer_list`, as root).
fn jiffies() -> u64 {
    let list = std::fs::read_to_string("/proc/timer_list").expect("reading /proc/timer_list");
    list.lines()
        .find_map(|l| l.strip_prefix("jiffies: "))
        .and_then(|j| j.trim().parse().ok())
        .expect("a jiffies line in /proc/timer_list")
}

/// Fills every way of every set of the shaped-flow table with another tenant's flows,
/// last seen in period `seen`.
fn fill_flow_table(dp: &mut TestDataplane, seen: u64) {
    use aya::maps::{Array, MapData};
    use warden_common::shape::{way, FLOW_SETS, FLOW_WAYS};
    const WAYS: usize = FLOW_WAYS as usize;
    let other = TENANT_P + 1;
    let mut table: Array<&mut MapData, [u64; WAYS]> = Array::try_from(
        dp.ebpf
            .map_mut(warden_common::map::SHAPE_FLOWS)
            .expect("the shaped-flow table"),
    )
    .expect("an array");
    for set in 0..FLOW_SETS {
        let ways: [u64; WAYS] = core::array::from_fn(|i| {
            way::pack(way::flow(other, set * FLOW_WAYS + i as u32), 0, seen)
        });
        table.set(set, ways, 0).expect("writing a set");
    }
}

/// A new shaped flow whose set of the flow table holds only flows seen lately is not
/// remembered (an active flow is never forgotten for it): each of its packets takes the
/// same leaf and is counted untracked. Once those flows have gone a whole period unseen,
/// their ways go to new flows: the flow takes the tenant's next leaf and keeps it.
#[test]
fn a_new_shaped_flow_is_untracked_while_its_set_is_full_of_recent_flows_and_remembered_once_they_are_idle(
) {
    use warden_common::shape::{self, stat, way};
    let class = shape::class_id(TENANT_P);
    let mut policy = standard_policy();
    let p = policy.tenant_mut(TENANT_P);
    p.rate = [PLAN, PLAN];
    p.shape_class = class;
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let flow = ip4(P, U, L4::udp(42_000, 9)).build();
    let leaf_of = |dp: &TestDataplane| {
        let (r, priority) = dp
            .run_tc_priority(Prog::TcFrom, &flow, 7)
            .expect("test run");
        assert_eq!(r, Prog::TcFrom.retval(Verdict::Pass), "shaped: queued");
        priority
            .checked_sub(class)
            .filter(|l| *l < shape::LEAVES)
            .unwrap_or_else(|| panic!("priority {priority:#x} is no leaf of {class:#x}"))
    };
    // Seen in this period (or, should it end meanwhile, the last): recent.
    let now = way::period(jiffies());
    fill_flow_table(&mut dp, now);
    let first = leaf_of(&dp);
    assert_eq!(leaf_of(&dp), first, "an untracked flow keeps one leaf");
    assert_eq!(shape_stat(&dp, stat::UNTRACKED), 2, "counted per packet");
    assert_eq!(shape_stat(&dp, stat::ASSIGNED), 0, "nothing remembered");

    // Seen two periods ago: idle for at least a whole period.
    fill_flow_table(&mut dp, now.wrapping_sub(2));
    assert_eq!(
        leaf_of(&dp),
        0,
        "remembered: the tenant's first leaf in rotation"
    );
    assert_eq!(leaf_of(&dp), 0, "and kept");
    assert_eq!(shape_stat(&dp, stat::ASSIGNED), 1, "one new flow");
    assert_eq!(
        shape_stat(&dp, stat::UNTRACKED),
        2,
        "no more untracked packets"
    );
}
