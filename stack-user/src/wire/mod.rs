//! Wire formats: validated views of Ethernet, ARP, IPv4, IPv6, ICMP,
//! ICMPv6 (with Neighbour Discovery) and TCP
//! (with TCP's [`SeqNumber`](tcp::SeqNumber)), the Internet checksum, the
//! RSS Toeplitz hash a NIC spreads frames over its queues with ([`rss`]), and
//! the frame builders ([`build`]) that tests, fuzz targets and benchmarks
//! share.
//! Parsing never panics: every malformed input yields a typed
//! [`WireError`] (or, for TCP, a [`TcpParseError`](tcp::TcpParseError)),
//! which the engine counts by reason. The bottom layer with `time`: it
//! imports nothing from the rest of the crate.

pub mod arp;
pub mod build;
#[cfg(test)]
pub(crate) mod captured;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod rss;
pub mod tcp;

use thiserror::Error;

/// Why a frame could not be parsed. Each variant is one drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than an Ethernet header.
    #[error("frame shorter than an Ethernet header")]
    EthernetTruncated,
    /// EtherType the engine does not handle.
    #[error("unsupported EtherType {0:#06x}")]
    UnsupportedEtherType(u16),
    /// ARP shorter than 28 bytes.
    #[error("ARP packet truncated")]
    ArpTruncated,
    /// ARP for a hardware or protocol type other than Ethernet/IPv4.
    #[error("ARP for an unsupported hardware/protocol type")]
    ArpUnsupported,
    /// Shorter than a 20-byte IPv4 header.
    #[error("IPv4 header truncated")]
    Ipv4Truncated,
    /// Version is not 4 or IHL below 5.
    #[error("IPv4 version or header length invalid")]
    Ipv4BadHeader,
    /// Total length below the header length or past the frame.
    #[error("IPv4 total length invalid")]
    Ipv4BadLength,
    /// Header checksum does not verify.
    #[error("IPv4 header checksum invalid")]
    Ipv4BadChecksum,
    /// More-fragments set or a non-zero offset; the engine does not reassemble.
    #[error("IPv4 fragment")]
    Ipv4Fragment,
    /// ICMP shorter than its 8-byte header.
    #[error("ICMP message truncated")]
    IcmpTruncated,
    /// ICMP checksum does not verify.
    #[error("ICMP checksum invalid")]
    IcmpBadChecksum,
    /// Output buffer too small for the packet to emit.
    #[error("buffer too small to emit the packet")]
    BufferTooSmall,
    /// Shorter than the 40-byte IPv6 header.
    #[error("IPv6 header truncated")]
    Ipv6Truncated,
    /// Version is not 6.
    #[error("IPv6 version invalid")]
    Ipv6BadHeader,
    /// Payload length past the frame.
    #[error("IPv6 payload length invalid")]
    Ipv6BadLength,
    /// A fragment header; the engine does not reassemble.
    #[error("IPv6 fragment")]
    Ipv6Fragment,
    /// An extension header runs past the packet.
    #[error("IPv6 extension header truncated")]
    Ipv6ExtTruncated,
    /// More extension headers than the walk follows.
    #[error("IPv6 extension header chain too long")]
    Ipv6ExtChainTooLong,
    /// Hop-by-hop not first, or a routing header with segments left.
    #[error("IPv6 extension header invalid")]
    Ipv6BadExtHeader,
    /// ICMPv6 shorter than its 8-byte header.
    #[error("ICMPv6 message truncated")]
    Icmpv6Truncated,
    /// ICMPv6 checksum (over the IPv6 pseudo-header) does not verify.
    #[error("ICMPv6 checksum invalid")]
    Icmpv6BadChecksum,
    /// A neighbour solicitation or advertisement RFC 4861 §7.1 says to
    /// discard (hop limit not 255, bad code, length or option).
    #[error("neighbour discovery message invalid")]
    NdpInvalid,
}

