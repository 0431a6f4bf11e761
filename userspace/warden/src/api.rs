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

mod server;

pub use server::{listen, raise_fd_limit};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::{
    body::{Body, Bytes},
    extract::{
        rejection::{JsonRejection, QueryRejection},
        DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, Request, State,
    },
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Extension, Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::json;

use crate::{
    auth::{authorize, AuthRejection, Identity, Role, Tokens},
    daemon::{Refusal, Shared},
    metrics,
};
use warden_policy::{
    flag::{FlagFilter, FlagState},
    DaemonConfig, Kind, TlsFiles,
};

/// An API error: a status and a message (and, for an invalid policy, every error).
pub struct ApiError(StatusCode, String, Vec<String>);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError(status, msg.into(), Vec::new())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.2.is_empty() {
            json!({ "error": self.1 })
        } else {
            json!({ "error": self.1, "errors": self.2 })
        };
        (self.0, Json(body)).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "API request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::UnknownTenant(_) => ApiError::new(StatusCode::NOT_FOUND, r.to_string()),
            Refusal::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            Refusal::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            Refusal::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            Refusal::InvalidPolicy(errors) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid policy: {} error(s)", errors.len()),
                errors.lines(),
            ),
            Refusal::Forbidden(m, rules) => ApiError(StatusCode::FORBIDDEN, m, rules),
            Refusal::Internal(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    /// axum's `Json` extractor's refusals, as JSON errors: a body that does not match
    /// names the offending field (axum reports the path to it).
    fn from(r: JsonRejection) -> Self {
        let status = match &r {
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                StatusCode::BAD_REQUEST
            }
            other => other.status(),
        };
        ApiError::new(status, r.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON request body into `T`; an empty body reads as `{}`. A body that does not
/// fit is a 400 naming the offending field.
fn json_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("body is not valid JSON: {inner}")
            }
            _ if path == "." => format!("invalid body: {inner}"),
            _ => format!("invalid body: field `{path}`: {inner}"),
        };
        ApiError::new(StatusCode::BAD_REQUEST, message)
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// A required free-text field (`reason`): present, a string, not blank.
fn required_text(field: &str, value: String) -> ApiResult<String> {
    if value.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("field `{field}` must not be empty"),
        ));
    }
    Ok(value)
}

/// What a route needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `/metrics`: role viewer, unless `daemon.open_metrics`.
    Metrics,
    /// An API read: role viewer, unless `daemon.open_reads`.
    Read,
    /// A write: always a token with at least this role.
    Write(Role),
}

/// One route of the API: its template (as given to the router), method, what it needs,
/// the query keys it accepts (any other key is a 400 naming it), and its largest body.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub path: &'static str,
    pub method: &'static str,
    pub need: Need,
    pub query: &'static [&'static str],
    /// The largest request body, in bytes; a larger one is refused with 413 before it
    /// is read (by its `Content-Length`) or as soon as it passes the limit (chunked).
    pub max_body: usize,
}

const fn route(
    method: &'static str,
    path: &'static str,
    need: Need,
    query: &'static [&'static str],
) -> RouteSpec {
    RouteSpec {
        path,
        method,
        need,
        query,
        max_body: MAX_BODY_BYTES,
    }
}

impl RouteSpec {
    const fn max_body(self, max_body: usize) -> RouteSpec {
        RouteSpec { max_body, ..self }
    }
}

/// The largest policy `PUT /api/v1/policy` takes: the policy's own limit (a
/// 100,000-tenant policy is tens of MB of YAML, past axum's default 2 MiB body limit).
/// A larger body is refused with 413.
const MAX_POLICY_BYTES: usize = warden_policy::MAX_POLICY_BYTES;

/// The largest body of every other route: the writes take a reason or nothing (a
/// reason of a few KiB is already long), and the reads take none.
const MAX_BODY_BYTES: usize = 64 << 10;

/// Every route and what it needs. A route the router serves but this table does not
/// list is refused (500): access fails closed.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/metrics", Need::Metrics, &[]),
    route("GET", "/api/v1/status", Need::Read, &[]),
    route("GET", "/api/v1/tenants", Need::Read, &[]),
    route("GET", "/api/v1/tenants/{id}", Need::Read, &[]),
    route(
        "POST",
        "/api/v1/tenants/{id}/suspend",
        Need::Write(Role::Admin),
        &[],
    ),
    route(
        "POST",
        "/api/v1/tenants/{id}/unsuspend",
        Need::Write(Role::Admin),
        &[],
    ),
    route("GET", "/api/v1/flags", Need::Read, FLAG_QUERY_KEYS),
    route("GET", "/api/v1/flags/{id}", Need::Read, &[]),
    route("GET", "/api/v1/flags/{id}/pcap", Need::Read, &[]),
    route(
        "POST",
        "/api/v1/flags/{id}/ack",
        Need::Write(Role::Operator),
        &[],
    ),
    route(
        "POST",
        "/api/v1/flags/{id}/dismiss",
        Need::Write(Role::Operator),
        &[],
    ),
    route("PUT", "/api/v1/policy", Need::Write(Role::Operator), &[]).max_body(MAX_POLICY_BYTES),
    route("GET", "/api/v1/audit", Need::Read, AUDIT_QUERY_KEYS),
];

