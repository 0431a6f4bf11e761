//! `warden run`: load policy, load and attach the dataplane, sample counters, serve
//! the API and metrics, reload on SIGHUP, detach on SIGTERM/SIGINT.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use warden_common::{global, Counters};

use crate::{
    dataplane::{self, Attachment, Dataplane, TenantIndex},
    metrics,
    policy::{self, Policy},
};

/// How often counters are sampled for rates.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One direction of a tenant's traffic, as the API shows it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct DirectionView {
    pub packets: u64,
    pub bytes: u64,
    /// Bits per second over the last sample interval.
    pub bps: f64,
    /// Packets per second over the last sample interval.
    pub pps: f64,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantView {
    pub id: String,
    pub index: u32,
    pub addresses: Vec<IpNet>,
    pub out: DirectionView,
    #[serde(rename = "in")]
    pub in_: DirectionView,
}

/// The daemon's status, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub uptime_seconds: u64,
    pub policy_file: PathBuf,
    pub policy_generation: u64,
    pub policy_applied_at: u64,
    pub tenants: usize,
    pub attachments: Vec<Attachment>,
    pub maps: Vec<MapFill>,
}

/// Fill of one bounded map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapFill {
    pub map: String,
    pub entries: u64,
    pub capacity: u64,
}

struct Sample {
    at: Instant,
    counters: HashMap<u32, [Counters; 2]>,
}

/// Mutable daemon state. One lock: every operation on it is a handful of syscalls.
struct Inner {
    policy: Policy,
    generation: u64,
    applied_at: SystemTime,
    dataplane: Dataplane,
    index: TenantIndex,
    rates: HashMap<u32, [(f64, f64); 2]>,
    last: Option<Sample>,
}

/// State shared by the API handlers and the background tasks.
pub struct Shared {
    inner: Mutex<Inner>,
    started: Instant,
    policy_path: PathBuf,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-written in a way
        // the next apply would not repair, so keep serving rather than poison forever.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy file this daemon was started with.
    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// Counters and map fill for `/metrics`.
    pub fn snapshot(&self) -> Result<metrics::Snapshot> {
        let inner = self.lock();
        let mut tenants = Vec::with_capacity(inner.policy.tenants.len());
        for t in &inner.policy.tenants {
            let index = inner.index.get(&t.id).context("tenant without index")?;
            tenants.push((t.id.clone(), inner.dataplane.tenant_counters(index)?));
        }
        let g = inner.dataplane.global_counters()?;
        Ok(metrics::Snapshot {
            tenants,
            no_tenant: g[global::NO_TENANT as usize],
            malformed: g[global::MALFORMED as usize],
            policy_generation: inner.generation,
            maps: map_fill(&inner)
                .into_iter()
                .map(|m| (m.map, m.entries, m.capacity))
                .collect(),
        })
    }

    /// Every tenant with counters and current rates.
    pub fn tenants(&self) -> Result<Vec<TenantView>> {
        let inner = self.lock();
        inner
            .policy
            .tenants
            .iter()
            .map(|t| tenant_view(&inner, t))
            .collect()
    }

    /// One tenant, or `None` when no tenant has that id.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantView>> {
        let inner = self.lock();
        inner
            .policy
            .tenants
            .iter()
            .find(|t| t.id == id)
            .map(|t| tenant_view(&inner, t))
            .transpose()
    }

    /// Daemon status.
    pub fn status(&self) -> StatusView {
        let inner = self.lock();
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            policy_file: self.policy_path.clone(),
            policy_generation: inner.generation,
            policy_applied_at: inner
                .applied_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            tenants: inner.policy.tenants.len(),
            attachments: inner.dataplane.attachments().to_vec(),
            maps: map_fill(&inner),
        }
    }

    /// Re-reads the policy file and applies it; on any error the old policy stays.
    pub fn reload(&self) -> Result<u64> {
        let policy = policy::load(&self.policy_path).map_err(|d| anyhow::anyhow!("{d}"))?;
        let mut inner = self.lock();
        apply(&mut inner, policy)?;
        Ok(inner.generation)
    }

    fn sample(&self) -> Result<()> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut counters = HashMap::with_capacity(inner.index.len());
        for t in &inner.policy.tenants {
            if let Some(i) = inner.index.get(&t.id) {
                counters.insert(i, inner.dataplane.tenant_counters(i)?);
            }
        }
        let mut rates = HashMap::with_capacity(counters.len());
        if let Some(last) = &inner.last {
            let secs = now.duration_since(last.at).as_secs_f64().max(1e-3);
            for (i, c) in &counters {
                let prev = last.counters.get(i).copied().unwrap_or_default();
                let rate = |d: usize| {
                    (
                        c[d].bytes.saturating_sub(prev[d].bytes) as f64 * 8.0 / secs,
                        c[d].packets.saturating_sub(prev[d].packets) as f64 / secs,
                    )
                };
                rates.insert(*i, [rate(0), rate(1)]);
            }
        }
        inner.rates = rates;
        inner.last = Some(Sample { at: now, counters });
        Ok(())
    }
}

