//! Engine configuration. Field names follow the Linux sysctls users know
//! (`net.ipv4.tcp_*`), with the same meanings and defaults unless a doc
//! comment says otherwise.

use std::time::Duration;

use super::cc::CcAlgorithm;

/// Tunables of a [`TcpEngine`](super::TcpEngine).
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// RFC 7323 timestamps (RTTM and PAWS). Linux default: on.
    pub tcp_timestamps: bool,
    /// RFC 2018 selective acknowledgments. Linux default: on.
    pub tcp_sack: bool,
    /// RFC 7323 window scaling. Linux default: on.
    pub tcp_window_scaling: bool,
    /// RFC 1337 §3: ignore RSTs in TIME_WAIT so a stray RST (for instance
    /// one answering a delayed duplicate) cannot cut TIME_WAIT short
    /// ("TIME-WAIT assassination"). On here (Linux default: off) because a
    /// TIME_WAIT that always lasts 2*MSL is what RFC 9293 asks for.
    pub tcp_rfc1337: bool,
    /// Receive buffer per connection in bytes. Linux's `tcp_rmem` default
    /// (131072); there is no autotuning yet, so this is also the maximum.
    pub tcp_rmem: u32,
    /// Send buffer per connection in bytes. Larger than Linux's initial
    /// `tcp_wmem` (16384) because there is no autotuning yet.
    pub tcp_wmem: u32,
    /// MSS advertised in our SYNs: interface MTU minus 40 (IPv4 + TCP).
    /// Over IPv6 it is 20 less, MTU minus 60 ([`mss_for`](Self::mss_for)).
    pub mss: u16,
    /// Smallest peer MSS honoured (Linux `tcp_min_snd_mss`, 48).
    pub tcp_min_snd_mss: u16,
    /// Lower bound of the RTO (Linux TCP_RTO_MIN, 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the RTO (Linux TCP_RTO_MAX, 120 s).
    pub rto_max: Duration,
    /// RTO before the first RTT sample (RFC 6298 §2.1, 1 s).
    pub rto_initial: Duration,
    /// SYN retransmissions before an active open fails (Linux: 6).
    pub tcp_syn_retries: u8,
    /// SYN-ACK retransmissions before a half-open connection is dropped
    /// (Linux: 5).
    pub tcp_synack_retries: u8,
    /// Data retransmissions before the connection times out. Linux's
    /// `tcp_retries2` (15) is converted to a time bound there; here it is
    /// the count of consecutive timeouts.
    pub tcp_retries2: u8,
    /// Delayed-ACK timeout (Linux TCP_DELACK_MIN, 40 ms).
    pub delayed_ack: Duration,
    /// Maximum segment lifetime; TIME_WAIT lasts 2*MSL: 60 s with the
    /// default 30 s, as Linux's fixed TCP_TIMEWAIT_LEN.
    pub msl: Duration,
    /// How long an orphaned connection (the application closed it) stays
    /// in FIN_WAIT_2 waiting for the peer's FIN (Linux: 60 s).
    pub tcp_fin_timeout: Duration,
    /// Most half-open connections (SYN_RECV) per listener: the SYN queue.
    /// Linux sizes its default from memory (128 to 4096 or more); 4096
    /// here. What happens when it is full depends on `tcp_syncookies`.
    pub tcp_max_syn_backlog: usize,
    /// Upper bound of a listener's accept queue: it holds
    /// min(backlog, somaxconn) established connections not yet accepted
    /// (Linux default 4096 since 5.4).
    pub somaxconn: usize,
    /// SYN cookies (`stack_ebpf::cookie`, the format the XDP program also
    /// uses): 0 never — SYNs are dropped when the SYN queue is full; 1
    /// when the SYN queue is full (Linux default); 2 always.
    pub tcp_syncookies: u8,
    /// When the handshake's final ACK finds the accept queue full: false
    /// (Linux default) drops the ACK and keeps the half-open connection, so
    /// the SYN-ACK is retransmitted and the client retries later; true
    /// answers RST.
    pub tcp_abort_on_overflow: bool,
    /// Most TIME_WAIT entries. Linux sizes it from memory
    /// (`tcp_max_tw_buckets` = 262144 on machines with 4 GiB or more,
    /// which these are). On overflow the connection closes without
    /// TIME_WAIT, counted (TCPTimeWaitOverflow) and warned about.
    pub tcp_max_tw_buckets: usize,
    /// Reuse of a 4-tuple in TIME_WAIT by `connect`: 1 allows it when the
    /// old incarnation used timestamps and its last timestamp is at least
    /// one second old (Linux `tcp_twsk_unique`), so PAWS protects the new
    /// incarnation; 0 never. Linux's default 2 means "loopback only"; the
    /// engine has no loopback, so 2 (the default) acts as 0.
    ///
    /// There is no `tcp_tw_recycle`: it dropped SYNs whose timestamps were
    /// older than the last one seen from the same host, which breaks
    /// clients behind NAT (their timestamps are unrelated); Linux removed
    /// it in 4.12.
    pub tcp_tw_reuse: u8,
    /// Beyond Linux (the RFC 1185 idea): a 4-tuple in TIME_WAIT may be
    /// reused by `connect` with or without timestamps, and the new
    /// incarnation's ISN is chosen above the last sequence number of the
    /// old one (its SND.NXT + 65537), so the peer cannot take an old
    /// duplicate for new data. It keys on the 4-tuple only, so it also
    /// works for peers behind NAT. Off by default.
    pub tw_isn_above_last: bool,
    /// Idle time before the first keepalive probe, for connections with
    /// keepalive on (Linux `tcp_keepalive_time`, 7200 s).
    pub tcp_keepalive_time: Duration,
    /// Time between keepalive probes (Linux `tcp_keepalive_intvl`, 75 s).
    pub tcp_keepalive_intvl: Duration,
    /// Unanswered probes before the connection is dropped (Linux
    /// `tcp_keepalive_probes`, 9).
    pub tcp_keepalive_probes: u8,
    /// A warning is queued when a connection stays in CLOSE_WAIT longer
    /// than this (the application never closes it). `None`: never.
    pub close_wait_warn: Option<Duration>,
    /// Least time between two ACKs a connection (or TIME_WAIT entry) sends
    /// in answer to invalid segments without data: out of window or
    /// failing PAWS (Linux `tcp_invalid_ratelimit`, 500 ms). Two ends that
    /// disagree about the sequence space otherwise answer each other's
    /// ACKs forever (an ACK loop). Zero: no limit.
    pub tcp_invalid_ratelimit: Duration,
    /// Rate limit of RSTs answering segments for no connection (closed
    /// ports, stray segments), in the spirit of Linux's `icmp_ratelimit`
    /// / `icmp_msgs_per_sec` for port unreachables. `None`: unlimited.
    pub rst_ratelimit: Option<RateLimit>,
    /// Congestion control for new connections (Linux default: cubic).
    pub tcp_congestion_control: CcAlgorithm,
    /// Connections the demultiplexing table, the timer wheel and the
    /// application's connection map are sized for up front (not a Linux
    /// sysctl; `--sysctl initial_connections=N`). Up to this many they
    /// never grow; past it they double, which rehashes every entry once
    /// (a pause of milliseconds per hundred thousand connections). Each
    /// preallocated connection costs about 180 bytes of heap at once
    /// (measured on `xstack serve --app http`: the entries a live
    /// connection would take in those tables anyway).
    /// The connection slots themselves grow in chunks and never move.
    pub initial_connections: usize,
    /// Most control blocks the engine will hold (TIME_WAIT entries are
    /// bounded apart, by `tcp_max_tw_buckets`).
    pub max_connections: usize,
    /// Ephemeral ports for `connect` with port 0 (Linux
    /// `ip_local_port_range`, 32768..=60999).
    pub ip_local_port_range: (u16, u16),
    /// Most RST segments queued for sending; more are dropped and counted.
    pub max_pending_resets: usize,
    /// Accept segments whose checksum field holds only the pseudo-header
    /// sum (CHECKSUM_PARTIAL). Not a Linux sysctl: Linux knows from the
    /// skb's `ip_summed` that a local sender left the checksum to an
    /// offload, but a frame reaching XDP/AF_XDP carries no such mark. A
    /// Linux peer on veth sends every TCP segment that way by default (its
    /// tx-checksum offload is on) and nothing on the link can corrupt
    /// them, so the bring-up turns this on for veth; on a real NIC the
    /// checksum is complete on the wire and this stays off (such segments
    /// are then dropped as `drop_tcp_checksum_partial`). Accepted ones are
    /// counted as `checksum_partial_in`.
    pub accept_checksum_partial: bool,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            tcp_timestamps: true,
            tcp_sack: true,
            tcp_window_scaling: true,
            tcp_rfc1337: true,
            tcp_rmem: 131_072,
            tcp_wmem: 262_144,
            mss: 1460,
            tcp_min_snd_mss: 48,
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            rto_initial: Duration::from_secs(1),
            tcp_syn_retries: 6,
            tcp_synack_retries: 5,
            tcp_retries2: 15,
            delayed_ack: Duration::from_millis(40),
            msl: Duration::from_secs(30),
            tcp_fin_timeout: Duration::from_secs(60),
            tcp_max_syn_backlog: 4096,
            somaxconn: 4096,
            tcp_syncookies: 1,
            tcp_abort_on_overflow: false,
            tcp_max_tw_buckets: 262_144,
            tcp_tw_reuse: 2,
            tw_isn_above_last: false,
            tcp_keepalive_time: Duration::from_secs(7200),
            tcp_keepalive_intvl: Duration::from_secs(75),
            tcp_keepalive_probes: 9,
            close_wait_warn: Some(Duration::from_secs(600)),
            tcp_invalid_ratelimit: Duration::from_millis(500),
            rst_ratelimit: Some(RateLimit {
                per_sec: 1000,
                burst: 50,
            }),
            tcp_congestion_control: CcAlgorithm::Cubic,
            initial_connections: 1024,
            max_connections: 1 << 22,
            ip_local_port_range: (32768, 60999),
            max_pending_resets: 4096,
            accept_checksum_partial: false,
        }
    }
}

