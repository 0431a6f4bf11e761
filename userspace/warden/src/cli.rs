//! The command line: `warden run` starts the daemon; every other command is a client
//! of the daemon's HTTP API (or, for `policy check`, needs no daemon at all).
//!
//! Exit codes: 0 ok, 1 refused / not found / daemon unreachable / invalid input, 2 usage.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;

use warden_policy::time::rfc3339;
use warden_policy::Kind;

use crate::views::{
    DetectionView, Flag, FlagDetail, FlagState, ReviewStats, StatusView, TenantView,
};

/// Warden: per-tenant network enforcement.
#[derive(Parser, Debug)]
#[command(name = "warden", version, about)]
pub struct Cli {
    /// Base URL of the daemon's API.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9477",
        env = "WARDEN_API"
    )]
    pub api: String,
    /// Bearer token for the API.
    #[arg(long, global = true, env = "WARDEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an `https://` daemon (`daemon.tls`).
    #[arg(long, global = true, env = "WARDEN_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: load policy, attach (or adopt what is pinned), serve the API and metrics.
    Run {
        /// Policy file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// On exit, detach and remove every pinned program, link and map (enforcement
        /// stops). By default they stay and keep enforcing until the next daemon adopts them.
        #[arg(long)]
        detach_on_exit: bool,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Daemon, attachments, policy generation and map fill.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Tenants with current rates, plans, drops and state.
    Tenants {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Flagged detections, most recently seen first.
    Flags {
        /// Only this tenant's flags.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this detection kind (scan, flood_out, flood_in, spam, proxy, spoof_ip,
        /// spoof_arp, spoof_mac, bandwidth).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
        /// Only flags seen within this long, e.g. 30m, 2h, 7d.
        #[arg(long, value_parser = parse_duration)]
        since: Option<u64>,
        /// Only flags in this review state (open, notified, acked, dismissed, escalated).
        #[arg(long, value_parser = parse_state)]
        state: Option<FlagState>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Review one flag: show, acknowledge or dismiss it.
    Flag {
        #[command(subcommand)]
        command: FlagCommand,
    },
    /// Suspend a tenant: all its traffic is dropped except with the management
    /// prefixes. Audited; lifted only by `warden unsuspend`.
    Suspend {
        /// Tenant id.
        tenant: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Lift a tenant's suspension. Audited.
    Unsuspend {
        /// Tenant id.
        tenant: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// The state database: rebuild its suspensions after it was lost.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Detach and remove every pinned program, link and map (enforcement stops).
    Uninstall {
        /// Take the bpffs directory from this policy file's `daemon.bpffs`.
        #[arg(short = 'c', long = "config", conflicts_with = "bpffs")]
        config: Option<PathBuf>,
        /// The bpffs directory Warden pinned under.
        #[arg(long)]
        bpffs: Option<PathBuf>,
    },
}

/// `warden state ...`
#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Rebuild the state database's suspensions from the kernel's pinned suspension record
    /// and the events log, after the database was deleted, emptied or rolled back (the
    /// daemon then refuses to start and says so). Audited (`suspensions.restore`). Run it
    /// with the daemon stopped; nothing pinned is touched, so suspended tenants stay
    /// suspended throughout.
    Restore {
        /// Policy file (its `daemon` section names the state directory, bpffs and events log).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// An events log to read instead of `daemon.events_log` (e.g. a backup copy);
        /// repeat it for rotated files.
        #[arg(long = "events-log")]
        events_log: Vec<PathBuf>,
    },
}

/// `warden policy ...`
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy file; print every error as FILE:LINE:COL: message.
    Check {
        /// Policy file.
        file: PathBuf,
    },
    /// Send a policy file to the running daemon; applied atomically or not at all.
    Apply {
        /// Policy file.
        file: PathBuf,
    },
}

/// `warden flag ...`
#[derive(Subcommand, Debug)]
pub enum FlagCommand {
    /// A flag with its figures, thresholds, top targets, actions and evidence.
    Show {
        /// Flag id.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the flag's captured samples to this file as pcap (for tcpdump, Wireshark).
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
    /// Acknowledge a flag: seen, being handled. Audited.
    Ack {
        /// Flag id.
        id: i64,
    },
    /// Dismiss a flag: not abuse, or handled. Audited.
    Dismiss {
        /// Flag id.
        id: i64,
        /// Why (recorded with the flag and in the audit log).
        #[arg(long)]
        reason: String,
    },
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    text.parse()
}

fn parse_state(text: &str) -> Result<FlagState, String> {
    text.parse()
}

/// A duration like `90s`, `30m`, `2h`, `7d` or `1w`, in seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration like 30m, 2h or 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// Renders rows as a left-aligned table with two spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Formats a bit rate with SI units, e.g. `12.3 Mbit/s`.
pub fn fmt_bps(bps: f64) -> String {
    let units = [("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)];
    for (u, f) in units {
        if bps >= f {
            return format!("{:.1} {u}", bps / f);
        }
    }
    format!("{bps:.0} bit/s")
}

/// A blocking client for the daemon's API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:9477`, or `https://...` trusting the
    /// CA certificate in the PEM file `ca`).
    pub fn new(base: &str, token: Option<String>, ca: Option<&std::path::Path>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client runtime")?;
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = ca {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --ca {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca {}: not a PEM certificate", ca.display()))?;
            if certs.is_empty() {
                bail!("--ca {}: no PEM certificate in the file", ca.display());
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: http.build().context("building the HTTP client")?,
            rt,
        })
    }

    /// GET raw bytes (e.g. a pcap file).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.get(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.with_context(|| self.unreachable())?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("reading the reply of {url}"))?;
            if !status.is_success() {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                bail!("{}", error_text(status, &body));
            }
            Ok(bytes.to_vec())
        })
    }

    fn unreachable(&self) -> String {
        let tls = if self.base.starts_with("https://") {
            "; for a TLS daemon give its CA certificate with --ca or WARDEN_CA"
        } else {
            ""
        };
        format!(
            "cannot reach the warden daemon at {} (is `warden run` running? set --api{tls})",
            self.base
        )
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None, &[])
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(body.to_string().into()),
            &[],
        )
    }

    /// PUT a body (sent as it is) with extra headers.
    pub fn put(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(body), headers)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.request(method, &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let resp = req.send().await.with_context(|| self.unreachable())?;
            let status = resp.status();
            let body: Value = resp
                .json()
                .await
                .with_context(|| format!("reading the reply of {url}"))?;
            if !status.is_success() {
                bail!("{}", error_text(status, &body));
            }
            Ok(body)
        })
    }
}

