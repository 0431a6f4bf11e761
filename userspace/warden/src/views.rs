//! The documents the HTTP API serves and the CLI reads: one typed definition for both,
//! so the CLI knows what the daemon answers without knowing the daemon's, the
//! dataplane's or the store's own structures.
//!
//! Flags and suspensions are served as the vocabulary defines them
//! ([`warden_policy::flag`], [`warden_policy::suspension::Suspension`]); they are
//! re-exported here so the CLI takes every document from this module.

use std::collections::HashMap;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use warden_policy::flag::{ActionDecision, Flag, FlagAction, FlagDetail, FlagState};
pub use warden_policy::suspension::Suspension;

/// One direction of a tenant's traffic, as the API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectionView {
    pub packets: u64,
    pub bytes: u64,
    /// Bits per second over the last sample interval.
    pub bps: f64,
    /// Packets per second over the last sample interval.
    pub pps: f64,
    /// Bandwidth plan in bits per second; `None` is unlimited.
    pub plan_bps: Option<u64>,
    /// Dropped packets by reason (only reasons with drops).
    pub drops: HashMap<String, u64>,
}

/// A tenant as `GET /api/v1/tenants` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantView {
    pub id: String,
    /// The tenant's slot in the kernel's tables.
    pub index: u32,
    pub addresses: Vec<IpNet>,
    /// `active` or `suspended`.
    pub state: String,
    /// Its own suspension, if it is suspended itself.
    pub suspension: Option<Suspension>,
    /// Why it is enforced as suspended, when it is: its own suspension, an address
    /// recorded with another tenant's suspension, or a suspended id no longer in the
    /// policy whose recorded addresses stay suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_suspended: Option<String>,
    pub out: DirectionView,
    #[serde(rename = "in")]
    pub in_: DirectionView,
}

/// The daemon's status, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub uptime_seconds: u64,
    pub policy_file: PathBuf,
    pub policy_generation: u64,
    pub policy_applied_at: u64,
    pub kernel_generation: u32,
    pub tenants: usize,
    pub suspended: usize,
    pub bpffs: PathBuf,
    pub attachments: Vec<AttachmentView>,
    /// Each interface of the policy: its attachment and the tenants bound to it (empty
    /// on a controller, and from a daemon older than port bindings).
    #[serde(default)]
    pub interfaces: Vec<InterfaceView>,
    pub maps: Vec<MapFill>,
    /// Detection: kernel events and actions in force.
    #[serde(default)]
    pub detection: DetectionView,
    /// Review workflow: notifications, deadlines, events log.
    #[serde(default)]
    pub review: ReviewStats,
    /// A controller's: the etcd revision of the fleet policy's generation, the base to
    /// send as `If-Match` with `PUT /api/v1/policy` (`warden policy apply --base`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<i64>,
    /// How egress plans are enforced: shaped on host-mode interfaces, else policed.
    #[serde(default)]
    pub shaping: ShapingView,
    /// Where the policy in force came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_source: Option<PolicySource>,
}

/// Where the policy in force came from (`warden status`, `GET /api/v1/policy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicySource {
    /// The daemon's `-c` file (at start, on SIGHUP or `warden policy apply --from-file`).
    File { path: PathBuf },
    /// `PUT /api/v1/policy`, kept in the state directory: who applied it (token name),
    /// when (unix seconds), at which generation, and the name it was sent under.
    Api {
        by: String,
        at: i64,
        generation: u64,
        name: String,
    },
    /// The fleet's policy in etcd (`daemon.fleet`; a controller's or a node's).
    Fleet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
    },
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use warden_policy::time::rfc3339;
        match self {
            PolicySource::File { path } => write!(f, "file {}", path.display()),
            PolicySource::Api {
                by, at, generation, ..
            } => write!(
                f,
                "api by {by} at {}, generation {generation}",
                rfc3339(*at)
            ),
            PolicySource::Fleet { by, at, generation } => {
                f.write_str("fleet")?;
                if let Some(by) = by {
                    write!(f, " by {by}")?;
                }
                if let Some(at) = at {
                    write!(f, " at {}", rfc3339(*at))?;
                }
                if let Some(g) = generation {
                    write!(f, ", generation {g}")?;
                }
                Ok(())
            }
        }
    }
}

/// The policy in force, as `GET /api/v1/policy` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyView {
    pub policy_generation: u64,
    /// When it was applied (unix seconds).
    pub applied_at: u64,
    pub source: PolicySource,
    /// Whether `policy` is the effective form (every tenant with `defaults` merged in)
    /// rather than the policy as applied.
    pub effective: bool,
    /// The policy document as YAML: `warden policy apply` takes it back.
    pub text: String,
    /// The same document as JSON, every value as the text the policy file takes.
    pub policy: serde_json::Value,
}

