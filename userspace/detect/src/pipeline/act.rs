//! Carrying out the ladder's decisions: kernel throttles and blocks (several detections
//! may hold one kernel state: a tenant's throttles combine, a block stays while any
//! detection holds it), flags with their evidence and actions, and suspensions.

use std::time::Duration;

use serde_json::Value;

use super::{target, EffectError, Effects, InForce, Now, Pipeline, ACTOR, CAPTURE_FRAMES};
use crate::ladder::{Decision, DetectionKey};
use crate::Detection;
use warden_policy::flag::{ActionDecision, FlagAction, NewFlag};
use warden_policy::tenant::TenantSlot;
use warden_policy::{Action, Kind, Response};

impl Pipeline {
    /// Carries out the ladder's decisions. `detection` is the started detection they are
    /// about, if any; `response` the policy they were decided under (absent for lifts).
    pub(super) fn act_on(
        &mut self,
        decisions: Vec<Decision>,
        detection: Option<&Detection>,
        response: Option<&Response>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        for decision in decisions {
            let Some(&slot) = self.ids.get(decision.tenant()) else {
                continue;
            };
            let key = decision.key();
            match decision {
                Decision::Record { kind, action, .. } => {
                    if action >= Action::Flag {
                        self.open_flag(slot, kind, detection, now, fx);
                    }
                }
                Decision::Apply {
                    kind,
                    action,
                    until,
                    ..
                } => {
                    let flag = self.episodes.get(&(slot, kind)).and_then(|e| e.flag);
                    if action == Action::Suspend {
                        self.suspend(&key, flag, now, fx);
                        continue;
                    }
                    let until = until.unwrap_or(Duration::MAX);
                    tracing::warn!(tenant = %key.tenant, %kind, target = %key.target, %action, flag = ?flag, "applying");
                    self.put_in_force(slot, &key, action, Some(until), now, fx);
                    self.in_force.insert(
                        key.clone(),
                        InForce {
                            flag,
                            recorded_until: until,
                        },
                    );
                    self.record(
                        flag,
                        ActionDecision::Apply,
                        &key,
                        action,
                        Some(until),
                        now,
                        fx,
                    );
                }
                Decision::Extend {
                    kind,
                    action,
                    until,
                    ..
                } => {
                    self.put_in_force(slot, &key, action, Some(until), now, fx);
                    let episode_flag = self.episodes.get(&(slot, kind)).and_then(|e| e.flag);
                    let entry = self.in_force.entry(key.clone()).or_insert(InForce {
                        flag: episode_flag,
                        recorded_until: Duration::ZERO,
                    });
                    if episode_flag.is_some() && entry.flag != episode_flag {
                        // A new episode took over an action still in force.
                        entry.flag = episode_flag;
                        entry.recorded_until = Duration::ZERO;
                    }
                    let step = response.map_or(Duration::from_secs(60), |r| record_step(r, action));
                    if until >= entry.recorded_until.saturating_add(step) {
                        entry.recorded_until = until;
                        let flag = entry.flag;
                        self.record(
                            flag,
                            ActionDecision::Extend,
                            &key,
                            action,
                            Some(until),
                            now,
                            fx,
                        );
                    }
                }
                Decision::Lift { kind, action, .. } => {
                    tracing::info!(tenant = %key.tenant, %kind, target = %key.target, %action, "lifting");
                    self.put_in_force(slot, &key, action, None, now, fx);
                    let flag = self.in_force.remove(&key).and_then(|f| f.flag);
                    self.record(flag, ActionDecision::Lift, &key, action, None, now, fx);
                }
            }
        }
    }

