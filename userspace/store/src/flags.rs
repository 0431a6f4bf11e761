//! Flags: detections held for the security team's review, with the actions taken on them and
//! captured header samples as evidence.
//!
//! Review states and the moves between them (anything else is refused with
//! [`FlagError::Transition`] and changes nothing):
//!
//! | from       | to                                        |
//! |------------|-------------------------------------------|
//! | `open`     | `notified`, `acked`, `dismissed`, `escalated` |
//! | `notified` | `acked`, `dismissed`, `escalated`         |
//! | `acked`    | `dismissed`, `escalated`                  |
//! | `dismissed`, `escalated` | none: the review is over    |
//!
//! `acked` means "seen, being handled", so it can still end either way. Dismissing needs a
//! non-blank reason. Every move writes an audit row (`flag.notify`, `flag.ack`,
//! `flag.dismiss`, `flag.escalate`; target the tenant) in the same transaction.
//!
//! Samples are bounded: a flag keeps its first [`MAX_SAMPLES_PER_FLAG`] samples and refuses
//! later ones, counting them in [`FlagDetail::samples_refused`]. The first samples show the
//! onset of the behaviour, and evidence once written is never rewritten. Each sample keeps
//! at most [`MAX_SAMPLE_BYTES`] captured bytes (more is cut, like a pcap snap length; the
//! original length is kept). Both bounds are also enforced by the schema.

use std::collections::BTreeMap;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row, ToSql, Transaction};
use warden_policy::flag::{
    ActionDecision, Flag, FlagAction, FlagDetail, FlagFilter, FlagState, FlagSummary, NewFlag,
    Sample, MAX_SAMPLES_PER_FLAG, MAX_SAMPLE_BYTES,
};
use warden_policy::{Action, Kind};

use super::{audit, Result, Store, StoreError, TxError};

/// Why a flag operation failed (inside [`StoreError::Flag`]).
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// No flag has this id.
    #[error("flag {0} not found")]
    NotFound(i64),
    /// The review state cannot move this way.
    #[error("flag {id} is {from}; it cannot become {to}")]
    Transition {
        /// The flag.
        id: i64,
        /// Its current state.
        from: FlagState,
        /// The refused state.
        to: FlagState,
    },
}

/// The audit action for moving a flag into `state`.
fn audit_action(state: FlagState) -> &'static str {
    match state {
        FlagState::Open => "flag.open",
        FlagState::Notified => "flag.notify",
        FlagState::Acked => "flag.ack",
        FlagState::Dismissed => "flag.dismiss",
        FlagState::Escalated => "flag.escalate",
    }
}

/// Stores a [`Kind`], [`Action`] or [`FlagState`] as its name.
pub(super) struct Name<T>(pub(super) T);

macro_rules! named_sql {
    ($($ty:ty),*) => {$(
        impl ToSql for Name<$ty> {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0.as_str()))
            }
        }

        impl FromSql for Name<$ty> {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map(Name)
                    .map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    )*};
}

named_sql!(Kind, Action, FlagState, ActionDecision);

