//! The programs' events: the ring buffer ([`map::EVENTS`](warden_common::map::EVENTS))
//! and the attempt log ([`super::log`]), decoded into [`KernelEvent`]s and read without
//! blocking the runtime.
//!
//! Decoding is pure ([`decode_event`]) and checks every field it turns into a typed
//! value, so a record from a mismatched object is an error, never a wrong fact. The
//! reader counts and skips such records: one bad record must not stop detection.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use warden_common::{
    direction,
    facts::{class, event, outcome, Event, SampleEvent, FLOOD_EPOCH_SHIFT, SAMPLE_BYTES},
    family, proto, reason,
};

use super::log::AttemptLog;
use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::{Claim, Contact, Direction, FloodClass, Outcome, Proto};
use warden_policy::Kind;

/// One decoded ring-buffer record. `at` is CLOCK_MONOTONIC time (the programs'
/// `bpf_ktime_get_coarse_ns`; compare with [`monotonic_now`]).
#[derive(Clone, Debug, PartialEq)]
pub enum KernelEvent {
    /// [`event::ATTEMPT`]: a tenant's first contact with a remote endpoint.
    Attempt(Contact),
    /// [`event::OUTCOME`]: the answer to an earlier attempt with the same endpoints
    /// ([`Outcome::Success`], [`Outcome::Refused`] or [`Outcome::Unreachable`]); or an
    /// [`event::ATTEMPT`] Warden's enforcement dropped ([`Outcome::Dropped`], `at` the
    /// attempt's time: no answer will come).
    Outcome {
        /// The attempt answered (`at` is when the answer came).
        contact: Contact,
        /// How it was answered.
        outcome: Outcome,
    },
    /// [`event::ACCEPTED`]: the tenant accepted a connection from a new remote
    /// (`local`/`local_port` is the listening side).
    Accepted(Contact),
    /// [`event::FLOOD`]: a flood estimate crossed its threshold in this flood epoch.
    Flood(FloodEvent),
    /// [`event::SAMPLE`]: a captured frame.
    Sample(SampleFrame),
    /// [`event::SPOOF`]: what a spoofed frame of the tenant claimed.
    Spoof(Claim),
    /// [`event::SMTP`]: a connection of the tenant to an SMTP port (every one, not only
    /// first contacts).
    SmtpConnection(Contact),
}

impl KernelEvent {
    /// The slot of the tenant the event is about.
    pub fn slot(&self) -> TenantSlot {
        match self {
            KernelEvent::Attempt(c) | KernelEvent::Accepted(c) => c.slot,
            KernelEvent::Outcome { contact, .. } => contact.slot,
            KernelEvent::Flood(f) => f.slot,
            KernelEvent::Sample(s) => s.slot,
            KernelEvent::Spoof(c) => c.slot,
            KernelEvent::SmtpConnection(c) => c.slot,
        }
    }

    /// When the programs saw it (CLOCK_MONOTONIC).
    pub fn at(&self) -> Duration {
        match self {
            KernelEvent::Attempt(c) | KernelEvent::Accepted(c) => c.at,
            KernelEvent::Outcome { contact, .. } => contact.at,
            KernelEvent::Flood(f) => f.at,
            KernelEvent::Sample(s) => s.at,
            KernelEvent::Spoof(c) => c.at,
            KernelEvent::SmtpConnection(c) => c.at,
        }
    }
}

/// The flood class of a [`class`] number.
pub fn flood_class(raw: u8) -> Option<FloodClass> {
    Some(match raw {
        class::SYN => FloodClass::Syn,
        class::PACKETS => FloodClass::Packets,
        class::REPLY => FloodClass::Reply,
        class::IN_PACKETS => FloodClass::InPackets,
        class::IN_BYTES => FloodClass::InBytes,
        _ => return None,
    })
}

/// A flood estimate that crossed its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FloodEvent {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// When it crossed (CLOCK_MONOTONIC).
    pub at: Duration,
    /// Which way the flood goes.
    pub dir: Direction,
    /// Out: the victim; in: the attacked tenant address.
    pub addr: IpAddr,
    /// What was counted.
    pub class: FloodClass,
    /// The estimate in this flood epoch so far (packets, or bytes for
    /// [`FloodClass::InBytes`]).
    pub value: u64,
    /// The per-epoch threshold it went above.
    pub threshold: u64,
}

/// Nanoseconds of one flood epoch (2^30 ns).
const FLOOD_EPOCH_NS: f64 = (1u64 << FLOOD_EPOCH_SHIFT) as f64;