/// A token bucket: `burst` at once, `per_sec` sustained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_sec: u32,
    /// Bucket size.
    pub burst: u32,
}

/// Keepalive settings of one connection (SO_KEEPALIVE with TCP_KEEPIDLE,
/// TCP_KEEPINTVL and TCP_KEEPCNT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Idle time before the first probe (TCP_KEEPIDLE).
    pub time: Duration,
    /// Time between probes (TCP_KEEPINTVL).
    pub intvl: Duration,
    /// Unanswered probes before the connection is dropped (TCP_KEEPCNT).
    pub probes: u8,
}

impl TcpConfig {
    /// Our MSS for a connection of the family: `mss` over IPv4, 20 bytes
    /// less over IPv6 (the IPv6 header is 40 bytes, IPv4's 20: RFC 8200
    /// §3, RFC 9293 §3.7.1 "MTU - 60").
    pub fn mss_for(&self, ipv6: bool) -> u16 {
        if ipv6 {
            self.mss.saturating_sub(20)
        } else {
            self.mss
        }
    }

    /// Keepalive with the engine-wide defaults (`tcp_keepalive_*`), for
    /// `TcpEngine::set_keepalive`.
    pub fn keepalive(&self) -> KeepaliveConfig {
        KeepaliveConfig {
            time: self.tcp_keepalive_time,
            intvl: self.tcp_keepalive_intvl,
            probes: self.tcp_keepalive_probes,
        }
    }

    /// Our window-scale shift: the smallest that lets the receive buffer be
    /// advertised (RFC 7323 §2.3, at most 14).
    pub fn rcv_wscale(&self) -> u8 {
        let mut s = 0u8;
        while s < 14 && (self.tcp_rmem >> s) > 65_535 {
            s += 1;
        }
        s
    }
}
