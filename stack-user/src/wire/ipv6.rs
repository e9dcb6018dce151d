//! IPv6 headers (RFC 8200 §3) and the bounded extension-header walk
//! (RFC 8200 §4): the [`Ipv6Packet`] view and the [`Ipv6Repr`] parsed form.

use std::net::Ipv6Addr;

use super::{be16, ethernet::Mac, WireError};

/// Byte ranges of the fixed header's fields (RFC 8200 §3).
mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Next header: hop-by-hop options (RFC 8200 §4.3).
pub const NH_HOP_BY_HOP: u8 = 0;
/// Next header: TCP.
pub const NH_TCP: u8 = 6;
/// Next header: routing (RFC 8200 §4.4).
pub const NH_ROUTING: u8 = 43;
/// Next header: fragment (RFC 8200 §4.5).
pub const NH_FRAGMENT: u8 = 44;
/// Next header: ICMPv6 (RFC 4443).
pub const NH_ICMPV6: u8 = 58;
/// Next header: no next header (RFC 8200 §4.7).
pub const NH_NONE: u8 = 59;
/// Next header: destination options (RFC 8200 §4.6).
pub const NH_DEST_OPTS: u8 = 60;
/// Most extension headers the walk follows before it gives up (the XDP
/// program uses the same bound, `stack_ebpf` `IPV6_MAX_EXT_HEADERS`).
pub const MAX_EXT_HEADERS: usize = 4;

/// A view of an IPv6 packet. A view made by
/// [`new_checked`](Ipv6Packet::new_checked) holds a whole fixed header of
/// version 6; the payload length and the extension headers are left to
/// [`Ipv6Repr::parse`].
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks: accessors panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// A view of a buffer holding a whole fixed header of version 6.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, WireError> {
        let p = Ipv6Packet { buffer };
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Ipv6Truncated);
        }
        if p.version() != 6 {
            return Err(WireError::Ipv6BadHeader);
        }
        Ok(p)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Version field.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// Traffic class (DSCP + ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }
    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }
    /// Payload length: everything after the fixed header.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }
    /// Next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC])
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, tc: u8, flow: u32) {
        let w = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }
    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }
}

#[inline]
fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// A validated IPv6 header, its extension headers walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The upper-layer protocol after the extension headers (on emit: the
    /// fixed header's next header; emit writes no extension headers).
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Length of the upper-layer payload (after the extension headers).
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Parses and validates a packet: version, payload length against the
    /// buffer (trailing link padding is cut off), then follows at most
    /// [`MAX_EXT_HEADERS`] hop-by-hop (first only, RFC 8200 §4.1), routing
    /// and destination-options headers (RFC 8200 §4.3, §4.4, §4.6; their
    /// contents are not acted on: a routing header with segments left is
    /// for another node, and we are its destination only when it is
    /// empty, so one with segments left is refused as a bad chain).
    /// Fragments are refused (the engine does not reassemble). Returns the
    /// header (with the upper-layer protocol) and the upper-layer payload.
    pub fn parse(buf: &[u8]) -> Result<(Ipv6Repr, &[u8]), WireError> {
        let p = Ipv6Packet::new_checked(buf)?;
        let total = HEADER_LEN + usize::from(p.payload_len());
        if total > buf.len() {
            return Err(WireError::Ipv6BadLength);
        }
        let (next_header, off) = walk_ext_headers(p.next_header(), &buf[..total])?;
        let repr = Ipv6Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            next_header,
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            payload_len: total - off,
        };
        Ok((repr, &buf[off..total]))
    }

    /// Writes a 40-byte header (no extension headers) at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.len() < HEADER_LEN || self.payload_len > usize::from(u16::MAX) {
            return Err(WireError::BufferTooSmall);
        }
        let mut p = Ipv6Packet::new_unchecked(buf);
        p.set_version_tc_flow(self.traffic_class, 0);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        Ok(())
    }
}

