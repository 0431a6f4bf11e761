//! The review workflow of clause 3.1.3.14: tenant notifications by webhook, deadlines, and
//! the events log a SIEM tails.
//!
//! Notifications. When a flag opens, and when it is acknowledged, dismissed or escalated,
//! a notification is queued in the store's outbox (see `store::notifications`: durable, a
//! restart loses none; delivery is at least once, the body's `notification` id is the
//! receiver's deduplication key) for the tenant's `notify.webhook` (else the default's; with
//! neither nothing is queued and the flag stays `open`, with no deadline: the tenant was
//! never told). The daemon POSTs each as a JSON [`message`] with a [`SEND_TIMEOUT`]; any
//! 2xx answer is delivery. A failed attempt (refused, timed out, any other status) is
//! counted (`warden_webhook_failures_total`) and retried after [`backoff`]: 1 s, doubling
//! up to [`BACKOFF_MAX`] (5 min); a notification still undelivered [`GIVE_UP_AFTER`] (24 h)
//! after it was queued is abandoned, counted and logged (its flag then stays `open`). The
//! outbox holds at most [`MAX_PENDING`] undelivered notifications; more are refused and
//! counted (`warden_webhook_dropped_total`), never blocking enforcement. Per flag, the
//! oldest undelivered notification goes first, so a receiver sees a flag's story in order.
//! The webhook is looked up at each attempt, so fixing it in the policy delivers the
//! backlog; a tenant whose webhook was removed has its queued notifications fail (counted)
//! until one is configured again or they are abandoned.
//!
//! Deadlines. The first delivery about a flag moves it from `open` to `notified` with its
//! deadline: delivery time plus the kind's `deadline` (the message carries that deadline).
//! Acknowledging or dismissing it stops the clock. A sweep every second finds `notified`
//! flags past their deadline: if the kind's `suspend_on_deadline` is true, the tenant is
//! suspended through the audited suspension path (actor `warden`, the reason names the
//! flag) and the flag becomes `escalated`; otherwise the flag stays `notified` (the security
//! team still has to review it: `escalated` means escalated to a suspension), and the
//! passed deadline is audited, logged and written to the events log once.
//!
//! Events log. Every flag state change (`opened`, `notified`, `acked`, `dismissed`,
//! `escalated`), a deadline passing without suspension (`deadline_passed`), a suspension by
//! deadline (`suspended`) and an abandoned notification (`notification_abandoned`) is
//! appended to `daemon.events_log` as one JSON line ([`event_line`]), written with one
//! `write` per line (no buffering). Suspends and unsuspends go to the same log
//! (`warden_policy::suspension::events`), fsynced, as a place to rebuild a lost database from. A
//! failed write is logged and counted
//! (`warden_events_log_failures_total`) and never blocks enforcement; the file is reopened
//! on the next line, so a rotated (moved) log is followed.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use warden_policy::flag::{Flag, FlagState};
use warden_policy::time::rfc3339;

use warden_store::Notification;

/// Delay after the first failed attempt; each further failure doubles it.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest delay between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A notification undelivered this long after it was queued is abandoned.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(86_400);
/// Undelivered notifications the outbox holds; more are refused and counted.
pub const MAX_PENDING: u64 = 10_000;
/// How long one delivery attempt may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Notifications attempted at once.
pub const BATCH: usize = 32;
/// How often due notifications are sent and deadlines checked.
pub const EVERY: Duration = Duration::from_secs(1);

/// What happened to a flag, as the events log and the webhook name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The flag was raised.
    Opened,
    /// The tenant was told; the deadline runs.
    Notified,
    /// The security team acknowledged it.
    Acked,
    /// Dismissed, with a reason.
    Dismissed,
    /// Escalated to a suspension.
    Escalated,
    /// The deadline passed unanswered; the policy does not suspend.
    DeadlinePassed,
    /// The tenant was suspended because the deadline passed.
    Suspended,
    /// A notification about the flag was given up.
    NotificationAbandoned,
}

impl Event {
    /// The name in the events log and the webhook body.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Notified => "notified",
            Event::Acked => "acked",
            Event::Dismissed => "dismissed",
            Event::Escalated => "escalated",
            Event::DeadlinePassed => "deadline_passed",
            Event::Suspended => "suspended",
            Event::NotificationAbandoned => "notification_abandoned",
        }
    }

    /// The event of a review move into `state`.
    pub fn of_state(state: FlagState) -> Event {
        match state {
            FlagState::Open => Event::Opened,
            FlagState::Notified => Event::Notified,
            FlagState::Acked => Event::Acked,
            FlagState::Dismissed => Event::Dismissed,
            FlagState::Escalated => Event::Escalated,
        }
    }

    /// Whether the tenant's webhook is told (the other events are for the SIEM only;
    /// `notified` is the delivery itself).
    pub fn notifies_tenant(self) -> bool {
        matches!(
            self,
            Event::Opened | Event::Acked | Event::Dismissed | Event::Escalated
        )
    }
}

