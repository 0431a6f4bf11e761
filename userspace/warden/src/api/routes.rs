//! The handlers: each takes what the guard admitted and asks the [`Backend`] off the
//! async workers (map syscalls and SQLite block).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;
use serde_json::json;
use warden_policy::{
    flag::{FlagFilter, FlagState},
    Kind,
};

use super::access::Caller;
use super::error::{json_body, required_text, ApiError, ApiResult};
use super::requests::RequestCounts;
use super::Backend;
use crate::auth::Identity;
use crate::metrics;

/// Runs blocking daemon work (map syscalls, SQLite) off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {e}"),
        )
    })?
}

pub(super) async fn get_metrics(
    State(s): State<Arc<dyn Backend>>,
    Extension(counts): Extension<Arc<RequestCounts>>,
) -> ApiResult<Response> {
    let snap = blocking(move || Ok(s.snapshot()?)).await?;
    let mut text = metrics::render(&snap);
    metrics::http::render_api(&mut text, &counts.figures());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub(super) async fn get_status(State(s): State<Arc<dyn Backend>>) -> ApiResult<Response> {
    Ok(Json(blocking(move || Ok(s.status())).await?).into_response())
}

pub(super) async fn get_tenants(State(s): State<Arc<dyn Backend>>) -> ApiResult<Response> {
    Ok(Json(blocking(move || Ok(s.tenants()?)).await?).into_response())
}

pub(super) async fn get_tenant(
    State(s): State<Arc<dyn Backend>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let t = blocking(move || Ok(s.tenant(&id).map(|t| (t, id))?)).await?;
    match t {
        (Some(t), _) => Ok(Json(t).into_response()),
        (None, id) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no tenant {id:?}"),
        )),
    }
}

/// The query keys `GET /api/v1/tenants/{id}/history` accepts.
pub(super) const HISTORY_QUERY_KEYS: &[&str] = &["since", "until"];

/// `GET /api/v1/tenants/{id}/history[?since=T&until=T]`: unix seconds, `until` now and
/// `since` an hour before it by default; at most the history's whole span.
pub(super) async fn get_tenant_history(
    State(s): State<Arc<dyn Backend>>,
    Path(id): Path<String>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let (mut since, mut until) = (None, None);
    for (key, value) in &pairs {
        let slot = if key == "since" {
            &mut since
        } else {
            &mut until
        };
        if slot.replace(unix_time(key, value)?).is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `{key}` given more than once"),
            ));
        }
    }
    let until = until.unwrap_or_else(|| warden_policy::time::system_clock() + 1);
    let since = since.unwrap_or(until - 3600);
    if since >= until || until - since > warden_store::HISTORY_KEEP {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "since {since} and until {until}: need since < until, at most {} s apart",
                warden_store::HISTORY_KEEP
            ),
        ));
    }
    let view = blocking(move || Ok(s.tenant_history(&id, since, until)?)).await?;
    Ok(Json(view).into_response())
}

/// Body of suspend and unsuspend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    pub(super) reason: String,
}

pub(super) async fn post_suspend(
    State(s): State<Arc<dyn Backend>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    set_suspended(s, who, id, body, true).await
}

pub(super) async fn post_unsuspend(
    State(s): State<Arc<dyn Backend>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    set_suspended(s, who, id, body, false).await
}

/// Suspend or unsuspend (admin, checked by the guard): a reason required, audited under
/// the token's name.
pub(super) async fn set_suspended(
    s: Arc<dyn Backend>,
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

/// The query keys `GET /api/v1/policy` accepts.
pub(super) const POLICY_QUERY_KEYS: &[&str] = &["effective"];
/// The query keys `PUT /api/v1/policy` accepts.
pub(super) const PUT_POLICY_QUERY_KEYS: &[&str] = &["from_file"];

/// `true` or `false` of query key `key` (absent: false); `pairs` hold only known keys.
pub(super) fn query_flag(pairs: &[(String, String)], key: &str) -> ApiResult<bool> {
    let mut value = None;
    for (k, v) in pairs.iter().filter(|(k, _)| k == key) {
        if value.is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `{k}` given more than once"),
            ));
        }
        value = Some(match v.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `{k}`: expected true or false, found `{other}`"),
                ))
            }
        });
    }
    Ok(value.unwrap_or(false))
}

/// `GET /api/v1/policy[?effective=true]`.
pub(super) async fn get_policy(
    State(s): State<Arc<dyn Backend>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let effective = query_flag(&pairs, "effective")?;
    Ok(Json(blocking(move || Ok(s.policy_view(effective)?)).await?).into_response())
}

/// `PUT /api/v1/policy`: the body applied; with `?from_file=true` (and no body), the
/// daemon's own file applied again in place of a policy applied over the API.
pub(super) async fn put_policy(
    State(s): State<Arc<dyn Backend>>,
    Caller(who): Caller,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    if query_flag(&pairs, "from_file")? {
        if !body.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "from_file=true applies the daemon's own file: send no body",
            ));
        }
        let generation = blocking(move || Ok(s.apply_from_file(&who.name, who.role)?)).await?;
        return Ok(Json(json!({ "policy_generation": generation })).into_response());
    }
    let name = headers
        .get("x-warden-policy-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<request>")
        .to_string();
    let base = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(if_match(v)?),
    };
    // Text that is not UTF-8 is an error at its line, like any other in the policy.
    let (generation, revision) =
        blocking(move || Ok(s.apply_text_based(&body, &name, &who.name, who.role, base)?)).await?;
    let mut answer = json!({ "policy_generation": generation });
    if let Some(revision) = revision {
        answer["revision"] = json!(revision);
    }
    Ok(Json(answer).into_response())
}

