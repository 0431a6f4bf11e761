//! warden-fleet against a real etcd: each test starts its own `etcd` (Debian's
//! `etcd-server`, installed by `cargo xtask setup`) on free loopback ports with its data
//! in a temporary directory, killed and removed on drop, also when the test fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Killed};
use warden_fleet::records::{DecisionRecord, FlagRecord, NodeRecord};
use warden_fleet::{Connect, Fleet, FleetError, Layout, Scope, DEFAULT_PREFIX};
use warden_policy::flag::{Flag, FlagState};
use warden_policy::fragments::fragments;
use warden_policy::Kind;

/// A single-member etcd for one test.
struct Etcd {
    _etcd: Killed,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    async fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd runs (cargo xtask setup installs etcd-server)");
        let etcd = Etcd {
            _etcd: Killed(child),
            endpoint,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(fleet) = etcd.fleet_at(DEFAULT_PREFIX).await {
                if fleet.read_policy().await.is_ok() {
                    return etcd;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn fleet_at(&self, prefix: &str) -> Result<Fleet, FleetError> {
        let mut connect = Connect::plain(vec![self.endpoint.clone()]);
        connect.timeout = Duration::from_secs(2);
        Fleet::connect(&connect, Layout::new(prefix).expect("valid prefix")).await
    }

    async fn fleet(&self) -> Fleet {
        self.fleet_at(DEFAULT_PREFIX).await.expect("connects")
    }
}

fn policy(tenants: &[(&str, &str, &str)]) -> String {
    let mut text = String::from("defaults:\n  smtp: block\ntenants:\n");
    for (id, addr, egress) in tenants {
        text.push_str(&format!(
            "  - {{id: {id}, addresses: [{addr}], bandwidth: {{egress: {egress}}}}}\n"
        ));
    }
    text
}

#[tokio::test]
async fn a_policy_apply_writes_per_tenant_keys_and_reads_back_as_the_same_policy() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let text = policy(&[
        ("acme", "198.18.1.0/24", "100Mbit"),
        ("globex", "198.18.2.0/24", "1Gbit"),
    ]);
    let (validated, parts) = fragments(&text, "p.yaml").expect("valid");
    let first = fleet
        .apply_policy(&parts, None, "ops", 10)
        .await
        .expect("applied");
    assert_eq!((first.generation, first.changed, first.removed), (1, 2, 0));

    let snapshot = fleet.read_policy().await.expect("read");
    assert_eq!(snapshot.generation_number(), 1);
    assert_eq!(snapshot.generation_revision, first.revision);
    let back = warden_policy::parse(&snapshot.document(""), "fleet").expect("parses");
    assert_eq!(back.tenants, validated.tenants);

    // Only what changed is written: one tenant's plan changes, one tenant goes.
    let text = policy(&[("acme", "198.18.1.0/24", "200Mbit")]);
    let (_, parts) = fragments(&text, "p.yaml").expect("valid");
    let second = fleet
        .apply_policy(&parts, None, "ops", 11)
        .await
        .expect("applied");
    assert_eq!(
        (second.generation, second.changed, second.removed),
        (2, 1, 1)
    );
    let snapshot = fleet.read_policy().await.expect("read");
    assert_eq!(snapshot.tenants.keys().collect::<Vec<_>>(), ["acme"]);

    let audit = fleet.audit(10).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["policy.apply", "policy.apply"]);
    assert_eq!(audit[1].target, "generation 2");
}

#[tokio::test]
async fn two_applies_on_the_same_base_one_wins_the_other_conflicts_naming_the_key() {
    let etcd = Etcd::start().await;
    let (a, b) = (etcd.fleet().await, etcd.fleet().await);
    let (_, parts) = fragments(&policy(&[("acme", "198.18.1.0/24", "1Gbit")]), "p").expect("valid");
    a.apply_policy(&parts, None, "ops", 1).await.expect("first");
    let base = a.read_policy().await.expect("read").generation_revision;

    let (_, one) = fragments(&policy(&[("acme", "198.18.1.0/24", "5Mbit")]), "p").expect("valid");
    let (_, two) =
        fragments(&policy(&[("initech", "198.18.3.0/24", "7Mbit")]), "p").expect("valid");
    let (r1, r2) = tokio::join!(
        a.apply_policy(&one, Some(base), "alice", 2),
        b.apply_policy(&two, Some(base), "bob", 2)
    );
    let (won, lost) = match (r1, r2) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("expected one success and one conflict, got {other:?}"),
    };
    assert_eq!(won.generation, 2);
    match &lost {
        FleetError::Conflict {
            key, expected, by, ..
        } => {
            assert_eq!(key, "/warden/v1/policy/generation");
            assert_eq!(*expected, base);
            let by = by.as_deref().unwrap_or_default();
            assert!(by.starts_with("alice") || by.starts_with("bob"), "{by}");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    // The loser wrote nothing: the policy is wholly one of the two.
    let snapshot = a.read_policy().await.expect("read");
    let ids: Vec<&String> = snapshot.tenants.keys().collect();
    assert!(
        ids == ["acme"] || ids == ["initech"],
        "mixed policy: {ids:?}"
    );
    assert_eq!(a.audit(10).await.expect("audit").len(), 2);
}

#[tokio::test]
async fn a_watcher_sees_an_apply_whole_at_its_generation_event() {
    use etcd_client::{EventType, WatchOptions};
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let layout = fleet.layout().clone();
    let mut watched = fleet.read_policy().await.expect("read");
    let mut stream = fleet
        .client()
        .clone()
        .watch(
            layout.policy_dir(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(watched.revision + 1),
            ),
        )
        .await
        .expect("watch");
    let tenants: Vec<(String, String, String)> = (0..50)
        .map(|i| {
            (
                format!("t{i}"),
                format!("198.18.{i}.0/24"),
                "10Mbit".to_owned(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = tenants
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let (_, parts) = fragments(&policy(&refs), "p").expect("valid");
    fleet
        .apply_policy(&parts, None, "ops", 1)
        .await
        .expect("applied");

    let mut complete = false;
    while !complete {
        let response = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a watch response within 5 s")
            .expect("watch stream")
            .expect("not ended");
        for event in response.events() {
            let kv = event.kv().expect("an event has its key");
            let value = (event.event_type() == EventType::Put).then(|| kv.value());
            let key = kv.key_str().expect("utf-8 key");
            let ready = watched
                .apply_event(&layout, key, value, kv.mod_revision())
                .expect("decodes");
            if ready {
                assert_eq!(
                    watched.tenants.len(),
                    50,
                    "the generation came before its tenants"
                );
                complete = true;
            }
        }
    }
    let read = fleet.read_policy().await.expect("read");
    assert_eq!(watched.tenants, read.tenants);
    assert_eq!(watched.generation, read.generation);
}

#[tokio::test]
async fn suspensions_take_the_next_sequence_number_and_are_audited() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let addr = vec!["198.18.1.0/24".parse().expect("cidr")];
    let s = fleet
        .suspend("acme", addr.clone(), "spam", "sec", 5)
        .await
        .expect("suspended");
    assert_eq!(s.seq, 1);
    let again = fleet.suspend("acme", addr.clone(), "spam", "sec", 6).await;
    assert!(matches!(again, Err(FleetError::Refused(_))), "{again:?}");
    fleet
        .suspend("globex", vec![], "scan", "sec", 7)
        .await
        .expect("suspended");

    let (_, state) = fleet.suspensions().await.expect("read");
    assert_eq!(state.seq, 2);
    assert_eq!(state.tenants["acme"].addresses, addr);
    assert_eq!(state.tenants["acme"].actor, "sec");

    let lifted = fleet
        .unsuspend("acme", "cleaned up", "admin", 8)
        .await
        .expect("lifted");
    assert_eq!(lifted.reason, "spam");
    let missing = fleet.unsuspend("acme", "again", "admin", 9).await;
    assert!(
        matches!(missing, Err(FleetError::NotFound(_))),
        "{missing:?}"
    );
    let (_, state) = fleet.suspensions().await.expect("read");
    assert_eq!(state.seq, 3);
    assert_eq!(state.tenants.keys().collect::<Vec<_>>(), ["globex"]);

    let audit = fleet.audit(100).await.expect("audit");
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("tenant.suspend", "acme"),
            ("tenant.suspend", "globex"),
            ("tenant.unsuspend", "acme")
        ]
    );
    assert_eq!(audit[2].detail["reason"], "cleaned up");
}

#[tokio::test]
async fn concurrent_suspensions_never_share_a_sequence_number() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let fleet = fleet.clone();
        tasks.push(tokio::spawn(async move {
            fleet.suspend(&format!("t{i}"), vec![], "x", "sec", 1).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => won += 1,
            Err(FleetError::Conflict { key, .. }) => assert!(key.ends_with("suspensions/seq")),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let (_, state) = fleet.suspensions().await.expect("read");
    assert_eq!(state.tenants.len(), won);
    assert_eq!(state.seq, won as u64);
    let mut seqs: Vec<u64> = state.tenants.values().map(|s| s.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), won, "two suspensions took one number");
}

fn flag_record(node: &str, id: i64, state: FlagState) -> FlagRecord {
    FlagRecord {
        node: node.into(),
        flag: Flag {
            id,
            tenant: "acme".into(),
            kind: Kind::Scan,
            state,
            first_seen: 1,
            last_seen: 2,
            policy_generation: 1,
            thresholds: serde_json::json!({"targets": 100}),
            figures: serde_json::json!({"targets": 250}),
            top_targets: serde_json::json!(["198.18.9.1"]),
            deadline: None,
            state_reason: None,
            node: None,
        },
        actions: vec![],
        samples: 3,
    }
}

fn decision(state: FlagState, reason: Option<&str>) -> DecisionRecord {
    DecisionRecord {
        state,
        reason: reason.map(str::to_owned),
        actor: "sec".into(),
        at: 3,
    }
}

#[tokio::test]
async fn a_flag_published_twice_is_one_flag_and_review_decisions_follow_the_states() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    fleet
        .publish_flag(&flag_record("n7", 1, FlagState::Open))
        .await
        .expect("published");
    fleet
        .publish_flag(&flag_record("n7", 1, FlagState::Open))
        .await
        .expect("again");
    fleet
        .publish_flag(&flag_record("n8", 1, FlagState::Open))
        .await
        .expect("published");
    let all = fleet.flags(None).await.expect("list");
    assert_eq!(all.len(), 2);
    assert_ne!(
        all[0].fleet_id, all[1].fleet_id,
        "one fleet id for two nodes' flag 1"
    );
    let n7 = fleet.flags(Some("n7")).await.expect("list");
    assert_eq!(n7.len(), 1);
    // Republished (a state change): the same fleet id.
    fleet
        .publish_flag(&flag_record("n7", 1, FlagState::Notified))
        .await
        .expect("again");
    let found = fleet
        .flag_by_fleet_id(n7[0].fleet_id)
        .await
        .expect("found by fleet id");
    assert_eq!(
        (found.record.node.as_str(), found.record.flag.id),
        ("n7", 1)
    );
    assert_eq!(found.record.flag.state, FlagState::Notified);

    fleet
        .decide_flag("n7", 1, &decision(FlagState::Acked, None))
        .await
        .expect("acked");
    let shown = fleet.flag("n7", 1).await.expect("read");
    assert_eq!(shown.state(), FlagState::Acked);
    let waiting = fleet.decisions("n7").await.expect("read").1;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].0, 1);

    fleet
        .decide_flag("n7", 1, &decision(FlagState::Dismissed, Some("backup")))
        .await
        .expect("dismissed after ack");
    let refused = fleet
        .decide_flag("n7", 1, &decision(FlagState::Acked, None))
        .await;
    assert!(
        matches!(refused, Err(FleetError::Refused(_))),
        "{refused:?}"
    );
    let missing = fleet
        .decide_flag("n7", 99, &decision(FlagState::Acked, None))
        .await;
    assert!(
        matches!(missing, Err(FleetError::NotFound(_))),
        "{missing:?}"
    );

    let audit = fleet.audit(10).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["flag.ack", "flag.dismiss"]);
    assert_eq!(audit[1].target, "n7/1");
}

