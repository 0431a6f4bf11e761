//! The fleet's key layout under one prefix (docs/fleet-design.md, "What lives where").
//! Every key the fleet reads or writes is built here, so the layout is in one place.

use crate::FleetError;

/// The default prefix (`daemon.fleet.prefix`).
pub const DEFAULT_PREFIX: &str = "/warden/v1/";

/// The version of the layout `warden fleet init` writes at `layout`.
/// 2: the policy as versions per generation (`policy/tenants/<id>/<generation>`).
pub const LAYOUT_VERSION: u32 = 2;

/// The keys of one fleet, under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix`: it must start and end with `/` and hold only
    /// printable ASCII without spaces.
    pub fn new(prefix: &str) -> Result<Self, FleetError> {
        let ok = prefix.len() >= 2
            && prefix.starts_with('/')
            && prefix.ends_with('/')
            && !prefix.contains("//")
            && prefix.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(FleetError::InvalidName {
                what: "prefix",
                name: prefix.to_owned(),
                rule: "starts and ends with `/`, no `//`, printable ASCII without spaces",
            });
        }
        Ok(Layout {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// `layout`: the layout version, written by `warden fleet init`.
    pub fn layout(&self) -> String {
        self.key("layout")
    }

    /// `policy/`: everything a policy apply writes (the prefix nodes watch).
    pub fn policy_dir(&self) -> String {
        self.key("policy/")
    }

    /// `policy/generation`: the fleet's policy generation; every apply rewrites it.
    pub fn generation(&self) -> String {
        self.key("policy/generation")
    }

    /// `policy/lock`: held (bound to the applier's lease) while an apply stages its
    /// versions; a lapsed lease frees it.
    pub fn policy_lock(&self) -> String {
        self.key("policy/lock")
    }

    /// `policy/defaults/`: the versions of the `defaults` section.
    pub fn defaults_dir(&self) -> String {
        self.key("policy/defaults/")
    }

    /// `policy/defaults/<generation>`: the `defaults` section as of that generation
    /// (empty: removed then).
    pub fn defaults_version(&self, generation: u64) -> String {
        self.key(&format!("policy/defaults/{generation:020}"))
    }

    /// `policy/tenants/`: every tenant's versions.
    pub fn tenants_dir(&self) -> String {
        self.key("policy/tenants/")
    }

    /// `policy/tenants/<id>/`: one tenant's versions (a node scoped to its tenants
    /// reads these alone).
    pub fn tenant_dir(&self, id: &str) -> Result<String, FleetError> {
        check_name("tenant", id)?;
        Ok(self.key(&format!("policy/tenants/{id}/")))
    }

    /// `policy/tenants/<id>/<generation>`: the tenant as of that generation (empty:
    /// removed then).
    pub fn tenant_version(&self, id: &str, generation: u64) -> Result<String, FleetError> {
        check_name("tenant", id)?;
        Ok(self.key(&format!("policy/tenants/{id}/{generation:020}")))
    }

    /// What a key under `policy/` is; `None` for anything this layout does not write.
    pub fn policy_key<'k>(&self, key: &'k str) -> Option<PolicyKey<'k>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("policy/")?;
        match rest {
            "generation" => return Some(PolicyKey::Generation),
            "lock" => return Some(PolicyKey::Lock),
            _ => {}
        }
        if let Some(generation) = rest.strip_prefix("defaults/") {
            return generation_of(generation).map(PolicyKey::Defaults);
        }
        let (id, generation) = rest.strip_prefix("tenants/")?.split_once('/')?;
        check_name("tenant", id).ok()?;
        Some(PolicyKey::Tenant(id, generation_of(generation)?))
    }

    /// `suspensions/`: the sequence and one key per suspended tenant.
    pub fn suspensions_dir(&self) -> String {
        self.key("suspensions/")
    }

    /// `suspensions/seq`: the fleet's suspension sequence. `seq` is not a valid tenant
    /// key below `suspensions/` because tenants sit under `suspensions/tenants/`.
    pub fn suspension_seq(&self) -> String {
        self.key("suspensions/seq")
    }

    /// `suspensions/tenants/`: one key per suspended tenant.
    pub fn suspended_dir(&self) -> String {
        self.key("suspensions/tenants/")
    }

    /// `suspensions/tenants/<id>`: the tenant's active suspension.
    pub fn suspension(&self, tenant: &str) -> Result<String, FleetError> {
        check_name("tenant", tenant)?;
        Ok(self.key(&format!("suspensions/tenants/{tenant}")))
    }

    /// `audit/`: the audit log, one key per entry, in time order.
    pub fn audit_dir(&self) -> String {
        self.key("audit/")
    }

    /// `audit/<at_ns>-<nonce>`: the key of one audit entry (nanoseconds zero-padded so
    /// that key order is time order).
    pub fn audit(&self, at_ns: u128, nonce: u32) -> String {
        self.key(&format!("audit/{at_ns:024}-{nonce:08x}"))
    }

    /// `nodes/`: one registration per live node.
    pub fn nodes_dir(&self) -> String {
        self.key("nodes/")
    }

    /// `nodes/<node>`: the node's registration, bound to its lease.
    pub fn node(&self, node: &str) -> Result<String, FleetError> {
        check_name("node", node)?;
        Ok(self.key(&format!("nodes/{node}")))
    }

    /// `flags/`: every node's published flags.
    pub fn flags_dir(&self) -> String {
        self.key("flags/")
    }

    /// `flags/<node>/`: one node's published flags.
    pub fn node_flags_dir(&self, node: &str) -> Result<String, FleetError> {
        check_name("node", node)?;
        Ok(self.key(&format!("flags/{node}/")))
    }

    /// `flags/<node>/<id>`: one flag as the node published it.
    pub fn flag(&self, node: &str, id: i64) -> Result<String, FleetError> {
        Ok(format!("{}{id:020}", self.node_flags_dir(node)?))
    }

    /// `flagstates/<node>/`: review decisions taken through the controller for a node.
    pub fn node_decisions_dir(&self, node: &str) -> Result<String, FleetError> {
        check_name("node", node)?;
        Ok(self.key(&format!("flagstates/{node}/")))
    }

    /// `flagstates/<node>/<id>`: the decision on one flag.
    pub fn decision(&self, node: &str, id: i64) -> Result<String, FleetError> {
        Ok(format!("{}{id:020}", self.node_decisions_dir(node)?))
    }

    /// The part of `key` after `dir` (a key this layout built), if it lies under it.
    pub fn name_in<'k>(&self, dir: &str, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(dir).filter(|rest| !rest.contains('/'))
    }
}

