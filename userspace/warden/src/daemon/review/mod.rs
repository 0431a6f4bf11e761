//! The review owner: the workflow of clause 3.1.3.14 in one place: tenant notifications
//! by webhook (the outbox in the state database), deadlines, and the events log a SIEM
//! tails. Its counters change only here.
//!
//! Notifications. When a flag opens, and when it is acknowledged, dismissed or escalated,
//! a notification is queued in the store's outbox (`warden_store`'s notifications:
//! durable, a restart loses none; delivery is at least once, the body's `notification` id
//! is the receiver's deduplication key) for the tenant's `notify.webhook` (else the
//! default's; with neither nothing is queued and the flag stays `open`, with no deadline:
//! the tenant was never told). The daemon POSTs each as a JSON message with a
//! [`message::SEND_TIMEOUT`]; any 2xx answer is delivery ([`message`] has the bodies and
//! the schedule). A failed attempt (refused, timed out, any other status) is counted
//! (`warden_webhook_failures_total`) and retried after [`message::backoff`]: 1 s, doubling
//! up to [`message::BACKOFF_MAX`] (5 min); a notification still undelivered
//! [`message::GIVE_UP_AFTER`] (24 h) after it was queued is abandoned, counted and logged
//! (its flag then stays `open`). The outbox holds at most [`message::MAX_PENDING`]
//! undelivered notifications; more are refused and counted
//! (`warden_webhook_dropped_total`), never blocking enforcement. Per flag, the oldest
//! undelivered notification goes first, so a receiver sees a flag's story in order. The
//! webhook is looked up at each attempt, so fixing it in the policy delivers the backlog;
//! a tenant whose webhook was removed has its queued notifications fail (counted) until
//! one is configured again or they are abandoned.
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
//! appended to `daemon.events_log` as one JSON line ([`message::event_line`]), written with
//! one `write` per line (no buffering). Suspends and unsuspends go to the same log
//! (`warden_policy::suspension::events`), fsynced, as a place to rebuild a lost database
//! from. A failed write is logged and counted (`warden_events_log_failures_total`) and
//! never blocks enforcement; the file is reopened on the next line, so a rotated (moved)
//! log is followed.

mod events_log;
pub(super) mod message;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use warden_policy::flag::{Flag, FlagState};
use warden_policy::time::{rfc3339, system_clock};
use warden_policy::{Policy, TenantSettings};
use warden_store::Notification;

pub(crate) use events_log::EventsLog;
pub(super) use message::Event;
use message::{BATCH, EVERY, MAX_PENDING, SEND_TIMEOUT};

use super::{Daemon, Database, ACTOR};
use crate::api::Refusal;
use crate::views::ReviewStats;

/// Counters of the review workflow since start.
#[derive(Debug, Default)]
struct Counters {
    /// Notifications delivered.
    delivered: AtomicU64,
    /// Failed delivery attempts.
    failures: AtomicU64,
    /// Notifications refused because the outbox held [`MAX_PENDING`].
    dropped: AtomicU64,
    /// Events-log lines written.
    events_written: AtomicU64,
    /// Events-log lines that could not be written.
    events_failed: AtomicU64,
    /// Tenants suspended because a deadline passed.
    deadline_suspensions: AtomicU64,
    /// Deadlines passed without suspension (policy).
    deadlines_passed: AtomicU64,
    /// Suspensions by deadline that failed (retried at the next sweep).
    deadline_suspend_failures: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The review workflow: its counters and the events log. The outbox and the flags live in
/// the state database, which the owners share.
#[derive(Debug)]
pub(super) struct Review {
    counters: Counters,
    events: EventsLog,
}

/// A notification on its way out.
pub(super) struct Outgoing {
    notification: Notification,
    /// Where to.
    url: Option<String>,
    /// What is sent.
    body: serde_json::Value,
    /// The deadline delivery starts, for a flag's first notice.
    deadline: Option<i64>,
}

/// The settings `tenant` is under (the defaults for a tenant no longer in the policy).
fn settings_of<'a>(policy: &'a Policy, tenant: &str) -> &'a TenantSettings {
    policy
        .tenant(tenant)
        .map_or(&policy.defaults, |t| &t.settings)
}

impl Review {
    /// The workflow writing its events to `events_log`.
    pub(super) fn new(events_log: &Path) -> Self {
        Review {
            counters: Counters::default(),
            events: EventsLog::new(events_log),
        }
    }

    /// Appends a suspension line (`warden_policy::suspension::events`) to the events log
    /// and waits until it is on disk; a failure is logged and counted (the store and the
    /// kernel's record still hold the change).
    pub(super) fn log_suspension(&self, line: &str, what: &str, tenant: &str) {
        match self.events.append_durable(line) {
            Ok(()) => count(&self.counters.events_written),
            Err(e) => {
                count(&self.counters.events_failed);
                tracing::error!(path = %self.events.path().display(), error = %e, %tenant, event = what, "could not write the events log");
            }
        }
    }

