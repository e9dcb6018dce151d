//! Classification: Ethernet type, ARP, IPv4 and TCP header checks, TCP
//! flag validation, and the redirect to the rx queue's AF_XDP socket.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use stack_ebpf::{
    addr_probe, port_bit, AddrProbe, Counter, TcpClass, ADDR_ALL_TCP, ADDR_ARP, ADDR_ICMP,
    ADDR_SLOT_SHIFT,
};

use crate::flows::{established, remember_flow};
use crate::maps::{bump, class, OWNED_ADDR_TABLE, OWNED_PORT_BITS, QUEUE_REDIRECTS, XSKS};
use crate::parse::{
    be16, ptr_at, raw32, ACK, ARP_LEN, ARP_OP_REPLY, ARP_OP_REQUEST, ETH_HLEN, ETH_P_ARP, ETH_P_IP,
    ETH_P_IPV6, FIN, IPPROTO_ICMP, IPPROTO_TCP, PSH, RST, SYN, URG,
};
use crate::synflood::syn;

#[inline(always)]
pub(crate) fn redirect(ctx: &XdpContext, what: Counter) -> (u32, Counter) {
    let queue = ctx.rx_queue_index();
    match XSKS.redirect(queue, 0) {
        Ok(action) => {
            bump(&QUEUE_REDIRECTS, queue);
            (action, what)
        }
        Err(_) => (xdp_action::XDP_DROP, Counter::DropNoSocket),
    }
}

/// The `ADDR_*` flags of the owned IPv4 address `addr` (network byte
/// order), or `None` when it is not ours: array loads only.
#[inline(always)]
fn owned(addr: u32) -> Option<u32> {
    match addr_probe(addr, |i| OWNED_ADDR_TABLE.get(i).copied()) {
        AddrProbe::Found(_, flags) => Some(flags),
        _ => None,
    }
}

#[inline(always)]
pub(crate) fn classify(ctx: &XdpContext) -> (u32, Counter) {
    let Some(eth) = ptr_at(ctx, 0, ETH_HLEN) else {
        return (xdp_action::XDP_PASS, Counter::PassShortFrame);
    };
    // SAFETY: `eth` covers ETH_HLEN bytes.
    let ethertype = be16(unsafe { eth.add(12) });
    match ethertype {
        ETH_P_IP => classify_ipv4(ctx),
        ETH_P_IPV6 => crate::classify6::classify_ipv6(ctx),
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
    match owned(tpa) {
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
    let Some(flags) = owned(daddr) else {
        return (xdp_action::XDP_PASS, Counter::PassIpNotOwned);
    };
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
        IPPROTO_TCP => classify_tcp(ctx, ihl, total_len as usize, flags),
        IPPROTO_ICMP if flags & ADDR_ICMP != 0 => redirect(ctx, Counter::RedirectIcmp),
        _ => (xdp_action::XDP_PASS, Counter::PassOtherProto),
    }
}

/// The invalid flag combinations (null scan, xmas, SYN+FIN, SYN+RST, FIN
/// without ACK, none of SYN/RST/ACK), by drop reason; the same over IPv4
/// and IPv6.
#[inline(always)]
pub(crate) fn flags_verdict(flags: u8) -> Option<Counter> {
    let f = flags & (FIN | SYN | RST | PSH | ACK | URG);
    if f == 0 {
        return Some(Counter::DropFlagsNone);
    }
    if f == FIN | SYN | RST | PSH | ACK | URG {
        return Some(Counter::DropFlagsAll);
    }
    if f & (SYN | FIN) == SYN | FIN {
        return Some(Counter::DropFlagsSynFin);
    }
    if f & (SYN | RST) == SYN | RST {
        return Some(Counter::DropFlagsSynRst);
    }
    if f & SYN == 0 {
        if f & (FIN | ACK) == FIN {
            return Some(Counter::DropFlagsFinNoAck);
        }
        if f & (ACK | RST) == 0 {
            return Some(Counter::DropFlagsNoAck);
        }
    }
    None
}

/// RFC 9293 §3.1 header: ports, data offset and flags. `addr_flags` are the
/// destination's `ADDR_*` flags: with `ADDR_ALL_TCP`, segments to ports
/// nobody serves go to the engine (which answers RST) instead of the kernel,
/// past the flag checks but not through the SYN-flood or cookie paths (a
/// closed port never gets a cookie); the address's owned ports are the
/// bits of its slot in `OWNED_PORT_BITS`.
#[inline(always)]
fn classify_tcp(ctx: &XdpContext, ihl: usize, total_len: usize, addr_flags: u32) -> (u32, Counter) {
    let off = ETH_HLEN + (ihl & 0x3c);
    let Some(tcp) = ptr_at(ctx, off, 20) else {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    };
    if total_len < ihl + 20 {
        return (xdp_action::XDP_DROP, Counter::DropTcpTruncated);
    }
    // SAFETY: `tcp` covers 20 bytes.
    let (dport, doff, flags) =
        unsafe { (be16(tcp.add(2)), (*tcp.add(12) >> 4) as usize, *tcp.add(13)) };
    // The port's bit in the address's slot of the port bitmap.
    let (word, bit) = port_bit(addr_flags >> ADDR_SLOT_SHIFT, dport);
    let port_owned = match OWNED_PORT_BITS.get(word) {
        Some(w) => *w & bit != 0,
        None => false,
    };
    if !port_owned && addr_flags & ADDR_ALL_TCP == 0 {
        return (xdp_action::XDP_PASS, Counter::PassPortNotOwned);
    }
    if doff < 5 || ihl + doff * 4 > total_len {
        return (xdp_action::XDP_DROP, Counter::DropTcpDataOffset);
    }
    if let Some(drop) = flags_verdict(flags) {
        return (xdp_action::XDP_DROP, drop);
    }
    let f = flags & (FIN | SYN | RST | PSH | ACK | URG);
    if f & SYN == 0 {
        if !port_owned {
            return redirect(ctx, Counter::RedirectTcpClosedPort);
        }
        let payload = total_len - ihl - doff * 4;
        return established(ctx, f, payload, off);
    }
    if !port_owned {
        return redirect(ctx, Counter::RedirectTcpClosedPort);
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
