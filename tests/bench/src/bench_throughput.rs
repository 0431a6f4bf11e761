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
//! Each comparison is measured in interleaved (baseline, case) pairs in ABBA order;
//! reported: the median rate of each side and the median of the per-pair ratios.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    sync::Barrier,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
    Ebpf, TestRun, TestRunAttrs, TestRunOptions,
};
use serde_json::{json, Value};
use warden_common::{
    bucket, direction, map, program, reason, tenant_counter_index, Bucket, Counters, DropCounters,
    Rate, TenantConfig,
};
use warden_dataplane::{write_generation, Compiled};
use warden_tests::packets::{Frame, Ipv4, Ipv6, L4};

use crate::util;

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
    /// The issue's bar on the ratio; `None` for a reference row (what the machine
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
    limits: Vec<String>,
    /// Work per second of a CPU-bound loop on CPUs 0 and 1 over CPU 0 alone.
    compute_scaling: Option<f64>,
}

/// The veth pair that holds the generator programs in the XDP dispatcher (module docs):
/// one end per program, both down.
const HOLD_PAIR: (&str, &str) = ("hg", "hs");

/// The namespaces and veth pairs; removed on drop.
struct Lab {
    gen_ns: String,
    rx_ns: String,
    nft_table: String,
}

impl Lab {
    fn create() -> Result<Lab> {
        let id = std::process::id();
        let lab = Lab {
            gen_ns: format!("wtp{id}g"),
            rx_ns: format!("wtp{id}r"),
            nft_table: format!("wtp{id}"),
        };
        for ns in [&lab.gen_ns, &lab.rx_ns] {
            util::run(Command::new("ip").args(["netns", "add", ns]))?;
            // No IPv6 autoconfiguration, neighbour discovery or MLD: the stack would
            // send frames of its own through the pairs, and every frame is counted.
            util::run(Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]))?;
        }
        for rx in Rx::ALL {
            let (g, r) = rx.names();
            util::run(Command::new("ip").args([
                "-n",
                &lab.gen_ns,
                "link",
                "add",
                g,
                "numtxqueues",
                "2",
                "numrxqueues",
                "2",
                "type",
                "veth",
                "peer",
                r,
                "address",
                RX_MAC,
                "numtxqueues",
                "2",
                "numrxqueues",
                "2",
                "netns",
                &lab.rx_ns,
            ]))?;
            util::run(Command::new("ip").args(["-n", &lab.gen_ns, "link", "set", g, "up"]))?;
            util::run(Command::new("ip").args(["-n", &lab.rx_ns, "link", "set", r, "up"]))?;
        }
        util::run(Command::new("ip").args([
            "-n",
            &lab.gen_ns,
            "link",
            "add",
            HOLD_PAIR.0,
            "type",
            "veth",
            "peer",
            HOLD_PAIR.1,
        ]))?;
        // The nft receiver has no XDP program: GRO on gives its queues NAPI, so it can
        // take redirected frames.
        util::run(Command::new("ip").args([
            "netns",
            "exec",
            &lab.rx_ns,
            "ethtool",
            "-K",
            Rx::Nft.names().1,
            "gro",
            "on",
        ]))?;
        let (t, r) = (lab.nft_table.as_str(), Rx::Nft.names().1);
        for cmd in [
            format!("add table inet {t}"),
            format!(
                "add chain inet {t} pre {{ type filter hook prerouting priority raw; policy accept; }}"
            ),
            format!("add rule inet {t} pre iifname \"{r}\" counter drop"),
        ] {
            util::run(Command::new("ip").args(["netns", "exec", &lab.rx_ns, "nft", &cmd]))?;
        }
        Ok(lab)
    }

    /// The nft drop rule's packet counter.
    fn nft_count(&self) -> Result<u64> {
        let out = util::capture(Command::new("ip").args([
            "netns",
            "exec",
            &self.rx_ns,
            "nft",
            "list",
            "table",
            "inet",
            &self.nft_table,
        ]))?;
        let packets = out
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .context("no counter in the nft table")?;
        packets
            .parse()
            .with_context(|| format!("nft counter {packets:?}"))
    }

    /// Sum of the `ethtool -S` figures of `dev` in `ns` named `rx_queue_*_<suffix>` or
    /// `tx_queue_*_<suffix>`, as `prefix` says.
    fn ethtool_queues(ns: &str, dev: &str, prefix: &str, suffix: &str) -> Result<Vec<u64>> {
        let out =
            util::capture(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-S", dev]))?;
        let mut queues = Vec::new();
        for line in out.lines() {
            let Some((name, value)) = line.trim().split_once(':') else {
                continue;
            };
            if name.starts_with(prefix) && name.ends_with(suffix) && {
                let mid = &name[prefix.len()..name.len() - suffix.len()];
                mid.chars().all(|c| c.is_ascii_digit())
            } {
                queues.push(
                    value
                        .trim()
                        .parse::<u64>()
                        .with_context(|| format!("ethtool -S {dev}: {line}"))?,
                );
            }
        }
        ensure!(
            !queues.is_empty(),
            "ethtool -S {dev} has no {prefix}N{suffix} figures"
        );
        Ok(queues)
    }

    /// (frames taken off each of the receiver's rings, frames the sender's rings
    /// refused).
    fn counts(&self, rx: Rx) -> Result<(Vec<u64>, u64)> {
        let (g, r) = rx.names();
        Ok((
            Lab::ethtool_queues(&self.rx_ns, r, "rx_queue_", "_xdp_packets")?,
            Lab::ethtool_queues(&self.gen_ns, g, "tx_queue_", "_xdp_xmit_errors")?
                .iter()
                .sum(),
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.rx_ns] {
            if let Err(e) = util::run(Command::new("ip").args(["netns", "del", ns])) {
                eprintln!("warning: removing namespace {ns}: {e:#}");
            }
        }
    }
}

/// Moves the calling thread into the namespace `ns` (`ip netns` names).
fn enter_netns(ns: &str) -> Result<()> {
    let path = Path::new("/var/run/netns").join(ns);
    let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on an fd we own; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("entering {ns}"));
    }
    Ok(())
}

