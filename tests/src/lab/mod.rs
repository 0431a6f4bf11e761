//! The namespace lab: test hosts in network namespaces this run creates, wired with veth
//! pairs, running real tools, and all of it removed on drop, also when a test panics.
//!
//! The rules it enforces, because the machine it runs on is somebody's server:
//! - Hosts live only in namespaces named `<prefix><run id>-<name>`, unique to the run.
//! - veth pairs are created directly inside their namespaces, so the root namespace
//!   never holds an interface of ours, not even for a moment.
//! - Addresses come only from 198.18.0.0/15 and 2001:db8::/32 (checked, not trusted).
//! - Every command runs with a deadline and is killed (with its process group) when it
//!   passes it; background processes are killed when their [`Proc`] guard drops, and
//!   whatever still runs in a namespace is killed when the [`Lab`] drops.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use warden_tests::lab::Lab;
//! let lab = Lab::new("wd")?;
//! let (client, server) = (lab.netns("client")?, lab.netns("server")?);
//! lab.link(&client, "eth0", &server, "eth0")?;
//! for (ns, addr) in [(&client, "198.18.0.1/24"), (&server, "198.18.0.2/24")] {
//!     ns.quiet_ipv6("eth0")?;
//!     ns.addr("eth0", addr)?;
//!     ns.up("eth0")?;
//! }
//! lab.settle()?;
//! client.exec(&["ping", "-c", "3", "-W", "1", "198.18.0.2"])?;
//! # Ok(()) }
//! ```
//!
//! This file holds the [`Lab`] itself (creation, settling, cleanup and leftovers); the
//! rest is in `netns` (a host and what runs in it), `proc` (the background process
//! guard), `address` (MACs, the test ranges, interface names) and `command` (bounded
//! command runs).

mod address;
mod command;
mod netns;
mod proc;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

pub use address::{check_test_address, format_mac, parse_mac};
pub use netns::Netns;
pub use proc::Proc;

use crate::wait::{eventually, give_up};
use address::check_ifname;
use command::{ip_cmd, run_checked};

/// Deadline of [`Netns::exec`] and of the lab's own `ip` commands.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// How long [`Lab::settle`] waits for links and addresses before it gives up.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// After links and addresses are ready, the MLD reports that joining their multicast
/// groups triggers are still being sent; with [`Netns::quiet_ipv6`] they are all out
/// within a few tens of milliseconds (measured on 6.18); the margin is for a loaded machine.
const SETTLE_GRACE: Duration = Duration::from_millis(500);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// One run's namespaces, bpffs and temporary directory. Dropping it kills every process
/// still running in its namespaces, deletes the namespaces (and with them their veths),
/// unmounts its bpffs and removes its directories.
#[derive(Debug)]
pub struct Lab {
    id: String,
    tempdir: PathBuf,
    rundir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    bpffs: Mutex<Option<PathBuf>>,
    seq: Arc<AtomicUsize>,
}

impl Lab {
    /// Starts a lab whose names begin with `prefix` (1-8 lowercase letters or digits)
    /// followed by a run id unique to this process and moment. Needs root.
    pub fn new(prefix: &str) -> Result<Lab> {
        ensure!(
            (1..=8).contains(&prefix.len())
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "lab prefix {prefix:?} must be 1-8 lowercase letters or digits"
        );
        ensure!(
            // SAFETY: geteuid has no preconditions and cannot fail.
            unsafe { libc::geteuid() } == 0,
            "the namespace lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
        );
        let id = unused_id(prefix)?;
        let lab = Lab {
            tempdir: std::env::temp_dir().join(&id),
            rundir: Path::new("/run").join(&id),
            id,
            namespaces: Mutex::new(Vec::new()),
            bpffs: Mutex::new(None),
            seq: Arc::new(AtomicUsize::new(0)),
        };
        fs::create_dir_all(&lab.tempdir)
            .with_context(|| format!("creating {}", lab.tempdir.display()))?;
        Ok(lab)
    }

    /// `<prefix><run id>`: the start of every name this lab creates.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A directory for state files and process logs, removed on drop.
    pub fn tempdir(&self) -> &Path {
        &self.tempdir
    }

