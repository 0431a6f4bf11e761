//! The kernel<->user ABI of Warden.
//!
//! Everything the eBPF programs and the daemon must agree on is declared here, once:
//! the maps (names, kinds, key and value types, capacities: the table in [`map`]), the
//! layout of keys and values, and the numeric sets both sides use (directions, drop
//! reasons, counter slots, flood classes, event kinds, protocols, TCP flags, the SMTP
//! ports). Types are `#[repr(C)]`, `Copy`, and free of implicit padding so that both
//! sides see the same bytes.
//!
//! # Generations
//! Policy lives in the kernel twice, as generation 0 and 1. Address, MAC and tenant
//! configuration entries carry their generation; [`map::ACTIVE`] names the one the
//! programs use. The daemon writes a whole new policy into the inactive generation and
//! then flips `ACTIVE` with one array write, so every packet sees one policy, never
//! half of two.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]

/// Largest number of tenants one node can hold; dense tenant indexes are `0..MAX_TENANTS`.
pub const MAX_TENANTS: u32 = 131_072;

/// Address prefixes per family per generation (half the table's slots).
pub const MAX_PREFIXES: u32 = 131_072;

/// Bound MACs per generation (half the table's slots): room for a gateway in front of
/// [`MAX_TENANTS`] tenants with one or two MACs each. The `MACS` array costs
/// `2 * MAC_BUCKETS * 64` bytes = 16 MiB of kernel memory.
pub const MAX_MACS: u32 = 262_144;

/// Management prefixes (reachable by suspended tenants) per family.
pub const MAX_MANAGEMENT: u32 = 1_024;

/// Distinct prefix lengths per family a policy may use. Lookup is one hash probe per
/// length, longest first, so this bounds the per-packet cost.
pub const MAX_PREFIX_LENS: usize = 8;

/// Number of policy generations held in the kernel.
pub const GENERATIONS: u32 = 2;

pub mod facts;
pub mod map;

/// Traffic direction, seen from the tenant.
///
/// `OUT` is traffic sent by the tenant (from-tenant), `IN` is traffic received by
/// the tenant (to-tenant). The numbering is part of counter indexes.
pub mod direction {
    /// Sent by the tenant.
    pub const OUT: u32 = 0;
    /// Received by the tenant.
    pub const IN: u32 = 1;
    /// Number of directions.
    pub const COUNT: u32 = 2;
    /// Label values, indexed by direction.
    pub const NAMES: [&str; 2] = ["out", "in"];
}

/// IP protocol numbers the programs look into, as events, log entries and contact keys
/// carry them.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Address families, as events, log entries and block keys carry them.
pub mod family {
    /// No address: a block key of a port, any host.
    pub const ANY: u8 = 0;
    /// IPv4, in the first 4 bytes of a 16-byte address field.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// TCP flag bits, in the TCP header's flags byte.
pub mod tcp_flags {
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// TCP ports of mail submission and relay that a tenant's SMTP policy governs (SMTP,
/// SMTPS, submission) and the relay detector watches.
pub const SMTP_PORTS: [u16; 3] = [25, 465, 587];

/// Whether `port` is one of [`SMTP_PORTS`].
#[inline(always)]
pub const fn is_smtp_port(port: u16) -> bool {
    port == SMTP_PORTS[0] || port == SMTP_PORTS[1] || port == SMTP_PORTS[2]
}

/// Why a packet was dropped: the index into [`DropCounters::packets`] and the
/// `reason` label of `warden_dropped_packets_total`.
pub mod reason {
    /// Over the tenant's bandwidth plan.
    pub const BANDWIDTH: usize = 0;
    /// From-tenant packet with a source address the tenant does not own.
    pub const SPOOF_IP: usize = 1;
    /// ARP or IPv6 neighbour discovery claiming an address the tenant does not own.
    pub const SPOOF_ARP: usize = 2;
    /// From-tenant frame with a source MAC not bound to the tenant.
    pub const SPOOF_MAC: usize = 3;
    /// Outbound SMTP refused by the tenant's mail policy.
    pub const SMTP: usize = 4;
    /// The tenant is suspended.
    pub const SUSPENDED: usize = 5;
    /// A detection's block: a victim, a port, a relaying listener port.
    pub const BLOCKED: usize = 6;
    /// A blackholed tenant address under an inbound flood.
    pub const BLACKHOLE: usize = 7;
    /// From-tenant frame the programs do not understand (another ethertype, a third
    /// VLAN tag, ARP for another hardware type) and the interface does not pass.
    pub const UNPARSED: usize = 8;
    /// Number of reasons.
    pub const COUNT: usize = 9;
    /// Label values, indexed by reason.
    pub const NAMES: [&str; COUNT] = [
        "bandwidth",
        "spoof_ip",
        "spoof_arp",
        "spoof_mac",
        "smtp",
        "suspended",
        "blocked",
        "blackhole",
        "unparsed",
    ];
}

/// Packet and byte counters, one per (tenant, direction) and per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets seen.
    pub packets: u64,
    /// Ethernet frame bytes as the hook sees them (no FCS).
    pub bytes: u64,
}

/// Dropped packets by reason, one per (tenant, direction) and per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Indexed by [`reason`].
    pub packets: [u64; reason::COUNT],
}

