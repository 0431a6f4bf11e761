//! Reading a policy file: values, defaults, overrides, and errors at their positions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Test YAML is written indented inside the test; this strips the first newline and the
/// common indentation so line 1 is the first line written.
pub(crate) fn yaml(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn ok(text: &str) -> Policy {
    match parse(&yaml(text), "test.yaml") {
        Ok(policy) => policy,
        Err(e) => panic!("expected a valid policy, got:\n{e}"),
    }
}

/// The diagnostics as (line, col, message).
pub(crate) fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match parse(&yaml(text), "test.yaml") {
        Ok(_) => panic!("expected errors, the policy parsed"),
        Err(e) => e
            .iter()
            .map(|d| (d.line, d.col, d.message.clone()))
            .collect(),
    }
}

pub(crate) fn one_error(text: &str) -> (usize, usize, String) {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

pub(crate) fn net(text: &str) -> IpNet {
    text.parse().expect("test CIDR")
}

const FULL: &str = r#"
    daemon:
      listen: "[2001:db8::1]:9000"
      state_dir: /srv/warden
      bpffs: /sys/fs/bpf/w
      tokens: /etc/warden/tokens
      management: [198.18.0.0/28, 2001:db8:ffff::/48]
      metrics_top_k: 250
      log_format: json
      api_limits: {max_connections: 300, reserved_connections: 0, idle_timeout: 5s}
    interfaces:
      - {name: eth0, mode: host}
      - name: eth1
        mode: gateway
    defaults:
      bandwidth: {egress: 1.5Gbit, ingress: 200Mbps, burst: 256KiB}
      smtp: 10/min
      allow: [198.18.0.53, 2001:db8::53]
      detectors:
        scan: {action: observe, false_positive_rate: 0.05, distinct_targets: 50, window: 30s}
        flood_out: {pps: 1000, syn_pps: 100, window: 500ms, ceiling: suspend}
        flood_in: {bps: 2Gbit, blackhole_for: 2h}
        spam: {connections: 10, failure_ratio: 0.25, window: 1d}
        proxy: {inbound_clients: 5, outbound_destinations: 6, correlation: 0.9}
        spoof_ip: {action: block, drops: 7}
        spoof_arp: {expire_after: 30s, escalate_after: 2, escalation_window: 5m}
        spoof_mac: {window: 2m}
        bandwidth: {action: throttle, throttle_to: 2Mbit}
    tenants:
      - id: "0042"
        addresses: [198.18.1.0/24, 2001:db8:1::/48]
        macs: [02:00:5e:10:00:01, 02-00-5E-10-00-02]
        bandwidth: {egress: unlimited}
        smtp: allow
        allow: []
        detectors:
          scan: {detection_rate: 0.9}
          flood_out: {action: suspend}
      - id: globex
        addresses: [198.18.2.7]
"#;

#[test]
fn full_file_reads_into_expected_values() {
    let policy = ok(FULL);

    let daemon = DaemonConfig {
        listen: "[2001:db8::1]:9000"
            .parse::<SocketAddr>()
            .expect("test addr"),
        state_dir: PathBuf::from("/srv/warden"),
        bpffs: PathBuf::from("/sys/fs/bpf/w"),
        tokens: Some(PathBuf::from("/etc/warden/tokens")),
        management: vec![net("198.18.0.0/28"), net("2001:db8:ffff::/48")],
        metrics_top_k: 250,
        log_format: LogFormat::Json,
        events_log: None,
        // A token file closes reads and metrics unless the policy opens them.
        open_reads: false,
        open_metrics: false,
        tls: None,
        fleet: None,
        api_limits: ApiLimits {
            max_connections: 300,
            reserved_connections: 0,
            idle_timeout: Duration::from_secs(5),
            ..ApiLimits::default()
        },
    };
    assert_eq!(policy.daemon, daemon);
    assert_eq!(
        policy.interfaces,
        vec![
            Interface {
                name: "eth0".into(),
                mode: Mode::Host,
                pass_ethertypes: Vec::new(),
                tenant: None,
                vlans: Vec::new(),
            },
            Interface {
                name: "eth1".into(),
                mode: Mode::Gateway,
                pass_ethertypes: Vec::new(),
                tenant: None,
                vlans: Vec::new(),
            },
        ]
    );

    let mut defaults = TenantSettings {
        bandwidth: Bandwidth {
            egress: Some(1_500_000_000),
            ingress: Some(200_000_000),
            burst: Some(256 * 1024),
        },
        smtp: Smtp::Rate {
            per_second: 10.0 / 60.0,
            text: "10/min".into(),
        },
        allow: vec![net("198.18.0.53/32"), net("2001:db8::53/128")],
        detectors: Default::default(),
        notify: Notify::default(),
    };
    let d = std::sync::Arc::make_mut(&mut defaults.detectors);
    d.scan.action = Action::Observe;
    d.scan.false_positive_rate = 0.05;
    d.scan.distinct_targets = 50;
    d.scan.window = Duration::from_secs(30);
    d.flood_out.pps = 1000;
    d.flood_out.syn_pps = 100;
    d.flood_out.window = Duration::from_millis(500);
    d.flood_out.ceiling = Action::Suspend;
    d.flood_in.bps = 2_000_000_000;
    d.flood_in.blackhole_for = Duration::from_secs(7200);
    d.spam.connections = 10;
    d.spam.failure_ratio = 0.25;
    d.spam.window = Duration::from_secs(86_400);
    d.proxy.inbound_clients = 5;
    d.proxy.outbound_destinations = 6;
    d.proxy.correlation = 0.9;
    d.spoof_ip.action = Action::Block;
    d.spoof_ip.drops = 7;
    d.spoof_arp.expire_after = Duration::from_secs(30);
    d.spoof_arp.escalate_after = 2;
    d.spoof_arp.escalation_window = Duration::from_secs(300);
    d.spoof_mac.window = Duration::from_secs(120);
    d.bandwidth.action = Action::Throttle;
    d.bandwidth.throttle_to = 2_000_000;
    assert_eq!(policy.defaults, defaults);
    assert_eq!(
        policy
            .defaults
            .detectors
            .response(Kind::Bandwidth)
            .throttle_to,
        2_000_000
    );

    let mut acme = defaults.clone();
    acme.bandwidth.egress = None;
    acme.smtp = Smtp::Allow;
    acme.allow = vec![];
    let d = std::sync::Arc::make_mut(&mut acme.detectors);
    d.scan.detection_rate = 0.9;
    d.flood_out.action = Action::Suspend;
    let globex = defaults.clone();
    assert_eq!(
        policy.tenants,
        vec![
            Tenant {
                id: "0042".into(),
                addresses: vec![net("198.18.1.0/24"), net("2001:db8:1::/48")],
                macs: vec![[2, 0, 0x5e, 0x10, 0, 1], [2, 0, 0x5e, 0x10, 0, 2]],
                settings: acme,
            },
            Tenant {
                id: "globex".into(),
                addresses: vec![net("198.18.2.7/32")],
                macs: vec![],
                settings: globex,
            },
        ]
    );
    assert_eq!(policy.tenant("globex").map(|t| t.addresses.len()), Some(1));
}

#[test]
fn empty_file_is_refused_at_line_one() {
    for text in ["", "# only a comment\n", "\n\n", "---\n"] {
        let diags = parse(text, "empty.yaml").expect_err("an empty policy is refused");
        assert_eq!(
            diags.to_string(),
            "empty.yaml:1:1: the policy is empty; write at least `tenants: []` to enforce nothing"
        );
    }
}

#[test]
fn explicit_empty_sections_are_a_policy_with_builtin_defaults() {
    for text in ["tenants: []\n", "tenants:\n", "interfaces: []\n"] {
        let policy = parse(text, "empty.yaml").expect("empty policy is valid");
        assert_eq!(policy.daemon, DaemonConfig::default());
        assert_eq!(policy.daemon.listen.to_string(), "127.0.0.1:9477");
        assert_eq!(policy.defaults, TenantSettings::default());
        assert!(policy.tenants.is_empty() && policy.interfaces.is_empty());
    }
}

#[test]
fn builtin_defaults_match_the_schema() {
    let d = Detectors::default();
    assert_eq!(d.scan.action, Action::Flag);
    assert_eq!(d.scan.window, Duration::from_secs(60));
    assert_eq!(d.flood_out.action, Action::Block);
    assert_eq!(d.flood_in.bps, 1_000_000_000);
    assert_eq!(d.flood_in.blackhole_for, Duration::from_secs(300));
    assert_eq!(d.spam.window, Duration::from_secs(600));
    assert_eq!(d.bandwidth.drops, 100);
    let response = d.response(Kind::SpoofMac);
    assert_eq!(response.expire_after, Duration::from_secs(600));
    assert_eq!(response.escalate_after, 3);
    assert_eq!(response.escalation_window, Duration::from_secs(3600));
    assert_eq!(response.ceiling, Action::Block);
    assert_eq!(response.throttle_to, 10_000_000);
    assert_eq!(response.block_for, response.expire_after);
    let flood_in = d.response(Kind::FloodIn);
    assert_eq!(
        (flood_in.block_for, flood_in.expire_after),
        (Duration::from_secs(300), Duration::from_secs(600)),
        "a flood_in block is a blackhole lasting blackhole_for"
    );
    assert_eq!(TenantSettings::default().smtp, Smtp::Block);
    assert_eq!(TenantSettings::default().bandwidth, Bandwidth::default());
}

#[test]
fn tenant_overrides_defaults_per_key() {
    let policy = ok(r#"
        defaults:
          bandwidth: {egress: 100Mbit, ingress: 50Mbit}
          smtp: 5/h
          allow: [198.18.9.0/24]
          detectors:
            scan: {action: block, window: 2m}
        tenants:
          - id: plain
            addresses: [198.18.1.1]
          - id: custom
            addresses: [198.18.1.2]
            bandwidth: {ingress: 10Mbit}
            smtp: block
            allow: [198.18.8.0/24]
            detectors:
              scan: {window: 5s}
              spam: {action: observe}
    "#);
    let plain = &policy.tenants[0].settings;
    assert_eq!(plain, &policy.defaults);
    assert_eq!(plain.bandwidth.egress, Some(100_000_000));
    assert_eq!(
        plain.smtp,
        Smtp::Rate {
            per_second: 5.0 / 3600.0,
            text: "5/h".into()
        }
    );

    let custom = &policy.tenants[1].settings;
    assert_eq!(
        custom.bandwidth.egress,
        Some(100_000_000),
        "egress inherited"
    );
    assert_eq!(
        custom.bandwidth.ingress,
        Some(10_000_000),
        "ingress overridden"
    );
    assert_eq!(custom.bandwidth.burst, None);
    assert_eq!(custom.smtp, Smtp::Block);
    assert_eq!(custom.allow, vec![net("198.18.8.0/24")], "allow replaced");
    assert_eq!(
        custom.detectors.scan.action,
        Action::Block,
        "inherited field"
    );
    assert_eq!(custom.detectors.scan.window, Duration::from_secs(5));
    assert_eq!(custom.detectors.spam.action, Action::Observe);
    assert_eq!(custom.detectors.proxy, Proxy::default());
}

#[test]
fn tenants_before_defaults_in_the_file_still_get_the_defaults() {
    let policy = ok(r#"
        tenants:
          - {id: a, addresses: [198.18.1.1]}
        defaults:
          smtp: allow
    "#);
    assert_eq!(policy.tenants[0].settings.smtp, Smtp::Allow);
}

#[test]
fn yaml_syntax_error_is_reported_at_its_position() {
    let (line, col, message) = one_error("tenants:\n  - id: a\n    addresses: [198.18.1.1\nx: 1\n");
    assert_eq!((line, col), (4, 2));
    assert!(message.starts_with("YAML syntax error: "), "{message}");
}

#[test]
fn duplicate_yaml_key_is_an_error_at_the_second_key() {
    let e = one_error("daemon:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n");
    assert_eq!(
        e,
        (3, 3, "YAML syntax error: duplicated key in mapping".into())
    );
}

#[test]
fn unknown_keys_are_errors_at_the_key() {
    let all = errors(
        r#"
        daemon:
          listne: 127.0.0.1:9477
        interfaces:
          - {name: eth0, mode: host, speed: 10}
        defaults:
          id: x
          bandwidth: {egres: 1Mbit}
        tenants:
          - id: a
            addresses: [198.18.1.1]
            colour: red
            detectors:
              scan: {windwo: 1s}
        extra: 1
    "#,
    );
    assert_eq!(
        all,
        vec![
            (2, 3, "unknown key `listne` in daemon; expected one of: listen, state_dir, bpffs, tokens, management, events_log, open_reads, open_metrics, tls, metrics_top_k, api_limits, log_format, fleet".into()),
            (4, 30, "unknown key `speed` in interface; expected one of: name, mode, pass_ethertypes, tenant, vlans".into()),
            (6, 3, "unknown key `id` in defaults; expected one of: bandwidth, smtp, allow, detectors, notify".into()),
            (7, 15, "unknown key `egres` in bandwidth; expected one of: egress, ingress, burst".into()),
            (11, 5, "unknown key `colour` in tenant; expected one of: id, addresses, macs, bandwidth, smtp, allow, detectors, notify".into()),
            (13, 14, "unknown key `windwo` in detector `scan`; expected one of: action, false_positive_rate, detection_rate, success_prob_benign, success_prob_scanner, distinct_targets, min_failed_targets, window, contain_rate, expire_after, throttle_to, escalate_after, escalation_window, ceiling, deadline, suspend_on_deadline".into()),
            (14, 1, "unknown key `extra` in the policy; expected one of: daemon, interfaces, defaults, tenants".into()),
        ]
    );
}

#[test]
fn wrong_types_are_errors_at_the_value() {
    let all = errors(
        r#"
        daemon: [1, 2]
        interfaces: {name: eth0}
        tenants:
          - id: [a]
            addresses: 198.18.1.0/24
            bandwidth: 1Gbit
            macs: [[02:00:5e:10:00:01]]
            detectors: {scan: {window: {s: 1}, action: }}
    "#,
    );
    assert_eq!(
        all,
        vec![
            (
                1,
                9,
                "expected a mapping of daemon settings, found a list".into()
            ),
            (
                2,
                13,
                "expected a list of interfaces, found a mapping".into()
            ),
            (4, 9, "expected a tenant id, found a list".into()),
            (
                5,
                16,
                "expected a list of CIDRs, found `198.18.1.0/24`".into()
            ),
            (
                6,
                16,
                "expected a mapping with keys egress, ingress, burst, found `1Gbit`".into()
            ),
            (7, 12, "expected a MAC, found a list".into()),
            (
                8,
                32,
                "expected a duration such as 30s, found a mapping".into()
            ),
            (8, 46, "expected an action, found nothing".into()),
        ]
    );
}

#[test]
fn bad_units_and_rates_are_errors_at_the_value() {
    let all = errors(
        r#"
        defaults:
          bandwidth:
            egress: 100
            ingress: 100Mb
            burst: 0KiB
          smtp: 0/min
          detectors:
            flood_in: {bps: -5Gbit, blackhole_for: 5 minutes}
            flood_out: {pps: 0, window: 10}
            spam: {failure_ratio: 1.0}
            scan: {escalate_after: -1}
    "#,
    );
    assert_eq!(
        all,
        vec![
            (3, 13, "missing unit, e.g. 100Mbit".into()),
            (4, 14, "unknown unit `Mb` in `100Mb`; expected one of: bit, kbit, Mbit, Gbit, Tbit, bps, kbps, Kbps, Mbps, Gbps, Tbps".into()),
            (5, 12, "size must be greater than zero, found `0KiB`".into()),
            (6, 9, "rate must be greater than zero, found `0/min`".into()),
            (8, 21, "rate must be greater than zero, found `-5Gbit`".into()),
            (8, 44, "unknown unit `minutes` in `5 minutes`; expected one of: ms, s, m, h, d".into()),
            (9, 22, "must be greater than zero, found `0`".into()),
            (9, 33, "missing unit, e.g. 30s".into()),
            (10, 27, "must be between 0 and 1 (both excluded), found `1.0`".into()),
            (11, 28, "must be greater than zero, found `-1`".into()),
        ]
    );
}

#[test]
fn unknown_names_are_errors_at_the_value_or_key() {
    let all = errors(
        r#"
        interfaces:
          - {name: eth0, mode: bridge}
        defaults:
          smtp: sometimes
          detectors:
            scan: {action: kill}
            ddos: {action: flag}
    "#,
    );
    assert_eq!(
        all,
        vec![
            (2, 24, "unknown mode `bridge`; expected host or gateway".into()),
            (4, 9, "expected block, allow or a rate of new connections such as 10/min, found `sometimes`".into()),
            (6, 20, "unknown action `kill`; expected one of: observe, flag, throttle, block, suspend".into()),
            (7, 5, "unknown detector kind `ddos`; expected one of: scan, flood_out, flood_in, spam, proxy, spoof_ip, spoof_arp, spoof_mac, bandwidth".into()),
        ]
    );
}

#[test]
fn missing_required_keys_are_errors_at_the_mapping() {
    let all = errors(
        r#"
        interfaces:
          - name: eth0
          - mode: host
        tenants:
          - macs: [02:00:5e:10:00:01]
          - id: b
    "#,
    );
    assert_eq!(
        all,
        vec![
            (2, 5, "interface is missing required key `mode`".into()),
            (3, 5, "interface is missing required key `name`".into()),
            (5, 5, "tenant is missing required key `id`".into()),
            (5, 5, "tenant is missing required key `addresses`".into()),
            (6, 5, "tenant is missing required key `addresses`".into()),
        ]
    );
}

#[test]
fn cross_field_detector_rules_are_checked() {
    let all = errors(
        r#"
        defaults:
          detectors:
            spam: {action: suspend}
            scan: {success_prob_scanner: 0.9, false_positive_rate: 0.995}
            proxy: {ceiling: observe}
    "#,
    );
    assert_eq!(
        all,
        vec![
            (
                3,
                20,
                "action suspend is above the ceiling block of detector `spam`; raise `ceiling`"
                    .into()
            ),
            (
                4,
                34,
                "success_prob_scanner (0.9) must be below success_prob_benign (0.8)".into()
            ),
            (
                4,
                60,
                "false_positive_rate (0.995) must be below detection_rate (0.99)".into()
            ),
            (
                5,
                22,
                "action flag is above the ceiling observe of detector `proxy`; raise `ceiling`"
                    .into()
            ),
        ]
    );
}

#[test]
fn five_different_errors_are_all_reported() {
    let all = errors(
        r#"
        daemon:
          listen: 127.0.0.1
        interfaces:
          - {name: eth0, mode: hots}
        tenants:
          - id: acme
            addresses: [198.18.1.0/24]
            bandwidth: {egress: 10}
          - id: acme
            addresses: [198.18.1.128/25]
            macs: [01:00:5e:00:00:01]
    "#,
    );
    let at: Vec<(usize, usize)> = all.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        at,
        vec![(2, 11), (4, 24), (8, 25), (9, 9), (10, 17), (11, 12)],
        "{all:#?}"
    );
    assert!(all[0].2.starts_with("expected IP:PORT"));
    assert!(all[1].2.starts_with("unknown mode `hots`"));
    assert_eq!(all[2].2, "missing unit, e.g. 100Mbit");
    assert_eq!(
        all[3].2,
        "duplicate tenant id acme (first defined at line 6)"
    );
    assert_eq!(
        all[4].2,
        "198.18.1.128/25 overlaps 198.18.1.0/24 of tenant acme (line 7)"
    );
    assert!(all[5].2.contains("multicast"));
}

#[test]
fn a_second_document_is_an_error() {
    let e = one_error("tenants: []\n---\ntenants: []\n");
    assert_eq!(
        e,
        (3, 1, "a policy file holds a single YAML document".into())
    );
}

#[test]
fn relative_paths_and_bad_ids_are_rejected() {
    let all = errors(
        r#"
        daemon: {state_dir: var/lib}
        tenants:
          - {id: "a b", addresses: [198.18.1.1]}
    "#,
    );
    assert_eq!(
        all,
        vec![
            (1, 21, "`var/lib` must be an absolute path".into()),
            (
                3,
                10,
                "invalid tenant id `a b`; use 1 to 64 characters of A-Z a-z 0-9 . _ -".into()
            ),
        ]
    );
}

#[test]
fn diagnostics_display_as_file_line_col_message() {
    let err = parse("daemon:\n  bogus: 1\ntenants: 3\n", "p.yaml").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "p.yaml:2:3: unknown key `bogus` in daemon; expected one of: listen, state_dir, bpffs, tokens, management, events_log, open_reads, open_metrics, tls, metrics_top_k, api_limits, log_format, fleet\n\
         p.yaml:3:10: expected a list of tenants, found `3`"
    );
}

#[test]
fn unreadable_file_is_one_diagnostic_at_line_zero() {
    let err = load(Path::new("/nonexistent/warden.yaml")).expect_err("missing file");
    assert_eq!(err.len(), 1);
    let d = err.iter().next().expect("one diagnostic");
    assert_eq!(
        (d.file.as_str(), d.line, d.col),
        ("/nonexistent/warden.yaml", 0, 0)
    );
    assert!(
        d.to_string().starts_with("/nonexistent/warden.yaml:0:0: "),
        "{d}"
    );
}

#[test]
fn example_config_parses() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/warden.yaml"
    ));
    let policy = match load(path) {
        Ok(policy) => policy,
        Err(e) => panic!("configs/warden.yaml is invalid:\n{e}"),
    };
    assert_eq!(policy.interfaces.len(), 2);
    assert_eq!(policy.daemon.listen.to_string(), "127.0.0.1:9477");
    // It spells out the API limits' built-in defaults too.
    assert_eq!(policy.daemon.api_limits, ApiLimits::default());
    // The example documents the built-in detector defaults by spelling them out.
    assert_eq!(*policy.defaults.detectors, Detectors::default());
    let acme = policy.tenant("acme").expect("acme in the example");
    assert_eq!(acme.settings.bandwidth.egress, Some(100_000_000));
    assert_eq!(acme.settings.bandwidth.ingress, Some(1_000_000_000));
    assert_eq!(acme.settings.detectors.scan.action, Action::Throttle);
    let globex = policy.tenant("globex").expect("globex in the example");
    assert_eq!(globex.settings.bandwidth.egress, None);
    assert_eq!(globex.settings.detectors.spam.action, Action::Suspend);
}

