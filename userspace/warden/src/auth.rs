//! Bearer tokens with roles, for the HTTP API.
//!
//! The token file (`daemon.tokens`) lists who may call the API and with which [`Role`]; it
//! keeps only the SHA-256 of each token, so reading the file does not reveal a token:
//!
//! ```yaml
//! - name: alice
//!   role: admin
//!   sha256: 0d1a...  # 64 hex digits: printf %s "$TOKEN" | sha256sum
//! ```
//!
//! [`authorize`] turns a request's `Authorization: Bearer ...` header into an [`Identity`], or
//! into an [`AuthRejection`] that answers 401 or 403 with a JSON error.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::{Parser, ScanError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use warden_policy::{Diagnostic, Diagnostics};

/// What a token may do. Ordered: each role may do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read state: status, tenants, flags, audit.
    Viewer,
    /// Also review flags and apply policy.
    Operator,
    /// Also suspend and unsuspend tenants.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The name used in token files and messages: `viewer`, `operator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `viewer`, `operator` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`; expected one of: viewer, operator, admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Who presented a valid token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The token's `name` in the token file; audit entries name this actor.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Why the token file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("{}: cannot read token file: {source}", path.display())]
    Read {
        /// The token file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a valid token list; each problem as `FILE:LINE:COL: message`.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// One token of the file.
#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens the API accepts.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl fmt::Debug for Tokens {
    /// Names and roles only: digests stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| (&e.name, e.role)))
            .finish()
    }
}

impl Tokens {
    /// No tokens: every request that needs one is refused.
    pub fn empty() -> Tokens {
        Tokens::default()
    }

    /// Reads and parses the token file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(&text, &path.display().to_string())
    }

    /// Parses token-file text. `file_name` only labels the errors; no I/O.
    ///
    /// An empty file (or `[]`) is valid and accepts no token. Every problem of the file is
    /// reported, each with its line and column.
    pub fn parse(text: &str, file_name: &str) -> Result<Tokens, AuthError> {
        let mut reader = Reader {
            file: file_name,
            errors: Vec::new(),
        };
        let entries = reader.file(text);
        if reader.errors.is_empty() {
            Ok(Tokens { entries })
        } else {
            reader.errors.sort_by_key(|d| (d.line, d.col));
            Err(AuthError::Invalid(Diagnostics::new(reader.errors)))
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The names of the tokens, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// True when no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity whose token is `bearer`, if any.
    ///
    /// Compares the SHA-256 of `bearer` with every entry in constant time and without
    /// stopping at a match, so timing tells nothing about which digest came close.
    pub fn check(&self, bearer: &str) -> Option<Identity> {
        if bearer.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found.map(|entry| Identity {
            name: entry.name.clone(),
            role: entry.role,
        })
    }
}

/// The SHA-256 of `token`, as 64 lowercase hex digits: the `sha256` value of a token file entry.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes (256 bits) from the OS, as 64 lowercase hex digits.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .expect("the OS random number generator is available on every supported Linux");
    hex::encode(bytes)
}

/// Parses 64 hex digits (either case) into a digest.
fn parse_digest(text: &str) -> Result<[u8; 32], String> {
    let bad = || {
        format!(
            "`sha256` must be 64 hex digits (the SHA-256 of the token), found {} characters",
            text.chars().count()
        )
    };
    if text.len() != 64 {
        return Err(bad());
    }
    // The `hex` crate; it takes either case.
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).map_err(|_| bad())?;
    Ok(digest)
}

const ENTRY_KEYS: &[&str] = &["name", "role", "sha256"];

