//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running one's-complement sum (not yet complemented).
///
/// Sums 32-bit words in the machine's byte order into a 64-bit accumulator
/// and folds once at the end: wider words (RFC 1071 §2(C): 2^16 ≡ 1 mod
/// 0xffff, so a 32-bit word adds what its two 16-bit halves add) and byte
/// order independence (§2(B): the sum of byte-swapped words is the
/// byte-swapped sum, so the folded result is swapped once instead of every
/// word). A loop of plain 32-bit loads and 64-bit adds, which the compiler
/// vectorizes: about a third of the time of the big-endian 64-bit loop
/// this replaced, which was one of the top symbols of the engine's profile
/// (a segment is summed once when it is sent and once when it arrives). The
/// result is folded to at most 0xffff, equal after [`fold`] to the 16-bit
/// sum (and zero only when that is).
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    // The running sum in the machine's byte order: swapping the bytes of
    // each 16-bit half is multiplying by 256 modulo 0xffff, so it can be
    // done before folding.
    let acc = u64::from(acc);
    let mut wide = if cfg!(target_endian = "little") {
        ((acc & 0x00ff_00ff) << 8) | ((acc >> 8) & 0x00ff_00ff)
    } else {
        acc
    };
    // At most 2^32 per word: no overflow before 2^32 words (16 GiB).
    wide += words(data);
    // The last 1-3 bytes, padded with zeros at the end (as RFC 1071 pads
    // an odd byte).
    let tail = match *data.chunks_exact(4).remainder() {
        [a] => [a, 0, 0, 0],
        [a, b] => [a, b, 0, 0],
        [a, b, c] => [a, b, c, 0],
        _ => [0; 4],
    };
    wide += u64::from(u32::from_ne_bytes(tail));
    // Fold 64 → 32 → 16 bits (two end-around carries each).
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    let mut w = wide as u32;
    w = (w & 0xffff) + (w >> 16);
    w = (w & 0xffff) + (w >> 16);
    u32::from(u16::from_be(w as u16))
}

/// The sum of `data`'s whole 32-bit words, in the machine's byte order.
/// On x86-64 with AVX2 (checked once at run time; the build targets plain
/// x86-64) a segment-sized input takes the same loop compiled for AVX2,
/// about twice as fast as the SSE2 build of it (4-byte words widened to
/// 64 bits, 8 lanes at a time instead of 4).
#[inline]
fn words(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 128 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { words_avx2(data) };
    }
    words_plain(data)
}

#[inline(always)]
fn words_plain(data: &[u8]) -> u64 {
    let mut wide = 0u64;
    for c in data.chunks_exact(4) {
        wide += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    wide
}

/// [`words_plain`] compiled for AVX2; call only where the CPU has it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn words_avx2(data: &[u8]) -> u64 {
    words_plain(data)
}

/// Folds a running sum to 16 bits, without complementing it.
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Folds a running sum to 16 bits and complements it (RFC 1071 §4.1).
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Checksum of `data` alone.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// An address a pseudo-header can hold: IPv4 (RFC 9293 §3.1) or IPv6
/// (RFC 8200 §8.1). Generic so that the IPv4 path sums four bytes per
/// address as before, with no family branch.
pub trait PseudoAddr: Copy {
    /// Adds the address's octets to a running sum.
    fn sum_into(self, acc: u32) -> u32;
}

impl PseudoAddr for Ipv4Addr {
    /// The address's two 16-bit words added straight in (no loop: three
    /// of these per IPv4 segment's pseudo-header).
    #[inline]
    fn sum_into(self, acc: u32) -> u32 {
        let v = u32::from(self);
        let s = u64::from(acc) + u64::from(v >> 16) + u64::from(v & 0xffff);
        // Below 2^33: one end-around carry brings it under 2^32.
        ((s & 0xffff_ffff) + (s >> 32)) as u32
    }
}

impl PseudoAddr for Ipv6Addr {
    #[inline]
    fn sum_into(self, acc: u32) -> u32 {
        sum(acc, &self.octets())
    }
}

impl PseudoAddr for IpAddr {
    #[inline]
    fn sum_into(self, acc: u32) -> u32 {
        match self {
            IpAddr::V4(a) => a.sum_into(acc),
            IpAddr::V6(a) => a.sum_into(acc),
        }
    }
}

/// Sum of the pseudo-header used by TCP, UDP and ICMPv6: IPv4's (RFC 9293
/// §3.1: addresses, zero, protocol, TCP length) or IPv6's (RFC 8200 §8.1:
/// addresses, 32-bit upper-layer length, 24 zero bits, next header). Both
/// sum to the same 16-bit words for a length below 65536.
pub fn pseudo_header<A: PseudoAddr>(src: A, dst: A, protocol: u8, len: u16) -> u32 {
    let mut acc = src.sum_into(0);
    acc = dst.sum_into(acc);
    acc += u32::from(protocol);
    acc += u32::from(len);
    acc
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changes from `old`
/// to `new`, without touching the rest of the data.
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    let mut acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    /// The 16-bit loop of RFC 1071 §4.1, as `sum` was before it summed
    /// wider words in the machine's byte order.
    fn sum16(mut acc: u64, data: &[u8]) -> u16 {
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn wide_word_sum_equals_the_16_bit_sum_at_every_length_and_start() {
        let mut seed = 0x9e37_79b9_u32;
        let data: Vec<u8> = (0..4200)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        for start in 0..9 {
            for len in (0..80).chain([1459, 1460, 1500, 4096, 4191]) {
                let d = &data[start..start + len];
                for acc in [0u32, 1, 0xffff, 0x1_fffe, 0xdead_beef] {
                    assert_eq!(
                        fold(sum(acc, d)),
                        sum16(u64::from(acc), d),
                        "start {start} len {len} acc {acc:#x}"
                    );
                }
            }
        }
        // All ones: the sum is 0xffff (negative zero), never 0.
        assert_eq!(fold(sum(0, &[0xff; 1500])), 0xffff);
        assert_eq!(sum(0, &[0; 1500]), 0);
    }

    #[test]
    fn an_ipv4_address_adds_what_its_four_bytes_add() {
        for a in [
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(1, 2, 254, 253),
        ] {
            for acc in [0u32, 1, 0xffff, 0x1_fffe, 0xdead_beef, u32::MAX] {
                assert_eq!(
                    fold(a.sum_into(acc)),
                    sum16(u64::from(acc), &a.octets()),
                    "{a} acc {acc:#x}"
                );
            }
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0xab]), checksum(&[0xab, 0x00]));
    }

    #[test]
    fn data_with_its_checksum_verifies_to_zero() {
        let mut data = vec![
            0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0,
        ];
        data.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&data), 0);
    }

    #[test]
    fn incremental_update_matches_full_recompute() {
        let mut seed = 0x1234_5678_u32;
        for _ in 0..1000 {
            let mut data = [0u8; 20];
            for b in data.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (seed >> 16) as u8;
            }
            data[10] = 0;
            data[11] = 0;
            let c = checksum(&data);
            let old = u16::from_be_bytes([data[8], data[9]]);
            let new = old.wrapping_add(0x1357);
            data[8..10].copy_from_slice(&new.to_be_bytes());
            assert_eq!(update(c, old, new), checksum(&data));
        }
    }
}
