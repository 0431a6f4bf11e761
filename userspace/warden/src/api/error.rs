//! Errors as the API answers them: JSON `{"error": ...}` with a status, whatever produced
//! them, and the request-body parsing that names the offending field.

use axum::{
    body::Bytes,
    extract::rejection::JsonRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Refusal;

/// An API error: a status and a message (and, for an invalid policy, every error).
pub struct ApiError(
    pub(super) StatusCode,
    pub(super) String,
    pub(super) Vec<String>,
);

impl ApiError {
    pub(super) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
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
            Refusal::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
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

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON request body into `T`; an empty body reads as `{}`. A body that does not
/// fit is a 400 naming the offending field.
pub(super) fn json_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
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
pub(super) fn required_text(field: &str, value: String) -> ApiResult<String> {
    if value.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("field `{field}` must not be empty"),
        ));
    }
    Ok(value)
}
