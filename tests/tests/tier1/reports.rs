//! What issue 19 added to the facts: every SMTP connection of a tenant that may send mail
//! (not only first contacts), and what a spoofed frame claimed.

use warden_common::{
    direction,
    facts::{event, Event},
    reason,
};
use warden_tests::packets::{proto, tcp, L4};

use crate::{facts_harness::*, fixture_policy::*, frames::*, harness::*};

/// Tenant MAIL's events (the helper's are tenant A's).
fn mail_ev(kind: u32, sport: u16, remote: [u8; 16], dport: u16) -> Event {
    Event {
        tenant: TENANT_MAIL,
        ..ev(
            kind,
            direction::OUT,
            proto::TCP,
            0,
            (e4(MAIL), sport),
            (remote, dport),
        )
    }
}

/// A tenant that may send mail has each SMTP connection logged as SMTP: the first with
/// its ATTEMPT (a first contact), a retransmission of the same SYN not again, a second
/// connection to the same server (another source port) as SMTP only. Other ports log no
/// SMTP entry, and a tenant whose SMTP is blocked logs only its dropped attempt.
#[test]
fn every_smtp_connection_of_a_tenant_that_may_send_mail_is_logged_once() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    for (prog, server) in [(Prog::XdpFrom, U2), (Prog::TcFrom, U3)] {
        let first = ip4(MAIL, server, L4::tcp(40000, 25, tcp::SYN));
        let (got, window) = dp.run_facts(prog, "first SMTP SYN", &first, TMAIL, 1);
        let want = [
            mail_ev(event::ATTEMPT, 40000, e4(server), 25),
            mail_ev(event::SMTP, 40000, e4(server), 25),
        ];
        assert_events("a first SMTP connection", &got, &want, window);
        let (got, window) = dp.run_facts(prog, "retransmitted SYN", &first, TMAIL, 1);
        assert_events("its retransmission", &got, &[], window);
        let second = ip4(MAIL, server, L4::tcp(40001, 25, tcp::SYN));
        let (got, window) = dp.run_facts(prog, "second SMTP SYN", &second, TMAIL, 1);
        let want = [mail_ev(event::SMTP, 40001, e4(server), 25)];
        assert_events("a second connection to a known server", &got, &want, window);
        let web = ip4(MAIL, server, L4::tcp(40002, 443, tcp::SYN));
        let (got, window) = dp.run_facts(prog, "SYN to 443", &web, TMAIL, 1);
        let want = [mail_ev(event::ATTEMPT, 40002, e4(server), 443)];
        assert_events("not SMTP", &got, &want, window);
    }
    // Tenant A may not send mail: its SMTP SYN is dropped, logged as a dropped attempt.
    let blocked = ip4(A, U2, L4::tcp(40000, 587, tcp::SYN));
    let (got, window) = dp.run_facts(Prog::XdpFrom, "blocked SMTP", &blocked, smtp(TENANT_A), 1);
    let want = [ev(
        event::ATTEMPT,
        direction::OUT,
        proto::TCP,
        warden_common::facts::outcome::DROPPED,
        (e4(A), 40000),
        (e4(U2), 587),
    )];
    assert_events("a blocked tenant's SMTP", &got, &want, window);
}

/// A spoofed frame of tenant M (its bound MAC, another tenant's address) is dropped as
/// spoof_ip and reported once as SPOOF naming the address and the MAC; a repeat sends
/// nothing more, another claimed address is reported again.
#[test]
fn a_spoofed_frame_reports_its_claim_once_per_address_and_mac() {
    let mut dp = TestDataplane::load().expect("loading the dataplane");
    let claim = |addr| {
        let m = MAC_M;
        Event {
            kind: event::SPOOF,
            tenant: TENANT_M,
            at: 0,
            local: e4(addr),
            remote: [0; 16],
            family: 4,
            proto: 0,
            detail: reason::SPOOF_IP as u8,
            dir: direction::OUT as u8,
            local_port: 0,
            remote_port: 0,
            value: u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]),
            threshold: 0,
        }
    };
    let spoofed = ip4(B, U, syn()).src_mac(MAC_M);
    let outcome = spoof_ip(TENANT_M);
    let (got, window) = dp.run_facts(Prog::XdpFrom, "spoofed SYN", &spoofed, outcome, 1);
    assert_events("a spoofed frame", &got, &[claim(B)], window);
    let (got, window) = dp.run_facts(Prog::TcFrom, "again", &spoofed, outcome, 3);
    assert_events("the same claim again", &got, &[], window);
    let other = ip4(H, U, syn()).src_mac(MAC_M);
    let (got, window) = dp.run_facts(Prog::TcFrom, "another address", &other, outcome, 1);
    assert_events("another claim", &got, &[claim(H)], window);
}
