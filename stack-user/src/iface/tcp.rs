//! The TCP entry of the frame layer: segments for owned addresses go to the
//! sans-IO TCP engine, final ACKs whose SYN cookie XDP validated come with
//! their metadata, and what TCP sends is wrapped in IPv4 and Ethernet.

use std::net::IpAddr;

use super::{FrameSink, Interface};
use crate::time::Instant;
use crate::wire::{
    ethernet::{self, EthernetRepr, Mac},
    ipv4::{self, Ipv4Repr},
    ipv6::{self, Ipv6Repr},
    tcp::{TcpPacket, ACK, FIN, RST, SYN},
};

/// The cookie metadata XDP put in front of a frame, if `meta` holds one.
pub fn cookie_meta(meta: &[u8]) -> Option<stack_ebpf::CookieMeta> {
    let m: stack_ebpf::CookieMeta =
        bytemuck::try_pod_read_unaligned(meta.get(..stack_ebpf::COOKIE_META_LEN)?).ok()?;
    (m.magic == stack_ebpf::COOKIE_META_MAGIC).then_some(m)
}

/// Whether `meta` marks a cookie SYN-ACK that XDP built for the engine to
/// send (`stack_ebpf::CFG_COOKIE_VIA_ENGINE`).
pub fn is_cookie_synack(meta: &[u8]) -> bool {
    meta.get(..stack_ebpf::COOKIE_META_LEN)
        .and_then(|m| bytemuck::try_pod_read_unaligned::<stack_ebpf::CookieMeta>(m).ok())
        .is_some_and(|m| m.magic == stack_ebpf::COOKIE_META_SYNACK)
}

impl Interface {
    /// A SYN cookie SYN-ACK that XDP built in place of the SYN (Linux
    /// `cookie_v4_init_sequence`, RFC 4987 §3.6) and handed over, marked, for
    /// this engine to send through AF_XDP TX: on a veth whose peer runs no
    /// NAPI, what XDP sends itself never arrives. It goes out byte for byte
    /// as XDP built it (one builder, so both paths answer alike) and leaves
    /// no state: the final ACK is validated by XDP as on the other path.
    /// Only XDP can write the metadata, so the frame is XDP's; it is still
    /// checked to be an IPv4 or IPv6 SYN-ACK from an owned address, and
    /// anything else is counted in `cookie_meta_invalid` and dropped.
    pub(super) fn send_cookie_synack(&mut self, frame: &[u8], tx: &mut dyn FrameSink) {
        let is_synack = |seg: &[u8]| {
            TcpPacket::new_checked(seg)
                .is_ok_and(|t| t.flags() & (SYN | ACK | RST | FIN) == SYN | ACK)
        };
        let ours = EthernetRepr::parse(frame)
            .ok()
            .is_some_and(|(eth, payload)| match eth.ethertype {
                ethernet::ETHERTYPE_IPV4 => {
                    Ipv4Repr::parse(payload).ok().is_some_and(|(ip, seg)| {
                        ip.protocol == ipv4::PROTO_TCP && self.owns(ip.src) && is_synack(seg)
                    })
                }
                ethernet::ETHERTYPE_IPV6 => {
                    Ipv6Repr::parse(payload).ok().is_some_and(|(ip, seg)| {
                        ip.next_header == ipv6::NH_TCP && self.owns6(ip.src) && is_synack(seg)
                    })
                }
                _ => false,
            });
        // Not even the peer's address is learned: under a flood of spoofed
        // SYNs that would be state per source (the final ACK teaches it).
        if !ours {
            self.stats.cookie_meta_invalid += 1;
            return;
        }
        let sent = tx.send(&mut |buf| match buf.get_mut(..frame.len()) {
            Some(b) => {
                b.copy_from_slice(frame);
                frame.len()
            }
            None => 0,
        });
        self.count_sent(sent, |s| s.cookie_synacks_sent += 1);
    }