fn pin_thread(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("pinning to CPU {cpu}"));
        }
    }
    Ok(())
}

/// Nice -20 for the calling thread: the receiving NAPI runs in its context (softirq on
/// leaving the kernel's test loop), and on a NIC softirq comes before any task. (Nice
/// orders tasks within a cgroup only: work in other cgroups still takes its share,
/// which the runs' CPU share shows.)
fn raise_priority() -> Result<()> {
    // SAFETY: gettid and setpriority on this thread's own id.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -20)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setpriority -20 (needs root)");
    }
    Ok(())
}

/// CPU time (user and system) of the calling thread so far, in seconds.
fn thread_cpu_seconds() -> Result<f64> {
    // SAFETY: getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    ensure!(i != 0, "no interface {name} in this namespace");
    Ok(i)
}

fn load() -> Result<Ebpf> {
    crate::util::load_xdp(&[
        program::XDP_TO_TENANT,
        program::XDP_DROP_BASELINE,
        program::XDP_PASS_BASELINE,
        program::XDP_BENCH_GEN,
        program::XDP_BENCH_GEN_SOURCES,
    ])
}

fn tenant_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

fn tenant_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, i as u16, 0, 0, 0, 0)
}

/// The two tenants, written as the daemon writes a generation, and the exhausted
/// tenant's inbound bucket set an hour ahead.
fn write_policy(ebpf: &mut Ebpf) -> Result<()> {
    let mut c = Compiled::default();
    for (i, plan) in [(METERED, HUGE_PLAN), (EXHAUSTED, SMALL_PLAN)] {
        c.v4.insert((32, tenant_v4(i).octets()), i);
        c.v6.insert((64, tenant_v6(i).octets()), i);
        let cfg = TenantConfig {
            rate: [plan, plan],
            flood_in_pkts: FLOOD_IN_PKTS,
            flood_in_bytes: FLOOD_IN_BYTES,
            ..Default::default()
        };
        c.configs.insert(i, cfg);
    }
    (c.v4_lens, c.v6_lens) = (vec![32], vec![64]);
    write_generation(ebpf, 0, &c).context("writing the bench policy")?;
    let mut active: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(map::ACTIVE).context("no ACTIVE map")?)?;
    active.set(0, 0, 0).context("writing ACTIVE")?;
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let mut buckets: Array<&mut MapData, Bucket> =
        Array::try_from(ebpf.map_mut(map::BUCKETS).context("no BUCKETS map")?)?;
    buckets
        .set(
            bucket::index(EXHAUSTED, direction::IN),
            Bucket {
                tat: now + 3_600_000_000_000,
            },
            0,
        )
        .context("writing BUCKETS")
}

