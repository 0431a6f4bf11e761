//! Egress shaping on host-mode interfaces: from-tenant traffic over its plan waits in a
//! queue instead of being dropped by a policer.
//!
//! Each host-mode interface gets an HTB qdisc at its root (handle
//! [`shape::MAJOR`](warden_common::shape::MAJOR)), with a default class for everything
//! unshaped (1 Tbit/s, [`DEFAULT_MINOR`](warden_common::shape::DEFAULT_MINOR)) and one
//! class per tenant with an egress plan (rate = ceil = the plan, burst and cburst the
//! plan's burst), each with a `bfifo` leaf of [`queue_limit`] bytes: the queue is
//! bounded, and what overflows it is the tenant's `bandwidth` drop (read from the leaf's
//! statistics, [`Shaper::refresh_drops`]). The tcx program steers a tenant's packets into
//! its class by `skb->priority`, which it reads from the tenant's settings
//! (`TenantConfig::shape_class`, written with the policy generation).
//!
//! Changes are ordered so no tenant is unshaped in between: classes are created or
//! resized before the generation that names them is switched on
//! ([`Shaper::prepare`]), and removed only after the switch ([`Shaper::finish`]). The
//! qdisc stays when the daemon exits (enforcement does not depend on it); a restarted
//! daemon adopts it and rewrites every class once; `warden uninstall` removes it
//! ([`remove_all`]), found through a marker directory per interface under
//! `<bpffs>/shaped/`.
//!
//! The qdiscs are configured by running `tc` from iproute2 (`tc -batch -`, one process
//! per change however many classes), not through netlink: the netlink crates have no
//! HTB class options, and building HTB's nested attributes and rate tables by hand
//! would be a second, untested copy of what `tc` does. `tc`'s own error messages are
//! passed on with the command that failed.
//!
//! EDT (`skb->tstamp` with an `fq` qdisc, as Cilium shapes) is not built: the daemon
//! reports whether the kernel has `fq` ([`ShapingStatus::fq`], probed as the default
//! class's leaf, where it also serves unshaped traffic), and shapes with HTB either way.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use warden_common::shape;

use warden_policy::tenant::TenantSlot;

use super::{escape_name, io, Compiled, Dataplane, DataplaneError, Result};

/// The shortest queue a class gets, in bytes. A local TCP sender whose packet the queue
/// drops stalls until its next transmit (measured: 8 streams into a 20 Mbit/s class
/// with a 48 KiB queue got 2.7 Mbit/s, with 128 KiB the plan), so the queue is sized
/// for TCP's bursts (its small-queues limit keeps it far from full), and mostly UDP
/// over the plan overflows it.
pub const MIN_QUEUE_BYTES: u64 = 256 * 1024;
/// How long a full queue takes to drain at the plan: its limit in time.
pub const QUEUE_SECONDS: f64 = 0.100;
/// The default class's rate: unshaped in practice.
const DEFAULT_RATE: &str = "1Tbit";
/// HTB's quantum for every class (bytes): only used when classes borrow, which these
/// (rate = ceil, no parent) never do; set so HTB does not derive one from huge rates.
const QUANTUM: u32 = 60_000;

/// The leaf queue (bytes) of a plan of `bps` bits/s: [`QUEUE_SECONDS`] of it, at least
/// [`MIN_QUEUE_BYTES`].
pub fn queue_limit(bps: u64) -> u64 {
    ((bps as f64 / 8.0 * QUEUE_SECONDS) as u64).max(MIN_QUEUE_BYTES)
}

/// One tenant's class: its plan in bits/s and burst in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassSpec {
    pub bps: u64,
    pub burst: u64,
}

/// What `warden status` shows of shaping.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShapingStatus {
    /// `htb`: from-tenant plans on host-mode interfaces are HTB classes.
    pub mode: String,
    /// Whether the kernel has the `fq` qdisc (EDT shaping would need it; not used).
    pub fq: bool,
    /// The interfaces with Warden's HTB qdisc.
    pub interfaces: Vec<String>,
    /// Tenant classes per interface.
    pub classes: usize,
}