/// Index of a tenant's slot in the per-(tenant, direction) arrays.
#[inline(always)]
pub const fn tenant_counter_index(tenant: u32, dir: u32) -> u32 {
    tenant * direction::COUNT + dir
}

/// Slots of [`map::GLOBAL_COUNTERS`]: traffic of no tenant, counted per direction at
/// `slot * direction::COUNT + dir`.
pub mod global {
    /// A parsed packet whose tenant-side address is no tenant's (or that has no IP or
    /// ARP address at all, like LLDP).
    pub const NO_TENANT: u32 = 0;
    /// A frame too short for the headers it announces, or with impossible header
    /// fields: passed to a tenant (metering fails open), dropped from one (its headers
    /// could hide what policy checks). Counted here.
    pub const MALFORMED: u32 = 1;
    /// From-tenant traffic whose sender is no tenant (source address and MAC bound to
    /// nobody): dropped as spoofed and counted here.
    pub const SPOOFED: u32 = 2;
    /// From-tenant frame the programs do not understand (see
    /// [`reason::UNPARSED`](super::reason::UNPARSED)) from no bound MAC: dropped, unless
    /// the interface passes its ethertype, and counted here.
    pub const UNPARSED: u32 = 3;
    /// Number of slots.
    pub const SLOTS: u32 = 4;
    /// Number of entries in the map.
    pub const ENTRIES: u32 = SLOTS * super::direction::COUNT;
    /// Label values (`reason` of `warden_unattributed_packets_total`), indexed by slot.
    pub const NAMES: [&str; SLOTS as usize] = ["no_tenant", "malformed", "spoofed", "unparsed"];

    /// Index of a slot's counters for a direction.
    #[inline(always)]
    pub const fn index(slot: u32, dir: u32) -> u32 {
        slot * super::direction::COUNT + dir
    }
}

/// Value of the address and MAC maps: the dense index of the owning tenant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TenantRef {
    /// Dense tenant index, `< MAX_TENANTS`.
    pub index: u32,
}

/// Address and MAC tables: bucketized cuckoo hash tables in array maps.
///
/// A BPF hash map probe costs ~25 ns here; an array lookup is inlined by the verifier
/// and costs ~2 ns. So each table is an array of 4-slot buckets, and a key lives in
/// one of two buckets chosen by two hash functions (which both sides share from this
/// module). A lookup reads at most two buckets. The daemon places keys with cuckoo
/// insertion, one half of the array per generation, and rewrites only the inactive
/// half. Tables are sized for a load of at most one half, where placement succeeds.
pub mod table {
    /// Slots per bucket.
    pub const SLOTS: usize = 4;
    /// Buckets per generation of the IPv4 table (`ADDRS_V4`).
    pub const V4_BUCKETS: u32 = 1 << V4_BITS;
    pub const V4_BITS: u32 = 16;
    /// Buckets per generation of the IPv6 table (`ADDRS_V6`).
    pub const V6_BUCKETS: u32 = 1 << V6_BITS;
    pub const V6_BITS: u32 = 16;
    /// Buckets per generation of the MAC table (`MACS`).
    pub const MAC_BUCKETS: u32 = 1 << MAC_BITS;
    pub const MAC_BITS: u32 = 17;
    /// An empty 64-bit key (never a valid packed key).
    pub const EMPTY: u64 = u64::MAX;
    /// An empty IPv6 slot's `meta`.
    pub const EMPTY_META: u32 = u32::MAX;

