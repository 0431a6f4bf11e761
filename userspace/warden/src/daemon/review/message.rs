//! What the review workflow sends and writes: the webhook body of a flag's notification,
//! the events-log line of a flag's change, the retry schedule, and the delivery itself.

use std::fmt::Write as _;
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
