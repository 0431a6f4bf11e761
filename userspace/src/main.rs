//! The `warden` binary: daemon and CLI.

use std::process::ExitCode;

use clap::Parser;
use warden::{
    cli::{self, Cli, Client, Command, PolicyCommand},
    daemon, policy,
};

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
    match cli.command {
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => match policy::load(&file) {
            Ok(p) => {
                println!(
                    "{}: ok ({} tenants, {} interfaces)",
                    file.display(),
                    p.tenants.len(),
                    p.interfaces.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(diags) => {
                eprint!("{diags}");
                if !diags.to_string().ends_with('\n') {
                    eprintln!();
                }
                eprintln!("{}: {} error(s)", file.display(), diags.0.len());
                Ok(ExitCode::from(1))
            }
        },
        Command::Status { json } => {
            cli::status(&Client::new(&cli.api, cli.token)?, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants { json } => {
            cli::tenants(&Client::new(&cli.api, cli.token)?, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
