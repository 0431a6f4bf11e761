//! Reads the sections of the policy file (`daemon`, `interfaces`, `defaults`, `tenants`)
//! from the YAML tree into the policy types, recording every error on the way.

use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use warden_common::MAX_PASS_ETHERTYPES;

use super::diagnostic::Diagnostics;
use super::reader::{load_yaml, set, Entry, Node, Pos, Reader};
use super::{
    units, validate, ApiLimits, DaemonConfig, Interface, Mode, Policy, Smtp, Tenant, TenantSettings,
};

const TOP_KEYS: &[&str] = &["daemon", "interfaces", "defaults", "tenants"];
const DAEMON_KEYS: &[&str] = &[
    "listen",
    "state_dir",
    "bpffs",
    "tokens",
    "management",
    "events_log",
    "open_reads",
    "open_metrics",
    "tls",
    "metrics_top_k",
    "api_limits",
    "log_format",
    "fleet",
];
const API_LIMITS_KEYS: &[&str] = &[
    "max_connections",
    "max_connections_per_source",
    "reserved_connections",
    "header_timeout",
    "idle_timeout",
    "body_timeout",
];
const TLS_KEYS: &[&str] = &["cert", "key"];
const INTERFACE_KEYS: &[&str] = &["name", "mode", "pass_ethertypes", "tenant", "vlans"];
/// The keys an interface must have.
const INTERFACE_REQUIRED: &[&str] = &["name", "mode"];
const SETTINGS_KEYS: &[&str] = &["bandwidth", "smtp", "allow", "detectors", "notify"];
const TENANT_KEYS: &[&str] = &[
    "id",
    "addresses",
    "macs",
    "bandwidth",
    "smtp",
    "allow",
    "detectors",
    "notify",
];
const NOTIFY_KEYS: &[&str] = &["webhook"];
const BANDWIDTH_KEYS: &[&str] = &["egress", "ingress", "burst"];

/// An interface with the positions the checks point at: its name (duplicates), and its
/// port bindings (`ports`).
pub(super) struct InterfaceDraft {
    pub interface: Interface,
    pub name_pos: Pos,
    /// The `tenant` value's position.
    pub tenant_pos: Option<Pos>,
    /// The `vlans` key's position, and each binding's (`interface.vlans` in order).
    pub vlans_pos: Option<Pos>,
    pub vlan_pos: Vec<super::ports::VlanPos>,
}

/// A tenant as read, with the positions the cross-tenant checks point at. `id` is `None`
/// when it was missing or invalid (already reported).
pub(super) struct TenantDraft {
    pub pos: Pos,
    pub id: Option<(String, Pos)>,
    pub addresses: Vec<(IpNet, Pos)>,
    pub macs: Vec<([u8; 6], Pos)>,
    pub settings: TenantSettings,
}

impl TenantDraft {
    /// How messages name this tenant.
    pub fn label(&self) -> String {
        match &self.id {
            Some((id, _)) => format!("tenant {id}"),
            None => format!("the tenant at line {}", self.pos.line),
        }
    }
}

/// Parses and validates policy text: the policy, or every problem found. `usable`, when
/// given, is asked about each interface (see [`super::load_on_host`]).
pub(super) fn read(
    text: &str,
    file_name: &str,
    usable: Option<super::InterfaceCheck<'_>>,
) -> Result<Policy, Diagnostics> {
    read_timed(text, file_name, usable, &mut super::ParseTimings::default())
}

