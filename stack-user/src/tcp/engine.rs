//! The engine: demultiplexing, listeners, timers and the application API,
//! in the sans-IO style of quinn-proto. The caller feeds received segments
//! (`on_segment`), drains segments to send (`poll_transmit`), and drives
//! time (`poll_timeout` / `handle_timeout`); the engine never does I/O and
//! never reads a clock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

use super::config::TcpConfig;
use super::error::TcpError;
use super::event::{ConnId, Event, FourTuple, ListenerId};
use super::isn::IsnGenerator;
use super::seq::SeqNumber;
use super::state::State;
use super::stats::Stats;
use super::tcb::{Ctx, RstSegment, Tcb};
use super::time::Instant;
use super::wheel::{TimerId, TimerWheel};
use crate::wire::tcp::{TcpOptions, TcpRepr, ACK, RST};

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
    backlog: usize,
    /// Half-open connections (SYN-RECEIVED) from this listener.
    pending: usize,
    /// Established connections waiting for `accept`.
    queue: VecDeque<ConnId>,
}

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
    /// Every timer of every connection, on one hierarchical wheel.
    timers: TimerWheel<TimerKey>,
    fired: Vec<TimerKey>,
    dirty: VecDeque<u32>,
    stats: Stats,
    next_port: u32,
}

impl std::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IsnGenerator { .. }")
    }
}

