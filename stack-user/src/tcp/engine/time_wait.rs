//! The TIME_WAIT table: connections that closed first wait 2*MSL here
//! (RFC 9293 §3.6, §3.10.7.4) in a compact entry, apart from full control
//! blocks, as Linux's `inet_timewait_sock` (see
//! `tests::time_wait_entry_is_compact` for the size).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::DemuxBuildHasher;
use crate::tcp::event::FourTuple;
use crate::tcp::seq::SeqNumber;
use crate::tcp::wheel::TimerId;
use crate::time::Instant;

/// No handle refers to the entry.
pub(crate) const NO_HUSK: u32 = u32::MAX;

/// Timestamps were in use (RFC 7323); `ts_recent` is valid.
pub(crate) const TW_TS: u8 = 1;

/// One connection in TIME_WAIT: what it takes to ACK a retransmitted FIN,
/// check a new SYN (RFC 6191) and reuse the 4-tuple (`tcp_tw_reuse`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TwEntry {
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
    /// (`tcp_invalid_ratelimit`; see `tcb::oow_ack_allowed`).
    pub last_oow_ack: u32,
    /// Window field of our ACKs (already scaled down).
    pub window: u16,
    /// `TW_*` bits.
    pub flags: u8,
    /// Slot of the control block whose handle the application still holds
    /// (it reports TIME_WAIT until the entry ends), or `NO_HUSK`.
    pub husk: u32,
    /// Generation of that slot.
    pub husk_gen: u32,
    /// The 2*MSL timer.
    pub timer: TimerId,
}

impl TwEntry {
    /// The 4-tuple, from our side.
    pub fn tuple(&self) -> FourTuple {
        FourTuple {
            local_addr: Ipv4Addr::from(self.local_addr),
            local_port: self.local_port,
            remote_addr: Ipv4Addr::from(self.remote_addr),
            remote_port: self.remote_port,
        }
    }

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

/// The table: a slab of entries and a 4-tuple index.
#[derive(Debug)]
pub(crate) struct TwTable {
    entries: Vec<TwEntry>,
    free: Vec<u32>,
    map: HashMap<FourTuple, u32, DemuxBuildHasher>,
    /// Most entries held at once.
    pub high_water: usize,
}

impl TwTable {
    pub fn new(hasher: DemuxBuildHasher) -> TwTable {
        TwTable {
            entries: Vec::new(),
            free: Vec::new(),
            map: HashMap::with_hasher(hasher),
            high_water: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn lookup(&self, t: &FourTuple) -> Option<u32> {
        self.map.get(t).copied()
    }

    pub fn get(&self, idx: u32) -> Option<&TwEntry> {
        self.entries.get(idx as usize)
    }

    pub fn get_mut(&mut self, idx: u32) -> Option<&mut TwEntry> {
        self.entries.get_mut(idx as usize)
    }

    /// Inserts an entry (its 4-tuple must not be in the table).
    pub fn insert(&mut self, e: TwEntry) -> u32 {
        let tuple = e.tuple();
        let idx = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = e;
                i
            }
            None => {
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        };
        self.map.insert(tuple, idx);
        self.high_water = self.high_water.max(self.map.len());
        idx
    }

    /// Removes an entry; returns it.
    pub fn remove(&mut self, idx: u32) -> Option<TwEntry> {
        let e = *self.entries.get(idx as usize)?;
        let tuple = e.tuple();
        if self.map.get(&tuple) != Some(&idx) {
            return None;
        }
        self.map.remove(&tuple);
        self.free.push(idx);
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_entry_is_compact() {
        let entry = std::mem::size_of::<TwEntry>();
        // The index: a 4-tuple key and a u32 per entry in a SwissTable
        // (plus one control byte), at its 7/8 maximum load.
        let index = std::mem::size_of::<(FourTuple, u32)>() + 1;
        println!(
            "size_of::<TwEntry>() = {entry} bytes; with the 4-tuple index about {} bytes per TIME_WAIT entry",
            entry + index * 8 / 7
        );
        assert!(entry <= 64, "TwEntry is {entry} bytes");
    }
}
