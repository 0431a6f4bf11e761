//! The `warden` binary: daemon and CLI.
//!
//! Exit codes (`warden --help`, docs/cli.md): 0 ok, 1 error, 2 usage, 3 daemon
//! unreachable, 4 not authorised (401/403), 5 not found, 6 conflict; 7 differences
//! found (`policy diff --exit-code` only).

use std::process::ExitCode;

use clap::Parser;
use warden::cli::{
    self, error::EXIT_ERROR, ops, Cli, Client, Command, FlagCommand, FleetCommand, PolicyCommand,
    StateCommand, TokenCommand,
};
use warden::{daemon, state};
use warden_policy as policy;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = || Client::new(&cli.api, cli.token.clone(), cli.ca.as_deref());
    match &cli.command {
        Command::Run {
            config,
            detach_on_exit,
        } => run(config, *detach_on_exit)?,
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => {
            if !ops::policy_check(file)? {
                return Ok(ExitCode::from(EXIT_ERROR));
            }
        }
        Command::Policy {
            command:
                PolicyCommand::Apply {
                    file,
                    from_file,
                    base,
                },
        } => match (file, from_file) {
            (_, true) => cli::policy::policy_apply_from_file(&client()?)?,
            (Some(file), false) => cli::policy_apply(&client()?, file, *base)?,
            (None, false) => anyhow::bail!("policy apply: give a FILE or --from-file"),
        },
        Command::Policy {
            command: PolicyCommand::Show { effective, json },
        } => cli::policy::policy_show(&client()?, *effective, *json)?,
        Command::Policy {
            command: PolicyCommand::Diff { file, exit_code },
        } => {
            return Ok(ExitCode::from(cli::policy::policy_diff(
                &client()?,
                file,
                *exit_code,
            )?))
        }
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
            node,
            json,
        } => {
            let q = cli::FlagsQuery {
                tenant: tenant.as_deref(),
                kind: *kind,
                since: *since,
                state: *state,
                node: node.as_deref(),
            };
            cli::flags(&client()?, &q, *json)?
        }
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
        } => restore(config, events_log)?,
        Command::Token {
            command: TokenCommand::Create { name, role, file },
        } => {
            let token = ops::token_create(file, name, *role)?;
            println!("{token}");
            eprintln!(
                "added `{name}` ({role}) to {}; this is the only time the token is shown. \
                 Restart the daemon to accept it.",
                file.display()
            );
        }
        Command::Completion { shell } => ops::completion(*shell),
        Command::Version => ops::version(client())?,
        Command::Man { dir } => ops::man(dir)?,
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
            let n = ops::uninstall(&dir)?;
            println!(
                "{}: removed {n} pinned objects; enforcement stopped",
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(config: &std::path::Path, detach_on_exit: bool) -> anyhow::Result<()> {
    warden::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let opts = daemon::RunOptions {
        policy_path: config.to_path_buf(),
        detach_on_exit,
    };
    rt.block_on(daemon::run(opts))
}

fn restore(config: &std::path::Path, events_log: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    let opts = state::RestoreOptions {
        config: config.to_path_buf(),
        events_logs: events_log.to_vec(),
        actor: format!("{who} (warden state restore)"),
    };
    let report = state::restore(&opts)?;
    print!("{}", report.text());
    Ok(())
}
