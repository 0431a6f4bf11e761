//! Flags in the database: creation, evidence, actions, samples and the review moves.

use serde_json::json;

use super::*;

use crate::fixture::{Fixture, T0};

fn new_flag(tenant: &str, kind: Kind, seen: i64) -> NewFlag {
    NewFlag {
        tenant: tenant.into(),
        kind,
        seen,
        policy_generation: 7,
        thresholds: json!({"pps": 20000}),
        figures: json!({"pps": 55000}),
        top_targets: json!(["198.18.0.9"]),
        deadline: Some(seen + 86_400),
    }
}

fn sample(i: usize) -> Sample {
    Sample {
        at_ns: T0 * 1_000_000_000 + i as i64,
        data: vec![i as u8; 60],
        orig_len: 1_514,
    }
}

fn audit_rows(store: &Store) -> Vec<crate::AuditEntry> {
    store.audit(None, usize::MAX).expect("read audit")
}

fn not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::Flag(FlagError::NotFound(_)))
}

#[test]
fn create_then_list_and_filter_flags() {
    let fx = Fixture::new();
    let store = fx.open();
    let a = store
        .create_flag(new_flag("t1", Kind::FloodOut, T0))
        .expect("create");
    assert_eq!(
        (a.state, a.first_seen, a.last_seen),
        (FlagState::Open, T0, T0)
    );
    assert_eq!(a.thresholds, json!({"pps": 20000}));
    let b = store
        .create_flag(new_flag("t1", Kind::Scan, T0 + 10))
        .expect("create");
    let c = store
        .create_flag(new_flag("t2", Kind::Scan, T0 + 20))
        .expect("create");
    store
        .set_flag_state(c.id, FlagState::Acked, None, "alice")
        .expect("ack");

    let ids = |f: FlagFilter| -> Vec<i64> {
        store
            .flags(&f)
            .expect("list")
            .iter()
            .map(|f| f.id)
            .collect()
    };
    assert_eq!(
        ids(FlagFilter::default()),
        [c.id, b.id, a.id],
        "newest first"
    );
    let tenant = |t: &str| Some(t.to_owned());
    assert_eq!(
        ids(FlagFilter {
            tenant: tenant("t1"),
            ..Default::default()
        }),
        [b.id, a.id]
    );
    assert_eq!(
        ids(FlagFilter {
            kind: Some(Kind::Scan),
            ..Default::default()
        }),
        [c.id, b.id]
    );
    assert_eq!(
        ids(FlagFilter {
            since: Some(T0 + 10),
            ..Default::default()
        }),
        [c.id, b.id]
    );
    assert_eq!(
        ids(FlagFilter {
            state: Some(FlagState::Open),
            ..Default::default()
        }),
        [b.id, a.id]
    );
    assert_eq!(
        ids(FlagFilter {
            tenant: tenant("t1"),
            kind: Some(Kind::Scan),
            ..Default::default()
        }),
        [b.id]
    );
    assert_eq!(
        ids(FlagFilter {
            limit: Some(1),
            ..Default::default()
        }),
        [c.id]
    );
    assert!(ids(FlagFilter {
        tenant: tenant("nobody"),
        ..Default::default()
    })
    .is_empty());
}

#[test]
fn update_seen_moves_forward_only_and_replaces_figures() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Spam, T0))
        .expect("create");
    let f2 = store
        .update_flag_seen(f.id, T0 + 60, &json!({"servers": 40}))
        .expect("update");
    assert_eq!((f2.first_seen, f2.last_seen), (T0, T0 + 60));
    assert_eq!(f2.figures, json!({"servers": 40}));
    let f3 = store
        .update_flag_seen(f.id, T0 + 30, &json!({}))
        .expect("update");
    assert_eq!(f3.last_seen, T0 + 60, "not moved back");
    let err = store
        .update_flag_seen(999, T0, &json!({}))
        .expect_err("unknown");
    assert!(not_found(&err), "{err}");
}

