//! Listeners, their SYN queues and accept queues, and the LISTEN state of
//! RFC 9293 §3.10.7.2 with Linux's `tcp_conn_request` queue rules (Linux
//! `inet_connection_sock.c`).

use super::*;

#[derive(Debug)]
pub(super) struct Listener {
    pub(super) addr: IpAddr,
    /// Further addresses it is bound to ([`TcpEngine::listen_also`]): a
    /// dual-stack listener holds one of each family.
    pub(super) also: Vec<IpAddr>,
    pub(super) port: u16,
    /// Accept queue bound: min(backlog, somaxconn).
    pub(super) accept_max: usize,
    /// Half-open connections (SYN-RECEIVED) from this listener: the SYN
    /// queue, bounded by `tcp_max_syn_backlog`.
    pub(super) pending: usize,
    /// Established connections waiting for `accept`.
    pub(super) queue: VecDeque<ConnId>,
    /// When this listener last answered with a SYN cookie (Linux
    /// `tcp_synq_overflow`): with `tcp_syncookies` 1, ACKs are checked as
    /// cookies only for two minutes after that (`tcp_synq_no_recent_overflow`).
    pub(super) last_cookie: Option<Instant>,
    /// Connections from this listener in CLOSE_WAIT, kept as they move
    /// (so that `listener_stats` never walks the connections).
    pub(super) close_wait: usize,
    /// (entered CLOSE_WAIT, slot, generation) in the order they entered:
    /// the front is the oldest still there (entries of connections that
    /// left are dropped from the front as they reach it, and the queue
    /// is compacted when they outnumber the live ones).
    pub(super) close_wait_since: VecDeque<(Instant, u32, u32)>,
}

