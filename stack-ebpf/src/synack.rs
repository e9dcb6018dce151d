//! The SYN cookie handshake in XDP, over IPv4 and IPv6: the SYN turned into
//! a cookie SYN-ACK in place, and the final ACK's cookie checked. The TCP
//! header and the restored options are the same for both families; only
//! the IP header, the pseudo-header and the cookie's flow differ.
//!
//! Named `synack`, not `cookie`, so it is not mistaken for the library's
//! `stack_ebpf::cookie` (the cookie arithmetic both sides share); this
//! module only moves bytes around it. The program's call frames share 512
//! bytes of stack, so the builders keep little in theirs: addresses and
//! MACs are swapped where they lie in the frame, the TCP header is written
//! straight into it and summed from there, and the hash runs in a frame of
//! its own (`cookie_isn`, `cookie_isn6`).

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{helpers::generated as h, programs::XdpContext};
use stack_ebpf::{
    cookie::{self, Flow, Flow6Words},
    CookieMeta, Counter, FastpathConfig, FlowKey, CFG_ECN, COOKIE_META_LEN, COOKIE_META_MAGIC,
    COOKIE_META_SYNACK, META_ECN, META_NO_WSCALE, META_SACK, META_TS,
};

use crate::flows::{flow6_key, insert_flow, insert_flow6};
use crate::maps::{FASTPATH_CONFIG, FASTPATH_STATE, SECRETS};
use crate::parse::{
    be16, be32, opaque, parse_options, ptr_at, TcpOpts, ACK, CWR, ECE, ETH_HLEN, IPPROTO_TCP,
    OPT_SACK, OPT_TS, OPT_WSCALE, SYN,
};

#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// What the TCP header of a cookie SYN-ACK holds besides the
/// configuration, the same over IPv4 and IPv6.
#[derive(Clone, Copy)]
struct SynAck {
    /// Our port, the client's.
    ports: (u16, u16),
    /// The cookie.
    isn: u32,
    /// The SYN's sequence number + 1.
    ack: u32,
    /// MSS announced (the family's).
    mss: u32,
    /// SYN | ACK, with ECE when ECN is negotiated.
    flags: u8,
    /// Header length: 24, or 40 with timestamps.
    len: usize,
    /// SACK-permitted (with timestamps only).
    sack: bool,
    /// Window scale (with timestamps only): our shift, `cfg.wscale`.
    wscale: bool,
    /// Our TSval, the options in its low bits.
    tsval: u32,
    /// The SYN's TSval.
    tsecr: u32,
}

/// The cookie SYN-ACK's TCP fields for a SYN with options `opts`:
/// timestamps carrying the options as Linux `cookie_init_timestamp`.
#[inline(always)]
fn synack(
    cfg: &FastpathConfig,
    opts: &TcpOpts,
    syn_flags: u8,
    now: u64,
    mss: u32,
    isn: u32,
    ports: (u16, u16),
    seq: u32,
) -> SynAck {
    let ecn = cfg.flags & CFG_ECN != 0 && syn_flags & (ECE | CWR) == ECE | CWR;
    // Without timestamps a cookie carries only the MSS (as in Linux).
    let has_ts = opts.has & OPT_TS != 0;
    let sack = opts.has & OPT_SACK != 0;
    let has_ws = opts.has & OPT_WSCALE != 0;
    // The client's shift, as Linux caps it (RFC 7323 §2.3).
    let client_ws = if has_ws {
        Some(if opts.wscale > 14 {
            14
        } else {
            opts.wscale as u8
        })
    } else {
        None
    };
    SynAck {
        ports,
        isn,
        ack: seq.wrapping_add(1),
        mss,
        flags: SYN | ACK | if ecn { ECE } else { 0 },
        len: if has_ts { 40 } else { 24 },
        sack,
        wscale: has_ws,
        tsval: cookie::encode_ts((now / 1_000_000) as u32, client_ws, sack, ecn),
        tsecr: opts.tsval,
    }
}

#[inline(always)]
unsafe fn put16(t: *mut u8, at: usize, v: u16) {
    // SAFETY: callers checked `at + 2` bytes at `t`.
    unsafe {
        *t.add(at) = (v >> 8) as u8;
        *t.add(at + 1) = v as u8;
    }
}

#[inline(always)]
unsafe fn put32(t: *mut u8, at: usize, v: u32) {
    // SAFETY: as `put16`.
    unsafe {
        put16(t, at, (v >> 16) as u16);
        put16(t, at + 2, v as u16);
    }
}

