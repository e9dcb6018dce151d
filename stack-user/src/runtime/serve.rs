//! `xstack serve`: the bring-up ([`super::stack::open_on`]) on every rx queue
//! behind serve's own checks and instance locks, one queue worker per
//! [`Stack`] on its own thread (the stack's round plus SYN cookie secrets,
//! warnings and published counters), counters on the control socket, and a
//! clean detach on SIGINT/SIGTERM or when `--duration` ends.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::{
    datapath::xdp::XdpProgram,
    datapath::xsk::KernelStats,
    iface::IfaceStats,
    runtime::control::ControlServer,
    runtime::stack::{self, apply_fastpath, Bringup, Stack, StackConfig},
    runtime::sys::{self, InstanceLock, Signals},
};

/// What `xstack serve` runs: the bring-up's settings plus serve's own.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Interface, address, ports (`listen`; `client_ports` stays empty),
    /// application, TCP, AF_XDP, queues, XDP mode, map pinning and the fast
    /// path (`Some`: serve always writes its settings to the maps).
    pub stack: StackConfig,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Never sleep in poll(); spin on the rings.
    pub busy_poll: bool,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Record the frames the engines receive and send (`--pcap`).
    pub capture: Option<crate::runtime::capture::CaptureConfig>,
}

/// Counters of one queue as published by its worker.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueStats {
    /// Queue id.
    pub queue: u32,
    /// Interface counters.
    pub engine: IfaceStats,
    /// TCP counters, by name.
    pub tcp: std::collections::BTreeMap<&'static str, u64>,
    /// Live TCP connections.
    pub tcp_connections: usize,
    /// Connections per state, like `ss -s`.
    pub states: serde_json::Value,
    /// Listen queues and CLOSE_WAIT per listener.
    pub listeners: Vec<serde_json::Value>,
    /// Kernel AF_XDP counters.
    pub kernel: KernelStats,
    /// Frames handed between queue workers (see `crate::datapath::steer`).
    pub steer: crate::datapath::steer::SteerCounts,
    /// The `xstack ss` view of the queue's connections, filled only when
    /// asked for (see [`SocketsRequest`]).
    #[serde(skip)]
    pub sockets: Vec<crate::tcp::tcb::TcpInfo>,
    /// The request that `sockets` answers.
    #[serde(skip)]
    pub sockets_gen: u64,
}

/// Most connections one queue lists for `xstack ss` (a walk over the
/// control blocks, done by the worker between rounds).
pub const SS_LIMIT: usize = 100_000;

/// `xstack ss` asks every worker for its connections by bumping this
/// generation; a worker sees it at its next round (within its 10 ms idle
/// wait) and answers in its [`QueueStats`]. One relaxed load per round.
#[derive(Default)]
pub struct SocketsRequest(std::sync::atomic::AtomicU64);

struct Worker {
    stats: Arc<Mutex<QueueStats>>,
    handle: JoinHandle<()>,
}

/// The SYN cookie secrets in force, shared by the XDP program (its map) and
/// every queue's engine, so that either side validates the other's cookies.
#[derive(Default)]
pub struct SharedSecrets {
    generation: std::sync::atomic::AtomicU64,
    secrets: Mutex<stack_ebpf::cookie::Secrets>,
}

