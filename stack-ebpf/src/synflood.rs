//! The SYN path: deny/allow prefix lists, the per-source and global GCRA
//! token buckets, the SYN-rate window of `auto` cookie mode, and the
//! cookie-or-engine decision over IPv4 ([`syn`]) and IPv6 ([`syn6`]; its
//! lists and buckets are `classify6`'s).

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated as h,
    maps::{lpm_trie::Key as LpmKey, Array},
    programs::XdpContext,
};
use stack_ebpf::{
    limit, Counter, FastpathConfig, FastpathState, PrefixAddr, CFG_ALLOW_LIST, CFG_ALLOW_ONLY,
    CFG_COOKIE_VIA_ENGINE, CFG_DENY_LIST, CFG_TX_REDIRECT, SIGNAL_SYN_QUEUE_FULL,
    SYNCOOKIES_ALWAYS, SYNCOOKIES_AUTO, SYNCOOKIES_NEVER,
};

use crate::classify::redirect;
use crate::flows::{remember_flow, remember_flow6};
use crate::maps::{
    ALLOW_PREFIXES, DENY_PREFIXES, FASTPATH_CONFIG, FASTPATH_STATE, SIGNALS, SYN_SOURCES,
};
use crate::parse::{parse_options, ptr_at, raw32, TcpOpts, ETH_HLEN};
use crate::synack::{cookie_synack, cookie_synack6, mark_synack_for_engine};

/// The per-source limit ([`stack_ebpf::limit`]): whether a SYN of the
/// source whose cells in `map` are `cells` is admitted (by the least
/// charged of them; then both are charged). Two array slots, whatever the
/// source: no insert, no eviction, no lock.
#[inline(always)]
pub(crate) fn source_admitted(
    map: &Array<u64>,
    cells: [u32; 2],
    now: u64,
    cfg: &FastpathConfig,
) -> bool {
    let [i, j] = cells;
    let (Some(a), Some(b)) = (map.get_ptr_mut(i), map.get_ptr_mut(j)) else {
        return true;
    };
    // SAFETY: array slots live as long as the program; a CPU racing on the
    // same cell only makes the count approximate, as the global budget's.
    unsafe {
        match limit::admit(
            [*a, *b],
            now,
            cfg.source_interval_ns,
            cfg.source_tolerance_ns,
        ) {
            Some([x, y]) => {
                *a = x;
                *b = y;
                true
            }
            None => false,
        }
    }
}

/// The clock a SYN reads, once: the fine one only where the
/// configuration measures intervals shorter than a tick
/// ([`FastpathConfig::syn_needs_fine_clock`]), else the coarse one.
#[inline(always)]
pub(crate) fn syn_clock(cfg: &FastpathConfig) -> u64 {
    // SAFETY: helpers without arguments.
    unsafe {
        if cfg.syn_needs_fine_clock() {
            h::bpf_ktime_get_ns()
        } else {
            h::bpf_ktime_get_coarse_ns()
        }
    }
}

#[inline(always)]
fn prefix_key(saddr: u32) -> LpmKey<PrefixAddr> {
    LpmKey::new(32, saddr)
}

