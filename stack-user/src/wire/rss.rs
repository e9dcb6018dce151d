//! Receive-side scaling: the Toeplitz hash a NIC computes over a received
//! frame's addresses and ports, and the indirection table that turns the
//! hash into an rx queue (Microsoft, "RSS hashing types" and "Verifying
//! the RSS hash calculation"; Linux `ethtool -x` shows both).
//!
//! The hash input of TCP is the frame's source address, destination
//! address, source port and destination port, in network byte order (12
//! bytes over IPv4, 36 over IPv6); the queue is the indirection table's
//! entry at the hash's low bits (`hash % entries`; drivers report tables
//! of a power-of-two size, so this is the low bits the NIC uses).
//!
//! Pure: the key and table are read from the NIC elsewhere
//! (`runtime::sys::rss`). The Toeplitz hash is linear in its input (XOR
//! of one contribution per input bit), so [`RssTable`] keeps the
//! contribution of every byte value at every input position and hashes a
//! tuple with one lookup per byte.

use std::net::IpAddr;

/// The key of Microsoft's RSS verification suite, which many drivers also
/// use by default.
pub const VERIFICATION_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Bytes of the hash input of TCP over IPv4 (addresses and ports).
pub const TCP4_INPUT: usize = 12;
/// Bytes of the hash input of TCP over IPv6.
pub const TCP6_INPUT: usize = 36;

/// The Toeplitz hash of `input` under `key`, bit by bit as the
/// specification writes it: for every set bit `i` of the input (most
/// significant bit of the first byte first), XOR in the 32 bits of the key
/// starting at bit `i`. Key bits past the key's end count as zero (a key
/// must be 4 bytes longer than the input for a full hash).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= key_window(key, i * 8 + bit);
            }
        }
    }
    hash
}

/// The 32 key bits starting at bit `at` (zero past the key's end).
fn key_window(key: &[u8], at: usize) -> u32 {
    let (byte, shift) = (at / 8, at % 8);
    let mut w = 0u64;
    for k in 0..5 {
        w = (w << 8) | u64::from(key.get(byte + k).copied().unwrap_or(0));
    }
    // 40 bits loaded: drop `shift` leading ones and the 8 - shift trailing.
    ((w << shift) >> 8) as u32
}

/// The TCP hash input of a frame from `src:sport` to `dst:dport`
/// (addresses of one family); its length is [`TCP4_INPUT`] or
/// [`TCP6_INPUT`].
pub fn tcp_input(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> ([u8; TCP6_INPUT], usize) {
    let mut b = [0u8; TCP6_INPUT];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b[..4].copy_from_slice(&s.octets());
            b[4..8].copy_from_slice(&d.octets());
            8
        }
        (s, d) => {
            b[..16].copy_from_slice(&v6(s));
            b[16..32].copy_from_slice(&v6(d));
            32
        }
    };
    b[n..n + 2].copy_from_slice(&sport.to_be_bytes());
    b[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
    (b, n + 4)
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Why a NIC's RSS settings cannot be used to predict its queues.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RssError {
    /// The indirection table is empty.
    #[error("the RSS indirection table is empty")]
    NoTable,
    /// The key is too short for a TCP/IPv4 hash (16 bytes).
    #[error("the RSS key has {0} bytes, fewer than the 16 a TCP/IPv4 hash needs")]
    ShortKey(usize),
}

/// A NIC's RSS settings: the Toeplitz key and the indirection table, with
/// the per-byte contributions precomputed.
#[derive(Clone)]
pub struct RssTable {
    key: Vec<u8>,
    indir: Vec<u32>,
    /// `rows[i][v]`: the hash contribution of byte value `v` at input
    /// position `i` (as many positions as the key covers, up to 36).
    rows: Vec<[u32; 256]>,
}

impl std::fmt::Debug for RssTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RssTable {{ key: {} bytes, indirection: {} entries }}",
            self.key.len(),
            self.indir.len()
        )
    }
}

impl RssTable {
    /// The settings of a NIC that hashes with `key` and maps the hash to
    /// queues through `indir`. A key of fewer than 40 bytes hashes IPv4
    /// only ([`Self::supports`]).
    pub fn new(key: &[u8], indir: Vec<u32>) -> Result<RssTable, RssError> {
        if indir.is_empty() {
            return Err(RssError::NoTable);
        }
        if key.len() < TCP4_INPUT + 4 {
            return Err(RssError::ShortKey(key.len()));
        }
        let positions = (key.len() - 4).min(TCP6_INPUT);
        let rows = (0..positions)
            .map(|i| {
                let mut row = [0u32; 256];
                for (v, slot) in row.iter_mut().enumerate() {
                    *slot = toeplitz(&key[i..], &[v as u8]);
                }
                row
            })
            .collect();
        Ok(RssTable {
            key: key.to_vec(),
            indir,
            rows,
        })
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The indirection table: entry `i` is the queue of hashes whose low
    /// bits are `i`.
    pub fn indirection(&self) -> &[u32] {
        &self.indir
    }

    /// Whether the key is long enough to hash TCP over this family.
    pub fn supports(&self, ipv6: bool) -> bool {
        self.rows.len() >= if ipv6 { TCP6_INPUT } else { TCP4_INPUT }
    }

    /// The Toeplitz hash of `input` (at most as long as the key covers;
    /// bytes past it are ignored, see [`Self::supports`]).
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(&self.rows)
            .fold(0, |h, (&b, row)| h ^ row[usize::from(b)])
    }

