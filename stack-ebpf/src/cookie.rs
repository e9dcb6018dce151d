//! SYN cookies: the one implementation shared by the XDP program and the
//! userspace engine (this file compiles for both targets), so that either side
//! can validate a cookie the other issued.
//!
//! RFC 4987 §3.6 builds the cookie from a keyed hash of the connection's
//! addresses and ports, a slowly moving counter and the MSS. xstack's
//! layout is one SipHash-2-4 ([`crate::siphash`]) under a 128-bit secret:
//!
//! ```text
//! mac    = SipHash(saddr, daddr, sport, dport, client_isn, count << 2 | mss_index)
//! cookie = mac & !0b111 | (count & 1) << 2 | mss_index
//! ```
//! where `count` is a minute counter of CLOCK_MONOTONIC and `mss_index`
//! indexes [`MSS_TABLE`]. The three low bits travel in the clear: the
//! minute's low bit says which of the [`MAX_AGE`] minutes the cookie was
//! issued in, so the check recomputes exactly one hash (this minute's or
//! the last's), and a forged ACK costs one. The other 29 bits are the MAC:
//! a blind guess passes with probability 2^-29 (Linux's layout,
//! `secure_tcp_syn_cookie`, checks 24 bits against 2 minutes and 4 MSS
//! values: 2^-21), and they keep the SYN-ACK's ISN unpredictable (RFC 6528
//! §3) to one who did not see it.
//!
//! Linux (net/ipv4/syncookies.c) computes two SipHashes per cookie, H1 of the
//! 4-tuple and H2 of the 4-tuple and the count, and hides the count under
//! H1; one hash with the count in the clear halves the SYN's hashing (the
//! XDP program's largest cost per flood SYN after the packet itself).
//! userspace rotates secrets and keeps the previous one valid while
//! cookies issued under it can still be ([`Secrets`]).
//!
//! Over IPv6 ([`Flow6`]) the hash covers both 128-bit addresses, as Linux's
//! `secure_tcpv6_syn_cookie` does; the layout and [`MSS_TABLE`] are the same.
//!
//! With timestamps, window scale, SACK-permitted and ECN ride in the low six
//! bits of the SYN-ACK's TSval (Linux `cookie_init_timestamp`) and come back
//! in the final ACK's TSecr.

use crate::siphash::{siphash_2_4_20, siphash_2_4_44};

/// MSS values a cookie can carry (Linux `msstab` for IPv4).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// Bits of the cookie holding the MSS index, in the clear.
const MSS_BITS: u32 = 2;
/// Bits of the issuing minute the cookie carries in the clear, above the
/// MSS index.
const AGE_BITS: u32 = 1;
/// The cookie's clear bits; the rest is the MAC.
const CLEAR_MASK: u32 = (1 << (MSS_BITS + AGE_BITS)) - 1;

/// Minutes a cookie stays valid: the one it was issued in and the next
/// (Linux `MAX_SYNCOOKIE_AGE` is 2 as well); as many as the clear minute
/// bits tell apart.
pub const MAX_AGE: u32 = 1 << AGE_BITS;

/// TSval bits holding options.
pub const TS_BITS: u32 = 6;
/// Window-scale field of the TSval options; all ones means "no window scaling".
pub const TS_OPT_WSCALE_MASK: u32 = 0xf;
/// SACK-permitted bit of the TSval options.
pub const TS_OPT_SACK: u32 = 1 << 4;
/// ECN bit of the TSval options.
pub const TS_OPT_ECN: u32 = 1 << 5;

/// A 128-bit SipHash key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Secret {
    /// First key word.
    pub k0: u64,
    /// Second key word.
    pub k1: u64,
}

