//! `cargo xtask bench`, throughput part: packets per second through veth pairs, the
//! enforcing program against baselines measured in the same process.
//!
//! Load: `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`. A generator thread
//! (in the lab's generator namespace, pinned to one CPU) runs `xdp_bench_gen` (or
//! `xdp_bench_gen_sources`) on a context whose ingress interface is one end of a veth
//! pair; the kernel builds real frames from the template and the program redirects
//! each out of that end, so it arrives at the peer's XDP hook in the receiving
//! namespace, on the receive queue of the sending CPU, whose NAPI runs on that CPU.
//! One receiving end per program under test, so nothing is re-attached between runs:
//! - `warden`: `xdp_to_tenant` with a policy of two tenants;
//! - `drop`: `xdp_drop_base`; `pass`: `xdp_pass_base`;
//! - `nft`: no XDP (GRO on, which gives the veth its NAPI), and an nftables
//!   `table inet` prerouting chain at priority raw that drops what arrives on it.
//!
//! A run lasts a fixed time: each generator thread sends [`CHUNK`] frames per
//! `BPF_PROG_TEST_RUN` call, call after call, until its window (`--throughput-ms`) has
//! passed, so with two threads both CPUs are loaded together for all but the last
//! call (a run over [`RUN_LIMIT`] fails the bench; the generator threads run at nice
//! -20 and report the CPU share they got). What arrived is read from the receiving
//! veth's per-queue `xdp_packets` (`ethtool -S`), which counts every frame taken off
//! its ring whatever handles it next; each thread feeds the queue of its CPU, and its
//! rate is that queue's arrivals over the thread's own time, from its start to the
//! return of its last call (the generator and the receiver share the CPU, as they
//! would share a core's budget on a NIC). A run's rate is the sum of its threads'
//! rates: what the CPUs drop together in a second, as a flood spread over their
//! queues measures it, not how long the slower of two fixed shares takes. Frames the
//! ring could not take (the generator outran the receiver) are counted from the
//! sender's `xdp_xmit_errors` and reported.
//! Every run on `warden` is checked: the tenant counters (passes) or drop counters
//! (drops) must have moved by exactly the frames that arrived, so the figure is the
//! path the case names; every `nft` run: the rule's counter moved by the arrivals.
//!
//! The generator programs are also attached (driver mode) to a veth pair of their own
//! in the generator namespace, down and carrying nothing. `BPF_PROG_TEST_RUN` of an XDP
//! program puts it into the kernel's XDP dispatcher before the run and takes it out
//! after, each change waiting an RCU grace period (`synchronize_rcu`, seen in the
//! generator thread's kernel stack), unless the program is in the dispatcher already,
//! as an attached program is. Without that hold a call of 32,768 frames took 24 ms
//! here, of which about 5 ms were sending, and every run's time held two grace
//! periods.
//!
//! Before any run, one generator call of one frame asks whether the kernel sends live
//! frames at all. A kernel that refuses the mode with EPERM while the same call without
//! the flag runs (Linux 6.18.44-fc-v1300 does, for any frame, context, receive queue,
//! batch size or namespace: its check sits between the flags check and the batch-size
//! check of `bpf_prog_test_run_xdp`, which mainline has no EPERM on) leaves nothing to
//! measure: every comparison is then reported, with its bar, as not measured, naming the
//! errno and the kernel, and the other parts of the bench go on.
//!
//! Each comparison is measured in interleaved (baseline, case) pairs in ABBA order;
//! reported: the median rate of each side and the median of the per-pair ratios.
//!
//! The files: [`lab`] (the namespaces, veths and their counters; threads moved, pinned
//! and prioritised), [`programs`] (the object, its policy and attachments),
//! [`runner`] (the generator threads: one run, one comparison), [`comparisons`](mod@comparisons) (the
//! frames and the comparisons with their bars), [`figures`] (rates, medians, ratios and
//! the compute-scaling reference).

mod comparisons;
mod figures;
mod lab;
mod programs;
mod runner;
#[cfg(test)]
mod tests;

use std::{net::Ipv6Addr, path::Path, time::Duration};

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use warden_common::{program, Rate};