#[test]
fn units_convert_exactly() {
    assert_eq!(units::rate("1.5Gbit"), Ok(1_500_000_000));
    assert_eq!(
        units::rate("100 Mbps"),
        Err("no space between the number and the unit: write `100Mbps`".into())
    );
    assert_eq!(units::rate("64kbit"), Ok(64_000));
    assert_eq!(units::rate("2Kbps"), Ok(2_000));
    assert_eq!(units::rate("1Tbit"), Ok(1_000_000_000_000));
    assert!(units::rate("1mbit").is_err(), "units are case-sensitive");
    assert_eq!(units::size("256KiB"), Ok(262_144));
    assert_eq!(units::size("1.5MB"), Ok(1_500_000));
    assert_eq!(units::size("2GiB"), Ok(2 << 30));
    assert_eq!(units::duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(units::duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(units::duration("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(units::per_second("120/min"), Ok(2.0));
    assert_eq!(units::per_second_or_off("0"), Ok(0.0));
    assert_eq!(units::per_second_or_off("6/min"), Ok(0.1));
    assert!(units::per_second_or_off("0/s").is_err());
    // Written back in the unit that makes a whole number, and read back the same.
    for (rate, text) in [
        (1.0, "1/s"),
        (0.1, "6/min"),
        (1.0 / 3600.0, "1/h"),
        (0.0, "0"),
    ] {
        assert_eq!(crate::write::per_second_text(rate), text);
        assert_eq!(units::per_second_or_off(text), Ok(rate));
    }
    let odd = crate::write::per_second_text(0.0001);
    assert_eq!(units::per_second_or_off(&odd), Ok(0.0001), "{odd}");
    assert!(units::rate("99999999999999999999999Tbit").is_err());
    assert_eq!(
        units::count::<u32>("5000000000"),
        Err("`5000000000` is too large".into())
    );
}

#[test]
fn action_order_is_the_escalation_ladder() {
    assert!(Action::Observe < Action::Flag);
    assert!(Action::Flag < Action::Throttle);
    assert!(Action::Throttle < Action::Block);
    assert!(Action::Block < Action::Suspend);
    assert_eq!(Action::Throttle.escalated(), Action::Block);
    assert_eq!(Action::Suspend.escalated(), Action::Suspend);
    assert_eq!("flood_out".parse::<Kind>(), Ok(Kind::FloodOut));
}

#[test]
fn policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<Diagnostics>();
}

#[test]
fn tenant_lookup_by_id_survives_changes_to_the_list() {
    let mut policy = ok("
        tenants:
          - id: acme
            addresses: [198.18.1.0/24]
          - id: globex
            addresses: [198.18.2.7/32]
          - id: initech
            addresses: [198.18.3.0/24]
    ");
    let id = |p: &Policy, id: &str| p.tenant(id).map(|t| t.id.clone());
    assert_eq!(id(&policy, "globex").as_deref(), Some("globex"));
    assert_eq!(id(&policy, "initech").as_deref(), Some("initech"));
    assert!(policy.tenant("hooli").is_none());
    // The index was built at parse time; after the list changes, lookups still find
    // the tenant where it now is, and none that left.
    policy.tenants.remove(0);
    assert_eq!(id(&policy, "globex").as_deref(), Some("globex"));
    assert_eq!(id(&policy, "initech").as_deref(), Some("initech"));
    assert!(policy.tenant("acme").is_none());
}

#[test]
fn tenants_without_detector_overrides_share_the_defaults_detectors() {
    let policy = ok("
        defaults:
          detectors:
            scan: {distinct_targets: 40}
        tenants:
          - id: plain
            addresses: [198.18.0.10/32]
          - id: also-plain
            addresses: [198.18.0.11/32]
            bandwidth: {egress: 10Mbit}
          - id: own
            addresses: [198.18.0.12/32]
            detectors:
              scan: {distinct_targets: 7}
        ");
    let [plain, also_plain, own] = [0, 1, 2].map(|i| &policy.tenants[i].settings.detectors);
    // One allocation for every tenant on the defaults' detectors, not a copy each.
    assert!(Arc::ptr_eq(plain, &policy.defaults.detectors));
    assert!(Arc::ptr_eq(also_plain, &policy.defaults.detectors));
    assert_eq!(plain.scan.distinct_targets, 40);
    // A tenant's override is its own, and leaves the shared one alone.
    assert!(!Arc::ptr_eq(own, &policy.defaults.detectors));
    assert_eq!(own.scan.distinct_targets, 7);
    assert_eq!(policy.defaults.detectors.scan.distinct_targets, 40);
}

#[test]
fn a_port_binding_names_a_tenant_and_vlans_bind_once_in_gateway_mode() {
    let good = "interfaces:\n  - {name: eth0, mode: host, tenant: acme}\n  - {name: eth1, mode: gateway, vlans: [{id: 7, tenant: acme}]}\n  - {name: eth2, mode: gateway}\ntenants:\n  - {id: acme, addresses: [198.18.1.0/24]}\n";
    let p = parse(good, "t.yaml").expect("parses");
    assert_eq!(p.interfaces[0].tenant.as_deref(), Some("acme"));
    assert_eq!(
        p.interfaces[1].vlans,
        vec![crate::VlanBinding {
            id: 7,
            tenant: "acme".into()
        }]
    );
    let unbound: Vec<&str> = p
        .interfaces
        .iter()
        .filter(|i| !i.is_bound())
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(unbound, vec!["eth2"]);

    let bad = "interfaces:\n  - {name: eth0, mode: host, tenant: nobody}\n  - {name: eth1, mode: host, vlans: [{id: 7, tenant: acme}]}\n  - {name: eth2, mode: gateway, vlans: [{id: 7, tenant: acme}, {id: 7, tenant: acme}, {id: 4095, tenant: acme}]}\ntenants:\n  - {id: acme, addresses: [198.18.1.0/24]}\n";
    let text = parse(bad, "t.yaml").unwrap_err().to_string();
    let want = [
        "t.yaml:2:38: interface eth0 is bound to tenant `nobody`, which is not in `tenants`",
        "t.yaml:3:30: interface eth1 is in host mode",
        "t.yaml:4:69: VLAN 7 of interface eth2 is already bound (line 4)",
        "t.yaml:4:92: invalid VLAN id `4095`; expected 1 to 4094",
    ];
    for w in want {
        assert!(text.contains(w), "missing {w:?} in:\n{text}");
    }
}
