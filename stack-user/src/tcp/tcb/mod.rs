//! The transmission control block: one connection's state machine
//! (RFC 9293 §3.3.2, §3.10), sans I/O. The engine feeds it segments and
//! timer expiries and polls it for segments to send.
//!
//! Buffers live on the heap behind the block so that the block itself
//! stays small (see `tests::control_block_is_small`).

use std::collections::VecDeque;
use std::time::Duration;

use super::buffer::{RecvBuffer, SendBuffer};
use super::cc::{Cc, CongestionControl};
use super::config::{KeepaliveConfig, TcpConfig};
use super::error::TcpError;
use super::event::{ConnId, Event, FourTuple, ListenerId, Warning};
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::seq::SeqNumber;
use super::state::State;
use super::stats::Stats;
use super::time::Instant;
use crate::wire::tcp::{fill_checksum, TcpOptions, TcpRepr, Timestamps, FIN, PSH, SYN};
use stack_ebpf::cookie::CookieOptions;

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
    pub warnings: &'a mut super::engine::Warnings,
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
/// `rtx_deadline` is the persist timer, not the retransmission timer.
const PERSIST: u32 = 1 << 13;
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
const TW_HUSK: u32 = 1 << 19;
/// The CLOSE_WAIT warning is armed on `state_deadline`.
const CW_WARN: u32 = 1 << 20;

/// PAWS: TS.Recent older than 24 days is invalid (RFC 7323 §5.5).
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// RFC 9293 §3.7.1: send MSS when the peer sends no MSS option.
const DEFAULT_MSS: u16 = 536;

/// One connection's control block.
#[derive(Debug)]
pub struct Tcb {
    pub(crate) tuple: FourTuple,
    pub(crate) state: State,
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
    rtx_deadline: Option<Instant>,
    delack_deadline: Option<Instant>,
    /// The orphaned FIN_WAIT_2 timeout (`tcp_fin_timeout`), or the
    /// CLOSE_WAIT warning (`close_wait_warn`).
    state_deadline: Option<Instant>,
    /// The keepalive timer.
    ka_deadline: Option<Instant>,
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
            rtx_deadline: None,
            delack_deadline: None,
            state_deadline: None,
            ka_deadline: None,
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
        let peer = o.mss.unwrap_or(DEFAULT_MSS);
        let mss = peer.min(cfg.mss).max(cfg.tcp_min_snd_mss);
        let opts = if self.has(TS) { 12 } else { 0 };
        self.smss = mss.saturating_sub(opts).max(1);
        self.rcv_mss = self.smss;
        self.cc = Cc::new(cfg.tcp_congestion_control, u32::from(self.smss));
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once the application gave up its handle.
    pub(crate) fn is_orphan(&self) -> bool {
        self.has(ORPHAN)
    }

    /// True when created by a listener.
    pub(crate) fn is_passive(&self) -> bool {
        self.has(PASSIVE)
    }

    /// Sets or clears TCP_NODELAY (disables Nagle, RFC 9293 §3.7.4).
    pub(crate) fn set_nodelay(&mut self, on: bool) {
        if on {
            self.set(NODELAY)
        } else {
            self.clear(NODELAY)
        }
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

    /// The earliest deadline of any of the connection's timers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [
            self.rtx_deadline,
            self.delack_deadline,
            self.state_deadline,
            self.ka_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
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
        self.state = State::Closed;
        self.rtx_deadline = None;
        self.delack_deadline = None;
        self.state_deadline = None;
        self.ka_deadline = None;
        self.clear(PERSIST | FORCE | ACK_NOW | RTX_UNA | KA_PROBE | CW_WARN);
        self.sb.clear();
        // Nothing will be sent any more: give the send buffer's memory
        // back at once (reads of data already received still work).
        self.snd = SendBuffer::new(0);
    }

    /// RFC 9293 §3.10.7.4: TIME-WAIT "Start the time-wait timer, turn off
    /// the other timers." The engine moves the connection on to its
    /// TIME_WAIT table right after this (see [`Tcb::time_wait_entry`]).
    fn enter_time_wait(&mut self) {
        self.state = State::TimeWait;
        self.rtx_deadline = None;
        self.delack_deadline = None;
        self.state_deadline = None;
        self.ka_deadline = None;
        self.clear(PERSIST | FORCE | RTX_UNA | KA_PROBE | CW_WARN);
        self.sb.clear();
    }

    /// What the TIME_WAIT table keeps of this connection, and whether an
    /// ACK (of the peer's FIN) is still owed. Leaves the block CLOSED (a
    /// husk for a handle the application still holds).
    pub(crate) fn time_wait_entry(&mut self, now: Instant) -> (super::engine::time_wait::TwEntry, bool) {
        let ack_owed = self.has(ACK_NOW);
        let window =
            (self.rcv.free().min(65_535 << self.rcv_wscale) >> self.rcv_wscale).min(65_535) as u16;
        let e = super::engine::time_wait::TwEntry {
            local_addr: u32::from(self.tuple.local_addr),
            remote_addr: u32::from(self.tuple.remote_addr),
            local_port: self.tuple.local_port,
            remote_port: self.tuple.remote_port,
            snd_nxt: self.snd_max,
            rcv_nxt: self.rcv_nxt,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            ts_recent_stamp: super::engine::time_wait::stamp(if self.has(TS_RECENT) {
                self.ts_recent_age
            } else {
                now
            }),
            last_oow_ack: self.last_oow_ack,
            window,
            flags: if self.has(TS) && self.has(TS_RECENT) {
                super::engine::time_wait::TW_TS
            } else {
                0
            },
            husk: super::engine::time_wait::NO_HUSK,
            husk_gen: 0,
            timer: super::wheel::TimerId::NONE,
        };
        self.enter_closed();
        (e, ack_owed)
    }

    /// Marks (or unmarks) this closed block as the handle of a connection
    /// waiting in the TIME_WAIT table.
    pub(crate) fn set_time_wait_husk(&mut self, on: bool) {
        if on {
            self.set(TW_HUSK)
        } else {
            self.clear(TW_HUSK)
        }
    }

    /// The state the application sees: TIME_WAIT for a husk.
    pub(crate) fn visible_state(&self) -> State {
        if self.has(TW_HUSK) {
            State::TimeWait
        } else {
            self.state
        }
    }

    /// True when `seg` is the ACK that completes a passive open (RFC 9293
    /// §3.10.7.4, SYN-RECEIVED: SND.UNA < SEG.ACK =< SND.NXT), checked
    /// before the engine lets it in so a full accept queue can refuse it.
    pub(crate) fn completes_handshake(&self, seg: &TcpRepr) -> bool {
        self.state == State::SynReceived
            && self.has(PASSIVE)
            && !seg.syn()
            && !seg.rst()
            && seg
                .ack
                .is_some_and(|a| self.snd_una < a && a <= self.snd_max)
            && self.acceptable(seg)
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT (`Some`), or off.
    /// As Linux, the first probe is due `time` after this call or after
    /// the last segment received, whichever is later.
    pub(crate) fn set_keepalive(&mut self, now: Instant, ka: Option<KeepaliveConfig>) {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1);
        match ka {
            Some(k) => {
                self.set(KEEPALIVE);
                self.ka_time_ms = ms(k.time);
                self.ka_intvl_ms = ms(k.intvl);
                self.ka_probes = k.probes;
                self.ka_probes_out = 0;
                self.ka_deadline = (self.state != State::Closed && self.state != State::TimeWait)
                    .then(|| now + k.time);
            }
            None => {
                self.clear(KEEPALIVE | KA_PROBE);
                self.ka_deadline = None;
            }
        }
    }

