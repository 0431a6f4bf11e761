//! Scale: policy apply for 1,000 / 10,000 / 100,000 tenants, a full counter read at
//! 100,000 tenants, and the resident memory of a real daemon holding 100,000 tenants.
//!
//! Policy apply runs the daemon's own code path (`Inner::enforce` in
//! `userspace/warden/src/daemon/`), phase by phase, on maps in a private bpffs directory
//! opened with `Dataplane::open` (a fresh one per run, so both generations start
//! unknown and every bucket is written, as a daemon's first apply of each half does):
//!
//! - parse: YAML and every section read into drafts (`policy::parse_timed`);
//! - validate: the checks that span tenants (unique ids and MACs, disjoint addresses);
//! - compile: `TenantIndex::sync` and `dataplane::compile`;
//! - reset slots: `Dataplane::reset_slots` of every newly indexed tenant (the daemon
//!   zeroes a new tenant's counters and buckets before any address points at it);
//! - place: `GenTables::build` (cuckoo placement), inside `Dataplane::apply`;
//! - write: the inactive generation's tables, tenant settings and GEN_CONFIG;
//! - flip: ACTIVE set to the new generation;
//! - first packet: one `BPF_PROG_TEST_RUN` of `xdp_to_tenant` (loaded beforehand on the
//!   same pinned maps, as an attached program would be) with a frame to the last
//!   tenant's address, which must pass and move that tenant's inbound counter by one
//!   packet: the new policy is in force.
//!
//! The figure is the wall-clock time from the start of parsing to the first packet's
//! counter read back; median of [`RUNS_SMALL`] runs (1,000 and 10,000 tenants) or
//! [`RUNS_LARGE`] (100,000). The policy: each tenant an IPv4 /32 from 198.18.0.0/15, an
//! IPv6 /64 from 2001:db8::/32 and its own bandwidth plan.
//!
//! Counter read: `Dataplane::all_tenant_counters` and `all_drop_counters` (the batch
//! reads of the per-CPU TENANT_COUNTERS and DROP_COUNTERS, as `/metrics` does) of
//! 100,000 tenant slots, on the maps of the last 100,000-tenant apply; median of
//! [`READ_RUNS`].
//!
//! Daemon memory: the release `warden run` on the standard namespace lab with a
//! 100,000-tenant policy; VmRSS (and VmHWM) from `/proc/PID/status` once it serves, then
//! after a second policy (every tenant on a new plan) is applied, first through
//! `PUT /api/v1/policy` (as `warden policy apply` sends it), and, when the API refuses
//! it, through a SIGHUP reload of the policy file. From [`SETTLE`] after the last
//! request (a `/metrics` of 100,000 tenants builds tens of MiB that live for
//! milliseconds), VmRSS is read every [`WATCH_EVERY`] for [`WATCH`]: the daemon at
//! rest still builds its once-a-second counter sample (every tenant's counters and
//! drops, and the tables made from them) and frees it, so its resident size swings
//! each second. The figure judged is the highest reading; the lowest (between
//! samples) is reported beside it. The peak (VmHWM,
//! the most the daemon was ever resident, during the policy read and the apply) is
//! reported beside it, without a bar.
//!
//! `warden-bench scale --apply-only [--tenants 100000] [--runs N]` (a release build,
//! e.g. `cargo run --release -p warden-bench -- scale --apply-only`, after `cargo xtask
//! setup`) measures
//! the policy-apply case alone, for the given tenant counts, and prints the same JSON
//! without the counter read and daemon parts.

