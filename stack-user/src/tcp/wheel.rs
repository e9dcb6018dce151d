//! A hierarchical timing wheel (Varghese & Lauck, 1987; the layout of the
//! Linux and tokio timer wheels) with O(1) arm and cancel.
//!
//! Time is in microseconds. Level `l` has 64 slots of 64^l µs each; eight
//! levels cover 2^48 µs (about 8.9 years). A timer sits on the level of the
//! highest 6-bit group in which its deadline differs from the wheel's
//! current time, in the slot given by that group. Because every timer on a
//! level shares all higher bits with the current time, the lowest occupied
//! level's first occupied slot holds the earliest timers; when time reaches
//! the start of a slot on level `l > 0`, its timers move down (at most seven
//! moves per timer over its life). On level 0 a slot is one microsecond, so
//! timers fire exactly at their deadline.
//!
//! Timers live in a slab of nodes linked into per-slot doubly-linked lists,
//! so [`TimerWheel::cancel`] unlinks in O(1) given the [`TimerId`] that
//! [`TimerWheel::arm`] returned. A 64-bit occupancy bitmap per level finds
//! the next occupied slot with one `trailing_zeros`.

/// Bits per level (64 slots).
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
/// Levels: 8 × 6 = 48 bits of microseconds.
const LEVELS: usize = 8;
/// Span of the wheel: deadlines past the end of the current 2^48 µs block
/// are brought in to it (they fire early, which the engine's timers
/// tolerate: each one checks its own deadline).
pub const MAX_DELAY: u64 = (1 << (BITS as u64 * LEVELS as u64)) - 1;
const NIL: u32 = u32::MAX;

/// Handle of an armed timer, valid until it fires or is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u32);

impl TimerId {
    /// A handle that refers to no timer.
    pub const NONE: TimerId = TimerId(NIL);

    /// True for [`TimerId::NONE`].
    pub fn is_none(self) -> bool {
        self.0 == NIL
    }
}

#[derive(Clone, Copy, Debug)]
struct Node<K> {
    deadline: u64,
    prev: u32,
    next: u32,
    level: u8,
    slot: u8,
    armed: bool,
    key: K,
}

/// The wheel. `K` is what a timer carries back when it fires.
#[derive(Debug)]
pub struct TimerWheel<K: Copy> {
    /// The wheel's current time: every timer's deadline is at or after it.
    elapsed: u64,
    heads: Box<[[u32; SLOTS]; LEVELS]>,
    /// A lower bound of the deadlines in each slot (exact unless the
    /// earliest timer of the slot was cancelled).
    slot_min: Box<[[u64; SLOTS]; LEVELS]>,
    occupied: [u64; LEVELS],
    nodes: Vec<Node<K>>,
    free: u32,
    len: usize,
}

impl<K: Copy> TimerWheel<K> {
    /// An empty wheel whose time starts at `now` (µs).
    pub fn new(now: u64) -> TimerWheel<K> {
        TimerWheel {
            elapsed: now,
            heads: Box::new([[NIL; SLOTS]; LEVELS]),
            slot_min: Box::new([[u64::MAX; SLOTS]; LEVELS]),
            occupied: [0; LEVELS],
            nodes: Vec::new(),
            free: NIL,
            len: 0,
        }
    }

    /// An empty wheel with room for `n` timers before it reallocates.
    pub fn with_capacity(now: u64, n: usize) -> TimerWheel<K> {
        let mut w = TimerWheel::new(now);
        w.nodes.reserve(n);
        w
    }

    /// Timers armed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wheel's current time.
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    fn level_for(&self, deadline: u64) -> usize {
        let masked = (self.elapsed ^ deadline) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        ((significant / BITS) as usize).min(LEVELS - 1)
    }

