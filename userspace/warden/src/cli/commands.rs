//! The client commands: each asks the daemon and prints its answer.

use anyhow::{bail, Context as _, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use warden_policy::Kind;

use super::text::{
    detection_text, flag_table, flag_text, interface_table, review_text, table, tenant_table,
};
use super::{CliError, Client};
use crate::views::{Flag, FlagDetail, FlagState, StatusView, TenantView};

/// `warden status`.
pub fn status(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/api/v1/status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let s: StatusView = serde_json::from_value(v).context("unexpected status document")?;
    // Where the policy came from: `file PATH` or `api by NAME at TIME, generation N`
    // (an older daemon names only its file).
    let source = s.policy_source.as_ref().map_or_else(
        || format!("file {}", s.policy_file.display()),
        ToString::to_string,
    );
    println!(
        "warden {}  up {}s  policy generation {} ({source})  tenants {}",
        s.version, s.uptime_seconds, s.policy_generation, s.tenants
    );
    println!();
    if s.interfaces.is_empty() {
        // A daemon older than port bindings: its attachments alone.
        let rows: Vec<Vec<String>> = s
            .attachments
            .iter()
            .map(|a| {
                vec![
                    a.interface.clone(),
                    a.mode.clone(),
                    a.hook.clone(),
                    a.program.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["INTERFACE", "MODE", "HOOK", "PROGRAM"], &rows)
        );
    } else {
        println!("interfaces:");
        print!("{}", interface_table(&s.interfaces));
    }
    if !s.shaping.mode.is_empty() {
        println!(
            "egress plans: {}{}",
            match s.shaping.mode.as_str() {
                "htb" => format!(
                    "shaped (htb, {} classes on {}){}",
                    s.shaping.classes,
                    s.shaping.interfaces.join(", "),
                    match s.shaping.pending {
                        0 => String::new(),
                        n => format!(", {n} policed until their tenant needs a queue"),
                    }
                ),
                "police" => "policed (no host-mode interface)".to_string(),
                other => other.to_string(),
            },
            if s.shaping.fq { "; fq available" } else { "" }
        );
    }
    println!();
    let rows: Vec<Vec<String>> = s
        .maps
        .iter()
        .map(|m| {
            vec![
                m.map.clone(),
                m.entries.to_string(),
                m.capacity.to_string(),
                format!(
                    "{:.1}%",
                    m.entries as f64 * 100.0 / m.capacity.max(1) as f64
                ),
            ]
        })
        .collect();
    print!("{}", table(&["MAP", "ENTRIES", "CAPACITY", "FILL"], &rows));
    println!();
    print!("{}", detection_text(&s.detection));
    print!("{}", review_text(&s.review));
    Ok(())
}

/// `warden tenants`.
pub fn tenants(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/api/v1/tenants")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let ts: Vec<TenantView> = serde_json::from_value(v).context("unexpected tenants document")?;
    print!("{}", tenant_table(&ts));
    // Tenants suspended for another reason than their own suspension: say why.
    for t in &ts {
        if let Some(why) = t.why_suspended.as_deref().filter(|w| *w != "suspended") {
            println!("{}: {why}", t.id);
        }
    }
    Ok(())
}

/// `warden policy apply FILE`.
pub fn policy_apply(client: &Client, file: &std::path::Path, base: Option<i64>) -> Result<()> {
    // Sent as it is: the daemon reports text that is not UTF-8 at its line, like any
    // other error. Only a file past the size limit is refused here, unread.
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > warden_policy::MAX_POLICY_BYTES as u64 {
        bail!(
            "{}: the policy is {size} bytes; at most {} ({} MiB) are accepted",
            file.display(),
            warden_policy::MAX_POLICY_BYTES,
            warden_policy::MAX_POLICY_BYTES >> 20
        );
    }
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let base = base.map(|b| b.to_string());
    let mut headers = vec![("x-warden-policy-name", name.as_str())];
    if let Some(b) = &base {
        headers.push(("if-match", b.as_str()));
    }
    let v = client.put("/api/v1/policy", text, &headers)?;
    match v.get("revision") {
        Some(r) => println!(
            "{}: applied, policy generation {}, revision {r}",
            file.display(),
            v["policy_generation"]
        ),
        None => println!(
            "{}: applied, policy generation {}",
            file.display(),
            v["policy_generation"]
        ),
    }
    Ok(())
}

/// `warden suspend` / `warden unsuspend`.
pub fn set_suspended(client: &Client, tenant: &str, reason: &str, suspend: bool) -> Result<()> {
    let verb = if suspend { "suspend" } else { "unsuspend" };
    let body = serde_json::json!({ "reason": reason });
    let v = client.post(&format!("/api/v1/tenants/{tenant}/{verb}"), &body)?;
    let actor = if suspend {
        &v["actor"]
    } else {
        &v["lifted_by"]
    };
    println!(
        "{tenant}: {verb}ed by {} ({reason})",
        actor.as_str().unwrap_or("?")
    );
    Ok(())
}

/// What `warden flags` filters on.
#[derive(Debug, Default)]
pub struct FlagsQuery<'a> {
    pub tenant: Option<&'a str>,
    pub kind: Option<Kind>,
    /// Seen within this many seconds.
    pub since: Option<u64>,
    pub state: Option<FlagState>,
    pub node: Option<&'a str>,
}

/// `warden flags`.
pub fn flags(client: &Client, q: &FlagsQuery<'_>, json: bool) -> Result<()> {
    let FlagsQuery {
        tenant,
        kind,
        since,
        state,
        node,
    } = *q;
    let mut query = Vec::new();
    if let Some(t) = tenant {
        query.push(format!("tenant={}", url_escape(t)));
    }
    if let Some(n) = node {
        query.push(format!("node={}", url_escape(n)));
    }
    if let Some(k) = kind {
        query.push(format!("kind={k}"));
    }
    if let Some(d) = since {
        let d = i64::try_from(d).unwrap_or(i64::MAX);
        query.push(format!(
            "since={}",
            warden_policy::time::system_clock().saturating_sub(d)
        ));
    }
    if let Some(s) = state {
        query.push(format!("state={s}"));
    }
    let path = if query.is_empty() {
        "/api/v1/flags".to_string()
    } else {
        format!("/api/v1/flags?{}", query.join("&"))
    };
    let v = client.get(&path)?;
    let fs: Vec<Flag> = serde_json::from_value(v.clone()).context("unexpected flags document")?;
    if fs.is_empty() {
        if let Some(t) = tenant {
            tenant_known(client, t)?;
        }
        if let Some(n) = node {
            node_known(client, n)?;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", flag_table(&fs));
    }
    Ok(())
}

/// No flags for `node`: fine for a node of the fleet (registered, or whose published
/// flags remain after its lease lapsed), "not found" (exit 5) for a name the fleet does
/// not know. Against a node's own API (no fleet there: no `/api/v1/nodes`) the filter
/// simply keeps nothing.
fn node_known(client: &Client, node: &str) -> Result<()> {
    let nodes = match client.get("/api/v1/nodes") {
        Ok(v) => v,
        Err(e) if e.downcast_ref::<CliError>().and_then(CliError::status) == Some(404) => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    let registered = nodes
        .as_array()
        .context("unexpected nodes document")?
        .iter()
        .any(|n| n["node"] == node);
    if registered {
        return Ok(());
    }
    let published = client.get(&format!("/api/v1/flags?node={}&limit=1", url_escape(node)))?;
    if published.as_array().is_some_and(|a| !a.is_empty()) {
        return Ok(());
    }
    Err(CliError::NotFound(format!(
        "no node `{node}` in the fleet: none is registered under that name and it published no flags"
    ))
    .into())
}

/// No flags for `tenant`: fine for a tenant of the running policy, "not found" (exit 5)
/// for a name it does not know (a typo would otherwise read as "no flags").
fn tenant_known(client: &Client, tenant: &str) -> Result<()> {
    match client.get(&format!("/api/v1/tenants/{}", url_escape(tenant))) {
        Ok(_) => Ok(()),
        Err(e) if e.downcast_ref::<CliError>().and_then(CliError::status) == Some(404) => {
            Err(CliError::NotFound(format!(
                "no tenant `{tenant}` in the running policy, and no flags for it"
            ))
            .into())
        }
        Err(e) => Err(e),
    }
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (RFC 3986), with the
/// `percent-encoding` crate (upper-case hex digits, as before).
fn url_escape(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// `warden flag show`.
pub fn flag_show(
    client: &Client,
    id: i64,
    json: bool,
    pcap: Option<&std::path::Path>,
) -> Result<()> {
    let v = client.get(&format!("/api/v1/flags/{id}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let d: FlagDetail = serde_json::from_value(v).context("unexpected flag document")?;
        print!("{}", flag_text(&d));
    }
    if let Some(path) = pcap {
        let bytes = client.get_bytes(&format!("/api/v1/flags/{id}/pcap"))?;
        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

/// `warden flag ack` / `warden flag dismiss`.
pub fn flag_review(client: &Client, id: i64, dismiss_reason: Option<&str>) -> Result<()> {
    let v = match dismiss_reason {
        Some(reason) => client.post(
            &format!("/api/v1/flags/{id}/dismiss"),
            &serde_json::json!({ "reason": reason }),
        )?,
        None => client.post(&format!("/api/v1/flags/{id}/ack"), &serde_json::json!({}))?,
    };
    let f: Flag = serde_json::from_value(v).context("unexpected flag document")?;
    println!(
        "flag {}: {} ({} by tenant {})",
        f.id, f.state, f.kind, f.tenant
    );
    Ok(())
}

/// `warden nodes`: the fleet's nodes, from a controller.
pub fn nodes(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/api/v1/nodes")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let nodes: Vec<crate::views::NodeView> =
        serde_json::from_value(v).context("unexpected nodes document")?;
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                format!("{}s", n.heartbeat_age_seconds),
                n.applied_generation.to_string(),
                n.lag.to_string(),
                if n.attached { "yes" } else { "no" }.to_owned(),
                n.version.clone(),
                n.interfaces.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        super::table(
            &[
                "NODE",
                "HEARTBEAT",
                "GENERATION",
                "LAG",
                "ATTACHED",
                "VERSION",
                "INTERFACES"
            ],
            &rows
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::url_escape;

    #[test]
    fn url_escape_keeps_unreserved_and_encodes_the_rest_upper_case() {
        assert_eq!(url_escape("acme-1.b_c~d"), "acme-1.b_c~d");
        assert_eq!(url_escape("a/b c?d&e=f%"), "a%2Fb%20c%3Fd%26e%3Df%25");
        assert_eq!(url_escape("é"), "%C3%A9");
    }
}