    /// Packs an IPv4 prefix key: generation, prefix length, network (host order).
    #[inline(always)]
    pub const fn key_v4(generation: u32, prefix_len: u32, network: u32) -> u64 {
        ((generation as u64) << 40) | ((prefix_len as u64) << 32) | network as u64
    }

    /// Packs a MAC key: generation and the 48-bit MAC (tagged so it never equals EMPTY).
    #[inline(always)]
    pub const fn key_mac(generation: u32, mac: [u8; 6]) -> u64 {
        let m = ((mac[0] as u64) << 40)
            | ((mac[1] as u64) << 32)
            | ((mac[2] as u64) << 24)
            | ((mac[3] as u64) << 16)
            | ((mac[4] as u64) << 8)
            | mac[5] as u64;
        (1 << 62) | ((generation as u64) << 48) | m
    }

    /// Packs a port key: generation, interface index and the frame's outer VLAN id (0:
    /// untagged, or the whole interface). Ports share the MAC table (`MACS`): a MAC
    /// key has bit 62 set, a port key bit 61 only, so the two never collide, and
    /// neither is EMPTY.
    #[inline(always)]
    pub const fn key_port(generation: u32, ifindex: u32, vlan: u16) -> u64 {
        (1 << 61) | ((generation as u64) << 48) | (((vlan & 0x0fff) as u64) << 32) | ifindex as u64
    }

    /// The `meta` word of an IPv6 key: generation and prefix length.
    #[inline(always)]
    pub const fn meta_v6(generation: u32, prefix_len: u32) -> u32 {
        (generation << 8) | prefix_len
    }

    #[inline(always)]
    const fn mix(mut x: u64, c: u64) -> u64 {
        x ^= x >> 31;
        x = x.wrapping_mul(c);
        x ^= x >> 29;
        x
    }

    /// First and second bucket (within a generation's half) of a 64-bit key.
    #[inline(always)]
    pub const fn buckets64(key: u64, bits: u32) -> (u32, u32) {
        let a = mix(key, 0x9E37_79B9_7F4A_7C15) >> (64 - bits);
        let b = mix(key ^ 0x5851_F42D_4C95_7F2D, 0xBF58_476D_1CE4_E5B9) >> (64 - bits);
        (a as u32, b as u32)
    }

    /// First and second bucket of an IPv6 key (two halves of the address and meta).
    #[inline(always)]
    pub const fn buckets128(hi: u64, lo: u64, meta: u32, bits: u32) -> (u32, u32) {
        buckets64(hi ^ lo.rotate_left(29) ^ ((meta as u64) << 7), bits)
    }
}

/// A slot of the IPv4 and MAC tables.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot64 {
    /// A packed key ([`table::key_v4`], [`table::key_mac`]) or [`table::EMPTY`].
    pub key: u64,
    pub tenant: u32,
    pub _pad: u32,
}

/// A bucket of the IPv4 and MAC tables (one cache line).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bucket64 {
    pub slots: [Slot64; table::SLOTS],
}

impl Bucket64 {
    /// A bucket with every slot empty.
    pub const EMPTY: Bucket64 = Bucket64 {
        slots: [Slot64 {
            key: table::EMPTY,
            tenant: 0,
            _pad: 0,
        }; table::SLOTS],
    };
}

/// A slot of the IPv6 table: the prefix (host bits zero) as two halves, host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot128 {
    pub hi: u64,
    pub lo: u64,
    /// [`table::meta_v6`] or [`table::EMPTY_META`].
    pub meta: u32,
    pub tenant: u32,
}

/// A bucket of the IPv6 table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bucket128 {
    pub slots: [Slot128; table::SLOTS],
}

impl Bucket128 {
    /// A bucket with every slot empty.
    pub const EMPTY: Bucket128 = Bucket128 {
        slots: [Slot128 {
            hi: 0,
            lo: 0,
            meta: table::EMPTY_META,
            tenant: 0,
        }; table::SLOTS],
    };
}

