//! The known-flow table (`FLOWS`) and the path of segments without SYN.
//!
//! `FLOWS` is an LRU: flows are recorded when a SYN goes to the engine, when
//! a SYN-ACK arrives for a connection the engine opened, and when a cookie
//! ACK validates; a cookie SYN only marks an existing entry. A flood of SYNs
//! that reach the engine (not in cookie mode, within the rate limits) can
//! evict entries; an evicted flow's segments are then checked as cookies
//! while cookies are in use and dropped. Size it (`MAX_FLOWS`) above the SYNs
//! the engine may see in `MAX_AGE` minutes.

use aya_ebpf::{bindings::xdp_action, helpers::generated as h, programs::XdpContext};
use stack_ebpf::{cookie, Counter, FlowKey, TcpClass};

use crate::classify::redirect;
use crate::maps::{class, FASTPATH_STATE, FLOWS};
use crate::parse::{ptr_at, raw16, raw32, ETH_HLEN, FIN, RST};
use crate::synack::cookie_ack;

/// `FLOWS` value: the engine knows the 4-tuple.
pub(crate) const FLOW_KNOWN: u8 = 1;
/// `FLOWS` value: the engine knows the 4-tuple, and the last SYN on it
/// was answered here with a cookie (see [`mark_cookie_answered`]).
const FLOW_COOKIE_SYN: u8 = 2;
/// `bpf_map_update_elem` flag: update an existing entry only.
const BPF_EXIST: u64 = 2;

/// Nanoseconds in a cookie's lifetime.
const COOKIE_WINDOW_NS: u64 = cookie::MAX_AGE as u64 * 60_000_000_000;

#[inline(always)]
fn flow_key(ctx: &XdpContext, off: usize) -> Option<FlowKey> {
    let ip = ptr_at(ctx, ETH_HLEN, 20)?;
    let tcp = ptr_at(ctx, off, 4)?;
    // SAFETY: bounds checked above.
    unsafe {
        Some(FlowKey {
            saddr: raw32(ip.add(12)),
            daddr: raw32(ip.add(16)),
            sport: raw16(tcp),
            dport: raw16(tcp.add(2)),
        })
    }
}

#[inline(always)]
pub(crate) fn remember_flow(ctx: &XdpContext, off: usize) {
    if let Some(k) = flow_key(ctx, off) {
        let _ = FLOWS.insert(&k, &FLOW_KNOWN, 0);
    }
}

/// A SYN answered with a cookie on a 4-tuple the engine knows (an old
/// incarnation in TIME_WAIT, or a handshake of its own whose SYN-ACK
/// was lost and whose SYN this is a retransmission of): mark the entry
/// so that the next segments are checked as cookies first, and a valid
/// final ACK reaches the engine with its metadata instead of being taken
/// for a segment of the old connection. A segment that fails the check
/// still goes to the engine (see [`established`]): the client may have
/// taken the engine's own SYN-ACK, which can arrive before the cookie
/// one. Deleting the entry instead dropped that client's every segment
/// as a bad cookie until it timed out, and left the engine's request
/// half-open. Tuples without an entry get none: a cookie SYN creates
/// no state here.
#[inline(always)]
pub(crate) fn mark_cookie_answered(ctx: &XdpContext, off: usize) {
    if let Some(k) = flow_key(ctx, off) {
        let _ = FLOWS.insert(&k, &FLOW_COOKIE_SYN, BPF_EXIST);
    }
}

/// Segments without SYN: the shortest path unless cookies are in use.
#[inline(always)]
pub(crate) fn established(ctx: &XdpContext, f: u8, payload: usize, off: usize) -> (u32, Counter) {
    class(if f & RST != 0 {
        TcpClass::Rst
    } else if f & FIN != 0 {
        TcpClass::Fin
    } else if payload > 0 {
        TcpClass::Data
    } else {
        TcpClass::Ack
    });
    let last_cookie = match FASTPATH_STATE.get(0) {
        Some(s) => s.last_cookie_ns,
        None => 0,
    };
    if last_cookie == 0 {
        return redirect(ctx, Counter::RedirectTcp);
    }
    // SAFETY: helper without arguments.
    let now = unsafe { h::bpf_ktime_get_ns() };
    if now.wrapping_sub(last_cookie) >= COOKIE_WINDOW_NS {
        return redirect(ctx, Counter::RedirectTcp);
    }
    let Some(key) = flow_key(ctx, off) else {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    };
    // SAFETY: map lookup of a plain key.
    let known = match unsafe { FLOWS.get(&key) } {
        Some(&v) if v == FLOW_COOKIE_SYN => true,
        Some(_) => return redirect(ctx, Counter::RedirectTcp),
        None => false,
    };
    if f & RST != 0 {
        if known {
            return redirect(ctx, Counter::RedirectTcp);
        }
        return (xdp_action::XDP_DROP, Counter::DropNoFlow);
    }
    match cookie_ack(ctx, off, &key, now) {
        Counter::RedirectCookieAck => redirect(ctx, Counter::RedirectCookieAck),
        // Not our cookie, but a 4-tuple the engine knows: its business.
        Counter::DropCookieInvalid if known => redirect(ctx, Counter::RedirectTcp),
        c => (xdp_action::XDP_DROP, c),
    }
}
