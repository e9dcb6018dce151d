//! Timer expiry, as Linux's `tcp_timer.c`: retransmission (RFC 6298),
//! persist (RFC 9293 §3.8.6.1), keepalive (RFC 1122 §4.2.3.6), delayed
//! ACK, the orphaned FIN_WAIT_2 timeout and the CLOSE_WAIT warning.

use super::*;

impl Tcb {
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
}
