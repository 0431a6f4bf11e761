//! Detection facts: what the programs observe for the detectors, and the runtime state
//! the daemon writes back (blocks, blackholes, throttles, packet capture).
//!
//! Every structure here is fixed in size whatever the traffic (design:
//! `docs/detection-design.md`):
//!
//! - [`map::CONTACTS`](crate::map::CONTACTS): a blocked bloom filter of first contacts,
//!   one u64 word per block, tagged with the contact epoch in its high half; a word from
//!   an older epoch counts as empty. Lossy both ways (a race can lose a bit; a full word
//!   can say "seen" for a new key) and self-clearing: nothing to sweep.
//! - [`map::PENDING`](crate::map::PENDING): a direct-mapped table of first-contact
//!   attempts waiting for their answer; a newer attempt overwrites an older one in the
//!   same slot without reading it (the daemon, which sees every attempt, predicts the
//!   slots and counts the overwrites).
//! - [`map::ATTEMPT_LOG`](crate::map::ATTEMPT_LOG): per CPU, a log of the last
//!   [`LOG_SLOTS`] first contacts, their answers, accepted and SMTP connections
//!   ([`LogEntry`]), which the daemon maps into its memory and reads every few
//!   milliseconds. These are the most frequent events, and a log write is a few stores
//!   to memory the CPU owns, where a ring-buffer record takes a lock and positions
//!   shared with all CPUs and the reader. An entry the daemon did not
//!   read before the CPU came round again is lost, and counted by the daemon.
//! - [`map::SKETCH`](crate::map::SKETCH): a count-min sketch (depth [`SKETCH_ROWS`]) of
//!   packets (and inbound bytes) per (tenant, address, class) in the current flood
//!   epoch, epoch-tagged per counter.
//! - [`map::REPORTED`](crate::map::REPORTED): which (tenant, address, class) already
//!   sent its flood event this epoch.
//! - [`map::EVENTS`](crate::map::EVENTS): the ring buffer. Events are sent only on state
//!   changes (a flood crossing, a spoofing claim, a captured sample), charged
//!   to a per-tenant budget ([`EVENT_BUDGET`], bucket [`bucket::EVENTS`](crate::bucket::EVENTS)).
//!   Events over budget and events the ring had no room for are counted apart in
//!   [`fact_counter`]: the first are refused by design and exported as
//!   `warden_events_over_budget_total`, the second are lost and exported (with the
//!   attempt-log entries lost) as `warden_events_lost_total`.

use crate::Rate;

/// Log2 of the number of u64 words in [`map::CONTACTS`](crate::map::CONTACTS) (8 MiB):
/// at 1,000,000 remotes tracked in one contact epoch about one key a word, so a fresh
/// remote finds both its bits set in well under 1% of words (2^18 words, 2 MiB: 5.3%).
pub const CONTACT_BITS: u32 = 20;
/// Words in the contact filter.
pub const CONTACT_WORDS: u32 = 1 << CONTACT_BITS;
/// A contact epoch is `now >> CONTACT_EPOCH_SHIFT` ns (2^36 ns, about 68.7 s): a key not
/// seen in the current epoch is a first contact again.
pub const CONTACT_EPOCH_SHIFT: u32 = 36;

/// Log2 of the slots of [`map::PENDING`](crate::map::PENDING).
pub const PENDING_BITS: u32 = 16;
/// Slots of the pending-attempt table.
pub const PENDING_SLOTS: u32 = 1 << PENDING_BITS;

/// Log2 of the [`LogEntry`] slots per CPU in [`map::ATTEMPT_LOG`](crate::map::ATTEMPT_LOG).
pub const LOG_BITS: u32 = 12;
/// Entries per CPU in the attempt log (256 KiB a CPU). The daemon reads the log every
/// 10 ms, so a CPU may log 409,600 entries a second (first contacts and their answers)
/// before losing any; the event budget allows 2,000 first contacts per tenant.
pub const LOG_SLOTS: u32 = 1 << LOG_BITS;
/// CPUs the attempt log is sized for in the object; the daemon sizes it for the
/// machine's possible CPUs at load ([`log_entries`]).
pub const LOG_DEFAULT_CPUS: u32 = 2;

/// Entries of the attempt log for `cpus` possible CPUs: CPU `c` owns entries
/// `c * LOG_SLOTS .. (c + 1) * LOG_SLOTS`.
pub const fn log_entries(cpus: u32) -> u32 {
    cpus * LOG_SLOTS
}

