//! The webhook outbox and the deadline bookkeeping of clause 3.1.3.14.
//!
//! A notification is queued in the database in the same place the flag lives, so a daemon
//! restart does not lose one that was not yet delivered: delivery is at least once (a
//! notification in flight when the daemon stops is sent again; its `id` lets the receiver
//! drop the duplicate). Per flag, only the oldest undelivered notification is due, so a
//! receiver sees a flag's notifications in order. A notification ends delivered or
//! abandoned (retried too long, see `crate::notify`); both are kept as history.
//!
//! A flag becomes `notified` with its deadline when its first notification is delivered
//! ([`Store::mark_flag_notified`]); a notified flag whose deadline passed is returned by
//! [`Store::flags_past_deadline`] until it is escalated, reviewed, or marked with
//! [`Store::mark_deadline_passed`] (the policy did not ask for a suspension).

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::flags::{existing, from_row as flag_from_row, Name, COLUMNS as FLAG_COLUMNS};
use warden_policy::flag::{Flag, FlagState};

use super::{audit, Result, Store};

/// A queued notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Row id, never reused: the receiver's deduplication key.
    pub id: i64,
    /// The flag it is about.
    pub flag_id: i64,
    /// The flag's tenant.
    pub tenant: String,
    /// What happened: `opened`, `acked`, `dismissed`, `escalated`.
    pub event: String,
    /// The JSON body as queued (the sender adds the attempt's own fields).
    pub body: serde_json::Value,
    /// When it was queued (unix seconds).
    pub queued_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (unix seconds).
    pub next_attempt_at: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// How many notifications are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationCounts {
    /// Waiting for delivery (retrying or not yet tried).
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Given up after retrying too long.
    pub abandoned: u64,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Notification> {
    let body: String = row.get(4)?;
    Ok(Notification {
        id: row.get(0)?,
        flag_id: row.get(1)?,
        tenant: row.get(2)?,
        event: row.get(3)?,
        body: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        queued_at: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        last_error: row.get(8)?,
    })
}

const COLUMNS: &str =
    "id, flag_id, tenant, event, body, queued_at, attempts, next_attempt_at, last_error";

impl Store {
    /// Queues a notification about flag `flag_id`, due at once. Returns its id, or `None`
    /// (nothing written) when `max_pending` notifications already wait: the caller counts
    /// the refusal.
    pub fn queue_notification(
        &self,
        flag_id: i64,
        event: &str,
        body: &serde_json::Value,
        max_pending: u64,
    ) -> Result<Option<i64>> {
        let now = self.now();
        self.write("queue notification", |tx| {
            let flag = existing(tx, flag_id)?;
            let pending: u64 = tx.query_row(
                "SELECT count(*) FROM notifications
                 WHERE delivered_at IS NULL AND abandoned_at IS NULL",
                [],
                |row| row.get(0),
            )?;
            if pending >= max_pending {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO notifications (flag_id, tenant, event, body, queued_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![flag_id, flag.tenant, event, body.to_string(), now],
            )?;
            Ok(Some(tx.last_insert_rowid()))
        })
    }

    /// Up to `limit` notifications due at `now`, oldest first; per flag only the oldest
    /// undelivered one (so a flag's notifications arrive in order).
    pub fn due_notifications(&self, now: i64, limit: usize) -> Result<Vec<Notification>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("list due notifications", |conn| {
            conn.prepare(&format!(
                "SELECT {COLUMNS} FROM notifications n
                 WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= ?1
                   AND id = (SELECT min(id) FROM notifications m
                             WHERE m.flag_id = n.flag_id
                               AND m.delivered_at IS NULL AND m.abandoned_at IS NULL)
                 ORDER BY id LIMIT ?2"
            ))?
            .query_map(params![now, limit], from_row)?
            .collect()
        })
    }

    /// Notification `id` was delivered.
    pub fn notification_delivered(&self, id: i64) -> Result<()> {
        let now = self.now();
        self.write("record notification delivery", |tx| {
            tx.execute(
                "UPDATE notifications SET delivered_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            Ok(())
        })
    }

    /// An attempt at notification `id` failed with `error`: retried at `next_attempt_at`,
    /// or abandoned when that is `None`.
    pub fn notification_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Option<i64>,
    ) -> Result<()> {
        let now = self.now();
        self.write("record notification failure", |tx| {
            tx.execute(
                "UPDATE notifications
                 SET attempts = attempts + 1, last_error = ?2,
                     next_attempt_at = coalesce(?3, next_attempt_at),
                     abandoned_at = CASE WHEN ?3 IS NULL THEN ?4 END
                 WHERE id = ?1",
                params![id, error, next_attempt_at, now],
            )?;
            Ok(())
        })
    }

