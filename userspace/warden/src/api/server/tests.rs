use std::net::{Ipv4Addr, SocketAddr};

use axum::{
    body::Bytes,
    routing::{get, put},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn admission(total: usize, per_source: usize, reserved: usize) -> Arc<Admission> {
    Admission::new(
        Caps {
            total,
            per_source,
            reserved,
        },
        Arc::new(ConnMetrics::default()),
    )
}

#[test]
fn a_source_gets_its_cap_and_then_per_source_refusals() {
    let a = admission(100, 3, 10);
    let held: Vec<Slot> = (0..3)
        .map(|_| a.admit(ip("198.18.0.1"), false).expect("under the cap"))
        .collect();
    assert_eq!(
        a.admit(ip("198.18.0.1"), false).err(),
        Some(Refused::PerSource)
    );
    // Another source is not affected, and a closed connection frees its place.
    let other = a.admit(ip("198.18.0.2"), false).expect("another source");
    drop(held);
    assert!(a.admit(ip("198.18.0.1"), false).is_ok());
    assert_eq!(a.open(), 1, "the slot taken just now was dropped at once");
    drop(other);
    assert_eq!(a.open(), 0);
    assert!(a.lock().by_source.is_empty(), "no empty entries are kept");
}

#[test]
fn the_reserve_is_kept_for_loopback_and_management_sources() {
    let a = admission(10, 100, 3);
    let mut held: Vec<Slot> = (0..7)
        .map(|i| {
            a.admit(IpAddr::V4(Ipv4Addr::new(198, 19, 0, i)), false)
                .expect("under the cap")
        })
        .collect();
    assert_eq!(a.open(), 7);
    // Everyone else now meets max_connections; a reserve source does not.
    assert_eq!(
        a.admit(ip("198.19.1.1"), false).err(),
        Some(Refused::MaxConnections)
    );
    for _ in 0..3 {
        held.push(a.admit(ip("127.0.0.1"), true).expect("the reserve"));
    }
    assert_eq!(a.open(), 10);
    assert_eq!(
        a.admit(ip("127.0.0.1"), true).err(),
        Some(Refused::MaxConnections),
        "the reserve ends at max_connections too"
    );
    held.truncate(5);
    assert!(a.admit(ip("198.19.1.1"), false).is_ok());
}

#[test]
fn reserve_sources_do_not_take_the_others_share_but_the_total_holds() {
    let a = admission(10, 100, 3);
    let reserve: Vec<Slot> = (0..2)
        .map(|_| a.admit(ip("127.0.0.1"), true).expect("the reserve"))
        .collect();
    let others: Vec<Slot> = (0..7)
        .map(|i| {
            a.admit(IpAddr::V4(Ipv4Addr::new(198, 19, 0, i)), false)
                .expect("the others' share is whole")
        })
        .collect();
    assert_eq!(
        a.admit(ip("198.19.1.1"), false).err(),
        Some(Refused::MaxConnections)
    );
    drop(others);
    // Reserve sources beyond the reserve take what is free, and then the others get
    // only what is left under the total.
    let more: Vec<Slot> = (0..7)
        .map(|_| a.admit(ip("127.0.0.1"), true).expect("free places"))
        .collect();
    assert_eq!(a.open(), 9);
    let last = a.admit(ip("198.19.1.1"), false).expect("one place left");
    assert_eq!(
        a.admit(ip("198.19.1.2"), false).err(),
        Some(Refused::MaxConnections)
    );
    drop((reserve, more, last));
    assert_eq!(a.open(), 0);
    assert_eq!(a.lock().others, 0);
}

#[test]
fn reserve_sources_have_no_per_source_cap() {
    let a = admission(50, 2, 10);
    let held: Vec<Slot> = (0..20)
        .map(|_| a.admit(ip("::1"), true).expect("loopback"))
        .collect();
    assert_eq!(held.len(), 20);
    assert_eq!(
        a.admit(ip("198.19.0.1"), false).ok().map(|s| s.source),
        Some(Some(ip("198.19.0.1")))
    );
}

#[test]
fn ipv6_sources_count_by_their_64_and_mapped_ipv4_as_ipv4() {
    let a = admission(100, 2, 0);
    let _one = a.admit(ip("2001:db8:1:2::1"), false).expect("first");
    let _two = a.admit(ip("2001:db8:1:2:ffff::9"), false).expect("second");
    assert_eq!(
        a.admit(ip("2001:db8:1:2:abcd::1"), false).err(),
        Some(Refused::PerSource),
        "a host's /64 is one source"
    );
    assert!(a.admit(ip("2001:db8:1:3::1"), false).is_ok());
    assert_eq!(canonical(ip("::ffff:198.18.0.7")), ip("198.18.0.7"));
    assert_eq!(source_key(ip("::ffff:198.18.0.7")), ip("198.18.0.7"));
    assert_eq!(source_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
}

#[test]
fn the_open_gauge_follows_admissions() {
    let metrics = Arc::new(ConnMetrics::default());
    let a = Admission::new(
        Caps {
            total: 4,
            per_source: 4,
            reserved: 0,
        },
        metrics.clone(),
    );
    let slots: Vec<Slot> = (0..3)
        .map(|_| a.admit(ip("198.18.0.1"), false).expect("admitted"))
        .collect();
    let mut text = String::new();
    crate::metrics::http::render_connections(&mut text, &metrics.figures());
    assert!(text.contains("warden_api_connections_open 3\n"), "{text}");
    drop(slots);
    let mut text = String::new();
    crate::metrics::http::render_connections(&mut text, &metrics.figures());
    assert!(text.contains("warden_api_connections_open 0\n"), "{text}");
}

#[test]
fn every_refusal_and_timeout_reason_has_a_series() {
    let m = ConnMetrics::default();
    m.refused(Refused::PerSource);
    m.refused(Refused::PerSource);
    m.closed(Closed::Header);
    let mut text = String::new();
    crate::metrics::http::render_connections(&mut text, &m.figures());
    for line in [
        "# TYPE warden_api_connections_open gauge\n",
        "# TYPE warden_api_connections_refused_total counter\n",
        "warden_api_connections_refused_total{reason=\"max_connections\"} 0\n",
        "warden_api_connections_refused_total{reason=\"max_connections_per_source\"} 2\n",
        "warden_api_connections_refused_total{reason=\"max_handshakes\"} 0\n",
        "# TYPE warden_api_connections_closed_total counter\n",
        "warden_api_connections_closed_total{reason=\"idle_timeout\"} 0\n",
        "warden_api_connections_closed_total{reason=\"header_timeout\"} 1\n",
        "warden_api_connections_closed_total{reason=\"body_timeout\"} 0\n",
        "warden_api_connections_closed_total{reason=\"send_timeout\"} 0\n",
        "warden_api_connections_closed_total{reason=\"handshake_timeout\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("tls_handshakes"), "{text}");
}

#[test]
fn caps_stay_below_the_descriptor_limit() {
    let limits = ApiLimits {
        max_connections: 1024,
        max_connections_per_source: 64,
        reserved_connections: 32,
        ..ApiLimits::default()
    };
    let (caps_now, warning) = caps(&limits, 65_536, 40);
    assert_eq!(
        caps_now,
        Caps {
            total: 1024,
            per_source: 64,
            reserved: 32
        }
    );
    assert!(warning.is_none());
    // systemd's default soft limit without LimitNOFILE, and nothing to raise it to.
    let (lowered, warning) = caps(&limits, 1024, 100);
    assert_eq!(
        lowered,
        Caps {
            total: 1024 - 100 - FD_HEADROOM as usize,
            per_source: 64,
            reserved: 32
        }
    );
    let warning = warning.expect("a lowered cap is logged");
    assert!(
        warning.contains("1024") && warning.contains("LimitNOFILE"),
        "{warning}"
    );
    let (tiny, _) = caps(&limits, 200, 100);
    assert_eq!(
        tiny,
        Caps {
            total: 1,
            per_source: 1,
            reserved: 0
        }
    );
}

#[test]
fn refusals_are_complete_http_answers_with_a_json_error() {
    let r = Refusals::new(&Caps {
        total: 10,
        per_source: 2,
        reserved: 3,
    });
    for (i, needle) in [
        "max_connections 10",
        "max_connections_per_source 2",
        "TLS handshakes",
    ]
    .into_iter()
    .enumerate()
    {
        let text = String::from_utf8(r.0[i].clone()).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        let error = v["error"].as_str().expect("error string");
        assert!(error.contains(needle), "{error}");
    }
}

fn t(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn deadlines_follow_the_request_cycle() {
    let timeouts = Timeouts {
        header: t(10_000),
        idle: t(30_000),
        body: t(60_000),
    };
    let t0 = Instant::now();
    let a = Activity::new(t0);
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + timeouts.idle, Some(Closed::Idle)))
    );
    // The first byte starts the header clock; later bytes do not move it.
    a.read(t0 + t(1_000));
    a.read(t0 + t(9_000));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(11_000), Some(Closed::Header)))
    );
    a.request(true, t0 + t(9_500));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(69_500), Some(Closed::Body)))
    );
    a.read(t0 + t(9_600));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(69_500), Some(Closed::Body))),
        "body bytes do not restart anything"
    );
    a.body_done();
    assert_eq!(
        a.deadline(&timeouts, false),
        None,
        "the handler works unbounded"
    );
    a.write_blocked(t0 + t(12_000));
    a.write_blocked(t0 + t(13_000));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(42_000), Some(Closed::Send))),
        "blocked since the first refusal"
    );
    a.wrote(t0 + t(14_000), true);
    assert_eq!(a.deadline(&timeouts, false), None);
    a.response_done(t0 + t(20_000));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(50_000), Some(Closed::Idle)))
    );
    // The tail of a response stuck in the socket after its body ended: sending, not
    // idle; idle from the last byte that went out.
    a.write_blocked(t0 + t(21_000));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(51_000), Some(Closed::Send)))
    );
    a.wrote(t0 + t(25_000), false);
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(55_000), Some(Closed::Idle)))
    );
    // A flush with nothing waiting is no progress.
    a.wrote(t0 + t(26_000), false);
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(55_000), Some(Closed::Idle)))
    );
    a.request(false, t0 + t(26_000));
    assert_eq!(
        a.deadline(&timeouts, false),
        None,
        "a request without a body"
    );
    assert_eq!(
        a.deadline(&timeouts, true),
        None,
        "a request is answered at a shutdown"
    );
    // Bytes of a request while a response is stuck: whichever deadline comes first.
    a.response_done(t0 + t(27_000));
    a.write_blocked(t0 + t(27_000));
    a.read(t0 + t(28_000));
    assert_eq!(
        a.deadline(&timeouts, false),
        Some((t0 + t(38_000), Some(Closed::Header)))
    );
    // At a shutdown, a header still arriving and an idle connection end now.
    assert_eq!(a.deadline(&timeouts, true), Some((t0 + t(28_000), None)));
    let idle = Activity::new(t0);
    assert_eq!(idle.deadline(&timeouts, true), Some((t0, None)));
}