/// The delay after the `failures`-th failed attempt (1-based): [`BACKOFF_FIRST`] doubling,
/// at most [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// When to try again after the `failures`-th failed attempt at `now` of a notification
/// queued at `queued_at` (unix seconds), or `None` to give up: the next attempt would come
/// after [`GIVE_UP_AFTER`].
pub fn next_attempt(queued_at: i64, now: i64, failures: u32) -> Option<i64> {
    let next = now.saturating_add(backoff(failures).as_secs() as i64);
    (next <= queued_at.saturating_add(GIVE_UP_AFTER.as_secs() as i64)).then_some(next)
}

/// The body of a flag's notification (and the core of its events-log line): what happened,
/// by whom, and the flag as it stands.
pub fn message(flag: &Flag, event: Event, actor: &str, reason: Option<&str>, at: i64) -> Value {
    json!({
        "event": event.as_str(),
        "at": rfc3339(at),
        "ts": at,
        "actor": actor,
        "reason": reason,
        "flag": flag.id,
        "tenant": flag.tenant,
        "kind": flag.kind,
        "state": flag.state,
        "first_seen": rfc3339(flag.first_seen),
        "last_seen": rfc3339(flag.last_seen),
        "figures": flag.figures,
        "thresholds": flag.thresholds,
        "top_targets": flag.top_targets,
        "policy_generation": flag.policy_generation,
        "deadline": flag.deadline.map(rfc3339),
        "deadline_ts": flag.deadline,
    })
}

/// The body actually sent for `n`: the queued body with the notification's id, and for an
/// `opened` notice the deadline that delivery now starts (`None` when it has none).
pub fn outgoing_body(n: &Notification, deadline: Option<i64>) -> Value {
    let mut body = n.body.clone();
    if let Some(map) = body.as_object_mut() {
        map.insert("notification".into(), json!(n.id));
        if let Some(d) = deadline {
            map.insert("deadline".into(), json!(rfc3339(d)));
            map.insert("deadline_ts".into(), json!(d));
        }
    }
    body
}

/// One events-log line (without the newline): a timestamp, the actor, the flag id, tenant,
/// kind and state, and the event.
pub fn event_line(flag: &Flag, event: Event, actor: &str, reason: Option<&str>, at: i64) -> String {
    json!({
        "at": rfc3339(at),
        "ts": at,
        "event": event.as_str(),
        "actor": actor,
        "flag": flag.id,
        "tenant": flag.tenant,
        "kind": flag.kind,
        "state": flag.state,
        "reason": reason,
        "deadline": flag.deadline.map(rfc3339),
    })
    .to_string()
}

/// POSTs `body` to `url`; `Err` says why it was not delivered.
pub async fn deliver(client: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let response = client
        .post(url)
        .timeout(SEND_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let _ = write!(text, ": {s}");
                source = s.source();
            }
            text
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered HTTP {status}"))
    }
}

/// The JSON-lines events log.
#[derive(Debug)]
pub struct EventsLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl EventsLog {
    /// A log appending to `path` (opened on the first line).
    pub fn new(path: &Path) -> Self {
        EventsLog {
            path: path.to_owned(),
            file: Mutex::new(None),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and a newline in one write, then waits until it is on disk
    /// (`fdatasync`): for lines the state is rebuilt from (suspensions).
    pub fn append_durable(&self, line: &str) -> std::io::Result<()> {
        self.write_line(line, true)
    }

    /// Appends `line` and a newline in one write. On failure the file is closed, so the
    /// next line reopens it.
    pub fn append(&self, line: &str) -> std::io::Result<()> {
        self.write_line(line, false)
    }

    fn write_line(&self, line: &str, sync: bool) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Follow a rotation: a file moved away is reopened at the configured path.
        let moved = file.as_ref().is_some_and(|_| !self.path.exists());
        if file.is_none() || moved {
            *file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(&self.path)?,
            );
        }
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        let r = file.as_mut().map_or(Ok(()), |f| {
            f.write_all(text.as_bytes())?;
            if sync {
                f.sync_data()?;
            }
            Ok(())
        });
        if r.is_err() {
            *file = None;
        }
        r
    }
}

/// Counters of the review workflow since start.
#[derive(Debug, Default)]
pub struct Counters {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Failed delivery attempts.
    pub failures: AtomicU64,
    /// Notifications refused because the outbox held [`MAX_PENDING`].
    pub dropped: AtomicU64,
    /// Events-log lines written.
    pub events_written: AtomicU64,
    /// Events-log lines that could not be written.
    pub events_failed: AtomicU64,
    /// Tenants suspended because a deadline passed.
    pub deadline_suspensions: AtomicU64,
    /// Deadlines passed without suspension (policy).
    pub deadlines_passed: AtomicU64,
    /// Suspensions by deadline that failed (retried at the next sweep).
    pub deadline_suspend_failures: AtomicU64,
}

