//! The transmission control block: one connection's state machine
//! (RFC 9293 §3.3.2, §3.10), sans I/O. The engine feeds it segments and
//! timer expiries and polls it for segments to send.
//!
//! Buffers live on the heap behind the block so that the block itself
//! stays small (see `tests::control_block_is_small`).
//!
//! This file holds the block, its flags and its construction; the rest is
//! cut by concern as Linux's `net/ipv4/tcp_*.c`: `input.rs` (segment
//! arrival), `output.rs` (what to send), `timer.rs` (timer expiry) and
//! `user.rs` (application calls and socket options).

use std::collections::VecDeque;
use std::time::Duration;

use super::buffer::{BufPool, RecvBuffer, SendBuffer};
use super::cc::{Cc, CongestionControl};
use super::config::{KeepaliveConfig, TcpConfig};
use super::error::TcpError;
use super::event::{ConnId, Event, FourTuple, ListenerId, Warning};
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::shared::Warnings;
use super::state::State;
use super::stats::Stats;
use crate::time::Instant;
use crate::wire::tcp::SeqNumber;
use crate::wire::tcp::{fill_checksum, TcpOptions, TcpRepr, Timestamps, FIN, PSH, SYN};
use stack_ebpf::cookie::CookieOptions;

mod info;
mod input;
mod output;
mod timer;
mod user;

pub use self::info::{TcpInfo, TimerInfo};
use self::timer::{Timer, TimerTable};

/// An RST the engine must send on behalf of a connection or a lookup miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RstSegment {
    pub tuple: FourTuple,
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
}

/// What a connection needs from the engine while it runs.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a TcpConfig,
    pub stats: &'a mut Stats,
    pub events: &'a mut VecDeque<Event>,
    pub resets: &'a mut VecDeque<RstSegment>,
    pub warnings: &'a mut Warnings,
    /// Storage of emptied send and receive buffers, for the next to fill.
    pub pool: &'a mut BufPool,
    pub id: ConnId,
}

impl Ctx<'_> {
    fn reset(&mut self, rst: RstSegment) {
        if self.resets.len() >= self.cfg.max_pending_resets {
            self.stats.drop_rst_queue_full += 1;
        } else {
            self.resets.push_back(rst);
        }
    }
}

// Flag bits of `Tcb::flags`.
/// Nagle off (TCP_NODELAY).
const NODELAY: u32 = 1 << 0;
/// Timestamps negotiated (RFC 7323 §3.2).
const TS: u32 = 1 << 1;
/// SACK negotiated (RFC 2018 §2).
const SACK: u32 = 1 << 2;
/// Window scaling negotiated (RFC 7323 §2.2).
const WS: u32 = 1 << 3;
/// The application shut down the send side: FIN follows the data.
const FIN_QUEUED: u32 = 1 << 4;
/// The peer's FIN has been consumed (RCV.NXT advanced past it).
const FIN_RCVD: u32 = 1 << 5;
/// The application closed its handle; nobody reads or writes any more.
const ORPHAN: u32 = 1 << 6;
/// An ACK must be sent without delay.
const ACK_NOW: u32 = 1 << 7;
/// Created from a listener (SYN-RECEIVED from LISTEN).
const PASSIVE: u32 = 1 << 8;
/// In fast recovery (RFC 6582 / RFC 6675).
const RECOVERY: u32 = 1 << 9;
/// A Readable event is outstanding (cleared by `read`).
const READ_NOTIFIED: u32 = 1 << 10;
/// A write came up short: report Writable when space frees up.
const WRITE_BLOCKED: u32 = 1 << 11;
/// Retransmit the segment at SND.UNA now (fast retransmit / partial ACK).
const RTX_UNA: u32 = 1 << 12;
/// Send one segment even without window or Nagle clearance (probe).
const FORCE: u32 = 1 << 14;
/// `ts_recent` holds a value (RFC 7323 §4.3).
const TS_RECENT: u32 = 1 << 15;
/// SO_KEEPALIVE.
const KEEPALIVE: u32 = 1 << 16;
/// Send a keepalive probe (<SEQ=SND.UNA-1>, no data).
const KA_PROBE: u32 = 1 << 17;
/// SO_LINGER with a zero timeout: `close` resets.
const LINGER0: u32 = 1 << 18;
/// The connection went on to the TIME_WAIT table; the application still
/// holds this handle, which reports TIME_WAIT until the entry ends.
const IN_TIME_WAIT: u32 = 1 << 19;
/// The engine took this closed block out of its demux table (it stays for
/// the handle the application holds): freeing it needs no lookup.
const UNLINKED: u32 = 1 << 20;