/// Per-generation facts the lookup needs: which prefix lengths exist, longest first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    pub v4_lens: [u8; MAX_PREFIX_LENS],
    pub v6_lens: [u8; MAX_PREFIX_LENS],
    pub v4_nlens: u8,
    pub v6_nlens: u8,
    /// [`gen_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 5],
    /// Every tenant's event budget ([`facts::EVENT_BUDGET`] unless a benchmark lifts it).
    pub event_budget: Rate,
}

/// Bits of [`GenConfig::flags`].
pub mod gen_flags {
    /// Some tenant has bound MACs: from-tenant frames are looked up by source MAC.
    pub const ANY_MACS: u8 = 1;
    /// Some interface (or VLAN on one) is bound to a tenant: from-tenant frames are
    /// looked up by the port they arrive on or leave by ([`table::key_port`]).
    pub const ANY_PORTS: u8 = 2;
}

/// A token bucket's parameters in GCRA form (virtual scheduling): each unit costs
/// `cost_q10 / 1024` ns of the bucket's time, and the bucket may run up to `burst_ns`
/// ahead of the clock. `cost_q10 == 0` means unlimited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub cost_q10: u64,
    pub burst_ns: u64,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        cost_q10: 0,
        burst_ns: 0,
    };

    /// A byte rate from bits per second and a burst in bytes.
    pub const fn from_bits_per_second(bps: u64, burst_bytes: u64) -> Rate {
        if bps == 0 {
            return Rate::UNLIMITED;
        }
        let cost_q10 = (8_000_000_000u128 * 1024 / bps as u128) as u64;
        let burst_ns = (burst_bytes as u128 * 8_000_000_000 / bps as u128) as u64;
        Rate {
            cost_q10: if cost_q10 == 0 { 1 } else { cost_q10 },
            burst_ns,
        }
    }

    /// An event rate (e.g. new connections) per second, allowing `burst_events` back
    /// to back (at least one): the GCRA tolerance is `burst_events - 1` intervals.
    pub const fn from_events_per_second(per_second: f64, burst_events: u64) -> Rate {
        if per_second <= 0.0 {
            return Rate::UNLIMITED;
        }
        let ns = 1e9 / per_second;
        let extra = burst_events.saturating_sub(1);
        Rate {
            cost_q10: (ns * 1024.0) as u64,
            burst_ns: (ns * extra as f64) as u64,
        }
    }
}

/// A tenant's enforcement settings in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantConfig {
    /// [`tenant_flags`] bits.
    pub flags: u32,
    /// The `skb->priority` of the first of the tenant's HTB leaf classes on a host-mode
    /// interface's egress ([`shape::class_id`]; the programs add the flow's leaf), or 0:
    /// not shaped. A
    /// shaped tenant's egress plan is the class's, so the tcx program sets the priority
    /// instead of policing; XDP (gateway mode's from-tenant hook) cannot queue and
    /// polices `rate[OUT]` whatever this says.
    pub shape_class: u32,
    /// Bandwidth plan per direction, in bytes.
    pub rate: [Rate; 2],
    /// New outbound SMTP connections, when [`tenant_flags::SMTP_RATE`] is set.
    pub smtp: Rate,
    /// `flood_out.syn_pps` as SYNs (and reflection-sized replies) per flood epoch at one
    /// victim (see [`facts::FLOOD_EPOCH_SHIFT`]); 0 = not checked.
    pub flood_out_syn: u32,
    /// `flood_out.pps` as UDP/ICMP/other packets per flood epoch at one victim.
    pub flood_out_pkts: u32,
    /// `flood_in.pps` as unsolicited packets per flood epoch at one tenant address.
    pub flood_in_pkts: u32,
    pub _pad2: u32,
    /// `flood_in.bps` as unsolicited bytes per flood epoch at one tenant address.
    pub flood_in_bytes: u64,
}

/// Bits of [`TenantConfig::flags`].
pub mod tenant_flags {
    /// Drop everything except traffic with the management prefixes.
    pub const SUSPENDED: u32 = 1;
    /// The tenant has bound MACs: from-tenant frames must carry one of them.
    pub const MACS_BOUND: u32 = 2;
    /// Outbound SMTP is allowed without limit.
    pub const SMTP_ALLOW: u32 = 4;
    /// New outbound SMTP connections are policed by [`TenantConfig::smtp`](super::TenantConfig).
    pub const SMTP_RATE: u32 = 8;
}

