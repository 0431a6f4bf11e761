//! Scenario tests through the engine: each attack is caught with the figure that crossed,
//! each benign look-alike raises nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;

const T: TenantSlot = TenantSlot(7);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Addresses from the test range 198.18.0.0/15.
fn addr(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xC612_0000 | (n & 0x1_FFFF)))
}

fn engine() -> Engine {
    Engine::new(TenantConfig::default(), Limits::default())
}

fn mail_engine(allow: &[&str]) -> Engine {
    let mut e = engine();
    e.configure(
        T,
        TenantConfig {
            mail: true,
            allow: allow
                .iter()
                .map(|a| a.parse().expect("test CIDR"))
                .collect(),
            ..TenantConfig::default()
        },
    );
    e
}

fn attempt(remote: IpAddr, port: u16, proto: Proto, outcome: Outcome, at: Duration) -> Attempt {
    Attempt {
        slot: T,
        remote,
        port,
        proto,
        outcome,
        at,
    }
}

fn rate(remote: IpAddr, dir: Direction, pps: f64, syn_pps: f64, reply_pps: f64, bps: f64) -> Rate {
    Rate {
        slot: T,
        remote,
        dir,
        pps,
        syn_pps,
        reply_pps,
        bps,
        at: secs(1),
    }
}

/// Feeds facts until the first detection; returns how many facts it took and what came out.
fn first_detection<F: Into<Fact>>(
    e: &mut Engine,
    facts: impl IntoIterator<Item = F>,
) -> Option<(usize, Detection)> {
    for (i, fact) in facts.into_iter().enumerate() {
        if let Some(d) = e
            .observe(fact)
            .into_iter()
            .find(|d| d.status == Status::Started)
        {
            return Some((i + 1, d));
        }
    }
    None
}

/// Feeds every fact (no tick); returns everything reported.
fn observe_all<F: Into<Fact>>(
    e: &mut Engine,
    facts: impl IntoIterator<Item = F>,
) -> Vec<Detection> {
    facts.into_iter().flat_map(|f| e.observe(f)).collect()
}

/// Feeds every fact and ticks past every window; returns everything reported.
fn everything<F: Into<Fact>>(e: &mut Engine, facts: impl IntoIterator<Item = F>) -> Vec<Detection> {
    let mut out = Vec::new();
    let mut last = Duration::ZERO;
    for fact in facts {
        let fact = fact.into();
        last = last.max(fact.at());
        out.extend(e.observe(fact));
    }
    out.extend(e.tick(last + secs(3_600)));
    out
}

// --- scan ---------------------------------------------------------------------------------

#[test]
fn scan_at_one_probe_per_second_with_all_failures_is_caught_after_10_failed_destinations() {
    let mut e = engine();
    let probes =
        (0..30).map(|i| attempt(addr(i), 22, Proto::Tcp, Outcome::NoAnswer, secs(i.into())));
    let (n, d) = first_detection(&mut e, probes).expect("a scan is caught");
    let walk = Walk::new(&TenantConfig::default().detectors.scan);
    assert_eq!(n as u64, walk.failures_to_detect());
    assert_eq!(n, 10, "min_failed_targets (ln 99 / ln 4 = 3.3 alone)");
    assert_eq!(d.kind, Kind::Scan);
    assert!(d.figure("trw_log_ratio").expect("the test crossed") >= 99f64.ln() - 1e-9);
    assert_eq!(d.figure("trw_failed_destinations"), Some(10.0));
    assert_eq!(d.figure("trw_class_other_tcp"), Some(1.0));
    assert_eq!(
        d.top_targets[0],
        (Target::port(22), 10),
        "a horizontal scan of port 22"
    );
}