/// The HTB qdiscs of the host-mode interfaces and what their classes hold.
pub(crate) struct Shaper {
    pub(crate) interfaces: Vec<String>,
    fq: bool,
    /// Tenant classes as this daemon last wrote them, by slot; `None` after adoption,
    /// when their settings are unknown (every class is then written once).
    written: Option<HashMap<u32, ClassSpec>>,
    /// Tenant slots whose class exists (on every interface).
    present: HashSet<u32>,
    /// Slots whose class goes after the switch ([`Shaper::finish`]).
    leaving: Vec<u32>,
    /// Leaf drops by slot, summed over the interfaces, as last read.
    drops: HashMap<u32, u64>,
    /// Drops of removed classes, kept under their slot until it is given to a new
    /// tenant, so a tenant's counter never goes back.
    carried: HashMap<u32, u64>,
}

fn tc_error(what: impl Into<String>, detail: impl Into<String>) -> DataplaneError {
    DataplaneError::Shaping {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Runs `tc ARGS`, returning its standard output.
fn tc(args: &[&str]) -> Result<String> {
    let out = Command::new("tc").args(args).output().map_err(|e| {
        tc_error(
            format!("running tc {}", args.join(" ")),
            format!("{e} (egress shaping needs tc from iproute2 on the PATH)"),
        )
    })?;
    if !out.status.success() {
        return Err(tc_error(
            format!("tc {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `commands` (one `tc` command line each, without `tc`) in one `tc -batch`.
fn tc_batch(commands: &[String]) -> Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("tc")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tc_error(
                "running tc -batch",
                format!("{e} (egress shaping needs tc from iproute2 on the PATH)"),
            )
        })?;
    let text = commands.join("\n") + "\n";
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| tc_error("waiting for tc -batch", e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // tc names the failed line as "Command failed -:N".
        let failed = err
            .lines()
            .find_map(|l| l.trim().strip_prefix("Command failed -:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .and_then(|n| commands.get(n.saturating_sub(1)))
            .map_or(String::new(), |c| format!(" (at `tc {c}`)"));
        return Err(tc_error(
            format!("tc -batch of {} commands{failed}", commands.len()),
            err.trim().to_string(),
        ));
    }
    if let Some(Err(e)) = written {
        return Err(tc_error("writing to tc -batch", e.to_string()));
    }
    Ok(())
}

fn handle(minor: u32) -> String {
    format!("{:x}:{:x}", shape::MAJOR, minor)
}

fn root_handle() -> String {
    format!("{:x}:", shape::MAJOR)
}

/// Whether `iface`'s root qdisc is Warden's HTB.
fn has_our_root(iface: &str) -> Result<bool> {
    let text = tc(&["-j", "qdisc", "show", "dev", iface, "root"])?;
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| tc_error(format!("reading tc qdisc show dev {iface}"), e.to_string()))?;
    Ok(v.as_array().and_then(|a| a.first()).is_some_and(|q| {
        q["kind"].as_str() == Some("htb") && q["handle"].as_str() == Some(&root_handle())
    }))
}

/// The tenant slots with a class on `iface` (from `tc class show`, whose HTB classes
/// have no JSON form in iproute2 6.1).
fn class_slots(iface: &str) -> Result<HashSet<u32>> {
    let text = tc(&["class", "show", "dev", iface])?;
    let prefix = format!("{:x}:", shape::MAJOR);
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("class htb "))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|h| h.strip_prefix(&prefix))
        .filter_map(|m| u32::from_str_radix(m, 16).ok())
        .filter(|&m| m >= 2)
        .map(|m| m - 2)
        .collect())
}

/// The marker directory of `iface` under `bpffs`.
fn marker(bpffs: &Path, iface: &str) -> PathBuf {
    bpffs.join("shaped").join(escape_name(iface))
}

impl Shaper {
    /// Puts Warden's HTB qdisc at the root of each of `interfaces` (adopting one an
    /// earlier daemon left) with its default class.
    /// `created` gets the interfaces whose qdisc this call put there (not adopted).
    pub(crate) fn open(interfaces: &[String], created: &mut Vec<String>) -> Result<Shaper> {
        let mut present: Option<HashSet<u32>> = None;
        let mut fq = false;
        let mut adopted = true;
        for iface in interfaces {
            if has_our_root(iface)? {
                tracing::info!(interface = %iface, "adopting the egress shaping qdisc");
            } else {
                adopted = false;
                tc(&[
                    "qdisc",
                    "replace",
                    "dev",
                    iface,
                    "root",
                    "handle",
                    &root_handle(),
                    "htb",
                    "default",
                    "1",
                ])?;
                created.push(iface.clone());
            }
            let q = QUANTUM.to_string();
            tc(&[
                "class",
                "replace",
                "dev",
                iface,
                "parent",
                &root_handle(),
                "classid",
                &handle(shape::DEFAULT_MINOR),
                "htb",
                "rate",
                DEFAULT_RATE,
                "ceil",
                DEFAULT_RATE,
                "burst",
                "16m",
                "cburst",
                "16m",
                "quantum",
                &q,
            ])?;
            // fq, where the kernel has it, serves the unshaped traffic fairly; whether it
            // exists is what EDT shaping would need.
            let parent = handle(shape::DEFAULT_MINOR);
            match tc(&["qdisc", "replace", "dev", iface, "parent", &parent, "fq"]) {
                Ok(_) => fq = true,
                Err(e) => tracing::debug!(interface = %iface, error = %e, "no fq qdisc"),
            }
            let slots = class_slots(iface)?;
            present = Some(match present {
                None => slots,
                Some(p) => p.union(&slots).copied().collect(),
            });
        }
        tracing::info!(interfaces = ?interfaces, fq, "egress plans on host-mode interfaces are shaped (htb)");
        Ok(Shaper {
            interfaces: interfaces.to_vec(),
            fq,
            written: if adopted { None } else { Some(HashMap::new()) },
            present: present.unwrap_or_default(),
            leaving: Vec::new(),
            drops: HashMap::new(),
            carried: HashMap::new(),
        })
    }

    /// Creates or resizes the classes of `wanted` (slot -> plan) before the generation
    /// that uses them is switched on; classes of `added` slots (given to a new tenant)
    /// are made anew, so their statistics start at zero. Classes no longer wanted are
    /// left for [`Shaper::finish`].
    pub(crate) fn prepare(
        &mut self,
        wanted: &BTreeMap<u32, ClassSpec>,
        added: &HashSet<u32>,
    ) -> Result<()> {
        let mut commands = Vec::new();
        let q = QUANTUM;
        for (&slot, spec) in wanted {
            let renewed = added.contains(&slot) && self.present.contains(&slot);
            let same = self
                .written
                .as_ref()
                .and_then(|w| w.get(&slot))
                .is_some_and(|s| s == spec && self.present.contains(&slot));
            if same && !renewed {
                continue;
            }
            let class = handle(slot + 2);
            let (bps, burst, limit) = (spec.bps, spec.burst, queue_limit(spec.bps));
            for iface in &self.interfaces {
                if renewed {
                    commands.push(format!("class del dev {iface} classid {class}"));
                }
                commands.push(format!(
                    "class replace dev {iface} parent {} classid {class} htb rate {bps}bit ceil {bps}bit burst {burst} cburst {burst} quantum {q}",
                    root_handle()
                ));
                commands.push(format!(
                    "qdisc replace dev {iface} parent {class} bfifo limit {limit}"
                ));
            }
        }
        tc_batch(&commands)?;
        let written = self.written.get_or_insert_with(HashMap::new);
        for (&slot, spec) in wanted {
            written.insert(slot, *spec);
            self.present.insert(slot);
            if added.contains(&slot) {
                self.carried.remove(&slot);
                self.drops.remove(&slot);
            }
        }
        self.leaving = self
            .present
            .iter()
            .filter(|s| !wanted.contains_key(s))
            .copied()
            .collect();
        Ok(())
    }

    /// Removes the classes [`Shaper::prepare`] left for after the switch; their drops
    /// stay counted under their slot.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let leaving = std::mem::take(&mut self.leaving);
        let mut commands = Vec::new();
        for slot in &leaving {
            for iface in &self.interfaces {
                commands.push(format!(
                    "class del dev {iface} classid {}",
                    handle(slot + 2)
                ));
            }
        }
        let done = tc_batch(&commands);
        for slot in &leaving {
            if let Some(d) = self.drops.remove(slot) {
                *self.carried.entry(*slot).or_default() += d;
            }
            self.present.remove(slot);
            if let Some(w) = self.written.as_mut() {
                w.remove(slot);
            }
        }
        done
    }

    /// Reads every tenant class's leaf drops (`tc -s -j qdisc show`).
    pub(crate) fn refresh_drops(&mut self) -> Result<()> {
        let mut drops: HashMap<u32, u64> = HashMap::new();
        let prefix = format!("{:x}:", shape::MAJOR);
        for iface in &self.interfaces {
            let text = tc(&["-s", "-j", "qdisc", "show", "dev", iface])?;
            let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
                tc_error(
                    format!("reading tc -s qdisc show dev {iface}"),
                    e.to_string(),
                )
            })?;
            for q in v.as_array().into_iter().flatten() {
                let Some(minor) = q["parent"]
                    .as_str()
                    .and_then(|p| p.strip_prefix(&prefix))
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                    .filter(|&m| m >= 2)
                else {
                    continue;
                };
                *drops.entry(minor - 2).or_default() += q["drops"].as_u64().unwrap_or(0);
            }
        }
        self.drops = drops;
        Ok(())
    }

    /// Packets of tenant `slot` dropped by its queue (and by its earlier classes).
    pub(crate) fn drops(&self, slot: u32) -> u64 {
        self.drops.get(&slot).copied().unwrap_or(0) + self.carried.get(&slot).copied().unwrap_or(0)
    }

    pub(crate) fn status(&self) -> ShapingStatus {
        ShapingStatus {
            mode: "htb".into(),
            fq: self.fq,
            interfaces: self.interfaces.clone(),
            classes: self.present.len(),
        }
    }
}

