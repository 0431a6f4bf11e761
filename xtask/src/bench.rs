//! `cargo xtask bench`: per-packet cost of the enforcement programs against an
//! XDP_PASS baseline measured in the same run.
//!
//! Method: the kernel runs each program `repeat` times on one frame through
//! `BPF_PROG_TEST_RUN` and reports the mean time per repetition (integer ns, the
//! time spent in the loop divided by the number of repetitions; time spent
//! rescheduled is not counted). Each case is measured in interleaved pairs (in ABBA
//! order: baseline then case, case then baseline, ...) on one pinned CPU, so drift in
//! clock speed or background load hits both sides alike. Reported: the median of each
//! side, and the cost of the case as the median of the per-pair differences.

//! The bar: every per-packet path costs at most [`BAR_NS`] over the baseline, a new
//! flow at most [`NEW_FLOW_BAR_NS`].
//!
//! The maps hold [`TENANTS`] tenants, compiled into a `warden::dataplane::Compiled`
//! and written by `warden::dataplane::write_generation` (`GenTables::build`), the daemon's own
//! placement; every bucket of the generation's half is then written, as
//! `Dataplane::apply` does for a fresh half. Three policies, each measured in turn:
//! - one length: each tenant an IPv4 /32, an IPv6 /64 and a bound MAC (generation 0);
//! - two lengths: the same, but the last [`WIDE`] tenants on /24s and /48s, so a
//!   lookup probes two lengths per family and a miss costs two probes (generation 1);
//! - no MACs: one length and no bound MAC anywhere (GEN_CONFIG without ANY_MACS, so
//!   from-tenant frames skip the MAC lookup), written over generation 0 while
//!   generation 1 is active, then flipped to, as the daemon would.
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
use warden::dataplane::{
    log::{event_of, AttemptLog},
    write_generation, Compiled,
};
use warden_common::{
    bucket, direction,
    facts::{
        contact_key, contact_tag, event, fact_counter, fold_addr, Event, CONTACT_EPOCH_SHIFT,
        CONTACT_WORDS, LOG_SLOTS,
    },
    global, map, program, reason, tenant_counter_index, tenant_flags, Bucket, Counters,
    DropCounters, GenConfig, Rate, TenantConfig,
};
use warden_tests::packets::{tcp, Frame, Ipv4, Ipv6, Mac, L4};

use crate::{setup, util};

/// Most any per-packet path may cost over the XDP_PASS baseline, in ns.
const BAR_NS: f64 = 35.0;
/// Most a tenant's new flow (first contact, pending attempt, event) may cost over the
/// XDP_PASS baseline, in ns.
const NEW_FLOW_BAR_NS: f64 = 150.0;
/// The bench-only program of the new-flow case (`ebpf/programs/src/main.rs`).
const XDP_BENCH_NEW_FLOW: &str = "xdp_bench_new_flow";
/// Repetitions of a new-flow run at most (each a first contact, whose filter word the
/// run clears beforehand).
const NEW_FLOW_MAX_REPEAT: u32 = 50_000;
/// Untimed full-size new-flow runs before the timed ones (see [`measure`]).
const NEW_FLOW_WARM_UPS: u32 = 4;
/// The first remote the new-flow frame contacts; each repetition the next address.
const NEW_FLOW_FIRST_REMOTE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
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
const TENANTS: u32 = 10_000;
/// In generation 1, tenants `TENANTS - WIDE..TENANTS` own a /24 and a /48 instead.
const WIDE: u32 = 256;
/// The tenant the known-tenant cases hit: in the middle of the index.
const PROBE_TENANT: u32 = 5_000;
/// Whose address the spoofed case sends from (with the probe tenant's MAC).
const FOREIGN_TENANT: u32 = 4_000;
const SUSPENDED_TENANT: u32 = 5_001;
/// Plan far above anything a test run can send: every packet runs the GCRA and conforms.
const POLICED_TENANT: u32 = 5_002;
/// Plan exhausted (bucket an hour ahead of the clock): every packet is dropped.
const EXHAUSTED_TENANT: u32 = 5_003;
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

