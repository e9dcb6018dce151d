//! The live-frames flood generator (`xstack_flood_gen`): a separate
//! program that never sees real traffic. `xstack flood --generator live`
//! runs it with `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES`: the
//! kernel runs it `repeat` times on page-pool pages holding a template
//! frame, and each `XDP_REDIRECT` really sends the frame, as an
//! `xdp_frame`, to the interface in `GEN_CONFIG` (the testbed's peer veth
//! end: the victim's end then receives it the way a NIC driver hands XDP
//! a page, with no skb and no copy).
//!
//! Per run the frame is written whole from the template in the config
//! (the kernel recycles pages as the receiver left them: a receiver's XDP
//! may have turned the frame into its answer in place), then: a spoofed
//! source inside the
//! configured prefix, a source port in the configured range, random
//! sequence (and for ACKs acknowledgment) numbers, the flags of the kind
//! (`GEN_*`; mixed and est take turns by a per-CPU run count), the IPv4
//! identification, and the checksums, recomputed from scratch (RFC 791
//! §3.1 header checksum; RFC 9293 §3.1 and RFC 8200 §8.1 pseudo-headers).
//! Userspace runs the template with `GEN_TAIL` extra bytes, which every run
//! drops with `bpf_xdp_adjust_tail` (see `stack_ebpf::GEN_TAIL`): a frame
//! of any other length, or with zero MACs (loopback traffic where the
//! program is attached only to stay in the XDP dispatcher), passes
//! untouched. The header lengths are the template's and never change.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated as h,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use stack_ebpf::{
    FloodGenConfig, GEN_ACK, GEN_COUNTER_COUNT, GEN_EST, GEN_MIXED, GEN_RST, GEN_SYN, GEN_TAIL,
};

use crate::parse::{ptr_at, raw16, raw32, ACK, RST, SYN};

/// The configuration (entry 0), written by userspace before the runs.
#[map]
static GEN_CONFIG: Array<FloodGenConfig> = Array::with_max_entries(1, 0);

/// Frames written, by kind: `[SYN, ACK, RST]`.
#[map]
static GEN_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(GEN_COUNTER_COUNT, 0);

/// Runs so far (picks the turn of mixed and est floods). Shared by all
/// CPUs, so the turns follow each other even when calls move between
/// CPUs; not atomic: concurrent runs on several CPUs only skew the mix.
#[map]
static GEN_RUNS: Array<u64> = Array::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
/// TCP header offset over IPv4 and IPv6 (no options, no extension headers).
const TCP4: usize = ETH_HLEN + 20;
const TCP6: usize = ETH_HLEN + 40;

#[xdp]
pub fn xstack_flood_gen(ctx: XdpContext) -> u32 {
    let Some(c) = GEN_CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let run = match GEN_RUNS.get_ptr_mut(0) {
        // SAFETY: a map slot; a racing writer only skews the turns.
        Some(p) => unsafe {
            let n = *p;
            *p = n + 1;
            n
        },
        None => 0,
    };
    let kind = match c.kind {
        GEN_MIXED => match run % 3 {
            0 => GEN_SYN,
            1 => GEN_ACK,
            _ => GEN_RST,
        },
        GEN_EST => {
            if run % 2 == 0 {
                GEN_RST
            } else {
                GEN_ACK
            }
        }
        GEN_ACK => GEN_ACK,
        GEN_RST => GEN_RST,
        _ => GEN_SYN,
    };
    let written = match (c.family, c.tcp_len) {
        // TCP4 + 24 = 58: one 60-byte frame either way.
        (6, 24) => fill::<TCP6, 24>(&ctx, c, kind),
        (6, _) => fill::<TCP6, 20>(&ctx, c, kind),
        (_, 24) => fill::<TCP4, 24>(&ctx, c, kind),
        _ => fill::<TCP4, 20>(&ctx, c, kind),
    };
    if !written {
        return xdp_action::XDP_PASS;
    }
    if let Some(p) = GEN_COUNTERS.get_ptr_mut(kind) {
        // SAFETY: a per-CPU slot, only this CPU writes it.
        unsafe { *p += 1 };
    }
    if c.ifindex == 0 {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: a helper call with plain integers.
    unsafe { aya_ebpf::helpers::bpf_redirect(c.ifindex, 0) as u32 }
}

#[inline(always)]
fn rand() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { h::bpf_get_prandom_u32() }
}

#[inline(always)]
fn put16(p: *mut u8, v: u16) {
    // SAFETY: callers pass pointers checked by `ptr_at`.
    unsafe {
        *p = (v >> 8) as u8;
        *p.add(1) = v as u8;
    }
}

#[inline(always)]
fn put32(p: *mut u8, v: u32) {
    put16(p, (v >> 16) as u16);
    // SAFETY: callers pass pointers checked by `ptr_at`.
    put16(unsafe { p.add(2) }, v as u16);
}

/// Stores a word in memory order (as read with `raw32`).
#[inline(always)]
fn put_raw32(p: *mut u8, v: u32) {
    let b = v.to_ne_bytes();
    // SAFETY: callers pass pointers checked by `ptr_at`.
    unsafe {
        *p = b[0];
        *p.add(1) = b[1];
        *p.add(2) = b[2];
        *p.add(3) = b[3];
    }
}