/// The message for a refused request: status, the daemon's error and any listed errors.
fn error_text(status: reqwest::StatusCode, body: &Value) -> String {
    let msg = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let mut text = format!("{status}: {msg}");
    if status == reqwest::StatusCode::UNAUTHORIZED {
        text.push_str(" (give a token with --token or WARDEN_TOKEN)");
    }
    let errors = body.get("errors").and_then(Value::as_array);
    for e in errors.into_iter().flatten() {
        text.push_str(&format!("\n{}", e.as_str().unwrap_or("?")));
    }
    text
}

/// `warden status`.
pub fn status(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/api/v1/status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let s: StatusView = serde_json::from_value(v).context("unexpected status document")?;
    println!(
        "warden {}  up {}s  policy generation {} ({})  tenants {}",
        s.version,
        s.uptime_seconds,
        s.policy_generation,
        s.policy_file.display(),
        s.tenants
    );
    println!();
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

/// The review-workflow lines of `warden status`.
fn review_text(r: &ReviewStats) -> String {
    format!(
        "notifications: {} pending, {} delivered, {} failed attempts, {} abandoned, {} dropped\n\
         deadlines: {} tenants suspended, {} passed without suspension, {} failed suspensions\n\
         events log: {} lines written, {} lost\n",
        r.pending,
        r.delivered,
        r.failures,
        r.abandoned,
        r.dropped,
        r.deadline_suspensions,
        r.deadlines_passed,
        r.deadline_suspend_failures,
        r.events_written,
        r.events_failed,
    )
}

/// The detection lines of `warden status`.
fn detection_text(d: &DetectionView) -> String {
    let reading = if d.events_read {
        "reading kernel events"
    } else {
        "NOT reading kernel events (scan, flood, spam and proxy detection are off)"
    };
    format!(
        "detection: {reading}\n\
         events: {} sent, {} lost, {} undecodable\n\
         in force: {} blocks, {} throttled tenants\n\
         open episodes {}, attempts awaiting an answer {}, flags opened {}\n",
        d.events_sent,
        d.events_lost,
        d.event_decode_errors,
        d.active_blocks,
        d.active_throttles,
        d.open_episodes,
        d.pending_attempts,
        d.flags_opened,
    )
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

/// The per-tenant table shown by `warden tenants` and the demo.
pub fn tenant_table(ts: &[TenantView]) -> String {
    let plan = |p: Option<u64>| p.map(|b| fmt_bps(b as f64)).unwrap_or_else(|| "-".into());
    let drops = |t: &TenantView| {
        let out = t.out.drops.iter().map(|(r, n)| (format!("{r}/out"), *n));
        let inn = t.in_.drops.iter().map(|(r, n)| (format!("{r}/in"), *n));
        let mut all: Vec<(String, u64)> = out.chain(inn).collect();
        all.sort();
        if all.is_empty() {
            return "-".to_string();
        }
        all.iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<Vec<String>> = ts
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.state.clone(),
                fmt_bps(t.out.bps),
                plan(t.out.plan_bps),
                fmt_bps(t.in_.bps),
                plan(t.in_.plan_bps),
                t.out.packets.to_string(),
                t.in_.packets.to_string(),
                drops(t),
            ]
        })
        .collect();
    let header = [
        "TENANT", "STATE", "OUT RATE", "OUT PLAN", "IN RATE", "IN PLAN", "OUT PKTS", "IN PKTS",
        "DROPS",
    ];
    table(&header, &rows)
}