impl SharedSecrets {
    fn publish(&self, s: stack_ebpf::cookie::Secrets) {
        if let Ok(mut g) = self.secrets.lock() {
            *g = s;
        }
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A queue worker: the stack's round ([`Stack::round_at`]) plus what is
/// serve's own — the SYN cookie secrets and clock, the engine's warnings,
/// counters published for `xstack stats`, and sleeping when idle.
fn worker_loop(
    mut stack: Stack,
    stats: Arc<Mutex<QueueStats>>,
    stop: Arc<AtomicBool>,
    busy_poll: bool,
    secrets: Arc<SharedSecrets>,
    ss: Arc<SocketsRequest>,
) {
    let mut idle = 0u32;
    let mut ss_seen = 0u64;
    let mut secrets_seen = u64::MAX;
    let mut last_publish = Instant::now();
    let publish = |stack: &Stack, stats: &Mutex<QueueStats>| {
        if let Ok(mut s) = stats.lock() {
            let engine = stack.engine_ref();
            s.steer = stack.steer_counts();
            s.engine = engine.stats().clone();
            s.kernel = stack.kernel_stats();
            s.tcp = engine.tcp_stats().iter().collect();
            s.tcp_connections = engine.tcp_connections();
            let c = engine.tcp_ref().state_counts();
            s.states = json!({
                "ESTABLISHED": c.established, "SYN_SENT": c.syn_sent, "SYN_RECV": c.syn_recv,
                "FIN_WAIT1": c.fin_wait1, "FIN_WAIT2": c.fin_wait2, "TIME_WAIT": c.time_wait,
                "CLOSE_WAIT": c.close_wait, "LAST_ACK": c.last_ack, "CLOSING": c.closing,
                "LISTEN": c.listen, "time_wait_max": c.time_wait_max,
                "time_wait_high_water": c.time_wait_high_water,
            });
            s.listeners = engine
                .tcp_ref()
                .listener_stats(stack.now())
                .iter()
                .map(|l| {
                    json!({
                        "listen": format!("{}:{}", l.addr, l.port),
                        "syn_queue": l.syn_queue, "syn_queue_max": l.syn_queue_max,
                        "accept_queue": l.accept_queue, "accept_queue_max": l.accept_queue_max,
                        "close_wait": l.close_wait,
                        "oldest_close_wait_s": l.oldest_close_wait.map(|d| d.as_secs_f64()),
                    })
                })
                .collect();
        }
    };
    // The engine's cookies use the XDP program's clock: minutes of CLOCK_MONOTONIC.
    let offset = stack::monotonic_us().saturating_sub(stack.now().0);
    stack.engine().tcp().set_cookie_clock_offset(offset);
    while !stop.load(Ordering::Relaxed) {
        let g = secrets.generation.load(Ordering::Acquire);
        if g != secrets_seen {
            if let Ok(s) = secrets.secrets.lock() {
                stack.engine().tcp().set_cookie_secrets(*s);
            }
            secrets_seen = g;
        }
        // One clock read per round: the spinning loop read it twice and
        // clock_gettime was the top symbol of the server's profile.
        let wall = Instant::now();
        let n = stack.round_at(stack.clock_at(wall));
        if n == 0 {
            idle += 1;
            if !busy_poll && idle > 256 {
                // Sleep until a packet arrives (from the wire or another
                // queue's worker) or the next TCP timer.
                stack.wait(Duration::from_millis(10));
            }
        } else {
            idle = 0;
        }
        let want = ss.0.load(Ordering::Relaxed);
        if want != ss_seen {
            ss_seen = want;
            let list = stack.engine_ref().tcp_ref().sockets(stack.now(), SS_LIMIT);
            if let Ok(mut s) = stats.lock() {
                s.sockets = list;
                s.sockets_gen = want;
            }
        }
        // Publish for `xstack stats` at most every 50 ms (it builds maps: not
        // something to do per iteration of a busy loop), and once on going idle.
        if idle == 257 || wall.duration_since(last_publish) >= Duration::from_millis(50) {
            publish(&stack, &stats);
            last_publish = wall;
        }
    }
    // Let queued replies leave before the socket closes.
    stack.drain_tx(Duration::from_millis(200));
    publish(&stack, &stats);
}

/// Runs the stack until a signal or the duration ends; returns the final
/// counters as JSON (also what `xstack stats --json` shows while running).
pub fn run(config: ServeConfig) -> Result<serde_json::Value> {
    let ServeConfig {
        stack: mut config,
        duration,
        busy_poll,
        metrics,
        capture,
    } = config;
    // Serve always writes its fast-path settings (the defaults if none given).
    config.fastpath.get_or_insert_with(Default::default);
    let signals = Signals::block();
    sys::check_privileges("xstack serve")?;
    let iface = sys::interface(&config.iface)?;
    if config.listen.is_empty() {
        bail!("no TCP port given; pass --port P[,P...]");
    }
    // Removed when dropped: at the end of this function, on every return.
    let iface_lock = InstanceLock::interface(&iface.name)?;
    let metrics = crate::runtime::metrics::bind_if(metrics)?;
    // Created before the interface is touched: a bad path fails first.
    let capture = capture
        .as_ref()
        .map(crate::runtime::capture::Capture::shared)
        .transpose()?;
    // Locked by its first address: the IPv4 one, else the first IPv6 one.
    let addrs = config.addresses();
    let Some(first) = addrs.first().copied() else {
        bail!("no address given; pass --ip A[,A...] (IPv4 and/or IPv6)");
    };
    let addr_lock = InstanceLock::address(first)?;
    let Bringup {
        prog,
        stacks,
        iface,
        xdp_mode,
        xsk_mode,
        fastpath,
    } = stack::open_on(iface, &config)?;
    let queues = stacks.len() as u32;
    let fastpath = fastpath.unwrap_or_default();

    let secrets = Arc::new(SharedSecrets::default());
    secrets.publish(prog.secrets()?);
    let stop = Arc::new(AtomicBool::new(false));
    let ss = Arc::new(SocketsRequest::default());
    let mut workers = Vec::new();
    for mut stack in stacks {
        stack.set_capture(capture.clone());
        let q = stack.queue();
        let stats = Arc::new(Mutex::new(QueueStats {
            queue: q,
            ..Default::default()
        }));
        let (st, sp, busy, sec) = (stats.clone(), stop.clone(), busy_poll, secrets.clone());
        let ssr = ss.clone();
        let handle = std::thread::Builder::new()
            .name(format!("xstack-q{q}"))
            .spawn(move || worker_loop(stack, st, sp, busy, sec, ssr))
            .context("spawning a queue worker")?;
        workers.push(Worker { stats, handle });
    }

    let prog = Arc::new(Mutex::new(prog));
    let started = Instant::now();
    let info = json!({
        "pid": std::process::id(),
        "iface": iface.name,
        "ip": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
        "ports": config.listen,
        "app": config.app,
        "queues": queues,
        "xdp_mode": xdp_mode,
        "xsk_mode": xsk_mode,
    });
    let queue_stats: Vec<_> = workers.iter().map(|w| w.stats.clone()).collect();
    let metrics_queues = queue_stats.clone();
    // Times the unknown-segment filter armed, for `xstack stats`.
    let filter_arms = Arc::new(AtomicU64::new(0));
    let snapshot = {
        let prog = prog.clone();
        let info = info.clone();
        let arms = filter_arms.clone();
        move || snapshot(&info, &prog, &queue_stats, queues, started, &arms)
    };
    let settings = Arc::new(Mutex::new(fastpath.clone()));
    let set = {
        let prog = prog.clone();
        let settings = settings.clone();
        let queue_stats: Vec<_> = workers.iter().map(|w| w.stats.clone()).collect();
        let ss = ss.clone();
        move |line: &str| match line.strip_prefix("set ") {
            Some(args) => set_command(&prog, &settings, args),
            None if line == "sockets" => sockets_command(&ss, &queue_stats),
            None => {
                json!({ "error": format!("unknown command {line:?}; try \"stats\", \"sockets\" or \"set key=value\"") })
            }
        }
    };
    let control = ControlServer::start_with(&iface.name, snapshot.clone(), set)?;
    log::info!("control socket {} (mode 0600)", control.path().display());
    // Read on scrape: the copies the workers publish, never the workers.
    let metrics = {
        let snapshot = snapshot.clone();
        metrics
            .map(|m| {
                m.serve(move || {
                    let queues: Vec<QueueStats> = metrics_queues
                        .iter()
                        .filter_map(|s| s.lock().ok().map(|s| s.clone()))
                        .collect();
                    crate::runtime::metrics::serve_exposition(&snapshot(), &queues)
                })
            })
            .transpose()?
    };
    // Logged only now, so that an error before this point stays one line.
    for note in [iface_lock.reclaimed(), addr_lock.reclaimed()]
        .into_iter()
        .flatten()
    {
        log::info!("{note}");
    }
    let shown = addrs
        .iter()
        .map(|a| match a {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        })
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "xstack: serving {}:{} on {} — ping/arping (ping -6) {} or connect to it from the peer; Ctrl-C to stop",
        shown,
        config
            .listen
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
        iface.name,
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    );

    let mut last_rotation = Instant::now();
    let mut overflows = 0u64;
    let mut queue_full_since: Option<Instant> = None;
    let mut filter = crate::datapath::fastpath::UnknownFilter::default();
    let why = loop {
        if let Ok(mut p) = prog.lock() {
            p.flush_logs();
            // Rotate the cookie secret, keeping the previous one valid
            // while its cookies can be (from this minute of XDP's clock).
            if last_rotation.elapsed() >= crate::datapath::fastpath::SECRET_ROTATION {
                match p.secrets() {
                    Ok(s) => {
                        let count =
                            stack_ebpf::cookie::count_from_ns(crate::datapath::xdp::monotonic_ns());
                        let next = crate::datapath::fastpath::rotate(&s, count);
                        match p.set_secrets(&next) {
                            Ok(()) => secrets.publish(next),
                            Err(e) => log::warn!("rotating the SYN cookie secret: {e}"),
                        }
                    }
                    Err(e) => log::warn!("reading the SYN cookie secret: {e}"),
                }
                last_rotation = Instant::now();
            }
            // The engine's SYN queue overflowed since the last look: tell XDP
            // (auto mode then answers SYNs with cookies) until it has been
            // quiet for a second.
            let now_overflows: u64 = ["ListenOverflows", "TCPReqQFullDrop", "TCPReqQFullDoCookies"]
                .iter()
                .map(|k| queue_stats_total(&workers, k))
                .sum();
            if now_overflows > overflows {
                if queue_full_since.is_none() {
                    log::info!("SYN queue full: XDP answers SYNs with cookies (auto mode)");
                }
                queue_full_since = Some(Instant::now());
                let _ = p.set_signal(stack_ebpf::SIGNAL_SYN_QUEUE_FULL, 1);
            } else if queue_full_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
                queue_full_since = None;
                let _ = p.set_signal(stack_ebpf::SIGNAL_SYN_QUEUE_FULL, 0);
            }
            overflows = now_overflows;
            let rate_on = settings.lock().map(|s| s.unknown_rate_on).unwrap_or(0);
            unknown_filter_step(&mut p, &workers, &mut filter, rate_on);
            filter_arms.store(filter.arms, Ordering::Relaxed);
        }
        if let Some(sig) = signals.wait(Duration::from_millis(100)) {
            break sig;
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break "duration reached";
        }
        if workers.iter().any(|w| w.handle.is_finished()) {
            break "a queue worker stopped";
        }
    };
    log::info!("stopping: {why}");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        if w.handle.join().is_err() {
            log::error!("a queue worker panicked");
        }
    }
    drop(metrics);
    drop(control);
    if let Some(c) = &capture {
        if let Ok(mut c) = c.lock() {
            c.close();
            log::info!(
                "--pcap {}: {} frames received and {} sent written{}",
                c.path().display(),
                c.frames[0],
                c.frames[1],
                if c.skipped > 0 {
                    format!(", {} not written (--pcap-max-bytes reached)", c.skipped)
                } else {
                    String::new()
                }
            );
        }
    }
    let final_stats = snapshot();
    if let Ok(mut p) = prog.lock() {
        p.flush_logs();
    }
    // Dropping the program releases the BPF link: the interface is detached.
    drop(prog);
    // Then the locks go, and their files with them.
    drop(addr_lock);
    drop(iface_lock);
    Ok(final_stats)
}

