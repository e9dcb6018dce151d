//! ICMP echo (RFC 792).

use super::{checksum, WireError};

/// Echo reply type.
pub const ECHO_REPLY: u8 = 0;
/// Echo request type.
pub const ECHO_REQUEST: u8 = 8;
/// Length of the ICMP header.
pub const HEADER_LEN: usize = 8;

/// A validated ICMP message: type, code and the rest after the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpRepr<'a> {
    /// Message type.
    pub kind: u8,
    /// Message code.
    pub code: u8,
    /// Bytes 4..8 of the header (identifier and sequence for echo).
    pub rest: [u8; 4],
    /// Data after the header.
    pub data: &'a [u8],
}

impl<'a> IcmpRepr<'a> {
    /// Parses a message and verifies its checksum (RFC 792, "Checksum").
    pub fn parse(buf: &'a [u8]) -> Result<IcmpRepr<'a>, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::IcmpTruncated);
        }
        if checksum::checksum(buf) != 0 {
            return Err(WireError::IcmpBadChecksum);
        }
        Ok(IcmpRepr {
            kind: buf[0],
            code: buf[1],
            rest: [buf[4], buf[5], buf[6], buf[7]],
            data: &buf[HEADER_LEN..],
        })
    }

    /// Length of the message on the wire.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// True when the message has no data after the header.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Writes the message with its checksum at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.len();
        if buf.len() < len {
            return Err(WireError::BufferTooSmall);
        }
        buf[0] = self.kind;
        buf[1] = self.code;
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&self.rest);
        buf[HEADER_LEN..len].copy_from_slice(self.data);
        let c = checksum::checksum(&buf[..len]);
        buf[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_roundtrip_and_bad_checksum() {
        let data = [1u8, 2, 3, 4, 5];
        let req = IcmpRepr {
            kind: ECHO_REQUEST,
            code: 0,
            rest: [0, 1, 0, 9],
            data: &data,
        };
        let mut buf = [0u8; 13];
        req.emit(&mut buf).unwrap();
        assert_eq!(IcmpRepr::parse(&buf).unwrap(), req);
        buf[12] ^= 0xff;
        assert_eq!(IcmpRepr::parse(&buf), Err(WireError::IcmpBadChecksum));
        assert_eq!(IcmpRepr::parse(&buf[..7]), Err(WireError::IcmpTruncated));
    }
}
