//! The CLI's grammar and its text output.

use super::text::*;
use super::*;
use crate::views::{DetectionView, Flag, FlagDetail, ReviewStats};

#[test]
fn a_ca_file_that_is_missing_or_not_pem_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.pem");
    let err = Client::new("https://127.0.0.1:1", None, Some(&missing))
        .err()
        .expect("missing CA refused");
    assert!(format!("{err:#}").contains("absent.pem"), "{err:#}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let err = Client::new("https://127.0.0.1:1", None, Some(&garbage))
        .err()
        .expect("garbage CA refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("garbage.pem") && text.contains("PEM"),
        "{text}"
    );
}

#[test]
fn table_columns_align() {
    let t = table(
        &["A", "BB"],
        &[
            vec!["long".into(), "x".into()],
            vec!["s".into(), "yy".into()],
        ],
    );
    assert_eq!(t, "A     BB\nlong  x\ns     yy\n");
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("30m"), Ok(1_800));
    assert_eq!(parse_duration("2h"), Ok(7_200));
    assert_eq!(parse_duration("7d"), Ok(604_800));
    assert_eq!(parse_duration("45s"), Ok(45));
    for bad in ["", "m", "30", "2x", "-1h", "1.5h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn top_targets_read_every_shape() {
    use serde_json::json;
    let pairs =
        json!([[{"addr": "198.18.0.9", "port": null}, 4000], [{"addr": null, "port": 25}, 7]]);
    assert_eq!(
        top_targets(&pairs),
        [
            ("198.18.0.9".to_string(), Some("4000".to_string())),
            ("port 25".to_string(), Some("7".to_string()))
        ]
    );
    assert_eq!(
        top_targets(&json!([{"target": "198.18.0.1", "count": 3}])),
        [("198.18.0.1".to_string(), Some("3".to_string()))]
    );
    assert_eq!(
        top_targets(&json!(["198.18.0.9"])),
        [("198.18.0.9".to_string(), None)]
    );
    assert_eq!(
        top_targets(
            &json!([{"addr": "198.18.2.1", "port": null, "mac": "02:00:5e:10:00:02", "count": 3}])
        ),
        [(
            "198.18.2.1 from 02:00:5e:10:00:02".to_string(),
            Some("3".to_string())
        )]
    );
    assert_eq!(
        top_targets(&json!({"198.18.0.2": 12})),
        [("198.18.0.2".to_string(), Some("12".to_string()))]
    );
}

#[test]
fn flag_text_shows_figures_thresholds_targets_and_samples() {
    use serde_json::json;
    let d = FlagDetail {
        flag: Flag {
            id: 4,
            tenant: "globex".into(),
            kind: Kind::FloodOut,
            state: FlagState::Open,
            first_seen: 1_700_000_000,
            last_seen: 1_700_000_060,
            policy_generation: 2,
            thresholds: json!({"pps": 20000}),
            figures: json!({"pps": 55000, "victims": 1}),
            top_targets: json!([["198.18.0.9", 55000]]),
            deadline: None,
            state_reason: None,
            node: None,
        },
        actions: vec![crate::views::FlagAction {
            at: 1_700_000_001,
            decision: crate::views::ActionDecision::Apply,
            action: warden_policy::Action::Throttle,
            target: "addr 198.18.0.9".into(),
            until: Some(1_700_000_601),
            by: "warden".into(),
        }],
        samples: 2,
        samples_refused: 0,
    };
    let t = flag_text(&d);
    for needle in [
        "flag 4: flood_out by tenant globex, open",
        "2023-11-14T22:13:20Z",
        "pps      55000     20000",
        "victims  1         -",
        "198.18.0.9  55000",
        "throttle",
        "2023-11-14T22:23:21Z",
        "samples: 2 kept, 0 refused",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
}

fn listed(id: i64, node: Option<&str>) -> Flag {
    Flag {
        id,
        tenant: "globex".into(),
        kind: warden_policy::Kind::Scan,
        state: crate::views::FlagState::Open,
        first_seen: 1_700_000_000,
        last_seen: 1_700_000_060,
        policy_generation: 2,
        thresholds: serde_json::json!({}),
        figures: serde_json::json!({}),
        top_targets: serde_json::json!([["198.18.0.9", 5]]),
        deadline: None,
        state_reason: None,
        node: node.map(str::to_owned),
    }
}

#[test]
fn the_flag_table_has_a_node_column_only_when_a_flag_names_its_node() {
    let alone = flag_table(&[listed(1, None)]);
    let header = alone.lines().next().expect("header");
    assert!(!header.contains("NODE"), "{alone}");
    assert!(header.starts_with("ID  TENANT  KIND"), "{alone}");

    let fleet = flag_table(&[listed(9, Some("node7")), listed(8, None)]);
    let mut lines = fleet.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("ID  TENANT  NODE   KIND"), "{fleet}");
    let first: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(first[..4], ["9", "globex", "node7", "scan"], "{fleet}");
    let second: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(second[..4], ["8", "globex", "-", "scan"], "{fleet}");

    let shown = flag_text(&FlagDetail {
        flag: listed(9, Some("node7")),
        actions: Vec::new(),
        samples: 0,
        samples_refused: 0,
    });
    assert!(shown.contains("node:              node7"), "{shown}");
}

#[test]
fn a_flags_node_filter_must_be_a_node_name() {
    let ok = Cli::try_parse_from(["warden", "flags", "--node", "node-7.dc1"]).expect("parses");
    assert!(matches!(ok.command, Command::Flags { node: Some(n), .. } if n == "node-7.dc1"));
    let Err(err) = Cli::try_parse_from(["warden", "flags", "--node", "a/b"]) else {
        panic!("--node a/b accepted");
    };
    assert!(err.to_string().contains("node name `a/b`"), "{err}");
}

