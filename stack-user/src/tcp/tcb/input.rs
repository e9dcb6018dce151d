//! Segment arrival (RFC 9293 §3.10.7), as Linux's `tcp_input.c`: the
//! SYN-SENT and synchronized-state checks in RFC order, ACK processing,
//! duplicate ACKs and fast recovery, data and FIN.

use super::*;
use crate::tcp::ratelimit::oow_ack_allowed;

impl Tcb {
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
        // this one reuses (RFC 7323 §5, Linux tcp_tw_reuse), on a SYN
        // without ACK only, as Linux's `tcp_rcv_synsent_state_process`: an
        // old duplicate SYN,ACK already fails the ACK check above (it
        // acknowledges the old ISS, below the new one), while the SYN,ACK of
        // this incarnation may carry a TSval from another clock than the
        // server's later segments: a SYN cookie's (XDP makes them on the
        // host clock without the per-pair offset; the server's segments
        // after it never fall below it). Dropping it would refuse every
        // SYN of a reused tuple while the server answers with cookies.
        if let (true, Some(ts), None) = (self.has(TS_RECENT), seg.options.timestamps, seg.ack) {
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
                self.set_state(State::SynReceived);
                self.snd_nxt = self.iss;
                self.rtt_start = None;
                self.timers.stop(Timer::Retransmit);
            }
        }
    }

    /// SYN-RECEIVED → ESTABLISHED (or FIN-WAIT-1 if the application already
    /// shut down its side).
    fn establish(&mut self, ctx: &mut Ctx) {
        ctx.stats.established += 1;
        self.set_state(if self.has(FIN_QUEUED) {
            State::FinWait1
        } else {
            State::Established
        });
        if !self.has(PASSIVE) {
            self.event(ctx, Event::Connected(ctx.id));
        }
    }

    /// RFC 9293 §3.10.7.4 (first step): the four-case acceptability test,
    /// with the right edge inclusive for a segment without data, as Linux's
    /// `tcp_sequence` has it: a peer that filled our window sends its pure
    /// ACKs from SEG.SEQ = RCV.NXT + RCV.WND, and while a hole is open
    /// (RCV.WND > 0) the strict "SEG.SEQ < RCV.NXT+RCV.WND" would throw
    /// away its acknowledgments and window updates until the hole fills.
    /// With RCV.WND = 0 this is the RFC's own case (SEG.SEQ = RCV.NXT).
    fn acceptable(&self, seg: &TcpRepr) -> bool {
        let len = seg.seq_len() as u32;
        let wnd = self.rcv_wnd();
        let (nxt, seq) = (self.rcv_nxt, seg.seq);
        match (len, wnd) {
            (0, _) => nxt <= seq && seq <= nxt + wnd,
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
                self.set_state(State::FinWait2);
                if self.has(ORPHAN) {
                    self.timers
                        .set(Timer::FinWait2, now + ctx.cfg.tcp_fin_timeout);
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
                self.timers.stop(Timer::Persist);
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
            self.snd
                .consume(acked_to.dist(self.snd_buf_start) as usize, ctx.pool);
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
        self.timers.stop(Timer::Persist);
        let rto = (self.snd_una != self.snd_max).then(|| now + self.rtt.rto());
        self.timers.set_or_stop(Timer::Retransmit, rto);
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
        if (u32::from(self.dupacks) >= crate::tcp::sack::DUP_THRESH || lost)
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
        } else if u32::from(self.dupacks) < crate::tcp::sack::DUP_THRESH {
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
            let (nxt, filled) = self.rcv.push_in_order(self.rcv_nxt, data, ctx.pool);
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
            } else if !self.timers.is_armed(Timer::DelayedAck) {
                self.timers
                    .set(Timer::DelayedAck, now + ctx.cfg.delayed_ack);
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
                self.set_state(State::CloseWait);
                self.state_since = now;
                if let Some(d) = ctx.cfg.close_wait_warn {
                    self.timers.set(Timer::CloseWait, now + d);
                }
            }
            // FIN-WAIT-1: "If our FIN has been ACKed ... enter TIME-WAIT ...;
            // otherwise, enter the CLOSING state" (simultaneous close).
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait();
                } else {
                    self.set_state(State::Closing);
                }
            }
            // FIN-WAIT-2: "Enter the TIME-WAIT state."
            State::FinWait2 => self.enter_time_wait(),
            _ => {}
        }
    }
}
