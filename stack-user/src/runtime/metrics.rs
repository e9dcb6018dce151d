//! `--metrics ADDR:PORT`: a Prometheus / OpenMetrics text endpoint (HTTP
//! `GET /metrics`) for `xstack serve`, `load` and `flood`.
//!
//! Off the hot path: nothing here runs per packet. The queue workers
//! already publish their counters every 50 ms (see [`super::serve`]); a
//! scrape reads those copies (and the XDP program's per-CPU maps) and
//! builds a fresh [`Exposition`] from them, so a scrape costs the workers
//! nothing and the values are exactly what `xstack stats --json` shows.
//!
//! The exposition format is written by the `prometheus-client` crate
//! (OpenMetrics 1.0 text). A scraper that asks for it (`Accept:
//! application/openmetrics-text`, as the Prometheus server does) gets the
//! crate's output as is. Any other client gets the classic Prometheus text
//! format 0.0.4, which differs only in that a counter family's `# HELP`
//! and `# TYPE` lines carry the `_total` sample name and there is no
//! `# EOF` line: `promtool check metrics` reads only that format
//! (prometheus/prometheus#8932), and `curl` users expect it.
//!
//! Names follow the Prometheus conventions (snake_case, base units, a
//! `_total` suffix on counters); the TCP counters keep their Linux `nstat`
//! names as the value of a `counter` label (`xstack_tcp_total{counter=
//! "ListenOverflows"}`), since the linter rejects camelCase metric names.
//! Labels: `queue` (the rx queue and its engine) and `family` (`ipv4`: the
//! engine's TCP is IPv4 only today).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{anyhow, Result};
use prometheus_client::{
    encoding::{text::encode, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType},
    registry::Registry,
};

/// Labels of one sample: (name, value) pairs in a fixed order.
pub type Labels = Vec<(String, String)>;