/// The access rule of `method` on the route template `path`; `HEAD` is checked as `GET`.
pub fn route_spec(path: &str, method: &Method) -> Option<&'static RouteSpec> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

/// Who may call the API: the token file and what the policy opened.
pub struct Guard {
    tokens: Tokens,
    open_reads: bool,
    open_metrics: bool,
    metrics: Arc<ApiMetrics>,
}

impl Guard {
    /// The guard for `tokens` with the `daemon` section's `open_reads` and `open_metrics`.
    pub fn new(tokens: Tokens, daemon: &DaemonConfig, metrics: Arc<ApiMetrics>) -> Guard {
        Guard {
            tokens,
            open_reads: daemon.open_reads,
            open_metrics: daemon.open_metrics,
            metrics,
        }
    }

    /// Decides a request on `route` (its template; `None` when no route matched): `Ok`
    /// with the caller's identity when a token was needed, or the refusal to send.
    fn admit(
        &self,
        route: Option<&str>,
        method: &Method,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
    ) -> Result<Option<Identity>, Denied> {
        let Some(route) = route else {
            // No route: the fallback answers 404.
            return Ok(None);
        };
        let Some(spec) = route_spec(route, method) else {
            if ROUTES.iter().any(|r| r.path == route) {
                // A known route with another method: the router answers 405.
                return Ok(None);
            }
            tracing::error!(route, method = %method, "route without an access rule refused");
            return Err(Denied::Api(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{method} {route} has no access rule; refused"),
            )));
        };
        let open = match spec.need {
            Need::Metrics => self.open_metrics,
            Need::Read => self.open_reads,
            Need::Write(_) => false,
        };
        let identity = if open {
            None
        } else {
            let need = match spec.need {
                Need::Write(role) => role,
                Need::Metrics | Need::Read => Role::Viewer,
            };
            // 401 (with WWW-Authenticate) or 403 naming the role needed.
            Some(authorize(&self.tokens, headers, need).map_err(Denied::Auth)?)
        };
        check_query_keys(spec, uri).map_err(Denied::Api)?;
        Ok(identity)
    }
}

/// Why the guard refused a request.
enum Denied {
    /// 401 (with a `WWW-Authenticate` challenge) or 403 naming the role needed.
    Auth(AuthRejection),
    /// Any other refusal.
    Api(ApiError),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Auth(r) => r.into_response(),
            Denied::Api(e) => e.into_response(),
        }
    }
}

/// Refuses a query key the route does not take, naming it.
fn check_query_keys(spec: &RouteSpec, uri: &axum::http::Uri) -> Result<(), ApiError> {
    if uri.query().is_none_or(str::is_empty) {
        return Ok(());
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    match pairs
        .iter()
        .find(|(k, _)| !spec.query.contains(&k.as_str()))
    {
        None => Ok(()),
        Some((key, _)) if spec.query.is_empty() => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown query parameter `{key}`: {} {} takes none",
                spec.method, spec.path
            ),
        )),
        Some((key, _)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown query parameter `{key}`; expected one of: {}",
                spec.query.join(", ")
            ),
        )),
    }
}

/// The caller of a write, as the guard found it (the token's identity).
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no caller identity: this route's access rule is not a write",
                )
            })
    }
}

/// The routes, behind the guard.
pub fn router(shared: Arc<Shared>, guard: Arc<Guard>) -> Router {
    let routes = Router::new()
        .route("/metrics", get(get_metrics))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/tenants", get(get_tenants))
        .route("/api/v1/tenants/{id}", get(get_tenant))
        .route("/api/v1/tenants/{id}/suspend", post(post_suspend))
        .route("/api/v1/tenants/{id}/unsuspend", post(post_unsuspend))
        .route("/api/v1/flags", get(get_flags))
        .route("/api/v1/flags/{id}", get(get_flag))
        .route("/api/v1/flags/{id}/pcap", get(get_flag_pcap))
        .route("/api/v1/flags/{id}/ack", post(post_flag_ack))
        .route("/api/v1/flags/{id}/dismiss", post(post_flag_dismiss))
        .route("/api/v1/policy", put(put_policy))
        .route("/api/v1/audit", get(get_audit))
        .with_state(shared);
    guarded(routes, guard)
}

/// `routes` with the 404 fallback, the guard and the metrics behind every route.
fn guarded(routes: Router, guard: Arc<Guard>) -> Router {
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(Extension(guard.metrics.clone()))
        .layer(middleware::from_fn_with_state(guard, guard_layer))
}

/// The route label of a request: its template, or `unmatched`. Bounded by the router.
const UNMATCHED: &str = "unmatched";

