//! Two engines joined by an in-memory link with virtual time and seeded
//! impairments (loss, duplication, reordering, delay, corruption), in the
//! style of quinn-proto's `Pair`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::tcp::{CcAlgorithm, ConnId, Event, State, TcpConfig, TcpEngine, TcpError};
use crate::time::Instant;
use crate::wire::tcp::TcpParseError;

pub const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// A and B over IPv6 ([`Pair::new6`]).
pub const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
pub const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

/// SplitMix64: small, seedable, good enough for test decisions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// What the link does to each segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairment {
    pub loss: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// One-way delay: base plus a uniform jitter (which reorders).
    pub delay: Duration,
    pub jitter: Duration,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    order: u64,
    to_b: bool,
    corrupted: bool,
    bytes: Vec<u8>,
}

/// Two engines, A (client side) and B (server side).
pub struct Pair {
    pub a: TcpEngine,
    pub b: TcpEngine,
    pub now: Instant,
    pub rng: Rng,
    pub imp: Impairment,
    link: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    buf: Vec<u8>,
    /// Corrupted segments delivered to A and to B.
    pub corrupted: [u64; 2],
    pub segments: u64,
    /// An application wake-up time the next step must not jump past.
    pub wake: Option<Instant>,
    /// A's address (A, or A6 for [`Pair::new6`]).
    pub addr_a: IpAddr,
    /// B's address.
    pub addr_b: IpAddr,
}

impl Pair {
    pub fn new(cfg_a: TcpConfig, cfg_b: TcpConfig, imp: Impairment, seed: u64) -> Pair {
        let mut rng = Rng::new(seed);
        let mut key = || core::array::from_fn(|_| rng.next_u64() as u8);
        let (ka, kb) = (key(), key());
        Pair {
            a: TcpEngine::new(cfg_a, ka),
            b: TcpEngine::new(cfg_b, kb),
            now: Instant::from_millis(1),
            rng,
            imp,
            link: BinaryHeap::new(),
            order: 0,
            buf: vec![0; 2048],
            corrupted: [0, 0],
            segments: 0,
            wake: None,
            addr_a: A.into(),
            addr_b: B.into(),
        }
    }

    /// [`Pair::new`] with A and B talking over IPv6 (A6, B6).
    pub fn new6(cfg_a: TcpConfig, cfg_b: TcpConfig, imp: Impairment, seed: u64) -> Pair {
        Pair {
            addr_a: A6.into(),
            addr_b: B6.into(),
            ..Pair::new(cfg_a, cfg_b, imp, seed)
        }
    }

    fn enqueue(&mut self, to_b: bool, bytes: Vec<u8>) {
        let jitter = self.rng.below(self.imp.jitter.as_micros() as u64 + 1);
        let at = self.now + self.imp.delay + Duration::from_micros(jitter);
        let mut bytes = bytes;
        let mut corrupted = false;
        if self.rng.chance(self.imp.corrupt) {
            let i = self.rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= (self.rng.below(255) + 1) as u8;
            corrupted = true;
        }
        self.order += 1;
        self.link.push(Reverse(InFlight {
            at,
            order: self.order,
            to_b,
            corrupted,
            bytes,
        }));
    }

    /// Moves everything both engines want to send onto the link.
    pub fn drive_transmit(&mut self) {
        for to_b in [true, false] {
            loop {
                let e = if to_b { &mut self.a } else { &mut self.b };
                let Some(t) = e.poll_transmit(self.now, &mut self.buf) else {
                    break;
                };
                assert_eq!(t.src, if to_b { self.addr_a } else { self.addr_b });
                self.segments += 1;
                let bytes = self.buf[..t.len].to_vec();
                if self.rng.chance(self.imp.loss) {
                    continue;
                }
                if self.rng.chance(self.imp.duplicate) {
                    self.enqueue(to_b, bytes.clone());
                }
                self.enqueue(to_b, bytes);
            }
        }
    }

