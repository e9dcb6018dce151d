//! Types shared between the xstack XDP program and userspace.
//!
//! Everything here is `#[repr(C)]`, plain old data, and compiles for both
//! `bpfel-unknown-none` (the XDP program) and the host (the `user` feature adds
//! the `aya::Pod` impls userspace needs to read and write maps).
#![no_std]

pub mod cookie;

/// Highest number of AF_XDP sockets (one per rx queue) the XSKMAP holds.
pub const MAX_QUEUES: u32 = 64;

/// Size of the owned (address, port) table in the XDP program.
pub const MAX_OWNED_PORTS: u32 = 65536;

/// Size of the owned-address table in the XDP program.
pub const MAX_OWNED_ADDRS: u32 = 256;

/// Name of the XDP program in the object file; `xstack` recognises its own
/// program on an interface by this name.
pub const PROGRAM_NAME: &str = "xstack_xdp";

/// `OwnedAddr` flag: ARP requests for this address go to the engine.
pub const ADDR_ARP: u32 = 1 << 0;
/// `OwnedAddr` flag: ICMP to this address goes to the engine.
pub const ADDR_ICMP: u32 = 1 << 1;

macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Per-CPU counters kept by the XDP program, one per verdict and reason.
        ///
        /// Every packet the program sees increments `RxPackets` and exactly one
        /// other counter, so the verdict counters always sum to `RxPackets`.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $( $(#[$doc])* $variant, )*
        }

        impl Counter {
            /// All counters, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The counter's name as `xstack stats` prints it.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }
        }
    };
}

counters! {
    /// Every frame the program ran on.
    RxPackets = "rx_packets",
    /// Frame shorter than an Ethernet header: passed to the kernel.
    PassShortFrame = "pass_short_frame",
    /// Not IPv4 and not ARP (IPv6, VLAN, LLDP...): passed.
    PassNotIpv4 = "pass_not_ipv4",
    /// ARP not addressed to an owned address: passed.
    PassArpOther = "pass_arp_other",
    /// IPv4 header too short to read the destination: passed.
    PassShortIp = "pass_short_ip",
    /// IPv4 to an address xstack does not own: passed.
    PassIpNotOwned = "pass_ip_not_owned",
    /// IPv4 to an owned address with a protocol other than TCP or ICMP: passed.
    PassOtherProto = "pass_other_proto",
    /// TCP to an owned address on a port nobody serves: passed.
    PassPortNotOwned = "pass_port_not_owned",
    /// TCP to an owned (address, port): redirected to the AF_XDP socket.
    RedirectTcp = "redirect_tcp",
    /// ARP request or reply for an owned address: redirected.
    RedirectArp = "redirect_arp",
    /// ICMP to an owned address: redirected.
    RedirectIcmp = "redirect_icmp",
    /// Owned address, IPv4 version or IHL invalid: dropped.
    DropIpHeader = "drop_ip_header",
    /// Owned address, IPv4 total length below the header or past the frame: dropped.
    DropIpLength = "drop_ip_length",
    /// Owned address, IPv4 fragment (the engine does not reassemble): dropped.
    DropIpFragment = "drop_ip_fragment",
    /// Owned (address, port), TCP header truncated: dropped.
    DropTcpTruncated = "drop_tcp_truncated",
    /// Owned (address, port), TCP data offset below 5 or past the packet: dropped.
    DropTcpDataOffset = "drop_tcp_data_offset",
    /// Ours, but no AF_XDP socket is bound on the rx queue it arrived on: dropped.
    DropNoSocket = "drop_no_socket",
}

/// Number of counters in [`Counter`].
pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

/// Key of the owned-port table: an IPv4 address and a TCP port, both in
/// network byte order exactly as they appear on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PortKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// TCP port, network byte order.
    pub port: u16,
    /// Zero; keeps the key free of padding.
    pub pad: u16,
}

impl PortKey {
    /// Builds a key from a host-order address and port.
    pub const fn new(addr: [u8; 4], port: u16) -> Self {
        PortKey {
            addr: u32::from_ne_bytes(addr),
            port: port.to_be(),
            pad: 0,
        }
    }
}

/// Key of the owned-address table: an IPv4 address in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AddrKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
}

impl AddrKey {
    /// Builds a key from the address octets.
    pub const fn new(addr: [u8; 4]) -> Self {
        AddrKey {
            addr: u32::from_ne_bytes(addr),
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are #[repr(C)], have no padding and every bit
    // pattern is valid (checked by bytemuck::Pod derive).
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::AddrKey {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn counters_are_dense_and_named_uniquely() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let mut names: std::vec::Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[test]
    fn port_key_is_wire_order() {
        let k = PortKey::new([198, 18, 0, 2], 8080);
        let bytes = bytemuck::bytes_of(&k);
        assert_eq!(&bytes[..4], &[198, 18, 0, 2]);
        assert_eq!(&bytes[4..6], &[0x1f, 0x90]);
    }
}
