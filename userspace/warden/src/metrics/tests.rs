//! The exposition, line by line: series, labels, top-K selection and aggregates.

use super::*;

#[test]
fn tenant_series_carry_tenant_direction_and_reason() {
    let mut drops = [DropCounters::default(); 2];
    drops[0].packets[reason::SPOOF_IP] = 7;
    let s = Snapshot {
        tenants: vec![TenantSeries {
            id: "acme".into(),
            counters: [
                Counters {
                    packets: 3,
                    bytes: 300,
                },
                Counters {
                    packets: 5,
                    bytes: 700,
                },
            ],
            drops,
            suspended: true,
            detections: [0, 2, 0, 0, 0, 0, 0, 0, 1],
        }],
        policy_generation: 2,
        ..Default::default()
    };
    let text = render(&s);
    for line in [
        "warden_tenant_bytes_total{tenant=\"acme\",direction=\"out\"} 300\n",
        "warden_tenant_bytes_total{tenant=\"acme\",direction=\"in\"} 700\n",
        "warden_tenant_packets_total{tenant=\"acme\",direction=\"out\"} 3\n",
        "warden_tenant_packets_total{tenant=\"acme\",direction=\"in\"} 5\n",
        "warden_dropped_packets_total{tenant=\"acme\",direction=\"out\",reason=\"spoof_ip\"} 7\n",
        "warden_dropped_packets_total{tenant=\"acme\",direction=\"in\",reason=\"bandwidth\"} 0\n",
        "warden_tenant_suspended{tenant=\"acme\"} 1\n",
        "warden_unattributed_packets_total{direction=\"out\",reason=\"spoofed\"} 0\n",
        "warden_policy_generation 2\n",
        "warden_policy_apply_failures_total 0\n",
        "warden_detections_total{tenant=\"acme\",kind=\"scan\"} 0\n",
        "warden_detections_total{tenant=\"acme\",kind=\"flood_out\"} 2\n",
        "warden_detections_total{tenant=\"acme\",kind=\"bandwidth\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn detection_families_export_events_drops_failures_and_actions() {
    // One tenant, so the per-tenant `warden_detections_total` has a sample: the
    // `prometheus` crate's encoder leaves out a family without one (HELP and TYPE
    // included), which Prometheus cannot tell from an empty family.
    let mut s = Snapshot {
        tenants: vec![tenant("acme", 0, 0)],
        ..Default::default()
    };
    s.detection.events_sent = 10;
    s.detection.events_lost = 7;
    s.detection.events_over_budget = 500;
    s.detection.pending.evicted = 3;
    s.detection.counters.blocks_full = 2;
    s.detection.status.active_blocks = 4;
    let text = render(&s);
    for line in [
        "# TYPE warden_events_lost_total counter\n",
        "warden_events_lost_total 7\n",
        "# TYPE warden_events_over_budget_total counter\n",
        "warden_events_over_budget_total 500\n",
        "warden_events_sent_total 10\n",
        "warden_detection_dropped_total{reason=\"pending_evicted\"} 3\n",
        "warden_action_failures_total{action=\"block\",reason=\"table_full\"} 2\n",
        "warden_actions_active{action=\"block\"} 4\n",
        "# TYPE warden_detections_total counter\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Every family is declared once.
    let mut seen = std::collections::HashSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(seen.insert(l.to_owned()), "declared twice: {l}");
    }
}

fn tenant(id: &str, bytes_out: u64, bytes_in: u64) -> TenantSeries {
    let mut t = TenantSeries {
        id: id.into(),
        ..Default::default()
    };
    t.counters[0].bytes = bytes_out;
    t.counters[1].bytes = bytes_in;
    t
}

fn ids(tenants: &[TenantSeries], k: usize) -> Vec<&str> {
    select_top_k(tenants, k)
        .into_iter()
        .map(|i| &*tenants[i].id)
        .collect()
}

#[test]
fn top_k_keeps_the_heaviest_by_bytes_both_ways_in_policy_order() {
    let tenants = vec![
        tenant("a", 10, 0),
        tenant("b", 0, 50),
        tenant("c", 30, 30),
        tenant("d", 5, 5),
    ];
    assert_eq!(ids(&tenants, 2), ["b", "c"]);
    assert_eq!(ids(&tenants, 3), ["a", "b", "c"]);
    assert_eq!(ids(&tenants, 4), ["a", "b", "c", "d"]);
    assert_eq!(ids(&tenants, 10), ["a", "b", "c", "d"]);
    assert!(ids(&tenants, 0).is_empty());
}

#[test]
fn top_k_puts_suspended_then_detected_tenants_first_and_breaks_ties_by_id() {
    let mut tenants = vec![
        tenant("big", 1_000_000, 0),
        tenant("quiet-suspended", 0, 0),
        tenant("flagged", 1, 0),
        tenant("y", 7, 0),
        tenant("x", 7, 0),
    ];
    tenants[1].suspended = true;
    tenants[2].detections[Kind::ALL.len() - 1] = 1;
    assert_eq!(ids(&tenants, 1), ["quiet-suspended"]);
    assert_eq!(ids(&tenants, 2), ["quiet-suspended", "flagged"]);
    assert_eq!(ids(&tenants, 3), ["big", "quiet-suspended", "flagged"]);
    // Equal bytes: the smaller id wins, the same on every scrape.
    assert_eq!(ids(&tenants, 4), ["big", "quiet-suspended", "flagged", "x"]);
    // Saturating sum: counters near u64::MAX do not wrap to small.
    let huge = vec![tenant("h", u64::MAX, u64::MAX), tenant("s", 1, 1)];
    assert_eq!(ids(&huge, 1), ["h"]);
}

/// Checks the text-format rules Prometheus relies on: every sample belongs to the
/// family declared just before it (HELP and TYPE once each, families contiguous),
/// counters end in `_total`, values parse, and no series appears twice. Returns
/// the samples by series.
fn parse_exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    let mut declared = std::collections::HashSet::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(
                declared.insert(name.clone()),
                "family {name} declared twice"
            );
            current = Some((name, String::new()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let cur = current.as_mut().expect("TYPE without HELP");
            assert_eq!(cur.0, name, "TYPE of another family than its HELP");
            assert!(["counter", "gauge"].contains(&kind), "type {kind}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
            cur.1 = kind.to_owned();
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("sample without value");
            let name = series.split('{').next().unwrap();
            let (family, kind) = current.as_ref().expect("sample before any family");
            assert_eq!(name, family, "sample {line:?} outside its family");
            assert!(!kind.is_empty(), "family {family} without TYPE");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
                }
            }
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            assert!(v.is_finite() && v >= 0.0, "{line:?}");
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "series twice: {series}"
            );
        }
    }
    samples
}