    /// A final ACK whose cookie XDP validated, with the options the cookie
    /// restored (MSS, window scale, SACK, ECN): the TCP engine creates the
    /// connection straight in ESTABLISHED on the listener's accept queue
    /// (Linux `cookie_v4_check`/`cookie_v6_check` → `tcp_get_cookie_sock`).
    /// Returns false when the frame is not a TCP frame for us over IPv4 or
    /// IPv6.
    pub(super) fn on_cookie_ack(
        &mut self,
        now: Instant,
        m: &stack_ebpf::CookieMeta,
        frame: &[u8],
    ) -> bool {
        let Ok((eth, payload)) = EthernetRepr::parse(frame) else {
            return false;
        };
        let opts = stack_ebpf::cookie::CookieOptions {
            mss: m.mss,
            wscale: (m.wscale != stack_ebpf::META_NO_WSCALE).then_some(m.wscale),
            sack: m.flags & stack_ebpf::META_SACK != 0,
            ecn: m.flags & stack_ebpf::META_ECN != 0,
        };
        if eth.ethertype == ethernet::ETHERTYPE_IPV6 {
            // Over IPv6 (Linux `cookie_v6_check`): the same, with the
            // 128-bit addresses.
            let Ok((ip, seg)) = Ipv6Repr::parse(payload) else {
                return false;
            };
            if ip.next_header != ipv6::NH_TCP || !self.owns6(ip.dst) {
                return false;
            }
            self.learn6(ip.src, eth.src);
            self.stats.cookie_acks += 1;
            self.stats.tcp_segments += 1;
            let _ = self.tcp.on_cookie_ack(now, ip.src, ip.dst, seg, opts);
            return true;
        }
        let Ok((ip, seg)) = Ipv4Repr::parse(payload) else {
            return false;
        };
        if eth.ethertype != ethernet::ETHERTYPE_IPV4
            || ip.protocol != ipv4::PROTO_TCP
            || !self.owns(ip.dst)
        {
            return false;
        }
        self.learn(ip.src, eth.src);
        self.stats.cookie_acks += 1;
        self.stats.tcp_segments += 1;
        let _ = self.tcp.on_cookie_ack(now, ip.src, ip.dst, seg, opts);
        true
    }

