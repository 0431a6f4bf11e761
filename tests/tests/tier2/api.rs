//! The HTTP API's access control on a real daemon: every route of PRODUCT.md for no
//! token, an unknown token and each role (closed reads, then open reads), refused writes
//! changing nothing, 400/404/405 as JSON naming what was wrong, every successful write in
//! the audit log under the token's name, request metrics, and HTTPS with a CA made at test
//! time (plain HTTP refused, the CLI trusting the CA, a bad key stopping the start).

use std::{path::Path, time::Duration};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_policy::{flag::NewFlag, Kind};
use warden_store::Store;
use warden_tests::{
    http::Response,
    topology::{token, warden_binary, StandardLab},
};

/// A token no token file holds.
const STRANGER: &str = "lab-stranger-token";

/// The lab's token names (the audit log's actors).
const OPERATOR_NAME: &str = "lab-operator";
const ADMIN_NAME: &str = "lab-admin";

/// Who calls: no token, an unknown token, or a role's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Nobody,
    Stranger,
    Viewer,
    Operator,
    Admin,
}

impl Who {
    const ALL: [Who; 5] = [
        Who::Nobody,
        Who::Stranger,
        Who::Viewer,
        Who::Operator,
        Who::Admin,
    ];

    fn token(self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::Stranger => Some(STRANGER),
            Who::Viewer => Some(token::VIEWER),
            Who::Operator => Some(token::OPERATOR),
            Who::Admin => Some(token::ADMIN),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Who::Operator => OPERATOR_NAME,
            Who::Admin => ADMIN_NAME,
            _ => "-",
        }
    }
}

/// The demo policy with reads and metrics closed (it opens them for the demo).
fn closed_policy(lab: &StandardLab) -> Result<String> {
    let text = lab.policy_text()?;
    for key in ["open_reads", "open_metrics"] {
        ensure!(
            text.contains(&format!("  {key}: true\n")),
            "configs/demo.yaml no longer sets {key}: true"
        );
    }
    Ok(text
        .replace("  open_reads: true\n", "  open_reads: false\n")
        .replace("  open_metrics: true\n", "  open_metrics: false\n"))
}

