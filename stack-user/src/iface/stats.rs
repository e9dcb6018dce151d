//! The frame layer's counters, as `xstack stats` prints them.

use serde::Serialize;

use crate::wire::WireError;

stack_ebpf::counters! {
    /// Counters of one engine. Plain integers: each queue's worker owns its
    /// engine and publishes a copy for `xstack stats`.
    #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
    pub struct IfaceStats {
        /// Frames received from the socket.
        rx_frames,
        /// Bytes received.
        rx_bytes,
        /// Frames queued for transmission.
        tx_frames,
        /// Frames that could not be queued (no free UMEM frame or ring slot).
        tx_no_buffer,
        /// TCP frames larger than the link's MTU, not sent (a bug in
        /// segment sizing: the link would drop them silently).
        tx_oversize,
        /// ARP requests for an owned address.
        arp_requests,
        /// ARP replies sent.
        arp_replies,
        /// ARP packets not asking for an owned address (ignored).
        arp_ignored,
        /// ICMP echo requests for an owned address.
        icmp_echo_requests,
        /// ICMP echo replies sent.
        icmp_echo_replies,
        /// Other ICMP messages (ignored).
        icmp_other,
        /// TCP segments for an owned (address, port).
        tcp_segments,
        /// Of those, SYNs without ACK (connection attempts).
        tcp_syns,
        /// TCP segments to a port without a listener (client connections, or
        /// closed ports answered with RST).
        tcp_not_listened,
        /// IPv4 packets for an address the engine does not own.
        ip_not_owned,
        /// IPv4 packets of a protocol the engine does not handle.
        ip_other_proto,
        /// TCP header shorter than 20 bytes or data offset invalid.
        drop_tcp_malformed,
        /// ARP replies received (neighbours learned).
        arp_replies_in,
        /// ARP requests sent to resolve a peer.
        arp_requests_out,
        /// Segments held while their next hop was being resolved.
        tx_held_for_arp,
        /// Segments dropped because the hold queue was full.
        tx_no_neighbor,
        /// Connections accepted by the application.
        app_accepted,
        /// Bytes the application read.
        app_bytes_in,
        /// Bytes the application wrote.
        app_bytes_out,
        /// HTTP requests answered.
        http_requests,
        /// Lingering closes (after an HTTP error response) ended by their
        /// time cap, `apps::http::LINGER_TIME`.
        http_linger_timeouts,
        /// Malformed HTTP requests (answered 400, connection closed).
        http_errors,
        /// Final ACKs whose SYN cookie the XDP program validated (metadata
        /// present and well formed).
        cookie_acks,
        /// SYN cookie SYN-ACKs XDP built and handed over for this engine to
        /// send through AF_XDP TX (cookie path `engine`), sent.
        cookie_synacks_sent,
        /// Frames with cookie metadata that failed its checks (bad magic or
        /// MSS, or a marked SYN-ACK that is not one).
        cookie_meta_invalid,
        /// Neighbour solicitations for an owned address (RFC 4861 §7.2.3).
        ndp_solicits_in,
        /// Neighbour advertisements sent in answer.
        ndp_adverts_out,
        /// Neighbour advertisements received and learned (RFC 4861 §7.2.5).
        ndp_adverts_in,
        /// Neighbour solicitations sent to resolve a next hop.
        ndp_solicits_out,
        /// Neighbour discovery not for us: a solicitation for another
        /// target, an unsolicited advertisement for no entry, one for an
        /// address we own.
        ndp_ignored,
        /// ICMPv6 echo requests for an owned address.
        icmpv6_echo_requests,
        /// ICMPv6 echo replies sent.
        icmpv6_echo_replies,
        /// Other ICMPv6 messages (ignored).
        icmpv6_other,
        /// IPv6 packets for an address the engine does not own (multicast
        /// other than an owned address's solicited-node group included).
        ipv6_not_owned,
        /// IPv6 packets whose upper layer the engine does not handle.
        ipv6_other_proto,
        /// Malformed frames, by reason (indexed by [`WireError::index`]).
        #[serde(skip)]
        drop_wire: [WireError],
    }
}

impl IfaceStats {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_the_named_counters_and_add_sums_every_one() {
        let mut a = IfaceStats {
            rx_frames: 1,
            cookie_meta_invalid: 2,
            ..Default::default()
        };
        a.drop_wire[WireError::Ipv4Fragment.index()] = 3;
        let json = serde_json::to_value(&a).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut named: Vec<&str> = a
            .iter()
            .map(|(n, _)| n)
            .filter(|n| json.get(*n).is_some())
            .collect();
        named.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, named, "every JSON field is a counter");
        assert_eq!(keys.len(), 40);
        let b = a.clone();
        a.add(&b);
        assert_eq!(a.rx_frames, 2);
        assert_eq!(a.cookie_meta_invalid, 4);
        assert_eq!(a.wire_drops_total(), 6);
    }
}