    /// Wraps each segment TCP wants to send in IPv4 or IPv6 and Ethernet.
    /// The segment is written after a 20-byte IPv4 header's room; an IPv6
    /// segment is moved 20 bytes on to make room for its 40-byte header
    /// (the engine's IPv6 MSS is 20 less, so it fits the same buffer).
    pub(super) fn drain_tcp(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        const IP_OFF: usize = ethernet::HEADER_LEN;
        const TCP_OFF: usize = IP_OFF + ipv4::HEADER_LEN;
        const TCP6_OFF: usize = IP_OFF + ipv6::HEADER_LEN;
        const SHIFT: usize = TCP6_OFF - TCP_OFF;
        loop {
            let mut out: Option<(crate::tcp::Transmit, Option<Mac>)> = None;
            let (tcp, neighbors, neighbors6, mac) = (
                &mut self.tcp,
                &self.neighbors,
                &self.neighbors6,
                self.config.mac,
            );
            let ident = &mut self.ident;
            let scratch = &mut self.scratch;
            let mtu = self.config.mtu as usize;
            let mut oversize = false;
            let sent = tx.send(&mut |buf| {
                if buf.len() < TCP6_OFF + 60 {
                    return 0;
                }
                let end = buf.len() - SHIFT;
                let Some(t) = tcp.poll_transmit(now, &mut buf[TCP_OFF..end]) else {
                    return 0;
                };
                let (len, dst_mac, ethertype) = match (t.src, t.dst) {
                    (IpAddr::V4(src), IpAddr::V4(dst)) => {
                        *ident = ident.wrapping_add(1);
                        let ip = Ipv4Repr {
                            src,
                            dst,
                            protocol: ipv4::PROTO_TCP,
                            ttl: 64,
                            tos: 0,
                            ident: *ident,
                            dont_frag: true,
                            payload_len: t.len,
                        };
                        if ip.emit(&mut buf[IP_OFF..]).is_err() {
                            return 0;
                        }
                        (
                            TCP_OFF + t.len,
                            neighbors.get(&dst).copied(),
                            ethernet::ETHERTYPE_IPV4,
                        )
                    }
                    (IpAddr::V6(src), IpAddr::V6(dst)) => {
                        buf.copy_within(TCP_OFF..TCP_OFF + t.len, TCP6_OFF);
                        let ip = Ipv6Repr {
                            src,
                            dst,
                            next_header: ipv6::NH_TCP,
                            hop_limit: super::ipv6::HOP_LIMIT,
                            traffic_class: 0,
                            payload_len: t.len,
                        };
                        if ip.emit(&mut buf[IP_OFF..]).is_err() {
                            return 0;
                        }
                        (
                            TCP6_OFF + t.len,
                            neighbors6.get(&dst).copied(),
                            ethernet::ETHERTYPE_IPV6,
                        )
                    }
                    // The engine never opens a mixed-family connection.
                    _ => return 0,
                };
                if mtu > 0 && len - IP_OFF > mtu {
                    oversize = true;
                    return 0;
                }
                out = Some((t, dst_mac));
                let eth = EthernetRepr {
                    dst: dst_mac.unwrap_or(Mac::BROADCAST),
                    src: mac,
                    ethertype,
                };
                if eth.emit(buf).is_err() {
                    return 0;
                }
                if dst_mac.is_none() {
                    // Hold a copy until ARP / ND resolves; send nothing now.
                    scratch.clear();
                    scratch.extend_from_slice(&buf[..len]);
                    return 0;
                }
                len.max(60)
            });
            if oversize {
                if self.stats.tx_oversize == 0 {
                    log::warn!(
                        "a TCP frame larger than the link's MTU ({}) was not sent (counted as tx_oversize): segment sizing is wrong",
                        self.config.mtu
                    );
                }
                self.stats.tx_oversize += 1;
                continue;
            }
            match out {
                None => {
                    if !sent {
                        self.stats.tx_no_buffer += 1;
                    }
                    return;
                }
                Some((_, Some(_))) => self.count_sent(sent, |_| {}),
                Some((t, None)) => {
                    let frame = std::mem::take(&mut self.scratch);
                    self.hold(now, t.dst, frame, tx);
                    self.scratch = vec![0u8; 2048];
                }
            }
        }
    }

    /// Counts a TCP segment for an owned IPv6 address and hands it to the
    /// TCP engine (which verifies the checksum over the IPv6
    /// pseudo-header).
    pub(super) fn handle_tcp6(&mut self, now: Instant, ip: &Ipv6Repr, seg: &[u8]) {
        if self.count_tcp(seg) {
            self.tcp.on_segment(now, ip.src, ip.dst, seg);
        }
    }

    /// The frame layer's TCP counters for a segment to us; false when it
    /// is too malformed to hand on.
    fn count_tcp(&mut self, seg: &[u8]) -> bool {
        let Ok(packet) = TcpPacket::new_checked(seg) else {
            self.stats.drop_tcp_malformed += 1;
            return false;
        };
        let dport = packet.dst_port();
        // Segments to a port nobody listens on (and no connection) are for
        // the TCP layer too: it answers with RST (RFC 9293 §3.10.7.1).
        self.stats.tcp_segments += 1;
        if !self.config.ports.contains(&dport) {
            self.stats.tcp_not_listened += 1;
        }
        let flags = packet.flags();
        if flags & SYN != 0 && flags & ACK == 0 {
            self.stats.tcp_syns += 1;
        }
        true
    }

    /// Counts a TCP segment for an owned address (`handle_ipv4` checked it)
    /// (RFC 9293 §3.1 header: ports,
    /// data offset, flags) and hands it to the `tcp` state machine, which
    /// verifies the checksum and counts its own drops.
    pub(super) fn handle_tcp(&mut self, now: Instant, ip: &Ipv4Repr, seg: &[u8]) {
        if self.count_tcp(seg) {
            self.tcp.on_segment(now, ip.src, ip.dst, seg);
        }
    }
}
