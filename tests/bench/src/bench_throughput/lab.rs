//! The throughput lab: the generator and receiving namespaces, their veth pairs and the
//! counters read from them, removed on drop; and the calling thread moved into a
//! namespace, pinned to a CPU and given priority.

use std::{fs::File, os::fd::AsRawFd, path::Path, process::Command};

use anyhow::{ensure, Context as _, Result};

use super::{Rx, RX_MAC};
use crate::util;

/// The veth pair that holds the generator programs in the XDP dispatcher (module docs):
/// one end per program, both down.
pub(super) const HOLD_PAIR: (&str, &str) = ("hg", "hs");

/// The namespaces and veth pairs; removed on drop.
pub(super) struct Lab {
    pub(super) gen_ns: String,
    pub(super) rx_ns: String,
    pub(super) nft_table: String,
}

impl Lab {
    pub(super) fn create() -> Result<Lab> {
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
    pub(super) fn nft_count(&self) -> Result<u64> {
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
    pub(super) fn ethtool_queues(
        ns: &str,
        dev: &str,
        prefix: &str,
        suffix: &str,
    ) -> Result<Vec<u64>> {
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
    pub(super) fn counts(&self, rx: Rx) -> Result<(Vec<u64>, u64)> {
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
pub(super) fn enter_netns(ns: &str) -> Result<()> {
    let path = Path::new("/var/run/netns").join(ns);
    let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on an fd we own; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("entering {ns}"));
    }
    Ok(())
}

pub(super) fn pin_thread(cpu: usize) -> Result<()> {
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
pub(super) fn raise_priority() -> Result<()> {
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
pub(super) fn thread_cpu_seconds() -> Result<f64> {
    // SAFETY: getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

pub(super) fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    ensure!(i != 0, "no interface {name} in this namespace");
    Ok(i)
}
