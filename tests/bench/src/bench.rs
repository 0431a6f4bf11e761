//! `cargo xtask bench`: per-packet cost of the enforcement programs against an
//! XDP_PASS baseline measured in the same run.
//!
//! Method: the kernel runs each program `repeat` times on one frame through
//! `BPF_PROG_TEST_RUN` and reports the mean time per repetition (integer ns, the
//! time spent in the loop divided by the number of repetitions; time spent
//! rescheduled is not counted). Each case is measured in interleaved pairs (in ABBA
//! order: baseline then case, case then baseline, ...) on one pinned CPU, so drift in
//! clock speed or background load hits both sides alike. A case's pairs are taken in
//! `--rounds` (3) rounds over all the cases, so a noisy stretch of a shared machine
//! touches every case a little rather than a few cases wholly. Reported: the median of
//! each side over all its pairs, and the cost of the case as the median of the
//! per-pair differences.

//! The bar: every per-packet path costs at most [`BAR_NS`] over the baseline, a new
//! flow at most [`NEW_FLOW_BAR_NS`].
//!
//! The maps hold [`TENANTS`] tenants (100,000), compiled into a `warden_dataplane::Compiled`
//! and written by `warden_dataplane::write_generation` (`GenTables::build`), the daemon's own
//! placement; every bucket of the generation's half is then written, as
//! `Dataplane::apply` does for a fresh half. Three policies, each measured in turn:
//! - one length: each tenant an IPv4 /32, an IPv6 /64 and a bound MAC (generation 0);
//! - two lengths: the same, but the last [`WIDE`] (64) tenants on /24s and /48s, so a
//!   lookup probes two lengths per family and a miss costs two probes (generation 1);
//! - no MACs: one length and no bound MAC anywhere (GEN_CONFIG without ANY_MACS, so
//!   from-tenant frames skip the MAC lookup), written over generation 0 while
//!   generation 1 is active, then flipped to, as the daemon would.
//!
//! Every tenant has the flood thresholds the daemon compiles from a policy's defaults
//! (`flood_out.syn_pps`, `flood_out.pps`, `flood_in.pps`, `flood_in.bps`), as on a
//! production node: a SYN, datagram or ICMP packet pays its flood counting (an
//! established TCP segment does not).
//!
//! ACTIVE is set to a policy's generation before its cases run. Every case is run once
//! and checked (verdict and the counter it must move) before it is timed, so the bench
//! measures the path it names.
//!
//! Detection facts. A repeated frame is a first contact only once, so the new-flow
//! case runs `xdp_bench_new_flow`: the from-tenant path, after which the program counts
//! the frame's IPv4 destination up by one in place; a test run's repetitions share the
//! frame, so every repetition contacts a new remote (checked: the frame comes back
//! advanced by the repetitions, and the attempt log holds one ATTEMPT per first
//! contact, for the remotes in order). The whole new-flow path is timed: the contact
//! filter lookup and insert, the PENDING write, the SYN's flood count and the attempt
//! log entry (the event budget is lifted: [`BENCH_EVENT_BUDGET`]). Before each run the
//! filter words of that run's remotes are cleared, so each is new again, and after it
//! the log is read (not timed). Every run must log one entry per first contact: all
//! repetitions but the few the filter's formulas, run over the run's remotes, call
//! false positives (a bloom filter's). A run of more than `LOG_SLOTS` repetitions
//! writes its CPU's log round more than once, so the check reads the last `LOG_SLOTS`
//! entries and counts the rest as written over, exactly. The established-flow cases
//! (ACK segments) show what facts cost ordinary traffic: a flags test.
//!
//! Address plan (inside the test ranges 198.18.0.0/15 and 2001:db8::/32; nothing
//! overlaps, checked by a unit test): tenant `i` owns 198.18.0.0 + `i` (up to
//! 198.19.134.159) and 2001:db8:(`i` >> 16):(`i` & 0xffff)::/64; the outside sender and
//! the unknown address are in 198.19.135.0/24 (2001:db8:ffff::/48, 2001:db8:fffe::/48);
//! management is 198.19.136.0/22 (2001:db8:fe::/48); the new-flow remotes are
//! 198.19.144.0 - 198.19.191.255; the wide tenants' /24s are 198.19.192.0/18 and their
//! /48s 2001:db8:100::/48 onwards; the tracked remotes are in 2001:db8:e000::/48 and the
//! detection-event remotes in 2001:db8:d000::/48.
//!
//! Tracked remotes. Before any case is timed, [`TRACKED_REMOTES`] (1,000,000) distinct
//! remotes are contacted the way traffic would: [`LOADERS`] tenants each send a SYN to
//! [`PER_LOADER`] new IPv6 remotes through `xdp_bench_new_flow` (one test run each,
//! the program moving the destination on per repetition; few long runs, since each
//! test run of more than one repetition costs some 20 ms of kernel setup here, which
//! [`LOADERS`] runs pay again whenever the load is repeated), with SYN flood counting on
//! for them (a threshold no load reaches). "Tracked" means what the kernel keeps per
//! remote, all fixed-size arrays: every one of those remotes tests as known in the
//! contact filter of the current contact epoch (checked, word by word, against the
//! words read back), the pending table is filled with their attempts (direct-mapped:
//! the latest attempt per slot), and their SYNs are counted in the flood sketch of the
//! flood epoch of the load (counts older than the current flood epoch, about 1 s, read
//! as zero, so the sketch is loaded only for that long). The filter's state lasts a
//! contact epoch (about 69 s); whenever the epoch has moved on, the load is run again
//! before the next case or run, so every case runs against a loaded filter, timed from
//! the flood epoch after the load (the load's partial flood batches hold every per-CPU
//! batch slot until its flood epoch ends; see `ensure_tracked`). Reported:
//! the filter's false-positive rate at that load, the share of [`FP_PROBES`] fresh
//! remotes the filter wrongly calls known. The new-flow case contacts fresh remotes
//! with the tracked ones loaded: before each run the filter words its remotes hash to
//! are set back to their loaded state (not cleared), so its first contacts are those
//! the loaded filter lets through (the rest are its false positives, predicted exactly
//! and reported).
//!
//! Detection event. `xdp_bench_answer` runs the to-tenant path on a remote's SYN-ACK
//! and then moves the frame's source on, so each repetition answers a different
//! remote. Before each run the bench writes the pending attempts of that run's remotes
//! (the tags a tenant's SYNs would have left); the remotes of a run are a window of
//! [`ANSWER_WINDOW`] consecutive addresses whose pending slots are all distinct (found
//! by the same formulas), so every repetition matches its attempt, clears it and sends
//! an OUTCOME into the ring buffer. Each run is checked (one ring record per
//! repetition, the right one, none lost) and the ring drained after it (not timed). A
//! timed sample is [`ANSWER_RUNS`] such runs, their mean per repetition. The pending
//! slots are written just before the run, so they may be in the CPU's cache.

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, MapData, PerCpuArray, RingBuf,
    },
    programs::Xdp,
    Ebpf, TestRun, TestRunOptions,
};
use serde_json::json;
use warden_common::{
    bucket, direction,
    facts::{
        contact_key, contact_tag, event, fact_counter, fold_addr, outcome, pending_slot, Event,
        Pending, CONTACT_EPOCH_SHIFT, CONTACT_WORDS, FLOOD_EPOCH_SHIFT, LOG_SLOTS, PENDING_SLOTS,
        SKETCH_COUNT_BITS, SKETCH_ROWS, SKETCH_WIDTH,
    },
    global, map, program, reason, tenant_counter_index, tenant_flags, Bucket, Counters,
    DropCounters, GenConfig, Rate, TenantConfig,
};
use warden_dataplane::{
    log::{event_of, AttemptLog},
    write_generation, Compiled,
};
use warden_tests::packets::{tcp, Frame, Ipv4, Ipv6, Mac, L4};

use crate::util;