/// PAWS: TS.Recent older than 24 days is invalid (RFC 7323 §5.5).
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// RFC 9293 §3.7.1: send MSS when the peer sends no MSS option.
const DEFAULT_MSS: u16 = 536;
/// The IPv6 default send MSS when the peer sends none: the minimum link
/// MTU less the headers, 1280 - 60 (RFC 8200 §5, RFC 9293 §3.7.1).
const DEFAULT_MSS6: u16 = 1220;

/// One connection's control block.
#[derive(Debug)]
pub struct Tcb {
    pub(crate) tuple: FourTuple,
    /// Changed only by [`Tcb::set_state`].
    state: State,
    flags: u32,
    /// Listener this connection came from, while it is not yet accepted.
    pub(crate) listener: Option<u32>,
    iss: SeqNumber,
    irs: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent (SND.NXT before a go-back-N rewind).
    snd_max: SeqNumber,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Sequence number of the first byte in the send buffer.
    snd_buf_start: SeqNumber,
    /// RFC 6582 `recover`.
    recover: SeqNumber,
    /// RFC 6675 HighRxt.
    high_rxt: SeqNumber,
    snd_wnd: u32,
    max_snd_wnd: u32,
    rcv_nxt: SeqNumber,
    /// Right edge of the window we advertised.
    rcv_adv: SeqNumber,
    last_ack_sent: SeqNumber,
    rtt_seq: SeqNumber,
    /// An out-of-order FIN at this sequence number.
    fin_ooo: Option<SeqNumber>,
    /// Payload bytes per full-sized segment we send (Eff.snd.MSS minus
    /// options, RFC 9293 §3.7.1).
    smss: u16,
    /// Largest segment seen from the peer (for delayed-ACK counting).
    rcv_mss: u16,
    snd_wscale: u8,
    rcv_wscale: u8,
    dupacks: u8,
    retries: u8,
    /// Data bytes received since the last ACK we sent.
    unacked_bytes: u32,
    /// NewReno cwnd inflation and limited-transmit allowance.
    inflation: u32,
    ts_recent: u32,
    ts_offset: u32,
    ts_recent_age: Instant,
    rtt_start: Option<Instant>,
    /// The deadline of each of the connection's timers.
    timers: TimerTable,
    /// When a segment last passed the acceptability test (keepalive
    /// idleness, Linux `rcv_tstamp`).
    last_rcv: Instant,
    /// When the connection entered CLOSE_WAIT (for its age).
    pub(crate) state_since: Instant,
    /// Keepalive: idle time and probe interval in milliseconds, probes
    /// allowed and sent.
    ka_time_ms: u32,
    ka_intvl_ms: u32,
    ka_probes: u8,
    ka_probes_out: u8,
    /// When we last answered an invalid segment with an ACK: engine
    /// milliseconds + 1, wrapping, 0 for never (Linux `last_oow_ack_time`).
    last_oow_ack: u32,
    /// The listener this connection came from (kept after accept, for
    /// per-listener accounting), or `u32::MAX`.
    pub(crate) origin: u32,
    pub(crate) error: Option<TcpError>,
    rtt: RttEstimator,
    cc: Cc,
    snd: SendBuffer,
    rcv: RecvBuffer,
    sb: Scoreboard,
}

