//! SYN rate limits: the GCRA token bucket, and the per-source table as a
//! sketch of such buckets (this file compiles for the XDP program and the
//! host, where it is unit-tested and where tests find colliding sources).
//!
//! Linux has no per-source SYN limit: with `tcp_syncookies` it answers
//! every SYN statelessly (RFC 4987 §3.6) and leaves rate limiting to
//! netfilter (`hashlimit`, which keeps a hash table of buckets with
//! garbage collection). xstack's per-source limit lives in XDP, where a
//! spoofed flood brings a new source with almost every SYN, so the table
//! must cost the same whatever the sources:
//!
//! - An LRU hash (what xstack had) pays one lookup and one insert per SYN;
//!   the insert of a new source takes a node off the LRU's free lists and,
//!   once the table is full, evicts, under the LRU's locks. A flood of
//!   more sources than entries also evicts the legitimate sources' buckets,
//!   which makes their limit *laxer* at random.
//! - The sketch ([`SourceKey`], [`cells4`], [`cells6`]) is a fixed array of
//!   [`SOURCE_CELLS`] GCRA cells in two rows, a count-min sketch
//!   (Cormode & Muthukrishnan 2005) whose counters are token buckets: a
//!   source maps to one cell per row by a keyed hash; its estimate is the
//!   least charged of its cells (the min of a count-min sketch), and a SYN
//!   is admitted when that estimate admits it ([`admit`]); then each cell
//!   is raised to the source's new estimate at least (the sketch's
//!   "conservative update"). No insert, no eviction, no lock. A source
//!   alone in either of its cells is limited exactly as by a bucket of its
//!   own; every cell holds at least the charge of each source in it, so a
//!   source never gets past its own rate, and sharing cells can only make
//!   its limit *stricter*, and only when both of its cells are shared with
//!   busier sources (the rows hash independently). When a flood's
//!   aggregate rate exceeds `SOURCE_CELLS / 2` times the per-source rate,
//!   every cell is busy and every source is limited: the per-source rate is
//!   then the global budget the flood leaves, and `--syn-global-rate` the
//!   bound meant for that case.
//!
//! Each row's hash is Lemire & Kaser's multilinear hash ("Strongly
//! universal string hashing is fast", 2014): `k0 + Σ kᵢ·xᵢ mod 2⁶⁴` over
//! 32-bit words `xᵢ` with random 64-bit keys, whose top 32 bits are
//! strongly universal; a row's cell is the top bits of its own hash, mixed
//! by MurmurHash3's finaliser so that structured sets of sources spread. The
//! keys are random per loaded program and never leave the host, so an
//! attacker cannot aim spoofed sources at a legitimate source's cells.

/// Cells of each per-source table (IPv4 and IPv6 have one each): two rows
/// of `SOURCE_CELLS / 2`.
pub const SOURCE_CELLS: u32 = 1 << 16;
/// Index bits of one row.
const ROW_BITS: u32 = 15;
/// Cells of one row.
pub const SOURCE_ROW: u32 = 1 << ROW_BITS;

/// The keys of the per-source hashes, one set per row: `k0` and one
/// multiplier per 32-bit word (an IPv4 address uses `k[0..2]`, an IPv6
/// prefix `k[0..5]`).
pub type SourceKey = [[u64; 5]; 2];

/// One row's hash of an IPv4 source: `addr` as the program reads it (the
/// address's wire bytes in a native-endian `u32`).
#[inline(always)]
fn hash4_row(k: &[u64; 5], addr: u32) -> u64 {
    k[0].wrapping_add(k[1].wrapping_mul(u64::from(addr)))
}

/// One row's hash of an IPv6 source prefix.
#[inline(always)]
fn hash6_row(k: &[u64; 5], w: [u32; 4]) -> u64 {
    k[0].wrapping_add(k[1].wrapping_mul(u64::from(w[0])))
        .wrapping_add(k[2].wrapping_mul(u64::from(w[1])))
        .wrapping_add(k[3].wrapping_mul(u64::from(w[2])))
        .wrapping_add(k[4].wrapping_mul(u64::from(w[3])))
}