    /// Puts `key`'s throttle or block in force until `until`, or takes it out (`None`),
    /// and writes the resulting kernel state.
    fn put_in_force(
        &mut self,
        slot: TenantSlot,
        key: &DetectionKey,
        action: Action,
        until: Option<Duration>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        match action {
            Action::Throttle => {
                let rate = self
                    .tenants
                    .get(&slot)
                    .map_or(warden_policy::DEFAULT_THROTTLE_TO, |t| {
                        t.detectors.response(key.kind).throttle_to
                    });
                let entries = self.throttles.entry(slot).or_default();
                match until {
                    Some(until) => {
                        entries.insert(key.clone(), (rate, until));
                    }
                    None => {
                        entries.remove(key);
                    }
                }
                let effective =
                    entries
                        .values()
                        .fold(None, |acc: Option<(u64, Duration)>, (r, u)| {
                            Some(acc.map_or((*r, *u), |(ar, au)| (ar.min(*r), au.max(*u))))
                        });
                if effective.is_none() {
                    self.throttles.remove(&slot);
                }
                let r = match effective {
                    Some((rate, until)) => fx.throttle(slot, Some(rate), until),
                    None => fx.throttle(slot, None, now.mono),
                };
                if let Err(e) = r {
                    self.failed("throttle", slot, &e);
                }
            }
            Action::Block => {
                self.put_containment(slot, key, until, fx);
                let Some(cut) = target::block_target(key.kind, &key.target) else {
                    // Tenant-wide: the kernel already drops this traffic; recorded only.
                    return;
                };
                let entries = self.blocks.entry((slot, cut)).or_default();
                match until {
                    Some(until) => {
                        entries.insert(key.clone(), until);
                    }
                    None => {
                        entries.remove(key);
                    }
                }
                let latest = entries.values().max().copied();
                let r = match latest {
                    Some(until) => fx.block(slot, cut, until),
                    None => {
                        self.blocks.remove(&(slot, cut));
                        fx.unblock(slot, cut)
                    }
                };
                if let Err(e) = r {
                    let op = if latest.is_some() { "block" } else { "unblock" };
                    self.failed(op, slot, &e);
                }
            }
            Action::Observe | Action::Flag | Action::Suspend => {}
        }
    }

    /// A `scan` or `flood_out` block also contains the tenant's first contacts (at the
    /// detector's `contain_rate`; 0 turns it off) while any such block holds: a sweep or a
    /// flood whose targets rotate gets past per-target blocks, not past containment.
    /// Writes the kernel state that results.
    fn put_containment(
        &mut self,
        slot: TenantSlot,
        key: &DetectionKey,
        until: Option<Duration>,
        fx: &mut impl Effects,
    ) {
        let rate = match self.tenants.get(&slot) {
            Some(t) => match key.kind {
                Kind::Scan => t.detectors.scan.contain_rate,
                Kind::FloodOut => t.detectors.flood_out.contain_rate,
                _ => return,
            },
            None => return,
        };
        let entries = self.contained.entry(slot).or_default();
        match until {
            Some(until) if rate > 0.0 => {
                entries.insert(key.clone(), (rate, until));
            }
            _ => {
                if entries.remove(key).is_none() {
                    if entries.is_empty() {
                        self.contained.remove(&slot);
                    }
                    return;
                }
            }
        }
        // The strictest rate, to the latest expiry, of the blocks that hold.
        let effective = entries
            .values()
            .fold(None, |acc: Option<(f64, Duration)>, (r, u)| {
                Some(acc.map_or((*r, *u), |(ar, au)| (ar.min(*r), au.max(*u))))
            });
        if effective.is_none() {
            self.contained.remove(&slot);
        }
        if let Err(e) = fx.contain(slot, effective) {
            self.failed("contain", slot, &e);
        }
    }

    /// Opens the flag of `tenant`'s `kind` episode, unless it has one, and asks the kernel
    /// for samples.
    fn open_flag(
        &mut self,
        slot: TenantSlot,
        kind: Kind,
        detection: Option<&Detection>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        let Some(episode) = self.episodes.get_mut(&(slot, kind)) else {
            return;
        };
        if episode.flag.is_some() {
            return;
        }
        let Some(d) = detection.or_else(|| self.engine.open(slot, kind)) else {
            return;
        };
        let new = NewFlag {
            tenant: episode.tenant.clone(),
            kind,
            seen: now.unix_secs(d.first_seen),
            policy_generation: self.generation,
            thresholds: target::figures(&d.thresholds),
            figures: figures(d, episode.peak),
            top_targets: target::top_targets(&d.top_targets),
            deadline: None,
        };
        let last_seen = d.last_seen;
        match fx.create_flag(new) {
            Ok(id) => {
                episode.flag = Some(id);
                episode.evidence_at = now.mono;
                episode.evidence_seen = last_seen;
                self.counters.flags_opened += 1;
                tracing::warn!(flag = id, tenant = %episode.tenant, %kind, "flag opened");
                self.capture_for.insert(slot, id);
                if let Err(e) = fx.capture(slot, CAPTURE_FRAMES) {
                    self.failed("capture", slot, &e);
                }
            }
            Err(e) => self.failed("flag", slot, &e),
        }
    }

