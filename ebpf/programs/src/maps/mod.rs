//! The programs' maps, grouped by concern. Each is declared from its row of the table in
//! `warden_common::map` ([`abi_map!`]): named by its static, sized from the row, and
//! checked against the row's kind, key size and value size when the object builds.
//!
//! | module       | maps                                                   | written by   |
//! |--------------|--------------------------------------------------------|--------------|
//! | [`policy`]   | the generations, address and MAC tables, management, interfaces | the daemon |
//! | [`metering`] | counters, token buckets, the clock cache               | the programs |
//! | [`facts`]    | contact filter, pending attempts, flood sketch, events, attempt log | the programs |
//! | [`runtime`]  | the daemon's answers to detections: blocks, throttles, capture | the daemon |
//! | [`shaping`]  | each shaped flow's leaf class, the tenants' leaf rotation, counters | the programs |

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use warden_common::map::{self, Def, Kind};

/// What a map type declares to the kernel, to compare with its row of the table.
pub trait Declared {
    const KIND: Kind;
    const KEY: usize;
    const VALUE: usize;
}

impl<T> Declared for Array<T> {
    const KIND: Kind = Kind::Array;
    const KEY: usize = size_of::<u32>();
    const VALUE: usize = size_of::<T>();
}

impl<T> Declared for PerCpuArray<T> {
    const KIND: Kind = Kind::PerCpuArray;
    const KEY: usize = size_of::<u32>();
    const VALUE: usize = size_of::<T>();
}

impl<K, V> Declared for HashMap<K, V> {
    const KIND: Kind = Kind::Hash;
    const KEY: usize = size_of::<K>();
    const VALUE: usize = size_of::<V>();
}

impl<K, V> Declared for LruHashMap<K, V> {
    const KIND: Kind = Kind::LruHash;
    const KEY: usize = size_of::<K>();
    const VALUE: usize = size_of::<V>();
}

impl<K, V> Declared for LpmTrie<K, V> {
    const KIND: Kind = Kind::LpmTrie;
    const KEY: usize = size_of::<Key<K>>();
    const VALUE: usize = size_of::<V>();
}

impl Declared for RingBuf {
    const KIND: Kind = Kind::RingBuf;
    const KEY: usize = 0;
    const VALUE: usize = 0;
}

/// The table's row of the map `name` declared as an `M`. Evaluated when the object
/// builds: a map the table lacks, or one whose kind, key or value size differs from its
/// row, fails the build.
pub const fn row<M: Declared>(name: &str) -> Def {
    let Some(d) = map::find(name) else {
        panic!("a map missing from the table in warden_common::map");
    };
    assert!(
        d.kind as u32 == M::KIND as u32,
        "a map's kind differs from its row in warden_common::map"
    );
    assert!(
        d.key_size as usize == M::KEY,
        "a map's key size differs from its row in warden_common::map"
    );
    assert!(
        d.value_size as usize == M::VALUE,
        "a map's value size differs from its row in warden_common::map"
    );
    d
}

// The table spells the kernel's flags as numbers.
const _: () = assert!(map::MMAPABLE == BPF_F_MMAPABLE);
const _: () = assert!(map::NO_PREALLOC == BPF_F_NO_PREALLOC);

/// Declares a map from its row of `warden_common::map`'s table: `NAME: Type =
/// Type::constructor`, the constructor taking the row's capacity and flags. The static's
/// name is the map's name in the object (aya names a map after its static).
macro_rules! abi_map {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $ctor:path;) => {
        $(#[$doc])*
        #[aya_ebpf::macros::map]
        pub static $name: $ty = {
            const ROW: warden_common::map::Def = $crate::maps::row::<$ty>(stringify!($name));
            $ctor(ROW.max_entries, ROW.flags)
        };
    };
}

pub mod facts;
pub mod metering;
pub mod policy;
pub mod runtime;
pub mod shaping;
