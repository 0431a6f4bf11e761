//! Flags over the fleet: every node's published flags, each under its fleet id (the
//! etcd revision its key was created at) and named with the node that raised it, with
//! review decisions written for that node.

use warden_fleet::records::DecisionRecord;
use warden_fleet::{FleetError, PublishedFlag};
use warden_policy::flag::{Flag, FlagDetail, FlagFilter, FlagState};
use warden_policy::time::system_clock;

use super::backend::{refusal, Controller};
use crate::api::Refusal;

/// The flag as the API shows it: its fleet id, the state a pending decision gives it.
fn view(p: &PublishedFlag) -> Flag {
    Flag {
        id: p.fleet_id,
        state: p.state(),
        state_reason: match &p.decision {
            Some(d) if d.state == p.state() => d.reason.clone(),
            _ => p.record.flag.state_reason.clone(),
        },
        node: Some(p.record.node.clone()),
        ..p.record.flag.clone()
    }
}

impl Controller {
    pub(super) fn fleet_flags(&self, filter: &FlagFilter) -> anyhow::Result<Vec<Flag>> {
        // A node filter reads that node's keys alone (`flags/<node>/`), not the fleet's.
        let published = self.wait(self.fleet().flags(filter.node.as_deref()))?;
        let mut flags: Vec<Flag> = published
            .iter()
            .map(view)
            .filter(|f| filter.matches(f))
            .collect();
        flags.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.id.cmp(&a.id)));
        flags.drain(..filter.offset.unwrap_or(0).min(flags.len()));
        if let Some(limit) = filter.limit {
            flags.truncate(limit);
        }
        Ok(flags)
    }

    pub(super) fn fleet_flag(&self, id: i64) -> anyhow::Result<Option<FlagDetail>> {
        match self.wait(self.fleet().flag_by_fleet_id(id)) {
            Ok(p) => Ok(Some(FlagDetail {
                flag: view(&p),
                actions: p.record.actions,
                samples: p.record.samples,
                samples_refused: 0,
            })),
            Err(FleetError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a flag's frames are: on its node, not in the fleet's store (404 naming
    /// the node and the flag's id there).
    pub(super) fn fleet_flag_pcap(&self, id: i64) -> Result<Option<Vec<u8>>, Refusal> {
        match self.wait(self.fleet().flag_by_fleet_id(id)) {
            Ok(p) => Err(Refusal::NotFound(format!(
                "flag {id}'s {} captured frames are not in the fleet's store: they stay on node {}, \
                 as its flag {} (GET /api/v1/flags/{}/pcap from that node's API)",
                p.record.samples, p.record.node, p.record.flag.id, p.record.flag.id
            ))),
            Err(FleetError::NotFound(_)) => Ok(None),
            Err(e) => Err(refusal(e)),
        }
    }

    pub(super) fn fleet_review(
        &self,
        id: i64,
        state: FlagState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Flag, Refusal> {
        let p = match self.wait(self.fleet().flag_by_fleet_id(id)) {
            Err(FleetError::NotFound(_)) => {
                return Err(Refusal::NotFound(format!("flag {id} not found")))
            }
            other => other.map_err(refusal)?,
        };
        if state == FlagState::Dismissed && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(Refusal::BadRequest("a reason is required".into()));
        }
        let decision = DecisionRecord {
            state,
            reason: reason.map(str::to_owned),
            actor: actor.to_owned(),
            at: system_clock(),
        };
        let (node, local) = (p.record.node.clone(), p.record.flag.id);
        self.wait(self.fleet().decide_flag(&node, local, &decision))
            .map_err(refusal)?;
        tracing::info!(flag = id, %node, local, %state, %actor, "fleet review decision written");
        Ok(view(&PublishedFlag {
            decision: Some(decision),
            ..p
        }))
    }
}
