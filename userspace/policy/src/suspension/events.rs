//! Suspensions in the events log (`daemon.events_log`): one JSON line per suspend and
//! unsuspend, with the suspension sequence number, written and fsynced before the
//! change is reported done; a snapshot line of every active suspension at each start and
//! restore, so a log whose older part was rotated away still rebuilds from its last
//! snapshot on. The lines share the log with the review workflow's flag events (which
//! have no `suspension_seq`), so a SIEM sees both.
//!
//! [`rebuild`] puts the newest state back together from the kernel's record and the log:
//! the newer of the record and the log's last snapshot, then every later change.

use std::collections::BTreeSet;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;

use super::{Suspended, SuspensionState};
use crate::time::rfc3339;

/// `event` of a suspend line.
pub const SUSPENDED: &str = "tenant_suspended";
/// `event` of an unsuspend line.
pub const UNSUSPENDED: &str = "tenant_unsuspended";
/// `event` of a snapshot line.
pub const SNAPSHOT: &str = "suspension_snapshot";

/// The line for a suspend.
pub fn suspended_line(s: &Suspended) -> String {
    json!({
        "at": rfc3339(s.since),
        "ts": s.since,
        "event": SUSPENDED,
        "actor": s.actor,
        "tenant": s.tenant,
        "reason": s.reason,
        "addresses": s.addresses,
        "since": s.since,
        "suspension_seq": s.seq,
    })
    .to_string()
}

/// The line for an unsuspend of `s` at `at` by `actor` for `reason`, at sequence `seq`.
pub fn unsuspended_line(s: &Suspended, actor: &str, reason: &str, at: i64, seq: u64) -> String {
    json!({
        "at": rfc3339(at),
        "ts": at,
        "event": UNSUSPENDED,
        "actor": actor,
        "tenant": s.tenant,
        "reason": reason,
        "addresses": s.addresses,
        "suspended_since": s.since,
        "suspension_seq": seq,
    })
    .to_string()
}

/// The line recording every active suspension (`why`: `start` or `restore`).
pub fn snapshot_line(state: &SuspensionState, actor: &str, why: &str, at: i64) -> String {
    json!({
        "at": rfc3339(at),
        "ts": at,
        "event": SNAPSHOT,
        "actor": actor,
        "why": why,
        "suspension_seq": state.seq,
        "suspensions": state.tenants.values().collect::<Vec<_>>(),
    })
    .to_string()
}

/// One suspension line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A suspend.
    Suspended(Suspended),
    /// An unsuspend of `tenant` at `seq`.
    Unsuspended {
        tenant: String,
        actor: String,
        reason: String,
        at: i64,
        seq: u64,
    },
    /// Every active suspension at `state.seq`.
    Snapshot(SuspensionState),
}

impl LogEvent {
    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            LogEvent::Suspended(s) => s.seq,
            LogEvent::Unsuspended { seq, .. } => *seq,
            LogEvent::Snapshot(s) => s.seq,
        }
    }
}

#[derive(Deserialize)]
struct Line {
    event: String,
    #[serde(default)]
    ts: i64,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    addresses: Vec<IpNet>,
    #[serde(default)]
    since: Option<i64>,
    suspension_seq: u64,
    #[serde(default)]
    suspensions: Vec<Suspended>,
}

/// Parses one line: `Ok(None)` for a line that is not about suspensions (a flag event).
pub fn parse_line(line: &str) -> Result<Option<LogEvent>, String> {
    // Most lines are flag events: skip them without parsing.
    if !line.contains("\"suspension_seq\"") {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
    Ok(Some(match l.event.as_str() {
        SUSPENDED => LogEvent::Suspended(Suspended {
            tenant: l.tenant,
            addresses: l.addresses,
            reason: l.reason,
            actor: l.actor,
            since: l.since.unwrap_or(l.ts),
            seq: l.suspension_seq,
        }),
        UNSUSPENDED => LogEvent::Unsuspended {
            tenant: l.tenant,
            actor: l.actor,
            reason: l.reason,
            at: l.ts,
            seq: l.suspension_seq,
        },
        SNAPSHOT => LogEvent::Snapshot(SuspensionState::new(l.suspension_seq, l.suspensions)),
        other => return Err(format!("unknown suspension event `{other}`")),
    }))
}

/// The suspension lines of one or more events logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsLogState {
    /// Every suspension line, in file order.
    pub events: Vec<LogEvent>,
    /// Suspension lines that could not be read, as `file:line: error`.
    pub bad_lines: Vec<String>,
}

