//! Frame builders shared by unit tests, the end-to-end and
//! BPF_PROG_TEST_RUN tests, fuzz targets and benchmarks: whole frames
//! (Ethernet + IPv4 + TCP/ICMP, Ethernet + ARP) from the reprs and views of
//! this module's siblings. [`TcpSegment`] writes raw fields (any flag byte,
//! an acknowledgment field without ACK, option bytes as given, a data
//! offset that disagrees with them, no checksum) so that tests can build
//! the malformed headers they need; anything rarer is a hand mutation of a
//! valid frame at the call site.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    arp::{self, ArpRepr},
    checksum::PseudoAddr,
    ethernet::{self, EthernetRepr, Mac},
    icmp::IcmpRepr,
    icmpv6::{Icmpv6Repr, NdpRepr},
    ipv4::{self, Ipv4Repr},
    ipv6::{self, Ipv6Repr},
    tcp::{SeqNumber, TcpPacket, TcpRepr},
};

/// The addresses of a frame, Ethernet and IPv4, source and destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Source MAC (and ARP sender hardware address).
    pub src_mac: Mac,
    /// Destination MAC.
    pub dst_mac: Mac,
    /// Source IPv4 address (and ARP sender protocol address).
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
}

impl Endpoints {
    /// An Ethernet frame of `ethertype` around `payload` (no padding).
    pub fn ethernet(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
        let repr = EthernetRepr {
            dst: self.dst_mac,
            src: self.src_mac,
            ethertype,
        };
        repr.emit(&mut f).expect("room for the header");
        f[ethernet::HEADER_LEN..].copy_from_slice(payload);
        f
    }

    /// An IPv4 packet in an Ethernet frame: a 20-byte header (identification
    /// 1, TTL 64, don't-fragment) with `protocol`, around `body`.
    pub fn ipv4(&self, protocol: u8, body: &[u8]) -> Vec<u8> {
        self.ipv4_with_ident(protocol, 1, body)
    }

    /// [`ipv4`](Self::ipv4) with identification `ident`.
    pub fn ipv4_with_ident(&self, protocol: u8, ident: u16, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; ipv4::HEADER_LEN + body.len()];
        let repr = Ipv4Repr {
            src: self.src_ip,
            dst: self.dst_ip,
            protocol,
            ttl: 64,
            tos: 0,
            ident,
            dont_frag: true,
            payload_len: body.len(),
        };
        repr.emit(&mut p).expect("room for the header");
        p[ipv4::HEADER_LEN..].copy_from_slice(body);
        self.ethernet(ethernet::ETHERTYPE_IPV4, &p)
    }

    /// A TCP segment in IPv4 and Ethernet, its checksum over these
    /// addresses (when `seg.checksum`).
    pub fn tcp(&self, seg: &TcpSegment) -> Vec<u8> {
        self.ipv4(ipv4::PROTO_TCP, &seg.emit(self.src_ip, self.dst_ip))
    }

    /// A TCP segment from its repr (header, options, payload, checksum)
    /// in IPv4 and Ethernet.
    pub fn tcp_repr(&self, repr: &TcpRepr) -> Vec<u8> {
        let mut seg = vec![0u8; repr.len()];
        repr.emit(self.src_ip, self.dst_ip, &mut seg)
            .expect("room for the segment");
        self.ipv4(ipv4::PROTO_TCP, &seg)
    }

    /// An ICMP message in IPv4 and Ethernet.
    pub fn icmp(&self, repr: &IcmpRepr) -> Vec<u8> {
        let mut body = vec![0u8; repr.len()];
        repr.emit(&mut body).expect("room for the message");
        self.ipv4(ipv4::PROTO_ICMP, &body)
    }

    /// An ARP packet `op` from these source addresses for `tpa` (target
    /// hardware address `tha`), in an Ethernet frame.
    pub fn arp(&self, op: u16, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
        let mut a = [0u8; arp::PACKET_LEN];
        let repr = ArpRepr {
            op,
            sha: self.src_mac,
            spa: self.src_ip,
            tha,
            tpa,
        };
        repr.emit(&mut a).expect("room for the packet");
        self.ethernet(ethernet::ETHERTYPE_ARP, &a)
    }

    /// An ARP request for `tpa` (target hardware address all zeros).
    pub fn arp_request(&self, tpa: Ipv4Addr) -> Vec<u8> {
        self.arp(arp::OP_REQUEST, Mac::default(), tpa)
    }
}