/// A JSON column.
fn json(row: &Row<'_>, i: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The conditions of a [`FlagFilter`] but its state, on parameters ?1 to ?4 (tenant,
/// kind, since, until).
const FILTER: &str = "(?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR kind = ?2)
     AND (?3 IS NULL OR last_seen >= ?3) AND (?4 IS NULL OR last_seen < ?4)";

pub(super) const COLUMNS: &str =
    "id, tenant, kind, state, first_seen, last_seen, policy_generation, \
                       thresholds, figures, top_targets, deadline, state_reason";

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Flag> {
    Ok(Flag {
        id: row.get(0)?,
        tenant: row.get(1)?,
        kind: row.get::<_, Name<Kind>>(2)?.0,
        state: row.get::<_, Name<FlagState>>(3)?.0,
        first_seen: row.get(4)?,
        last_seen: row.get(5)?,
        policy_generation: row.get(6)?,
        thresholds: json(row, 7)?,
        figures: json(row, 8)?,
        top_targets: json(row, 9)?,
        deadline: row.get(10)?,
        state_reason: row.get(11)?,
        // A store is one daemon's: the daemon names its node in what it serves.
        node: None,
    })
}

fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Flag>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM flags WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

/// The flag `id`, or [`FlagError::NotFound`].
pub(super) fn existing(tx: &Transaction<'_>, id: i64) -> Result<Flag, TxError> {
    get(tx, id)?.ok_or_else(|| TxError::Store(FlagError::NotFound(id).into()))
}

impl Store {
    /// Creates an `open` flag. Not audited: the daemon raises flags; reviews are audited.
    pub fn create_flag(&self, new: NewFlag) -> Result<Flag> {
        self.write("create flag", |tx| {
            tx.execute(
                "INSERT INTO flags (tenant, kind, state, first_seen, last_seen, policy_generation,
                                    thresholds, figures, top_targets, deadline)
                 VALUES (?1, ?2, 'open', ?3, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.tenant,
                    Name(new.kind),
                    new.seen,
                    new.policy_generation,
                    new.thresholds.to_string(),
                    new.figures.to_string(),
                    new.top_targets.to_string(),
                    new.deadline,
                ],
            )?;
            existing(tx, tx.last_insert_rowid())
        })
    }

    /// The behaviour was seen again: moves `last_seen` forward (never back) and replaces the
    /// figures.
    pub fn update_flag_seen(
        &self,
        id: i64,
        last_seen: i64,
        figures: &serde_json::Value,
    ) -> Result<Flag> {
        self.write("update flag", |tx| {
            tx.execute(
                "UPDATE flags SET last_seen = max(last_seen, ?2), figures = ?3 WHERE id = ?1",
                params![id, last_seen, figures.to_string()],
            )?;
            existing(tx, id)
        })
    }

    /// The episode goes on: moves `last_seen` forward (never back) and replaces the figures
    /// and top targets with the latest evidence.
    pub fn update_flag_evidence(
        &self,
        id: i64,
        last_seen: i64,
        figures: &serde_json::Value,
        top_targets: &serde_json::Value,
    ) -> Result<Flag> {
        self.write("update flag evidence", |tx| {
            tx.execute(
                "UPDATE flags SET last_seen = max(last_seen, ?2), figures = ?3, top_targets = ?4
                 WHERE id = ?1",
                params![id, last_seen, figures.to_string(), top_targets.to_string()],
            )?;
            existing(tx, id)
        })
    }

    /// Records an action taken because of flag `id`.
    pub fn record_flag_action(&self, id: i64, action: &FlagAction) -> Result<()> {
        self.write("record flag action", |tx| {
            existing(tx, id)?;
            tx.execute(
                "INSERT INTO flag_actions (flag_id, at, action, target, until, actor, decision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    action.at,
                    Name(action.action),
                    action.target,
                    action.until,
                    action.by,
                    Name(action.decision),
                ],
            )?;
            Ok(())
        })
    }

    /// Adds evidence to flag `id`, keeping samples while the flag has fewer than
    /// [`MAX_SAMPLES_PER_FLAG`] and counting the rest as refused. Returns how many were kept.
    pub fn add_samples(&self, id: i64, samples: &[Sample]) -> Result<usize> {
        self.write("add flag samples", |tx| {
            existing(tx, id)?;
            let have: usize = tx.query_row(
                "SELECT count(*) FROM flag_samples WHERE flag_id = ?1",
                [id],
                |row| row.get(0),
            )?;
            let kept = samples.len().min(MAX_SAMPLES_PER_FLAG.saturating_sub(have));
            let mut insert = tx.prepare(
                "INSERT INTO flag_samples (flag_id, at_us, at_ns, data, orig_len) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for s in &samples[..kept] {
                let data = &s.data[..s.data.len().min(MAX_SAMPLE_BYTES)];
                // The wire length is at least what was captured.
                let orig_len = s
                    .orig_len
                    .max(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                let at_us = s.at_ns.div_euclid(1_000);
                insert.execute(params![id, at_us, s.at_ns, data, orig_len])?;
            }
            let refused = samples.len() - kept;
            if refused > 0 {
                tx.execute(
                    "UPDATE flags SET samples_refused = samples_refused + ?2 WHERE id = ?1",
                    params![id, refused],
                )?;
            }
            Ok(kept)
        })
    }

    /// The samples kept for flag `id`, oldest first (empty for an unknown flag).
    pub fn flag_samples(&self, id: i64) -> Result<Vec<Sample>> {
        self.read("read flag samples", |conn| {
            conn.prepare(
                // Rows from before migration 6 have microseconds only.
                "SELECT coalesce(at_ns, at_us * 1000), data, orig_len FROM flag_samples \
                 WHERE flag_id = ?1 ORDER BY id",
            )?
            .query_map([id], |row| {
                Ok(Sample {
                    at_ns: row.get(0)?,
                    data: row.get(1)?,
                    orig_len: row.get(2)?,
                })
            })?
            .collect()
        })
    }

    /// Flag `id` with its actions and evidence counts, or `None`.
    pub fn flag(&self, id: i64) -> Result<Option<FlagDetail>> {
        self.read("read flag", |conn| {
            // One read transaction, so the parts agree with each other.
            let tx = conn.unchecked_transaction()?;
            let Some(flag) = get(&tx, id)? else {
                return Ok(None);
            };
            let actions = tx
                .prepare(
                    "SELECT at, action, target, until, actor, decision FROM flag_actions
                     WHERE flag_id = ?1 ORDER BY at, id",
                )?
                .query_map([id], |row| {
                    Ok(FlagAction {
                        at: row.get(0)?,
                        decision: row.get::<_, Name<ActionDecision>>(5)?.0,
                        action: row.get::<_, Name<Action>>(1)?.0,
                        target: row.get(2)?,
                        until: row.get(3)?,
                        by: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let (samples, samples_refused) = tx.query_row(
                "SELECT (SELECT count(*) FROM flag_samples WHERE flag_id = ?1), samples_refused
                 FROM flags WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok(Some(FlagDetail {
                flag,
                actions,
                samples,
                samples_refused,
            }))
        })
    }

    /// The flags `filter` matches, most recently seen first, from `offset` on. Rows carry
    /// no node, so a node filter matches none (see [`FlagFilter::for_store_of`]).
    pub fn flags(&self, filter: &FlagFilter) -> Result<Vec<Flag>> {
        if filter.node.is_some() {
            return Ok(Vec::new());
        }
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = filter
            .offset
            .map_or(0, |o| i64::try_from(o).unwrap_or(i64::MAX));
        self.read("list flags", |conn| {
            conn.prepare(&format!(
                "SELECT {COLUMNS} FROM flags WHERE {FILTER} AND (?5 IS NULL OR state = ?5)
                 ORDER BY last_seen DESC, id DESC LIMIT ?6 OFFSET ?7"
            ))?
            .query_map(
                params![
                    filter.tenant,
                    filter.kind.map(Name),
                    filter.since,
                    filter.until,
                    filter.state.map(Name),
                    limit,
                    offset
                ],
                from_row,
            )?
            .collect()
        })
    }

    /// How many flags `filter` (all but its state) matches in each state, how many the
    /// whole filter matches, and the newest flag id. A node filter matches no row, as in
    /// [`Store::flags`]; the newest id is of all flags all the same.
    pub fn flag_summary(&self, filter: &FlagFilter) -> Result<FlagSummary> {
        self.read("count flags", |conn| {
            let mut counts: BTreeMap<String, u64> = FlagState::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect();
            let latest_id = conn.query_row("SELECT max(id) FROM flags", [], |row| row.get(0))?;
            if filter.node.is_some() {
                return Ok(FlagSummary {
                    counts,
                    total: 0,
                    latest_id,
                });
            }
            let mut stmt = conn.prepare(&format!(
                "SELECT state, count(*) FROM flags WHERE {FILTER} GROUP BY state"
            ))?;
            let rows = stmt.query_map(
                params![
                    filter.tenant,
                    filter.kind.map(Name),
                    filter.since,
                    filter.until
                ],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?)),
            )?;
            for row in rows {
                let (state, n) = row?;
                counts.insert(state, n);
            }
            let total = match filter.state {
                Some(s) => counts.get(s.as_str()).copied().unwrap_or(0),
                None => counts.values().sum(),
            };
            Ok(FlagSummary {
                counts,
                total,
                latest_id,
            })
        })
    }

    /// Moves flag `id` to `state` for `reason`, by `actor`, and audits it in the same
    /// transaction. Fails with [`FlagError::Transition`] for a move the table in the module
    /// documentation does not allow, and with [`StoreError::ReasonRequired`] when dismissing
    /// without a reason; a failure writes nothing.
    pub fn set_flag_state(
        &self,
        id: i64,
        state: FlagState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Flag> {
        let reason = reason.filter(|r| !r.trim().is_empty());
        if state == FlagState::Dismissed && reason.is_none() {
            return Err(StoreError::ReasonRequired);
        }
        let now = self.now();
        self.write("set flag state", |tx| {
            let mut flag = existing(tx, id)?;
            if !flag.state.can_become(state) {
                return Err(TxError::Store(
                    FlagError::Transition {
                        id,
                        from: flag.state,
                        to: state,
                    }
                    .into(),
                ));
            }
            tx.execute(
                "UPDATE flags SET state = ?2, state_reason = ?3 WHERE id = ?1",
                params![id, Name(state), reason],
            )?;
            let detail = serde_json::json!({
                "flag": id,
                "kind": flag.kind,
                "from": flag.state,
                "to": state,
                "reason": reason,
            });
            audit::insert(tx, now, actor, audit_action(state), &flag.tenant, &detail)?;
            flag.state = state;
            flag.state_reason = reason.map(str::to_owned);
            Ok(flag)
        })
    }
}

#[cfg(test)]
mod tests;
