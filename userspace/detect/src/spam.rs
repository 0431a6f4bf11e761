//! `spam`: outbound SMTP, for tenants allowed to send mail. Over `window`: more than
//! `distinct_servers` mail servers, more than `connections` connections, or a share of
//! failed first contacts at or above `failure_ratio` once at least
//! [`MIN_CONNECTIONS_FOR_RATIO`] were made (a ratio of three attempts says nothing).
//!
//! Connections are every SMTP connection the programs saw ([`SmtpConnection`]: each SYN
//! to 25, 465 or 587, its retransmissions once), not only first contacts: a tenant
//! sending hundreds of messages to a few servers opens hundreds of connections to them.
//! The failure ratio is over first contacts ([`Smtp`]), which carry their outcome; one
//! Warden dropped (its SMTP rate) is neither a success nor a failure.
//!
//! Top targets: servers by connections in the window.

use std::net::IpAddr;
use std::time::Duration;

use super::detection::{sort_top, Crossing, Target};
use super::fact::{Smtp, SmtpConnection};
use super::recent::{Counts, Recent};
use warden_policy::traffic::Outcome;
use warden_policy::Spam;

/// First contacts in the window before the failure ratio counts.
pub const MIN_CONNECTIONS_FOR_RATIO: u64 = 10;

/// One tenant's SMTP state.
#[derive(Debug)]
pub(crate) struct SpamState {
    /// Servers contacted in the window, with connections since first seen.
    servers: Recent<IpAddr, u64>,
    /// [connections, first contacts, failed first contacts] over the window.
    counts: Counts<3>,
}

impl SpamState {
    pub(crate) fn new(cap: usize, window: Duration) -> Self {
        SpamState {
            servers: Recent::new(cap),
            counts: Counts::new(window),
        }
    }

    /// A connection (any, retransmissions once).
    pub(crate) fn connection(&mut self, cfg: &Spam, c: &SmtpConnection) -> Option<Crossing> {
        self.servers.expire(c.at.saturating_sub(cfg.window));
        self.servers.touch(c.server, c.at, |n| *n += 1);
        let sums = self.counts.add(cfg.window, c.at, [1, 0, 0]);
        self.check(cfg, sums)
    }

    /// A first contact with its outcome.
    pub(crate) fn observe(&mut self, cfg: &Spam, s: &Smtp) -> Option<Crossing> {
        if s.outcome == Outcome::Dropped {
            return None;
        }
        self.servers.expire(s.at.saturating_sub(cfg.window));
        // Known from its connection already, normally: a first contact whose connection
        // was not logged (the event budget) still names its server.
        self.servers.touch(s.server, s.at, |_| ());
        let failed = u64::from(s.outcome.failed());
        let sums = self.counts.add(cfg.window, s.at, [0, 1, failed]);
        self.check(cfg, sums)
    }

    fn check(&self, cfg: &Spam, [connections, first, failures]: [u64; 3]) -> Option<Crossing> {
        let servers = self.servers.len() as u64;
        let ratio = if first == 0 {
            0.0
        } else {
            failures as f64 / first as f64
        };
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
                first >= MIN_CONNECTIONS_FOR_RATIO && ratio >= cfg.failure_ratio,
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
