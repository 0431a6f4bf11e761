//! [`Netns`]: one test host, a network namespace of a [`Lab`](super::Lab), and what is
//! done inside it: commands, background processes, addresses, links, routes, sysctls.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;

use super::{
    address::{check_ifname, check_test_address, format_mac, parse_mac},
    command::{ip_cmd, run_bounded, run_checked, show},
    pids_in, Proc, EXEC_TIMEOUT,
};
use crate::wait::eventually;

/// A network namespace of a [`Lab`](super::Lab): a test host. Cheap to clone; valid while its lab lives.
#[derive(Clone, Debug)]
pub struct Netns {
    pub(super) name: String,
    pub(super) logdir: PathBuf,
    pub(super) seq: Arc<AtomicUsize>,
}

impl Netns {
    /// The namespace's full name (`<prefix><run id>-<name>`), as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> ARGS...`; returns stdout. The escape hatch for what has no method.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        let out = run_checked(ip_cmd(&full), EXEC_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a program inside the namespace to completion within [`EXEC_TIMEOUT`];
    /// fails on a non-zero exit with the command line and its output.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        self.exec_timeout(args, EXEC_TIMEOUT)
    }

    /// [`Netns::exec`] with its own deadline.
    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        run_checked(self.command(args)?, timeout)
    }

    /// Runs a program inside the namespace and returns its output whatever its exit
    /// status (for commands that are expected to fail); still killed at `timeout`.
    pub fn exec_unchecked(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        run_bounded(self.command(args)?, timeout)
    }

    /// Starts a background program inside the namespace (a server, the daemon) in its
    /// own process group, stdout and stderr into a log file in the lab's tempdir. The
    /// guard kills it on drop. For environment variables, start it through `env`.
    pub fn spawn(&self, args: &[&str]) -> Result<Proc> {
        let mut cmd = self.command(args)?;
        let shown = show(&cmd);
        let program = Path::new(args[0])
            .file_name()
            .map_or_else(|| "proc".into(), |n| n.to_string_lossy().into_owned());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let log = self
            .logdir
            .join(format!("{}-{program}-{seq}.log", self.name));
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let file2 = file.try_clone().context("duplicating a log file handle")?;
        cmd.stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting `{shown}`"))?;
        Ok(Proc { child, shown, log })
    }

    /// Adds an address (`198.18.1.1/24`, `2001:db8::1/64`). IPv6 addresses are added
    /// `nodad`, usable at once. Refuses addresses outside the test ranges.
    pub fn addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        check_test_address(cidr)?;
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// Sets a link up.
    pub fn up(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", ifname, "up"]).map(drop)
    }

    /// Sets a link down.
    pub fn down(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", ifname, "down"]).map(drop)
    }

    /// Adds a route to `dest` (a CIDR or `default`) via the gateway `via`.
    pub fn route(&self, dest: &str, via: &str) -> Result<()> {
        check_test_address(via)?;
        if dest != "default" {
            check_test_address(dest)?;
        }
        let family = if via.contains(':') { "-6" } else { "-4" };
        self.ip(&[family, "route", "add", dest, "via", via])
            .map(drop)
    }

    /// Adds an on-link route to `dest` through `ifname`.
    pub fn route_dev(&self, dest: &str, ifname: &str) -> Result<()> {
        if dest != "default" {
            check_test_address(dest)?;
        }
        self.ip(&["route", "add", dest, "dev", ifname]).map(drop)
    }

    /// Writes one sysctl inside the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.sysctls(&[(key, value)])
    }

    /// Writes several sysctls with one `sysctl -w`. Keys may use `/` separators, which
    /// is how per-interface keys are written when a name could contain a dot.
    pub fn sysctls(&self, pairs: &[(&str, &str)]) -> Result<()> {
        let assignments: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["sysctl", "-q", "-w"];
        args.extend(assignments.iter().map(String::as_str));
        self.exec(&args).map(drop)
    }

    /// Makes a link silent on IPv6 until something sends on purpose: no DAD probes, no
    /// router solicitations, no router advertisements accepted, and MLD's unsolicited
    /// report repeats squeezed into a few milliseconds after the link comes up
    /// (joining a group always sends reports; no sysctl stops that, only shortens the
    /// repeats). Call it before [`Netns::up`], then [`Lab::settle`](super::Lab::settle): from then on the
    /// link carries only the traffic a test makes (verified with tcpdump, 5 s, 6.18).
    pub fn quiet_ipv6(&self, ifname: &str) -> Result<()> {
        check_ifname(ifname)?;
        let dev = |key: &str| format!("net/ipv6/conf/{ifname}/{key}");
        let keys = [
            (dev("accept_dad"), "0"),
            (dev("dad_transmits"), "0"),
            (dev("router_solicitations"), "0"),
            (dev("accept_ra"), "0"),
            (dev("mldv1_unsolicited_report_interval"), "1"),
            (dev("mldv2_unsolicited_report_interval"), "1"),
            // DAD runs when either the device or `all` asks for it.
            ("net/ipv6/conf/all/accept_dad".into(), "0"),
        ];
        let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.sysctls(&pairs)
    }

    /// Turns IPv6 off on a link: for tests that count IPv4 frames and want no IPv6
    /// at all, MLD included.
    pub fn disable_ipv6(&self, ifname: &str) -> Result<()> {
        check_ifname(ifname)?;
        self.sysctl(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "1")
    }

    /// A permanent neighbour entry (ARP or ND): `ip` reaches `mac` on `ifname` without
    /// resolution traffic.
    pub fn neigh_permanent(&self, ifname: &str, ip: &str, mac: [u8; 6]) -> Result<()> {
        check_test_address(ip)?;
        let mac = format_mac(mac);
        self.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            &mac,
            "dev",
            ifname,
            "nud",
            "permanent",
        ])
        .map(drop)
    }

    /// Sets a link's MAC address (for tests that need known addresses).
    pub fn set_mac(&self, ifname: &str, mac: [u8; 6]) -> Result<()> {
        self.ip(&["link", "set", "dev", ifname, "address", &format_mac(mac)])
            .map(drop)
    }

    /// A link's MAC address.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let link = self.link_json(ifname)?;
        let mac = link["address"]
            .as_str()
            .with_context(|| format!("{}: {ifname} has no MAC address", self.name))?;
        parse_mac(mac)
    }

    /// A link's interface index inside the namespace (what XDP/tcx attach to).
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let link = self.link_json(ifname)?;
        link["ifindex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .with_context(|| format!("{}: {ifname} has no ifindex", self.name))
    }

    /// Process ids running inside the namespace.
    pub fn pids(&self) -> Result<Vec<u32>> {
        pids_in(&self.name)
    }

    /// Waits until something in the namespace listens on TCP `port`.
    pub fn wait_tcp_listen(&self, port: u16, timeout: Duration) -> Result<()> {
        self.wait_listen("-t", port, timeout)
            .with_context(|| format!("{}: nothing listens on TCP port {port}", self.name))
    }

    /// Waits until a UDP socket in the namespace is bound to `port`.
    pub fn wait_udp_listen(&self, port: u16, timeout: Duration) -> Result<()> {
        self.wait_listen("-u", port, timeout)
            .with_context(|| format!("{}: nothing is bound to UDP port {port}", self.name))
    }

    /// Waits until `ss -l` with `proto` (`-t`, `-u`) lists a socket on local `port`.
    fn wait_listen(&self, proto: &str, port: u16, timeout: Duration) -> Result<()> {
        let filter = format!("sport = :{port}");
        eventually(timeout, || {
            let out = self.exec(&["ss", "-H", "-l", proto, "-n", &filter])?;
            Ok(!out.stdout.trim_ascii().is_empty())
        })
    }

    fn link_json(&self, ifname: &str) -> Result<Value> {
        let out = self.ip(&["-j", "link", "show", "dev", ifname])?;
        let links: Value = serde_json::from_str(&out)
            .with_context(|| format!("parsing `ip -j link show dev {ifname}`: {out}"))?;
        links
            .get(0)
            .cloned()
            .with_context(|| format!("{}: no link {ifname}", self.name))
    }

    fn command(&self, args: &[&str]) -> Result<Command> {
        ensure!(!args.is_empty(), "no program given to run in {}", self.name);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        Ok(cmd)
    }
}