/// Egress shaping: the HTB qdisc the daemon puts at the root of each host-mode
/// interface, one class per tenant with an egress plan, and under it [`shape::LEAVES`]
/// leaf classes the tcx program spreads the tenant's flows over (by `skb->priority`).
pub mod shape {
    /// The HTB qdisc's handle (major number): `7764:`.
    pub const MAJOR: u32 = 0x7764;
    /// The class (minor) of everything not a shaped tenant's: unshaped.
    pub const DEFAULT_MINOR: u32 = 1;
    /// Leaf classes per shaped tenant: HTB serves its backlogged leaves in turn (equal
    /// quanta), so flows in different leaves share the plan evenly. Each new flow gets
    /// the tenant's next leaf in rotation (a power of two: the rotation is a mask).
    pub const LEAVES: u32 = 8;
    /// Tenant slots below this have classes; past it, the plan is policed. Every leaf
    /// has a queue (a leaf qdisc), whose handle the kernel draws from 0x8000..0xffff:
    /// 32,768 leaves per interface at most, less some room, [`LEAVES`] per tenant.
    pub const MAX_SLOTS: u32 = 3_600;
    /// The first leaf class's minor: the tenants' classes take minors `2..LEAF_BASE`.
    pub const LEAF_BASE: u32 = 2 + MAX_SLOTS;
    /// Flows whose leaf the programs remember: `SHAPE_FLOWS` holds [`FLOW_SETS`] sets of
    /// [`FLOW_WAYS`] (see the programs' `enforce::spread`). A new flow whose set holds
    /// only flows seen within the last period ([`FLOW_PERIOD_SHIFT`]) is not remembered.
    pub const FLOWS: u32 = 65_536;
    /// Ways (flows) per set of `SHAPE_FLOWS`: a set is one 64-byte cache line of u64s.
    pub const FLOW_WAYS: u32 = 8;
    /// Sets of `SHAPE_FLOWS`.
    pub const FLOW_SETS: u32 = FLOWS / FLOW_WAYS;
    /// A remembered flow is stamped with the period it was last seen in, `jiffies >>
    /// FLOW_PERIOD_SHIFT` (256 jiffies: about a second at HZ 250, a quarter at HZ 1000);
    /// its way may go to a new flow of its set once a whole period passed without it.
    pub const FLOW_PERIOD_SHIFT: u32 = 8;

    /// A way of `SHAPE_FLOWS`, one u64: bits 0-31 a flow hash, 32-43 the tenant (shaped
    /// tenants are slots below [`MAX_SLOTS`]), 44-46 the flow's leaf, bit 47 set (a way in
    /// use is never 0), bits 48-63 the period the flow was last seen in (wrapping).
    pub mod way {
        /// The tenant's bits.
        pub const TENANT_BITS: u32 = 12;
        pub const LEAF_SHIFT: u32 = 44;
        pub const USED: u64 = 1 << 47;
        pub const SEEN_SHIFT: u32 = 48;
        /// The bits that name the flow: hash, tenant and [`USED`].
        pub const FLOW: u64 = USED | ((1 << (32 + TENANT_BITS)) - 1);

        /// The flow bits of tenant `tenant`'s flow with hash `hash`.
        #[inline(always)]
        pub const fn flow(tenant: u32, hash: u32) -> u64 {
            USED | (((tenant & ((1 << TENANT_BITS) - 1)) as u64) << 32) | hash as u64
        }

        /// The period of `jiffies` (`bpf_jiffies64`), as a way holds it.
        #[inline(always)]
        pub const fn period(jiffies: u64) -> u64 {
            (jiffies >> super::FLOW_PERIOD_SHIFT) & 0xffff
        }

        /// The way of the flow `flow` (its [`flow`] bits) with leaf `leaf`, last seen in
        /// period `seen`.
        #[inline(always)]
        pub const fn pack(flow: u64, leaf: u32, seen: u64) -> u64 {
            flow | ((leaf as u64) << LEAF_SHIFT) | ((seen & 0xffff) << SEEN_SHIFT)
        }
    }

