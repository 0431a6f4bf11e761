//! What a detection is aimed at, what a block of it cuts in the kernel, and how its
//! evidence reads in a flag.
//!
//! Targets, per kind (the ladder's [`Target`]):
//! - `scan`: the heaviest of the detection's top targets (failed first contacts per host
//!   and per port): a port for a horizontal scan (one port, many hosts), a host for a
//!   vertical one (one host, many ports). On a tie the port wins.
//! - `flood_out`: the victim; `flood_in`: the attacked tenant address. Each further
//!   victim of the same episode is a further target.
//! - `spam`: the SMTP port the connections went to (25, 465 or 587).
//! - `proxy`: the relaying address's listen port with the most clients.
//! - `spoof_ip`, `spoof_arp`, `spoof_mac`, `bandwidth`: the tenant.
//!
//! A block cuts only that traffic ([`block_target`]): a victim or scanned host
//! ([`BlockTarget::Victim`]), a destination port ([`BlockTarget::Port`]), an attacked
//! address ([`BlockTarget::Blackhole`]), a listen port ([`BlockTarget::ListenPort`]). A
//! tenant-wide target has no block: the programs already drop spoofed and over-plan
//! traffic, and cutting the whole tenant is a suspension's job.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::ladder::Target;
use crate::{self as detect, Detection, Fact};
use warden_policy::traffic::BlockTarget;
use warden_policy::Kind;

/// The target a fact that crossed `d`'s thresholds points at. `port` is the busiest
/// listen port of a proxy window.
pub fn of(d: &Detection, fact: &Fact, port: Option<u16>) -> Target {
    match (d.kind, fact) {
        (Kind::FloodOut | Kind::FloodIn, Fact::Rate(r)) => Target::Addr(r.remote),
        (Kind::FloodOut | Kind::FloodIn, _) => top_addr(d).map_or(Target::Tenant, Target::Addr),
        (Kind::Scan, _) => scan(&d.top_targets),
        (Kind::Spam, _) => Target::Port(port.unwrap_or(25)),
        (Kind::Proxy, _) => port.map_or(Target::Tenant, Target::ProxyPort),
        (Kind::SpoofIp | Kind::SpoofArp | Kind::SpoofMac | Kind::Bandwidth, _) => Target::Tenant,
    }
}

/// A scan's target: its heaviest top target, a port or a host; the tenant when the
/// detection names none.
pub fn scan(top: &[(detect::Target, u64)]) -> Target {
    // Heaviest first; on equal weight a port-only target sorts before a host (the
    // engine's order), and a horizontal scan is the narrower cut.
    match top.first() {
        Some((
            detect::Target {
                port: Some(p),
                addr: None,
                ..
            },
            _,
        )) => Target::Port(*p),
        Some((detect::Target { addr: Some(a), .. }, _)) => Target::Addr(*a),
        _ => Target::Tenant,
    }
}

fn top_addr(d: &Detection) -> Option<IpAddr> {
    d.top_targets.iter().find_map(|(t, _)| t.addr)
}

/// What a block of `target` (found by detector `kind`) drops in the kernel; `None` for a
/// tenant-wide target, whose block only records.
pub fn block_target(kind: Kind, target: &Target) -> Option<BlockTarget> {
    match (kind, target) {
        (_, Target::Tenant) => None,
        (Kind::FloodIn, Target::Addr(a)) => Some(BlockTarget::Blackhole(*a)),
        (_, Target::Addr(a)) => Some(BlockTarget::Victim(*a)),
        // Port 0 (ICMP) would match every portless packet: the kernel refuses it.
        (_, Target::Port(0) | Target::ProxyPort(0)) => None,
        (_, Target::Port(p)) => Some(BlockTarget::Port(*p)),
        (_, Target::ProxyPort(p)) => Some(BlockTarget::ListenPort(*p)),
    }
}

/// Named figures or thresholds as a JSON object.
pub fn figures(named: &[(String, f64)]) -> Value {
    let map: Map<String, Value> = named
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    Value::Object(map)
}

