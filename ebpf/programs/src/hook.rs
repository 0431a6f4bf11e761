//! The hook's context, through which the global functions (facts, suspension, the
//! claim check, shaping) read the packet, and the interface the packet is on.

use aya_ebpf::bindings::{__sk_buff, xdp_md};
use warden_common::direction;

use crate::{
    enforce,
    facts::{
        warden_facts_from_tenant_tc, warden_facts_from_tenant_xdp, warden_facts_to_tenant_tc,
        warden_facts_to_tenant_xdp,
    },
    neighbour,
};

/// A hook's context, which the global functions take to read the packet; `headers` is
/// where its headers are (`facts::pack_headers`, `neighbour::pack`).
///
/// The to-tenant fact functions take no SYN key: LLVM leaves an argument the callee never
/// reads unset at the call, and the verifier refuses an unset argument register.
pub trait Hook {
    /// Runs the facts of a packet going `DIR` (see `facts::record` for the arguments).
    fn facts<const DIR: u32>(&self, tenant_gen: u32, headers: u64, now: u64, syn_key: u64);
    /// The interface the packet arrived on (XDP) or leaves by (tc).
    fn ifindex(&self) -> u32;
    /// The verdict on a frame of a suspended tenant (`neighbour::suspended`): true to
    /// pass it; a drop is counted.
    fn suspended_passes<const DIR: u32>(&self, tenant: u32, headers: u64) -> bool;
    /// Whether a from-tenant claim names a MAC other than its frame's source
    /// (`neighbour::names_foreign_mac`).
    fn foreign_mac(&self, headers: u64) -> bool;
    /// Whether this hook's packets meet a qdisc next (tc), so [`Hook::shape`] can queue
    /// them; XDP's cannot.
    const QUEUES: bool;
    /// Puts the packet of shaped tenant `tenant` into the queue of its flow's leaf class
    /// (`skb->priority`, from its first leaf class `first`: `enforce::spread`); true
    /// when this hook can (tc: its packets meet a qdisc next), false when it cannot
    /// (XDP).
    fn shape(&self, tenant: u32, first: u32) -> bool;
}

/// An XDP hook's context.
pub struct XdpHook(pub *mut xdp_md);
/// A tc hook's context.
pub struct TcHook(pub *mut __sk_buff);

impl Hook for XdpHook {
    const QUEUES: bool = false;

    #[inline(always)]
    fn facts<const DIR: u32>(&self, tenant_gen: u32, headers: u64, now: u64, syn_key: u64) {
        if DIR == direction::OUT {
            warden_facts_from_tenant_xdp(self.0, tenant_gen, headers, now, syn_key);
        } else {
            warden_facts_to_tenant_xdp(self.0, tenant_gen, headers, now);
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the kernel's xdp_md for this run.
        unsafe { (*self.0).ingress_ifindex }
    }

    #[inline(always)]
    fn suspended_passes<const DIR: u32>(&self, tenant: u32, headers: u64) -> bool {
        let r = if DIR == direction::OUT {
            neighbour::warden_suspended_from_tenant_xdp(self.0, tenant, headers)
        } else {
            neighbour::warden_suspended_to_tenant_xdp(self.0, tenant, headers)
        };
        r != 0
    }

    #[inline(always)]
    fn foreign_mac(&self, headers: u64) -> bool {
        neighbour::warden_foreign_mac_xdp(self.0, headers) != 0
    }

    #[inline(always)]
    fn shape(&self, _tenant: u32, _first: u32) -> bool {
        false
    }
}

impl Hook for TcHook {
    const QUEUES: bool = true;

    #[inline(always)]
    fn facts<const DIR: u32>(&self, tenant_gen: u32, headers: u64, now: u64, syn_key: u64) {
        if DIR == direction::OUT {
            warden_facts_from_tenant_tc(self.0, tenant_gen, headers, now, syn_key);
        } else {
            warden_facts_to_tenant_tc(self.0, tenant_gen, headers, now);
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the kernel's __sk_buff for this run.
        unsafe { (*self.0).ifindex }
    }

    #[inline(always)]
    fn suspended_passes<const DIR: u32>(&self, tenant: u32, headers: u64) -> bool {
        let r = if DIR == direction::OUT {
            neighbour::warden_suspended_from_tenant_tc(self.0, tenant, headers)
        } else {
            neighbour::warden_suspended_to_tenant_tc(self.0, tenant, headers)
        };
        r != 0
    }

    #[inline(always)]
    fn foreign_mac(&self, headers: u64) -> bool {
        neighbour::warden_foreign_mac_tc(self.0, headers) != 0
    }

    #[inline(always)]
    fn shape(&self, tenant: u32, first: u32) -> bool {
        enforce::warden_shape_tc(self.0, tenant, first);
        true
    }
}