impl Tcb {
    fn base(
        now: Instant,
        cfg: &TcpConfig,
        tuple: FourTuple,
        iss: SeqNumber,
        ts_offset: u32,
        state: State,
    ) -> Tcb {
        Tcb {
            tuple,
            state,
            flags: 0,
            listener: None,
            iss,
            irs: SeqNumber(0),
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_buf_start: iss + 1u32,
            recover: iss,
            high_rxt: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            last_ack_sent: SeqNumber(0),
            rtt_seq: iss,
            fin_ooo: None,
            smss: DEFAULT_MSS,
            rcv_mss: DEFAULT_MSS,
            snd_wscale: 0,
            rcv_wscale: if cfg.tcp_window_scaling {
                cfg.rcv_wscale()
            } else {
                0
            },
            dupacks: 0,
            retries: 0,
            unacked_bytes: 0,
            inflation: 0,
            ts_recent: 0,
            // TSval offset per address pair, from the engine's secret, so
            // timestamps do not reveal the clock and still grow across
            // incarnations of a 4-tuple (Linux `secure_tcp_ts_off`), which
            // TIME_WAIT reuse and RFC 6191 depend on.
            ts_offset,
            ts_recent_age: now,
            rtt_start: None,
            timers: TimerTable::default(),
            last_rcv: now,
            state_since: now,
            ka_time_ms: 0,
            ka_intvl_ms: 0,
            ka_probes: 0,
            ka_probes_out: 0,
            last_oow_ack: 0,
            origin: u32::MAX,
            error: None,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            cc: Cc::new(cfg.tcp_congestion_control, u32::from(DEFAULT_MSS)),
            snd: SendBuffer::new(cfg.tcp_wmem),
            rcv: RecvBuffer::new(cfg.tcp_rmem),
            sb: Scoreboard::default(),
        }
    }

    /// Active OPEN (RFC 9293 §3.10.1): SYN-SENT, the SYN goes out on the
    /// next poll.
    ///
    /// `inherit_ts` is the TS.Recent of a TIME_WAIT incarnation this one
    /// replaces (`tcp_tw_reuse`, as Linux's `tcp_twsk_unique`): a SYN,ACK
    /// with an older timestamp is an old duplicate (PAWS).
    pub(crate) fn new_active(
        now: Instant,
        cfg: &TcpConfig,
        tuple: FourTuple,
        iss: SeqNumber,
        ts_offset: u32,
        inherit_ts: Option<u32>,
    ) -> Tcb {
        let mut t = Tcb::base(now, cfg, tuple, iss, ts_offset, State::SynSent);
        if let Some(ts) = inherit_ts {
            t.ts_recent = ts;
            t.set(TS_RECENT);
        }
        t
    }

    /// A SYN arrived at a listener (RFC 9293 §3.10.7.2, LISTEN, "third"):
    /// RCV.NXT = SEG.SEQ + 1, IRS = SEG.SEQ, state SYN-RECEIVED; the SYN,ACK
    /// <SEQ=ISS><ACK=RCV.NXT> goes out on the next poll.
    pub(crate) fn new_passive(
        now: Instant,
        cfg: &TcpConfig,
        tuple: FourTuple,
        iss: SeqNumber,
        ts_offset: u32,
        syn: &TcpRepr,
        listener: u32,
    ) -> Tcb {
        let mut t = Tcb::base(now, cfg, tuple, iss, ts_offset, State::SynReceived);
        t.flags |= PASSIVE;
        t.listener = Some(listener);
        t.origin = listener;
        t.irs = syn.seq;
        t.rcv_nxt = syn.seq + 1u32;
        t.rcv_adv = t.rcv_nxt;
        t.last_ack_sent = t.rcv_nxt;
        t.negotiate(now, cfg, syn);
        // RFC 7323 §2.2: the window field of a SYN is never scaled.
        t.snd_wnd = u32::from(syn.window);
        t.max_snd_wnd = t.snd_wnd;
        t.snd_wl1 = syn.seq;
        t
    }