    /// Appends an event about `flag` to the events log; a failure is logged and counted.
    fn log_event(&self, flag: &Flag, event: Event, actor: &str, reason: Option<&str>, at: i64) {
        let line = message::event_line(flag, event, actor, reason, at);
        match self.events.append(&line) {
            Ok(()) => count(&self.counters.events_written),
            Err(e) => {
                count(&self.counters.events_failed);
                tracing::error!(path = %self.events.path().display(), error = %e, flag = flag.id, event = event.as_str(), "could not write the events log");
            }
        }
    }

    /// Something happened to `flag`: written to the events log, and for the events the
    /// tenant is told about queued for its webhook under `policy`. Never fails: a
    /// notification that cannot be queued is logged and counted.
    pub(super) fn flag_event(
        &self,
        db: &Database,
        policy: &Policy,
        flag: &Flag,
        event: Event,
        actor: &str,
        reason: Option<&str>,
    ) {
        let now = system_clock();
        self.log_event(flag, event, actor, reason, now);
        if !event.notifies_tenant() {
            return;
        }
        if settings_of(policy, &flag.tenant).notify.webhook.is_none() {
            if event == Event::Opened {
                tracing::info!(flag = flag.id, tenant = %flag.tenant, "no notify.webhook for the tenant: it is not notified and the flag gets no deadline");
            }
            return;
        }
        let body = message::message(flag, event, actor, reason, now);
        let queued = db
            .lock()
            .queue_notification(flag.id, event.as_str(), &body, MAX_PENDING);
        match queued {
            Ok(Some(_)) => {}
            Ok(None) => {
                count(&self.counters.dropped);
                tracing::error!(flag = flag.id, tenant = %flag.tenant, event = event.as_str(), max = MAX_PENDING, "notification outbox full: notification dropped");
            }
            Err(e) => {
                count(&self.counters.dropped);
                tracing::error!(flag = flag.id, tenant = %flag.tenant, event = event.as_str(), error = %e, "could not queue a notification: dropped");
            }
        }
    }

    /// Notifications due now, each with the webhook to send it to (`None`: no longer
    /// configured) and, for a flag's first notice, the deadline its delivery starts.
    pub(super) fn due(&self, db: &Database, policy: &Policy) -> Result<Vec<Outgoing>> {
        let now = system_clock();
        let due = db.lock().due_notifications(now, BATCH)?;
        let mut out = Vec::with_capacity(due.len());
        for n in due {
            let settings = settings_of(policy, &n.tenant);
            let url = settings.notify.webhook.clone();
            let flag = db.lock().flag(n.flag_id)?;
            let deadline = match flag {
                Some(d) if n.event == Event::Opened.as_str() && d.flag.state == FlagState::Open => {
                    let review = settings.detectors.review(d.flag.kind);
                    let secs = i64::try_from(review.deadline.as_secs()).unwrap_or(i64::MAX);
                    Some(now.saturating_add(secs))
                }
                _ => None,
            };
            out.push(Outgoing {
                body: message::outgoing_body(&n, deadline),
                notification: n,
                url,
                deadline,
            });
        }
        Ok(out)
    }

