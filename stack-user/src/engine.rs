//! The per-queue engine: a sans-IO frame handler.
//!
//! It takes one received Ethernet frame at a time and emits replies through a
//! [`Transmit`] sink. It has no I/O and no clock of its own, so it is tested in
//! memory. It answers ARP requests (RFC 826) and ICMP echo (RFC 792) for the
//! stack's own addresses and hands TCP segments for owned ports to the TCP
//! layer; everything malformed is dropped and counted by reason.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::wire::{
    arp::{self, ArpRepr},
    ethernet::{self, EthernetRepr, Mac},
    icmp::{self, IcmpRepr},
    ipv4::{self, Ipv4Repr},
    WireError,
};

/// Something that can send frames: `build` writes a frame into the buffer it
/// is given and returns its length. Returns false when the frame could not be
/// queued (no free buffer).
pub trait Transmit {
    /// Queues one frame built by `build`.
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool;
}

impl Transmit for crate::xsk::TxBatch<'_> {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        crate::xsk::TxBatch::send(self, build)
    }
}

/// A [`Transmit`] that collects frames in memory (tests, benchmarks).
#[derive(Default, Debug)]
pub struct VecTransmit {
    /// Frames sent, in order.
    pub frames: Vec<Vec<u8>>,
}

impl Transmit for VecTransmit {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let mut buf = vec![0u8; 2048];
        let len = build(&mut buf);
        if len > 0 {
            buf.truncate(len);
            self.frames.push(buf);
        }
        true
    }
}

/// What the engine owns.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The interface's MAC address, used as the source of every frame.
    pub mac: Mac,
    /// The stack's IPv4 addresses (not configured on the kernel interface).
    pub addrs: Vec<Ipv4Addr>,
    /// TCP ports served on those addresses.
    pub ports: Vec<u16>,
}

/// Counters of one engine. Plain integers: each queue's worker owns its
/// engine and publishes a copy for `xstack stats`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames received from the socket.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Frames that could not be queued (no free UMEM frame or ring slot).
    pub tx_no_buffer: u64,
    /// ARP requests for an owned address.
    pub arp_requests: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// ARP packets not asking for an owned address (ignored).
    pub arp_ignored: u64,
    /// ICMP echo requests for an owned address.
    pub icmp_echo_requests: u64,
    /// ICMP echo replies sent.
    pub icmp_echo_replies: u64,
    /// Other ICMP messages (ignored).
    pub icmp_other: u64,
    /// TCP segments for an owned (address, port).
    pub tcp_segments: u64,
    /// Of those, SYNs without ACK (connection attempts).
    pub tcp_syns: u64,
    /// TCP segments for an address or port the engine does not own.
    pub tcp_not_owned: u64,
    /// IPv4 packets for an address the engine does not own.
    pub ip_not_owned: u64,
    /// IPv4 packets of a protocol the engine does not handle.
    pub ip_other_proto: u64,
    /// TCP header shorter than 20 bytes or data offset invalid.
    pub drop_tcp_malformed: u64,
    /// Malformed frames, by reason (indexed by [`WireError::index`]).
    #[serde(skip)]
    pub drop_wire: [u64; 12],
}

impl EngineStats {
    /// Adds another engine's counters to these.
    pub fn add(&mut self, o: &EngineStats) {
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.tx_frames += o.tx_frames;
        self.tx_no_buffer += o.tx_no_buffer;
        self.arp_requests += o.arp_requests;
        self.arp_replies += o.arp_replies;
        self.arp_ignored += o.arp_ignored;
        self.icmp_echo_requests += o.icmp_echo_requests;
        self.icmp_echo_replies += o.icmp_echo_replies;
        self.icmp_other += o.icmp_other;
        self.tcp_segments += o.tcp_segments;
        self.tcp_syns += o.tcp_syns;
        self.tcp_not_owned += o.tcp_not_owned;
        self.ip_not_owned += o.ip_not_owned;
        self.ip_other_proto += o.ip_other_proto;
        self.drop_tcp_malformed += o.drop_tcp_malformed;
        for (a, b) in self.drop_wire.iter_mut().zip(o.drop_wire.iter()) {
            *a += b;
        }
    }

    /// Malformed-frame drops as (counter name, value) pairs.
    pub fn wire_drops(&self) -> Vec<(&'static str, u64)> {
        WireError::ALL
            .iter()
            .map(|e| (e.counter_name(), self.drop_wire[e.index()]))
            .collect()
    }

