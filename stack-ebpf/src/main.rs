//! The xstack XDP program.
//!
//! Parses Ethernet / ARP / IPv4 / TCP with explicit bounds checks and decides:
//! - TCP to an owned (address, port), ARP requests and ICMP for an owned
//!   address: redirect through `XSKS` to the AF_XDP socket of the rx queue;
//! - malformed packets to an owned address: drop, counted by reason;
//! - everything else: `XDP_PASS`, so the kernel keeps all traffic that is not
//!   xstack's (xstack never eats a packet it cannot attribute to itself).
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
        macros::{map, xdp},
        maps::{HashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use aya_log_ebpf::debug;
    use stack_ebpf::{
        AddrKey, Counter, PortKey, ADDR_ARP, ADDR_ICMP, COUNTER_COUNT, MAX_OWNED_ADDRS,
        MAX_OWNED_PORTS, MAX_QUEUES,
    };

    /// One AF_XDP socket per rx queue, indexed by queue id.
    #[map]
    static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    /// Verdict and drop-reason counters, indexed by [`Counter`].
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

    /// Packets redirected, per rx queue.
    #[map]
    static QUEUE_REDIRECTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_QUEUES, 0);

    /// Owned IPv4 addresses → `ADDR_*` flags.
    #[map]
    static OWNED_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(MAX_OWNED_ADDRS, 0);

    /// Owned (address, port) pairs for TCP.
    #[map]
    static OWNED_PORTS: HashMap<PortKey, u8> = HashMap::with_max_entries(MAX_OWNED_PORTS, 0);

    const ETH_HLEN: usize = 14;
    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_ARP: u16 = 0x0806;
    const IPPROTO_ICMP: u8 = 1;
    const IPPROTO_TCP: u8 = 6;
    const ARP_LEN: usize = 28;
    const ARP_OP_REQUEST: u16 = 1;
    const ARP_OP_REPLY: u16 = 2;

    #[inline(always)]
    fn count(c: Counter) {
        if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
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
    fn raw32(p: *const u8) -> u32 {
        // SAFETY: callers pass pointers checked by `ptr_at`.
        unsafe { u32::from_ne_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) }
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

    /// RFC 9293 §3.1 header: ports and data offset.
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
        let (dport, doff) = unsafe { (*(tcp.add(2) as *const u16), (*tcp.add(12) >> 4) as usize) };
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
        redirect(ctx, Counter::RedirectTcp)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}
