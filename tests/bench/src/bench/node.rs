//! The daemon the kernel micro cases run against: a release `warden run` in a namespace
//! lab, started on a policy file the bench writes ([`super::fixtures::policy_yaml`]),
//! switched between the bench's policies by rewriting that file and sending SIGHUP, and
//! the [`Rig`] that times the daemon's own pinned programs on the daemon's own maps.
//!
//! What the daemon configures, the bench does not touch: the tenant tables, every
//! tenant's settings (flood thresholds, plans, shaping class), GEN_CONFIG, ACTIVE, the
//! management prefixes, the suspension (`warden suspend` over the API) and the blackhole
//! (the daemon's own answer to an inbound flood the bench sends). The one setting the
//! bench writes is the event budget of the active generation ([`super::BENCH_EVENT_BUDGET`],
//! no policy key), after each switch; [`Rig::check_steady`] checks after every case that
//! the daemon has not changed it, nor the generation.

use std::{
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::{Array, MapData},
    programs::{SchedClassifier, Xdp},
    Ebpf,
};
use serde_json::Value;
use warden_common::{gen_flags, map, program, GenConfig};
use warden_tests::{
    lab::{Lab, Netns, Proc},
    topology::{sha256_hex, token},
    wait::eventually,
};

use super::{
    cases::Policy,
    fixtures::{policy_yaml, tenant_id},
    BENCH_EVENT_BUDGET,
};
use crate::util;

/// The interface the daemon attaches to (host mode) and its peer: both left down, so no
/// frame but the bench's test runs ever reaches the programs.
const IFACE: &str = "wm0";
const PEER: &str = "wm1";
/// The daemon's API listener inside the lab namespace.
const API: &str = "127.0.0.1:19478";
/// How long a start or a switch of a 100,000-tenant policy may take.
const APPLY_WAIT: Duration = Duration::from_secs(180);
/// The daemon's log line of a switch done, and of one refused.
const RELOADED: &str = "policy reloaded on SIGHUP";
const REJECTED: &str = "policy reload rejected";

/// The micro cases' daemon and its lab (dropped last: namespace, bpffs, files).
pub(super) struct Node {
    daemon: Proc,
    node: Netns,
    policy_file: PathBuf,
    /// The file's `daemon` and `interfaces` sections.
    header: String,
    /// The daemon's `daemon.bpffs` (its `maps/` and `progs/`).
    bpffs: PathBuf,
    policy: Policy,
    /// Last: dropped after the daemon and the namespace handle.
    _lab: Lab,
}

