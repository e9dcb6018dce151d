//! Retransmission timeout estimation (RFC 6298).

use std::time::Duration;

/// SRTT/RTTVAR state and the current (possibly backed-off) RTO.
///
/// Times are kept in microseconds as `u32` (about 71 minutes of range) to
/// keep the control block small.
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    /// Smoothed RTT in µs; 0 until the first sample.
    srtt: u32,
    /// RTT variation in µs.
    rttvar: u32,
    /// Base RTO in µs (before backoff).
    rto: u32,
    /// Number of consecutive backoffs (RFC 6298 §5.5).
    backoff: u8,
    /// Lower bound in µs.
    min: u32,
    /// Upper bound in µs.
    max: u32,
}

/// Clock granularity G of RFC 6298 §2 (1 ms, the timestamp tick).
const G_US: u32 = 1000;

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl RttEstimator {
    /// RFC 6298 §2.1: before any sample, RTO = `initial` (1 s).
    pub fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        let (min, max) = (us(min), us(max).max(us(min)));
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            rto: us(initial).clamp(min, max),
            backoff: 0,
            min,
            max,
        }
    }

    /// Feeds one RTT measurement (RFC 6298 §2.2 for the first one, §2.3
    /// afterwards, alpha = 1/8, beta = 1/4, K = 4), and clears the backoff
    /// (§5.7 allows keeping the backed-off value until new data is acked;
    /// a valid sample means it was).
    pub fn sample(&mut self, rtt: Duration) {
        let r = us(rtt).max(1);
        if self.srtt == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
        } else {
            let delta = self.srtt.abs_diff(r);
            self.rttvar = ((u64::from(self.rttvar) * 3 + u64::from(delta)) / 4) as u32;
            self.srtt = ((u64::from(self.srtt) * 7 + u64::from(r)) / 8) as u32;
        }
        let rto = u64::from(self.srtt) + u64::from(G_US.max(self.rttvar.saturating_mul(4)));
        // §2.4: rounded up to the minimum; §2.5: a maximum may be placed.
        self.rto = (rto.min(u64::from(u32::MAX)) as u32).clamp(self.min, self.max);
        self.backoff = 0;
    }

    /// RFC 6298 §5.5: doubles the RTO after a retransmission timeout.
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Clears the backoff without a sample.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// Backoffs applied so far.
    pub fn backoffs(&self) -> u8 {
        self.backoff
    }

    /// The RTO to arm the timer with: base RTO doubled per backoff, capped
    /// at the maximum (RFC 6298 §5.5, §2.5).
    pub fn rto(&self) -> Duration {
        let shift = u32::from(self.backoff.min(31));
        let rto = u64::from(self.rto) << shift;
        Duration::from_micros(rto.min(u64::from(self.max)))
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        (self.srtt != 0).then(|| Duration::from_micros(u64::from(self.srtt)))
    }

    /// RTT variation.
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(u64::from(self.rttvar))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(120),
        )
    }

    #[test]
    fn initial_rto_is_one_second() {
        assert_eq!(est().rto(), Duration::from_secs(1));
        assert_eq!(est().srtt(), None);
    }

    #[test]
    fn first_and_later_samples_follow_rfc6298() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        // 100 + 4*50 = 300 ms
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(200));
        // rttvar = 3/4*50 + 1/4*100 = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(112_500 + 250_000));
    }

    #[test]
    fn min_rto_applies_to_small_rtts() {
        let mut e = est();
        for _ in 0..20 {
            e.sample(Duration::from_micros(50));
        }
        assert_eq!(e.rto(), Duration::from_millis(200));
    }

    #[test]
    fn backoff_doubles_and_caps_at_max() {
        let mut e = est();
        e.back_off();
        assert_eq!(e.rto(), Duration::from_secs(2));
        e.back_off();
        assert_eq!(e.rto(), Duration::from_secs(4));
        for _ in 0..40 {
            e.back_off();
        }
        assert_eq!(e.rto(), Duration::from_secs(120));
        e.sample(Duration::from_millis(10));
        assert_eq!(e.backoffs(), 0);
        assert_eq!(e.rto(), Duration::from_millis(200));
    }
}
