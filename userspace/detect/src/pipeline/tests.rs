//! The pipeline end to end, from kernel events and counters to kernel actions and flags,
//! against a recording [`Effects`].

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use warden_common::facts::FLOOD_EPOCH_SHIFT;
use warden_policy::flag::{ActionDecision, FlagAction, NewFlag};
use warden_policy::traffic::{Contact, Direction, Outcome};
use warden_policy::{self as policy, Action};

use super::*;
use warden_policy::tenant::TenantSlot;

/// Kernel time of the tests' start (CLOCK_MONOTONIC, seconds since boot).
const BOOT: u64 = 1_000;
/// Wall-clock time at `BOOT`.
const UNIX: u64 = 1_700_000_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Now, `t` after the tests' start.
fn at(t: Duration) -> Now {
    Now {
        mono: secs(BOOT) + t,
        unix: secs(UNIX) + t,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// An outside address, 198.19.x.y.
fn outside(n: u32) -> IpAddr {
    IpAddr::from((0xC613_0000u32 | (n & 0xFFFF)).to_be_bytes())
}

const TENANT: TenantSlot = TenantSlot(0);
const ADDR: &str = "198.18.1.1";

/// A pipeline for tenant `t1` (index 0, address 198.18.1.1) with `detectors` (YAML flow
/// mapping) over the defaults.
fn pipeline(detectors: &str, smtp: &str) -> Pipeline {
    pipeline_with(detectors, smtp, Pending::default())
}

fn pipeline_with(detectors: &str, smtp: &str, pending: Pending) -> Pipeline {
    let text = format!(
        "tenants:\n  - id: t1\n    addresses: [{ADDR}]\n    smtp: {smtp}\n    detectors: {detectors}\n"
    );
    let policy = policy::parse(&text, "test.yaml").unwrap_or_else(|d| panic!("{d}"));
    let mut w = Pipeline::new(Limits::default(), pending);
    w.configure(&policy, |id| (id == "t1").then_some(TENANT), 7);
    w
}

/// One recorded kernel write.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Block(BlockTarget, Duration),
    Unblock(BlockTarget),
    Throttle(Option<u64>, Duration),
    Capture(i32),
    Contain(Option<(f64, Duration)>),
    Suspend(String, String),
}

/// A flag as the fake store holds it.
#[derive(Debug)]
struct FlagRecord {
    new: NewFlag,
    last_seen: i64,
    figures: Value,
    top_targets: Value,
    actions: Vec<FlagAction>,
    samples: Vec<Sample>,
}

/// Records what the pipeline does. Holds the suspensions, as the daemon does.
#[derive(Debug, Default)]
struct Fake {
    calls: Vec<Call>,
    flags: Vec<FlagRecord>,
    blocks_full: bool,
    sweeps: usize,
    suspended: std::collections::BTreeSet<String>,
}

impl Fake {
    fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    fn flag(&self, id: i64) -> &FlagRecord {
        &self.flags[usize::try_from(id - 1).expect("flag ids start at 1")]
    }

    fn decisions(&self, id: i64) -> Vec<(ActionDecision, Action)> {
        self.flag(id)
            .actions
            .iter()
            .map(|a| (a.decision, a.action))
            .collect()
    }
}

impl Effects for Fake {
    fn block(
        &mut self,
        slot: TenantSlot,
        target: BlockTarget,
        until: Duration,
    ) -> Result<(), EffectError> {
        assert_eq!(slot, TENANT);
        if self.blocks_full {
            return Err(EffectError::BlocksFull);
        }
        self.calls.push(Call::Block(target, until));
        Ok(())
    }

    fn unblock(&mut self, slot: TenantSlot, target: BlockTarget) -> Result<(), EffectError> {
        assert_eq!(slot, TENANT);
        self.calls.push(Call::Unblock(target));
        Ok(())
    }

    fn throttle(
        &mut self,
        slot: TenantSlot,
        rate: Option<u64>,
        until: Duration,
    ) -> Result<(), EffectError> {
        assert_eq!(slot, TENANT);
        self.calls.push(Call::Throttle(rate, until));
        Ok(())
    }

    fn contain(
        &mut self,
        slot: TenantSlot,
        contain: Option<(f64, Duration)>,
    ) -> Result<(), EffectError> {
        assert_eq!(slot, TENANT);
        self.calls.push(Call::Contain(contain));
        Ok(())
    }

    fn capture(&mut self, slot: TenantSlot, frames: i32) -> Result<(), EffectError> {
        assert_eq!(slot, TENANT);
        self.calls.push(Call::Capture(frames));
        Ok(())
    }

    fn sweep_blocks(&mut self, _now: Duration) -> Result<usize, EffectError> {
        self.sweeps += 1;
        Ok(0)
    }

    fn suspend(&mut self, tenant: &str, reason: &str) -> Result<bool, EffectError> {
        if !self.suspended.insert(tenant.to_owned()) {
            return Ok(false);
        }
        self.calls
            .push(Call::Suspend(tenant.to_owned(), reason.to_owned()));
        Ok(true)
    }

    fn create_flag(&mut self, new: NewFlag) -> Result<i64, EffectError> {
        self.flags.push(FlagRecord {
            last_seen: new.seen,
            figures: new.figures.clone(),
            top_targets: new.top_targets.clone(),
            new,
            actions: Vec::new(),
            samples: Vec::new(),
        });
        Ok(self.flags.len() as i64)
    }

    fn update_flag(
        &mut self,
        id: i64,
        last_seen: i64,
        figures: &Value,
        top: &Value,
    ) -> Result<(), EffectError> {
        let f = &mut self.flags[usize::try_from(id - 1).expect("known flag")];
        f.last_seen = f.last_seen.max(last_seen);
        f.figures = figures.clone();
        f.top_targets = top.clone();
        Ok(())
    }

    fn record_action(&mut self, id: i64, action: &FlagAction) -> Result<(), EffectError> {
        self.flags[usize::try_from(id - 1).expect("known flag")]
            .actions
            .push(action.clone());
        Ok(())
    }

    fn add_samples(&mut self, id: i64, samples: &[Sample]) -> Result<usize, EffectError> {
        let f = &mut self.flags[usize::try_from(id - 1).expect("known flag")];
        let kept = samples.len().min(64 - f.samples.len());
        f.samples.extend_from_slice(&samples[..kept]);
        Ok(kept)
    }
}

fn contact(proto: Proto, remote: IpAddr, remote_port: u16, t: Duration) -> Contact {
    Contact {
        slot: TENANT,
        at: secs(BOOT) + t,
        proto,
        local: ip(ADDR),
        local_port: 40_000,
        remote,
        remote_port,
    }
}

fn attempt(remote: IpAddr, port: u16, t: Duration) -> Observation {
    Observation::Attempt(contact(Proto::Tcp, remote, port, t))
}

fn outcome(remote: IpAddr, port: u16, t: Duration, outcome: Outcome) -> Observation {
    Observation::Outcome {
        contact: contact(Proto::Tcp, remote, port, t),
        outcome,
    }
}

/// A SYN flood event at `victim`: `per_epoch` SYNs in one flood epoch so far.
fn syn_flood(victim: IpAddr, per_epoch: u64, t: Duration) -> Observation {
    Observation::Flood(Flood {
        slot: TENANT,
        at: secs(BOOT) + t,
        dir: Direction::Out,
        addr: victim,
        class: FloodClass::Syn,
        per_second: per_second(per_epoch),
    })
}

/// `per_epoch` over one of the programs' flood epochs (2^30 ns), per second.
fn per_second(per_epoch: u64) -> f64 {
    per_epoch as f64 * 1e9 / (1u64 << FLOOD_EPOCH_SHIFT) as f64
}

fn traffic(sent: u64, received: u64, drops: &[(DropReason, u64)]) -> TrafficTable {
    let slots = TENANT.index() + 1;
    let mut counters = vec![[Volume::default(); 2]; slots];
    let mut totals = vec![[0u64; DropReason::ALL.len()]; slots];
    let (c, d) = (&mut counters[TENANT.index()], &mut totals[TENANT.index()]);
    c[0].bytes = sent;
    c[1].bytes = received;
    for (reason, n) in drops {
        let i = DropReason::ALL
            .iter()
            .position(|r| r == reason)
            .expect("a detected drop reason");
        d[i] = *n;
        // Every dropped packet was a packet the tenant sent.
        c[0].packets += *n;
    }
    TrafficTable::new(vec![TENANT], counters, totals)
}

#[test]
fn a_horizontal_scan_of_silent_hosts_is_flagged_and_its_port_blocked() {
    let mut w = pipeline("{scan: {action: block}}", "block");
    let mut fx = Fake::default();
    // 20 SYNs to port 22 of hosts that never answer, 10 ms apart.
    let probes: Vec<Observation> = (0..20)
        .map(|i| attempt(outside(i), 22, ms(10 * u64::from(i))))
        .collect();
    w.events(probes, &at(ms(200)), &mut fx);
    assert!(
        fx.flags.is_empty(),
        "nothing is known before the answers are due"
    );
    // 500 ms after the first probes: they count as unanswered, TRW crosses.
    w.events(Vec::new(), &at(ms(700)), &mut fx);
    assert_eq!(fx.flags.len(), 1);
    let flag = fx.flag(1);
    assert_eq!(
        (flag.new.tenant.as_str(), flag.new.kind),
        ("t1", Kind::Scan)
    );
    assert_eq!(flag.new.policy_generation, 7);
    assert_eq!(
        flag.new.seen, UNIX as i64,
        "first seen is the first probe's time"
    );
    assert_eq!(
        flag.top_targets[0],
        serde_json::json!({"addr": null, "port": 22, "count": flag.top_targets[0]["count"]})
    );
    assert!(
        flag.figures.get("trw_log_ratio").is_some(),
        "{}",
        flag.figures
    );
    assert!(flag.new.thresholds.get("trw_log_ratio").is_some());
    assert_eq!(
        fx.take(),
        [
            Call::Capture(CAPTURE_FRAMES),
            // The tenant's first contacts are contained while the block holds.
            Call::Contain(Some((1.0, secs(BOOT) + ms(700) + secs(600)))),
            Call::Block(BlockTarget::Port(22), secs(BOOT) + ms(700) + secs(600)),
        ]
    );
    assert_eq!(fx.decisions(1), [(ActionDecision::Apply, Action::Block)]);
    assert_eq!(fx.flag(1).actions[0].target, "port 22");
    assert_eq!(fx.flag(1).actions[0].until, Some((UNIX + 600) as i64));
    assert_eq!(w.detections_of("t1")[0], 1);
    assert_eq!(w.status().active_blocks, 1);
}

/// `contain_rate` sets the containment's rate; 0 blocks the port without containing the
/// tenant, and a scan at `flag` contains nothing.
#[test]
fn a_scan_block_contains_at_the_detectors_rate_and_a_rate_of_0_or_a_flag_does_not() {
    for (policy, want) in [
        ("{scan: {action: block, contain_rate: 6/min}}", Some(0.1)),
        ("{scan: {action: block, contain_rate: 0}}", None),
        ("{scan: {action: flag}}", None),
    ] {
        let mut w = pipeline(policy, "block");
        let mut fx = Fake::default();
        let probes: Vec<Observation> = (0..20)
            .map(|i| attempt(outside(i), 22, ms(10 * u64::from(i))))
            .collect();
        w.events(probes, &at(ms(200)), &mut fx);
        w.events(Vec::new(), &at(ms(700)), &mut fx);
        assert_eq!(fx.flags.len(), 1, "{policy}");
        let contains: Vec<Call> = fx
            .take()
            .into_iter()
            .filter(|c| matches!(c, Call::Contain(_)))
            .collect();
        let expected: Vec<Call> = want
            .map(|rate| Call::Contain(Some((rate, secs(BOOT) + ms(700) + secs(600)))))
            .into_iter()
            .collect();
        assert_eq!(contains, expected, "{policy}");
    }
}

#[test]
fn a_vertical_scan_refused_by_one_host_blocks_only_that_host() {
    let mut w = pipeline("{scan: {action: block}}", "block");
    let mut fx = Fake::default();
    let host = outside(9);
    let mut events = Vec::new();
    // One host's ports failing within a second count once for the sequential test: a
    // vertical scan is caught by the volume bound, more than 100 failed ports.
    for port in 1..=101u16 {
        let t = ms(u64::from(port) / 10);
        events.push(attempt(host, port, t));
        events.push(outcome(host, port, t + ms(1), Outcome::Refused));
    }
    w.events(events, &at(ms(20)), &mut fx);
    assert_eq!(fx.flags.len(), 1, "refusals need no timeout");
    let calls = fx.take();
    assert!(
        calls.contains(&Call::Block(
            BlockTarget::Victim(host),
            secs(BOOT) + ms(20) + secs(600)
        )),
        "{calls:?}"
    );
}

#[test]
fn answered_first_contacts_raise_nothing() {
    let mut w = pipeline("{scan: {action: block}}", "block");
    let mut fx = Fake::default();
    let mut events = Vec::new();
    for i in 0..200u32 {
        let t = ms(u64::from(i) * 5);
        events.push(attempt(outside(i), 443, t));
        events.push(outcome(outside(i), 443, t + ms(30), Outcome::Success));
    }
    w.events(events, &at(secs(1)), &mut fx);
    w.tick(&at(secs(2)), &traffic(0, 0, &[]), &mut fx);
    assert!(fx.flags.is_empty() && fx.calls.is_empty(), "{:?}", fx.calls);
    assert_eq!(w.pending_stats().answered, 200);
    assert_eq!(w.status().pending_attempts, 0);
}

#[test]
fn first_contacts_warden_dropped_wait_for_nothing_and_flag_nothing() {
    // Mail blocked by policy: the kernel reports each dropped SYN with its outcome.
    let mut w = pipeline("{scan: {action: block}}", "block");
    let mut fx = Fake::default();
    let events: Vec<Observation> = (0..50u32)
        .map(|i| outcome(outside(i), 25, ms(u64::from(i)), Outcome::Dropped))
        .collect();
    w.events(events, &at(ms(100)), &mut fx);
    assert_eq!(
        w.status().pending_attempts,
        0,
        "nothing waits for an answer"
    );
    w.tick(&at(secs(2)), &traffic(0, 0, &[]), &mut fx);
    w.tick(&at(secs(3)), &traffic(0, 0, &[]), &mut fx);
    assert!(fx.flags.is_empty() && fx.calls.is_empty(), "{:?}", fx.calls);
    let stats = w.pending_stats();
    assert_eq!((stats.dropped, stats.timed_out, stats.orphans), (50, 0, 0));
}

#[test]
fn a_syn_flood_blocks_each_victim_keeps_them_while_it_lasts_and_lifts_after() {
    let mut w = pipeline("{flood_out: {action: block, expire_after: 30s}}", "block");
    let mut fx = Fake::default();
    let (a, b) = (outside(1), outside(2));
    // 5,000 SYNs in one epoch: ~4,657/s, over the default 2,000/s.
    w.events(vec![syn_flood(a, 5_000, ms(100))], &at(ms(110)), &mut fx);
    assert_eq!(
        fx.take(),
        [
            Call::Capture(CAPTURE_FRAMES),
            Call::Contain(Some((1.0, secs(BOOT) + ms(110) + secs(30)))),
            Call::Block(BlockTarget::Victim(a), secs(BOOT) + ms(110) + secs(30)),
        ]
    );
    // A second victim of the same episode is blocked too, at the same level; the
    // containment runs to the later block's expiry.
    w.events(vec![syn_flood(b, 5_000, ms(300))], &at(ms(310)), &mut fx);
    assert_eq!(
        fx.take(),
        [
            Call::Contain(Some((1.0, secs(BOOT) + ms(310) + secs(30)))),
            Call::Block(BlockTarget::Victim(b), secs(BOOT) + ms(310) + secs(30))
        ]
    );
    assert_eq!(w.detections_of("t1")[1], 1, "one episode");
    // The flood at `a` goes on for a minute, `b` stops: `a` is refreshed every second.
    for s in 1..=60 {
        w.events(
            vec![syn_flood(a, 5_000, secs(s))],
            &at(secs(s) + ms(5)),
            &mut fx,
        );
        w.tick(&at(secs(s) + ms(500)), &traffic(0, 0, &[]), &mut fx);
    }
    let calls = fx.take();
    assert!(
        calls.contains(&Call::Block(BlockTarget::Victim(a), secs(BOOT + 60 + 30))),
        "{calls:?}"
    );
    assert!(
        calls.contains(&Call::Unblock(BlockTarget::Victim(b))),
        "b expired 30 s after it stopped: {calls:?}"
    );
    assert!(
        !calls.contains(&Call::Unblock(BlockTarget::Victim(a))),
        "{calls:?}"
    );
    // The flood stops: 30 s after it was last seen the block goes.
    for s in 61..=100 {
        w.tick(&at(secs(s) + ms(500)), &traffic(0, 0, &[]), &mut fx);
    }
    let calls = fx.take();
    // The last block goes, and the containment with it.
    assert_eq!(
        calls,
        [Call::Contain(None), Call::Unblock(BlockTarget::Victim(a))]
    );
    let decisions = fx.decisions(1);
    assert_eq!(
        decisions.first(),
        Some(&(ActionDecision::Apply, Action::Block))
    );
    assert!(
        decisions.contains(&(ActionDecision::Extend, Action::Block)),
        "{decisions:?}"
    );
    assert_eq!(
        decisions
            .iter()
            .filter(|d| d.0 == ActionDecision::Lift)
            .count(),
        2,
        "{decisions:?}"
    );
    // Extends are recorded at most every 3 s (a tenth of 30 s), not every second.
    let extends = decisions
        .iter()
        .filter(|d| d.0 == ActionDecision::Extend)
        .count();
    assert!(
        (10..=25).contains(&extends),
        "{extends} extends: {decisions:?}"
    );
    // The episode ended 30 s after the last crossing: final evidence written.
    let flag = fx.flag(1);
    assert_eq!(flag.last_seen, (UNIX + 60) as i64);
    assert!(
        flag.figures["syn_pps"]
            .as_f64()
            .is_some_and(|v| v > 4_000.0),
        "{}",
        flag.figures
    );
    assert_eq!(w.status().open_episodes, 0);
}

#[test]
fn an_inbound_flood_blackholes_the_attacked_address_for_blackhole_for() {
    let mut w = pipeline("{flood_in: {pps: 1000, blackhole_for: 45s}}", "block");
    let mut fx = Fake::default();
    let attacked = ip(ADDR);
    let flood = Observation::Flood(Flood {
        slot: TENANT,
        at: secs(BOOT),
        dir: Direction::In,
        addr: attacked,
        class: FloodClass::InPackets,
        per_second: per_second(5_000),
    });
    w.events(vec![flood], &at(ms(1)), &mut fx);
    let calls = fx.take();
    assert_eq!(
        calls,
        [
            Call::Capture(CAPTURE_FRAMES),
            Call::Block(
                BlockTarget::Blackhole(attacked),
                secs(BOOT) + ms(1) + secs(45)
            ),
        ]
    );
    assert_eq!(fx.flag(1).actions[0].target, format!("addr {ADDR}"));
}

#[test]
fn smtp_fan_out_of_a_mail_tenant_is_spam_aimed_at_the_port_used() {
    let mut w = pipeline("{spam: {action: block}}", "allow");
    let mut fx = Fake::default();
    let mut events = Vec::new();
    for i in 0..25u32 {
        let t = ms(u64::from(i) * 10);
        events.push(attempt(outside(i), 587, t));
        events.push(outcome(outside(i), 587, t + ms(20), Outcome::Success));
    }
    w.events(events, &at(ms(400)), &mut fx);
    assert_eq!(fx.flags.len(), 1);
    assert_eq!(fx.flag(1).new.kind, Kind::Spam);
    assert!(
        fx.calls.contains(&Call::Block(
            BlockTarget::Port(587),
            secs(BOOT) + ms(400) + secs(600)
        )),
        "{:?}",
        fx.calls
    );
    assert_eq!(
        fx.flag(1).new.figures["distinct_servers"],
        serde_json::json!(21.0)
    );
}

#[test]
fn smtp_of_a_tenant_that_may_not_send_mail_is_not_spam() {
    let mut w = pipeline("{spam: {action: block}}", "block");
    let mut fx = Fake::default();
    let mut events = Vec::new();
    for i in 0..25u32 {
        events.push(attempt(outside(i), 25, ms(u64::from(i))));
        events.push(outcome(
            outside(i),
            25,
            ms(u64::from(i) + 1),
            Outcome::Success,
        ));
    }
    w.events(events, &at(ms(100)), &mut fx);
    assert!(fx.flags.is_empty());
}

#[test]
fn a_relay_is_a_proxy_and_its_listen_port_is_blocked() {
    let mut w = pipeline(
        "{proxy: {action: block, window: 10s, inbound_clients: 5, outbound_destinations: 10}}",
        "block",
    );
    let mut fx = Fake::default();
    // Counters before the window: 1 MB each way.
    w.tick(&at(ms(0)), &traffic(1_000_000, 1_000_000, &[]), &mut fx);
    let mut events = Vec::new();
    for i in 0..8u32 {
        let mut c = contact(Proto::Tcp, outside(100 + i), 50_000, ms(100));
        c.local_port = 1080;
        events.push(Observation::Accepted(c));
    }
    for i in 0..20u32 {
        let t = ms(200 + u64::from(i));
        events.push(attempt(outside(1_000 + i), 443, t));
        events.push(outcome(
            outside(1_000 + i),
            443,
            t + ms(10),
            Outcome::Success,
        ));
    }
    w.events(events, &at(ms(300)), &mut fx);
    // Relayed: about as many bytes in as out since the window opened. Judged while the
    // window is open: flagged at once, not when the window ends.
    w.tick(&at(secs(5)), &traffic(5_000_000, 5_500_000, &[]), &mut fx);
    assert_eq!(fx.flags.len(), 1, "flagged mid-window");
    let flag = fx.flag(1);
    assert_eq!(flag.new.kind, Kind::Proxy);
    assert_eq!(flag.new.figures["inbound_clients"], serde_json::json!(8.0));
    assert_eq!(
        flag.new.figures["outbound_destinations"],
        serde_json::json!(20.0)
    );
    assert!(
        fx.calls.contains(&Call::Block(
            BlockTarget::ListenPort(1080),
            secs(BOOT) + secs(5) + secs(600)
        )),
        "{:?}",
        fx.calls
    );
    // The relay goes on without new first contacts (the kernel reports a remote once
    // per contact epoch): the window's end and the next windows keep the one flag.
    for s in 6..40 {
        let n = s * 1_000_000;
        w.tick(&at(secs(s)), &traffic(n, n, &[]), &mut fx);
    }
    assert_eq!(fx.flags.len(), 1, "one flag while the relay goes on");
    assert!(
        fx.calls.contains(&Call::Block(
            BlockTarget::ListenPort(1080),
            secs(BOOT) + ms(10_100) + secs(600)
        )),
        "the block is extended by the window's end: {:?}",
        fx.calls
    );
}

#[test]
fn sustained_spoofing_is_flagged_and_a_block_only_records() {
    let mut w = pipeline("{spoof_ip: {action: block}}", "block");
    let mut fx = Fake::default();
    w.tick(
        &at(secs(0)),
        &traffic(0, 0, &[(DropReason::SpoofIp, 5_000)]),
        &mut fx,
    );
    assert!(
        fx.flags.is_empty(),
        "drops before the first sample are history"
    );
    w.tick(
        &at(secs(1)),
        &traffic(0, 0, &[(DropReason::SpoofIp, 5_050)]),
        &mut fx,
    );
    assert!(fx.flags.is_empty(), "50 in the window is under 100");
    w.tick(
        &at(secs(2)),
        &traffic(0, 0, &[(DropReason::SpoofIp, 5_200)]),
        &mut fx,
    );
    assert_eq!(fx.flags.len(), 1);
    assert_eq!(fx.flag(1).new.kind, Kind::SpoofIp);
    assert_eq!(
        fx.flag(1).new.figures["drops_in_window"],
        serde_json::json!(200.0)
    );
    assert_eq!(fx.decisions(1), [(ActionDecision::Apply, Action::Block)]);
    assert_eq!(fx.flag(1).actions[0].target, "tenant");
    assert!(
        fx.take().iter().all(|c| matches!(c, Call::Capture(_))),
        "no kernel block for the whole tenant"
    );
}

#[test]
fn throttles_reduce_the_tenant_and_hide_their_own_bandwidth_drops() {
    let mut w = pipeline(
        "{spoof_mac: {action: throttle, throttle_to: 2Mbit, expire_after: 20s}, bandwidth: {action: flag}}",
        "block",
    );
    let mut fx = Fake::default();
    let bw = DropReason::Bandwidth;
    let mac = DropReason::SpoofMac;
    w.tick(&at(secs(0)), &traffic(0, 0, &[]), &mut fx);
    w.tick(&at(secs(1)), &traffic(0, 0, &[(mac, 500)]), &mut fx);
    assert!(fx
        .take()
        .contains(&Call::Throttle(Some(2_000_000), secs(BOOT + 1 + 20))));
    // The throttle makes the tenant drop over its reduced plan: not a bandwidth detection.
    w.tick(
        &at(secs(2)),
        &traffic(0, 0, &[(mac, 500), (bw, 10_000)]),
        &mut fx,
    );
    assert_eq!(fx.flags.len(), 1, "only spoof_mac");
    // It expires 20 s after the spoofing was last seen, then lifts.
    for s in 3..=21 {
        w.tick(
            &at(secs(s)),
            &traffic(0, 0, &[(mac, 500), (bw, 10_000)]),
            &mut fx,
        );
    }
    assert_eq!(fx.take(), [Call::Throttle(None, secs(BOOT + 21))]);
    assert_eq!(w.status().active_throttles, 0);
    // Unthrottled, over-plan drops held for 5 s are a bandwidth detection again.
    for s in 22..=27 {
        assert_eq!(fx.flags.len(), 1, "not yet held for 5 s at {s} s");
        w.tick(
            &at(secs(s)),
            &traffic(0, 0, &[(mac, 500), (bw, 10_000 + 500 * (s - 21))]),
            &mut fx,
        );
    }
    assert_eq!(fx.flags.last().map(|f| f.new.kind), Some(Kind::Bandwidth));
}

#[test]
fn two_throttles_of_one_tenant_police_at_the_lower_rate_until_the_later_expiry() {
    let mut w = pipeline(
        "{spoof_mac: {action: throttle, throttle_to: 5Mbit, expire_after: 20s}, spoof_ip: {action: throttle, throttle_to: 1Mbit, expire_after: 10s}}",
        "block",
    );
    let mut fx = Fake::default();
    w.tick(&at(secs(0)), &traffic(0, 0, &[]), &mut fx);
    w.tick(
        &at(secs(1)),
        &traffic(0, 0, &[(DropReason::SpoofMac, 500)]),
        &mut fx,
    );
    w.tick(
        &at(secs(2)),
        &traffic(
            0,
            0,
            &[(DropReason::SpoofMac, 500), (DropReason::SpoofIp, 500)],
        ),
        &mut fx,
    );
    let calls: Vec<Call> = fx
        .take()
        .into_iter()
        .filter(|c| matches!(c, Call::Throttle(..)))
        .collect();
    assert_eq!(
        calls,
        [
            Call::Throttle(Some(5_000_000), secs(BOOT + 21)),
            Call::Throttle(Some(1_000_000), secs(BOOT + 21)),
        ]
    );
    // spoof_ip's throttle ends first: back to the other's rate.
    for s in 3..=12 {
        w.tick(
            &at(secs(s)),
            &traffic(
                0,
                0,
                &[(DropReason::SpoofMac, 500), (DropReason::SpoofIp, 500)],
            ),
            &mut fx,
        );
    }
    assert_eq!(
        fx.take(),
        [Call::Throttle(Some(5_000_000), secs(BOOT + 21))]
    );
}

#[test]
fn captured_frames_go_to_the_flag_that_asked_for_them() {
    let mut w = pipeline("{flood_out: {action: flag}}", "block");
    let mut fx = Fake::default();
    let frame = |i: u8| {
        Observation::Frame(Frame {
            slot: TENANT,
            at: secs(BOOT) + ms(u64::from(i)),
            orig_len: 60,
            data: vec![i; 60],
        })
    };
    w.events(vec![frame(0)], &at(ms(1)), &mut fx);
    assert_eq!(w.counters().samples_unattached, 1, "no flag yet");
    w.events(
        vec![syn_flood(outside(1), 5_000, ms(2))],
        &at(ms(3)),
        &mut fx,
    );
    assert_eq!(fx.take(), [Call::Capture(64)], "flag only: no block");
    w.events((1..=70).map(frame), &at(ms(100)), &mut fx);
    let samples = &fx.flag(1).samples;
    assert_eq!(samples.len(), 64, "bounded by the store");
    assert_eq!(samples[0].data, vec![1; 60]);
    assert_eq!(samples[0].at_ns, (UNIX * 1_000_000_000 + 1_000_000) as i64);
}

#[test]
fn observed_detections_are_counted_but_not_flagged() {
    let mut w = pipeline("{flood_out: {action: observe, ceiling: observe}}", "block");
    let mut fx = Fake::default();
    w.events(
        vec![syn_flood(outside(1), 5_000, ms(0))],
        &at(ms(1)),
        &mut fx,
    );
    assert!(fx.flags.is_empty() && fx.calls.is_empty());
    assert_eq!(w.detections_of("t1")[1], 1);
}

#[test]
fn repeated_episodes_escalate_to_a_suspension_through_the_daemon() {
    let mut w = pipeline(
        "{flood_out: {action: block, escalate_after: 2, ceiling: suspend}}",
        "block",
    );
    let mut fx = Fake::default();
    w.events(
        vec![syn_flood(outside(1), 5_000, ms(0))],
        &at(ms(1)),
        &mut fx,
    );
    // Quiet for the episode's 30 s: it ends; then the tenant floods again.
    w.tick(&at(secs(40)), &traffic(0, 0, &[]), &mut fx);
    fx.take();
    w.events(
        vec![syn_flood(outside(2), 5_000, secs(41))],
        &at(secs(41)),
        &mut fx,
    );
    let calls = fx.take();
    let suspend = calls.iter().find_map(|c| match c {
        Call::Suspend(t, reason) => Some((t.clone(), reason.clone())),
        _ => None,
    });
    let (tenant, reason) = suspend.expect("suspended");
    assert_eq!(tenant, "t1");
    assert!(reason.starts_with("flag 2: flood_out detected"), "{reason}");
    assert_eq!(fx.decisions(2), [(ActionDecision::Apply, Action::Suspend)]);
    assert_eq!(
        fx.flag(2).actions[0].until,
        None,
        "a suspension never expires"
    );
}

#[test]
fn a_tenant_suspended_already_is_not_suspended_again_nor_recorded_as_suspended() {
    let mut w = pipeline("{flood_out: {action: suspend, ceiling: suspend}}", "block");
    let mut fx = Fake::default();
    // Suspended by a person (or restored at start): the daemon holds it, not the pipeline.
    fx.suspended.insert("t1".to_owned());
    w.events(
        vec![syn_flood(outside(1), 5_000, ms(0))],
        &at(ms(1)),
        &mut fx,
    );
    assert!(
        !fx.take().iter().any(|c| matches!(c, Call::Suspend(..))),
        "suspended again"
    );
    assert_eq!(fx.flags.len(), 1, "the detection is still flagged");
    assert!(fx.decisions(1).is_empty(), "{:?}", fx.decisions(1));
    // Lifted by a person: the next suspension is carried out.
    fx.suspended.clear();
    w.suspension_lifted("t1");
    w.events(
        vec![syn_flood(outside(2), 5_000, secs(60))],
        &at(secs(60)),
        &mut fx,
    );
    assert!(fx.take().iter().any(|c| matches!(c, Call::Suspend(..))));
}

#[test]
fn a_full_block_table_is_counted_not_fatal() {
    let mut w = pipeline("{flood_out: {action: block}}", "block");
    let mut fx = Fake {
        blocks_full: true,
        ..Fake::default()
    };
    w.events(
        vec![syn_flood(outside(1), 5_000, ms(0))],
        &at(ms(1)),
        &mut fx,
    );
    assert_eq!(w.counters().blocks_full, 1);
    assert_eq!(fx.flags.len(), 1, "still flagged");
}

#[test]
fn a_full_pending_table_resolves_the_oldest_attempt_early() {
    let mut w = pipeline_with("{}", "block", Pending::new(2));
    let mut fx = Fake::default();
    let events = (0..5).map(|i| attempt(outside(i), 22, ms(u64::from(i))));
    w.events(events, &at(ms(10)), &mut fx);
    assert_eq!(w.pending_stats().evicted, 3);
    assert_eq!(w.status().pending_attempts, 2);
}

#[test]
fn events_of_tenants_not_in_the_policy_are_counted_and_ignored() {
    let mut w = pipeline("{}", "block");
    let mut fx = Fake::default();
    let mut c = contact(Proto::Tcp, outside(1), 22, ms(0));
    c.slot = TenantSlot(5);
    w.events(vec![Observation::Attempt(c)], &at(ms(1)), &mut fx);
    assert_eq!(w.counters().unknown_tenant_events, 1);
    assert_eq!(w.status().pending_attempts, 0);
}

#[test]
fn a_tenant_leaving_the_policy_is_forgotten() {
    let mut w = pipeline("{flood_out: {action: block}}", "block");
    let mut fx = Fake::default();
    w.events(
        vec![syn_flood(outside(1), 5_000, ms(0))],
        &at(ms(1)),
        &mut fx,
    );
    w.events(vec![attempt(outside(3), 22, ms(2))], &at(ms(3)), &mut fx);
    assert_eq!(w.status().open_episodes, 1);
    let empty = policy::parse("tenants: []\n", "empty.yaml").expect("empty policy");
    w.configure(&empty, |_| None, 8);
    let s = w.status();
    assert_eq!(
        (s.open_episodes, s.pending_attempts, s.active_blocks),
        (0, 0, 0)
    );
    assert_eq!(w.detections_of("t1"), [0; 9]);
    assert_eq!(w.ladder_stats().active, 0);
    fx.take();
    w.tick(&at(secs(1_000)), &TrafficTable::default(), &mut fx);
    assert!(
        fx.take().is_empty(),
        "nothing lifted for a tenant that is gone"
    );
}

#[test]
fn expired_blocks_are_swept_every_few_seconds() {
    let mut w = pipeline("{}", "block");
    let mut fx = Fake::default();
    for s in 0..11 {
        w.tick(&at(secs(s)), &TrafficTable::default(), &mut fx);
    }
    assert_eq!(fx.sweeps, 3, "at 0, 5 and 10 s");
}

#[test]
fn flood_rates_fill_the_field_of_their_class() {
    let f = Flood {
        slot: TenantSlot(0),
        at: Duration::ZERO,
        dir: Direction::In,
        addr: ip(ADDR),
        class: FloodClass::InBytes,
        per_second: 1e9,
    };
    let r = rate(&f);
    assert!((r.bps - 8e9).abs() < 1.0, "{}", r.bps);
    assert_eq!((r.pps, r.syn_pps, r.reply_pps), (0.0, 0.0, 0.0));
    let r = rate(&Flood {
        class: FloodClass::Reply,
        dir: Direction::Out,
        ..f
    });
    assert!(r.reply_pps > 0.0 && r.bps == 0.0);
}

#[test]
fn tcp_attempts_to_mail_ports_are_also_smtp_connections() {
    let mut facts = Vec::new();
    let key = PendingKey {
        slot: TenantSlot(0),
        proto: Proto::Tcp,
        remote: outside(1),
        port: 465,
    };
    push_attempt(&mut facts, key.attempt(secs(1), Outcome::Refused));
    assert!(matches!(facts[1], (Fact::Smtp(s), Some(465)) if s.outcome == Outcome::Refused));
    let mut facts = Vec::new();
    push_attempt(
        &mut facts,
        PendingKey {
            proto: Proto::Udp,
            ..key
        }
        .attempt(secs(1), Outcome::NoAnswer),
    );
    assert_eq!(facts.len(), 1, "UDP to 465 is not mail");
}

#[test]
fn wall_clock_times_follow_the_monotonic_offset() {
    let now = at(secs(10));
    assert_eq!(now.unix_secs(now.mono), (UNIX + 10) as i64);
    assert_eq!(now.unix_secs(now.mono - secs(4)), (UNIX + 6) as i64);
    assert_eq!(now.unix_secs(now.mono + secs(600)), (UNIX + 610) as i64);
    assert_eq!(
        now.unix_micros(now.mono - ms(1)),
        ((UNIX + 10) * 1_000_000 - 1_000) as i64
    );
    assert_eq!(now.unix_secs(Duration::MAX), i64::MAX);
}

#[test]
fn a_flood_flag_carries_the_peak_of_the_tenants_rate_in_its_direction() {
    let mut w = pipeline("{flood_out: {action: flag}}", "block");
    let mut fx = Fake::default();
    // The tenant's counters after `packets` packets out, of 60 bytes each.
    let sample = |packets: u64| {
        let mut counters = vec![[Volume::default(); 2]; TENANT.index() + 1];
        counters[TENANT.index()][0].packets = packets;
        counters[TENANT.index()][0].bytes = packets * 60;
        let drops = vec![[0; DropReason::ALL.len()]; TENANT.index() + 1];
        TrafficTable::new(vec![TENANT], counters, drops)
    };
    w.tick(&at(secs(0)), &sample(0), &mut fx);
    for s in 1..=12 {
        w.events(
            vec![syn_flood(outside(1), 5_000, secs(s))],
            &at(secs(s)),
            &mut fx,
        );
        // The flood peaks at 150,000/s in second 6.
        let pps = if s == 6 { 150_000 } else { 100_000 };
        let t = sample((s - 1) * 100_000 + pps);
        w.tick(&at(secs(s) + ms(500)), &t, &mut fx);
    }
    let f = &fx.flag(1).figures;
    assert!(
        f["syn_pps"].as_f64().is_some_and(|v| v < 5_000.0),
        "the crossing's rate: {f}"
    );
    let pps = f["tenant_out_pps"]
        .as_f64()
        .expect("tenant rate in the evidence");
    assert!((149_000.0..=151_000.0).contains(&pps), "peak {pps}: {f}");
    assert!(
        f["tenant_out_bps"].as_f64().is_some_and(|v| v > 70e6),
        "{f}"
    );
    assert!(f.get("tenant_in_pps").is_none());
}

#[test]
fn kinds_number_as_listed_so_detection_counts_index_by_kind() {
    for (i, kind) in Kind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i, "{kind}");
    }
}
