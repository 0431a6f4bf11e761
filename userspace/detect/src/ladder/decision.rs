//! What a detection is about, and what the ladder tells the daemon to do about it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use warden_policy::{Action, Kind};

/// What a throttle or block cuts: the offending traffic only, never more than needed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The tenant as a whole: detections with no narrower target (spoofing, bandwidth), and
    /// every suspension.
    Tenant,
    /// One address: a flood's victim, or for `flood_in` the tenant's attacked address.
    Addr(IpAddr),
    /// One destination port, e.g. SMTP 25 for `spam`.
    Port(u16),
    /// One of the tenant's listening ports used to relay (`proxy`).
    ProxyPort(u16),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tenant => f.write_str("tenant"),
            Target::Addr(addr) => write!(f, "addr {addr}"),
            Target::Port(port) => write!(f, "port {port}"),
            Target::ProxyPort(port) => write!(f, "proxy port {port}"),
        }
    }
}

/// One detection: which tenant, what kind of abuse, aimed at what.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DetectionKey {
    /// The tenant id from the policy.
    pub tenant: String,
    /// The detector that fired.
    pub kind: Kind,
    /// What the offending traffic is aimed at.
    pub target: Target,
}

/// What the daemon must do after a detection or a tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Every detection yields exactly one `Record`, first: count it, and when `action` is
    /// [`Action::Flag`] or harsher, open or update a flag for review. `action` is the action
    /// the detection earned after escalation and the ceiling.
    Record {
        /// The tenant.
        tenant: String,
        /// The detector that fired.
        kind: Kind,
        /// What it was aimed at.
        target: Target,
        /// The action it earned.
        action: Action,
    },
    /// Enforce `action` on `target` from now on, replacing whatever was applied to this
    /// (tenant, kind, target) before. `until` is when it expires unless refreshed; `None`
    /// for a suspension, whose target is always [`Target::Tenant`].
    Apply {
        /// The tenant.
        tenant: String,
        /// The detector that caused it.
        kind: Kind,
        /// What to throttle or block; the whole tenant for a suspension.
        target: Target,
        /// Throttle, block or suspend.
        action: Action,
        /// When it expires (same epoch as the ladder's clock).
        until: Option<Duration>,
    },
    /// The behaviour continues: keep `action` on `target`, now until `until`.
    Extend {
        /// The tenant.
        tenant: String,
        /// The detector.
        kind: Kind,
        /// The target.
        target: Target,
        /// The action already applied.
        action: Action,
        /// The new expiry.
        until: Duration,
    },
    /// Stop enforcing `action` on `target`: it expired, or the policy lowered the ceiling
    /// below it. Never issued for a suspension.
    Lift {
        /// The tenant.
        tenant: String,
        /// The detector that caused it.
        kind: Kind,
        /// The target.
        target: Target,
        /// The action being lifted.
        action: Action,
    },
}

impl Decision {
    /// The tenant the decision is about.
    pub fn tenant(&self) -> &str {
        match self {
            Decision::Record { tenant, .. }
            | Decision::Apply { tenant, .. }
            | Decision::Extend { tenant, .. }
            | Decision::Lift { tenant, .. } => tenant,
        }
    }

    /// What the decision is about: its tenant, kind and target.
    pub fn key(&self) -> DetectionKey {
        match self {
            Decision::Record {
                tenant,
                kind,
                target,
                ..
            }
            | Decision::Apply {
                tenant,
                kind,
                target,
                ..
            }
            | Decision::Extend {
                tenant,
                kind,
                target,
                ..
            }
            | Decision::Lift {
                tenant,
                kind,
                target,
                ..
            } => DetectionKey {
                tenant: tenant.clone(),
                kind: *kind,
                target: target.clone(),
            },
        }
    }

    /// The action the decision is about.
    pub fn action(&self) -> Action {
        match self {
            Decision::Record { action, .. }
            | Decision::Apply { action, .. }
            | Decision::Extend { action, .. }
            | Decision::Lift { action, .. } => *action,
        }
    }
}
