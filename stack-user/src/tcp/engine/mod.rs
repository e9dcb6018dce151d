//! The engine: demultiplexing, listeners, timers and the application API,
//! in the sans-IO style of quinn-proto. The caller feeds received segments
//! (`on_segment`), drains segments to send (`poll_transmit`), and drives
//! time (`poll_timeout` / `handle_timeout`); the engine never does I/O and
//! never reads a clock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

use std::time::Duration;

use stack_ebpf::cookie::{self, CookieOptions, Flow, Secret, Secrets};

use self::time_wait::{TwEntry, TwTable, NO_HUSK};
use super::config::{KeepaliveConfig, TcpConfig};
use super::error::TcpError;
use super::event::{ConnId, Event, FourTuple, ListenerId, Warning};
use super::isn::IsnGenerator;
use super::ratelimit::TokenBucket;
use super::seq::SeqNumber;
use super::state::State;
use super::stats::Stats;
use super::tcb::{Ctx, RstSegment, Tcb};
use super::time::Instant;
use super::wheel::{TimerId, TimerWheel};
use crate::wire::tcp::{TcpOptions, TcpRepr, Timestamps, ACK, RST, SYN};

pub(crate) mod time_wait;

/// One segment written by [`TcpEngine::poll_transmit`]: the caller wraps
/// `buf[..len]` in an IPv4 header from `src` to `dst` (protocol 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// IPv4 source address (ours).
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// Length of the TCP segment (header, options, payload) in the buffer.
    pub len: usize,
}

/// A keyed multiply-mix hasher for the demultiplexing tables: two
/// multiplications per 4-tuple, keyed from the engine secret so that
/// remote peers cannot aim for one bucket.
#[derive(Clone, Copy, Debug)]
pub struct DemuxHasher {
    h: u64,
}

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for DemuxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.h = (self.h ^ v).wrapping_mul(MUL).rotate_left(29);
    }
    fn finish(&self) -> u64 {
        // MurmurHash3 fmix64 finaliser.
        let mut h = self.h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`DemuxHasher`]s with the engine's key.
#[derive(Clone, Copy, Debug)]
pub struct DemuxBuildHasher {
    key: u64,
}

impl BuildHasher for DemuxBuildHasher {
    type Hasher = DemuxHasher;
    fn build_hasher(&self) -> DemuxHasher {
        DemuxHasher { h: self.key }
    }
}

/// What a timer on the wheel belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKey {
    /// The earliest timer of the control block in this slot.
    Conn(u32),
    /// The 2*MSL timer of a TIME_WAIT entry.
    TimeWait(u32),
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    /// Queued in `dirty`.
    dirty: bool,
    /// The deadline armed on the timer wheel for this slot.
    scheduled: Option<Instant>,
    /// Its wheel handle.
    timer: TimerId,
    tcb: Option<Tcb>,
}

#[derive(Debug)]
struct Listener {
    addr: Ipv4Addr,
    port: u16,
    /// Accept queue bound: min(backlog, somaxconn).
    accept_max: usize,
    /// Half-open connections (SYN-RECEIVED) from this listener: the SYN
    /// queue, bounded by `tcp_max_syn_backlog`.
    pending: usize,
    /// Established connections waiting for `accept`.
    queue: VecDeque<ConnId>,
    /// When this listener last answered with a SYN cookie (Linux
    /// `tcp_synq_overflow`): with `tcp_syncookies` 1, ACKs are checked as
    /// cookies only for two minutes after that (`tcp_synq_no_recent_overflow`).
    last_cookie: Option<Instant>,
}

/// A segment with no connection behind it: an ACK from a TIME_WAIT entry
/// or a SYN-ACK carrying a cookie.
#[derive(Clone, Copy, Debug)]
struct CtlSegment {
    tuple: FourTuple,
    seq: SeqNumber,
    ack: SeqNumber,
    flags: u8,
    window: u16,
    options: TcpOptions,
}

/// Operator warnings, rate-limited as Linux's `net_ratelimit` (a burst of
/// 10, then one per 500 ms).
#[derive(Debug)]
pub(crate) struct Warnings {
    queue: VecDeque<Warning>,
    bucket: TokenBucket,
}

/// Most warnings waiting in the queue.
const MAX_WARNINGS: usize = 1024;

impl Warnings {
    fn new() -> Warnings {
        Warnings {
            queue: VecDeque::new(),
            bucket: TokenBucket::new(Some(super::config::RateLimit {
                per_sec: 2,
                burst: 10,
            })),
        }
    }

    /// Queues `w` unless the rate limit or the queue bound holds it back.
    pub(crate) fn push(&mut self, now: Instant, w: Warning, stats: &mut Stats) {
        if self.queue.len() < MAX_WARNINGS && self.bucket.allow(now) {
            self.queue.push_back(w);
        } else {
            stats.warnings_suppressed += 1;
        }
    }
}

/// Connections per state, like `ss -s` / `ss -tan state X | wc -l`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// ESTABLISHED.
    pub established: usize,
    /// SYN-SENT.
    pub syn_sent: usize,
    /// SYN-RECV (half-open, passive).
    pub syn_recv: usize,
    /// FIN-WAIT-1.
    pub fin_wait1: usize,
    /// FIN-WAIT-2.
    pub fin_wait2: usize,
    /// TIME-WAIT (entries of the TIME_WAIT table).
    pub time_wait: usize,
    /// CLOSE-WAIT.
    pub close_wait: usize,
    /// LAST-ACK.
    pub last_ack: usize,
    /// CLOSING.
    pub closing: usize,
    /// LISTEN (listeners).
    pub listen: usize,
    /// The TIME_WAIT table's bound (`tcp_max_tw_buckets`).
    pub time_wait_max: usize,
    /// Most TIME_WAIT entries held at once since the engine started.
    pub time_wait_high_water: usize,
}

impl StateCounts {
    /// Each count with its name as Linux `ss` prints the state.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> {
        [
            ("ESTAB", self.established),
            ("SYN-SENT", self.syn_sent),
            ("SYN-RECV", self.syn_recv),
            ("FIN-WAIT-1", self.fin_wait1),
            ("FIN-WAIT-2", self.fin_wait2),
            ("TIME-WAIT", self.time_wait),
            ("CLOSE-WAIT", self.close_wait),
            ("LAST-ACK", self.last_ack),
            ("CLOSING", self.closing),
            ("LISTEN", self.listen),
            ("TIME-WAIT-MAX", self.time_wait_max),
            ("TIME-WAIT-HIGH-WATER", self.time_wait_high_water),
        ]
        .into_iter()
    }
}

/// One listener's queues and the CLOSE_WAIT connections it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerStats {
    /// The listener.
    pub id: ListenerId,
    /// Its address (`0.0.0.0` for any).
    pub addr: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// Half-open connections (SYN_RECV): the SYN queue.
    pub syn_queue: usize,
    /// The SYN queue's bound (`tcp_max_syn_backlog`).
    pub syn_queue_max: usize,
    /// Established connections not yet accepted (`ss -lt` Recv-Q).
    pub accept_queue: usize,
    /// The accept queue's bound, min(backlog, somaxconn) (`ss -lt` Send-Q).
    pub accept_queue_max: usize,
    /// Connections from this listener in CLOSE_WAIT: the peer closed, the
    /// application has not.
    pub close_wait: usize,
    /// How long the oldest of them has been in CLOSE_WAIT.
    pub oldest_close_wait: Option<Duration>,
}

const N_STATES: usize = 11;

