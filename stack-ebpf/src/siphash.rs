//! SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF",
//! 2012): xstack's one keyed hash. It keys the SYN cookies that the XDP
//! program and the engine share ([`crate::cookie`]) and, in userspace, the
//! ISNs of RFC 6528 §3 and the engine's hash seeds.
//!
//! One core, three entry points: [`siphash_2_4_20`] and [`siphash_2_4_44`]
//! hash the SYN cookie's fixed-size messages given as words, with no slice
//! and no loop over data, as the BPF verifier wants; [`siphash_2_4`]
//! hashes any byte string.

/// The four state words, keyed.
#[derive(Clone, Copy)]
struct State([u64; 4]);

impl State {
    #[inline(always)]
    fn new(k0: u64, k1: u64) -> State {
        State([
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ])
    }

    /// One SipRound.
    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.0;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }

    /// Compresses one little-endian message word (c = 2 rounds).
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// Compresses the last word (the tail bytes and the length in its top
    /// byte) and finalises (d = 4 rounds).
    #[inline(always)]
    fn finish(mut self, last: u64) -> u64 {
        self.compress(last);
        self.0[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        self.0[0] ^ self.0[1] ^ self.0[2] ^ self.0[3]
    }
}

/// SipHash-2-4 of a 20-byte message given as two little-endian words and
/// a 4-byte tail (the IPv4 SYN cookie's addresses, ports and client ISN,
/// then its minute and MSS index), under the key `(k0, k1)` (the key's
/// bytes 0..8 and 8..16, little-endian). Three compressions: the cost of
/// a 16-byte message.
#[inline(always)]
pub fn siphash_2_4_20(k0: u64, k1: u64, m0: u64, m1: u64, tail: u32) -> u64 {
    let mut s = State::new(k0, k1);
    s.compress(m0);
    s.compress(m1);
    // Final block: the 4 tail bytes and the length (20).
    s.finish((20u64 << 56) | u64::from(tail))
}

/// SipHash-2-4 of a 44-byte message given as five little-endian words and
/// a 4-byte tail (the IPv6 SYN cookie's two addresses and its ports and
/// client ISN, then its minute and MSS index).
#[inline(always)]
pub fn siphash_2_4_44(k0: u64, k1: u64, m: [u64; 5], tail: u32) -> u64 {
    let mut s = State::new(k0, k1);
    s.compress(m[0]);
    s.compress(m[1]);
    s.compress(m[2]);
    s.compress(m[3]);
    s.compress(m[4]);
    s.finish((44u64 << 56) | u64::from(tail))
}

/// SipHash-2-4 of `data` under a 16-byte key.
#[inline]
pub fn siphash_2_4(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    let k1 = u64::from_le_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]);
    let mut s = State::new(k0, k1);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        s.compress(u64::from_le_bytes([
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ]));
    }
    let mut last = [0u8; 8];
    let rem = chunks.remainder();
    last[..rem.len()].copy_from_slice(rem);
    // The length mod 256, as the reference implementation takes it.
    last[7] = data.len() as u8;
    s.finish(u64::from_le_bytes(last))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn siphash_reference_vectors() {
        // Appendix A of the SipHash paper and the reference vectors.h:
        // key 00..0f, message 00..(n-1).
        let msg: std::vec::Vec<u8> = (0u8..64).collect();
        assert_eq!(siphash_2_4(&key(), &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash_2_4(&key(), &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash_2_4(&key(), &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash_2_4(&key(), &msg[..16]), 0x3f2a_cc7f_57c2_9bdb);
    }

    fn word(msg: &[u8], i: usize) -> u64 {
        u64::from_le_bytes([
            msg[i],
            msg[i + 1],
            msg[i + 2],
            msg[i + 3],
            msg[i + 4],
            msg[i + 5],
            msg[i + 6],
            msg[i + 7],
        ])
    }

    fn key_words() -> (u64, u64) {
        let k = key();
        (word(&k, 0), word(&k, 8))
    }

    #[test]
    fn the_44_byte_variant_matches_the_byte_version() {
        let msg: [u8; 44] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let (k0, k1) = key_words();
        let tail = u32::from_le_bytes([msg[40], msg[41], msg[42], msg[43]]);
        let m = [0, 8, 16, 24, 32].map(|i| word(&msg, i));
        assert_eq!(siphash_2_4_44(k0, k1, m, tail), siphash_2_4(&key(), &msg));
    }

    #[test]
    fn the_20_byte_variant_matches_the_byte_version() {
        let (k0, k1) = key_words();
        for seed in [0u8, 1, 0x5a, 0xff] {
            let msg: [u8; 20] = core::array::from_fn(|i| (i as u8).wrapping_mul(31) ^ seed);
            let tail = u32::from_le_bytes([msg[16], msg[17], msg[18], msg[19]]);
            assert_eq!(
                siphash_2_4_20(k0, k1, word(&msg, 0), word(&msg, 8), tail),
                siphash_2_4(&key(), &msg)
            );
        }
    }
}
