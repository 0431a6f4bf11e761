//! The guard, the errors and the query parsing, against stand-in handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, HeaderMap, Method, StatusCode},
    response::IntoResponse as _,
    routing::{get, post, put},
    Json, Router,
};
use tower::ServiceExt as _;
use warden_policy::{flag::FlagState, DaemonConfig, Kind};

use super::access::{guarded, MAX_BODY_BYTES, MAX_POLICY_BYTES};
use super::error::{json_body, required_text};
use super::routes::{
    audit_query, flag_filter, AckBody, ReasonBody, AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT,
};
use super::*;
use crate::auth::{hash_token, Role, Tokens};
use crate::metrics::http::render_api;

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
fn app(open_reads: bool, open_metrics: bool) -> (Router, Arc<RequestCounts>) {
    let daemon = DaemonConfig {
        tokens: Some("/t.yaml".into()),
        open_reads,
        open_metrics,
        ..DaemonConfig::default()
    };
    let metrics = Arc::new(RequestCounts::default());
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
        .route("/api/v1/whoami", get(routes::get_whoami))
        .route("/ui/", get(console::index))
        .route("/ui/{file}", get(console::file))
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
    render_api(&mut text, &metrics.figures());
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
    render_api(&mut text, &metrics.figures());
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
    let m = RequestCounts::default();
    for ms in [0, 3, 3, 40, 20_000] {
        m.observe(
            "/r",
            &Method::GET,
            StatusCode::OK,
            Duration::from_millis(ms),
        );
    }
    let mut text = String::new();
    render_api(&mut text, &m.figures());
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
        ("node", "node-7.dc1"),
        ("limit", "5"),
    ]))
    .unwrap_or_else(|e| panic!("{}", e.1));
    assert_eq!(f.node.as_deref(), Some("node-7.dc1"));
    // Both flag routes let the node filter through the guard's key check.
    for path in ["/api/v1/flags", "/api/v1/flags/summary"] {
        let spec = route_spec(path, &axum::http::Method::GET).expect("listed");
        assert!(spec.query.contains(&"node"), "{path}: {:?}", spec.query);
    }
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
        (pairs(&[("node", "")]), "`node`"),
        (pairs(&[("node", "a/b")]), "`node`"),
        (pairs(&[("node", "a"), ("node", "a")]), "`node`"),
    ] {
        let Err(e) = flag_filter(&q) else {
            panic!("{q:?} accepted")
        };
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains(needle), "{q:?}: {}", e.1);
    }
}

#[test]
fn policy_query_flags_take_true_or_false_once() {
    use super::routes::query_flag;
    let flag = |q: &[(&str, &str)], key| query_flag(&pairs(q), key).map_err(|e| e.1);
    assert_eq!(flag(&[], "effective"), Ok(false));
    assert_eq!(flag(&[("effective", "true")], "effective"), Ok(true));
    assert_eq!(flag(&[("effective", "false")], "effective"), Ok(false));
    let e = flag(&[("effective", "yes")], "effective").expect_err("yes");
    assert!(e.contains("expected true or false, found `yes`"), "{e}");
    let e = flag(&[("from_file", "true"), ("from_file", "true")], "from_file").expect_err("twice");
    assert!(e.contains("`from_file` given more than once"), "{e}");
    // The policy routes take these keys and refuse any other (the guard's check).
    let get = route_spec("/api/v1/policy", &axum::http::Method::GET).expect("listed");
    assert_eq!(get.query, &["effective"]);
    assert!(matches!(get.need, Need::Read));
    let put = route_spec("/api/v1/policy", &axum::http::Method::PUT).expect("listed");
    assert_eq!(put.query, &["from_file"]);
}

#[tokio::test]
async fn the_console_is_open_with_a_strict_policy_and_whoami_always_needs_a_token() {
    let (app, _) = app(true, false);
    let page = call(&app, "GET", "/ui/", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page
        .text
        .contains("<script type=\"module\" src=\"main.js\">"));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii");
    assert_eq!(csp, CONTENT_SECURITY_POLICY);
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"));
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(page.headers.get(header::SET_COOKIE).is_none());
    let js = call(&app, "GET", "/ui/main.js", None).await;
    assert_eq!(
        js.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let missing = call(&app, "GET", "/ui/secret.txt", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(error(&missing).contains("no console file"));

    // Open reads do not open whoami: it names the token.
    let anon = call(&app, "GET", "/api/v1/whoami", None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let me = call(&app, "GET", "/api/v1/whoami", Some(OPERATOR)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        me.body,
        serde_json::json!({"name": "otto", "role": "operator"})
    );
}