    /// Indexes of the programs' per-CPU shaping counters (`SHAPE_STATS`).
    pub mod stat {
        /// New flows given a leaf (and remembered).
        pub const ASSIGNED: u32 = 0;
        /// New flows whose leaf could not be remembered (the insert failed): each of
        /// their packets takes the leaf of its flow hash instead.
        pub const UNTRACKED: u32 = 1;
        pub const COUNT: u32 = 2;
    }

    /// The minor of tenant `slot`'s class (the plan; its leaves hang from it).
    #[inline(always)]
    pub const fn tenant_minor(slot: u32) -> u32 {
        slot + 2
    }

    /// The minor of leaf `leaf` (below [`LEAVES`]) of tenant `slot`.
    #[inline(always)]
    pub const fn leaf_minor(slot: u32, leaf: u32) -> u32 {
        LEAF_BASE + slot * LEAVES + leaf
    }

    /// The tenant slot (and leaf, if a leaf) whose class has `minor`; `None` for the
    /// default class and minors past the last leaf.
    pub const fn slot_of_minor(minor: u32) -> Option<(u32, Option<u32>)> {
        if minor < 2 {
            None
        } else if minor < LEAF_BASE {
            Some((minor - 2, None))
        } else if minor < LEAF_BASE + MAX_SLOTS * LEAVES {
            let i = minor - LEAF_BASE;
            Some((i / LEAVES, Some(i % LEAVES)))
        } else {
            None
        }
    }

    /// The class id (`MAJOR:minor`, as `skb->priority` selects it) of tenant `slot`'s
    /// first leaf, or 0 when the slot is past [`MAX_SLOTS`]: leaf `k` is this plus `k`.
    #[inline(always)]
    pub const fn class_id(slot: u32) -> u32 {
        if slot >= MAX_SLOTS {
            return 0;
        }
        (MAJOR << 16) | leaf_minor(slot, 0)
    }

    const _: () = assert!(LEAVES.is_power_of_two());
    const _: () = assert!(LEAF_BASE + MAX_SLOTS * LEAVES <= 0xffff);
    const _: () = assert!(MAX_SLOTS * LEAVES <= 30_000);
}

/// Index of a tenant's configuration in [`map::TENANT_CONFIG`].
#[inline(always)]
pub const fn tenant_config_index(generation: u32, tenant: u32) -> u32 {
    generation * MAX_TENANTS + tenant
}

/// Token bucket state shared by all CPUs: the theoretical arrival time (ns).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub tat: u64,
}

/// Buckets per tenant in [`map::BUCKETS`]: bandwidth out, bandwidth in, SMTP, events.
pub mod bucket {
    pub const PER_TENANT: u32 = 4;
    pub const SMTP: u32 = 2;
    /// The tenant's event budget ([`facts::EVENT_BUDGET`](crate::facts::EVENT_BUDGET)).
    pub const EVENTS: u32 = 3;
    /// Index of a tenant's bucket `which` (a direction, or [`SMTP`]).
    #[inline(always)]
    pub const fn index(tenant: u32, which: u32) -> u32 {
        tenant * PER_TENANT + which
    }
}

/// Interfaces the daemon attaches to, at most (entries of [`map::IFACES`]).
pub const MAX_IFACES: u32 = 256;
/// Ethertypes an interface may pass unparsed from tenants, at most.
pub const MAX_PASS_ETHERTYPES: usize = 8;

/// An attached interface's settings (value of [`map::IFACES`], key its ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceConfig {
    /// Ethertypes (host order) passed from tenants though the programs cannot look
    /// inside them (`interfaces[].pass_ethertypes`); 0 marks an unused entry. Never
    /// IPv4, IPv6, ARP or a VLAN tag: those are parsed, and unparsed ones of them
    /// (a third tag, ARP for another hardware type) are never passed.
    pub pass_ethertypes: [u16; MAX_PASS_ETHERTYPES],
}

