//! The bench's own checks: the address plan, the loader tenants and the answer windows.

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_common::facts::pending_slot;

use super::{
    answer::{answer_key, answer_windows},
    fixtures::{
        answer_remote, host_v4, is_loader, loader_tenant, net_v6, tracked_remote, wide_v4, wide_v6,
    },
    new_flow::new_flow_remote,
    EXHAUSTED_TENANT, FOREIGN_TENANT, FP_PROBES, LOADERS, MANAGEMENT_V4, MANAGEMENT_V6,
    NEW_FLOW_MAX_REPEAT, OUTSIDE_V4, OUTSIDE_V6, POLICED_TENANT, PROBE_TENANT, SHAPED_TENANT,
    SUSPENDED_TENANT, TENANTS, TRACKED_REMOTES, UNKNOWN_V4, UNKNOWN_V6, WIDE, WIDE_TENANT,
};

/// Every address the bench sends from or to, by owner: no two owners share one.
#[test]
fn the_address_plan_does_not_collide() {
    use std::collections::HashMap;
    let mut owner: HashMap<u32, String> = HashMap::new();
    let mut claim = |a: Ipv4Addr, who: String| {
        if let Some(prev) = owner.insert(u32::from(a), who.clone()) {
            panic!("{a} is both {prev} and {who}");
        }
    };
    for i in 0..TENANTS {
        claim(host_v4(i), format!("tenant {i}"));
    }
    for i in TENANTS - WIDE..TENANTS {
        let net = u32::from(wide_v4(i));
        for h in 0..256 {
            claim(Ipv4Addr::from(net + h), format!("wide tenant {i}"));
        }
    }
    for (n, net) in MANAGEMENT_V4.iter().enumerate() {
        for h in 0..256 {
            claim(
                Ipv4Addr::from(u32::from(*net) + h),
                format!("management {n}"),
            );
        }
    }
    claim(OUTSIDE_V4, "outside".into());
    claim(UNKNOWN_V4, "unknown".into());
    for k in 0..NEW_FLOW_MAX_REPEAT {
        claim(new_flow_remote(k), format!("new-flow remote {k}"));
    }
    let range =
        |a: Ipv4Addr| (u32::from(a) >> 17) == (u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17);
    assert!(
        owner.keys().all(|&a| range(Ipv4Addr::from(a))),
        "all in 198.18.0.0/15"
    );

    // IPv6: every /48 of the plan (tenants' /64s sit in 2001:db8:0::/48 and
    // 2001:db8:1::/48), distinct, and all in 2001:db8::/32.
    let top48 = |a: Ipv6Addr| u128::from(a) >> 80;
    let mut v6: HashMap<u128, String> = HashMap::new();
    let mut claim6 = |a: Ipv6Addr, who: String| {
        let prev = v6.insert(top48(a), who.clone());
        assert!(
            prev.is_none() || prev.as_deref() == Some(who.as_str()),
            "{a}: {prev:?} and {who}"
        );
    };
    for i in 0..TENANTS {
        claim6(net_v6(i), "tenants".into());
    }
    for i in TENANTS - WIDE..TENANTS {
        claim6(wide_v6(i), format!("wide tenant {i}"));
    }
    claim6(MANAGEMENT_V6, "management".into());
    claim6(OUTSIDE_V6, "outside".into());
    claim6(UNKNOWN_V6, "unknown".into());
    claim6(tracked_remote(0), "tracked".into());
    claim6(
        tracked_remote(TRACKED_REMOTES + FP_PROBES),
        "tracked".into(),
    );
    claim6(answer_remote(0), "answers".into());
    claim6(answer_remote(u32::MAX), "answers".into());
    assert!(v6.keys().all(|k| k >> 16 == 0x2001_0db8));
}

#[test]
fn loaders_are_none_of_the_cases_tenants_and_not_wide() {
    let special = [
        PROBE_TENANT,
        FOREIGN_TENANT,
        SUSPENDED_TENANT,
        POLICED_TENANT,
        EXHAUSTED_TENANT,
        SHAPED_TENANT,
        WIDE_TENANT,
    ];
    for j in 0..LOADERS {
        let t = loader_tenant(j);
        assert!(
            is_loader(t) && t < TENANTS - WIDE && !special.contains(&t),
            "{t}"
        );
    }
    assert_eq!(
        (0..TENANTS).filter(|&i| is_loader(i)).count(),
        LOADERS as usize
    );
}

#[test]
fn answer_windows_have_distinct_pending_slots_and_do_not_overlap() {
    let width = 256;
    let starts = answer_windows(PROBE_TENANT, 4, width).unwrap();
    assert_eq!(starts.len(), 4);
    for pair in starts.windows(2) {
        assert!(pair[0] + width <= pair[1]);
    }
    for &s in &starts {
        let slots: std::collections::HashSet<u32> = (s..s + width)
            .map(|k| pending_slot(answer_key(PROBE_TENANT, k)))
            .collect();
        assert_eq!(slots.len(), width as usize);
    }
}

/// The shaped tenant's slot gets an HTB class in host mode; the policed and exhausted
/// ones are past the shaping limit, so the daemon polices their egress.
#[test]
fn only_the_shaped_tenant_is_within_the_shaping_limit() {
    let max = warden_common::shape::MAX_SLOTS;
    assert!(SHAPED_TENANT < max);
    for t in [POLICED_TENANT, EXHAUSTED_TENANT] {
        assert!(t >= max, "{t}");
    }
}

/// The policy files the micro cases' daemon runs on are valid policies, with tenant `i`
/// the `i`-th id in order (the daemon gives slots in id order).
#[test]
fn the_bench_policy_files_are_valid() {
    let header = format!(
        "daemon:\n  listen: 127.0.0.1:19478\n{}interfaces:\n  - name: wm0\n    mode: host\n",
        super::fixtures::management_yaml()
    );
    for policy in super::cases::Policy::ALL {
        let text = super::fixtures::policy_yaml(&header, policy);
        let parsed = warden_policy::parse(&text, "bench.yaml")
            .unwrap_or_else(|e| panic!("{}: {e}", policy.label()));
        assert_eq!(parsed.tenants.len(), TENANTS as usize);
    }
    let ids: Vec<String> = (0..TENANTS).map(super::fixtures::tenant_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}
