//! `spam`: outbound SMTP fan-out, for tenants allowed to send mail. Over `window`: more
//! than `distinct_servers` mail servers, more than `connections` connections, or a share
//! of failed connections at or above `failure_ratio` once at least
//! [`MIN_CONNECTIONS_FOR_RATIO`] were made (a ratio of three attempts says nothing).
//! Top targets: servers by connections in the window.

use std::net::IpAddr;
use std::time::Duration;

use super::detection::{sort_top, Crossing, Target};
use super::fact::Smtp;
use super::recent::{Counts, Recent};
use warden_policy::Spam;

/// Connections in the window before the failure ratio counts.
pub const MIN_CONNECTIONS_FOR_RATIO: u64 = 10;

/// One tenant's SMTP state.
#[derive(Debug)]
pub(crate) struct SpamState {
    /// Servers contacted in the window, with connections since first seen.
    servers: Recent<IpAddr, u64>,
    /// [connections, failures] over the window.
    counts: Counts<2>,
}

impl SpamState {
    pub(crate) fn new(cap: usize, window: Duration) -> Self {
        SpamState {
            servers: Recent::new(cap),
            counts: Counts::new(window),
        }
    }

    pub(crate) fn observe(&mut self, cfg: &Spam, s: &Smtp) -> Option<Crossing> {
        self.servers.expire(s.at.saturating_sub(cfg.window));
        self.servers.touch(s.server, s.at, |n| *n += 1);
        let failed = u64::from(s.outcome.failed());
        let [connections, failures] = self.counts.add(cfg.window, s.at, [1, failed]);
        let servers = self.servers.len() as u64;
        let ratio = failures as f64 / connections as f64;
        let checks = [
            (
                "distinct_servers",
                servers as f64,
                f64::from(cfg.distinct_servers),
                servers > u64::from(cfg.distinct_servers),
            ),
            (
                "connections",
                connections as f64,
                f64::from(cfg.connections),
                connections > u64::from(cfg.connections),
            ),
            (
                "failure_ratio",
                ratio,
                cfg.failure_ratio,
                connections >= MIN_CONNECTIONS_FOR_RATIO && ratio >= cfg.failure_ratio,
            ),
        ];
        if !checks.iter().any(|c| c.3) {
            return None;
        }
        Some(Crossing {
            figures: checks.iter().map(|c| (c.0, c.1)).collect(),
            thresholds: checks.iter().map(|c| (c.0, c.2)).collect(),
            top_targets: Vec::new(),
        })
    }

    /// Adds the costly evidence to a crossing: the servers with the most connections.
    pub(crate) fn evidence(&self, crossing: &mut Crossing, top: usize) {
        let mut targets: Vec<(Target, u64)> = self
            .servers
            .iter()
            .map(|(a, n)| (Target::host(*a), *n))
            .collect();
        sort_top(&mut targets, top);
        crossing.top_targets = targets;
    }

    /// Drops what has aged out; returns whether nothing is left.
    pub(crate) fn tick(&mut self, now: Duration, window: Duration) -> bool {
        self.servers.expire(now.saturating_sub(window));
        self.counts.sums(now);
        self.servers.len() == 0 && self.counts.is_empty()
    }

    pub(crate) fn remembered(&self) -> usize {
        self.servers.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.servers.evicted()
    }
}
