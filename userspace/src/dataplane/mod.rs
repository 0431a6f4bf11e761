//! The dataplane: the only module that touches aya. Loads the embedded eBPF object,
//! attaches it to interfaces by mode, writes tenant maps, reads counters.

/// The compiled eBPF object (built by `build.rs` through aya-build).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden"));