/// (metered tenant's inbound packets, exhausted tenant's inbound bandwidth drops),
/// summed over CPUs.
fn warden_counts(ebpf: &Ebpf) -> Result<(u64, u64)> {
    let counters: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(
        ebpf.map(map::TENANT_COUNTERS)
            .context("no TENANT_COUNTERS map")?,
    )?;
    let drops: PerCpuArray<&MapData, DropCounters> =
        PerCpuArray::try_from(ebpf.map(map::DROP_COUNTERS).context("no DROP_COUNTERS")?)?;
    let passed = counters
        .get(&tenant_counter_index(METERED, direction::IN), 0)?
        .iter()
        .map(|c| c.packets)
        .sum();
    let dropped = drops
        .get(&tenant_counter_index(EXHAUSTED, direction::IN), 0)?
        .iter()
        .map(|d| d.packets[reason::BANDWIDTH])
        .sum();
    Ok((passed, dropped))
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    ebpf.program(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// One generator run on the calling thread (already in the generator namespace and
/// pinned to `cpu`): `frames` live frames of `frame` out of `ifindex`.
fn generate(prog: &Xdp, frame: &[u8], ifindex: u32, cpu: usize, frames: u32) -> Result<()> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex. The frame is the whole of the data; the context's receive queue
    // is the CPU's (the veth has two).
    let words: [u32; 6] = [0, frame.len() as u32, 0, ifindex, (cpu % 2) as u32, 0];
    let ctx: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let opts = TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: frames,
        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
        ..Default::default()
    };
    prog.test_run(opts)
        .context("BPF_PROG_TEST_RUN with live frames")?;
    Ok(())
}

struct Bench<'a> {
    ebpf: &'a Ebpf,
    lab: &'a Lab,
    window: Duration,
}

