use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use warden_policy::{Action, Kind, Response};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn response(action: Action) -> Response {
    Response {
        action,
        expire_after: secs(600),
        block_for: secs(600),
        throttle_to: 10_000_000,
        escalate_after: 3,
        escalation_window: secs(3_600),
        ceiling: Action::Suspend,
    }
}

fn victim(last: u8) -> DetectionKey {
    DetectionKey {
        tenant: "t1".into(),
        kind: Kind::FloodOut,
        target: Target::Addr(IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))),
    }
}

fn applies(ds: &[Decision]) -> Vec<&Decision> {
    ds.iter()
        .filter(|d| matches!(d, Decision::Apply { .. }))
        .collect()
}

fn recorded(ds: &[Decision]) -> Action {
    match ds.first() {
        Some(Decision::Record { action, .. }) => *action,
        other => panic!("first decision is not a Record: {other:?}"),
    }
}

#[test]
fn observe_records_and_never_applies() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Observe);
    r.ceiling = Action::Observe;
    for i in 0..20 {
        let ds = ladder.on_detection(&victim(1), &r, secs(i));
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!(recorded(&ds), Action::Observe);
    }
    assert!(ladder.tick(secs(10_000)).is_empty());
    assert_eq!(ladder.stats().active, 0);
}

#[test]
fn flag_records_for_review_without_enforcing() {
    let mut ladder = Ladder::new();
    let ds = ladder.on_detection(&victim(1), &response(Action::Flag), secs(0));
    assert_eq!(ds.len(), 1);
    assert_eq!(recorded(&ds), Action::Flag);
    assert_eq!(ladder.active().count(), 0);
}

#[test]
fn throttle_applies_to_the_target_with_expiry() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    let ds = ladder.on_detection(&key, &response(Action::Throttle), secs(100));
    assert_eq!(
        ds[1],
        Decision::Apply {
            tenant: "t1".into(),
            kind: Kind::FloodOut,
            target: key.target.clone(),
            action: Action::Throttle,
            until: Some(secs(700)),
        }
    );
}

#[test]
fn block_cuts_only_the_victim_not_the_tenant() {
    let mut ladder = Ladder::new();
    let ds = ladder.on_detection(&victim(1), &response(Action::Block), secs(0));
    let [Decision::Apply { target, action, .. }] = applies(&ds)[..] else {
        panic!("expected one Apply: {ds:?}");
    };
    assert_eq!(*action, Action::Block);
    assert_eq!(*target, victim(1).target);
    assert!(ds.iter().all(|d| d.action() != Action::Suspend), "{ds:?}");
    // A second victim gets its own block.
    let ds = ladder.on_detection(&victim(2), &response(Action::Block), secs(1));
    assert_eq!(applies(&ds).len(), 1);
    assert_eq!(ladder.active().count(), 2);
}

#[test]
fn suspend_applies_to_the_whole_tenant_without_expiry() {
    let mut ladder = Ladder::new();
    let ds = ladder.on_detection(&victim(1), &response(Action::Suspend), secs(0));
    assert_eq!(
        applies(&ds),
        [&Decision::Apply {
            tenant: "t1".into(),
            kind: Kind::FloodOut,
            target: Target::Tenant,
            action: Action::Suspend,
            until: None,
        }]
    );
    // Which tenants are suspended is the daemon's: the ladder decides it again, and the
    // daemon carries out only the first (see the pipeline's tests).
    let again = ladder.on_detection(&victim(2), &response(Action::Suspend), secs(1));
    assert_eq!(applies(&again).len(), 1, "{again:?}");
    assert!(
        ladder.active().next().is_none(),
        "a suspension is not a temporary action"
    );
}

#[test]
fn suspension_never_expires() {
    let mut ladder = Ladder::new();
    ladder.on_detection(&victim(1), &response(Action::Suspend), secs(0));
    for t in [600, 3_600, 86_400 * 365] {
        assert!(ladder.tick(secs(t)).is_empty());
    }
}

#[test]
fn a_lifted_suspension_starts_the_tenant_again_at_its_policys_action() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Block);
    r.escalate_after = 2;
    ladder.on_detection(&victim(1), &r, secs(0));
    let ds = ladder.on_detection(&victim(2), &r, secs(1));
    assert_eq!(recorded(&ds), Action::Suspend);
    ladder.forget_escalation("t1");
    let ds = ladder.on_detection(&victim(3), &r, secs(2));
    assert_eq!(recorded(&ds), Action::Block, "{ds:?}");
}

