//! Differential fuzzing: seeded random and mutated frames through all four programs and
//! through the reference model (`warden_tests::model`), comparing every verdict and
//! the counters of every batch.
//!
//! Frames are built from a grammar that reaches the parser's corners (VLAN stacks up
//! to three tags, IPv4 options and fragments, IPv6 extension chains, ICMP errors with
//! inner headers, ARP and ND of every kind with their options, unknown ethertypes),
//! with addresses and MACs of the policy's tenants (a suspended one, a MAC-bound one,
//! a mail sender), management, link-local and multicast; then some are mutated
//! (truncated at any byte, bytes flipped, length fields rewritten, trailers added).
//!
//! `WARDEN_FUZZ_FRAMES` (default 200,000) sets how many frames, `WARDEN_FUZZ_SEED`
//! the seed (default fixed, so CI runs the same frames; `cargo xtask fuzz` picks one
//! and prints it). Verdicts are compared frame by frame; counters per batch of
//! [`BATCH`] frames, and a batch whose counters differ is run again frame by frame to
//! name the frame.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use warden_common::{direction, map, tenant_flags, IfaceConfig};
use warden_tests::{
    model::{self, Expect},
    packets::{solicited_node, Mac, SRC_MAC},
};

use crate::{fixture_policy::*, harness::*};

/// Frames per counter comparison.
const BATCH: usize = 2_000;
/// Frames per CI run unless `WARDEN_FUZZ_FRAMES` says otherwise.
const DEFAULT_FRAMES: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x005e_ed0f_3a11_0c8d;
/// Ethertype the test's interface (lo) passes unparsed.
const PASSED_ETHERTYPE: u16 = 0x88b5;

/// The fixture policy without its SMTP-rate tenant (a rate depends on the clock).
fn fuzz_policy() -> FixturePolicy {
    let mut p = standard_policy().without(TENANT_RATE);
    p.tenant_mut(TENANT_S).macs.push(MAC_S);
    p
}

/// The same policy as the model reads it.
fn model_policy(p: &FixturePolicy) -> model::Policy {
    model::Policy {
        tenants: p
            .tenants
            .iter()
            .map(|t| model::Tenant {
                index: t.index,
                v4: t.v4.clone(),
                v6: t.v6.clone(),
                macs: t.macs.clone(),
                suspended: t.flags & tenant_flags::SUSPENDED != 0,
                smtp_allow: t.flags & tenant_flags::SMTP_ALLOW != 0,
            })
            .collect(),
        management_v4: p.management_v4.clone(),
        management_v6: p.management_v6.clone(),
        pass_ethertypes: vec![PASSED_ETHERTYPE],
    }
}

fn outcome(e: Expect) -> RunOutcome {
    match e {
        Expect::Pass(model::Slot::Tenant(t)) => RunOutcome::Pass(Slot::Tenant(t)),
        Expect::Pass(model::Slot::NoTenant) => RunOutcome::Pass(Slot::NoTenant),
        Expect::Pass(model::Slot::Malformed) => RunOutcome::Pass(Slot::Malformed),
        Expect::Drop { tenant, reason } => RunOutcome::Drop { tenant, reason },
        Expect::Spoofed => RunOutcome::Spoofed,
        Expect::MalformedDrop => RunOutcome::MalformedDrop,
        Expect::UnparsedDrop => RunOutcome::UnparsedDrop,
    }
}

/// The frame generator: a grammar of plausible frames, then mutations.
struct Gen {
    rng: XorShift,
}

impl Gen {
    fn chance(&mut self, n: u64) -> bool {
        self.rng.below(n) == 0
    }

    fn mac(&mut self) -> Mac {
        let r = self.rng.next() as u8;
        self.rng.pick(&[
            MAC_M,
            MAC_M2,
            MAC_S,
            MAC_A,
            MAC_B,
            SRC_MAC,
            [2, r, 0, 0, 0, r],
        ])
    }

