//! The ladder's state machine: escalation per (tenant, kind), expiry per (tenant, kind, target).
//!
//! - A detection earns the policy's `action`, raised one step each time `escalate_after`
//!   detections of the same (tenant, kind) fall within `escalation_window`, and never above
//!   `ceiling`. A whole quiet `escalation_window` forgets the escalation.
//! - `observe` and `flag` only record. `throttle` and `block` are applied to the detection's
//!   target and expire `expire_after` (a block: `block_for`) after the last detection; each
//!   new detection extends them, and so does [`Ladder::refresh`] while one episode goes on
//!   (without counting a repeat). A further target of an open episode gets the episode's
//!   level ([`Ladder::on_new_target`]), also without counting a repeat. `suspend` applies
//!   to the whole tenant and has no expiry; only a person lifts it. Which tenants are
//!   suspended is not the ladder's to keep: it decides a suspension whenever a detection
//!   earns one, and the daemon, which holds the suspensions, carries out only the first
//!   (the pipeline asks it through its effects). When a suspension is lifted, or could
//!   not be carried out, [`Ladder::forget_escalation`] starts the tenant again at its
//!   policy's action.
//! - An applied action is not softened by a milder later detection (it only expires), except
//!   when the policy's ceiling drops below it: then it is lifted or lowered at once.
//!
//! State is bounded: at most `max_active` temporary actions and `max_tracked` (tenant, kind)
//! escalation trackers. When the active table is full, a detection for a new target is still
//! recorded (so it is flagged) but not enforced, and counted in
//! [`LadderStats::refused_full`]: enforcement already in force is never evicted to make room.
//! When the trackers are full, a new (tenant, kind) is not escalated, counted in
//! [`LadderStats::untracked_full`]. Suspensions are one per tenant, and tenants come from the
//! policy, so they need no cap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::decision::{Decision, DetectionKey, Target};
use warden_policy::{Action, Kind, Response};

/// Default cap on temporary actions in force at once.
pub const DEFAULT_MAX_ACTIVE: usize = 65_536;
/// Default cap on (tenant, kind) escalation trackers.
pub const DEFAULT_MAX_TRACKED: usize = 65_536;
/// `escalate_after` above this counts as this: it bounds the timestamps one tracker keeps.
const MAX_REPEATS: u32 = 1_024;
/// Steps from `observe` to `suspend`; more escalation levels change nothing.
const MAX_LEVEL: u8 = (Action::ALL.len() - 1) as u8;

/// A temporary action in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ActiveEntry {
    /// Throttle or block.
    pub action: Action,
    /// When it expires unless the behaviour continues.
    pub until: Duration,
}

/// Counters and sizes for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LadderStats {
    /// Temporary actions in force.
    pub active: usize,
    /// (tenant, kind) pairs whose repeats are being counted.
    pub tracked: usize,
    /// Detections not enforced because the active table was full.
    pub refused_full: u64,
    /// Detections not counted towards escalation because the trackers were full.
    pub untracked_full: u64,
}

/// Recent detections of one (tenant, kind).
#[derive(Debug)]
struct Track {
    /// Detections since the last escalation step, within the window, oldest first.
    recent: VecDeque<Duration>,
    /// Steps above the policy's action.
    level: u8,
    /// The latest detection.
    last: Duration,
    /// The window the latest detection's policy gave, to forget the tracker in `tick`.
    window: Duration,
}

/// The enforcement ladder. See the module documentation for the rules.
#[derive(Debug)]
pub struct Ladder {
    active: BTreeMap<DetectionKey, ActiveEntry>,
    tracks: HashMap<(String, Kind), Track>,
    max_active: usize,
    max_tracked: usize,
    refused_full: u64,
    untracked_full: u64,
}

impl Default for Ladder {
    fn default() -> Self {
        Self::new()
    }
}

