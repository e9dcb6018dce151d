//! SYN cookies (Linux `syncookies.c`): answering a SYN without keeping
//! state, validating the final ACK, and taking in the cookie ACKs the XDP
//! program already validated.

use super::*;

impl TcpEngine {
    /// Sets the SYN cookie secrets (the same ones the XDP program uses, so
    /// either side validates the other's cookies). Rotate with
    /// `Secrets::rotated`: the engine's check (`stack_ebpf::cookie::check`,
    /// as XDP's) tries `previous` only before its `previous_until`.
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

    /// Says whether the XDP program answers SYNs with cookies without the
    /// engine (`xstack serve` with a fast path whose `syncookies` is not
    /// `never`). XDP then passes every segment of a 4-tuple it knows to the
    /// engine unchecked, and the final ACK of a cookie SYN-ACK it sent on
    /// such a 4-tuple is the engine's to check: at a TIME_WAIT entry (the
    /// client reused its port), at a half-open request (the engine's own
    /// SYN-ACK was lost, and the client's retransmitted SYN met cookies;
    /// both in [`handle`](Self::handle)), or at the listener (the earlier
    /// connection on the 4-tuple is gone: [`cookies_expected`](Self::cookies_expected)).
    /// A cookie there opens the connection as
    /// [`on_cookie_ack`](Self::on_cookie_ack) does. Off, such an ACK is
    /// TIME_WAIT's, the request's or the listener's, as without XDP.
    pub fn set_xdp_cookies(&mut self, on: bool) {
        self.xdp_cookies = on;
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

    /// The final ACK of a handshake whose SYN-ACK the XDP program answered
    /// with a cookie (over IPv4 or IPv6) and whose cookie it has already validated (with the
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
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        segment: &[u8],
        opts: CookieOptions,
    ) -> Option<ConnId> {
        let (src, dst) = (src.into(), dst.into());
        self.stats.segments_in += 1;
        let seg = self.parse(now, src, dst, segment)?;
        self.cookie_ack_segment(now, src, dst, &seg, opts)
    }

    /// A segment on a 4-tuple the engine holds (a TIME_WAIT entry, or a
    /// half-open request it does not complete: the caller has looked) that
    /// may be the final ACK of a cookie SYN-ACK XDP sent there
    /// ([`set_xdp_cookies`](Self::set_xdp_cookies)): an ACK without SYN or
    /// RST that checks as a cookie (Linux `cookie_v4_check`, here as
    /// [`check_cookie`](Self::check_cookie)) is taken as
    /// [`on_cookie_ack`](Self::on_cookie_ack) takes one XDP validated.
    /// Returns whether it was. One hash, and only for such segments.
    pub(super) fn held_tuple_cookie_ack(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        tuple: &FourTuple,
        seg: &TcpRepr,
    ) -> bool {
        if seg.syn() || seg.rst() || seg.ack.is_none() {
            return false;
        }
        let Some(opts) = self.check_cookie(now, tuple, seg) else {
            return false;
        };
        self.stats.syncookies_held_tuple += 1;
        self.cookie_ack_segment(now, src, dst, seg, opts);
        true
    }

