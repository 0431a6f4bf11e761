//! SMTP: outbound TCP to 25, 465 and 587 blocked by default, allowed, or policed as
//! a new-connection rate.

use warden_common::{bucket, Rate};
use warden_tests::packets::{proto, tcp, Ext, Frame, L4};

use crate::{fixture_policy::*, frames::*, harness::*};

/// Outbound TCP to 25, 465 and 587 is dropped (reason smtp) for a tenant with no mail
/// setting, whatever the segment; SMTP_ALLOW passes it; other ports, other protocols,
/// replies from a tenant's mail server and everything to-tenant pass.
#[test]
#[rustfmt::skip]
fn outbound_smtp_is_blocked_by_default_allowed_with_smtp_allow_and_never_policed_to_tenant() {
    let reply = L4::tcp(25, 40000, tcp::SYN | tcp::ACK);
    run_table(&[
        fx("IPv4 A -> outside SYN :25", ip4(A, U, syn_to(25)), smtp(TENANT_A), NO_TENANT),
        fx("IPv4 A -> outside SYN :465", ip4(A, U, syn_to(465)), smtp(TENANT_A), NO_TENANT),
        fx("IPv4 A -> outside SYN :587", ip4(A, U, syn_to(587)), smtp(TENANT_A), NO_TENANT),
        fx("IPv4 A -> outside ACK :25 (an established session)", ip4(A, U, L4::tcp(40000, 25, tcp::ACK | tcp::PSH)), smtp(TENANT_A), NO_TENANT),
        fx("IPv6 A6 -> outside SYN :25", ip6(A6, U6, syn_to(25)), smtp(TENANT_A), NO_TENANT),
        fx("802.1Q IPv4 A -> outside SYN :587", ip4(A, U, syn_to(587)).vlan(40), smtp(TENANT_A), NO_TENANT),
        fx("IPv6 three ext headers A6 -> outside SYN :465", three_ext(A6, U6, syn_to(465)), smtp(TENANT_A), NO_TENANT),
        fx("IPv4 first fragment A -> outside SYN :25", Frame::new(v4(A, U).fragment(0, true).l4(syn_to(25))), smtp(TENANT_A), NO_TENANT),
        fx("IPv4 A -> B SYN :25: dropped out, but B may receive mail", ip4(A, B, syn_to(25)), smtp(TENANT_A), TB),
        fx("IPv4 M (bound MAC) -> outside SYN :25", ip4(M, U, syn_to(25)).src_mac(MAC_M), smtp(TENANT_M), NO_TENANT),
        // Not outbound SMTP.
        fx("IPv4 A -> outside SYN :443", ip4(A, U, syn_to(443)), TA, NO_TENANT),
        fx("IPv4 A -> outside SYN :24", ip4(A, U, syn_to(24)), TA, NO_TENANT),
        fx("IPv4 A -> outside SYN :588", ip4(A, U, syn_to(588)), TA, NO_TENANT),
        fx("IPv4 A -> outside UDP :25", ip4(A, U, L4::udp(40000, 25)), TA, NO_TENANT),
        fx("IPv4 A's mail server replies from :25", ip4(A, U, reply.clone()), TA, NO_TENANT),
        fx("IPv4 outside -> A SYN :25 (inbound mail)", ip4(U, A, syn_to(25)), SPOOFED, TA),
        fx("IPv6 B6 -> A6 SYN :587", ip6(B6, A6, syn_to(587)), smtp(TENANT_B), TA),
        // SMTP_ALLOW.
        fx("IPv4 MAIL -> outside SYN :25", ip4(MAIL, U, syn_to(25)), TMAIL, NO_TENANT),
        fx("IPv4 MAIL -> outside SYN :465", ip4(MAIL, U, syn_to(465)), TMAIL, NO_TENANT),
        fx("IPv6 MAIL6 -> outside SYN :587", ip6(MAIL6, U6, syn_to(587)), TMAIL, NO_TENANT),
        fx("IPv4 MAIL -> A SYN :25", ip4(MAIL, A, syn_to(25)), TMAIL, TA),
    ]);
}

