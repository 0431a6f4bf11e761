use rusqlite::Connection;
use serde_json::json;

use super::fixture::Fixture;
use super::*;
use warden_policy::flag::ActionDecision;
use warden_policy::suspension::Suspension;

fn audit_count(store: &Store) -> usize {
    store.audit(None, usize::MAX).expect("read audit").len()
}

#[test]
fn store_is_send() {
    fn send<T: Send>() {}
    send::<Store>();
}

#[test]
fn open_creates_private_state_dir_and_db() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let state_dir = fx.state_dir().join("nested/state");
    let store = Store::open(&state_dir).expect("open");
    let mode = std::fs::metadata(&state_dir)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(store.path(), state_dir.join(DB_FILE));
    assert!(store.path().exists());
}

#[test]
fn open_sets_wal_full_sync_foreign_keys_and_schema_version() {
    let fx = Fixture::new();
    let store = fx.open();
    let pragma = |name: &str| -> String {
        store
            .conn
            .pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .expect("query pragma")
    };
    assert_eq!(pragma("journal_mode"), "wal");
    assert_eq!(pragma("synchronous"), "2", "2 is FULL");
    assert_eq!(pragma("foreign_keys"), "1");
    assert_eq!(pragma("user_version"), schema::VERSION.to_string());
    assert_eq!(pragma("busy_timeout"), "5000");
}

#[test]
fn suspend_then_unsuspend_keeps_history() {
    let fx = Fixture::new();
    let store = fx.open();
    let t0 = fx.advance(0);
    let s = store.suspend("t1", "spam", "alice").expect("suspend");
    assert_eq!(
        (s.tenant.as_str(), s.reason.as_str(), s.actor.as_str()),
        ("t1", "spam", "alice")
    );
    assert_eq!(s.since, t0);
    assert!(s.is_active());
    assert_eq!(store.active_suspensions().expect("active"), vec![s.clone()]);

    let t1 = fx.advance(60);
    let lifted = store
        .unsuspend("t1", "cleaned up", "bob")
        .expect("unsuspend");
    assert_eq!(lifted.id, s.id);
    assert_eq!(lifted.lifted_at, Some(t1));
    assert_eq!(lifted.lifted_by.as_deref(), Some("bob"));
    assert_eq!(lifted.lift_reason.as_deref(), Some("cleaned up"));
    assert!(store.active_suspensions().expect("active").is_empty());

    fx.advance(60);
    let again = store
        .suspend("t1", "spam again", "alice")
        .expect("suspend again");
    let history = store.suspension_history("t1").expect("history");
    assert_eq!(history, vec![again, lifted], "newest first");
    assert!(store.suspension_history("t2").expect("history").is_empty());
}

#[test]
fn suspend_and_unsuspend_write_audit_rows() {
    let fx = Fixture::new();
    let store = fx.open();
    let s = store.suspend("t1", "spam", "alice").expect("suspend");
    fx.advance(5);
    store.unsuspend("t1", "fixed", "bob").expect("unsuspend");
    let log = store.audit(None, 10).expect("audit");
    assert_eq!(log.len(), 2);
    assert_eq!(
        (
            log[0].actor.as_str(),
            log[0].action.as_str(),
            log[0].target.as_str()
        ),
        ("bob", "unsuspend", "t1")
    );
    assert_eq!(log[0].detail["reason"], "fixed");
    assert_eq!(log[0].detail["suspension"], s.id);
    assert_eq!(
        (
            log[1].actor.as_str(),
            log[1].action.as_str(),
            log[1].target.as_str()
        ),
        ("alice", "suspend", "t1")
    );
    assert_eq!(log[1].detail["reason"], "spam");
}

#[test]
fn suspending_a_suspended_tenant_fails_and_writes_no_audit_row() {
    let fx = Fixture::new();
    let store = fx.open();
    let first = store.suspend("t1", "spam", "alice").expect("suspend");
    let err = store
        .suspend("t1", "again", "bob")
        .expect_err("second suspend");
    assert!(
        matches!(&err, StoreError::AlreadySuspended { tenant, since } if tenant == "t1" && *since == first.since),
        "{err:?}"
    );
    assert_eq!(audit_count(&store), 1);
    assert_eq!(store.suspension_history("t1").expect("history").len(), 1);
}