impl Bench<'_> {
    /// One run of `side`: every generator thread sends for the window; returns what
    /// arrived.
    fn run(&self, side: &Side) -> Result<Run> {
        let prog = xdp(self.ebpf, side.generator)?;
        let (before, lost_before) = self.lab.counts(side.rx)?;
        let warden_before = warden_counts(self.ebpf)?;
        let nft_before = match side.rx {
            Rx::Nft => self.lab.nft_count()?,
            _ => 0,
        };
        let barrier = Barrier::new(side.threads);
        let gen_if = side.rx.names().0;
        let (started, ended, threads) = std::thread::scope(|s| -> Result<_> {
            let handles: Vec<_> = (0..side.threads)
                .map(|cpu| {
                    let barrier = &barrier;
                    let frame = &side.frame;
                    s.spawn(move || -> Result<(Instant, Instant, f64, u64)> {
                        enter_netns(&self.lab.gen_ns)?;
                        pin_thread(cpu)?;
                        raise_priority()?;
                        let index = ifindex(gen_if)?;
                        barrier.wait();
                        let t = Instant::now();
                        let cpu_before = thread_cpu_seconds()?;
                        let mut sent = 0;
                        let end = loop {
                            generate(prog, frame, index, cpu, CHUNK)?;
                            sent += u64::from(CHUNK);
                            let now = Instant::now();
                            if now.duration_since(t) >= self.window {
                                break now;
                            }
                        };
                        let busy = thread_cpu_seconds()? - cpu_before;
                        Ok((t, end, busy, sent))
                    })
                })
                .collect();
            let mut threads = Vec::new();
            for h in handles {
                threads.push(
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??,
                );
            }
            let started = threads.iter().map(|t| t.0).min();
            let ended = threads.iter().map(|t| t.1).max();
            Ok((
                started.context("no generator thread")?,
                ended.context("no generator thread")?,
                threads,
            ))
        })?;
        // A thread's time ends when its last call returns: by then its CPU has run the
        // receiving NAPI for every batch it sent (softirq on leaving each batch). Only
        // `ethtool -S` runs after that (a process each, milliseconds), so its time is
        // no run's. Anything still on a ring (at most a ring per queue) is taken off
        // right after: read until the count stands, and count it as `late`.
        let first = self.lab.counts(side.rx)?.0;
        let mut after = first.clone();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(2));
            let now = self.lab.counts(side.rx)?.0;
            if now == after {
                break;
            }
            after = now;
        }
        let late = after.iter().sum::<u64>() - first.iter().sum::<u64>();
        // The threads' rates add up to what the CPUs do together only if they sent
        // together: the time all of them were sending must be nearly all of each one's.
        let overlap = match (
            threads.iter().map(|t| t.1).min(),
            threads.iter().map(|t| t.0).max(),
        ) {
            (Some(first_end), Some(last_start)) => first_end.duration_since(last_start),
            _ => Duration::ZERO,
        };
        let longest = threads
            .iter()
            .map(|(t, end, _, _)| end.duration_since(*t))
            .max()
            .unwrap_or_default();
        ensure!(
            overlap.as_secs_f64() >= MIN_OVERLAP * longest.as_secs_f64(),
            "{}: the generator threads sent together for {overlap:?} of up to {longest:?} \
             (less than {:.0}%): their rates do not add up to a rate of the CPUs together",
            side.label,
            MIN_OVERLAP * 100.0
        );
        let thread_seconds: Vec<f64> = threads
            .iter()
            .map(|(t, end, _, _)| end.duration_since(*t).as_secs_f64())
            .collect();
        let thread_sent: Vec<u64> = threads.iter().map(|t| t.3).collect();
        let share = threads
            .iter()
            .zip(&thread_seconds)
            .map(|((_, _, busy, _), s)| busy / s)
            .sum::<f64>()
            / threads.len() as f64;
        ensure!(
            after.len() == before.len(),
            "{}: the receiver's queues changed during the run",
            side.label
        );
        let per_queue: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let seconds = ended.duration_since(started).as_secs_f64();
        ensure!(
            seconds < RUN_LIMIT.as_secs_f64(),
            "{}: a run took {seconds:.1} s (limit {RUN_LIMIT:?}): the receiver stalls",
            side.label
        );
        // Thread i runs on CPU i and feeds receive queue i (the veth picks the queue by
        // the sending CPU): each queue's arrivals are its thread's, and a queue no
        // thread feeds stays still.
        let queue_of = |cpu: usize| cpu % per_queue.len();
        for (q, &n) in per_queue.iter().enumerate() {
            let fed_by = (0..side.threads).find(|&cpu| queue_of(cpu) == q);
            ensure!(
                match fed_by {
                    Some(cpu) => n > 0 && n <= thread_sent[cpu],
                    None => n == 0,
                },
                "{}: receive queue {q} took {n} frames, but its generator thread sent {} \
                 (arrivals per queue {per_queue:?}, sent per thread {thread_sent:?}): the \
                 load did not go to the queue of its CPU",
                side.label,
                fed_by.map_or(0, |cpu| thread_sent[cpu]),
            );
        }
        let mpps = summed_rate(&per_queue, &thread_seconds);
        let (_, lost_after) = self.lab.counts(side.rx)?;
        let run = Run {
            mpps,
            arrived: per_queue.iter().sum(),
            per_queue,
            cpu_share: share,
            lost: lost_after - lost_before,
            seconds,
            thread_seconds,
            thread_sent,
            late,
        };
        let sent: u64 = run.thread_sent.iter().sum();
        ensure!(
            run.arrived > 0 && run.arrived + run.lost <= sent,
            "{}: {sent} frames sent, {} arrived and {} refused by the rings",
            side.label,
            run.arrived,
            run.lost
        );
        let (passed, dropped) = warden_counts(self.ebpf)?;
        let moved = (passed - warden_before.0, dropped - warden_before.1);
        let want = match side.expect {
            Expect::Passed => (run.arrived, 0),
            Expect::Dropped => (0, run.arrived),
            Expect::Other => (0, 0),
        };
        ensure!(
            moved == want,
            "{}: {} frames arrived, but Warden counted {} passed to the metered tenant and \
             {} dropped for bandwidth (expected {} and {}): the run did not take the path \
             it names",
            side.label,
            run.arrived,
            moved.0,
            moved.1,
            want.0,
            want.1
        );
        if side.rx == Rx::Nft {
            let dropped = self.lab.nft_count()? - nft_before;
            ensure!(
                dropped == run.arrived,
                "{}: {} frames arrived, the nftables rule dropped {dropped}",
                side.label,
                run.arrived
            );
        }
        Ok(run)
    }

    /// `pairs` interleaved (baseline, case) runs in ABBA order.
    fn compare(&self, c: &Comparison, pairs: u32) -> Result<(Vec<Run>, Vec<Run>)> {
        // Warm-up of both sides, not recorded.
        self.run(&c.baseline)?;
        self.run(&c.case)?;
        let (mut base, mut case) = (Vec::new(), Vec::new());
        for pair in 0..pairs {
            if pair % 2 == 0 {
                base.push(self.run(&c.baseline)?);
                case.push(self.run(&c.case)?);
            } else {
                case.push(self.run(&c.case)?);
                base.push(self.run(&c.baseline)?);
            }
        }
        Ok((case, base))
    }
}

