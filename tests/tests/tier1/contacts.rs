//! Detection facts of first contacts: ATTEMPT entries in the attempt log, the
//! contact filter, pending attempts and the outcomes that answer them (SYN-ACK, RST,
//! ICMP unreachable, UDP replies), and accepted connections.
//!
//! The contact filter is shared by all programs of one object, so fixtures that run the
//! same behaviour through several programs give each its own remote or port.

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_common::{
    direction,
    facts::{contact_key, contact_tag, event, fact_counter, fold_addr, outcome},
};
use warden_tests::packets::{proto, tcp, Frame, L4};

use crate::{facts_harness::*, fixture_policy::*, frames::*, harness::*};

/// A from-tenant TCP SYN is a first contact: one ATTEMPT entry in the attempt log with
/// the tenant's and the remote's addresses and ports, and the attempt in its PENDING
/// slot (tag = key). The same SYN again in this contact epoch is no first
/// contact: no event, the slot as it was. IPv4 and IPv6, XDP and tc.
#[test]
fn a_first_syn_sends_one_attempt_and_fills_its_pending_slot_and_a_repeat_sends_nothing() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    for (i, prog) in Prog::FROM.into_iter().enumerate() {
        let port = 443 + i as u16;
        for (frame, local, remote) in [
            (ip4(A, U, syn_to(port)), e4(A), e4(U)),
            (ip6(A6, U6, syn_to(port)), e6(A6), e6(U6)),
        ] {
            let what = format!("SYN to port {port} ({})", remote[0]);
            let facts = dp.fact_counters();
            let (got, window) = dp.run_facts(prog, &what, &frame, TA, 1);
            let want = ev(
                event::ATTEMPT,
                direction::OUT,
                proto::TCP,
                0,
                (local, 40000),
                (remote, port),
            );
            assert_events(&what, &got, &[want], window);
            let key = attempt_key(TENANT_A, proto::TCP, port, remote);
            let slot = dp.pending(key);
            assert_eq!(slot.tag, key, "{what} [{prog}]: PENDING tag");

            let (again, _) = dp.run_facts(prog, &what, &frame, TA, 1);
            assert_events(&format!("{what}, again"), &again, &[], window);
            assert_eq!(
                dp.pending(key),
                slot,
                "{what} [{prog}]: the repeat moved PENDING"
            );
            assert_eq!(
                fact_delta(&facts, &dp.fact_counters()),
                facts_moved(&[(fact_counter::LOGGED, 1)]),
                "{what} [{prog}]: fact counters"
            );
        }
    }
}

/// The answer to a pending attempt: a to-tenant SYN-ACK from the contacted remote and
/// port is OUTCOME SUCCESS, a RST (with or without ACK) OUTCOME REFUSED; either clears
/// the slot, so a second answer sends nothing. An answer from a port the tenant never
/// contacted sends nothing. Events of answers are not budgeted.
#[test]
fn a_syn_ack_or_rst_answering_a_pending_attempt_sends_its_outcome_and_clears_the_slot() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let answers = [
        (tcp::SYN | tcp::ACK, outcome::SUCCESS),
        (tcp::RST | tcp::ACK, outcome::REFUSED),
        (tcp::RST, outcome::REFUSED),
    ];
    for (i, (from, to)) in PAIRS.into_iter().enumerate() {
        for (j, (flags, result)) in answers.into_iter().enumerate() {
            let port = 2000 + (10 * i + j) as u16;
            for is_v6 in [false, true] {
                let (syn, answer, local, remote) = if is_v6 {
                    (
                        ip6(A6, U6, syn_to(port)),
                        ip6(U6, A6, L4::tcp(port, 40000, flags)),
                        e6(A6),
                        e6(U6),
                    )
                } else {
                    (
                        ip4(A, U, syn_to(port)),
                        ip4(U, A, L4::tcp(port, 40000, flags)),
                        e4(A),
                        e4(U),
                    )
                };
                let what = format!("port {port}, answer flags {flags:#04x}, v6 {is_v6}");
                let (got, _) = dp.run_facts(from, &what, &syn, TA, 1);
                assert_eq!(got.len(), 1, "{what}: the SYN's ATTEMPT");
                let key = attempt_key(TENANT_A, proto::TCP, port, remote);
                assert_eq!(dp.pending(key).tag, key, "{what}: pending");

                let (got, window) = dp.run_facts(to, &what, &answer, TA, 1);
                let want = ev(
                    event::OUTCOME,
                    direction::IN,
                    proto::TCP,
                    result,
                    (local, 40000),
                    (remote, port),
                );
                assert_events(&what, &got, &[want], window);
                assert_eq!(dp.pending(key).tag, 0, "{what}: the slot is cleared");
                let (again, window) = dp.run_facts(to, &what, &answer, TA, 1);
                assert_events(&format!("{what}, again"), &again, &[], window);
            }
        }
        let stray = ip4(U, A, L4::tcp(9, 40000, tcp::SYN | tcp::ACK));
        let (got, window) = dp.run_facts(to, "SYN-ACK nobody asked for", &stray, TA, 1);
        assert_events("SYN-ACK nobody asked for", &got, &[], window);
    }
}