#[test]
fn block_expires_when_the_behaviour_stops() {
    let mut ladder = Ladder::new();
    ladder.on_detection(&victim(1), &response(Action::Block), secs(0));
    assert!(ladder.tick(secs(599)).is_empty());
    assert_eq!(
        ladder.tick(secs(600)),
        [Decision::Lift {
            tenant: "t1".into(),
            kind: Kind::FloodOut,
            target: victim(1).target,
            action: Action::Block,
        }]
    );
    assert!(ladder.tick(secs(601)).is_empty(), "lifted once");
    assert_eq!(ladder.stats().active, 0);
}

#[test]
fn continuing_behaviour_extends_the_expiry() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    let mut r = response(Action::Block);
    r.escalate_after = 0;
    ladder.on_detection(&key, &r, secs(0));
    let ds = ladder.on_detection(&key, &r, secs(500));
    assert_eq!(
        ds[1],
        Decision::Extend {
            tenant: "t1".into(),
            kind: Kind::FloodOut,
            target: key.target.clone(),
            action: Action::Block,
            until: secs(1_100),
        }
    );
    assert!(ladder.tick(secs(600)).is_empty(), "refreshed, not expired");
    assert_eq!(ladder.tick(secs(1_100)).len(), 1);
}

#[test]
fn refresh_keeps_a_block_alive_while_the_episode_goes_on_without_escalating() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    let mut r = response(Action::Throttle);
    r.escalate_after = 2;
    ladder.on_detection(&key, &r, secs(0));
    // Seen every second for longer than the expiry: the throttle stays, never escalates.
    for t in 1..=900 {
        let d = ladder.refresh(&key, &r, secs(t));
        assert_eq!(
            d,
            Some(Decision::Extend {
                tenant: "t1".into(),
                kind: Kind::FloodOut,
                target: key.target.clone(),
                action: Action::Throttle,
                until: secs(t + 600),
            })
        );
        assert!(
            ladder.tick(secs(t)).is_empty(),
            "expired at {t} while refreshed"
        );
    }
    assert_eq!(
        ladder.active().next().map(|(_, e)| e.action),
        Some(Action::Throttle)
    );
    // A seen time that does not move the expiry later changes nothing.
    assert_eq!(ladder.refresh(&key, &r, secs(800)), None);
    // The behaviour stops: it expires expire_after after it was last seen.
    assert!(ladder.tick(secs(1_499)).is_empty());
    assert_eq!(ladder.tick(secs(1_500)).len(), 1);
    assert_eq!(
        ladder.refresh(&key, &r, secs(1_501)),
        None,
        "nothing in force"
    );
}

#[test]
fn refresh_keeps_the_escalation_of_a_long_episode() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    let mut r = response(Action::Throttle);
    r.escalate_after = 2;
    r.escalation_window = secs(100);
    ladder.on_detection(&key, &r, secs(0));
    let ds = ladder.on_detection(&key, &r, secs(1));
    assert_eq!(recorded(&ds), Action::Block);
    for t in (50..=400).step_by(50) {
        ladder.refresh(&key, &r, secs(t));
        ladder.tick(secs(t));
    }
    assert_eq!(ladder.stats().tracked, 1, "the episode went on: not quiet");
    let ds = ladder.on_new_target(&victim(2), &r, secs(401));
    assert_eq!(recorded(&ds), Action::Block, "the episode's level");
}

#[test]
fn refresh_does_not_renew_an_action_above_a_lowered_ceiling() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    ladder.on_detection(&key, &response(Action::Block), secs(0));
    let mut r = response(Action::Flag);
    r.ceiling = Action::Throttle;
    assert_eq!(ladder.refresh(&key, &r, secs(10)), None);
    assert_eq!(ladder.tick(secs(600)).len(), 1, "runs out as it was");
}

#[test]
fn blocks_last_block_for_and_throttles_expire_after() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Block);
    r.block_for = secs(300);
    let ds = ladder.on_detection(&victim(1), &r, secs(10));
    assert!(
        matches!(&ds[1], Decision::Apply { until: Some(u), .. } if *u == secs(310)),
        "{ds:?}"
    );
    let d = ladder.refresh(&victim(1), &r, secs(20));
    assert!(
        matches!(d, Some(Decision::Extend { until, .. }) if until == secs(320)),
        "{d:?}"
    );
    r.action = Action::Throttle;
    let ds = ladder.on_detection(&victim(2), &r, secs(10));
    assert!(
        matches!(&ds[1], Decision::Apply { until: Some(u), .. } if *u == secs(610)),
        "{ds:?}"
    );
}

