//! Application calls on one connection (RFC 9293 §3.10: RECEIVE, SEND,
//! CLOSE, ABORT) and its socket options (TCP_NODELAY, SO_KEEPALIVE,
//! SO_LINGER).

use super::*;

impl Tcb {
    /// RECEIVE (RFC 9293 §3.10.3).
    pub(crate) fn read(&mut self, dst: &mut [u8], pool: &mut BufPool) -> Result<usize, TcpError> {
        self.clear(READ_NOTIFIED);
        let n = self.rcv.read(dst, pool);
        if n > 0 {
            // Window update if the window at least doubles and grows by the
            // SWS threshold (RFC 9293 §3.8.6.2.2; Linux's rule).
            let free = self.rcv.free().min(65_535 << self.rcv_wscale);
            let cur = self.rcv_wnd();
            let threshold = (self.rcv.capacity() / 2)
                .min(u32::from(self.rcv_mss))
                .max(1);
            if self.state.is_synchronized()
                && !self.has(FIN_RCVD)
                && free >= cur.saturating_add(threshold)
                && free >= cur.saturating_mul(2)
            {
                self.set(ACK_NOW);
            }
            return Ok(n);
        }
        if dst.is_empty() {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.has(FIN_RCVD) || self.state == State::Closed {
            return Ok(0);
        }
        Err(TcpError::WouldBlock)
    }

    /// Bytes ready to read.
    pub(crate) fn readable(&self) -> usize {
        self.rcv.len()
    }

    /// SEND (RFC 9293 §3.10.2).
    pub(crate) fn write(&mut self, src: &[u8], pool: &mut BufPool) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(if e == TcpError::ConnectionReset {
                TcpError::BrokenPipe
            } else {
                e
            });
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Listen => return Err(TcpError::InvalidState),
            _ => return Err(TcpError::BrokenPipe),
        }
        if self.has(FIN_QUEUED) {
            return Err(TcpError::BrokenPipe);
        }
        let n = self.snd.write(src, pool);
        if n < src.len() {
            self.set(WRITE_BLOCKED);
        }
        if n == 0 && !src.is_empty() {
            return Err(TcpError::WouldBlock);
        }
        Ok(n)
    }

    /// Room in the send buffer, asked by an application that will wait for
    /// a Writable event when there is none: that wait is armed here, as
    /// Linux's `tcp_poll` sets SOCK_NOSPACE so that freed space wakes the
    /// writer (`sk_stream_write_space`). Without it an application that
    /// paces its reads on its output (an echo) would never be woken: it
    /// stops reading, the receive window closes, no data comes to wake it.
    pub(crate) fn poll_writable(&mut self) -> usize {
        let n = self.snd.free();
        if n == 0 {
            self.set(WRITE_BLOCKED);
        }
        n
    }

    /// CLOSE of the send direction only (half-close, RFC 9293 §3.10.4).
    pub(crate) fn shutdown(&mut self) -> Result<(), TcpError> {
        match self.state {
            // "queue this until all preceding SENDs have been segmentized,
            // then form a FIN segment and send it. In any case, enter
            // FIN-WAIT-1 state."
            State::Established => {
                self.set(FIN_QUEUED);
                self.set_state(State::FinWait1);
            }
            // CLOSE-WAIT: "Queue this request until all preceding SENDs have
            // been segmentized; then send a FIN segment, enter LAST-ACK."
            State::CloseWait => {
                self.set(FIN_QUEUED);
                self.set_state(State::LastAck);
            }
            // Not yet established: the FIN waits for ESTABLISHED.
            State::SynSent | State::SynReceived => self.set(FIN_QUEUED),
            State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck
            | State::TimeWait => {}
            State::Listen => return Err(TcpError::InvalidState),
            State::Closed => return Err(self.error.unwrap_or(TcpError::InvalidState)),
        }
        Ok(())
    }

    /// The application gives up its handle. Returns true when the block
    /// can be freed now; otherwise the connection finishes on its own.
    pub(crate) fn close(&mut self, now: Instant, ctx: &mut Ctx) -> bool {
        if self.has(LINGER0) && self.state != State::Closed {
            // SO_LINGER 0: abortive close (RST, no TIME_WAIT), as Linux's
            // tcp_close → tcp_disconnect (TCPAbortOnLinger).
            ctx.stats.abort_on_linger += 1;
            self.abort(ctx);
            return true;
        }
        if !self.rcv.is_empty()
            && matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
            )
        {
            // RFC 2525 §2.17: closing with unread data resets the
            // connection (as Linux does) so the peer learns data was lost
            // (TCPAbortOnClose); the data is discarded.
            ctx.stats.abort_on_close += 1;
            self.rcv = RecvBuffer::new(0);
            self.abort(ctx);
            return true;
        }
        self.set(ORPHAN);
        match self.state {
            State::Closed | State::Listen => true,
            // SYN-SENT: "Delete the TCB".
            State::SynSent => {
                self.enter_closed();
                true
            }
            State::SynReceived | State::Established | State::CloseWait => {
                let _ = self.shutdown();
                false
            }
            State::FinWait2 => {
                self.timers
                    .set(Timer::FinWait2, now + ctx.cfg.tcp_fin_timeout);
                false
            }
            _ => false,
        }
    }

    /// ABORT (RFC 9293 §3.10.5): RST in SYN-RECEIVED, ESTABLISHED,
    /// FIN-WAIT-1/2 and CLOSE-WAIT (<SEQ=SND.NXT><CTL=RST>); silently
    /// otherwise. The block can be freed afterwards.
    pub(crate) fn abort(&mut self, ctx: &mut Ctx) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            let seq = self
                .snd_max
                .min(self.snd_una + self.snd_wnd)
                .max(self.snd_una);
            ctx.reset(RstSegment {
                tuple: self.tuple,
                seq,
                ack: None,
            });
        }
        self.error = Some(TcpError::ConnectionAborted);
        self.enter_closed();
    }

    /// Sets or clears TCP_NODELAY (disables Nagle, RFC 9293 §3.7.4).
    pub(crate) fn set_nodelay(&mut self, on: bool) {
        if on {
            self.set(NODELAY)
        } else {
            self.clear(NODELAY)
        }
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT (`Some`), or off.
    /// As Linux, the first probe is due `time` after this call or after
    /// the last segment received, whichever is later.
    pub(crate) fn set_keepalive(&mut self, now: Instant, ka: Option<KeepaliveConfig>) {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1);
        match ka {
            Some(k) => {
                self.set(KEEPALIVE);
                self.ka_time_ms = ms(k.time);
                self.ka_intvl_ms = ms(k.intvl);
                self.ka_probes = k.probes;
                self.ka_probes_out = 0;
                let due = (self.state != State::Closed && self.state != State::TimeWait)
                    .then(|| now + k.time);
                self.timers.set_or_stop(Timer::Keepalive, due);
            }
            None => {
                self.clear(KEEPALIVE | KA_PROBE);
                self.timers.stop(Timer::Keepalive);
            }
        }
    }

    /// SO_LINGER: `Some(0)` makes `close` abortive (RST, no TIME_WAIT).
    /// Other timeouts change nothing: `close` never blocks in a sans-IO
    /// engine, and Linux, too, finishes a lingering close in the
    /// background.
    pub(crate) fn set_linger(&mut self, linger: Option<Duration>) {
        if linger == Some(Duration::ZERO) {
            self.set(LINGER0)
        } else {
            self.clear(LINGER0)
        }
    }
}