use comparisons::comparisons;
use figures::{compute_scaling, cpu_share, median, pair_ratio, side_medians, SCALING_RUNS};
use lab::Lab;
use programs::{attach, load, write_policy};
use runner::{live_frames_refused, Bench};

/// Tenant whose plan is far above anything the bench sends: metered, policed, passed.
const METERED: u32 = 1;
/// Tenant whose plan is exhausted (bucket an hour ahead): every frame dropped.
const EXHAUSTED: u32 = 2;
/// 400 Gbit/s, 500 GB burst: conforms throughout (see `bench.rs` `HUGE_PLAN`).
const HUGE_PLAN: Rate = Rate::from_bits_per_second(400_000_000_000, 500_000_000_000);
/// 8 kbit/s, 1,000-byte burst; the bucket is set an hour ahead of the clock.
const SMALL_PLAN: Rate = Rate::from_bits_per_second(8_000, 1_000);
/// Inbound flood thresholds of both tenants (packets and bytes per flood epoch, about
/// a second): on, as on a production node, so every inbound frame counts in the sketch.
const FLOOD_IN_PKTS: u32 = 100_000;
const FLOOD_IN_BYTES: u64 = 100_000_000;
/// Sources of the random flood, and where they start (2001:db8:ff00::/40).
const FLOOD_SOURCES: u32 = 1_000_000;
const FLOOD_FIRST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff00, 0, 0, 0, 0, 0);
/// The MAC of every receiving end, and the destination of every frame: the receiving
/// stack (XDP_PASS, nftables) takes the frames as its own, as a host's NIC does.
const RX_MAC: &str = "02:57:00:00:00:01";
const RX_MAC_BYTES: [u8; 6] = [0x02, 0x57, 0, 0, 0, 1];
const SRC_MAC: [u8; 6] = [0x02, 0x57, 0, 0, 0, 2];
/// Frames the generator keeps in flight per NAPI poll (the kernel's default, 64).
const BATCH: u32 = 64;
/// A run taking longer than this means the receiver is stalled: the bench stops.
const RUN_LIMIT: Duration = Duration::from_secs(20);
/// Frames per `BPF_PROG_TEST_RUN` call of a generator thread: about 5 ms to the drop
/// receivers, 17 ms to nftables and 20 ms through XDP_PASS into the stack on the
/// 2-vCPU VM; a thread overruns its window by less than one call.
const CHUNK: u32 = 32_768;
/// The share of the longest thread's time that all generator threads of a run must
/// have been sending together (one call is about 2% of the default window).
const MIN_OVERLAP: f64 = 0.9;

/// How the part measures, for the report.
const METHOD: &str = "XDP live frames (BPF_PROG_TEST_RUN, BPF_F_TEST_XDP_LIVE_FRAMES) \
                      redirected through veth pairs in namespaces; arrivals from the \
                      receiving veth's per-queue xdp_packets; each generator thread sends \
                      for a fixed window, and a run's rate is the sum over its threads of \
                      their queue's arrivals over their own time; interleaved (baseline, \
                      case) pairs in ABBA order; ratio = median of per-pair ratios";

/// Bars of the issue.
const BAR_VS_XDP_DROP: f64 = 0.8;
const BAR_VS_NFT: f64 = 3.0;
const BAR_VS_XDP_PASS: f64 = 0.9;
const BAR_FLOOD: f64 = 0.5;
const BAR_TWO_CORES: f64 = 1.8;

/// Options of the throughput part (`cargo xtask bench`, flattened into its arguments).
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Skip the veth throughput comparisons.
    #[arg(long)]
    pub skip_throughput: bool,
    /// Interleaved (baseline, case) pairs per throughput comparison.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(9..))]
    pub throughput_pairs: u32,
    /// Milliseconds each generator thread sends for, per throughput run.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u32).range(50..=10_000))]
    pub throughput_ms: u32,
    /// Only the throughput comparisons whose name contains this text (to look into
    /// one; the report then lacks the others).
    #[arg(long)]
    pub throughput_only: Option<String>,
}

/// The receiving ends, one per program under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rx {
    Warden,
    Drop,
    Pass,
    Nft,
}

impl Rx {
    const ALL: [Rx; 4] = [Rx::Warden, Rx::Drop, Rx::Pass, Rx::Nft];

