//! Decoding the programs' records: every field checked.

use super::*;

fn event(kind: u32) -> Event {
    Event {
        kind,
        tenant: 7,
        at: 5_000_000_123,
        local: [198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        remote: [198, 19, 4, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        family: 4,
        proto: 6,
        detail: 0,
        dir: direction::OUT as u8,
        local_port: 40_000,
        remote_port: 22,
        value: 0,
        threshold: 0,
    }
}

fn bytes<T: aya::Pod>(v: &T) -> Vec<u8> {
    // SAFETY: T is Pod without padding (asserted in warden-common): every byte is
    // initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

fn contact() -> Contact {
    Contact {
        slot: TenantSlot(7),
        at: Duration::new(5, 123),
        proto: Proto::Tcp,
        local: "198.18.0.2".parse().unwrap(),
        local_port: 40_000,
        remote: "198.19.4.9".parse().unwrap(),
        remote_port: 22,
    }
}

#[test]
fn attempts_decode_with_both_endpoints_and_the_time() {
    let got = decode_event(&bytes(&event(event::ATTEMPT))).unwrap();
    assert_eq!(got, KernelEvent::Attempt(contact()));
    assert_eq!(got.slot(), TenantSlot(7));
    assert_eq!(got.at(), Duration::new(5, 123));
}

#[test]
fn outcomes_decode_each_answer_and_refuse_unknown_ones() {
    for (detail, want) in [
        (outcome::SUCCESS, Outcome::Success),
        (outcome::REFUSED, Outcome::Refused),
        (outcome::UNREACHABLE, Outcome::Unreachable),
    ] {
        let mut e = event(event::OUTCOME);
        e.detail = detail;
        assert_eq!(
            decode_event(&bytes(&e)).unwrap(),
            KernelEvent::Outcome {
                contact: contact(),
                outcome: want
            }
        );
    }
    let mut e = event(event::OUTCOME);
    e.detail = 9;
    assert_eq!(decode_event(&bytes(&e)), Err(DecodeError::Outcome(9)));
    // DROPPED belongs to attempts only.
    e.detail = outcome::DROPPED;
    assert_eq!(
        decode_event(&bytes(&e)),
        Err(DecodeError::Outcome(outcome::DROPPED))
    );
}

/// An answer comes through the attempt log: its entry reads as an OUTCOME coming in, and
/// decodes as the attempt's outcome, as from the ring.
#[test]
fn outcomes_decode_from_the_attempt_log_as_answers_coming_in() {
    let e = event(event::OUTCOME);
    let entry = warden_common::facts::LogEntry {
        seq: 1,
        at: e.at,
        tenant: e.tenant,
        kind: event::OUTCOME as u8,
        family: e.family,
        proto: e.proto,
        detail: outcome::REFUSED,
        local_port: e.local_port,
        remote_port: e.remote_port,
        _pad2: 0,
        local: e.local,
        remote: e.remote,
    };
    let logged = crate::log::event_of(&entry);
    assert_eq!(logged.dir, direction::IN as u8);
    assert_eq!(
        decode_log_event(&logged).unwrap(),
        KernelEvent::Outcome {
            contact: contact(),
            outcome: Outcome::Refused
        }
    );
    let mut attempt = entry;
    attempt.kind = event::ATTEMPT as u8;
    attempt.detail = 0;
    assert_eq!(crate::log::event_of(&attempt).dir, direction::OUT as u8);
}

#[test]
fn spoof_events_decode_the_claimed_address_and_mac_and_refuse_other_reasons() {
    let mut e = event(event::SPOOF);
    e.detail = warden_common::reason::SPOOF_ARP as u8;
    e.value = u64::from_le_bytes([0x02, 0, 0x5e, 0x10, 0, 0x02, 0, 0]);
    assert_eq!(
        decode_event(&bytes(&e)).unwrap(),
        KernelEvent::Spoof(Claim {
            slot: TenantSlot(7),
            at: Duration::new(5, 123),
            kind: warden_policy::Kind::SpoofArp,
            addr: "198.18.0.2".parse().unwrap(),
            mac: [0x02, 0, 0x5e, 0x10, 0, 0x02],
        })
    );
    e.detail = warden_common::reason::BANDWIDTH as u8;
    assert!(decode_event(&bytes(&e)).is_err());
}

#[test]
fn smtp_connections_decode_from_the_log_only() {
    let e = event(event::SMTP);
    assert_eq!(
        decode_log_event(&e).unwrap(),
        KernelEvent::SmtpConnection(contact())
    );
    assert_eq!(
        decode_event(&bytes(&e)),
        Err(DecodeError::UnknownKind(event::SMTP))
    );
}

#[test]
fn an_attempt_warden_dropped_decodes_as_its_outcome_and_other_details_are_errors() {
    let mut e = event(event::ATTEMPT);
    e.detail = outcome::DROPPED;
    assert_eq!(
        decode_log_event(&e).unwrap(),
        KernelEvent::Outcome {
            contact: contact(),
            outcome: Outcome::Dropped
        }
    );
    e.detail = outcome::SUCCESS;
    assert_eq!(
        decode_log_event(&e),
        Err(DecodeError::Outcome(outcome::SUCCESS))
    );
}

#[test]
fn accepted_connections_decode_udp_and_icmp_protocols_map() {
    let mut e = event(event::ACCEPTED);
    assert_eq!(
        decode_event(&bytes(&e)).unwrap(),
        KernelEvent::Accepted(contact())
    );
    for (proto, want) in [(17, Proto::Udp), (1, Proto::Icmp), (58, Proto::Icmp)] {
        e.proto = proto;
        let KernelEvent::Accepted(c) = decode_event(&bytes(&e)).unwrap() else {
            panic!("not an accepted event");
        };
        assert_eq!(c.proto, want);
    }
    e.proto = 47;
    assert_eq!(
        decode_event(&bytes(&e)),
        Err(DecodeError::Proto {
            kind: event::ACCEPTED,
            proto: 47
        })
    );
}

#[test]
fn ipv6_addresses_decode_from_all_sixteen_bytes() {
    let mut e = event(event::ATTEMPT);
    let local: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let remote: Ipv6Addr = "2001:db8:ffff::1:9".parse().unwrap();
    e.family = 6;
    e.proto = 58;
    e.local = local.octets();
    e.remote = remote.octets();
    let KernelEvent::Attempt(c) = decode_event(&bytes(&e)).unwrap() else {
        panic!("not an attempt");
    };
    assert_eq!((c.local, c.remote), (IpAddr::V6(local), IpAddr::V6(remote)));
    e.family = 5;
    assert_eq!(
        decode_event(&bytes(&e)),
        Err(DecodeError::Family {
            kind: event::ATTEMPT,
            family: 5
        })
    );
}

#[test]
fn outbound_floods_name_the_victim_and_inbound_floods_the_tenant_address() {
    let mut e = event(event::FLOOD);
    e.detail = class::SYN;
    e.proto = 0;
    e.value = 2_000;
    e.threshold = 1_074;
    let KernelEvent::Flood(f) = decode_event(&bytes(&e)).unwrap() else {
        panic!("not a flood");
    };
    assert_eq!(f.addr, "198.19.4.9".parse::<IpAddr>().unwrap());
    assert_eq!(
        (f.class, f.dir, f.value, f.threshold),
        (FloodClass::Syn, Direction::Out, 2_000, 1_074)
    );

    e.detail = class::IN_BYTES;
    e.dir = direction::IN as u8;
    let KernelEvent::Flood(f) = decode_event(&bytes(&e)).unwrap() else {
        panic!("not a flood");
    };
    assert_eq!(f.addr, "198.18.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(f.class, FloodClass::InBytes);

    for (raw, want) in [
        (class::PACKETS, FloodClass::Packets),
        (class::REPLY, FloodClass::Reply),
        (class::IN_PACKETS, FloodClass::InPackets),
    ] {
        assert_eq!(flood_class(raw), Some(want));
    }
}

#[test]
fn flood_events_with_a_class_of_the_other_direction_or_unknown_are_refused() {
    let mut e = event(event::FLOOD);
    e.detail = class::IN_PACKETS;
    assert_eq!(
        decode_event(&bytes(&e)),
        Err(DecodeError::ClassDirection {
            class: FloodClass::InPackets,
            expected: Direction::In,
            got: Direction::Out
        })
    );
    e.detail = 0;
    assert_eq!(decode_event(&bytes(&e)), Err(DecodeError::Class(0)));
    e.detail = class::SYN;
    e.dir = 2;
    assert_eq!(
        decode_event(&bytes(&e)),
        Err(DecodeError::Direction {
            kind: event::FLOOD,
            dir: 2
        })
    );
}

#[test]
fn per_second_scales_one_flood_epoch_to_one_second() {
    let f = FloodEvent {
        slot: TenantSlot(0),
        at: Duration::ZERO,
        dir: Direction::Out,
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        class: FloodClass::Packets,
        value: 1 << 30,
        threshold: 1 << 29,
    };
    // 2^30 packets in 2^30 ns is 1e9 per second.
    assert!((f.per_second() - 1e9).abs() < 1e-3, "{}", f.per_second());
    assert!((f.threshold_per_second() - 5e8).abs() < 1e-3);
    // A threshold compiled from 1,000/s round-trips within one count per epoch.
    let t = crate::compile::per_flood_epoch(1_000);
    let back = FloodEvent {
        threshold: u64::from(t),
        ..f
    }
    .threshold_per_second();
    assert!((back - 1_000.0).abs() < 1.0, "{back}");
}

fn sample(cap_len: u32) -> SampleEvent {
    let mut data = [0u8; SAMPLE_BYTES];
    for (i, b) in data.iter_mut().enumerate() {
        *b = i as u8;
    }
    SampleEvent {
        kind: event::SAMPLE,
        tenant: 3,
        at: 7_000_000_001,
        orig_len: 1_514,
        cap_len,
        dir: direction::IN,
        _pad: 0,
        data,
    }
}

#[test]
fn samples_carry_exactly_the_captured_bytes() {
    let got = decode_event(&bytes(&sample(60))).unwrap();
    let KernelEvent::Sample(s) = got else {
        panic!("not a sample");
    };
    assert_eq!(
        (s.slot, s.orig_len, s.dir),
        (TenantSlot(3), 1_514, Direction::In)
    );
    assert_eq!(s.at, Duration::new(7, 1));
    assert_eq!(s.data, (0..60).collect::<Vec<u8>>());

    // A record cut right after the captured bytes is whole.
    let b = bytes(&sample(20));
    let KernelEvent::Sample(s) = decode_event(&b[..SAMPLE_HEADER + 20]).unwrap() else {
        panic!("not a sample");
    };
    assert_eq!(s.data.len(), 20);
}

#[test]
fn samples_claiming_more_bytes_than_they_hold_are_refused() {
    let b = bytes(&sample(SAMPLE_BYTES as u32 + 1));
    assert_eq!(
        decode_event(&b),
        Err(DecodeError::CapLen {
            cap_len: SAMPLE_BYTES as u32 + 1,
            max: SAMPLE_BYTES
        })
    );
    let b = bytes(&sample(100));
    assert_eq!(
        decode_event(&b[..SAMPLE_HEADER + 50]),
        Err(DecodeError::Short {
            kind: event::SAMPLE,
            len: SAMPLE_HEADER + 50,
            need: SAMPLE_HEADER + 100
        })
    );
    assert!(matches!(
        decode_event(&b[..SAMPLE_HEADER - 1]),
        Err(DecodeError::Short { .. })
    ));
}

#[test]
fn short_and_unknown_records_are_errors() {
    assert_eq!(
        decode_event(&[1, 0]),
        Err(DecodeError::Short {
            kind: 0,
            len: 2,
            need: 4
        })
    );
    let b = bytes(&event(event::ATTEMPT));
    assert_eq!(
        decode_event(&b[..71]),
        Err(DecodeError::Short {
            kind: event::ATTEMPT,
            len: 71,
            need: 72
        })
    );
    assert_eq!(
        decode_event(&bytes(&event(99))),
        Err(DecodeError::UnknownKind(99))
    );
    assert_eq!(
        decode_event(&bytes(&event(0))),
        Err(DecodeError::UnknownKind(0))
    );
}

#[test]
fn trailing_ring_padding_is_ignored() {
    let mut b = bytes(&event(event::ATTEMPT));
    b.extend_from_slice(&[0xAA; 8]);
    assert_eq!(decode_event(&b).unwrap(), KernelEvent::Attempt(contact()));
}

#[test]
fn the_reader_can_move_into_a_task() {
    fn send<T: Send + 'static>() {}
    send::<EventReader>();
    send::<KernelEvent>();
}

#[test]
fn the_monotonic_clock_advances_and_matches_std_instant_pace() {
    let a = monotonic_now();
    let i = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let b = monotonic_now();
    assert!(a > Duration::ZERO);
    let d = b - a;
    let e = i.elapsed();
    assert!(d >= Duration::from_millis(20), "{d:?}");
    assert!(d.abs_diff(e) < Duration::from_millis(5), "{d:?} vs {e:?}");
}