fn queue_stats_total(workers: &[Worker], tcp_counter: &str) -> u64 {
    workers
        .iter()
        .filter_map(|w| w.stats.lock().ok().map(|s| s.tcp.get(tcp_counter).copied()))
        .map(|v| v.unwrap_or(0))
        .sum()
}

/// Segments for no connection so far: the engines' (`no_socket`, answered
/// by RST; `listen_ack_reset`, ACKs to a listener that are no valid cookie,
/// answered by RST; `listen_rst_ignored`, RSTs to a listener) and those XDP
/// dropped as such (`drop_cookie_invalid`, `drop_no_flow`), so that the
/// filter stays armed while the flood it stops goes on.
fn unknown_segments(p: &XdpProgram, workers: &[Worker]) -> u64 {
    let engine: u64 = ["no_socket", "listen_ack_reset", "listen_rst_ignored"]
        .iter()
        .map(|k| queue_stats_total(workers, k))
        .sum();
    let xdp: u64 = p
        .counters()
        .map(|c| {
            ["drop_cookie_invalid", "drop_no_flow"]
                .iter()
                .map(|k| c.get(k).copied().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    engine.saturating_add(xdp)
}

/// One look of the unknown-segment filter (every ~100 ms): arms or
/// extends XDP's `FILTER_UNTIL` while segments for no connection arrive at
/// `unknown_rate_on` per second or more, and logs when it arms and lapses.
fn unknown_filter_step(
    p: &mut XdpProgram,
    workers: &[Worker],
    filter: &mut crate::datapath::fastpath::UnknownFilter,
    rate_on: u64,
) {
    use crate::datapath::fastpath::FilterStep;
    let now = crate::datapath::xdp::monotonic_ns();
    let total = unknown_segments(p, workers);
    let rate = filter.rate(now, total).unwrap_or(0);
    match filter.observe(now, total, rate_on) {
        FilterStep::Keep => {}
        FilterStep::Arm(until) => {
            log::info!(
                "{rate} segments/s for no connection (unknown_rate_on {rate_on}): XDP drops segments without SYN for no known flow for {} s",
                crate::datapath::fastpath::UNKNOWN_FILTER_NS / 1_000_000_000
            );
            if let Err(e) = p.set_filter_until(until) {
                log::warn!("arming the unknown-segment filter: {e}");
            }
        }
        FilterStep::Extend(until) => {
            if let Err(e) = p.set_filter_until(until) {
                log::warn!("extending the unknown-segment filter: {e}");
            }
        }
        FilterStep::Lapse => {
            log::info!("segments for no connection below unknown_rate_on: the unknown-segment filter lapsed");
            // Past its deadline the filter already lets everything by; 0
            // also spares segments without SYN XDP's clock read.
            if let Err(e) = p.set_filter_until(0) {
                log::warn!("clearing the unknown-segment filter: {e}");
            }
        }
    }
}

/// The control socket's `sockets`: asks every worker for its connections
/// and waits (at most a second) for all of them to answer.
fn sockets_command(
    ss: &SocketsRequest,
    queue_stats: &[Arc<Mutex<QueueStats>>],
) -> serde_json::Value {
    let want = ss.0.fetch_add(1, Ordering::Relaxed) + 1;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut out = Vec::new();
    for q in queue_stats {
        loop {
            let answered = q
                .lock()
                .map(|s| (s.sockets_gen >= want).then(|| (s.queue, s.sockets.clone())));
            match answered {
                Ok(Some((queue, list))) => {
                    out.extend(list.into_iter().map(|i| {
                        let mut v = json!(i);
                        v["queue"] = json!(queue);
                        v
                    }));
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => return json!({ "error": "a queue worker did not answer within 1 s" }),
            }
        }
    }
    json!({ "sockets": out, "limit_per_queue": SS_LIMIT })
}

/// The control socket's `set key=value ...`: applies settings to the
/// running program through its maps (no reattach).
fn set_command(
    prog: &Mutex<XdpProgram>,
    settings: &Mutex<crate::datapath::fastpath::FastpathSettings>,
    args: &str,
) -> serde_json::Value {
    let (Ok(mut p), Ok(mut cur)) = (prog.lock(), settings.lock()) else {
        return json!({"error": "lock poisoned"});
    };
    let mut next = cur.clone();
    for kv in args.split_whitespace() {
        if let Err(e) = next.apply(kv) {
            return json!({ "error": e.to_string() });
        }
    }
    if let Err(e) = apply_fastpath(&mut p, &next, &cur) {
        return json!({ "error": e.to_string() });
    }
    log::info!("fast path settings changed: {args}");
    *cur = next;
    json!({ "ok": true, "fastpath": *cur })
}

fn snapshot(
    info: &serde_json::Value,
    prog: &Mutex<XdpProgram>,
    queue_stats: &[Arc<Mutex<QueueStats>>],
    queues: u32,
    started: Instant,
    filter_arms: &AtomicU64,
) -> serde_json::Value {
    let (xdp, redirects, classes, fastpath) = match prog.lock() {
        Ok(p) => (
            p.counters()
                .map(|c| json!(c))
                .unwrap_or_else(|e| json!({"error": e.to_string()})),
            p.queue_redirects(queues).unwrap_or_default(),
            p.tcp_classes()
                .map(|c| json!(c))
                .unwrap_or_else(|e| json!({"error": e.to_string()})),
            match (p.fastpath_state(), p.config()) {
                (Ok(st), Ok(c)) => json!({
                    "unknown_filter_active": p
                        .filter_until()
                        .is_ok_and(|t| crate::datapath::xdp::monotonic_ns() < t),
                    "unknown_filter_arms": filter_arms.load(Ordering::Relaxed),
                    "syncookies": match c.syncookies {
                        stack_ebpf::SYNCOOKIES_ALWAYS => "always",
                        stack_ebpf::SYNCOOKIES_AUTO => "auto",
                        _ => "never",
                    },
                    "cookie_active": st.cookie_active,
                    "cookie_on_switches": st.cookie_on_switches,
                    "syn_rate": st.last_rate,
                    "syn_on_per_window": c.syn_on,
                    "syn_off_per_window": c.syn_off,
                    "cookie_path": crate::datapath::fastpath::CookiePath::from_flags(c.flags),
                    "cookie_synacks_sent_by": crate::datapath::fastpath::CookiePath::from_flags(c.flags)
                        .describe(c.flags & stack_ebpf::CFG_TX_REDIRECT != 0),
                }),
                (Err(e), _) | (_, Err(e)) => json!({"error": e.to_string()}),
            },
        ),
        Err(_) => (
            json!({"error": "lock poisoned"}),
            Vec::new(),
            json!({}),
            json!({}),
        ),
    };
    let per_queue: Vec<QueueStats> = queue_stats
        .iter()
        .filter_map(|s| s.lock().ok().map(|s| s.clone()))
        .collect();
    let mut total = IfaceStats::default();
    let mut tcp_total: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let mut conns = 0;
    let mut states: std::collections::BTreeMap<String, u64> = Default::default();
    let mut listeners = Vec::new();
    for q in &per_queue {
        if let Some(m) = q.states.as_object() {
            for (k, v) in m {
                *states.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
            }
        }
        for l in &q.listeners {
            let mut l = l.clone();
            l["queue"] = json!(q.queue);
            listeners.push(l);
        }
        total.add(&q.engine);
        for (k, v) in &q.tcp {
            *tcp_total.entry(k).or_default() += v;
        }
        conns += q.tcp_connections;
    }
    let drops: serde_json::Map<String, serde_json::Value> = total
        .wire_drops()
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let queues_json: Vec<_> = per_queue
        .iter()
        .enumerate()
        .map(|(i, q)| {
            json!({
                "queue": q.queue,
                "xdp_redirects": redirects.get(i).copied().unwrap_or(0),
                "engine": q.engine,
                "kernel": q.kernel,
                "steer": q.steer,
            })
        })
        .collect();
    let mut v = info.clone();
    v["uptime_s"] = json!(started.elapsed().as_secs_f64());
    v["memory"] = json!(sys::memory());
    v["xdp"] = xdp;
    v["xdp_tcp_classes"] = classes;
    v["fastpath"] = fastpath;
    v["engine"] = json!(total);
    v["engine"]["drops"] = json!(drops);
    v["tcp"] = json!(tcp_total);
    v["tcp"]["connections"] = json!(conns);
    v["states"] = json!(states);
    v["listeners"] = json!(listeners);
    v["per_queue"] = json!(queues_json);
    v
}

/// Renders a stats document as `name value` lines, nstat style, grouped.
pub fn render_stats(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "xstack pid {} on {} ip {} ports {} queues {} (XDP {} mode, AF_XDP {} mode), up {:.1} s",
        v["pid"],
        v["iface"].as_str().unwrap_or("?"),
        v["ip"].as_str().unwrap_or("?"),
        v["ports"],
        v["queues"],
        v["xdp_mode"].as_str().unwrap_or("?"),
        v["xsk_mode"].as_str().unwrap_or("?"),
        v["uptime_s"].as_f64().unwrap_or(0.0)
    );
    let section = |out: &mut String, title: &str, obj: &serde_json::Value| {
        let _ = writeln!(out, "{title}:");
        if let Some(m) = obj.as_object() {
            for (k, val) in m {
                if val.is_number() {
                    let _ = writeln!(out, "  {k:<28} {val}");
                } else if let Some(text) = val.as_str() {
                    let _ = writeln!(out, "  {k:<28} {text}");
                }
            }
        }
    };
    let mb = |k: &str| v["memory"][k].as_f64().unwrap_or(0.0) / 1e6;
    let _ = writeln!(
        out,
        "memory: rss {:.1} MB, heap in use {:.1} MB, heap held {:.1} MB",
        mb("rss_bytes"),
        mb("heap_in_use_bytes"),
        mb("heap_held_bytes")
    );
    section(&mut out, "xdp (kernel, per-CPU summed)", &v["xdp"]);
    section(&mut out, "xdp tcp classes", &v["xdp_tcp_classes"]);
    section(&mut out, "fast path", &v["fastpath"]);
    section(&mut out, "engine", &v["engine"]);
    section(&mut out, "engine drops", &v["engine"]["drops"]);
    if let Some(st) = v["states"].as_object() {
        let g = |k: &str| st.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        let _ = writeln!(
            out,
            "TCP: estab {} syn-recv {} fin-wait1 {} fin-wait2 {} timewait {}/{} (peak {}) close-wait {} last-ack {} closing {} listen {}",
            g("ESTABLISHED"), g("SYN_RECV"), g("FIN_WAIT1"), g("FIN_WAIT2"), g("TIME_WAIT"),
            g("time_wait_max"), g("time_wait_high_water"), g("CLOSE_WAIT"), g("LAST_ACK"),
            g("CLOSING"), g("LISTEN")
        );
    }
    if let Some(ls) = v["listeners"].as_array() {
        for l in ls {
            let _ =
                writeln!(
                out,
                "listen {} (queue {}): syn queue {}/{} accept queue {}/{} close-wait {} oldest {}",
                l["listen"].as_str().unwrap_or("?"), l["queue"], l["syn_queue"], l["syn_queue_max"],
                l["accept_queue"], l["accept_queue_max"], l["close_wait"],
                l["oldest_close_wait_s"].as_f64().map(|s| format!("{s:.1} s")).unwrap_or("-".into())
            );
        }
    }
    section(&mut out, "tcp (nstat names where one exists)", &v["tcp"]);
    if let Some(qs) = v["per_queue"].as_array() {
        for q in qs {
            let _ = writeln!(
                out,
                "queue {}: xdp_redirects {} rx_frames {} tx_frames {} tcp_segments {} handed out/in/dropped {}/{}/{} kernel rx_dropped {} rx_ring_full {} fill_ring_empty {}",
                q["queue"],
                q["xdp_redirects"],
                q["engine"]["rx_frames"],
                q["engine"]["tx_frames"],
                q["engine"]["tcp_segments"],
                q["steer"]["handed_out"],
                q["steer"]["handed_in"],
                q["steer"]["handoff_dropped"],
                q["kernel"]["rx_dropped"],
                q["kernel"]["rx_ring_full"],
                q["kernel"]["rx_fill_ring_empty"],
            );
        }
    }
    out
}