impl Node {
    /// Starts the release daemon `warden` on `policy`, on every CPU (as a node's runs).
    pub(super) fn start(warden: &Path, policy: Policy) -> Result<Node> {
        let lab = Lab::new("wbm")?;
        let node = lab.netns("node")?;
        lab.link(&node, IFACE, &node, PEER)?;
        let bpffs = lab.bpffs()?.join("warden");
        let dir = lab.tempdir().to_path_buf();
        let tokens = dir.join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!(
                "- name: bench\n  role: admin\n  sha256: {}\n",
                sha256_hex(token::ADMIN)
            ),
        )
        .with_context(|| format!("writing {}", tokens.display()))?;
        let header = format!(
            "daemon:\n  listen: {API}\n  state_dir: {}\n  bpffs: {}\n  tokens: {}\n  \
             open_reads: true\n{}interfaces:\n  - name: {IFACE}\n    mode: host\n",
            dir.join("state").display(),
            bpffs.display(),
            tokens.display(),
            super::fixtures::management_yaml(),
        );
        let policy_file = dir.join("warden.yaml");
        write_policy(&policy_file, &header, policy)?;
        let warden = path_str(warden)?;
        let daemon = {
            let _every_cpu = crate::latency::EveryCpu::widen()?;
            node.spawn(&[warden, "run", "-c", path_str(&policy_file)?])?
        };
        let mut n = Node {
            daemon,
            node,
            policy_file,
            header,
            bpffs,
            policy,
            _lab: lab,
        };
        n.daemon
            .wait_log("serving API", APPLY_WAIT)
            .context("the micro cases' daemon did not start")?;
        Ok(n)
    }

    /// Switches the daemon to `policy` as an operator does: the file rewritten, SIGHUP,
    /// and the daemon's log saying it applied it (a refusal fails the bench).
    pub(super) fn switch(&mut self, policy: Policy) -> Result<()> {
        if policy == self.policy {
            return Ok(());
        }
        write_policy(&self.policy_file, &self.header, policy)?;
        let count = |log: &str, what: &str| log.matches(what).count();
        let log = self.daemon.log();
        let (done, refused) = (count(&log, RELOADED), count(&log, REJECTED));
        let pid = libc::pid_t::try_from(self.daemon.pid()).context("daemon pid")?;
        // SAFETY: kill only sends a signal; the daemon is our unreaped child, so its
        // pid cannot have been reused.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            return Err(std::io::Error::last_os_error()).context("SIGHUP to the daemon");
        }
        eventually(APPLY_WAIT, || {
            let log = self.daemon.log();
            if count(&log, REJECTED) > refused {
                return Err(warden_tests::wait::give_up(anyhow::anyhow!(
                    "the daemon refused the {} policy: {}",
                    policy.label(),
                    log.lines()
                        .rev()
                        .find(|l| l.contains(REJECTED))
                        .unwrap_or("")
                )));
            }
            Ok(count(&log, RELOADED) > done)
        })
        .with_context(|| format!("switching the daemon to the {} policy", policy.label()))?;
        self.policy = policy;
        Ok(())
    }

    /// Suspends tenant `i` through the daemon's API (`warden suspend`), as the security
    /// team does.
    pub(super) fn suspend(&self, warden: &Path, i: u32) -> Result<()> {
        let url = format!("http://{API}");
        let id = tenant_id(i);
        self.node.exec(&[
            path_str(warden)?,
            "--api",
            &url,
            "--token",
            token::ADMIN,
            "suspend",
            &id,
            "--reason",
            "benchmark: the suspended-tenant case",
        ])?;
        Ok(())
    }

    /// The daemon's slot of tenant `i` (its API's `index`).
    pub(super) fn slot(&self, i: u32) -> Result<u32> {
        let path = format!("/api/v1/tenants/{}", tenant_id(i));
        let addr = API.parse().expect("a socket address");
        let body = warden_tests::http::get_in_netns(self.node.name(), addr, &path)?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: not JSON"))?;
        let index = v.get("index").and_then(Value::as_u64);
        u32::try_from(index.with_context(|| format!("{path}: no index"))?).context("index")
    }

    /// Fails when the daemon has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.daemon.try_wait()? {
            bail!(
                "the micro cases' daemon exited ({status}); log:\n{}",
                self.daemon.log()
            );
        }
        Ok(())
    }

    /// Stops the daemon (SIGTERM), its lab going with it.
    pub(super) fn stop(self) -> Result<()> {
        self.daemon
            .stop()
            .context("stopping the micro cases' daemon")?;
        Ok(())
    }
}

