//! The harness: programs, verdicts and outcomes, the loaded object ([`TestDataplane`])
//! and its counter snapshots, and the fixture runner that checks every fixture through
//! all four programs.

use std::{collections::BTreeMap, fmt};

use anyhow::{anyhow, ensure, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, SchedClassifier, Xdp},
    Ebpf, TestRun, TestRunOptions,
};
use warden::dataplane::log::AttemptLog;
use warden_common::{
    bucket, direction, global, map, program, reason, tenant_counter_index, Bucket, Counters,
    DropCounters, Rate,
};
use warden_tests::packets::{ethertype, len, Frame};

use crate::fixture_policy::*;

// ---------------------------------------------------------------------------------
// Programs, verdicts, outcomes.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Prog {
    XdpFrom,
    XdpTo,
    TcFrom,
    TcTo,
}

impl Prog {
    pub(crate) const ALL: [Prog; 4] = [Prog::XdpFrom, Prog::XdpTo, Prog::TcFrom, Prog::TcTo];
    pub(crate) const FROM: [Prog; 2] = [Prog::XdpFrom, Prog::TcFrom];
    pub(crate) const TO: [Prog; 2] = [Prog::XdpTo, Prog::TcTo];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Prog::XdpFrom => program::XDP_FROM_TENANT,
            Prog::XdpTo => program::XDP_TO_TENANT,
            Prog::TcFrom => program::TC_FROM_TENANT,
            Prog::TcTo => program::TC_TO_TENANT,
        }
    }

    pub(crate) fn is_xdp(self) -> bool {
        matches!(self, Prog::XdpFrom | Prog::XdpTo)
    }

    /// The direction is the program's contract (PRODUCT.md), not read from the code.
    pub(crate) fn dir(self) -> u32 {
        match self {
            Prog::XdpFrom | Prog::TcFrom => direction::OUT,
            Prog::XdpTo | Prog::TcTo => direction::IN,
        }
    }

    /// What `BPF_PROG_TEST_RUN` reports as the return value for `verdict`.
    pub(crate) fn retval(self, verdict: Verdict) -> u32 {
        match (verdict, self.is_xdp()) {
            (Verdict::Pass, true) => XDP_PASS,
            (Verdict::Drop, true) => XDP_DROP,
            // TC_ACT_UNSPEC is -1; the kernel hands back the program's r0 as a u32.
            (Verdict::Pass, false) => TC_ACT_UNSPEC as u32,
            (Verdict::Drop, false) => TC_ACT_SHOT,
        }
    }
}

impl fmt::Display for Prog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) const XDP_DROP: u32 = 1;
pub(crate) const XDP_PASS: u32 = 2;
pub(crate) const TC_ACT_UNSPEC: i32 = -1;
pub(crate) const TC_ACT_SHOT: u32 = 2;

/// What the hook does with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Drop,
}

/// Where a passed packet is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Tenant(u32),
    NoTenant,
    Malformed,
}

/// A verdict and the map change that goes with it, for one run in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunOutcome {
    /// Passed; counted once in the slot.
    Pass(Slot),
    /// Dropped for `reason`: counted once to the tenant and once in that drop reason.
    Drop { tenant: u32, reason: usize },
    /// Dropped, sent by no tenant: counted once in GLOBAL SPOOFED.
    Spoofed,
    /// Dropped, the parser calls it malformed: counted once in GLOBAL MALFORMED.
    MalformedDrop,
    /// Dropped from a tenant, the programs cannot look inside it and no bound MAC
    /// names its tenant: counted once in GLOBAL UNPARSED.
    UnparsedDrop,
}

impl RunOutcome {
    pub(crate) fn verdict(self) -> Verdict {
        match self {
            RunOutcome::Pass(_) => Verdict::Pass,
            RunOutcome::Drop { .. }
            | RunOutcome::Spoofed
            | RunOutcome::MalformedDrop
            | RunOutcome::UnparsedDrop => Verdict::Drop,
        }
    }

