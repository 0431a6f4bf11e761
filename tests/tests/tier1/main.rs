//! Tier 1: the kernel programs against fixtures, through `BPF_PROG_TEST_RUN`.
//!
//! Each fixture is {what, frame, expected outcome from-tenant, expected outcome
//! to-tenant}. An outcome is a verdict plus the one map change that goes with it, and
//! every fixture runs through both hooks of each direction (XDP and tc), so each row
//! checks all four programs. A run passes when the verdict matches AND a full snapshot
//! (TENANT_COUNTERS and DROP_COUNTERS of every tenant index around the tenants in use,
//! GLOBAL_COUNTERS whole) changed exactly as the outcome says, and nothing else did:
//!
//! - pass: one counter (the tenant's, NO_TENANT or MALFORMED) +1 packet, +len bytes;
//! - drop for a reason: the tenant's counter +1 packet, +len bytes, and exactly one
//!   reason of that tenant's drops in that direction +1;
//! - drop of a sender that is no tenant: GLOBAL SPOOFED +1 packet, +len bytes;
//! - drop of a malformed frame (from-tenant only; to-tenant ones pass): GLOBAL
//!   MALFORMED +1 packet, +len bytes.
//!
//! A packet counted in the wrong slot, direction or reason, twice, or not at all fails.
//!
//! The fixture policy is written straight into generation 0 of the maps, entry for
//! entry the way the daemon's `Dataplane::apply` writes a generation (see
//! [`fixture_policy::write_fixture_generation`]); every test loads its own copy of the
//! object, so no state (counters, token buckets) leaks between tests.
//!
//! Needs root (CAP_BPF). Run with
//! `cargo test -p warden-tests --test tier1 -- --test-threads=1`.
//!
//! The harness comes first: [`fixture_policy`] (the tenants, addresses and policy every
//! fixture runs under, written into a generation as the daemon writes one), [`frames`]
//! (frame builders), [`harness`] (the loaded object, programs, outcomes, counter
//! snapshots and the fixture runner) and [`facts_harness`] (reading the event ring,
//! the attempt log and the detection maps). Then one module per area.

mod facts_harness;
mod fixture_policy;
mod frames;
mod harness;

mod attribution;
mod bandwidth;
mod binding;
mod blocks;
mod contacts;
mod differential;
mod floods;
mod generations;
mod kernel;
mod malformed;
mod ports;
mod reports;
mod smtp;
mod suspension;
