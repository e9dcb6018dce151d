//! `xstack load`: a load generator on the xstack engine (one engine and
//! thread per AF_XDP queue with `--queues N`, no syscall per segment, no
//! kernel ephemeral-port or TIME_WAIT limits) or, with `--kernel`, on
//! kernel sockets (tokio) for comparison.
//!
//! Open loop (`--rate`) schedules each connection at its intended start
//! time and measures latency from that time, so a slow server cannot hide
//! its queueing (no coordinated omission). Closed loop (`--concurrency`)
//! keeps N connections busy and measures from each request's send time.

use std::{
    collections::HashMap,
    io::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    apps::http,
    iface::App,
    runtime::stack::{Stack, StackConfig},
    tcp::{ConnId, Event, TcpConfig, TcpError},
};

/// How connections are started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loop {
    /// Keep this many connections busy.
    Closed(u32),
    /// Start this many connections per second, on schedule.
    Open(f64),
}

/// Who ends each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseBy {
    /// The load generator sends FIN first (TIME_WAIT lands here).
    Client,
    /// The server closes first (needs `--http`: the last request says
    /// `Connection: close`; TIME_WAIT lands on the server).
    Server,
    /// The load generator resets (RST, no TIME_WAIT anywhere).
    Rst,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Server address.
    pub target: SocketAddrV4,
    /// Open or closed loop.
    pub lp: Loop,
    /// Requests per connection (1 = a new connection per request).
    pub requests_per_conn: u32,
    /// Request size (echo protocol).
    pub request_bytes: usize,
    /// HTTP/1.1 GET instead of the echo protocol.
    pub http: bool,
    /// Who closes.
    pub close: CloseBy,
    /// Stop starting connections after this long.
    pub duration: Option<Duration>,
    /// Stop after this many connections.
    pub connections: Option<u64>,
    /// How long a connection may go without progress (connect, a
    /// response) before it counts as timed out.
    pub timeout: Duration,
    /// Print a progress line every second.
    pub progress: bool,
    /// Write an HdrHistogram interval log here.
    pub hdr: Option<PathBuf>,
    /// Engines, one per AF_XDP queue and thread (xstack only).
    pub queues: u32,
    /// Never sleep: spin on the rings (lowest latency, a whole core per
    /// queue). Otherwise an idle engine sleeps until a frame or timer.
    pub busy_poll: bool,
}

impl LoadConfig {
    /// Checks the combination of options.
    pub fn validate(&self) -> Result<()> {
        if self.close == CloseBy::Server && !self.http {
            bail!("--close server needs --http (the last request asks the server to close)");
        }
        if self.duration.is_none() && self.connections.is_none() {
            bail!("give --duration S or --connections N: every load is bounded");
        }
        if self.requests_per_conn == 0 {
            bail!("--requests-per-conn must be at least 1");
        }
        if self.queues == 0 || self.queues > 64 {
            bail!("--queues {} is out of range: use 1 to 64", self.queues);
        }
        match self.lp {
            Loop::Closed(0) => bail!("--concurrency must be at least 1"),
            Loop::Closed(n) if n < self.queues => bail!(
                "--concurrency {n} is below --queues {}: every queue's engine needs a connection; raise --concurrency or lower --queues",
                self.queues
            ),
            Loop::Open(r) if !(r > 0.0 && r.is_finite()) => bail!("--rate must be positive"),
            _ => {}
        }
        let o = self.target.ip().octets();
        if !(o[0] == 198 && (o[1] & 0xfe) == 18) {
            bail!(
                "target {} is outside 198.18.0.0/15; xstack load only sends to the benchmarking range",
                self.target
            );
        }
        Ok(())
    }

    /// Worker `i`'s share of `n`: the concurrency, rate and connection
    /// count split as evenly as whole numbers allow; no progress line or
    /// HdrHistogram log of its own (the caller reports for all).
    fn part(&self, i: u32, n: u32) -> LoadConfig {
        let share =
            |total: u64| total / u64::from(n) + u64::from(u64::from(i) < total % u64::from(n));
        LoadConfig {
            lp: match self.lp {
                Loop::Closed(c) => Loop::Closed(share(u64::from(c)) as u32),
                Loop::Open(r) => Loop::Open(r / f64::from(n)),
            },
            connections: self.connections.map(share),
            progress: false,
            hdr: None,
            queues: 1,
            ..self.clone()
        }
    }
}