    /// The rx queue of a TCP frame from `src:sport` to `dst:dport`.
    pub fn queue(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u32 {
        let (input, n) = tcp_input(src, dst, sport, dport);
        self.queue_of_hash(self.hash(&input[..n]))
    }

    /// The indirection table's entry for `hash`.
    pub fn queue_of_hash(&self, hash: u32) -> u32 {
        self.indir[hash as usize % self.indir.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Microsoft's verification table for IPv4: (destination, its port,
    /// source, its port, hash of the addresses, hash of addresses and ports).
    const IPV4: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "161.142.100.80",
            1766,
            "66.9.149.187",
            2794,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            "65.69.140.83",
            4739,
            "199.92.111.2",
            14230,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            "12.22.207.184",
            38024,
            "24.19.198.95",
            12898,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            "209.142.163.6",
            2217,
            "38.27.205.30",
            48228,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            "202.188.127.2",
            1303,
            "153.39.163.191",
            44251,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    /// The same for IPv6.
    const IPV6: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x2cc1_8cd5,
            0x4020_7d3d,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0x0f0c_461c,
            0xdde5_1bbf,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x4b61_e985,
            0x02d1_feef,
        ),
    ];

    #[test]
    fn toeplitz_matches_the_published_rss_verification_vectors_for_ipv4_and_tcp() {
        let table = RssTable::new(&VERIFICATION_KEY, vec![0]).unwrap();
        for (dst, dport, src, sport, ip_only, with_tcp) in IPV4 {
            let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            let addrs = [s.octets(), d.octets()].concat();
            assert_eq!(
                toeplitz(&VERIFICATION_KEY, &addrs),
                ip_only,
                "{src} → {dst}"
            );
            let (input, n) = tcp_input(s.into(), d.into(), sport, dport);
            assert_eq!(n, TCP4_INPUT);
            assert_eq!(
                toeplitz(&VERIFICATION_KEY, &input[..n]),
                with_tcp,
                "{src}:{sport} → {dst}:{dport}"
            );
            // The table-driven hash agrees with the bitwise one.
            assert_eq!(table.hash(&addrs), ip_only);
            assert_eq!(table.hash(&input[..n]), with_tcp);
        }
    }

    #[test]
    fn toeplitz_matches_the_published_rss_verification_vectors_for_ipv6_and_tcp() {
        let table = RssTable::new(&VERIFICATION_KEY, vec![0]).unwrap();
        assert!(table.supports(true));
        for (dst, dport, src, sport, ip_only, with_tcp) in IPV6 {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            let addrs = [s.octets(), d.octets()].concat();
            assert_eq!(
                toeplitz(&VERIFICATION_KEY, &addrs),
                ip_only,
                "{src} → {dst}"
            );
            let (input, n) = tcp_input(s.into(), d.into(), sport, dport);
            assert_eq!(n, TCP6_INPUT);
            assert_eq!(
                toeplitz(&VERIFICATION_KEY, &input[..n]),
                with_tcp,
                "{src}:{sport} → {dst}:{dport}"
            );
            assert_eq!(table.hash(&addrs), ip_only);
            assert_eq!(table.hash(&input[..n]), with_tcp);
        }
    }

    #[test]
    fn the_queue_is_the_indirection_entry_at_the_hash_low_bits() {
        let indir: Vec<u32> = (0..128).map(|i| i % 4).rev().collect();
        let table = RssTable::new(&VERIFICATION_KEY, indir.clone()).unwrap();
        for (dst, dport, src, sport, _, with_tcp) in IPV4 {
            let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(
                table.queue(s.into(), d.into(), sport, dport),
                indir[(with_tcp & 127) as usize]
            );
        }
    }

    #[test]
    fn a_short_key_hashes_ipv4_only_and_a_bad_table_is_refused() {
        let t = RssTable::new(&VERIFICATION_KEY[..16], vec![0, 1]).unwrap();
        assert!(t.supports(false));
        assert!(!t.supports(true));
        assert_eq!(
            RssTable::new(&VERIFICATION_KEY[..15], vec![0]).unwrap_err(),
            RssError::ShortKey(15)
        );
        assert_eq!(
            RssTable::new(&VERIFICATION_KEY, vec![]).unwrap_err(),
            RssError::NoTable
        );
    }
}
