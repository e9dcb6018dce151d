//! Engine counters, exported by name for `xstack stats`.

use crate::wire::tcp::TcpParseError;

/// The parser's failures as a counter set, so [`Stats`] keeps one drop
/// counter per failure, named by [`TcpParseError::counter_name`].
impl stack_ebpf::CounterSet for TcpParseError {
    const ALL: &'static [Self] = TcpParseError::ALL;
    const COUNT: u32 = TcpParseError::ALL.len() as u32;
    fn index(self) -> u32 {
        TcpParseError::index(self) as u32
    }
    fn name(self) -> &'static str {
        self.counter_name()
    }
}

stack_ebpf::counters! {
    /// Counters of a [`TcpEngine`](super::TcpEngine). Plain `u64`s;
    /// [`Stats::iter`] yields them with their names: the `nstat` name
    /// (Linux `/proc/net/netstat`, `TcpExt:` without the prefix) where
    /// Linux has the same counter, the field name otherwise.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Stats {
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
        /// Times the accept queue of a listener was full: a SYN dropped, or
        /// a handshake-completing ACK dropped or reset (Linux
        /// LINUX_MIB_LISTENOVERFLOWS).
        listen_overflows = "ListenOverflows",
        /// SYNs or handshake ACKs a listener dropped for any reason (Linux
        /// LINUX_MIB_LISTENDROPS, a superset of ListenOverflows).
        listen_drops = "ListenDrops",
        /// SYNs dropped because the SYN queue was full and SYN cookies are off
        /// (`tcp_syncookies` 0).
        req_q_full_drop = "TCPReqQFullDrop",
        /// SYNs answered with a cookie because the SYN queue was full
        /// (`tcp_syncookies` 1).
        req_q_full_do_cookies = "TCPReqQFullDoCookies",
        /// SYN-ACKs with a SYN cookie sent by the engine.
        syncookies_sent = "SyncookiesSent",
        /// Valid cookie ACKs that created a connection (from `on_segment`, or
        /// validated by the XDP program and handed to `on_cookie_ack`).
        syncookies_recv = "SyncookiesRecv",
        /// ACKs to a listener whose cookie did not check.
        syncookies_failed = "SyncookiesFailed",
        /// ACKs without SYN to a listener that carried no valid cookie,
        /// answered by RST (RFC 9293 §3.10.7.2: "any acknowledgment is
        /// bad"): with `no_socket` and `listen_rst_ignored`, what `xstack
        /// serve` counts as segments for no connection (`unknown_rate_on`).
        listen_ack_reset,
        /// RSTs to a listener, ignored (RFC 9293 §3.10.7.2).
        listen_rst_ignored,
        /// Half-open requests (SYN_RECEIVED) replaced by a connection from a
        /// cookie ACK: XDP answered a retransmission of the request's SYN with
        /// a cookie after the engine's own SYN-ACK was lost.
        syncookies_replaced_request,
        /// Valid cookie ACKs on a 4-tuple the engine holds (TIME_WAIT, or a
        /// half-open request), which XDP passes on unchecked as segments of
        /// a known flow: the engine checked them itself.
        syncookies_held_tuple,
        /// Connections that entered TIME_WAIT (an entry in the table).
        time_wait_entered = "TWEntered",
        /// TIME_WAIT entries that ran their full 2*MSL (Linux "TW").
        time_waited = "TW",
        /// TIME_WAIT entries ended early by an RST (only with `tcp_rfc1337`
        /// off; Linux "TWKilled").
        time_wait_killed = "TWKilled",
        /// TIME_WAIT entries reused by `connect` (`tcp_tw_reuse`,
        /// `tw_isn_above_last`; Linux "TWRecycled").
        time_wait_recycled = "TWRecycled",
        /// TIME_WAIT entries replaced by a new incarnation opened by the peer's
        /// SYN (RFC 6191).
        time_wait_syn_reopen = "TWSynReopen",
        /// Connections closed without TIME_WAIT because the table was full
        /// (`tcp_max_tw_buckets`).
        time_wait_overflow = "TCPTimeWaitOverflow",
        /// Connections reset because data arrived after the application closed
        /// them (FIN_WAIT_1/2 orphans).
        abort_on_data = "TCPAbortOnData",
        /// Connections reset by `close` with unread received data.
        abort_on_close = "TCPAbortOnClose",
        /// Connections reset by an abortive close (`abort`, or `close` with
        /// linger 0).
        abort_on_linger = "TCPAbortOnLinger",
        /// Connections aborted by a timeout: retransmissions, zero-window
        /// probes or keepalive probes unanswered.
        abort_on_timeout = "TCPAbortOnTimeout",
        /// Keepalive probes sent.
        keepalive_probes = "TCPKeepAlive",
        /// RSTs to segments for no connection that the rate limit held back.
        rst_ratelimited,
        /// Warnings not queued because of their rate limit or a full queue.
        warnings_suppressed,
        /// SYNs dropped because `max_connections` was reached.
        drop_conn_limit,
        /// Segments that failed the acceptability test (RFC 9293 §3.10.7.4).
        drop_out_of_window,
        /// Segments dropped by PAWS (RFC 7323 §5).
        drop_paws,
        /// ACKs not sent in answer to an out-of-window segment because of
        /// `tcp_invalid_ratelimit` (ACK loop mitigation).
        ack_skipped_seq = "TCPACKSkippedSeq",
        /// Same for segments failing PAWS.
        ack_skipped_paws = "TCPACKSkippedPAWS",
        /// Same for segments to a TIME_WAIT entry.
        ack_skipped_time_wait = "TCPACKSkippedTimeWait",
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
        /// Connections reset by the peer.
        resets_in,
        /// Timers (of any kind) that came due on the timer wheel.
        timer_expiries,
        /// Segments accepted whose checksum held only the pseudo-header sum
        /// (CHECKSUM_PARTIAL from a veth peer; `accept_checksum_partial`).
        checksum_partial_in,
        /// Segments dropped by the parser, indexed by
        /// [`TcpParseError::index`] (named by [`TcpParseError::counter_name`]).
        parse_drops: [TcpParseError],
    }
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
        for nstat in [
            "ListenOverflows",
            "ListenDrops",
            "SyncookiesSent",
            "SyncookiesRecv",
            "SyncookiesFailed",
            "TCPTimeWaitOverflow",
            "TCPAbortOnData",
            "TCPAbortOnClose",
            "TCPAbortOnLinger",
            "TCPAbortOnTimeout",
        ] {
            assert!(names.contains(nstat), "{nstat}");
        }
    }

    #[test]
    fn parse_drops_follow_the_named_counters_in_index_order() {
        use stack_ebpf::CounterSet;
        let mut s = Stats::default();
        for (i, e) in TcpParseError::ALL.iter().enumerate() {
            assert_eq!(CounterSet::index(*e) as usize, i);
            s.parse_drops[e.index()] = i as u64 + 1;
        }
        let tail: Vec<_> = s.iter().skip_while(|(_, v)| *v == 0).collect();
        let want: Vec<_> = TcpParseError::ALL
            .iter()
            .map(|e| (e.counter_name(), e.index() as u64 + 1))
            .collect();
        assert_eq!(tail, want);
    }
}