    /// Carries out a suspension the ladder decided.
    fn suspend(&mut self, key: &DetectionKey, flag: Option<i64>, now: &Now, fx: &mut impl Effects) {
        let reason = match flag {
            Some(id) => format!(
                "flag {id}: {} detected; the enforcement ladder escalated to suspend",
                key.kind
            ),
            None => format!(
                "{} detected; the enforcement ladder escalated to suspend",
                key.kind
            ),
        };
        match fx.suspend(&key.tenant, &reason) {
            Ok(false) => {
                tracing::debug!(tenant = %key.tenant, kind = %key.kind, "the enforcement ladder escalated to suspend a suspended tenant");
            }
            Ok(true) => {
                tracing::warn!(tenant = %key.tenant, kind = %key.kind, flag = ?flag, "tenant suspended by the enforcement ladder");
                self.record(
                    flag,
                    ActionDecision::Apply,
                    key,
                    Action::Suspend,
                    None,
                    now,
                    fx,
                );
            }
            Err(e) => {
                self.counters.failed_suspend += 1;
                tracing::error!(tenant = %key.tenant, kind = %key.kind, error = %e, "could not suspend; the next detection tries again");
                // Not suspended after all: let the next detection decide again.
                self.ladder.forget_escalation(&key.tenant);
            }
        }
    }

    /// Records an action on `flag`, if the detection has one.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        flag: Option<i64>,
        decision: ActionDecision,
        key: &DetectionKey,
        action: Action,
        until: Option<Duration>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        let Some(id) = flag else {
            return;
        };
        let a = FlagAction {
            at: now.unix_secs(now.mono),
            decision,
            action,
            target: key.target.to_string(),
            until: until.map(|u| now.unix_secs(u)),
            by: ACTOR.to_owned(),
        };
        if let Err(e) = fx.record_action(id, &a) {
            self.counters.failed_flag += 1;
            tracing::warn!(flag = id, tenant = %key.tenant, error = %e, "recording a flag action failed");
        }
    }

    /// Rewrites a flag's evidence from `d`.
    pub(super) fn write_evidence(
        &mut self,
        flag: i64,
        slot: TenantSlot,
        d: &Detection,
        peak: Option<(f64, f64)>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        let r = fx.update_flag(
            flag,
            now.unix_secs(d.last_seen),
            &figures(d, peak),
            &target::top_targets(&d.top_targets),
        );
        if let Err(e) = r {
            self.failed("flag", slot, &e);
        }
    }
    /// Counts and logs a failed effect; never fatal.
    pub(super) fn failed(&mut self, op: &'static str, slot: TenantSlot, e: &EffectError) {
        let c = &mut self.counters;
        match (op, e) {
            ("block", EffectError::BlocksFull) => c.blocks_full += 1,
            ("block", _) => c.failed_block += 1,
            ("unblock", _) => c.failed_unblock += 1,
            ("throttle", _) => c.failed_throttle += 1,
            ("capture", _) => c.failed_capture += 1,
            _ => c.failed_flag += 1,
        }
        let id = self.tenants.get(&slot).map_or("?", |t| t.id.as_str());
        tracing::warn!(tenant = %id, op, error = %e, "detection action failed");
    }
}

/// A flag's figures: the detection's, and for a flood the peak of the tenant's rates in
/// its direction (`tenant_out_pps`, `tenant_out_bps`, or `tenant_in_*`).
fn figures(d: &Detection, peak: Option<(f64, f64)>) -> Value {
    let mut v = target::figures(&d.figures);
    let dir = match d.kind {
        Kind::FloodOut => "out",
        Kind::FloodIn => "in",
        _ => return v,
    };
    if let (Some((pps, bps)), Some(map)) = (peak, v.as_object_mut()) {
        map.insert(format!("tenant_{dir}_pps"), serde_json::json!(pps.round()));
        map.insert(format!("tenant_{dir}_bps"), serde_json::json!(bps.round()));
    }
    v
}

/// How far an extension must move an action's expiry before it is recorded on the flag
/// again: a tenth of its lifetime, between 1 s and 60 s.
fn record_step(response: &Response, action: Action) -> Duration {
    let life = match action {
        Action::Block => response.block_for,
        _ => response.expire_after,
    };
    (life / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}
