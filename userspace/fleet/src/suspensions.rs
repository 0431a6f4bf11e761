//! Suspensions in etcd: `suspensions/seq` (the fleet's suspension sequence) and one
//! `suspensions/tenants/<id>` per active suspension. A suspend or unsuspend is one
//! transaction guarded by the sequence key, so two of them never take the same number.

use etcd_client::TxnOp;
use ipnet::IpNet;
use warden_policy::suspension::{Suspended, SuspensionState};

use crate::records::{decode, encode, AuditRecord, SequenceRecord};
use crate::{Fleet, FleetError};

impl Fleet {
    /// Every active suspension with the sequence, and the etcd revision they were read
    /// at.
    pub async fn suspensions(&self) -> Result<(i64, SuspensionState), FleetError> {
        let (revision, kvs) = self.list(&self.layout.suspensions_dir()).await?;
        let seq_key = self.layout.suspension_seq();
        let dir = self.layout.suspended_dir();
        let mut state = SuspensionState::default();
        for kv in &kvs {
            let key = String::from_utf8_lossy(kv.key());
            if key == seq_key {
                state.seq = decode::<SequenceRecord>(&key, kv.value())?.seq;
            } else if key.starts_with(&dir) {
                let s: Suspended = decode(&key, kv.value())?;
                state.tenants.insert(s.tenant.clone(), s);
            }
        }
        Ok((revision, state))
    }

    /// Suspends `tenant` with the addresses it has now; takes the next sequence number.
    /// Refused if it is already suspended; a concurrent suspend or unsuspend anywhere
    /// in the fleet is a [`FleetError::Conflict`] (nothing written).
    pub async fn suspend(
        &self,
        tenant: &str,
        addresses: Vec<IpNet>,
        reason: &str,
        actor: &str,
        at: i64,
    ) -> Result<Suspended, FleetError> {
        let key = self.layout.suspension(tenant)?;
        let (seq, seq_rev) = self.sequence().await?;
        if self.get(&key).await?.is_some() {
            return Err(FleetError::Refused(format!(
                "tenant {tenant} is already suspended"
            )));
        }
        let suspended = Suspended {
            tenant: tenant.to_owned(),
            addresses,
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            since: at,
            seq: seq + 1,
        };
        let ops = vec![
            TxnOp::put(key.as_str(), encode(&suspended), None),
            self.seq_op(seq + 1),
            self.audit_op(&AuditRecord {
                at,
                actor: actor.to_owned(),
                action: "tenant.suspend".into(),
                target: tenant.to_owned(),
                detail: serde_json::json!({"reason": reason, "seq": seq + 1,
                    "addresses": suspended.addresses}),
            }),
        ];
        let guards = [(self.layout.suspension_seq(), seq_rev), (key, 0)];
        self.commit("suspend", &guards, ops).await?;
        Ok(suspended)
    }

    /// Lifts `tenant`'s suspension (audited with `reason`). [`FleetError::NotFound`]
    /// when it is not suspended.
    pub async fn unsuspend(
        &self,
        tenant: &str,
        reason: &str,
        actor: &str,
        at: i64,
    ) -> Result<Suspended, FleetError> {
        let key = self.layout.suspension(tenant)?;
        let (seq, seq_rev) = self.sequence().await?;
        let Some(kv) = self.get(&key).await? else {
            return Err(FleetError::NotFound(format!(
                "a suspension of tenant {tenant}"
            )));
        };
        let lifted: Suspended = decode(&key, kv.value())?;
        let ops = vec![
            TxnOp::delete(key.as_str(), None),
            self.seq_op(seq + 1),
            self.audit_op(&AuditRecord {
                at,
                actor: actor.to_owned(),
                action: "tenant.unsuspend".into(),
                target: tenant.to_owned(),
                detail: serde_json::json!({"reason": reason, "seq": seq + 1,
                    "suspended_since": lifted.since, "suspended_by": lifted.actor}),
            }),
        ];
        let guards = [
            (self.layout.suspension_seq(), seq_rev),
            (key, kv.mod_revision()),
        ];
        self.commit("unsuspend", &guards, ops).await?;
        Ok(lifted)
    }

    /// The suspension sequence and the mod revision of its key (0, 0 when absent).
    async fn sequence(&self) -> Result<(u64, i64), FleetError> {
        let key = self.layout.suspension_seq();
        match self.get(&key).await? {
            Some(kv) => Ok((
                decode::<SequenceRecord>(&key, kv.value())?.seq,
                kv.mod_revision(),
            )),
            None => Ok((0, 0)),
        }
    }

    fn seq_op(&self, seq: u64) -> TxnOp {
        TxnOp::put(
            self.layout.suspension_seq(),
            encode(&SequenceRecord { seq }),
            None,
        )
    }
}
