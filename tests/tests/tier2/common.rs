//! Helpers shared by the Tier 2 tests: traffic, and reading what the daemon and the
//! kernel counted.

use std::{collections::HashMap, fs::File, os::fd::AsRawFd as _, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Map, MapData, PerCpuArray},
    programs::{SchedClassifier, TcAttachType},
};
use serde_json::Value;
use warden_common::{direction, map, tenant_counter_index, Counters};
use warden_tests::{lab::Netns, topology::StandardLab};

/// The default burst of an ingress plan, in seconds of the plan
/// (`warden_dataplane::compile::DEFAULT_INGRESS_BURST_SECONDS`): a policer lets any one
/// second carry the plan and this much more.
pub const INGRESS_BURST_SECONDS: f64 = 0.2;

/// Expected traffic: (tenant, direction index) -> (packets, bytes).
pub type Expected = HashMap<(String, usize), (u64, u64)>;

pub fn add(exp: &mut Expected, tenant: &str, dir: u32, packets: u64, frame: u64) {
    let e = exp.entry((tenant.to_string(), dir as usize)).or_default();
    e.0 += packets;
    e.1 += packets * frame;
}

/// Ethernet + IP + ICMP echo header + payload.
pub fn ping_frame(v6: bool, payload: u64) -> u64 {
    14 + if v6 { 40 } else { 20 } + 8 + payload
}

/// `ping` of `count` echoes with `payload` bytes each; fails unless every reply came.
pub fn ping(ns: &Netns, dst: &str, count: u64, payload: u64) -> Result<()> {
    let (c, s) = (count.to_string(), payload.to_string());
    let out = ns.exec_timeout(
        &[
            "ping", "-n", "-q", "-c", &c, "-i", "0.01", "-s", &s, "-W", "2", dst,
        ],
        Duration::from_secs(30),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("{count} packets transmitted, {count} received");
    if !text.contains(&want) {
        bail!("ping {dst} from {}: expected `{want}`:\n{text}", ns.name());
    }
    Ok(())
}

/// `ping -n -q ARGS DST` from `ns`: how many replies came back (loss is not an error;
/// bounded by the arguments' count and wait, and by 60 s).
pub fn ping_received(ns: &Netns, args: &[&str], dst: &str) -> Result<u64> {
    let mut cmd = vec!["ping", "-n", "-q"];
    cmd.extend_from_slice(args);
    cmd.push(dst);
    let out = ns.exec_unchecked(&cmd, Duration::from_secs(60))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("no ping summary:\n{text}"))?;
    line.split(", ")
        .nth(1)
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("bad ping summary: {line}"))
}

/// Per tenant `[out, in]` counters as the API reports them, with each tenant's index.
pub fn api_counters(lab: &StandardLab) -> Result<HashMap<String, (u32, [Counters; 2])>> {
    let v: Value = serde_json::from_str(&lab.get("/api/v1/tenants")?)?;
    let mut out = HashMap::new();
    for t in v.as_array().context("tenants is not a list")? {
        let id = t["id"].as_str().context("tenant without id")?.to_string();
        let index = t["index"].as_u64().context("tenant without index")? as u32;
        let dir = |d: &str| Counters {
            packets: t[d]["packets"].as_u64().unwrap_or(u64::MAX),
            bytes: t[d]["bytes"].as_u64().unwrap_or(u64::MAX),
        };
        out.insert(id, (index, [dir("out"), dir("in")]));
    }
    Ok(out)
}

/// The value of the unlabelled series `name` in `/metrics`, if exported.
pub fn metric(lab: &StandardLab, name: &str) -> Result<Option<f64>> {
    let text = lab.get("/metrics")?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| *series == name)
        .map(|(_, v)| v.parse().with_context(|| format!("{name} {v}")))
        .transpose()
}

