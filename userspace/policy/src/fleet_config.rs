//! `daemon.fleet`: how a node reaches the fleet's etcd (docs/fleet-design.md). Absent,
//! the daemon runs alone, its policy from its own file, exactly as without fleet mode.

use std::path::PathBuf;

use super::reader::{Node, Reader};

/// The default of `daemon.fleet.prefix`.
pub const DEFAULT_FLEET_PREFIX: &str = "/warden/v1/";

const FLEET_KEYS: &[&str] = &["endpoints", "prefix", "node", "tls"];
const FLEET_REQUIRED: &[&str] = &["endpoints", "node"];
const FLEET_TLS_KEYS: &[&str] = &["ca", "cert", "key"];

/// `daemon.fleet`: this node's place in a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `endpoints`: etcd's client URLs, `https://HOST:PORT` with `tls`, else
    /// `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// `prefix`: where the fleet's keys live (default `/warden/v1/`).
    pub prefix: String,
    /// `node`: this node's name in the fleet (1 to 64 of `A-Z a-z 0-9 . _ -`).
    pub node: String,
    /// `tls`: client certificate authentication to etcd.
    pub tls: Option<FleetTls>,
}

/// `daemon.fleet.tls`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetTls {
    /// `ca`: the CA etcd's certificate chains to.
    pub ca: PathBuf,
    /// `cert`: this node's client certificate (its CN is its etcd user).
    pub cert: PathBuf,
    /// `key`: its private key.
    pub key: PathBuf,
}

/// Reads `daemon.fleet`; `None` when it has errors (recorded).
pub(super) fn read_fleet(r: &mut Reader, node: &Node<'_>) -> Option<FleetConfig> {
    let entries = r.mapping(node, "a mapping with keys endpoints, prefix, node, tls");
    r.require(node, &entries, "`daemon.fleet`", FLEET_REQUIRED);
    let mut endpoints: Vec<(String, &Node<'_>)> = Vec::new();
    let mut prefix = Some(DEFAULT_FLEET_PREFIX.to_owned());
    let mut name = None;
    let mut tls = None;
    let mut tls_given = false;
    let mut ok = true;
    for entry in &entries {
        match entry.key {
            "endpoints" => {
                let items = r.sequence(entry.value, "a list of etcd URLs");
                if items.is_empty() {
                    r.error(entry.value, "`endpoints` needs at least one etcd URL");
                    ok = false;
                }
                for item in items {
                    match r.value(item, "an etcd URL", endpoint) {
                        Some(url) => endpoints.push((url, item)),
                        None => ok = false,
                    }
                }
            }
            "prefix" => prefix = r.value(entry.value, "a key prefix", key_prefix),
            "node" => name = r.value(entry.value, "a node name", node_name),
            "tls" => {
                tls_given = true;
                tls = read_tls(r, entry.value);
                ok &= tls.is_some();
            }
            _ => {
                r.unknown_key(entry, "daemon.fleet", FLEET_KEYS);
                ok = false;
            }
        }
    }
    let want = if tls_given { "https://" } else { "http://" };
    for (url, item) in &endpoints {
        if !url.starts_with(want) {
            let why = if tls_given {
                "with `tls`, every endpoint must be https://"
            } else {
                "without `tls`, endpoints are http:// (set `tls` for https://)"
            };
            r.error(item, format!("endpoint `{url}`: {why}"));
            ok = false;
        }
    }
    let config = FleetConfig {
        endpoints: endpoints.into_iter().map(|(url, _)| url).collect(),
        prefix: prefix?,
        node: name?,
        tls,
    };
    ok.then_some(config)
}

fn read_tls(r: &mut Reader, node: &Node<'_>) -> Option<FleetTls> {
    let entries = r.mapping(node, "a mapping with keys ca, cert, key");
    r.require(node, &entries, "`daemon.fleet.tls`", FLEET_TLS_KEYS);
    let (mut ca, mut cert, mut key) = (None, None, None);
    for entry in &entries {
        let file = |r: &mut Reader| {
            r.value(
                entry.value,
                "a PEM file path",
                super::document::absolute_path,
            )
        };
        match entry.key {
            "ca" => ca = file(r),
            "cert" => cert = file(r),
            "key" => key = file(r),
            _ => r.unknown_key(entry, "daemon.fleet.tls", FLEET_TLS_KEYS),
        }
    }
    Some(FleetTls {
        ca: ca?,
        cert: cert?,
        key: key?,
    })
}

/// `http(s)://HOST:PORT` with a port and nothing after it.
fn endpoint(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.port().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !plain || text.ends_with('/') {
        return Err(format!(
            "`{text}` is not an etcd endpoint: expected http://HOST:PORT or https://HOST:PORT"
        ));
    }
    Ok(text.to_owned())
}

fn key_prefix(text: &str) -> Result<String, String> {
    let ok = text.len() >= 2
        && text.starts_with('/')
        && text.ends_with('/')
        && !text.contains("//")
        && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "prefix `{text}`: starts and ends with `/`, no `//`, printable ASCII without spaces"
        ))
    }
}

/// `text` as a fleet node name (`daemon.fleet.node`), or why it cannot be one.
pub fn node_name(text: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&text.len())
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "node name `{text}`: 1 to 64 characters of A-Z a-z 0-9 . _ -"
        ))
    }
}