fn map_fill(inner: &Inner) -> Vec<MapFill> {
    let prefixes_v4 = inner
        .policy
        .tenants
        .iter()
        .flat_map(|t| &t.addresses)
        .filter(|a| matches!(a, IpNet::V4(_)))
        .count();
    let prefixes_v6 = inner
        .policy
        .tenants
        .iter()
        .flat_map(|t| &t.addresses)
        .filter(|a| matches!(a, IpNet::V6(_)))
        .count();
    let entries = [
        prefixes_v4,
        prefixes_v6,
        inner.index.len() * warden_common::direction::COUNT as usize,
    ];
    dataplane::CAPACITIES
        .iter()
        .zip(entries)
        .map(|((map, cap), n)| MapFill {
            map: map.to_string(),
            entries: n as u64,
            capacity: u64::from(*cap),
        })
        .collect()
}

fn tenant_view(inner: &Inner, t: &policy::Tenant) -> Result<TenantView> {
    let index = inner.index.get(&t.id).context("tenant without index")?;
    let c = inner.dataplane.tenant_counters(index)?;
    let r = inner.rates.get(&index).copied().unwrap_or_default();
    let dir = |d: usize| DirectionView {
        packets: c[d].packets,
        bytes: c[d].bytes,
        bps: r[d].0,
        pps: r[d].1,
    };
    Ok(TenantView {
        id: t.id.clone(),
        index,
        addresses: t.addresses.clone(),
        out: dir(0),
        in_: dir(1),
    })
}

/// Applies a validated policy: indexes first, then the tries. On error the daemon
/// keeps the previous policy object; the maps are repaired by the next apply.
fn apply(inner: &mut Inner, policy: Policy) -> Result<()> {
    let mut index = inner.index.clone();
    let changes = index.sync(policy.tenants.iter().map(|t| t.id.as_str()))?;
    let mut prefixes = HashMap::new();
    for t in &policy.tenants {
        let i = index
            .get(&t.id)
            .context("tenant without index after sync")?;
        for a in &t.addresses {
            prefixes.insert(a.trunc(), i);
        }
    }
    let fresh: Vec<u32> = changes.added.iter().map(|(_, i)| *i).collect();
    inner
        .dataplane
        .apply_tenants(&prefixes, &fresh)
        .context("writing tenant maps")?;
    inner.index = index;
    inner.policy = policy;
    inner.generation += 1;
    inner.applied_at = SystemTime::now();
    tracing::info!(
        generation = inner.generation,
        tenants = inner.policy.tenants.len(),
        added = changes.added.len(),
        removed = changes.removed.len(),
        "policy applied"
    );
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(policy_path: &Path) -> Result<()> {
    let policy = policy::load(policy_path).map_err(|d| anyhow::anyhow!("invalid policy:\n{d}"))?;
    let listen = policy.daemon.listen;
    let interfaces = policy.interfaces.clone();
    let dataplane = Dataplane::load().context("loading the eBPF programs")?;
    let mut nothing_yet = policy.clone();
    nothing_yet.tenants.clear();
    let mut inner = Inner {
        policy: nothing_yet,
        generation: 0,
        applied_at: SystemTime::now(),
        dataplane,
        index: TenantIndex::default(),
        rates: HashMap::new(),
        last: None,
    };
    // Tenants go into the maps before any program is attached, so the first packet
    // is already attributed.
    apply(&mut inner, policy)?;
    for iface in &interfaces {
        inner
            .dataplane
            .attach(&iface.name, iface.mode)
            .with_context(|| format!("attaching to {}", iface.name))?;
        tracing::info!(interface = %iface.name, mode = ?iface.mode, "attached");
    }
    let shared = Arc::new(Shared {
        inner: Mutex::new(inner),
        started: Instant::now(),
        policy_path: policy_path.to_path_buf(),
    });

    let sampler = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = shared.sample() {
                    tracing::warn!(error = %format!("{e:#}"), "sampling counters failed");
                }
            }
        }
    });
    let reloader = tokio::spawn({
        let shared = shared.clone();
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        async move {
            while hup.recv().await.is_some() {
                match shared.reload() {
                    Ok(g) => tracing::info!(generation = g, "policy reloaded on SIGHUP"),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "policy reload rejected; previous policy stays")
                    }
                }
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, "serving API and /metrics");
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    let served = axum::serve(listener, crate::api::router(shared.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    reloader.abort();
    let _ = sampler.await;
    let _ = reloader.await;
    served.context("serving HTTP")?;
    match Arc::try_unwrap(shared) {
        Ok(shared) => {
            let inner = shared.inner.into_inner().unwrap_or_else(|p| p.into_inner());
            let n = inner.dataplane.attachments().len();
            drop(inner);
            tracing::info!(detached = n, "detached all programs");
        }
        Err(_) => {
            tracing::warn!("state still shared at exit; programs detach when the process ends")
        }
    }
    Ok(())
}
