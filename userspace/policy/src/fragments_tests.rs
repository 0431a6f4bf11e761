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

/// The fleet sections of [`FLEET`] with `tenants` (id, fragment) in id order, parsed
/// whole.
fn whole(defaults: Option<&str>, tenants: &[(String, String)]) -> Result<super::Policy, String> {
    let doc = assemble(LOCAL, defaults, tenants.iter().map(|(_, t)| t.as_str()));
    parse(&doc, "assembled").map_err(|d| d.to_string())
}

#[test]
fn a_tenant_change_parsed_alone_gives_the_whole_documents_policy() {
    let text = format!("{LOCAL}{FLEET}");
    let (base, parts) = fragments(&text, "p.yaml").expect("valid policy");
    let mut tenants = parts.tenants.clone();
    let changed = r#"{"id":"acme","addresses":["198.18.1.0/25","2001:db8:1::/48"],"smtp":"allow"}"#;
    let added = r#"{"id":"beta","addresses":["198.18.3.0/24"],"macs":["02:00:00:00:00:02"]}"#;
    let changes = [
        ("acme", Some(changed)),
        ("beta", Some(added)),
        ("globex", None),
    ];
    let incremental = base
        .with_tenant_changes(&changes)
        .expect("changes it can take");
    tenants[0].1 = changed.to_owned();
    tenants.retain(|(id, _)| id != "globex");
    tenants.push(("beta".to_owned(), added.to_owned()));
    tenants.sort();
    let full = whole(parts.defaults.as_deref(), &tenants).expect("whole document parses");
    assert_eq!(incremental, full);
    let ids: Vec<&str> = incremental.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["acme", "beta"]);
    assert_eq!(incremental.tenant("beta").map(|t| t.macs.len()), Some(1));
    // Nothing changed: the same policy.
    assert_eq!(base.with_tenant_changes(&[]), Some(base.clone()));
}

#[test]
fn a_tenant_change_the_whole_document_refuses_is_declined() {
    let text = format!("{LOCAL}{FLEET}");
    let (base, parts) = fragments(&text, "p.yaml").expect("valid policy");
    let cases = [
        // overlaps globex's /24
        ("beta", r#"{"id":"beta","addresses":["198.18.2.128/25"]}"#),
        // contains acme's /24
        ("beta", r#"{"id":"beta","addresses":["198.18.0.0/16"]}"#),
        // acme's MAC
        (
            "beta",
            r#"{"id":"beta","addresses":["198.18.3.0/24"],"macs":["02:00:00:00:00:01"]}"#,
        ),
        // overlapping itself
        (
            "beta",
            r#"{"id":"beta","addresses":["198.18.3.0/24","198.18.3.4/32"]}"#,
        ),
        // a bad value
        ("beta", r#"{"id":"beta","addresses":["198.18.3.0/33"]}"#),
        // an unknown key
        (
            "beta",
            r#"{"id":"beta","addresses":["198.18.3.0/24"],"colour":"red"}"#,
        ),
        // keyed by another id
        ("gamma", r#"{"id":"beta","addresses":["198.18.3.0/24"]}"#),
        // not one line
        (
            "beta",
            "{\"id\":\"beta\",\n\"addresses\":[\"198.18.3.0/24\"]}",
        ),
    ];
    for (key, text) in cases {
        assert_eq!(
            base.with_tenant_changes(&[(key, Some(text))]),
            None,
            "{key}: {text}"
        );
        // The whole document refuses it, or (a key not its id, a multi-line entry) the
        // incremental path cannot say and the whole document decides.
        let mut tenants = parts.tenants.clone();
        tenants.push((key.to_owned(), text.to_owned()));
        if key == text_id(text) && !text.contains('\n') {
            assert!(
                whole(parts.defaults.as_deref(), &tenants).is_err(),
                "the whole document takes {text}"
            );
        }
    }
    // Two changed tenants clashing with each other.
    let a = r#"{"id":"beta","addresses":["198.18.3.0/24"]}"#;
    let b = r#"{"id":"gamma","addresses":["198.18.3.0/26"]}"#;
    assert_eq!(
        base.with_tenant_changes(&[("beta", Some(a)), ("gamma", Some(b))]),
        None
    );
    // A change moving an address from one tenant to another in one apply is taken.
    let moved = r#"{"id":"beta","addresses":["198.18.2.0/24"]}"#;
    let p = base
        .with_tenant_changes(&[("globex", None), ("beta", Some(moved))])
        .expect("globex's address moved to beta");
    assert_eq!(p.tenants.len(), 2);
}

fn text_id(text: &str) -> &str {
    let start = text.find(r#""id":""#).map_or(0, |i| i + 6);
    let rest = &text[start..];
    &rest[..rest.find('"').unwrap_or(0)]
}
