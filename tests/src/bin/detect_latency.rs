//! `detect_latency [--runs N] [--timeout-s S] [--case NAME]... [--out FILE]`: how long
//! Warden takes from the start of an attack to its detection, measured end to end in
//! the standard lab (`warden_tests::topology`) with the real daemon and real tools.
//!
//! Per run: `t0` is taken just before the attack tool is spawned in its namespace; the
//! daemon's API is then polled every [`POLL_INTERVAL`] for the flag
//! (`GET /api/v1/flags?tenant=T&kind=K`) and, for cases whose action drops traffic, for
//! the drop counter (`warden_dropped_packets_total{tenant,direction,reason}` in
//! `/metrics`). A figure is the time from `t0` to the reply that first showed it, so it
//! errs late by at most one poll (each run records its largest gap between polls).
//! Each run starts clean: a fresh daemon over an empty state directory, attacked after
//! it has run for [`DAEMON_SETTLE`], whose programs and maps are removed again (`--detach-on-exit`, then `warden uninstall`) before the
//! next run. Every tool is bounded by `timeout` and stopped as soon as the run is over.
//!
//! Progress goes to stderr; the figures go to `--out` (or stdout) as JSON. A run that
//! sees nothing within the timeout records `null` and says so; medians count such runs
//! as later than any detection, so a median is `null` when most runs missed. The exit
//! status is non-zero only when the harness itself failed (the lab, the daemon, a tool).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_common::{direction, reason};
use warden_tests::{
    lab::{Netns, Proc},
    topology::{addr, warden_binary, StandardLab},
};

const USAGE: &str = "usage: detect_latency [--runs N] [--timeout-s SECONDS] [--case NAME]... \
                     [--out FILE]\ncases: syn_flood_out, udp_flood_in, scan";

/// Runs per case unless `--runs` says otherwise (the figure is their median).
const DEFAULT_RUNS: u32 = 5;
/// How long a run waits for the flag and the first drop unless `--timeout-s` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A poll of the API starts this long after the previous one started, or as soon as it
/// ended if its requests took longer (each joins the node's namespace on a new thread,
/// a few ms under a flood).
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A tool's `timeout` is the run's timeout plus this: it outlives the run, which stops
/// it, unless the harness dies, and then `timeout` still ends it.
const TOOL_MARGIN: Duration = Duration::from_secs(2);
/// How long the daemon runs before the attack starts.
const DAEMON_SETTLE: Duration = Duration::from_secs(1);
/// Inbound flood threshold of the bench policy, packets per second. hping3 reaches
/// about 150k pps on a bare veth pair of this 2-core machine and less through the
/// node's XDP program, so the default (100k pps) would measure the attack rate rather
/// than the pipeline. Outbound thresholds stay at their defaults (`syn_pps` 2000).
const FLOOD_IN_PPS: u64 = 20_000;
/// Victim port of the floods (nothing listens there).
const FLOOD_PORT: &str = "9";

/// Where an attack is launched from.
#[derive(Clone, Copy)]
enum Host {
    /// The outside host.
    Ext,
    /// Tenant globex's server (behind the node's lan0, gateway mode).
    Globex,
}

/// One measured case.
struct Case {
    /// `--case` name and the `case` field of the output.
    name: &'static str,
    /// The detection kind the flag must carry.
    kind: &'static str,
    /// The tenant the flag must name.
    tenant: &'static str,
    /// The action the policy sets for the kind.
    action: &'static str,
    /// Who attacks.
    from: Host,
    /// The attack without its `timeout` wrapper.
    tool: &'static [&'static str],
    /// Whether the tool ends on its own (a scan) rather than running until stopped (a
    /// flood, whose early end is a failure).
    ends_by_itself: bool,
    /// Direction (index into `direction::NAMES`) of the tenant's traffic the attack is.
    traffic: usize,
    /// For dropping actions: the (direction, reason) of the drop counter that must move.
    drop: Option<(usize, usize)>,
}

