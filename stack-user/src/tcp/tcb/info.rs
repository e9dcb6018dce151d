//! What `xstack ss` shows of one connection: the fields of Linux's
//! `struct tcp_info` (`ss -tnoi`) that an engineer reads when a transfer
//! stalls — queues, sequence progress, windows, congestion state, RTT and
//! the timers with the time left on each.

use serde::Serialize;

use super::*;

/// One running timer: its name (as `ss -o` names them where it has one)
/// and the milliseconds left.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TimerInfo {
    /// `retransmit`, `persist`, `keepalive`, `delayed_ack`, `fin_wait2` or
    /// `close_wait`.
    pub name: &'static str,
    /// Milliseconds until it fires (0 when due).
    pub left_ms: u64,
}

/// A connection's state as `ss -tnoi` would show it (Linux `tcp_info`).
/// Byte counts are relative to the initial sequence numbers, so they read
/// as `bytes_acked`/`bytes_received` do.
#[derive(Clone, Debug, Serialize)]
pub struct TcpInfo {
    /// State name (`ESTABLISHED`, ...).
    pub state: String,
    /// `addr:port` of this end.
    pub local: String,
    /// `addr:port` of the peer.
    pub peer: String,
    /// Bytes the application can read (ss Recv-Q).
    pub recv_q: u64,
    /// Bytes written and not yet acknowledged (ss Send-Q).
    pub send_q: u64,
    /// Bytes acknowledged by the peer (tcpi_bytes_acked).
    pub bytes_acked: u64,
    /// Bytes sent at least once (SND.MAX).
    pub bytes_sent: u64,
    /// Bytes received in order (tcpi_bytes_received).
    pub bytes_received: u64,
    /// Bytes in flight or waiting for a retransmission (SND.MAX − SND.UNA).
    pub unacked: u64,
    /// Bytes queued and never sent (tcpi_notsent_bytes).
    pub notsent: u64,
    /// Where the next segment starts, relative to SND.UNA (0 after an RTO
    /// rewinds to go-back-N).
    pub snd_nxt_off: u64,
    /// Window the peer offers, bytes.
    pub snd_wnd: u32,
    /// Largest window the peer has offered.
    pub max_snd_wnd: u32,
    /// What remains of the window we advertised.
    pub rcv_wnd: u32,
    /// Free space in the receive buffer.
    pub rcv_space: u32,
    /// Bytes held out of order.
    pub rcv_ooo: u64,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// Slow-start threshold, bytes.
    pub ssthresh: u32,
    /// Sender MSS (payload bytes per segment).
    pub mss: u16,
    /// Window scale: ours to the peer, the peer's to us.
    pub wscale: (u8, u8),
    /// Timestamps negotiated (RFC 7323).
    pub ts: bool,
    /// SACK negotiated (RFC 2018).
    pub sack: bool,
    /// In fast recovery.
    pub recovery: bool,
    /// SACKed ranges held in the scoreboard.
    pub sacked_ranges: usize,
    /// Duplicate ACKs counted.
    pub dupacks: u8,
    /// Retransmissions/probes without progress (tcpi_retransmits).
    pub retries: u8,
    /// RTO backoffs in force (tcpi_backoff).
    pub backoff: u8,
    /// Current RTO with backoff, ms.
    pub rto_ms: f64,
    /// Smoothed RTT, ms (none before the first sample).
    pub rtt_ms: Option<f64>,
    /// RTT variation, ms.
    pub rttvar_ms: f64,
    /// An ACK is owed and goes out with the next transmission.
    pub ack_pending: bool,
    /// Milliseconds since a segment from the peer last passed the
    /// acceptability test (`lastrcv`-like).
    pub last_rcv_ms: u64,
    /// The timers that are running.
    pub timers: Vec<TimerInfo>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Tcb {
    /// The `ss -tnoi` view of this connection at `now`.
    pub fn info(&self, now: Instant) -> TcpInfo {
        let una = self.snd_una;
        let base = self.iss + 1u32;
        let rel = |s: SeqNumber, b: SeqNumber| u64::from(if s > b { s.dist(b) } else { 0 });
        let data_end = self.data_end();
        let timers = Timer::ORDER
            .iter()
            .filter_map(|&t| {
                let at = self.timers.deadline(t)?;
                Some(TimerInfo {
                    name: t.name(),
                    left_ms: at.saturating_since(now).as_millis() as u64,
                })
            })
            .collect();
        TcpInfo {
            state: self.state.to_string(),
            local: std::net::SocketAddr::from((self.tuple.local_addr, self.tuple.local_port))
                .to_string(),
            peer: std::net::SocketAddr::from((self.tuple.remote_addr, self.tuple.remote_port))
                .to_string(),
            recv_q: self.rcv.len() as u64,
            send_q: rel(data_end, una),
            bytes_acked: rel(una, base),
            bytes_sent: rel(self.snd_max, base),
            bytes_received: rel(self.rcv_nxt, self.irs + 1u32),
            unacked: rel(self.snd_max, una),
            notsent: rel(data_end, self.snd_max),
            snd_nxt_off: rel(self.snd_nxt, una),
            snd_wnd: self.snd_wnd,
            max_snd_wnd: self.max_snd_wnd,
            rcv_wnd: self.rcv_wnd(),
            rcv_space: self.rcv.free(),
            rcv_ooo: self.rcv.ooo_bytes() as u64,
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            mss: self.smss,
            wscale: (self.rcv_wscale, self.snd_wscale),
            ts: self.has(TS),
            sack: self.has(SACK),
            recovery: self.has(RECOVERY),
            sacked_ranges: self.sb.ranges().len(),
            dupacks: self.dupacks,
            retries: self.retries,
            backoff: self.rtt.backoffs(),
            rto_ms: ms(self.rtt.rto()),
            rtt_ms: self.rtt.srtt().map(ms),
            rttvar_ms: ms(self.rtt.rttvar()),
            ack_pending: self.has(ACK_NOW),
            last_rcv_ms: now.saturating_since(self.last_rcv).as_millis() as u64,
            timers,
        }
    }
}
