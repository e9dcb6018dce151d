//! SYN cookie micro-benchmark programs (BPF_PROG_TEST_RUN only, never
//! attached; userspace loads them with `XdpProgram::bench_program`): ours
//! against the kernel's syncookie helpers.
//!
//! Which one to run is the program itself. Each takes a SYN frame,
//! generates a cookie for it and checks it as the final ACK would carry it;
//! the baseline only parses.

use aya_ebpf::{bindings::xdp_action, helpers::generated as h, macros::xdp, programs::XdpContext};
use stack_ebpf::cookie::{self, Flow};

use crate::maps::SECRETS;
use crate::parse::{be16, be32, ptr_at, ACK, ETH_HLEN};

/// The IPv4 and TCP headers of the frame, if it holds both (no options).
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
        h::bpf_tcp_raw_gen_syncookie_ipv4(iph.as_mut_ptr() as *mut _, th.as_mut_ptr() as *mut _, 20)
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
        h::bpf_tcp_raw_check_syncookie_ipv4(iph.as_mut_ptr() as *mut _, th.as_mut_ptr() as *mut _)
    };
    if ok == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