/// Most any per-packet path may cost over the XDP_PASS baseline, in ns.
const BAR_NS: f64 = 35.0;
/// Most a tenant's new flow (first contact, pending attempt, event) may cost over the
/// XDP_PASS baseline, in ns.
const NEW_FLOW_BAR_NS: f64 = 150.0;
/// The bench-only program of the new-flow case and of the tracked remotes' load
/// (`ebpf/programs/src/main.rs`).
const XDP_BENCH_NEW_FLOW: &str = "xdp_bench_new_flow";
/// The bench-only program of the detection-event case.
const XDP_BENCH_ANSWER: &str = "xdp_bench_answer";
/// Repetitions of a new-flow run at most (each a fresh remote, whose filter word the
/// run sets back to its loaded state beforehand): the new-flow remotes' range, all the
/// test range leaves beside 100,000 tenants. The figure depends on it: measured on this
/// machine, runs of 50,000 (remotes outside the test range) read some 30 ns less per
/// repetition than runs of 12,288, whatever the remotes.
const NEW_FLOW_MAX_REPEAT: u32 = 12_288;
/// Untimed full-size new-flow runs before the timed ones (see [`measure`]).
const NEW_FLOW_WARM_UPS: u32 = 4;
/// The first remote the new-flow frame contacts; each repetition the next address.
const NEW_FLOW_FIRST_REMOTE: Ipv4Addr = Ipv4Addr::new(198, 19, 144, 0);
/// The new-flow frame's remote port.
const NEW_FLOW_PORT: u16 = 443;
/// The event budget of the bench's generations: lifted, so that every event of a
/// new-flow run is sent (the daemon's budget, 2,000/s with 500 back to back, would
/// refuse all but the first 500 of a run: the lost-event path, not this one). The
/// budget's GCRA, which a real first contact also pays, costs about what the
/// conforming bandwidth case adds over the metered one.
const BENCH_EVENT_BUDGET: Rate = Rate::UNLIMITED;
/// Tenants loaded, each with one IPv4 prefix, one IPv6 prefix and (but for the no-MACs
/// policy) one bound MAC.
const TENANTS: u32 = 100_000;
/// In generation 1, tenants `TENANTS - WIDE..TENANTS` own a /24 and a /48 instead.
const WIDE: u32 = 64;
/// The tenant the known-tenant cases hit: in the middle of the index.
const PROBE_TENANT: u32 = 50_000;
/// Whose address the spoofed case sends from (with the probe tenant's MAC).
const FOREIGN_TENANT: u32 = 40_000;
const SUSPENDED_TENANT: u32 = 50_001;
/// Plan far above anything a test run can send: every packet runs the GCRA and conforms.
const POLICED_TENANT: u32 = 50_002;
/// Plan exhausted (bucket an hour ahead of the clock): every packet is dropped.
const EXHAUSTED_TENANT: u32 = 50_003;
/// Remotes whose state is loaded before the cases are timed (see the module doc).
const TRACKED_REMOTES: u32 = 1_000_000;
/// Tenants that contacted the tracked remotes, [`PER_LOADER`] each: tenants
/// `LOADER_FIRST + j * LOADER_STRIDE`, below the wide tenants and none of the cases'.
const LOADERS: u32 = 200;
const PER_LOADER: u32 = TRACKED_REMOTES / LOADERS;
const LOADER_FIRST: u32 = 37;
const LOADER_STRIDE: u32 = 450;
/// The loaders' SYN flood threshold (SYNs per flood epoch at one victim): counted, so
/// their SYNs load the sketch, and never crossed.
const LOADER_SYN_THRESHOLD: u32 = u32::MAX;
/// Fresh remotes tested against the loaded filter for its false-positive rate.
const FP_PROBES: u32 = 100_000;
/// The first tracked remote; remote `k` is this plus `k`.
const TRACKED_BASE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xe000, 0, 0, 0, 0, 0);
/// The first detection-event remote; remote `k` is this plus `k`.
const ANSWER_BASE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xd000, 0, 0, 0, 0, 0);
/// Repetitions of a detection-event run: consecutive remotes with distinct pending slots.
const ANSWER_WINDOW: u32 = 1_024;
/// Detection-event runs (windows) per timed sample.
const ANSWER_RUNS: usize = 16;
/// The tenant-side and remote ports of the detection-event frames.
const ANSWER_LOCAL_PORT: u16 = 40_000;
const ANSWER_REMOTE_PORT: u16 = 443;
/// The outside sender of the to-tenant frames and the destination of from-tenant ones.
const OUTSIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 135, 1);
const OUTSIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// An address of no tenant.
const UNKNOWN_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 135, 7);
const UNKNOWN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfffe, 0, 0, 0, 0, 7);
/// Management prefixes: 198.19.136.0/24 to 198.19.139.0/24, and 2001:db8:fe::/48.
const MANAGEMENT_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 19, 136, 0),
    Ipv4Addr::new(198, 19, 137, 0),
    Ipv4Addr::new(198, 19, 138, 0),
    Ipv4Addr::new(198, 19, 139, 0),
];
const MANAGEMENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 0);
/// A tenant on a /24 and a /48 in generation 1.
const WIDE_TENANT: u32 = TENANTS - WIDE + 10;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// 400 Gbit/s with a 10 s burst: a 64-byte frame costs 1 ns of bucket time, and the
/// bucket must conform whatever `bpf_ktime_get_ns` does during a run. Where that clock
/// is coarse (it has been seen to step by whole 4 ms ticks and to stand still through
/// a million-repetition run), a 1 MiB burst filled up and the case measured drops; 5 s
/// (half the burst, where early drop starts) outlasts `u32::MAX` repetitions at 1 ns.
const HUGE_PLAN: Rate = Rate::from_bits_per_second(400_000_000_000, 500_000_000_000);
/// 8 kbit/s, 1,000-byte burst; the bucket is set an hour ahead of the clock.
const SMALL_PLAN: Rate = Rate::from_bits_per_second(8_000, 1_000);
const EXHAUSTED_AHEAD_NS: u64 = 3_600_000_000_000;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Interleaved (baseline, case) pairs per case; the figures are medians over them.
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u32).range(9..))]
    pairs: u32,
    /// Rounds over all the kernel micro cases, each taking its share of every case's
    /// pairs: a case's pairs are spread over the whole micro phase rather than taken
    /// in one stretch, so a few noisy seconds on a shared machine touch every case a
    /// little instead of a few cases wholly.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Repetitions per BPF_PROG_TEST_RUN call; the kernel reports the mean per repetition.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// CPU to pin the measurement to (default: the CPU the task starts on).
    #[arg(long)]
    cpu: Option<usize>,
    /// Exit non-zero when a case misses the bar.
    #[arg(long)]
    strict: bool,
    /// Skip the detection-latency labs (attack start to flag and first drop).
    #[arg(long)]
    skip_latency: bool,
    /// Skip the scale part (policy apply up to 100,000 tenants, full counter read,
    /// daemon memory).
    #[arg(long)]
    skip_scale: bool,
    /// Only the kernel micro cases whose name contains this text (to look into one;
    /// the report then lacks the others).
    #[arg(long)]
    micro_only: Option<String>,
    #[command(flatten)]
    throughput: crate::bench_throughput::Options,
}

/// The policies the bench measures, in order; each is written into its generation
/// just before its cases run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Generation 0: every tenant on a /32 and a /64, with a bound MAC.
    OneLength,
    /// Generation 1: the last [`WIDE`] tenants on a /24 and a /48, with bound MACs.
    TwoLengths,
    /// Generation 0 again: every tenant on a /32 and a /64, no MAC bound anywhere.
    NoMacs,
}

impl Policy {
    const ALL: [Policy; 3] = [Policy::OneLength, Policy::TwoLengths, Policy::NoMacs];

    /// The generation it is written into: not the active one when it is written, as
    /// the daemon would, since the policies run in [`Policy::ALL`] order.
    fn generation(self) -> u32 {
        match self {
            Policy::OneLength | Policy::NoMacs => 0,
            Policy::TwoLengths => 1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Policy::OneLength => "/32 | /64",
            Policy::TwoLengths => "/32 /24 | /64 /48",
            Policy::NoMacs => "/32 | /64, no MACs",
        }
    }

    fn binds_macs(self) -> bool {
        self != Policy::NoMacs
    }

    /// Prefix lengths in use, longest first: (IPv4, IPv6).
    fn lengths(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Policy::OneLength | Policy::NoMacs => (&[32], &[64]),
            Policy::TwoLengths => (&[32, 24], &[64, 48]),
        }
    }

    /// Tenant `i`'s prefixes: ((IPv4, length), (IPv6, length)).
    fn prefixes(self, i: u32) -> ((Ipv4Addr, u8), (Ipv6Addr, u8)) {
        if self == Policy::TwoLengths && i >= TENANTS - WIDE {
            ((wide_v4(i), 24), (wide_v6(i), 48))
        } else {
            ((host_v4(i), 32), (net_v6(i), 64))
        }
    }
}

/// One measured case: a program, a frame, and where one run of it must land.
struct Case {
    name: &'static str,
    policy: Policy,
    program: &'static str,
    frame: Vec<u8>,
    lands: Lands,
    /// Most the case may cost over the baseline, in ns.
    bar_ns: f64,
    /// The repetitions of a run are one flow, or each a new one.
    flow: Flow,
}

/// What the repetitions of one test run are to the fact path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The same frame, so the same flow: facts see a first contact at most once.
    Repeated,
    /// [`XDP_BENCH_NEW_FLOW`] moves the destination on: every repetition a first
    /// contact of the tenant [`Lands`] names.
    New,
    /// [`XDP_BENCH_ANSWER`] moves the source on: every repetition answers a pending
    /// first contact of the tenant [`Lands`] names (an OUTCOME into the ring).
    Answer,
}

/// Where a run lands: the verdict and the one counter it moves.
#[derive(Clone, Copy)]
enum Lands {
    /// Passed, counted to the tenant.
    Tenant { index: u32, dir: u32 },
    /// Passed, counted as NO_TENANT.
    NoTenant { dir: u32 },
    /// Dropped for `reason`, counted to the tenant and in that reason.
    Dropped { index: u32, dir: u32, reason: usize },
    /// Dropped, sender is no tenant: counted as SPOOFED.
    Spoofed { dir: u32 },
}

impl Lands {
    fn verdict(self) -> u32 {
        match self {
            Lands::Tenant { .. } | Lands::NoTenant { .. } => XDP_PASS,
            Lands::Dropped { .. } | Lands::Spoofed { .. } => XDP_DROP,
        }
    }

    fn describe(self) -> String {
        let d = |dir: u32| direction::NAMES[dir as usize];
        match self {
            Lands::Tenant { index, dir } => format!("pass, tenant {index} {}", d(dir)),
            Lands::NoTenant { dir } => format!("pass, no_tenant {}", d(dir)),
            Lands::Dropped { index, dir, reason } => {
                format!("drop {}, tenant {index} {}", reason::NAMES[reason], d(dir))
            }
            Lands::Spoofed { dir } => format!("drop, spoofed {}", d(dir)),
        }
    }
}

/// The measured figures of one case.
struct Figures {
    case_ns: Vec<u32>,
    base_ns: Vec<u32>,
    median_case: f64,
    median_base: f64,
    /// Median of the per-pair differences (case - its own baseline): a pair's two runs
    /// share whatever the machine was doing then, so their difference is what the case
    /// costs; the median of those is steadier than a difference of medians.
    median_delta: f64,
    /// Repetitions per test run.
    repeat: u32,
}

impl Figures {
    /// The figures of (case, baseline) pairs: `case_ns[i]` and `base_ns[i]` are a pair.
    fn new(case_ns: Vec<u32>, base_ns: Vec<u32>, repeat: u32) -> Figures {
        let deltas: Vec<f64> = case_ns
            .iter()
            .zip(&base_ns)
            .map(|(c, b)| f64::from(*c) - f64::from(*b))
            .collect();
        Figures {
            median_case: median(&case_ns),
            median_base: median(&base_ns),
            median_delta: median_f(&deltas),
            case_ns,
            base_ns,
            repeat,
        }
    }

    /// These pairs and `later`'s together (another round of the same case).
    fn merge(mut self, later: Figures) -> Figures {
        self.case_ns.extend(later.case_ns);
        self.base_ns.extend(later.base_ns);
        Figures::new(self.case_ns, self.base_ns, self.repeat)
    }

    fn delta(&self) -> f64 {
        self.median_delta
    }

    fn ratio(&self) -> f64 {
        if self.median_base > 0.0 {
            (self.median_base + self.median_delta) / self.median_base
        } else {
            f64::INFINITY
        }
    }

