//! The TCP option list (RFC 9293 §3.2) as the XDP program reads it: the
//! general walk, one option per step ([`step`], run by `bpf_loop` in the
//! program's `parse` and by [`walk`] on the host), and a fast path for the
//! layouts real SYNs and ACKs carry ([`fast4`], [`fast12`], [`fast20`]),
//! tried first. This file compiles for both targets, so that the fast
//! path is tested against the walk itself.
//!
//! The fast path matches the option kinds and lengths at fixed offsets
//! and reads the values from there: no copy of the options to the stack
//! (`bpf_xdp_load_bytes`), no zeroing of the walk's state and no
//! callback per option. Any other layout, and any byte that differs, goes
//! to the walk, so the fast path only ever answers when the walk would
//! answer the same ([`tests`]).
//!
//! The layouts: Linux's SYN (MSS, SACK_PERM, TS, NOP, WS: 20 bytes; with
//! `tcp_sack` off MSS, NOP, NOP, TS, NOP, WS), MSS alone (4 bytes: what
//! `xstack flood` and many stacks without timestamps send), Windows's SYN
//! (MSS, NOP, WS, NOP, NOP, SACK_PERM: 12 bytes), Linux's with
//! `tcp_timestamps` off (MSS, NOP, NOP, SACK_PERM, NOP, WS: 12 bytes) and
//! NOP, NOP, TS (12 bytes: every segment of a connection with timestamps,
//! the final ACK of a cookie handshake among them).

use core::mem::MaybeUninit;

/// Parsed TCP options. Plain integers and flag bits, no `Option`s: the
/// parser's outcome never decides a memory access, so the verifier can
/// treat these as imprecise and prune its states.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOpts {
    /// MSS (536 when absent: RFC 9293 §3.7.1).
    pub mss: u32,
    /// Window-scale shift as sent (with [`OPT_WSCALE`]).
    pub wscale: u32,
    /// Timestamp value (with [`OPT_TS`]).
    pub tsval: u32,
    /// Timestamp echo reply (with [`OPT_TS`]).
    pub tsecr: u32,
    /// `OPT_*` bits.
    pub has: u32,
}

impl Default for TcpOpts {
    #[inline(always)]
    fn default() -> Self {
        TcpOpts {
            mss: 0,
            wscale: 0,
            tsval: 0,
            tsecr: 0,
            has: 0,
        }
    }
}

/// Window scale present.
pub const OPT_WSCALE: u32 = 1;
/// SACK-permitted present.
pub const OPT_SACK: u32 = 2;
/// Timestamps present.
pub const OPT_TS: u32 = 4;
/// An option with a bad length, or running past the header.
pub const OPT_BAD: u32 = 8;

/// The MSS a segment without the option implies (RFC 9293 §3.7.1).
pub const DEFAULT_MSS: u32 = 536;

/// State of the general walk: the options as read (only the first
/// `optlen` bytes are written), where the next option starts, what was
/// found.
#[repr(C)]
pub struct OptWalk {
    /// The options as read; only the first `optlen` bytes are written.
    pub buf: [MaybeUninit<u8>; 64],
    /// Bytes of options (at most 40).
    pub optlen: u64,
    /// Offset of the next option.
    pub next: u64,
    /// What was found so far.
    pub o: TcpOpts,
}

/// One step of the general walk: the option at `w.next`. Returns 1 to stop.
///
/// # Safety
/// The first `w.optlen` bytes of `w.buf` are initialised.
#[inline(always)]
pub unsafe fn step(w: &mut OptWalk) -> i64 {
    let optlen = w.optlen & 63;
    let i = (w.next & 63) as usize;
    if w.next >= optlen {
        return 1;
    }
    // SAFETY (here and below): only bytes below `optlen`, which the
    // caller wrote, are read.
    let kind = unsafe { w.buf[i].assume_init() };
    if kind == 0 {
        return 1;
    }
    if kind == 1 {
        w.next += 1;
        return 0;
    }
    if w.next + 1 >= optlen {
        w.o.has |= OPT_BAD;
        return 1;
    }
    let len = unsafe { w.buf[(i + 1) & 63].assume_init() } as u64;
    if len < 2 || w.next + len > optlen {
        w.o.has |= OPT_BAD;
        return 1;
    }
    // `next + len <= optlen`: the option's bytes are all below it.
    let b = |k: usize| unsafe { w.buf[(i + k) & 63].assume_init() };
    match (kind, len) {
        (2, 4) => w.o.mss = u32::from(u16::from_be_bytes([b(2), b(3)])),
        (3, 3) => {
            w.o.wscale = u32::from(b(2));
            w.o.has |= OPT_WSCALE;
        }
        (4, 2) => w.o.has |= OPT_SACK,
        (8, 10) => {
            w.o.tsval = u32::from_be_bytes([b(2), b(3), b(4), b(5)]);
            w.o.tsecr = u32::from_be_bytes([b(6), b(7), b(8), b(9)]);
            w.o.has |= OPT_TS;
        }
        (2, _) | (3, _) | (4, _) | (8, _) => {
            w.o.has |= OPT_BAD;
            return 1;
        }
        _ => {}
    }
    w.next += len;
    0
}