impl PolicyView {
    /// The view of `policy` in force since `applied_at` at `generation`. `fleet_only`
    /// writes only the sections a fleet keeps (`defaults`, `tenants`): a controller has
    /// no `daemon` or `interfaces` of its own.
    pub fn of(
        policy: &warden_policy::Policy,
        effective: bool,
        generation: u64,
        applied_at: u64,
        source: PolicySource,
        fleet_only: bool,
    ) -> PolicyView {
        use warden_policy::write::{self, Form, Tree};
        let form = if effective {
            Form::Effective
        } else {
            Form::AsApplied
        };
        let mut tree = write::to_tree(policy, form);
        if let (true, Tree::Map(entries)) = (fleet_only, &mut tree) {
            let fleet = warden_policy::fragments::FLEET_SECTIONS;
            entries.retain(|(k, _)| fleet.contains(&k.as_str()));
        }
        PolicyView {
            policy_generation: generation,
            applied_at,
            source,
            effective,
            text: write::tree_yaml(&tree),
            policy: tree.to_json(),
        }
    }
}

/// How from-tenant (egress) plans are enforced on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapingView {
    /// `htb`: host-mode interfaces queue each tenant's traffic in an HTB class of its
    /// plan; `police`: no host-mode interface, every plan is policed (a controller
    /// leaves it empty).
    pub mode: String,
    /// Whether the kernel has the `fq` qdisc (what EDT shaping would use; not used).
    pub fq: bool,
    /// The interfaces shaped.
    pub interfaces: Vec<String>,
    /// Tenant classes on each of them.
    pub classes: usize,
    /// Egress plans still policed: more than a start or an apply makes classes for;
    /// each gets its class once its tenant needs a queue.
    #[serde(default)]
    pub pending: usize,
}

/// One program attached to one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    pub interface: String,
    pub mode: String,
    pub hook: String,
    pub program: String,
    /// `adopted` (left running by an earlier daemon), `attached` or `replaced`.
    pub how: String,
}

/// One interface of the policy with its attachment and port bindings, as `warden status`
/// shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub name: String,
    /// `host` or `gateway`.
    pub mode: String,
    /// Each hook on it and how it got there (`xdp attached, tcx-egress adopted`), or
    /// `not attached`.
    pub attachment: String,
    /// The tenant every frame from this port is charged to; `None`: frames are
    /// attributed by source address (and bound MAC) only.
    pub tenant: Option<String>,
    /// Gateway mode: the tenants of VLANs on this port, by outer VLAN id.
    pub vlans: Vec<VlanView>,
}

/// A VLAN on a port bound to a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanView {
    pub id: u16,
    pub tenant: String,
}

