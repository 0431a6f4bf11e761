//! The command line: `warden run` starts the daemon; every other command is a client
//! of the daemon's HTTP API (or, for `policy check`, needs no daemon at all).
//!
//! Exit codes: 0 ok, 1 refused / not found / daemon unreachable / invalid input, 2 usage.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::daemon::{StatusView, TenantView};

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
    /// A client for `base` (e.g. `http://127.0.0.1:9477`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client runtime")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .context("building the HTTP client")?,
            rt,
        })
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None, &[])
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body.to_string()), &[])
    }

    /// PUT a text body with extra headers.
    pub fn put(&self, path: &str, body: String, headers: &[(&str, &str)]) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(body), headers)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
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
            let resp = req.send().await.with_context(|| {
                format!(
                    "cannot reach the warden daemon at {} (is `warden run` running? set --api)",
                    self.base
                )
            })?;
            let status = resp.status();
            let body: Value = resp
                .json()
                .await
                .with_context(|| format!("reading the reply of {url}"))?;
            if !status.is_success() {
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
                bail!("{text}");
            }
            Ok(body)
        })
    }
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
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rates_use_si_units() {
        assert_eq!(fmt_bps(12_345_678.0), "12.3 Mbit/s");
        assert_eq!(fmt_bps(999.0), "999 bit/s");
        assert_eq!(fmt_bps(2.5e9), "2.5 Gbit/s");
    }
}