impl FloodEvent {
    /// `value` per second over one flood epoch (2^30 ns). The estimate was taken when
    /// it crossed, part way through the epoch, so this is a lower bound of the epoch's
    /// rate.
    pub fn per_second(&self) -> f64 {
        self.value as f64 * 1e9 / FLOOD_EPOCH_NS
    }

    /// `threshold` per second over one flood epoch.
    pub fn threshold_per_second(&self) -> f64 {
        self.threshold as f64 * 1e9 / FLOOD_EPOCH_NS
    }
}

/// A captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleFrame {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// When it was captured (CLOCK_MONOTONIC).
    pub at: Duration,
    /// Which way the frame went.
    pub dir: Direction,
    /// The frame's length on the wire (no FCS).
    pub orig_len: u32,
    /// The frame's first bytes (at most [`SAMPLE_BYTES`]), from the Ethernet header.
    pub data: Vec<u8>,
}

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than {need} bytes (kind {kind})")]
    Short { kind: u32, len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("event kind {kind}: unknown address family {family}")]
    Family { kind: u32, family: u8 },
    #[error("event kind {kind}: unknown IP protocol {proto}")]
    Proto { kind: u32, proto: u8 },
    #[error("event kind {kind}: unknown direction {dir}")]
    Direction { kind: u32, dir: u32 },
    #[error("outcome event: unknown outcome {0}")]
    Outcome(u8),
    #[error("flood event: unknown class {0}")]
    Class(u8),
    #[error("spoof event: unknown drop reason {0}")]
    SpoofReason(u8),
    #[error("flood event: class {class:?} counts {expected:?} traffic, the event says {got:?}")]
    ClassDirection {
        class: FloodClass,
        expected: Direction,
        got: Direction,
    },
    #[error("sample event: {cap_len} captured bytes, at most {max} fit")]
    CapLen { cap_len: u32, max: usize },
}

