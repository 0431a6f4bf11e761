//! Who may call what: [`ROUTES`] gives every route its role and whether the policy may
//! open it to callers without a token; the [`Guard`] middleware checks the token, refuses
//! unknown query keys and oversized bodies, turns every non-JSON error into JSON, and
//! counts each request.

use std::sync::Arc;
use std::time::Instant;

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Query, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Extension, Router,
};
use serde_json::json;
use warden_policy::DaemonConfig;

use super::error::ApiError;
use super::requests::RequestCounts;
use super::routes::{
    AUDIT_QUERY_KEYS, FLAG_QUERY_KEYS, FLAG_SUMMARY_QUERY_KEYS, HISTORY_QUERY_KEYS,
    POLICY_QUERY_KEYS, PUT_POLICY_QUERY_KEYS,
};
use crate::auth::{authorize, AuthRejection, Identity, Role, Tokens};

/// What a route needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `/metrics`: role viewer, unless `daemon.open_metrics`.
    Metrics,
    /// An API read: role viewer, unless `daemon.open_reads`.
    Read,
    /// A write: always a token with at least this role.
    Write(Role),
    /// Always a token (any role), even where reads are open: the caller asks who it is.
    Token,
    /// Nobody needs a token: the console's page and assets, which hold no data (every
    /// figure they show comes from the API under the signed-in token).
    Public,
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
pub(super) const MAX_POLICY_BYTES: usize = warden_policy::MAX_POLICY_BYTES;

/// The largest body of every other route: the writes take a reason or nothing (a
/// reason of a few KiB is already long), and the reads take none.
pub(super) const MAX_BODY_BYTES: usize = 64 << 10;

/// Every route and what it needs. A route the router serves but this table does not
/// list is refused (500): access fails closed.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/metrics", Need::Metrics, &[]),
    route("GET", "/api/v1/status", Need::Read, &[]),
    route("GET", "/api/v1/tenants", Need::Read, &[]),
    route("GET", "/api/v1/tenants/{id}", Need::Read, &[]),
    route(
        "GET",
        "/api/v1/tenants/{id}/history",
        Need::Read,
        HISTORY_QUERY_KEYS,
    ),
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
    route(
        "GET",
        "/api/v1/flags/summary",
        Need::Read,
        FLAG_SUMMARY_QUERY_KEYS,
    ),
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
    route("GET", "/api/v1/policy", Need::Read, POLICY_QUERY_KEYS),
    route(
        "PUT",
        "/api/v1/policy",
        Need::Write(Role::Operator),
        PUT_POLICY_QUERY_KEYS,
    )
    .max_body(MAX_POLICY_BYTES),
    route("GET", "/api/v1/audit", Need::Read, AUDIT_QUERY_KEYS),
    route("GET", "/api/v1/nodes", Need::Read, &[]),
    route("GET", "/api/v1/whoami", Need::Token, &[]),
    route("GET", "/", Need::Public, &[]),
    route("GET", "/ui", Need::Public, &[]),
    route("GET", "/ui/", Need::Public, &[]),
    route("GET", "/ui/{file}", Need::Public, &[]),
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
    counts: Arc<RequestCounts>,
}

impl Guard {
    /// The guard for `tokens` with the `daemon` section's `open_reads` and `open_metrics`.
    pub fn new(tokens: Tokens, daemon: &DaemonConfig, counts: Arc<RequestCounts>) -> Guard {
        Guard {
            tokens,
            open_reads: daemon.open_reads,
            open_metrics: daemon.open_metrics,
            counts,
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
            Need::Public => true,
            Need::Write(_) | Need::Token => false,
        };
        let identity = if open {
            None
        } else {
            let need = match spec.need {
                Need::Write(role) => role,
                Need::Metrics | Need::Read | Need::Token | Need::Public => Role::Viewer,
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

/// `routes` with the 404 fallback, the guard and the metrics behind every route.
pub(super) fn guarded(routes: Router, guard: Arc<Guard>) -> Router {
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(Extension(guard.counts.clone()))
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
    let mut response = json_errors(route.as_deref(), &method, response).await;
    // Every answer is what its Content-Type says: a browser never guesses a script.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        guard
            .counts
            .body_too_large(route.as_deref().unwrap_or(UNMATCHED));
    }
    guard.counts.observe(
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
