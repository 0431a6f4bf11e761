//! A fleet node's flags: each new flag and each change of one (state, last seen, a new
//! action) is published at `flags/<node>/<id>`, and review decisions taken through the
//! controller (`flagstates/<node>/<id>`) are applied to the node's own store. Publishing
//! compares the store with what was last published, so a flag raised while etcd was
//! unreachable is published when it returns; the key is the flag's id, so it is one flag
//! however often it is sent.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use warden_fleet::records::{DecisionRecord, FlagRecord};
use warden_fleet::Fleet;
use warden_policy::flag::{FlagFilter, FlagState};

use super::FleetNode;
use crate::api::Backend as _;
use crate::daemon::Daemon;

/// What identifies a published version of a flag: its state, last seen and actions.
pub(super) type Version = (FlagState, i64, usize);

/// What was last published, by the node's flag id.
#[derive(Default)]
pub(super) struct Published(std::sync::Mutex<HashMap<i64, Version>>);

impl Published {
    fn get(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Version>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Daemon {
    /// The flags whose current version was not published yet, as records.
    fn flags_to_publish(&self, node: &FleetNode) -> Result<Vec<(FlagRecord, Version)>> {
        let db = self.db.lock();
        let flags = db.flags(&FlagFilter::default())?;
        let published = node.published.get();
        let mut out = Vec::new();
        for flag in flags {
            let Some(detail) = db.flag(flag.id)? else {
                continue;
            };
            let version = (flag.state, flag.last_seen, detail.actions.len());
            if published.get(&flag.id) == Some(&version) {
                continue;
            }
            out.push((
                FlagRecord {
                    node: node.config.node.clone(),
                    flag: detail.flag,
                    actions: detail.actions,
                    samples: detail.samples,
                },
                version,
            ));
        }
        Ok(out)
    }

    /// How many flags have a version not yet published (for `/metrics`).
    pub(in crate::daemon) fn unpublished_flags(&self, node: &FleetNode) -> u64 {
        let Ok(flags) = self.db.lock().flags(&FlagFilter::default()) else {
            return 0;
        };
        let published = node.published.get();
        flags
            .iter()
            .filter(|f| {
                published
                    .get(&f.id)
                    .is_none_or(|(state, seen, _)| (*state, *seen) != (f.state, f.last_seen))
            })
            .count() as u64
    }

    /// Applies a review decision taken through the controller, unless the flag is
    /// already there or cannot move there any more (then it is logged and left).
    fn apply_decision(&self, id: i64, d: &DecisionRecord) {
        let current = match self.db.lock().flag(id) {
            Ok(Some(f)) => f.flag.state,
            Ok(None) => {
                tracing::warn!(
                    flag = id,
                    "fleet decision for a flag this node does not have"
                );
                return;
            }
            Err(e) => {
                tracing::error!(flag = id, error = %e, "cannot read a flag to apply the fleet's decision");
                return;
            }
        };
        if current == d.state {
            return;
        }
        if !current.can_become(d.state) {
            tracing::warn!(flag = id, from = %current, to = %d.state, "fleet decision no longer applies");
            return;
        }
        let actor = format!("fleet:{}", d.actor);
        match self.set_flag_state(id, d.state, d.reason.as_deref(), &actor) {
            Ok(_) => {
                tracing::info!(flag = id, state = %d.state, by = %d.actor, "fleet review decision applied")
            }
            Err(e) => {
                tracing::error!(flag = id, error = %e, "cannot apply the fleet's review decision")
            }
        }
    }
}

/// Publishes every flag whose current version the fleet does not have.
pub(super) async fn publish(daemon: &Arc<Daemon>, node: &FleetNode, fleet: &Fleet) -> Result<()> {
    let d = daemon.clone();
    let pending = tokio::task::spawn_blocking(move || match d.fleet.as_ref() {
        Some(node) => d.flags_to_publish(node),
        None => Ok(Vec::new()),
    })
    .await??;
    for (record, version) in pending {
        fleet.publish_flag(&record).await?;
        node.published.get().insert(record.flag.id, version);
        tracing::debug!(flag = record.flag.id, tenant = %record.flag.tenant, "flag published to the fleet");
    }
    Ok(())
}

/// Applies review decisions for this node.
pub(super) async fn apply_decisions(
    daemon: &Arc<Daemon>,
    decisions: Vec<(i64, DecisionRecord)>,
) -> Result<()> {
    if decisions.is_empty() {
        return Ok(());
    }
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || {
        for (id, decision) in &decisions {
            d.apply_decision(*id, decision);
        }
    })
    .await?;
    Ok(())
}