    /// [`on_cookie_ack`](Self::on_cookie_ack) past the parser.
    fn cookie_ack_segment(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpRepr,
        opts: CookieOptions,
    ) -> Option<ConnId> {
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
                self.handle_plain(now, src, dst, seg);
                return None;
            }
            self.stats.time_wait_syn_reopen += 1;
            self.tw_end(twi, true);
        }
        if let Some(&idx) = self.conns.get(&tuple) {
            if !self.cookie_supersedes_request(idx, seg) {
                self.handle_plain(now, src, dst, seg);
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
            Some(lid) => self.cookie_establish(now, lid, tuple, seg, opts),
            None => {
                self.no_socket(now, tuple, seg);
                None
            }
        }
    }

    /// Whether a cookie ACK (validated by XDP) for a 4-tuple with a
    /// connection replaces it: the connection is a half-open passive
    /// request (SYN_RECEIVED, not yet accepted) whose own SYN-ACK the ACK
    /// does not acknowledge.
    pub(super) fn cookie_supersedes_request(&self, idx: u32, seg: &TcpRepr) -> bool {
        let Some(tcb) = self.slots.get(idx as usize).and_then(|s| s.tcb.as_ref()) else {
            return false;
        };
        tcb.state() == State::SynReceived
            && tcb.is_passive()
            && tcb.listener.is_some()
            && !seg.syn()
            && !seg.rst()
            && seg.ack.is_some()
            && !tcb.completes_handshake(seg)
    }

    /// The cookie for a SYN on `tuple` (IPv4 [`Flow`] or IPv6 [`Flow6`]).
    fn cookie_generate(
        &self,
        now: Instant,
        tuple: &FourTuple,
        client_isn: u32,
        mss_idx: u32,
    ) -> u32 {
        let (secret, count) = (&self.cookie_secrets.current, self.cookie_count(now));
        match Self::flow(tuple) {
            Ok(f) => cookie::generate(secret, &f, client_isn, count, mss_idx),
            Err(f) => cookie::generate(secret, &f, client_isn, count, mss_idx),
        }
    }

    /// The cookie's flow: IPv4, or (`Err`) IPv6, whose hash covers both
    /// 128-bit addresses (Linux `secure_tcpv6_syn_cookie`).
    fn flow(tuple: &FourTuple) -> Result<Flow, Flow6> {
        match (tuple.remote_addr, tuple.local_addr) {
            (IpAddr::V4(saddr), IpAddr::V4(daddr)) => Ok(Flow {
                saddr: u32::from(saddr),
                daddr: u32::from(daddr),
                sport: tuple.remote_port,
                dport: tuple.local_port,
            }),
            (s, d) => Err(Flow6 {
                saddr: v6(s).octets(),
                daddr: v6(d).octets(),
                sport: tuple.remote_port,
                dport: tuple.local_port,
            }),
        }
    }

    /// Whether an ACK to a listener may carry a cookie: always with
    /// `tcp_syncookies` 2; with 1 only within two minutes (the cookie
    /// lifetime) of the listener sending one (Linux
    /// `tcp_synq_no_recent_overflow`), which keeps ACK floods from
    /// guessing at cookies the rest of the time. Always with XDP cookies
    /// ([`set_xdp_cookies`](Self::set_xdp_cookies)): XDP checks the ACKs of
    /// 4-tuples it does not know, and passes those of 4-tuples it knows
    /// (an earlier connection of the same client port) unchecked, so an
    /// ACK that reaches the listener may be the final ACK of a cookie
    /// SYN-ACK XDP sent.
    pub(super) fn cookies_expected(&self, now: Instant, lid: u32) -> bool {
        if self.xdp_cookies {
            return true;
        }
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
    pub(super) fn check_cookie(
        &self,
        now: Instant,
        tuple: &FourTuple,
        seg: &TcpRepr,
    ) -> Option<CookieOptions> {
        let ack = seg.ack?;
        let (isn, c, count) = (
            seg.seq.get().wrapping_sub(1),
            ack.get().wrapping_sub(1),
            self.cookie_count(now),
        );
        let idx = match Self::flow(tuple) {
            Ok(f) => cookie::check(&self.cookie_secrets, &f, isn, c, count),
            Err(f) => cookie::check(&self.cookie_secrets, &f, isn, c, count),
        }?;
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
    pub(super) fn send_cookie(&mut self, now: Instant, lid: u32, tuple: FourTuple, syn: &TcpRepr) {
        let our_mss = self.cfg.mss_for(tuple.is_ipv6());
        let peer_mss = syn.options.mss.unwrap_or(cookie::MSS_TABLE[0]).min(our_mss);
        let mss_idx = cookie::mss_index(peer_mss);
        let iss = self.cookie_generate(now, &tuple, syn.seq.get(), mss_idx);
        let mut options = TcpOptions {
            mss: Some(our_mss),
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
    pub(super) fn cookie_establish(
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
}
