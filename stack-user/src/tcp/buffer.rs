//! Send and receive buffers, kept outside the control block (heap) so the
//! control block stays small; they allocate only when data is queued.
//!
//! The receive side reassembles out-of-order segments (RFC 9293 §3.10.7.4,
//! "seventh": segments beyond RCV.NXT are held for later processing) and
//! reports them as SACK blocks (RFC 2018 §4).

use std::collections::VecDeque;

use crate::wire::tcp::SeqNumber;

/// Storage of buffers that emptied, kept by the engine for the next buffer
/// that fills: a connection gives its memory back as soon as nothing is
/// unacknowledged or unread (an idle connection holds none), and a bulk
/// transfer, whose buffers empty and fill again every round, takes the
/// same storage back instead of allocating and growing a new one each time
/// (Linux keeps a socket's forward allocation for the same reason). At
/// most [`BufPool::MAX`] buffers of any size are kept, and besides them up
/// to [`BufPool::SMALL_MAX`] small ones (at most [`BufPool::SMALL_CAP`]
/// bytes each): short connections (a request and a response of a few
/// hundred bytes) come and go by the thousand, and each would otherwise
/// allocate and free its send and receive storage. What the pool holds is
/// bounded by a few buffers' capacity plus 512 KiB per engine.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<VecDeque<u8>>,
    small: Vec<VecDeque<u8>>,
}

impl Default for BufPool {
    fn default() -> BufPool {
        BufPool {
            free: Vec::with_capacity(BufPool::MAX),
            small: Vec::new(),
        }
    }
}

impl BufPool {
    /// Most buffers of any size kept.
    pub const MAX: usize = 4;
    /// Most small buffers kept besides them.
    pub const SMALL_MAX: usize = 256;
    /// The capacity up to which a buffer is small.
    pub const SMALL_CAP: usize = 2048;

    /// An empty buffer: kept storage if there is any (most recently kept
    /// first, still warm in cache; a large one first), else a new,
    /// unallocated one.
    fn take(&mut self) -> VecDeque<u8> {
        self.free
            .pop()
            .or_else(|| self.small.pop())
            .unwrap_or_default()
    }

    /// Keeps the storage of an emptied buffer (or frees it when the pool
    /// is full or it holds none).
    fn put(&mut self, mut d: VecDeque<u8>) {
        let cap = d.capacity();
        if cap == 0 {
            return;
        }
        d.clear();
        if cap <= Self::SMALL_CAP && self.small.len() < Self::SMALL_MAX {
            self.small.push(d);
        } else if self.free.len() < Self::MAX {
            self.free.push(d);
        }
    }

    /// Heap bytes kept.
    pub fn heap_bytes(&self) -> usize {
        self.free
            .iter()
            .chain(&self.small)
            .map(VecDeque::capacity)
            .sum()
    }

    /// A buffer with no storage takes kept storage, if any (called before
    /// it would grow from nothing).
    fn fill(&mut self, d: &mut VecDeque<u8>) {
        if d.capacity() == 0 {
            *d = self.take();
        }
    }

    /// Gives the storage of an empty buffer back to the pool.
    fn release(&mut self, d: &mut VecDeque<u8>) {
        if d.is_empty() && d.capacity() > 0 {
            self.put(std::mem::take(d));
        }
    }
}

/// Bytes written by the application and not yet acknowledged. Byte 0 is the
/// oldest unacknowledged byte.
#[derive(Debug, Default)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    cap: u32,
}

impl SendBuffer {
    /// A buffer that holds at most `cap` bytes.
    pub fn new(cap: u32) -> SendBuffer {
        SendBuffer {
            data: VecDeque::new(),
            cap,
        }
    }
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Room left.
    pub fn free(&self) -> usize {
        (self.cap as usize).saturating_sub(self.data.len())
    }
    /// Appends as much of `src` as fits; returns the count. Storage comes
    /// from `pool` when the buffer has none.
    pub fn write(&mut self, src: &[u8], pool: &mut BufPool) -> usize {
        let n = src.len().min(self.free());
        if n > 0 {
            pool.fill(&mut self.data);
        }
        self.data.extend(&src[..n]);
        n
    }
    /// Copies bytes starting at `offset` into `dst`; returns the count.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        let (a, b) = self.data.as_slices();
        let mut done = 0;
        let mut off = offset;
        for part in [a, b] {
            if done == dst.len() {
                break;
            }
            if off >= part.len() {
                off -= part.len();
                continue;
            }
            let n = (part.len() - off).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&part[off..off + n]);
            done += n;
            off = 0;
        }
        done
    }
    /// Drops `n` acknowledged bytes from the front. Empty, the storage
    /// goes to `pool`, so an idle connection holds no buffer at all.
    pub fn consume(&mut self, n: usize, pool: &mut BufPool) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        pool.release(&mut self.data);
    }
    /// Heap bytes the buffer holds (0 when empty).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
    }
}

