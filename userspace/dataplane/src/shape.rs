//! Egress shaping on host-mode interfaces: from-tenant traffic over its plan waits in a
//! queue instead of being dropped by a policer.
//!
//! Each host-mode interface gets an HTB qdisc at its root (handle
//! [`shape::MAJOR`](warden_common::shape::MAJOR)), with a default class for everything
//! unshaped (1 Tbit/s, [`DEFAULT_MINOR`](warden_common::shape::DEFAULT_MINOR)) and one
//! class per tenant with an egress plan (rate = ceil = the plan, burst and cburst the
//! plan's burst). Under it hang [`shape::LEAVES`] leaf classes (rate an eighth of the
//! plan, ceil the plan, equal quanta: HTB serves each backlogged leaf its rate and lends
//! what idle leaves leave to the others in turn, so they share the plan evenly), each with a `bfifo` of [`leaf_limit`] bytes: the queue
//! is bounded, and what overflows it is the tenant's `bandwidth` drop (read from the
//! leaves' statistics, [`Shaper::refresh_drops`]). The tcx program steers a tenant's
//! packets into its leaves by `skb->priority`: the first leaf's class is in the
//! tenant's settings (`TenantConfig::shape_class`, written with the policy generation),
//! and each new flow takes the tenant's next leaf, remembered per flow (`warden-ebpf`'s
//! `enforce::spread`). One FIFO per tenant let each TCP stream keep the share it
//! grabbed early (eight streams at 0.07 ms got 0.2 to 8 Mbit/s of 20).
//!
//! Classes are numbered by slot ([`shape::tenant_minor`], [`shape::leaf_minor`]): every
//! leaf's queue takes a qdisc handle, which the kernel draws from 32,768 per interface,
//! so [`shape::MAX_SLOTS`] (3,600) tenants of the policy can be shaped; the plans of
//! slots past it are policed.
//!
//! Creating HTB classes costs the kernel time that grows with the classes already
//! there (each new class walks every class of its qdisc to rebind filters): 30,000 of
//! them took 86 s of kernel time, a start blocked that long. So a class is made only
//! within a budget of that work: at an apply, the first [`SYNC_STEPS`] worth (some
//! 1,400 classes on an empty qdisc, about a tenth of a second: 155 tenants with their
//! leaves); the other plans stay
//! policed, as gateway mode's are, until their tenant needs a queue: out at half its
//! plan or more, or a `bandwidth` drop, as the daemon's once-a-second sample sees
//! ([`Dataplane::grow_shaping`], up to [`GROW_STEPS`] worth per second). Its class is
//! then made and its settings in the active generation point at it. A class, once
//! made, stays while its tenant has an egress plan (a restart adopts it).
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
//! The leaves' drops are read once a second from `tc -s qdisc show`, a line at a time
//! as tc writes them: the text of 30,000 leaves (5 MB as JSON, ten times that parsed)
//! is never held.
//!
//! EDT (`skb->tstamp` with an `fq` qdisc, as Cilium shapes) is not built: the daemon
//! reports whether the kernel has `fq` ([`ShapingStatus::fq`], probed as the default
//! class's leaf, where it also serves unshaped traffic), and shapes with HTB either way.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use warden_common::shape;

use warden_policy::tenant::TenantSlot;

use super::{escape_name, io, Compiled, Dataplane, Result};

mod tc;

use tc::{tc, tc_batch, tc_error, tc_lines};

