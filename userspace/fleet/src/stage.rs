//! Policy applies of any size (docs/fleet-design.md, "Staged applies"), within etcd's
//! default limits (128 operations, 1.5 MiB per transaction):
//!
//! 1. take `policy/lock` (bound to a lease this apply keeps alive; a crashed applier's
//!    lock lapses with its lease); wait while another apply holds it;
//! 2. read the policy and check the base (`policy/generation`'s revision);
//! 3. delete stale versions: abandoned staging above the committed generation (a
//!    crashed applier's) and versions superseded by a committed one;
//! 4. stage the changed tenants as versions of the next generation, in batches, each
//!    guarded by the lock: readers ignore versions above the committed generation;
//! 5. commit: one small transaction, compare-and-swap on the generation's revision (and
//!    the lock still ours), puts the next generation and the audit entry: every node
//!    sees the whole apply at that revision or none of it;
//! 6. delete the versions the commit superseded, in batches; release the lock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::task::{JoinHandle, JoinSet};
use warden_policy::fragments::Fragments;

use crate::client::written_by;
use crate::policy::{Version, Versions, YIELD_EVERY};
use crate::records::{encode, AuditRecord, GenerationRecord, LockRecord};
use crate::{Fleet, FleetError, Layout, PolicySnapshot};

/// Operations per staging transaction: under etcd's default `--max-txn-ops` (128).
const BATCH_OPS: usize = 100;
/// Bytes of keys and values per staging transaction: under etcd's default
/// `--max-request-bytes` (1.5 MiB).
const BATCH_BYTES: usize = 1 << 20;
/// Staging transactions in flight at once.
const IN_FLIGHT: usize = 4;
/// The lock's lease (seconds), renewed every third of it: a crashed applier's lock
/// lapses after this.
const LOCK_TTL: i64 = 15;
/// How long an apply waits for another apply's lock before it gives up (409).
const LOCK_WAIT: Duration = Duration::from_secs(120);
const LOCK_POLL: Duration = Duration::from_millis(100);

/// What a policy apply wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The new fleet generation.
    pub generation: u64,
    /// The etcd revision of the commit (the base of the next apply).
    pub revision: i64,
    /// Tenants added or changed.
    pub changed: usize,
    /// Tenants removed.
    pub removed: usize,
    /// Stale versions deleted before staging (a crashed apply's, or superseded ones
    /// an earlier apply did not get to delete).
    pub cleaned: usize,
}

/// One write of a staging or cleaning transaction.
enum Write {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Put(k, v) => k.len() + v.len(),
            Write::Delete(k) => k.len(),
        }
    }

    fn op(self) -> TxnOp {
        match self {
            Write::Put(k, v) => TxnOp::put(k, v, None),
            Write::Delete(k) => TxnOp::delete(k, None),
        }
    }
}

/// Writes that go in one transaction: the deletions of one tenant's versions (a
/// removal is deleted with the versions it hides, never before them).
type Unit = Vec<Write>;

/// `policy/lock`, held by this apply.
struct PolicyLock {
    key: String,
    lease: i64,
    /// The lock key's create revision: staging and commit compare it.
    revision: i64,
    keeper: JoinHandle<()>,
}

impl Drop for PolicyLock {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl PolicyLock {
    fn guard(&self) -> Compare {
        Compare::create_revision(self.key.as_str(), CompareOp::Equal, self.revision)
    }
}

impl Fleet {
    /// Writes a validated policy's fragments as the fleet's next generation: only the
    /// tenants that changed, the removed ones as removals, staged in batches and
    /// committed by one transaction that succeeds only if `policy/generation` is still
    /// at `base` (the revision the caller based its change on; `None`: the one read
    /// here). A lost race is [`FleetError::Conflict`] and commits nothing; what it
    /// staged is never in force and the next apply deletes it.
    pub async fn apply_policy(
        &self,
        parts: &Fragments,
        base: Option<i64>,
        actor: &str,
        at: i64,
    ) -> Result<Applied, FleetError> {
        if let Some(base) = base {
            // Fails fast, without waiting for a lock, when the base is already gone.
            let gen_key = self.layout.generation();
            let found = self.get(&gen_key).await?.map_or(0, |kv| kv.mod_revision());
            if found != base {
                return Err(self.conflict(&[(gen_key, base)]).await);
            }
        }
        let lock = self.lock_policy(actor, at).await?;
        let r = self.apply_locked(&lock, parts, base, actor, at).await;
        self.release(lock).await;
        r
    }

