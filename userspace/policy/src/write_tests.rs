//! The policy written back ([`crate::write`]) parses to the same policy, and
//! [`crate::diff`] names what changed.

use std::path::Path;

use crate::diff::{diff, Change};
use crate::write::{to_yaml, Form};
use crate::{load, parse, Policy};

/// Writes `policy` in both forms and parses each back.
fn round_trip(policy: &Policy) {
    for form in [Form::AsApplied, Form::Effective] {
        let text = to_yaml(policy, form);
        match parse(&text, "written") {
            Ok(back) => assert_eq!(&back, policy, "{form:?} form:\n{text}"),
            Err(e) => panic!("{form:?} form does not parse:\n{e}\n{text}"),
        }
    }
}

#[test]
fn the_example_config_round_trips_in_both_forms() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/warden.yaml"
    ));
    let policy = load(path).expect("the example parses");
    round_trip(&policy);
}

/// A policy that sets every key the reader knows, most away from their defaults, with
/// values that need care: sub-millisecond durations, fractional rates, IPv6, quoting.
const EVERY_KEY: &str = r#"
daemon:
  listen: "[::1]:9480"
  state_dir: /srv/warden state
  bpffs: /sys/fs/bpf/w2
  tokens: /etc/warden/tokens
  management: [198.18.200.0/24, "2001:db8:ff::/48"]
  events_log: /var/log/warden/ev.jsonl
  open_reads: true
  open_metrics: false
  tls: {cert: /etc/warden/api.crt, key: /etc/warden/api.key}
  metrics_top_k: 0
  api_limits:
    max_connections: 100
    max_connections_per_source: 7
    reserved_connections: 0
    header_timeout: 1500ms
    idle_timeout: 2m
    body_timeout: 0.0005s
  log_format: json
  fleet:
    endpoints: ["https://198.18.0.1:2379", "https://[2001:db8::1]:2379"]
    prefix: /acme/w/
    node: gw-1
    tls: {ca: /etc/warden/ca.pem, cert: /etc/warden/n.pem, key: /etc/warden/n.key}
interfaces:
  - {name: eth0, mode: host, pass_ethertypes: [lldp, 0x9000], tenant: acme}
  - {name: eth1, mode: gateway, tenant: globex, vlans: [{id: 100, tenant: acme}, {id: 4094, tenant: globex}]}
  - {name: eth2, mode: gateway}
defaults:
  bandwidth: {egress: 1.5Gbit, ingress: 1Gbit, burst: 1MiB}
  smtp: 2.5/min
  allow: [198.18.250.0/24]
  notify: {webhook: "http://198.18.0.9:8080/hook?team=abuse"}
  detectors:
    scan: {action: throttle, false_positive_rate: 0.001, detection_rate: 0.999, success_prob_benign: 0.75, success_prob_scanner: 0.1, distinct_targets: 50, window: 90s, expire_after: 1h, throttle_to: 5Mbit, escalate_after: 2, escalation_window: 1d, ceiling: suspend, deadline: 12h, suspend_on_deadline: true}
    flood_out: {pps: 1000, syn_pps: 300, window: 2s}
    flood_in: {pps: 5000, bps: 123456bit, blackhole_for: 10m}
    spam: {distinct_servers: 5, connections: 30, failure_ratio: 0.3, window: 5m}
    proxy: {inbound_clients: 10, outbound_destinations: 25, correlation: 0.6, window: 30s}
    spoof_ip: {drops: 10, drop_ratio: 0, window: 10s, action: block}
    spoof_arp: {drops: 20}
    spoof_mac: {drop_ratio: 1}
    bandwidth: {drop_ratio: 0.5}
tenants:
  - id: acme
    addresses: [198.18.1.0/24, "2001:db8:1::/48"]
    macs: ["02:00:5e:10:00:01"]
    bandwidth: {egress: unlimited, burst: 64KiB}
    smtp: allow
    allow: []
    notify: {webhook: "http://198.18.0.10/x"}
    detectors:
      scan: {action: observe}
      bandwidth: {drops: 7}
  - id: globex
    addresses: [198.18.2.7]
    smtp: block
  - id: plain
    addresses: [198.18.3.0/24]
"#;

#[test]
fn a_policy_with_every_key_round_trips_in_both_forms() {
    let policy = parse(EVERY_KEY, "every-key.yaml").expect("the every-key policy parses");
    round_trip(&policy);
}

#[test]
fn as_applied_writes_only_what_differs_and_effective_writes_everything() {
    let policy = parse(EVERY_KEY, "every-key.yaml").expect("parses");
    let applied = to_yaml(&policy, Form::AsApplied);
    // `plain` inherits everything: only its id and addresses are written.
    assert!(
        applied.ends_with("- id: plain\n    addresses:\n      - 198.18.3.0/24\n"),
        "{applied}"
    );
    let effective = to_yaml(&policy, Form::Effective);
    // Every tenant carries every detector, with the defaults merged in.
    assert_eq!(effective.matches("suspend_on_deadline:").count(), 9 * 4);
    assert!(effective.contains("egress: unlimited"), "{effective}");
    assert!(effective.contains("body_timeout: 0.0005s"), "{effective}");
}

#[test]
fn diff_names_tenants_added_removed_and_each_changed_key() {
    let old = parse(EVERY_KEY, "old").expect("parses");
    let text = EVERY_KEY
        .replace("  - id: plain\n    addresses: [198.18.3.0/24]\n", "")
        .replace(
            "smtp: block",
            "smtp: block\n    bandwidth: {egress: 20Mbit}",
        )
        + "  - id: initech\n    addresses: [198.18.4.0/24]\n";
    let new = parse(&text, "new").expect("parses");
    let changes = diff(&old, &new);
    assert_eq!(
        changes,
        vec![
            Change::Changed {
                place: "tenant globex".into(),
                key: "bandwidth.egress".into(),
                old: Some("1500Mbit".into()),
                new: Some("20Mbit".into()),
            },
            Change::TenantRemoved("plain".into()),
            Change::TenantAdded("initech".into()),
        ]
    );
    assert_eq!(
        changes[0].to_string(),
        "~ tenant globex: bandwidth.egress: 1500Mbit -> 20Mbit"
    );
    assert!(diff(&old, &old).is_empty());
}

#[test]
fn diff_shows_a_defaults_change_at_every_tenant_it_reaches() {
    let old = parse(EVERY_KEY, "old").expect("parses");
    let new = parse(&EVERY_KEY.replace("smtp: 2.5/min", "smtp: 9/h"), "new").expect("parses");
    let places: Vec<String> = diff(&old, &new)
        .into_iter()
        .map(|c| match c {
            Change::Changed { place, key, .. } => format!("{place} {key}"),
            other => other.to_string(),
        })
        .collect();
    // acme and globex set their own smtp.
    assert_eq!(places, vec!["defaults smtp", "tenant plain smtp"]);
}

#[test]
fn diff_names_a_changed_port_binding() {
    let old = parse(EVERY_KEY, "old").expect("parses");
    let text = EVERY_KEY.replace("{id: 100, tenant: acme}", "{id: 100, tenant: plain}");
    let new = parse(&text, "new").expect("parses");
    let shown: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
    assert_eq!(shown, vec!["~ interfaces: eth1.vlans: [{id: 100, tenant: acme}, {id: 4094, tenant: globex}] -> [{id: 100, tenant: plain}, {id: 4094, tenant: globex}]"]);
}
