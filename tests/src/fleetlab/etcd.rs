//! [`EtcdCluster`]: a real 3-member etcd in the fleet lab's management namespace, each
//! member on its own lab address (so one can be killed while the others serve), asked
//! about its health and leader through `etcdctl`.

use std::{path::Path, time::Duration};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::{
    lab::{Netns, Proc},
    wait::eventually,
};

/// How many members the cluster has.
pub const MEMBERS: usize = 3;
/// How long a started (or restarted) cluster gets to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A one-member etcd in `ns`, its data under `dir`, serving clients on `client` and its
/// (unused) peer port on `peer` (URLs). The caller waits for it to answer.
pub fn spawn_single(ns: &Netns, dir: &Path, client: &str, peer: &str) -> Result<Proc> {
    let data = dir.join("etcd");
    let data = data.to_str().context("UTF-8 path")?;
    ns.spawn(&[
        "etcd",
        "--name",
        "e1",
        "--data-dir",
        data,
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        &format!("e1={peer}"),
    ])
}

/// Member `i`'s (0-based) lab address on the management network.
pub fn member_addr(i: usize) -> String {
    format!("198.18.0.{}", i + 1)
}

/// Member `i`'s client URL.
pub fn client_url(i: usize) -> String {
    format!("http://{}:2379", member_addr(i))
}

/// Every member's client URL, as a YAML flow list (`["http://...", ...]`).
pub fn endpoints_yaml() -> String {
    let urls: Vec<String> = (0..MEMBERS)
        .map(|i| format!("\"{}\"", client_url(i)))
        .collect();
    format!("[{}]", urls.join(", "))
}

/// The members, their guards (None once killed) and where they run.
pub struct EtcdCluster {
    ns: Netns,
    members: Vec<Option<Proc>>,
}

impl EtcdCluster {
    /// Starts the members in `ns` (their addresses must be on its interfaces) with data
    /// directories under `dir`, and waits until every member is healthy.
    pub fn start(ns: &Netns, dir: &Path, token: &str) -> Result<Self> {
        let initial: Vec<String> = (0..MEMBERS)
            .map(|i| format!("m{i}=http://{}:2380", member_addr(i)))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let data = dir.join(format!("etcd-m{i}"));
            let data = data.to_str().context("UTF-8 path")?;
            let client = client_url(i);
            let peer = format!("http://{}:2380", member_addr(i));
            let name = format!("m{i}");
            members.push(Some(ns.spawn(&[
                "etcd",
                "--name",
                &name,
                "--data-dir",
                data,
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                token,
                "--log-level",
                "warn",
            ])?));
        }
        let cluster = Self {
            ns: ns.clone(),
            members,
        };
        eventually(READY_TIMEOUT, || cluster.healthy(&cluster.alive()))
            .context("the 3-member etcd did not become healthy")?;
        Ok(cluster)
    }

    /// Indexes of the members still running.
    pub fn alive(&self) -> Vec<usize> {
        (0..MEMBERS)
            .filter(|&i| self.members[i].is_some())
            .collect()
    }

    /// `etcdctl ARGS` against the given members, in the management namespace.
    pub fn etcdctl(&self, members: &[usize], args: &[&str]) -> Result<std::process::Output> {
        let urls: Vec<String> = members.iter().map(|&i| client_url(i)).collect();
        let endpoints = format!("--endpoints={}", urls.join(","));
        let mut cmd = vec![
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            &endpoints,
            "--dial-timeout=2s",
            "--command-timeout=5s",
        ];
        cmd.extend_from_slice(args);
        self.ns.exec_unchecked(&cmd, Duration::from_secs(15))
    }

    /// Whether every listed member answers `endpoint health`.
    fn healthy(&self, members: &[usize]) -> Result<bool> {
        let out = self.etcdctl(members, &["endpoint", "health"])?;
        Ok(out.status.success())
    }

    /// The index of the member that is the leader now, by `endpoint status`.
    pub fn leader(&self) -> Result<usize> {
        let out = self.etcdctl(&self.alive(), &["endpoint", "status", "-w", "json"])?;
        ensure!(
            out.status.success(),
            "etcdctl endpoint status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).context("endpoint status JSON")?;
        for s in list.as_array().context("endpoint status list")? {
            let (me, leader) = (
                s["Status"]["header"]["member_id"].as_u64(),
                s["Status"]["leader"].as_u64(),
            );
            if me.is_some() && me == leader {
                let url = s["Endpoint"].as_str().context("endpoint")?;
                return (0..MEMBERS)
                    .find(|&i| client_url(i) == url)
                    .with_context(|| format!("leader at unknown endpoint {url}"));
            }
        }
        bail!("no member says it is the leader: {list}")
    }

    /// SIGKILLs the leader; returns its index. The others elect a new one.
    pub fn kill_leader(&mut self) -> Result<usize> {
        let i = self.leader()?;
        let proc = self.members[i].take().context("the leader is not ours")?;
        ensure!(
            // SAFETY: kill only sends a signal to the member this lab started.
            unsafe { libc::kill(proc.pid() as libc::pid_t, libc::SIGKILL) } == 0,
            "kill -9 of etcd member {i} failed"
        );
        drop(proc);
        Ok(i)
    }

    /// Waits until the members still running are healthy and agree on a leader.
    pub fn wait_quorum(&self) -> Result<usize> {
        eventually(READY_TIMEOUT, || {
            Ok(self.healthy(&self.alive())? && self.leader().is_ok())
        })
        .context("the remaining members did not elect a leader")?;
        self.leader()
    }
}
