//! What went wrong, as the exit code a script can branch on (docs/cli.md):
//! 0 ok, 1 error, 2 usage, 3 daemon unreachable, 4 not authorised (401/403),
//! 5 not found, 6 conflict (PRODUCT.md's list, and no other). `warden policy diff
//! --exit-code` reports differences as 1, like diff(1) and `git diff --exit-code`.
//! Usage errors (2) are clap's own.

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// Any other failure: invalid input, a refused request, I/O.
pub const EXIT_ERROR: u8 = 1;
/// The command line itself is wrong (clap exits with this).
pub const EXIT_USAGE: u8 = 2;
/// The daemon could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// The daemon refused the token: 401 (none or unknown) or 403 (role too low).
pub const EXIT_AUTH: u8 = 4;
/// What was named does not exist: a tenant, a flag, a bpffs directory.
pub const EXIT_NOT_FOUND: u8 = 5;
/// The request conflicts with the current state (409), e.g. a name already taken.
pub const EXIT_CONFLICT: u8 = 6;

/// `warden policy diff --exit-code`: the file differs from the running policy. PRODUCT.md
/// lists no exit code for it, so it is an error (1), as in diff(1); the message on
/// standard error says which. Without `--exit-code` a diff exits 0 either way.
pub const EXIT_DIFFERS: u8 = EXIT_ERROR;

/// A failure with its own exit code; anything else exits with [`EXIT_ERROR`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon did not answer.
    #[error("{message}")]
    Unreachable {
        /// What to check.
        message: String,
        /// What the HTTP client said.
        #[source]
        source: reqwest::Error,
    },
    /// The daemon answered with an error status.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Status, the daemon's error and any listed errors.
        message: String,
    },
    /// Something named on the command line does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something named on the command line already exists.
    #[error("{0}")]
    Conflict(String),
}

impl CliError {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable { .. } => EXIT_UNREACHABLE,
            CliError::Refused { status, .. } => match status {
                401 | 403 => EXIT_AUTH,
                404 => EXIT_NOT_FOUND,
                409 => EXIT_CONFLICT,
                _ => EXIT_ERROR,
            },
            CliError::NotFound(_) => EXIT_NOT_FOUND,
            CliError::Conflict(_) => EXIT_CONFLICT,
        }
    }

    /// The HTTP status of a refused request.
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The exit code for `err`: its [`CliError`]'s (under any context added since), else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CliError>()
        .map_or(EXIT_ERROR, CliError::exit_code)
}

/// `--api`: an absolute `http://` or `https://` URL with a host (`127.0.0.1:9477` alone
/// would otherwise fail at the first request with "relative URL without a base").
pub fn parse_api(text: &str) -> Result<String, String> {
    let hint = |t: &str| format!("`{t}` is not a daemon URL; give e.g. http://{t}");
    let url = reqwest::Url::parse(text).map_err(|_| hint(text))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        "http" | "https" => Err(format!("`{text}` has no host")),
        // `localhost:9477` parses as scheme `localhost`.
        _ if !text.contains("://") => Err(hint(text)),
        other => Err(format!(
            "`{text}`: scheme `{other}` is not supported; use http:// or https://"
        )),
    }
}
