//! The `warden` binary: daemon and CLI.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use warden::{
    cli::{self, Cli, Client, Command, FlagCommand, FleetCommand, PolicyCommand, StateCommand},
    daemon, state,
};
use warden_dataplane as dataplane;
use warden_policy as policy;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = || Client::new(&cli.api, cli.token.clone(), cli.ca.as_deref());
    match &cli.command {
        Command::Run {
            config,
            detach_on_exit,
        } => {
            use std::io::IsTerminal as _;
            tracing_subscriber::fmt()
                // Colours only for a person at a terminal, never into journald or files.
                .with_ansi(std::io::stderr().is_terminal())
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let opts = daemon::RunOptions {
                policy_path: config.clone(),
                detach_on_exit: *detach_on_exit,
            };
            rt.block_on(daemon::run(opts))?;
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => match policy::load_on_host(file, &|name| dataplane::iface::check(name, false)) {
            Ok(p) => println!(
                "{}: ok ({} tenants, {} interfaces)",
                file.display(),
                p.tenants.len(),
                p.interfaces.len()
            ),
            Err(diags) => {
                eprint!("{diags}");
                if !diags.to_string().ends_with('\n') {
                    eprintln!();
                }
                let name = policy::printable(&file.display().to_string());
                eprintln!("{name}: {} error(s)", diags.len());
                return Ok(ExitCode::from(1));
            }
        },
        Command::Policy {
            command: PolicyCommand::Apply { file, base },
        } => cli::policy_apply(&client()?, file, *base)?,
        Command::Controller { config } => {
            use std::io::IsTerminal as _;
            tracing_subscriber::fmt()
                .with_ansi(std::io::stderr().is_terminal())
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(warden::controller::run(config))?;
        }
        Command::Fleet {
            command: FleetCommand::Init { config, nodes },
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(warden::controller::init(config, nodes))?;
        }
        Command::Nodes { json } => cli::nodes(&client()?, *json)?,
        Command::Status { json } => cli::status(&client()?, *json)?,
        Command::Tenants { json } => cli::tenants(&client()?, *json)?,
        Command::Flags {
            tenant,
            kind,
            since,
            state,
            json,
        } => cli::flags(&client()?, tenant.as_deref(), *kind, *since, *state, *json)?,
        Command::Flag { command } => match command {
            FlagCommand::Show { id, json, pcap } => {
                cli::flag_show(&client()?, *id, *json, pcap.as_deref())?
            }
            FlagCommand::Ack { id } => cli::flag_review(&client()?, *id, None)?,
            FlagCommand::Dismiss { id, reason } => cli::flag_review(&client()?, *id, Some(reason))?,
        },
        Command::Suspend { tenant, reason } => {
            cli::set_suspended(&client()?, tenant, reason, true)?
        }
        Command::Unsuspend { tenant, reason } => {
            cli::set_suspended(&client()?, tenant, reason, false)?
        }
        Command::State {
            command: StateCommand::Restore { config, events_log },
        } => {
            let who = std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "root".into());
            let opts = state::RestoreOptions {
                config: config.clone(),
                events_logs: events_log.clone(),
                actor: format!("{who} (warden state restore)"),
            };
            let report = state::restore(&opts)?;
            print!("{}", report.text());
        }
        Command::Uninstall { config, bpffs } => {
            let dir = match (config, bpffs) {
                (_, Some(dir)) => dir.clone(),
                (Some(c), None) => {
                    policy::load(c)
                        .map_err(|d| anyhow::anyhow!("{d}"))?
                        .daemon
                        .bpffs
                }
                (None, None) => policy::DaemonConfig::default().bpffs,
            };
            let n = daemon::uninstall(&dir)
                .with_context(|| format!("removing pins under {}", dir.display()))?;
            println!(
                "{}: removed {n} pinned objects; enforcement stopped",
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
