//! The `daemon` section and the review keys: listener limits, tokens, TLS, management,
//! notifications and the events log.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::tests::{errors, ok, one_error};

#[test]
fn metrics_top_k_defaults_to_1000_and_is_bounded() {
    assert_eq!(ok("tenants: []").daemon.metrics_top_k, 1_000);
    assert_eq!(ok("daemon: {metrics_top_k: 0}").daemon.metrics_top_k, 0);
    assert_eq!(
        ok("daemon: {metrics_top_k: 10000}").daemon.metrics_top_k,
        10_000
    );
    for bad in ["10001", "-1", "1.5", "many"] {
        assert_eq!(
            errors(&format!("daemon:\n  metrics_top_k: {bad}\n")),
            vec![(
                2,
                18,
                format!("`{bad}` must be a whole number of tenants from 0 to 10000 (0: aggregates only)")
            )],
        );
    }
}

#[test]
fn api_limits_default_read_and_refuse_with_positions() {
    assert_eq!(ok("tenants: []").daemon.api_limits, ApiLimits::default());
    let limits = ok(r#"
        daemon:
          api_limits:
            max_connections: 100
            max_connections_per_source: 5
            reserved_connections: 10
            header_timeout: 2s
            idle_timeout: 500ms
            body_timeout: 1m
    "#)
    .daemon
    .api_limits;
    assert_eq!(
        limits,
        ApiLimits {
            max_connections: 100,
            max_connections_per_source: 5,
            reserved_connections: 10,
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_secs(60),
        }
    );
    assert_eq!(
        errors("daemon:\n  api_limits: {max_connections: 0, idle_timeout: 0s, bogus: 1}\n"),
        vec![
            (2, 33, "must be greater than zero, found `0`".into()),
            (2, 50, "duration must be greater than zero, found `0s`".into()),
            (2, 54, "unknown key `bogus` in daemon.api_limits; expected one of: max_connections, max_connections_per_source, reserved_connections, header_timeout, idle_timeout, body_timeout".into()),
        ]
    );
    // The reserve must leave room for everyone else (checked against the default too).
    assert_eq!(
        errors("daemon:\n  api_limits:\n    reserved_connections: 1024\n"),
        vec![(
            3,
            27,
            "`reserved_connections` (1024) must be less than `max_connections` (1024): the rest is what other clients may use".into()
        )]
    );
    assert_eq!(
        errors("daemon:\n  api_limits: {max_connections: 8}\n").len(),
        1,
        "the default reserve of 32 does not fit in 8"
    );
    assert_eq!(
        ok("daemon: {api_limits: {max_connections: 8, reserved_connections: 0}}")
            .daemon
            .api_limits
            .reserved_connections,
        0
    );
}

#[test]
fn review_keys_notify_and_events_log_read_and_override() {
    let p = ok(r#"
        daemon:
          state_dir: /srv/warden
          events_log: /var/log/warden/events.jsonl
        defaults:
          notify:
            webhook: http://198.18.0.20:8080/hook
          detectors:
            scan:
              deadline: 30s
              suspend_on_deadline: true
        tenants:
          - id: a
            addresses: [198.18.1.0/24]
            notify:
              webhook: "http://[2001:db8::5]:9000/a"
            detectors:
              scan:
                suspend_on_deadline: false
          - id: b
            addresses: [198.18.2.0/24]
    "#);
    assert_eq!(
        p.daemon.events_log_path(),
        PathBuf::from("/var/log/warden/events.jsonl")
    );
    let a = p.tenant("a").expect("a");
    let b = p.tenant("b").expect("b");
    assert_eq!(
        a.settings.notify.webhook.as_deref(),
        Some("http://[2001:db8::5]:9000/a")
    );
    assert_eq!(
        b.settings.notify.webhook.as_deref(),
        Some("http://198.18.0.20:8080/hook")
    );
    let review = |t: &Tenant| t.settings.detectors.review(Kind::Scan);
    assert_eq!(
        review(a),
        Review {
            deadline: Duration::from_secs(30),
            suspend_on_deadline: false
        }
    );
    assert!(review(b).suspend_on_deadline);
    assert_eq!(
        b.settings.detectors.review(Kind::Spam),
        Review {
            deadline: DEFAULT_DEADLINE,
            suspend_on_deadline: false
        }
    );
    let none = ok("tenants: []");
    assert_eq!(
        none.daemon.events_log_path(),
        PathBuf::from("/var/lib/warden/events.jsonl")
    );
    assert_eq!(none.defaults.notify.webhook, None);
}

#[test]
fn review_keys_are_validated() {
    let all = errors(
        r#"
        daemon:
          events_log: relative/events.jsonl
        defaults:
          notify:
            webhook: https://198.18.0.20/hook
            url: http://198.18.0.20/hook
          detectors:
            scan:
              suspend_on_deadline: yes
              deadline: 0s
        tenants:
          - id: a
            addresses: [198.18.1.0/24]
            notify:
              webhook: ftp://198.18.0.20/x
          - id: b
            addresses: [198.18.2.0/24]
            notify:
              webhook: http://user:pw@198.18.0.20/x
    "#,
    );
    let messages: Vec<&str> = all.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(all.len(), 7, "{all:#?}");
    for (line, needle) in [
        (2, "must be an absolute path"),
        (5, "https is not supported"),
        (6, "unknown key `url` in notify; expected one of: webhook"),
        (9, "expected true or false, found `yes`"),
        (10, "0s"),
        (15, "scheme `ftp` is not supported"),
        (19, "credentials in the URL"),
    ] {
        assert!(
            all.iter().any(|(l, _, m)| *l == line && m.contains(needle)),
            "no error {needle:?} at line {line}: {messages:#?}"
        );
    }
}

#[test]
fn reads_and_metrics_are_open_without_tokens_and_closed_with_them() {
    let d = ok("tenants: []").daemon;
    assert!(d.open_reads && d.open_metrics && d.tls.is_none());
    let d = ok("daemon: {tokens: /etc/warden/tokens.yaml}").daemon;
    assert!(!d.open_reads && !d.open_metrics);
    let d = ok("daemon: {tokens: /t.yaml, open_reads: true}").daemon;
    assert!(d.open_reads && !d.open_metrics);
    let d = ok("daemon: {tokens: /t.yaml, open_metrics: true}").daemon;
    assert!(!d.open_reads && d.open_metrics);
    let d = ok("daemon: {open_reads: true, open_metrics: true}").daemon;
    assert!(d.open_reads && d.open_metrics);
}

#[test]
fn closing_reads_without_tokens_and_non_booleans_are_errors() {
    let (line, col, message) = one_error("daemon:\n  open_reads: false\n");
    assert_eq!((line, col), (2, 15));
    assert!(
        message.contains("`open_reads: false` needs `daemon.tokens`"),
        "{message}"
    );
    let (_, _, message) = one_error("daemon:\n  open_metrics: false\n");
    assert!(message.contains("`open_metrics: false`"), "{message}");
    let (line, col, message) = one_error("daemon:\n  tokens: /t.yaml\n  open_reads: yes\n");
    assert_eq!((line, col), (3, 15));
    assert_eq!(message, "expected true or false, found `yes`");
}

#[test]
fn tls_takes_an_absolute_cert_and_key() {
    let d = ok("daemon:\n  tls: {cert: /etc/warden/api.crt, key: /etc/warden/api.key}\n").daemon;
    assert_eq!(
        d.tls,
        Some(super::TlsFiles {
            cert: PathBuf::from("/etc/warden/api.crt"),
            key: PathBuf::from("/etc/warden/api.key"),
        })
    );
    let (line, _, message) = one_error("daemon:\n  tls: {cert: /a.crt}\n");
    assert_eq!(line, 2);
    assert_eq!(message, "`daemon.tls` is missing required key `key`");
    let (_, _, message) = one_error("daemon:\n  tls: {cert: a.crt, key: /a.key}\n");
    assert!(message.contains("must be an absolute path"), "{message}");
    let (_, _, message) = one_error("daemon:\n  tls: {cert: /a.crt, key: /a.key, ca: /c}\n");
    assert!(
        message.starts_with("unknown key `ca` in daemon.tls"),
        "{message}"
    );
}

#[test]
fn management_prefixes_wider_than_a_slash_8_or_slash_16_are_refused() {
    let all = errors(
        r#"
        daemon:
          management: [0.0.0.0/0, 10.0.0.0/8, 10.0.0.0/7, "::/0", "2001::/16", "2000::/3"]
    "#,
    );
    let messages: Vec<String> = all.iter().map(|(l, _, m)| format!("{l}: {m}")).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    for (got, net) in messages
        .iter()
        .zip(["0.0.0.0/0", "10.0.0.0/7", "::/0", "2000::/3"])
    {
        assert!(
            got.starts_with(&format!("2: management prefix {net} is wider than")),
            "{got}"
        );
    }
}

#[test]
fn log_format_is_text_by_default_json_when_asked_and_nothing_else() {
    let p = parse("tenants: []\n", "a.yaml").expect("valid");
    assert_eq!(p.daemon.log_format, LogFormat::Text);
    let p = parse("daemon: {log_format: json}\ntenants: []\n", "a.yaml").expect("valid");
    assert_eq!(p.daemon.log_format, LogFormat::Json);
    let e = parse("daemon: {log_format: syslog}\n", "a.yaml").expect_err("invalid");
    assert_eq!(
        e.to_string(),
        "a.yaml:1:22: expected text or json, found `syslog`"
    );
}

#[test]
fn fleet_is_absent_by_default_and_reads_with_its_defaults() {
    assert_eq!(ok("daemon: {}\n").daemon.fleet, None);
    let d = ok("daemon:\n  fleet: {endpoints: [\"http://198.18.0.1:2379\"], node: n7}\n").daemon;
    assert_eq!(
        d.fleet,
        Some(super::FleetConfig {
            endpoints: vec!["http://198.18.0.1:2379".into()],
            prefix: super::DEFAULT_FLEET_PREFIX.into(),
            node: "n7".into(),
            tls: None,
        })
    );
    let d = ok("daemon:\n  fleet:\n    endpoints: [\"https://[2001:db8::1]:2379\", \"https://198.18.0.2:2379\"]\n    prefix: /acme/warden/\n    node: gw-1\n    tls: {ca: /etc/warden/ca.pem, cert: /etc/warden/n.pem, key: /etc/warden/n.key}\n").daemon;
    let fleet = d.fleet.expect("configured");
    assert_eq!(fleet.endpoints.len(), 2);
    assert_eq!(fleet.prefix, "/acme/warden/");
    assert_eq!(
        fleet.tls.expect("tls").ca,
        PathBuf::from("/etc/warden/ca.pem")
    );
}

#[test]
fn fleet_keys_are_validated_with_positions() {
    let (line, _, message) = one_error("daemon:\n  fleet: {node: n7}\n");
    assert_eq!(line, 2);
    assert_eq!(
        message,
        "`daemon.fleet` is missing required key `endpoints`"
    );
    let (_, _, message) =
        one_error("daemon:\n  fleet: {endpoints: [\"http://a:1\"], node: n7, nodes: 3}\n");
    assert!(
        message.starts_with("unknown key `nodes` in daemon.fleet"),
        "{message}"
    );
    let (_, _, message) = one_error("daemon:\n  fleet: {endpoints: [], node: n7}\n");
    assert!(message.contains("at least one etcd URL"), "{message}");
    let (_, _, message) =
        one_error("daemon:\n  fleet: {endpoints: [\"198.18.0.1:2379\"], node: n7}\n");
    assert!(
        message.contains("not an etcd endpoint") || message.contains("not a URL"),
        "{message}"
    );
    let (_, _, message) =
        one_error("daemon:\n  fleet: {endpoints: [\"http://a:1/x\"], node: n7}\n");
    assert!(message.contains("not an etcd endpoint"), "{message}");
    let (_, _, message) =
        one_error("daemon:\n  fleet: {endpoints: [\"http://a:1\"], node: \"a/b\"}\n");
    assert!(message.starts_with("node name `a/b`"), "{message}");
    let (_, _, message) =
        one_error("daemon:\n  fleet: {endpoints: [\"http://a:1\"], node: n, prefix: warden}\n");
    assert!(message.starts_with("prefix `warden`"), "{message}");
    let (_, _, message) = one_error(
        "daemon:\n  fleet:\n    endpoints: [\"http://a:1\"]\n    node: n\n    tls: {ca: /c, cert: /a, key: /k}\n",
    );
    assert!(
        message.contains("with `tls`, every endpoint must be https://"),
        "{message}"
    );
    let (_, _, message) = one_error("daemon:\n  fleet: {endpoints: [\"https://a:1\"], node: n}\n");
    assert!(message.contains("without `tls`"), "{message}");
    let (_, _, message) = one_error(
        "daemon:\n  fleet:\n    endpoints: [\"https://a:1\"]\n    node: n\n    tls: {ca: c, cert: /a, key: /k}\n",
    );
    assert!(message.contains("must be an absolute path"), "{message}");
}
