//! The command line: `warden run` starts the daemon; every other command is a client
//! of the daemon's HTTP API (or, for `policy check`, needs no daemon at all).
//!
//! Exit codes ([`error`]): 0 ok, 1 error, 2 usage, 3 daemon unreachable, 4 not
//! authorised (401/403), 5 not found, 6 conflict; 7 differences found (`policy diff
//! --exit-code` only).
//!
//! [`Cli`] is the command line's grammar; [`commands`] asks the daemon through a
//! [`Client`] and prints its answers, as tables and text ([`text`]) or JSON. The
//! documents it reads are the API's own ([`crate::views`]).

mod client;
pub mod commands;
pub mod error;
pub mod ops;
pub mod policy;
pub mod text;

#[cfg(test)]
mod ops_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use warden_policy::Kind;

pub use client::Client;
pub use commands::*;
pub use error::{exit_code, CliError};
pub use text::{fmt_bps, table};

use crate::auth::Role;
use crate::views::FlagState;

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error, 2 usage, 3 daemon unreachable, \
4 not authorised (401/403), 5 not found, 6 conflict (`policy diff --exit-code`: 1 when \
the policies differ).";

/// Warden: per-tenant network enforcement.
#[derive(Parser, Debug)]
#[command(name = "warden", version = crate::VERSION, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Base URL of the daemon's API.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9477",
        env = "WARDEN_API",
        value_parser = error::parse_api
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
        /// Only flags raised by this fleet node (`daemon.fleet.node`): through `warden
        /// controller`, that node's; on a daemon, its own flags if it is that node, else
        /// none.
        #[arg(long, value_parser = warden_policy::node_name)]
        node: Option<String>,
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
    /// The fleet's API over etcd (`daemon.fleet`): the same routes as a node, plus
    /// `GET /api/v1/nodes`. Stateless; run several for availability.
    Controller {
        /// The controller's file: `daemon` only, with `daemon.fleet`.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// The fleet's etcd: prepare it.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Fleet nodes (from a controller): heartbeat age, applied generation, lag, version.
    Nodes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The state database: rebuild its suspensions after it was lost.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// API tokens: create one.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print a shell completion script (e.g. `warden completion bash >
    /// /etc/bash_completion.d/warden`).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// This client's version and commit, and the running daemon's.
    Version,
    /// Write the man pages (warden.1, warden-SUBCOMMAND.1) into a directory (packaging).
    #[command(hide = true)]
    Man {
        /// Directory to write into (created if missing).
        dir: PathBuf,
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

/// `warden fleet ...`
#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Write the key layout under the prefix and the etcd roles and users: the
    /// controllers read and write the prefix; each node reads policy, suspensions and
    /// its review decisions and writes only its own registration and flags (users
    /// `warden-controller` and `warden-node-<node>`, no password: client certificates
    /// with that CN). Idempotent. Run with etcd's root credentials, before `etcdctl auth enable`.
    Init {
        /// A file with `daemon.fleet` (endpoints, prefix, tls) to reach etcd.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// A node to create a role and user for (repeat for each node).
        #[arg(long = "node")]
        nodes: Vec<String>,
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

/// `warden token ...`
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a new random token: print it once (it is not kept anywhere) and append its
    /// SHA-256 with the name and role to the token file. Restart the daemon to accept it.
    Create {
        /// Who holds the token (the actor in the audit log); unique in the file.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The token file (`daemon.tokens`); created (mode 0600) if missing.
        #[arg(long, value_name = "FILE", default_value = "/etc/warden/tokens")]
        file: PathBuf,
    },
}

/// `warden policy ...`
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy file; print every error as FILE:LINE:COL: message.
    Check {
        /// Policy file, or `-` to read standard input.
        file: PathBuf,
    },
    /// Send a policy file to the running daemon; applied atomically or not at all. The
    /// daemon keeps it in its state directory: a restart or SIGHUP enforces it, not the
    /// daemon's `-c` file, until `--from-file`.
    Apply {
        /// Policy file.
        #[arg(required_unless_present = "from_file")]
        file: Option<PathBuf>,
        /// Instead of a file: the daemon drops the policy applied over the API and applies
        /// its own `-c` file again (operator role; audited).
        #[arg(long, conflicts_with_all = ["file", "base"])]
        from_file: bool,
        /// With a fleet controller: the policy revision this file is based on (printed
        /// by the last apply, and by `warden status --json` as `policy_revision`); the
        /// apply is refused (409) if someone applied since.
        #[arg(long)]
        base: Option<i64>,
    },
    /// Print the running policy as YAML that `warden policy apply` takes back.
    Show {
        /// Every tenant with `defaults` merged in: what the dataplane and the detectors
        /// enforce (plan, smtp, detectors with thresholds and actions, allow).
        #[arg(long)]
        effective: bool,
        /// Print the API's JSON document (generation, source, applied_at, the policy).
        #[arg(long)]
        json: bool,
    },
    /// Validate FILE as `policy check` does, then print how it differs from the running
    /// policy: tenants added (+) and removed (-), each changed key (~) with old -> new,
    /// compared as enforced (defaults merged in). Exits 0 whether or not they differ.
    Diff {
        /// Policy file, or `-` to read standard input.
        file: PathBuf,
        /// Exit 1 when the file differs from the running policy (0 when identical), as
        /// diff(1) does; standard error says so.
        #[arg(long)]
        exit_code: bool,
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

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
        .map_err(|e: crate::auth::UnknownRole| e.to_string())
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