/// A router for the connection tests.
fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/big", get(|| async { vec![b'x'; 4 << 20] }))
        .route(
            "/body",
            put(|body: Bytes| async move { body.len().to_string() }),
        )
}

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_millis(300),
    idle: Duration::from_millis(200),
    body: Duration::from_millis(400),
};

/// A bound on every wait of these tests: far above the timeouts, so a deadline that never
/// fires fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(10);

/// A connection's task: why it was closed, and after how long.
type Served = tokio::task::JoinHandle<(Option<Closed>, Duration)>;

/// Drives a connection on one end of an in-memory pipe of `buffer` bytes each way;
/// returns the client's end, the task, and the shutdown switch.
fn connection(buffer: usize) -> (DuplexStream, Served, watch::Sender<bool>) {
    let (client, server) = tokio::io::duplex(buffer);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let activity = Arc::new(Activity::new(started));
        let closed = drive(server, app(), activity, TIMEOUTS, stopped).await;
        (closed, started.elapsed())
    });
    (client, task, stop)
}

async fn ended(task: Served) -> (Option<Closed>, Duration) {
    tokio::time::timeout(BOUND, task)
        .await
        .expect("the connection ended within the bound")
        .expect("the connection task")
}

/// Reads one response with `Content-Length` (status, body).
async fn response(client: &mut DuplexStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(BOUND, client.read(&mut buf))
            .await
            .expect("a response within the bound")
            .expect("read");
        assert!(n > 0, "connection closed before a whole response");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if body.len() >= length {
                let status = head[9..12].parse().expect("status");
                return (status, body[..length].to_owned());
            }
        }
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (mut client, task, _stop) = connection(1 << 16);
    let (closed, took) = ended(task).await;
    assert_eq!(closed, Some(Closed::Idle));
    assert!(took >= TIMEOUTS.idle, "closed after {took:?}");
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).await.expect("EOF"), 0);
}