/// `If-Match: REVISION` (quoted or not): the revision a policy apply is based on.
fn if_match(v: &axum::http::HeaderValue) -> ApiResult<i64> {
    v.to_str()
        .ok()
        .map(|t| t.trim().trim_matches('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "If-Match: expected the revision the policy is based on, a whole number",
            )
        })
}

/// The query keys `GET /api/v1/audit` accepts.
pub(super) const AUDIT_QUERY_KEYS: &[&str] = &["since", "limit"];

/// Entries `GET /api/v1/audit` returns without `limit`, and at most.
pub(super) const AUDIT_DEFAULT_LIMIT: usize = 100;
pub(super) const AUDIT_MAX_LIMIT: usize = 10_000;

/// Parses the query of `GET /api/v1/audit`: `since` (unix seconds) and `limit`.
pub(super) fn audit_query(pairs: &[(String, String)]) -> ApiResult<(Option<i64>, usize)> {
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

pub(super) async fn get_audit(
    State(s): State<Arc<dyn Backend>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let (since, limit) = audit_query(&pairs)?;
    Ok(Json(blocking(move || Ok(s.audit(since, limit)?)).await?).into_response())
}

/// The query keys `GET /api/v1/flags` accepts.
pub(super) const FLAG_QUERY_KEYS: &[&str] = &[
    "tenant", "kind", "since", "until", "state", "node", "limit", "offset",
];
/// The query keys `GET /api/v1/flags/summary` accepts: the filter without paging.
pub(super) const FLAG_SUMMARY_QUERY_KEYS: &[&str] =
    &["tenant", "kind", "since", "until", "state", "node"];

/// Parses the query of `GET /api/v1/flags` (and of its summary, whose unknown keys the
/// guard refused already); a repeated or malformed key is a 400 naming it.
pub(super) fn flag_filter(pairs: &[(String, String)]) -> ApiResult<FlagFilter> {
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
            "since" => f.since = Some(unix_time(key, value)?),
            "until" => f.until = Some(unix_time(key, value)?),
            "state" => {
                f.state = Some(
                    value
                        .parse::<FlagState>()
                        .map_err(|e| bad(format!("query parameter `state`: {e}")))?,
                )
            }
            "node" => {
                f.node = Some(
                    warden_policy::node_name(value)
                        .map_err(|e| bad(format!("query parameter `node`: {e}")))?,
                )
            }
            "limit" => f.limit = Some(count(key, value)?),
            "offset" => f.offset = Some(count(key, value)?),
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

/// Query value `value` of `key` as unix seconds.
fn unix_time(key: &str, value: &str) -> ApiResult<i64> {
    value.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("query parameter `{key}`: `{value}` is not a unix time in seconds"),
        )
    })
}

/// Query value `value` of `key` as a count.
fn count(key: &str, value: &str) -> ApiResult<usize> {
    value.parse::<usize>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("query parameter `{key}`: `{value}` is not a non-negative integer"),
        )
    })
}

/// A flag id from the path; anything but an integer names no flag.
fn flag_id(id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("flag {id:?} not found")))
}

/// The flag filter of a flags query, or 400 naming what is wrong.
fn flag_query(q: Result<Query<Vec<(String, String)>>, QueryRejection>) -> ApiResult<FlagFilter> {
    let Query(pairs) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    flag_filter(&pairs)
}

pub(super) async fn get_flags(
    State(s): State<Arc<dyn Backend>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let filter = flag_query(q)?;
    Ok(Json(blocking(move || Ok(s.flags(&filter)?)).await?).into_response())
}

/// `GET /api/v1/flags/summary`: counts per state under the filter, and the newest flag
/// id (the console polls it to see a flag raised).
pub(super) async fn get_flag_summary(
    State(s): State<Arc<dyn Backend>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let filter = flag_query(q)?;
    Ok(Json(blocking(move || Ok(s.flag_summary(&filter)?)).await?).into_response())
}

/// `GET /api/v1/whoami`: the token's name and role, so a console shows only the buttons
/// the role may use (the server still checks every request).
pub(super) async fn get_whoami(Caller(who): Caller) -> Response {
    Json(who).into_response()
}

pub(super) async fn get_flag(
    State(s): State<Arc<dyn Backend>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = flag_id(&id)?;
    match blocking(move || Ok(s.flag(id)?)).await? {
        Some(f) => Ok(Json(f).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("flag {id} not found"),
        )),
    }
}

pub(super) async fn get_flag_pcap(
    State(s): State<Arc<dyn Backend>>,
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

/// Body of ack: empty, `{}`, or `{"reason": "..."}`, a note kept as the flag's state
/// reason and in its audit entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn post_flag_ack(
    State(s): State<Arc<dyn Backend>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let id = flag_id(&id)?;
    let AckBody { reason } = json_body(&body)?;
    let reason = reason.filter(|r| !r.trim().is_empty());
    let flag = blocking(move || {
        Ok(s.set_flag_state(id, FlagState::Acked, reason.as_deref(), &who.name)?)
    })
    .await?;
    Ok(Json(flag).into_response())
}

pub(super) async fn post_flag_dismiss(
    State(s): State<Arc<dyn Backend>>,
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

/// `GET /api/v1/nodes`: a controller's fleet nodes; 404 on a node.
pub(super) async fn get_nodes(State(s): State<Arc<dyn Backend>>) -> ApiResult<Response> {
    match blocking(move || Ok(s.nodes()?)).await? {
        Some(nodes) => Ok(Json(nodes).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no fleet here: GET /api/v1/nodes is served by `warden controller`",
        )),
    }
}