    fn pass(&self, bar_ns: f64) -> bool {
        self.delta() <= bar_ns
    }
}

/// The whole bench. The machine is set up by `cargo xtask bench` before this runs.
pub fn run(args: BenchArgs) -> Result<()> {
    // The labs first, on every CPU (the harness opens them up itself), then the pinned
    // kernel micro-benchmarks.
    let latency = if args.skip_latency {
        None
    } else {
        println!("==> detection latency: attack start to flag and first drop, median of 5 runs");
        Some(crate::latency::run(
            &crate::latency::LatencyOptions::default(),
        )?)
    };
    let cpu = pin(args.cpu)?;
    let mut ebpf = load()?;
    let mut facts = FactMaps::take(&mut ebpf)?;
    write_management(&mut ebpf)?;
    let ahead = monotonic_ns()? + EXHAUSTED_AHEAD_NS;
    set_bucket(&mut ebpf, EXHAUSTED_TENANT, direction::IN, ahead)?;
    let mut cases = cases();
    if let Some(only) = &args.micro_only {
        cases.retain(|c| c.name.contains(only.as_str()));
        ensure!(
            !cases.is_empty(),
            "no kernel micro case has {only:?} in its name"
        );
    }

    println!(
        "{TENANTS} tenants, each an IPv4 prefix and an IPv6 prefix (/32 | /64; \
         {WIDE} of them on /24 | /48 in the two-length policy), with a bound MAC each \
         except in the no-MACs policy; {} pairs x {} repetitions per case in {} rounds, CPU {cpu}",
        args.pairs, args.repeat, args.rounds
    );
    // Each round takes its share of every case's pairs, in case order; the figures are
    // the medians over all of a case's pairs.
    let per_round = args.pairs.div_ceil(args.rounds);
    let mut merged: Vec<Option<Figures>> = (0..cases.len()).map(|_| None).collect();
    for round in 0..args.rounds {
        let pairs = per_round.min(args.pairs - round * per_round);
        if pairs == 0 {
            break;
        }
        println!(
            "round {} of {}: {pairs} pairs per case",
            round + 1,
            args.rounds
        );
        for policy in Policy::ALL {
            let mine: Vec<usize> = (0..cases.len())
                .filter(|&i| cases[i].policy == policy)
                .collect();
            if mine.is_empty() {
                continue;
            }
            write_policy(&mut ebpf, policy)?;
            set_event_budget(&mut ebpf, policy.generation(), BENCH_EVENT_BUDGET)?;
            set_active(&mut ebpf, policy.generation())?;
            if round == 0 {
                for &i in &mine {
                    let case = &cases[i];
                    ensure_tracked(&ebpf, &mut facts)?;
                    verify_path(&ebpf, case)?;
                    match case.flow {
                        Flow::New => verify_new_flows(&ebpf, &mut facts, case)?,
                        Flow::Answer => verify_answers(&ebpf, &mut facts, case)?,
                        Flow::Repeated => {}
                    }
                }
            }
            for &i in &mine {
                ensure_tracked(&ebpf, &mut facts)?;
                let figures = measure(&ebpf, &mut facts, &cases[i], pairs, args.repeat)?;
                merged[i] = Some(match merged[i].take() {
                    Some(before) => before.merge(figures),
                    None => figures,
                });
            }
        }
    }
    let mut results = Vec::new();
    for (case, figures) in cases.iter().zip(merged) {
        results.push((case, figures.context("a micro case was never measured")?));
    }
    set_active(&mut ebpf, 0)?;
    let tracked = facts
        .tracked
        .as_ref()
        .context("the tracked remotes were never loaded")?;
    let tracked_json = tracked.to_json(&facts);
    println!(
        "tracked remotes: {TRACKED_REMOTES} from {LOADERS} tenants, loaded {} time(s) \
         ({:.0} ms of test runs, {:.0} ns per SYN as the kernel timed it); filter: {} of {CONTACT_WORDS} words set, {} bits; \
         pending: {} of {PENDING_SLOTS} slots hold a tracked remote's attempt; sketch: {} \
         counters live after the load; false positives: {} of {FP_PROBES} fresh remotes \
         ({:.2}%); new-flow repetitions seen as known: {} of {}",
        facts.loads,
        tracked.load_ms,
        tracked.load_ns_per_syn,
        tracked.words_set,
        tracked.bits_set,
        tracked.pending_tracked,
        tracked.sketch_live,
        tracked.fp_hits,
        tracked.fp_rate() * 100.0,
        facts.new_flow_known,
        facts.new_flow_reps,
    );
    let metrics = crate::bench_metrics::run()?;
    let scale = if args.skip_scale {
        None
    } else {
        Some(crate::bench_scale::run()?)
    };
    let throughput = if args.throughput.skip_throughput {
        None
    } else {
        Some(crate::bench_throughput::run(&args.throughput)?)
    };

    print_table(&results);
    if let Some(latency) = &latency {
        latency.print_table();
    }
    let report = write_report(&args, cpu, &results, latency.as_ref(), tracked_json)?;
    crate::bench_metrics::add_to_report(&report, &metrics)?;
    if let Some(scale) = &scale {
        crate::bench_scale::add_to_report(&report, scale)?;
    }
    if let Some(t) = &throughput {
        t.print_table();
        crate::bench_throughput::add_to_report(&report, t)?;
    }
    println!("report: {}", report.display());
    // Last, once every section is in the report: the document and its charts.
    for path in crate::report::generate(&report)? {
        println!("wrote {}", path.display());
    }

    let mut failed: Vec<_> = results
        .iter()
        .filter(|(c, f)| !f.pass(c.bar_ns))
        .map(|(c, _)| format!("{} (bar {} ns)", c.name, c.bar_ns))
        .collect();
    if let Some(latency) = &latency {
        failed.extend(latency.failed().into_iter().map(str::to_owned));
    }
    if !metrics.pass() {
        failed.push(metrics.failure());
    }
    if let Some(scale) = &scale {
        failed.extend(crate::bench_scale::failed(scale));
    }
    if let Some(t) = &throughput {
        failed.extend(t.failed());
    }
    if args.strict && !failed.is_empty() {
        bail!("over the bar: {}", failed.join(", "));
    }
    Ok(())
}

/// Pins this thread to `cpu` (or the current one) so every run of a pair shares caches
/// and clock domain.
fn pin(cpu: Option<usize>) -> Result<usize> {
    let cpu = match cpu {
        Some(c) => c,
        // SAFETY: sched_getcpu has no preconditions.
        None => usize::try_from(unsafe { libc::sched_getcpu() }).context("sched_getcpu")?,
    };
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (bounds checked by libc).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("pinning to CPU {cpu}"));
        }
    }
    Ok(cpu)
}

/// `CLOCK_MONOTONIC` in ns: the clock `bpf_ktime_get_ns` reads.
fn monotonic_ns() -> Result<u64> {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn load() -> Result<Ebpf> {
    crate::util::load_xdp(&[
        program::XDP_PASS_BASELINE,
        program::XDP_TO_TENANT,
        program::XDP_FROM_TENANT,
        XDP_BENCH_NEW_FLOW,
        XDP_BENCH_ANSWER,
    ])
}

/// IPv4 /32 of tenant `i`: 198.18.0.0 + i (198.18.0.0 - 198.19.134.159).
fn host_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// IPv4 /24 of a wide tenant `i` (generation 1): 198.19.(192 + i - first wide).0/24.
fn wide_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 192 + (i - (TENANTS - WIDE)) as u8, 0)
}

/// The IPv6 address tenant `i` sends from (in its /64).
fn host_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net_v6(i)) + 0x10)
}

/// Tracked remote `k` (`k >= TRACKED_REMOTES`: a fresh one, never contacted).
fn tracked_remote(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(TRACKED_BASE) + u128::from(k))
}

/// Detection-event remote `k`.
fn answer_remote(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(ANSWER_BASE) + u128::from(k))
}

/// The tenant that contacted tracked remotes `j * PER_LOADER..(j + 1) * PER_LOADER`.
fn loader_tenant(j: u32) -> u32 {
    LOADER_FIRST + j * LOADER_STRIDE
}

fn is_loader(i: u32) -> bool {
    i >= LOADER_FIRST
        && (i - LOADER_FIRST).is_multiple_of(LOADER_STRIDE)
        && i < loader_tenant(LOADERS)
}

/// IPv6 /64 of tenant `i`: 2001:db8:0:i::/64.
fn net_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0)
}

/// IPv6 /48 of a wide tenant `i` (generation 1): 2001:db8:1xx::/48.
fn wide_v6(i: u32) -> Ipv6Addr {
    let j = (i - (TENANTS - WIDE)) as u16;
    Ipv6Addr::new(0x2001, 0xdb8, 0x100 + j, 0, 0, 0, 0, 0)
}

/// The MAC bound to tenant `i`.
fn tenant_mac(i: u32) -> Mac {
    let [_, a, b, c] = i.to_be_bytes();
    [0x02, 0x57, 0, a, b, c]
}

fn tenant_config(policy: Policy, i: u32) -> TenantConfig {
    // Flood counting as the daemon compiles a policy's defaults: every tenant's SYNs,
    // datagrams and inbound packets are counted, as on a production node.
    let d = warden_policy::Detectors::default();
    let mut cfg = TenantConfig {
        flood_out_syn: warden_dataplane::per_flood_epoch(d.flood_out.syn_pps),
        flood_out_pkts: warden_dataplane::per_flood_epoch(d.flood_out.pps),
        flood_in_pkts: warden_dataplane::per_flood_epoch(d.flood_in.pps),
        flood_in_bytes: warden_dataplane::bytes_per_flood_epoch(d.flood_in.bps),
        ..TenantConfig::default()
    };
    if policy.binds_macs() {
        cfg.flags |= tenant_flags::MACS_BOUND;
    }
    if is_loader(i) {
        cfg.flood_out_syn = LOADER_SYN_THRESHOLD;
    }
    match i {
        SUSPENDED_TENANT => cfg.flags |= tenant_flags::SUSPENDED,
        POLICED_TENANT => cfg.rate = [HUGE_PLAN, HUGE_PLAN],
        EXHAUSTED_TENANT => cfg.rate = [SMALL_PLAN, SMALL_PLAN],
        _ => {}
    }
    cfg
}