#[tokio::test]
async fn a_trickled_header_is_closed_after_the_header_timeout_from_its_first_byte() {
    let (mut client, task, _stop) = connection(1 << 16);
    // A byte every 100 ms: each one well inside the idle timeout, the whole header not
    // within the header timeout.
    let header = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
    let first = Instant::now();
    let mut sent = 0;
    let mut task = task;
    let closed = loop {
        tokio::select! {
            r = &mut task => break r.expect("task"),
            _ = tokio::time::sleep(t(100)) => {
                if sent < header.len() && client.write_all(&header[sent..=sent]).await.is_ok() {
                    sent += 1;
                }
            }
        }
        assert!(first.elapsed() < BOUND, "never closed");
    };
    assert_eq!(closed.0, Some(Closed::Header));
    assert!(
        sent < header.len(),
        "the whole header went through ({sent} bytes)"
    );
    assert!(first.elapsed() >= TIMEOUTS.header);
}

#[tokio::test]
async fn a_keep_alive_connection_is_answered_then_closed_when_idle() {
    let (mut client, task, _stop) = connection(1 << 16);
    for _ in 0..2 {
        client
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(response(&mut client).await, (200, "ok".to_owned()));
    }
    let answered = Instant::now();
    let (closed, _) = ended(task).await;
    assert_eq!(closed, Some(Closed::Idle));
    assert!(answered.elapsed() >= TIMEOUTS.idle);
}

