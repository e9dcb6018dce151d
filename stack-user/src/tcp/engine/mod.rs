//! The engine: every connection of one queue worker, in the sans-IO style
//! of quinn-proto. The caller feeds received segments (`on_segment`),
//! drains segments to send (`poll_transmit`), and drives time
//! (`poll_timeout` / `handle_timeout`); the engine never does I/O and never
//! reads a clock.
//!
//! This file holds the engine's state, its slots (allocation, the
//! per-connection bookkeeping after each call, timer scheduling) and the
//! poll/timeout loop. The rest is cut by concern, as Linux's `net/ipv4/`:
//! `demux.rs` (segment arrival), `listen.rs` (listeners and accept queues),
//! `syncookie.rs`, `time_wait.rs` (the TIME_WAIT table and its segment
//! handling) and `api.rs` (the application calls on connections).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::time::Duration;

use stack_ebpf::cookie::{self, CookieOptions, Flow, Flow6, Secret, Secrets};

use self::time_wait::TwTable;
use super::buffer::BufPool;
use super::config::{KeepaliveConfig, TcpConfig};
use super::error::TcpError;
use super::event::{ConnId, Event, FourTuple, ListenerId, Sharding, Warning};
use super::isn::IsnGenerator;
use super::ratelimit::TokenBucket;
use super::shared::Warnings;
use super::state::State;
use super::stats::Stats;
use super::tcb::{Ctx, RstSegment, Tcb};
use super::wheel::{TimerId, TimerWheel};
use crate::time::Instant;
use crate::wire::tcp::SeqNumber;
use crate::wire::tcp::{
    ChecksumKind, TcpOptions, TcpParseError, TcpRepr, Timestamps, ACK, RST, SYN,
};

mod api;
pub(crate) mod demux;
mod listen;
mod slots;
mod syncookie;
pub(crate) mod time_wait;

pub(crate) use self::demux::TupleMap;
pub use self::demux::{DemuxBuildHasher, DemuxHasher};
use self::listen::Listener;

/// One segment written by [`TcpEngine::poll_transmit`]: the caller wraps
/// `buf[..len]` in an IPv4 or IPv6 header (of the addresses' family) from
/// `src` to `dst` (protocol / next header 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Source address (ours).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Length of the TCP segment (header, options, payload) in the buffer.
    pub len: usize,
}