/// The addresses of an IPv6 frame, Ethernet and IPv6, source and
/// destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints6 {
    /// Source MAC.
    pub src_mac: Mac,
    /// Destination MAC.
    pub dst_mac: Mac,
    /// Source IPv6 address.
    pub src_ip: Ipv6Addr,
    /// Destination IPv6 address.
    pub dst_ip: Ipv6Addr,
}

impl Endpoints6 {
    fn eth(&self) -> Endpoints {
        Endpoints {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::UNSPECIFIED,
        }
    }

    /// An IPv6 packet (no extension headers, hop limit `hop_limit`) with
    /// `next_header` around `body`, in an Ethernet frame.
    pub fn ipv6_with_hop_limit(&self, next_header: u8, hop_limit: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; ipv6::HEADER_LEN + body.len()];
        let repr = Ipv6Repr {
            src: self.src_ip,
            dst: self.dst_ip,
            next_header,
            hop_limit,
            traffic_class: 0,
            payload_len: body.len(),
        };
        repr.emit(&mut p).expect("room for the header");
        p[ipv6::HEADER_LEN..].copy_from_slice(body);
        self.eth().ethernet(ethernet::ETHERTYPE_IPV6, &p)
    }

    /// An IPv6 packet with hop limit 64.
    pub fn ipv6(&self, next_header: u8, body: &[u8]) -> Vec<u8> {
        self.ipv6_with_hop_limit(next_header, 64, body)
    }

    /// A TCP segment in IPv6 and Ethernet, its checksum over the IPv6
    /// pseudo-header (when `seg.checksum`).
    pub fn tcp(&self, seg: &TcpSegment) -> Vec<u8> {
        self.ipv6(ipv6::NH_TCP, &seg.emit(self.src_ip, self.dst_ip))
    }

    /// An ICMPv6 message in IPv6 and Ethernet.
    pub fn icmpv6(&self, repr: &Icmpv6Repr) -> Vec<u8> {
        let mut body = vec![0u8; repr.len()];
        repr.emit(self.src_ip, self.dst_ip, &mut body)
            .expect("room for the message");
        self.ipv6(ipv6::NH_ICMPV6, &body)
    }

    /// A neighbour solicitation or advertisement (hop limit 255).
    pub fn ndp(&self, repr: &NdpRepr) -> Vec<u8> {
        let mut body = [0u8; super::icmpv6::NDP_LEN];
        let n = repr
            .emit(self.src_ip, self.dst_ip, &mut body)
            .expect("room for the message");
        self.ipv6_with_hop_limit(ipv6::NH_ICMPV6, 255, &body[..n])
    }
}

/// A TCP segment by its raw header fields (RFC 9293 §3.1). Unlike
/// [`TcpRepr`](super::tcp::TcpRepr), nothing is normalised: the flag byte,
/// the acknowledgment field and the option bytes are written as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment field, written whatever the flags.
    pub ack: u32,
    /// Control bits (byte 13).
    pub flags: u8,
    /// Window field.
    pub window: u16,
    /// Option bytes, as given (whole 32-bit words for a valid header).
    pub options: &'a [u8],
    /// Data after the header.
    pub payload: &'a [u8],
    /// Data offset in words; `None` derives it from the options' length.
    /// A value that disagrees with the bytes makes a malformed header.
    pub data_offset: Option<u8>,
    /// Fill in the checksum; `false` leaves the field zero.
    pub checksum: bool,
}

impl Default for TcpSegment<'_> {
    fn default() -> Self {
        TcpSegment {
            src_port: 0,
            dst_port: 0,
            seq: 0,
            ack: 0,
            flags: 0,
            window: 0,
            options: &[],
            payload: &[],
            data_offset: None,
            checksum: true,
        }
    }
}

