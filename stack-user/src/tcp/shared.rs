//! What the control block and the engine both need, below both
//! (quinn-proto's `shared.rs`): the operator warning queue a connection
//! pushes to, and the compact TIME_WAIT entry a connection leaves for the
//! engine's table (`engine/time_wait.rs`). With these here, `tcb/` never
//! imports `engine/`.

use std::collections::VecDeque;

use super::config::RateLimit;
use super::event::Warning;
use super::ratelimit::TokenBucket;
use super::stats::Stats;
use super::wheel::TimerId;
use crate::time::Instant;
use crate::wire::tcp::SeqNumber;

/// Operator warnings, rate-limited as Linux's `net_ratelimit` (a burst of
/// 10, then one per 500 ms).
#[derive(Debug)]
pub(crate) struct Warnings {
    queue: VecDeque<Warning>,
    bucket: TokenBucket,
}

/// Most warnings waiting in the queue.
const MAX_WARNINGS: usize = 1024;

impl Warnings {
    pub(crate) fn new() -> Warnings {
        Warnings {
            queue: VecDeque::new(),
            bucket: TokenBucket::new(Some(RateLimit {
                per_sec: 2,
                burst: 10,
            })),
        }
    }

    /// Queues `w` unless the rate limit or the queue bound holds it back.
    pub(crate) fn push(&mut self, now: Instant, w: Warning, stats: &mut Stats) {
        if self.queue.len() < MAX_WARNINGS && self.bucket.allow(now) {
            self.queue.push_back(w);
        } else {
            stats.warnings_suppressed += 1;
        }
    }

    /// The oldest queued warning.
    pub(crate) fn pop(&mut self) -> Option<Warning> {
        self.queue.pop_front()
    }
}

/// No handle refers to the entry.
pub(crate) const NO_HANDLE: u32 = u32::MAX;

/// Timestamps were in use (RFC 7323); `ts_recent` is valid.
pub(crate) const TW_TS: u8 = 1;
/// The entry is IPv6: `local_addr` indexes the TIME_WAIT table's address
/// slab (`engine::time_wait::TwTable`).
pub(crate) const TW_V6: u8 = 8;

/// One connection in TIME_WAIT: what it takes to ACK a retransmitted FIN,
/// check a new SYN (RFC 6191) and reuse the 4-tuple (`tcp_tw_reuse`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TwEntry {
    /// IPv4: our address; IPv6 (`TW_V6`): the index of the address pair
    /// in the table's slab.
    pub local_addr: u32,
    pub remote_addr: u32,
    pub local_port: u16,
    pub remote_port: u16,
    /// Our SND.NXT (after our FIN): the sequence number of our ACKs and
    /// the base of a new incarnation's ISN.
    pub snd_nxt: SeqNumber,
    /// RCV.NXT (after the peer's FIN).
    pub rcv_nxt: SeqNumber,
    /// TS.Recent, the peer's last timestamp.
    pub ts_recent: u32,
    /// Offset of our TSval clock (milliseconds + offset).
    pub ts_offset: u32,
    /// When `ts_recent` was taken: engine time in milliseconds, wrapping
    /// (Linux `tw_ts_recent_stamp`, in seconds there).
    pub ts_recent_stamp: u32,
    /// When we last answered an invalid segment with an ACK
    /// (`tcp_invalid_ratelimit`; see `ratelimit::oow_ack_allowed`).
    pub last_oow_ack: u32,
    /// Window field of our ACKs (already scaled down).
    pub window: u16,
    /// `TW_*` bits.
    pub flags: u8,
    /// Slot of the control block whose handle the application still holds
    /// (it reports TIME_WAIT until the entry ends), or `NO_HANDLE`.
    pub handle_slot: u32,
    /// Generation of that slot.
    pub handle_gen: u32,
    /// The 2*MSL timer.
    pub timer: TimerId,
}

impl TwEntry {
    /// Timestamps in use.
    pub fn has_ts(&self) -> bool {
        self.flags & TW_TS != 0
    }

    /// Our TSval at `now`.
    pub fn ts_now(&self, now: Instant) -> u32 {
        (now.millis() as u32).wrapping_add(self.ts_offset)
    }
}

/// Engine time in wrapping milliseconds (for `ts_recent_stamp`).
pub(crate) fn stamp(now: Instant) -> u32 {
    now.millis() as u32
}