/// The secrets in force: cookies are issued with `current` and accepted
/// under `current`, or under `previous` (rotation without a flag day) in
/// the minutes before `previous_until`.
///
/// Each secret tried costs a SipHash (H1) per ACK that reaches the check,
/// and a forged ACK fails the first; trying `previous` on every one made
/// a forged-ACK flood pay two. A cookie lives [`MAX_AGE`] minutes from the
/// minute it was issued, and none is issued under `previous` after the
/// rotation, so from `previous_until` = the rotation's minute + `MAX_AGE`
/// (+ 1 for an engine that takes the new secret up a minute later) no
/// cookie under it can pass the age check: [`check`] tries it only before
/// (see [`Secrets::tries_previous`]). With the hourly rotation of `xstack
/// serve` that is 3 minutes of every 60.
///
/// Why rotate at all, and why not faster: RFC 4987 §3.6 builds the cookie
/// from a hash of the connection's addresses and ports and a secret, and
/// sets no rotation period; Linux (`net/ipv4/syncookies.c`,
/// `syncookie_secret`, `net_get_random_once`) keeps one secret per boot and
/// gets freshness from the minute counter inside the hash (H2 here) and the
/// `MAX_SYNCOOKIE_AGE` check. SipHash under a 128-bit key is a PRF: seen
/// cookies tell nothing of the key, so a rotation only bounds how long a
/// key leaked some other way stays useful. An hour keeps that bound and
/// makes the second hash rare.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Secrets {
    /// Secret for new cookies.
    pub current: Secret,
    /// The secret before the last rotation.
    pub previous: Secret,
    /// The first minute (the cookie's `count`, [`count_from_ns`]) in which
    /// no cookie under `previous` is valid any more; 0: never tried (no
    /// rotation yet).
    pub previous_until: u32,
    /// Zero (keeps the struct free of padding).
    pub pad: u32,
}

impl Secrets {
    /// Secrets after a rotation in minute `count`: `fresh` for new cookies,
    /// the current one kept as `previous` until no cookie issued under it
    /// can be valid.
    #[inline(always)]
    pub fn rotated(&self, fresh: Secret, count: u32) -> Secrets {
        Secrets {
            current: fresh,
            previous: self.current,
            previous_until: count.saturating_add(MAX_AGE + 1),
            pad: 0,
        }
    }

    /// Whether [`check`] in minute `count` tries `previous` after
    /// `current` failed: only while a cookie issued under it can still be
    /// within its [`MAX_AGE`].
    #[inline(always)]
    pub fn tries_previous(&self, count: u32) -> bool {
        count < self.previous_until
    }

    /// How many secrets [`check`] in minute `count` tries for a cookie
    /// `current` refuses (1 or 2): the SipHash count of a forged ACK.
    #[inline(always)]
    pub fn tried(&self, count: u32) -> u32 {
        1 + u32::from(self.tries_previous(count))
    }
}

/// Options a cookie restores from the final ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// MSS from [`MSS_TABLE`].
    pub mss: u16,
    /// Peer's window-scale shift, when it offered window scaling.
    pub wscale: Option<u8>,
    /// Peer offered SACK.
    pub sack: bool,
    /// Peer asked for ECN.
    pub ecn: bool,
}

/// The flow as the cookie sees it: addresses and ports in host order, from
/// the client's point of view (client = source of the SYN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Client address.
    pub saddr: u32,
    /// Server address.
    pub daddr: u32,
    /// Client port.
    pub sport: u16,
    /// Server port.
    pub dport: u16,
}

/// An IPv6 flow as the cookie sees it: addresses as on the wire, ports in
/// host order, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow6 {
    /// Client address.
    pub saddr: [u8; 16],
    /// Server address.
    pub daddr: [u8; 16],
    /// Client port.
    pub sport: u16,
    /// Server port.
    pub dport: u16,
}

/// A flow a cookie can be keyed on: IPv4 ([`Flow`]) or IPv6 ([`Flow6`]).
pub trait CookieFlow {
    /// The keyed hash of the flow, the client's ISN and `tail` (the
    /// issuing minute and the MSS index, [`tail`]).
    fn hash(&self, secret: &Secret, client_isn: u32, tail: u32) -> u32;
}

/// The message's word of the ports and the client's ISN.
#[inline(always)]
fn ports_word(sport: u16, dport: u16, client_isn: u32) -> u64 {
    (u64::from(sport) << 48) | (u64::from(dport) << 32) | u64::from(client_isn)
}

/// The message's last four bytes: the minute `count` and the MSS index.
#[inline(always)]
fn tail(count: u32, mss_idx: u32) -> u32 {
    (count << MSS_BITS) | (mss_idx & ((1 << MSS_BITS) - 1))
}

