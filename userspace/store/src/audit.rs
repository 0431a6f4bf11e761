//! The audit log: who changed what, when and why. Append-only (enforced by triggers).

use rusqlite::{params, Row, Transaction};
use serde::{Deserialize, Serialize};

use super::{Result, Store};

/// One audited change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Row id; increases with every entry and is never reused.
    pub id: i64,
    /// When (unix seconds).
    pub at: i64,
    /// Who: a token name, or `warden` for the daemon's own actions.
    pub actor: String,
    /// What, e.g. `suspend`, `unsuspend`, `policy.apply`.
    pub action: String,
    /// What it was done to, e.g. a tenant id.
    pub target: String,
    /// Anything else worth keeping (reason, generation, ...).
    pub detail: serde_json::Value,
}

/// Appends an entry inside the caller's transaction, so it commits or rolls back with the
/// change it describes. Returns its id.
pub(super) fn insert(
    tx: &Transaction<'_>,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, actor, action, target, detail.to_string()],
    )?;
    Ok(tx.last_insert_rowid())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let detail: String = row.get(5)?;
    let detail = serde_json::from_str(&detail).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(AuditEntry {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        detail,
    })
}

impl Store {
    /// Audits a change made elsewhere (policy apply, flag review, ...) and returns the
    /// entry's id. Changes the store makes itself (suspensions) are audited by the store.
    pub fn record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<i64> {
        let now = self.now();
        self.write("write audit entry", |tx| {
            Ok(insert(tx, now, actor, action, target, detail)?)
        })
    }

    /// Up to `limit` entries at or after `since` (unix seconds; all when `None`), newest first.
    pub fn audit(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("read audit log", |conn| {
            conn.prepare(
                "SELECT id, at, actor, action, target, detail FROM audit
                 WHERE ?1 IS NULL OR at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
            )?
            .query_map(params![since, limit], from_row)?
            .collect()
        })
    }
}
