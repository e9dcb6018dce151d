//! Ethernet II framing (IEEE 802.3 with an EtherType).

use super::{be16, WireError};

/// Length of an Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("bad MAC address {s:?}"))?;
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC address {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC address {s:?}"));
        }
        Ok(Mac(out))
    }
}

/// A parsed Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC.
    pub dst: Mac,
    /// Source MAC.
    pub src: Mac,
    /// EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Parses the header; returns it and the payload.
    pub fn parse(frame: &[u8]) -> Result<(EthernetRepr, &[u8]), WireError> {
        if frame.len() < HEADER_LEN {
            return Err(WireError::EthernetTruncated);
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        let repr = EthernetRepr {
            dst: Mac(dst),
            src: Mac(src),
            ethertype: be16(frame, 12),
        };
        Ok((repr, &frame[HEADER_LEN..]))
    }

    /// Writes the header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        buf[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_emit_roundtrip() {
        let repr = EthernetRepr {
            dst: Mac([1, 2, 3, 4, 5, 6]),
            src: Mac([7, 8, 9, 10, 11, 12]),
            ethertype: ETHERTYPE_ARP,
        };
        let mut buf = [0u8; 20];
        repr.emit(&mut buf).unwrap();
        let (back, payload) = EthernetRepr::parse(&buf).unwrap();
        assert_eq!(back, repr);
        assert_eq!(payload.len(), 6);
    }

    #[test]
    fn truncated_frames_are_errors() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetRepr::parse(&vec![0u8; len]).unwrap_err(),
                WireError::EthernetTruncated
            );
        }
    }

    #[test]
    fn mac_parses_and_prints() {
        let m: Mac = "02:00:c6:12:00:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:c6:12:00:02");
        assert!("02:00".parse::<Mac>().is_err());
        assert!("02:00:c6:12:00:02:07".parse::<Mac>().is_err());
    }
}