/// The sans-IO TCP engine.
#[derive(Debug)]
pub struct TcpEngine {
    cfg: TcpConfig,
    isn: IsnGenerator,
    conns: HashMap<FourTuple, u32, DemuxBuildHasher>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    listeners: Vec<Option<Listener>>,
    listen_map: HashMap<(Ipv4Addr, u16), u32, DemuxBuildHasher>,
    events: VecDeque<Event>,
    resets: VecDeque<RstSegment>,
    ctl: VecDeque<CtlSegment>,
    /// Every timer of every connection and TIME_WAIT entry, on one
    /// hierarchical wheel.
    timers: TimerWheel<TimerKey>,
    fired: Vec<TimerKey>,
    dirty: VecDeque<u32>,
    stats: Stats,
    next_port: u32,
    /// `(index, count)`: this engine is queue worker `index` of `count` and
    /// picks only ephemeral ports whose tuple it owns
    /// ([`FourTuple::shard`]).
    shard: (u32, u32),
    tw: TwTable,
    warnings: Warnings,
    rst_bucket: TokenBucket,
    cookie_secrets: Secrets,
    cookie_clock_offset_us: u64,
    /// Control blocks per state (indexed by `State as usize`).
    state_counts: [usize; N_STATES],
    /// The latest time any call passed in.
    clock: Instant,
}

impl std::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IsnGenerator { .. }")
    }
}

impl TcpEngine {
    /// An engine with `config`, keyed with `secret` (random, 128 bits: it
    /// keys the RFC 6528 ISN hash, the demultiplexing hash, the timestamp
    /// offsets and, until [`set_cookie_secrets`](Self::set_cookie_secrets)
    /// is called, the SYN cookies).
    pub fn new(config: TcpConfig, secret: [u8; 16]) -> TcpEngine {
        let isn = IsnGenerator::new(secret);
        let hasher = DemuxBuildHasher {
            key: isn.keyed_hash(b"xstack demux"),
        };
        let cap = config.initial_connections;
        let own = Secret {
            k0: isn.keyed_hash(b"xstack cookie k0"),
            k1: isn.keyed_hash(b"xstack cookie k1"),
        };
        TcpEngine {
            conns: HashMap::with_capacity_and_hasher(cap, hasher),
            slots: Vec::with_capacity(cap),
            free: Vec::new(),
            listeners: Vec::new(),
            listen_map: HashMap::with_hasher(hasher),
            events: VecDeque::new(),
            resets: VecDeque::new(),
            ctl: VecDeque::new(),
            timers: TimerWheel::with_capacity(0, cap),
            fired: Vec::new(),
            dirty: VecDeque::new(),
            stats: Stats::default(),
            next_port: isn.keyed_hash(b"xstack ports") as u32,
            shard: (0, 1),
            tw: TwTable::new(hasher),
            warnings: Warnings::new(),
            rst_bucket: TokenBucket::new(config.rst_ratelimit),
            cookie_secrets: Secrets {
                current: own,
                previous: own,
            },
            cookie_clock_offset_us: 0,
            state_counts: [0; N_STATES],
            clock: Instant::ZERO,
            isn,
            cfg: config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TcpConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Connections the engine holds protocol state for: every state but
    /// CLOSED, TIME_WAIT entries included. A handle the application has
    /// not closed after its connection reached CLOSED (reset, timed out,
    /// finished) holds no protocol state and does not count.
    pub fn connection_count(&self) -> usize {
        let held: usize = self.state_counts.iter().sum();
        held.saturating_sub(self.state_counts[State::Closed as usize]) + self.tw.len()
    }

    /// Connections per state (O(1)), TIME_WAIT table use against its bound.
    pub fn state_counts(&self) -> StateCounts {
        let c = |s: State| self.state_counts[s as usize];
        StateCounts {
            established: c(State::Established),
            syn_sent: c(State::SynSent),
            syn_recv: c(State::SynReceived),
            fin_wait1: c(State::FinWait1),
            fin_wait2: c(State::FinWait2),
            time_wait: self.tw.len(),
            close_wait: c(State::CloseWait),
            last_ack: c(State::LastAck),
            closing: c(State::Closing),
            listen: self.listen_map.len(),
            time_wait_max: self.cfg.tcp_max_tw_buckets,
            time_wait_high_water: self.tw.high_water,
        }
    }

    /// Every listener's queues and CLOSE_WAIT accounting at `now`. Walks
    /// all control blocks (O(connections)): meant for a stats request, not
    /// for every packet.
    pub fn listener_stats(&self, now: Instant) -> Vec<ListenerStats> {
        let mut out: Vec<ListenerStats> = self
            .listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = l.as_ref()?;
                Some(ListenerStats {
                    id: ListenerId(i as u32),
                    addr: l.addr,
                    port: l.port,
                    syn_queue: l.pending,
                    syn_queue_max: self.cfg.tcp_max_syn_backlog,
                    accept_queue: l.queue.len(),
                    accept_queue_max: l.accept_max,
                    close_wait: 0,
                    oldest_close_wait: None,
                })
            })
            .collect();
        for tcb in self.slots.iter().filter_map(|s| s.tcb.as_ref()) {
            if tcb.state != State::CloseWait || tcb.origin == u32::MAX {
                continue;
            }
            if let Some(ls) = out.iter_mut().find(|ls| ls.id.0 == tcb.origin) {
                ls.close_wait += 1;
                let age = now.saturating_since(tcb.state_since);
                ls.oldest_close_wait = Some(ls.oldest_close_wait.map_or(age, |a| a.max(age)));
            }
        }
        out
    }

    /// The next operator warning (TIME_WAIT table overflow, a connection
    /// left in CLOSE_WAIT), for the caller to log.
    pub fn poll_warning(&mut self) -> Option<Warning> {
        self.warnings.queue.pop_front()
    }

    /// Sets the SYN cookie secrets (the same ones the XDP program uses, so
    /// either side validates the other's cookies). Rotate by moving
    /// `current` to `previous`.
    pub fn set_cookie_secrets(&mut self, secrets: Secrets) {
        self.cookie_secrets = secrets;
    }

    /// Aligns the cookie minute counter with the XDP program's: `count =
    /// (now + offset_us) / 60 s`, where `offset_us` is CLOCK_MONOTONIC (in
    /// µs) at the caller's time zero (`bpf_ktime_get_ns` counts
    /// CLOCK_MONOTONIC).
    pub fn set_cookie_clock_offset(&mut self, offset_us: u64) {
        self.cookie_clock_offset_us = offset_us;
    }

    /// Makes this engine queue worker `index` of `count`: [`connect`]
    /// with port 0 then picks only local ports whose 4-tuple
    /// [`FourTuple::shard`] maps to `index`, so that every reply belongs to
    /// this engine whichever queue it arrives on.
    ///
    /// [`connect`]: Self::connect
    pub fn set_shard(&mut self, index: u32, count: u32) {
        self.shard = (index.min(count.max(1) - 1), count.max(1));
    }

    /// The cookie minute counter at `now` (`stack_ebpf::cookie::count_from_ns`
    /// of CLOCK_MONOTONIC).
    pub fn cookie_count(&self, now: Instant) -> u32 {
        cookie::count_from_ns(
            now.micros()
                .wrapping_add(self.cookie_clock_offset_us)
                .saturating_mul(1000),
        )
    }

    // ------------------------------------------------------------------
    // Datapath side
    // ------------------------------------------------------------------

    /// Handles one received TCP segment (`segment` is the IPv4 payload)
    /// from `src` to `dst`. The checksum is verified; malformed segments
    /// are dropped and counted by reason.
    pub fn on_segment(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) {
        self.stats.segments_in += 1;
        match TcpRepr::parse(src, dst, segment) {
            Ok(seg) => self.handle(now, src, dst, &seg),
            Err(e) => {
                if let Some(c) = self.stats.parse_drops.get_mut(e.index()) {
                    *c += 1;
                }
            }
        }
    }