    /// SO_LINGER: `Some(0)` makes `close` abortive (RST, no TIME_WAIT).
    /// Other timeouts change nothing: `close` never blocks in a sans-IO
    /// engine, and Linux, too, finishes a lingering close in the
    /// background.
    pub(crate) fn set_linger(&mut self, linger: Option<Duration>) {
        if linger == Some(Duration::ZERO) {
            self.set(LINGER0)
        } else {
            self.clear(LINGER0)
        }
    }

    // ------------------------------------------------------------------
    // Segment arrival (RFC 9293 §3.10.7)
    // ------------------------------------------------------------------

    /// Processes one segment addressed to this connection.
    pub(crate) fn on_segment(&mut self, now: Instant, seg: &TcpRepr, ctx: &mut Ctx) {
        match self.state {
            State::Closed | State::Listen => {
                ctx.stats.drop_ignored += 1;
            }
            State::SynSent => self.on_segment_syn_sent(now, seg, ctx),
            _ => self.on_segment_synchronized(now, seg, ctx),
        }
    }

    /// RFC 9293 §3.10.7.3, SYN-SENT.
    fn on_segment_syn_sent(&mut self, now: Instant, seg: &TcpRepr, ctx: &mut Ctx) {
        // First: check the ACK bit.
        if let Some(ack) = seg.ack {
            // "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless
            // the RST bit is set, if so drop the segment and return)
            // <SEQ=SEG.ACK><CTL=RST>".
            if ack <= self.iss || ack > self.snd_max {
                if !seg.rst() {
                    ctx.reset(RstSegment {
                        tuple: self.tuple,
                        seq: ack,
                        ack: None,
                    });
                }
                ctx.stats.drop_ignored += 1;
                return;
            }
        }
        // Second: the RST bit. With an acceptable ACK "signal to the user
        // 'error: connection reset', drop the segment, enter CLOSED";
        // without an ACK drop it (RFC 5961 §3.2 keeps this rule).
        if seg.rst() {
            if seg.ack.is_some() {
                ctx.stats.rst_in += 1;
                self.error = Some(TcpError::ConnectionRefused);
                self.enter_closed();
                self.event(ctx, Event::Refused(ctx.id));
            } else {
                ctx.stats.drop_ignored += 1;
            }
            return;
        }
        // Fourth: the SYN bit.
        if !seg.syn() {
            ctx.stats.drop_ignored += 1;
            return;
        }
        // PAWS against a TS.Recent inherited from the TIME_WAIT incarnation
        // this one reuses (RFC 7323 §5, Linux tcp_tw_reuse): an older
        // timestamp marks an old duplicate SYN,ACK.
        if let (true, Some(ts)) = (self.has(TS_RECENT), seg.options.timestamps) {
            if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                ctx.stats.drop_paws += 1;
                return;
            }
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1u32;
        self.last_ack_sent = self.rcv_nxt;
        self.negotiate(now, ctx.cfg, seg);
        // Our SYN offered this window (unscaled); it now counts from RCV.NXT.
        self.rcv_adv = self.rcv_nxt + self.rcv.free().min(65_535);
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        match seg.ack {
            Some(ack) => {
                // "If SND.UNA > ISS (our SYN has been ACKed), change the
                // connection state to ESTABLISHED, form an ACK segment
                // <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and send it."
                self.snd_wl2 = ack;
                self.ack_advances(now, ack, seg, ctx);
                self.set(ACK_NOW);
                self.establish(ctx);
                // "Data or controls that were queued for transmission may be
                // included"; data in the SYN,ACK is processed as in
                // ESTABLISHED (sixth and seventh steps).
                let kept = self.receive_data(now, seg.seq + 1u32, seg.payload, ctx);
                if seg.fin() && kept {
                    self.on_fin(now, seg.seq + 1u32 + seg.payload.len(), ctx);
                }
            }
            None => {
                // Simultaneous open: "enter SYN-RECEIVED, form a SYN,ACK
                // segment <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> and send it."
                self.state = State::SynReceived;
                self.snd_nxt = self.iss;
                self.rtt_start = None;
                self.rtx_deadline = None;
            }
        }
    }

    /// SYN-RECEIVED → ESTABLISHED (or FIN-WAIT-1 if the application already
    /// shut down its side).
    fn establish(&mut self, ctx: &mut Ctx) {
        ctx.stats.established += 1;
        self.state = if self.has(FIN_QUEUED) {
            State::FinWait1
        } else {
            State::Established
        };
        if !self.has(PASSIVE) {
            self.event(ctx, Event::Connected(ctx.id));
        }
    }

    /// RFC 9293 §3.10.7.4 (first step): the four-case acceptability test.
    fn acceptable(&self, seg: &TcpRepr) -> bool {
        let len = seg.seq_len() as u32;
        let wnd = self.rcv_wnd();
        let (nxt, seq) = (self.rcv_nxt, seg.seq);
        match (len, wnd) {
            (0, 0) => seq == nxt,
            (0, _) => seq.in_range(nxt, nxt + wnd),
            (_, 0) => false,
            _ => seq.in_range(nxt, nxt + wnd) || (seq + (len - 1)).in_range(nxt, nxt + wnd),
        }
    }

    /// Whether an invalid segment (out of window, or failing PAWS) may be
    /// answered with an ACK now (Linux `tcp_oow_rate_limited`): data or FIN
    /// without SYN always (not an ACK loop); anything else at most once per
    /// `tcp_invalid_ratelimit`, which ends ACK loops between two ends that
    /// disagree about the sequence space (each taking the other's ACKs for
    /// invalid ones and answering them).
    fn oow_ack_allowed(&mut self, now: Instant, seg: &TcpRepr, cfg: &TcpConfig) -> bool {
        if seg.seq_len() > 0 && !seg.syn() {
            return true;
        }
        oow_ack_allowed(&mut self.last_oow_ack, now, cfg.tcp_invalid_ratelimit)
    }

