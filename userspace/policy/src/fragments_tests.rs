//! A policy split into fragments and assembled again reads as the same policy.

use super::fragments::{assemble, bound_tenants_in, fleet_sections_in, fragments};
use super::parse;

const LOCAL: &str =
    "daemon:\n  listen: 127.0.0.1:9477\ninterfaces:\n  - {name: lan0, mode: gateway}\n";

const FLEET: &str = r#"
defaults:
  bandwidth: {egress: 100Mbit, ingress: "1Gbit", burst: 256KiB}
  smtp: block
  detectors:
    scan: {action: flag}
tenants:
  - id: acme
    addresses: [198.18.1.0/24, "2001:db8:1::/48"]
    macs: ["02:00:00:00:00:01"]
    smtp: 10/min
  - id: globex
    addresses: [198.18.2.0/24]
    bandwidth: {egress: 10Mbit}
    allow: ~
    notify: {webhook: "http://198.18.0.9/hook"}
"#;

#[test]
fn fragments_assemble_back_to_the_same_policy() {
    let text = format!("{LOCAL}{FLEET}");
    let (policy, parts) = fragments(&text, "p.yaml").expect("valid policy");
    let ids: Vec<&str> = parts.tenants.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["acme", "globex"]);
    let doc = assemble(
        LOCAL,
        parts.defaults.as_deref(),
        parts.tenants.iter().map(|(_, t)| t.as_str()),
    );
    let again = parse(&doc, "assembled").expect("assembled policy parses");
    assert_eq!(again, policy, "assembled document:\n{doc}");
}

#[test]
fn every_scalar_is_a_string_and_unquoted_null_stays_null() {
    let (_, parts) = fragments(&format!("{LOCAL}{FLEET}"), "p.yaml").expect("valid policy");
    let globex: serde_json::Value =
        serde_json::from_str(&parts.tenants[1].1).expect("fragment is JSON");
    assert_eq!(globex["bandwidth"]["egress"], "10Mbit");
    assert_eq!(globex["notify"]["webhook"], "http://198.18.0.9/hook");
    assert_eq!(globex["allow"], serde_json::Value::Null);
}

#[test]
fn the_shipped_example_round_trips() {
    let text = include_str!("../../../configs/warden.yaml");
    let (policy, parts) = fragments(text, "warden.yaml").expect("the example is valid");
    let doc = assemble(
        &without_fleet_sections(text),
        parts.defaults.as_deref(),
        parts.tenants.iter().map(|(_, t)| t.as_str()),
    );
    let again = parse(&doc, "assembled").expect("assembled example parses");
    assert_eq!(again, policy);
}

#[test]
fn an_empty_fleet_is_a_policy_without_tenants() {
    let doc = assemble(LOCAL, None, std::iter::empty());
    let policy = parse(&doc, "assembled").expect("parses");
    assert!(policy.tenants.is_empty());
}

#[test]
fn a_local_file_holding_fleet_sections_is_found_out() {
    let found = fleet_sections_in(&format!("{LOCAL}{FLEET}"));
    let keys: Vec<&str> = found.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, ["defaults", "tenants"]);
    assert!(fleet_sections_in(LOCAL).is_empty());
}

/// The example's own `daemon` and `interfaces` sections: every line up to `defaults:`.
fn without_fleet_sections(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("defaults:") || line.starts_with("tenants:") {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn a_host_node_bound_on_every_interface_needs_only_its_tenants() {
    let bound =
        |interfaces: &str| bound_tenants_in(&format!("daemon: {{}}\ninterfaces:\n{interfaces}"));
    let two = bound(
        "  - {name: eth0, mode: host, tenant: acme}\n  - {name: eth1, mode: \"host\", tenant: globex}\n",
    )
    .expect("both host interfaces are bound");
    assert_eq!(two.into_iter().collect::<Vec<_>>(), ["acme", "globex"]);
    // Anything that may carry another tenant's frames needs the whole policy.
    for whole in [
        "  - {name: eth0, mode: host}\n",
        "  - {name: eth0, mode: host, tenant: acme}\n  - {name: eth1, mode: host}\n",
        "  - {name: eth0, mode: gateway, tenant: acme}\n",
        "  - {name: eth0, mode: gateway, tenant: acme, vlans: [{id: 7, tenant: globex}]}\n",
        "  []\n",
    ] {
        assert_eq!(bound(whole), None, "{whole}");
    }
    assert_eq!(bound_tenants_in("daemon: {}\n"), None, "no interfaces");
    assert_eq!(bound_tenants_in(LOCAL), None, "the gateway example");
}

#[test]
fn a_fleet_nodes_own_file_may_bind_tenants_the_fleet_holds() {
    let file = "daemon:\n  fleet:\n    endpoints: [\"http://127.0.0.1:2379\"]\n    node: n1\ninterfaces:\n  - {name: eth0, mode: host, tenant: acme}\n";
    parse(file, "node.yaml").expect("the bound tenant comes from the fleet");
    // Assembled with the fleet's sections, the binding is checked as ever.
    let err = parse(&assemble(file, None, std::iter::empty()), "assembled")
        .expect_err("acme is not in the fleet's tenants");
    assert!(err.to_string().contains("bound to tenant `acme`"), "{err}");
    let doc = assemble(
        file,
        None,
        [r#"{"id": "acme", "addresses": ["198.18.1.0/24"]}"#],
    );
    parse(&doc, "assembled").expect("acme is there");
    // Outside a fleet a file's bindings name its own tenants.
    let alone = "interfaces:\n  - {name: eth0, mode: host, tenant: acme}\n";
    assert!(parse(alone, "alone.yaml").is_err());
}
