//! Pacing of connection starts in closed loop: a token bucket
//! (`--connect-rate`) and a linear ramp to the full concurrency
//! (`--ramp`). Pure: time is passed in as the offset from the run's start,
//! so the unit tests run it in virtual time.

use std::time::Duration;

/// How many connections a closed-loop worker may start now.
#[derive(Clone, Debug)]
pub(super) struct Pacer {
    /// Tokens per second; `None` unpaced.
    rate: Option<f64>,
    /// Bucket size: a tenth of a second's worth, at least one.
    burst: f64,
    tokens: f64,
    /// When tokens were last added (offset from the start).
    last: Duration,
    /// Full concurrency.
    target: u32,
    /// Reach `target` linearly over this long.
    ramp: Option<Duration>,
}

impl Pacer {
    /// A pacer for `target` connections, at most `rate` starts per second,
    /// ramping over `ramp`.
    pub(super) fn new(target: u32, rate: Option<f64>, ramp: Option<Duration>) -> Pacer {
        let burst = rate.map_or(0.0, |r| (r / 10.0).max(1.0));
        Pacer {
            rate,
            burst,
            // Start with one token: the first SYN leaves at once, the
            // rest at the rate.
            tokens: burst.min(1.0),
            last: Duration::ZERO,
            target,
            ramp: ramp.filter(|r| !r.is_zero()),
        }
    }

    /// The concurrency the ramp allows `at` (the full target without a
    /// ramp or past it; at least one connection as soon as it starts).
    pub(super) fn ramp_target(&self, at: Duration) -> u32 {
        match self.ramp {
            Some(r) if at < r => {
                let f = at.as_secs_f64() / r.as_secs_f64();
                ((f64::from(self.target) * f).ceil() as u32).clamp(1, self.target)
            }
            _ => self.target,
        }
    }

    /// How many connections may start `at`, with `open` of them open now.
    /// The caller starts at most that many and reports each with
    /// [`Pacer::took`].
    pub(super) fn allowed(&mut self, at: Duration, open: usize) -> usize {
        let want = (self.ramp_target(at) as usize).saturating_sub(open);
        let Some(rate) = self.rate else {
            return want;
        };
        let dt = at.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(at);
        self.tokens = (self.tokens + dt * rate).min(self.burst);
        want.min(self.tokens.max(0.0) as usize)
    }

    /// One connection started.
    pub(super) fn took(&mut self) {
        if self.rate.is_some() {
            self.tokens -= 1.0;
        }
    }

    /// When the next token comes (offset from the start), to sleep until;
    /// `None` when unpaced or a token is there.
    pub(super) fn next_token(&self) -> Option<Duration> {
        let rate = self.rate?;
        (self.tokens < 1.0).then(|| self.last + Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a closed-loop worker on `p` in virtual time steps of `step`
    /// for `secs`, every connection staying open; returns start times.
    fn run(p: &mut Pacer, step: Duration, secs: f64) -> Vec<Duration> {
        let mut starts = Vec::new();
        let mut at = Duration::ZERO;
        while at.as_secs_f64() < secs {
            let n = p.allowed(at, starts.len());
            for _ in 0..n {
                p.took();
                starts.push(at);
            }
            at += step;
        }
        starts
    }

    #[test]
    fn pacing_keeps_the_syn_rate_under_its_bound_in_virtual_time() {
        for step_us in [1, 137, 1000, 50_000] {
            let mut p = Pacer::new(1_000_000, Some(4096.0), None);
            let starts = run(&mut p, Duration::from_micros(step_us), 3.0);
            // Over any window of length w, at most rate*w + burst starts.
            let burst = 409.6;
            for w_ms in [1u64, 10, 100, 1000] {
                let w = Duration::from_millis(w_ms);
                let mut j = 0;
                for i in 0..starts.len() {
                    while starts[i] - starts[j] >= w {
                        j += 1;
                    }
                    let n = (i - j + 1) as f64;
                    assert!(
                        n <= 4096.0 * w.as_secs_f64() + burst + 1.0,
                        "step {step_us} µs: {n} starts within {w:?}"
                    );
                }
            }
            // And the rate is used: about 3 s worth were started.
            let total = starts.len() as f64;
            assert!(
                (4096.0 * 3.0 - 2.0 * burst..=4096.0 * 3.0 + burst).contains(&total),
                "step {step_us} µs: {total}"
            );
        }
    }

    #[test]
    fn a_ramp_reaches_full_concurrency_linearly_and_then_holds_it() {
        let mut p = Pacer::new(1000, None, Some(Duration::from_secs(10)));
        let starts = run(&mut p, Duration::from_millis(10), 12.0);
        assert_eq!(starts.len(), 1000);
        // Halfway through the ramp, half the connections.
        let by_5s = starts.iter().filter(|t| t.as_secs_f64() < 5.0).count();
        assert!((495..=505).contains(&by_5s), "{by_5s}");
        // Full at the end of the ramp, not before.
        let last = *starts.last().unwrap();
        assert!(
            last >= Duration::from_millis(9_900) && last <= Duration::from_secs(10),
            "{last:?}"
        );
        // Without a ramp and unpaced: everything at once.
        let mut p = Pacer::new(1000, None, None);
        assert_eq!(p.allowed(Duration::ZERO, 0), 1000);
        assert_eq!(p.allowed(Duration::ZERO, 1000), 0);
    }

    #[test]
    fn the_slower_of_ramp_and_rate_governs() {
        // Ramp allows 1000 in 1 s; the rate only 100/s.
        let mut p = Pacer::new(1000, Some(100.0), Some(Duration::from_secs(1)));
        let starts = run(&mut p, Duration::from_millis(1), 2.0);
        assert!((195..=211).contains(&starts.len()), "{}", starts.len());
        assert!(p.next_token().is_some());
    }
}