/// The shortest queue a class gets, in bytes. A local TCP sender whose packet the queue
/// drops stalls until its next transmit (measured: 8 streams into a 20 Mbit/s class
/// with a 48 KiB queue got 2.7 Mbit/s, with 128 KiB the plan), so the queue is sized
/// for TCP's bursts (its small-queues limit keeps it far from full), and mostly UDP
/// over the plan overflows it.
pub const MIN_QUEUE_BYTES: u64 = 256 * 1024;
/// How long a full queue takes to drain at the plan: its limit in time.
pub const QUEUE_SECONDS: f64 = 0.100;
/// Kernel work allowed for new classes at an apply, in classes walked: making a class
/// walks every class already on its qdisc, so `k` new classes on `n` cost about
/// `k * n + k * k / 2` (measured: 4,000 on an empty qdisc 1.7 s, 8,000 7.2 s).
pub const SYNC_STEPS: u64 = 1_000_000;
/// The same, per once-a-second growth for tenants that need their queue.
pub const GROW_STEPS: u64 = 300_000;
/// The default class's rate: unshaped in practice.
const DEFAULT_RATE: &str = "1Tbit";
/// HTB's quantum for every class (bytes): only used when classes borrow, which these
/// (rate = ceil, no parent) never do; set so HTB does not derive one from huge rates.
const QUANTUM: u32 = 60_000;

/// The shortest queue of one leaf: two of the largest packets a local TCP stack hands
/// the qdisc (GSO, 64 KiB). A bfifo refuses a packet larger than its limit outright:
/// with 64 KiB leaves, one stream into a 20 Mbit/s plan got 0.55 Mbit/s.
pub const MIN_LEAF_QUEUE_BYTES: u64 = 128 * 1024;

/// The queue (bytes) of a plan of `bps` bits/s: [`QUEUE_SECONDS`] of it, at least
/// [`MIN_QUEUE_BYTES`].
pub fn queue_limit(bps: u64) -> u64 {
    ((bps as f64 / 8.0 * QUEUE_SECONDS) as u64).max(MIN_QUEUE_BYTES)
}

/// The queue (bytes) of each of a plan's leaves: its share of [`queue_limit`], at least
/// [`MIN_LEAF_QUEUE_BYTES`].
pub fn leaf_limit(bps: u64) -> u64 {
    (queue_limit(bps) / u64::from(shape::LEAVES)).max(MIN_LEAF_QUEUE_BYTES)
}

/// The smallest burst of a leaf (bytes), and its ceil burst: one full-size frame.
const LEAF_MIN_BURST: u64 = 1_514;

/// Classes per tenant: its class and its leaves.
const CLASSES_PER_TENANT: usize = shape::LEAVES as usize + 1;

/// One tenant's class: its plan in bits/s and burst in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassSpec {
    pub bps: u64,
    pub burst: u64,
}

/// What the programs counted of shaping since they were loaded (`SHAPE_STATS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShapeStats {
    /// New shaped flows given a leaf class (the tenant's next) and remembered.
    pub flows: u64,
    /// Shaped packets of flows whose leaf could not be remembered (the flow table's
    /// insert failed): each took the leaf of its flow hash.
    pub untracked_packets: u64,
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
    /// Egress plans still policed: their class is made when the tenant needs it.
    #[serde(default)]
    pub pending: usize,
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
    /// Adopted slots whose class has no leaves yet (made by a daemon before leaves):
    /// deleting it deletes no leaves.
    bare: HashSet<u32>,
    /// Slots whose class goes after the switch ([`Shaper::finish`]).
    leaving: Vec<u32>,
    /// Plans without a class yet (policed), by slot, with the tenant's `bandwidth`
    /// drops when last seen (`None` before the first sample).
    pending: BTreeMap<u32, (ClassSpec, Option<u64>)>,
    /// Leaf drops by slot, summed over the interfaces, as last read.
    drops: HashMap<u32, u64>,
    /// Drops of removed classes, kept under their slot until it is given to a new
    /// tenant, so a tenant's counter never goes back.
    carried: HashMap<u32, u64>,
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

