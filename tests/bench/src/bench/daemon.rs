//! The daemon's own program: a release `warden run` in a namespace lab attaches its XDP
//! program to a veth, and `bpftool prog run` times that program, found with `bpftool
//! net show` and run through its pin, on frames stored in the repository
//! (`tests/bench/frames/`), in interleaved pairs with the XDP_PASS baseline, as the
//! in-process cases are timed. Each case is reported next to its in-process case
//! ([`Spec::matching`]) with the difference.
//!
//! How the two are made the same: both are a release daemon's own program, loaded,
//! configured and pinned by `warden run` from a policy file (the micro cases' daemon,
//! [`super::node`], holds 100,000 tenants; this one two), timed on one frame in ABBA
//! pairs with the XDP_PASS baseline; the kernel's tag of the translated program and its
//! size are compared and must be equal; the tenants have the default thresholds, a
//! frame is a datagram from a remote port to a tenant address, and in both the daemon
//! itself blackholes the flooded address of the blackholed case. A
//! timed run (some 30 million datagrams a second at one address) is an inbound flood to
//! the daemon, which by default blackholes the address within the first run, so every
//! later run times the blackholed path (a drop: the independent measurement of issue
//! 23). Hence two tenants: one that observes inbound floods (`flood_in.action:
//! observe`), whose datagrams take the metered pass of the in-process datagram case,
//! and one with the default detectors, whose datagrams are timed once the daemon has
//! blackholed its address, next to the in-process blackholed case.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use serde_json::Value;
use warden_common::{
    direction, map, program, reason, tenant_counter_index, Counters, DropCounters,
};
use warden_tests::{
    lab::{Lab, Netns, Proc},
    packets::{Frame, Ipv4, L4},
    wait::eventually,
};

use super::{measure::Figures, node::Rig, BLACKHOLED_CASE, DATAGRAM_CASE, XDP_DROP, XDP_PASS};
use crate::util;

/// One case of the daemon's own program: a frame to one of its tenants, and the
/// in-process case it is reported next to.
pub(super) struct Spec {
    pub(super) matching: &'static str,
    /// The stored frame, relative to the workspace root, and its bytes (embedded to check
    /// the file against [`Spec::frame`]).
    pub(super) frame_file: &'static str,
    frame_bytes: &'static [u8],
    /// The tenant's id and address.
    tenant: &'static str,
    address: Ipv4Addr,
    /// Whether the daemon blackholes the address (its default answer to the inbound
    /// flood a timed run is), or observes the flood.
    blackholed: bool,
}

/// The cases: the metered datagram (the tenant observes inbound floods) and the
/// blackholed one (the default detectors: the independent measurement of issue 23).
pub(super) const SPECS: [Spec; 2] = [
    Spec {
        matching: DATAGRAM_CASE,
        frame_file: "tests/bench/frames/udp-to-tenant.bin",
        frame_bytes: include_bytes!("../../frames/udp-to-tenant.bin"),
        tenant: "observes",
        address: Ipv4Addr::new(198, 18, 10, 1),
        blackholed: false,
    },
    Spec {
        matching: BLACKHOLED_CASE,
        frame_file: "tests/bench/frames/udp-to-blackholed.bin",
        frame_bytes: include_bytes!("../../frames/udp-to-blackholed.bin"),
        tenant: "defaults",
        address: Ipv4Addr::new(198, 18, 10, 2),
        blackholed: true,
    },
];

/// How the daemon's program is timed and made the same as the in-process one, for the
/// report.
pub(super) const METHOD: &str = "a release `warden run` (policy file -> the daemon's own \
    start: load, pin, attach, policy compiled and written by the daemon) in a namespace lab, \
    on every CPU, host mode on a veth; two tenants with the default detectors, one of them \
    observing inbound floods instead of blackholing them (a timed run is an inbound flood \
    of tens of millions of datagrams a second: by default the daemon blackholes the \
    address within the first run). The XDP program attached to the veth (`bpftool net \
    show`) is run through its pin with `taskset -c CPU bpftool prog run pinned PROG \
    data_in FRAME repeat N`, in ABBA pairs with the bench's XDP_PASS program run the same \
    way; every run must take its case's path in every repetition (the tenant's counters \
    and blackhole drops read from the daemon's pinned maps). Made the same as the micro \
    cases, which time the pinned programs of another release `warden run` through \
    BPF_PROG_TEST_RUN: the same program (the kernel's tag of the translated code and its \
    size, compared equal), tenants with the same flood thresholds (the policy defaults), \
    a datagram from a remote port to a tenant address, a blackhole the daemon itself \
    sets on a flood; the micro cases' daemon holds 100,000 tenants and a million tracked \
    remotes, this one two tenants";