/// The 32-bit word `v` as two 16-bit words of a ones' complement sum.
#[inline(always)]
fn words(v: u32) -> u64 {
    u64::from(v >> 16) + u64::from(v & 0xffff)
}

/// The ones' complement sum (RFC 1071), not yet folded, of the TCP header
/// [`write_tcp`] writes for `a` with its checksum field zero, taken from
/// the values it writes rather than read back from the frame: the same
/// 16-bit words, term for term.
#[inline(always)]
fn tcp_sum(cfg: &FastpathConfig, a: &SynAck) -> u64 {
    let mut sum = u64::from(a.ports.0)
        + u64::from(a.ports.1)
        + words(a.isn)
        + words(a.ack)
        + u64::from((((a.len / 4) as u16) << 12) | u16::from(a.flags))
        + u64::from(cfg.window as u16)
        + 0x0204
        + u64::from(a.mss as u16);
    if a.len == 40 {
        sum += if a.sack { 0x0402 } else { 0x0101 };
        sum += 0x080a + words(a.tsval) + words(a.tsecr);
        sum += if a.wscale {
            0x0103 + u64::from(0x0300 | (cfg.wscale as u16 & 0xff))
        } else {
            0x0202
        };
    }
    sum
}

/// Writes the TCP header of `a` at `ETH_HLEN + ip_len` of the resized
/// frame, its checksum over `pseudo` (the pseudo-header's addresses and
/// protocol: RFC 9293 §3.1) and [`tcp_sum`] of the header. False when
/// the frame is shorter than that.
#[inline(always)]
fn write_tcp(
    ctx: &XdpContext,
    ip_len: usize,
    cfg: &FastpathConfig,
    a: &SynAck,
    pseudo: u64,
) -> bool {
    let check = fold(pseudo + a.len as u64 + tcp_sum(cfg, a));
    let start = ctx.data();
    if start + ETH_HLEN + ip_len + 24 > ctx.data_end() {
        return false;
    }
    let t = (start + ETH_HLEN + ip_len) as *mut u8;
    // SAFETY: 24 bytes checked above.
    unsafe {
        put16(t, 0, a.ports.1);
        put16(t, 2, a.ports.0);
        put32(t, 4, a.isn);
        put32(t, 8, a.ack);
        put16(t, 12, (((a.len / 4) as u16) << 12) | u16::from(a.flags));
        put16(t, 14, cfg.window as u16);
        put16(t, 16, check);
        put16(t, 18, 0);
        // MSS (RFC 9293 §3.7.1).
        put16(t, 20, 0x0204);
        put16(t, 22, a.mss as u16);
    }
    if a.len == 40 {
        let start = ctx.data();
        if start + ETH_HLEN + ip_len + 40 > ctx.data_end() {
            return false;
        }
        let t = (start + ETH_HLEN + ip_len) as *mut u8;
        // SAFETY: 40 bytes checked above.
        unsafe {
            // SACK-permitted + timestamps (RFC 2018, RFC 7323), then
            // window scale when offered.
            put16(t, 24, if a.sack { 0x0402 } else { 0x0101 });
            put16(t, 26, 0x080a);
            put32(t, 28, a.tsval);
            put32(t, 32, a.tsecr);
            if a.wscale {
                put16(t, 36, 0x0103);
                put16(t, 38, 0x0300 | (cfg.wscale as u16 & 0xff));
            } else {
                put32(t, 36, 0x0101_0101);
            }
        }
    }
    true
}

/// The frame's length. Through a volatile read: the verifier refuses
/// arithmetic on the end pointer, which the compiler otherwise folds the
/// subtraction into (`new - (end - start)` as `new - end + start`).
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    let len = ctx.data_end() - ctx.data();
    // SAFETY: reading a local.
    unsafe { read_volatile(&len) }
}

/// Makes the frame `new_len` bytes long (`bpf_xdp_adjust_tail`); no
/// helper call when it already is (a SYN with MSS alone and its SYN-ACK
/// without timestamps are both 58 bytes). False when the kernel refuses.
#[inline(always)]
fn resize(ctx: &XdpContext, new_len: usize) -> bool {
    let delta = new_len as i32 - frame_len(ctx) as i32;
    if delta == 0 {
        return true;
    }
    // SAFETY: the context pointer is the program's own.
    unsafe { h::bpf_xdp_adjust_tail(ctx.ctx, delta) == 0 }
}

