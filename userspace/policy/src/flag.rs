//! Flags: detections held for the security team's review, with the actions taken on them
//! and captured frames as evidence. The records the detection pipeline writes, the store
//! keeps and the API shows (the store's `flags` module has the rules it enforces).
//!
//! Review states and the moves between them ([`FlagState::can_become`]):
//!
//! | from       | to                                        |
//! |------------|-------------------------------------------|
//! | `open`     | `notified`, `acked`, `dismissed`, `escalated` |
//! | `notified` | `acked`, `dismissed`, `escalated`         |
//! | `acked`    | `dismissed`, `escalated`                  |
//! | `dismissed`, `escalated` | none: the review is over    |
//!
//! `acked` means "seen, being handled", so it can still end either way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Action, Kind};

/// Samples a flag keeps; later ones are refused and counted. Mirrored by a schema trigger.
pub const MAX_SAMPLES_PER_FLAG: usize = 64;
/// Captured bytes a sample keeps. Mirrored by a schema check.
pub const MAX_SAMPLE_BYTES: usize = 256;

/// Where a flag is in its review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagState {
    /// New, nobody has looked at it.
    Open,
    /// The tenant was notified and has until the deadline to answer.
    Notified,
    /// The security team has seen it and is handling it.
    Acked,
    /// Not abuse, or handled; needs a reason.
    Dismissed,
    /// Escalated (e.g. to a suspension).
    Escalated,
}

impl FlagState {
    /// Every state, in review order.
    pub const ALL: [FlagState; 5] = [
        FlagState::Open,
        FlagState::Notified,
        FlagState::Acked,
        FlagState::Dismissed,
        FlagState::Escalated,
    ];

    /// The name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagState::Open => "open",
            FlagState::Notified => "notified",
            FlagState::Acked => "acked",
            FlagState::Dismissed => "dismissed",
            FlagState::Escalated => "escalated",
        }
    }

    /// Whether a flag in this state may move to `to` (see the module documentation).
    pub fn can_become(self, to: FlagState) -> bool {
        use FlagState::*;
        matches!(
            (self, to),
            (Open, Notified | Acked | Dismissed | Escalated)
                | (Notified, Acked | Dismissed | Escalated)
                | (Acked, Dismissed | Escalated)
        )
    }

    /// Whether the review is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, FlagState::Dismissed | FlagState::Escalated)
    }
}

impl fmt::Display for FlagState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlagState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::names::parse(&FlagState::ALL, FlagState::as_str, "flag state", text)
    }
}

/// A flag as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// Row id, never reused.
    pub id: i64,
    /// The flagged tenant.
    pub tenant: String,
    /// What was detected.
    pub kind: Kind,
    /// Where the review is.
    pub state: FlagState,
    /// First detection (unix seconds).
    pub first_seen: i64,
    /// Latest detection (unix seconds).
    pub last_seen: i64,
    /// The policy generation that was in force when it was raised.
    pub policy_generation: u64,
    /// The detector's thresholds at the time.
    pub thresholds: serde_json::Value,
    /// The measured figures, as of `last_seen`.
    pub figures: serde_json::Value,
    /// The most affected targets (victims, servers, ports).
    pub top_targets: serde_json::Value,
    /// When the tenant's answer is due (unix seconds), if a deadline was set.
    pub deadline: Option<i64>,
    /// Why it is in its current state, when someone said.
    pub state_reason: Option<String>,
    /// The fleet node that raised it: its `daemon.fleet.node`. Absent (not serialised)
    /// on a daemon outside a fleet, and in what a store keeps (a store is one node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A flag to create; it starts `open` with `first_seen = last_seen = seen`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewFlag {
    /// The tenant.
    pub tenant: String,
    /// What was detected.
    pub kind: Kind,
    /// When (unix seconds).
    pub seen: i64,
    /// The policy generation in force.
    pub policy_generation: u64,
    /// The detector's thresholds.
    pub thresholds: serde_json::Value,
    /// The measured figures.
    pub figures: serde_json::Value,
    /// The most affected targets.
    pub top_targets: serde_json::Value,
    /// When the tenant's answer is due, if at all.
    pub deadline: Option<i64>,
}

/// What happened to an enforcement action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionDecision {
    /// Put in force.
    #[default]
    Apply,
    /// Kept in force longer: the behaviour went on.
    Extend,
    /// Taken out of force: it expired, or the policy's ceiling dropped below it.
    Lift,
}

impl ActionDecision {
    /// Every decision.
    pub const ALL: [ActionDecision; 3] = [
        ActionDecision::Apply,
        ActionDecision::Extend,
        ActionDecision::Lift,
    ];

    /// The name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionDecision::Apply => "apply",
            ActionDecision::Extend => "extend",
            ActionDecision::Lift => "lift",
        }
    }
}

impl fmt::Display for ActionDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionDecision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::names::parse(
            &ActionDecision::ALL,
            ActionDecision::as_str,
            "action decision",
            text,
        )
    }
}

/// An enforcement action taken because of a flag: applied, extended or lifted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagAction {
    /// When it was decided (unix seconds).
    pub at: i64,
    /// Applied, extended or lifted (rows written before this field existed: applied).
    #[serde(default)]
    pub decision: ActionDecision,
    /// The action: what was applied, extended or lifted.
    pub action: Action,
    /// What it was applied to, e.g. `addr 198.18.0.1` or `tenant`.
    pub target: String,
    /// When it expires (unix seconds); `None` for a suspension and for a lift.
    pub until: Option<i64>,
    /// Who: `warden` for the ladder, or a token name.
    pub by: String,
}

