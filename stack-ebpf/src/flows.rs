//! The known-flow tables (`FLOWS` over IPv4, `FLOWS6` over IPv6, same
//! values) and the path of segments without SYN.
//!
//! Each table is an LRU: flows are recorded when a SYN goes to the engine,
//! when a SYN-ACK arrives for a connection the engine opened, and when a
//! cookie ACK validates; a cookie SYN leaves no trace here. A flood
//! of SYNs that reach the engine (not in cookie mode, within the rate
//! limits) can evict entries; an evicted flow's segments are then checked as
//! cookies while cookies are in use and dropped, and so is an established
//! flow that more connections than the table holds pushed out. Userspace
//! sizes both at load (`--xdp-max-flows`, default `MAX_FLOWS`) to hold
//! every connection the engines keep and the SYNs they may see in
//! `MAX_AGE` minutes.
//! "Cookies in use" is one clock for both families (the last cookie
//! SYN-ACK of either).
//!
//! A segment on a known 4-tuple goes to the engine unchecked, even while
//! cookies are in use: the final ACK of a cookie SYN-ACK sent on a 4-tuple
//! the engine holds (in TIME_WAIT, or half-open with its own SYN-ACK
//! lost) is the engine's to check as a cookie (`TcpEngine::handle`). The
//! SYN path once marked such entries so that XDP checked their ACKs: a
//! hint read per cookie SYN, which was 15% of its time under a spoofed
//! flood (238 → 202 ns, medians of 5 live runs at 1 Mpps), for a case
//! that comes once per reused 4-tuple.

use aya_ebpf::{bindings::xdp_action, helpers::generated as h, programs::XdpContext};
use stack_ebpf::{cookie, hint, Counter, Flow6Key, FlowKey, TcpClass};

use crate::classify::redirect;
use crate::maps::{class, FASTPATH_STATE, FILTER_UNTIL, FLOWS, FLOWS6, FLOW_HINTS};
use crate::parse::{opaque, ptr_at, raw16, raw32, ETH_HLEN, FIN, RST};
use crate::synack::{cookie_ack, cookie_ack6};

/// `FLOWS` value: the engine knows the 4-tuple.
const FLOW_KNOWN: u8 = 1;

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
        insert_flow(&k);
    }
}

/// Records `k` in `FLOWS`, its source's hint slot first (the hint never
/// misses a source that has an entry: [`stack_ebpf::hint`]).
#[inline(always)]
pub(crate) fn insert_flow(k: &FlowKey) {
    set_hint(hint::slot4(k.saddr));
    let _ = FLOWS.insert(k, &FLOW_KNOWN, 0);
}

/// [`insert_flow`] over IPv6.
#[inline(always)]
pub(crate) fn insert_flow6(k: &Flow6Key) {
    set_hint(hint::slot6(k.saddr));
    let _ = FLOWS6.insert(k, &FLOW_KNOWN, 0);
}

/// Sets the hint's bit of `slot`. An atomic OR (`BPF_ATOMIC | BPF_OR`):
/// two CPUs setting bits of the same word both keep theirs, so a source
/// with an entry never finds its bit clear.
#[inline(always)]
fn set_hint(slot: u32) {
    let (word, bit) = hint::word_bit(slot);
    if let Some(p) = FLOW_HINTS.get_ptr_mut(word) {
        // SAFETY: an array slot, 8-byte aligned, living as long as the
        // program; only ever accessed as a whole word or atomically.
        unsafe {
            if *p & bit == 0 {
                // The target has no `AtomicU64::fetch_or` (no CAS); the
                // intrinsic is the one instruction.
                core::intrinsics::atomic_or::<
                    u64,
                    u64,
                    { core::intrinsics::AtomicOrdering::Relaxed },
                >(p, bit);
            }
        }
    }
}

/// Whether a source with this slot may have a known flow: `false` means
/// it has none, and the table lookup can be skipped.
#[inline(always)]
fn may_be_known(slot: u32) -> bool {
    let (word, bit) = hint::word_bit(slot);
    match FLOW_HINTS.get(word) {
        Some(&v) => v & bit != 0,
        None => true,
    }
}

/// The class of a segment without SYN.
#[inline(always)]
fn class_of(f: u8, payload: usize) {
    class(if f & RST != 0 {
        TcpClass::Rst
    } else if f & FIN != 0 {
        TcpClass::Fin
    } else if payload > 0 {
        TcpClass::Data
    } else {
        TcpClass::Ack
    });
}

/// The time now (the coarse clock, `bpf_ktime_get_coarse_ns`: no
/// `rdtsc`; a tick behind at most, which no use here notices — the filter
/// lasts up to a tick longer, the cookie check counts its minute with
/// `cookie::check_count_from_coarse_ns`) if a cookie SYN-ACK (of either
/// family) was sent within a cookie's lifetime, or while userspace arms the
/// unknown-segment filter
/// (`FILTER_UNTIL` in the future: the engine sees a flood of segments for
/// no connection), else `None`: segments without SYN take the shortest
/// path. While `Some`, unknown ACKs that are no valid cookie and unknown
/// RSTs are dropped here unanswered instead of each costing the engine a
/// copy and an RST (RFC 9293 §3.10.7.1 answers a segment for no connection
/// with an RST; under a flood this drops it, as SYNPROXY's INVALID rule
/// does).
#[inline(always)]
fn cookies_in_use() -> Option<u64> {
    let last_cookie = match FASTPATH_STATE.get(0) {
        Some(s) => s.last_cookie_ns,
        None => 0,
    };
    let until = match FILTER_UNTIL.get(0) {
        Some(&t) => t,
        None => 0,
    };
    if last_cookie == 0 && until == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { h::bpf_ktime_get_coarse_ns() };
    if now < until {
        return Some(now);
    }
    // Saturating: the last cookie's time is the fine clock's when a SYN
    // limit is on (`FastpathConfig::syn_needs_fine_clock`), up to a tick
    // ahead of `now`.
    if last_cookie == 0 || now.saturating_sub(last_cookie) >= COOKIE_WINDOW_NS {
        return None;
    }
    Some(now)
}