    /// Interface names: the generator's end, the receiver's end.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Rx::Warden => ("gw", "rw"),
            Rx::Drop => ("gd", "rd"),
            Rx::Pass => ("gp", "rp"),
            Rx::Nft => ("gn", "rn"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Rx::Warden => program::XDP_TO_TENANT,
            Rx::Drop => program::XDP_DROP_BASELINE,
            Rx::Pass => program::XDP_PASS_BASELINE,
            Rx::Nft => "nftables inet prerouting priority raw: drop (no XDP)",
        }
    }
}

/// What a run must do at the `warden` receiver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Counted to the metered tenant and passed.
    Passed,
    /// Dropped for bandwidth (the exhausted tenant).
    Dropped,
    /// Not the `warden` receiver: checked by its own counters.
    Other,
}

/// One side of a comparison.
#[derive(Clone)]
struct Side {
    label: String,
    rx: Rx,
    generator: &'static str,
    frame: Vec<u8>,
    /// Generator threads, on CPUs 0..threads.
    threads: usize,
    expect: Expect,
}

struct Comparison {
    name: &'static str,
    case: Side,
    baseline: Side,
    /// The bar on the ratio; `None` for a reference row (what the machine
    /// itself allows), reported but not judged.
    bar: Option<f64>,
    bar_text: &'static str,
}

impl Comparison {
    /// Whether the ratio meets the bar (a reference row has none to meet).
    fn pass(&self, ratio: f64) -> bool {
        self.bar.is_none_or(|b| ratio >= b)
    }
}

/// The figures of one run.
#[derive(Clone)]
struct Run {
    /// Sum over the generator threads of their queue's arrivals over their own time.
    mpps: f64,
    arrived: u64,
    /// Arrivals per receive queue.
    per_queue: Vec<u64>,
    /// CPU time the generator threads got (with the softirq work run in their
    /// context) over their own time, averaged over the threads: below 1, the
    /// scheduler gave part of the run to other work on the machine.
    cpu_share: f64,
    lost: u64,
    /// From the first generator thread's start to the last one's return.
    seconds: f64,
    /// Each generator thread's own time, start to the return of its last call.
    thread_seconds: Vec<f64>,
    /// Frames each generator thread sent.
    thread_sent: Vec<u64>,
    /// Frames counted after the first count read once the generators had returned
    /// (left on a ring and taken off by its NAPI later): in `arrived` and the rate,
    /// outside every thread's time, so they would flatter the rate; reported per run
    /// (`arrived_after_return`) so that shows.
    late: u64,
}

impl Run {
    fn mpps(&self) -> f64 {
        self.mpps
    }
}

pub struct Throughput {
    options_pairs: u32,
    window_ms: u32,
    results: Vec<(Comparison, Vec<Run>, Vec<Run>)>,
    /// Why nothing was measured (the kernel refused the live-frames load), with the
    /// comparisons that were to run: each is reported as not measured, with this reason.
    not_measured: Option<(String, Vec<Comparison>)>,
    limits: Vec<String>,
    /// Work per second of a CPU-bound loop on CPUs 0 and 1 over CPU 0 alone.
    compute_scaling: Option<f64>,
}

/// CPUs online (not this thread's affinity: `bench` pins its main thread to one CPU
/// for the micro-benchmarks, and each generator thread pins itself).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