fn mask4(addr: Ipv4Addr, plen: u8) -> [u8; 4] {
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    (u32::from(addr) & mask).to_be_bytes()
}

fn mask6(addr: Ipv6Addr, plen: u8) -> [u8; 16] {
    let mask = u128::MAX.checked_shl(128 - u32::from(plen)).unwrap_or(0);
    (u128::from(addr) & mask).to_be_bytes()
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("no {name} map in the object"))
}

/// `policy` as the daemon compiles it (`warden_dataplane::compile`'s output).
fn compile(policy: Policy) -> Compiled {
    let mut c = Compiled::default();
    for i in 0..TENANTS {
        let ((a4, l4), (a6, l6)) = policy.prefixes(i);
        c.v4.insert((l4, mask4(a4, l4)), i);
        c.v6.insert((l6, mask6(a6, l6)), i);
        if policy.binds_macs() {
            c.macs.insert(tenant_mac(i), i);
        }
        c.configs.insert(i, tenant_config(policy, i));
    }
    let (lens4, lens6) = policy.lengths();
    (c.v4_lens, c.v6_lens) = (lens4.to_vec(), lens6.to_vec());
    c
}

/// Writes `policy` into its generation exactly as `Dataplane::apply` would
/// (`warden_dataplane::write_generation`: the daemon's placement and GEN_CONFIG).
fn write_policy(ebpf: &mut Ebpf, policy: Policy) -> Result<()> {
    let c = compile(policy);
    write_generation(ebpf, policy.generation(), &c)
        .with_context(|| format!("writing the {} policy", policy.label()))
}

/// A few management prefixes, so the suspended case pays for a real trie miss.
fn write_management(ebpf: &mut Ebpf) -> Result<()> {
    {
        let mut t: LpmTrie<&mut MapData, [u8; 4], u8> =
            LpmTrie::try_from(map_mut(ebpf, map::MANAGEMENT_V4)?)?;
        for net in MANAGEMENT_V4 {
            t.insert(&Key::new(24, net.octets()), 1u8, 0)
                .context("writing MANAGEMENT_V4")?;
        }
    }
    let mut t: LpmTrie<&mut MapData, [u8; 16], u8> =
        LpmTrie::try_from(map_mut(ebpf, map::MANAGEMENT_V6)?)?;
    t.insert(&Key::new(48, MANAGEMENT_V6.octets()), 1u8, 0)
        .context("writing MANAGEMENT_V6")?;
    Ok(())
}

/// The flip: ACTIVE\[0\] = `gen`.
fn set_active(ebpf: &mut Ebpf, gen: u32) -> Result<()> {
    let mut m: Array<&mut MapData, u32> = Array::try_from(map_mut(ebpf, map::ACTIVE)?)?;
    m.set(0, gen, 0).context("writing ACTIVE")
}

/// Replaces generation `gen`'s event budget (written by `write_generation` as the
/// daemon's).
fn set_event_budget(ebpf: &mut Ebpf, gen: u32, budget: Rate) -> Result<()> {
    let mut m: Array<&mut MapData, GenConfig> = Array::try_from(map_mut(ebpf, map::GEN_CONFIG)?)?;
    let mut gc = m.get(&gen, 0).context("reading GEN_CONFIG")?;
    gc.event_budget = budget;
    m.set(gen, gc, 0).context("writing GEN_CONFIG")
}

fn set_bucket(ebpf: &mut Ebpf, tenant: u32, which: u32, tat: u64) -> Result<()> {
    let mut m: Array<&mut MapData, Bucket> = Array::try_from(map_mut(ebpf, map::BUCKETS)?)?;
    m.set(bucket::index(tenant, which), Bucket { tat }, 0)
        .context("writing BUCKETS")
}

