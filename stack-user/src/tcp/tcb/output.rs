//! What to send, as Linux's `tcp_output.c`: the advertised window, one
//! segment's header and options, new data under Nagle and the congestion
//! window, retransmissions, probes and bare ACKs.

use super::*;

impl Tcb {
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
        let tsval = self.ts_now(now);
        // The header is built in place (options written into it, not built
        // apart and moved in: that move read them back with wide loads over
        // their narrower stores, a stall the CPU cannot forward around).
        let mut repr = TcpRepr {
            src_port: self.tuple.local_port,
            dst_port: self.tuple.remote_port,
            seq,
            ack: (self.state != State::SynSent).then_some(self.rcv_nxt),
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        let options = &mut repr.options;
        repr.window = if syn {
            let w = self.rcv.free().min(65_535);
            self.rcv_adv = self.rcv_nxt + w;
            // Options of a SYN: offer what is configured; of a SYN,ACK:
            // what was negotiated (RFC 7323 §2.2, §3.2; RFC 2018 §2).
            let active = self.state == State::SynSent;
            let offer = |f: u32, on: bool| if active { on } else { self.flags & f != 0 };
            options.mss = Some(cfg.mss_for(self.tuple.is_ipv6()));
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
        let hlen = repr.header_len();
        let room = buf
            .len()
            .checked_sub(hlen)?
            .min(usize::from(u16::MAX) - hlen);
        // RFC 9293 §3.7.1, RFC 6691: the MSS bounds data plus options; SMSS
        // already leaves room for timestamps, so whatever else a segment
        // carries (SACK blocks, RFC 2018 §4) comes out of its payload, as
        // Linux's `tcp_current_mss` does. Otherwise a full segment with
        // SACK blocks exceeds the path MTU and is dropped — retransmissions
        // included, for as long as the peer's data has a hole.
        let fixed = crate::wire::tcp::HEADER_LEN + if self.has(TS) { 12 } else { 0 };
        let mss_room = usize::from(self.smss).saturating_sub(hlen.saturating_sub(fixed));
        let plen = payload_len.min(room).min(mss_room.max(1));
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
            self.timers.stop(Timer::DelayedAck);
            self.unacked_bytes = 0;
        }
        ctx.stats.segments_out += 1;
        ctx.stats.bytes_out += plen as u64;
        Some((total, plen))
    }

    /// Sends the sequence range [seq, seq + len) (data, then FIN if the
    /// range reaches it) and does the bookkeeping of SND.NXT/SND.MAX, RTT
    /// timing and the retransmission timer. Returns the frame length and
    /// how much of the range went out (less than `len` when options took
    /// room from the payload).
    fn send_range(
        &mut self,
        now: Instant,
        ctx: &mut Ctx,
        buf: &mut [u8],
        seq: SeqNumber,
        len: u32,
    ) -> Option<(usize, u32)> {
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
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.stop(Timer::Persist);
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        Some((total, end.dist(seq)))
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
                if !self.timers.is_armed(Timer::Retransmit) && !self.timers.is_armed(Timer::Persist)
                {
                    self.timers.set(Timer::Retransmit, now + self.rtt.rto());
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

    /// Whether [`poll_transmit`](Self::poll_transmit) may have something
    /// to do: false only when it would surely return `None` and change
    /// nothing, so that the engine need not queue the connection for it
    /// (the same cases, in the same order; FORCE counts, as the poll that
    /// finds nothing to send clears it).
    pub(crate) fn may_transmit(&self) -> bool {
        match self.state {
            State::Closed | State::Listen => false,
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => true,
            State::SynSent => false,
            State::SynReceived | State::TimeWait => self.has(ACK_NOW),
            _ => {
                let data_end = self.data_end();
                self.has(ACK_NOW | KA_PROBE | RTX_UNA | FORCE)
                    || (self.has(RECOVERY) && self.has(SACK))
                    || data_end > self.snd_nxt
                    || (self.has(FIN_QUEUED) && self.snd_nxt <= data_end)
            }
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
                let (total, sent) = self.send_range(now, ctx, buf, una, len)?;
                self.high_rxt = self.high_rxt.max(una + sent);
                return Some(total);
            }
        }
        let sack_recovery = self.has(RECOVERY) && self.has(SACK);
        let data_end = self.data_end();
        let unsent = data_end.dist(self.snd_nxt);
        let fin_unsent = self.has(FIN_QUEUED) && self.snd_nxt <= data_end;
        if unsent == 0 && !fin_unsent && !sack_recovery {
            // Nothing new to send and no SACK retransmission to look for
            // (the most common call: an ACK is all that may be owed).
            self.clear(FORCE);
            return None;
        }
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
                let (total, sent) = self.send_range(now, ctx, buf, s, len)?;
                self.high_rxt = s + sent;
                ctx.stats.sack_retransmits += 1;
                return Some(total);
            }
        }
        // New data (or data again after a timeout) at SND.NXT, then FIN
        // (the SACK retransmission above sent nothing: the same values).
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
                self.timers.stop(Timer::Retransmit);
                self.timers.set(Timer::Persist, now + self.rtt.rto());
                return Some(total);
            }
            // Nothing in flight and nothing sendable: the persist timer
            // makes sure the window is probed (RFC 9293 §3.8.6.1) and
            // overrides SWS avoidance eventually (§3.8.6.2.1).
            if idle
                && !self.timers.is_armed(Timer::Retransmit)
                && !self.timers.is_armed(Timer::Persist)
            {
                self.timers.set(Timer::Persist, now + self.rtt.rto());
            }
            return None;
        }
        self.clear(FORCE);
        let with_fin = u32::from(self.has(FIN_QUEUED) && len == unsent);
        let nxt = self.snd_nxt;
        self.send_range(now, ctx, buf, nxt, len + with_fin)
            .map(|(total, _)| total)
    }
}
