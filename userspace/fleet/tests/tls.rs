//! warden-fleet against an etcd that takes only TLS clients with certificates
//! (`--client-cert-auth`), as a fleet runs it: the certificate's CN is the etcd user, and
//! the roles `warden fleet init` writes keep a node to its own keys. Certificates are made
//! by the lab's [`Pki`] (`openssl`) in a temporary directory; etcd is killed on drop.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Killed};
use warden_fleet::records::NodeRecord;
use warden_fleet::{Connect, Fleet, FleetError, Layout, TlsFiles, DEFAULT_PREFIX};
use warden_policy::fragments::fragments;
use warden_tests::pki::Pki;

struct Etcd {
    _etcd: Killed,
    endpoint: String,
    pki: Pki,
    dir: tempfile::TempDir,
}

impl Etcd {
    async fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();
        let pki = Pki::new(d, &["127.0.0.1"]).expect("the test's certificates");
        let (cert, key) = pki.server();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(d.join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(key)
            .arg("--trusted-ca-file")
            .arg(pki.ca())
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd runs");
        let etcd = Etcd {
            _etcd: Killed(child),
            endpoint,
            pki,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(f) = etcd.fleet("root").await {
                if f.read_policy().await.is_ok() {
                    return etcd;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client with the certificate whose CN is `cn` (the etcd user: `root`,
    /// `warden-node-n1`), made on first use.
    async fn fleet(&self, cn: &str) -> Result<Fleet, FleetError> {
        let files = self.pki.client(cn).expect("a client certificate");
        let mut connect = Connect::plain(vec![self.endpoint.clone()]);
        connect.timeout = Duration::from_secs(2);
        connect.tls = Some(TlsFiles {
            ca: files.ca,
            cert: files.cert,
            key: files.key,
        });
        Fleet::connect(&connect, Layout::new(DEFAULT_PREFIX).expect("valid")).await
    }
}

#[tokio::test]
async fn over_client_certificates_a_node_reads_the_fleet_and_writes_only_its_own_keys() {
    let etcd = Etcd::start().await;
    let root = etcd.fleet("root").await.expect("root connects");
    root.init_layout(1).await.expect("layout");
    root.init_rbac(&["n1".to_owned()])
        .await
        .expect("roles and users");
    let (_, parts) = fragments(
        "tenants:\n  - {id: acme, addresses: [198.18.1.0/24]}\n",
        "p",
    )
    .expect("valid");
    root.apply_policy(&parts, None, "ops", 1)
        .await
        .expect("root writes policy");
    let mut c = root.client().clone();
    c.user_add(
        "root",
        "",
        Some(etcd_client::UserAddOptions::new().with_no_pwd()),
    )
    .await
    .expect("root user");
    c.user_grant_role("root", "root").await.expect("root role");
    c.auth_enable().await.expect("auth enabled");

    let node = etcd
        .fleet("warden-node-n1")
        .await
        .expect("the node connects with its certificate");
    let snapshot = node.read_policy().await.expect("the node reads policy");
    assert_eq!(snapshot.tenants.len(), 1);
    let own = NodeRecord {
        node: "n1".into(),
        version: "0".into(),
        started_at: 0,
        heartbeat: 0,
        applied_generation: 1,
        applied_revision: snapshot.revision,
        attached: true,
        interfaces: vec![],
    };
    node.register(&own, 5)
        .await
        .expect("the node registers itself");
    match node.apply_policy(&parts, None, "n1", 2).await {
        Err(FleetError::PermissionDenied { .. }) => {}
        other => panic!("a node's certificate wrote policy: {other:?}"),
    }
    let other = NodeRecord {
        node: "n2".into(),
        ..own
    };
    match node.register(&other, 5).await {
        Err(FleetError::PermissionDenied { .. }) => {}
        other => panic!(
            "a node's certificate wrote another node's key: {:?}",
            other.map(|r| r.lease)
        ),
    }
    // A client without a certificate is refused by the TLS handshake itself.
    let mut bare = Connect::plain(vec![etcd.endpoint.clone()]);
    bare.timeout = Duration::from_secs(2);
    bare.tls = Some(TlsFiles {
        ca: etcd.dir.path().join("ca.pem"),
        cert: etcd.dir.path().join("missing.pem"),
        key: etcd.dir.path().join("missing.key"),
    });
    match Fleet::connect(&bare, Layout::new(DEFAULT_PREFIX).expect("valid")).await {
        Err(FleetError::TlsFile { path, .. }) => assert!(path.ends_with("missing.pem")),
        Err(other) => panic!("expected the missing file named, got {other}"),
        Ok(_) => panic!("connected without a certificate file"),
    }
}