pub fn run(opts: &Options) -> Result<Throughput> {
    ensure!(
        opts.throughput_pairs >= 9,
        "at least 9 pairs per comparison"
    );
    let cpus = online_cpus();
    let mut limits = Vec::new();
    let mut all = comparisons();
    if let Some(only) = &opts.throughput_only {
        all.retain(|c| c.name.contains(only.as_str()));
        ensure!(
            !all.is_empty(),
            "no throughput comparison is named like {only:?}"
        );
    }
    if cpus < 2 {
        limits.push(format!(
            "only {cpus} CPU online: the 2-core comparisons are skipped"
        ));
        all.retain(|c| c.case.threads <= cpus);
    }
    let mut ebpf = load()?;
    write_policy(&mut ebpf)?;
    let lab = Lab::create()?;
    attach(&mut ebpf, &lab)?;
    if let Some(first) = all.first() {
        if let Some(reason) = live_frames_refused(&ebpf, &lab, &first.case)? {
            println!("==> throughput: not measured: {reason}");
            drop(lab);
            return Ok(Throughput {
                options_pairs: opts.throughput_pairs,
                window_ms: opts.throughput_ms,
                results: Vec::new(),
                not_measured: Some((reason, all)),
                limits,
                compute_scaling: None,
            });
        }
    }
    let bench = Bench {
        ebpf: &ebpf,
        lab: &lab,
        window: Duration::from_millis(u64::from(opts.throughput_ms)),
    };
    let mut results = Vec::new();
    for c in all {
        println!(
            "==> throughput: {} ({} pairs x {} ms per generator)",
            c.name, opts.throughput_pairs, opts.throughput_ms
        );
        let (case, base) = bench.compare(&c, opts.throughput_pairs)?;
        results.push((c, case, base));
    }
    let shares: Vec<f64> = results
        .iter()
        .flat_map(|(_, case, base): &(Comparison, Vec<Run>, Vec<Run>)| case.iter().chain(base))
        .map(|r| r.cpu_share)
        .collect();
    let share = median(&shares);
    if share < 0.9 {
        limits.push(format!(
            "the generator threads (with the receiving softirq work run in their \
             context) were on their CPU a median {:.0}% of their time: the rest \
             went to other tasks (other work on the machine, ksoftirqd when the kernel \
             defers receive work); ratios of interleaved pairs share that, absolute rates \
             do not, and where two threads together get no more CPU than one the 2-core \
             rows measure the machine's CPU budget, not the program (compare the bare \
             XDP_DROP reference row)",
            share * 100.0
        ));
    }
    limits.push(format!(
        "{cpus} vCPUs: each CPU runs its own generator and the NAPI of the receiving queue \
         it feeds, so a figure is what one CPU does generating and handling; the \
         generator's share (building, redirecting and freeing frames) is in every figure \
         alike, so ratios to a baseline are compressed toward 1"
    ));
    drop(lab);
    let mut scaling_figure = None;
    if cpus >= 2 {
        let scaling = compute_scaling()?;
        scaling_figure = Some(scaling);
        limits.push(format!(
            "what 2 CPUs give plain computation on this machine, measured in the same run: \
             a CPU-bound integer loop (8 independent multiply-add chains, no memory) run on \
             CPUs 0 and 1 at once does {scaling:.2}x the work of the same loop on CPU 0 \
             alone (median of {SCALING_RUNS} interleaved runs); below 2, the second vCPU is \
             not a whole core's worth (the vCPUs share a core on the host, or the host or \
             this machine runs other work), and no program scales past that here"
        ));
    }
    Ok(Throughput {
        options_pairs: opts.throughput_pairs,
        window_ms: opts.throughput_ms,
        results,
        not_measured: None,
        limits,
        compute_scaling: scaling_figure,
    })
}

