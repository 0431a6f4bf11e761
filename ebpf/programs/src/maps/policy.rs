//! Policy: what the daemon writes on a start or an apply, and the programs only read.
//! Two generations of it (see `warden_common`), switched by [`ACTIVE`].

use aya_ebpf::maps::{Array, HashMap, LpmTrie};
use warden_common::{Bucket128, Bucket64, GenConfig, IfaceConfig, TenantConfig};

abi_map! {
    /// Index 0: the active policy generation (0 or 1). Written by the daemon (the flip).
    ACTIVE: Array<u32> = Array::with_max_entries;
}

abi_map! {
    /// Index: generation. Value: the prefix lengths in use, longest first. Written by the
    /// daemon.
    GEN_CONFIG: Array<GenConfig> = Array::with_max_entries;
}

abi_map! {
    /// Index: generation * V4_BUCKETS + bucket. Value: a cuckoo bucket of IPv4 prefixes
    /// -> tenant index (see `warden_common::table`). Written by the daemon.
    ADDRS_V4: Array<Bucket64> = Array::with_max_entries;
}

abi_map! {
    /// Index: generation * V6_BUCKETS + bucket. Value: a cuckoo bucket of IPv6 prefixes
    /// -> tenant index. Written by the daemon.
    ADDRS_V6: Array<Bucket128> = Array::with_max_entries;
}

abi_map! {
    /// Index: generation * MAC_BUCKETS + bucket. Value: a cuckoo bucket of bound MACs ->
    /// tenant index. Written by the daemon.
    MACS: Array<Bucket64> = Array::with_max_entries;
}

abi_map! {
    /// Index: generation * MAX_TENANTS + tenant. Value: enforcement settings. Written by
    /// the daemon.
    TENANT_CONFIG: Array<TenantConfig> = Array::with_max_entries;
}

abi_map! {
    /// Key: IPv4 management prefix. Value: unused. Written by the daemon.
    MANAGEMENT_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries;
}

abi_map! {
    /// Key: IPv6 management prefix. Value: unused. Written by the daemon.
    MANAGEMENT_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries;
}

abi_map! {
    /// Key: ifindex of an attached interface. Value: what it passes from tenants that the
    /// programs do not parse (`IfaceConfig`). Written by the daemon; looked up here only
    /// for such frames.
    IFACES: HashMap<u32, IfaceConfig> = HashMap::with_max_entries;
}
