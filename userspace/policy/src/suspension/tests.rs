use std::collections::BTreeMap;

use super::events::{parse_line, snapshot_line, suspended_line, unsuspended_line, LogEvent};
use super::reconcile::{Paths, Source, Why};
use super::*;
use crate as policy;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn suspended(tenant: &str, addresses: &[&str], seq: u64) -> Suspended {
    Suspended {
        tenant: tenant.into(),
        addresses: addresses.iter().map(|a| net(a)).collect(),
        reason: format!("abuse {tenant}"),
        actor: "ada".into(),
        since: 1_700_000_000 + seq as i64,
        seq,
    }
}

fn state(seq: u64, list: &[Suspended]) -> SuspensionState {
    SuspensionState::new(seq, list.iter().cloned())
}

const BASE: &str = "
daemon:
  management: [198.18.3.253/32]
tenants:
  - id: acme
    addresses: [198.18.1.1/32]
  - id: globex
    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]
  - id: initech
    addresses: [198.18.2.130/32]
";

fn parse(text: &str) -> policy::Policy {
    policy::parse(text, "t.yaml").unwrap()
}

fn globex_suspended() -> BTreeMap<String, Suspended> {
    state(
        1,
        &[suspended(
            "globex",
            &["198.18.2.10/32", "2001:db8:2:1::10/128"],
            1,
        )],
    )
    .tenants
}

fn rules(e: &[Exposure]) -> Vec<(Rule, Option<&str>)> {
    e.iter().map(|e| (e.rule, e.tenant.as_deref())).collect()
}

// --- prefixes -----------------------------------------------------------------------

#[test]
fn prefix_index_finds_wider_equal_and_narrower_overlaps_only() {
    let ix = prefixes::PrefixIndex::new([
        (net("198.18.0.0/16"), "wide"),
        (net("198.18.2.10/32"), "host"),
        (net("198.18.2.0/24"), "mid"),
        (net("198.19.0.0/16"), "other"),
        (net("2001:db8::/32"), "v6"),
    ]);
    let names = |v: Vec<(IpNet, &&'static str)>| {
        let mut n: Vec<&'static str> = v.into_iter().map(|(_, s)| *s).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(ix.overlapping(&net("198.18.2.0/24"))),
        vec!["host", "mid", "wide"]
    );
    assert_eq!(
        names(ix.overlapping(&net("198.18.2.11/32"))),
        vec!["mid", "wide"]
    );
    assert_eq!(
        names(ix.inside(&net("0.0.0.0/0"))).len(),
        4,
        "every v4 entry"
    );
    assert!(ix.overlapping(&net("10.0.0.0/8")).is_empty());
    assert!(ix.covers(&net("198.18.200.0/24")));
    assert!(!ix.covers(&net("198.0.0.0/8")));
    assert_eq!(names(ix.overlapping(&net("2001:db8:1::/48"))), vec!["v6"]);
}

// --- holds --------------------------------------------------------------------------

#[test]
fn a_suspended_tenant_in_the_policy_is_held_as_itself_only() {
    let h = holds(&parse(BASE), &globex_suspended());
    assert_eq!(h.tenants.len(), 1);
    assert_eq!(h.tenants["globex"], Hold::Own);
    assert!(
        h.extra.is_empty(),
        "its addresses are its own: nothing extra"
    );
    assert_eq!(h.why("globex").as_deref(), Some("suspended"));
    assert_eq!(h.why("acme"), None);
}

#[test]
fn a_tenant_given_a_suspended_address_is_held_and_the_address_stays_suspended() {
    let moved = BASE.replace(
        "    addresses: [198.18.2.130/32]",
        "    addresses: [198.18.2.130/32, 198.18.2.10/32]",
    );
    let moved = moved.replace(
        "addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]",
        "addresses: [2001:db8:2:1::10/128]",
    );
    let h = holds(&parse(&moved), &globex_suspended());
    assert_eq!(h.tenants["globex"], Hold::Own);
    assert_eq!(
        h.tenants["initech"],
        Hold::Address {
            of: "globex".into(),
            address: net("198.18.2.10/32"),
            owned: net("198.18.2.10/32")
        }
    );
    assert!(h.extra.is_empty(), "initech owns it, and initech is held");
    assert!(h
        .why("initech")
        .unwrap()
        .contains("suspension of tenant globex"));
    assert!(!h.tenants.contains_key("acme"));
}

#[test]
fn a_suspended_id_absent_from_the_policy_keeps_its_addresses_under_its_id() {
    let removed = BASE.replace(
        "  - id: globex\n    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]\n",
        "",
    );
    let h = holds(&parse(&removed), &globex_suspended());
    assert_eq!(h.tenants["globex"], Hold::Retained);
    assert_eq!(
        h.extra["globex"],
        vec![net("198.18.2.10/32"), net("2001:db8:2:1::10/128")]
    );
    assert_eq!(h.retained().collect::<Vec<_>>(), vec!["globex"]);
    assert!(h.why("globex").unwrap().contains("not in the policy"));
}

