//! A validated [`Policy`] written back as a policy document: what `GET /api/v1/policy`
//! serves and `warden policy show` prints. The text parses back (with [`crate::parse`])
//! to a policy equal to the one written, in either [`Form`]:
//!
//! - [`Form::AsApplied`]: the shortest document that does so. `daemon` and `defaults`
//!   hold only what differs from the built-in defaults, each tenant only what differs
//!   from `defaults`, field by field as the reader overrides them; so a policy written
//!   by hand comes back close to how it was written (comments and spelling of units
//!   aside).
//! - [`Form::Effective`]: every setting resolved, `daemon`'s and each tenant's with
//!   `defaults` merged in: what the dataplane and the detectors enforce.
//!
//! Values are written in the units the file takes (`100Mbit`, `256KiB`, `5m`), as the
//! largest unit that holds the value exactly.

use std::time::Duration;

use crate::{
    ApiLimits, Bandwidth, DaemonConfig, Interface, LogFormat, Policy, Smtp, Tenant, TenantSettings,
};

/// Which document [`to_yaml`] and [`to_tree`] write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Only what differs from the defaults (see the module documentation).
    AsApplied,
    /// Every setting resolved, for every tenant.
    Effective,
}

/// A policy document as a tree of text: mappings keep their keys' order, every value is
/// the text the policy file takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// A value.
    Scalar(String),
    /// A sequence.
    List(Vec<Tree>),
    /// A mapping, in the order the keys are written.
    Map(Vec<(String, Tree)>),
}

impl Tree {
    fn text(t: impl Into<String>) -> Tree {
        Tree::Scalar(t.into())
    }

    fn texts<T: ToString>(items: &[T]) -> Tree {
        Tree::List(items.iter().map(|i| Tree::Scalar(i.to_string())).collect())
    }

