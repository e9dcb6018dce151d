//! Bounds-checked reads of Ethernet / ARP / IPv4 / TCP headers and the
//! TCP option walk (RFC 9293 §3.1, §3.2).

use aya_ebpf::{helpers::generated as h, programs::XdpContext};

pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_ARP: u16 = 0x0806;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const ARP_LEN: usize = 28;
pub(crate) const ARP_OP_REQUEST: u16 = 1;
pub(crate) const ARP_OP_REPLY: u16 = 2;

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const URG: u8 = 0x20;
pub(crate) const ECE: u8 = 0x40;
pub(crate) const CWR: u8 = 0x80;

/// `ctx` as a value the compiler cannot see through. A function that is
/// not inlined and only reads `data`/`data_end` through `ctx` otherwise
/// gets the two fields as arguments instead (argument promotion), loaded
/// as 32-bit scalars, which the verifier refuses as arithmetic on the
/// end pointer. Such functions start with `let ctx = opaque(ctx);`.
#[inline(always)]
pub(crate) fn opaque(ctx: &XdpContext) -> &XdpContext {
    // SAFETY: reading a local.
    unsafe { core::ptr::read_volatile(&ctx) }
}

/// Returns a pointer to `len` bytes at `off` if they lie inside the packet.
#[inline(always)]
pub(crate) fn ptr_at(ctx: &XdpContext, off: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + len > end {
        return None;
    }
    Some((start + off) as *const u8)
}

#[inline(always)]
pub(crate) fn be16(p: *const u8) -> u16 {
    // SAFETY: callers pass pointers checked by `ptr_at`.
    unsafe { u16::from_be_bytes([*p, *p.add(1)]) }
}

#[inline(always)]
pub(crate) fn be32(p: *const u8) -> u32 {
    // SAFETY: callers pass pointers checked by `ptr_at`.
    unsafe { u32::from_be_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) }
}

#[inline(always)]
pub(crate) fn raw32(p: *const u8) -> u32 {
    // SAFETY: callers pass pointers checked by `ptr_at`.
    unsafe { u32::from_ne_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) }
}

#[inline(always)]
pub(crate) fn raw16(p: *const u8) -> u16 {
    // SAFETY: callers pass pointers checked by `ptr_at`.
    unsafe { u16::from_ne_bytes([*p, *p.add(1)]) }
}

/// Parsed TCP options. Plain integers and flag bits, no `Option`s: the
/// parser's outcome never decides a memory access, so the verifier can
/// treat these as imprecise and prune its states.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct TcpOpts {
    pub(crate) mss: u32,
    pub(crate) wscale: u32,
    pub(crate) tsval: u32,
    pub(crate) tsecr: u32,
    /// `OPT_*` bits.
    pub(crate) has: u32,
}

pub(crate) const OPT_WSCALE: u32 = 1;
pub(crate) const OPT_SACK: u32 = 2;
pub(crate) const OPT_TS: u32 = 4;
pub(crate) const OPT_BAD: u32 = 8;

/// State of the option walk, on the caller's stack, handed to the
/// `bpf_loop` callback [`opt_step`].
#[repr(C)]
struct OptWalk {
    /// The options as read; only the first `optlen` bytes are written.
    buf: [core::mem::MaybeUninit<u8>; 64],
    optlen: u64,
    next: u64,
    o: TcpOpts,
}

impl OptWalk {
    /// A walk with nothing read yet in `raw`: the buffer left as it is,
    /// the rest zero but the default MSS (RFC 9293 §3.7.1: 536). Written as
    /// a struct literal, the zeroing became two calls of the BPF `memset`,
    /// a loop of one byte per iteration over 96 bytes: about 12% of the
    /// whole program's time on a SYN. The buffer needs none: `opt_step`
    /// reads only the bytes `bpf_xdp_load_bytes` wrote, and the verifier
    /// lets a program read uninitialised stack when its loader has
    /// CAP_PERFMON, which xstack requires (`check_privileges`). The rest is
    /// zeroed a byte at a time: 64-bit stores of zero made the verifier
    /// track `next` as a spilled constant and walk the callback's states
    /// past its 1M-instruction limit; byte stores leave it as the `memset`
    /// did.
    #[inline(always)]
    fn zeroed_in(raw: &mut core::mem::MaybeUninit<OptWalk>) -> &mut OptWalk {
        let p = raw.as_mut_ptr();
        // SAFETY: the writes stay inside the local `raw`, past `buf`;
        // volatile, so that they are not merged into a `memset` call or
        // into wider stores.
        unsafe {
            let b = p as *mut u8;
            for i in core::mem::offset_of!(OptWalk, optlen)..core::mem::size_of::<OptWalk>() {
                core::ptr::write_volatile(b.add(i), 0);
            }
            (*p).o.mss = 536;
            // Every field but `buf` was written, and they are plain
            // integers; `buf` is `MaybeUninit`.
            &mut *p
        }
    }
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
    // SAFETY (here and below): only bytes below `optlen`, which
    // `bpf_xdp_load_bytes` wrote, are read.
    let kind = unsafe { w.buf[i].assume_init() };
    if kind == 0 {
        return 1;
    }
    if kind == 1 {
        w.next += 1;
        return 0;
    }
    if w.next + 1 >= optlen {
        w.o.has |= OPT_BAD;
        return 1;
    }
    let len = unsafe { w.buf[(i + 1) & 63].assume_init() } as u64;
    if len < 2 || w.next + len > optlen {
        w.o.has |= OPT_BAD;
        return 1;
    }
    // `next + len <= optlen`: the option's bytes are all below it.
    let b = |k: usize| unsafe { w.buf[(i + k) & 63].assume_init() };
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
/// `doff`, into `out`. Returns 0, or 1 (and leaves `out` alone) when an
/// option runs past the header or has a bad length. Not inlined: its walk
/// state lives in its own stack frame.
#[inline(never)]
pub(crate) fn parse_options(ctx: &XdpContext, off: usize, doff: usize, out: &mut TcpOpts) -> u32 {
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
    let mut raw = core::mem::MaybeUninit::uninit();
    let w = OptWalk::zeroed_in(&mut raw);
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
            w as *mut OptWalk as *mut core::ffi::c_void,
            0,
        )
    };
    if w.o.has & OPT_BAD != 0 {
        return None;
    }
    Some(w.o)
}