/// Attaches the receivers' programs, each in the receiving namespace (the attach
/// resolves the interface and talks netlink in the calling thread's namespace).
fn attach(ebpf: &mut Ebpf, lab: &Lab) -> Result<()> {
    let receivers = [
        (Rx::Warden.names().1, program::XDP_TO_TENANT),
        (Rx::Drop.names().1, program::XDP_DROP_BASELINE),
        (Rx::Pass.names().1, program::XDP_PASS_BASELINE),
    ];
    let generators = [
        (HOLD_PAIR.0, program::XDP_BENCH_GEN),
        (HOLD_PAIR.1, program::XDP_BENCH_GEN_SOURCES),
    ];
    for (ns, programs) in [(&lab.rx_ns, &receivers[..]), (&lab.gen_ns, &generators[..])] {
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                enter_netns(ns)?;
                for &(dev, name) in programs {
                    let prog: &mut Xdp = ebpf
                        .program_mut(name)
                        .with_context(|| format!("no program {name}"))?
                        .try_into()?;
                    prog.attach(dev, XdpMode::Driver)
                        .with_context(|| format!("attaching {name} to {dev}"))?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the attach thread panicked"))?
        })?;
    }
    Ok(())
}

/// An IPv4 UDP frame to `dst`, with a valid header checksum (the receiving stack
/// checks it before the prerouting hook).
fn v4_udp(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Frame::new(Ipv4::new(Ipv4Addr::new(198, 18, 200, 1), dst).l4(L4::udp(40000, 5001)))
        .macs(SRC_MAC, RX_MAC_BYTES)
        .pad_to(64)
        .build();
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = ipv4_checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The flood template: IPv6 UDP to the exhausted tenant, payload (N, first source).
fn flood_frame(sources: u32) -> Vec<u8> {
    let first = u32::from_be_bytes(FLOOD_FIRST.octets()[12..16].try_into().expect("4 bytes"));
    let mut payload = Vec::new();
    payload.extend_from_slice(&sources.to_be_bytes());
    payload.extend_from_slice(&first.to_be_bytes());
    let dst = Ipv6Addr::from(u128::from(tenant_v6(EXHAUSTED)) + 0x10);
    let frame =
        Frame::new(Ipv6::new(FLOOD_FIRST, dst).l4(L4::udp(40000, 5001).with_payload(&payload)))
            .macs(SRC_MAC, RX_MAC_BYTES)
            .build();
    // The generator reads the payload at a fixed offset: Ethernet, IPv6, UDP.
    debug_assert_eq!(&frame[62..66], &sources.to_be_bytes());
    frame
}

fn comparisons() -> Vec<Comparison> {
    let drop_frame = v4_udp(tenant_v4(EXHAUSTED));
    let pass_frame = v4_udp(tenant_v4(METERED));
    let side = |label: &str, rx, generator, frame: &Vec<u8>, threads, expect| Side {
        label: label.to_string(),
        rx,
        generator,
        frame: frame.clone(),
        threads,
        expect,
    };
    let gen = program::XDP_BENCH_GEN;
    let drop_path = side(
        "warden drop path (plan exhausted), 1 core",
        Rx::Warden,
        gen,
        &drop_frame,
        1,
        Expect::Dropped,
    );
    let xdp_drop = side(
        "bare XDP_DROP, 1 core",
        Rx::Drop,
        gen,
        &drop_frame,
        1,
        Expect::Other,
    );
    let nft = side(
        "nftables raw prerouting drop, 1 core",
        Rx::Nft,
        gen,
        &drop_frame,
        1,
        Expect::Other,
    );
    vec![
        Comparison {
            name: "drop path vs bare XDP_DROP",
            case: drop_path.clone(),
            baseline: xdp_drop.clone(),
            bar: Some(BAR_VS_XDP_DROP),
            bar_text: ">= 0.8 x XDP_DROP",
        },
        Comparison {
            name: "drop path vs nftables raw drop",
            case: drop_path.clone(),
            baseline: nft.clone(),
            bar: Some(BAR_VS_NFT),
            bar_text: ">= 3 x nftables",
        },
        // The most any drop program can show against nftables here: the generator's
        // share of each frame is in both sides.
        Comparison {
            name: "reference: bare XDP_DROP vs nftables raw drop",
            case: xdp_drop.clone(),
            baseline: nft,
            bar: None,
            bar_text: "(what this machine allows)",
        },
        Comparison {
            name: "meter and pass vs bare XDP_PASS",
            case: side(
                "warden meter and pass (plan conforming), 1 core",
                Rx::Warden,
                gen,
                &pass_frame,
                1,
                Expect::Passed,
            ),
            baseline: side(
                "bare XDP_PASS, 1 core",
                Rx::Pass,
                gen,
                &pass_frame,
                1,
                Expect::Other,
            ),
            bar: Some(BAR_VS_XDP_PASS),
            bar_text: ">= 0.9 x XDP_PASS",
        },
        Comparison {
            name: "1,000,000-source random flood vs fixed source",
            case: side(
                "warden, IPv6 flood from 1,000,000 random sources (drop), 1 core",
                Rx::Warden,
                program::XDP_BENCH_GEN_SOURCES,
                &flood_frame(FLOOD_SOURCES),
                1,
                Expect::Dropped,
            ),
            baseline: side(
                "warden, IPv6 flood from one source (drop), 1 core",
                Rx::Warden,
                program::XDP_BENCH_GEN_SOURCES,
                &flood_frame(1),
                1,
                Expect::Dropped,
            ),
            bar: Some(BAR_FLOOD),
            bar_text: ">= 0.5 x fixed source",
        },
        Comparison {
            name: "drop path, 2 cores vs 1 core",
            case: Side {
                label: "warden drop path (plan exhausted), 2 cores".into(),
                threads: 2,
                ..drop_path.clone()
            },
            baseline: drop_path,
            bar: Some(BAR_TWO_CORES),
            bar_text: ">= 1.8 x 1 core",
        },
        Comparison {
            name: "reference: bare XDP_DROP, 2 cores vs 1 core",
            case: Side {
                label: "bare XDP_DROP, 2 cores".into(),
                threads: 2,
                ..xdp_drop.clone()
            },
            baseline: xdp_drop,
            bar: None,
            bar_text: "(what this machine allows)",
        },
    ]
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
        limits,
        compute_scaling: scaling_figure,
    })
}

