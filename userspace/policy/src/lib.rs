//! warden-policy: the policy file, parsed and validated into a [`Policy`], and the
//! vocabulary every layer of Warden names (no aya, no SQLite, no HTTP, no async runtime).
//!
//! The policy file. Parsing never stops at the first problem: [`parse`] reports every
//! error in the file, each at the line and column of the offending key or value, as
//! `warden policy check` prints them. Only a YAML syntax error ends parsing early. The
//! private modules split the work by concern: `tree` builds the YAML node tree from the
//! parser's events, `reader` walks it and records errors, `units` reads the text forms of
//! values, `detectors` holds the detector schema, `document` reads the sections, and
//! `validate` checks rules that span tenants.
//!
//! The vocabulary, for the layers that must agree on it without depending on each other
//! (the dataplane, detection, the store and the daemon):
//! - detection [`Kind`]s and the ladder's [`Action`]s (from the policy's detector schema);
//! - [`traffic`]: directions, protocols and outcomes of first contacts;
//! - [`flag`]: flags, their review states, actions and captured frames;
//! - [`suspension`]: suspensions and the pure logic that keeps them above policy and above
//!   the loss of the state database;
//! - [`tenant`]: a tenant is its id; the kernel's index of it is its [`tenant::TenantSlot`];
//! - [`time`]: unix-second timestamps and their RFC 3339 form;
//! - [`fragments`]: a policy split into the parts fleet mode keeps in etcd, and back;
//! - [`write`]: a policy written back as a document (as applied, or effective), and
//!   [`diff`]: what changes between two policies.

mod detectors;
mod diagnostic;
mod document;
mod fleet_config;
mod ports;
mod reader;
mod tree;
mod units;
mod validate;

pub mod diff;
pub mod flag;
pub mod fragments;
pub mod names;
pub mod suspension;
pub mod tenant;
pub mod time;
pub mod traffic;
pub mod write;

#[cfg(test)]
mod address_tests;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod daemon_tests;
#[cfg(test)]
mod fragments_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use detectors::{
    Action, Detectors, Drops, FloodIn, FloodOut, Kind, Proxy, Response, Review, Scan, Spam,
    DEFAULT_DEADLINE, DEFAULT_THROTTLE_TO,
};
pub use diagnostic::{printable, Diagnostic, Diagnostics, MAX_ERRORS};
pub use fleet_config::{node_name, FleetConfig, FleetTls, DEFAULT_FLEET_PREFIX};

/// Default of `daemon.metrics_top_k`.
pub const DEFAULT_TOP_K: usize = 1_000;
/// Largest `daemon.metrics_top_k` accepted: the size `cargo xtask bench` renders
/// against the 50 ms bar with every tenant exported.
pub const MAX_TOP_K: usize = 10_000;

/// A validated policy: what the daemon enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `daemon`: where the daemon listens and keeps its state.
    pub daemon: DaemonConfig,
    /// `interfaces`: the NICs to attach to, each in a deployment mode.
    pub interfaces: Vec<Interface>,
    /// `defaults`: the settings every tenant starts from.
    pub defaults: TenantSettings,
    /// `tenants`, with `defaults` merged in.
    pub tenants: Vec<Tenant>,
    /// Position of each tenant id in `tenants`, as parsed: [`Policy::tenant`] is called
    /// per tenant on every apply, so a scan would make the apply quadratic.
    by_id: std::collections::HashMap<String, usize>,
}

impl Policy {
    /// A policy of these sections (each already validated, as parts of policies that
    /// parsed): the daemon's start puts the API-applied `defaults` and `tenants` under
    /// the file's `daemon` and `interfaces`.
    pub fn with_sections(
        daemon: DaemonConfig,
        interfaces: Vec<Interface>,
        defaults: TenantSettings,
        tenants: Vec<Tenant>,
    ) -> Policy {
        let by_id = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Policy {
            daemon,
            interfaces,
            defaults,
            tenants,
            by_id,
        }
    }