pub fn run(args: BenchArgs) -> Result<()> {
    setup::run()?;
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
    let cases = cases();

    println!(
        "{TENANTS} tenants, each an IPv4 prefix and an IPv6 prefix (/32 | /64; \
         {WIDE} of them on /24 | /48 in the two-length policy), with a bound MAC each \
         except in the no-MACs policy; {} pairs x {} repetitions per case, CPU {cpu}",
        args.pairs, args.repeat
    );
    let mut results = Vec::new();
    for policy in Policy::ALL {
        write_policy(&mut ebpf, policy)?;
        set_event_budget(&mut ebpf, policy.generation(), BENCH_EVENT_BUDGET)?;
        set_active(&mut ebpf, policy.generation())?;
        let mine: Vec<&Case> = cases.iter().filter(|c| c.policy == policy).collect();
        for case in &mine {
            verify_path(&ebpf, case)?;
            if case.flow == Flow::New {
                verify_new_flows(&ebpf, &mut facts, case)?;
            }
        }
        for case in mine {
            let figures = measure(&ebpf, &mut facts, case, args.pairs, args.repeat)?;
            results.push((case, figures));
        }
    }
    set_active(&mut ebpf, 0)?;
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
    let report = write_report(&args, cpu, &results, latency.as_ref())?;
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
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn load() -> Result<Ebpf> {
    let mut ebpf = warden::dataplane::loader()?
        .load(warden::dataplane::OBJECT)
        .context("loading the eBPF object (needs root or CAP_BPF)")?;
    for name in [
        program::XDP_PASS_BASELINE,
        program::XDP_TO_TENANT,
        program::XDP_FROM_TENANT,
        XDP_BENCH_NEW_FLOW,
    ] {
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name} in the object"))?
            .try_into()
            .with_context(|| format!("{name} is not an XDP program"))?;
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(ebpf)
}

/// IPv4 /32 of tenant `i`: 198.18.0.0 + i.
fn host_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// IPv4 /24 of a wide tenant `i` (generation 1): 198.19.(i - first wide).0/24.
fn wide_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i - (TENANTS - WIDE)) as u8, 0)
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
    let mut cfg = TenantConfig::default();
    if policy.binds_macs() {
        cfg.flags |= tenant_flags::MACS_BOUND;
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

/// `policy` as the daemon compiles it (`warden::dataplane::compile`'s output).
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
/// (`warden::dataplane::write_generation`: the daemon's placement and GEN_CONFIG).
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
        for third in [252u8, 253, 254, 255] {
            let net = Ipv4Addr::new(198, 18, third, 0);
            t.insert(&Key::new(24, net.octets()), 1u8, 0)
                .context("writing MANAGEMENT_V4")?;
        }
    }
    let mut t: LpmTrie<&mut MapData, [u8; 16], u8> =
        LpmTrie::try_from(map_mut(ebpf, map::MANAGEMENT_V6)?)?;
    let net = Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, 0);
    t.insert(&Key::new(48, net.octets()), 1u8, 0)
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
    // Outside every tenant prefix and every management prefix, in both policies.
    let outside = Ipv4Addr::new(198, 18, 200, 1);
    let outside6 = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    let unknown4 = Ipv4Addr::new(198, 18, 201, 7);
    let unknown6 = Ipv6Addr::new(0x2001, 0xdb8, 0xfffe, 0, 0, 0, 0, 7);
    let host6 = |i: u32| Ipv6Addr::from(u128::from(net_v6(i)) + 0x10);
    let syn = || L4::tcp(40000, 443, tcp::SYN);
    let to = |dst: Ipv4Addr| {
        Frame::new(Ipv4::new(outside, dst).l4(syn()))
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

/// The fact maps the new-flow case needs from userspace, taken out of the object
/// (the programs keep using them): the ring (which a new flow must leave empty) and
/// the attempt log, to read, and the contact filter, to clear the words of the flows a
/// run will contact.
struct FactMaps {
    ring: RingBuf<MapData>,
    log: AttemptLog,
    contacts: Array<MapData, u64>,
}

impl FactMaps {
    fn take(ebpf: &mut Ebpf) -> Result<FactMaps> {
        let ring = ebpf.take_map(map::EVENTS).context("no EVENTS map")?;
        let contacts = ebpf.take_map(map::CONTACTS).context("no CONTACTS map")?;
        let log = match ebpf.take_map(map::ATTEMPT_LOG) {
            Some(aya::maps::Map::Array(data)) => data,
            _ => bail!("no ATTEMPT_LOG array in the object"),
        };
        Ok(FactMaps {
            ring: RingBuf::try_from(ring).context("opening the EVENTS ring")?,
            log: AttemptLog::new(log).context("mapping ATTEMPT_LOG")?,
            contacts: Array::try_from(contacts).context("opening CONTACTS")?,
        })
    }

    /// Every new entry of the attempt log, as events, with how many entries were
    /// written over unread since the last call; and the number of ring records (which
    /// are drained).
    fn drain(&mut self) -> Result<(Vec<Event>, u64, usize)> {
        let mut ring = 0;
        while self.ring.next().is_some() {
            ring += 1;
        }
        let lost_before = self.log.lost();
        let mut out = Vec::new();
        self.log.take(usize::MAX, |e| out.push(event_of(&e)));
        Ok((out, self.log.lost() - lost_before, ring))
    }

    /// Clears the contact filter words of the first `n` remotes of the new-flow frame
    /// of `tenant`, so each is a first contact again, and returns the repetitions that
    /// will be: all but the few whose two bits the run's earlier remotes happen to set
    /// first (a bloom filter's false positives), found by running the filter's
    /// formulas (`warden_common::facts`, as the programs use them) over the run.
    fn forget_new_flows(&mut self, tenant: u32, n: u32) -> Result<Vec<u32>> {
        let mut words: std::collections::BTreeMap<u32, u64> = Default::default();
        let mut new = Vec::with_capacity(n as usize);
        for k in 0..n {
            let key = contact_key(
                tenant,
                contact_tag::OUT,
                6,
                NEW_FLOW_PORT,
                fold_addr(&remote16(new_flow_remote(k))),
            );
            let bits = (1u64 << ((key >> 32) & 31)) | (1u64 << ((key >> 40) & 31));
            let word = words.entry(key as u32 & (CONTACT_WORDS - 1)).or_default();
            if *word & bits != bits {
                *word |= bits;
                new.push(k);
            }
        }
        for &w in words.keys() {
            self.contacts.set(w, 0, 0).context("clearing CONTACTS")?;
        }
        Ok(new)
    }
}

/// The contact epoch of the programs' clock now (`CLOCK_MONOTONIC_COARSE`).
fn contact_epoch() -> Result<u64> {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
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
    /// Clears the run's filter words and notes where the counters stand.
    fn start(ebpf: &Ebpf, facts: &mut FactMaps, tenant: u32, n: u32) -> Result<NewFlowRun> {
        facts.drain()?;
        Ok(NewFlowRun {
            new: facts.forget_new_flows(tenant, n)?,
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
    };
    let tenant = match case.lands {
        Lands::Tenant { index, .. } | Lands::Dropped { index, .. } => index,
        Lands::NoTenant { .. } | Lands::Spoofed { .. } => PROBE_TENANT,
    };
    // A new-flow run starts with its flows unknown and leaves its events drained.
    let mut run_case = |n: u32| -> Result<(u32, u32)> {
        let run = match case.flow {
            Flow::New => Some(NewFlowRun::start(ebpf, facts, tenant, n)?),
            Flow::Repeated => None,
        };
        let r = test_run(xdp(ebpf, case.program)?, &case.frame, n)?;
        if let Some(run) = run {
            run.check(ebpf, facts, case, n)?;
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
        Flow::Repeated => 1,
        Flow::New => NEW_FLOW_WARM_UPS,
    };
    for _ in 0..warm_ups {
        run_case(match case.flow {
            Flow::Repeated => repeat.div_ceil(10),
            Flow::New => repeat,
        })?;
    }
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
        let (ret, ns) = run_case(repeat)?;
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
    let deltas: Vec<f64> = case_ns
        .iter()
        .zip(&base_ns)
        .map(|(c, b)| f64::from(*c) - f64::from(*b))
        .collect();
    Ok(Figures {
        median_case: median(&case_ns),
        median_base: median(&base_ns),
        median_delta: median_f(&deltas),
        case_ns,
        base_ns,
        repeat,
    })
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
                "case_ns": f.case_ns,
                "baseline_ns": f.base_ns,
            })
        })
        .collect();
    let report = json!({
        "method": "BPF_PROG_TEST_RUN mean ns per repetition (kernel-timed), \
                   interleaved baseline/case pairs, medians",
        "kernel": kernel.trim(),
        "cpu": cpu,
        "pairs": args.pairs,
        "repeat": args.repeat,
        "bar_ns": BAR_NS,
        "new_flow_bar_ns": NEW_FLOW_BAR_NS,
        "detection_latency": latency.map(|l| l.to_json()),
        "new_flow": format!(
            "{XDP_BENCH_NEW_FLOW}: each repetition a first contact with the next IPv4 \
             destination; filter words of a run's remotes cleared before it, ring drained \
             after it (so the timed path includes the ring output), at most \
             {NEW_FLOW_MAX_REPEAT} repetitions per run; event budget lifted \
             ({BENCH_EVENT_BUDGET:?})"
        ),
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
