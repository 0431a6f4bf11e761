//! The fleet lab (issue 18): a real 3-member etcd, `warden controller`, 20 Warden fleet
//! nodes in host mode (one tenant each) and 2 gateway-mode nodes, each node in its own
//! namespace, with real traffic from a shared outside.
//!
//! ```text
//!   mgmt (br0 198.18.0.0/24): etcd m0..m2 on .1-.3, the controller on .10:9480, the CLI
//!     ==mgmt0== node1..node20 (.101-.120), gw1 gw2 (.201-.202)
//!   out (br0 198.18.1.254/24, the outside; 198.19.0.0/17 live hosts, 198.19.128.0/17 dark)
//!     ==wan0== nodeN 198.18.1.N: tenant tN's own server, Warden in host mode on wan0
//!     ==wan0== gwK 198.18.1.(100+K) ==lan0== gwK-host 198.18.(10+K).10: tenant gK,
//!              Warden in gateway mode on lan0
//! ```
//! Management traffic (etcd, the controller) goes over `mgmt0`, which no Warden watches,
//! so a suspended tenant's node still follows the fleet. etcd takes only TLS clients with
//! a certificate of the lab's [`Pki`] and has authentication on: `warden fleet init` (with
//! the root certificate) writes the roles, the controller connects as
//! `warden-controller` and each node as `warden-node-<node>`, with its own certificate. IPv6 is off everywhere: the
//! lab's probes are IPv4, and nothing else should cross the links.
//!
//! Everything is bounded (commands have deadlines, daemons are guarded) and removed
//! when the lab drops, also on failure. The warden binary is the caller's: debug for
//! the Tier 2 test, release for the bench.

pub mod etcd;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;

use crate::{
    lab::{Lab, Netns, Proc},
    pki::Pki,
    topology::{outside, sha256_hex, token},
    wait::eventually,
};
pub use etcd::EtcdCluster;

/// Host-mode nodes, one tenant each.
pub const HOSTS: usize = 20;
/// Gateway-mode nodes, one tenant behind each.
pub const GATEWAYS: usize = 2;
/// The controller's API on the management network.
pub const CONTROLLER: &str = "198.18.0.10:9480";
/// The outside host's address on the shared link.
pub const OUTSIDE: &str = "198.18.1.254";
/// Each node's own API inside its namespace.
const NODE_API: &str = "127.0.0.1:9477";
/// How long 22 daemons get to start on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// One Warden node of the fleet and its tenant.
pub struct Member {
    /// The node's fleet name (`node7`, `gw1`).
    pub name: String,
    /// Its tenant's id (`t7`, `g1`).
    pub tenant: String,
    /// The tenant's address: the node itself in host mode, the host behind a gateway.
    pub addr: String,
    /// The node's namespace (the daemon and, in host mode, the tenant's server).
    pub ns: Netns,
    /// The tenant's server behind a gateway node.
    pub host: Option<Netns>,
    /// Its node config file.
    pub config: PathBuf,
    daemon: Option<Proc>,
}

impl Member {
    /// The namespace the tenant's traffic starts from.
    pub fn tenant_ns(&self) -> &Netns {
        self.host.as_ref().unwrap_or(&self.ns)
    }

    /// Any request to the node's own API (inside its namespace).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Result<crate::http::Response> {
        let api: SocketAddr = NODE_API.parse().expect("a socket address");
        crate::http::request_in_netns(self.ns.name(), api, method, path, body, token)
    }

    /// GET from the node's own API; fails unless 200.
    pub fn get(&self, path: &str) -> Result<String> {
        let api: SocketAddr = NODE_API.parse().expect("a socket address");
        crate::http::get_in_netns(self.ns.name(), api, path)
    }

    /// The node's own view of its tenant (`GET /api/v1/tenants/{id}`).
    pub fn tenant_view(&self) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.get(&format!("/api/v1/tenants/{}", self.tenant))?,
        )?)
    }

    /// The last `lines` lines of the daemon's log (for a failure's context).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.daemon.as_ref().map(Proc::log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The daemon's process id, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Proc::pid)
    }

    /// The daemon's resident memory (VmRSS), KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let pid = self.pid().context("the daemon does not run")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")
    }
}

