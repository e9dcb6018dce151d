//! The shared measurement state of a load run, its progress line and
//! HdrHistogram interval log, and the summary it ends with.

use std::{
    io::Write,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use hdrhistogram::{
    serialization::{interval_log::IntervalLogWriterBuilder, V2DeflateSerializer},
    Histogram,
};
use serde::Serialize;

use super::*;

/// Errors by kind.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Errors {
    /// Connection refused (RST to SYN).
    pub refused: u64,
    /// Connection reset during the exchange.
    pub reset: u64,
    /// A step without progress for `--timeout` (a request or its response,
    /// the server's FIN), or still open when the run's drain bound ended.
    pub timeout: u64,
    /// The handshake never completed: the SYN and its `tcp_syn_retries`
    /// retransmissions went unanswered (engine), or the connect took
    /// longer than `--timeout` (kernel).
    pub connect_timeout: u64,
    /// Anything else (protocol errors, local port exhaustion).
    pub other: u64,
}

impl Errors {
    pub(super) fn total(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.connect_timeout + self.other
    }

    fn add(&mut self, o: &Errors) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.connect_timeout += o.connect_timeout;
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
    /// Frames the kernel dropped because this engine's AF_XDP rx ring was
    /// full (`XDP_STATISTICS`): the engine fell behind.
    pub rx_ring_full: u64,
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

impl Latency {
    /// The percentiles of `h` (zeros when it is empty).
    pub(super) fn of(h: &Histogram<u64>) -> Latency {
        let q = |x: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max(),
            mean: if h.is_empty() { 0.0 } else { h.mean() },
        }
    }
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
    /// Connect latency (µs): from the SYN (the `connect` call) to the
    /// handshake's completion, SYN retransmissions included.
    pub connect_latency_us: Latency,
    /// Closed loop: seconds from the start until every one of the
    /// `--concurrency` connections was established at once (null if never).
    pub time_to_full_concurrency_s: Option<f64>,
    /// Most connections established at once.
    pub peak_established: u64,
    /// Heap in use (glibc `mallinfo2`) of the load process after its
    /// engines came up, before any connection (engine mode; 0 otherwise).
    pub heap_baseline_bytes: u64,
    /// Heap in use when the most connections were established.
    pub heap_at_peak_bytes: u64,
    /// (heap at peak − baseline) / peak established: what one
    /// established connection costs the load side (control block, demux
    /// entry, buffers, the driver's own record); 0 without connections.
    pub heap_bytes_per_connection: u64,
    /// Errors by kind.
    pub errors: Errors,
    /// Most connections in TIME_WAIT at once on the load side (with
    /// several queues, the sum of each engine's peak: an upper bound).
    pub peak_time_wait: u64,
    /// Connections that took over a 4-tuple the load side held in
    /// TIME_WAIT (`tcp_tw_reuse`, with the timestamps that keep PAWS
    /// safe; nstat `TWRecycled`); 0 with `--kernel`.
    pub time_wait_reused: u64,
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
pub(super) struct Recorder {
    pub(super) hist: Histogram<u64>,
    /// Connect latency (µs): from the connection's start (the SYN) to its
    /// handshake's end, SYN retransmissions included.
    pub(super) connect: Histogram<u64>,
    /// When this worker first had its whole share established (closed loop).
    pub(super) full_at: Option<Duration>,
    /// Connections established now (handshake done, not yet closing).
    pub(super) established: usize,
    /// Connections whose handshake is under way.
    pub(super) opening: usize,
    /// Connections closing (FIN sent or received, not yet in TIME_WAIT).
    pub(super) closing: usize,
    /// Most connections established at once (the caller keeps the sum).
    pub(super) peak_established: u64,
    /// The engine's frame-layer and TCP counters, copied every 10 ms
    /// (engine driver only; read by `--metrics`).
    pub(super) engine: Option<(crate::iface::IfaceStats, Vec<(&'static str, u64)>)>,
    pub(super) interval: Histogram<u64>,
    pub(super) errors: Errors,
    pub(super) connections: u64,
    pub(super) requests: u64,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) peak_tw: u64,
    /// 4-tuples taken over from TIME_WAIT (the engine's `TWRecycled`).
    pub(super) tw_reused: u64,
    pub(super) first_error: Option<String>,
    pub(super) port_waits: u64,
    /// End of the measurement window (`--duration`): rates count what
    /// completed inside it, not the drain after it.
    pub(super) window: Option<(Instant, Duration)>,
    pub(super) conns_in_window: u64,
    pub(super) reqs_in_window: u64,
    pub(super) bytes_in_window: u64,
    /// Connections open now (for the progress line).
    pub(super) active: usize,
    /// Connections in TIME_WAIT now.
    pub(super) time_wait: u64,
}

impl Recorder {
    pub(super) fn new() -> Recorder {
        Recorder {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            connect: Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid bounds"),
            full_at: None,
            established: 0,
            opening: 0,
            closing: 0,
            peak_established: 0,
            interval: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            engine: None,
            errors: Errors::default(),
            connections: 0,
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
            peak_tw: 0,
            tw_reused: 0,
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
    pub(super) fn add(&mut self, o: &Recorder) {
        let _ = self.hist.add(&o.hist);
        let _ = self.connect.add(&o.connect);
        self.established += o.established;
        self.opening += o.opening;
        self.closing += o.closing;
        self.errors.add(&o.errors);
        self.connections += o.connections;
        self.requests += o.requests;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.peak_tw += o.peak_tw;
        self.tw_reused += o.tw_reused;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        self.port_waits += o.port_waits;
        self.conns_in_window += o.conns_in_window;
        self.reqs_in_window += o.reqs_in_window;
        self.bytes_in_window += o.bytes_in_window;
    }

    pub(super) fn in_window(&self) -> bool {
        self.window.is_none_or(|(end, _)| Instant::now() <= end)
    }

    pub(super) fn latency(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.hist.saturating_record(us);
        self.interval.saturating_record(us);
        self.requests += 1;
        if self.in_window() {
            self.reqs_in_window += 1;
        }
    }

    /// A handshake completed `d` after the connection started.
    pub(super) fn connected(&mut self, d: Duration) {
        self.connect
            .saturating_record((d.as_micros() as u64).max(1));
    }

    pub(super) fn conn_done(&mut self) {
        self.connections += 1;
        if self.in_window() {
            self.conns_in_window += 1;
        }
    }

    pub(super) fn bytes_received(&mut self, n: u64) {
        self.bytes_in += n;
        if self.in_window() {
            self.bytes_in_window += n;
        }
    }

    pub(super) fn summary(&self, stack: &'static str, target: SocketAddr, elapsed: f64) -> Summary {
        let h = &self.hist;
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
            latency_us: Latency::of(h),
            connect_latency_us: Latency::of(&self.connect),
            time_to_full_concurrency_s: self.full_at.map(|d| d.as_secs_f64()),
            peak_established: self.peak_established,
            heap_baseline_bytes: 0,
            heap_at_peak_bytes: 0,
            heap_bytes_per_connection: 0,
            errors: self.errors,
            peak_time_wait: self.peak_tw,
            time_wait_reused: self.tw_reused,
            first_error: self.first_error.clone(),
            port_exhausted_waits: self.port_waits,
            queues: 1,
            per_queue: Vec::new(),
        }
    }
}

/// Progress printing and the HdrHistogram interval log.
pub(super) struct Reporter {
    pub(super) start: Instant,
    pub(super) last: Instant,
    pub(super) last_conns: u64,
    pub(super) last_reqs: u64,
    pub(super) hdr: Option<HdrLog<std::fs::File>>,
    pub(super) progress: bool,
}

/// Interval maxima are written in seconds (µs / 10^6), as HdrHistogram's
/// Java `HistogramLogWriter` does by default.
const MAX_VALUE_DIVISOR: f64 = 1e6;

/// The legend line the Java writer puts after the header; readers skip it.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// An HdrHistogram interval log (`--hdr`), written with the crate's
/// `interval_log` writer and V2+DEFLATE serializer, so that the standard
/// tools read and merge it.
pub(super) struct HdrLog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    line: Vec<u8>,
}

impl<W: Write> HdrLog<W> {
    /// Writes the header: a comment naming the `target`, the start time,
    /// the max-value divisor and the legend.
    pub(super) fn begin(mut out: W, target: &str, start: SystemTime) -> std::io::Result<Self> {
        let mut serializer = V2DeflateSerializer::new();
        Self::builder()
            .add_comment(&format!("[xstack load to {target}]"))
            .with_start_time(start)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(out, "{LEGEND}")?;
        Ok(HdrLog {
            out,
            serializer,
            line: Vec::new(),
        })
    }