#[test]
fn vertical_scan_at_default_speed_is_caught_within_one_second() {
    let mut e = engine();
    let victim = addr(9);
    // Roughly nmap's default timing: hundreds of probes a second, most ports closed.
    let probes = (1..=1000u16).map(|p| {
        let outcome = if p.is_multiple_of(50) {
            Outcome::Success
        } else {
            Outcome::Refused
        };
        attempt(victim, p, Proto::Tcp, outcome, ms(u64::from(p) * 3))
    });
    let (n, d) = first_detection(&mut e, probes).expect("a vertical scan is caught");
    assert!(d.first_seen <= secs(1), "caught at {:?}", d.first_seen);
    // One host's ports failing within a second are one failed destination: the volume
    // bound catches it, at the 101st failed port.
    assert_eq!(n, 103);
    assert_eq!(d.figure("trw_log_ratio"), None);
    assert_eq!(
        d.top_targets[0],
        (Target::host(victim), 101),
        "one host, many ports"
    );
    assert_eq!(d.figure("failed_ports_in_window"), Some(101.0));
}

#[test]
fn fast_scan_of_a_mostly_live_network_is_caught_by_the_distinct_targets_bound() {
    let mut e = engine();
    // 60% of hosts answer: the walk drifts down and never crosses, but the failures pile up.
    let probes = (0..1000u32).map(|i| {
        let outcome = if i % 5 < 3 {
            Outcome::Success
        } else {
            Outcome::NoAnswer
        };
        attempt(addr(i), 443, Proto::Tcp, outcome, ms(u64::from(i)))
    });
    let (n, d) = first_detection(&mut e, probes).expect("caught by the distinct bound");
    assert_eq!(
        d.figure("trw_log_ratio"),
        None,
        "the walk alone would not catch it"
    );
    assert_eq!(d.figure("failed_targets_in_window"), Some(101.0));
    assert!(d.first_seen <= secs(1));
    assert_eq!(n, 254, "the 101st failure is probe 5 * 50 + 4");
}

#[test]
fn fire_and_forget_udp_scan_is_caught() {
    let mut e = engine();
    let probes = (0..100u32).map(|i| {
        attempt(
            addr(i),
            161,
            Proto::Udp,
            Outcome::NoAnswer,
            ms(u64::from(i)),
        )
    });
    let (n, d) = first_detection(&mut e, probes).expect("caught");
    assert_eq!((n, d.kind), (10, Kind::Scan));
}

#[test]
fn first_contacts_warden_dropped_are_neither_success_nor_failure() {
    let mut e = engine();
    // Mail blocked by policy: the tenant retries 50 mail servers, Warden drops each SYN.
    let blocked =
        (0..50u32).map(|i| attempt(addr(i), 25, Proto::Tcp, Outcome::Dropped, ms(u64::from(i))));
    assert_eq!(observe_all(&mut e, blocked), []);
    // They are counted apart: a real scan afterwards shows them in its evidence.
    let probes =
        (100..130u32).map(|i| attempt(addr(i), 22, Proto::Tcp, Outcome::Refused, ms(u64::from(i))));
    let (n, d) = first_detection(&mut e, probes).expect("the scan is caught");
    assert_eq!(n, 10, "the dropped contacts did not count as failures");
    assert_eq!(d.figure("dropped_by_warden_in_window"), Some(50.0));
}

#[test]
fn a_monitoring_round_whose_silent_hosts_time_out_together_is_not_a_scan() {
    let mut e = engine();
    // 100 hosts pinged at once: 90 replies at once, 10 silent ones time out 500 ms
    // later, reported after the replies (the order the pipeline reports them in).
    let replies = (0..100u32)
        .filter(|i| i % 10 != 0)
        .map(|i| attempt(addr(i), 0, Proto::Icmp, Outcome::Success, ms(u64::from(i))));
    let silent = (0..100u32)
        .filter(|i| i % 10 == 0)
        .map(|i| attempt(addr(i), 0, Proto::Icmp, Outcome::NoAnswer, ms(u64::from(i))));
    assert_eq!(everything(&mut e, replies.chain(silent)), []);
}