impl CookieFlow for Flow {
    #[inline(always)]
    fn hash(&self, secret: &Secret, client_isn: u32, tail: u32) -> u32 {
        let m0 = (u64::from(self.saddr) << 32) | u64::from(self.daddr);
        let m1 = ports_word(self.sport, self.dport, client_isn);
        siphash_2_4_20(secret.k0, secret.k1, m0, m1, tail) as u32
    }
}

/// A [`Flow6`] with each address as the two big-endian 64-bit words the
/// hash takes: the same cookies, computed without byte arrays (what the
/// XDP program builds straight from the packet; byte-wise it runs out of
/// BPF stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow6Words {
    /// Client address, high word first.
    pub saddr: [u64; 2],
    /// Server address, high word first.
    pub daddr: [u64; 2],
    /// Client port.
    pub sport: u16,
    /// Server port.
    pub dport: u16,
}

impl From<&Flow6> for Flow6Words {
    #[inline(always)]
    fn from(f: &Flow6) -> Self {
        let w = |a: &[u8; 16], i: usize| {
            u64::from_be_bytes([
                a[i],
                a[i + 1],
                a[i + 2],
                a[i + 3],
                a[i + 4],
                a[i + 5],
                a[i + 6],
                a[i + 7],
            ])
        };
        Flow6Words {
            saddr: [w(&f.saddr, 0), w(&f.saddr, 8)],
            daddr: [w(&f.daddr, 0), w(&f.daddr, 8)],
            sport: f.sport,
            dport: f.dport,
        }
    }
}

impl CookieFlow for Flow6Words {
    #[inline(always)]
    fn hash(&self, secret: &Secret, client_isn: u32, tail: u32) -> u32 {
        let m = [
            self.saddr[0],
            self.saddr[1],
            self.daddr[0],
            self.daddr[1],
            ports_word(self.sport, self.dport, client_isn),
        ];
        siphash_2_4_44(secret.k0, secret.k1, m, tail) as u32
    }
}

impl CookieFlow for Flow6 {
    #[inline(always)]
    fn hash(&self, secret: &Secret, client_isn: u32, tail: u32) -> u32 {
        Flow6Words::from(self).hash(secret, client_isn, tail)
    }
}

/// Index of the largest [`MSS_TABLE`] entry not above `mss`.
#[inline(always)]
pub fn mss_index(mss: u16) -> u32 {
    if mss >= MSS_TABLE[3] {
        3
    } else if mss >= MSS_TABLE[2] {
        2
    } else if mss >= MSS_TABLE[1] {
        1
    } else {
        0
    }
}

/// The cookie (our ISN) for a SYN with sequence number `client_isn`, issued
/// in minute `count` with MSS index `mss_idx` (0..4).
#[inline(always)]
pub fn generate<F: CookieFlow>(
    secret: &Secret,
    f: &F,
    client_isn: u32,
    count: u32,
    mss_idx: u32,
) -> u32 {
    let mss_idx = mss_idx & ((1 << MSS_BITS) - 1);
    let mac = f.hash(secret, client_isn, tail(count, mss_idx));
    (mac & !CLEAR_MASK) | ((count & ((1 << AGE_BITS) - 1)) << MSS_BITS) | mss_idx
}

/// Checks `cookie` (the final ACK's ack number minus one) against one
/// secret in minute `count`; `client_isn` is the ACK's sequence number
/// minus one. Returns the MSS index when the cookie is authentic and was
/// issued in this minute or the last ([`MAX_AGE`]): the minute bits it
/// carries say which, and one hash decides.
#[inline(always)]
pub fn check_one<F: CookieFlow>(
    secret: &Secret,
    f: &F,
    client_isn: u32,
    cookie: u32,
    count: u32,
) -> Option<u32> {
    let age_mask = (1 << AGE_BITS) - 1;
    // The latest minute at or before `count` with the cookie's low bits.
    let issued = count.wrapping_sub(count.wrapping_sub(cookie >> MSS_BITS) & age_mask);
    let mss_idx = cookie & ((1 << MSS_BITS) - 1);
    if generate(secret, f, client_isn, issued, mss_idx) == cookie {
        Some(mss_idx)
    } else {
        None
    }
}