    /// Records how sending `o` went: delivered (a first notice also moves its flag to
    /// `notified` with its deadline), or failed (retried with backoff, or abandoned).
    pub(super) fn sent(
        &self,
        db: &Database,
        policy: &Policy,
        o: &Outgoing,
        result: Result<(), String>,
    ) -> Result<()> {
        let n = &o.notification;
        match result {
            Ok(()) => {
                count(&self.counters.delivered);
                db.lock().notification_delivered(n.id)?;
                tracing::info!(notification = n.id, flag = n.flag_id, tenant = %n.tenant, event = %n.event, "notification delivered");
                if let Some(deadline) = o.deadline {
                    let notified = db.lock().mark_flag_notified(n.flag_id, deadline, ACTOR)?;
                    if let Some(flag) = notified {
                        self.flag_event(db, policy, &flag, Event::Notified, ACTOR, None);
                    }
                }
            }
            Err(error) => {
                count(&self.counters.failures);
                let now = system_clock();
                let next = message::next_attempt(n.queued_at, now, n.attempts + 1);
                db.lock().notification_failed(n.id, &error, next)?;
                match next {
                    Some(at) => {
                        tracing::warn!(notification = n.id, flag = n.flag_id, tenant = %n.tenant, attempts = n.attempts + 1, retry_in_s = at - now, %error, "webhook delivery failed; retrying")
                    }
                    None => {
                        tracing::error!(notification = n.id, flag = n.flag_id, tenant = %n.tenant, attempts = n.attempts + 1, %error, "webhook delivery failed for 24 h; notification abandoned");
                        let flag = db.lock().flag(n.flag_id)?;
                        if let Some(d) = flag {
                            self.flag_event(
                                db,
                                policy,
                                &d.flag,
                                Event::NotificationAbandoned,
                                ACTOR,
                                Some(&error),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Acts on `notified` flags past their deadline: suspends the tenant through `suspend`
    /// (the daemon's audited path) and escalates the flag when the kind's
    /// `suspend_on_deadline` says so, else records once that the deadline passed (the
    /// flag stays `notified` for the security team).
    pub(super) fn sweep_deadlines(
        &self,
        db: &Database,
        policy: &Policy,
        mut suspend: impl FnMut(&str, &str) -> Result<(), Refusal>,
    ) -> Result<()> {
        let now = system_clock();
        let past = db.lock().flags_past_deadline(now)?;
        for flag in past {
            let review = settings_of(policy, &flag.tenant)
                .detectors
                .review(flag.kind);
            let deadline = flag.deadline.map_or_else(String::new, rfc3339);
            if !review.suspend_on_deadline {
                db.lock().mark_deadline_passed(flag.id, ACTOR)?;
                count(&self.counters.deadlines_passed);
                tracing::warn!(flag = flag.id, tenant = %flag.tenant, kind = %flag.kind, %deadline, "flag unanswered at its deadline; the policy does not suspend for this kind");
                self.flag_event(db, policy, &flag, Event::DeadlinePassed, ACTOR, None);
                continue;
            }
            let reason = format!(
                "flag {}: {} notified, no answer by the deadline {deadline}",
                flag.id, flag.kind
            );
            match suspend(&flag.tenant, &reason) {
                Ok(()) => {
                    count(&self.counters.deadline_suspensions);
                    self.flag_event(db, policy, &flag, Event::Suspended, ACTOR, Some(&reason));
                }
                // Already suspended (by a person or the ladder): the escalation stands.
                Err(Refusal::Conflict(_)) => {}
                // The tenant left the policy: nothing to suspend; reported once.
                Err(Refusal::UnknownTenant(_)) => {
                    db.lock().mark_deadline_passed(flag.id, ACTOR)?;
                    tracing::warn!(flag = flag.id, tenant = %flag.tenant, "flag unanswered at its deadline, but the tenant is no longer in the policy: not suspended");
                    self.flag_event(db, policy, &flag, Event::DeadlinePassed, ACTOR, None);
                    continue;
                }
                Err(e) => {
                    count(&self.counters.deadline_suspend_failures);
                    tracing::error!(flag = flag.id, tenant = %flag.tenant, error = %format!("{e:#}"), "could not suspend at the deadline; trying again at the next sweep");
                    continue;
                }
            }
            let escalated =
                db.lock()
                    .set_flag_state(flag.id, FlagState::Escalated, Some(&reason), ACTOR)?;
            tracing::warn!(flag = flag.id, tenant = %flag.tenant, kind = %flag.kind, "flag unanswered at its deadline: tenant suspended, flag escalated");
            self.flag_event(
                db,
                policy,
                &escalated,
                Event::Escalated,
                ACTOR,
                Some(&reason),
            );
        }
        Ok(())
    }

    /// The workflow's figures, with the outbox's counts from the database.
    pub(super) fn stats(&self, db: &Database) -> ReviewStats {
        let counts = db.lock().notification_counts().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "counting notifications failed");
            warden_store::NotificationCounts::default()
        });
        self.figures(counts.pending, counts.abandoned)
    }

    /// The figures, with the outbox's `pending` and `abandoned` counts.
    fn figures(&self, pending: u64, abandoned: u64) -> ReviewStats {
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

/// The notification task: every [`EVERY`], sends the due notifications (up to [`BATCH`]
/// at once, each bounded by [`SEND_TIMEOUT`]).
pub(super) async fn deliveries(daemon: Arc<Daemon>) {
    let client = match reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client: notifications and deadlines are off");
            return;
        }
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = daemon.clone();
        let due = tokio::task::spawn_blocking(move || d.review.due(&d.db, &d.policy()));
        let due = match due.await {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "reading due notifications failed");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "notification task failed");
                Vec::new()
            }
        };
        let mut sends = tokio::task::JoinSet::new();
        for o in due {
            let client = client.clone();
            sends.spawn(async move {
                let r = match &o.url {
                    Some(url) => message::deliver(&client, url, &o.body).await,
                    None => Err("no notify.webhook configured for the tenant any more".into()),
                };
                (o, r)
            });
        }
        while let Some(done) = sends.join_next().await {
            let Ok((o, r)) = done else { continue };
            let d = daemon.clone();
            let recorded =
                tokio::task::spawn_blocking(move || d.review.sent(&d.db, &d.policy(), &o, r)).await;
            if let Ok(Err(e)) = recorded {
                tracing::error!(error = %format!("{e:#}"), "recording a delivery failed; it is retried");
            }
        }
    }
}

/// The deadline task: every [`EVERY`], acts on flags past their deadline (apart from the
/// deliveries, so a slow webhook never delays a suspension).
pub(super) async fn deadlines(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = daemon.clone();
        match tokio::task::spawn_blocking(move || d.sweep_deadlines()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "deadline sweep failed"),
            Err(e) => tracing::error!(error = %e, "deadline sweep task failed"),
        }
    }
}