fn write(lab: &StandardLab, name: &str, text: &str) -> Result<std::path::PathBuf> {
    let path = lab.lab.tempdir().join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn call(
    lab: &StandardLab,
    who: Who,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response> {
    let r = lab.request(method, path, body, who.token())?;
    eprintln!("{method} {path} as {who:?} -> {}", r.status);
    Ok(r)
}

fn json_of(r: &Response) -> Result<Value> {
    serde_json::from_str(&r.body).with_context(|| format!("not JSON ({}): {}", r.status, r.body))
}

/// The `error` of a JSON error answer with status `status`.
fn expect_error(r: &Response, status: u16, what: &str) -> Result<String> {
    ensure!(
        r.status == status,
        "{what}: status {} (want {status}): {}",
        r.status,
        r.body
    );
    let v = json_of(r)?;
    let msg = v["error"]
        .as_str()
        .with_context(|| format!("{what}: no `error` string in {v}"))?;
    if status == 401 {
        let challenge = r.header("www-authenticate").unwrap_or("");
        ensure!(
            challenge.starts_with("Bearer"),
            "{what}: 401 without a Bearer challenge:\n{}",
            r.head
        );
    }
    Ok(msg.to_string())
}

/// Writes flags straight into the running daemon's database, one per `(tenant, kind)`.
fn seed_flags(lab: &StandardLab, flags: &[(&str, Kind)]) -> Result<Vec<i64>> {
    let state = lab.rundir()?.join("state");
    let store = Store::open(&state).with_context(|| format!("opening {}", state.display()))?;
    let now = warden_policy::time::system_clock();
    flags
        .iter()
        .map(|(tenant, kind)| {
            Ok(store
                .create_flag(NewFlag {
                    tenant: (*tenant).into(),
                    kind: *kind,
                    seen: now,
                    policy_generation: 1,
                    thresholds: json!({"targets": 100}),
                    figures: json!({"targets": 120}),
                    top_targets: json!([]),
                    deadline: None,
                })?
                .id)
        })
        .collect()
}

/// What a write may change: the highest audit id, a tenant's and a flag's state, and the
/// policy generation.
#[derive(Debug, PartialEq)]
struct Observed {
    audit_max: i64,
    tenant_state: Value,
    flag_state: Value,
    generation: Value,
}

fn observe(lab: &StandardLab, tenant: &str, flag: i64) -> Result<Observed> {
    let get = |path: &str| -> Result<Value> {
        let r = lab.request("GET", path, None, Some(token::VIEWER))?;
        ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.body);
        json_of(&r)
    };
    let audit = get("/api/v1/audit?limit=10000")?;
    let audit_max = audit
        .as_array()
        .context("audit is not a list")?
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap_or(0);
    Ok(Observed {
        audit_max,
        tenant_state: get(&format!("/api/v1/tenants/{tenant}"))?["state"].clone(),
        flag_state: get(&format!("/api/v1/flags/{flag}"))?["state"].clone(),
        generation: get("/api/v1/status")?["policy_generation"].clone(),
    })
}

/// Audit entries newer than `after`.
fn audit_since(lab: &StandardLab, after: i64) -> Result<Vec<Value>> {
    let r = lab.request(
        "GET",
        "/api/v1/audit?limit=10000",
        None,
        Some(token::VIEWER),
    )?;
    ensure!(r.status == 200, "audit: {} {}", r.status, r.body);
    Ok(json_of(&r)?
        .as_array()
        .context("audit is not a list")?
        .iter()
        .filter(|e| e["id"].as_i64().is_some_and(|id| id > after))
        .cloned()
        .collect())
}

/// A write route of the test: method, path, body, the role it needs, and the tenant and
/// flag whose state it may change.
struct WriteCase {
    method: &'static str,
    path: String,
    body: String,
    need: Who,
    tenant: &'static str,
    flag: i64,
}

/// Calls `case` as every caller below its role and checks the refusal changed nothing,
/// then as `who` (at least the role) and checks it succeeded and was audited under the
/// token's name.
fn refused_then_done(lab: &StandardLab, case: &WriteCase, who: Who) -> Result<Value> {
    let what = format!("{} {}", case.method, case.path);
    let before = observe(lab, case.tenant, case.flag)?;
    for caller in Who::ALL.into_iter().filter(|w| *w < case.need) {
        let r = call(lab, caller, case.method, &case.path, Some(&case.body))?;
        let want = if caller < Who::Viewer { 401 } else { 403 };
        let msg = expect_error(&r, want, &format!("{what} as {caller:?}"))?;
        if want == 403 {
            let need = format!("{:?}", case.need).to_lowercase();
            ensure!(
                msg.contains(&format!("needs role `{need}`")),
                "{what} as {caller:?}: 403 does not name role {need}: {msg}"
            );
        }
        let after = observe(lab, case.tenant, case.flag)?;
        ensure!(
            after == before,
            "refused {what} as {caller:?} changed something: {before:?} -> {after:?}"
        );
    }
    let r = call(lab, who, case.method, &case.path, Some(&case.body))?;
    ensure!(
        (200..300).contains(&r.status),
        "{what} as {who:?}: {} {}",
        r.status,
        r.body
    );
    let new = audit_since(lab, before.audit_max)?;
    ensure!(
        new.iter().any(|e| e["actor"] == who.name()),
        "{what} as {who:?}: no audit entry by {}: {new:#?}",
        who.name()
    );
    json_of(&r)
}

#[test]
fn every_route_answers_each_role_and_refused_writes_change_nothing() -> Result<()> {
    let lab = StandardLab::build("wa")?;
    let policy_text = closed_policy(&lab)?;
    let policy = write(&lab, "closed.yaml", &policy_text)?;
    let _daemon = lab.start_daemon(&warden_binary()?, &policy, &["--detach-on-exit"])?;
    let flags = seed_flags(
        &lab,
        &[
            ("globex", Kind::Scan),
            ("globex", Kind::FloodOut),
            ("initech", Kind::Scan),
            ("initech", Kind::FloodOut),
        ],
    )?;

    // Every read: 401 without a valid token, 200 for every role.
    let reads = [
        "/metrics".to_string(),
        "/api/v1/status".into(),
        "/api/v1/tenants".into(),
        "/api/v1/tenants/acme".into(),
        "/api/v1/flags".into(),
        format!("/api/v1/flags/{}", flags[0]),
        format!("/api/v1/flags/{}/pcap", flags[0]),
        "/api/v1/audit".into(),
        "/api/v1/policy".into(),
        "/api/v1/policy?effective=true".into(),
    ];
    for path in &reads {
        for who in Who::ALL {
            let r = call(&lab, who, "GET", path, None)?;
            if who < Who::Viewer {
                let msg = expect_error(&r, 401, &format!("GET {path} as {who:?}"))?;
                ensure!(
                    msg.contains("bearer token"),
                    "GET {path} as {who:?}: unexpected message {msg}"
                );
            } else if path.ends_with("/pcap") {
                // Seeded without samples: an empty capture is still a capture.
                ensure!(r.status == 200, "GET {path} as {who:?}: {}", r.status);
            } else {
                ensure!(
                    r.status == 200,
                    "GET {path} as {who:?}: {} {}",
                    r.status,
                    r.body
                );
                if path != "/metrics" {
                    json_of(&r)?;
                }
            }
        }
    }

    // Every write: refused below its role (nothing changes, nothing audited), done at and
    // above it (audited under the token's name).
    let reason = r#"{"reason": "tier2 api test"}"#;
    for (who, flag_ack, flag_dismiss) in [
        (Who::Operator, flags[0], flags[1]),
        (Who::Admin, flags[2], flags[3]),
    ] {
        let ack = WriteCase {
            method: "POST",
            path: format!("/api/v1/flags/{flag_ack}/ack"),
            body: "{}".into(),
            need: Who::Operator,
            tenant: "globex",
            flag: flag_ack,
        };
        let v = refused_then_done(&lab, &ack, who)?;
        ensure!(v["id"] == flag_ack, "ack answered {v}");
        let dismiss = WriteCase {
            method: "POST",
            path: format!("/api/v1/flags/{flag_dismiss}/dismiss"),
            body: reason.into(),
            need: Who::Operator,
            tenant: "globex",
            flag: flag_dismiss,
        };
        refused_then_done(&lab, &dismiss, who)?;
        let apply = WriteCase {
            method: "PUT",
            path: "/api/v1/policy".into(),
            body: policy_text.clone(),
            need: Who::Operator,
            tenant: "acme",
            flag: flags[0],
        };
        let before = observe(&lab, "acme", flags[0])?.generation;
        let v = refused_then_done(&lab, &apply, who)?;
        ensure!(
            v["policy_generation"].as_u64() == before.as_u64().map(|g| g + 1),
            "policy apply as {who:?}: generation {before} -> {v}"
        );
    }
    for verb in ["suspend", "unsuspend"] {
        let case = WriteCase {
            method: "POST",
            path: format!("/api/v1/tenants/initech/{verb}"),
            body: reason.into(),
            need: Who::Admin,
            tenant: "initech",
            flag: flags[0],
        };
        refused_then_done(&lab, &case, Who::Admin)?;
        let state = observe(&lab, "initech", flags[0])?.tenant_state;
        ensure!(
            (state == "suspended") == (verb == "suspend"),
            "after {verb}: initech is {state}"
        );
    }

    // 400 naming the field or key, 404 for what does not exist, 405, all JSON.
    let before = observe(&lab, "acme", flags[0])?;
    for (who, method, path, body, status, needle) in [
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/acme/suspend",
            r#"{"reason": 5}"#,
            400,
            "`reason`",
        ),
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/acme/suspend",
            "{}",
            400,
            "`reason`",
        ),
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/acme/suspend",
            r#"{"reason": "  "}"#,
            400,
            "`reason`",
        ),
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/acme/suspend",
            r#"{"reason": "x", "until": 3}"#,
            400,
            "`until`",
        ),
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/acme/suspend",
            "{not json",
            400,
            "not valid JSON",
        ),
        (
            Who::Operator,
            "POST",
            "/api/v1/flags/1/dismiss",
            r#"{"reasn": "typo"}"#,
            400,
            "`reasn`",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/flags?tenat=acme",
            "",
            400,
            "`tenat`",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/flags?kind=ddos",
            "",
            400,
            "`kind`",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/audit?user=x",
            "",
            400,
            "`user`",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/tenants?all=1",
            "",
            400,
            "`all`",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/tenants/nobody",
            "",
            404,
            "nobody",
        ),
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/nobody/suspend",
            r#"{"reason": "x"}"#,
            404,
            "nobody",
        ),
        (
            Who::Admin,
            "POST",
            "/api/v1/tenants/nobody/unsuspend",
            r#"{"reason": "x"}"#,
            404,
            "nobody",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/flags/999999",
            "",
            404,
            "999999",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/flags/999999/pcap",
            "",
            404,
            "999999",
        ),
        (Who::Viewer, "GET", "/api/v1/flags/abc", "", 404, "abc"),
        (
            Who::Operator,
            "POST",
            "/api/v1/flags/999999/ack",
            "{}",
            404,
            "999999",
        ),
        (
            Who::Operator,
            "POST",
            "/api/v1/flags/999999/dismiss",
            r#"{"reason": "x"}"#,
            404,
            "999999",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v2/tenants",
            "",
            404,
            "no such route",
        ),
        (
            Who::Admin,
            "DELETE",
            "/api/v1/status",
            "",
            405,
            "allowed: GET",
        ),
        (
            Who::Admin,
            "DELETE",
            "/api/v1/policy",
            "",
            405,
            "allowed: GET, PUT",
        ),
        (
            Who::Viewer,
            "GET",
            "/api/v1/policy?effective=yes",
            "",
            400,
            "expected true or false",
        ),
    ] {
        let what = format!("{method} {path} {body}");
        let r = call(&lab, who, method, path, Some(body))?;
        let msg = expect_error(&r, status, &what)?;
        ensure!(
            msg.contains(needle),
            "{what}: {msg:?} does not name {needle}"
        );
    }
    let after = observe(&lab, "acme", flags[0])?;
    ensure!(
        after == before,
        "refused requests changed something: {before:?} -> {after:?}"
    );

    // Request metrics by route template (never the raw path), with latencies.
    let r = call(&lab, Who::Viewer, "GET", "/metrics", None)?;
    ensure!(r.status == 200, "metrics: {}", r.status);
    for line in [
        "warden_api_requests_total{route=\"/api/v1/tenants/{id}\",method=\"GET\",status=\"404\"} ",
        "warden_api_requests_total{route=\"/api/v1/tenants/{id}/suspend\",method=\"POST\",status=\"403\"} ",
        "warden_api_requests_total{route=\"/api/v1/policy\",method=\"PUT\",status=\"200\"} 2\n",
        "warden_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n",
        "warden_api_request_duration_seconds_count{route=\"/api/v1/policy\"} ",
    ] {
        ensure!(r.body.contains(line), "missing {line:?} in /metrics");
    }
    let leaked: Vec<&str> = r
        .body
        .lines()
        .filter(|l| l.starts_with("warden_api_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
        .filter(|l| l.contains("nobody") || l.contains("999999") || l.contains("/api/v2"))
        .collect();
    ensure!(leaked.is_empty(), "raw paths in metric labels: {leaked:#?}");
    Ok(())
}

#[test]
fn open_reads_answer_without_a_token_but_writes_still_need_one() -> Result<()> {
    let lab = StandardLab::build("wo")?;
    // configs/demo.yaml: a token file, reads and metrics opened.
    let policy = lab.write_policy()?;
    let _daemon = lab.start_daemon(&warden_binary()?, &policy, &["--detach-on-exit"])?;
    for path in [
        "/metrics",
        "/api/v1/status",
        "/api/v1/tenants",
        "/api/v1/tenants/acme",
        "/api/v1/flags",
        "/api/v1/audit",
    ] {
        let r = call(&lab, Who::Nobody, "GET", path, None)?;
        ensure!(r.status == 200, "open GET {path}: {} {}", r.status, r.body);
    }
    let r = call(&lab, Who::Nobody, "GET", "/api/v1/flags/999999", None)?;
    expect_error(&r, 404, "open GET of a missing flag")?;
    let policy_text = lab.policy_text()?;
    for (method, path, body) in [
        ("POST", "/api/v1/tenants/acme/suspend", r#"{"reason": "x"}"#),
        (
            "POST",
            "/api/v1/tenants/acme/unsuspend",
            r#"{"reason": "x"}"#,
        ),
        ("POST", "/api/v1/flags/1/ack", "{}"),
        ("POST", "/api/v1/flags/1/dismiss", r#"{"reason": "x"}"#),
        ("PUT", "/api/v1/policy", policy_text.as_str()),
    ] {
        for who in [Who::Nobody, Who::Stranger] {
            let r = call(&lab, who, method, path, Some(body))?;
            expect_error(&r, 401, &format!("open-reads {method} {path} as {who:?}"))?;
        }
        let r = call(&lab, Who::Viewer, method, path, Some(body))?;
        expect_error(&r, 403, &format!("open-reads {method} {path} as viewer"))?;
    }
    let acme = json_of(&call(
        &lab,
        Who::Nobody,
        "GET",
        "/api/v1/tenants/acme",
        None,
    )?)?;
    ensure!(acme["state"] != "suspended", "acme was suspended: {acme}");
    Ok(())
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it, in `dir`; returns the
/// paths of (CA certificate, server certificate, server key).
fn make_certificates(
    lab: &StandardLab,
    dir: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let p = |name: &str| dir.join(name).display().to_string();
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut steps: Vec<Vec<String>> = Vec::new();
    let mut ca = vec!["openssl", "req", "-x509"];
    ca.extend_from_slice(&ec);
    steps.push(
        ca.iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "-keyout",
                    &p("ca.key"),
                    "-out",
                    &p("ca.pem"),
                    "-days",
                    "1",
                    "-subj",
                    "/CN=warden tier2 test CA",
                ]
                .map(String::from),
            )
            .collect(),
    );
    let mut csr = vec!["openssl", "req"];
    csr.extend_from_slice(&ec);
    steps.push(
        csr.iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "-keyout",
                    &p("server.key"),
                    "-out",
                    &p("server.csr"),
                    "-subj",
                    "/CN=127.0.0.1",
                ]
                .map(String::from),
            )
            .collect(),
    );
    steps.push(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("server.pem"),
            "-days",
            "1",
            "-extfile",
            &ext.display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
    );
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let out = lab.node.exec_unchecked(&args, Duration::from_secs(30))?;
        ensure!(
            out.status.success(),
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    ))
}

