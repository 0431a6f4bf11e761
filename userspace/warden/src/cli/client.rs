//! The daemon's HTTP API as the CLI calls it: the token, TLS with the daemon's CA, and
//! errors turned into one line.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::CliError;
use serde_json::Value;

/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a policy apply may take (a fleet controller's apply waits for another
/// apply's lock for up to 120 s, then stages its versions).
const APPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// A blocking client for the daemon's API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:9477`, or `https://...` trusting the
    /// CA certificate in the PEM file `ca`).
    pub fn new(base: &str, token: Option<String>, ca: Option<&std::path::Path>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client runtime")?;
        let mut http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(ca) = ca {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --ca {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca {}: not a PEM certificate", ca.display()))?;
            if certs.is_empty() {
                bail!("--ca {}: no PEM certificate in the file", ca.display());
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: http.build().context("building the HTTP client")?,
            rt,
        })
    }

    /// GET raw bytes (e.g. a pcap file).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.get(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| self.unreachable(e))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("reading the reply of {url}"))?;
            if !status.is_success() {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                return Err(refused(status, &body).into());
            }
            Ok(bytes.to_vec())
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> CliError {
        let tls = if self.base.starts_with("https://") {
            "; for a TLS daemon give its CA certificate with --ca or WARDEN_CA"
        } else {
            ""
        };
        let message = format!(
            "cannot reach the warden daemon at {} (is `warden run` running? set --api{tls})",
            self.base
        );
        CliError::Unreachable { message, source }
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None, &[])
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(body.to_string().into()),
            &[],
        )
    }

    /// PUT a body (sent as it is) with extra headers. Only a policy apply PUTs: it may
    /// wait up to [`APPLY_TIMEOUT`] (through a fleet controller, a 100,000-tenant apply
    /// is staged in etcd in batches, and may first wait for another apply's lock).
    pub fn put(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(body), headers)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let timeout = if method == reqwest::Method::PUT {
                APPLY_TIMEOUT
            } else {
                REQUEST_TIMEOUT
            };
            let mut req = self.http.request(method, &url).timeout(timeout);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let resp = req.send().await.map_err(|e| self.unreachable(e))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("reading the reply of {url}"))?;
            if !status.is_success() {
                // An error without a JSON body (a proxy's page) still keeps its status.
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                return Err(refused(status, &body).into());
            }
            let body: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("the reply of {url} is not JSON"))?;
            Ok(body)
        })
    }
}

/// A refused request: status, the daemon's error and any listed errors.
fn refused(status: reqwest::StatusCode, body: &Value) -> CliError {
    CliError::Refused {
        status: status.as_u16(),
        message: error_text(status, body),
    }
}

fn error_text(status: reqwest::StatusCode, body: &Value) -> String {
    let msg = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let mut text = format!("{status}: {msg}");
    if status == reqwest::StatusCode::UNAUTHORIZED {
        text.push_str(" (give a token with --token or WARDEN_TOKEN)");
    }
    let errors = body.get("errors").and_then(Value::as_array);
    for e in errors.into_iter().flatten() {
        text.push_str(&format!("\n{}", e.as_str().unwrap_or("?")));
    }
    text
}