    /// The counter changes `n` runs of a `len`-byte frame in direction `dir` make.
    pub(crate) fn changes(self, dir: u32, len: usize, n: u64) -> Vec<Change> {
        let (n, bytes) = (i128::from(n), i128::from(n) * len as i128);
        let global = |slot| vec![(Counter::Global { slot, dir }, n, bytes)];
        match self {
            RunOutcome::Pass(Slot::Tenant(index)) => {
                vec![(Counter::Tenant { index, dir }, n, bytes)]
            }
            RunOutcome::Pass(Slot::NoTenant) => global(global::NO_TENANT),
            RunOutcome::Pass(Slot::Malformed) | RunOutcome::MalformedDrop => {
                global(global::MALFORMED)
            }
            RunOutcome::Spoofed => global(global::SPOOFED),
            RunOutcome::UnparsedDrop => global(global::UNPARSED),
            RunOutcome::Drop { tenant, reason } => vec![
                (Counter::Tenant { index: tenant, dir }, n, bytes),
                (
                    Counter::Drops {
                        index: tenant,
                        dir,
                        reason,
                    },
                    n,
                    0,
                ),
            ],
        }
    }

    /// The outcome a set of changes in direction `dir` shows, if it is the shape of
    /// one. A MALFORMED count is a drop from the tenant and a pass to it.
    pub(crate) fn of(changes: &[Change], dir: u32) -> Option<RunOutcome> {
        match changes {
            [(Counter::Tenant { index, .. }, ..)] => Some(RunOutcome::Pass(Slot::Tenant(*index))),
            [(Counter::Global { slot, .. }, ..)] => match *slot {
                global::NO_TENANT => Some(RunOutcome::Pass(Slot::NoTenant)),
                global::MALFORMED if dir == direction::OUT => Some(RunOutcome::MalformedDrop),
                global::MALFORMED => Some(RunOutcome::Pass(Slot::Malformed)),
                global::SPOOFED => Some(RunOutcome::Spoofed),
                global::UNPARSED => Some(RunOutcome::UnparsedDrop),
                _ => None,
            },
            [(Counter::Tenant { index, .. }, ..), (Counter::Drops { reason, .. }, ..)] => {
                Some(RunOutcome::Drop {
                    tenant: *index,
                    reason: *reason,
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RunOutcome::Pass(Slot::Tenant(t)) => write!(f, "pass, tenant {t}"),
            RunOutcome::Pass(Slot::NoTenant) => f.write_str("pass, NO_TENANT"),
            RunOutcome::Pass(Slot::Malformed) => f.write_str("pass, MALFORMED"),
            RunOutcome::Drop { tenant, reason } => {
                write!(f, "drop ({}), tenant {tenant}", reason_name(reason))
            }
            RunOutcome::Spoofed => f.write_str("drop, SPOOFED"),
            RunOutcome::MalformedDrop => f.write_str("drop, MALFORMED"),
            RunOutcome::UnparsedDrop => f.write_str("drop, UNPARSED"),
        }
    }
}

pub(crate) fn reason_name(r: usize) -> &'static str {
    reason::NAMES.get(r).copied().unwrap_or("?")
}

pub(crate) const TA: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_A));
pub(crate) const TB: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_B));
pub(crate) const TH: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_H));
pub(crate) const TM: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_M));
pub(crate) const TS: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_S));
pub(crate) const TMAIL: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_MAIL));
pub(crate) const TRATE: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_RATE));
pub(crate) const TP: RunOutcome = RunOutcome::Pass(Slot::Tenant(TENANT_P));
pub(crate) const NO_TENANT: RunOutcome = RunOutcome::Pass(Slot::NoTenant);
/// To-tenant: a frame the parser calls malformed passes (our parser must not cut a
/// tenant off).
pub(crate) const MALFORMED_PASS: RunOutcome = RunOutcome::Pass(Slot::Malformed);
/// From-tenant: a frame the parser calls malformed is dropped (a header it cannot
/// read could hide ports or addresses from SMTP and binding policy).
pub(crate) const MALFORMED_DROP: RunOutcome = RunOutcome::MalformedDrop;
pub(crate) const SPOOFED: RunOutcome = RunOutcome::Spoofed;
/// From-tenant: a frame nothing here can look into (another ethertype, a third VLAN
/// tag, ARP for another hardware type), from no bound MAC.
pub(crate) const UNPARSED: RunOutcome = RunOutcome::UnparsedDrop;

pub(crate) const fn dropped(tenant: u32, reason: usize) -> RunOutcome {
    RunOutcome::Drop { tenant, reason }
}

pub(crate) const fn spoof_ip(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::SPOOF_IP)
}

pub(crate) const fn spoof_arp(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::SPOOF_ARP)
}