/// Errors by kind.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Errors {
    /// Connection refused (RST to SYN).
    pub refused: u64,
    /// Connection reset during the exchange.
    pub reset: u64,
    /// No answer within the timeout.
    pub timeout: u64,
    /// Anything else (protocol errors, local port exhaustion).
    pub other: u64,
}

impl Errors {
    fn total(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.other
    }

    fn add(&mut self, o: &Errors) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.other += o.other;
    }
}

/// One queue's engine in a `--queues N` run.
#[derive(Clone, Debug, Serialize)]
pub struct QueueSummary {
    /// Queue (and engine) index.
    pub queue: u32,
    /// Connections it completed.
    pub connections: u64,
    /// Requests answered on them.
    pub requests: u64,
    /// Errors of all kinds.
    pub errors: u64,
    /// Frames of its queue that belonged to another engine's flow.
    pub handed_out: u64,
    /// Frames of its flows that arrived on another queue.
    pub handed_in: u64,
    /// Handed-over frames dropped at a full mailbox.
    pub handoff_dropped: u64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// The summary `--json` writes (schema: docs in README, "load JSON").
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// "xstack" or "kernel".
    pub stack: &'static str,
    /// Target.
    pub target: String,
    /// Seconds measured.
    pub elapsed_s: f64,
    /// Connections that completed every request and closed as asked.
    pub connections: u64,
    /// Per second.
    pub connections_per_s: f64,
    /// Requests answered.
    pub requests: u64,
    /// Per second.
    pub requests_per_s: f64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Received bits per second.
    pub throughput_bps: f64,
    /// Request latency (µs), from the intended start in open loop.
    pub latency_us: Latency,
    /// Errors by kind.
    pub errors: Errors,
    /// Most connections in TIME_WAIT at once on the load side (with
    /// several queues, the sum of each engine's peak: an upper bound).
    pub peak_time_wait: u64,
    /// The first error seen, as text (null when none).
    pub first_error: Option<String>,
    /// Times a connection had to wait for a free local port (all in use or
    /// in TIME_WAIT younger than tcp_tw_reuse allows).
    pub port_exhausted_waits: u64,
    /// Engines (queues) that generated the load (1 with `--kernel`).
    pub queues: u32,
    /// Per engine, with `--queues` (empty with `--kernel`).
    pub per_queue: Vec<QueueSummary>,
}

/// Shared measurement state.
struct Recorder {
    hist: Histogram<u64>,
    interval: Histogram<u64>,
    errors: Errors,
    connections: u64,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    peak_tw: u64,
    first_error: Option<String>,
    port_waits: u64,
    /// End of the measurement window (`--duration`): rates count what
    /// completed inside it, not the drain after it.
    window: Option<(Instant, Duration)>,
    conns_in_window: u64,
    reqs_in_window: u64,
    bytes_in_window: u64,
    /// Connections open now (for the progress line).
    active: usize,
    /// Connections in TIME_WAIT now.
    time_wait: u64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            interval: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            errors: Errors::default(),
            connections: 0,
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
            peak_tw: 0,
            first_error: None,
            port_waits: 0,
            window: None,
            conns_in_window: 0,
            reqs_in_window: 0,
            bytes_in_window: 0,
            active: 0,
            time_wait: 0,
        }
    }

    /// Adds another worker's counts and latencies (not its interval
    /// histogram, which the progress line takes separately).
    fn add(&mut self, o: &Recorder) {
        let _ = self.hist.add(&o.hist);
        self.errors.add(&o.errors);
        self.connections += o.connections;
        self.requests += o.requests;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.peak_tw += o.peak_tw;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        self.port_waits += o.port_waits;
        self.conns_in_window += o.conns_in_window;
        self.reqs_in_window += o.reqs_in_window;
        self.bytes_in_window += o.bytes_in_window;
    }

    fn in_window(&self) -> bool {
        self.window.is_none_or(|(end, _)| Instant::now() <= end)
    }

    fn latency(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.hist.saturating_record(us);
        self.interval.saturating_record(us);
        self.requests += 1;
        if self.in_window() {
            self.reqs_in_window += 1;
        }
    }

    fn conn_done(&mut self) {
        self.connections += 1;
        if self.in_window() {
            self.conns_in_window += 1;
        }
    }

    fn bytes_received(&mut self, n: u64) {
        self.bytes_in += n;
        if self.in_window() {
            self.bytes_in_window += n;
        }
    }

    fn summary(&self, stack: &'static str, target: SocketAddrV4, elapsed: f64) -> Summary {
        let h = &self.hist;
        let q = |x: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        // With --duration, rates are over the window; the drain after it
        // (last requests, closes) does not dilute them.
        let (secs, conns, reqs, bytes) = match self.window {
            Some((_, d)) if elapsed > d.as_secs_f64() => (
                d.as_secs_f64(),
                self.conns_in_window,
                self.reqs_in_window,
                self.bytes_in_window,
            ),
            _ => (elapsed, self.connections, self.requests, self.bytes_in),
        };
        Summary {
            stack,
            target: target.to_string(),
            elapsed_s: elapsed,
            connections: self.connections,
            connections_per_s: conns as f64 / secs,
            requests: self.requests,
            requests_per_s: reqs as f64 / secs,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
            throughput_bps: bytes as f64 * 8.0 / secs,
            latency_us: Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: h.max(),
                mean: if h.is_empty() { 0.0 } else { h.mean() },
            },
            errors: self.errors,
            peak_time_wait: self.peak_tw,
            first_error: self.first_error.clone(),
            port_exhausted_waits: self.port_waits,
            queues: 1,
            per_queue: Vec::new(),
        }
    }
}

