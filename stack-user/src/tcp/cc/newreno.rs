//! NewReno window arithmetic (RFC 5681 §3.1, RFC 6582 §3.2).

use std::time::Duration;

use super::{initial_window, reduced, slow_start_increase, CongestionControl};
use crate::time::Instant;

/// AIMD with beta = 1/2.
#[derive(Clone, Debug)]
pub struct NewReno {
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acked since the last congestion-avoidance increase.
    acked_acc: u32,
}

impl NewReno {
    /// Initial window per RFC 6928; ssthresh "arbitrarily high" (§3.1).
    pub fn new(mss: u32) -> NewReno {
        NewReno {
            cwnd: initial_window(mss),
            ssthresh: u32::MAX,
            acked_acc: 0,
        }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, acked: u32, mss: u32, _srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 eq. 2 (slow start).
            self.cwnd = self.cwnd.saturating_add(slow_start_increase(acked, mss));
        } else {
            // RFC 5681 §3.1 eq. 3, byte counting variant: one SMSS per
            // cwnd of acknowledged data.
            self.acked_acc = self.acked_acc.saturating_add(acked);
            if self.acked_acc >= self.cwnd {
                self.acked_acc -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(mss);
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, flight: u32, mss: u32) {
        // RFC 5681 §3.2 step 2 (eq. 4): ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = reduced(flight, 0.5, mss);
        self.cwnd = self.ssthresh;
        self.acked_acc = 0;
    }
    fn on_rto(&mut self, _now: Instant, flight: u32, mss: u32) {
        // RFC 5681 §3.1 eq. 4, then cwnd = LW = 1 SMSS.
        self.ssthresh = reduced(flight, 0.5, mss);
        self.cwnd = mss;
        self.acked_acc = 0;
    }
    fn on_recovery_exit(&mut self, flight: u32, mss: u32) {
        self.cwnd = self.ssthresh.min(flight.max(mss) + mss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_avoidance_adds_one_mss_per_window() {
        let mss = 1000;
        let mut c = NewReno::new(mss);
        c.on_congestion_event(Instant::ZERO, 20_000, mss);
        assert_eq!(c.cwnd(), 10_000);
        for _ in 0..9 {
            c.on_ack(Instant::ZERO, 1000, mss, None);
        }
        assert_eq!(c.cwnd(), 10_000);
        c.on_ack(Instant::ZERO, 1000, mss, None);
        assert_eq!(c.cwnd(), 11_000);
        c.on_recovery_exit(3000, mss);
        assert_eq!(c.cwnd(), 4000);
    }
}
