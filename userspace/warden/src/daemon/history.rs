//! The tenants' traffic history for the console's charts: every
//! [`warden_store::HISTORY_STEP`] seconds the sampler task reads every tenant's
//! counters and drops once more and stores what each tenant sent, received and had
//! dropped since the step before. Only tenants with traffic or drops in the step get a
//! row, the heaviest [`warden_store::HISTORY_TENANTS_PER_STEP`] of them; the rest are
//! counted ([`History::left_out`]) and logged, never silently lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use warden_store::{HistoryPoint, HISTORY_STEP};

use super::Daemon;

/// Cumulative `[out bytes, in bytes, out packets, in packets, dropped packets]` of a
/// tenant, as read.
pub(super) type Totals = [u64; 5];

/// Every tenant's [`Totals`], by tenant id (the policy's shared ids: no string is
/// copied per tenant).
pub(super) type Reading = HashMap<Arc<str>, Totals>;

#[derive(Default)]
struct State {
    /// The step of the last reading, and each tenant's totals then.
    last: Option<(i64, Reading)>,
}

/// The last reading, and the points left out since start.
#[derive(Default)]
pub(super) struct History {
    state: Mutex<State>,
    left_out: AtomicU64,
    /// The step of this process's first reading (0 before it): steps after it
    /// without a point had no traffic.
    recording_since: AtomicI64,
}

impl History {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The step of this process's first reading, if it took one.
    pub(super) fn recording_since(&self) -> Option<i64> {
        Some(self.recording_since.load(Ordering::Relaxed)).filter(|&s| s > 0)
    }

    /// Points left out of full steps since start.
    pub(super) fn left_out(&self) -> u64 {
        self.left_out.load(Ordering::Relaxed)
    }
}

/// The points of one step: each tenant's change since `before`, for tenants with any,
/// heaviest first. A tenant new since, or whose counters went back (a slot reused),
/// starts from this reading.
pub(super) fn points(at: i64, before: &Reading, now: &Reading) -> Vec<HistoryPoint> {
    let mut out: Vec<HistoryPoint> = now
        .iter()
        .filter_map(|(tenant, n)| {
            let b = before.get(tenant)?;
            if n.iter().zip(b).any(|(n, b)| n < b) {
                return None;
            }
            let d: Vec<u64> = n.iter().zip(b).map(|(n, b)| n - b).collect();
            d.iter().any(|&x| x > 0).then(|| HistoryPoint {
                tenant: tenant.to_string(),
                at,
                out_bytes: d[0],
                in_bytes: d[1],
                out_packets: d[2],
                in_packets: d[3],
                dropped_packets: d[4],
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (b.out_bytes + b.in_bytes, b.dropped_packets, &a.tenant).cmp(&(
            a.out_bytes + a.in_bytes,
            a.dropped_packets,
            &b.tenant,
        ))
    });
    out
}

impl Daemon {
    /// Records a history step when a new one began since the last call (the first call
    /// only takes the baseline).
    pub(super) fn record_history(&self) -> Result<()> {
        let now = warden_policy::time::system_clock();
        let step = now - now.rem_euclid(HISTORY_STEP);
        if self
            .history
            .lock()
            .last
            .as_ref()
            .is_some_and(|(s, _)| *s == step)
        {
            return Ok(());
        }
        let reading = self.lock_enforcement().history_reading()?;
        // The step's points from the last reading, then this reading kept in its place:
        // at 100,000 tenants a reading is some 10 MiB, so it is not copied.
        let points = {
            let mut state = self.history.lock();
            let points = state
                .last
                .take()
                .map(|(_, before)| points(step, &before, &reading));
            state.last = Some((step, reading));
            points
        };
        let Some(points) = points else {
            self.history.recording_since.store(step, Ordering::Relaxed);
            return Ok(());
        };
        let left_out = self.db.lock().record_history(step, &points)?;
        if left_out > 0 {
            self.history
                .left_out
                .fetch_add(left_out as u64, Ordering::Relaxed);
            tracing::warn!(
                step,
                tenants = points.len(),
                left_out,
                "history step full: the lightest tenants' traffic is not kept"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Totals)]) -> Reading {
        entries.iter().map(|(t, v)| (Arc::from(*t), *v)).collect()
    }

    #[test]
    fn a_step_holds_each_tenants_change_heaviest_first_and_skips_the_idle_and_the_reset() {
        let before = map(&[
            ("idle", [5, 5, 1, 1, 0]),
            ("light", [0, 0, 0, 0, 0]),
            ("heavy", [100, 0, 1, 0, 0]),
            ("reset", [1000, 1000, 10, 10, 0]),
        ]);
        let now = map(&[
            ("idle", [5, 5, 1, 1, 0]),
            ("light", [10, 0, 1, 0, 2]),
            ("heavy", [1100, 500, 11, 5, 0]),
            ("reset", [10, 10, 1, 1, 0]),
            ("new", [50, 50, 1, 1, 0]),
        ]);
        let got = points(40, &before, &now);
        let tenants: Vec<&str> = got.iter().map(|p| p.tenant.as_str()).collect();
        assert_eq!(tenants, ["heavy", "light"]);
        assert_eq!(
            got[0],
            HistoryPoint {
                tenant: "heavy".into(),
                at: 40,
                out_bytes: 1000,
                in_bytes: 500,
                out_packets: 10,
                in_packets: 5,
                dropped_packets: 0,
            }
        );
        assert_eq!(got[1].dropped_packets, 2);
    }
}