    /// Full names of the namespaces created so far.
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.namespaces).clone()
    }

    /// Creates namespace `<prefix><run id>-<name>` with `lo` up.
    pub fn netns(&self, name: &str) -> Result<Netns> {
        ensure!(
            !name.is_empty()
                && name.len() <= 16
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "namespace name {name:?} must be 1-16 letters, digits, '-' or '_'"
        );
        let full = format!("{}-{name}", self.id);
        run_checked(ip_cmd(&["netns", "add", &full]), EXEC_TIMEOUT)?;
        lock(&self.namespaces).push(full.clone());
        let ns = Netns {
            name: full,
            logdir: self.tempdir.clone(),
            seq: Arc::clone(&self.seq),
        };
        ns.up("lo")?;
        Ok(ns)
    }

    /// A veth pair with end `if_a` in `a` and `if_b` in `b`, created directly inside
    /// the namespaces (never in the root namespace) and left down.
    pub fn link(&self, a: &Netns, if_a: &str, b: &Netns, if_b: &str) -> Result<()> {
        check_ifname(if_a)?;
        check_ifname(if_b)?;
        run_checked(
            ip_cmd(&[
                "link", "add", if_a, "netns", &a.name, "type", "veth", "peer", "name", if_b,
                "netns", &b.name,
            ]),
            EXEC_TIMEOUT,
        )?;
        Ok(())
    }

    /// A bpf filesystem for this lab at `/run/<prefix><run id>/bpf`, mounted on first
    /// call. `ip netns exec` mounts a fresh /sys, which hides /sys/fs/bpf from the
    /// daemon it starts; a mount under /run stays visible there.
    pub fn bpffs(&self) -> Result<PathBuf> {
        let mut bpffs = lock(&self.bpffs);
        if let Some(path) = bpffs.as_ref() {
            return Ok(path.clone());
        }
        let path = self.rundir.join("bpf");
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut mount = Command::new("mount");
        mount.args(["-t", "bpf", "bpf"]).arg(&path);
        run_checked(mount, EXEC_TIMEOUT)?;
        *bpffs = Some(path.clone());
        Ok(path)
    }

    /// Waits until every link with carrier has been reported up by the kernel and no
    /// address is tentative anywhere in the lab, then a short grace for the MLD reports
    /// that follow. Call it after the last `up`; fails after [`SETTLE_TIMEOUT`].
    pub fn settle(&self) -> Result<()> {
        eventually(SETTLE_TIMEOUT, || {
            let mut pending = Vec::new();
            for ns in self.namespaces() {
                let out = run_checked(ip_cmd(&["-n", &ns, "-j", "addr", "show"]), EXEC_TIMEOUT)?;
                pending.extend(unsettled(&ns, &out.stdout).map_err(give_up)?);
            }
            ensure!(pending.is_empty(), "{}", pending.join("; "));
            Ok(true)
        })
        .with_context(|| format!("lab {} did not settle", self.id))?;
        // Not synchronisation: the reports have no end to wait for (see SETTLE_GRACE).
        thread::sleep(SETTLE_GRACE);
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut *lock(&self.namespaces));
        for ns in &namespaces {
            // A namespace lives on as long as a process is in it, so empty it first.
            if let Err(err) = kill_all_in(ns) {
                eprintln!("lab cleanup: {err:#}");
            }
        }
        for ns in &namespaces {
            if let Err(err) = run_checked(ip_cmd(&["netns", "del", ns]), EXEC_TIMEOUT) {
                eprintln!("lab cleanup: {err:#}");
            }
        }
        if let Some(path) = lock(&self.bpffs).take() {
            let mut umount = Command::new("umount");
            umount.arg(&path);
            if run_checked(umount, EXEC_TIMEOUT).is_err() {
                // Busy (a process kept it open): detach it so it goes when released.
                let mut lazy = Command::new("umount");
                lazy.arg("-l").arg(&path);
                if let Err(err) = run_checked(lazy, EXEC_TIMEOUT) {
                    eprintln!("lab cleanup: {err:#}");
                }
            }
        }
        for dir in [&self.rundir, &self.tempdir] {
            if dir.exists() {
                if let Err(err) = fs::remove_dir_all(dir) {
                    eprintln!("lab cleanup: removing {}: {err}", dir.display());
                }
            }
        }
    }
}

