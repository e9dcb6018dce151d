//! The sender's SACK scoreboard and the loss-recovery queries of RFC 6675
//! (IsLost, the pipe estimate and NextSeg).

use crate::wire::tcp::SeqNumber;

/// RFC 6675 §2: DupThresh.
pub const DUP_THRESH: u32 = 3;
/// Most disjoint SACKed ranges tracked.
const MAX_RANGES: usize = 16;

/// SACKed ranges above SND.UNA, sorted and disjoint.
#[derive(Debug, Default)]
pub struct Scoreboard {
    ranges: Vec<(SeqNumber, SeqNumber)>,
}

impl Scoreboard {
    /// Forgets everything (after a retransmission timeout; RFC 6675 §5.1
    /// allows it, RFC 2018 §8 requires tolerating reneging anyway).
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// True when no range is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges held.
    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges
    }

    /// Adds the SACK blocks of an ACK. Blocks outside (snd_una, snd_max]
    /// are ignored (RFC 2018 §5 does not allow them; RFC 6675 §5 uses
    /// only valid ones). Returns true when a new byte was SACKed.
    pub fn update(
        &mut self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        blocks: &[(SeqNumber, SeqNumber)],
    ) -> bool {
        self.drop_below(snd_una);
        let before = self.sacked_bytes();
        for &(l, r) in blocks {
            if !(snd_una < l && l < r && r <= snd_max) {
                continue;
            }
            self.insert(l, r);
        }
        self.sacked_bytes() != before
    }

    fn insert(&mut self, l: SeqNumber, r: SeqNumber) {
        let first = self
            .ranges
            .iter()
            .position(|&(_, e)| e >= l)
            .unwrap_or(self.ranges.len());
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].0 <= r {
            last += 1;
        }
        if first == last {
            if self.ranges.len() < MAX_RANGES {
                self.ranges.insert(first, (l, r));
            }
            return;
        }
        let lo = l.min(self.ranges[first].0);
        let hi = r.max(self.ranges[last - 1].1);
        self.ranges.drain(first..last);
        self.ranges.insert(first, (lo, hi));
    }

    /// Drops what the cumulative ACK has covered.
    pub fn drop_below(&mut self, snd_una: SeqNumber) {
        self.ranges.retain(|&(_, r)| r > snd_una);
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < snd_una {
                first.0 = snd_una;
            }
        }
    }

    fn sacked_bytes(&self) -> u64 {
        self.ranges.iter().map(|&(l, r)| u64::from(r.dist(l))).sum()
    }

    /// True when `seq` has been SACKed.
    pub fn is_sacked(&self, seq: SeqNumber) -> bool {
        self.ranges.iter().any(|&(l, r)| seq.in_range(l, r))
    }

    /// Highest SACKed sequence number (end of the last range).
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.ranges.last().map(|&(_, r)| r)
    }

    /// Every unSACKed byte below this point is lost (RFC 6675 §4, IsLost:
    /// DupThresh discontiguous SACKed ranges above it, or more than
    /// (DupThresh - 1) * SMSS bytes SACKed above it). `None` when nothing
    /// is lost.
    pub fn lost_boundary(&self, mss: u32) -> Option<SeqNumber> {
        let mut bytes = 0u64;
        for (i, &(l, r)) in self.ranges.iter().enumerate().rev() {
            bytes += u64::from(r.dist(l));
            let count = (self.ranges.len() - i) as u32;
            if count >= DUP_THRESH || bytes > u64::from((DUP_THRESH - 1) * mss) {
                return Some(l);
            }
        }
        None
    }

    /// RFC 6675 §4, IsLost(seq).
    pub fn is_lost(&self, seq: SeqNumber, mss: u32) -> bool {
        !self.is_sacked(seq) && self.lost_boundary(mss).is_some_and(|b| seq < b)
    }

    /// UnSACKed bytes in [a, b).
    fn unsacked_in(&self, a: SeqNumber, b: SeqNumber) -> u32 {
        if b <= a {
            return 0;
        }
        let mut n = b.dist(a);
        for &(l, r) in &self.ranges {
            let lo = l.max(a);
            let hi = r.min(b);
            n = n.saturating_sub(hi.dist(lo));
        }
        n
    }

    /// RFC 6675 §4, SetPipe: bytes believed to be in the network — unSACKed
    /// bytes not deemed lost, plus bytes retransmitted (below HighRxt).
    pub fn pipe(
        &self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        high_rxt: SeqNumber,
        mss: u32,
    ) -> u32 {
        let lost_to = self
            .lost_boundary(mss)
            .unwrap_or(snd_una)
            .max(snd_una)
            .min(snd_max);
        let in_flight = self.unsacked_in(lost_to, snd_max);
        let rexmit = self.unsacked_in(snd_una, high_rxt.min(snd_max));
        in_flight.saturating_add(rexmit)
    }

    /// RFC 6675 §4, NextSeg rule (1): the first unSACKed, lost byte at or
    /// above `from`, and how many bytes (at most `mss`) follow it before the
    /// next SACKed range.
    pub fn next_lost(&self, from: SeqNumber, mss: u32) -> Option<(SeqNumber, u32)> {
        let boundary = self.lost_boundary(mss)?;
        let mut s = from;
        for &(l, r) in &self.ranges {
            if s < l {
                if s >= boundary {
                    return None;
                }
                return Some((s, l.dist(s).min(mss)));
            }
            if s < r {
                s = r;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn update_merges_and_ignores_invalid_blocks() {
        let mut sb = Scoreboard::default();
        assert!(sb.update(s(100), s(1000), &[(s(300), s(400)), (s(500), s(600))]));
        assert!(sb.update(s(100), s(1000), &[(s(400), s(500))]));
        assert_eq!(sb.ranges(), &[(s(300), s(600))]);
        // Below SND.UNA, past SND.MAX, or empty: ignored.
        assert!(!sb.update(
            s(100),
            s(1000),
            &[(s(50), s(90)), (s(900), s(1100)), (s(700), s(700))]
        ));
        sb.drop_below(s(350));
        assert_eq!(sb.ranges(), &[(s(350), s(600))]);
        assert!(sb.is_sacked(s(599)));
        assert!(!sb.is_sacked(s(600)));
    }

    #[test]
    fn is_lost_needs_dupthresh_segments_above() {
        let mss = 100;
        let mut sb = Scoreboard::default();
        sb.update(s(0), s(1000), &[(s(100), s(300))]);
        // 200 bytes SACKed above 0: not more than 2 * SMSS.
        assert!(!sb.is_lost(s(0), mss));
        sb.update(s(0), s(1000), &[(s(300), s(301))]);
        assert!(sb.is_lost(s(0), mss));
        assert!(!sb.is_lost(s(150), mss));
        // Three discontiguous ranges also suffice.
        let mut sb = Scoreboard::default();
        sb.update(
            s(0),
            s(1000),
            &[(s(100), s(110)), (s(200), s(210)), (s(300), s(310))],
        );
        assert!(sb.is_lost(s(50), mss));
        assert!(!sb.is_lost(s(150), mss));
    }

    #[test]
    fn pipe_and_next_seg() {
        let mss = 100;
        let mut sb = Scoreboard::default();
        // Sent [0, 1000); [0,100) lost; [100, 400) SACKed.
        sb.update(s(0), s(1000), &[(s(100), s(400))]);
        // In flight: [400,1000) = 600; [0,100) is lost and not retransmitted.
        assert_eq!(sb.pipe(s(0), s(1000), s(0), mss), 600);
        assert_eq!(sb.next_lost(s(0), mss), Some((s(0), 100)));
        // After retransmitting [0, 100): counted again, nothing else lost.
        assert_eq!(sb.pipe(s(0), s(1000), s(100), mss), 700);
        assert_eq!(sb.next_lost(s(100), mss), None);
    }
}
