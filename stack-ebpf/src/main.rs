//! The xstack XDP program.
//!
//! Parses Ethernet / ARP / IPv4 / TCP with explicit bounds checks and decides:
//! - TCP to an owned (address, port), ARP requests and ICMP for an owned
//!   address: redirect through `XSKS` to the AF_XDP socket of the rx queue;
//! - malformed packets to an owned address: drop, counted by reason;
//! - everything else: `XDP_PASS`, so the kernel keeps all traffic that is not
//!   xstack's (xstack never eats a packet it cannot attribute to itself).
//!
//! TCP for an owned (address, port) is classed by its flags. Invalid flag
//! combinations are dropped by reason. Segments without SYN (established
//! flows) take the shortest path: while no SYN cookie was issued in the last
//! `cookie::MAX_AGE` minutes they go straight to the socket; otherwise a
//! lookup in the known-flow table (`FLOWS`) separates established flows from
//! final ACKs of cookie handshakes, whose cookie is checked here: valid ones
//! are redirected with the restored options in the XDP metadata
//! ([`CookieMeta`]), invalid ones dropped — unless the 4-tuple is one the
//! engine knows whose last SYN got a cookie, which the engine may still own
//! (its own SYN-ACK can win the race against the cookie SYN-ACK).
//!
//! SYNs pay for the flood checks: deny/allow prefix lists (LPM tries), a
//! per-source token bucket (GCRA in an LRU hash), a global SYN budget, and the
//! SYN-rate window that switches `auto` mode to cookies (with hysteresis, or
//! when userspace signals a full SYN queue). In cookie mode the SYN is turned
//! into a SYN-ACK in place and sent back with `XDP_TX`; otherwise its flow is
//! recorded in `FLOWS` and it goes to the engine.
//!
//! `FLOWS` is an LRU: flows are recorded when a SYN goes to the engine, when
//! a SYN-ACK arrives for a connection the engine opened, and when a cookie
//! ACK validates; a cookie SYN only marks an existing entry. A flood of SYNs that reach the engine (not in cookie mode,
//! within the rate limits) can evict entries; an evicted flow's segments are
//! then checked as cookies while cookies are in use and dropped. Size it
//! (`MAX_FLOWS`) above the SYNs the engine may see in `MAX_AGE` minutes.
//!
//! Built only for `bpfel-unknown-none` (by `cargo xtask build`); on the host
//! this file compiles to an empty binary so `cargo build --workspace` works.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("stack-ebpf is an XDP program; build it with `cargo xtask build`");
}

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::generated as h,
        macros::{map, xdp},
        maps::{lpm_trie::Key as LpmKey, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use aya_log_ebpf::debug;
    use stack_ebpf::{
        cookie::{self, Flow, Secrets},
        AddrKey, CookieMeta, Counter, FastpathConfig, FastpathState, FlowKey, PortKey, PrefixAddr,
        TcpClass, ADDR_ARP, ADDR_ICMP, CFG_ALLOW_LIST, CFG_ALLOW_ONLY, CFG_DENY_LIST, CFG_ECN,
        CFG_TX_REDIRECT, COOKIE_META_LEN, COOKIE_META_MAGIC, COUNTER_COUNT, MAX_FLOWS,
        MAX_OWNED_ADDRS, MAX_OWNED_PORTS, MAX_PREFIXES, MAX_QUEUES, MAX_SYN_SOURCES, META_ECN,
        META_NO_WSCALE, META_SACK, META_TS, SIGNAL_COUNT, SIGNAL_SYN_QUEUE_FULL, SYNCOOKIES_ALWAYS,
        SYNCOOKIES_AUTO, SYNCOOKIES_NEVER, TCP_CLASS_COUNT,
    };

    /// One AF_XDP socket per rx queue, indexed by queue id.
    #[map]
    static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    /// Verdict and drop-reason counters, indexed by [`Counter`].
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

    /// TCP segments by class, indexed by [`TcpClass`].
    #[map]
    static TCP_CLASSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(TCP_CLASS_COUNT, 0);

    /// Packets redirected, per rx queue.
    #[map]
    static QUEUE_REDIRECTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_QUEUES, 0);

    /// Owned IPv4 addresses → `ADDR_*` flags.
    #[map]
    static OWNED_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(MAX_OWNED_ADDRS, 0);

    /// Owned (address, port) pairs for TCP.
    #[map]
    static OWNED_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(MAX_OWNED_PORTS, 0);

    /// The fast-path configuration (entry 0), written by userspace.
    #[map]
    static FASTPATH_CONFIG: Array<FastpathConfig> = Array::with_max_entries(1, 0);

    /// The fast-path state (entry 0), kept by this program.
    #[map]
    static FASTPATH_STATE: Array<FastpathState> = Array::with_max_entries(1, 0);

    /// Signals from userspace (`SIGNAL_*`).
    #[map]
    static SIGNALS: Array<u32> = Array::with_max_entries(SIGNAL_COUNT, 0);

    /// SYN cookie secrets (entry 0), rotated by userspace.
    #[map]
    static SECRETS: Array<Secrets> = Array::with_max_entries(1, 0);

    /// Per-source SYN token buckets: source address → GCRA theoretical
    /// arrival time (ns).
    #[map]
    static SYN_SOURCES: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_SYN_SOURCES, 0);

    /// Known flows (see the module docs).
    #[map]
    static FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

    /// `FLOWS` value: the engine knows the 4-tuple.
    const FLOW_KNOWN: u8 = 1;
    /// `FLOWS` value: the engine knows the 4-tuple, and the last SYN on it
    /// was answered here with a cookie (see [`mark_cookie_answered`]).
    const FLOW_COOKIE_SYN: u8 = 2;
    /// `bpf_map_update_elem` flag: update an existing entry only.
    const BPF_EXIST: u64 = 2;

    /// SYN sources that are never answered.
    #[map]
    static DENY_PREFIXES: LpmTrie<PrefixAddr, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    /// SYN sources exempt from rate limits (and, in allow-only mode, the
    /// only ones answered).
    #[map]
    static ALLOW_PREFIXES: LpmTrie<PrefixAddr, u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    const ETH_HLEN: usize = 14;
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_ARP: u16 = 0x0806;
    const IPPROTO_ICMP: u8 = 1;
    const IPPROTO_TCP: u8 = 6;
    const ARP_LEN: usize = 28;
    const ARP_OP_REQUEST: u16 = 1;
    const ARP_OP_REPLY: u16 = 2;

    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const PSH: u8 = 0x08;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    const ECE: u8 = 0x40;
    const CWR: u8 = 0x80;

    /// Nanoseconds in a cookie's lifetime.
    const COOKIE_WINDOW_NS: u64 = cookie::MAX_AGE as u64 * 60_000_000_000;

    #[inline(always)]
    fn count(c: Counter) {
        if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe { *p += 1 };
        }
    }

    #[inline(always)]
    fn class(c: TcpClass) {
        if let Some(p) = TCP_CLASSES.get_ptr_mut(c as u32) {
            // SAFETY: per-CPU slot.
            unsafe { *p += 1 };
        }
    }

    /// Returns a pointer to `len` bytes at `off` if they lie inside the packet.
    #[inline(always)]
    fn ptr_at(ctx: &XdpContext, off: usize, len: usize) -> Option<*const u8> {
        let start = ctx.data();
        let end = ctx.data_end();
        if start + off + len > end {
            return None;
        }
        Some((start + off) as *const u8)
    }

    #[inline(always)]
    fn be16(p: *const u8) -> u16 {
        // SAFETY: callers pass pointers checked by `ptr_at`.
        unsafe { u16::from_be_bytes([*p, *p.add(1)]) }
    }

    #[inline(always)]
    fn be32(p: *const u8) -> u32 {
        // SAFETY: callers pass pointers checked by `ptr_at`.
        unsafe { u32::from_be_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) }
    }

    #[inline(always)]
    fn raw32(p: *const u8) -> u32 {
        // SAFETY: callers pass pointers checked by `ptr_at`.
        unsafe { u32::from_ne_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) }
    }

    #[inline(always)]
    fn raw16(p: *const u8) -> u16 {
        // SAFETY: callers pass pointers checked by `ptr_at`.
        unsafe { u16::from_ne_bytes([*p, *p.add(1)]) }
    }

    #[xdp]
    pub fn xstack_xdp(ctx: XdpContext) -> u32 {
        count(Counter::RxPackets);
        let (action, counter) = classify(&ctx);
        count(counter);
        action
    }

    #[inline(always)]
    fn redirect(ctx: &XdpContext, what: Counter) -> (u32, Counter) {
        let queue = ctx.rx_queue_index();
        match XSKS.redirect(queue, 0) {
            Ok(action) => {
                if let Some(p) = QUEUE_REDIRECTS.get_ptr_mut(queue) {
                    // SAFETY: per-CPU slot.
                    unsafe { *p += 1 };
                }
                debug!(ctx, "{} -> AF_XDP queue {}", what.name(), queue);
                (action, what)
            }
            Err(_) => (xdp_action::XDP_DROP, Counter::DropNoSocket),
        }
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext) -> (u32, Counter) {
        let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
            return (xdp_action::XDP_PASS, Counter::PassShortFrame);
        };
        // SAFETY: `eth` covers ETH_HLEN bytes.
        let ethertype = be16(unsafe { eth.add(12) });
        match ethertype {
            ETH_P_IP => classify_ipv4(ctx),
            ETH_P_ARP => classify_arp(ctx),
            _ => (xdp_action::XDP_PASS, Counter::PassNotIpv4),
        }
    }

    /// RFC 826: an Ethernet/IPv4 ARP request or reply whose target is an
    /// owned address (replies resolve the engine's own requests).
    #[inline(always)]
    fn classify_arp(ctx: &XdpContext) -> (u32, Counter) {
        let Some(arp) = ptr_at(ctx, ETH_HLEN, ARP_LEN) else {
            return (xdp_action::XDP_PASS, Counter::PassArpOther);
        };
        // SAFETY: `arp` covers ARP_LEN bytes.
        let (htype, ptype, op, tpa) = unsafe {
            (
                be16(arp),
                be16(arp.add(2)),
                be16(arp.add(6)),
                raw32(arp.add(24)),
            )
        };
        if htype != 1 || ptype != ETH_P_IP || (op != ARP_OP_REQUEST && op != ARP_OP_REPLY) {
            return (xdp_action::XDP_PASS, Counter::PassArpOther);
        }
        // SAFETY: map lookup of a plain key.
        match unsafe { OWNED_ADDRS.get(&AddrKey { addr: tpa }) } {
            Some(flags) if flags & ADDR_ARP != 0 => redirect(ctx, Counter::RedirectArp),
            _ => (xdp_action::XDP_PASS, Counter::PassArpOther),
        }
    }

    /// RFC 791 header checks, applied only to packets for an owned address.
    #[inline(always)]
    fn classify_ipv4(ctx: &XdpContext) -> (u32, Counter) {
        let Some(ip) = ptr_at(ctx, ETH_HLEN, 20) else {
            return (xdp_action::XDP_PASS, Counter::PassShortIp);
        };
        // SAFETY: `ip` covers 20 bytes.
        let (vihl, total_len, frag, proto, daddr) = unsafe {
            (
                *ip,
                be16(ip.add(2)),
                be16(ip.add(6)),
                *ip.add(9),
                raw32(ip.add(16)),
            )
        };
        // SAFETY: map lookup of a plain key.
        let Some(flags) = (unsafe { OWNED_ADDRS.get(&AddrKey { addr: daddr }) }) else {
            return (xdp_action::XDP_PASS, Counter::PassIpNotOwned);
        };
        let flags = *flags;
        if vihl >> 4 != 4 || vihl & 0x0f < 5 {
            return (xdp_action::XDP_DROP, Counter::DropIpHeader);
        }
        let ihl = ((vihl & 0x0f) as usize) * 4;
        let frame_ip_len = ctx.data_end() - ctx.data() - ETH_HLEN;
        if (total_len as usize) < ihl || total_len as usize > frame_ip_len {
            return (xdp_action::XDP_DROP, Counter::DropIpLength);
        }
        // MF set or a non-zero fragment offset (RFC 791 §3.1).
        if frag & 0x3fff != 0 {
            return (xdp_action::XDP_DROP, Counter::DropIpFragment);
        }
        match proto {
            IPPROTO_TCP => classify_tcp(ctx, ihl, total_len as usize, daddr),
            IPPROTO_ICMP if flags & ADDR_ICMP != 0 => redirect(ctx, Counter::RedirectIcmp),
            _ => (xdp_action::XDP_PASS, Counter::PassOtherProto),
        }
    }

    /// RFC 9293 §3.1 header: ports, data offset and flags.
    #[inline(always)]
    fn classify_tcp(ctx: &XdpContext, ihl: usize, total_len: usize, daddr: u32) -> (u32, Counter) {
        let off = ETH_HLEN + (ihl & 0x3c);
        let Some(tcp) = ptr_at(ctx, off, 20) else {
            return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
        };
        if total_len < ihl + 20 {
            return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
        }
        // SAFETY: `tcp` covers 20 bytes.
        let (dport, doff, flags) = unsafe {
            (
                raw16(tcp.add(2)),
                (*tcp.add(12) >> 4) as usize,
                *tcp.add(13),
            )
        };
        let key = PortKey {
            addr: daddr,
            port: dport,
            pad: 0,
        };
        // SAFETY: map lookup of a plain key.
        if unsafe { OWNED_PORTS.get(&key) }.is_none() {
            return (xdp_action::XDP_PASS, Counter::PassPortNotOwned);
        }
        if doff < 5 || ihl + doff * 4 > total_len {
            return (xdp_action::XDP_DROP, Counter::DropTcpDataOffset);
        }
        let f = flags & (FIN | SYN | RST | PSH | ACK | URG);
        if f == 0 {
            return (xdp_action::XDP_DROP, Counter::DropFlagsNone);
        }
        if f == FIN | SYN | RST | PSH | ACK | URG {
            return (xdp_action::XDP_DROP, Counter::DropFlagsAll);
        }
        if f & (SYN | FIN) == SYN | FIN {
            return (xdp_action::XDP_DROP, Counter::DropFlagsSynFin);
        }
        if f & (SYN | RST) == SYN | RST {
            return (xdp_action::XDP_DROP, Counter::DropFlagsSynRst);
        }
        if f & SYN == 0 {
            if f & (FIN | ACK) == FIN {
                return (xdp_action::XDP_DROP, Counter::DropFlagsFinNoAck);
            }
            if f & (ACK | RST) == 0 {
                return (xdp_action::XDP_DROP, Counter::DropFlagsNoAck);
            }
            let payload = total_len - ihl - doff * 4;
            return established(ctx, f, payload, off);
        }
        if f & ACK != 0 {
            // SYN-ACK for a connection the engine opened.
            class(TcpClass::SynAck);
            remember_flow(ctx, off);
            return redirect(ctx, Counter::RedirectTcp);
        }
        class(TcpClass::Syn);
        syn(ctx, off, ihl, doff, flags)
    }

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
    fn remember_flow(ctx: &XdpContext, off: usize) {
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
    fn mark_cookie_answered(ctx: &XdpContext, off: usize) {
        if let Some(k) = flow_key(ctx, off) {
            let _ = FLOWS.insert(&k, &FLOW_COOKIE_SYN, BPF_EXIST);
        }
    }

    /// Segments without SYN: the shortest path unless cookies are in use.
    #[inline(always)]
    fn established(ctx: &XdpContext, f: u8, payload: usize, off: usize) -> (u32, Counter) {
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

    /// Parsed TCP options. Plain integers and flag bits, no `Option`s: the
    /// parser's outcome never decides a memory access, so the verifier can
    /// treat these as imprecise and prune its states.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct TcpOpts {
        mss: u32,
        wscale: u32,
        tsval: u32,
        tsecr: u32,
        /// `OPT_*` bits.
        has: u32,
    }

    const OPT_WSCALE: u32 = 1;
    const OPT_SACK: u32 = 2;
    const OPT_TS: u32 = 4;
    const OPT_BAD: u32 = 8;

    /// State of the option walk, on the caller's stack, handed to the
    /// `bpf_loop` callback [`opt_step`].
    #[repr(C)]
    struct OptWalk {
        buf: [u8; 64],
        optlen: u64,
        next: u64,
        o: TcpOpts,
    }

    /// One step of the option walk: the option at `next`. Returns 1 to stop.
    /// Run by `bpf_loop`, so the verifier checks this body once for all
    /// iterations instead of once per path through 40 unrolled steps.
    #[inline(never)]
    extern "C" fn opt_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
        // SAFETY: bpf_loop passes the `OptWalk` its caller gave it.
        let w = unsafe { &mut *(ctx as *mut OptWalk) };
        let optlen = w.optlen & 63;
        let i = (w.next & 63) as usize;
        if w.next >= optlen {
            return 1;
        }
        let kind = w.buf[i];
        if kind == 0 {
            return 1;
        }
        if kind == 1 {
            w.next += 1;
            return 0;
        }
        let len = w.buf[(i + 1) & 63] as u64;
        if w.next + 1 >= optlen || len < 2 || w.next + len > optlen {
            w.o.has |= OPT_BAD;
            return 1;
        }
        let b = |k: usize| w.buf[(i + k) & 63];
        match (kind, len) {
            (2, 4) => w.o.mss = u32::from(u16::from_be_bytes([b(2), b(3)])),
            (3, 3) => {
                w.o.wscale = u32::from(b(2));
                w.o.has |= OPT_WSCALE;
            }
            (4, 2) => w.o.has |= OPT_SACK,
            (8, 10) => {
                w.o.tsval = u32::from_be_bytes([b(2), b(3), b(4), b(5)]);
                w.o.tsecr = u32::from_be_bytes([b(6), b(7), b(8), b(9)]);
                w.o.has |= OPT_TS;
            }
            (2, _) | (3, _) | (4, _) | (8, _) => {
                w.o.has |= OPT_BAD;
                return 1;
            }
            _ => {}
        }
        w.next += len;
        0
    }

    /// RFC 9293 §3.2 option list of the segment at `off` with data offset
    /// `doff`. `None` when an option runs past the header or has a bad length.
    /// Not inlined: its walk state lives in its own stack frame.
    #[inline(never)]
    fn parse_options(ctx: &XdpContext, off: usize, doff: usize, out: &mut TcpOpts) -> u32 {
        match parse_options_inner(ctx, off, doff) {
            Some(o) => {
                *out = o;
                0
            }
            None => 1,
        }
    }

    #[inline(always)]
    fn parse_options_inner(ctx: &XdpContext, off: usize, doff: usize) -> Option<TcpOpts> {
        let mut w = OptWalk {
            buf: [0u8; 64],
            optlen: 0,
            next: 0,
            o: TcpOpts {
                mss: 536,
                wscale: 0,
                tsval: 0,
                tsecr: 0,
                has: 0,
            },
        };
        let optlen = (doff * 4).wrapping_sub(20);
        if optlen == 0 {
            return Some(w.o);
        }
        if optlen > 40 {
            return None;
        }
        // The verifier wants the size visibly bounded: mask a copy the
        // compiler cannot see through (it would drop a redundant mask).
        let len32 = optlen as u32;
        // SAFETY: reading a local.
        let len = unsafe { core::ptr::read_volatile(&len32) } & 63;
        if len == 0 {
            return None;
        }
        // SAFETY: buf holds 64 bytes; len is 1..=63.
        let rc = unsafe {
            h::bpf_xdp_load_bytes(
                ctx.ctx,
                (off + 20) as u32,
                w.buf.as_mut_ptr() as *mut _,
                len,
            )
        };
        if rc != 0 {
            return None;
        }
        w.optlen = u64::from(len);
        // SAFETY: the callback and its context are valid for the call.
        unsafe {
            h::bpf_loop(
                40,
                opt_step as *mut core::ffi::c_void,
                &mut w as *mut OptWalk as *mut core::ffi::c_void,
                0,
            )
        };
        if w.o.has & OPT_BAD != 0 {
            return None;
        }
        Some(w.o)
    }

    /// GCRA: admits one event at `now` against `tat` (theoretical arrival
    /// time); returns the new `tat` or `None` when over the limit.
    #[inline(always)]
    fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Option<u64> {
        let base = if tat > now { tat } else { now };
        let next = base + interval;
        if next - now > tolerance + interval {
            None
        } else {
            Some(next)
        }
    }

    #[inline(always)]
    fn prefix_key(saddr: u32) -> LpmKey<PrefixAddr> {
        LpmKey::new(32, saddr)
    }

    /// A SYN: flood checks, then cookie SYN-ACK or the engine.
    #[inline(always)]
    fn syn(ctx: &XdpContext, off: usize, ihl: usize, doff: usize, flags: u8) -> (u32, Counter) {
        let mut opts = TcpOpts::default();
        if parse_options(ctx, off, doff, &mut opts) != 0 {
            return (xdp_action::XDP_DROP, Counter::DropTcpOptions);
        }
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
        // SAFETY: helper without arguments.
        let now = unsafe { h::bpf_ktime_get_ns() };
        let Some(state) = FASTPATH_STATE.get_ptr_mut(0) else {
            return redirect(ctx, Counter::RedirectTcp);
        };
        // SAFETY: the map value lives as long as the program; concurrent
        // updates from other CPUs only make the counts approximate.
        let state = unsafe { &mut *state };
        if limited && cfg.source_interval_ns != 0 {
            // SAFETY: map lookup of a plain key.
            let tat = match unsafe { SYN_SOURCES.get(&saddr) } {
                Some(t) => *t,
                None => 0,
            };
            match gcra(tat, now, cfg.source_interval_ns, cfg.source_tolerance_ns) {
                Some(t) => {
                    let _ = SYN_SOURCES.insert(&saddr, &t, 0);
                }
                None => return (xdp_action::XDP_DROP, Counter::DropSynSourceRate),
            }
        }
        if limited && cfg.global_interval_ns != 0 {
            match gcra(
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
        mark_cookie_answered(ctx, off);
        let c = cookie_synack(ctx, cfg, &opts, flags, now);
        if c == Counter::TxCookieSynAck {
            state.last_cookie_ns = now;
            if cfg.flags & CFG_TX_REDIRECT != 0 {
                let ifindex = ctx.ingress_ifindex() as u32;
                // SAFETY: plain helper call; XDP_REDIRECT on success.
                let action = unsafe { aya_ebpf::helpers::bpf_redirect(ifindex, 0) } as u32;
                (action, c)
            } else {
                (xdp_action::XDP_TX, c)
            }
        } else {
            (xdp_action::XDP_DROP, c)
        }
    }

    /// Auto mode: counts the SYN in the rate window and says whether cookies
    /// are on (rate above `syn_on` until it falls below `syn_off`, or the
    /// engine's SYN queue is full).
    #[inline(always)]
    fn auto_mode(cfg: &FastpathConfig, state: &mut FastpathState, now: u64) -> bool {
        let elapsed = now.wrapping_sub(state.window_start_ns);
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
    fn cookie_synack(
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

    /// An ACK for no known flow while cookies are in use: the final ACK of a
    /// cookie handshake if its cookie checks (Linux `cookie_v4_check`).
    #[inline(never)]
    fn cookie_ack(ctx: &XdpContext, off: usize, key: &FlowKey, now: u64) -> Counter {
        let Some(secrets) = SECRETS.get(0) else {
            return Counter::DropCookieInvalid;
        };
        let Some(t) = ptr_at(ctx, off, 20) else {
            return Counter::DropTcpTruncated;
        };
        // SAFETY: `t` covers 20 bytes.
        let (seq, ack, doff) =
            unsafe { (be32(t.add(4)), be32(t.add(8)), (*t.add(12) >> 4) as usize) };
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

    // ---- SYN cookie micro-benchmark (BPF_PROG_TEST_RUN only, never attached).

    /// `xstack_bench_*` programs: which one to run is the program itself.
    /// Each takes a SYN frame, generates a cookie for it and checks it as the
    /// final ACK would carry it; the baseline only parses.
    #[inline(always)]
    fn bench_headers(ctx: &XdpContext) -> Option<(*mut u8, *mut u8)> {
        let p = ptr_at(ctx, 0, ETH_HLEN + 40)?;
        // SAFETY: covers Ethernet + 20-byte IPv4 + 20-byte TCP.
        unsafe { Some((p.add(ETH_HLEN) as *mut u8, p.add(ETH_HLEN + 20) as *mut u8)) }
    }

    /// Baseline: parse and touch the header words both variants read.
    #[xdp]
    pub fn xstack_bench_base(ctx: XdpContext) -> u32 {
        let Some((ip, tcp)) = bench_headers(&ctx) else {
            return xdp_action::XDP_ABORTED;
        };
        let s = (be32(unsafe { ip.add(12) }) ^ be32(unsafe { tcp.add(4) })) as u64;
        if s == 0x1_0000_0000 {
            return xdp_action::XDP_PASS;
        }
        xdp_action::XDP_DROP
    }

    /// Ours: cookie::generate + cookie::check with the secrets map.
    #[xdp]
    pub fn xstack_bench_ours(ctx: XdpContext) -> u32 {
        let Some((ip, tcp)) = bench_headers(&ctx) else {
            return xdp_action::XDP_ABORTED;
        };
        let Some(secrets) = SECRETS.get(0) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: bench_headers checked 40 bytes from `ip`.
        let (flow, seq) = unsafe {
            (
                Flow {
                    saddr: be32(ip.add(12)),
                    daddr: be32(ip.add(16)),
                    sport: be16(tcp),
                    dport: be16(tcp.add(2)),
                },
                be32(tcp.add(4)),
            )
        };
        // SAFETY: helper without arguments.
        let count = cookie::count_from_ns(unsafe { h::bpf_ktime_get_ns() });
        let c = cookie::generate(&secrets.current, &flow, seq, count, 3);
        match cookie::check(secrets, &flow, seq, c, count) {
            Some(3) => xdp_action::XDP_DROP,
            _ => xdp_action::XDP_PASS,
        }
    }

    /// The kernel's: bpf_tcp_raw_gen_syncookie_ipv4 + bpf_tcp_raw_check_syncookie_ipv4.
    #[xdp]
    pub fn xstack_bench_kernel(ctx: XdpContext) -> u32 {
        let Some((ip, tcp)) = bench_headers(&ctx) else {
            return xdp_action::XDP_ABORTED;
        };
        // The check helper wants the final ACK: copy the headers to the
        // stack and turn them into it after generating.
        let mut iph = [0u8; 20];
        let mut th = [0u8; 20];
        // SAFETY: 20 bytes each, checked by bench_headers.
        unsafe {
            for i in 0..20 {
                iph[i] = *ip.add(i);
                th[i] = *tcp.add(i);
            }
        }
        // SAFETY: the helper reads an IPv4 header and a 20-byte TCP header.
        let r = unsafe {
            h::bpf_tcp_raw_gen_syncookie_ipv4(
                iph.as_mut_ptr() as *mut _,
                th.as_mut_ptr() as *mut _,
                20,
            )
        };
        if r < 0 {
            return xdp_action::XDP_ABORTED;
        }
        let c = r as u32;
        let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]).wrapping_add(1);
        th[4..8].copy_from_slice(&seq.to_be_bytes());
        th[8..12].copy_from_slice(&c.wrapping_add(1).to_be_bytes());
        th[13] = ACK;
        // SAFETY: as above.
        let ok = unsafe {
            h::bpf_tcp_raw_check_syncookie_ipv4(
                iph.as_mut_ptr() as *mut _,
                th.as_mut_ptr() as *mut _,
            )
        };
        if ok == 0 {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}