#[test]
fn a_new_target_of_an_open_episode_gets_its_level_without_counting_a_repeat() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Throttle);
    r.escalate_after = 2;
    ladder.on_detection(&victim(1), &r, secs(0));
    // Many further victims of the same episode: each is throttled, none escalates.
    for i in 2..=20 {
        let ds = ladder.on_new_target(&victim(i), &r, secs(u64::from(i)));
        assert_eq!(recorded(&ds), Action::Throttle, "victim {i}");
        assert_eq!(applies(&ds).len(), 1, "victim {i}: {ds:?}");
    }
    assert_eq!(ladder.stats().active, 20);
    // The second detection (a repeat) escalates, and later targets get the new level.
    let ds = ladder.on_detection(&victim(1), &r, secs(30));
    assert_eq!(recorded(&ds), Action::Block);
    let ds = ladder.on_new_target(&victim(21), &r, secs(31));
    assert_eq!(recorded(&ds), Action::Block);
    // Without a tracked episode a new target starts at the policy's action.
    let other = DetectionKey {
        tenant: "t2".into(),
        kind: Kind::Scan,
        target: Target::Port(22),
    };
    assert_eq!(
        recorded(&ladder.on_new_target(&other, &r, secs(0))),
        Action::Throttle
    );
}

#[test]
fn forgetting_a_tenant_drops_its_actions_and_escalation() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Block);
    r.escalate_after = 0;
    ladder.on_detection(&victim(1), &r, secs(0));
    let other = DetectionKey {
        tenant: "t2".into(),
        kind: Kind::FloodOut,
        target: Target::Addr(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9))),
    };
    ladder.on_detection(&other, &r, secs(0));
    ladder.forget_tenant("t1");
    let keys: Vec<_> = ladder.active().map(|(k, _)| k.tenant.clone()).collect();
    assert_eq!(keys, ["t2"]);
    assert!(ladder.tick(secs(10_000)).iter().all(|d| d.tenant() == "t2"));
}

#[test]
fn repeats_within_the_window_escalate_one_step() {
    let mut ladder = Ladder::new();
    let r = response(Action::Flag);
    let actions: Vec<Action> = (0..6)
        .map(|i| recorded(&ladder.on_detection(&victim(1), &r, secs(i * 60))))
        .collect();
    use Action::*;
    assert_eq!(actions, [Flag, Flag, Throttle, Throttle, Throttle, Block]);
}

#[test]
fn repeats_spread_beyond_the_window_do_not_escalate() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Flag);
    r.escalation_window = secs(100);
    for i in 0..10 {
        let ds = ladder.on_detection(&victim(1), &r, secs(i * 60));
        assert_eq!(recorded(&ds), Action::Flag, "detection {i}");
    }
}

#[test]
fn escalation_is_forgotten_after_a_quiet_window() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Throttle);
    r.escalate_after = 2;
    r.escalation_window = secs(100);
    r.expire_after = secs(10);
    r.block_for = secs(10);
    ladder.on_detection(&victim(1), &r, secs(0));
    let ds = ladder.on_detection(&victim(1), &r, secs(1));
    assert_eq!(recorded(&ds), Action::Block);
    ladder.tick(secs(200));
    assert_eq!(ladder.stats().tracked, 0);
    let ds = ladder.on_detection(&victim(1), &r, secs(300));
    assert_eq!(recorded(&ds), Action::Throttle);
}

#[test]
fn escalation_never_passes_the_ceiling() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Flag);
    r.escalate_after = 1;
    r.ceiling = Action::Throttle;
    for i in 0..20 {
        let ds = ladder.on_detection(&victim(1), &r, secs(i));
        assert!(ds.iter().all(|d| d.action() <= Action::Throttle), "{ds:?}");
    }
}

#[test]
fn escalation_reaches_suspend_when_the_ceiling_allows() {
    let mut ladder = Ladder::new();
    let mut r = response(Action::Block);
    r.escalate_after = 2;
    ladder.on_detection(&victim(1), &r, secs(0));
    let ds = ladder.on_detection(&victim(2), &r, secs(1));
    assert_eq!(recorded(&ds), Action::Suspend);
    assert!(
        applies(&ds)
            .iter()
            .any(|d| d.action() == Action::Suspend
                && matches!(d, Decision::Apply { until: None, .. }))
    );
}