    /// Like [`on_segment`](Self::on_segment) for a segment already parsed
    /// (for example with the checksum checked by the NIC).
    pub fn on_parsed_segment(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr) {
        self.stats.segments_in += 1;
        self.handle(now, src, dst, seg);
    }

    /// The final ACK of a handshake whose SYN-ACK the XDP program answered
    /// with a cookie and whose cookie it has already validated (with the
    /// same secrets, `stack_ebpf::cookie::check`), with the options it
    /// decoded (`decode_ts`, or MSS only without timestamps). Creates the
    /// connection straight in ESTABLISHED, queued on the listener of
    /// `dst`:port; data on the ACK is taken in. The XDP SYN-ACK must have
    /// offered MSS ≤ `TcpConfig::mss` and our window scale
    /// `TcpConfig::rcv_wscale()`. A segment for a connection that already
    /// exists is handled as by `on_segment`, except that it replaces a
    /// half-open request whose SYN-ACK it does not acknowledge (XDP answered
    /// a retransmission of the request's SYN with the cookie). Returns the
    /// new connection.
    pub fn on_cookie_ack(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        segment: &[u8],
        opts: CookieOptions,
    ) -> Option<ConnId> {
        self.stats.segments_in += 1;
        let seg = match TcpRepr::parse(src, dst, segment) {
            Ok(seg) => seg,
            Err(e) => {
                if let Some(c) = self.stats.parse_drops.get_mut(e.index()) {
                    *c += 1;
                }
                return None;
            }
        };
        self.clock = self.clock.max(now);
        let tuple = FourTuple {
            local_addr: dst,
            local_port: seg.dst_port,
            remote_addr: src,
            remote_port: seg.src_port,
        };
        if let Some(twi) = self.tw.lookup(&tuple) {
            // XDP answered a fresh SYN on a 4-tuple we hold in TIME_WAIT
            // (the engine never saw it). Apply RFC 6191 to what the ACK
            // tells of that SYN: its ISN (seq - 1) above the old RCV.NXT, or
            // a newer timestamp, opens the new incarnation as Linux does for
            // a SYN to a TIME_WAIT socket; anything else is TIME_WAIT's.
            let newer = self.tw.get(twi).copied().is_some_and(|e| {
                let isn = seg.seq - 1u32;
                isn.diff(e.rcv_nxt) > 0
                    || (e.has_ts()
                        && seg
                            .options
                            .timestamps
                            .is_some_and(|ts| (e.ts_recent.wrapping_sub(ts.tsval) as i32) < 0))
            });
            if !newer || seg.syn() || seg.rst() || self.find_listener(dst, seg.dst_port).is_none() {
                self.handle(now, src, dst, &seg);
                return None;
            }
            self.stats.time_wait_syn_reopen += 1;
            self.tw_end(twi, true);
        }
        if let Some(&idx) = self.conns.get(&tuple) {
            if !self.cookie_supersedes_request(idx, &seg) {
                self.handle(now, src, dst, &seg);
                return None;
            }
            // The engine answered the client's SYN, that SYN-ACK was lost,
            // and XDP answered the retransmitted SYN with a cookie (cookies
            // came on in between): the client is synchronized on the
            // cookie ISN, which the half-open request would reject with an
            // RST. The validated cookie wins, as the request never
            // completed (Linux never meets this: it sends no cookie while
            // it holds a request for the 4-tuple).
            self.stats.syncookies_replaced_request += 1;
            self.free_slot(idx);
        }
        if seg.syn() || seg.rst() || seg.ack.is_none() {
            self.stats.drop_ignored += 1;
            return None;
        }
        match self.find_listener(dst, seg.dst_port) {
            Some(lid) => self.cookie_establish(now, lid, tuple, &seg, opts),
            None => {
                self.no_socket(now, tuple, &seg);
                None
            }
        }
    }

    /// Whether a cookie ACK (validated by XDP) for a 4-tuple with a
    /// connection replaces it: the connection is a half-open passive
    /// request (SYN_RECEIVED, not yet accepted) whose own SYN-ACK the ACK
    /// does not acknowledge.
    fn cookie_supersedes_request(&self, idx: u32, seg: &TcpRepr) -> bool {
        let Some(tcb) = self.slots.get(idx as usize).and_then(|s| s.tcb.as_ref()) else {
            return false;
        };
        tcb.state == State::SynReceived
            && tcb.is_passive()
            && tcb.listener.is_some()
            && !seg.syn()
            && !seg.rst()
            && seg.ack.is_some()
            && !tcb.completes_handshake(seg)
    }

    fn find_listener(&self, addr: Ipv4Addr, port: u16) -> Option<u32> {
        self.listen_map
            .get(&(addr, port))
            .or_else(|| self.listen_map.get(&(Ipv4Addr::UNSPECIFIED, port)))
            .copied()
    }

    fn handle(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr) {
        self.clock = self.clock.max(now);
        let tuple = FourTuple {
            local_addr: dst,
            local_port: seg.dst_port,
            remote_addr: src,
            remote_port: seg.src_port,
        };
        if let Some(&idx) = self.conns.get(&tuple) {
            if self.accept_queue_refuses(idx, tuple, seg) {
                return;
            }
            self.run(idx, |tcb, ctx| tcb.on_segment(now, seg, ctx));
            return;
        }
        let mut iss = None;
        if let Some(twi) = self.tw.lookup(&tuple) {
            match self.on_time_wait(now, twi, seg) {
                None => return,
                Some(isn) => iss = Some(isn),
            }
        }
        match self.find_listener(dst, seg.dst_port) {
            Some(lid) => {
                if let Some(twi) = self.tw.lookup(&tuple) {
                    // RFC 6191: the SYN opens a new incarnation.
                    self.stats.time_wait_syn_reopen += 1;
                    self.tw_end(twi, true);
                }
                self.on_listen(now, lid, tuple, seg, iss)
            }
            None => match self.tw.lookup(&tuple) {
                // No listener for a SYN that could reopen: TIME_WAIT
                // answers it with its ACK (Linux TCP_TW_SYN → TCP_TW_ACK).
                Some(twi) => self.tw_ack(now, twi),
                None => self.no_socket(now, tuple, seg),
            },
        }
    }

    /// The final ACK of a passive open finds the accept queue full (Linux
    /// `tcp_check_req` → `listen_overflow`): with `tcp_abort_on_overflow`
    /// the half-open connection is reset, otherwise the ACK is dropped and
    /// the SYN-ACK timer goes on, so the handshake completes when the
    /// application has made room. Returns true when the segment was taken.
    fn accept_queue_refuses(&mut self, idx: u32, tuple: FourTuple, seg: &TcpRepr) -> bool {
        let Some(tcb) = self.slots.get(idx as usize).and_then(|s| s.tcb.as_ref()) else {
            return false;
        };
        let Some(lid) = tcb.listener else {
            return false;
        };
        if !tcb.completes_handshake(seg) {
            return false;
        }
        let full = self
            .listeners
            .get(lid as usize)
            .and_then(Option::as_ref)
            .is_some_and(|l| l.queue.len() >= l.accept_max);
        if !full {
            return false;
        }
        if self.accept_overflow(tuple, seg) {
            self.free_slot(idx);
        }
        true
    }

    /// A final ACK found the accept queue full (Linux `listen_overflow`):
    /// counted, and with `tcp_abort_on_overflow` answered with
    /// <SEQ=SEG.ACK><CTL=RST>. Returns whether it was reset (the request
    /// is then dropped too).
    fn accept_overflow(&mut self, tuple: FourTuple, seg: &TcpRepr) -> bool {
        self.stats.listen_overflows += 1;
        self.stats.listen_drops += 1;
        if !self.cfg.tcp_abort_on_overflow {
            return false;
        }
        if let Some(ack) = seg.ack {
            self.queue_reset(RstSegment {
                tuple,
                seq: ack,
                ack: None,
            });
        }
        true
    }