#[test]
fn unsuspending_an_unsuspended_tenant_fails_and_writes_no_audit_row() {
    let fx = Fixture::new();
    let store = fx.open();
    let err = store
        .unsuspend("t1", "why not", "bob")
        .expect_err("unsuspend");
    assert!(
        matches!(&err, StoreError::NotSuspended { tenant } if tenant == "t1"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "tenant `t1` is not suspended");
    assert_eq!(audit_count(&store), 0);
}

#[test]
fn blank_reason_is_refused_for_suspend_and_unsuspend() {
    let fx = Fixture::new();
    let store = fx.open();
    assert!(matches!(
        store.suspend("t1", "  ", "alice"),
        Err(StoreError::ReasonRequired)
    ));
    store.suspend("t1", "spam", "alice").expect("suspend");
    assert!(matches!(
        store.unsuspend("t1", "", "bob"),
        Err(StoreError::ReasonRequired)
    ));
    assert_eq!(store.active_suspensions().expect("active").len(), 1);
    assert_eq!(audit_count(&store), 1);
}

#[test]
fn failed_audit_insert_rolls_back_the_suspension() {
    let fx = Fixture::new();
    let store = fx.open();
    // Make every audit insert fail, as a full disk or a bug would.
    store
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER fail_audit BEFORE INSERT ON audit
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .expect("create trigger");
    let err = store
        .suspend("t1", "spam", "alice")
        .expect_err("suspend must fail");
    let message = err.to_string();
    assert!(message.contains("suspend tenant"), "{message}");
    assert!(message.contains(DB_FILE), "{message}");
    assert!(store.active_suspensions().expect("active").is_empty());
    assert!(store.suspension_history("t1").expect("history").is_empty());
}

#[test]
fn audit_filters_by_since_limits_and_is_newest_first() {
    let fx = Fixture::new();
    let store = fx.open();
    let mut ids = Vec::new();
    let mut times = Vec::new();
    for i in 0..5 {
        times.push(fx.advance(10));
        ids.push(
            store
                .record(
                    "alice",
                    "policy.apply",
                    "policy",
                    &json!({ "generation": i }),
                )
                .expect("record"),
        );
    }
    let all = store.audit(None, 100).expect("audit");
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(all[0].detail, json!({ "generation": 4 }));
    assert_eq!(all[0].at, times[4]);

    let recent = store.audit(Some(times[2]), 100).expect("audit since");
    assert_eq!(recent.len(), 3, "since is inclusive");
    let limited = store.audit(None, 2).expect("audit limited");
    assert_eq!(
        limited.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    assert!(store.audit(None, 0).expect("audit zero").is_empty());
}

#[test]
fn audit_log_is_append_only() {
    let fx = Fixture::new();
    let store = fx.open();
    store
        .record("alice", "x", "y", &json!(null))
        .expect("record");
    assert!(store
        .conn
        .execute("UPDATE audit SET actor = 'mallory'", [])
        .is_err());
    assert!(store.conn.execute("DELETE FROM audit", []).is_err());
    assert_eq!(audit_count(&store), 1);
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let fx = Fixture::new();
    {
        let store = fx.open();
        store.suspend("t1", "spam", "alice").expect("suspend");
        store.suspend("t2", "scan", "alice").expect("suspend");
        store.unsuspend("t2", "ok", "bob").expect("unsuspend");
        store
            .record(
                "carol",
                "policy.apply",
                "policy",
                &json!({ "generation": 7 }),
            )
            .expect("record");
        store
            .save_tenant_index(&[("t1".into(), 0), ("t2".into(), 1)])
            .expect("save index");
    }
    let store = fx.open();
    let active = store.active_suspensions().expect("active");
    assert_eq!(
        active.iter().map(|s| s.tenant.as_str()).collect::<Vec<_>>(),
        vec!["t1"]
    );
    assert_eq!(
        store.suspension_history("t2").expect("history")[0]
            .lift_reason
            .as_deref(),
        Some("ok")
    );
    let log = store.audit(None, 10).expect("audit");
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].detail, json!({ "generation": 7 }));
    assert_eq!(
        store.tenant_index().expect("index"),
        vec![("t1".into(), 0), ("t2".into(), 1)]
    );
    // The restarted store still refuses a second active suspension.
    assert!(matches!(
        store.suspend("t1", "x", "a"),
        Err(StoreError::AlreadySuspended { .. })
    ));
}