/// One out-of-order run of bytes starting at `seq`.
#[derive(Debug)]
struct Run {
    seq: SeqNumber,
    data: Vec<u8>,
}

impl Run {
    fn end(&self) -> SeqNumber {
        self.seq + self.data.len()
    }
}

/// In-order bytes waiting for the application plus out-of-order runs.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    data: VecDeque<u8>,
    cap: u32,
    /// Sorted, disjoint, non-adjacent runs above RCV.NXT.
    ooo: Vec<Run>,
    /// Start of the run touched most recently (first SACK block, RFC 2018
    /// §4: "the first SACK block ... MUST specify the contiguous block of
    /// data containing the segment which triggered this ACK").
    last: Option<SeqNumber>,
}

/// Most out-of-order runs held; later ones are dropped (the sender will
/// retransmit them).
pub const MAX_OOO_RUNS: usize = 32;

impl RecvBuffer {
    /// A buffer that holds at most `cap` bytes in order.
    pub fn new(cap: u32) -> RecvBuffer {
        RecvBuffer {
            data: VecDeque::new(),
            cap,
            ooo: Vec::new(),
            last: None,
        }
    }
    /// Capacity.
    pub fn capacity(&self) -> u32 {
        self.cap
    }
    /// In-order bytes the application can read.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when nothing is readable.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Free space (what the receive window is computed from).
    pub fn free(&self) -> u32 {
        self.cap.saturating_sub(self.data.len() as u32)
    }
    /// True when out-of-order data is held.
    pub fn has_ooo(&self) -> bool {
        !self.ooo.is_empty()
    }
    /// Bytes held out of order.
    pub fn ooo_bytes(&self) -> usize {
        self.ooo.iter().map(|r| r.data.len()).sum()
    }

    /// Reads in-order bytes into `dst`. Read to empty, the storage goes
    /// to `pool` (see [`SendBuffer::consume`]).
    pub fn read(&mut self, dst: &mut [u8], pool: &mut BufPool) -> usize {
        let n = dst.len().min(self.data.len());
        let (a, b) = self.data.as_slices();
        let na = n.min(a.len());
        dst[..na].copy_from_slice(&a[..na]);
        dst[na..n].copy_from_slice(&b[..n - na]);
        self.data.drain(..n);
        pool.release(&mut self.data);
        n
    }

