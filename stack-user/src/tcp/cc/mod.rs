//! Congestion control behind a trait (RFC 5681 framework), with NewReno
//! (RFC 5681 / RFC 6582) and CUBIC (RFC 9438). CUBIC is the default, as on
//! Linux.
//!
//! The connection owns loss detection and recovery (fast retransmit,
//! NewReno partial ACKs, SACK pipe); an algorithm only decides how the
//! window grows on ACKs and shrinks on congestion events.

use std::time::Duration;

use crate::time::Instant;

pub mod cubic;
pub mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

/// The hooks a congestion-control algorithm implements. Windows are bytes.
pub trait CongestionControl {
    /// Congestion window.
    fn cwnd(&self) -> u32;
    /// Slow-start threshold.
    fn ssthresh(&self) -> u32;
    /// `acked` bytes of new data were cumulatively acknowledged outside
    /// loss recovery. `srtt` is the smoothed RTT, if measured.
    fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, srtt: Option<Duration>);
    /// Loss detected by duplicate ACKs or SACK: set ssthresh and cwnd for
    /// fast recovery (RFC 5681 §3.2 step 2 / RFC 9438 §4.6).
    fn on_congestion_event(&mut self, now: Instant, flight: u32, mss: u32);
    /// The retransmission timer expired (RFC 5681 §3.1 eq. 4, cwnd = LW).
    fn on_rto(&mut self, now: Instant, flight: u32, mss: u32);
    /// Fast recovery ended with a full ACK (RFC 6582 §3.2 step 3, option 2:
    /// cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)).
    fn on_recovery_exit(&mut self, flight: u32, mss: u32);
}

/// Which algorithm a connection uses (sysctl `tcp_congestion_control`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CcAlgorithm {
    /// RFC 5681 + RFC 6582.
    NewReno,
    /// RFC 9438 (the Linux default).
    #[default]
    Cubic,
}

/// Initial window, RFC 6928 §2: min(10*MSS, max(2*MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14_600))
}

/// ssthresh after a loss with a multiplicative decrease of `beta`, never
/// below 2*SMSS (RFC 5681 §3.1 eq. 4).
pub(crate) fn reduced(flight: u32, beta: f64, mss: u32) -> u32 {
    ((f64::from(flight) * beta) as u32).max(2 * mss)
}

/// Slow-start increase with appropriate byte counting (RFC 3465, L = 2).
pub(crate) fn slow_start_increase(acked: u32, mss: u32) -> u32 {
    acked.min(2 * mss)
}

/// A connection's algorithm, inline (no allocation per connection).
#[derive(Clone, Debug)]
pub enum Cc {
    /// NewReno.
    NewReno(NewReno),
    /// CUBIC.
    Cubic(Cubic),
}

impl Cc {
    /// A fresh controller with the initial window for `mss`.
    pub fn new(alg: CcAlgorithm, mss: u32) -> Cc {
        match alg {
            CcAlgorithm::NewReno => Cc::NewReno(NewReno::new(mss)),
            CcAlgorithm::Cubic => Cc::Cubic(Cubic::new(mss)),
        }
    }

    fn inner(&self) -> &dyn CongestionControl {
        match self {
            Cc::NewReno(c) => c,
            Cc::Cubic(c) => c,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn CongestionControl {
        match self {
            Cc::NewReno(c) => c,
            Cc::Cubic(c) => c,
        }
    }
}

impl CongestionControl for Cc {
    fn cwnd(&self) -> u32 {
        self.inner().cwnd()
    }
    fn ssthresh(&self) -> u32 {
        self.inner().ssthresh()
    }
    fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, srtt: Option<Duration>) {
        self.inner_mut().on_ack(now, acked, mss, srtt)
    }
    fn on_congestion_event(&mut self, now: Instant, flight: u32, mss: u32) {
        self.inner_mut().on_congestion_event(now, flight, mss)
    }
    fn on_rto(&mut self, now: Instant, flight: u32, mss: u32) {
        self.inner_mut().on_rto(now, flight, mss)
    }
    fn on_recovery_exit(&mut self, flight: u32, mss: u32) {
        self.inner_mut().on_recovery_exit(flight, mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_window_follows_rfc6928() {
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(536), 5360);
        assert_eq!(initial_window(8960), 17_920);
    }

    #[test]
    fn both_algorithms_obey_the_common_rules() {
        for alg in [CcAlgorithm::NewReno, CcAlgorithm::Cubic] {
            let mss = 1000;
            let mut cc = Cc::new(alg, mss);
            assert_eq!(cc.cwnd(), 10_000);
            assert_eq!(cc.ssthresh(), u32::MAX);
            let t = Instant::ZERO;
            cc.on_ack(t, 1000, mss, None);
            assert_eq!(cc.cwnd(), 11_000, "{alg:?} slow start");
            cc.on_congestion_event(t, 11_000, mss);
            assert!(cc.cwnd() < 11_000 && cc.cwnd() >= 2 * mss, "{alg:?}");
            assert_eq!(cc.cwnd(), cc.ssthresh());
            cc.on_rto(t, 8000, mss);
            assert_eq!(cc.cwnd(), mss, "{alg:?} LW = 1 SMSS");
            assert!(cc.ssthresh() >= 2 * mss);
        }
    }
}
