//! The policy in etcd: `policy/defaults`, one `policy/tenants/<id>` per tenant and
//! `policy/generation`, written together in one transaction (docs/fleet-design.md).

use std::collections::BTreeMap;

use etcd_client::TxnOp;
use warden_policy::fragments::{assemble, Fragments};

use crate::records::{decode, encode, AuditRecord, GenerationRecord};
use crate::{Fleet, FleetError, Layout};

/// The fleet's policy as read at one etcd revision (or as kept up to date from a watch
/// with [`PolicySnapshot::apply_event`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySnapshot {
    /// The etcd revision this state is as of.
    pub revision: i64,
    /// The generation record (`None`: no policy was ever applied to the fleet).
    pub generation: Option<GenerationRecord>,
    /// The mod revision of `policy/generation` (0: absent): the base of a
    /// compare-and-swap write.
    pub generation_revision: i64,
    /// `policy/defaults`.
    pub defaults: Option<String>,
    /// `policy/tenants/<id>`, by id.
    pub tenants: BTreeMap<String, String>,
}

impl PolicySnapshot {
    /// The generation number (0: none).
    pub fn generation_number(&self) -> u64 {
        self.generation.as_ref().map_or(0, |g| g.generation)
    }

    /// The policy document a node parses: its own file (`daemon`, `interfaces`) and the
    /// fleet's `defaults` and `tenants`.
    pub fn document(&self, local: &str) -> String {
        assemble(
            local,
            self.defaults.as_deref(),
            self.tenants.values().map(String::as_str),
        )
    }

    /// Takes in one key of `policy/` at `mod_revision`: its new value, or `None` when it
    /// was deleted. True when it was the generation key, i.e. when everything written by
    /// that apply has now been seen (the transaction puts the generation last) and the
    /// state may be applied. Keys outside `policy/` are ignored.
    pub fn apply_event(
        &mut self,
        layout: &Layout,
        key: &str,
        value: Option<&[u8]>,
        mod_revision: i64,
    ) -> Result<bool, FleetError> {
        self.revision = self.revision.max(mod_revision);
        if key == layout.generation() {
            self.generation = value.map(|v| decode(key, v)).transpose()?;
            self.generation_revision = if value.is_some() { mod_revision } else { 0 };
            return Ok(true);
        }
        if key == layout.defaults() {
            self.defaults = value.map(|v| text(key, v)).transpose()?;
        } else if let Some(id) = layout.name_in(&layout.tenants_dir(), key) {
            match value {
                Some(v) => {
                    self.tenants.insert(id.to_owned(), text(key, v)?);
                }
                None => {
                    self.tenants.remove(id);
                }
            }
        }
        Ok(false)
    }
}

/// What a policy apply wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The new fleet generation.
    pub generation: u64,
    /// The etcd revision of the write (the base of the next one).
    pub revision: i64,
    /// Tenants added or changed.
    pub changed: usize,
    /// Tenants removed.
    pub removed: usize,
}

impl Fleet {
    /// The fleet's policy at the latest revision.
    pub async fn read_policy(&self) -> Result<PolicySnapshot, FleetError> {
        let (revision, kvs) = self.list(&self.layout.policy_dir()).await?;
        let mut snapshot = PolicySnapshot::default();
        for kv in &kvs {
            let key = kv.key_str().map_err(|e| FleetError::Corrupt {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                message: e.to_string(),
            })?;
            snapshot.apply_event(&self.layout, key, Some(kv.value()), kv.mod_revision())?;
        }
        snapshot.revision = revision;
        Ok(snapshot)
    }

    /// Writes a validated policy's fragments as the fleet's next generation: only the
    /// tenants that changed, the removed ones deleted, all in one transaction that
    /// commits only if `policy/generation` is still at `base` (the revision the caller
    /// based its change on; `None`: the one read here). A lost race is
    /// [`FleetError::Conflict`] and writes nothing.
    pub async fn apply_policy(
        &self,
        parts: &Fragments,
        base: Option<i64>,
        actor: &str,
        at: i64,
    ) -> Result<Applied, FleetError> {
        let current = self.read_policy().await?;
        let gen_key = self.layout.generation();
        if let Some(base) = base.filter(|b| *b != current.generation_revision) {
            return Err(FleetError::Conflict {
                key: gen_key,
                expected: base,
                found: current.generation_revision,
                by: current
                    .generation
                    .as_ref()
                    .map(|g| format!("{} at {}", g.actor, warden_policy::time::rfc3339(g.at))),
            });
        }
        let (mut ops, changed, removed) = self.policy_ops(&current, parts)?;
        let generation = current.generation_number() + 1;
        let record = GenerationRecord {
            generation,
            actor: actor.to_owned(),
            at,
            tenants: parts.tenants.len(),
        };
        ops.push(self.audit_op(&AuditRecord {
            at,
            actor: actor.to_owned(),
            action: "policy.apply".into(),
            target: format!("generation {generation}"),
            detail: serde_json::json!({
                "tenants": parts.tenants.len(), "changed": changed, "removed": removed,
                "base_revision": current.generation_revision,
            }),
        }));
        // Last, so a watcher that applies at the generation event has seen the rest.
        ops.push(TxnOp::put(gen_key.as_str(), encode(&record), None));
        let guards = [(gen_key, current.generation_revision)];
        let n_ops = ops.len();
        let revision = self
            .commit("policy apply", &guards, ops)
            .await
            .map_err(|e| too_large(e, n_ops))?;
        Ok(Applied {
            generation,
            revision,
            changed,
            removed,
        })
    }