#[test]
fn one_overloaded_server_failing_on_several_ports_within_a_second_is_one_failure() {
    let mut e = engine();
    let server = addr(500);
    // 12 ports of one server fail within a second, then 9 more hosts: 10 failed
    // destinations in all, but a burst at one server is one of them.
    let burst = (0..12u16).map(|p| {
        attempt(
            server,
            8000 + p,
            Proto::Tcp,
            Outcome::NoAnswer,
            ms(u64::from(p) * 50),
        )
    });
    let others = (0..8u32).map(|i| attempt(addr(i), 8000, Proto::Tcp, Outcome::NoAnswer, ms(700)));
    assert_eq!(observe_all(&mut e, burst.chain(others)), []);
    // The same server failing again a second later is a failure again: the tenth.
    let again = attempt(server, 9000, Proto::Tcp, Outcome::NoAnswer, ms(1_700));
    let d = e.observe(again);
    assert_eq!(d.len(), 1, "the tenth failed destination flags: {d:?}");
}

#[test]
fn a_crawlers_web_successes_do_not_hide_a_scan_of_another_port_class() {
    let mut e = engine();
    let fetches =
        (0..200u32).map(|i| attempt(addr(i), 443, Proto::Tcp, Outcome::Success, ms(u64::from(i))));
    assert_eq!(observe_all(&mut e, fetches), []);
    let probes = (1000..1020u32).map(|i| {
        attempt(
            addr(i),
            22,
            Proto::Tcp,
            Outcome::Refused,
            ms(300 + u64::from(i)),
        )
    });
    let (n, _) = first_detection(&mut e, probes).expect("the SSH scan is caught");
    assert_eq!(n, 10);
}

#[test]
fn repeated_failures_to_one_destination_are_one_first_contact() {
    let mut e = engine();
    let retries =
        (0..1000u64).map(|i| attempt(addr(1), 80, Proto::Tcp, Outcome::Refused, ms(i * 100)));
    assert_eq!(everything(&mut e, retries), []);
}

#[test]
fn crawler_fetching_from_100_servers_with_90_percent_success_is_not_a_scan() {
    let mut e = engine();
    let fetches = (0..100u32).map(|i| {
        let outcome = if i % 10 == 3 {
            Outcome::NoAnswer
        } else {
            Outcome::Success
        };
        attempt(addr(i), 443, Proto::Tcp, outcome, ms(u64::from(i) * 50))
    });
    assert_eq!(everything(&mut e, fetches), []);
}

#[test]
fn probes_to_allow_listed_destinations_are_ignored() {
    let mut e = engine();
    e.configure(
        T,
        TenantConfig {
            allow: vec!["198.18.0.0/24".parse().expect("CIDR")],
            ..TenantConfig::default()
        },
    );
    let probes =
        (0..200u32).map(|i| attempt(addr(i), 22, Proto::Tcp, Outcome::Refused, ms(u64::from(i))));
    assert_eq!(everything(&mut e, probes), []);
    let outside =
        (0..10u32).map(|i| attempt(addr(256 + i), 22, Proto::Tcp, Outcome::Refused, secs(1)));
    assert!(
        first_detection(&mut e, outside).is_some(),
        "the allow list exempts only its range"
    );
}

#[test]
fn an_ongoing_scan_is_one_episode_that_ends_after_a_quiet_window() {
    let mut e = engine();
    let probes: Vec<_> = (0..120u32)
        .map(|i| attempt(addr(i), 22, Proto::Tcp, Outcome::Refused, secs(i.into())))
        .collect();
    let reported: Vec<_> = probes.into_iter().flat_map(|p| e.observe(p)).collect();
    assert_eq!(
        reported.len(),
        1,
        "one report while it goes on: {reported:?}"
    );
    assert_eq!(e.open(T, Kind::Scan).map(|d| d.last_seen), Some(secs(119)));
    assert_eq!(e.tick(secs(119 + 59)), []);
    let ended = e.tick(secs(119 + 60));
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].status, ended[0].first_seen, ended[0].last_seen),
        (Status::Ended, secs(9), secs(119))
    );
    assert!(e.open(T, Kind::Scan).is_none());
}

