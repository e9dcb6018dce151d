//! Timer expiry, as Linux's `tcp_timer.c`: retransmission (RFC 6298),
//! persist (RFC 9293 §3.8.6.1), keepalive (RFC 1122 §4.2.3.6), delayed
//! ACK, the orphaned FIN_WAIT_2 timeout and the CLOSE_WAIT warning.

use super::*;

/// The timers of one connection, by name (quinn-proto's
/// `connection/timer.rs`). Each has its own deadline in the [`TimerTable`];
/// `Tcb::on_timer` expires them in [`Timer::ORDER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// An orphan in FIN-WAIT-2 gives up (`tcp_fin_timeout`).
    FinWait2,
    /// The connection has sat in CLOSE-WAIT too long (`close_wait_warn`).
    CloseWait,
    /// Keepalive idle time or probe interval (RFC 1122 §4.2.3.6).
    Keepalive,
    /// Delayed ACK (RFC 9293 §3.8.6.3).
    DelayedAck,
    /// Zero-window probe (RFC 9293 §3.8.6.1). Never armed together with
    /// `Retransmit`.
    Persist,
    /// Retransmission timeout (RFC 6298).
    Retransmit,
}

impl Timer {
    /// Every timer, in the order `on_timer` runs them when several are due.
    pub(crate) const ORDER: [Timer; 6] = [
        Timer::FinWait2,
        Timer::CloseWait,
        Timer::Keepalive,
        Timer::DelayedAck,
        Timer::Persist,
        Timer::Retransmit,
    ];

    /// Its name in `xstack ss`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Timer::FinWait2 => "fin_wait2",
            Timer::CloseWait => "close_wait",
            Timer::Keepalive => "keepalive",
            Timer::DelayedAck => "delayed_ack",
            Timer::Persist => "persist",
            Timer::Retransmit => "retransmit",
        }
    }
}

/// One deadline per [`Timer`], in microseconds (`Instant`'s unit), with
/// `NOT_ARMED` for a stopped timer: 8 bytes a timer rather than the 16 of
/// an `Option<Instant>`, to keep the control block small.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerTable([u64; Timer::ORDER.len()]);

/// The deadline of a timer that is not running (584 542 years from time
/// zero, which no real deadline reaches).
const NOT_ARMED: u64 = u64::MAX;

impl Default for TimerTable {
    fn default() -> TimerTable {
        TimerTable([NOT_ARMED; Timer::ORDER.len()])
    }
}

impl TimerTable {
    /// Arms `timer` for `at` (re-arms it when it runs).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = at.0;
    }

    /// Arms `timer` for `at`, or stops it for `None`.
    pub(crate) fn set_or_stop(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer as usize] = at.map_or(NOT_ARMED, |t| t.0);
    }

    /// Stops `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = NOT_ARMED;
    }

    /// Stops every timer.
    pub(crate) fn stop_all(&mut self) {
        *self = TimerTable::default();
    }

    /// Whether `timer` is running.
    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.0[timer as usize] != NOT_ARMED
    }

    /// When `timer` fires, if it is running.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        let t = self.0[timer as usize];
        (t != NOT_ARMED).then_some(Instant(t))
    }

    /// The earliest deadline of any timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let t = self.0.iter().copied().min()?;
        (t != NOT_ARMED).then_some(Instant(t))
    }

    /// Stops `timer` and returns true if it is due at `now`.
    pub(crate) fn expire(&mut self, timer: Timer, now: Instant) -> bool {
        let t = &mut self.0[timer as usize];
        let due = *t != NOT_ARMED && *t <= now.0;
        if due {
            *t = NOT_ARMED;
        }
        due
    }
}

impl Tcb {
    /// Runs the timers that are due at `now`, in [`Timer::ORDER`]: the one
    /// place where timers expire.
    pub(crate) fn on_timer(&mut self, now: Instant, ctx: &mut Ctx) {
        for timer in Timer::ORDER {
            if !self.timers.expire(timer, now) {
                continue;
            }
            let closed = match timer {
                Timer::FinWait2 => self.on_fin_wait2_timeout(),
                Timer::CloseWait => {
                    self.on_close_wait_timer(now, ctx);
                    false
                }
                Timer::Keepalive => self.on_keepalive_timer(now, ctx),
                Timer::DelayedAck => {
                    self.set(ACK_NOW);
                    false
                }
                Timer::Persist => self.on_persist_timer(ctx),
                Timer::Retransmit => {
                    self.on_rto(now, ctx);
                    false
                }
            };
            if closed {
                return;
            }
        }
    }

    /// An orphan in FIN-WAIT-2 gives up after `tcp_fin_timeout` (silently,
    /// as Linux's FIN_WAIT2 timewait sockets). Returns true when it closed.
    fn on_fin_wait2_timeout(&mut self) -> bool {
        if self.state == State::FinWait2 && self.has(ORPHAN) {
            self.enter_closed();
            return true;
        }
        false
    }

    /// The connection has been in CLOSE-WAIT for `close_wait_warn`: the
    /// peer closed and the application has not. Warns the operator.
    fn on_close_wait_timer(&mut self, now: Instant, ctx: &mut Ctx) {
        if self.state != State::CloseWait {
            return;
        }
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

    /// RFC 9293 §3.8.6.1: the persist timer sends a probe and backs off. A
    /// peer that answers probes is never timed out (ACKs reset `retries`);
    /// one that stays silent is, after tcp_retries2 probes (as Linux's
    /// `tcp_probe_timer`). Returns true when the connection died.
    fn on_persist_timer(&mut self, ctx: &mut Ctx) -> bool {
        if self.retries >= ctx.cfg.tcp_retries2 {
            ctx.stats.abort_on_timeout += 1;
            self.error = Some(TcpError::TimedOut);
            self.event(ctx, Event::TimedOut(ctx.id));
            self.enter_closed();
            return true;
        }
        self.retries += 1;
        self.set(FORCE);
        self.rtt.back_off();
        ctx.stats.persist_probes += 1;
        false
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
            self.timers.set(Timer::Keepalive, now + time);
            return false;
        }
        let idle = now.saturating_since(self.last_rcv);
        if idle < time {
            self.timers.set(Timer::Keepalive, self.last_rcv + time);
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
        self.timers.set(Timer::Keepalive, now + intvl);
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
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }
}