/// Top targets as JSON objects `{"addr", "port", "count"}`, heaviest first; `addr` or
/// `port` is null when the weight is not about one. A spoofing kind's claims add `mac`
/// (`02:00:5e:10:00:02`): the address claimed from that source MAC.
pub fn top_targets(top: &[(detect::Target, u64)]) -> Value {
    Value::Array(
        top.iter()
            .map(|(t, count)| {
                let mut v = json!({
                    "addr": t.addr.map(|a| a.to_string()),
                    "port": t.port,
                    "count": count,
                });
                if let Some(m) = t.mac {
                    v["mac"] = json!(format!(
                        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        m[0], m[1], m[2], m[3], m[4], m[5]
                    ));
                }
                v
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use warden_policy::tenant::TenantSlot;

    use crate::{Direction, Fan, Rate, Status};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn detection(kind: Kind, top: Vec<(detect::Target, u64)>) -> Detection {
        Detection {
            slot: TenantSlot(1),
            kind,
            status: Status::Started,
            first_seen: Duration::ZERO,
            last_seen: Duration::ZERO,
            figures: vec![("pps".into(), 30_000.0)],
            top_targets: top,
            thresholds: vec![("pps".into(), 20_000.0)],
        }
    }

    fn rate(remote: IpAddr, dir: Direction) -> Fact {
        Fact::Rate(Rate {
            slot: TenantSlot(1),
            remote,
            dir,
            pps: 30_000.0,
            syn_pps: 0.0,
            reply_pps: 0.0,
            bps: 0.0,
            at: Duration::ZERO,
        })
    }

    fn fan() -> Fact {
        Fact::Fan(Fan {
            slot: TenantSlot(1),
            addr: ip("198.18.1.1"),
            inbound_clients: 30,
            outbound_destinations: 60,
            in_bytes: 1,
            out_bytes: 1,
            at: Duration::ZERO,
        })
    }

    #[test]
    fn a_horizontal_scan_targets_its_port_and_a_vertical_one_its_host() {
        let host = ip("198.19.0.7");
        let horizontal = vec![
            (detect::Target::port(22), 50),
            (detect::Target::host(ip("198.19.0.1")), 1),
            (detect::Target::host(ip("198.19.0.2")), 1),
        ];
        let vertical = vec![
            (detect::Target::host(host), 900),
            (detect::Target::port(1), 1),
        ];
        let fact = fan();
        assert_eq!(
            of(&detection(Kind::Scan, horizontal), &fact, None),
            Target::Port(22)
        );
        assert_eq!(
            of(&detection(Kind::Scan, vertical), &fact, None),
            Target::Addr(host)
        );
        assert_eq!(
            of(&detection(Kind::Scan, vec![]), &fact, None),
            Target::Tenant
        );
    }

    #[test]
    fn floods_target_the_victim_or_the_attacked_address_and_block_accordingly() {
        let victim = ip("198.19.0.9");
        let d = detection(Kind::FloodOut, vec![]);
        let t = of(&d, &rate(victim, Direction::Out), None);
        assert_eq!(t, Target::Addr(victim));
        assert_eq!(
            block_target(Kind::FloodOut, &t),
            Some(BlockTarget::Victim(victim))
        );
        let attacked = ip("2001:db8:1::1");
        let d = detection(Kind::FloodIn, vec![]);
        let t = of(&d, &rate(attacked, Direction::In), None);
        assert_eq!(
            block_target(Kind::FloodIn, &t),
            Some(BlockTarget::Blackhole(attacked))
        );
    }

    #[test]
    fn spam_proxy_and_drop_kinds_pick_their_port_or_the_tenant() {
        let fact = fan();
        let spam = detection(Kind::Spam, vec![]);
        assert_eq!(of(&spam, &fact, Some(587)), Target::Port(587));
        assert_eq!(of(&spam, &fact, None), Target::Port(25));
        let proxy = detection(Kind::Proxy, vec![]);
        let t = of(&proxy, &fact, Some(1080));
        assert_eq!(t, Target::ProxyPort(1080));
        assert_eq!(
            block_target(Kind::Proxy, &t),
            Some(BlockTarget::ListenPort(1080))
        );
        for kind in [
            Kind::SpoofIp,
            Kind::SpoofArp,
            Kind::SpoofMac,
            Kind::Bandwidth,
        ] {
            let t = of(&detection(kind, vec![]), &fact, Some(80));
            assert_eq!(t, Target::Tenant);
            assert_eq!(block_target(kind, &t), None, "the kernel drops it already");
        }
        assert_eq!(block_target(Kind::Scan, &Target::Port(0)), None);
    }

    #[test]
    fn evidence_reads_as_named_figures_and_target_objects() {
        let d = detection(
            Kind::Scan,
            vec![
                (detect::Target::port(22), 40),
                (detect::Target::host(ip("198.19.0.3")), 2),
            ],
        );
        assert_eq!(figures(&d.figures), json!({"pps": 30000.0}));
        assert_eq!(
            top_targets(&d.top_targets),
            json!([
                {"addr": null, "port": 22, "count": 40},
                {"addr": "198.19.0.3", "port": null, "count": 2},
            ])
        );
    }
}