impl TcpEngine {
    /// Opens a listener on `addr:port` (`0.0.0.0` for any IPv4 address,
    /// `::` for any address of either family, as Linux's default
    /// `IPV6_V6ONLY` 0) whose accept queue holds min(`backlog`,
    /// `somaxconn`) established connections; half-open ones wait in its
    /// SYN queue (`tcp_max_syn_backlog`).
    pub fn listen(
        &mut self,
        addr: impl Into<IpAddr>,
        port: u16,
        backlog: usize,
    ) -> Result<ListenerId, TcpError> {
        let addr = addr.into();
        if self.listen_map.contains_key(&(addr, port)) {
            return Err(TcpError::AddrInUse);
        }
        let l = Listener {
            addr,
            also: Vec::new(),
            port,
            accept_max: backlog.min(self.cfg.somaxconn).max(1),
            pending: 0,
            queue: VecDeque::new(),
            last_cookie: None,
            close_wait: 0,
            close_wait_since: VecDeque::new(),
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

    /// Binds listener `id` also to `addr` (on its port): one listener, one
    /// accept queue, for an IPv4 and an IPv6 address of a dual-stack
    /// service.
    pub fn listen_also(&mut self, id: ListenerId, addr: impl Into<IpAddr>) -> Result<(), TcpError> {
        let addr = addr.into();
        let l = self
            .listeners
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(TcpError::NotFound)?;
        if self.listen_map.contains_key(&(addr, l.port)) {
            return Err(TcpError::AddrInUse);
        }
        l.also.push(addr);
        self.listen_map.insert((addr, l.port), id.0);
        Ok(())
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
        for a in &l.also {
            self.listen_map.remove(&(*a, l.port));
        }
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
        for slot in self.slots.iter_mut() {
            if let Some(t) = slot.tcb.as_mut().filter(|t| t.origin == id.0) {
                t.origin = u32::MAX;
            }
        }
        Ok(())
    }

    /// The listener on exactly `addr:port`, if one is open (the socket
    /// API binds to a listener the bring-up already opened).
    pub fn listener_on(&self, addr: impl Into<IpAddr>, port: u16) -> Option<ListenerId> {
        self.listen_map
            .get(&(addr.into(), port))
            .map(|&i| ListenerId(i))
    }

    /// Takes an established connection from a listener's queue.
    pub fn accept(&mut self, listener: ListenerId) -> Option<ConnId> {
        self.listeners
            .get_mut(listener.0 as usize)?
            .as_mut()?
            .queue
            .pop_front()
    }

    /// Every listener's queues and CLOSE_WAIT accounting at `now`. Walks
    /// all control blocks (O(connections)): meant for a stats request, not
    /// for every packet.
    pub fn listener_stats(&self, now: Instant) -> Vec<ListenerStats> {
        // O(listeners): the CLOSE_WAIT counts and their oldest entry are
        // kept as connections move (`close_wait_moved`).
        self.listeners
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
                    close_wait: l.close_wait,
                    oldest_close_wait: (l.close_wait > 0)
                        .then(|| l.close_wait_since.front())
                        .flatten()
                        .map(|(since, _, _)| now.saturating_since(*since)),
                })
            })
            .collect()
    }

    /// Whether the CLOSE_WAIT queue entry (`since`, `idx`, `gen`) is a
    /// connection still in CLOSE_WAIT since then.
    fn close_wait_entry_live(&self, since: Instant, idx: u32, gen: u32) -> bool {
        self.slots.get(idx as usize).is_some_and(|s| {
            s.gen == gen
                && s.tcb
                    .as_ref()
                    .is_some_and(|t| t.state() == State::CloseWait && t.state_since == since)
        })
    }

    /// Keeps listener `origin`'s CLOSE_WAIT count and queue as the
    /// connection in slot `idx` (generation `gen`) moves from `old` to
    /// `new` (`None`: freed), having entered `new` at `since`. O(1)
    /// amortised.
    pub(super) fn close_wait_moved(
        &mut self,
        origin: u32,
        idx: u32,
        gen: u32,
        old: Option<State>,
        new: Option<State>,
        since: Instant,
    ) {
        if origin == u32::MAX || old == new {
            return;
        }
        let entered = new == Some(State::CloseWait);
        let left = old == Some(State::CloseWait);
        if !entered && !left {
            return;
        }
        let Some(Some(l)) = self.listeners.get_mut(origin as usize) else {
            return;
        };
        if entered {
            l.close_wait += 1;
            l.close_wait_since.push_back((since, idx, gen));
            return;
        }
        l.close_wait = l.close_wait.saturating_sub(1);
        // Drop entries that are no longer in CLOSE_WAIT from the front, so
        // the front is the oldest one still there.
        let mut q = std::mem::take(&mut l.close_wait_since);
        let live = l.close_wait;
        while let Some(&(t, i, g)) = q.front() {
            if self.close_wait_entry_live(t, i, g) {
                break;
            }
            q.pop_front();
        }
        if q.len() > 2 * live + 64 {
            q.retain(|&(t, i, g)| self.close_wait_entry_live(t, i, g));
        }
        if let Some(Some(l)) = self.listeners.get_mut(origin as usize) {
            l.close_wait_since = q;
        }
    }

    /// The listener for a segment to `addr:port`: bound to the address,
    /// else to its family's any address, else (IPv4) to `::`.
    pub(super) fn find_listener(&self, addr: IpAddr, port: u16) -> Option<u32> {
        const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let any = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => ANY6,
        };
        self.listen_map
            .get(&(addr, port))
            .or_else(|| self.listen_map.get(&(any, port)))
            .or_else(|| self.listen_map.get(&(ANY6, port)))
            .copied()
    }

    /// The final ACK of a passive open finds the accept queue full (Linux
    /// `tcp_check_req` → `listen_overflow`): with `tcp_abort_on_overflow`
    /// the half-open connection is reset, otherwise the ACK is dropped and
    /// the SYN-ACK timer goes on, so the handshake completes when the
    /// application has made room. Returns true when the segment was taken.
    pub(super) fn accept_queue_refuses(
        &mut self,
        idx: u32,
        tuple: FourTuple,
        seg: &TcpRepr,
    ) -> bool {
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
    pub(super) fn accept_overflow(&mut self, tuple: FourTuple, seg: &TcpRepr) -> bool {
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

    /// RFC 9293 §3.10.7.2, LISTEN, with Linux's `tcp_conn_request` queue
    /// rules and SYN cookies. `iss` is set when the SYN reopens a TIME_WAIT
    /// 4-tuple (RFC 6191; Linux uses the old SND.NXT + 65537).
    pub(super) fn on_listen(
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
            self.stats.listen_rst_ignored += 1;
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
            self.stats.listen_ack_reset += 1;
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
}
