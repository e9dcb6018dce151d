//! Demultiplexing: a received segment goes to its connection, its
//! TIME_WAIT entry, a listener, or the RST of RFC 9293 §3.10.7.1 (Linux
//! `tcp_v4_rcv`).

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// An IPv4 4-tuple as a table key: 12 bytes, as the whole `FourTuple` was
/// before IPv6 (measured in `tests::demux_entry_sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key4 {
    local: Ipv4Addr,
    remote: Ipv4Addr,
    local_port: u16,
    remote_port: u16,
}

impl Hash for Key4 {
    /// Two words, two multiply-mix rounds.
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(u32::from(self.local)) << 32) | u64::from(u32::from(self.remote)));
        h.write_u32((u32::from(self.local_port) << 16) | u32::from(self.remote_port));
    }
}

/// An IPv6 4-tuple as a table key: 36 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key6 {
    local: Ipv6Addr,
    remote: Ipv6Addr,
    local_port: u16,
    remote_port: u16,
}

impl Hash for Key6 {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (l, r) = (u128::from(self.local), u128::from(self.remote));
        h.write_u64((l >> 64) as u64 ^ ((r as u64).rotate_left(17)));
        h.write_u64(l as u64);
        h.write_u64((r >> 64) as u64);
        h.write_u64(r as u64);
        h.write_u32((u32::from(self.local_port) << 16) | u32::from(self.remote_port));
    }
}

/// A table keyed by 4-tuple: one map per family, so that an IPv4 entry
/// does not carry room for 128-bit addresses (the connection table and
/// the TIME_WAIT index).
#[derive(Debug)]
pub(crate) struct TupleMap<V> {
    v4: HashMap<Key4, V, DemuxBuildHasher>,
    v6: HashMap<Key6, V, DemuxBuildHasher>,
}

/// A 4-tuple's key; a mixed-family tuple (never demultiplexed: the engine
/// refuses to open one) keys as IPv6 with the IPv4 address mapped.
enum Key {
    V4(Key4),
    V6(Key6),
}

#[inline]
fn key(t: &FourTuple) -> Key {
    match (t.local_addr, t.remote_addr) {
        (IpAddr::V4(local), IpAddr::V4(remote)) => Key::V4(Key4 {
            local,
            remote,
            local_port: t.local_port,
            remote_port: t.remote_port,
        }),
        (l, r) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            Key::V6(Key6 {
                local: v6(l),
                remote: v6(r),
                local_port: t.local_port,
                remote_port: t.remote_port,
            })
        }
    }
}

impl<V: Copy> TupleMap<V> {
    pub fn with_capacity_and_hasher(cap: usize, hasher: DemuxBuildHasher) -> TupleMap<V> {
        TupleMap {
            v4: HashMap::with_capacity_and_hasher(cap, hasher),
            v6: HashMap::with_hasher(hasher),
        }
    }

    pub fn get(&self, t: &FourTuple) -> Option<&V> {
        // An empty table (a client's TIME_WAIT table, the IPv6 one of an
        // IPv4 service) costs no hash.
        match key(t) {
            Key::V4(k) if !self.v4.is_empty() => self.v4.get(&k),
            Key::V6(k) if !self.v6.is_empty() => self.v6.get(&k),
            _ => None,
        }
    }

    /// Removes `t`'s entry if it holds `v`, with one lookup where a get
    /// then a remove would hash and probe twice (an entry that holds
    /// another value, which is rare, is put back). Returns whether it did.
    pub fn remove_if(&mut self, t: &FourTuple, v: V) -> bool
    where
        V: PartialEq,
    {
        match key(t) {
            Key::V4(k) if !self.v4.is_empty() => match self.v4.remove(&k) {
                Some(x) if x == v => true,
                Some(x) => {
                    self.v4.insert(k, x);
                    false
                }
                None => false,
            },
            Key::V6(k) if !self.v6.is_empty() => match self.v6.remove(&k) {
                Some(x) if x == v => true,
                Some(x) => {
                    self.v6.insert(k, x);
                    false
                }
                None => false,
            },
            _ => false,
        }
    }