    /// Arms a timer for `deadline` (µs; a deadline already past fires on
    /// the next [`poll`](Self::poll)). O(1).
    pub fn arm(&mut self, deadline: u64, key: K) -> TimerId {
        // Beyond the top level's span (the end of the current 2^48 µs block)
        // a deadline is brought in, and fires early.
        let deadline = deadline.clamp(self.elapsed, self.elapsed | MAX_DELAY);
        let node = Node {
            deadline,
            prev: NIL,
            next: NIL,
            level: 0,
            slot: 0,
            armed: true,
            key,
        };
        let idx = if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            self.nodes[i as usize] = node;
            i
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        };
        self.link(idx);
        self.len += 1;
        TimerId(idx)
    }

    fn link(&mut self, idx: u32) {
        let deadline = self.nodes[idx as usize].deadline;
        let level = self.level_for(deadline);
        let slot = ((deadline >> (BITS as usize * level)) as usize) & (SLOTS - 1);
        let head = self.heads[level][slot];
        {
            let n = &mut self.nodes[idx as usize];
            n.level = level as u8;
            n.slot = slot as u8;
            n.prev = NIL;
            n.next = head;
        }
        if head != NIL {
            self.nodes[head as usize].prev = idx;
            let m = &mut self.slot_min[level][slot];
            *m = (*m).min(deadline);
        } else {
            self.slot_min[level][slot] = deadline;
        }
        self.heads[level][slot] = idx;
        self.occupied[level] |= 1 << slot;
    }

    fn unlink(&mut self, idx: u32) {
        let n = self.nodes[idx as usize];
        let (level, slot) = (n.level as usize, n.slot as usize);
        if n.prev != NIL {
            self.nodes[n.prev as usize].next = n.next;
        } else {
            self.heads[level][slot] = n.next;
            if n.next == NIL {
                self.occupied[level] &= !(1 << slot);
            }
        }
        if n.next != NIL {
            self.nodes[n.next as usize].prev = n.prev;
        }
    }

    fn release(&mut self, idx: u32) -> K {
        let n = &mut self.nodes[idx as usize];
        n.armed = false;
        n.next = self.free;
        self.free = idx;
        self.len -= 1;
        n.key
    }

    /// Cancels a timer; returns its key, or `None` if `id` is not armed
    /// (already fired or cancelled). O(1).
    pub fn cancel(&mut self, id: TimerId) -> Option<K> {
        let n = self.nodes.get(id.0 as usize)?;
        if !n.armed {
            return None;
        }
        self.unlink(id.0);
        Some(self.release(id.0))
    }

    /// Moves an armed timer to `deadline` (unlinked and linked again, no
    /// new node), or arms a new one when `id` is not armed: the same as
    /// [`cancel`](Self::cancel) then [`arm`](Self::arm), in fewer steps.
    /// O(1).
    pub fn rearm(&mut self, id: TimerId, deadline: u64, key: K) -> TimerId {
        match self.nodes.get(id.0 as usize) {
            Some(n) if n.armed => {
                self.unlink(id.0);
                let n = &mut self.nodes[id.0 as usize];
                n.deadline = deadline.clamp(self.elapsed, self.elapsed | MAX_DELAY);
                n.key = key;
                self.link(id.0);
                id
            }
            _ => self.arm(deadline, key),
        }
    }

    /// The deadline of an armed timer.
    pub fn deadline(&self, id: TimerId) -> Option<u64> {
        self.nodes
            .get(id.0 as usize)
            .filter(|n| n.armed)
            .map(|n| n.deadline)
    }

    /// The earliest occupied slot: (level, slot, start of the slot's span).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occ = self.occupied[level];
            if occ == 0 {
                continue;
            }
            let shift = BITS as usize * level;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            let slot = (now_slot + occ.rotate_right(now_slot as u32).trailing_zeros() as usize)
                & (SLOTS - 1);
            let span = shift + BITS as usize;
            let base = self.elapsed & !((1u64 << span) - 1);
            let start = (base | ((slot as u64) << shift)).max(self.elapsed);
            return Some((level, slot, start));
        }
        None
    }

    /// When the next timer fires at the earliest: exact when the earliest
    /// timer is on level 0, otherwise a lower bound (never late).
    pub fn next_deadline(&self) -> Option<u64> {
        self.next_slot()
            .map(|(level, slot, start)| start.max(self.slot_min[level][slot]))
    }

    /// Advances the wheel to `now` and appends the key of every timer whose
    /// deadline is at or before `now` to `fired` (in no particular order
    /// within one call). Time never goes back: an earlier `now` does
    /// nothing.
    pub fn poll(&mut self, now: u64, fired: &mut Vec<K>) {
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = start;
            let mut idx = self.heads[level][slot];
            self.heads[level][slot] = NIL;
            self.occupied[level] &= !(1 << slot);
            while idx != NIL {
                let next = self.nodes[idx as usize].next;
                if self.nodes[idx as usize].deadline <= now {
                    fired.push(self.release(idx));
                } else {
                    self.link(idx);
                }
                idx = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn fires_exactly_at_the_deadline() {
        let mut w = TimerWheel::new(1_000);
        w.arm(1_000 + 60_000_000, 'a');
        w.arm(1_005, 'b');
        let mut out = vec![];
        assert_eq!(w.next_deadline(), Some(1_005));
        w.poll(1_004, &mut out);
        assert!(out.is_empty());
        w.poll(1_005, &mut out);
        assert_eq!(out, vec!['b']);
        // The 60 s timer: lower bounds until it reaches level 0, never late.
        let mut t = w.now();
        loop {
            let d = w.next_deadline().unwrap();
            assert!(d <= 1_000 + 60_000_000 && d >= t);
            t = d;
            w.poll(t, &mut out);
            if out.len() == 2 {
                break;
            }
        }
        assert_eq!((t, out[1]), (1_000 + 60_000_000, 'a'));
        assert!(w.is_empty() && w.next_deadline().is_none());
    }

    #[test]
    fn cancel_is_exact_and_idempotent() {
        let mut w = TimerWheel::new(0);
        let a = w.arm(500, 1u32);
        let b = w.arm(500, 2u32);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.len(), 1);
        let mut out = vec![];
        w.poll(10_000, &mut out);
        assert_eq!(out, vec![2]);
        assert_eq!(w.cancel(b), None, "fired timers cannot be cancelled");
        assert_eq!(w.cancel(TimerId::NONE), None);
    }

    #[test]
    fn a_rearmed_timer_fires_once_at_its_new_deadline() {
        let mut w = TimerWheel::new(0);
        let a = w.arm(1_000_000, 'a');
        w.arm(500, 'b');
        // Earlier, then later: one timer all along.
        let a = w.rearm(a, 200, 'a');
        assert_eq!(w.next_deadline(), Some(200));
        let a2 = w.rearm(a, 700, 'a');
        assert_eq!((a2, w.len()), (a, 2));
        let mut out = vec![];
        w.poll(600, &mut out);
        assert_eq!(out, vec!['b']);
        assert_eq!(w.deadline(a), Some(700));
        w.poll(700, &mut out);
        assert_eq!(out, vec!['b', 'a']);
        assert!(w.is_empty());
        // Not armed (fired, or NONE): a new timer.
        let c = w.rearm(a, 900, 'c');
        assert_eq!(w.len(), 1);
        let d = w.rearm(TimerId::NONE, 800, 'd');
        assert_ne!(c, d);
        out.clear();
        w.poll(10_000, &mut out);
        assert_eq!(out, vec!['d', 'c']);
        assert!(w.is_empty() && w.next_deadline().is_none());
    }

    #[test]
    fn past_deadlines_fire_on_the_next_poll() {
        let mut w = TimerWheel::new(1_000_000);
        w.arm(5, 'x');
        assert_eq!(w.next_deadline(), Some(1_000_000));
        let mut out = vec![];
        w.poll(1_000_000, &mut out);
        assert_eq!(out, vec!['x']);
    }

    #[test]
    fn matches_a_sorted_reference_over_random_operations() {
        // Random arms and cancels, random jumps in time: every timer fires
        // in the first poll at or after its deadline, never before.
        let mut seed = 42;
        let mut w = TimerWheel::new(0);
        let mut live: Vec<(TimerId, u64, u32)> = vec![];
        let mut now = 0u64;
        let mut out = vec![];
        for step in 0..20_000u32 {
            match rng(&mut seed) % 4 {
                0 | 1 => {
                    let delay = match rng(&mut seed) % 3 {
                        0 => rng(&mut seed) % 100,
                        1 => rng(&mut seed) % 100_000_000,
                        _ => rng(&mut seed) % 10_000_000_000,
                    };
                    let id = w.arm(now + delay, step);
                    live.push((id, now + delay, step));
                }
                2 if !live.is_empty() && step % 2 == 0 => {
                    let i = (rng(&mut seed) % live.len() as u64) as usize;
                    let (id, _, key) = live.swap_remove(i);
                    assert_eq!(w.cancel(id), Some(key));
                }
                2 if !live.is_empty() => {
                    // Moved, as the engine moves a connection's timer.
                    let i = (rng(&mut seed) % live.len() as u64) as usize;
                    let at = now + rng(&mut seed) % 100_000_000;
                    let (id, _, _) = live[i];
                    live[i] = (w.rearm(id, at, step), at, step);
                }
                _ => {
                    if let Some(d) = w.next_deadline() {
                        let earliest = live.iter().map(|l| l.1).min().unwrap();
                        assert!(d <= earliest, "lower bound {d} > {earliest}");
                    }
                    now += rng(&mut seed) % 50_000_000;
                    out.clear();
                    w.poll(now, &mut out);
                    let mut due: Vec<u32> =
                        live.iter().filter(|l| l.1 <= now).map(|l| l.2).collect();
                    live.retain(|l| l.1 > now);
                    due.sort_unstable();
                    out.sort_unstable();
                    assert_eq!(out, due, "at {now}");
                }
            }
            assert_eq!(w.len(), live.len());
        }
    }
}