/// An SMTP SYN the receiver reassembles or parses like any other must not get past
/// the SMTP block. Two shapes hide port 25 from the parser, and both are malformed, so
/// dropped from a tenant (counted MALFORMED, not smtp: the parser never sees the port):
/// - IPv4 "tiny fragment" (RFC 1858): a first fragment carrying only the ports and
///   sequence number (8 bytes of TCP). The rest of the header follows at offset 1 as
///   a later fragment, which has no L4 facts and passes, but cannot be reassembled
///   into a SYN without the first.
/// - IPv6 with six extension headers (in RFC 8200 order) before TCP: beyond the
///   parser's reach. With five, the parser reaches TCP and the SMTP check drops it.
///
/// To-tenant the same frames pass as MALFORMED.
#[test]
#[rustfmt::skip]
fn outbound_smtp_split_into_tiny_fragments_or_behind_six_extension_headers_is_still_blocked() {
    // sport 40000, dport 25, sequence 1: the first 8 bytes of a TCP header.
    let ports = [0x9c, 0x40, 0, 25, 0, 0, 0, 1];
    // ack 0, data offset 5, SYN, window, checksum, urgent: the other 12 bytes.
    let rest = [0, 0, 0, 0, 0x50, tcp::SYN, 0xff, 0xff, 0, 0, 0, 0];
    let tiny_first = Frame::new(v4(A, U).fragment(0, true).proto(proto::TCP).l4(L4::raw(&ports)));
    let tiny_rest = Frame::new(v4(A, U).fragment(1, false).proto(proto::TCP).l4(L4::raw(&rest)));
    let ext = |n_dest_opts: usize| {
        let ip = v6(A6, U6)
            .ext(Ext::HOP_BY_HOP)
            .ext(Ext::DEST_OPTS)
            .ext(Ext::Routing { segment: U6 })
            .fragment(0, false);
        Frame::new((0..n_dest_opts).fold(ip, |ip, _| ip.ext(Ext::DEST_OPTS)).l4(syn_to(25)))
    };
    run_table(&[
        malformed("IPv4 A -> outside first fragment with 8 bytes of a SYN to :25", tiny_first),
        fx("IPv4 A -> outside second fragment (offset 8 bytes) with the rest of that SYN", tiny_rest, TA, NO_TENANT),
        malformed("IPv6 A6 -> outside SYN :25 behind 6 extension headers", ext(2)),
        fx("IPv6 A6 -> outside SYN :25 behind 5 extension headers", ext(1), smtp(TENANT_A), NO_TENANT),
    ]);
}

/// Runs `frame` through `prog` once and records a failure unless it has `outcome`.
fn step(
    dp: &TestDataplane,
    failures: &mut Vec<String>,
    prog: Prog,
    what: &str,
    frame: &Frame,
    outcome: RunOutcome,
) {
    let frame = frame.build();
    failures.extend(check(
        dp,
        prog,
        what,
        &frame,
        expected_run(prog, &frame, outcome),
    ));
}

