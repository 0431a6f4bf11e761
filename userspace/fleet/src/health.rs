//! Keeps a dead etcd member out of the client's balance.
//!
//! The client library spreads requests over every endpoint and keeps a member that
//! died among them: each request it sends there fails at once ("tcp connect error"),
//! and with one member of three down a fifth to a quarter of all requests failed
//! (measured with `userspace/fleet/tests/etcd.rs`'s leader kill, and in the Tier 2
//! fleet lab: controller reads answering 503, nodes whose resync kept failing and
//! backing off, a suspension unenforced 45 s later). So with more than one endpoint a
//! task checks each member's port every [`EVERY`] and takes an unreachable one out of
//! the balance (`remove_endpoint`), putting it back once it answers again. It never
//! takes the last one out: with every member down the requests fail anyway, and the
//! error then says etcd is unreachable. The task ends when the [`Fleet`](crate::Fleet)
//! and all its clones are gone.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use etcd_client::Client;
use tokio::net::TcpStream;

/// How often each member's port is checked.
const EVERY: Duration = Duration::from_millis(500);
/// How long a check may take before the member counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Starts the task for `endpoints` of `client` (nothing for a single endpoint); the
/// task runs while `alive` can be upgraded.
pub(crate) fn watch_members(client: &Client, endpoints: &[String], alive: &Arc<()>) {
    if endpoints.len() < 2 {
        return;
    }
    let (client, endpoints, alive) = (client.clone(), endpoints.to_vec(), Arc::downgrade(alive));
    tokio::spawn(run(client, endpoints, alive));
}

async fn run(client: Client, endpoints: Vec<String>, alive: Weak<()>) {
    let mut removed = vec![false; endpoints.len()];
    while alive.upgrade().is_some() {
        for (i, endpoint) in endpoints.iter().enumerate() {
            let up = reachable(endpoint).await;
            let others_in = removed.iter().enumerate().any(|(j, r)| j != i && !r);
            if !up && !removed[i] && others_in {
                match client.remove_endpoint(endpoint).await {
                    Ok(()) => {
                        removed[i] = true;
                        tracing::warn!(%endpoint, "etcd member unreachable: no requests go there until it answers");
                    }
                    Err(e) => {
                        tracing::warn!(%endpoint, error = %e, "could not take an unreachable etcd member out")
                    }
                }
            } else if up && removed[i] {
                match client.add_endpoint(endpoint).await {
                    Ok(()) => {
                        removed[i] = false;
                        tracing::info!(%endpoint, "etcd member answers again");
                    }
                    Err(e) => {
                        tracing::warn!(%endpoint, error = %e, "could not put an etcd member back")
                    }
                }
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Whether the endpoint's host and port accept a TCP connection within
/// [`PROBE_TIMEOUT`] (a URL such as `https://198.18.0.1:2379`).
async fn reachable(endpoint: &str) -> bool {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(authority)).await,
        Ok(Ok(_))
    )
}