    async fn apply_locked(
        &self,
        lock: &PolicyLock,
        parts: &Fragments,
        base: Option<i64>,
        actor: &str,
        at: i64,
    ) -> Result<Applied, FleetError> {
        let mut current = self.read_policy().await?;
        let gen_key = self.layout.generation();
        if base.is_some_and(|b| b != current.generation_revision) {
            let base = base.unwrap_or_default();
            return Err(self.conflict(&[(gen_key, base)]).await);
        }
        let base = current.generation_revision;
        let stale = stale_units(&self.layout, &current, None)?;
        mirror(&self.layout, &mut current, &stale).await?;
        let cleaned = self.write_batches(lock, stale, "policy clean").await?;
        let generation = current.generation_number() + 1;
        let (staged, changed, removed) = staging_units(&self.layout, &current, parts, generation)?;
        mirror(&self.layout, &mut current, &staged).await?;
        let touched: BTreeSet<String> = current.pending_ids().cloned().collect();
        self.write_batches(lock, staged, "policy staging").await?;
        let record = GenerationRecord {
            generation,
            actor: actor.to_owned(),
            at,
            tenants: parts.tenants.len(),
        };
        let audit = AuditRecord {
            at,
            actor: actor.to_owned(),
            action: "policy.apply".into(),
            target: format!("generation {generation}"),
            detail: serde_json::json!({
                "tenants": parts.tenants.len(), "changed": changed, "removed": removed,
                "base_revision": base, "cleaned": cleaned,
            }),
        };
        let revision = self.commit_staged(lock, base, &record, &audit).await?;
        current.apply_event(&self.layout, &gen_key, Some(&encode(&record)), revision)?;
        // Committed: deleting what it superseded is housekeeping; a failure here leaves
        // versions the next apply deletes.
        match stale_units(&self.layout, &current, Some(&touched)) {
            Ok(superseded) => {
                if let Err(e) = self.write_batches(lock, superseded, "policy clean").await {
                    tracing::warn!(error = %e, generation, "superseded policy versions stay until the next apply");
                }
            }
            Err(e) => tracing::warn!(error = %e, "superseded policy versions not listed"),
        }
        Ok(Applied {
            generation,
            revision,
            changed,
            removed,
            cleaned,
        })
    }