/// UDP and ICMP answers: a UDP probe answered by ICMP port unreachable (IPv4 type 3,
/// IPv6 type 1) quoting it is OUTCOME UNREACHABLE naming the quoted destination and
/// ports; an echo request answered by an echo reply is OUTCOME SUCCESS (protocol 1 or
/// 58, ports 0); a UDP datagram answered from the remote's port is SUCCESS.
#[test]
fn icmp_unreachable_quoting_a_probe_echo_replies_and_udp_replies_answer_their_attempts() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    // A router between the tenant and the probed host sends the error.
    let router = Ipv4Addr::new(198, 19, 0, 1);
    let router6 = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0xfe);
    for (i, (from, to)) in PAIRS.into_iter().enumerate() {
        let port = 161 + i as u16;
        // UDP probe, ICMP port unreachable from the router.
        for is_v6 in [false, true] {
            let what = format!("UDP probe to port {port}, v6 {is_v6}");
            let (probe, error, local, remote) = if is_v6 {
                let p = v6(A6, U6).l4(L4::udp(40000, port));
                let e = ip6(router6, A6, L4::port_unreachable(true, &p.bytes()));
                (Frame::new(p), e, e6(A6), e6(U6))
            } else {
                let p = v4(A, U).l4(L4::udp(40000, port));
                let e = ip4(router, A, L4::port_unreachable(false, &p.bytes()));
                (Frame::new(p), e, e4(A), e4(U))
            };
            let (got, window) = dp.run_facts(from, &what, &probe, TA, 1);
            let attempt = ev(
                event::ATTEMPT,
                direction::OUT,
                proto::UDP,
                0,
                (local, 40000),
                (remote, port),
            );
            assert_events(&what, &got, &[attempt], window);
            let (got, window) = dp.run_facts(to, &what, &error, TA, 1);
            let want = ev(
                event::OUTCOME,
                direction::IN,
                proto::UDP,
                outcome::UNREACHABLE,
                (local, 40000),
                (remote, port),
            );
            assert_events(&format!("{what}: unreachable"), &got, &[want], window);
            let key = attempt_key(TENANT_A, proto::UDP, port, remote);
            assert_eq!(dp.pending(key).tag, 0, "{what}: the slot is cleared");
        }
        // Echo request and reply; each program pings its own host.
        let (host, host6) = if i == 0 { (U, U6) } else { (U2, U2_6) };
        for (request, reply, l4, local, remote) in [
            (
                ip4(A, host, L4::echo_request(7, 1)),
                ip4(host, A, L4::echo_reply(7, 1)),
                proto::ICMP,
                e4(A),
                e4(host),
            ),
            (
                ip6(A6, host6, L4::echo_request(7, 1)),
                ip6(host6, A6, L4::echo_reply(7, 1)),
                proto::ICMPV6,
                e6(A6),
                e6(host6),
            ),
        ] {
            let what = format!("echo, protocol {l4}");
            let (got, window) = dp.run_facts(from, &what, &request, TA, 1);
            let attempt = ev(
                event::ATTEMPT,
                direction::OUT,
                l4,
                0,
                (local, 0),
                (remote, 0),
            );
            assert_events(&what, &got, &[attempt], window);
            let (got, window) = dp.run_facts(to, &what, &reply, TA, 1);
            let want = ev(
                event::OUTCOME,
                direction::IN,
                l4,
                outcome::SUCCESS,
                (local, 0),
                (remote, 0),
            );
            assert_events(&format!("{what}: reply"), &got, &[want], window);
        }
        // An echo request the router reports unreachable.
        let what = "echo to an unreachable host";
        let lost = Ipv4Addr::new(198, 19, 9, 1 + i as u8);
        let request = v4(A, lost).l4(L4::echo_request(8, 1));
        let error = ip4(router, A, L4::port_unreachable(false, &request.bytes()));
        let (got, _) = dp.run_facts(from, what, &Frame::new(request), TA, 1);
        assert_eq!(got.len(), 1, "{what}: the ATTEMPT");
        let (got, window) = dp.run_facts(to, what, &error, TA, 1);
        let want = ev(
            event::OUTCOME,
            direction::IN,
            proto::ICMP,
            outcome::UNREACHABLE,
            (e4(A), 0),
            (e4(lost), 0),
        );
        assert_events(what, &got, &[want], window);
        // The router is not the host reported; a second error finds no attempt.
        let (got, window) = dp.run_facts(to, what, &error, TA, 1);
        assert_events(&format!("{what}, again"), &got, &[], window);
        // A UDP query answered.
        let port = 53 + i as u16;
        let what = format!("UDP query to port {port} answered");
        udp_query(&mut dp, from, &what, U3, 40001, port);
        assert_udp_answered(&mut dp, to, &what, U3, 40001, port);
    }
}