    /// The tenant with id `id`. Found through the index built at parse time; should
    /// `tenants` have been changed since, a scan finds it all the same.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        match self.by_id.get(id).and_then(|&i| self.tenants.get(i)) {
            Some(t) if t.id == id => Some(t),
            _ => self.tenants.iter().find(|t| t.id == id),
        }
    }
}

/// Tenants changed in a policy: each by the id it is keyed by (a fleet's key), its new
/// entry's text (a one-line flow mapping, as fleet fragments are) or `None` when it left.
pub type TenantChanges<'c> = [(&'c str, Option<&'c str>)];

/// Most addresses and MACs of changed tenants [`Policy::with_tenant_changes`] checks
/// against every other tenant's by a scan; more, and it declines (the whole document is
/// parsed, its checks sorting every address once).
pub const INCREMENTAL_MAX_KEYS: usize = 256;

impl Policy {
    /// This policy with `changes` made to its tenants, parsed and checked as a whole
    /// document with the same `daemon`, `interfaces`, `defaults` and the changed
    /// `tenants` would be: only the changed entries are read, and the checks that span
    /// tenants (unique ids and MACs, disjoint addresses, the tenant limit) run for them
    /// against every other tenant. The tenants stay in the order of their ids.
    ///
    /// `None` when it cannot say: an entry with an error, an overlap or a duplicate (the
    /// caller parses the whole document for its diagnostics), an entry whose id is not
    /// its key or that is not a one-line flow mapping, tenants not in id order, an
    /// interface bound to tenants (its checks look at the tenants), or more than
    /// [`INCREMENTAL_MAX_KEYS`] changed addresses and MACs. The caller then parses the
    /// whole document, which gives the same policy or the diagnostics.
    pub fn with_tenant_changes(&self, changes: &TenantChanges<'_>) -> Option<Policy> {
        let bound = self
            .interfaces
            .iter()
            .any(|i| i.tenant.is_some() || !i.vlans.is_empty());
        if bound {
            return None;
        }
        let sorted = self.tenants.windows(2).all(|w| w[0].id < w[1].id);
        if !sorted {
            return None;
        }
        // Every tenant has an address: more changed tenants than that is a resync's size.
        if changes.iter().filter(|(_, t)| t.is_some()).count() > INCREMENTAL_MAX_KEYS {
            return None;
        }
        let mut changed: BTreeMap<&str, Option<Tenant>> = BTreeMap::new();
        for &(key, text) in changes {
            let tenant = match text {
                None => None,
                Some(text) => {
                    if !text.starts_with('{') || text.contains(['\n', '\r']) {
                        return None;
                    }
                    let t = document::read_tenant_text(text, &self.defaults)?;
                    if t.id != key {
                        return None;
                    }
                    Some(t)
                }
            };
            if changed.insert(key, tenant).is_some() {
                return None;
            }
        }
        let added: Vec<&Tenant> = changed.values().flatten().collect();
        let count: usize = added.iter().map(|t| t.addresses.len() + t.macs.len()).sum();
        if count > INCREMENTAL_MAX_KEYS {
            return None;
        }
        // The others: every tenant kept as it was.
        let keys: std::collections::HashSet<&str> = changes.iter().map(|(k, _)| *k).collect();
        let others = || {
            self.tenants
                .iter()
                .filter(|t| !keys.contains(t.id.as_str()))
        };
        // Disjoint addresses and unique MACs among the changed tenants and against the
        // others (two CIDRs overlap exactly when one contains the other).
        let overlap = |a: &IpNet, b: &IpNet| a.contains(b) || b.contains(a);
        for (i, t) in added.iter().enumerate() {
            for u in &added[i + 1..] {
                if t.addresses
                    .iter()
                    .any(|a| u.addresses.iter().any(|b| overlap(a, b)))
                    || t.macs.iter().any(|m| u.macs.contains(m))
                {
                    return None;
                }
            }
            // Within one tenant too (the whole-document check sees every address).
            for (j, a) in t.addresses.iter().enumerate() {
                if t.addresses[j + 1..].iter().any(|b| overlap(a, b)) {
                    return None;
                }
            }
            for (j, m) in t.macs.iter().enumerate() {
                if t.macs[j + 1..].contains(m) {
                    return None;
                }
            }
        }
        let nets: Vec<&IpNet> = added.iter().flat_map(|t| &t.addresses).collect();
        let macs: Vec<&[u8; 6]> = added.iter().flat_map(|t| &t.macs).collect();
        for other in others() {
            let clash = other
                .addresses
                .iter()
                .any(|a| nets.iter().any(|b| overlap(a, b)))
                || (!macs.is_empty() && other.macs.iter().any(|m| macs.contains(&m)));
            if clash {
                return None;
            }
        }
        // The tenants in id order: the others and the changed ones merged.
        let mut tenants: Vec<Tenant> = Vec::with_capacity(self.tenants.len() + added.len());
        let mut next = changed.into_values().flatten().peekable();
        for t in others() {
            while let Some(n) = next.next_if(|n| n.id < t.id) {
                tenants.push(n);
            }
            tenants.push(t.clone());
        }
        tenants.extend(next);
        if tenants.len() > warden_common::MAX_TENANTS as usize {
            return None;
        }
        Some(Policy::with_sections(
            self.daemon.clone(),
            self.interfaces.clone(),
            self.defaults.clone(),
            tenants,
        ))
    }
}

