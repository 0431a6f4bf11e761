//! The policy in etcd, as versions per generation (docs/fleet-design.md, "Staged
//! applies"): `policy/tenants/<id>/<generation>` and `policy/defaults/<generation>`
//! (an empty value: removed as of that generation), and `policy/generation`, the
//! committed generation. The policy in force is, per tenant, its newest version at or
//! below the committed generation; newer versions are staged (or abandoned) and unseen.

use std::collections::{BTreeMap, BTreeSet};

use warden_policy::fragments::assemble;

use crate::keys::PolicyKey;
use crate::records::{decode, GenerationRecord};
use crate::{Fleet, FleetError, Layout};

/// Keys taken in between yields to the runtime in long loops.
pub(crate) const YIELD_EVERY: usize = 1_000;

/// One stored version of a tenant (or of the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Version {
    /// Its text.
    Text(String),
    /// A removal (an empty value).
    Removal,
    /// The version in force: its text is in [`PolicySnapshot::tenants`] (or
    /// [`PolicySnapshot::defaults`]), kept once (a 100,000-tenant policy is some 25 MB).
    InForce,
}

/// The stored versions of one tenant (or of the defaults), by generation.
pub(crate) type Versions = BTreeMap<u64, Version>;

/// The tenants a reader of the policy keeps (docs/fleet-design.md, "What a node
/// watches"): every tenant (a gateway, a node not bound to tenants, the controller) or a
/// host node's own. The defaults and the generation are everyone's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant.
    #[default]
    All,
    /// These tenants only; other tenants' keys are ignored.
    Tenants(BTreeSet<String>),
}

impl Scope {
    /// Whether the tenant `id` is kept.
    pub fn covers(&self, id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenants(ids) => ids.contains(id),
        }
    }
}

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
    /// The `defaults` section in force.
    pub defaults: Option<String>,
    /// The tenants in force, by id.
    pub tenants: BTreeMap<String, String>,
    /// Every stored version of every tenant, staged ones included.
    pub(crate) tenant_versions: BTreeMap<String, Versions>,
    /// Every stored version of the defaults.
    pub(crate) defaults_versions: Versions,
    /// Tenants with a version above the committed generation, settled again at the
    /// next generation.
    pending: BTreeSet<String>,
    /// The tenants kept; others' keys are ignored.
    scope: Scope,
}

impl PolicySnapshot {
    /// An empty state that keeps the tenants of `scope` only.
    pub fn scoped(scope: Scope) -> Self {
        PolicySnapshot {
            scope,
            ..PolicySnapshot::default()
        }
    }

    /// The tenants this state keeps.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether tenant `id` has a version above the committed generation (staged), which
    /// a later generation may put in force.
    pub fn is_pending(&self, id: &str) -> bool {
        self.pending.contains(id)
    }

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
    /// was deleted. True when it was the generation key: a committed apply, whose
    /// versions were all written before it, so the state may be applied. Versions
    /// above the committed generation are kept aside until a generation commits them.
    /// Other keys are ignored.
    pub fn apply_event(
        &mut self,
        layout: &Layout,
        key: &str,
        value: Option<&[u8]>,
        mod_revision: i64,
    ) -> Result<bool, FleetError> {
        self.revision = self.revision.max(mod_revision);
        let committed = self.generation_number();
        match layout.policy_key(key) {
            Some(PolicyKey::Generation) => {
                self.generation = value.map(|v| decode(key, v)).transpose()?;
                self.generation_revision = if value.is_some() { mod_revision } else { 0 };
                self.settle_pending();
                return Ok(true);
            }
            Some(PolicyKey::Defaults(generation)) => {
                store(&mut self.defaults_versions, generation, key, value)?;
                settle(&mut self.defaults_versions, committed, &mut self.defaults);
            }
            // Another tenant's key on a scoped node: only its revision counts.
            Some(PolicyKey::Tenant(id, _)) if !self.scope.covers(id) => {}
            Some(PolicyKey::Tenant(id, generation)) => {
                let versions = match self.tenant_versions.get_mut(id) {
                    Some(v) => v,
                    None => self.tenant_versions.entry(id.to_owned()).or_default(),
                };
                store(versions, generation, key, value)?;
                if generation > committed {
                    self.pending.insert(id.to_owned());
                } else {
                    self.settle(id);
                }
            }
            Some(PolicyKey::Lock) | None => {}
        }
        Ok(false)
    }