fn cases() -> Vec<Case> {
    // Outside every tenant prefix and every management prefix, in every policy.
    let (outside, outside6) = (OUTSIDE_V4, OUTSIDE_V6);
    let (unknown4, unknown6) = (UNKNOWN_V4, UNKNOWN_V6);
    let host6 = host_v6;
    let syn = || L4::tcp(40000, 443, tcp::SYN);
    let to = |dst: Ipv4Addr| {
        Frame::new(Ipv4::new(outside, dst).l4(syn()))
            .pad_to(64)
            .build()
    };
    // A datagram from outside, as a DNS answer or a UDP flood arrives.
    let udp_to = |dst: Ipv4Addr| {
        Frame::new(Ipv4::new(outside, dst).l4(L4::udp(53, 40000)))
            .pad_to(64)
            .build()
    };
    let (to_tenant, from_tenant) = (program::XDP_TO_TENANT, program::XDP_FROM_TENANT);
    let (out, inn) = (direction::OUT, direction::IN);
    vec![
        Case {
            name: "known tenant v4, to-tenant (meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(PROBE_TENANT)),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "known tenant v6, from-tenant (MAC + address binding, meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: from_tenant,
            frame: Frame::new(Ipv6::new(host6(PROBE_TENANT), outside6).l4(syn()))
                .src_mac(tenant_mac(PROBE_TENANT))
                .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "unknown address v4, to-tenant",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(unknown4),
            lands: Lands::NoTenant { dir: inn },
        },
        Case {
            name: "spoofed source, from-tenant (another tenant's address: drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: from_tenant,
            frame: Frame::new(Ipv4::new(host_v4(FOREIGN_TENANT), outside).l4(syn()))
                .src_mac(tenant_mac(PROBE_TENANT))
                .pad_to(64)
                .build(),
            lands: Lands::Dropped {
                index: PROBE_TENANT,
                dir: out,
                reason: reason::SPOOF_IP,
            },
        },
        Case {
            name: "suspended tenant, to-tenant (management miss: drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(SUSPENDED_TENANT)),
            lands: Lands::Dropped {
                index: SUSPENDED_TENANT,
                dir: inn,
                reason: reason::SUSPENDED,
            },
        },
        Case {
            name: "policed, conforming (GCRA, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(POLICED_TENANT)),
            lands: Lands::Tenant {
                index: POLICED_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "policed, plan exhausted (GCRA, drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(EXHAUSTED_TENANT)),
            lands: Lands::Dropped {
                index: EXHAUSTED_TENANT,
                dir: inn,
                reason: reason::BANDWIDTH,
            },
        },
        Case {
            name: "known tenant v4, to-tenant UDP datagram (contact, answer, flood: meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: udp_to(host_v4(PROBE_TENANT)),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "policed, plan exhausted, UDP datagram (GCRA, drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: udp_to(host_v4(EXHAUSTED_TENANT)),
            lands: Lands::Dropped {
                index: EXHAUSTED_TENANT,
                dir: inn,
                reason: reason::BANDWIDTH,
            },
        },
        Case {
            name: "known tenant v4, to-tenant (/32 probe, /24 hit)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: to(Ipv4Addr::from(u32::from(wide_v4(WIDE_TENANT)) + 99)),
            lands: Lands::Tenant {
                index: WIDE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "known tenant v4, to-tenant (/32 hit)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: to(host_v4(PROBE_TENANT)),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "unknown address v4, to-tenant (two probes miss)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: to(unknown4),
            lands: Lands::NoTenant { dir: inn },
        },
        Case {
            name: "unknown address v6, to-tenant (two probes miss)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: Frame::new(Ipv6::new(outside6, unknown6).l4(syn())).build(),
            lands: Lands::NoTenant { dir: inn },
        },
        Case {
            name: "unknown sender v6, from-tenant (MAC miss, two probes miss: drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: from_tenant,
            frame: Frame::new(Ipv6::new(unknown6, outside6).l4(syn())).build(),
            lands: Lands::Spoofed { dir: out },
        },
        Case {
            name: "known tenant v4, from-tenant (no MAC lookup, address binding, meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::NoMacs,
            program: from_tenant,
            frame: Frame::new(Ipv4::new(host_v4(PROBE_TENANT), outside).l4(syn()))
                .pad_to(64)
                .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "known tenant v6, from-tenant (no MAC lookup, address binding, meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::NoMacs,
            program: from_tenant,
            frame: Frame::new(Ipv6::new(host6(PROBE_TENANT), outside6).l4(syn())).build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "new flow v4, from-tenant (SYN, first contact: filter, pending, event)",
            bar_ns: NEW_FLOW_BAR_NS,
            flow: Flow::New,
            policy: Policy::OneLength,
            program: XDP_BENCH_NEW_FLOW,
            frame: Frame::new(
                Ipv4::new(host_v4(PROBE_TENANT), NEW_FLOW_FIRST_REMOTE).l4(L4::tcp(
                    40000,
                    NEW_FLOW_PORT,
                    tcp::SYN,
                )),
            )
            .src_mac(tenant_mac(PROBE_TENANT))
            .pad_to(64)
            .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "detection event v6, to-tenant (SYN-ACK answers a pending first contact: \
                   OUTCOME into the ring)",
            bar_ns: NEW_FLOW_BAR_NS,
            flow: Flow::Answer,
            policy: Policy::OneLength,
            program: XDP_BENCH_ANSWER,
            frame: answer_frame(0),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "established flow v4, from-tenant (ACK segment: no facts)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: from_tenant,
            frame: Frame::new(Ipv4::new(host_v4(PROBE_TENANT), outside).l4(L4::tcp(
                40000,
                443,
                tcp::ACK,
            )))
            .src_mac(tenant_mac(PROBE_TENANT))
            .pad_to(64)
            .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "established flow v4, to-tenant (ACK segment: no facts)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: Frame::new(Ipv4::new(outside, host_v4(PROBE_TENANT)).l4(L4::tcp(
                443,
                40000,
                tcp::ACK,
            )))
            .pad_to(64)
            .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
    ]
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    ebpf.program(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// One BPF_PROG_TEST_RUN; returns (return value, mean ns per repetition).
fn test_run(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    };
    let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
    let ns = u32::try_from(r.duration.as_nanos()).unwrap_or(u32::MAX);
    Ok((r.return_value, ns))
}

/// Every counter a case could move, summed over CPUs: the case's tenant's packets,
/// bytes and drops by reason in its direction, then every global slot's packets and
/// bytes.
fn observe(ebpf: &Ebpf, lands: Lands) -> Result<Vec<u64>> {
    let (index, dir) = match lands {
        Lands::Tenant { index, dir } | Lands::Dropped { index, dir, .. } => (index, dir),
        Lands::NoTenant { dir } | Lands::Spoofed { dir } => (PROBE_TENANT, dir),
    };
    let by_name = |name: &str| {
        ebpf.map(name)
            .with_context(|| format!("no {name} map in the object"))
    };
    let counters: PerCpuArray<&MapData, Counters> =
        PerCpuArray::try_from(by_name(map::TENANT_COUNTERS)?)?;
    let drops: PerCpuArray<&MapData, DropCounters> =
        PerCpuArray::try_from(by_name(map::DROP_COUNTERS)?)?;
    let globals: PerCpuArray<&MapData, Counters> =
        PerCpuArray::try_from(by_name(map::GLOBAL_COUNTERS)?)?;
    let slot = tenant_counter_index(index, dir);
    let mut seen = Vec::new();
    let c = counters.get(&slot, 0)?;
    seen.push(c.iter().map(|c| c.packets).sum());
    seen.push(c.iter().map(|c| c.bytes).sum());
    let d = drops.get(&slot, 0)?;
    for r in 0..reason::COUNT {
        seen.push(d.iter().map(|d| d.packets[r]).sum());
    }
    for g in 0..global::ENTRIES {
        let c = globals.get(&g, 0)?;
        seen.push(c.iter().map(|c| c.packets).sum());
        seen.push(c.iter().map(|c| c.bytes).sum());
    }
    Ok(seen)
}

/// What one run of a `len`-byte frame must add to [`observe`]'s figures.
fn expected_change(lands: Lands, len: u64) -> Vec<u64> {
    let mut want = vec![0; 2 + reason::COUNT + 2 * global::ENTRIES as usize];
    let global = |slot: u32, dir: u32| 2 + reason::COUNT + 2 * global::index(slot, dir) as usize;
    match lands {
        Lands::Tenant { .. } => (want[0], want[1]) = (1, len),
        Lands::Dropped { reason, .. } => {
            (want[0], want[1]) = (1, len);
            want[2 + reason] = 1;
        }
        Lands::NoTenant { dir } => {
            let i = global(global::NO_TENANT, dir);
            (want[i], want[i + 1]) = (1, len);
        }
        Lands::Spoofed { dir } => {
            let i = global(global::SPOOFED, dir);
            (want[i], want[i + 1]) = (1, len);
        }
    }
    want
}

/// How far each of [`observe`]'s figures moved.
fn moved(before: &[u64], after: &[u64]) -> Vec<u64> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| a.wrapping_sub(*b))
        .collect()
}

/// Runs the case once and checks its verdict and that it moved exactly the counters
/// its name promises.
fn verify_path(ebpf: &Ebpf, case: &Case) -> Result<()> {
    let before = observe(ebpf, case.lands)?;
    let (ret, _) = test_run(xdp(ebpf, case.program)?, &case.frame, 1)?;
    let after = observe(ebpf, case.lands)?;
    ensure!(
        ret == case.lands.verdict(),
        "{}: {} returned {ret}, expected {} ({})",
        case.name,
        case.program,
        case.lands.verdict(),
        case.lands.describe()
    );
    let got = moved(&before, &after);
    let want = expected_change(case.lands, case.frame.len() as u64);
    ensure!(
        got == want,
        "{}: the frame did not land where the case expects ({}): counters moved by {got:?}, \
         expected {want:?} (tenant packets, bytes, drops by reason, then global slots)",
        case.name,
        case.lands.describe()
    );
    Ok(())
}

/// The fact maps the fact cases need from userspace, taken out of the object (the
/// programs keep using them): the ring and the attempt log, to read; the contact filter,
/// to set a new-flow run's words back to their loaded state; the pending table, to
/// write a detection-event run's attempts and to check the load; the sketch, to check
/// the load. Also the tracked remotes' load and the detection-event windows.
struct FactMaps {
    ring: RingBuf<MapData>,
    log: AttemptLog,
    contacts: Array<MapData, u64>,
    pending: Array<MapData, Pending>,
    sketch: Array<MapData, u64>,
    /// The tracked remotes' state, once loaded.
    tracked: Option<Tracked>,
    /// Loads of the tracked remotes so far (one more each time the contact epoch moved
    /// on).
    loads: u32,
    /// Of the new-flow runs timed: repetitions, and those the loaded filter took for
    /// known remotes (its false positives).
    new_flow_reps: u64,
    new_flow_known: u64,
    /// First remote of each detection-event window ([`answer_windows`]).
    answer_windows: Vec<u32>,
}

impl FactMaps {
    fn take(ebpf: &mut Ebpf) -> Result<FactMaps> {
        let ring = ebpf.take_map(map::EVENTS).context("no EVENTS map")?;
        let contacts = ebpf.take_map(map::CONTACTS).context("no CONTACTS map")?;
        let pending = ebpf.take_map(map::PENDING).context("no PENDING map")?;
        let sketch = ebpf.take_map(map::SKETCH).context("no SKETCH map")?;
        let log = match ebpf.take_map(map::ATTEMPT_LOG) {
            Some(aya::maps::Map::Array(data)) => data,
            _ => bail!("no ATTEMPT_LOG array in the object"),
        };
        Ok(FactMaps {
            ring: RingBuf::try_from(ring).context("opening the EVENTS ring")?,
            log: AttemptLog::new(log).context("mapping ATTEMPT_LOG")?,
            contacts: Array::try_from(contacts).context("opening CONTACTS")?,
            pending: Array::try_from(pending).context("opening PENDING")?,
            sketch: Array::try_from(sketch).context("opening SKETCH")?,
            tracked: None,
            loads: 0,
            new_flow_reps: 0,
            new_flow_known: 0,
            answer_windows: answer_windows(PROBE_TENANT, ANSWER_RUNS, ANSWER_WINDOW)?,
        })
    }

    /// Every new entry of the attempt log, as events, with how many entries were
    /// written over unread since the last call; and the number of ring records (which
    /// are drained).
    fn drain(&mut self) -> Result<(Vec<Event>, u64, usize)> {
        let ring = self.ring_events()?.len();
        let lost_before = self.log.lost();
        let mut out = Vec::new();
        self.log.take(usize::MAX, |e| out.push(event_of(&e)));
        Ok((out, self.log.lost() - lost_before, ring))
    }

    /// Drains the ring: its records, as events.
    fn ring_events(&mut self) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            ensure!(
                item.len() >= std::mem::size_of::<Event>(),
                "a ring record of {} bytes: not an event",
                item.len()
            );
            // SAFETY: at least size_of::<Event>() bytes (checked above), read unaligned;
            // Event is plain integers, valid for every bit pattern.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
        }
        Ok(out)
    }

    /// Sets the contact filter words of the first `n` remotes of the new-flow frame of
    /// `tenant` back to their loaded state (the tracked remotes' bits, in the current
    /// contact epoch), and returns the repetitions that will be first contacts: all but
    /// those whose two bits the loaded words or the run's earlier remotes already hold
    /// (the filter's false positives), found by running the filter's formulas
    /// (`warden_common::facts`, as the programs use them) over the run.
    fn arm_new_flows(&mut self, tenant: u32, n: u32) -> Result<Vec<u32>> {
        let tracked = self
            .tracked
            .as_ref()
            .context("the tracked remotes are not loaded")?;
        let mut words: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut new = Vec::with_capacity(n as usize);
        for k in 0..n {
            let key = contact_key(
                tenant,
                contact_tag::OUT,
                6,
                NEW_FLOW_PORT,
                fold_addr(&remote16(new_flow_remote(k))),
            );
            let (w, bits) = filter_bits(key);
            let word = words.entry(w).or_insert(tracked.words[w as usize]);
            if *word & bits != bits {
                *word |= bits;
                new.push(k);
            }
        }
        for &w in words.keys() {
            let loaded = (tracked.epoch << 32) | u64::from(tracked.words[w as usize]);
            self.contacts
                .set(w, loaded, 0)
                .context("writing CONTACTS")?;
        }
        Ok(new)
    }
}

/// The word index and the two bits of a contact key in the filter (as the programs'
/// `contact_word`).
fn filter_bits(key: u64) -> (u32, u32) {
    let bits = (1u32 << ((key >> 32) & 31)) | (1u32 << ((key >> 40) & 31));
    (key as u32 & (CONTACT_WORDS - 1), bits)
}

/// The tracked remotes' state as loaded and checked.
struct Tracked {
    /// The contact epoch of the load (truncated to 32 bits, as in a word).
    epoch: u64,
    /// Each filter word's bits after the load.
    words: Vec<u32>,
    /// Filter words holding bits.
    words_set: u32,
    /// Bits set over all words.
    bits_set: u64,
    /// First contacts the load logged (the rest of its SYNs found their bits set
    /// already: false positives while filling).
    logged: u64,
    /// Pending slots holding an attempt of a tracked remote, and holding anything.
    pending_tracked: u32,
    pending_used: u32,
    /// Sketch counters with a count in the flood epoch the load ended in.
    sketch_live: u32,
    /// Fresh remotes the loaded filter calls known, of [`FP_PROBES`].
    fp_hits: u32,
    /// Wall time of the load's test runs (including time the CPU spent on other tasks).
    load_ms: f64,
    /// The kernel's mean ns per loading SYN, over the load's test runs.
    load_ns_per_syn: f64,
}

impl Tracked {
    fn fp_rate(&self) -> f64 {
        f64::from(self.fp_hits) / f64::from(FP_PROBES)
    }

