//! The HTTP API and `/metrics`, on one listener (plain HTTP, or HTTPS only when
//! `daemon.tls` is set). Errors are JSON `{"error": "..."}`, whatever produced them.
//!
//! Access is decided in one place, [`ROUTES`]: every route's role, and whether the policy
//! may open it to callers without a token (`daemon.open_reads` for the API's GET routes,
//! `daemon.open_metrics` for `/metrics`). Writes always need a bearer token with the
//! route's role, and every write is audited under the token's name. A middleware checks
//! the token, refuses unknown query keys, turns every non-JSON error into JSON, and
//! counts each request in `warden_api_requests_total` and
//! `warden_api_request_duration_seconds`. Connections (caps, timeouts, TLS) are served
//! by [`server`]; request bodies are limited per route ([`RouteSpec::max_body`]).
//!
//! The API knows the daemon only as a [`Backend`]; the documents it serves are
//! [`crate::views`], and every Prometheus family is written by [`crate::metrics`].

mod access;
mod backend;
mod console;
mod error;
mod requests;
mod routes;
mod server;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use axum::{
    routing::{get, post},
    Router,
};
use warden_policy::{DaemonConfig, TlsFiles};

pub use access::{route_spec, Caller, Guard, Need, RouteSpec, ROUTES};
pub use backend::{Backend, Refusal};
pub use console::CONTENT_SECURITY_POLICY;
pub use error::ApiError;
pub use requests::RequestCounts;
pub use server::{listen, raise_fd_limit};

use crate::auth::Tokens;
use access::guarded;
use routes::*;

/// The routes, behind the guard.
pub fn router(backend: Arc<dyn Backend>, guard: Arc<Guard>) -> Router {
    let routes = Router::new()
        .route("/metrics", get(get_metrics))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/tenants", get(get_tenants))
        .route("/api/v1/tenants/{id}", get(get_tenant))
        .route("/api/v1/tenants/{id}/history", get(get_tenant_history))
        .route("/api/v1/tenants/{id}/suspend", post(post_suspend))
        .route("/api/v1/tenants/{id}/unsuspend", post(post_unsuspend))
        .route("/api/v1/flags", get(get_flags))
        .route("/api/v1/flags/summary", get(get_flag_summary))
        .route("/api/v1/flags/{id}", get(get_flag))
        .route("/api/v1/flags/{id}/pcap", get(get_flag_pcap))
        .route("/api/v1/flags/{id}/ack", post(post_flag_ack))
        .route("/api/v1/flags/{id}/dismiss", post(post_flag_dismiss))
        .route("/api/v1/policy", get(get_policy).put(put_policy))
        .route("/api/v1/audit", get(get_audit))
        .route("/api/v1/nodes", get(get_nodes))
        .route("/api/v1/whoami", get(get_whoami))
        .route("/", get(console::to_console))
        .route("/ui", get(console::to_console))
        .route("/ui/", get(console::index))
        .route("/ui/{file}", get(console::file))
        .with_state(backend);
    guarded(routes, guard)
}

/// Loads `daemon.tls`: the certificate chain and key as a TLS server configuration. Every
/// problem names the file.
pub fn tls_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    let cert_name = files.cert.display();
    let key_name = files.key.display();
    std::fs::metadata(&files.cert)
        .with_context(|| format!("daemon.tls.cert {cert_name}: cannot read"))?;
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("daemon.tls.cert {cert_name}: {e}"))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "daemon.tls.cert {cert_name}: no PEM certificate in the file"
    );
    std::fs::metadata(&files.key)
        .with_context(|| format!("daemon.tls.key {key_name}: cannot read"))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow::anyhow!("daemon.tls.key {key_name}: no usable PEM private key: {e}")
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "daemon.tls: certificate {cert_name} and key {key_name} do not make a TLS \
                 identity: {e}"
            )
        })?;
    Ok(Arc::new(config))
}

/// Serves the API on `tcp` until `shutdown` completes: HTTPS only with `tls`, else HTTP,
/// within `daemon.api_limits` (see [`server`]). The backend's management networks are
/// read for each connection, so a policy apply moves the reserve with it.
pub async fn serve(
    tcp: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    backend: Arc<dyn Backend>,
    tokens: Tokens,
    daemon: &DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let counts = Arc::new(RequestCounts::default());
    let limits = &daemon.api_limits;
    let caps = server::caps_for_process(limits);
    tracing::info!(
        open_reads = daemon.open_reads,
        open_metrics = daemon.open_metrics,
        tokens = tokens.len(),
        max_connections = caps.total,
        max_connections_per_source = caps.per_source,
        reserved_connections = caps.reserved,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        body_timeout = ?limits.body_timeout,
        "API access and limits"
    );
    let connections = counts.connections.clone();
    let app = router(
        backend.clone(),
        Arc::new(Guard::new(tokens, daemon, counts)),
    );
    let config = server::Config {
        caps,
        timeouts: limits.into(),
        tls,
        reserve: Box::new(move |ip| ip.is_loopback() || backend.management_contains(ip)),
    };
    server::serve(tcp, app, config, connections, shutdown).await;
    Ok(())
}
