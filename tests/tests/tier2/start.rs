//! Starts are all or nothing: a start that fails leaves nothing of its own pinned or
//! attached (an interface with jumbo frames, refused before anything is pinned; one the
//! kernel refuses part way through attaching; a start that fails after attaching
//! everything), and a start that fails after adopting a running enforcement leaves that
//! enforcement exactly as it was, still policing.

use std::{
    collections::BTreeSet,
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use aya::{
    maps::{Array, MapData},
    programs::{SchedClassifier, TcAttachType},
};
use serde_json::Value;
use warden_tests::{
    lab::Netns,
    topology::{addr, token, warden_binary, StandardLab},
};

use crate::common::{ping_received, tcx_egress_programs, xdp_program};

/// The largest MTU the XDP programs attach at on this machine (4 KiB pages).
const XDP_MAX_MTU: u32 = 3506;

/// Every entry under `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(dir)?.to_path_buf());
        }
    }
    Ok(out)
}

/// Every interface of the lab, by namespace.
fn interfaces(lab: &StandardLab) -> [(&Netns, &'static str); 8] {
    [
        (&lab.node, "wan0"),
        (&lab.node, "wan1"),
        (&lab.node, "lan0"),
        (&lab.node, "lan1"),
        (&lab.ext, "eth0"),
        (&lab.ext, "eth1"),
        (&lab.globex, "eth0"),
        (&lab.initech, "eth0"),
    ]
}

/// Fails if an XDP or tcx program is attached to any interface of the lab.
fn nothing_attached(lab: &StandardLab) -> Result<()> {
    for (ns, iface) in interfaces(lab) {
        let xdp = xdp_program(ns, iface)?;
        ensure!(xdp.is_none(), "{} {iface}: XDP {xdp:?} attached", ns.name());
        let tcx = tcx_egress_programs(ns, iface)?;
        ensure!(
            tcx.is_empty(),
            "{} {iface}: tcx {tcx:?} attached",
            ns.name()
        );
        let line = ns.ip(&["-d", "link", "show", "dev", iface])?;
        ensure!(
            !line.contains(" xdp"),
            "{} {iface} shows XDP:\n{line}",
            ns.name()
        );
    }
    Ok(())
}

/// The id of the XDP program on `iface` in `ns`, if any.
fn xdp_id(ns: &Netns, iface: &str) -> Result<Option<u64>> {
    let v: Value = serde_json::from_str(&ns.ip(&["-j", "-d", "link", "show", "dev", iface])?)?;
    Ok(v[0]["xdp"]["prog"]["id"].as_u64())
}

/// The ids of the tcx egress programs on `iface` in `ns` (queried from that namespace).
fn tcx_ids(ns: &Netns, iface: &str) -> Result<Vec<u32>> {
    let path = PathBuf::from("/run/netns").join(ns.name());
    let iface = iface.to_string();
    std::thread::spawn(move || -> Result<Vec<u32>> {
        let f = File::open(&path)?;
        // SAFETY: joins the namespace on this short-lived thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let (_, progs) = SchedClassifier::query_tcx(&iface, TcAttachType::Egress)?;
        Ok(progs.iter().map(|p| p.id()).collect())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("tcx query thread panicked"))?
}

/// What is attached where: (interface, XDP program id, tcx program ids).
type Attached = Vec<(&'static str, Option<u64>, Vec<u32>)>;

fn attached_on_node(lab: &StandardLab) -> Result<Attached> {
    ["wan0", "wan1", "lan0", "lan1"]
        .into_iter()
        .map(|iface| Ok((iface, xdp_id(&lab.node, iface)?, tcx_ids(&lab.node, iface)?)))
        .collect()
}

/// Runs `warden run -c policy` in the node namespace; it must exit non-zero within a
/// minute. Returns its log.
fn failed_start(lab: &StandardLab, policy: &Path) -> Result<String> {
    let warden = warden_binary()?;
    let warden = warden.to_str().context("warden path is not UTF-8")?;
    let policy = policy.to_str().context("policy path is not UTF-8")?;
    let proc = lab.node.spawn(&[warden, "run", "-c", policy])?;
    let log_path = proc.log_path().to_path_buf();
    let status = proc.wait(Duration::from_secs(60))?;
    let log = std::fs::read_to_string(&log_path)?;
    ensure!(
        !status.success(),
        "the start should have failed; log:\n{log}"
    );
    ensure!(
        !log.contains("serving API"),
        "the daemon served before failing:\n{log}"
    );
    Ok(log)
}

fn set_mtu(ns: &Netns, iface: &str, mtu: u32) -> Result<()> {
    ns.ip(&["link", "set", "dev", iface, "mtu", &mtu.to_string()])?;
    Ok(())
}

/// `ping`; how many of `count` replies came back (loss is not an error).
fn pings(ns: &Netns, dst: &str, count: u32) -> Result<u64> {
    let count = count.to_string();
    ping_received(ns, &["-c", &count, "-i", "0.02", "-W", "1"], dst)
}

/// The generation the kernel uses, from the pinned `ACTIVE` map.
fn active_generation(lab: &StandardLab) -> Result<u32> {
    let map = MapData::from_pin(lab.pinned_map(warden_common::map::ACTIVE)?)?;
    let arr: Array<MapData, u32> = Array::try_from(aya::maps::Map::Array(map))?;
    Ok(arr.get(&0, 0)?)
}

#[test]
fn a_jumbo_mtu_interface_is_refused_by_policy_check_and_at_start_before_anything_is_pinned(
) -> Result<()> {
    let lab = StandardLab::build("ws")?;
    set_mtu(&lab.initech, "eth0", 9000)?;
    set_mtu(&lab.node, "lan1", 9000)?;
    let text = lab.policy_text()?;
    let line = text
        .lines()
        .position(|l| l == "  - name: lan1")
        .context("the demo policy lists lan1")?
        + 1;
    let policy = lab.write_policy_as("jumbo.yaml", &text)?;
    let bpffs = lab.lab.bpffs()?;
    let before = tree(&bpffs)?;
    let expected = format!(
        "{}:{line}:11: interface lan1 has MTU 9000, above {XDP_MAX_MTU}, the largest Warden's XDP programs attach at",
        policy.display()
    );

    // `warden policy check` on the machine that has the interface.
    let warden = warden_binary()?;
    let warden = warden.to_str().context("utf-8")?;
    let p = policy.to_str().context("utf-8")?;
    let out = lab
        .node
        .exec_unchecked(&[warden, "policy", "check", p], Duration::from_secs(30))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "policy check: {out:?}");
    ensure!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(&expected)),
        "policy check said:\n{stderr}"
    );
    ensure!(stderr.contains(": 1 error(s)"), "{stderr}");

    // The daemon refuses the same before touching the kernel.
    let log = failed_start(&lab, &policy)?;
    ensure!(log.contains(&expected), "log:\n{log}");
    ensure!(tree(&bpffs)? == before, "pins left: {:?}", tree(&bpffs)?);
    nothing_attached(&lab)?;
    eprintln!("jumbo: refused at {}", expected);
    Ok(())
}