/// Builds label pairs from `(&str, impl ToString)`.
pub fn labels<const N: usize>(pairs: [(&str, String); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A histogram already counted elsewhere (an HdrHistogram): bucket upper
/// bounds with the count of samples in each (not cumulative; the last
/// bound is `f64::MAX`, written `+Inf`), their sum and count.
#[derive(Clone, Debug, Default)]
pub struct Buckets {
    /// (upper bound, samples in this bucket).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the samples.
    pub sum: f64,
    /// Number of samples.
    pub count: u64,
}

impl Buckets {
    /// The latency buckets in seconds (100 µs to 10 s, 1-2.5-5 steps) of
    /// an HdrHistogram recorded in microseconds.
    pub fn from_hdr_us(h: &hdrhistogram::Histogram<u64>) -> Buckets {
        const BOUNDS_US: [u64; 16] = [
            100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
            1_000_000, 2_500_000, 5_000_000, 10_000_000,
        ];
        let mut out = Vec::with_capacity(BOUNDS_US.len() + 1);
        let mut below = 0u64;
        for b in BOUNDS_US {
            // Samples at most `b` (HdrHistogram's equivalence ranges: a
            // value counts at its range's highest equivalent value).
            let upto: u64 = h
                .iter_recorded()
                .take_while(|v| v.value_iterated_to() <= b)
                .map(|v| v.count_at_value())
                .sum();
            out.push((b as f64 / 1e6, upto - below));
            below = upto;
        }
        out.push((f64::MAX, h.len() - below));
        Buckets {
            buckets: out,
            sum: h.mean() * h.len() as f64 / 1e6,
            count: h.len(),
        }
    }
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// One scrape's metrics: families registered on first use, samples set
/// from counters read at scrape time.
#[derive(Default)]
pub struct Exposition {
    registry: Registry,
    counters: BTreeMap<String, Family<Labels, Counter>>,
    gauges: BTreeMap<String, Family<Labels, FloatGauge>>,
    /// Families without labels: one sample, written `name value` (not
    /// `name{} value`). A name is used either with labels or without.
    plain_counters: BTreeMap<String, Counter>,
    plain_gauges: BTreeMap<String, FloatGauge>,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Sets counter `name` (without `_total`, which the encoder adds) for
    /// `labels` to `value`. (The crate ends every help text with a full
    /// stop, so ours drop theirs.)
    pub fn counter(&mut self, name: &str, help: &str, labels: Labels, value: u64) {
        if labels.is_empty() {
            debug_assert!(
                !self.counters.contains_key(name),
                "{name} has labels elsewhere"
            );
            let c = self
                .plain_counters
                .entry(name.to_string())
                .or_insert_with(|| {
                    let c = Counter::default();
                    self.registry
                        .register(name, help.trim_end_matches('.'), c.clone());
                    c
                });
            c.inc_by(value);
            return;
        }
        debug_assert!(
            !self.plain_counters.contains_key(name),
            "{name} is unlabelled elsewhere"
        );
        let fam = self.counters.entry(name.to_string()).or_insert_with(|| {
            let f = Family::<Labels, Counter>::default();
            self.registry
                .register(name, help.trim_end_matches('.'), f.clone());
            f
        });
        fam.get_or_create(&labels).inc_by(value);
    }

    /// Sets gauge `name` for `labels` to `value`.
    pub fn gauge(&mut self, name: &str, help: &str, labels: Labels, value: f64) {
        if labels.is_empty() {
            debug_assert!(
                !self.gauges.contains_key(name),
                "{name} has labels elsewhere"
            );
            let g = self
                .plain_gauges
                .entry(name.to_string())
                .or_insert_with(|| {
                    let g = FloatGauge::default();
                    self.registry
                        .register(name, help.trim_end_matches('.'), g.clone());
                    g
                });
            g.set(value);
            return;
        }
        debug_assert!(
            !self.plain_gauges.contains_key(name),
            "{name} is unlabelled elsewhere"
        );
        let fam = self.gauges.entry(name.to_string()).or_insert_with(|| {
            let f = Family::<Labels, FloatGauge>::default();
            self.registry
                .register(name, help.trim_end_matches('.'), f.clone());
            f
        });
        fam.get_or_create(&labels).set(value);
    }

    /// Registers histogram `name` (unlabelled).
    pub fn histogram(&mut self, name: &str, help: &str, buckets: Buckets) {
        self.registry
            .register(name, help.trim_end_matches('.'), buckets);
    }

    /// The OpenMetrics 1.0 text, as the crate writes it.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format 0.0.4 (see the module comment).
    pub fn prometheus_text(&self) -> String {
        to_prometheus_text(&self.openmetrics())
    }
}

/// OpenMetrics text to Prometheus text 0.0.4: a counter family `x` is
/// described as `x_total` (the name its samples carry), `# UNIT` and
/// `# EOF` lines go. Everything else is the same in both formats.
pub fn to_prometheus_text(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in om.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(om.len() + counters.len() * 16);
    for l in om.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| l.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((p, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(&format!("{p}{name}_total {tail}\n"));
                continue;
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Parses `--metrics ADDR:PORT` (`127.0.0.1:9464`, `[::1]:9464`,
/// `0.0.0.0:9464`); the error is one line saying what to give.
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    let bad = || {
        anyhow!(
            "--metrics {s:?} is not ADDR:PORT; give an address and port to listen on, e.g. --metrics 127.0.0.1:9464 or --metrics [::1]:9464"
        )
    };
    let addr: SocketAddr = s.parse().map_err(|_| bad())?;
    if addr.port() == 0 {
        return Err(bad());
    }
    Ok(addr)
}

/// The HTTP server of `--metrics`: one std thread answering `GET
/// /metrics` with what `render` builds at that moment; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A bound, not yet serving, `--metrics` listener: bound first, before
/// the interface is touched, so a busy or foreign address is refused
/// before anything is attached.
pub struct MetricsListener(TcpListener);

impl MetricsListener {
    /// Listens on `addr` (exactly there: no other address is tried).
    pub fn bind(addr: SocketAddr) -> Result<MetricsListener> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            anyhow!("--metrics {addr}: cannot listen there ({e}); give a free ADDR:PORT of an address this host (namespace) has")
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| anyhow!("--metrics {addr}: {e}"))?;
        Ok(MetricsListener(listener))
    }

    /// Where it listens.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.0.local_addr().ok()
    }

    /// Serves `GET /metrics` with what `render` builds at each request.
    pub fn serve<F>(self, render: F) -> Result<MetricsServer>
    where
        F: Fn() -> Exposition + Send + 'static,
    {
        let listener = self.0;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow!("--metrics: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xstack-metrics".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = answer(stream, &render) {
                                log::debug!("metrics: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            log::warn!("metrics endpoint: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|e| anyhow!("spawning the metrics thread: {e}"))?;
        log::info!("metrics on http://{addr}/metrics");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl MetricsServer {
    /// Listens on `addr` and serves `render`'s metrics there.
    pub fn start<F>(addr: SocketAddr, render: F) -> Result<MetricsServer>
    where
        F: Fn() -> Exposition + Send + 'static,
    {
        MetricsListener::bind(addr)?.serve(render)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds the endpoint when `--metrics` was given.
pub fn bind_if(addr: Option<SocketAddr>) -> Result<Option<MetricsListener>> {
    addr.map(MetricsListener::bind).transpose()
}

/// What one request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /metrics`; `true` when the client accepts OpenMetrics.
    Metrics(bool),
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
}

/// Reads a request head (at most 8 KiB) and says what it asks for.
fn parse_request(head: &str) -> Request {
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return Request::NotAllowed;
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return Request::NotFound;
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    Request::Metrics(openmetrics)
}

fn answer<F: Fn() -> Exposition>(stream: TcpStream, render: &F) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = String::new();
    let mut r = BufReader::new(&stream).take(8192);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let (status, ctype, body) = match parse_request(&head) {
        Request::Metrics(true) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render().openmetrics(),
        ),
        Request::Metrics(false) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render().prometheus_text(),
        ),
        Request::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only /metrics is served here\n".to_string(),
        ),
        Request::NotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_string(),
        ),
    };
    let mut w = &stream;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head.starts_with("HEAD ") {
        w.write_all(body.as_bytes())?;
    }
    w.flush()
}

/// Fetches `http://addr/metrics` (the tests' and examples' client).
pub fn scrape(addr: impl ToSocketAddrs, openmetrics: bool) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let accept = if openmetrics {
        "application/openmetrics-text; version=1.0.0"
    } else {
        "text/plain"
    };
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: xstack\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    Ok(all
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Address family label of the engine's TCP (IPv4 only today).
const FAMILY: &str = "ipv4";

/// Prometheus label values and name parts: `[a-zA-Z0-9_]`, others `_`.
fn snake(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `xstack serve`'s metrics: the XDP program's counters (from `snapshot`,
/// the document `xstack stats --json` shows) and each queue's published
/// counters.
pub fn serve_exposition(
    snapshot: &serde_json::Value,
    queues: &[super::serve::QueueStats],
) -> Exposition {
    let mut e = Exposition::new();
    e.gauge(
        "xstack_uptime_seconds",
        "Seconds since the instance started.",
        vec![],
        snapshot["uptime_s"].as_f64().unwrap_or(0.0),
    );
    xdp_metrics(&mut e, snapshot);
    memory_metrics(&mut e, &snapshot["memory"]);
    for (i, q) in queues.iter().enumerate() {
        let queue = q.queue.to_string();
        let ql = || labels([("queue", queue.clone())]);
        let qf = || labels([("queue", queue.clone()), ("family", FAMILY.into())]);
        if let Some(r) = snapshot
            .pointer(&format!("/per_queue/{i}/xdp_redirects"))
            .and_then(|v| v.as_u64())
        {
            e.counter(
                "xstack_xdp_queue_redirects",
                "Frames the XDP program redirected to this queue's AF_XDP socket.",
                ql(),
                r,
            );
        }
        engine_metrics(
            &mut e,
            q.queue,
            &q.engine,
            q.tcp.iter().map(|(k, v)| (*k, *v)),
        );
        e.gauge(
            "xstack_tcp_connections",
            "Live TCP connections of the engine.",
            qf(),
            q.tcp_connections as f64,
        );
        if let Some(st) = q.states.as_object() {
            for (k, v) in st {
                let v = v.as_f64().unwrap_or(0.0);
                match k.as_str() {
                    "time_wait_max" => e.gauge(
                        "xstack_tcp_time_wait_max",
                        "TIME_WAIT table size (tcp_max_tw_buckets).",
                        qf(),
                        v,
                    ),
                    "time_wait_high_water" => e.gauge(
                        "xstack_tcp_time_wait_high_water",
                        "Most TIME_WAIT entries at once since start.",
                        qf(),
                        v,
                    ),
                    state => {
                        let mut l = qf();
                        l.push(("state".into(), state.to_string()));
                        e.gauge(
                            "xstack_tcp_sockets",
                            "Connections per TCP state, as `ss -s` counts them (TIME_WAIT: entries in the table).",
                            l,
                            v,
                        );
                    }
                }
            }
        }
        for l in &q.listeners {
            let listen = l["listen"].as_str().unwrap_or("?").to_string();
            let ll = || {
                labels([
                    ("queue", queue.clone()),
                    ("family", FAMILY.into()),
                    ("listen", listen.clone()),
                ])
            };
            for (key, name, help) in [
                (
                    "syn_queue",
                    "xstack_listen_syn_queue",
                    "Half-open connections (SYN_RECV) of the listener.",
                ),
                (
                    "syn_queue_max",
                    "xstack_listen_syn_queue_max",
                    "SYN queue limit (tcp_max_syn_backlog).",
                ),
                (
                    "accept_queue",
                    "xstack_listen_accept_queue",
                    "Connections waiting to be accepted.",
                ),
                (
                    "accept_queue_max",
                    "xstack_listen_accept_queue_max",
                    "Accept queue limit (somaxconn).",
                ),
                (
                    "close_wait",
                    "xstack_listen_close_wait",
                    "Connections of the listener in CLOSE_WAIT.",
                ),
            ] {
                e.gauge(name, help, ll(), l[key].as_f64().unwrap_or(0.0));
            }
        }
        for (name, v) in [
            ("rx_dropped", q.kernel.rx_dropped),
            ("rx_ring_full", q.kernel.rx_ring_full),
            ("rx_fill_ring_empty", q.kernel.rx_fill_ring_empty),
            ("rx_invalid_descs", q.kernel.rx_invalid_descs),
            ("tx_invalid_descs", q.kernel.tx_invalid_descs),
            ("tx_ring_empty", q.kernel.tx_ring_empty),
        ] {
            e.counter(
                &format!("xstack_xsk_{name}"),
                "AF_XDP socket statistics of the kernel (XDP_STATISTICS).",
                ql(),
                v,
            );
        }
        for (name, v) in [
            ("handed_out", q.steer.handed_out),
            ("handed_in", q.steer.handed_in),
            ("handoff_dropped", q.steer.handoff_dropped),
            ("arp_copies", q.steer.arp_copies),
        ] {
            e.counter(
                &format!("xstack_steer_{name}"),
                "Frames handed between queue workers (flow steering).",
                ql(),
                v,
            );
        }
    }
    e
}

/// One engine's frame-layer counters (malformed frames by reason) and TCP
/// counters (by nstat name), labelled with its queue.
pub fn engine_metrics(
    e: &mut Exposition,
    queue: u32,
    engine: &crate::iface::IfaceStats,
    tcp: impl Iterator<Item = (&'static str, u64)>,
) {
    let ql = || labels([("queue", queue.to_string())]);
    let wire = engine.wire_drops();
    for (name, v) in engine.iter() {
        if wire.iter().any(|(w, _)| *w == name) {
            continue;
        }
        e.counter(
            &format!("xstack_engine_{}", snake(name)),
            "Frame-layer counter of the engine (see `xstack stats`).",
            ql(),
            v,
        );
    }
    for (reason, v) in wire {
        let mut l = ql();
        let reason = reason.strip_prefix("drop_").unwrap_or(reason);
        l.push(("reason".into(), reason.to_string()));
        e.counter(
            "xstack_engine_drops",
            "Malformed frames the engine dropped, by reason.",
            l,
            v,
        );
    }
    for (name, v) in tcp {
        let l = labels([
            ("queue", queue.to_string()),
            ("family", FAMILY.into()),
            ("counter", name.to_string()),
        ]);
        e.counter(
            "xstack_tcp",
            "TCP counters of the engine, under their Linux nstat names where Linux has the counter (label `counter`).",
            l,
            v,
        );
    }
}

/// The XDP program's counters (per-CPU maps, summed): every verdict with
/// its reason, and the TCP classes.
pub fn xdp_metrics(e: &mut Exposition, snapshot: &serde_json::Value) {
    if let Some(m) = snapshot["xdp"].as_object() {
        for (name, v) in m {
            let Some(v) = v.as_u64() else { continue };
            if name == "rx_packets" {
                e.counter(
                    "xstack_xdp_packets",
                    "Frames the XDP program ran on.",
                    vec![],
                    v,
                );
                continue;
            }
            // `pass_ip_not_owned` → verdict pass, reason ip_not_owned.
            let (verdict, reason) = name.split_once('_').unwrap_or((name, ""));
            e.counter(
                "xstack_xdp_verdicts",
                "XDP verdicts (pass, redirect, drop, tx) by reason; they sum to xstack_xdp_packets_total.",
                labels([("verdict", verdict.into()), ("reason", reason.into())]),
                v,
            );
        }
    }
    if let Some(m) = snapshot["xdp_tcp_classes"].as_object() {
        for (class, v) in m {
            e.counter(
                "xstack_xdp_tcp_segments",
                "TCP segments for owned (address, port) with valid flags, by class.",
                labels([("class", class.clone()), ("family", FAMILY.into())]),
                v.as_u64().unwrap_or(0),
            );
        }
    }
    let fp = &snapshot["fastpath"];
    // On/off states: `cookie_active` is the XDP state's u32, the filter's
    // a bool; both are taken.
    for (key, name, help) in [
        (
            "cookie_active",
            "xstack_xdp_cookie_active",
            "1 while XDP answers SYNs with cookies.",
        ),
        (
            "unknown_filter_active",
            "xstack_xdp_unknown_filter_active",
            "1 while XDP drops segments without SYN for no known flow (ACK/RST flood filter).",
        ),
    ] {
        let v = &fp[key];
        if let Some(on) = v.as_bool().or_else(|| v.as_u64().map(|n| n != 0)) {
            e.gauge(name, help, vec![], if on { 1.0 } else { 0.0 });
        }
    }
    for (key, name, help) in [
        (
            "cookie_on_switches",
            "xstack_xdp_cookie_on_switches",
            "Times XDP switched SYN cookies on (syncookies auto).",
        ),
        (
            "unknown_filter_arms",
            "xstack_xdp_unknown_filter_arms",
            "Times the unknown-segment filter was armed.",
        ),
    ] {
        if let Some(n) = fp[key].as_u64() {
            e.counter(name, help, vec![], n);
        }
    }
}

/// Memory of the process (`sys::memory`).
pub fn memory_metrics(e: &mut Exposition, mem: &serde_json::Value) {
    for (key, help) in [
        ("rss_bytes", "Resident set size of the process."),
        ("heap_in_use_bytes", "Heap bytes in use (mallinfo2)."),
        (
            "heap_held_bytes",
            "Heap bytes held from the OS (mallinfo2).",
        ),
    ] {
        if let Some(v) = mem[key].as_f64() {
            e.gauge(&format!("xstack_memory_{key}"), help, vec![], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::serve::QueueStats;

    #[test]
    fn the_classic_text_describes_counters_by_their_sample_names() {
        let mut e = Exposition::new();
        e.counter("x_frames", "Frames.", labels([("queue", "0".into())]), 3);
        e.gauge("x_open", "Open.", vec![], 2.0);
        let om = e.openmetrics();
        assert!(om.contains("# TYPE x_frames counter\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = e.prometheus_text();
        assert!(text.contains("# HELP x_frames_total Frames.\n"), "{text}");
        assert!(text.contains("# TYPE x_frames_total counter\n"), "{text}");
        assert!(text.contains("x_frames_total{queue=\"0\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE x_open gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_scrape_gets_the_counters_of_that_moment_and_nothing_else_is_served() {
        let n = Arc::new(AtomicU64::new(5));
        let n2 = n.clone();
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || {
            let mut e = Exposition::new();
            e.counter("t_events", "Events.", vec![], n2.load(Ordering::Relaxed));
            e
        })
        .unwrap();
        let addr = server.addr();
        assert!(scrape(addr, false).unwrap().contains("t_events_total 5\n"));
        n.store(9, Ordering::Relaxed);
        let om = scrape(addr, true).unwrap();
        assert!(
            om.contains("t_events_total 9\n") && om.ends_with("# EOF\n"),
            "{om}"
        );
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert_eq!(
            parse_request("POST /metrics HTTP/1.1\r\n"),
            Request::NotAllowed
        );
        drop(server);
        assert!(scrape(addr, false).is_err(), "still listening after drop");
    }

    #[test]
    fn a_bad_metrics_address_is_one_line_saying_what_to_give() {
        for bad in [
            "localhost",
            "9464",
            "127.0.0.1",
            "127.0.0.1:0",
            "[::1]",
            "1.2.3.4:70000",
        ] {
            let e = parse_addr(bad).unwrap_err().to_string();
            assert!(e.contains("ADDR:PORT") && !e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(parse_addr("[::1]:9464").unwrap().port(), 9464);
        // An address this host does not have (TEST-NET-1).
        let e = MetricsListener::bind("192.0.2.1:9464".parse().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--metrics 192.0.2.1:9464") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn hdr_buckets_hold_every_sample_once_in_seconds() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in [50, 90, 300, 2_000, 20_000_000] {
            h.record(us).unwrap();
        }
        let b = Buckets::from_hdr_us(&h);
        assert_eq!(b.count, 5);
        assert_eq!(b.buckets.iter().map(|(_, n)| n).sum::<u64>(), 5);
        assert_eq!(b.buckets[0], (0.0001, 2), "50 and 90 µs are ≤ 100 µs");
        assert_eq!(
            b.buckets.last().unwrap(),
            &(f64::MAX, 1),
            "20 s is past 10 s"
        );
        assert!((b.sum - 20.00244).abs() < 0.01, "{}", b.sum);
    }

    #[test]
    fn serve_metrics_label_queue_and_family_and_keep_nstat_names() {
        let mut q = QueueStats {
            queue: 1,
            ..Default::default()
        };
        q.tcp.insert("ListenOverflows", 7);
        q.engine.rx_frames = 11;
        q.engine.drop_wire[crate::wire::WireError::Ipv4Fragment.index()] = 2;
        q.states = serde_json::json!({"ESTABLISHED": 3, "time_wait_max": 4096});
        q.listeners = vec![
            serde_json::json!({"listen": "198.18.0.2:80", "accept_queue": 1, "accept_queue_max": 4096}),
        ];
        let snap = serde_json::json!({
            "uptime_s": 1.5,
            "xdp": {"rx_packets": 20, "redirect_tcp": 15, "pass_not_ipv4": 5},
            "per_queue": [{"xdp_redirects": 15}],
            "fastpath": {"cookie_active": 1, "cookie_on_switches": 2, "unknown_filter_active": true, "unknown_filter_arms": 3},
        });
        let text = serve_exposition(&snap, &[q]).prometheus_text();
        for line in [
            "xstack_tcp_total{queue=\"1\",family=\"ipv4\",counter=\"ListenOverflows\"} 7",
            "xstack_engine_rx_frames_total{queue=\"1\"} 11",
            "xstack_engine_drops_total{queue=\"1\",reason=\"ipv4_fragment\"} 2",
            "xstack_tcp_sockets{queue=\"1\",family=\"ipv4\",state=\"ESTABLISHED\"} 3.0",
            "xstack_tcp_time_wait_max{queue=\"1\",family=\"ipv4\"} 4096.0",
            "xstack_listen_accept_queue{queue=\"1\",family=\"ipv4\",listen=\"198.18.0.2:80\"} 1.0",
            "xstack_xdp_packets_total 20",
            "xstack_xdp_verdicts_total{verdict=\"redirect\",reason=\"tcp\"} 15",
            "xstack_xdp_verdicts_total{verdict=\"pass\",reason=\"not_ipv4\"} 5",
            "xstack_xdp_queue_redirects_total{queue=\"1\"} 15",
            // serve's snapshot gives cookie_active as the XDP state's u32.
            "xstack_xdp_cookie_active 1.0",
            "xstack_xdp_cookie_on_switches_total 2",
            "xstack_xdp_unknown_filter_active 1.0",
            "xstack_xdp_unknown_filter_arms_total 3",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing:\n{text}"
            );
        }
    }
}
