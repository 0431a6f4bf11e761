//! The standard lab: the topology of `configs/demo.yaml`, used by `cargo xtask demo`
//! and the Tier 2 tests.
//!
//! ```text
//!   ext --eth0====wan0-- node --lan0====eth0-- globex   (gateway mode on lan0)
//!       --eth1====wan1--      --lan1====eth0-- initech  (gateway mode on lan1)
//! ```
//! `node` runs the daemon. It is tenant acme's own server (host mode on `wan0`, where
//! acme's addresses live) and the gateway in front of globex and initech, whose
//! traffic leaves through `wan1`, which Warden does not watch, so nothing is counted
//! twice. Every link has permanent neighbour entries and quiet IPv6, so after
//! [`Lab::settle`] the links carry only the traffic a test makes.
//!
//! With a WAN delay ([`LabOptions::wan_delay_ms`]) the two WAN links run through a
//! `wan` namespace instead (`wan0==w0a-[delayline]-w0b==eth0`, and wan1/w1a/w1b/eth1),
//! whose [`delayline`] processes forward every frame unchanged after the delay.
//!
//! Built with [`StandardLab::build_outside`], the outside host also stands in for the
//! Internet beyond the node (see [`outside`]): tens of thousands of live hosts that
//! answer like real ones (a listener answers, a closed port refuses), and as many that
//! do not exist.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    delayline,
    lab::{Lab, Netns, Proc},
};

/// Addresses of the standard lab (198.18.0.0/15 and 2001:db8::/32 only).
pub mod addr {
    /// acme's server (the node itself) on wan0.
    pub const ACME_V4: &str = "198.18.1.1";
    pub const ACME_V6: &str = "2001:db8:1::1";
    /// The outside host's address on acme's link.
    pub const EXT_WAN0_V4: &str = "198.18.1.254";
    pub const EXT_WAN0_V6: &str = "2001:db8:1::fe";
    /// The node's and the outside host's transit addresses (wan1 / eth1).
    pub const NODE_WAN1_V4: &str = "198.18.3.1";
    pub const NODE_WAN1_V6: &str = "2001:db8:3::1";
    pub const EXT_WAN1_V4: &str = "198.18.3.254";
    pub const EXT_WAN1_V6: &str = "2001:db8:3::fe";
    /// The provider's console on the outside host: the policy's management prefix.
    pub const CONSOLE_V4: &str = "198.18.3.253";
    pub const CONSOLE_V6: &str = "2001:db8:3::fd";
    /// globex's server behind lan0, and the node's address there.
    pub const GLOBEX_V4: &str = "198.18.2.10";
    pub const GLOBEX_V6: &str = "2001:db8:2:1::10";
    pub const NODE_LAN0_V4: &str = "198.18.2.1";
    pub const NODE_LAN0_V6: &str = "2001:db8:2:1::1";
    /// initech's server behind lan1, and the node's address there.
    pub const INITECH_V4: &str = "198.18.2.130";
    pub const INITECH_V6: &str = "2001:db8:2:2::10";
    pub const NODE_LAN1_V4: &str = "198.18.2.129";
    pub const NODE_LAN1_V6: &str = "2001:db8:2:2::1";
}

