//! The HTTP API and `/metrics`, on one listener. Errors are JSON `{"error": "..."}`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use crate::{daemon::Shared, metrics};

/// An API error: a status and a message, rendered as JSON.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "API request failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
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
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .with_state(shared)
}

async fn get_metrics(State(s): State<Arc<Shared>>) -> ApiResult<Response> {
    let snap = tokio::task::spawn_blocking(move || s.snapshot())
        .await
        .map_err(|e| anyhow::anyhow!("metrics task failed: {e}"))??;
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
    Ok(Json(s.status()).into_response())
}

async fn get_tenants(State(s): State<Arc<Shared>>) -> ApiResult<Response> {
    Ok(Json(s.tenants()?).into_response())
}

async fn get_tenant(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult<Response> {
    match s.tenant(&id)? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no tenant {id:?}"))),
    }
}