/// Rows of the count-min sketch.
pub const SKETCH_ROWS: u32 = 2;
/// Log2 of the counters per row.
pub const SKETCH_BITS: u32 = 16;
/// Counters per row.
pub const SKETCH_WIDTH: u32 = 1 << SKETCH_BITS;
/// A flood epoch is `now >> FLOOD_EPOCH_SHIFT` ns (2^30 ns = 1.073741824 s). Per-second
/// thresholds are compiled into counts per flood epoch.
pub const FLOOD_EPOCH_SHIFT: u32 = 30;
/// Bits of a sketch counter holding the count; the rest hold the low bits of the epoch.
pub const SKETCH_COUNT_BITS: u32 = 48;

/// Flood counts are added to the shared sketch in batches of `threshold >>
/// FLOOD_BATCH_SHIFT` units per CPU and key (see [`flood_quantum`]).
pub const FLOOD_BATCH_SHIFT: u32 = 10;
/// Log2 of each CPU's slots of flood counts not yet in the sketch.
pub const FLOOD_LOCAL_BITS: u32 = 12;
/// Each CPU's slots of flood counts not yet in the sketch.
pub const FLOOD_LOCAL_SLOTS: u32 = 1 << FLOOD_LOCAL_BITS;

/// Small thresholds batch up to `threshold >> FLOOD_SMALL_SHIFT` units (1/64)...
pub const FLOOD_SMALL_SHIFT: u32 = 6;
/// ...but no more than this many: the batch of every threshold up to 16,384.
pub const FLOOD_MIN_BATCH: u64 = 16;

/// The batch of a flood class with `threshold`: a packet whose units are below it is
/// first counted in its CPU's slot for the key, and the slot's count goes to the shared
/// sketch once it reaches the batch. The batch is `threshold / 1024`, but at least
/// `min(16, threshold / 64)`: the SYN threshold of the policy defaults (2,000 a second,
/// 2,147 a flood epoch) would otherwise have a batch of 2, and every other SYN of a
/// flood would go to the sketch.
///
/// The sketch so trails the true count by less than a batch per CPU and key: a flood
/// is reported at most `CPUs * batch` units late (with 2 CPUs: 0.2% of thresholds from
/// 16,384 up, at most 32 units below that, 1.5% of the default SYN threshold; at most
/// 1/32 of any threshold). Thresholds below 128 have a batch of 1: every packet counts
/// at once. What a CPU holds when its key goes quiet or the epoch ends is never added:
/// less than a batch, which cannot decide a flood.
#[inline(always)]
pub const fn flood_quantum(threshold: u64) -> u64 {
    let large = threshold >> FLOOD_BATCH_SHIFT;
    let small = threshold >> FLOOD_SMALL_SHIFT;
    let floor = if small < FLOOD_MIN_BATCH {
        small
    } else {
        FLOOD_MIN_BATCH
    };
    if large > floor {
        large
    } else {
        floor
    }
}

/// Log2 of the slots of [`map::REPORTED`](crate::map::REPORTED).
pub const REPORTED_BITS: u32 = 12;
/// Slots of the reported table.
pub const REPORTED_SLOTS: u32 = 1 << REPORTED_BITS;

/// Entries of [`map::BLOCKS`](crate::map::BLOCKS).
pub const MAX_BLOCKS: u32 = 65_536;

/// Bytes of the event ring buffer.
pub const EVENTS_RING_BYTES: u32 = 1 << 22;

/// Bytes of a frame a [`SampleEvent`] carries at most.
pub const SAMPLE_BYTES: usize = 128;

/// The per-tenant event budget: 2,000 events per second, 500 back to back (written into
/// every generation's [`GenConfig::event_budget`](crate::GenConfig)). Answers
/// ([`event::OUTCOME`]) are not charged: each clears the attempt it answers, so there are
/// never more of them than of charged attempts. Flood events are not charged either:
/// one per (tenant, address, class) and epoch, and each needs a threshold's worth of
/// packets.
pub const EVENT_BUDGET: Rate = Rate::from_events_per_second(2_000.0, 500);