/// A SYN: flood checks, then cookie SYN-ACK or the engine.
#[inline(always)]
pub(crate) fn syn(
    ctx: &XdpContext,
    off: usize,
    ihl: usize,
    doff: usize,
    flags: u8,
) -> (u32, Counter) {
    let mut opts = MaybeUninit::<TcpOpts>::uninit();
    if parse_options(ctx, off, doff, &mut opts) != 0 {
        return (xdp_action::XDP_DROP, Counter::DropTcpOptions);
    }
    // SAFETY: `parse_options` returned 0: it wrote `opts`.
    let opts = unsafe { opts.assume_init_ref() };
    let Some(cfg) = FASTPATH_CONFIG.get(0) else {
        return redirect(ctx, Counter::RedirectTcp);
    };
    let Some(ip) = ptr_at(ctx, ETH_HLEN, 20) else {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    };
    // SAFETY: `ip` covers 20 bytes.
    let saddr = unsafe { raw32(ip.add(12)) };
    let mut limited = true;
    if cfg.flags & (CFG_ALLOW_LIST | CFG_ALLOW_ONLY) != 0 {
        // SAFETY: map lookup of a plain key.
        let allowed = ALLOW_PREFIXES.get(prefix_key(saddr)).is_some();
        if allowed {
            limited = false;
        } else if cfg.flags & CFG_ALLOW_ONLY != 0 {
            return (xdp_action::XDP_DROP, Counter::DropSynNotAllowed);
        }
    }
    if cfg.flags & CFG_DENY_LIST != 0 {
        // SAFETY: map lookup of a plain key.
        if DENY_PREFIXES.get(prefix_key(saddr)).is_some() {
            return (xdp_action::XDP_DROP, Counter::DropSynDenied);
        }
    }
    let now = syn_clock(cfg);
    let Some(state) = FASTPATH_STATE.get_ptr_mut(0) else {
        return redirect(ctx, Counter::RedirectTcp);
    };
    // SAFETY: the map value lives as long as the program; concurrent
    // updates from other CPUs only make the counts approximate.
    let state = unsafe { &mut *state };
    if limited
        && cfg.source_interval_ns != 0
        && !source_admitted(
            &SYN_SOURCES,
            limit::cells4(&cfg.source_key, saddr),
            now,
            cfg,
        )
    {
        return (xdp_action::XDP_DROP, Counter::DropSynSourceRate);
    }
    if limited && cfg.global_interval_ns != 0 {
        match limit::gcra(
            state.global_tat,
            now,
            cfg.global_interval_ns,
            cfg.global_tolerance_ns,
        ) {
            Some(t) => state.global_tat = t,
            None => return (xdp_action::XDP_DROP, Counter::DropSynGlobalRate),
        }
    }
    let cookies = match cfg.syncookies {
        SYNCOOKIES_ALWAYS => true,
        SYNCOOKIES_AUTO => auto_mode(cfg, state, now),
        _ => false,
    };
    if !cookies || cfg.syncookies == SYNCOOKIES_NEVER {
        remember_flow(ctx, off);
        return redirect(ctx, Counter::RedirectTcp);
    }
    if ihl != 20 {
        return (xdp_action::XDP_DROP, Counter::DropSynIpOptions);
    }
    let c = cookie_synack(ctx, cfg, opts, flags, now);
    if c != Counter::TxCookieSynAck {
        return (xdp_action::XDP_DROP, c);
    }
    state.last_cookie_ns = now;
    if cfg.flags & CFG_COOKIE_VIA_ENGINE != 0 {
        // The same frame, sent by the engine (AF_XDP TX) instead.
        if !mark_synack_for_engine(ctx) {
            return (xdp_action::XDP_DROP, Counter::DropSynAckBuild);
        }
        return redirect(ctx, Counter::RedirectCookieSynAck);
    }
    (send_back(ctx, cfg.flags), c)
}

/// The action that sends a SYN-ACK built in place back where the SYN came
/// from: `XDP_TX`, or with `CFG_TX_REDIRECT` a redirect to the ingress
/// interface.
#[inline(always)]
fn send_back(ctx: &XdpContext, flags: u32) -> u32 {
    if flags & CFG_TX_REDIRECT != 0 {
        let ifindex = ctx.ingress_ifindex() as u32;
        // SAFETY: plain helper call; XDP_REDIRECT on success.
        unsafe { aya_ebpf::helpers::bpf_redirect(ifindex, 0) as u32 }
    } else {
        xdp_action::XDP_TX
    }
}