    /// The puts and deletes that turn `current` into `parts`, with the number of tenants
    /// changed and removed.
    fn policy_ops(
        &self,
        current: &PolicySnapshot,
        parts: &Fragments,
    ) -> Result<(Vec<TxnOp>, usize, usize), FleetError> {
        let mut ops = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(parts.tenants.len());
        let mut changed = 0;
        for (id, fragment) in &parts.tenants {
            seen.insert(id.as_str());
            if current.tenants.get(id) != Some(fragment) {
                ops.push(TxnOp::put(self.layout.tenant(id)?, fragment.as_str(), None));
                changed += 1;
            }
        }
        let mut removed = 0;
        for id in current
            .tenants
            .keys()
            .filter(|id| !seen.contains(id.as_str()))
        {
            ops.push(TxnOp::delete(self.layout.tenant(id)?, None));
            removed += 1;
        }
        match (&parts.defaults, &current.defaults) {
            (Some(new), old) if old.as_ref() != Some(new) => {
                ops.push(TxnOp::put(self.layout.defaults(), new.as_str(), None));
            }
            (None, Some(_)) => ops.push(TxnOp::delete(self.layout.defaults(), None)),
            _ => {}
        }
        Ok((ops, changed, removed))
    }
}

/// etcd's refusal of a transaction over its `--max-txn-ops` or `--max-request-bytes`,
/// said so: one apply is one transaction (docs/fleet-design.md).
fn too_large(e: FleetError, ops: usize) -> FleetError {
    let FleetError::Etcd(message) = &e else {
        return e;
    };
    let limit = if message.contains("too many operations in txn request") {
        "--max-txn-ops"
    } else if message.contains("request is too large")
        || message.contains("message length too large")
    {
        "--max-request-bytes"
    } else {
        return e;
    };
    FleetError::TooLarge(format!(
        "etcd refused the apply as one transaction of {ops} operations ({message}); a policy \
         apply is one transaction so nodes never see half of it: raise etcd's {limit}, or \
         apply the change in smaller steps"
    ))
}

fn text(key: &str, value: &[u8]) -> Result<String, FleetError> {
    String::from_utf8(value.to_vec()).map_err(|e| FleetError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(crate::DEFAULT_PREFIX).expect("valid")
    }

    #[test]
    fn events_before_the_generation_are_held_until_it_arrives() {
        let l = layout();
        let mut s = PolicySnapshot::default();
        let tenant = l.tenant("acme").expect("valid");
        let ready = s
            .apply_event(&l, &tenant, Some(br#"{"id":"acme"}"#), 7)
            .expect("decodes");
        assert!(!ready, "a tenant key alone is not a whole apply");
        let gen = GenerationRecord {
            generation: 3,
            actor: "ops".into(),
            at: 1,
            tenants: 1,
        };
        let ready = s
            .apply_event(&l, &l.generation(), Some(&encode(&gen)), 7)
            .expect("decodes");
        assert!(ready);
        assert_eq!(s.generation_number(), 3);
        assert_eq!(s.generation_revision, 7);
        assert_eq!(s.tenants.len(), 1);
        s.apply_event(&l, &tenant, None, 8).expect("delete");
        assert!(s.tenants.is_empty());
        assert_eq!(s.revision, 8);
    }

    #[test]
    fn the_document_holds_the_local_sections_and_every_tenant() {
        let mut s = PolicySnapshot::default();
        s.tenants.insert(
            "a".into(),
            r#"{"id":"a","addresses":["198.18.1.0/24"]}"#.into(),
        );
        s.defaults = Some(r#"{"smtp":"allow"}"#.into());
        let local = "interfaces:\n  - {name: eth0, mode: host}\n";
        let policy = warden_policy::parse(&s.document(local), "fleet").expect("parses");
        assert_eq!(policy.tenants.len(), 1);
        assert_eq!(policy.interfaces.len(), 1);
        assert_eq!(policy.tenants[0].settings.smtp, warden_policy::Smtp::Allow);
    }
}