#[test]
fn a_renamed_suspended_tenant_is_held_under_the_new_id_by_address() {
    let renamed = BASE.replace("id: globex", "id: globex2");
    let h = holds(&parse(&renamed), &globex_suspended());
    assert_eq!(h.tenants["globex"], Hold::Retained);
    assert!(matches!(&h.tenants["globex2"], Hold::Address { of, .. } if of == "globex"));
    assert!(
        !h.extra.contains_key("globex"),
        "globex2 owns both addresses: nothing left for the retained entry"
    );
}

#[test]
fn a_wider_or_narrower_owner_of_a_suspended_address_is_held_and_the_rest_kept() {
    let s = state(1, &[suspended("gone", &["198.18.7.0/24"], 1)]).tenants;
    let narrower = parse("tenants:\n  - id: x\n    addresses: [198.18.7.5/32]\n");
    let h = holds(&narrower, &s);
    assert!(matches!(h.tenants["x"], Hold::Address { .. }));
    assert_eq!(
        h.extra["gone"],
        vec![net("198.18.7.0/24")],
        "only part of the /24 is owned: the rest stays under the retained id"
    );
    let wider = parse("tenants:\n  - id: y\n    addresses: [198.18.0.0/16]\n");
    let h = holds(&wider, &s);
    assert!(matches!(h.tenants["y"], Hold::Address { .. }));
    assert!(!h.extra.contains_key("gone"), "covered by y, which is held");
}

#[test]
fn no_suspensions_no_holds() {
    let h = holds(&parse(BASE), &BTreeMap::new());
    assert_eq!(h, Holds::default());
}

// --- exposure -----------------------------------------------------------------------

#[test]
fn the_same_policy_or_an_unrelated_change_exposes_nothing() {
    let old = parse(BASE);
    assert!(classify(&old, &parse(BASE), &globex_suspended()).is_empty());
    let more = format!("{BASE}  - id: hooli\n    addresses: [198.18.9.0/24]\n");
    assert!(classify(&old, &parse(&more), &globex_suspended()).is_empty());
    let narrower = BASE.replace("management: [198.18.3.253/32]", "management: []");
    assert!(classify(&old, &parse(&narrower), &globex_suspended()).is_empty());
    let growing = BASE.replace(
        "addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]",
        "addresses: [198.18.2.10/32, 2001:db8:2:1::10/128, 198.18.2.11/32]",
    );
    assert!(
        classify(&old, &parse(&growing), &globex_suspended()).is_empty(),
        "a suspended tenant given more addresses exposes nothing"
    );
}

#[test]
fn nothing_suspended_nothing_exposed_even_with_wider_management() {
    let wide = BASE.replace(
        "management: [198.18.3.253/32]",
        "management: [198.18.0.0/15]",
    );
    assert!(classify(&parse(BASE), &parse(&wide), &BTreeMap::new()).is_empty());
}

#[test]
fn wider_management_prefixes_are_an_exposure() {
    let wide = BASE.replace(
        "management: [198.18.3.253/32]",
        "management: [198.18.0.0/15]",
    );
    let e = classify(&parse(BASE), &parse(&wide), &globex_suspended());
    assert_eq!(rules(&e), vec![(Rule::ManagementWidened, None)]);
    assert!(e[0].detail.contains("198.18.0.0/15"), "{}", e[0].detail);
    assert!(e[0].to_string().starts_with("rule management_widened: "));
}

#[test]
fn removing_a_suspended_id_is_an_exposure() {
    let removed = BASE.replace(
        "  - id: globex\n    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]\n",
        "",
    );
    let e = classify(&parse(BASE), &parse(&removed), &globex_suspended());
    assert_eq!(
        rules(&e),
        vec![(Rule::SuspendedTenantRemoved, Some("globex"))]
    );
}

#[test]
fn renaming_a_suspended_id_is_an_exposure_naming_the_new_id() {
    let renamed = BASE.replace("id: globex", "id: globex2");
    let e = classify(&parse(BASE), &parse(&renamed), &globex_suspended());
    assert_eq!(
        rules(&e),
        vec![
            (Rule::SuspendedTenantRenamed, Some("globex")),
            (Rule::SuspendedAddressesMoved, Some("globex"))
        ]
    );
    assert!(e[0].detail.contains("globex2"), "{}", e[0].detail);
}