    /// The commit: the next generation and its audit entry, if the generation is still
    /// at `base` and the lock still this apply's. Returns the revision.
    async fn commit_staged(
        &self,
        lock: &PolicyLock,
        base: i64,
        record: &GenerationRecord,
        audit: &AuditRecord,
    ) -> Result<i64, FleetError> {
        let gen_key = self.layout.generation();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(gen_key.as_str(), CompareOp::Equal, base),
                lock.guard(),
            ])
            .and_then([
                self.audit_op(audit),
                TxnOp::put(gen_key.as_str(), encode(record), None),
            ]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.error(e, "policy apply commit"))?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        let found = self.get(&gen_key).await?.map_or(0, |kv| kv.mod_revision());
        if found != base {
            return Err(self.conflict(&[(gen_key, base)]).await);
        }
        Err(self.lost_lock(lock).await)
    }

    /// Takes `policy/lock` under a new lease kept alive until the lock is released,
    /// waiting up to [`LOCK_WAIT`] while another apply holds it.
    async fn lock_policy(&self, actor: &str, at: i64) -> Result<PolicyLock, FleetError> {
        let key = self.layout.policy_lock();
        let mut client = self.client.clone();
        let lease = client
            .lease_grant(LOCK_TTL, None)
            .await
            .map_err(|e| self.error(e, "lease grant"))?
            .id();
        let (mut keeper, mut responses) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| self.error(e, &format!("keep-alive of {key}")))?;
        let keeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(LOCK_TTL as u64 / 3));
            loop {
                tick.tick().await;
                if keeper.keep_alive().await.is_err()
                    || !matches!(responses.message().await, Ok(Some(_)))
                {
                    return;
                }
            }
        });
        let mut lock = PolicyLock {
            key,
            lease,
            revision: 0,
            keeper,
        };
        let value = encode(&LockRecord {
            actor: actor.to_owned(),
            at,
        });
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    lock.key.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    lock.key.as_str(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let taken = client.txn(txn).await;
            let taken = match taken {
                Ok(r) => r,
                Err(e) => {
                    let e = self.error(e, &format!("put {}", lock.key));
                    self.release(lock).await;
                    return Err(e);
                }
            };
            if taken.succeeded() {
                lock.revision = taken.header().map_or(0, |h| h.revision());
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                let e = self.conflict(&[(lock.key.clone(), 0)]).await;
                self.release(lock).await;
                return Err(e);
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// Releases the lock: revokes its lease (the key goes with it). A failure leaves
    /// the lease to lapse within [`LOCK_TTL`].
    async fn release(&self, lock: PolicyLock) {
        lock.keeper.abort();
        if let Err(e) = self.client.clone().lease_revoke(lock.lease).await {
            tracing::warn!(error = %e, "policy lock not released; it lapses with its lease");
        }
    }

    /// The conflict of an apply whose lock is no longer its own (its lease lapsed).
    async fn lost_lock(&self, lock: &PolicyLock) -> FleetError {
        let found = match self.get(&lock.key).await {
            Ok(kv) => kv,
            Err(e) => return e,
        };
        FleetError::Conflict {
            key: lock.key.clone(),
            expected: lock.revision,
            found: found.as_ref().map_or(0, |kv| kv.create_revision()),
            by: found.as_ref().and_then(|kv| written_by(kv.value())),
        }
    }

    /// Writes `units` in transactions of at most [`BATCH_OPS`] operations and
    /// [`BATCH_BYTES`] bytes, [`IN_FLIGHT`] at once, each only while the lock is this
    /// apply's. Returns how many writes were made.
    async fn write_batches(
        &self,
        lock: &PolicyLock,
        units: Vec<Unit>,
        what: &'static str,
    ) -> Result<usize, FleetError> {
        let mut batches = pack(units).into_iter();
        let mut in_flight = JoinSet::new();
        let mut written = 0;
        loop {
            while in_flight.len() < IN_FLIGHT {
                let Some(batch) = batches.next() else { break };
                let n = batch.len();
                written += n;
                let txn = Txn::new()
                    .when([lock.guard()])
                    .and_then(batch.into_iter().map(Write::op).collect::<Vec<_>>());
                let mut kv = self.client.kv_client();
                in_flight.spawn(async move { (n, kv.txn(txn).await.map(|r| r.succeeded())) });
            }
            let Some(done) = in_flight.join_next().await else {
                return Ok(written);
            };
            match done {
                Ok((_, Ok(true))) => {}
                Ok((_, Ok(false))) => return Err(self.lost_lock(lock).await),
                Ok((n, Err(e))) => return Err(too_large(self.error(e, what), n)),
                Err(e) => return Err(FleetError::Etcd(format!("{what}: {e}"))),
            }
        }
    }
}

impl PolicySnapshot {
    /// Tenants with a version above the committed generation.
    fn pending_ids(&self) -> impl Iterator<Item = &String> {
        self.tenant_versions
            .iter()
            .filter(|(_, v)| {
                v.keys()
                    .next_back()
                    .is_some_and(|g| *g > self.generation_number())
            })
            .map(|(id, _)| id)
    }
}

/// The deletions of stale versions: those above the committed generation (abandoned
/// staging), those below the version in force (superseded), and a removal in force
/// with the versions it hides. `only`: these tenants (and the defaults), else all.
fn stale_units(
    layout: &Layout,
    snapshot: &PolicySnapshot,
    only: Option<&BTreeSet<String>>,
) -> Result<Vec<Unit>, FleetError> {
    let committed = snapshot.generation_number();
    let mut units = Vec::new();
    for (id, versions) in &snapshot.tenant_versions {
        if only.is_some_and(|o| !o.contains(id)) {
            continue;
        }
        let unit = stale_of(versions, committed, |g| layout.tenant_version(id, g))?;
        if !unit.is_empty() {
            units.push(unit);
        }
    }
    let unit = stale_of(&snapshot.defaults_versions, committed, |g| {
        Ok(layout.defaults_version(g))
    })?;
    if !unit.is_empty() {
        units.push(unit);
    }
    Ok(units)
}

fn stale_of(
    versions: &Versions,
    committed: u64,
    key: impl Fn(u64) -> Result<String, FleetError>,
) -> Result<Unit, FleetError> {
    let in_force = versions
        .range(..=committed)
        .next_back()
        .map(|(g, v)| (*g, *v == Version::Removal));
    let mut unit = Vec::new();
    for &g in versions.keys() {
        let stale = g > committed
            || in_force.is_none_or(|(force, removal)| g < force || (g == force && removal));
        if stale {
            unit.push(Write::Delete(key(g)?));
        }
    }
    Ok(unit)
}

/// The puts that stage `parts` as `generation` over `current`: a version for each
/// tenant added or changed, a removal for each tenant gone; with the counts of both.
fn staging_units(
    layout: &Layout,
    current: &PolicySnapshot,
    parts: &Fragments,
    generation: u64,
) -> Result<(Vec<Unit>, usize, usize), FleetError> {
    let mut units = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(parts.tenants.len());
    for (id, fragment) in &parts.tenants {
        seen.insert(id.as_str());
        if current.tenants.get(id) != Some(fragment) {
            let key = layout.tenant_version(id, generation)?;
            units.push(vec![Write::Put(key, fragment.clone().into_bytes())]);
        }
    }
    let changed = units.len();
    for id in current
        .tenants
        .keys()
        .filter(|id| !seen.contains(id.as_str()))
    {
        let key = layout.tenant_version(id, generation)?;
        units.push(vec![Write::Put(key, Vec::new())]);
    }
    let removed = units.len() - changed;
    let key = layout.defaults_version(generation);
    match (&parts.defaults, &current.defaults) {
        (Some(new), old) if old.as_ref() != Some(new) => {
            units.push(vec![Write::Put(key, new.clone().into_bytes())]);
        }
        (None, Some(_)) => units.push(vec![Write::Put(key, Vec::new())]),
        _ => {}
    }
    Ok((units, changed, removed))
}

/// Takes `units` into `snapshot` as the watch would see them written.
async fn mirror(
    layout: &Layout,
    snapshot: &mut PolicySnapshot,
    units: &[Unit],
) -> Result<(), FleetError> {
    for (i, write) in units.iter().flatten().enumerate() {
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            // Lets the lock's keep-alive run on this thread.
            tokio::task::yield_now().await;
        }
        match write {
            Write::Put(k, v) => snapshot.apply_event(layout, k, Some(v), 0)?,
            Write::Delete(k) => snapshot.apply_event(layout, k, None, 0)?,
        };
    }
    Ok(())
}