use crate::util::median;
use std::{
    collections::HashSet,
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{programs::Xdp, Ebpf, TestRun, TestRunOptions};
use serde_json::{json, Value};
use warden_common::{direction, map, program};
use warden_dataplane::{self as dataplane, Dataplane, TenantIndex};
use warden_policy as policy;
use warden_tests::packets::{tcp, Frame, Ipv4, L4};

/// Tenant counts of the policy-apply case.
pub const SIZES: [u32; 3] = [1_000, 10_000, 100_000];
/// Runs per size below 100,000 tenants.
pub const RUNS_SMALL: usize = 9;
/// Runs at 100,000 tenants.
pub const RUNS_LARGE: usize = 3;
/// Runs of the full counter read.
pub const READ_RUNS: usize = 9;
/// Tenants of the counter read and the daemon-memory case.
pub const LARGE: u32 = 100_000;
/// Bar: policy apply of 100,000 tenants to the first enforced packet, ms.
pub const APPLY_BAR_MS: f64 = 2_000.0;
/// Bar: full counter read at 100,000 tenants, ms.
pub const READ_BAR_MS: f64 = 250.0;
/// Bar: daemon resident memory at 100,000 tenants, MiB.
pub const RSS_BAR_MIB: f64 = 200.0;
const XDP_PASS: u32 = 2;

/// Options of `warden-bench scale` (the full part runs without any).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// Only the policy-apply case: no counter read, no daemon memory.
    #[arg(long)]
    pub apply_only: bool,
    /// Only the daemon-memory case: no policy-apply or counter-read runs.
    #[arg(long, conflicts_with = "apply_only")]
    pub memory_only: bool,
    /// Tenant counts of the apply case (default 1000, 10000, 100000).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=114_687))]
    pub tenants: Vec<u32>,
    /// Runs per tenant count (default 9 below 100,000 tenants, 3 at 100,000 and above).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
}

/// One timed run of a policy apply, ms per phase.
#[derive(Clone, Debug, Default)]
pub struct ApplyRun {
    pub parse: f64,
    pub validate: f64,
    pub compile: f64,
    pub reset_slots: f64,
    pub place: f64,
    pub write: f64,
    pub flip: f64,
    pub first_packet: f64,
    /// Start of parsing to the first packet's counter read back.
    pub total: f64,
}

impl ApplyRun {
    /// The phases, in the order the daemon runs them.
    pub const PHASES: [&'static str; 8] = [
        "parse",
        "validate",
        "compile",
        "reset_slots",
        "place",
        "write",
        "flip",
        "first_packet",
    ];

    fn phase(&self, name: &str) -> f64 {
        match name {
            "parse" => self.parse,
            "validate" => self.validate,
            "compile" => self.compile,
            "reset_slots" => self.reset_slots,
            "place" => self.place,
            "write" => self.write,
            "flip" => self.flip,
            "first_packet" => self.first_packet,
            _ => self.total,
        }
    }
}

/// One reported case: (case, figure, unit, bar, pass); no bar, no verdict.
type CaseRow = (String, f64, &'static str, Option<f64>, Option<bool>);

/// The figures of the scale bench.
#[derive(Debug, Default)]
pub struct ScaleBench {
    /// (tenants, runs).
    pub apply: Vec<(u32, Vec<ApplyRun>)>,
    /// Full counter read at [`LARGE`] tenants, ms per run.
    pub read_ms: Vec<f64>,
    /// Daemon memory and applies, if measured.
    pub daemon: Option<DaemonFigures>,
    pub profile: String,
}

/// What the real daemon showed with [`LARGE`] tenants.
#[derive(Debug, Default, Clone)]
pub struct DaemonFigures {
    /// Start of `warden run` to "serving API", ms.
    pub start_ms: f64,
    /// Highest and lowest VmRSS at rest after the first policy.
    pub rss_loaded_kib: u64,
    pub rss_loaded_low_kib: u64,
    pub hwm_loaded_kib: u64,
    /// `PUT /api/v1/policy` of the second policy: status, ms, body size.
    pub put_status: u16,
    pub put_ms: f64,
    pub put_body: String,
    pub policy_bytes: usize,
    /// How the second policy was applied in the end: "PUT /api/v1/policy" or "SIGHUP".
    pub applied_via: String,
    /// Signal to "policy reloaded on SIGHUP", ms (when the reload was needed).
    pub reload_ms: Option<f64>,
    /// Highest and lowest VmRSS at rest after the second policy.
    pub rss_applied_kib: u64,
    pub rss_applied_low_kib: u64,
    pub hwm_applied_kib: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Tenant `i`'s IPv4 address: 198.18.64.0 + i (inside 198.18.0.0/15 up to 114,687
/// tenants, clear of the lab's own hosts).
fn tenant_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 64, 0)) + i)
}