async fn guard_layer(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let spec = route.as_deref().and_then(|r| route_spec(r, &method));
    let response = match guard.admit(route.as_deref(), &method, req.headers(), req.uri()) {
        Ok(identity) => {
            if let Some(identity) = identity {
                req.extensions_mut().insert(identity);
            }
            match spec {
                // Unmatched routes and other methods read no body.
                None => next.run(req).await,
                Some(spec) => match body_too_large(spec, req.headers()) {
                    Some(refusal) => refusal.into_response(),
                    None => {
                        // The route's limit for a body without Content-Length (chunked),
                        // applied by axum's body extractors as they read.
                        let limited =
                            tower::Layer::layer(&DefaultBodyLimit::max(spec.max_body), next);
                        match tower::ServiceExt::oneshot(limited, req).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }
                },
            }
        }
        Err(refusal) => refusal.into_response(),
    };
    let response = json_errors(route.as_deref(), &method, response).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        guard
            .metrics
            .body_too_large(route.as_deref().unwrap_or(UNMATCHED));
    }
    guard.metrics.observe(
        route.as_deref().unwrap_or(UNMATCHED),
        &method,
        response.status(),
        started.elapsed(),
    );
    response
}

/// A 413 when the request's `Content-Length` is over the route's limit: refused before
/// a byte of the body is read.
fn body_too_large(spec: &RouteSpec, headers: &HeaderMap) -> Option<ApiError> {
    let length: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (length > spec.max_body as u64).then(|| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {length} bytes is over the limit of {} bytes for {} {}",
                spec.max_body, spec.method, spec.path
            ),
        )
    })
}

/// Largest non-JSON error body carried into the JSON message.
const ERROR_BODY_LIMIT: usize = 4096;

/// Turns an error response that is not JSON (axum's own rejections, 405) into
/// `{"error": "..."}`, keeping its status and headers (`Allow`, `WWW-Authenticate`).
async fn json_errors(route: Option<&str>, method: &Method, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, ERROR_BODY_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let route = route.unwrap_or("this route");
        let allowed: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.path == route)
            .map(|r| r.method)
            .collect();
        format!(
            "method {method} not allowed on {route}; allowed: {}",
            allowed.join(", ")
        )
    } else if let (StatusCode::PAYLOAD_TOO_LARGE, Some(spec)) =
        (status, route.and_then(|r| route_spec(r, method)))
    {
        // A chunked body that ran past the limit while a handler read it.
        format!(
            "request body over the limit of {} bytes for {} {}",
            spec.max_body, spec.method, spec.path
        )
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// Runs blocking daemon work (map syscalls, SQLite) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {e}"),
        )
    })?
}

async fn get_metrics(
    State(s): State<Arc<Shared>>,
    Extension(api): Extension<Arc<ApiMetrics>>,
) -> ApiResult<Response> {
    let snap = blocking(move || Ok(s.snapshot()?)).await?;
    let mut text = metrics::render(&snap);
    api.render(&mut text);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn get_status(State(s): State<Arc<Shared>>) -> ApiResult<Response> {
    Ok(Json(blocking(move || Ok(s.status())).await?).into_response())
}

async fn get_tenants(State(s): State<Arc<Shared>>) -> ApiResult<Response> {
    Ok(Json(blocking(move || Ok(s.tenants()?)).await?).into_response())
}

async fn get_tenant(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Response> {
    let t = blocking(move || Ok(s.tenant(&id).map(|t| (t, id))?)).await?;
    match t {
        (Some(t), _) => Ok(Json(t).into_response()),
        (None, id) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no tenant {id:?}"),
        )),
    }
}

/// Body of suspend and unsuspend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

async fn post_suspend(
    State(s): State<Arc<Shared>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    set_suspended(s, who, id, body, true).await
}

async fn post_unsuspend(
    State(s): State<Arc<Shared>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    set_suspended(s, who, id, body, false).await
}