/// `warden policy apply FILE`.
pub fn policy_apply(client: &Client, file: &std::path::Path) -> Result<()> {
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
    let v = client.put("/api/v1/policy", text, &[("x-warden-policy-name", &name)])?;
    println!(
        "{}: applied, policy generation {}",
        file.display(),
        v["policy_generation"]
    );
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

/// `warden flags`.
pub fn flags(
    client: &Client,
    tenant: Option<&str>,
    kind: Option<Kind>,
    since: Option<u64>,
    state: Option<FlagState>,
    json: bool,
) -> Result<()> {
    let mut query = Vec::new();
    if let Some(t) = tenant {
        query.push(format!("tenant={}", url_escape(t)));
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
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let fs: Vec<Flag> = serde_json::from_value(v).context("unexpected flags document")?;
    print!("{}", flag_table(&fs));
    Ok(())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The table `warden flags` prints.
pub fn flag_table(fs: &[Flag]) -> String {
    let rows: Vec<Vec<String>> = fs
        .iter()
        .map(|f| {
            vec![
                f.id.to_string(),
                f.tenant.clone(),
                f.kind.to_string(),
                f.state.to_string(),
                rfc3339(f.first_seen),
                rfc3339(f.last_seen),
                top_targets(&f.top_targets)
                    .into_iter()
                    .next()
                    .map_or_else(|| "-".to_string(), |(t, _)| t),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TENANT",
            "KIND",
            "STATE",
            "FIRST SEEN",
            "LAST SEEN",
            "TOP TARGET",
        ],
        &rows,
    )
}

/// A target as text: a string as is, `{addr, port}` as `addr:port`, anything else as JSON.
fn target_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("addr") || o.contains_key("port") => {
            let addr = o.get("addr").and_then(Value::as_str);
            let port = o.get("port").and_then(Value::as_u64);
            match (addr, port) {
                (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
                (Some(a), Some(p)) => format!("{a}:{p}"),
                (Some(a), None) => a.to_string(),
                (None, Some(p)) => format!("port {p}"),
                (None, None) => "any".to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// The top targets of a flag as (target, count) pairs, whatever shape the detector wrote:
/// `[[target, count], ...]`, `[{..., "count": n}, ...]`, `[target, ...]` or `{target: count}`.
pub fn top_targets(v: &Value) -> Vec<(String, Option<String>)> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    (target_text(&pair[0]), Some(pair[1].to_string()))
                }
                Value::Object(o) => {
                    let count_key = ["count", "weight", "packets", "pps", "bytes"]
                        .into_iter()
                        .find(|k| o.contains_key(*k));
                    let count = count_key.map(|k| o[k].to_string());
                    let target = match o.get("target") {
                        Some(t) => target_text(t),
                        None => {
                            let mut rest = o.clone();
                            if let Some(k) = count_key {
                                rest.remove(k);
                            }
                            target_text(&Value::Object(rest))
                        }
                    };
                    (target, count)
                }
                other => (target_text(other), None),
            })
            .collect(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.to_string())))
            .collect(),
        Value::Null => Vec::new(),
        other => vec![(target_text(other), None)],
    }
}

