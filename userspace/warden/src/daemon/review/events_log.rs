//! The events log (`daemon.events_log`): one JSON line per flag change and per suspend
//! and unsuspend, for a SIEM to tail and as a durable place of the suspensions.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The JSON-lines events log.
#[derive(Debug)]
pub struct EventsLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl EventsLog {
    /// A log appending to `path` (opened on the first line).
    pub fn new(path: &Path) -> Self {
        EventsLog {
            path: path.to_owned(),
            file: Mutex::new(None),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and a newline in one write, then waits until it is on disk
    /// (`fdatasync`): for lines the state is rebuilt from (suspensions).
    pub fn append_durable(&self, line: &str) -> std::io::Result<()> {
        self.write_line(line, true)
    }

    /// Appends `line` and a newline in one write. On failure the file is closed, so the
    /// next line reopens it.
    pub fn append(&self, line: &str) -> std::io::Result<()> {
        self.write_line(line, false)
    }

    fn write_line(&self, line: &str, sync: bool) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Follow a rotation: a file moved away is reopened at the configured path.
        let moved = file.as_ref().is_some_and(|_| !self.path.exists());
        if file.is_none() || moved {
            *file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(&self.path)?,
            );
        }
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        let r = file.as_mut().map_or(Ok(()), |f| {
            f.write_all(text.as_bytes())?;
            if sync {
                f.sync_data()?;
            }
            Ok(())
        });
        if r.is_err() {
            *file = None;
        }
        r
    }
}