/// A row's cell from its hash: the top [`ROW_BITS`] bits after
/// MurmurHash3's 64-bit finaliser (`fmix64`). The multilinear hash alone
/// spreads a structured set of sources unevenly for a given key (addresses
/// read as little-endian words differ in their high bytes, and a product
/// by a multiple of 2¹⁶ keeps only part of the key): a /17 of consecutive
/// addresses used 22% of a row's cells; after the finaliser its cells are
/// filled as by chance.
#[inline(always)]
fn cell(mut h: u64) -> u32 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> (64 - ROW_BITS)) as u32
}

/// An IPv4 source's two cells (`addr` as the program reads it: the
/// address's wire bytes in a native-endian `u32`): indices in
/// `0..SOURCE_ROW` and `SOURCE_ROW..SOURCE_CELLS`.
#[inline(always)]
pub fn cells4(k: &SourceKey, addr: u32) -> [u32; 2] {
    [
        cell(hash4_row(&k[0], addr)),
        SOURCE_ROW | cell(hash4_row(&k[1], addr)),
    ]
}

/// An IPv6 source prefix's two cells (four wire-order words, host bits
/// cleared: [`crate::ipv6_prefix`]).
#[inline(always)]
pub fn cells6(k: &SourceKey, w: [u32; 4]) -> [u32; 2] {
    [
        cell(hash6_row(&k[0], w)),
        SOURCE_ROW | cell(hash6_row(&k[1], w)),
    ]
}

/// GCRA (the Generic Cell Rate Algorithm of ATM, ITU-T I.371; a token
/// bucket kept as one timestamp): admits one event at `now` against `tat`
/// (the theoretical arrival time); returns the new `tat`, or `None` when
/// the event is over the limit (`interval` ns per event, `tolerance` ns of
/// burst: `tolerance / interval + 1` events at once).
#[inline(always)]
pub fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Option<u64> {
    let base = if tat > now { tat } else { now };
    let next = base + interval;
    if next - now > tolerance + interval {
        None
    } else {
        Some(next)
    }
}