#[tokio::test]
async fn a_node_registration_lapses_with_its_lease() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let mut record = NodeRecord {
        node: "n1".into(),
        version: "0.1.0".into(),
        started_at: 1,
        heartbeat: 1,
        applied_generation: 0,
        applied_revision: 0,
        attached: true,
        interfaces: vec!["eth0:host".into()],
    };
    let mut registration = fleet.register(&record, 2).await.expect("registered");
    assert!(registration.renew().await.expect("renewed") > 0);
    record.applied_generation = 4;
    fleet
        .update_registration(&record, registration.lease)
        .await
        .expect("updated");
    assert_eq!(fleet.nodes().await.expect("nodes"), vec![record.clone()]);

    // Not renewed: the key goes with the lease.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fleet.nodes().await.expect("nodes").is_empty() {
        assert!(
            Instant::now() < deadline,
            "registration outlived its 2 s lease by 8 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_unreachable_etcd_is_reported_as_unavailable() {
    let port = free_port();
    let mut connect = Connect::plain(vec![format!("http://127.0.0.1:{port}")]);
    connect.timeout = Duration::from_millis(500);
    let layout = Layout::new(DEFAULT_PREFIX).expect("valid");
    let started = Instant::now();
    let result = match Fleet::connect(&connect, layout).await {
        Ok(fleet) => fleet.read_policy().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = result.expect_err("nothing listens there");
    assert!(err.is_unavailable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn fleets_under_different_prefixes_do_not_see_each_other() {
    let etcd = Etcd::start().await;
    let a = etcd.fleet_at("/a/").await.expect("connects");
    let b = etcd.fleet_at("/b/").await.expect("connects");
    a.suspend("acme", vec![], "x", "sec", 1)
        .await
        .expect("suspended");
    assert!(b.suspensions().await.expect("read").1.tenants.is_empty());
    assert!(a.init_layout(1).await.expect("init"));
    assert!(
        !a.init_layout(2).await.expect("init again"),
        "init is idempotent"
    );
}

#[tokio::test]
async fn a_node_with_only_its_own_role_cannot_write_policy_suspensions_or_another_nodes_keys() {
    let etcd = Etcd::start().await;
    let admin = etcd.fleet().await;
    assert!(admin.init_layout(1).await.expect("layout"));
    admin
        .init_rbac(&["n1".to_owned(), "n2".to_owned()])
        .await
        .expect("roles and users");
    // The users init made take client certificates only; password users holding the
    // same roles stand in for them here. Root is needed to enable auth.
    let mut c = admin.client().clone();
    c.user_add("root", "rootpw", None).await.expect("root user");
    c.user_grant_role("root", "root").await.expect("root role");
    for (user, role) in [
        ("n1-pw", warden_fleet::rbac::node_user("n1")),
        ("ctl-pw", warden_fleet::rbac::CONTROLLER_USER.to_owned()),
    ] {
        c.user_add(user, "pw", None).await.expect("password user");
        c.user_grant_role(user, role).await.expect("role");
    }
    c.auth_enable().await.expect("auth enabled");

    let as_user = |user: &str| {
        let mut connect = Connect::plain(vec![etcd.endpoint.clone()]);
        connect.user = Some((user.to_owned(), "pw".to_owned()));
        connect
    };
    let layout = || Layout::new(DEFAULT_PREFIX).expect("valid");
    let controller = Fleet::connect(&as_user("ctl-pw"), layout())
        .await
        .expect("controller connects");
    let (_, parts) = fragments(&policy(&[("acme", "198.18.1.0/24", "1Gbit")]), "p").expect("valid");
    controller
        .apply_policy(&parts, None, "ops", 1)
        .await
        .expect("the controller writes policy");

    let node = Fleet::connect(&as_user("n1-pw"), layout())
        .await
        .expect("node connects");
    assert_eq!(
        node.read_policy()
            .await
            .expect("a node reads policy")
            .tenants
            .len(),
        1
    );
    node.suspensions().await.expect("a node reads suspensions");
    let own = NodeRecord {
        node: "n1".into(),
        version: "0".into(),
        started_at: 0,
        heartbeat: 0,
        applied_generation: 1,
        applied_revision: 0,
        attached: true,
        interfaces: vec![],
    };
    node.register(&own, 5)
        .await
        .expect("a node registers itself");
    node.publish_flag(&flag_record("n1", 1, FlagState::Open))
        .await
        .expect("its own flag");

    let denied = |r: Result<(), FleetError>, what: &str| match r {
        Err(FleetError::PermissionDenied { .. }) => {}
        other => panic!("{what}: expected permission denied, got {other:?}"),
    };
    denied(
        node.apply_policy(&parts, None, "n1", 2).await.map(|_| ()),
        "policy apply",
    );
    denied(
        node.suspend("acme", vec![], "x", "n1", 2).await.map(|_| ()),
        "suspend",
    );
    let other = NodeRecord {
        node: "n2".into(),
        ..own.clone()
    };
    denied(
        node.register(&other, 5).await.map(|_| ()),
        "another node's registration",
    );
    denied(
        node.publish_flag(&flag_record("n2", 1, FlagState::Open))
            .await
            .map(|_| ()),
        "another node's flag",
    );
    denied(
        node.decide_flag("n1", 1, &decision(FlagState::Acked, None))
            .await,
        "a review decision",
    );
}

/// A 3-member etcd on loopback, each member killed on drop.
struct Cluster {
    members: Vec<(Option<Child>, String)>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.members {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &endpoint])
                .args(["--advertise-client-urls", &endpoint])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd runs");
            members.push((Some(child), endpoint));
        }
        let cluster = Cluster { members, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.fleet().await.read_policy().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the cluster did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster
    }

    async fn fleet(&self) -> Fleet {
        let endpoints = self.members.iter().map(|(_, e)| e.clone()).collect();
        let mut connect = Connect::plain(endpoints);
        connect.timeout = Duration::from_secs(2);
        Fleet::connect(&connect, Layout::new(DEFAULT_PREFIX).expect("valid"))
            .await
            .expect("connects")
    }

    /// Kills the member that is the leader now; its index.
    async fn kill_leader(&mut self) -> usize {
        for (i, (_, endpoint)) in self.members.iter().enumerate() {
            let Ok(mut c) = etcd_client::Client::connect([endpoint.as_str()], None).await else {
                continue;
            };
            let Ok(status) = c.status().await else {
                continue;
            };
            let me = status.header().map(|h| h.member_id());
            if me == Some(status.leader()) {
                if let Some(mut child) = self.members[i].0.take() {
                    child.kill().expect("kill the leader");
                    child.wait().expect("reap the leader");
                }
                return i;
            }
        }
        panic!("no member says it is the leader");
    }
}

#[tokio::test]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start().await;
    let fleet = cluster.fleet().await;
    let mut acknowledged = Vec::new();
    let mut killed = None;
    for i in 0..40 {
        if i == 15 {
            killed = Some(cluster.kill_leader().await);
        }
        let tenant = format!("t{i}");
        // Retried as an operator would: an error may hide a committed write, which the
        // retry then finds ("already suspended"); bounded in count.
        for attempt in 0..20 {
            match fleet
                .suspend(&tenant, vec![], "leader test", "sec", 1)
                .await
            {
                Ok(_) => {
                    acknowledged.push(tenant.clone());
                    break;
                }
                Err(FleetError::Refused(_)) => break,
                Err(_) if attempt < 19 => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(e) => panic!("{tenant}: still failing after 20 attempts: {e}"),
            }
        }
    }
    assert!(killed.is_some());
    // A request may still land on the dead member's endpoint: retried, bounded.
    let mut read = fleet.suspensions().await;
    for _ in 0..20 {
        if read.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        read = fleet.suspensions().await;
    }
    let (_, state) = read.expect("read after the election");
    for tenant in &acknowledged {
        assert!(
            state.tenants.contains_key(tenant),
            "acknowledged {tenant} was lost"
        );
    }
    assert_eq!(
        state.tenants.len(),
        40,
        "every tenant suspended exactly once"
    );
    assert_eq!(state.seq, 40, "the sequence counts each suspension once");
    assert!(
        acknowledged.len() >= 35,
        "only {} acknowledged",
        acknowledged.len()
    );
}