    /// The tree as JSON: scalars as strings, mappings as objects.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Tree::Scalar(s) => Value::String(s.clone()),
            Tree::List(items) => Value::Array(items.iter().map(Tree::to_json).collect()),
            Tree::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// `policy` as YAML text in `form`; [`crate::parse`] reads it back to an equal policy.
pub fn to_yaml(policy: &Policy, form: Form) -> String {
    tree_yaml(&to_tree(policy, form))
}

/// A document [`Tree`] (a mapping) as YAML text.
pub fn tree_yaml(tree: &Tree) -> String {
    let mut out = String::new();
    if let Tree::Map(entries) = tree {
        write_map(&mut out, entries, 0, false);
    }
    out
}

/// `policy` as a [`Tree`] in `form`.
pub fn to_tree(policy: &Policy, form: Form) -> Tree {
    let effective = form == Form::Effective;
    let mut doc = Vec::new();
    let daemon = daemon_tree(&policy.daemon, effective);
    if effective || !daemon.is_empty() {
        doc.push(("daemon".to_owned(), Tree::Map(daemon)));
    }
    // No interfaces is the same as none listed: a fleet's policy has none of its own.
    if effective || !policy.interfaces.is_empty() {
        let interfaces = policy.interfaces.iter().map(interface_tree).collect();
        doc.push(("interfaces".to_owned(), Tree::List(interfaces)));
    }
    let base = TenantSettings::default();
    let defaults = settings_tree(&policy.defaults, (!effective).then_some(&base));
    if effective || !defaults.is_empty() {
        doc.push(("defaults".to_owned(), Tree::Map(defaults)));
    }
    let over = (!effective).then_some(&policy.defaults);
    let tenants = policy
        .tenants
        .iter()
        .map(|t| Tree::Map(tenant_tree(t, over)))
        .collect();
    doc.push(("tenants".to_owned(), Tree::List(tenants)));
    Tree::Map(doc)
}

/// One tenant: id, addresses, MACs, then its settings (only those differing from `over`
/// when given).
pub fn tenant_tree(tenant: &Tenant, over: Option<&TenantSettings>) -> Vec<(String, Tree)> {
    let mut t = vec![
        ("id".to_owned(), Tree::text(&tenant.id)),
        ("addresses".to_owned(), Tree::texts(&tenant.addresses)),
    ];
    if !tenant.macs.is_empty() {
        let macs: Vec<String> = tenant.macs.iter().map(crate::units::format_mac).collect();
        t.push(("macs".to_owned(), Tree::texts(&macs)));
    }
    t.extend(settings_tree(&tenant.settings, over));
    t
}

fn daemon_tree(d: &DaemonConfig, effective: bool) -> Vec<(String, Tree)> {
    let base = DaemonConfig::default();
    let mut m = Entries::new(effective);
    m.put("listen", d.listen.to_string(), d.listen != base.listen);
    m.put(
        "state_dir",
        d.state_dir.display().to_string(),
        d.state_dir != base.state_dir,
    );
    m.put(
        "bpffs",
        d.bpffs.display().to_string(),
        d.bpffs != base.bpffs,
    );
    if let Some(tokens) = &d.tokens {
        m.always("tokens", Tree::text(tokens.display().to_string()));
    }
    m.tree(
        "management",
        Tree::texts(&d.management),
        !d.management.is_empty(),
    );
    if let Some(log) = &d.events_log {
        m.always("events_log", Tree::text(log.display().to_string()));
    }
    // Without a token file both default to open; with one, to closed.
    let open_default = d.tokens.is_none();
    m.put(
        "open_reads",
        d.open_reads.to_string(),
        d.open_reads != open_default,
    );
    m.put(
        "open_metrics",
        d.open_metrics.to_string(),
        d.open_metrics != open_default,
    );
    if let Some(tls) = &d.tls {
        let files = vec![
            (
                "cert".to_owned(),
                Tree::text(tls.cert.display().to_string()),
            ),
            ("key".to_owned(), Tree::text(tls.key.display().to_string())),
        ];
        m.always("tls", Tree::Map(files));
    }
    m.put(
        "metrics_top_k",
        d.metrics_top_k.to_string(),
        d.metrics_top_k != base.metrics_top_k,
    );
    let limits = api_limits_tree(&d.api_limits, effective);
    m.tree("api_limits", Tree::Map(limits.clone()), !limits.is_empty());
    let format = match d.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    m.put("log_format", format, d.log_format != base.log_format);
    if let Some(fleet) = &d.fleet {
        let mut f = vec![
            ("endpoints".to_owned(), Tree::texts(&fleet.endpoints)),
            ("prefix".to_owned(), Tree::text(&fleet.prefix)),
            ("node".to_owned(), Tree::text(&fleet.node)),
        ];
        if let Some(tls) = &fleet.tls {
            let files = [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)]
                .into_iter()
                .map(|(k, p)| (k.to_owned(), Tree::text(p.display().to_string())))
                .collect();
            f.push(("tls".to_owned(), Tree::Map(files)));
        }
        m.always("fleet", Tree::Map(f));
    }
    m.0
}

fn api_limits_tree(l: &ApiLimits, effective: bool) -> Vec<(String, Tree)> {
    let base = ApiLimits::default();
    let mut m = Entries::new(effective);
    let counts = [
        ("max_connections", l.max_connections, base.max_connections),
        (
            "max_connections_per_source",
            l.max_connections_per_source,
            base.max_connections_per_source,
        ),
        (
            "reserved_connections",
            l.reserved_connections,
            base.reserved_connections,
        ),
    ];
    for (key, v, b) in counts {
        m.put(key, v.to_string(), v != b);
    }
    let times = [
        ("header_timeout", l.header_timeout, base.header_timeout),
        ("idle_timeout", l.idle_timeout, base.idle_timeout),
        ("body_timeout", l.body_timeout, base.body_timeout),
    ];
    for (key, v, b) in times {
        m.put(key, duration_text(v), v != b);
    }
    m.0
}