#[test]
fn moving_a_suspended_address_to_another_tenant_is_an_exposure() {
    let moved = BASE
        .replace(
            "    addresses: [198.18.2.130/32]",
            "    addresses: [198.18.2.130/32, 198.18.2.10/32]",
        )
        .replace(
            "addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]",
            "addresses: [2001:db8:2:1::10/128]",
        );
    let e = classify(&parse(BASE), &parse(&moved), &globex_suspended());
    assert_eq!(
        rules(&e),
        vec![
            (Rule::SuspendedAddressesChanged, Some("globex")),
            (Rule::SuspendedAddressesMoved, Some("globex"))
        ]
    );
    assert!(e[1]
        .detail
        .contains("tenant initech would own 198.18.2.10/32"));
}

#[test]
fn an_address_recorded_at_suspension_but_no_longer_the_tenants_is_still_protected() {
    // The policy in force already moved it away (an admin did); giving it to yet another
    // tenant is a new exposure, keeping it where it is is not.
    let mut s = globex_suspended();
    s.get_mut("globex")
        .unwrap()
        .addresses
        .push(net("198.18.5.5/32"));
    let with_acme = BASE.replace(
        "addresses: [198.18.1.1/32]",
        "addresses: [198.18.1.1/32, 198.18.5.5/32]",
    );
    assert!(classify(&parse(&with_acme), &parse(&with_acme), &s).is_empty());
    let with_initech = BASE.replace(
        "addresses: [198.18.2.130/32]",
        "addresses: [198.18.2.130/32, 198.18.5.0/24]",
    );
    let e = classify(&parse(BASE), &parse(&with_initech), &s);
    assert_eq!(
        rules(&e),
        vec![(Rule::SuspendedAddressesMoved, Some("globex"))]
    );
    assert!(e[0]
        .detail
        .contains("198.18.5.0/24 (overlapping 198.18.5.5/32)"));
}

// --- events log ---------------------------------------------------------------------