/// Event kinds (the first word of every ring-buffer record, [`LogEntry::kind`] of the
/// attempt log's entries).
pub mod event {
    /// A tenant's first contact with a remote endpoint: TCP SYN, UDP datagram (not a
    /// reply), ICMP echo request. [`Event`](super::Event): local = tenant address,
    /// remote = destination, ports, proto.
    pub const ATTEMPT: u32 = 1;
    /// The answer to a pending attempt; `detail` is an [`outcome`](super::outcome).
    /// Written into the attempt log ([`LogEntry`](super::LogEntry)), not the ring: as
    /// frequent as the attempts it answers.
    pub const OUTCOME: u32 = 2;
    /// The tenant accepted an inbound connection from a remote it had not accepted from
    /// in this contact epoch (a SYN-ACK it sent): local = tenant address and port.
    pub const ACCEPTED: u32 = 3;
    /// A flood estimate crossed (went strictly above) its threshold in this flood epoch; `detail` is the
    /// [`class`](super::class), `value` the estimate so far, `threshold` the per-epoch
    /// threshold. Out: remote = victim; in: local = attacked tenant address.
    pub const FLOOD: u32 = 4;
    /// A captured frame ([`SampleEvent`](super::SampleEvent)).
    pub const SAMPLE: u32 = 5;
    /// A from-tenant frame dropped for spoofing, the first in this contact epoch with its
    /// (reason, claimed address, source MAC): `detail` is the drop
    /// [`reason`](crate::reason) (`SPOOF_IP`, `SPOOF_ARP` or `SPOOF_MAC`), local = the
    /// address the frame claims (its source, the ARP sender or the advertised ND
    /// target), `value` = the frame's source MAC (its 6 bytes in the low bytes, first
    /// byte lowest). Charged to the event budget.
    pub const SPOOF: u32 = 6;
    /// A from-tenant SYN to an SMTP port ([`SMTP_PORTS`](crate::SMTP_PORTS)) of a tenant
    /// that may send mail: every connection, not only first contacts, its
    /// retransmissions once (in the attempt log, like ATTEMPT; `detail` is
    /// [`outcome::DROPPED`](super::outcome::DROPPED) when Warden's SMTP rate dropped it).
    pub const SMTP: u32 = 7;
}

/// [`Event::detail`] of an [`event::OUTCOME`].
pub mod outcome {
    /// SYN-ACK, UDP reply, echo reply.
    pub const SUCCESS: u8 = 1;
    /// TCP RST.
    pub const REFUSED: u8 = 2;
    /// ICMP / ICMPv6 destination unreachable quoting the attempt.
    pub const UNREACHABLE: u8 = 3;
    /// Warden's own enforcement dropped the attempt (a block, the SMTP policy, the plan
    /// or a throttle): [`LogEntry::detail`] of an [`event::ATTEMPT`](super::event::ATTEMPT)
    /// whose packet never left, so no answer will come. Never in an OUTCOME.
    pub const DROPPED: u8 = 4;
}

/// Flood classes: [`Event::detail`] of an [`event::FLOOD`] and part of the sketch key.
pub mod class {
    /// Out: TCP SYN without ACK (threshold `syn_pps`).
    pub const SYN: u8 = 1;
    /// Out: UDP, ICMP and other non-TCP packets (threshold `pps`).
    pub const PACKETS: u8 = 2;
    /// Out: reflection-sized UDP replies from an amplifier's service port (threshold
    /// `syn_pps`).
    pub const REPLY: u8 = 3;
    /// In: unsolicited packets at one tenant address (SYN, UDP, ICMP, other non-TCP;
    /// threshold `pps`).
    pub const IN_PACKETS: u8 = 4;
    /// In: bytes of the same packets (threshold `bps / 8`).
    pub const IN_BYTES: u8 = 5;
}

/// UDP source ports of services abused as amplifiers: a from-tenant UDP datagram from
/// one of these, larger than [`REFLECTION_MIN_BYTES`], is a reflection-sized reply.
pub const AMPLIFIER_PORTS: [u16; 10] = [19, 53, 123, 161, 389, 1900, 3702, 5353, 11211, 27015];
/// Frame bytes from which an amplifier's reply counts as reflection-sized.
pub const REFLECTION_MIN_BYTES: u64 = 512;