    /// The final ACK of a handshake answered with a SYN cookie (Linux
    /// `cookie_v4_check` → `tcp_get_cookie_sock`): the connection is rebuilt
    /// straight into ESTABLISHED from the ACK and the options the cookie
    /// carried (MSS from its index; window scale and SACK from the TSecr
    /// when timestamps are on, RFC 7323 §2.2 and RFC 2018 §2 as negotiated
    /// in the SYN it answered). ISS = SEG.ACK - 1, IRS = SEG.SEQ - 1. Our
    /// window-scale shift is the one every SYN,ACK of this engine offers
    /// (`TcpConfig::rcv_wscale`), so it needs no storage.
    pub(crate) fn new_cookie(
        now: Instant,
        cfg: &TcpConfig,
        tuple: FourTuple,
        ack: &TcpRepr,
        opts: CookieOptions,
        ts_offset: u32,
        listener: u32,
    ) -> Tcb {
        let iss = ack.ack.unwrap_or(SeqNumber(1)) - 1u32;
        let mut t = Tcb::base(now, cfg, tuple, iss, ts_offset, State::Established);
        t.flags |= PASSIVE;
        t.origin = listener;
        t.irs = ack.seq - 1u32;
        t.rcv_nxt = ack.seq;
        t.last_ack_sent = ack.seq;
        t.snd_una = iss + 1u32;
        t.snd_nxt = t.snd_una;
        t.snd_max = t.snd_una;
        t.snd_wl2 = t.snd_una;
        t.recover = t.snd_una;
        t.high_rxt = t.snd_una;
        t.rtt_seq = t.snd_una;
        // What our cookie SYN,ACK offered.
        t.rcv_adv = ack.seq + t.rcv.free().min(65_535);
        let mut syn = TcpRepr {
            options: TcpOptions {
                mss: Some(opts.mss),
                window_scale: opts.wscale,
                sack_permitted: opts.sack,
                timestamps: None,
                ..TcpOptions::default()
            },
            ..*ack
        };
        if let Some(ts) = ack.options.timestamps {
            syn.options.timestamps = Some(Timestamps {
                tsval: ts.tsval,
                tsecr: 0,
            });
        }
        t.negotiate(now, cfg, &syn);
        t.snd_wnd = u32::from(ack.window) << t.snd_wscale;
        t.max_snd_wnd = t.snd_wnd;
        t.snd_wl1 = ack.seq;
        t
    }

    fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }
    fn set(&mut self, f: u32) {
        self.flags |= f;
    }
    fn clear(&mut self, f: u32) {
        self.flags &= !f;
    }

    /// Options of the peer's SYN decide what this connection uses.
    fn negotiate(&mut self, now: Instant, cfg: &TcpConfig, syn: &TcpRepr) {
        let o = &syn.options;
        // RFC 7323 §2.2: scaling only when both SYNs carry the option.
        match (cfg.tcp_window_scaling, o.window_scale) {
            (true, Some(shift)) => {
                self.set(WS);
                self.snd_wscale = shift.min(14);
                self.rcv_wscale = cfg.rcv_wscale();
            }
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        // RFC 2018 §2: SACK only when SACK-permitted was in both SYNs.
        if cfg.tcp_sack && o.sack_permitted {
            self.set(SACK);
        }
        // RFC 7323 §3.2: timestamps when both SYNs carry the option.
        if let (true, Some(ts)) = (cfg.tcp_timestamps, o.timestamps) {
            self.set(TS | TS_RECENT);
            self.ts_recent = ts.tsval;
            self.ts_recent_age = now;
        }
        // RFC 9293 §3.7.1 / RFC 6691: Eff.snd.MSS = min(SendMSS, our MSS)
        // less the fixed options; clamp tiny peer values (Linux
        // tcp_min_snd_mss) so a peer cannot force 1-byte segments.
        let v6 = self.tuple.is_ipv6();
        let peer = o.mss.unwrap_or(if v6 { DEFAULT_MSS6 } else { DEFAULT_MSS });
        let mss = peer.min(cfg.mss_for(v6)).max(cfg.tcp_min_snd_mss);
        let opts = if self.has(TS) { 12 } else { 0 };
        self.smss = mss.saturating_sub(opts).max(1);
        self.rcv_mss = self.smss;
        self.cc = Cc::new(cfg.tcp_congestion_control, u32::from(self.smss));
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Every state change goes through here (smoltcp's `set_state`): it
    /// logs the transition at trace level. The engine keeps the per-state
    /// counts from the state before and after each call into the block
    /// (`TcpEngine::run`), so no transition escapes them.
    fn set_state(&mut self, state: State) {
        if self.state != state {
            log::trace!("tcp {:?}: {} -> {}", self.tuple, self.state, state);
            self.state = state;
        }
    }

    /// True once the application gave up its handle.
    pub(crate) fn is_orphan(&self) -> bool {
        self.has(ORPHAN)
    }

    /// True when created by a listener.
    pub(crate) fn is_passive(&self) -> bool {
        self.has(PASSIVE)
    }

    /// Payload bytes per full-sized segment.
    pub fn smss(&self) -> u16 {
        self.smss
    }

    /// Congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.cc.cwnd()
    }

    /// Send window offered by the peer, in bytes (scaled).
    pub fn snd_wnd(&self) -> u32 {
        self.snd_wnd
    }

    /// Current RTO (with backoff).
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Heap bytes the send and receive buffers hold: 0 for an idle
    /// connection (nothing unacknowledged, nothing unread), as the buffers
    /// give their memory back when they empty.
    pub fn buffer_heap_bytes(&self) -> usize {
        self.snd.heap_bytes() + self.rcv.heap_bytes()
    }

    /// The earliest deadline of any of the connection's timers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    fn event(&self, ctx: &mut Ctx, e: Event) {
        if !self.has(ORPHAN) {
            ctx.events.push_back(e);
        }
    }

    fn ts_now(&self, now: Instant) -> u32 {
        (now.millis() as u32).wrapping_add(self.ts_offset)
    }

    /// RCV.WND: what remains of the window we advertised.
    fn rcv_wnd(&self) -> u32 {
        self.rcv_adv.dist(self.rcv_nxt)
    }

    fn data_end(&self) -> SeqNumber {
        self.snd_buf_start + self.snd.len()
    }

    /// Our FIN has been sent and acknowledged.
    fn fin_acked(&self) -> bool {
        self.has(FIN_QUEUED) && self.snd_una == self.data_end() + 1u32
    }

    fn enter_closed(&mut self) {
        self.set_state(State::Closed);
        self.timers.stop_all();
        self.clear(FORCE | ACK_NOW | RTX_UNA | KA_PROBE);
        self.sb.clear();
        // Nothing will be sent any more: give the send buffer's memory
        // back at once (reads of data already received still work).
        self.snd = SendBuffer::new(0);
    }

    /// RFC 9293 §3.10.7.4: TIME-WAIT "Start the time-wait timer, turn off
    /// the other timers." The engine moves the connection on to its
    /// TIME_WAIT table right after this (see [`Tcb::time_wait_entry`]).
    fn enter_time_wait(&mut self) {
        self.set_state(State::TimeWait);
        self.timers.stop_all();
        self.clear(FORCE | RTX_UNA | KA_PROBE);
        self.sb.clear();
    }

    /// What the TIME_WAIT table keeps of this connection, and whether an
    /// ACK (of the peer's FIN) is still owed. Leaves the block CLOSED (kept
    /// only for a handle the application still holds).
    pub(crate) fn time_wait_entry(&mut self, now: Instant) -> (super::shared::TwEntry, bool) {
        let ack_owed = self.has(ACK_NOW);
        let window =
            (self.rcv.free().min(65_535 << self.rcv_wscale) >> self.rcv_wscale).min(65_535) as u16;
        let e = super::shared::TwEntry {
            // The TIME_WAIT table fills the addresses in (`TwTable::insert`:
            // IPv4 in place, IPv6 in a side slab).
            local_addr: 0,
            remote_addr: 0,
            local_port: self.tuple.local_port,
            remote_port: self.tuple.remote_port,
            snd_nxt: self.snd_max,
            rcv_nxt: self.rcv_nxt,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            ts_recent_stamp: super::shared::stamp(if self.has(TS_RECENT) {
                self.ts_recent_age
            } else {
                now
            }),
            last_oow_ack: self.last_oow_ack,
            window,
            flags: if self.has(TS) && self.has(TS_RECENT) {
                super::shared::TW_TS
            } else {
                0
            },
            handle_slot: super::shared::NO_HANDLE,
            handle_gen: 0,
            timer: super::wheel::TimerId::NONE,
        };
        self.enter_closed();
        (e, ack_owed)
    }

    /// Marks (or unmarks) this closed block as the handle of a connection
    /// waiting in the TIME_WAIT table.
    pub(crate) fn set_in_time_wait(&mut self, on: bool) {
        if on {
            self.set(IN_TIME_WAIT)
        } else {
            self.clear(IN_TIME_WAIT)
        }
    }

    /// Marks this closed block as out of the engine's demux table.
    pub(crate) fn set_unlinked(&mut self) {
        self.set(UNLINKED)
    }

    /// True once the engine took this closed block out of its demux table.
    pub(crate) fn is_unlinked(&self) -> bool {
        self.has(UNLINKED)
    }

    /// The state the application sees: TIME_WAIT while the connection
    /// waits in the TIME_WAIT table.
    pub(crate) fn visible_state(&self) -> State {
        if self.has(IN_TIME_WAIT) {
            State::TimeWait
        } else {
            self.state
        }
    }
}