/// Tenant `i`'s IPv6 /64: 2001:db8:4xxx:yyyy::/64.
fn tenant_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x4000 + (i >> 16) as u16,
        i as u16,
        0,
        0,
        0,
        0,
    )
}

/// The `tenants` section (with a `tenants:` line) of `n` tenants, each on its own
/// plan; `variant` moves every plan, so two variants differ in every tenant.
fn tenants_yaml(n: u32, variant: u32) -> String {
    let mut s = String::with_capacity(n as usize * 120);
    s.push_str("tenants:\n");
    for i in 0..n {
        let mbit = 10 + (i + variant) % 990;
        let _ = writeln!(
            s,
            "  - id: t{i:06}\n    addresses: [{}/32, {}/64]\n    bandwidth: {{ egress: {mbit}Mbit, ingress: {}Mbit }}",
            tenant_v4(i),
            tenant_v6(i),
            mbit * 2
        );
    }
    s
}

/// Removes the private bpffs directory on every exit path.
struct BpffsDir(PathBuf);

impl Drop for BpffsDir {
    fn drop(&mut self) {
        if let Err(e) = Dataplane::uninstall(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `xdp_to_tenant` loaded on the maps pinned under `bpffs` (a second object sharing
/// them, as the attached program of a running daemon would).
fn probe_program(bpffs: &Path) -> Result<Ebpf> {
    let mut loader = dataplane::loader()?;
    let paths: Vec<(&str, PathBuf)> = map::ALL
        .iter()
        .map(|n| (*n, bpffs.join("maps").join(n)))
        .collect();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(dataplane::OBJECT)
        .context("loading the eBPF object on the pinned maps")?;
    let prog: &mut Xdp = ebpf
        .program_mut(program::XDP_TO_TENANT)
        .context("no xdp_to_tenant")?
        .try_into()?;
    prog.load().context("loading xdp_to_tenant")?;
    Ok(ebpf)
}

/// One apply of `text` (`n` tenants) onto fresh maps under `dir`; returns the run and
/// the dataplane (for the counter read).
fn apply_once(dir: &Path, text: &str, n: u32) -> Result<(ApplyRun, Dataplane)> {
    let mut dp = Dataplane::open(dir)
        .with_context(|| format!("opening maps in {} (needs root)", dir.display()))?;
    let probe = probe_program(dir)?;
    let prog: &Xdp = probe
        .program(program::XDP_TO_TENANT)
        .context("no xdp_to_tenant")?
        .try_into()?;
    let last = n - 1;
    let frame = Frame::new(
        Ipv4::new(Ipv4Addr::new(198, 18, 200, 1), tenant_v4(last)).l4(L4::tcp(
            40000,
            443,
            tcp::SYN,
        )),
    )
    .pad_to(64)
    .build();

    let started = Instant::now();
    let (parsed, timings) = policy::parse_timed(text, "scale.yaml");
    let parsed = parsed.map_err(|d| anyhow::anyhow!("the generated policy is invalid:\n{d}"))?;
    ensure!(
        parsed.tenants.len() == n as usize,
        "parsed {} tenants",
        parsed.tenants.len()
    );
    let compiling = Instant::now();
    let mut index = TenantIndex::default();
    let changes = index.sync(parsed.tenants.iter().map(|t| t.id.as_str()))?;
    let compiled = dataplane::compile(&parsed, &index, &HashSet::new())?;
    let resetting = Instant::now();
    let added: Vec<_> = changes.added.iter().map(|(_, slot)| *slot).collect();
    dp.reset_slots(&added)
        .context("zeroing new tenants' slots")?;
    let applying = Instant::now();
    dp.apply(&compiled).context("writing the policy")?;
    let packet = Instant::now();
    let slot = index
        .get(&format!("t{last:06}"))
        .context("last tenant not indexed")?;
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: 1,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    let counted = dp.tenant_counters(slot)?[direction::IN as usize].packets;
    let done = Instant::now();
    ensure!(
        r.return_value == XDP_PASS && counted == 1,
        "the first packet after the flip returned {} and counted {counted} packets to the \
         last tenant (expected pass and 1): the policy is not in force",
        r.return_value
    );
    let a = dp.last_apply();
    let run = ApplyRun {
        parse: ms(timings.parse),
        validate: ms(timings.validate),
        compile: ms(resetting - compiling),
        reset_slots: ms(applying - resetting),
        place: ms(a.place),
        write: ms(a.write),
        flip: ms(a.flip),
        first_packet: ms(done - packet),
        total: ms(done - started),
    };
    Ok((run, dp))
}

/// Full reads of [`LARGE`] tenants' counters and drops.
fn read_runs(dp: &Dataplane) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(READ_RUNS);
    for _ in 0..READ_RUNS {
        let t = Instant::now();
        let c = dp.all_tenant_counters(LARGE)?;
        let d = dp.all_drop_counters(LARGE)?;
        out.push(ms(t.elapsed()));
        ensure!(
            c.len() == LARGE as usize && d.len() == LARGE as usize,
            "read {} counters and {} drops of {LARGE} slots",
            c.len(),
            d.len()
        );
        // The probe packet of the apply: the read sees the kernel's figures.
        let seen: u64 = c.iter().map(|c| c[direction::IN as usize].packets).sum();
        ensure!(
            seen == 1,
            "the full read found {seen} inbound packets, expected 1"
        );
        std::hint::black_box((c, d));
    }
    Ok(out)
}

/// How long after its last request the daemon's memory is first read: past one
/// counter sample (every second), which returns freed memory to the system.
const SETTLE: Duration = Duration::from_millis(1_500);
/// How long VmRSS is then watched, and how often read: three per-second counter
/// samples, each of which builds its tables of every tenant and frees them again.
const WATCH: Duration = Duration::from_secs(3);
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The daemon's memory at rest (see the module doc): the highest and the lowest VmRSS
/// read every [`WATCH_EVERY`] over [`WATCH`], and VmHWM at the end; KiB.
fn memory_at_rest(pid: u32) -> Result<(u64, u64, u64)> {
    std::thread::sleep(SETTLE);
    let start = Instant::now();
    let (mut high, mut low, mut hwm) = (0, u64::MAX, 0);
    while start.elapsed() < WATCH {
        let (rss, peak) = memory_kib(pid)?;
        (high, low, hwm) = (high.max(rss), low.min(rss), peak);
        std::thread::sleep(WATCH_EVERY);
    }
    Ok((high, low, hwm))
}

/// VmRSS and VmHWM of `pid`, KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in {path}"))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("{name} in {path}: {line:?}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The release daemon on a lab with [`LARGE`] tenants: memory after start and after a
/// second policy.
fn daemon_part() -> Result<DaemonFigures> {
    use warden_tests::topology::{token, StandardLab};
    let bin = std::env::current_exe()
        .context("locating warden-bench")?
        .with_file_name("warden");
    ensure!(
        bin.is_file(),
        "no release daemon at {} (cargo build --release -p warden)",
        bin.display()
    );
    let lab = StandardLab::build("wbs")?;
    let header = lab.policy_header()?;
    let first = format!("{header}{}", tenants_yaml(LARGE, 0));
    let path = lab.write_policy_as("scale-bench.yaml", &first)?;
    let started = Instant::now();
    let mut daemon = lab.start_daemon(&bin, &path, &["--detach-on-exit"])?;
    let start_ms = ms(started.elapsed());
    let pid = daemon.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(
        comm.trim() == "warden",
        "process {pid} is {:?}, not the daemon",
        comm.trim()
    );
    let metrics = lab.get("/metrics")?;
    ensure!(
        metrics.contains(&format!("\nwarden_tenants {LARGE}\n")),
        "the daemon does not report {LARGE} tenants"
    );
    let (rss_loaded_kib, rss_loaded_low_kib, hwm_loaded_kib) = memory_at_rest(pid)?;

    let second = lab.localize(&format!("{header}{}", tenants_yaml(LARGE, 1)))?;
    let t = Instant::now();
    // A refusal may come before the body is sent (the connection then breaks while
    // writing it): both count as "not applied through the API".
    let (put_status, put_body) = match lab.request(
        "PUT",
        "/api/v1/policy",
        Some(&second),
        Some(token::OPERATOR),
    ) {
        Ok(r) => (r.status, r.body),
        Err(e) => (0, format!("request failed: {e:#}")),
    };
    let put_ms = ms(t.elapsed());
    let mut reload_ms = None;
    let applied_via = if put_status == 200 {
        "PUT /api/v1/policy"
    } else {
        // Apply the same policy through the file and SIGHUP, so memory after an apply
        // is still measured.
        std::fs::write(&path, &second).with_context(|| format!("writing {}", path.display()))?;
        let t = Instant::now();
        // SAFETY: kill only sends a signal to the daemon we started.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
            bail!("SIGHUP to {pid}: {}", std::io::Error::last_os_error());
        }
        daemon
            .wait_log("policy reloaded on SIGHUP", Duration::from_secs(60))
            .context("the daemon did not reload the 100,000-tenant policy")?;
        reload_ms = Some(ms(t.elapsed()));
        "SIGHUP"
    };
    let metrics = lab.get("/metrics")?;
    ensure!(
        metrics.contains("\nwarden_policy_generation 2\n"),
        "after the second policy (applied through {applied_via}, PUT status {put_status}: {}) the daemon is not at policy generation 2: {:?}",
        put_body.chars().take(300).collect::<String>(),
        metrics
            .lines()
            .find(|l| l.starts_with("warden_policy_generation"))
    );
    let (rss_applied_kib, rss_applied_low_kib, hwm_applied_kib) = memory_at_rest(pid)?;
    Ok(DaemonFigures {
        start_ms,
        rss_loaded_kib,
        rss_loaded_low_kib,
        hwm_loaded_kib,
        put_status,
        put_ms,
        put_body: put_body.chars().take(200).collect(),
        policy_bytes: second.len(),
        applied_via: applied_via.into(),
        reload_ms,
        rss_applied_kib,
        rss_applied_low_kib,
        hwm_applied_kib,
    })
}

/// Measures in this process (whatever its profile).
fn measure(opts: &Options) -> Result<ScaleBench> {
    let mut bench = ScaleBench {
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
        .into(),
        ..Default::default()
    };
    let pid = std::process::id();
    let sizes = if opts.memory_only {
        Vec::new()
    } else if opts.tenants.is_empty() {
        SIZES.to_vec()
    } else {
        opts.tenants.clone()
    };
    for n in sizes {
        let text = tenants_yaml(n, 0);
        let runs = match opts.runs {
            Some(runs) => runs as usize,
            None if n >= LARGE => RUNS_LARGE,
            None => RUNS_SMALL,
        };
        let mut got = Vec::with_capacity(runs);
        for run in 0..runs {
            let dir = BpffsDir(PathBuf::from(format!(
                "/sys/fs/bpf/warden-bench-scale-{pid}-{n}-{run}"
            )));
            let (r, dp) = apply_once(&dir.0, &text, n)?;
            eprintln!("    {n} tenants, run {run}: {:.1} ms", r.total);
            got.push(r);
            if !opts.apply_only && n == LARGE && run + 1 == runs {
                bench.read_ms = read_runs(&dp)?;
            }
            drop(dp);
        }
        bench.apply.push((n, got));
    }
    if !opts.apply_only {
        bench.daemon = Some(daemon_part()?);
    }
    Ok(bench)
}

impl ScaleBench {
    fn apply_median(&self, n: u32) -> Option<f64> {
        self.apply
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, runs)| median(&runs.iter().map(|r| r.total).collect::<Vec<_>>()))
    }

