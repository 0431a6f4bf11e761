//! Tenants' addresses, MACs and interfaces: forms, overlaps and duplicates.

use crate::tests::{errors, ok, one_error};

#[test]
fn bad_addresses_are_errors_at_the_value() {
    let all = errors(
        r#"
        daemon:
          listen: localhost:80
          management: [198.18.0.0/33]
        tenants:
          - id: a
            addresses:
              - 198.18.1.5/24
              - 2001:db8::1/32
              - not-an-ip
    "#,
    );
    assert_eq!(
        all,
        vec![
            (2, 11, "expected IP:PORT such as 127.0.0.1:9477 or \"[::1]:9477\", found `localhost:80`".into()),
            (3, 16, "invalid CIDR `198.18.0.0/33`; expected an address or network such as 198.18.1.0/24 or 2001:db8::/48".into()),
            (7, 9, "host bits set, did you mean 198.18.1.0/24?".into()),
            (8, 9, "host bits set, did you mean 2001:db8::/32?".into()),
            (9, 9, "invalid CIDR `not-an-ip`; expected an address or network such as 198.18.1.0/24 or 2001:db8::/48".into()),
        ]
    );
}

#[test]
fn bad_macs_are_errors_at_the_value() {
    let all = errors(
        r#"
        tenants:
          - id: a
            addresses: [198.18.1.1]
            macs:
              - 02:00:5e:10:00
              - 01:00:5e:00:00:01
              - ff:ff:ff:ff:ff:ff
              - 00:00:00:00:00:00
              - 02:00:5e:10:00:zz
    "#,
    );
    assert_eq!(
        all,
        vec![
            (
                5,
                9,
                "invalid MAC `02:00:5e:10:00`; expected six hex pairs such as 02:00:5e:10:00:01"
                    .into()
            ),
            (
                6,
                9,
                "MAC 01:00:5e:00:00:01 is a multicast address; a tenant MAC must be unicast".into()
            ),
            (
                7,
                9,
                "MAC ff:ff:ff:ff:ff:ff is the broadcast address; a tenant MAC must be unicast"
                    .into()
            ),
            (8, 9, "MAC 00:00:00:00:00:00 is all zeros".into()),
            (
                9,
                9,
                "invalid MAC `02:00:5e:10:00:zz`; expected six hex pairs such as 02:00:5e:10:00:01"
                    .into()
            ),
        ]
    );
}

#[test]
fn duplicate_tenant_ids_and_interfaces_point_at_the_second() {
    let all = errors(
        r#"
        interfaces:
          - {name: eth0, mode: host}
          - {name: eth0, mode: gateway}
        tenants:
          - {id: acme, addresses: [198.18.1.1]}
          - {id: acme, addresses: [198.18.1.2]}
    "#,
    );
    assert_eq!(
        all,
        vec![
            (
                3,
                12,
                "duplicate interface eth0 (first listed at line 2)".into()
            ),
            (
                6,
                10,
                "duplicate tenant id acme (first defined at line 5)".into()
            ),
        ]
    );
}

#[test]
fn overlapping_addresses_name_the_other_tenant_and_line() {
    let all = errors(
        r#"
        tenants:
          - id: acme
            addresses:
              - 198.18.1.10/32
              - 2001:db8:1::/48
          - id: globex
            addresses:
              - 198.18.1.0/24
              - 2001:db8::/32
              - 198.18.7.0/24
              - 198.18.7.0/25
    "#,
    );
    assert_eq!(
        all,
        vec![
            (
                8,
                9,
                "198.18.1.0/24 overlaps 198.18.1.10/32 of tenant acme (line 4)".into()
            ),
            (
                9,
                9,
                "2001:db8::/32 overlaps 2001:db8:1::/48 of tenant acme (line 5)".into()
            ),
            (
                11,
                9,
                "198.18.7.0/25 overlaps 198.18.7.0/24 of tenant globex (line 10)".into()
            ),
        ]
    );
}

#[test]
fn identical_addresses_overlap() {
    let e = one_error(
        r#"
        tenants:
          - {id: a, addresses: [198.18.1.1, 198.18.1.1/32]}
    "#,
    );
    assert_eq!(
        e,
        (
            2,
            37,
            "198.18.1.1/32 overlaps 198.18.1.1/32 of tenant a (line 2)".into()
        )
    );
}

#[test]
fn disjoint_neighbours_do_not_overlap() {
    let policy = ok(r#"
        tenants:
          - {id: a, addresses: [198.18.0.0/24, 198.18.2.0/23]}
          - {id: b, addresses: [198.18.1.0/24, 198.18.4.0/24, 2001:db8::/64]}
          - {id: c, addresses: [198.18.5.0/24, 2001:db8:0:1::/64]}
    "#);
    assert_eq!(policy.tenants.len(), 3);
}

#[test]
fn a_mac_bound_to_two_tenants_is_an_error() {
    let e = one_error(
        r#"
        tenants:
          - {id: a, addresses: [198.18.1.1], macs: [02:00:5e:10:00:01]}
          - {id: b, addresses: [198.18.1.2], macs: ["02-00-5E-10-00-01"]}
    "#,
    );
    assert_eq!(
        e,
        (
            3,
            45,
            "MAC 02:00:5e:10:00:01 is already bound to tenant a (line 2)".into()
        )
    );
}

#[test]
fn pass_ethertypes_take_numbers_and_names_and_never_what_is_parsed() {
    let p = ok(r#"
        interfaces:
          - {name: eth0, mode: gateway, pass_ethertypes: [lldp, 0x88B5, 35041]}
          - {name: eth1, mode: host}
    "#);
    assert_eq!(p.interfaces[0].pass_ethertypes, [0x88cc, 0x88b5, 0x88e1]);
    assert!(p.interfaces[1].pass_ethertypes.is_empty());
    let all = errors(
        r#"
        interfaces:
          - {name: eth0, mode: gateway, pass_ethertypes: [0x0800, 0x8100, 0x0026, ipx, 0x1ffff]}
          - {name: eth1, mode: gateway, pass_ethertypes: [lldp, 0x88cc]}
    "#,
    );
    let messages: Vec<String> = all
        .iter()
        .map(|(l, c, m)| format!("{l}:{c}: {m}"))
        .collect();
    assert_eq!(messages.len(), 6, "{messages:#?}");
    for (got, want) in messages.iter().zip([
        "2:51: 0x0800 (IPv4, IPv6, ARP) is parsed",
        "2:59: 0x8100 is a VLAN tag",
        "2:67: 0x0026 is an 802.3 length",
        "2:75: expected an ethertype such as 0x88cc",
        "2:80: expected an ethertype such as 0x88cc",
        "3:57: ethertype 0x88cc is listed twice",
    ]) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
}