/// [`read`], noting how long each phase took in `timings`.
pub(super) fn read_timed(
    text: &str,
    file_name: &str,
    usable: Option<super::InterfaceCheck<'_>>,
    timings: &mut super::ParseTimings,
) -> Result<Policy, Diagnostics> {
    let started = std::time::Instant::now();
    let mut r = Reader::new(file_name);
    let documents = match load_yaml(text) {
        Ok(documents) => documents,
        Err((pos, message)) => {
            r.error_at(pos, message);
            return Err(r.finish());
        }
    };
    if let Some(second) = documents.get(1) {
        r.error(second, "a policy file holds a single YAML document");
    }
    // An empty file (or one of comments only) is far more often a truncated copy or the
    // wrong path than a deliberate policy: enforcing nothing must be written down
    // (e.g. `tenants: []`).
    if documents.first().is_none_or(is_empty_document) {
        r.error_at(
            Pos { line: 1, col: 1 },
            "the policy is empty; write at least `tenants: []` to enforce nothing",
        );
        return Err(r.finish());
    }

    let mut daemon = DaemonConfig::default();
    let mut interfaces = Vec::new();
    let mut defaults = TenantSettings::default();
    let mut tenants_node = None;
    if let Some(root) = documents.first() {
        let what = "a mapping with keys daemon, interfaces, defaults, tenants";
        for entry in r.mapping(root, what) {
            match entry.key {
                "daemon" => read_daemon(&mut r, entry.value, &mut daemon),
                "interfaces" => interfaces = read_interfaces(&mut r, entry.value),
                "defaults" => {
                    for setting in r.mapping(entry.value, "a mapping of tenant settings") {
                        if !read_setting(&mut r, &setting, &mut defaults) {
                            r.unknown_key(&setting, "defaults", SETTINGS_KEYS);
                        }
                    }
                }
                // Read after the loop: tenants start from `defaults` wherever it appears.
                "tenants" => tenants_node = Some(entry.value),
                _ => r.unknown_key(&entry, "the policy", TOP_KEYS),
            }
        }
    }
    let tenants = match tenants_node {
        Some(node) => read_tenants(&mut r, node, &defaults),
        None => Vec::new(),
    };

    let validating = std::time::Instant::now();
    timings.parse = validating - started;
    validate::interfaces(&mut r, &interfaces);
    validate::tenants(&mut r, &tenants);
    let fleet_file = daemon.fleet.is_some() && tenants_node.is_none();
    super::ports::validate(&mut r, &interfaces, &tenants, fleet_file);
    if let Some(usable) = usable {
        validate::on_host(&mut r, &interfaces, &tenants, usable);
    }
    timings.validate = validating.elapsed();
    if r.has_errors() {
        return Err(r.finish());
    }
    let tenants: Vec<Tenant> = tenants
        .into_iter()
        .filter_map(|draft| {
            Some(Tenant {
                id: draft.id?.0,
                addresses: draft.addresses.into_iter().map(|(net, _)| net).collect(),
                macs: draft.macs.into_iter().map(|(mac, _)| mac).collect(),
                settings: draft.settings,
            })
        })
        .collect();
    let by_id = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    Ok(Policy {
        daemon,
        interfaces: interfaces.into_iter().map(|d| d.interface).collect(),
        defaults,
        tenants,
        by_id,
    })
}

