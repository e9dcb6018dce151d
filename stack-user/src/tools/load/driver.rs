//! The xstack engine driver of `xstack load`: one engine and thread per
//! AF_XDP queue, connections driven on the sans-IO TCP API.

use std::{
    collections::{HashMap, VecDeque},
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
    /// When the current request was meant to start (latency origin).
    origin: Instant,
    /// When `connect` was called (connect latency origin).
    opened: Instant,
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
    /// Idle between a response and the next request (`--think-time`),
    /// until `think_until`: no step is in progress, `--timeout` does not
    /// run.
    thinking: bool,
    think_until: Instant,
    /// Has an entry in the timeout queue.
    watched: bool,
}

impl Conn {
    fn new(origin: Instant, now: Instant) -> Conn {
        Conn {
            origin,
            opened: now,
            progress: now,
            connected: false,
            done: 0,
            sent: 0,
            reply: Reply::default(),
            awaiting_fin: false,
            last_sent: false,
            thinking: false,
            think_until: now,
            watched: true,
        }
    }
}

/// The local addresses of a load (`--ip` prefix or list), taken in turn:
/// each new connection gets the next address and the engine picks a free
/// ephemeral port of it (`ip_local_port_range`, `--ports`), so
/// connections spread over addresses × ports. An address whose every port
/// is busy (or in TIME_WAIT too young to reuse) is skipped; the engine
/// never hands out a 4-tuple that is live, and reuses one in TIME_WAIT
/// only as `tcp_tw_reuse` allows.
pub(super) struct Sources {
    addrs: Vec<IpAddr>,
    next: usize,
}

impl Sources {
    pub(super) fn new(addrs: Vec<IpAddr>) -> Sources {
        Sources { addrs, next: 0 }
    }