/// Decodes one ring-buffer record (an [`Event`] or a [`SampleEvent`]). Extra bytes after
/// the record's structure are ignored (the ring rounds records up to 8 bytes).
pub fn decode_event(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let kind = match bytes.get(..4) {
        Some(k) => u32::from_ne_bytes([k[0], k[1], k[2], k[3]]),
        None => {
            return Err(DecodeError::Short {
                kind: 0,
                len: bytes.len(),
                need: 4,
            })
        }
    };
    match kind {
        event::ATTEMPT | event::OUTCOME | event::ACCEPTED | event::FLOOD => {
            let e: Event = read_record(kind, bytes)?;
            decode_fact(&e)
        }
        event::SAMPLE => decode_sample(kind, bytes),
        event::SPOOF => decode_spoof(&read_record(kind, bytes)?),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Reads a `T` from the start of `bytes`, which must be long enough.
fn read_record<T: aya::Pod>(kind: u32, bytes: &[u8]) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: `bytes` holds at least size_of::<T>() bytes (checked above), the read is
    // unaligned, and T is Pod: plain integers for which every bit pattern is valid.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes an attempt-log entry in its [`Event`] form (see [`super::log::event_of`]):
/// only [`event::ATTEMPT`], [`event::OUTCOME`], [`event::ACCEPTED`] and [`event::SMTP`]
/// belong in the log.
pub fn decode_log_event(e: &Event) -> Result<KernelEvent, DecodeError> {
    match e.kind {
        event::ATTEMPT | event::OUTCOME | event::ACCEPTED | event::SMTP => decode_fact(e),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_fact(e: &Event) -> Result<KernelEvent, DecodeError> {
    let dir = decode_dir(e.kind, u32::from(e.dir))?;
    let local = decode_addr(e.kind, e.family, &e.local)?;
    let remote = decode_addr(e.kind, e.family, &e.remote)?;
    let at = Duration::from_nanos(e.at);
    if e.kind == event::FLOOD {
        let class = flood_class(e.detail).ok_or(DecodeError::Class(e.detail))?;
        if class.direction() != dir {
            return Err(DecodeError::ClassDirection {
                class,
                expected: class.direction(),
                got: dir,
            });
        }
        return Ok(KernelEvent::Flood(FloodEvent {
            slot: TenantSlot(e.tenant),
            at,
            dir,
            addr: match dir {
                Direction::Out => remote,
                Direction::In => local,
            },
            class,
            value: e.value,
            threshold: e.threshold,
        }));
    }
    let proto = match e.proto {
        proto::TCP => Proto::Tcp,
        proto::UDP => Proto::Udp,
        proto::ICMP | proto::ICMPV6 => Proto::Icmp,
        proto => {
            return Err(DecodeError::Proto {
                kind: e.kind,
                proto,
            })
        }
    };
    let contact = Contact {
        slot: TenantSlot(e.tenant),
        at,
        proto,
        local,
        local_port: e.local_port,
        remote,
        remote_port: e.remote_port,
    };
    Ok(match (e.kind, e.detail) {
        (event::ATTEMPT, 0) => KernelEvent::Attempt(contact),
        // Warden's own enforcement dropped the attempt: its outcome is known at once.
        (event::ATTEMPT, outcome::DROPPED) => KernelEvent::Outcome {
            contact,
            outcome: Outcome::Dropped,
        },
        (event::ATTEMPT, other) => return Err(DecodeError::Outcome(other)),
        (event::ACCEPTED, _) => KernelEvent::Accepted(contact),
        (event::SMTP, _) => KernelEvent::SmtpConnection(contact),
        _ => KernelEvent::Outcome {
            contact,
            outcome: match e.detail {
                outcome::SUCCESS => Outcome::Success,
                outcome::REFUSED => Outcome::Refused,
                outcome::UNREACHABLE => Outcome::Unreachable,
                other => return Err(DecodeError::Outcome(other)),
            },
        },
    })
}

/// A SPOOF record: the claimed address in `local`, the source MAC in `value`.
fn decode_spoof(e: &Event) -> Result<KernelEvent, DecodeError> {
    let kind = match usize::from(e.detail) {
        reason::SPOOF_IP => Kind::SpoofIp,
        reason::SPOOF_ARP => Kind::SpoofArp,
        reason::SPOOF_MAC => Kind::SpoofMac,
        _ => return Err(DecodeError::SpoofReason(e.detail)),
    };
    let m = e.value.to_le_bytes();
    Ok(KernelEvent::Spoof(Claim {
        slot: TenantSlot(e.tenant),
        at: Duration::from_nanos(e.at),
        kind,
        addr: decode_addr(e.kind, e.family, &e.local)?,
        mac: [m[0], m[1], m[2], m[3], m[4], m[5]],
    }))
}

/// The fixed part of a [`SampleEvent`] before its frame bytes.
const SAMPLE_HEADER: usize = std::mem::size_of::<SampleEvent>() - SAMPLE_BYTES;

fn decode_sample(kind: u32, bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    if bytes.len() < SAMPLE_HEADER {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            need: SAMPLE_HEADER,
        });
    }
    let word =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let slot = TenantSlot(word(4));
    let at = u64::from_ne_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    let (orig_len, cap_len, dir) = (word(16), word(20), word(24));
    if cap_len as usize > SAMPLE_BYTES {
        return Err(DecodeError::CapLen {
            cap_len,
            max: SAMPLE_BYTES,
        });
    }
    // The programs may send only the captured bytes rather than the whole struct.
    let need = SAMPLE_HEADER + cap_len as usize;
    let data = bytes
        .get(SAMPLE_HEADER..need)
        .ok_or(DecodeError::Short {
            kind,
            len: bytes.len(),
            need,
        })?
        .to_vec();
    Ok(KernelEvent::Sample(SampleFrame {
        slot,
        at: Duration::from_nanos(at),
        dir: decode_dir(kind, dir)?,
        orig_len,
        data,
    }))
}

fn decode_dir(kind: u32, dir: u32) -> Result<Direction, DecodeError> {
    match dir {
        direction::OUT => Ok(Direction::Out),
        direction::IN => Ok(Direction::In),
        dir => Err(DecodeError::Direction { kind, dir }),
    }
}

fn decode_addr(kind: u32, family: u8, a: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        family::V4 => Ok(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        family::V6 => Ok(IpAddr::V6(Ipv6Addr::from(*a))),
        family => Err(DecodeError::Family { kind, family }),
    }
}

/// CLOCK_MONOTONIC now: the clock of the programs' timestamps, of
/// [`BlockValue::until_ns`](warden_common::facts::BlockValue) and of
/// [`TenantRuntime::throttle_until_ns`](warden_common::facts::TenantRuntime).
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own. CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail with valid arguments; a zero result
    // would only make expiries look due early, never late.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Reads [`map::EVENTS`](warden_common::map::EVENTS) (taken from the dataplane with
/// [`Dataplane::event_reader`](super::Dataplane::event_reader)).
///
/// The ring is registered with the tokio reactor on the first [`read`](Self::read),
/// so the reader can be made outside the runtime and moved into a task.
pub struct EventReader {
    state: ReaderState,
    /// The attempt log, read every [`LOG_POLL`] at most (it wakes nobody).
    log: Option<AttemptLog>,
    decode_errors: u64,
    records: u64,
}

/// How often the reader looks into the attempt log while the ring is quiet: an attempt
/// reaches the detectors at most this late.
pub const LOG_POLL: Duration = Duration::from_millis(10);

enum ReaderState {
    /// Not yet registered with the reactor.
    Ring(RingBuf<MapData>),
    Registered(AsyncFd<RingBuf<MapData>>),
    /// Only while [`EventReader::register`] moves the ring.
    Taking,
}

impl EventReader {
    pub(super) fn new(ring: RingBuf<MapData>, log: Option<AttemptLog>) -> Self {
        Self {
            state: ReaderState::Ring(ring),
            log,
            decode_errors: 0,
            records: 0,
        }
    }

    /// Waits until the ring is readable or the attempt log has entries (or `max_wait`
    /// passes), then takes up to `max` records into `out`, the log's first (an attempt
    /// is logged before its answer can come), decoding each; undecodable records are
    /// counted ([`decode_errors`](Self::decode_errors)) and skipped, never fatal.
    ///
    /// Returns at once when records are already waiting. Returns with nothing added
    /// when `max_wait` passes. Must be called within a tokio runtime.
    pub async fn read(
        &mut self,
        out: &mut Vec<KernelEvent>,
        max: usize,
        max_wait: Duration,
    ) -> io::Result<()> {
        if max == 0 {
            return Ok(());
        }
        self.register()?;
        let Self {
            state,
            log,
            decode_errors,
            records,
        } = self;
        let ReaderState::Registered(fd) = state else {
            return Err(io::Error::other(
                "the event ring is not registered with the runtime",
            ));
        };
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            // Drain before waiting: the kernel only signals when the consumer had caught
            // up, so records left from an earlier call bring no new wake-up.
            let (logged, log_errors) = match log {
                Some(log) => log.drain(out, max),
                None => (0, 0),
            };
            let room = max.saturating_sub(logged as usize);
            let (taken, errors) = drain(fd.get_mut(), out, room);
            *records += logged + taken;
            *decode_errors += log_errors + errors;
            if logged + taken > 0 {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let wake = match log {
                Some(_) => deadline.min(now + LOG_POLL),
                None => deadline,
            };
            let mut guard = match tokio::time::timeout_at(wake, fd.readable_mut()).await {
                // Time to look into the log again, or to return.
                Err(_elapsed) => continue,
                Ok(guard) => guard?,
            };
            // Clearing before draining: a record committed after this point sets the
            // readiness again, so none can be missed.
            guard.clear_ready();
        }
    }

    /// Records that could not be decoded and were skipped, since the reader was made.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Records taken from the ring and the log (decoded or not), since the reader was
    /// made.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Attempt-log entries lost (written over before read), since the reader was made.
    pub fn log_lost(&self) -> u64 {
        self.log.as_ref().map_or(0, AttemptLog::lost)
    }

    /// Registers the ring with the current runtime's reactor (once). A failure keeps
    /// the ring, so a later call can try again.
    fn register(&mut self) -> io::Result<()> {
        let ReaderState::Ring(_) = self.state else {
            return Ok(());
        };
        let ReaderState::Ring(ring) = std::mem::replace(&mut self.state, ReaderState::Taking)
        else {
            return Ok(());
        };
        // SAFETY: the RingBuf owns its map's file descriptor, which stays open and the
        // same for as long as the RingBuf lives, and the AsyncFd owns the RingBuf.
        match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
            Ok(fd) => {
                self.state = ReaderState::Registered(fd);
                Ok(())
            }
            Err(e) => {
                let (ring, cause) = e.into_parts();
                self.state = ReaderState::Ring(ring);
                Err(cause)
            }
        }
    }
}

/// Takes up to `max` records from `ring`, decoding into `out`: (records taken, records
/// that did not decode).
fn drain(ring: &mut RingBuf<MapData>, out: &mut Vec<KernelEvent>, max: usize) -> (u64, u64) {
    let (mut taken, mut errors) = (0, 0);
    while taken < max as u64 {
        let Some(item) = ring.next() else { break };
        taken += 1;
        match decode_event(&item) {
            Ok(e) => out.push(e),
            Err(e) => {
                errors += 1;
                tracing::debug!(error = %e, "skipping an undecodable ring-buffer record");
            }
        }
    }
    (taken, errors)
}

#[cfg(test)]
mod tests;