/// `daemon`: the daemon's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// API and metrics listener (`listen`, default `127.0.0.1:9477`).
    pub listen: SocketAddr,
    /// Directory for the database and other state (`state_dir`, default `/var/lib/warden`).
    pub state_dir: PathBuf,
    /// Where maps and links are pinned (`bpffs`, default `/sys/fs/bpf/warden`).
    pub bpffs: PathBuf,
    /// Token file (`tokens`); without it the API accepts no writes.
    pub tokens: Option<PathBuf>,
    /// Networks a suspended tenant can still reach and be reached from (`management`).
    pub management: Vec<IpNet>,
    /// Where every flag state change is appended as a JSON line (`events_log`, default
    /// `<state_dir>/events.jsonl`).
    pub events_log: Option<PathBuf>,
    /// `open_reads`: the API's GET routes answer without a token. Default: open without a
    /// token file (nobody could read otherwise), closed with one.
    pub open_reads: bool,
    /// `open_metrics`: `GET /metrics` answers without a token. Default as `open_reads`.
    pub open_metrics: bool,
    /// `tls`: serve HTTPS only, with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// At most this many tenants get per-tenant metric series (`metrics_top_k`,
    /// default 1000, 0..=10000); aggregates cover every tenant.
    pub metrics_top_k: usize,
    /// `api_limits`: connection caps and timeouts of the API listener.
    pub api_limits: ApiLimits,
    /// `log_format`: how the daemon writes its log lines to standard error.
    pub log_format: LogFormat,
    /// `fleet`: this node's etcd and its name in the fleet; `None` runs alone.
    pub fleet: Option<FleetConfig>,
}

/// `daemon.log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `text` (default): one human-readable line per event (journald adds the time).
    #[default]
    Text,
    /// `json`: one JSON object per line, for a SIEM or a log shipper.
    Json,
}

