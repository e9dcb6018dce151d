//! SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF",
//! 2012): xstack's one keyed hash. It keys the SYN cookies that the XDP
//! program and the engine share ([`crate::cookie`]) and, in userspace, the
//! ISNs of RFC 6528 §3 and the engine's hash seeds.
//!
//! One core, two entry points: [`siphash_2_4_16`] hashes a fixed 16-byte
//! message given as two words, with no slice and no loop over data, as the
//! BPF verifier wants; [`siphash_2_4`] hashes any byte string.

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

/// SipHash-2-4 of a 16-byte message given as two little-endian words,
/// under the key `(k0, k1)` (the key's bytes 0..8 and 8..16, little-endian).
#[inline(always)]
pub fn siphash_2_4_16(k0: u64, k1: u64, m0: u64, m1: u64) -> u64 {
    let mut s = State::new(k0, k1);
    s.compress(m0);
    s.compress(m1);
    // Final block: no tail bytes, only the length (16).
    s.finish(16u64 << 56)
}

/// SipHash-2-4 of a 40-byte message given as five little-endian words
/// (the IPv6 SYN cookie's two addresses and its ports word).
#[inline(always)]
pub fn siphash_2_4_40(k0: u64, k1: u64, m: [u64; 5]) -> u64 {
    let mut s = State::new(k0, k1);
    s.compress(m[0]);
    s.compress(m[1]);
    s.compress(m[2]);
    s.compress(m[3]);
    s.compress(m[4]);
    s.finish(40u64 << 56)
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

    #[test]
    fn the_40_byte_variant_matches_the_byte_version() {
        let msg: [u8; 40] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let w = |i: usize| {
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
        };
        let k = key();
        let k0 = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        let k1 = u64::from_le_bytes([k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15]]);
        assert_eq!(
            siphash_2_4_40(k0, k1, [w(0), w(8), w(16), w(24), w(32)]),
            siphash_2_4(&k, &msg)
        );
    }

    #[test]
    fn the_16_byte_variant_matches_the_reference_vector() {
        // vectors.h, message 00..0f: the fixed 16-byte entry point and the
        // general one agree.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let m1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(siphash_2_4_16(k0, k1, m0, m1), 0x3f2a_cc7f_57c2_9bdb);
        let msg: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash_2_4(&key(), &msg), siphash_2_4_16(k0, k1, m0, m1));
    }
}