/// The review workflow's figures, as `warden status` and `/metrics` show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewStats {
    /// Notifications waiting for delivery (in the outbox).
    pub pending: u64,
    /// Notifications delivered since start.
    pub delivered: u64,
    /// Failed delivery attempts since start.
    pub failures: u64,
    /// Notifications abandoned (in the outbox, all time).
    pub abandoned: u64,
    /// Notifications refused with the outbox full, since start.
    pub dropped: u64,
    /// Events-log lines written since start.
    pub events_written: u64,
    /// Events-log lines lost since start.
    pub events_failed: u64,
    /// Tenants suspended because a flag's deadline passed, since start.
    pub deadline_suspensions: u64,
    /// Deadlines passed without suspension, since start.
    pub deadlines_passed: u64,
    /// Suspensions at a deadline that failed (retried every sweep), since start.
    #[serde(default)]
    pub deadline_suspend_failures: u64,
}

/// The review workflow's state in the daemon: its counters and the events log.
#[derive(Debug)]
pub struct Review {
    /// Counters since start.
    pub counters: Counters,
    /// The events log.
    pub events: EventsLog,
}

impl Review {
    /// The workflow writing its events to `events_log`.
    pub fn new(events_log: &Path) -> Self {
        Review {
            counters: Counters::default(),
            events: EventsLog::new(events_log),
        }
    }

    /// Appends a suspension line (`warden_policy::suspension::events`) to the events log and waits
    /// until it is on disk; a failure is logged and counted (the store and the kernel's
    /// record still hold the change).
    pub fn log_durable(&self, line: &str, what: &str, tenant: &str) {
        match self.events.append_durable(line) {
            Ok(()) => {
                self.counters.events_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.events_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = %self.events.path().display(), error = %e, %tenant, event = what, "could not write the events log");
            }
        }
    }

    /// Appends an event about `flag` to the events log; a failure is logged and counted.
    pub fn log_event(&self, flag: &Flag, event: Event, actor: &str, reason: Option<&str>, at: i64) {
        let line = event_line(flag, event, actor, reason, at);
        match self.events.append(&line) {
            Ok(()) => {
                self.counters.events_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.events_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = %self.events.path().display(), error = %e, flag = flag.id, event = event.as_str(), "could not write the events log");
            }
        }
    }

    /// The figures, with the outbox's `pending` and `abandoned` counts.
    pub fn stats(&self, pending: u64, abandoned: u64) -> ReviewStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReviewStats {
            pending,
            delivered: get(&c.delivered),
            failures: get(&c.failures),
            abandoned,
            dropped: get(&c.dropped),
            events_written: get(&c.events_written),
            events_failed: get(&c.events_failed),
            deadline_suspensions: get(&c.deadline_suspensions),
            deadlines_passed: get(&c.deadlines_passed),
            deadline_suspend_failures: get(&c.deadline_suspend_failures),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The review workflow's metric families.
pub fn render_metrics(out: &mut String, s: &ReviewStats) {
    for (name, kind, help, value) in [
        (
            "warden_webhook_notifications_total",
            "counter",
            "Flag notifications delivered to a tenant webhook (2xx answer).",
            s.delivered,
        ),
        (
            "warden_webhook_failures_total",
            "counter",
            "Failed webhook delivery attempts (refused, timed out, non-2xx); each is retried with backoff.",
            s.failures,
        ),
        (
            "warden_webhook_pending",
            "gauge",
            "Notifications waiting in the outbox for delivery.",
            s.pending,
        ),
        (
            "warden_webhook_abandoned",
            "gauge",
            "Notifications given up after 24 h of failed attempts (kept in the database).",
            s.abandoned,
        ),
        (
            "warden_webhook_dropped_total",
            "counter",
            "Notifications refused because the outbox held 10000 undelivered ones.",
            s.dropped,
        ),
        (
            "warden_events_log_failures_total",
            "counter",
            "Events-log lines that could not be written.",
            s.events_failed,
        ),
        (
            "warden_deadline_suspensions_total",
            "counter",
            "Tenants suspended because a notified flag was unanswered at its deadline.",
            s.deadline_suspensions,
        ),
        (
            "warden_deadlines_passed_total",
            "counter",
            "Notified flags unanswered at their deadline whose kind does not suspend.",
            s.deadlines_passed,
        ),
        (
            "warden_deadline_suspend_failures_total",
            "counter",
            "Suspensions at a flag's deadline that failed; each sweep (every second) tries again.",
            s.deadline_suspend_failures,
        ),
    ] {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_policy::Kind;

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
        let s = bad.stats(0, 0);
        assert_eq!((s.events_written, s.events_failed), (0, 1));
        assert_eq!(review.stats(5, 1).events_written, 3);
    }

    #[test]
    fn metrics_name_every_family_once() {
        let mut out = String::new();
        render_metrics(
            &mut out,
            &ReviewStats {
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
}