const CASES: [Case; 3] = [
    Case {
        name: "syn_flood_out",
        kind: "flood_out",
        tenant: "globex",
        action: "block",
        from: Host::Globex,
        tool: &[
            "hping3",
            "-S",
            "--flood",
            "-p",
            FLOOD_PORT,
            addr::EXT_WAN1_V4,
        ],
        ends_by_itself: false,
        traffic: direction::OUT as usize,
        drop: Some((direction::OUT as usize, reason::BLOCKED)),
    },
    Case {
        name: "udp_flood_in",
        kind: "flood_in",
        tenant: "acme",
        action: "block",
        from: Host::Ext,
        tool: &[
            "hping3",
            "--udp",
            "--flood",
            "-p",
            FLOOD_PORT,
            addr::ACME_V4,
        ],
        ends_by_itself: false,
        traffic: direction::IN as usize,
        drop: Some((direction::IN as usize, reason::BLACKHOLE)),
    },
    Case {
        name: "scan",
        kind: "scan",
        tenant: "globex",
        action: "flag",
        from: Host::Globex,
        // nmap's defaults (host discovery, top 1000 ports, -T3) but for name lookups:
        // the lab has no resolver, and -n keeps every packet on the lab's addresses.
        tool: &["nmap", "-sS", "-T3", "-n", addr::EXT_WAN1_V4],
        ends_by_itself: true,
        traffic: direction::OUT as usize,
        drop: None,
    },
];

/// Command-line options.
struct Options {
    runs: u32,
    timeout: Duration,
    cases: Vec<&'static Case>,
    out: Option<PathBuf>,
}

/// What one run saw.
#[derive(Default)]
struct RunFigures {
    /// `t0` to the reply that first listed the flag.
    flag: Option<Duration>,
    /// `t0` to the reply that first showed the drop counter above its value at `t0`.
    drop: Option<Duration>,
    /// The attack's packets the dataplane counted for the tenant per second of the run.
    attack_pps: f64,
    /// The largest gap between the starts of two consecutive polls.
    poll_gap: Duration,
    /// Polls made.
    polls: u32,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("detect_latency: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let opts = parse_args(std::env::args().skip(1))?;
    use_every_cpu();
    stop_on_signals()?;
    let warden = warden_binary()?;
    for tool in ["hping3", "nmap", "timeout"] {
        ensure!(
            on_path(tool),
            "{tool} is not installed (run `cargo xtask setup`)"
        );
    }
    let mut cases = Vec::new();
    for case in &opts.cases {
        cases.push(measure_case(case, &warden, &opts)?);
    }
    let report = json!({
        "method": "t0 just before the attack tool is spawned; the API polled every 10 ms \
                   (back to back when a poll takes longer) for the flag and the drop \
                   counter; a figure is t0 to the first reply that showed it; each run on \
                   a fresh daemon over empty state",
        "runs": opts.runs,
        "timeout_s": opts.timeout.as_secs_f64(),
        "poll_interval_ms": ms(POLL_INTERVAL),
        "flood_in_pps_threshold": FLOOD_IN_PPS,
        "warden": warden.display().to_string(),
        "cases": cases,
    });
    let text = serde_json::to_string_pretty(&report).context("encoding the report")? + "\n";
    match &opts.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut opts = Options {
        runs: DEFAULT_RUNS,
        timeout: DEFAULT_TIMEOUT,
        cases: Vec::new(),
        out: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--runs" => {
                let v = value("--runs")?;
                opts.runs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .with_context(|| format!("--runs {v:?} is not a number 1-100\n{USAGE}"))?;
            }
            "--timeout-s" => {
                let v = value("--timeout-s")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s| (0.1..=120.0).contains(s))
                    .with_context(|| {
                        format!("--timeout-s {v:?} is not a number of seconds 0.1-120\n{USAGE}")
                    })?;
                opts.timeout = Duration::from_secs_f64(secs);
            }
            "--case" => {
                let v = value("--case")?;
                let case = CASES
                    .iter()
                    .find(|c| c.name == v)
                    .with_context(|| format!("unknown case {v:?}\n{USAGE}"))?;
                opts.cases.push(case);
            }
            "--out" => opts.out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if opts.cases.is_empty() {
        opts.cases = CASES.iter().collect();
    }
    Ok(opts)
}

