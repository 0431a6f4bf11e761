//! Suspensions: imposed and lifted by a person, with a reason, never deleted.
//!
//! Every suspend and unsuspend takes the next number of the *suspension sequence*
//! (`suspension_sequence`), which the kernel's pinned suspension record and the events log
//! keep too: at start the daemon compares them, so a database that was lost, emptied or
//! rolled back is recognised rather than read as "no suspensions" (see
//! `crate::suspension`).

use ipnet::IpNet;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::{audit, Result, Store, StoreError, TxError};
use warden_policy::suspension::{Suspension, SuspensionState};

const COLUMNS: &str =
    "id, tenant, reason, actor, since, lifted_at, lifted_by, lift_reason, addresses, seq, lifted_seq";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Suspension> {
    let addresses: String = row.get(8)?;
    let addresses = serde_json::from_str(&addresses).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let seq = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(Suspension {
        id: row.get(0)?,
        tenant: row.get(1)?,
        reason: row.get(2)?,
        actor: row.get(3)?,
        since: row.get(4)?,
        lifted_at: row.get(5)?,
        lifted_by: row.get(6)?,
        lift_reason: row.get(7)?,
        addresses,
        seq: seq(9)?,
        lifted_seq: seq(10)?,
    })
}

fn active(tx: &Transaction<'_>, tenant: &str) -> rusqlite::Result<Option<Suspension>> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM suspensions WHERE tenant = ?1 AND lifted_at IS NULL"),
        [tenant],
        from_row,
    )
    .optional()
}

fn require_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(StoreError::ReasonRequired);
    }
    Ok(())
}