#[test]
fn actions_keep_whether_they_applied_extended_or_lifted_in_order() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::FloodIn, T0))
        .expect("create");
    let steps = [
        (ActionDecision::Apply, T0, Some(T0 + 300)),
        (ActionDecision::Extend, T0 + 60, Some(T0 + 360)),
        (ActionDecision::Lift, T0 + 360, None),
    ];
    for (decision, at, until) in steps {
        let a = FlagAction {
            at,
            decision,
            action: Action::Block,
            target: "addr 198.18.1.1".into(),
            until,
            by: "warden".into(),
        };
        store.record_flag_action(f.id, &a).expect("record");
    }
    let detail = store.flag(f.id).expect("read").expect("exists");
    let got: Vec<_> = detail
        .actions
        .iter()
        .map(|a| (a.decision, a.at, a.until))
        .collect();
    assert_eq!(got, steps);
    let json = serde_json::to_value(&detail).expect("serialize");
    assert_eq!(json["actions"][2]["decision"], "lift");
    let old: FlagAction = serde_json::from_value(json!({
        "at": T0, "action": "block", "target": "tenant", "until": null, "by": "warden"
    }))
    .expect("an action without a decision reads as applied");
    assert_eq!(old.decision, ActionDecision::Apply);
}

#[test]
fn evidence_updates_replace_figures_and_targets_and_never_move_back() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    let targets = json!([{"addr": null, "port": 22, "count": 40}]);
    let g = store
        .update_flag_evidence(f.id, T0 + 30, &json!({"llr": 5.0}), &targets)
        .expect("update");
    assert_eq!(
        (g.last_seen, &g.figures, &g.top_targets),
        (T0 + 30, &json!({"llr": 5.0}), &targets)
    );
    let h = store
        .update_flag_evidence(f.id, T0 + 10, &json!({}), &json!([]))
        .expect("update");
    assert_eq!(h.last_seen, T0 + 30, "not moved back");
    assert_eq!(h.top_targets, json!([]));
    let err = store
        .update_flag_evidence(999, T0, &json!({}), &json!([]))
        .expect_err("unknown");
    assert!(not_found(&err), "{err}");
}

#[test]
fn flag_detail_has_actions_and_sample_count() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::FloodOut, T0))
        .expect("create");
    let block = FlagAction {
        at: T0 + 1,
        decision: ActionDecision::Apply,
        action: Action::Block,
        target: "addr 198.18.0.9".into(),
        until: Some(T0 + 601),
        by: "warden".into(),
    };
    store.record_flag_action(f.id, &block).expect("record");
    store
        .add_samples(f.id, &[sample(0), sample(1)])
        .expect("samples");
    let detail = store.flag(f.id).expect("read").expect("exists");
    assert_eq!(detail.flag, f);
    assert_eq!(detail.actions, std::slice::from_ref(&block));
    assert_eq!((detail.samples, detail.samples_refused), (2, 0));
    assert_eq!(
        store.flag_samples(f.id).expect("samples"),
        [sample(0), sample(1)]
    );
    assert!(store.flag(999).expect("read").is_none());
    let err = store
        .record_flag_action(999, &block)
        .expect_err("unknown flag");
    assert!(not_found(&err), "{err}");

    let json = serde_json::to_value(&detail).expect("serialize");
    assert_eq!(json["kind"], "flood_out");
    assert_eq!(json["state"], "open");
    assert_eq!(json["actions"][0]["action"], "block");
    assert_eq!(json["actions"][0]["decision"], "apply");
    assert_eq!(json["actions"][0]["by"], "warden");
    assert_eq!(json["samples"], 2);
}

#[test]
fn samples_keep_the_first_64_and_count_the_refused() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    let first: Vec<Sample> = (0..50).map(sample).collect();
    assert_eq!(store.add_samples(f.id, &first).expect("add"), 50);
    let more: Vec<Sample> = (50..80).map(sample).collect();
    assert_eq!(store.add_samples(f.id, &more).expect("add"), 14);
    assert_eq!(store.add_samples(f.id, &[sample(99)]).expect("add"), 0);
    let detail = store.flag(f.id).expect("read").expect("exists");
    assert_eq!((detail.samples, detail.samples_refused), (64, 17));
    let kept = store.flag_samples(f.id).expect("samples");
    assert_eq!(kept.first(), Some(&sample(0)));
    assert_eq!(kept.last(), Some(&sample(63)), "the first 64 are kept");
}

#[test]
fn sample_bytes_are_cut_to_the_limit_keeping_orig_len() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    let big = Sample {
        at_ns: 1,
        data: vec![7; 1_000],
        orig_len: 10,
    };
    store.add_samples(f.id, &[big]).expect("add");
    let kept = store.flag_samples(f.id).expect("samples");
    assert_eq!(kept[0].data.len(), MAX_SAMPLE_BYTES);
    assert_eq!(kept[0].orig_len, 1_000, "at least what was captured");
}

