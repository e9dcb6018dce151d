//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::Ipv4Addr;

/// Adds `data` to a running one's-complement sum (not yet folded).
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
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

/// Sum of the IPv4 pseudo-header used by TCP and UDP (RFC 9293 §3.1).
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
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