/// The built lab. Dropping it stops every daemon, etcd member and the controller,
/// then removes the namespaces.
pub struct FleetLab {
    /// The management network's namespace: etcd, the controller, the operator's CLI.
    pub mgmt: Netns,
    /// The outside: where the probes come from and go to.
    pub out: Netns,
    /// node1..node20 (host mode; `nodes[i]` is node i+1).
    pub nodes: Vec<Member>,
    /// gw1, gw2 (gateway mode).
    pub gateways: Vec<Member>,
    pub etcd: EtcdCluster,
    /// The CA and certificates etcd and its clients use.
    pub pki: Pki,
    warden: PathBuf,
    controller: Option<Proc>,
    /// Last field: dropped after every guard above.
    pub lab: Lab,
}

impl FleetLab {
    /// Builds the network, makes the certificates, starts etcd (TLS clients only), runs
    /// `warden fleet init` with the root certificate, turns etcd's auth on, starts the
    /// controller, applies [`policy_yaml`]`(defaults)` through it, then starts the 22
    /// nodes and waits until each serves and has registered at that generation.
    pub fn build(prefix: &str, warden: &Path, defaults: &str) -> Result<Self> {
        let lab = Lab::new(prefix)?;
        let (mgmt, out) = (lab.netns("mgmt")?, lab.netns("out")?);
        for (ns, addrs) in [
            (
                &mgmt,
                vec!["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.10"],
            ),
            (&out, vec![OUTSIDE]),
        ] {
            no_ipv6(ns)?;
            ns.ip(&["link", "add", "br0", "type", "bridge"])?;
            for a in addrs {
                ns.addr("br0", &format!("{a}/24"))?;
            }
            ns.up("br0")?;
        }
        build_outside(&out)?;
        let mut nodes = Vec::new();
        for i in 1..=HOSTS {
            nodes.push(host_node(&lab, &mgmt, &out, i)?);
        }
        let mut gateways = Vec::new();
        for k in 1..=GATEWAYS {
            gateways.push(gateway_node(&lab, &mgmt, &out, k)?);
        }
        lab.settle()?;
        let ips: Vec<String> = (0..etcd::MEMBERS).map(etcd::member_addr).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        let pki = Pki::new(&lab.tempdir().join("pki"), &ips)?;
        let etcd = EtcdCluster::start(&mgmt, lab.tempdir(), lab.id(), &pki)?;
        let mut fleet = Self {
            mgmt,
            out,
            nodes,
            gateways,
            etcd,
            pki,
            warden: warden.to_path_buf(),
            controller: None,
            lab,
        };
        fleet.write_tokens()?;
        fleet.write_configs()?;
        fleet.fleet_init()?;
        fleet.etcd.enable_auth()?;
        fleet.start_controller()?;
        fleet.apply(defaults)?;
        fleet.start_nodes()?;
        Ok(fleet)
    }