#[test]
fn schema_refuses_a_65th_sample_whatever_the_code_does() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    store
        .add_samples(f.id, &(0..64).map(sample).collect::<Vec<_>>())
        .expect("add");
    let err = store
        .conn
        .execute(
            "INSERT INTO flag_samples (flag_id, at_us, data, orig_len) VALUES (?1, 0, x'00', 1)",
            [f.id],
        )
        .expect_err("trigger refuses");
    assert!(err.to_string().contains("at most 64 samples"), "{err}");
}

#[test]
fn allowed_transitions_follow_the_table() {
    use FlagState::*;
    let allowed = [
        (Open, Notified),
        (Open, Acked),
        (Open, Dismissed),
        (Open, Escalated),
        (Notified, Acked),
        (Notified, Dismissed),
        (Notified, Escalated),
        (Acked, Dismissed),
        (Acked, Escalated),
    ];
    for from in FlagState::ALL {
        for to in FlagState::ALL {
            assert_eq!(
                from.can_become(to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
    assert!(Dismissed.is_terminal() && Escalated.is_terminal() && !Acked.is_terminal());
}

#[test]
fn review_moves_are_stored_and_audited() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Proxy, T0))
        .expect("create");
    let notified = store
        .set_flag_state(f.id, FlagState::Notified, None, "warden")
        .expect("notify");
    assert_eq!(notified.state, FlagState::Notified);
    let acked = store
        .set_flag_state(f.id, FlagState::Acked, Some("looking"), "alice")
        .expect("ack");
    assert_eq!(acked.state_reason.as_deref(), Some("looking"));
    let dismissed = store
        .set_flag_state(
            f.id,
            FlagState::Dismissed,
            Some("customer's own VPN"),
            "bob",
        )
        .expect("dismiss");
    assert_eq!(
        store.flag(f.id).expect("read").expect("exists").flag,
        dismissed
    );

    let rows = audit_rows(&store);
    let actions: Vec<&str> = rows.iter().rev().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["flag.notify", "flag.ack", "flag.dismiss"]);
    let last = &rows[0];
    assert_eq!((last.actor.as_str(), last.target.as_str()), ("bob", "t1"));
    assert_eq!(last.detail["flag"], f.id);
    assert_eq!(last.detail["from"], "acked");
    assert_eq!(last.detail["to"], "dismissed");
    assert_eq!(last.detail["reason"], "customer's own VPN");
}

#[test]
fn refused_moves_change_nothing_and_write_no_audit_row() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    store
        .set_flag_state(
            f.id,
            FlagState::Escalated,
            Some("deadline passed"),
            "warden",
        )
        .expect("escalate");
    let before = audit_rows(&store).len();
    for to in FlagState::ALL {
        let err = store
            .set_flag_state(f.id, to, Some("why"), "alice")
            .expect_err("escalated is terminal");
        assert!(
            matches!(
                err,
                StoreError::Flag(FlagError::Transition {
                    from: FlagState::Escalated,
                    ..
                })
            ),
            "{err}"
        );
    }
    let err = store
        .set_flag_state(999, FlagState::Acked, None, "alice")
        .expect_err("unknown flag");
    assert!(not_found(&err), "{err}");
    assert_eq!(audit_rows(&store).len(), before);
    let now = store.flag(f.id).expect("read").expect("exists").flag;
    assert_eq!(now.state, FlagState::Escalated);
}

#[test]
fn dismiss_needs_a_reason() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    for reason in [None, Some(""), Some("  ")] {
        let err = store
            .set_flag_state(f.id, FlagState::Dismissed, reason, "alice")
            .expect_err("no reason");
        assert!(matches!(err, StoreError::ReasonRequired), "{err}");
    }
    assert_eq!(
        store.flag(f.id).expect("read").expect("exists").flag.state,
        FlagState::Open
    );
    assert!(audit_rows(&store).is_empty());
}

#[test]
fn failed_audit_insert_rolls_back_the_state_change() {
    let fx = Fixture::new();
    let store = fx.open();
    let f = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    store
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER audit_fails BEFORE INSERT ON audit
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;",
        )
        .expect("install failing trigger");
    store
        .set_flag_state(f.id, FlagState::Acked, None, "alice")
        .expect_err("audit fails");
    let after = store.flag(f.id).expect("read").expect("exists").flag;
    assert_eq!(
        after.state,
        FlagState::Open,
        "state change rolled back with its audit row"
    );
}