/// The frames' remote (198.18.10.0/24, the test range) and ports.
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 254);
const REMOTE_PORT: u16 = 40_000;
const TENANT_PORT: u16 = 9_999;
const PAYLOAD: usize = 100;
/// The interface the daemon attaches to, and its peer.
const IFACE: &str = "wb0";
const PEER: &str = "wb1";
/// The daemon's API listener inside the lab namespace.
const API: &str = "127.0.0.1:19479";
/// How long the daemon may take to blackhole an address once flooded.
const BLACKHOLE_WAIT: Duration = Duration::from_secs(30);

impl Spec {
    /// The stored frame as the packet builders make it: Ethernet / IPv4 / UDP
    /// 198.18.10.254:40000 -> the tenant's address, port 9999, with 100 payload bytes
    /// (142 bytes).
    pub(super) fn frame(&self) -> Vec<u8> {
        Frame::new(
            Ipv4::new(REMOTE, self.address)
                .l4(L4::udp(REMOTE_PORT, TENANT_PORT).with_payload(&[0; PAYLOAD])),
        )
        .build()
    }
}

/// The figures of one case of the daemon's program, and what made them comparable.
pub(super) struct DaemonCase {
    pub(super) spec: &'static Spec,
    pub(super) figures: Figures,
    /// The kernel's tag of the daemon's program and its translated size, equal to the
    /// in-process program's.
    pub(super) tag: String,
    pub(super) bytes_xlated: u64,
}