    fn to_json(&self, facts: &FactMaps) -> serde_json::Value {
        json!({
            "remotes": TRACKED_REMOTES,
            "tenants": LOADERS,
            "remotes_per_tenant": PER_LOADER,
            "meaning": "each remote was sent a first SYN by one of the tenants, through \
                        the from-tenant program (xdp_bench_new_flow), in the current \
                        contact epoch: every one tests as known in the contact filter \
                        (checked against the words read back); the pending table holds \
                        the latest attempts (direct-mapped); their SYNs are counted in \
                        the flood sketch of the flood epoch of the load (about 1 s). \
                        Loaded again whenever the contact epoch (about 69 s) moved on",
            "loads": facts.loads,
            "load_ms": self.load_ms,
            "load_ns_per_syn": self.load_ns_per_syn,
            "filter_words": CONTACT_WORDS,
            "filter_words_set": self.words_set,
            "filter_bits_set": self.bits_set,
            "first_contacts_logged_by_the_load": self.logged,
            "pending_slots": PENDING_SLOTS,
            "pending_slots_used": self.pending_used,
            "pending_slots_tracked": self.pending_tracked,
            "sketch_counters": SKETCH_ROWS * SKETCH_WIDTH,
            "sketch_counters_live_after_load": self.sketch_live,
            "false_positive_probes": FP_PROBES,
            "false_positives": self.fp_hits,
            "false_positive_rate": self.fp_rate(),
            "new_flow_repetitions": facts.new_flow_reps,
            "new_flow_repetitions_seen_as_known": facts.new_flow_known,
        })
    }
}

/// The key of tracked remote `k`'s contact by its tenant (`k < TRACKED_REMOTES`), or of
/// fresh remote `k` by tenant `loader_tenant(k % LOADERS)`.
fn tracked_key(k: u32) -> u64 {
    let tenant = if k < TRACKED_REMOTES {
        loader_tenant(k / PER_LOADER)
    } else {
        loader_tenant(k % LOADERS)
    };
    contact_key(
        tenant,
        contact_tag::OUT,
        6,
        NEW_FLOW_PORT,
        fold_addr(&tracked_remote(k).octets()),
    )
}

/// A loader's SYN to its first tracked remote.
fn loader_frame(j: u32) -> Vec<u8> {
    let t = loader_tenant(j);
    Frame::new(
        Ipv6::new(host_v6(t), tracked_remote(j * PER_LOADER)).l4(L4::tcp(
            40000,
            NEW_FLOW_PORT,
            tcp::SYN,
        )),
    )
    .src_mac(tenant_mac(t))
    .build()
}

/// Loads the tracked remotes unless they are loaded in the current contact epoch.
fn ensure_tracked(ebpf: &Ebpf, facts: &mut FactMaps) -> Result<()> {
    let epoch = contact_epoch()? & 0xffff_ffff;
    if facts.tracked.as_ref().is_some_and(|t| t.epoch == epoch) {
        return Ok(());
    }
    for _ in 0..3 {
        if let Some(t) = load_tracked(ebpf, facts)? {
            facts.loads += 1;
            facts.tracked = Some(t);
            // The load's million SYNs leave partial flood batches in every per-CPU
            // slot for the rest of this flood epoch, so a case timed at once would
            // see its flow counted straight into the sketch for up to a second (the
            // designed fallback when a CPU sees more than 4,096 keys in an epoch),
            // and then batched: a figure depending on where the reload fell. The
            // cases are timed from the next flood epoch, in their flows' steady state.
            let now = monotonic_ns()?;
            let next = ((now >> FLOOD_EPOCH_SHIFT) + 1) << FLOOD_EPOCH_SHIFT;
            std::thread::sleep(std::time::Duration::from_nanos(next - now + 20_000_000));
            return Ok(());
        }
    }
    bail!("three loads of the tracked remotes in a row straddled a contact epoch boundary")
}

/// Sends every loader's SYNs to its tracked remotes, then reads the fact maps back and
/// checks the load. `None` when the contact epoch moved on during the load (run it
/// again).
fn load_tracked(ebpf: &Ebpf, facts: &mut FactMaps) -> Result<Option<Tracked>> {
    let epoch = contact_epoch()? & 0xffff_ffff;
    facts.drain()?;
    let before = fact_counters(ebpf)?;
    let prog = xdp(ebpf, XDP_BENCH_NEW_FLOW)?;
    let started = std::time::Instant::now();
    let mut kernel_ns = 0u64;
    for j in 0..LOADERS {
        let frame = loader_frame(j);
        let mut out = vec![0u8; frame.len()];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                repeat: PER_LOADER,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN (tracked remotes)")?;
        kernel_ns += r.duration.as_nanos() as u64 * u64::from(PER_LOADER);
        // Ethernet (14) + IPv6 destination at 24.
        let dst: [u8; 16] = out[38..54].try_into().expect("16 bytes");
        ensure!(
            r.return_value == XDP_PASS
                && Ipv6Addr::from(dst) == tracked_remote((j + 1) * PER_LOADER),
            "loading tracked remotes: tenant {} returned {} and left the destination at {}, \
             expected a pass and {}",
            loader_tenant(j),
            r.return_value,
            Ipv6Addr::from(dst),
            tracked_remote((j + 1) * PER_LOADER)
        );
    }
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let flood_epoch = (monotonic_ns()? >> FLOOD_EPOCH_SHIFT) & 0xffff;
    if contact_epoch()? & 0xffff_ffff != epoch {
        return Ok(None);
    }
    let after = fact_counters(ebpf)?;
    let moved = |i: u32| after[i as usize] - before[i as usize];
    let (_, _, ring) = facts.drain()?;
    let logged = moved(fact_counter::LOGGED);
    ensure!(
        moved(fact_counter::LOST_BUDGET) == 0
            && moved(fact_counter::LOST_LOG) == 0
            && ring == 0
            && logged > 0
            && logged <= u64::from(TRACKED_REMOTES),
        "loading tracked remotes: {logged} first contacts logged, {} lost to the budget, \
         {} for want of a region, {ring} ring records",
        moved(fact_counter::LOST_BUDGET),
        moved(fact_counter::LOST_LOG),
    );
    // The filter, read back.
    let mut words = vec![0u32; CONTACT_WORDS as usize];
    let (mut words_set, mut bits_set) = (0, 0);
    for w in 0..CONTACT_WORDS {
        let v = facts.contacts.get(&w, 0).context("reading CONTACTS")?;
        if v >> 32 == epoch && v as u32 != 0 {
            words[w as usize] = v as u32;
            words_set += 1;
            bits_set += u64::from((v as u32).count_ones());
        }
    }
    let mut keys = Vec::with_capacity(TRACKED_REMOTES as usize);
    for k in 0..TRACKED_REMOTES {
        let key = tracked_key(k);
        let (w, bits) = filter_bits(key);
        ensure!(
            words[w as usize] & bits == bits,
            "tracked remote {} of tenant {} is not in the contact filter after the load",
            tracked_remote(k),
            loader_tenant(k / PER_LOADER)
        );
        keys.push(key);
    }
    keys.sort_unstable();
    let (mut pending_used, mut pending_tracked) = (0, 0);
    for slot in 0..PENDING_SLOTS {
        let tag = facts.pending.get(&slot, 0).context("reading PENDING")?.tag;
        if tag != 0 {
            pending_used += 1;
            if keys.binary_search(&tag).is_ok() {
                pending_tracked += 1;
            }
        }
    }
    let mut sketch_live = 0;
    for i in 0..SKETCH_ROWS * SKETCH_WIDTH {
        let c = facts.sketch.get(&i, 0).context("reading SKETCH")?;
        if c >> SKETCH_COUNT_BITS == flood_epoch && c & ((1 << SKETCH_COUNT_BITS) - 1) != 0 {
            sketch_live += 1;
        }
    }
    ensure!(
        pending_tracked > 0 && sketch_live > 0,
        "loading tracked remotes: {pending_tracked} pending slots hold their attempts and \
         {sketch_live} sketch counters count in the flood epoch of the load; both must"
    );
    let fp_hits = (TRACKED_REMOTES..TRACKED_REMOTES + FP_PROBES)
        .filter(|&k| {
            let (w, bits) = filter_bits(tracked_key(k));
            words[w as usize] & bits == bits
        })
        .count() as u32;
    Ok(Some(Tracked {
        epoch,
        words,
        words_set,
        bits_set,
        logged,
        pending_tracked,
        pending_used,
        sketch_live,
        fp_hits,
        load_ms,
        load_ns_per_syn: kernel_ns as f64 / f64::from(TRACKED_REMOTES),
    }))
}

/// The key of detection-event remote `k`'s pending attempt (the tenant's SYN to it).
fn answer_key(tenant: u32, k: u32) -> u64 {
    contact_key(
        tenant,
        contact_tag::OUT,
        6,
        ANSWER_REMOTE_PORT,
        fold_addr(&answer_remote(k).octets()),
    )
}

/// The first remotes of `count` disjoint windows of `width` consecutive detection-event
/// remotes of `tenant` whose pending slots are all distinct within the window, lowest
/// first.
fn answer_windows(tenant: u32, count: usize, width: u32) -> Result<Vec<u32>> {
    let mut last = vec![u32::MAX; PENDING_SLOTS as usize];
    let (mut start, mut out) = (0u32, Vec::with_capacity(count));
    for k in 0..u32::MAX - width {
        if out.len() == count {
            return Ok(out);
        }
        let slot = pending_slot(answer_key(tenant, k)) as usize;
        if last[slot] != u32::MAX && last[slot] >= start {
            start = last[slot] + 1;
        }
        last[slot] = k;
        if k + 1 - start == width {
            out.push(start);
            start = k + 1;
        }
    }
    bail!("no {count} windows of {width} remotes with distinct pending slots")
}

/// The detection-event frame: a SYN-ACK from remote `k` to the probe tenant.
fn answer_frame(k: u32) -> Vec<u8> {
    Frame::new(
        Ipv6::new(answer_remote(k), host_v6(PROBE_TENANT)).l4(L4::tcp(
            ANSWER_REMOTE_PORT,
            ANSWER_LOCAL_PORT,
            tcp::SYN | tcp::ACK,
        )),
    )
    .build()
}