/// Removes Warden's HTB qdisc from the root of `iface`, if it is there.
pub(crate) fn remove_root(iface: &str) -> Result<()> {
    if has_our_root(iface)? {
        tc(&[
            "qdisc",
            "del",
            "dev",
            iface,
            "root",
            "handle",
            &root_handle(),
        ])?;
    }
    Ok(())
}

/// Removes Warden's HTB qdisc from every interface marked under `bpffs` but those in
/// `keep` (all of them with an empty `keep`: `warden uninstall`), with their markers.
/// An interface that is gone, or whose root qdisc is no longer Warden's, only loses its
/// marker. Returns how many qdiscs were removed.
pub fn remove_all(bpffs: &Path, keep: &[String]) -> Result<usize> {
    let dir = bpffs.join("shaped");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(0);
    };
    let keep: HashSet<String> = keep.iter().map(|k| escape_name(k)).collect();
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(io(&dir))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if keep.contains(&name) {
            continue;
        }
        let iface = name.replace("%2e", ".").replace("%25", "%");
        match has_our_root(&iface) {
            Ok(true) => {
                tc(&[
                    "qdisc",
                    "del",
                    "dev",
                    &iface,
                    "root",
                    "handle",
                    &root_handle(),
                ])?;
                removed += 1;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(interface = %iface, error = %e, "not removing its shaping qdisc: cannot read it")
            }
        }
        fs::remove_dir(&path).map_err(io(&path))?;
    }
    if keep.is_empty() {
        fs::remove_dir(&dir).map_err(io(&dir))?;
    }
    Ok(removed)
}