/// Suspend or unsuspend (admin, checked by the guard): a reason required, audited under
/// the token's name.
async fn set_suspended(
    s: Arc<Shared>,
    who: Identity,
    id: String,
    body: Bytes,
    suspend: bool,
) -> ApiResult<Response> {
    let mut body: ReasonBody = json_body(&body)?;
    body.reason = required_text("reason", body.reason)?;
    let out = blocking(move || {
        Ok(if suspend {
            s.suspend(&id, &body.reason, &who.name)?
        } else {
            s.unsuspend(&id, &body.reason, &who.name)?
        })
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn put_policy(
    State(s): State<Arc<Shared>>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let name = headers
        .get("x-warden-policy-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<request>")
        .to_string();
    // Text that is not UTF-8 is an error at its line, like any other in the policy.
    let generation = blocking(move || Ok(s.apply_text(&body, &name, &who.name, who.role)?)).await?;
    Ok(Json(json!({ "policy_generation": generation })).into_response())
}

/// The query keys `GET /api/v1/audit` accepts.
const AUDIT_QUERY_KEYS: &[&str] = &["since", "limit"];

/// Entries `GET /api/v1/audit` returns without `limit`, and at most.
const AUDIT_DEFAULT_LIMIT: usize = 100;
const AUDIT_MAX_LIMIT: usize = 10_000;

/// Parses the query of `GET /api/v1/audit`: `since` (unix seconds) and `limit`.
fn audit_query(pairs: &[(String, String)]) -> ApiResult<(Option<i64>, usize)> {
    let bad = |msg: String| ApiError::new(StatusCode::BAD_REQUEST, msg);
    let (mut since, mut limit) = (None, None);
    let mut seen = std::collections::HashSet::new();
    for (key, value) in pairs {
        if !seen.insert(key.as_str()) {
            return Err(bad(format!("query parameter `{key}` given more than once")));
        }
        match key.as_str() {
            "since" => {
                since = Some(value.parse::<i64>().map_err(|_| {
                    bad(format!(
                        "query parameter `since`: `{value}` is not a unix time in seconds"
                    ))
                })?)
            }
            "limit" => {
                limit = Some(value.parse::<usize>().map_err(|_| {
                    bad(format!(
                        "query parameter `limit`: `{value}` is not a non-negative integer"
                    ))
                })?)
            }
            _ => {
                return Err(bad(format!(
                    "unknown query parameter `{key}`; expected one of: {}",
                    AUDIT_QUERY_KEYS.join(", ")
                )))
            }
        }
    }
    Ok((
        since,
        limit.unwrap_or(AUDIT_DEFAULT_LIMIT).min(AUDIT_MAX_LIMIT),
    ))
}

async fn get_audit(
    State(s): State<Arc<Shared>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let (since, limit) = audit_query(&pairs)?;
    Ok(Json(blocking(move || Ok(s.audit(since, limit)?)).await?).into_response())
}

/// The query keys `GET /api/v1/flags` accepts.
const FLAG_QUERY_KEYS: &[&str] = &["tenant", "kind", "since", "state", "limit"];

/// Parses the query of `GET /api/v1/flags`; an unknown, repeated or malformed key is a 400
/// naming it.
fn flag_filter(pairs: &[(String, String)]) -> ApiResult<FlagFilter> {
    let bad = |msg: String| ApiError::new(StatusCode::BAD_REQUEST, msg);
    let mut f = FlagFilter::default();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in pairs {
        if !seen.insert(key.as_str()) {
            return Err(bad(format!("query parameter `{key}` given more than once")));
        }
        match key.as_str() {
            "tenant" => f.tenant = Some(value.clone()),
            "kind" => {
                f.kind = Some(
                    value
                        .parse::<Kind>()
                        .map_err(|e| bad(format!("query parameter `kind`: {e}")))?,
                )
            }
            "since" => {
                f.since = Some(value.parse::<i64>().map_err(|_| {
                    bad(format!(
                        "query parameter `since`: `{value}` is not a unix time in seconds"
                    ))
                })?)
            }
            "state" => {
                f.state = Some(
                    value
                        .parse::<FlagState>()
                        .map_err(|e| bad(format!("query parameter `state`: {e}")))?,
                )
            }
            "limit" => {
                f.limit = Some(value.parse::<usize>().map_err(|_| {
                    bad(format!(
                        "query parameter `limit`: `{value}` is not a non-negative integer"
                    ))
                })?)
            }
            _ => {
                return Err(bad(format!(
                    "unknown query parameter `{key}`; expected one of: {}",
                    FLAG_QUERY_KEYS.join(", ")
                )))
            }
        }
    }
    Ok(f)
}

/// A flag id from the path; anything but an integer names no flag.
fn flag_id(id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("flag {id:?} not found")))
}

async fn get_flags(
    State(s): State<Arc<Shared>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let filter = flag_filter(&pairs)?;
    Ok(Json(blocking(move || Ok(s.flags(&filter)?)).await?).into_response())
}

async fn get_flag(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = flag_id(&id)?;
    match blocking(move || Ok(s.flag(id)?)).await? {
        Some(f) => Ok(Json(f).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("flag {id} not found"),
        )),
    }
}

async fn get_flag_pcap(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = flag_id(&id)?;
    match blocking(move || Ok(s.flag_pcap(id)?)).await? {
        Some(bytes) => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.tcpdump.pcap".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"flag-{id}.pcap\""),
                ),
            ],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("flag {id} not found"),
        )),
    }
}

/// Body of ack: empty, or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {}

async fn post_flag_ack(
    State(s): State<Arc<Shared>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = flag_id(&id)?;
    let AckBody {} = json_body(&body)?;
    let flag =
        blocking(move || Ok(s.set_flag_state(id, FlagState::Acked, None, &who.name)?)).await?;
    Ok(Json(flag).into_response())
}

async fn post_flag_dismiss(
    State(s): State<Arc<Shared>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = flag_id(&id)?;
    let body: ReasonBody = json_body(&body)?;
    let reason = required_text("reason", body.reason)?;
    let flag = blocking(move || {
        Ok(s.set_flag_state(id, FlagState::Dismissed, Some(&reason), &who.name)?)
    })
    .await?;
    Ok(Json(flag).into_response())
}