#[test]
fn top_k_bounds_the_tenant_series_and_the_aggregates_cover_every_tenant() {
    let mut tenants: Vec<TenantSeries> = (0..50)
        .map(|i| tenant(&format!("t{i:02}"), i * 100, i))
        .collect();
    tenants[3].suspended = true;
    tenants[4].drops[0].packets[reason::BANDWIDTH] = 9;
    tenants[5].detections[0] = 2;
    let mut retired = Totals::default();
    retired.add_traffic(
        &[
            Counters {
                packets: 1,
                bytes: 1_000_000,
            },
            Counters::default(),
        ],
        &[DropCounters::default(); 2],
    );
    retired.add_detections(&[1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let s = Snapshot {
        tenants,
        top_k: TopK(10),
        retired,
        ..Default::default()
    };
    let text = render(&s);
    let samples = parse_exposition(&text);
    let exported: std::collections::BTreeSet<&str> = samples
        .keys()
        .filter(|k| k.starts_with("warden_tenant_bytes_total{"))
        .map(|k| &k[k.find("tenant=\"").unwrap() + 8..k.find("\",").unwrap()])
        .collect();
    // Suspended t03 and flagged t05, then the 8 heaviest: t42..t49.
    let want: std::collections::BTreeSet<&str> = ["t03", "t05"]
        .into_iter()
        .chain(["t42", "t43", "t44", "t45", "t46", "t47", "t48", "t49"])
        .collect();
    assert_eq!(exported, want);
    for family in [
        "warden_tenant_packets_total{",
        "warden_dropped_packets_total{",
        "warden_tenant_suspended{",
        "warden_detections_total{",
    ] {
        let tenants: std::collections::BTreeSet<&str> = samples
            .keys()
            .filter(|k| k.starts_with(family))
            .map(|k| &k[k.find("tenant=\"").unwrap() + 8..][..3])
            .collect();
        assert_eq!(tenants, want, "{family}");
    }
    let out_bytes: u64 = (0..50).map(|i| i * 100).sum::<u64>() + 1_000_000;
    let in_bytes: u64 = (0..50).sum();
    for (series, v) in [
        ("warden_tenants", 50.0),
        ("warden_tenants_suspended", 1.0),
        ("warden_metrics_top_k", 10.0),
        ("warden_tenants_omitted", 40.0),
        (
            "warden_tenants_bytes_total{direction=\"out\"}",
            out_bytes as f64,
        ),
        (
            "warden_tenants_bytes_total{direction=\"in\"}",
            in_bytes as f64,
        ),
        ("warden_tenants_packets_total{direction=\"out\"}", 1.0),
        (
            "warden_tenants_dropped_packets_total{direction=\"out\",reason=\"bandwidth\"}",
            9.0,
        ),
        ("warden_tenants_detections_total{kind=\"scan\"}", 3.0),
        ("warden_program_stats_enabled", 0.0),
    ] {
        assert_eq!(samples.get(series), Some(&v), "{series} in:\n{text}");
    }
    // The dropped t04 is not exported, but its drop is in the sum above.
    assert!(!text.contains("tenant=\"t04\""));
    assert!(!text.contains("# TYPE warden_program_runs_total"));
    assert!(!text.contains("\nwarden_program_runs_total{"));
}

#[test]
fn program_runs_are_exported_only_while_the_kernel_counts_them() {
    let s = Snapshot {
        programs: Some(vec![ProgramRuns {
            program: "xdp_to_tenant".into(),
            runs: 12,
            run_time_ns: 1_500_000_000,
        }]),
        ..Default::default()
    };
    let samples = parse_exposition(&render(&s));
    assert_eq!(samples.get("warden_program_stats_enabled"), Some(&1.0));
    assert_eq!(
        samples.get("warden_program_runs_total{program=\"xdp_to_tenant\"}"),
        Some(&12.0)
    );
    assert_eq!(
        samples.get("warden_program_run_seconds_total{program=\"xdp_to_tenant\"}"),
        Some(&1.5)
    );
}

#[test]
fn default_snapshot_with_maps_is_valid_exposition() {
    let s = Snapshot {
        tenants: vec![tenant("a\"b", 1, 2)],
        maps: vec![("ADDRS_V4".into(), 3, 131_072)],
        ..Default::default()
    };
    let samples = parse_exposition(&render(&s));
    assert_eq!(
        samples.get("warden_map_entries{map=\"ADDRS_V4\"}"),
        Some(&3.0)
    );
    assert_eq!(s.top_k, TopK(DEFAULT_TOP_K));
}

#[test]
fn label_values_are_escaped() {
    let s = Snapshot {
        tenants: vec![TenantSeries {
            id: "a\"b\\c".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(render(&s).contains("tenant=\"a\\\"b\\\\c\""));
}

#[test]
fn metrics_name_every_family_once() {
    let mut out = String::new();
    review::render(
        &mut out,
        &crate::views::ReviewStats {
            delivered: 4,
            failures: 3,
            pending: 1,
            ..Default::default()
        },
    );
    assert!(
        out.contains("\nwarden_webhook_notifications_total 4\n"),
        "{out}"
    );
    assert!(out.contains("\nwarden_webhook_failures_total 3\n"), "{out}");
    assert!(out.contains("\nwarden_webhook_pending 1\n"), "{out}");
    assert_eq!(out.matches("# TYPE").count(), 9);
}

#[test]
fn shaping_figures_are_exported_by_a_daemon_and_not_by_a_controller() {
    let s = Snapshot {
        shaping: Some(ShapingFigures {
            flows: 9,
            untracked_packets: 2,
            classes: 3,
            pending: 1,
        }),
        ..Default::default()
    };
    let samples = parse_exposition(&render(&s));
    for (series, v) in [
        ("warden_shaping_flows_total", 9.0),
        ("warden_shaping_untracked_packets_total", 2.0),
        ("warden_shaping_classes", 3.0),
        ("warden_shaping_pending", 1.0),
    ] {
        assert_eq!(samples.get(series), Some(&v), "{series}");
    }
    let none = render(&Snapshot::default());
    assert!(!none.contains("warden_shaping_"), "{none}");
}