/// One ring-buffer record (all kinds but [`event::SAMPLE`]). Addresses are in network
/// order; an IPv4 address fills the first 4 bytes. Ports are host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// An [`event`] kind.
    pub kind: u32,
    /// Dense tenant index.
    pub tenant: u32,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC, coarse).
    pub at: u64,
    /// The tenant-side address.
    pub local: [u8; 16],
    /// The other side's address.
    pub remote: [u8; 16],
    /// 4 or 6.
    pub family: u8,
    /// IP protocol (6, 17, 1, 58).
    pub proto: u8,
    /// OUTCOME: an [`outcome`]; FLOOD: a [`class`]; else 0.
    pub detail: u8,
    /// A [`direction`](crate::direction) (FLOOD: which way the flood goes).
    pub dir: u8,
    /// Tenant-side port (host order; ICMP: 0).
    pub local_port: u16,
    /// Remote port (host order; ICMP: 0).
    pub remote_port: u16,
    /// FLOOD: the estimate so far in this epoch.
    pub value: u64,
    /// FLOOD: the per-epoch threshold it crossed.
    pub threshold: u64,
}

/// A captured frame: the first [`SAMPLE_BYTES`] bytes of a frame of a tenant the
/// daemon asked samples of ([`TenantRuntime::capture`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleEvent {
    /// [`event::SAMPLE`].
    pub kind: u32,
    /// Dense tenant index.
    pub tenant: u32,
    /// `bpf_ktime_get_coarse_ns`.
    pub at: u64,
    /// The frame's length.
    pub orig_len: u32,
    /// Bytes of `data` filled.
    pub cap_len: u32,
    /// The direction the frame went.
    pub dir: u32,
    pub _pad: u32,
    /// The frame, from the Ethernet header.
    pub data: [u8; SAMPLE_BYTES],
}

/// Runtime state of one tenant, written by the daemon, index = dense tenant index
/// ([`map::TENANT_RUNTIME`](crate::map::TENANT_RUNTIME)). Not part of a generation:
/// it follows detections, not the policy file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantRuntime {
    /// [`runtime_flags`] bits.
    pub flags: u32,
    /// Frames still to capture as [`SampleEvent`]s; the programs count it down (a race
    /// between CPUs may capture one or two more).
    pub capture: i32,
    /// With [`runtime_flags::THROTTLE`]: the reduced plan per direction, used instead
    /// of the policy's plan (the daemon writes the lower of the two) until
    /// `throttle_until_ns`.
    pub throttle: [Rate; 2],
    /// When the throttle expires (`bpf_ktime_get_coarse_ns` time): the programs ignore
    /// it after that, so a throttle ends on time even if the daemon is down.
    pub throttle_until_ns: u64,
    /// With [`runtime_flags::CONTAIN`]: the tenant's new outbound first contacts (a SYN,
    /// a datagram or an echo request to a (remote, port) it has not reached in this
    /// contact epoch) pass at this event rate, the rest are dropped as `blocked`, until
    /// `contain_until_ns`. A scan or a rotating flood at `block` contains its tenant:
    /// per-target blocks cannot follow a randomised sweep.
    pub contain: Rate,
    /// When the containment expires (`bpf_ktime_get_coarse_ns` time), even if the
    /// daemon is down.
    pub contain_until_ns: u64,
    /// The containment's bucket (GCRA, see `police`): written by the programs only; the
    /// daemon's read-modify-write of the entry carries it over.
    pub contain_tat: u64,
}

/// Bits of [`TenantRuntime::flags`].
pub mod runtime_flags {
    /// The tenant has entries in [`map::BLOCKS`](crate::map::BLOCKS): look them up.
    pub const BLOCKS: u32 = 1;
    /// Police with [`TenantRuntime::throttle`](super::TenantRuntime).
    pub const THROTTLE: u32 = 2;
    /// Contain first contacts ([`TenantRuntime::contain`](super::TenantRuntime)).
    pub const CONTAIN: u32 = 4;
    /// Bits 8-31: the tenant's blocks version, which the daemon counts up with every
    /// write of the tenant's entries in [`map::BLOCKS`](crate::map::BLOCKS) (after the
    /// write). The programs keep a CPU's recent block answers for a clock tick, and only
    /// while the version they were looked up under stands, so a change reaches the next
    /// packet.
    pub const BLOCKS_VERSION: u32 = 0xffff_ff00;
    /// One step of [`BLOCKS_VERSION`] (it wraps within its bits).
    pub const BLOCKS_VERSION_ONE: u32 = 1 << 8;

    /// `flags` with the blocks version counted up by one, the other bits as they were.
    pub const fn next_blocks_version(flags: u32) -> u32 {
        (flags & !BLOCKS_VERSION) | (flags & BLOCKS_VERSION).wrapping_add(BLOCKS_VERSION_ONE)
    }
}