/// One detection-event run over the window starting at remote `start`: writes the
/// window's pending attempts, runs the program once per remote, and checks that every
/// repetition sent one OUTCOME into the ring and nothing was lost. Returns the verdict,
/// the mean ns per repetition, and the ring's records.
fn answer_run(
    ebpf: &Ebpf,
    facts: &mut FactMaps,
    case: &Case,
    start: u32,
) -> Result<(u32, u32, Vec<Event>)> {
    let Lands::Tenant { index: tenant, .. } = case.lands else {
        bail!(
            "{}: a detection-event case must pass to a tenant",
            case.name
        );
    };
    // Records of earlier cases are read out first: a million-repetition case at one
    // tenant address is an inbound flood at the policy defaults, and sends its FLOOD
    // once per flood epoch, as it should.
    facts.ring_events()?;
    for k in start..start + ANSWER_WINDOW {
        let key = answer_key(tenant, k);
        facts
            .pending
            .set(pending_slot(key), Pending { tag: key }, 0)
            .context("writing PENDING")?;
    }
    let before = fact_counters(ebpf)?;
    let r = test_run(
        xdp(ebpf, case.program)?,
        &answer_frame(start),
        ANSWER_WINDOW,
    )?;
    let after = fact_counters(ebpf)?;
    let moved = |i: u32| after[i as usize] - before[i as usize];
    let events = facts.ring_events()?;
    ensure!(
        moved(fact_counter::SENT) == u64::from(ANSWER_WINDOW)
            && moved(fact_counter::LOST_RING) == 0
            && events.len() == ANSWER_WINDOW as usize,
        "{}: {ANSWER_WINDOW} answers to pending attempts sent {} events ({} lost, ring \
         full), {} read from the ring",
        case.name,
        moved(fact_counter::SENT),
        moved(fact_counter::LOST_RING),
        events.len()
    );
    Ok((r.0, r.1, events))
}

/// Proves the detection-event program does what its case claims: each repetition of a
/// run answered its own pending attempt (one OUTCOME per remote, in order, with the
/// tenant, addresses and ports of the answer) and cleared it.
fn verify_answers(ebpf: &Ebpf, facts: &mut FactMaps, case: &Case) -> Result<()> {
    let start = facts.answer_windows[0];
    let (_, _, events) = answer_run(ebpf, facts, case, start)?;
    let local = remote16_v6(host_v6(PROBE_TENANT));
    for (k, e) in (start..).zip(&events) {
        ensure!(
            e.kind == event::OUTCOME
                && e.tenant == PROBE_TENANT
                && e.detail == outcome::SUCCESS
                && e.dir == direction::IN as u8
                && e.proto == 6
                && e.remote == remote16_v6(answer_remote(k))
                && e.local == local
                && e.remote_port == ANSWER_REMOTE_PORT
                && e.local_port == ANSWER_LOCAL_PORT,
            "{}: event of remote {} is {e:?}, expected a SUCCESS OUTCOME of tenant \
             {PROBE_TENANT}",
            case.name,
            answer_remote(k)
        );
        let slot = pending_slot(answer_key(PROBE_TENANT, k));
        let tag = facts.pending.get(&slot, 0).context("reading PENDING")?.tag;
        ensure!(
            tag == 0,
            "{}: the answered attempt of {} is still pending",
            case.name,
            answer_remote(k)
        );
    }
    Ok(())
}

/// An IPv6 address in event form.
fn remote16_v6(a: Ipv6Addr) -> [u8; 16] {
    a.octets()
}

/// The contact epoch of the programs' clock now (`CLOCK_MONOTONIC_COARSE`).
fn contact_epoch() -> Result<u64> {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok((ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) >> CONTACT_EPOCH_SHIFT)
}

/// The remote the new-flow frame contacts at repetition `k` of a run.
fn new_flow_remote(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(NEW_FLOW_FIRST_REMOTE) + k)
}

/// An IPv4 address in event form: network order in the first 4 bytes.
fn remote16(a: Ipv4Addr) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a.octets());
    out
}

/// The fact counters summed over CPUs, by `fact_counter` index.
fn fact_counters(ebpf: &Ebpf) -> Result<Vec<u64>> {
    let m = ebpf
        .map(map::FACT_COUNTERS)
        .context("no FACT_COUNTERS map")?;
    let a: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(m)?;
    (0..fact_counter::COUNT)
        .map(|i| Ok(a.get(&i, 0)?.iter().sum()))
        .collect()
}

/// A new-flow run about to start: which repetitions will be first contacts, and the
/// counters and contact epoch before it.
struct NewFlowRun {
    new: Vec<u32>,
    before: Vec<u64>,
    epoch: u64,
}

impl NewFlowRun {
    /// Sets the run's filter words back to their loaded state (loading the tracked
    /// remotes again first if the contact epoch moved on) and notes where the counters
    /// stand.
    fn start(ebpf: &Ebpf, facts: &mut FactMaps, tenant: u32, n: u32) -> Result<NewFlowRun> {
        ensure_tracked(ebpf, facts)?;
        facts.drain()?;
        Ok(NewFlowRun {
            new: facts.arm_new_flows(tenant, n)?,
            before: fact_counters(ebpf)?,
            epoch: contact_epoch()?,
        })
    }

    /// Checks the run: one log entry per first contact, none lost to the budget or for
    /// want of a region, nothing in the ring; the log holds the last `LOG_SLOTS` of
    /// them and the reader counts the rest as written over (a run across a contact
    /// epoch boundary may find more words empty, so it may log more). Returns the
    /// entries read, as events.
    fn check(&self, ebpf: &Ebpf, facts: &mut FactMaps, case: &Case, n: u32) -> Result<Vec<Event>> {
        let after = fact_counters(ebpf)?;
        let moved = |i: u32| after[i as usize] - self.before[i as usize];
        let (events, overwritten, ring) = facts.drain()?;
        let want = self.new.len() as u64;
        let logged = moved(fact_counter::LOGGED);
        let same_epoch = contact_epoch()? == self.epoch;
        let read = events.len() as u64;
        ensure!(
            (logged == want || (!same_epoch && logged > want))
                && moved(fact_counter::LOST_LOG) == 0
                && moved(fact_counter::LOST_BUDGET) == 0
                && ring == 0
                && read == logged.min(u64::from(LOG_SLOTS))
                && read + overwritten == logged,
            "{}: {n} repetitions with {want} first contacts logged {logged} entries (lost \
             to the budget {}, for want of a region {}); {read} read, {overwritten} written \
             over; {ring} ring records",
            case.name,
            moved(fact_counter::LOST_BUDGET),
            moved(fact_counter::LOST_LOG),
        );
        Ok(events)
    }
}

/// Proves the new-flow program does what its case claims: the frame it hands back
/// has its destination advanced by the repetitions (packet data persists across the
/// repetitions of one test run), and each repetition sent one ATTEMPT of the tenant,
/// for consecutive remotes.
fn verify_new_flows(ebpf: &Ebpf, facts: &mut FactMaps, case: &Case) -> Result<()> {
    const N: u32 = 1000;
    let Lands::Tenant { index: tenant, .. } = case.lands else {
        bail!("{}: a new-flow case must pass to a tenant", case.name);
    };
    let run = NewFlowRun::start(ebpf, facts, tenant, N)?;
    let mut out = vec![0u8; case.frame.len()];
    let opts = TestRunOptions {
        data_in: Some(&case.frame),
        data_out: Some(&mut out),
        repeat: N,
        ..Default::default()
    };
    let r = xdp(ebpf, case.program)?
        .test_run(opts)
        .context("BPF_PROG_TEST_RUN")?;
    ensure!(
        r.return_value == case.lands.verdict(),
        "{}: verdict {}",
        case.name,
        r.return_value
    );
    let dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
    ensure!(
        dst == new_flow_remote(N),
        "{}: after {N} repetitions the frame's destination is {dst}, expected {}: packet \
         data does not persist across repetitions, so they were not new flows",
        case.name,
        new_flow_remote(N)
    );
    let events = run.check(ebpf, facts, case, N)?;
    ensure!(
        events.len() == run.new.len(),
        "{}: the contact epoch changed during the check; run the bench again",
        case.name
    );
    for (e, &k) in events.iter().zip(&run.new) {
        let remote = remote16(new_flow_remote(k));
        ensure!(
            e.kind == event::ATTEMPT
                && e.tenant == tenant
                && e.remote == remote
                && e.remote_port == NEW_FLOW_PORT,
            "{}: event of repetition {k} is {e:?}, expected an ATTEMPT of tenant {tenant} \
             to {}",
            case.name,
            new_flow_remote(k)
        );
    }
    Ok(())
}

fn measure(
    ebpf: &Ebpf,
    facts: &mut FactMaps,
    case: &Case,
    pairs: u32,
    repeat: u32,
) -> Result<Figures> {
    let repeat = match case.flow {
        Flow::Repeated => repeat,
        Flow::New => repeat.min(NEW_FLOW_MAX_REPEAT),
        Flow::Answer => ANSWER_WINDOW * ANSWER_RUNS as u32,
    };
    let tenant = match case.lands {
        Lands::Tenant { index, .. } | Lands::Dropped { index, .. } => index,
        Lands::NoTenant { .. } | Lands::Spoofed { .. } => PROBE_TENANT,
    };
    // A new-flow run starts with its flows unknown to the loaded filter and leaves its
    // events drained; a detection-event sample is its runs' mean per repetition.
    let mut timed = false;
    let mut run_case = |n: u32, timed: bool| -> Result<(u32, u32)> {
        if case.flow == Flow::Answer {
            ensure_tracked(ebpf, facts)?;
            let (mut ret, mut total) = (XDP_PASS, 0u64);
            for start in facts.answer_windows.clone() {
                let (r, ns, _) = answer_run(ebpf, facts, case, start)?;
                ret = if r == XDP_PASS { ret } else { r };
                total += u64::from(ns) * u64::from(ANSWER_WINDOW);
            }
            let reps = u64::from(ANSWER_WINDOW) * ANSWER_RUNS as u64;
            return Ok((
                ret,
                u32::try_from((total + reps / 2) / reps).unwrap_or(u32::MAX),
            ));
        }
        let run = match case.flow {
            Flow::New => Some(NewFlowRun::start(ebpf, facts, tenant, n)?),
            Flow::Repeated | Flow::Answer => None,
        };
        let r = test_run(xdp(ebpf, case.program)?, &case.frame, n)?;
        if let Some(run) = run {
            run.check(ebpf, facts, case, n)?;
            if timed {
                facts.new_flow_reps += u64::from(n);
                facts.new_flow_known += u64::from(n) - run.new.len() as u64;
            }
        }
        Ok(r)
    };
    let base = xdp(ebpf, program::XDP_PASS_BASELINE)?;
    // Warm caches and the branch predictor; not recorded. A new-flow run touches a
    // new random filter word and pending slot per repetition: warm-up runs of full
    // size first touch the tables' pages (in a VM, each first touch of a guest page can
    // fault in the host), so the timed runs see the tables as a running node does.
    test_run(base, &case.frame, repeat.div_ceil(10))?;
    let warm_ups = match case.flow {
        Flow::Repeated | Flow::Answer => 1,
        Flow::New => NEW_FLOW_WARM_UPS,
    };
    for _ in 0..warm_ups {
        run_case(
            match case.flow {
                Flow::Repeated => repeat.div_ceil(10),
                Flow::New | Flow::Answer => repeat,
            },
            timed,
        )?;
    }
    timed = true;
    let (mut base_ns, mut case_ns) = (Vec::new(), Vec::new());
    let want: Vec<u64> = expected_change(case.lands, case.frame.len() as u64)
        .iter()
        .map(|n| n * u64::from(repeat))
        .collect();
    for pair in 0..pairs {
        // ABBA order: alternate which side runs first, so a drift within the series
        // does not favour either side.
        let base_first = pair % 2 == 0;
        if base_first {
            base_ns.push(test_run(base, &case.frame, repeat)?.1);
        }
        let before = observe(ebpf, case.lands)?;
        let (ret, ns) = run_case(repeat, timed)?;
        let got = moved(&before, &observe(ebpf, case.lands)?);
        // Every repetition, not just the last one the verdict shows, took the path.
        ensure!(
            ret == case.lands.verdict() && got == want,
            "{}: while timing, returned {ret} and moved the counters by {got:?}; \
             expected {} and {want:?} ({} x {repeat})",
            case.name,
            case.lands.verdict(),
            case.lands.describe()
        );
        case_ns.push(ns);
        if !base_first {
            base_ns.push(test_run(base, &case.frame, repeat)?.1);
        }
    }
    Ok(Figures::new(case_ns, base_ns, repeat))
}