/// `daemon.api_limits`: what the API listener allows, so that a flood of connections
/// cannot take the descriptors and the time the operators' own requests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// `max_connections`: API connections open at once, from everyone (default 1024).
    pub max_connections: usize,
    /// `max_connections_per_source`: open at once from one client address, an IPv6
    /// client counted by its /64 (default 64). Loopback and `management` clients are
    /// not limited per address.
    pub max_connections_per_source: usize,
    /// `reserved_connections`: the part of `max_connections` only loopback and
    /// `management` clients may use (default 32), so an operator still gets in when
    /// others have taken the rest.
    pub reserved_connections: usize,
    /// `header_timeout`: a request's header must be complete this long after its first
    /// byte; over HTTPS the TLS handshake must also be done this long after the accept
    /// (default 10s).
    pub header_timeout: std::time::Duration,
    /// `idle_timeout`: a connection with no request under way (none yet, or the last
    /// one answered) is closed after this long; so is one whose client takes no
    /// response byte for this long (default 30s).
    pub idle_timeout: std::time::Duration,
    /// `body_timeout`: a request's body must be complete this long after its header
    /// (default 60s).
    pub body_timeout: std::time::Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 1024,
            max_connections_per_source: 64,
            reserved_connections: 32,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(30),
            body_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// `daemon.tls`: the listener's certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl DaemonConfig {
    /// The events log file: `events_log`, else `events.jsonl` in `state_dir`.
    pub fn events_log_path(&self) -> PathBuf {
        self.events_log
            .clone()
            .unwrap_or_else(|| self.state_dir.join("events.jsonl"))
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9477)),
            state_dir: PathBuf::from("/var/lib/warden"),
            bpffs: PathBuf::from("/sys/fs/bpf/warden"),
            tokens: None,
            management: Vec::new(),
            events_log: None,
            open_reads: true,
            open_metrics: true,
            tls: None,
            metrics_top_k: DEFAULT_TOP_K,
            api_limits: ApiLimits::default(),
            log_format: LogFormat::Text,
            fleet: None,
        }
    }
}

/// One entry of `interfaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel interface name, e.g. `eth0`.
    pub name: String,
    /// How tenants' traffic crosses this interface.
    pub mode: Mode,
    /// Ethertypes passed from tenants though the programs cannot look inside them
    /// (`pass_ethertypes`; host order). Any other frame from a tenant that is not IPv4,
    /// IPv6 or ARP (Ethernet/IPv4) after at most two VLAN tags is dropped as `unparsed`.
    pub pass_ethertypes: Vec<u16>,
    /// `tenant`: the tenant this port belongs to. Every frame from it is that tenant's:
    /// a source address or ARP claim not the tenant's is its `spoof_ip` or `spoof_arp`
    /// drop. `None`: frames are attributed by source address (and bound MAC) only.
    pub tenant: Option<String>,
    /// `vlans` (gateway mode only): tenants of VLANs on this port, by the frame's outer
    /// VLAN id; a listed VLAN's frames are its tenant's, whatever `tenant` says.
    pub vlans: Vec<VlanBinding>,
}

impl Interface {
    /// Whether any frame from this port is charged to a tenant by the port itself.
    pub fn is_bound(&self) -> bool {
        self.tenant.is_some() || !self.vlans.is_empty()
    }
}

/// One entry of `interfaces[].vlans`: frames with outer VLAN id `id` are `tenant`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanBinding {
    /// The VLAN id, 1 to 4094.
    pub id: u16,
    /// The tenant id.
    pub tenant: String,
}

/// Deployment mode of an interface (PRODUCT.md, "Deployment modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Warden runs on the tenant's server: from-tenant traffic leaves through egress.
    Host,
    /// Warden runs in front of tenants' servers: from-tenant traffic arrives on ingress.
    Gateway,
}

impl Mode {
    /// The name used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Host => "host",
            Mode::Gateway => "gateway",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant after `defaults` have been merged in (every field resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Unique id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// The tenant's networks, normalized, disjoint from every other tenant's.
    pub addresses: Vec<IpNet>,
    /// The tenant's MAC addresses (unicast), none shared with another tenant.
    pub macs: Vec<[u8; 6]>,
    /// Settings, `defaults` overridden by the tenant's own keys.
    pub settings: TenantSettings,
}

/// The settings `defaults` gives and a tenant may override.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantSettings {
    /// `bandwidth`: the rate plan; each sub-key overrides on its own.
    pub bandwidth: Bandwidth,
    /// `smtp`: outbound SMTP policy (default block).
    pub smtp: Smtp,
    /// `allow`: destinations exempt from detection. A tenant's list replaces the default one.
    pub allow: Vec<IpNet>,
    /// `detectors`: per kind, thresholds and actions; each field overrides on its own.
    /// Shared: every tenant that does not override a detector holds the defaults' one
    /// (about 1 KiB each, so 100,000 copies would be 100 MiB), and the detection
    /// pipeline holds the same allocation rather than copies.
    pub detectors: Arc<Detectors>,
    /// `notify`: where the tenant's flag notifications go.
    pub notify: Notify,
}