    fn builder() -> IntervalLogWriterBuilder {
        let mut b = IntervalLogWriterBuilder::new();
        b.with_max_value_divisor(MAX_VALUE_DIVISOR);
        b
    }

    /// Appends one interval: `h`, recorded from `start` (since the log's
    /// start time) for `length`.
    pub(super) fn write(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<()> {
        // The crate's writer borrows its sink for its whole life and writes
        // the header when made; the log outlives each tick, so each line is
        // written into a buffer by a fresh writer and only the interval
        // line (the last) goes to the log.
        self.line.clear();
        let mut w = Self::builder().begin_log_with(&mut self.line, &mut self.serializer)?;
        w.write_histogram(h, start, length, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = &self.line[..self.line.len().saturating_sub(1)];
        let from = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.out.write_all(&self.line[from..])?;
        Ok(())
    }
}

impl Reporter {
    pub(super) fn new(cfg: &LoadConfig) -> Result<Reporter> {
        let hdr = match &cfg.hdr {
            Some(p) => {
                let f = std::fs::File::create(p)
                    .with_context(|| format!("creating {}", p.display()))?;
                let log = HdrLog::begin(f, &cfg.target.to_string(), SystemTime::now())
                    .with_context(|| format!("writing {}", p.display()))?;
                Some(log)
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
    pub(super) fn due(&self) -> bool {
        self.last.elapsed() >= Duration::from_secs(1)
    }

    /// At the end: the last, partial interval goes to the log, so that
    /// the log's intervals hold every latency of the run (what `xstack
    /// merge` adds up).
    pub(super) fn finish(&mut self, interval: &Histogram<u64>) {
        let now = Instant::now();
        if let Some(log) = self.hdr.as_mut() {
            if !interval.is_empty() {
                let _ = log.write(
                    interval,
                    self.last.duration_since(self.start),
                    now.duration_since(self.last),
                );
            }
            let _ = log.out.flush();
        }
        self.last = now;
    }

    /// Once a second: a progress line and an interval histogram.
    pub(super) fn tick(&mut self, r: &mut Recorder, active: usize, tw: u64) {
        r.peak_established = r.peak_established.max(r.established as u64);
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
            let _ = active;
            eprintln!(
                "t={:>5.1}s conn/s {:>9.0} req/s {:>9.0} errors {:>6} p99 {:>8} µs established {:>7} opening {:>6} closing {:>6} time_wait {:>7}",
                now.duration_since(self.start).as_secs_f64(),
                (r.connections - self.last_conns) as f64 / dt,
                (r.requests - self.last_reqs) as f64 / dt,
                r.errors.total(),
                p99,
                r.established,
                r.opening,
                r.closing,
                tw
            );
        }
        if let Some(log) = self.hdr.as_mut() {
            // A write error loses the log, not the run.
            let _ = log.write(
                &r.interval,
                self.last.duration_since(self.start),
                now.duration_since(self.last),
            );
        }
        r.interval.reset();
        self.last = now;
        self.last_conns = r.connections;
        self.last_reqs = r.requests;
    }
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
        let c = &self.connect_latency_us;
        writeln!(
            f,
            "  connect µs  p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.1})",
            c.p50, c.p90, c.p99, c.p999, c.max, c.mean
        )?;
        if self.heap_at_peak_bytes > 0 {
            writeln!(
                f,
                "  heap        {:.1} MB at the peak, {:.1} MB before: {} B per established connection",
                self.heap_at_peak_bytes as f64 / 1e6,
                self.heap_baseline_bytes as f64 / 1e6,
                self.heap_bytes_per_connection
            )?;
        }
        match self.time_to_full_concurrency_s {
            Some(t) => writeln!(
                f,
                "  established peak {} (full concurrency after {t:.2} s)",
                self.peak_established
            )?,
            None => writeln!(f, "  established peak {}", self.peak_established)?,
        }
        writeln!(
            f,
            "  errors      refused {} reset {} timeout {} connect_timeout {} other {}\n  peak TIME_WAIT {}, 4-tuples reused from TIME_WAIT {}",
            self.errors.refused,
            self.errors.reset,
            self.errors.timeout,
            self.errors.connect_timeout,
            self.errors.other,
            self.peak_time_wait,
            self.time_wait_reused
        )?;
        let ring: u64 = self.per_queue.iter().map(|q| q.rx_ring_full).sum();
        if ring > 0 {
            writeln!(
                f,
                "  load side   {ring} frames dropped at a full AF_XDP rx ring (the load engine fell behind)"
            )?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

/// What `--metrics` shows during a load: per engine (`queue` label) the
/// run's counts, errors, open and TIME_WAIT connections and the engine's
/// own counters; for the whole run the rates so far and the request and
/// connect latency histograms (summed over engines). Read from the
/// recorders the workers already share, on scrape.
pub(super) fn exposition(
    recs: &[std::sync::Arc<std::sync::Mutex<Recorder>>],
    start: Instant,
) -> crate::runtime::metrics::Exposition {
    use crate::runtime::metrics::{labels, Buckets, Exposition};
    let mut e = Exposition::new();
    let mut lat = Recorder::new();
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let (mut reqs, mut conns) = (0u64, 0u64);
    for (q, rec) in recs.iter().enumerate() {
        let Ok(r) = rec.lock() else { continue };
        let _ = lat.hist.add(&r.hist);
        let _ = lat.connect.add(&r.connect);
        reqs += r.requests;
        conns += r.connections;
        let ql = || labels([("queue", q.to_string())]);
        e.counter(
            "xstack_load_requests",
            "Requests answered.",
            ql(),
            r.requests,
        );
        e.counter(
            "xstack_load_connections",
            "Connections that completed every request and closed as asked.",
            ql(),
            r.connections,
        );
        e.counter("xstack_load_sent_bytes", "Bytes sent.", ql(), r.bytes_out);
        e.counter(
            "xstack_load_received_bytes",
            "Bytes received.",
            ql(),
            r.bytes_in,
        );
        e.counter(
            "xstack_load_port_exhausted_waits",
            "Times a connection waited for a free local port.",
            ql(),
            r.port_waits,
        );
        for (kind, v) in [
            ("refused", r.errors.refused),
            ("reset", r.errors.reset),
            ("timeout", r.errors.timeout),
            ("other", r.errors.other),
        ] {
            e.counter(
                "xstack_load_errors",
                "Failed connections by kind.",
                labels([("queue", q.to_string()), ("kind", kind.into())]),
                v,
            );
        }
        e.gauge(
            "xstack_load_open_connections",
            "Connections open now.",
            ql(),
            r.active as f64,
        );
        e.gauge(
            "xstack_load_time_wait",
            "Connections of the load side in TIME_WAIT now.",
            ql(),
            r.time_wait as f64,
        );
        if let Some((engine, tcp)) = &r.engine {
            crate::runtime::metrics::engine_metrics(&mut e, q as u32, engine, tcp.iter().copied());
        }
    }
    e.gauge(
        "xstack_load_requests_per_second",
        "Requests answered per second since the run started.",
        vec![],
        reqs as f64 / elapsed,
    );
    e.gauge(
        "xstack_load_connections_per_second",
        "Connections completed per second since the run started.",
        vec![],
        conns as f64 / elapsed,
    );
    e.gauge(
        "xstack_load_elapsed_seconds",
        "Seconds since the run started.",
        vec![],
        elapsed,
    );
    e.histogram(
        "xstack_load_request_latency_seconds",
        "Request latency (open loop: from the intended start).",
        Buckets::from_hdr_us(&lat.hist),
    );
    e.histogram(
        "xstack_load_connect_latency_seconds",
        "Connect latency: from the connection's start to the end of its handshake.",
        Buckets::from_hdr_us(&lat.connect),
    );
    e
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hdrhistogram::serialization::{
        interval_log::{IntervalLogIterator, LogEntry},
        Deserializer,
    };

    use super::*;

    #[test]
    fn the_interval_log_reads_back_with_the_standard_reader() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut log = HdrLog::begin(Vec::new(), "198.18.0.2:80", start).unwrap();
        let mut written = Vec::new();
        for i in 0..3u64 {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            for v in 1..=(100 * (i + 1)) {
                h.record(v * 37).unwrap();
            }
            h.record(1_500_000 * (i + 1)).unwrap();
            log.write(&h, Duration::from_secs(i), Duration::from_secs(1))
                .unwrap();
            written.push(h);
        }
        let text = String::from_utf8(log.out.clone()).unwrap();
        assert!(
            text.starts_with("#[xstack load to 198.18.0.2:80]\n"),
            "{text}"
        );
        assert!(text.contains(LEGEND));
        let mut intervals = Vec::new();
        let mut start_time = None;
        for e in IntervalLogIterator::new(&log.out) {
            match e.unwrap() {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::BaseTime(_) => panic!("no base time written"),
                LogEntry::Interval(i) => intervals.push((
                    i.start_timestamp(),
                    i.duration(),
                    i.max(),
                    i.encoded_histogram().to_owned(),
                )),
            }
        }
        assert_eq!(start_time, Some(Duration::from_millis(1_700_000_000_250)));
        assert_eq!(intervals.len(), written.len());
        for (i, ((ts, len, max, enc), h)) in intervals.iter().zip(&written).enumerate() {
            assert_eq!(*ts, Duration::from_secs(i as u64));
            assert_eq!(*len, Duration::from_secs(1));
            // The max column is in seconds.
            assert!((max - h.max() as f64 / 1e6).abs() < 1e-3, "{max}");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(enc)
                .unwrap();
            let back: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            assert_eq!(back.len(), h.len());
            assert_eq!(back.max(), h.max());
            assert_eq!(back.min(), h.min());
            assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
            assert_eq!(back, *h);
        }
    }
}