    /// Delivers what is due and runs due timers.
    fn deliver_due(&mut self) {
        while let Some(Reverse(f)) = self.link.peek() {
            if f.at > self.now {
                break;
            }
            let Some(Reverse(f)) = self.link.pop() else {
                break;
            };
            if f.to_b {
                self.corrupted[1] += u64::from(f.corrupted);
                self.b
                    .on_segment(self.now, self.addr_a, self.addr_b, &f.bytes);
            } else {
                self.corrupted[0] += u64::from(f.corrupted);
                self.a
                    .on_segment(self.now, self.addr_b, self.addr_a, &f.bytes);
            }
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }

    /// One step: send, then jump to the next arrival or timer and process
    /// it. Returns false when nothing is pending anywhere.
    pub fn step(&mut self) -> bool {
        self.drive_transmit();
        let next = [
            self.link.peek().map(|Reverse(f)| f.at),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
            self.wake.take().filter(|&w| w > self.now),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        self.deliver_due();
        true
    }

    /// Steps until `until` is true or virtual time passes `limit`.
    pub fn run_until(&mut self, limit: Duration, mut until: impl FnMut(&mut Pair) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if until(self) {
                return true;
            }
            if !self.step() || self.now > end {
                return until(self);
            }
        }
    }

    /// Segments the parser rejected: a corrupted header may fail a
    /// structural check (data offset, options) before the checksum.
    pub fn parse_drops(e: &TcpEngine) -> u64 {
        e.stats().parse_drops.iter().sum()
    }

    pub fn bad_checksums(e: &TcpEngine) -> u64 {
        e.stats().parse_drops[TcpParseError::BadChecksum.index()]
    }
}

/// One side of a bidirectional transfer driven by the application API.
pub struct App {
    pub id: Option<ConnId>,
    pub to_send: Vec<u8>,
    pub sent: usize,
    pub shut: bool,
    pub received: Vec<u8>,
    pub eof: bool,
    /// The application does not read before this time (a slow reader:
    /// the receive window closes and the peer must probe it).
    pub read_from: Instant,
}

impl App {
    pub fn new(data: Vec<u8>) -> App {
        App {
            id: None,
            to_send: data,
            sent: 0,
            shut: false,
            received: vec![],
            eof: false,
            read_from: Instant::ZERO,
        }
    }

