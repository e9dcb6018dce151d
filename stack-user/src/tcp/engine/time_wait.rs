//! TIME_WAIT (Linux `tcp_minisocks.c`): connections that closed first
//! wait 2*MSL here (RFC 9293 §3.6, §3.10.7.4) as a compact entry
//! (`shared::TwEntry`, as Linux's `inet_timewait_sock`; see
//! `tests::time_wait_entry_is_compact` for the size), apart from full
//! control blocks: the table, the segments that reach an entry, its ACKs,
//! the 2*MSL timer, and 4-tuple reuse.

use std::net::{IpAddr, Ipv6Addr};

use super::{CtlSegment, DemuxBuildHasher, TcpEngine, TimerKey, TupleMap};
use crate::tcp::event::{ConnId, Event, FourTuple, Warning};
use crate::tcp::ratelimit::oow_ack_allowed;
use crate::tcp::shared::{stamp, TwEntry, NO_HANDLE, TW_V6};
use crate::time::Instant;
use crate::wire::tcp::SeqNumber;
use crate::wire::tcp::{TcpOptions, TcpRepr, Timestamps, ACK};

/// The table: a slab of entries and a 4-tuple index. An entry holds
/// IPv4 addresses in place; an IPv6 entry's pair lives in a side slab
/// (`addrs6`) and the entry keeps its index, so IPv4 entries stay as
/// compact as before IPv6.
#[derive(Debug)]
pub(crate) struct TwTable {
    entries: Vec<TwEntry>,
    free: Vec<u32>,
    map: TupleMap<u32>,
    addrs6: Vec<[Ipv6Addr; 2]>,
    free6: Vec<u32>,
    /// Most entries held at once.
    pub high_water: usize,
}

impl TwTable {
    pub fn new(hasher: DemuxBuildHasher) -> TwTable {
        TwTable {
            entries: Vec::new(),
            free: Vec::new(),
            map: TupleMap::with_capacity_and_hasher(0, hasher),
            addrs6: Vec::new(),
            free6: Vec::new(),
            high_water: 0,
        }
    }

    /// An entry's 4-tuple, from our side.
    pub fn tuple(&self, e: &TwEntry) -> FourTuple {
        let (local_addr, remote_addr) = if e.flags & TW_V6 != 0 {
            let [l, r] = self
                .addrs6
                .get(e.local_addr as usize)
                .copied()
                .unwrap_or([Ipv6Addr::UNSPECIFIED; 2]);
            (IpAddr::V6(l), IpAddr::V6(r))
        } else {
            (
                IpAddr::V4(e.local_addr.into()),
                IpAddr::V4(e.remote_addr.into()),
            )
        };
        FourTuple {
            local_addr,
            local_port: e.local_port,
            remote_addr,
            remote_port: e.remote_port,
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

    /// Inserts an entry for `tuple` (not in the table yet).
    pub fn insert(&mut self, mut e: TwEntry, tuple: FourTuple) -> u32 {
        match (tuple.local_addr, tuple.remote_addr) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                e.local_addr = u32::from(l);
                e.remote_addr = u32::from(r);
                e.flags &= !TW_V6;
            }
            (l, r) => {
                let pair = [super::v6(l), super::v6(r)];
                let i = match self.free6.pop() {
                    Some(i) => {
                        self.addrs6[i as usize] = pair;
                        i
                    }
                    None => {
                        self.addrs6.push(pair);
                        (self.addrs6.len() - 1) as u32
                    }
                };
                e.local_addr = i;
                e.remote_addr = 0;
                e.flags |= TW_V6;
            }
        }
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
        let tuple = self.tuple(&e);
        if !self.map.remove_if(&tuple, idx) {
            return None;
        }
        if e.flags & TW_V6 != 0 {
            self.free6.push(e.local_addr);
        }
        self.free.push(idx);
        Some(e)
    }
}