    /// The cases with their bars: (case, figure, unit, bar, pass).
    fn cases(&self) -> Vec<CaseRow> {
        let mut out = Vec::new();
        for (n, _) in &self.apply {
            let m = self.apply_median(*n).unwrap_or(f64::NAN);
            let bar = (*n == LARGE).then_some(APPLY_BAR_MS);
            out.push((
                format!("policy apply, {n} tenants, to first enforced packet"),
                m,
                "ms",
                bar,
                bar.map(|b| m <= b),
            ));
        }
        if !self.read_ms.is_empty() {
            let m = median(&self.read_ms);
            out.push((
                format!("full counter read, {LARGE} tenants"),
                m,
                "ms",
                Some(READ_BAR_MS),
                Some(m <= READ_BAR_MS),
            ));
        }
        if let Some(d) = &self.daemon {
            for (what, kib) in [
                ("after load", d.rss_loaded_kib),
                ("after a policy apply", d.rss_applied_kib),
            ] {
                out.push((
                    format!("daemon resident memory, {LARGE} tenants, {what} (highest at rest)"),
                    mib(kib),
                    "MiB",
                    Some(RSS_BAR_MIB),
                    Some(mib(kib) <= RSS_BAR_MIB),
                ));
            }
            for (what, kib) in [
                ("after load", d.rss_loaded_low_kib),
                ("after a policy apply", d.rss_applied_low_kib),
            ] {
                out.push((
                    format!(
                        "daemon resident memory, {LARGE} tenants, {what} (lowest, between counter samples)"
                    ),
                    mib(kib),
                    "MiB",
                    None,
                    None,
                ));
            }
            for (what, kib) in [
                ("while loading", d.hwm_loaded_kib),
                ("up to and during a policy apply", d.hwm_applied_kib),
            ] {
                out.push((
                    format!("daemon peak resident memory (VmHWM), {LARGE} tenants, {what}"),
                    mib(kib),
                    "MiB",
                    None,
                    None,
                ));
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let phases = |runs: &[ApplyRun]| {
            let mut o = serde_json::Map::new();
            for p in ApplyRun::PHASES.iter().chain(&["total"]) {
                let v: Vec<f64> = runs.iter().map(|r| r.phase(p)).collect();
                o.insert(
                    format!("{p}_ms"),
                    json!({ "median": median(&v), "runs": v }),
                );
            }
            Value::Object(o)
        };
        json!({
            "method": "policy apply: the daemon's enforce path (policy::parse_timed, \
                       TenantIndex::sync + dataplane::compile, Dataplane::reset_slots of the new \
                       tenants, Dataplane::apply) on fresh maps in a private bpffs directory, then \
                       one BPF_PROG_TEST_RUN of xdp_to_tenant to the last tenant, which must pass \
                       and count; wall-clock from parse start to that counter read. Counter read: \
                       Dataplane::all_tenant_counters + all_drop_counters of every slot. Memory: \
                       VmRSS of the release `warden run` on a namespace lab.",
            "profile": self.profile,
            "policy": "each tenant one IPv4 /32 (198.18.64.0 + i), one IPv6 /64 \
                       (2001:db8:4000::/36) and its own bandwidth plan",
            "cases": self.cases().into_iter().map(|(case, figure, unit, bar, pass)| json!({
                "case": case,
                "figure": figure,
                "unit": unit,
                "bar": bar,
                "pass": pass,
            })).collect::<Vec<_>>(),
            "apply": self.apply.iter().map(|(n, runs)| json!({
                "tenants": n,
                "runs": runs.len(),
                "phases": phases(runs),
            })).collect::<Vec<_>>(),
            "counter_read": {
                "tenants": LARGE,
                "maps": [map::TENANT_COUNTERS, map::DROP_COUNTERS],
                "median_ms": median(&self.read_ms),
                "runs_ms": self.read_ms,
                "bar_ms": READ_BAR_MS,
            },
            "daemon": self.daemon.as_ref().map(|d| json!({
                "tenants": LARGE,
                "start_ms": d.start_ms,
                "rss_loaded_kib": d.rss_loaded_kib,
                "rss_loaded_low_kib": d.rss_loaded_low_kib,
                "hwm_loaded_kib": d.hwm_loaded_kib,
                "policy_bytes": d.policy_bytes,
                "put_status": d.put_status,
                "put_ms": d.put_ms,
                "put_body": d.put_body,
                "applied_via": d.applied_via,
                "reload_ms": d.reload_ms,
                "rss_applied_kib": d.rss_applied_kib,
                "rss_applied_low_kib": d.rss_applied_low_kib,
                "hwm_applied_kib": d.hwm_applied_kib,
                "bar_mib": RSS_BAR_MIB,
            })),
        })
    }
}

/// `warden-bench scale`: measures and prints the JSON on stdout.
pub fn print_json(opts: &Options) -> Result<()> {
    println!("{}", measure(opts)?.to_json());
    Ok(())
}

/// Measures with the release profile (the daemon's), running this task built with it
/// when warden-bench itself is a debug build, and prints the figures.
pub fn run() -> Result<Value> {
    println!(
        "==> scale: policy apply of {SIZES:?} tenants, full counter read and daemon memory at {LARGE} (release build)"
    );
    let v = if cfg!(debug_assertions) {
        crate::util::run_release_task("scale")?
    } else {
        measure(&Options::default())?.to_json()
    };
    print_value(&v);
    Ok(v)
}

/// Prints the cases of a `to_json` value.
fn print_value(v: &Value) {
    println!("\nscale ({}):", v["profile"].as_str().unwrap_or("?"));
    for (n, a) in v["apply"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| (a["tenants"].as_u64().unwrap_or(0), a))
    {
        let mut line = format!("  apply {n:>7} tenants, median ms:");
        for p in ApplyRun::PHASES.iter().chain(&["total"]) {
            let m = a["phases"][format!("{p}_ms")]["median"]
                .as_f64()
                .unwrap_or(f64::NAN);
            line.push_str(&format!(" {p} {m:.1}"));
        }
        println!("{line}");
    }
    if let Some(d) = v["daemon"].as_object() {
        println!(
            "  daemon: PUT /api/v1/policy ({} bytes) status {} in {:.0} ms, applied via {}, reload {:?} ms",
            d["policy_bytes"], d["put_status"], d["put_ms"].as_f64().unwrap_or(f64::NAN),
            d["applied_via"].as_str().unwrap_or("?"), d["reload_ms"].as_f64()
        );
    }
    for c in v["cases"].as_array().into_iter().flatten() {
        let verdict = match c["pass"].as_bool() {
            Some(true) => format!(
                "PASS (<= {} {})",
                c["bar"],
                c["unit"].as_str().unwrap_or("")
            ),
            Some(false) => format!(
                "FAIL (<= {} {})",
                c["bar"],
                c["unit"].as_str().unwrap_or("")
            ),
            None => String::new(),
        };
        println!(
            "  {:<62} {:>10.2} {:<3} {verdict}",
            c["case"].as_str().unwrap_or("?"),
            c["figure"].as_f64().unwrap_or(f64::NAN),
            c["unit"].as_str().unwrap_or("")
        );
    }
}

/// The failed cases of a `to_json` value.
pub fn failed(v: &Value) -> Vec<String> {
    v["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["pass"].as_bool() == Some(false))
        .map(|c| {
            format!(
                "{} (bar {} {})",
                c["case"].as_str().unwrap_or("?"),
                c["bar"],
                c["unit"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Adds the figures to `report` (the bench's report.json) as `scale`.
pub fn add_to_report(report: &Path, scale: &Value) -> Result<()> {
    crate::util::add_section(report, "scale", scale.clone())
}