fn read_daemon(r: &mut Reader, node: &Node<'_>, daemon: &mut DaemonConfig) {
    // `open_reads` and `open_metrics` default to "open" without a token file and to
    // "closed" with one; an explicit `false` without tokens would lock every reader out.
    let mut open: [Option<(bool, &Node<'_>)>; 2] = [None, None];
    for entry in r.mapping(node, "a mapping of daemon settings") {
        let value = entry.value;
        match entry.key {
            "listen" => set(
                &mut daemon.listen,
                r.value(value, "IP:PORT", units::socket_addr),
            ),
            "state_dir" => set(
                &mut daemon.state_dir,
                r.value(value, "a directory", absolute_path),
            ),
            "bpffs" => set(
                &mut daemon.bpffs,
                r.value(value, "a directory on a bpf filesystem", absolute_path),
            ),
            "tokens" => daemon.tokens = r.value(value, "a file path", absolute_path),
            "management" => daemon.management = nets(management(r, value)),
            "events_log" => daemon.events_log = r.value(value, "a file path", absolute_path),
            "open_reads" | "open_metrics" => {
                let slot = usize::from(entry.key == "open_metrics");
                open[slot] = r.value(value, "true or false", yes_no).map(|b| (b, value));
            }
            "tls" => daemon.tls = read_tls(r, value),
            "metrics_top_k" => set(
                &mut daemon.metrics_top_k,
                r.value(value, "a number of tenants", metrics_top_k),
            ),
            "api_limits" => read_api_limits(r, value, &mut daemon.api_limits),
            "log_format" => set(
                &mut daemon.log_format,
                r.value(value, "text or json", log_format),
            ),
            "fleet" => daemon.fleet = super::fleet_config::read_fleet(r, value),
            _ => r.unknown_key(&entry, "daemon", DAEMON_KEYS),
        }
    }
    for (slot, key) in ["open_reads", "open_metrics"].into_iter().enumerate() {
        let value = match open[slot] {
            Some((false, node)) if daemon.tokens.is_none() => {
                r.error(
                    node,
                    format!(
                        "`{key}: false` needs `daemon.tokens`: without a token file no \
                         request could read"
                    ),
                );
                false
            }
            Some((value, _)) => value,
            None => daemon.tokens.is_none(),
        };
        if slot == 0 {
            daemon.open_reads = value;
        } else {
            daemon.open_metrics = value;
        }
    }
}

/// `daemon.tls`: `cert` and `key`, both required absolute paths.
fn read_tls(r: &mut Reader, node: &Node<'_>) -> Option<super::TlsFiles> {
    let entries = r.mapping(node, "a mapping with keys cert, key");
    r.require(node, &entries, "`daemon.tls`", TLS_KEYS);
    let (mut cert, mut key) = (None, None);
    for entry in &entries {
        match entry.key {
            "cert" => cert = r.value(entry.value, "a PEM file path", absolute_path),
            "key" => key = r.value(entry.value, "a PEM file path", absolute_path),
            _ => r.unknown_key(entry, "daemon.tls", TLS_KEYS),
        }
    }
    Some(super::TlsFiles {
        cert: cert?,
        key: key?,
    })
}

/// `daemon.api_limits`: every key optional, each one over its default.
fn read_api_limits(r: &mut Reader, node: &Node<'_>, limits: &mut ApiLimits) {
    let mut reserved_node = None;
    for entry in r.mapping(node, "a mapping of API limits") {
        let value = entry.value;
        match entry.key {
            "max_connections" => set(
                &mut limits.max_connections,
                r.value(value, "a number of connections", units::count),
            ),
            "max_connections_per_source" => set(
                &mut limits.max_connections_per_source,
                r.value(value, "a number of connections", units::count),
            ),
            "reserved_connections" => {
                reserved_node = Some(value);
                set(
                    &mut limits.reserved_connections,
                    r.value(value, "a number of connections", zero_or_count),
                );
            }
            "header_timeout" => set(
                &mut limits.header_timeout,
                r.value(value, "a duration", units::duration),
            ),
            "idle_timeout" => set(
                &mut limits.idle_timeout,
                r.value(value, "a duration", units::duration),
            ),
            "body_timeout" => set(
                &mut limits.body_timeout,
                r.value(value, "a duration", units::duration),
            ),
            _ => r.unknown_key(&entry, "daemon.api_limits", API_LIMITS_KEYS),
        }
    }
    if limits.reserved_connections >= limits.max_connections {
        let message = format!(
            "`reserved_connections` ({}) must be less than `max_connections` ({}): the rest \
             is what other clients may use",
            limits.reserved_connections, limits.max_connections
        );
        match reserved_node {
            Some(n) => r.error(n, message),
            None => r.error(node, message),
        }
    }
}

/// A whole number, zero included.
fn zero_or_count(text: &str) -> Result<usize, String> {
    if text == "0" {
        Ok(0)
    } else {
        units::count(text)
    }
}

/// `true` or `false`, as written (YAML's `yes`/`on` spellings are not guessed at).
fn log_format(text: &str) -> Result<super::LogFormat, String> {
    match text {
        "text" => Ok(super::LogFormat::Text),
        "json" => Ok(super::LogFormat::Json),
        _ => Err(format!("expected text or json, found `{text}`")),
    }
}

fn yes_no(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, found `{text}`")),
    }
}

fn read_interfaces(r: &mut Reader, node: &Node<'_>) -> Vec<InterfaceDraft> {
    let mut drafts = Vec::new();
    for item in r.sequence(node, "a list of interfaces") {
        let entries = r.mapping(item, "an interface mapping with keys name, mode");
        let (mut name, mut mode) = (None, None);
        let mut pass_ethertypes = Vec::new();
        let (mut tenant, mut vlans) = (None, Vec::new());
        let mut vlans_pos = None;
        for entry in &entries {
            match entry.key {
                "name" => {
                    name = r
                        .value(entry.value, "an interface name", interface_name)
                        .map(|n| (n, Pos::of(entry.value)));
                }
                "mode" => mode = r.value(entry.value, "host or gateway", parse_mode),
                "pass_ethertypes" => {
                    let listed = r.list(
                        entry.value,
                        "a list of ethertypes",
                        "an ethertype",
                        parse_ethertype,
                    );
                    for (ether_type, pos) in listed {
                        if pass_ethertypes.contains(&ether_type) {
                            r.error_at(pos, format!("ethertype {ether_type:#06x} is listed twice"));
                        } else if pass_ethertypes.len() == MAX_PASS_ETHERTYPES {
                            r.error_at(
                                pos,
                                format!("at most {MAX_PASS_ETHERTYPES} ethertypes per interface"),
                            );
                        } else {
                            pass_ethertypes.push(ether_type);
                        }
                    }
                }
                "tenant" => {
                    tenant = r
                        .value(entry.value, "a tenant id", tenant_id)
                        .map(|id| (id, Pos::of(entry.value)));
                }
                "vlans" => {
                    vlans = super::ports::read_vlans(r, entry.value);
                    vlans_pos = Some(Pos::of(entry.key_node));
                }
                _ => r.unknown_key(entry, "interface", INTERFACE_KEYS),
            }
        }
        r.require(item, &entries, "interface", INTERFACE_REQUIRED);
        if let (Some((name, name_pos)), Some(mode)) = (name, mode) {
            let (tenant, tenant_pos) = tenant.unzip();
            let (vlans, vlan_pos) = vlans.into_iter().unzip();
            drafts.push(InterfaceDraft {
                interface: Interface {
                    name,
                    mode,
                    pass_ethertypes,
                    tenant,
                    vlans,
                },
                name_pos,
                tenant_pos,
                vlans_pos,
                vlan_pos,
            });
        }
    }
    drafts
}

fn read_tenants(r: &mut Reader, node: &Node<'_>, defaults: &TenantSettings) -> Vec<TenantDraft> {
    let mut items = r.sequence(node, "a list of tenants");
    // Past what the kernel's tenant table holds the policy cannot be applied, so the rest
    // is not read: a draft costs some 300 bytes, a list item as little as 3 of input.
    let max = warden_common::MAX_TENANTS as usize;
    if items.len() > max {
        r.error(
            node,
            format!(
                "{} tenants; a node holds at most {max} (the rest were not checked)",
                items.len()
            ),
        );
        items = &items[..max];
    }
    items
        .iter()
        .map(|item| read_tenant(r, item, defaults))
        .collect()
}

/// One entry of `tenants`, starting from `defaults`.
fn read_tenant(r: &mut Reader, item: &Node<'_>, defaults: &TenantSettings) -> TenantDraft {
    let mut draft = TenantDraft {
        pos: Pos::of(item),
        id: None,
        addresses: Vec::new(),
        macs: Vec::new(),
        settings: defaults.clone(),
    };
    let entries = r.mapping(item, "a tenant mapping");
    for entry in &entries {
        match entry.key {
            "id" => {
                draft.id = r
                    .value(entry.value, "a tenant id", tenant_id)
                    .map(|id| (id, Pos::of(entry.value)));
            }
            "addresses" => draft.addresses = cidrs(r, entry.value),
            "macs" => draft.macs = r.list(entry.value, "a list of MACs", "a MAC", units::mac),
            _ => {
                if !read_setting(r, entry, &mut draft.settings) {
                    r.unknown_key(entry, "tenant", TENANT_KEYS);
                }
            }
        }
    }
    r.require(item, &entries, "tenant", &["id", "addresses"]);
    draft
}

/// Reads one tenant entry given on its own (a fleet fragment: the entry's YAML or JSON
/// text) against `defaults`: the tenant, or `None` when it has an error (the caller parses
/// the whole document for the diagnostics).
pub(super) fn read_tenant_text(text: &str, defaults: &TenantSettings) -> Option<Tenant> {
    let documents = load_yaml(text).ok()?;
    let [item] = documents.as_slice() else {
        return None;
    };
    let mut r = Reader::new("fragment");
    let draft = read_tenant(&mut r, item, defaults);
    if r.has_errors() {
        return None;
    }
    Some(Tenant {
        id: draft.id?.0,
        addresses: draft.addresses.into_iter().map(|(net, _)| net).collect(),
        macs: draft.macs.into_iter().map(|(mac, _)| mac).collect(),
        settings: draft.settings,
    })
}

/// Reads one of the keys `defaults` and tenants share into `settings`, overriding what is
/// there; false if `entry` is not such a key.
fn read_setting(r: &mut Reader, entry: &Entry<'_, '_>, settings: &mut TenantSettings) -> bool {
    let value = entry.value;
    match entry.key {
        "bandwidth" => {
            let bandwidth = &mut settings.bandwidth;
            for sub in r.mapping(value, "a mapping with keys egress, ingress, burst") {
                let rate = "a rate such as 100Mbit, or unlimited";
                match sub.key {
                    "egress" => set(&mut bandwidth.egress, r.value(sub.value, rate, limit)),
                    "ingress" => set(&mut bandwidth.ingress, r.value(sub.value, rate, limit)),
                    "burst" => {
                        let burst = r.value(sub.value, "a size such as 256KiB", units::size);
                        set(&mut bandwidth.burst, burst.map(Some));
                    }
                    _ => r.unknown_key(&sub, "bandwidth", BANDWIDTH_KEYS),
                }
            }
        }
        "smtp" => set(
            &mut settings.smtp,
            r.value(value, "block, allow or a rate such as 10/min", smtp),
        ),
        "allow" => settings.allow = nets(cidrs(r, value)),
        "detectors" => Arc::make_mut(&mut settings.detectors).apply(r, value),
        "notify" => {
            for sub in r.mapping(value, "a mapping with key webhook") {
                match sub.key {
                    "webhook" => set(
                        &mut settings.notify.webhook,
                        r.value(sub.value, "an http:// URL", units::webhook_url)
                            .map(Some),
                    ),
                    _ => r.unknown_key(&sub, "notify", NOTIFY_KEYS),
                }
            }
        }
        _ => return false,
    }
    true
}

fn cidrs(r: &mut Reader, node: &Node<'_>) -> Vec<(IpNet, Pos)> {
    r.list(node, "a list of CIDRs", "a CIDR", units::cidr)
}

/// The widest management prefixes: management names the provider's own hosts, and
/// every address in it is exempt from suspensions, so a prefix wider than these (say
/// `0.0.0.0/0`) would lift every suspension at once.
const MANAGEMENT_MIN_V4: u8 = 8;
const MANAGEMENT_MIN_V6: u8 = 16;

/// `daemon.management`: CIDRs no wider than [`MANAGEMENT_MIN_V4`] / [`MANAGEMENT_MIN_V6`].
fn management(r: &mut Reader, node: &Node<'_>) -> Vec<(IpNet, Pos)> {
    let mut kept = Vec::new();
    for (net, pos) in cidrs(r, node) {
        let min = match net {
            IpNet::V4(_) => MANAGEMENT_MIN_V4,
            IpNet::V6(_) => MANAGEMENT_MIN_V6,
        };
        if net.prefix_len() < min {
            r.error_at(
                pos,
                format!(
                    "management prefix {net} is wider than /{min}: management names the \
                     provider's own hosts, and every address in it is exempt from \
                     suspensions"
                ),
            );
        } else {
            kept.push((net, pos));
        }
    }
    kept
}

fn nets(list: Vec<(IpNet, Pos)>) -> Vec<IpNet> {
    list.into_iter().map(|(net, _)| net).collect()
}

/// A bandwidth limit: a rate, or `unlimited` (so a tenant can lift a default limit).
fn limit(text: &str) -> Result<Option<u64>, String> {
    match text {
        "unlimited" => Ok(None),
        _ => units::rate(text).map(Some),
    }
}

fn smtp(text: &str) -> Result<Smtp, String> {
    match text {
        "block" => Ok(Smtp::Block),
        "allow" => Ok(Smtp::Allow),
        _ if text.contains('/') => Ok(Smtp::Rate {
            per_second: units::per_second(text)?,
            text: text.to_owned(),
        }),
        _ => Err(format!(
            "expected block, allow or a rate of new connections such as 10/min, found `{text}`"
        )),
    }
}

/// Ethertypes known by name in `pass_ethertypes` (the others are written as numbers).
const ETHERTYPE_NAMES: &[(&str, u16)] = &[
    ("lldp", 0x88cc),
    ("lacp", 0x8809),
    ("eapol", 0x888e),
    ("ptp", 0x88f7),
    ("mpls", 0x8847),
    ("mpls_multicast", 0x8848),
    ("pppoe_discovery", 0x8863),
    ("pppoe_session", 0x8864),
    ("macsec", 0x88e5),
    ("fcoe", 0x8906),
];

/// An ethertype an interface may pass unparsed: a name of [`ETHERTYPE_NAMES`] or a
/// number (`0x88cc` or decimal) of an Ethernet II type, other than those the programs
/// parse themselves.
fn parse_ethertype(text: &str) -> Result<u16, String> {
    let value = if let Some((_, v)) = ETHERTYPE_NAMES.iter().find(|(n, _)| *n == text) {
        *v
    } else {
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u16::from_str_radix(hex, 16),
            None => text.parse::<u16>(),
        };
        let names: Vec<&str> = ETHERTYPE_NAMES.iter().map(|(n, _)| *n).collect();
        parsed.map_err(|_| {
            format!(
                "expected an ethertype such as 0x88cc or one of {}, found `{text}`",
                names.join(", ")
            )
        })?
    };
    match value {
        0x0800 | 0x86dd | 0x0806 => Err(format!(
            "{value:#06x} (IPv4, IPv6, ARP) is parsed and enforced, never passed unparsed"
        )),
        0x8100 | 0x88a8 | 0x9100 => Err(format!(
            "{value:#06x} is a VLAN tag: up to two are followed to the frame inside, a third is never passed"
        )),
        v if v < 0x0600 => Err(format!(
            "{value:#06x} is an 802.3 length, not an ethertype: 802.3/LLC frames (STP and the like) are never passed from tenants"
        )),
        v => Ok(v),
    }
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    match text {
        "host" => Ok(Mode::Host),
        "gateway" => Ok(Mode::Gateway),
        _ => Err(format!("unknown mode `{text}`; expected host or gateway")),
    }
}

