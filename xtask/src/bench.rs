//! `cargo xtask bench`: per-packet cost of the metering programs against an XDP_PASS
//! baseline measured in the same run.
//!
//! Method: the kernel runs each program `repeat` times on one frame through
//! `BPF_PROG_TEST_RUN` and reports the mean time per repetition (integer ns, the
//! time spent in the loop divided by the number of repetitions; time spent
//! rescheduled is not counted). Each case is measured in interleaved pairs (baseline,
//! case, baseline, case, ...) on one pinned CPU, so drift in clock speed or
//! background load hits both sides alike; the figures are the medians of each side.
//! The bar (from the issue): the known-tenant path costs at most [`BAR_NS`] over the
//! baseline.

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        MapData, PerCpuArray,
    },
    programs::Xdp,
    Ebpf, TestRun, TestRunOptions,
};
use serde_json::json;
use warden_common::{direction, global, map, program, tenant_counter_index, Counters, TenantRef};
use warden_tests::packets::{tcp, Frame, Ipv4, Ipv6, L4};

use crate::{setup, util};

/// Most a known-tenant lookup may cost over the XDP_PASS baseline, in ns.
const BAR_NS: f64 = 35.0;
/// Tenants loaded, each with one IPv4 /30 and one IPv6 /64.
const TENANTS: u32 = 10_000;
/// The tenant the known-tenant cases hit: in the middle of the tries.
const PROBE_TENANT: u32 = 5_000;
const XDP_PASS: u32 = 2;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Interleaved (baseline, case) pairs per case; the figures are medians over them.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(9..))]
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
}

/// One measured case: a program, a frame, and the counter one run of it must move
/// (checked before timing, so the bench measures the path it names).
struct Case {
    name: &'static str,
    program: &'static str,
    frame: Vec<u8>,
    counts_in: Counted,
}

#[derive(Clone, Copy)]
enum Counted {
    Tenant { index: u32, dir: u32 },
    NoTenant { dir: u32 },
}

/// The measured figures of one case.
struct Figures {
    case_ns: Vec<u32>,
    base_ns: Vec<u32>,
    median_case: f64,
    median_base: f64,
}

impl Figures {
    fn delta(&self) -> f64 {
        self.median_case - self.median_base
    }

    fn ratio(&self) -> f64 {
        if self.median_base > 0.0 {
            self.median_case / self.median_base
        } else {
            f64::INFINITY
        }
    }

    fn pass(&self) -> bool {
        self.delta() <= BAR_NS
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    setup::run()?;
    let cpu = pin(args.cpu)?;
    let mut ebpf = load()?;
    fill_tenants(&mut ebpf)?;
    let cases = cases();
    for case in &cases {
        verify_path(&ebpf, case)?;
    }

    println!(
        "{} tenants (IPv4 /30s in 198.18.0.0/15, IPv6 /64s in 2001:db8::/32); \
         {} pairs x {} repetitions per case, CPU {cpu}",
        TENANTS, args.pairs, args.repeat
    );
    let mut results = Vec::new();
    for case in &cases {
        let figures = measure(&ebpf, case, args.pairs, args.repeat)?;
        results.push((case, figures));
    }

    print_table(&results);
    let report = write_report(&args, cpu, &results)?;
    println!("report: {}", report.display());

    let failed: Vec<_> = results
        .iter()
        .filter(|(_, f)| !f.pass())
        .map(|(c, _)| c.name)
        .collect();
    if args.strict && !failed.is_empty() {
        bail!("over the {BAR_NS} ns bar: {}", failed.join(", "));
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

fn load() -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(warden::dataplane::OBJECT)
        .context("loading the eBPF object (needs root or CAP_BPF)")?;
    for name in [
        program::XDP_PASS_BASELINE,
        program::XDP_TO_TENANT,
        program::XDP_FROM_TENANT,
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

/// IPv4 /30 of tenant `i`: 198.18.0.0 + 4i.
fn tenant_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 4 * i)
}

/// IPv6 /64 of tenant `i`: 2001:db8:0:i::/64.
fn tenant_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0)
}

fn fill_tenants(ebpf: &mut Ebpf) -> Result<()> {
    {
        let m = ebpf.map_mut(map::TENANTS_V4).context("no TENANTS_V4 map")?;
        let mut v4: LpmTrie<&mut MapData, [u8; 4], TenantRef> = LpmTrie::try_from(m)?;
        for i in 0..TENANTS {
            v4.insert(
                &Key::new(30, tenant_v4(i).octets()),
                TenantRef { index: i },
                0,
            )
            .with_context(|| format!("inserting tenant {i} into TENANTS_V4"))?;
        }
    }
    let m = ebpf.map_mut(map::TENANTS_V6).context("no TENANTS_V6 map")?;
    let mut v6: LpmTrie<&mut MapData, [u8; 16], TenantRef> = LpmTrie::try_from(m)?;
    for i in 0..TENANTS {
        v6.insert(
            &Key::new(64, tenant_v6(i).octets()),
            TenantRef { index: i },
            0,
        )
        .with_context(|| format!("inserting tenant {i} into TENANTS_V6"))?;
    }
    Ok(())
}