impl TcpSegment<'_> {
    /// The segment's bytes, its checksum computed for `src` → `dst`.
    pub fn emit<A: PseudoAddr>(&self, src: A, dst: A) -> Vec<u8> {
        let hlen = super::tcp::HEADER_LEN + self.options.len();
        let mut t = vec![0u8; hlen + self.payload.len()];
        t[super::tcp::HEADER_LEN..hlen].copy_from_slice(self.options);
        t[hlen..].copy_from_slice(self.payload);
        let mut p = TcpPacket::new_unchecked(&mut t[..]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq(SeqNumber(self.seq));
        p.set_ack(SeqNumber(self.ack));
        match self.data_offset {
            Some(words) => p.set_header_len(usize::from(words) * 4),
            None => p.set_header_len(hlen),
        }
        p.set_flags(self.flags);
        p.set_window(self.window);
        if self.checksum {
            p.fill_checksum(src, dst);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        icmp,
        tcp::{TcpParseError, ACK, SYN},
    };

    const E: Endpoints = Endpoints {
        src_mac: Mac([2, 0, 0, 0, 0, 1]),
        dst_mac: Mac([2, 0, 0, 0, 0, 2]),
        src_ip: Ipv4Addr::new(198, 18, 0, 1),
        dst_ip: Ipv4Addr::new(198, 18, 0, 2),
    };

    #[test]
    fn built_frames_parse_back() {
        let f = E.tcp(&TcpSegment {
            src_port: 40000,
            dst_port: 80,
            seq: 7,
            ack: 9,
            flags: SYN | ACK,
            window: 1000,
            options: &[2, 4, 0x05, 0xb4],
            payload: b"hi",
            ..TcpSegment::default()
        });
        let (eth, ip) = EthernetRepr::parse(&f).unwrap();
        assert_eq!((eth.src, eth.dst), (E.src_mac, E.dst_mac));
        let (ipr, seg) = Ipv4Repr::parse(ip).unwrap();
        assert_eq!((ipr.src, ipr.dst, ipr.ident), (E.src_ip, E.dst_ip, 1));
        let t = TcpRepr::parse(ipr.src, ipr.dst, seg).unwrap();
        assert_eq!(
            (t.seq, t.ack, t.flags),
            (SeqNumber(7), Some(SeqNumber(9)), SYN)
        );
        assert_eq!((t.options.mss, t.payload), (Some(1460), &b"hi"[..]));

        let a = E.arp_request(E.dst_ip);
        let (_, body) = EthernetRepr::parse(&a).unwrap();
        let r = ArpRepr::parse(body).unwrap();
        assert_eq!((r.op, r.spa, r.tpa), (arp::OP_REQUEST, E.src_ip, E.dst_ip));

        let data = [1u8, 2, 3];
        let echo = IcmpRepr {
            kind: icmp::ECHO_REQUEST,
            code: 0,
            rest: [0, 1, 0, 2],
            data: &data,
        };
        let i = E.icmp(&echo);
        let (_, ip) = EthernetRepr::parse(&i).unwrap();
        let (_, body) = Ipv4Repr::parse(ip).unwrap();
        assert_eq!(IcmpRepr::parse(body).unwrap(), echo);
    }

    #[test]
    fn malformed_knobs_make_malformed_segments() {
        let bad = TcpSegment {
            data_offset: Some(3),
            ..TcpSegment::default()
        }
        .emit(E.src_ip, E.dst_ip);
        assert_eq!(
            TcpRepr::parse(E.src_ip, E.dst_ip, &bad).unwrap_err(),
            TcpParseError::BadDataOffset
        );
        let unsummed = TcpSegment {
            checksum: false,
            ..TcpSegment::default()
        }
        .emit(E.src_ip, E.dst_ip);
        assert_eq!(TcpPacket::new_checked(&unsummed).unwrap().checksum(), 0);
    }
}
