//! A validated policy split into the parts fleet mode keeps apart (docs/fleet-design.md):
//! the `defaults` section and each entry of `tenants`, each as JSON text, and the way back
//! to one policy document.
//!
//! A fragment is the JSON form of that part of the YAML tree with every scalar as a
//! string and an unquoted empty value (or `~`, `null`) as JSON `null`. The reader reads
//! scalars by their text whatever their style, and JSON is YAML flow syntax, so a
//! document assembled from fragments parses to the same policy as the file they came
//! from: the fleet needs no second validator.

use saphyr_parser::ScalarStyle;
use serde_json::{Map, Value};

use super::diagnostic::{Diagnostic, Diagnostics};
use super::reader::load_yaml;
use super::tree::{Data, Node};
use super::Policy;

/// The fleet-shared parts of a policy document, as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragments {
    /// The `defaults` section (`None` when the document has none).
    pub defaults: Option<String>,
    /// Each entry of `tenants`, by tenant id, in file order.
    pub tenants: Vec<(String, String)>,
}

/// The sections a fleet keeps in etcd; a node's own file holds the others.
pub const FLEET_SECTIONS: &[&str] = &["defaults", "tenants"];

/// Parses and validates `text` like [`super::parse`], then splits it into [`Fragments`].
/// The policy is returned too, so the caller need not parse twice.
pub fn fragments(text: &str, file_name: &str) -> Result<(Policy, Fragments), Diagnostics> {
    let policy = super::parse(text, file_name)?;
    let documents = load_yaml(text).map_err(|(pos, message)| {
        Diagnostics::new(vec![Diagnostic::new(
            file_name, pos.line, pos.col, &message,
        )])
    })?;
    let mut out = Fragments::default();
    let Some(Data::Mapping(entries)) = documents.first().map(|root| &root.data) else {
        return Ok((policy, out));
    };
    for (key, value) in entries {
        match scalar(key) {
            Some("defaults") => out.defaults = Some(json(value).to_string()),
            Some("tenants") => out.tenants = tenant_fragments(value, &policy),
            _ => {}
        }
    }
    Ok((policy, out))
}

/// The entries of `tenants`, each with the id the validated policy gave it.
fn tenant_fragments(node: &Node<'_>, policy: &Policy) -> Vec<(String, String)> {
    let Data::Sequence(items) = &node.data else {
        return Vec::new();
    };
    // Validation succeeded, so entry i is tenant i.
    items
        .iter()
        .zip(&policy.tenants)
        .map(|(item, tenant)| (tenant.id.clone(), json(item).to_string()))
        .collect()
}

fn scalar<'n>(node: &'n Node<'_>) -> Option<&'n str> {
    match &node.data {
        Data::Scalar(text, _, _) => Some(text),
        _ => None,
    }
}

/// The JSON form of a node (see the module documentation). Tags outside the core schema
/// never reach here: the reader refuses them, and fragments are taken only of a policy
/// that validated.
fn json(node: &Node<'_>) -> Value {
    match &node.data {
        Data::Scalar(text, ScalarStyle::Plain, _)
            if matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") =>
        {
            Value::Null
        }
        Data::Scalar(text, _, _) => Value::String(text.to_string()),
        Data::Sequence(items) => Value::Array(items.iter().map(json).collect()),
        Data::Mapping(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (scalar(k).unwrap_or_default().to_owned(), json(v)))
                .collect::<Map<String, Value>>(),
        ),
        Data::Tagged(_, inner) => json(inner),
        Data::BadValue => Value::Null,
    }
}

/// One policy document: `local` (a node's own file, with its `daemon` and `interfaces`
/// and without the fleet's sections) followed by the fleet's `defaults` and `tenants`.
/// Parse the result with [`super::parse`].
pub fn assemble<'f>(
    local: &str,
    defaults: Option<&str>,
    tenants: impl IntoIterator<Item = &'f str>,
) -> String {
    let mut doc = String::with_capacity(local.len() + 64);
    doc.push_str(local);
    if !doc.is_empty() && !doc.ends_with('\n') {
        doc.push('\n');
    }
    if let Some(defaults) = defaults {
        doc.push_str("defaults: ");
        doc.push_str(defaults);
        doc.push('\n');
    }
    doc.push_str("tenants:");
    let mut any = false;
    for tenant in tenants {
        doc.push_str("\n- ");
        doc.push_str(tenant);
        any = true;
    }
    if !any {
        doc.push_str(" []");
    }
    doc.push('\n');
    doc
}

/// The top-level keys of `text` among [`FLEET_SECTIONS`]: a node's own file in fleet mode
/// must not hold them (the fleet's would be appended to them). Empty when the text is not
/// a YAML mapping (the parse that follows reports that).
pub fn fleet_sections_in(text: &str) -> Vec<(String, usize, usize)> {
    let Ok(documents) = load_yaml(text) else {
        return Vec::new();
    };
    let Some(Data::Mapping(entries)) = documents.first().map(|root| &root.data) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(k, _)| {
            let key = scalar(k)?;
            FLEET_SECTIONS
                .contains(&key)
                .then(|| (key.to_owned(), k.line as usize, k.col as usize + 1))
        })
        .collect()
}

/// The tenants a fleet node's own file binds it to, when they are all it enforces: every
/// entry of `interfaces` is `mode: host` with a `tenant` (docs/fleet-design.md, "What a
/// node watches"). `None` when the node needs the whole policy: a gateway-mode interface,
/// a host-mode one without a tenant (its frames are attributed by address, to any
/// tenant), VLAN bindings, no interfaces, or text that is not a policy mapping (the parse
/// that follows reports it).
pub fn bound_tenants_in(text: &str) -> Option<std::collections::BTreeSet<String>> {
    let documents = load_yaml(text).ok()?;
    let Some(Data::Mapping(entries)) = documents.first().map(|root| &root.data) else {
        return None;
    };
    let (_, interfaces) = entries
        .iter()
        .find(|(k, _)| scalar(k) == Some("interfaces"))?;
    let Data::Sequence(items) = &interfaces.data else {
        return None;
    };
    let mut tenants = std::collections::BTreeSet::new();
    for item in items {
        let Data::Mapping(fields) = &item.data else {
            return None;
        };
        let field = |name: &str| fields.iter().find(|(k, _)| scalar(k) == Some(name));
        if field("vlans").is_some() || field("mode").and_then(|(_, v)| scalar(v)) != Some("host") {
            return None;
        }
        let tenant = field("tenant").and_then(|(_, v)| scalar(v))?;
        if tenant.is_empty() {
            return None;
        }
        tenants.insert(tenant.to_owned());
    }
    (!tenants.is_empty()).then_some(tenants)
}
