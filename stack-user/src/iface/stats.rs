//! The frame layer's counters, as `xstack stats` prints them.

use serde::Serialize;

use crate::wire::WireError;

/// Counters of one engine. Plain integers: each queue's worker owns its
/// engine and publishes a copy for `xstack stats`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct IfaceStats {
    /// Frames received from the socket.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Frames that could not be queued (no free UMEM frame or ring slot).
    pub tx_no_buffer: u64,
    /// ARP requests for an owned address.
    pub arp_requests: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// ARP packets not asking for an owned address (ignored).
    pub arp_ignored: u64,
    /// ICMP echo requests for an owned address.
    pub icmp_echo_requests: u64,
    /// ICMP echo replies sent.
    pub icmp_echo_replies: u64,
    /// Other ICMP messages (ignored).
    pub icmp_other: u64,
    /// TCP segments for an owned (address, port).
    pub tcp_segments: u64,
    /// Of those, SYNs without ACK (connection attempts).
    pub tcp_syns: u64,
    /// TCP segments for an address the engine does not own.
    pub tcp_not_owned: u64,
    /// TCP segments to a port without a listener (client connections, or
    /// closed ports answered with RST).
    pub tcp_not_listened: u64,
    /// IPv4 packets for an address the engine does not own.
    pub ip_not_owned: u64,
    /// IPv4 packets of a protocol the engine does not handle.
    pub ip_other_proto: u64,
    /// TCP header shorter than 20 bytes or data offset invalid.
    pub drop_tcp_malformed: u64,
    /// ARP replies received (neighbours learned).
    pub arp_replies_in: u64,
    /// ARP requests sent to resolve a peer.
    pub arp_requests_out: u64,
    /// Segments held while their next hop was being resolved.
    pub tx_held_for_arp: u64,
    /// Segments dropped because the hold queue was full.
    pub tx_no_neighbor: u64,
    /// Connections accepted by the application.
    pub app_accepted: u64,
    /// Bytes the application read.
    pub app_bytes_in: u64,
    /// Bytes the application wrote.
    pub app_bytes_out: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// Malformed HTTP requests (answered 400, connection closed).
    pub http_errors: u64,
    /// Final ACKs whose SYN cookie the XDP program validated (metadata
    /// present and well formed).
    pub cookie_acks: u64,
    /// Frames with cookie metadata that failed its checks (bad magic or MSS).
    pub cookie_meta_invalid: u64,
    /// Malformed frames, by reason (indexed by [`WireError::index`]).
    #[serde(skip)]
    pub drop_wire: [u64; 12],
}

impl IfaceStats {
    /// Adds another engine's counters to these.
    pub fn add(&mut self, o: &IfaceStats) {
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.tx_frames += o.tx_frames;
        self.tx_no_buffer += o.tx_no_buffer;
        self.arp_requests += o.arp_requests;
        self.arp_replies += o.arp_replies;
        self.arp_ignored += o.arp_ignored;
        self.icmp_echo_requests += o.icmp_echo_requests;
        self.icmp_echo_replies += o.icmp_echo_replies;
        self.icmp_other += o.icmp_other;
        self.tcp_segments += o.tcp_segments;
        self.tcp_syns += o.tcp_syns;
        self.tcp_not_owned += o.tcp_not_owned;
        self.tcp_not_listened += o.tcp_not_listened;
        self.ip_not_owned += o.ip_not_owned;
        self.ip_other_proto += o.ip_other_proto;
        self.drop_tcp_malformed += o.drop_tcp_malformed;
        self.arp_replies_in += o.arp_replies_in;
        self.arp_requests_out += o.arp_requests_out;
        self.tx_held_for_arp += o.tx_held_for_arp;
        self.tx_no_neighbor += o.tx_no_neighbor;
        self.app_accepted += o.app_accepted;
        self.app_bytes_in += o.app_bytes_in;
        self.app_bytes_out += o.app_bytes_out;
        self.http_requests += o.http_requests;
        self.http_errors += o.http_errors;
        self.cookie_acks += o.cookie_acks;
        self.cookie_meta_invalid += o.cookie_meta_invalid;
        for (a, b) in self.drop_wire.iter_mut().zip(o.drop_wire.iter()) {
            *a += b;
        }
    }

    /// Malformed-frame drops as (counter name, value) pairs.
    pub fn wire_drops(&self) -> Vec<(&'static str, u64)> {
        WireError::ALL
            .iter()
            .map(|e| (e.counter_name(), self.drop_wire[e.index()]))
            .collect()
    }

    /// Total malformed-frame drops.
    pub fn wire_drops_total(&self) -> u64 {
        self.drop_wire.iter().sum::<u64>() + self.drop_tcp_malformed
    }
}