/// The MSS index a cookie carries: the client's MSS clamped to `ours`
/// (0: no clamp).
#[inline(always)]
fn clamped_index(ours: u32, theirs: u32) -> u32 {
    let clamp = if ours != 0 && ours < theirs {
        ours
    } else {
        theirs
    };
    cookie::mss_index(clamp.min(0xffff) as u16)
}

/// The 128-bit address at `q` as the two words of [`Flow6Words`].
#[inline(always)]
fn addr_at(q: *const u8) -> [u64; 2] {
    let word = |q: *const u8| (u64::from(be32(q)) << 32) | u64::from(be32(q.wrapping_add(4)));
    [word(q), word(q.wrapping_add(8))]
}

/// The cookie for the IPv6 SYN in `ctx` (no extension headers), over both
/// 128-bit addresses ([`Flow6Words`], the engine's `Flow6` cookie), or
/// `u64::MAX` without secrets. Not inlined: the hash's spills live in its
/// own stack frame (inlined, [`cookie_synack6`]'s frame grew from 144 to
/// 416 bytes, over the program's 512 with the main frame's).
#[inline(never)]
fn cookie_isn6(ctx: &XdpContext, mss_idx: u32, now: u64) -> u64 {
    let ctx = opaque(ctx);
    let Some(secrets) = SECRETS.get(0) else {
        return u64::MAX;
    };
    let Some(p) = ptr_at(ctx, ETH_HLEN, 48) else {
        return u64::MAX;
    };
    // SAFETY: `p` covers the IPv6 header and the TCP ports and sequence.
    let (flow, seq) = unsafe {
        (
            Flow6Words {
                saddr: addr_at(p.add(8)),
                daddr: addr_at(p.add(24)),
                sport: be16(p.add(40)),
                dport: be16(p.add(42)),
            },
            be32(p.add(44)),
        )
    };
    u64::from(cookie::generate(
        &secrets.current,
        &flow,
        seq,
        cookie::count_from_ns(now),
        mss_idx,
    ))
}

/// Turns the SYN into a SYN-ACK whose ISN is a cookie (Linux
/// `cookie_v4_init_sequence` + `cookie_init_timestamp`) and sends it back
/// on the interface it came from. The cookie's one SipHash is computed
/// here, with no call of its own. Not inlined itself: with its 248-byte
/// frame in the program's, the IPv6 call chains pass the 512 bytes the
/// verifier allows.
#[inline(never)]
pub(crate) fn cookie_synack(
    ctx: &XdpContext,
    cfg: &FastpathConfig,
    opts: &TcpOpts,
    syn_flags: u8,
    now: u64,
) -> Counter {
    // Read what the SYN-ACK needs from the SYN (IHL is 5 here); the
    // addresses and MACs are swapped where they are.
    let Some(p) = ptr_at(ctx, 0, ETH_HLEN + 40) else {
        return Counter::DropTcpTruncated;
    };
    // SAFETY: `p` covers the Ethernet, IPv4 and TCP fixed headers.
    let (saddr, daddr, sport, dport, seq) = unsafe {
        (
            be32(p.add(26)),
            be32(p.add(30)),
            be16(p.add(34)),
            be16(p.add(36)),
            be32(p.add(38)),
        )
    };
    // The addresses' words: the pseudo-header's and the IP header's sum.
    let addrs = words(saddr) + words(daddr);
    let Some(secrets) = SECRETS.get(0) else {
        return Counter::DropSynAckBuild;
    };
    let flow = Flow {
        saddr,
        daddr,
        sport,
        dport,
    };
    let isn = cookie::generate(
        &secrets.current,
        &flow,
        seq,
        cookie::count_from_ns(now),
        clamped_index(cfg.mss, opts.mss),
    );
    let a = synack(cfg, opts, syn_flags, now, cfg.mss, isn, (sport, dport), seq);
    let tcp_len = a.len;
    if !resize(ctx, ETH_HLEN + 20 + tcp_len) {
        return Counter::DropSynAckBuild;
    }
    let start = ctx.data();
    if start + ETH_HLEN + 20 > ctx.data_end() {
        return Counter::DropSynAckBuild;
    }
    let w = start as *mut u8;
    // IPv4 (RFC 791): no options, DF, TTL, TCP, the addresses swapped; its
    // checksum summed from these values, not read back.
    let ttl_proto = ((cfg.ttl as u16 & 0xff) << 8) | IPPROTO_TCP as u16;
    let ipsum = fold(0x4500 + (20 + tcp_len) as u64 + 0x4000 + u64::from(ttl_proto) + addrs);
    // SAFETY: 34 bytes checked above; the front of the frame is the SYN's.
    unsafe {
        swap_macs(w);
        *w.add(12) = 0x08;
        *w.add(13) = 0x00;
        let ip = w.add(ETH_HLEN);
        put16(ip, 0, 0x4500);
        put16(ip, 2, (20 + tcp_len) as u16);
        put32(ip, 4, 0x0000_4000);
        put16(ip, 8, ttl_proto);
        put16(ip, 10, ipsum);
        swap_bytes(ip.add(12), ip.add(16), 4);
    }
    // The pseudo-header (RFC 9293 §3.1): the same addresses.
    if !write_tcp(ctx, 20, cfg, &a, u64::from(IPPROTO_TCP) + addrs) {
        return Counter::DropSynAckBuild;
    }
    Counter::TxCookieSynAck
}