/// Per tenant `[out, in]` counters as `/metrics` reports them.
pub fn metrics_counters(lab: &StandardLab) -> Result<HashMap<String, [Counters; 2]>> {
    let text = lab.get("/metrics")?;
    let mut out: HashMap<String, [Counters; 2]> = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        if name != "warden_tenant_bytes_total" && name != "warden_tenant_packets_total" {
            continue;
        }
        let label = |k: &str| {
            labels.split(',').find_map(|kv| {
                kv.strip_prefix(&format!("{k}=\""))
                    .map(|v| v.trim_end_matches(['"', '}']).to_string())
            })
        };
        let tenant = label("tenant").context("series without tenant")?;
        let d = match label("direction").as_deref() {
            Some("out") => 0,
            Some("in") => 1,
            other => bail!("bad direction {other:?} in {line}"),
        };
        let v: u64 = value
            .parse()
            .with_context(|| format!("bad value in {line}"))?;
        let c = &mut out.entry(tenant).or_default()[d];
        if name == "warden_tenant_bytes_total" {
            c.bytes = v
        } else {
            c.packets = v
        }
    }
    Ok(out)
}

/// The daemon's TENANT_COUNTERS map, found through its open file descriptors.
pub fn kernel_counter_map(pid: u32) -> Result<Map> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")) else {
            continue;
        };
        let id: u32 = id.trim().parse()?;
        let map = MapData::from_id(id)?;
        if map.info()?.name_as_str() == Some(map::TENANT_COUNTERS) {
            return Ok(Map::PerCpuArray(map));
        }
    }
    bail!("daemon {pid} holds no {} map", map::TENANT_COUNTERS)
}

pub fn kernel_counters(map: &Map, index: u32) -> Result<[Counters; 2]> {
    let arr: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(map)?;
    let mut out = [Counters::default(); 2];
    for d in 0..direction::COUNT {
        for c in arr.get(&tenant_counter_index(index, d), 0)?.iter() {
            out[d as usize].packets += c.packets;
            out[d as usize].bytes += c.bytes;
        }
    }
    Ok(out)
}

/// Names of the tcx egress programs on `iface` inside `ns` (queried from that namespace).
pub fn tcx_egress_programs(ns: &Netns, iface: &str) -> Result<Vec<String>> {
    let path = PathBuf::from("/run/netns").join(ns.name());
    let iface = iface.to_string();
    std::thread::spawn(move || -> Result<Vec<String>> {
        let f = File::open(&path)?;
        // SAFETY: joins the namespace on this short-lived thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let (_, progs) = SchedClassifier::query_tcx(&iface, TcAttachType::Egress)?;
        Ok(progs
            .iter()
            .map(|p| p.name_as_str().unwrap_or("?").to_string())
            .collect())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("tcx query thread panicked"))?
}

/// Name of the XDP program on `iface` in `ns`, if any (from `ip -j link`).
pub fn xdp_program(ns: &Netns, iface: &str) -> Result<Option<String>> {
    let v: Value = serde_json::from_str(&ns.ip(&["-j", "-d", "link", "show", "dev", iface])?)?;
    Ok(v[0]["xdp"]["prog"]["name"].as_str().map(str::to_string))
}

pub fn delta(after: [Counters; 2], before: [Counters; 2]) -> [(u64, u64); 2] {
    let d = |i: usize| {
        (
            after[i].packets - before[i].packets,
            after[i].bytes - before[i].bytes,
        )
    };
    [d(0), d(1)]
}

/// globex (its eth0 in the standard lab) asks for its gateway by ARP three times, with
/// its own address as the sender, and every request is answered: honest ARP passes.
pub fn honest_arp_answered(globex: &Netns) -> Result<()> {
    use warden_tests::topology::addr;
    let out = globex.exec_unchecked(
        &[
            "arping",
            "-c",
            "3",
            "-w",
            "3000000",
            "-S",
            addr::GLOBEX_V4,
            "-i",
            "eth0",
            addr::NODE_LAN0_V4,
        ],
        Duration::from_secs(20),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !(text.contains("3 packets received") || text.contains("Received 3")) {
        bail!("honest ARP unanswered:\n{text}");
    }
    Ok(())
}