#[test]
fn lowered_ceiling_lowers_or_lifts_an_applied_action() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    ladder.on_detection(&key, &response(Action::Block), secs(0));
    let mut r = response(Action::Flag);
    r.ceiling = Action::Throttle;
    let ds = ladder.on_detection(&key, &r, secs(1));
    assert!(
        matches!(
            &ds[1],
            Decision::Apply {
                action: Action::Throttle,
                ..
            }
        ),
        "{ds:?}"
    );
    r.ceiling = Action::Flag;
    let ds = ladder.on_detection(&key, &r, secs(2));
    assert!(
        matches!(
            &ds[1],
            Decision::Lift {
                action: Action::Throttle,
                ..
            }
        ),
        "{ds:?}"
    );
    assert_eq!(ladder.stats().active, 0);
}

#[test]
fn milder_detection_does_not_soften_an_applied_block() {
    let mut ladder = Ladder::new();
    let key = victim(1);
    ladder.on_detection(&key, &response(Action::Block), secs(0));
    let ds = ladder.on_detection(&key, &response(Action::Throttle), secs(1));
    assert!(
        matches!(
            &ds[1],
            Decision::Extend {
                action: Action::Block,
                ..
            }
        ),
        "{ds:?}"
    );
}

#[test]
fn full_table_records_but_refuses_new_targets_and_counts_them() {
    let mut ladder = Ladder::with_limits(2, 16);
    let mut r = response(Action::Block);
    r.escalate_after = 0;
    for i in 1..=3 {
        let ds = ladder.on_detection(&victim(i), &r, secs(0));
        assert_eq!(recorded(&ds), Action::Block);
        assert_eq!(
            applies(&ds).len(),
            usize::from(i <= 2),
            "victim {i}: {ds:?}"
        );
    }
    let stats = ladder.stats();
    assert_eq!((stats.active, stats.refused_full), (2, 1));
    // Existing entries still refresh while full.
    let ds = ladder.on_detection(&victim(1), &r, secs(1));
    assert!(matches!(&ds[1], Decision::Extend { .. }), "{ds:?}");
}

#[test]
fn full_trackers_skip_escalation_and_count_it() {
    let mut ladder = Ladder::with_limits(16, 1);
    let mut r = response(Action::Flag);
    r.escalate_after = 1;
    ladder.on_detection(&victim(1), &r, secs(0));
    let other = DetectionKey {
        tenant: "t2".into(),
        kind: Kind::Scan,
        target: Target::Tenant,
    };
    let ds = ladder.on_detection(&other, &r, secs(0));
    assert_eq!(recorded(&ds), Action::Flag, "not escalated");
    assert_eq!(ladder.stats().untracked_full, 1);
}

#[test]
fn decisions_serialize_with_a_tag() {
    let d = Decision::Apply {
        tenant: "t1".into(),
        kind: Kind::Proxy,
        target: Target::ProxyPort(3128),
        action: Action::Block,
        until: Some(secs(5)),
    };
    let json = serde_json::to_value(&d).expect("serialize");
    assert_eq!(json["decision"], "apply");
    assert_eq!(json["target"]["proxy_port"], 3128);
    assert_eq!(json["action"], "block");
}

/// One step of a random run.
#[derive(Clone, Debug)]
enum Op {
    Detect {
        tenant: u8,
        kind: Kind,
        target: u16,
        response: Response,
    },
    /// The same episode reached a further target.
    NewTarget {
        tenant: u8,
        kind: Kind,
        target: u16,
        response: Response,
    },
    /// The behaviour was seen again `ago` seconds before now.
    Refresh {
        tenant: u8,
        kind: Kind,
        target: u16,
        response: Response,
        ago: u64,
    },
    Advance(u64),
}