/// Runs of the compute-scaling reference.
const SCALING_RUNS: usize = 5;

/// `rounds` of CPU-bound integer work: 8 independent multiply-add chains (enough in
/// flight to fill a core's integer units), nothing beyond the first-level cache.
fn compute_work(rounds: u64) -> u64 {
    let mut x = [1u64, 2, 3, 4, 5, 6, 7, 8];
    for i in 0..std::hint::black_box(rounds) {
        for (k, v) in x.iter_mut().enumerate() {
            *v = v.wrapping_mul(3 + 2 * k as u64).wrapping_add(i);
        }
    }
    x.iter().fold(0, |a, v| a ^ v)
}

/// Seconds `compute_work(rounds)` takes on each of `cpus` at once (the slowest).
fn timed_work(cpus: &[usize], rounds: u64) -> Result<f64> {
    let barrier = Barrier::new(cpus.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                let barrier = &barrier;
                s.spawn(move || -> Result<f64> {
                    pin_thread(cpu)?;
                    barrier.wait();
                    let t = Instant::now();
                    std::hint::black_box(compute_work(rounds));
                    Ok(t.elapsed().as_secs_f64())
                })
            })
            .collect();
        let mut slowest: f64 = 0.0;
        for h in handles {
            let t = h
                .join()
                .map_err(|_| anyhow::anyhow!("a compute thread panicked"))??;
            slowest = slowest.max(t);
        }
        Ok(slowest)
    })
}

