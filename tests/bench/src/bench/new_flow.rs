//! The new-flow case: each repetition a first contact to a fresh remote, against the
//! loaded filter; a run's first contacts predicted, then checked in the attempt log.

use std::net::Ipv4Addr;

use anyhow::{bail, ensure, Context as _, Result};
use aya::{TestRun, TestRunOptions};
use warden_common::facts::{event, fact_counter, Event, LOG_SLOTS};

use super::{
    cases::{Case, Lands},
    facts::{away_from_epoch_boundary, contact_epoch, fact_counters, remote16, FactMaps},
    measure::xdp,
    node::Rig,
    tracked::ensure_tracked,
    NEW_FLOW_FIRST_REMOTE, NEW_FLOW_PORT,
};

/// The remote the new-flow frame contacts at repetition `k` of a run.
pub(super) fn new_flow_remote(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(NEW_FLOW_FIRST_REMOTE) + k)
}

/// A new-flow run about to start: which repetitions will be first contacts, and the
/// counters and contact epoch before it.
pub(super) struct NewFlowRun {
    pub(super) new: Vec<u32>,
    pub(super) before: Vec<u64>,
    pub(super) epoch: u64,
}

impl NewFlowRun {
    /// Sets the run's filter words back to their loaded state (loading the tracked
    /// remotes again first if the contact epoch moved on) and notes where the counters
    /// stand.
    pub(super) fn start(
        ebpf: &Rig,
        facts: &mut FactMaps,
        tenant: u32,
        n: u32,
    ) -> Result<NewFlowRun> {
        away_from_epoch_boundary()?;
        ensure_tracked(ebpf, facts)?;
        facts.drain();
        Ok(NewFlowRun {
            new: facts.arm_new_flows(tenant, n)?,
            before: fact_counters(ebpf)?,
            epoch: contact_epoch()?,
        })
    }

    /// Checks the run: one log entry per first contact, none lost to the budget or for
    /// want of a region, nothing in the ring; the log holds the last `LOG_SLOTS` of
    /// them and the reader counts the rest as written over (a run across a contact
    /// epoch boundary may find more words empty, so it may log more). Returns the
    /// entries read, as events.
    pub(super) fn check(
        &self,
        ebpf: &Rig,
        facts: &mut FactMaps,
        case: &Case,
        n: u32,
    ) -> Result<Vec<Event>> {
        let after = fact_counters(ebpf)?;
        let moved = |i: u32| after[i as usize] - self.before[i as usize];
        let (events, overwritten) = facts.drain();
        let ring = moved(fact_counter::SENT);
        let want = self.new.len() as u64;
        let logged = moved(fact_counter::LOGGED);
        let same_epoch = contact_epoch()? == self.epoch;
        let read = events.len() as u64;
        ensure!(
            (logged == want || (!same_epoch && logged > want))
                && moved(fact_counter::LOST_LOG) == 0
                && moved(fact_counter::OVER_BUDGET) == 0
                && ring == 0
                && read == logged.min(u64::from(LOG_SLOTS))
                && read + overwritten == logged,
            "{}: {n} repetitions with {want} first contacts logged {logged} entries (over \
             the budget {}, for want of a region {}); {read} read, {overwritten} written \
             over; {ring} events sent into the ring",
            case.name,
            moved(fact_counter::OVER_BUDGET),
            moved(fact_counter::LOST_LOG),
        );
        Ok(events)
    }
}

/// Proves the new-flow program does what its case claims: the frame it hands back
/// has its destination advanced by the repetitions (packet data persists across the
/// repetitions of one test run), and each repetition sent one ATTEMPT of the tenant,
/// for consecutive remotes.
pub(super) fn verify_new_flows(ebpf: &Rig, facts: &mut FactMaps, case: &Case) -> Result<()> {
    const N: u32 = 1000;
    let Lands::Tenant { index: tenant, .. } = case.lands else {
        bail!("{}: a new-flow case must pass to a tenant", case.name);
    };
    let run = NewFlowRun::start(ebpf, facts, tenant, N)?;
    let mut out = vec![0u8; case.frame.len()];
    let opts = TestRunOptions {
        data_in: Some(&case.frame),
        data_out: Some(&mut out),
        repeat: N,
        ..Default::default()
    };
    let r = xdp(ebpf, case.program)?
        .test_run(opts)
        .context("BPF_PROG_TEST_RUN")?;
    ensure!(
        r.return_value == case.lands.verdict(),
        "{}: verdict {}",
        case.name,
        r.return_value
    );
    let dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
    ensure!(
        dst == new_flow_remote(N),
        "{}: after {N} repetitions the frame's destination is {dst}, expected {}: packet \
         data does not persist across repetitions, so they were not new flows",
        case.name,
        new_flow_remote(N)
    );
    let events = run.check(ebpf, facts, case, N)?;
    ensure!(
        events.len() == run.new.len(),
        "{}: the contact epoch changed during the check; run the bench again",
        case.name
    );
    for (e, &k) in events.iter().zip(&run.new) {
        let remote = remote16(new_flow_remote(k));
        ensure!(
            e.kind == event::ATTEMPT
                && e.tenant == tenant
                && e.remote == remote
                && e.remote_port == NEW_FLOW_PORT,
            "{}: event of repetition {k} is {e:?}, expected an ATTEMPT of tenant {tenant} \
             to {}",
            case.name,
            new_flow_remote(k)
        );
    }
    Ok(())
}