/// A policy of `n` tenants `{prefix}{i}`, each with one address of 198.18.0.0/15.
fn many(prefix: &str, n: usize, egress: &str) -> String {
    let tenants: Vec<(String, String)> = (0..n)
        .map(|i| {
            let addr = format!("198.{}.{}.{}/32", 18 + (i >> 16), (i >> 8) & 0xff, i & 0xff);
            (format!("{prefix}{i}"), addr)
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = tenants
        .iter()
        .map(|(id, a)| (id.as_str(), a.as_str(), egress))
        .collect();
    policy(&refs)
}

/// How many keys under `policy/`, read in pages of 10,000 as `read_policy` does.
async fn raw_pages(fleet: &Fleet) -> usize {
    let dir = fleet.layout().policy_dir();
    let end = warden_fleet::keys::range_end(&dir);
    let mut kv = fleet
        .client()
        .kv_client()
        .max_decoding_message_size(256 << 20);
    let (mut from, mut n) = (dir.into_bytes(), 0);
    loop {
        let options = etcd_client::GetOptions::new()
            .with_range(end.clone())
            .with_limit(10_000);
        let response = kv.get(from.clone(), Some(options)).await.expect("get");
        n += response.kvs().len();
        match response.kvs().last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return n,
        }
    }
}

/// Every key under `dir`, as text.
async fn keys_under(fleet: &Fleet, dir: &str) -> Vec<String> {
    let options = etcd_client::GetOptions::new()
        .with_prefix()
        .with_keys_only();
    let mut kv = fleet
        .client()
        .kv_client()
        .max_decoding_message_size(256 << 20);
    let response = kv.get(dir, Some(options)).await.expect("get");
    response
        .kvs()
        .iter()
        .map(|kv| kv.key_str().expect("utf-8").to_owned())
        .collect()
}

#[tokio::test]
async fn an_apply_over_etcds_transaction_limit_is_staged_in_batches_and_committed_whole() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    // etcd's default --max-txn-ops is 128: 300 new tenants do not fit in one.
    let (validated, parts) = fragments(&many("t", 300, "1Gbit"), "p").expect("valid");
    let applied = fleet
        .apply_policy(&parts, None, "ops", 1)
        .await
        .expect("staged and committed");
    assert_eq!((applied.generation, applied.changed), (1, 300));
    let snapshot = fleet.read_policy().await.expect("read");
    let back = warden_policy::parse(&snapshot.document(""), "fleet").expect("parses");
    // Read back in id order.
    let mut want = validated.tenants.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(back.tenants.len(), 300);
    assert!(back.tenants == want, "read back differently");
    assert!(
        keys_under(&fleet, &fleet.layout().policy_lock())
            .await
            .is_empty(),
        "the lock is released"
    );
}

