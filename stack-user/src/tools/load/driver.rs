//! The xstack engine driver of `xstack load`: one engine and thread per
//! AF_XDP queue, connections driven on the sans-IO TCP API.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::*;
use crate::{
    apps::App,
    runtime::stack::{Stack, StackConfig},
    tcp::{ConnId, Event, TcpConfig, TcpError},
};

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

/// One client connection of the engine driver. The request in flight is
/// `requests[last_sent]`, of which `sent` bytes are written; its response
/// is taken as it arrives (`reply`), so reading and writing go on together
/// and a request bigger than the send buffer is written as ACKs free room
/// (Writable) while the echo of its start is read.
struct Conn {
    /// When the connection was started (connect latency origin).
    opened: Instant,
    /// When the current request was meant to start (latency origin).
    origin: Instant,
    /// Last progress (the connection started, or bytes moved either way):
    /// `--timeout` counts from here.
    progress: Instant,
    /// The handshake completed and the first request went out.
    connected: bool,
    done: u32,
    /// Bytes of the request in flight written so far.
    sent: usize,
    reply: Reply,
    /// Waiting for the server's FIN (`--close server`).
    awaiting_fin: bool,
    /// The request in flight is the connection's last.
    last_sent: bool,
}

/// Writes what fits of `conn`'s request; `Err` when the connection failed.
fn push(
    tcp: &mut crate::tcp::TcpEngine,
    c: ConnId,
    conn: &mut Conn,
    req: &[u8],
    rec: &mut Recorder,
) -> Result<(), TcpError> {
    while conn.sent < req.len() {
        match tcp.write(c, &req[conn.sent..]) {
            Ok(n) => {
                rec.bytes_out += n as u64;
                conn.sent += n;
                conn.progress = Instant::now();
            }
            // A short write armed Writable: the rest goes out then.
            Err(TcpError::WouldBlock) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the load on the xstack engine bound to `iface` with address `ip`,
/// one engine and thread per queue (`cfg.queues`); the rate, concurrency
/// and connection count are split between them.
///
/// The engine's `TcpConfig` is `tcp`; a generator wants `tcp_tw_reuse = 1`
/// so that 4-tuples in TIME_WAIT are reused after 1 s (with timestamps,
/// PAWS protects the new incarnation), as `xstack load` sets by default.
pub fn run_engine(iface: &str, ip: IpAddr, cfg: &LoadConfig, tcp: TcpConfig) -> Result<Summary> {
    cfg.validate()?;
    let (lo, hi) = tcp.ip_local_port_range;
    let queues = cfg.queues;
    // Bound before the interface is touched: a bad address fails first.
    let metrics = crate::runtime::metrics::bind_if(cfg.metrics)?;
    let capture = cfg
        .capture
        .as_ref()
        .map(crate::runtime::capture::Capture::shared)
        .transpose()?;
    let (ip4, ip6) = match ip {
        IpAddr::V4(a) => (a, Vec::new()),
        IpAddr::V6(a) => (Ipv4Addr::UNSPECIFIED, vec![a]),
    };
    let (_prog, stacks) = Stack::open_queues(&StackConfig {
        iface: iface.to_string(),
        ip: ip4,
        ip6,
        listen: vec![],
        client_ports: (lo..=hi).collect(),
        app: App::Discard,
        response_bytes: 0,
        tcp,
        xsk: Default::default(),
        queues: Some(queues),
        ..Default::default()
    })?;
    wait_for_start(cfg);
    let start = Instant::now();
    let window = cfg.duration.map(|d| (start + d, d));
    let mut rep = Reporter::new(cfg)?;
    let mut workers = Vec::new();
    for (i, mut st) in stacks.into_iter().enumerate() {
        st.set_capture(capture.clone());
        let part = cfg.part(i as u32, queues);
        let rec = Arc::new(Mutex::new(Recorder::new()));
        if let Ok(mut r) = rec.lock() {
            r.window = window;
        }
        let shared = rec.clone();
        let publish = metrics.is_some();
        let handle = std::thread::Builder::new()
            .name(format!("xstack-load-q{i}"))
            .spawn(move || {
                drive(&mut st, &part, &shared, start, publish);
                let e = st.engine_ref().stats();
                (st.steer_counts(), [e.rx_frames, e.tx_frames])
            })
            .context("spawning a load worker")?;
        workers.push((rec, handle));
    }
    let recs: Vec<_> = workers.iter().map(|(r, _)| r.clone()).collect();
    let _metrics = metrics
        .map(|m| m.serve(move || recorder::exposition(&recs, start)))
        .transpose()?;
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
    // What the last tick did not log.
    let mut tail = Recorder::new();
    for (rec, _) in &workers {
        if let Ok(mut r) = rec.lock() {
            let _ = tail.interval.add(&r.interval);
            r.interval.reset();
        }
    }
    rep.finish(&tail.interval);
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = Recorder::new();
    total.window = window;
    let mut per_queue = Vec::new();
    // The engines' rx_frames and tx_frames (what --pcap must hold).
    let mut engine_frames = [0u64; 2];
    for (q, (rec, handle)) in workers.into_iter().enumerate() {
        let (steer, frames) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("load worker {q} panicked"))?;
        engine_frames[0] += frames[0];
        engine_frames[1] += frames[1];
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
    if let Some(Ok(mut c)) = capture.as_ref().map(|c| c.lock()) {
        c.close();
        log::info!(
            "--pcap {}: {} frames received and {} sent written (engines: rx_frames {} tx_frames {}){}",
            c.path().display(),
            c.frames[0],
            c.frames[1],
            engine_frames[0],
            engine_frames[1],
            if c.skipped > 0 {
                format!(", {} not written (--pcap-max-bytes reached)", c.skipped)
            } else {
                String::new()
            }
        );
    }
    let mut summary = total.summary("xstack", cfg.target, elapsed);
    summary.queues = queues;
    summary.per_queue = per_queue;
    Ok(summary)
}

/// One queue's share of the load, on its own thread: starts connections,
/// runs their requests, counts into `shared`.
///
/// With `publish` (`--metrics`), the engine's counters are copied into the
/// recorder with the 10 ms housekeeping, for the scrape to read.
fn drive(
    st: &mut Stack,
    cfg: &LoadConfig,
    shared: &Mutex<Recorder>,
    start: Instant,
    publish: bool,
) {
    let ip = st
        .addr_for(cfg.target.ip())
        .unwrap_or(IpAddr::V4(st.addr()));
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
        if stop_at.is_some_and(|t| now > t + drain_bound(cfg)) {
            // The run ends here whatever the server does: whatever is
            // still open has timed out.
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
                .connect(t, ip, 0, cfg.target.ip(), cfg.target.port());
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
                            opened: now,
                            origin,
                            progress: now,
                            connected: false,
                            done: 0,
                            sent: 0,
                            reply: Reply::default(),
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
            if kind == 0 && !conn.connected {
                // Connected: first request; latency origin stays the intended start.
                conn.connected = true;
                conn.progress = Instant::now();
                rec.connected(conn.progress.duration_since(conn.opened));
                conn.last_sent = cfg.requests_per_conn == 1;
                conn.sent = 0;
                if matches!(cfg.lp, Loop::Closed(_)) {
                    conn.origin = Instant::now();
                }
            }
            // On every event: push what fits of the request, then drain
            // what came back, so neither direction waits for the other.
            let mut failed = None;
            if conn.connected && !conn.awaiting_fin {
                if let Err(e) = push(tcp, c, conn, &requests[usize::from(conn.last_sent)], rec) {
                    failed = Some(format!("write: {e}"));
                }
            }
            let mut finished = false;
            while failed.is_none() && !finished {
                let n = match tcp.read(c, &mut buf) {
                    Ok(0) if conn.awaiting_fin => {
                        let _ = tcp.close(tcp_now, c);
                        rec.conn_done();
                        finished = true;
                        break;
                    }
                    Ok(0) => {
                        failed = Some("the server closed before its response".into());
                        break;
                    }
                    Ok(n) => n,
                    Err(TcpError::WouldBlock) => break,
                    Err(TcpError::ConnectionReset) => {
                        rec.errors.reset += 1;
                        let _ = tcp.close(tcp_now, c);
                        finished = true;
                        break;
                    }
                    Err(e) => {
                        failed = Some(format!("read: {e}"));
                        break;
                    }
                };
                rec.bytes_received(n as u64);
                conn.progress = Instant::now();
                if conn.awaiting_fin {
                    // Bytes after the last response: not ours to check.
                    continue;
                }
                let req = &requests[usize::from(conn.last_sent)];
                match conn.reply.feed(cfg, req, conn.sent, &buf[..n]) {
                    Fed::Partial => continue,
                    Fed::Bad(why) => {
                        failed = Some(why);
                        break;
                    }
                    Fed::Complete => {}
                }
                rec.latency(conn.origin.elapsed());
                conn.done += 1;
                // Past the deadline a connection ends after its current
                // request (with --close server, after one more that asks
                // the server to close).
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
                    continue;
                }
                // The next request.
                conn.last_sent = conn.done + 1 == cfg.requests_per_conn || over;
                conn.sent = 0;
                conn.origin = Instant::now();
                if let Err(e) = push(tcp, c, conn, &requests[usize::from(conn.last_sent)], rec) {
                    failed = Some(format!("write: {e}"));
                }
            }
            if let Some(why) = failed {
                rec.errors.other += 1;
                rec.first_error.get_or_insert(why);
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
                .filter(|(_, k)| now.duration_since(k.progress) > cfg.timeout)
                .map(|(c, _)| *c)
                .collect();
            for c in expired {
                rec.errors.timeout += 1;
                let _ = st.engine().tcp().abort(c);
                conns.remove(&c);
            }
            rec.time_wait = st.engine().tcp_ref().state_counts().time_wait as u64;
            if publish {
                let engine = st.engine_ref();
                rec.engine = Some((engine.stats().clone(), engine.tcp_stats().iter().collect()));
            }
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