/// Progress printing and the HdrHistogram interval log.
struct Reporter {
    start: Instant,
    last: Instant,
    last_conns: u64,
    last_reqs: u64,
    hdr: Option<std::fs::File>,
    progress: bool,
}

impl Reporter {
    fn new(cfg: &LoadConfig) -> Result<Reporter> {
        let hdr = match &cfg.hdr {
            Some(p) => {
                let mut f = std::fs::File::create(p)
                    .with_context(|| format!("creating {}", p.display()))?;
                writeln!(f, "#[xstack load to {}]", cfg.target)?;
                writeln!(f, "#[StartTime: {:.3}]", unix_now())?;
                writeln!(f, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
                Some(f)
            }
            None => None,
        };
        let now = Instant::now();
        Ok(Reporter {
            start: now,
            last: now,
            last_conns: 0,
            last_reqs: 0,
            hdr,
            progress: cfg.progress,
        })
    }

    /// A second has passed since the last line.
    fn due(&self) -> bool {
        self.last.elapsed() >= Duration::from_secs(1)
    }

    /// Once a second: a progress line and an interval histogram.
    fn tick(&mut self, r: &mut Recorder, active: usize, tw: u64) {
        r.peak_tw = r.peak_tw.max(tw);
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        if self.progress {
            let p99 = if r.interval.is_empty() {
                0
            } else {
                r.interval.value_at_quantile(0.99)
            };
            eprintln!(
                "t={:>5.1}s conn/s {:>9.0} req/s {:>9.0} errors {:>6} p99 {:>8} µs active {:>6} time_wait {:>7}",
                now.duration_since(self.start).as_secs_f64(),
                (r.connections - self.last_conns) as f64 / dt,
                (r.requests - self.last_reqs) as f64 / dt,
                r.errors.total(),
                p99,
                active,
                tw
            );
        }
        if let Some(f) = self.hdr.as_mut() {
            use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
            let mut buf = Vec::new();
            if V2DeflateSerializer::new()
                .serialize(&r.interval, &mut buf)
                .is_ok()
            {
                use base64_encode as b64;
                let _ = writeln!(
                    f,
                    "{:.3},{:.3},{:.3},{}",
                    self.last.duration_since(self.start).as_secs_f64(),
                    dt,
                    r.interval.max() as f64 / 1e6,
                    b64(&buf)
                );
            }
        }
        r.interval.reset();
        self.last = now;
        self.last_conns = r.connections;
        self.last_reqs = r.requests;
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Standard base64 (RFC 4648 §4), for the HdrHistogram log format.
fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// The bytes of one request.
fn request_bytes(cfg: &LoadConfig, last: bool) -> Vec<u8> {
    if cfg.http {
        let keep = !(last && cfg.close == CloseBy::Server);
        http::get_request(&cfg.target.ip().to_string(), "/", keep)
    } else {
        (0..cfg.request_bytes).map(|i| (i % 251) as u8).collect()
    }
}

/// Length of the complete response at the start of `buf`, if there is one.
fn response_complete(cfg: &LoadConfig, buf: &[u8]) -> Result<Option<usize>, ()> {
    if cfg.http {
        http::response_len(buf).map_err(|_| ())
    } else {
        Ok((buf.len() >= cfg.request_bytes).then_some(cfg.request_bytes))
    }
}

/// Hasher of the driver's connection map: a `ConnId` is an engine slot
/// index and generation, already unique and well spread, so one multiply
/// (as rustc's FxHasher) replaces SipHash, which perf showed on the load
/// generator's profile.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u32(u32::from(*b));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type ConnMap = HashMap<ConnId, Conn, std::hash::BuildHasherDefault<IdHasher>>;

/// One client connection of the engine driver.
struct Conn {
    /// When the current request was meant to start (latency origin).
    origin: Instant,
    /// Last progress (connect, or a response): `--timeout` counts from here.
    started: Instant,
    done: u32,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Waiting for the server's FIN (`--close server`).
    awaiting_fin: bool,
    /// The request in flight is the connection's last.
    last_sent: bool,
}

/// Runs the load on the xstack engine bound to `iface` with address `ip`,
/// one engine and thread per queue (`cfg.queues`); the rate, concurrency
/// and connection count are split between them.
///
/// The engine's `TcpConfig` is `tcp`; a generator wants `tcp_tw_reuse = 1`
/// so that 4-tuples in TIME_WAIT are reused after 1 s (with timestamps,
/// PAWS protects the new incarnation), as `xstack load` sets by default.
pub fn run_engine(
    iface: &str,
    ip: Ipv4Addr,
    cfg: &LoadConfig,
    mut tcp: TcpConfig,
) -> Result<Summary> {
    cfg.validate()?;
    let (lo, hi) = tcp.ip_local_port_range;
    tcp.tcp_wmem = tcp.tcp_wmem.max(cfg.request_bytes as u32);
    let queues = cfg.queues;
    let (_prog, stacks) = Stack::open_queues(
        &StackConfig {
            iface: iface.to_string(),
            ip,
            listen: vec![],
            client_ports: (lo..=hi).collect(),
            app: App::Discard,
            response_bytes: 0,
            tcp,
            xsk: Default::default(),
        },
        queues,
    )?;
    let start = Instant::now();
    let window = cfg.duration.map(|d| (start + d, d));
    let mut rep = Reporter::new(cfg)?;
    let mut workers = Vec::new();
    for (i, mut st) in stacks.into_iter().enumerate() {
        let part = cfg.part(i as u32, queues);
        let rec = Arc::new(Mutex::new(Recorder::new()));
        if let Ok(mut r) = rec.lock() {
            r.window = window;
        }
        let shared = rec.clone();
        let handle = std::thread::Builder::new()
            .name(format!("xstack-load-q{i}"))
            .spawn(move || {
                drive(&mut st, &part, &shared, start);
                st.steer_counts()
            })
            .context("spawning a load worker")?;
        workers.push((rec, handle));
    }
    // Progress once a second, from every worker's counters.
    let mut peak_tw = 0u64;
    while !workers.iter().all(|(_, h)| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if rep.due() {
            let mut sum = Recorder::new();
            let (mut active, mut tw) = (0, 0);
            for (rec, _) in &workers {
                if let Ok(mut r) = rec.lock() {
                    sum.add(&r);
                    let _ = sum.interval.add(&r.interval);
                    r.interval.reset();
                    active += r.active;
                    tw += r.time_wait;
                }
            }
            peak_tw = peak_tw.max(tw);
            rep.tick(&mut sum, active, tw);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = Recorder::new();
    total.window = window;
    let mut per_queue = Vec::new();
    for (q, (rec, handle)) in workers.into_iter().enumerate() {
        let steer = handle
            .join()
            .map_err(|_| anyhow::anyhow!("load worker {q} panicked"))?;
        let r = rec
            .lock()
            .map_err(|_| anyhow::anyhow!("load worker {q} poisoned its recorder"))?;
        total.add(&r);
        per_queue.push(QueueSummary {
            queue: q as u32,
            connections: r.connections,
            requests: r.requests,
            errors: r.errors.total(),
            handed_out: steer.handed_out,
            handed_in: steer.handed_in,
            handoff_dropped: steer.handoff_dropped,
        });
    }
    total.peak_tw = total.peak_tw.max(peak_tw);
    let mut summary = total.summary("xstack", cfg.target, elapsed);
    summary.queues = queues;
    summary.per_queue = per_queue;
    Ok(summary)
}

/// One queue's share of the load, on its own thread: starts connections,
/// runs their requests, counts into `shared`.
fn drive(st: &mut Stack, cfg: &LoadConfig, shared: &Mutex<Recorder>, start: Instant) {
    let ip = st.addr();
    let mut conns = ConnMap::default();
    // The two requests (the last one may ask the server to close), built once.
    let requests = [request_bytes(cfg, false), request_bytes(cfg, true)];
    let stop_at = cfg.duration.map(|d| start + d);
    let mut started: u64 = 0;
    let mut next_open = start;
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle: u32 = 0;
    let mut last_check = Instant::now();
    loop {
        let mut busy = false;
        let Ok(mut guard) = shared.lock() else {
            return;
        };
        let rec = &mut *guard;
        let now = Instant::now();
        let can_start =
            stop_at.is_none_or(|t| now < t) && cfg.connections.is_none_or(|n| started < n);
        if !can_start && conns.is_empty() {
            break;
        }
        if stop_at.is_some_and(|t| now > t + cfg.timeout + Duration::from_secs(1)) {
            // Whatever is still open now has timed out.
            rec.errors.timeout += conns.len() as u64;
            for (c, _) in conns.drain() {
                let _ = st.engine().tcp().abort(c);
            }
            break;
        }
        // Frames in; the replies they owe leave with this round's requests
        // and closes at `transmit` below.
        busy |= st.receive() > 0;
        // Start connections.
        let mut to_start: Vec<Instant> = Vec::new();
        if can_start {
            match cfg.lp {
                Loop::Closed(n) => {
                    for _ in conns.len()..n as usize {
                        to_start.push(now);
                    }
                }
                Loop::Open(rate) => {
                    while next_open <= now && to_start.len() < 1024 {
                        to_start.push(next_open);
                        next_open += Duration::from_secs_f64(1.0 / rate);
                    }
                }
            }
        }
        for origin in to_start {
            busy = true;
            if cfg.connections.is_some_and(|n| started >= n) {
                break;
            }
            let t = st.now();
            let attempt = st
                .engine()
                .connect(t, ip, 0, *cfg.target.ip(), cfg.target.port());
            if attempt == Err(TcpError::AddrInUse) {
                // Every local port is busy or in TIME_WAIT too young to reuse
                // (EADDRNOTAVAIL on Linux): back-pressure, not an error. Try
                // again on a later round; open-loop starts keep their
                // intended times, so the wait shows in the latency.
                rec.port_waits += 1;
                if let Loop::Open(_) = cfg.lp {
                    next_open = next_open.min(origin);
                }
                break;
            }
            started += 1;
            match attempt {
                Ok(c) => {
                    conns.insert(
                        c,
                        Conn {
                            origin,
                            started: now,
                            done: 0,
                            inbuf: Vec::new(),
                            out: Vec::new(),
                            awaiting_fin: false,
                            last_sent: false,
                        },
                    );
                }
                Err(e) => {
                    rec.errors.other += 1;
                    rec.first_error
                        .get_or_insert_with(|| format!("connect: {e}"));
                }
            }
        }
        // Events.
        while let Some(ev) = st.engine().poll_event() {
            busy = true;
            let (c, kind) = match ev {
                Event::Connected(c) | Event::Writable(c) => (c, 0),
                Event::Readable(c) | Event::PeerClosed(c) => (c, 1),
                Event::Reset(c) => (c, 2),
                Event::TimedOut(c) => (c, 3),
                Event::Refused(c) => (c, 4),
                Event::Closed(_) | Event::Incoming(_) => continue,
            };
            let Some(conn) = conns.get_mut(&c) else {
                continue;
            };
            let fail = |rec: &mut Recorder, k: u8| match k {
                2 => rec.errors.reset += 1,
                3 => rec.errors.timeout += 1,
                4 => rec.errors.refused += 1,
                _ => rec.errors.other += 1,
            };
            if kind >= 2 {
                fail(rec, kind);
                conns.remove(&c);
                // Give the handle back so the engine frees the connection.
                let t = st.now();
                let _ = st.engine().tcp().close(t, c);
                continue;
            }
            let tcp_now = st.now();
            let tcp = st.engine().tcp();
            if kind == 0 && conn.done == 0 && conn.out.is_empty() && conn.inbuf.is_empty() {
                // Connected: first request; latency origin stays the intended start.
                conn.last_sent = cfg.requests_per_conn == 1;
                conn.out.clear();
                conn.out
                    .extend_from_slice(&requests[usize::from(conn.last_sent)]);
                if matches!(cfg.lp, Loop::Closed(_)) {
                    conn.origin = Instant::now();
                }
            }
            // Write what is pending.
            let mut failed = false;
            while !conn.out.is_empty() {
                match tcp.write(c, &conn.out) {
                    Ok(n) => {
                        rec.bytes_out += n as u64;
                        conn.out.drain(..n);
                    }
                    Err(TcpError::WouldBlock) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            // Read responses.
            let mut finished = false;
            loop {
                match tcp.read(c, &mut buf) {
                    Ok(0) => {
                        if conn.awaiting_fin {
                            let _ = tcp.close(tcp_now, c);
                            rec.conn_done();
                            finished = true;
                        } else {
                            failed = true;
                        }
                        break;
                    }
                    Ok(n) => {
                        rec.bytes_received(n as u64);
                        conn.inbuf.extend_from_slice(&buf[..n]);
                        loop {
                            match response_complete(cfg, &conn.inbuf) {
                                Ok(Some(len)) => {
                                    conn.inbuf.drain(..len);
                                    rec.latency(conn.origin.elapsed());
                                    conn.started = Instant::now();
                                    conn.done += 1;
                                    // Past the deadline a connection ends after its
                                    // current request (with --close server, after
                                    // one more that asks the server to close).
                                    let over = stop_at.is_some_and(|t| Instant::now() >= t);
                                    if conn.last_sent || (over && cfg.close != CloseBy::Server) {
                                        match cfg.close {
                                            CloseBy::Client => {
                                                let _ = tcp.close(tcp_now, c);
                                                rec.conn_done();
                                                finished = true;
                                            }
                                            CloseBy::Rst => {
                                                let _ = tcp.abort(c);
                                                rec.conn_done();
                                                finished = true;
                                            }
                                            CloseBy::Server => conn.awaiting_fin = true,
                                        }
                                        break;
                                    }
                                    let last = conn.done + 1 == cfg.requests_per_conn || over;
                                    conn.last_sent = last;
                                    conn.out.clear();
                                    conn.out.extend_from_slice(&requests[usize::from(last)]);
                                    conn.origin = Instant::now();
                                    while !conn.out.is_empty() {
                                        match tcp.write(c, &conn.out) {
                                            Ok(n) => {
                                                rec.bytes_out += n as u64;
                                                conn.out.drain(..n);
                                            }
                                            Err(_) => break,
                                        }
                                    }
                                }
                                Ok(None) => break,
                                Err(()) => {
                                    failed = true;
                                    break;
                                }
                            }
                        }
                        if finished || failed {
                            break;
                        }
                    }
                    Err(TcpError::WouldBlock) => break,
                    Err(TcpError::ConnectionReset) => {
                        rec.errors.reset += 1;
                        finished = true;
                        break;
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                rec.errors.other += 1;
                let _ = tcp.abort(c);
                finished = true;
            }
            if finished {
                conns.remove(&c);
            }
        }
        st.transmit();
        if last_check.elapsed() >= Duration::from_millis(10) {
            last_check = Instant::now();
            // Per-connection timeouts.
            let now = Instant::now();
            let expired: Vec<ConnId> = conns
                .iter()
                .filter(|(_, k)| now.duration_since(k.started) > cfg.timeout)
                .map(|(c, _)| *c)
                .collect();
            for c in expired {
                rec.errors.timeout += 1;
                let _ = st.engine().tcp().abort(c);
                conns.remove(&c);
            }
            rec.time_wait = st.engine().tcp_ref().state_counts().time_wait as u64;
            rec.peak_tw = rec.peak_tw.max(rec.time_wait);
            rec.active = conns.len();
        }
        drop(guard);
        idle = if busy { 0 } else { idle.saturating_add(1) };
        if !cfg.busy_poll && idle > 64 {
            // Nothing to do: sleep until a frame, a TCP timer, the next
            // scheduled start (open loop) or the 10 ms housekeeping.
            let mut max = Duration::from_millis(10);
            if let Loop::Open(_) = cfg.lp {
                max = max.min(next_open.saturating_duration_since(Instant::now()));
            }
            st.wait(max);
        }
    }
    // Let the last FINs, ACKs and RSTs leave before the socket closes.
    let drain = Instant::now() + Duration::from_millis(200);
    while Instant::now() < drain {
        st.poll();
        while st.engine().poll_event().is_some() {}
    }
    let counts = st.engine().tcp_ref().state_counts();
    if let Ok(mut r) = shared.lock() {
        r.peak_tw = r.peak_tw.max(counts.time_wait_high_water as u64);
        r.active = 0;
        r.time_wait = counts.time_wait as u64;
    }
}

/// TIME_WAIT sockets of this network namespace (/proc/net/sockstat "tw").
fn kernel_time_wait() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?;
            let mut it = line.split_whitespace();
            while let Some(k) = it.next() {
                if k == "tw" {
                    return it.next()?.parse().ok();
                }
            }
            None
        })
        .unwrap_or(0)
}

/// `f`, or `TimedOut` when it makes no progress for `limit`.
async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

async fn kernel_conn(
    cfg: Arc<LoadConfig>,
    origin: Instant,
    start_of_run: Instant,
    rec: Arc<Mutex<Recorder>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // `--timeout` bounds each step without progress (connect, a response,
    // the server's FIN), as in engine mode, not the whole connection: a
    // keep-alive connection may rightly live as long as the run.
    let limit = cfg.timeout;
    let res: std::io::Result<()> = async {
        let mut s = within(limit, tokio::net::TcpStream::connect(cfg.target)).await?;
        s.set_nodelay(true)?;
        let mut origin = if matches!(cfg.lp, Loop::Closed(_)) {
            Instant::now()
        } else {
            origin
        };
        let mut inbuf = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let stop_at = cfg.duration.map(|d| start_of_run + d);
        for i in 0..cfg.requests_per_conn {
            let over = stop_at.is_some_and(|t| Instant::now() >= t);
            if over && i > 0 && cfg.close != CloseBy::Server {
                break;
            }
            let last = i + 1 == cfg.requests_per_conn || over;
            let req = request_bytes(&cfg, last);
            s.write_all(&req).await?;
            let mut got = 0u64;
            loop {
                if let Ok(Some(len)) = response_complete(&cfg, &inbuf) {
                    inbuf.drain(..len);
                    break;
                }
                let n = within(limit, s.read(&mut buf)).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                got += n as u64;
                inbuf.extend_from_slice(&buf[..n]);
            }
            if let Ok(mut r) = rec.lock() {
                r.bytes_out += req.len() as u64;
                r.bytes_received(got);
                r.latency(origin.elapsed());
            }
            origin = Instant::now();
            if last {
                break;
            }
        }
        match cfg.close {
            CloseBy::Client => drop(s),
            CloseBy::Rst => {
                // SO_LINGER 0: close sends RST (tokio::net::TcpStream::set_linger).
                #[allow(deprecated)]
                s.set_linger(Some(Duration::ZERO))?;
                drop(s);
            }
            CloseBy::Server => {
                // Wait for the server's FIN, then close.
                while within(limit, s.read(&mut buf)).await? > 0 {}
            }
        }
        Ok(())
    }
    .await;
    if let Ok(mut r) = rec.lock() {
        match res {
            Ok(()) => r.conn_done(),
            Err(e) => {
                if r.first_error.is_none() {
                    r.first_error = Some(e.to_string());
                }
                match e.kind() {
                    std::io::ErrorKind::TimedOut => r.errors.timeout += 1,
                    std::io::ErrorKind::ConnectionRefused => r.errors.refused += 1,
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                        r.errors.reset += 1
                    }
                    _ => r.errors.other += 1,
                }
            }
        }
    }
}

/// Runs the same load over kernel sockets (tokio, `threads` workers).
pub fn run_kernel(cfg: &LoadConfig, threads: usize) -> Result<Summary> {
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let cfg = Arc::new(cfg.clone());
    let rec = Arc::new(Mutex::new(Recorder::new()));
    if let Ok(mut r) = rec.lock() {
        r.window = cfg.duration.map(|d| (Instant::now() + d, d));
    }
    let start = Instant::now();
    let mut rep = Reporter::new(&cfg)?;
    rt.block_on(async {
        let stop_at = cfg.duration.map(|d| start + d);
        let limit = cfg.connections;
        let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let may_start = move |started: &std::sync::atomic::AtomicU64| {
            let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stop_at.is_none_or(|t| Instant::now() < t) && limit.is_none_or(|c| n < c)
        };
        let mut tasks = tokio::task::JoinSet::new();
        match cfg.lp {
            Loop::Closed(n) => {
                for _ in 0..n {
                    let (cfg, rec, started) = (cfg.clone(), rec.clone(), started.clone());
                    tasks.spawn(async move {
                        while may_start(&started) {
                            kernel_conn(cfg.clone(), Instant::now(), start, rec.clone()).await;
                        }
                    });
                }
            }
            Loop::Open(rate) => {
                let (cfg2, rec2, started2) = (cfg.clone(), rec.clone(), started.clone());
                tasks.spawn(async move {
                    let mut next = Instant::now();
                    let mut conns = tokio::task::JoinSet::new();
                    while may_start(&started2) {
                        tokio::time::sleep_until(next.into()).await;
                        conns.spawn(kernel_conn(cfg2.clone(), next, start, rec2.clone()));
                        next += Duration::from_secs_f64(1.0 / rate);
                        while conns.try_join_next().is_some() {}
                    }
                    while conns.join_next().await.is_some() {}
                });
            }
        }
        loop {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Ok(mut r) = rec.lock() {
                        rep.tick(&mut r, 0, kernel_time_wait());
                    }
                }
            }
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut r = rec
        .lock()
        .map_err(|_| anyhow::anyhow!("recorder poisoned"))?;
    r.peak_tw = r.peak_tw.max(kernel_time_wait());
    Ok(r.summary("kernel", cfg.target, elapsed))
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency_us;
        writeln!(
            f,
            "load ({}) → {} for {:.2} s",
            self.stack, self.target, self.elapsed_s
        )?;
        writeln!(
            f,
            "  connections {:>10}  ({:.0}/s)\n  requests    {:>10}  ({:.0}/s)\n  throughput  {:.3} Mbit/s in, {} B out",
            self.connections,
            self.connections_per_s,
            self.requests,
            self.requests_per_s,
            self.throughput_bps / 1e6,
            self.bytes_out
        )?;
        writeln!(
            f,
            "  latency µs  p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.1})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        writeln!(
            f,
            "  errors      refused {} reset {} timeout {} other {}\n  peak TIME_WAIT {}",
            self.errors.refused,
            self.errors.reset,
            self.errors.timeout,
            self.errors.other,
            self.peak_time_wait
        )?;
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoadConfig {
        LoadConfig {
            target: "198.18.0.2:80".parse().unwrap(),
            lp: Loop::Closed(4),
            requests_per_conn: 1,
            request_bytes: 64,
            http: false,
            close: CloseBy::Client,
            duration: Some(Duration::from_secs(1)),
            connections: None,
            timeout: Duration::from_secs(1),
            progress: false,
            hdr: None,
            queues: 1,
            busy_poll: false,
        }
    }

    #[test]
    fn loads_are_bounded_and_stay_in_the_benchmarking_range() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.target = "10.0.0.1:80".parse().unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("198.18.0.0/15"));
        let mut c = cfg();
        c.duration = None;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.close = CloseBy::Server;
        assert!(c.validate().unwrap_err().to_string().contains("--http"));
    }

    #[test]
    fn a_load_split_over_queues_keeps_its_totals() {
        let c = LoadConfig {
            lp: Loop::Closed(10),
            connections: Some(1001),
            queues: 3,
            progress: true,
            ..cfg()
        };
        let parts: Vec<_> = (0..3).map(|i| c.part(i, 3)).collect();
        let conc: Vec<u32> = parts
            .iter()
            .map(|p| match p.lp {
                Loop::Closed(n) => n,
                Loop::Open(_) => 0,
            })
            .collect();
        assert_eq!(conc, vec![4, 3, 3]);
        let conns: Vec<u64> = parts.iter().filter_map(|p| p.connections).collect();
        assert_eq!(conns, vec![334, 334, 333]);
        assert!(parts.iter().all(|p| !p.progress && p.queues == 1));
        let open = LoadConfig {
            lp: Loop::Open(900.0),
            ..c.clone()
        }
        .part(2, 3);
        assert_eq!(open.lp, Loop::Open(300.0));
        // Fewer connections kept busy than engines: refused with advice.
        let few = LoadConfig {
            lp: Loop::Closed(2),
            ..c
        };
        assert!(few.validate().unwrap_err().to_string().contains("--queues"));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn echo_and_http_responses_are_framed() {
        let c = cfg();
        assert_eq!(response_complete(&c, &[0u8; 63]), Ok(None));
        assert_eq!(response_complete(&c, &[0u8; 100]), Ok(Some(64)));
        let mut h = cfg();
        h.http = true;
        let r = http::response(10, true);
        assert_eq!(response_complete(&h, &r), Ok(Some(r.len())));
    }

    #[test]
    fn summary_percentiles_come_from_the_histogram() {
        let mut r = Recorder::new();
        for us in 1..=1000u64 {
            r.latency(Duration::from_micros(us));
        }
        r.connections = 1000;
        let s = r.summary("xstack", "198.18.0.2:80".parse().unwrap(), 2.0);
        assert_eq!(s.requests, 1000);
        assert!(
            (495..=505).contains(&s.latency_us.p50),
            "{:?}",
            s.latency_us
        );
        assert!(
            (985..=995).contains(&s.latency_us.p99),
            "{:?}",
            s.latency_us
        );
        assert_eq!(s.connections_per_s, 500.0);
    }
}