/// `units` packed into transactions of at most [`BATCH_OPS`] writes and
/// [`BATCH_BYTES`] bytes (a unit is never split).
fn pack(units: Vec<Unit>) -> Vec<Vec<Write>> {
    let mut batches: Vec<Vec<Write>> = Vec::new();
    let mut bytes = 0;
    for unit in units {
        let size: usize = unit.iter().map(Write::bytes).sum();
        let fits = batches
            .last()
            .is_some_and(|b| b.len() + unit.len() <= BATCH_OPS && bytes + size <= BATCH_BYTES);
        if !fits {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(batch) = batches.last_mut() {
            batch.extend(unit);
        }
    }
    batches
}

/// etcd's refusal of a transaction over its `--max-txn-ops` or `--max-request-bytes`,
/// said so: a batch holds one tenant's versions at least, so a tenant (or the
/// defaults) larger than the request limit cannot be written.
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
        "etcd refused a policy write of {ops} operations ({message}): batches stay within \
         etcd's defaults, so one tenant's (or the defaults') policy must be larger than \
         etcd's {limit}; nothing was committed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(n: usize) -> Unit {
        vec![Write::Put("k".into(), vec![0; n])]
    }

    #[test]
    fn batches_stay_within_etcds_default_limits_and_keep_units_whole() {
        let units: Vec<Unit> = (0..250).map(|_| put(10)).collect();
        let batches = pack(units);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let big: Vec<Unit> = (0..3).map(|_| put(600_000)).collect();
        assert_eq!(pack(big).len(), 3, "1 MiB per batch");
        let mut units: Vec<Unit> = (0..99).map(|_| put(1)).collect();
        units.push(vec![Write::Delete("a".into()), Write::Delete("b".into())]);
        let batches = pack(units);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [99, 2]);
    }

    #[test]
    fn stale_versions_are_abandoned_superseded_or_a_removal_in_force() {
        let key = |g: u64| Ok(format!("{g}"));
        let deleted = |versions: &Versions, committed| -> Vec<String> {
            stale_of(versions, committed, key)
                .expect("keys")
                .into_iter()
                .map(|w| match w {
                    Write::Delete(k) => k,
                    Write::Put(k, _) => panic!("put {k}"),
                })
                .collect()
        };
        let v: Versions = [
            (1, Version::Text("a".into())),
            (3, Version::InForce),
            (5, Version::Text("c".into())),
        ]
        .into_iter()
        .collect();
        assert_eq!(deleted(&v, 4), ["1", "5"]);
        assert_eq!(deleted(&v, 5), ["1", "3"]);
        let removed: Versions = [(1, Version::Text("a".into())), (2, Version::Removal)]
            .into_iter()
            .collect();
        assert_eq!(deleted(&removed, 2), ["1", "2"]);
        assert_eq!(deleted(&removed, 1), ["2"]);
        let only_staged: Versions = [(7, Version::Text("x".into()))].into_iter().collect();
        assert_eq!(deleted(&only_staged, 6), ["7"]);
    }
}
