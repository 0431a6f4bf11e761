//! The detection-event case: `xdp_bench_answer` on SYN-ACKs from windows of remotes
//! whose pending attempts the bench writes; every repetition's attempt cleared and its
//! OUTCOME logged, checked.

use anyhow::{bail, ensure, Context as _, Result};
use warden_common::{
    direction,
    facts::{
        contact_key, contact_tag, event, fact_counter, fold_addr, outcome, pending_slot, Pending,
        PENDING_SLOTS,
    },
};
use warden_tests::packets::{tcp, Frame, Ipv6, L4};

use super::{
    cases::{Case, Lands},
    facts::{fact_counters, FactMaps},
    fixtures::{answer_remote, host_v6},
    measure::{test_run, xdp},
    node::Rig,
    ANSWER_LOCAL_PORT, ANSWER_REMOTE_PORT, ANSWER_WINDOW, PROBE_TENANT,
};

/// The key of detection-event remote `k`'s pending attempt (the tenant's SYN to it).
pub(super) fn answer_key(tenant: u32, k: u32) -> u64 {
    contact_key(
        tenant,
        contact_tag::OUT,
        6,
        ANSWER_REMOTE_PORT,
        fold_addr(&answer_remote(k).octets()),
    )
}

/// The first remotes of `count` disjoint windows of `width` consecutive detection-event
/// remotes of `tenant` whose pending slots are all distinct within the window, lowest
/// first.
pub(super) fn answer_windows(tenant: u32, count: usize, width: u32) -> Result<Vec<u32>> {
    let mut last = vec![u32::MAX; PENDING_SLOTS as usize];
    let (mut start, mut out) = (0u32, Vec::with_capacity(count));
    for k in 0..u32::MAX - width {
        if out.len() == count {
            return Ok(out);
        }
        let slot = pending_slot(answer_key(tenant, k)) as usize;
        if last[slot] != u32::MAX && last[slot] >= start {
            start = last[slot] + 1;
        }
        last[slot] = k;
        if k + 1 - start == width {
            out.push(start);
            start = k + 1;
        }
    }
    bail!("no {count} windows of {width} remotes with distinct pending slots")
}

/// The detection-event frame: a SYN-ACK from remote `k` to the probe tenant.
pub(super) fn answer_frame(k: u32) -> Vec<u8> {
    Frame::new(
        Ipv6::new(answer_remote(k), host_v6(PROBE_TENANT)).l4(L4::tcp(
            ANSWER_REMOTE_PORT,
            ANSWER_LOCAL_PORT,
            tcp::SYN | tcp::ACK,
        )),
    )
    .build()
}

/// One detection-event run over the window starting at remote `start`: writes the
/// window's pending attempts, runs the program once per remote, and checks that every
/// repetition logged its OUTCOME (the fact counters: one log entry per repetition, none
/// lost, nothing sent into the ring; and the entries read back from the attempt log:
/// a SUCCESS of the tenant's attempt at each remote of the window, in order). Returns
/// the verdict and the mean ns per repetition.
pub(super) fn answer_run(
    ebpf: &Rig,
    facts: &mut FactMaps,
    case: &Case,
    start: u32,
) -> Result<(u32, u32)> {
    let Lands::Tenant { index: tenant, .. } = case.lands else {
        bail!(
            "{}: a detection-event case must pass to a tenant",
            case.name
        );
    };
    for k in start..start + ANSWER_WINDOW {
        let key = answer_key(tenant, k);
        facts
            .pending
            .set(pending_slot(key), Pending { tag: key }, 0)
            .context("writing PENDING")?;
    }
    facts.drain();
    let before = fact_counters(ebpf)?;
    let r = test_run(
        xdp(ebpf, case.program)?,
        &answer_frame(start),
        ANSWER_WINDOW,
    )?;
    let after = fact_counters(ebpf)?;
    let moved = |i: u32| after[i as usize] - before[i as usize];
    let (events, overwritten) = facts.drain();
    ensure!(
        moved(fact_counter::LOGGED) == u64::from(ANSWER_WINDOW)
            && moved(fact_counter::LOST_LOG) == 0
            && moved(fact_counter::SENT) == 0
            && moved(fact_counter::LOST_RING) == 0
            && events.len() as u64 == u64::from(ANSWER_WINDOW)
            && overwritten == 0,
        "{}: {ANSWER_WINDOW} answers to pending attempts logged {} entries ({} for want \
         of a region; {} read, {overwritten} written over) and sent {} events into the \
         ring ({} lost)",
        case.name,
        moved(fact_counter::LOGGED),
        moved(fact_counter::LOST_LOG),
        events.len(),
        moved(fact_counter::SENT),
        moved(fact_counter::LOST_RING),
    );
    for (e, k) in events.iter().zip(start..) {
        ensure!(
            e.kind == event::OUTCOME
                && e.detail == outcome::SUCCESS
                && e.dir == direction::IN as u8
                && e.tenant == tenant
                && e.remote == answer_remote(k).octets()
                && e.remote_port == ANSWER_REMOTE_PORT
                && e.local_port == ANSWER_LOCAL_PORT,
            "{}: entry of repetition {} is {e:?}, expected the OUTCOME SUCCESS of tenant \
             {tenant}'s attempt at {} port {ANSWER_REMOTE_PORT}",
            case.name,
            k - start,
            answer_remote(k)
        );
    }
    Ok(r)
}

/// Proves the detection-event program does what its case claims: each repetition of a
/// run answered its own pending attempt (its slot is cleared, which only a match of the
/// attempt's tag does) and logged its OUTCOME (checked entry by entry by
/// [`answer_run`]).
pub(super) fn verify_answers(ebpf: &Rig, facts: &mut FactMaps, case: &Case) -> Result<()> {
    let start = facts.answer_windows[0];
    answer_run(ebpf, facts, case, start)?;
    for k in start..start + ANSWER_WINDOW {
        let slot = pending_slot(answer_key(PROBE_TENANT, k));
        let tag = facts.pending.get(&slot, 0).context("reading PENDING")?.tag;
        ensure!(
            tag == 0,
            "{}: the answered attempt of {} is still pending",
            case.name,
            answer_remote(k)
        );
    }
    Ok(())
}