#[test]
fn a_start_the_kernel_refuses_part_way_through_attaching_leaves_nothing_pinned_or_attached(
) -> Result<()> {
    let lab = StandardLab::build("ws")?;
    // lan1 itself has a plain MTU (the check before the start passes), but its veth
    // peer sends jumbo frames: the kernel refuses XDP on lan1 after wan0 and lan0 are
    // attached.
    set_mtu(&lab.initech, "eth0", 9000)?;
    let policy = lab.write_policy()?;
    let bpffs = lab.lab.bpffs()?;
    let before = tree(&bpffs)?;
    let log = failed_start(&lab, &policy)?;
    ensure!(tree(&bpffs)? == before, "pins left: {:?}", tree(&bpffs)?);
    nothing_attached(&lab)?;
    ensure!(
        log.contains("attaching xdp_from_tenant to interface lan1: the kernel refused it for the frame size (ERANGE)"),
        "log:\n{log}"
    );
    ensure!(
        log.contains("start failed: undid what it did to the pinned dataplane")
            && log.contains("failed=0"),
        "log:\n{log}"
    );
    Ok(())
}

#[test]
fn a_start_that_fails_late_leaves_nothing_pinned_or_attached() -> Result<()> {
    let lab = StandardLab::build("ws")?;
    let policy = lab.write_policy()?;
    let bpffs = lab.lab.bpffs()?;
    let before = tree(&bpffs)?;

    // The API address is taken: refused before the kernel is touched.
    let squatter = lab.node.spawn(&[
        "socat",
        "TCP-LISTEN:9477,bind=127.0.0.1,reuseaddr,fork",
        "OPEN:/dev/null",
    ])?;
    lab.node.wait_tcp_listen(9477, Duration::from_secs(10))?;
    let log = failed_start(&lab, &policy)?;
    ensure!(
        log.contains("listening on 127.0.0.1:9477") && log.contains("Address already in use"),
        "log:\n{log}"
    );
    ensure!(tree(&bpffs)? == before, "pins left: {:?}", tree(&bpffs)?);
    nothing_attached(&lab)?;
    squatter.stop()?;

    // The object marker cannot be written: the start fails after every map is pinned,
    // the policy applied and every program attached, and undoes all of it.
    let marker = lab.rundir()?.join("state").join("dataplane-object");
    std::fs::create_dir_all(&marker)?;
    let log = failed_start(&lab, &policy)?;
    ensure!(
        log.contains(&format!("writing {}", marker.display())),
        "log:\n{log}"
    );
    let undone: u32 = log
        .split("undone=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .context("no undone= in the log")?
        .parse()?;
    // 21 maps and 6 links at least.
    ensure!(undone >= 27, "only {undone} steps undone:\n{log}");
    ensure!(tree(&bpffs)? == before, "pins left: {:?}", tree(&bpffs)?);
    nothing_attached(&lab)?;
    eprintln!("late failure: {undone} steps undone, nothing left");
    Ok(())
}

#[test]
fn a_start_that_fails_after_adopting_leaves_the_running_enforcement_as_it_was() -> Result<()> {
    let lab = StandardLab::build("ws")?;
    let warden = warden_binary()?;
    // The running enforcement: wan0 and lan0 only, globex (behind lan0) suspended.
    let full = lab.policy_text()?;
    let lan1 = "  - name: lan1\n    mode: gateway\n";
    ensure!(full.contains(lan1), "the demo policy lists lan1");
    let without_lan1 = lab.write_policy_as("running.yaml", &full.replace(lan1, ""))?;
    let d1 = lab.start_daemon(&warden, &without_lan1, &[])?;
    let r = lab.request(
        "POST",
        "/api/v1/tenants/globex/suspend",
        Some(r#"{"reason":"tier2: abuse report 16"}"#),
        Some(token::ADMIN),
    )?;
    ensure!(r.status == 200, "suspend: {} {}", r.status, r.body);
    // Stopped without --detach-on-exit: the pins keep enforcing.
    d1.stop()?;
    ensure!(pings(&lab.globex, addr::EXT_WAN1_V4, 5)? == 0);
    ensure!(pings(&lab.globex, addr::CONSOLE_V4, 5)? == 5);

    let bpffs = lab.lab.bpffs()?;
    let pinned = tree(&bpffs)?;
    let generation = active_generation(&lab)?;
    let attached = attached_on_node(&lab)?;
    ensure!(
        attached
            .iter()
            .filter(|(_, xdp, tcx)| xdp.is_some() && tcx.len() == 1)
            .count()
            == 2,
        "wan0 and lan0 should be enforcing: {attached:?}"
    );
    // A new build (another object id): the start replaces the programs under the
    // adopted links, then fails on lan1, whose veth peer sends jumbo frames.
    let marker = lab.rundir()?.join("state").join("dataplane-object");
    let object = std::fs::read_to_string(&marker)?;
    std::fs::write(&marker, "0000000000000000")?;
    set_mtu(&lab.initech, "eth0", 9000)?;
    let full_path = lab.write_policy_as("full.yaml", &full)?;
    let log = failed_start(&lab, &full_path)?;

    // Everything as it was: pins, generation, programs (the same ones, by id).
    ensure!(tree(&bpffs)? == pinned, "pins changed: {:?}", tree(&bpffs)?);
    ensure!(
        active_generation(&lab)? == generation,
        "the generation was not switched back"
    );
    let now = attached_on_node(&lab)?;
    ensure!(
        now == attached,
        "attachments changed:\n{attached:?}\n{now:?}"
    );
    ensure!(
        std::fs::read_to_string(&marker)? == "0000000000000000",
        "marker not put back"
    );
    ensure!(
        log.contains("adopting pinned dataplane")
            && log.contains("interface lan1: the kernel refused it for the frame size")
            && log.contains("the enforcement it adopted there runs on as it was")
            && log.contains("failed=0"),
        "log:\n{log}"
    );
    // Still policing: globex suspended, its console reachable, its packets counted.
    let counters = lab.pinned_map(warden_common::map::TENANT_COUNTERS)?;
    let sum = || -> Result<u64> {
        let map = aya::maps::Map::PerCpuArray(MapData::from_pin(&counters)?);
        let arr: aya::maps::PerCpuArray<&MapData, warden_common::Counters> =
            aya::maps::PerCpuArray::try_from(&map)?;
        let mut total = 0;
        for i in 0..warden_common::MAX_TENANTS * warden_common::direction::COUNT {
            total += arr.get(&i, 0)?.iter().map(|c| c.packets).sum::<u64>();
        }
        Ok(total)
    };
    let counted = sum()?;
    ensure!(pings(&lab.globex, addr::EXT_WAN1_V4, 10)? == 0);
    ensure!(pings(&lab.globex, addr::CONSOLE_V4, 10)? == 10);
    ensure!(sum()? >= counted + 30, "packets no longer counted");

    // A later start with the running policy finds it consistent and adopts it.
    set_mtu(&lab.initech, "eth0", 1500)?;
    std::fs::write(&marker, &object)?;
    let d3 = lab.start_daemon(&warden, &without_lan1, &[])?;
    let log = d3.log();
    ensure!(
        log.contains("how=adopted")
            && !log.contains("how=attached")
            && !log.contains("how=replaced"),
        "restart did not adopt:\n{log}"
    );
    ensure!(pings(&lab.globex, addr::EXT_WAN1_V4, 5)? == 0);
    d3.stop()?;
    eprintln!(
        "adopted then failed: generation {generation} kept, programs {attached:?} kept, globex still suspended"
    );
    Ok(())
}