/// The tenant (A, `local_port`) sends a UDP query to `remote`'s `port` through `from`:
/// one ATTEMPT.
fn udp_query(
    dp: &mut TestDataplane,
    from: Prog,
    what: &str,
    remote: Ipv4Addr,
    local_port: u16,
    port: u16,
) {
    let query = ip4(A, remote, L4::udp(local_port, port));
    let (got, _) = dp.run_facts(from, what, &query, TA, 1);
    assert_eq!(got.len(), 1, "{what}: the ATTEMPT");
}

/// `remote`'s answer from `port` to that query arrives through `to`: it must send
/// OUTCOME SUCCESS and clear the attempt's pending slot.
fn assert_udp_answered(
    dp: &mut TestDataplane,
    to: Prog,
    what: &str,
    remote: Ipv4Addr,
    local_port: u16,
    port: u16,
) {
    let reply = ip4(remote, A, L4::udp(port, local_port));
    let (got, window) = dp.run_facts(to, what, &reply, TA, 1);
    let want = ev(
        event::OUTCOME,
        direction::IN,
        proto::UDP,
        outcome::SUCCESS,
        (e4(A), local_port),
        (e4(remote), port),
    );
    assert_events(what, &got, &[want], window);
    let key = attempt_key(TENANT_A, proto::UDP, port, e4(remote));
    assert_eq!(dp.pending(key).tag, 0, "{what}: the slot is cleared");
}

/// A datagram from a remote the contact filter wrongly says spoke first (a false
/// positive of the filter) still answers the tenant's waiting attempt: the main
/// program's shortcut for datagrams from remotes that spoke first checks the pending
/// slot before it skips the rest.
#[test]
fn a_udp_answer_is_matched_even_when_the_filter_says_the_remote_spoke_first() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    for (i, (from, to)) in PAIRS.into_iter().enumerate() {
        let port = 7000 + i as u16;
        let what = format!("UDP query to port {port}, the filter wrong about the answer");
        udp_query(&mut dp, from, &what, U3, 40002, port);
        let remote = fold_addr(&e4(U3));
        dp.mark_contact(contact_key(
            TENANT_A,
            contact_tag::IN_UDP,
            proto::UDP,
            port,
            remote,
        ));
        assert_udp_answered(&mut dp, to, &what, U3, 40002, port);
    }
}

