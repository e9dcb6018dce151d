//! ARP for IPv4 over Ethernet (RFC 826).

use std::net::Ipv4Addr;

use super::{be16, ethernet::Mac, ethernet::ETHERTYPE_IPV4, WireError};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// ARP request.
pub const OP_REQUEST: u16 = 1;
/// ARP reply.
pub const OP_REPLY: u16 = 2;

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// Operation (request or reply).
    pub op: u16,
    /// Sender hardware address.
    pub sha: Mac,
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: Mac,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn mac(b: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[..6]);
    Mac(m)
}

impl ArpRepr {
    /// Parses an ARP packet (the Ethernet payload).
    pub fn parse(buf: &[u8]) -> Result<ArpRepr, WireError> {
        if buf.len() < PACKET_LEN {
            return Err(WireError::ArpTruncated);
        }
        // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
        if be16(buf, 0) != 1 || be16(buf, 2) != ETHERTYPE_IPV4 || buf[4] != 6 || buf[5] != 4 {
            return Err(WireError::ArpUnsupported);
        }
        Ok(ArpRepr {
            op: be16(buf, 6),
            sha: mac(&buf[8..14]),
            spa: ip(&buf[14..18]),
            tha: mac(&buf[18..24]),
            tpa: ip(&buf[24..28]),
        })
    }

    /// Writes the packet at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.len() < PACKET_LEN {
            return Err(WireError::BufferTooSmall);
        }
        buf[0..2].copy_from_slice(&1u16.to_be_bytes());
        buf[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        buf[4] = 6;
        buf[5] = 4;
        buf[6..8].copy_from_slice(&self.op.to_be_bytes());
        buf[8..14].copy_from_slice(&self.sha.0);
        buf[14..18].copy_from_slice(&self.spa.octets());
        buf[18..24].copy_from_slice(&self.tha.0);
        buf[24..28].copy_from_slice(&self.tpa.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let r = ArpRepr {
            op: OP_REQUEST,
            sha: Mac([2, 0, 0, 0, 0, 1]),
            spa: Ipv4Addr::new(198, 18, 0, 1),
            tha: Mac::default(),
            tpa: Ipv4Addr::new(198, 18, 0, 2),
        };
        let mut buf = [0u8; PACKET_LEN];
        r.emit(&mut buf).unwrap();
        assert_eq!(ArpRepr::parse(&buf).unwrap(), r);
    }

    #[test]
    fn truncated_and_foreign_types_are_errors() {
        assert_eq!(ArpRepr::parse(&[0u8; 27]), Err(WireError::ArpTruncated));
        let mut buf = [0u8; PACKET_LEN];
        buf[1] = 6; // IEEE 802 htype
        assert_eq!(ArpRepr::parse(&buf), Err(WireError::ArpUnsupported));
    }
}