/// The outside network of [`StandardLab::build_outside`], reached through the node's `wan1`
/// (so from globex and initech, the gateway-mode tenants).
///
/// - *Live* hosts: every address of [`LIVE_V4`] and [`LIVE_V6`] is local to the `ext`
///   namespace (a `local` route on its loopback, "AnyIP"), so a server listening on a
///   wildcard address in `ext` answers on all of them at once, a closed port is refused
///   (TCP RST, ICMP port unreachable) by `ext`'s own stack, and clients in `ext` can bind
///   any of them as their source (for [`LIVE_V6`], `ext` allows non-local binds).
/// - *Dark* hosts: [`DARK_V4`] and [`DARK_V6`] are routed to `ext`, which discards them
///   (a `blackhole` route): probes there get no answer at all, like addresses nobody uses.
///
/// `ext` answers ICMP errors without its usual rate limit, so a closed UDP port always
/// says so (as most hosts on the Internet would, each being a different host).
pub mod outside {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Live outside hosts (IPv4): 198.19.0.1 to 198.19.127.254.
    pub const LIVE_V4: &str = "198.19.0.0/17";
    /// Hosts that do not exist (IPv4): 198.19.128.0 to 198.19.255.255.
    pub const DARK_V4: &str = "198.19.128.0/17";
    /// Live outside hosts (IPv6).
    pub const LIVE_V6: &str = "2001:db8:100::/48";
    /// Hosts that do not exist (IPv6).
    pub const DARK_V6: &str = "2001:db8:101::/48";
    /// What the node routes to `ext` (both halves of each family).
    pub const ROUTED_V4: &str = "198.19.0.0/16";
    pub const ROUTED_V6: &str = "2001:db8:100::/47";

    /// Number of live (and of dark) IPv4 hosts.
    pub const HOSTS_V4: u32 = (1 << 15) - 2;

    /// The `i`-th live IPv4 host (`1..=HOSTS_V4`): 198.19.0.1, 198.19.0.2, ...
    pub fn live_v4(i: u32) -> Ipv4Addr {
        assert!((1..=HOSTS_V4).contains(&i), "live host {i} out of range");
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i)
    }

    /// The `i`-th dark IPv4 host (`1..=HOSTS_V4`): 198.19.128.1, 198.19.128.2, ...
    pub fn dark_v4(i: u32) -> Ipv4Addr {
        assert!((1..=HOSTS_V4).contains(&i), "dark host {i} out of range");
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + i)
    }

    /// The `i`-th live IPv6 host: 2001:db8:100::i.
    pub fn live_v6(i: u32) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, (i >> 16) as u16, i as u16)
    }

    /// The `i`-th dark IPv6 host: 2001:db8:101::i.
    pub fn dark_v6(i: u32) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x101, 0, 0, 0, (i >> 16) as u16, i as u16)
    }

    /// `n` consecutive live IPv4 hosts from the `first`-th, formatted.
    pub fn live_v4_range(first: u32, n: u32) -> Vec<String> {
        (first..first + n).map(|i| live_v4(i).to_string()).collect()
    }
}

/// The policy the standard lab runs, with its run directories still generic.
pub const DEMO_POLICY: &str = include_str!("../../configs/demo.yaml");

/// Where the daemon listens inside the node namespace (as in `configs/demo.yaml`).
pub const API: &str = "127.0.0.1:9477";

/// The demo policy's run directory; replaced by the lab's own per run.
const POLICY_RUNDIR: &str = "/run/warden-demo";

/// Tokens of the lab's token file, one per role (lab use only).
pub mod token {
    pub const VIEWER: &str = "lab-viewer-token";
    pub const OPERATOR: &str = "lab-operator-token";
    pub const ADMIN: &str = "lab-admin-token";
}

/// The built lab. Dropping it removes everything (namespaces, processes, mounts).
pub struct StandardLab {
    pub node: Netns,
    pub ext: Netns,
    pub globex: Netns,
    pub initech: Netns,
    /// The namespace of the WAN delay lines, if the lab has a WAN delay.
    pub wan: Option<Netns>,
    /// The delay lines' guards: stopped before the lab goes.
    _delaylines: Vec<Proc>,
    /// Last field: dropped after the namespace handles.
    pub lab: Lab,
}

/// How [`StandardLab::build_with`] builds the lab.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// One-way delay of the links node wan0 <-> ext eth0 and node wan1 <-> ext eth1, in
    /// milliseconds; `None` links them directly (microsecond round trips).
    pub wan_delay_ms: Option<u32>,
}

impl LabOptions {
    fn wan_delay(&self) -> Option<Duration> {
        self.wan_delay_ms.map(|ms| Duration::from_millis(ms.into()))
    }
}