/// An address as IPv6 (IPv4 mapped, RFC 4291 §2.5.5.2).
pub(crate) fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
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
    /// Its address (`0.0.0.0` or `::` for any).
    pub addr: IpAddr,
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
    /// Keys the timestamp offsets (see [`Self::set_timestamp_clock`]).
    ts_key: IsnGenerator,
    /// Milliseconds added to engine time for TSvals: the engine's time
    /// zero on the host's monotonic clock, once the runtime says it.
    ts_clock_ms: u32,
    /// The last address pair `ts_offset` hashed, and its keyed hash.
    ts_last: std::cell::Cell<Option<(IpAddr, IpAddr, u32)>>,
    conns: TupleMap<u32>,
    slots: slots::Chunked<Slot>,
    free: Vec<u32>,
    listeners: Vec<Option<Listener>>,
    listen_map: HashMap<(IpAddr, u16), u32, DemuxBuildHasher>,
    events: VecDeque<Event>,
    resets: VecDeque<RstSegment>,
    ctl: VecDeque<CtlSegment>,
    /// Every timer of every connection and TIME_WAIT entry, on one
    /// hierarchical wheel.
    timers: TimerWheel<TimerKey>,
    fired: Vec<TimerKey>,
    dirty: VecDeque<u32>,
    pool: BufPool,
    stats: Stats,
    next_port: u32,
    /// `(index, sharding)`: this engine is queue worker `index` and picks
    /// only ephemeral ports whose tuple `sharding` gives it.
    shard: (u32, Sharding),
    tw: TwTable,
    warnings: Warnings,
    rst_bucket: TokenBucket,
    cookie_secrets: Secrets,
    cookie_clock_offset_us: u64,
    /// The XDP program answers SYNs with cookies this engine never sees
    /// ([`Self::set_xdp_cookies`]).
    xdp_cookies: bool,
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
        let hasher = DemuxBuildHasher::new(isn.keyed_hash(b"xstack demux"));
        let cap = config.initial_connections;
        let own = Secret {
            k0: isn.keyed_hash(b"xstack cookie k0"),
            k1: isn.keyed_hash(b"xstack cookie k1"),
        };
        TcpEngine {
            conns: TupleMap::with_capacity_and_hasher(cap, hasher),
            slots: slots::Chunked::new(),
            free: Vec::new(),
            listeners: Vec::new(),
            listen_map: HashMap::with_hasher(hasher),
            events: VecDeque::new(),
            resets: VecDeque::new(),
            ctl: VecDeque::new(),
            timers: TimerWheel::with_capacity(0, cap),
            fired: Vec::new(),
            dirty: VecDeque::new(),
            pool: BufPool::default(),
            stats: Stats::default(),
            next_port: isn.keyed_hash(b"xstack ports") as u32,
            shard: (0, Sharding::Mix(1)),
            tw: TwTable::new(hasher),
            warnings: Warnings::new(),
            rst_bucket: TokenBucket::new(config.rst_ratelimit),
            cookie_secrets: Secrets {
                current: own,
                previous: own,
                previous_until: 0,
                pad: 0,
            },
            cookie_clock_offset_us: 0,
            xdp_cookies: false,
            state_counts: [0; N_STATES],
            clock: Instant::ZERO,
            ts_key: isn.clone(),
            ts_clock_ms: 0,
            ts_last: std::cell::Cell::new(None),
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
            listen: self.listeners.iter().flatten().count(),
            time_wait_max: self.cfg.tcp_max_tw_buckets,
            time_wait_high_water: self.tw.high_water,
        }
    }

    /// The next operator warning (TIME_WAIT table overflow, a connection
    /// left in CLOSE_WAIT), for the caller to log.
    pub fn poll_warning(&mut self) -> Option<Warning> {
        self.warnings.pop()
    }

    /// Makes this engine queue worker `index` of `count`: [`connect`]
    /// with port 0 then picks only local ports whose 4-tuple
    /// [`FourTuple::shard`] maps to `index`, so that every reply belongs to
    /// this engine whichever queue it arrives on.
    ///
    /// [`connect`]: Self::connect
    pub fn set_shard(&mut self, index: u32, count: u32) {
        self.shard = (index.min(count.max(1) - 1), Sharding::Mix(count.max(1)));
    }

    /// Makes this engine queue worker `index` under `sharding`:
    /// [`connect`] with port 0 picks only local ports whose 4-tuple
    /// [`Sharding::owner`] gives `index` (with [`Sharding::Rss`], those
    /// whose replies the NIC puts on queue `index`); when none is free it
    /// fails with `AddrInUse`, as when the range is used up.
    ///
    /// [`connect`]: Self::connect
    pub fn set_sharding(&mut self, index: u32, sharding: Sharding) {
        self.shard = (index, sharding);
    }

    /// This engine's queue index and how tuples are shared between queues.
    pub fn sharding(&self) -> (u32, &Sharding) {
        (self.shard.0, &self.shard.1)
    }

    // ------------------------------------------------------------------
    // Datapath side
    // ------------------------------------------------------------------

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
    /// keyed, so it reveals no clock, and the same for every incarnation;
    /// plus the engine's time zero on the host clock
    /// ([`set_timestamp_clock`](Self::set_timestamp_clock)).
    ///
    /// The keyed hash of the last address pair is kept (most connections
    /// of a client go to one server, and a server's from one client often
    /// come in runs): the same value, without a SipHash per connection.
    fn ts_offset(&self, local: IpAddr, remote: IpAddr) -> u32 {
        if let Some((l, r, h)) = self.ts_last.get() {
            if (l, r) == (local, remote) {
                return h.wrapping_add(self.ts_clock_ms);
            }
        }
        let h = match (local, remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                let mut msg = [0u8; 10];
                msg[..4].copy_from_slice(&l.octets());
                msg[4..8].copy_from_slice(&r.octets());
                msg[8..].copy_from_slice(b"ts");
                self.ts_key.keyed_hash(&msg)
            }
            (l, r) => {
                let mut msg = [0u8; 34];
                msg[..16].copy_from_slice(&v6(l).octets());
                msg[16..32].copy_from_slice(&v6(r).octets());
                msg[32..].copy_from_slice(b"ts");
                self.ts_key.keyed_hash(&msg)
            }
        };
        self.ts_last.set(Some((local, remote, h as u32)));
        (h as u32).wrapping_add(self.ts_clock_ms)
    }

    /// Makes TSvals come from one clock for every engine and process of
    /// this host, as Linux's do (`tcp_clock_ms` plus `secure_tcp_ts_off`
    /// keyed by a per-boot secret): `clock_offset_us` is this engine's time
    /// zero on the host's monotonic clock, `key` a secret shared by every
    /// engine of the host (the runtime uses the boot id). Without it each
    /// engine starts its own TSvals at a random point, and a new process
    /// reusing a 4-tuple that a Linux peer holds in TIME_WAIT has one chance
    /// in two of sending an older TSval: Linux's PAWS then refuses the SYN
    /// (RFC 7323 §5, RFC 6191) and the connection waits a SYN
    /// retransmission, a second, instead of reusing the tuple.
    pub fn set_timestamp_clock(&mut self, key: [u8; 16], clock_offset_us: u64) {
        self.ts_key = IsnGenerator::new(key);
        self.ts_last.set(None);
        self.ts_clock_ms = (clock_offset_us / 1000) as u32;
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
            if let Some(t) = self.transmit_one(now, idx, buf) {
                return Some(t);
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

    /// The next segment of the connection in slot `idx`, if it has one.
    /// Sending changes no state (only SND.NXT/SND.MAX, RTT timing and the
    /// timers), so of `run`'s bookkeeping only the timers are kept: the
    /// connection is already queued in `dirty`.
    fn transmit_one(&mut self, now: Instant, idx: u32, buf: &mut [u8]) -> Option<Transmit> {
        let slot = self.slots.get_mut(idx as usize)?;
        let id = ConnId { idx, gen: slot.gen };
        let tcb = slot.tcb.as_mut()?;
        let mut ctx = Ctx {
            cfg: &self.cfg,
            stats: &mut self.stats,
            events: &mut self.events,
            resets: &mut self.resets,
            warnings: &mut self.warnings,
            pool: &mut self.pool,
            id,
        };
        let old = tcb.state();
        let may = cfg!(debug_assertions) && tcb.may_transmit();
        let len = tcb.poll_transmit(now, &mut ctx, buf);
        debug_assert_eq!(tcb.state(), old, "sending changed the state");
        // `run` queues only connections that may transmit: check that it
        // misses none (every test in a debug build).
        debug_assert!(may || len.is_none(), "sent after may_transmit said no");
        // Built from the block (not from a copy of its tuple on the stack,
        // read back wide over narrow stores: a store-forwarding stall).
        let t = len.map(|len| Transmit {
            src: tcb.tuple.local_addr,
            dst: tcb.tuple.remote_addr,
            len,
        });
        Self::rearm(&mut self.timers, slot, idx);
        t
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
        self.state_counts[tcb.state() as usize] += 1;
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
        // What is needed of the block is read where it lies, and the block
        // dropped in place: taking it out moved all of it (a memcpy of the
        // whole block per connection).
        let Some(tcb) = slot.tcb.as_ref() else { return };
        let (state, origin, since) = (tcb.state(), tcb.origin, tcb.state_since);
        let (tuple, linked, listener) = (tcb.tuple, !tcb.is_unlinked(), tcb.listener);
        slot.tcb = None;
        slot.gen = slot.gen.wrapping_add(1);
        slot.scheduled = None;
        let timer = std::mem::replace(&mut slot.timer, TimerId::NONE);
        let gen = slot.gen;
        self.timers.cancel(timer);
        let c = &mut self.state_counts[state as usize];
        *c = c.saturating_sub(1);
        self.close_wait_moved(origin, idx, gen, Some(state), None, since);
        if linked {
            self.conns.remove_if(&tuple, idx);
        }
        if let Some(l) = listener
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
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            Self::rearm(&mut self.timers, slot, idx);
        }
    }

    /// [`reschedule`](Self::reschedule) on a slot already at hand.
    fn rearm(timers: &mut TimerWheel<TimerKey>, slot: &mut Slot, idx: u32) {
        let next = slot.tcb.as_ref().and_then(Tcb::next_deadline);
        if next == slot.scheduled {
            return;
        }
        slot.scheduled = next;
        slot.timer = match next {
            Some(t) => timers.rearm(slot.timer, t.0, TimerKey::Conn(idx)),
            None => {
                timers.cancel(slot.timer);
                TimerId::NONE
            }
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
        let old = tcb.state();
        let mut ctx = Ctx {
            cfg: &self.cfg,
            stats: &mut self.stats,
            events: &mut self.events,
            resets: &mut self.resets,
            warnings: &mut self.warnings,
            pool: &mut self.pool,
            id,
        };
        let r = f(tcb, &mut ctx);
        let new = tcb.state();
        if new == old && new != State::Closed && new != State::TimeWait {
            // No state change (most calls): of the bookkeeping below only
            // the dirty queue and the timers have anything to do.
            if !slot.dirty && tcb.may_transmit() {
                slot.dirty = true;
                self.dirty.push_back(idx);
            }
            Self::rearm(&mut self.timers, slot, idx);
            return Some(r);
        }
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
            let handle = (!tcb.is_orphan()).then_some(id);
            time_wait = Some((entry, tcb.tuple, ack_owed, handle));
        }
        let fin = tcb.state();
        let (origin, since) = (tcb.origin, tcb.state_since);
        if fin != old {
            let c = &mut self.state_counts;
            c[old as usize] = c[old as usize].saturating_sub(1);
            c[fin as usize] += 1;
        }
        if fin == State::Closed {
            free |= tcb.is_orphan();
            // A block that stays (its handle is held) leaves the demux
            // table now; one freed below leaves it in `free_slot`: one
            // lookup either way.
            if !free && !tcb.is_unlinked() {
                self.conns.remove_if(&tuple, idx);
                tcb.set_unlinked();
            }
        }
        if fin != old {
            self.close_wait_moved(origin, idx, id.gen, Some(old), Some(fin), since);
        }
        if let Some((entry, tw_tuple, ack_owed, handle)) = time_wait {
            self.enter_time_wait(entry, tw_tuple, ack_owed, handle);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client and a server engine with different keys.
    fn pair() -> (TcpEngine, TcpEngine) {
        (
            TcpEngine::new(TcpConfig::default(), [1; 16]),
            TcpEngine::new(TcpConfig::default(), [2; 16]),
        )
    }

    /// Moves every segment each side has to send to the other until
    /// neither has any.
    fn pump(now: Instant, buf: &mut [u8], c: &mut TcpEngine, s: &mut TcpEngine) {
        loop {
            let mut moved = false;
            while let Some(t) = c.poll_transmit(now, buf) {
                let seg = buf[..t.len].to_vec();
                s.on_segment(now, t.src, t.dst, &seg);
                moved = true;
            }
            while let Some(t) = s.poll_transmit(now, buf) {
                let seg = buf[..t.len].to_vec();
                c.on_segment(now, t.src, t.dst, &seg);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    #[test]
    fn a_freed_connection_leaves_the_demux_table_the_state_counts_and_its_handle() {
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let (mut c, mut s) = pair();
        let l = s.listen(b, 80, 8).unwrap();
        let now = Instant::from_millis(1);
        let mut buf = vec![0u8; 2048];
        let mut pump = |c: &mut TcpEngine, s: &mut TcpEngine| pump(now, &mut buf, c, s);
        let id = c.connect(now, a, 0, b, 80).unwrap();
        pump(&mut c, &mut s);
        let sid = s.accept(l).expect("established");
        // The server closes first (its side waits in the TIME_WAIT table),
        // then the client: both blocks are freed.
        s.close(now, sid).unwrap();
        pump(&mut c, &mut s);
        assert_eq!(c.read(id, &mut [0; 8]), Ok(0));
        c.close(now, id).unwrap();
        pump(&mut c, &mut s);
        for e in [&c, &s] {
            assert_eq!(e.conns.len(), 0, "out of the demux table");
            assert_eq!(e.slots_in_use(), 0, "slot freed");
            assert_eq!(e.state_counts[..].iter().sum::<usize>(), 0);
        }
        assert_eq!(s.state_counts().time_wait, 1);
        assert_eq!(c.connection_count(), 0);
        assert_eq!(
            s.listeners[l.0 as usize].as_ref().map(|l| l.pending),
            Some(0)
        );
        // The handles are stale; the slot is reused under a new generation.
        assert_eq!(c.read(id, &mut [0; 8]), Err(TcpError::NotFound));
        assert_eq!(s.write(sid, b"x"), Err(TcpError::NotFound));
        let again = c.connect(now, a, 0, b, 80).unwrap();
        assert_eq!(again.idx, id.idx);
        assert_ne!(again.gen, id.gen);
    }

    #[test]
    fn a_call_that_leaves_nothing_to_send_does_not_queue_the_connection_for_transmit() {
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let (mut c, mut s) = pair();
        let l = s.listen(b, 80, 8).unwrap();
        let now = Instant::from_millis(1);
        let mut buf = vec![0u8; 2048];
        let mut pump = |c: &mut TcpEngine, s: &mut TcpEngine| pump(now, &mut buf, c, s);
        let id = c.connect(now, a, 0, b, 80).unwrap();
        pump(&mut c, &mut s);
        let sid = s.accept(l).expect("established");
        assert!(c.dirty.is_empty() && s.dirty.is_empty());
        // Nothing to send: not queued.
        c.set_nodelay(id, true).unwrap();
        assert_eq!(c.read(id, &mut [0; 16]), Err(TcpError::WouldBlock));
        assert!(c.dirty.is_empty(), "{:?}", c.dirty);
        // Data to send: queued, and it goes out.
        c.write(id, b"hello").unwrap();
        assert_eq!(c.dirty.len(), 1);
        pump(&mut c, &mut s);
        let mut got = [0u8; 16];
        assert_eq!(s.read(sid, &mut got), Ok(5));
        assert_eq!(&got[..5], b"hello");
        // A close queues the FIN.
        c.close(now, id).unwrap();
        assert_eq!(c.dirty.len(), 1);
    }
}