    fn on_segment_synchronized(&mut self, now: Instant, seg: &TcpRepr, ctx: &mut Ctx) {
        // RFC 7323 §5.3 R1 (PAWS): a segment whose TSval is older than
        // TS.Recent is a duplicate from an earlier wrap; drop it and ACK.
        if let (true, Some(ts)) = (self.has(TS) && self.has(TS_RECENT), seg.options.timestamps) {
            if !seg.rst() && (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                if now.saturating_since(self.ts_recent_age) > PAWS_IDLE {
                    // RFC 7323 §5.5: TS.Recent is too old to be trusted.
                    self.clear(TS_RECENT);
                } else {
                    ctx.stats.drop_paws += 1;
                    if self.oow_ack_allowed(now, seg, ctx.cfg) {
                        self.set(ACK_NOW);
                    } else {
                        ctx.stats.ack_skipped_paws += 1;
                    }
                    return;
                }
            }
        }
        // SYN-RECEIVED: a retransmitted SYN means our SYN,ACK was lost.
        if self.state == State::SynReceived
            && seg.syn()
            && !seg.rst()
            && seg.ack.is_none()
            && seg.seq == self.irs
        {
            self.snd_nxt = self.iss;
            return;
        }
        // First: sequence number acceptability (RFC 9293 §3.10.7.4).
        let mut seg = *seg;
        if !self.acceptable(&seg) {
            if !seg.rst() && self.rcv_wnd() == 0 && seg.seq == self.rcv_nxt {
                // "If the RCV.WND is zero, no segments will be acceptable,
                // but special allowance should be made to accept valid ACKs,
                // URGs, and RSTs": keep the ACK, drop text and FIN — except
                // a bare FIN at RCV.NXT, which needs no buffer space (Linux
                // accepts it too).
                let bare_fin = seg.fin() && seg.payload.is_empty();
                seg.payload = &[];
                if !bare_fin {
                    seg.flags &= !FIN;
                    ctx.stats.drop_out_of_window += 1;
                }
                self.set(ACK_NOW);
            } else {
                // "If an incoming segment is not acceptable, an
                // acknowledgment should be sent in reply (unless the RST bit
                // is set)": <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, at most one
                // per `tcp_invalid_ratelimit` for segments without data.
                if !seg.rst() {
                    if self.oow_ack_allowed(now, &seg, ctx.cfg) {
                        self.set(ACK_NOW);
                    } else {
                        ctx.stats.ack_skipped_seq += 1;
                    }
                }
                if seg.seq_len() > 0 && seg.seq.diff(self.rcv_nxt) < 0 {
                    ctx.stats.dup_segments += 1;
                } else {
                    ctx.stats.drop_out_of_window += 1;
                }
                return;
            }
        }
        // The peer is alive (keepalive, Linux rcv_tstamp/probes_out).
        self.last_rcv = now;
        self.ka_probes_out = 0;
        // RFC 7323 §4.3 (R3): remember the timestamp to echo.
        if let (true, Some(ts)) = (self.has(TS), seg.options.timestamps) {
            if (!self.has(TS_RECENT) || (ts.tsval.wrapping_sub(self.ts_recent) as i32) >= 0)
                && seg.seq <= self.last_ack_sent
            {
                self.ts_recent = ts.tsval;
                self.ts_recent_age = now;
                self.set(TS_RECENT);
            }
        }
        // Second: the RST bit (RFC 5961 §3.2): reset only on an exact match
        // with RCV.NXT; an in-window RST gets a challenge ACK.
        if seg.rst() {
            if self.state == State::TimeWait && ctx.cfg.tcp_rfc1337 {
                // RFC 1337 §3: "ignore RST segments in TIME-WAIT state".
                ctx.stats.drop_ignored += 1;
            } else if seg.seq == self.rcv_nxt {
                self.on_reset(ctx);
            } else {
                ctx.stats.challenge_acks += 1;
                self.set(ACK_NOW);
            }
            return;
        }
        // Fourth: the SYN bit (RFC 5961 §4.2): any SYN in a synchronized
        // state (or a new SYN in SYN-RECEIVED) gets a challenge ACK.
        if seg.syn() {
            ctx.stats.challenge_acks += 1;
            self.set(ACK_NOW);
            return;
        }
        // Fifth: the ACK field. "If the ACK bit is off, drop the segment."
        let Some(ack) = seg.ack else {
            ctx.stats.drop_no_ack += 1;
            return;
        };
        if self.state == State::SynReceived {
            if self.snd_una < ack && ack <= self.snd_max {
                // "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED
                // state and continue processing with SND.WND <- SEG.WND,
                // SND.WL1 <- SEG.SEQ, SND.WL2 <- SEG.ACK."
                self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = ack;
                self.establish(ctx);
            } else {
                // "If the segment acknowledgment is not acceptable, form a
                // reset segment <SEQ=SEG.ACK><CTL=RST> and send it."
                ctx.reset(RstSegment {
                    tuple: self.tuple,
                    seq: ack,
                    ack: None,
                });
                return;
            }
        }
        if !self.process_ack(now, ack, &seg, ctx) {
            return;
        }
        match self.state {
            // FIN-WAIT-1: "if the FIN segment is now acknowledged, then
            // enter FIN-WAIT-2 and continue processing in that state."
            State::FinWait1 if self.fin_acked() => {
                self.state = State::FinWait2;
                if self.has(ORPHAN) {
                    self.state_deadline = Some(now + ctx.cfg.tcp_fin_timeout);
                }
            }
            // CLOSING: "if the ACK acknowledges our FIN, then enter the
            // TIME-WAIT state; otherwise, ignore the segment."
            State::Closing if self.fin_acked() => self.enter_time_wait(),
            // LAST-ACK: "If our FIN is now acknowledged, delete the TCB,
            // enter the CLOSED state, and return."
            State::LastAck if self.fin_acked() => {
                self.enter_closed();
                self.event(ctx, Event::Closed(ctx.id));
                return;
            }
            _ => {}
        }
        // Sixth (URG) is ignored: urgent data is delivered inline.
        // Seventh: segment text, in ESTABLISHED, FIN-WAIT-1 and FIN-WAIT-2;
        // in the other states a FIN has been received and text is ignored.
        let mut kept = true;
        if matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) && !seg.payload.is_empty()
        {
            kept = self.receive_data(now, seg.seq, seg.payload, ctx);
            if self.state == State::Closed {
                return;
            }
        }
        // Eighth: the FIN bit.
        if seg.fin() && kept {
            self.on_fin(now, seg.seq + seg.payload.len(), ctx);
        }
    }

    /// RST with SEG.SEQ == RCV.NXT (RFC 9293 §3.10.7.4 second step).
    fn on_reset(&mut self, ctx: &mut Ctx) {
        ctx.stats.rst_in += 1;
        match self.state {
            // SYN-RECEIVED from a passive OPEN: back to LISTEN, i.e. the
            // half-open connection goes away; from an active OPEN
            // (simultaneous open): "connection refused".
            State::SynReceived => {
                if !self.has(PASSIVE) {
                    self.error = Some(TcpError::ConnectionRefused);
                    self.event(ctx, Event::Refused(ctx.id));
                }
            }
            // ESTABLISHED, FIN-WAIT-1/2, CLOSE-WAIT: "any outstanding
            // RECEIVEs and SEND should receive 'reset' responses ... enter
            // the CLOSED state".
            State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                ctx.stats.resets_in += 1;
                self.error = Some(TcpError::ConnectionReset);
                self.event(ctx, Event::Reset(ctx.id));
            }
            // CLOSING, LAST-ACK, TIME-WAIT: "enter the CLOSED state".
            _ => self.event(ctx, Event::Closed(ctx.id)),
        }
        self.enter_closed();
    }

    /// The ACK field in synchronized states (RFC 9293 §3.10.7.4 fifth step,
    /// RFC 5961 §5). Returns false when the segment must be dropped.
    fn process_ack(&mut self, now: Instant, ack: SeqNumber, seg: &TcpRepr, ctx: &mut Ctx) -> bool {
        // RFC 5961 §5.2: "If the ACK acknowledges something not yet sent
        // (SEG.ACK > SND.NXT) then send an ACK, drop the segment."
        if ack > self.snd_max {
            ctx.stats.drop_ack_unsent += 1;
            self.set(ACK_NOW);
            return false;
        }
        // RFC 5961 §5.2: acceptable only if SEG.ACK >= SND.UNA - MAX.SND.WND.
        if ack < self.snd_una - self.max_snd_wnd {
            ctx.stats.challenge_acks += 1;
            self.set(ACK_NOW);
            return false;
        }
        let una_before = self.snd_una;
        let wnd = u32::from(seg.window) << self.snd_wscale;
        let mut new_sack = false;
        if self.has(SACK) && !seg.options.sack.is_empty() {
            new_sack = self.sb.update(
                self.snd_una.max(ack),
                self.snd_max,
                seg.options.sack.as_slice(),
            );
        }
        if ack > self.snd_una {
            self.ack_advances(now, ack, seg, ctx);
        }
        // "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be
        // updated. If (SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and
        // SND.WL2 =< SEG.ACK)), set SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ,
        // and SND.WL2 <- SEG.ACK."
        let mut window_changed = false;
        if ack >= una_before
            && (self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack))
        {
            window_changed = wnd != self.snd_wnd;
            let opened = self.snd_wnd == 0 && wnd > 0;
            self.snd_wnd = wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd);
            if opened {
                // The window reopened: stop probing (RFC 9293 §3.8.6.1).
                self.rtt.reset_backoff();
                if self.has(PERSIST) {
                    self.rtx_deadline = None;
                    self.clear(PERSIST);
                }
            }
        }
        if self.snd_wnd == 0 {
            // A peer answering zero-window probes is alive: "the sending
            // TCP ... MUST NOT close the connection as long as the
            // receiving TCP continues to send acknowledgments".
            self.retries = 0;
        }
        // RFC 5681 §2: a duplicate ACK acknowledges nothing new, carries no
        // data, SYN or FIN, does not change the window, and data is
        // outstanding. RFC 6675 also counts ACKs that SACK new data.
        if ack == una_before
            && self.snd_max > self.snd_una
            && ((seg.payload.is_empty() && !seg.fin() && !window_changed) || new_sack)
        {
            self.on_dup_ack(now, ctx);
        }
        true
    }

    /// SND.UNA < SEG.ACK =< SND.MAX: new data acknowledged.
    fn ack_advances(&mut self, now: Instant, ack: SeqNumber, seg: &TcpRepr, ctx: &mut Ctx) {
        let acked = ack.dist(self.snd_una);
        let smss = u32::from(self.smss);
        // RTT: a timed segment (Karn's rule: never a retransmitted one), or
        // else the echoed timestamp (RFC 7323 §4.1, RTTM).
        if let Some(start) = self.rtt_start.filter(|_| ack >= self.rtt_seq) {
            self.rtt.sample(now.saturating_since(start));
            self.rtt_start = None;
        } else if let (true, Some(ts)) = (self.has(TS), seg.options.timestamps) {
            let ms = self.ts_now(now).wrapping_sub(ts.tsecr);
            if ts.tsecr != 0 && ms < (1 << 30) {
                self.rtt.sample(Duration::from_millis(u64::from(ms)));
            }
        }
        // Remove acknowledged data from the send buffer.
        let acked_to = ack.min(self.data_end());
        if acked_to > self.snd_buf_start {
            self.snd.consume(acked_to.dist(self.snd_buf_start) as usize);
            self.snd_buf_start = acked_to;
            if self.has(WRITE_BLOCKED) {
                self.clear(WRITE_BLOCKED);
                self.event(ctx, Event::Writable(ctx.id));
            }
        }
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        if self.high_rxt < ack {
            self.high_rxt = ack;
        }
        self.sb.drop_below(ack);
        self.retries = 0;
        self.dupacks = 0;
        if self.has(RECOVERY) {
            if ack >= self.recover {
                // RFC 6582 §3.2 step 3: a full acknowledgment ends recovery.
                self.clear(RECOVERY | RTX_UNA);
                self.inflation = 0;
                self.cc
                    .on_recovery_exit(self.snd_max.dist(self.snd_una), smss);
            } else if !self.has(SACK) {
                // RFC 6582 §3.2 step 4: partial acknowledgment — retransmit
                // the first unacknowledged segment, deflate cwnd by the
                // amount acknowledged and add back one SMSS.
                self.set(RTX_UNA);
                self.inflation = self.inflation.saturating_sub(acked) + smss;
            }
            // With SACK, RFC 6675 §5 (C) keeps sending by NextSeg.
        } else {
            self.inflation = 0;
            self.cc.on_ack(now, acked, smss, self.rtt.srtt());
            // Keep `recover` within 2^30 of SND.UNA so the comparison in
            // on_dup_ack stays meaningful across wrap-around.
            if self.snd_una.diff(self.recover) > (1 << 30) {
                self.recover = self.snd_una - 1u32;
            }
        }
        // RFC 6298 §5.2: all data acknowledged — stop the timer; §5.3:
        // otherwise restart it.
        self.clear(PERSIST);
        self.rtx_deadline = (self.snd_una != self.snd_max).then(|| now + self.rtt.rto());
    }

    /// Duplicate ACK: fast retransmit / fast recovery (RFC 5681 §3.2,
    /// RFC 6582 §3.2, RFC 6675 §5) and limited transmit (RFC 3042).
    fn on_dup_ack(&mut self, now: Instant, ctx: &mut Ctx) {
        ctx.stats.dup_acks += 1;
        self.dupacks = self.dupacks.saturating_add(1);
        let smss = u32::from(self.smss);
        if self.has(RECOVERY) {
            // RFC 5681 §3.2 step 4: inflate cwnd by SMSS per dup ACK
            // (NewReno only; SACK recovery uses the pipe estimate).
            if !self.has(SACK) {
                self.inflation = self.inflation.saturating_add(smss);
            }
            return;
        }
        let lost = self.has(SACK) && self.sb.is_lost(self.snd_una, smss);
        // RFC 6582 §3.2 step 2: only when the cumulative ACK covers more
        // than `recover` (no false fast retransmit after an RTO).
        if (u32::from(self.dupacks) >= super::sack::DUP_THRESH || lost)
            && self.snd_una > self.recover
        {
            let flight = self.snd_max.dist(self.snd_una);
            self.set(RECOVERY | RTX_UNA);
            self.recover = self.snd_max;
            self.high_rxt = self.snd_una;
            self.cc.on_congestion_event(now, flight, smss);
            // RFC 5681 §3.2 step 3: cwnd = ssthresh + 3*SMSS.
            self.inflation = if self.has(SACK) { 0 } else { 3 * smss };
            self.rtt_start = None;
            ctx.stats.fast_retransmits += 1;
        } else if u32::from(self.dupacks) < super::sack::DUP_THRESH {
            // RFC 3042: send one new segment for each of the first two dup
            // ACKs.
            self.inflation = u32::from(self.dupacks) * smss;
        }
    }

    /// Seventh step: data in a segment (already known to be acceptable).
    /// Returns false when the tail of the segment was cut off by the window
    /// (so a FIN on it must not be processed yet).
    fn receive_data(&mut self, now: Instant, seq: SeqNumber, data: &[u8], ctx: &mut Ctx) -> bool {
        if data.is_empty() {
            return true;
        }
        let (mut seq, mut data) = (seq, data);
        if seq < self.rcv_nxt {
            // Trim what we already have (RFC 9293 §3.10.7.4: "segments with
            // higher beginning sequence numbers ... may be held").
            let skip = self.rcv_nxt.dist(seq) as usize;
            let Some(rest) = data.get(skip..).filter(|r| !r.is_empty()) else {
                ctx.stats.dup_segments += 1;
                self.set(ACK_NOW);
                return true;
            };
            data = rest;
            seq = self.rcv_nxt;
        }
        if self.has(ORPHAN) {
            // Nobody will read this: reset, as Linux does for data arriving
            // after close() (RFC 2525 §2.17; TCPAbortOnData).
            ctx.stats.abort_on_data += 1;
            ctx.reset(RstSegment {
                tuple: self.tuple,
                seq: self.snd_max,
                ack: None,
            });
            self.enter_closed();
            return false;
        }
        let limit = self.rcv_wnd().min(self.rcv.free()) as usize;
        let off = seq.dist(self.rcv_nxt) as usize;
        if off >= limit {
            self.set(ACK_NOW);
            return false;
        }
        let keep = data.len().min(limit - off);
        let whole = keep == data.len();
        let data = &data[..keep];
        if off == 0 {
            let before = self.rcv_nxt;
            let (nxt, filled) = self.rcv.push_in_order(self.rcv_nxt, data);
            self.rcv_nxt = nxt;
            ctx.stats.bytes_in += u64::from(nxt.dist(before));
            self.rcv_mss = self
                .rcv_mss
                .max(u16::try_from(data.len()).unwrap_or(u16::MAX));
            self.unacked_bytes = self.unacked_bytes.saturating_add(data.len() as u32);
            // RFC 5681 §4.2: ACK at least every second full-sized segment,
            // and at once when a segment fills a hole; RFC 9293 §3.8.6.3:
            // otherwise delay the ACK (here 40 ms, Linux's minimum).
            if filled || self.rcv.has_ooo() || self.unacked_bytes >= 2 * u32::from(self.rcv_mss) {
                self.set(ACK_NOW);
            } else if self.delack_deadline.is_none() {
                self.delack_deadline = Some(now + ctx.cfg.delayed_ack);
            }
            if !self.has(READ_NOTIFIED) {
                self.set(READ_NOTIFIED);
                self.event(ctx, Event::Readable(ctx.id));
            }
            if self.fin_ooo == Some(self.rcv_nxt) {
                self.on_fin(now, self.rcv_nxt, ctx);
            }
        } else {
            if self.rcv.insert_ooo(self.rcv_nxt, seq, data) {
                ctx.stats.ooo_segments += 1;
            } else {
                ctx.stats.drop_ooo_full += 1;
            }
            // RFC 5681 §4.2: an out-of-order segment is ACKed at once.
            self.set(ACK_NOW);
        }
        whole
    }

    /// Eighth step: a FIN at `fin_seq`.
    fn on_fin(&mut self, now: Instant, fin_seq: SeqNumber, ctx: &mut Ctx) {
        self.set(ACK_NOW);
        if self.has(FIN_RCVD) {
            // Retransmitted FIN: ACK it (TIME-WAIT itself is handled by
            // the engine's table).
            return;
        }
        if fin_seq != self.rcv_nxt {
            if fin_seq > self.rcv_nxt {
                // Hold it until the data before it arrives.
                self.fin_ooo = Some(fin_seq);
            }
            return;
        }
        // "advance RCV.NXT over the FIN, and send an acknowledgment".
        self.rcv_nxt += 1;
        self.fin_ooo = None;
        self.set(FIN_RCVD);
        self.event(ctx, Event::PeerClosed(ctx.id));
        if !self.has(READ_NOTIFIED) {
            self.set(READ_NOTIFIED);
            self.event(ctx, Event::Readable(ctx.id));
        }
        match self.state {
            // SYN-RECEIVED / ESTABLISHED: "Enter the CLOSE-WAIT state."
            State::SynReceived | State::Established => {
                self.state = State::CloseWait;
                self.state_since = now;
                if let Some(d) = ctx.cfg.close_wait_warn {
                    self.state_deadline = Some(now + d);
                    self.set(CW_WARN);
                }
            }
            // FIN-WAIT-1: "If our FIN has been ACKed ... enter TIME-WAIT ...;
            // otherwise, enter the CLOSING state" (simultaneous close).
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait();
                } else {
                    self.state = State::Closing;
                }
            }
            // FIN-WAIT-2: "Enter the TIME-WAIT state."
            State::FinWait2 => self.enter_time_wait(),
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    /// Runs the timers that are due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant, ctx: &mut Ctx) {
        if self.state_deadline.is_some_and(|t| t <= now) {
            self.state_deadline = None;
            // An orphan in FIN-WAIT-2 gives up after tcp_fin_timeout
            // (silently, as Linux's FIN_WAIT2 timewait sockets).
            if self.state == State::FinWait2 && self.has(ORPHAN) {
                self.enter_closed();
                return;
            }
            if self.state == State::CloseWait && self.has(CW_WARN) {
                self.clear(CW_WARN);
                let listener = (self.origin != u32::MAX).then_some(ListenerId(self.origin));
                ctx.warnings.push(
                    now,
                    Warning::CloseWaitTooLong {
                        id: ctx.id,
                        tuple: self.tuple,
                        listener,
                        age: now.saturating_since(self.state_since),
                    },
                    ctx.stats,
                );
            }
        }
        if self.ka_deadline.is_some_and(|t| t <= now) {
            self.ka_deadline = None;
            if self.on_keepalive_timer(now, ctx) {
                return;
            }
        }
        if self.delack_deadline.is_some_and(|t| t <= now) {
            self.delack_deadline = None;
            self.set(ACK_NOW);
        }
        if self.rtx_deadline.is_some_and(|t| t <= now) {
            self.rtx_deadline = None;
            if self.has(PERSIST) {
                // RFC 9293 §3.8.6.1: the persist timer sends a probe and
                // backs off. A peer that answers probes is never timed out
                // (ACKs reset `retries`); one that stays silent is, after
                // tcp_retries2 probes (as Linux's tcp_probe_timer).
                self.clear(PERSIST);
                if self.retries >= ctx.cfg.tcp_retries2 {
                    ctx.stats.abort_on_timeout += 1;
                    self.error = Some(TcpError::TimedOut);
                    self.event(ctx, Event::TimedOut(ctx.id));
                    self.enter_closed();
                    return;
                }
                self.retries += 1;
                self.set(FORCE);
                self.rtt.back_off();
                ctx.stats.persist_probes += 1;
            } else {
                self.on_rto(now, ctx);
            }
        }
    }

    /// The keepalive timer (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6; Linux
    /// `tcp_keepalive_timer`). Returns true when the connection died.
    fn on_keepalive_timer(&mut self, now: Instant, ctx: &mut Ctx) -> bool {
        if !self.has(KEEPALIVE) || !self.state.is_synchronized() || self.state == State::TimeWait {
            return false;
        }
        let time = Duration::from_millis(u64::from(self.ka_time_ms));
        let intvl = Duration::from_millis(u64::from(self.ka_intvl_ms));
        // Data in flight or queued: the retransmission timer watches the
        // peer; look again later.
        if self.snd_una != self.snd_max || self.data_end() != self.snd_nxt {
            self.ka_deadline = Some(now + time);
            return false;
        }
        let idle = now.saturating_since(self.last_rcv);
        if idle < time {
            self.ka_deadline = Some(self.last_rcv + time);
            return false;
        }
        if self.ka_probes_out >= self.ka_probes {
            // Dead peer: reset it (as Linux) and report the timeout.
            ctx.stats.abort_on_timeout += 1;
            ctx.reset(RstSegment {
                tuple: self.tuple,
                seq: self.snd_max,
                ack: None,
            });
            self.error = Some(TcpError::TimedOut);
            self.event(ctx, Event::TimedOut(ctx.id));
            self.enter_closed();
            return true;
        }
        self.ka_probes_out += 1;
        ctx.stats.keepalive_probes += 1;
        self.set(KA_PROBE);
        self.ka_deadline = Some(now + intvl);
        false
    }

    /// Retransmission timeout (RFC 6298 §5.4–§5.6, RFC 5681 §3.1).
    fn on_rto(&mut self, now: Instant, ctx: &mut Ctx) {
        let limit = match self.state {
            State::SynSent => ctx.cfg.tcp_syn_retries,
            State::SynReceived => ctx.cfg.tcp_synack_retries,
            _ => ctx.cfg.tcp_retries2,
        };
        if self.snd_una == self.snd_max {
            return;
        }
        if self.retries >= limit {
            // RFC 9293 §3.8.3 (R2): give up.
            ctx.stats.abort_on_timeout += 1;
            self.error = Some(TcpError::TimedOut);
            if !(self.state == State::SynReceived && self.has(PASSIVE)) {
                self.event(ctx, Event::TimedOut(ctx.id));
            }
            self.enter_closed();
            return;
        }
        ctx.stats.rto_timeouts += 1;
        let smss = u32::from(self.smss);
        let zero_window = self.state.is_synchronized() && self.snd_wnd == 0;
        if zero_window {
            // The outstanding byte is a window probe, not congestion.
            self.set(FORCE);
            ctx.stats.persist_probes += 1;
        } else if self.retries == 0 {
            // RFC 5681 §3.1: ssthresh from FlightSize on the first timeout
            // ("held constant" on later ones), cwnd = 1 SMSS.
            self.cc.on_rto(now, self.snd_max.dist(self.snd_una), smss);
        }
        self.retries += 1;
        // §5.5: back off; §5.6: restart the timer; retransmit from SND.UNA
        // (go-back-N; SACK information is discarded, RFC 6675 §5.1).
        self.rtt.back_off();
        self.snd_nxt = self.snd_una;
        self.rtt_start = None;
        self.dupacks = 0;
        self.inflation = 0;
        self.clear(RECOVERY | RTX_UNA);
        self.recover = self.snd_max;
        self.high_rxt = self.snd_una;
        self.sb.clear();
        self.rtx_deadline = Some(now + self.rtt.rto());
    }

    // ------------------------------------------------------------------
    // Transmission
    // ------------------------------------------------------------------

    /// RFC 9293 §3.8.6.2.2 (receiver SWS avoidance): the right edge moves
    /// only by at least min(RCV.BUFF / 2, Eff.snd.MSS), and never left.
    fn advertise_window(&mut self) -> u16 {
        let scale = self.rcv_wscale;
        let free = self.rcv.free().min(65_535 << scale);
        let cur = self.rcv_wnd();
        let threshold = (self.rcv.capacity() / 2)
            .min(u32::from(self.rcv_mss))
            .max(1);
        let wnd = if free >= cur.saturating_add(threshold) {
            free
        } else {
            cur
        };
        let field = (wnd >> scale).min(65_535) as u16;
        let edge = self.rcv_nxt + (u32::from(field) << scale);
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
        field
    }

    /// Writes one segment into `buf`: `payload_len` bytes of the send
    /// buffer starting at `seq` (none for SYN). Returns (segment length,
    /// payload bytes written).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        now: Instant,
        ctx: &mut Ctx,
        buf: &mut [u8],
        seq: SeqNumber,
        flags: u8,
        payload_len: usize,
        fin: bool,
    ) -> Option<(usize, usize)> {
        let syn = flags & SYN != 0;
        let cfg = ctx.cfg;
        let mut options = TcpOptions::default();
        let tsval = self.ts_now(now);
        let window = if syn {
            let w = self.rcv.free().min(65_535);
            self.rcv_adv = self.rcv_nxt + w;
            // Options of a SYN: offer what is configured; of a SYN,ACK:
            // what was negotiated (RFC 7323 §2.2, §3.2; RFC 2018 §2).
            let active = self.state == State::SynSent;
            let offer = |f: u32, on: bool| if active { on } else { self.flags & f != 0 };
            options.mss = Some(cfg.mss);
            if offer(WS, cfg.tcp_window_scaling) {
                options.window_scale = Some(self.rcv_wscale);
            }
            options.sack_permitted = offer(SACK, cfg.tcp_sack);
            if offer(TS, cfg.tcp_timestamps) {
                let tsecr = if active { 0 } else { self.ts_recent };
                options.timestamps = Some(Timestamps { tsval, tsecr });
            }
            w as u16
        } else {
            if self.has(TS) {
                options.timestamps = Some(Timestamps {
                    tsval,
                    tsecr: self.ts_recent,
                });
            }
            if self.has(SACK) && self.rcv.has_ooo() {
                let n = if self.has(TS) { 3 } else { 4 };
                self.rcv.sack_blocks(n, |l, r| {
                    options.sack.push(l, r);
                });
            }
            self.advertise_window()
        };
        let mut repr = TcpRepr {
            src_port: self.tuple.local_port,
            dst_port: self.tuple.remote_port,
            seq,
            ack: (self.state != State::SynSent).then_some(self.rcv_nxt),
            flags,
            window,
            urgent: 0,
            options,
            payload: &[],
        };
        let hlen = repr.header_len();
        let room = buf
            .len()
            .checked_sub(hlen)?
            .min(usize::from(u16::MAX) - hlen);
        let plen = payload_len.min(room);
        if fin && plen == payload_len {
            repr.flags |= FIN;
        }
        if plen > 0 {
            repr.flags |= PSH;
        }
        repr.emit_header(buf).ok()?;
        if plen > 0 {
            let off = seq.dist(self.snd_buf_start) as usize;
            let got = self.snd.copy_out(off, &mut buf[hlen..hlen + plen]);
            debug_assert_eq!(got, plen);
        }
        let total = hlen + plen;
        fill_checksum(
            self.tuple.local_addr,
            self.tuple.remote_addr,
            &mut buf[..total],
        );
        if repr.ack.is_some() {
            self.last_ack_sent = self.rcv_nxt;
            self.clear(ACK_NOW);
            self.delack_deadline = None;
            self.unacked_bytes = 0;
        }
        ctx.stats.segments_out += 1;
        ctx.stats.bytes_out += plen as u64;
        Some((total, plen))
    }

    /// Sends the sequence range [seq, seq + len) (data, then FIN if the
    /// range reaches it) and does the bookkeeping of SND.NXT/SND.MAX, RTT
    /// timing and the retransmission timer.
    fn send_range(
        &mut self,
        now: Instant,
        ctx: &mut Ctx,
        buf: &mut [u8],
        seq: SeqNumber,
        len: u32,
    ) -> Option<usize> {
        let data_end = self.data_end();
        let payload = data_end.dist(seq).min(len) as usize;
        let fin = self.has(FIN_QUEUED) && seq + payload == data_end && len as usize > payload;
        let (total, sent) = self.emit(now, ctx, buf, seq, 0, payload, fin)?;
        let end = seq + sent + u32::from(fin && sent == payload);
        if seq < self.snd_max {
            ctx.stats.retransmits += 1;
            // Karn's rule: a retransmitted segment is never timed.
            if self.rtt_start.is_some() && self.rtt_seq > seq {
                self.rtt_start = None;
            }
        } else if self.rtt_start.is_none() {
            self.rtt_start = Some(now);
            self.rtt_seq = end;
        }
        if seq == self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        // RFC 6298 §5.1: start the timer if it is not running.
        if self.rtx_deadline.is_none() || self.has(PERSIST) {
            self.clear(PERSIST);
            self.rtx_deadline = Some(now + self.rtt.rto());
        }
        Some(total)
    }

    /// Produces the next segment this connection wants to send, if any.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        ctx: &mut Ctx,
        buf: &mut [u8],
    ) -> Option<usize> {
        match self.state {
            State::Closed | State::Listen => None,
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                // SYN (active OPEN) or SYN,ACK (LISTEN / simultaneous open).
                let (total, _) = self.emit(now, ctx, buf, self.iss, SYN, 0, false)?;
                self.snd_nxt = self.iss + 1u32;
                if self.snd_max < self.snd_nxt {
                    self.snd_max = self.snd_nxt;
                }
                if self.retries == 0 {
                    self.rtt_start = Some(now);
                    self.rtt_seq = self.snd_nxt;
                } else {
                    ctx.stats.retransmits += 1;
                }
                if self.rtx_deadline.is_none() {
                    self.rtx_deadline = Some(now + self.rtt.rto());
                }
                Some(total)
            }
            State::SynSent => None,
            State::SynReceived | State::TimeWait => self.poll_ack(now, ctx, buf),
            _ if self.has(KA_PROBE) => {
                // Keepalive probe (Linux `tcp_xmit_probe_skb`): an old
                // sequence number and no data, so the peer must answer
                // with an ACK.
                self.clear(KA_PROBE);
                let probe = self.snd_una - 1u32;
                self.emit(now, ctx, buf, probe, 0, 0, false)
                    .map(|(total, _)| total)
            }
            _ => self
                .poll_data(now, ctx, buf)
                .or_else(|| self.poll_ack(now, ctx, buf)),
        }
    }

    /// A bare ACK if one is owed. Its sequence number is SND.NXT unless that
    /// lies past the peer's window (after a probe or a go-back-N rewind).
    fn poll_ack(&mut self, now: Instant, ctx: &mut Ctx, buf: &mut [u8]) -> Option<usize> {
        if !self.has(ACK_NOW) {
            return None;
        }
        let wnd_end = self.snd_una + self.snd_wnd;
        let seq = if self.state.is_synchronized() {
            self.snd_max.min(wnd_end)
        } else {
            self.snd_nxt
        };
        self.emit(now, ctx, buf, seq, 0, 0, false)
            .map(|(total, _)| total)
    }

    fn poll_data(&mut self, now: Instant, ctx: &mut Ctx, buf: &mut [u8]) -> Option<usize> {
        let smss = u32::from(self.smss);
        // Fast retransmit of SND.UNA (RFC 5681 §3.2 step 3, RFC 6582 §3.2
        // step 4, RFC 6675 §5 (4.3)), up to the first SACKed byte.
        if self.has(RTX_UNA) {
            self.clear(RTX_UNA);
            if self.snd_una < self.snd_max {
                let mut len = self.snd_max.dist(self.snd_una).min(smss);
                if let Some(&(l, _)) = self.sb.ranges().first() {
                    len = len.min(l.dist(self.snd_una)).max(1);
                }
                let una = self.snd_una;
                let total = self.send_range(now, ctx, buf, una, len)?;
                self.high_rxt = self.high_rxt.max(una + len);
                return Some(total);
            }
        }
        let sack_recovery = self.has(RECOVERY) && self.has(SACK);
        let pipe = if sack_recovery {
            self.sb
                .pipe(self.snd_una, self.snd_max, self.high_rxt, smss)
        } else {
            self.snd_nxt.dist(self.snd_una)
        };
        let cwnd = self.cc.cwnd().saturating_add(self.inflation);
        // RFC 6675 §5 (C): while cwnd - pipe >= 1 SMSS, NextSeg rule (1):
        // retransmit the first lost, unSACKed segment above HighRxt.
        if sack_recovery && cwnd.saturating_sub(pipe) >= smss {
            if let Some((s, len)) = self.sb.next_lost(self.high_rxt.max(self.snd_una), smss) {
                let total = self.send_range(now, ctx, buf, s, len)?;
                self.high_rxt = s + len;
                ctx.stats.sack_retransmits += 1;
                return Some(total);
            }
        }
        // New data (or data again after a timeout) at SND.NXT, then FIN.
        let data_end = self.data_end();
        let unsent = data_end.dist(self.snd_nxt);
        let fin_unsent = self.has(FIN_QUEUED) && self.snd_nxt <= data_end;
        if unsent == 0 && !fin_unsent {
            self.clear(FORCE);
            return None;
        }
        let force = self.has(FORCE);
        let wnd_avail = (self.snd_una + self.snd_wnd).dist(self.snd_nxt);
        let avail = cwnd.saturating_sub(pipe).min(wnd_avail);
        let len = unsent.min(smss).min(avail);
        let idle = self.snd_una == self.snd_max;
        let resend = self.snd_nxt < self.snd_max;
        let push = idle || self.has(NODELAY) || self.has(FIN_QUEUED);
        let send = if unsent == 0 {
            // A FIN on its own.
            true
        } else if len == 0 {
            false
        } else {
            // RFC 9293 §3.7.4 (Nagle) and §3.8.6.2.1 (sender SWS
            // avoidance): send a full segment, or all that is queued when
            // nothing is outstanding (or Nagle is off), or at least half
            // the largest window the peer has offered.
            len == smss
                || resend
                || force
                || (len == unsent && push)
                || (push && len >= self.max_snd_wnd / 2)
        };
        if !send {
            if force && len == 0 {
                // Zero-window probe (RFC 9293 §3.8.6.1). As Linux does, it
                // carries an old sequence number (SND.UNA - 1) and no data,
                // so the peer must answer with an ACK showing its window
                // and nothing lies beyond the window afterwards.
                self.clear(FORCE);
                let probe = self.snd_una - 1u32;
                let (total, _) = self.emit(now, ctx, buf, probe, 0, 0, false)?;
                self.set(PERSIST);
                self.rtx_deadline = Some(now + self.rtt.rto());
                return Some(total);
            }
            // Nothing in flight and nothing sendable: the persist timer
            // makes sure the window is probed (RFC 9293 §3.8.6.1) and
            // overrides SWS avoidance eventually (§3.8.6.2.1).
            if idle && self.rtx_deadline.is_none() {
                self.set(PERSIST);
                self.rtx_deadline = Some(now + self.rtt.rto());
            }
            return None;
        }
        self.clear(FORCE);
        let with_fin = u32::from(self.has(FIN_QUEUED) && len == unsent);
        let nxt = self.snd_nxt;
        self.send_range(now, ctx, buf, nxt, len + with_fin)
    }

    // ------------------------------------------------------------------
    // Application calls
    // ------------------------------------------------------------------

    /// RECEIVE (RFC 9293 §3.10.3).
    pub(crate) fn read(&mut self, dst: &mut [u8]) -> Result<usize, TcpError> {
        self.clear(READ_NOTIFIED);
        let n = self.rcv.read(dst);
        if n > 0 {
            // Window update if the window at least doubles and grows by the
            // SWS threshold (RFC 9293 §3.8.6.2.2; Linux's rule).
            let free = self.rcv.free().min(65_535 << self.rcv_wscale);
            let cur = self.rcv_wnd();
            let threshold = (self.rcv.capacity() / 2)
                .min(u32::from(self.rcv_mss))
                .max(1);
            if self.state.is_synchronized()
                && !self.has(FIN_RCVD)
                && free >= cur.saturating_add(threshold)
                && free >= cur.saturating_mul(2)
            {
                self.set(ACK_NOW);
            }
            return Ok(n);
        }
        if dst.is_empty() {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.has(FIN_RCVD) || self.state == State::Closed {
            return Ok(0);
        }
        Err(TcpError::WouldBlock)
    }

    /// Bytes ready to read.
    pub(crate) fn readable(&self) -> usize {
        self.rcv.len()
    }

    /// SEND (RFC 9293 §3.10.2).
    pub(crate) fn write(&mut self, src: &[u8]) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(if e == TcpError::ConnectionReset {
                TcpError::BrokenPipe
            } else {
                e
            });
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Listen => return Err(TcpError::InvalidState),
            _ => return Err(TcpError::BrokenPipe),
        }
        if self.has(FIN_QUEUED) {
            return Err(TcpError::BrokenPipe);
        }
        let n = self.snd.write(src);
        if n < src.len() {
            self.set(WRITE_BLOCKED);
        }
        if n == 0 && !src.is_empty() {
            return Err(TcpError::WouldBlock);
        }
        Ok(n)
    }

    /// Room in the send buffer.
    pub(crate) fn writable(&self) -> usize {
        self.snd.free()
    }

    /// CLOSE of the send direction only (half-close, RFC 9293 §3.10.4).
    pub(crate) fn shutdown(&mut self) -> Result<(), TcpError> {
        match self.state {
            // "queue this until all preceding SENDs have been segmentized,
            // then form a FIN segment and send it. In any case, enter
            // FIN-WAIT-1 state."
            State::Established => {
                self.set(FIN_QUEUED);
                self.state = State::FinWait1;
            }
            // CLOSE-WAIT: "Queue this request until all preceding SENDs have
            // been segmentized; then send a FIN segment, enter LAST-ACK."
            State::CloseWait => {
                self.set(FIN_QUEUED);
                self.state = State::LastAck;
            }
            // Not yet established: the FIN waits for ESTABLISHED.
            State::SynSent | State::SynReceived => self.set(FIN_QUEUED),
            State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck
            | State::TimeWait => {}
            State::Listen => return Err(TcpError::InvalidState),
            State::Closed => return Err(self.error.unwrap_or(TcpError::InvalidState)),
        }
        Ok(())
    }

    /// The application gives up its handle. Returns true when the block
    /// can be freed now; otherwise the connection finishes on its own.
    pub(crate) fn close(&mut self, now: Instant, ctx: &mut Ctx) -> bool {
        if self.has(LINGER0) && self.state != State::Closed {
            // SO_LINGER 0: abortive close (RST, no TIME_WAIT), as Linux's
            // tcp_close → tcp_disconnect (TCPAbortOnLinger).
            ctx.stats.abort_on_linger += 1;
            self.abort(ctx);
            return true;
        }
        if !self.rcv.is_empty()
            && matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
            )
        {
            // RFC 2525 §2.17: closing with unread data resets the
            // connection (as Linux does) so the peer learns data was lost
            // (TCPAbortOnClose); the data is discarded.
            ctx.stats.abort_on_close += 1;
            self.rcv = RecvBuffer::new(0);
            self.abort(ctx);
            return true;
        }
        self.set(ORPHAN);
        match self.state {
            State::Closed | State::Listen => true,
            // SYN-SENT: "Delete the TCB".
            State::SynSent => {
                self.enter_closed();
                true
            }
            State::SynReceived | State::Established | State::CloseWait => {
                let _ = self.shutdown();
                false
            }
            State::FinWait2 => {
                self.state_deadline = Some(now + ctx.cfg.tcp_fin_timeout);
                false
            }
            _ => false,
        }
    }

    /// ABORT (RFC 9293 §3.10.5): RST in SYN-RECEIVED, ESTABLISHED,
    /// FIN-WAIT-1/2 and CLOSE-WAIT (<SEQ=SND.NXT><CTL=RST>); silently
    /// otherwise. The block can be freed afterwards.
    pub(crate) fn abort(&mut self, ctx: &mut Ctx) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            let seq = self
                .snd_max
                .min(self.snd_una + self.snd_wnd)
                .max(self.snd_una);
            ctx.reset(RstSegment {
                tuple: self.tuple,
                seq,
                ack: None,
            });
        }
        self.error = Some(TcpError::ConnectionAborted);
        self.enter_closed();
    }
}

/// The `tcp_invalid_ratelimit` check on a `last_oow_ack` stamp (engine
/// milliseconds + 1, wrapping; 0 for never), updated when allowed.
pub(crate) fn oow_ack_allowed(last: &mut u32, now: Instant, limit: Duration) -> bool {
    let stamp = (now.millis() as u32).wrapping_add(1).max(1);
    if *last != 0 {
        let elapsed = stamp.wrapping_sub(*last) as i32;
        if elapsed >= 0 && u128::from(elapsed as u32) < limit.as_millis() {
            return false;
        }
    }
    *last = stamp;
    true
}