/// Pins the calling thread to the CPU it runs on, so the per-CPU batch slots that
/// later runs read are the ones earlier runs wrote.
fn pin_to_this_cpu() {
    // SAFETY: sched_getcpu has no preconditions; cpu_set_t is plain data and CPU_SET
    // writes inside it.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu()).expect("sched_getcpu");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "pinning to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A datagram stream's batch slot remembers the one remote and port it found to need
/// no facts, and nothing else: with inbound flood counting on (batches of 976 packets),
/// a stream from U2's port P fills the slot and its remembered remote; the tenant then
/// queries U2 at another port and another remote at port P, and both answers, which
/// land on the same slot, are still matched (OUTCOME SUCCESS, pending slot cleared).
/// Fails if the slot remembered the remote without the port or the port without the
/// remote.
#[test]
fn a_datagram_streams_remembered_remote_hides_no_other_answer() {
    let mut policy = standard_policy();
    policy.tenant_mut(TENANT_A).flood = (0, 0, 1_000_000, 1 << 40);
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    // Every run below on one CPU: one CPU's slot.
    pin_to_this_cpu();
    for (i, (from, to)) in PAIRS.into_iter().enumerate() {
        let (p, q) = (8000 + i as u16, 8100 + i as u16);
        let stream = ip4(U2, A, L4::udp(p, 40010));
        let (got, window) = dp.run_facts(to, "stream from U2:P", &stream, TA, 8);
        assert_events("stream from U2:P", &got, &[], window);
        for (what, remote, port) in [
            ("U2 at another port", U2, q),
            ("another remote at port P", U3, p),
        ] {
            let local_port = 41000 + port;
            udp_query(&mut dp, from, what, remote, local_port, port);
            assert_udp_answered(&mut dp, to, what, remote, local_port, port);
        }
        // The stream itself still needs nothing.
        let (got, window) = dp.run_facts(to, "stream from U2:P again", &stream, TA, 4);
        assert_events("stream from U2:P again", &got, &[], window);
    }
}

/// A tenant's DNS server: a query from a remote's port marks that (remote, port) as
/// having spoken first, so the tenant's reply to it is no attempt; the same server
/// sending to a remote that did not ask is one.
#[test]
fn a_tenants_udp_reply_to_a_remote_that_spoke_first_is_no_attempt() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    for (i, (from, to)) in PAIRS.into_iter().enumerate() {
        let client_port = 5353 + i as u16;
        let query = ip4(U, A, L4::udp(client_port, 53));
        let reply = ip4(A, U, L4::udp(53, client_port));
        let (got, window) = dp.run_facts(to, "DNS query in", &query, TA, 1);
        assert_events("DNS query in", &got, &[], window);
        let (got, window) = dp.run_facts(from, "DNS reply out", &reply, TA, 3);
        assert_events("DNS reply out", &got, &[], window);
        let unasked = ip4(A, U2, L4::udp(53, client_port));
        let (got, window) = dp.run_facts(from, "DNS to a remote that did not ask", &unasked, TA, 1);
        let want = ev(
            event::ATTEMPT,
            direction::OUT,
            proto::UDP,
            0,
            (e4(A), 53),
            (e4(U2), client_port),
        );
        assert_events("DNS to a remote that did not ask", &got, &[want], window);
    }
}

/// A from-tenant SYN-ACK is the tenant accepting a connection: ACCEPTED once per
/// (client, tenant address, port) in a contact epoch (budgeted like attempts).
#[test]
fn a_syn_ack_from_the_tenant_sends_accepted_once_per_client() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    for (i, prog) in Prog::FROM.into_iter().enumerate() {
        let port = 80 + i as u16;
        let synack = |client| ip4(A, client, L4::tcp(port, 50000, tcp::SYN | tcp::ACK));
        let (got, window) = dp.run_facts(prog, "SYN-ACK to U", &synack(U), TA, 1);
        let want = |client| {
            ev(
                event::ACCEPTED,
                direction::OUT,
                proto::TCP,
                0,
                (e4(A), port),
                (e4(client), 50000),
            )
        };
        assert_events("SYN-ACK to U", &got, &[want(U)], window);
        let (got, window) = dp.run_facts(prog, "SYN-ACK to U again", &synack(U), TA, 2);
        assert_events("SYN-ACK to U again", &got, &[], window);
        let (got, window) = dp.run_facts(prog, "SYN-ACK to U2", &synack(U2), TA, 1);
        assert_events("SYN-ACK to U2", &got, &[want(U2)], window);
        // An established segment is no fact at all.
        let ack = ip4(A, U, L4::tcp(port, 50000, tcp::ACK));
        let (got, window) = dp.run_facts(prog, "ACK", &ack, TA, 5);
        assert_events("ACK", &got, &[], window);
    }
}
