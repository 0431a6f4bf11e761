//! The HTTP API and `/metrics`, on one listener. Errors are JSON `{"error": "..."}`.
//! Writes need a bearer token with the route's role; every write is audited under
//! the token's name.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
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
