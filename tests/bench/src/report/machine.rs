//! The machine the figures were measured on (read from `/proc`, `uname` and git when
//! the document is generated), and the document's opening sections: machine and method.

use std::{
    fs,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::fields::table;
use crate::util;

/// The machine the document describes.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cpus: usize,
    /// Whether the CPU flags say a hypervisor runs this machine.
    pub virtual_machine: bool,
    /// `uname`: system, release, version, machine.
    pub kernel: String,
    pub memory_kib: Option<u64>,
    /// When the document was generated (UTC).
    pub generated_at: String,
    /// When `report.json` was last written (UTC), if known.
    pub measured_at: Option<String>,
    /// `git rev-parse HEAD` of the checkout, with a note on uncommitted changes.
    pub commit: String,
}

impl Machine {
    /// Reads this machine: `/proc/cpuinfo`, `/proc/meminfo`, `uname`, git, the clock.
    pub fn read(measured_at: Option<String>) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        let memory_kib = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Machine {
            cpu_model: field("model name").unwrap_or_else(|| "unknown (no /proc/cpuinfo)".into()),
            cpus,
            virtual_machine: field("flags")
                .is_some_and(|f| f.split(' ').any(|x| x == "hypervisor")),
            kernel: uname(),
            memory_kib,
            generated_at: utc(now),
            measured_at,
            commit: git_commit(),
        }
    }
}

pub(super) fn uname() -> String {
    // SAFETY: uname fills the struct we own; its fields are NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {} {}",
        s(&u.sysname),
        s(&u.release),
        s(&u.version),
        s(&u.machine)
    )
}

pub(super) fn git_commit() -> String {
    let root = util::workspace_root();
    let git = |args: &[&str]| {
        util::capture(Command::new("git").arg("-C").arg(&root).args(args))
            .map(|s| s.trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        // The bench's own outputs (this document, its charts) are not the code measured.
        Ok(head) => match git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!BENCHMARKS.md",
            ":!docs/bench",
        ]) {
            Ok(s) if s.is_empty() => head,
            Ok(_) => format!("{head} (with uncommitted changes)"),
            Err(_) => head,
        },
        Err(e) => format!("unknown ({e:#})"),
    }
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC`, with the `time` crate (beyond
/// the year 9999, which it does not write: `@SECONDS`).
pub fn utc(secs: u64) -> String {
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day] [hour]:[minute]:[second] UTC",
    )
    .expect("a valid format description");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

pub(super) fn machine_section(report: &serde_json::Map<String, Value>, m: &Machine) -> String {
    let mut rows = vec![
        vec!["CPU".into(), m.cpu_model.clone()],
        vec![
            "Logical CPUs".into(),
            format!(
                "{}{}",
                m.cpus,
                if m.virtual_machine {
                    " (virtual machine: the CPU flags name a hypervisor)"
                } else {
                    ""
                }
            ),
        ],
        vec![
            "Memory".into(),
            m.memory_kib.map_or_else(
                || "unknown (no /proc/meminfo)".into(),
                |k| format!("{:.1} GiB", k as f64 / (1024.0 * 1024.0)),
            ),
        ],
        vec!["Kernel (uname)".into(), m.kernel.clone()],
    ];
    if let Some(k) = report.get("kernel").and_then(Value::as_str) {
        if !m.kernel.contains(k) {
            rows.push(vec![
                "Kernel of the measurement".into(),
                format!("{k} (differs from the one generating this document)"),
            ]);
        }
    }
    if let Some(cpu) = report.get("cpu").and_then(Value::as_u64) {
        rows.push(vec![
            "Micro-benchmark CPU".into(),
            format!("{cpu} (the kernel micro-benchmarks run pinned to it)"),
        ]);
    }
    rows.push(vec!["Git commit".into(), m.commit.clone()]);
    rows.push(vec![
        "report.json written".into(),
        m.measured_at.clone().unwrap_or_else(|| "unknown".into()),
    ]);
    rows.push(vec!["Document generated".into(), m.generated_at.clone()]);
    format!(
        "\n## Machine\n\nRead from `/proc/cpuinfo`, `/proc/meminfo` and `uname` when this \
         document was generated.\n\n{}",
        table(&["what", "value"], rows)
    )
}

pub(super) fn method_section(report: &serde_json::Map<String, Value>) -> String {
    // A part's own account of its method, as its section of the report states it.
    let stated = |key: &str| match report.get(key).filter(|v| !v.is_null()) {
        None => " Not measured in this run.".to_string(),
        Some(v) => v
            .get("method")
            .and_then(Value::as_str)
            .map(|m| {
                let stop = if m.ends_with('.') { "" } else { "." };
                format!(" As the report states it: {m}{stop}")
            })
            .unwrap_or_default(),
    };
    format!(
        "\n## Method\n\n\
         - **Per-packet cost (kernel micro-benchmarks).** Each enforcement path runs through \
         `BPF_PROG_TEST_RUN` on one frame, `repeat` times per call; the kernel reports the \
         mean time per repetition. Every case is measured in interleaved pairs with the \
         `XDP_PASS` baseline program in the same run (ABBA order: baseline then case, case \
         then baseline, ...) on one pinned CPU, so drift in clock speed or background load \
         hits both sides alike. A case's pairs are taken in rounds over all the cases \
         (`rounds` in the report), so a noisy stretch of a shared machine touches every \
         case a little rather than a few cases wholly. Each case is run once and checked (verdict and the counter \
         it must move) before it is timed, and every timed run is checked again. Reported: \
         the median of each side, and the cost as the median of the per-pair differences. \
         The programs and maps are those a release `warden run` loaded, attached and \
         pinned: the bench writes the 100,000-tenant policy files, starts the daemon on \
         one in a namespace lab, switches policy by SIGHUP, and times the daemon's pinned \
         programs; its bench-only programs (the baselines, the new-flow and \
         detection-event generators) run on the daemon's pinned maps. The metered and the \
         blackholed datagram are also timed through `bpftool prog run` on the program a \
         second release `warden run` (two tenants) attaches, run as an operator would, \
         and reported next to their cases: the same program (the kernel's tag and size, \
         compared), the same thresholds and kind of frame, started, configured and \
         blackholed by the daemon the same way; what differs is the size of the \
         policy.{}\n\
         - **Throughput on live frames.** Frames sent over a veth pair into the programs, \
         in millions of packets per second, against baselines measured in the same run on \
         the same pair.{}\n\
         - **Detection latency.** Namespace labs with the real daemon and real attack tools \
         (hping3, nmap): each run starts a fresh daemon over empty state, takes `t0` just \
         before the attack tool starts, and polls the daemon's API for the flag and the \
         drop counter. A figure is `t0` to the first reply that showed it (late by at most \
         one poll); the median over the runs counts, a missed run counting as later than \
         any detection.{}\n\
         - **`/metrics`.** Wall-clock time per run, median.{}\n\
         - **Scale.** Policy apply, counter reads and daemon memory with large policies, \
         through the daemon's own code.{}\n\
         - **Console.** The security team's page in headless Chromium, timed in the page \
         from a click or a filter change to the frame that shows the new rows.{}\n",
        if report.get("cases").is_some_and(|c| !c.is_null()) {
            ""
        } else {
            " Not measured in this run."
        },
        stated("throughput"),
        stated("detection_latency"),
        stated("metrics_render"),
        stated("scale"),
        stated("console"),
    )
}