impl Dataplane {
    /// Shapes from-tenant plans on `host_interfaces` (host mode's NICs): puts Warden's
    /// HTB qdisc at their roots, or adopts it ([`Shaper::open`]). Without host-mode
    /// interfaces nothing is shaped and every plan is policed.
    ///
    /// Part of the start under way: a failed start removes the markers and the qdiscs
    /// it created (an adopted qdisc stays, with the classes the earlier daemon left).
    pub fn set_up_shaping(&mut self, host_interfaces: &[String]) -> Result<()> {
        self.shaper = None;
        if host_interfaces.is_empty() {
            return Ok(());
        }
        for iface in host_interfaces {
            let m = marker(&self.bpffs, iface);
            self.create_dirs(&m)?;
        }
        let mut created = Vec::new();
        let opened = Shaper::open(host_interfaces, &mut created);
        for iface in created {
            self.record(super::start::Undo::Qdisc(iface));
        }
        self.shaper = Some(opened?);
        Ok(())
    }

    /// Removes Warden's HTB qdisc from interfaces that are no longer host-mode ones (at
    /// the end of a start).
    pub fn remove_other_shaping(&self) -> Result<usize> {
        let keep = self
            .shaper
            .as_ref()
            .map(|s| s.interfaces.clone())
            .unwrap_or_default();
        if keep.is_empty() {
            // Nothing to keep: every marker goes, and the directory with them.
            return remove_all(&self.bpffs, &[]);
        }
        remove_all(&self.bpffs, &keep)
    }