/// Captured packet headers, evidence for a flag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Capture time, unix nanoseconds: the kernel's own time of this frame
    /// (`bpf_ktime_get_ns`), so samples of one burst keep their spacing.
    pub at_ns: i64,
    /// The captured bytes, from the Ethernet header on.
    pub data: Vec<u8>,
    /// The frame's length on the wire.
    pub orig_len: u32,
}

/// A flag with what was done about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlagDetail {
    /// The flag.
    #[serde(flatten)]
    pub flag: Flag,
    /// Actions taken, oldest first.
    pub actions: Vec<FlagAction>,
    /// Samples kept.
    pub samples: usize,
    /// Samples refused because the flag already had [`MAX_SAMPLES_PER_FLAG`].
    pub samples_refused: u64,
}

/// Which flags to list; `None` fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlagFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only flags seen at or after this time (unix seconds), by `last_seen`.
    pub since: Option<i64>,
    /// Only flags seen before this time (unix seconds), by `last_seen`.
    pub until: Option<i64>,
    /// Only flags in this state.
    pub state: Option<FlagState>,
    /// Only flags raised by this fleet node (a flag without a node matches none).
    pub node: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
    /// Skip this many of the newest first (paging).
    pub offset: Option<usize>,
}

impl FlagFilter {
    /// Whether `f` passes the filter's conditions (`limit` and `offset` are the
    /// caller's to apply).
    pub fn matches(&self, f: &Flag) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == f.tenant)
            && self.kind.is_none_or(|k| k == f.kind)
            && self.since.is_none_or(|s| f.last_seen >= s)
            && self.until.is_none_or(|u| f.last_seen < u)
            && self.state.is_none_or(|s| s == f.state)
            && self
                .node
                .as_ref()
                .is_none_or(|n| f.node.as_ref() == Some(n))
    }

    /// The filter as asked of a store holding only the flags of `own` (a daemon's, with
    /// its fleet node name if it has one), whose rows carry no node: a node filter naming
    /// `own` matches every row, so it is dropped; any other stays, and matches none.
    pub fn for_store_of(&self, own: Option<&str>) -> FlagFilter {
        match (&self.node, own) {
            (Some(n), Some(own)) if n == own => FlagFilter {
                node: None,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

/// The review queue at a glance: how many flags a filter (all but its state) matches in
/// each state, and the newest flag id of all, which changes whenever a flag is raised.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagSummary {
    /// Every state by name, with the flags in it (0 included).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Flags the whole filter (state included) matches: the pages to page through.
    pub total: u64,
    /// The highest flag id of all flags, whatever the filter; `None` with none.
    pub latest_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(node: Option<&str>) -> Flag {
        Flag {
            id: 1,
            tenant: "acme".into(),
            kind: Kind::Scan,
            state: FlagState::Open,
            first_seen: 10,
            last_seen: 20,
            policy_generation: 1,
            thresholds: serde_json::json!({}),
            figures: serde_json::json!({}),
            top_targets: serde_json::json!([]),
            deadline: None,
            state_reason: None,
            node: node.map(str::to_owned),
        }
    }

    fn on(node: &str) -> FlagFilter {
        FlagFilter {
            node: Some(node.into()),
            ..FlagFilter::default()
        }
    }

    #[test]
    fn a_node_filter_matches_only_that_nodes_flags_and_never_a_flag_without_a_node() {
        assert!(on("node7").matches(&flag(Some("node7"))));
        assert!(!on("node7").matches(&flag(Some("node8"))));
        assert!(!on("node7").matches(&flag(None)));
        assert!(FlagFilter::default().matches(&flag(None)));
        assert!(FlagFilter::default().matches(&flag(Some("node8"))));
        let both = FlagFilter {
            tenant: Some("other".into()),
            ..on("node7")
        };
        assert!(!both.matches(&flag(Some("node7"))), "tenant still applies");
    }

    #[test]
    fn a_store_is_asked_without_the_node_filter_only_when_it_names_the_stores_own_node() {
        let own = on("node7").for_store_of(Some("node7"));
        assert_eq!(own.node, None);
        assert_eq!(
            on("node8").for_store_of(Some("node7")).node.as_deref(),
            Some("node8")
        );
        assert_eq!(
            on("node7").for_store_of(None).node.as_deref(),
            Some("node7")
        );
        assert_eq!(
            FlagFilter::default().for_store_of(Some("node7")),
            FlagFilter::default()
        );
    }

    #[test]
    fn a_flag_without_a_node_serialises_without_the_key_and_reads_back_from_older_records() {
        let text = serde_json::to_string(&flag(None)).expect("serialises");
        assert!(!text.contains("\"node\""), "{text}");
        let back: Flag = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back.node, None);
        let with = serde_json::to_value(flag(Some("node7"))).expect("serialises");
        assert_eq!(with["node"], "node7");
        let detail = FlagDetail {
            flag: flag(Some("node7")),
            actions: Vec::new(),
            samples: 0,
            samples_refused: 0,
        };
        let v = serde_json::to_value(&detail).expect("serialises");
        assert_eq!(v["node"], "node7");
        let back: FlagDetail = serde_json::from_value(v).expect("reads back");
        assert_eq!(back.flag.node.as_deref(), Some("node7"));
    }
}
