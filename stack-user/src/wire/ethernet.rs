//! Ethernet II framing (IEEE 802.3 with an EtherType): the
//! [`EthernetFrame`] view and the [`EthernetRepr`] parsed form.

use super::{be16, WireError};

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

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

/// A view of an Ethernet II frame. Accessors read fixed offsets; a view
/// made by [`new_checked`](EthernetFrame::new_checked) holds a whole header.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view without a length check: accessors panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// A view of a buffer that holds at least a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::EthernetTruncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    #[inline]
    pub fn dst_addr(&self) -> Mac {
        mac(&self.buffer.as_ref()[field::DST])
    }

    /// Source MAC.
    #[inline]
    pub fn src_addr(&self) -> Mac {
        mac(&self.buffer.as_ref()[field::SRC])
    }

    /// EtherType.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, m: Mac) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, m: Mac) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&m.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }

    /// Everything after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[inline]
fn mac(b: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    Mac(m)
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
        let f = EthernetFrame::new_checked(frame)?;
        let repr = EthernetRepr {
            dst: f.dst_addr(),
            src: f.src_addr(),
            ethertype: f.ethertype(),
        };
        Ok((repr, f.payload()))
    }

    /// Writes the header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        let mut f = EthernetFrame::new_unchecked(buf);
        f.set_dst_addr(self.dst);
        f.set_src_addr(self.src);
        f.set_ethertype(self.ethertype);
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
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (f.dst_addr(), f.src_addr(), f.ethertype()),
            (repr.dst, repr.src, ETHERTYPE_ARP)
        );
        assert_eq!(f.payload().len(), 6);
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