/// Segments without SYN: the shortest path unless cookies are in use;
/// then a known flow goes to the engine (which checks a cookie ACK on a
/// 4-tuple it holds itself), an unknown one's ACK is checked as a cookie
/// here (`redirect_cookie_ack` or dropped by reason) and its RST dropped.
#[inline(always)]
pub(crate) fn established(ctx: &XdpContext, f: u8, payload: usize, off: usize) -> (u32, Counter) {
    class_of(f, payload);
    let Some(now) = cookies_in_use() else {
        return redirect(ctx, Counter::RedirectTcp);
    };
    let Some(key) = flow_key(ctx, off) else {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    };
    // SAFETY: map lookup of a plain key.
    if may_be_known(hint::slot4(key.saddr)) && unsafe { FLOWS.get(&key) }.is_some() {
        return redirect(ctx, Counter::RedirectTcp);
    }
    if f & RST != 0 {
        return (xdp_action::XDP_DROP, Counter::DropNoFlow);
    }
    match cookie_ack(ctx, off, &key, now) {
        Counter::RedirectCookieAck => redirect(ctx, Counter::RedirectCookieAck),
        c => (xdp_action::XDP_DROP, c),
    }
}

// --- IPv6: the same, on `FLOWS6`. `off` is the TCP header's offset in the
// frame, as over IPv4 (the IPv6 header is at ETH_HLEN, its extension
// headers before `off`).

#[inline(always)]
pub(crate) fn flow6_key(ctx: &XdpContext, off: usize) -> Option<Flow6Key> {
    let ip = ptr_at(ctx, ETH_HLEN, 40)?;
    let tcp = ptr_at(ctx, off, 4)?;
    // SAFETY: bounds checked above.
    unsafe {
        Some(Flow6Key {
            saddr: [
                raw32(ip.add(8)),
                raw32(ip.add(12)),
                raw32(ip.add(16)),
                raw32(ip.add(20)),
            ],
            daddr: [
                raw32(ip.add(24)),
                raw32(ip.add(28)),
                raw32(ip.add(32)),
                raw32(ip.add(36)),
            ],
            sport: raw16(tcp),
            dport: raw16(tcp.add(2)),
        })
    }
}

/// [`flow6_lookup`]: the segment is too short for its 4-tuple.
const FLOW6_TRUNCATED: u32 = 0x100;

/// The `FLOWS6` value of the segment's 4-tuple, 0 when it has none, or
/// [`FLOW6_TRUNCATED`]. The 36-byte key lives in this function's stack
/// frame, not in the program's (the frames share 512 bytes).
#[inline(never)]
fn flow6_lookup(ctx: &XdpContext, off: usize) -> u32 {
    let ctx = opaque(ctx);
    let Some(key) = flow6_key(ctx, off) else {
        return FLOW6_TRUNCATED;
    };
    if !may_be_known(hint::slot6(key.saddr)) {
        return 0;
    }
    // SAFETY: map lookup of a plain key.
    match unsafe { FLOWS6.get(&key) } {
        Some(&v) => u32::from(v),
        None => 0,
    }
}

/// Records the segment's 4-tuple in `FLOWS6` ([`insert_flow6`]). Not inlined, as
/// [`flow6_lookup`].
#[inline(never)]
fn flow6_set(ctx: &XdpContext, off: usize) -> u32 {
    let ctx = opaque(ctx);
    if let Some(k) = flow6_key(ctx, off) {
        insert_flow6(&k);
    }
    0
}

/// [`remember_flow`] over IPv6.
#[inline(always)]
pub(crate) fn remember_flow6(ctx: &XdpContext, off: usize) {
    flow6_set(ctx, off);
}

/// [`established`] over IPv6: the shortest path (`redirect_tcp6`) unless
/// cookies are in use; then a known flow goes on, and an unknown one's ACK
/// is checked as a cookie (`redirect_cookie_ack6` or dropped by reason).
#[inline(always)]
pub(crate) fn established6(ctx: &XdpContext, f: u8, payload: usize, off: usize) -> (u32, Counter) {
    class_of(f, payload);
    let Some(now) = cookies_in_use() else {
        return redirect(ctx, Counter::RedirectTcp6);
    };
    match flow6_lookup(ctx, off) {
        FLOW6_TRUNCATED => return (xdp_action::XDP_DROP, Counter::DropTcpTruncated),
        0 => {}
        _ => return redirect(ctx, Counter::RedirectTcp6),
    }
    if f & RST != 0 {
        return (xdp_action::XDP_DROP, Counter::DropNoFlow);
    }
    match cookie_ack6(ctx, off, now) {
        Counter::RedirectCookieAck6 => redirect(ctx, Counter::RedirectCookieAck6),
        c => (xdp_action::XDP_DROP, c),
    }
}