impl Throughput {
    pub fn failed(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|(c, case, base)| !c.pass(pair_ratio(case, base)))
            .map(|(c, _, _)| format!("throughput: {} ({})", c.name, c.bar_text))
            .collect()
    }

    /// The comparisons with a bar that could not be measured, and why: not over their
    /// bar, but not within it either (`--strict` fails on them too).
    pub fn not_measured(&self) -> Vec<String> {
        let Some((reason, all)) = &self.not_measured else {
            return Vec::new();
        };
        all.iter()
            .filter(|c| c.bar.is_some())
            .map(|c| format!("throughput: {} ({}): {reason}", c.name, c.bar_text))
            .collect()
    }

    pub fn print_table(&self) {
        if let Some((reason, all)) = &self.not_measured {
            let rows: Vec<[String; 3]> = all
                .iter()
                .map(|c| {
                    [
                        c.name.to_string(),
                        c.bar_text.to_string(),
                        "not measured".to_string(),
                    ]
                })
                .collect();
            crate::util::print_aligned(["comparison", "bar", ""], &rows, |_| false);
            println!("not measured: {reason}");
            for l in &self.limits {
                println!("note: {l}");
            }
            return;
        }
        let headers = [
            "comparison",
            "case Mpps",
            "base Mpps",
            "ratio",
            "CPU share",
            "bar",
            "",
        ];
        let rows: Vec<[String; 7]> = self
            .results
            .iter()
            .map(|(c, case, base)| {
                let ratio = pair_ratio(case, base);
                [
                    c.name.to_string(),
                    format!("{:.3}", side_medians(case).0),
                    format!("{:.3}", side_medians(base).0),
                    format!("{ratio:.2}"),
                    format!("{:.2} / {:.2}", cpu_share(case), cpu_share(base)),
                    c.bar_text.to_string(),
                    match c.bar {
                        None => "",
                        Some(_) if c.pass(ratio) => "PASS",
                        Some(_) => "FAIL",
                    }
                    .to_string(),
                ]
            })
            .collect();
        crate::util::print_aligned(headers, &rows, |i| (1..=4).contains(&i));
        for l in &self.limits {
            println!("note: {l}");
        }
    }

    pub fn to_json(&self) -> Value {
        if let Some((reason, all)) = &self.not_measured {
            let cases: Vec<Value> = all
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "bar": c.bar,
                        "bar_text": c.bar_text,
                        "not_measured": reason,
                    })
                })
                .collect();
            let mut section = self.section_json(None, cases);
            section["not_measured"] = json!(reason);
            return section;
        }
        let side_json = |s: &Side, runs: &[Run]| {
            let (mpps, arrived, lost, seconds) = side_medians(runs);
            json!({
                "label": s.label,
                "receiver": s.rx.describe(),
                "generator": s.generator,
                "frame_bytes": s.frame.len(),
                "cores": s.threads,
                "median_mpps": mpps,
                "median_packets": arrived,
                "median_refused_by_ring": lost,
                "median_seconds": seconds,
                "mpps": runs.iter().map(Run::mpps).collect::<Vec<_>>(),
                "packets": runs.iter().map(|r| r.arrived).collect::<Vec<_>>(),
                "refused_by_ring": runs.iter().map(|r| r.lost).collect::<Vec<_>>(),
                "packets_per_queue": runs.iter().map(|r| r.per_queue.clone()).collect::<Vec<_>>(),
                "median_cpu_share": cpu_share(runs),
                "cpu_share": runs.iter().map(|r| r.cpu_share).collect::<Vec<_>>(),
                "seconds": runs.iter().map(|r| r.seconds).collect::<Vec<_>>(),
                "generator_seconds": runs.iter().map(|r| r.thread_seconds.clone()).collect::<Vec<_>>(),
                "generator_frames": runs.iter().map(|r| r.thread_sent.clone()).collect::<Vec<_>>(),
                "arrived_after_return": runs.iter().map(|r| r.late).collect::<Vec<_>>(),
            })
        };
        let cases: Vec<Value> = self
            .results
            .iter()
            .map(|(c, case, base)| {
                let ratio = pair_ratio(case, base);
                let (mpps, packets, _, seconds) = side_medians(case);
                json!({
                    "name": c.name,
                    "packets": packets,
                    "seconds": seconds,
                    "mpps": mpps,
                    "baseline": side_json(&c.baseline, base),
                    "case": side_json(&c.case, case),
                    "ratio": ratio,
                    "bar": c.bar,
                    "bar_text": c.bar_text,
                    "pass": c.pass(ratio),
                })
            })
            .collect();
        self.section_json(self.compute_scaling, cases)
    }

    /// The section's JSON: how it was measured, the 2-vs-1-core scaling (`None` when not
    /// measured) and `cases`.
    fn section_json(&self, scaling: Option<f64>, cases: Vec<Value>) -> Value {
        json!({
            "method": METHOD,
            "pairs": self.options_pairs,
            "ms_per_generator_run": self.window_ms,
            "frames_per_call": CHUNK,
            "batch": BATCH,
            "cpus": online_cpus(),
            "limits": self.limits,
            "compute_scaling_2_vs_1": scaling,
            "cases": cases,
        })
    }
}

/// `warden-bench throughput`: the throughput part alone, its table and its JSON.
pub fn print(opts: &Options) -> Result<()> {
    let t = run(opts)?;
    t.print_table();
    println!("{}", serde_json::to_string_pretty(&t.to_json())?);
    Ok(())
}

/// Adds the throughput figures to `report.json` under "throughput".
pub fn add_to_report(report: &Path, t: &Throughput) -> Result<()> {
    crate::util::add_section(report, "throughput", t.to_json())
}
