//! Detector settings: per kind, the action ladder and the thresholds, with their defaults,
//! and how a `detectors:` mapping overrides them field by field.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::reader::{set, Node, Reader};
use super::units;

/// What Warden does when a detector fires, from mildest to harshest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Count and record only.
    Observe,
    /// Record a flag with evidence for the security team.
    Flag,
    /// Police the offending traffic down.
    Throttle,
    /// Drop the offending traffic (for `flood_in`: blackhole the victim).
    Block,
    /// Suspend the tenant; only a person lifts a suspension.
    Suspend,
}

impl Action {
    /// Every action, mildest first.
    pub const ALL: [Action; 5] = [
        Action::Observe,
        Action::Flag,
        Action::Throttle,
        Action::Block,
        Action::Suspend,
    ];

    /// The name used in the policy file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Observe => "observe",
            Action::Flag => "flag",
            Action::Throttle => "throttle",
            Action::Block => "block",
            Action::Suspend => "suspend",
        }
    }

    /// The next harsher action, or `self` if there is none.
    pub fn escalated(self) -> Action {
        Action::ALL
            .into_iter()
            .find(|a| *a > self)
            .unwrap_or(Action::Suspend)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::names::parse(&Action::ALL, Action::as_str, "action", text)
    }
}

/// A detection kind: the `kind` label of metrics and the `kind` field of flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Scanning (TRW-style test on connection outcomes, distinct targets).
    Scan,
    /// Outbound floods at a victim.
    FloodOut,
    /// Inbound floods at the tenant.
    FloodIn,
    /// Fan-out to many mail servers.
    Spam,
    /// Relaying: many inbound clients and outbound destinations with correlated bytes.
    Proxy,
    /// Packets with a source IP the tenant does not own.
    SpoofIp,
    /// ARP or IPv6 ND claims for addresses the tenant does not own.
    SpoofArp,
    /// Frames with a source MAC the tenant does not own.
    SpoofMac,
    /// Traffic over the tenant's rate plan.
    Bandwidth,
}

impl Kind {
    /// Every kind, in the order of PRODUCT.md.
    pub const ALL: [Kind; 9] = [
        Kind::Scan,
        Kind::FloodOut,
        Kind::FloodIn,
        Kind::Spam,
        Kind::Proxy,
        Kind::SpoofIp,
        Kind::SpoofArp,
        Kind::SpoofMac,
        Kind::Bandwidth,
    ];

    /// The name used in the policy file, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Scan => "scan",
            Kind::FloodOut => "flood_out",
            Kind::FloodIn => "flood_in",
            Kind::Spam => "spam",
            Kind::Proxy => "proxy",
            Kind::SpoofIp => "spoof_ip",
            Kind::SpoofArp => "spoof_arp",
            Kind::SpoofMac => "spoof_mac",
            Kind::Bandwidth => "bandwidth",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::names::parse(&Kind::ALL, Kind::as_str, "detector kind", text)
    }
}

/// Default of every detector's `throttle_to`: 10 Mbit/s.
pub const DEFAULT_THROTTLE_TO: u64 = 10_000_000;

/// The response part every detector shares: what to do and how it escalates and expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The first action when the detector fires.
    pub action: Action,
    /// How long a temporary action (throttle, block) lasts after the behaviour was last
    /// seen.
    pub expire_after: Duration,
    /// How long a block lasts after the behaviour was last seen: `expire_after`, except for
    /// `flood_in`, whose block is a blackhole that lasts `blackhole_for`.
    pub block_for: Duration,
    /// The reduced plan of a throttle, in bits per second per direction (never above the
    /// tenant's own plan).
    pub throttle_to: u64,
    /// Repeats within `escalation_window` that escalate the action one step.
    pub escalate_after: u32,
    /// The window in which repeats count towards escalation.
    pub escalation_window: Duration,
    /// The harshest action escalation may reach.
    pub ceiling: Action,
}

/// Default of every detector's `deadline`: 24 hours.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(86_400);

/// The review part every detector shares (clause 3.1.3.14): how long a notified tenant has
/// to answer a flag, and what happens when it does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Review {
    /// From the notification's delivery to the deadline.
    pub deadline: Duration,
    /// Whether an unanswered notified flag suspends the tenant at its deadline.
    pub suspend_on_deadline: bool,
}