pub(crate) const fn spoof_mac(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::SPOOF_MAC)
}

pub(crate) const fn smtp(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::SMTP)
}

pub(crate) const fn suspended(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::SUSPENDED)
}

pub(crate) const fn unparsed(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::UNPARSED)
}

pub(crate) const fn bandwidth(tenant: u32) -> RunOutcome {
    dropped(tenant, reason::BANDWIDTH)
}

/// One concrete counter of the three maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Counter {
    Tenant { index: u32, dir: u32 },
    Drops { index: u32, dir: u32, reason: usize },
    Global { slot: u32, dir: u32 },
}

impl Counter {
    pub(crate) fn dir(self) -> u32 {
        match self {
            Counter::Tenant { dir, .. }
            | Counter::Drops { dir, .. }
            | Counter::Global { dir, .. } => dir,
        }
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |d: u32| direction::NAMES.get(d as usize).copied().unwrap_or("?");
        match *self {
            Counter::Tenant { index, dir: d } => write!(f, "tenant {index} {}", dir(d)),
            Counter::Drops {
                index,
                dir: d,
                reason,
            } => write!(
                f,
                "tenant {index} {} dropped {}",
                dir(d),
                reason_name(reason)
            ),
            Counter::Global { slot, dir: d } => {
                let name = match slot {
                    global::NO_TENANT => "NO_TENANT",
                    global::MALFORMED => "MALFORMED",
                    global::SPOOFED => "SPOOFED",
                    global::UNPARSED => "UNPARSED",
                    _ => "global ?",
                };
                write!(f, "{name} {}", dir(d))
            }
        }
    }
}

/// A counter that changed, with (packets, bytes) gained.
pub(crate) type Change = (Counter, i128, i128);

/// A fixture: {what, frame, expected outcome from-tenant, expected outcome to-tenant}.
pub(crate) struct Fixture {
    pub(crate) what: String,
    pub(crate) frame: Vec<u8>,
    pub(crate) from: RunOutcome,
    pub(crate) to: RunOutcome,
}

pub(crate) fn fx(what: &str, frame: Frame, from: RunOutcome, to: RunOutcome) -> Fixture {
    Fixture {
        what: what.to_string(),
        frame: frame.build(),
        from,
        to,
    }
}

/// A frame the parser must call malformed: dropped from-tenant, passed to-tenant,
/// counted once as MALFORMED in the program's direction either way.
pub(crate) fn malformed(what: &str, frame: Frame) -> Fixture {
    fx(what, frame, MALFORMED_DROP, MALFORMED_PASS)
}

/// The outcome of a malformed frame through `prog`.
pub(crate) fn malformed_outcome(prog: Prog) -> RunOutcome {
    if prog.dir() == direction::OUT {
        MALFORMED_DROP
    } else {
        MALFORMED_PASS
    }
}

// ---------------------------------------------------------------------------------
// The loaded object and its maps.

pub(crate) struct TestDataplane {
    pub(crate) ebpf: Ebpf,
    /// The EVENTS ring buffer, taken out of `ebpf` to be read.
    pub(crate) ring: RingBuf<MapData>,
    /// The attempt log, taken out of `ebpf` and mapped, read as the daemon reads it.
    pub(crate) log: AttemptLog,
}

/// (packets, bytes) summed over CPUs, for every counter the snapshot covers; drops
/// have no bytes.
pub(crate) type Snapshot = BTreeMap<Counter, (u64, u64)>;

impl TestDataplane {
    /// Loads the embedded object, its four programs, and [`standard_policy`] as
    /// generation 0, active.
    pub(crate) fn load() -> Result<Self> {
        Self::with_policy(&standard_policy())
    }

    /// The daemon's embedded object, its maps created, no program loaded yet.
    pub(crate) fn load_object() -> Result<Ebpf> {
        warden::dataplane::loader()?
            .load(warden::dataplane::OBJECT)
            .context("loading the eBPF object (root?)")
    }