fn median_f(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn median(samples: &[u32]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len();
    if n % 2 == 1 {
        f64::from(s[n / 2])
    } else {
        (f64::from(s[n / 2 - 1]) + f64::from(s[n / 2])) / 2.0
    }
}

fn print_table(results: &[(&Case, Figures)]) {
    const COLUMNS: usize = 9;
    let headers = [
        "case", "lengths", "program", "frame", "case ns", "base ns", "delta ns", "ratio", "bar",
    ];
    let rows: Vec<[String; COLUMNS]> = results
        .iter()
        .map(|(c, f)| {
            [
                c.name.to_string(),
                c.policy.label().to_string(),
                c.program.to_string(),
                format!("{} B", c.frame.len()),
                format!("{:.1}", f.median_case),
                format!("{:.1}", f.median_base),
                format!("{:+.1}", f.delta()),
                format!("{:.2}", f.ratio()),
                format!(
                    "{} (<= {} ns)",
                    if f.pass(c.bar_ns) { "PASS" } else { "FAIL" },
                    c.bar_ns
                ),
            ]
        })
        .collect();
    // Text columns left-aligned, figures right-aligned.
    crate::util::print_aligned(headers, &rows, |i| (3..=7).contains(&i));
}

fn write_report(
    args: &BenchArgs,
    cpu: usize,
    results: &[(&Case, Figures)],
    latency: Option<&crate::latency::LatencyReport>,
    tracked: serde_json::Value,
) -> Result<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"))
        .join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cases: Vec<_> = results
        .iter()
        .map(|(c, f)| {
            json!({
                "name": c.name,
                "generation": c.policy.generation(),
                "prefix_lengths": c.policy.label(),
                "program": c.program,
                "baseline_program": program::XDP_PASS_BASELINE,
                "lands": c.lands.describe(),
                "frame_bytes": c.frame.len(),
                "median_case_ns": f.median_case,
                "median_baseline_ns": f.median_base,
                "delta_ns": f.delta(),
                "ratio": f.ratio(),
                "bar_ns": c.bar_ns,
                "pass": f.pass(c.bar_ns),
                "repeat": f.repeat,
                "new_flow_per_repetition": c.flow == Flow::New,
                "detection_event_per_repetition": c.flow == Flow::Answer,
                "case_ns": f.case_ns,
                "baseline_ns": f.base_ns,
            })
        })
        .collect();
    let report = json!({
        "method": "BPF_PROG_TEST_RUN mean ns per repetition (kernel-timed), \
                   interleaved baseline/case pairs taken in rounds over all cases, medians",
        "kernel": kernel.trim(),
        "cpu": cpu,
        "pairs": args.pairs,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "bar_ns": BAR_NS,
        "new_flow_bar_ns": NEW_FLOW_BAR_NS,
        "detection_latency": latency.map(|l| l.to_json()),
        "new_flow": format!(
            "{XDP_BENCH_NEW_FLOW}: each repetition contacts the next IPv4 destination, a \
             fresh remote, with the tracked remotes loaded; the filter words of a run's \
             remotes set back to their loaded state before it, so a repetition is a first \
             contact (filter insert, pending write, attempt log entry) unless the loaded \
             filter takes it for a known remote (a false positive, predicted exactly and \
             counted in tracked_remotes); log drained after each run; at most \
             {NEW_FLOW_MAX_REPEAT} repetitions per run; event budget lifted \
             ({BENCH_EVENT_BUDGET:?})"
        ),
        "detection_event": format!(
            "{XDP_BENCH_ANSWER}: each repetition a SYN-ACK from the next IPv6 remote \
             answering that remote's pending first contact, so each clears its pending \
             slot and sends an OUTCOME into the ring buffer (checked: one record per \
             repetition, none lost); the pending attempts of a run are written before it, \
             for {ANSWER_WINDOW} consecutive remotes with distinct pending slots; a timed \
             sample is {ANSWER_RUNS} such runs, the ring drained after each"
        ),
        "tracked_remotes": tracked,
        "tenants": {
            "count": TENANTS,
            "policies": Policy::ALL.map(|p| {
                let (v4, v6) = p.lengths();
                json!({
                    "label": p.label(),
                    "generation": p.generation(),
                    "v4_lens": v4,
                    "v6_lens": v6,
                    "bound_macs": if p.binds_macs() { TENANTS } else { 0 },
                    "tenants_on_short_prefixes": if p == Policy::TwoLengths { WIDE } else { 0 },
                })
            }),
        },
        "cases": cases,
    });
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
    fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address the bench sends from or to, by owner: no two owners share one.
    #[test]
    fn the_address_plan_does_not_collide() {
        use std::collections::HashMap;
        let mut owner: HashMap<u32, String> = HashMap::new();
        let mut claim = |a: Ipv4Addr, who: String| {
            if let Some(prev) = owner.insert(u32::from(a), who.clone()) {
                panic!("{a} is both {prev} and {who}");
            }
        };
        for i in 0..TENANTS {
            claim(host_v4(i), format!("tenant {i}"));
        }
        for i in TENANTS - WIDE..TENANTS {
            let net = u32::from(wide_v4(i));
            for h in 0..256 {
                claim(Ipv4Addr::from(net + h), format!("wide tenant {i}"));
            }
        }
        for (n, net) in MANAGEMENT_V4.iter().enumerate() {
            for h in 0..256 {
                claim(
                    Ipv4Addr::from(u32::from(*net) + h),
                    format!("management {n}"),
                );
            }
        }
        claim(OUTSIDE_V4, "outside".into());
        claim(UNKNOWN_V4, "unknown".into());
        for k in 0..NEW_FLOW_MAX_REPEAT {
            claim(new_flow_remote(k), format!("new-flow remote {k}"));
        }
        let range =
            |a: Ipv4Addr| (u32::from(a) >> 17) == (u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17);
        assert!(
            owner.keys().all(|&a| range(Ipv4Addr::from(a))),
            "all in 198.18.0.0/15"
        );

        // IPv6: every /48 of the plan (tenants' /64s sit in 2001:db8:0::/48 and
        // 2001:db8:1::/48), distinct, and all in 2001:db8::/32.
        let top48 = |a: Ipv6Addr| u128::from(a) >> 80;
        let mut v6: HashMap<u128, String> = HashMap::new();
        let mut claim6 = |a: Ipv6Addr, who: String| {
            let prev = v6.insert(top48(a), who.clone());
            assert!(
                prev.is_none() || prev.as_deref() == Some(who.as_str()),
                "{a}: {prev:?} and {who}"
            );
        };
        for i in 0..TENANTS {
            claim6(net_v6(i), "tenants".into());
        }
        for i in TENANTS - WIDE..TENANTS {
            claim6(wide_v6(i), format!("wide tenant {i}"));
        }
        claim6(MANAGEMENT_V6, "management".into());
        claim6(OUTSIDE_V6, "outside".into());
        claim6(UNKNOWN_V6, "unknown".into());
        claim6(tracked_remote(0), "tracked".into());
        claim6(
            tracked_remote(TRACKED_REMOTES + FP_PROBES),
            "tracked".into(),
        );
        claim6(answer_remote(0), "answers".into());
        claim6(answer_remote(u32::MAX), "answers".into());
        assert!(v6.keys().all(|k| k >> 16 == 0x2001_0db8));
    }

    #[test]
    fn loaders_are_none_of_the_cases_tenants_and_not_wide() {
        let special = [
            PROBE_TENANT,
            FOREIGN_TENANT,
            SUSPENDED_TENANT,
            POLICED_TENANT,
            EXHAUSTED_TENANT,
            WIDE_TENANT,
        ];
        for j in 0..LOADERS {
            let t = loader_tenant(j);
            assert!(
                is_loader(t) && t < TENANTS - WIDE && !special.contains(&t),
                "{t}"
            );
        }
        assert_eq!(
            (0..TENANTS).filter(|&i| is_loader(i)).count(),
            LOADERS as usize
        );
    }

    #[test]
    fn answer_windows_have_distinct_pending_slots_and_do_not_overlap() {
        let width = 256;
        let starts = answer_windows(PROBE_TENANT, 4, width).unwrap();
        assert_eq!(starts.len(), 4);
        for pair in starts.windows(2) {
            assert!(pair[0] + width <= pair[1]);
        }
        for &s in &starts {
            let slots: std::collections::HashSet<u32> = (s..s + width)
                .map(|k| pending_slot(answer_key(PROBE_TENANT, k)))
                .collect();
            assert_eq!(slots.len(), width as usize);
        }
    }
}