fn action() -> impl Strategy<Value = Action> {
    proptest::sample::select(Action::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let response = (action(), action(), 1u64..300, 1u64..300, 0u32..5, 1u64..600).prop_map(
        |(action, ceiling, expire, block, escalate_after, window)| Response {
            action,
            expire_after: secs(expire),
            block_for: secs(block),
            throttle_to: 1_000_000,
            escalate_after,
            escalation_window: secs(window),
            ceiling,
        },
    );
    let kind = proptest::sample::select(vec![Kind::Scan, Kind::FloodOut, Kind::Proxy]);
    let key = (0u8..3, kind, 0u16..4, response);
    prop_oneof![
        (key, 0u8..3, 0u64..30).prop_map(|((tenant, kind, target, response), which, ago)| {
            match which {
                0 => Op::Detect {
                    tenant,
                    kind,
                    target,
                    response,
                },
                1 => Op::NewTarget {
                    tenant,
                    kind,
                    target,
                    response,
                },
                _ => Op::Refresh {
                    tenant,
                    kind,
                    target,
                    response,
                    ago,
                },
            }
        }),
        (0u64..200).prop_map(Op::Advance),
    ]
}

/// Per key: the temporary action last applied and not lifted since.
type Open = HashMap<(String, Kind, Target), Action>;

/// Checks that `ds` keeps the Apply/Extend/Lift protocol and follows it in `open`.
fn follow(ds: &[Decision], open: &mut Open) -> Result<(), TestCaseError> {
    for d in ds {
        match d {
            Decision::Apply {
                tenant,
                kind,
                target,
                action,
                until,
            } => {
                if *action == Action::Suspend {
                    prop_assert!(until.is_none());
                    prop_assert_eq!(target, &Target::Tenant);
                } else {
                    prop_assert!(until.is_some());
                    open.insert((tenant.clone(), *kind, target.clone()), *action);
                }
            }
            Decision::Extend {
                tenant,
                kind,
                target,
                action,
                ..
            } => {
                let key = (tenant.clone(), *kind, target.clone());
                prop_assert_eq!(open.get(&key), Some(action), "extend without apply");
            }
            Decision::Lift {
                tenant,
                kind,
                target,
                action,
            } => {
                prop_assert!(*action != Action::Suspend);
                let key = (tenant.clone(), *kind, target.clone());
                prop_assert_eq!(open.remove(&key), Some(*action), "lift without apply");
            }
            Decision::Record { .. } => {}
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn applied_actions_stay_under_the_ceiling_and_temporary_ones_are_lifted(
        ops in proptest::collection::vec(op(), 1..200),
        cap in 1usize..8,
    ) {
        let mut ladder = Ladder::with_limits(cap, 4);
        let mut now = Duration::ZERO;
        let mut open = Open::new();
        let mut longest = Duration::ZERO;
        for op in ops {
            let key = |tenant: u8, kind: Kind, target: u16| DetectionKey {
                tenant: format!("t{tenant}"),
                kind,
                target: Target::Port(target),
            };
            match op {
                Op::Detect { tenant, kind, target, response }
                | Op::NewTarget { tenant, kind, target, response } => {
                    let new = matches!(op, Op::NewTarget { .. });
                    let key = key(tenant, kind, target);
                    longest = longest.max(response.expire_after).max(response.block_for);
                    let ds = if new {
                        ladder.on_new_target(&key, &response, now)
                    } else {
                        ladder.on_detection(&key, &response, now)
                    };
                    prop_assert!(matches!(ds[0], Decision::Record { .. }), "first is not a Record: {:?}", ds);
                    for d in &ds {
                        prop_assert!(
                            d.action() <= response.ceiling || matches!(d, Decision::Lift { .. }),
                            "{:?} above ceiling {}", d, response.ceiling
                        );
                        if response.ceiling == Action::Observe {
                            prop_assert!(!matches!(d, Decision::Apply { .. }), "observe applied: {:?}", d);
                        }
                    }
                    follow(&ds, &mut open)?;
                }
                Op::Refresh { tenant, kind, target, response, ago } => {
                    let key = key(tenant, kind, target);
                    longest = longest.max(response.expire_after).max(response.block_for);
                    let before = ladder.active().find(|(k, _)| **k == key).map(|(_, e)| *e);
                    let d = ladder.refresh(&key, &response, now.saturating_sub(secs(ago)));
                    if let Some(d) = &d {
                        let Decision::Extend { until, action, .. } = d else {
                            return Err(TestCaseError::fail(format!("refresh returned {d:?}")));
                        };
                        let before = before.expect("refreshed an entry that was in force");
                        prop_assert!(*until > before.until, "refresh moved the expiry back");
                        prop_assert_eq!(*action, before.action);
                    }
                    follow(d.as_slice(), &mut open)?;
                }
                Op::Advance(s) => {
                    now += secs(s);
                    let ds = ladder.tick(now);
                    follow(&ds, &mut open)?;
                }
            }
            prop_assert!(ladder.stats().active <= cap);
        }
        // Detections stop: everything temporary is lifted once the longest expiry passes.
        let ds = ladder.tick(now + longest);
        follow(&ds, &mut open)?;
        prop_assert!(open.is_empty(), "never lifted: {:?}", open);
        prop_assert_eq!(ladder.stats().active, 0);
    }
}