#[test]
fn status_shows_events_sent_lost_and_actions_in_force() {
    let d = DetectionView {
        events_read: true,
        events_sent: 1_200,
        events_lost: 35,
        events_over_budget: 600,
        active_blocks: 3,
        active_throttles: 1,
        ..Default::default()
    };
    let t = detection_text(&d);
    for needle in [
        "reading kernel events",
        "events: 1200 sent, 35 lost, 600 over a tenant's budget, 0 undecodable",
        "in force: 3 blocks, 1 throttled tenants",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
    let off = detection_text(&DetectionView::default());
    assert!(off.contains("NOT reading kernel events"), "{off}");
}

#[test]
fn status_shows_each_interfaces_attachment_and_bound_tenants() {
    use crate::views::{InterfaceView, VlanView};
    let t = interface_table(&[
        InterfaceView {
            name: "wan0".into(),
            mode: "host".into(),
            attachment: "xdp attached, tcx-egress attached".into(),
            tenant: Some("acme".into()),
            vlans: vec![],
        },
        InterfaceView {
            name: "lan0".into(),
            mode: "gateway".into(),
            attachment: "xdp adopted".into(),
            tenant: None,
            vlans: vec![
                VlanView {
                    id: 100,
                    tenant: "globex".into(),
                },
                VlanView {
                    id: 200,
                    tenant: "acme".into(),
                },
            ],
        },
    ]);
    let lines: Vec<Vec<&str>> = t
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines,
        [
            vec!["INTERFACE", "MODE", "ATTACHMENT", "TENANT", "VLANS"],
            vec![
                "wan0",
                "host",
                "xdp attached, tcx-egress attached",
                "acme",
                "-"
            ],
            vec![
                "lan0",
                "gateway",
                "xdp adopted",
                "-",
                "100=globex, 200=acme"
            ],
        ],
        "{t}"
    );
}

#[test]
fn status_shows_notification_and_deadline_counts() {
    let t = review_text(&ReviewStats {
        pending: 2,
        delivered: 9,
        failures: 3,
        abandoned: 1,
        deadline_suspensions: 1,
        events_failed: 4,
        ..Default::default()
    });
    for needle in [
        "notifications: 2 pending, 9 delivered, 3 failed attempts, 1 abandoned, 0 dropped",
        "deadlines: 1 tenants suspended, 0 passed",
        "events log: 0 lines written, 4 lost",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
}

#[test]
fn rates_use_si_units() {
    assert_eq!(fmt_bps(12_345_678.0), "12.3 Mbit/s");
    assert_eq!(fmt_bps(999.0), "999 bit/s");
    assert_eq!(fmt_bps(2.5e9), "2.5 Gbit/s");
}

fn policy_view(source: crate::views::PolicySource) -> crate::views::PolicyView {
    let policy = warden_policy::parse("tenants: []\n", "p").expect("parses");
    crate::views::PolicyView::of(&policy, false, 4, 1_700_000_000, source, false)
}

#[test]
fn policy_sources_read_as_status_shows_them() {
    use crate::views::PolicySource;
    let file = PolicySource::File {
        path: "/etc/warden/warden.yaml".into(),
    };
    assert_eq!(file.to_string(), "file /etc/warden/warden.yaml");
    let api = PolicySource::Api {
        by: "ops".into(),
        at: 1_700_000_000,
        generation: 4,
        name: "p.yaml".into(),
    };
    assert_eq!(
        api.to_string(),
        "api by ops at 2023-11-14T22:13:20Z, generation 4"
    );
    // Serialised with its kind, as GET /api/v1/status and /api/v1/policy carry it.
    let v = serde_json::to_value(&api).expect("serialises");
    assert_eq!(v["kind"], "api");
    assert_eq!(v["generation"], 4);
}

#[test]
fn policy_diff_text_names_both_sides_and_each_change() {
    use warden_policy::diff::Change;
    let view = policy_view(crate::views::PolicySource::File {
        path: "/etc/w.yaml".into(),
    });
    assert_eq!(
        policy::diff_text("new.yaml", &view, &[]),
        "new.yaml: no changes from the running policy (generation 4, file /etc/w.yaml)\n"
    );
    let changes = [
        Change::TenantAdded("beta".into()),
        Change::Changed {
            place: "tenant acme".into(),
            key: "bandwidth.egress".into(),
            old: Some("100Mbit".into()),
            new: None,
        },
    ];
    assert_eq!(
        policy::diff_text("new.yaml", &view, &changes),
        "new.yaml: 2 change(s) from the running policy (generation 4, file /etc/w.yaml)\n\
         + tenant beta\n\
         ~ tenant acme: bandwidth.egress: 100Mbit -> (none)\n"
    );
}

#[test]
fn policy_apply_takes_a_file_or_from_file_not_both() {
    use clap::Parser as _;
    let parse = |args: &[&str]| Cli::try_parse_from(args);
    assert!(parse(&["warden", "policy", "apply", "p.yaml"]).is_ok());
    assert!(parse(&["warden", "policy", "apply", "--from-file"]).is_ok());
    for bad in [
        &["warden", "policy", "apply"][..],
        &["warden", "policy", "apply", "p.yaml", "--from-file"],
        &["warden", "policy", "apply", "--from-file", "--base", "3"],
    ] {
        let e = parse(bad).expect_err("usage error");
        assert_eq!(e.exit_code(), 2, "{bad:?}");
    }
    assert!(parse(&["warden", "policy", "diff", "-", "--exit-code"]).is_ok());
    assert!(parse(&["warden", "policy", "show", "--effective", "--json"]).is_ok());
}