fn sequence(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let seq: i64 = conn.query_row(
        "SELECT seq FROM suspension_sequence WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    Ok(seq.max(0) as u64)
}

/// Takes the next sequence number inside `tx`: `expected` when given (the caller wrote it
/// to the kernel already), which must be the next one.
fn next_seq(tx: &Transaction<'_>, expected: Option<u64>) -> Result<u64, TxError> {
    let current = sequence(tx)?;
    let next = current + 1;
    if let Some(e) = expected {
        if e != next {
            return Err(TxError::Store(StoreError::SequenceMoved {
                expected: e,
                found: current,
            }));
        }
    }
    set_sequence(tx, next)?;
    Ok(next)
}

fn set_sequence(tx: &Transaction<'_>, seq: u64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE suspension_sequence SET seq = ?1 WHERE id = 1",
        [i64::try_from(seq).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

/// A suspension to record: the tenant, why, by whom, its addresses, and the sequence
/// number it takes (`None`: the next one).
#[derive(Debug, Clone, Copy)]
pub struct NewSuspension<'a> {
    pub tenant: &'a str,
    pub reason: &'a str,
    pub actor: &'a str,
    pub addresses: &'a [IpNet],
    pub seq: Option<u64>,
}

/// What [`Store::restore_suspensions`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// The store's sequence before.
    pub from_seq: u64,
    /// The store's sequence now.
    pub to_seq: u64,
    /// Tenants whose suspension was added back.
    pub suspended: Vec<String>,
    /// Tenants whose suspension was recorded as lifted (the sources have it lifted).
    pub lifted: Vec<String>,
}

impl Store {
    /// Suspends `tenant` for `reason`, by `actor`, at the next sequence number, with no
    /// recorded addresses; see [`Store::suspend_with`].
    pub fn suspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension> {
        self.suspend_with(NewSuspension {
            tenant,
            reason,
            actor,
            addresses: &[],
            seq: None,
        })
    }

    /// Records a suspension and audits it (action `suspend`, target the tenant), taking
    /// the next suspension sequence number (which must be `new.seq` when given).
    ///
    /// Fails with [`StoreError::AlreadySuspended`] while a suspension is active, with
    /// [`StoreError::ReasonRequired`] for a blank reason and with
    /// [`StoreError::SequenceMoved`] when `new.seq` is not the next number; a failure
    /// writes nothing.
    pub fn suspend_with(&self, new: NewSuspension<'_>) -> Result<Suspension> {
        require_reason(new.reason)?;
        let now = self.now();
        let addresses = serde_json::to_string(new.addresses).expect("addresses serialize");
        self.write("suspend tenant", |tx| {
            if let Some(current) = active(tx, new.tenant)? {
                return Err(TxError::Store(StoreError::AlreadySuspended {
                    tenant: new.tenant.to_owned(),
                    since: current.since,
                }));
            }
            let seq = next_seq(tx, new.seq)?;
            tx.execute(
                "INSERT INTO suspensions (tenant, reason, actor, since, addresses, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![new.tenant, new.reason, new.actor, now, addresses, seq as i64],
            )?;
            let suspension = Suspension {
                id: tx.last_insert_rowid(),
                tenant: new.tenant.to_owned(),
                reason: new.reason.to_owned(),
                actor: new.actor.to_owned(),
                since: now,
                lifted_at: None,
                lifted_by: None,
                lift_reason: None,
                addresses: new.addresses.to_vec(),
                seq: Some(seq),
                lifted_seq: None,
            };
            let detail = serde_json::json!({
                "suspension": suspension.id,
                "reason": new.reason,
                "addresses": new.addresses,
                "suspension_seq": seq,
            });
            audit::insert(tx, now, new.actor, "suspend", new.tenant, &detail)?;
            Ok(suspension)
        })
    }

    /// Lifts `tenant`'s suspension at the next sequence number; see
    /// [`Store::unsuspend_with`].
    pub fn unsuspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension> {
        self.unsuspend_with(tenant, reason, actor, None)
    }

    /// Lifts the active suspension of `tenant` for `reason`, by `actor`, keeping the row as
    /// history, and audits it (action `unsuspend`, target the tenant), taking the next
    /// suspension sequence number (which must be `seq` when given).
    ///
    /// Fails with [`StoreError::NotSuspended`] when no suspension is active, with
    /// [`StoreError::ReasonRequired`] for a blank reason and with
    /// [`StoreError::SequenceMoved`]; a failure writes nothing.
    pub fn unsuspend_with(
        &self,
        tenant: &str,
        reason: &str,
        actor: &str,
        seq: Option<u64>,
    ) -> Result<Suspension> {
        require_reason(reason)?;
        let now = self.now();
        self.write("unsuspend tenant", |tx| {
            let Some(mut suspension) = active(tx, tenant)? else {
                return Err(TxError::Store(StoreError::NotSuspended {
                    tenant: tenant.to_owned(),
                }));
            };
            let seq = next_seq(tx, seq)?;
            tx.execute(
                "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3, lift_reason = ?4,
                 lifted_seq = ?5 WHERE id = ?1",
                params![suspension.id, now, actor, reason, seq as i64],
            )?;
            suspension.lifted_at = Some(now);
            suspension.lifted_by = Some(actor.to_owned());
            suspension.lift_reason = Some(reason.to_owned());
            suspension.lifted_seq = Some(seq);
            let detail = serde_json::json!({
                "suspension": suspension.id,
                "reason": reason,
                "suspended_since": suspension.since,
                "suspension_seq": seq,
            });
            audit::insert(tx, now, actor, "unsuspend", tenant, &detail)?;
            Ok(suspension)
        })
    }

    /// The active suspensions, by tenant.
    pub fn active_suspensions(&self) -> Result<Vec<Suspension>> {
        self.read("list active suspensions", |conn| {
            conn.prepare(&format!(
                "SELECT {COLUMNS} FROM suspensions WHERE lifted_at IS NULL ORDER BY tenant"
            ))?
            .query_map([], from_row)?
            .collect()
        })
    }

    /// The suspension sequence: the number of the last suspend or unsuspend.
    pub fn suspension_seq(&self) -> Result<u64> {
        self.read("read suspension sequence", sequence)
    }

    /// The active suspensions at the current sequence number.
    pub fn suspension_state(&self) -> Result<SuspensionState> {
        let seq = self.suspension_seq()?;
        let active = self.active_suspensions()?;
        Ok(SuspensionState::new(
            seq,
            active.iter().map(Suspension::suspended),
        ))
    }

    /// Records `addresses` for `tenant`'s active suspension where none were recorded (one
    /// imposed by a warden before addresses were kept). Not a change of the suspension:
    /// no sequence number, no audit entry (the start that fills them in logs it).
    pub fn fill_suspension_addresses(&self, tenant: &str, addresses: &[IpNet]) -> Result<bool> {
        let text = serde_json::to_string(addresses).expect("addresses serialize");
        self.write("record suspended addresses", |tx| {
            let n = tx.execute(
                "UPDATE suspensions SET addresses = ?2
                 WHERE tenant = ?1 AND lifted_at IS NULL AND addresses = '[]'",
                params![tenant, text],
            )?;
            Ok(n > 0)
        })
    }

    /// Brings the store's suspensions to `target` (rebuilt from the kernel's record and
    /// the events log after the database was lost), in one transaction: suspensions in
    /// `target` but not active here are recorded as they were imposed (same reason, actor,
    /// time, addresses, sequence number); active ones `target` does not have are recorded
    /// as lifted by `actor`; the sequence becomes `target.seq`. One audit entry
    /// (`suspensions.restore`) says what was done, from what (`sources`).
    ///
    /// Refuses ([`StoreError::NotOlder`]) unless the store is at a lower sequence than
    /// `target`: a store as new as its sources holds nothing to restore.
    pub fn restore_suspensions(
        &self,
        target: &SuspensionState,
        actor: &str,
        sources: &serde_json::Value,
    ) -> Result<Restored> {
        let now = self.now();
        self.write("restore suspensions", |tx| {
            let from_seq = sequence(tx)?;
            if from_seq >= target.seq {
                return Err(TxError::Store(StoreError::NotOlder {
                    store: from_seq,
                    target: target.seq,
                }));
            }
            let mut out = Restored {
                from_seq,
                to_seq: target.seq,
                ..Restored::default()
            };
            let current: Vec<Suspension> = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM suspensions WHERE lifted_at IS NULL ORDER BY tenant"
                ))?
                .query_map([], from_row)?
                .collect::<rusqlite::Result<_>>()?;
            for s in &current {
                // Not in force any more, or in force by a later suspension (lifted and
                // imposed again since this copy of the database was made).
                let superseded = target
                    .tenants
                    .get(&s.tenant)
                    .is_some_and(|t| s.seq != Some(t.seq));
                if superseded {
                    tx.execute(
                        "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3, lift_reason = ?4
                         WHERE id = ?1",
                        params![
                            s.id,
                            now,
                            actor,
                            "restore: lifted and imposed again since; superseded by the \
                             restored suspension"
                        ],
                    )?;
                } else if !target.tenants.contains_key(&s.tenant) {
                    tx.execute(
                        "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3, lift_reason = ?4,
                         lifted_seq = ?5 WHERE id = ?1",
                        params![
                            s.id,
                            now,
                            actor,
                            format!(
                                "restore: not suspended at sequence {} in the kernel's record \
                                 and the events log",
                                target.seq
                            ),
                            target.seq as i64
                        ],
                    )?;
                    out.lifted.push(s.tenant.clone());
                }
            }
            for t in target.tenants.values() {
                if current
                    .iter()
                    .any(|s| s.tenant == t.tenant && s.seq == Some(t.seq))
                {
                    continue;
                }
                let addresses = serde_json::to_string(&t.addresses).expect("addresses serialize");
                tx.execute(
                    "INSERT INTO suspensions (tenant, reason, actor, since, addresses, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        t.tenant,
                        t.reason,
                        t.actor,
                        t.since,
                        addresses,
                        t.seq as i64
                    ],
                )?;
                out.suspended.push(t.tenant.clone());
            }
            set_sequence(tx, target.seq)?;
            let detail = serde_json::json!({
                "from_seq": from_seq,
                "to_seq": target.seq,
                "suspended": out.suspended,
                "lifted": out.lifted,
                "in_force": target.tenants.keys().collect::<Vec<_>>(),
                "sources": sources,
            });
            audit::insert(
                tx,
                now,
                actor,
                "suspensions.restore",
                "suspensions",
                &detail,
            )?;
            Ok(out)
        })
    }

    /// Every suspension of `tenant`, active or lifted, newest first.
    pub fn suspension_history(&self, tenant: &str) -> Result<Vec<Suspension>> {
        self.read("list suspension history", |conn| {
            conn.prepare(&format!(
                "SELECT {COLUMNS} FROM suspensions WHERE tenant = ?1 ORDER BY since DESC, id DESC"
            ))?
            .query_map([tenant], from_row)?
            .collect()
        })
    }
}