/// The tenant slots with a class on `iface`, and those of them without leaves (as a
/// daemon before leaves made them), from `tc class show` (HTB classes have no JSON form
/// in iproute2 6.1).
fn class_slots(iface: &str) -> Result<(HashSet<u32>, HashSet<u32>)> {
    let (mut slots, mut leafy) = (HashSet::new(), HashSet::new());
    tc_lines(&["class", "show", "dev", iface], |line| {
        let minor = line
            .strip_prefix("class htb ")
            .and_then(|l| l.split_whitespace().next())
            .and_then(minor_of);
        match minor.and_then(shape::slot_of_minor) {
            Some((slot, None)) => {
                slots.insert(slot);
            }
            Some((slot, Some(_))) => {
                leafy.insert(slot);
            }
            None => {}
        }
    })?;
    let bare = slots.difference(&leafy).copied().collect();
    Ok((slots, bare))
}

/// The minor of `handle` when it is one of Warden's classes (`7764:MINOR`, hex).
fn minor_of(handle: &str) -> Option<u32> {
    let m = handle.strip_prefix(&root_handle())?;
    u32::from_str_radix(m, 16).ok()
}

/// The tenant slot whose class a `tc qdisc show` line's queue hangs from (`qdisc bfifo
/// 8001: parent 7764:e12 ...` is slot 0's first leaf's; a tenant class without leaves,
/// as an earlier daemon left it, is its slot's too).
fn leaf_slot(line: &str) -> Option<u32> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "parent")?;
    shape::slot_of_minor(minor_of(words.next()?)?).map(|(slot, _)| slot)
}

/// The drops of a `tc -s` statistics line (` Sent 0 bytes 0 pkt (dropped 3, ...`).
fn dropped(line: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix("Sent ")?;
    let n = rest.split("(dropped ").nth(1)?.split(',').next()?;
    n.trim().parse().ok()
}

/// How many new tenants' classes (each [`CLASSES_PER_TENANT`]) fit in `budget` (classes
/// walked) on a qdisc with `present` tenants' classes.
fn affordable_tenants(present: usize, budget: u64) -> usize {
    affordable(present * CLASSES_PER_TENANT, budget) / CLASSES_PER_TENANT
}

/// How many new classes fit in `budget` (classes walked) on a qdisc with `present`
/// classes: the `k`-th new class walks `present + k - 1`.
fn affordable(present: usize, budget: u64) -> usize {
    let mut cost = 0u64;
    let mut k = 0usize;
    loop {
        cost += (present + k) as u64 + 1;
        if cost > budget {
            return k;
        }
        k += 1;
    }
}