/// Key of [`map::BLOCKS`](crate::map::BLOCKS). The programs look up, for a tenant with
/// [`runtime_flags::BLOCKS`]:
/// - from-tenant: `{dir OUT, addr = remote, port 0}` (a victim) and
///   `{dir OUT, addr = 0, family 0, port = dport}` (a port, any host);
/// - to-tenant: `{dir IN, addr = local, port 0}` (a blackholed tenant address) and
///   `{dir IN, addr = 0, family 0, port = dport}` (a relaying listener port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub tenant: u32,
    /// A [`direction`](crate::direction).
    pub dir: u8,
    /// 4, 6, or 0 with a zero address (any host).
    pub family: u8,
    /// Host order; 0 = any port.
    pub port: u16,
    /// Network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

/// Value of [`map::BLOCKS`](crate::map::BLOCKS): expiry in `bpf_ktime_get_coarse_ns`
/// time (the programs ignore an expired entry; the daemon deletes it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockValue {
    pub until_ns: u64,
}

/// Slot of [`map::PENDING`](crate::map::PENDING).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// The attempt's key hash (0 = empty).
    pub tag: u64,
}

/// The pending slot of an attempt's contact key.
#[inline(always)]
pub const fn pending_slot(key: u64) -> u32 {
    (key >> 16) as u32 & (PENDING_SLOTS - 1)
}

/// One entry of [`map::ATTEMPT_LOG`](crate::map::ATTEMPT_LOG): an
/// [`event::ATTEMPT`], [`event::OUTCOME`], [`event::ACCEPTED`] or [`event::SMTP`], with
/// the fields its [`Event`] would have (direction in for an OUTCOME, out for the rest;
/// no value or threshold). One cache line.
///
/// `seq` makes the entry readable without a lock. A CPU numbers its entries from 0
/// (its [`fact_counter::LOGGED`] count) and writes entry `n` into its slot
/// `n % LOG_SLOTS`: first `seq = 0`, then the fields, then `seq = n + 1`. A reader that
/// finds `seq == n + 1` before and after copying the fields has entry `n` whole; `0`
/// means the CPU is writing the slot, and a larger value that the CPU came round
/// again before the reader (entries lost).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogEntry {
    /// The entry's number on its CPU plus one; 0 while written (or never).
    pub seq: u64,
    /// `bpf_ktime_get_coarse_ns`.
    pub at: u64,
    /// Dense tenant index.
    pub tenant: u32,
    /// [`event::ATTEMPT`], [`event::OUTCOME`], [`event::ACCEPTED`] or [`event::SMTP`],
    /// as a byte.
    pub kind: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// ATTEMPT: [`outcome::DROPPED`] when Warden dropped the attempt itself, else 0;
    /// OUTCOME: its [`outcome`].
    pub detail: u8,
    /// Tenant-side port (host order; ICMP: 0).
    pub local_port: u16,
    /// Remote port (host order; ICMP: 0).
    pub remote_port: u16,
    pub _pad2: u32,
    /// The tenant-side address (network order; IPv4 in the first 4 bytes).
    pub local: [u8; 16],
    /// The other side's address.
    pub remote: [u8; 16],
}

/// Indices of the per-CPU u64 array [`map::FACT_COUNTERS`](crate::map::FACT_COUNTERS).
pub mod fact_counter {
    /// Events sent into the ring.
    pub const SENT: u32 = 0;
    /// Events not sent: over the tenant's budget (refused by design, not lost: only
    /// the already-refused path counts it).
    pub const OVER_BUDGET: u32 = 1;
    /// Events not sent: the ring buffer was full.
    pub const LOST_RING: u32 = 2;
    /// Entries written into this CPU's attempt log: per CPU, the next entry's number
    /// (see [`LogEntry`](super::LogEntry)).
    pub const LOGGED: u32 = 3;
    /// Samples captured.
    pub const SAMPLES: u32 = 4;
    /// Packets dropped by a block or blackhole.
    pub const BLOCKED: u32 = 5;
    /// Log entries not written: the CPU has no region in the attempt log (a CPU beyond
    /// those it was sized for).
    pub const LOST_LOG: u32 = 6;
    pub const COUNT: u32 = 7;
    pub const NAMES: [&str; COUNT as usize] = [
        "sent",
        "over_budget",
        "lost_ring",
        "logged",
        "samples",
        "blocked",
        "lost_log",
    ];
}

