//! `warden controller -c FILE`: the fleet's API (docs/fleet-design.md). Stateless: it
//! holds an etcd connection and serves the same `/api/v1` routes as a node, from etcd
//! reads, with every write an etcd transaction (compare-and-swap on what it read,
//! audited in etcd), plus `GET /api/v1/nodes`. Run as many as availability needs.
//!
//! Its file is a policy file with `daemon` only (`listen`, `tokens`, `tls`, `api_limits`,
//! `management`, and `fleet` for etcd); the fleet's `defaults` and `tenants` are written
//! with `warden policy apply` against it.

mod backend;
mod flags;

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};
use warden_fleet::{Connect, Fleet, Layout, TlsFiles};

use crate::api;
use crate::auth::Tokens;
pub use backend::Controller;

/// The etcd connection of the file's `daemon.fleet`.
fn connect_options(config: &warden_policy::FleetConfig) -> Connect {
    Connect {
        endpoints: config.endpoints.clone(),
        tls: config.tls.as_ref().map(|t| TlsFiles {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
        timeout: std::time::Duration::from_secs(3),
        user: None,
    }
}

/// `warden fleet init`: the layout key, and the roles and users of the controllers and
/// of `nodes` (see [`warden_fleet::rbac`]).
pub async fn init(path: &Path, nodes: &[String]) -> Result<()> {
    let policy = warden_policy::load(path).map_err(|d| anyhow::anyhow!("invalid file:\n{d}"))?;
    let Some(config) = policy.daemon.fleet else {
        bail!("{}: `daemon.fleet` is required", path.display());
    };
    for node in nodes {
        warden_fleet::keys::check_name("node", node)?;
    }
    let fleet = Fleet::connect(&connect_options(&config), Layout::new(&config.prefix)?)
        .await
        .context("connecting to the fleet's etcd")?;
    let created = fleet
        .init_layout(warden_policy::time::system_clock())
        .await?;
    println!(
        "{}layout under {}",
        if created { "wrote the " } else { "found the " },
        config.prefix
    );
    fleet.init_rbac(nodes).await?;
    println!("role and user {}", warden_fleet::rbac::CONTROLLER_USER);
    for node in nodes {
        println!("role and user {}", warden_fleet::rbac::node_user(node));
    }
    Ok(())
}

/// Runs the controller until SIGTERM or SIGINT.
pub async fn run(path: &Path) -> Result<()> {
    let policy = warden_policy::load(path).map_err(|d| anyhow::anyhow!("invalid file:\n{d}"))?;
    if !policy.interfaces.is_empty() || !policy.tenants.is_empty() {
        bail!(
            "{}: a controller's file has `daemon` only (interfaces are each node's; tenants are \
             applied to the fleet with `warden policy apply`)",
            path.display()
        );
    }
    let Some(config) = policy.daemon.fleet.clone() else {
        bail!(
            "{}: `daemon.fleet` is required for a controller",
            path.display()
        );
    };
    let tokens = match &policy.daemon.tokens {
        Some(p) => {
            Tokens::load(p).with_context(|| format!("loading tokens from {}", p.display()))?
        }
        None => {
            tracing::warn!("no daemon.tokens file: every write to the API will be refused");
            Tokens::empty()
        }
    };
    let tls = match &policy.daemon.tls {
        Some(files) => Some(api::tls_config(files)?),
        None => None,
    };
    let connect = connect_options(&config);
    let layout = Layout::new(&config.prefix)?;
    let fleet = Fleet::connect(&connect, layout)
        .await
        .context("connecting to the fleet's etcd")?;
    let listen = policy.daemon.listen;
    let listener = api::listen(listen).with_context(|| format!("listening on {listen}"))?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let backend: Arc<dyn api::Backend> = Arc::new(Controller::new(
        fleet,
        policy.daemon.clone(),
        path.to_path_buf(),
        tokio::runtime::Handle::current(),
    ));
    tracing::info!(%listen, endpoints = %config.endpoints.join(","), prefix = %config.prefix, "controller serving API");
    let stopped = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    api::serve(listener, tls, backend, tokens, &policy.daemon, stopped).await
}