    /// Writes what fits, shuts down once all is written, reads all.
    pub fn pump(&mut self, now: Instant, e: &mut TcpEngine) {
        let Some(id) = self.id else { return };
        while self.sent < self.to_send.len() {
            match e.write(id, &self.to_send[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(TcpError::WouldBlock) => break,
                Err(err) => panic!("write failed: {err}"),
            }
        }
        if self.sent == self.to_send.len() && !self.shut && e.state(id) != Ok(State::SynSent) {
            e.shutdown(id).unwrap();
            self.shut = true;
        }
        let mut b = [0u8; 1500];
        while !self.eof && now >= self.read_from {
            match e.read(id, &mut b) {
                Ok(0) => self.eof = true,
                Ok(n) => self.received.extend_from_slice(&b[..n]),
                Err(TcpError::WouldBlock) => break,
                Err(err) => panic!("read failed: {err}"),
            }
        }
    }
}

/// A random configuration: options on or off, small buffers (to exercise
/// zero windows and SWS avoidance), MSS, congestion control.
pub fn random_config(rng: &mut Rng) -> TcpConfig {
    let bufs = [1024u32, 3000, 8192, 65_536, 200_000];
    TcpConfig {
        tcp_timestamps: rng.bool(),
        tcp_sack: rng.bool(),
        tcp_window_scaling: rng.bool(),
        tcp_rmem: bufs[rng.below(bufs.len() as u64) as usize],
        tcp_wmem: bufs[rng.below(bufs.len() as u64) as usize],
        mss: [536u16, 1000, 1460][rng.below(3) as usize],
        tcp_congestion_control: if rng.bool() {
            CcAlgorithm::Cubic
        } else {
            CcAlgorithm::NewReno
        },
        ..TcpConfig::default()
    }
}

/// Runs one seeded bidirectional transfer and checks every invariant.
/// Returns the counters of both engines, added.
pub fn transfer(seed: u64, max_len: usize) -> Vec<(&'static str, u64)> {
    transfer_on(seed, max_len, false)
}

/// [`transfer`] over IPv4 or, with `ipv6`, over IPv6.
pub fn transfer_on(seed: u64, max_len: usize, ipv6: bool) -> Vec<(&'static str, u64)> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let imp = Impairment {
        loss: rng.below(15) as f64 / 100.0,
        duplicate: rng.below(10) as f64 / 100.0,
        corrupt: rng.below(10) as f64 / 100.0,
        delay: Duration::from_micros(100 + rng.below(20_000)),
        jitter: Duration::from_micros(rng.below(20_000)),
    };
    let cfg_a = random_config(&mut rng);
    let cfg_b = random_config(&mut rng);
    let len_a = rng.below(max_len as u64 + 1) as usize;
    let len_b = rng.below(max_len as u64 + 1) as usize;
    let mut client = App::new(rng.bytes(len_a));
    let mut server = App::new(rng.bytes(len_b));
    let nodelay = rng.bool();
    if rng.below(3) == 0 {
        server.read_from = Instant::from_millis(rng.below(3000));
    }
    if rng.below(3) == 0 {
        client.read_from = Instant::from_millis(rng.below(3000));
    }
    let mut p = if ipv6 {
        Pair::new6(cfg_a, cfg_b, imp, seed)
    } else {
        Pair::new(cfg_a, cfg_b, imp, seed)
    };
    let l = p.b.listen(p.addr_b, 80, 8).unwrap();
    let id = p.a.connect(p.now, p.addr_a, 0, p.addr_b, 80).unwrap();
    p.a.set_nodelay(id, nodelay).unwrap();
    client.id = Some(id);
    let ctx = format!("seed {seed}: {imp:?}, {} -> {} bytes", len_a, len_b);
    let done = p.run_until(Duration::from_secs(1800), |p| {
        while let Some(ev) = p.a.poll_event() {
            assert!(
                !matches!(ev, Event::Reset(_) | Event::TimedOut(_) | Event::Refused(_)),
                "{ev:?}"
            );
        }
        while let Some(ev) = p.b.poll_event() {
            assert!(
                !matches!(ev, Event::Reset(_) | Event::TimedOut(_)),
                "{ev:?}"
            );
        }
        if server.id.is_none() {
            server.id = p.b.accept(l);
        }
        client.pump(p.now, &mut p.a);
        server.pump(p.now, &mut p.b);
        p.wake = [client.read_from, server.read_from]
            .into_iter()
            .filter(|&t| t > p.now)
            .min();
        let settled = |e: &TcpEngine, id: Option<ConnId>| {
            id.is_some_and(|id| matches!(e.state(id), Ok(State::TimeWait | State::Closed)))
        };
        client.eof && server.eof && settled(&p.a, client.id) && settled(&p.b, server.id)
    });
    assert!(
        done,
        "{ctx}: did not finish; client {:?} server {:?}",
        client.id.map(|i| p.a.state(i)),
        server.id.map(|i| p.b.state(i))
    );
    assert!(
        client.received == server.to_send,
        "{ctx}: B->A stream differs"
    );
    assert!(
        server.received == client.to_send,
        "{ctx}: A->B stream differs"
    );
    let (ca, sb) = (client.id.unwrap(), server.id.unwrap());
    let states = (p.a.state(ca).unwrap(), p.b.state(sb).unwrap());
    // Whoever closed first waits in TIME_WAIT; both do after a simultaneous
    // close; never both CLOSED.
    assert!(
        matches!(
            states,
            (State::TimeWait, State::Closed)
                | (State::Closed, State::TimeWait)
                | (State::TimeWait, State::TimeWait)
        ),
        "{ctx}: final states {states:?}\nA: {:?}\nB: {:?}",
        p.a.stats(),
        p.b.stats()
    );
    // Let the link drain and TIME_WAIT expire: both CLOSED, nothing held
    // once the handles are closed.
    p.run_until(Duration::from_secs(200), |p| {
        p.a.state(ca) == Ok(State::Closed) && p.b.state(sb) == Ok(State::Closed)
    });
    assert_eq!(
        (p.a.state(ca).unwrap(), p.b.state(sb).unwrap()),
        (State::Closed, State::Closed),
        "{ctx}"
    );
    p.a.close(p.now, ca).unwrap();
    p.b.close(p.now, sb).unwrap();
    assert_eq!(
        (p.a.connection_count(), p.b.connection_count()),
        (0, 0),
        "{ctx}"
    );
    // Every corrupted segment is rejected (mostly by the checksum), and
    // nothing else is.
    assert_eq!(Pair::parse_drops(&p.a), p.corrupted[0], "{ctx}");
    assert_eq!(Pair::parse_drops(&p.b), p.corrupted[1], "{ctx}");
    assert!(
        Pair::bad_checksums(&p.a) + Pair::bad_checksums(&p.b) <= p.corrupted[0] + p.corrupted[1]
    );
    p.a.stats()
        .iter()
        .zip(p.b.stats().iter())
        .map(|((n, x), (_, y))| (n, x + y))
        .collect()
}

#[test]
fn clean_link_transfer_both_ways() {
    let mut p = Pair::new(
        TcpConfig::default(),
        TcpConfig::default(),
        Impairment {
            delay: Duration::from_millis(5),
            ..Impairment::default()
        },
        1,
    );
    let l = p.b.listen(B, 80, 8).unwrap();
    let mut rng = Rng::new(9);
    let mut client = App::new(rng.bytes(300_000));
    let mut server = App::new(rng.bytes(200_000));
    client.id = Some(p.a.connect(p.now, A, 0, B, 80).unwrap());
    let ok = p.run_until(Duration::from_secs(60), |p| {
        if server.id.is_none() {
            server.id = p.b.accept(l);
        }
        client.pump(p.now, &mut p.a);
        server.pump(p.now, &mut p.b);
        client.eof && server.eof
    });
    assert!(ok);
    assert!(client.received == server.to_send && server.received == client.to_send);
    let s = p.a.stats();
    assert_eq!(s.retransmits, 0, "{s:?}");
    assert_eq!(s.established, 1);
}

#[test]
fn impaired_transfers_over_ipv6_200_seeds() {
    let mut retransmits = 0;
    let mut bad_checksums = 0;
    for seed in 0..200 {
        let s = transfer_on(seed, 6000, true);
        let get = |name: &str| s.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v);
        retransmits += get("retransmits");
        bad_checksums += get("drop_tcp_bad_checksum");
    }
    // Loss and corruption were there and recovered from.
    assert!(retransmits > 0 && bad_checksums > 0);
}

#[test]
fn impaired_transfers_1000_seeds() {
    let mut total: Vec<(&str, u64)> = vec![];
    for seed in 0..1000 {
        let s = transfer(seed, 6000);
        if total.is_empty() {
            total = s;
        } else {
            total.iter_mut().zip(s).for_each(|(t, (_, v))| t.1 += v);
        }
    }
    let get = |name: &str| {
        total
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |&(_, v)| v)
    };
    println!("1000 seeded transfers: {total:?}");
    // The impairments really exercised the recovery paths.
    for name in [
        "retransmits",
        "rto_timeouts",
        "fast_retransmits",
        "sack_retransmits",
        "ooo_segments",
        "dup_segments",
        "persist_probes",
        "drop_tcp_bad_checksum",
    ] {
        assert!(get(name) > 0, "{name} never happened");
    }
}
