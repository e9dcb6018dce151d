//! IPv4 headers (RFC 791 §3.1): the [`Ipv4Packet`] view and the
//! [`Ipv4Repr`] parsed form.

use std::net::Ipv4Addr;

use super::{be16, checksum, WireError};

/// Byte ranges of the header fields (RFC 791 §3.1).
mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Don't-fragment bit of the flags/offset field.
const FLAG_DF: u16 = 0x4000;
/// More-fragments bit of the flags/offset field.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset bits of the flags/offset field.
const FRAG_OFFSET: u16 = 0x1fff;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A view of an IPv4 packet. A view made by
/// [`new_checked`](Ipv4Packet::new_checked) holds a fixed header of version
/// 4 whose IHL is at least 5 and within the buffer; total length, checksum
/// and fragmentation are left to [`Ipv4Repr::parse`].
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks: accessors panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// A view of a buffer holding a whole version-4 header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let p = Ipv4Packet { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Ipv4Truncated);
        }
        if p.version() != 4 || p.header_len() < HEADER_LEN {
            return Err(WireError::Ipv4BadHeader);
        }
        if len < p.header_len() {
            return Err(WireError::Ipv4Truncated);
        }
        Ok(p)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// Type of service / DSCP+ECN byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }
    /// Total length field.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }
    #[inline]
    fn flg_off(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start)
    }
    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & FLAG_DF != 0
    }
    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flg_off() & FLAG_MF != 0
    }
    /// Fragment offset, in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.flg_off() & FRAG_OFFSET
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// Upper-layer protocol.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC])
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST])
    }
    /// True when the header checksum verifies (RFC 791 §3.1).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// Everything after the header (trailing link padding included: the
    /// total length is checked by [`Ipv4Repr::parse`]).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }
    /// Sets the type-of-service byte.
    #[inline]
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the flags and fragment offset (offset in 8-byte units).
    #[inline]
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v = if dont_frag { FLAG_DF } else { 0 }
            | if more_frags { FLAG_MF } else { 0 }
            | (offset & FRAG_OFFSET);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    /// Sets the upper-layer protocol.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }
    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let hlen = self.header_len();
        let buf = self.buffer.as_mut();
        buf[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&buf[..hlen]);
        buf[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

#[inline]
fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// A validated IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Type of service / DSCP+ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// Payload length (total length minus header length).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Parses and validates a header: version, IHL, total length against the
    /// buffer (trailing link padding is cut off), header checksum, and
    /// rejects fragments (RFC 791 §3.1). Returns the header and the payload.
    pub fn parse(buf: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
        let p = Ipv4Packet::new_checked(buf)?;
        let ihl = p.header_len();
        let total = usize::from(p.total_len());
        if total < ihl || total > buf.len() {
            return Err(WireError::Ipv4BadLength);
        }
        if !p.verify_checksum() {
            return Err(WireError::Ipv4BadChecksum);
        }
        if p.more_frags() || p.frag_offset() != 0 {
            return Err(WireError::Ipv4Fragment);
        }
        let repr = Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            payload_len: total - ihl,
        };
        Ok((repr, &buf[ihl..total]))
    }

    /// Writes a 20-byte header (no options) with its checksum at the start of
    /// `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let total = HEADER_LEN + self.payload_len;
        if buf.len() < HEADER_LEN || total > usize::from(u16::MAX) {
            return Err(WireError::BufferTooSmall);
        }
        let mut p = Ipv4Packet::new_unchecked(buf);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len(total as u16);
        p.set_ident(self.ident);
        p.set_frag(self.dont_frag, false, 0);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            protocol: PROTO_ICMP,
            ttl: 64,
            tos: 0,
            ident: 7,
            dont_frag: true,
            payload_len: 8,
        }
    }

    fn packet() -> Vec<u8> {
        let mut buf = vec![0u8; 28];
        sample().emit(&mut buf).unwrap();
        buf
    }

    #[test]
    fn roundtrip_and_padding_is_cut() {
        let mut buf = packet();
        buf.extend_from_slice(&[0xee; 10]); // Ethernet minimum-size padding
        let (repr, payload) = Ipv4Repr::parse(&buf).unwrap();
        assert_eq!(repr, sample());
        assert_eq!(payload.len(), 8);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 28));
        assert_eq!((p.src_addr(), p.dst_addr()), (sample().src, sample().dst));
        assert_eq!((p.protocol(), p.ttl(), p.ident()), (PROTO_ICMP, 64, 7));
        assert!(p.dont_frag() && !p.more_frags() && p.frag_offset() == 0);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 18);
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        let good = packet();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv4Repr::parse(&good[..len]).unwrap_err(),
                WireError::Ipv4Truncated
            );
        }
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(Ipv4Repr::parse(&v6).unwrap_err(), WireError::Ipv4BadHeader);
        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        assert_eq!(
            Ipv4Repr::parse(&ihl4).unwrap_err(),
            WireError::Ipv4BadHeader
        );
        let mut ihl15 = good.clone();
        ihl15[0] = 0x4f; // 60-byte header in a 28-byte packet
        assert_eq!(
            Ipv4Repr::parse(&ihl15).unwrap_err(),
            WireError::Ipv4Truncated
        );
        let mut long = good.clone();
        long[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(
            Ipv4Repr::parse(&long).unwrap_err(),
            WireError::Ipv4BadLength
        );
        let mut short = good.clone();
        short[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Ipv4Repr::parse(&short).unwrap_err(),
            WireError::Ipv4BadLength
        );
        let mut bad_sum = good.clone();
        bad_sum[8] = 1;
        assert_eq!(
            Ipv4Repr::parse(&bad_sum).unwrap_err(),
            WireError::Ipv4BadChecksum
        );
    }

    #[test]
    fn fragments_are_rejected() {
        for frag in [0x2000u16, 0x0001, 0x2010] {
            let mut p = packet();
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            p[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), WireError::Ipv4Fragment);
        }
    }
}