/// `key  value` lines for a JSON object of figures or thresholds.
fn figure_rows(v: &Value) -> Vec<Vec<String>> {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                vec![k.clone(), v]
            })
            .collect(),
        Value::Null => Vec::new(),
        other => vec![vec!["value".into(), other.to_string()]],
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// What `warden flag show` prints.
pub fn flag_text(d: &FlagDetail) -> String {
    let f = &d.flag;
    let mut out = format!(
        "flag {}: {} by tenant {}, {}\n",
        f.id, f.kind, f.tenant, f.state
    );
    let opt = |t: Option<i64>| t.map_or_else(|| "-".to_string(), rfc3339);
    let mut about = vec![
        vec!["first seen".into(), rfc3339(f.first_seen)],
        vec!["last seen".into(), rfc3339(f.last_seen)],
        vec!["policy generation".into(), f.policy_generation.to_string()],
        vec!["deadline".into(), opt(f.deadline)],
    ];
    if let Some(r) = &f.state_reason {
        about.push(vec!["reason".into(), r.clone()]);
    }
    for row in &about {
        out += &format!("{:<19}{}\n", format!("{}:", row[0]), row[1]);
    }
    // Figures and thresholds side by side where they share a key.
    let figures = figure_rows(&f.figures);
    let thresholds = figure_rows(&f.thresholds);
    let mut rows: Vec<Vec<String>> = figures
        .iter()
        .map(|r| {
            let t = thresholds
                .iter()
                .find(|t| t[0] == r[0])
                .map_or_else(|| "-".to_string(), |t| t[1].clone());
            vec![r[0].clone(), r[1].clone(), t]
        })
        .collect();
    for t in &thresholds {
        if !figures.iter().any(|r| r[0] == t[0]) {
            rows.push(vec![t[0].clone(), "-".into(), t[1].clone()]);
        }
    }
    out += "\nfigures:\n";
    if rows.is_empty() {
        out += "  none\n";
    } else {
        out += &indent(&table(&["FIGURE", "MEASURED", "THRESHOLD"], &rows));
    }
    out += "\ntop targets:\n";
    let targets = top_targets(&f.top_targets);
    if targets.is_empty() {
        out += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = targets
            .into_iter()
            .map(|(t, c)| vec![t, c.unwrap_or_else(|| "-".into())])
            .collect();
        out += &indent(&table(&["TARGET", "COUNT"], &rows));
    }
    out += "\nactions:\n";
    if d.actions.is_empty() {
        out += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = d
            .actions
            .iter()
            .map(|a| {
                vec![
                    rfc3339(a.at),
                    a.decision.as_str().to_string(),
                    a.action.as_str().to_string(),
                    a.target.clone(),
                    opt(a.until),
                    a.by.clone(),
                ]
            })
            .collect();
        out += &indent(&table(
            &["AT", "DECISION", "ACTION", "TARGET", "UNTIL", "BY"],
            &rows,
        ));
    }
    out += &format!(
        "\nsamples: {} kept, {} refused (get them with --pcap FILE)\n",
        d.samples, d.samples_refused
    );
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("absent.pem");
        let err = Client::new("https://127.0.0.1:1", None, Some(&missing))
            .err()
            .expect("missing CA refused");
        assert!(format!("{err:#}").contains("absent.pem"), "{err:#}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let err = Client::new("https://127.0.0.1:1", None, Some(&garbage))
            .err()
            .expect("garbage CA refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("garbage.pem") && text.contains("PEM"),
            "{text}"
        );
    }

    #[test]
    fn table_columns_align() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "A     BB\nlong  x\ns     yy\n");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("2h"), Ok(7_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("45s"), Ok(45));
        for bad in ["", "m", "30", "2x", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn top_targets_read_every_shape() {
        use serde_json::json;
        let pairs =
            json!([[{"addr": "198.18.0.9", "port": null}, 4000], [{"addr": null, "port": 25}, 7]]);
        assert_eq!(
            top_targets(&pairs),
            [
                ("198.18.0.9".to_string(), Some("4000".to_string())),
                ("port 25".to_string(), Some("7".to_string()))
            ]
        );
        assert_eq!(
            top_targets(&json!([{"target": "198.18.0.1", "count": 3}])),
            [("198.18.0.1".to_string(), Some("3".to_string()))]
        );
        assert_eq!(
            top_targets(&json!(["198.18.0.9"])),
            [("198.18.0.9".to_string(), None)]
        );
        assert_eq!(
            top_targets(&json!({"198.18.0.2": 12})),
            [("198.18.0.2".to_string(), Some("12".to_string()))]
        );
    }

    #[test]
    fn flag_text_shows_figures_thresholds_targets_and_samples() {
        use serde_json::json;
        let d = FlagDetail {
            flag: Flag {
                id: 4,
                tenant: "globex".into(),
                kind: Kind::FloodOut,
                state: FlagState::Open,
                first_seen: 1_700_000_000,
                last_seen: 1_700_000_060,
                policy_generation: 2,
                thresholds: json!({"pps": 20000}),
                figures: json!({"pps": 55000, "victims": 1}),
                top_targets: json!([["198.18.0.9", 55000]]),
                deadline: None,
                state_reason: None,
            },
            actions: vec![crate::views::FlagAction {
                at: 1_700_000_001,
                decision: crate::views::ActionDecision::Apply,
                action: warden_policy::Action::Throttle,
                target: "addr 198.18.0.9".into(),
                until: Some(1_700_000_601),
                by: "warden".into(),
            }],
            samples: 2,
            samples_refused: 0,
        };
        let t = flag_text(&d);
        for needle in [
            "flag 4: flood_out by tenant globex, open",
            "2023-11-14T22:13:20Z",
            "pps      55000     20000",
            "victims  1         -",
            "198.18.0.9  55000",
            "throttle",
            "2023-11-14T22:23:21Z",
            "samples: 2 kept, 0 refused",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
        }
    }

    #[test]
    fn status_shows_events_sent_lost_and_actions_in_force() {
        let d = DetectionView {
            events_read: true,
            events_sent: 1_200,
            events_lost: 35,
            active_blocks: 3,
            active_throttles: 1,
            ..Default::default()
        };
        let t = detection_text(&d);
        for needle in [
            "reading kernel events",
            "events: 1200 sent, 35 lost",
            "in force: 3 blocks, 1 throttled tenants",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
        }
        let off = detection_text(&DetectionView::default());
        assert!(off.contains("NOT reading kernel events"), "{off}");
    }

    #[test]
    fn status_shows_notification_and_deadline_counts() {
        let t = review_text(&ReviewStats {
            pending: 2,
            delivered: 9,
            failures: 3,
            abandoned: 1,
            deadline_suspensions: 1,
            events_failed: 4,
            ..Default::default()
        });
        for needle in [
            "notifications: 2 pending, 9 delivered, 3 failed attempts, 1 abandoned, 0 dropped",
            "deadlines: 1 tenants suspended, 0 passed",
            "events log: 0 lines written, 4 lost",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
        }
    }

    #[test]
    fn rates_use_si_units() {
        assert_eq!(fmt_bps(12_345_678.0), "12.3 Mbit/s");
        assert_eq!(fmt_bps(999.0), "999 bit/s");
        assert_eq!(fmt_bps(2.5e9), "2.5 Gbit/s");
    }
}