impl Ladder {
    /// An empty ladder with the default caps.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_ACTIVE, DEFAULT_MAX_TRACKED)
    }

    /// An empty ladder holding at most `max_active` temporary actions and `max_tracked`
    /// escalation trackers.
    pub fn with_limits(max_active: usize, max_tracked: usize) -> Self {
        Ladder {
            active: BTreeMap::new(),
            tracks: HashMap::new(),
            max_active,
            max_tracked,
            refused_full: 0,
            untracked_full: 0,
        }
    }

    /// Handles one detection at `now` under the tenant's `response` for its kind.
    ///
    /// Returns a [`Decision::Record`] first, then at most one of `Apply`, `Extend` or `Lift`.
    pub fn on_detection(
        &mut self,
        d: &DetectionKey,
        response: &Response,
        now: Duration,
    ) -> Vec<Decision> {
        let level = self.escalation(d, response, now);
        self.decide(d, response, level, now)
    }

    /// An open episode reached a further target (a second victim of the same flood, a scan
    /// that moved on to another port): handles it like a detection at the (tenant, kind)'s
    /// current escalation level, without counting a repeat. One attack on many targets is
    /// one detection for escalation, as one long attack is.
    ///
    /// Returns a [`Decision::Record`] first, then at most one of `Apply`, `Extend` or `Lift`.
    pub fn on_new_target(
        &mut self,
        d: &DetectionKey,
        response: &Response,
        now: Duration,
    ) -> Vec<Decision> {
        let level = match self.tracks.get_mut(&(d.tenant.clone(), d.kind)) {
            Some(track) if now.saturating_sub(track.last) <= track.window => {
                track.last = track.last.max(now);
                track.level
            }
            _ => 0,
        };
        self.decide(d, response, level, now)
    }

    /// The behaviour behind `d` was seen again at `seen` within the same episode: keeps its
    /// temporary action in force until `seen` plus its lifetime, without counting a repeat
    /// towards escalation. Returns the [`Decision::Extend`] when that moves the expiry later;
    /// `None` when nothing is in force for `d`, the expiry would not move, or the policy's
    /// ceiling has since dropped below the action (it then runs out as it is).
    ///
    /// The (tenant, kind)'s escalation stays remembered while its episode lasts, so an
    /// attack longer than `escalation_window` does not restart at the policy's action.
    pub fn refresh(
        &mut self,
        d: &DetectionKey,
        response: &Response,
        seen: Duration,
    ) -> Option<Decision> {
        if let Some(track) = self.tracks.get_mut(&(d.tenant.clone(), d.kind)) {
            track.last = track.last.max(seen);
        }
        let entry = self.active.get_mut(d)?;
        if entry.action > response.ceiling {
            return None;
        }
        let until = seen
            .checked_add(lifetime(response, entry.action))
            .unwrap_or(Duration::MAX);
        if until <= entry.until {
            return None;
        }
        entry.until = until;
        Some(Decision::Extend {
            tenant: d.tenant.clone(),
            kind: d.kind,
            target: d.target.clone(),
            action: entry.action,
            until,
        })
    }

    /// The action `d` earned at escalation `level`, and what to do about it.
    fn decide(
        &mut self,
        d: &DetectionKey,
        response: &Response,
        level: u8,
        now: Duration,
    ) -> Vec<Decision> {
        let earned = escalate(response.action, level).min(response.ceiling);
        let existing = self.active.get(d).map(|e| e.action);
        let action = existing
            .map_or(earned, |a| a.max(earned))
            .min(response.ceiling);
        let mut out = vec![Decision::Record {
            tenant: d.tenant.clone(),
            kind: d.kind,
            target: d.target.clone(),
            action,
        }];
        match action {
            Action::Observe | Action::Flag => {
                // Only reachable with an entry when the ceiling dropped below it.
                if let Some(entry) = self.active.remove(d) {
                    out.push(lift(d, entry.action));
                }
            }
            Action::Throttle | Action::Block => {
                let until = now
                    .checked_add(lifetime(response, action))
                    .unwrap_or(Duration::MAX);
                if let Some(decision) = self.activate(d, action, until) {
                    out.push(decision);
                }
            }
            Action::Suspend => out.push(Decision::Apply {
                tenant: d.tenant.clone(),
                kind: d.kind,
                target: Target::Tenant,
                action: Action::Suspend,
                until: None,
            }),
        }
        out
    }

    /// Lifts the temporary actions whose expiry is at or before `now`, and forgets trackers
    /// quiet for their whole window. Never lifts a suspension.
    pub fn tick(&mut self, now: Duration) -> Vec<Decision> {
        let expired: Vec<DetectionKey> = self
            .active
            .iter()
            .filter(|(_, e)| e.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        self.tracks
            .retain(|_, t| now.saturating_sub(t.last) <= t.window);
        expired
            .into_iter()
            .filter_map(|k| self.active.remove(&k).map(|e| lift(&k, e.action)))
            .collect()
    }

    /// Forgets `tenant`'s escalation, so it starts again at its policy's action: a person
    /// lifted its suspension, or a suspension the ladder decided could not be carried out.
    pub fn forget_escalation(&mut self, tenant: &str) {
        self.tracks.retain(|(t, _), _| t != tenant);
    }

    /// `tenant` left the policy: forgets its temporary actions and escalation (the kernel
    /// state of a removed tenant is reset when its slot is reused). Its suspension, if it
    /// has one, is the daemon's, and only a person lifts it.
    pub fn forget_tenant(&mut self, tenant: &str) {
        self.active.retain(|k, _| k.tenant != tenant);
        self.tracks.retain(|(t, _), _| t != tenant);
    }

    /// The temporary actions in force, by key.
    pub fn active(&self) -> impl Iterator<Item = (&DetectionKey, &ActiveEntry)> {
        self.active.iter()
    }

    /// Sizes and counters.
    pub fn stats(&self) -> LadderStats {
        LadderStats {
            active: self.active.len(),
            tracked: self.tracks.len(),
            refused_full: self.refused_full,
            untracked_full: self.untracked_full,
        }
    }

    /// Counts the detection towards escalation and returns the (tenant, kind)'s level.
    fn escalation(&mut self, d: &DetectionKey, response: &Response, now: Duration) -> u8 {
        let key = (d.tenant.clone(), d.kind);
        if !self.tracks.contains_key(&key) && self.tracks.len() >= self.max_tracked {
            self.untracked_full += 1;
            return 0;
        }
        let window = response.escalation_window;
        let track = self.tracks.entry(key).or_insert_with(|| Track {
            recent: VecDeque::new(),
            level: 0,
            last: now,
            window,
        });
        if now.saturating_sub(track.last) > window {
            track.level = 0;
            track.recent.clear();
        }
        track.last = now;
        track.window = window;
        while track
            .recent
            .front()
            .is_some_and(|first| now.saturating_sub(*first) > window)
        {
            track.recent.pop_front();
        }
        let needed = response.escalate_after.min(MAX_REPEATS);
        if needed > 0 {
            track.recent.push_back(now);
            if track.recent.len() >= needed as usize {
                track.level = (track.level + 1).min(MAX_LEVEL);
                track.recent.clear();
            }
        }
        track.level
    }

    /// Applies or extends a temporary `action` on `d`'s target.
    fn activate(&mut self, d: &DetectionKey, action: Action, until: Duration) -> Option<Decision> {
        if let Some(entry) = self.active.get_mut(d) {
            let same = entry.action == action;
            *entry = ActiveEntry { action, until };
            return Some(if same {
                Decision::Extend {
                    tenant: d.tenant.clone(),
                    kind: d.kind,
                    target: d.target.clone(),
                    action,
                    until,
                }
            } else {
                apply(d, action, until)
            });
        }
        if self.active.len() >= self.max_active {
            self.refused_full += 1;
            tracing::warn!(
                tenant = %d.tenant, kind = %d.kind, target = %d.target, %action,
                max_active = self.max_active,
                "enforcement table full; detection recorded but not enforced"
            );
            return None;
        }
        self.active.insert(d.clone(), ActiveEntry { action, until });
        Some(apply(d, action, until))
    }
}

/// How long `action` lasts after the behaviour was last seen.
fn lifetime(response: &Response, action: Action) -> Duration {
    match action {
        Action::Block => response.block_for,
        _ => response.expire_after,
    }
}

/// `action` raised `level` steps.
fn escalate(action: Action, level: u8) -> Action {
    (0..level).fold(action, |a, _| a.escalated())
}

fn apply(d: &DetectionKey, action: Action, until: Duration) -> Decision {
    Decision::Apply {
        tenant: d.tenant.clone(),
        kind: d.kind,
        target: d.target.clone(),
        action,
        until: Some(until),
    }
}

fn lift(d: &DetectionKey, action: Action) -> Decision {
    Decision::Lift {
        tenant: d.tenant.clone(),
        kind: d.kind,
        target: d.target.clone(),
        action,
    }
}
