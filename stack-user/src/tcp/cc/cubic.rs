//! CUBIC (RFC 9438).

use std::time::Duration;

use super::{initial_window, reduced, slow_start_increase, CongestionControl};
use crate::time::Instant;

/// RFC 9438 §5.1: C = 0.4.
const C: f64 = 0.4;
/// RFC 9438 §4.6: beta_cubic = 0.7.
const BETA: f64 = 0.7;
/// RFC 9438 §4.3: alpha_cubic = 3 * (1 - beta) / (1 + beta).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// CUBIC state. Windows are kept in segments (f64) for the cubic function
/// and exported in bytes.
#[derive(Clone, Debug)]
pub struct Cubic {
    /// cwnd in bytes (fractional growth accumulates here).
    cwnd: f64,
    ssthresh: u32,
    /// W_max in segments (RFC 9438 §4.1).
    w_max: f64,
    /// K in seconds (RFC 9438 eq. 2).
    k: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch: Option<Instant>,
    /// W_est in segments, the Reno-friendly estimate (RFC 9438 §4.3).
    w_est: f64,
}

impl Cubic {
    /// Initial window per RFC 6928, ssthresh unbounded.
    pub fn new(mss: u32) -> Cubic {
        Cubic {
            cwnd: f64::from(initial_window(mss)),
            ssthresh: u32::MAX,
            w_max: 0.0,
            k: 0.0,
            epoch: None,
            w_est: 0.0,
        }
    }

    /// RFC 9438 §4.6: W_max, with fast convergence (§4.7), then the new
    /// ssthresh.
    fn reduce(&mut self, flight: u32, mss: u32) {
        let mss_f = f64::from(mss);
        let cwnd_seg = self.cwnd / mss_f;
        self.w_max = if cwnd_seg < self.w_max {
            cwnd_seg * (1.0 + BETA) / 2.0
        } else {
            cwnd_seg
        };
        // RFC 9438 §4.6: ssthresh = flight_size * beta_cubic, at least
        // 2 segments.
        self.ssthresh = reduced(flight, BETA, mss);
        self.epoch = None;
    }
}