/// Lets this process and everything it starts run on every online CPU: a caller that
/// pinned itself for its own measurement (`cargo xtask bench`) would otherwise put the
/// daemon, the attack and the kernel's work for both on one CPU.
fn use_every_cpu() {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let online = usize::try_from(online)
        .unwrap_or(1)
        .clamp(1, libc::CPU_SETSIZE as usize);
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (bounds checked by libc).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..online {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set)
    };
    if rc != 0 {
        eprintln!(
            "detect_latency: could not widen the CPU affinity to {online} CPUs: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Set by SIGINT or SIGTERM: the harness stops at its next check, and its guards remove
/// the lab, the daemon and the tools (a signal's default action would leave them).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn stop_on_signals() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data, filled before use; the handler only stores
        // to an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("installing a handler for signal {signal}"));
        }
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; the lab, the daemon and the tools are being removed");
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Builds one lab for the case and measures `opts.runs` runs in it.
fn measure_case(case: &Case, warden: &Path, opts: &Options) -> Result<Value> {
    eprintln!("==> {}: building the lab", case.name);
    let lab = StandardLab::build("wdlat").context("building the standard lab")?;
    let policy = lab.write_policy_as("latency.yaml", &policy_text(&lab)?)?;
    let mut runs = Vec::new();
    for i in 1..=opts.runs {
        check_interrupted()?;
        let figures = measure_run(&lab, case, warden, &policy, opts.timeout)
            .with_context(|| format!("{} run {i}/{}", case.name, opts.runs))?;
        eprintln!(
            "{} run {i}/{}: {}",
            case.name,
            opts.runs,
            describe(case, &figures, opts.timeout)
        );
        runs.push(figures);
    }
    let flag: Vec<Option<f64>> = runs.iter().map(|r| r.flag.map(ms)).collect();
    let drop: Vec<Option<f64>> = runs.iter().map(|r| r.drop.map(ms)).collect();
    let median_flag = median(&flag);
    let median_drop = case.drop.and(median(&drop));
    eprintln!(
        "{}: median flag {}, median first drop {}",
        case.name,
        show_ms(median_flag, opts.timeout),
        match case.drop {
            Some(_) => show_ms(median_drop, opts.timeout),
            None => "- (action flag drops nothing)".into(),
        }
    );
    Ok(json!({
        "case": case.name,
        "kind": case.kind,
        "tenant": case.tenant,
        "action": case.action,
        "attack": format!("{} (from {})", case.tool.join(" "), host_name(case.from)),
        "drop_counter": case.drop.map(|d| drop_series(case, d)),
        "flag_ms": flag,
        "drop_ms": case.drop.map(|_| drop),
        "median_flag_ms": median_flag,
        "median_drop_ms": median_drop,
        "detected": runs.iter().filter(|r| r.flag.is_some()).count(),
        "attack_pps": runs.iter().map(|r| r.attack_pps.round()).collect::<Vec<_>>(),
        "max_poll_gap_ms": runs.iter().map(|r| ms(r.poll_gap)).fold(0.0, f64::max),
        "polls": runs.iter().map(|r| r.polls).collect::<Vec<_>>(),
    }))
}

/// The bench policy: the standard lab's daemon and interfaces, its three tenants
/// without rate plans (so nothing else drops), and each measured kind's action set.
fn policy_text(lab: &StandardLab) -> Result<String> {
    let mut text = lab.policy_header()?;
    text.push_str(&format!(
        "defaults:
  smtp: block
  detectors:
    scan:
      action: flag
    flood_out:
      action: block
    flood_in:
      action: block
      pps: {FLOOD_IN_PPS}
tenants:
"
    ));
    for (id, v4, v6) in [
        ("acme", addr::ACME_V4, addr::ACME_V6),
        ("globex", addr::GLOBEX_V4, addr::GLOBEX_V6),
        ("initech", addr::INITECH_V4, addr::INITECH_V6),
    ] {
        let _ = write!(
            text,
            "  - id: {id}\n    addresses:\n      - {v4}/32\n      - {v6}/128\n"
        );
    }
    Ok(text)
}

/// One run on a fresh daemon: start it, attack, poll, then remove everything the run
/// left (tool, daemon, pins, state) whatever happened.
fn measure_run(
    lab: &StandardLab,
    case: &Case,
    warden: &Path,
    policy: &Path,
    timeout: Duration,
) -> Result<RunFigures> {
    let state = lab.rundir()?.join("state");
    let result = attack_and_poll(lab, case, warden, policy, timeout);
    let cleanup = clean_up(lab, warden, &state);
    match (result, cleanup) {
        (Ok(figures), Ok(())) => Ok(figures),
        (Err(err), _) => Err(err),
        (Ok(_), Err(err)) => Err(err),
    }
}

fn attack_and_poll(
    lab: &StandardLab,
    case: &Case,
    warden: &Path,
    policy: &Path,
    timeout: Duration,
) -> Result<RunFigures> {
    let mut daemon = lab.start_daemon(warden, policy, &["--detach-on-exit"])?;
    // An attack meets a daemon that has been running, not one still starting up.
    std::thread::sleep(DAEMON_SETTLE);
    let flags_path = format!("/api/v1/flags?tenant={}&kind={}", case.tenant, case.kind);
    ensure!(
        flag_count(&lab.get(&flags_path)?)? == 0,
        "a fresh daemon already lists a {} flag for {}",
        case.kind,
        case.tenant
    );
    let before = lab.get("/metrics")?;
    let packets_before = packets(&before, case)?;
    let drops_before = match case.drop {
        Some(d) => Some(metric(
            &before,
            "warden_dropped_packets_total",
            &drop_labels(case, d),
        )?),
        None => None,
    };
    let ns = match case.from {
        Host::Ext => &lab.ext,
        Host::Globex => &lab.globex,
    };

    let t0 = Instant::now();
    let mut tool = spawn_tool(ns, case, timeout)?;
    let mut figures = RunFigures::default();
    let mut last_poll: Option<Instant> = None;
    loop {
        let polled = Instant::now();
        if let Some(last) = last_poll {
            figures.poll_gap = figures.poll_gap.max(polled - last);
        }
        last_poll = Some(polled);
        figures.polls += 1;
        if figures.flag.is_none() {
            let flags = lab
                .get(&flags_path)
                .map_err(|e| daemon_gone(&mut daemon, e))?;
            if flag_count(&flags)? > 0 {
                figures.flag = Some(t0.elapsed());
            }
        }
        if let (Some(d), Some(base), None) = (case.drop, drops_before, figures.drop) {
            let text = lab
                .get("/metrics")
                .map_err(|e| daemon_gone(&mut daemon, e))?;
            if metric(&text, "warden_dropped_packets_total", &drop_labels(case, d))? > base {
                figures.drop = Some(t0.elapsed());
            }
        }
        check_interrupted()?;
        let done = figures.flag.is_some() && (case.drop.is_none() || figures.drop.is_some());
        if done || t0.elapsed() >= timeout {
            break;
        }
        if let Some(status) = tool.try_wait()? {
            ensure!(
                case.ends_by_itself && status.success(),
                "`{}` exited early ({status}); log:\n{}",
                case.tool.join(" "),
                tool.log()
            );
        }
        let next = polled + POLL_INTERVAL;
        if let Some(pause) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(pause);
        }
    }
    let elapsed = t0.elapsed();
    let after = lab.get("/metrics")?;
    drop(tool);
    let sent = packets(&after, case)?.saturating_sub(packets_before);
    ensure!(
        sent > 0,
        "the attack never reached the dataplane: {}'s {} packet counter did not move",
        case.tenant,
        direction::NAMES[case.traffic]
    );
    figures.attack_pps = sent as f64 / elapsed.as_secs_f64();
    let log = daemon.log_path().to_path_buf();
    let status = daemon.stop().context("stopping the daemon")?;
    if !status.success() {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!("detect_latency: the daemon exited with {status} when stopped; log:\n{log}");
    }
    Ok(figures)
}