/// An IPv6 SYN past its limits (`classify6`), the TCP header at frame
/// offset `off` with data offset `doff`; `ext`: extension headers precede
/// it. The same decision as [`syn`]: in cookie mode (`always`, or `auto`
/// by the same SYN-rate window, which both families feed) XDP answers it
/// with a cookie SYN-ACK, else its flow is recorded in `FLOWS6` and it
/// goes to the engine. The decision and the SYN-ACK are two calls from
/// here, not one inside the other: the program's frames share 512 bytes.
#[inline(always)]
pub(crate) fn syn6(
    ctx: &XdpContext,
    off: usize,
    doff: usize,
    flags: u8,
    ext: bool,
) -> (u32, Counter) {
    let mut out = Syn6Out {
        opts: MaybeUninit::uninit(),
        now: 0,
    };
    match syn6_verdict(ctx, off, doff, ext, &mut out) {
        Counter::TxCookieSynAck6 => {}
        Counter::RedirectTcp6 => return redirect(ctx, Counter::RedirectTcp6),
        c => return (xdp_action::XDP_DROP, c),
    }
    // SAFETY: the verdict is given after `parse_options` wrote `opts`.
    let c = cookie_synack6(ctx, unsafe { out.opts.assume_init_ref() }, flags, out.now);
    if c != Counter::TxCookieSynAck6 {
        return (xdp_action::XDP_DROP, c);
    }
    let cfg_flags = match FASTPATH_CONFIG.get(0) {
        Some(c) => c.flags,
        None => 0,
    };
    if cfg_flags & CFG_COOKIE_VIA_ENGINE != 0 {
        // The same frame, sent by the engine (AF_XDP TX) instead.
        if !mark_synack_for_engine(ctx) {
            return (xdp_action::XDP_DROP, Counter::DropSynAckBuild);
        }
        return redirect(ctx, Counter::RedirectCookieSynAck6);
    }
    (send_back(ctx, cfg_flags), c)
}

/// What [`syn6_verdict`] hands the SYN-ACK: one pointer (a BPF function
/// takes five arguments at most).
struct Syn6Out {
    /// The SYN's options, written when the verdict is a cookie.
    opts: MaybeUninit<TcpOpts>,
    /// The clock read for the SYN.
    now: u64,
}

/// [`syn6`]'s decision: `TxCookieSynAck6` when XDP is to answer with a
/// cookie (the SYN's options and the clock it read in `out`),
/// `RedirectTcp6` for the engine,
/// or a drop reason. Not inlined: its locals live in their own frame.
#[inline(never)]
fn syn6_verdict(
    ctx: &XdpContext,
    off: usize,
    doff: usize,
    ext: bool,
    out: &mut Syn6Out,
) -> Counter {
    let opts = &mut out.opts;
    if parse_options(ctx, off, doff, opts) != 0 {
        return Counter::DropTcpOptions;
    }
    let Some(cfg) = FASTPATH_CONFIG.get(0) else {
        return Counter::RedirectTcp6;
    };
    let Some(state) = FASTPATH_STATE.get_ptr_mut(0) else {
        return Counter::RedirectTcp6;
    };
    // SAFETY: as in `syn`.
    let state = unsafe { &mut *state };
    let now = syn_clock(cfg);
    // The SYN-ACK's clock too: one read per SYN.
    out.now = now;
    let cookies = match cfg.syncookies {
        SYNCOOKIES_ALWAYS => true,
        SYNCOOKIES_AUTO => auto_mode(cfg, state, now),
        _ => false,
    };
    if !cookies {
        remember_flow6(ctx, off);
        return Counter::RedirectTcp6;
    }
    if ext {
        return Counter::DropSynIpOptions;
    }
    Counter::TxCookieSynAck6
}

/// Auto mode: counts the SYN in the rate window and says whether cookies
/// are on (rate above `syn_on` until it falls below `syn_off`, or the
/// engine's SYN queue is full).
#[inline(always)]
fn auto_mode(cfg: &FastpathConfig, state: &mut FastpathState, now: u64) -> bool {
    // Saturating: a window started on the fine clock (a limit was on) and
    // read on the coarse one (up to a tick behind) has not ended.
    let elapsed = now.saturating_sub(state.window_start_ns);
    if elapsed >= cfg.window_ns {
        let syns = state.window_syns;
        // SYN/s over the window that ended (ns precision).
        state.last_rate = if elapsed > 0 {
            syns.wrapping_mul(1_000_000_000) / elapsed
        } else {
            0
        };
        let long_idle = elapsed / 2 >= cfg.window_ns;
        if state.cookie_active != 0 && (syns < cfg.syn_off || long_idle) {
            state.cookie_active = 0;
        }
        state.window_start_ns = now;
        state.window_syns = 0;
    }
    state.window_syns += 1;
    if state.cookie_active == 0 && state.window_syns >= cfg.syn_on {
        state.cookie_active = 1;
        state.cookie_on_switches += 1;
    }
    let queue_full = match SIGNALS.get(SIGNAL_SYN_QUEUE_FULL) {
        Some(v) => *v != 0,
        None => false,
    };
    state.cookie_active != 0 || queue_full
}