#[test]
fn reopen_keeps_flags_actions_samples_and_states() {
    let fx = Fixture::new();
    let id = {
        let store = fx.open();
        let f = store
            .create_flag(new_flag("t1", Kind::FloodIn, T0))
            .expect("create");
        store
            .record_flag_action(
                f.id,
                &FlagAction {
                    at: T0,
                    decision: ActionDecision::Apply,
                    action: Action::Suspend,
                    target: "tenant".into(),
                    until: None,
                    by: "warden".into(),
                },
            )
            .expect("record");
        store.add_samples(f.id, &[sample(1)]).expect("samples");
        store
            .set_flag_state(f.id, FlagState::Notified, None, "warden")
            .expect("notify");
        f.id
    };
    let store = fx.open();
    let detail = store.flag(id).expect("read").expect("exists");
    assert_eq!(detail.flag.state, FlagState::Notified);
    assert_eq!(detail.flag.kind, Kind::FloodIn);
    assert_eq!(detail.actions.len(), 1);
    assert_eq!(detail.actions[0].until, None);
    assert_eq!(detail.samples, 1);
    assert_eq!(store.flag_samples(id).expect("samples"), [sample(1)]);
    let next = store
        .create_flag(new_flag("t1", Kind::Scan, T0))
        .expect("create");
    assert!(next.id > id, "ids are not reused");
}

#[test]
fn flag_filter_deserializes_from_query_fields() {
    let f: FlagFilter =
        serde_json::from_value(json!({"tenant": "t1", "kind": "spoof_arp", "state": "acked"}))
            .expect("deserialize");
    assert_eq!(f.kind, Some(Kind::SpoofArp));
    assert_eq!(f.state, Some(FlagState::Acked));
    assert!(serde_json::from_value::<FlagFilter>(json!({"tenat": "x"})).is_err());
}

#[test]
fn flags_page_by_offset_and_until_and_the_summary_counts_each_state() {
    let fx = Fixture::new();
    let store = fx.open();
    let made: Vec<i64> = (0..5)
        .map(|i| {
            store
                .create_flag(new_flag(
                    if i % 2 == 0 { "t1" } else { "t2" },
                    Kind::Scan,
                    T0 + i,
                ))
                .expect("create")
                .id
        })
        .collect();
    store
        .set_flag_state(made[4], FlagState::Acked, Some("seen"), "alice")
        .expect("ack");
    let ids = |f: FlagFilter| -> Vec<i64> {
        store
            .flags(&f)
            .expect("list")
            .iter()
            .map(|f| f.id)
            .collect()
    };
    let page = |offset| FlagFilter {
        limit: Some(2),
        offset: Some(offset),
        ..Default::default()
    };
    assert_eq!(ids(page(0)), [made[4], made[3]]);
    assert_eq!(ids(page(2)), [made[2], made[1]]);
    assert_eq!(ids(page(4)), [made[0]]);
    assert!(ids(page(5)).is_empty());
    let before = FlagFilter {
        until: Some(T0 + 2),
        ..Default::default()
    };
    assert_eq!(
        ids(before.clone()),
        [made[1], made[0]],
        "until is exclusive"
    );

    let s = store
        .flag_summary(&FlagFilter {
            tenant: Some("t1".into()),
            state: Some(FlagState::Open),
            ..Default::default()
        })
        .expect("summary");
    assert_eq!(s.counts["open"], 2, "{s:?}");
    assert_eq!(s.counts["acked"], 1, "{s:?}");
    assert_eq!(s.counts["dismissed"], 0, "every state is listed: {s:?}");
    assert_eq!(s.total, 2, "the state filters the total only");
    assert_eq!(s.latest_id, Some(made[4]));
    let s = store.flag_summary(&before).expect("summary");
    assert_eq!(
        (s.total, s.latest_id),
        (2, Some(made[4])),
        "latest id ignores the filter"
    );

    // Rows carry no node (the daemon names its own before asking): any node filter
    // matches none, in the list and in the counts, and the newest id is still told.
    let elsewhere = FlagFilter {
        node: Some("node7".into()),
        ..Default::default()
    };
    assert!(ids(elsewhere.clone()).is_empty());
    let s = store.flag_summary(&elsewhere).expect("summary");
    assert_eq!(
        (s.total, s.counts["open"], s.latest_id),
        (0, 0, Some(made[4]))
    );
}
