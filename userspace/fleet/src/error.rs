//! What can go wrong between Warden and etcd, by what the caller does about it.

/// A fleet operation that did not happen. Every write is one transaction: when one of
/// these is returned, nothing of the write was stored.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// etcd could not be reached or did not answer in time; retry later.
    #[error("etcd is unreachable ({endpoints}): {message}")]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// What the client library said.
        message: String,
    },
    /// Someone else wrote what this write was based on since it was read (HTTP 409,
    /// CLI exit 6).
    #[error(
        "conflict: {key} changed since it was read (revision {expected}, now {found}{})",
        by.as_ref().map(|b| format!(", by {b}")).unwrap_or_default()
    )]
    Conflict {
        /// The key whose revision no longer matches.
        key: String,
        /// The revision the write was based on (0: the key did not exist).
        expected: i64,
        /// Its revision now (0: it was deleted).
        found: i64,
        /// Who wrote it, when the value says.
        by: Option<String>,
    },
    /// The etcd user this client authenticates as may not do this.
    #[error("etcd refused {operation}: permission denied ({message})")]
    PermissionDenied {
        /// What was attempted, e.g. `put /warden/v1/policy/generation`.
        operation: String,
        /// What etcd said.
        message: String,
    },
    /// A value in etcd does not decode as what its key holds.
    #[error("{key}: unreadable value: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it does not decode.
        message: String,
    },
    /// The write is refused by the state it found (e.g. suspending a suspended tenant,
    /// an ack of a dismissed flag).
    #[error("{0}")]
    Refused(String),
    /// A write etcd refuses as too large (its `--max-txn-ops` or `--max-request-bytes`)
    /// even in batches within etcd's defaults (e.g. one tenant's policy over the request
    /// limit); nothing was committed.
    #[error("{0}")]
    TooLarge(String),
    /// What the write names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A tenant id, node name or prefix that cannot be a key.
    #[error("invalid {what} `{name}`: {rule}")]
    InvalidName {
        /// `tenant`, `node` or `prefix`.
        what: &'static str,
        /// The name given.
        name: String,
        /// What a valid one looks like.
        rule: &'static str,
    },
    /// A watch's start revision was compacted away: read everything again, then watch
    /// from there.
    #[error("etcd compacted the revision the watch started from (it keeps from {0})")]
    Compacted(i64),
    /// A TLS file could not be read.
    #[error("{path}: {message}")]
    TlsFile {
        /// The file.
        path: String,
        /// Why it could not be read.
        message: String,
    },
    /// Any other error from etcd or the client library.
    #[error("etcd: {0}")]
    Etcd(String),
}

impl FleetError {
    /// The error for a failed request `operation` to `endpoints`.
    pub(crate) fn from_etcd(e: etcd_client::Error, operation: &str, endpoints: &str) -> Self {
        use etcd_client::Error as E;
        use tonic::Code;
        match e {
            E::GRpcStatus(status) => match status.code() {
                Code::PermissionDenied => FleetError::PermissionDenied {
                    operation: operation.to_owned(),
                    message: status.message().to_owned(),
                },
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    FleetError::Unavailable {
                        endpoints: endpoints.to_owned(),
                        message: status.message().to_owned(),
                    }
                }
                _ => FleetError::Etcd(format!("{operation}: {}", status.message())),
            },
            E::TransportError(t) => FleetError::Unavailable {
                endpoints: endpoints.to_owned(),
                message: format!("{t} ({})", source_chain(&t)),
            },
            E::IoError(io) => FleetError::Unavailable {
                endpoints: endpoints.to_owned(),
                message: io.to_string(),
            },
            other => FleetError::Etcd(format!("{operation}: {other}")),
        }
    }

    /// Whether the caller should keep what it has and retry later (etcd unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, FleetError::Unavailable { .. })
    }
}

/// The causes below a transport error ("transport error" alone says nothing).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out.join(": ")
}