impl TcpEngine {
    /// A segment for a 4-tuple in TIME_WAIT (Linux
    /// `tcp_timewait_state_process`). Returns the ISN for a new incarnation
    /// when `seg` is a SYN that may reopen the 4-tuple (RFC 6191: its
    /// timestamp is newer, or its sequence number is above the old
    /// RCV.NXT; RFC 1122 §4.2.2.13); otherwise handles it.
    pub(super) fn on_time_wait(
        &mut self,
        now: Instant,
        twi: u32,
        seg: &TcpRepr,
    ) -> Option<SeqNumber> {
        let e = *self.tw.get(twi)?;
        let seg_ts = seg.options.timestamps.filter(|_| e.has_ts());
        // RFC 7323 §5 (PAWS) on the remembered TS.Recent.
        let paws_reject =
            !seg.rst() && seg_ts.is_some_and(|ts| (ts.tsval.wrapping_sub(e.ts_recent) as i32) < 0);
        if !paws_reject && seg.seq == e.rcv_nxt && (seg.seq_len() == 0 || seg.rst()) {
            // In-window: only an RST or a bare ACK.
            if seg.rst() {
                if !self.cfg.tcp_rfc1337 {
                    // TIME-WAIT assassination (RFC 1337), allowed by
                    // tcp_rfc1337 = 0 as on Linux and in RFC 9293.
                    self.stats.rst_in += 1;
                    self.stats.time_wait_killed += 1;
                    self.tw_end(twi, false);
                    return None;
                }
                // RFC 1337 §3: "ignore RST segments in TIME-WAIT state".
                self.stats.drop_ignored += 1;
            } else {
                self.tw_restart(twi);
            }
            if let (Some(ts), Some(entry)) = (seg_ts, self.tw.get_mut(twi)) {
                entry.ts_recent = ts.tsval;
                entry.ts_recent_stamp = stamp(now);
            }
            return None;
        }
        if seg.syn()
            && !seg.rst()
            && seg.ack.is_none()
            && !paws_reject
            && (seg.seq.diff(e.rcv_nxt) > 0
                || seg_ts.is_some_and(|ts| (e.ts_recent.wrapping_sub(ts.tsval) as i32) < 0))
        {
            let mut isn = e.snd_nxt + 65_537u32;
            if isn == SeqNumber(0) {
                isn = SeqNumber(1);
            }
            return Some(isn);
        }
        if paws_reject {
            self.stats.drop_paws += 1;
        }
        if seg.rst() {
            self.stats.drop_ignored += 1;
            return None;
        }
        // Out of window, an old SYN, a retransmitted FIN: ACK it. A FIN or
        // any ACK restarts the 2*MSL timer (RFC 9293 §3.10.7.4 eighth:
        // "Restart the 2 MSL time-wait timeout"); an ACK-less SYN might be
        // a fresh one with a random ISN below RCV.NXT, so it does not.
        if paws_reject || seg.ack.is_some() {
            self.tw_restart(twi);
        }
        // At most one ACK per `tcp_invalid_ratelimit` unless the segment
        // carries data or a FIN (a retransmitted FIN is always re-ACKed):
        // an ACK loop with a peer that lost track of the old incarnation
        // would otherwise never end (Linux TCPACKSkippedTimeWait).
        if seg.seq_len() == 0 || seg.syn() {
            let limit = self.cfg.tcp_invalid_ratelimit;
            let allowed = self
                .tw
                .get_mut(twi)
                .is_some_and(|e| oow_ack_allowed(&mut e.last_oow_ack, now, limit));
            if !allowed {
                self.stats.ack_skipped_time_wait += 1;
                return None;
            }
        }
        self.tw_ack(now, twi);
        None
    }

    /// The ACK a TIME_WAIT entry sends: <SEQ=SND.NXT><ACK=RCV.NXT>.
    pub(super) fn tw_ack(&mut self, now: Instant, twi: u32) {
        let Some(e) = self.tw.get(twi).copied() else {
            return;
        };
        let options = TcpOptions {
            timestamps: e.has_ts().then(|| Timestamps {
                tsval: e.ts_now(now),
                tsecr: e.ts_recent,
            }),
            ..TcpOptions::default()
        };
        self.queue_ctl(CtlSegment {
            tuple: self.tw.tuple(&e),
            seq: e.snd_nxt,
            ack: e.rcv_nxt,
            flags: ACK,
            window: e.window,
            options,
        });
    }

    /// Restarts the 2*MSL timer of an entry.
    pub(super) fn tw_restart(&mut self, twi: u32) {
        let deadline = self.clock + self.cfg.msl * 2;
        if let Some(e) = self.tw.get_mut(twi) {
            self.timers.cancel(e.timer);
            e.timer = self.timers.arm(deadline.0, TimerKey::TimeWait(twi));
        }
    }