    /// Gives each tenant of `compiled` with an egress plan its class (in its settings'
    /// `shape_class`) and creates or resizes the classes, before `compiled` is applied;
    /// `added` are the slots given to new tenants. Call [`Dataplane::finish_shaping`]
    /// after the apply. Without shaping, nothing changes.
    pub fn shape(&mut self, compiled: &mut Compiled, added: &[TenantSlot]) -> Result<()> {
        let Some(shaper) = self.shaper.as_mut() else {
            return Ok(());
        };
        let mut wanted = BTreeMap::new();
        let mut policed = 0usize;
        for (&slot, &spec) in &compiled.egress_plans {
            let class = shape::class_id(slot);
            if class == 0 {
                policed += 1;
                continue;
            }
            if let Some(cfg) = compiled.configs.get_mut(&slot) {
                cfg.shape_class = class;
                wanted.insert(slot, spec);
            }
        }
        if policed > 0 {
            tracing::warn!(
                policed,
                max = shape::MAX_SLOTS,
                "tenants with slots past the shaping limit have their egress plans policed, not shaped"
            );
        }
        let added: HashSet<u32> = added.iter().map(|s| s.0).collect();
        shaper.prepare(&wanted, &added)
    }

    /// Removes the classes the last [`Dataplane::shape`] left for after the switch. A
    /// failure leaves unused classes behind (no tenant's packets reach them); it is
    /// logged, and the next apply tries again.
    pub fn finish_shaping(&mut self) {
        if let Some(shaper) = self.shaper.as_mut() {
            if let Err(e) = shaper.finish() {
                tracing::warn!(error = %e, "removing shaping classes no longer used");
            }
        }
    }

    /// Reads the shaping queues' drops, which the drop counters then include as the
    /// tenants' `bandwidth` drops out (once a second, by the daemon's sampler).
    pub fn refresh_shaping_drops(&mut self) -> Result<()> {
        match self.shaper.as_mut() {
            Some(s) => s.refresh_drops(),
            None => Ok(()),
        }
    }

    /// Drops of tenant `slot`'s shaping queue, as last read.
    pub(crate) fn queue_drops(&self, slot: u32) -> u64 {
        self.shaper.as_ref().map_or(0, |s| s.drops(slot))
    }

    /// Shaping as it is set up; `None` when no interface is shaped.
    pub fn shaping(&self) -> Option<ShapingStatus> {
        self.shaper.as_ref().map(Shaper::status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_holds_100_ms_of_its_plan_and_at_least_256_kib() {
        assert_eq!(
            queue_limit(20_000_000),
            MIN_QUEUE_BYTES,
            "250 KB is under the floor"
        );
        assert_eq!(queue_limit(200_000_000), 2_500_000);
    }

    #[test]
    fn class_ids_are_the_slot_plus_two_under_the_qdisc_and_none_past_the_limit() {
        assert_eq!(shape::class_id(0), 0x7764_0002);
        assert_eq!(handle(2), "7764:2");
        assert_eq!(shape::class_id(shape::MAX_SLOTS), 0);
    }
}