    /// How many notifications are pending, delivered and abandoned.
    pub fn notification_counts(&self) -> Result<NotificationCounts> {
        self.read("count notifications", |conn| {
            conn.query_row(
                "SELECT
                   coalesce(sum(delivered_at IS NULL AND abandoned_at IS NULL), 0),
                   coalesce(sum(delivered_at IS NOT NULL), 0),
                   coalesce(sum(abandoned_at IS NOT NULL), 0)
                 FROM notifications",
                [],
                |row| {
                    Ok(NotificationCounts {
                        pending: row.get(0)?,
                        delivered: row.get(1)?,
                        abandoned: row.get(2)?,
                    })
                },
            )
        })
    }

    /// Flag `id` was notified: an `open` flag becomes `notified` with `deadline` (unix
    /// seconds), audited (`flag.notify`) under `actor`. A flag no longer `open` (already
    /// reviewed meanwhile) is left as it is: `None`.
    pub fn mark_flag_notified(&self, id: i64, deadline: i64, actor: &str) -> Result<Option<Flag>> {
        let now = self.now();
        self.write("mark flag notified", |tx| {
            let mut flag = existing(tx, id)?;
            if flag.state != FlagState::Open {
                return Ok(None);
            }
            tx.execute(
                "UPDATE flags SET state = ?2, deadline = ?3 WHERE id = ?1",
                params![id, Name(FlagState::Notified), deadline],
            )?;
            let detail = serde_json::json!({
                "flag": id,
                "kind": flag.kind,
                "from": flag.state,
                "to": FlagState::Notified,
                "deadline": deadline,
            });
            audit::insert(tx, now, actor, "flag.notify", &flag.tenant, &detail)?;
            flag.state = FlagState::Notified;
            flag.deadline = Some(deadline);
            Ok(Some(flag))
        })
    }

    /// `notified` flags whose deadline is at or before `now` and that were not yet marked
    /// with [`Store::mark_deadline_passed`], oldest deadline first.
    pub fn flags_past_deadline(&self, now: i64) -> Result<Vec<Flag>> {
        self.read("list flags past their deadline", |conn| {
            conn.prepare(&format!(
                "SELECT {FLAG_COLUMNS} FROM flags
                 WHERE state = 'notified' AND deadline <= ?1 AND deadline_passed_at IS NULL
                 ORDER BY deadline, id"
            ))?
            .query_map([now], flag_from_row)?
            .collect()
        })
    }