/// A key under `policy/`, parsed ([`Layout::policy_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKey<'k> {
    /// `policy/generation`: the committed generation.
    Generation,
    /// `policy/lock`: an applier's lock.
    Lock,
    /// `policy/defaults/<generation>`.
    Defaults(u64),
    /// `policy/tenants/<id>/<generation>`.
    Tenant(&'k str, u64),
}

/// A generation as written in keys: 20 digits.
fn generation_of(text: &str) -> Option<u64> {
    (text.len() == 20 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The end of the range of keys that start with `prefix` (etcd's prefix range).
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Tenant ids and node names: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not `.` or
/// `..` (the policy's tenant id rule; a name never holds `/`, so a key names one thing).
pub fn check_name(what: &'static str, name: &str) -> Result<(), FleetError> {
    let ok = (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(FleetError::InvalidName {
            what,
            name: name.to_owned(),
            rule: "1 to 64 characters of A-Z a-z 0-9 . _ -",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_prefix_one_kind_per_directory() {
        let l = Layout::new(DEFAULT_PREFIX).expect("default prefix is valid");
        assert_eq!(l.generation(), "/warden/v1/policy/generation");
        assert_eq!(
            l.tenant_version("acme", 7).expect("valid"),
            "/warden/v1/policy/tenants/acme/00000000000000000007"
        );
        assert_eq!(
            l.tenant_dir("acme").expect("valid"),
            "/warden/v1/policy/tenants/acme/"
        );
        assert!(l
            .tenant_version("acme", 7)
            .expect("valid")
            .starts_with(&l.tenant_dir("acme").expect("valid")));
        assert!(!l
            .tenant_version("acme2", 7)
            .expect("valid")
            .starts_with(&l.tenant_dir("acme").expect("valid")));
        assert_eq!(
            l.suspension("acme").expect("valid"),
            "/warden/v1/suspensions/tenants/acme"
        );
        assert!(!l.suspension_seq().starts_with(&l.suspended_dir()));
        assert_eq!(l.node("n7").expect("valid"), "/warden/v1/nodes/n7");
        assert_eq!(
            l.flag("n7", 42).expect("valid"),
            "/warden/v1/flags/n7/00000000000000000042"
        );
        assert_eq!(
            l.decision("n7", 42).expect("valid"),
            "/warden/v1/flagstates/n7/00000000000000000042"
        );
    }

    #[test]
    fn flag_keys_sort_by_id_and_audit_keys_by_time() {
        let l = Layout::new("/w/").expect("valid");
        assert!(l.flag("n", 9).expect("valid") < l.flag("n", 10).expect("valid"));
        assert!(l.audit(999, 7) < l.audit(1_000, 0));
    }

    #[test]
    fn names_that_could_escape_their_directory_are_refused() {
        let l = Layout::new(DEFAULT_PREFIX).expect("valid");
        for bad in ["", "a/b", "..", ".", "a b", &"x".repeat(65)] {
            assert!(l.tenant_version(bad, 1).is_err(), "{bad:?} accepted");
            assert!(l.node(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["warden", "/warden", "warden/", "/a//b/", "/a b/"] {
            assert!(Layout::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_prefix_range_ends_past_every_key_under_it() {
        assert_eq!(range_end("/warden/v1/"), b"/warden/v10".to_vec());
        assert_eq!(range_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn policy_keys_parse_back_to_what_built_them() {
        let l = Layout::new(DEFAULT_PREFIX).expect("valid");
        let tenant = l.tenant_version("acme", 12).expect("valid");
        assert_eq!(l.policy_key(&tenant), Some(PolicyKey::Tenant("acme", 12)));
        assert_eq!(
            l.policy_key(&l.defaults_version(3)),
            Some(PolicyKey::Defaults(3))
        );
        assert_eq!(l.policy_key(&l.generation()), Some(PolicyKey::Generation));
        assert_eq!(l.policy_key(&l.policy_lock()), Some(PolicyKey::Lock));
        for other in [
            "/warden/v1/policy/tenants/acme",
            "/warden/v1/policy/tenants/acme/12",
            "/warden/v1/policy/tenants/a/b/00000000000000000001",
            "/warden/v1/policy/defaults",
            "/warden/v1/suspensions/seq",
            "/other/policy/generation",
        ] {
            assert_eq!(l.policy_key(other), None, "{other}");
        }
        // Versions of one tenant sort by generation.
        assert!(
            l.tenant_version("a", 9).expect("valid") < l.tenant_version("a", 10).expect("valid")
        );
    }

    #[test]
    fn name_in_takes_one_level_only() {
        let l = Layout::new(DEFAULT_PREFIX).expect("valid");
        let dir = l.tenants_dir();
        assert_eq!(
            l.name_in(&dir, "/warden/v1/policy/tenants/acme"),
            Some("acme")
        );
        assert_eq!(l.name_in(&dir, "/warden/v1/policy/tenants/a/b"), None);
        assert_eq!(l.name_in(&dir, "/warden/v1/policy/generation"), None);
    }
}