// --- flood_out / flood_in --------------------------------------------------------------------

#[test]
fn syn_flood_at_twice_syn_pps_on_one_victim_is_caught_in_its_first_window() {
    let mut e = engine();
    let victim = addr(5);
    let out = e.observe(rate(
        victim,
        Direction::Out,
        4_000.0,
        4_000.0,
        0.0,
        4_000.0 * 64.0 * 8.0,
    ));
    assert_eq!(out.len(), 1);
    let d = &out[0];
    assert_eq!((d.kind, d.first_seen), (Kind::FloodOut, secs(1)));
    assert_eq!(d.figure("syn_pps"), Some(4_000.0));
    assert_eq!(d.thresholds, [("syn_pps".to_owned(), 2_000.0)]);
    assert_eq!(d.top_targets, [(Target::host(victim), 4_000)]);
}

#[test]
fn udp_flood_over_pps_and_reflection_over_syn_pps_are_floods() {
    let mut e = engine();
    let d = e
        .observe(rate(addr(5), Direction::Out, 30_000.0, 0.0, 0.0, 1e8))
        .remove(0);
    assert_eq!(d.figure("pps"), Some(30_000.0));
    let mut e = engine();
    let d = e
        .observe(rate(
            addr(6),
            Direction::Out,
            4_000.0,
            0.0,
            4_000.0,
            4_000.0 * 3_000.0 * 8.0,
        ))
        .remove(0);
    assert_eq!(
        (d.kind, d.figure("reply_pps")),
        (Kind::FloodOut, Some(4_000.0))
    );
}

#[test]
fn large_transfer_within_plan_is_not_a_flood() {
    let mut e = engine();
    // A 1 Gbit/s TCP upload: its segments belong to an accepted connection and are not in
    // the sample; what is left is one SYN and the odd stray packet.
    let tcp = (0..60).map(|s| Rate {
        at: secs(s),
        ..rate(addr(3), Direction::Out, 2.0, 0.0, 0.0, 2.0 * 1500.0 * 8.0)
    });
    // A 100 Mbit/s UDP stream of full-size datagrams stays under the per-victim packet rate.
    let udp = (0..60).map(|s| Rate {
        at: secs(s),
        ..rate(addr(4), Direction::Out, 8_300.0, 0.0, 0.0, 1e8)
    });
    assert_eq!(everything(&mut e, tcp.chain(udp)), []);
}

#[test]
fn dns_server_answering_many_clients_raises_nothing() {
    let mut e = engine();
    let server = addr(1);
    // Large (DNSSEC) answers count as reflection-sized, but each client gets only a few.
    let answers = (0..5_000u32).map(|c| {
        rate(
            addr(1000 + c),
            Direction::Out,
            3.0,
            0.0,
            3.0,
            3.0 * 1200.0 * 8.0,
        )
        .into()
    });
    let queries = std::iter::once(
        rate(
            server,
            Direction::In,
            15_000.0,
            0.0,
            0.0,
            15_000.0 * 80.0 * 8.0,
        )
        .into(),
    );
    let fan = std::iter::once(
        Fan {
            slot: T,
            addr: server,
            inbound_clients: 5_000,
            outbound_destinations: 12,
            in_bytes: 72_000_000,
            out_bytes: 900_000_000,
            at: secs(60),
        }
        .into(),
    );
    let facts: Vec<Fact> = answers.chain(queries).chain(fan).collect();
    assert_eq!(everything(&mut e, facts), []);
}