#[test]
fn newer_schema_version_is_refused_and_left_untouched() {
    let fx = Fixture::new();
    let path = fx.state_dir().join(DB_FILE);
    {
        let conn = Connection::open(&path).expect("create db");
        conn.pragma_update(None, "user_version", schema::VERSION + 1)
            .expect("set version");
    }
    let err = Store::open(fx.state_dir()).expect_err("must refuse");
    assert!(
        matches!(&err, StoreError::SchemaTooNew { found, supported, .. } if *found == schema::VERSION + 1 && *supported == schema::VERSION),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("newer than this warden supports"),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    let conn = Connection::open(&path).expect("reopen");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal mode");
    assert_eq!(
        mode, "delete",
        "the refused database was not switched to WAL"
    );
}

#[test]
fn reopening_a_current_database_does_not_migrate_again() {
    let fx = Fixture::new();
    drop(fx.open());
    let store = fx.open();
    assert_eq!(
        schema::version(&store.conn).expect("version"),
        schema::VERSION
    );
}

#[test]
fn a_version_2_database_migrates_and_its_flag_actions_read_as_applied() {
    let fx = Fixture::new();
    {
        let conn = Connection::open(fx.state_dir().join(DB_FILE)).expect("create db");
        for sql in &schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 2)
            .expect("set version");
        conn.execute_batch(
            "INSERT INTO flags (tenant, kind, state, first_seen, last_seen, policy_generation,
                                thresholds, figures, top_targets)
             VALUES ('t1', 'flood_out', 'open', 1, 1, 1, '{}', '{}', '[]');
             INSERT INTO flag_actions (flag_id, at, action, target, until, actor)
             VALUES (1, 2, 'block', 'addr 198.18.0.9', 602, 'warden');",
        )
        .expect("old rows");
    }
    let store = fx.open();
    assert_eq!(
        schema::version(&store.conn).expect("version"),
        schema::VERSION
    );
    let detail = store.flag(1).expect("read").expect("the old flag");
    assert_eq!(detail.actions.len(), 1);
    assert_eq!(detail.actions[0].decision, ActionDecision::Apply);
    assert_eq!(detail.actions[0].until, Some(602));
}

#[test]
fn tenant_index_round_trips_and_is_replaced_whole() {
    let fx = Fixture::new();
    let store = fx.open();
    assert!(store.tenant_index().expect("empty index").is_empty());
    let first = vec![
        ("b".to_owned(), 1),
        ("a".to_owned(), 0),
        ("max".to_owned(), u32::MAX),
    ];
    store.save_tenant_index(&first).expect("save");
    assert_eq!(
        store.tenant_index().expect("index"),
        vec![
            ("a".to_owned(), 0),
            ("b".to_owned(), 1),
            ("max".to_owned(), u32::MAX)
        ]
    );
    let second = vec![("c".to_owned(), 0)];
    store.save_tenant_index(&second).expect("replace");
    assert_eq!(store.tenant_index().expect("index"), second);
}

#[test]
fn tenant_index_with_duplicates_is_refused_and_keeps_the_old_one() {
    let fx = Fixture::new();
    let store = fx.open();
    let saved = vec![("a".to_owned(), 0)];
    store.save_tenant_index(&saved).expect("save");
    let dup_tenant = [("x".to_owned(), 1), ("x".to_owned(), 2)];
    let dup_slot = [("x".to_owned(), 1), ("y".to_owned(), 1)];
    assert!(matches!(
        store.save_tenant_index(&dup_tenant),
        Err(StoreError::InvalidTenantIndex(_))
    ));
    assert!(matches!(
        store.save_tenant_index(&dup_slot),
        Err(StoreError::InvalidTenantIndex(_))
    ));
    assert_eq!(store.tenant_index().expect("index"), saved);
}

#[test]
fn suspension_serializes_with_optional_lift_fields() {
    let fx = Fixture::new();
    let store = fx.open();
    let s = store.suspend("t1", "spam", "alice").expect("suspend");
    let value = serde_json::to_value(&s).expect("serialize");
    assert_eq!(value["tenant"], "t1");
    assert_eq!(value["lifted_at"], serde_json::Value::Null);
    let back: Suspension = serde_json::from_value(value).expect("deserialize");
    assert_eq!(back, s);
}

#[test]
fn every_suspend_and_unsuspend_takes_the_next_sequence_number_with_its_addresses() {
    let fx = Fixture::new();
    let store = fx.open();
    assert_eq!(store.suspension_seq().expect("seq"), 0);
    let addresses: Vec<ipnet::IpNet> = vec!["198.18.2.10/32".parse().unwrap()];
    let s = store
        .suspend_with(NewSuspension {
            tenant: "t1",
            reason: "spam",
            actor: "alice",
            addresses: &addresses,
            seq: Some(1),
        })
        .expect("suspend");
    assert_eq!((s.seq, s.addresses.clone()), (Some(1), addresses.clone()));
    // A number that is not the next one writes nothing.
    assert!(matches!(
        store.unsuspend_with("t1", "ok", "bob", Some(5)),
        Err(StoreError::SequenceMoved {
            expected: 5,
            found: 1
        })
    ));
    assert_eq!(store.active_suspensions().expect("active").len(), 1);
    let lifted = store
        .unsuspend_with("t1", "ok", "bob", None)
        .expect("unsuspend");
    assert_eq!(lifted.lifted_seq, Some(2));
    assert_eq!(store.suspension_seq().expect("seq"), 2);
    let st = store.suspension_state().expect("state");
    assert_eq!((st.seq, st.tenants.len()), (2, 0));
    // Reopened: the number and the addresses are still there.
    drop(store);
    let store = fx.open();
    assert_eq!(store.suspension_seq().expect("seq"), 2);
    assert_eq!(
        store.suspension_history("t1").expect("history")[0].addresses,
        addresses
    );
}

