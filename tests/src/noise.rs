//! Throughput bars on a shared machine.
//!
//! A policer or a shaper can only pass what reaches it. When this machine's two cores
//! are taken by a neighbour (CI runs on shared virtual machines), a sender stalls, a
//! 600 Mbit/s stream arrives in bursts with gaps, and a plan comes out short: the
//! measurement failed, not the plan. Noise never makes a plan pass *more* than it
//! allows, so an upper bar (never over plan + 5%) is judged on every attempt and fails
//! at once; a lower bar (at least so much of the plan) that comes short is measured
//! again, up to [`ATTEMPTS`] times, and every attempt is printed with the machine's
//! load while it ran (busy and stolen CPU from `/proc/stat`), so a report shows
//! whether a short figure came with a busy machine.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// Measurements of one case before a short lower bar is a failure.
pub const ATTEMPTS: u32 = 3;

/// Pause before measuring again: lets a neighbour's burst pass and the detectors'
/// windows (a plan held over for 5 s is a `bandwidth` detection) see a gap.
const PAUSE: Duration = Duration::from_secs(3);

/// What one attempt found.
#[derive(Debug)]
pub enum Verdict {
    /// Every bar met.
    Met,
    /// An upper bar met, a lower one not: the reason, measured again.
    Short(String),
}

/// CPU time of the whole machine, in clock ticks, from `/proc/stat`'s `cpu` line.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("empty /proc/stat")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().context("/proc/stat field"))
            .collect::<Result<_>>()?;
        anyhow::ensure!(v.len() >= 8, "short /proc/stat cpu line: {line}");
        // user nice system idle iowait irq softirq steal ...
        let (idle, steal) = (v[3] + v[4], v[7]);
        let total: u64 = v.iter().take(8).sum();
        Ok(CpuTimes {
            busy: total - idle - steal,
            steal,
            total,
        })
    }

    /// "busy B%, stolen S%" of all CPUs since `earlier`.
    pub fn since(&self, earlier: &CpuTimes) -> String {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        format!(
            "busy {:.0}%, stolen {:.1}% of {} CPUs",
            self.busy.saturating_sub(earlier.busy) as f64 / total * 100.0,
            self.steal.saturating_sub(earlier.steal) as f64 / total * 100.0,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )
    }
}

/// Runs `measure` until it meets its bars, at most [`ATTEMPTS`] times. `measure` prints
/// its figures and returns `Err` for what noise cannot explain (an upper bar exceeded,
/// nothing dropped): that fails at once. Returns the attempts it took.
pub fn until_met(what: &str, measure: impl FnMut(u32) -> Result<Verdict>) -> Result<u32> {
    until_met_pausing(what, PAUSE, measure)
}

fn until_met_pausing(
    what: &str,
    pause: Duration,
    mut measure: impl FnMut(u32) -> Result<Verdict>,
) -> Result<u32> {
    let mut short = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let before = CpuTimes::now()?;
        let verdict = measure(attempt)?;
        let load = CpuTimes::now()?.since(&before);
        match verdict {
            Verdict::Met => {
                if attempt > 1 {
                    eprintln!("{what}: met at attempt {attempt} of {ATTEMPTS} ({load})");
                }
                return Ok(attempt);
            }
            Verdict::Short(why) => {
                eprintln!("{what}: attempt {attempt} of {ATTEMPTS} short: {why} ({load})");
                short.push(format!("attempt {attempt}: {why} ({load})"));
                if attempt < ATTEMPTS {
                    std::thread::sleep(pause);
                }
            }
        }
    }
    bail!(
        "{what}: short in all {ATTEMPTS} attempts:\n{}",
        short.join("\n")
    )
}

/// Samples the transmitted bytes of interface `ifname` in netns `ns` (a name under
/// /run/netns) about once a second until `stop` is set (at most `max` samples), on a
/// thread of its own that joined the namespace: each reading is a read of
/// `/proc/thread-self/net/dev`, stamped right after it. (Running `ip` for each one
/// stamped the reading up to a good part of a second off on a busy machine, and a
/// second then read 17-19% over a shaper's plan the receiver saw it keep.)
pub fn sample_tx_bytes(
    ns: &str,
    ifname: &str,
    stop: Arc<AtomicBool>,
    max: usize,
) -> JoinHandle<Result<Vec<(Instant, u64)>>> {
    let (ns, ifname) = (ns.to_string(), ifname.to_string());
    std::thread::spawn(move || {
        crate::http::in_netns(&ns, move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) && samples.len() < max {
                let bytes = tx_bytes_here(&ifname)?;
                samples.push((Instant::now(), bytes));
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(samples)
        })
    })
}

/// The rates (bits/s) between consecutive samples of [`sample_tx_bytes`].
pub fn per_second(samples: &[(Instant, u64)]) -> Vec<f64> {
    samples
        .windows(2)
        .map(|w| {
            let secs = w[1].0.duration_since(w[0].0).as_secs_f64();
            w[1].1.saturating_sub(w[0].1) as f64 * 8.0 / secs
        })
        .collect()
}

/// The transmitted bytes of `ifname` in this thread's netns (`/proc/thread-self/net/dev`:
/// after the name, eight receive counters, then transmitted bytes).
fn tx_bytes_here(ifname: &str) -> Result<u64> {
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    let line = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(ifname)?.strip_prefix(':'))
        .with_context(|| format!("no {ifname} in /proc/net/dev"))?;
    line.split_whitespace()
        .nth(8)
        .context("short /proc/net/dev line")?
        .parse()
        .context("transmitted bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_measurement_is_repeated_and_a_third_short_one_fails() {
        let mut n = 0;
        let r = until_met_pausing("case", Duration::ZERO, |_| {
            n += 1;
            Ok(Verdict::Short(format!("short {n}")))
        });
        assert_eq!(n, ATTEMPTS);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("short in all 3 attempts") && e.contains("short 3"),
            "{e}"
        );
    }

    #[test]
    fn an_upper_bar_fails_at_once_and_a_met_bar_stops_measuring() {
        let mut n = 0;
        let r = until_met_pausing("case", Duration::ZERO, |_| {
            n += 1;
            anyhow::bail!("over plan + 5%")
        });
        assert_eq!((n, r.is_err()), (1, true));
        let mut n = 0;
        let r = until_met_pausing("case", Duration::ZERO, |a| {
            n += 1;
            Ok(if a == 2 {
                Verdict::Met
            } else {
                Verdict::Short("low".into())
            })
        });
        assert_eq!((n, r.unwrap()), (2, 2));
    }

    #[test]
    fn cpu_times_read_and_compare() {
        let a = CpuTimes::now().unwrap();
        let b = CpuTimes::now().unwrap();
        assert!(b.total >= a.total && b.since(&a).contains("CPUs"));
    }
}