    /// Loads the embedded object, its four programs, and `policy` as generation 0, active.
    pub(crate) fn with_policy(policy: &FixturePolicy) -> Result<Self> {
        let mut ebpf = Self::load_object()?;
        for prog in Prog::ALL {
            let p = ebpf
                .program_mut(prog.name())
                .ok_or_else(|| anyhow!("no program {prog}"))?;
            if prog.is_xdp() {
                let p: &mut Xdp = p.try_into()?;
                p.load().with_context(|| format!("loading {prog}"))?;
            } else {
                let p: &mut SchedClassifier = p.try_into()?;
                p.load().with_context(|| format!("loading {prog}"))?;
            }
        }
        let ring = ebpf.take_map(map::EVENTS).context("no EVENTS")?;
        let ring = RingBuf::try_from(ring)?;
        let log = match ebpf.take_map(map::ATTEMPT_LOG) {
            Some(aya::maps::Map::Array(data)) => AttemptLog::new(data)?,
            _ => return Err(anyhow!("no ATTEMPT_LOG array")),
        };
        let mut dp = Self { ebpf, ring, log };
        dp.write_generation(0, policy)?;
        dp.set_active(0)?;
        Ok(dp)
    }

    pub(crate) fn write_generation(&mut self, gen: u32, policy: &FixturePolicy) -> Result<()> {
        write_fixture_generation(&mut self.ebpf, gen, policy)
    }

    /// The flip: one write of ACTIVE\[0\].
    pub(crate) fn set_active(&mut self, gen: u32) -> Result<()> {
        let m = self.ebpf.map_mut(map::ACTIVE).context("no ACTIVE")?;
        let mut active: Array<&mut MapData, u32> = Array::try_from(m)?;
        active.set(0, gen, 0)?;
        Ok(())
    }

    /// The TAT of a tenant's bucket `which` (a direction or `bucket::SMTP`).
    pub(crate) fn bucket(&self, tenant: u32, which: u32) -> Result<u64> {
        let m = self.ebpf.map(map::BUCKETS).context("no BUCKETS")?;
        let buckets: Array<&MapData, Bucket> = Array::try_from(m)?;
        Ok(buckets.get(&bucket::index(tenant, which), 0)?.tat)
    }

    pub(crate) fn set_bucket(&mut self, tenant: u32, which: u32, tat: u64) -> Result<()> {
        let m = self.ebpf.map_mut(map::BUCKETS).context("no BUCKETS")?;
        let mut buckets: Array<&mut MapData, Bucket> = Array::try_from(m)?;
        buckets.set(bucket::index(tenant, which), Bucket { tat }, 0)?;
        Ok(())
    }

    /// One `BPF_PROG_TEST_RUN` of `frame` (repeat 1); the program's return value.
    pub(crate) fn run(&self, prog: Prog, frame: &[u8]) -> Result<u32, ProgramError> {
        self.run_repeat(prog, frame, 1)
    }

