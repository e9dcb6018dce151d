//! Demultiplexing: a received segment goes to its connection, its
//! TIME_WAIT entry, a listener, or the RST of RFC 9293 §3.10.7.1 (Linux
//! `tcp_v4_rcv`).

use std::hash::{BuildHasher, Hasher};

use super::*;

impl TcpEngine {
    /// Handles one received TCP segment (`segment` is the IPv4 payload)
    /// from `src` to `dst`. The checksum is verified; malformed segments
    /// are dropped and counted by reason.
    pub fn on_segment(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) {
        self.stats.segments_in += 1;
        if let Some(seg) = self.parse(now, src, dst, segment) {
            self.handle(now, src, dst, &seg);
        }
    }

    /// Parses and checks a received segment, counting what it drops: the
    /// checksum verifies, or holds only the pseudo-header sum where
    /// `accept_checksum_partial` allows it (counted apart; the first
    /// segment refused for it raises a warning that says what to change).
    pub(super) fn parse<'a>(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        segment: &'a [u8],
    ) -> Option<TcpRepr<'a>> {
        let accept = self.cfg.accept_checksum_partial;
        match TcpRepr::parse_accepting_partial(src, dst, segment, accept) {
            Ok((seg, ChecksumKind::Full)) => Some(seg),
            Ok((seg, ChecksumKind::Partial)) => {
                self.stats.checksum_partial_in += 1;
                Some(seg)
            }
            Err(e) => {
                let first = self.stats.parse_drops[e.index()] == 0;
                if let Some(c) = self.stats.parse_drops.get_mut(e.index()) {
                    *c += 1;
                }
                if first && e == TcpParseError::ChecksumPartial {
                    self.warnings.push(
                        now,
                        Warning::ChecksumPartialDropped { from: src },
                        &mut self.stats,
                    );
                }
                None
            }
        }
    }

    pub(super) fn handle(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr) {
        self.clock = self.clock.max(now);
        let tuple = FourTuple {
            local_addr: dst,
            local_port: seg.dst_port,
            remote_addr: src,
            remote_port: seg.src_port,
        };
        if let Some(&idx) = self.conns.get(&tuple) {
            if self.accept_queue_refuses(idx, tuple, seg) {
                return;
            }
            self.run(idx, |tcb, ctx| tcb.on_segment(now, seg, ctx));
            return;
        }
        let mut iss = None;
        if let Some(twi) = self.tw.lookup(&tuple) {
            match self.on_time_wait(now, twi, seg) {
                None => return,
                Some(isn) => iss = Some(isn),
            }
        }
        match self.find_listener(dst, seg.dst_port) {
            Some(lid) => {
                if let Some(twi) = self.tw.lookup(&tuple) {
                    // RFC 6191: the SYN opens a new incarnation.
                    self.stats.time_wait_syn_reopen += 1;
                    self.tw_end(twi, true);
                }
                self.on_listen(now, lid, tuple, seg, iss)
            }
            None => match self.tw.lookup(&tuple) {
                // No listener for a SYN that could reopen: TIME_WAIT
                // answers it with its ACK (Linux TCP_TW_SYN → TCP_TW_ACK).
                Some(twi) => self.tw_ack(now, twi),
                None => self.no_socket(now, tuple, seg),
            },
        }
    }

    /// RFC 9293 §3.10.7.1, CLOSED: "An incoming segment not containing a
    /// RST causes a RST to be sent in response": <SEQ=SEG.ACK><CTL=RST> if
    /// the ACK bit is on, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    /// Rate-limited by `rst_ratelimit` so that a scan or a flood to closed
    /// ports cannot turn the engine into an RST cannon.
    pub(super) fn no_socket(&mut self, now: Instant, tuple: FourTuple, seg: &TcpRepr) {
        self.stats.no_socket += 1;
        if seg.rst() {
            return;
        }
        if !self.rst_bucket.allow(now) {
            self.stats.rst_ratelimited += 1;
            return;
        }
        let rst = match seg.ack {
            Some(ack) => RstSegment {
                tuple,
                seq: ack,
                ack: None,
            },
            None => RstSegment {
                tuple,
                seq: SeqNumber(0),
                ack: Some(seg.seq + seg.seq_len()),
            },
        };
        self.queue_reset(rst);
    }
}

/// A keyed multiply-mix hasher for the demultiplexing tables: two
/// multiplications per 4-tuple, keyed from the engine secret so that
/// remote peers cannot aim for one bucket.
#[derive(Clone, Copy, Debug)]
pub struct DemuxHasher {
    h: u64,
}

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for DemuxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.h = (self.h ^ v).wrapping_mul(MUL).rotate_left(29);
    }
    fn finish(&self) -> u64 {
        // MurmurHash3 fmix64 finaliser.
        let mut h = self.h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`DemuxHasher`]s with the engine's key.
#[derive(Clone, Copy, Debug)]
pub struct DemuxBuildHasher {
    key: u64,
}

impl DemuxBuildHasher {
    /// Hashers keyed with `key` (from the engine secret).
    pub(crate) fn new(key: u64) -> DemuxBuildHasher {
        DemuxBuildHasher { key }
    }
}

impl BuildHasher for DemuxBuildHasher {
    type Hasher = DemuxHasher;
    fn build_hasher(&self) -> DemuxHasher {
        DemuxHasher { h: self.key }
    }
}
