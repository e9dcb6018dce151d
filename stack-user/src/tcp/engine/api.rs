//! The application API on connections: active OPEN, RECEIVE, SEND, CLOSE,
//! ABORT (RFC 9293 §3.10), socket options and inspection.

use super::*;

impl TcpEngine {
    /// Active OPEN from `local_addr:local_port` (port 0 picks an ephemeral
    /// port) to `remote_addr:remote_port`. The SYN goes out on the next
    /// `poll_transmit`; `Event::Connected` reports success. A 4-tuple in
    /// TIME_WAIT is taken over when `tcp_tw_reuse` or `tw_isn_above_last`
    /// allows it (the new ISN is the old SND.NXT + 65537, as Linux);
    /// otherwise it is `AddrInUse`. Both addresses IPv4 or both IPv6
    /// (else `AddrFamily`).
    pub fn connect(
        &mut self,
        now: Instant,
        local_addr: impl Into<IpAddr>,
        local_port: u16,
        remote_addr: impl Into<IpAddr>,
        remote_port: u16,
    ) -> Result<ConnId, TcpError> {
        let (local_addr, remote_addr) = (local_addr.into(), remote_addr.into());
        if local_addr.is_ipv4() != remote_addr.is_ipv4() {
            return Err(TcpError::AddrFamily);
        }
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
        // The TIME_WAIT entry the new connection takes over, if any.
        let in_tw;
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
                if self.shard.1.owner(&t) != self.shard.0 {
                    return None;
                }
                self.tuple_use(now, &t).map(|tw| (t, i, tw))
            });
            let Some((t, i, tw)) = found else {
                return Err(TcpError::AddrInUse);
            };
            self.next_port = self.next_port.wrapping_add(i + 1);
            tuple = t;
            in_tw = tw;
        } else {
            in_tw = self.tuple_use(now, &tuple).ok_or(TcpError::AddrInUse)?;
        }
        let mut iss = self
            .isn
            .isn(now, local_addr, tuple.local_port, remote_addr, remote_port);
        let mut inherit_ts = None;
        if let Some(twi) = in_tw {
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

    /// Whether `connect` can use `tuple`: `Some(None)` when it is free,
    /// `Some(Some(entry))` when it is in a reusable TIME_WAIT entry (looked
    /// up once, for `connect` to take over), `None` when it is taken.
    pub(super) fn tuple_use(&self, now: Instant, tuple: &FourTuple) -> Option<Option<u32>> {
        if self.conns.contains_key(tuple) {
            return None;
        }
        match self.tw.lookup(tuple) {
            None => Some(None),
            Some(twi) => match self.tw.get(twi) {
                Some(e) if !self.tw_reusable(now, e) => None,
                _ => Some(Some(twi)),
            },
        }
    }

    /// Reads received data. `Ok(0)` means end of stream (the peer sent
    /// FIN and everything before it has been read); `Err(WouldBlock)`
    /// means nothing yet; after an RST, `Err(ConnectionReset)`; after a
    /// retransmission or keepalive timeout, `Err(TimedOut)`.
    pub fn read(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, TcpError> {
        self.run_id(id, |tcb, ctx| tcb.read(buf, ctx.pool))?
    }

    /// Queues data to send; returns how much fit (`Err(WouldBlock)` when
    /// none did). After an RST, `Err(BrokenPipe)`.
    pub fn write(&mut self, id: ConnId, data: &[u8]) -> Result<usize, TcpError> {
        self.run_id(id, |tcb, ctx| tcb.write(data, ctx.pool))?
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
            if tcb.state() != State::Closed {
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

    /// Room in the send buffer. When there is none, a Writable event is
    /// armed for when ACKs free some (as for a short `write`), so an
    /// application that waits for it after seeing 0 is woken.
    pub fn send_space(&mut self, id: ConnId) -> Result<usize, TcpError> {
        self.run_id(id, |tcb, _| tcb.poll_writable())
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

    /// The `ss -tnoi` view of up to `limit` live connections, in slot
    /// order (TIME_WAIT entries live in their own table: see
    /// `state_counts`). Walks the slots: for `xstack ss`, never the hot path.
    pub fn sockets(&self, now: Instant, limit: usize) -> Vec<crate::tcp::tcb::TcpInfo> {
        self.slots
            .iter()
            .filter_map(|s| s.tcb.as_ref())
            .filter(|t| t.state() != State::Closed)
            .take(limit)
            .map(|t| t.info(now))
            .collect()
    }

    /// The connection for a 4-tuple (from our point of view).
    pub fn lookup(&self, tuple: &FourTuple) -> Option<ConnId> {
        self.conns.get(tuple).map(|&idx| self.id_of(idx))
    }

    /// True when `tuple` is in the TIME_WAIT table.
    pub fn in_time_wait(&self, tuple: &FourTuple) -> bool {
        self.tw.lookup(tuple).is_some()
    }
}