/// Runs the CLI in the node namespace; returns (exit code, stdout, stderr).
fn cli(lab: &StandardLab, args: &[&str]) -> Result<(i32, String, String)> {
    let warden = warden_binary()?;
    let mut full = vec![warden.to_str().context("warden path is not UTF-8")?];
    full.extend_from_slice(args);
    let out = lab.node.exec_unchecked(&full, Duration::from_secs(30))?;
    let code = out.status.code().unwrap_or(-1);
    eprintln!("$ warden {}  -> exit {code}", args.join(" "));
    Ok((
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn tls_serves_https_only_and_the_cli_trusts_a_given_ca() -> Result<()> {
    let lab = StandardLab::build("wl")?;
    let dir = lab.lab.tempdir().join("tls");
    std::fs::create_dir_all(&dir)?;
    let (ca, cert, key) = make_certificates(&lab, &dir)?;
    let base = closed_policy(&lab)?;
    let anchor = "  open_metrics: false\n";
    ensure!(base.contains(anchor), "policy has no open_metrics line");
    let with_tls = |cert: &Path, key: &Path| {
        base.replace(
            anchor,
            &format!(
                "{anchor}  tls:\n    cert: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
        )
    };

    // A key that does not exist stops the start, naming the file, before anything attaches.
    let missing = dir.join("absent.key");
    let bad = write(&lab, "bad-tls.yaml", &with_tls(&cert, &missing))?;
    let (code, _, err) = cli(&lab, &["run", "-c", bad.to_str().context("utf-8")?])?;
    ensure!(code != 0, "daemon started with a missing key");
    ensure!(
        err.contains(&missing.display().to_string()),
        "start error does not name {}: {err}",
        missing.display()
    );
    // A certificate file that is not one.
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n")?;
    let bad = write(&lab, "bad-cert.yaml", &with_tls(&garbage, &key))?;
    let (code, _, err) = cli(&lab, &["run", "-c", bad.to_str().context("utf-8")?])?;
    ensure!(code != 0, "daemon started with a garbage certificate");
    ensure!(
        err.contains(&garbage.display().to_string()),
        "start error does not name {}: {err}",
        garbage.display()
    );

    let policy = write(&lab, "tls.yaml", &with_tls(&cert, &key))?;
    let _daemon = lab.start_daemon(&warden_binary()?, &policy, &["--detach-on-exit"])?;
    let api = "https://127.0.0.1:9477";
    let ca_s = ca.to_str().context("utf-8")?;

    // Plain HTTP on the TLS listener gets no HTTP answer.
    match lab.request("GET", "/api/v1/status", None, Some(token::VIEWER)) {
        Err(e) => eprintln!("plain HTTP refused as expected: {e:#}"),
        Ok(r) => bail!("plain HTTP answered {}: {}", r.status, r.body),
    }

    // The CLI over HTTPS with the CA: a read and a write (audited), and role checks.
    let (code, out, err) = cli(
        &lab,
        &[
            "--api",
            api,
            "--ca",
            ca_s,
            "--token",
            token::VIEWER,
            "tenants",
            "--json",
        ],
    )?;
    ensure!(code == 0, "tenants over https: exit {code}: {err}");
    let tenants: Value = serde_json::from_str(&out).context("tenants --json")?;
    ensure!(
        tenants
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == "acme")),
        "no acme in {tenants}"
    );
    let (code, _, err) = cli(
        &lab,
        &[
            "--api",
            api,
            "--ca",
            ca_s,
            "--token",
            token::VIEWER,
            "suspend",
            "initech",
            "--reason",
            "tls",
        ],
    )?;
    ensure!(
        code == 4 && err.contains("403"),
        "viewer suspend over https: exit {code}: {err}"
    );
    for verb in ["suspend", "unsuspend"] {
        let (code, _, err) = cli(
            &lab,
            &[
                "--api",
                api,
                "--ca",
                ca_s,
                "--token",
                token::ADMIN,
                verb,
                "initech",
                "--reason",
                "tls",
            ],
        )?;
        ensure!(code == 0, "{verb} over https: exit {code}: {err}");
    }
    // Without the CA the server is not trusted.
    let (code, _, err) = cli(&lab, &["--api", api, "--token", token::VIEWER, "status"])?;
    ensure!(code == 3, "https without --ca: exit {code}");
    ensure!(err.contains("--ca"), "https without --ca: no hint: {err}");
    // And the audit log, read over HTTPS with the CA as curl would.
    let out = lab.node.exec_unchecked(
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca_s,
            "-H",
            &format!("Authorization: Bearer {}", token::VIEWER),
            &format!("{api}/api/v1/audit"),
        ],
        Duration::from_secs(20),
    )?;
    ensure!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: Value = serde_json::from_slice(&out.stdout).context("audit over curl")?;
    let by_admin = audit
        .as_array()
        .context("audit is not a list")?
        .iter()
        .filter(|e| e["actor"] == ADMIN_NAME && e["target"] == "initech")
        .count();
    ensure!(
        by_admin == 2,
        "audit has {by_admin} initech entries by {ADMIN_NAME}: {audit}"
    );
    // The refused plain-HTTP attempt shows as a failed handshake.
    let out = lab.node.exec_unchecked(
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca_s,
            "-H",
            &format!("Authorization: Bearer {}", token::VIEWER),
            &format!("{api}/metrics"),
        ],
        Duration::from_secs(20),
    )?;
    let metrics = String::from_utf8_lossy(&out.stdout);
    let failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_api_tls_handshakes_total{outcome=\"failed\"} "))
        .context("no failed-handshake series")?;
    ensure!(
        failed.trim().parse::<u64>()? >= 1,
        "failed handshakes: {failed}"
    );
    Ok(())
}