/// Starts the attack, bounded in time by `timeout`.
fn spawn_tool(ns: &Netns, case: &Case, run_timeout: Duration) -> Result<Proc> {
    let secs = (run_timeout + TOOL_MARGIN).as_secs().to_string();
    // SIGINT: hping3 prints its totals on it; nmap and hping3 both stop at once.
    let mut args = vec!["timeout", "-s", "INT", "-k", "2", secs.as_str()];
    args.extend_from_slice(case.tool);
    ns.spawn(&args)
        .with_context(|| format!("starting `{}` in {}", case.tool.join(" "), ns.name()))
}

/// When a poll fails, says whether the daemon died (with its log) rather than only
/// that the API did not answer.
fn daemon_gone(daemon: &mut Proc, err: anyhow::Error) -> anyhow::Error {
    match daemon.try_wait() {
        Ok(Some(status)) => err.context(format!(
            "the daemon exited ({status}); log:\n{}",
            daemon.log()
        )),
        _ => err,
    }
}

/// Removes what a run left: the pinned programs and maps (the daemon removed them on
/// exit unless it died) and its state directory (flags, ladder history), so the next
/// run starts as on a fresh machine.
fn clean_up(lab: &StandardLab, warden: &Path, state: &Path) -> Result<()> {
    let warden = warden.to_str().context("warden path is not UTF-8")?;
    let bpffs = lab.lab.bpffs()?;
    let bpffs = bpffs.to_str().context("bpffs path is not UTF-8")?;
    // Exit 5: nothing was pinned (the daemon detached on exit); anything else failed.
    let out = lab
        .node
        .exec_unchecked(
            &[warden, "uninstall", "--bpffs", bpffs],
            std::time::Duration::from_secs(30),
        )
        .context("removing the run's pins")?;
    if !matches!(out.status.code(), Some(0 | 5)) {
        bail!(
            "warden uninstall: {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if state.exists() {
        std::fs::remove_dir_all(state).with_context(|| format!("removing {}", state.display()))?;
    }
    Ok(())
}

/// The number of flags in a `GET /api/v1/flags` reply.
fn flag_count(body: &str) -> Result<usize> {
    let v: Value = serde_json::from_str(body)
        .with_context(|| format!("GET /api/v1/flags did not return JSON: {body}"))?;
    Ok(v.as_array()
        .with_context(|| format!("GET /api/v1/flags did not return a list: {body}"))?
        .len())
}

/// The tenant's packets in the attack's direction.
fn packets(metrics: &str, case: &Case) -> Result<u64> {
    let labels = [
        ("tenant", case.tenant),
        ("direction", direction::NAMES[case.traffic]),
    ];
    metric(metrics, "warden_tenant_packets_total", &labels)
}

fn drop_labels(case: &Case, (dir, why): (usize, usize)) -> [(&'static str, &str); 3] {
    [
        ("tenant", case.tenant),
        ("direction", direction::NAMES[dir]),
        ("reason", reason::NAMES[why]),
    ]
}

fn drop_series(case: &Case, d: (usize, usize)) -> String {
    let labels: Vec<String> = drop_labels(case, d)
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("warden_dropped_packets_total{{{}}}", labels.join(","))
}

/// The value of the series `name` whose labels include all of `labels` in a Prometheus
/// text exposition; a missing series is an error (the daemon exports every tenant's).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Result<u64> {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = series.strip_prefix(name) else {
            continue;
        };
        let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
            continue;
        };
        let have: Vec<&str> = inner.split(',').collect();
        if labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
        {
            return value
                .parse()
                .with_context(|| format!("bad value in `{line}`"));
        }
    }
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    bail!("/metrics has no {name} series with {}", wanted.join(", "))
}