fn write_policy(file: &Path, header: &str, policy: Policy) -> Result<()> {
    std::fs::write(file, policy_yaml(header, policy))
        .with_context(|| format!("writing {}", file.display()))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// The programs the micro cases time: the daemon's pinned production programs, and the
/// bench-only programs (baselines, new flow, answer) of the bench object, loaded with
/// every map taken from the daemon's pins; maps are read and written through the bench
/// object's handles (the daemon's maps). Derefs to that object.
pub(super) struct Rig {
    bench: Ebpf,
    to_tenant: Xdp,
    from_tenant: Xdp,
    tc_from_tenant: SchedClassifier,
    /// The daemon, while it runs.
    pub(super) node: Option<Node>,
}

impl Rig {
    /// Opens the daemon's pinned programs and loads the bench-only ones on its maps.
    pub(super) fn open(node: Node) -> Result<Rig> {
        let maps = node.bpffs.join("maps");
        let paths: Vec<(&str, PathBuf)> = map::ALL.iter().map(|n| (*n, maps.join(n))).collect();
        for (name, path) in &paths {
            // A missing pin would be created by the load: the bench's, not the daemon's.
            ensure!(
                path.exists(),
                "the daemon pinned no map {name} at {}",
                path.display()
            );
        }
        let pins: Vec<(&str, &Path)> = paths.iter().map(|(n, p)| (*n, p.as_path())).collect();
        let bench = util::load_on_pins(
            &pins,
            &[
                program::XDP_PASS_BASELINE,
                super::XDP_BENCH_NEW_FLOW,
                super::XDP_BENCH_ANSWER,
            ],
            &[program::TC_PASS_BASELINE],
        )?;
        let progs = node.bpffs.join("progs");
        let xdp = |name: &str| {
            Xdp::from_pin(
                progs.join(name),
                aya_obj::programs::xdp::XdpAttachType::Interface,
            )
            .with_context(|| format!("opening the daemon's pinned {name}"))
        };
        let tc_path = progs.join(program::TC_FROM_TENANT);
        Ok(Rig {
            bench,
            to_tenant: xdp(program::XDP_TO_TENANT)?,
            from_tenant: xdp(program::XDP_FROM_TENANT)?,
            tc_from_tenant: SchedClassifier::from_pin(&tc_path)
                .with_context(|| format!("opening {}", tc_path.display()))?,
            node: Some(node),
        })
    }

    /// The XDP program `name`: the daemon's for a production program, else the bench's.
    pub(super) fn xdp(&self, name: &str) -> Result<&Xdp> {
        match name {
            program::XDP_TO_TENANT => Ok(&self.to_tenant),
            program::XDP_FROM_TENANT => Ok(&self.from_tenant),
            _ => self
                .bench
                .program(name)
                .with_context(|| format!("no program {name}"))?
                .try_into()
                .with_context(|| format!("{name} is not an XDP program")),
        }
    }

    /// The bench object's XDP program `name`, to pin it.
    pub(super) fn bench_xdp_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        self.bench
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()
            .with_context(|| format!("{name} is not an XDP program"))
    }

    /// The tc program `name`, as [`Rig::xdp`].
    pub(super) fn tc(&self, name: &str) -> Result<&SchedClassifier> {
        match name {
            program::TC_FROM_TENANT => Ok(&self.tc_from_tenant),
            _ => self
                .bench
                .program(name)
                .with_context(|| format!("no program {name}"))?
                .try_into()
                .with_context(|| format!("{name} is not a tc program")),
        }
    }

    pub(super) fn node_mut(&mut self) -> Result<&mut Node> {
        self.node
            .as_mut()
            .context("the micro cases' daemon was stopped")
    }

    fn gen_config(&self) -> Result<(u32, GenConfig)> {
        let active: Array<&MapData, u32> =
            Array::try_from(self.map(map::ACTIVE).context("no ACTIVE map")?)?;
        let gen = active.get(&0, 0).context("reading ACTIVE")?;
        let configs: Array<&MapData, GenConfig> =
            Array::try_from(self.map(map::GEN_CONFIG).context("no GEN_CONFIG map")?)?;
        Ok((gen, configs.get(&gen, 0).context("reading GEN_CONFIG")?))
    }

    /// Lifts the event budget of the active generation ([`BENCH_EVENT_BUDGET`]) and
    /// returns the generation.
    pub(super) fn lift_event_budget(&mut self) -> Result<u32> {
        let (gen, mut gc) = self.gen_config()?;
        gc.event_budget = BENCH_EVENT_BUDGET;
        let mut configs: Array<&mut MapData, GenConfig> =
            Array::try_from(self.map_mut(map::GEN_CONFIG).context("no GEN_CONFIG map")?)?;
        configs.set(gen, gc, 0).context("writing GEN_CONFIG")?;
        Ok(gen)
    }

    /// Checks that nothing the daemon did changed the path of the cases of `policy`:
    /// the daemon runs, generation `gen` is still the active one, with `policy`'s prefix
    /// lengths and MAC flag and the lifted event budget.
    pub(super) fn check_steady(&mut self, policy: Policy, gen: u32) -> Result<()> {
        self.node_mut()?.alive()?;
        let (now, gc) = self.gen_config()?;
        let (v4, v6) = policy.lengths();
        let macs = gc.flags & gen_flags::ANY_MACS != 0;
        ensure!(
            now == gen
                && gc.event_budget == BENCH_EVENT_BUDGET
                && gc.v4_lens[..usize::from(gc.v4_nlens)] == *v4
                && gc.v6_lens[..usize::from(gc.v6_nlens)] == *v6
                && macs == policy.binds_macs(),
            "the daemon changed the {} policy's generation under the cases: active {now} \
             (was {gen}), prefix lengths {:?} | {:?}, MACs {macs}, event budget {}",
            policy.label(),
            &gc.v4_lens[..usize::from(gc.v4_nlens)],
            &gc.v6_lens[..usize::from(gc.v6_nlens)],
            if gc.event_budget == BENCH_EVENT_BUDGET {
                "lifted"
            } else {
                "the daemon's"
            }
        );
        Ok(())
    }

    /// Stops the daemon; the programs and maps stay open in this process.
    pub(super) fn stop_node(&mut self) -> Result<()> {
        match self.node.take() {
            Some(node) => node.stop(),
            None => Ok(()),
        }
    }
}

impl Deref for Rig {
    type Target = Ebpf;
    fn deref(&self) -> &Ebpf {
        &self.bench
    }
}

impl DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Ebpf {
        &mut self.bench
    }
}
