//! IPv6 (RFC 8200): the bounded extension-header walk, neighbour
//! solicitations for owned addresses at their solicited-node group
//! (RFC 4861 §7.2.2, RFC 4291 §2.7.1), ICMPv6 and TCP for owned addresses.
//! TCP over IPv6 takes the IPv4 path with IPv6 keys: the same header and
//! flag checks; segments without SYN the known-flow fast path (`FLOWS6`,
//! keyed on the 128-bit 4-tuple) and, while cookies are in use, the cookie
//! check of the final ACK (`synack::cookie_ack6`); SYNs the allow/deny
//! LPM tries (`ALLOW_PREFIXES6`, `DENY_PREFIXES6`), the per-source token
//! bucket (one per source prefix, a /64 by default: an IPv6 attacker owns
//! whole /64s) and the global SYN budget it shares with IPv4, then the
//! cookie decision of `synflood::syn6` (the `auto` SYN-rate window is one
//! for both families): a cookie SYN-ACK built in place
//! (`synack::cookie_synack6`; a SYN with extension headers is dropped in
//! cookie mode, as an IPv4 SYN with options is), or the engine.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use aya_ebpf::{helpers::generated as h, maps::lpm_trie::Key as LpmKey};
use stack_ebpf::{
    addr6_probe, ipv6_prefix, limit, port_bit, Addr6Key, AddrProbe, Counter, TcpClass,
    ADDR_ALL_TCP, ADDR_ARP, ADDR_ICMP, ADDR_SLOT_SHIFT, CFG_ALLOW_LIST, CFG_ALLOW_ONLY,
    CFG_DENY_LIST, IPV6_MAX_EXT_BYTES, IPV6_MAX_EXT_HEADERS,
};

use crate::classify::{flags_verdict, redirect};
use crate::flows::{established6, remember_flow6};
use crate::maps::{
    class, ALLOW_PREFIXES6, DENY_PREFIXES6, FASTPATH_CONFIG, FASTPATH_STATE, OWNED_ADDR_TABLE6,
    OWNED_PORT_BITS6, SYN_SOURCES6,
};
use crate::parse::{be16, ptr_at, raw32, ACK, ETH_HLEN, FIN, IPPROTO_TCP, PSH, RST, SYN, URG};
use crate::synflood::{source_admitted, syn6};

const IP6_HLEN: usize = 40;
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_ICMPV6: u8 = 58;
const NH_DEST_OPTS: u8 = 60;
const ICMPV6_NS: u8 = 135;

#[inline(always)]
fn addr_at(p: *const u8) -> Addr6Key {
    // SAFETY: callers pass pointers to 16 checked bytes.
    unsafe {
        Addr6Key {
            addr: [raw32(p), raw32(p.add(4)), raw32(p.add(8)), raw32(p.add(12))],
        }
    }
}

/// Whether `a` is a solicited-node multicast address, ff02::1:ffXX:XXXX.
#[inline(always)]
fn is_solicited_node(a: &Addr6Key) -> bool {
    let w = a.addr;
    u32::from_be(w[0]) == 0xff02_0000
        && w[1] == 0
        && u32::from_be(w[2]) == 1
        && u32::from_be(w[3]) >> 24 == 0xff
}

/// The `ADDR_*` flags of the owned IPv6 address `addr`, or `None` when
/// it is not ours: array loads only, as over IPv4.
#[inline(always)]
fn owned6(addr: &Addr6Key) -> Option<u32> {
    let a = addr.addr;
    match owned6_flags(a[0], a[1], a[2], a[3]) {
        0 => None,
        flags => Some(flags),
    }
}

