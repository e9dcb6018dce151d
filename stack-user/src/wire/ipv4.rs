//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use super::{be16, checksum, WireError};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

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
        if buf.len() < HEADER_LEN {
            return Err(WireError::Ipv4Truncated);
        }
        let vihl = buf[0];
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < HEADER_LEN {
            return Err(WireError::Ipv4BadHeader);
        }
        if buf.len() < ihl {
            return Err(WireError::Ipv4Truncated);
        }
        let total = usize::from(be16(buf, 2));
        if total < ihl || total > buf.len() {
            return Err(WireError::Ipv4BadLength);
        }
        if checksum::checksum(&buf[..ihl]) != 0 {
            return Err(WireError::Ipv4BadChecksum);
        }
        let frag = be16(buf, 6);
        if frag & 0x3fff != 0 {
            return Err(WireError::Ipv4Fragment);
        }
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            protocol: buf[9],
            ttl: buf[8],
            tos: buf[1],
            ident: be16(buf, 4),
            dont_frag: frag & 0x4000 != 0,
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
        buf[0] = 0x45;
        buf[1] = self.tos;
        buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        buf[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let frag: u16 = if self.dont_frag { 0x4000 } else { 0 };
        buf[6..8].copy_from_slice(&frag.to_be_bytes());
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        buf[10..12].copy_from_slice(&[0, 0]);
        buf[12..16].copy_from_slice(&self.src.octets());
        buf[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(&buf[..HEADER_LEN]);
        buf[10..12].copy_from_slice(&c.to_be_bytes());
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