    fn v4(&mut self) -> [u8; 4] {
        let r = self.rng.next() as u32;
        self.rng
            .pick(&[
                A,
                B,
                H,
                M,
                S,
                MAIL,
                P,
                U,
                MGMT,
                MGMT_BELOW,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                Ipv4Addr::new(224, 0, 0, 22),
                Ipv4Addr::new(169, 254, 1, 1),
                Ipv4Addr::from(r),
            ])
            .octets()
    }

    fn v6(&mut self) -> [u8; 16] {
        let r = u128::from(self.rng.next()) << 64 | u128::from(self.rng.next());
        self.rng
            .pick(&[
                A6,
                B6,
                H6,
                HB6,
                M6,
                S6,
                MAIL6,
                U6,
                MGMT6,
                MGMT6_NEXT,
                LL6,
                LL6_M,
                LL6_LAST,
                Ipv6Addr::UNSPECIFIED,
                ALL_NODES6,
                MLDV2_ROUTERS6,
                solicited_node(A6),
                solicited_node(S6),
                Ipv6Addr::from(r),
            ])
            .octets()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.next() as u8).collect()
    }

    /// A port, often a mail port.
    fn port(&mut self) -> u16 {
        let r = self.rng.next() as u16;
        self.rng.pick(&[25, 465, 587, 443, 53, 80, r])
    }

    fn tcp(&mut self) -> Vec<u8> {
        let mut h = vec![0; 20];
        h[0..2].copy_from_slice(&self.port().to_be_bytes());
        h[2..4].copy_from_slice(&self.port().to_be_bytes());
        h[12] = self.rng.byte(&[0x50, 0x50, 0x60, 0xf0, 0x40]);
        h[13] = self.rng.byte(&[0x02, 0x12, 0x10, 0x04, 0x18, 0x11]);
        if h[12] > 0x50 && h[12] != 0xff {
            h.resize(usize::from(h[12] >> 4) * 4, 1);
        }
        let n = self.rng.below(40) as usize;
        h.extend(self.bytes(n));
        h
    }

    fn udp(&mut self) -> Vec<u8> {
        let mut h = vec![0; 8];
        h[0..2].copy_from_slice(&self.port().to_be_bytes());
        h[2..4].copy_from_slice(&self.port().to_be_bytes());
        let n = self.rng.below(60) as usize;
        h.extend(self.bytes(n));
        h
    }

    /// An ND or other ICMPv6 message (type, code, body, options).
    fn icmp6(&mut self) -> Vec<u8> {
        let ty = self.rng.byte(&[133, 134, 135, 136, 137, 128, 129, 1, 143]);
        let code = self.rng.byte(&[0, 0, 0, 1]);
        let body = match ty {
            133 => 8,
            134 => 16,
            135 | 136 => 24,
            137 => 40,
            _ => 8,
        };
        let mut m = vec![ty, code];
        let n = body - 2;
        m.extend(self.bytes(n));
        if matches!(ty, 135 | 136) {
            let target = self.v6();
            m[8..24].copy_from_slice(&target);
        }
        for _ in 0..self.rng.below(4) {
            match self.rng.below(6) {
                0 | 1 => {
                    let mac = self.mac();
                    m.extend([self.rng.pick(&[1, 2]), 1]);
                    m.extend(mac);
                }
                2 => m.extend([14, 1, 1, 2, 3, 4, 5, 6]),
                3 => m.extend([1, 0, 0, 0, 0, 0, 0, 0]),
                4 => {
                    let units = self.rng.pick(&[2u8, 4, 8, 20]);
                    m.extend([200, units]);
                    let n = usize::from(units) * 8 - 2;
                    m.extend(self.bytes(n));
                }
                _ => {
                    let n = self.rng.below(100) as usize;
                    m.extend(self.bytes(n));
                }
            }
        }
        m
    }

    /// ICMP(v6) unreachable quoting an inner IPv4 or IPv6 header and ports.
    fn unreachable(&mut self, v6: bool) -> Vec<u8> {
        let mut m = vec![
            if v6 { 1 } else { 3 },
            self.rng.byte(&[3, 1, 13]),
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        if v6 {
            m.push(0x60);
            m.extend([0; 5]);
            m.push(self.rng.byte(&[6, 17]));
            m.push(64);
            m.extend(self.v6());
            m.extend(self.v6());
        } else {
            m.extend([
                0x45,
                0,
                0,
                40,
                0,
                0,
                0,
                0,
                64,
                self.rng.byte(&[6, 17]),
                0,
                0,
            ]);
            m.extend(self.v4());
            m.extend(self.v4());
        }
        m.extend(self.port().to_be_bytes());
        m.extend(self.port().to_be_bytes());
        m
    }

    fn ipv4(&mut self) -> Vec<u8> {
        let options = if self.chance(5) {
            self.rng.below(11) as usize
        } else {
            0
        };
        let ihl = 5 + options;
        let proto = self.rng.byte(&[6, 6, 17, 17, 1, 47, 58]);
        let l4 = match proto {
            6 => self.tcp(),
            17 => self.udp(),
            1 if self.chance(2) => self.unreachable(false),
            1 => {
                let mut m = vec![8, 0, 0, 0, 0, 1, 0, 1];
                let n = self.rng.below(30) as usize;
                m.extend(self.bytes(n));
                m
            }
            _ => {
                let n = self.rng.below(40) as usize;
                self.bytes(n)
            }
        };
        let mut h = vec![0x40 | ihl as u8, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h.extend(self.v4());
        h.extend(self.v4());
        h.extend(self.bytes(options * 4));
        if self.chance(6) {
            // A fragment: later ones carry no L4 header.
            let off: u16 = self.rng.pick(&[0x2000, 0x0001, 0x2010, 0x1fff]);
            h[6..8].copy_from_slice(&off.to_be_bytes());
        }
        let total = (h.len() + l4.len()) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend(l4);
        h
    }

    fn ipv6(&mut self) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, 0, self.rng.byte(&[255, 255, 64, 1])];
        h.extend(self.v6());
        h.extend(self.v6());
        // An extension chain: (type, bytes).
        let mut chain: Vec<(u8, Vec<u8>)> = Vec::new();
        for _ in 0..self.rng.pick(&[0u64, 0, 0, 1, 2, 3, 5, 6, 7]) {
            let ty = self.rng.pick(&[0u8, 43, 44, 51, 60]);
            let body = match ty {
                44 => {
                    let off: u16 = self.rng.pick(&[0, 0, 1, 8, 0xfff8]);
                    let mut b = vec![0; 8];
                    b[2..4].copy_from_slice(&off.to_be_bytes());
                    b
                }
                51 => {
                    let len = self.rng.pick(&[1u8, 4]);
                    let mut b = vec![0; (usize::from(len) + 2) * 4];
                    b[1] = len;
                    b
                }
                _ => {
                    let len = self.rng.pick(&[0u8, 0, 1, 3]);
                    let mut b = vec![0; (usize::from(len) + 1) * 8];
                    b[1] = len;
                    b
                }
            };
            chain.push((ty, body));
        }
        let proto = self.rng.byte(&[58, 58, 6, 17, 59]);
        let l4 = match proto {
            58 if self.chance(4) => self.unreachable(true),
            58 => self.icmp6(),
            6 => self.tcp(),
            17 => self.udp(),
            _ => Vec::new(),
        };
        // Link the chain: the fixed header names the first, each the next.
        let mut next = proto;
        for (ty, body) in chain.iter_mut().rev() {
            body[0] = next;
            next = *ty;
        }
        h[6] = next;
        let mut payload: Vec<u8> = chain.into_iter().flat_map(|(_, b)| b).collect();
        payload.extend(l4);
        let len = payload.len() as u16;
        h[4..6].copy_from_slice(&len.to_be_bytes());
        h.extend(payload);
        h
    }

    fn arp(&mut self) -> Vec<u8> {
        let htype: u16 = self.rng.pick(&[1, 1, 1, 6, 0x0100]);
        let mut a = htype.to_be_bytes().to_vec();
        a.extend(if self.chance(10) {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        });
        a.extend(if self.chance(10) { [6, 16] } else { [6, 4] });
        a.extend([0, self.rng.byte(&[1, 2, 1, 2, 3])]);
        a.extend(self.mac());
        a.extend(self.v4());
        a.extend(self.mac());
        a.extend(self.v4());
        a
    }

    /// One frame: Ethernet, 0-3 tags, a network layer; then perhaps mutated.
    fn frame(&mut self) -> Vec<u8> {
        let dst = self.mac();
        let src = self.mac();
        let mut f = dst.to_vec();
        f.extend(src);
        for _ in 0..self.rng.pick(&[0u64, 0, 0, 0, 1, 1, 2, 2, 3]) {
            let tpid: u16 = self.rng.pick(&[0x8100, 0x88a8]);
            f.extend(tpid.to_be_bytes());
            f.extend((self.rng.next() as u16 & 0x0fff).to_be_bytes());
        }
        let (et, l3): (u16, Vec<u8>) = match self.rng.below(10) {
            0..=3 => (0x0800, self.ipv4()),
            4..=6 => (0x86dd, self.ipv6()),
            7 => (0x0806, self.arp()),
            _ => {
                let r = self.rng.next() as u16;
                let et = self
                    .rng
                    .pick(&[0x88cc, PASSED_ETHERTYPE, 0x0026, 0x8847, r]);
                let n = self.rng.below(60) as usize;
                (et, self.bytes(n))
            }
        };
        f.extend(et.to_be_bytes());
        let l3_at = f.len();
        f.extend(l3);
        self.mutate(&mut f, l3_at);
        if f.len() < 14 {
            f.resize(14, 0);
        }
        f
    }

    fn mutate(&mut self, f: &mut Vec<u8>, l3: usize) {
        if self.chance(4) {
            // Padding to a minimum frame, or a trailer.
            if self.chance(2) {
                if f.len() < 60 {
                    f.resize(60, 0);
                }
            } else {
                let n = 1 + self.rng.below(120) as usize;
                f.extend(self.bytes(n));
            }
        }
        if self.chance(6) {
            let at = 14 + self.rng.below(f.len().saturating_sub(13) as u64) as usize;
            f.truncate(at);
        }
        if self.chance(6) {
            for _ in 0..1 + self.rng.below(3) {
                let at = self.rng.below(f.len() as u64) as usize;
                f[at] ^= 1 << self.rng.below(8);
            }
        }
        if self.chance(8) && f.len() >= l3 + 6 {
            // A length field rewritten (IPv4 total length or IPv6 payload length).
            let v = self.rng.pick(&[0u16, 1, 19, 20, 40, 1000, 0xffff]);
            let at = if f[l3] >> 4 == 6 { l3 + 4 } else { l3 + 2 };
            f[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Runs `frames` frames from `seed` through the four programs and the model. Returns
/// the number of differences (each printed).
fn differential(frames: u64, seed: u64) -> usize {
    let policy = fuzz_policy();
    let model = model_policy(&policy);
    let mut dp = TestDataplane::with_policy(&policy).expect("loading the dataplane");
    let mut config = IfaceConfig::default();
    config.pass_ethertypes[0] = PASSED_ETHERTYPE;
    {
        let mut ifaces: BpfHashMap<&mut MapData, u32, IfaceConfig> =
            BpfHashMap::try_from(dp.ebpf.map_mut(map::IFACES).expect("IFACES"))
                .expect("a hash map");
        ifaces
            .insert(nix_ifindex("lo"), config, 0)
            .expect("writing IFACES");
    }
    let mut gen = Gen {
        rng: XorShift(seed | 1),
    };
    let mut differences = Vec::new();
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    let mut done = 0u64;
    let started = std::time::Instant::now();
    while done < frames && differences.len() < 20 {
        let n = (frames - done).min(BATCH as u64) as usize;
        let batch: Vec<Vec<u8>> = (0..n).map(|_| gen.frame()).collect();
        let before = dp.snapshot().expect("reading counters");
        let mut want: BTreeMap<Counter, (i128, i128)> = BTreeMap::new();
        for (i, frame) in batch.iter().enumerate() {
            for prog in Prog::ALL {
                let refused = !prog.is_xdp() && skb_test_run_refuses(frame);
                let e = outcome(model::expect(&model, frame, prog.dir() == direction::OUT));
                let got = dp.run(prog, frame);
                match (got, refused) {
                    (Ok(r), false) if r == prog.retval(e.verdict()) => {
                        for (c, p, b) in e.changes(prog.dir(), frame.len(), 1) {
                            let w = want.entry(c).or_default();
                            w.0 += p;
                            w.1 += b;
                        }
                        *by_outcome.entry(format!("{prog} {e}")).or_default() += 1;
                    }
                    (Err(err), true) if errno(&err) == Some(libc::EINVAL) => {}
                    (got, _) => differences.push(format!(
                        "frame {} {frame:02x?} [{prog}]: kernel {}, model {e}{}",
                        done + i as u64,
                        match got {
                            Ok(r) => format!("returned {r:#x}"),
                            Err(err) => run_error(&err),
                        },
                        if refused {
                            " (kernel should refuse the run)"
                        } else {
                            ""
                        },
                    )),
                }
            }
        }
        let after = dp.snapshot().expect("reading counters");
        let got: BTreeMap<Counter, (i128, i128)> = changes(&before, &after)
            .into_iter()
            .map(|(c, p, b)| (c, (p, b)))
            .collect();
        want.retain(|_, v| *v != (0, 0));
        if got != want && differences.is_empty() {
            // Name the frames: run the batch again one by one with snapshots.
            for (i, frame) in batch.iter().enumerate() {
                for prog in Prog::ALL {
                    if !prog.is_xdp() && skb_test_run_refuses(frame) {
                        continue;
                    }
                    let e = outcome(model::expect(&model, frame, prog.dir() == direction::OUT));
                    let before = dp.snapshot().expect("reading counters");
                    let _ = dp.run(prog, frame);
                    let after = dp.snapshot().expect("reading counters");
                    let ch = changes(&before, &after);
                    if ch != e.changes(prog.dir(), frame.len(), 1) {
                        differences.push(format!(
                            "frame {} {frame:02x?} [{prog}]: counted {}, model {e}",
                            done + i as u64,
                            show(&ch)
                        ));
                    }
                }
            }
            if differences.is_empty() {
                differences.push(format!(
                    "batch from frame {done}: counters differ only in aggregate: got {got:?}, want {want:?}"
                ));
            }
        }
        done += n as u64;
        if done % 1_000_000 < BATCH as u64 {
            eprintln!(
                "differential: {done} of {frames} frames, {} differences, {:.0} s",
                differences.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "differential: seed {seed:#x}, {done} frames x 4 programs in {:.1} s, {} differences",
        started.elapsed().as_secs_f64(),
        differences.len()
    );
    for (o, n) in &by_outcome {
        eprintln!("  {n:>9}  {o}");
    }
    for d in &differences {
        eprintln!("DIFFERENCE {d}");
    }
    // The frames must reach every kind of outcome, or the comparison proves little.
    let kinds = [
        "pass, tenant",
        "NO_TENANT",
        "MALFORMED",
        "SPOOFED",
        "UNPARSED",
        "suspended",
        "spoof_arp",
        "spoof_ip",
        "spoof_mac",
        "smtp",
        "unparsed",
    ];
    if done >= 50_000 {
        for k in kinds {
            assert!(
                by_outcome.keys().any(|o| o.contains(k)),
                "no frame reached an outcome with {k:?}: {by_outcome:?}"
            );
        }
    }
    differences.len()
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// The programs agree with the reference model on verdict and counters for every
/// frame of the run (200,000 by default, four programs each).
#[test]
fn random_and_mutated_frames_get_the_reference_models_verdict_and_counters() {
    let frames = env_u64("WARDEN_FUZZ_FRAMES", DEFAULT_FRAMES);
    let seed = env_u64("WARDEN_FUZZ_SEED", DEFAULT_SEED);
    let differences = differential(frames, seed);
    assert_eq!(
        differences, 0,
        "{differences} differences from the model (seed {seed:#x}; see DIFFERENCE lines)"
    );
}
