//! The peer-side sink (`xstack_sink`): drops IPv4 frames whose destination
//! lies in one prefix, and IPv6 frames whose destination lies in another,
//! as an upstream router drops traffic to spoofed,
//! unreachable sources. `xstack bench synflood` attaches it to the peer end
//! of the veth so SYN-ACKs reflected to the flood's spoofed sources never
//! reach the legit client's kernel, for every system alike. Everything
//! else passes.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

use crate::parse::{be16, be32, ptr_at, raw32, ETH_HLEN, ETH_P_IP, ETH_P_IPV6};

/// `[network, mask]`, host byte order; a zero mask drops nothing.
#[map]
static SINK_PREFIX: Array<u32> = Array::with_max_entries(2, 0);

/// IPv6: `[network, mask]`, each the 16 address bytes as four words in
/// memory order (as read from the frame); a zero mask drops nothing.
#[map]
static SINK_PREFIX6: Array<[u32; 4]> = Array::with_max_entries(2, 0);

/// `[dropped, passed]` frames.
#[map]
static SINK_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
fn bump(i: u32) {
    if let Some(c) = SINK_COUNTERS.get_ptr_mut(i) {
        // SAFETY: a per-CPU slot, only this CPU writes it.
        unsafe { *c += 1 };
    }
}

#[xdp]
pub fn xstack_sink(ctx: XdpContext) -> u32 {
    let Some(p) = ptr_at(&ctx, 0, ETH_HLEN + 20) else {
        bump(1);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: ptr_at checked Ethernet + 20 bytes of IPv4 header.
    let (ethertype, dst) = unsafe { (be16(p.add(12)), be32(p.add(ETH_HLEN + 16))) };
    if ethertype == ETH_P_IPV6 {
        return sink6(&ctx);
    }
    let net = SINK_PREFIX.get(0).copied().unwrap_or(0);
    let mask = SINK_PREFIX.get(1).copied().unwrap_or(0);
    if ethertype == ETH_P_IP && mask != 0 && dst & mask == net & mask {
        bump(0);
        return xdp_action::XDP_DROP;
    }
    bump(1);
    xdp_action::XDP_PASS
}

/// An IPv6 frame: dropped when its destination (bytes 24..40 of the
/// header, RFC 8200 §3) lies in `SINK_PREFIX6`.
#[inline(always)]
fn sink6(ctx: &XdpContext) -> u32 {
    let (Some(net), Some(mask), Some(p)) = (
        SINK_PREFIX6.get(0),
        SINK_PREFIX6.get(1),
        ptr_at(ctx, ETH_HLEN, 40),
    ) else {
        bump(1);
        return xdp_action::XDP_PASS;
    };
    let mut inside = mask[0] != 0;
    let mut i = 0;
    while i < 4 {
        // SAFETY: ptr_at checked the 40-byte IPv6 header.
        let w = unsafe { raw32(p.add(24 + 4 * i)) };
        inside &= w & mask[i] == net[i] & mask[i];
        i += 1;
    }
    if inside {
        bump(0);
        return xdp_action::XDP_DROP;
    }
    bump(1);
    xdp_action::XDP_PASS
}
