//! The review workflow's messages, schedule and events log.

use serde_json::{json, Value};
use warden_policy::flag::{Flag, FlagState};
use warden_policy::Kind;
use warden_store::Notification;

use super::message::{
    backoff, event_line, message, next_attempt, outgoing_body, BACKOFF_FIRST, BACKOFF_MAX,
    GIVE_UP_AFTER,
};
use super::*;

fn flag() -> Flag {
    Flag {
        id: 7,
        tenant: "acme".into(),
        kind: Kind::Scan,
        state: FlagState::Notified,
        first_seen: 1_700_000_000,
        last_seen: 1_700_000_060,
        policy_generation: 3,
        thresholds: json!({"targets": 100}),
        figures: json!({"targets": 140}),
        top_targets: json!([]),
        deadline: Some(1_700_086_400),
        state_reason: None,
        node: None,
    }
}

#[test]
fn backoff_doubles_from_one_second_to_five_minutes() {
    let secs: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(backoff(0), BACKOFF_FIRST);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}

#[test]
fn retries_stop_after_a_day() {
    let q = 1_000;
    assert_eq!(next_attempt(q, q, 1), Some(q + 1));
    assert_eq!(next_attempt(q, q + 100, 10), Some(q + 400));
    let day = GIVE_UP_AFTER.as_secs() as i64;
    assert_eq!(next_attempt(q, q + day - 300, 20), Some(q + day));
    assert_eq!(next_attempt(q, q + day - 299, 20), None);
}

#[test]
fn message_and_event_line_carry_the_flag() {
    let f = flag();
    let m = message(&f, Event::Opened, "warden", None, 1_700_000_061);
    assert_eq!(m["event"], "opened");
    assert_eq!(
        (m["flag"].clone(), m["tenant"].clone()),
        (json!(7), json!("acme"))
    );
    assert_eq!(m["kind"], "scan");
    assert_eq!(m["figures"]["targets"], 140);
    assert_eq!(m["deadline"], "2023-11-15T22:13:20Z");
    assert_eq!(m["at"], "2023-11-14T22:14:21Z");
    let line = event_line(
        &f,
        Event::Dismissed,
        "alice",
        Some("own VPN"),
        1_700_000_100,
    );
    assert!(!line.contains('\n'));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (
            v["event"].as_str(),
            v["actor"].as_str(),
            v["reason"].as_str(),
            v["state"].as_str()
        ),
        (
            Some("dismissed"),
            Some("alice"),
            Some("own VPN"),
            Some("notified")
        )
    );
    assert_eq!(v["ts"], 1_700_000_100);
}

#[test]
fn outgoing_body_adds_the_id_and_the_deadline_delivery_starts() {
    let n = Notification {
        id: 42,
        flag_id: 7,
        tenant: "acme".into(),
        event: "opened".into(),
        body: json!({"event": "opened", "deadline": null}),
        queued_at: 0,
        attempts: 0,
        next_attempt_at: 0,
        last_error: None,
    };
    let b = outgoing_body(&n, Some(1_700_000_000));
    assert_eq!(b["notification"], 42);
    assert_eq!(b["deadline_ts"], 1_700_000_000);
    assert_eq!(b["deadline"], "2023-11-14T22:13:20Z");
    assert_eq!(outgoing_body(&n, None)["deadline"], Value::Null);
}

#[test]
fn only_tenant_facing_events_go_to_the_webhook() {
    let told: Vec<Event> = [
        Event::Opened,
        Event::Notified,
        Event::Acked,
        Event::Dismissed,
        Event::Escalated,
        Event::DeadlinePassed,
        Event::Suspended,
        Event::NotificationAbandoned,
    ]
    .into_iter()
    .filter(|e| e.notifies_tenant())
    .collect();
    assert_eq!(
        told,
        [
            Event::Opened,
            Event::Acked,
            Event::Dismissed,
            Event::Escalated
        ]
    );
    assert_eq!(Event::of_state(FlagState::Open), Event::Opened);
    for s in &FlagState::ALL[1..] {
        assert_eq!(Event::of_state(*s).as_str(), s.as_str());
    }
}

#[test]
fn events_log_appends_lines_and_counts_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let review = Review::new(&path);
    let f = flag();
    review.log_event(&f, Event::Opened, "warden", None, 1);
    review.log_event(&f, Event::Notified, "warden", None, 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(events, ["opened", "notified"]);
    // Rotated away: the next line goes to a new file at the path.
    std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
    review.log_event(&f, Event::Acked, "alice", None, 3);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    // Unwritable: counted, not fatal.
    let bad = Review::new(&dir.path().join("missing/dir/events.jsonl"));
    bad.log_event(&f, Event::Opened, "warden", None, 1);
    let s = bad.figures(0, 0);
    assert_eq!((s.events_written, s.events_failed), (0, 1));
    assert_eq!(review.figures(5, 1).events_written, 3);
}
