//! Timer structure benchmark: the engine's hierarchical timing wheel next
//! to a binary heap with lazy cancellation (the engine's previous timer
//! structure), both with 1,000,000 live timers, in the same run.
//!
//! `xstack bench timer [--timers N]` (a release build).
//!
//! Phases (deadlines uniform in 1 ms..120 s, µs resolution, seeded):
//! arm N timers; reset 1,000 of them N times in all (an RTO restarted on
//! every ACK: cache-hot); cancel N/2 at random; reset N/2 (cancel + arm later, as an
//! RTO restart on every ACK does); expire everything by advancing time in
//! 1 ms steps. Prints ns per operation and heap/wheel ratios.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Instant;

use crate::tcp::wheel::{TimerId, TimerWheel};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn deadline(&mut self, now: u64) -> u64 {
        now + 1_000 + self.next() % 120_000_000
    }
}

/// The engine's old structure: a min-heap of (deadline, key, generation);
/// cancelling bumps the key's generation and the stale entry is skipped
/// when it reaches the top.
struct Heap {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    gen: Vec<u32>,
    armed: Vec<bool>,
}

impl Heap {
    fn arm(&mut self, key: u32, deadline: u64) {
        let k = key as usize;
        self.gen[k] = self.gen[k].wrapping_add(1);
        self.armed[k] = true;
        self.heap.push(Reverse((deadline, key, self.gen[k])));
    }
    fn cancel(&mut self, key: u32) {
        let k = key as usize;
        self.gen[k] = self.gen[k].wrapping_add(1);
        self.armed[k] = false;
    }
    fn poll(&mut self, now: u64, fired: &mut Vec<u32>) {
        while let Some(&Reverse((t, key, gen))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let k = key as usize;
            if self.armed[k] && self.gen[k] == gen {
                self.armed[k] = false;
                fired.push(key);
            }
        }
    }
}

struct Times {
    arm: f64,
    hot: f64,
    cancel: f64,
    reset: f64,
    expire: f64,
    fired: usize,
}

fn ns_per(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn plan(n: usize) -> (Vec<u64>, Vec<u32>, Vec<u64>) {
    let mut rng = Rng(0x5eed);
    let deadlines: Vec<u64> = (0..n).map(|_| rng.deadline(0)).collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let later: Vec<u64> = (0..n).map(|_| rng.deadline(0)).collect();
    (deadlines, order, later)
}

fn bench_wheel(n: usize) -> Times {
    let (deadlines, order, later) = plan(n);
    let mut w: TimerWheel<u32> = TimerWheel::with_capacity(0, n);
    let mut ids = vec![TimerId::NONE; n];
    let t = Instant::now();
    for (i, &d) in deadlines.iter().enumerate() {
        ids[i] = w.arm(d, i as u32);
    }
    let arm = ns_per(t, n);
    // RTO restart on every ACK: the same 1,000 timers reset over and over
    // (cache-hot), n times in all.
    let t = Instant::now();
    for i in 0..n {
        let k = i % 1000;
        w.cancel(ids[k]);
        ids[k] = w.arm(deadlines[k] + (i / 1000) as u64, k as u32);
    }
    let hot = ns_per(t, n);
    let half = &order[..n / 2];
    let t = Instant::now();
    for &k in half {
        black_box(w.cancel(ids[k as usize]));
    }
    let cancel = ns_per(t, half.len());
    let other = &order[n / 2..];
    let t = Instant::now();
    for &k in other {
        let k = k as usize;
        w.cancel(ids[k]);
        ids[k] = w.arm(later[k], k as u32);
    }
    let reset = ns_per(t, other.len());
    let mut fired = Vec::with_capacity(n);
    let t = Instant::now();
    let mut now = 0;
    while !w.is_empty() {
        now += 1_000;
        w.poll(now, &mut fired);
    }
    let expire = ns_per(t, fired.len().max(1));
    Times {
        arm,
        hot,
        cancel,
        reset,
        expire,
        fired: fired.len(),
    }
}

fn bench_heap(n: usize) -> Times {
    let (deadlines, order, later) = plan(n);
    let mut h = Heap {
        heap: BinaryHeap::with_capacity(n),
        gen: vec![0; n],
        armed: vec![false; n],
    };
    let t = Instant::now();
    for (i, &d) in deadlines.iter().enumerate() {
        h.arm(i as u32, d);
    }
    let arm = ns_per(t, n);
    let t = Instant::now();
    for i in 0..n {
        let k = i % 1000;
        h.cancel(k as u32);
        h.arm(k as u32, deadlines[k] + (i / 1000) as u64);
    }
    let hot = ns_per(t, n);
    let half = &order[..n / 2];
    let t = Instant::now();
    for &k in half {
        h.cancel(k);
    }
    let cancel = ns_per(t, half.len());
    let other = &order[n / 2..];
    let t = Instant::now();
    for &k in other {
        h.cancel(k);
        h.arm(k, later[k as usize]);
    }
    let reset = ns_per(t, other.len());
    let mut fired = Vec::with_capacity(n);
    let t = Instant::now();
    let mut now = 0;
    while !h.heap.is_empty() {
        now += 1_000;
        h.poll(now, &mut fired);
    }
    let expire = ns_per(t, fired.len().max(1));
    Times {
        arm,
        hot,
        cancel,
        reset,
        expire,
        fired: fired.len(),
    }
}

/// Runs every phase with `n` live timers on both structures and prints the
/// table.
pub fn run(n: usize) {
    // Warm up both once, then measure.
    bench_wheel(n / 10);
    bench_heap(n / 10);
    let w = bench_wheel(n);
    let h = bench_heap(n);
    assert_eq!(w.fired, h.fired, "both fire the same timers");
    println!(
        "{n} live timers, deadlines 1 ms..120 s; {} fired after cancels and resets",
        w.fired
    );
    println!();
    println!("| operation            | wheel (ns/op) | heap (ns/op) | heap / wheel |");
    println!("|----------------------|---------------|--------------|--------------|");
    for (name, a, b) in [
        ("arm", w.arm, h.arm),
        ("reset, hot (per ACK)", w.hot, h.hot),
        ("cancel", w.cancel, h.cancel),
        ("reset (cancel + arm)", w.reset, h.reset),
        ("expire (per timer)", w.expire, h.expire),
    ] {
        println!("| {name:<20} | {a:>13.1} | {b:>12.1} | {:>12.2} |", b / a);
    }
    println!();
    println!(
        "heap cancel is lazy (a generation bump); its stale entries stay in the heap and are paid for at expiry"
    );
}
