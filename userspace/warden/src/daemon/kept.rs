//! The policy applied over the API, kept in the state directory so that a restart or a
//! SIGHUP does not silently go back to the `-c` file (docs/policy.md, "Where the policy
//! in force comes from").
//!
//! `PUT /api/v1/policy` writes the document as sent, with its generation, who applied
//! it (the token's name) and when, to `<state_dir>/applied-policy.json`: a temporary
//! file, fsynced, before the kernel is touched (so an apply that cannot be kept is not
//! made), then renamed over the old copy and the directory fsynced once the apply took
//! effect. While the copy exists the daemon enforces its `defaults` and `tenants` (and
//! `daemon.management`, `daemon.metrics_top_k`, the keys an apply may change) under the
//! file's `daemon` and `interfaces`, which take effect at start only. `warden policy
//! apply --from-file` removes it.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use warden_policy::Policy;

use crate::views::PolicySource;

/// The kept copy's file name in `daemon.state_dir`.
pub(super) const KEPT_FILE: &str = "applied-policy.json";

/// What is kept of an API apply besides the document: what the daemon holds while the
/// apply is in force (the document itself, up to 64 MiB, is read at start only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Kept {
    /// The generation the apply made.
    pub(super) generation: u64,
    /// The token name that applied it.
    pub(super) by: String,
    /// When (unix seconds).
    pub(super) at: i64,
    /// The name it was sent under (`X-Warden-Policy-Name`, the CLI's file name).
    pub(super) name: String,
}

/// The kept file: [`Kept`] and the policy document as sent (`text`).
#[derive(Serialize)]
struct KeptFile<'a> {
    #[serde(flatten)]
    kept: &'a Kept,
    text: &'a str,
}

/// [`KeptFile`] as read back.
#[derive(Deserialize)]
struct KeptRead {
    #[serde(flatten)]
    kept: Kept,
    text: String,
}

impl Kept {
    /// Where this copy came from, as `warden status` shows it.
    pub(super) fn source(&self) -> PolicySource {
        PolicySource::Api {
            by: self.by.clone(),
            at: self.at,
            generation: self.generation,
            name: self.name.clone(),
        }
    }
}

/// Where the policy in force came from: the `-c` file's content at its last read (to
/// tell on SIGHUP whether it changed), and the kept API apply, if one is in force.
pub(super) struct Origin {
    pub(super) file_digest: [u8; 32],
    pub(super) kept: Option<Kept>,
}

/// The SHA-256 of a policy file's bytes.
pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(super) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEPT_FILE)
}

/// The kept copy in `state_dir` and its document, if there is one. A copy that cannot
/// be read or parsed is an error naming the file: the daemon does not fall back to the
/// `-c` file behind the operator's back.
pub(super) fn read(state_dir: &Path) -> Result<Option<(Kept, String)>> {
    let path = path(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let read: KeptRead = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a kept policy apply; move it away to go back to the -c file",
            path.display()
        )
    })?;
    Ok(Some((read.kept, read.text)))
}

/// The kept policy under the file's restart-only sections: `defaults`, `tenants`,
/// `daemon.management` and `daemon.metrics_top_k` from `kept`, the rest from `file`.
pub(super) fn merged(file: Policy, kept: Policy) -> Policy {
    let mut daemon = file.daemon;
    daemon.management = kept.daemon.management;
    daemon.metrics_top_k = kept.daemon.metrics_top_k;
    Policy::with_sections(daemon, file.interfaces, kept.defaults, kept.tenants)
}

/// A kept copy written and fsynced under a temporary name, not yet in place; dropped
/// uncommitted, it is removed.
pub(super) struct Pending {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

/// Writes `kept` and the document `text` beside their place in `state_dir` (see
/// [`Pending`]).
pub(super) fn prepare(state_dir: &Path, kept: &Kept, text: &str) -> Result<Pending> {
    let path = path(state_dir);
    let temp = state_dir.join(format!(".{KEPT_FILE}.tmp"));
    let pending = Pending {
        temp,
        path,
        committed: false,
    };
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&pending.temp)?;
        serde_json::to_writer(&mut f, &KeptFile { kept, text })?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write().with_context(|| format!("writing {}", pending.temp.display()))?;
    Ok(pending)
}

impl Pending {
    /// Renames the copy into place and fsyncs the directory.
    pub(super) fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.temp, &self.path).with_context(|| {
            format!(
                "renaming {} to {}",
                self.temp.display(),
                self.path.display()
            )
        })?;
        self.committed = true;
        sync_dir(&self.path)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Removes the kept copy from `state_dir` (none there is no error), durably.
pub(super) fn remove(state_dir: &Path) -> Result<()> {
    let path = path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Fsyncs the directory holding `path`, so a rename or removal in it survives a crash.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(generation: u64) -> Kept {
        Kept {
            generation,
            by: "ops".into(),
            at: 1_700_000_000,
            name: "p.yaml".into(),
        }
    }

    #[test]
    fn a_committed_copy_reads_back_and_an_uncommitted_one_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()).expect("reads"), None);
        let text = "tenants: []\n";
        drop(prepare(dir.path(), &kept(3), text).expect("prepared"));
        assert_eq!(read(dir.path()).expect("reads"), None);
        assert_eq!(std::fs::read_dir(dir.path()).expect("lists").count(), 0);
        prepare(dir.path(), &kept(4), text)
            .expect("prepared")
            .commit()
            .expect("committed");
        assert_eq!(
            read(dir.path()).expect("reads"),
            Some((kept(4), text.to_owned()))
        );
        remove(dir.path()).expect("removed");
        assert_eq!(read(dir.path()).expect("reads"), None);
        remove(dir.path()).expect("removing nothing is fine");
    }

    #[test]
    fn a_damaged_copy_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(path(dir.path()), "{").expect("written");
        let e = read(dir.path()).expect_err("damaged");
        assert!(format!("{e:#}").contains(KEPT_FILE), "{e:#}");
    }

    #[test]
    fn the_merge_keeps_the_files_restart_only_sections() {
        let file = warden_policy::parse(
            "daemon: {listen: 127.0.0.1:9500, metrics_top_k: 5}\ninterfaces: [{name: lo, mode: host}]\ntenants: [{id: a, addresses: [198.18.0.0/24]}]\n",
            "file",
        )
        .expect("parses");
        let api = warden_policy::parse(
            "daemon: {management: [198.18.100.0/24], metrics_top_k: 7}\ntenants: [{id: b, addresses: [198.18.1.0/24]}]\n",
            "api",
        )
        .expect("parses");
        let m = merged(file, api);
        assert_eq!(m.daemon.listen.port(), 9500);
        assert_eq!(m.daemon.metrics_top_k, 7);
        assert_eq!(m.daemon.management.len(), 1);
        assert_eq!(m.interfaces.len(), 1);
        assert!(m.tenant("b").is_some() && m.tenant("a").is_none());
    }
}
