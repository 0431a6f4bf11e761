//! A connection to the fleet's etcd, and the helpers every operation shares: reads of a
//! directory at one revision, transactions, and turning a failed comparison into a
//! [`FleetError::Conflict`] that names what changed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp,
};

use crate::keys::Layout;
use crate::records::{encode, AuditRecord};
use crate::FleetError;

/// Largest gRPC message accepted from etcd: a full read of a 100,000-tenant policy is
/// some 25 MB (tonic's default is 4 MiB).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Keys per page of a paged range read ([`Fleet::list_paged`]).
const PAGE_KEYS: i64 = 10_000;

/// `daemon.fleet.tls`: the CA that signed etcd's certificate, and this client's
/// certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ca`: the CA certificate etcd's server certificate must chain to.
    pub ca: PathBuf,
    /// `cert`: this client's certificate (its CN is its etcd user).
    pub cert: PathBuf,
    /// `key`: this client's private key.
    pub key: PathBuf,
}

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `endpoints`, e.g. `https://198.18.0.1:2379`.
    pub endpoints: Vec<String>,
    /// `tls`: client certificate authentication; `None` is plain HTTP (tests only).
    pub tls: Option<TlsFiles>,
    /// How long one request may take before etcd counts as unreachable.
    pub timeout: Duration,
    /// A user name and password, for an etcd without client certificate authentication
    /// (the fleet's own setup uses certificates; tests and bootstrap use this).
    pub user: Option<(String, String)>,
}

impl Connect {
    /// Plain connection to `endpoints` with a 5 s request timeout.
    pub fn plain(endpoints: Vec<String>) -> Self {
        Connect {
            endpoints,
            tls: None,
            timeout: Duration::from_secs(5),
            user: None,
        }
    }
}

/// A connection to one fleet: its etcd and its key layout.
#[derive(Clone)]
pub struct Fleet {
    pub(crate) client: Client,
    pub(crate) layout: Layout,
    endpoints: String,
    /// Keeps the member health task ([`crate::health`]) running while a clone lives.
    _alive: std::sync::Arc<()>,
}

impl Fleet {
    /// Connects to etcd. The connection is lazy in the client library; the first
    /// request tells whether etcd is reachable.
    pub async fn connect(connect: &Connect, layout: Layout) -> Result<Self, FleetError> {
        let endpoints = connect.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_timeout(connect.timeout)
            .with_connect_timeout(connect.timeout)
            .with_keep_alive(Duration::from_secs(5), connect.timeout)
            .with_require_leader(true);
        if let Some(tls) = &connect.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        if let Some((user, password)) = &connect.user {
            options = options.with_user(user.as_str(), password.as_str());
        }
        let client = Client::connect(&connect.endpoints, Some(options))
            .await
            .map_err(|e| FleetError::from_etcd(e, "connect", &endpoints))?;
        let alive = std::sync::Arc::new(());
        crate::health::watch_members(&client, &connect.endpoints, &alive);
        Ok(Fleet {
            client,
            layout,
            endpoints,
            _alive: alive,
        })
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The etcd client, for watches and leases the daemon runs itself.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn error(&self, e: etcd_client::Error, operation: &str) -> FleetError {
        FleetError::from_etcd(e, operation, &self.endpoints)
    }

    /// Every key under `dir` at one revision, with that revision.
    pub(crate) async fn list(&self, dir: &str) -> Result<(i64, Vec<KeyValue>), FleetError> {
        self.list_at(dir, 0).await
    }

    /// [`Fleet::list`] at `revision` (0: the latest).
    pub(crate) async fn list_at(
        &self,
        dir: &str,
        revision: i64,
    ) -> Result<(i64, Vec<KeyValue>), FleetError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let options = GetOptions::new().with_prefix().with_revision(revision);
        let mut response = kv
            .get(dir, Some(options))
            .await
            .map_err(|e| self.error(e, &format!("get {dir}*")))?;
        let revision = response.header().map_or(0, |h| h.revision());
        Ok((revision, response.take_kvs()))
    }