/// `notify`: where flag notifications go (clause 3.1.3.14).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notify {
    /// `webhook`: an `http://` URL that receives a JSON POST per notification; a tenant's
    /// overrides the default's. `None`: the tenant is not notified, so its flags get no
    /// deadline.
    pub webhook: Option<String>,
}

/// `bandwidth`: the tenant's rate plan, policed in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bandwidth {
    /// Bits per second the tenant may send (`egress`); `None` is unlimited.
    pub egress: Option<u64>,
    /// Bits per second the tenant may receive (`ingress`); `None` is unlimited.
    pub ingress: Option<u64>,
    /// Bucket depth in bytes (`burst`); `None` lets the dataplane choose.
    pub burst: Option<u64>,
}

/// `smtp`: what happens to the tenant's outbound SMTP (ports 25, 465, 587).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Smtp {
    /// `block`: no outbound SMTP.
    #[default]
    Block,
    /// `allow`: outbound SMTP without limit.
    Allow,
    /// A rate of new connections, e.g. `10/min`.
    Rate {
        /// New connections per second.
        per_second: f64,
        /// The rate as written, e.g. `10/min`.
        text: String,
    },
}

/// The largest policy accepted, in bytes (file, `PUT /api/v1/policy` body or SIGHUP
/// reload alike). A 100,000-tenant policy with several addresses, a plan and an SMTP
/// setting per tenant is about 25 MB; larger input is refused before it is parsed, so
/// what parsing holds in memory (the YAML tree, some 50 bytes per node) stays bounded.
pub const MAX_POLICY_BYTES: usize = 64 << 20;

/// Asks whether an interface named in the policy can be used on this machine; `Ok` holds
/// the addresses configured on it (none when it is not on this machine), against which a
/// host-mode port binding is checked; `Err` says why not (see [`load_on_host`]).
pub type InterfaceCheck<'a> = &'a dyn Fn(&str) -> Result<Vec<std::net::IpAddr>, String>;

/// Parses and validates policy text. `file_name` only labels the diagnostics; no I/O.
pub fn parse(text: &str, file_name: &str) -> Result<Policy, Diagnostics> {
    within_limit(text.len(), file_name)?;
    document::read(text, file_name, None)
}

/// [`parse`] of raw bytes (a request body): text that is not UTF-8 is one error at the
/// line and column of the first byte that is not.
pub fn parse_bytes(bytes: &[u8], file_name: &str) -> Result<Policy, Diagnostics> {
    parse(utf8(bytes, file_name)?, file_name)
}

/// How long the phases of [`parse_timed`] took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseTimings {
    /// YAML syntax and reading every section into drafts (per-entry checks).
    pub parse: std::time::Duration,
    /// The checks that span entries: unique ids and MACs, disjoint addresses.
    pub validate: std::time::Duration,
}

/// [`parse`], with how long parsing and validation took (for the scale benchmark).
pub fn parse_timed(text: &str, file_name: &str) -> (Result<Policy, Diagnostics>, ParseTimings) {
    let mut timings = ParseTimings::default();
    if let Err(d) = within_limit(text.len(), file_name) {
        return (Err(d), timings);
    }
    let r = document::read_timed(text, file_name, None, &mut timings);
    (r, timings)
}

/// Reads and parses the policy file at `path`. A file that cannot be read is one
/// diagnostic at line 0, column 0, and so is one larger than [`MAX_POLICY_BYTES`] (it is
/// not read past that); text that is not UTF-8 is one at its line and column.
pub fn load(path: &Path) -> Result<Policy, Diagnostics> {
    let file_name = path.display().to_string();
    let bytes = read_bounded(path, &file_name)?;
    parse_bytes(&bytes, &file_name)
}

/// The bytes of the policy file at `path`, as [`load`] reads them (no further than one
/// past [`MAX_POLICY_BYTES`]); an error is one diagnostic at line 0, column 0.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, Diagnostics> {
    read_bounded(path, &path.display().to_string())
}