/// [`check_one`] under the current secret, then, while it can still have
/// valid cookies ([`Secrets::tries_previous`]), the previous one.
#[inline(always)]
pub fn check<F: CookieFlow>(
    secrets: &Secrets,
    f: &F,
    client_isn: u32,
    cookie: u32,
    count: u32,
) -> Option<u32> {
    match check_one(&secrets.current, f, client_isn, cookie, count) {
        Some(i) => Some(i),
        None if secrets.tries_previous(count) => {
            check_one(&secrets.previous, f, client_isn, cookie, count)
        }
        None => None,
    }
}

/// The minute counter for a CLOCK_MONOTONIC time in nanoseconds.
#[inline(always)]
pub fn count_from_ns(monotonic_ns: u64) -> u32 {
    (monotonic_ns / 60_000_000_000) as u32
}

/// How far the coarse clock (`bpf_ktime_get_coarse_ns`,
/// CLOCK_MONOTONIC_COARSE: the time at the last tick) can lag
/// CLOCK_MONOTONIC: one tick, 10 ms at the lowest `CONFIG_HZ` (100).
pub const COARSE_CLOCK_SLACK_NS: u64 = 10_000_000;

/// The minute counter to check a cookie in, from the coarse clock: the
/// XDP program reads it on segments without SYN, where no other use
/// needs more than a tick's precision and it costs no `rdtsc` (read_tsc
/// and ktime_get_mono_fast_ns were 11% of the program's samples under
/// `xstack bench cookies`). Cookies are issued in [`count_from_ns`] of the
/// fine clock (the engine's, and XDP's where a SYN limit needs it) or of
/// the coarse one (XDP's otherwise, `FastpathConfig::syn_needs_fine_clock`),
/// at or behind the fine clock: counted from `coarse_ns` +
/// [`COARSE_CLOCK_SLACK_NS`], the minute is never below the fine clock's,
/// so a cookie is never refused as "from the future" in the tick after a
/// minute starts, and at most one tick's worth of its [`MAX_AGE`] is cut
/// at the other end. A cookie issued on the coarse clock in the first tick
/// of a minute counts from the minute before: it lives at least 60 s less
/// a tick, as one issued at the end of a minute does.
#[inline(always)]
pub fn check_count_from_coarse_ns(coarse_ns: u64) -> u32 {
    count_from_ns(coarse_ns.saturating_add(COARSE_CLOCK_SLACK_NS))
}

/// TSval for a cookie SYN-ACK (Linux `cookie_init_timestamp`): our clock
/// `ts_now` with its low [`TS_BITS`] replaced by the options, kept at or
/// below `ts_now` so it never runs ahead of the clock.
#[inline(always)]
pub fn encode_ts(ts_now: u32, wscale: Option<u8>, sack: bool, ecn: bool) -> u32 {
    let mut opts = match wscale {
        Some(w) => u32::from(w) & TS_OPT_WSCALE_MASK,
        None => TS_OPT_WSCALE_MASK,
    };
    if sack {
        opts |= TS_OPT_SACK;
    }
    if ecn {
        opts |= TS_OPT_ECN;
    }
    let mut ts = ((ts_now >> TS_BITS) << TS_BITS) | opts;
    if ts > ts_now {
        ts = ts.wrapping_sub(1 << TS_BITS);
    }
    ts
}

