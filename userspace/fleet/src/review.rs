//! What nodes publish (registrations, flags) and what the controller writes back to
//! them (review decisions), and the audit log.

use etcd_client::{
    GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, SortOrder, SortTarget, TxnOp,
};
use warden_policy::flag::FlagState;

use crate::records::{
    decode, encode, AuditRecord, DecisionRecord, FlagRecord, LayoutRecord, NodeRecord,
};
use crate::{keys, Fleet, FleetError};

/// A node's registration: its lease, kept alive while the node runs.
pub struct Registration {
    /// The lease id `nodes/<node>` is bound to.
    pub lease: i64,
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

impl Registration {
    /// Renews the lease once; the TTL it now has (0: the lease had already expired, so
    /// the node must register again).
    pub async fn renew(&mut self) -> Result<i64, FleetError> {
        let lost = |e: etcd_client::Error| FleetError::Unavailable {
            endpoints: "lease keep-alive".into(),
            message: e.to_string(),
        };
        self.keeper.keep_alive().await.map_err(lost)?;
        match self.responses.message().await.map_err(lost)? {
            Some(r) => Ok(r.ttl()),
            None => Err(FleetError::Unavailable {
                endpoints: "lease keep-alive".into(),
                message: "the keep-alive stream ended".into(),
            }),
        }
    }
}

/// A flag as the controller lists it: as its node published it, with any decision
/// taken through the controller that the node has not applied yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedFlag {
    /// The flag's id in the fleet: the etcd revision its key was created at, unique
    /// across nodes and unchanged by republishing (the node's own id is in `record`).
    pub fleet_id: i64,
    /// The node's record.
    pub record: FlagRecord,
    /// The decision waiting at `flagstates/<node>/<id>`, if any.
    pub decision: Option<DecisionRecord>,
}

impl PublishedFlag {
    /// The state to show: the decision's while the node has not yet applied it.
    pub fn state(&self) -> FlagState {
        let published = self.record.flag.state;
        match &self.decision {
            Some(d) if published.can_become(d.state) => d.state,
            _ => published,
        }
    }
}

impl Fleet {
    /// Writes `layout` if it is absent (`warden fleet init`); false when it was there.
    pub async fn init_layout(&self, at: i64) -> Result<bool, FleetError> {
        let key = self.layout.layout();
        if let Some(kv) = self.get(&key).await? {
            let found: LayoutRecord = decode(&key, kv.value())?;
            if found.version != keys::LAYOUT_VERSION {
                return Err(FleetError::Refused(format!(
                    "{key} holds layout version {}; this warden writes version {}",
                    found.version,
                    keys::LAYOUT_VERSION
                )));
            }
            return Ok(false);
        }
        let record = LayoutRecord {
            version: keys::LAYOUT_VERSION,
            created_at: at,
        };
        let ops = vec![TxnOp::put(key.as_str(), encode(&record), None)];
        self.commit("fleet init", &[(key, 0)], ops).await?;
        Ok(true)
    }

    /// The last `limit` audit entries, oldest first.
    pub async fn audit(&self, limit: i64) -> Result<Vec<AuditRecord>, FleetError> {
        let dir = self.layout.audit_dir();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(limit);
        let mut response = self
            .client
            .kv_client()
            .get(dir.as_str(), Some(options))
            .await
            .map_err(|e| self.error(e, &format!("get {dir}*")))?;
        let mut out = response
            .take_kvs()
            .iter()
            .map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect::<Result<Vec<AuditRecord>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Registers a node: `nodes/<node>` bound to a new lease of `ttl` seconds, which
    /// lapses (and removes the key) unless renewed.
    pub async fn register(
        &self,
        record: &NodeRecord,
        ttl: i64,
    ) -> Result<Registration, FleetError> {
        let key = self.layout.node(&record.node)?;
        let mut client = self.client.clone();
        let lease = client
            .lease_grant(ttl, None)
            .await
            .map_err(|e| self.error(e, "lease grant"))?
            .id();
        self.update_registration(record, lease).await?;
        let (keeper, responses) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| self.error(e, &format!("keep-alive of {key}")))?;
        Ok(Registration {
            lease,
            keeper,
            responses,
        })
    }

    /// Rewrites a registered node's record (applied generation, attachment) under its
    /// lease.
    pub async fn update_registration(
        &self,
        record: &NodeRecord,
        lease: i64,
    ) -> Result<(), FleetError> {
        let key = self.layout.node(&record.node)?;
        self.client
            .kv_client()
            .put(
                key.as_str(),
                encode(record),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| self.error(e, &format!("put {key}")))?;
        Ok(())
    }

