//! The flow-source hint: one byte per slot, set for every source address
//! that ever got an entry in the known-flow tables (`FLOWS`, `FLOWS6`), so
//! that a segment from a source whose slot is clear skips the table lookup
//! (this file compiles for the XDP program and the host, where it is
//! unit-tested).
//!
//! While SYN cookies are in use, XDP looks every segment without SYN up in
//! the known-flow table (to tell a known flow from a cookie ACK). A
//! spoofed flood brings a new 4-tuple with almost every packet: each
//! lookup misses, and misses the cache too, in a bucket array of megabytes
//! (2 MiB at the default 262,144 entries). That miss was 43% of xstack's
//! XDP time per flood SYN, when cookie SYNs were looked up too (they no
//! longer are: `flows`). The hint is
//! [`FLOW_HINT_SLOTS`] bits in [`FLOW_HINT_WORDS`] 64-bit words (32 KiB,
//! which caches hold), indexed by a hash of the source address alone: a
//! flood's spoofed sources never set it (a cookie SYN creates no state),
//! and a server's real clients are far fewer addresses than its
//! connections.
//!
//! Bits, not bytes: a BPF array rounds every value up to 8 bytes, so the
//! hint's first form, a byte per slot, took 2 MiB, as much as the table
//! it stood in front of, and its read was again a cache miss per flood
//! packet (29% of the program's samples on a forged ACK, 20% on a cookie
//! SYN, `perf` under `xstack bench cookies`). A bit is set with an atomic
//! OR, so that writers of other bits in the same word lose nothing.
//!
//! Never a false negative: a slot is set before its entry is inserted and
//! never cleared, so a source with an entry always finds its slot set. An
//! evicted entry leaves its slot set, which only costs the lookup, as does
//! a slot shared with another source. A server that has seen on the order
//! of [`FLOW_HINT_SLOTS`] distinct client addresses since its program was
//! loaded finds most slots set and pays the lookup as before. The hash is
//! not keyed: an attacker who aims spoofed sources at set slots gets the
//! cost of the lookup back, nothing more.

/// Index bits of the hint.
const HINT_BITS: u32 = 18;
/// Slots of the hint (one bit each).
pub const FLOW_HINT_SLOTS: u32 = 1 << HINT_BITS;
/// 64-bit words holding the slots: 32 KiB.
pub const FLOW_HINT_WORDS: u32 = FLOW_HINT_SLOTS / 64;

/// The word of the hint that holds `slot`, and the slot's bit in it.
#[inline(always)]
pub fn word_bit(slot: u32) -> (u32, u64) {
    ((slot >> 6) & (FLOW_HINT_WORDS - 1), 1u64 << (slot & 63))
}

/// MurmurHash3's 64-bit finaliser, top [`HINT_BITS`] bits.
#[inline(always)]
fn slot(mut h: u64) -> u32 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> (64 - HINT_BITS)) as u32
}

/// An IPv4 source's slot (`addr` as the program reads it: the address's
/// wire bytes in a native-endian `u32`).
#[inline(always)]
pub fn slot4(addr: u32) -> u32 {
    slot(u64::from(addr))
}

/// An IPv6 source's slot (its four words as the program reads them).
#[inline(always)]
pub fn slot6(w: [u32; 4]) -> u32 {
    slot(
        (u64::from(w[0]) << 32 | u64::from(w[1]))
            ^ (u64::from(w[2]) << 32 | u64::from(w[3])).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    )
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn slots_are_in_range_and_spread_a_prefix_of_consecutive_sources() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..32_768u32 {
            // 198.18.128.0/17 as the program reads it (wire bytes, native u32).
            let a = u32::from_ne_bytes((0xc612_8000u32 + i).to_be_bytes());
            let s = slot4(a);
            assert!(s < FLOW_HINT_SLOTS);
            seen.insert(s);
        }
        // 32,768 sources into 262,144 slots by chance: ~30,900 distinct.
        assert!(seen.len() > 29_000, "{} distinct slots", seen.len());
    }

    #[test]
    fn every_slot_has_a_bit_of_its_own_in_the_32_kib_of_words() {
        assert_eq!(FLOW_HINT_WORDS as usize * 8, 32 * 1024);
        let mut seen = std::collections::HashSet::new();
        for s in 0..FLOW_HINT_SLOTS {
            let (w, b) = word_bit(s);
            assert!(w < FLOW_HINT_WORDS);
            assert_eq!(b.count_ones(), 1);
            assert!(seen.insert((w, b)), "slot {s} shares its bit");
        }
    }

    #[test]
    fn ipv6_slots_use_every_word_of_the_address() {
        let base = [0x2001_0002u32.to_be(), 0, 0, 1u32.to_be()];
        let s = slot6(base);
        assert!(s < FLOW_HINT_SLOTS);
        for w in 0..4 {
            let mut other = base;
            other[w] ^= 0x0100_0000;
            assert_ne!(slot6(other), s, "word {w} does not change the slot");
        }
    }
}