    /// Total malformed-frame drops.
    pub fn wire_drops_total(&self) -> u64 {
        self.drop_wire.iter().sum::<u64>() + self.drop_tcp_malformed
    }
}

/// The per-queue frame handler.
pub struct Engine {
    config: EngineConfig,
    stats: EngineStats,
    ident: u16,
}

const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

impl Engine {
    /// A new engine for `config`.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            stats: EngineStats::default(),
            ident: 1,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Records frames the datapath could not queue.
    pub fn count_tx_no_buffer(&mut self, n: u64) {
        self.stats.tx_no_buffer += n;
    }

    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.config.addrs.contains(&ip)
    }

    fn drop_wire(&mut self, e: WireError) {
        self.stats.drop_wire[e.index()] += 1;
    }

    /// Handles one received frame; replies go to `tx`.
    pub fn handle_frame(&mut self, frame: &[u8], tx: &mut dyn Transmit) {
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        if let Err(e) = self.dispatch(frame, tx) {
            self.drop_wire(e);
        }
    }

    fn dispatch(&mut self, frame: &[u8], tx: &mut dyn Transmit) -> Result<(), WireError> {
        let (eth, payload) = EthernetRepr::parse(frame)?;
        match eth.ethertype {
            ethernet::ETHERTYPE_ARP => self.handle_arp(&eth, payload, tx),
            ethernet::ETHERTYPE_IPV4 => self.handle_ipv4(&eth, payload, tx),
            other => Err(WireError::UnsupportedEtherType(other)),
        }
    }

    /// RFC 826, "Packet Reception": answer requests for our addresses.
    fn handle_arp(
        &mut self,
        eth: &EthernetRepr,
        payload: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let req = ArpRepr::parse(payload)?;
        if req.op != arp::OP_REQUEST || !self.owns(req.tpa) {
            self.stats.arp_ignored += 1;
            return Ok(());
        }
        self.stats.arp_requests += 1;
        let reply = ArpRepr {
            op: arp::OP_REPLY,
            sha: self.config.mac,
            spa: req.tpa,
            tha: req.sha,
            tpa: req.spa,
        };
        let eth_out = EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_ARP,
        };
        let sent = tx.send(&mut |buf| {
            let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
            if eth_out.emit(buf).is_err() || reply.emit(&mut buf[ethernet::HEADER_LEN..]).is_err() {
                return 0;
            }
            // Pad to the Ethernet minimum of 60 bytes (without FCS).
            let padded = len.max(60).min(buf.len());
            buf[len..padded].fill(0);
            padded
        });
        self.count_sent(sent, |s| s.arp_replies += 1);
        Ok(())
    }

    fn count_sent(&mut self, sent: bool, f: impl FnOnce(&mut EngineStats)) {
        if sent {
            self.stats.tx_frames += 1;
            f(&mut self.stats);
        } else {
            self.stats.tx_no_buffer += 1;
        }
    }

    fn handle_ipv4(
        &mut self,
        eth: &EthernetRepr,
        payload: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let (ip, body) = Ipv4Repr::parse(payload)?;
        if !self.owns(ip.dst) {
            self.stats.ip_not_owned += 1;
            return Ok(());
        }
        match ip.protocol {
            ipv4::PROTO_ICMP => self.handle_icmp(eth, &ip, body, tx),
            ipv4::PROTO_TCP => {
                self.handle_tcp(&ip, body);
                Ok(())
            }
            _ => {
                self.stats.ip_other_proto += 1;
                Ok(())
            }
        }
    }

    /// RFC 792, "Echo or Echo Reply Message": swap addresses, type 0, same
    /// identifier, sequence and data.
    fn handle_icmp(
        &mut self,
        eth: &EthernetRepr,
        ip: &Ipv4Repr,
        body: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let msg = IcmpRepr::parse(body)?;
        if msg.kind != icmp::ECHO_REQUEST || msg.code != 0 {
            self.stats.icmp_other += 1;
            return Ok(());
        }
        self.stats.icmp_echo_requests += 1;
        let reply = IcmpRepr {
            kind: icmp::ECHO_REPLY,
            ..msg
        };
        self.ident = self.ident.wrapping_add(1);
        let ip_out = Ipv4Repr {
            src: ip.dst,
            dst: ip.src,
            protocol: ipv4::PROTO_ICMP,
            ttl: 64,
            tos: ip.tos,
            ident: self.ident,
            dont_frag: false,
            payload_len: reply.len(),
        };
        let eth_out = EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_IPV4,
        };
        let sent = tx.send(&mut |buf| {
            let ip_off = ethernet::HEADER_LEN;
            let icmp_off = ip_off + ipv4::HEADER_LEN;
            let len = icmp_off + reply.len();
            if buf.len() < len
                || eth_out.emit(buf).is_err()
                || ip_out.emit(&mut buf[ip_off..]).is_err()
                || reply.emit(&mut buf[icmp_off..]).is_err()
            {
                return 0;
            }
            let padded = len.max(60).min(buf.len());
            buf[len..padded].fill(0);
            padded
        });
        self.count_sent(sent, |s| s.icmp_echo_replies += 1);
        Ok(())
    }

    /// Counts a TCP segment for an owned port (RFC 9293 §3.1 header: ports,
    /// data offset, flags). The connection state machine is the `tcp` module.
    fn handle_tcp(&mut self, ip: &Ipv4Repr, seg: &[u8]) {
        if seg.len() < 20 {
            self.stats.drop_tcp_malformed += 1;
            return;
        }
        let dport = u16::from_be_bytes([seg[2], seg[3]]);
        let doff = usize::from(seg[12] >> 4) * 4;
        if doff < 20 || doff > seg.len() {
            self.stats.drop_tcp_malformed += 1;
            return;
        }
        if !self.config.ports.contains(&dport) || !self.owns(ip.dst) {
            self.stats.tcp_not_owned += 1;
            return;
        }
        self.stats.tcp_segments += 1;
        let flags = seg[13];
        if flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0 {
            self.stats.tcp_syns += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x02]);
    const PEER_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            mac: OUR_MAC,
            addrs: vec![OUR_IP],
            ports: vec![8080],
        })
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        EthernetRepr {
            dst: Mac::BROADCAST,
            src: PEER_MAC,
            ethertype: ethernet::ETHERTYPE_ARP,
        }
        .emit(&mut f)
        .unwrap();
        ArpRepr {
            op: arp::OP_REQUEST,
            sha: PEER_MAC,
            spa: PEER_IP,
            tha: Mac::default(),
            tpa: target,
        }
        .emit(&mut f[14..])
        .unwrap();
        f
    }

    fn ipv4_frame(proto: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 34 + body.len()];
        EthernetRepr {
            dst: OUR_MAC,
            src: PEER_MAC,
            ethertype: ethernet::ETHERTYPE_IPV4,
        }
        .emit(&mut f)
        .unwrap();
        Ipv4Repr {
            src: PEER_IP,
            dst: OUR_IP,
            protocol: proto,
            ttl: 64,
            tos: 0,
            ident: 1,
            dont_frag: true,
            payload_len: body.len(),
        }
        .emit(&mut f[14..])
        .unwrap();
        f[34..].copy_from_slice(body);
        f
    }

    fn echo_request(data: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; 8 + data.len()];
        IcmpRepr {
            kind: icmp::ECHO_REQUEST,
            code: 0,
            rest: [0x12, 0x34, 0, 1],
            data,
        }
        .emit(&mut body)
        .unwrap();
        ipv4_frame(ipv4::PROTO_ICMP, &body)
    }

    fn tcp_syn(dport: u16) -> Vec<u8> {
        let mut seg = vec![0u8; 20];
        seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&dport.to_be_bytes());
        seg[12] = 5 << 4;
        seg[13] = TCP_FLAG_SYN;
        ipv4_frame(ipv4::PROTO_TCP, &seg)
    }

    #[test]
    fn arp_request_for_our_address_gets_a_reply() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(&arp_request(OUR_IP), &mut tx);
        assert_eq!(tx.frames.len(), 1);
        let (eth, payload) = EthernetRepr::parse(&tx.frames[0]).unwrap();
        assert_eq!(eth.dst, PEER_MAC);
        assert_eq!(eth.src, OUR_MAC);
        assert_eq!(tx.frames[0].len(), 60);
        let reply = ArpRepr::parse(payload).unwrap();
        assert_eq!(reply.op, arp::OP_REPLY);
        assert_eq!((reply.sha, reply.spa), (OUR_MAC, OUR_IP));
        assert_eq!((reply.tha, reply.tpa), (PEER_MAC, PEER_IP));
        assert_eq!(e.stats().arp_replies, 1);
    }

    #[test]
    fn arp_request_for_another_address_is_ignored() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(&arp_request(Ipv4Addr::new(198, 18, 0, 9)), &mut tx);
        assert!(tx.frames.is_empty());
        assert_eq!(e.stats().arp_ignored, 1);
    }

    #[test]
    fn icmp_echo_request_gets_an_echo_reply_with_the_same_data() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(&echo_request(b"abcdefgh12345"), &mut tx);
        assert_eq!(tx.frames.len(), 1);
        let (eth, payload) = EthernetRepr::parse(&tx.frames[0]).unwrap();
        assert_eq!(eth.dst, PEER_MAC);
        let (ip, body) = Ipv4Repr::parse(payload).unwrap();
        assert_eq!((ip.src, ip.dst), (OUR_IP, PEER_IP));
        let reply = IcmpRepr::parse(body).unwrap();
        assert_eq!(reply.kind, icmp::ECHO_REPLY);
        assert_eq!(reply.rest, [0x12, 0x34, 0, 1]);
        assert_eq!(reply.data, b"abcdefgh12345");
        assert_eq!(checksum::checksum(body), 0);
        assert_eq!(e.stats().icmp_echo_replies, 1);
    }

    #[test]
    fn tcp_syn_to_owned_port_is_counted() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(&tcp_syn(8080), &mut tx);
        e.handle_frame(&tcp_syn(9999), &mut tx);
        assert_eq!(e.stats().tcp_segments, 1);
        assert_eq!(e.stats().tcp_syns, 1);
        assert_eq!(e.stats().tcp_not_owned, 1);
    }

    #[test]
    fn malformed_frames_are_counted_by_reason() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        // Truncated Ethernet header.
        e.handle_frame(&[0u8; 5], &mut tx);
        // Truncated ARP.
        e.handle_frame(&arp_request(OUR_IP)[..30], &mut tx);
        // IPv4 with a bad header checksum.
        let mut bad = echo_request(b"x");
        bad[14 + 10] ^= 0xff;
        e.handle_frame(&bad, &mut tx);
        // IPv4 total length past the frame (oversized claim).
        let mut long = echo_request(b"x");
        long[14 + 2..14 + 4].copy_from_slice(&9000u16.to_be_bytes());
        e.handle_frame(&long, &mut tx);
        // ICMP with a bad checksum.
        let mut icmp_bad = echo_request(b"x");
        let last = icmp_bad.len() - 1;
        icmp_bad[last] ^= 0xff;
        e.handle_frame(&icmp_bad, &mut tx);
        // TCP with data offset 15 in a 20-byte segment.
        let mut tcp_bad = tcp_syn(8080);
        tcp_bad[34 + 12] = 0xf0;
        e.handle_frame(&tcp_bad, &mut tx);
        // IPv6 EtherType.
        let mut v6 = echo_request(b"x");
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        e.handle_frame(&v6, &mut tx);

        assert!(tx.frames.is_empty());
        let s = e.stats();
        assert_eq!(s.rx_frames, 7);
        assert_eq!(s.drop_wire[WireError::EthernetTruncated.index()], 1);
        assert_eq!(s.drop_wire[WireError::ArpTruncated.index()], 1);
        assert_eq!(s.drop_wire[WireError::Ipv4BadChecksum.index()], 1);
        assert_eq!(s.drop_wire[WireError::Ipv4BadLength.index()], 1);
        assert_eq!(s.drop_wire[WireError::IcmpBadChecksum.index()], 1);
        assert_eq!(s.drop_wire[WireError::UnsupportedEtherType(0).index()], 1);
        assert_eq!(s.drop_tcp_malformed, 1);
        assert_eq!(s.wire_drops_total(), 7);
    }

    #[test]
    fn random_and_truncated_frames_never_panic() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        let templates = [arp_request(OUR_IP), echo_request(b"hello"), tcp_syn(8080)];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut n = 0u64;
        for t in &templates {
            for len in 0..=t.len() {
                e.handle_frame(&t[..len], &mut tx);
                n += 1;
            }
            for _ in 0..2000 {
                let mut f = t.clone();
                let flips = 1 + next() % 4;
                for _ in 0..flips {
                    let i = (next() as usize) % f.len();
                    f[i] = next() as u8;
                }
                e.handle_frame(&f, &mut tx);
                n += 1;
            }
        }
        for _ in 0..2000 {
            let len = (next() % 1600) as usize;
            let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            e.handle_frame(&f, &mut tx);
            n += 1;
        }
        assert_eq!(e.stats().rx_frames, n);
    }
}
