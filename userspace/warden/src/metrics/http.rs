//! The API's own families: requests by route template, method and status, their
//! latency, bodies refused for their size, and the listener's connections. The API
//! counts ([`crate::api`] and its server); these are the figures it hands over.

use std::collections::BTreeMap;

use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::family::{write_families, Family};

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The API families the `prometheus` crate counts itself: the request latency
/// histogram and the 413 counter, in a registry of their own (one series per route
/// template: a bounded set).
#[derive(Debug)]
pub struct ApiSeries {
    registry: Registry,
    latency: HistogramVec,
    body_too_large: IntCounterVec,
}

impl ApiSeries {
    /// The families, with a 413 series at 0 for each of `body_routes` (the routes that
    /// take a body), so an increase shows from the first one.
    pub fn new<'r>(body_routes: impl IntoIterator<Item = &'r str>) -> ApiSeries {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "warden_api_request_duration_seconds",
                "Time to answer an API request, by route template.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("a valid name, label and increasing buckets");
        let body_too_large = IntCounterVec::new(
            Opts::new(
                "warden_api_body_too_large_total",
                "API requests refused with 413 because their body was over the route's limit, by route template.",
            ),
            &["route"],
        )
        .expect("a valid name and label");
        for route in body_routes {
            body_too_large.with_label_values(&[route]);
        }
        let registry = Registry::new();
        for c in [
            Box::new(latency.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(body_too_large.clone()),
        ] {
            registry
                .register(c)
                .expect("two families of distinct names in a new registry");
        }
        ApiSeries {
            registry,
            latency,
            body_too_large,
        }
    }

    /// One request on `route` answered in `secs` seconds.
    pub fn observe(&self, route: &str, secs: f64) {
        self.latency.with_label_values(&[route]).observe(secs);
    }

    /// One request on `route` refused with 413.
    pub fn body_too_large(&self, route: &str) {
        self.body_too_large.with_label_values(&[route]).inc();
    }

    /// The families now (sorted by name, series by label value).
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

/// What the API counted. Labels stay bounded: `route` is a route template of the router
/// (or `unmatched`), `method` one of the standard methods (else `other`), and `status`
/// one of the statuses the handlers and axum produce.
#[derive(Debug, Default, Clone)]
pub struct ApiFigures {
    /// `(route, method, status)` -> requests. Counted in a map, not a `prometheus`
    /// `IntCounterVec`: the crate writes a vec's labels sorted by name, and the labels of
    /// `warden_api_requests_total` are written `route`, `method`, `status` (as tests and
    /// users' scripts read them).
    pub requests: BTreeMap<(String, &'static str, u16), u64>,
    /// The latency histogram and the 413 counter ([`ApiSeries::gather`]).
    pub families: Vec<MetricFamily>,
    /// The listener's connections.
    pub connections: ConnFigures,
}

/// What happened to the API's connections.
#[derive(Debug, Default, Clone)]
pub struct ConnFigures {
    /// Open now.
    pub open: u64,
    /// Refused at accept, by reason.
    pub refused: Vec<(&'static str, u64)>,
    /// Closed by the server for a timeout, by reason.
    pub closed: Vec<(&'static str, u64)>,
    /// TLS handshakes by outcome, when the listener serves HTTPS.
    pub tls: Option<Vec<(&'static str, u64)>>,
    /// Handshakes under way at most (the `refused` outcome's bound).
    pub max_handshakes: usize,
}

/// Appends the API families in the Prometheus text format.
pub fn render_api(out: &mut String, f: &ApiFigures) {
    let mut requests = Family::counter(
        "warden_api_requests_total",
        "API requests by route template, method and status.",
    );
    for ((route, method, status), n) in &f.requests {
        requests.count(
            &[
                ("route", route.as_str()),
                ("method", *method),
                ("status", &status.to_string()),
            ],
            *n,
        );
    }
    requests.write(out);
    write_families(out, &f.families);
    render_connections(out, &f.connections);
}

/// Appends the connection families in the Prometheus text format.
pub fn render_connections(out: &mut String, c: &ConnFigures) {
    Family::gauge(
        "warden_api_connections_open",
        "API connections open now (TLS handshakes included).",
    )
    .count(&[], c.open)
    .write(out);
    let mut refused = Family::counter(
        "warden_api_connections_refused_total",
        "API connections refused at accept by the limit they met: answered 503 and closed (over HTTPS closed unanswered).",
    );
    for (reason, n) in &c.refused {
        refused.count(&[("reason", *reason)], *n);
    }
    refused.write(out);
    let mut closed = Family::counter(
        "warden_api_connections_closed_total",
        "API connections the server closed because a timeout of daemon.api_limits passed.",
    );
    for (reason, n) in &c.closed {
        closed.count(&[("reason", *reason)], *n);
    }
    closed.write(out);
    if let Some(tls) = &c.tls {
        let mut f = Family::counter(
            "warden_api_tls_handshakes_total",
            &format!(
                "TLS handshakes on the API listener by outcome; refused = closed unread because {} handshakes were under way.",
                c.max_handshakes
            ),
        );
        for (outcome, n) in tls {
            f.count(&[("outcome", *outcome)], *n);
        }
        f.write(out);
    }
}