fn cases() -> Vec<Case> {
    let outside = Ipv4Addr::new(198, 19, 200, 1);
    // Just past the last tenant's /30, inside the tenants' /16: the trie is walked
    // before the lookup misses (an address outside 198.18.0.0/16 misses at the root).
    let unknown4 = Ipv4Addr::from(u32::from(tenant_v4(TENANTS)) + 1);
    let outside6 = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    let host4 = Ipv4Addr::from(u32::from(tenant_v4(PROBE_TENANT)) + 1);
    let host6 = Ipv6Addr::from(u128::from(tenant_v6(PROBE_TENANT)) + 0x10);
    let syn = || L4::tcp(40000, 443, tcp::SYN);
    vec![
        Case {
            name: "known tenant v4 (to-tenant)",
            program: program::XDP_TO_TENANT,
            frame: Frame::new(Ipv4::new(outside, host4).l4(syn()))
                .pad_to(64)
                .build(),
            counts_in: Counted::Tenant {
                index: PROBE_TENANT,
                dir: direction::IN,
            },
        },
        Case {
            name: "known tenant v6 (from-tenant)",
            program: program::XDP_FROM_TENANT,
            frame: Frame::new(Ipv6::new(host6, outside6).l4(syn())).build(),
            counts_in: Counted::Tenant {
                index: PROBE_TENANT,
                dir: direction::OUT,
            },
        },
        Case {
            name: "unknown address",
            program: program::XDP_TO_TENANT,
            frame: Frame::new(Ipv4::new(host4, unknown4).l4(syn()))
                .pad_to(64)
                .build(),
            counts_in: Counted::NoTenant { dir: direction::IN },
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

/// Runs the case once and checks it passes and counts in the slot its name promises.
fn verify_path(ebpf: &Ebpf, case: &Case) -> Result<()> {
    let read = || -> Result<Counters> {
        let (map_name, index) = match case.counts_in {
            Counted::Tenant { index, dir } => {
                (map::TENANT_COUNTERS, tenant_counter_index(index, dir))
            }
            Counted::NoTenant { dir } => {
                (map::GLOBAL_COUNTERS, global::index(global::NO_TENANT, dir))
            }
        };
        let array: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(
            ebpf.map(map_name)
                .with_context(|| format!("no {map_name} map"))?,
        )?;
        let values = array.get(&index, 0)?;
        Ok(values.iter().fold(Counters::default(), |a, c| Counters {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
        }))
    };
    let before = read()?;
    let (ret, _) = test_run(xdp(ebpf, case.program)?, &case.frame, 1)?;
    let after = read()?;
    ensure!(
        ret == XDP_PASS,
        "{}: {} returned {ret}, expected XDP_PASS",
        case.name,
        case.program
    );
    ensure!(
        after.packets == before.packets + 1
            && after.bytes == before.bytes + case.frame.len() as u64,
        "{}: the frame was not counted where the case expects it ({before:?} -> {after:?})",
        case.name
    );
    Ok(())
}

fn measure(ebpf: &Ebpf, case: &Case, pairs: u32, repeat: u32) -> Result<Figures> {
    let base = xdp(ebpf, program::XDP_PASS_BASELINE)?;
    let prog = xdp(ebpf, case.program)?;
    // Warm caches and the branch predictor; not recorded.
    test_run(base, &case.frame, repeat.div_ceil(10))?;
    test_run(prog, &case.frame, repeat.div_ceil(10))?;
    let (mut base_ns, mut case_ns) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        base_ns.push(test_run(base, &case.frame, repeat)?.1);
        case_ns.push(test_run(prog, &case.frame, repeat)?.1);
    }
    Ok(Figures {
        median_case: median(&case_ns),
        median_base: median(&base_ns),
        case_ns,
        base_ns,
    })
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
    let headers = [
        "case", "program", "frame", "case ns", "base ns", "delta ns", "ratio", "bar",
    ];
    let rows: Vec<[String; 8]> = results
        .iter()
        .map(|(c, f)| {
            [
                c.name.to_string(),
                c.program.to_string(),
                format!("{} B", c.frame.len()),
                format!("{:.1}", f.median_case),
                format!("{:.1}", f.median_base),
                format!("{:+.1}", f.delta()),
                format!("{:.2}", f.ratio()),
                format!(
                    "{} (<= {BAR_NS} ns)",
                    if f.pass() { "PASS" } else { "FAIL" }
                ),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    // Text columns left-aligned, figures right-aligned.
    let line = |cells: [&str; 8]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if (3..=6).contains(&i) {
                out.push_str(&format!("{cell:>w$}"));
            } else {
                out.push_str(&format!("{cell:<w$}"));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

fn write_report(args: &BenchArgs, cpu: usize, results: &[(&Case, Figures)]) -> Result<PathBuf> {
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
                "program": c.program,
                "baseline_program": program::XDP_PASS_BASELINE,
                "frame_bytes": c.frame.len(),
                "median_case_ns": f.median_case,
                "median_baseline_ns": f.median_base,
                "delta_ns": f.delta(),
                "ratio": f.ratio(),
                "pass": f.pass(),
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
        "tenants": { "v4_prefixes": TENANTS, "v6_prefixes": TENANTS },
        "cases": cases,
    });
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
    fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
