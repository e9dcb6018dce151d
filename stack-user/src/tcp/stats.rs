//! Engine counters, exported by name for `xstack stats`.

use crate::wire::tcp::TcpParseError;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Counters of a [`TcpEngine`](super::TcpEngine). Plain `u64`s;
        /// [`Stats::iter`] yields them with their names.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $( $(#[$doc])* pub $name: u64, )*
            /// Segments dropped by the parser, indexed by
            /// [`TcpParseError::index`].
            pub parse_drops: [u64; 6],
        }

        impl Stats {
            /// Every counter with its name, parse drops included.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                let named = [ $( (stringify!($name), self.$name), )* ];
                let drops = TcpParseError::ALL
                    .iter()
                    .map(move |e| (e.counter_name(), self.parse_drops[e.index()]));
                named.into_iter().chain(drops)
            }
        }
    };
}

counters! {
    /// Segments handed to `on_segment`.
    segments_in,
    /// Segments written by `poll_transmit`.
    segments_out,
    /// Data bytes received in order.
    bytes_in,
    /// Data bytes sent (retransmissions included).
    bytes_out,
    /// Active opens (`connect`).
    active_opens,
    /// Passive opens (SYN to a listener that created a connection).
    passive_opens,
    /// Connections that reached ESTABLISHED.
    established,
    /// RST segments sent.
    rst_out,
    /// RSTs accepted (exact sequence match, RFC 5961 §3.2).
    rst_in,
    /// RSTs not sent because the queue was full.
    drop_rst_queue_full,
    /// Segments to a port with no listener or connection (answered by RST).
    no_socket,
    /// SYNs dropped because the listen backlog was full.
    drop_listen_overflow,
    /// SYNs dropped because `max_connections` was reached.
    drop_conn_limit,
    /// Segments that failed the acceptability test (RFC 9293 §3.10.7.4).
    drop_out_of_window,
    /// Segments dropped by PAWS (RFC 7323 §5).
    drop_paws,
    /// ACKs of data never sent (RFC 5961 §5), dropped with an ACK.
    drop_ack_unsent,
    /// Segments without ACK in synchronized states.
    drop_no_ack,
    /// Segments that match nothing (e.g. LISTEN receiving a non-SYN RST).
    drop_ignored,
    /// Challenge ACKs sent (RFC 5961 §3, §4, §5).
    challenge_acks,
    /// Out-of-order segments stored.
    ooo_segments,
    /// Out-of-order segments dropped (reassembly limit).
    drop_ooo_full,
    /// Data segments fully duplicated.
    dup_segments,
    /// Duplicate ACKs received.
    dup_acks,
    /// Segments retransmitted (any reason).
    retransmits,
    /// Fast retransmits (entries into loss recovery).
    fast_retransmits,
    /// Segments retransmitted by SACK recovery (RFC 6675 NextSeg).
    sack_retransmits,
    /// Retransmission timeouts.
    rto_timeouts,
    /// Zero-window probes / persist timer expiries.
    persist_probes,
    /// Connections that timed out.
    timeouts,
    /// Connections reset by the peer.
    resets_in,
    /// Timers (of any kind) that came due on the timer wheel.
    timer_expiries,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let s = Stats::default();
        let mut names = std::collections::HashSet::new();
        for (n, v) in s.iter() {
            assert_eq!(v, 0);
            assert!(names.insert(n), "{n}");
        }
        assert!(names.contains("drop_tcp_bad_checksum"));
        assert!(names.contains("drop_paws"));
    }
}