impl WireError {
    /// Every variant, for counter tables.
    pub const ALL: &'static [WireError] = &[
        WireError::EthernetTruncated,
        WireError::UnsupportedEtherType(0),
        WireError::ArpTruncated,
        WireError::ArpUnsupported,
        WireError::Ipv4Truncated,
        WireError::Ipv4BadHeader,
        WireError::Ipv4BadLength,
        WireError::Ipv4BadChecksum,
        WireError::Ipv4Fragment,
        WireError::IcmpTruncated,
        WireError::IcmpBadChecksum,
        WireError::BufferTooSmall,
        WireError::Ipv6Truncated,
        WireError::Ipv6BadHeader,
        WireError::Ipv6BadLength,
        WireError::Ipv6Fragment,
        WireError::Ipv6ExtTruncated,
        WireError::Ipv6ExtChainTooLong,
        WireError::Ipv6BadExtHeader,
        WireError::Icmpv6Truncated,
        WireError::Icmpv6BadChecksum,
        WireError::NdpInvalid,
    ];

    /// Dense index of the variant (payloads ignored).
    pub fn index(self) -> usize {
        match self {
            WireError::EthernetTruncated => 0,
            WireError::UnsupportedEtherType(_) => 1,
            WireError::ArpTruncated => 2,
            WireError::ArpUnsupported => 3,
            WireError::Ipv4Truncated => 4,
            WireError::Ipv4BadHeader => 5,
            WireError::Ipv4BadLength => 6,
            WireError::Ipv4BadChecksum => 7,
            WireError::Ipv4Fragment => 8,
            WireError::IcmpTruncated => 9,
            WireError::IcmpBadChecksum => 10,
            WireError::BufferTooSmall => 11,
            WireError::Ipv6Truncated => 12,
            WireError::Ipv6BadHeader => 13,
            WireError::Ipv6BadLength => 14,
            WireError::Ipv6Fragment => 15,
            WireError::Ipv6ExtTruncated => 16,
            WireError::Ipv6ExtChainTooLong => 17,
            WireError::Ipv6BadExtHeader => 18,
            WireError::Icmpv6Truncated => 19,
            WireError::Icmpv6BadChecksum => 20,
            WireError::NdpInvalid => 21,
        }
    }

    /// Counter name, as `xstack stats` prints it.
    pub fn counter_name(self) -> &'static str {
        match self {
            WireError::EthernetTruncated => "drop_eth_truncated",
            WireError::UnsupportedEtherType(_) => "drop_eth_unsupported_type",
            WireError::ArpTruncated => "drop_arp_truncated",
            WireError::ArpUnsupported => "drop_arp_unsupported",
            WireError::Ipv4Truncated => "drop_ipv4_truncated",
            WireError::Ipv4BadHeader => "drop_ipv4_bad_header",
            WireError::Ipv4BadLength => "drop_ipv4_bad_length",
            WireError::Ipv4BadChecksum => "drop_ipv4_bad_checksum",
            WireError::Ipv4Fragment => "drop_ipv4_fragment",
            WireError::IcmpTruncated => "drop_icmp_truncated",
            WireError::IcmpBadChecksum => "drop_icmp_bad_checksum",
            WireError::BufferTooSmall => "drop_buffer_too_small",
            WireError::Ipv6Truncated => "drop_ipv6_truncated",
            WireError::Ipv6BadHeader => "drop_ipv6_bad_header",
            WireError::Ipv6BadLength => "drop_ipv6_bad_length",
            WireError::Ipv6Fragment => "drop_ipv6_fragment",
            WireError::Ipv6ExtTruncated => "drop_ipv6_ext_truncated",
            WireError::Ipv6ExtChainTooLong => "drop_ipv6_ext_chain_too_long",
            WireError::Ipv6BadExtHeader => "drop_ipv6_bad_ext_header",
            WireError::Icmpv6Truncated => "drop_icmpv6_truncated",
            WireError::Icmpv6BadChecksum => "drop_icmpv6_bad_checksum",
            WireError::NdpInvalid => "drop_ndp_invalid",
        }
    }
}

/// The parse failures as a counter set, so the frame layer's counters
/// (`stack_ebpf::counters!`) keep one per reason.
impl stack_ebpf::CounterSet for WireError {
    const ALL: &'static [Self] = WireError::ALL;
    const COUNT: u32 = WireError::ALL.len() as u32;
    fn index(self) -> u32 {
        WireError::index(self) as u32
    }
    fn name(self) -> &'static str {
        self.counter_name()
    }
}

/// Reads a big-endian u16 at `off`; callers check bounds first.
#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_indices_are_dense() {
        for (i, e) in WireError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