#[test]
fn flood_at_a_tenant_address_is_caught_by_pps_or_bps() {
    let mut e = engine();
    let d = e
        .observe(rate(addr(2), Direction::In, 200_000.0, 200_000.0, 0.0, 1e8))
        .remove(0);
    assert_eq!((d.kind, d.figure("pps")), (Kind::FloodIn, Some(200_000.0)));
    assert_eq!(d.top_targets, [(Target::host(addr(2)), 200_000)]);
    let mut e = engine();
    let d = e
        .observe(rate(addr(2), Direction::In, 90_000.0, 0.0, 90_000.0, 2e9))
        .remove(0);
    assert_eq!(
        (d.kind, d.figure("bps"), d.figure("pps")),
        (Kind::FloodIn, Some(2e9), None)
    );
}

#[test]
fn web_server_answering_200_clients_raises_nothing() {
    let mut e = engine();
    let server = addr(1);
    // 200 clients connecting in: SYNs arrive, accepted connections are not in the samples.
    let inbound = (0..60).map(|s| {
        Rate {
            at: secs(s),
            ..rate(server, Direction::In, 400.0, 200.0, 0.0, 400.0 * 80.0 * 8.0)
        }
        .into()
    });
    let fan = (1..=10).map(|w| {
        Fan {
            slot: T,
            addr: server,
            inbound_clients: 200,
            outbound_destinations: 3,
            in_bytes: 20_000_000,
            out_bytes: 2_000_000_000,
            at: secs(60 * w),
        }
        .into()
    });
    let facts: Vec<Fact> = inbound.chain(fan).collect();
    assert_eq!(everything(&mut e, facts), []);
}

#[test]
fn flood_at_an_allow_listed_destination_is_ignored() {
    let mut e = engine();
    e.configure(
        T,
        TenantConfig {
            allow: vec!["198.18.0.5/32".parse().expect("CIDR")],
            ..TenantConfig::default()
        },
    );
    assert_eq!(
        e.observe(rate(addr(5), Direction::Out, 1e6, 1e6, 0.0, 1e9)),
        []
    );
}

// --- spam ----------------------------------------------------------------------------------------

fn smtp(server: IpAddr, outcome: Outcome, at: Duration) -> Smtp {
    Smtp {
        slot: T,
        server,
        outcome,
        at,
    }
}

#[test]
fn mail_to_more_than_20_servers_in_the_window_is_spam() {
    let mut e = mail_engine(&[]);
    let mails = (0..100u32).map(|i| smtp(addr(i), Outcome::Success, secs(i.into())));
    let (n, d) = first_detection(&mut e, mails).expect("fan-out is caught");
    assert_eq!((n, d.kind), (21, Kind::Spam));
    assert_eq!(d.figure("distinct_servers"), Some(21.0));
    assert_eq!(d.top_targets.len(), 10);
}

#[test]
fn mostly_failing_smtp_is_spam_once_there_are_enough_connections() {
    let mut e = mail_engine(&[]);
    let mails = (0..100u32).map(|i| {
        let outcome = if i.is_multiple_of(3) {
            Outcome::Success
        } else {
            Outcome::Refused
        };
        smtp(addr(i % 4), outcome, secs(i.into()))
    });
    let (n, d) = first_detection(&mut e, mails).expect("caught");
    assert_eq!(n as u64, MIN_CONNECTIONS_FOR_RATIO);
    assert!(d.figure("failure_ratio").expect("ratio") >= 0.5);
}

fn conn(server: IpAddr, at: Duration) -> SmtpConnection {
    SmtpConnection {
        slot: T,
        server,
        at,
    }
}

#[test]
fn more_than_100_connections_in_the_window_is_spam() {
    let mut e = mail_engine(&[]);
    let mails = (0..200u64).map(|i| conn(addr(1), secs(i)));
    let (n, d) = first_detection(&mut e, mails).expect("caught");
    assert_eq!((n, d.figure("connections")), (101, Some(101.0)));
}