    /// Sets the tenant `id` in force from its versions.
    fn settle(&mut self, id: &str) {
        let committed = self.generation_number();
        let mut text = self.tenants.remove(id);
        let Some(versions) = self.tenant_versions.get_mut(id) else {
            return;
        };
        settle(versions, committed, &mut text);
        if let Some(text) = text {
            self.tenants.insert(id.to_owned(), text);
        }
        if versions.is_empty() {
            self.tenant_versions.remove(id);
        }
    }

    /// After the generation changed: the pending tenants and the defaults in force
    /// again; those still above it stay pending.
    fn settle_pending(&mut self) {
        let committed = self.generation_number();
        settle(&mut self.defaults_versions, committed, &mut self.defaults);
        for id in std::mem::take(&mut self.pending) {
            self.settle(&id);
            let staged = self
                .tenant_versions
                .get(&id)
                .and_then(|v| v.keys().next_back())
                .is_some_and(|g| *g > committed);
            if staged {
                self.pending.insert(id);
            }
        }
    }
}

/// Records one version's put (`Some`) or deletion (`None`).
fn store(
    versions: &mut Versions,
    generation: u64,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), FleetError> {
    match value {
        Some([]) => {
            versions.insert(generation, Version::Removal);
        }
        Some(v) => {
            versions.insert(generation, Version::Text(text(key, v)?));
        }
        None => {
            versions.remove(&generation);
        }
    }
    Ok(())
}

/// Makes `in_force` (the text in force, taken out of `versions`) the text of the
/// version in force at `committed`: the newest at or below it, unless it is a removal.
/// The text in force goes back to its version first, and is dropped if that version
/// was deleted.
fn settle(versions: &mut Versions, committed: u64, in_force: &mut Option<String>) {
    let previous = in_force.take();
    if let Some(slot) = versions.values_mut().find(|v| **v == Version::InForce) {
        *slot = previous.map_or(Version::Removal, Version::Text);
    }
    if let Some((_, slot)) = versions.range_mut(..=committed).next_back() {
        if matches!(slot, Version::Text(_)) {
            if let Version::Text(text) = std::mem::replace(slot, Version::InForce) {
                *in_force = Some(text);
            }
        }
    }
}

impl Fleet {
    /// The fleet's policy at the latest revision: one consistent snapshot, read in
    /// pages at one revision.
    pub async fn read_policy(&self) -> Result<PolicySnapshot, FleetError> {
        self.read_policy_in(Scope::All).await
    }

    /// The fleet's policy for `scope` at the latest revision, one consistent snapshot:
    /// the whole `policy/` directory for [`Scope::All`]; else the generation, the
    /// defaults and each tenant of the scope, every read at the generation read's
    /// revision (a few small reads, whatever the size of the fleet).
    pub async fn read_policy_in(&self, scope: Scope) -> Result<PolicySnapshot, FleetError> {
        let (revision, kvs) = match &scope {
            Scope::All => self.list_paged(&self.layout.policy_dir(), 0).await?,
            Scope::Tenants(ids) => {
                let (revision, mut kvs) = self.list_paged(&self.layout.generation(), 0).await?;
                let (_, defaults) = self
                    .list_paged(&self.layout.defaults_dir(), revision)
                    .await?;
                kvs.extend(defaults);
                for id in ids {
                    let (_, versions) = self
                        .list_paged(&self.layout.tenant_dir(id)?, revision)
                        .await?;
                    kvs.extend(versions);
                }
                (revision, kvs)
            }
        };
        let mut snapshot = PolicySnapshot::scoped(scope);
        for (i, kv) in kvs.iter().enumerate() {
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                // 100,000 keys take a while: let other tasks (an apply's lock keep-alive)
                // run on this thread meanwhile.
                tokio::task::yield_now().await;
            }
            let key = kv.key_str().map_err(|e| FleetError::Corrupt {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                message: e.to_string(),
            })?;
            snapshot.apply_event(&self.layout, key, Some(kv.value()), kv.mod_revision())?;
        }
        // Tenants read before the generation or above it are pending; the others were
        // settled as they came.
        snapshot.settle_pending();
        snapshot.revision = revision;
        Ok(snapshot)
    }
}