/// Swaps `n` bytes at `a` and `b`, one byte of each at a time (volatile:
/// plain moves get all bytes loaded, and spilled, before the first store).
///
/// # Safety
/// `a` and `b` point to `n` checked, writable bytes.
#[inline(always)]
unsafe fn swap_bytes(a: *mut u8, b: *mut u8, n: usize) {
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe {
            let x = read_volatile(a.add(i));
            write_volatile(a.add(i), read_volatile(b.add(i)));
            write_volatile(b.add(i), x);
        }
    }
}

/// Ethernet back to the sender: the frame's MACs swapped.
///
/// # Safety
/// `w` points to a checked Ethernet header.
#[inline(always)]
unsafe fn swap_macs(w: *mut u8) {
    // SAFETY: per the contract.
    unsafe { swap_bytes(w, w.add(6), 6) }
}

/// The sum of `n` big-endian 16-bit words at `p`, through a volatile
/// accumulator (plain adds are deferred, and the bytes spilled, to sum
/// them as a tree).
///
/// # Safety
/// `p` points to `2 * n` checked bytes.
#[inline(always)]
unsafe fn sum16(p: *const u8, n: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        // SAFETY: per the contract; `sum` is a local.
        unsafe {
            let q = p.add(2 * i);
            let v = u64::from(read_volatile(q)) << 8 | u64::from(read_volatile(q.add(1)));
            write_volatile(&mut sum, read_volatile(&sum) + v);
        }
    }
    sum
}

/// [`cookie_synack`] over IPv6 (Linux `cookie_v6_init_sequence`): the SYN
/// (no extension headers) turned into a SYN-ACK in place, the cookie over
/// both 128-bit addresses ([`Flow6Words`], the same cookie as the engine's
/// `Flow6`), MSS MTU − 60 (`cfg.mss` − 20) and the client's clamped to
/// it, hop limit `cfg.ttl`, the TCP checksum over the IPv6 pseudo-header
/// (RFC 8200 §8.1). The addresses and MACs are swapped where they are.
/// Reads the configuration itself and takes the clock its caller read for
/// the SYN (`now`: one read per SYN), and on success records the cookie's
/// time (`last_cookie_ns`): its caller's frame stays small.
#[inline(never)]
pub(crate) fn cookie_synack6(ctx: &XdpContext, opts: &TcpOpts, syn_flags: u8, now: u64) -> Counter {
    let Some(cfg) = FASTPATH_CONFIG.get(0) else {
        return Counter::DropSynAckBuild;
    };
    // Ethernet, the 40-byte IPv6 header, then TCP at 54.
    let Some(p) = ptr_at(ctx, 0, ETH_HLEN + 60) else {
        return Counter::DropTcpTruncated;
    };
    // SAFETY: `p` covers the Ethernet, IPv6 and TCP fixed headers.
    let (sport, dport, seq) = unsafe { (be16(p.add(54)), be16(p.add(56)), be32(p.add(58))) };
    let mss = if cfg.mss > 20 { cfg.mss - 20 } else { 0 };
    let isn = cookie_isn6(ctx, clamped_index(mss, opts.mss), now);
    if isn > u64::from(u32::MAX) {
        return Counter::DropSynAckBuild;
    }
    let a = synack(
        cfg,
        opts,
        syn_flags,
        now,
        mss,
        isn as u32,
        (sport, dport),
        seq,
    );
    let tcp_len = a.len;
    if !resize(ctx, ETH_HLEN + 40 + tcp_len) {
        return Counter::DropSynAckBuild;
    }
    let start = ctx.data();
    if start + ETH_HLEN + 40 > ctx.data_end() {
        return Counter::DropSynAckBuild;
    }
    let w = start as *mut u8;
    let mut pseudo = u64::from(IPPROTO_TCP);
    // SAFETY: 54 bytes checked above; the front of the frame is the SYN's.
    unsafe {
        swap_macs(w);
        // IPv6 (RFC 8200 §3): traffic class and flow label 0, payload
        // length, next header TCP, hop limit, the addresses swapped.
        let ip = w.add(ETH_HLEN);
        put32(ip, 0, 0x6000_0000);
        put16(ip, 4, tcp_len as u16);
        *ip.add(6) = IPPROTO_TCP;
        *ip.add(7) = cfg.ttl as u8;
        swap_bytes(ip.add(8), ip.add(24), 16);
        // The pseudo-header (RFC 8200 §8.1): the same addresses.
        pseudo += sum16(ip.add(8), 16);
    }
    if !write_tcp(ctx, 40, cfg, &a, pseudo) {
        return Counter::DropSynAckBuild;
    }
    if let Some(state) = FASTPATH_STATE.get_ptr_mut(0) {
        // SAFETY: the map value lives as long as the program.
        unsafe { (*state).last_cookie_ns = now };
    }
    Counter::TxCookieSynAck6
}

