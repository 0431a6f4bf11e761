//! The enforcing programs: one thin entry per hook and direction, all calling the same
//! path ([`enforce::handle`]) with the direction as a constant.
//!
//! | hook        | host mode        | gateway mode     |
//! |-------------|------------------|------------------|
//! | XDP ingress | `xdp_to_tenant`  | `xdp_from_tenant`|
//! | tcx egress  | `tc_from_tenant` | `tc_to_tenant`   |

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use warden_common::direction;

use crate::{
    capture,
    enforce::{self, Capture, Verdict},
    hook::{TcHook, XdpHook},
    lookup,
};

#[inline(always)]
fn xdp_verdict(v: Verdict) -> u32 {
    match v {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn tc_verdict(v: Verdict) -> i32 {
    match v {
        // TCX_NEXT: let later programs in the tcx chain see the packet too.
        Verdict::Pass => TC_ACT_UNSPEC,
        Verdict::Drop => TC_ACT_SHOT,
    }
}

#[inline(always)]
pub fn xdp_handle<const DIR: u32>(ctx: &XdpContext) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let len = (data_end - data) as u64;
    let mut to_capture = Capture::NONE;
    let hook = XdpHook(ctx.ctx);
    let verdict = enforce::handle::<DIR, _>(&hook, data, data_end, len, &mut to_capture);
    if to_capture.tenant != lookup::NONE {
        capture::warden_capture_xdp(ctx.ctx, to_capture.tenant, to_capture.now, DIR, len);
    }
    xdp_verdict(verdict)
}

#[inline(always)]
fn tc_handle<const DIR: u32>(ctx: &TcContext) -> i32 {
    let len = ctx.len();
    // Headers of locally built or GRO'd skbs can sit outside the linear area;
    // pull enough of them to parse, once, only when they are not there yet.
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < enforce::PARSE_DEPTH && len > linear {
        let want = if len < enforce::PARSE_DEPTH {
            len
        } else {
            enforce::PARSE_DEPTH
        };
        // A failed pull leaves the skb as it was; the parser then sees a short frame.
        let _ = ctx.pull_data(want);
    }
    let mut to_capture = Capture::NONE;
    let hook = TcHook(ctx.as_ptr().cast());
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let verdict = enforce::handle::<DIR, _>(&hook, data, data_end, len.into(), &mut to_capture);
    if to_capture.tenant != lookup::NONE {
        capture::warden_capture_tc(hook.0, to_capture.tenant, to_capture.now, DIR, len.into());
    }
    tc_verdict(verdict)
}

/// XDP on a gateway's tenant-facing interface: arriving traffic is from the tenant.
#[xdp]
pub fn xdp_from_tenant(ctx: XdpContext) -> u32 {
    xdp_handle::<{ direction::OUT }>(&ctx)
}

/// XDP on a host's NIC: arriving traffic is for the tenant.
#[xdp]
pub fn xdp_to_tenant(ctx: XdpContext) -> u32 {
    xdp_handle::<{ direction::IN }>(&ctx)
}

/// tcx egress on a host's NIC: leaving traffic is from the tenant.
#[classifier]
pub fn tc_from_tenant(ctx: TcContext) -> i32 {
    tc_handle::<{ direction::OUT }>(&ctx)
}

/// tcx egress on a gateway's tenant-facing interface: leaving traffic is for the tenant.
#[classifier]
pub fn tc_to_tenant(ctx: TcContext) -> i32 {
    tc_handle::<{ direction::IN }>(&ctx)
}