    /// RFC 9293 §3.10.7.1, CLOSED: "An incoming segment not containing a
    /// RST causes a RST to be sent in response": <SEQ=SEG.ACK><CTL=RST> if
    /// the ACK bit is on, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    /// Rate-limited by `rst_ratelimit` so that a scan or a flood to closed
    /// ports cannot turn the engine into an RST cannon.
    fn no_socket(&mut self, now: Instant, tuple: FourTuple, seg: &TcpRepr) {
        self.stats.no_socket += 1;
        if seg.rst() {
            return;
        }
        if !self.rst_bucket.allow(now) {
            self.stats.rst_ratelimited += 1;
            return;
        }
        let rst = match seg.ack {
            Some(ack) => RstSegment {
                tuple,
                seq: ack,
                ack: None,
            },
            None => RstSegment {
                tuple,
                seq: SeqNumber(0),
                ack: Some(seg.seq + seg.seq_len()),
            },
        };
        self.queue_reset(rst);
    }

    fn queue_reset(&mut self, rst: RstSegment) {
        if self.resets.len() >= self.cfg.max_pending_resets {
            self.stats.drop_rst_queue_full += 1;
        } else {
            self.resets.push_back(rst);
        }
    }

    fn queue_ctl(&mut self, c: CtlSegment) {
        if self.ctl.len() >= self.cfg.max_pending_resets {
            self.stats.drop_rst_queue_full += 1;
        } else {
            self.ctl.push_back(c);
        }
    }

    /// Our TSval offset for an address pair (Linux `secure_tcp_ts_off`):
    /// keyed, so it reveals no clock, and the same for every incarnation.
    fn ts_offset(&self, local: Ipv4Addr, remote: Ipv4Addr) -> u32 {
        let mut msg = [0u8; 10];
        msg[..4].copy_from_slice(&local.octets());
        msg[4..8].copy_from_slice(&remote.octets());
        msg[8..].copy_from_slice(b"ts");
        self.isn.keyed_hash(&msg) as u32
    }

    fn flow(tuple: &FourTuple) -> Flow {
        Flow {
            saddr: u32::from(tuple.remote_addr),
            daddr: u32::from(tuple.local_addr),
            sport: tuple.remote_port,
            dport: tuple.local_port,
        }
    }

    /// RFC 9293 §3.10.7.2, LISTEN, with Linux's `tcp_conn_request` queue
    /// rules and SYN cookies. `iss` is set when the SYN reopens a TIME_WAIT
    /// 4-tuple (RFC 6191; Linux uses the old SND.NXT + 65537).
    fn on_listen(
        &mut self,
        now: Instant,
        lid: u32,
        tuple: FourTuple,
        seg: &TcpRepr,
        iss: Option<SeqNumber>,
    ) {
        // "first, check for a RST: an incoming RST should be ignored".
        if seg.rst() {
            self.stats.drop_ignored += 1;
            return;
        }
        // "second, check for an ACK: any acknowledgment is bad ...
        // <SEQ=SEG.ACK><CTL=RST>" — unless it carries a SYN cookie.
        if let Some(ack) = seg.ack {
            if !seg.syn() && self.cookies_expected(now, lid) {
                match self.check_cookie(now, &tuple, seg) {
                    Some(opts) => {
                        self.cookie_establish(now, lid, tuple, seg, opts);
                        return;
                    }
                    None => self.stats.syncookies_failed += 1,
                }
            }
            self.queue_reset(RstSegment {
                tuple,
                seq: ack,
                ack: None,
            });
            return;
        }
        // "third, check for a SYN"; anything else is dropped ("fourth").
        if !seg.syn() {
            self.stats.drop_ignored += 1;
            return;
        }
        let (syn_queue_full, accept_full) = match self.listeners.get(lid as usize) {
            Some(Some(l)) => (
                l.pending >= self.cfg.tcp_max_syn_backlog,
                l.queue.len() >= l.accept_max,
            ),
            _ => return,
        };
        let mut want_cookie = self.cfg.tcp_syncookies >= 2;
        if syn_queue_full && !want_cookie {
            if self.cfg.tcp_syncookies == 1 {
                self.stats.req_q_full_do_cookies += 1;
                want_cookie = true;
            } else {
                self.stats.req_q_full_drop += 1;
                self.stats.listen_drops += 1;
                return;
            }
        }
        // Linux checks the accept queue before answering at all: a SYN is
        // pointless when no established connection could be queued.
        if accept_full {
            self.stats.listen_overflows += 1;
            self.stats.listen_drops += 1;
            return;
        }
        if want_cookie {
            self.send_cookie(now, lid, tuple, seg);
            return;
        }
        if self.slots_in_use() >= self.cfg.max_connections {
            self.stats.drop_conn_limit += 1;
            self.stats.listen_drops += 1;
            return;
        }
        if let Some(Some(l)) = self.listeners.get_mut(lid as usize) {
            l.pending += 1;
        }
        let iss = iss.unwrap_or_else(|| {
            self.isn.isn(
                now,
                tuple.local_addr,
                tuple.local_port,
                tuple.remote_addr,
                tuple.remote_port,
            )
        });
        let ts_off = self.ts_offset(tuple.local_addr, tuple.remote_addr);
        let tcb = Tcb::new_passive(now, &self.cfg, tuple, iss, ts_off, seg, lid);
        self.stats.passive_opens += 1;
        let idx = self.alloc(tcb);
        self.conns.insert(tuple, idx);
        self.mark_dirty(idx);
        self.reschedule(idx);
    }

    /// Whether an ACK to a listener may carry a cookie: always with
    /// `tcp_syncookies` 2; with 1 only within two minutes (the cookie
    /// lifetime) of the listener sending one (Linux
    /// `tcp_synq_no_recent_overflow`), which keeps ACK floods from
    /// guessing at cookies the rest of the time.
    fn cookies_expected(&self, now: Instant, lid: u32) -> bool {
        match self.cfg.tcp_syncookies {
            0 => false,
            1 => self
                .listeners
                .get(lid as usize)
                .and_then(Option::as_ref)
                .and_then(|l| l.last_cookie)
                .is_some_and(|t| {
                    now.saturating_since(t) <= Duration::from_secs(60 * u64::from(cookie::MAX_AGE))
                }),
            _ => true,
        }
    }

    /// Linux `cookie_v4_check` + `cookie_timestamp_decode`: the cookie
    /// (SEG.ACK - 1 against SEG.SEQ - 1), then the options from TSecr.
    fn check_cookie(
        &self,
        now: Instant,
        tuple: &FourTuple,
        seg: &TcpRepr,
    ) -> Option<CookieOptions> {
        let ack = seg.ack?;
        let idx = cookie::check(
            &self.cookie_secrets,
            &Self::flow(tuple),
            seg.seq.get().wrapping_sub(1),
            ack.get().wrapping_sub(1),
            self.cookie_count(now),
        )?;
        let Some(ts) = seg.options.timestamps else {
            // Without timestamps the cookie carries the MSS only.
            return Some(CookieOptions {
                mss: cookie::MSS_TABLE[(idx & 3) as usize],
                wscale: None,
                sack: false,
                ecn: false,
            });
        };
        if !self.cfg.tcp_timestamps {
            return None;
        }
        let o = cookie::decode_ts(ts.tsecr, idx)?;
        if (o.sack && !self.cfg.tcp_sack) || (o.wscale.is_some() && !self.cfg.tcp_window_scaling) {
            return None;
        }
        Some(o)
    }