#[test]
fn two_hundred_messages_to_10_servers_in_40_s_are_spam_by_connections() {
    // Each message its own connection; only 10 first contacts, all answered.
    let mut e = mail_engine(&[]);
    let mut facts: Vec<Fact> = (0..10u32)
        .map(|i| smtp(addr(i), Outcome::Success, ms(u64::from(i))).into())
        .collect();
    facts.extend((0..200u64).map(|i| Fact::from(conn(addr((i % 10) as u32), ms(i * 200)))));
    let (_, d) = first_detection(&mut e, facts).expect("caught");
    assert_eq!(d.kind, Kind::Spam);
    assert_eq!(d.figure("connections"), Some(101.0));
    assert_eq!(d.figure("distinct_servers"), Some(10.0));
    assert!(d.first_seen <= secs(21), "caught at {:?}", d.first_seen);
}

#[test]
fn first_contacts_warden_dropped_are_not_smtp_failures() {
    let mut e = mail_engine(&[]);
    let mails = (0..50u32).map(|i| smtp(addr(i % 5), Outcome::Dropped, secs(i.into())));
    assert_eq!(everything(&mut e, mails), []);
}

#[test]
fn mail_through_an_allow_listed_relay_and_an_ordinary_mail_server_raise_nothing() {
    let mut e = mail_engine(&["198.18.200.0/24"]);
    let relay = (0..2_000u64).map(|i| Fact::from(conn(addr(200 * 256 + 1), secs(i))));
    // A small mail server: a dozen destination domains, 50 messages per 10 minutes.
    let own = (0..500u64).map(|i| Fact::from(conn(addr((i % 12) as u32), secs(i * 12))));
    let first = (0..12u32).map(|i| Fact::from(smtp(addr(i), Outcome::Success, secs(0))));
    assert_eq!(everything(&mut e, first.chain(relay).chain(own)), []);
}

#[test]
fn spam_is_not_run_for_tenants_that_may_not_send_mail() {
    let mut e = engine();
    let mails = (0..100u32).map(|i| smtp(addr(i), Outcome::Refused, secs(i.into())));
    assert_eq!(everything(&mut e, mails), []);
}

// --- proxy ----------------------------------------------------------------------------------------

fn fan(clients: u32, dests: u32, in_bytes: u64, out_bytes: u64) -> Fan {
    Fan {
        slot: T,
        addr: addr(1),
        inbound_clients: clients,
        outbound_destinations: dests,
        in_bytes,
        out_bytes,
        at: secs(60),
    }
}

#[test]
fn relay_with_many_clients_many_destinations_and_symmetric_bytes_is_a_proxy() {
    let mut e = engine();
    let d = e.observe(fan(30, 60, 1_000_000_000, 950_000_000)).remove(0);
    assert_eq!(d.kind, Kind::Proxy);
    assert_eq!(d.figure("byte_symmetry"), Some(0.95));
    assert_eq!(d.top_targets, [(Target::host(addr(1)), 950_000_000)]);
}

#[test]
fn crawler_and_lopsided_servers_are_not_proxies() {
    let mut e = engine();
    let facts = [
        fan(0, 100, 5_000_000_000, 10_000_000),     // crawler
        fan(200, 3, 20_000_000, 2_000_000_000),     // web server
        fan(200, 80, 20_000_000, 2_000_000_000),    // web server calling many APIs
        fan(30, 60, 1_000_000_000, 700_000_000),    // symmetry 0.7 < 0.8
        fan(10, 200, 1_000_000_000, 1_000_000_000), // not more than 10 clients
        fan(500, 5, 1_000_000_000, 1_000_000_000),  // load balancer, 5 backends
        fan(200, 15, 1_000_000_000, 990_000_000),   // not more than 15 destinations
    ];
    assert_eq!(everything(&mut e, facts), []);
}

// --- drops ----------------------------------------------------------------------------------------

fn drops(reason: DropReason, count: u64, at: Duration) -> Drops {
    Drops {
        slot: T,
        reason,
        count,
        offered: count,
        at,
    }
}