impl CongestionControl for Cubic {
    fn cwnd(&self) -> u32 {
        self.cwnd as u32
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, srtt: Option<Duration>) {
        let mss_f = f64::from(mss);
        if (self.cwnd as u32) < self.ssthresh {
            // RFC 9438 §4.10: slow start as in RFC 5681.
            self.cwnd += f64::from(slow_start_increase(acked, mss));
            return;
        }
        let cwnd_seg = self.cwnd / mss_f;
        let epoch = match self.epoch {
            Some(e) => e,
            None => {
                // RFC 9438 §4.2: a new congestion-avoidance epoch.
                self.epoch = Some(now);
                if cwnd_seg < self.w_max {
                    self.k = ((self.w_max - cwnd_seg) / C).cbrt();
                } else {
                    self.k = 0.0;
                    self.w_max = cwnd_seg;
                }
                self.w_est = cwnd_seg;
                now
            }
        };
        let rtt = srtt.unwrap_or(Duration::from_millis(100)).as_secs_f64();
        let t = now.saturating_since(epoch).as_secs_f64();
        let acked_seg = f64::from(acked) / mss_f;
        // RFC 9438 §4.3, eq. 4: W_est grows by alpha per window of ACKs.
        self.w_est += ALPHA * acked_seg / cwnd_seg;
        // RFC 9438 §4.4/4.5: target = W_cubic(t + RTT), clamped to
        // [cwnd, 1.5 cwnd].
        let w_cubic = |t: f64| C * (t - self.k).powi(3) + self.w_max;
        let target = w_cubic(t + rtt).clamp(cwnd_seg, 1.5 * cwnd_seg);
        let new_seg = if w_cubic(t) < self.w_est {
            // Reno-friendly region (§4.3): cwnd = W_est.
            self.w_est.max(cwnd_seg)
        } else {
            // Concave/convex regions: cwnd += (target - cwnd) / cwnd per
            // segment acknowledged.
            cwnd_seg + (target - cwnd_seg) / cwnd_seg * acked_seg
        };
        self.cwnd = new_seg * mss_f;
    }
    fn on_congestion_event(&mut self, _now: Instant, flight: u32, mss: u32) {
        self.reduce(flight, mss);
        self.cwnd = f64::from(self.ssthresh);
    }
    fn on_rto(&mut self, _now: Instant, flight: u32, mss: u32) {
        // RFC 9438 §4.8: same reduction of ssthresh, cwnd restarts at 1 SMSS.
        self.reduce(flight, mss);
        self.cwnd = f64::from(mss);
    }
    fn on_recovery_exit(&mut self, flight: u32, mss: u32) {
        let exit = self.ssthresh.min(flight.max(mss) + mss);
        self.cwnd = f64::from(exit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_is_beta_and_growth_returns_to_w_max_around_k() {
        let mss = 1000;
        let mut c = Cubic::new(mss);
        // Grow in slow start to 100 segments.
        while c.cwnd() < 100_000 {
            c.on_ack(Instant::ZERO, 1000, mss, None);
        }
        let before = f64::from(c.cwnd()) / 1000.0;
        c.on_congestion_event(Instant::ZERO, c.cwnd(), mss);
        assert_eq!(c.cwnd(), (f64::from(c.cwnd()) as u32));
        let after = f64::from(c.cwnd()) / 1000.0;
        assert!((after / before - BETA).abs() < 0.02, "{before} -> {after}");
        // K = cbrt(W_max * (1 - beta) / C) seconds.
        let k = (before * (1.0 - BETA) / C).cbrt();
        // Feed one window of ACKs per 100 ms RTT for K seconds (a long RTT,
        // so the cubic function rather than the Reno-friendly estimate
        // drives the window).
        let rtt = Duration::from_millis(100);
        let mut now = Instant::from_millis(1);
        let steps = (k / rtt.as_secs_f64()) as u32;
        for _ in 0..steps {
            let w = c.cwnd();
            for _ in 0..(w / mss) {
                c.on_ack(now, mss, mss, Some(rtt));
            }
            now = now + rtt;
        }
        let at_k = f64::from(c.cwnd()) / 1000.0;
        assert!(
            (at_k - before).abs() / before < 0.1,
            "W(K) = {at_k}, W_max = {before}"
        );
        // Beyond K the window keeps growing (convex region).
        for _ in 0..100 {
            let w = c.cwnd();
            for _ in 0..(w / mss) {
                c.on_ack(now, mss, mss, Some(rtt));
            }
            now = now + rtt;
        }
        assert!(f64::from(c.cwnd()) / 1000.0 > before * 1.2);
    }

    #[test]
    fn short_rtt_is_reno_friendly() {
        let mss = 1000;
        let mut c = Cubic::new(mss);
        c.cwnd = 100_000.0;
        c.on_congestion_event(Instant::ZERO, 100_000, mss);
        let rtt = Duration::from_millis(1);
        let mut now = Instant::from_millis(1);
        // 200 RTTs of 1 ms: the cubic curve has barely moved (t << K), but
        // W_est grew by alpha per RTT.
        for _ in 0..200 {
            let w = c.cwnd();
            for _ in 0..(w / mss) {
                c.on_ack(now, mss, mss, Some(rtt));
            }
            now = now + rtt;
        }
        let w = f64::from(c.cwnd()) / 1000.0;
        let expect = 70.0 + ALPHA * 200.0;
        assert!(
            (w - expect).abs() < 5.0,
            "cwnd {w} segments, W_est ~ {expect}"
        );
    }

    #[test]
    fn fast_convergence_lowers_w_max() {
        let mss = 1000;
        let mut c = Cubic::new(mss);
        c.cwnd = 100_000.0;
        c.on_congestion_event(Instant::ZERO, 100_000, mss);
        assert_eq!(c.w_max, 100.0);
        c.on_congestion_event(Instant::ZERO, c.cwnd(), mss);
        // 70 < 100: W_max = 70 * (1 + 0.7) / 2 = 59.5
        assert!((c.w_max - 59.5).abs() < 1e-9);
    }
}
