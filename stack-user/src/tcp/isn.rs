//! Initial sequence numbers per RFC 6528 §3:
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where M is a timer ticking every 4 µs and F is a keyed hash — here
//! SipHash-2-4 with a 128-bit secret (`stack_ebpf::siphash`, the one
//! SipHash the SYN cookies use too).

use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

use stack_ebpf::siphash::siphash_2_4;

use crate::time::Instant;
use crate::wire::tcp::SeqNumber;

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
        local: impl Into<IpAddr>,
        local_port: u16,
        remote: impl Into<IpAddr>,
        remote_port: u16,
    ) -> SeqNumber {
        // F(localip, localport, remoteip, remoteport, secretkey): the
        // addresses as they are on the wire, 4 or 16 bytes each.
        let f = match (local.into(), remote.into()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                let mut msg = [0u8; 12];
                msg[0..4].copy_from_slice(&l.octets());
                msg[4..6].copy_from_slice(&local_port.to_be_bytes());
                msg[6..10].copy_from_slice(&r.octets());
                msg[10..12].copy_from_slice(&remote_port.to_be_bytes());
                siphash_2_4(&self.secret, &msg) as u32
            }
            (l, r) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                let mut msg = [0u8; 36];
                msg[0..16].copy_from_slice(&v6(l).octets());
                msg[16..18].copy_from_slice(&local_port.to_be_bytes());
                msg[18..34].copy_from_slice(&v6(r).octets());
                msg[34..36].copy_from_slice(&remote_port.to_be_bytes());
                siphash_2_4(&self.secret, &msg) as u32
            }
        };
        let m = (now.micros() / 4) as u32;
        SeqNumber(m.wrapping_add(f))
    }

    /// A keyed 64-bit hash of arbitrary bytes (used to seed the demux
    /// hasher so remote peers cannot predict bucket collisions).
    pub fn keyed_hash(&self, data: &[u8]) -> u64 {
        siphash_2_4(&self.secret, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn keyed_hash_is_siphash_2_4() {
        // The paper's vector (Appendix A): key 00..0f, message 00..0e.
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(
            IsnGenerator::new(key()).keyed_hash(&msg),
            0xa129_ca61_49be_45e5
        );
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