    /// Every key under `dir` at one revision (0: the latest), read in pages of
    /// [`PAGE_KEYS`] keys at that revision (a consistent snapshot of any size), with
    /// that revision.
    pub(crate) async fn list_paged(
        &self,
        dir: &str,
        revision: i64,
    ) -> Result<(i64, Vec<KeyValue>), FleetError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let end = crate::keys::range_end(dir);
        let mut from = dir.as_bytes().to_vec();
        let mut revision = revision;
        let mut out = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_KEYS)
                .with_revision(revision);
            let mut response = kv
                .get(from.clone(), Some(options))
                .await
                .map_err(|e| self.error(e, &format!("get {dir}*")))?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let kvs = response.take_kvs();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            out.extend(kvs);
            if !more {
                return Ok((revision, out));
            }
        }
    }

    /// The value of `key` with its mod revision, if it exists.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>, FleetError> {
        let mut kv = self.client.kv_client();
        let mut response = kv
            .get(key, None)
            .await
            .map_err(|e| self.error(e, &format!("get {key}")))?;
        Ok(response.take_kvs().into_iter().next())
    }

    /// Runs `ops` if every key of `guards` still has the mod revision given (0: absent);
    /// else a [`FleetError::Conflict`] naming the first key that changed.
    /// `operation` names the write in errors. Returns the revision of the write.
    pub(crate) async fn commit(
        &self,
        operation: &str,
        guards: &[(String, i64)],
        ops: Vec<TxnOp>,
    ) -> Result<i64, FleetError> {
        let compares: Vec<Compare> = guards
            .iter()
            .map(|(key, rev)| Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev))
            .collect();
        let txn = Txn::new().when(compares).and_then(ops);
        let mut kv = self.client.kv_client();
        let response = kv.txn(txn).await.map_err(|e| self.error(e, operation))?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        Err(self.conflict(guards).await)
    }

    /// The conflict behind a failed comparison: the first guard whose key moved.
    pub(crate) async fn conflict(&self, guards: &[(String, i64)]) -> FleetError {
        for (key, expected) in guards {
            let found = match self.get(key).await {
                Ok(kv) => kv,
                Err(e) => return e,
            };
            let found_rev = found.as_ref().map_or(0, KeyValue::mod_revision);
            if found_rev != *expected {
                let by = found.as_ref().and_then(|kv| written_by(kv.value()));
                return FleetError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    found: found_rev,
                    by,
                };
            }
        }
        // Changed and changed back between the transaction and this read.
        FleetError::Conflict {
            key: guards.first().map(|g| g.0.clone()).unwrap_or_default(),
            expected: guards.first().map_or(0, |g| g.1),
            found: -1,
            by: None,
        }
    }

    /// The put of one audit entry, for the transaction of the write it records.
    pub(crate) fn audit_op(&self, record: &AuditRecord) -> TxnOp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TxnOp::put(self.layout.audit(now, nonce()), encode(record), None)
    }
}

/// "actor at time" from a value that has `actor` (or `by`) and `at` fields.
pub(crate) fn written_by(value: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    let actor = v.get("actor").or_else(|| v.get("by"))?.as_str()?;
    match v.get("at").and_then(serde_json::Value::as_i64) {
        Some(at) => Some(format!("{actor} at {}", warden_policy::time::rfc3339(at))),
        None => Some(actor.to_owned()),
    }
}

/// A number that tells apart audit keys written in the same nanosecond.
fn nonce() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    n ^ std::process::id().rotate_left(16)
}

fn tls_options(tls: &TlsFiles) -> Result<TlsOptions, FleetError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| FleetError::TlsFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let ca = Certificate::from_pem(read(&tls.ca)?);
    let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    Ok(TlsOptions::new().ca_certificate(ca).identity(identity))
}