struct Link<'a> {
    a: &'a Netns,
    if_a: &'a str,
    addrs_a: [&'a str; 2],
    b: &'a Netns,
    if_b: &'a str,
    addrs_b: [&'a str; 2],
    prefix: [u8; 2],
    /// The `wan` namespace's two ends (a's side, b's side) when the link is delayed.
    wire: Option<[&'a str; 2]>,
}

/// Routes [`outside`] from the node to `ext` and makes `ext` answer for it.
fn build_outside(node: &Netns, ext: &Netns) -> Result<()> {
    use crate::lab::check_test_address;
    node.route(outside::ROUTED_V4, addr::EXT_WAN1_V4)?;
    node.route(outside::ROUTED_V6, addr::EXT_WAN1_V6)?;
    for (family, kind, net) in [
        ("-4", "local", outside::LIVE_V4),
        ("-6", "local", outside::LIVE_V6),
        ("-4", "blackhole", outside::DARK_V4),
        ("-6", "blackhole", outside::DARK_V6),
    ] {
        check_test_address(net)?;
        let mut args = vec![family, "route", "add", kind, net];
        if kind == "local" {
            args.extend_from_slice(&["dev", "lo"]);
        }
        ext.ip(&args)?;
    }
    ext.sysctls(&[
        // Binding a source address that only a `local` route makes ours.
        ("net/ipv6/ip_nonlocal_bind", "1"),
        // Every closed port answers: no per-destination ICMP rate limit, and a global
        // one far above what a test sends.
        ("net/ipv4/icmp_ratelimit", "0"),
        ("net/ipv4/icmp_msgs_per_sec", "1000000"),
        ("net/ipv4/icmp_msgs_burst", "100000"),
        ("net/ipv6/icmp/ratelimit", "0"),
    ])?;
    Ok(())
}

impl StandardLab {
    /// Builds the topology and waits until it is quiet.
    pub fn build(prefix: &str) -> Result<Self> {
        Self::build_with(prefix, LabOptions::default())
    }

    /// [`StandardLab::build`] with options. A WAN delay needs the `delayline` program
    /// (see [`delayline::binary`]).
    pub fn build_with(prefix: &str, opts: LabOptions) -> Result<Self> {
        Self::build_lab(prefix, opts.wan_delay(), false)
    }

    /// [`StandardLab::build`] with a one-way WAN delay finer than a millisecond's steps
    /// (0.5 ms each way: a 1 ms round trip).
    pub fn build_with_delay(prefix: &str, one_way: Duration) -> Result<Self> {
        Self::build_lab(prefix, Some(one_way), false)
    }

    /// [`StandardLab::build`] plus the outside network of [`outside`] behind the node's
    /// `wan1`: live and dark hosts by the tens of thousands.
    pub fn build_outside(prefix: &str) -> Result<Self> {
        Self::build_outside_with(prefix, LabOptions::default())
    }

    /// [`StandardLab::build_outside`] with options (a WAN delay puts the outside network
    /// that far away too).
    pub fn build_outside_with(prefix: &str, opts: LabOptions) -> Result<Self> {
        Self::build_lab(prefix, opts.wan_delay(), true)
    }

    fn build_lab(prefix: &str, wan_delay: Option<Duration>, outside: bool) -> Result<Self> {
        let lab = Lab::new(prefix)?;
        let node = lab.netns("node")?;
        let ext = lab.netns("ext")?;
        let globex = lab.netns("globex")?;
        let initech = lab.netns("initech")?;
        let wan = match wan_delay {
            Some(_) => Some(lab.netns("wan")?),
            None => None,
        };
        use addr::*;
        let links = [
            Link {
                a: &node,
                if_a: "wan0",
                addrs_a: [ACME_V4, ACME_V6],
                b: &ext,
                if_b: "eth0",
                addrs_b: [EXT_WAN0_V4, EXT_WAN0_V6],
                prefix: [24, 64],
                wire: Some(["w0a", "w0b"]),
            },
            Link {
                a: &node,
                if_a: "wan1",
                addrs_a: [NODE_WAN1_V4, NODE_WAN1_V6],
                b: &ext,
                if_b: "eth1",
                addrs_b: [EXT_WAN1_V4, EXT_WAN1_V6],
                prefix: [24, 64],
                wire: Some(["w1a", "w1b"]),
            },
            Link {
                a: &node,
                if_a: "lan0",
                addrs_a: [NODE_LAN0_V4, NODE_LAN0_V6],
                b: &globex,
                if_b: "eth0",
                addrs_b: [GLOBEX_V4, GLOBEX_V6],
                prefix: [25, 64],
                wire: None,
            },
            Link {
                a: &node,
                if_a: "lan1",
                addrs_a: [NODE_LAN1_V4, NODE_LAN1_V6],
                b: &initech,
                if_b: "eth0",
                addrs_b: [INITECH_V4, INITECH_V6],
                prefix: [25, 64],
                wire: None,
            },
        ];
        for l in &links {
            match (&wan, l.wire) {
                (Some(wan), Some([w_a, w_b])) => {
                    lab.link(l.a, l.if_a, wan, w_a)?;
                    lab.link(wan, w_b, l.b, l.if_b)?;
                    delayline::prepare_wire(wan, w_a)?;
                    delayline::prepare_wire(wan, w_b)?;
                    delayline::no_segmentation_offload(l.a, l.if_a)?;
                    delayline::no_segmentation_offload(l.b, l.if_b)?;
                }
                _ => lab.link(l.a, l.if_a, l.b, l.if_b)?,
            }
            for (ns, ifname, addrs) in [(l.a, l.if_a, l.addrs_a), (l.b, l.if_b, l.addrs_b)] {
                ns.quiet_ipv6(ifname)?;
                ns.addr(ifname, &format!("{}/{}", addrs[0], l.prefix[0]))?;
                ns.addr(ifname, &format!("{}/{}", addrs[1], l.prefix[1]))?;
            }
            let (mac_a, mac_b) = (l.a.mac(l.if_a)?, l.b.mac(l.if_b)?);
            for i in 0..2 {
                l.a.neigh_permanent(l.if_a, l.addrs_b[i], mac_b)?;
                l.b.neigh_permanent(l.if_b, l.addrs_a[i], mac_a)?;
            }
            l.a.up(l.if_a)?;
            l.b.up(l.if_b)?;
        }
        node.sysctls(&[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv6/conf/all/forwarding", "1"),
        ])?;
        for (ns, v4, v6) in [
            (&globex, NODE_LAN0_V4, NODE_LAN0_V6),
            (&initech, NODE_LAN1_V4, NODE_LAN1_V6),
        ] {
            ns.route("default", v4)?;
            ns.route("default", v6)?;
        }
        // The console: a second address on the outside host's transit link.
        ext.addr("eth1", &format!("{CONSOLE_V4}/24"))?;
        ext.addr("eth1", &format!("{CONSOLE_V6}/64"))?;
        let ext_mac = ext.mac("eth1")?;
        node.neigh_permanent("wan1", CONSOLE_V4, ext_mac)?;
        node.neigh_permanent("wan1", CONSOLE_V6, ext_mac)?;
        ext.route("198.18.2.0/24", NODE_WAN1_V4)?;
        ext.route("2001:db8:2::/48", NODE_WAN1_V6)?;
        if outside {
            build_outside(&node, &ext)?;
        }
        let mut delaylines = Vec::new();
        if let (Some(wan), Some(delay)) = (&wan, wan_delay) {
            for [w_a, w_b] in links.iter().filter_map(|l| l.wire) {
                delaylines.push(delayline::spawn_in(wan, w_a, w_b, delay)?);
            }
        }
        lab.settle()?;
        Ok(Self {
            node,
            ext,
            globex,
            initech,
            wan,
            _delaylines: delaylines,
            lab,
        })
    }

    /// The lab's run directory (holds the bpffs mount, state and the token file).
    pub fn rundir(&self) -> Result<PathBuf> {
        let bpffs = self.lab.bpffs()?;
        Ok(bpffs
            .parent()
            .context("lab bpffs has no parent directory")?
            .to_path_buf())
    }

    /// Writes the lab's token file (see [`token`]) into the run directory.
    fn write_tokens(&self) -> Result<()> {
        let tokens = self.rundir()?.join("tokens.yaml");
        let mut text = String::new();
        for (name, role, tok) in [
            ("lab-viewer", "viewer", token::VIEWER),
            ("lab-operator", "operator", token::OPERATOR),
            ("lab-admin", "admin", token::ADMIN),
        ] {
            let hash = sha256_hex(tok);
            text += &format!("- name: {name}\n  role: {role}\n  sha256: {hash}\n");
        }
        std::fs::write(&tokens, text).with_context(|| format!("writing {}", tokens.display()))
    }

    /// Policy text with the demo's run directories moved into this lab's own; the
    /// lab's token file is written as a side effect.
    pub fn localize(&self, text: &str) -> Result<String> {
        self.write_tokens()?;
        Ok(text.replace(POLICY_RUNDIR, &self.rundir()?.display().to_string()))
    }

    /// The demo policy, localized.
    pub fn policy_text(&self) -> Result<String> {
        self.localize(DEMO_POLICY)
    }

    /// The demo policy's `daemon` and `interfaces` sections, localized: tests add
    /// their own `defaults` and `tenants`.
    pub fn policy_header(&self) -> Result<String> {
        let end = DEMO_POLICY
            .find("\ndefaults:")
            .context("demo policy has no defaults section")?;
        self.localize(&DEMO_POLICY[..end + 1])
    }

    /// Writes `text` (localized) as `name` in the lab's tempdir.
    pub fn write_policy_as(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.lab.tempdir().join(name);
        std::fs::write(&path, self.localize(text)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A pinned map of the daemon, opened from the lab's bpffs (works while no daemon runs).
    pub fn pinned_map(&self, name: &str) -> Result<PathBuf> {
        let path = self.lab.bpffs()?.join("maps").join(name);
        anyhow::ensure!(path.exists(), "no pinned map at {}", path.display());
        Ok(path)
    }

    /// Writes the policy into the lab's tempdir and returns its path.
    pub fn write_policy(&self) -> Result<PathBuf> {
        let path = self.lab.tempdir().join("warden.yaml");
        std::fs::write(&path, self.policy_text()?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Starts `warden run -c policy ARGS` in the node namespace and waits until it serves,
    /// for as long as the shipped unit's `TimeoutStartSec=` (120 s): a 100,000-tenant
    /// host-mode policy creates up to 30,000 shaping classes before it serves.
    pub fn start_daemon(&self, warden: &Path, policy: &Path, args: &[&str]) -> Result<Proc> {
        let warden = warden.to_str().context("warden path is not UTF-8")?;
        let policy = policy.to_str().context("policy path is not UTF-8")?;
        let mut cmd = vec![warden, "run", "-c", policy];
        cmd.extend_from_slice(args);
        let mut proc = self.node.spawn(&cmd)?;
        proc.wait_log("serving API", Duration::from_secs(120))
            .context("the daemon did not start")?;
        Ok(proc)
    }

    /// The API address inside the node namespace.
    pub fn api(&self) -> SocketAddr {
        API.parse().expect("API is a valid socket address")
    }

    /// GET a path of the daemon's API from inside the node namespace.
    pub fn get(&self, path: &str) -> Result<String> {
        crate::http::get_in_netns(self.node.name(), self.api(), path)
    }

    /// Any request to the daemon's API from inside the node namespace.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Result<crate::http::Response> {
        crate::http::request_in_netns(self.node.name(), self.api(), method, path, body, token)
    }
}

/// The daemon binary to test: `$WARDEN_BIN`, else the workspace's debug build.
pub fn warden_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("WARDEN_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/warden")
        }
    };
    anyhow::ensure!(
        path.is_file(),
        "warden binary not found at {} (run `cargo build -p warden` or set WARDEN_BIN)",
        path.display()
    );
    Ok(path)
}

/// Hex SHA-256 of a token, as the token file stores it.
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
