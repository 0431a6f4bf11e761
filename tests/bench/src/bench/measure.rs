//! The pair runner: a case's interleaved (baseline, case) test runs in ABBA order and
//! their figures, after the check that a run of the case takes the path it names.

pub(super) use crate::util::median as median_f;
use anyhow::{ensure, Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray},
    programs::Xdp,
    TestRun, TestRunOptions,
};
use warden_common::{global, map, program, reason, tenant_counter_index, Counters, DropCounters};

use super::{
    answer::answer_run,
    cases::{Case, Flow, Lands},
    facts::FactMaps,
    new_flow::NewFlowRun,
    node::Rig,
    tracked::ensure_tracked,
    ANSWER_RUNS, ANSWER_WINDOW, NEW_FLOW_MAX_REPEAT, NEW_FLOW_WARM_UPS, PROBE_TENANT, XDP_PASS,
};

/// The measured figures of one case.
pub(super) struct Figures {
    pub(super) case_ns: Vec<u32>,
    pub(super) base_ns: Vec<u32>,
    pub(super) median_case: f64,
    pub(super) median_base: f64,
    /// Median of the per-pair differences (case - its own baseline): a pair's two runs
    /// share whatever the machine was doing then, so their difference is what the case
    /// costs; the median of those is steadier than a difference of medians.
    pub(super) median_delta: f64,
    /// Repetitions per test run.
    pub(super) repeat: u32,
}

impl Figures {
    /// The figures of (case, baseline) pairs: `case_ns[i]` and `base_ns[i]` are a pair.
    pub(super) fn new(case_ns: Vec<u32>, base_ns: Vec<u32>, repeat: u32) -> Figures {
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
    pub(super) fn merge(mut self, later: Figures) -> Figures {
        self.case_ns.extend(later.case_ns);
        self.base_ns.extend(later.base_ns);
        Figures::new(self.case_ns, self.base_ns, self.repeat)
    }

    pub(super) fn delta(&self) -> f64 {
        self.median_delta
    }

    pub(super) fn ratio(&self) -> f64 {
        if self.median_base > 0.0 {
            (self.median_base + self.median_delta) / self.median_base
        } else {
            f64::INFINITY
        }
    }

    pub(super) fn pass(&self, bar_ns: f64) -> bool {
        self.delta() <= bar_ns
    }
}

/// The XDP program `name` the cases run: the daemon's pinned one for a production
/// program, the bench object's for a bench-only one.
pub(super) fn xdp<'a>(rig: &'a Rig, name: &str) -> Result<&'a Xdp> {
    rig.xdp(name)
}

/// One BPF_PROG_TEST_RUN; returns (return value, mean ns per repetition).
pub(super) fn test_run(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
    let r = prog
        .test_run(run_options(frame, repeat))
        .context("BPF_PROG_TEST_RUN")?;
    let ns = u32::try_from(r.duration.as_nanos()).unwrap_or(u32::MAX);
    Ok((r.return_value, ns))
}

fn run_options(frame: &[u8], repeat: u32) -> TestRunOptions<'_> {
    TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    }
}

/// [`test_run`] of the program called `name`, XDP or tc.
pub(super) fn run_named(rig: &Rig, name: &str, frame: &[u8], repeat: u32) -> Result<(u32, u32)> {
    if !super::cases::is_tc(name) {
        return test_run(xdp(rig, name)?, frame, repeat);
    }
    let r = rig
        .tc(name)?
        .test_run(run_options(frame, repeat))
        .context("BPF_PROG_TEST_RUN")?;
    let ns = u32::try_from(r.duration.as_nanos()).unwrap_or(u32::MAX);
    Ok((r.return_value, ns))
}

/// Every counter a case could move, summed over CPUs: the case's tenant's packets,
/// bytes and drops by reason in its direction, then every global slot's packets and
/// bytes.
pub(super) fn observe(ebpf: &Rig, lands: Lands) -> Result<Vec<u64>> {
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
pub(super) fn expected_change(lands: Lands, len: u64) -> Vec<u64> {
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
pub(super) fn moved(before: &[u64], after: &[u64]) -> Vec<u64> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| a.wrapping_sub(*b))
        .collect()
}

/// Runs the case once and checks its verdict and that it moved exactly the counters
/// its name promises.
pub(super) fn verify_path(ebpf: &Rig, case: &Case) -> Result<()> {
    let before = observe(ebpf, case.lands)?;
    let (ret, _) = run_named(ebpf, case.program, &case.frame, 1)?;
    let after = observe(ebpf, case.lands)?;
    ensure!(
        ret == case.verdict(),
        "{}: {} returned {ret}, expected {} ({})",
        case.name,
        case.program,
        case.verdict(),
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

pub(super) fn measure(
    ebpf: &Rig,
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
                let (r, ns) = answer_run(ebpf, facts, case, start)?;
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
        let r = run_named(ebpf, case.program, &case.frame, n)?;
        if let Some(run) = run {
            run.check(ebpf, facts, case, n)?;
            if timed {
                facts.new_flow_reps += u64::from(n);
                facts.new_flow_known += u64::from(n) - run.new.len() as u64;
            }
        }
        Ok(r)
    };
    // A tc case is timed against the tc baseline: an skb test run costs more than an
    // XDP one before any program runs.
    let base_name = if case.is_tc() {
        program::TC_PASS_BASELINE
    } else {
        program::XDP_PASS_BASELINE
    };
    let base = |frame: &[u8], n: u32| run_named(ebpf, base_name, frame, n);
    // Warm caches and the branch predictor; not recorded. A new-flow run touches a
    // new random filter word and pending slot per repetition: warm-up runs of full
    // size first touch the tables' pages (in a VM, each first touch of a guest page can
    // fault in the host), so the timed runs see the tables as a running node does.
    base(&case.frame, repeat.div_ceil(10))?;
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
            base_ns.push(base(&case.frame, repeat)?.1);
        }
        let before = observe(ebpf, case.lands)?;
        let (ret, ns) = run_case(repeat, timed)?;
        let got = moved(&before, &observe(ebpf, case.lands)?);
        // Every repetition, not just the last one the verdict shows, took the path.
        ensure!(
            ret == case.verdict() && got == want,
            "{}: while timing, returned {ret} and moved the counters by {got:?}; \
             expected {} and {want:?} ({} x {repeat})",
            case.name,
            case.verdict(),
            case.lands.describe()
        );
        case_ns.push(ns);
        if !base_first {
            base_ns.push(base(&case.frame, repeat)?.1);
        }
    }
    Ok(Figures::new(case_ns, base_ns, repeat))
}

pub(super) fn median(samples: &[u32]) -> f64 {
    crate::util::median(&samples.iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
}