#[test]
fn sustained_drops_become_a_detection_of_the_matching_kind() {
    // 100 at the 10th second; bandwidth (which has a drop_ratio) must then hold for 5
    // more seconds; the L2 kinds fire at their third drop, in the first second.
    for (reason, kind, at) in [
        (DropReason::SpoofIp, Kind::SpoofIp, 10),
        (DropReason::SpoofArp, Kind::SpoofArp, 1),
        (DropReason::SpoofMac, Kind::SpoofMac, 1),
        (DropReason::Bandwidth, Kind::Bandwidth, 15),
    ] {
        let mut e = engine();
        let (n, d) =
            first_detection(&mut e, (0..60).map(|s| drops(reason, 10, secs(s)))).expect("caught");
        assert_eq!(
            (n, d.kind, d.figure("drops_in_window")),
            (at, kind, Some(at as f64 * 10.0))
        );
    }
}

#[test]
fn a_spoofing_detection_names_what_the_frames_claimed() {
    let mut e = engine();
    let gateway = addr(1);
    let mac = [0x02, 0, 0x5e, 0x10, 0, 0x02];
    let claim = Claim {
        slot: T,
        at: secs(0),
        kind: Kind::SpoofArp,
        addr: gateway,
        mac,
    };
    assert_eq!(e.observe(claim), []);
    let d = e.observe(drops(DropReason::SpoofArp, 3, secs(1)));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].top_targets, [(Target::claim(gateway, mac), 1)]);
    assert_eq!(d[0].figure("claims_in_window"), Some(1.0));
    // Another kind's claims are not its evidence.
    let mut e = engine();
    e.observe(Claim {
        kind: Kind::SpoofMac,
        ..claim
    });
    let d = e.observe(drops(DropReason::SpoofArp, 3, secs(1)));
    assert_eq!(d[0].top_targets, []);
}

#[test]
fn arp_poisoning_at_one_forged_reply_every_2_s_is_flagged_at_the_third() {
    let mut e = engine();
    let replies = (0..10u64).map(|i| drops(DropReason::SpoofArp, 1, secs(i * 2)));
    let (n, d) = first_detection(&mut e, replies).expect("caught");
    assert_eq!(
        (n, d.kind, d.figure("drops_in_window")),
        (3, Kind::SpoofArp, Some(3.0))
    );
    // Two forged frames are not yet an attack.
    let mut e = engine();
    let two = (0..2u64).map(|i| drops(DropReason::SpoofMac, 1, secs(i)));
    assert_eq!(observe_all(&mut e, two), []);
}

#[test]
fn a_transfer_that_loses_a_little_to_its_plan_is_not_hogging() {
    // 300 Mbit/s against a 200 Mbit/s plan as TCP does it: ~25,000 packets a second both
    // ways, ~1% of them dropped as it probes. Thousands of drops a minute, under 5%.
    let mut e = engine();
    let tcp = (0..120).map(|s| Drops {
        offered: 25_000,
        ..drops(DropReason::Bandwidth, 250, secs(s))
    });
    assert_eq!(everything(&mut e, tcp), []);
    // Slow start overshoots once: 6% of the first second's packets, then 0.5%.
    let mut e = engine();
    let start = (0..120).map(|s| Drops {
        offered: 25_000,
        ..drops(
            DropReason::Bandwidth,
            if s == 0 { 1_500 } else { 125 },
            secs(s),
        )
    });
    assert_eq!(everything(&mut e, start), []);
    // UDP at three times the plan: two thirds dropped, caught within seconds.
    let mut e = engine();
    let udp = (0..60).map(|s| Drops {
        offered: 51_000,
        ..drops(DropReason::Bandwidth, 34_000, secs(s))
    });
    let (n, d) = first_detection(&mut e, udp).expect("caught");
    assert_eq!((n, d.kind), (6, Kind::Bandwidth), "held for 5 s");
    let ratio = d.figure("drop_ratio").expect("ratio reported");
    assert!((ratio - 34.0 / 51.0).abs() < 1e-9, "{ratio}");
    // The spoofing kinds count drops whatever their share.
    let mut e = engine();
    let spoof = (0..60).map(|s| Drops {
        offered: 1_000_000,
        ..drops(DropReason::SpoofIp, 10, secs(s))
    });
    assert_eq!(first_detection(&mut e, spoof).map(|(n, _)| n), Some(10));
}