/// Namespaces whose names start with `prefix` (e.g. a lab's [`Lab::id`]) that still exist.
pub fn leftover_namespaces(prefix: &str) -> Result<Vec<String>> {
    let out = run_checked(ip_cmd(&["netns", "list"]), EXEC_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Everything a lab with this prefix (or id) could have left behind: namespaces, mounts
/// under /run, and directories in /run and the temp dir. Empty after a clean drop.
pub fn leftovers(prefix: &str) -> Result<Vec<String>> {
    let mut found: Vec<String> = leftover_namespaces(prefix)?
        .into_iter()
        .map(|ns| format!("namespace {ns}"))
        .collect();
    let run_prefix = format!("/run/{prefix}");
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    found.extend(
        mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|target| target.starts_with(&run_prefix))
            .map(|target| format!("mount {target}")),
    );
    for dir in [PathBuf::from("/run"), std::env::temp_dir()] {
        let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(format!("directory {}", entry.path().display()));
            }
        }
    }
    Ok(found)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; cleanup must still run.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run id unused by any namespace or directory: six hex digits from pid, time and a
/// per-process counter.
fn unused_id(prefix: &str) -> Result<String> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    for _ in 0..8 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) as u64;
        // splitmix64's finaliser spreads the inputs over the few bits we keep.
        let mut x =
            nanos ^ (u64::from(std::process::id()) << 40) ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let id = format!("{prefix}{:06x}", x & 0xff_ffff);
        if leftovers(&id)?.is_empty() {
            return Ok(id);
        }
    }
    bail!("no unused lab id for prefix {prefix} after 8 tries")
}