fn interface_tree(i: &Interface) -> Tree {
    let mut m = vec![
        ("name".to_owned(), Tree::text(&i.name)),
        ("mode".to_owned(), Tree::text(i.mode.as_str())),
    ];
    if !i.pass_ethertypes.is_empty() {
        let types: Vec<String> = i
            .pass_ethertypes
            .iter()
            .map(|t| format!("{t:#06x}"))
            .collect();
        m.push(("pass_ethertypes".to_owned(), Tree::texts(&types)));
    }
    if let Some(tenant) = &i.tenant {
        m.push(("tenant".to_owned(), Tree::text(tenant)));
    }
    if !i.vlans.is_empty() {
        let vlans = i
            .vlans
            .iter()
            .map(|v| {
                Tree::Map(vec![
                    ("id".to_owned(), Tree::text(v.id.to_string())),
                    ("tenant".to_owned(), Tree::text(&v.tenant)),
                ])
            })
            .collect();
        m.push(("vlans".to_owned(), Tree::List(vlans)));
    }
    Tree::Map(m)
}

/// The settings `defaults` and tenants share; with `over`, only what differs from it.
pub fn settings_tree(s: &TenantSettings, over: Option<&TenantSettings>) -> Vec<(String, Tree)> {
    let mut m = Entries::new(over.is_none());
    let base = over.cloned().unwrap_or_default();
    let bandwidth = bandwidth_tree(&s.bandwidth, over.map(|o| &o.bandwidth));
    m.tree(
        "bandwidth",
        Tree::Map(bandwidth.clone()),
        !bandwidth.is_empty(),
    );
    m.put("smtp", smtp_text(&s.smtp), s.smtp != base.smtp);
    m.tree("allow", Tree::texts(&s.allow), s.allow != base.allow);
    let mut detectors = Vec::new();
    let base_fields = base.detectors.fields();
    for ((kind, fields), (_, base_fields)) in s.detectors.fields().into_iter().zip(base_fields) {
        let changed: Vec<(String, Tree)> = fields
            .into_iter()
            .zip(base_fields)
            .filter(|(f, b)| over.is_none() || f.1 != b.1)
            .map(|((name, text), _)| (name.to_owned(), Tree::Scalar(text)))
            .collect();
        if !changed.is_empty() {
            detectors.push((kind.as_str().to_owned(), Tree::Map(changed)));
        }
    }
    m.tree(
        "detectors",
        Tree::Map(detectors.clone()),
        !detectors.is_empty(),
    );
    if let Some(hook) = &s.notify.webhook {
        let notify = vec![("webhook".to_owned(), Tree::text(hook))];
        m.tree(
            "notify",
            Tree::Map(notify),
            s.notify.webhook != base.notify.webhook,
        );
    }
    m.0
}

/// `bandwidth`: in full, or only the keys that differ from `over`. An unlimited
/// direction is written `unlimited`; a burst left to the dataplane is not written (the
/// reader has no text for it, and a tenant cannot unset a default burst).
fn bandwidth_tree(b: &Bandwidth, over: Option<&Bandwidth>) -> Vec<(String, Tree)> {
    let mut m = Entries::new(over.is_none());
    let base = over.copied().unwrap_or_default();
    let limit = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), rate_text);
    m.put("egress", limit(b.egress), b.egress != base.egress);
    m.put("ingress", limit(b.ingress), b.ingress != base.ingress);
    if let Some(burst) = b.burst {
        m.put("burst", size_text(burst), b.burst != base.burst);
    }
    m.0
}

fn smtp_text(s: &Smtp) -> String {
    match s {
        Smtp::Block => "block".to_owned(),
        Smtp::Allow => "allow".to_owned(),
        Smtp::Rate { text, .. } => text.clone(),
    }
}

/// A mapping being written: every entry when `all`, else only those that differ.
struct Entries(Vec<(String, Tree)>, bool);

impl Entries {
    fn new(all: bool) -> Entries {
        Entries(Vec::new(), all)
    }

    fn put(&mut self, key: &str, text: impl Into<String>, differs: bool) {
        self.tree(key, Tree::Scalar(text.into()), differs);
    }

    fn tree(&mut self, key: &str, value: Tree, differs: bool) {
        if self.1 || differs {
            self.0.push((key.to_owned(), value));
        }
    }

    fn always(&mut self, key: &str, value: Tree) {
        self.0.push((key.to_owned(), value));
    }
}

