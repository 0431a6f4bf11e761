//! The review workflow's families: webhook notifications, deadlines, the events log.

use crate::views::ReviewStats;

use super::Family;

/// The review workflow's metric families.
pub(super) fn render(out: &mut String, s: &ReviewStats) {
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
        Family::of_kind(kind, name, help)
            .count(&[], value)
            .write(out);
    }
}