impl EventsLogState {
    /// The highest sequence number in the log (0 when it has none).
    pub fn last_seq(&self) -> u64 {
        self.events.iter().map(LogEvent::seq).max().unwrap_or(0)
    }

    /// Adds the lines of `text` (named `name` in errors).
    pub fn add_text(&mut self, name: &str, text: impl std::io::BufRead) -> std::io::Result<()> {
        for (i, line) in text.lines().enumerate() {
            let line = line?;
            match parse_line(&line) {
                Ok(Some(e)) => self.events.push(e),
                Ok(None) => {}
                Err(e) => self.bad_lines.push(format!("{name}:{}: {e}", i + 1)),
            }
        }
        Ok(())
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        let mut log = EventsLogState::default();
        if !log.add_file(path)? {
            return Ok(None);
        }
        Ok(Some(log))
    }

    /// Adds the lines of `path`; `Ok(false)` when it does not exist.
    pub fn add_file(&mut self, path: &Path) -> std::io::Result<bool> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        self.add_text(&path.display().to_string(), std::io::BufReader::new(file))?;
        Ok(true)
    }
}

/// What [`rebuild`] put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The newest state the sources hold.
    pub state: SuspensionState,
    /// Where it started: `kernel record at N`, `events log snapshot at N` or `nothing`.
    pub base: String,
    /// Changes applied on top of the base from the events log.
    pub applied: usize,
    /// What a person should know (gaps in the sequence, unreadable lines, ...).
    pub warnings: Vec<String>,
}

/// The newest suspension state of the kernel's `record` and the events `log`: the newer of
/// the record and the log's last snapshot, then the log's suspends and unsuspends after it,
/// in sequence order. A gap in the sequence is reported: a part of the log is missing.
pub fn rebuild(record: Option<&SuspensionState>, log: Option<&EventsLogState>) -> Rebuilt {
    let empty = EventsLogState::default();
    let log = log.unwrap_or(&empty);
    let mut warnings: Vec<String> = log
        .bad_lines
        .iter()
        .map(|l| format!("unreadable suspension line skipped: {l}"))
        .collect();
    let snapshot = log
        .events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Snapshot(s) => Some(s),
            _ => None,
        })
        .max_by_key(|s| s.seq);
    let (mut state, base) = match (record, snapshot) {
        (Some(r), Some(s)) if s.seq > r.seq => (
            s.clone(),
            format!("events log snapshot at sequence {}", s.seq),
        ),
        (Some(r), _) => (r.clone(), format!("kernel record at sequence {}", r.seq)),
        (None, Some(s)) => (
            s.clone(),
            format!("events log snapshot at sequence {}", s.seq),
        ),
        (None, None) => (SuspensionState::default(), "nothing".to_string()),
    };
    let mut changes: Vec<&LogEvent> = log
        .events
        .iter()
        .filter(|e| !matches!(e, LogEvent::Snapshot(_)) && e.seq() > state.seq)
        .collect();
    // Stable: of two lines with one number, the later in the file wins.
    changes.sort_by_key(|e| e.seq());
    let mut seen = BTreeSet::new();
    let mut applied = 0;
    for e in &changes {
        if !seen.insert(e.seq()) {
            warnings.push(format!(
                "sequence {} appears more than once in the events log; the later line is used",
                e.seq()
            ));
        }
    }
    let mut last: Vec<&LogEvent> = Vec::new();
    for e in changes {
        match last.last() {
            Some(prev) if prev.seq() == e.seq() => {
                last.pop();
            }
            _ => {}
        }
        last.push(e);
    }
    for e in last {
        if e.seq() != state.seq + 1 {
            warnings.push(format!(
                "the events log has no line for sequence {}..{}: a part of it is missing \
                 (rotated?); pass the older files with --events-log too",
                state.seq + 1,
                e.seq() - 1
            ));
        }
        match e {
            LogEvent::Suspended(s) => {
                state.tenants.insert(s.tenant.clone(), s.clone());
            }
            LogEvent::Unsuspended { tenant, .. } => {
                if state.tenants.remove(tenant).is_none() {
                    warnings.push(format!(
                        "the events log lifts tenant {tenant} at sequence {} but it was not \
                         suspended in what came before",
                        e.seq()
                    ));
                }
            }
            LogEvent::Snapshot(_) => {}
        }
        state.seq = e.seq();
        applied += 1;
    }
    Rebuilt {
        state,
        base,
        applied,
        warnings,
    }
}