    /// `repeat` runs in one call; the kernel reports the last run's return value.
    pub(crate) fn run_repeat(
        &self,
        prog: Prog,
        frame: &[u8],
        repeat: u32,
    ) -> Result<u32, ProgramError> {
        let p = self
            .ebpf
            .program(prog.name())
            .expect("loaded in TestDataplane::with_policy");
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        };
        let result = if prog.is_xdp() {
            let p: &Xdp = p.try_into()?;
            p.test_run(opts)?
        } else {
            let p: &SchedClassifier = p.try_into()?;
            p.test_run(opts)?
        };
        Ok(result.return_value)
    }

    /// One run of a tc program with an `__sk_buff` context whose `priority` is
    /// `priority`: the return value and the `priority` the program left.
    pub(crate) fn run_tc_priority(
        &self,
        prog: Prog,
        frame: &[u8],
        priority: u32,
    ) -> Result<(u32, u32)> {
        // `struct __sk_buff` (uapi/linux/bpf.h): 192 bytes on this kernel, `priority`
        // the ninth u32. The kernel takes `priority` from ctx_in and gives it back in
        // ctx_out (bpf_prog_test_run_skb).
        const SKB_CTX_BYTES: usize = 192;
        const PRIORITY_AT: usize = 32;
        ensure!(!prog.is_xdp(), "{prog} is not a tc program");
        let mut ctx_in = [0u8; SKB_CTX_BYTES];
        ctx_in[PRIORITY_AT..PRIORITY_AT + 4].copy_from_slice(&priority.to_ne_bytes());
        let mut ctx_out = [0u8; SKB_CTX_BYTES];
        let p: &SchedClassifier = self
            .ebpf
            .program(prog.name())
            .context("program not loaded")?
            .try_into()?;
        let result = p.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx_in),
            ctx_out: Some(&mut ctx_out),
            ..Default::default()
        })?;
        ensure!(
            result.ctx_size_out as usize >= PRIORITY_AT + 4,
            "the kernel gave back {} bytes of context",
            result.ctx_size_out
        );
        let mut word = [0u8; 4];
        word.copy_from_slice(&ctx_out[PRIORITY_AT..PRIORITY_AT + 4]);
        Ok((result.return_value, u32::from_ne_bytes(word)))
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::new();
        let tenants: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(
            self.ebpf
                .map(map::TENANT_COUNTERS)
                .context("no TENANT_COUNTERS")?,
        )?;
        let drops: PerCpuArray<&MapData, DropCounters> = PerCpuArray::try_from(
            self.ebpf
                .map(map::DROP_COUNTERS)
                .context("no DROP_COUNTERS")?,
        )?;
        for index in 0..SNAPSHOT_TENANTS {
            for dir in [direction::OUT, direction::IN] {
                let slot = tenant_counter_index(index, dir);
                let c = sum(&tenants.get(&slot, 0)?);
                snap.insert(Counter::Tenant { index, dir }, (c.packets, c.bytes));
                let values = drops.get(&slot, 0)?;
                for reason in 0..reason::COUNT {
                    let n = values.iter().map(|d| d.packets[reason]).sum();
                    snap.insert(Counter::Drops { index, dir, reason }, (n, 0));
                }
            }
        }
        let globals: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(
            self.ebpf
                .map(map::GLOBAL_COUNTERS)
                .context("no GLOBAL_COUNTERS")?,
        )?;
        ensure!(
            globals.len() == global::ENTRIES,
            "GLOBAL_COUNTERS has {} entries",
            globals.len()
        );
        for slot in 0..global::SLOTS {
            for dir in [direction::OUT, direction::IN] {
                let c = sum(&globals.get(&global::index(slot, dir), 0)?);
                snap.insert(Counter::Global { slot, dir }, (c.packets, c.bytes));
            }
        }
        Ok(snap)
    }
}