/// The ones'-complement sum of `words` 16-bit words at `p`, in memory
/// order (the checksum is stored the same way); `words` is a constant at
/// every call, so the loop unrolls.
#[inline(always)]
fn sum16(p: *const u8, words: usize) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < words {
        // SAFETY: callers pass pointers checked by `ptr_at` for 2 * words bytes.
        s += u32::from(raw16(unsafe { p.add(2 * i) }));
        i += 1;
    }
    s
}

/// A big-endian 16-bit value as `sum16` reads it from memory.
#[inline(always)]
fn mem16(v: u16) -> u32 {
    u32::from(u16::from_ne_bytes(v.to_be_bytes()))
}

#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Rewrites the frame: `TCP` is the TCP header's offset (IPv4 or IPv6),
/// `T` its length (20 or 24).
/// Returns false for a frame that is not the generator's (it is left as
/// it came).
#[inline(always)]
fn fill<const TCP: usize, const T: usize>(ctx: &XdpContext, c: &FloodGenConfig, kind: u32) -> bool {
    // The frame: IPv4 padded to the Ethernet minimum of 60 bytes.
    let len = if TCP == TCP4 { 60 } else { TCP + T };
    if ctx.data_end() - ctx.data() != len + GEN_TAIL {
        return false;
    }
    let Some(m) = ptr_at(ctx, 0, 12) else {
        return false;
    };
    // SAFETY: ptr_at checked 12 bytes.
    if unsafe { raw32(m) | raw32(m.add(4)) | raw32(m.add(8)) } == 0 {
        return false;
    }
    // SAFETY: a helper on this program's own context.
    if unsafe { h::bpf_xdp_adjust_tail(ctx.ctx, -(GEN_TAIL as i32)) } != 0 {
        return false;
    }
    let Some(p) = ptr_at(ctx, 0, len) else {
        return false;
    };
    let p = p as *mut u8;
    // The whole template: whole words, then the last two bytes when len
    // is not a multiple of 4 (74, 78). `len` is a constant here, so the
    // copies unroll with constant offsets.
    let mut i = 0;
    while i < len / 4 {
        // SAFETY: 4 * i + 4 <= len, checked by ptr_at.
        put_raw32(unsafe { p.add(4 * i) }, c.template[i]);
        i += 1;
    }
    if len % 4 == 2 {
        let w = c.template[len / 4].to_ne_bytes();
        // SAFETY: len - 2 and len - 1 are inside the checked bytes.
        unsafe {
            *p.add(len - 2) = w[0];
            *p.add(len - 1) = w[1];
        }
    }
    // SAFETY (every `add` below): offsets inside the TCP + T bytes checked.
    let pseudo = if TCP == TCP4 {
        let ip = unsafe { p.add(ETH_HLEN) };
        put_raw32(
            unsafe { ip.add(12) },
            c.src_net[0] | (rand() & c.src_host[0]),
        );
        put16(unsafe { ip.add(4) }, rand() as u16);
        put16(unsafe { ip.add(10) }, 0);
        let sum = sum16(ip, 10);
        let csum = fold(sum).to_ne_bytes();
        unsafe {
            *ip.add(10) = csum[0];
            *ip.add(11) = csum[1];
        }
        // Source and destination, protocol, TCP length.
        sum16(unsafe { ip.add(12) }, 4)
    } else {
        let ip = unsafe { p.add(ETH_HLEN) };
        let mut i = 0;
        while i < 4 {
            put_raw32(
                unsafe { ip.add(8 + 4 * i) },
                c.src_net[i] | (rand() & c.src_host[i]),
            );
            i += 1;
        }
        sum16(unsafe { ip.add(8) }, 16)
    } + mem16(6)
        + mem16(T as u16);
    let tcp = unsafe { p.add(TCP) };
    let span = if c.port_span == 0 { 1 } else { c.port_span };
    put16(tcp, (c.port_lo + rand() % span) as u16);
    put32(unsafe { tcp.add(4) }, rand());
    let flags = match kind {
        GEN_ACK => ACK,
        GEN_RST => RST,
        _ => SYN,
    };
    put32(
        unsafe { tcp.add(8) },
        if kind == GEN_ACK { rand() } else { 0 },
    );
    unsafe {
        *tcp.add(12) = ((T / 4) as u8) << 4;
        *tcp.add(13) = flags;
    }
    put16(unsafe { tcp.add(16) }, 0);
    if T == 24 {
        // SYN: MSS 1460 (RFC 9293 §3.2); the others: four NOPs.
        let opt = if kind == GEN_SYN {
            [2u8, 4, 0x05, 0xb4]
        } else {
            [1u8, 1, 1, 1]
        };
        unsafe {
            *tcp.add(20) = opt[0];
            *tcp.add(21) = opt[1];
            *tcp.add(22) = opt[2];
            *tcp.add(23) = opt[3];
        }
    }
    let csum = fold(pseudo + sum16(tcp, T / 2)).to_ne_bytes();
    unsafe {
        *tcp.add(16) = csum[0];
        *tcp.add(17) = csum[1];
    }
    true
}