#[test]
fn suspension_lines_round_trip_and_flag_lines_are_skipped() {
    let s = suspended("globex", &["198.18.2.10/32"], 3);
    assert_eq!(
        parse_line(&suspended_line(&s)),
        Ok(Some(LogEvent::Suspended(s.clone())))
    );
    let line = unsuspended_line(&s, "bob", "paid", 1_700_000_100, 4);
    assert_eq!(
        parse_line(&line),
        Ok(Some(LogEvent::Unsuspended {
            tenant: "globex".into(),
            actor: "bob".into(),
            reason: "paid".into(),
            at: 1_700_000_100,
            seq: 4
        }))
    );
    let st = state(3, &[s]);
    assert_eq!(
        parse_line(&snapshot_line(&st, "warden", "start", 5)),
        Ok(Some(LogEvent::Snapshot(st)))
    );
    assert_eq!(
        parse_line(r#"{"event":"opened","flag":1,"tenant":"globex"}"#),
        Ok(None)
    );
    assert!(parse_line(r#"{"event":"tenant_suspended","suspension_seq":"x"}"#).is_err());
}

fn log_of(lines: &[String]) -> EventsLogState {
    let mut log = EventsLogState::default();
    log.add_text("events.jsonl", lines.join("\n").as_bytes())
        .unwrap();
    log
}

#[test]
fn rebuild_replays_the_log_from_nothing_when_no_record_is_pinned() {
    let a = suspended("a", &["198.18.1.1/32"], 1);
    let b = suspended("b", &["198.18.1.2/32"], 2);
    let log = log_of(&[
        suspended_line(&a),
        r#"{"event":"opened","flag":7}"#.into(),
        suspended_line(&b),
        unsuspended_line(&a, "bob", "ok", 10, 3),
    ]);
    assert_eq!(log.last_seq(), 3);
    let r = rebuild(None, Some(&log));
    assert_eq!(r.state, state(3, &[b]));
    assert_eq!(r.base, "nothing");
    assert_eq!(r.applied, 3);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn rebuild_takes_the_kernel_record_and_only_later_log_lines() {
    let a = suspended("a", &["198.18.1.1/32"], 1);
    let b = suspended("b", &["198.18.1.2/32"], 2);
    // The log lags the kernel (its line for 2 was never written) and then lifts a at 3.
    let log = log_of(&[suspended_line(&a), unsuspended_line(&a, "bob", "ok", 10, 3)]);
    let record = state(2, &[a.clone(), b.clone()]);
    let r = rebuild(Some(&record), Some(&log));
    assert_eq!(r.state, state(3, std::slice::from_ref(&b)));
    assert_eq!(r.base, "kernel record at sequence 2");
    assert_eq!(r.applied, 1);
    // Without later lines the record is the answer.
    let r = rebuild(Some(&record), Some(&log_of(&[suspended_line(&a)])));
    assert_eq!(r.state, record);
}

#[test]
fn rebuild_starts_from_a_newer_snapshot_and_reports_gaps() {
    let a = suspended("a", &["198.18.1.1/32"], 4);
    let c = suspended("c", &["198.18.1.3/32"], 7);
    let snap = state(5, std::slice::from_ref(&a));
    let log = log_of(&[
        snapshot_line(&snap, "warden", "start", 1),
        suspended_line(&c),
    ]);
    let r = rebuild(Some(&state(2, &[])), Some(&log));
    assert_eq!(r.base, "events log snapshot at sequence 5");
    assert_eq!(r.state, state(7, &[a, c]));
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("no line for sequence 6..6"));
}

// --- reconcile ----------------------------------------------------------------------

fn paths(dir: &std::path::Path) -> Paths {
    Paths {
        db: dir.join("state/warden.db"),
        config: "/etc/warden/warden.yaml".into(),
        events_log: dir.join("state/events.jsonl"),
        bpffs: "/sys/fs/bpf/warden".into(),
    }
}

#[test]
fn a_fresh_store_with_nothing_anywhere_is_used() {
    for found in [StoreFound::Missing, StoreFound::Empty] {
        let r = reconcile(&found, None, None).unwrap();
        assert!(!r.rewrite_record);
        let r = reconcile(&found, Some(&SuspensionState::default()), None).unwrap();
        assert!(!r.rewrite_record);
    }
}

#[test]
fn a_missing_or_empty_store_is_refused_while_the_kernel_holds_suspensions() {
    let kernel = state(3, &[suspended("globex", &["198.18.2.10/32"], 3)]);
    let dir = tempfile::tempdir().unwrap();
    for (found, why, text) in [
        (
            StoreFound::Missing,
            Why::Missing,
            "is missing (so is its directory",
        ),
        (StoreFound::Empty, Why::Empty, "is empty (0 bytes)"),
    ] {
        let lost = reconcile(&found, Some(&kernel), None).unwrap_err();
        assert_eq!(lost.why, why);
        let m = lost.message(&paths(dir.path()));
        assert!(m.contains(text), "{m}");
        assert!(m.contains("state/warden.db"), "{m}");
        assert!(m.contains("globex  addresses 198.18.2.10/32"), "{m}");
        assert!(
            m.contains("warden state restore -c /etc/warden/warden.yaml"),
            "{m}"
        );
        assert!(m.contains("nothing pinned was changed"), "{m}");
    }
}

#[test]
fn an_older_store_is_refused_and_a_newer_one_wins() {
    let g = suspended("globex", &["198.18.2.10/32"], 3);
    let kernel = state(3, std::slice::from_ref(&g));
    let older = StoreFound::State(state(2, &[]));
    let lost = reconcile(&older, Some(&kernel), None).unwrap_err();
    assert_eq!(
        lost.why,
        Why::Older {
            store: 2,
            authority: 3,
            source: Source::Kernel
        }
    );
    // The audited lift reached the store but not the kernel: the store wins.
    let newer = StoreFound::State(state(4, &[]));
    let r = reconcile(&newer, Some(&kernel), None).unwrap();
    assert!(r.rewrite_record);
    assert!(r.note.unwrap().contains("lifted: globex"));
    // Same sequence, same content: nothing to do.
    let same = StoreFound::State(kernel.clone());
    assert_eq!(
        reconcile(&same, Some(&kernel), None).unwrap(),
        Reconciled {
            rewrite_record: false,
            note: None
        }
    );
    // Same sequence without the kernel's suspension: refused.
    let lacking = StoreFound::State(state(3, &[]));
    assert!(matches!(
        reconcile(&lacking, Some(&kernel), None).unwrap_err().why,
        Why::Lacks { .. }
    ));
}

#[test]
fn the_events_log_counts_when_nothing_is_pinned() {
    let logged = state(5, &[suspended("globex", &["198.18.2.10/32"], 5)]);
    let lost = reconcile(&StoreFound::Missing, None, Some(&logged)).unwrap_err();
    let dir = tempfile::tempdir().unwrap();
    let m = lost.message(&paths(dir.path()));
    assert!(m.contains("Nothing is pinned"), "{m}");
    assert!(
        m.contains("records 1 suspension(s) in force at sequence 5"),
        "{m}"
    );
    let older = StoreFound::State(state(4, &[]));
    assert!(matches!(
        reconcile(&older, None, Some(&logged)).unwrap_err().why,
        Why::Older {
            source: Source::EventsLog,
            ..
        }
    ));
    assert!(reconcile(&StoreFound::State(logged.clone()), None, Some(&logged)).is_ok());
}

#[test]
fn the_record_bytes_round_trip_and_must_match_the_header() {
    let s = state(9, &[suspended("globex", &["198.18.2.10/32"], 9)]);
    let bytes = s.to_record();
    assert_eq!(SuspensionState::from_record(9, &bytes), Ok(s));
    assert!(SuspensionState::from_record(8, &bytes).is_err());
    assert!(SuspensionState::from_record(9, b"garbage").is_err());
}