    /// Every node: the 20 host nodes, then the gateways.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.nodes.iter().chain(&self.gateways)
    }

    /// Host node `n` (1-based: node7 is `node(7)`).
    pub fn node(&self, n: usize) -> &Member {
        &self.nodes[n - 1]
    }

    /// The lab's run directory (bpffs mount, state, tokens).
    pub fn rundir(&self) -> Result<PathBuf> {
        Ok(self
            .lab
            .bpffs()?
            .parent()
            .context("bpffs has no parent")?
            .to_path_buf())
    }

    /// The config of the controller (etcd user `warden-controller`).
    pub fn controller_config(&self) -> PathBuf {
        self.lab.tempdir().join("controller.yaml")
    }

    /// The config `warden fleet init` runs with: etcd's root certificate.
    fn init_config(&self) -> PathBuf {
        self.lab.tempdir().join("fleet-init.yaml")
    }

    fn write_tokens(&self) -> Result<()> {
        let mut text = String::new();
        for (name, role, tok) in [
            ("lab-viewer", "viewer", token::VIEWER),
            ("lab-operator", "operator", token::OPERATOR),
            ("lab-admin", "admin", token::ADMIN),
        ] {
            text += &format!(
                "- name: {name}\n  role: {role}\n  sha256: {}\n",
                sha256_hex(tok)
            );
        }
        let path = self.rundir()?.join("tokens.yaml");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The `daemon` section of a node (`listen` its API) or of the controller, reaching
    /// etcd with the client certificate whose CN is `cn`.
    fn daemon_section(&self, name: &str, listen: &str, cn: &str) -> Result<String> {
        let run = self.rundir()?.display().to_string();
        let bpf = self.lab.bpffs()?.display().to_string();
        Ok(format!(
            "daemon:\n  listen: {listen}\n  state_dir: {run}/{name}/state\n  \
             bpffs: {bpf}/{name}\n  tokens: {run}/tokens.yaml\n  open_reads: true\n  \
             open_metrics: true\n  management:\n    - 198.18.0.0/24\n  fleet:\n    \
             endpoints: {}\n    node: {name}\n    tls: {}\n",
            etcd::endpoints_yaml(),
            self.pki.client(cn)?.yaml()
        ))
    }

    fn write_configs(&self) -> Result<()> {
        let ctl = self.daemon_section("controller-1", CONTROLLER, "warden-controller")?;
        std::fs::write(self.controller_config(), ctl)?;
        let init = self.daemon_section("fleet-init", CONTROLLER, "root")?;
        std::fs::write(self.init_config(), init)?;
        for m in self.members() {
            // A host node's port is bound to its tenant, so the node reads, watches and
            // applies only that tenant (the fleet holds it: the policy is applied
            // before the nodes start). A gateway carries every tenant.
            let interface = if m.host.is_some() {
                "  - name: lan0\n    mode: gateway\n".to_owned()
            } else {
                format!("  - name: wan0\n    mode: host\n    tenant: {}\n", m.tenant)
            };
            let text = format!(
                "{}interfaces:\n{interface}",
                self.daemon_section(&m.name, NODE_API, &format!("warden-node-{}", m.name))?
            );
            std::fs::write(&m.config, text)
                .with_context(|| format!("writing {}", m.config.display()))?;
        }
        Ok(())
    }

    /// `warden fleet init` for every node: the layout and the RBAC roles and users.
    fn fleet_init(&self) -> Result<()> {
        let config = self.init_config();
        let mut args = vec![
            "fleet".to_owned(),
            "init".to_owned(),
            "-c".to_owned(),
            config.to_str().context("UTF-8 path")?.to_owned(),
        ];
        for m in self.members() {
            args.extend(["--node".to_owned(), m.name.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.warden_in_mgmt(&args)?;
        ensure!(
            out.status.success(),
            "warden fleet init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn start_controller(&mut self) -> Result<()> {
        let config = self.controller_config();
        let (warden, config) = (
            self.warden.to_str().context("UTF-8 path")?,
            config.to_str().context("UTF-8 path")?,
        );
        let mut proc = self.mgmt.spawn(&[warden, "controller", "-c", config])?;
        proc.wait_log("controller serving API", Duration::from_secs(60))?;
        self.controller = Some(proc);
        Ok(())
    }

    /// Starts every node's daemon at once, then waits until each serves and the
    /// controller lists all 22 at the fleet's generation.
    fn start_nodes(&mut self) -> Result<()> {
        let warden = self.warden.to_str().context("UTF-8 path")?.to_owned();
        for m in self.nodes.iter_mut().chain(self.gateways.iter_mut()) {
            let config = m.config.to_str().context("UTF-8 path")?;
            m.daemon = Some(m.ns.spawn(&[&warden, "run", "-c", config])?);
        }
        for m in self.nodes.iter_mut().chain(self.gateways.iter_mut()) {
            let name = m.name.clone();
            m.daemon
                .as_mut()
                .context("spawned above")?
                .wait_log("serving API", START_TIMEOUT)
                .with_context(|| format!("{name} did not start"))?;
        }
        let generation = self.generation()?;
        self.wait_generation(generation, START_TIMEOUT)
    }

    /// `warden ARGS` in the management namespace (no `--api`: local commands).
    fn warden_in_mgmt(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = vec![self.warden.to_str().context("UTF-8 path")?];
        cmd.extend_from_slice(args);
        self.mgmt.exec_unchecked(&cmd, Duration::from_secs(60))
    }

    /// `warden --api CONTROLLER --token TOKEN ARGS` in the management namespace, as an
    /// operator would run it; its output whatever the exit status.
    pub fn cli(&self, token: &str, args: &[&str]) -> Result<Output> {
        let api = format!("http://{CONTROLLER}");
        let mut cmd = vec!["--api", &api, "--token", token];
        cmd.extend_from_slice(args);
        self.warden_in_mgmt(&cmd)
    }

    /// [`FleetLab::cli`] that must succeed; its stdout.
    pub fn cli_ok(&self, token: &str, args: &[&str]) -> Result<String> {
        crate::cmd::succeeded(&format!("warden {args:?}"), self.cli(token, args)?)
    }

    /// `warden policy apply` of [`policy_yaml`]`(defaults)` through the controller.
    pub fn apply(&self, defaults: &str) -> Result<()> {
        let path = self.lab.tempdir().join("fleet-policy.yaml");
        std::fs::write(&path, policy_yaml(defaults))?;
        let path = path.to_str().context("UTF-8 path")?;
        self.cli_ok(token::OPERATOR, &["policy", "apply", path])
            .map(drop)
    }

    /// The fleet's policy generation, from the controller's `warden status` (a read:
    /// retried for up to 10 s, since right after an etcd member died a request may
    /// still go to its endpoint and fail).
    pub fn generation(&self) -> Result<u64> {
        eventually(Duration::from_secs(10), || {
            let status: Value =
                serde_json::from_str(&self.cli_ok(token::VIEWER, &["status", "--json"])?)?;
            status["policy_generation"]
                .as_u64()
                .map(Some)
                .with_context(|| format!("no policy_generation in {status}"))
        })
    }

    /// `warden nodes --json` through the controller.
    pub fn nodes_json(&self) -> Result<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.cli_ok(token::VIEWER, &["nodes", "--json"])?)?;
        Ok(v.as_array().context("a nodes list")?.clone())
    }

    /// Waits until the controller lists every node with `generation` applied. A failed
    /// read of the list is retried (see [`FleetLab::generation`]) and counted; the
    /// error names the nodes behind and the failed reads.
    pub fn wait_generation(&self, generation: u64, timeout: Duration) -> Result<()> {
        let want = HOSTS + GATEWAYS;
        let (mut behind, mut failed) = (String::from("no list read"), 0u32);
        let waited = eventually(timeout, || {
            let Ok(nodes) = self.nodes_json() else {
                failed += 1;
                return Ok(false);
            };
            let at: Vec<&str> = nodes
                .iter()
                .filter(|n| n["applied_generation"].as_u64() == Some(generation))
                .filter_map(|n| n["node"].as_str())
                .collect();
            behind = self
                .members()
                .filter(|m| !at.contains(&m.name.as_str()))
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", ");
            Ok(at.len() == want)
        });
        waited.with_context(|| {
            format!(
                "not every node reached generation {generation}: behind or unlisted: \
                 [{behind}]; {failed} reads of the list failed"
            )
        })
    }

    /// Resident memory of every daemon, KiB, in [`FleetLab::members`] order.
    pub fn rss_kib(&self) -> Result<Vec<u64>> {
        self.members().map(Member::rss_kib).collect()
    }
}

/// The fleet's policy: `defaults` (YAML lines indented by two spaces, may be empty)
/// and one tenant per node: t1..t20 on the host nodes' addresses, g1 and g2 behind the
/// gateways.
pub fn policy_yaml(defaults: &str) -> String {
    let mut text = format!("defaults:\n{defaults}tenants:\n");
    for i in 1..=HOSTS {
        text += &format!("  - id: t{i}\n    addresses: [{}/32]\n", host_addr(i));
    }
    for k in 1..=GATEWAYS {
        text += &format!(
            "  - id: g{k}\n    addresses: [{}/32]\n",
            gateway_tenant_addr(k)
        );
    }
    text
}

/// Host node `i`'s address (its tenant's) on the outside link.
pub fn host_addr(i: usize) -> String {
    format!("198.18.1.{i}")
}

/// The address of gateway `k`'s tenant host.
pub fn gateway_tenant_addr(k: usize) -> String {
    format!("198.18.{}.10", 10 + k)
}

/// `ping -c COUNT` at 50/s from `from` to `dst`: how many replies came (loss is not an
/// error). Bounded by the count, a 1 s wait for the last reply and a 60 s deadline.
pub fn ping_replies(from: &Netns, dst: &str, count: u32) -> Result<u64> {
    let count = count.to_string();
    let out = from.exec_unchecked(
        &[
            "ping", "-n", "-q", "-c", &count, "-i", "0.02", "-W", "1", dst,
        ],
        Duration::from_secs(60),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no ping summary from {}:\n{text}", from.name()))
}

/// Whether a TCP connection from `from` to `dst:port` is established within 2 s.
pub fn tcp_connects(from: &Netns, dst: &str, port: u16) -> Result<bool> {
    let port = port.to_string();
    let out = from.exec_unchecked(
        &["nc", "-z", "-n", "-w", "2", dst, &port],
        Duration::from_secs(10),
    )?;
    Ok(out.status.success())
}

/// IPv6 off in a namespace, for the links created in it from now on.
fn no_ipv6(ns: &Netns) -> Result<()> {
    ns.sysctls(&[
        ("net/ipv6/conf/all/disable_ipv6", "1"),
        ("net/ipv6/conf/default/disable_ipv6", "1"),
    ])
}

/// A veth from `ns`'s `ifname` to a port `port` of `bridge_ns`'s br0, both up.
fn bridge_port(lab: &Lab, ns: &Netns, ifname: &str, bridge_ns: &Netns, port: &str) -> Result<()> {
    lab.link(ns, ifname, bridge_ns, port)?;
    bridge_ns.ip(&["link", "set", "dev", port, "master", "br0"])?;
    bridge_ns.up(port)?;
    Ok(())
}

/// The outside's live and dark hosts (as in the standard lab's outside network), and
/// ICMP errors without a rate limit.
fn build_outside(out: &Netns) -> Result<()> {
    out.ip(&["route", "add", "local", outside::LIVE_V4, "dev", "lo"])?;
    out.ip(&["route", "add", "blackhole", outside::DARK_V4])?;
    out.sysctls(&[
        ("net/ipv4/icmp_ratelimit", "0"),
        ("net/ipv4/icmp_msgs_per_sec", "1000000"),
        ("net/ipv4/icmp_msgs_burst", "100000"),
    ])
}

fn host_node(lab: &Lab, mgmt: &Netns, out: &Netns, i: usize) -> Result<Member> {
    let name = format!("node{i}");
    let ns = lab.netns(&name)?;
    no_ipv6(&ns)?;
    bridge_port(lab, &ns, "wan0", out, &format!("n{i}"))?;
    bridge_port(lab, &ns, "mgmt0", mgmt, &format!("m{i}"))?;
    ns.addr("wan0", &format!("{}/24", host_addr(i)))?;
    ns.addr("mgmt0", &format!("198.18.0.{}/24", 100 + i))?;
    ns.up("wan0")?;
    ns.up("mgmt0")?;
    ns.route("default", OUTSIDE)?;
    Ok(Member {
        config: lab.tempdir().join(format!("{name}.yaml")),
        name,
        tenant: format!("t{i}"),
        addr: host_addr(i),
        ns,
        host: None,
        daemon: None,
    })
}

fn gateway_node(lab: &Lab, mgmt: &Netns, out: &Netns, k: usize) -> Result<Member> {
    let name = format!("gw{k}");
    let ns = lab.netns(&name)?;
    let host = lab.netns(&format!("gw{k}-host"))?;
    no_ipv6(&ns)?;
    no_ipv6(&host)?;
    bridge_port(lab, &ns, "wan0", out, &format!("g{k}"))?;
    bridge_port(lab, &ns, "mgmt0", mgmt, &format!("mg{k}"))?;
    lab.link(&ns, "lan0", &host, "eth0")?;
    let wan = format!("198.18.1.{}", 100 + k);
    let (lan, tenant) = (format!("198.18.{}.1", 10 + k), gateway_tenant_addr(k));
    ns.addr("wan0", &format!("{wan}/24"))?;
    ns.addr("mgmt0", &format!("198.18.0.{}/24", 200 + k))?;
    ns.addr("lan0", &format!("{lan}/24"))?;
    host.addr("eth0", &format!("{tenant}/24"))?;
    for (n, ifname) in [
        (&ns, "wan0"),
        (&ns, "mgmt0"),
        (&ns, "lan0"),
        (&host, "eth0"),
    ] {
        n.up(ifname)?;
    }
    ns.sysctl("net/ipv4/ip_forward", "1")?;
    ns.route("default", OUTSIDE)?;
    host.route("default", &lan)?;
    out.route(&format!("198.18.{}.0/24", 10 + k), &wan)?;
    Ok(Member {
        config: lab.tempdir().join(format!("{name}.yaml")),
        name,
        tenant: format!("g{k}"),
        addr: tenant,
        ns,
        host: Some(host),
        daemon: None,
    })
}