    /// Heap bytes the buffer holds, out-of-order runs included (0 when
    /// empty).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
            + self.ooo.capacity() * std::mem::size_of::<Run>()
            + self.ooo.iter().map(|r| r.data.capacity()).sum::<usize>()
    }

    /// Appends in-order bytes (at RCV.NXT) and then any out-of-order runs
    /// that have become contiguous. Returns the new RCV.NXT and whether a
    /// hole was filled. `rcv_nxt` is the sequence number of `src[0]`.
    pub fn push_in_order(
        &mut self,
        rcv_nxt: SeqNumber,
        src: &[u8],
        pool: &mut BufPool,
    ) -> (SeqNumber, bool) {
        let n = src.len().min(self.free() as usize);
        if n > 0 {
            pool.fill(&mut self.data);
        }
        self.data.extend(&src[..n]);
        let mut nxt = rcv_nxt + n;
        let mut filled = false;
        while let Some(first) = self.ooo.first() {
            if first.seq > nxt {
                break;
            }
            let run = self.ooo.remove(0);
            if run.end() > nxt {
                let skip = nxt.dist(run.seq) as usize;
                let rest = &run.data[skip.min(run.data.len())..];
                let m = rest.len().min(self.free() as usize);
                self.data.extend(&rest[..m]);
                nxt = nxt + m;
                filled = true;
                if m < rest.len() {
                    break;
                }
            }
        }
        if self.ooo.is_empty() {
            self.last = None;
            if self.ooo.capacity() > 0 {
                self.ooo = Vec::new();
            }
        }
        (nxt, filled)
    }

    /// Stores `src` (starting at `seq`, above `rcv_nxt`) out of order,
    /// keeping only bytes not already held. Returns false when it was
    /// dropped (too many runs).
    pub fn insert_ooo(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, src: &[u8]) -> bool {
        if src.is_empty() || seq <= rcv_nxt {
            return false;
        }
        let end = seq + src.len();
        // Find runs overlapping or adjacent to [seq, end).
        let first = self
            .ooo
            .iter()
            .position(|r| r.end() >= seq)
            .unwrap_or(self.ooo.len());
        let mut last = first;
        while last < self.ooo.len() && self.ooo[last].seq <= end {
            last += 1;
        }
        if first == last {
            if self.ooo.len() >= MAX_OOO_RUNS {
                return false;
            }
            self.ooo.insert(
                first,
                Run {
                    seq,
                    data: src.to_vec(),
                },
            );
            self.last = Some(seq);
            return true;
        }
        // Merge [seq, end) with runs first..last into one run.
        let start = seq.min(self.ooo[first].seq);
        let stop = end.max(self.ooo[last - 1].end());
        let mut merged = vec![0u8; stop.dist(start) as usize];
        let off = seq.dist(start) as usize;
        merged[off..off + src.len()].copy_from_slice(src);
        for r in self.ooo.drain(first..last) {
            let off = r.seq.dist(start) as usize;
            merged[off..off + r.data.len()].copy_from_slice(&r.data);
        }
        self.ooo.insert(
            first,
            Run {
                seq: start,
                data: merged,
            },
        );
        self.last = Some(start);
        true
    }

    /// SACK blocks to report, most recent first (RFC 2018 §4), at most `n`.
    pub fn sack_blocks(&self, n: usize, mut f: impl FnMut(SeqNumber, SeqNumber)) {
        let mut count = 0;
        let recent = self.last.and_then(|s| self.ooo.iter().find(|r| r.seq == s));
        if let Some(r) = recent {
            f(r.seq, r.end());
            count += 1;
        }
        for r in self.ooo.iter().rev() {
            if count >= n {
                break;
            }
            if Some(r.seq) == self.last {
                continue;
            }
            f(r.seq, r.end());
            count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_wraps_and_copies_at_offsets() {
        let mut b = SendBuffer::new(8);
        let mut pool = BufPool::default();
        assert_eq!(b.write(b"abcdef", &mut pool), 6);
        b.consume(4, &mut pool);
        assert_eq!(b.write(b"ghijklmn", &mut pool), 6);
        assert_eq!(b.len(), 8);
        assert_eq!(b.free(), 0);
        let mut out = [0u8; 5];
        assert_eq!(b.copy_out(1, &mut out), 5);
        assert_eq!(&out, b"fghij");
        assert_eq!(b.copy_out(7, &mut out), 1);
        assert_eq!(out[0], b'l');
        assert_eq!(b.copy_out(9, &mut out), 0);
    }

    #[test]
    fn reassembly_merges_overlaps_and_fills_holes() {
        let base = SeqNumber(u32::MAX - 3);
        let mut r = RecvBuffer::new(100);
        let mut pool = BufPool::default();
        assert!(r.insert_ooo(base, base + 10u32, b"KLMNO"));
        assert!(r.insert_ooo(base, base + 4u32, b"EFG"));
        // Overlaps both neighbours' edges.
        assert!(r.insert_ooo(base, base + 6u32, b"GHIJK"));
        let mut blocks = vec![];
        r.sack_blocks(4, |l, h| blocks.push((l, h)));
        assert_eq!(blocks, vec![(base + 4u32, base + 15u32)]);
        let (nxt, filled) = r.push_in_order(base, b"ABCD", &mut pool);
        assert!(filled);
        assert_eq!(nxt, base + 15u32);
        let mut out = [0u8; 32];
        let n = r.read(&mut out, &mut pool);
        assert_eq!(&out[..n], b"ABCDEFGHIJKLMNO");
        assert!(!r.has_ooo());
    }

    #[test]
    fn sack_blocks_put_most_recent_first() {
        let base = SeqNumber(1000);
        let mut r = RecvBuffer::new(1000);
        r.insert_ooo(base, base + 100u32, &[1; 10]);
        r.insert_ooo(base, base + 300u32, &[1; 10]);
        r.insert_ooo(base, base + 200u32, &[1; 10]);
        let mut blocks = vec![];
        r.sack_blocks(3, |l, _| blocks.push(l.get() - 1000));
        assert_eq!(blocks, vec![200, 300, 100]);
        assert_eq!(r.ooo_bytes(), 30);
    }

    #[test]
    fn in_order_push_respects_capacity() {
        let mut r = RecvBuffer::new(4);
        let mut pool = BufPool::default();
        let (nxt, _) = r.push_in_order(SeqNumber(0), b"abcdef", &mut pool);
        assert_eq!(nxt, SeqNumber(4));
        assert_eq!(r.free(), 0);
    }

    #[test]
    fn ooo_run_limit() {
        let mut r = RecvBuffer::new(10_000);
        for i in 0..MAX_OOO_RUNS as u32 {
            assert!(r.insert_ooo(SeqNumber(0), SeqNumber(10 + i * 3), b"x"));
        }
        assert!(!r.insert_ooo(SeqNumber(0), SeqNumber(5000), b"x"));
        // Adjacent data still merges into existing runs.
        assert!(r.insert_ooo(SeqNumber(0), SeqNumber(11), b"yy"));
    }

    #[test]
    fn an_emptied_buffer_gives_its_storage_to_the_pool_and_the_next_one_takes_it() {
        let mut pool = BufPool::default();
        let mut r = RecvBuffer::new(1 << 16);
        r.push_in_order(SeqNumber(0), &[7; 5000], &mut pool);
        assert!(r.heap_bytes() >= 5000);
        r.read(&mut [0; 6000], &mut pool);
        // Empty: the connection holds nothing, the pool holds the storage.
        assert_eq!(r.heap_bytes(), 0);
        let kept = pool.heap_bytes();
        assert!(kept >= 5000);
        let mut b = SendBuffer::new(1 << 16);
        assert_eq!(b.write(&[1; 3000], &mut pool), 3000);
        assert_eq!((b.heap_bytes(), pool.heap_bytes()), (kept, 0));
        b.consume(3000, &mut pool);
        assert_eq!((b.heap_bytes(), pool.heap_bytes()), (0, kept));
    }

    /// `n` send buffers holding `len` bytes each, taken from `pool`.
    fn filled(pool: &mut BufPool, n: usize, len: usize) -> Vec<SendBuffer> {
        (0..n)
            .map(|_| {
                let mut b = SendBuffer::new(1 << 20);
                assert_eq!(b.write(&vec![1; len], pool), len);
                b
            })
            .collect()
    }

    #[test]
    fn the_pool_keeps_at_most_max_buffers() {
        let mut pool = BufPool::default();
        let big = BufPool::SMALL_CAP + 1;
        let mut bufs = filled(&mut pool, BufPool::MAX + 2, big);
        for b in &mut bufs {
            b.consume(big, &mut pool);
            assert_eq!(b.heap_bytes(), 0);
        }
        assert_eq!((pool.free.len(), pool.small.len()), (BufPool::MAX, 0));
        // Small ones: at most SMALL_MAX more (then MAX of any size).
        let mut pool = BufPool::default();
        let n = BufPool::SMALL_MAX + BufPool::MAX + 2;
        for mut b in filled(&mut pool, n, 10) {
            b.consume(10, &mut pool);
        }
        assert_eq!(
            (pool.free.len(), pool.small.len()),
            (BufPool::MAX, BufPool::SMALL_MAX)
        );
        assert!(pool.heap_bytes() <= (BufPool::MAX + BufPool::SMALL_MAX) * BufPool::SMALL_CAP);
    }

    #[test]
    fn short_connections_take_their_buffers_from_the_pool_not_the_allocator() {
        let mut pool = BufPool::default();
        // A round of 64 connections, each with a 64-byte request: their
        // emptied storage is kept, and the next round takes it back.
        for mut b in filled(&mut pool, 64, 64) {
            b.consume(64, &mut pool);
        }
        let kept = pool.heap_bytes();
        assert!(kept >= 64 * 64, "{kept}");
        let again = filled(&mut pool, 64, 64);
        assert_eq!(pool.heap_bytes(), 0, "every buffer came from the pool");
        assert_eq!(
            again.iter().map(SendBuffer::heap_bytes).sum::<usize>(),
            kept
        );
    }
}
