//! The API's own families: requests by route template, method and status, their
//! latency, bodies refused for their size, and the listener's connections. The API
//! counts ([`crate::api`] and its server); these are the figures it hands over.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// One route's latency histogram.
#[derive(Debug, Default, Clone)]
pub struct Latency {
    /// Cumulative counts are computed at render time; these are per bucket, plus one for
    /// everything above the last bound.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

/// What the API counted. Labels stay bounded: `route` is a route template of the router
/// (or `unmatched`), `method` one of the standard methods (else `other`), and `status`
/// one of the statuses the handlers and axum produce.
#[derive(Debug, Default, Clone)]
pub struct ApiFigures {
    /// `(route, method, status)` -> requests.
    pub requests: BTreeMap<(String, &'static str, u16), u64>,
    /// route -> latency.
    pub latency: BTreeMap<String, Latency>,
    /// route -> requests refused with 413; every route that takes a body is listed,
    /// with 0 until one is refused, so an increase shows.
    pub body_too_large: BTreeMap<String, u64>,
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

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Appends the API families in the Prometheus text format.
pub fn render_api(out: &mut String, f: &ApiFigures) {
    let _ = writeln!(
        out,
        "# HELP warden_api_requests_total API requests by route template, method and status.\n\
         # TYPE warden_api_requests_total counter"
    );
    for ((route, method, status), n) in &f.requests {
        let _ = writeln!(
            out,
            "warden_api_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
            escape(route)
        );
    }
    let _ = writeln!(
        out,
        "# HELP warden_api_request_duration_seconds Time to answer an API request, by route template.\n\
         # TYPE warden_api_request_duration_seconds histogram"
    );
    for (route, l) in &f.latency {
        let route = escape(route);
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS.iter().zip(l.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "warden_api_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "warden_api_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
             warden_api_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
             warden_api_request_duration_seconds_count{{route=\"{route}\"}} {}",
            l.count, l.sum, l.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP warden_api_body_too_large_total API requests refused with 413 because their body \
         was over the route's limit, by route template.\n\
         # TYPE warden_api_body_too_large_total counter"
    );
    for (route, n) in &f.body_too_large {
        let _ = writeln!(
            out,
            "warden_api_body_too_large_total{{route=\"{}\"}} {n}",
            escape(route)
        );
    }
    render_connections(out, &f.connections);
}

/// Appends the connection families in the Prometheus text format.
pub fn render_connections(out: &mut String, c: &ConnFigures) {
    let _ = writeln!(
        out,
        "# HELP warden_api_connections_open API connections open now (TLS handshakes included).\n\
         # TYPE warden_api_connections_open gauge\n\
         warden_api_connections_open {}",
        c.open
    );
    let _ = writeln!(
        out,
        "# HELP warden_api_connections_refused_total API connections refused at accept by the \
         limit they met: answered 503 and closed (over HTTPS closed unanswered).\n\
         # TYPE warden_api_connections_refused_total counter"
    );
    for (reason, n) in &c.refused {
        let _ = writeln!(
            out,
            "warden_api_connections_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP warden_api_connections_closed_total API connections the server closed because a \
         timeout of daemon.api_limits passed.\n\
         # TYPE warden_api_connections_closed_total counter"
    );
    for (reason, n) in &c.closed {
        let _ = writeln!(
            out,
            "warden_api_connections_closed_total{{reason=\"{reason}\"}} {n}"
        );
    }
    if let Some(tls) = &c.tls {
        let _ = writeln!(
            out,
            "# HELP warden_api_tls_handshakes_total TLS handshakes on the API listener by outcome; \
             refused = closed unread because {} handshakes were under way.\n\
             # TYPE warden_api_tls_handshakes_total counter",
            c.max_handshakes
        );
        for (name, n) in tls {
            let _ = writeln!(
                out,
                "warden_api_tls_handshakes_total{{outcome=\"{name}\"}} {n}"
            );
        }
    }
}
