//! What the API counts of its requests (`/metrics` writes them out:
//! [`crate::metrics::http`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{Method, StatusCode};

use super::access::ROUTES;
use super::server::ConnMetrics;
use crate::metrics::http::{ApiFigures, ApiSeries};

/// API request counts and latencies, and the listener's connection counts. Labels stay
/// bounded: `route` is a route template of the router (or `unmatched`), `method` one of
/// the standard methods (else `other`), and `status` one of the statuses the handlers
/// and axum produce.
#[derive(Debug)]
pub struct RequestCounts {
    /// `(route, method, status)` -> requests.
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    /// The latency histogram and the 413 counter, counted by the `prometheus` crate.
    series: ApiSeries,
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

impl Default for RequestCounts {
    fn default() -> Self {
        // Every route that takes a body has a 413 series from the start, so an increase
        // shows.
        let body_routes = ROUTES.iter().filter(|r| r.method != "GET").map(|r| r.path);
        RequestCounts {
            requests: Mutex::default(),
            series: ApiSeries::new(body_routes),
            connections: Arc::default(),
        }
    }
}

impl RequestCounts {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, &'static str, u16), u64>> {
        // A panic elsewhere while counting leaves the counts usable.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request on `route` (a template or `unmatched`) that took `took`.
    pub fn observe(&self, route: &str, method: &Method, status: StatusCode, took: Duration) {
        *self
            .lock()
            .entry((route.to_owned(), method_label(method), status.as_u16()))
            .or_default() += 1;
        self.series.observe(route, took.as_secs_f64());
    }

    /// Counts a request on `route` refused with 413 (its body over the route's limit).
    pub(super) fn body_too_large(&self, route: &str) {
        self.series.body_too_large(route);
    }

    /// The counts so far, for `/metrics`.
    pub fn figures(&self) -> ApiFigures {
        ApiFigures {
            requests: self.lock().clone(),
            families: self.series.gather(),
            connections: self.connections.figures(),
        }
    }
}
