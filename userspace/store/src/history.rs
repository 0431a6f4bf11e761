//! Each tenant's traffic over time, for the console's charts: one row per tenant and
//! [`HISTORY_STEP`] with what it sent, received and had dropped in that step. Bounded
//! twice: rows older than [`HISTORY_KEEP`] are deleted as new ones come, and a step keeps
//! at most [`HISTORY_TENANTS_PER_STEP`] tenants (the caller passes the heaviest and
//! counts the rest). Tenants without traffic or drops in a step get no row.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Result, Store};

/// The resolution of the history, in seconds.
pub const HISTORY_STEP: i64 = 10;
/// How long history is kept, in seconds (24 h).
pub const HISTORY_KEEP: i64 = 24 * 3600;
/// The most tenants one step keeps: with [`HISTORY_KEEP`] / [`HISTORY_STEP`] steps, at
/// most 8.6 million rows (some 500 MB) when every step is full.
pub const HISTORY_TENANTS_PER_STEP: usize = 1000;

/// One tenant's traffic in one step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The tenant.
    pub tenant: String,
    /// The step's end (unix seconds, a multiple of [`HISTORY_STEP`]).
    pub at: i64,
    /// Bytes sent by the tenant in the step.
    pub out_bytes: u64,
    /// Bytes received by the tenant in the step.
    pub in_bytes: u64,
    /// Packets sent in the step.
    pub out_packets: u64,
    /// Packets received in the step.
    pub in_packets: u64,
    /// Packets dropped in the step, both directions, every reason.
    pub dropped_packets: u64,
}

fn sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Appends one step's points (at most [`HISTORY_TENANTS_PER_STEP`] are kept: the
    /// caller sorts them heaviest first) and deletes what is older than
    /// [`HISTORY_KEEP`] before `at`. The number of points left out.
    pub fn record_history(&self, at: i64, points: &[HistoryPoint]) -> Result<usize> {
        let kept = &points[..points.len().min(HISTORY_TENANTS_PER_STEP)];
        self.write("record history", |tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO tenant_history
                 (tenant, at, out_bytes, in_bytes, out_packets, in_packets, dropped_packets)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for p in kept {
                insert.execute(params![
                    p.tenant,
                    at,
                    sql(p.out_bytes),
                    sql(p.in_bytes),
                    sql(p.out_packets),
                    sql(p.in_packets),
                    sql(p.dropped_packets)
                ])?;
            }
            tx.execute(
                "DELETE FROM tenant_history WHERE at < ?1",
                [at - HISTORY_KEEP],
            )?;
            Ok(())
        })?;
        Ok(points.len() - kept.len())
    }

    /// `tenant`'s points with `since <= at < until`, oldest first.
    pub fn history(&self, tenant: &str, since: i64, until: i64) -> Result<Vec<HistoryPoint>> {
        self.read("read history", |conn| {
            conn.prepare(
                "SELECT tenant, at, out_bytes, in_bytes, out_packets, in_packets, dropped_packets
                 FROM tenant_history WHERE tenant = ?1 AND at >= ?2 AND at < ?3 ORDER BY at",
            )?
            .query_map(params![tenant, since, until], |row| {
                Ok(HistoryPoint {
                    tenant: row.get(0)?,
                    at: row.get(1)?,
                    out_bytes: row.get::<_, i64>(2)?.max(0) as u64,
                    in_bytes: row.get::<_, i64>(3)?.max(0) as u64,
                    out_packets: row.get::<_, i64>(4)?.max(0) as u64,
                    in_packets: row.get::<_, i64>(5)?.max(0) as u64,
                    dropped_packets: row.get::<_, i64>(6)?.max(0) as u64,
                })
            })?
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    fn point(tenant: &str, bytes: u64) -> HistoryPoint {
        HistoryPoint {
            tenant: tenant.into(),
            out_bytes: bytes,
            in_bytes: 2 * bytes,
            out_packets: 1,
            in_packets: 2,
            dropped_packets: 3,
            ..Default::default()
        }
    }

    #[test]
    fn history_is_read_back_in_range_and_pruned_after_a_day() {
        let fx = Fixture::new();
        let store = fx.open();
        store
            .record_history(100, &[point("a", 10), point("b", 5)])
            .expect("write");
        store.record_history(110, &[point("a", 20)]).expect("write");
        let got = store.history("a", 100, 120).expect("read");
        assert_eq!(
            got.iter().map(|p| (p.at, p.out_bytes)).collect::<Vec<_>>(),
            [(100, 10), (110, 20)]
        );
        assert_eq!(got[0].in_bytes, 20);
        assert_eq!(got[0].dropped_packets, 3);
        assert_eq!(
            store.history("a", 101, 120).expect("read").len(),
            1,
            "since is inclusive"
        );
        assert_eq!(
            store.history("a", 100, 110).expect("read").len(),
            1,
            "until is exclusive"
        );
        store
            .record_history(110 + HISTORY_KEEP, &[point("b", 1)])
            .expect("write");
        assert_eq!(
            store.history("a", 0, i64::MAX).expect("read").len(),
            1,
            "a day old: gone"
        );
        assert_eq!(store.history("b", 0, i64::MAX).expect("read").len(), 1);
    }

    #[test]
    fn a_step_keeps_at_most_its_bound_and_counts_the_rest() {
        let fx = Fixture::new();
        let store = fx.open();
        let points: Vec<HistoryPoint> = (0..HISTORY_TENANTS_PER_STEP + 7)
            .map(|i| point(&format!("t{i}"), 1))
            .collect();
        assert_eq!(store.record_history(10, &points).expect("write"), 7);
        assert_eq!(store.history("t0", 0, 20).expect("read").len(), 1);
        let last = format!("t{}", HISTORY_TENANTS_PER_STEP);
        assert!(store.history(&last, 0, 20).expect("read").is_empty());
    }
}