#[test]
fn restore_brings_back_lost_suspensions_lifts_stale_ones_and_is_audited_once() {
    use warden_policy::suspension::{Suspended, SuspensionState};
    let fx = Fixture::new();
    let store = fx.open();
    // An old copy: t-old suspended at 1.
    store.suspend("t-old", "old", "alice").expect("suspend");
    let target = SuspensionState::new(
        7,
        [Suspended {
            tenant: "globex".into(),
            addresses: vec!["198.18.2.10/32".parse().unwrap()],
            reason: "abuse 42".into(),
            actor: "ada".into(),
            since: 1_600_000_000,
            seq: 6,
        }],
    );
    let before = audit_count(&store);
    let r = store
        .restore_suspensions(
            &target,
            "root (warden state restore)",
            &json!({"from": "test"}),
        )
        .expect("restore");
    assert_eq!(
        (r.from_seq, r.to_seq, r.suspended.clone(), r.lifted.clone()),
        (1, 7, vec!["globex".to_string()], vec!["t-old".to_string()])
    );
    assert_eq!(store.suspension_state().expect("state"), target);
    let g = &store.active_suspensions().expect("active")[0];
    assert_eq!(
        (g.actor.as_str(), g.since, g.seq),
        ("ada", 1_600_000_000, Some(6))
    );
    let log = store.audit(None, 10).expect("audit");
    assert_eq!(log.len(), before + 1);
    assert_eq!(log[0].action, "suspensions.restore");
    assert_eq!(log[0].detail["suspended"], json!(["globex"]));
    // As new as the target: nothing to do, nothing written.
    assert!(matches!(
        store.restore_suspensions(&target, "x", &json!(null)),
        Err(StoreError::NotOlder {
            store: 7,
            target: 7
        })
    ));
    assert_eq!(audit_count(&store), before + 1);
}

#[test]
fn a_database_from_before_the_sequence_starts_at_its_number_of_changes() {
    let fx = Fixture::new();
    let path = fx.state_dir().join(DB_FILE);
    {
        // Schema 4, as a warden before the sequence left it: one lifted, one active.
        let conn = Connection::open(&path).expect("create db");
        for sql in &schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 4)
            .expect("version");
        conn.execute_batch(
            "INSERT INTO suspensions (tenant, reason, actor, since, lifted_at, lifted_by, lift_reason)
                 VALUES ('a', 'x', 'alice', 1, 2, 'bob', 'ok');
             INSERT INTO suspensions (tenant, reason, actor, since) VALUES ('b', 'y', 'alice', 3);",
        )
        .expect("rows");
    }
    let store = fx.open();
    assert_eq!(store.suspension_seq().expect("seq"), 3);
    let active = store.active_suspensions().expect("active");
    assert_eq!((active[0].tenant.as_str(), active[0].seq), ("b", None));
    assert!(active[0].addresses.is_empty());
    let a: Vec<ipnet::IpNet> = vec!["198.18.9.9/32".parse().unwrap()];
    assert!(store.fill_suspension_addresses("b", &a).expect("fill"));
    assert!(!store
        .fill_suspension_addresses("b", &a)
        .expect("fill again"));
    assert_eq!(store.active_suspensions().expect("active")[0].addresses, a);
}

#[test]
fn a_version_8_fleet_state_migrates_to_one_row_per_tenant() {
    let fx = Fixture::new();
    {
        let conn = Connection::open(fx.state_dir().join(DB_FILE)).expect("create db");
        for sql in &schema::MIGRATIONS[..8] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 8)
            .expect("set version");
        conn.execute_batch(
            r#"INSERT INTO fleet_state (id, revision, generation, defaults, tenants, suspended, saved_at)
               VALUES (1, 5, 2, '{"smtp":"block"}',
                       '{"acme":"{\"id\":\"acme\"}","globex":"{\"id\":\"globex\"}"}',
                       '["acme"]', 0);"#,
        )
        .expect("old rows");
    }
    let store = fx.open();
    let state = store.fleet_state().expect("read").expect("the old state");
    assert_eq!((state.revision, state.generation), (5, 2));
    assert_eq!(state.defaults.as_deref(), Some(r#"{"smtp":"block"}"#));
    assert_eq!(state.suspended, vec!["acme".to_owned()]);
    assert_eq!(
        state.tenants.into_iter().collect::<Vec<_>>(),
        vec![
            ("acme".to_owned(), r#"{"id":"acme"}"#.to_owned()),
            ("globex".to_owned(), r#"{"id":"globex"}"#.to_owned()),
        ]
    );
}