/// A typed, writable field of a detector, as the reader fills it.
enum Slot<'a> {
    Action(&'a mut Action),
    Ratio(&'a mut f64),
    Share(&'a mut f64),
    U32(&'a mut u32),
    /// A rate of events such as `1/s` or `6/min`, or 0 to turn the setting off.
    PerSecondOrOff(&'a mut f64),
    U64(&'a mut u64),
    Rate(&'a mut u64),
    Duration(&'a mut Duration),
    Bool(&'a mut bool),
}

impl Slot<'_> {
    /// Reads `node` into the field; a rejected value (reported) leaves the field as it was.
    fn read(self, r: &mut Reader, node: &Node<'_>) {
        match self {
            Slot::Action(field) => set(field, r.value(node, "an action", |t| t.parse())),
            Slot::Ratio(field) => set(
                field,
                r.value(node, "a number between 0 and 1", units::ratio),
            ),
            Slot::Share(field) => set(field, r.value(node, "a number from 0 to 1", units::share)),
            Slot::U32(field) => set(field, r.value(node, "a whole number", units::count)),
            Slot::PerSecondOrOff(field) => set(
                field,
                r.value(
                    node,
                    "a rate such as 1/s or 6/min (0: off)",
                    units::per_second_or_off,
                ),
            ),
            Slot::U64(field) => set(field, r.value(node, "a whole number", units::count)),
            Slot::Rate(field) => set(field, r.value(node, "a rate such as 1Gbit", units::rate)),
            Slot::Duration(field) => set(
                field,
                r.value(node, "a duration such as 30s", units::duration),
            ),
            Slot::Bool(field) => set(field, r.value(node, "true or false", units::boolean)),
        }
    }
}

/// The text of a detector field, by the [`Slot`] kind the reader reads it as: what
/// `detector!`'s `fields` writes, and what parses back to the same value.
#[allow(non_snake_case)]
mod field_text {
    use crate::write::{duration_text, rate_text};

    pub(super) fn Action(a: &super::Action) -> String {
        a.as_str().to_owned()
    }
    pub(super) fn Ratio(v: &f64) -> String {
        // `{}` of an f64 is the shortest text that reads back as the same number.
        format!("{v}")
    }
    pub(super) fn Share(v: &f64) -> String {
        format!("{v}")
    }
    pub(super) fn U32(v: &u32) -> String {
        v.to_string()
    }
    pub(super) fn PerSecondOrOff(v: &f64) -> String {
        crate::write::per_second_text(*v)
    }
    pub(super) fn U64(v: &u64) -> String {
        v.to_string()
    }
    pub(super) fn Rate(v: &u64) -> String {
        rate_text(*v)
    }
    pub(super) fn Duration(v: &std::time::Duration) -> String {
        duration_text(*v)
    }
    pub(super) fn Bool(v: &bool) -> String {
        v.to_string()
    }
}

/// Defines one detector's settings struct: the shared response fields plus the listed
/// thresholds, their defaults, and the field table the reader walks.
macro_rules! detector {
    (
        $(#[$doc:meta])*
        $name:ident, action = $action:expr;
        $( $(#[$field_doc:meta])* $field:ident: $ty:ty = $default:expr, $slot:ident; )*
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            /// The first action when the detector fires (`action`).
            pub action: Action,
            $( $(#[$field_doc])* pub $field: $ty, )*
            /// How long a temporary action lasts (`expire_after`, default 10m).
            pub expire_after: Duration,
            /// The plan a throttle reduces the tenant to, per direction (`throttle_to`,
            /// default 10Mbit; the tenant's own plan when that is lower).
            pub throttle_to: u64,
            /// Repeats within `escalation_window` that escalate one step (`escalate_after`, default 3).
            pub escalate_after: u32,
            /// Window for counting repeats (`escalation_window`, default 1h).
            pub escalation_window: Duration,
            /// The harshest action escalation may reach (`ceiling`, default block).
            pub ceiling: Action,
            /// How long a notified tenant has to answer a flag (`deadline`, default 24h),
            /// counted from the notification's delivery.
            pub deadline: Duration,
            /// Whether a notified flag still unanswered at its deadline suspends the
            /// tenant (`suspend_on_deadline`, default false).
            pub suspend_on_deadline: bool,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    action: $action,
                    $( $field: $default, )*
                    expire_after: Duration::from_secs(600),
                    throttle_to: DEFAULT_THROTTLE_TO,
                    escalate_after: 3,
                    escalation_window: Duration::from_secs(3_600),
                    ceiling: Action::Block,
                    deadline: DEFAULT_DEADLINE,
                    suspend_on_deadline: false,
                }
            }
        }

        impl $name {
            /// The shared response fields.
            pub fn response(&self) -> Response {
                Response {
                    action: self.action,
                    expire_after: self.expire_after,
                    block_for: self.expire_after,
                    throttle_to: self.throttle_to,
                    escalate_after: self.escalate_after,
                    escalation_window: self.escalation_window,
                    ceiling: self.ceiling,
                }
            }

            /// The review fields.
            pub fn review(&self) -> Review {
                Review {
                    deadline: self.deadline,
                    suspend_on_deadline: self.suspend_on_deadline,
                }
            }

            /// Every field as the policy file writes it (see `crate::write`), in the
            /// order the reader knows them.
            pub fn fields(&self) -> Vec<(&'static str, String)> {
                vec![
                    ("action", field_text::Action(&self.action)),
                    $( (stringify!($field), field_text::$slot(&self.$field)), )*
                    ("expire_after", field_text::Duration(&self.expire_after)),
                    ("throttle_to", field_text::Rate(&self.throttle_to)),
                    ("escalate_after", field_text::U32(&self.escalate_after)),
                    ("escalation_window", field_text::Duration(&self.escalation_window)),
                    ("ceiling", field_text::Action(&self.ceiling)),
                    ("deadline", field_text::Duration(&self.deadline)),
                    ("suspend_on_deadline", field_text::Bool(&self.suspend_on_deadline)),
                ]
            }

            fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
                vec![
                    ("action", Slot::Action(&mut self.action)),
                    $( (stringify!($field), Slot::$slot(&mut self.$field)), )*
                    ("expire_after", Slot::Duration(&mut self.expire_after)),
                    ("throttle_to", Slot::Rate(&mut self.throttle_to)),
                    ("escalate_after", Slot::U32(&mut self.escalate_after)),
                    ("escalation_window", Slot::Duration(&mut self.escalation_window)),
                    ("ceiling", Slot::Action(&mut self.ceiling)),
                    ("deadline", Slot::Duration(&mut self.deadline)),
                    ("suspend_on_deadline", Slot::Bool(&mut self.suspend_on_deadline)),
                ]
            }
        }
    };
}

detector! {
    /// `scan`: a sequential hypothesis test on connection outcomes (threshold random walk)
    /// plus a count of distinct targets.
    Scan, action = Action::Flag;
    /// Tolerated probability of flagging a benign host (`false_positive_rate`, default 0.01).
    false_positive_rate: f64 = 0.01, Ratio;
    /// Wanted probability of catching a scanner (`detection_rate`, default 0.99).
    detection_rate: f64 = 0.99, Ratio;
    /// Probability a benign host's connection attempt succeeds (`success_prob_benign`, default 0.8).
    success_prob_benign: f64 = 0.8, Ratio;
    /// Probability a scanner's connection attempt succeeds (`success_prob_scanner`, default 0.2).
    success_prob_scanner: f64 = 0.2, Ratio;
    /// Distinct targets per `window` that fire regardless of the test (`distinct_targets`, default 100).
    distinct_targets: u32 = 100, U32;
    /// Failed destinations (a host counted at most once a second) a port class needs
    /// within `window` before the sequential test may flag (`min_failed_targets`,
    /// default 10).
    min_failed_targets: u32 = 10, U32;
    /// Window of the sequential test and of `distinct_targets` (`window`, default 60s).
    window: Duration = Duration::from_secs(60), Duration;
    /// While a scan is blocked, the tenant's new outbound first contacts allowed, per
    /// second, in the kernel (`contain_rate`, default `1/s`; 0: no containment).
    contain_rate: f64 = 1.0, PerSecondOrOff;
}

detector! {
    /// `flood_out`: floods sent by the tenant at one victim.
    FloodOut, action = Action::Block;
    /// Packets per second at one victim (`pps`, default 20000).
    pps: u64 = 20_000, U64;
    /// SYNs per second at one victim (`syn_pps`, default 2000).
    syn_pps: u64 = 2_000, U64;
    /// Measurement window (`window`, default 1s).
    window: Duration = Duration::from_secs(1), Duration;
    /// While a flood is blocked, the tenant's new outbound first contacts allowed, per
    /// second, so victims that rotate are held too (`contain_rate`, default `1/s`; 0: no
    /// containment).
    contain_rate: f64 = 1.0, PerSecondOrOff;
}

detector! {
    /// `flood_in`: floods at the tenant; `block` blackholes the victim address.
    FloodIn, action = Action::Block;
    /// Packets per second at the tenant (`pps`, default 100000).
    pps: u64 = 100_000, U64;
    /// Bits per second at the tenant (`bps`, default 1Gbit).
    bps: u64 = 1_000_000_000, Rate;
    /// How long a blackhole lasts (`blackhole_for`, default 5m).
    blackhole_for: Duration = Duration::from_secs(300), Duration;
}

detector! {
    /// `spam`: fan-out to many mail servers.
    Spam, action = Action::Flag;
    /// Distinct mail servers per `window` (`distinct_servers`, default 20).
    distinct_servers: u32 = 20, U32;
    /// SMTP connections per `window` (`connections`, default 100).
    connections: u32 = 100, U32;
    /// Share of failed SMTP connections (`failure_ratio`, default 0.5).
    failure_ratio: f64 = 0.5, Ratio;
    /// Measurement window (`window`, default 10m).
    window: Duration = Duration::from_secs(600), Duration;
}

detector! {
    /// `proxy`: relaying, many inbound clients and outbound destinations with correlated bytes.
    Proxy, action = Action::Flag;
    /// Distinct inbound clients per `window` (`inbound_clients`, default 10).
    inbound_clients: u32 = 10, U32;
    /// Distinct outbound destinations per `window` (`outbound_destinations`, default 15).
    outbound_destinations: u32 = 15, U32;
    /// Correlation of inbound and outbound bytes (`correlation`, default 0.8).
    correlation: f64 = 0.8, Ratio;
    /// Measurement window (`window`, default 60s).
    window: Duration = Duration::from_secs(60), Duration;
}

detector! {
    /// `spoof_ip`, `spoof_arp`, `spoof_mac`, `bandwidth`: the kernel already drops the
    /// traffic; these fire on how much was dropped.
    Drops, action = Action::Flag;
    /// Drops per `window` at which it fires (`drops`, default 100; 3 for `spoof_arp` and
    /// `spoof_mac`).
    drops: u32 = 100, U32;
    /// Share of the tenant's packets (both ways) dropped within `window` (`drop_ratio`;
    /// default 0.25 for `bandwidth`: TCP at its plan loses a few percent to the policer as
    /// it probes, a sender ignoring the plan loses all it offers above it; 0 for the
    /// spoofing kinds).
    drop_ratio: f64 = 0.0, Share;
    /// Measurement window (`window`, default 60s).
    window: Duration = Duration::from_secs(60), Duration;
}

/// Settings of every detector kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Detectors {
    /// `scan`.
    pub scan: Scan,
    /// `flood_out`.
    pub flood_out: FloodOut,
    /// `flood_in`.
    pub flood_in: FloodIn,
    /// `spam`.
    pub spam: Spam,
    /// `proxy`.
    pub proxy: Proxy,
    /// `spoof_ip`.
    pub spoof_ip: Drops,
    /// `spoof_arp`.
    pub spoof_arp: Drops,
    /// `spoof_mac`.
    pub spoof_mac: Drops,
    /// `bandwidth`.
    pub bandwidth: Drops,
}

/// `spoof_arp`'s and `spoof_mac`'s default `drops`: a few forged claims or frames are
/// already the attack (ARP poisoning needs one reply every few seconds).
pub const L2_SPOOF_DROPS: u32 = 3;

/// `bandwidth`'s default `drop_ratio`.
pub const BANDWIDTH_DROP_RATIO: f64 = 0.25;

impl Default for Detectors {
    fn default() -> Self {
        Detectors {
            scan: Scan::default(),
            flood_out: FloodOut::default(),
            flood_in: FloodIn::default(),
            spam: Spam::default(),
            proxy: Proxy::default(),
            spoof_ip: Drops::default(),
            spoof_arp: Drops {
                drops: L2_SPOOF_DROPS,
                ..Drops::default()
            },
            spoof_mac: Drops {
                drops: L2_SPOOF_DROPS,
                ..Drops::default()
            },
            bandwidth: Drops {
                drop_ratio: BANDWIDTH_DROP_RATIO,
                ..Drops::default()
            },
        }
    }
}

impl Detectors {
    /// Each kind's settings as the policy file writes them (see `crate::write`).
    pub fn fields(&self) -> Vec<(Kind, Vec<(&'static str, String)>)> {
        vec![
            (Kind::Scan, self.scan.fields()),
            (Kind::FloodOut, self.flood_out.fields()),
            (Kind::FloodIn, self.flood_in.fields()),
            (Kind::Spam, self.spam.fields()),
            (Kind::Proxy, self.proxy.fields()),
            (Kind::SpoofIp, self.spoof_ip.fields()),
            (Kind::SpoofArp, self.spoof_arp.fields()),
            (Kind::SpoofMac, self.spoof_mac.fields()),
            (Kind::Bandwidth, self.bandwidth.fields()),
        ]
    }

    /// The shared response fields of `kind` (for `flood_in`, `block_for` is its
    /// `blackhole_for`).
    pub fn response(&self, kind: Kind) -> Response {
        match kind {
            Kind::Scan => self.scan.response(),
            Kind::FloodOut => self.flood_out.response(),
            Kind::FloodIn => Response {
                block_for: self.flood_in.blackhole_for,
                ..self.flood_in.response()
            },
            Kind::Spam => self.spam.response(),
            Kind::Proxy => self.proxy.response(),
            Kind::SpoofIp => self.spoof_ip.response(),
            Kind::SpoofArp => self.spoof_arp.response(),
            Kind::SpoofMac => self.spoof_mac.response(),
            Kind::Bandwidth => self.bandwidth.response(),
        }
    }

    /// The review fields of `kind`.
    pub fn review(&self, kind: Kind) -> Review {
        match kind {
            Kind::Scan => self.scan.review(),
            Kind::FloodOut => self.flood_out.review(),
            Kind::FloodIn => self.flood_in.review(),
            Kind::Spam => self.spam.review(),
            Kind::Proxy => self.proxy.review(),
            Kind::SpoofIp => self.spoof_ip.review(),
            Kind::SpoofArp => self.spoof_arp.review(),
            Kind::SpoofMac => self.spoof_mac.review(),
            Kind::Bandwidth => self.bandwidth.review(),
        }
    }

    /// Overrides, field by field, what a `detectors:` mapping sets.
    pub(super) fn apply(&mut self, r: &mut Reader, node: &Node<'_>) {
        for entry in r.mapping(node, "a mapping from detector kind to settings") {
            let kind = match entry.key.parse::<Kind>() {
                Ok(kind) => kind,
                Err(message) => {
                    r.error(entry.key_node, message);
                    continue;
                }
            };
            let mut fields = match kind {
                Kind::Scan => self.scan.slots(),
                Kind::FloodOut => self.flood_out.slots(),
                Kind::FloodIn => self.flood_in.slots(),
                Kind::Spam => self.spam.slots(),
                Kind::Proxy => self.proxy.slots(),
                Kind::SpoofIp => self.spoof_ip.slots(),
                Kind::SpoofArp => self.spoof_arp.slots(),
                Kind::SpoofMac => self.spoof_mac.slots(),
                Kind::Bandwidth => self.bandwidth.slots(),
            };
            let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
            let context = format!("detector `{kind}`");
            let mut set = HashMap::new();
            for field in r.mapping(entry.value, &format!("a mapping of {context} settings")) {
                match fields.iter().position(|(name, _)| *name == field.key) {
                    Some(i) => {
                        let (name, slot) = fields.swap_remove(i);
                        slot.read(r, field.value);
                        set.insert(name, field.value);
                    }
                    None => r.unknown_key(&field, &context, &names),
                }
            }
            self.check(r, kind, &set);
        }
    }

    /// Cross-field rules, reported at a field this mapping set (inherited values were checked
    /// where they were set).
    fn check(&self, r: &mut Reader, kind: Kind, set: &HashMap<&str, &Node<'_>>) {
        let mut rule = |fields: [&str; 2], ok: bool, message: String| {
            if ok {
                return;
            }
            if let Some(node) = fields.iter().find_map(|f| set.get(f)) {
                r.error(node, message);
            }
        };
        let response = self.response(kind);
        rule(
            ["action", "ceiling"],
            response.action <= response.ceiling,
            format!(
                "action {} is above the ceiling {} of detector `{kind}`; raise `ceiling`",
                response.action, response.ceiling
            ),
        );
        if kind == Kind::Scan {
            let scan = &self.scan;
            rule(
                ["success_prob_scanner", "success_prob_benign"],
                scan.success_prob_scanner < scan.success_prob_benign,
                format!(
                    "success_prob_scanner ({}) must be below success_prob_benign ({})",
                    scan.success_prob_scanner, scan.success_prob_benign
                ),
            );
            rule(
                ["false_positive_rate", "detection_rate"],
                scan.false_positive_rate < scan.detection_rate,
                format!(
                    "false_positive_rate ({}) must be below detection_rate ({})",
                    scan.false_positive_rate, scan.detection_rate
                ),
            );
        }
    }
}