pub(crate) fn text(key: &str, value: &[u8]) -> Result<String, FleetError> {
    String::from_utf8(value.to_vec()).map_err(|e| FleetError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::encode;

    fn layout() -> Layout {
        Layout::new(crate::DEFAULT_PREFIX).expect("valid")
    }

    #[test]
    fn events_before_the_generation_are_held_until_it_arrives() {
        let l = layout();
        let mut s = PolicySnapshot::default();
        let tenant = l.tenant_version("acme", 3).expect("valid");
        let ready = s
            .apply_event(&l, &tenant, Some(br#"{"id":"acme"}"#), 7)
            .expect("decodes");
        assert!(!ready, "a tenant key alone is not a whole apply");
        assert!(s.tenants.is_empty(), "a staged version is not in force");
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
        // A removal staged for generation 4 leaves the tenant in force until 4 commits.
        let removal = l.tenant_version("acme", 4).expect("valid");
        s.apply_event(&l, &removal, Some(b""), 8).expect("decodes");
        assert_eq!(s.tenants.len(), 1);
        // The superseded version goes first, then the removal itself: never back.
        let gen4 = GenerationRecord {
            generation: 4,
            ..gen
        };
        s.apply_event(&l, &l.generation(), Some(&encode(&gen4)), 9)
            .expect("decodes");
        assert!(s.tenants.is_empty());
        s.apply_event(&l, &tenant, None, 10).expect("delete");
        s.apply_event(&l, &removal, None, 10).expect("delete");
        assert!(s.tenants.is_empty() && s.tenant_versions.is_empty());
        assert_eq!(s.revision, 10);
    }

    #[test]
    fn the_text_in_force_is_kept_once_and_a_deleted_one_gives_way_to_the_one_before() {
        let l = layout();
        let mut s = PolicySnapshot::default();
        let v1 = l.tenant_version("a", 1).expect("valid");
        let v2 = l.tenant_version("a", 2).expect("valid");
        s.apply_event(&l, &v1, Some(b"one"), 1).expect("decodes");
        s.apply_event(&l, &v2, Some(b"two"), 2).expect("decodes");
        let gen = GenerationRecord {
            generation: 2,
            actor: "ops".into(),
            at: 1,
            tenants: 1,
        };
        s.apply_event(&l, &l.generation(), Some(&encode(&gen)), 3)
            .expect("decodes");
        assert_eq!(s.tenants["a"], "two");
        assert_eq!(s.tenant_versions["a"][&2], Version::InForce);
        assert_eq!(s.tenant_versions["a"][&1], Version::Text("one".into()));
        // Not something an apply does, but a reader must not keep a deleted text.
        s.apply_event(&l, &v2, None, 4).expect("delete");
        assert_eq!(s.tenants["a"], "one");
        s.apply_event(&l, &v1, Some(b"uno"), 5).expect("decodes");
        assert_eq!(s.tenants["a"], "uno");
        assert_eq!(s.tenant_versions["a"].len(), 1);
    }

    #[test]
    fn abandoned_versions_above_the_generation_are_never_in_force() {
        let l = layout();
        let mut s = PolicySnapshot::default();
        let gen = |generation| GenerationRecord {
            generation,
            actor: "ops".into(),
            at: 1,
            tenants: 1,
        };
        let v1 = l.tenant_version("a", 1).expect("valid");
        s.apply_event(&l, &v1, Some(b"one"), 2).expect("decodes");
        s.apply_event(&l, &l.generation(), Some(&encode(&gen(1))), 2)
            .expect("decodes");
        // A crashed applier staged generation 2 for `a` and `b`.
        let a2 = l.tenant_version("a", 2).expect("valid");
        let b2 = l.tenant_version("b", 2).expect("valid");
        s.apply_event(&l, &a2, Some(b"abandoned"), 3)
            .expect("decodes");
        s.apply_event(&l, &b2, Some(b"abandoned"), 3)
            .expect("decodes");
        assert_eq!(s.tenants.get("a").map(String::as_str), Some("one"));
        assert!(!s.tenants.contains_key("b"));
        // The next applier cleans them, then commits its own generation 2 for `a` only.
        s.apply_event(&l, &a2, None, 4).expect("delete");
        s.apply_event(&l, &b2, None, 4).expect("delete");
        s.apply_event(&l, &a2, Some(b"two"), 5).expect("decodes");
        s.apply_event(&l, &l.generation(), Some(&encode(&gen(2))), 6)
            .expect("decodes");
        assert_eq!(s.tenants.len(), 1);
        assert_eq!(s.tenants.get("a").map(String::as_str), Some("two"));
    }

    #[test]
    fn a_scoped_state_keeps_its_tenants_and_takes_their_generations_whole() {
        let l = layout();
        let own = Scope::Tenants(["acme".to_owned()].into());
        let mut s = PolicySnapshot::scoped(own);
        let gen = |generation| GenerationRecord {
            generation,
            actor: "ops".into(),
            at: 1,
            tenants: 2,
        };
        let acme1 = l.tenant_version("acme", 1).expect("valid");
        let globex1 = l.tenant_version("globex", 1).expect("valid");
        s.apply_event(&l, &acme1, Some(b"acme one"), 2)
            .expect("decodes");
        s.apply_event(&l, &globex1, Some(b"globex one"), 3)
            .expect("decodes");
        s.apply_event(&l, &l.defaults_version(1), Some(b"{}"), 3)
            .expect("decodes");
        assert!(
            s.tenants.is_empty(),
            "nothing in force before its generation"
        );
        assert!(s
            .apply_event(&l, &l.generation(), Some(&encode(&gen(1))), 4)
            .expect("decodes"));
        assert_eq!(s.tenants.keys().collect::<Vec<_>>(), ["acme"]);
        assert_eq!(s.defaults.as_deref(), Some("{}"));
        assert!(
            !s.tenant_versions.contains_key("globex"),
            "nothing of another tenant is kept"
        );
        // Another tenant's change: its versions go by, its generation changes nothing here.
        let globex2 = l.tenant_version("globex", 2).expect("valid");
        s.apply_event(&l, &globex2, Some(b"globex two"), 5)
            .expect("decodes");
        let before = s.tenants.clone();
        s.apply_event(&l, &l.generation(), Some(&encode(&gen(2))), 6)
            .expect("decodes");
        assert_eq!(s.tenants, before);
        assert_eq!((s.generation_number(), s.revision), (2, 6));
        // Its own change is staged, unseen, until its generation commits it.
        let acme3 = l.tenant_version("acme", 3).expect("valid");
        s.apply_event(&l, &acme3, Some(b"acme three"), 7)
            .expect("decodes");
        assert_eq!(s.tenants["acme"], "acme one");
        s.apply_event(&l, &l.generation(), Some(&encode(&gen(3))), 8)
            .expect("decodes");
        assert_eq!(s.tenants["acme"], "acme three");
        assert!(Scope::All.covers("globex") && !s.scope().covers("globex"));
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