type Seen = tokio::sync::mpsc::UnboundedSender<(Instant, warden_fleet::PolicySnapshot)>;

/// A reader that reads the policy (of `scope`), then watches it as a node does (`watching` is told
/// when it does); `seen` gets each committed state with the time it arrived.
async fn watching_reader(
    fleet: Fleet,
    scope: Scope,
    watching: tokio::sync::oneshot::Sender<()>,
    seen: Seen,
) {
    let layout = fleet.layout().clone();
    let mut state = fleet.read_policy_in(scope).await.expect("read");
    let mut watch = fleet
        .watch(&layout.policy_dir(), state.revision)
        .await
        .expect("watch");
    let _ = watching.send(());
    loop {
        let Ok(changes) = watch.next().await else {
            return;
        };
        let mut ready = false;
        for c in &changes {
            ready |= state
                .apply_event(&layout, &c.key, c.value.as_deref(), c.mod_revision)
                .expect("decodes");
        }
        if ready && seen.send((Instant::now(), state.clone())).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_100000_tenant_policy_applies_reads_cold_and_a_one_tenant_change_reaches_a_watcher() {
    const N: usize = 100_000;
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let started = Instant::now();
    let (_, parts) = fragments(&many("t", N, "1Gbit"), "p").expect("valid");
    let split = started.elapsed();
    let started = Instant::now();
    let applied = fleet
        .apply_policy(&parts, None, "ops", 1)
        .await
        .expect("applied");
    let apply = started.elapsed();
    assert_eq!((applied.generation, applied.changed), (1, N));
    // What etcd's answers alone take: the same pages, not decoded into a policy.
    let started = Instant::now();
    let raw = raw_pages(&fleet).await;
    eprintln!(
        "100,000 tenants: {raw} keys in pages of 10,000 from etcd: {:?}",
        started.elapsed()
    );
    // A node's cold start: the whole policy read at one revision, then parsed.
    let started = Instant::now();
    let snapshot = fleet.read_policy().await.expect("read");
    let read = started.elapsed();
    let policy = warden_policy::parse(&snapshot.document(""), "fleet").expect("parses");
    let cold = started.elapsed();
    assert_eq!(policy.tenants.len(), N);
    eprintln!(
        "100,000 tenants: validate+split {split:?}, apply {apply:?}, cold read {read:?}, \
         read+parse {cold:?}"
    );
    // A host node's cold start: its own tenants only, at one revision.
    let own = Scope::Tenants(["t5000".to_owned(), "t7".to_owned()].into());
    let started = Instant::now();
    let scoped = fleet.read_policy_in(own.clone()).await.expect("read");
    let scoped_read = started.elapsed();
    let policy = warden_policy::parse(&scoped.document(""), "fleet").expect("parses");
    eprintln!(
        "100,000 tenants: a host node's read of its 2 tenants {scoped_read:?}, with the parse {:?}",
        started.elapsed()
    );
    assert_eq!(policy.tenants.len(), 2);
    assert_eq!(scoped.tenants["t7"], snapshot.tenants["t7"]);
    assert_eq!(scoped.defaults, snapshot.defaults);
    assert_eq!(scoped.generation, snapshot.generation);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (watching, started_watching) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(watching_reader(
        etcd.fleet().await,
        Scope::All,
        watching,
        tx,
    ));
    started_watching.await.expect("the reader watches");
    let (scoped_tx, mut scoped_rx) = tokio::sync::mpsc::unbounded_channel();
    let (watching, started_watching) = tokio::sync::oneshot::channel();
    let scoped_reader = tokio::spawn(watching_reader(
        etcd.fleet().await,
        own,
        watching,
        scoped_tx,
    ));
    started_watching.await.expect("the scoped reader watches");
    let mut tenants = parts.tenants.clone();
    let changed = &mut tenants[5_000];
    let new_fragment = changed.1.replace("1Gbit", "7Mbit");
    assert_ne!(new_fragment, changed.1);
    changed.1 = new_fragment.clone();
    let one = warden_policy::fragments::Fragments {
        defaults: parts.defaults.clone(),
        tenants,
    };
    let started = Instant::now();
    let applied = fleet
        .apply_policy(&one, Some(snapshot.generation_revision), "ops", 2)
        .await
        .expect("applied");
    let apply_one = started.elapsed();
    assert_eq!(
        (applied.generation, applied.changed, applied.removed),
        (2, 1, 0)
    );
    let (at, state) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watcher saw the change within 30 s")
        .expect("the reader runs");
    reader.abort();
    let (scoped_at, scoped_state) = tokio::time::timeout(Duration::from_secs(30), scoped_rx.recv())
        .await
        .expect("the scoped watcher saw the change within 30 s")
        .expect("the scoped reader runs");
    scoped_reader.abort();
    eprintln!(
        "one-tenant change of 100,000: apply {apply_one:?}, seen by a watcher {:?} (a \
         watcher of 2 tenants {:?}) after the apply started",
        at.duration_since(started),
        scoped_at.duration_since(started)
    );
    assert_eq!(scoped_state.generation_number(), 2);
    assert_eq!(
        scoped_state.tenants.keys().collect::<Vec<_>>(),
        ["t5000", "t7"]
    );
    assert_eq!(scoped_state.tenants["t5000"], new_fragment);
    assert_eq!(state.generation_number(), 2);
    assert_eq!(state.tenants.len(), N);
    assert_eq!(state.tenants["t5000"], new_fragment);
    // The superseded version is deleted: one version per tenant again.
    let keys = keys_under(&fleet, &fleet.layout().tenants_dir()).await;
    assert_eq!(keys.len(), N);
    assert!(keys.contains(&fleet.layout().tenant_version("t5000", 2).expect("valid")));
}

#[tokio::test]
async fn a_reader_scoped_to_its_tenants_reads_them_whole_and_lets_others_go_by() {
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let base = |acme: &str, globex: &str| {
        policy(&[
            ("acme", "198.18.1.0/24", acme),
            ("globex", "198.18.2.0/24", globex),
            ("initech", "198.18.3.0/24", "1Gbit"),
        ])
    };
    let (_, parts) = fragments(&base("10Mbit", "10Mbit"), "p").expect("valid");
    fleet
        .apply_policy(&parts, None, "ops", 1)
        .await
        .expect("applied");
    let own = Scope::Tenants(["acme".to_owned(), "absent".to_owned()].into());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (watching, started_watching) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(watching_reader(
        etcd.fleet().await,
        own.clone(),
        watching,
        tx,
    ));
    started_watching.await.expect("the reader watches");
    let first = fleet.read_policy_in(own.clone()).await.expect("read");
    let all = fleet.read_policy().await.expect("read");
    assert_eq!(first.tenants.keys().collect::<Vec<_>>(), ["acme"]);
    assert_eq!(first.tenants["acme"], all.tenants["acme"]);
    assert_eq!(
        (first.generation.clone(), first.generation_revision),
        (all.generation, all.generation_revision)
    );

    // Another tenant's change: a generation that leaves this reader's tenants as they were.
    let (_, parts) = fragments(&base("10Mbit", "20Mbit"), "p").expect("valid");
    fleet
        .apply_policy(&parts, None, "ops", 2)
        .await
        .expect("applied");
    let (_, state) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("generation 2 seen")
        .expect("the reader runs");
    assert_eq!(state.generation_number(), 2);
    assert_eq!(state.tenants, first.tenants);
    // Its own change, with another's, arrives whole at its generation.
    let (_, parts) = fragments(&base("30Mbit", "30Mbit"), "p").expect("valid");
    fleet
        .apply_policy(&parts, None, "ops", 3)
        .await
        .expect("applied");
    let (_, state) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("generation 3 seen")
        .expect("the reader runs");
    reader.abort();
    assert_eq!(state.generation_number(), 3);
    assert!(
        state.tenants["acme"].contains("30Mbit"),
        "{:?}",
        state.tenants
    );
    assert_eq!(state.tenants.len(), 1);
    let read = fleet.read_policy_in(own).await.expect("read");
    assert_eq!(read.tenants, state.tenants);
}

#[tokio::test]
async fn a_crashed_applier_stages_what_no_reader_sees_and_the_next_apply_cleans_it() {
    use etcd_client::PutOptions;
    let etcd = Etcd::start().await;
    let fleet = etcd.fleet().await;
    let layout = fleet.layout().clone();
    let text = policy(&[
        ("a", "198.18.1.0/24", "1Gbit"),
        ("b", "198.18.2.0/24", "1Gbit"),
    ]);
    let (_, parts) = fragments(&text, "p").expect("valid");
    fleet
        .apply_policy(&parts, None, "ops", 1)
        .await
        .expect("applied");
    let before = fleet.read_policy().await.expect("read");

    // What an applier killed mid-staging leaves: its lock under a lease nobody keeps
    // alive, and versions of generation 2 (a change, a removal, a new tenant).
    let mut client = fleet.client().clone();
    let lease = client.lease_grant(3, None).await.expect("lease").id();
    let lock = br#"{"actor":"crashed","at":5}"#.to_vec();
    let mut kv = client.kv_client();
    kv.put(
        layout.policy_lock(),
        lock,
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("put");
    let (_, crashed) = fragments(
        &policy(&[
            ("a", "198.18.1.0/24", "5Mbit"),
            ("ghost", "198.18.9.0/24", "5Mbit"),
        ]),
        "p",
    )
    .expect("valid");
    let staged = [
        (
            layout.tenant_version("a", 2).expect("valid"),
            crashed.tenants[0].1.clone(),
        ),
        (
            layout.tenant_version("ghost", 2).expect("valid"),
            crashed.tenants[1].1.clone(),
        ),
        (layout.tenant_version("b", 2).expect("valid"), String::new()),
    ];
    for (key, value) in &staged {
        kv.put(key.as_str(), value.as_str(), None)
            .await
            .expect("put");
    }
    let after = fleet.read_policy().await.expect("read");
    assert_eq!(after.generation, before.generation, "generation unchanged");
    assert_eq!(after.tenants, before.tenants, "readers see the old policy");
    assert_eq!(after.defaults, before.defaults);

    // The next apply waits for the crashed lock to lapse, cleans, and commits.
    let text = policy(&[
        ("a", "198.18.1.0/24", "20Mbit"),
        ("c", "198.18.3.0/24", "1Gbit"),
    ]);
    let (_, next) = fragments(&text, "p").expect("valid");
    let applied = tokio::time::timeout(
        Duration::from_secs(30),
        fleet.apply_policy(&next, Some(before.generation_revision), "ops", 6),
    )
    .await
    .expect("the crashed lock lapsed within 30 s")
    .expect("applied");
    assert_eq!(applied.generation, 2);
    assert_eq!((applied.changed, applied.removed), (2, 1));
    assert_eq!(applied.cleaned, 3, "the crashed applier's three versions");
    let now = fleet.read_policy().await.expect("read");
    assert_eq!(now.tenants.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(now.tenants["a"], next.tenants[0].1);
    let keys = keys_under(&fleet, &layout.tenants_dir()).await;
    assert_eq!(
        keys,
        [
            layout.tenant_version("a", 2).expect("valid"),
            layout.tenant_version("c", 2).expect("valid"),
        ],
        "abandoned and superseded versions are gone"
    );
}

#[tokio::test]
async fn two_concurrent_large_applies_on_one_base_one_commits_and_no_reader_sees_a_mix() {
    const N: usize = 3_000;
    let etcd = Etcd::start().await;
    let (a, b) = (etcd.fleet().await, etcd.fleet().await);
    let (_, first) = fragments(&many("s", 10, "1Gbit"), "p").expect("valid");
    a.apply_policy(&first, None, "ops", 1).await.expect("first");
    let base = a.read_policy().await.expect("read").generation_revision;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (watching, started_watching) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(watching_reader(
        etcd.fleet().await,
        Scope::All,
        watching,
        tx,
    ));
    started_watching.await.expect("the reader watches");

    let (_, pa) = fragments(&many("a", N, "5Mbit"), "p").expect("valid");
    let (_, pb) = fragments(&many("b", N, "7Mbit"), "p").expect("valid");
    let (ra, rb) = tokio::join!(
        a.apply_policy(&pa, Some(base), "alice", 2),
        b.apply_policy(&pb, Some(base), "bob", 2)
    );
    let (won, lost, winner) = match (ra, rb) {
        (Ok(w), Err(l)) => (w, l, "a"),
        (Err(l), Ok(w)) => (w, l, "b"),
        other => panic!("expected one success and one conflict, got {other:?}"),
    };
    assert_eq!((won.generation, won.changed, won.removed), (2, N, 10));
    match &lost {
        FleetError::Conflict { key, expected, .. } => {
            assert_eq!(key, "/warden/v1/policy/generation");
            assert_eq!(*expected, base);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let (_, seen) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watcher saw the commit")
        .expect("the reader runs");
    reader.abort();
    assert_eq!(seen.generation_number(), 2);
    assert_eq!(seen.tenants.len(), N);
    assert!(
        seen.tenants.keys().all(|id| id.starts_with(winner)),
        "a mixed policy was seen"
    );
    let read = a.read_policy().await.expect("read");
    assert_eq!(read.tenants, seen.tenants);
    let keys = keys_under(&a, &a.layout().tenants_dir()).await;
    assert_eq!(keys.len(), N, "the first policy's versions are deleted");
}