/// Puts [`COOKIE_META_SYNACK`] in the metadata area in front of the cookie
/// SYN-ACK [`cookie_synack`] built, for the engine to send it through
/// AF_XDP TX (`CFG_COOKIE_VIA_ENGINE`). False when there is no headroom.
#[inline(always)]
pub(crate) fn mark_synack_for_engine(ctx: &XdpContext) -> bool {
    // SAFETY: the context pointer is the program's own.
    if unsafe { h::bpf_xdp_adjust_meta(ctx.ctx, -(COOKIE_META_LEN as i32)) } != 0 {
        return false;
    }
    let m = ctx.metadata();
    if m + COOKIE_META_LEN > ctx.data() {
        return false;
    }
    // Word by word, volatile: a `CookieMeta` written whole had its 12
    // zero bytes set by a call of the BPF `memset` (a byte loop) on every
    // cookie SYN-ACK sent this way.
    let w = m as *mut u32;
    // SAFETY: the metadata area was just grown to COOKIE_META_LEN (16)
    // bytes and checked against `data`; `CookieMeta` is four words,
    // `magic` first, the rest zero here.
    unsafe {
        write_volatile(w, COOKIE_META_SYNACK);
        write_volatile(w.add(1), 0);
        write_volatile(w.add(2), 0);
        write_volatile(w.add(3), 0);
    }
    true
}

/// The options a valid cookie restores, from the final ACK at `off` (its
/// TSecr carries them when timestamps are on; Linux
/// `cookie_timestamp_decode`), as the metadata the engine reads.
#[inline(always)]
fn restored(
    ctx: &XdpContext,
    off: usize,
    doff: usize,
    mss_idx: u32,
) -> Result<CookieMeta, Counter> {
    let mut opts = core::mem::MaybeUninit::<TcpOpts>::uninit();
    if parse_options(ctx, off, doff, &mut opts) != 0 {
        return Err(Counter::DropTcpOptions);
    }
    // SAFETY: `parse_options` returned 0: it wrote `opts`.
    let opts = unsafe { opts.assume_init_ref() };
    let mut meta = CookieMeta {
        magic: COOKIE_META_MAGIC,
        mss: cookie::MSS_TABLE[(mss_idx & 3) as usize],
        wscale: META_NO_WSCALE,
        flags: 0,
        tsval: 0,
        tsecr: 0,
    };
    if opts.has & OPT_TS != 0 {
        let Some(o) = cookie::decode_ts(opts.tsecr, mss_idx) else {
            return Err(Counter::DropCookieInvalid);
        };
        meta.wscale = match o.wscale {
            Some(w) => w,
            None => META_NO_WSCALE,
        };
        meta.flags =
            META_TS | if o.sack { META_SACK } else { 0 } | if o.ecn { META_ECN } else { 0 };
        meta.tsval = opts.tsval;
        meta.tsecr = opts.tsecr;
    }
    Ok(meta)
}

