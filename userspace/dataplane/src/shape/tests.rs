use super::*;

#[test]
fn a_queue_holds_100_ms_of_its_plan_and_at_least_256_kib() {
    assert_eq!(
        queue_limit(20_000_000),
        MIN_QUEUE_BYTES,
        "250 KB is under the floor"
    );
    assert_eq!(queue_limit(200_000_000), 2_500_000);
}

#[test]
fn each_leaf_queues_its_share_of_the_plans_queue_and_at_least_128_kib() {
    assert_eq!(leaf_limit(20_000_000), MIN_LEAF_QUEUE_BYTES);
    assert_eq!(leaf_limit(200_000_000), 2_500_000 / 8);
}

#[test]
fn leaf_drops_are_read_from_tc_s_lines_of_our_leaves_only() {
    // 0xe12 is slot 0's first leaf (LEAF_BASE 3,602), 0xe1a slot 1's.
    assert_eq!(
        leaf_slot("qdisc bfifo d9db: parent 7764:e12 limit 128Kb"),
        Some(0)
    );
    assert_eq!(
        leaf_slot("qdisc bfifo d9dc: parent 7764:e1a limit 128Kb"),
        Some(1)
    );
    // A class without leaves (a daemon before leaves) counts as its slot's.
    assert_eq!(
        leaf_slot("qdisc bfifo d9db: parent 7764:6 limit 256Kb"),
        Some(4)
    );
    assert_eq!(leaf_slot("qdisc fq 8001: parent 7764:1 limit 10000p"), None);
    assert_eq!(leaf_slot("qdisc htb 7764: root refcnt 3 r2q 10"), None);
    assert_eq!(leaf_slot("qdisc bfifo 8002: parent 1:5 limit 1Kb"), None);
    assert_eq!(
        leaf_slot("qdisc bfifo 8003: parent 7764:ffff limit 1Kb"),
        None
    );
    assert_eq!(
        dropped(" Sent 4200 bytes 3 pkt (dropped 17, overlimits 0 requeues 0) "),
        Some(17)
    );
    assert_eq!(dropped(" backlog 0b 0p requeues 0"), None);
}

#[test]
fn new_classes_fit_the_kernel_work_budget_of_walking_the_classes_there() {
    // k classes on n cost k * n + k * (k + 1) / 2 walked classes.
    assert_eq!(affordable(0, 1), 1);
    assert_eq!(affordable(0, 3), 2);
    assert_eq!(affordable(0, 2), 1);
    let k = affordable(0, SYNC_STEPS);
    assert!((1_400..1_420).contains(&k), "{k}");
    assert_eq!(affordable(SYNC_STEPS as usize, SYNC_STEPS), 0);
    // A tenant is its class and its leaves: some 155 at an apply on an empty qdisc,
    // and at least one a second on a full one.
    assert_eq!(affordable_tenants(0, SYNC_STEPS), k / CLASSES_PER_TENANT);
    assert!(affordable_tenants(shape::MAX_SLOTS as usize, GROW_STEPS) >= 1);
}

#[test]
fn a_tenant_class_is_its_slot_plus_two_and_its_leaves_follow_the_tenant_classes() {
    assert_eq!(handle(shape::tenant_minor(0)), "7764:2");
    assert_eq!(shape::class_id(0), 0x7764_0000 | (2 + shape::MAX_SLOTS));
    assert_eq!(shape::class_id(1), shape::class_id(0) + shape::LEAVES);
    let last = shape::MAX_SLOTS - 1;
    assert_eq!(
        shape::slot_of_minor(shape::leaf_minor(last, shape::LEAVES - 1)),
        Some((last, Some(shape::LEAVES - 1)))
    );
    assert_eq!(
        shape::slot_of_minor(shape::tenant_minor(last)),
        Some((last, None))
    );
    assert_eq!(shape::slot_of_minor(shape::DEFAULT_MINOR), None);
    assert_eq!(shape::class_id(shape::MAX_SLOTS), 0);
}