    /// A SYN-ACK whose ISN is a cookie (Linux `cookie_v4_init_sequence`,
    /// `cookie_init_timestamp`): no state is kept. Without timestamps only
    /// the MSS survives (Linux clears the other options).
    fn send_cookie(&mut self, now: Instant, lid: u32, tuple: FourTuple, syn: &TcpRepr) {
        let peer_mss = syn
            .options
            .mss
            .unwrap_or(cookie::MSS_TABLE[0])
            .min(self.cfg.mss);
        let mss_idx = cookie::mss_index(peer_mss);
        let iss = cookie::generate(
            &self.cookie_secrets.current,
            &Self::flow(&tuple),
            syn.seq.get(),
            self.cookie_count(now),
            mss_idx,
        );
        let mut options = TcpOptions {
            mss: Some(self.cfg.mss),
            ..TcpOptions::default()
        };
        if let (true, Some(ts)) = (self.cfg.tcp_timestamps, syn.options.timestamps) {
            let wscale = syn
                .options
                .window_scale
                .filter(|_| self.cfg.tcp_window_scaling)
                .map(|w| w.min(14));
            let sack = self.cfg.tcp_sack && syn.options.sack_permitted;
            options.window_scale = wscale.map(|_| self.cfg.rcv_wscale());
            options.sack_permitted = sack;
            let clock = (now.millis() as u32)
                .wrapping_add(self.ts_offset(tuple.local_addr, tuple.remote_addr));
            options.timestamps = Some(Timestamps {
                tsval: cookie::encode_ts(clock, wscale, sack, false),
                tsecr: ts.tsval,
            });
        }
        self.queue_ctl(CtlSegment {
            tuple,
            seq: SeqNumber(iss),
            ack: syn.seq + 1u32,
            flags: SYN | ACK,
            window: self.cfg.tcp_rmem.min(65_535) as u16,
            options,
        });
        self.stats.syncookies_sent += 1;
        if let Some(Some(l)) = self.listeners.get_mut(lid as usize) {
            l.last_cookie = Some(now);
        }
    }

    /// A valid cookie ACK: the connection, in ESTABLISHED, on the accept
    /// queue (or refused as `accept_queue_refuses` does).
    fn cookie_establish(
        &mut self,
        now: Instant,
        lid: u32,
        tuple: FourTuple,
        seg: &TcpRepr,
        opts: CookieOptions,
    ) -> Option<ConnId> {
        self.stats.syncookies_recv += 1;
        let full = match self.listeners.get(lid as usize) {
            Some(Some(l)) => l.queue.len() >= l.accept_max,
            _ => return None,
        };
        if full {
            // No state to keep: drop (the client's next segment carries the
            // cookie again) or reset.
            self.accept_overflow(tuple, seg);
            return None;
        }
        if self.slots_in_use() >= self.cfg.max_connections {
            self.stats.drop_conn_limit += 1;
            self.stats.listen_drops += 1;
            return None;
        }
        let mut ts_off = self.ts_offset(tuple.local_addr, tuple.remote_addr);
        if let Some(ts) = seg.options.timestamps {
            // Our TSvals must not fall below the one the cookie SYN-ACK
            // carried (the XDP program's clock may differ from ours), or
            // the peer's PAWS would drop our segments.
            let ours = (now.millis() as u32).wrapping_add(ts_off);
            if (ours.wrapping_sub(ts.tsecr) as i32) < 0 {
                ts_off = ts.tsecr.wrapping_sub(now.millis() as u32);
            }
        }
        let tcb = Tcb::new_cookie(now, &self.cfg, tuple, seg, opts, ts_off, lid);
        self.stats.passive_opens += 1;
        self.stats.established += 1;
        let idx = self.alloc(tcb);
        self.conns.insert(tuple, idx);
        let id = self.id_of(idx);
        if let Some(Some(l)) = self.listeners.get_mut(lid as usize) {
            l.queue.push_back(id);
        }
        self.events.push_back(Event::Incoming(ListenerId(lid)));
        // Data (or a FIN) on the ACK, as in ESTABLISHED.
        self.run(idx, |tcb, ctx| tcb.on_segment(now, seg, ctx));
        Some(id)
    }

    /// A segment for a 4-tuple in TIME_WAIT (Linux
    /// `tcp_timewait_state_process`). Returns the ISN for a new incarnation
    /// when `seg` is a SYN that may reopen the 4-tuple (RFC 6191: its
    /// timestamp is newer, or its sequence number is above the old
    /// RCV.NXT; RFC 1122 §4.2.2.13); otherwise handles it.
    fn on_time_wait(&mut self, now: Instant, twi: u32, seg: &TcpRepr) -> Option<SeqNumber> {
        let e = *self.tw.get(twi)?;
        let seg_ts = seg.options.timestamps.filter(|_| e.has_ts());
        // RFC 7323 §5 (PAWS) on the remembered TS.Recent.
        let paws_reject =
            !seg.rst() && seg_ts.is_some_and(|ts| (ts.tsval.wrapping_sub(e.ts_recent) as i32) < 0);
        if !paws_reject && seg.seq == e.rcv_nxt && (seg.seq_len() == 0 || seg.rst()) {
            // In-window: only an RST or a bare ACK.
            if seg.rst() {
                if !self.cfg.tcp_rfc1337 {
                    // TIME-WAIT assassination (RFC 1337), allowed by
                    // tcp_rfc1337 = 0 as on Linux and in RFC 9293.
                    self.stats.rst_in += 1;
                    self.stats.time_wait_killed += 1;
                    self.tw_end(twi, false);
                    return None;
                }
                // RFC 1337 §3: "ignore RST segments in TIME-WAIT state".
                self.stats.drop_ignored += 1;
            } else {
                self.tw_restart(twi);
            }
            if let (Some(ts), Some(entry)) = (seg_ts, self.tw.get_mut(twi)) {
                entry.ts_recent = ts.tsval;
                entry.ts_recent_stamp = time_wait::stamp(now);
            }
            return None;
        }
        if seg.syn()
            && !seg.rst()
            && seg.ack.is_none()
            && !paws_reject
            && (seg.seq.diff(e.rcv_nxt) > 0
                || seg_ts.is_some_and(|ts| (e.ts_recent.wrapping_sub(ts.tsval) as i32) < 0))
        {
            let mut isn = e.snd_nxt + 65_537u32;
            if isn == SeqNumber(0) {
                isn = SeqNumber(1);
            }
            return Some(isn);
        }
        if paws_reject {
            self.stats.drop_paws += 1;
        }
        if seg.rst() {
            self.stats.drop_ignored += 1;
            return None;
        }
        // Out of window, an old SYN, a retransmitted FIN: ACK it. A FIN or
        // any ACK restarts the 2*MSL timer (RFC 9293 §3.10.7.4 eighth:
        // "Restart the 2 MSL time-wait timeout"); an ACK-less SYN might be
        // a fresh one with a random ISN below RCV.NXT, so it does not.
        if paws_reject || seg.ack.is_some() {
            self.tw_restart(twi);
        }
        // At most one ACK per `tcp_invalid_ratelimit` unless the segment
        // carries data or a FIN (a retransmitted FIN is always re-ACKed):
        // an ACK loop with a peer that lost track of the old incarnation
        // would otherwise never end (Linux TCPACKSkippedTimeWait).
        if seg.seq_len() == 0 || seg.syn() {
            let limit = self.cfg.tcp_invalid_ratelimit;
            let allowed = self
                .tw
                .get_mut(twi)
                .is_some_and(|e| super::tcb::oow_ack_allowed(&mut e.last_oow_ack, now, limit));
            if !allowed {
                self.stats.ack_skipped_time_wait += 1;
                return None;
            }
        }
        self.tw_ack(now, twi);
        None
    }

