//! ICMPv6 (RFC 4443) with its pseudo-header checksum, and the two
//! Neighbour Discovery messages the engine speaks (RFC 4861 §4.3, §4.4).

use std::net::Ipv6Addr;

use super::{checksum, ethernet::Mac, ipv6::NH_ICMPV6, WireError};

/// Echo request type (RFC 4443 §4.1).
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply type (RFC 4443 §4.2).
pub const ECHO_REPLY: u8 = 129;
/// Neighbor Solicitation (RFC 4861 §4.3).
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor Advertisement (RFC 4861 §4.4).
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Length of the ICMPv6 header (type, code, checksum, 4 bytes of body).
pub const HEADER_LEN: usize = 8;

/// NA flag: sender is a router.
pub const NA_ROUTER: u8 = 0x80;
/// NA flag: sent in response to a solicitation.
pub const NA_SOLICITED: u8 = 0x40;
/// NA flag: override an existing cache entry.
pub const NA_OVERRIDE: u8 = 0x20;

/// Option: source link-layer address (RFC 4861 §4.6.1).
const OPT_SOURCE_LLADDR: u8 = 1;
/// Option: target link-layer address (RFC 4861 §4.6.1).
const OPT_TARGET_LLADDR: u8 = 2;

/// A validated ICMPv6 message: type, code, the 4 bytes after the checksum
/// and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Repr<'a> {
    /// Message type.
    pub kind: u8,
    /// Message code.
    pub code: u8,
    /// Bytes 4..8 (identifier and sequence for echo, flags for NA).
    pub rest: [u8; 4],
    /// Data after the 8-byte header.
    pub data: &'a [u8],
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses a message carried from `src` to `dst` and verifies its
    /// checksum over the IPv6 pseudo-header (RFC 4443 §2.3).
    pub fn parse(src: Ipv6Addr, dst: Ipv6Addr, buf: &'a [u8]) -> Result<Icmpv6Repr<'a>, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Icmpv6Truncated);
        }
        let Ok(len) = u16::try_from(buf.len()) else {
            return Err(WireError::Icmpv6Truncated);
        };
        let acc = checksum::pseudo_header(src, dst, NH_ICMPV6, len);
        if checksum::finish(checksum::sum(acc, buf)) != 0 {
            return Err(WireError::Icmpv6BadChecksum);
        }
        Ok(Icmpv6Repr {
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

    /// Writes the message with its checksum (from `src` to `dst`) at the
    /// start of `buf`.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.len();
        if buf.len() < len || len > usize::from(u16::MAX) {
            return Err(WireError::BufferTooSmall);
        }
        buf[0] = self.kind;
        buf[1] = self.code;
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&self.rest);
        buf[HEADER_LEN..len].copy_from_slice(self.data);
        let acc = checksum::pseudo_header(src, dst, NH_ICMPV6, len as u16);
        let c = checksum::finish(checksum::sum(acc, &buf[..len]));
        buf[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

/// A Neighbor Solicitation or Advertisement (RFC 4861 §4.3, §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpRepr {
    /// Who has `target`? `lladdr` is the source link-layer option.
    Solicit {
        /// The address being resolved.
        target: Ipv6Addr,
        /// The solicitor's MAC, when it sent one.
        lladdr: Option<Mac>,
    },
    /// `target` is at `lladdr`.
    Advert {
        /// `NA_*` bits.
        flags: u8,
        /// The address advertised.
        target: Ipv6Addr,
        /// The target link-layer option, when present.
        lladdr: Option<Mac>,
    },
}

/// Length of an NS/NA with one link-layer option.
pub const NDP_LEN: usize = HEADER_LEN + 16 + 8;

impl NdpRepr {
    /// The NS or NA in a parsed ICMPv6 message, validated as RFC 4861
    /// §7.1.1/§7.1.2 ask: hop limit 255 (`hop_limit` of the IPv6 header:
    /// the message did not cross a router), code 0, at least 24 bytes,
    /// every option with a non-zero length within the message, the target
    /// not multicast. `Ok(None)` for other ICMPv6 types.
    pub fn parse(hop_limit: u8, msg: &Icmpv6Repr) -> Result<Option<NdpRepr>, WireError> {
        if msg.kind != NEIGHBOR_SOLICIT && msg.kind != NEIGHBOR_ADVERT {
            return Ok(None);
        }
        if hop_limit != 255 || msg.code != 0 || msg.data.len() < 16 {
            return Err(WireError::NdpInvalid);
        }
        let mut t = [0u8; 16];
        t.copy_from_slice(&msg.data[..16]);
        let target = Ipv6Addr::from(t);
        if target.is_multicast() {
            return Err(WireError::NdpInvalid);
        }
        let want = if msg.kind == NEIGHBOR_SOLICIT {
            OPT_SOURCE_LLADDR
        } else {
            OPT_TARGET_LLADDR
        };
        let mut lladdr = None;
        let mut opts = &msg.data[16..];
        // Each option is at least 8 bytes, so this ends within
        // data.len() / 8 rounds.
        while !opts.is_empty() {
            if opts.len() < 2 || opts[1] == 0 {
                return Err(WireError::NdpInvalid);
            }
            let len = usize::from(opts[1]) * 8;
            let Some(o) = opts.get(..len) else {
                return Err(WireError::NdpInvalid);
            };
            if o[0] == want && len == 8 {
                lladdr = Some(Mac([o[2], o[3], o[4], o[5], o[6], o[7]]));
            }
            opts = &opts[len..];
        }
        Ok(Some(if msg.kind == NEIGHBOR_SOLICIT {
            NdpRepr::Solicit { target, lladdr }
        } else {
            NdpRepr::Advert {
                flags: msg.rest[0],
                target,
                lladdr,
            }
        }))
    }

    /// Writes the whole ICMPv6 message (header, target, link-layer option
    /// when present, checksum from `src` to `dst`); returns its length.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) -> Result<usize, WireError> {
        let (kind, rest, target, opt, lladdr) = match *self {
            NdpRepr::Solicit { target, lladdr } => {
                (NEIGHBOR_SOLICIT, [0; 4], target, OPT_SOURCE_LLADDR, lladdr)
            }
            NdpRepr::Advert {
                flags,
                target,
                lladdr,
            } => (
                NEIGHBOR_ADVERT,
                [flags, 0, 0, 0],
                target,
                OPT_TARGET_LLADDR,
                lladdr,
            ),
        };
        let mut data = [0u8; 24];
        data[..16].copy_from_slice(&target.octets());
        let dlen = match lladdr {
            Some(m) => {
                data[16] = opt;
                data[17] = 1;
                data[18..24].copy_from_slice(&m.0);
                24
            }
            None => 16,
        };
        let msg = Icmpv6Repr {
            kind,
            code: 0,
            rest,
            data: &data[..dlen],
        };
        msg.emit(src, dst, buf)?;
        Ok(msg.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{captured, ipv6::Ipv6Repr};
    use super::*;

    fn icmp(hex: &str) -> (Ipv6Repr, Vec<u8>) {
        let f = captured::frame(hex);
        let (ip, payload) = Ipv6Repr::parse(&f[14..]).unwrap();
        assert_eq!(ip.next_header, NH_ICMPV6);
        (ip, payload.to_vec())
    }

    #[test]
    fn captured_echo_request_parses_and_its_reply_emits_byte_equal() {
        let (ip, body) = icmp(captured::ECHO_REQUEST);
        let req = Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap();
        assert_eq!((req.kind, req.code), (ECHO_REQUEST, 0));
        assert_eq!(req.rest, [0x11, 0xaa, 0, 1]);
        assert_eq!(req.data, &[0, 1, 2, 3, 4, 5, 6, 7]);
        let reply = Icmpv6Repr {
            kind: ECHO_REPLY,
            ..req
        };
        let mut out = vec![0u8; reply.len()];
        reply.emit(ip.dst, ip.src, &mut out).unwrap();
        let (_, kernel) = icmp(captured::ECHO_REPLY);
        assert_eq!(out, kernel);
    }

    #[test]
    fn bad_icmpv6_checksum_and_short_message_are_refused() {
        let (ip, mut body) = icmp(captured::ECHO_REQUEST);
        // The checksum covers the pseudo-header: another source fails.
        let other: Ipv6Addr = "2001:2::3".parse().unwrap();
        assert_eq!(
            Icmpv6Repr::parse(other, ip.dst, &body).unwrap_err(),
            WireError::Icmpv6BadChecksum
        );
        body[9] ^= 1;
        assert_eq!(
            Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap_err(),
            WireError::Icmpv6BadChecksum
        );
        assert_eq!(
            Icmpv6Repr::parse(ip.src, ip.dst, &body[..7]).unwrap_err(),
            WireError::Icmpv6Truncated
        );
    }

    #[test]
    fn captured_solicitation_and_advertisement_parse_and_emit_byte_equal() {
        let (ip, body) = icmp(captured::NS_FOR_2001_2__2);
        let msg = Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap();
        let ns = NdpRepr::parse(ip.hop_limit, &msg).unwrap().unwrap();
        let target: Ipv6Addr = "2001:2::2".parse().unwrap();
        assert_eq!(
            ns,
            NdpRepr::Solicit {
                target,
                lladdr: Some(Mac([2, 0, 0, 0, 0x15, 1]))
            }
        );
        let mut out = [0u8; NDP_LEN];
        assert_eq!(ns.emit(ip.src, ip.dst, &mut out).unwrap(), NDP_LEN);
        assert_eq!(&out[..], &body[..]);

        let (ip, body) = icmp(captured::NA_FROM_2001_2__2);
        let msg = Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap();
        let na = NdpRepr::parse(ip.hop_limit, &msg).unwrap().unwrap();
        let want = NdpRepr::Advert {
            flags: NA_SOLICITED | NA_OVERRIDE,
            target,
            lladdr: Some(Mac([2, 0, 0, 0, 0x15, 2])),
        };
        assert_eq!(na, want);
        let mut out = [0u8; NDP_LEN];
        want.emit(ip.src, ip.dst, &mut out).unwrap();
        assert_eq!(&out[..], &body[..]);
    }

    #[test]
    fn captured_dad_probe_has_no_link_layer_option() {
        let (ip, body) = icmp(captured::NS_DAD);
        assert!(ip.src.is_unspecified());
        let msg = Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap();
        // The DAD probe carries a nonce option (type 14), no address.
        match NdpRepr::parse(ip.hop_limit, &msg).unwrap() {
            Some(NdpRepr::Solicit { lladdr: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn neighbour_discovery_that_crossed_a_router_or_has_a_zero_length_option_is_refused() {
        let (ip, body) = icmp(captured::NS_FOR_2001_2__2);
        let msg = Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap();
        assert_eq!(NdpRepr::parse(254, &msg), Err(WireError::NdpInvalid));
        let mut data = msg.data.to_vec();
        data[17] = 0;
        let zero = Icmpv6Repr { data: &data, ..msg };
        assert_eq!(NdpRepr::parse(255, &zero), Err(WireError::NdpInvalid));
        data[17] = 2; // 16 bytes, past the message
        let long = Icmpv6Repr { data: &data, ..msg };
        assert_eq!(NdpRepr::parse(255, &long), Err(WireError::NdpInvalid));
        let short = Icmpv6Repr {
            data: &data[..15],
            ..msg
        };
        assert_eq!(NdpRepr::parse(255, &short), Err(WireError::NdpInvalid));
        let echo = Icmpv6Repr {
            kind: ECHO_REQUEST,
            ..msg
        };
        assert_eq!(NdpRepr::parse(64, &echo), Ok(None));
    }
}