/// Work done per second by CPUs 0 and 1 together over CPU 0 alone (2.0: two whole
/// cores); median of [`SCALING_RUNS`] interleaved (one, two) runs.
fn compute_scaling() -> Result<f64> {
    // Rounds for about 0.3 s on one CPU, whatever the build's optimisation.
    let probe = 1_000_000;
    let t = timed_work(&[0], probe)?.max(1e-6);
    let rounds = ((probe as f64) * 0.3 / t).clamp(probe as f64, 1e10) as u64;
    let mut ratios = Vec::new();
    for _ in 0..SCALING_RUNS {
        let one = timed_work(&[0], rounds)?;
        let two = timed_work(&[0, 1], rounds)?;
        ratios.push(2.0 * one / two);
    }
    Ok(median(&ratios))
}

/// Mpps of a run: the sum over the generator threads (thread i on CPU i feeds receive
/// queue i modulo the queues) of its queue's arrivals over its own seconds.
fn summed_rate(per_queue: &[u64], thread_seconds: &[f64]) -> f64 {
    thread_seconds
        .iter()
        .enumerate()
        .map(|(cpu, s)| per_queue[cpu % per_queue.len()] as f64 / s)
        .sum::<f64>()
        / 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Medians of one side: (Mpps, packets arrived, refused by the rings, seconds).
fn side_medians(runs: &[Run]) -> (f64, f64, f64, f64) {
    let col = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    (
        col(Run::mpps),
        col(|r| r.arrived as f64),
        col(|r| r.lost as f64),
        col(|r| r.seconds),
    )
}

/// Median CPU share of the generator threads over a side's runs.
fn cpu_share(runs: &[Run]) -> f64 {
    median(&runs.iter().map(|r| r.cpu_share).collect::<Vec<_>>())
}

/// Median of the per-pair ratios case / baseline.
fn pair_ratio(case: &[Run], base: &[Run]) -> f64 {
    let r: Vec<f64> = case
        .iter()
        .zip(base)
        .map(|(c, b)| c.mpps() / b.mpps())
        .collect();
    median(&r)
}

impl Throughput {
    pub fn failed(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|(c, case, base)| !c.pass(pair_ratio(case, base)))
            .map(|(c, _, _)| format!("throughput: {} ({})", c.name, c.bar_text))
            .collect()
    }

    pub fn print_table(&self) {
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
        json!({
            "method": "XDP live frames (BPF_PROG_TEST_RUN, BPF_F_TEST_XDP_LIVE_FRAMES) \
                       redirected through veth pairs in namespaces; arrivals from the \
                       receiving veth's per-queue xdp_packets; each generator thread sends \
                       for a fixed window, and a run's rate is the sum over its threads of \
                       their queue's arrivals over their own time; interleaved (baseline, case) pairs in ABBA order; ratio = median \
                       of per-pair ratios",
            "pairs": self.options_pairs,
            "ms_per_generator_run": self.window_ms,
            "frames_per_call": CHUNK,
            "batch": BATCH,
            "cpus": online_cpus(),
            "limits": self.limits,
            "compute_scaling_2_vs_1": self.compute_scaling,
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
    let text =
        std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let mut v: Value = serde_json::from_str(&text).context("report.json is not JSON")?;
    let Some(obj) = v.as_object_mut() else {
        bail!("report.json is not an object");
    };
    obj.insert("throughput".into(), t.to_json());
    let text = serde_json::to_string_pretty(&v).context("encoding the report")?;
    std::fs::write(report, text + "\n").with_context(|| format!("writing {}", report.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_of_a_known_header() {
        // The example header of RFC 1071 practice: checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
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
}
