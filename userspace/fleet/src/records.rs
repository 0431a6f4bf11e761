//! The values stored at the fleet's keys (JSON), and their decoding with errors that
//! name the key.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use warden_policy::flag::{Flag, FlagAction, FlagState};
pub use warden_policy::suspension::Suspended;

use crate::FleetError;

/// `layout`: written once by `warden fleet init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutRecord {
    /// The layout version ([`crate::keys::LAYOUT_VERSION`]).
    pub version: u32,
    /// When the layout was created (unix seconds).
    pub created_at: i64,
}

/// `policy/generation`: the fleet's policy generation and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationRecord {
    /// Counts policy applies, from 1.
    pub generation: u64,
    /// Who applied it (token name).
    pub actor: String,
    /// When (unix seconds).
    pub at: i64,
    /// How many tenants the policy has.
    pub tenants: usize,
}

/// `policy/lock`: the applier staging the next generation (bound to its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRecord {
    /// Who applies (token name).
    pub actor: String,
    /// When the apply started (unix seconds).
    pub at: i64,
}

/// `suspensions/seq`: the fleet's suspension sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceRecord {
    /// The number of the last suspend or unsuspend.
    pub seq: u64,
}

/// One entry of the fleet's audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// When (unix seconds).
    pub at: i64,
    /// Who (token name, or `node:<name>` for a node's own writes).
    pub actor: String,
    /// What, e.g. `policy.apply`, `tenant.suspend`, `flag.ack`.
    pub action: String,
    /// On what (tenant id, flag as `<node>/<id>`, policy generation).
    pub target: String,
    /// Details: reason, what changed.
    pub detail: serde_json::Value,
}

/// `nodes/<node>`: a node's registration, bound to its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// The node's name (`daemon.fleet.node`).
    pub node: String,
    /// The warden version it runs.
    pub version: String,
    /// When the daemon started (unix seconds).
    pub started_at: i64,
    /// When it last rewrote this record (unix seconds).
    pub heartbeat: i64,
    /// The fleet policy generation it enforces (0: none yet).
    pub applied_generation: u64,
    /// The etcd revision its applied state was read at.
    pub applied_revision: i64,
    /// Whether every program is attached.
    pub attached: bool,
    /// Its interfaces, as `name:mode`.
    pub interfaces: Vec<String>,
}

/// `flags/<node>/<id>`: a flag as its node published it, with its evidence (figures,
/// thresholds, top targets in the flag; the actions taken). Captured frames stay on the
/// node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRecord {
    /// The node that raised it.
    pub node: String,
    /// The flag, its id the node's own.
    pub flag: Flag,
    /// Every action taken on it, in time order.
    pub actions: Vec<FlagAction>,
    /// How many frames the node holds for it (fetched through the node's API).
    pub samples: usize,
}

/// `flagstates/<node>/<id>`: a review decision taken through the controller, for the
/// node to apply to its own store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// The state the flag is to take (`acked` or `dismissed`).
    pub state: FlagState,
    /// Why (required for a dismissal).
    pub reason: Option<String>,
    /// Who decided (token name).
    pub actor: String,
    /// When (unix seconds).
    pub at: i64,
}

/// The JSON of `value` (the records hold no maps with non-string keys, so this cannot
/// fail).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("fleet records serialize to JSON")
}

/// `bytes` read from `key` as a `T`; a value that does not decode is
/// [`FleetError::Corrupt`] naming the key.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| FleetError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json() {
        let node = NodeRecord {
            node: "n7".into(),
            version: "0.1.0".into(),
            started_at: 1,
            heartbeat: 2,
            applied_generation: 3,
            applied_revision: 44,
            attached: true,
            interfaces: vec!["eth0:host".into()],
        };
        assert_eq!(
            decode::<NodeRecord>("k", &encode(&node)).expect("decodes"),
            node
        );
        let d = DecisionRecord {
            state: FlagState::Dismissed,
            reason: Some("backup job".into()),
            actor: "ops".into(),
            at: 5,
        };
        let text = String::from_utf8(encode(&d)).expect("utf-8");
        assert!(text.contains("\"state\":\"dismissed\""), "{text}");
        assert_eq!(
            decode::<DecisionRecord>("k", text.as_bytes()).expect("decodes"),
            d
        );
    }

    #[test]
    fn a_value_that_does_not_decode_names_its_key() {
        let err = decode::<GenerationRecord>("/warden/v1/policy/generation", b"{\"gen\":1}")
            .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.contains("/warden/v1/policy/generation"), "{text}");
    }
}