/// One SYN of a source whose cells hold `tats`: its estimate is the least
/// of them; if that admits the SYN, the cells' new values (each at least
/// the new estimate: the count-min sketch's conservative update), else
/// `None` and the cells are left as they are.
#[inline(always)]
pub fn admit(tats: [u64; 2], now: u64, interval: u64, tolerance: u64) -> Option<[u64; 2]> {
    let least = if tats[0] < tats[1] { tats[0] } else { tats[1] };
    let next = gcra(least, now, interval, tolerance)?;
    Some([
        if tats[0] > next { tats[0] } else { next },
        if tats[1] > next { tats[1] } else { next },
    ])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    const KEY: SourceKey = [
        [
            0x0123_4567_89ab_cdef,
            0x9e37_79b9_7f4a_7c15,
            0xbf58_476d_1ce4_e5b9,
            0x94d0_49bb_1331_11eb,
            0x2545_f491_4f6c_dd1d,
        ],
        [
            0xd1b5_4a32_d192_ed03,
            0xa076_1d64_78bd_642f,
            0xe703_7ed1_a0b4_28db,
            0x8ebc_6af0_9c88_c6e3,
            0x5899_65cc_7537_4cc3,
        ],
    ];
    const MS: u64 = 1_000_000;

    #[test]
    fn gcra_admits_the_burst_then_one_per_interval() {
        // 10 ms per event, a burst of 3 (tolerance 2 intervals).
        let (i, t) = (10 * MS, 20 * MS);
        let mut tat = 0;
        let now = 1_000 * MS;
        for _ in 0..3 {
            tat = gcra(tat, now, i, t).expect("within the burst");
        }
        assert_eq!(gcra(tat, now, i, t), None, "the 4th at once is over");
        assert_eq!(gcra(tat, now + 9 * MS, i, t), None);
        assert!(gcra(tat, now + 10 * MS, i, t).is_some());
    }

    #[test]
    fn a_source_is_dropped_only_when_each_of_its_cells_is_over_and_a_drop_charges_nothing() {
        let (i, t) = (10 * MS, 0);
        let now = 1_000 * MS;
        // Cell 0 is busy (a busier source shares it): the source's own
        // cell 1 still admits it, and cell 0 keeps the busier charge.
        let busy = now + 5 * i;
        assert_eq!(admit([busy, 0], now, i, t), Some([busy, now + i]));
        // Both over: dropped, nothing charged (the caller keeps the cells).
        assert_eq!(admit([busy, now + i], now, i, t), None);
        // Alone in both cells: exactly its own bucket.
        let own = admit([0, 0], now, i, t).expect("fresh");
        assert_eq!(own, [now + i, now + i]);
        assert_eq!(admit(own, now, i, t), None, "over its own rate");
        assert_eq!(admit(own, now + i, i, t), Some([now + 2 * i; 2]));
    }

    #[test]
    fn every_cell_holds_at_least_the_charge_of_each_source_in_it() {
        // Three sources over two cells each, sharing: A and B share cell 0,
        // B and C cell 1. Whatever the order, no source is admitted past
        // its own rate (one per interval, no burst), as by a bucket of its
        // own, and each cell stays at or above its sources' own buckets.
        let (i, t) = (10 * MS, 0);
        let cells_of = [[0usize, 2], [0, 1], [3, 1]];
        let mut cells = [0u64; 4];
        let mut own = [0u64; 3];
        let mut admitted = [0u32; 3];
        // What a bucket of its own would admit, fed every SYN.
        let mut exact = [0u64; 3];
        let mut exact_admitted = [0u32; 3];
        for step in 0..3000u64 {
            let now = 1_000 * MS + step * MS;
            let s = (step * 7 % 3) as usize;
            let [a, b] = cells_of[s];
            if let Some(x) = gcra(exact[s], now, i, t) {
                exact[s] = x;
                exact_admitted[s] += 1;
            }
            if let Some([x, y]) = admit([cells[a], cells[b]], now, i, t) {
                cells[a] = x;
                cells[b] = y;
                own[s] = gcra(own[s], now, i, t).expect("never past its own rate");
                admitted[s] += 1;
            }
            for (k, c) in cells_of.iter().enumerate() {
                assert!(cells[c[0]] >= own[k] && cells[c[1]] >= own[k]);
            }
        }
        // A and C each have a cell of their own: exactly what their own
        // buckets admit; B, sharing both, no more than its own would.
        assert_eq!(admitted[0], exact_admitted[0]);
        assert_eq!(admitted[2], exact_admitted[2]);
        assert!(admitted[1] <= exact_admitted[1]);
    }

    #[test]
    fn each_source_has_one_cell_in_each_row() {
        for a in 0..10_000u32 {
            let [c0, c1] = cells4(&KEY, a.wrapping_mul(2_654_435_761));
            assert!(c0 < SOURCE_ROW, "{c0}");
            assert!((SOURCE_ROW..SOURCE_CELLS).contains(&c1), "{c1}");
        }
        let [c0, c1] = cells6(&KEY, [1, 2, 3, 4]);
        assert!(c0 < SOURCE_ROW && (SOURCE_ROW..SOURCE_CELLS).contains(&c1));
    }

    #[test]
    fn sources_spread_over_the_cells_and_rarely_share_both() {
        // 32,768 consecutive addresses (a spoofed /17, read as the program
        // reads them) into 2 × 32,768 cells: about the 1 − 1/e of each row
        // that random placement fills, and a pair sharing both cells about
        // as rare as chance (32,768² / 2 / 32,768² ≈ 0.5).
        let mut used = [Vec::new(), Vec::new()];
        used[0].resize(SOURCE_ROW as usize, 0u32);
        used[1].resize(SOURCE_ROW as usize, 0u32);
        let mut pairs = std::collections::HashMap::new();
        for a in 0..32_768u32 {
            let addr = u32::from_ne_bytes([198, 18, 128 | (a >> 8) as u8, a as u8]);
            let [c0, c1] = cells4(&KEY, addr);
            used[0][c0 as usize] += 1;
            used[1][(c1 - SOURCE_ROW) as usize] += 1;
            *pairs.entry((c0, c1)).or_insert(0u32) += 1;
        }
        for row in &used {
            let n = row.iter().filter(|c| **c > 0).count() as f64;
            let frac = n / f64::from(SOURCE_ROW);
            assert!((0.6..0.67).contains(&frac), "row use {frac}");
            assert!(*row.iter().max().unwrap() < 12);
        }
        let both = pairs.values().filter(|n| **n > 1).count();
        assert!(both < 10, "{both} pairs share both cells");
    }

    #[test]
    fn the_ipv6_cells_follow_every_word_of_the_prefix() {
        let base = cells6(&KEY, [1, 2, 3, 4]);
        for i in 0..4 {
            let mut w = [1, 2, 3, 4];
            w[i] ^= 1 << 20;
            assert_ne!(cells6(&KEY, w), base, "word {i}");
        }
    }
}