    /// Notes that flag `id`'s deadline passed and nothing was done (the policy does not
    /// suspend), so it is reported once. Audited (`flag.deadline_passed`, actor `actor`).
    pub fn mark_deadline_passed(&self, id: i64, actor: &str) -> Result<()> {
        let now = self.now();
        self.write("mark deadline passed", |tx| {
            let flag = existing(tx, id)?;
            tx.execute(
                "UPDATE flags SET deadline_passed_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            let detail = serde_json::json!({
                "flag": id,
                "kind": flag.kind,
                "deadline": flag.deadline,
            });
            audit::insert(
                tx,
                now,
                actor,
                "flag.deadline_passed",
                &flag.tenant,
                &detail,
            )?;
            Ok(())
        })
    }

    /// When flag `id`'s deadline was marked as passed, if it was.
    pub fn deadline_passed_at(&self, id: i64) -> Result<Option<i64>> {
        self.read("read deadline mark", |conn| {
            conn.query_row(
                "SELECT deadline_passed_at FROM flags WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use warden_policy::flag::NewFlag;
    use warden_policy::Kind;

    use crate::fixture::{Fixture, T0};

    fn flag(store: &Store, tenant: &str) -> Flag {
        store
            .create_flag(NewFlag {
                tenant: tenant.into(),
                kind: Kind::Scan,
                seen: T0,
                policy_generation: 1,
                thresholds: json!({}),
                figures: json!({}),
                top_targets: json!([]),
                deadline: None,
            })
            .expect("create flag")
    }

    #[test]
    fn per_flag_only_the_oldest_pending_is_due_and_retries_wait() {
        let fx = Fixture::new();
        let store = fx.open();
        let a = flag(&store, "t1");
        let b = flag(&store, "t2");
        let n1 = store
            .queue_notification(a.id, "opened", &json!({"n": 1}), 10)
            .unwrap()
            .unwrap();
        let n2 = store
            .queue_notification(a.id, "acked", &json!({"n": 2}), 10)
            .unwrap()
            .unwrap();
        let n3 = store
            .queue_notification(b.id, "opened", &json!({"n": 3}), 10)
            .unwrap()
            .unwrap();
        let due: Vec<i64> = store
            .due_notifications(T0, 10)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(due, [n1, n3]);
        store
            .notification_failed(n1, "HTTP 500", Some(T0 + 4))
            .unwrap();
        let due = store.due_notifications(T0, 10).unwrap();
        assert_eq!(
            due.iter().map(|n| n.id).collect::<Vec<_>>(),
            [n3],
            "n2 waits behind n1"
        );
        let later = store.due_notifications(T0 + 4, 10).unwrap();
        assert_eq!(later[0].id, n1);
        assert_eq!(
            (later[0].attempts, later[0].last_error.as_deref()),
            (1, Some("HTTP 500"))
        );
        store.notification_delivered(n1).unwrap();
        let due: Vec<i64> = store
            .due_notifications(T0 + 4, 10)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(due, [n2, n3]);
        store.notification_failed(n3, "refused", None).unwrap();
        assert_eq!(
            store.notification_counts().unwrap(),
            NotificationCounts {
                pending: 1,
                delivered: 1,
                abandoned: 1
            }
        );
    }

    #[test]
    fn the_outbox_is_bounded_and_survives_a_reopen() {
        let fx = Fixture::new();
        let id = {
            let store = fx.open();
            let a = flag(&store, "t1");
            store
                .queue_notification(a.id, "opened", &json!({}), 2)
                .unwrap()
                .unwrap();
            store
                .queue_notification(a.id, "acked", &json!({}), 2)
                .unwrap()
                .unwrap();
            assert_eq!(
                store.queue_notification(a.id, "x", &json!({}), 2).unwrap(),
                None
            );
            a.id
        };
        let store = fx.open();
        let due = store.due_notifications(T0, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].flag_id, due[0].event.as_str()), (id, "opened"));
        assert_eq!(store.notification_counts().unwrap().pending, 2);
    }

    #[test]
    fn notified_flags_past_their_deadline_are_listed_until_marked_or_reviewed() {
        let fx = Fixture::new();
        let store = fx.open();
        let a = flag(&store, "t1");
        let b = flag(&store, "t2");
        let c = flag(&store, "t3");
        let n = store
            .mark_flag_notified(a.id, T0 + 10, "warden")
            .unwrap()
            .unwrap();
        assert_eq!((n.state, n.deadline), (FlagState::Notified, Some(T0 + 10)));
        store
            .mark_flag_notified(b.id, T0 + 10, "warden")
            .unwrap()
            .unwrap();
        store
            .set_flag_state(c.id, FlagState::Acked, None, "alice")
            .unwrap();
        assert_eq!(
            store.mark_flag_notified(c.id, T0 + 10, "warden").unwrap(),
            None,
            "acked stays"
        );
        assert!(store.flags_past_deadline(T0 + 9).unwrap().is_empty());
        let ids = |t| {
            store
                .flags_past_deadline(t)
                .unwrap()
                .iter()
                .map(|f| f.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(T0 + 10), [a.id, b.id]);
        store
            .set_flag_state(b.id, FlagState::Acked, None, "alice")
            .unwrap();
        fx.set(T0 + 11);
        store.mark_deadline_passed(a.id, "warden").unwrap();
        assert!(ids(T0 + 100).is_empty());
        assert_eq!(store.deadline_passed_at(a.id).unwrap(), Some(T0 + 11));
        let actions: Vec<String> = store
            .audit(None, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(
            actions.contains(&"flag.deadline_passed".to_string()),
            "{actions:?}"
        );
        assert_eq!(actions.iter().filter(|a| *a == "flag.notify").count(), 2);
    }
}
