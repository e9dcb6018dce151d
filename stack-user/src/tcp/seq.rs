//! TCP sequence numbers with wrap-around arithmetic (RFC 9293 §3.4).
//!
//! Sequence numbers live in a 32-bit circular space; `a < b` means that `b`
//! lies less than 2^31 ahead of `a` (RFC 9293 §3.4, "comparisons ... modulo
//! 2**32"; the same rule as RFC 1982 serial numbers).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence (or acknowledgment) number.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The raw 32-bit value.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The larger of two sequence numbers, in circular order.
    #[inline]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self < other {
            other
        } else {
            self
        }
    }

    /// The smaller of two sequence numbers, in circular order.
    #[inline]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other {
            self
        } else {
            other
        }
    }

    /// Signed distance `self - other` (positive when `self` is ahead).
    #[inline]
    pub const fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self - other` as a byte count; zero when `self` is not ahead.
    #[inline]
    pub fn dist(self, other: SeqNumber) -> u32 {
        let d = self.diff(other);
        if d > 0 {
            d as u32
        } else {
            0
        }
    }

    /// `lo <= self < hi`, in circular order.
    #[inline]
    pub fn in_range(self, lo: SeqNumber, hi: SeqNumber) -> bool {
        lo <= self && self < hi
    }
}

impl PartialOrd for SeqNumber {
    #[inline]
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        // RFC 9293 §3.4: compare by the sign of the 32-bit difference.
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: usize) -> SeqNumber {
        // Segment and window lengths are below 2^31; truncation is the
        // intended modular arithmetic.
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<u32> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

impl Sub for SeqNumber {
    type Output = i32;
    #[inline]
    fn sub(self, rhs: SeqNumber) -> i32 {
        self.diff(rhs)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps_around() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a + 20u32;
        assert_eq!(b.get(), 9);
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 20);
        assert_eq!(a - b, -20);
        assert_eq!(b.dist(a), 20);
        assert_eq!(a.dist(b), 0);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert!(SeqNumber(5).in_range(a, b));
        assert!(!b.in_range(a, b));
    }

    #[test]
    fn half_space_boundary() {
        let a = SeqNumber(0);
        assert!(a < SeqNumber(0x7fff_ffff));
        // Exactly 2^31 apart is ambiguous (each is "less" than the other);
        // windows never come close to that.
        assert!(a < SeqNumber(0x8000_0000) && SeqNumber(0x8000_0000) < a);
        assert!(a > SeqNumber(0x8000_0001));
        assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
        assert_eq!(a - 1u32, SeqNumber(u32::MAX));
    }
}