/// The largest unit of `table` that holds `value` exactly (`table` largest first, ending
/// with the base unit).
fn in_units(value: u64, table: &[(&str, u64)]) -> String {
    for (unit, per) in table {
        if value.is_multiple_of(*per) {
            return format!("{}{unit}", value / per);
        }
    }
    format!("{value}{}", table.last().map_or("", |(u, _)| u))
}

/// A rate in bits per second as the file writes it (`100Mbit`).
/// An event rate ([`units::per_second`](crate::units)) as the policy writes it: in whole
/// events per second, minute or hour when it is one, `0` when off.
pub(crate) fn per_second_text(per_second: f64) -> String {
    if per_second <= 0.0 {
        return "0".to_owned();
    }
    for (seconds, unit) in [(1.0, "s"), (60.0, "min"), (3_600.0, "h")] {
        let n = per_second * seconds;
        if n >= 1.0 && (n - n.round()).abs() < 1e-9 {
            return format!("{}/{unit}", n.round() as u64);
        }
    }
    format!("{per_second}/s")
}

pub(crate) fn rate_text(bits: u64) -> String {
    let table = [
        ("Tbit", 1_000_000_000_000),
        ("Gbit", 1_000_000_000),
        ("Mbit", 1_000_000),
        ("kbit", 1_000),
        ("bit", 1),
    ];
    in_units(bits, &table)
}

/// A size in bytes as the file writes it (`256KiB`).
pub(crate) fn size_text(bytes: u64) -> String {
    let table = [
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
        ("B", 1),
    ];
    in_units(bytes, &table)
}

/// A duration as the file writes it (`5m`; below a millisecond, in decimal seconds).
pub(crate) fn duration_text(d: Duration) -> String {
    let nanos = d.as_nanos();
    const MS: u128 = 1_000_000;
    let table = [
        ("d", 86_400_000 * MS),
        ("h", 3_600_000 * MS),
        ("m", 60_000 * MS),
        ("s", 1_000 * MS),
        ("ms", MS),
    ];
    for (unit, per) in table {
        if nanos != 0 && nanos.is_multiple_of(per) {
            return format!("{}{unit}", nanos / per);
        }
    }
    let fraction = format!("{:09}", d.subsec_nanos());
    format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
}

// The YAML writer: block mappings and sequences, scalars plain where YAML reads them as
// the same text, else double-quoted (JSON's escapes are YAML's).

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes `entries` at `indent`; with `inline`, the first key continues the line already
/// begun (a mapping as a sequence item, after `- `).
fn write_map(out: &mut String, entries: &[(String, Tree)], indent: usize, inline: bool) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if !(inline && i == 0) {
            pad(out, indent);
        }
        out.push_str(&scalar(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

/// Writes the value of a key at `indent`, from just after its colon.
fn write_value(out: &mut String, value: &Tree, indent: usize) {
    match value {
        Tree::Scalar(s) => {
            out.push(' ');
            out.push_str(&scalar(s));
            out.push('\n');
        }
        Tree::List(items) if items.is_empty() => out.push_str(" []\n"),
        Tree::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Tree::List(items) => {
            out.push('\n');
            write_list(out, items, indent + 2);
        }
        Tree::Map(entries) => {
            out.push('\n');
            write_map(out, entries, indent + 2, false);
        }
    }
}

fn write_list(out: &mut String, items: &[Tree], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Tree::Scalar(s) => {
                out.push_str(&scalar(s));
                out.push('\n');
            }
            Tree::Map(entries) if !entries.is_empty() => write_map(out, entries, indent + 2, true),
            other => out.push_str(&format!("{}\n", other.to_json())),
        }
    }
}

/// `text` as a YAML scalar: plain when it is plain-safe, else double-quoted.
fn scalar(text: &str) -> String {
    let safe_char = |c: char| c.is_ascii_alphanumeric() || "_./:+@%=-".contains(c);
    let plain = text.chars().all(safe_char)
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "_./".contains(c))
        && !text.ends_with(':')
        && !matches!(text, "null" | "Null" | "NULL" | "~");
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}