/// The median, counting a missed run (`None`) as later than any detection: `None` when
/// the middle falls on a miss.
fn median(runs: &[Option<f64>]) -> Option<f64> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => Some((sorted[n / 2 - 1]? + sorted[n / 2]?) / 2.0),
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

fn show_ms(v: Option<f64>, timeout: Duration) -> String {
    match v {
        Some(v) => format!("{v:.1} ms"),
        None => format!("not detected within {} s", timeout.as_secs_f64()),
    }
}

fn describe(case: &Case, f: &RunFigures, timeout: Duration) -> String {
    let mut text = format!("flag {}", show_ms(f.flag.map(ms), timeout));
    if case.drop.is_some() {
        let drop = match f.drop {
            Some(d) => format!("{:.1} ms", ms(d)),
            None => format!("not seen within {} s", timeout.as_secs_f64()),
        };
        let _ = write!(text, ", first drop {drop}");
    }
    let _ = write!(
        text,
        " (attack {:.0} pps, {} polls, largest gap {:.1} ms)",
        f.attack_pps,
        f.polls,
        ms(f.poll_gap)
    );
    text
}

fn host_name(host: Host) -> &'static str {
    match host {
        Host::Ext => "the outside host",
        Host::Globex => "tenant globex",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_counts_missed_runs_as_later_than_every_detection() {
        assert_eq!(median(&[Some(30.0), None, Some(10.0)]), Some(30.0));
        assert_eq!(median(&[None, None, Some(10.0)]), None);
        assert_eq!(median(&[Some(10.0), Some(20.0), None, None]), None);
        assert_eq!(
            median(&[Some(10.0), Some(20.0), Some(40.0), None]),
            Some(30.0)
        );
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn metric_matches_every_wanted_label_whatever_their_order() {
        let text = "# HELP warden_dropped_packets_total x\n\
            warden_dropped_packets_total{tenant=\"acme\",direction=\"out\",reason=\"blocked\"} 7\n\
            warden_dropped_packets_total{reason=\"blocked\",direction=\"in\",tenant=\"acme\"} 9\n\
            warden_dropped_packets_total_x{tenant=\"acme\",direction=\"in\",reason=\"blocked\"} 1\n";
        let want = |dir| {
            [
                ("tenant", "acme"),
                ("direction", dir),
                ("reason", "blocked"),
            ]
        };
        assert_eq!(
            metric(text, "warden_dropped_packets_total", &want("out")).unwrap(),
            7
        );
        assert_eq!(
            metric(text, "warden_dropped_packets_total", &want("in")).unwrap(),
            9
        );
        assert!(metric(
            text,
            "warden_dropped_packets_total",
            &[("tenant", "globex")]
        )
        .is_err());
    }

    #[test]
    fn arguments_select_cases_and_reject_nonsense() {
        let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
        let o = args(&["--runs", "3", "--case", "scan", "--timeout-s", "2.5"]).unwrap();
        assert_eq!((o.runs, o.timeout), (3, Duration::from_millis(2500)));
        assert_eq!(o.cases.iter().map(|c| c.name).collect::<Vec<_>>(), ["scan"]);
        assert_eq!(args(&[]).unwrap().cases.len(), CASES.len());
        assert!(args(&["--runs", "0"]).is_err());
        assert!(args(&["--case", "ddos"]).is_err());
        assert!(args(&["--runs"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }
}
