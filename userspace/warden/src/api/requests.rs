//! What the API counts of its requests (`/metrics` writes them out:
//! [`crate::metrics::http`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{Method, StatusCode};

use super::access::ROUTES;
use super::server::ConnMetrics;
use crate::metrics::http::{ApiFigures, Latency, LATENCY_BUCKETS};

#[derive(Debug, Default)]
struct Counts {
    /// `(route, method, status)` -> requests.
    requests: BTreeMap<(String, &'static str, u16), u64>,
    /// route -> latency.
    latency: BTreeMap<String, Latency>,
    /// route -> requests refused with 413.
    body_too_large: BTreeMap<String, u64>,
}

/// API request counts and latencies, and the listener's connection counts. Labels stay
/// bounded: `route` is a route template of the router (or `unmatched`), `method` one of
/// the standard methods (else `other`), and `status` one of the statuses the handlers
/// and axum produce.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: Mutex<Counts>,
    /// Connections: open, refused, closed for a timeout, TLS handshakes.
    pub(super) connections: Arc<ConnMetrics>,
}

/// The `method` label: a standard method, or `other` (any token is a valid method).
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

impl RequestCounts {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // A panic elsewhere while counting leaves the counts usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request on `route` (a template or `unmatched`) that took `took`.
    pub fn observe(&self, route: &str, method: &Method, status: StatusCode, took: Duration) {
        let secs = took.as_secs_f64();
        let mut c = self.lock();
        *c.requests
            .entry((route.to_owned(), method_label(method), status.as_u16()))
            .or_default() += 1;
        let l = c.latency.entry(route.to_owned()).or_default();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        l.buckets[slot] += 1;
        l.sum += secs;
        l.count += 1;
    }

    /// Counts a request on `route` refused with 413 (its body over the route's limit).
    pub(super) fn body_too_large(&self, route: &str) {
        *self
            .lock()
            .body_too_large
            .entry(route.to_owned())
            .or_default() += 1;
    }

    /// The counts so far, for `/metrics`.
    pub fn figures(&self) -> ApiFigures {
        let c = self.lock();
        // Every route that takes a body has a series from the start, so an increase shows.
        let mut body_too_large = c.body_too_large.clone();
        for r in ROUTES.iter().filter(|r| r.method != "GET") {
            body_too_large.entry(r.path.to_owned()).or_default();
        }
        ApiFigures {
            requests: c.requests.clone(),
            latency: c.latency.clone(),
            body_too_large,
            connections: self.connections.figures(),
        }
    }
}
