//! The SYN cookie handshake in XDP: the SYN turned into a cookie SYN-ACK in
//! place, and the final ACK's cookie checked. Named `synack`, not `cookie`,
//! so it is not mistaken for the library's `stack_ebpf::cookie` (the cookie
//! arithmetic both sides share); this module only moves bytes around it.

use aya_ebpf::{helpers::generated as h, programs::XdpContext};
use stack_ebpf::{
    cookie::{self, Flow},
    CookieMeta, Counter, FastpathConfig, FlowKey, CFG_ECN, COOKIE_META_LEN, COOKIE_META_MAGIC,
    COOKIE_META_SYNACK, META_ECN, META_NO_WSCALE, META_SACK, META_TS,
};

use crate::flows::FLOW_KNOWN;
use crate::maps::{FLOWS, SECRETS};
use crate::parse::{
    be16, be32, parse_options, ptr_at, TcpOpts, ACK, CWR, ECE, ETH_HLEN, IPPROTO_TCP, OPT_SACK,
    OPT_TS, OPT_WSCALE, SYN,
};

#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Turns the SYN into a SYN-ACK whose ISN is a cookie (Linux
/// `cookie_v4_init_sequence` + `cookie_init_timestamp`) and sends it back
/// on the interface it came from.
#[inline(never)]
pub(crate) fn cookie_synack(
    ctx: &XdpContext,
    cfg: &FastpathConfig,
    opts: &TcpOpts,
    syn_flags: u8,
    now: u64,
) -> Counter {
    let Some(secrets) = SECRETS.get(0) else {
        return Counter::DropSynAckBuild;
    };
    // Read everything needed from the SYN (IHL is 5 here).
    let Some(p) = ptr_at(ctx, 0, ETH_HLEN + 40) else {
        return Counter::DropTcpTruncated;
    };
    // SAFETY: `p` covers the Ethernet, IPv4 and TCP fixed headers.
    let (dmac, smac, saddr, daddr, sport, dport, seq) = unsafe {
        (
            [*p, *p.add(1), *p.add(2), *p.add(3), *p.add(4), *p.add(5)],
            [
                *p.add(6),
                *p.add(7),
                *p.add(8),
                *p.add(9),
                *p.add(10),
                *p.add(11),
            ],
            be32(p.add(26)),
            be32(p.add(30)),
            be16(p.add(34)),
            be16(p.add(36)),
            be32(p.add(38)),
        )
    };
    let clamp = if cfg.mss != 0 && cfg.mss < opts.mss {
        cfg.mss
    } else {
        opts.mss
    };
    let mss_idx = cookie::mss_index(clamp.min(0xffff) as u16);
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
        mss_idx,
    );
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
    let tsval = cookie::encode_ts((now / 1_000_000) as u32, client_ws, sack, ecn);
    let tsecr = opts.tsval;
    let tcp_len: usize = if has_ts { 40 } else { 24 };
    let new_len = ETH_HLEN + 20 + tcp_len;
    let old_len = ctx.data_end() - ctx.data();
    // SAFETY: the context pointer is the program's own.
    let rc = unsafe { h::bpf_xdp_adjust_tail(ctx.ctx, new_len as i32 - old_len as i32) };
    if rc != 0 {
        return Counter::DropSynAckBuild;
    }
    let start = ctx.data();
    if start + ETH_HLEN + 20 + 24 > ctx.data_end() {
        return Counter::DropSynAckBuild;
    }
    let w = start as *mut u8;
    // SAFETY: 58 bytes checked above; the 40-byte TCP variant is checked
    // again before its options are written.
    unsafe {
        // Ethernet: back to the sender.
        for i in 0..6 {
            *w.add(i) = smac[i];
            *w.add(6 + i) = dmac[i];
        }
        *w.add(12) = 0x08;
        *w.add(13) = 0x00;
        // IPv4 (RFC 791): no options, DF, checksum below.
        let ip = w.add(ETH_HLEN);
        let total = (20 + tcp_len) as u16;
        let hdr: [u16; 10] = [
            0x4500,
            total,
            0,
            0x4000,
            ((cfg.ttl as u16 & 0xff) << 8) | IPPROTO_TCP as u16,
            0,
            (daddr >> 16) as u16,
            daddr as u16,
            (saddr >> 16) as u16,
            saddr as u16,
        ];
        let mut sum = 0u64;
        for i in 0..10 {
            sum += u64::from(hdr[i]);
        }
        let ipsum = fold(sum);
        for i in 0..10 {
            let v = if i == 5 { ipsum } else { hdr[i] };
            *ip.add(2 * i) = (v >> 8) as u8;
            *ip.add(2 * i + 1) = v as u8;
        }
        // TCP header.
        let t = ip.add(20);
        let mut words = [0u16; 20];
        words[0] = dport;
        words[1] = sport;
        words[2] = (isn >> 16) as u16;
        words[3] = isn as u16;
        let ack = seq.wrapping_add(1);
        words[4] = (ack >> 16) as u16;
        words[5] = ack as u16;
        let fl = SYN | ACK | if ecn { ECE } else { 0 };
        words[6] = (((tcp_len / 4) as u16) << 12) | u16::from(fl);
        words[7] = cfg.window as u16;
        // words[8] checksum, words[9] urgent pointer: 0.
        // MSS (RFC 9293 §3.7.1).
        words[10] = 0x0204;
        words[11] = cfg.mss as u16;
        if has_ts {
            // SACK-permitted + timestamps (RFC 2018, RFC 7323), then
            // window scale when offered.
            words[12] = if sack { 0x0402 } else { 0x0101 };
            words[13] = 0x080a;
            words[14] = (tsval >> 16) as u16;
            words[15] = tsval as u16;
            words[16] = (tsecr >> 16) as u16;
            words[17] = tsecr as u16;
            if has_ws {
                words[18] = 0x0103;
                words[19] = 0x0300 | (cfg.wscale as u16 & 0xff);
            } else {
                words[18] = 0x0101;
                words[19] = 0x0101;
            }
        }
        // Pseudo-header (RFC 9293 §3.1) + segment; unused words are 0.
        let mut sum = u64::from(daddr >> 16)
            + u64::from(daddr & 0xffff)
            + u64::from(saddr >> 16)
            + u64::from(saddr & 0xffff)
            + u64::from(IPPROTO_TCP)
            + tcp_len as u64;
        for i in 0..20 {
            sum += u64::from(words[i]);
        }
        words[8] = fold(sum);
        for i in 0..12 {
            *t.add(2 * i) = (words[i] >> 8) as u8;
            *t.add(2 * i + 1) = words[i] as u8;
        }
        if tcp_len == 40 {
            let start = ctx.data();
            if start + ETH_HLEN + 20 + 40 > ctx.data_end() {
                return Counter::DropSynAckBuild;
            }
            let t = (start + ETH_HLEN + 20) as *mut u8;
            for i in 12..20 {
                *t.add(2 * i) = (words[i] >> 8) as u8;
                *t.add(2 * i + 1) = words[i] as u8;
            }
        }
    }
    Counter::TxCookieSynAck
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
    let meta = CookieMeta {
        magic: COOKIE_META_SYNACK,
        ..CookieMeta::default()
    };
    // SAFETY: the metadata area was just grown to COOKIE_META_LEN bytes and
    // checked against `data`.
    unsafe { core::ptr::write_unaligned(m as *mut CookieMeta, meta) };
    true
}