/// The shared mixing function of the fact structures (murmur3's finalizer); the daemon
/// and tests use it to predict slots.
///
/// `b` (a folded address) is multiplied by an odd constant before it meets `a` (tenant,
/// tag, protocol, port). With a plain xor the pair was linear: an IPv4 address lands
/// on the tenant index's bits, so tenant `t` contacting `A` and tenant `t ^ d`
/// contacting `A` with `d` xored into its first octets had the same key, the second
/// then never a first contact (`cargo xtask bench`, 1,000,000 remotes contacted by
/// 1,000 tenants: 14.6% of fresh remotes seen as known, 5.3% with the multiply, which
/// is what the filter's load alone gives). The multiply spreads every bit of `b`
/// upwards, so such pairs no longer cancel, for one multiplication more.
#[inline(always)]
pub const fn fact_hash(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 33;
    x
}

/// Folds an address (network order, IPv4 in the first 4 bytes) into a u64 for hashing.
#[inline(always)]
pub const fn fold_addr(addr: &[u8; 16]) -> u64 {
    let hi = u64::from_ne_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_ne_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    hi ^ lo.rotate_left(17)
}

/// Tags of the keys in the contact filter.
pub mod contact_tag {
    /// A from-tenant attempt at (remote, remote port, proto).
    pub const OUT: u64 = 1;
    /// A remote sent UDP to the tenant from (remote, remote port): the tenant's UDP to
    /// it is a reply, not an attempt.
    pub const IN_UDP: u64 = 2;
    /// The tenant accepted a connection from (remote) on a local address.
    pub const ACCEPTED: u64 = 3;
    /// A spoofed frame of the tenant claiming (address, source MAC), per drop reason:
    /// reported once per contact epoch.
    pub const SPOOF: u64 = 4;
    /// A tenant's SMTP connection: (remote, SMTP port, the tenant's port).
    pub const SMTP: u64 = 5;
}

/// Spreads a small tag (a contact tag, a flood class) over all 64 bits of a key.
const TAG_MIX: u64 = 0xD6E8_FEB8_6659_FD93;

/// The hash a contact key is made from, before its tag: tenant, protocol, port and the
/// folded address. The keys of one (tenant, protocol, port, address) under different
/// tags come from one hash ([`contact_tagged`]): a UDP datagram needs two of them.
#[inline(always)]
pub const fn contact_base(tenant: u32, proto: u8, port: u16, addr: u64) -> u64 {
    fact_hash(
        ((tenant as u64) << 32) | ((proto as u64) << 16) | port as u64,
        addr,
    )
}

/// The contact key of `base` ([`contact_base`]) under `tag`. Never 0.
#[inline(always)]
pub const fn contact_tagged(base: u64, tag: u64) -> u64 {
    let h = base ^ tag.wrapping_mul(TAG_MIX);
    if h == 0 {
        1
    } else {
        h
    }
}

/// The key hash of a contact, attempt or answer: tenant, tag, protocol, port, and the
/// folded remote (and, for [`contact_tag::ACCEPTED`], local) address. Never 0.
#[inline(always)]
pub const fn contact_key(tenant: u32, tag: u64, proto: u8, port: u16, addr: u64) -> u64 {
    contact_tagged(contact_base(tenant, proto, port, addr), tag)
}

/// The hash a sketch key is made from, before its class: tenant and folded address.
#[inline(always)]
pub const fn sketch_base(tenant: u32, addr: u64) -> u64 {
    fact_hash(((tenant as u64) << 8) | (1 << 60), addr)
}

/// The sketch key of `base` ([`sketch_base`]) for `class`.
#[inline(always)]
pub const fn sketch_tagged(base: u64, class: u8) -> u64 {
    base ^ (class as u64 + 1).wrapping_mul(TAG_MIX)
}

/// The key hash of a sketch counter: tenant, class and folded address.
#[inline(always)]
pub const fn sketch_key(tenant: u32, class: u8, addr: u64) -> u64 {
    sketch_tagged(sketch_base(tenant, addr), class)
}

/// Counter index of `key` in sketch row `row` (`row < SKETCH_ROWS`).
#[inline(always)]
pub const fn sketch_index(key: u64, row: u32) -> u32 {
    let bits = if row == 0 { key } else { key >> 32 };
    row * SKETCH_WIDTH + (bits as u32 & (SKETCH_WIDTH - 1))
}