    /// Opens a connection from the next address that has a free port;
    /// `open(addr)` is the engine's `connect` from `addr` with port 0.
    /// `AddrInUse` when no address has one.
    pub(super) fn open<T>(
        &mut self,
        mut open: impl FnMut(IpAddr) -> Result<T, TcpError>,
    ) -> Result<T, TcpError> {
        let n = self.addrs.len();
        for _ in 0..n {
            let a = self.addrs[self.next % n];
            self.next = (self.next + 1) % n;
            match open(a) {
                Err(TcpError::AddrInUse) => continue,
                r => return r,
            }
        }
        Err(TcpError::AddrInUse)
    }
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

/// Runs the load on the xstack engine bound to `iface` with the local
/// addresses `ips` (the first is the primary one: ARP requests come from
/// it), one engine and thread per queue (`cfg.queues`); the rate,
/// concurrency and connection count are split between them, and every
/// engine uses every address.
///
/// The AF_XDP sockets are made as `xsk` says (bigger rings ride out
/// longer pauses of a busy machine without drops). The engine's
/// `TcpConfig` is `tcp`; a generator wants `tcp_tw_reuse = 1`
/// so that 4-tuples in TIME_WAIT are reused after 1 s (with timestamps,
/// PAWS protects the new incarnation), as `xstack load` sets by default.
pub fn run_engine(
    iface: &str,
    ips: &[IpAddr],
    cfg: &LoadConfig,
    tcp: TcpConfig,
    xsk: crate::datapath::xsk::XskConfig,
) -> Result<Summary> {
    cfg.validate()?;
    let Some(first) = ips.first() else {
        anyhow::bail!("--ip names no address");
    };
    if let Some(other) = ips.iter().find(|a| a.is_ipv4() != cfg.target.is_ipv4()) {
        anyhow::bail!(
            "--ip {other} and --target {} are of different address families; give --ip addresses of the target's family",
            cfg.target
        );
    }
    let (lo, hi) = tcp.ip_local_port_range;
    let queues = cfg.queues;
    // Bound before the interface is touched: a bad address fails first.
    let metrics = crate::runtime::metrics::bind_if(cfg.metrics)?;
    let capture = cfg
        .capture
        .as_ref()
        .map(crate::runtime::capture::Capture::shared)
        .transpose()?;
    // One family, the target's: IPv4 ones are `ip` and `extra_ips`,
    // IPv6 ones all go in `ip6`.
    let (ip4, extra_ips, ip6) = match first {
        IpAddr::V4(a) => (
            *a,
            ips[1..]
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            Vec::new(),
        ),
        IpAddr::V6(_) => (
            Ipv4Addr::UNSPECIFIED,
            Vec::new(),
            ips.iter()
                .filter_map(|a| match a {
                    IpAddr::V6(a) => Some(*a),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        ),
    };
    let (_prog, mut stacks) = Stack::open_queues(&StackConfig {
        iface: iface.to_string(),
        ip: ip4,
        extra_ips,
        ip6,
        listen: vec![],
        client_ports: (lo..=hi).collect(),
        app: App::Discard,
        response_bytes: 0,
        tcp,
        xsk,
        queues: Some(queues),
        ..Default::default()
    })?;
    // On a NIC with RSS, each engine picks ports whose replies come back
    // to its own queue; else the software mix and hand-offs.
    let sharding = super::rss::sharding(iface, queues, ips, cfg.target, (lo, hi))?;
    for st in &mut stacks {
        st.set_sharding(sharding.clone());
    }
    let heap_baseline = crate::runtime::sys::memory().heap_in_use_bytes;
    let mut heap_at_peak = heap_baseline;
    let mut est_at_heap = 0u64;
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
        // Each engine starts at another address, so that their first
        // connections spread too.
        let mut addrs = ips.to_vec();
        addrs.rotate_left(i % ips.len());
        let publish = metrics.is_some();
        let handle = std::thread::Builder::new()
            .name(format!("xstack-load-q{i}"))
            .spawn(move || {
                drive(&mut st, &part, Sources::new(addrs), &shared, start, publish);
                let e = st.engine_ref().stats();
                (
                    st.steer_counts(),
                    st.kernel_stats().rx_ring_full,
                    [e.rx_frames, e.tx_frames],
                )
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
    let mut peak_est = 0u64;
    while !workers.iter().all(|(_, h)| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let mut est = 0;
        for (rec, _) in &workers {
            if let Ok(r) = rec.lock() {
                est += r.established;
            }
        }
        if est as u64 > peak_est || (est as u64 == peak_est && rep.due()) {
            peak_est = est as u64;
            heap_at_peak = crate::runtime::sys::memory().heap_in_use_bytes;
            est_at_heap = peak_est;
        }
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
    // Full concurrency: when the last engine had its whole share.
    let mut full_at = Some(Duration::ZERO);
    // The engines' rx_frames and tx_frames (what --pcap must hold).
    let mut engine_frames = [0u64; 2];
    for (q, (rec, handle)) in workers.into_iter().enumerate() {
        let (steer, rx_ring_full, frames) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("load worker {q} panicked"))?;
        engine_frames[0] += frames[0];
        engine_frames[1] += frames[1];
        let r = rec
            .lock()
            .map_err(|_| anyhow::anyhow!("load worker {q} poisoned its recorder"))?;
        total.add(&r);
        full_at = full_at.zip(r.full_at).map(|(a, b)| a.max(b));
        peak_est = peak_est.max(r.peak_established);
        per_queue.push(QueueSummary {
            queue: q as u32,
            connections: r.connections,
            requests: r.requests,
            errors: r.errors.total(),
            handed_out: steer.handed_out,
            handed_in: steer.handed_in,
            handoff_dropped: steer.handoff_dropped,
            rx_ring_full,
        });
    }
    total.peak_tw = total.peak_tw.max(peak_tw);
    total.full_at = if matches!(cfg.lp, Loop::Closed(_)) {
        full_at
    } else {
        None
    };
    total.peak_established = peak_est;
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
    summary.heap_baseline_bytes = heap_baseline;
    summary.heap_at_peak_bytes = heap_at_peak;
    summary.heap_bytes_per_connection = heap_at_peak
        .saturating_sub(heap_baseline)
        .checked_div(est_at_heap)
        .unwrap_or(0);
    summary.queues = queues;
    summary.per_queue = per_queue;
    Ok(summary)
}

/// Removes `c` from the driver's map, keeping the established count.
fn forget(conns: &mut ConnMap, c: ConnId, established: &mut usize) {
    if conns.remove(&c).is_some_and(|k| k.connected) {
        *established = established.saturating_sub(1);
    }
}

/// Ends `c` as `--close` says after its last response: `true` when the
/// connection is done (closed or reset), `false` when it now waits for the
/// server's FIN.
fn end_conn(
    tcp: &mut crate::tcp::TcpEngine,
    now: crate::time::Instant,
    c: ConnId,
    conn: &mut Conn,
    close: CloseBy,
    rec: &mut Recorder,
) -> bool {
    match close {
        CloseBy::Client => {
            let _ = tcp.close(now, c);
            rec.conn_done();
            true
        }
        CloseBy::Rst => {
            let _ = tcp.abort(c);
            rec.conn_done();
            true
        }
        CloseBy::Server => {
            conn.awaiting_fin = true;
            false
        }
    }
}

/// One queue's share of the load, on its own thread: starts connections
/// from `sources` (paced in closed loop), runs their requests (with
/// `--think-time` between them), counts into `shared`.
///
/// Nothing here walks every connection while the run goes on: thinking
/// connections wait in a FIFO of wake times and open steps in a FIFO of
/// timeout checks (each in the order pushed, as the pause and the timeout
/// are fixed), so a million idle connections cost nothing per round.
///
/// With `publish` (`--metrics`), the engine's counters are copied into the
/// recorder with the 10 ms housekeeping, for the scrape to read.
fn drive(
    st: &mut Stack,
    cfg: &LoadConfig,
    mut sources: Sources,
    shared: &Mutex<Recorder>,
    start: Instant,
    publish: bool,
) {
    let mut conns = ConnMap::default();
    // The two requests (the last one may ask the server to close), built once.
    let requests = [request_bytes(cfg, false), request_bytes(cfg, true)];
    let stop_at = cfg.duration.map(|d| start + d);
    let mut started: u64 = 0;
    let mut next_open = start;
    let target = match cfg.lp {
        Loop::Closed(n) => n,
        Loop::Open(_) => 0,
    };
    let mut pacer = super::pace::Pacer::new(target, cfg.connect_rate, cfg.ramp);
    // (wake time, connection): thinking connections, in wake order.
    let mut think: VecDeque<(Instant, ConnId)> = VecDeque::new();
    // (check time, connection): open steps, to time out.
    let mut watch: VecDeque<(Instant, ConnId)> = VecDeque::new();
    let mut established: usize = 0;
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
            for (c, k) in conns.drain() {
                if k.connected {
                    rec.errors.timeout += 1;
                } else {
                    rec.errors.connect_timeout += 1;
                }
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
                Loop::Closed(_) => {
                    let n = pacer.allowed(now.duration_since(start), conns.len());
                    to_start.resize(n.min(4096), now);
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
            let (raddr, rport) = (cfg.target.ip(), cfg.target.port());
            let engine = st.engine();
            let attempt = sources.open(|a| engine.connect(t, a, 0, raddr, rport));
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
            pacer.took();
            match attempt {
                Ok(c) => {
                    conns.insert(c, Conn::new(origin, now));
                    watch.push_back((now + cfg.timeout, c));
                }
                Err(e) => {
                    rec.errors.other += 1;
                    rec.first_error
                        .get_or_insert_with(|| format!("connect: {e}"));
                }
            }
        }
        // Thinking connections whose pause is over: their next request.
        while let Some(&(at, c)) = think.front() {
            if at > now {
                break;
            }
            think.pop_front();
            let Some(conn) = conns.get_mut(&c) else {
                continue;
            };
            if !conn.thinking || conn.think_until > now {
                continue;
            }
            busy = true;
            conn.thinking = false;
            let over = stop_at.is_some_and(|t| now >= t);
            let tcp_now = st.now();
            let tcp = st.engine().tcp();
            if over && cfg.close != CloseBy::Server {
                if end_conn(tcp, tcp_now, c, conn, cfg.close, rec) {
                    forget(&mut conns, c, &mut established);
                }
                continue;
            }
            conn.last_sent = conn.done + 1 == cfg.requests_per_conn || over;
            conn.sent = 0;
            conn.origin = now;
            conn.progress = now;
            if let Err(e) = push(tcp, c, conn, &requests[usize::from(conn.last_sent)], rec) {
                rec.errors.other += 1;
                rec.first_error.get_or_insert(format!("write: {e}"));
                let _ = tcp.abort(c);
                forget(&mut conns, c, &mut established);
                continue;
            }
            if !conn.watched {
                conn.watched = true;
                watch.push_back((now + cfg.timeout, c));
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
            if kind >= 2 {
                match kind {
                    2 => rec.errors.reset += 1,
                    // SYN retransmissions exhausted (tcp_syn_retries), or
                    // data ones (tcp_retries2).
                    3 if !conn.connected => rec.errors.connect_timeout += 1,
                    3 => rec.errors.timeout += 1,
                    4 => rec.errors.refused += 1,
                    _ => rec.errors.other += 1,
                }
                forget(&mut conns, c, &mut established);
                // Give the handle back so the engine frees the connection.
                let t = st.now();
                let _ = st.engine().tcp().close(t, c);
                continue;
            }
            let tcp_now = st.now();
            let tcp = st.engine().tcp();
            if kind == 0 && !conn.connected {
                // Connected: first request; latency origin stays the intended start.
                let t = Instant::now();
                conn.connected = true;
                rec.connected(t.duration_since(conn.opened));
                established += 1;
                if rec.full_at.is_none() && target > 0 && established >= target as usize {
                    rec.full_at = Some(t.duration_since(start));
                }
                conn.progress = t;
                conn.last_sent = cfg.requests_per_conn == 1;
                conn.sent = 0;
                if matches!(cfg.lp, Loop::Closed(_)) {
                    conn.origin = t;
                }
            }
            // On every event: push what fits of the request, then drain
            // what came back, so neither direction waits for the other.
            let mut failed = None;
            if conn.connected && !conn.awaiting_fin && !conn.thinking {
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
                if conn.thinking {
                    failed = Some("bytes from the server with no request in flight".into());
                    break;
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
                let t = Instant::now();
                let over = stop_at.is_some_and(|s| t >= s);
                if conn.last_sent || (over && cfg.close != CloseBy::Server) {
                    finished = end_conn(tcp, tcp_now, c, conn, cfg.close, rec);
                    continue;
                }
                if let Some(pause) = cfg.think_time.filter(|_| !over) {
                    // Idle until the next request.
                    conn.thinking = true;
                    conn.think_until = t + pause;
                    think.push_back((conn.think_until, c));
                    break;
                }
                // The next request.
                conn.last_sent = conn.done + 1 == cfg.requests_per_conn || over;
                conn.sent = 0;
                conn.origin = t;
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
                forget(&mut conns, c, &mut established);
            }
        }
        st.transmit();
        // Open steps without progress for --timeout (a handshake, a
        // request or its response, the server's FIN).
        let now = Instant::now();
        while let Some(&(at, c)) = watch.front() {
            if at > now {
                break;
            }
            watch.pop_front();
            let Some(conn) = conns.get_mut(&c) else {
                continue;
            };
            if conn.thinking {
                conn.watched = false;
                continue;
            }
            let due = conn.progress + cfg.timeout;
            if due > now {
                watch.push_back((due, c));
                continue;
            }
            if conn.connected {
                rec.errors.timeout += 1;
            } else {
                rec.errors.connect_timeout += 1;
            }
            let _ = st.engine().tcp().abort(c);
            forget(&mut conns, c, &mut established);
        }
        if last_check.elapsed() >= Duration::from_millis(10) {
            last_check = Instant::now();
            let counts = st.engine().tcp_ref().state_counts();
            rec.time_wait = counts.time_wait as u64;
            if publish {
                let engine = st.engine_ref();
                rec.engine = Some((engine.stats().clone(), engine.tcp_stats().iter().collect()));
            }
            rec.peak_tw = rec.peak_tw.max(rec.time_wait);
            rec.closing = counts.fin_wait1
                + counts.fin_wait2
                + counts.closing
                + counts.last_ack
                + counts.close_wait;
            rec.active = conns.len();
            rec.established = established;
            rec.opening = conns.len() - established.min(conns.len());
            rec.peak_established = rec.peak_established.max(established as u64);
        }
        drop(guard);
        idle = if busy { 0 } else { idle.saturating_add(1) };
        if !cfg.busy_poll && idle > 64 {
            // Nothing to do: sleep until a frame, a TCP timer, the next
            // scheduled or paced start, a pause's end or the 10 ms
            // housekeeping.
            let mut max = Duration::from_millis(10);
            let now = Instant::now();
            if let Loop::Open(_) = cfg.lp {
                max = max.min(next_open.saturating_duration_since(now));
            }
            if let Some(t) = pacer.next_token() {
                max = max.min((start + t).saturating_duration_since(now));
            }
            if let Some(&(t, _)) = think.front() {
                max = max.min(t.saturating_duration_since(now));
            }
            st.wait(max);
        }
    }
    // Let the last FINs, ACKs and RSTs leave before the socket closes, and
    // the closes finish (a FIN lost at a busy server is retransmitted):
    // at least 200 ms, at most a second more while connections are
    // still closing.
    let least = Instant::now() + Duration::from_millis(200);
    let most = least + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        let c = st.engine().tcp_ref().state_counts();
        let closing = c.fin_wait1 + c.closing + c.last_ack;
        if now >= most || (now >= least && closing == 0) {
            break;
        }
        st.poll();
        while st.engine().poll_event().is_some() {}
        st.wait(Duration::from_millis(1));
    }
    let counts = st.engine().tcp_ref().state_counts();
    let reused = st.engine_ref().tcp_stats().time_wait_recycled;
    if let Ok(mut r) = shared.lock() {
        r.peak_tw = r.peak_tw.max(counts.time_wait_high_water as u64);
        r.tw_reused = reused;
        r.active = 0;
        r.established = 0;
        r.opening = 0;
        r.time_wait = counts.time_wait as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::tcp::TcpEngine;
    use crate::time::Instant as TcpInstant;

    fn addrs(n: u8) -> Vec<IpAddr> {
        (1..=n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)))
            .collect()
    }

    fn addrs6(n: u8) -> Vec<IpAddr> {
        (1..=n)
            .map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, i.into())))
            .collect()
    }

    #[test]
    fn address_and_port_choice_covers_the_prefix_and_never_repeats_a_live_tuple() {
        let server4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let server6: IpAddr = "2001:2::2".parse().unwrap();
        for (sources, server) in [(addrs(4), server4), (addrs6(4), server6)] {
            covers_the_prefix(sources, server);
        }
    }

    fn covers_the_prefix(sources: Vec<IpAddr>, server: IpAddr) {
        let mut tcp = TcpEngine::new(
            TcpConfig {
                ip_local_port_range: (40000, 40009),
                ..Default::default()
            },
            [7; 16],
        );
        let now = TcpInstant::ZERO;
        let mut src = Sources::new(sources);
        let mut live = HashMap::new();
        // 4 addresses × 10 ports: exactly 40 connections, then none.
        loop {
            match src.open(|a| tcp.connect(now, a, 0, server, 80)) {
                Ok(c) => {
                    let t = tcp.tcb(c).unwrap().tuple;
                    assert!(live.insert(t, c).is_none(), "{t:?} handed out twice");
                }
                Err(e) => {
                    assert_eq!(e, TcpError::AddrInUse);
                    break;
                }
            }
            assert!(live.len() <= 40);
        }
        assert_eq!(live.len(), 40);
        let mut per_addr: HashMap<IpAddr, HashSet<u16>> = HashMap::new();
        for t in live.keys() {
            assert!((40000..=40009).contains(&t.local_port));
            assert_eq!(t.local_addr.is_ipv4(), server.is_ipv4());
            per_addr
                .entry(t.local_addr)
                .or_default()
                .insert(t.local_port);
        }
        assert_eq!(per_addr.len(), 4, "every address is used");
        assert!(per_addr.values().all(|p| p.len() == 10), "{per_addr:?}");
        // A tuple freed (reset: no TIME_WAIT) is the one handed out next.
        let (&t, &c) = live.iter().next().unwrap();
        tcp.abort(c).unwrap();
        let c2 = src.open(|a| tcp.connect(now, a, 0, server, 80)).unwrap();
        assert_eq!(tcp.tcb(c2).unwrap().tuple, t);
        assert_eq!(
            src.open(|a| tcp.connect(now, a, 0, server, 80)),
            Err(TcpError::AddrInUse)
        );
    }

    #[test]
    fn connections_spread_over_the_addresses_in_turn() {
        let server4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let server6: IpAddr = "2001:2::2".parse().unwrap();
        for (sources, server) in [(addrs(62), server4), (addrs6(62), server6)] {
            let mut tcp = TcpEngine::new(TcpConfig::default(), [9; 16]);
            let mut src = Sources::new(sources);
            let mut count: HashMap<IpAddr, u32> = HashMap::new();
            for _ in 0..62 * 5 {
                let c = src
                    .open(|a| tcp.connect(TcpInstant::ZERO, a, 0, server, 80))
                    .unwrap();
                *count
                    .entry(tcp.tcb(c).unwrap().tuple.local_addr)
                    .or_default() += 1;
            }
            assert_eq!(count.len(), 62);
            assert!(count.values().all(|&n| n == 5), "{count:?}");
        }
    }
}