    /// The ACK a TIME_WAIT entry sends: <SEQ=SND.NXT><ACK=RCV.NXT>.
    fn tw_ack(&mut self, now: Instant, twi: u32) {
        let Some(e) = self.tw.get(twi).copied() else {
            return;
        };
        let options = TcpOptions {
            timestamps: e.has_ts().then(|| Timestamps {
                tsval: e.ts_now(now),
                tsecr: e.ts_recent,
            }),
            ..TcpOptions::default()
        };
        self.queue_ctl(CtlSegment {
            tuple: e.tuple(),
            seq: e.snd_nxt,
            ack: e.rcv_nxt,
            flags: ACK,
            window: e.window,
            options,
        });
    }

    /// Restarts the 2*MSL timer of an entry.
    fn tw_restart(&mut self, twi: u32) {
        let deadline = self.clock + self.cfg.msl * 2;
        if let Some(e) = self.tw.get_mut(twi) {
            self.timers.cancel(e.timer);
            e.timer = self.timers.arm(deadline.0, TimerKey::TimeWait(twi));
        }
    }

    /// Ends a TIME_WAIT entry; a handle still held sees CLOSED.
    fn tw_end(&mut self, twi: u32, cancel: bool) {
        let Some(e) = self.tw.remove(twi) else {
            return;
        };
        if cancel {
            self.timers.cancel(e.timer);
        }
        if e.husk != NO_HUSK {
            if let Some(slot) = self.slots.get_mut(e.husk as usize) {
                if slot.gen == e.husk_gen {
                    if let Some(tcb) = slot.tcb.as_mut() {
                        tcb.set_time_wait_husk(false);
                        if !tcb.is_orphan() {
                            self.events.push_back(Event::Closed(ConnId {
                                idx: e.husk,
                                gen: e.husk_gen,
                            }));
                        }
                    }
                }
            }
        }
    }

    /// Moves a connection that entered TIME-WAIT on to the table (or, when
    /// the table is full, closes it without TIME_WAIT as Linux does).
    fn enter_time_wait(&mut self, mut e: TwEntry, ack_owed: bool, husk: Option<ConnId>) {
        let tuple = e.tuple();
        if let Some(old) = self.tw.lookup(&tuple) {
            self.tw_end(old, true);
        }
        if self.tw.len() >= self.cfg.tcp_max_tw_buckets {
            self.stats.time_wait_overflow += 1;
            let max = self.cfg.tcp_max_tw_buckets;
            self.warnings.push(
                self.clock,
                Warning::TimeWaitOverflow { max },
                &mut self.stats,
            );
            if let Some(id) = husk {
                self.events.push_back(Event::Closed(id));
            }
        } else {
            if let Some(id) = husk {
                e.husk = id.idx;
                e.husk_gen = id.gen;
                if let Some(tcb) = self
                    .slots
                    .get_mut(id.idx as usize)
                    .and_then(|s| s.tcb.as_mut())
                {
                    tcb.set_time_wait_husk(true);
                }
            }
            self.stats.time_wait_entered += 1;
            let deadline = self.clock + self.cfg.msl * 2;
            let twi = self.tw.insert(e);
            let timer = self.timers.arm(deadline.0, TimerKey::TimeWait(twi));
            if let Some(entry) = self.tw.get_mut(twi) {
                entry.timer = timer;
            }
        }
        if ack_owed {
            // The ACK of the FIN that brought us here.
            let options = TcpOptions {
                timestamps: e.has_ts().then(|| Timestamps {
                    tsval: e.ts_now(self.clock),
                    tsecr: e.ts_recent,
                }),
                ..TcpOptions::default()
            };
            self.queue_ctl(CtlSegment {
                tuple,
                seq: e.snd_nxt,
                ack: e.rcv_nxt,
                flags: ACK,
                window: e.window,
                options,
            });
        }
    }

