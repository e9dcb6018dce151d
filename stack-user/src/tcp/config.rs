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
    /// Maximum segment lifetime; TIME_WAIT lasts 2*MSL (60 s as on Linux).
    pub msl: Duration,
    /// How long an orphaned connection stays in FIN_WAIT_2 (Linux: 60 s).
    pub tcp_fin_timeout: Duration,
    /// Congestion control for new connections (Linux default: cubic).
    pub tcp_congestion_control: CcAlgorithm,
    /// Connections the demultiplexing table is sized for up front.
    pub initial_connections: usize,
    /// Most connections (including TIME_WAIT) the engine will hold.
    pub max_connections: usize,
    /// Ephemeral ports for `connect` with port 0 (Linux
    /// `ip_local_port_range`, 32768..=60999).
    pub ip_local_port_range: (u16, u16),
    /// Most RST segments queued for sending; more are dropped and counted.
    pub max_pending_resets: usize,
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
            tcp_congestion_control: CcAlgorithm::Cubic,
            initial_connections: 1024,
            max_connections: 1 << 22,
            ip_local_port_range: (32768, 60999),
            max_pending_resets: 4096,
        }
    }
}

impl TcpConfig {
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