/// SMTP_RATE at 1 connection/s, burst 1: the first SYN passes and charges the SMTP
/// bucket exactly one connection; an immediate second SYN (to any SMTP port) is
/// dropped (reason smtp); segments that are not new connections (ACK, SYN-ACK) and
/// other ports pass without being charged; to-tenant SMTP is not policed.
#[test]
fn smtp_rate_passes_the_first_syn_drops_an_immediate_second_and_never_polices_other_segments() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let cost = gcra_cost(&SMTP_ONE_PER_SECOND, 1);
    let mut failures = Vec::new();
    let syn25 = ip4(RATE, U, syn_to(25));
    for prog in Prog::FROM {
        dp.set_bucket(TENANT_RATE, bucket::SMTP, 0)
            .expect("zeroing the SMTP bucket");
        let t0 = monotonic_ns();
        step(&dp, &mut failures, prog, "first SYN :25", &syn25, TRATE);
        let t1 = monotonic_ns();
        step(
            &dp,
            &mut failures,
            prog,
            "second SYN :25",
            &syn25,
            smtp(TENANT_RATE),
        );
        step(
            &dp,
            &mut failures,
            prog,
            "third SYN, to :587",
            &ip4(RATE, U, syn_to(587)),
            smtp(TENANT_RATE),
        );
        step(
            &dp,
            &mut failures,
            prog,
            "ACK :25",
            &ip4(RATE, U, L4::tcp(40000, 25, tcp::ACK)),
            TRATE,
        );
        step(
            &dp,
            &mut failures,
            prog,
            "SYN-ACK :25",
            &ip4(RATE, U, L4::tcp(40000, 25, tcp::SYN | tcp::ACK)),
            TRATE,
        );
        step(
            &dp,
            &mut failures,
            prog,
            "SYN :443",
            &ip4(RATE, U, syn_to(443)),
            TRATE,
        );
        let tat = dp
            .bucket(TENANT_RATE, bucket::SMTP)
            .expect("reading the bucket");
        // The first SYN found the bucket idle, set TAT to its clock and added one cost.
        let first = tat.wrapping_sub(cost);
        if !(t0..=t1).contains(&first) {
            failures.push(format!(
                "[{prog}] SMTP bucket TAT {tat}: minus one connection ({cost} ns) is {first}, \
                 not within the first SYN's run [{t0}, {t1}]"
            ));
        }
    }
    for prog in Prog::TO {
        let before = dp
            .bucket(TENANT_RATE, bucket::SMTP)
            .expect("reading the bucket");
        for n in 1..=3 {
            step(
                &dp,
                &mut failures,
                prog,
                &format!("inbound SYN :25 #{n}"),
                &ip4(U, RATE, syn_to(25)),
                TRATE,
            );
        }
        let after = dp
            .bucket(TENANT_RATE, bucket::SMTP)
            .expect("reading the bucket");
        if before != after {
            failures.push(format!(
                "[{prog}] inbound SMTP moved the SMTP bucket {before} -> {after}"
            ));
        }
    }
    assert_no_failures(&failures, 2 * 6 + 2 * 3);
}

/// The connection rate is the GCRA of `Rate`: back-to-back SYNs conform while
/// TAT <= now + burst_ns, so `burst_ns / cost + 1` of them pass, and the rest are
/// dropped (reason smtp) without being charged. For the rate the daemon compiles
/// for "1/s, burst 3" (`Rate::from_events_per_second(1.0, 3)`) that must be the 3
/// connections its documentation promises.
#[test]
fn smtp_rate_passes_burst_ns_over_cost_plus_one_back_to_back_syns() {
    let rate = Rate::from_events_per_second(1.0, 3);
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_RATE).smtp = rate;
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let frame = ip4(RATE, U, syn_to(25)).build();
    let cost = gcra_cost(&rate, 1);
    let conforming = rate.burst_ns / cost + 1;
    assert_eq!(
        conforming, 3,
        "{rate:?} admits {conforming} back to back, not the burst of 3"
    );
    const N: u64 = 10;
    for prog in Prog::FROM {
        dp.set_bucket(TENANT_RATE, bucket::SMTP, 0)
            .expect("zeroing the bucket");
        let before = dp.snapshot().expect("reading counters");
        let t0 = monotonic_ns();
        let r = dp.run_repeat(prog, &frame, N as u32).expect("test run");
        let t1 = monotonic_ns();
        let after = dp.snapshot().expect("reading counters");
        assert_eq!(
            r,
            prog.retval(Verdict::Drop),
            "[{prog}] the last SYN is dropped"
        );
        let tat = dp
            .bucket(TENANT_RATE, bucket::SMTP)
            .expect("reading the bucket");
        let first = tat.wrapping_sub(conforming * cost);
        assert!(
            (t0..=t1).contains(&first),
            "[{prog}] TAT {tat} minus {conforming} connections is {first}, not within the run [{t0}, {t1}]"
        );
        let mut want = TRATE.changes(prog.dir(), frame.len(), N);
        want.extend(
            smtp(TENANT_RATE)
                .changes(prog.dir(), frame.len(), N - conforming)
                .into_iter()
                .skip(1),
        );
        want.sort();
        assert_eq!(
            changes(&before, &after),
            want,
            "[{prog}] {conforming} of {N} SYNs should pass"
        );
    }
}
