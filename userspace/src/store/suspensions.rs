//! Suspensions: imposed and lifted by a person, with a reason, never deleted.

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

use super::{audit, Result, Store, StoreError, TxError};

/// One suspension of a tenant, active while `lifted_at` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Row id, unique for the life of the database.
    pub id: i64,
    /// The suspended tenant.
    pub tenant: String,
    /// Why it was suspended.
    pub reason: String,
    /// Who suspended it (token name, or `warden` for the enforcement ladder).
    pub actor: String,
    /// When it was suspended (unix seconds).
    pub since: i64,
    /// When the suspension was lifted (unix seconds), if it was.
    pub lifted_at: Option<i64>,
    /// Who lifted it.
    pub lifted_by: Option<String>,
    /// Why it was lifted.
    pub lift_reason: Option<String>,
}

impl Suspension {
    /// True while the suspension has not been lifted.
    pub fn is_active(&self) -> bool {
        self.lifted_at.is_none()
    }
}

const COLUMNS: &str = "id, tenant, reason, actor, since, lifted_at, lifted_by, lift_reason";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Suspension> {
    Ok(Suspension {
        id: row.get(0)?,
        tenant: row.get(1)?,
        reason: row.get(2)?,
        actor: row.get(3)?,
        since: row.get(4)?,
        lifted_at: row.get(5)?,
        lifted_by: row.get(6)?,
        lift_reason: row.get(7)?,
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

impl Store {
    /// Suspends `tenant` for `reason`, by `actor`, and audits it (action `suspend`, target
    /// the tenant).
    ///
    /// Fails with [`StoreError::AlreadySuspended`] while a suspension is active and with
    /// [`StoreError::ReasonRequired`] for a blank reason; a failure writes nothing.
    pub fn suspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension> {
        require_reason(reason)?;
        let now = self.now();
        self.write("suspend tenant", |tx| {
            if let Some(current) = active(tx, tenant)? {
                return Err(TxError::Store(StoreError::AlreadySuspended {
                    tenant: tenant.to_owned(),
                    since: current.since,
                }));
            }
            tx.execute(
                "INSERT INTO suspensions (tenant, reason, actor, since) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, reason, actor, now],
            )?;
            let suspension = Suspension {
                id: tx.last_insert_rowid(),
                tenant: tenant.to_owned(),
                reason: reason.to_owned(),
                actor: actor.to_owned(),
                since: now,
                lifted_at: None,
                lifted_by: None,
                lift_reason: None,
            };
            let detail = serde_json::json!({ "suspension": suspension.id, "reason": reason });
            audit::insert(tx, now, actor, "suspend", tenant, &detail)?;
            Ok(suspension)
        })
    }

    /// Lifts the active suspension of `tenant` for `reason`, by `actor`, keeping the row as
    /// history, and audits it (action `unsuspend`, target the tenant).
    ///
    /// Fails with [`StoreError::NotSuspended`] when no suspension is active and with
    /// [`StoreError::ReasonRequired`] for a blank reason; a failure writes nothing.
    pub fn unsuspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension> {
        require_reason(reason)?;
        let now = self.now();
        self.write("unsuspend tenant", |tx| {
            let Some(mut suspension) = active(tx, tenant)? else {
                return Err(TxError::Store(StoreError::NotSuspended {
                    tenant: tenant.to_owned(),
                }));
            };
            tx.execute(
                "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3, lift_reason = ?4
                 WHERE id = ?1",
                params![suspension.id, now, actor, reason],
            )?;
            suspension.lifted_at = Some(now);
            suspension.lifted_by = Some(actor.to_owned());
            suspension.lift_reason = Some(reason.to_owned());
            let detail = serde_json::json!({
                "suspension": suspension.id,
                "reason": reason,
                "suspended_since": suspension.since,
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