/// Starts a release daemon in a lab, times its attached XDP program on the frames of
/// `specs` against the baseline program of `ebpf` (pinned for bpftool), each in `pairs`
/// pairs of `repeat` repetitions on CPU `cpu`, and stops it.
pub(super) fn run(
    ebpf: &mut Rig,
    specs: &[&'static Spec],
    cpu: usize,
    pairs: u32,
    repeat: u32,
) -> Result<Vec<DaemonCase>> {
    for s in specs {
        ensure!(
            s.frame_bytes == s.frame().as_slice(),
            "{} is not the frame the bench describes (rebuild it from Spec::frame)",
            s.frame_file
        );
    }
    {
        // The build on every CPU, not on the measured one alone.
        let _every_cpu = crate::latency::EveryCpu::widen()?;
        util::cargo_build(true).context("building the release daemon")?;
    }
    let warden = util::target_dir().join("release/warden");
    ensure!(warden.is_file(), "{} was not built", warden.display());
    let lab = Lab::new("wbd")?;
    let node = lab.netns("node")?;
    lab.link(&node, IFACE, &node, PEER)?;
    node.addr(IFACE, "198.18.10.1/24")?;
    node.up(IFACE)?;
    node.up(PEER)?;
    let bpffs = lab.bpffs()?;
    let policy = lab.tempdir().join("warden.yaml");
    std::fs::write(&policy, policy_text(&bpffs, lab.tempdir()))
        .with_context(|| format!("writing {}", policy.display()))?;
    // The daemon runs on every CPU, as a node's does (started from this pinned thread it
    // would share the measured CPU only: measured here, that adds 0-30 ns to a run).
    let daemon = {
        let _every_cpu = crate::latency::EveryCpu::widen()?;
        start(&node, &warden, &policy)?
    };

    let pinned = bpffs.join("warden/progs").join(program::XDP_TO_TENANT);
    let id = attached_xdp(&node)?;
    let info = prog_info(&["pinned", path_str(&pinned)?])?;
    ensure!(
        num(&info, "id")? == id,
        "the program attached to {IFACE} (id {id}) is not the daemon's pinned {}",
        pinned.display()
    );
    let (tag, bytes_xlated) = (text(&info, "tag")?, num(&info, "bytes_xlated")?);
    let (bench_tag, bench_bytes) = in_process_code(ebpf)?;
    ensure!(
        tag == bench_tag && bytes_xlated == bench_bytes,
        "the daemon's {} (tag {tag}, {bytes_xlated} bytes translated) is not the in-process \
         one (tag {bench_tag}, {bench_bytes} bytes): the comparison would not be of one program",
        program::XDP_TO_TENANT
    );
    let base_pin = bpffs.join("bench-pass-baseline");
    ebpf.bench_xdp_mut(program::XDP_PASS_BASELINE)?
        .pin(&base_pin)
        .context("pinning the baseline program")?;
    let mut out = Vec::new();
    let mut failed = None;
    for &spec in specs {
        let timing = Timing {
            spec,
            cpu,
            frame: util::workspace_root().join(spec.frame_file),
            maps: bpffs.join("warden/maps"),
            slot: tenant_slot(&node, spec.tenant)?,
        };
        match timing.pairs(&pinned, &base_pin, pairs, repeat) {
            Ok(figures) => out.push(DaemonCase {
                spec,
                figures,
                tag: tag.clone(),
                bytes_xlated,
            }),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // The lab's bpffs goes with the lab; unpinned here so the lab's mount is empty.
    let _ = std::fs::remove_file(&base_pin);
    daemon.stop().context("stopping the daemon")?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The policy: one host-mode interface; per [`SPECS`] a tenant, with the default
/// detectors, the observing one but for inbound floods, which it observes.
fn policy_text(bpffs: &Path, dir: &Path) -> String {
    let mut text = format!(
        "daemon:\n  listen: {API}\n  state_dir: {}\n  bpffs: {}\n\
         interfaces:\n  - name: {IFACE}\n    mode: host\ntenants:\n",
        dir.join("state").display(),
        bpffs.join("warden").display(),
    );
    for s in &SPECS {
        text += &format!("  - id: {}\n    addresses: [{}/32]\n", s.tenant, s.address);
        if !s.blackholed {
            text += "    detectors:\n      flood_in:\n        action: observe\n";
        }
    }
    text
}

fn start(node: &Netns, warden: &Path, policy: &Path) -> Result<Proc> {
    let mut proc = node.spawn(&[path_str(warden)?, "run", "-c", path_str(policy)?])?;
    proc.wait_log("serving API", Duration::from_secs(60))
        .context("the daemon did not start")?;
    Ok(proc)
}

/// The id of the XDP program attached to [`IFACE`] (`bpftool net show dev IF`).
fn attached_xdp(node: &Netns) -> Result<u64> {
    let out = node.exec(&["bpftool", "-j", "net", "show", "dev", IFACE])?;
    let v: Value = serde_json::from_slice(&out.stdout).context("bpftool net show: not JSON")?;
    let xdp = v
        .pointer("/0/xdp")
        .and_then(Value::as_array)
        .context("bpftool net show: no xdp list")?;
    match xdp.as_slice() {
        [one] => num(one, "id"),
        other => bail!("{} XDP programs on {IFACE}, expected one", other.len()),
    }
}

/// `bpftool -j prog show ARGS`.
fn prog_info(args: &[&str]) -> Result<Value> {
    let out = util::capture(
        Command::new("bpftool")
            .args(["-j", "prog", "show"])
            .args(args),
    )?;
    serde_json::from_str(&out).context("bpftool prog show: not JSON")
}

/// The tag and translated size of the in-process `xdp_to_tenant`.
fn in_process_code(ebpf: &Rig) -> Result<(String, u64)> {
    let prog = super::measure::xdp(ebpf, program::XDP_TO_TENANT)?;
    let id = prog.info().context("the in-process program's info")?.id();
    let info = prog_info(&["id", &id.to_string()])?;
    Ok((text(&info, "tag")?, num(&info, "bytes_xlated")?))
}

/// The daemon's slot of `tenant` (from its API).
fn tenant_slot(node: &Netns, tenant: &str) -> Result<u32> {
    let path = format!("/api/v1/tenants/{tenant}");
    let body =
        warden_tests::http::get_in_netns(node.name(), API.parse().expect("an address"), &path)?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: not JSON"))?;
    let index = v.get("index").and_then(Value::as_u64);
    u32::try_from(index.with_context(|| format!("{path}: no index"))?).context("tenant index")
}

/// How a case's pairs are run and checked.
struct Timing {
    spec: &'static Spec,
    cpu: usize,
    frame: PathBuf,
    /// The daemon's pinned maps.
    maps: PathBuf,
    slot: u32,
}

impl Timing {
    /// `pairs` ABBA pairs (baseline, daemon's program), after an untimed warm-up (for
    /// the blackholed case, until the daemon's blackhole is in force); every run of the
    /// daemon's program must take the case's path in every repetition.
    fn pairs(&self, prog: &Path, base: &Path, pairs: u32, repeat: u32) -> Result<Figures> {
        let warm = repeat.div_ceil(10);
        self.run(base, warm)?;
        if self.spec.blackholed {
            eventually(BLACKHOLE_WAIT, || Ok(self.run(prog, warm)?.0 == XDP_DROP))
                .context("the daemon did not blackhole the flooded address")?;
        }
        self.checked(prog, warm)?;
        let (mut base_ns, mut case_ns) = (Vec::new(), Vec::new());
        for pair in 0..pairs {
            let base_first = pair % 2 == 0;
            if base_first {
                base_ns.push(self.run(base, repeat)?.1);
            }
            case_ns.push(self.checked(prog, repeat)?);
            if !base_first {
                base_ns.push(self.run(base, repeat)?.1);
            }
        }
        Ok(Figures::new(case_ns, base_ns, repeat))
    }

    /// A run of the daemon's program that must count every repetition to the tenant,
    /// and pass each (or drop each as blackholed).
    fn checked(&self, prog: &Path, repeat: u32) -> Result<u32> {
        let before = self.seen()?;
        let (ret, ns) = self.run(prog, repeat)?;
        let after = self.seen()?;
        let (packets, blackholed) = (after.0 - before.0, after.1 - before.1);
        let want = (
            if self.spec.blackholed {
                XDP_DROP
            } else {
                XDP_PASS
            },
            if self.spec.blackholed {
                u64::from(repeat)
            } else {
                0
            },
        );
        ensure!(
            (ret, packets, blackholed) == (want.0, u64::from(repeat), want.1),
            "the daemon's program returned {ret} and counted {packets} packets and \
             {blackholed} blackhole drops of {repeat} repetitions to {} (expected {}, \
             {repeat} and {}): it did not take the case's path",
            self.spec.tenant,
            want.0,
            want.1
        );
        Ok(ns)
    }

    /// The tenant's to-tenant packets and blackhole drops, summed over CPUs, from the
    /// daemon's pinned maps.
    fn seen(&self) -> Result<(u64, u64)> {
        let open = |name: &str| {
            let path = self.maps.join(name);
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))
        };
        let index = tenant_counter_index(self.slot, direction::IN);
        let counters: PerCpuArray<MapData, Counters> =
            PerCpuArray::try_from(Map::PerCpuArray(open(map::TENANT_COUNTERS)?))?;
        let drops: PerCpuArray<MapData, DropCounters> =
            PerCpuArray::try_from(Map::PerCpuArray(open(map::DROP_COUNTERS)?))?;
        let packets = counters.get(&index, 0)?.iter().map(|c| c.packets).sum();
        let drops = drops.get(&index, 0)?;
        Ok((
            packets,
            drops.iter().map(|d| d.packets[reason::BLACKHOLE]).sum(),
        ))
    }

    /// `taskset -c CPU bpftool prog run pinned PROG data_in FRAME repeat N`: (return
    /// value, mean ns per repetition).
    fn run(&self, prog: &Path, repeat: u32) -> Result<(u32, u32)> {
        let mut cmd = Command::new("taskset");
        cmd.args([
            "-c",
            &self.cpu.to_string(),
            "bpftool",
            "prog",
            "run",
            "pinned",
        ])
        .arg(prog)
        .arg("data_in")
        .arg(&self.frame)
        .args(["repeat", &repeat.to_string()]);
        let out = util::capture(&mut cmd)?;
        parse_run(&out).with_context(|| format!("bpftool prog run printed {out:?}"))
    }
}

/// "Return value: 2, duration (average): 31ns" -> (2, 31).
fn parse_run(out: &str) -> Result<(u32, u32)> {
    let ret = out
        .split("Return value: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .context("no return value")?;
    let ns = out
        .split("duration (average): ")
        .nth(1)
        .and_then(|s| s.split("ns").next())
        .context("no mean duration")?;
    Ok((ret.trim().parse()?, ns.trim().parse()?))
}

fn num(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("no number {key}"))
}

fn text(v: &Value, key: &str) -> Result<String> {
    Ok(v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no text {key}"))?
        .to_owned())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

#[cfg(test)]
mod tests {
    /// The stored frames are the ones the bench describes.
    #[test]
    fn the_stored_frames_are_the_described_datagrams() {
        for s in &super::SPECS {
            assert_eq!(s.frame_bytes, s.frame().as_slice(), "{}", s.frame_file);
            assert_eq!(s.frame_bytes.len(), 142);
        }
    }

    #[test]
    fn bpftool_prog_run_output_parses() {
        let out = "Return value: 2, duration (average): 31ns\n";
        assert_eq!(super::parse_run(out).expect("parses"), (2, 31));
    }
}
