//! The engine's bulk hot path allocates nothing in steady state: two TCP
//! engines joined in memory move a stream one way (every segment emitted
//! with its checksum and parsed and verified on the other side, ACKs
//! back, timers, events), and a counting global allocator sees zero
//! allocations over the measured megabytes after a warm-up. A dedicated
//! test binary, so the counting allocator touches no other test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use xstack::tcp::{ConnId, TcpConfig, TcpEngine};
use xstack::time::Instant;

/// Counts allocations (and reallocations) made on a thread while its
/// `COUNTING` flag is set; everything else passes straight to `System`.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
const MIB: u64 = 1 << 20;

/// A one-way bulk transfer between two engines in memory, with the
/// receiver checking every byte against the sender's pattern.
struct Bulk {
    c: TcpEngine,
    s: TcpEngine,
    id: ConnId,
    sid: ConnId,
    now: Instant,
    wire: Vec<u8>,
    chunk: Vec<u8>,
    rbuf: Vec<u8>,
    sent: u64,
    received: u64,
}

/// The byte at stream offset `i`.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

impl Bulk {
    fn new() -> Bulk {
        let cfg = TcpConfig::default();
        let mut c = TcpEngine::new(cfg.clone(), [3; 16]);
        let mut s = TcpEngine::new(cfg, [4; 16]);
        let l = s.listen(SERVER, PORT, 16).expect("listen");
        let now = Instant::from_millis(1);
        let id = c.connect(now, CLIENT, 0, SERVER, PORT).expect("connect");
        let mut b = Bulk {
            c,
            s,
            id,
            sid: id,
            now,
            wire: vec![0; 2048],
            chunk: vec![0; 64 * 1024],
            rbuf: vec![0; 64 * 1024],
            sent: 0,
            received: 0,
        };
        b.pump();
        b.sid = b.s.accept(l).expect("accepted");
        b
    }

    /// Moves every pending segment across until both sides are quiet.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            while let Some(t) = self.c.poll_transmit(self.now, &mut self.wire) {
                self.s
                    .on_segment(self.now, t.src, t.dst, &self.wire[..t.len]);
                any = true;
            }
            while let Some(t) = self.s.poll_transmit(self.now, &mut self.wire) {
                self.c
                    .on_segment(self.now, t.src, t.dst, &self.wire[..t.len]);
                any = true;
            }
            if !any {
                return;
            }
        }
    }

    /// Runs until `bytes` more have been received and checked.
    fn run(&mut self, bytes: u64) {
        let goal = self.received + bytes;
        let mut rounds = 0u64;
        while self.received < goal {
            rounds += 1;
            assert!(rounds < 1_000_000, "no progress: {:?}", self.c.stats());
            for (k, b) in self.chunk.iter_mut().enumerate() {
                *b = pattern(self.sent + k as u64);
            }
            if let Ok(n) = self.c.write(self.id, &self.chunk) {
                self.sent += n as u64;
            }
            self.pump();
            while let Ok(n) = self.s.read(self.sid, &mut self.rbuf) {
                if n == 0 {
                    break;
                }
                for (k, &b) in self.rbuf[..n].iter().enumerate() {
                    assert_eq!(
                        b,
                        pattern(self.received + k as u64),
                        "byte {}",
                        self.received + k as u64
                    );
                }
                self.received += n as u64;
            }
            while self.c.poll_event().is_some() {}
            while self.s.poll_event().is_some() {}
            self.pump();
            self.now = self.now + Duration::from_micros(10);
            self.c.handle_timeout(self.now);
            self.s.handle_timeout(self.now);
        }
    }
}

#[test]
fn a_steady_state_bulk_transfer_between_two_engines_allocates_nothing() {
    let mut b = Bulk::new();
    // Warm-up: buffers, queues and tables reach their working sizes.
    b.run(8 * MIB);
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    b.run(32 * MIB);
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(b.c.stats().retransmits, 0, "a lossless wire");
    assert!(b.received >= 40 * MIB);
    assert_eq!(
        allocs,
        0,
        "allocations while moving 32 MiB in steady state (client {:?})",
        b.c.stats()
    );
}

/// The counter itself works: a measured allocation is seen (so a zero
/// above means something).
#[test]
fn the_counting_allocator_sees_an_allocation() {
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::Relaxed);
    let v = std::hint::black_box(vec![1u8; 100]);
    let after = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert!(after > before);
}