/// The `tc` commands that delete `slot`'s class on `iface`: its `leaves` first (HTB
/// refuses to delete a class with children), then the class.
fn delete_commands(iface: &str, slot: u32, leaves: bool, out: &mut Vec<String>) {
    for k in 0..shape::LEAVES {
        if leaves {
            let leaf = handle(shape::leaf_minor(slot, k));
            out.push(format!("class del dev {iface} classid {leaf}"));
        }
    }
    let class = handle(shape::tenant_minor(slot));
    out.push(format!("class del dev {iface} classid {class}"));
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
        let mut bare = HashSet::new();
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
            let (slots, without_leaves) = class_slots(iface)?;
            bare.extend(without_leaves);
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
            bare,
            leaving: Vec::new(),
            pending: BTreeMap::new(),
            drops: HashMap::new(),
            carried: HashMap::new(),
        })
    }

    /// Creates or resizes the classes of `wanted` (slot -> plan) before the generation
    /// that uses them is switched on; classes of `added` slots (given to a new tenant)
    /// are made anew, so their statistics start at zero. New classes are made within
    /// [`SYNC_STEPS`]; the other plans are left pending (policed) for
    /// [`Shaper::grow`]. Returns the slots whose class is ready. Classes no longer
    /// wanted are left for [`Shaper::finish`].
    pub(crate) fn prepare(
        &mut self,
        wanted: &BTreeMap<u32, ClassSpec>,
        added: &HashSet<u32>,
    ) -> Result<HashSet<u32>> {
        let mut commands = Vec::new();
        let mut budget = affordable_tenants(self.present.len(), SYNC_STEPS);
        let mut pending = BTreeMap::new();
        let mut ready = HashSet::new();
        for (&slot, spec) in wanted {
            let exists = self.present.contains(&slot);
            if !exists {
                if budget == 0 {
                    let seen = self
                        .pending
                        .get(&slot)
                        .filter(|_| !added.contains(&slot))
                        .and_then(|p| p.1);
                    pending.insert(slot, (*spec, seen));
                    continue;
                }
                budget -= 1;
            }
            ready.insert(slot);
            let renewed = added.contains(&slot) && exists;
            let same = self
                .written
                .as_ref()
                .and_then(|w| w.get(&slot))
                .is_some_and(|s| s == spec && exists);
            if same && !renewed {
                continue;
            }
            self.class_commands(slot, spec, renewed, &mut commands);
        }
        tc_batch(&commands)?;
        let written = self.written.get_or_insert_with(HashMap::new);
        for &slot in &ready {
            written.insert(slot, wanted[&slot]);
            self.present.insert(slot);
            // Rewritten, with leaves (an adopted class is always rewritten once).
            self.bare.remove(&slot);
            if added.contains(&slot) {
                self.carried.remove(&slot);
                self.drops.remove(&slot);
            }
        }
        if !pending.is_empty() {
            tracing::info!(
                shaped = ready.len(),
                policed = pending.len(),
                "egress plans without a shaping class yet are policed until their tenant needs a queue"
            );
        }
        self.pending = pending;
        self.leaving = self
            .present
            .iter()
            .filter(|s| !wanted.contains_key(s))
            .copied()
            .collect();
        Ok(ready)
    }

    /// The `tc` commands that make (or resize) `slot`'s class, its leaves and their
    /// queues on every interface; `renewed` deletes them first, so their statistics
    /// start at zero.
    fn class_commands(&self, slot: u32, spec: &ClassSpec, renewed: bool, out: &mut Vec<String>) {
        let class = handle(shape::tenant_minor(slot));
        let (bps, burst, q) = (spec.bps, spec.burst, QUANTUM);
        // Each leaf's own rate is an eighth of the plan: HTB serves every backlogged
        // leaf its rate, so TCP streams that are not always backlogged still share
        // evenly (with leaf rates of a sixteenth or less, the rest lent by the tenant's
        // class, streams of a 200 Mbit/s plan at 10 ms got 22.7 to 32.7 Mbit/s, with
        // next to nothing 15.7 to 85.6). A leaf within its own rate does not ask the
        // class, so the leaves' ceil bursts are one frame: with an eighth of the plan's
        // burst they let eight streams' first second run 16% over a 20 Mbit/s plan.
        let (leaf_bps, limit) = ((bps / u64::from(shape::LEAVES)).max(8), leaf_limit(bps));
        let leaf_burst = (burst / u64::from(shape::LEAVES)).max(LEAF_MIN_BURST);
        let leaf_cburst = LEAF_MIN_BURST;
        for iface in &self.interfaces {
            if renewed {
                delete_commands(iface, slot, !self.bare.contains(&slot), out);
            }
            out.push(format!(
                "class replace dev {iface} parent {} classid {class} htb rate {bps}bit ceil {bps}bit burst {burst} cburst {burst} quantum {q}",
                root_handle()
            ));
            for k in 0..shape::LEAVES {
                let leaf = handle(shape::leaf_minor(slot, k));
                out.push(format!(
                    "class replace dev {iface} parent {class} classid {leaf} htb rate {leaf_bps}bit ceil {bps}bit burst {leaf_burst} cburst {leaf_cburst} quantum {q}"
                ));
                out.push(format!(
                    "qdisc replace dev {iface} parent {leaf} bfifo limit {limit}"
                ));
            }
        }
    }

    /// Makes the classes of pending plans whose tenant needs a queue: `seen(slot)` is
    /// its rate out (bits/s) over the last second and its `bandwidth` drops so far
    /// (`None`: not sampled). Needed: out at half the plan or more, or drops since the
    /// last look; at most [`GROW_STEPS`] worth of classes per call. Returns the slots
    /// whose class was made.
    pub(crate) fn grow(
        &mut self,
        mut seen: impl FnMut(u32) -> Option<(f64, u64)>,
    ) -> Result<Vec<u32>> {
        let budget = affordable_tenants(self.present.len(), GROW_STEPS);
        let mut chosen = Vec::new();
        for (&slot, (spec, last)) in self.pending.iter_mut() {
            let Some((bps, drops)) = seen(slot) else {
                continue;
            };
            let dropped = last.is_some_and(|l| drops > l);
            *last = Some(drops);
            if chosen.len() < budget && (dropped || bps >= spec.bps as f64 / 2.0) {
                chosen.push((slot, *spec));
            }
        }
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let mut commands = Vec::new();
        for (slot, spec) in &chosen {
            self.class_commands(*slot, spec, false, &mut commands);
        }
        tc_batch(&commands)?;
        let written = self.written.get_or_insert_with(HashMap::new);
        for (slot, spec) in &chosen {
            self.pending.remove(slot);
            self.present.insert(*slot);
            written.insert(*slot, *spec);
        }
        tracing::info!(
            classes = chosen.len(),
            policed = self.pending.len(),
            "made the shaping classes of tenants that need their queue"
        );
        Ok(chosen.into_iter().map(|(slot, _)| slot).collect())
    }

    /// Removes the classes [`Shaper::prepare`] left for after the switch; their drops
    /// stay counted under their slot.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let leaving = std::mem::take(&mut self.leaving);
        let mut commands = Vec::new();
        for slot in &leaving {
            for iface in &self.interfaces {
                delete_commands(iface, *slot, !self.bare.contains(slot), &mut commands);
            }
        }
        let done = tc_batch(&commands);
        for slot in &leaving {
            if let Some(d) = self.drops.remove(slot) {
                *self.carried.entry(*slot).or_default() += d;
            }
            self.present.remove(slot);
            self.bare.remove(slot);
            if let Some(w) = self.written.as_mut() {
                w.remove(slot);
            }
        }
        done
    }

    /// Reads every tenant class's leaf drops (`tc -s qdisc show`, a line at a time).
    pub(crate) fn refresh_drops(&mut self) -> Result<()> {
        let mut drops: HashMap<u32, u64> = HashMap::new();
        for iface in &self.interfaces {
            let mut leaf = None;
            tc_lines(&["-s", "qdisc", "show", "dev", iface], |line| {
                if line.starts_with("qdisc ") {
                    leaf = leaf_slot(line);
                } else if let (Some(slot), Some(d)) = (leaf, dropped(line)) {
                    *drops.entry(slot).or_default() += d;
                    leaf = None;
                }
            })?;
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
            pending: self.pending.len(),
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
            if shape::class_id(slot) == 0 {
                policed += 1;
            } else if compiled.configs.contains_key(&slot) {
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
        // Only the tenants whose class is ready point at it; the others stay policed
        // until [`Dataplane::grow_shaping`] makes theirs.
        for slot in shaper.prepare(&wanted, &added)? {
            if let Some(cfg) = compiled.configs.get_mut(&slot) {
                cfg.shape_class = shape::class_id(slot);
            }
        }
        Ok(())
    }

    /// Makes the shaping classes of the tenants whose plan is still policed and who
    /// need a queue ([`Shaper::grow`]; `seen(slot)` is the tenant's rate out, bits/s,
    /// and its `bandwidth` drops so far), and points their settings in the active
    /// generation at them. Returns how many were made. Called by the daemon's sampler.
    pub fn grow_shaping(
        &mut self,
        seen: impl FnMut(TenantSlot) -> Option<(f64, u64)>,
    ) -> Result<usize> {
        let Some(shaper) = self.shaper.as_mut() else {
            return Ok(0);
        };
        let mut seen = seen;
        let slots = shaper.grow(|slot| seen(TenantSlot(slot)))?;
        self.point_at_classes(&slots)?;
        Ok(slots.len())
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
mod tests;