/// Tenant ids appear in metric labels and API paths, so they stay plain.
pub(super) fn tenant_id(text: &str) -> Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if (1..=64).contains(&text.len()) && text.chars().all(plain) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid tenant id `{text}`; use 1 to 64 characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// The kernel's rules for interface names (IFNAMSIZ, no `/`, `:` or whitespace).
fn interface_name(text: &str) -> Result<String, String> {
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace();
    if text.is_empty() || text.len() > 15 || text == "." || text == ".." || text.contains(bad) {
        Err(format!(
            "invalid interface name `{text}`; at most 15 characters, no `/`, `:` or spaces"
        ))
    } else {
        Ok(text.to_owned())
    }
}

/// The daemon runs from systemd with no meaningful working directory.
fn metrics_top_k(text: &str) -> Result<usize, String> {
    use crate::MAX_TOP_K;
    match text.parse::<usize>() {
        Ok(k) if k <= MAX_TOP_K => Ok(k),
        _ => Err(format!(
            "`{text}` must be a whole number of tenants from 0 to {MAX_TOP_K} (0: aggregates only)"
        )),
    }
}

pub(super) fn absolute_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("`{text}` must be an absolute path"))
    }
}

/// A document that holds nothing: no node at all, or a plain null scalar (`---` alone).
fn is_empty_document(root: &Node<'_>) -> bool {
    use saphyr_parser::ScalarStyle;
    match &root.data {
        super::tree::Data::BadValue => true,
        super::tree::Data::Scalar(text, ScalarStyle::Plain, None) => {
            matches!(text.as_ref(), "" | "~" | "null")
        }
        _ => false,
    }
}