    /// Every registered node (a lapsed lease has removed its key), by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, FleetError> {
        let (_, kvs) = self.list(&self.layout.nodes_dir()).await?;
        kvs.iter()
            .map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect()
    }

    /// Publishes (or republishes, after a state change) a node's flag. Idempotent: the
    /// key is the node's flag id, so a flag sent twice (a retry after an outage) is
    /// still one flag.
    pub async fn publish_flag(&self, record: &FlagRecord) -> Result<i64, FleetError> {
        let key = self.layout.flag(&record.node, record.flag.id)?;
        let response = self
            .client
            .kv_client()
            .put(key.as_str(), encode(record), None)
            .await
            .map_err(|e| self.error(e, &format!("put {key}")))?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Every published flag (of `node` only, when given), with pending decisions.
    pub async fn flags(&self, node: Option<&str>) -> Result<Vec<PublishedFlag>, FleetError> {
        let (flags_dir, decisions_dir) = match node {
            Some(n) => (
                self.layout.node_flags_dir(n)?,
                self.layout.node_decisions_dir(n)?,
            ),
            None => (
                self.layout.flags_dir(),
                format!("{}flagstates/", self.layout.prefix()),
            ),
        };
        let (revision, flags) = self.list(&flags_dir).await?;
        let (_, decisions) = self.list_at(&decisions_dir, revision).await?;
        let mut pending = std::collections::HashMap::with_capacity(decisions.len());
        for kv in &decisions {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let suffix = key[decisions_dir.len()..].to_owned();
            pending.insert(suffix, decode::<DecisionRecord>(&key, kv.value())?);
        }
        flags
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let record: FlagRecord = decode(&key, kv.value())?;
                let decision = pending.remove(&key[flags_dir.len()..]);
                Ok(PublishedFlag {
                    fleet_id: kv.create_revision(),
                    record,
                    decision,
                })
            })
            .collect()
    }

    /// One published flag.
    pub async fn flag(&self, node: &str, id: i64) -> Result<PublishedFlag, FleetError> {
        let key = self.layout.flag(node, id)?;
        let Some(kv) = self.get(&key).await? else {
            return Err(FleetError::NotFound(format!("flag {node}/{id}")));
        };
        let decision = self.get(&self.layout.decision(node, id)?).await?;
        Ok(PublishedFlag {
            fleet_id: kv.create_revision(),
            record: decode(&key, kv.value())?,
            decision: decision
                .map(|d| decode(&String::from_utf8_lossy(d.key()), d.value()))
                .transpose()?,
        })
    }

    /// Records a review decision on `node`'s flag `id` for the node to apply, audited.
    /// Refused when the flag's state cannot become `decision.state`; a decision or a
    /// republished flag written since it was read is a [`FleetError::Conflict`].
    pub async fn decide_flag(
        &self,
        node: &str,
        id: i64,
        decision: &DecisionRecord,
    ) -> Result<(), FleetError> {
        let flag_key = self.layout.flag(node, id)?;
        let decision_key = self.layout.decision(node, id)?;
        let Some(flag_kv) = self.get(&flag_key).await? else {
            return Err(FleetError::NotFound(format!("flag {node}/{id}")));
        };
        let pending = self.get(&decision_key).await?;
        let current = PublishedFlag {
            fleet_id: flag_kv.create_revision(),
            record: decode(&flag_key, flag_kv.value())?,
            decision: pending
                .as_ref()
                .map(|d| decode(&decision_key, d.value()))
                .transpose()?,
        };
        let from = current.state();
        if !from.can_become(decision.state) {
            return Err(FleetError::Refused(format!(
                "flag {node}/{id} is {from}; it cannot become {}",
                decision.state
            )));
        }
        let ops = vec![
            TxnOp::put(decision_key.as_str(), encode(decision), None),
            self.audit_op(&AuditRecord {
                at: decision.at,
                actor: decision.actor.clone(),
                action: format!("flag.{}", verb(decision.state)),
                target: format!("{node}/{id}"),
                detail: serde_json::json!({"from": from, "reason": decision.reason,
                    "tenant": current.record.flag.tenant}),
            }),
        ];
        let guards = [
            (flag_key, flag_kv.mod_revision()),
            (decision_key, pending.map_or(0, |d| d.mod_revision())),
        ];
        self.commit("flag review", &guards, ops).await?;
        Ok(())
    }

    /// The published flag whose fleet id is `fleet_id` (see [`PublishedFlag::fleet_id`]).
    pub async fn flag_by_fleet_id(&self, fleet_id: i64) -> Result<PublishedFlag, FleetError> {
        let (_, kvs) = self.list(&self.layout.flags_dir()).await?;
        let Some(kv) = kvs.iter().find(|kv| kv.create_revision() == fleet_id) else {
            return Err(FleetError::NotFound(format!("flag {fleet_id}")));
        };
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let record: FlagRecord = decode(&key, kv.value())?;
        self.flag(&record.node, record.flag.id).await
    }

    /// The decisions waiting for `node`, by flag id, with the revision read at.
    pub async fn decisions(
        &self,
        node: &str,
    ) -> Result<(i64, Vec<(i64, DecisionRecord)>), FleetError> {
        let dir = self.layout.node_decisions_dir(node)?;
        let (revision, kvs) = self.list(&dir).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let key = String::from_utf8_lossy(kv.key());
            let id = key[dir.len()..]
                .parse::<i64>()
                .map_err(|e| FleetError::Corrupt {
                    key: key.to_string(),
                    message: format!("not a flag id: {e}"),
                })?;
            out.push((id, decode(&key, kv.value())?));
        }
        Ok((revision, out))
    }
}

/// The audit verb of a review decision.
fn verb(state: FlagState) -> &'static str {
    match state {
        FlagState::Acked => "ack",
        FlagState::Dismissed => "dismiss",
        FlagState::Escalated => "escalate",
        FlagState::Notified => "notify",
        FlagState::Open => "reopen",
    }
}
