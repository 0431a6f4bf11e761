//! Block keys, throttle rates and the runtime state's encodings.

use super::*;

#[test]
fn targets_make_the_keys_the_programs_look_up() {
    let v4: IpAddr = "198.19.0.9".parse().unwrap();
    let k = block_key(BlockTarget::Victim(v4), TenantSlot(5));
    assert_eq!(
        (k.tenant, u32::from(k.dir), k.family, k.port),
        (5, direction::OUT, 4, 0)
    );
    assert_eq!(&k.addr[..4], &[198, 19, 0, 9]);
    assert_eq!(&k.addr[4..], &[0; 12]);

    let k = block_key(BlockTarget::Port(25), TenantSlot(5));
    assert_eq!(
        (u32::from(k.dir), k.family, k.port, k.addr),
        (direction::OUT, 0, 25, [0; 16])
    );

    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let k = block_key(BlockTarget::Blackhole(v6), TenantSlot(9));
    assert_eq!(
        (k.tenant, u32::from(k.dir), k.family, k.port),
        (9, direction::IN, 6, 0)
    );
    assert_eq!(k.addr, "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());

    let k = block_key(BlockTarget::ListenPort(3128), TenantSlot(9));
    assert_eq!(
        (u32::from(k.dir), k.family, k.port, k.addr),
        (direction::IN, 0, 3128, [0; 16])
    );
}

#[test]
fn keys_turn_back_into_their_targets_and_foreign_keys_do_not() {
    let targets = [
        BlockTarget::Victim("198.19.0.9".parse().unwrap()),
        BlockTarget::Victim("2001:db8::1".parse().unwrap()),
        BlockTarget::Port(25),
        BlockTarget::Blackhole("198.18.0.2".parse().unwrap()),
        BlockTarget::ListenPort(1080),
    ];
    for t in targets {
        assert_eq!(
            block_of_key(&block_key(t, TenantSlot(3))),
            Some((TenantSlot(3), t))
        );
    }
    // An address with a port, a family-0 key with an address, an unknown direction.
    let mut k = block_key(targets[0], TenantSlot(3));
    k.port = 80;
    assert_eq!(block_of_key(&k), None);
    let mut k = block_key(targets[2], TenantSlot(3));
    k.addr[0] = 1;
    assert_eq!(block_of_key(&k), None);
    let mut k = block_key(targets[2], TenantSlot(3));
    k.dir = 2;
    assert_eq!(block_of_key(&k), None);
}

#[test]
fn port_zero_blocks_are_refused() {
    assert!(check_block(BlockTarget::Port(0)).is_err());
    assert!(check_block(BlockTarget::ListenPort(0)).is_err());
    assert!(check_block(BlockTarget::Port(25)).is_ok());
}

#[test]
fn a_throttle_lowers_a_faster_plan_and_never_raises_a_slower_one() {
    let plan = [
        Rate::from_bits_per_second(100_000_000, burst_bytes(100_000_000, None)),
        Rate::from_bits_per_second(5_000_000, 1 << 20),
    ];
    let got = throttle_rates(plan, 10_000_000);
    // Out: 100 Mbit/s plan, 10 Mbit/s throttle with the default burst floor.
    assert_eq!(
        got[0],
        Rate::from_bits_per_second(10_000_000, super::super::compile::MIN_BURST_BYTES)
    );
    assert_eq!(got[0].cost_q10, 800 * 1024, "0.8 us per byte at 10 Mbit/s");
    // In: the 5 Mbit/s plan (with its own 1 MiB burst) is already lower.
    assert_eq!(got[1], plan[1]);
}

#[test]
fn a_throttle_limits_an_unlimited_plan_with_the_default_burst_rule() {
    let got = throttle_rates([Rate::UNLIMITED; 2], 1_000_000_000);
    // 1 Gbit/s for 20 ms is 2.5 MB, above the 64 KiB floor.
    let want = Rate::from_bits_per_second(1_000_000_000, 2_500_000);
    assert_eq!(got, [want, want]);
    assert_eq!(want.burst_ns, 20_000_000);
}

#[test]
fn equal_rates_keep_the_plan_and_its_burst() {
    let plan = Rate::from_bits_per_second(10_000_000, 1 << 20);
    assert_eq!(throttle_rates([plan; 2], 10_000_000), [plan; 2]);
}

#[test]
fn lost_events_are_ring_and_log_losses_and_over_budget_is_apart() {
    let c = FactCounters {
        sent: 10,
        over_budget: 3,
        lost_ring: 4,
        logged: 100,
        lost_log: 2,
        samples: 1,
        blocked: 1,
    };
    assert_eq!(c.lost(), 6);
    assert_eq!(c.over_budget, 3);
    assert_eq!(c.delivered(), 110);
    let mut sums = [0; fact_counter::COUNT as usize];
    for (i, s) in sums.iter_mut().enumerate() {
        *s = 1 << i;
    }
    let c = FactCounters::from_sums(&sums);
    assert_eq!(
        (
            c.sent,
            c.over_budget,
            c.lost_ring,
            c.logged,
            c.samples,
            c.blocked,
            c.lost_log
        ),
        (1, 2, 4, 8, 16, 32, 64)
    );
}