    /// Writes the next segment to send into `buf` (which should hold at
    /// least 60 bytes of header plus one MSS). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.clock = self.clock.max(now);
        while let Some(rst) = self.resets.pop_front() {
            let repr = TcpRepr {
                src_port: rst.tuple.local_port,
                dst_port: rst.tuple.remote_port,
                seq: rst.seq,
                ack: rst.ack,
                flags: RST | if rst.ack.is_some() { ACK } else { 0 },
                window: 0,
                urgent: 0,
                options: TcpOptions::default(),
                payload: &[],
            };
            if let Ok(len) = repr.emit(rst.tuple.local_addr, rst.tuple.remote_addr, buf) {
                self.stats.rst_out += 1;
                self.stats.segments_out += 1;
                return Some(Transmit {
                    src: rst.tuple.local_addr,
                    dst: rst.tuple.remote_addr,
                    len,
                });
            }
        }
        while let Some(c) = self.ctl.pop_front() {
            let repr = TcpRepr {
                src_port: c.tuple.local_port,
                dst_port: c.tuple.remote_port,
                seq: c.seq,
                ack: Some(c.ack),
                flags: c.flags,
                window: c.window,
                urgent: 0,
                options: c.options,
                payload: &[],
            };
            if let Ok(len) = repr.emit(c.tuple.local_addr, c.tuple.remote_addr, buf) {
                self.stats.segments_out += 1;
                return Some(Transmit {
                    src: c.tuple.local_addr,
                    dst: c.tuple.remote_addr,
                    len,
                });
            }
        }
        while let Some(&idx) = self.dirty.front() {
            let sent = self.run(idx, |tcb, ctx| {
                tcb.poll_transmit(now, ctx, buf).map(|n| (n, tcb.tuple))
            });
            if let Some(Some((len, t))) = sent {
                return Some(Transmit {
                    src: t.local_addr,
                    dst: t.remote_addr,
                    len,
                });
            }
            self.dirty.pop_front();
            if let Some(slot) = self.slots.get_mut(idx as usize) {
                slot.dirty = false;
            }
            // The connection may have queued an RST while polling.
            if !self.resets.is_empty() || !self.ctl.is_empty() {
                return self.poll_transmit(now, buf);
            }
        }
        None
    }

    /// When `handle_timeout` should be called next. Exact when the next
    /// timer is near; for a distant one it may be early (a lower bound from
    /// the timing wheel), never late: calling `handle_timeout` then simply
    /// finds nothing due yet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline().map(Instant)
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        // Timers re-armed at or before `now` while running fire in the next
        // round; each round clears the deadlines it ran, so this ends.
        for _ in 0..8 {
            let mut fired = std::mem::take(&mut self.fired);
            fired.clear();
            self.timers.poll(now.0, &mut fired);
            if fired.is_empty() {
                self.fired = fired;
                return;
            }
            for key in fired.drain(..) {
                self.stats.timer_expiries += 1;
                match key {
                    TimerKey::Conn(idx) => {
                        let Some(slot) = self.slots.get_mut(idx as usize) else {
                            continue;
                        };
                        slot.timer = TimerId::NONE;
                        slot.scheduled = None;
                        self.run(idx, |tcb, ctx| tcb.on_timer(now, ctx));
                        // `run` reschedules unless the slot was freed.
                        self.reschedule(idx);
                    }
                    TimerKey::TimeWait(twi) => {
                        // RFC 9293 §3.10.7.4: "When the time-wait timeout
                        // expires, delete the TCB, enter the CLOSED state".
                        self.stats.time_waited += 1;
                        self.tw_end(twi, false);
                    }
                }
            }
            self.fired = fired;
        }
    }

    /// Next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------------
    // Application side
    // ------------------------------------------------------------------

    /// Opens a listener on `addr:port` (`0.0.0.0` for any address) whose
    /// accept queue holds min(`backlog`, `somaxconn`) established
    /// connections; half-open ones wait in its SYN queue
    /// (`tcp_max_syn_backlog`).
    pub fn listen(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        backlog: usize,
    ) -> Result<ListenerId, TcpError> {
        if self.listen_map.contains_key(&(addr, port)) {
            return Err(TcpError::AddrInUse);
        }
        let l = Listener {
            addr,
            port,
            accept_max: backlog.min(self.cfg.somaxconn).max(1),
            pending: 0,
            queue: VecDeque::new(),
            last_cookie: None,
        };
        let id = match self.listeners.iter().position(Option::is_none) {
            Some(i) => {
                self.listeners[i] = Some(l);
                i
            }
            None => {
                self.listeners.push(Some(l));
                self.listeners.len() - 1
            }
        };
        self.listen_map.insert((addr, port), id as u32);
        Ok(ListenerId(id as u32))
    }

    /// Closes a listener; connections waiting in its accept queue are
    /// reset, half-open ones dropped.
    pub fn unlisten(&mut self, id: ListenerId) -> Result<(), TcpError> {
        let l = self
            .listeners
            .get_mut(id.0 as usize)
            .and_then(Option::take)
            .ok_or(TcpError::NotFound)?;
        self.listen_map.remove(&(l.addr, l.port));
        for c in l.queue {
            let _ = self.run_id(c, |tcb, ctx| tcb.abort(ctx));
            self.free_slot(c.idx);
        }
        let half_open: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.tcb.as_ref().is_some_and(|t| t.listener == Some(id.0)))
            .map(|(i, _)| i as u32)
            .collect();
        for idx in half_open {
            self.free_slot(idx);
        }
        for slot in &mut self.slots {
            if let Some(t) = slot.tcb.as_mut().filter(|t| t.origin == id.0) {
                t.origin = u32::MAX;
            }
        }
        Ok(())
    }

    /// Takes an established connection from a listener's queue.
    pub fn accept(&mut self, listener: ListenerId) -> Option<ConnId> {
        self.listeners
            .get_mut(listener.0 as usize)?
            .as_mut()?
            .queue
            .pop_front()
    }

    /// May `connect` take over this TIME_WAIT entry? `tcp_tw_reuse` 1: the
    /// old incarnation used timestamps and its last one is at least 1 s old
    /// (Linux `tcp_twsk_unique`), so the new SYN's timestamp is newer and
    /// PAWS on both sides tells the incarnations apart; or
    /// `tw_isn_above_last`, which makes the new ISN start above the old
    /// sequence space.
    fn tw_reusable(&self, now: Instant, e: &TwEntry) -> bool {
        self.cfg.tw_isn_above_last
            || (self.cfg.tcp_tw_reuse == 1
                && e.has_ts()
                && time_wait::stamp(now).wrapping_sub(e.ts_recent_stamp) >= 1000)
    }

    /// Whether `connect` can use `tuple`: free, or in a reusable TIME_WAIT.
    fn tuple_available(&self, now: Instant, tuple: &FourTuple) -> bool {
        !self.conns.contains_key(tuple)
            && self
                .tw
                .lookup(tuple)
                .and_then(|i| self.tw.get(i))
                .is_none_or(|e| self.tw_reusable(now, e))
    }

    /// Active OPEN from `local_addr:local_port` (port 0 picks an ephemeral
    /// port) to `remote_addr:remote_port`. The SYN goes out on the next
    /// `poll_transmit`; `Event::Connected` reports success. A 4-tuple in
    /// TIME_WAIT is taken over when `tcp_tw_reuse` or `tw_isn_above_last`
    /// allows it (the new ISN is the old SND.NXT + 65537, as Linux);
    /// otherwise it is `AddrInUse`.
    pub fn connect(
        &mut self,
        now: Instant,
        local_addr: Ipv4Addr,
        local_port: u16,
        remote_addr: Ipv4Addr,
        remote_port: u16,
    ) -> Result<ConnId, TcpError> {
        self.clock = self.clock.max(now);
        if self.slots_in_use() >= self.cfg.max_connections {
            return Err(TcpError::NoBufs);
        }
        let mut tuple = FourTuple {
            local_addr,
            local_port,
            remote_addr,
            remote_port,
        };
        if local_port == 0 {
            let (lo, hi) = self.cfg.ip_local_port_range;
            let (lo, hi) = (u32::from(lo.min(hi)), u32::from(hi.max(lo)));
            let span = hi - lo + 1;
            let found = (0..span).find_map(|i| {
                let port = (lo + (self.next_port.wrapping_add(i)) % span) as u16;
                let t = FourTuple {
                    local_port: port,
                    ..tuple
                };
                (t.shard(self.shard.1) == self.shard.0 && self.tuple_available(now, &t))
                    .then_some((t, i))
            });
            let Some((t, i)) = found else {
                return Err(TcpError::AddrInUse);
            };
            self.next_port = self.next_port.wrapping_add(i + 1);
            tuple = t;
        } else if !self.tuple_available(now, &tuple) {
            return Err(TcpError::AddrInUse);
        }
        let mut iss = self
            .isn
            .isn(now, local_addr, tuple.local_port, remote_addr, remote_port);
        let mut inherit_ts = None;
        if let Some(twi) = self.tw.lookup(&tuple) {
            if let Some(e) = self.tw.get(twi).copied() {
                iss = e.snd_nxt + 65_537u32;
                if iss == SeqNumber(0) {
                    iss = SeqNumber(1);
                }
                inherit_ts = e.has_ts().then_some(e.ts_recent);
            }
            self.stats.time_wait_recycled += 1;
            self.tw_end(twi, true);
        }
        let ts_off = self.ts_offset(local_addr, remote_addr);
        let tcb = Tcb::new_active(now, &self.cfg, tuple, iss, ts_off, inherit_ts);
        let idx = self.alloc(tcb);
        self.conns.insert(tuple, idx);
        self.stats.active_opens += 1;
        self.mark_dirty(idx);
        self.reschedule(idx);
        Ok(self.id_of(idx))
    }

    /// Reads received data. `Ok(0)` means end of stream (the peer sent
    /// FIN and everything before it has been read); `Err(WouldBlock)`
    /// means nothing yet; after an RST, `Err(ConnectionReset)`; after a
    /// retransmission or keepalive timeout, `Err(TimedOut)`.
    pub fn read(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, TcpError> {
        self.run_id(id, |tcb, _| tcb.read(buf))?
    }

    /// Queues data to send; returns how much fit (`Err(WouldBlock)` when
    /// none did). After an RST, `Err(BrokenPipe)`.
    pub fn write(&mut self, id: ConnId, data: &[u8]) -> Result<usize, TcpError> {
        self.run_id(id, |tcb, _| tcb.write(data))?
    }

    /// Half-close: sends FIN after the queued data; reading goes on.
    pub fn shutdown(&mut self, id: ConnId) -> Result<(), TcpError> {
        self.run_id(id, |tcb, _| tcb.shutdown())?
    }

    /// Gives up the handle (close(2)). The connection closes gracefully on
    /// its own (FIN; TIME_WAIT if we closed first); with unread received
    /// data it is reset instead and the data discarded (RFC 2525 §2.17,
    /// TCPAbortOnClose); with linger 0 (`set_linger`) it is reset
    /// (TCPAbortOnLinger).
    pub fn close(&mut self, now: Instant, id: ConnId) -> Result<(), TcpError> {
        self.clock = self.clock.max(now);
        let free = self.run_id(id, |tcb, ctx| tcb.close(now, ctx))?;
        if free {
            self.free_slot(id.idx);
        }
        Ok(())
    }

    /// Abortive close, as close(2) with SO_LINGER 0: RST instead of FIN
    /// (RFC 9293 §3.10.5 ABORT), no TIME_WAIT, and the handle is given up
    /// (TCPAbortOnLinger).
    pub fn abort(&mut self, id: ConnId) -> Result<(), TcpError> {
        self.run_id(id, |tcb, ctx| {
            if tcb.state != State::Closed {
                ctx.stats.abort_on_linger += 1;
            }
            tcb.abort(ctx)
        })?;
        self.free_slot(id.idx);
        Ok(())
    }

    /// SO_LINGER: `Some(Duration::ZERO)` makes `close` abortive (RST, no
    /// TIME_WAIT). Other values behave as `None`: `close` never blocks here
    /// and a lingering close finishes in the background, as on Linux.
    pub fn set_linger(&mut self, id: ConnId, linger: Option<Duration>) -> Result<(), TcpError> {
        self.run_id(id, |tcb, _| tcb.set_linger(linger))
    }

    /// SO_KEEPALIVE on (`Some`, with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT; see
    /// `TcpConfig::keepalive` for the sysctl defaults) or off. A peer that
    /// answers none of the probes is reset and the application sees
    /// `Event::TimedOut` and `Err(TimedOut)` (TCPAbortOnTimeout).
    pub fn set_keepalive(
        &mut self,
        now: Instant,
        id: ConnId,
        keepalive: Option<KeepaliveConfig>,
    ) -> Result<(), TcpError> {
        self.clock = self.clock.max(now);
        self.run_id(id, |tcb, _| tcb.set_keepalive(now, keepalive))
    }

    /// Connection state (TIME_WAIT while the connection waits in the
    /// TIME_WAIT table and the handle is still held).
    pub fn state(&self, id: ConnId) -> Result<State, TcpError> {
        self.tcb(id)
            .map(Tcb::visible_state)
            .ok_or(TcpError::NotFound)
    }

    /// Turns Nagle's algorithm off (`true`) or on (RFC 9293 §3.7.4).
    pub fn set_nodelay(&mut self, id: ConnId, nodelay: bool) -> Result<(), TcpError> {
        self.run_id(id, |tcb, _| tcb.set_nodelay(nodelay))
    }

    /// Bytes ready to read.
    pub fn recv_queue(&self, id: ConnId) -> Result<usize, TcpError> {
        self.tcb(id).map(Tcb::readable).ok_or(TcpError::NotFound)
    }

    /// Room in the send buffer.
    pub fn send_space(&self, id: ConnId) -> Result<usize, TcpError> {
        self.tcb(id).map(Tcb::writable).ok_or(TcpError::NotFound)
    }

    /// The control block, for inspection (cwnd, RTO, ...). `None` once the
    /// handle was closed.
    pub fn tcb(&self, id: ConnId) -> Option<&Tcb> {
        let slot = self.slots.get(id.idx as usize)?;
        if slot.gen != id.gen {
            return None;
        }
        slot.tcb.as_ref().filter(|t| !t.is_orphan())
    }

    /// The connection for a 4-tuple (from our point of view).
    pub fn lookup(&self, tuple: &FourTuple) -> Option<ConnId> {
        self.conns.get(tuple).map(|&idx| self.id_of(idx))
    }

    /// True when `tuple` is in the TIME_WAIT table.
    pub fn in_time_wait(&self, tuple: &FourTuple) -> bool {
        self.tw.lookup(tuple).is_some()
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    fn slots_in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn id_of(&self, idx: u32) -> ConnId {
        ConnId {
            idx,
            gen: self.slots.get(idx as usize).map_or(0, |s| s.gen),
        }
    }

    fn alloc(&mut self, tcb: Tcb) -> u32 {
        self.state_counts[tcb.state as usize] += 1;
        if let Some(idx) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(idx as usize) {
                slot.tcb = Some(tcb);
                slot.scheduled = None;
                slot.timer = TimerId::NONE;
                return idx;
            }
        }
        self.slots.push(Slot {
            gen: 0,
            dirty: false,
            scheduled: None,
            timer: TimerId::NONE,
            tcb: Some(tcb),
        });
        (self.slots.len() - 1) as u32
    }

    fn free_slot(&mut self, idx: u32) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let Some(tcb) = slot.tcb.take() else { return };
        slot.gen = slot.gen.wrapping_add(1);
        slot.scheduled = None;
        let timer = std::mem::replace(&mut slot.timer, TimerId::NONE);
        self.timers.cancel(timer);
        let c = &mut self.state_counts[tcb.state as usize];
        *c = c.saturating_sub(1);
        if self.conns.get(&tcb.tuple) == Some(&idx) {
            self.conns.remove(&tcb.tuple);
        }
        if let Some(l) = tcb
            .listener
            .and_then(|l| self.listeners.get_mut(l as usize))
            .and_then(Option::as_mut)
        {
            l.pending = l.pending.saturating_sub(1);
        }
        self.free.push(idx);
    }

    fn mark_dirty(&mut self, idx: u32) {
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push_back(idx);
            }
        }
    }

    /// Keeps the slot's one wheel entry at the earliest deadline of its
    /// timers: O(1) cancel and arm when it moved.
    fn reschedule(&mut self, idx: u32) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let next = slot.tcb.as_ref().and_then(Tcb::next_deadline);
        if next == slot.scheduled {
            return;
        }
        self.timers.cancel(slot.timer);
        slot.scheduled = next;
        slot.timer = match next {
            Some(t) => self.timers.arm(t.0, TimerKey::Conn(idx)),
            None => TimerId::NONE,
        };
    }

    fn run_id<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Tcb, &mut Ctx) -> R,
    ) -> Result<R, TcpError> {
        if self.tcb(id).is_none() {
            return Err(TcpError::NotFound);
        }
        self.run(id.idx, f).ok_or(TcpError::NotFound)
    }

    /// Runs `f` on a connection, then does the engine-side bookkeeping of
    /// whatever changed: accept queues, the demux table, TIME_WAIT, state
    /// counts, freeing, timers.
    fn run<R>(&mut self, idx: u32, f: impl FnOnce(&mut Tcb, &mut Ctx) -> R) -> Option<R> {
        let slot = self.slots.get_mut(idx as usize)?;
        let id = ConnId { idx, gen: slot.gen };
        let tcb = slot.tcb.as_mut()?;
        let old = tcb.state;
        let mut ctx = Ctx {
            cfg: &self.cfg,
            stats: &mut self.stats,
            events: &mut self.events,
            resets: &mut self.resets,
            warnings: &mut self.warnings,
            id,
        };
        let r = f(tcb, &mut ctx);
        let new = tcb.state;
        let tuple = tcb.tuple;
        let mut free = false;
        if old == State::SynReceived && new != State::SynReceived && tcb.is_passive() {
            if let Some(lid) = tcb.listener.take() {
                if let Some(Some(l)) = self.listeners.get_mut(lid as usize) {
                    l.pending = l.pending.saturating_sub(1);
                    if new == State::Closed {
                        // Never accepted: nobody holds the handle.
                        free = true;
                    } else {
                        l.queue.push_back(id);
                        self.events.push_back(Event::Incoming(ListenerId(lid)));
                    }
                } else {
                    free = true;
                }
            }
        }
        // TIME-WAIT lives in the compact table, not in a control block.
        let mut time_wait = None;
        if new == State::TimeWait {
            let (entry, ack_owed) = tcb.time_wait_entry(self.clock);
            let husk = (!tcb.is_orphan()).then_some(id);
            time_wait = Some((entry, ack_owed, husk));
        }
        let fin = tcb.state;
        if fin != old {
            let c = &mut self.state_counts;
            c[old as usize] = c[old as usize].saturating_sub(1);
            c[fin as usize] += 1;
        }
        if fin == State::Closed {
            if self.conns.get(&tuple) == Some(&idx) {
                self.conns.remove(&tuple);
            }
            free |= tcb.is_orphan();
        }
        if let Some((entry, ack_owed, husk)) = time_wait {
            self.enter_time_wait(entry, ack_owed, husk);
        }
        if free {
            self.free_slot(idx);
        } else {
            self.mark_dirty(idx);
            self.reschedule(idx);
        }
        Some(r)
    }
}