/// [`owned6`]'s probe, in a function of its own (a call, its own small
/// frame) shared by its two callers (the destination, a solicitation's
/// target). Inlined twice, its eight unrolled 16-byte compares grew the
/// program's main function by 476 instructions (229 this way) and the
/// IPv4 RST row of `xstack bench cookies` read 59 ns (median of 8
/// alternated runs; the IPv4 path's instructions unchanged, so layout)
/// where it reads 50 this way; the IPv6 flood's XDP ns per packet is the
/// same either way, within noise.
#[inline(never)]
fn owned6_flags(a0: u32, a1: u32, a2: u32, a3: u32) -> u32 {
    let key = Addr6Key {
        addr: [a0, a1, a2, a3],
    };
    match addr6_probe(&key, |i| OWNED_ADDR_TABLE6.get(i).copied()) {
        // Never 0: `ADDR_IN_USE` is set.
        AddrProbe::Found(_, flags) => flags,
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn classify_ipv6(ctx: &XdpContext) -> (u32, Counter) {
    let Some(ip) = ptr_at(ctx, ETH_HLEN, IP6_HLEN) else {
        return (xdp_action::XDP_PASS, Counter::PassIpv6NotOwned);
    };
    // SAFETY: `ip` covers 40 bytes.
    let (ver, payload_len, nh, dst) =
        unsafe { (*ip >> 4, be16(ip.add(4)), *ip.add(6), addr_at(ip.add(24))) };
    let Some(flags) = owned6(&dst) else {
        if nh == NH_ICMPV6 && is_solicited_node(&dst) {
            return solicitation(ctx);
        }
        return (xdp_action::XDP_PASS, Counter::PassIpv6NotOwned);
    };
    let frame_ip_len = ctx.data_end() - ctx.data() - ETH_HLEN;
    let total = IP6_HLEN + payload_len as usize;
    if ver != 6 || total > frame_ip_len {
        return (xdp_action::XDP_DROP, Counter::DropIpv6Header);
    }
    // The bounded walk (RFC 8200 §4.1): hop-by-hop, routing and
    // destination options, each (len + 1) * 8 bytes, to the upper layer.
    let mut nh = nh;
    let mut off = IP6_HLEN;
    let mut i = 0;
    while i <= IPV6_MAX_EXT_HEADERS {
        match nh {
            NH_FRAGMENT => return (xdp_action::XDP_DROP, Counter::DropIpv6Fragment),
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                if i == IPV6_MAX_EXT_HEADERS || off > IP6_HLEN + IPV6_MAX_EXT_BYTES {
                    return (xdp_action::XDP_DROP, Counter::DropIpv6ExtChain);
                }
                let Some(h) = ptr_at(ctx, ETH_HLEN + off, 2) else {
                    return (xdp_action::XDP_DROP, Counter::DropIpv6ExtTruncated);
                };
                // SAFETY: `h` covers 2 bytes.
                let (next, len) = unsafe { (*h, *h.add(1)) };
                off += (len as usize + 1) * 8;
                if off > total {
                    return (xdp_action::XDP_DROP, Counter::DropIpv6ExtTruncated);
                }
                nh = next;
            }
            _ => break,
        }
        i += 1;
    }
    if off > IP6_HLEN + IPV6_MAX_EXT_BYTES {
        return (xdp_action::XDP_DROP, Counter::DropIpv6ExtChain);
    }
    match nh {
        IPPROTO_TCP => classify_tcp6(ctx, off, total, flags),
        NH_ICMPV6 if flags & ADDR_ICMP != 0 => redirect(ctx, Counter::RedirectIcmpv6),
        _ => (xdp_action::XDP_PASS, Counter::PassIpv6OtherProto),
    }
}

/// A neighbour solicitation to a solicited-node group (right after the
/// fixed header): to the engine when its target is an owned address.
#[inline(always)]
fn solicitation(ctx: &XdpContext) -> (u32, Counter) {
    let Some(icmp) = ptr_at(ctx, ETH_HLEN + IP6_HLEN, 24) else {
        return (xdp_action::XDP_PASS, Counter::PassIpv6NotOwned);
    };
    // SAFETY: `icmp` covers 24 bytes: type, code, checksum, reserved, target.
    let (kind, target) = unsafe { (*icmp, addr_at(icmp.add(8))) };
    if kind != ICMPV6_NS {
        return (xdp_action::XDP_PASS, Counter::PassIpv6NotOwned);
    }
    match owned6(&target) {
        Some(f) if f & ADDR_ARP != 0 => redirect(ctx, Counter::RedirectNdp),
        _ => (xdp_action::XDP_PASS, Counter::PassIpv6NotOwned),
    }
}

/// RFC 9293 §3.1 header checks over IPv6: the segment at `off` (from the
/// IPv6 header) in a packet of `total` bytes, to the owned address whose
/// table entry has `addr_flags`: its port is owned when its bit is set in
/// the address's slot of `OWNED_PORT_BITS6`.
#[inline(always)]
fn classify_tcp6(ctx: &XdpContext, off: usize, total: usize, addr_flags: u32) -> (u32, Counter) {
    let Some(tcp) = ptr_at(ctx, ETH_HLEN + off, 20) else {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    };
    if total < off + 20 {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    }
    // SAFETY: `tcp` covers 20 bytes.
    let (dport, doff, flags) =
        unsafe { (be16(tcp.add(2)), (*tcp.add(12) >> 4) as usize, *tcp.add(13)) };
    let (word, bit) = port_bit(addr_flags >> ADDR_SLOT_SHIFT, dport);
    let port_owned = match OWNED_PORT_BITS6.get(word) {
        Some(w) => *w & bit != 0,
        None => false,
    };
    if !port_owned && addr_flags & ADDR_ALL_TCP == 0 {
        return (xdp_action::XDP_PASS, Counter::PassIpv6PortNotOwned);
    }
    if doff < 5 || off + doff * 4 > total {
        return (xdp_action::XDP_DROP, Counter::DropTcpDataOffset);
    }
    if let Some(drop) = flags_verdict(flags) {
        return (xdp_action::XDP_DROP, drop);
    }
    if !port_owned {
        // A closed port of an address that is the engine's alone: it
        // answers RST; no flow table, limits or cookies.
        return redirect(ctx, Counter::RedirectTcp6);
    }
    let f = flags & (FIN | SYN | RST | PSH | ACK | URG);
    // The TCP header's offset in the frame, as over IPv4.
    let toff = ETH_HLEN + off;
    if f & SYN == 0 {
        let payload = total - off - doff * 4;
        return established6(ctx, f, payload, toff);
    }
    if f & ACK != 0 {
        // SYN-ACK for a connection the engine opened.
        class(TcpClass::SynAck);
        remember_flow6(ctx, toff);
        return redirect(ctx, Counter::RedirectTcp6);
    }
    class(TcpClass::Syn);
    match syn_limits(ctx) {
        LIMIT_SOURCE => (xdp_action::XDP_DROP, Counter::DropSynSourceRate),
        LIMIT_GLOBAL => (xdp_action::XDP_DROP, Counter::DropSynGlobalRate),
        LIMIT_DENIED => (xdp_action::XDP_DROP, Counter::DropSynDenied),
        LIMIT_NOT_ALLOWED => (xdp_action::XDP_DROP, Counter::DropSynNotAllowed),
        _ => syn6(ctx, toff, doff, flags, off != IP6_HLEN),
    }
}

/// The SYN limits over IPv6: the source prefix's token bucket, then the
/// global budget (shared with IPv4). Returns 0, [`LIMIT_SOURCE`] or
/// [`LIMIT_GLOBAL`]. Not inlined: its locals (the source, the bucket key)
/// live in their own stack frame, not in the program's, which the IPv4
/// path fills.
#[inline(never)]
fn syn_limits(ctx: &XdpContext) -> u32 {
    match syn_limits_inner(ctx) {
        Some(Counter::DropSynSourceRate) => LIMIT_SOURCE,
        Some(Counter::DropSynDenied) => LIMIT_DENIED,
        Some(Counter::DropSynNotAllowed) => LIMIT_NOT_ALLOWED,
        Some(_) => LIMIT_GLOBAL,
        None => 0,
    }
}

/// [`syn_limits`]: over the source prefix's bucket.
const LIMIT_SOURCE: u32 = 1;
/// [`syn_limits`]: over the global budget.
const LIMIT_GLOBAL: u32 = 2;
/// [`syn_limits`]: on the deny list.
const LIMIT_DENIED: u32 = 3;
/// [`syn_limits`]: not on the allow list, in allow-only mode.
const LIMIT_NOT_ALLOWED: u32 = 4;

#[inline(always)]
fn syn_limits_inner(ctx: &XdpContext) -> Option<Counter> {
    let cfg = FASTPATH_CONFIG.get(0)?;
    let lists = cfg.flags & (CFG_ALLOW_LIST | CFG_ALLOW_ONLY | CFG_DENY_LIST);
    if cfg.source_interval_ns == 0 && cfg.global_interval_ns == 0 && lists == 0 {
        return None;
    }
    let p = ptr_at(ctx, ETH_HLEN + 8, 16)?;
    let src = addr_at(p);
    if lists != 0 {
        let mut bytes = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let b = src.addr[i].to_ne_bytes();
            bytes[i * 4] = b[0];
            bytes[i * 4 + 1] = b[1];
            bytes[i * 4 + 2] = b[2];
            bytes[i * 4 + 3] = b[3];
            i += 1;
        }
        let key = LpmKey::new(128, bytes);
        if cfg.flags & (CFG_ALLOW_LIST | CFG_ALLOW_ONLY) != 0 {
            if ALLOW_PREFIXES6.get(&key).is_some() {
                return None;
            }
            if cfg.flags & CFG_ALLOW_ONLY != 0 {
                return Some(Counter::DropSynNotAllowed);
            }
        }
        if cfg.flags & CFG_DENY_LIST != 0 && DENY_PREFIXES6.get(&key).is_some() {
            return Some(Counter::DropSynDenied);
        }
    }
    if cfg.source_interval_ns == 0 && cfg.global_interval_ns == 0 {
        return None;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { h::bpf_ktime_get_ns() };
    if cfg.source_interval_ns != 0 {
        let prefix = ipv6_prefix(src.addr, cfg.source6_prefix_len);
        let cells = limit::cells6(&cfg.source_key, prefix);
        if !source_admitted(&SYN_SOURCES6, cells, now, cfg) {
            return Some(Counter::DropSynSourceRate);
        }
    }
    if cfg.global_interval_ns != 0 {
        let state = FASTPATH_STATE.get_ptr_mut(0)?;
        // SAFETY: the map value lives as long as the program; concurrent
        // updates from other CPUs only make the budget approximate.
        let state = unsafe { &mut *state };
        match limit::gcra(
            state.global_tat,
            now,
            cfg.global_interval_ns,
            cfg.global_tolerance_ns,
        ) {
            Some(t) => state.global_tat = t,
            None => return Some(Counter::DropSynGlobalRate),
        }
    }
    None
}
