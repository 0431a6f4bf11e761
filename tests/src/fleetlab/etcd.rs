//! [`EtcdCluster`]: a real 3-member etcd in the fleet lab's management namespace, each
//! member on its own lab address (so one can be killed while the others serve), asked
//! about its health and leader through `etcdctl`. Every lab etcd serves its clients over
//! TLS and takes only clients with a certificate of the lab's [`Pki`]
//! (`--client-cert-auth`: the certificate's CN is the etcd user); the members' peer
//! traffic stays plain HTTP on the lab's own links.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::{
    lab::{Netns, Proc},
    pki::{ClientFiles, Pki},
    wait::eventually,
};

/// How many members the cluster has.
pub const MEMBERS: usize = 3;
/// How long a started (or restarted) cluster gets to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The flags that make etcd serve its clients over TLS with `pki`'s server certificate
/// and take only clients with a certificate signed by its CA.
fn client_tls_flags(pki: &Pki) -> Result<Vec<String>> {
    let (cert, key) = pki.server();
    let path = |p: PathBuf| p.to_str().map(str::to_owned).context("UTF-8 path");
    Ok(vec![
        "--client-cert-auth".to_owned(),
        "--trusted-ca-file".to_owned(),
        path(pki.ca())?,
        "--cert-file".to_owned(),
        path(cert)?,
        "--key-file".to_owned(),
        path(key)?,
    ])
}

/// `etcdctl ARGS` in `ns` against `endpoints`, with client certificate `cert`; its output
/// whatever the exit status.
pub fn etcdctl(
    ns: &Netns,
    endpoints: &[String],
    cert: &ClientFiles,
    args: &[&str],
) -> Result<std::process::Output> {
    let endpoints = format!("--endpoints={}", endpoints.join(","));
    let tls = cert.etcdctl_flags();
    let mut cmd = vec![
        "env",
        "ETCDCTL_API=3",
        "etcdctl",
        &endpoints,
        "--dial-timeout=2s",
        "--command-timeout=5s",
    ];
    cmd.extend(tls.iter().map(String::as_str));
    cmd.extend_from_slice(args);
    ns.exec_unchecked(&cmd, Duration::from_secs(15))
}

/// Turns etcd's authentication on, as docs/fleet-design.md tells an operator to after
/// `warden fleet init`: user `root` without a password (its certificate's CN is
/// `root`), granted the root role; then `auth enable`. `root` is the root certificate.
pub fn enable_auth(ns: &Netns, endpoints: &[String], root: &ClientFiles) -> Result<()> {
    for args in [
        &["user", "add", "root", "--no-password"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        let out = etcdctl(ns, endpoints, root, args)?;
        ensure!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A one-member etcd in `ns`, its data under `dir`, serving clients on `client` and its
/// (unused) peer port on `peer` (URLs): over TLS with `pki`'s certificates if given
/// (`client` is then an `https` URL), else plain. The caller waits for it to answer.
pub fn spawn_single(
    ns: &Netns,
    dir: &Path,
    client: &str,
    peer: &str,
    pki: Option<&Pki>,
) -> Result<Proc> {
    let data = dir.join("etcd");
    let data = data.to_str().context("UTF-8 path")?;
    let tls = match pki {
        Some(pki) => client_tls_flags(pki)?,
        None => vec![],
    };
    let initial = format!("e1={peer}");
    let mut args = vec![
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
        &initial,
    ];
    args.extend(tls.iter().map(String::as_str));
    ns.spawn(&args)
}

/// Member `i`'s (0-based) lab address on the management network.
pub fn member_addr(i: usize) -> String {
    format!("198.18.0.{}", i + 1)
}

/// Member `i`'s client URL.
pub fn client_url(i: usize) -> String {
    format!("https://{}:2379", member_addr(i))
}

/// Every member's client URL, as a YAML flow list (`["https://...", ...]`).
pub fn endpoints_yaml() -> String {
    let urls: Vec<String> = (0..MEMBERS)
        .map(|i| format!("\"{}\"", client_url(i)))
        .collect();
    format!("[{}]", urls.join(", "))
}

/// The members, their guards (None once killed), where they run and the root
/// certificate `etcdctl` uses.
pub struct EtcdCluster {
    ns: Netns,
    members: Vec<Option<Proc>>,
    root: ClientFiles,
}

impl EtcdCluster {
    /// Starts the members in `ns` (their addresses must be on its interfaces) with data
    /// directories under `dir`, serving TLS clients with `pki`'s certificates (its server
    /// certificate must name every [`member_addr`]), and waits until every member is
    /// healthy.
    pub fn start(ns: &Netns, dir: &Path, token: &str, pki: &Pki) -> Result<Self> {
        let tls = client_tls_flags(pki)?;
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
            let mut args = vec![
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
            ];
            args.extend(tls.iter().map(String::as_str));
            members.push(Some(ns.spawn(&args)?));
        }
        let cluster = Self {
            ns: ns.clone(),
            members,
            root: pki.client("root")?,
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

    /// `etcdctl ARGS` against the given members, in the management namespace, with the
    /// root certificate.
    pub fn etcdctl(&self, members: &[usize], args: &[&str]) -> Result<std::process::Output> {
        let urls: Vec<String> = members.iter().map(|&i| client_url(i)).collect();
        etcdctl(&self.ns, &urls, &self.root, args)
    }

    /// [`enable_auth`] on the members running.
    pub fn enable_auth(&self) -> Result<()> {
        let urls: Vec<String> = self.alive().into_iter().map(client_url).collect();
        enable_auth(&self.ns, &urls, &self.root)
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