impl IfaceConfig {
    /// Whether `ether_type` (host order, not 0) is on the list.
    #[inline(always)]
    pub fn passes(&self, ether_type: u16) -> bool {
        let mut i = 0;
        while i < MAX_PASS_ETHERTYPES {
            if self.pass_ethertypes[i] == ether_type && ether_type != 0 {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Program names: the enforcing programs, one per hook and direction, in both objects
/// (the daemon's, `warden`, and the benchmark's, `warden-bench`); the benchmark's own
/// programs only in `warden-bench`.
pub mod program {
    /// XDP on a gateway's tenant-facing interface: traffic arriving is from the tenant.
    pub const XDP_FROM_TENANT: &str = "xdp_from_tenant";
    /// XDP on a host's NIC: traffic arriving is for the tenant.
    pub const XDP_TO_TENANT: &str = "xdp_to_tenant";
    /// tcx egress on a host's NIC: traffic leaving is from the tenant.
    pub const TC_FROM_TENANT: &str = "tc_from_tenant";
    /// tcx egress on a gateway's tenant-facing interface: traffic leaving is for the tenant.
    pub const TC_TO_TENANT: &str = "tc_to_tenant";
    /// Benchmark baseline (benchmark object): returns XDP_PASS and does nothing else.
    pub const XDP_PASS_BASELINE: &str = "xdp_pass_base";
    /// Benchmark baseline (benchmark object): a tc program that returns TC_ACT_UNSPEC
    /// and does nothing else.
    pub const TC_PASS_BASELINE: &str = "tc_pass_base";
    /// Benchmark baseline (benchmark object): returns XDP_DROP and does nothing else.
    pub const XDP_DROP_BASELINE: &str = "xdp_drop_base";
    /// Benchmark load generator (benchmark object, live frames): redirects out of the
    /// context's interface.
    pub const XDP_BENCH_GEN: &str = "xdp_bench_gen";
    /// Benchmark load generator (benchmark object, live frames): spreads IPv6 sources,
    /// then redirects.
    pub const XDP_BENCH_GEN_SOURCES: &str = "xdp_bench_gen_sources";
    /// The enforcing programs, the ones the daemon pins.
    pub const ENFORCING: [&str; 4] = [XDP_FROM_TENANT, XDP_TO_TENANT, TC_FROM_TENANT, TC_TO_TENANT];
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for the types userspace reads and writes in maps: each is `#[repr(C)]`,
    //! `Copy`, made of integers and integer arrays only, with explicit padding fields
    //! (its size is asserted below to be the sum of its fields'), so any bytes are a
    //! valid value and it has no uninitialised ones.
    use super::*;
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for Counters {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for DropCounters {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for IfaceConfig {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for TenantRef {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for Bucket64 {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for Bucket128 {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for GenConfig {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for Rate {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for TenantConfig {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for Bucket {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::Event {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::SampleEvent {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::TenantRuntime {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::BlockKey {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::BlockValue {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::Pending {}
    // SAFETY: #[repr(C)] integers without implicit padding (see the module doc).
    unsafe impl aya::Pod for facts::LogEntry {}
}

// No implicit padding: every size is the sum of its fields.
const _: () = assert!(core::mem::size_of::<Counters>() == 16);
const _: () = assert!(core::mem::size_of::<DropCounters>() == 8 * reason::COUNT);
const _: () = assert!(core::mem::size_of::<TenantRef>() == 4);
const _: () = assert!(core::mem::size_of::<IfaceConfig>() == 2 * MAX_PASS_ETHERTYPES);
const _: () = assert!(core::mem::size_of::<facts::BlockValue>() == 8);
const _: () = assert!(core::mem::size_of::<Bucket64>() == 64);
const _: () = assert!(core::mem::size_of::<Bucket128>() == 96);
const _: () = assert!(core::mem::size_of::<GenConfig>() == 40);
const _: () = assert!(core::mem::size_of::<Rate>() == 16);
const _: () = assert!(core::mem::size_of::<TenantConfig>() == 80);
const _: () = assert!(core::mem::size_of::<facts::Event>() == 72);
const _: () = assert!(core::mem::size_of::<facts::SampleEvent>() == 32 + facts::SAMPLE_BYTES);
const _: () = assert!(core::mem::size_of::<facts::TenantRuntime>() == 80);
const _: () = assert!(core::mem::size_of::<facts::BlockKey>() == 24);
const _: () = assert!(core::mem::size_of::<facts::Pending>() == 8);
const _: () = assert!(core::mem::size_of::<facts::LogEntry>() == 64);
const _: () = assert!(core::mem::size_of::<Bucket>() == 8);
// The tables are sized for a load of at most one half.
const _: () = assert!(table::MAC_BUCKETS * table::SLOTS as u32 == 2 * MAX_MACS);
const _: () = assert!(table::V4_BUCKETS * table::SLOTS as u32 == 2 * MAX_PREFIXES);
const _: () = assert!(table::V6_BUCKETS * table::SLOTS as u32 == 2 * MAX_PREFIXES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates_convert_to_ns_per_byte_in_q10() {
        // 8 Mbit/s = 1 byte per microsecond.
        let r = Rate::from_bits_per_second(8_000_000, 1_000);
        assert_eq!(r.cost_q10, 1_000 * 1024);
        assert_eq!(r.burst_ns, 1_000_000);
        // 10 Gbit/s: 0.8 ns per byte keeps its fraction.
        assert_eq!(Rate::from_bits_per_second(10_000_000_000, 0).cost_q10, 819);
        assert_eq!(Rate::from_bits_per_second(0, 10), Rate::UNLIMITED);
    }

    /// Distinct (tenant, remote) pairs must not share a contact key: a shared key makes
    /// one tenant's first contact look known because another tenant made its own.
    #[test]
    fn contact_keys_of_different_tenants_and_remotes_do_not_alias() {
        use facts::{contact_key, contact_tag, fold_addr};
        let v4 = |a: [u8; 4]| {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a);
            fold_addr(&o)
        };
        // Tenant 0 to 198.18.0.5 and tenant 1 to 199.18.0.5: the first octet's low bit
        // and the tenant index's low bit used to cancel.
        assert_ne!(
            contact_key(0, contact_tag::OUT, 6, 443, v4([198, 18, 0, 5])),
            contact_key(1, contact_tag::OUT, 6, 443, v4([199, 18, 0, 5]))
        );
        // 512 tenants x 2,048 IPv4 remotes differing in the octets the tenant index
        // overlapped, and 512 tenants x 2,048 consecutive IPv6 remotes: no key twice.
        for v6 in [false, true] {
            extern crate std;
            let mut keys = std::vec::Vec::with_capacity(512 * 2048);
            for t in 0..512u32 {
                for r in 0..2048u32 {
                    let addr = if v6 {
                        let mut o = [0u8; 16];
                        o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                        o[12..].copy_from_slice(&r.to_be_bytes());
                        fold_addr(&o)
                    } else {
                        v4([(r >> 3) as u8, (r & 7) as u8, 0, 1])
                    };
                    keys.push(contact_key(t * 37, contact_tag::OUT, 6, 443, addr));
                }
            }
            keys.sort_unstable();
            let dups = keys.windows(2).filter(|w| w[0] == w[1]).count();
            assert_eq!(dups, 0, "v6 {v6}: {dups} keys shared");
        }
    }

    /// The flood batch: 1/1024 of large thresholds, 16 for the middle ones (the
    /// default SYN threshold among them), 1/64 of small ones, 1 below 128; never more
    /// than 1/32 of the threshold late on 2 CPUs.
    #[test]
    fn flood_batches_are_a_small_share_of_the_threshold() {
        use facts::flood_quantum;
        assert_eq!(
            flood_quantum(107_374),
            104,
            "default flood_in.pps per epoch"
        );
        assert_eq!(flood_quantum(21_474), 20, "default flood_out.pps per epoch");
        assert_eq!(
            flood_quantum(2_147),
            16,
            "default flood_out.syn_pps per epoch"
        );
        assert_eq!(flood_quantum(16_384), 16);
        assert_eq!(flood_quantum(1_000), 15);
        assert_eq!(flood_quantum(128), 2);
        assert_eq!(flood_quantum(127), 1);
        assert_eq!(flood_quantum(1), 0);
        for t in [
            1,
            64,
            127,
            128,
            500,
            1_023,
            1_024,
            2_147,
            16_383,
            16_384,
            1 << 20,
            1 << 40,
        ] {
            let q = flood_quantum(t);
            assert!(2 * q <= t / 32 + 1, "threshold {t}: batch {q}");
        }
    }

    #[test]
    fn event_rates_convert_to_ns_per_event() {
        let r = Rate::from_events_per_second(10.0, 5);
        assert_eq!(r.cost_q10, 100_000_000 * 1024);
        assert_eq!(
            r.burst_ns, 400_000_000,
            "5 back to back: 4 intervals of tolerance"
        );
        assert_eq!(Rate::from_events_per_second(10.0, 1).burst_ns, 0);
    }
}