/// Options from the TSecr of the final ACK (Linux `cookie_timestamp_decode`).
/// `None` when the window-scale field is invalid (above 14 and not "none").
#[inline(always)]
pub fn decode_ts(tsecr: u32, mss_idx: u32) -> Option<CookieOptions> {
    let w = tsecr & TS_OPT_WSCALE_MASK;
    let wscale = if w == TS_OPT_WSCALE_MASK {
        None
    } else if w > 14 {
        return None;
    } else {
        Some(w as u8)
    };
    Some(CookieOptions {
        mss: MSS_TABLE[(mss_idx & 3) as usize],
        wscale,
        sack: tsecr & TS_OPT_SACK != 0,
        ecn: tsecr & TS_OPT_ECN != 0,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// [`generate`] of [`flow`] under key (1, 2), ISN 12345, minute 1000,
    /// MSS index 3.
    const PINNED_V4: u32 = 0x3eb3_c9b3;
    /// [`generate`] of [`flow6`] under key (1, 2), ISN 777, minute 50, MSS
    /// index 3.
    const PINNED_V6: u32 = 0x0d72_e25b;

    fn flow() -> Flow {
        Flow {
            saddr: 0xc612_0001,
            daddr: 0xc612_0002,
            sport: 40000,
            dport: 8080,
        }
    }

    #[test]
    fn a_cookie_checks_with_its_mss_for_max_age_minutes() {
        let s = Secrets {
            current: Secret { k0: 1, k1: 2 },
            previous: Secret { k0: 3, k1: 4 },
            ..Secrets::default()
        };
        for idx in 0..4 {
            let c = generate(&s.current, &flow(), 12345, 1000, idx);
            assert_eq!(check(&s, &flow(), 12345, c, 1000), Some(idx));
            assert_eq!(check(&s, &flow(), 12345, c, 1001), Some(idx));
            assert_eq!(check(&s, &flow(), 12345, c, 1002), None, "expired");
        }
    }

    #[test]
    fn a_cookie_keeps_its_value() {
        // Pinned output: the XDP program and the engine must agree on every
        // cookie, whatever the hash's code looks like.
        let s = Secret { k0: 1, k1: 2 };
        let c = generate(&s, &flow(), 12345, 1000, 3);
        assert_eq!(c, PINNED_V4);
        // The layout of the module doc, from the byte-wise SipHash: the
        // message is the little-endian words (saddr << 32 | daddr),
        // (sport << 48 | dport << 32 | client_isn) and (count << 2 | mss).
        let mut msg = std::vec::Vec::new();
        msg.extend_from_slice(&(0xc612_0001u64 << 32 | 0xc612_0002).to_le_bytes());
        msg.extend_from_slice(&(40000u64 << 48 | 8080u64 << 32 | 12345).to_le_bytes());
        msg.extend_from_slice(&(1000u32 << 2 | 3).to_le_bytes());
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&1u64.to_le_bytes());
        key[8..].copy_from_slice(&2u64.to_le_bytes());
        let mac = crate::siphash::siphash_2_4(&key, &msg) as u32;
        // Minute 1000 is even: the minute bit is 0; MSS index 3.
        assert_eq!(c, (mac & !0b111) | 3);
    }

    #[test]
    fn a_cookie_carries_its_mss_index_and_minute_bit_in_the_clear() {
        let s = Secret { k0: 5, k1: 6 };
        for count in [0u32, 1, 1000, 1001, u32::MAX] {
            for idx in 0..4 {
                let c = generate(&s, &flow(), 99, count, idx);
                assert_eq!(c & 0b11, idx);
                assert_eq!((c >> 2) & 1, count & 1);
            }
        }
    }

    #[test]
    fn a_cookie_with_a_clear_bit_flipped_is_refused() {
        // The clear bits are inside the MAC too: changing the MSS index or
        // the minute bit of a real cookie makes it fail.
        let s = Secrets {
            current: Secret { k0: 5, k1: 6 },
            ..Secrets::default()
        };
        let c = generate(&s.current, &flow(), 99, 1000, 1);
        assert_eq!(check(&s, &flow(), 99, c, 1000), Some(1));
        for bit in 0..3 {
            assert_eq!(check(&s, &flow(), 99, c ^ (1 << bit), 1000), None);
            assert_eq!(check(&s, &flow(), 99, c ^ (1 << bit), 1001), None);
        }
    }

    #[test]
    fn a_cookie_fails_for_another_flow_isn_or_secret() {
        let s = Secrets {
            current: Secret { k0: 1, k1: 2 },
            previous: Secret { k0: 3, k1: 4 },
            ..Secrets::default()
        };
        let c = generate(&s.current, &flow(), 777, 50, 3);
        let mut other = flow();
        other.sport += 1;
        assert_eq!(check(&s, &other, 777, c, 50), None);
        // The client ISN is hashed: any other ISN fails.
        for isn in [778, 776, 777 + 0x10_0000, 777 ^ 0x8000_0000] {
            assert_eq!(check(&s, &flow(), isn, c, 50), None, "isn {isn}");
        }
        assert_eq!(check(&s, &flow(), 777, c ^ 0x100, 50), None);
        let rotated = s.rotated(Secret { k0: 9, k1: 9 }, 50);
        assert_eq!(
            check(&rotated, &flow(), 777, c, 50),
            Some(3),
            "previous secret accepted"
        );
        let twice = rotated.rotated(Secret { k0: 8, k1: 8 }, 50);
        assert_eq!(
            check(&twice, &flow(), 777, c, 50),
            None,
            "two rotations later"
        );
    }

    #[test]
    fn a_cookie_from_before_a_rotation_checks_for_its_whole_lifetime() {
        let old = Secrets {
            current: Secret { k0: 1, k1: 2 },
            ..Secrets::default()
        };
        // Issued at the end of minute 1000, the rotation in the same minute.
        let c = generate(&old.current, &flow(), 4242, 1000, 2);
        let s = old.rotated(Secret { k0: 5, k1: 6 }, 1000);
        assert_eq!(check(&s, &flow(), 4242, c, 1000), Some(2));
        assert_eq!(check(&s, &flow(), 4242, c, 1001), Some(2));
        assert_eq!(check(&s, &flow(), 4242, c, 1002), None, "expired");
        // New cookies are the fresh secret's.
        let n = generate(&s.current, &flow(), 4242, 1001, 1);
        assert_eq!(check(&s, &flow(), 4242, n, 1001), Some(1));
    }

    #[test]
    fn a_forged_ack_long_after_a_rotation_costs_one_secret() {
        let s = Secrets {
            current: Secret { k0: 1, k1: 2 },
            ..Secrets::default()
        }
        .rotated(Secret { k0: 5, k1: 6 }, 1000);
        // Both while cookies under the old secret may live (MAX_AGE, and
        // one minute for an engine that takes the new one up late) ...
        for count in 1000..1000 + MAX_AGE + 1 {
            assert_eq!(s.tried(count), 2, "minute {count}");
        }
        // ... then only the current one, for the rest of the hour.
        for count in 1000 + MAX_AGE + 1..1060 {
            assert_eq!(s.tried(count), 1, "minute {count}");
        }
        // Never rotated: one.
        let fresh = Secrets {
            current: Secret { k0: 1, k1: 2 },
            previous: Secret { k0: 3, k1: 4 },
            ..Secrets::default()
        };
        assert_eq!(fresh.tried(0), 1);
        assert_eq!(fresh.tried(u32::MAX), 1);
    }

    #[test]
    fn a_cookie_under_an_expired_previous_secret_is_refused() {
        let old = Secret { k0: 1, k1: 2 };
        let s = Secrets {
            current: old,
            ..Secrets::default()
        }
        .rotated(Secret { k0: 5, k1: 6 }, 1000);
        // A cookie of the old secret carrying a fresh minute (as an
        // attacker who learnt the old key could make): refused once the
        // old secret is past its last valid minute.
        let late = s.previous_until;
        let c = generate(&old, &flow(), 7, late, 0);
        assert_eq!(check_one(&old, &flow(), 7, c, late), Some(0));
        assert_eq!(check(&s, &flow(), 7, c, late), None);
        // The same cookie a minute before that still checks.
        let c = generate(&old, &flow(), 7, late - 1, 0);
        assert_eq!(check(&s, &flow(), 7, c, late - 1), Some(0));
    }

    #[test]
    fn a_cookie_checks_against_the_coarse_clock_from_the_tick_it_is_issued() {
        let s = Secrets {
            current: Secret { k0: 1, k1: 2 },
            ..Secrets::default()
        };
        let minute = 60_000_000_000u64;
        // Issued (fine clock) just after minute 1000 starts, checked while
        // the coarse clock still shows the tick before it.
        for issued in [1000 * minute, 1000 * minute + 1, 1000 * minute + 3_999_999] {
            let c = generate(&s.current, &flow(), 9, count_from_ns(issued), 1);
            for lag in [0, 1, 4_000_000, COARSE_CLOCK_SLACK_NS] {
                let coarse = issued - lag;
                let n = check_count_from_coarse_ns(coarse);
                assert!(n >= count_from_ns(issued) && n <= count_from_ns(issued) + 1);
                assert_eq!(
                    check(&s, &flow(), 9, c, n),
                    Some(1),
                    "issued {issued}, coarse lag {lag}"
                );
            }
        }
        // Its lifetime ends at most a slack early: valid a slack before
        // MAX_AGE minutes after its minute began, expired after.
        let c = generate(&s.current, &flow(), 9, 1000, 1);
        let end = (1000 + u64::from(MAX_AGE)) * minute;
        let n = check_count_from_coarse_ns(end - COARSE_CLOCK_SLACK_NS - 1);
        assert_eq!(check(&s, &flow(), 9, c, n), Some(1));
        let n = check_count_from_coarse_ns(end - COARSE_CLOCK_SLACK_NS);
        assert_eq!(check(&s, &flow(), 9, c, n), None);
    }

    #[test]
    fn forged_cookies_are_rejected_at_the_expected_rate() {
        // A random 32-bit ACK passes only if its 29 MAC bits match the
        // hash its clear bits select: 2^-29 each. 200,000 tries: expect 0.
        let s = Secrets {
            current: Secret { k0: 11, k1: 12 },
            previous: Secret { k0: 13, k1: 14 },
            ..Secrets::default()
        };
        let mut x = 0x1234_5678u32;
        let mut hits = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if check(&s, &flow(), 99, x, 500).is_some() {
                hits += 1;
            }
        }
        assert!(hits <= 2, "{hits} forged cookies accepted");
    }

    #[test]
    fn timestamp_options_roundtrip_and_never_run_ahead() {
        for ts_now in [0u32, 63, 64, 1_000_000, u32::MAX] {
            for w in [None, Some(0u8), Some(7), Some(14)] {
                for sack in [false, true] {
                    for ecn in [false, true] {
                        let ts = encode_ts(ts_now, w, sack, ecn);
                        if ts_now >= 64 {
                            assert!(ts <= ts_now && ts_now - ts < 128);
                        }
                        let o = decode_ts(ts, 2).unwrap();
                        assert_eq!((o.wscale, o.sack, o.ecn, o.mss), (w, sack, ecn, 1440));
                    }
                }
            }
        }
        assert_eq!(decode_ts(0b1110, 0).map(|o| o.wscale), Some(Some(14)));
        assert!(decode_ts(0xf, 0).unwrap().wscale.is_none());
    }

    fn flow6() -> Flow6 {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[0x20, 0x01, 0, 2]);
        let mut daddr = saddr;
        saddr[15] = 1;
        daddr[15] = 2;
        Flow6 {
            saddr,
            daddr,
            sport: 40000,
            dport: 8080,
        }
    }

    #[test]
    fn an_ipv6_cookie_checks_and_covers_all_128_bits_of_both_addresses() {
        let s = Secrets {
            current: Secret { k0: 1, k1: 2 },
            previous: Secret { k0: 3, k1: 4 },
            ..Secrets::default()
        };
        for idx in 0..4 {
            let c = generate(&s.current, &flow6(), 12345, 1000, idx);
            assert_eq!(check(&s, &flow6(), 12345, c, 1001), Some(idx));
            assert_eq!(check(&s, &flow6(), 12345, c, 1002), None, "expired");
        }
        let c = generate(&s.current, &flow6(), 777, 50, 3);
        // Pinned: the XDP program and the engine must agree.
        assert_eq!(c, PINNED_V6);
        for byte in 0..32 {
            let mut other = flow6();
            if byte < 16 {
                other.saddr[byte] ^= 0x80;
            } else {
                other.daddr[byte - 16] ^= 0x80;
            }
            assert_eq!(check(&s, &other, 777, c, 50), None, "address byte {byte}");
        }
        // The word form is the same flow.
        assert_eq!(
            generate(&s.current, &Flow6Words::from(&flow6()), 777, 50, 3),
            c
        );
        // Not the IPv4 cookie of the same ports.
        assert_ne!(c, generate(&s.current, &flow(), 777, 50, 3));
    }

    #[test]
    fn mss_index_picks_the_largest_entry_not_above() {
        assert_eq!(mss_index(100), 0);
        assert_eq!(mss_index(536), 0);
        assert_eq!(mss_index(1299), 0);
        assert_eq!(mss_index(1300), 1);
        assert_eq!(mss_index(1460), 3);
        assert_eq!(mss_index(9000), 3);
    }
}