impl TcpEngine {
    /// An engine with `config`, keyed with `secret` (random, 128 bits: it
    /// keys the RFC 6528 ISN hash and the demultiplexing hash).
    pub fn new(config: TcpConfig, secret: [u8; 16]) -> TcpEngine {
        let isn = IsnGenerator::new(secret);
        let hasher = DemuxBuildHasher {
            key: isn.keyed_hash(b"xstack demux"),
        };
        let cap = config.initial_connections;
        TcpEngine {
            conns: HashMap::with_capacity_and_hasher(cap, hasher),
            slots: Vec::with_capacity(cap),
            free: Vec::new(),
            listeners: Vec::new(),
            listen_map: HashMap::with_hasher(hasher),
            events: VecDeque::new(),
            resets: VecDeque::new(),
            timers: TimerWheel::with_capacity(0, cap),
            fired: Vec::new(),
            dirty: VecDeque::new(),
            stats: Stats::default(),
            next_port: isn.keyed_hash(b"xstack ports") as u32,
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

    /// Connections held (all states, TIME_WAIT included).
    pub fn connection_count(&self) -> usize {
        self.slots.len() - self.free.len()
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

    fn handle(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr) {
        let tuple = FourTuple {
            local_addr: dst,
            local_port: seg.dst_port,
            remote_addr: src,
            remote_port: seg.src_port,
        };
        if let Some(&idx) = self.conns.get(&tuple) {
            self.run(idx, |tcb, ctx| tcb.on_segment(now, seg, ctx));
            return;
        }
        let lid = self
            .listen_map
            .get(&(dst, seg.dst_port))
            .or_else(|| self.listen_map.get(&(Ipv4Addr::UNSPECIFIED, seg.dst_port)))
            .copied();
        match lid {
            Some(lid) => self.on_listen(now, lid, tuple, seg),
            None => self.no_socket(tuple, seg),
        }
    }

    /// RFC 9293 §3.10.7.1, CLOSED: "An incoming segment not containing a
    /// RST causes a RST to be sent in response": <SEQ=SEG.ACK><CTL=RST> if
    /// the ACK bit is on, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    fn no_socket(&mut self, tuple: FourTuple, seg: &TcpRepr) {
        self.stats.no_socket += 1;
        if seg.rst() {
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

    /// RFC 9293 §3.10.7.2, LISTEN.
    fn on_listen(&mut self, now: Instant, lid: u32, tuple: FourTuple, seg: &TcpRepr) {
        // "first, check for a RST: an incoming RST should be ignored".
        if seg.rst() {
            self.stats.drop_ignored += 1;
            return;
        }
        // "second, check for an ACK: any acknowledgment is bad ...
        // <SEQ=SEG.ACK><CTL=RST>".
        if let Some(ack) = seg.ack {
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
        if self.connection_count() >= self.cfg.max_connections {
            self.stats.drop_conn_limit += 1;
            return;
        }
        let Some(Some(l)) = self.listeners.get_mut(lid as usize) else {
            return;
        };
        if l.pending + l.queue.len() >= l.backlog {
            self.stats.drop_listen_overflow += 1;
            return;
        }
        l.pending += 1;
        let iss = self.isn.isn(
            now,
            tuple.local_addr,
            tuple.local_port,
            tuple.remote_addr,
            tuple.remote_port,
        );
        let tcb = Tcb::new_passive(now, &self.cfg, tuple, iss, seg, lid);
        self.stats.passive_opens += 1;
        let idx = self.alloc(tcb);
        self.conns.insert(tuple, idx);
        self.mark_dirty(idx);
        self.reschedule(idx);
    }

    /// Writes the next segment to send into `buf` (which should hold at
    /// least 60 bytes of header plus one MSS). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
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
            if !self.resets.is_empty() {
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

    /// Opens a listener on `addr:port` (`0.0.0.0` for any address) with
    /// room for `backlog` connections not yet accepted (half-open ones
    /// included).
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
            backlog: backlog.max(1),
            pending: 0,
            queue: VecDeque::new(),
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
            let _ = self.abort(c);
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

    /// Active OPEN from `local_addr:local_port` (port 0 picks an ephemeral
    /// port) to `remote_addr:remote_port`. The SYN goes out on the next
    /// `poll_transmit`; `Event::Connected` reports success.
    pub fn connect(
        &mut self,
        now: Instant,
        local_addr: Ipv4Addr,
        local_port: u16,
        remote_addr: Ipv4Addr,
        remote_port: u16,
    ) -> Result<ConnId, TcpError> {
        if self.connection_count() >= self.cfg.max_connections {
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
                (!self.conns.contains_key(&t)).then_some((t, i))
            });
            let Some((t, i)) = found else {
                return Err(TcpError::AddrInUse);
            };
            self.next_port = self.next_port.wrapping_add(i + 1);
            tuple = t;
        } else if self.conns.contains_key(&tuple) {
            return Err(TcpError::AddrInUse);
        }
        let iss = self
            .isn
            .isn(now, local_addr, tuple.local_port, remote_addr, remote_port);
        let tcb = Tcb::new_active(now, &self.cfg, tuple, iss);
        let idx = self.alloc(tcb);
        self.conns.insert(tuple, idx);
        self.stats.active_opens += 1;
        self.mark_dirty(idx);
        self.reschedule(idx);
        Ok(self.id_of(idx))
    }

    /// Reads received data. `Ok(0)` means end of stream (the peer sent
    /// FIN and everything before it has been read); `Err(WouldBlock)`
    /// means nothing yet; after an RST, `Err(ConnectionReset)`.
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

    /// Gives up the handle. The connection closes gracefully on its own
    /// (FIN, TIME_WAIT); with unread data it is reset instead.
    pub fn close(&mut self, now: Instant, id: ConnId) -> Result<(), TcpError> {
        let free = self.run_id(id, |tcb, ctx| tcb.close(now, ctx))?;
        if free {
            self.free_slot(id.idx);
        }
        Ok(())
    }

    /// Resets the connection (RST) and gives up the handle.
    pub fn abort(&mut self, id: ConnId) -> Result<(), TcpError> {
        self.run_id(id, |tcb, ctx| tcb.abort(ctx))?;
        self.free_slot(id.idx);
        Ok(())
    }

    /// Connection state.
    pub fn state(&self, id: ConnId) -> Result<State, TcpError> {
        self.tcb(id).map(Tcb::state).ok_or(TcpError::NotFound)
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

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    fn id_of(&self, idx: u32) -> ConnId {
        ConnId {
            idx,
            gen: self.slots.get(idx as usize).map_or(0, |s| s.gen),
        }
    }

    fn alloc(&mut self, tcb: Tcb) -> u32 {
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
    /// whatever changed: accept queues, the demux table, freeing, timers.
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
        if new == State::Closed {
            if self.conns.get(&tuple) == Some(&idx) {
                self.conns.remove(&tuple);
            }
            free |= tcb.is_orphan();
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
