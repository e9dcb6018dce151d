//! Initial sequence numbers per RFC 6528 §3:
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where M is a timer ticking every 4 µs and F is a keyed hash — here
//! SipHash-2-4 with a 128-bit secret.

use std::net::Ipv4Addr;

use super::seq::SeqNumber;
use super::time::Instant;

/// SipHash-2-4 (Aumasson & Bernstein, 2012) of `data` under `key`.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    let k1 = u64::from_le_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rem = chunks.remainder();
    last[..rem.len()].copy_from_slice(rem);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Generates ISNs from a secret chosen when the engine starts.
#[derive(Clone)]
pub struct IsnGenerator {
    secret: [u8; 16],
}

impl IsnGenerator {
    /// A generator keyed with `secret` (RFC 6528 §3: at least 128 bits,
    /// random, not shared).
    pub fn new(secret: [u8; 16]) -> IsnGenerator {
        IsnGenerator { secret }
    }

    /// The ISN for a connection from `local` to `remote` at `now`
    /// (RFC 6528 §3; M counts 4 µs ticks as RFC 9293 §3.4.1 asks).
    pub fn isn(
        &self,
        now: Instant,
        local: Ipv4Addr,
        local_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
    ) -> SeqNumber {
        let mut msg = [0u8; 12];
        msg[0..4].copy_from_slice(&local.octets());
        msg[4..6].copy_from_slice(&local_port.to_be_bytes());
        msg[6..10].copy_from_slice(&remote.octets());
        msg[10..12].copy_from_slice(&remote_port.to_be_bytes());
        let f = siphash24(&self.secret, &msg) as u32;
        let m = (now.micros() / 4) as u32;
        SeqNumber(m.wrapping_add(f))
    }

    /// A keyed 64-bit hash of arbitrary bytes (used to seed the demux
    /// hasher so remote peers cannot predict bucket collisions).
    pub fn keyed_hash(&self, data: &[u8]) -> u64 {
        siphash24(&self.secret, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn siphash_reference_vectors() {
        // Appendix A of the SipHash paper and the reference vectors.h:
        // key 00..0f, message 00..(n-1).
        let msg: Vec<u8> = (0u8..64).collect();
        assert_eq!(siphash24(&key(), &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&key(), &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(&key(), &msg[..8]), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn isn_and_keyed_hash_keep_their_values() {
        // Pinned outputs: moving the hash must not change a single ISN.
        let g = IsnGenerator::new(key());
        let a = Ipv4Addr::new(198, 18, 0, 1);
        let b = Ipv4Addr::new(198, 18, 0, 2);
        let x = g.isn(Instant::from_millis(1), a, 1000, b, 80);
        assert_eq!(x, SeqNumber(0xcd08_b5de));
        assert_eq!(g.keyed_hash(b"xstack demux"), 0x0470_9a92_8196_4bbe);
    }

    #[test]
    fn isn_depends_on_tuple_secret_and_clock() {
        let g = IsnGenerator::new(key());
        let a = Ipv4Addr::new(198, 18, 0, 1);
        let b = Ipv4Addr::new(198, 18, 0, 2);
        let t = Instant::from_millis(1);
        let x = g.isn(t, a, 1000, b, 80);
        assert_eq!(x, g.isn(t, a, 1000, b, 80));
        assert_ne!(x, g.isn(t, a, 1001, b, 80));
        assert_ne!(x, IsnGenerator::new([7; 16]).isn(t, a, 1000, b, 80));
        // 4 µs clock: 40 µs later the ISN has advanced by 10.
        assert_eq!(
            g.isn(t + std::time::Duration::from_micros(40), a, 1000, b, 80),
            x + 10u32
        );
    }
}