/// Reads the token file's YAML, collecting every error with its position.
struct Reader<'f> {
    file: &'f str,
    errors: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, (line, col): (usize, usize), message: impl Into<String>) {
        self.errors
            .push(Diagnostic::new(self.file, line, col, &message.into()));
    }

    fn file(&mut self, text: &str) -> Vec<Entry> {
        let documents = match load_yaml(text) {
            Ok(documents) => documents,
            Err((pos, message)) => {
                self.error(pos, message);
                return Vec::new();
            }
        };
        let mut documents = documents.iter();
        let Some(root) = documents.next() else {
            return Vec::new();
        };
        if let Some(extra) = documents.next() {
            self.error(pos(extra), "expected one YAML document, found more");
        }
        let items = match &root.data {
            YamlData::Sequence(items) => items.as_slice(),
            _ if is_null(root) => &[],
            _ => {
                self.error(
                    pos(root),
                    "expected a list of tokens (`- name: ...`, `role: ...`, `sha256: ...`)",
                );
                return Vec::new();
            }
        };
        let entries: Vec<(Entry, &MarkedYaml<'_>)> = items
            .iter()
            .filter_map(|item| self.entry(item).map(|entry| (entry, item)))
            .collect();
        self.duplicates(&entries);
        entries.into_iter().map(|(entry, _)| entry).collect()
    }

    fn entry(&mut self, node: &MarkedYaml<'_>) -> Option<Entry> {
        let YamlData::Mapping(map) = &node.data else {
            self.error(
                pos(node),
                "expected a token entry with `name`, `role` and `sha256`",
            );
            return None;
        };
        let (mut name, mut role, mut digest) = (None, None, None);
        let mut ok = true;
        for (key_node, value) in map {
            let Some(key) = scalar(key_node) else {
                self.error(pos(key_node), "expected a plain key");
                ok = false;
                continue;
            };
            let Some(text) = scalar(value).filter(|_| !is_null(value)) else {
                self.error(pos(value), format!("`{key}` needs a value"));
                ok = false;
                continue;
            };
            let parsed = match key {
                "name" if text.trim().is_empty() => Err("`name` must not be blank".to_owned()),
                "name" => {
                    name = Some(text.to_owned());
                    Ok(())
                }
                "role" => text
                    .parse::<Role>()
                    .map(|r| role = Some(r))
                    .map_err(|e| e.to_string()),
                "sha256" => parse_digest(text).map(|d| digest = Some(d)),
                _ => {
                    self.error(
                        pos(key_node),
                        format!(
                            "unknown key `{key}` in token entry; expected one of: {}",
                            ENTRY_KEYS.join(", ")
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Err(message) = parsed {
                self.error(pos(value), message);
                ok = false;
            }
        }
        // Reported only when the key is absent; a key with a bad value was reported above.
        for field in ENTRY_KEYS {
            if !map.keys().any(|key| scalar(key) == Some(field)) {
                self.error(
                    pos(node),
                    format!("token entry is missing required key `{field}`"),
                );
            }
        }
        match (ok, name, role, digest) {
            (true, Some(name), Some(role), Some(digest)) => Some(Entry { name, role, digest }),
            _ => None,
        }
    }

    fn duplicates(&mut self, entries: &[(Entry, &MarkedYaml<'_>)]) {
        let mut names: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut digests: HashMap<[u8; 32], &str> = HashMap::new();
        for (entry, node) in entries {
            let at = pos(node);
            if let Some(first) = names.get(entry.name.as_str()) {
                self.error(
                    at,
                    format!(
                        "duplicate token name `{}` (first at line {})",
                        entry.name, first.0
                    ),
                );
            } else {
                names.insert(&entry.name, at);
            }
            if let Some(other) = digests.get(&entry.digest) {
                self.error(
                    at,
                    format!(
                        "token `{}` has the same sha256 as token `{other}`; each token must be \
                         distinct",
                        entry.name
                    ),
                );
            } else {
                digests.insert(entry.digest, &entry.name);
            }
        }
    }
}

/// A YAML syntax error: 1-based (line, column) and message.
type YamlError = ((usize, usize), String);

/// Parses `text` into YAML documents keeping positions and scalars as written, or the
/// syntax error with its 1-based position.
fn load_yaml(text: &str) -> Result<Vec<MarkedYaml<'_>>, YamlError> {
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    // Keep scalars as written (`name: 007` stays `007`, `role: null` is text to reject).
    loader.early_parse(false);
    let scan_error = |e: &ScanError| {
        (
            (e.marker().line(), e.marker().col() + 1),
            format!("YAML syntax error: {}", e.info()),
        )
    };
    Parser::new_from_str(text)
        .load(&mut loader, true)
        .map_err(|e| scan_error(&e))?;
    if let Some(e) = loader.error() {
        return Err(scan_error(e));
    }
    Ok(loader.into_documents())
}

/// Where `node` starts: 1-based line and column.
fn pos(node: &MarkedYaml<'_>) -> (usize, usize) {
    (node.span.start.line(), node.span.start.col() + 1)
}

/// A scalar's source text.
fn scalar<'n>(node: &'n MarkedYaml<'_>) -> Option<&'n str> {
    match &node.data {
        YamlData::Representation(text, _, _) => Some(text),
        _ => None,
    }
}

/// An empty value, `~` or `null` written without quotes.
fn is_null(node: &MarkedYaml<'_>) -> bool {
    match &node.data {
        YamlData::Representation(text, ScalarStyle::Plain, _) => {
            matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
        }
        YamlData::BadValue => true,
        _ => false,
    }
}

/// Why a request was refused. Answers as JSON `{"error": "..."}`: 401 with a
/// `WWW-Authenticate: Bearer ...` challenge when no valid token was given, 403 when the token
/// is valid but its role is too low.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRejection {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not one `Bearer <token>`.
    Malformed,
    /// A bearer token that is not in the token file.
    UnknownToken,
    /// A valid token whose role is below the one needed.
    Forbidden {
        /// The token's identity.
        identity: Identity,
        /// The role the route needs.
        need: Role,
    },
}

impl AuthRejection {
    /// 401 for the token problems, 403 for a role too low.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRejection::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750), for 401 answers.
    fn challenge(&self) -> Option<&'static str> {
        match self {
            AuthRejection::Missing => Some(r#"Bearer realm="warden""#),
            AuthRejection::Malformed => Some(r#"Bearer realm="warden", error="invalid_request""#),
            AuthRejection::UnknownToken => Some(r#"Bearer realm="warden", error="invalid_token""#),
            AuthRejection::Forbidden { .. } => None,
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthRejection::Missing => {
                f.write_str("missing bearer token: send `Authorization: Bearer <token>`")
            }
            AuthRejection::Malformed => f.write_str(
                "malformed Authorization header: expected one `Authorization: Bearer <token>`",
            ),
            AuthRejection::UnknownToken => f.write_str("unknown bearer token"),
            AuthRejection::Forbidden { identity, need } => write!(
                f,
                "this needs role `{need}` or higher; token `{}` has role `{}`",
                identity.name, identity.role
            ),
        }
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        if let Some(challenge) = self.challenge() {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The identity behind the request's bearer token, if it has at least role `need`.
pub fn authorize(
    tokens: &Tokens,
    headers: &HeaderMap,
    need: Role,
) -> Result<Identity, AuthRejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthRejection::Missing)?;
    if values.next().is_some() {
        return Err(AuthRejection::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthRejection::Malformed)?;
    // The scheme is case-insensitive (RFC 7235); the token is taken as sent.
    let (scheme, token) = value.split_once(' ').ok_or(AuthRejection::Malformed)?;
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthRejection::Malformed);
    }
    let identity = tokens.check(token).ok_or(AuthRejection::UnknownToken)?;
    if identity.role < need {
        return Err(AuthRejection::Forbidden { identity, need });
    }
    Ok(identity)
}

#[cfg(test)]
mod tests;