/// The general walk over `opts` (the bytes after the fixed header) as the
/// XDP program runs it: `None` for a bad option or more than 40 bytes.
pub fn walk(opts: &[u8]) -> Option<TcpOpts> {
    let mut w = OptWalk {
        buf: [MaybeUninit::new(0); 64],
        optlen: opts.len() as u64,
        next: 0,
        o: TcpOpts {
            mss: DEFAULT_MSS,
            ..TcpOpts::default()
        },
    };
    if opts.is_empty() {
        return Some(w.o);
    }
    if opts.len() > 40 {
        return None;
    }
    for (d, s) in w.buf.iter_mut().zip(opts) {
        *d = MaybeUninit::new(*s);
    }
    for _ in 0..40 {
        // SAFETY: `buf` is initialised.
        if unsafe { step(&mut w) } != 0 {
            break;
        }
    }
    if w.o.has & OPT_BAD != 0 {
        return None;
    }
    Some(w.o)
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Timestamps (kind 8, length 10) at `at`: the two values.
#[inline(always)]
fn ts_at(b: &[u8], at: usize, o: &mut TcpOpts) -> bool {
    if b[at] != 8 || b[at + 1] != 10 {
        return false;
    }
    o.tsval = be32(b, at + 2);
    o.tsecr = be32(b, at + 6);
    o.has |= OPT_TS;
    true
}

/// Four bytes of options: MSS alone. `None`: ask the walk.
#[inline(always)]
pub fn fast4(b: &[u8; 4]) -> Option<TcpOpts> {
    if b[0] != 2 || b[1] != 4 {
        return None;
    }
    Some(TcpOpts {
        mss: be16(b, 2),
        ..TcpOpts::default()
    })
}

/// Twelve bytes: NOP, NOP, TS, Windows's SYN (MSS, NOP, WS, NOP, NOP,
/// SACK_PERM) or Linux's without timestamps (MSS, NOP, NOP, SACK_PERM,
/// NOP, WS). `None`: ask the walk.
#[inline(always)]
pub fn fast12(b: &[u8; 12]) -> Option<TcpOpts> {
    let mut o = TcpOpts {
        mss: DEFAULT_MSS,
        ..TcpOpts::default()
    };
    if b[0] == 1 && b[1] == 1 {
        return if ts_at(b, 2, &mut o) { Some(o) } else { None };
    }
    if b[0] == 2
        && b[1] == 4
        && b[4] == 1
        && b[5] == 3
        && b[6] == 3
        && b[8] == 1
        && b[9] == 1
        && b[10] == 4
        && b[11] == 2
    {
        o.mss = be16(b, 2);
        o.wscale = u32::from(b[7]);
        o.has = OPT_WSCALE | OPT_SACK;
        return Some(o);
    }
    if b[0] == 2
        && b[1] == 4
        && b[4] == 1
        && b[5] == 1
        && b[6] == 4
        && b[7] == 2
        && b[8] == 1
        && b[9] == 3
        && b[10] == 3
    {
        o.mss = be16(b, 2);
        o.wscale = u32::from(b[11]);
        o.has = OPT_WSCALE | OPT_SACK;
        return Some(o);
    }
    None
}

/// Twenty bytes: Linux's SYN, MSS, SACK_PERM, TS, NOP, WS, or without
/// SACK MSS, NOP, NOP, TS, NOP, WS. `None`: ask the walk.
#[inline(always)]
pub fn fast20(b: &[u8; 20]) -> Option<TcpOpts> {
    if b[0] != 2 || b[1] != 4 || b[16] != 1 || b[17] != 3 || b[18] != 3 {
        return None;
    }
    let mut o = TcpOpts {
        mss: be16(b, 2),
        wscale: u32::from(b[19]),
        has: OPT_WSCALE,
        ..TcpOpts::default()
    };
    if b[4] == 4 && b[5] == 2 {
        o.has |= OPT_SACK;
    } else if b[4] != 1 || b[5] != 1 {
        return None;
    }
    if !ts_at(b, 6, &mut o) {
        return None;
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The fast path for `b` if its length has one.
    fn fast(b: &[u8]) -> Option<TcpOpts> {
        match b.len() {
            4 => fast4(b.try_into().ok()?),
            12 => fast12(b.try_into().ok()?),
            20 => fast20(b.try_into().ok()?),
            _ => None,
        }
    }

    const TS: [u8; 10] = [8, 10, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0x12, 0x34];

    fn layouts() -> Vec<Vec<u8>> {
        let mss = [2u8, 4, 0x05, 0xb4];
        let mut linux = mss.to_vec();
        linux.extend([4, 2]);
        linux.extend(TS);
        linux.extend([1, 3, 3, 7]);
        let mut linux_nosack = mss.to_vec();
        linux_nosack.extend([1, 1]);
        linux_nosack.extend(TS);
        linux_nosack.extend([1, 3, 3, 14]);
        let mut nop_ts = std::vec![1u8, 1];
        nop_ts.extend(TS);
        let mut windows = mss.to_vec();
        windows.extend([1, 3, 3, 8, 1, 1, 4, 2]);
        let mut linux_nots = mss.to_vec();
        linux_nots.extend([1, 1, 4, 2, 1, 3, 3, 9]);
        std::vec![
            mss.to_vec(),
            linux,
            linux_nosack,
            nop_ts,
            windows,
            linux_nots
        ]
    }

    #[test]
    fn the_fast_path_takes_the_usual_layouts_and_agrees_with_the_walk() {
        for l in layouts() {
            let f = fast(&l);
            assert!(f.is_some(), "{l:?} not on the fast path");
            assert_eq!(f, walk(&l), "{l:?}");
        }
        let linux = &layouts()[1];
        let o = fast(linux).unwrap();
        assert_eq!(
            (o.mss, o.wscale, o.tsval, o.tsecr, o.has),
            (1460, 7, 0xdead_beef, 0x1234, OPT_WSCALE | OPT_SACK | OPT_TS)
        );
    }

    #[test]
    fn the_fast_path_never_differs_from_the_walk_on_random_option_bytes() {
        // xorshift64*, seeded: the same bytes every run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut taken = 0;
        for round in 0..300_000u32 {
            let mut b: Vec<u8> = if round % 2 == 0 {
                // A usual layout with one to three bytes changed, often
                // to a nearby kind or length.
                let mut l = layouts()[(next() % 6) as usize].clone();
                for _ in 0..1 + next() % 3 {
                    let at = (next() % l.len() as u64) as usize;
                    l[at] = match next() % 3 {
                        0 => (next() % 12) as u8,
                        1 => l[at].wrapping_add(1),
                        _ => next() as u8,
                    };
                }
                l
            } else {
                // Random bytes of a fast-path length, kinds from the
                // usual ones.
                let len = [4usize, 12, 20][(next() % 3) as usize];
                (0..len)
                    .map(|_| match next() % 4 {
                        0 => [0u8, 1, 2, 3, 4, 8, 10][(next() % 7) as usize],
                        _ => next() as u8,
                    })
                    .collect()
            };
            if next() % 7 == 0 {
                b.truncate(4);
            }
            if let Some(f) = fast(&b) {
                taken += 1;
                assert_eq!(Some(f), walk(&b), "{b:?}");
            }
        }
        assert!(taken > 10_000, "only {taken} cases took the fast path");
    }

    #[test]
    fn the_walk_refuses_bad_lengths_and_stops_at_end_of_list() {
        assert_eq!(walk(&[2, 3, 0, 0]), None);
        assert_eq!(walk(&[8, 10, 0]), None);
        let o = walk(&[0, 2, 3, 0]).unwrap();
        assert_eq!((o.mss, o.has), (DEFAULT_MSS, 0));
        assert_eq!(walk(&[0u8; 41]), None);
    }
}
