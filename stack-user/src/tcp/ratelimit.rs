//! Rate limits on engine time: a token bucket, and the out-of-window ACK
//! limit (`tcp_invalid_ratelimit`) shared by connections and TIME_WAIT
//! entries.

use std::time::Duration;

use super::config::RateLimit;
use crate::time::Instant;

const SCALE: u64 = 1_000_000;

/// A token bucket: [`RateLimit::burst`] tokens at most, refilled at
/// [`RateLimit::per_sec`]; `None` lets everything through.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    limit: Option<RateLimit>,
    /// Tokens × 10^6.
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(limit: Option<RateLimit>) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: limit.map_or(0, |l| u64::from(l.burst) * SCALE),
            last: Instant::ZERO,
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let Some(l) = self.limit else { return true };
        let elapsed = now.micros().saturating_sub(self.last.micros());
        self.last = self.last.max(now);
        let cap = u64::from(l.burst) * SCALE;
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(l.per_sec)))
            .min(cap);
        if self.tokens >= SCALE {
            self.tokens -= SCALE;
            true
        } else {
            false
        }
    }
}

/// The `tcp_invalid_ratelimit` check on a `last_oow_ack` stamp (engine
/// milliseconds + 1, wrapping; 0 for never), updated when allowed.
pub(crate) fn oow_ack_allowed(last: &mut u32, now: Instant, limit: Duration) -> bool {
    let stamp = (now.millis() as u32).wrapping_add(1).max(1);
    if *last != 0 {
        let elapsed = stamp.wrapping_sub(*last) as i32;
        if elapsed >= 0 && u128::from(elapsed as u32) < limit.as_millis() {
            return false;
        }
    }
    *last = stamp;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(Some(RateLimit {
            per_sec: 10,
            burst: 3,
        }));
        let t = Instant::from_millis(1000);
        assert_eq!((0..5).filter(|_| b.allow(t)).count(), 3);
        // 100 ms buys one more token at 10/s.
        let t = Instant::from_millis(1100);
        assert!(b.allow(t));
        assert!(!b.allow(t));
        assert!(TokenBucket::new(None).allow(t));
    }
}
