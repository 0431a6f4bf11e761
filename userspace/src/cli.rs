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
    /// Run the daemon: load policy, attach, serve the API and metrics.
    Run {
        /// Policy file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
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
    /// Tenants with current rates and counters.
    Tenants {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.get(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
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
                bail!("{status}: {msg}");
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
    let rows: Vec<Vec<String>> = ts
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                fmt_bps(t.out.bps),
                format!("{:.0}", t.out.pps),
                fmt_bps(t.in_.bps),
                format!("{:.0}", t.in_.pps),
                t.out.packets.to_string(),
                t.in_.packets.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "TENANT", "OUT RATE", "OUT PPS", "IN RATE", "IN PPS", "OUT PKTS", "IN PKTS",
        ],
        &rows,
    )
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
