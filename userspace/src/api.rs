//! The HTTP API and `/metrics`, on one listener. Errors are JSON `{"error": "..."}`.
//! Writes need a bearer token with the route's role; every write is audited under
//! the token's name.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{authorize, Role},
    daemon::{Refusal, Shared},
    metrics,
    policy::Kind,
    store::{FlagFilter, FlagState},
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
                errors,
            ),
            Refusal::Internal(e) => e.into(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
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
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(shared)
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

async fn get_metrics(State(s): State<Arc<Shared>>) -> ApiResult<Response> {
    let snap = blocking(move || Ok(s.snapshot()?)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&snap),
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

fn reason_body(body: &Bytes) -> ApiResult<ReasonBody> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("body must be {{\"reason\": \"...\"}}: {e}"),
        )
    })
}

async fn post_suspend(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    set_suspended(s, headers, id, body, true).await
}

async fn post_unsuspend(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    set_suspended(s, headers, id, body, false).await
}

/// Suspend or unsuspend: admin only, a reason required, audited under the token's name.
async fn set_suspended(
    s: Arc<Shared>,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    suspend: bool,
) -> ApiResult<Response> {
    let who = match authorize(s.tokens(), &headers, Role::Admin) {
        Ok(who) => who,
        // 401 (with WWW-Authenticate) or 403, as the rejection renders itself.
        Err(r) => return Ok(r.into_response()),
    };
    let body = reason_body(&body)?;
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
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let who = match authorize(s.tokens(), &headers, Role::Operator) {
        Ok(who) => who,
        // 401 (with WWW-Authenticate) or 403, as the rejection renders itself.
        Err(r) => return Ok(r.into_response()),
    };
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "policy must be UTF-8 YAML"))?;
    let name = headers
        .get("x-warden-policy-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<request>")
        .to_string();
    let generation = blocking(move || Ok(s.apply_text(&text, &name, &who.name)?)).await?;
    Ok(Json(json!({ "policy_generation": generation })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    since: Option<i64>,
    limit: Option<usize>,
}

async fn get_audit(
    State(s): State<Arc<Shared>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(blocking(move || Ok(s.audit(q.since, limit)?)).await?).into_response())
}

/// The query keys `GET /api/v1/flags` accepts.
const FLAG_QUERY_KEYS: &str = "tenant, kind, since, state, limit";

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
                    "unknown query parameter `{key}`; expected one of: {FLAG_QUERY_KEYS}"
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

async fn post_flag_ack(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let who = match authorize(s.tokens(), &headers, Role::Operator) {
        Ok(who) => who,
        // 401 (with WWW-Authenticate) or 403, as the rejection renders itself.
        Err(r) => return Ok(r.into_response()),
    };
    let id = flag_id(&id)?;
    let flag =
        blocking(move || Ok(s.set_flag_state(id, FlagState::Acked, None, &who.name)?)).await?;
    Ok(Json(flag).into_response())
}

async fn post_flag_dismiss(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = match authorize(s.tokens(), &headers, Role::Operator) {
        Ok(who) => who,
        // 401 (with WWW-Authenticate) or 403, as the rejection renders itself.
        Err(r) => return Ok(r.into_response()),
    };
    let id = flag_id(&id)?;
    let v: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"reason\": \"...\"}}: {e}"),
            )
        })?
    };
    let obj = v.as_object().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "body must be {\"reason\": \"...\"}",
        )
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "reason") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown field `{k}`; expected `reason`"),
        ));
    }
    let reason = match obj.get("reason") {
        Some(serde_json::Value::String(r)) if !r.trim().is_empty() => r.clone(),
        Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "field `reason` is required and must not be empty",
            ))
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "field `reason` must be a string",
            ))
        }
    };
    let flag = blocking(move || {
        Ok(s.set_flag_state(id, FlagState::Dismissed, Some(&reason), &who.name)?)
    })
    .await?;
    Ok(Json(flag).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