#[tokio::test]
async fn a_stalled_body_is_closed_after_the_body_timeout() {
    let (mut client, task, _stop) = connection(1 << 16);
    client
        .write_all(b"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .await
        .expect("write");
    let (closed, took) = ended(task).await;
    assert_eq!(closed, Some(Closed::Body));
    assert!(took >= TIMEOUTS.body, "closed after {took:?}");
    // A complete body on a fresh connection is answered.
    let (mut client, _task, _stop) = connection(1 << 16);
    client
        .write_all(b"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .expect("write");
    assert_eq!(response(&mut client).await, (200, "3".to_owned()));
}

#[tokio::test]
async fn a_client_that_takes_no_response_is_closed_after_the_idle_timeout() {
    // 4 MiB through a 4 KiB pipe nobody reads.
    let (mut client, task, _stop) = connection(4 << 10);
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (closed, took) = ended(task).await;
    assert_eq!(closed, Some(Closed::Send));
    assert!(took >= TIMEOUTS.idle, "closed after {took:?}");
}

#[tokio::test]
async fn shutdown_closes_an_idle_connection_at_once_and_lets_a_request_finish() {
    let (_client, task, stop) = connection(1 << 16);
    stop.send(true).expect("the connection listens");
    let (closed, took) = ended(task).await;
    assert_eq!(closed, None, "not a timeout");
    assert!(took < TIMEOUTS.idle, "closed after {took:?}");

    // Half a header at the shutdown: closed at once too.
    let (mut client, task, stop) = connection(1 << 16);
    client.write_all(b"GET /ok HTT").await.expect("write");
    tokio::time::sleep(t(20)).await;
    stop.send(true).expect("the connection listens");
    let (closed, took) = ended(task).await;
    assert_eq!(closed, None, "not a timeout");
    assert!(took < TIMEOUTS.header, "closed after {took:?}");

    // A request under way at the shutdown is still answered, then the connection ends.
    let (mut client, task, stop) = connection(1 << 16);
    client
        .write_all(b"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        .await
        .expect("write");
    tokio::time::sleep(t(50)).await;
    stop.send(true).expect("the connection listens");
    client.write_all(b"cd").await.expect("write");
    assert_eq!(response(&mut client).await, (200, "4".to_owned()));
    let (closed, _) = ended(task).await;
    assert_eq!(closed, None);
}

#[test]
fn reserve_addresses_are_compared_in_canonical_form() {
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().expect("address");
    assert!(canonical(mapped.ip()).is_loopback());
}