/// An ACK for no known flow while cookies are in use: the final ACK of a
/// cookie handshake if its cookie checks (Linux `cookie_v4_check`).
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
    let client_isn = seq.wrapping_sub(1);
    let Some(mss_idx) = cookie::check(
        secrets,
        &flow,
        client_isn,
        ack.wrapping_sub(1),
        cookie::count_from_ns(now),
    ) else {
        return Counter::DropCookieInvalid;
    };
    let mut opts = TcpOpts::default();
    if parse_options(ctx, off, doff, &mut opts) != 0 {
        return Counter::DropTcpOptions;
    }
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
            return Counter::DropCookieInvalid;
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
    let _ = FLOWS.insert(key, &FLOW_KNOWN, 0);
    // SAFETY: the context pointer is the program's own.
    if unsafe { h::bpf_xdp_adjust_meta(ctx.ctx, -(COOKIE_META_LEN as i32)) } != 0 {
        // No headroom for metadata: the engine re-checks the cookie.
        return Counter::RedirectCookieAck;
    }
    let m = ctx.metadata();
    if m + COOKIE_META_LEN > ctx.data() {
        return Counter::DropCookieInvalid;
    }
    // SAFETY: the metadata area was just grown to COOKIE_META_LEN bytes
    // and checked against `data`.
    unsafe { core::ptr::write_unaligned(m as *mut CookieMeta, meta) };
    Counter::RedirectCookieAck
}