    pub fn insert(&mut self, t: FourTuple, v: V) -> Option<V> {
        match key(&t) {
            Key::V4(k) => self.v4.insert(k, v),
            Key::V6(k) => self.v6.insert(k, v),
        }
    }

    pub fn contains_key(&self, t: &FourTuple) -> bool {
        self.get(t).is_some()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

impl TcpEngine {
    /// Handles one received TCP segment (`segment` is the IP payload)
    /// from `src` to `dst`, both IPv4 or both IPv6. The checksum is
    /// verified over the family's pseudo-header; malformed segments are
    /// dropped and counted by reason.
    pub fn on_segment(
        &mut self,
        now: Instant,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        segment: &[u8],
    ) {
        let (src, dst) = (src.into(), dst.into());
        self.stats.segments_in += 1;
        let mut seg = TcpRepr::default();
        if self.parse_into(now, src, dst, segment, &mut seg) {
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
        src: IpAddr,
        dst: IpAddr,
        segment: &'a [u8],
    ) -> Option<TcpRepr<'a>> {
        let mut seg = TcpRepr::default();
        self.parse_into(now, src, dst, segment, &mut seg)
            .then_some(seg)
    }

    /// [`parse`](Self::parse) into `seg` (which holds the default): the
    /// receive path's, so that the segment is built where `handle` reads
    /// it (see `TcpRepr::parse_into`). Returns whether it is accepted.
    #[inline(always)]
    fn parse_into<'a>(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        segment: &'a [u8],
        seg: &mut TcpRepr<'a>,
    ) -> bool {
        let accept = self.cfg.accept_checksum_partial;
        match TcpRepr::parse_into(src, dst, segment, accept, seg) {
            Ok(ChecksumKind::Full) => true,
            Ok(ChecksumKind::Partial) => {
                self.stats.checksum_partial_in += 1;
                true
            }
            Err(e) => {
                self.parse_drop(now, src, e);
                false
            }
        }
    }

    /// Counts a segment the parser refused, by reason.
    #[cold]
    fn parse_drop(&mut self, now: Instant, src: IpAddr, e: TcpParseError) {
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
    }

    /// A parsed segment: to its connection, its TIME_WAIT entry, its
    /// listener, or none (RFC 9293 §3.10.7). With XDP cookies on
    /// ([`set_xdp_cookies`](Self::set_xdp_cookies)), an ACK that TIME_WAIT
    /// or a half-open request would refuse is first checked as the final
    /// ACK of a cookie SYN-ACK XDP sent on the 4-tuple.
    pub(super) fn handle(&mut self, now: Instant, src: IpAddr, dst: IpAddr, seg: &TcpRepr) {
        self.dispatch(now, src, dst, seg, self.xdp_cookies);
    }

    /// [`handle`](Self::handle) without looking for the final ACK of a
    /// cookie SYN-ACK XDP sent on a 4-tuple the engine holds.
    pub(super) fn handle_plain(&mut self, now: Instant, src: IpAddr, dst: IpAddr, seg: &TcpRepr) {
        self.dispatch(now, src, dst, seg, false);
    }

    /// [`handle`](Self::handle); `held_cookies`: check an ACK at a
    /// half-open request or a TIME_WAIT entry as a cookie first
    /// ([`held_tuple_cookie_ack`](Self::held_tuple_cookie_ack)), where the
    /// 4-tuple is looked up anyway.
    #[inline(always)]
    fn dispatch(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpRepr,
        held_cookies: bool,
    ) {
        self.clock = self.clock.max(now);
        let tuple = FourTuple {
            local_addr: dst,
            local_port: seg.dst_port,
            remote_addr: src,
            remote_port: seg.src_port,
        };
        if let Some(&idx) = self.conns.get(&tuple) {
            if held_cookies
                && self.cookie_supersedes_request(idx, seg)
                && self.held_tuple_cookie_ack(now, src, dst, &tuple, seg)
            {
                return;
            }
            if self.accept_queue_refuses(idx, tuple, seg) {
                return;
            }
            self.run(idx, |tcb, ctx| tcb.on_segment(now, seg, ctx));
            return;
        }
        let mut iss = None;
        // Looked up once; looked up again below only when there was an
        // entry (`on_time_wait` may have ended it), so a SYN to a listener
        // costs one TIME_WAIT lookup, not two.
        let in_tw = self.tw.lookup(&tuple);
        if let Some(twi) = in_tw {
            if held_cookies && self.held_tuple_cookie_ack(now, src, dst, &tuple, seg) {
                return;
            }
            match self.on_time_wait(now, twi, seg) {
                None => return,
                Some(isn) => iss = Some(isn),
            }
        }
        let tw_now = |e: &TcpEngine| in_tw.and_then(|_| e.tw.lookup(&tuple));
        match self.find_listener(dst, seg.dst_port) {
            Some(lid) => {
                if let Some(twi) = tw_now(self) {
                    // RFC 6191: the SYN opens a new incarnation.
                    self.stats.time_wait_syn_reopen += 1;
                    self.tw_end(twi, true);
                }
                self.on_listen(now, lid, tuple, seg, iss)
            }
            None => match tw_now(self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local_addr: Ipv4Addr::new(198, 18, 0, 1).into(),
            local_port: port,
            remote_addr: Ipv4Addr::new(198, 18, 0, 2).into(),
            remote_port: 80,
        }
    }

    #[test]
    fn a_tuple_map_removes_an_entry_only_when_it_holds_the_given_value() {
        let h = DemuxBuildHasher::new(7);
        let mut m: TupleMap<u32> = TupleMap::with_capacity_and_hasher(4, h);
        assert!(!m.remove_if(&tuple(1), 3), "empty table");
        m.insert(tuple(1), 3);
        m.insert(tuple(2), 4);
        // Another slot's entry for the tuple stays where it is.
        assert!(!m.remove_if(&tuple(1), 9));
        assert_eq!(m.get(&tuple(1)), Some(&3));
        assert!(m.remove_if(&tuple(1), 3));
        assert_eq!((m.get(&tuple(1)), m.len()), (None, 1));
        assert!(!m.remove_if(&tuple(1), 3), "already gone");
        // IPv6 keys live in their own table.
        let t6 = FourTuple {
            local_addr: "2001:2::1".parse::<Ipv6Addr>().unwrap().into(),
            remote_addr: "2001:2::2".parse::<Ipv6Addr>().unwrap().into(),
            ..tuple(2)
        };
        assert!(!m.remove_if(&t6, 4));
        m.insert(t6, 5);
        assert!(m.remove_if(&t6, 5));
        assert_eq!(m.get(&tuple(2)), Some(&4));
    }

    #[test]
    fn the_kept_timestamp_offset_is_the_keyed_hash_of_its_address_pair() {
        let mut e = TcpEngine::new(TcpConfig::default(), [9; 16]);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 18, 0, 2).into(),
            Ipv4Addr::new(198, 18, 0, 3).into(),
        );
        let fresh = |e: &TcpEngine, l, r| {
            e.ts_last.set(None);
            e.ts_offset(l, r)
        };
        let ab = fresh(&e, a, b);
        let ac = fresh(&e, a, c);
        assert_ne!(ab, ac);
        // Asked again, and after another pair: the same values.
        for _ in 0..2 {
            assert_eq!(e.ts_offset(a, b), ab);
            assert_eq!(e.ts_offset(a, c), ac);
        }
        // A new host clock and key: nothing kept from the old key.
        e.set_timestamp_clock([5; 16], 7_000);
        let after = e.ts_offset(a, c);
        assert_eq!(after, fresh(&e, a, c));
        assert_ne!(after, ac.wrapping_add(7));
    }
}