impl InterfaceView {
    /// The view of each of the policy's `interfaces`, with the hooks of `attachments`
    /// on it, in the policy's order.
    pub fn list(
        interfaces: &[warden_policy::Interface],
        attachments: &[AttachmentView],
    ) -> Vec<InterfaceView> {
        interfaces
            .iter()
            .map(|i| {
                let hooks: Vec<String> = attachments
                    .iter()
                    .filter(|a| a.interface == i.name)
                    .map(|a| format!("{} {}", a.hook, a.how))
                    .collect();
                InterfaceView {
                    name: i.name.clone(),
                    mode: i.mode.as_str().to_string(),
                    attachment: if hooks.is_empty() {
                        "not attached".to_string()
                    } else {
                        hooks.join(", ")
                    },
                    tenant: i.tenant.clone(),
                    vlans: i
                        .vlans
                        .iter()
                        .map(|v| VlanView {
                            id: v.id,
                            tenant: v.tenant.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// The detection pipeline's state, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetectionView {
    /// Whether kernel events are being read.
    pub events_read: bool,
    /// Events the programs delivered (into the ring or the attempt log).
    pub events_sent: u64,
    /// Events lost: with the ring full, or written over in the attempt log before the
    /// daemon read them (`warden_events_lost_total`).
    pub events_lost: u64,
    /// Events a tenant's event budget refused (`warden_events_over_budget_total`; not
    /// lost). Absent from a daemon older than this field: 0.
    #[serde(default)]
    pub events_over_budget: u64,
    /// Records that could not be decoded.
    pub event_decode_errors: u64,
    /// Episodes open.
    pub open_episodes: usize,
    /// Connection attempts waiting for their answer.
    pub pending_attempts: usize,
    /// Kernel blocks in force (victims, ports, blackholes, listen ports).
    pub active_blocks: usize,
    /// Tenants throttled.
    pub active_throttles: usize,
    /// Flags opened since start.
    pub flags_opened: u64,
}

/// Fill of one bounded map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapFill {
    pub map: String,
    pub entries: u64,
    pub capacity: u64,
}

/// The review workflow's figures, as `warden status` and `/metrics` show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewStats {
    /// Notifications waiting for delivery (in the outbox).
    pub pending: u64,
    /// Notifications delivered since start.
    pub delivered: u64,
    /// Failed delivery attempts since start.
    pub failures: u64,
    /// Notifications abandoned (in the outbox, all time).
    pub abandoned: u64,
    /// Notifications refused with the outbox full, since start.
    pub dropped: u64,
    /// Events-log lines written since start.
    pub events_written: u64,
    /// Events-log lines lost since start.
    pub events_failed: u64,
    /// Tenants suspended because a flag's deadline passed, since start.
    pub deadline_suspensions: u64,
    /// Deadlines passed without suspension, since start.
    pub deadlines_passed: u64,
    /// Suspensions at a deadline that failed (retried every sweep), since start.
    #[serde(default)]
    pub deadline_suspend_failures: u64,
}

/// A fleet node, as `GET /api/v1/nodes` (a controller) shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub node: String,
    pub version: String,
    /// When its daemon started (unix seconds).
    pub started_at: i64,
    /// Seconds since it last rewrote its registration (every few seconds while it
    /// reaches etcd; a node whose lease lapsed is not listed at all).
    pub heartbeat_age_seconds: i64,
    /// The fleet policy generation it enforces.
    pub applied_generation: u64,
    /// The etcd revision its applied state was read at.
    pub applied_revision: i64,
    /// Fleet generation minus its applied generation.
    pub lag: u64,
    /// Whether its programs are attached.
    pub attached: bool,
    /// Its interfaces, as `name:mode`.
    pub interfaces: Vec<String>,
}

/// A tenant's traffic history, as `GET /api/v1/tenants/{id}/history` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryView {
    pub tenant: String,
    /// The resolution: each point covers the `step_seconds` before its `at`.
    pub step_seconds: i64,
    /// How long points are kept.
    pub keep_seconds: i64,
    /// The most tenants one step keeps (the heaviest).
    pub tenants_per_step: usize,
    /// Points of other tenants left out of full steps since the daemon started.
    pub left_out_since_start: u64,
    /// Since when this daemon records (its first step): a later step without a point
    /// had no traffic; before it, the daemon may not have been running.
    pub recording_since: Option<i64>,
    /// The range asked for (unix seconds, `since <= at < until`).
    pub since: i64,
    pub until: i64,
    /// Steps with traffic or drops, oldest first; a step without a point had none.
    pub points: Vec<HistoryPointView>,
}

/// One step of a tenant's history, as rates over the step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPointView {
    /// The step's end (unix seconds).
    pub at: i64,
    pub out_bps: f64,
    pub in_bps: f64,
    pub out_pps: f64,
    pub in_pps: f64,
    /// Packets dropped per second, both directions, every reason.
    pub dropped_pps: f64,
}

impl HistoryPointView {
    /// The rates of `p`, a step of `step` seconds.
    pub fn of(p: &warden_store::HistoryPoint, step: i64) -> HistoryPointView {
        let s = step.max(1) as f64;
        HistoryPointView {
            at: p.at,
            out_bps: p.out_bytes as f64 * 8.0 / s,
            in_bps: p.in_bytes as f64 * 8.0 / s,
            out_pps: p.out_packets as f64 / s,
            in_pps: p.in_packets as f64 / s,
            dropped_pps: p.dropped_packets as f64 / s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(interface: &str, hook: &str, how: &str) -> AttachmentView {
        AttachmentView {
            interface: interface.into(),
            mode: String::new(),
            hook: hook.into(),
            program: "p".into(),
            how: how.into(),
        }
    }

    #[test]
    fn interface_views_show_each_ports_hooks_tenant_and_vlan_tenants() {
        let policy = warden_policy::parse(
            "interfaces:\n  - {name: wan0, mode: host, tenant: acme}\n  - name: lan0\n    mode: gateway\n    vlans: [{id: 100, tenant: globex}, {id: 200, tenant: acme}]\n  - {name: lan1, mode: gateway}\ntenants:\n  - {id: acme, addresses: [198.18.1.1/32]}\n  - {id: globex, addresses: [198.18.2.1/32]}\n",
            "p.yaml",
        )
        .expect("parses");
        let attachments = [
            attachment("wan0", "xdp", "attached"),
            attachment("lan0", "xdp", "adopted"),
            attachment("wan0", "tcx-egress", "attached"),
        ];
        let views = InterfaceView::list(&policy.interfaces, &attachments);
        let vlan = |id, tenant: &str| VlanView {
            id,
            tenant: tenant.into(),
        };
        assert_eq!(
            views,
            [
                InterfaceView {
                    name: "wan0".into(),
                    mode: "host".into(),
                    attachment: "xdp attached, tcx-egress attached".into(),
                    tenant: Some("acme".into()),
                    vlans: vec![],
                },
                InterfaceView {
                    name: "lan0".into(),
                    mode: "gateway".into(),
                    attachment: "xdp adopted".into(),
                    tenant: None,
                    vlans: vec![vlan(100, "globex"), vlan(200, "acme")],
                },
                InterfaceView {
                    name: "lan1".into(),
                    mode: "gateway".into(),
                    attachment: "not attached".into(),
                    tenant: None,
                    vlans: vec![],
                },
            ]
        );
        let json = serde_json::to_value(&views[1]).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"name": "lan0", "mode": "gateway", "attachment": "xdp adopted",
                "tenant": null, "vlans": [{"id": 100, "tenant": "globex"}, {"id": 200, "tenant": "acme"}]})
        );
    }
}
