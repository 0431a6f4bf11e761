//! Policy generations: the active one decides, writing the inactive one changes
//! nothing, and one write of ACTIVE flips every lookup.

use warden_common::tenant_flags;
use warden_tests::packets::{Arp, Frame};

use crate::{fixture_policy::*, frames::*, harness::*};

/// Generation 1 gives A's prefixes to B and drops H (and with it the /32 and /128
/// lengths). Writing it while generation 0 is active changes nothing; the one write of
/// ACTIVE moves every lookup to it, and back.
#[test]
#[rustfmt::skip]
fn the_active_generation_decides_the_tenant_and_writing_the_inactive_one_changes_nothing() {
    let mut gen1 = standard_policy().without(TENANT_A).without(TENANT_H);
    gen1.tenant_mut(TENANT_B).v4.push((A_NET, 24));
    gen1.tenant_mut(TENANT_B).v6.push((A6_NET, 48));
    let rows = |a: RunOutcome, h: RunOutcome| vec![
        fx("IPv4 A -> outside", ip4(A, U, syn()), a, NO_TENANT),
        fx("IPv4 outside -> A", ip4(U, A, udp()), SPOOFED, a),
        fx("IPv6 A6 -> B6", ip6(A6, B6, udp()), a, TB),
        fx("IPv4 H (a /32 only in generation 0) -> outside", ip4(H, U, syn()), h, NO_TENANT),
        fx("IPv6 outside -> H6 (a /128 only in generation 0)", ip6(U6, H6, syn()), SPOOFED, h),
        fx("ARP who-has A tell B", Frame::new(Arp::request(MAC_B, B, A)), TB, a),
    ];
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let mut failures = run_rows(&dp, &rows(TA, TH));
    dp.write_generation(1, &gen1).expect("writing generation 1");
    failures.extend(run_rows(&dp, &rows(TA, TH)).into_iter().map(|f| format!("gen 1 written, 0 active: {f}")));
    dp.set_active(1).expect("flipping to generation 1");
    failures.extend(run_rows(&dp, &rows(TB, TB)).into_iter().map(|f| format!("gen 1 active: {f}")));
    dp.set_active(0).expect("flipping back to generation 0");
    failures.extend(run_rows(&dp, &rows(TA, TH)).into_iter().map(|f| format!("gen 0 active again: {f}")));
    assert_no_failures(&failures, 4 * 6 * Prog::ALL.len());
}

/// Settings and MAC bindings are per generation too: generation 1 suspends A and
/// unbinds M's MACs (so no tenant binds any, and ANY_MACS is off).
#[test]
#[rustfmt::skip]
fn tenant_settings_and_mac_bindings_follow_the_active_generation() {
    let mut gen1 = standard_policy();
    gen1.tenant_mut(TENANT_A).flags |= tenant_flags::SUSPENDED;
    gen1.tenant_mut(TENANT_M).macs.clear();
    let gen0_rows = [
        fx("IPv4 A -> outside", ip4(A, U, syn()), TA, NO_TENANT),
        fx("IPv4 M's address from an unbound MAC", ip4(M, U, syn()), spoof_mac(TENANT_M), NO_TENANT),
        fx("IPv4 B's address from M's MAC", ip4(B, U, syn()).src_mac(MAC_M), spoof_ip(TENANT_M), NO_TENANT),
    ];
    let gen1_rows = [
        fx("IPv4 A -> outside", ip4(A, U, syn()), suspended(TENANT_A), NO_TENANT),
        fx("IPv4 M's address from an unbound MAC", ip4(M, U, syn()), TM, NO_TENANT),
        fx("IPv4 B's address from M's MAC", ip4(B, U, syn()).src_mac(MAC_M), TB, NO_TENANT),
    ];
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    dp.write_generation(1, &gen1).expect("writing generation 1");
    let mut failures = run_rows(&dp, &gen0_rows);
    dp.set_active(1).expect("flipping to generation 1");
    failures.extend(run_rows(&dp, &gen1_rows).into_iter().map(|f| format!("gen 1 active: {f}")));
    dp.set_active(0).expect("flipping back to generation 0");
    failures.extend(run_rows(&dp, &gen0_rows).into_iter().map(|f| format!("gen 0 active again: {f}")));
    assert_no_failures(&failures, 3 * 3 * Prog::ALL.len());
}