/// Follows the extension headers of `packet` (the fixed header and the
/// payload) from `first`: returns the upper-layer protocol and its offset.
fn walk_ext_headers(first: u8, packet: &[u8]) -> Result<(u8, usize), WireError> {
    let mut nh = first;
    let mut off = HEADER_LEN;
    for i in 0..=MAX_EXT_HEADERS {
        match nh {
            NH_FRAGMENT => return Err(WireError::Ipv6Fragment),
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                if i == MAX_EXT_HEADERS {
                    return Err(WireError::Ipv6ExtChainTooLong);
                }
                if nh == NH_HOP_BY_HOP && i != 0 {
                    return Err(WireError::Ipv6BadExtHeader);
                }
                let Some(h) = packet.get(off..off + 8) else {
                    return Err(WireError::Ipv6ExtTruncated);
                };
                let len = 8 + usize::from(h[1]) * 8;
                if off + len > packet.len() {
                    return Err(WireError::Ipv6ExtTruncated);
                }
                // Routing header: byte 3 is Segments Left; non-zero means
                // the packet is not yet at its final destination.
                if nh == NH_ROUTING && h[3] != 0 {
                    return Err(WireError::Ipv6BadExtHeader);
                }
                nh = h[0];
                off += len;
            }
            _ => return Ok((nh, off)),
        }
    }
    Err(WireError::Ipv6ExtChainTooLong)
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1):
/// ff02::1:ff00:0/104 with the low 24 bits of `a`.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7):
/// 33:33 and the address's low 32 bits.
pub fn multicast_mac(a: Ipv6Addr) -> Mac {
    let o = a.octets();
    Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// True when `m` is an IPv6 multicast MAC (33:33:…, RFC 2464 §7).
pub fn is_multicast_mac(m: Mac) -> bool {
    m.0[0] == 0x33 && m.0[1] == 0x33
}

#[cfg(test)]
mod tests {
    use super::super::captured;
    use super::*;

    fn sample() -> Ipv6Repr {
        Ipv6Repr {
            src: "2001:2::1".parse().unwrap(),
            dst: "2001:2::2".parse().unwrap(),
            next_header: NH_TCP,
            hop_limit: 64,
            traffic_class: 0,
            payload_len: 20,
        }
    }

    #[test]
    fn captured_syn_parses_to_its_fields() {
        let f = captured::frame(captured::TCP_SYN_TO_CLOSED);
        let ip = &f[14..];
        let p = Ipv6Packet::new_checked(ip).unwrap();
        assert_eq!((p.version(), p.payload_len(), p.hop_limit()), (6, 40, 64));
        assert_eq!(p.flow_label(), 0x2ef92);
        let (repr, payload) = Ipv6Repr::parse(ip).unwrap();
        assert_eq!(repr.src, "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(repr.dst, "2001:2::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!((repr.next_header, repr.payload_len), (NH_TCP, 40));
        assert_eq!(payload.len(), 40);
    }

    #[test]
    fn captured_hop_by_hop_is_walked_to_icmpv6() {
        // The kernel's MLDv2 report: hop-by-hop with a router alert.
        let f = captured::frame(captured::MLD_REPORT_HBH);
        let (repr, payload) = Ipv6Repr::parse(&f[14..]).unwrap();
        assert_eq!(repr.next_header, NH_ICMPV6);
        assert_eq!(payload.len(), 56 - 8);
        assert_eq!(payload[0], 143); // MLDv2 report
    }

    #[test]
    fn roundtrip_and_padding_is_cut() {
        let mut buf = vec![0u8; 60];
        sample().emit(&mut buf).unwrap();
        buf.extend_from_slice(&[0xee; 6]);
        let (repr, payload) = Ipv6Repr::parse(&buf).unwrap();
        assert_eq!(repr, sample());
        assert_eq!(payload.len(), 20);
    }

    fn with_ext(chain: &[(u8, usize)], last: u8) -> Vec<u8> {
        // chain: (header type, length in bytes, a multiple of 8)
        let mut body = Vec::new();
        for (i, &(_, len)) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(last, |c| c.0);
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = (len / 8 - 1) as u8;
            body.extend_from_slice(&h);
        }
        body.extend_from_slice(&[0u8; 20]);
        let mut r = sample();
        r.next_header = chain.first().map_or(last, |c| c.0);
        r.payload_len = body.len();
        let mut buf = vec![0u8; HEADER_LEN];
        r.emit(&mut buf).unwrap();
        buf.extend_from_slice(&body);
        buf
    }

    #[test]
    fn extension_chain_within_the_bound_reaches_tcp() {
        let buf = with_ext(
            &[
                (NH_HOP_BY_HOP, 8),
                (NH_DEST_OPTS, 16),
                (NH_ROUTING, 8),
                (NH_DEST_OPTS, 8),
            ],
            NH_TCP,
        );
        let (repr, payload) = Ipv6Repr::parse(&buf).unwrap();
        assert_eq!((repr.next_header, payload.len()), (NH_TCP, 20));
    }

    #[test]
    fn extension_chain_past_the_bound_is_refused() {
        let buf = with_ext(&[(NH_DEST_OPTS, 8); MAX_EXT_HEADERS + 1], NH_TCP);
        assert_eq!(
            Ipv6Repr::parse(&buf).unwrap_err(),
            WireError::Ipv6ExtChainTooLong
        );
    }

    #[test]
    fn truncated_extension_header_is_refused() {
        let mut buf = with_ext(&[(NH_DEST_OPTS, 8)], NH_TCP);
        buf[41] = 10; // claims 88 bytes
        assert_eq!(
            Ipv6Repr::parse(&buf).unwrap_err(),
            WireError::Ipv6ExtTruncated
        );
        let buf = with_ext(&[(NH_DEST_OPTS, 8)], NH_TCP);
        let mut cut = buf[..44].to_vec();
        cut[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(
            Ipv6Repr::parse(&cut).unwrap_err(),
            WireError::Ipv6ExtTruncated
        );
    }

    #[test]
    fn hop_by_hop_after_the_first_header_is_refused() {
        let buf = with_ext(&[(NH_DEST_OPTS, 8), (NH_HOP_BY_HOP, 8)], NH_TCP);
        assert_eq!(
            Ipv6Repr::parse(&buf).unwrap_err(),
            WireError::Ipv6BadExtHeader
        );
    }

    #[test]
    fn fragments_are_refused_directly_or_after_options() {
        let buf = with_ext(&[(NH_FRAGMENT, 8)], NH_TCP);
        assert_eq!(Ipv6Repr::parse(&buf).unwrap_err(), WireError::Ipv6Fragment);
        let buf = with_ext(&[(NH_DEST_OPTS, 8), (NH_FRAGMENT, 8)], NH_TCP);
        assert_eq!(Ipv6Repr::parse(&buf).unwrap_err(), WireError::Ipv6Fragment);
    }

    #[test]
    fn malformed_fixed_headers_are_typed_errors() {
        let mut good = vec![0u8; 60];
        sample().emit(&mut good).unwrap();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv6Repr::parse(&good[..len]).unwrap_err(),
                WireError::Ipv6Truncated
            );
        }
        let mut v4 = good.clone();
        v4[0] = 0x45;
        assert_eq!(Ipv6Repr::parse(&v4).unwrap_err(), WireError::Ipv6BadHeader);
        let mut long = good.clone();
        long[4..6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            Ipv6Repr::parse(&long).unwrap_err(),
            WireError::Ipv6BadLength
        );
    }

    #[test]
    fn solicited_node_address_and_mac_follow_rfc_4291_and_2464() {
        let a: Ipv6Addr = "2001:2::2".parse().unwrap();
        let s = solicited_node(a);
        assert_eq!(s, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        // As the kernel sent it: the NS frame's destination MAC.
        let f = captured::frame(captured::NS_FOR_2001_2__2);
        assert_eq!(multicast_mac(s).0, f[0..6]);
        assert!(is_multicast_mac(multicast_mac(s)));
    }
}
