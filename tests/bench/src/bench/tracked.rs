//! The tracked remotes: the load of a million remotes contacted through
//! `xdp_bench_new_flow` before any case is timed, checked, and its false-positive rate.

use std::net::Ipv6Addr;

use anyhow::{bail, ensure, Context as _, Result};
use aya::{TestRun, TestRunOptions};
use serde_json::json;
use warden_common::facts::{
    contact_key, contact_tag, fact_counter, fold_addr, CONTACT_WORDS, FLOOD_EPOCH_SHIFT,
    PENDING_SLOTS, SKETCH_COUNT_BITS, SKETCH_ROWS, SKETCH_WIDTH,
};
use warden_tests::packets::{tcp, Frame, Ipv6, L4};

use super::{
    facts::{contact_epoch, fact_counters, filter_bits, FactMaps},
    fixtures::{host_v6, loader_tenant, tenant_mac, tracked_remote},
    measure::xdp,
    monotonic_ns,
    node::Rig,
    FP_PROBES, LOADERS, NEW_FLOW_PORT, PER_LOADER, TRACKED_REMOTES, XDP_BENCH_NEW_FLOW, XDP_PASS,
};

/// The tracked remotes' state as loaded and checked.
pub(super) struct Tracked {
    /// The contact epoch of the load (truncated to 32 bits, as in a word).
    pub(super) epoch: u64,
    /// Each filter word's bits after the load.
    pub(super) words: Vec<u32>,
    /// Filter words holding bits.
    pub(super) words_set: u32,
    /// Bits set over all words.
    pub(super) bits_set: u64,
    /// First contacts the load logged (the rest of its SYNs found their bits set
    /// already: false positives while filling).
    pub(super) logged: u64,
    /// Pending slots holding an attempt of a tracked remote, and holding anything.
    pub(super) pending_tracked: u32,
    pub(super) pending_used: u32,
    /// Sketch counters with a count in the flood epoch the load ended in.
    pub(super) sketch_live: u32,
    /// Fresh remotes the loaded filter calls known, of [`FP_PROBES`].
    pub(super) fp_hits: u32,
    /// Wall time of the load's test runs (including time the CPU spent on other tasks).
    pub(super) load_ms: f64,
    /// The kernel's mean ns per loading SYN, over the load's test runs.
    pub(super) load_ns_per_syn: f64,
}

impl Tracked {
    pub(super) fn fp_rate(&self) -> f64 {
        f64::from(self.fp_hits) / f64::from(FP_PROBES)
    }

    pub(super) fn to_json(&self, facts: &FactMaps) -> serde_json::Value {
        json!({
            "remotes": TRACKED_REMOTES,
            "tenants": LOADERS,
            "remotes_per_tenant": PER_LOADER,
            "meaning": "each remote was sent a first SYN by one of the tenants, through \
                        the from-tenant program (xdp_bench_new_flow), in the current \
                        contact epoch: every one tests as known in the contact filter \
                        (checked against the words read back); the pending table holds \
                        the latest attempts (direct-mapped); their SYNs are counted in \
                        the flood sketch of the flood epoch of the load (about 1 s). \
                        Loaded again whenever the contact epoch (about 69 s) moved on",
            "loads": facts.loads,
            "load_ms": self.load_ms,
            "load_ns_per_syn": self.load_ns_per_syn,
            "filter_words": CONTACT_WORDS,
            "filter_words_set": self.words_set,
            "filter_bits_set": self.bits_set,
            "first_contacts_logged_by_the_load": self.logged,
            "pending_slots": PENDING_SLOTS,
            "pending_slots_used": self.pending_used,
            "pending_slots_tracked": self.pending_tracked,
            "sketch_counters": SKETCH_ROWS * SKETCH_WIDTH,
            "sketch_counters_live_after_load": self.sketch_live,
            "false_positive_probes": FP_PROBES,
            "false_positives": self.fp_hits,
            "false_positive_rate": self.fp_rate(),
            "new_flow_repetitions": facts.new_flow_reps,
            "new_flow_repetitions_seen_as_known": facts.new_flow_known,
        })
    }
}

/// The key of tracked remote `k`'s contact by its tenant (`k < TRACKED_REMOTES`), or of
/// fresh remote `k` by tenant `loader_tenant(k % LOADERS)`.
pub(super) fn tracked_key(k: u32) -> u64 {
    let tenant = if k < TRACKED_REMOTES {
        loader_tenant(k / PER_LOADER)
    } else {
        loader_tenant(k % LOADERS)
    };
    contact_key(
        tenant,
        contact_tag::OUT,
        6,
        NEW_FLOW_PORT,
        fold_addr(&tracked_remote(k).octets()),
    )
}

/// A loader's SYN to its first tracked remote.
pub(super) fn loader_frame(j: u32) -> Vec<u8> {
    let t = loader_tenant(j);
    Frame::new(
        Ipv6::new(host_v6(t), tracked_remote(j * PER_LOADER)).l4(L4::tcp(
            40000,
            NEW_FLOW_PORT,
            tcp::SYN,
        )),
    )
    .src_mac(tenant_mac(t))
    .build()
}