    /// Ends a TIME_WAIT entry; a handle still held sees CLOSED.
    pub(super) fn tw_end(&mut self, twi: u32, cancel: bool) {
        let Some(e) = self.tw.remove(twi) else {
            return;
        };
        if cancel {
            self.timers.cancel(e.timer);
        }
        if e.handle_slot != NO_HANDLE {
            if let Some(slot) = self.slots.get_mut(e.handle_slot as usize) {
                if slot.gen == e.handle_gen {
                    if let Some(tcb) = slot.tcb.as_mut() {
                        tcb.set_in_time_wait(false);
                        if !tcb.is_orphan() {
                            self.events.push_back(Event::Closed(ConnId {
                                idx: e.handle_slot,
                                gen: e.handle_gen,
                            }));
                        }
                    }
                }
            }
        }
    }

    /// Moves a connection that entered TIME-WAIT on to the table (or, when
    /// the table is full, closes it without TIME_WAIT as Linux does).
    pub(super) fn enter_time_wait(
        &mut self,
        mut e: TwEntry,
        tuple: FourTuple,
        ack_owed: bool,
        handle: Option<ConnId>,
    ) {
        if let Some(old) = self.tw.lookup(&tuple) {
            self.tw_end(old, true);
        }
        if self.tw.len() >= self.cfg.tcp_max_tw_buckets {
            self.stats.time_wait_overflow += 1;
            let max = self.cfg.tcp_max_tw_buckets;
            self.warnings.push(
                self.clock,
                Warning::TimeWaitOverflow { max },
                &mut self.stats,
            );
            if let Some(id) = handle {
                self.events.push_back(Event::Closed(id));
            }
        } else {
            if let Some(id) = handle {
                e.handle_slot = id.idx;
                e.handle_gen = id.gen;
                if let Some(tcb) = self
                    .slots
                    .get_mut(id.idx as usize)
                    .and_then(|s| s.tcb.as_mut())
                {
                    tcb.set_in_time_wait(true);
                }
            }
            self.stats.time_wait_entered += 1;
            let deadline = self.clock + self.cfg.msl * 2;
            let twi = self.tw.insert(e, tuple);
            let timer = self.timers.arm(deadline.0, TimerKey::TimeWait(twi));
            if let Some(entry) = self.tw.get_mut(twi) {
                entry.timer = timer;
            }
        }
        if ack_owed {
            // The ACK of the FIN that brought us here.
            let options = TcpOptions {
                timestamps: e.has_ts().then(|| Timestamps {
                    tsval: e.ts_now(self.clock),
                    tsecr: e.ts_recent,
                }),
                ..TcpOptions::default()
            };
            self.queue_ctl(CtlSegment {
                tuple,
                seq: e.snd_nxt,
                ack: e.rcv_nxt,
                flags: ACK,
                window: e.window,
                options,
            });
        }
    }

    /// May `connect` take over this TIME_WAIT entry? `tcp_tw_reuse` 1: the
    /// old incarnation used timestamps and its last one is at least 1 s old
    /// (Linux `tcp_twsk_unique`), so the new SYN's timestamp is newer and
    /// PAWS on both sides tells the incarnations apart; or
    /// `tw_isn_above_last`, which makes the new ISN start above the old
    /// sequence space.
    pub(super) fn tw_reusable(&self, now: Instant, e: &TwEntry) -> bool {
        self.cfg.tw_isn_above_last
            || (self.cfg.tcp_tw_reuse == 1
                && e.has_ts()
                && stamp(now).wrapping_sub(e.ts_recent_stamp) >= 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_entry_is_compact() {
        let entry = std::mem::size_of::<TwEntry>();
        // The index: a 4-tuple key and a u32 per entry in a SwissTable
        // (plus one control byte), at its 7/8 maximum load. IPv4 keys.
        let index = std::mem::size_of::<(super::super::demux::Key4, u32)>() + 1;
        println!(
            "size_of::<TwEntry>() = {entry} bytes; with the 4-tuple index about {} bytes per TIME_WAIT entry",
            entry + index * 8 / 7
        );
        assert!(entry <= 64, "TwEntry is {entry} bytes");
    }
}