/// [`load`], also asking `usable` about each interface the file names: a refusal is an
/// error at that interface's name. `warden policy check` and the daemon's start pass the
/// dataplane's check (does the interface exist here, and can the programs attach to it),
/// so a file that passes here does not fail at attach time for a reason known before.
pub fn load_on_host(path: &Path, usable: InterfaceCheck<'_>) -> Result<Policy, Diagnostics> {
    let file_name = path.display().to_string();
    let bytes = read_bounded(path, &file_name)?;
    parse_bytes_on_host(&bytes, &file_name, usable)
}

/// [`parse_bytes`] with [`load_on_host`]'s interface check (`warden policy check -`).
pub fn parse_bytes_on_host(
    bytes: &[u8],
    file_name: &str,
    usable: InterfaceCheck<'_>,
) -> Result<Policy, Diagnostics> {
    let text = utf8(bytes, file_name)?;
    within_limit(text.len(), file_name)?;
    document::read(text, file_name, Some(usable))
}

/// [`parse`], also asking `usable` about each interface (as [`load_on_host`] does): a
/// fleet node's document is assembled in memory from its file and the fleet's sections.
pub fn parse_on_host(
    text: &str,
    file_name: &str,
    usable: InterfaceCheck<'_>,
) -> Result<Policy, Diagnostics> {
    within_limit(text.len(), file_name)?;
    document::read(text, file_name, Some(usable))
}

/// One diagnostic about the whole input, at line 0, column 0.
fn whole_file(file_name: &str, message: &str) -> Diagnostics {
    Diagnostics::new(vec![Diagnostic::new(file_name, 0, 0, message)])
}

fn within_limit(len: usize, file_name: &str) -> Result<(), Diagnostics> {
    if len > MAX_POLICY_BYTES {
        return Err(whole_file(file_name, &too_large(len as u64)));
    }
    Ok(())
}

fn too_large(len: u64) -> String {
    format!(
        "the policy is {len} bytes; at most {MAX_POLICY_BYTES} ({} MiB) are accepted",
        MAX_POLICY_BYTES >> 20
    )
}

/// The file's bytes, read no further than one past [`MAX_POLICY_BYTES`] (a policy path
/// pointing at a device or a huge file is refused, not read whole).
fn read_bounded(path: &Path, file_name: &str) -> Result<Vec<u8>, Diagnostics> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| whole_file(file_name, &e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole_file(file_name, &e.to_string()))?;
    if bytes.len() > MAX_POLICY_BYTES {
        let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(whole_file(
            file_name,
            &too_large(len.max(bytes.len() as u64)),
        ));
    }
    Ok(bytes)
}

/// `bytes` as text, or one diagnostic at the line and column (in characters, as the
/// YAML positions count) of the first byte that is not UTF-8.
fn utf8<'b>(bytes: &'b [u8], file_name: &str) -> Result<&'b str, Diagnostics> {
    let e = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let valid = &bytes[..e.valid_up_to()];
    // Line breaks as YAML counts them: LF, CRLF, or a CR alone.
    let mut line = 1;
    let mut line_start = 0;
    for (i, &b) in valid.iter().enumerate() {
        let breaks = b == b'\n' || (b == b'\r' && valid.get(i + 1) != Some(&b'\n'));
        if breaks {
            line += 1;
            line_start = i + 1;
        }
    }
    // Everything before the bad byte is valid UTF-8.
    let col = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    let bad = &bytes[e.valid_up_to()..];
    let shown: Vec<String> = bad
        .iter()
        .take(e.error_len().unwrap_or(bad.len()).min(4))
        .map(|b| format!("0x{b:02x}"))
        .collect();
    let what = match e.error_len() {
        Some(_) => format!("invalid UTF-8 ({})", shown.join(" ")),
        None => format!(
            "invalid UTF-8 (the file ends inside a character: {})",
            shown.join(" ")
        ),
    };
    Err(Diagnostics::new(vec![Diagnostic::new(
        file_name,
        line,
        col,
        &format!("{what}; a policy file must be UTF-8 text"),
    )]))
}