#[test]
fn occasional_drops_raise_nothing() {
    let mut e = engine();
    let facts = (0..100).map(|m| drops(DropReason::SpoofIp, 50, secs(m * 120)));
    assert_eq!(everything(&mut e, facts), []);
}

// --- engine ---------------------------------------------------------------------------------------

#[test]
fn a_tenant_configuration_overrides_the_defaults() {
    let mut e = engine();
    let mut cfg = TenantConfig::default();
    std::sync::Arc::make_mut(&mut cfg.detectors)
        .flood_out
        .syn_pps = 100;
    e.configure(T, cfg);
    assert_eq!(
        e.observe(rate(addr(5), Direction::Out, 200.0, 200.0, 0.0, 1e5))
            .len(),
        1
    );
    let other = Rate {
        slot: TenantSlot(T.0 + 1),
        ..rate(addr(5), Direction::Out, 200.0, 200.0, 0.0, 1e5)
    };
    assert_eq!(e.observe(other), [], "other tenants keep the defaults");
}

#[test]
fn facts_beyond_the_tenant_limit_are_refused_and_counted() {
    let mut e = Engine::new(
        TenantConfig::default(),
        Limits {
            tenants: 2,
            ..Limits::default()
        },
    );
    for slot in 0..5 {
        e.observe(Attempt {
            slot: TenantSlot(slot),
            ..attempt(addr(1), 80, Proto::Tcp, Outcome::Success, secs(1))
        });
    }
    assert_eq!((e.tenants(), e.stats().refused_facts), (2, 3));
}

#[test]
fn tick_frees_the_state_of_idle_tenants() {
    let mut e = engine();
    e.observe(attempt(addr(1), 80, Proto::Tcp, Outcome::Success, secs(1)));
    e.observe(smtp(addr(1), Outcome::Success, secs(1)));
    e.observe(drops(DropReason::SpoofIp, 1, secs(1)));
    e.tick(secs(60));
    assert_eq!(e.tenants(), 1, "the endpoint is still remembered");
    e.tick(secs(2 + 3_600));
    assert_eq!(e.tenants(), 0);
}

#[test]
fn observe_crossed_tells_which_facts_keep_an_episode_going() {
    let mut e = engine();
    e.configure(
        T,
        TenantConfig {
            allow: vec!["198.18.9.0/24".parse().expect("test CIDR")],
            ..TenantConfig::default()
        },
    );
    let (a, b) = (addr(5), addr(6));
    let allowed: IpAddr = "198.18.9.1".parse().expect("test address");
    // Defaults: flood_out syn_pps 2000.
    let (started, crossed) = e.observe_crossed(rate(a, Direction::Out, 0.0, 2_001.0, 0.0, 0.0));
    assert_eq!((started.len(), crossed), (1, Some(Kind::FloodOut)));
    // A second victim over the threshold keeps the episode going without a new start.
    let (started, crossed) = e.observe_crossed(rate(b, Direction::Out, 0.0, 5_000.0, 0.0, 0.0));
    assert_eq!((started.len(), crossed), (0, Some(Kind::FloodOut)));
    // Under the threshold, or allow-listed: nothing crossed.
    let (_, crossed) = e.observe_crossed(rate(b, Direction::Out, 0.0, 2_000.0, 0.0, 0.0));
    assert_eq!(crossed, None);
    let (_, crossed) = e.observe_crossed(rate(allowed, Direction::Out, 0.0, 1e6, 0.0, 0.0));
    assert_eq!(crossed, None, "allow-listed victims are exempt");
    let (_, crossed) = e.observe_crossed(rate(addr(1), Direction::In, 100_001.0, 0.0, 0.0, 0.0));
    assert_eq!(crossed, Some(Kind::FloodIn));
}