fn pids_in(ns: &str) -> Result<Vec<u32>> {
    let out = run_checked(ip_cmd(&["netns", "pids", ns]), EXEC_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// SIGKILLs every process in a namespace until none is left (bounded).
fn kill_all_in(ns: &str) -> Result<()> {
    eventually(STOP_GRACE, || {
        let pids = pids_in(ns).map_err(give_up)?;
        for &pid in &pids {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        ensure!(
            pids.is_empty(),
            "processes {pids:?} in {ns} survived SIGKILL"
        );
        Ok(true)
    })
}

/// Links with carrier whose state the kernel has not reported yet, and tentative or
/// duplicate addresses, from `ip -j addr show` of one namespace.
fn unsettled(ns: &str, json: &[u8]) -> Result<Vec<String>> {
    let links: Value =
        serde_json::from_slice(json).with_context(|| format!("parsing `ip -j addr` of {ns}"))?;
    let mut pending = Vec::new();
    for link in links.as_array().map(Vec::as_slice).unwrap_or_default() {
        let ifname = link["ifname"].as_str().unwrap_or("?");
        let flags: Vec<&str> = link["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let carrier = flags.contains(&"UP") && flags.contains(&"LOWER_UP");
        // lo has no carrier state machine and reports UNKNOWN.
        if carrier && ifname != "lo" && link["operstate"].as_str() != Some("UP") {
            pending.push(format!("{ns}/{ifname} not yet operationally up"));
        }
        for addr in link["addr_info"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let local = addr["local"].as_str().unwrap_or("?");
            if addr["dadfailed"].as_bool() == Some(true) {
                bail!("{ns}/{ifname}: duplicate address detected for {local}");
            }
            if addr["tentative"].as_bool() == Some(true) {
                pending.push(format!("{ns}/{ifname} {local} tentative"));
            }
        }
    }
    Ok(pending)
}

// These tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN): `cargo xtask test
// --skip-privileged` leaves out everything under `lab::`.
#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;

    /// Two quiet hosts on one veth pair, IPv4 and IPv6, settled.
    fn two_hosts(lab: &Lab) -> Result<(Netns, Netns)> {
        let a = lab.netns("a")?;
        let b = lab.netns("b")?;
        lab.link(&a, "wdlab0", &b, "wdlab1")?;
        for (ns, ifname, v4, v6) in [
            (&a, "wdlab0", "198.18.0.1/24", "2001:db8::1/64"),
            (&b, "wdlab1", "198.18.0.2/24", "2001:db8::2/64"),
        ] {
            ns.quiet_ipv6(ifname)?;
            ns.addr(ifname, v4)?;
            ns.addr(ifname, v6)?;
            ns.up(ifname)?;
        }
        lab.settle()?;
        Ok((a, b))
    }

    fn root_links() -> String {
        let out = run_checked(ip_cmd(&["-o", "link", "show"]), EXEC_TIMEOUT).expect("ip link");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn lab_hosts_ping_over_veth_and_everything_goes_on_drop() -> Result<()> {
        let lab = Lab::new("wdt")?;
        let id = lab.id().to_owned();
        let (a, b) = two_hosts(&lab)?;
        let bpffs = lab.bpffs()?;
        let mounts = fs::read_to_string("/proc/mounts")?;
        assert!(mounts.contains(&format!("{} bpf", bpffs.display())));
        a.exec(&["ping", "-c", "3", "-W", "1", "198.18.0.2"])?;
        b.exec(&["ping", "-6", "-c", "3", "-W", "1", "2001:db8::1"])?;
        assert_eq!(a.mac("wdlab0")?.len(), 6);
        assert!(b.ifindex("wdlab1")? > 1);
        let links = root_links();
        assert!(
            !links.contains("wdlab0") && !links.contains("wdlab1"),
            "{links}"
        );
        assert_eq!(lab.namespaces().len(), 2);
        drop(lab);
        assert_eq!(leftovers(&id)?, Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn lab_cleans_up_when_the_test_panics() {
        let mut id = String::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let lab = Lab::new("wdt").expect("lab");
            id = lab.id().to_owned();
            let (a, _b) = two_hosts(&lab).expect("hosts");
            lab.bpffs().expect("bpffs");
            let _server = a.spawn(&["sleep", "600"]).expect("spawn");
            panic!("deliberate failure inside a lab");
        }));
        assert!(outcome.is_err());
        assert!(!id.is_empty());
        assert_eq!(leftovers(&id).expect("leftovers"), Vec::<String>::new());
    }

    #[test]
    fn lab_drop_kills_processes_left_running_in_its_namespaces() -> Result<()> {
        let lab = Lab::new("wdt")?;
        let id = lab.id().to_owned();
        let ns = lab.netns("a")?;
        let mut guard = ns.spawn(&["sleep", "600"])?;
        // Started outside any guard, as a daemon's child would be.
        ns.exec(&["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 &"])?;
        assert_eq!(ns.pids()?.len(), 2);
        drop(lab);
        assert!(
            guard.try_wait()?.is_some(),
            "guarded process survived the lab"
        );
        assert_eq!(leftovers(&id)?, Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn lab_proc_guard_kills_its_process_on_drop() -> Result<()> {
        let lab = Lab::new("wdt")?;
        let ns = lab.netns("a")?;
        let mut proc = ns.spawn(&["sh", "-c", "echo ready; exec sleep 600"])?;
        proc.wait_log("ready", Duration::from_secs(5))?;
        assert!(proc.try_wait()?.is_none());
        drop(proc);
        assert_eq!(ns.pids()?, Vec::<u32>::new());
        Ok(())
    }

    #[test]
    fn lab_quiet_veth_stays_silent_for_five_seconds_after_settle() -> Result<()> {
        let lab = Lab::new("wdt")?;
        let (_a, b) = two_hosts(&lab)?;
        // tcpdump prints "N packets captured" when timeout's SIGTERM stops it.
        let out = b.exec_unchecked(
            &["timeout", "5", "tcpdump", "-i", "wdlab1", "-n", "-l"],
            Duration::from_secs(15),
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("\n0 packets captured") || stderr.starts_with("0 packets captured"),
            "quiet link carried traffic:\n{stdout}\n{stderr}"
        );
        Ok(())
    }

    #[test]
    fn lab_exec_failure_names_the_command_and_its_output() -> Result<()> {
        let lab = Lab::new("wdt")?;
        let ns = lab.netns("a")?;
        let err = ns
            .exec(&["sh", "-c", "echo broken pipe dream >&2; exit 3"])
            .expect_err("exit 3 must fail");
        let text = format!("{err:#}");
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("broken pipe dream"), "{text}");
        let err = ns
            .exec_timeout(&["sleep", "10"], Duration::from_millis(300))
            .expect_err("deadline must kill it");
        assert!(format!("{err:#}").contains("did not finish"), "{err:#}");
        Ok(())
    }

    #[test]
    fn lab_refuses_addresses_outside_the_test_ranges() {
        for ok in [
            "198.18.0.1/24",
            "198.19.255.1",
            "2001:db8::1/64",
            "2001:db8:ffff::1",
        ] {
            assert!(check_test_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1/8",
            "198.20.0.1",
            "192.168.1.1/24",
            "2001:db9::1",
            "fe80::1",
        ] {
            assert!(check_test_address(bad).is_err(), "{bad}");
        }
        assert!(check_ifname("sixteen-chars-xx").is_err());
        assert_eq!(
            parse_mac("02:00:00:0a:0b:ff").ok(),
            Some([2, 0, 0, 10, 11, 255])
        );
        assert_eq!(format_mac([2, 0, 0, 10, 11, 255]), "02:00:00:0a:0b:ff");
    }
}