/// Loads the tracked remotes unless they are loaded in the current contact epoch.
pub(super) fn ensure_tracked(ebpf: &Rig, facts: &mut FactMaps) -> Result<()> {
    let epoch = contact_epoch()? & 0xffff_ffff;
    if facts.tracked.as_ref().is_some_and(|t| t.epoch == epoch) {
        return Ok(());
    }
    for _ in 0..3 {
        if let Some(t) = load_tracked(ebpf, facts)? {
            facts.loads += 1;
            facts.tracked = Some(t);
            // The load's million SYNs leave partial flood batches in every per-CPU
            // slot for the rest of this flood epoch, so a case timed at once would
            // see its flow counted straight into the sketch for up to a second (the
            // designed fallback when a CPU sees more than 4,096 keys in an epoch),
            // and then batched: a figure depending on where the reload fell. The
            // cases are timed from the next flood epoch, in their flows' steady state.
            let now = monotonic_ns()?;
            let next = ((now >> FLOOD_EPOCH_SHIFT) + 1) << FLOOD_EPOCH_SHIFT;
            std::thread::sleep(std::time::Duration::from_nanos(next - now + 20_000_000));
            return Ok(());
        }
    }
    bail!("three loads of the tracked remotes in a row straddled a contact epoch boundary")
}

/// Sends every loader's SYNs to its tracked remotes, then reads the fact maps back and
/// checks the load. `None` when the contact epoch moved on during the load (run it
/// again).
pub(super) fn load_tracked(ebpf: &Rig, facts: &mut FactMaps) -> Result<Option<Tracked>> {
    let epoch = contact_epoch()? & 0xffff_ffff;
    facts.drain();
    let before = fact_counters(ebpf)?;
    let prog = xdp(ebpf, XDP_BENCH_NEW_FLOW)?;
    let started = std::time::Instant::now();
    let mut kernel_ns = 0u64;
    for j in 0..LOADERS {
        let frame = loader_frame(j);
        let mut out = vec![0u8; frame.len()];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                repeat: PER_LOADER,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN (tracked remotes)")?;
        kernel_ns += r.duration.as_nanos() as u64 * u64::from(PER_LOADER);
        // Ethernet (14) + IPv6 destination at 24.
        let dst: [u8; 16] = out[38..54].try_into().expect("16 bytes");
        ensure!(
            r.return_value == XDP_PASS
                && Ipv6Addr::from(dst) == tracked_remote((j + 1) * PER_LOADER),
            "loading tracked remotes: tenant {} returned {} and left the destination at {}, \
             expected a pass and {}",
            loader_tenant(j),
            r.return_value,
            Ipv6Addr::from(dst),
            tracked_remote((j + 1) * PER_LOADER)
        );
    }
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let flood_epoch = (monotonic_ns()? >> FLOOD_EPOCH_SHIFT) & 0xffff;
    if contact_epoch()? & 0xffff_ffff != epoch {
        return Ok(None);
    }
    let after = fact_counters(ebpf)?;
    let moved = |i: u32| after[i as usize] - before[i as usize];
    facts.drain();
    let (logged, ring) = (moved(fact_counter::LOGGED), moved(fact_counter::SENT));
    ensure!(
        moved(fact_counter::OVER_BUDGET) == 0
            && moved(fact_counter::LOST_LOG) == 0
            && ring == 0
            && logged > 0
            && logged <= u64::from(TRACKED_REMOTES),
        "loading tracked remotes: {logged} first contacts logged, {} over the budget, \
         {} for want of a region, {ring} events sent into the ring",
        moved(fact_counter::OVER_BUDGET),
        moved(fact_counter::LOST_LOG),
    );
    // The filter, read back.
    let mut words = vec![0u32; CONTACT_WORDS as usize];
    let (mut words_set, mut bits_set) = (0, 0);
    for w in 0..CONTACT_WORDS {
        let v = facts.contacts.get(&w, 0).context("reading CONTACTS")?;
        if v >> 32 == epoch && v as u32 != 0 {
            words[w as usize] = v as u32;
            words_set += 1;
            bits_set += u64::from((v as u32).count_ones());
        }
    }
    let mut keys = Vec::with_capacity(TRACKED_REMOTES as usize);
    for k in 0..TRACKED_REMOTES {
        let key = tracked_key(k);
        let (w, bits) = filter_bits(key);
        ensure!(
            words[w as usize] & bits == bits,
            "tracked remote {} of tenant {} is not in the contact filter after the load",
            tracked_remote(k),
            loader_tenant(k / PER_LOADER)
        );
        keys.push(key);
    }
    keys.sort_unstable();
    let (mut pending_used, mut pending_tracked) = (0, 0);
    for slot in 0..PENDING_SLOTS {
        let tag = facts.pending.get(&slot, 0).context("reading PENDING")?.tag;
        if tag != 0 {
            pending_used += 1;
            if keys.binary_search(&tag).is_ok() {
                pending_tracked += 1;
            }
        }
    }
    let mut sketch_live = 0;
    for i in 0..SKETCH_ROWS * SKETCH_WIDTH {
        let c = facts.sketch.get(&i, 0).context("reading SKETCH")?;
        if c >> SKETCH_COUNT_BITS == flood_epoch && c & ((1 << SKETCH_COUNT_BITS) - 1) != 0 {
            sketch_live += 1;
        }
    }
    ensure!(
        pending_tracked > 0 && sketch_live > 0,
        "loading tracked remotes: {pending_tracked} pending slots hold their attempts and \
         {sketch_live} sketch counters count in the flood epoch of the load; both must"
    );
    let fp_hits = (TRACKED_REMOTES..TRACKED_REMOTES + FP_PROBES)
        .filter(|&k| {
            let (w, bits) = filter_bits(tracked_key(k));
            words[w as usize] & bits == bits
        })
        .count() as u32;
    Ok(Some(Tracked {
        epoch,
        words,
        words_set,
        bits_set,
        logged,
        pending_tracked,
        pending_used,
        sketch_live,
        fp_hits,
        load_ms,
        load_ns_per_syn: kernel_ns as f64 / f64::from(TRACKED_REMOTES),
    }))
}
