//! Bounds-checked reads of Ethernet / ARP / IPv4 / TCP headers and the
//! TCP option walk (RFC 9293 §3.1, §3.2).

use core::mem::MaybeUninit;

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

use stack_ebpf::tcpopt::{self, OptWalk, DEFAULT_MSS, OPT_BAD};
pub(crate) use stack_ebpf::tcpopt::{TcpOpts, OPT_SACK, OPT_TS, OPT_WSCALE};

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
        (*p).o.mss = DEFAULT_MSS;
        // Every field but `buf` was written, and they are plain
        // integers; `buf` is `MaybeUninit`.
        &mut *p
    }
}

/// One step of the option walk ([`tcpopt::step`]): the option at `next`.
/// Returns 1 to stop. Run by `bpf_loop`, so the verifier checks this body
/// once for all iterations instead of once per path through 40 unrolled
/// steps.
#[inline(never)]
extern "C" fn opt_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop passes the `OptWalk` its caller gave it, whose
    // first `optlen` bytes `bpf_xdp_load_bytes` wrote.
    unsafe { tcpopt::step(&mut *(ctx as *mut OptWalk)) }
}

/// The usual layouts ([`tcpopt::fast4`], [`tcpopt::fast12`],
/// [`tcpopt::fast20`]) read where they lie in the packet; `None`: another
/// length or layout, for the walk.
#[inline(always)]
fn fast_options(ctx: &XdpContext, off: usize, optlen: usize) -> Option<TcpOpts> {
    let at = off + 20;
    // SAFETY (each arm): `ptr_at` checked the bytes the array covers.
    match optlen {
        // No options: RFC 9293 §3.7.1's MSS, nothing else.
        0 => Some(TcpOpts {
            mss: DEFAULT_MSS,
            ..TcpOpts::default()
        }),
        4 => tcpopt::fast4(unsafe { &*(ptr_at(ctx, at, 4)? as *const [u8; 4]) }),
        12 => tcpopt::fast12(unsafe { &*(ptr_at(ctx, at, 12)? as *const [u8; 12]) }),
        20 => tcpopt::fast20(unsafe { &*(ptr_at(ctx, at, 20)? as *const [u8; 20]) }),
        _ => None,
    }
}

/// RFC 9293 §3.2 option list of the segment at `off` with data offset
/// `doff`, into `out`. Returns 0 (`out` written), or 1 (and leaves `out`
/// alone) when an option runs past the header or has a bad length. `out`
/// is uninitialised memory of the caller's: zeroing a `TcpOpts` there
/// first was a call of the BPF `memset`, a byte loop, on every SYN.
///
/// The fast path runs inline; only the general walk is a function of its
/// own ([`parse_options_walk`]: its state lives in its own stack frame).
/// A BPF-to-BPF call costs its `ret`, which on this machine's kernel goes
/// through the SRSO return thunk (`srso_alias_return_thunk`, "Safe RET"):
/// in a profile of `xstack bench cookies` the instructions after the
/// program's calls held about a fifth of its own samples.
#[inline(always)]
pub(crate) fn parse_options(
    ctx: &XdpContext,
    off: usize,
    doff: usize,
    out: &mut MaybeUninit<TcpOpts>,
) -> u32 {
    let optlen = (doff * 4).wrapping_sub(20);
    if let Some(o) = fast_options(ctx, off, optlen) {
        out.write(o);
        return 0;
    }
    parse_options_walk(ctx, off, doff, out)
}

/// [`parse_options`] for the layouts the fast path leaves: the walk.
#[inline(never)]
fn parse_options_walk(
    ctx: &XdpContext,
    off: usize,
    doff: usize,
    out: &mut MaybeUninit<TcpOpts>,
) -> u32 {
    match parse_options_inner(ctx, off, doff) {
        Some(o) => {
            out.write(o);
            0
        }
        None => 1,
    }
}

#[inline(always)]
fn parse_options_inner(ctx: &XdpContext, off: usize, doff: usize) -> Option<TcpOpts> {
    let optlen = (doff * 4).wrapping_sub(20);
    let mut raw = core::mem::MaybeUninit::uninit();
    let w = zeroed_in(&mut raw);
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