/// Puts `meta` in front of the frame. False only when the metadata area
/// cannot be checked against the data; without headroom it is left out
/// (true: the engine re-checks the cookie).
#[inline(always)]
fn put_meta(ctx: &XdpContext, meta: CookieMeta) -> bool {
    // SAFETY: the context pointer is the program's own.
    if unsafe { h::bpf_xdp_adjust_meta(ctx.ctx, -(COOKIE_META_LEN as i32)) } != 0 {
        return true;
    }
    let m = ctx.metadata();
    if m + COOKIE_META_LEN > ctx.data() {
        return false;
    }
    // SAFETY: the metadata area was just grown to COOKIE_META_LEN bytes
    // and checked against `data`.
    unsafe { core::ptr::write_unaligned(m as *mut CookieMeta, meta) };
    true
}

/// An ACK for no known flow while cookies are in use: the final ACK of a
/// cookie handshake if its cookie checks (Linux `cookie_v4_check`). `now`
/// is the coarse clock's (`flows::cookies_in_use`).
#[inline(never)]
pub(crate) fn cookie_ack(ctx: &XdpContext, off: usize, key: &FlowKey, now: u64) -> Counter {
    let Some(secrets) = SECRETS.get(0) else {
        return Counter::DropCookieInvalid;
    };
    let Some(t) = ptr_at(ctx, off, 20) else {
        return Counter::DropTcpTruncated;
    };
    // SAFETY: `t` covers 20 bytes.
    let (seq, ack, doff) = unsafe { (be32(t.add(4)), be32(t.add(8)), (*t.add(12) >> 4) as usize) };
    let flow = Flow {
        saddr: u32::from_be(key.saddr),
        daddr: u32::from_be(key.daddr),
        sport: u16::from_be(key.sport),
        dport: u16::from_be(key.dport),
    };
    let Some(mss_idx) = cookie::check(
        secrets,
        &flow,
        seq.wrapping_sub(1),
        ack.wrapping_sub(1),
        cookie::check_count_from_coarse_ns(now),
    ) else {
        return Counter::DropCookieInvalid;
    };
    let meta = match restored(ctx, off, doff, mss_idx) {
        Ok(m) => m,
        Err(c) => return c,
    };
    insert_flow(key);
    if !put_meta(ctx, meta) {
        return Counter::DropCookieInvalid;
    }
    Counter::RedirectCookieAck
}

/// An address kept as [`stack_ebpf::Addr6Key`] words (wire bytes in
/// memory) as the two big-endian words of [`Flow6Words`].
#[inline(always)]
fn addr_words(w: &[u32; 4]) -> [u64; 2] {
    [
        (u64::from(u32::from_be(w[0])) << 32) | u64::from(u32::from_be(w[1])),
        (u64::from(u32::from_be(w[2])) << 32) | u64::from(u32::from_be(w[3])),
    ]
}

/// [`cookie_ack`] over IPv6 (Linux `cookie_v6_check`): the cookie over
/// both 128-bit addresses; the segment at frame offset `off`. Reads its
/// `FLOWS6` key itself: none lives in the program's main frame.
#[inline(never)]
pub(crate) fn cookie_ack6(ctx: &XdpContext, off: usize, now: u64) -> Counter {
    let Some(secrets) = SECRETS.get(0) else {
        return Counter::DropCookieInvalid;
    };
    let Some(key) = flow6_key(ctx, off) else {
        return Counter::DropTcpTruncated;
    };
    let key = &key;
    let Some(t) = ptr_at(ctx, off, 20) else {
        return Counter::DropTcpTruncated;
    };
    // SAFETY: `t` covers 20 bytes.
    let (seq, ack, doff) = unsafe { (be32(t.add(4)), be32(t.add(8)), (*t.add(12) >> 4) as usize) };
    let flow = Flow6Words {
        saddr: addr_words(&key.saddr),
        daddr: addr_words(&key.daddr),
        sport: u16::from_be(key.sport),
        dport: u16::from_be(key.dport),
    };
    let Some(mss_idx) = cookie::check(
        secrets,
        &flow,
        seq.wrapping_sub(1),
        ack.wrapping_sub(1),
        cookie::check_count_from_coarse_ns(now),
    ) else {
        return Counter::DropCookieInvalid;
    };
    let meta = match restored(ctx, off, doff, mss_idx) {
        Ok(m) => m,
        Err(c) => return c,
    };
    insert_flow6(key);
    if !put_meta(ctx, meta) {
        return Counter::DropCookieInvalid;
    }
    Counter::RedirectCookieAck6
}