pub(crate) fn sum(values: &[Counters]) -> Counters {
    values.iter().fold(Counters::default(), |acc, c| Counters {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}

/// Counters that changed, with (packets, bytes) gained, in counter order.
pub(crate) fn changes(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    after
        .iter()
        .filter_map(|(k, a)| {
            let b = before[k];
            (*a != b).then(|| {
                (
                    *k,
                    i128::from(a.0) - i128::from(b.0),
                    i128::from(a.1) - i128::from(b.1),
                )
            })
        })
        .collect()
}

pub(crate) fn show(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "nothing".to_string();
    }
    changes
        .iter()
        .map(|(c, p, b)| match c {
            Counter::Drops { .. } => format!("{c}: {p:+}"),
            _ => format!("{c}: {p:+} packets {b:+} bytes"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CLOCK_MONOTONIC_COARSE` in ns: the clock the programs read for policing
/// (`bpf_ktime_get_coarse_ns`, the time at the last tick).
pub(crate) fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC_COARSE)");

    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` in ns: the clock samples carry (`bpf_ktime_get_ns`), at or after
/// the coarse one.
pub(crate) fn precise_monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What `policy::conforms` charges for `units` at `rate` (ns of bucket time).
pub(crate) fn gcra_cost(rate: &Rate, units: u64) -> u64 {
    (units * rate.cost_q10) >> 10
}

/// What one test run must do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RunExpect {
    /// Return the outcome's verdict and make exactly its counter changes.
    Ran(RunOutcome),
    /// Be refused by the kernel with EINVAL before the program runs; count nothing.
    Refused,
}

/// The kernel (6.18) refuses skb test runs (so: the tc programs) whose ethertype is
/// IPv4 or IPv6 but whose data is shorter than the fixed IP header, with EINVAL,
/// whatever the header says; XDP test runs take any frame of at least 14 bytes.
/// Probed on this kernel by `kernel_refuses_tc_test_runs_of_ip_frames_cut_inside_the_ip_header`.
pub(crate) fn skb_test_run_refuses(frame: &[u8]) -> bool {
    if frame.len() < len::ETH {
        return true;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ethertype::IPV4 => frame.len() < len::ETH + len::IPV4,
        ethertype::IPV6 => frame.len() < len::ETH + len::IPV6,
        _ => false,
    }
}

/// What `prog` must do with `frame` when the fixture expects `outcome`.
pub(crate) fn expected_run(prog: Prog, frame: &[u8], outcome: RunOutcome) -> RunExpect {
    let refused = frame.len() < len::ETH || (!prog.is_xdp() && skb_test_run_refuses(frame));
    if refused {
        RunExpect::Refused
    } else {
        RunExpect::Ran(outcome)
    }
}

/// Runs `frame` once through `prog` and compares verdict and counter changes with
/// `expect`. Returns the failure, if any.
pub(crate) fn check(
    dp: &TestDataplane,
    prog: Prog,
    what: &str,
    frame: &[u8],
    expect: RunExpect,
) -> Option<String> {
    let before = dp.snapshot().expect("reading counters");
    let result = dp.run(prog, frame);
    let after = dp.snapshot().expect("reading counters");
    let got = changes(&before, &after);
    let mut errors = Vec::new();
    let want = match (expect, result) {
        (RunExpect::Ran(outcome), Ok(r)) => {
            let verdict = outcome.verdict();
            if r != prog.retval(verdict) {
                errors.push(format!(
                    "verdict {r:#x}, expected {:#x} ({verdict:?})",
                    prog.retval(verdict)
                ));
            }
            outcome.changes(prog.dir(), frame.len(), 1)
        }
        (RunExpect::Ran(outcome), Err(e)) => {
            errors.push(format!("test run failed: {}", run_error(&e)));
            outcome.changes(prog.dir(), frame.len(), 1)
        }
        (RunExpect::Refused, Ok(r)) => {
            errors.push(format!("kernel ran it (returned {r:#x}); expected EINVAL"));
            vec![]
        }
        (RunExpect::Refused, Err(e)) => {
            if errno(&e) != Some(libc::EINVAL) {
                errors.push(format!("expected EINVAL, got {}", run_error(&e)));
            }
            vec![]
        }
    };
    if got != want {
        errors.push(format!("counted {}, expected {}", show(&got), show(&want)));
    }
    (!errors.is_empty()).then(|| {
        format!(
            "{what} [{prog}, {} bytes]: {}",
            frame.len(),
            errors.join("; ")
        )
    })
}

/// Runs every fixture through all four programs of `dp`; returns every mismatch.
pub(crate) fn run_rows(dp: &TestDataplane, fixtures: &[Fixture]) -> Vec<String> {
    let mut failures = Vec::new();
    for f in fixtures {
        for prog in Prog::ALL {
            let outcome = if prog.dir() == direction::OUT {
                f.from
            } else {
                f.to
            };
            let expect = expected_run(prog, &f.frame, outcome);
            failures.extend(check(dp, prog, &f.what, &f.frame, expect));
        }
    }
    failures
}

pub(crate) fn assert_no_failures(failures: &[String], runs: usize) {
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Runs every fixture through all four programs under [`standard_policy`]; fails
/// listing every mismatch.
pub(crate) fn run_table(fixtures: &[Fixture]) {
    run_table_with(&standard_policy(), fixtures);
}

pub(crate) fn run_table_with(policy: &FixturePolicy, fixtures: &[Fixture]) {
    let dp = TestDataplane::with_policy(policy).expect("loading the dataplane");
    let failures = run_rows(&dp, fixtures);
    assert_no_failures(&failures, fixtures.len() * Prog::ALL.len());
}

/// A fixture of raw bytes (for frames the builder will not make).
pub(crate) fn fx_bytes(what: &str, frame: Vec<u8>, from: RunOutcome, to: RunOutcome) -> Fixture {
    Fixture {
        what: what.to_string(),
        frame,
        from,
        to,
    }
}

/// The interface's index, as the kernel numbers it in this namespace.
pub(crate) fn nix_ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no interface {name}");
    i
}

/// xorshift64: small, deterministic, good enough to shake a parser.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// One of `items`, or (as often as any one of them) a random byte.
    pub(crate) fn byte(&mut self, items: &[u8]) -> u8 {
        match self.below(items.len() as u64 + 1) as usize {
            i if i < items.len() => items[i],
            _ => self.next() as u8,
        }
    }
}

/// The errno of a failed test run.
pub(crate) fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

/// A test-run error with the errno the kernel gave.
pub(crate) fn run_error(e: &ProgramError) -> String {
    match e {
        ProgramError::SyscallError(s) => format!("{}: {}", s.call, s.io_error),
        e => e.to_string(),
    }
}