/// Upper bounds (seconds) of the request latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// One route's latency histogram.
#[derive(Debug, Default, Clone)]
struct Latency {
    /// Cumulative counts are computed at render time; these are per bucket, plus one for
    /// everything above the last bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct ApiCounts {
    /// `(route, method, status)` -> requests.
    requests: BTreeMap<(String, &'static str, u16), u64>,
    /// route -> latency.
    latency: BTreeMap<String, Latency>,
    /// route -> requests refused with 413.
    body_too_large: BTreeMap<String, u64>,
}

/// API request counts and latencies. Labels stay bounded: `route` is a route template of
/// the router (or `unmatched`), `method` one of the standard methods (else `other`), and
/// `status` one of the statuses the handlers and axum produce.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    counts: Mutex<ApiCounts>,
    /// Connections: open, refused, closed for a timeout, TLS handshakes.
    connections: Arc<server::ConnMetrics>,
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

impl ApiMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, ApiCounts> {
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
    fn body_too_large(&self, route: &str) {
        *self
            .lock()
            .body_too_large
            .entry(route.to_owned())
            .or_default() += 1;
    }

    /// Appends the API families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let c = self.lock();
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP warden_api_requests_total API requests by route template, method and status.\n\
             # TYPE warden_api_requests_total counter"
        );
        for ((route, method, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "warden_api_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP warden_api_request_duration_seconds Time to answer an API request, by route template.\n\
             # TYPE warden_api_request_duration_seconds histogram"
        );
        for (route, l) in &c.latency {
            let route = esc(route);
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
        // Every route that takes a body has a series from the start, so an increase shows.
        let mut too_large = c.body_too_large.clone();
        for r in ROUTES.iter().filter(|r| r.method != "GET") {
            too_large.entry(r.path.to_owned()).or_default();
        }
        for (route, n) in &too_large {
            let _ = writeln!(
                out,
                "warden_api_body_too_large_total{{route=\"{}\"}} {n}",
                esc(route)
            );
        }
        drop(c);
        self.connections.render(out);
    }
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
/// within `daemon.api_limits` (see [`server`]). `shared.management()` is read for each
/// connection, so a policy apply moves the reserve with it.
pub async fn serve(
    tcp: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    tokens: Tokens,
    daemon: &DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(ApiMetrics::default());
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
    let connections = metrics.connections.clone();
    let app = router(
        shared.clone(),
        Arc::new(Guard::new(tokens, daemon, metrics)),
    );
    let config = server::Config {
        caps,
        timeouts: limits.into(),
        tls,
        reserve: Box::new(move |ip| {
            ip.is_loopback() || shared.management().iter().any(|net| net.contains(&ip))
        }),
    };
    server::serve(tcp, app, config, connections, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_token;
    use tower::ServiceExt as _;

    const VIEWER: &str = "unit-viewer";
    const OPERATOR: &str = "unit-operator";
    const ADMIN: &str = "unit-admin";

    fn tokens() -> Tokens {
        let text = format!(
            "- {{name: vera, role: viewer, sha256: {}}}\n\
             - {{name: otto, role: operator, sha256: {}}}\n\
             - {{name: ada, role: admin, sha256: {}}}\n",
            hash_token(VIEWER),
            hash_token(OPERATOR),
            hash_token(ADMIN)
        );
        Tokens::parse(&text, "t.yaml").expect("token file parses")
    }

    /// A router with the real guard in front of stand-in handlers: reads answer "ok",
    /// writes answer the caller's name.
    fn app(open_reads: bool, open_metrics: bool) -> (Router, Arc<ApiMetrics>) {
        let daemon = DaemonConfig {
            tokens: Some("/t.yaml".into()),
            open_reads,
            open_metrics,
            ..DaemonConfig::default()
        };
        let metrics = Arc::new(ApiMetrics::default());
        let guard = Arc::new(Guard::new(tokens(), &daemon, metrics.clone()));
        let read = get(|| async { "ok" });
        // Writes read their body, as the real ones do (so its limit applies).
        let write = |Caller(who): Caller, _body: Bytes| async move { who.name };
        let routes = Router::new()
            .route("/metrics", read.clone())
            .route("/api/v1/status", read.clone())
            .route("/api/v1/tenants/{id}", read.clone())
            .route("/api/v1/audit", read)
            .route("/api/v1/tenants/{id}/suspend", post(write))
            .route("/api/v1/flags/{id}/ack", post(write))
            .route("/api/v1/policy", put(write))
            // Served but missing from ROUTES: refused.
            .route("/api/v1/unlisted", get(|| async { "leak" }));
        (guarded(routes, guard), metrics)
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: serde_json::Value,
        text: String,
    }

    async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>) -> Answer {
        let req = Request::builder().method(method).uri(uri);
        send(app, req, token, Body::empty()).await
    }

    async fn send(
        app: &Router,
        mut req: axum::http::request::Builder,
        token: Option<&str>,
        body: Body,
    ) -> Answer {
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    fn error(a: &Answer) -> &str {
        a.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not a JSON error: {:?} {}", a.status, a.text))
    }

    #[tokio::test]
    async fn closed_reads_need_a_valid_token_of_any_role() {
        let (app, _) = app(false, false);
        for uri in ["/metrics", "/api/v1/status", "/api/v1/tenants/acme"] {
            let a = call(&app, "GET", uri, None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
            assert!(error(&a).contains("missing bearer token"), "{uri}");
            let challenge = a.headers.get(header::WWW_AUTHENTICATE).expect("challenge");
            assert!(challenge.to_str().expect("ascii").starts_with("Bearer"));
            let a = call(&app, "GET", uri, Some("not-a-token")).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(error(&a), "unknown bearer token");
            for token in [VIEWER, OPERATOR, ADMIN] {
                let a = call(&app, "GET", uri, Some(token)).await;
                assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, "ok"), "{uri}");
            }
        }
    }

    #[tokio::test]
    async fn writes_need_their_role_and_hand_the_caller_to_the_handler() {
        for open in [false, true] {
            let (app, _) = app(open, open);
            for (method, uri, need) in [
                ("POST", "/api/v1/tenants/acme/suspend", Role::Admin),
                ("POST", "/api/v1/flags/1/ack", Role::Operator),
                ("PUT", "/api/v1/policy", Role::Operator),
            ] {
                let a = call(&app, method, uri, None).await;
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri} open={open}");
                assert!(a.headers.contains_key(header::WWW_AUTHENTICATE));
                for (token, role, name) in [
                    (VIEWER, Role::Viewer, "vera"),
                    (OPERATOR, Role::Operator, "otto"),
                    (ADMIN, Role::Admin, "ada"),
                ] {
                    let a = call(&app, method, uri, Some(token)).await;
                    if role >= need {
                        assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, name));
                    } else {
                        assert_eq!(a.status, StatusCode::FORBIDDEN, "{uri} as {name}");
                        assert!(
                            error(&a).contains(&format!("needs role `{need}`")),
                            "{}",
                            a.text
                        );
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn open_reads_and_open_metrics_are_separate() {
        let (reads, _) = app(true, false);
        assert_eq!(
            call(&reads, "GET", "/api/v1/status", None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            call(&reads, "GET", "/metrics", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        let (scrape, _) = app(false, true);
        assert_eq!(
            call(&scrape, "GET", "/metrics", None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            call(&scrape, "GET", "/api/v1/status", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn unknown_routes_methods_and_unlisted_routes_answer_json() {
        let (app, _) = app(true, true);
        let a = call(&app, "GET", "/api/v2/nothing", None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(error(&a), "no such route");
        let a = call(&app, "DELETE", "/api/v1/status", Some(ADMIN)).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(a.headers.contains_key(header::ALLOW));
        assert!(
            error(&a).starts_with("method DELETE not allowed on /api/v1/status; allowed: GET"),
            "{}",
            a.text
        );
        let a = call(&app, "GET", "/api/v1/unlisted", Some(ADMIN)).await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error(&a).contains("no access rule"), "{}", a.text);
        assert!(!a.text.contains("leak"));
    }

    #[tokio::test]
    async fn unknown_query_keys_are_400_naming_the_key() {
        let (app, _) = app(false, false);
        let a = call(&app, "GET", "/api/v1/status?verbose=1", Some(VIEWER)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(error(&a).contains("`verbose`"), "{}", a.text);
        let a = call(&app, "GET", "/api/v1/audit?since=1&lmit=2", Some(VIEWER)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(error(&a).contains("`lmit`"), "{}", a.text);
        assert!(error(&a).contains("since, limit"), "{}", a.text);
        // The token is checked first: a stranger learns nothing about query keys.
        let a = call(&app, "GET", "/api/v1/audit?lmit=2", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let a = call(&app, "GET", "/api/v1/audit?since=1&limit=2", Some(VIEWER)).await;
        assert_eq!(a.status, StatusCode::OK);
    }

    #[test]
    fn audit_query_parses_and_refuses_with_the_key_named() {
        let ok = audit_query(&pairs(&[("since", "1700000000"), ("limit", "999999")]))
            .unwrap_or_else(|e| panic!("{}", e.1));
        assert_eq!(ok, (Some(1_700_000_000), AUDIT_MAX_LIMIT));
        assert_eq!(
            audit_query(&[]).unwrap_or_else(|e| panic!("{}", e.1)),
            (None, AUDIT_DEFAULT_LIMIT)
        );
        for (q, needle) in [
            (pairs(&[("since", "yesterday")]), "`since`"),
            (pairs(&[("limit", "-3")]), "`limit`"),
            (pairs(&[("limit", "1"), ("limit", "2")]), "`limit`"),
            (pairs(&[("user", "x")]), "`user`"),
        ] {
            let Err(e) = audit_query(&q) else {
                panic!("{q:?} accepted")
            };
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.contains(needle), "{q:?}: {}", e.1);
        }
    }

    #[test]
    fn bodies_that_do_not_fit_are_400_naming_the_field() {
        let parse = |text: &str| json_body::<ReasonBody>(&Bytes::from(text.to_owned()));
        assert_eq!(
            parse(r#"{"reason": "abuse"}"#).ok().map(|b| b.reason),
            Some("abuse".into())
        );
        for (text, needle) in [
            (r#"{"reason": 7}"#, "field `reason`: invalid type"),
            (r#"{}"#, "missing field `reason`"),
            ("", "missing field `reason`"),
            (r#"{"reason": "x", "why": 1}"#, "unknown field `why`"),
            (r#"{"reason": "#, "not valid JSON"),
            (r#"{"reason": "x"} {}"#, "not valid JSON"),
            ("[1]", "invalid body"),
        ] {
            let Err(e) = parse(text) else {
                panic!("{text:?} accepted")
            };
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{text:?}");
            assert!(e.1.contains(needle), "{text:?}: {}", e.1);
        }
        let Err(e) = required_text("reason", " \t".into()) else {
            panic!("blank reason accepted")
        };
        assert_eq!(e.1, "field `reason` must not be empty");
        assert!(json_body::<AckBody>(&Bytes::new()).is_ok());
        assert!(json_body::<AckBody>(&Bytes::from_static(b"{}")).is_ok());
        let Err(e) = json_body::<AckBody>(&Bytes::from_static(b"{\"note\": 1}")) else {
            panic!("unknown ack field accepted")
        };
        assert!(e.1.contains("unknown field `note`"), "{}", e.1);
    }

    #[tokio::test]
    async fn axum_json_rejections_map_to_json_400_naming_the_field() {
        use axum::extract::FromRequest as _;
        let req = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"reason": false}"#))
            .expect("request");
        let Err(rejection) = Json::<ReasonBody>::from_request(req, &()).await else {
            panic!("accepted")
        };
        let e = ApiError::from(rejection);
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains("reason"), "{}", e.1);
        let req = Request::builder()
            .method("POST")
            .body(Body::from("{}"))
            .expect("request");
        let Err(rejection) = Json::<ReasonBody>::from_request(req, &()).await else {
            panic!("accepted")
        };
        let e = ApiError::from(rejection);
        assert_eq!(e.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let response = e.into_response();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|m| m.contains("Content-Type")),
            "{v}"
        );
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_method_and_status() {
        let (app, metrics) = app(false, false);
        for id in ["acme", "globex", "initech"] {
            call(&app, "GET", &format!("/api/v1/tenants/{id}"), Some(VIEWER)).await;
        }
        call(&app, "GET", "/api/v1/tenants/acme", None).await;
        call(&app, "GET", "/no/such/path/1", None).await;
        call(&app, "GET", "/no/such/path/2", None).await;
        call(&app, "BREW", "/api/v1/status", Some(VIEWER)).await;
        let mut text = String::new();
        metrics.render(&mut text);
        for line in [
            "# TYPE warden_api_requests_total counter\n",
            "warden_api_requests_total{route=\"/api/v1/tenants/{id}\",method=\"GET\",status=\"200\"} 3\n",
            "warden_api_requests_total{route=\"/api/v1/tenants/{id}\",method=\"GET\",status=\"401\"} 1\n",
            "warden_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 2\n",
            "warden_api_requests_total{route=\"/api/v1/status\",method=\"other\",status=\"405\"} 1\n",
            "# TYPE warden_api_request_duration_seconds histogram\n",
            "warden_api_request_duration_seconds_bucket{route=\"/api/v1/tenants/{id}\",le=\"+Inf\"} 4\n",
            "warden_api_request_duration_seconds_count{route=\"/api/v1/tenants/{id}\"} 4\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("acme"),
            "raw paths leak into labels:\n{text}"
        );
        assert!(!text.contains("warden_api_tls_handshakes_total"));
    }

    /// A body of `chunks` pieces of `size` bytes with no length known up front, as a
    /// chunked request body arrives.
    struct Chunked {
        chunks: usize,
        size: usize,
    }

    impl http_body::Body for Chunked {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.chunks == 0 {
                return std::task::Poll::Ready(None);
            }
            self.chunks -= 1;
            let data = Bytes::from(vec![b'x'; self.size]);
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))))
        }
    }

    #[tokio::test]
    async fn bodies_over_their_route_limit_are_413_and_counted() {
        let (app, metrics) = app(false, false);
        let suspend = "/api/v1/tenants/acme/suspend";
        let with_length = |method: &str, uri: &str, length: usize| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_LENGTH, length)
        };
        // By Content-Length, before a byte is read (none is sent here).
        let a = send(
            &app,
            with_length("POST", suspend, MAX_BODY_BYTES + 1),
            Some(ADMIN),
            Body::empty(),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            error(&a),
            "request body of 65537 bytes is over the limit of 65536 bytes for POST /api/v1/tenants/{id}/suspend"
        );
        let a = send(
            &app,
            with_length("PUT", "/api/v1/policy", MAX_POLICY_BYTES + 1),
            Some(OPERATOR),
            Body::empty(),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
        // The token comes first: a stranger learns nothing about limits.
        let a = send(
            &app,
            with_length("PUT", "/api/v1/policy", MAX_POLICY_BYTES + 1),
            None,
            Body::empty(),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        // At the limit, and a policy far over the small limit, are taken.
        let a = send(
            &app,
            with_length("POST", suspend, MAX_BODY_BYTES),
            Some(ADMIN),
            Body::from(vec![b' '; MAX_BODY_BYTES]),
        )
        .await;
        assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, "ada"));
        let big = 4 * MAX_BODY_BYTES;
        let a = send(
            &app,
            with_length("PUT", "/api/v1/policy", big),
            Some(OPERATOR),
            Body::from(vec![b' '; big]),
        )
        .await;
        assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, "otto"));
        // Without a length (chunked): refused once the body passes the limit.
        let req = Request::builder().method("POST").uri(suspend);
        let a = send(
            &app,
            req,
            Some(ADMIN),
            Body::new(Chunked {
                chunks: 10,
                size: 10_000,
            }),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
        assert_eq!(
            error(&a),
            "request body over the limit of 65536 bytes for POST /api/v1/tenants/{id}/suspend"
        );
        // The policy's limit replaces axum's default of 2 MiB too.
        let req = Request::builder().method("PUT").uri("/api/v1/policy");
        let a = send(
            &app,
            req,
            Some(OPERATOR),
            Body::new(Chunked {
                chunks: 30,
                size: 100_000,
            }),
        )
        .await;
        assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, "otto"));

        let mut text = String::new();
        metrics.render(&mut text);
        for line in [
            "# TYPE warden_api_body_too_large_total counter\n",
            "warden_api_body_too_large_total{route=\"/api/v1/tenants/{id}/suspend\"} 2\n",
            "warden_api_body_too_large_total{route=\"/api/v1/policy\"} 1\n",
            // Every route that takes a body has its series from the start.
            "warden_api_body_too_large_total{route=\"/api/v1/flags/{id}/dismiss\"} 0\n",
            "warden_api_connections_open 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn latency_buckets_are_cumulative() {
        let m = ApiMetrics::default();
        for ms in [0, 3, 3, 40, 20_000] {
            m.observe(
                "/r",
                &Method::GET,
                StatusCode::OK,
                Duration::from_millis(ms),
            );
        }
        let mut text = String::new();
        m.render(&mut text);
        for line in [
            "warden_api_request_duration_seconds_bucket{route=\"/r\",le=\"0.001\"} 1\n",
            "warden_api_request_duration_seconds_bucket{route=\"/r\",le=\"0.0025\"} 1\n",
            "warden_api_request_duration_seconds_bucket{route=\"/r\",le=\"0.005\"} 3\n",
            "warden_api_request_duration_seconds_bucket{route=\"/r\",le=\"0.05\"} 4\n",
            "warden_api_request_duration_seconds_bucket{route=\"/r\",le=\"10\"} 4\n",
            "warden_api_request_duration_seconds_bucket{route=\"/r\",le=\"+Inf\"} 5\n",
            "warden_api_request_duration_seconds_sum{route=\"/r\"} 20.046\n",
            "warden_api_request_duration_seconds_count{route=\"/r\"} 5\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn every_route_has_one_access_rule_and_reads_are_gets() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.path, r.method)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert_eq!(
                r.method == "GET",
                !matches!(r.need, Need::Write(_)),
                "{r:?}"
            );
        }
        assert_eq!(
            route_spec("/api/v1/status", &Method::HEAD).map(|r| r.need),
            Some(Need::Read)
        );
        assert!(route_spec("/api/v1/status", &Method::POST).is_none());
    }

    #[test]
    fn tls_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        };
        let err = |f: &TlsFiles| format!("{:#}", tls_config(f).expect_err("refused"));
        let e = err(&files);
        assert!(
            e.contains(&cert.display().to_string()) && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(&cert, "not a certificate\n").expect("write");
        let e = err(&files);
        assert!(
            e.contains(&cert.display().to_string()) && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let e = err(&files);
        assert!(
            e.contains(&key.display().to_string()) && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(&key, "garbage\n").expect("write");
        let e = err(&files);
        assert!(
            e.contains(&key.display().to_string()) && e.contains("private key"),
            "{e}"
        );
    }

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flag_query_parses_every_key() {
        let f = flag_filter(&pairs(&[
            ("tenant", "acme"),
            ("kind", "flood_out"),
            ("since", "1700000000"),
            ("state", "acked"),
            ("limit", "5"),
        ]))
        .unwrap_or_else(|e| panic!("{}", e.1));
        assert_eq!(f.tenant.as_deref(), Some("acme"));
        assert_eq!(f.kind, Some(Kind::FloodOut));
        assert_eq!(f.since, Some(1_700_000_000));
        assert_eq!(f.state, Some(FlagState::Acked));
        assert_eq!(f.limit, Some(5));
    }

    #[test]
    fn flag_query_refuses_unknown_repeated_and_malformed_keys() {
        for (q, needle) in [
            (pairs(&[("tenat", "x")]), "`tenat`"),
            (pairs(&[("tenant", "a"), ("tenant", "b")]), "`tenant`"),
            (pairs(&[("kind", "ddos")]), "`kind`"),
            (pairs(&[("since", "2h")]), "`since`"),
            (pairs(&[("state", "closed")]), "`state`"),
            (pairs(&[("limit", "-1")]), "`limit`"),
        ] {
            let Err(e) = flag_filter(&q) else {
                panic!("{q:?} accepted")
            };
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert!(e.1.contains(needle), "{q:?}: {}", e.1);
        }
    }
}
